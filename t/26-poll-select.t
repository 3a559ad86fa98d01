#!/usr/bin/perl

# Under "use poll" and "use select" nginx keeps cycle->files, indexed by
# fd: the shutdown watcher (a fake connection) must never index it with
# -1.  Streams, a publish, a reload and a stop under each method; with
# make test-asan a read before the array is a sanitizer report.  Skipped
# where nginx has neither method (Debian's is built with epoll only;
# "make nginx-poll" builds one that has, used through T_NGINX_POLL).

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use EventsTest;
use EventsTest::SSE;

for my $method ('poll', 'select') {
    # a binary with both, from "make nginx-poll", when there is one
    local $EventsTest::NGINX = $ENV{T_NGINX_POLL}
        if $ENV{T_NGINX_POLL} && -x $ENV{T_NGINX_POLL};
    my $t = EventsTest->new(events_block => 0);

    $t->write_config(<<"EOF");
%%GLOBALS%%
events {
    use $method;
    worker_connections 256;
}

http {
    %%HTTP_GLOBALS%%

    events_zone main 1m;

    server {
        listen 127.0.0.1:%%PORT%%;

        location = /events/stream {
            events_stream main;
        }

        location /events {
            events_api main;
        }
    }
}
EOF

    $t->try_run("this nginx has no \"use $method\"");

    my $s = EventsTest::SSE->open($t, '/events/stream');
    is($s->status, 200, "$method: stream");
    is($t->post_json('/events', { type => 'a.b' })->{status}, 201,
        "$method: POST");
    my $e = $s->next_event(timeout => 5);
    is($e && $e->{json}{type}, 'a.b', "$method: the event streamed");

    ok($t->reload, "$method: reload");
    ok($s->is_closed || !defined $s->next_event(timeout => 3),
        "$method: the stream ended at the reload");

    $t->done;
}
