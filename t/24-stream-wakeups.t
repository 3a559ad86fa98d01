#!/usr/bin/perl

# Waking other workers: a worker without subscribers is never woken,
# wake-ups are per publish request at most (a burst of 10 000 events is
# not 10 000 wake-ups), and the subscriber still gets every event.  Then
# a restart: a cursor from before is from another epoch, and says so.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use Time::HiRes qw(sleep time);
use EventsTest;
use EventsTest::SSE;

my $t = EventsTest->new;

$t->write_config(<<'EOF');
%%GLOBALS%%
http {
    %%HTTP_GLOBALS%%

    events_zone main 32m;
    client_max_body_size 2m;

    server {
        listen 127.0.0.1:%%PORT%% reuseport;

        events_max_body_size 2m;

        location = /events/stream {
            events_stream main;
        }

        location /events {
            events_api main;
        }

        location = /events-status {
            events_status main;
        }
    }
}
EOF

$t->run;

sub workers {
    my %w = map { $_->{pid} => $_ }
        @{ $t->get('/events-status')->{json}{workers} };
    return \%w;
}

my $s = EventsTest::SSE->open($t, '/events/stream?types=w.*', decode => 0);
is($s->status, 200, 'one stream');

my ($holder, $deadline) = (undef, time + 5);
until ($holder || time > $deadline) {
    ($holder) = grep { $_->{subscribers} } values %{ workers() };
    sleep 0.05;
}
ok($holder, 'a worker holds it');
my $hpid = $holder->{pid};

# from fresh connections, so that both workers publish
my $n = 60;
for my $i (1 .. $n) {
    $t->post_json('/events', { type => 'w.one' });
}

my $got = 0;
while ($got < $n and my $e = $s->next_event(timeout => 3)) {
    $got++;
}
is($got, $n, 'the stream got every event');

my $w = workers();
my @others = grep { $_ != $hpid } map { $_->{pid} } values %$w;
my $other_published = 0;
$other_published += $w->{$_}{published} for @others;
cmp_ok($other_published, '>', 0, 'the other worker published too');
is(join(',', map { $w->{$_}{wakeups} } @others) || 0, 0,
    'a worker without subscribers is never woken');
cmp_ok($w->{$hpid}{wakeups}, '>=', 1, 'the holder was woken');
cmp_ok($w->{$hpid}{wakeups}, '<=', $other_published,
    'at most once per publish from the other worker');

# a burst of 10 000 events in 100 requests from 4 clients at once
my $before = $w->{$hpid}{wakeups};
my $one = '{"type":"w.burst","payload":{"data":{"x":1}}}';
my $body = '[' . join(',', ($one) x 100) . ']';
my @res = $t->parallel(n => 4, code => sub {
    my $ok = 0;
    for (1 .. 25) {
        $ok++ if $t->req('POST', '/events', body => $body,
            headers => { 'Content-Type' => 'application/json' })
            ->{status} == 201;
    }
    return $ok;
});
my $ok = 0;
$ok += $_ // 0 for @res;
is($ok, 100, '100 requests of 100 events');

$got = 0;
while ($got < 10000 and my $e = $s->next_event(timeout => 5)) {
    $got++;
}
is($got, 10000, 'the stream got all 10 000');

my $wakeups = workers()->{$hpid}{wakeups} - $before;
cmp_ok($wakeups, '<=', 100, "10 000 events woke the holder $wakeups times");
$s->close;

# a restart without a journal is a new store: old cursors say so
my $last = $s->last_event_id;
$t->restart;
my $r = EventsTest::SSE->open($t, '/events/stream',
    headers => { 'Last-Event-ID' => $last });
is($r->status, 200, 'after a restart, still 200');
my $e = $r->next_event(timeout => 2);
is($e->{event}, 'reset', 'reset');
is($e->{json}{reason}, 'epoch_changed', 'because the epoch changed');
$r->close;

$t->done;
