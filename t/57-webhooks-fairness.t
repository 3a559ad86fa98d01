#!/usr/bin/perl

# One tenant cannot starve another's webhooks.  Delivery slots are
# shared among tenants: one tenant whose 16 endpoints point at a host
# that accepts and never answers holds its share of
# events_webhook_concurrency, not all of it, and another tenant's event
# is delivered at once, not after the read timeout.  Zone memory: once
# one tenant's endpoints and event types have taken all the zone has,
# another tenant's deliveries still go (each endpoint's deliveries are
# made with it).

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use IO::Socket::INET;
use Time::HiRes qw(time sleep);
use EventsTest;
use EventsTest::Receiver;

my $t = EventsTest->new;
my $rcv = EventsTest::Receiver->new(dir => $t->testdir, name => 'q');

# a host that accepts and never answers: a listener nobody accepts on
my $hang_port = $t->port(3);
my $hang = IO::Socket::INET->new(LocalAddr => "127.0.0.1:$hang_port",
    Listen => 512, ReuseAddr => 1) or die "listen: $!";

$t->write_config(<<'EOF');
%%GLOBALS%%
http {
    %%HTTP_GLOBALS%%

    events_zone main 16m;

    server {
        listen 127.0.0.1:%%PORT%%;
        events_tenant $http_x_tenant;

        events_webhook_allow_private on;
        events_webhook_retry 1s;

        location /events { events_api main; }
        location /webhooks { events_webhooks main; }
        location = /events-status { events_status main; }

        location = /_events_webhook {
            internal;
            proxy_pass $events_webhook_url;
            proxy_read_timeout 30s;
        }
    }
}
EOF
$t->run;

sub api {
    my ($tenant, $m, $p, $b) = @_;
    return $t->req($m, $p, headers => { 'X-Tenant' => $tenant },
        defined $b ? (json => $b) : ());
}

# the noisy tenant: 16 endpoints, 4 slots each would want all 64
my @noisy = map {
    my $r = api(noisy => POST => '/webhooks', {
        url => "http://127.0.0.1:$hang_port/hang$_", events => ['n.*'] });
    die "create: $r->{body}" unless $r->{status} == 201;
    $r->{json}{id};
} 1 .. 16;
my $quiet = api(quiet => POST => '/webhooks', { url => $rcv->url('/q'),
    events => ['q.*'] })->{json}{id};
ok($quiet, 'the quiet tenant\'s endpoint');

for (1 .. 10) {
    api(noisy => POST => '/events', [ map { { type => 'n.x' } } 1 .. 8 ]);
}

# the noisy deliveries take their slots
my $inflight = 0;
my $end = time + 10;
while (time < $end) {
    $inflight = $t->get('/events-status')->{json}{webhooks}{inFlight} // 0;
    last if $inflight >= 32;
    sleep 0.2;
}
sleep 0.5;
my $noisy_inflight = 0;
$noisy_inflight += api(noisy => GET => "/webhooks/$_")->{json}{stats}{inFlight}
    for @noisy;
ok($noisy_inflight >= 16 && $noisy_inflight <= 32,
    "the noisy tenant holds $noisy_inflight slots, at most its share (32)");

# the quiet tenant's event goes now
my $start = time;
my $e = api(quiet => POST => '/events', { type => 'q.x' })->{json};
my ($got) = $rcv->wait_requests('/q', 1, 25);
my $took = time - $start;
ok($got && $got->{headers}{'webhook-id'} eq $e->{id},
    'the quiet tenant\'s event is delivered');
ok($took < 2, sprintf('within %.2fs (bound 2s; the read timeout is 30s)',
    $took));
diag sprintf('quiet delivery: %.3fs with %d noisy deliveries in flight',
    $took, $noisy_inflight);

# the hung connections go: nginx sees them reset, and stops cleanly
close $hang;
$t->stop;

# a zone full of one tenant's endpoints and types
$t = EventsTest->new;
$t->write_config(<<'EOF');
%%GLOBALS%%
http {
    %%HTTP_GLOBALS%%

    events_zone main 2m;

    server {
        listen 127.0.0.1:%%PORT%%;
        events_tenant $http_x_tenant;

        events_webhook_allow_private on;
        events_webhook_max_per_tenant 10000;

        location /events { events_api main; }
        location /webhooks { events_webhooks main; }

        location = /_events_webhook {
            internal;
            proxy_pass $events_webhook_url;
        }
    }

    server {
        listen 127.0.0.1:%%PORT_2%%;
        location / { return 200 ok; }
    }
}
EOF
$t->run;

my $port2 = $t->port(2);
$quiet = api(quiet => POST => '/webhooks', {
    url => "http://127.0.0.1:$port2/q", events => ['q.*'] })->{json}{id};
is(api(quiet => POST => '/events', { type => 'q.x' })->{status}, 201,
    'the quiet tenant\'s type, before the zone fills');
my $r;
for my $i (1 .. 500) {
    $r = api(noisy => POST => '/webhooks', {
        url => "http://127.0.0.1:$port2/n$i", events => ['n.*'],
        description => 'd' x 500 });
    last if $r->{status} != 201;
}
$t->is_error($r, 503, 'zone_full', undef,
    'the noisy tenant\'s endpoints fill the zone');
for my $b (1 .. 200) {
    $r = api(noisy => POST => '/events',
        [ map { { type => "n.t$b.$_" } } 1 .. 200 ]);
    last if $r->{status} != 201;
}
isnt($r->{status}, 201, "and its new types are refused ($r->{status})");
is(api(quiet => POST => '/events', [ map { { type => 'q.x' } } 1 .. 300 ])
    ->{status}, 201, 'the quiet tenant stores 300 events');
my $ok = 0;
$end = time + 10;
while (time < $end) {
    $ok = api(quiet => GET => "/webhooks/$quiet")->{json}{stats}{ok};
    last if $ok >= 301;
    sleep 0.2;
}
is($ok, 301, 'and all 300 are delivered');
is(api(quiet => GET => "/webhooks/$quiet")->{json}{stats}{pending}, 0,
    'none left pending');

$t->done;
