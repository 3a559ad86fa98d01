#!/usr/bin/perl

# fsync=always as one group commit for the zone, across 2 workers: one
# client alone gets one fdatasync() per event (none skipped); concurrent
# clients on both workers share them, several events to a sync; the status
# counts them (JSON and Prometheus agree); kill -9 of the workers and
# the master right after their 201s loses none of them; a worker killed
# while the others wait does not leave them waiting.

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

$t->done;
