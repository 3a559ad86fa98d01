#!/usr/bin/perl

# WebSockets on the stream location, on the wire: the 101 for the RFC's
# own example key, one JSON text frame per event (the envelope, cursor
# first) and control messages; bad handshakes are 400 with exact bodies,
# a foreign Origin 403; frames a client must not send (unmasked, a long
# ping) close 1002; a refusal at a limit is reset "overloaded" and close
# 1013.  permessage-deflate (RFC 7692): the offers taken and declined,
# the answer, compressed events (RSV1) that inflate to the same bytes,
# a client's compressed messages taken, RSV1 where it may not be: 1002.
# Then the ws npm package: pings both ways, fragmented, binary, oversize
# and invalid UTF-8 messages, the close handshake, compressed messages,
# and resume, with and without deflate, the same events.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use JSON::PP;
use POSIX qw(WNOHANG);
use Time::HiRes qw(sleep time);
use Compress::Raw::Zlib;
use EventsTest;
use EventsTest::WS;

my $client = "$EventsTest::REPO/t/node/ws-client.js";

ok(-d "$EventsTest::REPO/t/node/node_modules/ws",
    'the ws package is installed (make test does it)')
    or BAIL_OUT('run make test, or npm install in t/node');

my $t = EventsTest->new;

$t->write_config(<<'EOF2');
%%GLOBALS%%
http {
    %%HTTP_GLOBALS%%

    events_zone main 4m;

    server {
        listen 127.0.0.1:%%PORT%%;

        events_tenant $http_x_tenant;
        events_heartbeat 1s;

        location = /events/stream {
            events_stream main;
        }

        location = /capped/stream {
            events_stream main;
            events_stream_max_subscribers 1;
            # the held streams here do not answer pings
            events_heartbeat 1h;
        }

        location = /cors/stream {
            events_stream main;
            events_cors https://app.example;
        }

        location = /plain/stream {
            events_stream main;
            events_ws_deflate off;
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

my $port = $t->port;
my $JSON = JSON::PP->new->canonical;

sub post {
    my ($type, %h) = @_;
    my $r = $t->post_json('/events', { type => $type }, headers => {%h});
    die "POST: $r->{status} $r->{body}" unless $r->{status} == 201;
    return $r->{json};
}

sub subscribers {
    $t->get('/events-status')->{json}{streams}{subscribers};
}

sub wait_subscribers {
    my ($n) = @_;
    my $deadline = time + $t->scale(10);
    sleep 0.05 while subscribers() != $n && time < $deadline;
    return subscribers();
}

###########################################################################
# The handshake, byte for byte (RFC 6455 1.3's example key)

my $e1 = post('hs.one');

my $ws = EventsTest::WS->open($t, '/events/stream?types=hs.*&lastEventId=earliest',
    key => 'dGhlIHNhbXBsZSBub25jZQ==');
is($ws->status, 101, 'the handshake: 101');
like($ws->head, qr{\AHTTP/1\.1 101 Switching Protocols\r\n}, 'status line');
is($ws->headers->{upgrade}, 'websocket', 'Upgrade: websocket');
is(lc($ws->headers->{connection} // ''), 'upgrade', 'Connection: upgrade');
is($ws->headers->{'sec-websocket-accept'}, 's3pPLMBiTxaQ9kYGzzhZRbK+xOo=',
    'Sec-WebSocket-Accept for the RFC example');
ok(!exists $ws->headers->{'content-length'}
    && !exists $ws->headers->{'transfer-encoding'}, 'no body framing');
ok(!exists $ws->headers->{'sec-websocket-extensions'}, 'no extension');

my $f = $ws->frame;
ok($f && $f->{fin} && $f->{opcode} == 1 && !$f->{masked} && !$f->{rsv},
    'an event: one unmasked, final text frame');
like($f->{payload}, qr/\A\{"cursor":"[A-Za-z0-9_-]{36}","id":"\Q$e1->{id}\E","seq":$e1->{seq},"type":"hs\.one",/,
    'the envelope, its cursor first');
is_deeply([ sort grep { $_ ne 'cursor' } keys %{ $f->{json} } ],
    [ sort keys %{ $t->get("/events/$e1->{id}")->{json} } ],
    'and otherwise the envelope of GET /events/{id}');
my $cursor = $f->{json}{cursor};

$f = $ws->frame;
is($f && $f->{payload},
    qq({"control":"ready","replayed":1,"head":"$cursor"}),
    'then ready, exactly');

my $e2 = post('hs.two');
$f = $ws->frame(3);
is($f && $f->{json}{seq}, $e2->{seq}, 'live');
is($f && $f->{json}{id}, $e2->{id}, 'the event');

$f = $ws->frame(3);
ok($f && $f->{opcode} == 0x9 && $f->{len} == 0,
    'a ping after events_heartbeat of silence');
$ws->send_frame(0xA, '');

# the client's close: answered with the same code, then the end
ok($ws->send_frame(0x8, pack('n', 1000) . 'done'), 'close 1000');
$f = $ws->frame(3);
ok($f && $f->{opcode} == 0x8 && $f->{code} == 1000, 'answered: close 1000')
    or diag(explain($f));
ok(!$ws->frame(3) && $ws->eof, 'then the server closes TCP');
is(wait_subscribers(0), 0, 'no subscriber left');

###########################################################################
# Bad handshakes: exact 400 bodies; no Upgrade is an EventSource

my %up = (Upgrade => 'websocket', Connection => 'Upgrade',
    'Sec-WebSocket-Key' => 'dGhlIHNhbXBsZSBub25jZQ==',
    'Sec-WebSocket-Version' => 13);

sub handshake {
    my (%h) = @_;
    my %all = (%up, %h);
    my @pairs = map { [$_, $all{$_}] } sort keys %all;
    return $t->get($h{path} // '/events/stream', headers => \@pairs);
}

sub body400 {
    my ($message) = @_;
    return '{"error":{"status":400,"code":"invalid_handshake","message":'
        . JSON::PP->new->encode([$message]) =~ s/^\[|\]$//gr . '}}';
}

my @bad = (
    [ { Connection => 'keep-alive' },
        'a WebSocket handshake needs "Connection: Upgrade"', 'no Upgrade in Connection' ],
    [ { 'Sec-WebSocket-Version' => 8 },
        'Sec-WebSocket-Version must be 13', 'version 8' ],
    [ { 'Sec-WebSocket-Version' => undef },
        'Sec-WebSocket-Version must be 13', 'no version' ],
    [ { 'Sec-WebSocket-Key' => undef },
        'Sec-WebSocket-Key must be 16 bytes in base64', 'no key' ],
    [ { 'Sec-WebSocket-Key' => 'c2hvcnQ=' },
        'Sec-WebSocket-Key must be 16 bytes in base64', 'a short key' ],
    [ { 'Sec-WebSocket-Key' => '!' x 24 },
        'Sec-WebSocket-Key must be 16 bytes in base64', 'a key not base64' ],
    [ { 'Sec-WebSocket-Key' => 'dGhlIHNhbXBsZSBub25jZSEh' },
        'Sec-WebSocket-Key must be 16 bytes in base64', 'a key of 18 bytes' ],
);
for my $b (@bad) {
    my ($h, $message, $name) = @$b;
    my $r = handshake(%$h);
    is($r->{status}, 400, "$name: 400");
    is($r->{body}, body400($message), "$name: the body");
    is($r->{headers}{'sec-websocket-version'}, '13',
        "$name: Sec-WebSocket-Version: 13") if $message =~ /Version/;
}

my $w10 = EventsTest::WS->open($t, '/events/stream', version => 'HTTP/1.0');
is($w10->status, 400, 'HTTP/1.0: 400');
is($w10->body, body400('a WebSocket handshake is an HTTP/1.1 request'),
    'HTTP/1.0: the body');

$t->is_error(handshake(path => '/events/stream?types=Bad'), 400,
    'invalid_parameter', 'types', 'the stream filters are checked as for SSE');
$t->is_error(handshake(path => '/events/stream', 'X-Tenant' => 'a b'), 400,
    'invalid_tenant', undef, 'and the tenant');
my $r = $t->req('POST', '/events/stream', headers => [ map { [$_, $up{$_}] }
    sort keys %up ], body => '');
is($r->{status}, 405, 'POST with Upgrade: 405');

# Origin: its own host, or one events_cors allows; no Origin: not a browser
is(EventsTest::WS->open($t, '/events/stream',
    headers => { Origin => "http://127.0.0.1:$port" })->status, 101,
    'same origin: 101');
$ws = EventsTest::WS->open($t, '/events/stream',
    headers => { Origin => 'https://evil.example' });
is($ws->status, 403, 'another origin: 403');
is($ws->body, '{"error":{"status":403,"code":"origin_not_allowed",'
    . '"message":"this Origin may not open a WebSocket here (see '
    . 'events_cors)"}}', 'with its body');
is(EventsTest::WS->open($t, '/cors/stream',
    headers => { Origin => 'https://app.example' })->status, 101,
    'an origin events_cors lists: 101');
is(EventsTest::WS->open($t, '/cors/stream',
    headers => { Origin => 'https://evil.example' })->status, 403,
    'one it does not: 403');

# without "Upgrade: websocket" the same location is an EventSource
$r = $t->get('/events/stream?lastEventId=bad', timeout => 2);
like($r->{headers}{'content-type'} // '', qr{^text/event-stream},
    'no Upgrade: Server-Sent Events') ;
$r = $t->get('/events/stream', headers => { Upgrade => 'h2c',
    Connection => 'Upgrade' }, timeout => 2);
like($r->{headers}{'content-type'} // '', qr{^text/event-stream},
    'Upgrade: h2c is not ours: Server-Sent Events');

###########################################################################
# Frames a client must not send: close 1002

wait_subscribers(0);
$ws = EventsTest::WS->open($t, '/events/stream');
$ws->send_frame(0x1, '{"a":1}', unmasked => 1);
my @f = $ws->frames_until(sub { $_[0]{opcode} == 8 }, timeout => 3);
is($f[-1] && $f[-1]{code}, 1002, 'an unmasked frame: close 1002');
ok(!$ws->frame(3) && $ws->eof, 'and the end');

$ws = EventsTest::WS->open($t, '/events/stream');
$ws->send_frame(0x9, 'p' x 126);
@f = $ws->frames_until(sub { $_[0]{opcode} == 8 }, timeout => 3);
ok(@f && $f[-1]{opcode} == 8 && $f[-1]{len} == 0,
    'a ping of 126 bytes: a close (wslay gives it no code)')
    or diag(explain(\@f));
ok(!$ws->frame(3) && $ws->eof, 'and the end');

$ws = EventsTest::WS->open($t, '/events/stream');
$ws->send_frame(0x1, '{}', rsv => 4);
@f = $ws->frames_until(sub { $_[0]{opcode} == 8 }, timeout => 3);
is($f[-1] && $f[-1]{code}, 1002, 'RSV1 without an extension: close 1002');

# frames sent with the handshake, before the 101 came back
$ws = EventsTest::WS->open($t, '/events/stream',
    after => EventsTest::WS->frame_bytes(0x9, 'early'));
$f = $ws->frame(3);
ok($f && $f->{opcode} == 0xA && $f->{payload} eq 'early',
    'a ping sent with the handshake is answered');
is(wait_subscribers(1), 1, 'the stream runs');
$ws->close;
is(wait_subscribers(0), 0, 'a client gone without a close: unsubscribed');

###########################################################################
# permessage-deflate (RFC 7692)

my $ANSWER = 'permessage-deflate; server_no_context_takeover';

sub inflate { EventsTest::WS::inflate(@_) }

sub offer {
    my ($offer, $path) = @_;
    return EventsTest::WS->open($t, $path // '/events/stream?types=zz.*',
        headers => { 'Sec-WebSocket-Extensions' => $offer });
}

# the offers a browser and ws make, and others taken
my @taken = (
    [ 'permessage-deflate; client_max_window_bits', $ANSWER,
        'as browsers offer it' ],
    [ 'permessage-deflate', $ANSWER, 'bare' ],
    [ 'permessage-deflate; server_no_context_takeover; '
        . 'client_no_context_takeover; client_max_window_bits=9', $ANSWER,
        'all but server_max_window_bits' ],
    [ 'permessage-deflate; server_max_window_bits=10',
        "$ANSWER; server_max_window_bits=10", 'server_max_window_bits=10' ],
    [ 'permessage-deflate; server_max_window_bits="12"',
        "$ANSWER; server_max_window_bits=12", 'a quoted value' ],
    [ 'x-webkit-deflate-frame, PerMessage-Deflate ; server_max_window_bits=15',
        "$ANSWER; server_max_window_bits=15",
        'after another extension, in any case' ],
    [ 'permessage-deflate; server_max_window_bits=16, permessage-deflate; '
        . 'server_max_window_bits=9', "$ANSWER; server_max_window_bits=9",
        'the first offer declined, the second taken' ],
    [ ' , ,permessage-deflate ,', $ANSWER, 'empty elements of the list' ],
);
for my $o (@taken) {
    my ($offer, $answer, $name) = @$o;
    my $w = offer($offer);
    is($w->status, 101, "$name: 101");
    is($w->headers->{'sec-websocket-extensions'}, $answer,
        "$name: answered \"$answer\"");
}

# declined by not answering (7.1): the stream goes on without it
for my $o (
    [ 'permessage-deflate; server_max_window_bits=7', 'window 7' ],
    [ 'permessage-deflate; server_max_window_bits=16', 'window 16' ],
    [ 'permessage-deflate; server_max_window_bits=8',
        'window 8 (zlib cannot make it raw)' ],
    [ 'permessage-deflate; server_max_window_bits=09', 'a leading zero' ],
    [ 'permessage-deflate; server_max_window_bits', 'window without value' ],
    [ 'permessage-deflate; client_max_window_bits=16', 'client window 16' ],
    [ 'permessage-deflate; client_no_context_takeover; '
        . 'client_no_context_takeover', 'a repeated parameter' ],
    [ 'permessage-deflate; server_no_context_takeover=1',
        'a value where there is none' ],
    [ 'permessage-deflate; mystery', 'an unknown parameter' ],
    [ 'permessage-deflate; server_max_window_bits="10', 'an open quote' ],
    [ 'x-webkit-deflate-frame', 'another extension only' ],
    [ ', permessage-deflate; server_max_window_bits=16 ,', 'empty elements' ],
)
{
    my ($offer, $name) = @$o;
    my $w = offer($offer);
    is($w->status, 101, "$name: 101");
    ok(!exists $w->headers->{'sec-websocket-extensions'},
        "$name: declined, not answered");
}

my $off = offer('permessage-deflate', '/plain/stream?types=zz.*');
is($off->status, 101, 'events_ws_deflate off: 101');
ok(!exists $off->headers->{'sec-websocket-extensions'},
    'events_ws_deflate off: not answered');

# the same event, compressed and not: the same bytes once inflated
wait_subscribers(0);
my $zz = '/events/stream?types=zz.*&lastEventId=earliest';
my ($wz, $wz10, $wp) = (offer('permessage-deflate', $zz),
    offer('permessage-deflate; server_max_window_bits=10', $zz),
    EventsTest::WS->open($t, $zz));
for my $w ($wz, $wz10, $wp) {
    my $ready = $w->frame(3);
    ok($ready && $ready->{rsv} == 0
        && ($ready->{json}{control} // '') eq 'ready',
        'ready: shorter than 128 bytes, not compressed');
}
my $ez = $t->post_json('/events', { type => 'zz.big',
    payload => { data => { text => 'the quick brown fox ' x 20 } } });
is($ez->{status}, 201, 'an event of 400 bytes and more');
my ($fz, $f10, $fp) = ($wz->frame(3), $wz10->frame(3), $wp->frame(3));
ok($fp && $fp->{rsv} == 0 && $fp->{json}{seq} == $ez->{json}{seq},
    'without deflate: RSV clear, the event');
ok($fz && $fz->{rsv} == 4 && $fz->{fin} && $fz->{opcode} == 1,
    'with deflate: one text frame with RSV1');
is($fz && inflate($fz->{deflated}), $fp && $fp->{payload},
    'inflated: the same bytes as without');
cmp_ok(length($fz->{deflated} // ''), '<', length($fp->{payload} // '') / 2,
    'and half of them or less')
    or diag(length($fz->{deflated}) . ' of ' . length($fp->{payload})
        . ": $fp->{payload}");
ok($f10 && $f10->{rsv} == 4
    && inflate($f10->{deflated}, 10) eq $fp->{payload},
    'server_max_window_bits=10: inflates with a 1 KB window');
isnt(substr($fz->{deflated} // '', -4), "\x00\x00\xff\xff",
    'the trailing 00 00 ff ff is cut');

# a client's compressed message: taken (and dropped), the stream goes on
my $d = Compress::Raw::Zlib::Deflate->new(-WindowBits => -15,
    -AppendOutput => 1);
my $zipped = '';
$d->deflate('{"hello":"' . ('x' x 300) . '"}', $zipped);
$d->flush($zipped, Z_SYNC_FLUSH);
ok($wz->send_frame(0x1, substr($zipped, 0, -4), rsv => 4),
    'a compressed message from the client');
my $e3 = post('zz.after');
my $fa = $wz->frame(3);
is($fa && $fa->{rsv} == 4 && $fa->{json}{seq}, $e3->{seq},
    'RSV1 on a message: the stream goes on')
    or diag(explain($fa));

# RSV1 on a control frame, RSV2 anywhere: close 1002, deflate or not
$wz->send_frame(0x9, 'p', rsv => 4);
@f = $wz->frames_until(sub { $_[0]{opcode} == 8 }, timeout => 3);
is($f[-1] && $f[-1]{code}, 1002, 'RSV1 on a ping: close 1002');
ok(!$f[-1] || $f[-1]{rsv} == 0, 'the close is not compressed');
$wz10->send_frame(0x1, '{}', rsv => 2);
@f = $wz10->frames_until(sub { $_[0]{opcode} == 8 }, timeout => 3);
is($f[-1] && $f[-1]{code}, 1002, 'RSV2 with deflate: close 1002');
$off = offer('permessage-deflate', '/plain/stream?types=zz.*');
$off->send_frame(0x1, '{}', rsv => 4);
@f = $off->frames_until(sub { $_[0]{opcode} == 8 }, timeout => 3);
is($f[-1] && $f[-1]{code}, 1002,
    'RSV1 where deflate was declined: close 1002');
$wp->close;

###########################################################################
# A refusal at a limit: reset "overloaded", close 1013, exactly

my (@held, @refused);
for (1 .. 40) {
    my $w = EventsTest::WS->open($t, '/capped/stream');
    my $first = $w->frame(1.5);
    if ($first && $first->{opcode} == 1) {
        push @refused, [ $w, $first ];
    } else {
        push @held, $w;
    }
    last if @held == 2 && @refused >= 4;
}
is(scalar @held, 2, 'one stream held in each worker');
cmp_ok(scalar @refused, '>=', 4, 'the others refused');

my %retries;
my $exact = 0;
for (@refused) {
    my ($w, $first) = @$_;
    my $close = $w->frame(2);
    if ($w->status == 101
        && $first->{payload} =~ /\A\{"control":"reset","reason":"overloaded","retry":(\d+)\}\z/
        && $1 >= 3000 && $1 <= 6000
        && $close && $close->{opcode} == 8
        && $close->{payload} eq pack('n', 1013) . 'overloaded')
    {
        $exact++;
        $retries{$1}++;
    } else {
        diag(explain([$first, $close]));
    }
    $w->send_frame(0x8, pack('n', 1013));
}
is($exact, scalar @refused,
    'each: 101, reset "overloaded" with a retry in [3 s, 6 s], close 1013');
cmp_ok(scalar keys %retries, '>', 1, 'the retry is jittered')
    or diag(explain(\%retries));
is(wait_subscribers(2), 2, 'the refused are not counted')
    or diag(explain($t->get('/events-status')->{json}{workers}));
$_->close for @held;

###########################################################################
# The ws npm package

wait_subscribers(0);
my $out = `node $client proto 'ws://127.0.0.1:$port/events/stream' 'http://127.0.0.1:$port/events'`;
my $res = eval { JSON::PP->new->decode($out) } // {};
is($res->{pong}, 'hello', 'ws: its ping is answered with its payload')
    or diag($out);
is($res->{serverPing}, JSON::PP::true, 'ws: the server pings');
is($res->{fragmented}, JSON::PP::true,
    'ws: a fragmented message is taken, the stream goes on');
is($res->{binary}, JSON::PP::true, 'ws: a binary message is dropped');
is_deeply($res->{close}, { code => 1000, reason => 'bye' },
    'ws: the close handshake, its code echoed');
is($res->{oversize} && $res->{oversize}{code}, 1009,
    'ws: a message past 4k: close 1009');
is($res->{oversizeFragmented} && $res->{oversizeFragmented}{code}, 1009,
    'ws: fragments past 4k: close 1009');
is($res->{badUtf8} && $res->{badUtf8}{code}, 1007,
    'ws: invalid UTF-8 text: close 1007');
is($res->{deflate}, 'permessage-deflate; server_no_context_takeover',
    'ws with perMessageDeflate: the extension answered');
is($res->{compressed}, JSON::PP::true,
    'ws: a compressed message of 5k inflated, 30 bytes sent: taken');
is($res->{compressedOversize} && $res->{compressedOversize}{code}, 1009,
    'ws: one whose compressed bytes are past 4k: close 1009');

# resume with ?lastEventId=, filters, tenant
my $from = $t->get('/events?limit=1')->{json}{head};
my @acme = map { post("rs.$_", 'X-Tenant' => 'acme')->{seq} } 1 .. 3;
my @want = (post('rs.other')->{seq});               # no tenant
post('xx.nope');                                    # another type
my $log = $t->testdir . '/follow.jsonl';
my $pid = fork // die "fork: $!";
if ($pid == 0) {
    exec('node', $client, 'follow',
        "ws://127.0.0.1:$port/events/stream?types=rs.*&lastEventId=$from",
        $log, 3, 15000) or POSIX::_exit(127);
}

# the tenant's own, from the same cursor
my $tw = EventsTest::WS->open($t,
    "/events/stream?types=rs.*&lastEventId=$from",
    headers => { 'X-Tenant' => 'acme' });
my @tf = $tw->frames_until(sub { ($_[0]{json}{control} // '') eq 'ready' });
is_deeply([ map { $_->{json}{seq} } grep { !$_->{json}{control} } @tf ],
    \@acme, "a tenant's stream: its events after the cursor, that type only")
    or diag(explain(\@tf));

is(wait_subscribers(2), 2, 'both streams live');
push @want, map { post("rs.$_")->{seq} } 4 .. 5;
my $deadline = time + $t->scale(15);
my $done = 0;
while (time < $deadline) {
    last if ($done = waitpid($pid, WNOHANG)) == $pid;
    sleep 0.1;
}
if ($done != $pid) {
    kill 'KILL', $pid;
    waitpid($pid, 0);
}
is($? >> 8, 0, 'ws follow: got its 3 events');
my @lines = map { JSON::PP->new->decode($_) } do {
    open(my $fh, '<', $log) or die; <$fh> };
is_deeply([ map { $_->{seq} } grep { $_->{seq} } @lines ], \@want,
    'replay then live, in order, its tenant and type only');
ok((grep { $_->{control} && $_->{control} eq 'ready' } @lines) == 1,
    'one ready between');
is((grep { $_->{open} } @lines)[0]{extensions},
    'permessage-deflate; server_no_context_takeover',
    'ws follow offered deflate (its default), it was agreed');

# the same from the same cursor without deflate: the same events, bytes
my $plain = $t->testdir . '/follow-plain.jsonl';
{
    local $ENV{WS_DEFLATE} = '0';
    system('node', $client, 'follow',
        "ws://127.0.0.1:$port/events/stream?types=rs.*&lastEventId=$from",
        $plain, 3, 15000);
}
is($? >> 8, 0, 'ws follow without deflate: got its 3 events');
my @plain = map { JSON::PP->new->decode($_) } do {
    open(my $fh, '<', $plain) or die; <$fh> };
is((grep { $_->{open} } @plain)[0]{extensions}, undef,
    'no extension offered, none answered');
my $ev = sub { [ map { $JSON->encode($_) } grep { $_->{seq} } @_ ] };
is_deeply($ev->(@plain), $ev->(@lines),
    'the same events, byte for byte (their SHA-1), as with deflate');
$tf[0] = $tw->frame(2);
is($tf[0] && $tf[0]{json}{seq}, undef, "the tenant's stream saw none of them");

$t->done;
