#!/usr/bin/perl

# nginx.conf endpoints (events_webhook) with a host name: with a
# "resolver" where events_webhooks is, the name is resolved by the
# module (unchecked: the operator's own config) and the delivery goes
# through the pinned-address balancer, so connections are reused and a
# TLS failure is E_TLS, in the attempt log and status.  Without a
# resolver the proxy resolves the name itself as before, and a TLS
# failure there stays E_CONNECT.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use JSON::PP;
use Time::HiRes qw(time sleep);
use EventsTest;
use EventsTest::DNS;

my $t = EventsTest->new;
my $dir = $t->testdir;

system("openssl req -x509 -newkey rsa:2048 -nodes -keyout $dir/tls.key"
    . " -out $dir/tls.crt -days 1 -subj /CN=tls.test"
    . " -addext subjectAltName=DNS:tls.test 2>/dev/null") == 0
    or plan skip_all => 'openssl cannot make a certificate';
chmod 0644, "$dir/tls.key";

my $dns = EventsTest::DNS->new(dir => $dir, records => {
    'tls.test' => ['127.0.0.1'], 'other.test' => ['127.0.0.1'],
    'localhost' => ['127.0.0.1'] });

my $conf = <<'EOF';
%%GLOBALS%%
http {
    %%HTTP_GLOBALS%%

    events_zone main 4m;
    events_webhook_keepalive 8 timeout=60s;

    log_format hook '$connection $connection_requests $http_host '
                    '$ssl_server_name $http_webhook_id';

    events_webhook main id=good url=https://tls.test:%%PORT_2%%/good
        events=good.* secret=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw;
    events_webhook main id=bad url=https://localhost:%%PORT_2%%/bad
        events=bad.* secret=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw;

    server {
        listen 127.0.0.1:%%PORT%%;
        RESOLVER

        events_webhook_retry off;

        location /events { events_api main; }
        location /webhooks { events_webhooks main; }
        location = /status { events_status main; }

        location = /_events_webhook {
            internal;
            proxy_pass $events_webhook_url;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $events_webhook_host;
            proxy_ssl_server_name on;
            proxy_ssl_name $events_webhook_server_name;
            proxy_ssl_verify on;
            proxy_ssl_trusted_certificate %%TESTDIR%%/tls.crt;
        }
    }

    server {
        listen 127.0.0.1:%%PORT_2%% ssl;
        ssl_certificate %%TESTDIR%%/tls.crt;
        ssl_certificate_key %%TESTDIR%%/tls.key;
        access_log %%TESTDIR%%/hook.log hook;
        location / { return 200 "ok"; }
    }
}
EOF

sub config {
    my ($tt, $resolver) = @_;
    (my $c = $conf) =~ s/RESOLVER/$resolver/;
    $tt->write_config($c);
}

config($t, $dns->resolver('valid=30s'));
$t->run;

sub publish {
    my ($type, $n) = @_;
    my $r = $t->post_json('/events', [ map { { type => $type } } 1 .. $n ]);
    die "publish: $r->{body}" unless $r->{status} == 201;
    return [ map { $_->{id} } @{ $r->{json}{data} } ];
}

# the receiver's lines for these webhook-ids: [conn, n, host, sni, id]
sub received {
    my ($ids) = @_;
    my %want = map { $_ => 1 } @$ids;
    my @lines;
    my $end = time + 15;
    while (time < $end) {
        open my $fh, '<', "$dir/hook.log" or die;
        @lines = grep { $want{ $_->[4] // '' } } map { [split] } <$fh>;
        close $fh;
        last if @lines >= @$ids;
        sleep 0.2;
    }
    return @lines;
}

sub attempts {
    my ($tt, $id, $n) = @_;
    my $end = time + 10;
    my $d = [];
    while (time < $end) {
        $d = $tt->get("/webhooks/$id/deliveries")->{json}{data} // [];
        last if @$d >= $n;
        sleep 0.1;
    }
    return $d;
}

# a name the certificate has: delivered, over reused connections
my $port = $t->port(2);
my @got = received(publish('good.x', 20));
is(scalar @got, 20, 'static https by name: 20 deliveries');
is($got[0][2], "tls.test:$port", 'Host is the name');
is($got[0][3], 'tls.test', 'SNI is the name');
my %conns = map { $_->[0] => 1 } @got;
cmp_ok(scalar keys %conns, '<=', 4, 'over a handful of connections')
    or diag scalar(keys %conns) . ' connections';
ok((grep { $_->[1] > 1 } @got) >= 15, 'most on a reused connection');

# localhost, resolved by our resolver: the certificate is for tls.test
publish('bad.x', 2);
my $a = attempts($t, 'bad', 2);
is(scalar @$a, 2, 'two attempts logged');
is($a->[0]{result}, 'failed', 'a certificate that does not verify: failed');
is($a->[0]{error}, 'E_TLS', 'E_TLS in the attempt log');
is($a->[1]{error}, 'E_TLS', 'E_TLS, again');
my $st = $t->get('/status')->{json}{webhooks};
is($st->{errors}{E_TLS}, 2, 'status: errors.E_TLS');
is($st->{errors}{E_CONNECT} // 0, 0, 'status: no E_CONNECT');
is($t->get('/webhooks/bad')->{json}{stats}{lastError}, 'E_TLS',
    'the endpoint: lastError E_TLS');
$t->stop;
unlike($t->error_log, qr/\[(?:alert|crit|emerg)\]|Sanitizer/,
    'with a resolver: no alert, crit, emerg or sanitizer report');

# without a resolver: the proxy's own path, as before
my $t2 = EventsTest->new;
for my $f ('tls.crt', 'tls.key') {
    system('cp', "$dir/$f", $t2->testdir . "/$f") == 0 or die "cp $f";
}
config($t2, '');
$t2->run;
$t2->post_json('/events', { type => 'bad.x' });
$a = attempts($t2, 'bad', 1);
is($a->[0]{result}, 'failed', 'no resolver: failed');
is($a->[0]{error}, 'E_CONNECT', 'no resolver: E_CONNECT, as before');
$t2->done;
