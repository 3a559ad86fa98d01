#!/usr/bin/perl

# What the webhook routes show and send is bounded by the endpoint's
# patterns and the caller's subscribe grant: a delivery of an event
# outside either answers 404 exactly like an event that does not exist
# (no existence oracle), and a retry of it sends nothing.  The same for
# local handlers (events_handler), and for the attempt log and replay.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use JSON::PP;
use Digest::SHA qw(hmac_sha256);
use MIME::Base64 qw(encode_base64url);
use EventsTest;
use EventsTest::Receiver;

my $t = EventsTest->new;
my $rcv = EventsTest::Receiver->new(dir => $t->testdir, name => 'g');
my $rport = $rcv->port;
$t->write_file('hs.key', 'k3y');

(my $conf = <<'EOF') =~ s/RPORT/$rport/g;
%%GLOBALS%%
http {
    %%HTTP_GLOBALS%%

    events_zone main 8m;

    server {
        listen 127.0.0.1:%%PORT%%;
        events_tenant $http_x_tenant;

        events_webhook_allow_private on;
        events_webhook_retry off;

        events_handler main id=tickets types=ticket.* tenant=acme
            location=/internal/on-ticket;

        location /events { events_api main; }

        location /webhooks {
            events_auth on;
            events_auth_jwt_key %%TESTDIR%%/hs.key;
            events_webhooks main;
        }

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

my $json = JSON::PP->new->canonical;

sub jwt {
    my ($claims) = @_;
    $claims->{exp} //= time + 600;
    my $h = encode_base64url($json->encode({ alg => 'HS256', typ => 'JWT' }));
    my $p = encode_base64url($json->encode($claims));
    return "$h.$p." . encode_base64url(hmac_sha256("$h.$p", 'k3y'));
}

my $tickets = jwt({ tenant => 'acme', subscribe => ['ticket.*'] });
my $admin = jwt({ tenant => 'acme', admin => JSON::PP::true });

sub api {
    my ($tok, $m, $p, $b) = @_;
    return $t->req($m, $p, headers => { Authorization => "Bearer $tok" },
        defined $b ? (json => $b) : ());
}

sub publish {
    my $r = $t->post_json('/events', { type => $_[0] },
        headers => { 'X-Tenant' => 'acme' });
    die "publish: $r->{body}" unless $r->{status} == 201;
    return $r->{json};
}

# an endpoint of ticket.* only, and one of everything (an admin's)
my $narrow = api($admin, POST => '/webhooks',
    { url => $rcv->url('/narrow'), events => ['ticket.*'] })->{json}{id};
my $wide = api($admin, POST => '/webhooks',
    { url => $rcv->url('/wide'), events => ['*'] })->{json}{id};
ok($narrow && $wide, 'two endpoints');

my $ticket = publish('ticket.created');
my $payroll = publish('payroll.run');
$rcv->wait_requests('/wide', 2, 10);
$rcv->wait_requests('/narrow', 1, 10);
$rcv->wait_requests('/fn/on-ticket', 1, 10);
$rcv->reset_log;

# an id that exists nowhere, for the answer to compare with
my $ghost = $ticket->{id};
substr($ghost, -4) = substr($ghost, -4) eq 'AAAA' ? 'BBBB' : 'AAAA';

sub same_404 {
    my ($r, $ghost_r, $name) = @_;
    $t->is_error($r, 404, 'not_found', undef, "$name: 404");
    (my $a = $r->{json}{error}{message} // "") =~ s/"[^"]+"/"ID"/;
    (my $b = $ghost_r->{json}{error}{message} // "x") =~ s/"[^"]+"/"ID"/;
    is($a, $b, "$name: the answer of an event that does not exist");
}

# outside the endpoint's patterns, whoever asks
for my $tok ([ admin => $admin ], [ tickets => $tickets ]) {
    my ($who, $k) = @$tok;
    same_404(api($k, GET => "/webhooks/$narrow/deliveries/$payroll->{id}"),
        api($k, GET => "/webhooks/$narrow/deliveries/$ghost"),
        "$who: GET a delivery outside the endpoint's events");
    same_404(api($k, POST =>
            "/webhooks/$narrow/deliveries/$payroll->{id}/retry"),
        api($k, POST => "/webhooks/$narrow/deliveries/$ghost/retry"),
        "$who: retry outside the endpoint's events");
}

# outside the caller's grant, on an endpoint that takes everything
same_404(api($tickets, GET => "/webhooks/$wide/deliveries/$payroll->{id}"),
    api($tickets, GET => "/webhooks/$wide/deliveries/$ghost"),
    'GET a delivery outside the token\'s grant');
same_404(api($tickets, POST =>
        "/webhooks/$wide/deliveries/$payroll->{id}/retry"),
    api($tickets, POST => "/webhooks/$wide/deliveries/$ghost/retry"),
    'retry outside the token\'s grant');
my @types = map { $_->{type} }
    @{ api($tickets, GET => "/webhooks/$wide/deliveries")->{json}{data} };
ok(@types && !grep({ $_ ne 'ticket.created' } @types),
    'the attempt log shows only what the grant covers');
$t->is_error(api($tickets, POST => "/webhooks/$wide/replay", { after => 0 }),
    403, 'forbidden', 'events', 'no replay of an endpoint wider than the '
    . 'grant');

# what is covered still works
is(api($tickets, GET => "/webhooks/$narrow/deliveries/$ticket->{id}")
    ->{status}, 200, 'a covered delivery: 200');
is(api($tickets, POST => "/webhooks/$wide/deliveries/$ticket->{id}/retry")
    ->{status}, 202, 'a covered retry: 202');
is(api($admin, POST => "/webhooks/$wide/deliveries/$payroll->{id}/retry")
    ->{status}, 202, 'an admin retries anything the endpoint takes: 202');
$rcv->wait_requests('/wide', 2, 10);
sleep 0.5;
my %sent = map { ($_->{headers}{'webhook-id'} => 1) }
    $rcv->requests('/wide'), $rcv->requests('/narrow');
ok($sent{ $ticket->{id} } && $sent{ $payroll->{id} }, 'the covered ones sent');
is(scalar $rcv->requests('/narrow'), 0,
    'nothing sent to the narrow endpoint by the refused retries');
is(scalar(grep { $_->{headers}{'webhook-id'} eq $payroll->{id} }
    $rcv->requests('/wide')), 1, 'payroll sent once: by the admin only');

# a local handler: its types bound it the same way
same_404(api($admin, GET => "/webhooks/tickets/deliveries/$payroll->{id}"),
    api($admin, GET => "/webhooks/tickets/deliveries/$ghost"),
    'handler: GET a delivery outside its types');
same_404(api($admin, POST =>
        "/webhooks/tickets/deliveries/$payroll->{id}/retry"),
    api($admin, POST => "/webhooks/tickets/deliveries/$ghost/retry"),
    'handler: retry outside its types');
is(api($admin, POST => "/webhooks/tickets/deliveries/$ticket->{id}/retry")
    ->{status}, 202, 'handler: a covered retry: 202');
$rcv->wait_requests('/fn/on-ticket', 1, 10);
sleep 0.3;
is(scalar(grep { $_->{headers}{'webhook-id'} eq $payroll->{id} }
    $rcv->requests('/fn/on-ticket')), 0, 'the handler never got payroll');

$t->done;
