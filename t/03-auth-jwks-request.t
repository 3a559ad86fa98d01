#!/usr/bin/perl

# Token keys fetched from a JWKS (events_auth_jwt_key_request): nginx
# itself plays the identity provider, a second server serving JWKS files
# from a directory, each fetch a line of its access log; the internal
# location proxies to it, a real HTTP fetch.  A token verified with a
# fetched key; a rotated JWKS used once "valid" has passed, the old key
# refused; a fetch that fails (404, not JSON, refused, too large) keeps
# the keys fetched before, and with none the answer is 503
# keys_unavailable with Retry-After; an unknown kid fetches again once
# per "refetch", a storm of them costs one fetch; requests (HTTP/1.1, a
# POST, HTTP/2 streams) waiting for one fetch, which carries none of the
# client's headers; through proxy_cache; configured keys beside fetched
# ones; an SSE stream and a WebSocket handshake; nginx -t errors of the
# directive.  Two workers; the fetch counts on one.  Then, with two
# workers, the JWKS kept in shared memory: one fetch per "valid" for
# both, none after a reload within it, anew for a URI changed by a
# reload, one per "refetch" for unknown kids in both, $events_tenant
# before the preaccess phase, a fetch whose worker was killed, and a
# JWKS the zone cannot hold (each worker on its own until one fits).

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use JSON::PP;
use IO::Socket::IP;
use IO::Select;
use Time::HiRes qw(sleep time);
use Digest::SHA qw(hmac_sha256);
use MIME::Base64 qw(encode_base64url);
use EventsTest;
use EventsTest::SSE;

my $t = EventsTest->new;
my $dir = $t->testdir;
my $json = JSON::PP->new->canonical;

sub openssl {
    my (@args) = @_;
    my $out = qx{openssl @args 2>&1};
    die "openssl @args: $out" if $?;
    return $out;
}

sub b64 { encode_base64url($_[0]) }

for my $k (qw(ec1 ec2 ec3 ec4)) {
    openssl('genpkey', '-algorithm EC -pkeyopt ec_paramgen_curve:P-256',
        '-out', "$dir/$k.pem");
    openssl('pkey', '-in', "$dir/$k.pem", '-pubout', '-out', "$dir/$k.pub");
}

# DER ECDSA-Sig-Value to JOSE's r || s
sub der_to_jose {
    my ($der) = @_;
    my @b = unpack('C*', $der);
    my $i = 2;
    my @ints;
    for (1 .. 2) {
        my $len = $b[$i + 1];
        my $v = pack('C*', @b[$i + 2 .. $i + 1 + $len]);
        $v =~ s/^\x00+//;
        push @ints, ("\x00" x (32 - length $v)) . $v;
        $i += 2 + $len;
    }
    return join '', @ints;
}

my %grant = (tenant => 'acme', subscribe => ['ticket.*'],
    publish => ['ticket.*'], sub => 'u-1');

my $n = 0;

# an ES256 token by the private key NAME.pem, with that kid
sub jwt {
    my ($key, $kid) = @_;
    my $h = b64($json->encode({ alg => 'ES256', typ => 'JWT',
        (defined $kid ? (kid => $kid) : ()) }));
    my $p = b64($json->encode({ %grant, exp => time + 600 }));
    my $in = "$dir/signing-input-" . $n++;
    open(my $fh, '>', $in) or die;
    print $fh "$h.$p";
    close $fh;
    my $sig = openssl('dgst', '-sha256', '-binary', '-sign', "$dir/$key.pem",
        $in);
    return "$h.$p." . b64(der_to_jose($sig));
}

sub jwk {
    my ($key, $kid) = @_;
    my $der = openssl('pkey', '-pubin', '-in', "$dir/$key.pub", '-outform',
        'DER');
    my $pt = substr($der, -64);
    return { kty => 'EC', crv => 'P-256', kid => $kid, use => 'sig',
        alg => 'ES256', x => b64(substr($pt, 0, 32)),
        y => b64(substr($pt, 32)) };
}

mkdir "$dir/idp" or die;
chmod 0755, "$dir/idp";

sub idp_file {
    my ($name, $content) = @_;
    $t->write_file("idp/$name", $content);
    chmod 0644, "$dir/idp/$name";
}

sub jwks { idp_file($_[0], $json->encode({ keys => [ @_[1 .. $#_] ] })) }

# how many times the IdP was asked for NAME: its worker logs the fetch
# after answering it, so the count is read once it holds for 0.3 s
sub fetches {
    my ($name) = @_;
    my ($n, $same) = (-1, 0);
    for (1 .. 30) {
        my $log = -e "$dir/idp.log" ? $t->read_file('idp.log') : '';
        my $now = () = $log =~ m{"GET /\Q$name\E }g;
        $same = $now == $n ? $same + 1 : 0;
        $n = $now;
        last if $same == 3;
        sleep 0.1;
    }
    return $n;
}

sub auth { (headers => { Authorization => "Bearer $_[0]" }) }

# the warning of a failed fetch of URI, $rest a regex of what follows
sub warned {
    my ($uri, $rest) = @_;
    my $re = '\[warn\] .*events: the JWKS from "' . quotemeta($uri)
        . '" could not be fetched ' . $rest;
    return qr/$re/;
}

$t->write_file('hs.key', "s3cret-one\n");

jwks('rotate.json', jwk('ec1', 'a'));
jwks('flip.json', jwk('ec1', 'a'));
jwks('cached.json', jwk('ec1', 'a'));
jwks('both.json', jwk('ec1', 'a'));
idp_file('bad.json', '{"keys": [');
my $one = jwk('ec1', 'k');
jwks('big.json', map { { %$one, kid => "k$_" } } 1 .. 400);
die 'big.json is not large enough' if -s "$dir/idp/big.json" <= 65536;

my $port3 = $t->port(3);     # reserved: nothing listens there

my $conf = <<'EOF';
%%GLOBALS%%
http {
    %%HTTP_GLOBALS%%

    events_zone main 4m;
    log_format idp '"$request" $status auth="$http_authorization" '
                   'ua="$http_user_agent" cl="$http_content_length"';
    proxy_cache_path %%TESTDIR%%/cache keys_zone=jwks:1m;

    server {
        listen 127.0.0.1:%%PORT%%;

        location = /_cached {
            internal;
            proxy_pass http://127.0.0.1:%%PORT_2%%/cached.json;
            proxy_cache jwks;
            proxy_cache_valid 200 1h;
            sendfile on;              # a cache hit passed as a file
        }

        location = /_rotate {
            internal;
            proxy_pass http://127.0.0.1:%%PORT_2%%/rotate.json;
        }

        location = /_flip {
            internal;
            proxy_pass http://127.0.0.1:%%PORT_2%%/flip.json;
        }

        location = /_both {
            internal;
            proxy_pass http://127.0.0.1:%%PORT_2%%/both.json;
        }

        location = /_missing {
            internal;
            proxy_pass http://127.0.0.1:%%PORT_2%%/missing.json;
        }

        location = /_bad {
            internal;
            proxy_pass http://127.0.0.1:%%PORT_2%%/bad.json;
        }

        location = /_big {
            internal;
            proxy_pass http://127.0.0.1:%%PORT_2%%/big.json;
        }

        location = /_down {
            internal;
            proxy_pass http://127.0.0.1:%%PORT_3%%/jwks.json;
        }

        location = /events/stream {
            events_stream main;
            events_auth on;
            events_auth_jwt_key_request /_rotate valid=1s;
        }

        location /events {
            events_api main;
            events_auth on;
            events_auth_jwt_key_request /_rotate valid=1s;
        }

        location /cached/events {
            events_api main;
            events_auth on;
            events_auth_jwt_key_request /_cached valid=500ms;
        }

        location /flip/events {
            events_api main;
            events_auth on;
            events_auth_jwt_key_request /_flip valid=1s;
            add_header X-Pid $pid;
        }

        location /both/events {
            events_api main;
            events_auth on;
            events_auth_jwt_key %%TESTDIR%%/hs.key;
            events_auth_jwt_key %%TESTDIR%%/ec3.pub kid=a;
            events_auth_jwt_key_request /_both;
        }

        location /missing/events {
            events_api main;
            events_auth on;
            events_auth_jwt_key %%TESTDIR%%/hs.key;
            events_auth_jwt_key_request /_missing refetch=1m;
        }

        location /bad/events {
            events_api main;
            events_auth on;
            events_auth_jwt_key_request /_bad valid=1h;
        }

        location /big/events {
            events_api main;
            events_auth on;
            events_auth_jwt_key_request /_big;
        }

        location /down/events {
            events_api main;
            events_auth on;
            events_auth_jwt_key_request /_down;
        }
    }

    server {
        listen 127.0.0.1:%%PORT_2%%;
        access_log %%TESTDIR%%/idp.log idp;
        root %%TESTDIR%%/idp;
    }
}
EOF
$conf =~ s/%%PORT_3%%/$port3/g;

$t->write_config($conf);
$t->run;

sub status_of { $t->get($_[0], auth($_[1]))->{status} }

my $keys_unavailable = '{"error":{"status":503,"code":"keys_unavailable",'
    . '"message":"the keys to check tokens could not be fetched; try again '
    . 'later"}}';

###########################################################################
# A fetched key verifies, from both workers; rotation after "valid"

my $a1 = jwt('ec1', 'a');
for my $i (1 .. 4) {
    my $r = $t->get('/events', auth($a1));
    is($r->{status}, 200, "a token by a fetched key ($i)");
}
ok(fetches('rotate.json') >= 1 && fetches('rotate.json') <= 2,
    'one fetch per worker at most');

my $r = $t->get('/events', auth(jwt('ec2', 'a')));
$t->is_error($r, 401, 'invalid_token', undef, 'kid a signed by another key');
like($r->{body}, qr/the token's signature is wrong/, 'the signature is wrong');

jwks('rotate.json', jwk('ec2', 'b'));
sleep 1.3;

my $b1 = jwt('ec2', 'b');
for my $i (1 .. 4) {
    is(status_of('/events', $b1), 200, "rotated: the new key ($i)");
}
for my $i (1 .. 4) {
    my $r = $t->get('/events', auth($a1));
    $t->is_error($r, 401, 'invalid_token', undef,
        "rotated: the old key is refused ($i)");
    like($r->{body}, qr/no key for the token's kid and alg/,
        "rotated: no key for the old kid ($i)");
}

# an SSE stream authorized by a fetched key
my $s = EventsTest::SSE->open($t, '/events/stream',
    headers => { Authorization => "Bearer $b1" });
is($s->status, 200, 'a stream with a token by a fetched key');
my $live = $t->post_json('/events', { type => 'ticket.live' }, auth($b1));
is($live->{status}, 201, 'a publish by a fetched key');
my $e = $s->next_event(timeout => 3);
is($e && $e->{json}{seq}, $live->{json}{seq}, 'the stream gets it');
$s->close;

# a WebSocket handshake likewise, and refused with the old key
sub ws_status {
    my ($tok) = @_;
    my $c = IO::Socket::IP->new(PeerAddr => '127.0.0.1',
        PeerPort => $t->port(1), Proto => 'tcp') or die "connect: $!";
    print $c "GET /events/stream HTTP/1.1\r\nHost: localhost\r\n"
        . "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        . "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        . "Sec-WebSocket-Version: 13\r\nAuthorization: Bearer $tok\r\n\r\n";
    my $head = '';
    my $sel = IO::Select->new($c);
    while ($head !~ /\r\n\r\n/ && $sel->can_read(3)) {
        sysread($c, my $buf, 4096) or last;
        $head .= $buf;
    }
    close $c;
    return ($head =~ m{^HTTP/1\.1 (\d+)})[0] // 0;
}
is(ws_status($b1), 101, 'a WebSocket handshake with a token by a fetched key');
is(ws_status($a1), 401, 'a WebSocket handshake with the rotated-out key');

###########################################################################
# Through proxy_cache: fetched again after valid=500ms, from the cache

for my $i (1 .. 6) {
    is(status_of('/cached/events', $a1), 200, "proxy_cache: verified ($i)");
    sleep 0.3;
}
is(fetches('cached.json'), 1, 'proxy_cache: the IdP asked once');
ok(!grep({ /cached/ && /could not be fetched/ } split /\n/, $t->error_log),
    'proxy_cache: no failed fetch (a cache hit is read from its file)');

###########################################################################
# A failed fetch keeps the keys fetched before

# keys are each worker's: until both workers have answered with them
my $f1 = jwt('ec1', 'a');
my (%pids, @bad);
for my $i (1 .. 100) {
    my $r = $t->get('/flip/events', auth($f1));
    push @bad, $r->{status} if $r->{status} != 200;
    $pids{ $r->{headers}{'x-pid'} // '' } = 1;
    last if keys %pids == 2;
}
is(scalar(keys %pids), 2, 'flip: both workers answered');
is("@bad", '', 'flip: fetched, verified by both');

idp_file('flip.json', 'not a JWKS');
sleep 1.3;
for my $i (1 .. 8) {
    is(status_of('/flip/events', $f1), 200,
        "flip: the JWKS is not JSON now, the keys stay ($i)");
}
like($t->error_log, warned('/_flip', '\(the JWKS is not JSON: .*\); the keys '
    . 'fetched \d+ s ago stay in use'),
    'the warning says the JWKS is not JSON, the keys stay');

unlink "$dir/idp/flip.json";
sleep 1.3;
for my $i (1 .. 8) {
    is(status_of('/flip/events', $f1), 200,
        "flip: the JWKS is gone (404), the keys stay ($i)");
}
like($t->error_log, warned('/_flip', '\(status 404\); the keys fetched'),
    'the warning says 404');

###########################################################################
# No keys ever fetched: 503 keys_unavailable

for my $case ([ '/missing/events', '404' ], [ '/bad/events', 'not JSON' ],
    [ '/down/events', 'connection refused' ],
    [ '/big/events', 'a JWKS over 64 KB' ])
{
    my ($path, $why) = @$case;
    for my $i (1 .. 2) {
        my $r = $t->get($path, auth(jwt('ec1', 'a')));
        is($r->{status}, 503, "$why: 503 ($i)");
        is($r->{body}, $keys_unavailable, "$why: keys_unavailable ($i)");
        like($r->{headers}{'retry-after'} // '', qr/^\d+\z/,
            "$why: Retry-After ($i)");
        ok(!defined $r->{headers}{'www-authenticate'},
            "$why: no WWW-Authenticate ($i)");
    }
}
my $ra = $t->get('/missing/events', auth(jwt('ec1', 'a')))
    ->{headers}{'retry-after'};
ok($ra >= 1 && $ra <= 60, "Retry-After $ra: until the next try (refetch=1m)");
like($t->error_log, warned('/_bad', '\(the JWKS is not JSON: .*\); no '
    . 'fetched keys to check tokens with yet'),
    'the warning for a JWKS that is not JSON');
like($t->error_log, warned('/_down', '\(status 502\)'),
    'the warning for a refused connection');
like($t->error_log, warned('/_big', '\(an answer larger than 64 KB\)'),
    'the warning for a JWKS too large');
$t->expect_log(qr/connect\(\) failed \(111: Connection refused\)/);
$t->expect_log(qr/events: 503 keys_unavailable/);

# keys that need no fetch still verify; a token that is no JWT needs none
is(status_of('/missing/events', jwt_hs()), 200,
    'a configured key verifies while the fetch fails');
$r = $t->get('/missing/events', auth('not-a-jwt'));
$t->is_error($r, 401, 'invalid_token', undef, 'not a JWT: 401, not 503');
$r = $t->get('/missing/events');
$t->is_error($r, 401, 'missing_token', undef, 'no token: 401');

sub jwt_hs {
    my $h = b64($json->encode({ alg => 'HS256', typ => 'JWT' }));
    my $p = b64($json->encode({ %grant, exp => time + 600 }));
    return "$h.$p." . b64(hmac_sha256("$h.$p", 's3cret-one'));
}

###########################################################################
# Configured keys beside fetched ones: both are tried

is(status_of('/both/events', jwt('ec1', 'a')), 200,
    'kid a: the fetched key verifies');
is(status_of('/both/events', jwt('ec3', 'a')), 200,
    'kid a: the configured key verifies too');
$r = $t->get('/both/events', auth(jwt('ec2', 'a')));
like($r->{body}, qr/the token's signature is wrong/,
    'kid a by neither key: the signature is wrong');

###########################################################################
# nginx -t

sub nginx_t {
    my ($args, $extra) = @_;
    my $t2 = EventsTest->new;
my $hang = $t2->port(2);
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
            events_auth_jwt_key_request$args;
            $extra
        }
    }
}
EOF
    my ($ok, $out) = $t2->test_config_at(qr/events_auth_jwt_key_request/);
    return $ok ? 'accepted' : $out;
}

sub emerg_is {
    my ($args, $msg, $name, $extra) = @_;
    my $out = nginx_t($args, $extra // '');
    like($out, qr/^nginx: \[emerg\] \Q$msg\E in \S+nginx\.conf:LINE$/m,
        "nginx -t: $name") or diag($out);
}

is(nginx_t(' /_jwks valid=5m refetch=10s', ''), 'accepted',
    'nginx -t: events_auth on with fetched keys only');
emerg_is('', 'invalid number of arguments in '
    . '"events_auth_jwt_key_request" directive', 'no URI');
emerg_is(' /_jwks valid=abc', 'invalid "valid=abc": it takes a time more '
    . 'than 0', 'valid=abc');
emerg_is(' /_jwks valid=0', 'invalid "valid=0": it takes a time more '
    . 'than 0', 'valid=0');
emerg_is(' /_jwks refetch=-1s', 'invalid "refetch=-1s": it takes a time '
    . 'more than 0', 'refetch=-1s');
emerg_is(' /_jwks ttl=5m', 'invalid parameter "ttl=5m"', 'ttl=5m');
emerg_is(' _jwks', 'the URI "_jwks" of "events_auth_jwt_key_request" must '
    . 'start with "/"', 'a relative URI');
like(nginx_t(' /_jwks',
    'location /events/s { events_stream events_jwks:/_jwks; }'),
    qr/\[emerg\] the shared memory zone "events_jwks:\/_jwks" is already (?#
    )declared for a different use in /,
    'nginx -t: an events zone named as the JWKS\'s zone');
like(nginx_t(' /_jwks', 'events_auth_jwt_key_request /_other;'),
    qr/\[emerg\] "events_auth_jwt_key_request" directive is duplicate in /,
    'nginx -t: twice in a location');

###########################################################################
# One worker: the fetches counted

my $t1 = EventsTest->new(workers => 1);
jwks('kid.json', jwk('ec1', 'k1'));
jwks('queue.json', jwk('ec1', 'k1'));
jwks('storm.json', jwk('ec1', 'k1'));
jwks('post.json', jwk('ec1', 'k1'));
jwks('h2.json', jwk('ec1', 'k1'));
openssl('req', '-x509', '-newkey', 'ec', '-pkeyopt',
    'ec_paramgen_curve:P-256', '-nodes', '-keyout',
    $t1->testdir . '/cert.key', '-out', $t1->testdir . '/cert.pem',
    '-days', '1', '-subj', '/CN=localhost');

my $conf1 = <<'EOF';
%%GLOBALS%%
http {
    %%HTTP_GLOBALS%%

    events_zone main 4m;

    server {
        listen 127.0.0.1:%%PORT%%;

        location /_idp/ {
            internal;
            proxy_pass http://127.0.0.1:IDP/;
        }

        location /kid/events {
            events_api main;
            events_auth on;
            events_auth_jwt_key_request /_idp/kid.json refetch=3s;
        }

        location /queue/events {
            events_api main;
            events_auth on;
            events_auth_jwt_key_request /_idp/queue.json;
        }

        location /post/events {
            events_api main;
            events_auth on;
            events_auth_jwt_key_request /_idp/post.json;
        }

        location /storm/events {
            events_api main;
            events_auth on;
            events_auth_jwt_key_request /_idp/storm.json refetch=3s;
        }
    }

    server {
        listen 127.0.0.1:%%PORT_2%% ssl http2;
        ssl_certificate %%TESTDIR%%/cert.pem;
        ssl_certificate_key %%TESTDIR%%/cert.key;

        location /_idp/ {
            internal;
            proxy_pass http://127.0.0.1:IDP/;
        }

        location /h2/events {
            events_api main;
            events_auth on;
            events_auth_jwt_key_request /_idp/h2.json;
        }
    }
}
EOF
my $idp = $t->port(2);
$conf1 =~ s/IDP/$idp/g;
$t1->write_config($conf1);
$t1->run;

my $k1 = jwt('ec1', 'k1');
is($t1->get('/kid/events', auth($k1))->{status}, 200, 'kid k1: fetched');
is(fetches('kid.json'), 1, 'one fetch');
is($t1->get('/kid/events', auth($k1))->{status}, 200, 'kid k1 again');
is(fetches('kid.json'), 1, 'still one fetch: the keys are kept');

jwks('kid.json', jwk('ec1', 'k1'), jwk('ec2', 'k2'));
my $k2 = jwt('ec2', 'k2');
$r = $t1->get('/kid/events', auth($k2));
like($r->{body}, qr/no key for the token's kid and alg/,
    'kid k2 within refetch=3s of the last fetch: no key');
is(fetches('kid.json'), 1, 'and no fetch');
sleep 3.2;
is($t1->get('/kid/events', auth($k2))->{status}, 200,
    'kid k2 after refetch=3s: fetched again, verified');
is(fetches('kid.json'), 2, 'one more fetch');
is($t1->get('/kid/events', auth($k1))->{status}, 200, 'kid k1 still');
is(fetches('kid.json'), 2, 'no more fetches');

# requests sent at once, none fetched yet: one fetch, all wait for it
sub at_once { at_once_on($t1, @_) }

sub at_once_on {
    my ($tx, $path, @tokens) = @_;
    my @socks;
    for my $tok (@tokens) {
        my $s = IO::Socket::IP->new(PeerAddr => '127.0.0.1',
            PeerPort => $tx->port(1), Proto => 'tcp') or die "connect: $!";
        print $s "GET $path HTTP/1.1\r\nHost: localhost\r\n"
            . "Authorization: Bearer $tok\r\nConnection: close\r\n\r\n";
        push @socks, $s;
    }
    my @status;
    for my $s (@socks) {
        local $/;
        my $sel = IO::Select->new($s);
        my $resp = '';
        while ($sel->can_read(5)) {
            my $got = sysread($s, my $buf, 65536);
            last unless $got;
            $resp .= $buf;
        }
        my ($code) = $resp =~ m{^HTTP/1\.1 (\d+)};
        my ($body) = $resp =~ /\r\n\r\n(.*)\z/s;
        push @status, [ $code // 0, $body // '' ];
    }
    return @status;
}

my @res = at_once('/queue/events', ($k1) x 20);
is(scalar(grep { $_->[0] == 200 } @res), 20,
    '20 requests at once before any fetch: all verified');
is(fetches('queue.json'), 1, 'by one fetch');

# a POST waits for the fetch with its body unread; the fetch sends
# neither the body nor the client's headers
$r = $t1->post_json('/post/events', { type => 'ticket.first' },
    headers => { Authorization => "Bearer $k1", 'User-Agent' => 'client/1' });
is($r->{status}, 201, 'a publish as the first request: fetched, verified');
is(fetches('post.json'), 1, 'a publish: one fetch');
like($t->read_file('idp.log'),
    qr{^"GET /post\.json HTTP/1\.0" 200 auth="-" ua="-" cl="-"$}m,
    'the fetch: a GET without the client\'s token, User-Agent, length');

# a storm of unknown kids: within refetch none fetches; after it the
# first fetches and the others wait for that fetch
is($t1->get('/storm/events', auth($k1))->{status}, 200, 'storm: fetched');
is(fetches('storm.json'), 1, 'storm: one fetch');
my @unknown = map { jwt('ec1', "unknown-$_") } 1 .. 50;
@res = at_once('/storm/events', @unknown);
is(scalar(grep { $_->[0] == 401
    && $_->[1] =~ /no key for the token's kid and alg/ } @res), 50,
    '50 unknown kids: 401 no key');
is(fetches('storm.json'), 1, '50 unknown kids within refetch=3s: no fetch');
sleep 3.2;
@res = at_once('/storm/events', @unknown);
is(scalar(grep { $_->[0] == 401
    && $_->[1] =~ /no key for the token's kid and alg/ } @res), 50,
    '50 unknown kids after refetch=3s: 401 no key');
is(fetches('storm.json'), 2, '50 unknown kids after refetch=3s: one fetch');

# HTTP/2 (over TLS: curl 7.88 multiplexes no prior-knowledge h2c):
# streams of one connection wait for one fetch
SKIP: {
    my $v = qx{curl --version 2>/dev/null} // '';
    skip 'no curl with HTTP/2', 2 unless $v =~ /\bHTTP2\b/;
    my $url = 'https://127.0.0.1:' . $t1->port(2) . '/h2/events';
    my $cmd = "curl -sk --http2 --parallel --parallel-max 10"
        . " -H 'Authorization: Bearer $k1'"
        . " -w '%{http_version} %{http_code}\\n'"
        . join('', map { " -o /dev/null $url" } 1 .. 10);
    my $out = qx{$cmd 2>&1};
    my @codes = grep { /^2 200$/ } split /\n/, $out;
    is(scalar @codes, 10, 'HTTP/2: 10 streams at once, all verified')
        or diag($out);
    is(fetches('h2.json'), 1, 'HTTP/2: by one fetch');
}

$t1->stop;
ok(!grep({ /\[(?:alert|crit|emerg)\]/ } split /\n/, $t1->error_log),
    'one worker: no alert, crit or emerg in error.log');

###########################################################################
# Shared by the workers: one fetch serves both, a reload keeps it

# the zone holds 52 KB: a JWKS of 60-64 KB is fetched but does
# not fit; and one that fits, each a line of the IdP's access log
my @many = map { { %$one, kid => "m$_" } } 1 .. 400;
my $fit = 0;
for my $n (300 .. 400) {
    jwks('over.json', jwk('ec1', 'k1'), @many[0 .. $n - 1]);
    last if -s "$dir/idp/over.json" > 61440;
}
my $over = -s "$dir/idp/over.json";
die "over.json: $over bytes" if $over <= 61440 || $over > 65536;
jwks('every.json', jwk('ec1', 'k1'));
jwks('kept.json', jwk('ec1', 'k1'));
jwks('kept2.json', jwk('ec2', 'k2'));
jwks('kids.json', jwk('ec1', 'k1'));

my $t2 = EventsTest->new;
my $hang = $t2->port(2);

sub conf2 {
    my ($kept) = @_;
    my $c = <<'EOF';
%%GLOBALS%%
http {
    %%HTTP_GLOBALS%%

    events_zone main 4m;

    server {
        listen 127.0.0.1:%%PORT%%;
        add_header X-Pid $pid always;

        location /_idp/ {
            internal;
            proxy_pass http://127.0.0.1:IDP/;
        }

        location /every/events {
            events_api main;
            events_auth on;
            events_auth_jwt_key_request /_idp/every.json valid=3s;
        }

        location /kept/events {
            events_api main;
            events_auth on;
            events_auth_jwt_key_request KEPT valid=1h;
        }

        location /_hang/ {
            internal;
            proxy_pass http://127.0.0.1:HANG/;
        }

        location /hang/events {
            events_api main;
            events_auth on;
            events_auth_jwt_key_request /_hang/jwks.json valid=1h;
        }

        location = /tenant {
            events_auth_jwt_key_request KEPT valid=1h;
            return 200 "tenant=$events_tenant\n";
        }

        location /kids/events {
            events_api main;
            events_auth on;
            events_auth_jwt_key_request /_idp/kids.json valid=1h refetch=3s;
        }

        location /back/events {
            events_api main;
            events_auth on;
            events_auth_jwt_key_request /_idp/back.json valid=3s;
        }

        location /over/events {
            events_api main;
            events_auth on;
            events_auth_jwt_key_request /_idp/over.json valid=1h;
        }
    }
}
EOF
    $c =~ s/IDP/$idp/g;
    $c =~ s/KEPT/$kept/g;
    $c =~ s/HANG/$hang/g;
    return $c;
}

$t2->write_config(conf2('/_idp/kept.json'));
$t2->run;

# requests one after another, on fresh connections, until both workers
# answered and at least $min were sent; the statuses seen, and the pids
sub spread {
    my ($path, $tok, $min) = @_;
    my (%pids, %status);
    for my $i (1 .. 300) {
        my $r = $t2->get($path, auth($tok));
        $status{ $r->{status} }++;
        $pids{ $r->{headers}{'x-pid'} // '' }++;
        last if $i >= $min && keys %pids >= 2;
    }
    return (join(',', sort keys %status), scalar keys %pids);
}

my @st = at_once_on($t2, '/every/events', ($k1) x 20);
is(scalar(grep { $_->[0] == 200 } @st), 20,
    'shared: 20 requests at once before any fetch: all verified');
my ($codes, $workers) = spread('/every/events', $k1, 30);
is($codes, '200', 'shared: then 30 more, all verified');
is($workers, 2, 'shared: both workers answered');
is(fetches('every.json'), 1, 'shared: one fetch for both workers');

sleep 3.2;
($codes, $workers) = spread('/every/events', $k1, 40);
is("$codes $workers", '200 2', 'shared: after valid=3s, both verify');
is(fetches('every.json'), 2, 'shared: one more fetch for both workers');

# a reload keeps the document: the new workers fetch nothing within valid
($codes, $workers) = spread('/kept/events', $k1, 10);
is("$codes $workers", '200 2', 'kept: verified by both workers');
is(fetches('kept.json'), 1, 'kept: one fetch');

ok($t2->reload, 'kept: reloaded');
($codes, $workers) = spread('/kept/events', $k1, 20);
is("$codes $workers", '200 2', 'kept: verified by both new workers');
is(fetches('kept.json'), 1, 'kept: no fetch after the reload');
like($t2->error_log, qr/\[info\] .*events: the JWKS from "\/_idp\/kept\.json"(?#
    ) fetched \d+ s ago, from shared memory, brings 1 keys/,
    'kept: taken from shared memory');

# another URI after a reload: fetched anew, nothing of the old one kept
$t2->write_config(conf2('/_idp/kept2.json'));
ok($t2->reload, 'kept2: reloaded with another URI');
$r = $t2->get('/kept/events', auth(jwt('ec2', 'k2')));
is($r->{status}, 200, 'kept2: a token by the new JWKS\'s key');
($codes, $workers) = spread('/kept/events', $k1, 10);
is("$codes $workers", '401 2',
    'kept2: the old URI\'s key is used by neither worker');
is(fetches('kept2.json'), 1, 'kept2: fetched once');
is(fetches('kept.json'), 1, 'kept2: the old URI not fetched');

# and back: the old URI's zone went with the reload before
$t2->write_config(conf2('/_idp/kept.json'));
ok($t2->reload, 'kept: reloaded with the first URI again');
($codes, $workers) = spread('/kept/events', $k1, 10);
is("$codes $workers", '200 2', 'kept again: verified by both workers');
is(fetches('kept.json'), 2, 'kept again: fetched anew, once');

# $events_tenant read by "return", before the preaccess phase: it never
# fetches, but takes the document any worker fetched for that URI
my (%tenant, %tpids);
for my $i (1 .. 100) {
    my $r = $t2->get('/tenant', auth($k1));
    $tenant{"$r->{status} $r->{body}"}++;
    $tpids{ $r->{headers}{'x-pid'} // '' } = 1;
    last if $i >= 10 && keys %tpids == 2;
}
is(join('|', keys %tenant), "200 tenant=acme\n",
    '$events_tenant before preaccess: the shared keys, in both workers');
is(scalar(keys %tpids), 2, '$events_tenant: both workers answered');
is(fetches('kept.json'), 2, '$events_tenant: no fetch');

# unknown kids: at most one refetch per refetch=3s, whichever worker
($codes, $workers) = spread('/kids/events', $k1, 4);
is($codes, '200', 'kids: fetched, verified');
is(fetches('kids.json'), 1, 'kids: one fetch');
sleep 3.2;
my @kids = map { jwt('ec1', "nope-$_") } 1 .. 8;
@st = at_once_on($t2, '/kids/events', (@kids) x 3);
is(scalar(grep { $_->[0] == 401 } @st), 24,
    'kids: 24 unknown kids at once after refetch=3s: 401');
my %seen;
for my $i (1 .. 30) {
    my $r = $t2->get('/kids/events', auth($kids[$i % 8]));
    $seen{ $r->{headers}{'x-pid'} // '' } = 1 if $r->{status} == 401;
}
is(scalar(keys %seen), 2, 'kids: and 30 more, refused by both workers');
is(fetches('kids.json'), 2, 'kids: one refetch for both workers');

# a JWKS the zone cannot hold: logged, each worker on its own
my $over_error = 'events: the JWKS from "/_idp/over.json" (' . $over
    . ' bytes) does not fit in the shared zone "events_jwks:/_idp/over.json"'
    . ' (65536 bytes); each worker fetches it and keeps its keys on its own';
($codes, $workers) = spread('/over/events', $k1, 20);
is("$codes $workers", '200 2', "over ($over bytes): verified by both");
my $nf = fetches('over.json');
ok($nf >= 1 && $nf <= 2, "over: one fetch per worker at most ($nf)");
like($t2->error_log, qr/\[error\] .*\Q$over_error\E/,
    'over: the error names the JWKS, its size and the zone');
($codes, $workers) = spread('/over/events', $k1, 20);
is("$codes $workers", '200 2', 'over: still verified by both');
is(fetches('over.json'), $nf, 'over: no more fetches within valid');

# a fetch whose worker dies is taken over: the IdP holds the first
# connection without answering, its worker is killed, and the next
# request, in either worker, finds the claim's worker gone and fetches
my $hang_body = $json->encode({ keys => [ jwk('ec1', 'k1') ] });
my $hang_ls = IO::Socket::IP->new(LocalAddr => '127.0.0.1',
    LocalPort => $hang, Listen => 16, ReuseAddr => 1) or die "listen: $!";
my $hang_pid = fork // die "fork: $!";
if ($hang_pid == 0) {
    my (@held, $n);
    while (my $c = $hang_ls->accept) {
        open(my $lf, '>>', "$dir/hang.log") or die;
        print $lf ++$n, "\n";
        close $lf;
        if ($n == 1) {
            push @held, $c;
            next;
        }
        my $head = '';
        while ($head !~ /\r\n\r\n/) {
            sysread($c, my $buf, 4096) or last;
            $head .= $buf;
        }
        print $c "HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n"
            . 'Content-Length: ' . length($hang_body) . "\r\n\r\n$hang_body";
        close $c;
    }
    exit 0;
}
close $hang_ls;

sub hang_fetches {
    my $log = -e "$dir/hang.log" ? $t->read_file('hang.log') : '';
    return scalar(() = $log =~ /\n/g);
}

# the worker whose connection to the IdP on port $hang is open
sub fetching_worker {
    my %inode;
    open(my $fh, '<', '/proc/net/tcp') or return;
    while (<$fh>) {
        my @f = split;
        $inode{ $f[9] } = 1
            if ($f[2] // '') =~ /:([0-9A-F]{4})$/ && hex($1) == $hang
            && $f[3] eq '01';
    }
    for my $pid ($t2->worker_pids) {
        opendir(my $dh, "/proc/$pid/fd") or next;
        for my $fd (readdir $dh) {
            my $l = readlink("/proc/$pid/fd/$fd") // '';
            return $pid if $l =~ /^socket:\[(\d+)\]$/ && $inode{$1};
        }
    }
    return;
}

my $held = IO::Socket::IP->new(PeerAddr => '127.0.0.1',
    PeerPort => $t2->port(1), Proto => 'tcp') or die "connect: $!";
print $held "GET /hang/events HTTP/1.1\r\nHost: localhost\r\n"
    . "Authorization: Bearer $k1\r\nConnection: close\r\n\r\n";
my $victim;
for (1 .. 100) {
    last if hang_fetches() == 1 && ($victim = fetching_worker());
    sleep 0.05;
}
ok($victim, 'hang: the IdP holds the fetch of one worker');
kill 'KILL', $victim if $victim;
$victim //= 0;
for (1 .. 100) {
    my @w = $t2->worker_pids;
    last if @w == 2 && !grep { $_ == $victim } @w;
    sleep 0.05;
}
my $t0 = time;
($codes, $workers) = spread('/hang/events', $k1, 10);
is("$codes $workers", '200 2', 'hang: verified by both workers after');
ok(time - $t0 < 10, 'hang: without waiting for the claim to expire');
is(hang_fetches(), 2, 'hang: one more fetch, for both workers');
like($t2->error_log, qr/\[warn\] .*events: the fetch of the JWKS from (?#
    )"\/_hang\/jwks\.json" by worker $victim is given up; fetching it again/,
    'hang: the dead worker\'s fetch given up');
close $held;
kill 'KILL', $hang_pid;
waitpid($hang_pid, 0);

# and back to a JWKS that fits: shared again from its first fetch
idp_file('back.json', $t->read_file('idp/over.json'));
($codes, $workers) = spread('/back/events', $k1, 10);
is("$codes $workers", '200 2', 'back: too large, verified by both');
my $nb = fetches('back.json');
ok($nb >= 1 && $nb <= 2, "back: one fetch per worker at most ($nb)");
jwks('back.json', jwk('ec1', 'k1'));
sleep 3.2;
($codes, $workers) = spread('/back/events', $k1, 20);
is("$codes $workers", '200 2', 'back: a JWKS that fits, verified by both');
is(fetches('back.json'), $nb + 1, 'back: one fetch for both workers');

$t2->stop;
ok(!grep({ /\[(?:alert|crit|emerg)\]/
    && !/worker process $victim exited on signal 9/ }
    split /\n/, $t2->error_log),
    'shared: no alert, crit or emerg in error.log but the kill');
ok($t2->error_log !~ /Sanitizer/, 'shared: no sanitizer report');

$t->done;
