#!/usr/bin/perl

# Cluster mode when things break: Redis stopped in the middle of a load
# (503 with Retry-After, no acknowledged event lost, nothing stored for
# a refused one, streams stay open and resume with no gap, the epoch
# kept since Redis restarts with its AOF); a node restarted catches up
# before it answers reads; the tailing worker killed (another takes the
# lease); Redis flushed (a new epoch: streams get reset epoch_changed).

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use JSON::PP;
use POSIX qw(WNOHANG);
use Time::HiRes qw(time sleep);
use EventsTest;
use EventsTest::Redis;
use EventsTest::Cluster qw(node list_all wait_list cluster_status caught_up
    finish);
use EventsTest::SSE;

plan(skip_all => 'redis-server not installed (make deps)')
    unless EventsTest::Redis->available;

my $redis = EventsTest::Redis->new;
my $url = $redis->url;

# Redis down: each failed connect and refused POST is an [error]
my @nodes = map { node($url, zone => '16m',
    cluster => 'prefix=t71 timeout=1s connect_timeout=500ms',
    heartbeat => '300ms') } 1 .. 3;
ok(caught_up($_), 'a node caught up with the log') for @nodes;

my @streams = map { EventsTest::SSE->open($_, '/events/stream') } @nodes;
is($_->status, 200, 'a stream') for @streams;

my $epoch = cluster_status($nodes[0])->{epoch};

# the load: 3 clients, one per node, 60 POSTs each with client ids (a
# retry is safe), while Redis is stopped for a second in the middle

my $dir = $nodes[0]->testdir;
my %kids;
for my $i (0 .. 2) {
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        my @r;
        for my $k (1 .. 60) {
            my $r = $nodes[$i]->post_json('/events', { id => "L-$i-$k",
                type => 'load.tick', resourceId => "n$i" }, timeout => 5);
            push @r, [ "L-$i-$k", $r->{status},
                $r->{headers}{'retry-after'} // '',
                ($r->{json} // {})->{error}{message} // '' ];
            sleep 0.03;
        }
        open(my $fh, '>', "$dir/load.$i.json") or POSIX::_exit(1);
        print {$fh} encode_json(\@r);
        close $fh;
        POSIX::_exit(0);
    }
    $kids{$pid} = 1;
}

sleep 0.6;
$redis->stop;
my $down = time;
sleep 1.2;
$redis->start;

my $deadline = time + 60;
while (%kids && time < $deadline) {
    delete @kids{ grep { waitpid($_, WNOHANG) } keys %kids };
    sleep 0.05;
}
kill 'KILL', keys %kids;
waitpid($_, 0) for keys %kids;

my @results = map {
    @{ decode_json(EventsTest::Daemon::slurp("$dir/load.$_.json") || '[]') }
} 0 .. 2;
is(scalar @results, 180, 'every client finished');

my @acked = grep { $_->[1] == 201 || $_->[1] == 200 } @results;
my @refused = grep { $_->[1] == 503 } @results;
ok(@refused > 0, 'POSTs while Redis was down: 503 (' . @refused . ')');
ok(@acked > 0, 'POSTs before and after: acknowledged (' . @acked . ')');
is(scalar(@acked) + scalar(@refused), 180, 'nothing else than 201 or 503');
is(scalar(grep { $_->[2] eq '1' } @refused), scalar @refused,
    'every 503 has Retry-After: 1');

my %want = map { $_->[0] => 1 } @acked;
my @unstored = map { $_->[0] }
    grep { $_->[3] =~ /nothing was stored/ } @refused;

for my $i (0 .. 2) {
    my @ev = wait_list($nodes[$i], sub {
        my %have = map { $_->{id} => 1 } @_;
        return !grep { !$have{$_} } keys %want;
    });
    my %have = map { $_->{id} => 1 } @ev;
    is(scalar(grep { !$have{$_} } keys %want), 0,
        "node $i has every acknowledged event");
    is(scalar(grep { $have{$_} } @unstored), 0,
        "node $i has none of the refused ones");
    my @seqs = map { $_->{seq} } @ev;
    is_deeply(\@seqs, [ 1 .. scalar @seqs ], "node $i: seqs with no gap");
}

my @list = list_all($nodes[0]);
is_deeply([ wait_list($nodes[2], sub { @_ >= @list }) ], \@list,
    'lists agree after the outage');
is(cluster_status($nodes[0])->{epoch}, $epoch,
    'Redis restarted with its data: the same epoch');

# the streams stayed open through the outage and missed nothing
for my $i (0 .. 2) {
    my @ev = $streams[$i]->events_until(sub {
        ($_[0]{json}{seq} // 0) == $list[-1]{seq} }, timeout => 10);
    my @got = map { $_->{json}{id} } grep { $_->{event} ne 'reset'
        && $_->{json} && defined $_->{json}{seq} } @ev;
    is_deeply(\@got, [ map { $_->{id} } @list ],
        "stream on node $i: every event once, in order, no reset");
}

# a node restarted: it reads the log before it answers reads
$nodes[2]->stop;
for my $k (1 .. 20) {
    $nodes[0]->post_json('/events', { type => 'while.away' });
}
$nodes[2]->run;
my $r = $nodes[2]->get('/events');
ok($r->{status} == 200 || ($r->{status} == 503
    && $r->{json}{error}{code} eq 'cluster_catching_up'),
    'a restarted node answers 200, or 503 cluster_catching_up');
ok(caught_up($nodes[2]), 'the restarted node caught up');
my @full = wait_list($nodes[0], sub { @_ >= @list + 20 });
is_deeply([ list_all($nodes[2]) ], \@full,
    'the restarted node lists what the others list');

# the worker that tails killed: another one takes the lease
my $tailer = cluster_status($nodes[1])->{tailerPid};
ok((grep { $_ == $tailer } $nodes[1]->worker_pids), 'a worker tails');
$nodes[1]->expect_log(qr/exited on signal 9/);
kill 'KILL', $tailer;
my $killed_seq = $nodes[0]->post_json('/events', { id => 'after-kill',
    type => 'x.y' })->{json}{seq};
# (GET by id would answer from Redis: the tailer's progress is the proof)
my $seen = 0;
for (1 .. 200) {
    last if $seen
        = (cluster_status($nodes[1])->{lastSeq} // 0) >= $killed_seq;
    sleep 0.05;
}
ok($seen, 'the node still follows the log after its tailer was killed');
isnt(cluster_status($nodes[1])->{tailerPid}, $tailer,
    'another worker tails');

# Redis flushed: a new log, a new epoch; every stream is told
$_->close for @streams;
@streams = map { EventsTest::SSE->open($_, '/events/stream') } @nodes;
$redis->cli('FLUSHALL');
for my $i (0 .. 2) {
    my ($reset) = grep { $_->{event} eq 'reset' }
        $streams[$i]->events_until(sub { $_[0]{event} eq 'reset' },
            timeout => 10);
    is(($reset // {})->{json}{reason}, 'epoch_changed',
        "stream on node $i: reset epoch_changed");
}
for (1 .. 100) {
    last if cluster_status($nodes[0])->{epoch} ne $epoch;
    sleep 0.05;
}
isnt(cluster_status($nodes[0])->{epoch}, $epoch, 'status: a new epoch');

$r = $nodes[1]->post_json('/events', { type => 'fresh.start' });
is($r->{json}{seq}, 1, 'seqs start again');
for my $i (0 .. 2) {
    my @ev = wait_list($nodes[$i], sub { @_ == 1 });
    is_deeply([ map { "$_->{seq} $_->{type}" } @ev ], [ '1 fresh.start' ],
        "node $i lists the new log only");
}

# an entry some other program added to the stream is skipped, once
like($redis->cli('XADD', '{t71}:log', '*', 'junk', '1'), qr/^\d+-\d+$/,
    'a foreign entry in the stream');
$r = $nodes[0]->post_json('/events', { type => 'after.junk' });
is($r->{json}{seq}, 2, 'a POST after it: seq 2');
for my $i (0 .. 2) {
    my @ev = wait_list($nodes[$i], sub { @_ == 2 });
    is_deeply([ map { "$_->{seq} $_->{type}" } @ev ],
        [ '1 fresh.start', '2 after.junk' ], "node $i skipped the entry");
}
my $skips = () = join('', map { $_->error_log } @nodes)
    =~ /entry \d+-\d+ of \{t71\}:log was not written by this module; skipped/g;
is($skips, 3, 'each node logged it once');

# Redis gone for good: POST 503 at once, reads of the ring go on
$redis->stop;
my $t0 = time;
$r = $nodes[0]->post_json('/events', { type => 'lost.cause' });
$nodes[0]->is_error($r, 503, 'cluster_unavailable', undef,
    'Redis gone: 503 cluster_unavailable');
ok(time - $t0 < 2, 'within the timeout');
is($nodes[0]->get('/events')->{status}, 200, 'reads go on');

$_->close for @streams;
finish(@nodes);
