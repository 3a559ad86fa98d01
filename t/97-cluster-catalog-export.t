#!/usr/bin/perl

# Reads that agree across a cluster, beyond the rings: three nodes (two
# workers each) with a tiny zone (256k: a few hundred events) on one log
# that Redis trims to max_len=2000.  GET /events/types is the catalog of
# what the log holds, per tenant, with exact counts after trimming, the
# same on every node; a list's "oldest" is the log's, the same on every
# node; an NDJSON export reads what left the ring from Redis, then the
# ring: complete and in order.  A graceful reload in the middle of a
# slow export ends it with a line that says where to resume, and the
# old worker exits within the drain's bound; a reader that takes
# nothing is cut when the bound passes.  Redis lost in the middle of an
# export ends it the same way, with the reason "cluster_unavailable".

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use JSON::PP;
use IO::Socket::IP;
use Socket qw(SOL_SOCKET SO_RCVBUF);
use Time::HiRes qw(time sleep);
use EventsTest;
use EventsTest::Redis;
use EventsTest::Cluster qw(node pages tailed finish);

plan(skip_all => 'redis-server not installed (make deps)')
    unless EventsTest::Redis->available;

my $redis = EventsTest::Redis->new;
my $url = $redis->url;
my $MAX = 2000;
my $N = 3000;
my %nd = (Accept => 'application/x-ndjson');

my @nodes = map { node($url, zone => '256k',
    cluster => "prefix=t97 timeout=2s connect_timeout=500ms max_len=$MAX",
    listen => 'sndbuf=16k', server => 'events_tenant $http_x_tenant;') }
    1 .. 3;

sub status { ($_[0]->get('/events-status')->{json} // {}) }

sub all_tailed {
    my ($n) = @_;
    for my $i (0 .. 2) {
        is(tailed($nodes[$i], $n)->{cluster}{lastSeq}, $n,
            "node $i tailed every event ($n)");
    }
}

# The events, in one order: seq k is $all[k - 1].  The default tenant's
# types change over time (boot.step only at first, so trimming takes it
# away); tenant acme has its own.
my @all;
my $cursor10;

sub post_all {
    my ($upto) = @_;
    my $b = 0;
    while (@all < $upto) {
        my (@batch, $tenant);
        $tenant = @all % 250 == 0 ? 'acme' : '';
        while (@batch < ($tenant ? 5 : 25) && @all < $upto) {
            my $k = @all + 1;
            my $type = $tenant ? 'acme.thing'
                : $k <= 100 ? 'boot.step'
                : $k % 3 ? 'order.placed'
                : $k % 5 ? 'order.paid' : 'order.shipped';
            push @all, { tenant => $tenant, type => $type, id => "e-$k" };
            push @batch, { id => "e-$k", type => $type,
                resourceType => 'order', resourceId => 'o-' . $k % 7 };
        }
        my $r = $nodes[$b++ % 3]->post_json('/events', \@batch,
            headers => $tenant ? { 'X-Tenant' => $tenant } : {});
        return 0 unless $r->{status} == 201;
        if (!$cursor10 && @all >= 10) {
            # a cursor into what Redis will trim, taken while it is there
            sleep 0.3;
            $cursor10 = $nodes[0]->get('/events?limit=3')->{json}{next};
        }
    }
    return 1;
}

ok(post_all($N), "$N events posted in batches over three nodes, all 201");
all_tailed($N);

for my $i (0 .. 2) {
    cmp_ok(status($nodes[$i])->{events}{oldestSeq}, '>', 2000,
        "node $i: its ring has wrapped, it holds only the newest");
}

# the last seq Redis trimmed: the one before the stream's first entry
sub gone {
    my ($seq) = ($redis->cli('XRANGE', '{t97}:log', '-', '+', 'COUNT', 1)
        // '') =~ /^\d+-(\d+)$/m;
    return $seq - 1;
}
my $gone = gone();
cmp_ok($gone, '>=', $N - $MAX - $MAX / 100, "Redis trimmed to max_len "
    . "(the last seq trimmed: $gone)");
is($redis->cli('XLEN', '{t97}:log'), $N - $gone,
    'the stream holds exactly the events after it');

# what every node must say, from what was posted and what Redis keeps
sub expected_catalog {
    my ($tenant, $gone, $times) = @_;
    my %c;
    for my $k ($gone + 1 .. scalar @all) {
        my $e = $all[$k - 1];
        next unless $e->{tenant} eq $tenant;
        $c{$e->{type}}{count}++;
        $c{$e->{type}}{lastTimestamp} = $times->{$e->{id}};
    }
    return [ map { { type => $_, %{ $c{$_} } } } sort keys %c ];
}

sub check_catalogs {
    my ($what) = @_;
    my $gone = gone();
    for my $tenant ('', 'acme') {
        my %h = $tenant ? ('X-Tenant' => $tenant) : ();
        my ($list) = pages($nodes[1], '/events', limit => 500,
            headers => \%h);
        my %times = map { $_->{id} => $_->{timestamp} } @$list;
        my $want = expected_catalog($tenant, $gone, \%times);
        my $name = $tenant || 'the default tenant';
        for my $i (0 .. 2) {
            my $r = $nodes[$i]->get('/events/types', headers => \%h);
            is($r->{status}, 200, "$what, node $i, $name: 200");
            is_deeply($r->{json}{data}, $want,
                "$what, node $i, $name: the catalog of what Redis keeps, "
                . 'exact counts and last times')
                or diag(explain($r->{json}{data}));
        }
    }
}

check_catalogs('after trimming');
ok(!grep({ $_->{type} eq 'boot.step' }
        @{ $nodes[0]->get('/events/types')->{json}{data} }),
    'boot.step (seqs 1..100, all trimmed) is not in the catalog');
is($nodes[2]->get('/events/types', headers => { 'X-Tenant' => 'nobody' })
    ->{body}, '{"data":[]}', 'a tenant with no event: an empty catalog');

# "oldest" is the log's on every node, and reading after it is all
my @keep = grep { $all[$_ - 1]{tenant} eq '' } $gone + 1 .. $N;
my @oldest;
for my $i (0 .. 2) {
    push @oldest, $nodes[$i]->get('/events?limit=1')->{json}{oldest};
    is($nodes[$i]->get('/events?order=desc&limit=1')->{json}{oldest},
        $oldest[-1], "node $i: the same oldest in both orders");
}
is(scalar(keys %{ { map { $_ => 1 } @oldest } }), 1,
    'oldest: the same on every node');
for my $i (0 .. 2) {
    my ($got) = pages($nodes[$i], '/events', limit => 500,
        after => $oldest[$i]);
    is_deeply([ map { $_->{seq} } @$got ], \@keep,
        "node $i: after=oldest lists every event Redis keeps, "
        . 'from Redis then the ring');
}

# a cursor from before the trim: 410 with that same oldest
for my $i (0 .. 2) {
    my $r = $nodes[$i]->get("/events?after=$cursor10");
    is($r->{status}, 410, "node $i: a trimmed cursor: 410");
    is_deeply($r->{json}, { error => { status => 410,
        code => 'cursor_expired', param => 'after',
        message => 'the events after this cursor have left the store; '
            . 'read again from "oldest"',
        oldest => $oldest[0], head => $r->{json}{error}{head} } },
        "node $i: its exact body, with the log's oldest");
}

# the catalog's bad input
for my $q ('x=1', 'limit=5') {
    my $r = $nodes[0]->get("/events/types?$q");
    is("$r->{status} $r->{body}", '400 {"error":{"status":400,'
        . '"code":"invalid_parameter","message":"the catalog takes no '
        . 'parameters"}}', "types?$q: 400, exact body");
}

###########################################################################
# NDJSON export: Redis, then the ring

sub lines { map { decode_json($_) } split /\n/, $_[0]{body} }

for my $i (0 .. 2) {
    my $r = $nodes[$i]->get('/events', headers => \%nd);
    is($r->{status}, 200, "node $i: export 200");
    ok($r->{chunked} && !$r->{error}, "node $i: a whole chunked body");
    my @l = lines($r);
    is_deeply([ map { $_->{seq} } @l ], \@keep,
        "node $i: the export has every event Redis keeps, in order");
    is_deeply([ map { $_->{id} } @l ], [ map { "e-$_" } @keep ],
        "node $i: their ids");
}

my @paid = grep { $all[$_ - 1]{type} eq 'order.paid' } @keep;
is_deeply([ map { $_->{seq} } lines($nodes[1]->get('/events?types=order.paid',
        headers => \%nd)) ], \@paid,
    'export, types=order.paid: filtered in Redis and in the ring');
my @acme = grep { $all[$_ - 1]{tenant} eq 'acme' } $gone + 1 .. $N;
is_deeply([ map { $_->{seq} } lines($nodes[2]->get('/events',
        headers => { %nd, 'X-Tenant' => 'acme' })) ], \@acme,
    'export, tenant acme: its events only');

my $mid = $nodes[0]->get("/events?after=$oldest[0]&limit=300")->{json}{next};
my @after_mid = @keep[300 .. $#keep];
is_deeply([ map { $_->{seq} } lines($nodes[2]->get("/events?after=$mid",
        headers => \%nd)) ], \@after_mid,
    'export after a cursor in what only Redis holds: the rest');

my $r = $nodes[1]->get("/events?after=$cursor10", headers => \%nd);
is($r->{status}, 410, 'export after a trimmed cursor: 410');
is($r->{json}{error}{code}, 'cursor_expired', 'cursor_expired');
is($r->{json}{error}{oldest}, $oldest[0], 'with the log\'s oldest');
$r = $nodes[1]->get('/events?limit=5', headers => \%nd);
is("$r->{status} $r->{body}", '400 {"error":{"status":400,'
    . '"code":"invalid_parameter","message":"an NDJSON export has every '
    . 'matching event, oldest first, without pages: drop \"limit\", '
    . '\"order\" and \"before\"","param":"limit"}}',
    'export with limit: 400, exact body');

###########################################################################
# More events trim more: the catalogs follow, every node alike

ok(post_all($N + 600), '600 more events');
all_tailed($N + 600);
$N += 600;
cmp_ok(gone(), '>', $gone, 'Redis trimmed further');
check_catalogs('after more trimming');
$gone = gone();
@keep = grep { $all[$_ - 1]{tenant} eq '' } $gone + 1 .. $N;

###########################################################################
# A graceful reload during a slow export

sub slow_export {
    my ($t) = @_;
    my $sock = IO::Socket::IP->new(PeerHost => '127.0.0.1',
        PeerPort => $t->port, Proto => 'tcp') or die "connect: $@";
    setsockopt($sock, SOL_SOCKET, SO_RCVBUF, 16384);
    print $sock "GET /events HTTP/1.1\r\nHost: x\r\nAccept: "
        . "application/x-ndjson\r\nConnection: close\r\n\r\n";
    my $raw = '';
    sysread($sock, $raw, 2048);
    return ($sock, $raw);
}

sub drain {
    my ($sock, $raw, $limit) = @_;
    # a reader that reads again, at full speed
    setsockopt($sock, SOL_SOCKET, SO_RCVBUF, 1 << 20);
    $sock->blocking(0);
    my $start = time;
    while (time - $start < $limit) {
        my $n = sysread($sock, my $buf, 65536);
        last if defined $n && $n == 0;
        if (defined $n) { $raw .= $buf } else { sleep 0.01 }
    }
    return $raw;
}

sub dechunk {
    my ($raw) = @_;
    my ($head, $body) = split /\r\n\r\n/, $raw, 2;
    my ($plain, $ended) = ('', 0);
    while ($body =~ /\G([0-9a-fA-F]+)\r\n/gc) {
        my $len = hex $1;
        if ($len == 0) { $ended = 1; last }
        last if length($body) < pos($body) + $len + 2;
        $plain .= substr($body, pos($body), $len);
        pos($body) += $len + 2;
    }
    return ($head, $plain, $ended);
}

sub gone_within {
    my ($t, $old, $limit) = @_;
    my $start = time;
    while (time - $start < $limit) {
        my %now = map { $_ => 1 } $t->worker_pids;
        return time - $start unless grep { $now{$_} } @$old;
        sleep 0.05;
    }
    return undef;
}

my $t = $nodes[0];

# a reader that reads on after the reload: the resume line, a clean end
my @old = $t->worker_pids;
my ($sock, $raw) = slow_export($t);
sleep 1;                                # nginx's buffers fill, it waits
kill 'HUP', $t->master_pid;
sleep 0.5;
$raw = drain($sock, $raw, 10);
close $sock;
my $took = gone_within($t, \@old, 10);
ok(defined $took, 'the old workers exit after the reload'
    . (defined $took ? sprintf(' (%.1f s after the body)', $took) : ''));
my ($head, $plain, $ended) = dechunk($raw);
like($head, qr{^HTTP/1\.1 200 }, 'the slow export: 200');
ok($ended, 'its chunked body ends properly');
my @l = split /\n/, $plain;
my $last = decode_json(pop @l);
is_deeply([ sort keys %$last ], [ 'has_more', 'next' ],
    'the last line says where to resume') or diag(explain($last));
ok($last->{has_more}, 'has_more: true');
my @first = map { decode_json($_)->{seq} } @l;
cmp_ok(scalar @first, '<', scalar @keep, 'it ended early ('
    . scalar(@first) . ' events)');
is_deeply(\@first, [ @keep[0 .. $#first] ], 'what came, in order');

my @rest = map { $_->{seq} } lines($t->get("/events?after=$last->{next}",
    headers => \%nd));
is_deeply([ @first, @rest ], \@keep,
    'resumed at "next" on the new workers: the rest, no gap, no repeat');

# a reader that reads nothing: cut at the bound, the old worker goes
@old = $t->worker_pids;
($sock, $raw) = slow_export($t);
sleep 1;
my $hup = time;
kill 'HUP', $t->master_pid;
$took = gone_within($t, \@old, 15);
ok(defined $took && $took < 9, 'a reader that takes nothing: the old '
    . 'workers exit within the drain bound of 5 s'
    . (defined $took ? sprintf(' (%.1f s)', $took) : ''));
$raw = drain($sock, $raw, 3);
close $sock;
($head, $plain, $ended) = dechunk($raw);
ok(!$ended, 'and its body is cut, not ended (truncated)');
$t->expect_log(qr/export cut at shutdown/);
like($t->error_log, qr/export cut at shutdown after \d+ events, the reader /,
    'the cut is logged');
like($t->error_log, qr/export ends at shutdown after \d+ events, to resume /,
    'the resumable end too');

###########################################################################
# Redis down: the catalog cannot be answered

$redis->stop;
$r = $nodes[1]->get('/events/types');
$nodes[1]->is_error($r, 503, 'cluster_unavailable', undef,
    'Redis down: the catalog is 503');
is($r->{headers}{'retry-after'}, '1', 'with Retry-After: 1');
$r = $nodes[2]->get('/events', headers => \%nd);
is("$r->{status} $r->{body}", '503 {"error":{"status":503,'
    . '"code":"cluster_unavailable","message":"what this node\'s ring no '
    . 'longer holds is read from the cluster\'s log, which cannot be '
    . 'reached"}}', 'Redis down: an export that needs it is 503 before '
    . 'anything is sent, exact body');
is($r->{headers}{'retry-after'}, '1', 'with Retry-After: 1');
my $head_cur = $nodes[2]->get('/events?order=desc&limit=2')->{json}{next};
$r = $nodes[2]->get("/events?after=$head_cur", headers => \%nd);
is($r->{status}, 200, 'an export the ring can answer goes on: 200');
is_deeply([ map { $_->{seq} } lines($r) ], [ $keep[-1] ],
    'with its events');
$redis->start;

###########################################################################
# Redis lost in the middle of an export: the body ends properly with a
# line that says why and where to resume; resumed once Redis is back,
# the rest, with no gap and no repeat

sub reads_log {
    my ($node) = @_;
    my $deadline = time + 20;
    while (time < $deadline) {
        return 1 if $node->get('/events/types')->{status} == 200;
        sleep 0.2;
    }
    return 0;
}

my $n1 = $nodes[1];
ok(reads_log($n1), 'Redis back: node 1 reads the log again');
($sock, $raw) = slow_export($n1);
sleep 1;                # it waits for the reader, in what only Redis holds
$redis->stop;
$raw = drain($sock, $raw, 15);
close $sock;
($head, $plain, $ended) = dechunk($raw);
like($head, qr{^HTTP/1\.1 200 }, 'Redis lost under an export: 200');
ok($ended, 'its chunked body ends properly, not cut');
@l = split /\n/, $plain;
$last = decode_json(pop(@l) // 'null');
is_deeply([ sort keys %{ $last // {} } ], [ 'has_more', 'next', 'reason' ],
    'the last line: has_more, next and a reason') or diag(explain($last));
is($last->{reason}, 'cluster_unavailable', 'reason: cluster_unavailable');
@first = map { decode_json($_)->{seq} } @l;
cmp_ok(scalar @first, '<', scalar @keep, 'it ended early ('
    . scalar(@first) . ' events)');
is_deeply(\@first, [ @keep[0 .. $#first] ], 'what came, in order');
my $logged = qr/\[info\].*events: export ends early after \d+ /
    . qr/events, the cluster's log cannot be read, to resume after seq /
    . qr/\d+ \("cluster_unavailable"\)/;
like($n1->error_log, qr/$logged/, 'logged, with the reason');

$redis->start;
ok(reads_log($n1), 'Redis back again');

# as a client does: from "next" on, following another resume line (the
# node's connection for reads may still be coming back: a 503, or an
# export that ends early again) until one ends without it
@rest = ();
my ($after, @early) = ($last->{next});
for (1 .. 50) {
    $r = $n1->get("/events?after=$after", headers => \%nd);
    if ($r->{status} == 503) {
        sleep 0.2;
        next;
    }
    last unless $r->{status} == 200;
    my @ls = lines($r);
    if (@ls && !defined $ls[-1]{seq} && $ls[-1]{has_more}) {
        my $stop = pop @ls;
        push @rest, map { $_->{seq} } @ls;
        push @early, $stop->{reason} // 'none';
        $after = $stop->{next};
        sleep 0.2;
        next;
    }
    push @rest, map { $_->{seq} } @ls;
    last;
}
is($r->{status}, 200, 'resumed at "next": 200 in the end')
    or diag("early ends: @early");
is_deeply([ @first, @rest ], \@keep,
    'resumed at "next": the rest, no gap, no repeat')
    or diag("early ends: @early");
is(scalar(grep { $_ ne 'cluster_unavailable' } @early), 0,
    'an early end while resuming can only be Redis not read yet')
    or diag("early ends: @early");

finish(@nodes[1, 2], $t);
