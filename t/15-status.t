#!/usr/bin/perl

# events_status: JSON by default, Prometheus text on request.

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

    server {
        listen 127.0.0.1:%%PORT%%;

        location /events {
            events_api main;
        }

        location = /events-status {
            events_status main;
        }
    }
}
EOF

$t->run;

my $r = $t->get('/events-status');
is($r->{status}, 200, 'status');
like($r->{headers}{'content-type'}, qr{^application/json}, 'JSON');
is($r->{json}{zone}, 'main', 'names the zone');
like($r->{json}{epoch}, qr/^[0-9a-f]{16}$/, 'epoch');
is($r->{json}{events}{stored}, 0, 'nothing stored');
is($r->{json}{events}{newestSeq}, 0, 'no newest');
cmp_ok($r->{json}{ring}{bytes}, '>', 2 * 1024 * 1024, 'ring size');
is($r->{json}{ring}{used}, 0, 'nothing used');

$t->post_json('/events', { type => 'a.b', id => 'one' });
$t->post_json('/events', { type => 'a.b', id => 'one' });
$t->post_json('/events', { type => 'a.b', id => 'one', source => 'x' });
$t->post_json('/events', [ { type => 'a.c' }, { type => 'a.d' } ]);

$r = $t->get('/events-status')->{json};
is($r->{events}{stored}, 3, 'stored');
is($r->{events}{retained}, 3, 'retained');
is($r->{events}{repeats}, 1, 'one idempotent repeat');
is($r->{events}{conflicts}, 1, 'one conflict');
is($r->{events}{oldestSeq}, 1, 'oldest seq');
is($r->{events}{newestSeq}, 3, 'newest seq');
is($r->{events}{types}, 3, 'types');
cmp_ok($r->{ring}{used}, '>', 0, 'ring in use');
is($r->{ring}{used} + $r->{ring}{free}, $r->{ring}{bytes}, 'used + free');

my $p = $t->get('/events-status?format=prometheus');
is($p->{status}, 200, 'prometheus by parameter');
like($p->{headers}{'content-type'}, qr{^text/plain; version=0\.0\.4},
    'the exposition format');
like($p->{body}, qr/^# TYPE events_stored_total counter$/m, 'TYPE line');
like($p->{body}, qr/^events_stored_total\{zone="main"\} 3$/m, 'stored');
like($p->{body}, qr/^events_newest_seq\{zone="main"\} 3$/m, 'newest');
like($p->{body},
    qr/^events_published_total\{zone="main",worker="[01]"\} \d+$/m,
    'per worker slot');
like($p->{body},
    qr/^events_worker_info\{zone="main",worker="0",pid="\d+"\} 1$/m,
    'the slot\'s pid');

$p = $t->get('/events-status', headers => { Accept => 'text/plain' });
like($p->{body}, qr/^events_stored_total/m, 'prometheus by Accept');

$r = $t->req('POST', '/events-status', body => '{}',
    headers => { 'Content-Type' => 'application/json' });
$t->is_error($r, 405, 'method_not_allowed', undef, 'POST to status');
is($r->{headers}{allow}, 'GET, HEAD', 'Allow');

$t->done;
