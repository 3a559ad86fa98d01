#!/usr/bin/perl

# SSRF: API-created endpoints are resolved with nginx's resolver before
# each attempt (a DNS responder on loopback answers for *.test), every
# address is checked, and the request goes to the vetted address with
# the name kept in Host.  The allow-list and allow_private admit;
# nginx.conf endpoints are trusted like a proxy_pass.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use JSON::PP;
use EventsTest;
use EventsTest::Receiver;
use EventsTest::DNS;

my $t = EventsTest->new;
my $rcv = EventsTest::Receiver->new(dir => $t->testdir, name => 'r1');
my $dns = EventsTest::DNS->new(dir => $t->testdir, records => {
    'private.test' => ['10.0.0.5'],
    'loop.test' => ['127.0.0.1'],
    'mixed.test' => ['93.184.216.34', '192.168.1.1'],
});

my $port = $rcv->port;
my $resolver = $dns->resolver('valid=1s');
my $static = $rcv->url('/static');

(my $conf = <<'EOF') =~ s/RESOLVER/$resolver/;
%%GLOBALS%%
http {
    %%HTTP_GLOBALS%%

    # five endpoints with 64-entry logs, a delivery chunk each, and the
    # catalog's reserve for webhooks: more than a 4m zone spares
    events_zone strict 8m;
    events_zone open 4m;
    events_zone tls 4m;

    events_webhook strict url=STATIC events=s.* id=trusted
        secret=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw;

    server {
        listen 127.0.0.1:%%PORT%%;
        RESOLVER
        resolver_timeout 2s;

        location /strict/events { events_api strict; }
        location /strict/webhooks { events_webhooks strict; }

        location /open/events { events_api open; }
        location /open/webhooks {
            events_webhooks open;
            events_webhook_allow 127.0.0.0/8 ::1/128;
        }

        location /tls/webhooks {
            events_webhooks tls;
            events_webhook_https_only on;
        }

        location = /_events_webhook {
            internal;
            proxy_pass $events_webhook_url;
            proxy_set_header Host $events_webhook_host;
            proxy_connect_timeout 2s;
        }
    }
}
EOF
$conf =~ s/STATIC/$static/;
$t->write_config($conf);
$t->run;

sub endpoint {
    my ($zone, $url, $type) = @_;
    my $r = $t->req(POST => "/$zone/webhooks",
        json => { url => $url, events => [$type] });
    die "create: $r->{body}" unless $r->{status} == 201;
    return $r->{json};
}

sub last_attempt {
    my ($zone, $ep) = @_;
    my $end = time + 10;
    while (time < $end) {
        my $d = $t->get("/$zone/webhooks/$ep->{id}/deliveries")->{json}{data};
        return $d->[0] if @$d;
        select undef, undef, undef, 0.1;
    }
    return {};
}

# names are accepted at create time: they are checked at each attempt
my $priv = endpoint('strict', "http://private.test:$port/p", 'a.priv');
my $loop = endpoint('strict', "http://loop.test:$port/l", 'b.loop');
my $mixed = endpoint('strict', "http://mixed.test:$port/m", 'c.mixed');
my $nx = endpoint('strict', "http://nx.test:$port/n", 'd.nx');

$t->post_json('/strict/events', { type => $_ })
    for qw(a.priv b.loop c.mixed d.nx);

my $a = last_attempt('strict', $priv);
is($a->{error}, 'E_BLOCKED_IP', 'a name resolving to 10/8: E_BLOCKED_IP');
like($a->{errorDetail}, qr/events_webhook_allow/,
    'the error names the directive to change');
is(last_attempt('strict', $loop)->{error}, 'E_BLOCKED_IP',
    'a name resolving to loopback: E_BLOCKED_IP');
is(last_attempt('strict', $mixed)->{error}, 'E_BLOCKED_IP',
    'one private address among public ones is enough');
is(last_attempt('strict', $nx)->{error}, 'E_DNS', 'NXDOMAIN: E_DNS');
ok(scalar(grep { $_->{name} eq 'loop.test' } $dns->queries) >= 1,
    'nginx asked our resolver');
is(scalar $rcv->requests('/l'), 0, 'the blocked endpoint was never called');

# a literal private address is refused when the endpoint is created
my $r = $t->req(POST => '/strict/webhooks',
    json => { url => "http://127.0.0.1:$port/x", events => ['x'] });
$t->is_error($r, 400, 'blocked_url', 'url', 'literal loopback: 400');
$r = $t->req(POST => '/strict/webhooks',
    json => { url => "http://[::ffff:10.1.1.1]/x", events => ['x'] });
$t->is_error($r, 400, 'blocked_url', 'url', 'a v4-mapped private v6: 400');
$r = $t->req(POST => '/strict/webhooks',
    json => { url => "http://169.254.169.254/latest", events => ['x'] });
$t->is_error($r, 400, 'blocked_url', 'url', 'link-local metadata: 400');

# nginx.conf endpoints are trusted
$t->post_json('/strict/events', { type => 's.static' });
is(scalar $rcv->wait_requests('/static', 1, 10), 1,
    'a static endpoint on loopback is delivered');

# the allow-list admits, and the request is pinned to the vetted address
my $ok = endpoint('open', "http://loop.test:$port/ok", 'e.ok');
$t->post_json('/open/events', { type => 'e.ok' });
my ($got) = $rcv->wait_requests('/ok', 1, 10);
ok($got, 'allowed by events_webhook_allow');
is($got->{headers}{host}, "loop.test:$port", 'Host keeps the name');
is(last_attempt('open', $ok)->{result}, 'succeeded', 'logged as succeeded');
my $lit = endpoint('open', "http://127.0.0.1:$port/lit", 'f.lit');
is($lit->{url}, "http://127.0.0.1:$port/lit", 'a literal in the allow-list');

# rebinding: the name now points elsewhere, the next attempt checks again
$dns->set('loop.test' => ['10.9.9.9']);
sleep 2;
$t->post_json('/open/events', { type => 'e.ok' });
my $end = time + 10;
my $att;
while (time < $end) {
    my $d = $t->get("/open/webhooks/$ok->{id}/deliveries")->{json}{data};
    if (@$d >= 2) { $att = $d->[0]; last }
    select undef, undef, undef, 0.1;
}
is($att->{error}, 'E_BLOCKED_IP', 'a rebound name is refused at the attempt');
is(scalar $rcv->requests('/ok'), 1, 'and not called');

# https only
$r = $t->req(POST => '/tls/webhooks',
    json => { url => 'http://example.com/x', events => ['x'] });
$t->is_error($r, 400, 'invalid_url', 'url', 'events_webhook_https_only');

$t->expect_log(qr/could not be resolved|blocked|private/);
$t->done;
