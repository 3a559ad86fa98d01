#!/usr/bin/perl

# In Debian's Chromium: a page's WebSocket, permessage-deflate agreed
# (browsers offer it), gets every event once and in order across nginx
# -s reload (close 1001, then it comes back with ?lastEventId=); with
# events_ws_deflate off the same without the extension; at a limit the
# page's WebSocket gets reset "overloaded" and close 1013, and its
# EventSource, answered 200 with a reset instead of a 503, keeps coming
# back instead of giving up.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use JSON::PP;
use POSIX qw(WNOHANG);
use Time::HiRes qw(sleep time);
use EventsTest;
use EventsTest::SSE;

my $driver = "$EventsTest::REPO/t/node/ws-browser.js";

ok(-d "$EventsTest::REPO/t/node/node_modules/puppeteer-core",
    'puppeteer-core is installed (make test does it)')
    or BAIL_OUT('run make test, or npm install in t/node');
ok(-x '/usr/bin/chromium', 'chromium is installed (make test does it)')
    or BAIL_OUT('apt-get install chromium');

my $t = EventsTest->new;

$t->write_file('www/ws.html', <<'EOF2');
<!doctype html>
<meta charset="utf-8">
<title>events over a WebSocket</title>
<script>
window.log = [];
const params = new URLSearchParams(location.search);
let cursor = null;

function connect() {
    const u = new URL(params.get('ws'), location.href);
    u.protocol = 'ws:';
    if (cursor) {
        u.searchParams.set('lastEventId', cursor);
    }
    const ws = new WebSocket(u);
    ws.onopen = () => log.push({ open: true, extensions: ws.extensions });
    ws.onmessage = (e) => {
        const m = JSON.parse(e.data);
        if (m.control) {
            log.push(m);
            return;
        }
        cursor = m.cursor;
        log.push({ seq: m.seq, type: m.type, cursor: m.cursor,
                   bytes: e.data.length });
    };
    ws.onclose = (e) => {
        log.push({ close: e.code, reason: e.reason });
        if (params.get('reconnect')) {
            setTimeout(connect, 300);
        }
    };
}

if (params.get('ws')) {
    connect();
}

if (params.get('es')) {
    const es = new EventSource(params.get('es'));
    es.onopen = () => log.push({ esOpen: true });
    es.onerror = () => log.push({ esError: es.readyState });
    es.addEventListener('reset',
        (e) => log.push({ esReset: JSON.parse(e.data).reason }));
}
</script>
EOF2

$t->write_config(<<'EOF2');
%%GLOBALS%%
http {
    %%HTTP_GLOBALS%%

    events_zone main 4m;

    server {
        listen 127.0.0.1:%%PORT%%;

        events_stream_retry 300ms;

        # Chromium opens a spare connection it may never use; an old
        # worker waits for it to time out before it exits on reload
        client_header_timeout 3s;

        location / {
            root %%TESTDIR%%/www;
        }

        location = /events/stream {
            events_stream main;
        }

        location = /plain/stream {
            events_stream main;
            events_ws_deflate off;
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

my $base = 'http://127.0.0.1:' . $t->port;

sub post { $t->post_json('/events', { type => $_[0] })->{json}{seq} }

sub subscribers {
    $t->get('/events-status')->{json}{streams}{subscribers};
}

sub wait_subscribers {
    my ($n) = @_;
    my $deadline = time + $t->scale(20);
    sleep 0.05 while subscribers() != $n && time < $deadline;
    return subscribers();
}

sub browser {
    my ($page, $until, $timeout) = @_;
    my $out = $t->testdir . '/browser.' . int(rand 1e9);
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        open(STDOUT, '>', $out) or POSIX::_exit(126);
        exec('node', $driver, "$base/ws.html?$page", $until, $timeout)
            or POSIX::_exit(127);
    }
    return sub {
        my $deadline = time + $t->scale($timeout / 1000 + 30);
        my $done = 0;
        while (time < $deadline) {
            last if ($done = waitpid($pid, WNOHANG)) == $pid;
            sleep 0.1;
        }
        if ($done != $pid) {
            kill 'KILL', $pid;
            waitpid($pid, 0);
        }
        my $code = $? >> 8;
        my $log = eval { JSON::PP->new->decode($t->read_file(
            $out =~ s{.*/}{}r)) } // [];
        return ($code, $log);
    };
}

###########################################################################
# Every event once, in order, across a reload

my $wait = browser('ws=/events/stream%3Ftypes%3Dbr.*&reconnect=1',
    'log.filter((x) => x.seq).length >= 6', 30000);

is(wait_subscribers(1), 1, 'the page is connected');
my @want = map { post("br.$_") } 1 .. 3;
sleep 0.5;
ok($t->reload, 'reload');
push @want, post('br.4');
sleep 0.5;
is(wait_subscribers(1), 1, 'the page came back');
push @want, map { post("br.$_") } 5 .. 6;

my ($code, $log) = $wait->();
is($code, 0, 'the page got its 6 events') or diag(explain($log));
is_deeply([ map { $_->{seq} } grep { $_->{seq} } @$log ], \@want,
    'every event once, in order');
ok((grep { ($_->{close} // 0) == 1001
    && $_->{reason} eq 'server restarting' } @$log),
    'the reload: close 1001 "server restarting", as the browser saw it');
cmp_ok(scalar(grep { $_->{open} } @$log), '>=', 2, 'it opened again');
ok(!grep({ ($_->{control} // '') eq 'reset' } @$log), 'no reset on resume');
my @opens = grep { $_->{open} } @$log;
is_deeply([ map { $_->{extensions} } @opens ],
    [ ('permessage-deflate; server_no_context_takeover') x @opens ],
    'Chromium offered permessage-deflate, it was agreed, each time');
my @deflated = grep { $_->{seq} } @$log;

# the same events where deflate is off: no extension, the same messages
$wait = browser('ws=/plain/stream%3Ftypes%3Dbr.*%26lastEventId%3Dearliest',
    'log.filter((x) => x.seq).length >= 6', 30000);
($code, $log) = $wait->();
is($code, 0, 'events_ws_deflate off: the page got the 6 events')
    or diag(explain($log));
is((grep { $_->{open} } @$log)[0]{extensions}, '',
    'events_ws_deflate off: no extension');
is_deeply([ grep { $_->{seq} } @$log ], \@deflated,
    'the same events, cursors and lengths, as with deflate');

###########################################################################
# At a limit: WebSocket 1013, EventSource keeps retrying

wait_subscribers(0);
my @held;
for (1 .. 40) {
    my $s = EventsTest::SSE->open($t, '/capped/stream');
    $s->body(timeout => 0.3);
    push @held, $s unless $s->is_closed;
    last if @held == 2;
}
is(scalar @held, 2, 'both workers full');

$wait = browser('ws=/capped/stream&es=/capped/stream',
    'log.filter((x) => x.esReset).length >= 3 '
    . '&& log.some((x) => x.close === 1013)', 20000);
($code, $log) = $wait->();
is($code, 0, 'the page saw both') or diag(explain($log));
my ($reset) = grep { ($_->{control} // '') eq 'reset' } @$log;
is($reset && $reset->{reason}, 'overloaded',
    'its WebSocket: reset "overloaded"');
ok((grep { ($_->{close} // 0) == 1013 && $_->{reason} eq 'overloaded' }
    @$log), 'then close 1013 "overloaded"');
cmp_ok(scalar(grep { ($_->{esReset} // '') eq 'overloaded' } @$log), '>=', 3,
    'its EventSource: reset "overloaded", again and again');
ok(!grep({ defined $_->{esError} && $_->{esError} == 2 } @$log),
    'and never closed for good (readyState 2)') or diag(explain($log));

$_->close for @held;

$t->done;
