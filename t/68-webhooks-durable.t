#!/usr/bin/perl

# With events_journal, webhook endpoints and their pending deliveries
# survive a restart and a crash of the whole server: the state file is
# written before the API answers, and delivery progress within a second.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use JSON::PP;
use Time::HiRes qw(time sleep);
use EventsTest;
use EventsTest::Receiver;
use EventsTest::Webhook qw(verify);

my $t = EventsTest->new;
my $rcv = EventsTest::Receiver->new(dir => $t->testdir, name => 'r1');


$t->write_config(<<'EOF');
%%GLOBALS%%
http {
    %%HTTP_GLOBALS%%

    events_zone main 8m;
    events_journal main %%TESTDIR%%/journal fsync=always;

    server {
        listen 127.0.0.1:%%PORT%%;

        events_webhook_allow_private on;
        events_webhook_retry 1s 1s 1s 1s 1s 1s 1s 1s 1s 1s;

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

# the receiver is down: three deliveries wait for their retries
$rcv->script('/hook', { status => 503 });
my $ep = $t->post_json('/webhooks', { url => $rcv->url('/hook'),
    events => ['order.*'], description => 'orders' })->{json};
my @ids = map { $t->post_json('/events', { type => 'order.paid',
    resourceId => "o$_" })->{json}{id} } 1 .. 3;
$rcv->wait_requests('/hook', 3, 10);
sleep 1.5;

my $state = $t->testdir . '/journal/webhooks.state';
ok(-f $state, 'the state file is there');
is((stat $state)[2] & 0777, 0600, 'readable by its owner only (secrets)');
is($t->get('/events-status')->{json}{webhooks}{pending}, 3, '3 pending');

# a crash of everything: the endpoint, its secret and its queue come
# back (the queue was written by the dispatcher, within a second)
kill 'KILL', $t->master_pid, $t->worker_pids;
sleep 0.3;
$t->stop;
$rcv->script('/hook', { status => 200 });
$rcv->reset_log;
$t->run;

my $again = $t->get("/webhooks/$ep->{id}");
is($again->{status}, 200, 'the endpoint survived the crash');
is($again->{json}{description}, 'orders', 'as it was');
my @got = $rcv->wait_requests('/hook', 3, 15);
my %seen = map { $_->{headers}{'webhook-id'} => 1 } @got;
is_deeply([ sort keys %seen ], [ sort @ids ],
    'the pending deliveries resumed');
ok(verify($ep->{secret}, $got[0]{headers}, $got[0]{body}),
    'signed with the secret from before the restart');
ok($got[0]{headers}{'x-events-attempt'} > 1, 'attempts counted on');

# a crash of everything right after the API answered: the endpoint is
# on disk already
my $ep2 = $t->post_json('/webhooks', { url => $rcv->url('/crash'),
    events => ['crash.*'] })->{json};
my @pids = ($t->master_pid, $t->worker_pids);
kill 'KILL', @pids;
sleep 0.5;
$t->stop;    # reaps the master, KILLs any worker left
$t->run;
is($t->get("/webhooks/$ep2->{id}")->{status}, 200,
    'an endpoint created just before kill -9 is there');
my $e = $t->post_json('/events', { type => 'crash.test' })->{json};
my ($c) = $rcv->wait_requests('/crash', 1, 10);
is($c->{headers}{'webhook-id'}, $e->{id}, 'and delivers');

# deleted is deleted, after a restart too
is($t->req(DELETE => "/webhooks/$ep2->{id}")->{status}, 204, 'deleted');
$t->stop;
$t->run;
is($t->get("/webhooks/$ep2->{id}")->{status}, 404, 'still gone');

$t->done;
