#!/usr/bin/perl

# A delivery whose event leaves the ring before it succeeds ends
# "expired" (E_EVICTED), counted and warned about; an endpoint's
# rateLimit spaces its deliveries out.

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

$t->write_config(<<'EOF');
%%GLOBALS%%
http {
    %%HTTP_GLOBALS%%

    events_zone main 1m;

    server {
        listen 127.0.0.1:%%PORT%%;

        events_webhook_allow_private on;
        events_webhook_retry 2s 2s 2s 2s 2s;
        events_webhook_log_size 16;

        location /events { events_api main; }
        location /webhooks { events_webhooks main; }
        location = /events-status { events_status main; }

        location = /_events_webhook {
            internal;
            proxy_pass $events_webhook_url;
        }
    }
}
EOF
$t->run;

sub attempts { $t->get("/webhooks/$_[0]/deliveries")->{json}{data} }

# the receiver is down; while the delivery waits for a retry the event
# is evicted.  The receiver stays down: on a slow machine a retry may
# come before the fillers are all in, and fails like the first attempt;
# the five retries leave the fillers 10 s.  The attempt after the
# eviction sends nothing and ends the delivery.
$rcv->script('/late', { status => 500 });
my $ep = $t->post_json('/webhooks', { url => $rcv->url('/late'),
    events => ['x.late'] })->{json};
my $e = $t->post_json('/events', { type => 'x.late' })->{json};
$rcv->wait_requests('/late', 1, 10);
for (1 .. 120) {
    $t->post_json('/events', { type => 'filler.x',
        payload => { data => { pad => 'p' x 8000 } } });
}
$t->is_error($t->get("/events/$e->{id}"), 404, 'not_found', undef,
    'the event has left the ring');

my $log;
my $end = time + 10;
while (time < $end) {
    $log = attempts($ep->{id});
    last if grep { $_->{result} ne 'failed' } @$log;
    sleep 0.2;
}
is($log->[0]{result}, 'expired', 'the next attempt finds it gone: expired');
is($log->[0]{error}, 'E_EVICTED', 'E_EVICTED');
my @sent = grep { $_->{result} eq 'failed' } @$log;
ok(@sent >= 1 && @sent == @$log - 1, scalar(@sent)
    . ' attempt(s) failed before it, none after it');
is(scalar $rcv->requests('/late'), scalar @sent, 'nothing was sent for it');
is($t->get('/events-status')->{json}{webhooks}{expired}, 1,
    'counted in status');
is($t->get("/webhooks/$ep->{id}")->{json}{stats}{expired}, 1,
    'and on the endpoint');
$t->expect_log(qr/left the ring before it was delivered/);
like($t->error_log, qr/\[warn\].*left the ring before it was delivered/,
    'warned');

# rateLimit: 5 a second
my $rl = $t->post_json('/webhooks', { url => $rcv->url('/rl'),
    events => ['x.rate'], rateLimit => 5 })->{json};
$t->post_json('/events', [ map { { type => 'x.rate' } } 1 .. 20 ]);
my @got = $rcv->wait_requests('/rl', 20, 20);
is(scalar @got, 20, 'all 20 delivered');
my $span = $got[-1]{time} - $got[0]{time};
ok($span >= 2.4, sprintf('spread over %.1fs (5/s after a burst of 5)', $span));

$t->done;
