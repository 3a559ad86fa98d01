#!/usr/bin/perl

# events.js in headless Chromium, loaded from events_console: every event
# exactly once and in order across "nginx -s reload" and a restart with a
# journal, over fetch and over the EventSource fallback; watch() across
# the history/live boundary under concurrent writes; tokens in the
# Authorization header and, for EventSource and WebSocket, in ?token=.
# The WebSocket transport is followed across a reload too.

use strict;
use warnings;

use lib 't/lib';
use JSON::PP;
use Test::More;
use EventsTest;
use EventsNode;

my $REPO = $EventsTest::REPO;

plan skip_all => 'no puppeteer-core or chromium (make test installs them)'
    unless -d "$REPO/t/node/node_modules/puppeteer-core"
           && -x '/usr/bin/chromium';

my $t = EventsTest->new;

$t->write_file('hs.key', "s3cret-one\n");
$t->write_file('www/index.html', '<!doctype html><title>client</title>'
               . qq{<link rel="icon" href="data:,">\n});
$t->write_file('www/client-scenario.mjs',
               do { local (@ARGV, $/) = "$REPO/t/node/client-scenario.mjs"; <> });

$t->write_config(<<'EOF2');
%%GLOBALS%%
http {
    %%HTTP_GLOBALS%%

    types {
        text/html html;
        text/javascript mjs;
    }

    events_zone main 4m;
    events_journal main %%TESTDIR%%/journal fsync=off;
    events_stream_retry 300ms;

    server {
        listen 127.0.0.1:%%PORT%%;

        events_tenant $http_x_tenant;

        location = /events/stream { events_stream main; }
        location /events { events_api main; }
        location /console/ { events_console; }
        location /t/ { alias %%TESTDIR%%/www/; }
    }

    server {
        listen 127.0.0.1:%%PORT_2%%;

        events_auth on;
        events_auth_jwt_key %%TESTDIR%%/hs.key;
        events_auth_query_token on;

        location = /events/stream { events_stream main; }
        location /events { events_api main; }
        location /console/ { events_console; }
        location /t/ { alias %%TESTDIR%%/www/; }
    }
}
EOF2

$t->run;

my $json = JSON::PP->new->canonical;

sub browser {
    my ($port, $name, $args) = @_;
    my $base = "http://127.0.0.1:$port";
    return EventsNode->start('node', "$REPO/t/node/client-browser.js",
        "$base/t/index.html", $name,
        $json->encode({ base => $base, client => "$base/console/events.js",
                        %$args }));
}

sub publish {
    my ($tenant, $ev) = @_;
    my $r = $t->post_json('/events', $ev, headers => { 'X-Tenant' => $tenant });
    die "publish: $r->{status} $r->{body}" unless $r->{status} == 201;
    return $r->{json}{id};
}

sub events_of { map { $_->{id} } grep { exists $_->{seq} } @_ }

###########################################################################
# exactly once, in order, across reload (and restart)

for my $transport ('fetch', 'eventsource', 'websocket') {
    my $n = browser($t->port(1), 'follow', {
        headers => $transport eq 'fetch' ? { 'X-Tenant' => 'acme' } : {},
        transport => $transport,
        filter => { types => ['ticket.*', 'test.end'] } });

    ok($n->until(sub { ($_[0]{state} // '') eq 'open' }, 30),
       "$transport: open") or diag $n->output;

    # EventSource sends no header: the default tenant
    # nor does a WebSocket
    my $tenant = $transport eq 'fetch' ? 'acme' : '';
    my (@want, $i);
    my $batch = sub {
        for (1 .. 10) {
            $i++;
            push @want, publish($tenant, { type => 'ticket.created',
                                           resourceId => "t-$i" });
            publish($tenant, { type => 'other.created' });
            publish('beta', { type => 'ticket.created' });
        }
    };

    $batch->();
    ok($n->until(sub { ($_[0]{id} // '') eq $want[-1] }, 10),
       "$transport: the first ten");
    # not waiting for the old workers to exit: Chromium may hold a spare
    # connection with no request on it, which nginx lets live until the
    # browser drops it (seen: 15 to 30 s)
    $t->reload(timeout => 3);
    ok($n->until(sub { ($_[0]{state} // '') eq 'reconnecting' }, 10),
       "$transport: the reload ends the stream");
    $batch->();
    ok($n->until(sub { ($_[0]{id} // '') eq $want[-1] }, 15),
       "$transport: ten more after the reload");

    if ($transport eq 'fetch') {
        $t->restart;
        $batch->();
    }
    push @want, publish($tenant, { type => 'test.end' });

    ok($n->until(sub { $_[0]{done} }, 30), "$transport: the end")
        or diag $n->output;
    my @lines = $n->lines;
    is_deeply([ events_of(@lines) ], \@want,
              "$transport: every event once, in order (" . scalar(@want)
              . ')');
    my @states = map { $_->{state} } grep { $_->{state} } @lines;
    cmp_ok(scalar(grep { $_ eq 'open' } @states), '>=',
           $transport eq 'fetch' ? 3 : 2, "$transport: reconnected");
    ok(!grep({ $_->{reset} || $_->{error} || $_->{failed}
               || $_->{pageerror} } @lines),
       "$transport: no reset, no error") or diag $n->output;
    $n->stop;
}

###########################################################################
# watch() under writers

for my $sel ({ resourceId => 'w-1' }, { resourceId => 'w-2',
                                         types => ['ticket.*'] })
{
    my $what = $sel->{types} ? 'types' : 'entity';
    my $n = browser($t->port(1), 'watch', {
        headers => { 'X-Tenant' => 'acme' }, before => 100, after => 100,
        limit => 20,
        %$sel });
    my $w = $n->until(sub { $_[0]{got} || $_[0]{failed} }, 90);
    ok($w && $w->{got}, "watch ($what): reported") or diag $n->output;
    $w //= { got => [], want => [1] };
    cmp_ok(scalar @{$w->{want}}, '>=', 201, "watch ($what): "
           . scalar(@{$w->{want}}) . " events, watch began at "
           . "$w->{atWatch}, live at $w->{atLive}");
    is_deeply($w->{got}, $w->{want},
              "watch ($what): every event once, in order");
    $n->stop;
}

###########################################################################
# tokens

sub jwt {
    my ($claims) = @_;
    require Digest::SHA;
    require MIME::Base64;
    my $enc = sub { MIME::Base64::encode_base64url($_[0]) };
    my $h = $enc->('{"alg":"HS256","typ":"JWT"}');
    my $p = $enc->($json->encode({ exp => time + 600, %$claims }));
    return "$h.$p." . $enc->(Digest::SHA::hmac_sha256("$h.$p", 's3cret-one'));
}

my $token = jwt({ tenant => 'acme', subscribe => ['ticket.*', 'test.*'] });

for my $transport ('fetch', 'eventsource', 'websocket') {
    my $n = browser($t->port(2), 'follow', { token => $token,
                                             transport => $transport });
    ok($n->until(sub { ($_[0]{state} // '') eq 'open' }, 30),
       "token, $transport: open") or diag $n->output;
    my @want = (publish('acme', { type => 'ticket.created' }));
    publish('acme', { type => 'other.created' });
    publish('beta', { type => 'ticket.created' });
    push @want, publish('acme', { type => 'test.end' });
    ok($n->until(sub { $_[0]{done} }, 10), "token, $transport: the end");
    is_deeply([ events_of($n->lines) ], \@want,
              "token, $transport: the grant's types of the token's tenant");
    $n->stop;
}

for my $transport ('fetch', 'eventsource', 'websocket') {
    my $n = browser($t->port(2), 'denied', { transport => $transport });
    my $e = $n->until(sub { $_[0]{error} }, 30);
    is($e && $e->{status}, 401, "no token, $transport: 401");
    is($e && $e->{error}, 'missing_token',
       "no token, $transport: missing_token");
    ok($n->until(sub { ($_[0]{state} // '') eq 'closed' }, 10),
       "no token, $transport: closed, not retried");
    $n->stop;
}

$t->done;
