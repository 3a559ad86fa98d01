#!/usr/bin/perl

# WebSocket streams share the SSE machinery: fan-out across both
# workers, every event once and in order; nginx -s reload closes them
# with 1001 and the ws npm client comes back with ?lastEventId= and
# misses nothing; events_stream_max_lifetime closes 1001 too; a client
# that stops reading is cut off with bounded memory while a reading one
# gets everything; tokens: 401 without one, the grant narrows the types,
# "reauth" before expiry and 1008 at it.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use JSON::PP;
use POSIX qw(WNOHANG);
use Digest::SHA qw(hmac_sha256);
use MIME::Base64 qw(encode_base64url);
use Time::HiRes qw(sleep time);
use EventsTest;
use EventsTest::WS;

my $client = "$EventsTest::REPO/t/node/ws-client.js";

ok(-d "$EventsTest::REPO/t/node/node_modules/ws",
    'the ws package is installed (make test does it)')
    or BAIL_OUT('run make test, or npm install in t/node');

my $t = EventsTest->new;
$t->write_file('hs.key', 's3cret-one');

$t->write_config(<<'EOF2');
%%GLOBALS%%
http {
    %%HTTP_GLOBALS%%

    events_zone main 64m;
    client_max_body_size 4m;

    server {
        listen 127.0.0.1:%%PORT%% reuseport;

        events_max_body_size 4m;
        events_stream_retry 300ms;

        location = /events/stream {
            events_stream main;
            events_stream_max_buffer 1m;
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

    server {
        listen 127.0.0.1:%%PORT_2%%;

        events_auth on;
        events_auth_jwt_key %%TESTDIR%%/hs.key;
        events_auth_query_token on;

        location = /events/stream {
            events_stream main;
        }
    }
}
EOF2

$t->run;

my $port = $t->port;

sub post {
    my $r = $t->post_json('/events', { type => $_[0] });
    die "POST: $r->{status} $r->{body}" unless $r->{status} == 201;
    return $r->{json}{seq};
}

sub status { $t->get('/events-status')->{json} }

sub wait_subscribers {
    my ($n) = @_;
    my $deadline = time + $t->scale(10);
    sleep 0.05 while status()->{streams}{subscribers} != $n
        && time < $deadline;
    return status()->{streams}{subscribers};
}

sub events_of {
    my ($ws, $n, $timeout) = @_;
    my @seq;
    my $deadline = time + $t->scale($timeout // 5);
    while (@seq < $n && time < $deadline) {
        my $f = $ws->frame(timeout => $deadline - time) or last;
        push @seq, $f->{json}{seq} if $f->{json} && $f->{json}{seq};
    }
    return \@seq;
}

###########################################################################
# Both workers: every event to each subscriber once, in order

my @subs = map { EventsTest::WS->open($t, '/events/stream?types=fan.*') }
    1 .. 12;
is(wait_subscribers(12), 12, '12 WebSocket subscribers');
my @holding = grep { $_->{subscribers} > 0 } @{ status()->{workers} };
is(scalar @holding, 2, 'in both workers') or diag(explain(status()->{workers}));

my @want = map { post("fan.$_") } 1 .. 5;
post('other.x');
my $all = 1;
for my $s (@subs) {
    my $got = events_of($s, 5);
    $all &&= "@$got" eq "@want";
    diag("got @$got") unless "@$got" eq "@want";
}
ok($all, 'each got the 5 events once, in order, and nothing else');
$_->close for @subs;
is(wait_subscribers(0), 0, 'closed, unsubscribed');

# the same with permessage-deflate on half of them: each worker
# compresses an event once (its memo, 256 slots by seq: 300 events go
# round it), every stream gets the same bytes
@subs = map { EventsTest::WS->open($t, '/events/stream?types=zfan.*',
    headers => { 'Sec-WebSocket-Extensions' => $_ % 2
        ? 'permessage-deflate; client_max_window_bits' : undef }) } 1 .. 12;
is(wait_subscribers(12), 12, '12 subscribers, 6 with deflate');
@holding = grep { $_->{subscribers} > 0 } @{ status()->{workers} };
is(scalar @holding, 2, 'in both workers');
my $batch = $t->post_json('/events',
    [ map { { type => "zfan.$_" } } 1 .. 300 ]);
is($batch->{status}, 201, '300 events in one POST');
@want = map { $_->{seq} } @{ $batch->{json}{data} // [] };
my (%plain, %zipped, $frames);
for my $i (0 .. $#subs) {
    my $deadline = time + $t->scale(10);
    for (1 .. 300) {
        my $f = $subs[$i]->frame(timeout => $deadline - time) or last;
        $frames++;
        my $seq = $f->{json} && $f->{json}{seq} or next;
        if ($i % 2 == 0) {
            push @{ $zipped{$seq} },
                [ $f->{rsv}, $f->{deflated}, $f->{payload} ];
        } else {
            push @{ $plain{$seq} }, [ $f->{rsv}, $f->{payload} ];
        }
    }
}
is($frames, 3600, 'each got 300 frames');
is_deeply([ sort { $a <=> $b } keys %zipped ], \@want,
    'the 300 events, deflated');
my ($same, $rsv) = (1, 1);
for my $seq (@want) {
    my ($z, $p) = ($zipped{$seq} // [], $plain{$seq} // []);
    $rsv &&= @$z == 6 && !grep({ $_->[0] != 4 } @$z)
        && @$p == 6 && !grep({ $_->[0] != 0 } @$p);
    $same &&= !grep({ $_->[1] ne $z->[0][1] || $_->[2] ne $p->[0][1] } @$z)
        && !grep({ $_->[1] ne $p->[0][1] } @$p);
}
ok($rsv, 'RSV1 on each message of the 6 with deflate, on none of the others');
ok($same, 'the same compressed bytes on every stream, and inflated the '
    . 'same bytes as the others got');
$_->close for @subs;
is(wait_subscribers(0), 0, 'closed, unsubscribed');

###########################################################################
# Reload: close 1001; the ws client comes back and misses nothing

my $ws = EventsTest::WS->open($t, '/events/stream');
my $log = $t->testdir . '/follow.jsonl';
my $pid = fork // die "fork: $!";
if ($pid == 0) {
    exec('node', $client, 'follow',
        "ws://127.0.0.1:$port/events/stream?types=rl.*", $log, 8, 30000,
        'reconnect') or POSIX::_exit(127);
}
is(wait_subscribers(2), 2, 'a raw client and the ws client');
@want = map { post("rl.$_") } 1 .. 3;
my $deadline = time + $t->scale(5);
sleep 0.05 while (() = `grep -c '"seq"' $log 2>/dev/null` ) && `grep -c '"seq"' $log` < 3 && time < $deadline;

ok($t->reload, 'reload');
my ($f) = reverse $ws->frames_until(sub { $_[0]{opcode} == 8 }, timeout => 5);
ok($f && $f->{opcode} == 8 && $f->{payload} eq pack('n', 1001)
    . 'server restarting', 'the stream closes: 1001 "server restarting"')
    or diag(explain($f));
$ws->send_frame(0x8, pack('n', 1001));
ok(!$ws->frame(3) && $ws->eof, 'then the end');
push @want, map { post("rl.$_") } 4 .. 6;

$deadline = time + $t->scale(10);
sleep 0.05 while wait_subscribers(1) < 1 && time < $deadline;
push @want, map { post("rl.$_") } 7 .. 8;

$deadline = time + $t->scale(20);
my $done = 0;
while (time < $deadline) {
    last if ($done = waitpid($pid, WNOHANG)) == $pid;
    sleep 0.1;
}
if ($done != $pid) {
    kill 'KILL', $pid;
    waitpid($pid, 0);
}
is($? >> 8, 0, 'the ws client got its 8 events');
my @lines = map { JSON::PP->new->decode($_) } do {
    open(my $fh, '<', $log) or die; <$fh> };
is_deeply([ map { $_->{seq} } grep { $_->{seq} } @lines ], \@want,
    'every event once, in order, across the reload');
ok((grep { ($_->{close} // 0) == 1001 } @lines),
    'it saw close 1001') or diag(explain(\@lines));
cmp_ok(scalar(grep { $_->{open} } @lines), '>=', 2, 'and opened again');
ok(!grep({ ($_->{control} // '') eq 'reset' } @lines), 'no reset on resume');

###########################################################################
# events_stream_max_lifetime: 1001 "lifetime over"

wait_subscribers(0);
$ws = EventsTest::WS->open($t, '/short/stream');
my $t0 = time;
my @f = $ws->frames_until(sub { $_[0]{opcode} == 8 }, timeout => 5);
ok(@f && $f[-1]{payload} eq pack('n', 1001) . 'lifetime over',
    'max_lifetime: close 1001 "lifetime over"');
cmp_ok(time - $t0, '<', 2, 'within the second');

###########################################################################
# A client that stops reading: cut off, memory bounded; a reader is not

my $lag0 = status()->{streams}{lagging};
my $stuck = EventsTest::WS->open($t, '/events/stream?types=bulk.*');
is($stuck->status, 101, 'a WebSocket that will not be read');

my $rss0 = $t->rss_anon;

my ($batches, $each, $size) = (20, 100, 10000);
my $total = $batches * $each;

my @r = $t->parallel(n => 2, timeout => 120, code => sub {
    my ($i) = @_;

    if ($i == 1) {
        my $good = EventsTest::WS->open($t, '/events/stream?types=bulk.*');
        my ($n, $last, $order) = (0, 0, 1);
        while (my $fr = $good->frame(timeout => 10)) {
            next unless $fr->{opcode} == 1;
            my ($seq) = $fr->{payload} =~ /"seq":(\d+)/;
            $order &&= $last == 0 || $seq == $last + 1;
            $last = $seq;
            last if ++$n == $total;
        }
        return { n => $n, order => $order ? 1 : 0 };
    }

    sleep 0.3;
    my $one = '{"type":"bulk.load","payload":{"data":"'
        . ('x' x ($size - 250)) . '"}}';
    my $body = '[' . join(',', ($one) x $each) . ']';
    for my $b (1 .. $batches) {
        my $r = $t->req('POST', '/events', body => $body,
            headers => { 'Content-Type' => 'application/json' });
        return { error => $r->{status} } unless $r->{status} == 201;
    }
    return { ok => 1 };
});

ok($r[0]{ok}, "published $total events of $size bytes (20 MB)");
is($r[1]{n}, $total, 'the reading WebSocket got every event');
ok($r[1]{order}, 'in order, none twice');
$deadline = time + $t->scale(5);
sleep 0.1 while status()->{streams}{lagging} == $lag0 && time < $deadline;
cmp_ok(status()->{streams}{lagging}, '>', $lag0,
    'the one that did not read was cut off');
my $grew = $t->rss_anon - $rss0;
SKIP: {
    skip 'memory is measured without ASan', 1 if $t->asan;
    cmp_ok($grew, '<', 24 * 1024,
        'worker memory grew less than 24 MB over 20 MB published')
        or diag("grew $grew kB");
}
my $n = 0;
while (my $fr = $stuck->frame(timeout => 5)) { $n++ }
ok($stuck->eof, "the cut WebSocket is closed (it had read $n frames)");
$t->expect_log(qr/stream cut/);

###########################################################################
# Tokens (second server: events_auth on, ?token=)

sub jwt {
    my (%claims) = @_;
    my $j = JSON::PP->new->canonical;
    my $h = encode_base64url($j->encode({ alg => 'HS256', typ => 'JWT' }));
    my $p = encode_base64url($j->encode(\%claims));
    return "$h.$p." . encode_base64url(hmac_sha256("$h.$p", 's3cret-one'));
}

$ws = EventsTest::WS->open($t, '/events/stream', port => 2);
is($ws->status, 401, 'no token: 401');
like($ws->body // '', qr/"code":"missing_token"/, 'missing_token');

my $tok = jwt(tenant => 'acme', subscribe => ['tk.a.*'], exp => time + 600);
$ws = EventsTest::WS->open($t, "/events/stream?types=tk.*&token=$tok",
    port => 2);
is($ws->status, 101, 'a token in ?token=: 101');
wait_subscribers(1);
for my $type (qw(tk.a.one tk.b.two tk.a.three)) {
    $t->post_json('/events', { type => $type },
        headers => { 'X-Tenant' => 'acme' });
}
# the first server takes no tenant: post as the token's tenant through it
my @types;
while (my $fr = $ws->frame(2)) {
    push @types, $fr->{json}{type} if $fr->{json} && $fr->{json}{type};
}
is_deeply(\@types, [], 'events of no tenant are not the tenant\'s');

$tok = jwt(tenant => undef, subscribe => ['tk.a.*'], exp => time + 600);
$ws = EventsTest::WS->open($t, "/events/stream?types=tk.*&token=$tok",
    port => 2);
wait_subscribers(2);
post($_) for qw(tk.a.one tk.b.two tk.a.three);
@types = ();
while (my $fr = $ws->frame(2)) {
    push @types, $fr->{json}{type} if $fr->{json} && $fr->{json}{type};
}
is_deeply(\@types, [qw(tk.a.one tk.a.three)],
    'the grant narrows types=tk.* to tk.a.*');

$tok = jwt(subscribe => ['*'], exp => time + 2);
$ws = EventsTest::WS->open($t, "/events/stream?token=$tok", port => 2);
@f = $ws->frames_until(sub { $_[0]{opcode} == 8 }, timeout => 5);
like($f[0] && $f[0]{payload} // '', qr/\A\{"control":"reauth","exp":\d+\}\z/,
    'a token near its expiry: reauth');
ok(@f && $f[-1]{payload} eq pack('n', 1008) . 'token expired',
    'at it: close 1008 "token expired"') or diag(explain(\@f));

$t->done;
