#!/usr/bin/perl

# Tokens signed with public-key algorithms: keys made and tokens signed
# by the openssl command line; RS256, ES256 and EdDSA each accepted with
# its key and refused with another key; the token's alg must be its
# key's (an HS256 token whose secret is the public key is refused, and
# so is "none"); a JWKS picks keys by kid and is read again on reload;
# key files nginx cannot use fail nginx -t with the file and the line.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use JSON::PP;
use Digest::SHA qw(hmac_sha256);
use MIME::Base64 qw(encode_base64url);
use EventsTest;

my $t = EventsTest->new;
my $dir = $t->testdir;
my $json = JSON::PP->new->canonical;

sub openssl {
    my (@args) = @_;
    my $out = qx{openssl @args 2>&1};
    die "openssl @args: $out" if $?;
    return $out;
}

sub slurp {
    my ($f) = @_;
    open(my $fh, '<', $f) or die "$f: $!";
    binmode $fh;
    local $/;
    return scalar <$fh>;
}

# a private key NAME.pem and its public half NAME.pub
sub keypair {
    my ($name, @gen) = @_;
    openssl('genpkey', @gen, '-out', "$dir/$name.pem");
    openssl('pkey', '-in', "$dir/$name.pem", '-pubout', '-out',
        "$dir/$name.pub");
}

keypair('rsa', '-algorithm RSA -pkeyopt rsa_keygen_bits:2048');
keypair('rsa2', '-algorithm RSA -pkeyopt rsa_keygen_bits:2048');
keypair('ec', '-algorithm EC -pkeyopt ec_paramgen_curve:P-256');
keypair('ec2', '-algorithm EC -pkeyopt ec_paramgen_curve:P-256');
keypair('ed', '-algorithm ED25519');
keypair('ed2', '-algorithm ED25519');
keypair('rsa1024', '-algorithm RSA -pkeyopt rsa_keygen_bits:1024');
keypair('p384', '-algorithm EC -pkeyopt ec_paramgen_curve:P-384');

$t->write_file('hs.key', "s3cret-one\n");

sub b64 { encode_base64url($_[0]) }

# DER ECDSA-Sig-Value to JOSE's r || s, 32 bytes each
sub der_to_jose {
    my ($der) = @_;
    my @b = unpack('C*', $der);
    my $i = 2;
    $i++ if $b[1] & 0x80;
    my @ints;
    for (1 .. 2) {
        die 'not DER' unless $b[$i] == 2;
        my $len = $b[$i + 1];
        my $v = pack('C*', @b[$i + 2 .. $i + 1 + $len]);
        $v =~ s/^\x00+//;
        push @ints, ("\x00" x (32 - length $v)) . $v;
        $i += 2 + $len;
    }
    return join '', @ints;
}

# sign "$h.$p" with the private key NAME.pem as alg says
sub sign {
    my ($alg, $name, $input) = @_;
    my $in = "$dir/signing-input";
    open(my $fh, '>', $in) or die;
    binmode $fh;
    print $fh $input;
    close $fh;
    my $key = "$dir/$name.pem";
    return openssl('pkeyutl', '-sign', '-rawin', '-inkey', $key, '-in', $in)
        if $alg eq 'EdDSA';
    my $sig = openssl('dgst', '-sha256', '-binary', '-sign', $key, $in);
    return $alg eq 'ES256' ? der_to_jose($sig) : $sig;
}

my %grant = (tenant => 'acme', subscribe => ['ticket.*'], sub => 'u-1');

# a token: alg in the header, signed by key (a NAME, or HMAC secret bytes)
sub jwt {
    my (%o) = @_;
    my $header = { alg => $o{alg}, typ => 'JWT',
        (defined $o{kid} ? (kid => $o{kid}) : ()) };
    $header->{alg} = $o{header_alg} if $o{header_alg};
    my $h = b64($json->encode($header));
    my $p = b64($json->encode({ %grant, exp => time + 600,
        %{ $o{claims} // {} } }));
    my $sig = $o{hmac} ? hmac_sha256("$h.$p", $o{hmac})
        : sign($o{alg}, $o{key}, "$h.$p");
    return "$h.$p." . b64($sig);
}

sub auth { (headers => { Authorization => "Bearer $_[0]" }) }

# the public parts a JWKS carries
sub der_pub { openssl('pkey', '-pubin', '-in', "$dir/$_[0].pub",
    '-outform', 'DER') }

sub jwk {
    my ($name, $kid, %extra) = @_;
    my $der = der_pub($name);
    if ($name =~ /^rsa/) {
        my ($mod) = openssl('rsa', '-pubin', '-in', "$dir/$name.pub",
            '-modulus', '-noout') =~ /Modulus=([0-9A-F]+)/;
        return { kty => 'RSA', kid => $kid, use => 'sig', alg => 'RS256',
            n => b64(pack('H*', $mod)), e => 'AQAB', %extra };
    }
    if ($name =~ /^ec/) {
        my $pt = substr($der, -64);
        return { kty => 'EC', kid => $kid, crv => 'P-256',
            x => b64(substr($pt, 0, 32)), y => b64(substr($pt, 32)),
            %extra };
    }
    return { kty => 'OKP', kid => $kid, crv => 'Ed25519',
        x => b64(substr($der, -32)), %extra };
}

sub write_jwks {
    my (@keys) = @_;
    $t->write_file('jwks.json', $json->encode({ keys => \@keys }));
}

write_jwks(jwk('rsa', 'r1'), jwk('ec', 'e1'), jwk('ed', 'o1'),
    # skipped, not refused: an encryption key, a symmetric key, P-384
    { %{ jwk('rsa2', 'enc1') }, use => 'enc', alg => 'RSA-OAEP' },
    { kty => 'oct', kid => 'h1', k => b64('secret') },
    { kty => 'EC', kid => 'p384', crv => 'P-384', x => 'AA', y => 'AA' });

my $conf = <<'EOF';
%%GLOBALS%%
http {
    %%HTTP_GLOBALS%%

    events_zone main 4m;

    server {
        listen 127.0.0.1:%%PORT%%;

        events_auth on;
        events_auth_jwt_key %%TESTDIR%%/hs.key;     # where none is set below

        location /rsa/events {
            events_api main;
            events_auth_jwt_key %%TESTDIR%%/rsa.pub;
        }

        location /ec/events {
            events_api main;
            events_auth_jwt_key %%TESTDIR%%/ec.pub;
        }

        location /ed/events {
            events_api main;
            events_auth_jwt_key %%TESTDIR%%/ed.pub;
        }

        location /mixed/events {
            events_api main;
            events_auth_jwt_key %%TESTDIR%%/hs.key;
            events_auth_jwt_key %%TESTDIR%%/rsa.pub;
            events_auth_jwt_key %%TESTDIR%%/ec.pub kid=ec-kid;
        }

        location /jwks/events {
            events_api main;
            events_auth_jwt_key %%TESTDIR%%/jwks.json;
        }
    }
}
EOF

$t->write_config($conf);
$t->run;

sub status_of { $t->get($_[0], auth($_[1]))->{status} }

sub refused {
    my ($path, $tok, $message, $name) = @_;
    my $r = $t->get($path, auth($tok));
    $t->is_error($r, 401, 'invalid_token', undef, $name);
    like($r->{body} // '', qr/\Q$message\E/, "$name: $message");
}

###########################################################################
# Each alg with its key, from both workers

for my $i (1 .. 4) {
    is(status_of('/rsa/events', jwt(alg => 'RS256', key => 'rsa')), 200,
        "RS256 with the RSA key ($i)");
}
is(status_of('/ec/events', jwt(alg => 'ES256', key => 'ec')), 200,
    'ES256 with the P-256 key');
is(status_of('/ed/events', jwt(alg => 'EdDSA', key => 'ed')), 200,
    'EdDSA with the Ed25519 key');

refused('/rsa/events', jwt(alg => 'RS256', key => 'rsa2'),
    "the token's signature is wrong", 'RS256 by another RSA key');
refused('/ec/events', jwt(alg => 'ES256', key => 'ec2'),
    "the token's signature is wrong", 'ES256 by another EC key');
refused('/ed/events', jwt(alg => 'EdDSA', key => 'ed2'),
    "the token's signature is wrong", 'EdDSA by another Ed25519 key');

my $tok = jwt(alg => 'RS256', key => 'rsa');
my ($h, $p, $s) = split /\./, $tok;
refused('/rsa/events', join('.', $h,
    b64($json->encode({ %grant, tenant => 'beta', exp => time + 600 })), $s),
    "the token's signature is wrong", 'RS256: a changed payload');

# ES256 signatures are r || s, 64 bytes: DER is not JOSE
my $der_tok = do {
    my $hh = b64($json->encode({ alg => 'ES256' }));
    my $pp = b64($json->encode({ %grant, exp => time + 600 }));
    my $in = "$dir/signing-input";
    open(my $fh, '>', $in) or die; print $fh "$hh.$pp"; close $fh;
    "$hh.$pp." . b64(openssl('dgst', '-sha256', '-binary', '-sign',
        "$dir/ec.pem", $in));
};
refused('/ec/events', $der_tok, "the token's signature is malformed",
    'ES256 with a DER signature');

###########################################################################
# The alg must be the key's

# the confusion attack: the public key's bytes as an HMAC secret, as
# the file holds them and without the last newline
(my $pem = slurp("$dir/rsa.pub")) =~ s/\n+\z//;
for my $secret ($pem, "$pem\n") {
    my $nl = $secret =~ /\n\z/ ? ', newline' : '';
    refused('/rsa/events', jwt(alg => 'HS256', hmac => $secret),
        "no key for the token's kid and alg",
        "HS256 with the RSA public key as secret$nl");
    refused('/mixed/events', jwt(alg => 'HS256', hmac => $secret),
        "the token's signature is wrong",
        "HS256 with the public key as secret, beside an HS256 key$nl");
}
is(status_of('/mixed/events', jwt(alg => 'HS256', hmac => 's3cret-one')),
    200, 'beside public keys, the HS256 secret still works');
is(status_of('/mixed/events', jwt(alg => 'RS256', key => 'rsa')), 200,
    'beside an HS256 secret, RS256 works');
is(status_of('/mixed/events', jwt(alg => 'ES256', key => 'ec',
    kid => 'ec-kid')), 200, 'kid= names a PEM key');
refused('/mixed/events', jwt(alg => 'ES256', key => 'ec'),
    "no key for the token's kid and alg", 'a PEM key with kid= needs the kid');
refused('/ec/events', jwt(alg => 'RS256', key => 'rsa'),
    "no key for the token's kid and alg", 'RS256 where the key is EC');
refused('/rsa/events', jwt(alg => 'RS256', key => 'rsa',
    header_alg => 'PS256'), "the token's alg is not allowed",
    'PS256 is not RS256');
refused('/ed/events', jwt(alg => 'ES256', key => 'ec', header_alg => 'EdDSA'),
    "the token's signature is wrong", 'an ES256 signature as EdDSA');
refused('/rsa/events', b64('{"alg":"none"}') . '.'
    . b64($json->encode({ %grant, exp => time + 600 })) . '.',
    'not a JWT', 'alg none, unsigned');
refused('/rsa/events', b64('{"alg":"none"}') . '.'
    . b64($json->encode({ %grant, exp => time + 600 })) . '.' . b64('x'),
    "the token's alg is not allowed", 'alg none with a signature');

###########################################################################
# JWKS: keys by kid

is(status_of('/jwks/events', jwt(alg => 'RS256', key => 'rsa', kid => 'r1')),
    200, 'JWKS: RS256 by kid');
is(status_of('/jwks/events', jwt(alg => 'ES256', key => 'ec', kid => 'e1')),
    200, 'JWKS: ES256 by kid');
is(status_of('/jwks/events', jwt(alg => 'EdDSA', key => 'ed', kid => 'o1')),
    200, 'JWKS: EdDSA by kid');
refused('/jwks/events', jwt(alg => 'RS256', key => 'rsa', kid => 'r9'),
    "no key for the token's kid and alg", 'JWKS: an unknown kid');
refused('/jwks/events', jwt(alg => 'RS256', key => 'rsa'),
    "no key for the token's kid and alg", 'JWKS: no kid');
refused('/jwks/events', jwt(alg => 'ES256', key => 'ec', kid => 'r1'),
    "no key for the token's kid and alg", 'JWKS: the kid of a key of '
    . 'another type');
refused('/jwks/events', jwt(alg => 'RS256', key => 'rsa2', kid => 'enc1'),
    "no key for the token's kid and alg", 'JWKS: an encryption key is '
    . 'not used');
refused('/jwks/events', jwt(alg => 'HS256', hmac => 'secret', kid => 'h1'),
    "no key for the token's kid and alg", 'JWKS: a symmetric key is '
    . 'not used');
refused('/jwks/events', jwt(alg => 'RS256', key => 'rsa2', kid => 'r1'),
    "the token's signature is wrong", 'JWKS: the kid, another key');

# the JWKS is read again on reload: a rotated key
write_jwks(jwk('rsa2', 'r2'), jwk('ec', 'e1'));
ok($t->reload, 'reload with a rotated JWKS');
for my $i (1 .. 3) {
    is(status_of('/jwks/events', jwt(alg => 'RS256', key => 'rsa2',
        kid => 'r2')), 200, "after reload: the new key ($i)");
}
refused('/jwks/events', jwt(alg => 'RS256', key => 'rsa', kid => 'r1'),
    "no key for the token's kid and alg", 'after reload: the old key is gone');

# a broken JWKS at reload: refused, the old keys stay
$t->write_file('jwks.json', '{"keys": [');
$t->expect_log(qr/the JWKS .* is not JSON/);
ok(!$t->reload, 'a reload with a broken JWKS is refused');
is(status_of('/jwks/events', jwt(alg => 'RS256', key => 'rsa2',
    kid => 'r2')), 200, 'the keys before it still work');
write_jwks(jwk('rsa2', 'r2'), jwk('ec', 'e1'));

###########################################################################
# Key files nginx cannot use: nginx -t says which and where

sub nginx_t {
    my ($file, $param) = @_;
    my $t2 = EventsTest->new;
    $t2->write_config(<<"EOF");
%%GLOBALS%%
http {
    %%HTTP_GLOBALS%%

    events_zone main 4m;

    server {
        listen 127.0.0.1:%%PORT%%;

        location /events {
            events_api main;
            events_auth on;
            events_auth_jwt_key $file$param;
        }
    }
}
EOF
    my ($ok, $out) = $t2->_test_config;
    my @lines = split /\n/, $t2->read_file('nginx.conf');
    my ($line) = grep { $lines[$_ - 1] =~ /events_auth_jwt_key/ } 1 .. @lines;
    return 'accepted' if $ok;
    return $out =~ s/nginx\.conf:$line\b/nginx.conf:LINE/r;
}

sub bad_file {
    my ($text, $re, $name, $param) = @_;
    my $f = "$dir/bad-" . ($name =~ s/\W+/-/gr);
    open(my $fh, '>', $f) or die;
    binmode $fh;
    print $fh $text;
    close $fh;
    like(nginx_t($f, $param // ''),
        qr/\[emerg\] .*\Q$re\E.* in \S+nginx\.conf:LINE/, "nginx -t: $name");
}

like(nginx_t("$dir/none.pub", ''),
    qr/\[emerg\] open\(\) "\Q$dir\E\/none\.pub" failed .* in \S+nginx\.conf:LINE/,
    'nginx -t: a missing key file');
bad_file(slurp("$dir/rsa.pem"), 'holds a private key; give nginx the public '
    . 'key', 'a private key');
bad_file("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
    'is not a PEM public key', 'a broken PEM');
bad_file(slurp("$dir/rsa1024.pub"), 'an RSA key must have 2048 bits or more',
    'a 1024-bit RSA key');
bad_file(slurp("$dir/p384.pub"), 'an EC key must be on P-256 (ES256)',
    'a P-384 key');
bad_file('{"keys": [', 'is not JSON', 'a JWKS that is not JSON');
bad_file('{"kty": "RSA"}', 'has no "keys" list', 'a JWK, not a JWKS');
bad_file('{"keys": [{"kty":"oct","k":"AAAA"}]}', 'has no signing key of type',
    'a JWKS with no key to use');
bad_file($json->encode({ keys => [ { kty => 'RSA', kid => 'x', e => 'AQAB' }
    ] }), 'key 0 (kid "x"): "n" and "e" must be base64url',
    'a JWKS RSA key without n');
bad_file($json->encode({ keys => [ jwk('ec', 'e1'),
    { %{ jwk('ec', 'e2') }, x => b64('short') } ] }),
    'key 1 (kid "e2"): "x" and "y" must be 32 bytes in base64url',
    'a JWKS EC key with a short x');
bad_file($json->encode({ keys => [ { %{ jwk('ec', 'e3') },
    y => b64("\x01" x 32) } ] }), 'key 0 (kid "e3"): not a point of P-256',
    'a JWKS EC point off the curve');
bad_file($json->encode({ keys => [ jwk('rsa', 'r1') ] }),
    '"kid=" does not apply to the JWKS', 'kid= on a JWKS', ' kid=k');
bad_file("\n\n", 'the HS256 secret in', 'a secret of newlines');
is(nginx_t("$dir/jwks.json", ''), 'accepted', 'nginx -t: the good JWKS');

$t->done;
