#!/usr/bin/perl

# A stream whose request headers complete in a worker that has begun a
# graceful shutdown (its streams were closed a moment before): it is
# answered 200 with a retry hint and the end of the chunked body at once,
# never subscribed and left open when the worker exits.  Three reloads,
# each with streams open and streams still sending their headers.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use IO::Socket::IP;
use IO::Select;
use Time::HiRes qw(sleep time);
use EventsTest;
use EventsTest::SSE;

my $t = EventsTest->new;

$t->write_config(<<'EOF');
%%GLOBALS%%
http {
    %%HTTP_GLOBALS%%

    events_zone main 1m;

    server {
        listen 127.0.0.1:%%PORT%%;

        location = /events/stream {
            events_stream main;
            events_stream_retry 2s;
        }
    }
}
EOF

$t->run;

# read until the end of the chunked body or $secs seconds
sub read_all {
    my ($s, $secs) = @_;
    my ($buf, $sel, $deadline) = ('', IO::Select->new($s), time + $secs);
    while (time < $deadline) {
        last unless $sel->can_read($deadline - time);
        my $n = sysread($s, $buf, 65536, length $buf);
        last unless $n;
        last if $buf =~ /\r\n0\r\n\r\n\z/;
    }
    return $buf;
}

my $rounds = 3;

for my $round (1 .. $rounds) {
    my @old = $t->worker_pids;

    # streams already open, and ones whose headers are not complete yet
    my @open = map { EventsTest::SSE->open($t, '/events/stream') } 1 .. 3;

    # headers begun before the reload, ended after its shutdown began
    my @s = map {
        my $s = IO::Socket::IP->new(PeerHost => '127.0.0.1',
            PeerPort => $t->port(1), Proto => 'tcp') or die "connect: $!";
        syswrite($s, "GET /events/stream HTTP/1.1\r\nHost: localhost\r\n");
        $s;
    } 1 .. 4;

    my $pos = length $t->error_log;
    kill 'HUP', $t->master_pid;

    my $deadline = time + 10;
    sleep 0.05 until time > $deadline
        || (() = substr($t->error_log, $pos)
               =~ /gracefully shutting down/g) >= @old;

    syswrite($_, "\r\n") for @s;

    my $ended = 0;
    for my $s (@s) {
        my $r = read_all($s, 5);
        $ended++ if $r =~ m{^HTTP/1\.1 200 }
            && $r =~ /retry: 2000\n/
            && $r =~ /\r\n0\r\n\r\n\z/;
    }
    is($ended, scalar @s,
        "round $round: every late stream ended with a retry hint");

    my $closed = 0;
    for my $o (@open) {
        my $until = time + 5;
        $o->next_event(timeout => 1)
            until $o->is_closed || $o->is_eof || time > $until;
        $closed++ if $o->is_closed && !$o->error;
    }
    is($closed, scalar @open,
        "round $round: the streams open before it ended cleanly");

    $deadline = time + 10;
    sleep 0.05 until time > $deadline
        || !grep { my $p = $_; grep { $_ == $p } $t->worker_pids } @old;
    ok(!grep({ my $p = $_; grep { $_ == $p } $t->worker_pids } @old),
        "round $round: the old workers are gone");
}

unlike($t->error_log, qr/open socket .* left in connection/,
    'no socket left open at exit');

$t->done;
