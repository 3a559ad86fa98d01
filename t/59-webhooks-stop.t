#!/usr/bin/perl

# Webhooks when nginx stops fast, and under the poll and select event
# methods.  A fast stop (SIGTERM) of a dispatcher whose journal syncs in
# a thread pool (fsync=always) writes the webhook state in the worker:
# the pool is gone by then.  Deliveries and local handlers run on fake
# connections; under poll and select those must leave the connection
# table (ngx_cycle->files) as they found it, which the AddressSanitizer
# run (make test-asan) checks.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use Time::HiRes qw(time sleep);
use POSIX qw(WNOHANG);
use EventsTest;
use EventsTest::Receiver;

my $rcv;

sub conf {
    my ($method) = @_;
    my $port = $rcv->port;
    (my $c = <<'EOF') =~ s/RPORT/$port/g;
%%GLOBALS%%
events {
    use METHOD;
    worker_connections 1024;
}

http {
    %%HTTP_GLOBALS%%

    events_zone main 8m;
    events_journal main %%TESTDIR%%/journal fsync=FSYNC;

    server {
        listen 127.0.0.1:%%PORT%%;

        events_webhook_allow_private on;
        events_webhook_retry 1s 1s 1s 1s 1s 1s 1s 1s;

        events_handler main id=local types=h.* location=/internal/h;

        location /events { events_api main; }
        location /webhooks { events_webhooks main; }

        location = /_events_webhook {
            internal;
            proxy_pass $events_webhook_url;
        }

        location /internal/ {
            internal;
            proxy_pass http://127.0.0.1:RPORT/fn/;
        }
    }
}
EOF
    $c =~ s/METHOD/$method/;
    # poll and select cannot run thread pools, which fsync=always uses
    $c =~ s/FSYNC/$method eq 'epoll' ? 'always' : 'off'/e;
    return $c;
}

# what done() checks, for each of the nginx runs of this file
sub check_log {
    my ($t, $name) = @_;
    my $all = $t->error_log . "\n" . $t->read_file('stderr.log');
    my @alerts = grep { /\[(?:alert|crit|emerg)\]/ } split /\n/, $all;
    ok(!@alerts, "$name: no alert, crit or emerg in error.log")
        or diag join "\n", @alerts[0 .. ($#alerts < 5 ? $#alerts : 5)];
    my @asan = grep { /Sanitizer/ } split /\n/, $all;
    ok(!@asan, "$name: no sanitizer reports") or diag $asan[0];
}

# the master is our child: reaped here; the workers were its children
sub wait_gone {
    my ($master, $workers, $secs) = @_;
    my $end = time + $secs;
    my $reaped = 0;
    while (time < $end) {
        $reaped ||= waitpid($master, WNOHANG) == $master;
        return 1 if $reaped && !grep { kill 0, $_ } @$workers;
        sleep 0.1;
    }
    return 0;
}

# Debian's nginx has neither poll nor select: those runs take a binary
# built with them (T_NGINX_POLL, made by "make nginx-poll")
my @methods = ('epoll');
if (my $bin = $ENV{T_NGINX_POLL}) {
    push @methods, qw(poll select) if -x $bin;
}

for my $method (@methods) {
    local $EventsTest::NGINX = $method eq 'epoll' ? $EventsTest::NGINX
                                                  : $ENV{T_NGINX_POLL};
    my $t = EventsTest->new(events_block => 0);
    $rcv = EventsTest::Receiver->new(dir => $t->testdir, name => "r$method");
    $t->write_config(conf($method));
    $t->run;

    # deliveries and handler calls, on fake connections
    my $ep = $t->post_json('/webhooks', { url => $rcv->url('/hook'),
        events => ['w.*'] })->{json};
    ok($ep->{id}, "$method: an endpoint");
    for my $i (1 .. 20) {
        $t->post_json('/events', [ { type => 'w.x' }, { type => 'h.x' } ]);
    }
    is(scalar $rcv->wait_requests('/hook', 20, 15), 20,
        "$method: 20 webhooks delivered");
    is(scalar $rcv->wait_requests('/fn/h', 20, 15), 20,
        "$method: 20 handler calls");

    # a fast stop while deliveries change the state: failing ones, and
    # new events just before the signal
    $rcv->script('/hook', { status => 503 });
    $t->post_json('/events', { type => 'w.y' }) for 1 .. 5;
    $rcv->wait_requests('/hook', 25, 10);
    $t->post_json('/events', { type => 'w.z' }) for 1 .. 5;
    sleep 0.05;
    my ($master, @workers) = ($t->master_pid, $t->worker_pids);
    kill 'TERM', $master;
    ok(wait_gone($master, \@workers, 15), "$method: SIGTERM stopped nginx");
    my $log = $t->error_log;
    unlike($log, qr/pthread_mutex_lock\(\) failed|ngx_thread_task_post/,
        "$method: no work posted to a destroyed thread pool");
    like($log, qr/exit$/m, "$method: the master exited");
    $rcv->stop;
    $t->stop;
    check_log($t, $method);
}

if (@methods == 1) {
    SKIP: {
        skip 'poll and select: no T_NGINX_POLL binary ("make nginx-poll")',
            1;
    }
}

done_testing();
