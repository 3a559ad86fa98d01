#!/usr/bin/perl

# Webhook replay from history on disk: with a journal, an endpoint
# created after 3000 events, behind a 1m ring that kept only the last
# of them, is replayed the oldest ones (by seq and by time), exactly.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use EventsTest;
use EventsTest::Receiver;

my $t = EventsTest->new;
my $rcv = EventsTest::Receiver->new(dir => $t->testdir, name => 'r1');

$t->write_config(<<'EOF');
%%GLOBALS%%
http {
    %%HTTP_GLOBALS%%

    events_zone main 1m;
    events_journal main %%TESTDIR%%/journal fsync=off;

    server {
        listen 127.0.0.1:%%PORT%%;
        events_tenant $http_x_tenant;
        client_max_body_size 4m;

        events_webhook_allow 127.0.0.1/32;

        location /events { events_api main; }
        location /webhooks { events_webhooks main; }
        location = /events-status { events_status main; }

        location = /_events_webhook {
            internal;
            proxy_pass $events_webhook_url;
            proxy_set_header Host $events_webhook_host;
        }
    }
}
EOF
$t->run;

my %acme = ('X-Tenant' => 'acme');

my @ev;
for my $b (0 .. 29) {
    my $r = $t->post_json('/events', [ map { { id => "r-$_",
        type => 'report.ready', payload => { data => { i => $_,
        pad => 'p' x 300 } } } } (100 * $b + 1) .. (100 * $b + 100) ],
        headers => \%acme);
    die "POST: $r->{status}" unless $r->{status} == 201;
    push @ev, @{ $r->{json}{data} };
}
ok($t->get('/events-status')->{json}{events}{retained} < 2000,
    'the ring no longer holds the first thousand');

my $ep = $t->req(POST => '/webhooks', headers => \%acme,
    json => { url => $rcv->url('/late'), events => ['report.*'] })->{json};
ok($ep->{id}, 'an endpoint created after them');

my $r = $t->req(POST => "/webhooks/$ep->{id}/replay", headers => \%acme,
    json => { after => 0, until => $ev[49]{seq}, mode => 'all' });
is($r->{status}, 202, 'replay of the oldest 50, from disk');
is($r->{json}{queued}, 50, 'all of them queued') or diag $r->{body};
my @got = $rcv->wait_requests('/late', 50, 30);
is_deeply([ sort map { $_->{headers}{'webhook-id'} } @got ],
    [ sort map { $_->{id} } @ev[0 .. 49] ], 'exactly those were delivered');
$rcv->reset_log;

$r = $t->req(POST => "/webhooks/$ep->{id}/replay", headers => \%acme,
    json => { since => $ev[0]{timestamp}, until => $ev[9]{seq},
              mode => 'all' });
is($r->{json}{queued}, 10, 'replay since the first event\'s time')
    or diag $r->{body};
@got = $rcv->wait_requests('/late', 10, 30);
is_deeply([ sort map { $_->{headers}{'webhook-id'} } @got ],
    [ sort map { $_->{id} } @ev[0 .. 9] ], 'the first ten');

$t->done;
