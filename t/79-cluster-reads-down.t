#!/usr/bin/perl

# A cluster's node while Redis is away, for what only Redis has: a stream
# resumed from before the ring keeps its heartbeats and gets the events
# once Redis is back, in order, none twice; a webhook endpoint cannot be
# made through the API (503, nothing made) and can be once Redis is back.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use Time::HiRes qw(time sleep);
use EventsTest;
use EventsTest::Redis;
use EventsTest::Cluster qw(node tailed);
use EventsTest::SSE;

plan(skip_all => 'redis-server not installed (make deps)')
    unless EventsTest::Redis->available;

my $redis = EventsTest::Redis->new;
my $url = $redis->url;
my $N = 1500;

my $t = node($url, zone => '256k',
    cluster => 'prefix=t79 timeout=1s connect_timeout=300ms',
    http => "events_zone hooks 2m;
        events_cluster hooks $url prefix=t79h timeout=1s
            connect_timeout=300ms;",
    server => 'events_webhook_allow 127.0.0.1/32;', heartbeat => '200ms',
    locations => 'location /webhooks { events_webhooks hooks; }
        location = /_events_webhook {
            internal;
            proxy_pass $events_webhook_url;
        }');

for (my $n = 0; $n < $N; ) {
    my @b;
    push @b, { id => 'e-' . ++$n, type => 'a.b' } while @b < 50 && $n < $N;
    $t->post_json('/events', \@b);
}
my $st = tailed($t, $N);
cmp_ok($st->{events}{oldestSeq}, '>', 100, 'the ring lost the oldest');

my $at10 = $t->get('/events?limit=10')->{json}{next};
ok($at10, 'a cursor at seq 10');

# Redis away: the stream waits, with heartbeats

$redis->stop;
my $s = EventsTest::SSE->open($t, '/events/stream', last_event_id => $at10,
    timeout => 5);
is($s->status, 200, 'a stream resumed at 10 while Redis is away: 200');
my $raw = $s->body(timeout => 1.2);
like($raw, qr/: heartbeat/, 'heartbeats meanwhile');
unlike($raw, qr/^id: /m, 'no event yet');

my $r = $t->req(POST => '/webhooks', json => {
    url => 'http://127.0.0.1:9/h', events => ['a.*'] });
$t->is_error($r, 503, 'cluster_unavailable', undef,
    'POST /webhooks while Redis is away: 503');
is(scalar @{ $t->get('/webhooks')->{json}{data} // [] }, 0,
    'nothing was made');

# Redis back with its data: the stream goes on from 11, in order

$redis->start;
my @ev = $s->events_until(sub { ($_[0]{json}{seq} // 0) >= $N },
    timeout => 20);
is_deeply([ map { $_->{json}{seq} } grep { $_->{json}
    && defined $_->{json}{seq} } @ev ], [ 11 .. $N ],
    'then 11..' . $N . ': from Redis, then the ring, none twice');
is(scalar(grep { $_->{event} eq 'reset' } @ev), 0, 'no reset');
$s->close;

for (1 .. 50) {
    $r = $t->req(POST => '/webhooks', json => {
        url => 'http://127.0.0.1:9/h', events => ['a.*'] });
    last if $r->{status} == 201;
    sleep 0.1;
}
is($r->{status}, 201, 'Redis back: the endpoint is made')
    or diag($r->{body});
like($redis->cli('HKEYS', '{t79h}:wh:eps') // '', qr/\Q$r->{json}{id}\E/,
    'and published');

$t->expect_log(qr/cannot be reached|connect\(\) failed|was closed/);
$t->done;
