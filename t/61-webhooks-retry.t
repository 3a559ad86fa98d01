#!/usr/bin/perl

# Webhook responses, classified: retries on a short schedule with jitter,
# 410 and "webhook-delivery" control, Retry-After, redirects not
# followed, timeouts, refused connections, large answers, the disable
# policy, and secret rotation.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use JSON::PP;
use IO::Socket::IP;
use EventsTest;
use EventsTest::Receiver;
use EventsTest::Webhook qw(sign verify);

my $t = EventsTest->new;
my $rcv = EventsTest::Receiver->new(dir => $t->testdir, name => 'r1');

$t->write_config(<<'EOF');
%%GLOBALS%%
http {
    %%HTTP_GLOBALS%%

    events_zone main 16m;

    server {
        listen 127.0.0.1:%%PORT%%;

        events_webhook_allow_private on;
        events_webhook_retry 1s 2s 3s;
        events_webhook_overload_delay 1s;
        events_webhook_disable_after 2s;

        location /events { events_api main; }
        location /webhooks { events_webhooks main; }

        location = /_events_webhook {
            internal;
            proxy_pass $events_webhook_url;
            proxy_set_header Host $events_webhook_host;
            proxy_connect_timeout 1s;
            proxy_read_timeout 1s;
        }
    }
}
EOF
$t->run;

sub api {
    my ($m, $p, $b) = @_;
    return $t->req($m, $p, defined $b ? (json => $b) : ());
}

sub endpoint {
    my ($url, $type, %more) = @_;
    my $r = api(POST => '/webhooks', { url => $url, events => [$type],
        %more });
    die "create: $r->{body}" unless $r->{status} == 201;
    return $r->{json};
}

sub publish { $t->post_json('/events', { type => $_[0], %{ $_[1] // {} } })
    ->{json} }

sub attempts { api(GET => "/webhooks/$_[0]{id}/deliveries")->{json}{data} }

sub wait_for {
    my ($what, $code, $secs) = @_;
    my $end = time + ($secs // 10);
    while (time < $end) {
        my $v = $code->();
        return $v if $v;
        select undef, undef, undef, 0.1;
    }
    return $code->();
}

# fails twice, then succeeds: three attempts on the schedule
$rcv->script('/flaky', [ { status => 500, body => 'nope' },
    { status => 503, body => 'busy' }, { status => 200 } ]);
my $flaky = endpoint($rcv->url('/flaky'), 'a.flaky');
my $e = publish('a.flaky');
my @req = $rcv->wait_requests('/flaky', 3, 15);
is(scalar @req, 3, 'three attempts');
is_deeply([ map { $_->{headers}{'x-events-attempt'} } @req ], [1, 2, 3],
    'numbered');
is_deeply([ map { $_->{headers}{'webhook-id'} } @req ], [ ($e->{id}) x 3 ],
    'the same webhook-id');
my ($d1, $d2) = ($req[1]{time} - $req[0]{time}, $req[2]{time} - $req[1]{time});
ok($d1 > 0.75 && $d1 < 1.7, "the first retry after about 1s ($d1)");
ok($d2 > 1.55 && $d2 < 2.8, "the second after about 2s ($d2)");
isnt($req[0]{headers}{'webhook-timestamp'}, $req[2]{headers}{'webhook-timestamp'},
    'the timestamp changes between attempts');
isnt($req[0]{headers}{'webhook-signature'},
    $req[2]{headers}{'webhook-signature'}, 'and so does the signature');
ok(verify($flaky->{secret}, $_->{headers}, $_->{body}), 'each one verifies')
    for @req;

my $log = wait_for('log', sub { my $l = attempts($flaky);
    @$l == 3 ? $l : undef });
is_deeply([ map { $_->{result} } @$log ], [qw(succeeded failed failed)],
    'the log, newest first');
is_deeply([ map { $_->{httpStatus} } @$log ], [200, 503, 500], 'statuses');
is_deeply([ map { $_->{error} // '' } @$log ], ['', 'E_HTTP', 'E_HTTP'],
    'errors');
is($log->[2]{responseExcerpt}, 'nope', 'the excerpt of the first');
ok(defined $log->[2]{nextAttemptAt}, 'a failed attempt says when the next is');
ok(!defined $log->[0]{nextAttemptAt}, 'the success does not');
ok($log->[0]{durationMs} >= 0, 'a duration');
is(api(GET => "/webhooks/$flaky->{id}")->{json}{stats}{ok}, 1, '1 ok');
is(api(GET => "/webhooks/$flaky->{id}")->{json}{failingSince}, undef,
    'a success clears failingSince');

# 410: disabled at once, no retry
$rcv->script('/gone', { status => 410 });
my $gone = endpoint($rcv->url('/gone'), 'b.gone');
publish('b.gone');
$rcv->wait_requests('/gone', 1, 10);
my $g = wait_for('disabled', sub { my $j = api(GET => "/webhooks/$gone->{id}")
    ->{json}; $j->{status} eq 'disabled' ? $j : undef });
is($g->{status}, 'disabled', '410 disables the endpoint');
is($g->{disabledReason}, 'gone', 'reason gone');
publish('b.gone');
sleep 2;
is(scalar $rcv->requests('/gone'), 1, 'no retry, no new deliveries');

# re-enabled by PATCH, it takes new events again
$rcv->script('/gone', { status => 200 });
my $p = api(PATCH => "/webhooks/$gone->{id}", { enabled => JSON::PP::true });
is($p->{json}{status}, 'enabled', 'PATCH enabled: true');
publish('b.gone');
is(scalar $rcv->wait_requests('/gone', 2, 10), 2, 'delivers again');

# webhook-delivery: disable on a 2xx, abort-message on a failure
$rcv->script('/ctl', { status => 200,
    headers => { 'webhook-delivery' => 'disable' } });
my $ctl = endpoint($rcv->url('/ctl'), 'c.ctl');
publish('c.ctl');
$rcv->wait_requests('/ctl', 1, 10);
my $c = wait_for('disabled', sub { my $j = api(GET => "/webhooks/$ctl->{id}")
    ->{json}; $j->{status} eq 'disabled' ? $j : undef });
is($c->{disabledReason}, 'receiver', 'webhook-delivery: disable');

$rcv->script('/abort', { status => 500,
    headers => { 'webhook-delivery' => 'abort-message' } });
my $abort = endpoint($rcv->url('/abort'), 'd.abort');
publish('d.abort');
$rcv->wait_requests('/abort', 1, 10);
my $al = wait_for('log', sub { my $l = attempts($abort); @$l ? $l : undef });
is($al->[0]{result}, 'aborted', 'abort-message: aborted');
is($al->[0]{error}, 'E_ABORTED', 'E_ABORTED');
sleep 2;
is(scalar $rcv->requests('/abort'), 1, 'and not retried');

# 429 with Retry-After: the endpoint waits that long
$rcv->script('/slow-down', [ { status => 429, headers => { 'retry-after' => 3 } },
    { status => 200 } ]);
my $sd = endpoint($rcv->url('/slow-down'), 'e.throttle');
publish('e.throttle');
my @sd = $rcv->wait_requests('/slow-down', 2, 15);
is(scalar @sd, 2, 'retried after the throttle');
ok($sd[1]{time} - $sd[0]{time} >= 2.9, 'not before Retry-After: '
    . ($sd[1]{time} - $sd[0]{time}));
my $sl = attempts($sd);
ok(defined $sl->[1]{retryAfter}, 'the log says until when');

# 3xx: not followed
$rcv->script('/redir', { status => 302,
    headers => { location => $rcv->url('/elsewhere') } });
my $redir = endpoint($rcv->url('/redir'), 'f.redir');
publish('f.redir');
$rcv->wait_requests('/redir', 1, 10);
my $rl = wait_for('log', sub { my $l = attempts($redir); @$l ? $l : undef });
is($rl->[0]{error}, 'E_REDIRECT', 'a redirect is a failure');
is($rl->[0]{httpStatus}, 302, 'with its status');
is(scalar $rcv->requests('/elsewhere'), 0, 'and not followed');

# a receiver that never answers, a port that refuses
$rcv->script('/stall', { stall => 1 });
my $stall = endpoint($rcv->url('/stall'), 'g.stall');
publish('g.stall');
my $tl = wait_for('log', sub { my $l = attempts($stall); @$l ? $l : undef },
    10);
is($tl->[0]{error}, 'E_TIMEOUT', 'no answer in time: E_TIMEOUT');
is($tl->[0]{httpStatus}, undef, 'no status');

my $closed = IO::Socket::IP->new(LocalAddr => '127.0.0.1', LocalPort => 0,
    Listen => 1) or die;
my $dead = $closed->sockport;
close $closed;
my $refused = endpoint("http://127.0.0.1:$dead/x", 'h.refused');
publish('h.refused');
my $fl = wait_for('log', sub { my $l = attempts($refused); @$l ? $l : undef });
is($fl->[0]{error}, 'E_CONNECT', 'a refused connection: E_CONNECT');
$t->expect_log(qr/connect\(\) failed \(111: Connection refused\)/);

# a large answer is read, kept as an excerpt, and is a success
$rcv->script('/big', { status => 200, body => 'y', body_size => 2_000_000 });
my $big = endpoint($rcv->url('/big'), 'i.big');
publish('i.big');
my $bl = wait_for('log', sub { my $l = attempts($big); @$l ? $l : undef });
is($bl->[0]{result}, 'succeeded', 'a 2 MB answer: succeeded');
is(length $bl->[0]{responseExcerpt}, 1024, 'a 1 KiB excerpt');

# failing for longer than events_webhook_disable_after: disabled; after
# re-enabling, replay "failed" sends exactly the events that failed
$rcv->script('/down', { status => 500 });
my $down = endpoint($rcv->url('/down'), 'j.down');
my @failed = map { publish('j.down', { resourceId => "r$_" }) } 1 .. 2;
my $dd = wait_for('disabled', sub { my $j = api(GET => "/webhooks/$down->{id}")
    ->{json}; $j->{status} eq 'disabled' ? $j : undef }, 20);
is($dd->{disabledReason}, 'failing', 'failing too long: disabled');
ok($dd->{stats}{failed} >= 1, 'a delivery ended failed');
is($dd->{stats}{failed} + $dd->{stats}{pending}, 2,
    'the other one waits while the endpoint is disabled');
ok(defined $dd->{failingSince}, 'failingSince');
publish('j.down', { resourceId => 'while-disabled' });
sleep 1;
my $before = scalar $rcv->requests('/down');

# an attempt in flight when the endpoint was disabled may have ended
# failed since: count again
my $nfailed = api(GET => "/webhooks/$down->{id}")->{json}{stats}{failed};
$rcv->script('/down', { status => 200 });
api(PATCH => "/webhooks/$down->{id}", { enabled => JSON::PP::true });
my $rp = api(POST => "/webhooks/$down->{id}/replay",
    { after => 0, mode => 'failed' });
is($rp->{status}, 202, 'replay failed: 202') or diag $rp->{body};
is($rp->{json}{queued}, $nfailed, 'the failed ones queued');
my @got = $rcv->wait_requests('/down', $before + 2, 10);
is_deeply([ sort map { $_->{headers}{'webhook-id'} } @got[$before .. $#got] ],
    [ sort map { $_->{id} } @failed ],
    'the failed one replayed, the waiting one resumed, nothing else');
my $rl2 = wait_for('replayed', sub { my $l = attempts($down);
    (grep { $_->{trigger} eq 'replay' && $_->{result} eq 'succeeded' } @$l)
        ? $l : undef });
ok($rl2, 'the replayed attempt is marked as a replay');

# rotation: two signatures during the grace, one after a revoke
my $rot = endpoint($rcv->url('/rot'), 'k.rot');
my $new = api(POST => "/webhooks/$rot->{id}/rotate-secret", {});
is($new->{status}, 200, 'rotated');
like($new->{json}{secret}, qr/^whsec_/, 'a new secret');
ok(defined $new->{json}{previousExpiresAt}, 'the old one expires later');
publish('k.rot');
my ($r1) = $rcv->wait_requests('/rot', 1, 10);
my @sigs = split / /, $r1->{headers}{'webhook-signature'};
is(scalar @sigs, 2, 'two signatures in the grace');
is($sigs[0], sign($new->{json}{secret}, $r1->{headers}{'webhook-id'},
    $r1->{headers}{'webhook-timestamp'}, $r1->{body}), 'the new one first');
is($sigs[1], sign($rot->{secret}, $r1->{headers}{'webhook-id'},
    $r1->{headers}{'webhook-timestamp'}, $r1->{body}), 'then the old one');

my $supplied = 'whsec_' . 'QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo=';
my $rev = api(POST => "/webhooks/$rot->{id}/rotate-secret",
    { secret => $supplied, graceSeconds => 0 });
is($rev->{json}{secret}, $supplied, 'a supplied secret');
is($rev->{json}{previousExpiresAt}, undef, 'grace 0: revoked now');
publish('k.rot');
my @r2 = $rcv->wait_requests('/rot', 2, 10);
my @s2 = split / /, $r2[1]{headers}{'webhook-signature'};
is(scalar @s2, 1, 'one signature after the revoke');
ok(verify($supplied, $r2[1]{headers}, $r2[1]{body}), 'by the new secret');

$t->done;
