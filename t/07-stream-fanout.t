#!/usr/bin/perl

# Streams as 0.12.0 serves them: a stream gives back its header buffer
# once it starts (the request line, the headers and the filters that
# point into them live on: the access log, the tenant and the types say
# so after other connections reused that memory; a mirrored stream
# keeps it, for its subrequest's sake), and an event is framed once per
# wake for all the streams it goes to (plain, named, CloudEvents,
# filtered, other tenants, HTTP/1.0 without chunks: each gets its own
# bytes), once each and in order over many streams on both workers.
# Then what a released stream must still do: heartbeats, resume with
# Last-Event-ID, the end of its lifetime and the keep-alive request after
# it on the same connection, a reload, and a WebSocket.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use JSON::PP;
use IO::Select;
use IO::Socket::IP;
use Time::HiRes qw(sleep time);
use EventsTest;
use EventsTest::SSE;
use EventsTest::WS;

my $t = EventsTest->new;

$t->write_config(<<'EOF');
%%GLOBALS%%
http {
    %%HTTP_GLOBALS%%

    log_format streams '$request|$http_user_agent|$http_x_tenant|$arg_types|$host';

    events_zone main 8m;

    server {
        listen 127.0.0.1:%%PORT%% reuseport;

        events_tenant $http_x_tenant;
        events_heartbeat 1s;

        location = /events/stream {
            events_stream main;
            access_log %%TESTDIR%%/streams.log streams;
        }

        location = /kept/stream {
            events_stream main;
            events_stream_release_header off;
        }

        location = /named/stream {
            events_stream main;
            events_stream_event_field on;
        }

        location = /short/stream {
            events_stream main;
            events_stream_max_lifetime 1s;
        }

        location /events {
            events_api main;
        }

        location = /events-status {
            events_status main;
        }

        location = /pad {
            return 204;
        }

        location = /mirrored/stream {
            events_stream main;
            mirror /mirror;
            access_log %%TESTDIR%%/streams.log streams;
        }

        location = /mirror {
            internal;
            proxy_pass http://127.0.0.1:%%PORT%%/pad$is_args$args;
        }
    }
}
EOF

$t->run;

my %acme = ('X-Tenant' => 'acme');

sub post {
    my ($type, $tenant) = @_;
    my $r = $t->post_json('/events', { type => $type },
        headers => { 'X-Tenant' => $tenant // 'acme' });
    die "POST: $r->{status} $r->{body}" unless $r->{status} == 201;
    return $r->{json}{seq};
}

sub stream {
    my ($path, %h) = @_;
    my $s = EventsTest::SSE->open($t, $path, headers => {%h});
    die "stream $path: " . ($s->error // $s->status)
        unless ($s->status // 0) == 200;
    return $s;
}

sub subscribers {
    return $t->get('/events-status')->{json}{streams}{subscribers};
}

sub wait_subscribers {
    my ($n) = @_;
    my $deadline = time + $t->scale(10);
    sleep 0.05 while subscribers() != $n && time < $deadline;
    return subscribers();
}

# the seqs of the next $n events, or of those that came before a pause
sub seqs {
    my ($s, $n) = @_;
    my @got;
    while (my $e = $s->next_event(timeout => $n ? 5 : 0.5)) {
        next unless $e->{event} eq 'message' || $e->{event} =~ /\./;
        push @got, $e->{json}{seq} // $e->{json}{data}{seq};
        last if $n && @got == $n;
    }
    return \@got;
}

# a raw connection, for HTTP/1.0 and for keep-alive after a stream
sub raw_open {
    my ($request) = @_;
    my $sock = IO::Socket::IP->new(PeerHost => '127.0.0.1',
        PeerPort => $t->port(1), Proto => 'tcp', Timeout => 5)
        or die "connect: $@";
    syswrite($sock, $request) == length $request or die "write: $!";
    $sock->blocking(0);
    return { sock => $sock, sel => IO::Select->new($sock), buf => '' };
}

# read until $re matches what came, the end, or the timeout
sub raw_until {
    my ($c, $re, $timeout) = @_;
    my $deadline = time + $t->scale($timeout // 5);
    while ($c->{buf} !~ $re) {
        my $left = $deadline - time;
        last if $left <= 0 || !$c->{sel}->can_read($left);
        my $n = sysread($c->{sock}, my $b, 65536);
        next if !defined $n && $!{EAGAIN};
        last unless $n;
        $c->{buf} .= $b;
    }
    return $c->{buf} =~ $re;
}

###########################################################################
# The header buffer goes back; what pointed into it lives on

my $s1 = stream('/events/stream?types=ticket.*', %acme,
    'User-Agent' => 'the-first-stream');
is(wait_subscribers(1), 1, 'a stream');

# other connections on both workers take the freed memory and write
# their own headers into it
for my $i (1 .. 30) {
    my $r = $t->get('/pad?types=' . ('q' x (100 + $i * 7)),
        headers => { 'X-Tenant' => "other$i", 'User-Agent' => 'z' x 300 });
    die "GET: $r->{status}" unless $r->{status} == 204;
}

my @want = (post('ticket.created'), post('ticket.created', 'beta'),
    post('session.started'), post('ticket.updated'));
is_deeply(seqs($s1, 2), [ @want[0, 3] ],
    'its tenant (a header) and types (the query) still filter');
is_deeply(seqs($s1), [], 'and nothing else came');

my $t0 = time;
$s1->next_event(timeout => 2.5);
ok(grep({ /^ ?heartbeat/ } $s1->comments), 'heartbeats go on')
    or diag(explain([ $s1->comments ]));
$s1->close;
is(wait_subscribers(0), 0, 'closed, let go');

my @log = grep { /the-first-stream/ }
    split /\n/, $t->read_file('streams.log');
is(scalar @log, 1, 'the access log has the stream');
is($log[0], 'GET /events/stream?types=ticket.* HTTP/1.1|the-first-stream|'
    . 'acme|ticket.*|127.0.0.1', 'with its own request line and headers')
    or diag($log[0]);

# a stream with a subrequest keeps its buffer: the mirror's copies of
# the request's strings still point into it
my $m = stream('/events/stream', %acme);
my $mirrored = stream('/mirrored/stream?types=mirror.*', %acme,
    'User-Agent' => 'the-mirrored-stream');
is(wait_subscribers(2), 2, 'a mirrored stream');
for my $i (1 .. 10) {
    $t->get('/pad?types=' . ('m' x 200),
        headers => { 'User-Agent' => 'w' x 400 });
}
my $mseq = post('mirror.one');
is_deeply(seqs($mirrored, 1), [ $mseq ], 'it gets its events');
$mirrored->close;
$m->close;
is(wait_subscribers(0), 0, 'and is let go');
@log = grep { /the-mirrored-stream/ } split /\n/, $t->read_file('streams.log');
is($log[0], 'GET /mirrored/stream?types=mirror.* HTTP/1.1|the-mirrored-stream|'
    . 'acme|mirror.*|127.0.0.1', 'its access log line')
    or diag($log[0]);
my @mirrors = grep {
    m{"GET /pad\?types=mirror\.\* HTTP/1\.0" 204 0 "-" "the-mirrored-stream"$}
}
    split /\n/, $t->read_file('access.log');
is(scalar @mirrors, 1, 'the mirror went out with its query and headers')
    or diag($t->read_file('access.log'));

###########################################################################
# One event, many streams, two workers: each gets its own frames

my (@plain, @named, @ce, @typed, @beta, @old);
push @plain, stream('/events/stream', %acme) for 1 .. 30;
push @named, stream('/named/stream', %acme) for 1 .. 8;
push @ce, stream('/events/stream?format=cloudevents', %acme) for 1 .. 8;
push @typed, stream('/events/stream?types=ticket.*', %acme) for 1 .. 8;
push @beta, stream('/events/stream', 'X-Tenant' => 'beta') for 1 .. 6;
push @old, raw_open("GET /events/stream HTTP/1.0\r\nHost: x\r\n"
    . "X-Tenant: acme\r\n\r\n") for 1 .. 6;
my $n = 30 + 8 + 8 + 8 + 6 + 6;
is(wait_subscribers($n), $n, "$n streams");

my @workers = grep { $_->{subscribers} }
    @{ $t->get('/events-status')->{json}{workers} };
is(scalar @workers, 2, 'on both workers')
    or diag(explain($t->get('/events-status')->{json}{workers}));

# bursts from parallel publishers: several events in one wake, tenants
# and types interleaved
my $posted = $t->parallel(n => 4, code => sub {
    my ($i) = @_;
    return [ map {
        my $type = $_ % 3 ? "ticket.n$i" : "session.n$i";
        my $tenant = $_ % 4 == 3 ? 'beta' : 'acme';
        [ post($type, $tenant), $type, $tenant ]
    } 1 .. 12 ];
});
my @all = sort { $a->[0] <=> $b->[0] } map { @$_ } @$posted;
my @acme = map { $_->[0] } grep { $_->[2] eq 'acme' } @all;
my @ticket = map { $_->[0] } grep { $_->[2] eq 'acme'
    && $_->[1] =~ /^ticket/ } @all;
my @b = map { $_->[0] } grep { $_->[2] eq 'beta' } @all;
my %type = map { $_->[0] => $_->[1] } @all;
cmp_ok(scalar @b, '>', 0, 'both tenants published');

sub all_got {
    my ($streams, $want, $what) = @_;
    my $bad = 0;
    for my $s (@$streams) {
        my $got = seqs($s, scalar @$want);
        next if "@$got" eq "@$want";
        $bad++;
        diag("$what: got @$got, want @$want");
    }
    ok(!$bad, "$what: every stream got its events once, in order");
}

all_got(\@plain, \@acme, 'plain');
all_got(\@typed, \@ticket, 'types=ticket.*');
all_got(\@beta, \@b, 'another tenant');
all_got(\@ce, \@acme, 'CloudEvents');

my ($ok_named, $ok_ce) = (1, 1);
for my $s (@named) {
    my @e = $s->events_until(sub { $_[0]{json}{seq} == $acme[-1] }, 5);
    my @s = map { $_->{json}{seq} } @e;
    $ok_named &&= "@s" eq "@acme"
        && !grep { $_->{event} ne $type{ $_->{json}{seq} } } @e;
}
ok($ok_named, 'named: each event under its type, once, in order');

# HTTP/1.0: no chunks, the frames as they are
my $ok_old = 1;
for my $c (@old) {
    my $last = $acme[-1];
    raw_until($c, qr/"seq":$last\b.*\n\n/s, 5);
    my ($head, $body) = split /\r\n\r\n/, $c->{buf}, 2;
    my @s = $body =~ /^data: \{.*?"seq":(\d+)/mg;
    $ok_old &&= $head =~ m{^HTTP/1\.1 200} && $head !~ /chunked/i
        && $body =~ /^retry: \d+\n\n/ && "@s" eq "@acme";
    diag("HTTP/1.0: $head\n$body") unless $ok_old;
}
ok($ok_old, 'HTTP/1.0: unchunked frames, every event once, in order');

$_->close for @plain, @named, @ce, @typed, @beta;
close $_->{sock} for @old;
is(wait_subscribers(0), 0, 'all let go');

###########################################################################
# Resume after a release, the end of a lifetime, keep-alive after it

my $s = stream('/events/stream', %acme);
wait_subscribers(1);
my $first = post('resume.one');
my $e = $s->next_event(timeout => 3);
is($e->{json}{seq}, $first, 'an event');
$s->close;
wait_subscribers(0);
my @more = (post('resume.two'), post('resume.three'));
$s = stream('/events/stream', %acme, 'Last-Event-ID' => $e->{id});
is_deeply(seqs($s, 2), \@more, 'Last-Event-ID resumes after it');
is($s->next_event(timeout => 2)->{event}, 'ready', 'then ready');
$s->close;

my $c = raw_open("GET /short/stream HTTP/1.1\r\nHost: x\r\n"
    . "X-Tenant: acme\r\n\r\n");
ok(raw_until($c, qr/lifetime over.*?\r\n0\r\n\r\n/s, 4),
    'a lifetime ends with the last chunk');
$c->{buf} = '';
my $next = "GET /events?limit=1 HTTP/1.1\r\nHost: x\r\nX-Tenant: acme\r\n"
    . "Connection: close\r\n\r\n";
syswrite($c->{sock}, $next);
ok(raw_until($c, qr/^HTTP\/1\.1 200 .*"data":\[/s, 5),
    'the connection takes the next request (a new header buffer)')
    or diag("got: [$c->{buf}] " . $t->error_log);
close $c->{sock};

###########################################################################
# Reload, and a WebSocket

$s = stream('/events/stream', %acme);
wait_subscribers(1);
$t->reload;
$s->events_until(sub { 0 }, 5);
ok(grep({ /restarting/ } $s->comments), 'a reload ends the stream cleanly')
    or diag(explain([ $s->comments ]));
ok($s->is_closed, 'with a complete chunked body');

$s = stream('/events/stream', %acme);
my $ws = EventsTest::WS->open($t, '/events/stream', headers => \%acme);
is($ws->status, 101, 'a WebSocket');
is(wait_subscribers(2), 2, 'both subscribed after the reload');
my @last = (post('after.reload'), post('after.reload', 'beta'),
    post('after.again'));
is_deeply(seqs($s, 2), [ @last[0, 2] ], 'SSE after the reload');
my @f = $ws->frames_until(sub {
    ($_[0]{payload} // '') =~ /"seq":$last[2]\b/ }, timeout => 5);
my @ws = map { /"seq":(\d+)/ ? $1 : () } map { $_->{payload} // '' }
    grep { $_->{opcode} == 1 } @f;
is_deeply(\@ws, [ @last[0, 2] ], 'the WebSocket: its tenant, in order');
$s->close;
$ws->close;
is(wait_subscribers(0), 0, 'all closed');

###########################################################################
# events_stream_release_header off keeps the buffer: a stream holds about
# 1 KB more (client_header_buffer_size) than one that gives it back


sub grown {
    my ($path, $n, $held) = @_;
    my $before = $t->rss_anon;
    push @$held, stream($path, %acme) for 1 .. $n;
    wait_subscribers(scalar @$held);
    return ($t->rss_anon - $before) * 1024 / $n;
}

my @held;
grown('/events/stream', 50, \@held);                 # warm the heaps
my $released = grown('/events/stream', 300, \@held);
my $kept = grown('/kept/stream', 300, \@held);
note(sprintf 'per stream: %.0f B released, %.0f B kept', $released, $kept);
SKIP: {
    # ASan's allocator holds freed memory back (its quarantine)
    skip 'memory is measured without ASan', 1 if $t->asan;
    cmp_ok($kept - $released, '>=', 512, 'a stream keeps its header '
        . 'buffer with events_stream_release_header off');
}
$_->close for @held;
is(wait_subscribers(0), 0, 'and they are let go');

$t->done;

