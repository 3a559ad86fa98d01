#!/usr/bin/perl

# A graceful shutdown answers every POST it accepted.  With
# fsync=always a POST waits for the journal's fsync, run in the thread
# pool or by another worker (group commit): nothing of that wait is a
# connection or a timer of nginx's own, so a worker told to quit (nginx
# -s quit, or the old workers at a reload) could exit before answering,
# the event written and published and the client left with a closed
# connection.
#
# 8 clients post over keep-alive connections, each event with its own
# id, while nginx reloads twice and then quits.  nginx may close a
# keep-alive connection whose next request it has not read yet (that is
# HTTP's keep-alive contract: the client sees a closed connection and
# nothing was stored), so a POST without an answer is allowed only if
# its event is not in the journal.  After a restart from the journal:
# every event answered 201 is there, no event whose POST went
# unanswered is, no answer was cut short, and no worker left a
# connection behind.
#
# The same with a node of a cluster on Redis (when redis-server is
# installed): a POST waits for the script that appends it, and those
# that came during the previous script's round trip wait for that one
# to end; a worker quitting must send them rather than close its
# connection to Redis and answer them 503.
#
# Then, on each, a POST sent after the quit on a connection accepted
# before it (waiting for its first request, so not idle): the old
# worker reads it, and answers it 201 (a cluster's node after it closed
# its idle Redis connection at the quit: it connects again).

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use IO::Select;
use IO::Socket::IP;
use Time::HiRes qw(sleep time);
use EventsTest;
use EventsTest::Redis;

my $clients = 8;

# One client: POSTs one after the other on a keep-alive connection,
# reconnecting when nginx closed it, until told to stop or nginx no
# longer accepts.  Each POST ends as created (201), other (a complete
# answer of another status), dropped (the connection closed before a
# byte of the answer) or cut (closed in the middle of the answer).

sub client {
    my ($t, $phase, $i, $stop, $seconds) = @_;
    my $port = $t->port(1);
    my %got = (created => [], dropped => [], cut => [], other => []);
    my $deadline = time + $seconds;
    my ($sock, $sel);

    local $SIG{PIPE} = 'IGNORE';

    for my $n (1 .. 100000) {
        last if -e $stop || time > $deadline;

        unless ($sock) {
            $sock = IO::Socket::IP->new(PeerHost => '127.0.0.1',
                PeerPort => $port, Proto => 'tcp', Timeout => 5)
                or last;                        # nginx has quit
            $sock->blocking(0);
            $sel = IO::Select->new($sock);
        }

        my $id = "$phase-c$i-$n";
        my $req = $t->request_bytes('POST', '/events',
            headers => { Connection => 'keep-alive' },
            json => { id => $id, type => 't09.posted' });

        my $reader = EventsTest::Reader->new(method => 'POST');
        my ($bytes, $off, $closed) = (0, 0, 0);

        while ($off < length $req) {
            my $n = syswrite($sock, $req, length($req) - $off, $off);
            if (!defined $n) {
                if ($!{EAGAIN} || $!{EINTR}) {
                    $sel->can_write(1);
                    next;
                }
                $closed = 1;
                last;
            }
            $off += $n;
        }

        my $end = time + 10;
        until ($closed || $reader->complete || time > $end) {
            next unless $sel->can_read(1);
            my $n = sysread($sock, my $buf, 65536);
            if (!defined $n) {
                next if $!{EAGAIN} || $!{EINTR};
                $closed = 1;
                last;
            }
            if ($n == 0) {
                $closed = 1;
                last;
            }
            $bytes += $n;
            $reader->feed($buf);
        }

        $reader->eof if $closed;
        my $r = $reader->result;

        if (!defined $r->{error} && $reader->complete) {
            if ($r->{status} == 201) {
                push @{ $got{created} }, $id;
            } else {
                push @{ $got{other} }, "$id: $r->{status} $r->{body}";
            }
            undef $sock if $closed
                || ($r->{headers}{connection} // '') =~ /close/i;
            next;
        }

        # no answer in 10 s is a cut answer too
        push @{ $got{$bytes || !$closed ? 'cut' : 'dropped'} }, $id;
        undef $sock;
    }

    return \%got;
}

# The clients of a phase, and a controller that signals the master.

sub phase {
    my ($t, $phase, @signals) = @_;
    my $stop = $t->testdir . "/stop-$phase";
    my $master = $t->master_pid;

    my @r = $t->parallel(n => $clients + 1, timeout => 60, code => sub {
        my ($i) = @_;

        return client($t, $phase, $i, $stop, 20) if $i < $clients;

        for my $s (@signals) {
            sleep $s->[1];
            kill $s->[0], $master;
        }

        sleep 1;
        open(my $fh, '>', $stop);
        return {};
    });

    my %sum = map { $_ => [] } qw(created dropped cut other);
    for my $c (@r[0 .. $clients - 1]) {
        push @{ $sum{$_} }, @{ $c->{$_} // [] } for keys %sum;
    }

    diag(sprintf('%s: %d created, %d dropped unread, %d cut, %d other',
        $phase, map { scalar @{ $sum{$_} } } qw(created dropped cut other)));

    return \%sum;
}

# Clients through two reloads and then a quit; a restart; what the node
# stores afterwards.

sub scenario {
    my ($t, $name) = @_;

    my $reload = phase($t, "$name-reload", [ 'HUP', 0.8 ], [ 'HUP', 0.8 ]);

    # the old workers are gone before the next phase
    $t->_wait_until(20, sub { $t->worker_pids == 2 });

    my $quit = phase($t, "$name-quit", [ 'QUIT', 0.8 ]);

    $t->stop;

    my @left = $t->error_log =~ /(open socket .* left in connection.*)/g;
    is(scalar @left, 0, "$name: no worker exited with a request left")
        or diag(join "\n", @left[0 .. ($#left < 4 ? $#left : 4)]);

    # after a restart: what the journal holds

    $t->run;

    my (%stored, $pages);
    my $url = '/events?limit=1000';

    while ($url && $pages++ < 200) {
        my $r = $t->get($url);

        # a node of a cluster answers once it has caught up
        for (1 .. 100) {
            last if $r->{status} != 503;
            sleep 0.1;
            $r = $t->get($url);
        }

        if ($r->{status} != 200) {
            fail("list after the restart: $r->{status}");
            last;
        }
        $stored{ $_->{id} } = 1 for @{ $r->{json}{data} // [] };
        last unless $r->{json}{has_more};
        $url = "/events?limit=1000&after=$r->{json}{next}";
    }

    for my $p ([ reload => $reload ], [ quit => $quit ]) {
        my ($phase, $sum) = @$p;

        cmp_ok(scalar @{ $sum->{created} }, '>=', $clients,
            "$name $phase: the clients wrote");

        my @lost = grep { !$stored{$_} } @{ $sum->{created} };
        is(scalar @lost, 0, "$name $phase: every event answered 201 stored")
            or diag("not stored: @lost[0 .. ($#lost < 4 ? $#lost : 4)]");

        my @unanswered = grep { $stored{$_} } @{ $sum->{dropped} };
        is(scalar @unanswered, 0,
            "$name $phase: no POST stored and its connection closed")
            or diag("stored, never answered: "
                . "@unanswered[0 .. ($#unanswered < 4 ? $#unanswered : 4)]");

        is(scalar @{ $sum->{cut} }, 0, "$name $phase: no answer cut short")
            or diag("@{ $sum->{cut} }");
        is(scalar @{ $sum->{other} }, 0, "$name $phase: every answer 201")
            or diag(join "\n", grep { defined } @{ $sum->{other} }[0 .. 4]);
    }

    is(scalar keys %stored,
        @{ $reload->{created} } + @{ $quit->{created} },
        "$name: stored exactly the events answered 201");

    late($t, $name);
}

# A POST that arrives after the quit, on a connection accepted before
# (not idle: it waits for its first request): the old worker reads it
# and must answer it, in a cluster after it closed its idle connection
# to Redis at the quit.

sub late {
    my ($t, $name) = @_;
    my $id = "$name-late";

    # Redis's connection is made and quiet
    is($t->post_json('/events', { id => "$id-0", type => 't09.late' })
        ->{status}, 201, "$name late: a POST before");

    my $s = IO::Socket::IP->new(PeerHost => '127.0.0.1',
        PeerPort => $t->port(1), Proto => 'tcp', Timeout => 5)
        or die "connect: $@";
    sleep 0.3;

    kill 'QUIT', $t->master_pid;
    sleep 0.5;

    local $SIG{PIPE} = 'IGNORE';
    print {$s} $t->request_bytes('POST', '/events',
        json => { id => $id, type => 't09.late' });

    my $reader = EventsTest::Reader->new(method => 'POST');
    my $sel = IO::Select->new($s);
    my $end = time + 10;
    while (time < $end && !$reader->complete) {
        next unless $sel->can_read(1);
        my $n = sysread($s, my $buf, 65536);
        if (!$n) {
            $reader->eof;
            last;
        }
        $reader->feed($buf);
    }
    my $r = $reader->result;
    close $s;

    $t->stop;
    $t->run;

    is($r->{status}, 201, "$name late: the POST read after the quit: 201")
        or diag($r->{error} // "$r->{status} $r->{body}");

    my $g = $t->get("/events/$id");
    for (1 .. 100) {
        last if $g->{status} != 503;            # a node catching up
        sleep 0.1;
        $g = $t->get("/events/$id");
    }
    is($g->{status}, 200, "$name late: and stored");
}

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
    }
}
EOF

mkdir $t->testdir . '/journal';
chown $t->{uid}, $t->{gid}, $t->testdir . '/journal' if defined $t->{uid};
$t->run;

scenario($t, 'journal');

SKIP: {
    skip 'redis-server not installed (make deps)', 15
        unless EventsTest::Redis->available;

    my $redis = EventsTest::Redis->new;
    my $url = $redis->url;
    my $c = EventsTest->new;

    $c->write_config(<<"EOF");
%%GLOBALS%%
http {
    %%HTTP_GLOBALS%%

    events_zone main 16m;
    events_cluster main $url prefix=t09;

    server {
        listen 127.0.0.1:%%PORT%%;

        location /events {
            events_api main;
        }

        location = /ready {
            events_status main;
        }
    }
}
EOF

    $c->run;

    # the node answers POSTs once it has caught up with the log
    $c->_wait_until(10, sub { $c->get('/ready?ready')->{status} == 200 });

    scenario($c, 'cluster');
    $c->stop;

    my @alerts = $c->error_log =~ /^(.*\[(?:alert|crit|emerg)\].*)$/mg;
    is(scalar @alerts, 0, 'cluster: no alert, crit or emerg')
        or diag(join "\n", @alerts[0 .. ($#alerts < 4 ? $#alerts : 4)]);
}

$t->done;
