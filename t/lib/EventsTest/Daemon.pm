package EventsTest::Daemon;

# Shared plumbing for the helper servers the tests fork (the webhook
# receiver, EventsTest::Receiver, and the DNS responder,
# EventsTest::DNS).  Not used by tests directly.
#
#   my ($tcp, $udp) = EventsTest::Daemon::reserve_port(listen => 1);
#   my $pid = EventsTest::Daemon::spawn($self, sub { ...serve... });
#   EventsTest::Daemon::stop_group($pid);
#
# reserve_port() follows EventsTest::port()'s protocol: the kernel picks
# a free TCP port (bind to 0), then a UDP socket is bound to the same
# number and held.  Another test file doing the same cannot get that
# number (its UDP bind fails and it retries).  Unlike port(), the TCP
# socket can be kept listening (listen => 1), so the server has no race
# at all: the socket exists before the fork and connections queue.
#
# spawn() forks a server in a process group of its own (setpgrp), with
# default signal handlers, no END blocks (POSIX::_exit) and a watchdog:
# the server exits, taking its group with it, as soon as its parent (the
# test) is gone, so a test killed outright leaves nothing behind.
# stop_group() stops the server, which first ends and reaps its
# per-connection children (falling back to killing the whole group), and
# reaps it.  Objects registered with track() are
# stopped from END too, when a test dies with them still referenced.

use strict;
use warnings;

use Carp qw(croak);
use IO::Socket::IP;
use POSIX qw(WNOHANG);
use Scalar::Util qw(weaken refaddr);
use Time::HiRes qw(time sleep);

my %LIVE;

END {
    local $?;
    for my $obj (values %LIVE) {
        eval { $obj->stop } if $obj && ($obj->{owner} // 0) == $$;
    }
}

sub track {
    my ($obj) = @_;
    $LIVE{refaddr $obj} = $obj;
    weaken $LIVE{refaddr $obj};
}

sub untrack { delete $LIVE{refaddr $_[0]} }

# (tcp socket or undef, udp socket, port).  listen => 1: the TCP socket
# is returned listening (backlog 128); otherwise it is closed.
sub reserve_port {
    my (%o) = @_;
    for (1 .. 100) {
        my $tcp = IO::Socket::IP->new(LocalHost => '127.0.0.1',
            LocalPort => 0, Proto => 'tcp', Listen => 128,
            ReuseAddr => 0) or next;
        my $port = $tcp->sockport;
        my $udp = IO::Socket::IP->new(LocalHost => '127.0.0.1',
            LocalPort => $port, Proto => 'udp') or next;
        unless ($o{listen}) {
            close $tcp;
            undef $tcp;
        }
        return ($tcp, $udp, $port);
    }
    croak "cannot reserve a loopback port: $!";
}

# Fork; the child runs $code->() in a new process group and exits.
# Returns the child's pid (== its process group id).
sub spawn {
    my ($code, %o) = @_;
    my $parent = $$;

    STDOUT->flush;
    STDERR->flush;
    my $pid = fork // croak "fork: $!";
    return $pid if $pid;

    setpgrp(0, 0);
    $SIG{$_} = 'DEFAULT' for qw(HUP INT PIPE TERM ALRM);
    alarm 0;
    if (defined $o{stderr} && open(my $err, '>>', $o{stderr})) {
        open(STDERR, '>&', $err);
    }
    open(STDIN, '<', '/dev/null');
    open(STDOUT, '>', '/dev/null');

    my $ok = eval { $code->($parent); 1 };
    print STDERR "$0 [$$]: $@" unless $ok;
    # a server that died may leave children: the group goes, with us
    kill 'KILL', -$$ unless $ok;
    POSIX::_exit($ok ? 0 : 1);
}

# The parent of a spawned server is gone: time to exit.
sub orphaned {
    my ($parent) = @_;
    return getppid() != $parent;
}

# Stop the server $pid (our child) and reap it.  TERM goes to the
# server alone, which ends and reaps its own children first (see
# end_children); if it has not exited within 3 s, the whole process
# group is killed.  The signals go while the server is still unreaped,
# so its pid (the group id) cannot have been reused.
sub stop_group {
    my ($pid) = @_;
    return unless $pid;
    kill 'TERM', $pid;
    my $deadline = time + 3;
    my $r = 0;
    while (($r = waitpid($pid, WNOHANG)) == 0 && time < $deadline) {
        sleep 0.01;
    }
    if ($r == 0) {
        kill 'KILL', -$pid;
        waitpid($pid, 0);
    }
    return;
}

# In a server: TERM, then KILL after 1 s, the children in %$kids (pid =>
# 1), reaping them all.
sub end_children {
    my ($kids) = @_;
    kill 'TERM', keys %$kids;
    my $deadline = time + 1;
    while (%$kids) {
        for my $k (keys %$kids) {
            delete $kids->{$k} if waitpid($k, WNOHANG) != 0;
        }
        last unless %$kids;
        if (time > $deadline) {
            kill 'KILL', keys %$kids;
            waitpid($_, 0) for keys %$kids;
            last;
        }
        sleep 0.01;
    }
    %$kids = ();
}

sub slurp {
    my ($file) = @_;
    open(my $fh, '<', $file) or return '';
    binmode $fh;
    local $/;
    return scalar(<$fh>) // '';
}

# Write $data to $file atomically (a reader sees the old or new file).
sub write_atomic {
    my ($file, $data) = @_;
    my $tmp = "$file.tmp.$$";
    open(my $fh, '>', $tmp) or croak "create $tmp: $!";
    binmode $fh;
    print {$fh} $data or croak "write $tmp: $!";
    close($fh) or croak "close $tmp: $!";
    rename($tmp, $file) or croak "rename $tmp: $!";
}

1;
