#!/usr/bin/perl

# The Prometheus page is what Prometheus's own linter accepts (promtool
# check metrics, Debian's prometheus package) with every part of a zone
# alive: a journal, webhooks with endpoints, a delivery pending and
# failures, a stream, captures; and for a bare zone.  Every number of
# the JSON page is in the Prometheus page too, with the same value.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use Time::HiRes qw(time sleep);
use EventsTest;
use EventsTest::Receiver;
use EventsTest::SSE;

my $promtool = '/usr/bin/promtool';
plan(skip_all => "no $promtool: make deps installs Debian's prometheus")
    unless -x $promtool;

my $t = EventsTest->new;
my $rcv = EventsTest::Receiver->new(dir => $t->testdir, name => 'r1');

$t->write_config(<<'EOF');
%%GLOBALS%%
http {
    %%HTTP_GLOBALS%%

    events_zone main 8m;
    events_zone bare 1m;
    events_journal main %%TESTDIR%%/journal fsync=always;

    server {
        listen 127.0.0.1:%%PORT%%;

        events_webhook_allow 127.0.0.1/32;
        events_webhook_retry 1s 1s;

        location = /events/stream { events_stream main; }
        location /events { events_api main; }
        location /webhooks { events_webhooks main; }
        location = /events-status { events_status main; }
        location = /bare-status { events_status bare; }

        location /api/ {
            events_capture header zone=main;
            proxy_pass http://127.0.0.1:%%PORT_2%%;
        }

        location = /_events_webhook {
            internal;
            proxy_pass $events_webhook_url;
            proxy_set_header Host $events_webhook_host;
            proxy_connect_timeout 2s;
            proxy_read_timeout 10s;
        }
    }

    server {
        listen 127.0.0.1:%%PORT_2%%;

        location / {
            add_header X-Event-Emit '{"type":"captured.write"}';
            return 200 "done\n";
        }
    }
}
EOF
$t->run;

# promtool's verdict: (ok, what it said)
sub promtool {
    my ($text) = @_;
    my $file = $t->testdir . '/metrics.txt';
    open my $fh, '>', $file or die "$file: $!";
    print $fh $text;
    close $fh;
    my $out = `$promtool check metrics < $file 2>&1`;
    return ($? == 0 && $out eq '', $out);
}

sub prom { $t->get($_[0] . '?format=prometheus')->{body} }

# one sample's value
sub sample {
    my ($text, $re) = @_;
    return $text =~ /^$re (\S+)$/m ? $1 : undef;
}

my ($ok, $out) = promtool(prom('/bare-status'));
ok($ok, 'promtool: a bare zone') or diag($out);

$rcv->script('/ok', { status => 200 });
$rcv->script('/fail', { status => 500 });
$rcv->script('/slow', { status => 200, delay => 8 });

for my $hook (qw(ok fail slow)) {
    my $r = $t->post_json('/webhooks',
        { url => $rcv->url("/$hook"), events => ["w.$hook"] });
    die "webhook: $r->{body}" unless $r->{status} == 201;
}

my $s = EventsTest::SSE->open($t, '/events/stream');
is($s->status, 200, 'a stream open');

$t->post_json('/events', { type => "w.$_" }) for qw(ok fail slow);
is($t->get('/api/x')->{status}, 200, 'a captured write');
$t->post_json('/events', { type => 'a.b', id => 'one' });
$t->post_json('/events', { type => 'a.b', id => 'one' });

# delivered, failed once, and one still in flight
my ($j, $end) = (undef, time + 15);
while (time < $end) {
    $j = $t->get('/events-status')->{json};
    last if $j->{webhooks}{ok} >= 1 && $j->{webhooks}{errors}{E_HTTP} >= 1
        && $j->{webhooks}{inFlight} >= 1;
    sleep 0.2;
}
cmp_ok($j->{webhooks}{ok}, '>=', 1, 'a delivery done');
cmp_ok($j->{webhooks}{errors}{E_HTTP}, '>=', 1, 'a failure');
cmp_ok($j->{webhooks}{pending}, '>=', 1, 'deliveries pending');
is($j->{capture}{stored}, 1, 'a capture');
is($j->{streams}{subscribers}, 1, 'a subscriber');

my $text = prom('/events-status');
($ok, $out) = promtool($text);
ok($ok, 'promtool: journal, webhooks, stream, capture') or diag($out);

like($text, qr/^events_webhook_oldest_pending_age_seconds\{zone="main"\}
    \ \d+\.\d{3}$/mx, 'the oldest pending age in seconds');
unlike($text, qr/_ms\b/, 'no abbreviated unit');

# every number of the JSON page, by its Prometheus name

$j = $t->get('/events-status')->{json};
$text = prom('/events-status');

my %zone = (
    'events.stored' => 'events_stored_total',
    'events.retained' => 'events_retained',
    'events.evicted' => 'events_evicted_total',
    'events.expired' => 'events_expired_total',
    'events.repeats' => 'events_repeats_total',
    'events.conflicts' => 'events_conflicts_total',
    'events.rejected' => 'events_rejected_total',
    'events.oldestSeq' => 'events_oldest_seq',
    'events.newestSeq' => 'events_newest_seq',
    'events.types' => 'events_types',
    'capture.stored' => 'events_captured_total',
    'capture.invalid' => 'events_capture_invalid_total',
    'validate.rejected' => 'events_validate_rejected_total',
    'validate.failed' => 'events_validate_failed_total',
    'ring.zoneBytes' => 'events_zone_bytes',
    'ring.bytes' => 'events_ring_bytes',
    'ring.used' => 'events_ring_used_bytes',
    'ring.free' => undef,               # bytes - used
    'ring.slots' => 'events_ring_slots',
    'streams.subscribers' => 'sum:events_stream_subscribers',
    'streams.streamed' => 'sum:events_streamed_total',
    'streams.lagging' => 'sum:events_stream_lagging_total',
    'journal.bytes' => 'events_journal_bytes',
    'journal.segments' => 'events_journal_segments',
    'journal.lastFsyncAgeMs' => 'ms:events_journal_last_fsync_age_seconds',
    'journal.fsyncs' => 'events_journal_fsyncs_total',
    'journal.errors' => 'events_journal_errors_total',
    'journal.replayMs' => 'ms:events_journal_replay_seconds',
    'journal.replayed' => 'events_journal_replayed',
    'journal.cutBytes' => 'events_journal_cut_bytes',
    'webhooks.dispatcherPid' => 'events_webhook_dispatcher_pid',
    'webhooks.endpoints' => 'events_webhook_endpoints',
    'webhooks.disabled' => 'events_webhook_endpoints_disabled',
    'webhooks.pending' => 'events_webhook_pending',
    'webhooks.inFlight' => 'events_webhook_in_flight',
    'webhooks.oldestPendingAgeMs'
        => 'ms:events_webhook_oldest_pending_age_seconds',
    'webhooks.ok' => 'events_webhook_delivered_total',
    'webhooks.failed' => 'events_webhook_failed_total',
    'webhooks.expired' => 'events_webhook_expired_total',
    'webhooks.aborted' => 'events_webhook_aborted_total',
    'webhooks.attempts' => 'events_webhook_attempts_total',
    'webhooks.retries' => 'events_webhook_retries_total',
);
my %worker = (
    worker => undef, pid => undef,      # events_worker_info's labels
    starts => 'events_worker_starts_total',
    published => 'events_published_total',
    subscribers => 'events_stream_subscribers',
    streamed => 'events_streamed_total',
    lagging => 'events_stream_lagging_total',
    wakeups => 'events_wakeups_total',
);

# the JSON's numbers, flattened to "a.b"
my %num;
for my $k (keys %$j) {
    next unless ref $j->{$k} eq 'HASH';
    for my $f (keys %{ $j->{$k} }) {
        my $v = $j->{$k}{$f};
        $num{"$k.$f"} = $v if defined $v && !ref $v && $v =~ /^\d+$/;
    }
}
for my $e (keys %{ $j->{webhooks}{errors} }) {
    is(sample($text, "events_webhook_errors_total\\{zone=\"main\","
            . "error=\"$e\"\\}"), $j->{webhooks}{errors}{$e}, "error $e");
}
delete $num{$_} for grep { /^webhooks\.errors/ } keys %num;

# counters move between the two reads: only those still are compared
my %moving = map { $_ => 1 } qw(journal.lastFsyncAgeMs
    webhooks.oldestPendingAgeMs webhooks.attempts webhooks.retries
    webhooks.pending webhooks.inFlight webhooks.failed webhooks.ok);

for my $k (sort keys %num) {
    ok(exists $zone{$k}, "JSON $k has a Prometheus name") or next;
    my $m = $zone{$k} // next;
    if ($m =~ s/^sum://) {
        my $sum = 0;
        $sum += $_ for $text =~ /^$m\{zone="main",worker="\d+"\} (\d+)$/mg;
        is($sum, $num{$k}, "$k = sum of $m");
    } elsif ($m =~ s/^ms://) {
        my $v = sample($text, "$m\\{zone=\"main\"\\}");
        ok(defined $v && $v =~ /^\d+\.\d{3}$/, "$k as $m in seconds");
        is(int($v * 1000 + 0.5), $num{$k}, "$k = $m") unless $moving{$k};
    } else {
        my $v = sample($text, "$m\\{zone=\"main\"\\}");
        ok(defined $v, "$k as $m");
        is($v, $num{$k}, "$k = $m") unless $moving{$k};
    }
}

for my $w (@{ $j->{workers} }) {
    for my $f (sort keys %$w) {
        ok(exists $worker{$f}, "workers[].$f has a Prometheus name") or next;
        my $m = $worker{$f} // next;
        next if $f eq 'wakeups';        # moves with the webhooks
        is(sample($text, "$m\\{zone=\"main\",worker=\"$w->{worker}\"\\}"),
            $w->{$f}, "worker $w->{worker}: $f = $m");
    }
    like($text, qr/^events_worker_info\{zone="main",worker="$w->{worker}",
        pid="$w->{pid}"\}\ 1$/mx, "worker $w->{worker}: its pid");
}

$s->close;
$rcv->stop;
$t->done;
