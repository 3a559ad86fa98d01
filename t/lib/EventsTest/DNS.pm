package EventsTest::DNS;

# A tiny authoritative DNS responder over UDP on 127.0.0.1, for nginx's
# "resolver 127.0.0.1:PORT valid=1s;" in tests: webhook URLs with host
# names, names that resolve to private addresses (SSRF), names that do
# not exist, names whose address changes at run time (rebinding).
#
#     use EventsTest::DNS;
#
#     my $dns = EventsTest::DNS->new(dir => $t->testdir, records => {
#         'hooks.test'  => ['10.0.0.5'],
#         'loop.test'   => ['127.0.0.1'],
#     });
#     ... "resolver 127.0.0.1:" . $dns->port . " valid=1s;" ...
#     $dns->set('loop.test' => ['127.0.0.2']);    # from the next query
#     $dns->set('loop.test' => undef);            # now NXDOMAIN
#     my @q = $dns->queries('loop.test');
#     $dns->stop;                                 # also DESTROY, END
#
# A queries answer from the records: A with the record's addresses
# (TTL: the record's, else new()'s ttl, default 1 s); AAAA with the
# record's aaaa addresses, none by default (NOERROR, empty answer, as
# for every other type of a known name); an unknown name: NXDOMAIN.
# The question is echoed back as sent (names decompressed if a client
# compressed them).  Core Perl only.  POD at the end.

use strict;
use warnings;

use Carp qw(croak);
use Fcntl qw(:flock O_WRONLY O_APPEND O_CREAT);
use File::Temp qw(tempdir);
use IO::Select;
use JSON::PP;
use POSIX qw(WNOHANG);
use Socket qw(inet_pton AF_INET AF_INET6);
use Time::HiRes qw(time sleep);

use EventsTest::Daemon;

my $JSON = JSON::PP->new->utf8->canonical->allow_nonref;
my $SEQ = 0;

my %TYPE = (1 => 'A', 2 => 'NS', 5 => 'CNAME', 6 => 'SOA', 12 => 'PTR',
    15 => 'MX', 16 => 'TXT', 28 => 'AAAA', 33 => 'SRV', 255 => 'ANY');
my %RCODE = (NOERROR => 0, FORMERR => 1, SERVFAIL => 2, NXDOMAIN => 3,
    NOTIMP => 4, REFUSED => 5);

sub new {
    my ($class, %o) = @_;
    my $dir = $o{dir} // tempdir('dns-XXXXXXXX', TMPDIR => 1,
        CLEANUP => !$ENV{T_KEEP});
    my $name = $o{name} // 'dns' . ++$SEQ;
    croak "bad name '$name'" unless $name =~ /^[\w.-]+$/;

    my $self = bless {
        dir     => $dir,
        name    => $name,
        owner   => $$,
        ttl     => $o{ttl} // 1,
        records => {},
    }, $class;
    my $base = "$dir/dns-$name";
    @{$self}{qw(file log err)} = ("$base.json", "$base.log", "$base.err");
    unlink $self->{log};

    my $records = $o{records} // {};
    $self->{records}{ _norm($_) } = _check($records->{$_})
        for keys %$records;
    $self->_write;

    # The UDP socket is the server's, and it is also the port lock.
    my (undef, $udp, $port) = EventsTest::Daemon::reserve_port();
    $self->{port} = $port;
    $self->{pid} = EventsTest::Daemon::spawn(
        sub { $self->_serve($udp, $_[0]) }, stderr => $self->{err});
    close $udp;
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
sub errors { EventsTest::Daemon::slurp($_[0]{err}) }

# "resolver ...;" for nginx.conf
sub resolver {
    my ($self, $extra) = @_;
    return "resolver 127.0.0.1:$self->{port} "
        . ($extra // 'valid=1s') . ';';
}

sub stop {
    my ($self) = @_;
    return $self unless $self->{pid} && $self->{owner} == $$;
    EventsTest::Daemon::stop_group($self->{pid});
    $self->{pid} = undef;
    return $self;
}

sub _norm {
    my ($n) = @_;
    $n = lc $n;
    $n =~ s/\.$//;
    return $n;
}

# A record is [ipv4, ...] or { a => [...], aaaa => [...], ttl => N,
# rcode => 'SERVFAIL', drop => 1 }.
sub _check {
    my ($r) = @_;
    return undef unless defined $r;
    $r = { a => $r } if ref $r eq 'ARRAY';
    croak 'a record is [addresses] or {a => [...], ...}'
        unless ref $r eq 'HASH';
    for my $ip (@{ $r->{a} // [] }) {
        croak "not an IPv4 address: $ip" unless inet_pton(AF_INET, $ip);
    }
    for my $ip (@{ $r->{aaaa} // [] }) {
        croak "not an IPv6 address: $ip" unless inet_pton(AF_INET6, $ip);
    }
    croak "unknown rcode $r->{rcode}"
        if defined $r->{rcode} && !exists $RCODE{ uc $r->{rcode} };
    return $r;
}

# set(name => [ips] | {...} | undef, ...): undef removes the name.
sub set {
    my ($self, %records) = @_;
    for my $n (keys %records) {
        my $r = _check($records{$n});
        if (defined $r) {
            $self->{records}{ _norm($n) } = $r;
        } else {
            delete $self->{records}{ _norm($n) };
        }
    }
    $self->_write;
    return $self;
}

sub _write {
    my ($self) = @_;
    EventsTest::Daemon::write_atomic($self->{file},
        $JSON->encode({ ttl => $self->{ttl}, records => $self->{records} }));
}

# The queries received, oldest first, for $name (all when undef):
# { time, id, name, type ('A', 'AAAA', or the number), rcode, answers }.
sub queries {
    my ($self, $name) = @_;
    my @q;
    for my $line (split /\n/, EventsTest::Daemon::slurp($self->{log})) {
        my $q = eval { $JSON->decode($line) } or next;
        push @q, $q;
    }
    @q = grep { $_->{name} eq _norm($name) } @q if defined $name;
    return @q;
}

sub reset_log {
    my ($self) = @_;
    truncate($self->{log}, 0) if -e $self->{log};
    return $self;
}

###########################################################################
# The server (runs in the forked process)

# The name at $off in $msg: (name, offset after it in the message as
# read, i.e. after the first pointer), or () when malformed.
sub _read_name {
    my ($msg, $off) = @_;
    my @labels;
    my $end;
    my $hops = 0;
    while (1) {
        return if $off >= length $msg;
        my $len = ord substr($msg, $off, 1);
        if (($len & 0xC0) == 0xC0) {
            return if $off + 1 >= length $msg || ++$hops > 16;
            $end //= $off + 2;
            $off = unpack('n', substr($msg, $off, 2)) & 0x3FFF;
            next;
        }
        return if $len & 0xC0;    # the 01 and 10 label types: unknown
        if ($len == 0) {
            $end //= $off + 1;
            last;
        }
        return if $off + 1 + $len > length $msg;
        push @labels, substr($msg, $off + 1, $len);
        $off += 1 + $len;
    }
    return (join('.', @labels), $end);
}

sub _encode_name {
    my ($name) = @_;
    return join('', map { chr(length $_) . $_ } grep { length }
        split /\./, $name) . "\0";
}

sub _serve {
    my ($self, $udp, $parent) = @_;
    my $sel = IO::Select->new($udp);
    while (1) {
        return if EventsTest::Daemon::orphaned($parent);
        next unless $sel->can_read(0.2);
        my $peer = recv($udp, my $msg, 65535, 0);
        next unless defined $peer && length $msg >= 12;
        my $reply = $self->_answer($msg) // next;
        send($udp, $reply, 0, $peer);
    }
}

sub _answer {
    my ($self, $msg) = @_;
    my ($id, $flags, $qd) = unpack('n n n', $msg);
    return if $flags & 0x8000;    # a response, not a query

    my $opcode = ($flags >> 11) & 0xF;
    my $rd = $flags & 0x0100;
    my $reply_flags = sub {
        my ($rcode) = @_;
        return 0x8000 | ($opcode << 11) | 0x0400 | $rd | $rcode;
    };
    if ($opcode != 0 || $qd != 1) {
        return pack('n n n n n n', $id, $reply_flags->($RCODE{NOTIMP}),
            0, 0, 0, 0);
    }

    my ($qname, $off) = _read_name($msg, 12);
    if (!defined $qname || $off + 4 > length $msg) {
        return pack('n n n n n n', $id, $reply_flags->($RCODE{FORMERR}),
            0, 0, 0, 0);
    }
    my ($qtype, $qclass) = unpack('n n', substr($msg, $off, 4));
    my $question = _encode_name($qname) . pack('n n', $qtype, $qclass);

    my $conf = eval {
        $JSON->decode(EventsTest::Daemon::slurp($self->{file}))
    } // { records => {} };
    my $rec = $conf->{records}{ _norm($qname) };
    my $ttl = $rec && defined $rec->{ttl} ? $rec->{ttl} : $conf->{ttl} // 1;

    my ($rcode, @answers) = ($RCODE{NOERROR});
    if (!$rec) {
        $rcode = $RCODE{NXDOMAIN};
    } elsif (defined $rec->{rcode}) {
        $rcode = $RCODE{ uc $rec->{rcode} };
    } elsif ($qclass == 1 && $qtype == 1) {
        @answers = map { [1, inet_pton(AF_INET, $_), $_] } @{ $rec->{a} // [] };
    } elsif ($qclass == 1 && $qtype == 28) {
        @answers = map { [28, inet_pton(AF_INET6, $_), $_] }
            @{ $rec->{aaaa} // [] };
    }

    $self->_log({
        time    => time,
        id      => $id,
        name    => _norm($qname),
        type    => $TYPE{$qtype} // $qtype,
        rcode   => { reverse %RCODE }->{$rcode},
        answers => [ map { $_->[2] } @answers ],
        dropped => $rec && $rec->{drop} ? JSON::PP::true : undef,
    });
    return if $rec && $rec->{drop};
    sleep $rec->{delay} if $rec && $rec->{delay};

    my $reply = pack('n n n n n n', $id, $reply_flags->($rcode), 1,
        scalar @answers, 0, 0) . $question;
    for my $a (@answers) {
        # the owner name: a pointer to the question's, at offset 12
        $reply .= pack('n n n N n', 0xC00C, $a->[0], 1, $ttl,
            length $a->[1]) . $a->[1];
    }
    return $reply;
}

sub _log {
    my ($self, $rec) = @_;
    delete $rec->{dropped} unless defined $rec->{dropped};
    my $line = $JSON->encode($rec) . "\n";
    sysopen(my $fh, $self->{log}, O_WRONLY | O_APPEND | O_CREAT) or return;
    flock($fh, LOCK_EX);
    syswrite($fh, $line);
    close $fh;
}

1;

__END__

=head1 NAME

EventsTest::DNS - a scripted authoritative DNS responder (UDP) for tests

=head1 METHODS

=over

=item new(dir => $dir, records => { name => [ipv4, ...] | {...} }, ttl => 1, name => 'dns1')

Forks the responder on 127.0.0.1, on a free UDP port reserved as
EventsTest::port() does.  Files: C<$dir/dns-$name.json> (the records,
re-read for every query), C<.log> (one JSON line per query), C<.err>.
A record is an array of IPv4 addresses, or a hash:

  a     => ['10.0.0.5', ...]    A answers
  aaaa  => ['::1', ...]         AAAA answers (default none: NOERROR,
                                empty answer section)
  ttl   => 0                    this record's TTL (default new()'s ttl)
  rcode => 'SERVFAIL'           answer every query for it with this
                                rcode (NOERROR FORMERR SERVFAIL NXDOMAIN
                                NOTIMP REFUSED)
  drop  => 1                    never answer (a resolver timeout)
  delay => 0.5                  seconds to wait before answering

Names are matched case-insensitively, without a trailing dot.  Unknown
names: NXDOMAIN.

=item port, pid, errors

=item resolver($params)

C<"resolver 127.0.0.1:PORT valid=1s;"> for nginx.conf;
C<$params> replaces C<valid=1s>.

=item set(name => [ips] | {...} | undef, ...)

Changes records at run time (the next query sees them; nginx's cache
keeps an old answer up to its C<valid=> time).  undef removes the name.

=item queries($name) / queries()

The queries received, oldest first: hashes with C<time> (epoch float),
C<id>, C<name> (lower case), C<type> (C<A>, C<AAAA>, ... or the number),
C<rcode> (as a name), C<answers> (the addresses sent), C<dropped>.

=item reset_log

=item stop

Kills the responder and reaps it; also on DESTROY and at END.

=back

=cut
