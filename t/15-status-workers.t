#!/usr/bin/perl

# Per-worker metrics: every worker is listed from its start, before it
# did anything, under its slot with its own pid.  The counters are
# cumulative per slot: after a reload or a crash the slot names the new
# worker, starts says that one more took it, and the counts go on.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use Time::HiRes qw(time sleep);
use EventsTest;

my $t = EventsTest->new(workers => 3);

$t->write_config(<<'EOF');
%%GLOBALS%%
http {
    %%HTTP_GLOBALS%%

    events_zone main 4m;

    server {
        listen 127.0.0.1:%%PORT%%;

        location /events { events_api main; }
        location = /events-status { events_status main; }
    }
}
EOF
$t->run;

sub workers {
    my $j = $t->get('/events-status')->{json};
    return { map { $_->{worker} => $_ } @{ $j->{workers} } };
}

sub prom { $t->get('/events-status?format=prometheus')->{body} }

sub info_pids {
    my ($text) = @_;
    my %p = $text =~ /^events_worker_info\{zone="main",worker="(\d+)",
                      pid="(\d+)"\}\ 1$/mxg;
    return \%p;
}

# the slots' pids, as the page says, and as the system says
sub check_slots {
    my ($name, $starts) = @_;
    my @pids = $t->worker_pids;
    my $w = workers();
    is_deeply([sort keys %$w], [0 .. 2], "$name: three slots listed");
    is_deeply([sort { $a <=> $b } map { $_->{pid} } values %$w], \@pids,
        "$name: the running workers' pids");
    is_deeply({ map { $_ => $w->{$_}{starts} } keys %$w }, $starts,
        "$name: starts");
    my $info = info_pids(prom());
    is_deeply($info, { map { $_ => $w->{$_}{pid} } keys %$w },
        "$name: events_worker_info names the same pids");
    return $w;
}

# before any event, stream or webhook
my $w = check_slots('at start', { 0 => 1, 1 => 1, 2 => 1 });
is($w->{$_}{published}, 0, "slot $_: nothing published") for 0 .. 2;
like(prom(), qr/^events_published_total\{zone="main",worker="2"\} 0$/m,
    'a worker that did nothing has its samples');

# work spread over the workers, counted by slot
for (1 .. 60) {
    my $r = $t->post_json('/events', { type => 'a.b' });
    die "POST: $r->{status}" unless $r->{status} == 201;
}
$w = workers();
my %before = map { $_ => $w->{$_}{published} } keys %$w;
my $sum = 0;
$sum += $_ for values %before;
is($sum, 60, 'the slots add up to what was stored');

# a reload: new pids, the counts go on
ok($t->reload, 'reloaded');
$w = check_slots('after a reload', { 0 => 2, 1 => 2, 2 => 2 });
is_deeply({ map { $_ => $w->{$_}{published} } keys %$w }, \%before,
    'per-slot counts kept across the reload');

for (1 .. 30) {
    $t->post_json('/events', { type => 'a.c' });
}
$w = workers();
$sum = 0;
$sum += $_->{published} for values %$w;
is($sum, 90, 'the new workers count on in the same slots');
is($t->get('/events-status')->{json}{events}{stored}, 90, 'stored');

# a crash: the master starts another worker in the same slot
my ($slot) = grep { $w->{$_}{pid} } sort keys %$w;
my $dead = $w->{$slot}{pid};
$t->expect_log(qr/worker process $dead exited on signal 9/);
kill 'KILL', $dead;
my $end = time + 10;
sub respawned {
    my @p = $t->worker_pids;
    return @p == 3 && !grep { $_ == $dead } @p;
}
sleep 0.1 while time < $end && !respawned();
ok(respawned(), 'a worker started in its place');
$w = check_slots('after a crash',
    { 0 => 2, 1 => 2, 2 => 2, $slot => 3 });
isnt($w->{$slot}{pid}, $dead, 'the slot names the new worker');

# fewer workers after a reload: the slots gone are not listed
my $conf = $t->read_file('nginx.conf');
$conf =~ s/worker_processes 3;/worker_processes 2;/ or die 'no workers';
$t->write_file('nginx.conf', $conf);
$t->{workers} = 2;
ok($t->reload, 'reloaded with two workers');
$w = workers();
is_deeply([sort keys %$w], [0, 1], 'two slots listed');
is_deeply([sort { $a <=> $b } map { $_->{pid} } values %$w],
    [$t->worker_pids], 'their pids');

$t->done;
