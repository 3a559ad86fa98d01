#!/usr/bin/perl

# The type catalog is bounded: one tenant may have 1000 distinct types in
# the store (409 too_many_types for the next, nothing stored), and all
# tenants together take at most 3/4 of the spare memory, the rest for webhook
# endpoints and deliveries.  Before, about 43 000 types from one tenant
# took all of it: every tenant's new types got 503, webhook creation got
# 503 zone_full, and deliveries stopped.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use JSON::PP;
use EventsTest;
use EventsTest::Receiver;

my $t = EventsTest->new;
my $rcv = EventsTest::Receiver->new(dir => $t->testdir, name => 'r1');

$t->write_config(<<'EOF');
%%GLOBALS%%
http {
    %%HTTP_GLOBALS%%

    events_zone main 8m;

    server {
        listen 127.0.0.1:%%PORT%%;
        events_tenant $http_x_tenant;

        events_webhook_allow 127.0.0.1/32;

        location /events { events_api main; }
        location /webhooks { events_webhooks main; }
        location = /events-status { events_status main; }

        location = /_events_webhook {
            internal;
            proxy_pass $events_webhook_url;
            proxy_set_header Host $events_webhook_host;
        }
    }
}
EOF
$t->run;

sub batch {
    my ($tenant, $from, $n) = @_;
    return $t->post_json('/events',
        [ map { { type => "t$_.x" } } $from .. $from + $n - 1 ],
        headers => { 'X-Tenant' => $tenant });
}

###########################################################################
# one tenant, 43 000 distinct types

my (%status, $first_refusal);
for (my $i = 0; $i < 43_000; $i += 500) {
    my $r = batch('flood', $i, 500);
    $status{ $r->{status} }++;
    $first_refusal //= $r if $r->{status} != 201;
}
is_deeply(\%status, { 201 => 2, 409 => 84 },
    '1000 types taken, every batch after refused');
$t->is_error($first_refusal, 409, 'too_many_types', '[0].type',
    'the first event of a new type is named');
like($first_refusal->{json}{error}{message}, qr/1000 types/,
    'the message says the limit');

is(scalar @{ $t->get('/events/types', headers => { 'X-Tenant' => 'flood' })
    ->{json}{data} }, 1000, 'the catalog holds 1000 of its types');
is($t->post_json('/events', { type => 't999.x' },
    headers => { 'X-Tenant' => 'flood' })->{status}, 201,
    'a type it has is still taken');
$t->is_error($t->post_json('/events', { type => 'brand.new' },
    headers => { 'X-Tenant' => 'flood' }), 409, 'too_many_types', 'type',
    'a single new one is refused');

# the others are not touched
is($t->post_json('/events', { type => 'ticket.created' },
    headers => { 'X-Tenant' => 'acme' })->{status}, 201,
    'another tenant\'s new type');

my $r = $t->req(POST => '/webhooks', headers => { 'X-Tenant' => 'acme' },
    json => { url => $rcv->url('/hook'), events => ['ticket.*'] });
is($r->{status}, 201, 'another tenant creates a webhook') or diag $r->{body};

$t->post_json('/events', { type => 'ticket.updated' },
    headers => { 'X-Tenant' => 'acme' });
my @req = $rcv->wait_requests('/hook', 1, 10);
is(scalar @req, 1, 'and it is delivered to');

###########################################################################
# many tenants: the catalog stops short of the reserve

my ($tenants, $full) = (0, undef);
for my $n (1 .. 40) {
    for my $from (0, 500) {
        my $b = batch("many$n", $from, 500);
        next if $b->{status} == 201;
        $full = $b;
        last;
    }
    $tenants = $n;
    last if $full;
}
ok($full, "the catalog filled up ($tenants tenants)");
$t->is_error($full, 503, 'store_unavailable', undef,
    'then new types get 503') if $full;
like($t->error_log, qr/\[error\].*no memory for the type catalog beyond its share/,
    'and the log says why');

$r = $t->req(POST => '/webhooks', headers => { 'X-Tenant' => 'beta' },
    json => { url => $rcv->url('/beta'), events => ['*'] });
is($r->{status}, 201, 'a webhook is still created: the reserve')
    or diag $r->{body};
is($t->post_json('/events', { type => 'ticket.updated' },
    headers => { 'X-Tenant' => 'acme' })->{status}, 201,
    'known types are still taken');
@req = $rcv->wait_requests('/hook', 2, 10);
is(scalar @req, 2, 'and delivered');

$t->done;
