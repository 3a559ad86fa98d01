#!/usr/bin/perl

# A zone with a journal and webhooks: the status shows both, in JSON and
# in Prometheus text.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use EventsTest;

my $t = EventsTest->new;

$t->write_config(<<'EOF');
%%GLOBALS%%
http {
    %%HTTP_GLOBALS%%

    events_zone main 4m;
    events_journal main %%TESTDIR%%/journal fsync=always;

    server {
        listen 127.0.0.1:%%PORT%%;

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

is($t->post_json('/events', { type => 'both.test' })->{status}, 201,
    'an event');

my $r = $t->get('/events-status');
ok($r->{json}, 'the status is JSON') or diag $r->{body};
is($r->{json}{journal}{segments}, 1, 'with the journal');
ok(ref $r->{json}{webhooks} eq 'HASH', 'and the webhooks');

my $text = $t->get('/events-status?format=prometheus')->{body};
like($text, qr/^events_journal_bytes\{zone="main"\} \d+$/m,
    'prometheus: the journal');
like($text, qr/^events_webhook_pending\{zone="main"\} \d+$/m,
    'prometheus: the webhooks');

$t->done;
