#!/usr/bin/perl

# GET /events with Accept: application/x-ndjson: every matching event,
# oldest first, one envelope a line, without pages; the list's filters;
# "after" to resume; the parameters of pages refused.  Then 100 000
# events, most of them only in the history on disk, to a reader that
# reads slowly from a small socket buffer: all arrive, in order, and
# the serving worker's heap (RssAnon) stays bounded.  An export whose
# next events the ring dropped while its reader was slow ends with a
# line that says so and where to resume, and a proper end of the body.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use JSON::PP;
use IO::Socket::IP;
use Socket qw(SOL_SOCKET SO_RCVBUF);
use Time::HiRes qw(sleep time);
use EventsTest;

my $t = EventsTest->new;

$t->write_config(<<'EOF2');
%%GLOBALS%%
http {
    %%HTTP_GLOBALS%%

    events_zone main 8m;
    events_zone small 1m;
    events_journal main %%TESTDIR%%/journal fsync=off segment_size=16m;

    server {
        listen 127.0.0.1:%%PORT%% sndbuf=16k;
        events_tenant $http_x_tenant;
        client_max_body_size 8m;
        events_max_body_size 8m;
        events_max_event_size 256k;

        location /events { events_api main; }
        location /small/events { events_api small; }
        location = /status { events_status main; }
    }
}
EOF2

$t->run;

my %nd = (Accept => 'application/x-ndjson');

sub export {
    my ($query, %h) = @_;
    return $t->get('/events' . ($query ? "?$query" : ''),
        headers => { %nd, %h });
}

sub lines {
    my ($r) = @_;
    return map { decode_json($_) } split /\n/, $r->{body};
}

sub error_body {
    my ($status, $code, $message, $param) = @_;
    return "$status {\"error\":{\"status\":$status,\"code\":\"$code\","
        . '"message":' . JSON::PP->new->allow_nonref->encode($message)
        . (defined $param ? ",\"param\":\"$param\"" : '') . '}}';
}

###########################################################################
# Small: the format, filters, resume, refusals

my $r = export('');
is($r->{status}, 200, 'an empty store: 200');
is($r->{headers}{'content-type'}, 'application/x-ndjson', 'content type');
is($r->{body}, '', 'no lines');

my @posted;
for my $i (1 .. 30) {
    my $p = $t->post_json('/events', { type => ($i % 3 ? 'a.made' : 'b.made'),
        metadata => { n => "$i" }, payload => { data => { i => $i } } });
    push @posted, $p->{body};
}
$t->post_json('/events', { type => 'a.made' },
    headers => { 'X-Tenant' => 'other' });

$r = export('');
is($r->{status}, 200, 'export');
ok($r->{chunked}, 'chunked');
is($r->{body}, join('', map { "$_\n" } @posted),
    'every event, oldest first, the stored bytes, one a line');

$r = export('types=b.*');
is_deeply([ map { $_->{payload}{data}{i} } lines($r) ],
    [ 3, 6, 9, 12, 15, 18, 21, 24, 27, 30 ], 'types=');
$r = export('metadata.n=7');
is_deeply([ map { $_->{payload}{data}{i} } lines($r) ], [7], 'metadata.');
is(scalar(lines(export('', 'X-Tenant' => 'other'))), 1,
    'another tenant: its own event only');

my $page = $t->get('/events?limit=10')->{json};
$r = export("after=$page->{next}");
is_deeply([ map { $_->{payload}{data}{i} } lines($r) ], [ 11 .. 30 ],
    'after= resumes');

$r = $t->req(HEAD => '/events', headers => \%nd);
is($r->{status} . ' ' . length($r->{body}), '200 0', 'HEAD: no body');

for my $p (['limit=5', 'limit'], ['order=asc', 'order'],
           ['order=desc', 'order'], ["before=$page->{next}", 'before'])
{
    $r = export($p->[0]);
    is($r->{status} . ' ' . $r->{body}, error_body(400, 'invalid_parameter',
        'an NDJSON export has every matching event, oldest first, without '
        . 'pages: drop "limit", "order" and "before"', $p->[1]),
        "$p->[0]: 400");
}
$r = export('types=Bad');
is($r->{status}, 400, 'a bad filter: 400 as on the list');
$r = export('after=nonsense');
is($r->{status} . ' ' . $r->{body}, error_body(400, 'invalid_cursor',
    '"after" is not a cursor of this API', 'after'), 'a bad cursor: 400');

is($t->get('/events?limit=2')->{status}, 200,
    'without the Accept header: the list, as before');
is(scalar @{ $t->get('/events?limit=2',
    headers => { Accept => 'application/json' })->{json}{data} }, 2,
    'Accept: application/json: the list');

# lines larger than the export's 64 KB buffers go out in one of their own
my @big;
for my $size (10, 100_000, 20, 150_000, 30) {
    my $p = $t->post_json('/events', { type => 'big.one',
        payload => { data => 'x' x $size } },
        headers => { 'X-Tenant' => 'big' });
    die "POST: $p->{status}" unless $p->{status} == 201;
    push @big, $p->{body};
}
$r = export('', 'X-Tenant' => 'big');
ok($r->{body} eq join("", map { "$_\n" } @big),
    'lines larger than a buffer, between small ones');

###########################################################################
# The ring drops what a slow export was to read next: a clean end that
# says so (reason "cursor_expired") and where to go on, past the gap

sub post_small {
    my ($n, $from) = @_;
    my $pad = 'q' x 900;
    for (my $i = 0; $i < $n; $i += 100) {
        my $body = '[' . join(',', map { '{"type":"small.one","payload":'
            . '{"data":{"i":' . ($from + $i + $_) . ',"pad":"' . $pad
            . '"}}}' } 1 .. 100) . ']';
        my $p = $t->req(POST => '/small/events', body => $body,
            headers => { 'Content-Type' => 'application/json' });
        die "POST: $p->{status} $p->{body}" unless $p->{status} == 201;
    }
}

sub dechunk {
    my ($raw) = @_;
    my ($head, $body) = split /\r\n\r\n/, $raw, 2;
    my ($plain, $ended) = ('', 0);
    while ($body =~ /\G([0-9a-fA-F]+)\r\n/gc) {
        my $len = hex $1;
        if ($len == 0) { $ended = 1; last }
        last if length($body) < pos($body) + $len + 2;
        $plain .= substr($body, pos($body), $len);
        pos($body) += $len + 2;
    }
    return ($head, $plain, $ended && $body =~ /\r\n0\r\n\r\n\z/);
}

post_small(700, 0);
my $s_oldest = $t->get('/small/events?limit=1')->{json}{data}[0]{seq};
my $s_head = $t->get('/small/events?order=desc&limit=1')->{json}{data}[0]{seq};

{
    my $sock = IO::Socket::IP->new(PeerHost => '127.0.0.1',
        PeerPort => $t->port, Proto => 'tcp') or die "connect: $@";
    setsockopt($sock, SOL_SOCKET, SO_RCVBUF, 16384);
    print $sock "GET /small/events HTTP/1.1\r\nHost: x\r\nAccept: "
        . "application/x-ndjson\r\nConnection: close\r\n\r\n";
    my $raw = '';
    sysread($sock, $raw, 2048);
    sleep 1;                            # the export's buffers fill, it waits

    # 1.5 MB more into a 1m zone: what the export was to read next goes
    post_small(1500, 700);
    my $gone_to = $t->get('/small/events?limit=1')->{json}{data}[0]{seq} - 1;

    setsockopt($sock, SOL_SOCKET, SO_RCVBUF, 1 << 20);
    $sock->blocking(0);
    my $start = time;
    while (time - $start < 20) {
        my $n = sysread($sock, my $buf, 65536);
        last if defined $n && $n == 0;
        if (defined $n) { $raw .= $buf } else { sleep 0.01 }
    }
    close $sock;

    my ($head, $plain, $ended) = dechunk($raw);
    like($head, qr{^HTTP/1\.1 200 }, 'retention under a slow export: 200');
    ok($ended, 'its chunked body ends properly, not cut');
    my @l = split /\n/, $plain;
    my $last = decode_json(pop(@l) // 'null');
    is_deeply([ sort keys %{ $last // {} } ], [ 'has_more', 'next', 'reason' ],
        'the last line: has_more, next and a reason') or diag(explain($last));
    is($last->{reason}, 'cursor_expired', 'reason: cursor_expired');
    ok($last->{has_more}, 'has_more: true');
    my @seqs = map { decode_json($_)->{seq} } @l;
    cmp_ok(scalar @seqs, '>', 0, 'some events came first ('
        . scalar(@seqs) . ')');
    is_deeply(\@seqs, [ $s_oldest .. $s_oldest + $#seqs ],
        'from the oldest, in order, none missing before the end');
    cmp_ok($seqs[-1] // 0, '<', $s_head, 'it ended before the export\'s head');

    # "next" is past the gap: after it, the oldest event the ring has
    my $r = $t->get("/small/events?after=$last->{next}&limit=1");
    is($r->{status}, 200, '"next" is a cursor the ring still takes');
    is($r->{json}{data}[0]{seq}, $gone_to + 1,
        'after "next": the oldest event retained (the gap was skipped)');
    cmp_ok($gone_to, '>', $seqs[-1] // 0, 'and events were skipped: '
        . (($gone_to) - ($seqs[-1] // 0)) . ' of them');
    my $logged = qr/\[warn\].*events: export ends early after \d+ events, /
        . qr/retention removed the events it was to read, to resume after /
        . qr/seq $gone_to \("cursor_expired", the events before it are /
        . qr/skipped\)/;
    like($t->error_log, qr/$logged/, 'logged at warn, with the reason');

    # without "after", an export of a ring that wrapped (no journal on
    # it) starts at the oldest event it holds
    $r = $t->get('/small/events', headers => \%nd);
    my @got = map { $_->{seq} } lines($r);
    my $newest = $t->get('/small/events?order=desc&limit=1')
        ->{json}{data}[0]{seq};
    ok($r->{chunked} && !$r->{error}, 'a wrapped ring\'s export: a whole body');
    is_deeply(\@got, [ $gone_to + 1 .. $newest ],
        'a wrapped ring\'s export: from the oldest it holds to its head');
}

###########################################################################
# 100 000 events, most from disk, to a slow reader

my $N = 100_000;
my $pad = 'p' x 400;
for (my $i = 0; $i < $N - 30; $i += 1000) {
    my $n = ($N - 30 - $i) < 1000 ? $N - 30 - $i : 1000;
    my $body = '[' . join(',', map { '{"type":"bulk.loaded","payload":'
        . '{"data":{"i":' . ($i + $_) . ',"pad":"' . $pad . '"}}}' }
        1 .. $n) . ']';
    my $p = $t->req(POST => '/events', body => $body,
        headers => { 'Content-Type' => 'application/json' });
    die "POST: $p->{status} $p->{body}" unless $p->{status} == 201;
}

my $oldest = $t->get('/events?limit=1')->{json}{data}[0];
is($oldest->{payload}{data}{i}, 1, 'the first event is still readable '
    . '(from disk: the ring holds far fewer)');

sub rss_anon {
    my %kb;
    for my $pid ($t->worker_pids) {
        open my $fh, '<', "/proc/$pid/status" or next;
        while (<$fh>) {
            $kb{$pid} = $1 if /^RssAnon:\s+(\d+)/;
        }
    }
    return \%kb;
}

# the history index catches up in the background, in a worker: LMDB's
# write transactions take heap of their own; measure the export alone
sub indexed { $t->get('/status')->{json}{journal}{history}{indexed} // 0 }
my $newest = $t->get('/events?order=desc&limit=1')->{json}{data}[0]{seq};
my $deadline = time + 60;
sleep 0.2 while indexed() < $newest && time < $deadline;
is(indexed(), $newest,
    'the history index has every event');
sleep 1;

my $before = rss_anon();

my $sock = IO::Socket::IP->new(PeerHost => '127.0.0.1', PeerPort => $t->port,
    Proto => 'tcp') or die "connect: $@";
setsockopt($sock, SOL_SOCKET, SO_RCVBUF, 16384);
print $sock "GET /events HTTP/1.1\r\nHost: x\r\nAccept: application/x-ndjson"
    . "\r\nConnection: close\r\n\r\n";

my ($raw, $peak, $reads) = ('', 0, 0);
my %peak_of;
my $start = time;
my $next_sample = 0;
while (1) {
    my $n = sysread($sock, my $buf, 16384);
    last unless $n;
    $raw .= $buf;
    # slow: a pause now and then, so nginx's side fills and waits
    sleep 0.002 if ++$reads % 4 == 0;
    if (time >= $next_sample) {
        my $now = rss_anon();
        for my $pid (keys %$now) {
            my $d = $now->{$pid} - ($before->{$pid} // $now->{$pid});
            $peak_of{$pid} = $d if $d > ($peak_of{$pid} // 0);
        }
        $next_sample = time + 0.1;
    }
    last if time - $start > 120;
}
close $sock;
my $secs = time - $start;

my ($head, $body) = split /\r\n\r\n/, $raw, 2;
like($head, qr{^HTTP/1\.1 200 }, 'the export: 200');
like($head, qr{\r\nTransfer-Encoding: chunked}i, 'chunked');

# de-chunk
my $plain = '';
while ($body =~ /\G([0-9a-fA-F]+)\r\n/gc) {
    my $len = hex $1;
    last if $len == 0;
    $plain .= substr($body, pos($body), $len);
    pos($body) += $len + 2;
}
ok($body =~ /0\r\n\r\n\z/, 'the chunked body ends properly');

my @seq = $plain =~ /^\{"id":"[^"]+","seq":(\d+),/mg;
is(scalar @seq, $N, "$N lines");
my $ordered = 1;
for my $i (1 .. $#seq) {
    $ordered = 0, last unless $seq[$i] > $seq[$i - 1];
}
ok($ordered, 'oldest first, each once');
is(($plain =~ tr/\n//), $N, 'one event a line');

my $mb = length($plain) / 1e6;
my ($max) = sort { $b <=> $a } values %peak_of;
$max //= 0;
diag(sprintf('export: %.1f MB in %.1f s to a slow reader; the busiest '
    . 'worker\'s heap grew %d kB at most', $mb, $secs, $max));
cmp_ok($mb, '>', 40, 'the export is large');
SKIP: {
    # ASan's allocator keeps freed memory in quarantine: RSS says little
    skip 'heap size under AddressSanitizer', 1 if $t->asan;
    cmp_ok($max, '<', 8192, 'a worker\'s heap grew by less than 8 MB while '
        . 'it served it (bounded buffers, not the export\'s size)');
}

$t->done;
