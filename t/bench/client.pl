#!/usr/bin/perl

# events.js beside the eventsource npm client in Node, and beside
# Chromium's own EventSource in headless Chromium: one nginx,
# BENCH_EVENTS events (default 50 000, about 400 bytes each as stored),
# then each client replays them all from "earliest" over one stream,
# parsing every envelope, best of 3; prints events/s, CPU per event of
# the Node process, and the ratios.
#
#   BENCH_EVENTS=20000 perl t/bench/client.pl

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/../lib";
use JSON::PP;
use EventsTest;

my $N = $ENV{BENCH_EVENTS} // 50_000;
my $REPO = $EventsTest::REPO;

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
        location /console/ { events_console; }
        location = /blank {
            default_type text/html;
            return 200 "<!doctype html><title>bench</title>";
        }
    }
}
EOF2
$t->run;

for (my $i = 0; $i < $N; $i += 500) {
    my @batch = map { { type => 'ticket.updated', resourceId => "t-$_",
                        payload => { data => { n => $_, pad => 'x' x 100 } } } }
                $i + 1 .. $i + 500;
    my $r = $t->post_json('/events', \@batch);
    die "POST: $r->{status} $r->{body}" unless $r->{status} == 201;
}

my $url = 'http://127.0.0.1:' . $t->port(1) . '/events/stream';
my %r;
for (`node $REPO/t/node/client-bench.mjs $url $N`) {
    my $j = decode_json($_);
    $r{$j->{client}} = $j;
    printf "%-12s %6d events in %5d ms: %7.0f events/s, %5.1f us CPU/event\n",
        $j->{client}, $j->{events}, $j->{ms}, $j->{events} * 1000 / $j->{ms},
        $j->{cpuMs} * 1000 / $j->{events};
}
my ($a, $b) = @r{'events.js', 'eventsource'};
printf "events.js / eventsource: %.2f x the rate, %.2f x the CPU per event\n",
    $b->{ms} / $a->{ms}, $a->{cpuMs} / $b->{cpuMs}
    if $a && $b;

# in Chromium, beside its own EventSource
if (-x '/usr/bin/chromium'
    && -d "$REPO/t/node/node_modules/puppeteer-core")
{
    my $base = 'http://127.0.0.1:' . $t->port(1);
    for (`node $REPO/t/node/client-bench-browser.js $base $N`) {
        my $j = decode_json($_);
        $r{$j->{client}} = $j;
        printf "%-24s %6d events in %5d ms: %7.0f events/s\n",
            $j->{client}, $j->{events}, $j->{ms},
            $j->{events} * 1000 / $j->{ms};
    }
    ($a, $b) = @r{'events.js (Chromium)', 'EventSource (Chromium)'};
    printf "in Chromium, events.js / EventSource: %.2f x the rate\n",
        $b->{ms} / $a->{ms}
        if $a && $b;
}
$t->stop;
