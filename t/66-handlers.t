#!/usr/bin/perl

# Local handlers: events_handler sends each matching event to a location
# of this nginx (here an internal one proxying to a real backend on
# loopback), with the webhook dispatcher's retries, attempt log and
# counters, and no URL checks.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use JSON::PP;
use EventsTest;
use EventsTest::Receiver;

my $t = EventsTest->new;
my $rcv = EventsTest::Receiver->new(dir => $t->testdir, name => 'fn');
my $port = $rcv->port;

(my $conf = <<'EOF') =~ s/RPORT/$port/g;
%%GLOBALS%%
http {
    %%HTTP_GLOBALS%%

    events_zone main 8m;

    server {
        listen 127.0.0.1:%%PORT%%;
        events_tenant $http_x_tenant;

        events_webhook_retry 1s 1s;

        # every tenant's tickets, and one tenant's orders
        events_handler main types=ticket.* location=/internal/on-ticket;
        events_handler main id=orders types=order.* tenant=acme
            location=/internal/on-order;

        location /events { events_api main; }
        location = /events-status { events_status main; }
        location /webhooks { events_webhooks main; }

        location = /_events_webhook {
            internal;
            proxy_pass $events_webhook_url;
        }

        location /internal/ {
            internal;
            proxy_pass http://127.0.0.1:RPORT/fn/;
        }
    }
}
EOF
$t->write_config($conf);
$t->run;

sub publish {
    my ($tenant, $type) = @_;
    return $t->post_json('/events', { type => $type },
        headers => { 'X-Tenant' => $tenant })->{json};
}

# every tenant's tickets
my $a = publish('acme', 'ticket.created');
my $b = publish('beta', 'ticket.closed');
my @got = $rcv->wait_requests('/fn/on-ticket', 2, 10);
is(scalar @got, 2, 'both tenants\' tickets reach the handler');
my %by = map { $_->{headers}{'webhook-id'} => $_ } @got;
is($by{ $a->{id} }{headers}{'x-events-tenant'}, 'acme', 'with the tenant');
is($by{ $b->{id} }{headers}{'x-events-tenant'}, 'beta', 'each one\'s');
is($by{ $a->{id} }{body},
    $t->get("/events/$a->{id}", headers => { 'X-Tenant' => 'acme' })->{body},
    'the body is the stored event');
ok(!exists $by{ $a->{id} }{headers}{'webhook-signature'},
    'a local handler is not signed');

# one tenant's orders; another's are not its business
$rcv->script('/fn/on-order', [ { status => 500, body => 'db down' },
    { status => 503 }, { status => 200 } ]);
my $o = publish('acme', 'order.paid');
publish('beta', 'order.paid');
my @ord = $rcv->wait_requests('/fn/on-order', 3, 15);
is(scalar @ord, 3, 'a failing handler is retried until it recovers');
is_deeply([ map { $_->{headers}{'webhook-id'} } @ord ], [ ($o->{id}) x 3 ],
    'only acme\'s order');
is_deeply([ map { $_->{headers}{'x-events-attempt'} } @ord ], [1, 2, 3],
    'attempts numbered');
sleep 1;
is(scalar $rcv->requests('/fn/on-order'), 3, 'beta\'s order never went');

# the handler's log and state, as the tenant sees it
my $h = $t->get('/webhooks/orders', headers => { 'X-Tenant' => 'acme' })->{json};
ok($h->{handler}, 'listed as a handler');
is($h->{location}, '/internal/on-order', 'its location');
is($h->{url}, undef, 'no url');
is($h->{stats}{ok}, 1, 'one delivery ok');
my $log = $t->get('/webhooks/orders/deliveries',
    headers => { 'X-Tenant' => 'acme' })->{json}{data};
is_deeply([ map { $_->{result} } @$log ], [qw(succeeded failed failed)],
    'the attempt log');
is($log->[2]{responseExcerpt}, 'db down', 'with the excerpt');
is($t->get('/webhooks/orders', headers => { 'X-Tenant' => 'beta' })
    ->{status}, 404, 'another tenant does not see it');

# counters, and the location stays internal
my $st = $t->get('/events-status')->{json}{webhooks};
ok($st->{ok} >= 3, 'status: deliveries ok');
ok($st->{retries} >= 2, 'status: retries');
is($t->get('/internal/on-ticket')->{status}, 404,
    'the handler location is internal');

# events_handler at http level needs a server
my $u = EventsTest->new;
$u->write_config(<<'EOF');
%%GLOBALS%%
http {
    %%HTTP_GLOBALS%%
    events_zone main 1m;
    events_handler main types=a.* location=/x;
    server {
        listen 127.0.0.1:%%PORT%%;
        location /events { events_api main; }
    }
}
EOF
ok(!eval { $u->run; 1 }, 'http-level handler without a server: refused');
like($@, qr/events_handler in zone "main" needs a server/, 'and says why');

# events_webhooks without the location webhooks leave through: refused,
# or deliveries would go to whatever "location /" proxies to
my $v = EventsTest->new;
$v->write_config(<<'EOF');
%%GLOBALS%%
http {
    %%HTTP_GLOBALS%%
    events_zone main 1m;
    server {
        listen 127.0.0.1:%%PORT%%;
        location /webhooks { events_webhooks main; }
        location / { proxy_pass http://127.0.0.1:9; }
    }
}
EOF
ok(!eval { $v->run; 1 }, 'events_webhooks without /_events_webhook: refused');
like($@, qr{the server has no "location /_events_webhook"}, 'and says why');

$t->done;
