package EventsTest::Redis;

# A real Redis (Debian's redis-server) for the cluster tests, started by
# the test from a temp dir on a reserved loopback port, AOF on (fsync
# always), and stopped by pid.  Never a system service.
#
#   my $redis = EventsTest::Redis->new;
#   $redis->url;                    # redis://127.0.0.1:PORT
#   $redis->cli(qw(XLEN {events}:log));
#   $redis->stop; $redis->start;    # the same dir: the data comes back
#   $redis->crash;                  # SIGKILL
#   EventsTest::Redis->new(tls => { cert => F, key => F, ca => F })
#                                   # TLS only, on the same port
#   EventsTest::Redis->new(bind => '127.0.0.2', port => $other->port)
#                                   # another loopback address: a DNS
#                                   # name (A records carry no port)
#                                   # can move between the two
#
# The port is held the way EventsTest::port() holds one (a UDP socket of
# the same number), so test files running in parallel cannot take it,
# and the same port serves again after a restart.

use strict;
use warnings;

use Carp qw(croak);
use File::Temp qw(tempdir);
use POSIX qw(WNOHANG);
use Time::HiRes qw(time sleep);

use EventsTest::Daemon;

our $SERVER = $ENV{T_REDIS_SERVER} // '/usr/bin/redis-server';
our $CLI = $ENV{T_REDIS_CLI} // '/usr/bin/redis-cli';

sub available { -x $SERVER && -x $CLI }

sub new {
    my ($class, %o) = @_;
    # a given port is held by the Redis on 127.0.0.1 it is taken from
    my ($udp, $port) = (undef, $o{port});
    (undef, $udp, $port) = EventsTest::Daemon::reserve_port()
        unless defined $port;
    my $self = bless {
        bind  => $o{bind} // '127.0.0.1',
        dir   => tempdir('events-redis-XXXXXXXX', TMPDIR => 1,
                     CLEANUP => !$ENV{T_KEEP}),
        port  => $port,
        lock  => $udp,
        owner => $$,
        args  => $o{args} // [],
        tls   => $o{tls},
    }, $class;
    EventsTest::Daemon::track($self);
    $self->start;
    return $self;
}

sub port { $_[0]{port} }
sub dir { $_[0]{dir} }
sub url {
    my ($self) = @_;
    return $self->{tls} ? "rediss://localhost:$self->{port}"
                        : "redis://$self->{bind}:$self->{port}";
}
sub pid { $_[0]{pid} }

sub start {
    my ($self) = @_;
    croak 'redis is already running' if $self->{pid};

    my $pid = fork // croak "fork: $!";
    unless ($pid) {
        open(STDIN, '<', '/dev/null');
        open(STDOUT, '>>', "$self->{dir}/stdout.log");
        open(STDERR, '>&', \*STDOUT);
        my $tls = $self->{tls};
        my @port = $tls ? ('--port', 0, '--tls-port', $self->{port},
            '--tls-cert-file', $tls->{cert}, '--tls-key-file', $tls->{key},
            '--tls-ca-cert-file', $tls->{ca}, '--tls-auth-clients', 'no')
            : ('--port', $self->{port});
        { no warnings "exec"; exec { $SERVER } $SERVER, @port,
            '--bind', $self->{bind}, '--dir', $self->{dir},
            '--daemonize', 'no', '--appendonly', 'yes',
            '--appendfsync', 'always', '--save', '',
            '--logfile', "$self->{dir}/redis.log",
            '--protected-mode', 'no', @{ $self->{args} }; }
        POSIX::_exit(127);
    }
    $self->{pid} = $pid;

    my $deadline = time + 10;
    while (time < $deadline) {
        croak "redis-server exited at start:\n"
            . EventsTest::Daemon::slurp("$self->{dir}/redis.log")
            if waitpid($pid, WNOHANG) == $pid;
        return $self if ($self->cli('PING') // '') eq 'PONG';
        sleep 0.05;
    }
    croak "redis-server not ready in 10 s";
}

# redis-cli's answer, trimmed; undef when it could not connect.
sub cli {
    my ($self, @args) = @_;
    my $pid = open(my $fh, '-|') // croak "fork: $!";
    unless ($pid) {
        open(STDERR, '>', '/dev/null');
        { no warnings 'exec';
          exec { $CLI } $CLI, '-h', $self->{bind}, '-p', $self->{port},
              ($self->{tls} ? ('--tls', '--cacert', $self->{tls}{ca}) : ()),
              @args; }
        POSIX::_exit(127);
    }
    local $/;
    my $out = <$fh>;
    close $fh;
    return undef if $? != 0 || !defined $out || $out =~ /^Could not connect/;
    $out =~ s/\s+\z//;
    return $out;
}

# TERM: Redis writes its AOF and exits.
sub stop {
    my ($self) = @_;
    return unless $self->{pid} && $self->{owner} == $$;
    CORE::kill 'TERM', $self->{pid};
    my $deadline = time + 10;
    my $r = 0;
    while (($r = waitpid($self->{pid}, WNOHANG)) == 0 && time < $deadline) {
        sleep 0.02;
    }
    if ($r == 0) {
        CORE::kill 'KILL', $self->{pid};
        waitpid($self->{pid}, 0);
    }
    $self->{pid} = undef;
}

sub crash {
    my ($self) = @_;
    return unless $self->{pid};
    CORE::kill 'KILL', $self->{pid};
    waitpid($self->{pid}, 0);
    $self->{pid} = undef;
}

sub DESTROY {
    my ($self) = @_;
    local ($?, $@, $!);
    eval { $self->stop };
    EventsTest::Daemon::untrack($self);
}

1;
