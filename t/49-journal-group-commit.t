#!/usr/bin/perl

# fsync=always as one group commit for the zone, across 2 workers: one
# client alone gets one fdatasync() per event (none skipped); concurrent
# clients on both workers share them, several events to a sync; the status
# counts them (JSON and Prometheus agree); kill -9 of the workers and
# the master right after their 201s loses none of them; a worker killed
# while the others wait does not leave them waiting.
#
# Then with fdatasync() wrapped by a preloaded library that logs what
# each call covered (the file's size when it began) and when it returned,
# made slow so that writes land during it: every 201 came after a
# successful fdatasync() that covered its record, on both workers (the
# sync thread chains syncs and rings the workers itself).  And with
# fdatasync() made to fail: every waiting POST, on both workers, is
# answered 503 journal_unavailable with its message, the events are
# stored (a retry is 200), and writes are synced again once the disk is
# back.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use POSIX qw(_exit);
use Time::HiRes qw(sleep time);
use EventsTest;

my $t = EventsTest->new(workers => 2);

$t->write_config(<<'EOF');
%%GLOBALS%%
http {
    %%HTTP_GLOBALS%%

    events_zone main 8m;
    events_journal main %%TESTDIR%%/journal fsync=always;

    server {
        listen 127.0.0.1:%%PORT%%;

        location /events { events_api main; }
        location = /events-status { events_status main; }
    }
}
EOF

# a worker killed on purpose: its master says so
$t->expect_log(qr/\[alert\].*worker process \d+ exited on signal 9/);
# and a disk made to fail on purpose
$t->expect_log(qr/\[crit\].*fdatasync\(\) of the journal failed/);

$t->run;

sub journal { $t->get('/events-status')->{json}{journal} }

sub all_events {
    my ($path, @all) = ('/events?limit=1000');
    for (1 .. 100) {
        my $j = $t->get($path)->{json};
        push @all, @{ $j->{data} };
        last unless $j->{has_more};
        $path = "/events?limit=1000&after=$j->{next}";
    }
    return @all;
}

# N clients, each posting until COUNT events or the deadline
sub load {
    my (%o) = @_;
    my $deadline = time + ($o{seconds} // 20);
    return $t->parallel(n => $o{clients}, timeout => 40, code => sub {
        my ($i) = @_;
        my (@ok, $failed, $slow);
        for my $n (1 .. $o{count}) {
            last if time > $deadline;
            my $t0 = time;
            my $r = $t->post_json('/events', { type => 'gc.tick',
                id => "$o{tag}-$i-$n", payload => { data => { n => $n } } },
                timeout => 5);
            $slow++ if ($r->{error} // '') eq 'timeout';
            unless ($r->{status}) {
                last if $o{until_gone};
                $failed++;
                next;
            }
            if ($r->{status} == 201) {
                push @ok, [ "$o{tag}-$i-$n", $r->{json}{seq} ];
            } else {
                $failed++;
            }
        }
        return { ok => \@ok, failed => $failed // 0, slow => $slow // 0 };
    });
}

###########################################################################
# one client: each event waits for a sync of its own, none is skipped

my $j0 = journal();
is($j0->{fsync}, 'always', 'fsync=always');
my $seq0 = $t->get('/events-status')->{json}{events}{newestSeq} // 0;

my $n1 = 30;
my $ok1 = 0;
for my $n (1 .. $n1) {
    my $r = $t->post_json('/events', { type => 'gc.one',
        payload => { data => { n => $n } } });
    $ok1++ if $r->{status} == 201;
}
is($ok1, $n1, "$n1 sequential events answered 201");

my $j1 = journal();
is($j1->{fsyncs} - $j0->{fsyncs}, $n1,
    'one client: one fdatasync per event, none skipped, none shared');
ok(defined $j1->{lastFsyncAgeMs} && $j1->{lastFsyncAgeMs} < 5000,
    "status: last fsync $j1->{lastFsyncAgeMs} ms ago");
is($j1->{errors}, 0, 'status: no errors');
ok(!$j1->{unsynced}, 'status: not unsynced');

###########################################################################
# 16 clients over both workers share the syncs

my $clients = 16;
my $per = 40;
my $before = $t->get('/events-status')->{json};

my @got = load(clients => $clients, count => $per, tag => 'g');
my @ok = map { @{ $_->{ok} // [] } } grep { defined } @got;
my $failed = 0;
$failed += $_->{failed} for grep { defined } @got;
is(scalar @ok, $clients * $per, "$clients clients x $per events: all 201");
is($failed, 0, 'none failed');

my $after = $t->get('/events-status')->{json};
my %pids = map { $_->{pid} => 1 } grep { $_->{published} }
    @{ $after->{workers} };
ok(keys %pids == 2, 'both workers wrote')
    or diag explain $after->{workers};

my $events = $after->{events}{newestSeq} - $before->{events}{newestSeq};
my $fsyncs = $after->{journal}{fsyncs} - $before->{journal}{fsyncs};
my $ratio = $fsyncs ? $events / $fsyncs : 0;
ok($fsyncs > 0, "$fsyncs fsyncs for $events events");

# without sharing it would be 1; with at most two syncs in flight for
# the zone, each covering all that any worker wrote before it, 3-4 here
# (Perl clients, a connection per request; wrk's 16 connections get 5)
cmp_ok($ratio, '>=', 2,
    sprintf('group commit: %.1f events per fdatasync (>= 2)', $ratio));

# the Prometheus counter is the same counter
my $text = $t->get('/events-status?format=prometheus')->{body};
my ($prom) = $text =~ /^events_journal_fsyncs_total\{zone="main"\} (\d+)$/m;
my $now = journal()->{fsyncs};
is($prom, $now, "prometheus: events_journal_fsyncs_total $now");

###########################################################################
# kill -9 of the workers and the master right after their 201s

my $master = $t->master_pid;
my @procs = ($master, $t->worker_pids);

my $killer = fork // die "fork: $!";
unless ($killer) {
    sleep 1.5;
    kill 'KILL', @procs;
    _exit(0);
}

@got = load(clients => $clients, count => 1000, seconds => 10, tag => 'k',
            until_gone => 1);
waitpid($killer, 0);

my %acked = map { $_->[0] => $_->[1] } map { @{ $_->{ok} // [] } }
    grep { defined } @got;
ok(keys %acked > 20, scalar(keys %acked) . ' events got a 201 before the kill');

$t->stop;
$t->run;

my %have = map { $_->{id} => $_->{seq} } all_events();
my @lost = grep { !exists $have{$_} } sort keys %acked;
is(scalar @lost, 0, 'every event that got a 201 is there after the restart')
    or diag "lost: @lost[0 .. ($#lost > 9 ? 9 : $#lost)]";
my @moved = grep { exists $have{$_} && $have{$_} != $acked{$_} } keys %acked;
is(scalar @moved, 0, 'each with the seq it was given');
ok(exists $have{$_}, "$_ before the kill is there")
    for map { "g-$_-$per" } 0, $clients - 1;

###########################################################################
# one worker killed under load: the other's requests are all answered,
# whoever had the sync under way (its death is found by its pid)

my ($victim) = $t->worker_pids;

$killer = fork // die "fork: $!";
unless ($killer) {
    sleep 0.5;
    kill 'KILL', $victim;
    _exit(0);
}

my $t0 = time;
@got = load(clients => 8, count => 150, seconds => 4, tag => 'w');
waitpid($killer, 0);

my $slow = 0;
$slow += $_->{slow} for grep { defined } @got;
is($slow, 0, 'no request waited 5 s for its answer after a worker died');
ok(time - $t0 < 30, 'the clients finished');

my %wacked = map { $_->[0] => $_->[1] } map { @{ $_->{ok} // [] } }
    grep { defined } @got;
ok(keys %wacked > 20, scalar(keys %wacked) . ' events got a 201');

my $r = $t->post_json('/events', { type => 'gc.after' });
is($r->{status}, 201, 'writes go on');

$t->stop;
$t->run;

%have = map { $_->{id} => $_->{seq} } all_events();
@lost = grep { !exists $have{$_} } sort keys %wacked;
is(scalar @lost, 0, 'and every one of them is there after a restart');

###########################################################################
# every 201 after a successful fdatasync() that covered its record

SKIP: {
skip 'the sanitizer run preloads its own library', 17 if $t->asan;

my $dir = $t->testdir;

# slow-sync: milliseconds each fdatasync() sleeps first; fail-sync: it
# fails with EIO instead of syncing.  Each call appends "inode size-at-
# start seconds.microseconds-at-return result" to syncs.log.  Fixed
# paths: nginx clears its workers' environment.
$t->write_file('sync.c', <<"EOF");
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

int
fdatasync(int fd)
{
    static int (*real)(int);
    struct stat     st;
    struct timeval  tv;
    FILE           *f;
    char            line[128];
    int             ms, rc, log, len;

    if (real == NULL) {
        real = (int (*)(int)) dlsym(RTLD_NEXT, "fdatasync");
    }

    if (fstat(fd, &st) == -1) {
        st.st_ino = 0;
        st.st_size = -1;
    }

    ms = 0;
    f = fopen("$dir/slow-sync", "r");
    if (f != NULL) {
        if (fscanf(f, "%d", &ms) != 1) {
            ms = 0;
        }
        fclose(f);
    }

    usleep(ms * 1000);

    if (access("$dir/fail-sync", F_OK) == 0) {
        rc = -1;

    } else {
        rc = real(fd);
    }

    gettimeofday(&tv, NULL);

    len = snprintf(line, sizeof(line), "%lu %lld %ld.%06ld %d\\n",
                   (unsigned long) st.st_ino, (long long) st.st_size,
                   (long) tv.tv_sec, (long) tv.tv_usec, rc);

    log = open("$dir/syncs.log", O_WRONLY|O_APPEND|O_CREAT, 0644);
    if (log != -1) {
        (void) write(log, line, len);
        close(log);
    }

    if (rc == -1) {
        errno = EIO;
    }

    return rc;
}
EOF

system("cc -shared -fPIC -o $dir/sync.so $dir/sync.c -ldl 2>$dir/cc.log")
    == 0 or skip 'cannot build the preloaded library: '
        . $t->read_file('cc.log'), 17;

# written by the workers' user
$t->write_file('syncs.log', '');
chmod 0666, "$dir/syncs.log";

$t->stop;
local $ENV{LD_PRELOAD} = "$dir/sync.so";
$t->run;

# a restart begins a new segment at its first write: that one is ours
$r = $t->post_json('/events', { type => 'gc.first' });
is($r->{status}, 201, 'preloaded: a write');
my ($segment) = sort { -M $a <=> -M $b } glob "$dir/journal/*.evj";
my $inode = (stat $segment)[1];

$t->write_file('slow-sync', "40\n");

my $before_w = $t->get('/events-status')->{json};
@got = $t->parallel(n => 8, timeout => 60, code => sub {
    my ($i) = @_;
    my @ok;
    for my $n (1 .. 8) {
        my $r = $t->post_json('/events', { type => 'gc.covered',
            id => "c-$i-$n" }, timeout => 20);
        my $at = time;
        push @ok, [ $r->{json}{seq}, $at ] if ($r->{status} // 0) == 201;
    }
    return \@ok;
});
my @answered = map { @$_ } grep { defined } @got;
is(scalar @answered, 64, '8 clients x 8 events under 40 ms syncs: 201');

# both workers took some (a connection per request)
sub both_wrote {
    my ($before, $after) = @_;
    my %was = map { $_->{pid} => $_->{published} // 0 }
        @{ $before->{workers} };
    return scalar grep { ($_->{published} // 0) > ($was{$_->{pid}} // 0) }
        @{ $after->{workers} };
}
my $after_w = $t->get('/events-status')->{json};
is(both_wrote($before_w, $after_w), 2, 'both workers answered some')
    or diag explain [ $before_w->{workers}, $after_w->{workers} ];

# where each record ends in the segment, by seq
my %end;
{
    open(my $fh, '<:raw', $segment) or die "$segment: $!";
    my $data = do { local $/; <$fh> };
    my $off = 32;
    while ($off + 32 <= length $data) {
        my ($magic, undef, undef, $len, undef, undef, $seq)
            = unpack('C C S L L L Q', substr($data, $off, 32));
        last unless $magic == 0xe5;
        $off += 32 + $len;
        $end{$seq} = $off;
    }
}

my @syncs = grep { $_->[0] == $inode }
    map { [ split ' ' ] } split /\n/, $t->read_file('syncs.log');
ok(@syncs >= 8, scalar(@syncs) . ' fdatasync() calls on the segment')
    or diag "$segment $inode " . $t->read_file('syncs.log');

my ($early, $unknown) = (0, 0);
for my $a (@answered) {
    my ($seq, $at) = @$a;
    unless ($end{$seq}) {
        $unknown++;
        next;
    }
    $early++ unless grep { $_->[3] == 0 && $_->[1] >= $end{$seq}
        && $_->[2] <= $at } @syncs;
}
is($unknown, 0, 'each answered seq is a record in the segment');
is($early, 0, 'each 201 came after a successful fdatasync() that began '
    . 'with its record written');

# the syncs carried groups, as without the preload
my $events_w = $after_w->{events}{newestSeq} - $before_w->{events}{newestSeq};
my $fsyncs_w = $after_w->{journal}{fsyncs} - $before_w->{journal}{fsyncs};
cmp_ok($fsyncs_w, '<', $events_w,
    "$fsyncs_w fsyncs for $events_w events under slow syncs");

###########################################################################
# fdatasync() fails: every waiting POST is answered 503, on both workers

$t->write_file('slow-sync', "20\n");
$t->write_file('fail-sync', '');

my $before_f = $t->get('/events-status')->{json};
@got = $t->parallel(n => 8, timeout => 60, code => sub {
    my ($i) = @_;
    my @res;
    for my $n (1 .. 3) {
        my $r = $t->post_json('/events', { type => 'gc.failed',
            id => "f-$i-$n" }, timeout => 20);
        push @res, [ $r->{status} // 0, $r->{body} // '' ];
    }
    return \@res;
});
my @failed = map { @$_ } grep { defined } @got;
is(scalar @failed, 24, '24 POSTs answered');
is(scalar(grep { $_->[0] == 503 } @failed), 24, 'all of them 503');
is(scalar(grep { $_->[1] eq '{"error":{"status":503,'
    . '"code":"journal_unavailable","message":"the events were stored but '
    . 'could not be synced to disk; a retry with the same ids is safe"}}' }
    @failed), 24, 'each with the body that says they were stored');

my $after_f = $t->get('/events-status')->{json};
is(both_wrote($before_f, $after_f), 2, 'on both workers');
ok($after_f->{journal}{unsynced}, 'status: unsynced');
cmp_ok($after_f->{journal}{errors}, '>', $before_f->{journal}{errors},
    'status: the errors counted');
like($t->error_log,
    qr/\[crit\].*fdatasync\(\) of the journal failed \(5: Input\/output/,
    'logged at crit with the reason');

unlink "$dir/fail-sync";

$r = $t->post_json('/events', { type => 'gc.failed', id => 'f-0-1' });
is($r->{status}, 200, 'the disk back: a retry with the same id is 200, '
    . 'it was stored');
$r = $t->post_json('/events', { type => 'gc.after_failure' });
is($r->{status}, 201, 'a new event is synced and answered 201')
    or diag explain $r;
ok(!journal()->{unsynced}, 'status: not unsynced any more');

unlink "$dir/slow-sync";
}

$t->done;
