#!/usr/bin/perl

# events_journal: what was accepted is there after a restart, with the
# same ids, seqs, epoch and cursors; streams resume across it without a
# reset; the indexes and the catalog are rebuilt; seqs go on; writers
# on both workers land in one journal in seq order; the catalog counts
# an event as soon as its POST is answered.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use EventsTest;
use EventsTest::SSE;

my $t = EventsTest->new;

$t->write_config(<<'EOF');
%%GLOBALS%%
http {
    %%HTTP_GLOBALS%%

    events_zone main 4m;
    events_journal main %%TESTDIR%%/journal fsync=always;

    server {
        listen 127.0.0.1:%%PORT%%;

        location = /events/stream { events_stream main; }
        location /events { events_api main; }
        location = /events-status { events_status main; }
    }
}
EOF
$t->run;

my $dir = $t->testdir . '/journal';
ok(-d $dir, 'the master made the journal directory');
is((stat $dir)[4], $t->{uid}, 'owned by the worker user')
    if defined $t->{uid};

for my $n (1 .. 20) {
    my $r = $t->post_json('/events', { type => 'ticket.updated',
        resourceId => 't-' . ($n % 3), payload => { data => { n => $n } } });
    die "POST $n: $r->{status} $r->{body}" unless $r->{status} == 201;
}

my $r = $t->post_json('/events', [
    { type => 'order.created', id => 'order-1:v1',
      payload => { data => { total => 10 } } },
    { type => 'order.created', id => 'order-2:v1',
      payload => { data => { total => 20.5 } } },
    ]);
is($r->{status}, 201, 'a batch');
$t->post_json('/events', { type => 'session.started', resourceId => 's-1' })
    for 1 .. 8;

my $status = $t->get('/events-status')->{json};
my $epoch = $status->{epoch};
my $list = $t->get('/events?limit=100');
is(scalar @{ $list->{json}{data} }, 30, '30 events');
my $mid = $t->get('/events?limit=20')->{json}{next};
my $types = $t->get('/events/types')->{body};
my $entity = $t->get('/events/ticket/t-1?limit=100')->{body};

my $j = $status->{journal};
is($j->{fsync}, 'always', 'status: fsync mode');
ok($j->{bytes} > 30 * 200, "status: $j->{bytes} journal bytes");
is($j->{segments}, 1, 'status: one segment');
ok($j->{fsyncs} >= 1, "status: $j->{fsyncs} fsyncs");
ok(defined $j->{lastFsyncAgeMs} && $j->{lastFsyncAgeMs} < 60000,
    'status: last fsync age');
is($j->{errors}, 0, 'status: no errors');

my @files = glob "$dir/*.evj";
is(scalar @files, 1, 'one segment file');
like($files[0], qr{/0{19}1\.evj$}, 'named by its first seq');
is((stat $files[0])[4], $t->{uid}, 'written by the worker user')
    if defined $t->{uid};

# a stream from before the restart
my $s = EventsTest::SSE->open($t, '/events/stream', last_event_id => $mid);
my @before = $s->events_until(sub { $_[0]{event} eq 'ready' }, 5);
is(scalar @before, 11, '10 events and ready before the restart');
$s->close;

$t->stop;
$t->run;

like($t->error_log, qr/journal ".*journal": 30 events replayed/,
    'the replay is logged');

my $after = $t->get('/events-status')->{json};
is($after->{epoch}, $epoch, 'the same epoch');
is($after->{journal}{replayed}, 30, 'status: 30 replayed');
ok(defined $after->{journal}{replayMs}, 'status: replay time');
is($after->{events}{retained}, 30, '30 retained');

my $again = $t->get('/events?limit=100');
is($again->{body}, $list->{body},
    'the same events, ids, seqs, timestamps and cursors');
is_deeply([ map { $_->{seq} } @{ $t->get("/events?after=$mid&limit=100")
    ->{json}{data} } ], [ 21 .. 30 ], 'a cursor from before goes on');
is(-s "$dir/cursor.key", 16, 'the cursor secret is kept beside the journal');
is((stat "$dir/cursor.key")[2] & 0777, 0600, 'readable by its owner only');
is($t->get('/events/types')->{body}, $types, 'the catalog is rebuilt');
is($t->get('/events/ticket/t-1?limit=100')->{body}, $entity,
    'an entity history is rebuilt');
is($t->get('/events/order-2:v1')->{json}{payload}{data}{total}, 20.5,
    'the id index is rebuilt');

$r = $t->post_json('/events', { type => 'order.created', id => 'order-1:v1',
    payload => { data => { total => 10 } } });
is($r->{status}, 200, 'an idempotent repeat is still recognised');
is($r->{json}{seq}, 21, 'and answered with the stored event');
$t->is_error($t->post_json('/events', { type => 'order.created',
    id => 'order-1:v1', payload => { data => { total => 11 } } }),
    409, 'conflict', 'id');

# the stream resumes with its pre-restart cursor: no reset, no gap
$s = EventsTest::SSE->open($t, '/events/stream', last_event_id => $mid);
my @events = $s->events_until(sub { $_[0]{event} eq 'ready' }, 5);
ok(!grep({ $_->{event} eq 'reset' } @events), 'no reset');
is_deeply([ map { $_->{json}{seq} }
    grep { $_->{event} eq "message" } @events ],
    [ 21 .. 30 ], 'exactly what came after the cursor');
is_deeply([ map { $_->{id} } @events[0 .. 9] ],
    [ map { $_->{id} } @before[0 .. 9] ], 'with the same ids');

$r = $t->post_json('/events', { type => 'after.restart' });
is($r->{json}{seq}, 31, 'seq goes on after the restart');
my $live = $s->next_event(timeout => 3);
is($live && $live->{json}{seq}, 31, 'and the stream gets it live');
$s->close;

# writers on both workers, then another restart: one journal, in order
my $fsyncs = $t->get('/events-status')->{json}{journal}{fsyncs};
my @got = $t->parallel(n => 4, code => sub {
    my ($i) = @_;
    my @seqs;
    for my $n (1 .. 25) {
        my $r = $t->post_json('/events', { type => 'load.tick',
            resourceId => "w-$i", payload => { data => { n => $n } } });
        push @seqs, $r->{status} == 201 ? $r->{json}{seq} : -$r->{status};
    }
    return \@seqs;
});
my @accepted = sort { $a <=> $b } map { @{ $_ // [] } } @got;
is(scalar(grep { $_ > 0 } @accepted), 100, '100 concurrent writes answered');
my %pids = map { $_->{pid} => 1 } grep { $_->{published} }
    @{ $t->get('/events-status')->{json}{workers} };
ok(keys %pids == 2, 'both workers wrote')
    or diag explain $t->get('/events-status')->{json}{workers};

# concurrent writers share fsyncs (group commit): fewer than one each
$fsyncs = $t->get('/events-status')->{json}{journal}{fsyncs} - $fsyncs;
ok($fsyncs > 0 && $fsyncs < 100, "$fsyncs fsyncs for 100 events");

$t->stop;
$t->run;

my @all = @{ $t->get('/events?limit=1000')->{json}{data} };
is(scalar @all, 131, 'all 131 after the second restart');
is_deeply([ map { $_->{seq} } @all ], [ 1 .. 131 ], 'in seq order, once each');
is_deeply([ map { $_->{seq} } grep { $_->{type} eq 'load.tick' } @all ],
    \@accepted, 'every seq a writer was given');
is($t->get('/events-status')->{json}{epoch}, $epoch, 'still the same epoch');

# Prometheus
my $text = $t->get('/events-status?format=prometheus')->{body};
for my $m (qw(events_journal_bytes events_journal_segments
    events_journal_fsyncs_total events_journal_replay_seconds
    events_journal_replayed events_journal_errors_total))
{
    like($text, qr/^$m\{zone="main"\} \d/m, "prometheus: $m");
}
like($text, qr/^events_journal_replayed\{zone="main"\} 131$/m,
    'prometheus: 131 replayed');

# without its secret, the journal's epoch cannot be told from forgery:
# a new epoch, and cursors of the old one are 410, not 400
my $old = $t->get('/events?limit=5')->{json}{next};
$t->stop;
unlink "$dir/cursor.key" or die "unlink: $!";
$t->run;
isnt($t->get('/events-status')->{json}{epoch}, $epoch,
    'a lost secret: a new epoch');
is(scalar @{ $t->get('/events?limit=1000')->{json}{data} }, 131,
    'with every event');
$t->is_error($t->get("/events?after=$old"), 410, 'epoch_changed', 'after',
    'cursors of before get 410');
like($t->error_log, qr/\[warn\].*no cursor secret in/, 'said so');
is(-s "$dir/cursor.key", 16, 'and a new secret is kept');

# the catalog comes from the history index, which worker 0 brings up to
# date every few ms: a read right after a 201 must still count it
my @stale;
for my $n (1 .. 20) {
    my $e = $t->post_json('/events', { type => 'catalog.fresh' })->{json};
    my ($c) = grep { $_->{type} eq 'catalog.fresh' }
        @{ $t->get('/events/types')->{json}{data} };
    push @stale, $n unless $c && $c->{count} == $n
        && $c->{lastTimestamp} eq $e->{timestamp};
}
is("@stale", '', 'the catalog counts an event as soon as it is answered');

$t->done;
