#!/usr/bin/perl

# Webhooks: endpoints through the API, delivery by subrequest to a real
# receiver, Standard Webhooks signatures (Perl and the npm library), the
# body byte-identical to GET /events/{id}, the attempt log, tenants.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use JSON::PP;
use EventsTest;
use EventsTest::Receiver;
use EventsTest::Webhook qw(sign verify secret_bytes node_verify node_missing);

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
        events_webhook_retry 1s 1s;

        location /events { events_api main; }
        location /webhooks { events_webhooks main; }
        location = /events-status { events_status main; }

        location = /_events_webhook {
            internal;
            proxy_pass $events_webhook_url;
            proxy_set_header Host $events_webhook_host;
            proxy_connect_timeout 2s;
            proxy_read_timeout 3s;
        }
    }
}
EOF
$t->run;

my %acme = ('X-Tenant' => 'acme');
my %other = ('X-Tenant' => 'other');

sub wh {
    my ($m, $p, $b, %h) = @_;
    return $t->req($m, $p, headers => { %acme, %h },
        defined $b ? (json => $b) : ());
}

sub event {
    my ($body, %h) = @_;
    return $t->req(POST => '/events', body => $body,
        headers => { 'Content-Type' => 'application/json', %acme, %h });
}

# create
my $r = wh(POST => '/webhooks', { url => $rcv->url('/hook'),
    events => ['ticket.*'], description => 'tickets' });
is($r->{status}, 201, 'created') or diag $r->{body};
my $ep = $r->{json};
like($ep->{id}, qr/^wh_[0-9A-Z]{26}$/, 'an id');
like($ep->{secret}, qr/^whsec_[A-Za-z0-9+\/]{43}=$/, 'a generated secret');
is(length(secret_bytes($ep->{secret})), 32, '32 bytes');
like($r->{headers}{location}, qr{/webhooks/\Q$ep->{id}\E$}, 'Location');
is($ep->{status}, 'enabled', 'enabled');
is_deeply($ep->{events}, ['ticket.*'], 'events');
ok(!$ep->{static}, 'not static');

my $get = wh(GET => "/webhooks/$ep->{id}");
is($get->{status}, 200, 'get');
ok(!exists $get->{json}{secret}, 'the secret is not shown again');
like($get->{json}{secretHint}, qr/^whsec_\x{2026}.{4}$/, 'a hint');

# an event that matches, one that does not
my $e = event('{"type":"ticket.created","resourceId":"t-1",'
    . '"payload":{"data":{"title":"x"}}}')->{json};
event('{"type":"user.created"}');

my @req = $rcv->wait_requests('/hook', 1, 10);
is(scalar @req, 1, 'delivered') or BAIL_OUT('no delivery');
my $h = $req[0]{headers};
is($req[0]{method}, 'POST', 'POST');
is($h->{'webhook-id'}, $e->{id}, 'webhook-id is the event id');
is($h->{'content-type'}, 'application/json', 'content-type');
like($h->{'user-agent'}, qr{^ngx_http_events/}, 'user-agent');
is($h->{'x-events-type'}, 'ticket.created', 'x-events-type');
is($h->{'x-events-seq'}, $e->{seq}, 'x-events-seq');
is($h->{'x-events-attempt'}, 1, 'attempt 1');
ok(abs($h->{'webhook-timestamp'} - time) < 10, 'a fresh timestamp');
my $stored = $t->get("/events/$e->{id}", headers => \%acme)->{body};
is($req[0]{body}, $stored, 'the body is byte-identical to GET /events/{id}');
is($h->{'webhook-signature'}, sign($ep->{secret}, $h->{'webhook-id'},
    $h->{'webhook-timestamp'}, $req[0]{body}), 'signed (Perl)');
ok(verify($ep->{secret}, $h, $req[0]{body}), 'verifies (Perl)');
SKIP: {
    skip node_missing(), 2 if node_missing();
    my ($ok, $bad) = node_verify(
        { secret => $ep->{secret}, headers => $h, body => $req[0]{body} },
        { secret => $ep->{secret}, headers => $h,
          body => $req[0]{body} . ' ' });
    ok($ok->{ok}, 'standardwebhooks verifies it') or diag explain $ok;
    ok(!$bad->{ok}, 'and refuses a changed body');
}

sleep 1;
is(scalar $rcv->requests('/hook'), 1, 'user.created was not delivered');

# the attempt log
my $log = wh(GET => "/webhooks/$ep->{id}/deliveries")->{json};
is(scalar @{ $log->{data} }, 1, 'one attempt logged') or diag explain $log;
my $a = $log->{data}[0];
is($a->{eventId}, $e->{id}, 'its event');
is($a->{result}, 'succeeded', 'succeeded');
is($a->{httpStatus}, 200, 'status 200');
is($a->{responseExcerpt}, 'ok', 'the excerpt');
is($a->{trigger}, 'scheduled', 'scheduled');
like($a->{id}, qr/^att_/, 'an attempt id');

my $st = wh(GET => "/webhooks/$ep->{id}")->{json}{stats};
is($st->{ok}, 1, 'stats: 1 ok');
is($st->{pending}, 0, 'stats: nothing pending');

# tenants: another tenant sees nothing
is(wh(GET => "/webhooks/$ep->{id}", undef, %other)->{status}, 404,
    'another tenant: 404');
is(scalar @{ wh(GET => '/webhooks', undef, %other)->{json}{data} }, 0,
    'another tenant lists none');
is(scalar @{ wh(GET => '/webhooks')->{json}{data} }, 1, 'acme lists one');

$t->done;
