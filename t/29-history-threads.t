#!/usr/bin/perl

# History on disk, read in threads: a page or an event by id that only
# the disk has is read first in the worker from the page cache alone
# (RWF_NOWAIT), and when the cache does not have it, in nginx's thread
# pool (thread_pool=NAME, or the default pool), so that a cold disk
# stalls a thread, not the worker.  The test drops the segments from the
# page cache (sync, then dd iflag=nocache) to make the disk cold.
# Two workers, readers paging through the whole history at once while
# writers post, clients that hang up before the answer, a reload in the
# middle of it all; then thread_pool=off reads in the worker, as before.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use IO::Socket::IP;
use JSON::PP;
use POSIX ();
use Time::HiRes qw(sleep time);
use EventsTest;

sub conf {
    my ($pool) = @_;
    return <<"EOF";
%%GLOBALS%%
thread_pool reads threads=4;

http {
    %%HTTP_GLOBALS%%

    events_zone main 1m;
    events_journal main %%TESTDIR%%/journal fsync=off segment_size=1m $pool;

    server {
        listen 127.0.0.1:%%PORT%%;
        client_max_body_size 4m;

        location /events { events_api main; }
        location = /events-status { events_status main; }
    }
}
EOF
}

my $t;
my $json = JSON::PP->new->utf8->canonical;

# pages are read raw: JSON::PP would take most of the test's time
sub raw_req {
    my ($method, $url, $body) = @_;
    my $req = $t->request_bytes($method, $url,
        headers => { defined $body ? ('Content-Type' => 'application/json')
            : () }, defined $body ? (body => $body) : ());
    my $sock = IO::Socket::IP->new(PeerHost => '127.0.0.1',
        PeerPort => $t->port, Proto => 'tcp', Timeout => 10)
        or die "connect: $@";
    print {$sock} $req;
    local $/;
    my $res = <$sock> // '';
    my ($status, $head, $rest) =
        $res =~ m{^HTTP/1\.1 (\d+)[^\n]*\n(.*?)\r\n\r\n(.*)}s
        or return { status => 0, body => '' };
    $rest = EventsTest::Chunked->new->feed($rest)
        if $head =~ /^Transfer-Encoding: chunked/mi;
    return { status => $status, body => $rest };
}

sub page {
    my ($url) = @_;
    my $r = raw_req('GET', $url);
    return { status => $r->{status} } unless $r->{status} == 200;
    my @seq = $r->{body} =~ /"seq":(\d+)/g;
    my ($more) = $r->{body} =~ /"has_more":(true|false)/;
    my ($next) = $r->{body} =~ /"next":"([^"]*)"/;
    return { status => 200, seqs => \@seq, more => $more eq 'true',
        next => $next };
}

# every seq of a listing, following "next"; dies on a status not 200
sub walk {
    my ($path, $limit) = @_;
    my (@seqs, $n);
    my $sep = $path =~ /\?/ ? '&' : '?';
    my $url = "$path${sep}limit=$limit";
    for (1 .. 1000) {
        my $p = page($url);
        die "GET $url: $p->{status}\n" unless $p->{status} == 200;
        push @seqs, @{ $p->{seqs} };
        last unless $p->{more};
        $url = "$path${sep}limit=$limit&"
            . ($path =~ /order=desc/ ? 'before' : 'after') . "=$p->{next}";
    }
    return \@seqs;
}

sub post_range {
    my ($prefix, $from, $to) = @_;
    my @seqs;
    for (my $i = $from; $i <= $to; $i += 500) {
        my @b = map { { id => "$prefix-$_", type => 'doc.saved',
            resourceType => 'doc', resourceId => 'd-' . ($_ % 10),
            payload => { data => { i => $_, pad => 'x' x 80 } } } }
            $i .. ($i + 499 > $to ? $to : $i + 499);
        my $r = raw_req('POST', '/events', $json->encode(\@b));
        die "POST: $r->{status} $r->{body}" unless $r->{status} == 201;
        push @seqs, $r->{body} =~ /"seq":(\d+)/g;
    }
    return @seqs;
}

sub history { $t->get('/events-status')->{json}{journal}{history} }

# the segments out of the page cache: written back, then dropped
sub cold {
    my @segs = glob $t->testdir . '/journal/*.evj';
    system('sync', @segs) == 0 or die "sync: $?";
    system('dd', "if=$_", 'of=/dev/null', 'iflag=nocache', 'count=0',
        'status=none') for @segs;
}

###########################################################################
# bad parameters

$t = EventsTest->new;
$t->write_config(conf('thread_pool='));
my ($ok, $out) = $t->_test_config;
ok(!$ok, 'nginx -t: thread_pool= with no name is refused');
like($out, qr/\[emerg\] invalid thread_pool "thread_pool="/,
    'with a clear message');

$t->write_config(conf('thread_pool=nosuch'));
($ok, $out) = $t->_test_config;
ok(!$ok, 'nginx -t: an unknown thread pool is refused');
like($out, qr/\[emerg\] unknown thread pool "nosuch"/, 'by nginx, naming it');

###########################################################################
# thread_pool=reads

$t = EventsTest->new;
$t->write_config(conf('thread_pool=reads'));
$t->run;

my @seqs = post_range('e', 1, 10000);
ok($t->get('/events-status')->{json}{events}{retained} < 5000,
    'the ring holds part of the 10000 events');

is_deeply(walk('/events', 500), \@seqs, 'all of it, from disk and the ring');
my $h0 = history();
ok($h0->{cacheReads} >= 10,
    "just written, the disk's pages came from the page cache "
    . "($h0->{cacheReads})");
is($h0->{threadReads}, 0, 'none needed a thread');

cold();
is_deeply(walk('/events', 500), \@seqs, 'cold: all of it again');
my $h1 = history();
ok($h1->{threadReads} >= 1,
    "cold pages were read in threads ($h1->{threadReads})");
is($h1->{workerReads}, 0, 'none waited on the disk in a worker');

# the page cache's drop is advice (a page read meanwhile stays, and is
# then read from the cache): the oldest events by id, each after a drop,
# until one was cold; one thread read for it, none in the worker
my ($r, $before, $after, $tries);
for my $i (1 .. 5) {
    $tries = $i;
    $before = history();
    cold();
    $r = $t->get("/events/e-$i");
    $after = history();
    last unless $r->{status} == 200 && $r->{json}{seq} == $seqs[$i - 1];
    last if $after->{threadReads} > $before->{threadReads};
}
is($r->{status}, 200, "an old event by id, cold (try $tries)");
is($r->{json}{seq}, $seqs[$tries - 1], 'with its seq');
is($after->{threadReads}, $before->{threadReads} + 1, 'read in a thread');
is($after->{workerReads}, 0, 'not in the worker');
$t->is_error($t->get('/events/e-nothere'), 404, 'not_found', undef,
    'an unknown id, asked of the index: 404');
is_deeply(walk('/events/doc/d-3?order=desc', 100),
    [ reverse map { $seqs[$_ - 1] } grep { $_ % 10 == 3 } 1 .. 10000 ],
    'entity history, newest first, in pages');

###########################################################################
# many readers at once, writers, clients that hang up, a reload

my $dir = $t->testdir;
my @kids;

for my $k (1 .. 4) {
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        my $out = '';
        for my $round (1 .. 3) {
            cold() if $k % 2;
            my $got = eval { walk('/events', 300 + 100 * $k) };
            $out .= $got ? join(',', @{$got}[0 .. 9999]) . "\n"
                         : "error $@";
        }
        open(my $fh, '>', "$dir/reader-$k") or POSIX::_exit(1);
        print {$fh} $out;
        close $fh;
        POSIX::_exit(0);
    }
    push @kids, $pid;
}

my $getter = fork // die "fork: $!";
if ($getter == 0) {
    my $bad = 0;
    for my $n (1 .. 300) {
        my $i = 1 + int(rand(10000));
        my $g = raw_req('GET', "/events/e-$i");
        my $want = $seqs[$i - 1];
        $bad++ unless $g->{status} == 200 && $g->{body} =~ /"seq":$want\b/;
    }
    open(my $fh, '>', "$dir/getter") or POSIX::_exit(1);
    print {$fh} "$bad\n";
    close $fh;
    POSIX::_exit(0);
}
push @kids, $getter;

my $writer = fork // die "fork: $!";
if ($writer == 0) {
    post_range('w', 1, 3000);
    POSIX::_exit(0);
}
push @kids, $writer;

# clients that send a request for a page from disk and leave at once
for (1 .. 30) {
    my $sock = IO::Socket::IP->new(PeerHost => '127.0.0.1',
        PeerPort => $t->port, Proto => 'tcp') or next;
    print {$sock} $t->request_bytes('GET', '/events?limit=1000');
    close $sock;
}

sleep 0.3;
ok($t->reload, 'a reload while reads are in flight');

for my $pid (@kids) {
    waitpid($pid, 0);
    is($?, 0, "child $pid ended well");
}

for my $k (1 .. 4) {
    open(my $fh, '<', "$dir/reader-$k") or die "reader-$k: $!";
    my @rounds = <$fh>;
    close $fh;
    is_deeply([ grep { $_ ne join(',', @seqs) . "\n" } @rounds ], [],
        "reader $k: 3 walks, each saw the whole history in order");
}
open(my $fh, '<', "$dir/getter") or die "getter: $!";
is(scalar <$fh>, "0\n", '300 events by id at random, all right');
close $fh;

my $all = walk('/events', 1000);
is(scalar @$all, 13000, 'after it: the 13000 events');
my %dup;
is(scalar(grep { $dup{$_}++ } @$all), 0, 'once each');
my $h2 = history();
ok($h2->{threadReads} > $h1->{threadReads} + 1,
    "reads went on in threads ($h2->{threadReads})");
ok($h2->{cacheReads} > $h1->{cacheReads} + 100,
    "and from the page cache ($h2->{cacheReads})");

$t->stop;
unlike($t->error_log, qr/\[(?:alert|crit|emerg)\]/,
    'no alert: the old workers ended their reads, then exited');

###########################################################################
# thread_pool=off: in the worker, bounded per request, as before

$t = EventsTest->new;
$t->write_config(conf('thread_pool=off'));
$t->run;

@seqs = post_range('e', 1, 6000);
is_deeply(walk('/events', 500), \@seqs, 'thread_pool=off: all of it');
is($t->get('/events/e-1')->{json}{seq}, $seqs[0], 'the oldest by id');
my $h = history();
is($h->{threadReads}, 0, 'no read in a thread');
ok($h->{workerReads} >= 7, "all in the worker ($h->{workerReads})");

# the indexer runs in the worker too: the catalog counts each POST at once
my @stale;
for my $n (1 .. 10) {
    $t->post_json('/events', { type => 't29.fresh' });
    my ($c) = grep { $_->{type} eq 't29.fresh' }
        @{ $t->get('/events/types')->{json}{data} };
    push @stale, $n unless $c && $c->{count} == $n;
}
is("@stale", '', 'thread_pool=off: the catalog has every event at once');
my $st = $t->get('/events-status')->{json};
is($st->{journal}{history}{indexed}, $st->{events}{newestSeq},
    'thread_pool=off: the index is up to the head');

$t->done;

