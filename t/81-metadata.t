#!/usr/bin/perl

# ?metadata.KEY=VALUE: exact matches on the envelope's metadata, on the
# list (ring and history on disk), on entity history and on streams;
# the actor of captured writes (events_capture_metadata); every bad
# filter with its exact answer.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use JSON::PP;
use Time::HiRes qw(sleep time);
use EventsTest;
use EventsTest::SSE;
use EventsTest::Backend;

my $t = EventsTest->new;

$t->write_config(<<'EOF2');
%%GLOBALS%%
http {
    %%HTTP_GLOBALS%%

    events_zone main 1m;
    events_journal main %%TESTDIR%%/journal fsync=off segment_size=2m;
    events_zone idx 8m;

    server {
        listen 127.0.0.1:%%PORT%%;
        events_tenant $http_x_tenant;
        client_max_body_size 4m;

        location = /events/stream { events_stream main; }
        location /events { events_api main; }

        location /idx {
            events_api idx;
            events_scan_limit 50;
        }

        location /api/ {
            events_capture auto zone=main;
            events_resource "/api/tickets/{id}" ticket;
            events_capture_metadata actorId $http_x_user;
            proxy_pass http://127.0.0.1:%%PORT_2%%;
        }
    }
}
EOF2

my $backend = EventsTest::Backend->start($t, 2);
$t->run;

sub post {
    my ($body) = @_;
    my $r = $t->req(POST => '/events', body => $body,
        headers => { 'Content-Type' => 'application/json' });
    die "POST: $r->{status} $r->{body}" unless $r->{status} =~ /^20[01]$/;
    return $r->{json};
}

# every match, following "next" (a page from disk may stop short)
sub ids {
    my ($query) = @_;
    my (@ids, $after);
    for (1 .. 100) {
        my $r = $t->get("/events?$query&limit=1000"
            . (defined $after ? "&after=$after" : ''));
        die "GET $query: $r->{status} $r->{body}" unless $r->{status} == 200;
        push @ids, map { $_->{id} } @{ $r->{json}{data} };
        return \@ids unless $r->{json}{has_more};
        $after = $r->{json}{next};
    }
    return \@ids;
}

###########################################################################
# Matches

post('{"id":"m1","type":"doc.created","metadata":{"actorId":"u-1",'
    . '"tags":"a b","n":42,"ok":true}}');
post('{"id":"m2","type":"doc.created","metadata":{"actorId":"u-2",'
    . '"where":"caf\u00e9 \"quoted\""}}');
post('{"id":"m3","type":"doc.updated","metadata":{"actorId":"u-1",'
    . '"obj":{"actorId":"u-2"},"arr":["u-1"],"nul":null}}');
post('{"id":"m4","type":"doc.deleted","resourceId":"d-1",'
    . '"payload":{"data":{"metadata":{"actorId":"u-1"}}},'
    . '"source":"x\",\"metadata\":{\"actorId\":\"u-1\"}"}');
post('{"id":"m5","type":"doc.deleted","resourceId":"d-1",'
    . '"metadata":{"actorId":"u-1"}}');

is_deeply(ids('metadata.actorId=u-1'), [qw(m1 m3 m5)], 'by actor');
is_deeply(ids('metadata.actorId=u-2'), ['m2'],
    'only the top level of metadata: not a nested object');
is_deeply(ids('metadata.actorId=u-1&metadata.tags=a%20b'), ['m1'],
    'several filters: all must match');
is_deeply(ids('metadata.actorId=u-1&types=doc.updated'), ['m3'],
    'with a type filter');
is_deeply(ids('metadata.n=42'), ['m1'], 'a number, as a string');
is_deeply(ids('metadata.ok=true'), ['m1'], 'true, as a string');
is_deeply(ids('metadata.n=42.0'), [], 'exact: 42.0 is not 42');
is_deeply(ids('metadata.where=caf%C3%A9%20%22quoted%22'), ['m2'],
    'UTF-8 and quotes, URL-encoded');
is_deeply(ids('metadata.actorId=U-1'), [], 'case matters');
is_deeply(ids('metadata.nul=null'), [], 'null never matches');
is_deeply(ids('metadata.arr=u-1'), [], 'an array never matches');
is_deeply(ids('metadata.missing=x'), [], 'a key no event has');
is_deeply([ map { $_->{id} } @{ $t->get('/events?metadata.actorId=u-1'
    . '&order=desc')->{json}{data} } ], [qw(m5 m3 m1)], 'descending');
my $page = $t->get('/events?metadata.actorId=u-1&limit=2');
ok($page->{json}{has_more}, 'has_more');
like($page->{headers}{link} // '', qr/metadata\.actorId=u-1/,
    'the next link keeps the filter');
my $next = $t->get("/events?metadata.actorId=u-1&limit=2&after="
    . $page->{json}{next});
is_deeply([ map { $_->{id} } @{ $next->{json}{data} } ], ['m5'],
    'the next page');
is_deeply([ map { $_->{id} }
    @{ $t->get('/events/doc/d-1?metadata.actorId=u-1')->{json}{data} } ],
    ['m5'], 'entity history: the payload\'s and source\'s look-alikes '
    . 'do not match');

###########################################################################
# Streams

my $s = EventsTest::SSE->open($t,
    '/events/stream?metadata.actorId=u-7&lastEventId=earliest');
is($s->status, 200, 'a filtered stream');
post('{"id":"s1","type":"doc.created","metadata":{"actorId":"u-8"}}');
post('{"id":"s2","type":"doc.created","metadata":{"actorId":"u-7"}}');
my ($e) = grep { !$_->{event} || $_->{event} eq 'message' }
    map { $s->next_event(timeout => 5) } 1 .. 2;
is($e && $e->{json}{id}, 's2', 'the stream gets only the actor\'s event');
$s->close if $s->can('close');

###########################################################################
# Captured writes carry the actor; the audit trail by actor

for my $u (qw(alice bob alice)) {
    my $r = $t->req(POST => '/api/tickets', body => '{"id":"t-1"}',
        headers => { 'Content-Type' => 'application/json',
            'X-User' => $u, 'X-Status' => 201 });
    is($r->{status}, 201, "a write by $u");
}
my $deadline = time + 5;
sleep 0.05 while @{ ids('metadata.actorId=alice') } < 2 && time < $deadline;
my $by = $t->get('/events?metadata.actorId=alice&types=ticket.*')->{json};
is(scalar @{ $by->{data} }, 2, 'alice\'s two writes');
is_deeply([ map { $_->{type} } @{ $by->{data} } ],
    [qw(ticket.created ticket.created)], 'as events');

###########################################################################
# From disk: events that left the ring

my @batch;
for my $i (1 .. 3000) {
    push @batch, { id => "h$i", type => 'bulk.loaded',
        metadata => { actorId => ($i % 1000 == 7 ? 'rare' : 'bulk') },
        payload => { data => { pad => 'p' x 200 } } };
    if (@batch == 200) {
        my $r = $t->post_json('/events', \@batch);
        die "POST batch: $r->{status}" unless $r->{status} == 201;
        @batch = ();
    }
}
my $first = $t->get('/events?limit=1')->{json}{data}[0]{id};
is($first, 'm1', 'the first events are still there (from disk)');
is_deeply(ids('metadata.actorId=u-1'), [qw(m1 m3 m5)],
    'by actor, from the history on disk');
is_deeply(ids('metadata.actorId=rare'), [qw(h7 h1007 h2007)],
    'a rare actor across disk and ring');

###########################################################################
# metadata.actorId is indexed (in memory): a page finds an actor's
# events among many others without scanning them; another key is scanned,
# events_scan_limit at a time

my @idx;
for my $i (1 .. 1000) {
    push @idx, { type => 'idx.made', metadata => {
        actorId => ($i % 400 == 123 ? 'needle' : "hay-$i"),
        other => ($i % 400 == 123 ? 'needle' : 'hay') } };
}
for my $k (0 .. 9) {
    my $r = $t->post_json('/idx', [ @idx[$k * 100 .. $k * 100 + 99] ]);
    die "POST idx: $r->{status}" unless $r->{status} == 201;
}
my $found = $t->get("/idx?metadata.actorId=needle&limit=10")->{json};
is(scalar @{ $found->{data} }, 3, 'by actorId: every match in one page');
ok(!$found->{has_more}, 'and nothing more');
is_deeply([ map { $_->{metadata}{other} } @{ $found->{data} } ],
    [ ('needle') x 3 ], 'the right ones');
my $desc = $t->get('/idx?metadata.actorId=needle&order=desc&limit=2')->{json};
is(scalar @{ $desc->{data} }, 2, 'descending, paged');
ok($desc->{has_more}, 'has_more');
my $rest = $t->get("/idx?metadata.actorId=needle&before=$desc->{next}")
    ->{json};
is(scalar @{ $rest->{data} }, 1, 'the next page: the last one');
my $scan = $t->get('/idx?metadata.other=needle&limit=10')->{json};
ok($scan->{has_more} && @{ $scan->{data} } < 3,
    'another key is scanned: a page stops at events_scan_limit');
is_deeply([ map { $_->{metadata}{actorId} }
    @{ $t->get('/idx?metadata.actorId=needle&metadata.other=needle')
        ->{json}{data} } ], [ ('needle') x 3 ],
    'the index, and another filter on what it finds');
is(scalar @{ $t->get('/idx?metadata.actorId=needle', headers =>
    { 'X-Tenant' => 'other' })->{json}{data} }, 0,
    'the index is per tenant');

###########################################################################
# Bad filters: 400, exact bodies

sub bad {
    my ($query, $param, $message, $name) = @_;
    my $r = $t->get("/events?$query");
    is($r->{status} . ' ' . $r->{body},
        '400 {"error":{"status":400,"code":"invalid_parameter",'
        . '"message":' . JSON::PP->new->allow_nonref->encode($message)
        . ',"param":' . JSON::PP->new->allow_nonref->encode($param) . '}}',
        $name);
}

bad('metadata.=x', 'metadata.',
    'a metadata filter is metadata.KEY=VALUE, KEY 1-64 characters of '
    . '[A-Za-z0-9_.:-]', 'no key');
bad('metadata.a%20b=x', 'metadata.a%20b',
    'a metadata filter is metadata.KEY=VALUE, KEY 1-64 characters of '
    . '[A-Za-z0-9_.:-]', 'a key with a space');
bad('metadata.' . ('k' x 65) . '=x', 'metadata.' . ('k' x 65),
    'a metadata filter is metadata.KEY=VALUE, KEY 1-64 characters of '
    . '[A-Za-z0-9_.:-]', 'a key too long');
bad('metadata.actorId=', 'metadata.actorId',
    '"metadata.actorId" must be 1-256 bytes of printable UTF-8',
    'an empty value');
bad('metadata.actorId', 'metadata.actorId',
    '"metadata.actorId" must be 1-256 bytes of printable UTF-8',
    'no value');
bad('metadata.actorId=' . ('v' x 257), 'metadata.actorId',
    '"metadata.actorId" must be 1-256 bytes of printable UTF-8',
    'a value too long');
bad('metadata.actorId=%FF', 'metadata.actorId',
    '"metadata.actorId" must be 1-256 bytes of printable UTF-8',
    'a value that is not UTF-8');
bad('metadata.actorId=a%0Ab', 'metadata.actorId',
    '"metadata.actorId" must be 1-256 bytes of printable UTF-8',
    'a control character');
bad('metadata.actorId=a&metadata.actorId=b', 'metadata.actorId',
    '"metadata.actorId" is given more than once', 'a key twice');
bad(join('&', map { "metadata.k$_=v" } 1 .. 9), 'metadata.k9',
    'at most 8 metadata filters', 'nine filters');
bad('metadata=x', 'metadata', 'unknown parameter "metadata"',
    'metadata without a key');

my $sb = $t->get('/events/stream?metadata.=x');
is($sb->{status} . ' ' . $sb->{body},
    '400 {"error":{"status":400,"code":"invalid_parameter",'
    . '"message":"a metadata filter is metadata.KEY=VALUE, KEY 1-64 '
    . 'characters of [A-Za-z0-9_.:-]","param":"metadata."}}',
    'a stream with a bad filter: 400 before it starts');

$backend->stop;
$t->done;
