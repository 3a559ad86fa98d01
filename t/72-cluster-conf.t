#!/usr/bin/perl

# events_cluster configuration: nginx -t names the bad URL or parameter
# with its line, refuses what is not built yet (a journal or capture on
# a cluster's zone); an unreachable Redis is a clear error at
# run time, and the node answers 503 until it is there.  The example
# conf-examples/cluster.conf runs as three nodes on one Redis.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use Time::HiRes qw(sleep);
use EventsTest;
use EventsTest::Daemon;
use EventsTest::Redis;

plan(skip_all => 'redis-server not installed (make deps)')
    unless EventsTest::Redis->available;

my $conf = <<'EOF';
%%GLOBALS%%
http {
    %%HTTP_GLOBALS%%

    events_zone main 4m;
    CLUSTER

    server {
        listen 127.0.0.1:%%PORT%%;

        location /events { events_api main; EXTRA }
        location = /events-status { events_status main; }
    }
}
EOF

sub config {
    my ($t, $cluster, $extra) = @_;
    (my $c = $conf) =~ s/CLUSTER/$cluster/;
    $c =~ s/EXTRA/$extra \/\/ ''/e;
    $t->write_config($c);
}

# what nginx -t says
sub refused {
    my ($cluster, $extra) = @_;
    my $t = EventsTest->new;
    config($t, $cluster, $extra);
    my ($ok, $out) = $t->_test_config;
    return $ok ? undef : $out;
}

my $line = qr/ in \S+nginx\.conf:\d+/;

like(refused('events_cluster main http://127.0.0.1:6379;') // '',
    qr/\[emerg\].*events_cluster: the URL must start with "redis:\/\/" or "rediss:\/\/", not "http:\/\/127\.0\.0\.1:6379"$line/,
    'nginx -t: not a redis:// URL');
ok(!defined refused('events_cluster main rediss://127.0.0.1:6379;'),
    'nginx -t: rediss:// with the system\'s trusted certificates');
like(refused('events_cluster main redis://127.0.0.1:99999;') // '',
    qr/\[emerg\].*events_cluster: invalid port in "127\.0\.0\.1:99999"$line/,
    'nginx -t: a bad port');
like(refused('events_cluster main redis://;') // '',
    qr/\[emerg\].*events_cluster: no host in "redis:\/\/"$line/,
    'nginx -t: no host');
like(refused('events_cluster main redis://127.0.0.1:6379/x;') // '',
    qr/\[emerg\].*the database after "\/" must be a number/,
    'nginx -t: a database that is not a number');
like(refused('events_cluster main redis://:@127.0.0.1;') // '',
    qr/\[emerg\].*an empty password/, 'nginx -t: an empty password');
like(refused('events_cluster main redis://127.0.0.1 shards=3;') // '',
    qr/\[emerg\].*events_cluster: unknown parameter "shards=3"$line/,
    'nginx -t: an unknown parameter');
like(refused('events_cluster main redis://127.0.0.1 timeout=soon;') // '',
    qr/\[emerg\].*events_cluster: invalid parameter "timeout=soon"/,
    'nginx -t: a bad timeout');
like(refused('events_cluster main redis://127.0.0.1 tail_pace=2s;') // '',
    qr/\[emerg\].*invalid parameter "tail_pace=2s"/,
    'nginx -t: tail_pace over 1s');
like(refused('events_cluster main redis://127.0.0.1 tail_pace=x;') // '',
    qr/\[emerg\].*invalid parameter "tail_pace=x"/, 'nginx -t: tail_pace=x');
ok(!defined refused('events_cluster main redis://127.0.0.1 tail_pace=0;'),
    'nginx -t: tail_pace=0 (every read at once)');
like(refused('events_cluster main redis://127.0.0.1 max_len=0;') // '',
    qr/\[emerg\].*invalid parameter "max_len=0"/, 'nginx -t: max_len=0');
like(refused('events_cluster main redis://127.0.0.1 "prefix=a{b}";') // '',
    qr/\[emerg\].*invalid parameter "prefix=a\{b\}"/,
    'nginx -t: a prefix with a brace (it would break the hash tag)');
like(refused('events_cluster other redis://127.0.0.1;') // '',
    qr/\[emerg\].*events_cluster: unknown events zone "other"/,
    'nginx -t: a zone that is not an events_zone');
like(refused("events_cluster main redis://127.0.0.1;\n"
        . "    events_cluster main redis://127.0.0.2;") // '',
    qr/\[emerg\].*events zone "main" already has an events_cluster$line/,
    'nginx -t: two clusters on one zone');

my $jdir = EventsTest->new->testdir;
like(refused("events_cluster main redis://127.0.0.1;\n"
        . "    events_journal main $jdir;") // '',
    qr/\[emerg\].*events_cluster: events zone "main" has an events_journal/,
    'nginx -t: a journal on a cluster\'s zone, refused');
like(refused('events_cluster main redis://127.0.0.1;',
        'events_capture header zone=main;') // '',
    qr/\[emerg\].*events_capture into events zone "main", which has an events_cluster, is not supported yet/,
    'nginx -t: capture into a cluster\'s zone, refused');

ok(!defined refused('events_cluster main '
        . 'redis://app:s3cret@127.0.0.1:6379/2 prefix=shop:eu '
        . 'connect_timeout=500ms timeout=3s retention=1h max_len=100000;'),
    'nginx -t: every parameter at once');

# an unreachable Redis: nginx starts; reads wait for the log, POST is
# 503, the error log says why; the password is never logged

my (undef, $hold, $closed) = EventsTest::Daemon::reserve_port();
my $t = EventsTest->new;
config($t, "events_cluster main redis://app:s3cret\@127.0.0.1:$closed "
    . 'connect_timeout=300ms timeout=500ms;');
$t->run;

my $r = $t->post_json('/events', { type => 'a.b' });
$t->is_error($r, 503, 'cluster_unavailable', undef,
    'Redis unreachable: POST 503');
is($r->{headers}{'retry-after'}, '1', 'with Retry-After');
like($r->{json}{error}{message}, qr/nothing was stored/,
    'and says nothing was stored');
$t->is_error($t->get('/events'), 503, 'cluster_catching_up', undef,
    'reads wait until the node has read the log');

my $st = $t->get('/events-status')->{json}{cluster};
is($st->{url}, "redis://app:***\@127.0.0.1:$closed",
    'status: the URL without its password');
ok(!$st->{connected}, 'status: not connected');
sleep 0.5;
like($t->error_log, qr/\[error\].*events_cluster: redis redis:\/\/app:\*\*\*\@127\.0\.0\.1:$closed: connect\(\) failed/,
    'error.log: the Redis that cannot be reached');
unlike($t->error_log, qr/s3cret/, 'error.log: never the password');
$t->stop;

# conf-examples/cluster.conf, as written, on three nodes of one Redis

my $redis = EventsTest::Redis->new;
open(my $fh, '<', "$EventsTest::REPO/conf-examples/cluster.conf")
    or die "cluster.conf: $!";
my $example = do { local $/; <$fh> };
close $fh;

$example =~ s/^\s*(load_module|worker_processes|pid|error_log)\b[^;]*;\n//mg;
$example =~ s/^events\s*\{[^}]*\}\n//m;
$example =~ s/127\.0\.0\.1:8080/127.0.0.1:%%PORT%%/g;
like($example, qr{redis://127\.0\.0\.1:6379}, 'the example names a Redis');
$example =~ s{redis://127\.0\.0\.1:6379}{$redis->url}ge;

my @nodes;
for (1 .. 3) {
    my $n = EventsTest->new;
    mkdir $n->testdir . '/logs';
    chmod 0777, $n->testdir . '/logs';
    $n->write_config("%%GLOBALS%%\n$example");
    $n->run;
    push @nodes, $n;
}

my $ready = 0;
for (1 .. 100) {
    $ready = grep { $_->get('/events')->{status} == 200 } @nodes;
    last if $ready == 3;
    sleep 0.05;
}
is($ready, 3, 'example: three nodes read the log');

$r = $nodes[0]->post_json('/events', { type => 'ticket.created',
    resourceId => 't-1' });
is($r->{status}, 201, 'example: POST on the first node');
my $seen;
for (1 .. 100) {
    $seen = $nodes[2]->get('/events/ticket/t-1')->{json}{data} // [];
    last if @$seen;
    sleep 0.05;
}
is(($seen->[0] // {})->{seq}, $r->{json}{seq},
    'example: the third node has it');
ok($nodes[1]->get('/events-status')->{json}{cluster},
    'example: status has the cluster');

for my $n (@nodes) {
    $n->stop;
    my @bad = grep { /\[(?:alert|crit|emerg)\]/ } split /\n/, $n->error_log;
    ok(!@bad, 'example: no alert, crit or emerg');
}

# max_len= trims the log (MAXLEN ~, whole nodes of the stream);
# retention= is how long Redis remembers a client id (and MINID ~)

my $m = EventsTest->new;
config($m, 'events_cluster main ' . $redis->url
    . ' prefix=t72m max_len=20 retention=2s;');
$m->run;
for (1 .. 100) {
    last if $m->get('/events')->{status} == 200;
    sleep 0.05;
}
for my $b (1 .. 3) {
    $r = $m->post_json('/events', [ map { { type => 'bulk.item' } } 1 .. 100 ]);
    is($r->{status}, 201, "max_len: a batch of 100 ($b)");
}
my $len = $redis->cli('XLEN', '{t72m}:log');
ok($len >= 20 && $len < 300, "max_len=20: the log was trimmed ($len left)");

$r = $m->post_json('/events', { id => 'kept-2s', type => 'x.y' });
is($r->{status}, 201, 'retention: a client id');
my $ttl = $redis->cli('PTTL', '{t72m}:id:0:kept-2s');
ok($ttl > 0 && $ttl <= 2000, "retention=2s: the id expires in Redis ($ttl ms)");
$m->stop;
my @bad = grep { /\[(?:alert|crit|emerg)\]/ } split /\n/, $m->error_log;
ok(!@bad, 'max_len: no alert, crit or emerg');

$t->done;
