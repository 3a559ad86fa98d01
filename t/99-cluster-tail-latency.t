#!/usr/bin/perl

# Cluster mode, the cross-node path: an event POSTed on one node reaches
# the streams of another as soon as Redis has it, not at the end of the
# tailer's XREAD BLOCK (1 s) or a timer; the tailer neither polls nor
# waits for a COUNT: one XREAD per event at a low rate, plus one per
# BLOCK that ends empty.  Streams on both workers of the node are woken
# (the tailer's own and the other by its doorbell).  A busy log is read
# at the pace of tail_pace=: after a read that brought four or more
# events, the next read waits that long; a read of fewer goes at once.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use Time::HiRes qw(time sleep);
use EventsTest;
use EventsTest::Redis;
use EventsTest::Cluster qw(node caught_up finish);
use EventsTest::SSE;

plan(skip_all => 'redis-server not installed (make deps)')
    unless EventsTest::Redis->available;

my $redis = EventsTest::Redis->new;
my $url = $redis->url;

sub node99 {
    my ($more) = @_;
    return node($url, zone => '16m',
        cluster => 'prefix=t99 timeout=2s connect_timeout=1s'
            . ($more ? " $more" : ''),
        heartbeat => '10s');
}

my ($pub, $sub) = map { node99() } 1 .. 2;

caught_up($_) for $pub, $sub;

# streams on the other node: enough that both of its workers hold some
my @streams = map { EventsTest::SSE->open($sub, '/events/stream',
    timeout => 5) } 1 .. 8;
is($_->status, 200, 'a stream on the other node') for @streams;

# which worker holds each stream: the server side of its connection
sub holder {
    my ($sock) = @_;
    my $port = $sock->sockport;
    my $inode;
    open(my $fh, '<', '/proc/net/tcp') or return 0;
    while (my $line = <$fh>) {
        my @f = split ' ', $line;
        next unless @f > 9 && $f[2] =~ /:([0-9A-F]{4})$/;
        if (hex($1) == $port && $f[1] =~ /:([0-9A-F]{4})$/
            && hex($1) == $sub->port)
        {
            $inode = $f[9];
        }
    }
    close $fh;
    return 0 unless $inode;
    for my $pid ($sub->worker_pids) {
        for my $fd (glob("/proc/$pid/fd/*")) {
            my $l = readlink($fd) // '';
            return $pid if $l eq "socket:[$inode]";
        }
    }
    return 0;
}

my %held;
$held{ holder($_->{sock}) }++ for @streams;
my $tailer = $sub->get('/events-status')->{json}{cluster}{tailerPid};
note('streams per worker: '
    . join(', ', map { "$_=$held{$_}" } sort keys %held)
    . "; the tailer is $tailer");

is($redis->cli('CONFIG', 'RESETSTAT'), 'OK', 'redis: counters reset');

my $n = 20;
my $t0 = time;
my (@delays, $late, $order);
$order = 1;

for my $k (1 .. $n) {
    my $r = $pub->post_json('/events', { type => 'tick.sent',
        resourceType => 'tick', resourceId => "t-$k" });
    my $acked = time;
    is($r->{status}, 201, "POST $k on the first node") or next;

    for my $s (@streams) {
        my $e = $s->next_event(timeout => 3);
        my $seq = $e && $e->{json} ? $e->{json}{seq} // 0 : 0;
        unless ($seq == $r->{json}{seq}) {
            $order = 0;
            next;
        }
        push @delays, time - $acked;
    }

    # one at a time, well apart: each is a batch of one for the tailer
    sleep 0.1;
}

my $elapsed = time - $t0;

ok($order, 'every stream on the other node got every event, in order');
is(scalar @delays, $n * @streams, 'all of them');

my @sorted = sort { $a <=> $b } @delays;
my $median = $sorted[int(@sorted / 2)] // 99;
my $bound = $pub->scale(0.25);
note(sprintf 'after the 201: median %.1f ms, max %.1f ms',
    $median * 1000, ($sorted[-1] // 99) * 1000);

SKIP: {
    my @others = grep { $_ && $_ != $tailer } keys %held;
    skip 'the node accepted every stream in the tailing worker', 1
        unless @others;
    ok($order, "streams of the other worker ($others[0]) got them too, "
        . 'woken by the doorbell');
}

# a tailer that waited for its BLOCK (1 s) or a timer would be ~0.5 s
cmp_ok($median, '<', $bound,
    'the other node delivers as soon as Redis has the event');

# two tailers, one per node: an XREAD per event each, plus one per empty
# BLOCK; a tailer that polled or re-read in a loop would show far more
my $stats = $redis->cli('INFO', 'commandstats') // '';
my ($xreads) = $stats =~ /cmdstat_xread:calls=(\d+)/;
$xreads //= 0;
my $most = 2 * ($n + int($elapsed) + 2);
cmp_ok($xreads, '>=', $n, "XREADs: at least one per event ($xreads)");
cmp_ok($xreads, '<=', $most, "XREADs: no more than one per event and "
    . "per BLOCK that ends empty (at most $most)");

# the status: the other node's tailer took each event, no error
my $st = $sub->get('/events-status')->{json}{cluster};
is($st->{errors}, 0, 'status: no errors on the other node');
cmp_ok($st->{tailed}, '>=', $n, 'status: the tailer took every event');

$_->close for @streams;

# the pace: a third node that reads a busy log every 300 ms
my $paced = node99('tail_pace=300ms');
caught_up($paced);
my $ps = EventsTest::SSE->open($paced, '/events/stream', timeout => 5);
is($ps->status, 200, 'a stream on the paced node');

sub batch {
    my ($tag) = @_;
    my $r = $pub->post_json('/events', [ map { { type => 'tick.sent',
        resourceType => 'tick', resourceId => "$tag-$_" } } 1 .. 10 ]);
    is($r->{status}, 201, "a batch of ten ($tag)");
    return $r;
}

# returns when the last of these seqs arrived, or undef
sub arrived {
    my ($s, @seqs) = @_;
    my %want = map { $_ => 1 } @seqs;
    my $deadline = time + 5;
    while (%want && time < $deadline) {
        my $e = $s->next_event(timeout => $deadline - time) or last;
        delete $want{ $e->{json}{seq} } if $e->{json};
    }
    return %want ? undef : time;
}

sub seqs { map { $_->{seq} } @{ $_[0]{json}{data} } }

my $reads0 = $paced->get('/events-status')->{json}{cluster}{tailReads};
my $ra = batch('a');
my $ta = arrived($ps, seqs($ra));
ok($ta, 'the first batch reaches the paced node');
my $rb = batch('b');
my $tb = arrived($ps, seqs($rb));
ok($tb, 'the second batch too');
note(sprintf 'the second batch came %.0f ms after the first',
    (($tb // 0) - ($ta // 0)) * 1000);

# the read that brought ten arms the pace: the next read is 300 ms on
cmp_ok(($tb // 0) - ($ta // 0), '>=', 0.25,
    'a busy log: the next read waits tail_pace');

# a read of one does not: single events well apart come at once
sleep 0.5;
my @one;
for my $k (1 .. 3) {
    my $r = $pub->post_json('/events', { type => 'tick.sent',
        resourceType => 'tick', resourceId => "one-$k" });
    my $t0 = time;
    my $t1 = arrived($ps, $r->{json}{seq});
    push @one, defined $t1 ? $t1 - $t0 : 99;
}
@one = sort { $a <=> $b } @one;
note(sprintf 'single events: %s ms', join(', ',
    map { sprintf '%.0f', $_ * 1000 } @one));
cmp_ok($one[1], '<', 0.2, 'a quiet log is read at once, not paced');

my $st2 = $paced->get('/events-status')->{json}{cluster};
cmp_ok($st2->{tailReads} - $reads0, '<=', 5,
    'status: tailReads counts the reads that brought events ('
    . ($st2->{tailReads} - $reads0) . ' for two batches and three)');
cmp_ok($st2->{tailReads} - $reads0, '>=', 4,
    'status: at least one read per batch and per single event');
like($paced->get('/events-status?format=prometheus')->{body},
    qr/^events_cluster_tail_reads_total\{[^}]*\} \d+$/m,
    'prometheus: events_cluster_tail_reads_total');
$ps->close;

finish($paced, $pub, $sub);
