#!/usr/bin/perl

# GET /events: filters, wildcard types, cursor paging both ways, Link and
# Events-Head, one event, entity history, the type catalog, tenants, and
# every bad parameter with its exact error.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use JSON::PP;
use MIME::Base64 qw(encode_base64url decode_base64url);
use Compress::Zlib qw(crc32);
use Time::HiRes qw(sleep);
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

        location /events {
            events_api main;
        }

        location /scan {
            events_api main;
            events_scan_limit 5;
        }
    }
}
EOF

$t->run;

my %acme = (headers => { 'X-Tenant' => 'acme' });
my %beta = (headers => { 'X-Tenant' => 'beta' });

sub post {
    my ($ev, %o) = @_;
    my $r = $t->post_json('/events', $ev, %o);
    die "POST failed: $r->{status} $r->{body}" unless $r->{status} == 201;
    return $r->{json};
}

sub seqs { [ map { $_->{seq} } @{ $_[0]{json}{data} } ] }

# a little history for two tenants
my @acme;
push @acme, post({ type => 'ticket.created', resourceId => 't-1' }, %acme);
push @acme, post({ type => 'ticket.updated', resourceId => 't-1',
    source => 'crm' }, %acme);
push @acme, post({ type => 'ticket.comment.added', resourceId => 't-2' },
    %acme);
my $beta1 = post({ type => 'ticket.created', resourceId => 't-1' }, %beta);
push @acme, post({ type => 'session.started', resourceType => 'session',
    resourceId => 's-1' }, %acme);
sleep 0.01;    # a later millisecond, for the since/until cases
push @acme, post({ type => 'session.member.joined', resourceId => 's-1' },
    %acme);
push @acme, post({ type => 'ticket.closed', resourceId => 't-1' }, %acme);
push @acme, post({ type => 'ticket.review.closed', resourceId => 't-1' },
    %acme);
my @aseq = map { $_->{seq} } @acme;

###########################################################################
# The list

my $r = $t->get('/events', %acme);
is($r->{status}, 200, 'list');
is_deeply(seqs($r), \@aseq, 'all of acme, oldest first, none of beta');
is($r->{json}{has_more}, JSON::PP::false, 'no more');
my $head = $r->{json}{head};
is($r->{headers}{'events-head'}, $head, 'Events-Head header is head');
ok(!exists $r->{headers}{link}, 'no Link without more');
ok(defined $r->{json}{next}, 'next, to poll from');
ok(defined $r->{json}{oldest}, 'oldest');

is_deeply(seqs($t->get('/events', %beta)), [ $beta1->{seq} ], 'beta sees its own');
$r = $t->get('/events');
is_deeply(seqs($r), [], 'the default tenant sees none');

# a tenant without events learns nothing of the others': no head
is($r->{json}{head}, undef, 'no head for a tenant without events');
ok(exists $r->{json}{head}, 'head is there, as null');
ok(!exists $r->{headers}{'events-head'}, 'and no Events-Head');
ok(defined $r->{json}{oldest}, 'oldest, to start from');
is($t->get('/events', headers => { 'X-Tenant' => 'nobody-here' })
    ->{json}{head}, undef, 'nor for a tenant never seen');

my %cases = (
    'types=ticket.created'            => [ 0 ],
    'types=ticket.*'                  => [ 0, 1, 2, 5, 6 ],
    'types=ticket.**'                 => [ 0, 1, 2, 5, 6 ],
    'types=ticket.*.closed'           => [ 6 ],
    'types=*'                         => [ 0 .. 6 ],
    'types=session.*,ticket.closed'   => [ 3, 4, 5 ],
    'types=ticket'                    => [],
    'resourceType=session'            => [ 3, 4 ],
    'resourceType=ticket&resourceId=t-1' => [ 0, 1, 5, 6 ],
    'action=updated'                  => [ 1 ],
    'action=created'                  => [ 0 ],
    'action=occurred&types=ticket.*'  => [ 2, 5, 6 ],
    'source=crm'                      => [ 1 ],
    'order=desc'                      => [ reverse 0 .. 6 ],
    'order=desc&limit=2'              => [ 6, 5 ],
    'limit=3'                         => [ 0, 1, 2 ],
    'since=2000-01-01'                => [ 0 .. 6 ],
    'until=2000-01-01T00:00:00Z'      => [],
    'since=2999-01-01T00:00:00%2B02:00' => [],
);

for my $q (sort keys %cases) {
    is_deeply(seqs($t->get("/events?$q", %acme)),
        [ @aseq[ @{ $cases{$q} } ] ], $q);
}

# since/until with the real timestamps
my $ts = $acme[3]{timestamp};
is_deeply(seqs($t->get("/events?since=$ts&types=session.*", %acme)),
    [ @aseq[3, 4] ], 'since a timestamp is inclusive');
is_deeply(seqs($t->get("/events?until=$ts&types=session.*", %acme)),
    [ $aseq[3] ], 'until a timestamp is inclusive');

###########################################################################
# Paging: ascending and descending, every event once

for my $order ('asc', 'desc') {
    my (@got, $url, $pages);
    $url = "/events?limit=2&order=$order";
    while ($url && $pages++ < 10) {
        $r = $t->get($url, %acme);
        push @got, @{ seqs($r) };
        last unless $r->{json}{has_more};
        my ($link) = ($r->{headers}{link} // '') =~ /^<([^>]+)>; rel="next"$/;
        ok($link, "Link on a $order page") or last;
        my $c = $order eq 'asc' ? 'after' : 'before';
        like($link, qr/[?&]\Q$c=$r->{json}{next}\E$/, "Link carries next");
        like($link, qr/limit=2/, 'Link keeps the filters');
        $url = $link;
    }
    is_deeply(\@got, $order eq 'asc' ? \@aseq : [ reverse @aseq ],
        "$order paging sees every event once");
}

# polling from next sees only what is new
$r = $t->get('/events?types=ticket.*', %acme);
my $next = $r->{json}{next};
is_deeply(seqs($t->get("/events?after=$next", %acme)), [],
    'nothing after next yet');
my $new = post({ type => 'ticket.reopened', resourceId => 't-1' }, %acme);
is_deeply(seqs($t->get("/events?after=$next", %acme)), [ $new->{seq} ],
    'the new event after next');
is_deeply(seqs($t->get("/events?after=$head", %acme)), [ $new->{seq} ],
    'and after the old head');
push @acme, $new;
push @aseq, $new->{seq};

# a scan budget: fewer matches than the limit, but a cursor that goes on
my @found;
my $url = '/scan?types=session.member.joined&limit=1';
for (1 .. 5) {
    $r = $t->get($url, %acme);
    push @found, @{ seqs($r) };
    last unless $r->{json}{has_more};
    $url = "/scan?types=session.member.joined&limit=1&after=$r->{json}{next}";
}
is_deeply(\@found, [ $aseq[4] ], 'a bounded scan goes on from its cursor');

###########################################################################
# One event, entity history, catalog

$r = $t->get("/events/$acme[0]{id}", %acme);
is($r->{status}, 200, 'one event');
is($r->{json}{seq}, $aseq[0], 'the right one');
$t->is_error($t->get("/events/$acme[0]{id}", %beta), 404, 'not_found', undef,
    'another tenant\'s event is not found');
$t->is_error($t->get('/events/evt_nope', %acme), 404, 'not_found', undef,
    'unknown id');
$t->is_error($t->get('/events/bad%20id', %acme), 404, 'not_found', undef,
    'an id that cannot be');
$t->is_error($t->get('/events/stream', %acme), 404, 'not_found', undef,
    'stream is reserved');
$t->is_error($t->get('/events/a/b/c', %acme), 404, 'not_found', undef,
    'too deep');
$t->is_error($t->get('/eventsfoo', %acme), 404, 'not_found', undef,
    'not under the prefix');

$r = $t->get('/events/ticket/t-1', %acme);
is($r->{status}, 200, 'entity history');
is_deeply(seqs($r), [ @aseq[0, 1, 5, 6, 7] ], 'oldest first, only t-1');
is_deeply(seqs($t->get('/events/ticket/t-1', %beta)), [ $beta1->{seq} ],
    'beta\'s t-1 is another entity');
is_deeply(seqs($t->get('/events/ticket/t-9', %acme)), [], 'unknown entity');
is_deeply(seqs($t->get('/events/ticket/t-1?order=desc&limit=2', %acme)),
    [ @aseq[7, 6] ], 'history descending');
is_deeply(seqs($t->get('/events/ticket/t-1?types=ticket.*.closed', %acme)),
    [ $aseq[6] ], 'history with a type filter');

my @hist;
$url = '/events/ticket/t-1?limit=2';
for (1 .. 5) {
    $r = $t->get($url, %acme);
    push @hist, @{ seqs($r) };
    last unless $r->{json}{has_more};
    $url = "/events/ticket/t-1?limit=2&after=$r->{json}{next}";
}
is_deeply(\@hist, [ @aseq[0, 1, 5, 6, 7] ], 'history paging');
@hist = ();
$url = '/events/ticket/t-1?limit=2&order=desc';
for (1 .. 5) {
    $r = $t->get($url, %acme);
    push @hist, @{ seqs($r) };
    last unless $r->{json}{has_more};
    $url = "/events/ticket/t-1?limit=2&before=$r->{json}{next}";
}
is_deeply(\@hist, [ @aseq[7, 6, 5, 1, 0] ], 'history paging, descending');
is_deeply(seqs($t->get('/events?resourceType=ticket&resourceId=t-1', %acme)),
    [ @aseq[0, 1, 5, 6, 7] ], 'the same through the list filters');
$t->is_error($t->get('/events/ticket/t-1?resourceType=session', %acme), 400,
    'invalid_parameter', 'resourceType', 'the path names the entity');

$r = $t->get('/events/types', %acme);
is($r->{status}, 200, 'catalog');
my %cat = map { $_->{type} => $_ } @{ $r->{json}{data} };
is_deeply([ sort keys %cat ], [ sort qw(ticket.created ticket.updated
    ticket.comment.added session.started session.member.joined
    ticket.closed ticket.review.closed ticket.reopened) ], 'acme\'s types');
is($cat{'ticket.created'}{count}, 1, 'count');
is($cat{'ticket.reopened'}{lastTimestamp}, $new->{timestamp},
    'last timestamp');
is_deeply([ map { $_->{type} } @{ $t->get('/events/types', %beta)
    ->{json}{data} } ], [ 'ticket.created' ], 'beta\'s catalog');
$t->is_error($t->get('/events/types?x=1'), 400, 'invalid_parameter', undef,
    'the catalog takes no parameters');

###########################################################################
# Bad parameters

my %bad = (
    'limit=0'            => [ 400, 'invalid_parameter', 'limit' ],
    'limit=1001'         => [ 400, 'invalid_parameter', 'limit' ],
    'limit=abc'          => [ 400, 'invalid_parameter', 'limit' ],
    'limit='             => [ 400, 'invalid_parameter', 'limit' ],
    'limit=1&limit=2'    => [ 400, 'invalid_parameter', 'limit' ],
    'order=up'           => [ 400, 'invalid_parameter', 'order' ],
    'foo=1'              => [ 400, 'invalid_parameter', 'foo' ],
    'types=Ticket'       => [ 400, 'invalid_parameter', 'types' ],
    'types=a..b'         => [ 400, 'invalid_parameter', 'types' ],
    'types=**.a'         => [ 400, 'invalid_parameter', 'types' ],
    'types='             => [ 400, 'invalid_parameter', 'types' ],
    'action=archived'    => [ 400, 'invalid_parameter', 'action' ],
    'since=yesterday'    => [ 400, 'invalid_parameter', 'since' ],
    'until=2026-13-01'   => [ 400, 'invalid_parameter', 'until' ],
    'since=2026-02-29'   => [ 400, 'invalid_parameter', 'since' ],
    'since=2026-02-31T00:00:00Z' => [ 400, 'invalid_parameter', 'since' ],
    'until=2026-04-31'   => [ 400, 'invalid_parameter', 'until' ],
    'resourceId=t-1'     => [ 400, 'invalid_parameter', 'resourceId' ],
    'resourceType=a%2Fb' => [ 400, 'invalid_parameter', 'resourceType' ],
    'after=garbage'      => [ 400, 'invalid_cursor', 'after' ],
    'before=garbage'     => [ 400, 'invalid_cursor', 'before' ],
    "after=$head&before=$head" => [ 400, 'invalid_parameter', 'before' ],
    "after=$head&order=desc"   => [ 400, 'invalid_parameter', 'after' ],
    "before=$head&order=asc"   => [ 400, 'invalid_parameter', 'before' ],
);

for my $q (sort keys %bad) {
    $t->is_error($t->get("/events?$q", %acme), @{ $bad{$q} }, "bad: $q");
}

is($t->get('/events?limit=0', %acme)->{json}{error}{message},
    'limit must be between 1 and 1000', 'the message of the contract');

# cursors: epoch, the seq encrypted with the zone's secret, a check
my $raw = decode_base64url($head);
my $epoch = substr($raw, 0, 8);
sub cursor {
    my ($e, $block) = @_;
    my $b = $e . $block;
    return encode_base64url($b . substr(pack('N', crc32($b)), 1, 3));
}
is(length $head, 36, 'a cursor is 36 characters');
is(cursor($epoch, substr($raw, 8, 16)), $head,
    'the test knows the cursor format');
ok(!grep({ index(substr($raw, 8), pack('Q>', $_)) >= 0
    || index(substr($raw, 8), pack('Q<', $_)) >= 0 } 1 .. 100),
    'the seq is not in the clear');
my $other = decode_base64url($t->get("/events?after=$head&limit=1", %acme)
    ->{json}{oldest});
is(substr($other, 0, 8), $epoch, 'cursors of one epoch share it');

my $flipped = $head;
substr($flipped, 3, 1) = substr($flipped, 3, 1) eq 'A' ? 'B' : 'A';
$t->is_error($t->get("/events?after=$flipped", %acme), 400,
    'invalid_cursor', 'after', 'a mangled cursor');
my $forged = substr($raw, 8, 16);
substr($forged, 15, 1) = chr(ord(substr($forged, 15, 1)) ^ 1);
$t->is_error($t->get('/events?after=' . cursor($epoch, $forged), %acme),
    400, 'invalid_cursor', 'after', 'a forged cursor with a valid check');
$t->is_error($t->get('/events?after=' . cursor($epoch, "\0" x 16), %acme),
    400, 'invalid_cursor', 'after', 'a made-up cursor of this epoch');
$t->is_error($t->get("/events?after=$head=", %acme), 400,
    'invalid_cursor', 'after', 'a padded cursor');

$r = $t->get('/events?after=' . cursor("\x01" x 8, "\0" x 16), %acme);
$t->is_error($r, 410, 'epoch_changed', 'after', 'another incarnation: 410');
is($r->{json}{error}{head}, $t->get('/events', %acme)->{json}{head},
    '410 says head');
ok($r->{json}{error}{oldest}, '410 says oldest');
is_deeply(seqs($t->get("/events?after=$r->{json}{error}{oldest}", %acme)),
    \@aseq, 'reading from oldest gets everything');

$t->done;
