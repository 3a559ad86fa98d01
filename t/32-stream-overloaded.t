#!/usr/bin/perl

# Limits that keep browsers coming back: a stream refused at
# events_stream_max_subscribers is a 200 event stream with a jittered
# retry and a reset "overloaded" (no id: the client keeps its cursor),
# then ends; the eventsource npm client reconnects by itself, gets in
# once a slot frees and misses nothing.  HTTP/2: many streams on one
# connection (a browser holds at most 6 over HTTP/1.1), with curl and
# node's http2 client.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use POSIX qw(WNOHANG);
use Time::HiRes qw(sleep time);
use EventsTest;
use EventsTest::SSE;

my $client = "$EventsTest::REPO/t/node/eventsource-client.js";
my $h2 = "$EventsTest::REPO/t/node/h2-streams.js";

ok(-d "$EventsTest::REPO/t/node/node_modules/eventsource",
    'the eventsource package is installed (make test does it)')
    or BAIL_OUT('run make test, or npm install in t/node');

my $t = EventsTest->new;
my $dir = $t->testdir;

# a self-signed certificate for the HTTP/2 server
system('openssl', 'req', '-x509', '-newkey', 'ec', '-pkeyopt',
    'ec_paramgen_curve:P-256', '-nodes', '-days', '1', '-subj',
    '/CN=127.0.0.1', '-keyout', "$dir/key.pem", '-out', "$dir/cert.pem")
    == 0 or BAIL_OUT('openssl req failed');

$t->write_config(<<'EOF2');
%%GLOBALS%%
http {
    %%HTTP_GLOBALS%%

    events_zone main 4m;

    server {
        listen 127.0.0.1:%%PORT%%;
        listen 127.0.0.1:%%PORT_2%% ssl http2;

        ssl_certificate     %%TESTDIR%%/cert.pem;
        ssl_certificate_key %%TESTDIR%%/key.pem;

        events_stream_retry 500ms;

        location = /events/stream {
            events_stream main;
        }

        location = /capped/stream {
            events_stream main;
            events_stream_max_subscribers 1;
        }

        location /events {
            events_api main;
        }

        location = /events-status {
            events_status main;
        }
    }
}
EOF2

$t->run;

sub post { $t->post_json('/events', { type => "ov.$_[0]" })->{json} }

sub subscribers {
    $t->get('/events-status')->{json}{streams}{subscribers};
}

sub wait_subscribers {
    my ($n) = @_;
    my $deadline = time + $t->scale(10);
    sleep 0.05 while subscribers() != $n && time < $deadline;
    return subscribers();
}

sub lines {
    open(my $fh, '<', $_[0]) or return ();
    return map { JSON::PP->new->decode($_) } <$fh>;
}

###########################################################################
# The refusal, byte for byte

# hold one stream in each worker (the cap is per worker); the others
# are refused, and a refused one ends by itself
my (@held, @refused);
for (1 .. 40) {
    my $s = EventsTest::SSE->open($t, '/capped/stream');
    my $body = $s->body(timeout => 0.3);
    if ($s->is_closed) {
        push @refused, $s;
    } else {
        push @held, $s;
    }
    last if @held == 2 && @refused >= 8;
}
is(scalar @held, 2, 'one stream held in each worker');
cmp_ok(scalar @refused, '>=', 8, 'the others refused');

my $r = $refused[0];
is($r->status, 200, 'a refusal is a 200 (a 503 makes browsers give up)');
like($r->headers->{'content-type'}, qr{^text/event-stream; charset=utf-8$},
    'an event stream');

my (%retries, $exact);
for my $s (@refused) {
    my $body = $s->body;
    if ($body =~ /\Aretry: (\d+)\n\nevent: reset\ndata: \{"reason":"overloaded","retry":(\d+)\}\n\n\z/
        && $1 == $2 && $1 >= 500 && $1 <= 1000)
    {
        $exact++;
        $retries{$1}++;
    } else {
        diag("body: $body");
    }
}
is($exact, scalar @refused,
    'each: retry in [retry, 2 * retry], a reset "overloaded", nothing else');
cmp_ok(scalar keys %retries, '>', 1, 'the retry is jittered')
    or diag(explain(\%retries));
ok((grep { $_->is_closed } @refused) == @refused,
    'and each ends with the last chunk');
is(wait_subscribers(2), 2, 'a refused stream is not counted');

$r = EventsTest::SSE->parser;
$r->feed($refused[1]->body);
my $e = $r->next_event(0);
is($e && $e->{event}, 'reset', 'the parser sees a reset');
is($r->last_event_id, '', 'with no id: the client keeps its cursor');

###########################################################################
# A real EventSource comes back by itself and gets in once a slot frees

my $cursor = post('before')->{cursor} // '';
my $last = $t->get('/events?types=ov.*&limit=1')->{json}{head};
ok($last, 'a cursor to resume from');
my @want = map { post("w$_")->{seq} } 1 .. 2;    # after the cursor

my $out = "$dir/client.jsonl";
my $url = 'http://127.0.0.1:' . $t->port
    . "/capped/stream?types=ov.*&lastEventId=$last";

my $pid = fork // die "fork: $!";
if ($pid == 0) {
    exec('node', $client, $url, $out, 6, 30000) or POSIX::_exit(127);
}

my $deadline = time + $t->scale(10);
sleep 0.05 while !(grep { ($_->{event} // '') eq 'reset' } lines($out))
    && time < $deadline;
my @resets = grep { ($_->{event} // '') eq 'reset' } lines($out);
ok(@resets, 'the client was refused');
is($resets[0] && JSON::PP->new->decode($resets[0]{data})->{reason},
    'overloaded', 'with the reason');
push @want, map { post("w$_")->{seq} } 3 .. 4;    # while it is refused

sleep 1.5;
cmp_ok(scalar(grep { ($_->{event} // '') eq 'reset' } lines($out)), '>=', 2,
    'it kept coming back');

$_->close for @held;
@held = ();

# the count goes 2, 1, 0 as the held ones are seen closed (one worker
# after the other), then 1 with the client: its "ready" says it is in
$deadline = time + $t->scale(10);
sleep 0.05 while !(grep { ($_->{event} // '') eq 'ready' } lines($out))
    && time < $deadline;
ok((grep { ($_->{event} // '') eq 'ready' } lines($out)),
    'it got in once slots freed');
is(wait_subscribers(1), 1, 'and it is the one stream left');
push @want, map { post("w$_")->{seq} } 5 .. 6;

$deadline = time + $t->scale(15);
my $done = 0;
while (time < $deadline) {
    last if ($done = waitpid($pid, WNOHANG)) == $pid;
    sleep 0.1;
}
if ($done != $pid) {
    kill 'KILL', $pid;
    waitpid($pid, 0);
}
is($? >> 8, 0, 'the client got its 6 events and exited');
is_deeply([ map { $_->{seq} } grep { $_->{seq} } lines($out) ], \@want,
    'every event once, in order, none lost while it was refused');

###########################################################################
# HTTP/2: more than 6 streams on one connection

wait_subscribers(0);
my $base = 'https://127.0.0.1:' . $t->port(2);

my $cur = $t->get('/events?types=h2.*&limit=1')->{json}{head};
my @h2 = map { $t->post_json('/events', { type => "h2.$_" })->{json}{seq} }
    1 .. 2;

my @curl = `curl -sk --http2 -N --max-time 3 -D - '$base/events/stream?types=h2.*&lastEventId=$cur' 2>&1`;
like($curl[0] // '', qr{^HTTP/2 200}, 'curl --http2: HTTP/2 200');
my $curl = join '', @curl;
like($curl, qr{^content-type: text/event-stream}mi, 'an event stream');
is(scalar(() = $curl =~ /^data: \{.*"seq":(?:\Q$h2[0]\E|\Q$h2[1]\E),/mg), 2,
    'both events replayed');
like($curl, qr{^event: ready\ndata: \{"replayed":2,}m, 'then ready');

my @node = `node $h2 '$base/events/stream?types=h2.*&lastEventId=$cur' 10 2 10000`;
is($? >> 8, 0, 'node http2: 10 streams on one session');
my @ok = grep { $_->{status} == 200 && $_->{type} =~ m{^text/event-stream}
    && $_->{body} =~ /^retry: 500\n\n/ && 2 == (() = $_->{body} =~ /^data: \{"id"/mg) }
    map { JSON::PP->new->decode($_) } @node;
is(scalar @ok, 10, 'each a 200 event stream with both events');

# a refusal over HTTP/2 ends its stream, not the connection
my @caps = `node $h2 '$base/capped/stream?lastEventId=earliest' 4 1 10000`;
is($? >> 8, 0, 'node http2: 4 capped streams on one session');
my @ref = grep { $_->{body} =~ /"reason":"overloaded"/ }
    map { JSON::PP->new->decode($_) } @caps;
cmp_ok(scalar @ref, '>=', 3, 'all but one (per worker) refused, '
    . 'as 200 event streams') if @caps;
is(scalar(grep { $_->{status} != 200 } map { JSON::PP->new->decode($_) } @caps),
    0, 'every answer a 200');

$t->done;
