#!/usr/bin/perl

# Webhook routes under events_auth: a token is needed, its tenant is the
# endpoint's, and its subscribe grant must cover every pattern an
# endpoint asks for (a webhook is a subscription that leaves nginx).

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use JSON::PP;
use Digest::SHA qw(hmac_sha256);
use MIME::Base64 qw(encode_base64url);
use EventsTest;

my $t = EventsTest->new;
$t->write_file('hs.key', 'k3y');

$t->write_config(<<'EOF');
%%GLOBALS%%
http {
    %%HTTP_GLOBALS%%

    events_zone main 8m;

    server {
        listen 127.0.0.1:%%PORT%%;

        events_auth on;
        events_auth_jwt_key %%TESTDIR%%/hs.key;
        events_webhook_allow_private on;

        location /webhooks { events_webhooks main; }

        location = /_events_webhook {
            internal;
            proxy_pass $events_webhook_url;
        }
    }
}
EOF
$t->run;

my $json = JSON::PP->new->canonical;

sub jwt {
    my ($claims) = @_;
    $claims->{exp} //= time + 600;
    my $h = encode_base64url($json->encode({ alg => 'HS256', typ => 'JWT' }));
    my $p = encode_base64url($json->encode($claims));
    return "$h.$p." . encode_base64url(hmac_sha256("$h.$p", 'k3y'));
}

my $acme = jwt({ tenant => 'acme', subscribe => ['ticket.*'] });
my $globex = jwt({ tenant => 'globex', subscribe => ['*'] });
my $admin = jwt({ tenant => 'acme', admin => JSON::PP::true });

sub api {
    my ($tok, $m, $p, $b) = @_;
    return $t->req($m, $p, headers => { Authorization => "Bearer $tok" },
        defined $b ? (json => $b) : ());
}

my $r = $t->get('/webhooks');
$t->is_error($r, 401, 'missing_token', undef, 'no token: 401');
like($r->{headers}{'www-authenticate'}, qr/^Bearer/, 'WWW-Authenticate');
$t->is_error(api('x.y.z', GET => '/webhooks'), 401, 'invalid_token', undef,
    'a bad token: 401');

my $url = 'http://127.0.0.1:9/x';
$r = api($acme, POST => '/webhooks', { url => $url, events => ['ticket.*'] });
is($r->{status}, 201, 'a pattern inside the grant');
my $id = $r->{json}{id};

$t->is_error(api($acme, POST => '/webhooks',
    { url => $url, events => ['ticket.created', 'user.*'] }), 403,
    'forbidden', 'events', 'a pattern outside the grant: 403');
$t->is_error(api($acme, POST => '/webhooks', { url => $url, events => ['*'] }),
    403, 'forbidden', 'events', 'a pattern wider than the grant: 403');
$t->is_error(api($acme, PATCH => "/webhooks/$id", { events => ['user.*'] }),
    403, 'forbidden', 'events', 'PATCH cannot widen either');
is(api($acme, GET => "/webhooks/$id")->{json}{events}[0], 'ticket.*',
    'unchanged');
is(api($admin, POST => '/webhooks', { url => $url, events => ['*'] })
    ->{status}, 201, 'an admin token may ask for anything');

$t->is_error(api($globex, GET => "/webhooks/$id"), 404, 'not_found', undef,
    'another tenant\'s token: 404');
$t->is_error(api($globex, DELETE => "/webhooks/$id"), 404, 'not_found',
    undef, 'nor delete it');
is(scalar @{ api($globex, GET => '/webhooks')->{json}{data} }, 0,
    'nor list it');
is(scalar @{ api($acme, GET => '/webhooks')->{json}{data} }, 2,
    'the tenant lists its own');

$t->done;
