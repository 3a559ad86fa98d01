#!/usr/bin/perl

# Built-in tokens: every way a token can be wrong, with its exact answer;
# claims (tenant, publish, subscribe, admin); where tokens may come from;
# and two tenants side by side on every route, streams included.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use JSON::PP;
use Digest::SHA qw(hmac_sha256);
use MIME::Base64 qw(encode_base64url);
use Time::HiRes qw(sleep time);
use EventsTest;
use EventsTest::SSE;

my $t = EventsTest->new;

$t->write_file('hs.key', "s3cret-one\n");
$t->write_file('k2.key', 'another-secret');

$t->write_config(<<'EOF');
%%GLOBALS%%
http {
    %%HTTP_GLOBALS%%

    events_zone main 8m;
    large_client_header_buffers 4 16k;

    server {
        listen 127.0.0.1:%%PORT%%;

        events_auth on;
        events_auth_jwt_key %%TESTDIR%%/hs.key;
        events_auth_jwt_key %%TESTDIR%%/k2.key kid=k2;
        events_auth_cookie events_token;
        events_tenant $http_x_tenant;     # ignored: the token decides

        location = /events/stream {
            events_stream main;
            events_auth_query_token on;
        }

        location /events {
            events_api main;
        }

        location /q/events {
            events_api main;
            events_auth_query_token on;
        }

        location /aud/events {
            events_api main;
            events_auth_audience events-api;
            events_auth_issuer https://issuer.example;
        }

        location = /events-status {
            events_status main;
        }

        location = /whoami {
            return 200 "$events_tenant $events_subject";
        }

        location /optional {
            # tokens optional: the tenant is the token's when there is one
            events_api main;
            events_auth off;
            events_tenant $events_tenant;
        }
    }
}
EOF

$t->run;

my $json = JSON::PP->new->canonical;

sub b64 { encode_base64url($_[0]) }

sub jwt {
    my (%o) = @_;
    my $header = $o{header} // { alg => 'HS256', typ => 'JWT',
        ($o{kid} ? (kid => $o{kid}) : ()) };
    my $claims = $o{claims} // {};
    $claims->{exp} //= time + 600 unless $o{no_exp};
    my $h = b64(ref $header ? $json->encode($header) : $header);
    my $p = b64(ref $claims ? $json->encode($claims) : $claims);
    my $key = $o{key} // 's3cret-one';
    return "$h.$p." . b64(hmac_sha256("$h.$p", $key));
}

sub auth { (headers => { Authorization => "Bearer $_[0]", @_[1 .. $#_] }) }

my %grant = (publish => ['ticket.*', 'session.started'],
    subscribe => ['ticket.*'], sub => 'u-42');
my $acme = jwt(claims => { tenant => 'acme', %grant });
my $beta = jwt(claims => { tenant => 'beta', %grant });

###########################################################################
# What is not a valid token

my $r = $t->get('/events');
$t->is_error($r, 401, 'missing_token', undef, 'no token');
is($r->{headers}{'www-authenticate'}, 'Bearer realm="events"',
    'WWW-Authenticate');

my $now = time;
my %bad = (
    'expired' => [ jwt(claims => { tenant => 'acme', exp => $now - 120 }),
        'token_expired' ],
    'not yet valid' => [ jwt(claims => { tenant => 'acme',
        nbf => $now + 300 }), 'invalid_token' ],
    'wrong key' => [ jwt(claims => { tenant => 'acme' }, key => 'guess'),
        'invalid_token' ],
    'missing exp' => [ jwt(claims => { tenant => 'acme' }, no_exp => 1),
        'invalid_token' ],
    'alg none' => [ b64('{"alg":"none"}') . '.'
        . b64($json->encode({ tenant => 'acme', exp => $now + 60 })) . '.',
        'invalid_token' ],
    'alg none, signed' => [ jwt(header => { alg => 'none' },
        claims => { tenant => 'acme' }), 'invalid_token' ],
    'RS256 signed with the HMAC key' => [ jwt(header => { alg => 'RS256' },
        claims => { tenant => 'acme' }), 'invalid_token' ],
    'unknown kid' => [ jwt(kid => 'k9', claims => { tenant => 'acme' }),
        'invalid_token' ],
    'kid with the other key' => [ jwt(kid => 'k2',
        claims => { tenant => 'acme' }), 'invalid_token' ],
    'garbage' => [ 'a.b.c', 'invalid_token' ],
    'two segments' => [ 'abc.def', 'invalid_token' ],
    'four segments' => [ "$acme.x", 'invalid_token' ],
    'not base64' => [ '!!!.???.***', 'invalid_token' ],
    'header not JSON' => [ b64('nope') . '.' . b64('{}') . '.' . b64('x'),
        'invalid_token' ],
    'huge' => [ 'a' x 8200 . '.b.c', 'invalid_token' ],
    'bad tenant claim' => [ jwt(claims => { tenant => 'a b' }),
        'invalid_token' ],
    'bad grants' => [ jwt(claims => { tenant => 'acme',
        publish => 'ticket.*' }), 'invalid_token' ],
    # JWS is base64url without padding; nginx's decoder stops at "="
    'signature with = padding' => [ "$acme=", 'invalid_token' ],
    'signature with = and more' => [ "$acme=AAAA", 'invalid_token' ],
    'payload with = padding' => [ do { my @s = split /\./, $acme;
        join '.', $s[0], "$s[1]=", $s[2] }, 'invalid_token' ],
    # an empty kid names no key; it is not the key without a kid
    'empty kid' => [ jwt(header => { alg => 'HS256', kid => '' },
        claims => { tenant => 'acme', %grant }), 'invalid_token' ],
);

# tampering: payload and header changed, signature kept
my ($h, $p, $s) = split /\./, $acme;
$bad{'tampered payload'} = [ join('.', $h, b64($json->encode({
    tenant => 'beta', %grant, exp => $now + 600 })), $s), 'invalid_token' ];
$bad{'tampered header'} = [ join('.', b64('{"alg":"HS256","typ":"JWS"}'),
    $p, $s), 'invalid_token' ];

for my $case (sort keys %bad) {
    my ($tok, $code) = @{ $bad{$case} };
    $r = $t->get('/events', auth($tok));
    $t->is_error($r, 401, $code, undef, $case);
    like($r->{headers}{'www-authenticate'} // '', qr/error="invalid_token"/,
        "$case: WWW-Authenticate says invalid_token");
}

is($t->get('/events', auth(jwt(claims => { tenant => 'acme',
    exp => $now - 10, %grant })))->{status}, 200,
    'a token 10 s past exp is within the leeway');
is($t->get('/events', auth(jwt(kid => 'k2', key => 'another-secret',
    claims => { tenant => 'acme', %grant })))->{status}, 200,
    'kid selects the key');
is($t->get('/events', auth($acme, 'X-Tenant' => 'beta'))->{status}, 200,
    'a valid token');

# audience and issuer where they are required
$t->is_error($t->get('/aud/events', auth($acme)), 401, 'invalid_token',
    undef, 'audience and issuer required here');
is($t->get('/aud/events', auth(jwt(claims => { tenant => 'acme', %grant,
    aud => [ 'other', 'events-api' ], iss => 'https://issuer.example' })))
    ->{status}, 200, 'the right audience and issuer');
$t->is_error($t->get('/aud/events', auth(jwt(claims => { tenant => 'acme',
    %grant, aud => 'events-api', iss => 'https://evil.example' }))),
    401, 'invalid_token', undef, 'the wrong issuer');

###########################################################################
# Where tokens come from

$r = $t->get("/events?token=$acme");
$t->is_error($r, 401, 'invalid_request', 'token',
    'a token in the URL is refused unless enabled');
is($t->get("/q/events?token=$acme")->{status}, 200,
    'events_auth_query_token on: accepted');
is($t->get('/events', headers => { Cookie => "x=1; events_token=$acme" })
    ->{status}, 200, 'the cookie');
is($t->get('/whoami', auth($acme))->{body}, 'acme u-42',
    '$events_tenant and $events_subject');

my $opt = $t->post_json('/optional', { type => 'opt.in' }, auth($acme));
is($opt->{json}{tenantId}, 'acme', 'events_tenant $events_tenant: the token');
is($t->post_json('/optional', { type => 'opt.out' })->{json}{tenantId},
    undef, 'and no token, the default tenant');

###########################################################################
# Claims

$r = $t->post_json('/events', { type => 'ticket.created',
    resourceId => 't-1' }, auth($acme, 'X-Tenant' => 'beta'));
is($r->{status}, 201, 'publish within the grant');
is($r->{json}{tenantId}, 'acme', 'the tenant is the token\'s, not a header');
my $a1 = $r->{json};

$r = $t->post_json('/events', [ { type => 'ticket.updated' },
    { type => 'billing.charged' } ], auth($acme));
$t->is_error($r, 403, 'forbidden', '[1].type', 'publish outside the grant');
$r = $t->post_json('/events', { type => 'ticket.x', tenantId => 'beta' },
    auth($acme));
$t->is_error($r, 403, 'tenant_mismatch', 'tenantId',
    'a body naming another tenant');

my $s1 = $t->post_json('/events', { type => 'session.started' },
    auth($acme))->{json};
is($s1->{type}, 'session.started', 'may publish what it may not read');

is_deeply([ map { $_->{type} } @{ $t->get('/events', auth($acme))
    ->{json}{data} } ], [ 'ticket.created' ],
    'a list is cut to the subscribe grant');
is_deeply([ map { $_->{type} } @{ $t->get('/events?types=*', auth($acme))
    ->{json}{data} } ], [ 'ticket.created' ], 'types=* is cut too');
$t->is_error($t->get('/events?types=session.*', auth($acme)), 403,
    'forbidden', 'types', 'nothing left of the filter');
is($t->get("/events/$s1->{id}", auth($acme))->{status}, 404,
    'an event outside the grant is not found');
is($t->get("/events/$a1->{id}", auth($acme))->{status}, 200,
    'one inside is');
is_deeply([ map { $_->{type} } @{ $t->get('/events/types', auth($acme))
    ->{json}{data} } ], [ 'ticket.created' ], 'the catalog is cut');
my $wide = jwt(claims => { tenant => 'acme', subscribe => ['*'] });
ok(grep({ $_->{type} eq 'session.started' }
    @{ $t->get('/events', auth($wide))->{json}{data} }),
    'a wider grant sees more');
my $none = jwt(claims => { tenant => 'acme' });
$t->is_error($t->get('/events', auth($none)), 403, 'forbidden', 'types',
    'no subscribe claim: nothing to read');
$t->is_error($t->post_json('/events', { type => 'ticket.a' }, auth($none)),
    403, 'forbidden', 'type', 'no publish claim: nothing to publish');

$t->is_error($t->get('/events-status', auth($acme)), 403, 'forbidden',
    undef, 'status needs admin');
is($t->get('/events-status', auth(jwt(claims => { admin => JSON::PP::true })))
    ->{status}, 200, 'admin reads status');

###########################################################################
# Two tenants, every route

my $b1 = $t->post_json('/events', { type => 'ticket.created',
    resourceId => 't-1' }, auth($beta))->{json};
my $same = { id => 'order-1', type => 'ticket.ordered' };
my $ia = $t->post_json('/events', $same, auth($acme));
my $ib = $t->post_json('/events', $same, auth($beta));
is($ia->{status}, 201, 'an id in acme');
is($ib->{status}, 201, 'the same id in beta is another event');
isnt($ia->{json}{seq}, $ib->{json}{seq}, 'two events');

my $ab = $t->get('/events', auth($acme))->{json}{data};
ok(!grep({ $_->{tenantId} ne 'acme' } @$ab), 'acme\'s list is acme\'s');
is($t->get("/events/$b1->{id}", auth($acme))->{status}, 404,
    'beta\'s event is 404 to acme');
is_deeply([ map { $_->{seq} } @{ $t->get('/events/ticket/t-1', auth($beta))
    ->{json}{data} } ], [ $b1->{seq} ], 'history is per tenant');
ok(!grep({ $_->{count} != 1 && $_->{type} eq 'ticket.created' }
    @{ $t->get('/events/types', auth($beta))->{json}{data} }),
    'the catalog counts per tenant');

###########################################################################
# Streams

my $sa = EventsTest::SSE->open($t, "/events/stream?lastEventId=earliest"
    . "&types=*&token=$acme");
my $sb = EventsTest::SSE->open($t, '/events/stream?lastEventId=earliest',
    headers => { Authorization => "Bearer $beta" });
is($sa->status, 200, 'a stream with a query token (enabled there)');

my @ea;
while (my $e = $sa->next_event(timeout => 2)) {
    last if $e->{event} eq 'ready';
    push @ea, $e->{json};
}
ok(@ea && !grep({ $_->{tenantId} ne 'acme' || $_->{type} !~ /^ticket\./ }
    @ea), 'earliest replay: only acme, only the grant');
my @eb;
while (my $e = $sb->next_event(timeout => 2)) {
    last if $e->{event} eq 'ready';
    push @eb, $e->{json};
}
ok(@eb && !grep({ $_->{tenantId} ne 'beta' } @eb), 'beta\'s stream');

my $live = $t->post_json('/events', { type => 'ticket.live' },
    auth($beta))->{json};
is($sb->next_event(timeout => 2)->{json}{seq}, $live->{seq},
    'beta gets beta\'s');
ok(!$sa->next_event(timeout => 1), 'acme does not');
$sa->close;
$sb->close;

$r = $t->get('/events/stream?types=session.*', auth($acme));
$t->is_error($r, 403, 'forbidden', undef, 'a stream outside the grant');
$t->is_error($t->get('/events/stream'), 401, 'missing_token', undef,
    'a stream without a token');

# reauth before expiry, and the end at expiry
my $short = jwt(claims => { tenant => 'acme', %grant, exp => time + 3 });
my $ss = EventsTest::SSE->open($t, '/events/stream',
    headers => { Authorization => "Bearer $short" });
my $e = $ss->next_event(timeout => 2);
is($e && $e->{event}, 'reauth', 'reauth before the token expires');
1 while $ss->next_event(timeout => 5);
ok($ss->is_closed, 'the stream ends cleanly at expiry');

$t->done;
