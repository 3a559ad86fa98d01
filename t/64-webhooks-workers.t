#!/usr/bin/perl

# The dispatcher across workers: one worker at a time holds the lease;
# SIGKILL it or reload nginx in the middle of a run and every event is
# still delivered at least once.  A slow endpoint does not hold up the
# fast ones.  The status page shows the dispatcher and the counters.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use JSON::PP;
use Time::HiRes qw(time sleep);
use EventsTest;
use EventsTest::Receiver;

my $t = EventsTest->new;
my $rcv = EventsTest::Receiver->new(dir => $t->testdir, name => 'r1');

$t->write_config(<<'EOF');
%%GLOBALS%%
http {
    %%HTTP_GLOBALS%%

    events_zone main 32m;

    server {
        listen 127.0.0.1:%%PORT%%;

        events_webhook_allow_private on;
        events_webhook_retry 1s 1s 1s 1s 1s;

        location /events { events_api main; }
        location /webhooks { events_webhooks main; }
        location = /events-status { events_status main; }

        location = /_events_webhook {
            internal;
            proxy_pass $events_webhook_url;
            proxy_set_header Host $events_webhook_host;
            proxy_read_timeout 10s;
        }
    }

    # fast receivers: nginx itself
    server {
        listen 127.0.0.1:%%PORT_2%%;
        location / { return 200 ok; }
    }
}
EOF
$t->run;

sub endpoint {
    my ($path, $type) = @_;
    my $r = $t->post_json('/webhooks', { url => $rcv->url($path),
        events => [$type] });
    die "create: $r->{body}" unless $r->{status} == 201;
    return $r->{json};
}

sub publish_batch {
    my ($type, $n, $tag) = @_;
    my $r = $t->post_json('/events', [ map { { type => $type,
        resourceId => "$tag-$_" } } 1 .. $n ]);
    die "publish: $r->{body}" unless $r->{status} == 201;
    return map { $_->{id} } @{ $r->{json}{data} };
}

sub status { $t->get('/events-status')->{json}{webhooks} }

sub delivered_ids {
    my %seen;
    $seen{ $_->{headers}{'webhook-id'} }++ for $rcv->requests($_[0]);
    return \%seen;
}

# Until every id is delivered, for as long as deliveries keep coming:
# how many a second depends on the machine's load (each request is a
# fork of the receiver), so the bound is on a stall, $stall seconds
# without one more id (a lost event), and 120 s in all.
sub wait_all {
    my ($path, $ids, $stall) = @_;
    my $end = time + $t->scale(120);
    my ($seen, $left, $fewer, $progress) = ({}, scalar @$ids, undef, time);
    while (1) {
        $seen = delivered_ids($path);
        $left = grep { !$seen->{$_} } @$ids;
        return (0, $seen) unless $left;
        ($fewer, $progress) = ($left, time)
            if !defined $fewer || $left < $fewer;
        last if time - $progress > $t->scale($stall) || time > $end;
        sleep 0.5;
    }
    return ($left, $seen);
}

# one dispatcher, shown on the status page
my $st = status();
my @workers = $t->worker_pids;
ok($st->{dispatcherPid}, 'a dispatcher');
ok(grep({ $_ == $st->{dispatcherPid} } @workers), 'it is one of the workers');

# SIGKILL of the dispatcher in the middle of a run
$rcv->script('/k', { status => 200, delay => 0.05 });
endpoint('/k', 'k.*');
my @ids = publish_batch('k.x', 100, 'a');
sleep 0.3;
my $victim = status()->{dispatcherPid};
kill 'KILL', $victim;
$t->expect_log(qr/worker process $victim exited on signal 9/);
push @ids, publish_batch('k.x', 100, 'b');
my ($missing, $seen) = wait_all('/k', \@ids, 15);
is($missing, 0, 'every event delivered after the dispatcher was killed');
my $new = status()->{dispatcherPid};
ok($new && $new != $victim, "another worker took over ($victim -> $new)");

# a reload in the middle of a run
$rcv->reset_log;
@ids = publish_batch('k.x', 100, 'c');
sleep 0.2;
ok($t->reload, 'reloaded');
push @ids, publish_batch('k.x', 100, 'd');
($missing) = wait_all('/k', \@ids, 15);
is($missing, 0, 'every event delivered across the reload');
my %now = map { $_ => 1 } $t->worker_pids;
ok($now{ status()->{dispatcherPid} }, 'a new worker dispatches');

# 1000 events to three endpoints, one of them slow: the fast ones are
# nginx itself, the slow one takes 2 s to answer each
$rcv->reset_log;
$rcv->script('/slow', { status => 200, delay => 2 });
my $fport = $t->port(2);
my @fast = map { my $r = $t->post_json('/webhooks', {
    url => "http://127.0.0.1:$fport/fast$_", events => ['m.*'] });
    die "create: $r->{body}" unless $r->{status} == 201; $r->{json} } 1 .. 2;
endpoint('/slow', 'm.*');
my $start = time;
publish_batch('m.x', 100, "m$_") for 1 .. 10;
my ($ok1, $ok2) = (0, 0);
my $end = time + 60;
while (time < $end) {
    ($ok1, $ok2) = map { $t->get("/webhooks/$_->{id}")->{json}{stats}{ok} }
        @fast;
    last if $ok1 == 1000 && $ok2 == 1000;
    sleep 0.2;
}
my $took = time - $start;
is($ok1 + $ok2, 2000, 'both fast endpoints got all 1000');
my $slow = scalar $rcv->requests('/slow');
ok($slow < 100, "meanwhile the slow one got $slow");
ok($took < $t->scale(30), sprintf('the fast ones took %.1fs', $took));
diag sprintf('1000 events to 2 fast endpoints in %.1fs, slow one: %d',
    $took, $slow);

$st = status();
ok($st->{ok} >= 2400, "status: $st->{ok} ok");
ok($st->{pending} > 0, "status: $st->{pending} pending (the slow one)");
ok($st->{oldestPendingAgeMs} > 0, 'status: the oldest pending age');
is($st->{endpoints}, 4, 'status: 4 endpoints');
my $prom = $t->get('/events-status?format=prometheus')->{body};
like($prom, qr/^events_webhook_delivered_total\{zone="main"\} \d+$/m,
    'prometheus: delivered');
like($prom, qr/^events_webhook_errors_total\{zone="main",error="E_TIMEOUT"\} 0$/m,
    'prometheus: errors by code');

$t->done;
