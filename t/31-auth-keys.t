#!/usr/bin/perl

# Tokens signed with public-key algorithms: keys made and tokens signed
# by the openssl command line; RS256, ES256 and EdDSA each accepted with
# its key and refused with another key; the token's alg must be its
# key's (an HS256 token whose secret is the public key is refused, and
# so is "none"); a JWKS picks keys by kid and is read again on reload;
# key files nginx cannot use fail nginx -t with the file and the line.
# Then the other algs: RS384, RS512, PS256, PS384, PS512 on an RSA key
# told alg=, ES384 and ES512 by the curve, HS384 and HS512 on a secret
# told alg=, and JWKS keys with "alg"; each key verifies its one alg
# only, and an alg= that does not fit the key fails nginx -t.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use JSON::PP;
use Digest::SHA qw(hmac_sha256 hmac_sha384 hmac_sha512);
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
keypair('p384b', '-algorithm EC -pkeyopt ec_paramgen_curve:P-384');
keypair('p521', '-algorithm EC -pkeyopt ec_paramgen_curve:P-521');
keypair('k256', '-algorithm EC -pkeyopt ec_paramgen_curve:secp256k1');
keypair('pss', '-algorithm RSA-PSS -pkeyopt rsa_keygen_bits:2048');

$t->write_file('hs.key', "s3cret-one\n");

sub b64 { encode_base64url($_[0]) }

# DER ECDSA-Sig-Value to JOSE's r || s, $n bytes each (32, 48, 66)
sub der_to_jose {
    my ($der, $n) = @_;
    $n //= 32;
    my @b = unpack('C*', $der);
    my $i = 2;
    $i++ if $b[1] & 0x80;
    my @ints;
    for (1 .. 2) {
        die 'not DER' unless $b[$i] == 2;
        my $len = $b[$i + 1];
        my $v = pack('C*', @b[$i + 2 .. $i + 1 + $len]);
        $v =~ s/^\x00+//;
        push @ints, ("\x00" x ($n - length $v)) . $v;
        $i += 2 + $len;
    }
    return join '', @ints;
}

my %coord = (256 => 32, 384 => 48, 512 => 66);

# sign "$h.$p" with the private key NAME.pem as alg says; @more: more
# openssl dgst options (a PSS salt length that is not the hash's)
sub sign {
    my ($alg, $name, $input, @more) = @_;
    my $in = "$dir/signing-input";
    open(my $fh, '>', $in) or die;
    binmode $fh;
    print $fh $input;
    close $fh;
    my $key = "$dir/$name.pem";
    return openssl('pkeyutl', '-sign', '-rawin', '-inkey', $key, '-in', $in)
        if $alg eq 'EdDSA';
    my ($kind, $bits) = $alg =~ /^(RS|PS|ES)(256|384|512)\z/
        or die "alg $alg";
    my @pss = $kind eq 'PS' ? ('-sigopt', 'rsa_padding_mode:pss',
        '-sigopt', 'rsa_pss_saltlen:digest') : ();
    my $sig = openssl('dgst', "-sha$bits", '-binary', '-sign', $key, @pss,
        @more, $in);
    return $kind eq 'ES' ? der_to_jose($sig, $coord{$bits}) : $sig;
}

my %hmac = (HS256 => \&hmac_sha256, HS384 => \&hmac_sha384,
    HS512 => \&hmac_sha512);

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
    my $sig = $o{hmac} ? $hmac{ $o{alg} }->("$h.$p", $o{hmac})
        : sign($o{alg}, $o{key}, "$h.$p", @{ $o{dgst} // [] });
    return "$h.$p." . b64($sig);
}

sub auth { (headers => { Authorization => "Bearer $_[0]" }) }

# the public parts a JWKS carries
sub der_pub { openssl('pkey', '-pubin', '-in', "$dir/$_[0].pub",
    '-outform', 'DER') }

# a JWK of the public key NAME.pub; %extra adds members, or removes
# those it gives undef
sub jwk {
    my ($name, $kid, %extra) = @_;
    my $der = der_pub($name);
    my $k;
    if ($name =~ /^rsa/) {
        my ($mod) = openssl('rsa', '-pubin', '-in', "$dir/$name.pub",
            '-modulus', '-noout') =~ /Modulus=([0-9A-F]+)/;
        $k = { kty => 'RSA', kid => $kid, use => 'sig', alg => 'RS256',
            n => b64(pack('H*', $mod)), e => 'AQAB' };
    } elsif ($name =~ /^(ec|p384|p521)/) {
        my ($crv, $n) = $name =~ /^p384/ ? ('P-384', 48)
            : $name =~ /^p521/ ? ('P-521', 66) : ('P-256', 32);
        my $pt = substr($der, -2 * $n);
        $k = { kty => 'EC', kid => $kid, crv => $crv,
            x => b64(substr($pt, 0, $n)), y => b64(substr($pt, $n)) };
    } else {
        $k = { kty => 'OKP', kid => $kid, crv => 'Ed25519',
            x => b64(substr($der, -32)) };
    }
    %$k = (%$k, %extra);
    delete @$k{ grep { !defined $k->{$_} } keys %$k };
    return $k;
}

sub write_jwks {
    my (@keys) = @_;
    $t->write_file('jwks.json', $json->encode({ keys => \@keys }));
}

write_jwks(jwk('rsa', 'r1'), jwk('ec', 'e1'), jwk('ed', 'o1'),
    # skipped, not refused: encryption keys (by use, by alg), a
    # symmetric key, a curve not verified here
    { %{ jwk('rsa2', 'enc1') }, use => 'enc', alg => 'RSA-OAEP' },
    jwk('rsa2', 'enc2', use => undef, alg => 'RSA-OAEP-256'),
    { kty => 'oct', kid => 'h1', k => b64('secret'), alg => 'HS256' },
    { kty => 'EC', kid => 'k1', crv => 'secp256k1', x => 'AA', y => 'AA',
        alg => 'ES256K' });

# keys with their own alg, or the default of their type
write_jwks_algs();

sub write_jwks_algs {
    $t->write_file('jwks-algs.json', $json->encode({ keys => [
        jwk('rsa', 'ps1', alg => 'PS256'),
        jwk('rsa', 'rs5', alg => 'RS512'),
        jwk('rsa2', 'rd', alg => undef, use => undef),
        jwk('p384', 'e384', alg => 'ES384'),
        jwk('p521', 'e521'),
        jwk('ec', 'e256', alg => 'ES256'),
        jwk('ed', 'ed1', alg => 'EdDSA') ] }));
}

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

        location /jwks-algs/events {
            events_api main;
            events_auth_jwt_key %%TESTDIR%%/jwks-algs.json;
        }

        # one RSA key, each alg it may be told
        location /rs384/events {
            events_api main;
            events_auth_jwt_key %%TESTDIR%%/rsa.pub alg=RS384;
        }

        location /rs512/events {
            events_api main;
            events_auth_jwt_key %%TESTDIR%%/rsa.pub alg=RS512;
        }

        location /ps256/events {
            events_api main;
            events_auth_jwt_key %%TESTDIR%%/rsa.pub alg=PS256;
        }

        location /ps384/events {
            events_api main;
            events_auth_jwt_key %%TESTDIR%%/rsa.pub alg=PS384;
        }

        location /ps512/events {
            events_api main;
            events_auth_jwt_key %%TESTDIR%%/rsa.pub alg=PS512;
        }

        # the curve says the alg; alg= may say it too
        location /es384/events {
            events_api main;
            events_auth_jwt_key %%TESTDIR%%/p384.pub;
        }

        location /es512/events {
            events_api main;
            events_auth_jwt_key %%TESTDIR%%/p521.pub alg=ES512;
        }

        location /hs384/events {
            events_api main;
            events_auth_jwt_key %%TESTDIR%%/hs.key alg=HS384;
        }

        location /hs512/events {
            events_api main;
            events_auth_jwt_key %%TESTDIR%%/hs.key alg=HS512;
        }

        # RS256 and PS256 on two keys side by side, kid= and alg= in
        # either order
        location /rsa-both/events {
            events_api main;
            events_auth_jwt_key %%TESTDIR%%/rsa.pub;
            events_auth_jwt_key %%TESTDIR%%/rsa.pub kid=p alg=PS256;
            events_auth_jwt_key %%TESTDIR%%/rsa2.pub alg=PS384 kid=q;
        }

        # one file twice, no kid: the token's alg picks the line
        location /rsa-twice/events {
            events_api main;
            events_auth_jwt_key %%TESTDIR%%/rsa.pub;
            events_auth_jwt_key %%TESTDIR%%/rsa.pub alg=PS256;
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
refused('/rsa/events', jwt(alg => 'PS256', key => 'rsa'),
    "no key for the token's kid and alg",
    'PS256 where the RSA key is RS256 (the default)');
refused('/rsa/events', jwt(alg => 'RS256', key => 'rsa',
    header_alg => 'RS384'), "no key for the token's kid and alg",
    'an RS256 signature as RS384');
my $r = $t->get('/rsa/events', auth(jwt(alg => 'RS256', key => 'rsa',
    header_alg => 'rs256')));
$t->is_error($r, 401, 'invalid_token', undef, 'alg is case-sensitive');
is(eval { $json->decode($r->{body}) }->{error}{message}, "the token's alg "
    . 'is not allowed; this server takes HS256, HS384, HS512, RS256, '
    . 'RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512 and EdDSA',
    'alg is case-sensitive: the message lists the algs');
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
# The other algs, each with its key, from both workers

my %where = (RS384 => '/rs384', RS512 => '/rs512', PS256 => '/ps256',
    PS384 => '/ps384', PS512 => '/ps512', ES384 => '/es384',
    ES512 => '/es512');
my %signer = (ES384 => 'p384', ES512 => 'p521');
for my $alg (sort keys %where) {
    for my $i (1 .. 2) {
        is(status_of("$where{$alg}/events", jwt(alg => $alg,
            key => $signer{$alg} // 'rsa')), 200, "$alg with its key ($i)");
    }
}
for my $alg (qw(HS384 HS512)) {
    for my $i (1 .. 2) {
        is(status_of('/' . lc($alg) . '/events', jwt(alg => $alg,
            hmac => 's3cret-one')), 200, "$alg with the secret, alg= ($i)");
    }
}

# an RSA key verifies the one alg it was given: PKCS #1 v1.5 or PSS,
# and one hash
refused('/ps384/events', jwt(alg => 'RS384', key => 'rsa'),
    "no key for the token's kid and alg", 'RS384 where the key is PS384');
refused('/ps384/events', jwt(alg => 'RS384', key => 'rsa',
    header_alg => 'PS384'), "the token's signature is wrong",
    'an RS384 signature as PS384');
refused('/rs384/events', jwt(alg => 'PS384', key => 'rsa',
    header_alg => 'RS384'), "the token's signature is wrong",
    'a PS384 signature as RS384');
refused('/ps512/events', jwt(alg => 'PS256', key => 'rsa'),
    "no key for the token's kid and alg", 'PS256 where the key is PS512');
refused('/rs512/events', jwt(alg => 'RS256', key => 'rsa'),
    "no key for the token's kid and alg", 'RS256 where the key is RS512');
refused('/ps256/events', jwt(alg => 'PS256', key => 'rsa2'),
    "the token's signature is wrong", 'PS256 by another RSA key');
refused('/ps256/events', jwt(alg => 'PS256', key => 'rsa',
    dgst => ['-sigopt', 'rsa_pss_saltlen:max']),
    "the token's signature is wrong",
    'PS256 with a salt longer than the hash (RFC 7518: the hash\'s)');

# an EC key's curve is its alg
refused('/ec/events', jwt(alg => 'ES384', key => 'p384'),
    "no key for the token's kid and alg", 'ES384 where the key is P-256');
refused('/es384/events', jwt(alg => 'ES256', key => 'ec'),
    "no key for the token's kid and alg", 'ES256 where the key is P-384');
refused('/es384/events', jwt(alg => 'ES384', key => 'p384b'),
    "the token's signature is wrong", 'ES384 by another P-384 key');
refused('/es512/events', jwt(alg => 'ES256', key => 'ec',
    header_alg => 'ES512'), "the token's signature is malformed",
    'a 64-byte signature as ES512 (132 bytes)');
my $der384 = do {
    my $hh = b64($json->encode({ alg => 'ES384' }));
    my $pp = b64($json->encode({ %grant, exp => time + 600 }));
    my $in = "$dir/signing-input";
    open(my $fh, '>', $in) or die; print $fh "$hh.$pp"; close $fh;
    "$hh.$pp." . b64(openssl('dgst', '-sha384', '-binary', '-sign',
        "$dir/p384.pem", $in));
};
refused('/es384/events', $der384, "the token's signature is malformed",
    'ES384 with a DER signature');

# a secret told alg= verifies that HMAC only
refused('/hs384/events', jwt(alg => 'HS256', hmac => 's3cret-one'),
    "no key for the token's kid and alg", 'HS256 where the secret is HS384');
refused('/hs512/events', jwt(alg => 'HS384', hmac => 's3cret-one',
    header_alg => 'HS512'), "the token's signature is malformed",
    'an HS384 MAC (48 bytes) as HS512');
refused('/hs384/events', jwt(alg => 'HS384', hmac => 'guess'),
    "the token's signature is wrong", 'HS384 with another secret');
refused('/ps256/events', jwt(alg => 'HS384', hmac => "$pem\n"),
    "no key for the token's kid and alg",
    'HS384 with the RSA public key as secret');
refused('/es384/events', jwt(alg => 'HS512',
    hmac => slurp("$dir/p384.pub")), "no key for the token's kid and alg",
    'HS512 with the P-384 public key as secret');

# one RSA key twice (RS256, PS256 kid "p"), another as PS384 kid "q"
is(status_of('/rsa-both/events', jwt(alg => 'RS256', key => 'rsa')), 200,
    'side by side: RS256');
is(status_of('/rsa-both/events', jwt(alg => 'PS256', key => 'rsa',
    kid => 'p')), 200, 'side by side: PS256 by kid=p alg=PS256');
is(status_of('/rsa-both/events', jwt(alg => 'PS384', key => 'rsa2',
    kid => 'q')), 200, 'side by side: PS384 by alg=PS384 kid=q');
refused('/rsa-both/events', jwt(alg => 'PS256', key => 'rsa'),
    "no key for the token's kid and alg", 'side by side: PS256 needs kid p');
refused('/rsa-both/events', jwt(alg => 'RS256', key => 'rsa', kid => 'p'),
    "no key for the token's kid and alg", 'side by side: kid p is PS256');
refused('/rsa-both/events', jwt(alg => 'PS384', key => 'rsa', kid => 'q'),
    "the token's signature is wrong", 'side by side: kid q, another key');

is(status_of('/rsa-twice/events', jwt(alg => 'RS256', key => 'rsa')), 200,
    'one file twice: RS256');
is(status_of('/rsa-twice/events', jwt(alg => 'PS256', key => 'rsa')), 200,
    'one file twice: PS256');
refused('/rsa-twice/events', jwt(alg => 'RS256', key => 'rsa',
    header_alg => 'PS256'), "the token's signature is wrong",
    'one file twice: an RS256 signature as PS256');

# JWKS keys with "alg", and without it the type's default
for my $c ([ 'PS256', 'rsa', 'ps1' ], [ 'RS512', 'rsa', 'rs5' ],
    [ 'RS256', 'rsa2', 'rd' ], [ 'ES384', 'p384', 'e384' ],
    [ 'ES512', 'p521', 'e521' ], [ 'ES256', 'ec', 'e256' ],
    [ 'EdDSA', 'ed', 'ed1' ])
{
    my ($alg, $key, $kid) = @$c;
    is(status_of('/jwks-algs/events', jwt(alg => $alg, key => $key,
        kid => $kid)), 200, "JWKS: $alg by kid $kid");
}
refused('/jwks-algs/events', jwt(alg => 'RS256', key => 'rsa', kid => 'ps1'),
    "no key for the token's kid and alg", 'JWKS: RS256 where "alg" is PS256');
refused('/jwks-algs/events', jwt(alg => 'PS256', key => 'rsa2', kid => 'rd'),
    "no key for the token's kid and alg",
    'JWKS: PS256 where an RSA key has no "alg" (RS256)');
refused('/jwks-algs/events', jwt(alg => 'RS256', key => 'rsa', kid => 'rs5'),
    "no key for the token's kid and alg", 'JWKS: RS256 where "alg" is RS512');
refused('/jwks/events', jwt(alg => 'RS256', key => 'rsa2', kid => 'enc2'),
    "no key for the token's kid and alg",
    'JWKS: a key whose "alg" is RSA-OAEP-256 is not used');

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
    my ($ok, $out) = $t2->test_config_at(qr/events_auth_jwt_key/);
    return wantarray ? ($ok, $out) : $ok ? 'accepted' : $out;
}

# a secret shorter than its hash is taken, with a warning that says so
for my $c ([ 'HS256', '', 31, 32 ], [ 'HS384', ' alg=HS384', 47, 48 ],
           [ 'HS512', ' alg=HS512', 63, 64 ])
{
    my ($alg, $param, $short, $full) = @$c;
    for my $len ($short, $full) {
        my $f = "$dir/secret-$alg-$len";
        open(my $fh, '>', $f) or die;
        print $fh 's' x $len, "\n";
        close $fh;
        my ($ok, $out) = nginx_t($f, $param);
        ok($ok, "nginx -t: a $len-byte $alg secret is taken");
        my $warn = qq{nginx: [warn] the $alg secret in "$f" has $len bytes, }
            . qq{fewer than the $full RFC 7518 asks for ("openssl rand }
            . qq{-base64 $full" makes one) in };
        if ($len < $full) {
            like($out, qr/^\Q$warn\E\S+nginx\.conf:LINE$/m,
                "nginx -t: a $len-byte $alg secret is warned of");
        } else {
            unlike($out, qr/\[warn\]/, "nginx -t: no warning at $len bytes");
        }
    }
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
bad_file(slurp("$dir/k256.pub"), 'an EC key must be on P-256, P-384 or '
    . 'P-521', 'a secp256k1 key');
bad_file(slurp("$dir/pss.pub"), 'the key type is not RSA, EC or Ed25519',
    'an RSASSA-PSS key', ' alg=PS256');
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
bad_file("\n\n", 'the HS512 secret in', 'a secret of newlines, alg=HS512',
    ' alg=HS512');

# alg= that does not fit the key, the exact line
sub emerg_is {
    my ($file, $param, $msg, $name) = @_;
    my $out = nginx_t($file, $param);
    like($out, qr/^nginx: \[emerg\] \Q$msg\E in \S+nginx\.conf:LINE$/m,
        "nginx -t: $name") or diag($out);
}

my $rsa_algs = '(RS256, RS384, RS512, PS256, PS384 or PS512)';
emerg_is("$dir/rsa.pub", ' alg=ES384', qq{the key in "$dir/rsa.pub" cannot }
    . "verify tokens: alg=ES384 does not fit an RSA key $rsa_algs",
    'alg=ES384 on an RSA key');
emerg_is("$dir/rsa.pub", ' kid=k alg=HS256', qq{the key in "$dir/rsa.pub" }
    . "cannot verify tokens: alg=HS256 does not fit an RSA key $rsa_algs",
    'alg=HS256 on an RSA key (the confusion, configured)');
emerg_is("$dir/ec.pub", ' alg=RS256', qq{the key in "$dir/ec.pub" cannot }
    . 'verify tokens: alg=RS256 does not fit an EC key on P-256 (ES256)',
    'alg=RS256 on an EC key');
emerg_is("$dir/p384.pub", ' alg=ES256', qq{the key in "$dir/p384.pub" }
    . 'cannot verify tokens: alg=ES256 does not fit an EC key on P-384 '
    . '(ES384)', 'alg=ES256 on a P-384 key');
emerg_is("$dir/p521.pub", ' alg=ES384', qq{the key in "$dir/p521.pub" }
    . 'cannot verify tokens: alg=ES384 does not fit an EC key on P-521 '
    . '(ES512)', 'alg=ES384 on a P-521 key');
emerg_is("$dir/ed.pub", ' alg=PS256', qq{the key in "$dir/ed.pub" cannot }
    . 'verify tokens: alg=PS256 does not fit an Ed25519 key (EdDSA)',
    'alg=PS256 on an Ed25519 key');
emerg_is("$dir/hs.key", ' alg=RS256', qq{the key in "$dir/hs.key" cannot }
    . 'verify tokens: alg=RS256 does not fit an HMAC secret (HS256, HS384 '
    . 'or HS512); a PEM public key starts with "-----BEGIN "',
    'alg=RS256 on a secret');
my $known = 'known: HS256, HS384, HS512, RS256, RS384, RS512, PS256, '
    . 'PS384, PS512, ES256, ES384, ES512, EdDSA';
for my $alg (qw(XS256 none ps256 RSA-OAEP)) {
    emerg_is("$dir/rsa.pub", " alg=$alg", qq{unknown alg "$alg" for the }
        . qq{key file "$dir/rsa.pub"; $known}, "alg=$alg: unknown");
}
emerg_is("$dir/rsa.pub", ' alg=', 'invalid parameter "alg="',
    'alg= empty');
emerg_is("$dir/rsa.pub", ' alg=RS384 alg=RS512',
    'invalid parameter "alg=RS512"', 'alg= twice');
emerg_is("$dir/rsa.pub", ' kid=a kid=b', 'invalid parameter "kid=b"',
    'kid= twice');
emerg_is("$dir/jwks.json", ' alg=RS256', qq{"alg=" does not apply to the }
    . qq{JWKS "$dir/jwks.json": its keys name their own alg},
    'alg= on a JWKS');
is(nginx_t("$dir/p384.pub", ' alg=ES384'), 'accepted',
    'nginx -t: alg= that is the curve\'s own');
is(nginx_t("$dir/rsa.pub", ' alg=PS512 kid=x'), 'accepted',
    'nginx -t: alg=PS512 kid=x on an RSA key');

# a JWK's "alg" that does not fit its key fails the file, naming the kid
$t->write_file('jwks-bad.json', $json->encode({ keys => [ jwk('ec', 'e1'),
    jwk('rsa', 'r7', alg => 'ES256') ] }));
emerg_is("$dir/jwks-bad.json", '', qq{the JWKS "$dir/jwks-bad.json": key 1 }
    . qq{(kid "r7"): "alg" ES256 does not fit an RSA key $rsa_algs},
    'a JWK: "alg" ES256 on an RSA key');
$t->write_file('jwks-bad.json', $json->encode({ keys => [
    jwk('ec', 'e7', alg => 'ES384') ] }));
emerg_is("$dir/jwks-bad.json", '', qq{the JWKS "$dir/jwks-bad.json": key 0 }
    . qq{(kid "e7"): "alg" ES384 does not fit an EC key on P-256 (ES256)},
    'a JWK: "alg" ES384 on a P-256 key');
$t->write_file('jwks-bad.json', $json->encode({ keys => [
    jwk('ed', 'o7', alg => 'ES256') ] }));
emerg_is("$dir/jwks-bad.json", '', qq{the JWKS "$dir/jwks-bad.json": key 0 }
    . qq{(kid "o7"): "alg" ES256 does not fit an Ed25519 key (EdDSA)},
    'a JWK: "alg" ES256 on an Ed25519 key');
$t->write_file('jwks-bad.json', $json->encode({ keys => [
    jwk('rsa', 'r8', alg => 'HS256') ] }));
emerg_is("$dir/jwks-bad.json", '', qq{the JWKS "$dir/jwks-bad.json": key 0 }
    . qq{(kid "r8"): "alg" HS256 does not fit an RSA key $rsa_algs},
    'a JWK: "alg" HS256 on an RSA key');
$t->write_file('jwks-bad.json', $json->encode({ keys => [
    jwk('p384', 'e8', x => b64("\x01" x 32)) ] }));
emerg_is("$dir/jwks-bad.json", '', qq{the JWKS "$dir/jwks-bad.json": key 0 }
    . qq{(kid "e8"): "x" and "y" must be 48 bytes in base64url},
    'a JWK: a P-384 key with a 32-byte x');
$t->write_file('jwks-bad.json', $json->encode({ keys => [
    jwk('p521', 'e9', y => b64("\x01" x 66)) ] }));
emerg_is("$dir/jwks-bad.json", '', qq{the JWKS "$dir/jwks-bad.json": key 0 }
    . qq{(kid "e9"): not a point of P-521}, 'a JWK: a point off P-521');
is(nginx_t("$dir/jwks-algs.json", ''), 'accepted',
    'nginx -t: the JWKS with "alg" members');
is(nginx_t("$dir/jwks.json", ''), 'accepted', 'nginx -t: the good JWKS');

$t->done;
