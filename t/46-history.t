#!/usr/bin/perl

# History on disk: with events_journal, every read answers for
# everything the journal retains, not only for what the ring holds.
# A 1m zone keeps a few thousand events; 21 000 are written, and the
# oldest are read back by list (both orders, filters, cursors), by id,
# by entity, in the type catalog, by an SSE resume from seq 10, and as
# an idempotent repeat of an old client id; pages follow "next" across
# the ring/disk boundary while writers run; a restart, a kill -9, a
# damaged or missing index keep all of it; tenants stay sealed.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use JSON::PP;
use IO::Socket::IP;
use POSIX ();
use Time::HiRes qw(sleep time);
use EventsTest;
use EventsTest::SSE;

my $t = EventsTest->new;
my $json = JSON::PP->new->utf8->canonical;

$t->write_config(<<'EOF');
%%GLOBALS%%
http {
    %%HTTP_GLOBALS%%

    events_zone main 1m;
    events_journal main %%TESTDIR%%/journal fsync=off segment_size=2m;

    server {
        listen 127.0.0.1:%%PORT%%;
        events_tenant $http_x_tenant;
        client_max_body_size 4m;

        location = /events/stream { events_stream main; }
        location /events { events_api main; }
        location = /events-status { events_status main; }
    }
}
EOF
$t->run;

my %acme = ('X-Tenant' => 'acme');
my %beta = ('X-Tenant' => 'beta');

# event i: acme unless i % 10 == 3; one in 1000 is "rare.found"
sub event {
    my ($i) = @_;
    my $type = $i % 1000 == 500 ? 'rare.found'
        : $i % 3 == 0 ? 'session.started'
        : $i % 3 == 1 ? 'ticket.created' : 'ticket.updated';
    return { id => "c-$i", type => $type, resourceType => 'ticket',
        resourceId => 't-' . ($i % 50), source => "src-" . ($i % 7),
        payload => { data => { i => $i, pad => 'p' x 40 } } };
}

sub tenant_of { $_[0] % 10 == 3 ? 'beta' : 'acme' }

my (%seq_of, @all);    # id -> seq; [seq, id, tenant, i] in seq order

# in blocks of 500: acme's 450 in one batch, then beta's 50, so that
# the tenants interleave in the log at a few dozen POSTs in all
sub post_range {
    my ($from, $to) = @_;
    for (my $b = $from; $b <= $to; $b += 500) {
        my @i = $b .. ($b + 499 > $to ? $to : $b + 499);
        for my $tenant ('acme', 'beta') {
            my @batch = map { event($_) } grep { tenant_of($_) eq $tenant } @i;
            next unless @batch;
            my $r = raw_req('POST', '/events', { 'X-Tenant' => $tenant,
                'Content-Type' => 'application/json' }, $json->encode(\@batch));
            die "POST: $r->{status} $r->{body}" unless $r->{status} == 201;
            my $got = lite($r->{body});
            die "POST: " . scalar(@$got) . " answers" unless @$got == @batch;
            for my $e (@$got) {
                (my $n = $e->{id}) =~ s/^c-//;
                $seq_of{ $e->{id} } = $e->{seq};
                push @all, [ $e->{seq}, $e->{id}, $tenant, $n ];
            }
        }
    }
}

my $N = 21000;
post_range(1, $N);

my $st = $t->get('/events-status')->{json};
ok($st->{events}{retained} < $N / 4,
    "the ring holds $st->{events}{retained} of $N events");

# JSON::PP takes 0.1 s for a page of 1000 events: pages are read raw,
# and each event's id, seq, timestamp and tenant are taken from its
# envelope (payloads here have none of these keys); the counts must
# agree, or the page was not what it seemed
sub lite {
    my ($body) = @_;
    my @id = $body =~ /"id":"([^"]*)"/g;
    my @seq = $body =~ /"seq":(\d+)/g;
    my @ts = $body =~ /"timestamp":"([^"]*)"/g;
    my @tn = $body =~ /"tenantId":"([^"]*)"/g;
    die "a page of " . @id . " ids, " . @seq . " seqs, " . @ts
        . " timestamps, " . @tn . " tenants"
        unless @seq == @id && @ts == @id && @tn == @id;
    return [ map { { id => $id[$_], seq => $seq[$_] + 0,
        timestamp => $ts[$_], tenantId => $tn[$_] } } 0 .. $#id ];
}

# one request on its own connection, the answer's bytes not decoded
sub raw_req {
    my ($method, $url, $hdr, $body) = @_;
    my $req = $t->request_bytes($method, $url, headers => $hdr // {},
        defined $body ? (body => $body) : ());
    my $sock = IO::Socket::IP->new(PeerHost => '127.0.0.1',
        PeerPort => $t->port, Proto => 'tcp', Timeout => 10)
        or die "connect: $@";
    print {$sock} $req;
    local $/;
    my $res = <$sock>;
    my ($status, $head, $rest) = $res =~ m{^HTTP/1\.1 (\d+)[^\n]*\n(.*?)\r\n\r\n(.*)}s
        or die "$method $url: no answer";
    $rest = EventsTest::Chunked->new->feed($rest)
        if $head =~ /^Transfer-Encoding: chunked/mi;
    return { status => $status, body => $rest };
}

sub raw_get {
    my ($url, $hdr) = @_;
    my $r = raw_req('GET', $url, $hdr);
    die "GET $url: $r->{status} $r->{body}" unless $r->{status} == 200;
    my ($more) = $r->{body} =~ /"has_more":(true|false)/;
    my ($next) = $r->{body} =~ /"next":"([^"]*)"/;
    return { data => lite($r->{body}), has_more => $more eq 'true',
        next => $next };
}

# every page of a listing, following "next"
sub pages {
    my ($path, $hdr, $limit) = @_;
    my @got;
    my $sep = $path =~ /\?/ ? '&' : '?';
    my $url = "$path${sep}limit=" . ($limit // 1000);
    for (1 .. 500) {
        my $j = raw_get($url, $hdr);
        push @got, @{ $j->{data} };
        last unless $j->{has_more};
        $url = "$path${sep}limit=" . ($limit // 1000) . "&after=$j->{next}";
        $url =~ s/after=/before=/ if $path =~ /order=desc/;
    }
    return \@got;
}

sub ids { [ map { $_->{id} } @{ $_[0] } ] }

my @acme = grep { $_->[2] eq 'acme' } @all;
my @beta = grep { $_->[2] eq 'beta' } @all;

###########################################################################
# lists

my $asc = pages('/events', \%acme);
is(scalar @$asc, scalar @acme, 'acme: every event listed, oldest first');
is_deeply(ids($asc), [ map { $_->[1] } @acme ], 'exact ids, in seq order');
is($asc->[0]{id}, 'c-1', 'the first is the oldest on disk');
is_deeply([ map { $_->{seq} } @$asc ], [ map { $_->[0] } @acme ],
    'exact seqs');

my $desc = pages('/events?order=desc', \%acme);
is_deeply(ids($desc), [ reverse map { $_->[1] } @acme ],
    'descending: all of it, newest first, down to c-1');

my $first = $t->get('/events?limit=1', headers => \%acme)->{json};
my $from_oldest = $t->get("/events?limit=1&after=$first->{oldest}",
    headers => \%acme)->{json};
is($from_oldest->{data}[0]{id}, 'c-1', '"oldest" is the oldest on disk');

my $rare = pages('/events?types=rare.*', \%acme, 5);
is_deeply(ids($rare), [ map { $_->[1] }
    grep { $_->[3] % 1000 == 500 } @acme ], 'a rare type, from disk');

my $sess = pages('/events?types=session.started&order=desc', \%acme, 700);
is_deeply(ids($sess), [ reverse map { $_->[1] }
    grep { $_->[3] % 3 == 0 && $_->[3] % 1000 != 500 } @acme ],
    'a type, descending, in pages');

my $mixed = pages('/events?types=rare.found,session.*&source=src-2',
    \%acme, 300);
is_deeply(ids($mixed), [ map { $_->[1] } grep {
    ($_->[3] % 3 == 0 || $_->[3] % 1000 == 500) && $_->[3] % 7 == 2 }
    @acme ], 'two patterns and a source');

my $upd = pages('/events?action=updated', \%acme, 1000);
is_deeply(ids($upd), [ map { $_->[1] } grep {
    $_->[3] % 3 == 2 && $_->[3] % 1000 != 500 } @acme ],
    'an action (derived from the type)');

my $ts = $t->get('/events/c-2000', headers => \%acme)->{json}{timestamp};
my $until = pages("/events?until=$ts", \%acme);
ok(@$until >= 1 && $until->[-1]{timestamp} le $ts
    && $until->[0]{id} eq 'c-1', 'until: from the oldest, up to a time');
my $since = pages("/events?since=$ts&order=desc", \%acme);
is($since->[-1]{timestamp}, $ts, 'since, descending: down to that time');
is(@$since + @$until - scalar(grep { $_->{timestamp} eq $ts } @$until),
    scalar @acme, 'since and until split the history');

###########################################################################
# single events, entities, types

my $r = $t->get('/events/c-1', headers => \%acme);
is($r->{status}, 200, 'GET of the oldest event by id');
is($r->{json}{seq}, $seq_of{'c-1'}, 'with its seq');
is($r->{json}{payload}{data}{i}, 1, 'and its payload');
$t->is_error($t->get('/events/c-1', headers => \%beta), 404, 'not_found',
    undef, 'another tenant\'s old event is 404');
is($t->get('/events/c-3', headers => \%beta)->{json}{seq}, $seq_of{'c-3'},
    'beta reads its own old event');

my $ent = pages('/events/ticket/t-7', \%acme, 100);
is_deeply(ids($ent), [ map { $_->[1] } grep { $_->[3] % 50 == 7 } @acme ],
    'entity history: every event of the entity, oldest first');
my $entd = pages('/events/ticket/t-7?order=desc', \%acme, 100);
is_deeply(ids($entd), [ reverse @{ ids($ent) } ], 'and newest first');

my %count;
$count{ event($_->[3])->{type} }++ for @acme;
my %types = map { $_->{type} => $_->{count} }
    @{ $t->get('/events/types', headers => \%acme)->{json}{data} };
is_deeply(\%types, \%count, 'the type catalog counts the whole history');

###########################################################################
# idempotency of an old client id

$r = $t->post_json('/events', event(1), headers => \%acme);
is($r->{status}, 200, 'a repeat of the oldest client id is 200');
is($r->{json}{seq}, $seq_of{'c-1'}, 'with the stored event');
my $other = event(1);
$other->{payload}{data}{i} = -1;
$t->is_error($t->post_json('/events', $other, headers => \%acme), 409,
    'conflict', undef, 'another body under that id is 409');
is($t->get('/events-status')->{json}{events}{newestSeq}, $all[-1][0],
    'nothing was stored');

###########################################################################
# SSE: resume from seq 10, from disk, then live

my $upto10 = grep { $_->[0] <= 10 } @acme;
my $p10 = $t->get("/events?limit=$upto10", headers => \%acme)->{json};
is($p10->{data}[-1]{seq}, 10, 'a page ending at seq 10');
my $c10 = $p10->{next};
my $s = EventsTest::SSE->open($t, '/events/stream', decode => 0,
    headers => { %acme, 'Last-Event-ID' => $c10 });
is($s->status, 200, 'a stream resumes from seq 10');
my @got = $s->events_until(sub { $_[0]{event} eq 'ready' }, timeout => 60);
my @msgs = grep { $_->{event} eq 'message' } @got;
ok(!grep({ $_->{event} eq 'reset' } @got), 'no reset');
is_deeply([ map { $_->{data} =~ /"id":"([^"]*)"/ ? $1 : '?' } @msgs ],
    [ map { $_->[1] } grep { $_->[0] > 10 } @acme ],
    'every acme event after seq 10, in order, from disk and the ring');
is($got[-1]{event}, 'ready', 'then ready');
my $live = $t->post_json('/events', { type => 'live.one' },
    headers => \%acme)->{json};
my $e = $s->next_event(timeout => 5);
is($e && $e->{data} =~ /"seq":(\d+)/ && $1, $live->{seq}, 'then live');
push @all, [ $live->{seq}, $live->{id}, 'acme', -1 ];
$s->close;

my $early = EventsTest::SSE->open($t, '/events/stream?types=rare.*',
    headers => { %beta, 'Last-Event-ID' => 'earliest' });
@got = $early->events_until(sub { $_[0]{event} eq 'ready' }, timeout => 30);
is_deeply([ map { $_->{json}{id} } grep { $_->{event} eq 'message' } @got ],
    [ map { $_->[1] } grep { $_->[3] % 1000 == 500 } @beta ],
    'earliest with a filter: beta\'s rare events only');
$early->close;

###########################################################################
# paging across the ring/disk boundary while writers run

my $pid = fork // die "fork: $!";
if ($pid == 0) {
    my $n = $N + 1;
    for (1 .. 40) {
        my @b = map { event($n++) } 1 .. 50;
        $_->{id} = "w-$_->{id}" for @b;
        $t->post_json('/events', \@b, headers => \%acme);
    }
    POSIX::_exit(0);
}

my ($seen, $path) = ([], '/events?limit=700');
for (1 .. 500) {
    my $j = raw_get($path, \%acme);
    push @$seen, @{ $j->{data} };
    last unless $j->{has_more} || kill(0, $pid) && waitpid($pid, 1) == 0;
    $path = "/events?limit=700&after=$j->{next}";
    sleep 0.02 unless $j->{has_more};
}
waitpid($pid, 0);
my $tail = raw_get("/events?limit=1000&after="
    . raw_get($path, \%acme)->{next}, \%acme)->{data};
push @$seen, @$tail;

my @seqs = map { $_->{seq} } @$seen;
my %dup;
is(scalar(grep { $dup{$_}++ } @seqs), 0, 'no event twice');
is_deeply([ @seqs[0 .. $#acme] ], [ map { $_->[0] } @acme ],
    'the history first, complete');
is(scalar(@seqs), @acme + 1 + 2000, 'then every event written meanwhile');
is_deeply(\@seqs, [ sort { $a <=> $b } @seqs ], 'in seq order');

###########################################################################
# restart, kill -9, a damaged or missing index

my $count_all = scalar @{ pages('/events', \%acme) };
$ent = pages('/events/ticket/t-7', \%acme, 1000);

$t->stop;
my $before = length $t->error_log;
$t->run;
is(scalar @{ pages('/events', \%acme) }, $count_all,
    'after a restart: all of it');
my $restart_log = substr($t->error_log, $before);
like($restart_log, qr/history index ".*index\.mdb": (\d+) events checked, 0 added in/,
    'the index was checked against the segments, and kept');
unlike($restart_log, qr/is rebuilt/, 'not rebuilt');
is($t->get('/events-status')->{json}{journal}{history}{rebuilds}, 0,
    'status: no rebuild');

kill 'KILL', $t->master_pid, $t->worker_pids;
sleep 0.5;
$t->stop;
$t->run;
is(scalar @{ pages('/events', \%acme) }, $count_all,
    'after kill -9: all of it');
is($t->get('/events/c-1', headers => \%acme)->{json}{seq}, 1,
    'the oldest by id');

$t->stop;
my $idx = $t->testdir . '/journal/index.mdb';
open(my $fh, '+<:raw', $idx) or die "$idx: $!";
print {$fh} "\xff" x 8192;
close $fh;
$t->run;
like($t->error_log, qr/\[warn\].*history index ".*index\.mdb" is rebuilt from the journal's segments: it cannot be opened/,
    'a damaged index is detected, and rebuilt');
is_deeply(ids(pages('/events', \%acme)), ids($asc = pages('/events', \%acme)),
    'reads answer as before');
is(scalar @$asc, $count_all, 'for every event');
$t->expect_log(qr/history index .* cannot be opened/);

$t->stop;
unlink $idx or die "unlink $idx: $!";
$t->run;
like($t->error_log, qr/is rebuilt from the journal's segments: it is missing/,
    'a missing index is rebuilt');
is(scalar @{ pages('/events', \%acme) }, $count_all, 'all of it again');
is_deeply(ids(pages('/events/ticket/t-7', \%acme, 1000)), ids($ent),
    'entity history too');

###########################################################################
# tenants stay sealed

my $bl = pages('/events', \%beta);
is_deeply(ids($bl), [ map { $_->[1] } @beta ], 'beta lists only beta');
is_deeply(pages('/events/ticket/t-7', \%beta, 1000),
    [ grep { $_->{tenantId} eq 'beta' } @{ pages('/events/ticket/t-7',
    \%beta, 1000) } ], 'beta\'s entity history is beta\'s');
ok(!grep({ $_->{id} =~ /^c-\d*[0-24-9]$/ } @{ pages('/events/ticket/t-3',
    \%beta, 1000) }), 'no acme event in it');
is($t->get('/events?types=rare.*', headers => { 'X-Tenant' => 'nobody' })
    ->{json}{data}[0], undef, 'an unknown tenant sees nothing');

$t->done;
