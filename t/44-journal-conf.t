#!/usr/bin/perl

# events_journal configuration: a directory the workers cannot write to
# fails nginx -t with a clear message; the fsync modes show in status;
# the journal goes on across nginx -s reload (the zone is reused, not
# replayed) and everything is there after a restart.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use Time::HiRes qw(sleep time);
use EventsTest;

my $conf = <<'EOF';
%%GLOBALS%%
http {
    %%HTTP_GLOBALS%%

    events_zone main 4m;
    events_journal JOURNAL;

    server {
        listen 127.0.0.1:%%PORT%%;

        location /events { events_api main; }
        location = /events-status { events_status main; }
    }
}
EOF

sub config {
    my ($t, $journal) = @_;
    (my $c = $conf) =~ s/JOURNAL/$journal/;
    $t->write_config($c);
}

# what nginx -t says of a journal
sub refused {
    my ($journal) = @_;
    my $t = EventsTest->new;
    config($t, $journal);
    my ($ok, $out) = $t->_test_config;
    return $ok ? undef : $out;
}

my $t = EventsTest->new;

SKIP: {
    skip 'workers run as another user only when tests run as root', 1
        unless defined $t->{uid};

    my $dir = $t->testdir . '/root-only';
    mkdir $dir, 0755 or die "mkdir: $!";
    my $out = refused("main $dir");
    like($out // '', qr/\[emerg\].*events zone "main": journal directory "\Q$dir\E" is not writable by the worker user "nobody" \(13: Permission denied\)/,
        'nginx -t: a directory the worker user cannot write to');
}

my $file = $t->testdir . '/a-file';
open(my $fh, '>', $file) or die;
close $fh;
like(refused("main $file") // '',
    qr/\[emerg\].*journal path "\Q$file\E" is not a directory/,
    'nginx -t: a path that is a file');

like(refused('main /nonexistent/deeper/journal') // '',
    qr{\[emerg\].*journal directory "/nonexistent/deeper/journal" cannot be created: "/nonexistent/deeper" is not a directory},
    'nginx -t: a directory that cannot be created');

like(refused('other /tmp/x') // '',
    qr/\[emerg\].*"events_journal" names an unknown events zone "other"/,
    'nginx -t: an unknown zone');

like(refused('main /tmp/x fsync=sometimes') // '',
    qr/\[emerg\] invalid parameter "fsync=sometimes"/,
    'nginx -t: an unknown parameter');

like(refused('main /tmp/x segment_size=1m max_size=1m') // '',
    qr/"max_size" must be at least twice "segment_size"/,
    'nginx -t: max_size below two segments');

# fsync=off: never synced
config($t, 'main %%TESTDIR%%/j-off fsync=off');
$t->run;
$t->post_json('/events', { type => 'mode.off' }) for 1 .. 3;
sleep 1.2;
my $j = $t->get('/events-status')->{json}{journal};
is($j->{fsync}, 'off', 'fsync=off');
is($j->{fsyncs}, 0, 'no fsyncs');
is($j->{lastFsyncAgeMs}, undef, 'last fsync age: null');
$t->stop;

# fsync=interval: synced by a timer, not by the request
config($t, 'main %%TESTDIR%%/j-int fsync=interval interval=300ms');
$t->run;
$j = $t->get('/events-status')->{json}{journal};
is($j->{fsyncs}, 0, 'nothing to sync yet');
$t->post_json('/events', { type => 'mode.interval' }) for 1 .. 3;

my $deadline = time + $t->scale(3);
sleep 0.05 until time > $deadline
    || $t->get('/events-status')->{json}{journal}{fsyncs} > 0;
sleep 0.7;    # two more intervals: whatever was left is synced
$j = $t->get('/events-status')->{json}{journal};
ok($j->{fsyncs} >= 1 && $j->{fsyncs} <= 3,
    "fsync=interval: $j->{fsyncs} fsyncs for 3 writes");
ok(defined $j->{lastFsyncAgeMs} && $j->{lastFsyncAgeMs} < 3000,
    'last fsync age');
sleep 1;
my $later = $t->get('/events-status')->{json}{journal};
is($later->{fsyncs}, $j->{fsyncs}, 'no fsyncs while nothing is written');
ok($later->{lastFsyncAgeMs} > $j->{lastFsyncAgeMs}, 'and the age grows');

# reload: the zone and its journal go on, nothing is replayed twice
ok($t->reload, 'reloaded');
$t->post_json('/events', { type => 'after.reload' }) for 1 .. 2;
$j = $t->get('/events-status')->{json}{journal};
is($j->{replayed}, 0, 'a reused zone is not replayed');
$t->stop;
$t->run;
my @seqs = map { $_->{seq} }
    @{ $t->get('/events?limit=100')->{json}{data} };
is_deeply(\@seqs, [ 1 .. 5 ], 'after a restart: before and after the reload');

# a reload that resizes the zone: a new zone, filled from the journal
my $epoch = $t->get('/events-status')->{json}{epoch};
my $cursor = $t->get('/events?limit=2')->{json}{next};
(my $bigger = $conf) =~ s/JOURNAL/main %%TESTDIR%%\/j-int fsync=interval/;
$bigger =~ s/events_zone main 4m;/events_zone main 5m;/;
$t->write_config($bigger);
ok($t->reload, 'reloaded with another zone size');
my $s = $t->get('/events-status')->{json};
is($s->{ring}{zoneBytes}, 5 * 1024 * 1024, 'a new zone');
is($s->{epoch}, $epoch, 'with the journal\'s epoch');
is($s->{journal}{replayed}, 5, 'replayed into it');
is_deeply([ map { $_->{seq} } @{ $t->get("/events?after=$cursor")
    ->{json}{data} } ], [ 3 .. 5 ], 'an old cursor goes on');

$t->done;
