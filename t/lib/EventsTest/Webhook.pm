package EventsTest::Webhook;

# Standard Webhooks v1 (https://www.standardwebhooks.com/) in core Perl,
# for checking what ngx_http_events_module signs, plus a bridge to the
# reference npm library (t/node/verify-webhook.js, "standardwebhooks").
#
#     use EventsTest::Webhook qw(sign verify secret_bytes);
#
#     my $sig = sign('whsec_...', $msg_id, $ts, $body);   # 'v1,<b64>'
#     ok(verify('whsec_...', $req->{headers}, $req->{body}),
#         'signature verifies');
#     my @r = EventsTest::Webhook::node_verify(
#         { secret => 'whsec_...', headers => $req->{headers},
#           body => $req->{body} });
#     ok($r[0]{ok}, 'and so says the standardwebhooks library');
#
# signature = base64(HMAC-SHA256(secret_bytes, "$id.$ts.$body")),
# padded standard base64.  Beware Digest::SHA::hmac_sha256_base64: it
# leaves the "=" padding out; we encode with MIME::Base64 instead.
# POD at the end.

use strict;
use warnings;

use Carp qw(croak);
use Digest::SHA qw(hmac_sha256);
use Exporter qw(import);
use File::Basename qw(dirname);
use File::Temp qw(tempfile);
use JSON::PP;
use MIME::Base64 qw(decode_base64 encode_base64);
use POSIX ();

our @EXPORT_OK = qw(sign verify verify_error secret_bytes signatures
    new_secret node_verify node_script node_missing);

my $JSON = JSON::PP->new->utf8->canonical->allow_nonref;
my $NODE_DIR = dirname(__FILE__) . '/../../node';

# The key bytes of a "whsec_<base64>" secret (the prefix is optional;
# unpadded base64 is accepted, like the reference libraries).  undef if
# it is not base64 or decodes to nothing.
sub secret_bytes {
    my ($secret) = @_;
    return undef unless defined $secret;
    my $b64 = $secret =~ s/^whsec_//r;
    $b64 =~ s/=+$//;
    return undef unless $b64 =~ m{^[A-Za-z0-9+/]+$} && length($b64) % 4 != 1;
    $b64 .= '=' x ((4 - length($b64) % 4) % 4);
    my $key = decode_base64($b64);
    return length $key ? $key : undef;
}

# A fresh "whsec_" secret of $n random bytes (default 32).
sub new_secret {
    my ($n) = @_;
    $n //= 32;
    my $bytes = '';
    if (open(my $fh, '<:raw', '/dev/urandom')) {
        read($fh, $bytes, $n);
    }
    $bytes .= chr(int rand 256) while length $bytes < $n;
    return 'whsec_' . encode_base64($bytes, '');
}

sub _bytes {
    my ($s, $what) = @_;
    croak "$what must be bytes (encode it first)"
        unless utf8::downgrade($s, 1);
    return $s;
}

# 'v1,<base64>' for $body (bytes) sent as message $msg_id at $ts.
sub sign {
    my ($secret, $msg_id, $ts, $body) = @_;
    my $key = secret_bytes($secret) // croak "not a webhook secret: $secret";
    my $content = _bytes("$msg_id.$ts." . ($body // ''), 'the body');
    return 'v1,' . encode_base64(hmac_sha256($content, $key), '');
}

# The v1 signatures in a webhook-signature header value, in order.
sub signatures {
    my ($header) = @_;
    return map { /^v1,(.+)$/ ? $1 : () } split / +/, $header // '';
}

sub _header {
    my ($headers, $name) = @_;
    for my $k (keys %$headers) {
        return $headers->{$k} if lc $k eq $name;
    }
    return undef;
}

# undef when the message verifies, else why not.  $secret may be an
# array of secrets (any may match).  Options: tolerance => seconds
# (default 300), now => epoch seconds (default time).
sub verify_error {
    my ($secret, $headers, $body, %o) = @_;
    my $tolerance = $o{tolerance} // 300;
    my $now = $o{now} // time;

    my $id = _header($headers, 'webhook-id');
    my $ts = _header($headers, 'webhook-timestamp');
    my $sig = _header($headers, 'webhook-signature');
    return 'missing required headers'
        unless defined $id && defined $ts && defined $sig;
    return "bad webhook-timestamp '$ts'" unless $ts =~ /^\d+$/;
    return "timestamp too old ($ts, now $now)" if $now - $ts > $tolerance;
    return "timestamp too new ($ts, now $now)" if $ts - $now > $tolerance;

    my @given = signatures($sig);
    return "no v1 signature in '$sig'" unless @given;
    for my $s (ref $secret eq 'ARRAY' ? @$secret : $secret) {
        my $expected = (split /,/, sign($s, $id, $ts, $body), 2)[1];
        for my $g (@given) {
            # constant time, as a receiver should
            next unless length $g == length $expected;
            my $diff = 0;
            $diff |= ord(substr $g, $_, 1) ^ ord(substr $expected, $_, 1)
                for 0 .. length($g) - 1;
            return undef unless $diff;
        }
    }
    return 'no matching signature';
}

sub verify {
    my ($secret, $headers, $body, %o) = @_;
    return !defined verify_error($secret, $headers, $body, %o) ? 1 : 0;
}

###########################################################################
# The reference library, through node

sub node_script { "$NODE_DIR/verify-webhook.js" }

# Why node_verify() cannot run (undef when it can).
sub node_missing {
    my $node = grep { -x "$_/node" } split /:/, $ENV{PATH} // '';
    return 'node is not installed' unless $node;
    return "the standardwebhooks npm package is not installed in $NODE_DIR"
        . ' (make test, or npm ci there)'
        unless -e "$NODE_DIR/node_modules/standardwebhooks/package.json";
    return undef;
}

# Each item: { secret, headers, body (bytes), now (optional, epoch s) };
# returns one { ok => JSON true/false, error => '...' } per item, in
# order, from the standardwebhooks library's Webhook.verify.
sub node_verify {
    my (@items) = @_;
    my ($in, $file) = tempfile('webhook-verify-XXXXXXXX', TMPDIR => 1,
        UNLINK => 1);
    binmode $in;
    for my $i (@items) {
        my %line = (secret => $i->{secret}, headers => $i->{headers},
            body_b64 => encode_base64(_bytes($i->{body} // '', 'body'), ''));
        $line{now} = $i->{now} if defined $i->{now};
        print {$in} $JSON->encode(\%line), "\n";
    }
    close $in;

    my $pid = open(my $out, '-|') // croak "fork: $!";
    if (!$pid) {
        open(STDIN, '<', $file) or POSIX::_exit(127);
        exec('node', node_script()) or POSIX::_exit(127);
    }
    my @lines = <$out>;
    close $out;
    my $status = $?;
    unlink $file;
    my @r = map { eval { $JSON->decode($_) } // { ok => 0, error => $_ } }
        @lines;
    push @r, { ok => 0, error => "verify-webhook.js exited $status" }
        while @r < @items;
    return @r;
}

1;

__END__

=head1 NAME

EventsTest::Webhook - Standard Webhooks v1 signing and verification

=head1 FUNCTIONS (exportable)

=over

=item sign($secret, $msg_id, $ts, $body) -> 'v1,<base64>'

=item verify($secret, \%headers, $body, tolerance => 300, now => time) -> 1 / 0

Header names in any case; C<webhook-signature> may hold several
space-separated signatures (any match passes); C<$secret> may be an
array ref of secrets.  C<verify_error(...)>, same arguments: undef when
valid, else the reason.

=item secret_bytes($whsec) -> key bytes or undef

C<whsec_> prefix optional, padding optional.

=item signatures($header_value) -> list of base64 v1 signatures

=item new_secret($nbytes = 32) -> 'whsec_...'

=item node_verify({secret, headers, body, now}, ...) -> ({ok, error}, ...)

Runs t/node/verify-webhook.js (the C<standardwebhooks> npm library,
5-minute tolerance against C<now>, default the clock).
C<node_missing()> says why it cannot run, or undef.

=back

=cut
