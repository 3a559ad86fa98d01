#!/usr/bin/perl

# Tests for the webhook test tools themselves: EventsTest::Webhook
# (Standard Webhooks signing, against the published vectors and the
# standardwebhooks npm library), EventsTest::Receiver (a scripted HTTP
# receiver, driven directly and through nginx's proxy) and
# EventsTest::DNS (nginx's resolver against it).  Nothing here needs
# webhook delivery in the module: a failure is a bug in the tools.

use strict;
use warnings;

use Digest::SHA qw(sha256_hex);
use File::Basename qw(dirname);
use IO::Select;
use IO::Socket::IP;
use Test::More;
use Time::HiRes qw(time sleep);

use lib dirname(__FILE__) . '/lib';
use EventsTest;
use EventsTest::DNS;
use EventsTest::Receiver;
use EventsTest::Webhook qw(sign verify verify_error secret_bytes
    signatures node_verify node_missing);

$SIG{PIPE} = 'IGNORE';
$SIG{ALRM} = sub { diag("timed out after 180 s"); exit 1 };    # END stops all
alarm 180;

###########################################################################
# Signing: the vectors of /work/shared/WEBHOOKS.md

my $S1 = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
my %V1 = (id => 'msg_p5jXN8AQM9LWM0D4loKWxJek', ts => 1614265330,
    body => '{"test": 2432232314}',
    sig => 'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=');
my $S2 = 'whsec_plJ3nmyCDGBKInavdOK15jsl';
my %V2 = (id => 'msg_loFOjxBNrRLzqYUf', ts => 1731705121,
    body => '{"event_type":"ping","data":{"success":true}}',
    sig => 'v1,rAvfW3dJ/X/qxhsaXPOyyCGmRKsaKWcsNccKXlIktD0=');
my $BAD1 = 'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA=';

is(unpack('H*', secret_bytes($S1)),
    '31f290f6bf06298aab4f08d43c3f082cf648a362da2da4b0', 'secret 1 bytes');
is(length secret_bytes($S2), 18, 'secret 2: 18 bytes');
is(secret_bytes('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaS'),
    secret_bytes('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaS='),
    'unpadded base64 accepted');
is(secret_bytes('whsec_not*base64'), undef, 'not base64: undef');

is(sign($S1, @V1{qw(id ts body)}), $V1{sig}, 'vector 1 (standard-webhooks)');
is(sign($S2, @V2{qw(id ts body)}), $V2{sig}, 'vector 2 (svix docs)');
isnt(sign($S1, @V1{qw(id ts body)}), $BAD1, 'negative vector differs');

sub hdrs {
    my ($id, $ts, $sig) = @_;
    return { 'webhook-id' => $id, 'webhook-timestamp' => $ts,
        'webhook-signature' => $sig };
}

my $h1 = hdrs(@V1{qw(id ts sig)});
ok(verify($S1, $h1, $V1{body}, now => $V1{ts}), 'vector 1 verifies');
ok(!verify($S1, hdrs(@V1{qw(id ts)}, $BAD1), $V1{body}, now => $V1{ts}),
    'negative vector does not verify');
ok(!verify($S1, $h1, $V1{body}), 'vector 1 is too old for today');
like(verify_error($S1, $h1, $V1{body}), qr/too old/, '... and says so');
ok(!verify($S1, $h1, "$V1{body} ", now => $V1{ts}), 'tampered body');
ok(!verify($S2, $h1, $V1{body}, now => $V1{ts}), 'wrong secret');
ok(verify($S1, hdrs(@V1{qw(id ts)}, "$BAD1 v1a,xyz $V1{sig}"), $V1{body},
    now => $V1{ts}), 'one good signature among several');
ok(verify([$S2, $S1], $h1, $V1{body}, now => $V1{ts}),
    'one of several secrets');
is_deeply([signatures("v1,a v2,b v1,c")], ['a', 'c'], 'signatures()');
ok(verify($S1, { map { uc($_) => $h1->{$_} } keys %$h1 }, $V1{body},
    now => $V1{ts}), 'header names in any case');

###########################################################################
# The reference library (npm standardwebhooks) agrees

SKIP: {
    my $why = node_missing();
    skip "node verifier: $why", 6 if $why && $why =~ /not installed$/;
    ok(!$why, 'standardwebhooks is installed') or diag($why);

    my $now = time;
    my $ts = int $now;
    my $body = qq({"id":"evt_1","type":"ticket.created","payload":)
        . qq({"name":"caf\xC3\xA9"}});    # UTF-8 bytes
    my $sig = sign($S1, 'evt_1', $ts, $body);
    my $rot = sign($S2, 'evt_1', $ts, $body) . " $sig";

    my @r = node_verify(
        { secret => $S1, headers => hdrs('evt_1', $ts, $sig), body => $body },
        { secret => $S1, headers => hdrs('evt_1', $ts, $sig),
          body => $body =~ s/evt_1/evt_2/r },
        { secret => $S1, headers => hdrs('evt_1', $ts, $rot), body => $body },
        { secret => $S1, headers => $h1, body => $V1{body}, now => $V1{ts} },
        { secret => $S1, headers => hdrs(@V1{qw(id ts)}, $BAD1),
          body => $V1{body}, now => $V1{ts} },
    );
    ok($r[0]{ok}, 'node accepts a Perl-signed message')
        or diag(explain $r[0]);
    ok(!$r[1]{ok}, 'node rejects a tampered one')
        and like($r[1]{error}, qr/No matching signature/, '... no match');
    ok($r[2]{ok}, 'node accepts two signatures, the second one good');
    ok($r[3]{ok}, 'node agrees on vector 1') or diag(explain $r[3]);
    ok(!$r[4]{ok}, 'node rejects the negative vector');
}

###########################################################################
# The receiver, directly

my $t = EventsTest->new;
my $dir = $t->testdir;
my $rcv = EventsTest::Receiver->new(dir => $dir, name => 'r1');

like($rcv->url('/hook'), qr{^http://127\.0\.0\.1:\d+/hook$}, 'url()');
isnt($rcv->port, $t->port, 'receiver port is not nginx port');

# raw request to the receiver: (status, headers text, body)
sub raw {
    my ($port, $bytes, $timeout) = @_;
    my $s = IO::Socket::IP->new(PeerHost => '127.0.0.1', PeerPort => $port,
        Proto => 'tcp', Timeout => 5) or return (undef, "connect: $@");
    syswrite($s, $bytes);
    my $buf = '';
    my $sel = IO::Select->new($s);
    my $deadline = time + ($timeout // 5);
    while ((my $left = $deadline - time) > 0) {
        last unless $sel->can_read($left);
        my $n = sysread($s, $buf, 65536, length $buf);
        last unless $n;
    }
    my ($head, $body) = split /\r\n\r\n/, $buf, 2;
    my ($status) = ($head // '') =~ m{^HTTP/1\.1 (\d+)};
    return ($status, $head, $body);
}

my $port = $rcv->port;
my ($st, $head, $body) = raw($port, "GET /plain?x=1 HTTP/1.1\r\n"
    . "Host: a\r\nConnection: close\r\n\r\n");
is($st, 200, 'default answer 200');
is($body, 'ok', 'default body ok');
like($head, qr/\r\nConnection: close(?:\r\n|$)/i, 'Connection: close');

($st) = raw($port, "POST /chunked HTTP/1.1\r\nHost: a\r\n"
    . "Transfer-Encoding: chunked\r\nX-Rep: one\r\nX-Rep: two\r\n"
    . "X-Mixed-Case: V\r\n\r\n"
    . "5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nX-Trailer: t\r\n\r\n");
is($st, 200, 'chunked request answered');
my @req = $rcv->wait_requests('/chunked', 1, 5);
is(scalar @req, 1, 'chunked request recorded');
is($req[0]{body}, 'hello, world', 'chunked body decoded');
is($req[0]{headers}{'x-rep'}, 'one, two', 'repeated headers joined');
is($req[0]{headers}{'x-mixed-case'}, 'V', 'names lower-cased');
is($req[0]{method}, 'POST', 'method');
is_deeply($req[0]{trailers}, ['X-Trailer: t'], 'trailers');
my ($plain) = $rcv->requests('/plain');
is($plain->{query}, 'x=1', 'query recorded apart from the path');
cmp_ok(abs($plain->{time} - time), '<', 30, 'arrival time is an epoch');
like($plain->{time}, qr/\./, '... with a fraction');

my $bin = join '', map { chr } 0 .. 255;
($st) = raw($port, "POST /bin HTTP/1.1\r\nHost: a\r\nContent-Length: "
    . length($bin) . "\r\n\r\n$bin");
($plain) = $rcv->wait_requests('/bin', 1, 5);
is($plain->{body}, $bin, 'binary body recorded byte for byte');

# stall and close, as seen by a plain client
$rcv->script('/stall', [{ stall => 1 }]);
$rcv->script('/close', [{ close => 1 }]);
my $t0 = time;
($st, $head) = raw($port, "GET /stall HTTP/1.1\r\nHost: a\r\n\r\n", 1);
ok(!defined $st && time - $t0 >= 0.9, 'stall: no answer');
($st, $head) = raw($port, "GET /close HTTP/1.1\r\nHost: a\r\n\r\n", 3);
ok(!defined $st && time - $t0 < 3.5, 'close: closed without an answer');
is(scalar $rcv->wait_requests('/stall', 1, 5), 1, 'stalled one recorded');
is(($rcv->requests('/close'))[0]{answer}, 'close', 'closed one recorded');

# wait_requests gives up at its timeout
$t0 = time;
my @none = $rcv->wait_requests('/never', 1, 0.5);
ok(!@none && time - $t0 >= 0.5 && time - $t0 < 2,
    'wait_requests returns at its timeout');

$rcv->reset_log;
is(scalar $rcv->requests, 0, 'reset_log empties the log');

###########################################################################
# The receiver behind nginx, and the DNS responder

my $dns = EventsTest::DNS->new(dir => $dir, records => {
    'hooks.test'  => ['10.0.0.5'],
    'public.test' => ['93.184.216.34'],
    'loop.test'   => ['127.0.0.1'],
});

(my $conf = <<'EOF') =~ s/RCV_PORT/$port/g;
%%GLOBALS%%
http {
    %%HTTP_GLOBALS%%
    DNS_RESOLVER

    server {
        listen 127.0.0.1:%%PORT%%;

        location /hook/ {
            proxy_pass http://127.0.0.1:RCV_PORT;
            proxy_read_timeout 2s;
        }
        location = /dns {
            set $u http://loop.test:RCV_PORT/x;
            proxy_pass $u;
        }
        location = /dns-later {
            set $u http://later.test:RCV_PORT/later;
            proxy_pass $u;
        }
        location = /nx {
            set $u http://nowhere.test:RCV_PORT/x;
            proxy_pass $u;
        }
    }
}
EOF
$conf =~ s/DNS_RESOLVER/$dns->resolver/e;
$t->write_config($conf);
$t->run;

my $res = $t->req('POST', '/hook/post?q=1', body => '{"a":1}',
    headers => { 'Content-Type' => 'application/json',
        'X-Events-Type' => 'ticket.created' });
is($res->{status}, 200, 'POST through nginx');
is($res->{body}, 'ok', '... default body');
@req = $rcv->wait_requests('/hook/post', 1, 5);
is(scalar @req, 1, 'receiver recorded it');
is($req[0]{method}, 'POST', '... method');
is($req[0]{body}, '{"a":1}', '... body');
is($req[0]{query}, 'q=1', '... query');
is($req[0]{headers}{'content-type'}, 'application/json', '... content-type');
is($req[0]{headers}{'x-events-type'}, 'ticket.created', '... custom header');
is($req[0]{headers}{'content-length'}, 7, '... content-length');

# scripted statuses, in order, the last one repeating
$rcv->script('/hook/seq', [
    { status => 503, headers => { 'retry-after' => '2' }, body => 'later' },
    { status => 201, body => 'made' },
    { status => 410 },
]);
my @got = map { $t->get('/hook/seq') } 1 .. 4;
is_deeply([map { $_->{status} } @got], [503, 201, 410, 410],
    'statuses in order, last repeats');
is($got[0]{headers}{'retry-after'}, '2', 'script header passed');
is($got[0]{body}, 'later', 'script body');
is_deeply([map { $_->{index} } $rcv->requests('/hook/seq')], [0 .. 3],
    'index counts the requests');
$rcv->script('/hook/seq', [{ status => 202 }, { status => 204 }]);
is_deeply([map { $t->get('/hook/seq')->{status} } 1 .. 2], [202, 204],
    'a new script starts from its first entry');
is($t->get('/hook/other')->{status}, 200, 'other paths unaffected');

# delay
$rcv->script('/hook/slow', [{ status => 200, delay => 0.7, body => 'slow' }]);
$t0 = time;
$res = $t->get('/hook/slow');
my $took = time - $t0;
is($res->{body}, 'slow', 'delayed answer');
ok($took >= 0.7 && $took < 3, "delay 0.7 s took $took s");

# delays do not block other connections
$rcv->script('/hook/slow2', [{ delay => 1.5 }]);
my @par = $t->parallel(n => 3, code => sub {
    my $s = time;
    my $r = $t->get('/hook/slow2');
    return [$r->{status}, time - $s];
});
ok(!grep({ !$_ || $_->[0] != 200 || $_->[1] > 2.8 } @par),
    'three 1.5 s delays at once take about 1.5 s')
    or diag(explain \@par);

# stall through nginx: proxy_read_timeout 2s gives 504
$rcv->script('/hook/stall', [{ stall => 1 }]);
$res = $t->get('/hook/stall');
is($res->{status}, 504, 'stall: nginx times out (504)');
$rcv->script('/hook/close', [{ close => 1 }]);
is($t->get('/hook/close')->{status}, 502, 'close: nginx answers 502');
$t->expect_log(qr/upstream timed out|upstream prematurely closed/);

# a large answer arrives whole
my $unit = '0123456789abcdef';
$rcv->script('/hook/big', [{ body => $unit, body_size => 2_000_000 }]);
$res = $t->get('/hook/big', timeout => 20);
is($res->{status}, 200, 'large answer status');
is(length $res->{body}, 2_000_000, 'large answer: 2 MB');
is(sha256_hex($res->{body}),
    sha256_hex(substr($unit x 125_000, 0, 2_000_000)), '... intact');
$rcv->script('/hook/chunked', [{ body => 'abc', body_size => 100_000,
    chunked => 1 }]);
is(length $t->get('/hook/chunked')->{body}, 100_000, 'chunked answer');

# DNS
$res = $t->get('/dns');
is($res->{status}, 200, 'loop.test resolved to the receiver');
@req = $rcv->wait_requests('/x', 1, 5);
is(scalar @req, 1, '... which recorded it');
is($req[0]{headers}{host}, "loop.test:$port", '... with its Host');
my @q = $dns->queries('loop.test');
ok((grep { $_->{type} eq 'A' && "@{$_->{answers}}" eq '127.0.0.1' } @q),
    'DNS answered A loop.test') or diag(explain \@q);
ok((grep { $_->{type} eq 'AAAA' && $_->{rcode} eq 'NOERROR'
    && !@{$_->{answers}} } @q), 'DNS answered AAAA with nothing');

$res = $t->get('/nx');
is($res->{status}, 502, 'NXDOMAIN: 502');
like($t->error_log, qr/nowhere\.test could not be resolved \(3: Host not found\)/,
    '... logged as not found');
is(($dns->queries('nowhere.test'))[0]{rcode}, 'NXDOMAIN', 'DNS said so');

is($t->get('/dns-later')->{status}, 502, 'later.test not yet there');
$dns->set('later.test' => ['127.0.0.1']);
sleep 1.2;    # nginx caches the NXDOMAIN for valid=1s
is($t->get('/dns-later')->{status}, 200, 'set() at run time');
is(scalar $rcv->wait_requests('/later', 1, 5), 1, '... reached receiver');

# The responder, directly: a query with a compression loop, TTL, rcodes
sub dns_query {
    my ($packet) = @_;
    my $s = IO::Socket::IP->new(PeerHost => '127.0.0.1',
        PeerPort => $dns->port, Proto => 'udp') or return;
    send($s, $packet, 0);
    return unless IO::Select->new($s)->can_read(3);
    recv($s, my $reply, 65535, 0);
    return $reply;
}
sub qname { join('', map { chr(length) . $_ } split /\./, $_[0]) . "\0" }

my $reply = dns_query(pack('n6', 0x1234, 0x0100, 1, 0, 0, 0)
    . qname('Hooks.TEST') . pack('n2', 1, 1));
my ($id, $flags, $qd, $an) = unpack('n4', $reply // '');
is($id, 0x1234, 'DNS reply id');
is($flags & 0x800F, 0x8000, 'DNS reply NOERROR');
is($an, 1, 'one answer');
is(substr($reply, -4), pack('C4', 10, 0, 0, 5), 'hooks.test is 10.0.0.5');
is(unpack('N', substr($reply, -10, 4)), 1, 'TTL 1');
like(substr($reply, 12), qr/^\x05Hooks\x04TEST\0/, 'question echoed');
$reply = dns_query(pack('n6', 7, 0x0100, 1, 0, 0, 0) . "\xC0\x0C"
    . pack('n2', 1, 1));
is(unpack('n', substr($reply // '', 2, 2)) & 0xF, 1,
    'compression loop: FORMERR');

###########################################################################
# Stopping leaves nothing behind

$rcv->script('/stuck', [{ stall => 1 }]);
my $stuck = IO::Socket::IP->new(PeerHost => '127.0.0.1', PeerPort => $port,
    Proto => 'tcp');
syswrite($stuck, "GET /stuck HTTP/1.1\r\nHost: a\r\n\r\n");
my ($s) = $rcv->wait_requests('/stuck', 1, 5);
my @pids = ($rcv->pid, $s->{pid}, $dns->pid);
ok(!grep({ !kill 0, $_ } @pids), 'receiver, its stalled child, DNS run');
$rcv->stop;
$dns->stop;
sleep 0.2;
my @alive = grep { -e "/proc/$_" } @pids;    # zombies too
ok(!@alive, 'stop() ended them all') or diag("alive: @alive");
is($rcv->errors . $dns->errors, '', 'no errors from the helpers');

$t->done;
