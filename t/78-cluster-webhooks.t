#!/usr/bin/perl

# Webhooks once per cluster: three nodes with the same static endpoint
# (events_webhook in each node's nginx.conf) on one log.  Every node's
# dispatcher finds every event, and each delivery is claimed in Redis
# before an attempt: a real receiver gets each event once across the
# cluster.  The node that holds a delivery killed with SIGKILL in the
# middle of it: another node sends it again after the claim's lease,
# with the same webhook-id (at least once, nothing lost).  A retried
# delivery stays with its claimer.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use Time::HiRes qw(time sleep);
use EventsTest;
use EventsTest::Redis;
use EventsTest::Cluster qw(node cluster_status caught_up finish);
use EventsTest::Receiver;

plan(skip_all => 'redis-server not installed (make deps)')
    unless EventsTest::Redis->available;

my $redis = EventsTest::Redis->new;
my $url = $redis->url;
my $rcv = EventsTest::Receiver->new(name => 'hooks');
my $hook = $rcv->url('/hook');

my @nodes = map { node($url, zone => '4m',
    cluster => 'prefix=t78 timeout=2s connect_timeout=500ms webhook_lease=2s',
    http => "events_webhook main id=orders url=$hook events=order.*
        secret=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw;",
    server => 'events_webhook_retry 1s 1s;', webhooks => '10s') } 1 .. 3;

caught_up($_) for @nodes;

# 60 events spread over the nodes: each reaches the receiver once

for my $k (1 .. 60) {
    my $r = $nodes[$k % 3]->post_json('/events',
        { id => "o-$k", type => 'order.placed' });
    die "POST: $r->{status}" unless $r->{status} == 201;
}
$nodes[0]->post_json('/events', { id => 'u-1', type => 'user.seen' });

my @req = $rcv->wait_requests('/hook', 60, 30);
sleep 2.5;    # a second delivery would come by now (lease, retries)
@req = $rcv->requests('/hook');
my %by_id;
$by_id{ $_->{headers}{'webhook-id'} }++ for @req;
is(scalar @req, 60, '60 requests at the receiver');
is_deeply([ sort keys %by_id ], [ sort map { "o-$_" } 1 .. 60 ],
    'every event, and only the matching ones');
is(scalar(grep { $_ != 1 } values %by_id), 0, 'each exactly once');

my @claimed = map { cluster_status($_)->{webhooks}{claimed} // 0 } @nodes;
my $sum = 0;
$sum += $_ for @claimed;
is($sum, 60, "claims across the nodes: 60 (@claimed)");
ok(scalar(grep { $_ > 0 } @claimed) >= 2,
    'more than one node delivered');
is(scalar(grep { ($_->{answer} // '') ne '200' } @req), 0,
    'every answer 200');

# the attempt log is the cluster's: every node lists every attempt
for my $i (0 .. 2) {
    my $log;
    for (1 .. 50) {
        $log = $nodes[$i]->get('/webhooks/orders/deliveries?limit=100')
            ->{json}{data} // [];
        last if @$log >= 60;
        sleep 0.1;
    }
    is_deeply([ sort map { $_->{eventId} } @$log ],
        [ sort map { "o-$_" } 1 .. 60 ],
        "node $i: the attempt log has the 60 attempts of all nodes");
}

# a retried delivery stays with its claimer: 503, then 200

$rcv->reset_log;
$rcv->script('/hook', [ { status => 503 }, { status => 200 } ]);
$nodes[1]->post_json('/events', { id => 'r-1', type => 'order.retry' });
@req = $rcv->wait_requests('/hook', 2, 15);
sleep 2.5;
@req = $rcv->requests('/hook');
is_deeply([ map { "$_->{headers}{'webhook-id'} $_->{answer}" } @req ],
    [ 'r-1 503', 'r-1 200' ], 'a 503, then one retry, across the cluster');

# endpoints made through the API: on every node, delivered once

sub ep_on {
    my ($t, $id, $cond) = @_;
    my $r;
    for (1 .. 100) {
        $r = $t->get("/webhooks/$id");
        return $r if $cond->($r);
        sleep 0.1;
    }
    return $r;
}

$rcv->reset_log;
my $made = $nodes[0]->req(POST => '/webhooks', json => {
    url => $rcv->url('/api'), events => ['shop.*'], description => 'd1',
    secret => 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw' });
is($made->{status}, 201, 'an endpoint made through the API of node 0');
my $eid = $made->{json}{id};
for my $i (1, 2) {
    my $r = ep_on($nodes[$i], $eid, sub { $_[0]{status} == 200 });
    is($r->{status}, 200, "node $i has it");
    is_deeply([ @{ $r->{json} }{qw(url description)} ],
        [ $rcv->url('/api'), 'd1' ], "node $i: the same url, description");
}
for my $k (1 .. 20) {
    $nodes[$k % 3]->post_json('/events', { id => "s-$k", type => 'shop.sold' });
}
$rcv->wait_requests('/api', 20, 20);
sleep 2.5;
@req = $rcv->requests('/api');
is_deeply([ sort map { $_->{headers}{'webhook-id'} } @req ],
    [ sort map { "s-$_" } 1 .. 20 ], 'an API endpoint: each event once');

my $p = $nodes[1]->req(PATCH => "/webhooks/$eid",
    json => { url => $rcv->url('/api2'), description => 'd2' });
is($p->{status}, 200, 'changed through node 1');
for my $i (0, 2) {
    my $r = ep_on($nodes[$i], $eid,
        sub { ($_[0]{json}{description} // '') eq 'd2' });
    is($r->{json}{url}, $rcv->url('/api2'), "node $i has the change");
}
for my $k (1 .. 6) {
    $nodes[$k % 3]->post_json('/events', { id => "t-$k", type => 'shop.sold' });
}
$rcv->wait_requests('/api2', 6, 20);
sleep 2.5;
is_deeply([ sort map { $_->{headers}{'webhook-id'} }
    $rcv->requests('/api2') ], [ sort map { "t-$_" } 1 .. 6 ],
    'to the new url, each event once');
is(scalar($rcv->requests('/api')), 20, 'nothing more to the old one');

is($nodes[2]->req(DELETE => "/webhooks/$eid")->{status}, 204,
    'deleted through node 2');
for my $i (0, 1) {
    is(ep_on($nodes[$i], $eid, sub { $_[0]{status} == 404 })->{status},
        404, "gone from node $i");
}

# the node that holds a delivery killed in the middle of it

$rcv->reset_log;
$rcv->script('/hook', [ { status => 200, delay => 5 }, { status => 200 } ]);
my @before = map { cluster_status($_)->{webhooks}{claimed} // 0 } @nodes;
$nodes[2]->post_json('/events', { id => 'k-1', type => 'order.killed' });
@req = $rcv->wait_requests('/hook', 1, 15);
is(scalar @req, 1, 'the delivery reached the receiver, which holds it');

my ($victim) = grep {
    (cluster_status($nodes[$_])->{webhooks}{claimed} // 0) > $before[$_]
} 0 .. 2;
ok(defined $victim, 'the node that claimed it is known');
$victim //= 0;

my @workers = $nodes[$victim]->worker_pids;
kill 'KILL', $nodes[$victim]->master_pid, @workers;
$nodes[$victim]{pid} = undef;
my $killed = time;

@req = $rcv->wait_requests('/hook', 2, 20);
is(scalar @req, 2, 'sent again by another node');
is($req[1]{headers}{'webhook-id'}, 'k-1', 'with the same webhook-id');
my $after = $req[1]{received} - $killed;
# renewed every third of the lease until the kill: it lapses 4/3 to 2 s
# after it
ok($after >= 1.3 && $after < 15,
    sprintf('after the lease lapsed (%.1f s)', $after));

# the rest of the cluster goes on: each event once

$rcv->reset_log;
my @alive = grep { $_ != $victim } 0 .. 2;
for my $k (1 .. 10) {
    $nodes[ $alive[$k % 2] ]->post_json('/events',
        { id => "a-$k", type => 'order.after' });
}
$rcv->wait_requests('/hook', 10, 20);
sleep 2.5;
@req = $rcv->requests('/hook');
is_deeply([ sort map { $_->{headers}{'webhook-id'} } @req ],
    [ sort map { "a-$_" } 1 .. 10 ], 'after the kill: each event once');

finish(@nodes[@alive]);
