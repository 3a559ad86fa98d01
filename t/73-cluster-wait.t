#!/usr/bin/perl

# events_cluster wait=N: a POST is answered 201 only after N replicas of
# the Redis primary have the events (WAIT); with the replica gone, 503
# cluster_unreplicated (the events are on the primary: a retry with the
# same id is a repeat, 200).  A real primary and replica, started here.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use Time::HiRes qw(sleep time);
use EventsTest;
use EventsTest::Redis;
use EventsTest::Cluster qw(node readable);

plan(skip_all => 'redis-server not installed (make deps)')
    unless EventsTest::Redis->available;

my $primary = EventsTest::Redis->new;
my $replica = EventsTest::Redis->new(args => [ '--replicaof', '127.0.0.1',
    $primary->port ]);

# linked both ways: the replica's link is up and the primary counts it
# online (WAIT counts only those; under load the second comes later)
sub linked {
    for (1 .. 200) {
        return 1 if ($replica->cli('INFO', 'replication') // '')
            =~ /master_link_status:up/
            && ($primary->cli('INFO', 'replication') // '')
            =~ /^slave0:.*state=online/m;
        sleep 0.05;
    }
    return 0;
}

ok(linked(), 'the replica follows the primary');

my $url = $primary->url;
my $t = node($url, cluster => 'prefix=t73 wait=1 timeout=1s');
readable($t);

my $r = $t->post_json('/events', { id => 'w-1', type => 'order.paid' });
is($r->{status}, 201, 'wait=1 with a replica: 201');
is($replica->cli('XLEN', '{t73}:log'), 1, 'the replica has the event');

$r = $t->post_json('/events', [ { id => 'w-2', type => 'a.b' },
    { id => 'w-3', type => 'a.b' } ]);
is($r->{status}, 201, 'a batch: 201');

$replica->stop;
my $t0 = time;
$r = $t->post_json('/events', { id => 'w-4', type => 'order.paid' });
$t->is_error($r, 503, 'cluster_unreplicated', undef,
    'the replica gone: 503 cluster_unreplicated');
is($r->{headers}{'retry-after'}, '1', 'with Retry-After');
ok(time - $t0 < 1.5, 'within the timeout');

my $seen;
for (1 .. 100) {
    last if ($seen = $t->get('/events/w-4')->{status}) == 200;
    sleep 0.05;
}
is($seen, 200, 'the event is in the log all the same (on the primary)');

$replica->start;
ok(linked(), 'the replica is back');
$r = $t->post_json('/events', { id => 'w-4', type => 'order.paid' });
is($r->{status}, 200, 'the retry with the same id: a repeat, 200');

my $st = $t->get('/events-status')->{json}{cluster};
is($st->{unreplicated}, 1, 'status: unreplicated');
like($t->get('/events-status?format=prometheus')->{body},
    qr/^events_cluster_unreplicated_total\{zone="main"\} 1$/m,
    'prometheus: events_cluster_unreplicated_total');
like($t->error_log, qr/0 replicas of 1 confirmed an append in time/,
    'error.log says why');

# wait= out of range
for my $bad ('wait=0', 'wait=65', 'wait=x') {
    my $c = node($url, cluster => $bad, run => 0);
    my ($ok, $out) = $c->_test_config;
    like($ok ? '' : $out, qr/\[emerg\].*invalid parameter "\Q$bad\E"/,
        "nginx -t: $bad");
}

$t->done;
