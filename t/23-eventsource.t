#!/usr/bin/perl

# A real client: the eventsource npm package follows a stream, the
# server ends the stream on reload, and the client reconnects by itself
# with Last-Event-ID and gets everything it missed, once, in order.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use POSIX qw(WNOHANG);
use Time::HiRes qw(sleep time);
use EventsTest;

my $client = "$EventsTest::REPO/t/node/eventsource-client.js";
my $lib = "$EventsTest::REPO/t/node/node_modules/eventsource";

# make test installs it; a missing client is a failure, not a skip
ok(-d $lib, 'the eventsource package is installed (make test does it)')
    or BAIL_OUT('run make test, or npm install in t/node');

my $t = EventsTest->new;

$t->write_config(<<'EOF2');
%%GLOBALS%%
http {
    %%HTTP_GLOBALS%%

    events_zone main 4m;

    server {
        listen 127.0.0.1:%%PORT%%;

        events_stream_retry 500ms;

        location = /events/stream {
            events_stream main;
        }

        location /events {
            events_api main;
        }

        location = /events-status {
            events_status main;
        }
    }
}
EOF2

$t->run;

sub post { $t->post_json('/events', { type => "es.$_[0]" })->{json}{seq} }

sub lines {
    open(my $fh, '<', $_[0]) or return ();
    return map { JSON::PP->new->decode($_) } <$fh>;
}

sub subscribers {
    $t->get('/events-status')->{json}{streams}{subscribers};
}

my $out = $t->testdir . '/client.jsonl';
my $url = 'http://127.0.0.1:' . $t->port . '/events/stream?types=es.*';

my $pid = fork // die "fork: $!";
if ($pid == 0) {
    exec('node', $client, $url, $out, 8, 20000) or POSIX::_exit(127);
}

my $deadline = time + 10;
sleep 0.05 while subscribers() < 1 && time < $deadline;
is(subscribers(), 1, 'the client is connected');

my @want = map { post($_) } 1 .. 3;

$deadline = time + 5;
sleep 0.05 while (grep { $_->{seq} } lines($out)) < 3 && time < $deadline;

ok($t->reload, 'reload ends the stream');
push @want, map { post($_) } 4 .. 6;    # while the client is away

$deadline = time + 10;
sleep 0.05 while subscribers() < 1 && time < $deadline;
is(subscribers(), 1, 'the client came back by itself');
push @want, map { post($_) } 7 .. 8;

$deadline = time + 15;
my $done;
while (time < $deadline) {
    last if ($done = waitpid($pid, WNOHANG)) == $pid;
    sleep 0.1;
}
if ($done != $pid) {
    kill 'KILL', $pid;
    waitpid($pid, 0);
}
is($? >> 8, 0, 'the client got its 8 events and exited');

my @log = lines($out);
is_deeply([ map { $_->{seq} } grep { $_->{seq} } @log ], \@want,
    'every event once, in order, across the reconnect');
cmp_ok(scalar(grep { $_->{open} } @log), '>=', 2, 'it opened twice');
ok(!grep({ ($_->{event} // '') eq 'reset' } @log), 'no reset on resume');

$t->done;
