#!/usr/bin/perl

# Readiness for load balancers: events_status answers "?ready" with 200
# while the zone takes writes, and 503 with the reason in JSON while
# its journal refuses them (here a full disk: a small tmpfs, which needs
# root).  Every worker says the same, the state survives a reload, and
# it clears with the first write that succeeds.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use JSON::PP;
use EventsTest;

my $t = EventsTest->new;
my $mnt = $t->testdir . '/full';
mkdir $mnt or die "mkdir $mnt: $!";

my $root = $> == 0
    && system('mount', '-t', 'tmpfs', '-o', 'size=256k,mode=0755', 'tmpfs',
              $mnt) == 0;
my $mounted = $root;
END { system('umount', $mnt) if $mounted && $mnt; }
chown $t->{uid}, $t->{gid}, $mnt if $root && defined $t->{uid};

$t->write_config(<<'EOF');
%%GLOBALS%%
http {
    %%HTTP_GLOBALS%%

    events_zone main 4m;
    events_zone bare 1m;
    events_journal main %%TESTDIR%%/full fsync=always;

    server {
        listen 127.0.0.1:%%PORT%%;

        location /events { events_api main; }
        location = /events-status { events_status main; }
        location = /bare-status { events_status bare; }
    }
}
EOF
$t->run;

my $ready = '{"zone":"main","ready":true,"journal":"ok","cluster":null}';

my $r = $t->get('/bare-status?ready');
is($r->{status}, 200, 'a zone without a journal: ready');
like($r->{headers}{'content-type'}, qr{^application/json}, 'JSON');
is($r->{body}, '{"zone":"bare","ready":true,"journal":null,'
    . '"cluster":null}', 'its body');

$r = $t->get('/events-status?ready');
is($r->{status}, 200, 'a zone with a journal: ready');
is($r->{body}, $ready, 'its body');
is($t->get('/events-status?ready=1')->{body}, $ready, 'ready=1');
is($t->get('/events-status?format=prometheus&ready')->{body}, $ready,
    'the same answer in either format');
$r = $t->req('HEAD', '/events-status?ready');
is($r->{status}, 200, 'HEAD');
is($r->{body}, '', 'no body');
like($t->get('/events-status?already')->{body}, qr/^\{"zone":"main","epoch"/,
    'another argument that ends in "ready" is the status page');
$r = $t->req('POST', '/events-status?ready', body => '{}',
    headers => { 'Content-Type' => 'application/json' });
$t->is_error($r, 405, 'method_not_allowed', undef, 'POST');
is($t->get('/events-status')->{json}{journal}{refusing}, JSON::PP::false,
    'status: not refusing');

SKIP: {
skip 'mounting a tmpfs needs root: the failing journal is not tested', 16
    unless $root;

my ($ok, $n) = (0, 0);
while ($n++ < 400) {
    $r = $t->post_json('/events', { type => 'disk.fill',
        payload => { data => { pad => 'x' x 1000 } } });
    last unless $r->{status} == 201;
    $ok++;
}
ok($ok > 10, "$ok events fit");
$t->is_error($r, 503, 'journal_unavailable', undef, 'then the disk is full');

my $failing = '{"zone":"main","ready":false,"journal":"failing",'
    . '"cluster":null,'
    . '"reason":"journal_refusing_writes","detail":"the journal\'s last '
    . 'write failed (a full disk?), events are refused until a write '
    . 'succeeds; see error.log"}';

# several requests: new connections land on either worker
my %seen;
for (1 .. 10) {
    $r = $t->get('/events-status?ready');
    $seen{"$r->{status} $r->{body}"}++;
}
is_deeply([keys %seen], ["503 $failing"], 'not ready, on every worker');
like($r->{headers}{'content-type'}, qr{^application/json}, 'JSON');

my $s = $t->get('/events-status')->{json};
is($s->{journal}{refusing}, JSON::PP::true, 'status: refusing');
like($t->get('/events-status?format=prometheus')->{body},
    qr/^events_journal_refusing\{zone="main"\} 1$/m, 'Prometheus: refusing');

# the state is the zone's: a reload keeps it
ok($t->reload, 'reloaded');
$r = $t->get('/events-status?ready');
is($r->{status}, 503, 'still not ready after a reload');
is($r->{body}, $failing, 'the same reason');
is($t->get('/bare-status?ready')->{status}, 200,
    'the zone without a journal stays ready');

# room again: the next write succeeds and clears it
system('mount', '-o', 'remount,size=4m', $mnt) == 0
    or die "remount: $?";
$r = $t->post_json('/events', { type => 'disk.room' });
is($r->{status}, 201, 'a write once there is room');
%seen = ();
for (1 .. 10) {
    $r = $t->get('/events-status?ready');
    $seen{"$r->{status} $r->{body}"}++;
}
is_deeply([keys %seen], ["200 $ready"], 'ready again, on every worker');
like($t->get('/events-status?format=prometheus')->{body},
    qr/^events_journal_refusing\{zone="main"\} 0$/m,
    'Prometheus: not refusing');
is($t->get('/events-status')->{json}{journal}{refusing}, JSON::PP::false,
    'status: not refusing');
cmp_ok($t->get('/events-status')->{json}{journal}{errors}, '>=', 1,
    'the errors stay counted');

$t->expect_log(qr/No space left on device/);
}

$t->done;
