#!/usr/bin/perl

# History on disk for a journal added by nginx -s reload: the master
# builds its index at the reload, so reads beyond the ring go to disk
# at once, without a restart.  The events from before the journal stay
# readable while the ring holds them, then are expired (410), never
# skipped; the journaled ones answer from disk by list, id, entity,
# catalog and stream resume; a restart keeps the index.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use Time::HiRes qw(sleep time);
use EventsTest;
use EventsTest::SSE;

my $conf = <<'EOF';
%%GLOBALS%%
http {
    %%HTTP_GLOBALS%%

    events_zone main 1m;
    JOURNAL

    server {
        listen 127.0.0.1:%%PORT%%;
        client_max_body_size 4m;

        location = /events/stream { events_stream main; }
        location /events { events_api main; }
        location = /events-status { events_status main; }
    }
}
EOF

my $t = EventsTest->new;
(my $plain = $conf) =~ s/JOURNAL//;
(my $journaled = $conf) =~ s{JOURNAL}
    {events_journal main %%TESTDIR%%/journal fsync=off segment_size=256k;};

sub post_range {
    my ($prefix, $from, $to) = @_;
    my @seqs;
    for (my $i = $from; $i <= $to; $i += 250) {
        my @b = map { { id => "$prefix-$_",
            type => $_ % 100 == 50 ? 'rare.found' : 'doc.saved',
            resourceType => 'doc', resourceId => 'd-' . ($_ % 20),
            payload => { data => { i => $_, pad => 'x' x 60 } } } }
            $i .. ($i + 249 > $to ? $to : $i + 249);
        my $r = $t->post_json('/events', \@b);
        die "POST: $r->{status} $r->{body}" unless $r->{status} == 201;
        push @seqs, map { $_->{seq} } @{ $r->{json}{data} };
    }
    return @seqs;
}

# every page of a listing, following "next"
sub pages {
    my ($path) = @_;
    my (@got, $url);
    my $sep = $path =~ /\?/ ? '&' : '?';
    $url = "$path${sep}limit=500";
    for (1 .. 200) {
        my $r = $t->get($url);
        die "GET $url: $r->{status} $r->{body}" unless $r->{status} == 200;
        push @got, map { $_->{seq} } @{ $r->{json}{data} };
        last unless $r->{json}{has_more};
        $url = "$path${sep}limit=500&"
            . ($path =~ /order=desc/ ? 'before' : 'after')
            . "=$r->{json}{next}";
    }
    return \@got;
}

$t->write_config($plain);
$t->run;

# without a journal: the ring only, 1 .. 300
my @before = post_range('pre', 1, 300);
my $c10 = $t->get('/events?limit=10')->{json}{next};
is($t->get('/events-status')->{json}{journal}, undef, 'no journal yet');

###########################################################################
# the reload adds the journal

$t->write_config($journaled);
my $pos = length $t->error_log;
ok($t->reload, 'reloaded with events_journal');
my $log = substr($t->error_log, $pos);
like($log, qr/history index ".*index\.mdb" is rebuilt from the journal's segments: the journal was added by a reload/,
    'the index is built at the reload');
like($log, qr/history index ".*index\.mdb": 0 events checked, 0 added \(rebuilt\)/,
    'empty, as the journal');
ok(-e $t->testdir . '/journal/index.mdb', 'index.mdb is there');
is($t->get('/events-status')->{json}{journal}{history}{ready}, JSON::PP::true,
    'status: the index is ready');

# the ring still answers for what it holds from before
is_deeply(pages('/events'), \@before,
    'the events from before the journal, from the ring, as before');
is($t->get('/events/pre-1')->{json}{seq}, $before[0], 'one by id');

my @after = post_range('post', 1, 6000);
my $st = $t->get('/events-status')->{json};
ok($st->{events}{retained} < 4000,
    "the ring holds $st->{events}{retained} of the 6000 journaled");
is($st->{events}{oldestSeq}, $after[0],
    'status: the oldest retained is the first journaled, on disk');

###########################################################################
# reads beyond the ring, from disk, without a restart

is_deeply(pages('/events'), \@after,
    'every journaled event, oldest first, across the ring/disk boundary');
is_deeply(pages('/events?order=desc'), [ reverse @after ],
    'and newest first');
my $p = $t->get('/events?limit=1')->{json};
is($p->{data}[0]{id}, 'post-1', 'the first listed is the first journaled');
is($p->{oldest}, $t->get("/events?limit=1&after=$p->{oldest}")->{json}
    ->{oldest}, '"oldest" is stable');
$t->is_error($t->get("/events?after=$c10"), 410, 'cursor_expired', 'after',
    'a cursor into the events before the journal, gone from the ring: 410');

my $r = $t->get('/events/post-1');
is($r->{status}, 200, 'the oldest journaled by id, from disk');
is($r->{json}{seq}, $after[0], 'with its seq');
is($r->{json}{payload}{data}{i}, 1, 'and its payload');
is($t->get('/events/pre-1')->{status}, 404,
    'an event from before the journal, gone from the ring: 404');

is_deeply(pages('/events/doc/d-7'),
    [ map { $after[$_ - 1] } grep { $_ % 20 == 7 } 1 .. 6000 ],
    'entity history from the first journaled on');
is_deeply(pages('/events?types=rare.*'),
    [ map { $after[$_ - 1] } grep { $_ % 100 == 50 } 1 .. 6000 ],
    'a rare type from disk');
my %types = map { $_->{type} => $_->{count} }
    @{ $t->get('/events/types')->{json}{data} };
is_deeply(\%types, { 'doc.saved' => 5940, 'rare.found' => 60 },
    'the catalog counts the journaled events');

$r = $t->post_json('/events', { id => 'post-2', type => 'doc.saved',
    resourceType => 'doc', resourceId => 'd-2',
    payload => { data => { i => 2, pad => 'x' x 60 } } });
is($r->{status}, 200, 'a repeat of an old journaled id is 200');
is($r->{json}{seq}, $after[1], 'with the stored event');

# a stream resuming from the 10th journaled event replays from disk
my $c = $t->get('/events?limit=10')->{json}{next};
my $s = EventsTest::SSE->open($t, '/events/stream', decode => 0,
    headers => { 'Last-Event-ID' => $c });
my @got = $s->events_until(sub { $_[0]{event} eq 'ready' }, timeout => 30);
ok(!grep({ $_->{event} eq 'reset' } @got), 'a stream resumes: no reset');
is_deeply([ map { $_->{data} =~ /"seq":(\d+)/ ? $1 + 0 : 0 }
            grep { $_->{event} eq 'message' } @got ],
    [ @after[10 .. $#after] ], 'every later event in order, then ready');
$s->close;
$s = EventsTest::SSE->open($t, '/events/stream',
    headers => { 'Last-Event-ID' => $c10 });
my $e = $s->next_event(timeout => 5);
is($e && $e->{event}, 'reset', 'resuming before the journal: reset');
$s->close;

###########################################################################
# a restart keeps it

$pos = length $t->error_log;
$t->stop;
$t->run;
like(substr($t->error_log, $pos),
    qr/history index ".*index\.mdb": 6000 events checked, 0 added in/,
    'after a restart the index is checked and kept');
is_deeply(pages('/events'), \@after, 'all of it');

$t->done;
