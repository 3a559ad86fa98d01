#!/usr/bin/perl

# Cluster mode: three nginx nodes (2 workers each) share one log in a
# real Redis (started here, AOF on).  POSTs spread over the nodes reach
# the streams of every node in one order; lists agree; a client id posted
# to several nodes at once is one event; the status shows the cluster.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use EventsTest;
use EventsTest::Redis;
use EventsTest::Cluster qw(node wait_list caught_up finish);
use EventsTest::SSE;

plan(skip_all => 'redis-server not installed (make deps)')
    unless EventsTest::Redis->available;

my $redis = EventsTest::Redis->new;
my $url = $redis->url;

my @nodes = map { node($url, zone => '16m',
    cluster => 'prefix=t70 timeout=1s connect_timeout=1s',
    heartbeat => '500ms') } 1 .. 3;

# every node's ring follows the log: wait until each has n events
sub wait_count {
    my ($t, $n) = @_;
    return wait_list($t, sub { @_ >= $n });
}

# status: the cluster section; every node has taken the log's epoch
caught_up($_) for @nodes;
my $st = $nodes[0]->get('/events-status')->{json};
is($st->{cluster}{url}, $url, 'status: the URL');
is($st->{cluster}{prefix}, 't70', 'status: the prefix');
ok($st->{cluster}{connected}, 'status: the tailer is connected');
ok((grep { $_ == $st->{cluster}{tailerPid} } $nodes[0]->worker_pids),
    'status: a worker of this node tails');

# a stream on every node, before the events
my @streams = map { EventsTest::SSE->open($_, '/events/stream',
    timeout => 5) } @nodes;
is($_->status, 200, 'a stream') for @streams;

# 60 events from 6 clients at once, each on one node
my ($clients, $each) = (6, 10);
my @posted = $nodes[0]->parallel(n => $clients, code => sub {
    my ($i) = @_;
    my $t = $nodes[$i % 3];
    my @r;
    for my $k (1 .. $each) {
        my $r = $t->post_json('/events', { type => 'order.placed',
            resourceType => 'order', resourceId => "o-$i-$k" });
        push @r, [ $r->{status}, $r->{json}{seq}, $r->{json}{id} ];
    }
    return \@r;
});

my @acks = map { @{ $_ // [] } } @posted;
is(scalar(grep { $_->[0] == 201 } @acks), $clients * $each,
    'every POST on every node is 201');
is_deeply([ sort { $a <=> $b } map { $_->[1] } @acks ],
    [ 1 .. $clients * $each ], 'seqs 1..60, each once, across the nodes');

my @lists = map { [ wait_count($_, $clients * $each) ] } @nodes;
is(scalar @{ $lists[$_] }, $clients * $each, "node $_ lists every event")
    for 0 .. 2;
is_deeply($lists[1], $lists[0], 'node 1 lists what node 0 lists');
is_deeply($lists[2], $lists[0], 'node 2 lists what node 0 lists');
is_deeply([ map { $_->{seq} } @{ $lists[0] } ], [ 1 .. $clients * $each ],
    'in seq order');

my %answer = map { $_->[2] => $_->[1] } @acks;
is(scalar(grep { $answer{ $_->{id} } == $_->{seq} } @{ $lists[2] }),
    $clients * $each, 'a POST\'s answer is what every node stores');

# the same events, in the same order, with the same cursors, everywhere
my @seen;
for my $s (@streams) {
    my @ev = $s->events_until(sub { ($_[0]{json}{seq} // 0)
        == $clients * $each }, timeout => 10);
    push @seen, [ map { "$_->{id} $_->{json}{seq} $_->{json}{id}" }
        grep { $_->{json} && defined $_->{json}{seq} } @ev ];
}
is(scalar @{ $seen[0] }, $clients * $each, 'the stream on node 0 saw all');
is_deeply($seen[1], $seen[0], 'node 1 streamed the same, same cursors');
is_deeply($seen[2], $seen[0], 'node 2 streamed the same, same cursors');

# a cursor from one node is good on another: one secret, one epoch
my $page = $nodes[0]->get('/events?limit=10')->{json};
my $next = $nodes[1]->get("/events?limit=10&after=$page->{next}");
is($next->{status}, 200, 'a cursor of node 0 on node 1: 200');
is_deeply([ map { $_->{seq} } @{ $next->{json}{data} } ], [ 11 .. 20 ],
    'and the page after it');
my $resume = EventsTest::SSE->open($nodes[2], '/events/stream',
    last_event_id => $seen[0][29] =~ s/ .*//r);
my @replayed = grep { $_->{json} && defined $_->{json}{seq} }
    $resume->events_until(sub { ($_[0]{json}{seq} // 0) == 60 },
        timeout => 10);
is_deeply([ map { $_->{json}{seq} } @replayed ], [ 31 .. 60 ],
    'an SSE id of node 0 resumes on node 2 with no reset and no gap');
$resume->close;

# Events-Head and a single event agree
my $one = $lists[0][17];
for my $i (0 .. 2) {
    my $r = $nodes[$i]->get("/events/$one->{id}");
    is_deeply($r->{json}, $one, "node $i: the single event");
}
is($nodes[1]->get('/events/order/o-3-4')->{json}{data}[0]{resourceId},
    'o-3-4', 'entity history on another node');
is_deeply($nodes[2]->get('/events/types')->{json},
    $nodes[0]->get('/events/types')->{json}, 'types agree');

# one client id posted to all three nodes at once, three times each
my @dup = $nodes[0]->parallel(n => 9, code => sub {
    my ($i) = @_;
    my $r = $nodes[$i % 3]->post_json('/events', { id => 'pay-1',
        type => 'payment.done', resourceId => 'p-1' });
    return [ $r->{status}, $r->{json}{seq} ];
});
is(scalar(grep { $_->[0] == 201 } @dup), 1, 'one 201 for one client id');
is(scalar(grep { $_->[0] == 200 } @dup), 8, 'eight 200s (repeats)');
my %seqs = map { $_->[1] => 1 } @dup;
is(scalar keys %seqs, 1, 'every answer has the same seq');

my $r = $nodes[2]->post_json('/events', { id => 'pay-1',
    type => 'payment.done', resourceId => 'p-2' });
$nodes[2]->is_error($r, 409, 'conflict', 'id',
    'another body under the id, on another node: 409');

$r = $nodes[1]->post_json('/events', [ { id => 'b-1', type => 'x.y' },
    { id => 'pay-1', type => 'payment.done', resourceId => 'p-9' } ]);
$nodes[1]->is_error($r, 409, 'conflict', '[1].id',
    'a batch with a conflicting id: 409 at its index');
is(scalar(grep { $_->{id} eq 'b-1' } wait_count($nodes[0], 61)), 0,
    'and nothing of the batch was stored');

# status after the load
$st = $nodes[1]->get('/events-status')->{json}{cluster};
for (1 .. 50) {
    last if $st->{lastSeq} == 61;
    select undef, undef, undef, 0.05;
    $st = $nodes[1]->get('/events-status')->{json}{cluster};
}
is($st->{lastSeq}, 61, 'status: lastSeq');
is($st->{lagEvents}, 0, 'status: no lag');
ok($st->{tailed} >= 61, 'status: tailed');
my $text = $nodes[1]->get('/events-status?format=prometheus')->{body};
like($text, qr/^events_cluster_last_seq\{zone="main"\} 61$/m,
    'prometheus: events_cluster_last_seq');
like($text, qr/^events_cluster_connected\{zone="main"\} 1$/m,
    'prometheus: events_cluster_connected');

is($redis->cli('XLEN', '{t70}:log'), 61, 'the log in Redis holds 61');

# a reload: the ring and the tail go on where they were
ok($nodes[0]->reload, 'node 0 reloaded');
$r = $nodes[0]->post_json('/events', { id => 'after-reload', type => 'x.y' });
is($r->{json}{seq}, 62, 'a POST after the reload: seq 62');
for my $i (0 .. 2) {
    my @ev = wait_count($nodes[$i], 62);
    is_deeply([ map { $_->{seq} } @ev ], [ 1 .. 62 ],
        "node $i: 62 events, none twice, after node 0's reload");
}
$st = $nodes[0]->get('/events-status')->{json}{cluster};
ok((grep { $_ == $st->{tailerPid} } $nodes[0]->worker_pids),
    'a new worker tails after the reload');
is($st->{epochResets}, 1, 'the reload kept the epoch');

# a reload with another zone size: a new, empty ring, filled from the log
my $conf = $nodes[1]->read_file('nginx.conf');
$conf =~ s/events_zone main 16m;/events_zone main 24m;/ or die 'no zone';
$nodes[1]->write_file('nginx.conf', $conf);
ok($nodes[1]->reload, 'node 1 reloaded with a bigger zone');
my @again = wait_count($nodes[1], 62);
is_deeply([ map { $_->{seq} } @again ], [ 1 .. 62 ],
    'node 1 read the log into its new ring');
is_deeply(\@again, [ wait_count($nodes[0], 62) ], 'and agrees with node 0');

$_->close for @streams;
finish(@nodes);
