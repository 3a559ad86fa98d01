#!/usr/bin/perl

# Reads older than a node's ring come from Redis: three nodes with a tiny
# zone (256k: a few hundred events) on one log of 3000 events.  Lists
# (both orders, cursor paging, filters, entity history) and single
# events are the same on every node, with exact ids and order, no gap or
# repeat where the ring ends and Redis begins; a stream resumed by
# Last-Event-ID (or "earliest") from before the ring gets everything
# after it; what Redis's retention removed answers 410; Redis down: such
# reads answer 503 while the ring's go on.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use Time::HiRes qw(time sleep);
use EventsTest;
use EventsTest::Redis;
use EventsTest::Cluster qw(node pages tailed finish);
use EventsTest::SSE;

plan(skip_all => 'redis-server not installed (make deps)')
    unless EventsTest::Redis->available;

my $redis = EventsTest::Redis->new;
my $url = $redis->url;
my $N = 3000;

my @nodes = map { node($url, zone => '256k',
    cluster => 'prefix=t77 timeout=2s connect_timeout=500ms',
    heartbeat => '300ms') } 1 .. 3;

# the events: a few with server-made ids first, then client ids, in
# batches spread over the nodes
my @server_ids;
for my $k (1 .. 5) {
    my $r = $nodes[$k % 3]->post_json('/events',
        { type => 'boot.step', resourceType => 'boot', resourceId => 'b' });
    push @server_ids, $r->{json}{id};
}
is(scalar(grep { defined } @server_ids), 5, 'five events with server ids');

my $posted = 5;
my $bad = 0;
for (my $b = 0; $posted < $N; $b++) {
    my @batch;
    while (@batch < 25 && $posted < $N) {
        $posted++;
        push @batch, { id => "e-$posted",
            type => $posted % 3 ? 'order.placed' : 'order.paid',
            resourceType => 'order', resourceId => 'o-' . $posted % 7 };
    }
    my $r = $nodes[$b % 3]->post_json('/events', \@batch);
    $bad++ unless $r->{status} == 201;
}
is($bad, 0, "$N events posted, every batch 201");

my @want_ids = (@server_ids, map { "e-$_" } 6 .. $N);

sub status { ($_[0]->get('/events-status')->{json} // {}) }

for my $i (0 .. 2) {
    my $s = tailed($nodes[$i], $N);
    is($s->{cluster}{lastSeq}, $N, "node $i tailed every event");
    cmp_ok($s->{events}{oldestSeq}, '>', 1000,
        "node $i: its ring holds only the newest (from "
        . "$s->{events}{oldestSeq})");
}

for my $i (0 .. 2) {
    my ($all, $st) = pages($nodes[$i], '/events', limit => 100);
    is(scalar(grep { $_ != 200 } @$st), 0, "node $i: every page 200");
    is_deeply([ map { $_->{id} } @$all ], \@want_ids,
        "node $i: ascending pages of 100, every id once, in order");
    is_deeply([ map { $_->{seq} } @$all ], [ 1 .. $N ],
        "node $i: seqs 1..$N");
}

my ($asc) = pages($nodes[0], '/events', limit => 1000);
for my $i (0 .. 2) {
    my ($desc) = pages($nodes[$i], '/events?order=desc', limit => 250);
    is_deeply([ map { $_->{id} } @$desc ], [ reverse @want_ids ],
        "node $i: descending pages of 250, the same in reverse");
}
my ($desc7) = pages($nodes[1], '/events?order=desc', limit => 7);
is_deeply([ map { $_->{seq} } @$desc7 ], [ reverse 1 .. $N ],
    'descending pages of 7, across the ring\'s end');

# the same bodies on every node, from Redis or from the ring
my ($asc2) = pages($nodes[2], '/events', limit => 1000);
is_deeply($asc2, $asc, 'node 2 lists exactly what node 0 lists');

# filters on what came back: a type, and an entity's history
my @paid = grep { $_->{type} eq 'order.paid' } @$asc;
for my $i (0 .. 2) {
    my ($got) = pages($nodes[$i], '/events?types=order.paid', limit => 50);
    is_deeply([ map { $_->{seq} } @$got ], [ map { $_->{seq} } @paid ],
        "node $i: types=order.paid, " . scalar(@paid) . " events");
}
my @o3 = grep { ($_->{resourceId} // '') eq 'o-3' } @$asc;
my ($hist) = pages($nodes[1], '/events/order/o-3', limit => 40);
is_deeply([ map { $_->{seq} } @$hist ], [ map { $_->{seq} } @o3 ],
    'entity history, ascending: ' . scalar(@o3) . ' events');
my ($rhist) = pages($nodes[2], '/events/order/o-3?order=desc',
    limit => 40);
is_deeply([ map { $_->{seq} } @$rhist ], [ reverse map { $_->{seq} } @o3 ],
    'entity history, descending');

# at the boundary: a page that starts in Redis and ends in the ring
my $oldest = status($nodes[0])->{events}{oldestSeq};
my ($r, $cursor);
for (my $at = 0; $at < $oldest - 3; ) {
    my $n = $oldest - 3 - $at > 1000 ? 1000 : $oldest - 3 - $at;
    $r = $nodes[0]->get("/events?limit=$n"
        . ($cursor ? "&after=$cursor" : ''));
    $cursor = $r->{json}{next};
    $at += $n;
}
$r = $nodes[0]->get("/events?limit=6&after=$cursor");
is_deeply([ map { $_->{seq} } @{ $r->{json}{data} } ],
    [ $oldest - 2 .. $oldest + 3 ],
    "a page across the ring's start ($oldest): no gap, no repeat");

# single events that left every ring
for my $i (0 .. 2) {
    $r = $nodes[$i]->get('/events/e-7');
    is($r->{status}, 200, "node $i: GET an evicted event by its id");
    is($r->{json}{seq}, 7, 'its seq');
    is($nodes[$i]->get("/events/$server_ids[2]")->{json}{seq}, 3,
        'a server-made id too');
}
is($nodes[0]->get('/events/e-999999')->{status}, 404, 'no such id: 404');

# streams resumed from before the ring read Redis, then the ring, then
# live events: every event once, in order
sub stream_seqs {
    my ($s, $until) = @_;
    my @ev = $s->events_until(sub { ($_[0]{json}{seq} // 0) >= $until
        || $_[0]{event} eq 'reset' }, timeout => 30);
    return map { $_->{event} eq 'reset' ? 'reset' : $_->{json}{seq} }
        grep { $_->{event} eq 'reset' || defined(($_->{json} // {})->{seq}) }
        @ev;
}

$r = $nodes[1]->get('/events?limit=10');
my $at10 = $r->{json}{next};
my $s1 = EventsTest::SSE->open($nodes[1], '/events/stream',
    last_event_id => $at10, timeout => 5);
is($s1->status, 200, 'a stream resumed at seq 10');
my $s2 = EventsTest::SSE->open($nodes[2], '/events/stream?types=order.paid',
    last_event_id => 'earliest', timeout => 5);
is($s2->status, 200, 'a stream from "earliest", one type');
$nodes[0]->post_json('/events', { id => "e-live", type => 'order.paid' });
is_deeply([ stream_seqs($s1, $N + 1) ], [ 11 .. $N + 1 ],
    'resumed at 10: 11..' . ($N + 1) . ', from Redis, the ring, live');
is_deeply([ stream_seqs($s2, $N + 1) ],
    [ (map { $_->{seq} } @paid), $N + 1 ],
    'from "earliest", filtered: every order.paid, then the live one');
$_->close for $s1, $s2;
$N++;

# retention: Redis keeps from seq 1001 on; a cursor at 500 is gone
$r = $nodes[0]->get('/events?limit=500');
my $at500 = $r->{json}{next};
my @ids = grep { /^\d+-\d+$/ } split /\n/,
    $redis->cli('XRANGE', '{t77}:log', '-', '+', 'COUNT', 1001) // '';
is(scalar @ids, 1001, 'the first 1001 stream ids');
is($redis->cli('XTRIM', '{t77}:log', 'MINID', $ids[1000]), 1000,
    'XTRIM removes seqs 1..1000 from Redis');
$nodes[1]->is_error($nodes[1]->get("/events?after=$at500"), 410,
    'cursor_expired', undef, 'a cursor at 500: 410 cursor_expired');
my $s3 = EventsTest::SSE->open($nodes[0], '/events/stream',
    last_event_id => $at500, timeout => 5);
is_deeply([ stream_seqs($s3, 1) ], [ 'reset' ],
    'a stream resumed at 500: reset');
$s3->close;
my ($left) = pages($nodes[2], '/events', limit => 500);
is_deeply([ map { $_->{seq} } @$left ], [ 1001 .. $N ],
    'from the start: what Redis keeps, 1001..');
is($nodes[0]->get('/events/e-7')->{status}, 404,
    'an event Redis removed: 404');

# Redis down: what the ring holds is served, the rest is 503
$redis->stop;
$r = $nodes[0]->get('/events?limit=10');
$nodes[0]->is_error($r, 503, 'cluster_unavailable', undef,
    'Redis down: a read older than the ring is 503');
is($r->{headers}{'retry-after'}, '1', 'with Retry-After');
$r = $nodes[0]->get('/events?order=desc&limit=10');
is($r->{status}, 200, 'the newest page, from the ring: 200');
is_deeply([ map { $_->{seq} } @{ $r->{json}{data} } ],
    [ reverse $N - 9 .. $N ], 'its events');
$redis->start;

finish(@nodes[1, 2, 0]);
