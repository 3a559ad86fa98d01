package EventsNode;

# A node process a test drives: started with a command, read as JSON
# lines while the test does other things, killed by its pid.
#
#   my $n = EventsNode->start('node', "$REPO/t/node/client-node.mjs",
#                             'follow', $args);
#   my $r = $n->until(sub { $_[0]{state} eq 'open' }, 10);   # that line
#   my @all = $n->lines;                 # every line read so far
#   $n->stop;

use strict;
use warnings;

use IO::Select;
use JSON::PP;
use POSIX ();
use Time::HiRes qw(time);

sub start {
    my ($class, @cmd) = @_;
    my $pid = open(my $fh, '-|') // die "fork: $!";

    if ($pid == 0) {
        open(STDERR, '>&', \*STDOUT);
        exec(@cmd) or POSIX::_exit(127);
    }

    return bless { pid => $pid, fh => $fh, buf => '', lines => [],
                   raw => '', seen => 0 }, $class;
}

# reads what is there within $timeout seconds; false at end of output
sub _read {
    my ($self, $timeout) = @_;
    return 0 unless $self->{fh};

    my $sel = IO::Select->new($self->{fh});
    return 1 unless $sel->can_read($timeout);

    my $n = sysread($self->{fh}, my $chunk, 65536);
    if (!$n) {
        close($self->{fh});
        $self->{fh} = undef;
        return 0;
    }

    $self->{buf} .= $chunk;
    $self->{raw} .= $chunk;

    while ($self->{buf} =~ s/^([^\n]*)\n//) {
        my $l = $1;
        my $j = eval { decode_json($l) };
        push @{$self->{lines}}, $j // { text => $l };
    }

    return 1;
}

# the first line from now on for which $cond is true, or undef
sub until {
    my ($self, $cond, $timeout) = @_;
    my $end = time + ($timeout // 10);

    for (;;) {
        while ($self->{seen} < @{$self->{lines}}) {
            my $l = $self->{lines}[$self->{seen}++];
            return $l if $cond->($l);
        }
        my $left = $end - time;
        return undef if $left <= 0;
        $self->_read($left > 0.2 ? 0.2 : $left) or do {
            return undef if $self->{seen} >= @{$self->{lines}};
        };
    }
}

sub lines {
    my ($self) = @_;
    1 while $self->{fh} && $self->_read(0) && IO::Select->new($self->{fh})
                                                    ->can_read(0);
    return @{$self->{lines}};
}

sub output { $_[0]{raw} }

sub stop {
    my ($self) = @_;
    return unless $self->{pid};

    kill 'TERM', $self->{pid};
    for (1 .. 50) {
        last if waitpid($self->{pid}, POSIX::WNOHANG()) != 0;
        select(undef, undef, undef, 0.1);
    }
    kill 'KILL', $self->{pid} if kill 0, $self->{pid};
    waitpid($self->{pid}, 0);
    close($self->{fh}) if $self->{fh};
    $self->{pid} = undef;
}

sub DESTROY { $_[0]->stop }

1;
