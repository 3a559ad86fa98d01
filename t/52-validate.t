#!/usr/bin/perl

# events_validate: a subrequest to a hook location decides, before the
# store, whether an event is written (POST /events and capture).

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use JSON::PP;
use IO::Socket::IP;
use Time::HiRes qw(sleep);
use EventsTest;
use EventsTest::Backend;

my $t = EventsTest->new;

$t->write_config(<<'EOF');
%%GLOBALS%%
http {
    %%HTTP_GLOBALS%%

    events_zone main 8m;

    # the first takes the event and hangs up: the proxy sends it again
    # to the second
    upstream hooks {
        server 127.0.0.1:%%PORT_4%%;
        server 127.0.0.1:%%PORT_2%%;
    }

    server {
        listen 127.0.0.1:%%PORT_4%%;
        return 444;
    }

    server {
        listen 127.0.0.1:%%PORT%%;

        events_tenant $http_x_tenant;

        location /events {
            events_api main;
            events_validate /_validate;
        }

        location /typed/events {
            events_api main;
            events_validate /_validate types=ticket.*,order.paid;
        }

        location /down/events {
            events_api main;
            events_validate /_down;
        }

        location /open/events {
            events_api main;
            events_validate /_down fail=open;
        }

        location /deny/events {
            events_api main;
            events_validate /_deny;
        }

        location /retry/events {
            events_api main;
            events_validate /_retry;
        }

        location /free/events {
            events_api main;
        }

        location /api/ {
            events_capture header zone=main;
            events_validate /_validate;
            proxy_pass http://127.0.0.1:%%PORT_2%%;
        }

        # the hook: the Perl backend, steered by X-Hook-* of the client
        location = /_validate {
            internal;
            proxy_pass http://127.0.0.1:%%PORT_2%%/validate;
            proxy_set_header X-Status $http_x_hook_status;
            proxy_set_header X-Body $http_x_hook_body;
            proxy_set_header X-Content-Type $http_x_hook_type;
            proxy_set_header X-Delay $http_x_hook_delay;
            proxy_set_header X-Reject-If $http_x_hook_reject_if;
            proxy_set_header X-Body-Size $http_x_hook_body_size;
            proxy_set_header X-Emit "";
            proxy_read_timeout 500ms;
        }

        location = /_down {
            internal;
            proxy_pass http://127.0.0.1:%%PORT_3%%;
        }

        location = /_retry {
            internal;
            proxy_pass http://hooks/validate;
            # asking a hook twice is harmless
            proxy_next_upstream error timeout non_idempotent;
        }

        location = /_deny {
            internal;
            return 403;
        }

        location = /events-status {
            events_status main;
        }
    }
}
EOF

my $backend = EventsTest::Backend->start($t, 2);
$t->port(3);    # reserved, nothing listens: the hook is down
$t->expect_log(qr/connect\(\) failed \(111: Connection refused\)/);
$t->expect_log(qr/upstream timed out/);
$t->expect_log(qr/upstream prematurely closed/);
$t->run;

my $json = JSON::PP->new->canonical;

my $n;

sub count { scalar @{ $t->get('/free/events?limit=1000')->{json}{data} } }
sub status { $t->get('/events-status')->{json}{validate} }
sub hooks { scalar grep { m{^POST /validate } } $backend->log }

###########################################################################
# The hook agrees

my $r = $t->post_json('/events', { type => 'ticket.created',
    resourceId => 't-1', payload => { data => { title => 'Hi' } } });
is($r->{status}, 201, 'accepted: 201');
is($r->{json}{resourceId}, 't-1', 'accepted: the event');
is(count(), 1, 'accepted: stored');

my ($line) = grep { m{^POST /validate } } $backend->log;
my ($ctype, $sent) = $line =~ m{^POST /validate (\S+) (.*)$};
is($ctype, 'application/json', 'the hook gets JSON');
my $ev = $json->decode($sent);
is($ev->{type}, 'ticket.created', 'the hook gets the event');
is($ev->{id}, $r->{json}{id}, 'with the id it will have');
ok(exists $ev->{seq} && !defined $ev->{seq}, 'seq null, not yet known');
ok(exists $ev->{timestamp} && !defined $ev->{timestamp}, 'timestamp null');
is_deeply($ev->{payload}{data}, { title => 'Hi' }, 'and its data');

###########################################################################
# The hook refuses: its status, its JSON body

$r = $t->post_json('/events', { type => 'ticket.created' }, headers => {
    'X-Hook-Status' => 422,
    'X-Hook-Body' => '{"error":{"code":"title_required"}}' });
is($r->{status}, 422, 'refused: the hook\'s status');
is($r->{body}, '{"error":{"code":"title_required"}}', 'the hook\'s body');
like($r->{headers}{'content-type'}, qr{^application/json}, 'as JSON');
is(count(), 1, 'refused: nothing stored');

# not JSON: our error, with the hook's status
$r = $t->post_json('/events', { type => 'ticket.created' }, headers => {
    'X-Hook-Status' => 409, 'X-Hook-Body' => 'nope',
    'X-Hook-Type' => 'text/plain' });
$t->is_error($r, 409, 'rejected');
unlike($r->{body}, qr/nope/, 'a text answer is not relayed');

$r = $t->post_json('/deny/events', { type => 'ticket.created' });
$t->is_error($r, 403, 'rejected', undef, '"return 403": rejected');

is(count(), 1, 'nothing stored');
is(status()->{rejected}, 3, 'rejections counted');

# a big answer: never relayed, never in the way
$r = $t->post_json('/events', { type => 'ticket.created' }, headers => {
    'X-Hook-Status' => 422, 'X-Hook-Body-Size' => 5000 });
$t->is_error($r, 422, 'rejected', undef, 'over 4 KB: our error instead');

$r = $t->post_json('/events', { type => 'ticket.created',
    resourceId => 't-big' }, headers => { 'X-Hook-Body-Size' => 200000 });
is($r->{status}, 201, 'a 200 KB yes is a yes');

is(count(), 2, 'stored: the first, and the big yes');
is(status()->{rejected}, 4, 'rejections counted');

###########################################################################
# The hook is down or slow: 503, or stored with fail=open

$r = $t->post_json('/down/events', { type => 'ticket.created' });
is($r->{status}, 503, 'down: 503');
is($r->{body}, '{"error":{"status":503,"code":"validation_unavailable",'
    . '"message":"the validation hook did not answer; nothing was stored"}}',
    'down: the exact error');

$r = $t->post_json('/events', { type => 'ticket.created' },
    headers => { 'X-Hook-Delay' => 1 });
$t->is_error($r, 503, 'validation_unavailable', undef, 'timeout: 503');

is(count(), 2, 'down, slow: nothing stored');

$r = $t->post_json('/open/events', { type => 'ticket.created',
    resourceId => 't-open' });
is($r->{status}, 201, 'fail=open: stored anyway');
is(count(), 3, 'fail=open: it is there');
is(status()->{failed}, 3, 'failures counted');
my $failed = qr/\[warn\].*validation hook "\/_down" failed \(status 502\)/;
like($t->error_log, qr/$failed on "ticket.created", stored \(fail=open\)/,
    'fail=open: warn');

# a client that leaves while the hook thinks
{
    my $s = IO::Socket::IP->new(PeerHost => '127.0.0.1',
        PeerPort => $t->port(1)) or die "connect: $@";
    my $body = '{"type":"ticket.created","resourceId":"t-gone"}';
    print $s "POST /events HTTP/1.1\r\nHost: x\r\nX-Hook-Delay: 1\r\n"
        . "Content-Type: application/json\r\n"
        . 'Content-Length: ' . length($body) . "\r\n\r\n$body";
    sleep 0.2;
    close $s;
}
is($t->get('/free/events')->{status}, 200, 'a client gone: nginx is fine');

# the proxy tries the next upstream: the same body again
$n = count();
for my $i (1 .. 4) {
    is($t->post_json('/retry/events', { type => 'ticket.created',
        resourceId => "r-$i" })->{status}, 201, "next upstream $i: stored");
}
is(count(), $n + 4, 'next upstream: all four');
my @retried = grep { /"resourceId":"r-\d"/ } $backend->log;
is(scalar(grep { m{^POST /validate application/json (\{.*\})$}
    && eval { $json->decode($1) } } @retried), 4,
    'next upstream: the hook got each whole');

###########################################################################
# types= narrows what the hook sees

sleep 1;    # the slow hook above has finished with the backend
my $asked = hooks();
$r = $t->post_json('/typed/events', { type => 'user.created' },
    headers => { 'X-Hook-Status' => 422 });
is($r->{status}, 201, 'types=: another type is not checked');
is(hooks(), $asked, 'types=: the hook was not asked');
$r = $t->post_json('/typed/events', { type => 'order.paid' },
    headers => { 'X-Hook-Status' => 422 });
is($r->{status}, 422, 'types=: a listed type is checked');
$r = $t->post_json('/typed/events', { type => 'ticket.closed' },
    headers => { 'X-Hook-Status' => 422 });
is($r->{status}, 422, 'types=: a pattern is checked');

###########################################################################
# A batch: one hook call per event, in order; the first refusal wins

$n = count();
$asked = hooks();
$r = $t->post_json('/events', [ map { { type => 'ticket.created',
    resourceId => "b-$_" } } 1 .. 3 ]);
is($r->{status}, 201, 'batch: accepted');
is(hooks(), $asked + 3, 'batch: three calls');
is(count(), $n + 3, 'batch: stored');

$asked = hooks();
$r = $t->post_json('/typed/events', [
    { type => 'ticket.created', resourceId => 'c-1' },
    { type => 'user.created', resourceId => 'c-2' },
    { type => 'ticket.created', resourceId => 'reject-me' },
    { type => 'ticket.created', resourceId => 'c-4' } ],
    headers => { 'X-Hook-Reject-If' => 'reject-me',
        'X-Hook-Type' => 'text/plain' });
$t->is_error($r, 422, 'rejected', '[2]', 'batch: refused, naming the item');
is(hooks(), $asked + 2, 'batch: stopped at the refusal, skipped user.*');
is(count(), $n + 3, 'batch: all or nothing');

###########################################################################
# Captured events: a refusal drops the event, never the answer

sub wait_count {
    my ($want) = @_;
    for (1 .. 100) {
        return 1 if count() == $want;
        sleep 0.05;
    }
    return 0;
}

$n = count();
$r = $t->get('/api/orders/1', headers => { 'X-Body' => 'hello',
    'X-Emit' => '{"type":"order.created","resourceId":"o-1"}' });
is($r->{body}, 'hello', 'capture: the answer');
ok(wait_count($n + 1), 'capture: the hook agreed, stored');
($line) = grep { m{^POST /validate } } reverse $backend->log;
like($line, qr/"resourceId":"o-1"/, 'capture: the hook saw it');

my $invalid = $t->get('/events-status')->{json}{capture}{invalid};
$r = $t->get('/api/orders/2', headers => { 'X-Body' => 'hello',
    'X-Hook-Status' => 422,
    'X-Emit' => '{"type":"order.created","resourceId":"o-2"}' });
is($r->{status}, 200, 'capture refused: 200 all the same');
is($r->{body}, 'hello', 'capture refused: the answer');
ok(!exists $r->{headers}{'x-event-emit'}, 'capture refused: stripped');
for (1 .. 100) {
    last if $t->get('/events-status')->{json}{capture}{invalid} > $invalid;
    sleep 0.05;
}
is($t->get('/events-status')->{json}{capture}{invalid}, $invalid + 1,
    'capture refused: counted');
is(count(), $n + 1, 'capture refused: not stored');
my $refused = qr/\[warn\].*captured event \(X-Event-Emit\) refused:/;
like($t->error_log, qr/$refused rejected: the validation hook refused/,
    'capture refused: warn');

###########################################################################
# Both workers ask the hook

$n = count();
$t->parallel(n => 4, code => sub {
    my ($i) = @_;
    my $ok = 0;
    for my $j (1 .. 5) {
        $ok += $t->post_json('/events', { type => 'ticket.created',
            resourceId => "p-$i-$j" })->{status} == 201;
    }
    return $ok;
});
is(count(), $n + 20, 'twenty validated writes at once, all stored');
is(scalar(grep { $_->{published} > 0 }
    @{ $t->get('/events-status')->{json}{workers} }), 2,
    'both workers stored validated events');

$backend->stop;
$t->done;
