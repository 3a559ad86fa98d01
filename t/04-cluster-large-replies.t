#!/usr/bin/perl

# Redis replies of every size through the Redis client's reader, whose
# objects live in a pool of the connection's own: a node started after
# 600 events of 3 KB catches up through XREAD replies of 512 entries
# (1.5 MB, more than the pool keeps and than the reader's buffer
# bound), and gets every event whole, in order, indexed by its metadata
# (actorId) as a POST is; an idle tail whose
# XREAD BLOCK times out (a nil reply, "*-1") is no error.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use Time::HiRes qw(sleep);
use EventsTest;
use EventsTest::Redis;
use EventsTest::Cluster qw(node stop_ok list_all wait_list);

plan(skip_all => 'redis-server not installed (make deps)')
    unless EventsTest::Redis->available;

my $redis = EventsTest::Redis->new;
my $url = $redis->url;
my $N = 600;

my $a = node($url, cluster => 'prefix=t04', zone => '32m',
    http => 'events_max_body_size 4m; client_max_body_size 4m;');

# 600 events of about 3 KB, each payload its own (a shifted pattern)
my @sent;
for my $b (0 .. $N / 50 - 1) {
    my @batch = map {
        my $i = $b * 50 + $_;
        my $pad = join '', map { chr(97 + ($i + $_) % 26) } 0 .. 2999;
        { id => "big-$i", type => 'blob.put', resourceId => "r-$i",
          payload => { n => $i, pad => $pad },
          metadata => { actorId => $i % 200 == 77 ? 'needle' : "hay-$i" } }
    } 0 .. 49;
    my $r = $a->post_json('/events', \@batch);
    is($r->{status}, 201, "batch $b: 201") or last;
    push @sent, @batch;
}

my @ea = wait_list($a, sub { @_ == $N });
is(scalar @ea, $N, 'the node that took them lists all 600');

# a node started now reads them all from Redis in replies of 512
my $b = node($url, cluster => 'prefix=t04', zone => '32m',
    http => 'events_scan_limit 50;');
my @eb = wait_list($b, sub { @_ == $N });
is(scalar @eb, $N, 'a node started afterwards caught up: all 600');
is_deeply([ map { $_->{seq} } @eb ], [ 1 .. $N ], 'in order, no gap');
is_deeply([ map { $_->{id} } @eb ], [ map { $_->{id} } @sent ],
    'the same ids in the same order as posted');
my @bad = grep { $eb[$_]{payload}{pad} ne $sent[$_]{payload}{pad}
    || $eb[$_]{payload}{n} != $_ } 0 .. $#eb;
is(scalar @bad, 0, 'every payload whole, byte for byte')
    or diag("first bad: $bad[0]");
is_deeply(\@eb, \@ea, 'both nodes list the same envelopes');

# the tailer indexed their metadata (actorId): every match in one page,
# where a scan would stop at events_scan_limit (50)
my $m = $b->get('/events?metadata.actorId=needle&limit=10')->{json};
is_deeply([ map { $_->{id} } @{ $m->{data} } ], [ qw(big-77 big-277 big-477) ],
    'by actorId on the tailing node: every match in one page (indexed)');
ok(!$m->{has_more}, 'and nothing more');

# one more after the catch-up reaches it by the live tail
is($a->post_json('/events', { id => 'after', type => 'blob.put' })
    ->{status}, 201, 'a POST after the catch-up');
@eb = wait_list($b, sub { @_ == $N + 1 });
is($eb[-1]{id}, 'after', 'the tail goes on after the large replies');

# idle: XREAD BLOCK (1 s) times out with a nil reply, twice at least
sleep 2.5;
my $st = $b->get('/events-status')->{json}{cluster};
is($st->{errors}, 0, 'idle tail: no error counted') or diag(explain($st));
unlike($b->error_log, qr/unexpected shape|refused XREAD/,
    'idle tail: nothing about its replies in error.log');
is($b->post_json('/events', { id => 'late', type => 'blob.put' })
    ->{status}, 201, 'a POST after the idle time');
@eb = wait_list($b, sub { @_ == $N + 2 });
is($eb[-1]{id}, 'late', 'and it is tailed');

stop_ok($a, 'node a');
stop_ok($b, 'node b');

done_testing;
