#!/usr/bin/perl

# A client that stops reading while 50 MB of events are published: its
# stream is cut once its unsent output passes events_stream_max_buffer,
# worker memory stays bounded, and a client that reads gets everything.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use Time::HiRes qw(sleep time);
use EventsTest;
use EventsTest::SSE;

my $t = EventsTest->new;

$t->write_config(<<'EOF');
%%GLOBALS%%
http {
    %%HTTP_GLOBALS%%

    events_zone main 128m;
    client_max_body_size 4m;

    server {
        listen 127.0.0.1:%%PORT%%;

        events_max_body_size 4m;

        location = /events/stream {
            events_stream main;
            events_stream_max_buffer 1m;
        }

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


sub status { $t->get('/events-status')->{json} }

my $rss0 = $t->rss_anon;

# the one that stops reading: headers, then nothing
my $stuck = EventsTest::SSE->open($t, '/events/stream', decode => 0);
is($stuck->status, 200, 'a stream that will not be read');

my ($batches, $each, $size) = (50, 100, 10000);
my $total = $batches * $each;

my @r = $t->parallel(n => 2, timeout => 120, code => sub {
    my ($i) = @_;

    if ($i == 1) {
        my $good = EventsTest::SSE->open($t, '/events/stream', decode => 0);
        my ($n, $last, $order) = (0, 0, 1);
        while (my $e = $good->next_event(timeout => 10)) {
            my ($seq) = $e->{data} =~ /"seq":(\d+)/;
            $order &&= $seq == $last + 1 || $last == 0;
            $last = $seq;
            last if ++$n == $total;
        }
        return { n => $n, order => $order ? 1 : 0 };
    }

    sleep 0.3;
    # built by hand: JSON::PP would take longer than nginx
    my $one = '{"type":"bulk.load","payload":{"data":"'
        . ('x' x ($size - 250)) . '"}}';
    my $body = '[' . join(',', ($one) x $each) . ']';
    for my $b (1 .. $batches) {
        my $r = $t->req('POST', '/events', body => $body,
            headers => { 'Content-Type' => 'application/json' });
        return { error => $r->{status} } unless $r->{status} == 201;
    }
    return { ok => 1 };
});

ok($r[0]{ok}, "published $total events of ${size} bytes (50 MB)");
is($r[1]{n}, $total, 'the reading client got every event');
ok($r[1]{order}, 'in order, none twice');

my $deadline = time + 5;
sleep 0.1 while status()->{streams}{subscribers} > 0 && time < $deadline;

my $st = status()->{streams};
cmp_ok($st->{lagging}, '>=', 1, 'the stream that did not read was cut');
is($st->{subscribers}, 0, 'and let go');

my $grew = $t->rss_anon - $rss0;
SKIP: {
    # ASan keeps freed memory in quarantine: its RSS says nothing of ours
    skip 'memory is measured without ASan', 1 if $t->asan;

    cmp_ok($grew, '<', 24 * 1024,
        'worker memory grew less than 24 MB over 50 MB published')
        or diag("grew $grew kB");
}
diag("worker anonymous memory grew by $grew kB") if $ENV{TEST_VERBOSE};

# what the cut stream did get is a clean prefix, and it can resume
my ($n, $last) = (0, 0);
while (my $e = $stuck->next_event(timeout => 2)) {
    $last = $e->{id};
    $n++;
}
ok($stuck->is_eof, 'the cut stream is closed');
$t->expect_log(qr/stream cut/);

$t->done;
