#!/usr/bin/perl

# events_capture auto: writes answered 2xx on an events_resource become
# ticket.created / updated / deleted, with the JSON answer as data, while
# the answer streams to the client as the backend sends it.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use JSON::PP;
use IO::Socket::IP;
use IO::Select;
use Socket qw(SOL_SOCKET SO_RCVBUF);
use Time::HiRes qw(time sleep);
use EventsTest;
use EventsTest::Backend;

my $t = EventsTest->new;

$t->write_config(<<'EOF');
%%GLOBALS%%
http {
    %%HTTP_GLOBALS%%

    events_zone main 8m;

    server {
        listen 127.0.0.1:%%PORT%%;

        events_tenant $http_x_tenant;
        events_source helpdesk;

        location /api/ {
            events_capture auto zone=main;
            events_resource "/api/tickets/{id}" ticket;
            events_resource "/api/users/{id}/profile" user.profile;
            events_capture_metadata actorId $http_x_user;
            events_capture_metadata requestId $request_id;
            proxy_pass http://127.0.0.1:%%PORT_2%%;
        }

        location /small/ {
            events_capture auto zone=main;
            events_resource "/small/tickets/{id}" small;
            events_capture_max_body 100;
            proxy_pass http://127.0.0.1:%%PORT_2%%;
        }

        location /tiny/ {
            events_capture auto zone=main;
            events_resource "/tiny/tickets/{id}" tiny;
            events_max_event_size 512;
            proxy_pass http://127.0.0.1:%%PORT_2%%;
        }

        location /stream/ {
            events_capture auto zone=main;
            events_resource "/stream/tickets/{id}" streamed;
            proxy_buffering off;
            proxy_pass http://127.0.0.1:%%PORT_2%%;
        }

        location /events {
            events_api main;
        }

        location = /events-status {
            events_status main;
        }
    }

    server {
        # a client this slow makes nginx spool the answer to a temp file
        listen 127.0.0.1:%%PORT_3%% sndbuf=4k;

        location /spool/ {
            events_capture auto zone=main;
            events_resource "/spool/tickets/{id}" spooled;
            events_capture_max_body 1m;
            events_max_event_size 1m;
            proxy_buffers 4 4k;
            proxy_busy_buffers_size 4k;
            proxy_pass http://127.0.0.1:%%PORT_2%%;
        }
    }
}
EOF

my $backend = EventsTest::Backend->start($t, 2);
$t->run;

my $json = JSON::PP->new->canonical;

sub last_event {
    my (%o) = @_;
    my $r = $t->get('/events?order=desc&limit=1', %o);
    return $r->{json}{data}[0];
}

sub count { scalar @{ $t->get('/events?limit=1000')->{json}{data} } }

sub dechunk {
    my ($raw) = @_;
    my $out = '';
    $raw =~ s/^.*?\r\n\r\n//s;
    while ($raw =~ s/^([0-9a-f]+)\r\n//) {
        my $len = hex $1;
        last if $len == 0;
        $out .= substr($raw, 0, $len, '');
        $raw =~ s/^\r\n//;
    }
    return $out;
}

sub call {
    my ($method, $path, $body, %h) = @_;
    return $t->req($method, $path,
        (defined $body ? (body => $body) : ()),
        headers => { 'Content-Type' => 'application/json', %h });
}

###########################################################################
# POST: the id from the answer's body

my $body = '{"id":"t-1","title":"Printer on fire","tags":["hw"]}';
my $r = call('POST', '/api/tickets', $body, 'X-Status' => 201,
    'X-User' => 'u-42');

is($r->{status}, 201, 'POST passes');
is($r->{body}, $body, 'its body unchanged');

my $ev = last_event();
is($ev->{type}, 'ticket.created', 'POST: ticket.created');
is($ev->{resourceType}, 'ticket', 'resourceType');
is($ev->{resourceId}, 't-1', 'resourceId from the body\'s id');
is($ev->{source}, 'helpdesk', 'events_source');
is_deeply($ev->{payload}, { action => 'created', changes => undef,
    data => $json->decode($body) }, 'data: the answer');
is($ev->{metadata}{actorId}, 'u-42', 'metadata from a variable');
like($ev->{metadata}{requestId}, qr/^[0-9a-f]{32}$/, 'metadata: request id');

# Location beats the body; a number for an id becomes a string

call('POST', '/api/tickets/', '{"id":"not-this"}', 'X-Status' => 201,
    'X-Location' => 'http://backend/api/tickets/t-2?x=1');
is(last_event()->{resourceId}, 't-2', 'resourceId from Location');

call('POST', '/api/tickets', '{"id":42}', 'X-Status' => 200);
$ev = last_event();
is($ev->{resourceId}, '42', 'a numeric id, as a string');
ok(!exists $ev->{metadata}{actorId}, 'an empty variable: no key');

call('POST', '/api/tickets', '{"title":"no id"}', 'X-Status' => 201);
$ev = last_event();
is($ev->{type}, 'ticket.created', 'no id anywhere: still an event');
is($ev->{resourceId}, undef, 'without resourceId');

###########################################################################
# PUT, PATCH, DELETE: the id from the path; tenant

call('PUT', '/api/tickets/t-3', '{"id":"t-3","title":"New"}',
    'X-Tenant' => 'acme', 'X-Location' => '/api/tickets/other');
$ev = last_event(headers => { 'X-Tenant' => 'acme' });
is($ev->{type}, 'ticket.updated', 'PUT: ticket.updated');
is($ev->{resourceId}, 't-3', 'resourceId from the template');
is($ev->{tenantId}, 'acme', 'the request\'s tenant');
is($ev->{payload}{action}, 'updated', 'action updated');

call('PATCH', '/api/tickets/t-3', '{"title":"Newer"}');
$ev = last_event();
is($ev->{type}, 'ticket.updated', 'PATCH: ticket.updated');
is($ev->{payload}{data}{title}, 'Newer', 'PATCH: data');

$r = call('DELETE', '/api/tickets/t-3', undef, 'X-Status' => 204);
is($r->{status}, 204, 'DELETE passes');
$ev = last_event();
is($ev->{type}, 'ticket.deleted', 'DELETE: ticket.deleted');
is($ev->{resourceId}, 't-3', 'DELETE: resourceId');
is($ev->{payload}{data}, undef, 'DELETE 204: no data');

call('POST', '/api/users/u-9/profile', '{"name":"Ann"}');
$ev = last_event();
is($ev->{type}, 'user.profile.created', 'a template with a suffix');
is($ev->{resourceType}, 'profile', 'resourceType: the last segment');
is($ev->{resourceId}, 'u-9', 'the id inside the path');

###########################################################################
# What is not captured

my $n = count();
my $reached = () = $backend->log;
call('GET', '/api/tickets/t-3');
call('POST', '/api/tickets', '{"id":"t-4"}', 'X-Status' => 400);
call('PUT', '/api/tickets/t-4', '{"id":"t-4"}', 'X-Status' => 500);
call('POST', '/api/other', '{"id":"t-4"}');
call('POST', '/api/tickets/t-4/comments', '{"id":"t-4"}');
is(count(), $n, 'GET, 4xx, 5xx and other paths: nothing');
is(scalar(() = $backend->log), $reached + 5, 'yet all reached the backend');

###########################################################################
# Bodies that are not kept: not JSON, gzip, too big

$r = call('POST', '/api/tickets/', 'plain words',
    'X-Content-Type' => 'text/plain', 'X-Location' => '/api/tickets/t-5');
is($r->{body}, 'plain words', 'text: passes');
$ev = last_event();
is($ev->{resourceId}, 't-5', 'text: an event');
is($ev->{payload}{data}, undef, 'text: no data');

call('POST', '/api/tickets', '{"id":"t-6"}',
    'X-Content-Type' => 'application/vnd.api+json; charset=utf-8');
is_deeply(last_event()->{payload}{data}, { id => 't-6' }, '+json: data');

call('POST', '/api/tickets/', '{"id":"t-7"', 'X-Location' => '/x/t-7');
$ev = last_event();
is($ev->{resourceId}, 't-7', 'broken JSON: an event');
is($ev->{payload}{data}, undef, 'broken JSON: no data');

$body = '{"id":"t-8","pad":"' . ('y' x 200) . '"}';
$r = call('POST', '/small/tickets', $body);
is($r->{body}, $body, 'over events_capture_max_body: passes whole');
$ev = last_event();
is($ev->{type}, 'small.created', 'over the limit: an event');
is($ev->{resourceId}, undef, 'over the limit: the body was not read');
is($ev->{payload}{data}, undef, 'over the limit: no data');

$r = call('POST', '/small/tickets/', $body, 'X-Slow' => 3,
    'X-Location' => '/small/tickets/t-9');
is($r->{body}, $body, 'over the limit, chunked: passes whole');
$ev = last_event();
is($ev->{resourceId}, 't-9', 'chunked over the limit: an event');
is($ev->{payload}{data}, undef, 'chunked over the limit: no data');

call('POST', '/tiny/tickets', $body);
$ev = last_event();
is($ev->{type}, 'tiny.created', 'too big for the event: stored');
is($ev->{resourceId}, 't-8', 'with the id from the body');
is($ev->{payload}{data}, undef, 'but without data');

for my $size (60000, 70000) {
    $r = call('POST', '/api/tickets', undef, 'X-Body-Size' => $size);
    is(length $r->{body}, $size, "$size bytes: all to the client");
    $ev = last_event();
    is($ev->{resourceId}, $size < 65536 ? 'big' : undef,
        "$size bytes: id " . ($size < 65536 ? 'read' : 'not read'));
    is(length($ev->{payload}{data}{pad} // ''),
        $size < 65536 ? $size - 21 : 0, "$size bytes: data");
}

###########################################################################
# A bad id in the path: logged, counted, the answer untouched

my $invalid = $t->get('/events-status')->{json}{capture}{invalid};
$r = call('PUT', '/api/tickets/bad%20id', '{"a":1}');
is($r->{status}, 200, 'a bad id: the answer passes');
is($t->get('/events-status')->{json}{capture}{invalid}, $invalid + 1,
    'a bad id: counted');
like($t->error_log,
    qr/\[warn\].*captured event \(automatic\) refused: invalid_field/,
    'a bad id: warn');

###########################################################################
# A slow backend: the client has the first bytes long before the last

$body = '{"id":"t-10","parts":["' . join('","', 'a' .. 'e') . '"]}';
my $s = IO::Socket::IP->new(PeerHost => '127.0.0.1',
    PeerPort => $t->port(1)) or die "connect: $@";
print $s "POST /stream/tickets HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
    . "Content-Type: application/json\r\nX-Slow: 5\r\n"
    . 'Content-Length: ' . length($body) . "\r\n\r\n$body";

my ($start, $first, $got) = (time, undef, '');
my $sel = IO::Select->new($s);
while (time - $start < 10 && $sel->can_read(10 - (time - $start))) {
    sysread($s, my $buf, 65536) or last;
    $got .= $buf;
    $first //= time if $got =~ /\r\n\r\n.*\{/s;
}
my $end = time;

ok(defined $first, 'slow: a first piece came');
cmp_ok($end - $first, '>', 0.8, 'slow: it came well before the end')
    if defined $first;
like($got, qr/^HTTP\/1.1 200/, 'slow: 200');
is(dechunk($got), $body, 'slow: the body, as sent');
$ev = last_event();
is($ev->{type}, 'streamed.created', 'slow: the event once it ended');
is_deeply($ev->{payload}{data}, $json->decode($body), 'slow: whole data');

###########################################################################
# An answer spooled to a proxy temp file is read back for the data

my $size = 300000;
$s = IO::Socket::IP->new(PeerHost => '127.0.0.1', PeerPort => $t->port(3))
    or die "connect: $@";
setsockopt($s, SOL_SOCKET, SO_RCVBUF, 4096);
print $s "POST /spool/tickets HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
    . "X-Body-Size: $size\r\nContent-Length: 0\r\n\r\n";

sleep 1;
like($t->error_log,
    qr/\[warn\].*an upstream response is buffered to a temporary file/,
    'spool: nginx wrote the answer to a temp file');

$got = '';
$sel = IO::Select->new($s);
$start = time;
while (time - $start < 10 && $sel->can_read(10 - (time - $start))) {
    sysread($s, my $buf, 65536) or last;
    $got .= $buf;
}
$got =~ s/^.*?\r\n\r\n//s;
is(length $got, $size, 'spool: the client has it all');
$ev = last_event();
is($ev->{type}, 'spooled.created', 'spool: an event');
is(length($ev->{payload}{data}{pad} // ''), $size - 21,
    'spool: the whole data, read back from the file');

$backend->stop;
$t->done;
