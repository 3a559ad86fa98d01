#!/usr/bin/perl

# Webhooks once per cluster, the claim's lease and the endpoint's state.
# Three nodes (two workers each) on one Redis, a real receiver.
#
# An attempt longer than the lease (webhook_lease=2s, a receiver that
# holds each request 5 s): the claim is renewed while the attempt runs,
# so no other node sends the delivery too: each event once.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use Time::HiRes qw(time sleep);
use EventsTest;
use EventsTest::Redis;
use EventsTest::Receiver;

plan(skip_all => 'redis-server not installed (make deps)')
    unless EventsTest::Redis->available;

my $redis = EventsTest::Redis->new;
my $url = $redis->url;
my $rcv = EventsTest::Receiver->new(name => 'slow');
my $hook = $rcv->url('/hook');

sub node {
    my $t = EventsTest->new(workers => 2);
    $t->write_config(<<"EOF");
%%GLOBALS%%
http {
    %%HTTP_GLOBALS%%

    events_zone main 4m;
    events_cluster main $url prefix=t98 timeout=2s connect_timeout=500ms
                   webhook_lease=2s;

    events_webhook main id=slow url=$hook events=order.*
        secret=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw;

    server {
        listen 127.0.0.1:%%PORT%%;

        events_webhook_allow 127.0.0.1/32;
        events_webhook_retry 1s 1s;

        location /events { events_api main; }
        location /webhooks { events_webhooks main; }
        location = /events-status { events_status main; }

        location = /_events_webhook {
            internal;
            proxy_pass \$events_webhook_url;
            proxy_set_header Host \$events_webhook_host;
            proxy_connect_timeout 2s;
            proxy_read_timeout 20s;
        }
    }
}
EOF
    $t->run;
    return $t;
}

my @nodes = map { node() } 1 .. 3;

sub cluster { ($_[0]->get('/events-status')->{json} // {})->{cluster} // {} }

for my $t (@nodes) {
    for (1 .. 200) { last if cluster($t)->{caughtUp}; sleep 0.05 }
}

# each request held 5 s: two and a half leases

$rcv->script('/hook', { status => 200, delay => 5 });

for my $k (1 .. 4) {
    my $r = $nodes[$k % 3]->post_json('/events',
        { id => "l-$k", type => 'order.slow' });
    is($r->{status}, 201, "event l-$k posted");
}

my @req = $rcv->wait_requests('/hook', 4, 20);
is(scalar @req, 4, 'the 4 deliveries reached the receiver');
sleep 8;    # a lapsed lease would have let another node send them again
@req = $rcv->requests('/hook');
my %by_id;
$by_id{ $_->{headers}{'webhook-id'} }++ for @req;
is_deeply(\%by_id, { map { ("l-$_" => 1) } 1 .. 4 },
    'each event once, though each attempt outlived the lease twice');

my $claimed = 0;
$claimed += cluster($_)->{webhooks}{claimed} // 0 for @nodes;
is($claimed, 4, 'one claim per delivery across the cluster');

# every node's attempt log: one successful attempt each
for my $i (0 .. 2) {
    my $log;
    for (1 .. 50) {
        $log = $nodes[$i]->get('/webhooks/slow/deliveries?limit=100')
            ->{json}{data} // [];
        last if @$log >= 4;
        sleep 0.1;
    }
    is_deeply([ sort map { "$_->{eventId} $_->{result}" } @$log ],
        [ map { "l-$_ succeeded" } 1 .. 4 ],
        "node $i: one attempt per event, succeeded");
}

for my $t (@nodes[0 .. 1]) {
    $t->stop;
    my @bad = grep {
        my $l = $_;
        /\[(?:alert|crit|emerg)\]/ && !grep { $l =~ $_ } @{ $t->{expected} };
    } split /\n/, $t->error_log;
    ok(!@bad, 'no alert, crit or emerg in a node\'s error.log')
        or diag(join "\n", @bad[0 .. ($#bad < 9 ? $#bad : 9)]);
}
$nodes[2]->done;
