#!/usr/bin/perl

# A graceful shutdown while a request waits for a slow disk: the disk is
# made slow on purpose (fdatasync() and pread() sleep, from a library
# preloaded into nginx, while a flag file names how long), so that the
# request certainly waits when nginx is told to quit.
#
# Without worker_shutdown_timeout the worker stays until the sync ended
# and the POST has its 201, while an SSE stream open at the same time
# ends at once, as at any shutdown.  With worker_shutdown_timeout
# shorter than the sync, the worker gives up the request when it
# expires (nginx's bound on a graceful shutdown: the client sees its
# connection closed, and the event, written before, is in the journal),
# without an alert.  A GET by id of an event only the disk has, read in
# a thread of the pool, is answered before its worker exits too.
# The history's indexer reads the journal in a thread as well: while
# its pread() stalls, the workers answer other requests at once, a page
# that needs the index waits for it, and a quit waits for the thread.
# The idempotency check of a client id older than the ring reads the
# disk before the zone's lock: while its pread() stalls, the other
# worker stores events at once, and an id the ring lost meanwhile is
# looked up again (a repeat, not a second event).

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use IO::Select;
use IO::Socket::IP;
use JSON::PP;
use Time::HiRes qw(sleep time);
use EventsTest;

my $t = EventsTest->new;

plan(skip_all => 'the sanitizer run preloads its own library')
    if $t->asan;

my $dir = $t->testdir;
my $flag = "$dir/slow-sync";

# fdatasync() sleeps for the milliseconds the file slow-sync holds, if
# any; while slow-read holds a number, preadv2() says that the page
# cache does not have the bytes (RWF_NOWAIT: a history read goes to a
# thread) and pread() sleeps that long.  Fixed paths: nginx clears its
# workers' environment.
$t->write_file('slow.c', <<"EOF");
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

static int
slow(const char *flag)
{
    FILE  *f;
    int    ms = 0;

    f = fopen(flag, "r");
    if (f == NULL) {
        return 0;
    }

    if (fscanf(f, "%d", &ms) != 1) {
        ms = 0;
    }

    fclose(f);
    return ms;
}

int
fdatasync(int fd)
{
    static int (*real)(int);

    if (real == NULL) {
        real = (int (*)(int)) dlsym(RTLD_NEXT, "fdatasync");
    }

    usleep(slow("$dir/slow-sync") * 1000);

    return real(fd);
}

/* nginx builds with _FILE_OFFSET_BITS=64: the *64 names are called */

ssize_t
preadv64v2(int fd, const struct iovec *iov, int n, off_t off, int flags)
{
    static ssize_t (*real)(int, const struct iovec *, int, off_t, int);

    if (real == NULL) {
        real = (ssize_t (*)(int, const struct iovec *, int, off_t, int))
               dlsym(RTLD_NEXT, "preadv64v2");
    }

    if ((flags & RWF_NOWAIT) && slow("$dir/slow-read")) {
        errno = EAGAIN;
        return -1;
    }

    return real(fd, iov, n, off, flags);
}

ssize_t
pread64(int fd, void *buf, size_t len, off_t off)
{
    static ssize_t (*real)(int, void *, size_t, off_t);

    if (real == NULL) {
        real = (ssize_t (*)(int, void *, size_t, off_t))
               dlsym(RTLD_NEXT, "pread64");
    }

    usleep(slow("$dir/slow-read") * 1000);

    return real(fd, buf, len, off);
}
EOF

system("cc -shared -fPIC -o $dir/slow.so $dir/slow.c -ldl 2>$dir/cc.log") == 0
    or plan(skip_all => 'cannot build the preloaded library: '
        . $t->read_file('cc.log'));

$ENV{LD_PRELOAD} = "$dir/slow.so";

sub config {
    my ($extra, $size, $listen, $server) = @_;

    $size //= '16m';
    $listen //= '';
    $server //= '';

    $t->write_config(<<"EOF");
%%GLOBALS%%
$extra
http {
    %%HTTP_GLOBALS%%

    events_zone main $size;
    events_journal main %%TESTDIR%%/journal fsync=always;

    server {
        listen 127.0.0.1:%%PORT%%$listen;
        client_max_body_size 4m;
        $server

        location = /events-status {
            events_status main;
        }

        location /events/stream {
            events_stream main;
        }

        location /events {
            events_api main;
        }
    }
}
EOF
}

mkdir "$dir/journal";
chown $t->{uid}, $t->{gid}, "$dir/journal" if defined $t->{uid};

sub connect_to {
    my $s = IO::Socket::IP->new(PeerHost => '127.0.0.1',
        PeerPort => $t->port(1), Proto => 'tcp', Timeout => 5)
        or die "connect: $@";
    return $s;
}

# Everything the peer sends until it closes, or the deadline; the time
# it closed (undef: it did not)
sub read_all {
    my ($s, $seconds) = @_;
    my ($bytes, $closed) = ('', undef);
    my $sel = IO::Select->new($s);
    my $end = time + $seconds;

    while (time < $end) {
        next unless $sel->can_read($end - time);
        my $n = sysread($s, my $buf, 65536);
        if (!$n) {
            $closed = time;
            last;
        }
        $bytes .= $buf;
    }

    return ($bytes, $closed);
}

sub post {
    my ($id) = @_;
    my $s = connect_to();
    print {$s} $t->request_bytes('POST', '/events',
        json => { id => $id, type => 't09.slow' });
    return $s;
}

sub stream {
    my $s = connect_to();
    print {$s} $t->request_bytes('GET', '/events/stream');
    my ($head) = read_some($s, 2);
    return ($s, $head);
}

sub read_some {
    my ($s, $seconds) = @_;
    my $sel = IO::Select->new($s);
    my $buf = '';
    if ($sel->can_read($seconds)) {
        sysread($s, $buf, 65536);
    }
    return $buf;
}

# the master exited (and was reaped) within $seconds
sub exited {
    my ($seconds) = @_;

    return 0 unless $t->_reap($t->master_pid, $seconds);

    $t->{pid} = undef;
    return 1;
}

sub stored {
    my ($id) = @_;
    my $r = $t->get("/events/$id");
    return $r->{status};
}

###########################################################################
# No worker_shutdown_timeout: the POST is answered, the stream ends

config('');
$t->run;

is($t->post_json('/events', { id => 'warm', type => 't09.slow' })->{status},
    201, 'a POST before the disk is slow');

my ($sse, $head) = stream();
like($head, qr{^HTTP/1.1 200.*text/event-stream}s, 'a stream is open');

$t->write_file('slow-sync', "1500\n");

my $p = post('during-quit');
sleep 0.4;                                      # it waits for the sync

my $quit = time;
kill 'QUIT', $t->master_pid;

my (undef, $sse_closed) = read_all($sse, 5);
ok(defined $sse_closed && $sse_closed - $quit < 1,
    'the stream ended at once at the quit')
    or diag(defined $sse_closed ? $sse_closed - $quit : 'not closed');

my ($answer, $closed) = read_all($p, 10);
like($answer, qr{^HTTP/1.1 201 }, 'the waiting POST answered 201');
ok(defined $closed && $closed - $quit > 0.5,
    'after the slow sync, not before')
    or diag(defined $closed ? $closed - $quit : 'not closed');

# the client closes too (else nginx's lingering close waits for it)
close $p;
close $sse;
unlink $flag;

my $answered = time;
ok(exited(3), 'nginx exits once the POST is answered')
    or diag('still there after ' . (time - $answered) . ' s');

my @left = $t->error_log =~ /(open socket .* left in connection.*)/g;
is(scalar @left, 0, 'no request left behind') or diag("@left");

$t->run;
is(stored('during-quit'), 200, 'the event answered is in the journal');

###########################################################################
# worker_shutdown_timeout shorter than the sync: it bounds the wait

$t->stop;
config('worker_shutdown_timeout 500ms;');
$t->run;

$t->write_file('slow-sync', "3000\n");

$p = post('cut-by-timeout');
sleep 0.4;

$quit = time;
kill 'QUIT', $t->master_pid;

($answer, $closed) = read_all($p, 10);
is($answer, '', 'worker_shutdown_timeout: no answer');
ok(defined $closed && $closed - $quit < 2,
    'the connection closed when worker_shutdown_timeout expired')
    or diag(defined $closed ? $closed - $quit : 'not closed');

close $p;
unlink $flag;

# the worker waits for its thread's fdatasync() before it exits
ok(exited(5), 'nginx exits after the sync in its thread');

$t->run;
is(stored('cut-by-timeout'), 200,
    'the event written before is in the journal');

###########################################################################
# A GET by id that only the disk has, read in a thread: the same

$t->stop;
config('', '1m');
$t->run;

for my $b (0 .. 19) {
    my @batch = map { { id => "old-$_", type => 't09.old',
        payload => { data => { pad => 'x' x 200 } } } }
        $b * 500 + 1 .. $b * 500 + 500;
    my $r = $t->post_json('/events', \@batch);
    die "POST: $r->{status} $r->{body}" unless $r->{status} == 201;
}

ok($t->get('/events-status')->{json}{events}{retained} < 5000,
    'the ring holds part of the 10000 events');

# the index has every event before the disk turns slow: the indexer
# reads the journal with pread() too, and a loaded box may leave it
# behind the POSTs (it would then crawl at 1.5 s a read, in the worker)
my $indexed = 0;
for (1 .. 200) {
    my $st = $t->get('/events-status')->{json};
    my $h = $st->{journal}{history};
    $indexed = $h->{ready} && $h->{indexed} >= $st->{events}{newestSeq};
    last if $indexed;
    sleep 0.1;
}
ok($indexed, 'the history index has every event');

my $before = $t->get('/events-status')->{json}{journal}{history};

$t->write_file('slow-read', "1500\n");

my $g = connect_to();
print {$g} $t->request_bytes('GET', '/events/old-1');
sleep 0.4;                                      # its thread reads

is($t->get('/events-status')->{json}{journal}{history}{threadReads},
    $before->{threadReads} + 1, 'the read is in a thread');

$quit = time;
kill 'QUIT', $t->master_pid;

($answer, $closed) = read_all($g, 10);
like($answer, qr{^HTTP/1.1 200 .*"id":"old-1"}s,
    'the read answered 200 with the event');
ok(defined $closed && $closed - $quit > 0.5,
    'after the slow read, not before')
    or diag(defined $closed ? $closed - $quit : 'not closed');

close $g;
unlink "$dir/slow-read";

$answered = time;
ok(exited(3), 'nginx exits once the read is answered')
    or diag('still there after ' . (time - $answered) . ' s');

$t->run;

###########################################################################
# The indexer reads the journal in a thread: while its pread() stalls,
# worker 0 (which runs it every 10 ms) answers other requests at once,
# a page that needs the index up to the head waits for it without
# stalling its worker, and the index catches up with the right answers.
# reuseport: each worker accepts its share of the connections, so a
# stalled worker cannot hide behind the other one.

$t->stop;
config('', '1m', ' reuseport');
$t->run;

sub indexed_all {
    my ($seconds) = @_;
    for (1 .. $seconds * 10) {
        my $st = $t->get('/events-status')->{json};
        my $h = $st->{journal}{history};
        return 1 if $h->{ready} && $h->{indexed} >= $st->{events}{newestSeq};
        sleep 0.1;
    }
    return 0;
}

ok(indexed_all(20), 'the index has every event before the disk stalls');

$before = $t->get('/events-status')->{json}{journal}{history};

$t->write_file('slow-read', "1500\n");

my $r = $t->post_json('/events', [ map { { id => "late-$_",
    type => 't09.late' } } 1 .. 3 ]);
is($r->{status}, 201, 'three events posted while reads stall');

# a page only the index answers (no cursor), that must see the three,
# and the type catalog (always the index's)
my $page = connect_to();
print {$page} $t->request_bytes('GET', '/events?types=t09.late');
my $catalog = connect_to();
print {$catalog} $t->request_bytes('GET', '/events/types');

# other requests, every 100 ms for 2 s, while the indexer's read stalls
my ($slowest, $answered_ok) = (0, 0);
my $sampled = time;
while (time - $sampled < 2) {
    my $t0 = time;
    my $st = $t->get('/events-status');
    my $took = time - $t0;
    $slowest = $took if $took > $slowest;
    $answered_ok++ if $st->{status} == 200;
    sleep 0.1;
}

ok($answered_ok >= 10, "status answered throughout ($answered_ok times)");
ok($slowest < 0.5, 'no request waited for the stalled disk')
    or diag(sprintf 'the slowest took %.2f s', $slowest);

my $late = $t->get('/events-status')->{json};
ok($late->{journal}{history}{indexed} < $late->{events}{newestSeq},
    'the index was still behind meanwhile (its thread waits for the disk)');

unlink "$dir/slow-read";

($answer) = read_all($page, 10);
like($answer, qr{^HTTP/1.1 200 }, 'the page that waited for the index: 200');
my ($body) = $answer =~ /\r\n\r\n(.*)/s;
$body =~ s/^[0-9a-f]+\r\n//mg if $answer =~ /chunked/i;
my @ids = $body =~ /"id":"(late-\d)"/g;
is("@ids", 'late-1 late-2 late-3', 'with the three events, in order');
close $page;

($answer) = read_all($catalog, 10);
like($answer, qr{^HTTP/1.1 200 .*"type":"t09\.late","count":3\b}s,
    'the catalog that waited for the index counts the three');
close $catalog;

ok(indexed_all(10), 'the index caught up');

my ($cat) = grep { $_->{type} eq 't09.late' }
    @{ $t->get('/events/types')->{json}{data} };
is($cat && $cat->{count}, 3, 'the catalog counts the three');
is(join(' ', map { $_->{id} }
    @{ $t->get('/events?types=t09.late&order=desc')->{json}{data} }),
    'late-3 late-2 late-1', 'a list from the index has them');
is($t->get('/events-status')->{json}{journal}{history}{errors},
    $before->{errors}, 'no indexing error');

# a quit while the indexer's thread reads: the worker waits for it
$t->write_file('slow-read', "1500\n");
$r = $t->post_json('/events', [ map { { id => "quit-$_",
    type => 't09.quit' } } 1 .. 2 ]);
is($r->{status}, 201, 'two more events while reads stall');
sleep 0.3;

$quit = time;
kill 'QUIT', $t->master_pid;
sleep 1;
unlink "$dir/slow-read";

ok(exited(10), 'nginx exits after the indexer\'s thread read')
    or diag('still there after ' . (time - $quit) . ' s');

$t->run;
($cat) = grep { $_->{type} eq 't09.quit' }
    @{ $t->get('/events/types')->{json}{data} };
is($cat && $cat->{count}, 2, 'after the restart the index has them');

###########################################################################
# The idempotency check of a client id older than the ring reads its
# record from disk in the worker, before the zone's lock: while that
# pread() stalls, the other worker stores events at once (before, it
# waited for the lock).  No reuseport: the stalled worker accepts
# nothing, the other one takes every new connection.  The batch also
# carries an id that another POST stores, and pushes out of the ring,
# after the stalled worker looked it up: the lock finds the ring gone
# past that lookup and it is looked up again, a repeat (200, its seq),
# not a second event.

# (bodies in memory: a body in a temporary file is read back with pread)
$t->stop;
config('', '1m', '', 'client_body_buffer_size 4m;');
$t->run;

ok(indexed_all(20), 'the index has every event, before the disk stalls');

sub ring_lost {
    my ($seq) = @_;
    my $ev = $t->get('/events-status')->{json}{events};
    return $ev->{newestSeq} - $ev->{retained} >= $seq;
}

# old-3000: not read back yet, by either worker
ok(ring_lost(3100), 'the ring no longer has old-3000');

my $twin = { id => 'twin-1', type => 't09.twin' };
my $old_body = { id => 'old-3000', type => 't09.old',
    payload => { data => { pad => 'x' x 200 } } };

$t->write_file('slow-read', "3000\n");

my $stalled = time;
my $w = connect_to();
print {$w} $t->request_bytes('POST', '/events',
    json => [ $twin, $old_body ]);
sleep 0.3;                              # it reads old-3000's record

my $t0 = time;
$r = $t->post_json('/events', $twin);
my $took = time - $t0;
is($r->{status}, 201, 'the other worker stores twin-1 meanwhile');
ok($took < 0.5, 'at once, not after the stalled check')
    or diag(sprintf 'it took %.2f s', $took);
my $twin_seq = $r->{json}{seq};

# the other worker, every POST at once, until the ring lost twin-1
my ($bulk, $bulk_slowest) = (0, 0);
while (!ring_lost($twin_seq) && $bulk < 40) {
    my @batch = map { { type => 't09.bulk',
        payload => { data => { pad => 'y' x 200 } } } } 1 .. 500;
    $t0 = time;
    $r = $t->post_json('/events', \@batch);
    $took = time - $t0;
    $bulk_slowest = $took if $took > $bulk_slowest;
    die "POST: $r->{status} $r->{body}" unless $r->{status} == 201;
    $bulk++;
}
ok(ring_lost($twin_seq), "$bulk batches pushed twin-1 out of the ring");
ok($bulk_slowest < 0.5, 'each answered at once')
    or diag(sprintf 'the slowest took %.2f s', $bulk_slowest);
ok(time - $stalled < 2.7, 'all while the check still waited for the disk')
    or diag(sprintf '%.2f s after the stalled POST', time - $stalled);

unlink "$dir/slow-read";

($answer) = read_all($w, 15);
close $w;
like($answer, qr{^HTTP/1.1 200 }, 'the stalled batch: 200, both repeats');
($body) = $answer =~ /\r\n\r\n(.*)/s;
$body =~ s/^[0-9a-f]+\r\n//mg if $answer =~ /chunked/i;
my $stalled_data = eval { JSON::PP->new->decode($body)->{data} } // [];
my %seq_of = map { $_->{id} => $_->{seq} } @$stalled_data;
is($seq_of{'twin-1'}, $twin_seq,
    'twin-1 is the event the other worker stored (looked up again)');
is($seq_of{'old-3000'}, $t->get('/events/old-3000')->{json}{seq},
    'old-3000 is its stored event');

my $twins = $t->get('/events?types=t09.twin')->{json}{data};
is(scalar @$twins, 1, 'one twin-1 event, not two');

# the semantics, with the check before the lock: another body under an
# old id is a 409, and a batch with it stores nothing
my $before_seq = $t->get('/events-status')->{json}{events}{newestSeq};
my $old2 = { id => 'old-2', type => 't09.old',
    payload => { data => { pad => 'z' x 200 } } };
$t->is_error($t->post_json('/events', $old2), 409, 'conflict', 'id',
    'another body under an old id: 409');
$t->is_error($t->post_json('/events',
    [ { id => 'fresh-1', type => 't09.fresh' }, $old2 ]), 409, 'conflict',
    '[1].id', 'a batch with it: 409');
is($t->get('/events/fresh-1')->{status}, 404, 'and nothing of it stored');
is($t->get('/events-status')->{json}{events}{newestSeq}, $before_seq,
    'no seq taken');

# one new client id posted at once on both workers: one event
my @pairs;
for my $k (1 .. 20) {
    my $ev = { id => "pair-$k", type => 't09.pair' };
    push @pairs, [ map { my $s = connect_to();
        print {$s} $t->request_bytes('POST', '/events', json => $ev); $s }
        1 .. 2 ];
}
my $pairs_ok = 0;
for my $k (1 .. 20) {
    my @got = map { my ($ans) = read_all($_, 10); close $_; $ans }
        @{ $pairs[$k - 1] };
    my @st = sort map { /^HTTP\/1.1 (\d+)/ ? $1 : 0 } @got;
    my %seqs = map { /"seq":(\d+)/ ? ($1 => 1) : () } @got;
    $pairs_ok++ if "@st" eq '200 201' && keys %seqs == 1;
}
is($pairs_ok, 20, 'a client id posted twice at once: 201 and 200, one seq');

$t->done;
