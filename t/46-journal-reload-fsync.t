#!/usr/bin/perl

# fsync=always under reloads: a POST whose events wait for the journal's
# fsync in the thread pool keeps its old worker alive until it is
# answered.  8 writers post events without ids while nginx reloads 6
# times: every POST is answered, and the store holds exactly the events
# answered 201 (a request closed unanswered would be retried by its
# client and stored twice).

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use Time::HiRes qw(sleep time);
use EventsTest;

my $t = EventsTest->new;

$t->write_config(<<'EOF');
%%GLOBALS%%
http {
    %%HTTP_GLOBALS%%

    events_zone main 16m;
    events_journal main %%TESTDIR%%/journal fsync=always;

    server {
        listen 127.0.0.1:%%PORT%%;

        location /events {
            events_api main;
        }

        location = /events-status {
            events_status main;
        }
    }
}
EOF

mkdir $t->testdir . '/journal';
chown $t->{uid}, $t->{gid}, $t->testdir . '/journal' if defined $t->{uid};
$t->run;

my $writers = 8;
my $reloads = 6;
my $stop = $t->testdir . '/stop';
my $master = $t->master_pid;

my @r = $t->parallel(n => $writers + 1, timeout => 60, code => sub {
    my ($i) = @_;

    if ($i == $writers) {
        for (1 .. $reloads) {
            sleep 0.5;
            kill 'HUP', $master;
        }
        sleep 0.5;
        open(my $fh, '>', $stop);
        return {};
    }

    my %got = (created => 0, other => 0, unanswered => 0);
    my $deadline = time + 30;
    for my $n (1 .. 2000) {
        last if -e $stop || time > $deadline;
        my $t0 = time;
        my $r = $t->post_json('/events', { type => "w$i.posted" });
        my $ms = int((time - $t0) * 1000);
        $got{max_ms} = $ms if $ms > ($got{max_ms} // 0);
        if (!defined $r->{status}) {
            $got{unanswered}++;
        } elsif ($r->{status} == 201) {
            $got{created}++;
        } else {
            $got{other}++;
            $got{last_other} = "$r->{status} $r->{body}";
        }
    }
    return \%got;
});

my %sum;
for my $w (@r[0 .. $writers - 1]) {
    $sum{$_} += $w->{$_} // 0 for qw(created other unanswered);
}
my $max = (sort { $b <=> $a } map { $_->{max_ms} // 0 } @r)[0];
diag("$sum{created} events created under $reloads reloads, "
    . "slowest answer $max ms");

cmp_ok($sum{created}, '>=', $writers, 'the writers wrote');
is($sum{unanswered}, 0, 'every POST answered');
is($sum{other}, 0, 'every POST answered 201')
    or diag(join "\n", map { $_->{last_other} // () } @r);

# wait for the last old worker to go
$t->_wait_until(10, sub { $t->worker_pids == 2 });

my $st = $t->get('/events-status')->{json};
is($st->{events}{stored}, $sum{created},
    'stored exactly what was answered 201');

unlike($t->error_log, qr/open socket .* left in connection|aborting/,
    'no old worker left a request behind');

$t->done;
