#!/usr/bin/perl

# /events/stream: framing and headers, filters and tenants, resume with
# Last-Event-ID and lastEventId, reset and ready, named events, heartbeat,
# subscriber accounting, refusals, and delivery across both workers.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use JSON::PP;
use MIME::Base64 qw(encode_base64url decode_base64url);
use Compress::Zlib qw(crc32);
use Time::HiRes qw(sleep time);
use EventsTest;
use EventsTest::SSE;

my $t = EventsTest->new;

$t->write_config(<<'EOF');
%%GLOBALS%%
http {
    %%HTTP_GLOBALS%%

    events_zone main 8m;
    events_zone tiny 256k;

    gzip on;
    gzip_types text/event-stream application/json;
    gzip_min_length 1;

    server {
        listen 127.0.0.1:%%PORT%% reuseport;

        events_tenant $http_x_tenant;
        events_heartbeat 1s;

        location = /events/stream {
            events_stream main;
        }

        location = /named/stream {
            events_stream main;
            events_stream_event_field on;
        }

        location = /capped/stream {
            events_stream main;
            events_stream_max_subscribers 2;
        }

        location /events {
            events_api main;
        }

        location = /events-status {
            events_status main;
        }

        location = /tiny/stream {
            events_stream tiny;
        }

        location /tiny {
            events_api tiny;
        }
    }
}
EOF

$t->run;

my %acme = ('X-Tenant' => 'acme');

sub post {
    my ($ev, %h) = @_;
    my $r = $t->post_json('/events', $ev, headers => { %h });
    die "POST: $r->{status} $r->{body}" unless $r->{status} == 201;
    return $r->{json};
}

sub stream {
    my ($path, %o) = @_;
    my $s = EventsTest::SSE->open($t, $path,
        headers => { 'Accept-Encoding' => 'gzip', %{ $o{headers} // {} } },
        %o{ grep { exists $o{$_} } qw(last_event_id) });
    die "stream $path: " . ($s->error // $s->status)
        unless ($s->status // 0) == 200;
    return $s;
}

sub subscribers {
    my $st = $t->get('/events-status')->{json};
    return $st->{streams}{subscribers};
}

sub wait_subscribers {
    my ($n) = @_;
    my $deadline = time + 5;
    sleep 0.05 while subscribers() != $n && time < $deadline;
    return subscribers();
}

###########################################################################
# Headers and framing

my $s = stream('/events/stream');
like($s->headers->{'content-type'}, qr{^text/event-stream; charset=utf-8$},
    'content type');
is($s->headers->{'cache-control'}, 'no-cache, no-transform', 'no caching');
is($s->headers->{'x-accel-buffering'}, 'no', 'no proxy buffering');
ok(!exists $s->headers->{'content-encoding'},
    'never compressed, even with gzip_types text/event-stream');
is($s->headers->{'transfer-encoding'}, 'chunked', 'chunked');
is(wait_subscribers(1), 1, 'one subscriber');

my $ev = post({ type => 'ticket.created', resourceId => 't-1' });
my $e = $s->next_event(timeout => 3);
ok($e, 'an event arrives');
is($s->retry, 3000, 'retry: sent first');
is($e->{event}, 'message', 'domain events are unnamed');
is($e->{data}, $t->get("/events/$ev->{id}")->{body},
    'data is the stored envelope on one line');
my $cursor = $e->{id};
like($cursor, qr/^[A-Za-z0-9_-]{36}$/, 'id is a cursor');
is_deeply([ map { $_->{seq} } @{ $t->get("/events?after=$cursor")
    ->{json}{data} } ], [], 'the id works as an "after" cursor');

# heartbeat on an idle stream
my $t0 = time;
ok(!$s->next_event(timeout => 2.5), 'no event while idle');
ok(grep({ /^ ?heartbeat/ } $s->comments), 'a heartbeat comment came')
    or diag(explain([ $s->comments ]));

$s->close;
is(wait_subscribers(0), 0, 'a closed stream is let go');

###########################################################################
# Filters and tenants

my $f1 = stream('/events/stream?types=ticket.*,session.started',
    headers => \%acme);
my $f2 = stream('/events/stream?resourceType=ticket&resourceId=t-2',
    headers => \%acme);
my $f3 = stream('/events/stream?action=updated', headers => \%acme);
my $beta = stream('/events/stream', headers => { 'X-Tenant' => 'beta' });
wait_subscribers(4);

my @posted = (
    post({ type => 'ticket.created', resourceId => 't-1' }, %acme),
    post({ type => 'ticket.updated', resourceId => 't-2' }, %acme),
    post({ type => 'session.started' }, %acme),
    post({ type => 'session.ended' }, %acme),
    post({ type => 'ticket.comment.added', resourceId => 't-2' }, %acme),
);
my $b1 = post({ type => 'ticket.created' }, 'X-Tenant' => 'beta');

sub got {
    my ($s, $n) = @_;
    my @e;
    while (my $e = $s->next_event(timeout => $n ? 3 : 0.5)) {
        push @e, $e->{json}{seq};
        last if $n && @e == $n;
    }
    return \@e;
}

is_deeply(got($f1, 4), [ map { $_->{seq} } @posted[0, 1, 2, 4] ],
    'types with wildcards');
is_deeply(got($f2, 2), [ map { $_->{seq} } @posted[1, 4] ], 'an entity');
is_deeply(got($f3, 1), [ $posted[1]{seq} ], 'an action');
is_deeply(got($beta, 1), [ $b1->{seq} ], 'another tenant sees its own');
is_deeply(got($f1), [], 'nothing more for the first');
is_deeply(got($beta), [], 'nothing of acme for beta');
$_->close for $f1, $f2, $f3, $beta;

###########################################################################
# Resume: Last-Event-ID, lastEventId, earliest, ready

wait_subscribers(0);
# the cursor of event 3: read it from a list
my $list = $t->get('/events?limit=3', headers => \%acme)->{json};
my $c3 = $list->{next};

$s = stream('/events/stream', headers => { %acme, 'Last-Event-ID' => $c3 });
my @r = @{ got($s, 2) };
is_deeply(\@r, [ map { $_->{seq} } @posted[3, 4] ],
    'Last-Event-ID replays what came after');
$e = $s->next_event(timeout => 2);
is($e->{event}, 'ready', 'then ready');
is($e->{json}{replayed}, 2, 'ready says how many');
my $new = post({ type => 'ticket.closed' }, %acme);
is_deeply(got($s, 1), [ $new->{seq} ], 'then live');
$s->close;

$s = stream("/events/stream?lastEventId=$c3", headers => \%acme);
is_deeply(got($s, 3), [ map { $_->{seq} } @posted[3, 4], $new ],
    'lastEventId in the query, for the first connection');
$s->close;

my $cnew = $t->get("/events?after=$c3&limit=3", headers => \%acme)
    ->{json}{next};
$s = stream("/events/stream?lastEventId=$c3",
    headers => { %acme, 'Last-Event-ID' => $cnew });
$e = $s->next_event(timeout => 2);
is($e->{event}, 'ready', 'the header wins over the query');
is($e->{json}{replayed}, 0, 'nothing to replay after the newest');
$s->close;

$s = stream('/events/stream?lastEventId=earliest', headers => \%acme);
my @all = @{ got($s, 6) };
is_deeply(\@all, [ map { $_->{seq} } @posted, $new ],
    'earliest replays everything retained');
is($s->next_event(timeout => 2)->{event}, 'ready', 'and says ready');
$s->close;

###########################################################################
# Reset: never a 4xx for a cursor

my $raw = decode_base64url($c3);
sub cursor {
    my ($e, $block) = @_;
    my $b = $e . $block;
    return encode_base64url($b . substr(pack('N', crc32($b)), 1, 3));
}

my $head = $t->get('/events', headers => \%acme)->{json}{head};

for my $case ([ 'garbage', 'invalid_cursor' ],
    [ cursor("\x02" x 8, "\0" x 16), 'epoch_changed' ],
    [ cursor(substr($raw, 0, 8), "\0" x 16), 'invalid_cursor' ])
{
    my ($c, $reason) = @$case;
    $s = stream('/events/stream', headers => { %acme, 'Last-Event-ID' => $c });
    is($s->status, 200, "$reason: still 200");
    $e = $s->next_event(timeout => 2);
    is($e->{event}, 'reset', "$reason: reset");
    is($e->{json}{reason}, $reason, "$reason: the reason");
    is($e->{id}, $head, "$reason: id is the head");
    is($e->{json}{head}, $head, "$reason: data says head");
    ok($e->{json}{oldest}, "$reason: and oldest");
    my $n = post({ type => 'after.reset' }, %acme);
    is_deeply(got($s, 1), [ $n->{seq} ], "$reason: then live");
    $head = $t->get('/events', headers => \%acme)->{json}{head};
    $s->close;
}

# a cursor whose events were evicted
my $tiny0 = $t->post_json('/tiny', { type => 'first.one' })->{json};
my $tc = $t->get('/tiny')->{json}{oldest};
for (1 .. 8) {
    $t->post_json('/tiny', [ map { { type => 'fill.up',
        payload => { data => 'x' x 400 } } } 1 .. 100 ]);
}
$s = stream('/tiny/stream', headers => { 'Last-Event-ID' => $tc });
$e = $s->next_event(timeout => 2);
is($e->{json}{reason}, 'cursor_expired', 'an evicted cursor: reset');
is($e->{id}, $t->get('/tiny')->{json}{head}, 'from the head');
$s->close;

###########################################################################
# Named events

$s = stream('/named/stream', headers => \%acme);
my $s2 = stream('/events/stream?named=1', headers => \%acme);
wait_subscribers(2);
my $n = post({ type => 'task.post_update' }, %acme);
is($s->next_event(timeout => 2)->{event}, 'task.post_update',
    'events_stream_event_field puts the type in event:');
is($s2->next_event(timeout => 2)->{event}, 'task.post_update', 'named=1');
$s->close;
$s2->close;

###########################################################################
# Refusals, before it is a stream

my $r = $t->req('POST', '/events/stream', body => '{}',
    headers => { 'Content-Type' => 'application/json' });
$t->is_error($r, 405, 'method_not_allowed', undef, 'POST');
is($r->{headers}{allow}, 'GET', 'Allow');
$r = $t->req('HEAD', '/events/stream');
is($r->{status}, 405, 'HEAD is 405');
$t->is_error($t->get('/events/stream?limit=5'), 400, 'invalid_parameter',
    'limit', 'list-only parameters are unknown here');
$t->is_error($t->get('/events/stream?types=Bad'), 400, 'invalid_parameter',
    'types', 'a bad pattern');
$t->is_error($t->get('/events/stream?named=yes'), 400, 'invalid_parameter',
    'named', 'a bad named');
$t->is_error($t->get('/events/stream', headers => { 'X-Tenant' => 'a b' }),
    400, 'invalid_tenant', undef, 'a bad tenant');

wait_subscribers(0);
my @capped = map { stream('/capped/stream') } 1 .. 2;
# the cap is per worker: fill both workers' share
my (@more, $refused);
for (1 .. 8) {
    my $x = EventsTest::SSE->open($t, '/capped/stream');
    $x->body(timeout => 0.3);
    if ($x->is_closed) {
        $refused = $x;
        last;
    }
    push @more, $x;
}
# a 503 would make an EventSource give up: t/32 has the details
ok($refused, 'past events_stream_max_subscribers: refused');
is($refused && $refused->status, 200, 'as a 200 event stream');
like($refused ? $refused->body : '', qr/"reason":"overloaded"/,
    'that says why and ends');
$_->close for @capped, @more;

###########################################################################
# Both workers: subscribers on each, every event to each exactly once

wait_subscribers(0);
my @subs = map { stream('/events/stream?types=fan.*') } 1 .. 12;
wait_subscribers(12);
my $st = $t->get('/events-status')->{json};
my @holding = grep { $_->{subscribers} > 0 } @{ $st->{workers} };
is(scalar @holding, 2, 'both workers hold subscribers')
    or diag(explain($st->{workers}));

my @fan;
for my $i (1 .. 20) {
    push @fan, post({ type => 'fan.out', payload => { data => $i } })->{seq};
}

my $all_ok = 1;
for my $i (0 .. $#subs) {
    my $got = got($subs[$i], 20);
    $all_ok &&= is_deeply($got, \@fan, "subscriber $i: all 20, in order");
}
my $extra = 0;
$extra += @{ got($_) } for @subs;
is($extra, 0, 'and nothing twice');
$_->close for @subs;

# replay while events are being written: no gap, no duplicate
my $from = $t->get('/events?order=desc&limit=1')->{json}{head};
my @w = $t->parallel(n => 2, code => sub {
    my ($i) = @_;
    my @s;
    if ($i == 0) {
        for my $k (1 .. 150) {
            push @s, $t->post_json('/events', { type => 'race.w' })
                ->{json}{seq};
        }
        return \@s;
    }
    sleep 0.05;
    my $x = EventsTest::SSE->open($t, '/events/stream?types=race.*',
        headers => { 'Last-Event-ID' => $from });
    while (my $e = $x->next_event(timeout => 3)) {
        next if $e->{event} ne 'message';
        push @s, $e->{json}{seq};
        last if @s == 150;
    }
    return \@s;
});
is_deeply($w[1], $w[0], 'replay then live while writing: exact');

$st = $t->get('/events-status')->{json}{streams};
cmp_ok($st->{streamed}, '>', 240, 'events streamed are counted');

$t->done;
