#!/usr/bin/perl

# The CloudEvents abuse-protection handshake ("verify": "cloudevents"):
# before its first delivery an endpoint is sent OPTIONS with
# WebHook-Request-Origin (the server_name of the events_webhooks
# server); deliveries wait until a 2xx allows that origin (or "*").  A
# wrong origin, no header or a 405 keep them waiting and the handshake
# is retried on the retry schedule; a receiver fixed meanwhile gets the
# waiting events.  When the schedule runs out the endpoint is disabled
# ("verification"), its deliveries kept; PATCH {"enabled": true} tries
# again.  WebHook-Allowed-Rate limits deliveries with rateLimit (the
# slower wins).  A new url is verified again.  The field survives a
# restart with events_journal.  Two workers, a real receiver.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use JSON::PP;
use Time::HiRes qw(time sleep);
use EventsTest;
use EventsTest::Receiver;

my $t = EventsTest->new;
my $rcv = EventsTest::Receiver->new(dir => $t->testdir, name => 'r1');
my $dir = $t->testdir;

(my $conf = <<'EOF') =~ s/DIR/$dir/g;
%%GLOBALS%%
http {
    %%HTTP_GLOBALS%%

    events_zone main 1m;
    events_journal main DIR/journal;

    server {
        listen 127.0.0.1:%%PORT%%;
        server_name events.test alias.test;

        events_webhook_allow_private on;
        # nine handshakes: room for the four answers of case "b" under load
        events_webhook_retry 500ms 500ms 500ms 500ms 500ms 500ms 500ms
                             500ms;
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

my $JSON = JSON::PP->new->canonical;
my $ORIGIN = 'events.test';

sub ep { $t->get("/webhooks/$_[0]")->{json} }

# poll the endpoint until $cond holds (10 s at most); the last view
sub ep_until {
    my ($id, $cond) = @_;
    my $v;
    my $end = time + 10;
    while (time < $end) {
        $v = ep($id);
        return $v if $cond->($v);
        sleep 0.05;
    }
    return $v;
}

sub create {
    my (%f) = @_;
    my $r = $t->post_json('/webhooks', { events => ['x.*'], %f });
    die "create: $r->{status} $r->{body}" unless $r->{status} == 201;
    return $r->{json};
}

sub methods { join ' ', map { $_->{method} } @_ }

# the POSTs at $path once there are $n of them (10 s at most)
sub posts {
    my ($path, $n) = @_;
    my @p;
    my $end = time + 10;
    while (time < $end) {
        @p = grep { $_->{method} eq 'POST' } $rcv->requests($path);
        last if @p >= $n;
        sleep 0.05;
    }
    return @p;
}

###########################################################################
# Bad values: the API's error, naming the field; nothing is made

my $bad_body = '{"error":{"status":400,"code":"invalid_field",'
    . '"message":"verify is \"cloudevents\" or null","field":"verify"}}';
my $type_body = '{"error":{"status":400,"code":"invalid_field",'
    . '"message":"verify has the wrong type","field":"verify"}}';

for my $case (['CloudEvents', $bad_body], ['', $bad_body],
    ['webhooks', $bad_body], [1, $type_body], [JSON::PP::true, $type_body],
    [['cloudevents'], $type_body])
{
    my ($v, $want) = @$case;
    my $r = $t->post_json('/webhooks', { url => $rcv->url('/bad'),
        events => ['x.*'], verify => $v });
    is($r->{status}, 400, 'verify ' . $JSON->encode([$v]) . ': 400');
    is($r->{body}, $want, '... the exact body');
}
is_deeply($t->get('/webhooks')->{json}{data}, [], 'nothing was made');

my $plain = create(url => $rcv->url('/plain'));
is_deeply([ @{$plain}{qw(verify verification)} ], [ undef, undef ],
    'no verify: "verify" and "verification" are null');
my $r = $t->req(PATCH => "/webhooks/$plain->{id}",
    json => { verify => 'yes' });
is($r->{status}, 400, 'PATCH with a bad verify: 400');
is($r->{body}, $bad_body, '... the same body');
is(ep($plain->{id})->{verify}, undef, '... and nothing changed');
is($t->req(DELETE => "/webhooks/$plain->{id}")->{status}, 204, 'deleted');

###########################################################################
# A receiver that answers the handshake: one OPTIONS, then the POSTs

$rcv->script('/a', { status => 200,
    headers => { 'WebHook-Allowed-Origin' => $ORIGIN } });
my $a = create(url => $rcv->url('/a'), verify => 'cloudevents',
    headers => { 'X-Token' => 't1' });
is($a->{verify}, 'cloudevents', 'created with verify "cloudevents"');
my @ids = map { $t->post_json('/events', { type => 'x.a' })->{json}{id} }
    1 .. 3;
my @req = $rcv->wait_requests('/a', 4, 10);
is(methods(@req), 'OPTIONS POST POST POST',
    'exactly one OPTIONS, before the first POST');
is($req[0]{headers}{'webhook-request-origin'}, $ORIGIN,
    'WebHook-Request-Origin: the first server_name');
is($req[0]{headers}{'x-token'}, 't1', 'the endpoint\'s own headers too');
is($req[0]{body}, '', 'no body');
ok(!exists $req[0]{headers}{'webhook-request-rate'},
    'no WebHook-Request-Rate without a rateLimit');
ok(!exists $req[0]{headers}{'webhook-signature'}, 'nothing is signed');
is_deeply([ sort map { $_->{headers}{'webhook-id'} } @req[1 .. 3] ],
    [ sort @ids ], 'the three events');

my $v = ep_until($a->{id}, sub { $_[0]{stats}{ok} == 3 });
is($v->{verification}{state}, 'verified', 'verified');
is($v->{verification}{attempts}, 1, 'in one attempt');
is($v->{verification}{httpStatus}, 200, 'httpStatus 200');
is_deeply([ @{ $v->{verification} }{qw(error detail allowedRate
    nextAttemptAt)} ], [ undef, undef, undef, undef ],
    'no error, no detail, no allowed rate, nothing due');
like($v->{verification}{at} // '', qr/^\d{4}-\d\d-\d\dT/, '"at" is a time');

# a new url is verified again, before its first delivery
$rcv->script('/a2', { status => 204,
    headers => { 'WebHook-Allowed-Origin' => '*' } });
$r = $t->req(PATCH => "/webhooks/$a->{id}",
    json => { url => $rcv->url('/a2') });
is($r->{status}, 200, 'the url changed');
is($r->{json}{verification}{state}, 'pending', 'pending again');
$t->post_json('/events', { type => 'x.a' });
@req = $rcv->wait_requests('/a2', 2, 10);
is(methods(@req), 'OPTIONS POST', 'the new url: OPTIONS, then the POST');
$r = $t->req(PATCH => "/webhooks/$a->{id}",
    json => { description => 'd' });
$t->post_json('/events', { type => 'x.a' });
@req = $rcv->wait_requests('/a2', 3, 10);
is(methods(@req), 'OPTIONS POST POST', 'another change: no new handshake');
is(scalar $rcv->requests('/a'), 4, 'nothing more to the old url');

###########################################################################
# Wrong origin, no header, 405: nothing delivered, the state shown; the
# receiver fixed, the waiting events go

$rcv->script('/b', { status => 200,
    headers => { 'WebHook-Allowed-Origin' => 'other.example' } });
my $b = create(url => $rcv->url('/b'), verify => 'cloudevents',
    events => ['x.b']);
my @bids = map { $t->post_json('/events', { type => 'x.b' })->{json}{id} }
    1 .. 2;

$v = ep_until($b->{id}, sub { ($_[0]{verification}{error} // '') ne ''
    && $_[0]{stats}{pending} == 2 });
is($v->{verification}{state}, 'pending', 'wrong origin: pending');
is($v->{verification}{error}, 'E_HTTP', '... E_HTTP');
is($v->{verification}{detail},
    'WebHook-Allowed-Origin "other.example" is not "events.test"',
    '... the detail says why');
is($v->{verification}{httpStatus}, 200, '... httpStatus 200');
like($v->{verification}{nextAttemptAt} // '', qr/^\d{4}-/,
    '... nextAttemptAt');
is($v->{stats}{pending}, 2, '... both events wait');
is($v->{status}, 'enabled', '... the endpoint stays enabled');

# a test ping or a resend would go around the handshake: refused
my $nv_body = '{"error":{"status":409,"code":"not_verified","message":'
    . '"the receiver has not answered the CloudEvents handshake yet '
    . '(see \"verification\")"}}';
$r = $t->req(POST => "/webhooks/$b->{id}/test");
is($r->{status}, 409, 'pending: a test ping is 409');
is($r->{body}, $nv_body, '... not_verified');
$r = $t->req(POST => "/webhooks/$b->{id}/deliveries/$bids[0]/retry");
is($r->{status}, 409, 'pending: a resend is 409');
is($r->{body}, $nv_body, '... not_verified');

$rcv->script('/b', { status => 200 });
$v = ep_until($b->{id}, sub { ($_[0]{verification}{detail} // '')
    =~ /without/ });
is($v->{verification}{detail}, '200 without WebHook-Allowed-Origin',
    'no header: the detail says so');

$rcv->script('/b', { status => 405 });
$v = ep_until($b->{id}, sub { ($_[0]{verification}{httpStatus} // 0)
    == 405 });
is($v->{verification}{detail}, 'the endpoint answered 405',
    '405: the detail');
is($v->{verification}{state}, 'pending', '... still pending');
is(scalar(grep { $_->{method} ne 'OPTIONS' } $rcv->requests('/b')), 0,
    'nothing but OPTIONS was sent');

$rcv->script('/b', { status => 204, headers => [
    'WebHook-Allowed-Origin' => '*', 'WebHook-Allowed-Rate' => '*' ] });
@req = posts('/b', 2);
is_deeply([ sort map { $_->{headers}{'webhook-id'} } @req ], [ sort @bids ],
    'fixed: the waiting events are delivered');
$v = ep_until($b->{id}, sub { $_[0]{stats}{ok} == 2 });
is($v->{verification}{state}, 'verified', 'verified');
is($v->{verification}{allowedRate}, undef, 'WebHook-Allowed-Rate *: none');
ok($v->{verification}{attempts} >= 4, 'after '
    . $v->{verification}{attempts} . ' attempts');
is($t->req(POST => "/webhooks/$b->{id}/test")->{status}, 202,
    'verified: a test ping goes');
@req = $rcv->wait_requests('/b', scalar($rcv->requests('/b')) + 1, 10);
is($req[-1]{headers}{'x-events-type'}, 'webhook.test', '... and arrives');

# an allowed rate that is no number fails the handshake
$rcv->script('/e', { status => 200, headers => [
    'WebHook-Allowed-Origin' => '*', 'WebHook-Allowed-Rate' => '1.5/s' ] });
my $e = create(url => $rcv->url('/e'), verify => 'cloudevents',
    events => ['x.e']);
$v = ep_until($e->{id}, sub { $_[0]{verification}{error} });
is($v->{verification}{detail}, 'WebHook-Allowed-Rate "1.5/s" is not a '
    . 'number of requests a minute or "*"', 'a bad WebHook-Allowed-Rate: '
    . 'the detail');
is($v->{verification}{state}, 'pending', '... pending');
is($t->req(DELETE => "/webhooks/$e->{id}")->{status}, 204, 'deleted');

###########################################################################
# Given up: the schedule runs out, the endpoint is disabled, its events
# wait; enabled again, the handshake starts over

$rcv->script('/c', { status => 405 });
my $c = create(url => $rcv->url('/c'), verify => 'cloudevents',
    events => ['x.c']);
my @cids = map { $t->post_json('/events', { type => 'x.c' })->{json}{id} }
    1 .. 2;
$v = ep_until($c->{id}, sub { $_[0]{status} eq 'disabled' });
is($v->{status}, 'disabled', 'the schedule ran out: disabled');
is($v->{disabledReason}, 'verification', '... disabledReason verification');
is($v->{verification}{state}, 'failed', '... verification failed');
is($v->{verification}{attempts}, 9, '... after 1 + 8 attempts');
is($v->{verification}{nextAttemptAt}, undef, '... none due');
is($v->{stats}{pending}, 2, '... its events still wait');
sleep 0.7;
is(methods($rcv->requests('/c')), join(' ', ('OPTIONS') x 9),
    'nine OPTIONS, nothing else');
$t->expect_log(qr/disabled \(verification\)/);
like($t->error_log, qr/\[warn\].*"\Q$c->{id}\E" disabled \(verification\)/,
    'a warning says so');

$rcv->script('/c', { status => 200,
    headers => { 'WebHook-Allowed-Origin' => 'EVENTS.TEST' } });
$r = $t->req(PATCH => "/webhooks/$c->{id}",
    json => { enabled => JSON::PP::true });
is($r->{json}{verification}{state}, 'pending', 'enabled: pending again');
is($r->{json}{verification}{attempts}, 0, '... from the start');
@req = posts('/c', 2);
is_deeply([ sort map { $_->{headers}{'webhook-id'} } @req ], [ sort @cids ],
    'verified (the origin in another case): the waiting events go');

###########################################################################
# WebHook-Allowed-Rate: 60 a minute, slower than rateLimit 100/s: it wins

$rcv->script('/d', { status => 200, headers => [
    'WebHook-Allowed-Origin' => $ORIGIN, 'WebHook-Allowed-Rate' => '60' ] });
my $d = create(url => $rcv->url('/d'), verify => 'cloudevents',
    events => ['x.d'], rateLimit => 100);
$t->post_json('/events', [ map { { type => 'x.d' } } 1 .. 5 ]);
@req = $rcv->wait_requests('/d', 6, 15);
is(methods(@req), 'OPTIONS POST POST POST POST POST',
    'rate 60/min: all five delivered');
is($req[0]{headers}{'webhook-request-rate'}, 6000,
    'WebHook-Request-Rate: rateLimit a minute');
my $span = $req[-1]{time} - $req[1]{time};
ok($span >= 2.5 && $span < 8, sprintf('one a second after a burst of two: '
    . '%.1fs from the first to the fifth', $span));
is(ep($d->{id})->{verification}{allowedRate}, 60, 'allowedRate 60');

###########################################################################
# "verify" is kept with the journal; the handshake is made again

$t->stop;
$rcv->reset_log;
$t->run;
$v = ep($a->{id});
is($v->{verify}, 'cloudevents', 'after a restart: verify kept');
$t->post_json('/events', { type => 'x.a' });
@req = $rcv->wait_requests('/a2', 2, 10);
is(methods(@req), 'OPTIONS POST', '... verified again before delivering');

# verify null turns it off
$r = $t->req(PATCH => "/webhooks/$a->{id}", json => { verify => undef });
is_deeply([ @{ $r->{json} }{qw(verify verification)} ], [ undef, undef ],
    'verify null: off');

$t->done;
