#!/usr/bin/perl

# Webhook delivery benchmark: deliveries per second and delivery latency
# (event accepted -> receiver got it), p50 and p95, to a fast loopback
# receiver with 1, 10 and 100 endpoints.  The receiver is a second
# server block of the same nginx that answers 200 and logs $msec and
# the webhook-id, so both sides share the two cores, as they would.
#
#   T_MODULE=build/ngx_http_events_module.so t/bench/webhooks.pl
#
# Environment: BENCH_DELIVERIES (per run, default 20000), BENCH_ENDPOINTS
# (default "1 10 100"), BENCH_CONCURRENCY (events_webhook_concurrency,
# default 64), BENCH_ENDPOINT_CONCURRENCY (default 4), BENCH_TLS=1 (the
# receiver speaks https with a certificate the proxy verifies).
#
# No peer publishes such a figure; the comparison is with the 5000/s
# target of the issue.  Only 127.0.0.1 is used.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/../lib";
use Time::HiRes qw(time sleep);
use Time::Local qw(timegm);
use JSON::PP;
use Test::More;
use EventsTest;

my $deliveries = $ENV{BENCH_DELIVERIES} // 20000;
my @counts = split ' ', ($ENV{BENCH_ENDPOINTS} // '1 10 100');
my $conc = $ENV{BENCH_CONCURRENCY} // 64;
my $econc = $ENV{BENCH_ENDPOINT_CONCURRENCY} // 4;
my $tls = $ENV{BENCH_TLS};

my $t = EventsTest->new;
my $dir = $t->testdir;
my ($scheme, $ssl, $listen_ssl) = ('http', '', '');

if ($tls) {
    system("openssl req -x509 -newkey rsa:2048 -nodes -keyout $dir/tls.key"
        . " -out $dir/tls.crt -days 1 -subj /CN=localhost"
        . " -addext subjectAltName=DNS:localhost 2>/dev/null") == 0
        or die "openssl cannot make a certificate";
    chmod 0644, "$dir/tls.key";
    ($scheme, $listen_ssl) = ('https', ' ssl');
    $ssl = "proxy_ssl_verify on;\n"
        . "            proxy_ssl_name localhost;\n"
        . "            proxy_ssl_server_name on;\n"
        . "            proxy_ssl_trusted_certificate $dir/tls.crt;";
    $listen_ssl .= ";\n        ssl_certificate $dir/tls.crt;\n"
        . "        ssl_certificate_key $dir/tls.key";
}

$t->write_config(<<"EOF");
%%GLOBALS%%
http {
    %%HTTP_GLOBALS%%

    events_zone main 256m;

    log_format hook '\$msec \$http_webhook_id';

    server {
        listen 127.0.0.1:%%PORT%%;
        access_log off;

        events_webhook_allow_private on;
        events_webhook_concurrency $conc;
        events_webhook_endpoint_concurrency $econc;
        events_webhook_log_size 16;
        events_max_body_size 4m;
        client_max_body_size 4m;
        client_body_buffer_size 4m;

        location /events { events_api main; }
        location /webhooks { events_webhooks main; }
        location = /events-status { events_status main; }

        location = /_events_webhook {
            internal;
            proxy_pass \$events_webhook_url;
            proxy_set_header Host \$events_webhook_host;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            $ssl
        }
    }

    server {
        listen 127.0.0.1:%%PORT_2%%$listen_ssl;
        location / {
            access_log %%TESTDIR%%/hook.log hook buffer=64k flush=100ms;
            return 200 ok;
        }
    }
}
EOF
$t->run;

my $rport = $t->port(2);
my @report;

for my $n (@counts) {
    for my $ep (@{ $t->get('/webhooks')->{json}{data} }) {
        $t->req(DELETE => "/webhooks/$ep->{id}");
    }

    my $type = "bench$n.x";
    for my $i (1 .. $n) {
        my $r = $t->post_json('/webhooks', {
            url => "$scheme://127.0.0.1:$rport/r$n/$i", events => ["bench$n.*"] });
        die "create: $r->{body}" unless $r->{status} == 201;
    }

    my $paced = $ENV{BENCH_PACED};
    my $events = int($deliveries / $n);
    my $ok0 = $t->get('/events-status')->{json}{webhooks}{ok};
    my %accepted;
    my $start = time;
    my $left = $events;

    # saturation: batches of 100 as fast as they go; paced: one event
    # every BENCH_PACED ms, to see the latency of an unloaded dispatcher
    while ($left > 0) {
        my $b = $paced ? 1 : $left > 100 ? 100 : $left;
        sleep $paced / 1000 if $paced;
        my $r = $t->post_json('/events',
            [ map { { type => $type } } 1 .. $b ], timeout => 30);
        die "publish: $r->{body}" unless $r->{status} == 201;
        $accepted{ $_->{id} } = accepted($_->{timestamp})
            for @{ $r->{json}{data} };
        $left -= $b;
    }

    my $want = $ok0 + $events * $n;
    my $end = time + 300;
    my $st;
    while (time < $end) {
        $st = $t->get('/events-status')->{json}{webhooks};
        last if $st->{ok} >= $want;
        sleep 0.1;
    }
    sleep 0.3;    # the access log's flush

    my (@lat, $first, $last);
    open my $fh, '<', $t->testdir . '/hook.log' or die;
    while (<$fh>) {
        my ($ms, $id) = split;
        next unless defined $id && exists $accepted{$id};
        push @lat, ($ms - $accepted{$id}) * 1000;
        $last = $ms if !defined $last || $ms > $last;
    }
    close $fh;

    @lat = sort { $a <=> $b } @lat;
    my $got = @lat;
    my $secs = $last - $start;
    push @report, sprintf('%s%s%3d endpoints: %6d deliveries in %5.2fs = %6.0f/s,'
        . ' latency p50 %6.1f ms, p95 %6.1f ms, failed %d',
        $tls ? 'tls, ' : '', $paced ? "paced ${paced}ms, " : '', $n, $got, $secs, $got / $secs, $lat[int($got * 0.5)],
        $lat[int($got * 0.95)], $st->{failed});
    $report[-1] .= ', worker RssAnon ' . join('/', map { rss($_) }
        $t->worker_pids) . ' kB';
    diag $report[-1];
    is($got, $events * $n, "$n endpoints: every delivery arrived");
}

$t->stop;

sub rss {
    open my $fh, '<', "/proc/$_[0]/status" or return '?';
    while (<$fh>) { return $1 if /^RssAnon:\s+(\d+)/ }
    return '?';
}

# the event's timestamp: when the server accepted it
sub accepted {
    my ($y, $mo, $d, $h, $mi, $s, $ms) =
        $_[0] =~ /^(\d+)-(\d+)-(\d+)T(\d+):(\d+):(\d+)\.(\d+)Z$/ or die;
    return timegm($s, $mi, $h, $d, $mo - 1, $y) + $ms / 1000;
}
print "$_\n" for @report;
done_testing;
