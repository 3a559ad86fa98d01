#!/usr/bin/perl

# events_cluster follows ASK redirects of a real Redis Cluster.  The
# log's slot is set MIGRATING on its master and IMPORTING on another,
# and the log's stream and meta keys are MIGRATEd: from then on the
# source answers ASK for them (checked here with redis-cli), and the
# module sends ASKING and the command to the importing node, once,
# without changing where its connections go.  A node started in that
# window reads the whole log through ASK, and a page older than a
# node's ring is read from Redis through ASK; POSTs meanwhile (a script
# whose keys are split is TRYAGAIN on both sides) are retried until the
# slot's move ends, and are all 201, one order on every node.
#
# First, on a plain Redis: concurrent POSTs reaching a worker together
# go in one append script (Redis's commandstats count the runs), each
# still answered for itself: 201, 200 for a repeat, 409 for a conflict,
# in the same script.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use Time::HiRes qw(sleep time);
use POSIX ();
use IO::Socket::INET;
use IO::Select;
use JSON::PP;
use EventsTest;
use EventsTest::Redis;
use EventsTest::Cluster qw(node readable status_until cluster_status
    stop_ok redis_cluster id_of);

plan(skip_all => 'redis-server not installed (make deps)')
    unless EventsTest::Redis->available;

# ---------------------------------------------------------------------
# folding: the POSTs of a turn, one script

sub script_calls {
    my ($redis) = @_;
    my $n = 0;
    for (split /\r?\n/, $redis->cli('INFO', 'commandstats') // '') {
        $n += $1 if /^cmdstat_eval(?:sha)?:calls=(\d+)/;
    }
    return $n;
}

# write every request on its own connection, then read every answer
sub together {
    my ($t, @bodies) = @_;
    my $port = $t->port;
    my @socks = map {
        IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port", Blocking => 1)
            // die "connect: $!"
    } @bodies;
    my @req = map {
        my $b = JSON::PP->new->canonical->encode($_);
        "POST /events HTTP/1.1\r\nHost: 127.0.0.1:$port\r\n"
        . "Connection: close\r\nContent-Type: application/json\r\n"
        . 'Content-Length: ' . length($b) . "\r\n\r\n$b"
    } @bodies;
    syswrite($socks[$_], $req[$_]) for 0 .. $#socks;
    my @out;
    for my $s (@socks) {
        my $buf = '';
        my $sel = IO::Select->new($s);
        my $deadline = time + 10;
        while (time < $deadline && $sel->can_read(1)) {
            my $n = sysread($s, $buf, 65536, length $buf);
            last unless $n;
        }
        my ($status) = $buf =~ m{^HTTP/1\.1 (\d+)};
        my ($body) = $buf =~ /\r\n\r\n(.*)\z/s;
        my $json = eval { decode_json($body // '') };
        push @out, { status => $status // 0, json => $json };
    }
    return @out;
}

{
    my $redis = EventsTest::Redis->new;
    my $t = node($redis->url, zone => '8m', cluster => 'prefix=t96f');
    readable($t);

    # the script is loaded; the ids "dup" and "taken" exist
    is($t->post_json('/events', { id => 'taken', type => 'f.a',
        payload => { data => { v => 1 } } })->{status}, 201, 'a first POST');

    my $before = script_calls($redis);
    my $st0 = $t->get('/events-status')->{json}{cluster};

    my @bodies = map { { type => 'f.x', resourceId => "r-$_" } } 1 .. 12;
    push @bodies, { id => 'dup', type => 'f.d', payload => { data => { v => 1 } } };
    push @bodies, { id => 'dup', type => 'f.d', payload => { data => { v => 1 } } };
    push @bodies, { id => 'taken', type => 'f.a', payload => { data => { v => 2 } } };
    push @bodies, [ { id => 'b-ok', type => 'f.b' },
                    { id => 'taken', type => 'f.a', payload => { data => { v => 3 } } } ];
    my @r = together($t, @bodies);

    my $calls = script_calls($redis) - $before;
    my $st = $t->get('/events-status')->{json}{cluster};

    is(scalar(grep { $_->{status} == 201 } @r[0 .. 11]), 12,
        'twelve new events: 201');
    is(join(' ', sort map { $_->{status} } @r[12, 13]), '200 201',
        'one id posted twice at once: 201 and 200');
    is($r[12]{json}{seq} // -1,
        $r[13]{json}{seq} // -2,
        'with the same seq');
    is($r[14]{status}, 409, 'an id with another body: 409');
    is($r[15]{status}, 409, 'a batch with such an id: 409');
    is($r[15]{json}{error}{field} // '',
        '[1].id', 'naming its item') or diag(explain $r[15]{json});

    is($st->{appendPosts} - $st0->{appendPosts}, 16,
        'sixteen POSTs went to Redis');
    is($st->{appendScripts} - $st0->{appendScripts}, $calls,
        'in as many scripts as Redis ran');
    ok($calls < 16, "fewer scripts than POSTs ($calls for 16)");

    my $list = [];
    for (1 .. 100) {
        $list = $t->get('/events?limit=100')->{json}{data} // [];
        last if @$list >= 14;
        sleep 0.05;
    }
    is(scalar @$list, 14, 'fourteen events stored: nothing of the 409s');
    is_deeply([ map { $_->{seq} } @$list ], [ 1 .. 14 ], 'seqs 1..14');
    ok(!grep({ $_->{id} eq 'b-ok' } @$list),
        'the refused batch left nothing');

    stop_ok($t, 'no alert, crit or emerg');
    $redis->stop;
}

# ---------------------------------------------------------------------
# ASK

my @masters = redis_cluster(3);

my $slot = $masters[0]->cli('CLUSTER', 'KEYSLOT', '{t96}:log');
ok($slot =~ /^\d+$/, "the log's slot: $slot");

sub ask_node {
    return node($masters[0]->url, zone => '256k',
        cluster => 'prefix=t96 timeout=8s');
}

# more events than the node's ring holds
my $N = 1500;
my $na = ask_node();
my $bad = 0;
for my $b (0 .. $N / 100 - 1) {
    my @batch = map { { id => 'b-' . ($b * 100 + $_), type => 'c.b',
        payload => { data => { pad => 'x' x 100 } } } } 1 .. 100;
    $bad++ unless $na->post_json('/events', \@batch)->{status} == 201;
}
is($bad, 0, "$N events before the migration");

# tailed, and ready to read
sub tailed_ready {
    my ($t, $n) = @_;
    return status_until($t, sub { ($_[0]{cluster}{lastSeq} // 0) >= $n
        && $t->get('/events?limit=1')->{status} == 200 }, 300);
}

my $s = tailed_ready($na, $N);
is($s->{cluster}{lastSeq}, $N, 'the node tailed them');
cmp_ok($s->{events}{oldestSeq}, '>', 1, 'its ring holds only the newest');
is($s->{cluster}{asks}, 0, 'no ASK yet');

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

# a page older than the ring: from Redis, through ASK
my $page = $na->get('/events?limit=5');
is($page->{status}, 200, 'a page older than the ring, mid-migration');
is(join(' ', map { $_->{seq} } @{ $page->{json}{data} // [] }),
    '1 2 3 4 5', 'read from Redis (ASK)');

# a node started now reads the whole log through ASK
my $nb = ask_node();
my $sb = tailed_ready($nb, $N);
my $took = time - $t0;
is($sb->{cluster}{lastSeq}, $N,
    'a node started mid-migration read the log (ASK)');
ok(($src->cli('CLUSTER', 'COUNTKEYSINSLOT', $slot) // 0) > 0,
    'the slot was still migrating then');
my $asks = cluster_status($nb)->{asks} // 0;
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
ok((cluster_status($na)->{asks} // 0) > 0,
    'the POSTing node followed ASK too');

is($nb->post_json('/events', { id => 'after', type => 'c.m' })->{status},
    201, 'a POST after the move');
my $total = $N + 11;
tailed_ready($_, $total) for $na, $nb;
my $la = $na->get('/events?order=desc&limit=50')->{json}{data} // [];
my $lb = $nb->get('/events?order=desc&limit=50')->{json}{data} // [];
is(scalar @$la, 50, 'the newest on the first node');
is_deeply([ map { $_->{id} } @$lb ], [ map { $_->{id} } @$la ],
    'one order on both');
is_deeply([ map { $_->{seq} } @$la ], [ reverse $total - 49 .. $total ],
    "seqs up to $total: none lost, none twice")
    or diag(join ' ', map { $_->{seq} } @$la);
my %have = map { $_->{id} => 1 } @$la;
is(scalar(grep { $have{"m-$_"} } 1 .. 10), 10,
    'the POSTs made during the migration are there');

stop_ok($nb, 'no alert, crit or emerg on the second node');
$na->done;
