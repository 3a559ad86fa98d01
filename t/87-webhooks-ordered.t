#!/usr/bin/perl

# Ordered endpoints ("ordered": true): one delivery in flight, in seq
# order; a failing event holds the ones after it until it succeeds or
# ends.  Per-endpoint "maxInFlight" within events_webhook_concurrency.
# Counted at a real receiver (EventsTest::Receiver: a process per
# connection, scripted failures and delays).

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use JSON::PP;
use Time::HiRes qw(time sleep);
use EventsTest;
use EventsTest::Receiver;

my $t = EventsTest->new;
$t->write_config(<<'EOF');
%%GLOBALS%%
http {
    %%HTTP_GLOBALS%%

    events_zone main 4m;

    server {
        listen 127.0.0.1:%%PORT%%;

        events_webhook_allow 127.0.0.1/32;
        events_webhook_retry 100ms 100ms;
        events_webhook_overload_delay 100ms;
        events_webhook_concurrency 6;
        events_webhook_endpoint_concurrency 4;

        location /events { events_api main; }
        location /webhooks { events_webhooks main; }

        location = /_events_webhook {
            internal;
            proxy_pass $events_webhook_url;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $events_webhook_host;
        }
    }
}
EOF
$t->run;

my $rcv = EventsTest::Receiver->new(dir => $t->testdir, name => 'ord');

sub create {
    my (%o) = @_;
    my $r = $t->post_json('/webhooks', { %o });
    die "create: $r->{body}" unless $r->{status} == 201;
    return $r->{json};
}

sub publish {
    my ($type, $n) = @_;
    my $r = $t->post_json('/events', [ map { { type => "$type.x" } } 1 .. $n ]);
    die "publish: $r->{body}" unless $r->{status} == 201;
    return [ map { $_->{id} } @{ $r->{json}{data} } ];
}

sub ids { [ map { $_->{headers}{'webhook-id'} } @_ ] }

# most requests in flight at once, from accept to answer
sub overlap {
    my ($delay, @reqs) = @_;
    my @ev = sort { $a->[0] <=> $b->[0] || $a->[1] <=> $b->[1] }
        map { ([$_->{time}, 1], [$_->{received} + $delay, -1]) } @reqs;
    my ($n, $max) = (0, 0);
    for (@ev) { $n += $_->[1]; $max = $n if $n > $max }
    return $max;
}

# bad input: exact errors, nothing created
for my $c ([{ ordered => 'yes' }, 'ordered'], [{ maxInFlight => 0 }, 'maxInFlight'],
    [{ maxInFlight => 1001 }, 'maxInFlight'], [{ maxInFlight => '2' }, 'maxInFlight'],
    [{ maxInFlight => 1.5 }, 'maxInFlight'])
{
    my $r = $t->post_json('/webhooks', { url => $rcv->url('/x'),
        events => ['x.*'], %{ $c->[0] } });
    $t->is_error($r, 400, 'invalid_field', $c->[1],
        'refused: ' . JSON::PP->new->canonical->encode($c->[0]));
}
is(scalar @{ $t->get('/webhooks')->{json}{data} }, 0, 'nothing created');

# 1. ordered, the first event fails twice then succeeds
$rcv->script('/a', [ { status => 500 }, { status => 500 }, { status => 200 } ]);
my $a = create(url => $rcv->url('/a'), events => ['a.*'], ordered => JSON::PP::true);
is($a->{ordered}, JSON::PP::true, 'ordered shown');
my $ea = publish('a', 5);
my @ra = $rcv->wait_requests('/a', 7, 15);
is_deeply(ids(@ra), [ @$ea[0, 0, 0], @$ea[1 .. 4] ],
    'ordered: the failing event is retried before any later one');
is(overlap(0, @ra), 1, 'ordered: never two in flight');

# 2. ordered, the first event ends failed: the next ones go after it
$rcv->script('/b', [ { status => 500 }, { status => 500 }, { status => 500 },
    { status => 200 } ]);
my $b = create(url => $rcv->url('/b'), events => ['b.*'], ordered => JSON::PP::true);
my $eb = publish('b', 4);
my @rb = $rcv->wait_requests('/b', 6, 15);
is_deeply(ids(@rb), [ @$eb[0, 0, 0], @$eb[1 .. 3] ],
    'ordered: an event that ends failed releases the next');
my $d = $t->get("/webhooks/$b->{id}/deliveries?eventId=$eb->[0]")->{json}{data};
is($d->[0]{result}, 'failed', 'the first ended failed');

# 3. the same script, not ordered: later events overtake the failing one
$rcv->script('/c', [ { status => 500 }, { status => 500 }, { status => 200 } ]);
create(url => $rcv->url('/c'), events => ['c.*']);
my $ec = publish('c', 5);
my @rc = $rcv->wait_requests('/c', 7, 15);
my $last_first = (grep { $rc[$_]{headers}{'webhook-id'} eq $ec->[0] } 0 .. $#rc)[-1];
ok(defined $last_first && $last_first > 1,
    'not ordered: later events are delivered before the first succeeds');

# 4. ordered under a slow receiver: still one at a time, in order
$rcv->script('/s', { status => 200, delay => 0.2 });
create(url => $rcv->url('/s'), events => ['s.*'], ordered => JSON::PP::true,
    maxInFlight => 4);
my $es = publish('s', 5);
my @rs = $rcv->wait_requests('/s', 5, 15);
is_deeply(ids(@rs), $es, 'ordered with maxInFlight 4: in order');
is(overlap(0.2, @rs), 1, 'ordered wins over maxInFlight: one in flight');

# 5. maxInFlight 2 below the location's 4
$rcv->script('/m', { status => 200, delay => 0.5 });
my $m = create(url => $rcv->url('/m'), events => ['m.*'], maxInFlight => 2);
is($m->{maxInFlight}, 2, 'maxInFlight shown');
publish('m', 6);
my @rm = $rcv->wait_requests('/m', 6, 15);
is(scalar @rm, 6, 'maxInFlight 2: all delivered');
is(overlap(0.5, @rm), 2, 'maxInFlight 2: two in flight at most, and two');

# 6. maxInFlight 8 above the location's 4, within the global cap of 6
$rcv->script('/g', { status => 200, delay => 0.5 });
my $g = create(url => $rcv->url('/g'), events => ['g.*'], maxInFlight => 8);
publish('g', 8);
my @rg = $rcv->wait_requests('/g', 8, 15);
is(scalar @rg, 8, 'maxInFlight 8: all delivered');
my $o = overlap(0.5, @rg);
ok($o > 4 && $o <= 6, "maxInFlight 8: above the location's 4, within the cap"
    . " of 6 ($o)");

# PATCH: null goes back to the location's setting, ordered off
my $r = $t->req(PATCH => "/webhooks/$m->{id}", json => { maxInFlight => undef,
    ordered => JSON::PP::false });
is($r->{status}, 200, 'PATCH maxInFlight null');
is($r->{json}{maxInFlight}, undef, 'maxInFlight null');
is($r->{json}{ordered}, JSON::PP::false, 'ordered false');
$r = $t->req(PATCH => "/webhooks/$a->{id}", json => { maxInFlight => 3 });
is($r->{json}{ordered}, JSON::PP::true, 'a PATCH keeps what it does not name');

$rcv->stop;
$t->done;
