#!/usr/bin/perl

# Webhooks once per cluster, the claim's lease and the endpoint's state.
# Three nodes (two workers each) on one Redis, a real receiver.
#
# An attempt longer than the lease (webhook_lease=2s, a receiver that
# holds each request 5 s): the claim is renewed while the attempt runs,
# so no other node sends the delivery too: each event once.  A claim
# lost during its attempt: the attempt's result is not recorded by its
# node, which leaves the delivery to the node that holds it.
#
# An endpoint's failure state is the cluster's: a static endpoint that
# answers 410 is disabled on every node; an API endpoint failing on one
# node is failing since the same time on all, disabled for failing on
# all (events_webhook_disable_after), enabled again through any node;
# a 429 pause holds on every node.  An API endpoint's format and its
# "verify" travel with it (each node makes its own handshake).

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use Time::HiRes qw(time sleep);
use EventsTest;
use EventsTest::Redis;
use EventsTest::Cluster qw(node cluster_status caught_up finish);
use EventsTest::Receiver;
use JSON::PP;

plan(skip_all => 'redis-server not installed (make deps)')
    unless EventsTest::Redis->available;

my $redis = EventsTest::Redis->new;
my $url = $redis->url;
my $rcv = EventsTest::Receiver->new(name => 'slow');
my $hook = $rcv->url('/hook');
my $static = $rcv->url('/static');

# a lease renewed every third of it needs a few round trips to Redis

{
    my $t = node($url, zone => '1m',
        cluster => 'prefix=t98x webhook_lease=500ms', run => 0);
    my ($ok, $out) = $t->_test_config;
    like($ok ? '' : $out,
        qr/\[emerg\].*events_cluster: "webhook_lease=500ms" is shorter than 1s in \S+nginx\.conf:\d+/,
        'nginx -t: webhook_lease= under 1s');
}

my @nodes = map { node($url, zone => '4m',
    cluster => 'prefix=t98 timeout=2s connect_timeout=500ms webhook_lease=2s',
    http => "events_webhook main id=slow url=$hook events=order.*
        secret=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw;
    events_webhook main id=st url=$static events=static.*
        secret=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw;",
    server => 'events_webhook_retry 1s 1s;
        events_webhook_disable_after 1s;', webhooks => '20s') } 1 .. 3;

caught_up($_) for @nodes;

# each request held 5 s: two and a half leases

$rcv->script('/hook', { status => 200, delay => 5 });

for my $k (1 .. 4) {
    my $r = $nodes[$k % 3]->post_json('/events',
        { id => "l-$k", type => 'order.slow' });
    is($r->{status}, 201, "event l-$k posted");
}

my @req = $rcv->wait_requests('/hook', 4, 20);
is(scalar @req, 4, 'the 4 deliveries reached the receiver');

# the renewals meet NOSCRIPT: they send the script's text
is($redis->cli('SCRIPT', 'FLUSH'), 'OK', 'Redis forgets its scripts');
sleep 8;    # a lapsed lease would have let another node send them again
@req = $rcv->requests('/hook');
my %by_id;
$by_id{ $_->{headers}{'webhook-id'} }++ for @req;
is_deeply(\%by_id, { map { ("l-$_" => 1) } 1 .. 4 },
    'each event once, though each attempt outlived the lease twice');

my $claimed = 0;
$claimed += cluster_status($_)->{webhooks}{claimed} // 0 for @nodes;
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

# a claim lost while its attempt runs (another node's token put in its
# place, as if the lease had lapsed and another node took it): its node
# does not record the result, and leaves the delivery to the holder,
# which ends it

$rcv->reset_log;
my $r = $nodes[0]->post_json('/events', { id => 'x-1', type => 'order.lost' });
my $seq = $r->{json}{seq} // 0;
$rcv->wait_requests('/hook', 1, 15);
my ($ckey) = split /\n/, $redis->cli('KEYS', "{t98}:wh:c:*slow:$seq") // '';
ok($ckey, "the claim of seq $seq is in Redis");
is($redis->cli('SET', $ckey, 'another:1', 'PX', 60000), 'OK',
    'another node takes it');
sleep 6;    # the attempt ends; its node claims it again: taken
is($redis->cli('SET', "{t98}:wh:d:" . substr($ckey, length '{t98}:wh:c:'),
    'another:1'), 'OK', 'the other node ends it');
sleep 2;
is(scalar $rcv->requests('/hook'), 1, 'sent once: not again by its node');
my @lost = grep { $_->error_log =~ /lapsed during its attempt \(succeeded\)/ }
    @nodes;
is(scalar @lost, 1, 'its node says the claim lapsed during the attempt');
for my $i (0 .. 2) {
    my $log = $nodes[$i]->get('/webhooks/slow/deliveries?limit=100')
        ->{json}{data} // [];
    is(scalar(grep { $_->{eventId} eq 'x-1' } @$log), 0,
        "node $i: the attempt is not in the log as this cluster's");
}
my @pending = map {
    my $t = $_;
    my $p;
    for (1 .. 30) {
        $p = $t->get('/webhooks/slow')->{json}{stats}{pending} // -1;
        last if $p == 0;
        sleep 0.1;
    }
    $p;
} @nodes;
is_deeply(\@pending, [ 0, 0, 0 ], 'ended elsewhere: no node keeps it');

# a static endpoint that answers 410: disabled on every node

sub ep_all {
    my ($id, $cond) = @_;
    my @r;
    for my $t (@nodes) {
        my $r;
        for (1 .. 100) {
            $r = $t->get("/webhooks/$id");
            last if $r->{json} && $cond->($r->{json});
            sleep 0.1;
        }
        push @r, $r->{json} // {};
    }
    return @r;
}

sub same {
    my ($field, @eps) = @_;
    my %v = map { ($_->{$field} // 'null') => 1 } @eps;
    return join(' ', sort keys %v);
}

$rcv->script('/static', { status => 410 });
$nodes[0]->post_json('/events', { id => 'g-1', type => 'static.gone' });
is(scalar $rcv->wait_requests('/static', 1, 15), 1, 'static: 410 once');

my @eps = ep_all('st', sub { ($_[0]{status} // '') eq 'disabled' });
is_deeply([ map { "$_->{status} " . ($_->{disabledReason} // '-') } @eps ],
    [ ('disabled gone') x 3 ], 'static: disabled (gone) on every node');
my $at = same('disabledAt', @eps);
ok($at ne 'null' && $at !~ / /,
    "static: disabled at the same time on every node ($at)");

$nodes[1]->post_json('/events', { id => 'g-2', type => 'static.gone' });
$nodes[2]->post_json('/events', { id => 'g-3', type => 'static.gone' });
sleep 2.5;
is(scalar $rcv->requests('/static'), 1,
    'static: no node sends to it any more');

# an API endpoint failing on one node: failing, then disabled, on all

$rcv->script('/api', { status => 503 });
my $made = $nodes[0]->req(POST => '/webhooks', json => {
    url => $rcv->url('/api'), events => ['api.*'], format => 'cloudevents',
    secret => 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw' });
is($made->{status}, 201, 'an API endpoint made on node 0');
my $eid = $made->{json}{id} // 'none';

@eps = ep_all($eid, sub { defined $_[0]{format} });
is_deeply([ map { $_->{format} // '' } @eps ], [ ('cloudevents') x 3 ],
    'its format on every node');

$nodes[1]->post_json('/events', { id => 'f-1', type => 'api.fail' });
$rcv->wait_requests('/api', 1, 15);
@eps = ep_all($eid, sub { defined $_[0]{failingSince} });
my $since = same('failingSince', @eps);
ok($since ne 'null' && $since !~ / /,
    "failing since the same time on every node ($since)");

@eps = ep_all($eid, sub { ($_[0]{status} // '') eq 'disabled' });
is_deeply([ map { "$_->{status} " . ($_->{disabledReason} // '-') } @eps ],
    [ ('disabled failing') x 3 ],
    'disabled for failing (3 attempts over 2 s) on every node');
is(scalar $rcv->requests('/api'), 3, 'three attempts, one node\'s');
@eps = ep_all($eid, sub { ($_[0]{stats}{failed} // 0) == 1 });
is_deeply([ map { "$_->{stats}{failed} $_->{lastError}" } map {
        { %$_, lastError => $_->{stats}{lastError} // '-' } } @eps ],
    [ ('1 E_HTTP') x 3 ], 'every node counts the failed delivery')
    or diag explain [ map { $_->{stats} } @eps ];

$nodes[0]->post_json('/events', { id => 'f-2', type => 'api.fail' });
sleep 2;
is(scalar $rcv->requests('/api'), 3, 'disabled: nothing sent by any node');

# enabled again through another node: on every node, delivered once

$rcv->script('/api', { status => 200 });
$rcv->reset_log;
is($nodes[2]->req(PATCH => "/webhooks/$eid", json => { enabled => JSON::PP::true })
    ->{status}, 200, 'enabled through node 2');
@eps = ep_all($eid, sub { ($_[0]{status} // '') eq 'enabled' });
is_deeply([ map { "$_->{status} " . ($_->{failingSince} // 'null') } @eps ],
    [ ('enabled null') x 3 ], 'enabled, not failing, on every node');
sleep 1;
$nodes[1]->post_json('/events', { id => 'f-3', type => 'api.ok' });
$rcv->wait_requests('/api', 1, 15);
sleep 2;
is_deeply([ map { $_->{headers}{'ce-id'} // $_->{headers}{'webhook-id'} }
    $rcv->requests('/api') ], ['f-3'], 'the next event once');

# a 429 with Retry-After: the endpoint paused on every node

$rcv->script('/api', { status => 429, headers => { 'retry-after' => 30 } });
$nodes[2]->post_json('/events', { id => 'p-1', type => 'api.pause' });
$rcv->wait_requests('/api', 2, 15);
@eps = ep_all($eid, sub { defined $_[0]{pausedUntil} });
my $until = same('pausedUntil', @eps);
ok($until ne 'null' && $until !~ / /,
    "paused until the same time on every node ($until)");

# "verify": "cloudevents" travels with an API endpoint; each node makes
# its own handshake, the delivery goes once

$rcv->script('/ver', { status => 200,
    headers => { 'WebHook-Allowed-Origin' => '*' } });
$made = $nodes[0]->req(POST => '/webhooks', json => {
    url => $rcv->url('/ver'), events => ['ver.*'], verify => 'cloudevents' });
is($made->{status}, 201, 'an endpoint with verify made on node 0');
my $vid = $made->{json}{id} // 'none';
@eps = ep_all($vid, sub { ($_[0]{verification}{state} // '') eq 'verified' });
is_deeply([ map { ($_->{verify} // '-') . ' '
        . ($_->{verification}{state} // '-') } @eps ],
    [ ('cloudevents verified') x 3 ], 'verify on every node, each verified');
$nodes[1]->post_json('/events', { id => 'v-1', type => 'ver.x' });
$rcv->wait_requests('/ver', 4, 15);
sleep 1.5;
my @ver = $rcv->requests('/ver');
is(join(' ', sort map { $_->{method} } @ver), 'OPTIONS OPTIONS OPTIONS POST',
    'three handshakes (one a node), the event once');
is($nodes[2]->req(PATCH => "/webhooks/$vid", json => { verify => undef })
    ->{status}, 200, 'verify null through node 2');
@eps = ep_all($vid, sub { !defined $_[0]{verify} });
is_deeply([ map { $_->{verify} // 'null' } @eps ], [ ('null') x 3 ],
    'off on every node');

finish(@nodes);
