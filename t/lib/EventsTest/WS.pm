package EventsTest::WS;

# A WebSocket client on a raw socket, for tests that need the bytes:
# the handshake's answer as sent, frames as they come (unmasked from a
# server), and frames a real client would never send (unmasked ones,
# oversize control frames).
#
#     my $ws = EventsTest::WS->open($t, '/events/stream?types=a.*');
#     is($ws->status, 101);
#     my $f = $ws->frame(timeout => 2);   # {fin, opcode, payload, json}
#     $ws->send_frame(0x9, 'ping');       # masked unless unmasked => 1
#
# open() sends the RFC 6455 handshake (key => and headers => may
# override or, with undef, drop any of its headers) and reads the answer
# head; a non-101 answer's body is read to its end.  With
# permessage-deflate answered, a message with RSV1 is inflated: its
# payload is the message, {deflated} the bytes on the wire.

use strict;
use warnings;

use Compress::Raw::Zlib;
use IO::Select;
use IO::Socket::IP;
use JSON::PP;
use MIME::Base64 qw(encode_base64);
use Time::HiRes qw(time);

use EventsTest;

my $JSON = JSON::PP->new->utf8;

sub open {
    my ($class, $t, $path, %o) = @_;
    my $self = bless { t => $t, buf => '', frames => [] }, $class;
    my $port = $t->port($o{port} // 1);
    my $key = $o{key} // encode_base64(join('', map { chr rand 256 } 1 .. 16),
        '');

    my %h = (Host => "127.0.0.1:$port", Upgrade => 'websocket',
        Connection => 'Upgrade', 'Sec-WebSocket-Key' => $key,
        'Sec-WebSocket-Version' => 13, %{ $o{headers} // {} });
    my $req = "GET $path " . ($o{version} // 'HTTP/1.1') . "\r\n";
    for my $name (sort keys %h) {
        $req .= "$name: $h{$name}\r\n" if defined $h{$name};
    }
    $req .= "\r\n" . ($o{after} // '');

    my $sock = IO::Socket::IP->new(PeerHost => '127.0.0.1', PeerPort => $port,
        Proto => 'tcp', Timeout => 5) or die "connect: $@";
    local $SIG{PIPE} = 'IGNORE';
    syswrite($sock, $req) == length $req or die "write: $!";
    $sock->blocking(0);
    $self->{sock} = $sock;
    $self->{select} = IO::Select->new($sock);

    my $deadline = time + $t->scale($o{timeout} // 5);
    until ($self->{buf} =~ /\r\n\r\n/) {
        last unless $self->_read($deadline);
    }
    my $end = index($self->{buf}, "\r\n\r\n");
    return $self if $end < 0;

    $self->{head} = substr($self->{buf}, 0, $end + 4, '');
    my ($status, @lines) = split /\r\n/, $self->{head};
    ($self->{status}) = $status =~ m{^HTTP/1\.[01] (\d{3})};
    for (@lines) {
        my ($n, $v) = /^([^:]+):\s*(.*)$/ or next;
        $self->{headers}{ lc $n } = $v;
    }

    my $ext = $self->{headers}{'sec-websocket-extensions'} // '';
    if ($ext =~ /^permessage-deflate\b/) {
        $self->{bits} = $ext =~ /server_max_window_bits=(\d+)/ ? $1 : 15;
    }

    if (($self->{status} // 0) != 101) {
        my $len = $self->{headers}{'content-length'} // 0;
        while (length $self->{buf} < $len) {
            last unless $self->_read($deadline);
        }
        $self->{body} = $self->{buf};
    }
    return $self;
}

sub status { $_[0]{status} }
sub head { $_[0]{head} }
sub headers { $_[0]{headers} // {} }
sub body { $_[0]{body} }
sub eof { $_[0]{eof} }

sub _read {
    my ($self, $deadline) = @_;
    my $left = $deadline - time;
    return 0 if $left <= 0 || $self->{eof};
    return 1 unless $self->{select}->can_read($left);
    my $n = sysread($self->{sock}, my $chunk, 65536);
    if (!defined $n) {
        return 1 if $!{EAGAIN} || $!{EINTR};
        $self->{eof} = 1;
        return 0;
    }
    if ($n == 0) {
        $self->{eof} = 1;
        return 0;
    }
    $self->{buf} .= $chunk;
    $self->{raw} .= $chunk;
    return 1;
}

# Every byte read after the head, frames taken or not.
sub raw { $_[0]{raw} }

# The next frame, or undef at the timeout (default 2) or the end.
sub frame {
    my $self = shift;
    my %o = @_ == 1 ? (timeout => $_[0]) : @_;
    my $deadline = time + $self->{t}->scale($o{timeout} // 2);
    while (1) {
        my $f = $self->_parse;
        return $f if $f;
        return undef unless $self->_read($deadline);
    }
}

# Frames until $cond->($frame) is true, a timeout or the end.
sub frames_until {
    my ($self, $cond, %o) = @_;
    my $deadline = time + $self->{t}->scale($o{timeout} // 5);
    my @got;
    while (time < $deadline) {
        my $f = $self->frame(timeout => $deadline - time) or last;
        push @got, $f;
        last if $cond->($f);
    }
    return @got;
}

sub _parse {
    my ($self) = @_;
    my $b = \$self->{buf};
    return undef if length $$b < 2;
    my ($b0, $b1) = unpack('CC', $$b);
    my $len = $b1 & 0x7f;
    my $off = 2;
    if ($len == 126) {
        return undef if length $$b < 4;
        $len = unpack('n', substr($$b, 2, 2));
        $off = 4;
    } elsif ($len == 127) {
        return undef if length $$b < 10;
        $len = unpack('Q>', substr($$b, 2, 8));
        $off = 10;
    }
    my $masked = $b1 & 0x80;
    $off += 4 if $masked;
    return undef if length $$b < $off + $len;
    my $payload = substr($$b, $off, $len);
    substr($$b, 0, $off + $len, '');
    my $f = { fin => ($b0 >> 7) & 1, rsv => ($b0 >> 4) & 7,
        opcode => $b0 & 0xf, masked => !!$masked, len => $len,
        payload => $payload };
    if ($f->{rsv} & 4 && $self->{bits} && $f->{opcode} <= 2 && $f->{fin}) {
        $f->{deflated} = $payload;
        $f->{payload} = inflate($payload, $self->{bits});
    }
    if ($f->{opcode} == 0x8 && $len >= 2) {
        $f->{code} = unpack('n', $payload);
        $f->{reason} = substr($payload, 2);
    }
    $f->{json} = eval { $JSON->decode($f->{payload}) } if $f->{opcode} == 0x1;
    return $f;
}

# A message compressed alone (RFC 7692 7.2.2: its 00 00 ff ff put back).
sub inflate {
    my ($bytes, $bits) = @_;
    my $i = Compress::Raw::Zlib::Inflate->new(-WindowBits => -($bits // 15));
    my $in = $bytes . "\x00\x00\xff\xff";
    my $out = '';
    my $st = $i->inflate($in, $out);
    return ($st == Z_OK || $st == Z_STREAM_END) ? $out : undef;
}

# The bytes of a client frame: masked (as a client must) unless told.
sub frame_bytes {
    my ($class, $opcode, $payload, %o) = @_;
    my $fin = $o{fin} // 1;
    my $len = length $payload;
    my $bytes = pack('C', ($fin ? 0x80 : 0) | ($o{rsv} // 0) << 4 | $opcode);
    my $m = $o{unmasked} ? 0 : 0x80;
    if ($len < 126) {
        $bytes .= pack('C', $m | $len);
    } elsif ($len < 65536) {
        $bytes .= pack('Cn', $m | 126, $len);
    } else {
        $bytes .= pack('CQ>', $m | 127, $len);
    }
    return $bytes . $payload if $o{unmasked};
    my $mask = join '', map { chr rand 256 } 1 .. 4;
    my $x = $payload ^ substr($mask x (int($len / 4) + 1), 0, $len);
    return $bytes . $mask . $x;
}

sub send_frame {
    my ($self, $opcode, $payload, %o) = @_;
    my $bytes = ref($self)->frame_bytes($opcode, $payload, %o);
    local $SIG{PIPE} = 'IGNORE';
    $self->{sock}->blocking(1);
    my $n = syswrite($self->{sock}, $bytes);
    $self->{sock}->blocking(0);
    return ($n // -1) == length $bytes;
}

sub close {
    my ($self) = @_;
    CORE::close(delete $self->{sock}) if $self->{sock};
    $self->{eof} = 1;
    return $self;
}

sub DESTROY { $_[0]->close }

1;
