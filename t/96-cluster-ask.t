#!/usr/bin/perl

# events_cluster follows ASK redirects of a real Redis Cluster.  The
# log's slot is set MIGRATING on its master and IMPORTING on another,
# and the log's stream and meta keys are MIGRATEd: from then on the
# source answers ASK for them (checked here with redis-cli), and the
# module sends ASKING and the command to the importing node, once,
# without changing where its connections go.  A node started in that
# window reads the whole log through ASK; POSTs meanwhile (a script
# whose keys are split is TRYAGAIN on both sides) are retried until the
# slot's move ends, and are all 201, one order on every node.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use Time::HiRes qw(sleep time);
use POSIX ();
use EventsTest;
use EventsTest::Daemon;
use EventsTest::Redis;

plan(skip_all => 'redis-server not installed (make deps)')
    unless EventsTest::Redis->available;

my (@masters, @hold);
for (1 .. 3) {
    my (undef, $udp, $bus) = EventsTest::Daemon::reserve_port();
    push @hold, $udp;
    undef $udp;
    push @masters, EventsTest::Redis->new(args => [ '--cluster-enabled',
        'yes', '--cluster-config-file', 'nodes.conf', '--cluster-port',
        $bus, '--cluster-node-timeout', '5000' ]);
}
@hold = ();

my $cmd = "$EventsTest::Redis::CLI --cluster create "
    . join(' ', map { '127.0.0.1:' . $_->port } @masters)
    . ' --cluster-replicas 0 --cluster-yes 2>&1';
my $create = `$cmd`;
like($create, qr/All 16384 slots covered/, 'redis-cli --cluster create');

my $ok = 0;
for (1 .. 200) {
    $ok = grep { ($_->cli('CLUSTER', 'INFO') // '') =~ /cluster_state:ok/ }
        @masters;
    last if $ok == 3;
    sleep 0.05;
}
is($ok, 3, 'the Redis Cluster is up');

my $slot = $masters[0]->cli('CLUSTER', 'KEYSLOT', '{t96}:log');
ok($slot =~ /^\d+$/, "the log's slot: $slot");

sub id_of { (split ' ', $_[0]->cli('CLUSTER', 'MYID') // '')[0] // '' }

sub node {
    my $t = EventsTest->new(workers => 2);
    my $url = $masters[0]->url;
    $t->write_config(<<"EOF");
%%GLOBALS%%
http {
    %%HTTP_GLOBALS%%

    events_zone main 8m;
    events_cluster main $url prefix=t96 timeout=8s;

    server {
        listen 127.0.0.1:%%PORT%%;

        location /events { events_api main; }
        location = /events-status { events_status main; }
    }
}
EOF
    $t->run;
    return $t;
}

sub status { $_[0]->get('/events-status')->{json}{cluster} // {} }

sub wait_list {
    my ($t, $n) = @_;
    my $ev = [];
    for (1 .. 300) {
        my $r = $t->get('/events?limit=1000');
        $ev = $r->{json}{data} // [] if $r->{status} == 200;
        last if @$ev >= $n;
        sleep 0.05;
    }
    return $ev;
}

my $na = node();
my @st = map { $na->post_json('/events', { id => "b-$_", type => 'c.b' })
    ->{status} } 1 .. 20;
is(scalar(grep { $_ == 201 } @st), 20, '20 POSTs before the migration');
is(scalar @{ wait_list($na, 20) }, 20, 'the node lists them');
is(status($na)->{asks}, 0, 'no ASK yet');

my ($src) = grep { ($_->cli('CLUSTER', 'COUNTKEYSINSLOT', $slot) // 0) > 0 }
    @masters;
ok($src, 'the master that holds the log');
my ($dst) = grep { $_ != $src } @masters;

# the slot starts to move; the log's stream and meta go first, the ids'
# keys stay

is($dst->cli('CLUSTER', 'SETSLOT', $slot, 'IMPORTING', id_of($src)), 'OK',
    'SETSLOT IMPORTING');
is($src->cli('CLUSTER', 'SETSLOT', $slot, 'MIGRATING', id_of($dst)), 'OK',
    'SETSLOT MIGRATING');
is($src->cli('MIGRATE', '127.0.0.1', $dst->port, '', 0, 5000, 'KEYS',
    '{t96}:log', '{t96}:meta'), 'OK', 'MIGRATE the stream and meta');
my $port = $dst->port;
like($src->cli('XLEN', '{t96}:log') // '',
    qr/^ASK $slot 127\.0\.0\.1:$port$/, 'the source answers ASK for them');
my $t0 = time;

# POSTs during the move, on their own
my $posts = fork // die "fork: $!";
if ($posts == 0) {
    my @s;
    for my $k (1 .. 10) {
        push @s, $na->post_json('/events', { id => "m-$k", type => 'c.m' },
            timeout => 15)->{status};
    }
    $na->write_file('during', join(' ', @s));
    POSIX::_exit(0);
}

# a node started now reads the whole log through ASK
my $nb = node();
my $listed = wait_list($nb, 20);
my $took = time - $t0;
is(scalar @$listed, 20, 'a node started mid-migration read the log (ASK)');
ok(($src->cli('CLUSTER', 'COUNTKEYSINSLOT', $slot) // 0) > 0,
    'the slot was still migrating then');
my $asks = status($nb)->{asks} // 0;
ok($asks > 0, "its status counts the ASKs it followed ($asks)");
ok($took < 6, sprintf('within the window (%.1f s)', $took));
like($nb->get('/events-status?format=prometheus')->{body} // '',
    qr/^events_cluster_asks_total(?:\{[^}]*\})? [1-9]/m, 'and Prometheus');

# the rest of the slot, then it is the other master's
for (1 .. 20) {
    my @keys = grep { length } split /\n/,
        ($src->cli('CLUSTER', 'GETKEYSINSLOT', $slot, 1000) // '');
    last unless @keys;
    $src->cli('MIGRATE', '127.0.0.1', $dst->port, '', 0, 5000, 'KEYS',
        @keys);
}
$_->cli('CLUSTER', 'SETSLOT', $slot, 'NODE', id_of($dst)) for @masters;

waitpid($posts, 0);
my @during = split ' ', ($na->read_file('during') // '');
is(scalar @during, 10, 'every POST during the migration answered');
is(scalar(grep { $_ == 201 } @during), 10, 'all 201') or diag("@during");
ok((status($na)->{asks} // 0) > 0, 'the POSTing node followed ASK too');

is($nb->post_json('/events', { id => 'after', type => 'c.m' })->{status},
    201, 'a POST after the move');
my $la = wait_list($na, 31);
my $lb = wait_list($nb, 31);
is(scalar @$la, 31, 'every event on the first node');
is_deeply([ map { $_->{id} } @$lb ], [ map { $_->{id} } @$la ],
    'one order on both');
is_deeply([ map { $_->{seq} } @$la ], [ 1 .. 31 ],
    'seqs 1..31: none lost, none twice')
    or diag(join ' ', map { $_->{seq} } @$la);

$nb->stop;
my @bad = grep { /\[(?:alert|crit|emerg)\]/ } split /\n/, $nb->error_log;
ok(!@bad, 'no alert, crit or emerg on the second node');
$na->done;
