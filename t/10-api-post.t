#!/usr/bin/perl

# POST /events: one event, batches, idempotent ids, and every bad input
# with its exact status and error.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use JSON::PP;
use EventsTest;

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
        client_body_buffer_size 8k;

        location /events {
            events_api main;
        }

        location /small {
            events_api main;
            events_max_event_size 1k;
            events_max_body_size 4k;
        }
    }
}
EOF

$t->run;

my $json = JSON::PP->new->canonical;

sub head_seq {
    my $r = $t->get('/events?order=desc&limit=1');
    return @{ $r->{json}{data} } ? $r->{json}{data}[0]{seq} : 0;
}

###########################################################################
# One event

my $r = $t->post_json('/events', {
    type => 'ticket.created',
    resourceId => 'ticket-123',
    projectId => 'p-7',
    occurredAt => '2026-11-23T11:59:59.5+01:00',
    payload => { data => { title => 'Printer on fire' } },
    metadata => { actorId => 'u-42' },
});

is($r->{status}, 201, 'created');
like($r->{headers}{'content-type'}, qr{^application/json}, 'json');
my $ev = $r->{json};
like($ev->{id}, qr/^evt_[0-9A-HJKMNP-TV-Z]{26}$/, 'server id is a ULID');
like($r->{headers}{location}, qr{/events/\Q$ev->{id}\E$}, 'Location');
is($ev->{seq}, 1, 'first seq');
is($ev->{type}, 'ticket.created', 'type');
is($ev->{source}, 'helpdesk', 'source from events_source');
is($ev->{tenantId}, undef, 'default tenant');
is($ev->{projectId}, 'p-7', 'projectId kept');
is($ev->{resourceType}, 'ticket', 'resourceType from the type');
is($ev->{resourceId}, 'ticket-123', 'resourceId');
like($ev->{timestamp}, qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/,
    'timestamp, ms, UTC');
is($ev->{occurredAt}, '2026-11-23T11:59:59.5+01:00', 'occurredAt as given');
is_deeply($ev->{payload},
    { action => 'created', data => { title => 'Printer on fire' },
      changes => undef }, 'payload, action derived from the type');
is_deeply($ev->{metadata}, { actorId => 'u-42' }, 'metadata');
is_deeply([sort keys %$ev], [sort qw(id seq type source tenantId projectId
    resourceType resourceId timestamp occurredAt payload metadata)],
    'the envelope has every field');

my $got = $t->get("/events/$ev->{id}");
is($got->{status}, 200, 'readable by id');
is($got->{body}, $r->{body}, 'byte-identical to the POST answer');

# the action: given, derived, or occurred
$r = $t->post_json('/events', { type => 'custom.report.generated' });
is($r->{json}{payload}{action}, 'occurred', 'occurred by default');
is($r->{json}{seq}, 2, 'seq goes on');
$r = $t->post_json('/events', { type => 'ticket.post_update',
    payload => { action => 'updated', changes => { title => 'old' } } });
is($r->{status}, 201, 'changes with updated');
is_deeply($r->{json}{payload}{changes}, { title => 'old' }, 'changes kept');
$r = $t->post_json('/events', { type => 'ticket.deleted',
    source => 'billing', resourceType => 'Ticket-V2' });
is($r->{json}{payload}{action}, 'deleted', 'deleted from the type');
is($r->{json}{source}, 'billing', 'source from the body wins');
is($r->{json}{resourceType}, 'Ticket-V2', 'resourceType from the body');

# data comes back as it was sent
my $raw = '{"type":"num.test","payload":{"data":{"a":1.1,"b":0.30000000000000004,'
    . '"c":1e300,"d":12345678901234,"e":-7,"f":"h\u00e9llo \u2603",'
    . '"g":"q\"b\\\\n\n","h":[true,false,null],"i":1.0,"j":{}}}}';
$r = $t->req('POST', '/events', body => $raw,
    headers => { 'Content-Type' => 'application/json; charset=utf-8' });
is($r->{status}, 201, 'numbers and strings');
like($r->{body}, qr/"data":\{"a":1\.1,"b":0\.30000000000000004,"c":1e\+300,
    "d":12345678901234,"e":-7,"f":"h\x{c3}\x{a9}llo\x20\x{e2}\x{98}\x{83}",
    "g":"q\\"b\\\\n\\n","h":\[true,false,null\],"i":1\.0,"j":\{\}\}/x,
    'numbers keep their value and form, UTF-8 kept, escapes right');

###########################################################################
# Idempotent ids

my $body = { id => 'order-42:v1', type => 'order.created',
    payload => { data => { total => 10, currency => 'EUR' } } };
my $first = $t->post_json('/events', $body);
is($first->{status}, 201, 'client id stored');
is($first->{json}{id}, 'order-42:v1', 'client id kept');

my $again = $t->req('POST', '/events', headers => {
    'Content-Type' => 'application/json' },
    body => '{"payload":{"data":{"currency":"EUR","total":10}},'
        . '"type":"order.created","id":"order-42:v1"}');
is($again->{status}, 200, 'same id, same body (keys reordered): 200');
is($again->{body}, $first->{body}, 'the stored event again');

my $before = head_seq();
$r = $t->post_json('/events', { %$body, payload => { data => { total => 11 } } });
$t->is_error($r, 409, 'conflict', 'id', 'same id, other body: 409');
is(head_seq(), $before, 'nothing stored by the conflict');

# the same id in another tenant is another event
$r = $t->post_json('/events', $body, headers => { 'X-Tenant' => 'acme' });
is($r->{status}, 201, 'same id, other tenant: a new event');
is($r->{json}{tenantId}, 'acme', 'tenant from the request');

###########################################################################
# Batches

$before = head_seq();
$r = $t->post_json('/events', [
    { type => 'session.started', resourceId => 's-1' },
    { type => 'session.member.joined', resourceId => 's-1' },
    { id => 'order-42:v1', type => 'order.created',
      payload => { data => { total => 10, currency => 'EUR' } } },
]);
is($r->{status}, 201, 'batch created');
is(scalar @{ $r->{json}{data} }, 3, 'three answers');
cmp_ok($r->{json}{data}[0]{seq}, '>', $before, 'batch seqs follow');
is($r->{json}{data}[1]{seq}, $r->{json}{data}[0]{seq} + 1, 'in order');
is($r->{json}{data}[2]{seq}, $first->{json}{seq}, 'repeat in a batch');
is(head_seq(), $r->{json}{data}[1]{seq}, 'two stored');

$before = head_seq();
$r = $t->post_json('/events', [
    { type => 'a.b' }, { type => 'BAD' }, { type => 'c.d' } ]);
$t->is_error($r, 400, 'invalid_field', '[1].type', 'bad item named');
is(head_seq(), $before, 'batch with a bad item stores nothing');

$r = $t->post_json('/events', [
    { type => 'a.b' }, { id => 'order-42:v1', type => 'other.type' } ]);
$t->is_error($r, 409, 'conflict', '[1].id', 'conflict in a batch');
is(head_seq(), $before, 'nothing stored by a batch conflict');

$r = $t->post_json('/events', [
    { id => 'x1', type => 'a.b' }, { id => 'x1', type => 'a.b' } ]);
$t->is_error($r, 400, 'invalid_body', '[1].id', 'id twice in a batch');

$r = $t->post_json('/events', []);
$t->is_error($r, 400, 'invalid_body', undef, 'empty batch');

$r = $t->post_json('/events', [ map { { type => 'a.b' } } 1 .. 1001 ]);
$t->is_error($r, 413, 'payload_too_large', undef, 'batch over 1000');
is(head_seq(), $before, 'nothing stored');

# a body larger than client_body_buffer_size lands in a temp file
$r = $t->post_json('/events', [ map {
    { type => 'bulk.loaded', resourceId => "r-$_",
      payload => { data => { pad => 'x' x 200 } } } } 1 .. 200 ]);
is($r->{status}, 201, 'a 50k batch read back from the temp file');
is(scalar @{ $r->{json}{data} }, 200, 'all 200 stored');
is(head_seq(), $before + 200, 'seqs follow');

###########################################################################
# Bad input: exact status, code and field; nothing stored

$before = head_seq();

sub post_raw {
    my ($body, %h) = @_;
    return $t->req('POST', '/events', body => $body,
        headers => { 'Content-Type' => 'application/json', %h });
}

$t->is_error(post_raw('{"type":"a.b",'), 400, 'invalid_json', undef,
    'malformed JSON');
like(post_raw('{"type":')->{json}{error}{message}, qr/line 1, column/,
    'malformed JSON says where');
$t->is_error(post_raw(''), 400, 'invalid_json', undef, 'empty body');
$t->is_error(post_raw('{"type":"a.b","type":"c.d"}'), 400, 'invalid_json',
    undef, 'duplicate keys');
$t->is_error(post_raw('"ticket.created"'), 400, 'invalid_body', undef,
    'a string is no event');
$t->is_error(post_raw('[1]'), 400, 'invalid_body', undef,
    'a number is no event');
$t->is_error(post_raw('{}'), 400, 'missing_field', 'type', 'missing type');
$t->is_error(post_raw('{"type":42}'), 400, 'invalid_field', 'type',
    'type of the wrong type');

for my $bad ('Ticket.created', 'ticket..created', '.ticket', 'ticket.',
    'ticket created', 'x' x 129, '')
{
    $t->is_error(post_raw($json->encode({ type => $bad })), 400,
        'invalid_field', 'type', "invalid type '" . substr($bad, 0, 20) . "'");
}

$t->is_error(post_raw('{"type":"a.b","payload":{"action":"archived"}}'),
    400, 'invalid_field', 'payload.action', 'bad action');
$t->is_error(post_raw('{"type":"a.b","payload":{"action":1}}'),
    400, 'invalid_field', 'payload.action', 'action of the wrong type');
$t->is_error(post_raw('{"type":"a.created","payload":{"changes":{"x":1}}}'),
    400, 'invalid_field', 'payload.changes', 'changes without updated');
$t->is_error(post_raw('{"type":"a.updated","payload":{"changes":[1]}}'),
    400, 'invalid_field', 'payload.changes', 'changes not an object');
$t->is_error(post_raw('{"type":"a.b","payload":"x"}'),
    400, 'invalid_field', 'payload', 'payload not an object');
is(post_raw('{"type":"a.b","payload":{"extra":1}}')->{status}, 201,
    'other payload keys are kept (t/80-payload.t)');
$before++;
$t->is_error(post_raw('{"type":"a.b","tenantId":"acme"}'),
    403, 'tenant_mismatch', 'tenantId', 'foreign tenantId');
$t->is_error(post_raw('{"type":"a.b","tenantId":"other"}',
    'X-Tenant' => 'acme'), 403, 'tenant_mismatch', 'tenantId',
    'another tenant than the header');
is(post_raw('{"type":"a.b","tenantId":"acme"}', 'X-Tenant' => 'acme')
    ->{status}, 201, 'own tenantId accepted');
$before++;
$t->is_error(post_raw('{"type":"a.b","id":"has space"}'), 400,
    'invalid_field', 'id', 'bad id characters');
$t->is_error(post_raw('{"type":"a.b","id":"' . ('x' x 129) . '"}'), 400,
    'invalid_field', 'id', 'id too long');
$t->is_error(post_raw('{"type":"a.b","id":7}'), 400, 'invalid_field', 'id',
    'id of the wrong type');
$t->is_error(post_raw('{"type":"a.b","source":5}'), 400, 'invalid_field',
    'source', 'source of the wrong type');
$t->is_error(post_raw('{"type":"a.b","resourceId":{"x":1}}'), 400,
    'invalid_field', 'resourceId', 'resourceId of the wrong type');
$t->is_error(post_raw('{"type":"a.b","resourceId":"a/b"}'), 400,
    'invalid_field', 'resourceId', 'resourceId with a slash');
$t->is_error(post_raw('{"type":"a.b","resourceType":"a.b"}'), 400,
    'invalid_field', 'resourceType', 'resourceType with a dot');
$t->is_error(post_raw('{"type":"a.b","metadata":[1]}'), 400,
    'invalid_field', 'metadata', 'metadata not an object');
$t->is_error(post_raw('{"type":"a.b","occurredAt":"yesterday"}'), 400,
    'invalid_field', 'occurredAt', 'occurredAt not a time');
# dates that never were are refused, not rolled over into the next month
for my $day (qw(2026-02-29 2026-02-31 2026-04-31 2026-02-29T10:00:00Z
    2100-02-29T00:00:00+01:00))
{
    $t->is_error(post_raw(qq({"type":"a.b","occurredAt":"$day"})), 400,
        'invalid_field', 'occurredAt', "occurredAt $day does not exist");
}
is(post_raw('{"type":"a.b","occurredAt":"2028-02-29T12:00:00Z"}')->{status},
    201, 'occurredAt on a leap day');
is(post_raw('{"type":"a.b","occurredAt":"2000-02-29"}')->{status},
    201, 'occurredAt on the leap day of a 400th year');
$before += 2;
$t->is_error(post_raw('{"type":"a.b","colour":"red"}'), 400,
    'unknown_field', 'colour', 'unknown field');
$t->is_error(post_raw('{"type":"a.b","seq":5}'), 400, 'invalid_field',
    'seq', 'seq is the server\'s');
$t->is_error(post_raw('{"type":"a.b","timestamp":"2026-01-01T00:00:00Z"}'),
    400, 'invalid_field', 'timestamp', 'timestamp is the server\'s');
$t->is_error(post_raw('{"type":"a.b"}', 'X-Tenant' => 'a b'), 400,
    'invalid_tenant', undef, 'a tenant that cannot be one');

$r = $t->req('POST', '/events', body => '{"type":"a.b"}',
    headers => { 'Content-Type' => 'text/plain' });
$t->is_error($r, 415, 'unsupported_media_type', undef, 'text/plain');
$r = $t->req('POST', '/events', body => '{"type":"a.b"}');
$t->is_error($r, 415, 'unsupported_media_type', undef, 'no content type');
$r = $t->req('POST', '/events', body => '{"type":"a.b"}',
    headers => { 'Content-Type' => 'application/jsonx' });
$t->is_error($r, 415, 'unsupported_media_type', undef, 'application/jsonx');

# sizes: one event, and the whole body
$r = $t->req('POST', '/small', body => $json->encode(
    { type => 'a.b', payload => { data => 'x' x 1100 } }),
    headers => { 'Content-Type' => 'application/json' });
$t->is_error($r, 413, 'payload_too_large', undef, 'event over 1k');
like($r->{json}{error}{message}, qr/at most 1024 bytes/, 'says the limit');
$r = $t->req('POST', '/small', body => $json->encode(
    [ map { { type => 'a.b', payload => { data => 'x' x 500 } } } 1 .. 8 ]),
    headers => { 'Content-Type' => 'application/json' });
$t->is_error($r, 413, 'payload_too_large', undef, 'body over 4k');
$r = $t->req('POST', '/small', body => $json->encode(
    { type => 'a.b', payload => { data => 'x' x 500 } }),
    headers => { 'Content-Type' => 'application/json' });
is($r->{status}, 201, 'under the limits');
$before++;

is(head_seq(), $before, 'no bad request stored anything');

###########################################################################
# Methods

$r = $t->req('PUT', '/events', body => '{}',
    headers => { 'Content-Type' => 'application/json' });
$t->is_error($r, 405, 'method_not_allowed', undef, 'PUT on the collection');
is($r->{headers}{allow}, 'GET, HEAD, POST', 'Allow');
$r = $t->req('DELETE', "/events/$ev->{id}");
$t->is_error($r, 405, 'method_not_allowed', undef, 'DELETE an event');
is($r->{headers}{allow}, 'GET, HEAD', 'Allow for one event');
$r = $t->req('POST', '/events/ticket/ticket-123', body => '{}',
    headers => { 'Content-Type' => 'application/json' });
$t->is_error($r, 405, 'method_not_allowed', undef, 'POST to a history');
$r = $t->req('HEAD', "/events/$ev->{id}");
is($r->{status}, 200, 'HEAD one event');
is($r->{body}, '', 'HEAD has no body');

$t->done;
