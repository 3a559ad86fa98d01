#!/usr/bin/perl

# nginx -s reload with 100 open streams: each ends cleanly (a final
# frame and the end of the chunked body), the old workers are gone within
# seconds, and every client that reconnects with its last id misses
# nothing and gets nothing twice.  Then the same for a stream that
# reaches events_stream_max_lifetime.

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

    events_zone main 8m;

    server {
        listen 127.0.0.1:%%PORT%% reuseport;

        location = /events/stream {
            events_stream main;
        }

        location = /short/stream {
            events_stream main;
            events_stream_max_lifetime 1s;
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

my $n = 100;

sub post {
    my $r = $t->post_json('/events', $_[0]);
    die "POST: $r->{status}" unless $r->{status} == 201;
    return $r->{json}{seq};
}

my @s = map { EventsTest::SSE->open($t, '/events/stream') } 1 .. $n;
is(scalar(grep { ($_->status // 0) == 200 } @s), $n, "$n streams open");

my $deadline = time + 5;
sleep 0.05 while $t->get('/events-status')->{json}{streams}{subscribers} < $n
    && time < $deadline;

my @before = map { post({ type => 'reload.before' }) } 1 .. 5;

# each stream has the five, and remembers its last id
my $got_all = 1;
for my $s (@s) {
    my @seq;
    while (@seq < 5 and my $e = $s->next_event(timeout => 3)) {
        push @seq, $e->{json}{seq};
    }
    $got_all &&= "@seq" eq "@before";
}
ok($got_all, 'every stream has the events before the reload');

my @old = $t->worker_pids;
my $t0 = time;
ok($t->reload, 'reloaded');
my $took = time - $t0;
cmp_ok($took, '<', 5, 'the old workers were gone within 5 s')
    or diag("took $took s");

my $clean = 0;
for my $s (@s) {
    my $e;
    1 while ($e = $s->next_event(timeout => 3));
    $clean++ if $s->is_closed;
}
is($clean, $n, 'every stream ended cleanly, with the last chunk');

my @during = map { post({ type => 'reload.during' }) } 1 .. 3;

my ($exact, $dups) = (0, 0);
my @again;
for my $s (@s) {
    push @again, EventsTest::SSE->open($t, '/events/stream',
        headers => { 'Last-Event-ID' => $s->last_event_id });
    $s->close;
}
my @after = map { post({ type => 'reload.after' }) } 1 .. 2;

for my $s (@again) {
    my @seq;
    while (my $e = $s->next_event(timeout => 3)) {
        push @seq, $e->{json}{seq} if $e->{event} eq 'message';
        last if @seq >= 5;
    }
    $exact++ if "@seq" eq "@during @after";
}
is($exact, $n, 'every client resumed with exactly what it missed, then live');
$_->close for @again;

# the stream's lifetime: a clean end, then the client resumes
my $s = EventsTest::SSE->open($t, '/short/stream');
my $e1 = post({ type => 'life.one' });
is($s->next_event(timeout => 2)->{json}{seq}, $e1, 'live before the end');
1 while $s->next_event(timeout => 2);
ok($s->is_closed, 'events_stream_max_lifetime ends the stream cleanly');
my $e2 = post({ type => 'life.two' });
my $r = EventsTest::SSE->open($t, '/short/stream',
    headers => { 'Last-Event-ID' => $s->last_event_id });
is($r->next_event(timeout => 2)->{json}{seq}, $e2, 'and it resumes');
$r->close;

$t->done;
