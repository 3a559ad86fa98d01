#!/usr/bin/perl

# The webhook management API: every bad input with its exact error,
# PATCH and DELETE, replay (all, missing, failed, out of range), resend,
# the test ping, static endpoints from nginx.conf, tenant isolation on
# every route.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use JSON::PP;
use EventsTest;
use EventsTest::Receiver;
use EventsTest::Webhook qw(verify);

my $t = EventsTest->new;
my $rcv = EventsTest::Receiver->new(dir => $t->testdir, name => 'r1');
my $static_url = $rcv->url('/static');

(my $conf = <<'EOF') =~ s/STATIC_URL/$static_url/;
%%GLOBALS%%
http {
    %%HTTP_GLOBALS%%

    events_zone main 1m;

    events_webhook main id=orders url=STATIC_URL events=order.*
        secret=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw tenant=acme
        header=Authorization:Bearer-static;

    server {
        listen 127.0.0.1:%%PORT%%;
        events_tenant $http_x_tenant;

        events_webhook_allow 127.0.0.1/32;
        events_webhook_retry 1s;
        events_webhook_max_per_tenant 3;
        events_webhook_log_size 16;

        location /events { events_api main; }
        location /webhooks { events_webhooks main; }

        location = /_events_webhook {
            internal;
            proxy_pass $events_webhook_url;
            proxy_set_header Host $events_webhook_host;
        }
    }
}
EOF
$t->write_config($conf);
$t->run;

my %acme = ('X-Tenant' => 'acme');

sub api {
    my ($m, $p, $b, %h) = @_;
    return $t->req($m, $p, headers => { %acme, %h },
        defined $b ? (ref $b ? (json => $b)
                             : (body => $b, headers => { %acme,
                                 'Content-Type' => 'application/json', %h }))
                   : ());
}

sub publish { $t->post_json('/events', { type => $_[0], %{ $_[1] // {} } },
    headers => \%acme)->{json} }

my $url = $rcv->url('/hook');

# bad input, each with its exact answer; nothing is created
my @bad = (
    [ '{', 400, 'invalid_json' ],
    [ '[]', 400, 'invalid_body' ],
    [ { events => ['a.*'] }, 400, 'missing_field', 'url' ],
    [ { url => $url }, 400, 'missing_field', 'events' ],
    [ { url => 'ftp://x/y', events => ['a'] }, 400, 'invalid_url', 'url' ],
    [ { url => 'http://', events => ['a'] }, 400, 'invalid_url', 'url' ],
    [ { url => 'http://u:p@example.com/', events => ['a'] }, 400,
      'invalid_url', 'url' ],
    [ { url => 'http://example.com/' . ('x' x 2100), events => ['a'] }, 400,
      'invalid_url', 'url' ],
    [ { url => 'http://10.1.2.3/x', events => ['a'] }, 400, 'blocked_url',
      'url' ],
    [ { url => 'http://[::1]:80/x', events => ['a'] }, 400, 'blocked_url',
      'url' ],
    [ { url => 42, events => ['a'] }, 400, 'invalid_field', 'url' ],
    [ { url => $url, events => [] }, 400, 'invalid_field', 'events' ],
    [ { url => $url, events => 'a.*' }, 400, 'invalid_field', 'events' ],
    [ { url => $url, events => ['Bad Type'] }, 400, 'invalid_pattern',
      'events' ],
    [ { url => $url, events => [ map { "t$_" } 1 .. 17 ] }, 400,
      'invalid_field', 'events' ],
    [ { url => $url, events => ['a'], secret => 'nope' }, 400,
      'invalid_secret', 'secret' ],
    [ { url => $url, events => ['a'], secret => 'whsec_c2hvcnQ=' }, 400,
      'invalid_secret', 'secret' ],
    [ { url => $url, events => ['a'], colour => 'red' }, 400,
      'unknown_field', 'colour' ],
    [ { url => $url, events => ['a'], description => 'd' x 513 }, 400,
      'invalid_field', 'description' ],
    [ { url => $url, events => ['a'], headers => { 'x-a' => 'v' x 1025 } },
      400, 'invalid_field', 'headers' ],
    [ { url => $url, events => ['a'],
        headers => { map { ("x-h$_" => 'v') } 1 .. 17 } }, 400,
      'invalid_field', 'headers' ],
    [ { url => $url, events => ['a'], headers => { 'webhook-id' => 'x' } },
      400, 'invalid_field', 'headers' ],
    [ { url => $url, events => ['a'], headers => { 'bad name' => 'x' } },
      400, 'invalid_field', 'headers' ],
    [ { url => $url, events => ['a'], rateLimit => 0 }, 400,
      'invalid_field', 'rateLimit' ],
    [ { url => $url, events => ['a'], format => 'xml' }, 400,
      'invalid_field', 'format' ],
    [ { url => $url, events => ['a'], enabled => 'yes' }, 400,
      'invalid_field', 'enabled' ],
);

for my $b (@bad) {
    my ($body, $status, $code, $field) = @$b;
    my $r = api(POST => '/webhooks', $body);
    $t->is_error($r, $status, $code, $field,
        'POST ' . (ref $body ? JSON::PP->new->canonical->encode($body)
                             : $body) =~ s/(.{60}).*/$1.../r);
}

my $r = $t->req(POST => '/webhooks', body => 'url=x',
    headers => { %acme, 'Content-Type' => 'application/x-www-form-urlencoded' });
$t->is_error($r, 415, 'unsupported_media_type', undef, 'not JSON: 415');
$t->is_error(api(PUT => '/webhooks'), 405, 'method_not_allowed', undef,
    'PUT: 405');
$t->is_error(api(GET => '/webhooks/x/nope'), 404, 'not_found', undef,
    'an unknown route: 404');
$t->is_error(api(GET => '/webhooks/wh_nope'), 404, 'not_found', undef,
    'an unknown endpoint: 404');

is(scalar @{ api(GET => '/webhooks')->{json}{data} }, 1,
    'nothing was created by bad input (only the static one)');

# the static endpoint
my $st = api(GET => '/webhooks/orders')->{json};
ok($st->{static}, 'the nginx.conf endpoint is listed as static');
is_deeply($st->{events}, ['order.*'], 'its events');
is_deeply($st->{headers}, { Authorization => '(set)' },
    'header names only, never values');
$t->is_error(api(PATCH => '/webhooks/orders', { description => 'x' }), 409,
    'static_endpoint', undef, 'PATCH of a static endpoint: 409');
$t->is_error(api(DELETE => '/webhooks/orders'), 409, 'static_endpoint',
    undef, 'DELETE of a static endpoint: 409');
my $o = publish('order.paid');
my ($sr) = $rcv->wait_requests('/static', 1, 10);
ok(verify('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', $sr->{headers},
    $sr->{body}), 'static: signed with its secret');
is($sr->{headers}{authorization}, 'Bearer-static', 'static: its header');
is($sr->{headers}{'webhook-id'}, $o->{id}, 'static: the event');

# create with a supplied secret, custom headers, rate limit
my $ep = api(POST => '/webhooks', { url => $url, events => ['ticket.*'],
    secret => 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw',
    headers => { 'X-Api-Key' => 'k1' }, rateLimit => 50,
    description => 'desk' })->{json};
is($ep->{secret}, 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw',
    'the supplied secret');
is($ep->{rateLimit}, 50, 'rateLimit');
publish('ticket.created');
my ($hr) = $rcv->wait_requests('/hook', 1, 10);
is($hr->{headers}{'x-api-key'}, 'k1', 'custom header sent');

# PATCH: each field, and what it leaves alone
my $p = api(PATCH => "/webhooks/$ep->{id}", { events => ['ticket.closed'],
    description => 'changed', rateLimit => undef,
    headers => { 'X-Api-Key' => 'k2' } });
is($p->{status}, 200, 'PATCH');
is_deeply($p->{json}{events}, ['ticket.closed'], 'events changed');
is($p->{json}{description}, 'changed', 'description changed');
is($p->{json}{rateLimit}, undef, 'rateLimit removed');
is($p->{json}{url}, $url, 'url kept');
$t->is_error(api(PATCH => "/webhooks/$ep->{id}", { url => 'nope' }), 400,
    'invalid_url', 'url', 'PATCH with a bad url');
$t->is_error(api(PATCH => "/webhooks/$ep->{id}", { secret => 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw' }),
    400, 'invalid_field', 'secret', 'PATCH cannot set the secret');
is(api(GET => "/webhooks/$ep->{id}")->{json}{description}, 'changed',
    'a refused PATCH changed nothing');
publish('ticket.created');
publish('ticket.closed');
my @two = $rcv->wait_requests('/hook', 2, 10);
is($two[1]{headers}{'x-events-type'}, 'ticket.closed',
    'only the new pattern is delivered');
is($two[1]{headers}{'x-api-key'}, 'k2', 'with the new header');

# the per-tenant limit (3 here: the static one counts)
my $e2 = api(POST => '/webhooks', { url => $url, events => ['a'] })->{json};
$t->is_error(api(POST => '/webhooks', { url => $url, events => ['a'] }), 409,
    'too_many_endpoints', undef, 'the fourth endpoint: 409');
is(api(DELETE => "/webhooks/$e2->{id}")->{status}, 204, 'DELETE: 204');
$t->is_error(api(GET => "/webhooks/$e2->{id}"), 404, 'not_found', undef,
    'gone after DELETE');

# test ping and resend
my $ping = api(POST => "/webhooks/$ep->{id}/test");
is($ping->{status}, 202, 'test: 202');
my @pings = grep { ($_->{headers}{'x-events-type'} // '') eq 'webhook.test' }
    $rcv->wait_requests('/hook', 3, 10);
is(scalar @pings, 1, 'the ping arrived');
my $pb = decode_json($pings[0]{body});
is($pb->{type}, 'webhook.test', 'a webhook.test event');
is($pb->{payload}{data}{webhookId}, $ep->{id}, 'naming the endpoint');
ok(verify($ep->{secret}, $pings[0]{headers}, $pings[0]{body}),
    'signed like any other');
is($t->get("/events/$pb->{id}", headers => \%acme)->{status}, 404,
    'and not stored');

my $tc = publish('ticket.closed');
$rcv->wait_requests('/hook', 4, 10);
my $rs = api(POST => "/webhooks/$ep->{id}/deliveries/$tc->{id}/retry");
is($rs->{status}, 202, 'resend: 202');
my @re = grep { $_->{headers}{'webhook-id'} eq $tc->{id} }
    $rcv->wait_requests('/hook', 5, 10);
is(scalar @re, 2, 'sent again');
$t->is_error(api(POST => "/webhooks/$ep->{id}/deliveries/evt_nope/retry"),
    404, 'not_found', undef, 'resend of an unknown event');
my $dl = api(GET => "/webhooks/$ep->{id}/deliveries/$tc->{id}")->{json};
is($dl->{eventId}, $tc->{id}, 'one delivery');
is($dl->{state}, 'none', 'nothing pending for it');
is(scalar @{ $dl->{log} }, 2, 'its two attempts');
is($dl->{log}[0]{trigger}, 'manual', 'the resend is manual');

# the attempt log: filters and cursor paging, never skipping or repeating
my $all = api(GET => "/webhooks/$ep->{id}/deliveries?limit=1000")->{json};
my $n = @{ $all->{data} };
ok($n >= 5, "$n attempts logged");
my (@paged, $cursor);
for (1 .. 20) {
    my $page = api(GET => "/webhooks/$ep->{id}/deliveries?limit=2"
        . ($cursor ? "&after=$cursor" : ''))->{json};
    push @paged, @{ $page->{data} };
    $cursor = $page->{nextCursor} or last;
}
is_deeply([ map { $_->{id} } @paged ], [ map { $_->{id} } @{ $all->{data} } ],
    'pages of 2 give the whole log once');
my $f = api(GET => "/webhooks/$ep->{id}/deliveries?eventId=$tc->{id}")->{json};
is(scalar @{ $f->{data} }, 2, 'filter by eventId');
$t->is_error(api(GET => "/webhooks/$ep->{id}/deliveries?limit=0"), 400,
    'invalid_parameter', 'limit', 'limit=0');
$t->is_error(api(GET => "/webhooks/$ep->{id}/deliveries?after=zz"), 400,
    'invalid_cursor', 'after', 'a bad cursor');
$t->is_error(api(GET => "/webhooks/$ep->{id}/deliveries?status=meh"), 400,
    'invalid_parameter', 'status', 'a bad status');

# replay: all, and missing (before the endpoint existed)
my @old = map { publish('report.ready', { resourceId => "r$_" }) } 1 .. 3;
my $late = api(POST => '/webhooks', { url => $rcv->url('/late'),
    events => ['report.*'] })->{json};
select undef, undef, undef, 0.02;     # a millisecond of its own
my $new = publish('report.ready', { resourceId => 'r4' });
$rcv->wait_requests('/late', 1, 10);
my $miss = api(POST => "/webhooks/$late->{id}/replay",
    { after => 0, mode => 'missing' });
is($miss->{status}, 202, 'replay missing');
is($miss->{json}{queued}, 3, 'the three from before it existed');
like($miss->{json}{replayId}, qr/^rp_/, 'a replay id');
my @late = $rcv->wait_requests('/late', 4, 10);
is_deeply([ sort map { $_->{headers}{'webhook-id'} } @late ],
    [ sort map { $_->{id} } @old, $new ], 'missing: exactly those');

my $since = api(POST => "/webhooks/$late->{id}/replay",
    { since => $new->{timestamp}, mode => 'all' });
is($since->{json}{queued}, 1, 'replay since a time: from that event on')
    or diag $since->{body};
is(scalar $rcv->wait_requests('/late', 5, 10), 5, 'delivered');
$rcv->reset_log;
$rcv->script('/late', undef);

my $ra = api(POST => "/webhooks/$late->{id}/replay",
    { after => $old[1]{seq} - 1, until => $new->{seq} - 1 });
is($ra->{json}{queued}, 2, 'replay all of a range');
is(scalar $rcv->wait_requests('/late', 2, 10), 2, 'delivered again');
$t->is_error(api(POST => "/webhooks/$late->{id}/replay", {}), 400,
    'missing_field', 'after', 'replay without a start');
$t->is_error(api(POST => "/webhooks/$late->{id}/replay",
    { after => 0, mode => 'some' }), 400, 'invalid_field', 'mode',
    'replay with a bad mode');
$t->is_error(api(POST => "/webhooks/$late->{id}/replay", { after => 'x' }),
    400, 'invalid_field', 'after', 'replay with a bad cursor');

# a range the ring no longer holds: 409 with "oldest"
for (1 .. 300) {
    $t->post_json('/events', { type => 'filler.x',
        payload => { data => { pad => 'p' x 3000 } } }, headers => \%acme);
}
my $gone = api(POST => "/webhooks/$late->{id}/replay", { after => 0 });
$t->is_error($gone, 409, 'replay_out_of_range', 'after',
    'replay older than the ring: 409');
ok($gone->{json}{error}{oldest}, 'it says where the ring starts');

# every route is confined to the tenant
my %other = ('X-Tenant' => 'other');
for my $route ([GET => "/webhooks/$ep->{id}"],
    [PATCH => "/webhooks/$ep->{id}", { description => 'x' }],
    [DELETE => "/webhooks/$ep->{id}"],
    [GET => "/webhooks/$ep->{id}/deliveries"],
    [GET => "/webhooks/$ep->{id}/deliveries/$tc->{id}"],
    [POST => "/webhooks/$ep->{id}/deliveries/$tc->{id}/retry"],
    [POST => "/webhooks/$ep->{id}/replay", { after => 0 }],
    [POST => "/webhooks/$ep->{id}/test"],
    [POST => "/webhooks/$ep->{id}/rotate-secret", {}],
    [GET => '/webhooks/orders'])
{
    my ($m, $path, $b) = @$route;
    $t->is_error(api($m, $path, $b, %other), 404, 'not_found', undef,
        "another tenant: $m $path");
}
is(api(GET => "/webhooks/$ep->{id}")->{json}{description}, 'changed',
    'still there, unchanged');

# a static endpoint's secret rotated in nginx.conf: secret_previous
# signs too, and the endpoint keeps its id and its log across the reload
my $newsec = 'whsec_QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo=';
(my $rotated = $conf) =~ s/secret=(\S+)/secret=$newsec secret_previous=$1/;
$t->write_config($rotated);
ok($t->reload, 'reloaded with a new static secret');
my $before = scalar $rcv->requests('/static');
publish('order.refunded');
my @sr = $rcv->wait_requests('/static', $before + 1, 10);
my $last = $sr[-1];
is(scalar(split / /, $last->{headers}{'webhook-signature'}), 2,
    'two signatures after the rotation');
ok(verify($newsec, $last->{headers}, $last->{body}), 'the new secret');
ok(verify('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', $last->{headers},
    $last->{body}), 'and the previous one');
ok(api(GET => '/webhooks/orders')->{json}{stats}{ok} >= 2,
    'the same endpoint, its counters kept');

$t->done;
