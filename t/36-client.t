#!/usr/bin/perl

# events.js, the client: its own unit tests (node:test: patterns, SSE
# parsing, backoff, the stream logic against a scripted fetch), then in
# Node against nginx: every event exactly once and in order across
# "nginx -s reload" and a restart with a journal; a cursor the ring has
# lost re-synced from REST; watch() across the history/live boundary
# under concurrent writes; tokens.

use strict;
use warnings;

use lib 't/lib';
use JSON::PP;
use Test::More;
use EventsTest;
use EventsNode;

my $REPO = $EventsTest::REPO;

plan skip_all => 'no node' unless `node --version 2>/dev/null` =~ /^v(\d+)/
                                   && $1 >= 18;

# the unit tests
my $unit = `cd $REPO/clients/js && node --test --test-reporter=tap test/events.test.js 2>&1`;
my ($pass) = $unit =~ /^# pass (\d+)/m;
my ($fail) = $unit =~ /^# fail (\d+)/m;
ok($? == 0 && $pass && !$fail, "node --test clients/js: $pass passed")
    or diag $unit;

my $t = EventsTest->new;

$t->write_file('hs.key', "s3cret-one\n");
$t->write_config(<<'EOF2');
%%GLOBALS%%
http {
    %%HTTP_GLOBALS%%

    events_zone main 4m;
    events_journal main %%TESTDIR%%/journal fsync=off;
    events_zone small 256k;

    events_stream_retry 300ms;

    server {
        listen 127.0.0.1:%%PORT%%;

        events_tenant $http_x_tenant;

        location = /events/stream { events_stream main; }
        location /events { events_api main; }

        location = /s/events/stream { events_stream small; }
        location /s/events { events_api small; }
    }

    server {
        listen 127.0.0.1:%%PORT_2%%;

        events_auth on;
        events_auth_jwt_key %%TESTDIR%%/hs.key;

        location = /events/stream { events_stream main; }
        location /events { events_api main; }
    }
}
EOF2

$t->run;

my $base = 'http://127.0.0.1:' . $t->port(1);
my $json = JSON::PP->new->canonical;
my @node = ('node', "$REPO/t/node/client-node.mjs");

sub publish {
    my ($tenant, @events) = @_;
    my $r = $t->post_json('/events', @events > 1 ? \@events : $events[0],
                          headers => { 'X-Tenant' => $tenant });
    die "publish: $r->{status} $r->{body}" unless $r->{status} == 201;
    return @events > 1 ? map { $_->{id} } @{$r->{json}{data}}
                       : $r->{json}{id};
}

sub events_of { map { $_->{id} } grep { exists $_->{seq} } @_ }

###########################################################################
# exactly once, in order, across reload and restart

my $n = EventsNode->start(@node, 'follow', $json->encode({
    base => $base, headers => { 'X-Tenant' => 'acme' },
    filter => { types => ['ticket.*', 'test.end'] } }));

ok($n->until(sub { ($_[0]{state} // '') eq 'open' }, 10), 'client: open')
    or diag $n->output;

my @want;
my $i = 0;
my $batch = sub {
    for (1 .. 10) {
        $i++;
        push @want, publish('acme', { type => 'ticket.created',
                                      resourceId => "t-$i" });
        publish('acme', { type => 'other.created' });     # filtered out
        publish('beta', { type => 'ticket.created' });    # another tenant
    }
};

$batch->();
ok($n->until(sub { ($_[0]{id} // '') eq $want[-1] }, 10),
   'client: the first ten');

ok($t->reload, 'reload');
$batch->();
ok($n->until(sub { ($_[0]{id} // '') eq $want[-1] }, 15),
   'client: ten more after the reload');

$t->restart;
$batch->();
push @want, publish('acme', { type => 'test.end' });

my $done = $n->until(sub { $_[0]{done} }, 30);
ok($done, 'client: saw the end') or diag $n->output;

my @lines = $n->lines;
my @got = events_of(@lines);
is(scalar @got, scalar @want, 'client: as many events as written');
is_deeply(\@got, \@want, 'client: every event once, in order');
my @seq = map { $_->{seq} } grep { exists $_->{seq} } @lines;
ok(!grep({ $seq[$_] <= $seq[$_ - 1] } 1 .. $#seq), 'seq increases');

my @states = map { $_->{state} } grep { $_->{state} } @lines;
is($states[0], 'connecting', 'states: connecting first');
cmp_ok(scalar(grep { $_ eq 'reconnecting' } @states), '>=', 2,
       'states: reconnecting after the reload and the restart');
cmp_ok(scalar(grep { $_ eq 'open' } @states), '>=', 3, 'states: open again');
ok(!grep({ $_->{reset} || $_->{error} || $_->{failed} } @lines),
   'no reset, no error') or diag $n->output;
$n->stop;

###########################################################################
# a cursor the ring no longer has: re-synced from REST, nothing skipped

sub spublish {
    my (@events) = @_;
    my $r = $t->post_json('/s/events', @events > 1 ? \@events : $events[0],
                          headers => { 'X-Tenant' => 'acme' });
    die "publish: $r->{status} $r->{body}" unless $r->{status} == 201;
    return $r->{json};
}

spublish({ type => 'ticket.created', resourceId => 'x' });
$n = EventsNode->start(@node, 'follow', $json->encode({
    base => "$base/s", headers => { 'X-Tenant' => 'acme' },
    lastEventId => 'earliest' }));
spublish({ type => 'test.end' });
$done = $n->until(sub { $_[0]{done} }, 10);
ok($done && $done->{lastEventId}, 'a first client: its last id');
$n->stop;

# far more than 256k: the ring forgets the client's place
for my $k (1 .. 20) {
    spublish(map { { type => 'ticket.updated', resourceId => "r-$k-$_",
                     payload => { data => { pad => 'x' x 300 } } } } 1 .. 50);
}

my $r = $t->get("/s/events?after=$done->{lastEventId}",
                headers => { 'X-Tenant' => 'acme' });
is($r->{status}, 410, 'the cursor has expired') or diag $r->{body};

my @retained;
my $after = $r->{json}{error}{oldest} // $r->{json}{oldest};
for (;;) {
    my $p = $t->get("/s/events?after=$after&limit=1000",
                    headers => { 'X-Tenant' => 'acme' })->{json};
    push @retained, map { $_->{id} } @{$p->{data}};
    last unless $p->{has_more};
    $after = $p->{next};
}
cmp_ok(scalar @retained, '>', 100, scalar(@retained) . ' events retained');
cmp_ok(scalar @retained, '<', 1000, 'of 1002 written');

$n = EventsNode->start(@node, 'follow', $json->encode({
    base => "$base/s", headers => { 'X-Tenant' => 'acme' },
    lastEventId => $done->{lastEventId} }));
my $reset = $n->until(sub { $_[0]{reset} }, 10);
is($reset->{reset}, 'cursor_expired', 'reset: cursor_expired');
ok($reset->{resync}, 'and the client re-syncs');
ok($n->until(sub { ($_[0]{id} // '') eq $retained[-1] }, 10),
   'the re-sync reaches the newest event');
my $end = spublish({ type => 'test.end' });
ok($n->until(sub { $_[0]{done} }, 10), 'the end arrives') or diag $n->output;
@got = events_of($n->lines);
is_deeply(\@got, [ @retained, $end->{id} ],
          'every retained event, then the live one, each once');
$n->stop;

###########################################################################
# watch(): history, then live, under writers on both workers

for my $sel ({ resourceId => 'w-1' }, { resourceId => 'w-2',
                                         types => ['ticket.*'] })
{
    my $what = $sel->{types} ? 'types' : 'entity';
    $n = EventsNode->start(@node, 'watch', $json->encode({
        base => $base, headers => { 'X-Tenant' => 'acme' },
        before => 100, after => 100, limit => 20, %$sel }));
    my $w = $n->until(sub { $_[0]{got} || $_[0]{failed} }, 60);
    ok($w && $w->{got}, "watch ($what): reported") or diag $n->output;
    $w //= { got => [], want => [1] };
    cmp_ok(scalar @{$w->{want}}, '>=', 201, "watch ($what): "
           . scalar(@{$w->{want}}) . " events, watch began at "
           . "$w->{atWatch}, live at $w->{atLive}");
    is_deeply($w->{got}, $w->{want}, "watch ($what): every event once, "
              . 'in order, across the boundary');
    $n->stop;
}

###########################################################################
# tokens

sub jwt {
    my ($claims, $key) = @_;
    require Digest::SHA;
    require MIME::Base64;
    my $enc = sub { my $s = MIME::Base64::encode_base64url($_[0]); $s };
    my $h = $enc->('{"alg":"HS256","typ":"JWT"}');
    my $p = $enc->($json->encode({ exp => time + 600, %$claims }));
    return "$h.$p." . $enc->(Digest::SHA::hmac_sha256("$h.$p",
                                                      $key // 's3cret-one'));
}

my $tbase = 'http://127.0.0.1:' . $t->port(2);
my $token = jwt({ tenant => 'acme', publish => ['ticket.*'],
                  subscribe => ['ticket.*', 'test.*'] });
$n = EventsNode->start(@node, 'follow', $json->encode({
    base => $tbase, token => $token }));
ok($n->until(sub { ($_[0]{state} // '') eq 'open' }, 10),
   'token: the stream opens with Authorization') or diag $n->output;
@want = (publish('acme', { type => 'ticket.created' }));
publish('acme', { type => 'other.created' });
publish('beta', { type => 'ticket.created' });
push @want, publish('acme', { type => 'test.end' });
ok($n->until(sub { $_[0]{done} }, 10), 'token: the end arrives');
is_deeply([ events_of($n->lines) ], \@want,
          'token: only the grant, only the tenant');
$n->stop;

for my $bad ([ undef, 401, 'missing_token' ],
             [ jwt({ tenant => 'acme' }, 'wrong'), 401, 'invalid_token' ],
             [ jwt({ tenant => 'acme', subscribe => [] }), 403,
               'forbidden' ])
{
    $n = EventsNode->start(@node, 'denied', $json->encode({
        base => $tbase, token => $bad->[0] }));
    my $e = $n->until(sub { $_[0]{error} }, 10);
    is($e && $e->{status}, $bad->[1], "denied: $bad->[2]: status");
    is($e && $e->{error}, $bad->[2], "denied: $bad->[2]: the code");
    ok($n->until(sub { ($_[0]{state} // '') eq 'closed' }, 10),
       "denied: $bad->[2]: closed, not retried");
    $n->stop;
}

$t->done;
