#!/usr/bin/perl

# What nginx -t says of capture and hook directives it cannot use.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use EventsTest;

sub refused {
    my ($directives, $why, $name) = @_;
    my $t = EventsTest->new;
    $t->write_config(<<"EOF");
%%GLOBALS%%
http {
    %%HTTP_GLOBALS%%

    events_zone main 1m;

    server {
        listen 127.0.0.1:%%PORT%%;

        location / {
            $directives
            return 204;
        }
    }
}
EOF
    ok(!eval { $t->run; 1 }, "$name: refused");
    like($@, $why, "$name: says why");
}

refused('events_capture header;', qr/"events_capture" directive needs "zone="/,
    'no zone');
refused('events_capture zone=main;',
    qr/needs "header", "auto" or both/, 'no mode');
refused('events_capture headers zone=main;',
    qr/invalid parameter "headers"/, 'a typo');
refused('events_capture header zone=main; events_capture auto zone=main;',
    qr/"events_capture" directive is duplicate/, 'twice');
refused('events_capture header zone=nosuch;', qr/nosuch/, 'unknown zone');
refused('events_capture auto zone=main;',
    qr/"events_capture auto" needs at least one "events_resource"/,
    'auto without resources');
refused('events_resource "/t/x{id}" t;',
    qr/needs "\{id\}" as a whole path segment/, '{id} inside a segment');
refused('events_resource "/t/{id}/{id}" t;',
    qr/may hold "\{id\}" only once/, '{id} twice');
refused('events_resource t/{id} t;', qr/not terminated by ";"/,
    'an unquoted template');
refused('events_resource "t/{id}" t;', qr/starts with "\/"/, 'relative');
refused('events_resource "/t/{id}" Ticket;', qr/invalid type "Ticket"/,
    'a bad type');
refused('events_capture_metadata "" $uri;', qr/a name of 1-64/,
    'an empty metadata name');
refused('events_validate validate;', qr/starts with "\/"/,
    'a relative hook');
refused('events_validate /v types=Ticket;',
    qr/invalid parameter "types=Ticket"/, 'a bad pattern');
refused('events_validate /v fail=maybe;',
    qr/invalid parameter "fail=maybe"/, 'a bad fail=');
refused('events_validate off fail=open;', qr/takes no parameters/,
    'off with parameters');

# and what it accepts
my $t = EventsTest->new;
$t->write_config(<<'EOF');
%%GLOBALS%%
http {
    %%HTTP_GLOBALS%%

    events_zone main 1m;
    events_validate /v types=ticket.*,order.paid fail=open;

    server {
        listen 127.0.0.1:%%PORT%%;
        events_capture header auto zone=main;
        events_resource "/t/{id}" ticket;
        events_resource "/u/{id}/profile" user.profile;
        events_resource /health status;
        events_capture_metadata actorId $remote_user;
        events_capture_max_body 1k;

        location / {
            return 204;
        }

        location /off {
            events_capture off;
            events_validate off;
            return 204;
        }
    }
}
EOF
ok(eval { $t->run; 1 }, 'a full configuration starts') or diag($@);
is($t->get('/')->{status}, 204, 'and serves');
$t->done;
