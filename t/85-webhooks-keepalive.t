#!/usr/bin/perl

# Reused connections: deliveries to a pinned address go over the idle
# keep-alive connections of the dispatcher (events_webhook_keepalive),
# plain and TLS, counted at a real receiver (a second nginx server that
# logs $connection); TLS sessions resume on new connections; idle ones
# close after their timeout and at a reload.  A failure in TLS (a
# certificate that does not verify, TLS to a plain port) is E_TLS, in
# the attempt log, status and Prometheus.

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

for my $c (['tls', 'tls.test'], ['bad', 'bad.test']) {
    system("openssl req -x509 -newkey rsa:2048 -nodes -keyout $dir/$c->[0].key"
        . " -out $dir/$c->[0].crt -days 1 -subj /CN=$c->[1]"
        . " -addext subjectAltName=DNS:$c->[1] 2>/dev/null") == 0
        or plan skip_all => 'openssl cannot make a certificate';
    chmod 0644, "$dir/$c->[0].key";
}

my $dns = EventsTest::DNS->new(dir => $dir, records => {
    'tls.test' => ['127.0.0.1'], 'bad.test' => ['127.0.0.1'],
    'plain.test' => ['127.0.0.1'] });
my $resolver = $dns->resolver('valid=1s');

my $conf = <<'EOF';
%%GLOBALS%%
http {
    %%HTTP_GLOBALS%%

    events_zone main 4m;
    KEEPALIVE

    log_format hook '$server_port $connection $connection_requests '
                    '$ssl_session_reused $http_webhook_id';

    server {
        listen 127.0.0.1:%%PORT%%;
        RESOLVER

        events_webhook_allow 127.0.0.1/32;
        events_webhook_retry off;
        events_webhook_endpoint_concurrency 4;

        location /events { events_api main; }
        location /webhooks { events_webhooks main; }
        location = /status { events_status main; }

        location = /_events_webhook {
            internal;
            proxy_pass $events_webhook_url;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $events_webhook_host;
            proxy_next_upstream error non_idempotent;
            proxy_ssl_server_name on;
            proxy_ssl_verify on;
            proxy_ssl_trusted_certificate %%TESTDIR%%/tls.crt;
        }
    }

    server {
        listen 127.0.0.1:%%PORT_2%%;
        access_log %%TESTDIR%%/hook.log hook;
        location / { return 200 "plain"; }
    }

    server {
        listen 127.0.0.1:%%PORT_3%% ssl;
        ssl_certificate %%TESTDIR%%/tls.crt;
        ssl_certificate_key %%TESTDIR%%/tls.key;
        access_log %%TESTDIR%%/hook.log hook;
        location / { return 200 "tls"; }
    }

    server {
        listen 127.0.0.1:%%PORT_4%% ssl;
        ssl_certificate %%TESTDIR%%/bad.crt;
        ssl_certificate_key %%TESTDIR%%/bad.key;
        location / { return 200 "untrusted"; }
    }
}
EOF
$conf =~ s/RESOLVER/$resolver/;

sub config {
    my ($keepalive) = @_;
    (my $c = $conf) =~ s/KEEPALIVE/events_webhook_keepalive $keepalive;/;
    $t->write_config($c);
}

config('16 timeout=60s');
$t->run;

my ($p2, $p3, $p4) = map { $t->port($_) } 2, 3, 4;

sub endpoint {
    my ($url, $type) = @_;
    my $r = $t->post_json('/webhooks', { url => $url, events => ["$type.*"] });
    die "create: $r->{body}" unless $r->{status} == 201;
    return $r->{json}{id};
}

# the receiver's lines for these webhook-ids: [port, conn, n, reused]
sub received {
    my ($ids) = @_;
    my %want = map { $_ => 1 } @$ids;
    my @lines;
    my $end = time + 20;
    while (time < $end) {
        open my $fh, '<', "$dir/hook.log" or die;
        @lines = grep { $want{ $_->[4] // '' } } map { [split] } <$fh>;
        close $fh;
        last if @lines >= @$ids;
        sleep 0.2;
    }
    return @lines;
}

sub publish {
    my ($type, $n) = @_;
    my @ids;
    while ($n > 0) {
        my $b = $n > 100 ? 100 : $n;
        my $r = $t->post_json('/events', [ map { { type => "$type.x" } } 1 .. $b ]);
        die "publish: $r->{body}" unless $r->{status} == 201;
        push @ids, map { $_->{id} } @{ $r->{json}{data} };
        $n -= $b;
    }
    return \@ids;
}

# client sockets to a receiver port: the dispatcher's, idle or not
sub established {
    my ($port) = @_;
    my $hex = sprintf '%04X', $port;
    my $n = 0;
    for my $f ('/proc/net/tcp', '/proc/net/tcp6') {
        open my $fh, '<', $f or next;
        while (<$fh>) {
            my @f = split;
            $n++ if ($f[2] // '') =~ /:$hex$/ && $f[3] eq '01';
        }
    }
    return $n;
}

sub last_attempt {
    my ($id) = @_;
    my $end = time + 10;
    while (time < $end) {
        my $d = $t->get("/webhooks/$id/deliveries")->{json}{data};
        return $d->[0] if $d && @$d;
        sleep 0.1;
    }
    return {};
}

# 1. plain http: 200 deliveries, a handful of connections
endpoint("http://plain.test:$p2/hook", 'plain');
my @got = received(publish('plain', 200));
my %conns = map { $_->[1] => 1 } @got;
is(scalar @got, 200, 'plain: 200 deliveries received');
cmp_ok(scalar keys %conns, '<=', 8, 'plain: over a handful of connections')
    or diag scalar(keys %conns) . ' connections';
ok((grep { $_->[2] > 1 } @got) >= 190, 'plain: most on a reused connection');

# 2. https: the same, the certificate checked for tls.test
endpoint("https://tls.test:$p3/hook", 'tls');
@got = received(publish('tls', 200));
%conns = map { $_->[1] => 1 } @got;
is(scalar @got, 200, 'tls: 200 deliveries received');
cmp_ok(scalar keys %conns, '<=', 8, 'tls: over a handful of connections')
    or diag scalar(keys %conns) . ' connections';

# 3. idle connections stay open, and a reload closes them
cmp_ok(established($p2), '>', 0, 'plain: idle connections kept');
cmp_ok(established($p3), '>', 0, 'tls: idle connections kept');
ok($t->reload, 'reload: the old workers exit with idle connections open');
is(established($p2) + established($p3), 0, 'reload: idle connections closed');

# 4. a short idle timeout: closed when idle, the next resume TLS sessions
config('16 timeout=1s');
ok($t->reload, 'reload with timeout=1s');
@got = received(publish('tls', 8));
is(scalar @got, 8, 'tls: first deliveries');
my $end = time + 10;
sleep 0.2 while established($p3) && time < $end;
is(established($p3), 0, 'timeout=1s: idle connections closed');
@got = received(publish('tls', 8));
is(scalar @got, 8, 'tls: after the idle timeout, delivered');
my @new = grep { $_->[2] == 1 } @got;
ok(@new, 'new connections were opened');
is(scalar(grep { $_->[3] eq 'r' } @new), scalar @new,
    'new connections resumed their TLS session');

# 5. E_TLS: a certificate that does not verify, TLS to a plain port
my $bad = endpoint("https://bad.test:$p4/hook", 'bad');
publish('bad', 1);
my $a = last_attempt($bad);
is($a->{result}, 'failed', 'untrusted certificate: failed');
is($a->{error}, 'E_TLS', 'untrusted certificate: E_TLS');
like($a->{errorDetail} // '', qr/TLS/, 'the detail says TLS') or diag explain $a;

my $wrong = endpoint("https://tls.test:$p2/hook", 'wrong');
publish('wrong', 1);
$a = last_attempt($wrong);
is($a->{error}, 'E_TLS', 'TLS to a plain HTTP port: E_TLS');

my $refused = endpoint("http://plain.test:$p4/hook", 'refused');
publish('refused', 1);
$a = last_attempt($refused);
isnt($a->{error}, 'E_TLS', 'plain http to a TLS port: not E_TLS')
    or diag explain $a;

my $st = $t->get('/status')->{json}{webhooks};
is($st->{errors}{E_TLS}, 2, 'status: errors.E_TLS');
my $prom = $t->get('/status?format=prometheus')->{body};
like($prom, qr/^events_webhook_errors_total\{zone="main",error="E_TLS"\} 2$/m,
    'prometheus: E_TLS counted');

$t->expect_log(qr/certificate verify|self.signed|wrong version number|SSL_do_handshake/);

$t->done;
