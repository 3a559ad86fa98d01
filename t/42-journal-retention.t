#!/usr/bin/perl

# Journal retention: the oldest segments go while the journal is over
# max_size, closed segments go once older than the zone's retention;
# what was deleted is not replayed, and a cursor into it is expired
# after a restart, never silently skipped.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use Time::HiRes qw(sleep time);
use EventsTest;

sub wait_for {
    my ($t, $seconds, $cond) = @_;
    my $deadline = time + $t->scale($seconds);
    while (time < $deadline) {
        return 1 if $cond->();
        sleep 0.1;
    }
    return $cond->();
}

sub segments {
    my ($t) = @_;
    return glob $t->testdir . '/journal/*.evj';
}

sub post_many {
    my ($t, $n, $type) = @_;
    for my $i (1 .. $n) {
        my $r = $t->post_json('/events', { type => $type,
            resourceId => 'r-1', payload => { data => { i => $i,
            pad => 'x' x 200 } } });
        die "POST: $r->{status} $r->{body}" unless $r->{status} == 201;
    }
}

###########################################################################
# by size

my $t = EventsTest->new;

$t->write_config(<<'EOF');
%%GLOBALS%%
http {
    %%HTTP_GLOBALS%%

    events_zone main 4m;
    events_journal main %%TESTDIR%%/journal fsync=off segment_size=4k
                   max_size=16k;

    server {
        listen 127.0.0.1:%%PORT%%;

        location /events { events_api main; }
        location = /events-status { events_status main; }
    }
}
EOF
$t->run;

post_many($t, 150, 'size.test');
my $early = $t->get('/events?limit=10')->{json}{next};

ok(wait_for($t, 5, sub {
    my $j = $t->get('/events-status')->{json}{journal};
    $j->{bytes} <= 16 * 1024 }), 'the journal shrinks to max_size');

my $j = $t->get('/events-status')->{json}{journal};
my @segs = segments($t);
my $sum = 0;
$sum += -s $_ for @segs;
is($j->{bytes}, $sum, "status: $j->{bytes} bytes, what the files hold");
is($j->{segments}, scalar @segs, "status: $j->{segments} segments");
ok(@segs >= 3 && @segs <= 5, scalar(@segs) . ' segments of 4k kept');
like($t->error_log, qr/journal segment ".*\.evj" \(\d+ bytes\) deleted: over max_size/,
    'deletions are logged');
is($t->get('/events-status')->{json}{events}{retained}, 150,
    'the ring keeps what it holds');

(my $first) = $segs[0] =~ m{/0*(\d+)\.evj$};

$t->stop;
$t->run;

my $list = $t->get('/events?limit=1000')->{json};
is($list->{data}[0]{seq}, $first, "after a restart the window starts at "
    . "the oldest segment kept, seq $first");
is($list->{data}[-1]{seq}, 150, 'and ends at the last event');
$t->is_error($t->get("/events?after=$early"), 410, 'cursor_expired',
    'after', 'a cursor into deleted segments is expired');

$t->stop;
ok($t->error_log !~ /\[(?:alert|crit|emerg)\]/, 'size: no alert in error.log');

###########################################################################
# segments rotate while both workers write, with fsync=always

$t = EventsTest->new;

$t->write_config(<<'EOF');
%%GLOBALS%%
http {
    %%HTTP_GLOBALS%%

    events_zone main 4m;
    events_journal main %%TESTDIR%%/journal fsync=always segment_size=4k;

    server {
        listen 127.0.0.1:%%PORT%%;

        location /events { events_api main; }
        location = /events-status { events_status main; }
    }
}
EOF
$t->run;

my @got = $t->parallel(n => 4, code => sub {
    my ($i) = @_;
    my @seqs;
    for my $n (1 .. 40) {
        my $r = $t->post_json('/events', { type => 'rotate.test',
            id => "w$i-$n", payload => { data => { pad => 'y' x 200 } } });
        push @seqs, $r->{status} == 201 ? $r->{json}{seq} : -$r->{status};
    }
    return \@seqs;
});
my @acked = sort { $a <=> $b } map { @{ $_ // [] } } @got;
is(scalar(grep { $_ > 0 } @acked), 160, '160 concurrent writes answered');

@segs = segments($t);
ok(@segs >= 10, scalar(@segs) . ' segments');
is($t->get('/events-status')->{json}{journal}{segments}, scalar @segs,
    'status counts them');

$t->stop;
$t->run;

is_deeply([ map { $_->{seq} }
    @{ $t->get('/events?limit=1000')->{json}{data} } ], \@acked,
    'after a restart: every acknowledged event, in seq order');
is($t->get('/events-status')->{json}{journal}{cutBytes}, 0,
    'no record torn by the rotations');

$t->stop;
ok($t->error_log !~ /\[(?:alert|crit|emerg)\]/,
    'rotation: no alert in error.log');

###########################################################################
# by age

$t = EventsTest->new;

$t->write_config(<<'EOF');
%%GLOBALS%%
http {
    %%HTTP_GLOBALS%%

    events_zone main 4m retention=2s;
    events_journal main %%TESTDIR%%/journal fsync=off segment_size=4k;

    server {
        listen 127.0.0.1:%%PORT%%;

        location /events { events_api main; }
        location = /events-status { events_status main; }
    }
}
EOF
$t->run;

post_many($t, 50, 'age.test');
my $n = () = segments($t);
ok($n >= 4, "$n segments written");

ok(wait_for($t, 8, sub { my @s = segments($t); @s == 1 }),
    'closed segments older than the retention are deleted');
like($t->error_log, qr/deleted: older than the retention/, 'and logged');
is($t->get('/events-status')->{json}{journal}{segments}, 1,
    'status: one segment left');

$t->stop;
$t->run;

my $s = $t->get('/events-status')->{json};
is($s->{events}{retained}, 0, 'expired events are not replayed');
is($s->{events}{newestSeq}, 50, 'but seqs go on from them');
is($t->post_json('/events', { type => 'age.after' })->{json}{seq}, 51,
    'the next event is 51');

$t->done;
