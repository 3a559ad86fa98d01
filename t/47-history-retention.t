#!/usr/bin/perl

# History on disk and retention: max_age= removes exactly the events
# older than it, max_size= the oldest segments; every read then answers
# from the oldest kept event on, a cursor into what was removed is 410
# cursor_expired (a stream gets reset), an old id is 404, the catalog
# no longer counts them, and a restart keeps it so.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use Time::HiRes qw(sleep time);
use EventsTest;
use EventsTest::SSE;

sub wait_for {
    my ($t, $seconds, $cond) = @_;
    my $deadline = time + $t->scale($seconds);
    while (time < $deadline) {
        return 1 if $cond->();
        sleep 0.02;
    }
    return $cond->();
}

sub conf {
    my ($params) = @_;
    return <<"EOF";
%%GLOBALS%%
http {
    %%HTTP_GLOBALS%%

    events_zone main 1m;
    events_journal main %%TESTDIR%%/journal fsync=off $params;

    server {
        listen 127.0.0.1:%%PORT%%;
        client_max_body_size 4m;

        location = /events/stream { events_stream main; }
        location /events { events_api main; }
        location = /events-status { events_status main; }
    }
}
EOF
}

sub post_batch {
    my ($t, $prefix, $from, $to, $type, $n) = @_;
    my @seqs;
    $n //= 100;
    for (my $i = $from; $i <= $to; $i += $n) {
        my @b = map { { id => "$prefix-$_", type => $type,
            resourceType => 'doc', resourceId => 'd-' . ($_ % 5),
            payload => { data => { i => $_, pad => 'x' x 100 } } } }
            $i .. ($i + $n - 1 > $to ? $to : $i + $n - 1);
        my $r = $t->post_json('/events', \@b);
        die "POST: $r->{status} $r->{body}" unless $r->{status} == 201;
        push @seqs, map { $_->{seq} } @{ $r->{json}{data} };
    }
    return @seqs;
}

sub all_seqs {
    my ($t, $path) = @_;
    my (@seqs, $url);
    my $sep = $path =~ /\?/ ? '&' : '?';
    $url = "$path${sep}limit=1000";
    for (1 .. 100) {
        my $j = $t->get($url)->{json};
        push @seqs, map { $_->{seq} } @{ $j->{data} };
        last unless $j->{has_more};
        $url = "$path${sep}limit=1000&after=$j->{next}";
    }
    return \@seqs;
}

###########################################################################
# by age

my $t = EventsTest->new;
$t->write_config(conf('segment_size=64k max_age=10s'));
$t->run;

# the last old event expires 10 s after it was written, the first new
# one 6 s later: the checks run in between.  While they expire, the
# catalog never counts an event that lists no longer return (the sweep
# takes them out of the index a batch per turn, after lists lose them).
my @old = post_batch($t, 'old', 1, 3000, 'doc.created');
my $c10 = $t->get('/events?limit=10')->{json}{next};
sleep 6;
my @new = post_batch($t, 'new', 1, 300, 'doc.updated');

my @over;
ok(wait_for($t, 12, sub {
    my $oldest = $t->get('/events?limit=1')->{json}{data}[0]{seq};
    my %n = map { $_->{type} => $_->{count} }
        @{ $t->get('/events/types')->{json}{data} };
    my $kept = grep { $_ >= $oldest } @old;
    push @over, "$n{'doc.created'} > $kept"
        if $oldest > $old[0] && ($n{'doc.created'} // 0) > $kept;
    $oldest == $new[0] }),
    'after max_age, the oldest listed is the first event younger than it');
is_deeply(\@over, [], 'the catalog never counts what lists have lost');
is_deeply([ map { [ $_->{type}, $_->{count} ] }
            @{ $t->get('/events/types')->{json}{data} } ],
    [ [ 'doc.updated', scalar @new ] ],
    'the catalog no longer has the removed type');

is_deeply(all_seqs($t, '/events'), \@new,
    'exactly the younger events are left, in order');
$t->is_error($t->get("/events?after=$c10"), 410, 'cursor_expired', 'after',
    'a cursor into the removed events is expired');
is($t->get('/events/old-1')->{status}, 404, 'a removed event by id: 404');
is($t->get('/events/old-2999')->{status}, 404, 'the last removed too');
is($t->get('/events/new-1')->{json}{seq}, $new[0], 'the first kept is there');
is_deeply(all_seqs($t, '/events/doc/d-1'),
    [ grep { $_ >= $new[0] } @{ all_seqs($t, '/events/doc/d-1') } ],
    'entity history starts after the removed');
my $s = EventsTest::SSE->open($t, '/events/stream',
    headers => { 'Last-Event-ID' => $c10 });
my $e = $s->next_event(timeout => 5);
is($e && $e->{event}, 'reset', 'a stream resuming in them is reset');
like($e && $e->{data}, qr/"reason":"cursor_expired"/, 'cursor_expired');
$s->close;

my $r = $t->post_json('/events', { id => 'old-5', type => 'doc.created' });
is($r->{status}, 201, 'a removed client id is a new event again');

ok(wait_for($t, 5, sub { $t->error_log =~ /deleted: older than the retention/ }),
    'segments holding only removed events are deleted');
like($t->error_log, qr/history: events up to seq $old[-1] removed by retention/,
    'the removal is logged with its seq');

$t->stop;
$t->run;
ok(($t->get('/events?limit=1')->{json}{data}[0]{seq} // 1e9) > $old[-1],
    'after a restart, none of the removed is back');
$t->is_error($t->get("/events?after=$c10"), 410, 'cursor_expired', 'after',
    'and the same 410');
$t->stop;
ok($t->error_log !~ /\[(?:alert|crit|emerg)\]/, 'age: no alert');

###########################################################################
# by size

$t = EventsTest->new;
$t->write_config(conf('segment_size=64k max_size=512k'));
$t->run;

my @seqs = post_batch($t, 'e', 1, 100, 'doc.created');
my $first = $t->get('/events?limit=1')->{json}{next};
push @seqs, post_batch($t, 'e', 101, 6000, 'doc.created');

sub segs { sort map { m{/0*(\d+)\.evj$} ? $1 : () }
    glob $_[0]->testdir . '/journal/*.evj' }

ok(wait_for($t, 8, sub {
    $t->get('/events-status')->{json}{journal}{bytes} <= 512 * 1024 }),
    'the journal shrinks to max_size');
my @kept = sort { $a <=> $b } segs($t);
my $oldest = $kept[0];
ok($oldest > 1, "segments from seq $oldest on are kept");
ok(wait_for($t, 5, sub {
    ($t->get('/events?limit=1')->{json}{data}[0]{seq} // 0) == $oldest }),
    'the oldest listed is the first event of the oldest segment');
is_deeply(all_seqs($t, '/events'), [ grep { $_ >= $oldest } @seqs ],
    'every event from there on, exactly');
$t->is_error($t->get("/events?after=$first"), 410, 'cursor_expired',
    'after', 'a cursor into a deleted segment is expired');
is($t->get('/events/e-1')->{status}, 404, 'an event of it by id: 404');
my %types = map { $_->{type} => $_->{count} }
    @{ $t->get('/events/types')->{json}{data} };
is($types{'doc.created'}, scalar(grep { $_ >= $oldest } @seqs),
    'the catalog counts what is kept');

$t->done;
