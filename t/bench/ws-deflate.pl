#!/usr/bin/perl

# permessage-deflate (events_ws_deflate) on the wire and in the workers,
# on one nginx with 2 workers:
#
#   bytes  BENCH_EVENTS (default 1000) events replayed from "earliest" to
#          one ws npm client, with and without deflate: the bytes it read
#   cpu    BENCH_SUBSCRIBERS (default 50) ws clients, with and without
#          deflate, while BENCH_EVENTS events are published live in
#          batches of 50: the workers' utime + stime
#
# for two payloads of ~300 bytes as POSTed: t/bench/ws-fanout.sh's
# ("pad":"xxx...", kind to deflate) and one of random hex and numbers
# (unkind).  A few seconds.  The machine may be shared: compare the
# ratios, not the absolute numbers.
#
#   perl t/bench/ws-deflate.pl

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/../lib";
use JSON::PP;
use Time::HiRes qw(time sleep);
use EventsTest;

my $N = $ENV{BENCH_EVENTS} // 1000;
my $SUBS = $ENV{BENCH_SUBSCRIBERS} // 50;
my $client = "$EventsTest::REPO/t/node/ws-client.js";
my $TCK = 100;    # USER_HZ

my $t = EventsTest->new;
$t->write_config(<<'EOF2');
%%GLOBALS%%
http {
    %%HTTP_GLOBALS%%
    events_zone main 64m;
    server {
        listen 127.0.0.1:%%PORT%%;
        location = /events/stream { events_stream main; }
        location /events { events_api main; }
    }
}
EOF2
$t->run;

my $port = $t->port;

sub event {
    my ($kind, $n) = @_;
    my $data = $kind eq 'bench'
        ? { pt => int(time * 1e6), ph => 1, pc => 2, pn => $n }
        : { sku => join('', map { sprintf '%04x', rand 65536 } 1 .. 8),
            qty => int(rand 1000), price => sprintf('%.2f', rand 1000),
            ref => join('', map { sprintf '%04x', rand 65536 } 1 .. 12) };
    my $e = { type => "$kind.tick", payload => { data => $data } };
    my $len = length encode_json($e);
    if ($kind eq 'bench') {
        $data->{pad} = 'x' x (300 - $len - 10);
    } else {
        $data->{more} = join('', map { sprintf '%02x', rand 256 }
            1 .. (300 - $len - 12) / 2);
    }
    return $e;
}

sub publish {
    my ($kind, $from, $count) = @_;
    my $r = $t->post_json('/events',
        [ map { event($kind, $_) } $from .. $from + $count - 1 ]);
    die "POST: $r->{status} $r->{body}" unless $r->{status} == 201;
}

sub cpu {
    my $ticks = 0;
    for my $pid ($t->worker_pids) {
        open(my $fh, '<', "/proc/$pid/stat") or next;
        my @f = split ' ', (<$fh> =~ s/^.*\) //r);
        $ticks += $f[11] + $f[12];
    }
    return $ticks / $TCK;
}

sub clients {
    my ($deflate, $n, $want, $path, $during) = @_;
    local $ENV{WS_DEFLATE} = $deflate ? 1 : 0;
    open(my $fh, '-|', 'node', $client, 'count',
        "ws://127.0.0.1:$port$path", $n, $want, 60000) or die "node: $!";
    my $open = <$fh> // die 'the clients did not open';
    my $c0 = cpu();
    $during->() if $during;
    my $res = decode_json(<$fh> // die 'the clients did not finish');
    $res->{cpu} = cpu() - $c0;
    close $fh;
    return $res;
}

for my $kind (qw(bench hex)) {
    for (my $i = 0; $i < $N; $i += 500) {
        publish($kind, $i + 1, $N - $i < 500 ? $N - $i : 500);
    }
    my $path = "/events/stream?types=$kind.*&lastEventId=earliest";
    my %b = map { $_ => clients($_, 1, $N, $path) } 0, 1;
    printf "%-5s bytes: %d events, %8d without deflate, %8d with (%s): "
        . "%.2f of it, %.1fx smaller\n", $kind, $N, $b{0}{bytes},
        $b{1}{bytes}, $b{1}{extensions} // 'none',
        $b{1}{bytes} / $b{0}{bytes}, $b{0}{bytes} / $b{1}{bytes};

    my %c;
    for my $deflate (0, 1) {
        my $live = "/events/stream?types=$kind.*";
        $c{$deflate} = clients($deflate, $SUBS, $N, $live, sub {
            for (my $i = 0; $i < $N; $i += 50) {
                publish($kind, $i + 1, 50);
            }
        });
    }
    printf "%-5s cpu: %d streams x %d events, workers %.2f s without "
        . "deflate, %.2f s with: %.2fx; bytes %.1fx smaller\n", $kind, $SUBS,
        $N, $c{0}{cpu}, $c{1}{cpu}, $c{1}{cpu} / ($c{0}{cpu} || 0.01),
        $c{0}{bytes} / $c{1}{bytes};
}

$t->stop;
