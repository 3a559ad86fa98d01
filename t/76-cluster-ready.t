#!/usr/bin/perl

# Readiness of a cluster's node (events_status "?ready"): 200 with
# "cluster":"ok" while its tailer holds the lease and is connected to
# Redis and its ring has caught up; 503 cluster_link_down with a detail
# while Redis is stopped, and again 200 once Redis is back; a node
# started while Redis is down is not ready; the worker that tails killed:
# another takes the lease and the node is ready again.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use JSON::PP;
use Time::HiRes qw(time sleep);
use EventsTest;
use EventsTest::Redis;
use EventsTest::Cluster qw(node stop_ok);

plan(skip_all => 'redis-server not installed (make deps)')
    unless EventsTest::Redis->available;

my $redis = EventsTest::Redis->new;
my $url = $redis->url;
my $port = $redis->port;

sub node76 {
    return node($url, cluster => 'prefix=t76 timeout=1s connect_timeout=500ms',
        http => 'events_zone local 1m;', status => '/ready',
        locations => 'location = /local-ready { events_status local; }');
}

# readiness until it is what is wanted, or 10 s
sub ready_until {
    my ($t, $status) = @_;
    my $r;
    for (1 .. 200) {
        $r = $t->get('/ready?ready');
        return $r if $r->{status} == $status;
        sleep 0.05;
    }
    return $r;
}

my $ok = '{"zone":"main","ready":true,"journal":null,"cluster":"ok"}';

my $n1 = node76();
my $r = ready_until($n1, 200);
is($r->{status}, 200, 'Redis up: ready');
is($r->{body}, $ok, 'its body: "cluster":"ok"');
is($n1->get('/ready?format=prometheus&ready')->{body}, $ok,
    'the same answer in either format');
is($n1->get('/local-ready?ready')->{body},
    '{"zone":"local","ready":true,"journal":null,"cluster":null}',
    'a zone of the same node without events_cluster: "cluster":null');
is($n1->post_json('/events', { type => 'a.b' })->{status}, 201,
    'a POST while ready');

# Redis stopped: the link is down, the node says so

$redis->stop;
$r = ready_until($n1, 503);
is($r->{status}, 503, 'Redis stopped: 503');
my $j = eval { decode_json($r->{body}) } // {};
is_deeply([ @$j{qw(zone ready journal cluster reason)} ],
    [ 'main', JSON::PP::false, undef, 'failing', 'cluster_link_down' ],
    'ready false, "cluster":"failing", reason cluster_link_down');
my $why = qr/the tailing worker \d+ has no connection to /
    . qr/\Qredis:\/\/127.0.0.1:$port\E for \d+ ms \(last error: [^)]+\); /
    . qr/POSTs answer 503 cluster_unavailable/;
like($j->{detail}, qr/^$why$/,
    'the detail names the worker, the URL, how long and why')
    or diag($j->{detail});
is($n1->get('/local-ready?ready')->{status}, 200,
    'the zone without a cluster stays ready');
$n1->is_error($n1->post_json('/events', { type => 'a.b' }), 503,
    'cluster_unavailable', undef, 'what the detail says: POST 503');

# every worker answers the same (the state is the zone's)
my %seen;
for (1 .. 8) {
    $r = $n1->get('/ready?ready');
    $seen{ $r->{status} }++;
}
is_deeply(\%seen, { 503 => 8 }, 'every request, on either worker: 503');

# a node started while Redis is down is not ready either

my $n2 = node76();
$r = $n2->get('/ready?ready');
is($r->{status}, 503, 'a node started with Redis down: 503');
is((eval { decode_json($r->{body}) } // {})->{reason}, 'cluster_link_down',
    'cluster_link_down');

# Redis back, with its data: both nodes ready again

$redis->start;
$r = ready_until($n1, 200);
is($r->{status}, 200, 'Redis back: ready again');
is($r->{body}, $ok, 'its body');
is(ready_until($n2, 200)->{status}, 200, 'the late node: ready');
is($n2->post_json('/events', { type => 'a.c' })->{json}{seq}, 2,
    'a POST on it continues the log');

# the worker that tails killed: not ready while none tails, then again

my $tailer = $n1->req('GET', '/ready')->{json}{cluster}{tailerPid};
ok((grep { $_ == $tailer } $n1->worker_pids), 'a worker tails');
$n1->expect_log(qr/exited on signal 9/);
kill 'KILL', $tailer;
my $next = $tailer;
for (1 .. 200) {
    $next = $n1->req('GET', '/ready')->{json}{cluster}{tailerPid};
    last if $next != $tailer && $next != 0;
    sleep 0.05;
}
isnt($next, $tailer, 'another worker took the lease');
is(ready_until($n1, 200)->{body}, $ok, 'ready again');

# the tailer's link is what is judged: Redis gone for good

$redis->stop;
$r = ready_until($n2, 503);
is($r->{status}, 503, 'Redis gone: not ready');

stop_ok($n2, 'no alert, crit or emerg in the node\'s log');
$n1->done;
