#!/usr/bin/perl

# events_capture header: X-Event-Emit headers of a proxied backend's 2xx
# answers become events; the header never reaches the client.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use JSON::PP;
use MIME::Base64 qw(encode_base64url);
use Digest::SHA qw(hmac_sha256);
use EventsTest;
use EventsTest::Backend;

my $t = EventsTest->new;

$t->write_config(<<'EOF');
%%GLOBALS%%
http {
    %%HTTP_GLOBALS%%

    events_zone main 8m;
    proxy_cache_path %%TESTDIR%%/cache keys_zone=cache:1m;

    server {
        listen 127.0.0.1:%%PORT%%;

        events_tenant $http_x_tenant;
        events_source shop;

        location /api/ {
            events_capture header zone=main;
            proxy_pass http://127.0.0.1:%%PORT_2%%;
        }

        location /authed/ {
            events_auth on;
            events_auth_jwt_key %%TESTDIR%%/hs.key;
            events_capture header zone=main;
            proxy_pass http://127.0.0.1:%%PORT_2%%;
        }

        location /cached/ {
            events_capture header zone=main;
            proxy_cache cache;
            proxy_cache_valid 200 1m;
            proxy_pass http://127.0.0.1:%%PORT_2%%;
        }

        location /plain/ {
            proxy_pass http://127.0.0.1:%%PORT_2%%;
        }

        location /events {
            events_api main;
        }

        location = /events-status {
            events_status main;
        }
    }
}
EOF

$t->write_file('hs.key', "s3cret\n");
my $backend = EventsTest::Backend->start($t, 2);
$t->run;

my $json = JSON::PP->new->canonical;

sub events {
    my (%o) = @_;
    my $r = $t->get('/events?limit=1000', %o);
    return @{ $r->{json}{data} // [] };
}

sub status { $t->get('/events-status')->{json} }

sub emit {
    my ($path, %h) = @_;
    return $t->get($path, headers => { 'X-Body' => 'backend says hi', %h });
}

###########################################################################
# One header

my $r = emit('/api/orders/1', 'X-Emit' =>
    '{"type":"order.created","resourceId":"o-1",'
    . '"payload":{"data":{"total":10}}}');

is($r->{status}, 200, 'the answer passes');
is($r->{body}, 'backend says hi', 'its body intact');
ok(!exists $r->{headers}{'x-event-emit'}, 'X-Event-Emit stripped');

my @ev = events();
is(scalar @ev, 1, 'one event stored');
is($ev[0]{type}, 'order.created', 'its type');
is($ev[0]{resourceId}, 'o-1', 'its resourceId');
is($ev[0]{source}, 'shop', 'events_source applied');
is($ev[0]{tenantId}, undef, 'the default tenant');
is_deeply($ev[0]{payload}{data}, { total => 10 }, 'its data');
is(status()->{capture}{stored}, 1, 'counted as captured');

###########################################################################
# Several, in order; a tenant

$r = emit('/api/orders/2', 'X-Tenant' => 'acme',
    'X-Emit' => '{"type":"order.created","resourceId":"o-2"}',
    'X-Emit-2' => '{"type":"order.paid","resourceId":"o-2"}',
    'X-Emit-3' => '{"type":"order.shipped","resourceId":"o-2"}');

is($r->{status}, 200, 'several: the answer passes');
ok(!exists $r->{headers}{'x-event-emit'}, 'several: all stripped');

@ev = events(headers => { 'X-Tenant' => 'acme' });
is_deeply([ map { $_->{type} } @ev ],
    [qw(order.created order.paid order.shipped)], 'several, in order');
is_deeply([ map { $_->{tenantId} } @ev ], [ ('acme') x 3 ],
    'the request\'s tenant');
is(scalar(events()), 1, 'not in the default tenant');

###########################################################################
# base64url, padded or not; standard base64 is not base64url

my $env = '{"type":"order.refunded","resourceId":"o-3","payload":'
    . '{"data":{"note":"\u00e9t\u00e9 >>>???>>>??>?>"}}}';
my $b64 = encode_base64url($env);
like($b64, qr/[-_]/, 'the sample needs base64url\'s alphabet');

$r = emit('/api/orders/3', 'X-Emit' => $b64);
ok(!exists $r->{headers}{'x-event-emit'}, 'base64url: stripped');

$r = emit('/api/orders/3', 'X-Emit' => encode_base64url(
    '{"type":"order.closed"}') . '==');

@ev = events();
is($ev[1]{type}, 'order.refunded', 'base64url decoded');
is($ev[1]{payload}{data}{note}, "\x{e9}t\x{e9} >>>???>>>??>?>",
    'its UTF-8 data');
is($ev[2]{type}, 'order.closed', 'base64url with padding');

###########################################################################
# Invalid: logged at warn with the reason, counted, the answer untouched

my $invalid = status()->{capture}{invalid};
is($invalid, 0, 'nothing refused so far');

$r = emit('/api/orders/4', 'X-Emit' => '{"type":"order.created"',
    'X-Emit-2' => '{"type":"Order Created"}',
    'X-Emit-3' => '{"type":"order.updated","tenantId":"other"}');

is($r->{status}, 200, 'invalid: the answer passes');
is($r->{body}, 'backend says hi', 'invalid: its body intact');
ok(!exists $r->{headers}{'x-event-emit'}, 'invalid: stripped');
is(status()->{capture}{invalid}, $invalid + 3, 'invalid: counted');
is(scalar(events()), 3, 'invalid: nothing stored');

$r = emit('/api/orders/4', 'X-Emit' => 'not*base64');
is(status()->{capture}{invalid}, $invalid + 4, 'neither JSON nor base64');

$r = emit('/api/orders/4', 'X-Emit' => '[{"type":"order.created"}]');
is(status()->{capture}{invalid}, $invalid + 5, 'an array is no event');

$r = emit('/api/orders/4', 'X-Emit' =>
    '{"type":"order.created","resourceId":"o 4"}');
is(status()->{capture}{invalid}, $invalid + 6, 'a bad resourceId');

my $log = $t->error_log;
my $refused = qr/\[warn\].*captured event \(X-Event-Emit\) refused:/;
like($log, qr/$refused invalid_json: malformed JSON at line 1/,
    'warn: malformed JSON');
like($log, qr/\[warn\].*refused: invalid_field: "type" must be .*\(type\)/,
    'warn: the field at fault');
like($log, qr/\[warn\].*refused: tenant_mismatch/, 'warn: another tenant');
like($log, qr/\[warn\].*refused: invalid_json: neither JSON nor base64url/,
    'warn: not base64');
like($log, qr/\[warn\].*refused: invalid_field: .*\(resourceId\)/,
    'warn: a bad resourceId');
like($log, qr/$refused invalid_body: an event must be a JSON object/,
    'warn: an array');

###########################################################################
# Not 2xx: nothing stored, still stripped

for my $status (301, 404, 409, 500) {
    $r = emit("/api/orders/5", 'X-Status' => $status,
        'X-Emit' => '{"type":"order.created","resourceId":"o-5"}');
    is($r->{status}, $status, "$status: passes");
    ok(!exists $r->{headers}{'x-event-emit'}, "$status: stripped");
}

is(scalar(events()), 3, 'non-2xx: nothing stored');

###########################################################################
# An answer from the cache was captured when the backend gave it

for my $i (1 .. 3) {
    $r = emit('/cached/orders/9',
        'X-Emit' => '{"type":"order.created","resourceId":"o-9"}');
    is($r->{body}, 'backend says hi', "cached $i: the answer");
    ok(!exists $r->{headers}{'x-event-emit'}, "cached $i: stripped");
}
is(scalar(grep { ($_->{resourceId} // '') eq 'o-9' } events()), 1,
    'cached: one event, not one per hit');
is(scalar(grep { m{^GET /cached/} } $backend->log), 1,
    'cached: the backend was asked once');

###########################################################################
# Without events_capture the header is the backend's business

$r = emit('/plain/orders/6', 'X-Emit' => '{"type":"order.created"}');
is($r->{headers}{'x-event-emit'}, '{"type":"order.created"}',
    'elsewhere the header passes');
is(scalar(events()), 4, 'and is no event');

###########################################################################
# With events_auth on, the token's tenant; no token, no event

sub jwt {
    my ($claims) = @_;
    my $h = encode_base64url('{"alg":"HS256","typ":"JWT"}');
    my $p = encode_base64url($json->encode({ exp => time + 600, %$claims }));
    return "$h.$p." . encode_base64url(hmac_sha256("$h.$p", 's3cret'));
}

my $before = status()->{capture};
$r = emit('/authed/orders/7', 'X-Tenant' => 'beta',
    Authorization => 'Bearer ' . jwt({ tenant => 'acme' }),
    'X-Emit' => '{"type":"order.created","resourceId":"o-7"}');
is($r->{body}, 'backend says hi', 'auth: the answer');
@ev = events(headers => { 'X-Tenant' => 'acme' });
is($ev[-1]{resourceId}, 'o-7', 'auth: stored in the token\'s tenant');

$r = emit('/authed/orders/8',
    'X-Emit' => '{"type":"order.created","resourceId":"o-8"}');
is($r->{status}, 200, 'auth, no token: the answer passes');
is(status()->{capture}{invalid}, $before->{invalid} + 1,
    'auth, no token: refused');
like($t->error_log, qr/$refused invalid_tenant: no valid token/,
    'auth, no token: warn');
is(scalar(grep { ($_->{resourceId} // '') eq 'o-8' } events()), 0,
    'auth, no token: not in the default tenant');

###########################################################################
# Prometheus

my $text = $t->get('/events-status?format=prometheus')->{body};
like($text, qr/^events_captured_total\{zone="main"\} 8$/m,
    'prometheus: captured');
like($text, qr/^events_capture_invalid_total\{zone="main"\} 7$/m,
    'prometheus: invalid');

###########################################################################
# Both workers capture into the one store

$t->parallel(n => 6, code => sub {
    my ($i) = @_;
    for my $j (1 .. 5) {
        emit("/api/orders/w$i-$j",
            'X-Emit' => qq({"type":"order.created","resourceId":"w-$i-$j"}));
    }
    return 1;
});
@ev = grep { ($_->{resourceId} // '') =~ /^w-/ } events();
is(scalar @ev, 30, 'thirty captures at once, all seen');
my $workers = status()->{workers};
is(scalar(grep { $_->{published} > 0 } @$workers), 2,
    'both workers captured some');

$backend->stop;
$t->done;
