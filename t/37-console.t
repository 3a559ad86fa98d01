#!/usr/bin/perl

# events_console: the page, its style and script and events.js, served
# from the module with ETags (304 on a match), a strict CSP on the page,
# the locations it calls in a <meta>, GET and HEAD only; nginx -t checks
# the parameters.  Then the page in headless Chromium: live tail with
# filter, pause and detail; history with paging; entity; types; webhook
# endpoints with test, replay and resend; status; a token.  Managing
# endpoints: create (every field, and a bad url's 400 as the server
# said it), edit (a PATCH of what changed), disable and enable, rotate
# (the new secret once; a delivery verifies with it and not the old),
# delete after a confirm step; under events_auth a 403 and a 401.  The
# CloudEvents handshake in the endpoint view (verified, its allowed rate;
# refused, pending with its error and next attempt; markup from the
# receiver as text) and "verify" set and cleared by the form.

use strict;
use warnings;

use lib 't/lib';
use JSON::PP;
use Test::More;
use EventsTest;
use EventsNode;

my $REPO = $EventsTest::REPO;
my $t = EventsTest->new;

$t->write_file('hs.key', "s3cret-one\n");
$t->write_config(<<'EOF2');
%%GLOBALS%%
http {
    %%HTTP_GLOBALS%%

    events_zone main 4m;
    events_stream_retry 300ms;
    events_webhook_allow_private on;
    events_webhook_retry 1s 1s;

    server {
        listen 127.0.0.1:%%PORT%%;

        events_tenant $http_x_tenant;

        location = /events/stream { events_stream main; }
        location /events { events_api main; }
        location /webhooks { events_webhooks main; }
        location = /events-status { events_status main; }

        location = /_events_webhook {
            internal;
            proxy_pass $events_webhook_url;
        }

        location /console/ { events_console; }

        location /other {
            events_console api=/v1/events stream=https://s.example/st
                           webhooks=off status=off;
        }
    }

    # a webhook receiver: 200, or 500 for /fail
    server {
        listen 127.0.0.1:%%PORT_2%%;
        location / { return 200 "ok"; }
        location /fail { return 500 "no"; }
    }

    # tokens
    server {
        listen 127.0.0.1:%%PORT_3%%;

        events_auth on;
        events_auth_jwt_key %%TESTDIR%%/hs.key;

        location = /events/stream { events_stream main; }
        location /events { events_api main; }
        location /console/ { events_console status=off webhooks=off; }
        location /webhooks { events_webhooks main; }
        location /wconsole/ { events_console status=off; }
    }

    # the CloudEvents handshake: a refused one is tried again after a
    # minute, so it stays pending while the page looks at it
    events_zone verify 4m;

    server {
        listen 127.0.0.1:%%PORT_4%%;

        events_webhook_retry 60s 60s;

        location = /events/stream { events_stream verify; }
        location /events { events_api verify; }
        location /webhooks { events_webhooks verify; }

        location = /_events_webhook {
            internal;
            proxy_pass $events_webhook_url;
        }

        location /console/ { events_console status=off; }
    }
}
EOF2

$t->run;

my $port = $t->port(1);

# the files

my %size;

for my $f ([ '/console/', qr{^text/html; charset=utf-8$} ],
           [ '/console/index.html', qr{^text/html; charset=utf-8$} ],
           [ '/console/console.css', qr{^text/css; charset=utf-8$} ],
           [ '/console/console.js', qr{^text/javascript; charset=utf-8$} ],
           [ '/console/events.js', qr{^text/javascript; charset=utf-8$} ])
{
    my ($path, $type) = @$f;
    my $r = $t->get($path);
    is($r->{status}, 200, "$path: 200");
    like($r->{headers}{'content-type'}, $type, "$path: its type");
    is($r->{headers}{'content-length'}, length $r->{body},
       "$path: Content-Length");
    like($r->{headers}{etag} // '', qr/^"[0-9a-f]{8}"$/, "$path: ETag");
    is($r->{headers}{'cache-control'}, 'no-cache', "$path: revalidated");
    is($r->{headers}{'x-content-type-options'}, 'nosniff', "$path: nosniff");

    my $again = $t->get($path, headers => [ 'If-None-Match'
                                            => $r->{headers}{etag} ]);
    is($again->{status}, 304, "$path: 304 for its ETag");
    is($again->{body}, '', "$path: no body then");

    $size{$path} = length $r->{body};
}

my $page = $t->get('/console/');
like($page->{headers}{'content-security-policy'},
     qr/default-src 'none'; script-src 'self'; style-src 'self';/,
     'the page: a strict CSP');
is($page->{headers}{'referrer-policy'}, 'no-referrer', 'no referrer');
like($page->{body}, qr{<meta name="events-config" content="\{&quot;api&quot;:&quot;/events&quot;,&quot;stream&quot;:&quot;/events/stream&quot;,&quot;webhooks&quot;:&quot;/webhooks&quot;,&quot;status&quot;:&quot;/events-status&quot;\}">},
     'the page: default locations');
unlike($page->{body}, qr/<!--events-config-->/, 'the marker is replaced');

is($t->get('/console/events.js')->{body},
   do { local (@ARGV, $/) = "$REPO/clients/js/events.js"; <> },
   'events.js is the repository\'s, byte for byte');

my $other = $t->get('/other/');
like($other->{body}, qr{content="\{&quot;api&quot;:&quot;/v1/events&quot;,&quot;stream&quot;:&quot;https://s.example/st&quot;,&quot;webhooks&quot;:null,&quot;status&quot;:null\}"},
     'parameters: api, stream, off');

my $r = $t->get('/other');
is($r->{status}, 301, 'the location without its slash: 301');
is($r->{headers}{location}, "http://127.0.0.1:$port/other/", 'to the slash');

$r = $t->req('HEAD', '/console/');
is($r->{status}, 200, 'HEAD: 200');
is($r->{body}, '', 'HEAD: no body');
is($r->{headers}{'content-length'}, $size{'/console/'}, 'HEAD: the length');

$r = $t->post_json('/console/', {});
$t->is_error($r, 405, 'method_not_allowed', undef, 'POST');
is($r->{headers}{allow}, 'GET, HEAD', 'Allow');

$r = $t->get('/console/nope.js');
$t->is_error($r, 404, 'not_found', undef, 'an unknown file');

my $total = 0;
$total += $size{$_} for '/console/', '/console/console.css',
                        '/console/console.js', '/console/events.js';
cmp_ok($total, '<', 72 * 1024, "the console weighs $total bytes "
       . "(page $size{'/console/'}, css $size{'/console/console.css'}, "
       . "js $size{'/console/console.js'}, events.js "
       . "$size{'/console/events.js'})");

# nginx -t
for my $bad ([ 'events_console api=events;',
               qr/invalid "api=events": a path or an http\(s\) URL expected/ ],
             [ 'events_console api=off;', qr/invalid "api=off"/ ],
             [ 'events_console stream=/a"b;', qr/invalid "stream=\/a"b"/ ],
             [ 'events_console foo=/x;', qr/invalid parameter "foo=\/x"/ ],
             [ 'events_console; events_console;', qr/is duplicate/ ])
{
    my $c = EventsTest->new;
    $c->write_config(<<"EOF2");
%%GLOBALS%%
http {
    %%HTTP_GLOBALS%%
    server {
        listen 127.0.0.1:%%PORT%%;
        location /c/ { $bad->[0] }
    }
}
EOF2
    ok(!eval { $c->run; 1 }, "nginx -t refuses $bad->[0]");
    like($@, $bad->[1], 'and says why');
}

# in Chromium

SKIP: {
    my $ok = -d "$REPO/t/node/node_modules/puppeteer-core"
             && -x '/usr/bin/chromium';
    ok($ok, 'puppeteer-core and chromium are installed (make test does it)')
        or skip 'no puppeteer-core or chromium', 1;

    # something to look at: a few events, an endpoint that succeeds
    for my $i (1 .. 30) {
        my %ev = (type => ($i % 3) ? 'ticket.created' : 'session.started',
                  resourceId => 'tk-' . ($i % 4));
        $t->post_json('/events', \%ev, headers => [ 'X-Tenant' => 'acme' ]);
    }
    my %hook = (url => 'http://127.0.0.1:' . $t->port(2) . '/hook',
                events => ['ticket.*']);
    $r = $t->post_json('/webhooks', \%hook,
                       headers => [ 'X-Tenant' => 'acme' ]);
    is($r->{status}, 201, 'an endpoint') or diag $r->{body};

    my $n = EventsNode->start('node', "$REPO/t/node/console-browser.js",
                              "http://127.0.0.1:$port",
                              "http://127.0.0.1:" . $t->port(3),
                              "http://127.0.0.1:" . $t->port(4));
    my @checks;
    while (my $l = $n->until(sub { 1 }, 90)) {
        last if $l->{done};
        if (exists $l->{check}) {
            push @checks, $l;
            ok($l->{ok}, "console: $l->{check}")
                or diag explain $l;
        } elsif ($l->{text}) {
            diag $l->{text};
        }
    }
    cmp_ok(scalar @checks, '>=', 63, 'console: every check ran')
        or diag $n->output;
    $n->stop;
}

$t->done;
