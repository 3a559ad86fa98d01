#!/usr/bin/perl

# With events_journal, the attempt log survives a restart and a crash:
# the newest 64 attempts of each endpoint are written with the webhook
# state, their excerpts cut to 256 bytes (on a character's start), and
# the numbering goes on after them.  Without a journal there is nothing
# to keep (t/68 covers the endpoints).

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use JSON::PP;
use Time::HiRes qw(time sleep);
use EventsTest;
use EventsTest::Receiver;

my $t = EventsTest->new;
my $rcv = EventsTest::Receiver->new(dir => $t->testdir, name => 'att');

$t->write_config(<<'EOF');
%%GLOBALS%%
http {
    %%HTTP_GLOBALS%%

    events_zone main 8m;
    events_journal main %%TESTDIR%%/journal;

    server {
        listen 127.0.0.1:%%PORT%%;

        events_webhook_allow 127.0.0.1/32;
        events_webhook_retry 100ms;
        events_webhook_log_size 100;
        events_webhook_response_excerpt 2k;

        location /events { events_api main; }
        location /webhooks { events_webhooks main; }

        location = /_events_webhook {
            internal;
            proxy_pass $events_webhook_url;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $events_webhook_host;
        }
    }
}
EOF
$t->run;

# a long UTF-8 answer (cut at 256 on disk), a content type not UTF-8
my $long = "x" . "\x{e9}" x 1500;    # the receiver sends it as UTF-8
$rcv->script('/a', [ { status => 500, body => $long,
    headers => { 'content-type' => "text/plain; x=\xff" } },
    { status => 200, body => 'fine' } ]);
my $a = $t->post_json('/webhooks', { url => $rcv->url('/a'), events => ['a.*'] })
    ->{json};
$rcv->script('/b', { status => 200, body => 'ok' });
my $b = $t->post_json('/webhooks', { url => $rcv->url('/b'), events => ['b.*'] })
    ->{json};

$t->post_json('/events', { type => 'a.x' });
$t->post_json('/events', [ map { { type => 'b.x' } } 1 .. 70 ]);
$rcv->wait_requests('/a', 2, 10);
$rcv->wait_requests('/b', 70, 20);

sub log_of {
    my ($id, $q) = @_;
    my $end = time + 5;
    my $d;
    while (time < $end) {
        $d = $t->get("/webhooks/$id/deliveries?limit=1000" . ($q // ''))->{json};
        last if $d && $d->{data};
        sleep 0.1;
    }
    return $d->{data};
}

my $before_a;
my $end = time + 10;
while (time < $end) {
    $before_a = log_of($a->{id});
    last if @$before_a == 2;
    sleep 0.1;
}
is(scalar @$before_a, 2, 'a: two attempts');
my $before_b = log_of($b->{id});
is(scalar @$before_b, 70, 'b: 70 attempts');
is(length $before_a->[1]{responseExcerpt}, 1024, 'the excerpt as sent is 2k');
like($before_a->[1]{responseContentType}, qr/^text\/plain; x=\x{fffd}?$/,
    'a content type that is not UTF-8: made valid (JSON)');

sleep 1.5;    # delivery progress reaches the state file within a second
kill 'KILL', $t->master_pid, $t->worker_pids;
$t->stop;
$t->run;

my $after_a = log_of($a->{id});
is(scalar @$after_a, 2, 'after kill -9: a has its two attempts');
is_deeply([ map { $_->{id} } @$after_a ], [ map { $_->{id} } @$before_a ],
    'the same attempt ids');
my %same = map { $_ => 1 } qw(eventId seq type attempt trigger startedAt
    durationMs result httpStatus error errorDetail nextAttemptAt
    responseContentType);
for my $k (sort keys %same) {
    is_deeply([ map { $_->{$k} } @$after_a ], [ map { $_->{$k} } @$before_a ],
        "a: $k kept");
}
is($after_a->[0]{responseExcerpt}, 'fine', 'the short excerpt kept');
is($after_a->[1]{responseExcerpt}, "x" . "\x{e9}" x 127,
    'the long excerpt cut to 256 bytes, whole characters');

my $after_b = log_of($b->{id});
is(scalar @$after_b, 64, 'b: the newest 64 kept');
is_deeply([ map { $_->{id} } @$after_b ],
    [ map { $_->{id} } @$before_b[0 .. 63] ], 'b: the newest, in order');

# paging and the filters work on what was restored
my $page = $t->get("/webhooks/$b->{id}/deliveries?limit=50")->{json};
is(scalar @{ $page->{data} }, 50, 'a first page');
my $next = $t->get("/webhooks/$b->{id}/deliveries?limit=50&after="
    . $page->{nextCursor})->{json};
is(scalar @{ $next->{data} }, 14, 'the rest on the next page');
is(scalar @{ log_of($a->{id}, '&status=failed') }, 1, 'status=failed');

# the numbering goes on: a new attempt is the newest, ids stay unique
$t->post_json('/events', { type => 'b.x' });
$rcv->wait_requests('/b', 71, 10);
$end = time + 5;
my $now;
while (time < $end) {
    $now = log_of($b->{id});
    last if @$now == 65;
    sleep 0.1;
}
is(scalar @$now, 65, 'a new attempt is added');
isnt($now->[0]{id}, $now->[1]{id}, 'newest first, a new id');
is($now->[1]{id}, $after_b->[0]{id}, 'after the restored ones');

# a restart (not a crash) keeps them too
$t->stop;
$t->run;
is(scalar @{ log_of($b->{id}) }, 64, 'after a restart: 64 kept again');

$rcv->stop;
$t->done;
