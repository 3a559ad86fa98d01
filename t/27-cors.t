#!/usr/bin/perl

# events_cors: preflights answered before access checks, allowed origins
# echoed with Vary, exposed headers, credentials only for listed origins,
# nothing for other origins; "*" without credentials; relative Location.
# Then the same from a real page on another origin in headless Chromium.

use strict;
use warnings;

use lib 't/lib';
use JSON::PP;
use Test::More;
use EventsTest;

my $t = EventsTest->new;

$t->write_config(<<'EOF2');
%%GLOBALS%%
http {
    %%HTTP_GLOBALS%%

    events_zone main 4m;

    server {
        listen 127.0.0.1:%%PORT%%;

        events_tenant $http_x_tenant;
        events_cors http://127.0.0.1:%%PORT_2%% https://app.example;

        location = /events/stream {
            events_stream main;
        }

        location /events {
            events_api main;
        }

        location /webhooks {
            events_webhooks main;
        }

        location = /_events_webhook {
            internal;
            proxy_pass $events_webhook_url;
        }

        location /closed {
            auth_request /deny;
            events_api main;
        }

        location = /deny {
            internal;
            return 401;
        }

        location /open {
            events_cors *;
            events_api main;
        }

        location /none {
            events_cors off;
            events_api main;
        }
    }

    # the page's own origin
    server {
        listen 127.0.0.1:%%PORT_2%%;

        location / {
            root %%TESTDIR%%/www;
        }
    }
}
EOF2

$t->write_file('www/index.html', "<!doctype html><title>other origin</title>\n");
$t->run;

my $port = $t->port(1);
my $page = 'http://127.0.0.1:' . $t->port(2);

sub preflight {
    my ($path, $origin, $method, $headers) = @_;
    return $t->req('OPTIONS', $path, headers => [
        Origin => $origin,
        'Access-Control-Request-Method' => $method,
        ($headers ? ('Access-Control-Request-Headers' => $headers) : ()),
    ]);
}

# preflights
my $r = preflight('/events', $page, 'POST', 'content-type, x-tenant');
is($r->{status}, 204, 'preflight: 204');
is($r->{headers}{'access-control-allow-origin'}, $page, 'origin echoed');
is($r->{headers}{vary}, 'Origin', 'Vary: Origin');
is($r->{headers}{'access-control-allow-methods'}, 'GET, HEAD, POST',
   'methods of the API');
is($r->{headers}{'access-control-allow-headers'}, 'content-type, x-tenant',
   'requested headers allowed');
is($r->{headers}{'access-control-allow-credentials'}, 'true',
   'credentials for a listed origin');
is($r->{headers}{'access-control-max-age'}, '600', 'max age');
is($r->{body}, '', 'no body');

$r = preflight('/webhooks', 'https://app.example', 'PATCH');
is($r->{status}, 204, 'webhooks preflight');
is($r->{headers}{'access-control-allow-methods'},
   'GET, POST, PATCH, DELETE', 'methods of the webhooks API');

$r = preflight('/events/stream', $page, 'GET');
is($r->{headers}{'access-control-allow-methods'}, 'GET, HEAD',
   'methods of a stream');

$r = preflight('/closed', $page, 'POST');
is($r->{status}, 204, 'a preflight passes before auth_request');
is($r->{headers}{'access-control-allow-origin'}, $page,
   'and carries its headers');

$r = preflight('/events', 'http://evil.example', 'POST');
is($r->{status}, 204, 'another origin: 204');
ok(!grep(/^access-control-/, keys %{$r->{headers}}),
   'another origin: no CORS header at all');

$r = $t->req('OPTIONS', '/events');
is($r->{status}, 405, 'a plain OPTIONS is no preflight: 405 as before');

$r = preflight('/none', $page, 'POST');
is($r->{status}, 405, 'events_cors off: no preflight');

# answers
$r = $t->post_json('/events', { type => 'ticket.created', id => 'c1' },
                   headers => [ Origin => $page ]);
is($r->{status}, 201, 'POST with Origin');
is($r->{headers}{'access-control-allow-origin'}, $page, 'origin on 201');
like($r->{headers}{'access-control-expose-headers'},
     qr/^Location, Events-Head, Link, Retry-After, WWW-Authenticate$/,
     'exposed headers');
is($r->{headers}{location}, '/events/c1', 'Location is relative');

$r = $t->get('/events?limit=x', headers => [ Origin => $page ]);
is($r->{status}, 400, 'an error');
is($r->{headers}{'access-control-allow-origin'}, $page, 'carries CORS');

$r = $t->get('/closed', headers => [ Origin => $page ]);
is($r->{status}, 401, '401 from auth_request');
is($r->{headers}{'access-control-allow-origin'}, $page,
   'readable by the page');

$r = $t->get('/events', headers => [ Origin => 'http://evil.example' ]);
is($r->{status}, 200, 'another origin still gets its answer');
ok(!exists $r->{headers}{'access-control-allow-origin'}, 'without CORS');

$r = $t->get('/events');
ok(!exists $r->{headers}{'access-control-allow-origin'}, 'no Origin, no CORS');

$r = $t->get('/open', headers => [ Origin => 'http://any.example' ]);
is($r->{headers}{'access-control-allow-origin'}, '*', '"*" answers *');
ok(!exists $r->{headers}{'access-control-allow-credentials'},
   '"*" never allows credentials');

# nginx -t
for my $bad ([ 'events_cors * http://a.example;', qr/"\*" stands alone/ ],
             [ 'events_cors http://a.example/;', qr/invalid origin/ ],
             [ 'events_cors a.example;', qr/invalid origin "a\.example"/ ],
             [ 'events_cors *; events_cors *;', qr/is duplicate/ ])
{
    my $c = EventsTest->new;
    $c->write_config(<<"EOF2");
%%GLOBALS%%
http {
    %%HTTP_GLOBALS%%
    events_zone main 1m;
    server {
        listen 127.0.0.1:%%PORT%%;
        location /events { $bad->[0] events_api main; }
    }
}
EOF2
    ok(!eval { $c->run; 1 }, "nginx -t refuses $bad->[0]");
    like($@, $bad->[1], 'and says why');
}

# a real page on another origin, in Chromium
SKIP: {
    my $node_lib = "$EventsTest::REPO/t/node/node_modules/puppeteer-core";
    ok(-d $node_lib, 'puppeteer-core is installed (make test does it)')
        or skip 'no puppeteer-core', 9;
    ok(-x '/usr/bin/chromium', 'chromium is installed (make test does it)')
        or skip 'no chromium', 8;

    my $out = `node $EventsTest::REPO/t/node/cors-browser.js $page/index.html http://127.0.0.1:$port 2>&1`;
    my $res = eval { decode_json($out) };
    ok($res, 'the page ran') or diag $out;
    diag $out if $ENV{T_VERBOSE};
    $res //= {};

    is($res->{post}{status}, 201, 'browser: POST across origins');
    like($res->{post}{location} // '', qr{^/events/evt_}, 'browser: reads Location');
    is($res->{list}{status}, 200, 'browser: GET');
    like($res->{list}{head} // '', qr/\S/, 'browser: reads Events-Head');
    is($res->{error}{code}, 'invalid_parameter', 'browser: reads an error');
    is($res->{stream}{data}, 'ticket.created',
       'browser: EventSource across origins, from the first event');
    is($res->{credentials}{status}, 200, 'browser: credentials from a listed origin');
}

$t->done;
