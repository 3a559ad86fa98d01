#!/usr/bin/perl

# events_cluster over rediss://: nginx's own SSL to a real Redis with
# TLS (started here, certificates made here with openssl).  The
# certificate is checked against tls_trusted_certificate= and against
# the URL's host, which also goes as SNI; a certificate from another CA
# or for another name is refused with a clear error and POSTs get 503.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use Time::HiRes qw(sleep);
use EventsTest;
use EventsTest::Redis;
use EventsTest::Cluster qw(node readable finish);

plan(skip_all => 'redis-server not installed (make deps)')
    unless EventsTest::Redis->available;

my $certs = EventsTest->new;
my $dir = $certs->testdir;

sub openssl {
    my @args = @_;
    my $out = `openssl @args 2>&1`;
    die "openssl @args: $out" if $?;
}

# a CA and a certificate for localhost; another CA nobody trusts
for my $ca ('ca', 'other') {
    openssl("req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=$ca-test-ca"
        . " -keyout $dir/$ca.key -out $dir/$ca.crt");
}
openssl("req -newkey rsa:2048 -nodes -subj /CN=localhost"
    . " -keyout $dir/server.key -out $dir/server.csr");
$certs->write_file('san.ext', "subjectAltName=DNS:localhost\n");
openssl("x509 -req -in $dir/server.csr -CA $dir/ca.crt -CAkey $dir/ca.key"
    . " -CAcreateserial -days 2 -extfile $dir/san.ext -out $dir/server.crt");
chmod 0644, map { "$dir/$_" } qw(ca.crt other.crt server.crt server.key);

my $redis = EventsTest::Redis->new(
    tls => { cert => "$dir/server.crt", key => "$dir/server.key",
             ca => "$dir/ca.crt" },
    args => [ '--bind', '127.0.0.1', '-::1' ]);
is($redis->cli('PING'), 'PONG', 'redis answers over TLS');

my $port = $redis->port;

sub tls_node {
    my ($url, $extra) = @_;
    return node($url, cluster => "prefix=t75 timeout=1s $extra");
}

my $t = tls_node("rediss://localhost:$port",
    "tls_trusted_certificate=$dir/ca.crt");
readable($t);
my $r = $t->post_json('/events', { id => 'tls-1', type => 'secure.thing' });
is($r->{status}, 201, 'rediss://: POST 201');
my $seen;
for (1 .. 100) {
    last if ($seen = $t->get('/events/tls-1')->{status}) == 200;
    sleep 0.05;
}
is($seen, 200, 'and the tailer read it back over TLS');
is($t->get('/events-status')->{json}{cluster}{url},
    "rediss://localhost:$port", 'status: the rediss:// URL');
is($redis->cli('XLEN', '{t75}:log'), 1, 'the event is in Redis');

# a certificate from a CA this node does not trust
my $u = tls_node("rediss://localhost:$port",
    "tls_trusted_certificate=$dir/other.crt");
$r = $u->post_json('/events', { type => 'secure.thing' });
$u->is_error($r, 503, 'cluster_unavailable', undef,
    'an untrusted certificate: 503');
sleep 0.3;
like($u->error_log, qr/events_cluster: redis rediss:\/\/localhost:$port: certificate verify error/,
    'error.log: the certificate is not trusted');

# the right CA, but the certificate is not for the URL's host
my $n = tls_node("rediss://127.0.0.1:$port",
    "tls_trusted_certificate=$dir/ca.crt");
$r = $n->post_json('/events', { type => 'secure.thing' });
$n->is_error($r, 503, 'cluster_unavailable', undef,
    'a certificate for another name: 503');
sleep 0.3;
like($n->error_log, qr/the certificate does not match "127\.0\.0\.1"/,
    'error.log: the name does not match');
is($redis->cli('XLEN', '{t75}:log'), 1, 'nothing else was stored');

# nginx -t
my $c = node("redis://127.0.0.1:$port",
    cluster => "tls_trusted_certificate=$dir/ca.crt", run => 0);
my ($ok, $out) = $c->_test_config;
like($ok ? '' : $out,
    qr/\[emerg\].*"tls_trusted_certificate=\S+" needs a rediss:\/\/ URL/,
    'nginx -t: tls_trusted_certificate without rediss://');
$c = node("rediss://localhost:$port",
    cluster => "tls_trusted_certificate=$dir/none.crt", run => 0);
($ok, $out) = $c->_test_config;
like($ok ? '' : $out, qr/\[emerg\].*none\.crt/,
    'nginx -t: a trusted certificate file that does not exist');

finish($u, $n, $t);
