#!/usr/bin/perl

# webhooks.state names positions in the store it was written with.  A
# restart with a store that is not that one (the journal's segments all
# gone: a new epoch, seqs from 1), or that holds less (the journal cut
# back to an earlier seq), must not hide new events behind the old
# positions: they are delivered, and the move is logged.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use Time::HiRes qw(time sleep);
use EventsTest;
use EventsTest::Receiver;

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
        events_webhook_retry 1s;

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

sub publish {
    my ($n, $tag) = @_;
    return map {
        my $r = $t->post_json('/events', { type => 'order.paid',
            resourceId => "$tag-$_", payload => { data => {
            pad => 'x' x 300 } } });
        die "publish: $r->{body}" unless $r->{status} == 201;
        $r->{json};
    } 1 .. $n;
}

sub delivered {
    my ($ids, $secs) = @_;
    my $end = time + $secs;
    my %want = map { $_ => 1 } @$ids;
    while (time < $end) {
        my %got = map { ($_->{headers}{'webhook-id'} => 1) }
            $rcv->requests('/hook');
        return 1 unless grep { !$got{$_} } keys %want;
        sleep 0.2;
    }
    return 0;
}

my $seg = sub { glob $t->testdir . '/journal/*.evj' };

my $ep = $t->post_json('/webhooks', { url => $rcv->url('/hook'),
    events => ['order.*'] })->{json};
ok($ep->{id}, 'an endpoint');
my @first = publish(10, 'a');
ok(delivered([ map { $_->{id} } @first ], 10), '10 events delivered');
sleep 1.2;                              # the dispatcher saves its state
$t->stop;
ok(-f $t->testdir . '/journal/webhooks.state', 'the webhook state is saved');

# 1. the journal cut back: the last records are gone, the seqs reused
my @s = $seg->();
is(scalar @s, 1, 'one segment');
truncate $s[0], int((-s $s[0]) * 0.55) or die "truncate: $!";
$rcv->reset_log;
$t->run;
my $head = $t->get('/events-status')->{json}{events}{newestSeq};
ok($head < 10, "the store ends at seq $head now");
my @cut = publish(3, 'b');
ok(delivered([ map { $_->{id} } @cut ], 10),
    'after a cut-back, new events are delivered (seqs '
    . join(',', map { $_->{seq} } @cut) . ')');
like($t->error_log, qr/before what the webhook state names|not the one the webhook state was written with/,
    'the move is logged');
is($t->get("/webhooks/$ep->{id}")->{json}{stats}{pending}, 0,
    'nothing left pending');
sleep 1.2;
$t->stop;

# 2. every segment gone (as retention may leave it): a new epoch
unlink $seg->();
$rcv->reset_log;
$t->run;
is($t->get('/events-status')->{json}{events}{newestSeq}, 0,
    'an empty store');
my @fresh = publish(3, 'c');
is($fresh[0]{seq}, 1, 'seqs start again at 1');
ok(delivered([ map { $_->{id} } @fresh ], 10),
    'in a new epoch, new events are delivered');
like($t->error_log, qr/not the one the webhook state was written with/,
    'the new epoch is logged');
is($t->get("/webhooks/$ep->{id}")->{json}{url}, $rcv->url('/hook'),
    'the endpoint itself was kept');

$t->done;
