#!/usr/bin/perl

# Meta events (events_webhook_meta_events on): webhook.delivery.exhausted,
# webhook.endpoint.disabled and webhook.endpoint.recovered appear in the
# tenant's log, are delivered like any other event, never start a chain
# (a failed delivery of a webhook.* event makes none), and nothing of
# the kind happens in a zone without the directive.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use JSON::PP;
use Time::HiRes qw(time sleep);
use EventsTest;
use EventsTest::Receiver;

my $t = EventsTest->new;
$t->write_config(<<'EOF');
%%GLOBALS%%
http {
    %%HTTP_GLOBALS%%

    events_zone main 4m;
    events_zone quiet 1m;

    server {
        listen 127.0.0.1:%%PORT%%;

        events_webhook_allow 127.0.0.1/32;
        events_webhook_retry 100ms;
        events_webhook_meta_events on;
        events_tenant $http_x_tenant;

        location /events { events_api main; }
        location /webhooks { events_webhooks main; }

        location = /_events_webhook {
            internal;
            proxy_pass $events_webhook_url;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $events_webhook_host;
        }
    }

    server {
        listen 127.0.0.1:%%PORT_2%%;

        events_webhook_allow 127.0.0.1/32;
        events_webhook_retry 100ms;
        events_tenant $http_x_tenant;

        location /events { events_api quiet; }
        location /webhooks { events_webhooks quiet; }

        location = /_events_webhook {
            internal;
            proxy_pass $events_webhook_url;
            proxy_set_header Host $events_webhook_host;
        }
    }
}
EOF
$t->run;

my $rcv = EventsTest::Receiver->new(dir => $t->testdir, name => 'meta');
my %acme = (headers => { 'X-Tenant' => 'acme' });

sub create {
    my ($h, %o) = @_;
    my $r = $t->post_json('/webhooks', { %o }, %$h);
    die "create: $r->{body}" unless $r->{status} == 201;
    return $r->{json};
}

sub meta {
    my (%o) = @_;
    my $r = $t->get('/events?types=webhook.*',
        headers => { 'X-Tenant' => $o{tenant} // 'acme' },
        port => $o{port} // 1);
    diag $r->{body} unless $r->{status} == 200;
    return @{ $r->{json}{data} // [] };
}

sub wait_meta {
    my ($n) = @_;
    my $end = time + 15;
    my @m;
    while (time < $end) {
        @m = meta();
        last if @m >= $n;
        sleep 0.1;
    }
    return @m;
}

# the failing endpoint, a watcher of webhook.*, and a failing watcher
$rcv->script('/f', [ { status => 500 }, { status => 500 }, { status => 410 } ]);
$rcv->script('/bad', { status => 500 });
my $f = create(\%acme, url => $rcv->url('/f'), events => ['f.*']);
create(\%acme, url => $rcv->url('/w'), events => ['webhook.*']);
create(\%acme, url => $rcv->url('/bad'), events => ['webhook.*']);

# 1. two attempts fail: exhausted
my $e1 = $t->post_json('/events', { type => 'f.x' }, %acme)->{json};
my @m = wait_meta(1);
is(scalar @m, 1, 'one meta event after a delivery ends failed');
is($m[0]{type}, 'webhook.delivery.exhausted', 'webhook.delivery.exhausted');
is($m[0]{resourceType}, 'webhook', 'resourceType webhook');
is($m[0]{resourceId}, $f->{id}, 'resourceId: the endpoint');
is($m[0]{tenantId}, 'acme', "in the endpoint's tenant");
is_deeply($m[0]{payload}{data}, { endpointId => $f->{id},
    eventId => $e1->{id}, eventSeq => $e1->{seq}, eventType => 'f.x',
    attempts => 2, lastError => 'E_HTTP', httpStatus => 500 },
    'exhausted: what failed and how');

# 2. 410: exhausted, and the endpoint disabled
my $e2 = $t->post_json('/events', { type => 'f.x' }, %acme)->{json};
@m = wait_meta(3);
is_deeply([ map { $_->{type} } @m ], [ 'webhook.delivery.exhausted',
    'webhook.delivery.exhausted', 'webhook.endpoint.disabled' ],
    '410: exhausted, then disabled');
is($m[2]{payload}{data}{reason}, 'gone', 'disabled: reason gone');
is($m[2]{payload}{data}{httpStatus}, 410, 'disabled: the status');
is($m[1]{payload}{data}{eventId}, $e2->{id}, 'exhausted: the second event');

# 3. enabled again, a success: recovered
$rcv->script('/f', { status => 200 });
my $r = $t->req(PATCH => "/webhooks/$f->{id}",
    json => { enabled => JSON::PP::true }, %acme);
is($r->{status}, 200, 'enabled again');
$t->post_json('/events', { type => 'f.x' }, %acme);
@m = wait_meta(4);
is($m[3]{type}, 'webhook.endpoint.recovered', 'webhook.endpoint.recovered');
is_deeply($m[3]{payload}{data}, { endpointId => $f->{id} },
    'recovered: the endpoint');

# delivered like any other event
my @w = $rcv->wait_requests('/w', 4, 10);
is_deeply([ sort map { $_->{headers}{'x-events-type'} } @w ],
    [ sort map { $_->{type} } @m ], 'the watcher got all four');

# the failing watcher's deliveries end failed and make no new events
$rcv->wait_requests('/bad', 8, 10);
sleep 1;
is(scalar(meta()), 4, 'no chain: still four meta events');

# another tenant sees none; a zone without the directive makes none
is(scalar(meta(tenant => 'other')), 0, 'another tenant: none');
$rcv->script('/q', { status => 500 });
$r = $t->post_json('/webhooks', { url => $rcv->url('/q'), events => ['q.*'] },
    %acme, port => 2);
is($r->{status}, 201, 'quiet zone: an endpoint');
$t->post_json('/events', { type => 'q.x' }, %acme, port => 2);
$rcv->wait_requests('/q', 2, 10);
sleep 0.5;
is(scalar(meta(port => 2)), 0, 'without events_webhook_meta_events: none');

$rcv->stop;
$t->done;
