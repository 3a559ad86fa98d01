#!/usr/bin/perl

# A small zone filled past capacity keeps the newest events, counts what
# it evicted, and answers old cursors with 410; an event larger than the
# zone is refused; events_retention drops old events by age.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use Time::HiRes qw(sleep);
use EventsTest;

my $t = EventsTest->new;

$t->write_config(<<'EOF');
%%GLOBALS%%
http {
    %%HTTP_GLOBALS%%

    events_zone small 256k;
    events_zone aging 256k retention=1s;

    server {
        listen 127.0.0.1:%%PORT%%;

        events_max_event_size 1m;
        client_max_body_size 2m;
        events_max_body_size 2m;

        location /events {
            events_api small;
        }

        location = /events-status {
            events_status small;
        }

        location /aging {
            events_api aging;
        }

        location = /aging-status {
            events_status aging;
        }
    }
}
EOF

$t->run;

my $first = $t->post_json('/events', { type => 'fill.first',
    resourceId => 'e-1' })->{json};
my $start = $t->get('/events')->{json}{oldest};

my $n = 1;
for my $batch (1 .. 10) {
    my $r = $t->post_json('/events', [ map { { type => 'fill.batch',
        resourceId => 'e-' . ($_ % 3),
        payload => { data => { pad => 'x' x 300, n => $_ } } } }
        1 .. 100 ]);
    die "batch: $r->{status} $r->{body}" unless $r->{status} == 201;
    $n += 100;
}

my $st = $t->get('/events-status')->{json}{events};
cmp_ok($st->{evicted}, '>', 0, 'events were evicted');
is($st->{stored}, $n, 'every write was stored');
is($st->{retained} + $st->{evicted}, $n, 'retained + evicted = stored');
is($st->{newestSeq}, $n, 'the newest is kept');
is($st->{oldestSeq}, $st->{evicted} + 1, 'the oldest follows the evicted');

my $r = $t->get('/events?limit=1000');
my @seqs = map { $_->{seq} } @{ $r->{json}{data} };
is_deeply(\@seqs, [ $st->{oldestSeq} .. $n ], 'the window is contiguous');
is($t->get("/events/$first->{id}")->{status}, 404, 'the first is gone');

$r = $t->get("/events?after=$start");
$t->is_error($r, 410, 'cursor_expired', 'after', 'an old cursor: 410');
is($r->{json}{error}{oldest}, $t->get('/events')->{json}{oldest},
    '410 names oldest');
is_deeply([ map { $_->{seq} } @{ $t->get(
    "/events?after=$r->{json}{error}{oldest}&limit=1000")->{json}{data} } ],
    \@seqs, 'reading from oldest gets the window');

my $cat = $t->get('/events/types')->{json}{data};
my $sum = 0;
$sum += $_->{count} for @$cat;
is($sum, $st->{retained}, 'the catalog counts what is retained');
ok(!grep({ $_->{type} eq 'fill.first' } @$cat), 'an evicted type leaves');

my $hist = $t->get('/events/fill/e-1?limit=1000')->{json}{data};
ok(!grep({ $_->{seq} < $st->{oldestSeq} } @$hist),
    'history holds no evicted event');
is(scalar(@$hist), scalar(grep { ($_->{resourceId} // '') eq 'e-1' }
    @{ $t->get('/events?limit=1000')->{json}{data} }),
    'history has every retained event of the entity');

# larger than the zone can hold: refused, stored nowhere
my $before = $t->get('/events-status')->{json}{events}{newestSeq};
$r = $t->post_json('/events', { type => 'too.big',
    payload => { data => 'x' x 200000 } });
$t->is_error($r, 413, 'payload_too_large', undef, 'larger than the zone');
is($t->get('/events-status')->{json}{events}{newestSeq}, $before,
    'nothing stored');

# retention by age
$t->post_json('/aging', { type => 'old.one' }) for 1 .. 3;
is(scalar @{ $t->get('/aging')->{json}{data} }, 3, 'kept while young');
sleep 1.3;
my $young = $t->post_json('/aging', { type => 'new.one' })->{json};
is_deeply([ map { $_->{seq} } @{ $t->get('/aging')->{json}{data} } ],
    [ $young->{seq} ], 'old events expired');
my $ast = $t->get('/aging-status')->{json}{events};
is($ast->{expired}, 3, 'expired are counted');
sleep 1.3;
is(scalar @{ $t->get('/aging')->{json}{data} }, 0,
    'expiry happens on reads too');

$t->done;
