package EventsTest::Receiver;

# A real HTTP/1.1 webhook receiver for the tests: a process forked from
# the test, listening on a free loopback port, that records every
# request and answers from a script set by the test at run time.
#
#     use EventsTest::Receiver;
#
#     my $rcv = EventsTest::Receiver->new(dir => $t->testdir, name => 'r1');
#     my $url = $rcv->url('/hook');         # http://127.0.0.1:PORT/hook
#     $rcv->script('/hook', [
#         { status => 503, headers => { 'retry-after' => '2' } },
#         { status => 200, delay => 0.5 },
#     ]);
#     ... make nginx deliver ...
#     my @req = $rcv->wait_requests('/hook', 2, 10);
#     is($req[0]{headers}{'webhook-id'}, ...);
#     $rcv->stop;                           # also on DESTROY and at END
#
# See the POD at the end for every method and the script entry keys.
# Core Perl only.

use strict;
use warnings;

use Carp qw(croak);
use Fcntl qw(:flock O_WRONLY O_APPEND O_CREAT);
use File::Temp qw(tempdir);
use IO::Select;
use IO::Socket::IP;
use JSON::PP;
use POSIX qw(WNOHANG);
use Scalar::Util qw(refaddr);
use Time::HiRes qw(time sleep);

use EventsTest::Daemon;

my $JSON = JSON::PP->new->utf8->canonical->allow_nonref;
my $SEQ = 0;

# Reading a request may take this long (a client that never finishes
# its request is dropped, unlogged).
our $READ_TIMEOUT = 60;

my %REASON = (
    100 => 'Continue', 200 => 'OK', 201 => 'Created', 202 => 'Accepted',
    204 => 'No Content', 301 => 'Moved Permanently', 302 => 'Found',
    303 => 'See Other', 307 => 'Temporary Redirect',
    308 => 'Permanent Redirect', 400 => 'Bad Request',
    401 => 'Unauthorized', 403 => 'Forbidden', 404 => 'Not Found',
    405 => 'Method Not Allowed', 408 => 'Request Timeout',
    409 => 'Conflict', 410 => 'Gone', 413 => 'Payload Too Large',
    429 => 'Too Many Requests', 500 => 'Internal Server Error',
    501 => 'Not Implemented', 502 => 'Bad Gateway',
    503 => 'Service Unavailable', 504 => 'Gateway Timeout',
);

sub new {
    my ($class, %o) = @_;
    my $dir = $o{dir} // tempdir('receiver-XXXXXXXX', TMPDIR => 1,
        CLEANUP => !$ENV{T_KEEP});
    my $name = $o{name} // 'receiver' . ++$SEQ;
    croak "bad receiver name '$name'" unless $name =~ /^[\w.-]+$/;

    my $self = bless {
        dir     => $dir,
        name    => $name,
        owner   => $$,
        version => 0,
        scripts => {},
    }, $class;

    my $base = "$dir/receiver-$name";
    @{$self}{qw(log script_file state_file err)} =
        ("$base.log", "$base.script.json", "$base.state.json", "$base.err");
    for my $f (@{$self}{qw(log script_file state_file)}) {
        unlink $f;
    }
    $self->_write_scripts;
    open(my $fh, '>', $self->{log}) or croak "create $self->{log}: $!";
    close $fh;

    my ($listen, $lock, $port) =
        EventsTest::Daemon::reserve_port(listen => 1);
    @{$self}{qw(port lock)} = ($port, $lock);

    $self->{pid} = EventsTest::Daemon::spawn(
        sub { $self->_serve($listen, $_[0]) }, stderr => $self->{err});
    close $listen;
    EventsTest::Daemon::track($self);
    return $self;
}

sub DESTROY {
    my ($self) = @_;
    local ($?, $@, $!);
    eval { $self->stop } if ($self->{owner} // 0) == $$;
    EventsTest::Daemon::untrack($self);
}

sub port { $_[0]{port} }
sub pid { $_[0]{pid} }
sub name { $_[0]{name} }
sub log_file { $_[0]{log} }

sub url {
    my ($self, $path) = @_;
    $path //= '/';
    return "http://127.0.0.1:$self->{port}$path";
}

sub stop {
    my ($self) = @_;
    return $self unless $self->{pid} && $self->{owner} == $$;
    EventsTest::Daemon::stop_group($self->{pid});
    $self->{pid} = undef;
    close $self->{lock} if $self->{lock};
    $self->{lock} = undef;
    return $self;
}

sub running {
    my ($self) = @_;
    return 0 unless $self->{pid};
    return waitpid($self->{pid}, WNOHANG) == 0;
}

###########################################################################
# Scripts (test side)

# script($path, \@entries): successive requests to $path get the
# entries in order; the last one repeats.  script($path, undef) drops
# the script (back to 200 "ok").  Each call restarts $path's count.
# $path '*' applies to every path without a script of its own.
sub script {
    my ($self, $path, $entries) = @_;
    croak 'script: path required' unless defined $path;
    if (defined $entries) {
        $entries = [$entries] if ref $entries eq 'HASH';
        croak 'script: entries must be an array of hashes'
            unless ref $entries eq 'ARRAY' && @$entries
                && !grep { ref $_ ne 'HASH' } @$entries;
        $self->{scripts}{$path} = {
            version => ++$self->{version},
            entries => $entries,
        };
    } else {
        delete $self->{scripts}{$path};
    }
    $self->_write_scripts;
    return $self;
}

sub _write_scripts {
    my ($self) = @_;
    EventsTest::Daemon::write_atomic($self->{script_file},
        $JSON->encode($self->{scripts}));
}

###########################################################################
# The request log (test side)

sub _decode_log {
    my ($self) = @_;
    my @all;
    for my $line (split /\n/, EventsTest::Daemon::slurp($self->{log})) {
        next unless length $line;
        my $r = eval { $JSON->decode($line) } or next;
        push @all, $r;
    }
    return @all;
}

# Every request recorded for $path (all paths when undef), oldest first.
sub requests {
    my ($self, $path) = @_;
    my @r = $self->_decode_log;
    @r = grep { $_->{path} eq $path } @r if defined $path;
    return @r;
}

# Poll until at least $n requests for $path are recorded or $timeout
# seconds (default 10) have passed; returns what there is.
sub wait_requests {
    my ($self, $path, $n, $timeout) = @_;
    my $deadline = time + ($timeout // 10);
    while (1) {
        my @r = $self->requests($path);
        return @r if @r >= $n || time >= $deadline;
        sleep 0.02;
    }
}

sub reset_log {
    my ($self) = @_;
    truncate($self->{log}, 0) or croak "truncate $self->{log}: $!";
    return $self;
}

# What the receiver printed on stderr (errors in the server itself).
sub errors { EventsTest::Daemon::slurp($_[0]{err}) }

###########################################################################
# The server (receiver side: runs in the forked process)

sub _serve {
    my ($self, $listen, $parent) = @_;
    my $sel = IO::Select->new($listen);
    my %kids;
    my $leader = $$;
    my $stop = 0;
    local $SIG{TERM} = sub { $stop = 1 };

    while (1) {
        if ($stop || EventsTest::Daemon::orphaned($parent)) {
            # Our children first, and reap them: once we are gone they
            # would be reparented, and a zombie of theirs could stay.
            EventsTest::Daemon::end_children(\%kids);
            return;
        }
        while ((my $k = waitpid(-1, WNOHANG)) > 0) {
            delete $kids{$k};
        }
        next unless $sel->can_read(0.2);
        my $c = $listen->accept or next;
        my $accepted = time;

        my $pid = fork;
        unless (defined $pid) {
            print STDERR "receiver: fork: $!\n";
            close $c;
            next;
        }
        if ($pid == 0) {
            $SIG{TERM} = 'DEFAULT';
            close $listen;
            my $ok = eval { $self->_connection($c, $accepted, $leader); 1 };
            print STDERR "receiver [$$]: $@" unless $ok;
            POSIX::_exit(0);
        }
        $kids{$pid} = 1;
        close $c;
    }
}

# Read one request from $c: (request hash, or undef at EOF/timeout).
sub _read_request {
    my ($c, $deadline) = @_;
    my $sel = IO::Select->new($c);
    my $buf = '';
    my $read = sub {
        my $left = $deadline - time;
        return 0 if $left <= 0 || !$sel->can_read($left);
        my $n = sysread($c, $buf, 65536, length $buf);
        return $n ? 1 : 0;
    };

    my $head_end;
    until (($head_end = index($buf, "\r\n\r\n")) >= 0) {
        # a lone LF line ending is tolerated
        if (index($buf, "\n\n") >= 0) { $head_end = -1; last }
        $read->() or return;
    }
    my ($head, $sep);
    if ($head_end >= 0) {
        $head = substr($buf, 0, $head_end);
        substr($buf, 0, $head_end + 4) = '';
    } else {
        my $i = index($buf, "\n\n");
        $head = substr($buf, 0, $i);
        substr($buf, 0, $i + 2) = '';
    }

    my ($line, @lines) = split /\r?\n/, $head;
    my ($method, $target, $proto) = split / /, $line // '', 3;
    my (%h, @raw);
    for my $l (@lines) {
        my ($k, $v) = $l =~ /^([^:]+):[ \t]*(.*?)[ \t]*$/ or next;
        push @raw, [$k, $v];
        $k = lc $k;
        $h{$k} = exists $h{$k} ? "$h{$k}, $v" : $v;
    }
    my ($path, $query) = split /\?/, $target // '', 2;

    my $r = {
        method   => $method // '',
        target   => $target // '',
        path     => $path // '',
        query    => $query,
        protocol => $proto // '',
        headers  => \%h,
        raw_headers => \@raw,
        body     => '',
    };

    if (($h{expect} // '') =~ /^100-continue$/i) {
        syswrite($c, "HTTP/1.1 100 Continue\r\n\r\n");
    }

    if (($h{'transfer-encoding'} // '') =~ /chunked/i) {
        $r->{chunked} = 1;
        while (1) {
            my $i;
            until (($i = index($buf, "\n")) >= 0) {
                $read->() or return _incomplete($r, $buf);
            }
            my $size_line = substr($buf, 0, $i + 1, '');
            my ($hex) = $size_line =~ /^\s*([0-9a-fA-F]+)/;
            return _incomplete($r, $buf) unless defined $hex;
            my $size = hex $hex;
            if ($size == 0) {
                # trailers, up to the empty line
                while (1) {
                    until (($i = index($buf, "\n")) >= 0) {
                        $read->() or return _incomplete($r, '');
                    }
                    my $t = substr($buf, 0, $i + 1, '');
                    last if $t =~ /^\r?\n$/;
                    push @{ $r->{trailers} }, $t =~ s/\r?\n$//r;
                }
                last;
            }
            while (length $buf < $size + 2) {
                $read->() or return _incomplete($r,
                    substr($buf, 0, $size));
            }
            $r->{body} .= substr($buf, 0, $size);
            substr($buf, 0, $size) = '';
            $buf =~ s/^\r?\n//;
        }
    } elsif (defined $h{'content-length'}) {
        my $len = $h{'content-length'} =~ /^(\d+)/ ? $1 : 0;
        while (length $buf < $len) {
            $read->() or return _incomplete($r, $buf);
        }
        $r->{body} = substr($buf, 0, $len);
    }
    return $r;
}

# The client closed (or stalled) before its body was complete.
sub _incomplete {
    my ($r, $partial) = @_;
    $r->{body} .= $partial;
    $r->{incomplete} = JSON::PP::true;
    return $r;
}

# Under the lock, pick this request's script entry and count it.
sub _pick_entry {
    my ($self, $path) = @_;
    open(my $lk, '>>', "$self->{state_file}.lock") or die "lock: $!";
    flock($lk, LOCK_EX) or die "flock: $!";

    my $scripts = eval {
        $JSON->decode(EventsTest::Daemon::slurp($self->{script_file}))
    } // {};
    my $key = exists $scripts->{$path} ? $path
        : exists $scripts->{'*'} ? '*' : undef;
    my $state = eval {
        $JSON->decode(EventsTest::Daemon::slurp($self->{state_file}))
    } // {};

    # Per path: how many requests the current script has answered.
    my $count = $state->{$path} // { version => -1, n => 0 };
    my $version = defined $key ? $scripts->{$key}{version} : 0;
    $count = { version => $version, n => 0 }
        if $count->{version} != $version;
    my $index = $count->{n}++;
    $state->{$path} = $count;
    EventsTest::Daemon::write_atomic($self->{state_file},
        $JSON->encode($state));
    close $lk;

    return ({ status => 200, body => 'ok', default => 1 }, $index)
        unless defined $key;
    my $entries = $scripts->{$key}{entries};
    my $i = $index < @$entries ? $index : $#$entries;
    return ($entries->[$i], $index);
}

sub _log_request {
    my ($self, $rec) = @_;
    my $line = $JSON->encode($rec) . "\n";
    sysopen(my $fh, $self->{log}, O_WRONLY | O_APPEND | O_CREAT)
        or die "open $self->{log}: $!";
    flock($fh, LOCK_EX);
    my $off = 0;
    while ($off < length $line) {
        my $n = syswrite($fh, $line, length($line) - $off, $off);
        die "write $self->{log}: $!" unless defined $n;
        $off += $n;
    }
    close $fh;
}

sub _connection {
    my ($self, $c, $accepted, $leader) = @_;
    local $SIG{PIPE} = 'IGNORE';

    my $r = _read_request($c, time + $READ_TIMEOUT) or return;
    my ($entry, $index) = $self->_pick_entry($r->{path});

    delete $r->{raw_headers} unless grep { lc $_->[0] ne $_->[0] }
        @{ $r->{raw_headers} };
    $self->_log_request({
        %$r,
        time     => $accepted,
        received => time,
        index    => $index,
        pid      => $$,
        answer   => $entry->{stall} ? 'stall'
            : $entry->{close} ? 'close' : ($entry->{status} // 200),
    });

    sleep $entry->{delay} if $entry->{delay};

    if ($entry->{stall}) {
        # Never answer; wait for the peer to go (or to be killed).
        my $sel = IO::Select->new($c);
        while (!EventsTest::Daemon::orphaned($leader)) {
            next unless $sel->can_read(0.5);
            my $n = sysread($c, my $x, 65536);
            last unless $n;
        }
        return;
    }
    if ($entry->{close}) {
        close $c;
        return;
    }

    my $status = $entry->{status} // 200;
    my $body = $entry->{body} // '';
    utf8::encode($body) if utf8::is_utf8($body);
    if (defined $entry->{body_size}) {
        my $unit = length $body ? $body : 'x';
        $body = $unit x (int($entry->{body_size} / length($unit)) + 1);
        substr($body, $entry->{body_size}) = '';
    }

    my @headers;
    my $h = $entry->{headers} // {};
    if (ref $h eq 'HASH') {
        push @headers, map { [$_, $h->{$_}] } sort keys %$h;
    } else {    # [name => value, ...]: repeated names allowed
        push @headers, map { [ @$h[2 * $_, 2 * $_ + 1] ] } 0 .. @$h / 2 - 1;
    }
    my %given = map { lc $_->[0] => 1 } @headers;
    my $reason = $entry->{reason} // $REASON{$status} // 'Unknown';

    my $out = "HTTP/1.1 $status $reason\r\n";
    $out .= "Content-Type: text/plain\r\n" unless $given{'content-type'};
    if ($entry->{chunked}) {
        $out .= "Transfer-Encoding: chunked\r\n";
    } elsif (!$given{'content-length'}) {
        $out .= "Content-Length: " . length($body) . "\r\n";
    }
    $out .= "Connection: close\r\n" unless $given{connection};
    $out .= "$_->[0]: $_->[1]\r\n" for @headers;
    $out .= "\r\n";
    if ($entry->{chunked}) {
        for (my $o = 0; $o < length $body; $o += 8192) {
            my $part = substr($body, $o, 8192);
            $out .= sprintf("%x\r\n%s\r\n", length $part, $part);
        }
        $out .= "0\r\n\r\n";
    } else {
        $out .= $body;
    }

    my $off = 0;
    while ($off < length $out) {
        my $n = syswrite($c, $out, 65536, $off);
        last unless defined $n;
        $off += $n;
    }
    # Let the peer read everything before the close (no RST).
    shutdown($c, 1);
    my $sel = IO::Select->new($c);
    my $deadline = time + 5;
    while (time < $deadline && $sel->can_read($deadline - time)) {
        last unless sysread($c, my $x, 65536);
    }
    close $c;
}

1;

__END__

=head1 NAME

EventsTest::Receiver - a scripted HTTP/1.1 webhook receiver for the tests

=head1 METHODS

=over

=item new(dir => $dir, name => $name)

Forks the receiver, listening on 127.0.0.1 on a free port (reserved as
EventsTest::port() does, and listening before the fork: no race).  Its
files are C<$dir/receiver-$name.*> (C<.log>: one JSON line per request;
C<.err>: the server's own errors).  C<dir> defaults to a new temporary
directory, C<name> to C<receiverN>.  The receiver runs in a process
group of its own, forks one child per connection, and exits when the
test process is gone.

=item port, url($path), pid, name, log_file, running, errors

C<url('/hook')> is C<http://127.0.0.1:PORT/hook>.

=item script($path, [\%entry, ...]) / script($path, \%entry) / script($path, undef)

Successive requests to C<$path> (the request target without its query)
get the entries in order; once they are used up the last one repeats.
Each call restarts the count for that path; undef drops the script.
C<'*'> scripts every path without a script of its own.  No script: 200
with body C<ok>.  Entry keys:

  status     => 503             default 200
  reason     => 'Whatever'      reason phrase (default: the usual one)
  headers    => { 'retry-after' => 2 }   or [ name => value, ... ]
  body       => '...'           default ''
  body_size  => 2_000_000       body of exactly that many bytes: body
                                (default 'x') repeated and cut
  chunked    => 1               send the body chunked
  delay      => 0.5             seconds to wait before answering
  stall      => 1               read the request, never answer (until
                                the peer closes or the receiver stops)
  close      => 1               close without answering (after delay)

Every answer carries C<Connection: close> and C<Content-Length> (unless
chunked, or given in headers).

=item requests($path) / requests()

The recorded requests (all paths without an argument), oldest first,
as hashes: C<method>, C<target>, C<path>, C<query>, C<protocol>,
C<headers> (lower-cased names; a repeated header's values joined with
C<", ">), C<raw_headers> (C<[[name, value], ...]> as sent, only when
some name was not lower-case), C<body> (bytes, de-chunked), C<chunked>,
C<trailers>, C<incomplete> (true when the peer closed before the body
was complete), C<time> (Time::HiRes epoch when the connection was
accepted), C<received> (when the request was completely read),
C<index> (0-based: the how-manyth request to this path since its script
was set), C<answer> (the status sent, or C<stall> / C<close>), C<pid>.
A request is logged when it has been read, before the delay and the
answer.

=item wait_requests($path, $n, $timeout)

Polls until at least C<$n> requests for C<$path> (all paths when undef)
are recorded, or C<$timeout> seconds (default 10); returns the list.

=item reset_log

Empties the log (script counts are not touched: set the script again).

=item stop

Kills the receiver's process group (the receiver and any connection
still in a delay or stall) and reaps it.  Also on DESTROY and at END.

=back

=cut
