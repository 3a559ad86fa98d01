#!/usr/bin/perl

# The second round's configuration: events_webhook_keepalive and the
# format=, ordered and max_in_flight= parameters of events_webhook
# (bad values fail nginx -t with a clear message; good ones show in
# the API and shape the delivery), and the implicit upstream is for
# deliveries only: a proxy_pass to it from a client's request is 500.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use Time::HiRes qw(time sleep);
use EventsTest;
use EventsTest::Receiver;

my $conf = <<'EOF';
%%GLOBALS%%
http {
    %%HTTP_GLOBALS%%

    events_zone main 4m;
    KEEPALIVE
    events_webhook main id=conf url=http://127.0.0.1:RPORT/conf events=c.*
        secret=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw PARAMS;

    server {
        listen 127.0.0.1:%%PORT%%;

        location /events { events_api main; }
        location /webhooks { events_webhooks main; }
        location /sneak { proxy_pass http://events-webhook-pinned/; }

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

my $t0 = EventsTest->new;
my $rcv = EventsTest::Receiver->new(dir => $t0->testdir, name => 'conf');
my $rport = $rcv->port;

sub config {
    my ($t, $keepalive, $params) = @_;
    (my $c = $conf) =~ s/KEEPALIVE/$keepalive/;
    $c =~ s/PARAMS/$params/;
    $c =~ s/RPORT/$rport/;
    $t->write_config($c);
}

sub refused {
    my ($keepalive, $params) = @_;
    my $t = EventsTest->new;
    config($t, $keepalive, $params);
    my ($ok, $out) = $t->_test_config;
    return $ok ? undef : $out;
}

like(refused('events_webhook_keepalive many;', '') // '',
    qr/\[emerg\] invalid number of connections "many"/,
    'keepalive: not a number');
like(refused('events_webhook_keepalive 8 timeout=0;', '') // '',
    qr/\[emerg\] invalid timeout "timeout=0"/, 'keepalive: timeout=0');
like(refused('events_webhook_keepalive 8 idle=5s;', '') // '',
    qr/\[emerg\] invalid parameter "idle=5s"/, 'keepalive: unknown parameter');
like(refused("events_webhook_keepalive 8;\n    events_webhook_keepalive 9;", '')
    // '', qr/\[emerg\] "events_webhook_keepalive" directive is duplicate/,
    'keepalive: duplicate');
like(refused('', 'format=xml') // '',
    qr/\[emerg\] invalid parameter "format=xml"/, 'events_webhook: format=xml');
like(refused('', 'max_in_flight=0') // '',
    qr/\[emerg\] invalid parameter "max_in_flight=0"/,
    'events_webhook: max_in_flight=0');
like(refused('', 'max_in_flight=1001') // '',
    qr/\[emerg\] invalid parameter "max_in_flight=1001"/,
    'events_webhook: max_in_flight=1001');

# good ones
my $t = $t0;
config($t, 'events_webhook_keepalive 0;',
    'format=cloudevents ordered max_in_flight=2');
$t->run;

my $ep = $t->get('/webhooks/conf')->{json};
is($ep->{format}, 'cloudevents', 'static: format');
is($ep->{ordered}, JSON::PP::true, 'static: ordered');
is($ep->{maxInFlight}, 2, 'static: maxInFlight');

$t->post_json('/events', [ map { { type => 'c.x' } } 1 .. 3 ]);
my @r = $rcv->wait_requests('/conf', 3, 10);
is(scalar @r, 3, 'static: delivered');
is_deeply([ map { $_->{headers}{'ce-seq'} } @r ], [ 1, 2, 3 ],
    'static: CloudEvents, in order');

# keepalive 0: deliveries still go, one connection each
is(scalar(grep { $_->{answer} eq '200' } @r), 3, 'keepalive 0: all answered');

# the implicit upstream is not a way out for clients
my $r = $t->get('/sneak');
is($r->{status}, 500, 'proxy_pass to the implicit upstream: 500');
$t->expect_log(qr/"events-webhook-pinned" is for webhook deliveries only/);

$rcv->stop;
$t->done;
