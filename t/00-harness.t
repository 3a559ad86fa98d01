#!/usr/bin/perl

# Tests for the test harness itself (t/lib/EventsTest.pm and
# t/lib/EventsTest/SSE.pm), against stock nginx: new(module => 0)
# leaves load_module out of %%GLOBALS%%, so this passes before the
# module is built and tells harness bugs from module bugs.

use strict;
use warnings;

use Digest::SHA qw(sha256 sha256_hex);
use File::Basename qw(dirname);
use IO::Socket::IP;
use JSON::PP;
use Test::More;
use Time::HiRes qw(time);

use lib dirname(__FILE__) . '/lib';
use EventsTest;
use EventsTest::SSE;

my $t = EventsTest->new(module => 0);

# Deterministic binary content: no accidental pattern for sub_filter.
my $big = join '', map { sha256("block $_") } 1 .. 6400;    # 200 KiB
$t->write_file('big.bin', $big);

# Event stream framing that a sloppy parser gets wrong, with what a
# WHATWG parser makes of it: [id, event type, data] per event.
my $stream = join '',
    "\xEF\xBB\xBF: comment one\r\n",      # BOM, then a comment
    "id: 1\r\nevent: created\r\ndata: {\"a\":1}\r\n\r\n",
    "data: line one\rdata: line two\r\r", # CR alone ends lines
    "id: 7\n\n",                          # id, no data: no event
    "data\n\n",                           # no colon: empty value
    "data:no-space\ndata:  two spaces\n\n",
    "retry: 1500\nretry: 12x\ndata: r\n\n",
    "id: a\0b\ndata: nul\n\n",            # id with NUL: ignored
    "event\ndata: x\n\n",                 # empty type: message
    "foo: bar\ndata: caf\xC3\xA9\n\n",    # unknown field; UTF-8
    "id\ndata: id reset\n\n",
    ":\n",
    "data: incomplete";                   # no blank line: dropped
my @expected = (
    ['1', 'created', '{"a":1}'],
    ['1', 'message', "line one\nline two"],
    ['7', 'message', ''],
    ['7', 'message', "no-space\n two spaces"],
    ['7', 'message', 'r'],
    ['7', 'message', 'nul'],
    ['7', 'message', 'x'],
    ['7', 'message', "caf\x{e9}"],
    ['', 'message', 'id reset'],
);
$t->write_file('sse/stream', $stream);

my $conf = <<'EOF';
%%GLOBALS%%

http {
    %%HTTP_GLOBALS%%

    server {
        listen 127.0.0.1:%%PORT%%;

        location = / { return 200 "ok"; }
        location = /pid { return 200 "$pid"; }
        location = /json {
            default_type application/json;
            set $rest '"message":"m","param":"p"}}';
            return 400 '{"error":{"status":400,"code":"x",$rest';
        }
        location = /dup {
            add_header X-Dup a;
            add_header X-Dup b;
            return 204;
        }
        location = /echo {
            set $head "$request_method|$http_x_a";
            return 200 "$head|$content_length|$content_type";
        }
        location = /big { alias %%TESTDIR%%/big.bin; }

        # sub_filter drops Content-Length, so nginx has to chunk.
        location = /chunked {
            sub_filter_types *;
            sub_filter NEVER-MATCHES '';
            alias %%TESTDIR%%/big.bin;
        }

        # A body over 1k goes to client_body_temp; "on" keeps the file.
        location = /upload {
            client_body_buffer_size 1k;
            client_body_in_file_only on;
            proxy_pass http://127.0.0.1:%%PORT_2%%/sink;
            proxy_set_header X-Body-File $request_body_file;
        }

        location /sse/ {
            default_type text/event-stream;
            alias %%TESTDIR%%/sse/;
        }
        location /sse-chunked/ {
            default_type text/event-stream;
            sub_filter_types text/event-stream;
            sub_filter NEVER-MATCHES '';
            alias %%TESTDIR%%/sse/;
        }
    }

    server {
        listen 127.0.0.1:%%PORT_2%%;
        location = /sink { return 200 "$http_x_body_file"; }
    }
}
EOF

###########################################################################
# Placeholders and ports

is($t->port(1), $t->port, 'port(1) is the main port');
is($t->port(2), $t->port(2), 'port stable per index');
isnt($t->port(1), $t->port(2), 'ports differ per index');

is($t->expand('a %%PORT%% %%PORT_2%% %%TESTDIR%%'),
    'a ' . $t->port . ' ' . $t->port(2) . ' ' . $t->testdir, 'expand');
like($t->expand("    %%GLOBALS%%\n"),
    qr/^    worker_processes 2;\n    pid \Q${\ $t->testdir}\E\/nginx\.pid;$/m,
    'GLOBALS keeps indentation');
unlike($t->expand('%%GLOBALS%%'), qr/load_module/, 'module => 0');
like($t->expand('%%HTTP_GLOBALS%%'),
    qr/client_body_temp_path \Q${\ $t->testdir}\E\/client_body_temp;/,
    'HTTP_GLOBALS temp paths');
ok(!eval { $t->expand('%%NOPE%%'); 1 }, 'unknown placeholder dies');

###########################################################################
# Start

$t->write_config($conf);
$t->run;

my $master = $t->master_pid;
ok($master, 'master pid');
my @workers = $t->worker_pids;
is(scalar @workers, 2, 'two workers');
is((split ' ', substr(EventsTest::_slurp("/proc/$_/stat"),
    rindex(EventsTest::_slurp("/proc/$_/stat"), ')') + 1))[1],
    $master, "worker $_ is a child of the master") for @workers;
SKIP: {
    skip 'not root', 1 if $>;
    is((stat "/proc/$workers[0]")[4], scalar getpwnam('nobody'),
        'workers run as nobody');
}

###########################################################################
# HTTP

my $r = $t->get('/');
is($r->{status}, 200, 'get status');
is($r->{body}, 'ok', 'get body');
is($r->{headers}{'content-length'}, 2, 'lowercase headers');
is($r->{chunked}, 0, 'not chunked');
is($r->{json}, undef, 'no json for text/plain');
ok(!exists $r->{error}, 'no error');
like($r->{raw}, qr/^HTTP\/1\.1 200 OK\r\n.*\r\n\r\nok\z/s, 'raw bytes');

$r = $t->get('/big');
ok($r->{headers}{'content-length'} && !$r->{chunked}, 'big: length');
is(sha256_hex($r->{body}), sha256_hex($big), 'big: body');

$r = $t->get('/chunked');
is($r->{chunked}, 1, 'chunked');
ok((grep { lc $_->[0] eq 'transfer-encoding' } @{ $r->{raw_headers} })
    && !defined $r->{headers}{'content-length'}, 'chunked: headers');
is(sha256_hex($r->{body}), sha256_hex($big), 'chunked: de-chunked body');

$r = $t->get('/dup');
is($r->{status}, 204, 'status 204');
is($r->{headers}{'x-dup'}, 'a, b', 'repeated header joined');
is_deeply([grep { $_->[0] eq 'X-Dup' } @{ $r->{raw_headers} }],
    [['X-Dup', 'a'], ['X-Dup', 'b']], 'raw_headers keep repeats');

my $data = { b => 2, a => "caf\x{e9}" };
my $json = JSON::PP->new->utf8->canonical->encode($data);
$r = $t->post_json('/echo', $data);
is($r->{body}, 'POST||' . length($json) . '|application/json',
    'post_json: length and content type');

is($t->request_bytes('PUT', '/x', body => 'abc',
    headers => ['X-A' => 1, 'X-A' => 2, Host => undef]),
    "PUT /x HTTP/1.1\r\nConnection: close\r\nContent-Length: 3\r\n"
    . "X-A: 1\r\nX-A: 2\r\n\r\nabc", 'request bytes: pairs, no Host');
$r = $t->get('/echo', headers => [['X-A', 'one'], ['X-A', 'two']]);
like($r->{body}, qr/^GET\|one/, 'duplicate request headers sent');

$r = $t->get('/json');
is($r->{json}{error}{code}, 'x', 'json decoded');
$t->is_error($r, 400, 'x', 'p');

my %bad = (
    'status as string' => '{"error":{"status":"400","code":"x",'
        . '"message":"m","param":"p"}}',
    'empty message' => '{"error":{"status":400,"code":"x",'
        . '"message":"","param":"p"}}',
    'extra top-level key' => '{"error":{"status":400,"code":"x",'
        . '"message":"m","param":"p"},"x":1}',
    'wrong param' => '{"error":{"status":400,"code":"x",'
        . '"message":"m","field":"q"}}',
    'not JSON' => '{"error":',
);
for my $case (sort keys %bad) {
    ok(scalar $t->error_problems({ status => 400,
        headers => { 'content-type' => 'application/json' },
        body => $bad{$case} }, 400, 'x', 'p'), "is_error rejects: $case");
}
ok(scalar $t->error_problems($t->get('/'), 400, 'x'),
    'is_error rejects a 200');

# A body bigger than client_body_buffer_size goes to a temp file in the
# test dir: the workers must be able to write there.
my $upload = substr($big, 0, 100_000);
$r = $t->req('POST', '/upload', body => $upload);
is($r->{status}, 200, 'upload');
like($r->{body}, qr{^\Q${\ $t->testdir}\E/client_body_temp/\d+$},
    'body spooled in the test dir');
is(sha256_hex(EventsTest::_slurp($r->{body})), sha256_hex($upload),
    'spooled body intact');

# Every wait is bounded: a peer that never answers.
my $mute = IO::Socket::IP->new(LocalHost => '127.0.0.1',
    LocalPort => $t->port(3), Listen => 5, ReuseAddr => 1)
    or die "listen: $@";
my $start = time;
$r = $t->get('/', port => 3, timeout => 0.5);
is($r->{status}, undef, 'mute peer: no status');
is($r->{error}, 'timeout', 'mute peer: timeout');
ok(time - $start < $t->scale(0.5) + 1, 'mute peer: bounded');
close $mute;

###########################################################################
# Parallel clients

my @res = $t->parallel(n => 6, code => sub {
    my ($i) = @_;
    my $r = $t->get('/pid');
    return { i => $i, status => $r->{status}, pid => $r->{body} };
});
is(scalar @res, 6, 'parallel: all results');
is_deeply([map { $_->{i} } @res], [0 .. 5], 'parallel: in order');
is_deeply([grep { $_->{status} != 200 } @res], [], 'parallel: all 200');
my %is_worker = map { $_ => 1 } @workers;
is_deeply([grep { !$is_worker{ $_->{pid} } } @res], [],
    'parallel: served by our workers');

###########################################################################
# Server-sent events

my $chunk = EventsTest::Chunked->new;
my $out = '';
$out .= $chunk->feed($_)
    for split //, "5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-T: 1\r\n\r\n";
ok($chunk->done && !$chunk->error, 'chunked decoder: done');
is($out, 'hello world', 'chunked decoder: data');
is_deeply([$chunk->trailers], ['X-T: 1'], 'chunked decoder: trailers');
$chunk = EventsTest::Chunked->new;
$chunk->feed("5\r\nhelloXY");
ok($chunk->error, 'chunked decoder: no CRLF after data');

sub triples { map { [@{$_}{qw(id event data)}] } @_ }

sub drain {
    my ($s) = @_;
    my @e;
    while (my $e = $s->next_event(timeout => 2)) {
        push @e, $e;
    }
    return @e;
}

my $p = EventsTest::SSE->parser;
$p->feed($_) for split //, $stream;    # every byte its own read
$p->finish;
my @events = drain($p);
is_deeply([triples(@events)], \@expected, 'parser, byte by byte');
is($p->last_event_id, '', 'parser: last event id');
is_deeply([$p->comments], ['comment one', ''], 'parser: comments');
is_deeply($events[0]{json}, { a => 1 }, 'parser: json');
is($events[4]{retry}, 1500, 'parser: retry');
is($p->retry, 1500, 'parser: reconnection time');

for my $path ('/sse/stream', '/sse-chunked/stream') {
    my $s = EventsTest::SSE->open($t, $path, last_event_id => 5);
    is($s->status, 200, "$path: status");
    like($s->headers->{'content-type'}, qr{^text/event-stream},
        "$path: content type");
    my @e = drain($s);
    is_deeply([triples(@e)], \@expected, "$path: events");
    ok($s->is_closed, "$path: closed cleanly");
    is($s->error, undef, "$path: no error");
    is_deeply([$s->comments], ['comment one', ''], "$path: comments");
}

my $s = EventsTest::SSE->open($t, '/sse-chunked/stream');
my @e = $s->events_until(sub { $_[0]{data} eq 'x' }, 5);
is(scalar @e, 7, 'events_until stops at the match');
is($s->next_event->{data}, "caf\x{e9}", 'next event after events_until');
$s->close;

$s = EventsTest::SSE->open($t, '/sse/missing');
is($s->status, 404, 'SSE: not found');
like($s->body, qr/404 Not Found/, 'SSE: body of a non-stream reply');
is($s->next_event(timeout => 0.1), undef, 'SSE: no events');

###########################################################################
# Reload, restart, stop

ok($t->reload, 'reload');
my @new = $t->worker_pids;
is(scalar @new, 2, 'reload: two workers');
ok(!grep({ $is_worker{$_} } @new), 'reload: all workers new');
is($t->master_pid, $master, 'reload: same master');

(my $broken = $conf) =~ s/^http \{/http {\n    bogus_directive on;/m;
$t->write_config($broken);
$t->expect_log(qr/unknown directive "bogus_directive"/);
$start = time;
ok(!$t->reload, 'reload of a bad config fails');
ok(time - $start < $t->scale(5), 'reload failure is quick');
is_deeply([$t->worker_pids], \@new, 'old workers kept');
is($t->get('/')->{status}, 200, 'still serving');
$t->write_config($conf);

$t->restart;
isnt($t->master_pid, $master, 'restart: new master');
is($t->get('/')->{body}, 'ok', 'restart: serving');

$t->stop;
is($t->master_pid, undef, 'stopped');
ok(!kill(0, $master), 'master gone');
$t->stop;
pass('stop is idempotent');
is($t->get('/', timeout => 1)->{status}, undef, 'nothing listening');

# run() dies with what nginx -t said.
my $bad = EventsTest->new(module => 0);
$bad->write_config("%%GLOBALS%%\nbogus;\n");
ok(!eval { $bad->run; 1 }, 'run with a bad config dies');
like($@, qr/unknown directive "bogus"/, 'with nginx -t output');
is($bad->master_pid, undef, 'and starts nothing');

{
    local $EventsTest::MODULE = '/nonexistent/module.so';
    my $m = EventsTest->new;
    $m->write_config("%%GLOBALS%%\n");
    ok(!eval { $m->run; 1 }, 'missing module dies');
    like($@, qr/module not built/, 'saying so');
}

$t->done;
