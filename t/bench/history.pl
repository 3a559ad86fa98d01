#!/usr/bin/perl

# What history on disk costs and gives (make bench-history): a small
# ring (events_zone 8m) with a journal, BENCH_EVENTS events (default
# 1 000 000, about 1 KB each as stored) written in batches by 4 clients,
# then, with the index caught up:
#
#   - p50/p99 of a page of 100 by cursor at random places in the history
#   - of a page of 100 of a type that is 1 in 10 000 events
#   - of an entity's history (100 events per entity, N/100 entities)
#   - of GET /events/{id} at random
#   - the SSE catch-up rate from lastEventId=earliest to "ready"
#
# Latencies are measured by this Perl client over 127.0.0.1 with
# keep-alive off (one connection per request), so they include its own
# overhead.  The ingest ratio to no journal is t/bench/journal.sh's.
#
#   BENCH_EVENTS=200000 perl t/bench/history.pl
#   T_MODULE=... BENCH_SAMPLES=300 BENCH_KEEP=1 BENCH_RESTARTS=0

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/../lib";
use IO::Socket::IP;
use Time::HiRes qw(time sleep);
use EventsTest;

my $N = $ENV{BENCH_EVENTS} // 1_000_000;
my $SAMPLES = $ENV{BENCH_SAMPLES} // 300;
my $CLIENTS = 4;
my $BATCH = 500;
# 100 events per entity, spread over the whole history, whatever N
my $ENTITIES = $N >= 200 ? int($N / 100) : 1;

$ENV{T_KEEP} = 1 if $ENV{BENCH_KEEP};

# a start replays a gigabyte: the harness's 10 s are not enough
{
    no warnings 'redefine';
    *EventsTest::scale = sub { $_[1] * 12 };
}

my $t = EventsTest->new;
$t->write_config(<<'EOF');
%%GLOBALS%%
http {
    %%HTTP_GLOBALS%%

    events_zone main 8m;
    events_journal main %%TESTDIR%%/journal fsync=off;

    server {
        listen 127.0.0.1:%%PORT%%;
        client_max_body_size 16m;
        events_max_event_size 64k;

        location = /events/stream { events_stream main; }
        location /events { events_api main; }
        location = /events-status { events_status main; }
    }
}
EOF
$t->run;

my $pad = 'p' x 760;

# the JSON of an event, written by hand: JSON::PP is too slow for 1 GB
sub event_json {
    my ($i) = @_;
    my $type = $i % 10000 == 5000 ? 'bench.rare' : 'bench.common';
    return sprintf('{"id":"b-%d","type":"%s","resourceType":"item",'
        . '"resourceId":"e-%d","payload":{"data":{"i":%d,"pad":"%s"}}}',
        $i, $type, $i % $ENTITIES, $i, $pad);
}

# one request on its own connection, the answer unparsed
sub raw {
    my ($method, $path, $body) = @_;
    my $sock = IO::Socket::IP->new(PeerAddr => '127.0.0.1',
        PeerPort => $t->port, Proto => 'tcp') or die "connect: $!";
    my $req = "$method $path HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        . "Connection: close\r\n";
    $req .= "Content-Type: application/json\r\nContent-Length: "
        . length($body) . "\r\n" if defined $body;
    print {$sock} $req . "\r\n" . ($body // '');
    my ($all, $buf) = ('');
    $all .= $buf while sysread($sock, $buf, 1 << 20);
    close $sock;
    my ($status) = $all =~ m{^HTTP/1\.1 (\d+)};
    return ($status // 0, $all);
}

printf "writing %d events in batches of %d by %d clients...\n",
    $N, $BATCH, $CLIENTS;
my $t0 = time;
$t->parallel(n => $CLIENTS, timeout => 3600, code => sub {
    my ($c) = @_;
    for (my $i = 1 + $c * $BATCH; $i <= $N; $i += $CLIENTS * $BATCH) {
        my $to = $i + $BATCH - 1 > $N ? $N : $i + $BATCH - 1;
        my ($status, $all) = raw('POST', '/events',
            '[' . join(',', map { event_json($_) } $i .. $to) . ']');
        die "POST: $status " . substr($all, 0, 300) unless $status == 201;
    }
    return 1;
});
my $ingest = time - $t0;

my $st;
for (1 .. 600) {
    $st = $t->get('/events-status')->{json};
    last if $st->{journal}{history}{indexed} >= $st->{events}{newestSeq};
    sleep 0.1;
}
my $indexed_after = time - $t0;
my $head = $st->{events}{newestSeq};
my $jdir = $t->testdir . '/journal';
my $jbytes = 0;
$jbytes += -s $_ for glob "$jdir/*.evj";
my $ibytes = -s "$jdir/index.mdb";

printf "written in %.1f s (%.0f events/s in batches); indexed %.1f s after "
    . "the start\n", $ingest, $N / $ingest, $indexed_after;
printf "ring: %d events of %d; journal %.0f MB, index %.0f MB "
    . "(%.0f bytes/event)\n", $st->{events}{retained}, $head,
    $jbytes / 1e6, $ibytes / 1e6, $ibytes / $head;

# random places: cursors are opaque (and sealed), times are not; a
# time is a seq through the index's time table
my (undef, $first_raw) = raw('GET', '/events?limit=1');
my (undef, $last_raw) = raw('GET', '/events?limit=1&order=desc');
my ($t_first) = $first_raw =~ /"timestamp":"([^"]+)"/;
my ($t_last) = $last_raw =~ /"timestamp":"([^"]+)"/;

sub ms_of {
    my ($ts) = @_;
    my ($y, $mo, $d, $h, $mi, $sec, $ms) =
        $ts =~ /^(\d+)-(\d+)-(\d+)T(\d+):(\d+):(\d+)\.(\d+)Z$/ or die $ts;
    require Time::Local;
    return Time::Local::timegm($sec, $mi, $h, $d, $mo - 1, $y) * 1000 + $ms;
}

sub iso {
    my ($ms) = @_;
    my @t = gmtime(int($ms / 1000));
    return sprintf('%04d-%02d-%02dT%02d:%02d:%02d.%03dZ', $t[5] + 1900,
        $t[4] + 1, @t[3, 2, 1, 0], $ms % 1000);
}

my ($ms_first, $ms_last) = (ms_of($t_first), ms_of($t_last));
my $ring_share = $st->{events}{retained} / $head;

# a time in the part of the history only the disk has
sub disk_time {
    return iso($ms_first + int(rand(($ms_last - $ms_first)
                                    * (1 - 2 * $ring_share))));
}

sub timed {
    my ($name, $make) = @_;
    my @ms;
    for (1 .. $SAMPLES) {
        my $path = $make->();
        my $s = time;
        my ($status, $all) = raw('GET', $path);
        push @ms, (time - $s) * 1000;
        die "$name: GET $path: $status " . substr($all, 0, 300)
            unless $status == 200;
    }
    @ms = sort { $a <=> $b } @ms;
    printf "%-34s p50 %6.2f ms   p99 %6.2f ms   max %6.2f ms\n", $name,
        $ms[int(@ms * 0.5)], $ms[int(@ms * 0.99)], $ms[-1];
}

timed('page of 100 from a time (disk)',
    sub { '/events?limit=100&since=' . disk_time() });
timed('page of 100 up to a time, desc (disk)',
    sub { '/events?limit=100&order=desc&until=' . disk_time() });
timed('page of 100 after a cursor (disk)', sub {
    my (undef, $all) = raw('GET', '/events?limit=1&since=' . disk_time());
    my ($next) = $all =~ /"next":"([^"]+)"/;
    return "/events?limit=100&after=$next" });
timed('page of 100, 1 in 10000 type',
    sub { '/events?types=bench.rare&limit=100&since=' . disk_time() });
timed('entity history (100 events)',
    sub { '/events/item/e-' . int(rand($ENTITIES)) . '?limit=100' });
timed('GET /events/{id}',
    sub { '/events/b-' . (1 + int(rand($N))) });
timed('page of 100 from the ring',
    sub { '/events?limit=100&order=desc' });

my $hs = $t->get('/events-status')->{json}{journal}{history};
printf "reads from disk: %d from the page cache in the worker, %d in "
    . "threads, %d in the worker\n", $hs->{cacheReads} // 0,
    $hs->{threadReads} // 0, $hs->{workerReads} // 0;

# SSE catch-up from the start: count events until "ready"
my $sock = IO::Socket::IP->new(PeerAddr => '127.0.0.1', PeerPort => $t->port,
    Proto => 'tcp') or die "connect: $!";
print {$sock} "GET /events/stream?lastEventId=earliest HTTP/1.1\r\n"
    . "Host: 127.0.0.1\r\nConnection: close\r\n\r\n";
my ($buf, $events, $tail) = ('', 0, '');
$t0 = time;
while (1) {
    my $n = sysread($sock, $buf, 1 << 20);
    last unless $n;
    my $chunk = $tail . $buf;
    $events += () = $chunk =~ /\ndata: /g;
    last if $chunk =~ /event: ready/;
    $tail = substr($chunk, -32);
    $events -= () = $tail =~ /\ndata: /g;
}
my $catchup = time - $t0;
close $sock;
printf "SSE catch-up from earliest: %d events in %.1f s = %.0f events/s\n",
    $events, $catchup, $events / $catchup;

# a restart checks the index against the segments; without it, rebuilds
# (BENCH_RESTARTS=0 skips both, for short runs)
for my $case ($ENV{BENCH_RESTARTS} // 1
              ? ('restart (index checked)', 'restart without index.mdb') : ())
{
    $t->stop;
    unlink "$jdir/index.mdb" if $case =~ /without/;
    my $log = length $t->error_log;
    $t0 = time;
    $t->run;
    my $up = time - $t0;
    my ($line) = substr($t->error_log, $log)
        =~ /(history index "[^"]*": \d+ events checked, \d+ added.*)/;
    printf "%-34s nginx up in %.1f s; %s\n", $case, $up, $line // '?';
}

$t->stop;
my $errors = () = $t->error_log =~ /\[(?:alert|crit|emerg)\]/g;
print "alerts in error.log: $errors\n";
exit($errors ? 1 : 0);
