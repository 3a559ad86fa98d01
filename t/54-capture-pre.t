#!/usr/bin/perl

# events_capture_pre: a write on an events_resource is first shown to a
# hook as the intended event; 2xx lets it through to the backend, a 4xx
# is the client's answer as the hook gave it and the backend never sees
# the request; a hook that times out or fails follows fail=.  Bodies in
# temp files, large bodies and pipelined requests.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use JSON::PP;
use IO::Socket::IP;
use Time::HiRes qw(sleep time);
use EventsTest;
use EventsTest::Backend;
use EventsTest::Receiver;

my $t = EventsTest->new;
my $hook = EventsTest::Receiver->new(dir => $t->testdir, name => 'hook');

$t->write_config(<<"EOF2");
%%GLOBALS%%
http {
    %%HTTP_GLOBALS%%

    events_zone main 8m;

    server {
        listen 127.0.0.1:%%PORT%%;
        events_tenant \$http_x_tenant;
        client_body_buffer_size 1k;
        client_max_body_size 4m;

        location /api/ {
            events_capture auto zone=main;
            events_resource "/api/tickets/{id}" ticket;
            events_capture_metadata actorId \$http_x_user;
            events_capture_pre /_pre;
            proxy_pass http://127.0.0.1:%%PORT_2%%;
        }

        location /open/ {
            events_capture auto zone=main;
            events_resource "/open/tickets/{id}" ticket;
            events_capture_pre /_pre fail=open;
            proxy_pass http://127.0.0.1:%%PORT_2%%;
        }

        location = /_pre {
            internal;
            proxy_pass ${\ $hook->url('/pre') };
            proxy_read_timeout 1s;
        }

        location /events { events_api main; }
    }
}
EOF2

my $backend = EventsTest::Backend->start($t, 2);
$t->run;

sub write_req {
    my ($method, $path, $body, %h) = @_;
    return $t->req($method, $path, defined $body ? (body => $body) : (),
        headers => { 'Content-Type' => 'application/json', %h });
}

sub backend_saw { scalar grep { m{^\S+ /(api|open)/} } $backend->log }

sub events {
    return @{ $t->get('/events?types=ticket.*&limit=1000')->{json}{data} };
}

###########################################################################
# 2xx: through, and the hook saw the intended event

$hook->script('/pre', { status => 204 });
my $r = write_req(PUT => '/api/tickets/42', '{"title":"New title"}',
    'X-User' => 'alice', 'X-Status' => 200);
is($r->{status}, 200, 'the hook agreed: the backend answered');
is($r->{body}, '{"title":"New title"}', 'its answer');
is(backend_saw(), 1, 'the backend saw the request');
my @pre = $hook->requests('/pre');
is(scalar @pre, 1, 'the hook was asked once');
is($pre[0]{method}, 'POST', 'by POST');
is($pre[0]{headers}{'content-type'}, 'application/json', 'JSON');
is($pre[0]{body}, '{"type":"ticket.update","resourceType":"ticket",'
    . '"resourceId":"42","payload":{"data":{"title":"New title"}},'
    . '"metadata":{"actorId":"alice"}}', 'the intended event');
is($pre[0]{headers}{'x-user'}, 'alice', 'with the client\'s headers');
my ($ev) = events();
is($ev->{type}, 'ticket.updated', 'the write was captured after');

$hook->reset_log;
$r = write_req(POST => '/api/tickets', '{"title":"x"}', 'X-Status' => 201,
    'X-Body' => '{"id":"t-7"}');
is($r->{status}, 201, 'POST: through');
is(decode_json(($hook->requests('/pre'))[0]{body})->{type}, 'ticket.create',
    'POST: ticket.create');
$hook->reset_log;
$r = write_req(DELETE => '/api/tickets/7', undef, 'X-Status' => 204);
is($r->{status}, 204, 'DELETE: through');
is(($hook->requests('/pre'))[0]{body}, '{"type":"ticket.delete",'
    . '"resourceType":"ticket","resourceId":"7"}',
    'DELETE: ticket.delete, no data');

$hook->reset_log;
$r = $t->get('/api/tickets/7');
is($r->{status}, 200, 'GET: not a write');
is(scalar $hook->requests('/pre'), 0, 'GET: the hook is not asked');
$r = write_req(POST => '/api/users', '{}');
is(scalar $hook->requests('/pre'), 0, 'not a resource: not asked');

###########################################################################
# 4xx: the hook's answer, as is; the backend never sees it

my $seen = backend_saw();
my $count = scalar events();

$hook->script('/pre', { status => 422,
    headers => { 'content-type' => 'application/json' },
    body => '{"error":"title may not be empty"}' });
$r = write_req(PUT => '/api/tickets/42', '{"title":""}');
is($r->{status} . ' ' . $r->{body},
    '422 {"error":"title may not be empty"}', 'refused: the hook\'s answer');
is($r->{headers}{'content-type'}, 'application/json', 'its content type');

$hook->script('/pre', { status => 403,
    headers => { 'content-type' => 'text/plain' }, body => "no way\n" });
$r = write_req(DELETE => '/api/tickets/42');
is($r->{status} . ' ' . $r->{body}, "403 no way\n", 'a text 403, as is');
is($r->{headers}{'content-type'}, 'text/plain', 'text/plain');

$hook->script('/pre', { status => 409,
    headers => { 'content-type' => 'application/json' },
    body => '{"pad":"' . ('x' x 5000) . '"}' });
$r = write_req(PUT => '/api/tickets/42', '{"a":1}');
is($r->{status} . ' ' . $r->{body}, '409 {"error":{"status":409,'
    . '"code":"rejected","message":"the pre-write hook refused the '
    . 'request"}}', 'a refusal too long to relay: ours, with its status');

is(backend_saw(), $seen, 'the backend saw none of these');
is(scalar events(), $count, 'nothing captured');

###########################################################################
# a hook that fails: fail=closed 503, fail=open through

$hook->script('/pre', { status => 500, body => 'boom' });
$r = write_req(PUT => '/api/tickets/42', '{"a":1}');
is($r->{status} . ' ' . $r->{body}, '503 {"error":{"status":503,'
    . '"code":"pre_hook_unavailable","message":"the pre-write hook did not '
    . 'answer; the request was not sent on"}}', '5xx, fail=closed: 503');

$hook->script('/pre', { status => 204, delay => 2.5 });
my $t0 = time;
$r = write_req(PUT => '/api/tickets/42', '{"a":1}');
is($r->{status}, 503, 'a hook that times out, fail=closed: 503');
cmp_ok(time - $t0, '<', 2.4, 'after proxy_read_timeout');
is(backend_saw(), $seen, 'the backend saw neither');

$r = write_req(PUT => '/open/tickets/42', '{"a":1}', 'X-Status' => 200);
is($r->{status}, 200, 'timeout, fail=open: through');
$hook->script('/pre', { status => 502 });
$r = write_req(PUT => '/open/tickets/43', '{"a":2}', 'X-Status' => 200);
is($r->{status}, 200, '502, fail=open: through');
is(backend_saw(), $seen + 2, 'the backend saw both');

###########################################################################
# bodies in temp files, large bodies, pipelining

$hook->script('/pre', { status => 200 });
$hook->reset_log;
my $big = '{"pad":"' . ('b' x 200_000) . '"}';
$r = write_req(PUT => '/api/tickets/9', $big, 'X-Status' => 200,
    'X-Body' => '{"ok":true}');
is($r->{status}, 200, 'a 200 KB body (a temp file): through');
my ($last) = grep { m{^PUT /api/tickets/9 } } $backend->log;
is(length($last // ''), length("PUT /api/tickets/9 application/json $big"),
    'the backend got the whole body');
is(($hook->requests('/pre'))[0]{body}, '{"type":"ticket.update",'
    . '"resourceType":"ticket","resourceId":"9"}',
    'larger than events_capture_max_body: the hook gets no data');

my $mid = '{"pad":"' . ('m' x 3000) . '"}';
$hook->reset_log;
$r = write_req(PUT => '/api/tickets/10', $mid, 'X-Status' => 200,
    'X-Body' => '{}');
is(decode_json(($hook->requests('/pre'))[0]{body})->{payload}{data}{pad},
    'm' x 3000, 'a 3 KB body read back from its temp file for the hook');

$hook->script('/pre', [ { status => 200 },
    { status => 422, headers => { 'content-type' => 'application/json' },
      body => '{"no":1}' },
    { status => 200 } ]);
my $sock = IO::Socket::IP->new(PeerHost => '127.0.0.1', PeerPort => $t->port)
    or die;
my $pipe = '';
for my $i (1 .. 3) {
    my $b = "{\"n\":$i}";
    $pipe .= "PUT /api/tickets/p$i HTTP/1.1\r\nHost: x\r\n"
        . "Content-Type: application/json\r\nContent-Length: "
        . length($b) . "\r\nX-Status: 200\r\nX-Body: {\"n\":$i}\r\n"
        . ($i == 3 ? "Connection: close\r\n" : '') . "\r\n$b";
}
print $sock $pipe;
my $all = '';
my $deadline = time + 10;
while (time < $deadline) {
    my $n = sysread($sock, my $buf, 65536);
    last unless $n;
    $all .= $buf;
}
my @status = $all =~ m{HTTP/1\.1 (\d+)}g;
is("@status", "200 422 200", "pipelined: each request its own verdict") or diag $all;
like($all, qr/\{"n":1\}.*\{"no":1\}.*\{"n":3\}/s, 'in order, bodies intact');
ok(!grep({ m{ /api/tickets/p2 } } $backend->log),
    'pipelined: the refused one never reached the backend');

###########################################################################
# configuration

my $c = EventsTest->new;
$c->write_config(<<'EOF3');
%%GLOBALS%%
http {
    %%HTTP_GLOBALS%%
    events_zone main 1m;
    server {
        listen 127.0.0.1:%%PORT%%;
        location /api/ {
            events_capture header zone=main;
            events_capture_pre /_pre;
            proxy_pass http://127.0.0.1:1;
        }
    }
}
EOF3
my ($ok, $out) = $c->_test_config;
ok(!$ok, 'nginx -t refuses a pre hook without automatic capture');
like($out, qr/"events_capture_pre" needs "events_capture auto" where it /,
    'and says why');

$hook->stop;
$backend->stop;
$t->done;
