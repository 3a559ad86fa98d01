#!/usr/bin/perl

# events_cluster on a real Redis Cluster: three masters (started here,
# cluster-enabled, slots assigned by redis-cli --cluster create), three
# nginx nodes each given another master.  The log's keys share one hash
# tag, so they live on one master; the nodes given the others follow
# its MOVED answers.  The same core checks as t/70: one order, lists
# equal, a client id posted everywhere at once is one event.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use Time::HiRes qw(sleep);
use POSIX ();
use EventsTest;
use EventsTest::Redis;
use EventsTest::Cluster qw(node readable finish redis_cluster id_of);

plan(skip_all => 'redis-server not installed (make deps)')
    unless EventsTest::Redis->available;

my @masters = redis_cluster(3);

my $slot = $masters[0]->cli('CLUSTER', 'KEYSLOT', '{t74}:log');
ok($slot =~ /^\d+$/, "the log's slot: $slot");

my @nodes = map { node($_->url, zone => '8m',
    cluster => 'prefix=t74 timeout=5s') } @masters;

readable($_) for @nodes;
is(scalar(grep { $_->get('/events')->{status} == 200 } @nodes), 3,
    'every node read the log');

my @posted = $nodes[0]->parallel(n => 6, code => sub {
    my ($i) = @_;
    my @r;
    for my $k (1 .. 10) {
        my $r = $nodes[$i % 3]->post_json('/events', { type => 'c.x',
            resourceId => "r-$i-$k" });
        push @r, [ $r->{status}, $r->{json}{seq} ];
    }
    return \@r;
});
my @acks = map { @{ $_ // [] } } @posted;
is(scalar(grep { $_->[0] == 201 } @acks), 60, 'every POST 201');
is_deeply([ sort { $a <=> $b } map { $_->[1] } @acks ], [ 1 .. 60 ],
    'seqs 1..60 across the nodes');

my @lists;
for my $t (@nodes) {
    my $ev = [];
    for (1 .. 200) {
        $ev = $t->get('/events?limit=100')->{json}{data} // [];
        last if @$ev >= 60;
        sleep 0.05;
    }
    push @lists, $ev;
}
is(scalar @{ $lists[0] }, 60, 'node 0 lists all');
is_deeply($lists[1], $lists[0], 'node 1 lists the same');
is_deeply($lists[2], $lists[0], 'node 2 lists the same');

my @dup = $nodes[0]->parallel(n => 6, code => sub {
    my ($i) = @_;
    return $nodes[$i % 3]->post_json('/events', { id => 'once',
        type => 'c.y' })->{status};
});
is(scalar(grep { $_ == 201 } @dup), 1, 'one client id: one 201');
is(scalar(grep { $_ == 200 } @dup), 5, 'and five 200s');

my $moved = grep { $_->error_log =~ /events_cluster: redis \S+: the keys moved to 127\.0\.0\.1:\d+/ }
    @nodes;
ok($moved >= 2, "nodes given another master followed MOVED ($moved)");

# the log's slot moves to another master while the nodes POST: TRYAGAIN
# and ASK answers are retried, then MOVED is followed; nothing is lost

my ($src) = grep { ($_->cli('CLUSTER', 'COUNTKEYSINSLOT', $slot) // 0) > 0 }
    @masters;
ok($src, 'the master that holds the log');
my ($dst) = grep { $_ != $src } @masters;

my $mig = fork // die "fork: $!";
if ($mig == 0) {
    sleep 0.3;
    $dst->cli('CLUSTER', 'SETSLOT', $slot, 'IMPORTING', id_of($src));
    $src->cli('CLUSTER', 'SETSLOT', $slot, 'MIGRATING', id_of($dst));
    # in two halves, so that POSTs meet both TRYAGAIN and ASK
    for (1 .. 20) {
        my @keys = grep { length } split /\n/,
            ($src->cli('CLUSTER', 'GETKEYSINSLOT', $slot, 1000) // '');
        last unless @keys;
        my @half = @keys > 1 ? @keys[0 .. $#keys / 2] : @keys;
        $src->cli('MIGRATE', '127.0.0.1', $dst->port, '', 0, 5000,
            'KEYS', @half);
        sleep 0.1;
    }
    $_->cli('CLUSTER', 'SETSLOT', $slot, 'NODE', id_of($dst)) for @masters;
    POSIX::_exit(0);
}

my @during = $nodes[0]->parallel(n => 3, code => sub {
    my ($i) = @_;
    my @r;
    for my $k (1 .. 25) {
        my $r = $nodes[$i]->post_json('/events', { id => "m-$i-$k",
            type => 'c.m' }, timeout => 10);
        push @r, [ "m-$i-$k", $r->{status} ];
        sleep 0.03;
    }
    return \@r;
});
waitpid($mig, 0);
my @m = map { @{ $_ // [] } } @during;
is(scalar @m, 75, 'every POST during the migration answered');
my @ok = grep { $_->[1] == 201 } @m;
is(scalar @ok, 75, 'all 201: retried through TRYAGAIN and ASK')
    or diag(join ' ', map { $_->[1] } @m);
is($dst->cli('CLUSTER', 'COUNTKEYSINSLOT', $slot) > 0 ? 1 : 0, 1,
    'the log is on the other master now');

my $after = $nodes[1]->post_json('/events', { id => 'after-move',
    type => 'c.m' });
is($after->{status}, 201, 'a POST after the move');
for my $t (@nodes) {
    my %have;
    for (1 .. 200) {
        %have = map { $_->{id} => 1 }
            @{ $t->get('/events?limit=1000')->{json}{data} // [] };
        last if $have{'after-move'};
        sleep 0.05;
    }
    is(scalar(grep { !$have{ $_->[0] } } @ok), 0,
        'a node lists every acknowledged event');
}

finish(@nodes);
