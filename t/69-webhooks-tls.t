#!/usr/bin/perl

# HTTPS endpoints: nginx's proxy does TLS.  The request goes to the
# vetted address, and the name is kept for SNI and certificate checks:
# a certificate for another name fails the attempt.

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
    'tls.test' => ['127.0.0.1'], 'other.test' => ['127.0.0.1'] });
my $resolver = $dns->resolver('valid=1s');

(my $conf = <<'EOF') =~ s/RESOLVER/$resolver/;
%%GLOBALS%%
http {
    %%HTTP_GLOBALS%%

    events_zone main 4m;

    server {
        listen 127.0.0.1:%%PORT%%;
        RESOLVER

        events_webhook_allow 127.0.0.1/32;
        events_webhook_retry off;

        location /events { events_api main; }
        location /webhooks { events_webhooks main; }

        location = /_events_webhook {
            internal;
            proxy_pass $events_webhook_url;
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

        location / {
            return 200 "sni=$ssl_server_name host=$http_host";
        }
    }
}
EOF
$t->write_config($conf);
$t->run;

my $port = $t->port(2);

sub attempt {
    my ($url, $type) = @_;
    my $ep = $t->post_json('/webhooks', { url => $url, events => [$type] });
    die "create: $ep->{body}" unless $ep->{status} == 201;
    $t->post_json('/events', { type => $type });
    my $end = time + 10;
    while (time < $end) {
        my $d = $t->get("/webhooks/$ep->{json}{id}/deliveries")->{json}{data};
        return $d->[0] if @$d;
        sleep 0.1;
    }
    return {};
}

my $ok = attempt("https://tls.test:$port/hook", 'a.tls');
is($ok->{result}, 'succeeded', 'an https endpoint: delivered');
is($ok->{responseExcerpt}, "sni=tls.test host=tls.test:$port",
    'to the vetted address, with the name in SNI and Host');

my $bad = attempt("https://other.test:$port/hook", 'b.tls');
is($bad->{result}, 'failed', 'a certificate for another name: failed');
is($bad->{error}, 'E_TLS', 'E_TLS');
$t->expect_log(qr/upstream SSL certificate does not match|certificate verify/);

$t->done;
