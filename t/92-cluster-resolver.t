#!/usr/bin/perl

# events_cluster with a Redis host NAME and a resolver in http{}: the
# name is resolved by nginx's resolver at each connect (EventsTest::DNS
# answers), so a Redis whose name moves is followed without a reload.
# Two Redis on 127.0.0.1 and 127.0.0.2 (the same port: an A record has
# none), the second a replica of the first; the name is moved to the
# second, which is promoted, and the first is stopped: POSTs succeed
# again within seconds and streams go on with no reset.  A name that
# does not resolve (NXDOMAIN) is a failed connect: 503
# cluster_unavailable, an error log line naming the host, the errors
# count.  nginx -t: with a resolver an unresolvable name passes (as
# proxy_pass with variables), without one it is refused with the line;
# a name that is no name is refused either way.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use JSON::PP;
use Time::HiRes qw(time sleep);
use EventsTest;
use EventsTest::DNS;
use EventsTest::Redis;
use EventsTest::SSE;

plan(skip_all => 'redis-server not installed (make deps)')
    unless EventsTest::Redis->available;

my $r1 = EventsTest::Redis->new;
my $port = $r1->port;
my $r2 = EventsTest::Redis->new(bind => '127.0.0.2', port => $port);

my $dns = EventsTest::DNS->new(records => { 'redis.test' => ['127.0.0.1'] });

sub conf {
    my ($url, $resolver) = @_;
    return <<"EOF";
%%GLOBALS%%
http {
    %%HTTP_GLOBALS%%

    $resolver

    events_zone main 16m;
    events_cluster main $url prefix=t92 timeout=1s connect_timeout=500ms;

    server {
        listen 127.0.0.1:%%PORT%%;

        location /events/stream {
            events_stream main;
            events_heartbeat 300ms;
        }

        location /events {
            events_api main;
        }

        location = /events-status {
            events_status main;
        }
    }
}
EOF
}

# what nginx -t says: undef when it passes
sub refused {
    my ($url, $resolver) = @_;
    my $t = EventsTest->new(workers => 2);
    $t->write_config(conf($url, $resolver));
    my ($ok, $out) = $t->_test_config;
    return $ok ? undef : $out;
}

my $line = qr/ in \S+nginx\.conf:\d+/;

is(refused("redis://nowhere.test:$port", $dns->resolver), undef,
    'nginx -t: with a resolver, a name that does not resolve passes');
like(refused("redis://nowhere.invalid:$port", '') // '',
    qr/\[emerg\].*events_cluster: host not found in "nowhere\.invalid:$port" \(without a "resolver" in http\{\}, the name is resolved when the configuration is read\)$line/,
    'nginx -t: without a resolver, it is refused with the line');
like(refused("redis://a..b:$port", $dns->resolver) // '',
    qr/\[emerg\].*events_cluster: invalid host name in "a\.\.b:$port"$line/,
    'nginx -t: with a resolver, a name must still be a name');
like(refused("redis://bad!name:$port", '') // '',
    qr/\[emerg\].*events_cluster: invalid host name in "bad!name:$port"$line/,
    'nginx -t: and without one');
is(refused("redis://127.0.0.1:$port", $dns->resolver), undef,
    'nginx -t: an address with a resolver');
is(scalar $dns->queries, 0, 'nginx -t asked the DNS nothing');

# the node: the name, resolved by nginx's resolver

my $t = EventsTest->new(workers => 2);
$t->write_config(conf("redis://redis.test:$port", $dns->resolver));
$t->run;

sub status {
    return ($t->get('/events-status')->{json} // {})->{cluster} // {};
}

sub wait_for {
    my ($cond, $secs) = @_;
    my $deadline = time + ($secs // 10);
    while (time < $deadline) {
        my $v = $cond->();
        return $v if $v;
        sleep 0.05;
    }
    return undef;
}

ok(wait_for(sub { status()->{caughtUp} }), 'the node caught up');
is(status()->{url}, "redis://redis.test:$port", 'status: the URL, by name');

my $sse = EventsTest::SSE->open($t, '/events/stream');
is($sse->status, 200, 'a stream');

my $r = $t->post_json('/events', { id => 'before', type => 'dns.first' });
is($r->{status}, 201, 'POST through the resolved name: 201');
is($r1->cli(qw(XLEN {t92}:log)), 1, 'the event is in the first Redis');

my @ev = $sse->events_until(sub { ($_[0]{json}{id} // '') eq 'before' },
    timeout => 10);
is(scalar(grep { ($_->{json}{id} // '') eq 'before' } @ev), 1,
    'the tail reached the stream');

my @q = grep { $_->{type} eq 'A' } $dns->queries('redis.test');
ok(@q >= 1, 'nginx asked the DNS for redis.test (' . @q . ' A queries)');
is_deeply($q[0]{answers}, ['127.0.0.1'], 'and was told 127.0.0.1');

ok(wait_for(sub {
    grep { (status()->{address} // '') eq "127.0.0.1:$port" } 1 .. 4 }),
    'status: the address connected to');

# the failover: the second Redis replicates the first, is promoted, the
# name moves to it, the first stops

is($r2->cli('REPLICAOF', '127.0.0.1', $port), 'OK', 'a replica');
ok(wait_for(sub {
    ($r2->cli(qw(INFO replication)) // '') =~ /master_link_status:up/
        && ($r2->cli(qw(XLEN {t92}:log)) // 0) == 1 }),
    'the replica has the log');
is($r2->cli(qw(REPLICAOF NO ONE)), 'OK', 'the replica promoted');

$dns->reset_log;
$dns->set('redis.test' => ['127.0.0.2']);
my $moved = time;
$r1->stop;

my $after = wait_for(sub {
    my $r = $t->post_json('/events', { id => 'after',
        type => 'dns.moved' }, timeout => 3);
    return $r->{status} == 201 || $r->{status} == 200 ? $r : undef;
}, 15);
ok($after, 'POSTs succeed again after the name moved');
my $took = time - $moved;
ok($took < 8, sprintf('within a few seconds (%.1f s)', $took));
is($r2->cli(qw(XLEN {t92}:log)), 2, 'the event is in the second Redis');

@q = grep { $_->{type} eq 'A' } $dns->queries('redis.test');
ok(scalar(grep { "@{ $_->{answers} }" eq '127.0.0.2' } @q),
    'nginx asked the DNS again and was told 127.0.0.2');

@ev = $sse->events_until(sub { ($_[0]{json}{id} // '') eq 'after' },
    timeout => 10);
is(scalar(grep { ($_->{json}{id} // '') eq 'after' } @ev), 1,
    'the tail on the second Redis reached the stream');
is(scalar(grep { $_->{event} eq 'reset' } @ev), 0,
    'no reset: the same log, the same epoch');

ok(wait_for(sub {
    grep { (status()->{address} // '') eq "127.0.0.2:$port" } 1 .. 4 }),
    'status: the new address');

# the name gone: NXDOMAIN is a failed connect

my $errors = status()->{errors} // 0;
$dns->set('redis.test' => undef);
$r2->stop;      # the connections go; the next connect asks the name
my $nx = wait_for(sub {
    $t->error_log =~ /events_cluster: redis redis:\/\/redis\.test:$port: "redis\.test" could not be resolved \(3: Host not found\)/
}, 10);
ok($nx, 'an error log line names the host and the resolver\'s error');
ok(scalar(grep { $_->{rcode} eq 'NXDOMAIN' } $dns->queries('redis.test')),
    'the DNS said NXDOMAIN');

$r = $t->post_json('/events', { type => 'dns.gone' });
$t->is_error($r, 503, 'cluster_unavailable', undef,
    'NXDOMAIN: POST 503 cluster_unavailable');
is_deeply(eval { decode_json($r->{body}) }, { error => { status => 503,
    code => 'cluster_unavailable', message => 'the cluster\'s log cannot be '
        . 'reached; nothing was stored' } }, 'the error body');
is($r->{headers}{'retry-after'}, '1', 'Retry-After: 1');
ok(wait_for(sub { (status()->{errors} // 0) > $errors }),
    'status: errors counted');

# a DNS that does not answer: connect_timeout covers the resolving too

$dns->set('redis.test' => { a => ['127.0.0.2'], drop => 1 });
ok(wait_for(sub {
    $t->error_log
        =~ /"redis\.test" could not be resolved \(110: Operation timed out\)/
}, 10), 'a silent DNS: the resolve timed out within connect_timeout');
my $t0 = time;
$r = $t->post_json('/events', { type => 'dns.silent' });
$t->is_error($r, 503, 'cluster_unavailable', undef,
    'a silent DNS: POST 503 cluster_unavailable');
ok(time - $t0 < 2, sprintf('within the timeout (%.1f s)', time - $t0));

# the old workers quit while they ask a silent DNS: nothing holds them
$t0 = time;
ok($t->reload(timeout => 10), 'a reload while the DNS is silent');
ok(time - $t0 < 5, sprintf('the old workers left in %.1f s', time - $t0));

# the name back, with two addresses, one where nothing listens: the
# connects go in turn over the answer's addresses

$r2->start;
is($r2->cli(qw(XLEN {t92}:log)), 2, 'nothing was stored');
$dns->set('redis.test' => ['127.0.0.3', '127.0.0.2']);
ok(wait_for(sub {
    $t->post_json('/events', { id => 'back', type => 'dns.back' },
        timeout => 3)->{status} == 201 }, 15),
    'the name back: POST 201');
# (which comes first in an answer is the resolver's choice)
my $dead = () = $t->error_log
    =~ /redis\.test:$port: connect\(\) failed \(127\.0\.0\.3:$port\)/g;
note("connects to the address where nothing listens: $dead");

$sse->close;
$t->stop;

# rediss://: resolved at run time, the certificate is still checked
# against the NAME of the URL (and SNI is the name), not the address

my $dir = $t->testdir;

sub openssl {
    my $out = `openssl @_ 2>&1`;
    die "openssl @_: $out" if $?;
}

openssl("req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=t92-ca"
    . " -keyout $dir/ca.key -out $dir/ca.crt");
openssl("req -newkey rsa:2048 -nodes -subj /CN=secure.test"
    . " -keyout $dir/server.key -out $dir/server.csr");
$t->write_file('san.ext', "subjectAltName=DNS:secure.test\n");
openssl("x509 -req -in $dir/server.csr -CA $dir/ca.crt -CAkey $dir/ca.key"
    . " -CAcreateserial -days 2 -extfile $dir/san.ext -out $dir/server.crt");
chmod 0644, map { "$dir/$_" } qw(ca.crt server.crt server.key);

my $tls = EventsTest::Redis->new(
    tls => { cert => "$dir/server.crt", key => "$dir/server.key",
             ca => "$dir/ca.crt" });
my $tport = $tls->port;
$dns->set('secure.test' => ['127.0.0.1'], 'other.test' => ['127.0.0.1']);

sub tls_node {
    my ($name) = @_;
    my $n = EventsTest->new(workers => 2);
    my $c = conf("rediss://$name:$tport", $dns->resolver);
    $c =~ s{connect_timeout=500ms}
           {connect_timeout=1s tls_trusted_certificate=$dir/ca.crt};
    $n->write_config($c);
    $n->run;
    return $n;
}

my $s = tls_node('secure.test');
$r = wait_for(sub {
    my $r = $s->post_json('/events', { id => 'tls-1', type => 'dns.tls' });
    return $r->{status} == 201 ? $r : undef;
});
ok($r, 'rediss:// by a resolved name: POST 201');
is($tls->cli(qw(XLEN {t92}:log)), 1, 'the event is in the TLS Redis');
ok(scalar(grep { $_->{type} eq 'A' } $dns->queries('secure.test')),
    'the name was asked of the DNS');

my $o = tls_node('other.test');
$r = $o->post_json('/events', { type => 'dns.tls' });
$o->is_error($r, 503, 'cluster_unavailable', undef,
    'the same address under a name the certificate lacks: 503');
ok(wait_for(sub {
    $o->error_log =~ /the certificate does not match "other\.test"/ }),
    'error.log: checked against the name, not the address');
is($tls->cli(qw(XLEN {t92}:log)), 1, 'nothing else was stored');

for my $x ($s, $o) {
    $x->stop;
    my @bad = grep { /\[(?:alert|crit|emerg)\]/ } split /\n/, $x->error_log;
    ok(!@bad, 'no alert, crit or emerg in a TLS node\'s error.log');
}

$t->done;
