package EventsTest::SSE;

# A Server-Sent Events client on a raw socket, for tests.
#
#     my $s = EventsTest::SSE->open($t, '/events/stream',
#         last_event_id => 42, timeout => 5);
#     is($s->status, 200, 'stream');
#     my $e = $s->next_event(timeout => 2);  # {id, event, data, json, ...}
#
# The HTTP body (chunked, Content-Length or up to EOF) is decoded as it
# arrives and parsed by the rules of the WHATWG HTML standard, "Server-
# sent events", section "Event stream interpretation":
#
# - a leading UTF-8 BOM is dropped; lines end in CRLF, LF or CR (a CR
#   ending one read and an LF starting the next are one line end);
# - an empty line dispatches the event; a line starting with ':' is a
#   comment; otherwise the field name is up to the first ':', the value
#   after it minus one leading space (no ':': the whole line is the
#   name and the value is empty);
# - data: appends value and LF to the data buffer; event: sets the
#   type; id: sets the last event ID unless the value contains NUL;
#   retry: sets the reconnection time if the value is all ASCII digits;
#   other fields are ignored;
# - on dispatch the last event ID is updated even when the data buffer
#   is empty, but then no event is dispatched; the trailing LF of the
#   data is removed and an empty type means "message";
# - at the end of the stream an incomplete event is discarded.
#
# The parser also works without a socket, on bytes given to feed().

use strict;
use warnings;

use Carp qw(croak);
use IO::Select;
use IO::Socket::IP;
use JSON::PP;
use Time::HiRes qw(time);

use EventsTest;

my $JSON = JSON::PP->new->allow_nonref;

# An unconnected parser: feed() it body bytes, finish() it at the end.
sub parser {
    my ($class, %o) = @_;
    return bless {
        t             => $o{t},
        queue         => [],
        comments      => [],
        lines         => '',
        data          => '',
        type          => '',
        id_buffer     => '',
        last_event_id => $o{last_event_id} // '',
        retry         => undef,
        bom_checked   => 0,
        skip_lf       => 0,
        eof           => 0,
        closed        => 0,
        # decode => 0 skips JSON::PP on each event, for bulk readers
        decode        => $o{decode} // 1,
    }, $class;
}

sub open {
    my ($class, $t, $path, %o) = @_;
    my $self = $class->parser(t => $t, %o);
    my $deadline = time + $self->_scale($o{timeout} // 5);
    my $port = $t->port($o{port} // 1);

    my @headers = EventsTest::_header_pairs($o{headers});
    my %given = map { lc $_->[0] => 1 } @headers;
    for (['Accept', 'text/event-stream'], ['Cache-Control', 'no-cache'],
        ['Last-Event-ID', $o{last_event_id}])
    {
        unshift @headers, $_ unless $given{ lc $_->[0] };
    }
    my $request = $t->request_bytes('GET', $path, port => $o{port},
        headers => \@headers);

    $self->{reader} = EventsTest::Reader->new(method => 'GET');
    my $sock = IO::Socket::IP->new(PeerHost => '127.0.0.1',
        PeerPort => $port, Proto => 'tcp',
        Timeout => $self->_scale($o{timeout} // 5));
    unless ($sock) {
        @{$self}{qw(error eof)} = ("connect: $@", 1);
        return $self;
    }

    # A short request on a fresh connection: one write does it.
    local $SIG{PIPE} = 'IGNORE';
    unless ((syswrite($sock, $request) // -1) == length $request) {
        @{$self}{qw(error eof)} = ("write: $!", 1);
        return $self;
    }
    $sock->blocking(0);
    $self->{sock} = $sock;
    $self->{select} = IO::Select->new($sock);

    while (!$self->{reader}->headers_done && !$self->{eof}) {
        my $left = $deadline - time;
        if ($left <= 0) {
            @{$self}{qw(error eof)} = ('timeout waiting for headers', 1);
            last;
        }
        $self->_read($left);
    }
    return $self;
}

sub _scale {
    my ($self, $seconds) = @_;
    return $self->{t} ? $self->{t}->scale($seconds) : $seconds;
}

sub status {
    my $r = $_[0]{reader};
    return $r && $r->headers_done ? $r->{status} + 0 : undef;
}
sub headers { $_[0]{reader} ? $_[0]{reader}{headers} : {} }
sub raw_headers { $_[0]{reader} ? $_[0]{reader}{raw_headers} : [] }
sub error { $_[0]{error} }
sub last_event_id { $_[0]{last_event_id} }
sub retry { $_[0]{retry} }
sub comments { @{ $_[0]{comments} } }

# True once the body ended by its framing: a zero-length last chunk,
# Content-Length reached, or EOF on a body delimited by the close.
sub is_closed { $_[0]{closed} }

# True once no more bytes will come, cleanly or not.
sub is_eof { $_[0]{eof} }

# One read of what the socket has, waiting at most $left seconds.
sub _read {
    my ($self, $left) = @_;
    my $reader = $self->{reader};
    return unless $self->{select}->can_read($left);

    my $n = sysread($self->{sock}, my $buf, 65536);
    if (!defined $n) {
        return if $!{EAGAIN} || $!{EINTR};
        $self->{error} = "read: $!";
        $n = 0;
    }
    if ($n == 0) {
        $reader->eof;
        $self->{error} //= 'connection closed before the end of the body'
            unless $reader->complete;
        return $self->_end;
    }

    $reader->feed($buf);
    if ($reader->{error}) {
        $self->{error} = $reader->{error};
        return $self->_end;
    }
    return unless $reader->headers_done;

    # The body decoded so far, less what was parsed before.
    my $body = substr($reader->{body}, $self->{taken} // 0);
    $self->{taken} = length $reader->{body};
    $self->feed($body) if length $body;
    $self->_end if $reader->complete;
}

sub _end {
    my ($self) = @_;
    my $reader = $self->{reader};
    $self->{closed} = 1
        if $reader && $reader->complete && !$self->{error};
    $self->finish;
}

# Parse body bytes (for a socket-less parser, or after de-chunking).
sub feed {
    my ($self, $bytes) = @_;
    return if $self->{eof};
    my $buf = \$self->{lines};
    $$buf .= $bytes;

    if ($self->{skip_lf} && length $$buf) {
        $$buf =~ s/\A\n//;
        $self->{skip_lf} = 0;
    }
    unless ($self->{bom_checked}) {
        # Wait until we know whether the first bytes are the BOM.
        return if length $$buf < 3 && "\xEF\xBB\xBF" =~ /^\Q$$buf\E/;
        $$buf =~ s/\A\xEF\xBB\xBF//;
        $self->{bom_checked} = 1;
    }

    pos($$buf) = 0;
    while ($$buf =~ /\G([^\r\n]*)(\r\n?|\n)/gc) {
        my ($line, $eol) = ($1, $2);
        # A CR last in the buffer: an LF may yet come that belongs to it.
        $self->{skip_lf} = 1
            if $eol eq "\r" && pos($$buf) == length $$buf;
        $self->_line($line);
    }
    substr($$buf, 0, pos($$buf) // 0, '');
}

# End of the stream: what is not a whole event is dropped.
sub finish {
    my ($self) = @_;
    $self->{eof} = 1;
    @{$self}{qw(lines data type)} = ('', '', '');
}

sub _line {
    my ($self, $line) = @_;
    utf8::decode($line);    # stays bytes if it is not UTF-8

    return $self->_dispatch if $line eq '';

    if ($line =~ /^:(.*)/s) {
        (my $comment = $1) =~ s/^ //;
        push @{ $self->{comments} }, $comment;
        return;
    }

    my ($field, $value) = $line =~ /^([^:]*):(.*)/s ? ($1, $2) : ($line, '');
    $value =~ s/^ //;

    if ($field eq 'data') {
        $self->{data} .= "$value\n";
    } elsif ($field eq 'event') {
        $self->{type} = $value;
    } elsif ($field eq 'id') {
        $self->{id_buffer} = $value unless $value =~ /\0/;
    } elsif ($field eq 'retry') {
        $self->{retry} = $self->{block_retry} = $value + 0
            if $value =~ /^[0-9]+$/;
    }
}

sub _dispatch {
    my ($self) = @_;
    $self->{last_event_id} = $self->{id_buffer};
    my $retry = delete $self->{block_retry};

    my ($data, $type) = @{$self}{qw(data type)};
    @{$self}{qw(data type)} = ('', '');
    return if $data eq '';

    $data =~ s/\n\z//;
    push @{ $self->{queue} }, {
        id    => $self->{last_event_id},
        event => length $type ? $type : 'message',
        data  => $data,
        json  => $self->{decode} ? scalar eval { $JSON->decode($data) }
                                 : undef,
        retry => $retry,
    };
}

# The next event, waiting at most timeout seconds (default 2); undef on
# timeout or at the end of the stream.  next_event(2) also works.
sub next_event {
    my $self = shift;
    my %o = @_ == 1 ? (timeout => $_[0]) : @_;
    return $self->_next_event(time + $self->_scale($o{timeout} // 2));
}

sub _next_event {
    my ($self, $deadline) = @_;
    while (1) {
        return shift @{ $self->{queue} } if @{ $self->{queue} };
        return undef if $self->{eof} || !$self->{sock};
        my $left = $deadline - time;
        return undef if $left <= 0;
        $self->_read($left);
    }
}

# Events up to and including the first for which $cond->($event) is
# true, or all that came before the timeout (default 5) or the end.
sub events_until {
    my ($self, $cond, @rest) = @_;
    my %o = @rest == 1 ? (timeout => $rest[0]) : @rest;
    my $deadline = time + $self->_scale($o{timeout} // 5);

    my @events;
    while (my $e = $self->_next_event($deadline)) {
        push @events, $e;
        last if $cond->($e);
    }
    return @events;
}

# The rest of the body, raw (for a reply that is not a stream, such as
# a JSON error), read until its end or the timeout (default 5).
sub body {
    my ($self, %o) = @_;
    my $deadline = time + $self->_scale($o{timeout} // 5);
    while ($self->{sock} && !$self->{eof}) {
        my $left = $deadline - time;
        last if $left <= 0;
        $self->_read($left);
    }
    return $self->{reader} ? $self->{reader}{body} : '';
}

sub json {
    my ($self, %o) = @_;
    return scalar eval { JSON::PP->new->utf8->decode($self->body(%o)) };
}

sub close {
    my ($self) = @_;
    CORE::close(delete $self->{sock}) if $self->{sock};
    delete $self->{select};
    $self->{eof} = 1;
    return $self;
}

sub DESTROY { $_[0]->close }

1;
