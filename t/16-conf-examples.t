#!/usr/bin/perl

# Every file in conf-examples/ starts as written (its port moved to a
# free one, its module path to the build) and answers what it promises.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use JSON::PP;
use Digest::SHA qw(hmac_sha256);
use MIME::Base64 qw(encode_base64url);
use EventsTest;
use EventsTest::SSE;
use EventsTest::Backend;
use Time::HiRes qw(sleep time);

my $dir = "$EventsTest::REPO/conf-examples";
opendir(my $dh, $dir) or die "$dir: $!";
# cluster.conf needs a Redis: t/72-cluster-conf.t runs it on three nodes
# of one it starts (as written it would reach whatever holds port 6379)
my @files = sort grep { /\.conf$/ && $_ ne 'cluster.conf' } readdir $dh;
closedir $dh;

ok(scalar @files, 'there are examples');

# what each example must answer, beyond starting
my %check = (
    'quickstart.conf' => sub {
        my ($t) = @_;
        my $r = $t->post_json('/events', { type => 'ticket.created',
            resourceId => 'ticket-123' },
            headers => { 'X-Tenant' => 'acme' });
        is($r->{status}, 201, 'quickstart: POST');
        is($r->{json}{source}, 'quickstart', 'quickstart: events_source');
        is($r->{json}{tenantId}, 'acme', 'quickstart: tenant from header');
        $r = $t->get('/events/ticket/ticket-123',
            headers => { 'X-Tenant' => 'acme' });
        is(scalar @{ $r->{json}{data} }, 1, 'quickstart: history');
        is($t->get('/events-status')->{json}{events}{stored}, 1,
            'quickstart: status');
        my $s = EventsTest::SSE->open($t,
            '/events/stream?lastEventId=earliest',
            headers => { 'X-Tenant' => 'acme' });
        is($s->next_event(timeout => 2)->{json}{resourceId}, 'ticket-123',
            'quickstart: the stream');
        $s->close;
        $r = $t->get('/console/');
        like($r->{body}, qr/<meta name="events-config"/,
             'quickstart: the console');
    },

    'capture.conf' => sub {
        my ($t) = @_;
        my %acme = (headers => { 'X-Tenant' => 'acme', 'X-User' => 'u-42' });
        my $list = sub {
            for (1 .. $_[1] // 100) {
                my @ev = @{ $t->get('/events?limit=100', %acme)->{json}{data}
                    // [] };
                return @ev if @ev >= $_[0];
                select(undef, undef, undef, 0.05);
            }
            return @{ $t->get('/events?limit=100', %acme)->{json}{data} };
        };

        # the hook decides after the answer: wait for each event
        my $r = $t->post_json('/api/tickets', { title => 'Printer on fire' },
            %acme);
        is($r->{status}, 201, 'capture: the backend answers');
        is($r->{json}{id}, 't-1', 'capture: its body');
        $list->(1);
        $t->req('PUT', '/api/tickets/t-1', json => { status => 'closed' },
            %acme);
        $list->(2);
        is($t->req('DELETE', '/api/tickets/t-1', %acme)->{status}, 204,
            'capture: DELETE');
        $list->(3);
        $r = $t->get('/api/orders/o-1', %acme);
        is($r->{json}{paid}, JSON::PP::true, 'capture: an order');
        ok(!exists $r->{headers}{'x-event-emit'}, 'capture: header stripped');

        my @ev = $list->(4);
        is_deeply([ map { "$_->{type} $_->{resourceId}" } @ev ],
            [ 'ticket.created t-1', 'ticket.updated t-1',
              'ticket.deleted t-1', 'order.paid o-1' ],
            'capture: four events, in order');
        is($ev[0]{payload}{data}{title}, 'Printer on fire', 'capture: data');
        is($ev[0]{metadata}{actorId}, 'u-42', 'capture: actor');
        is($ev[0]{source}, 'helpdesk', 'capture: source');

        $r = $t->post_json('/events', { type => 'ticket.created' },
            headers => { 'X-Tenant' => 'acme', 'X-User' => 'mallory' });
        is($r->{status}, 403, 'capture: the hook refuses mallory');
        my $wh;
        for (1 .. 50) {
            $wh = $t->get('/events-status')->{json}{webhooks};
            last if $wh && $wh->{ok} >= 1;
            select(undef, undef, undef, 0.1);
        }
        is($wh->{ok}, 1, 'capture: the order went to the local handler');
        is($r->{json}{error}{message}, 'mallory may not publish',
            'capture: in its own words');
        $t->get('/api/orders/o-2',
            headers => { 'X-Tenant' => 'acme', 'X-User' => 'mallory' });
        is(scalar($list->(5, 20)), 4, 'capture: nor mallory\'s capture');
        my $st = $t->get('/events-status')->{json};
        is($st->{capture}{stored}, 4, 'capture: status, stored');
        is($st->{validate}{rejected}, 2, 'capture: status, refused');
    },

    'auth_request.conf' => sub {
        my ($t) = @_;
        my %acme = (headers => { 'X-Api-Key' => 'key-acme' });
        is($t->get('/events')->{status}, 401, 'auth_request: no key, 401');
        is($t->get('/events', headers => { 'X-Api-Key' => 'nope' })
            ->{status}, 401, 'auth_request: a wrong key, 401');
        my $r = $t->post_json('/events', { type => 'ticket.created' },
            headers => { 'X-Api-Key' => 'key-acme', 'X-Tenant' => 'beta' });
        is($r->{status}, 201, 'auth_request: POST with a key');
        is($r->{json}{tenantId}, 'acme', 'auth_request: the service\'s tenant');
        is(scalar @{ $t->get('/events', headers => {
            'X-Api-Key' => 'key-beta' })->{json}{data} }, 0,
            'auth_request: beta sees none of acme\'s');
        is(scalar @{ $t->get('/events', %acme)->{json}{data} }, 1,
            'auth_request: acme sees its own');
    },

    'webhooks.conf' => sub {
        my ($t) = @_;
        my %acme = (headers => { 'X-Tenant' => 'acme' });
        my $r = $t->post_json('/events', { type => 'invoice.paid' }, %acme);
        is($r->{status}, 201, 'webhooks: POST');
        my $log;
        for (1 .. 50) {
            $log = $t->get('/webhooks/billing/deliveries', %acme)->{json};
            last if @{ $log->{data} };
            select undef, undef, undef, 0.1;
        }
        is($log->{data}[0]{result}, 'succeeded',
            'webhooks: delivered to the static endpoint');
        is($log->{data}[0]{responseExcerpt}, "received\n",
            'webhooks: the receiver\'s answer');
        my $ep = $t->post_json('/webhooks', { url => 'http://10.0.0.1/x',
            events => ['a.*'] }, %acme);
        is($ep->{status}, 400, 'webhooks: a private address is refused');
        is($t->get('/events-status')->{json}{webhooks}{ok}, 1,
            'webhooks: status');
    },

    'functions.conf' => sub {
        my ($t) = @_;
        # the prompt API the hook calls: a stub that records what it got
        my $api = EventsTest::Backend->start($t, 2);
        my %acme = (headers => { 'X-Tenant' => 'acme' });

        my $r = $t->post_json('/events', { type => 'ticket.created',
            resourceId => 't-1', payload => { data => {
                title => 'Printer on fire' } } }, %acme);
        is($r->{status}, 201, 'functions: ticket.created');
        my $cause = $r->{json}{id};

        my ($follow, $deadline) = (undef, time + 15);
        while (!$follow && time < $deadline) {
            ($follow) = @{ $t->get('/events?types=ticket.triaged', %acme)
                ->{json}{data} };
            sleep 0.1 unless $follow;
        }
        ok($follow, 'functions: onTicketCreated published ticket.triaged');
        is($follow && $follow->{id}, "$cause:triaged",
            'functions: its id derived from the cause\'s');
        is($follow && $follow->{payload}{data}{priority}, 'high',
            'functions: the function\'s decision');
        is($follow && $follow->{metadata}{causedBy}, $cause,
            'functions: caused by');
        is($follow && $follow->{resourceId}, 't-1',
            'functions: about the same ticket');

        $r = $t->post_json('/events', { type => 'message.created',
            metadata => { actorId => 'u-42' },
            payload => { data => { text => 'The printer is on fire' } } },
            %acme);
        my @calls;
        $deadline = time + 15;
        while (!@calls && time < $deadline) {
            @calls = grep { m{^POST /v1/prompt } } $api->log;
            sleep 0.1 unless @calls;
        }
        is(scalar @calls, 1, 'functions: the prompt hook called the API');
        my ($body) = ($calls[0] // '') =~ m{^POST /v1/prompt \S+ (.*)$};
        my $sent = eval { decode_json($body) } // {};
        is($sent->{prompt}, 'Summarize this message from u-42: The printer '
            . 'is on fire', 'functions: with the templated prompt');
        is($sent->{metadata}{event}, $r->{json}{id},
            'functions: naming the event');
        $api->stop;
    },

    'jwt.conf' => sub {
        my ($t) = @_;
        my $json = JSON::PP->new->canonical;
        my $h = encode_base64url('{"alg":"HS256","typ":"JWT"}');
        my $p = encode_base64url($json->encode({ tenant => 'acme',
            sub => 'svc', exp => time + 300, publish => ['ticket.*'],
            subscribe => ['ticket.*'] }));
        my $tok = "$h.$p." . encode_base64url(hmac_sha256("$h.$p",
            'example-secret'));
        is($t->get('/events')->{status}, 401, 'jwt: no token, 401');
        my $r = $t->post_json('/events', { type => 'ticket.created' },
            headers => { Authorization => "Bearer $tok" });
        is($r->{status}, 201, 'jwt: POST with a token');
        is($r->{json}{tenantId}, 'acme', 'jwt: the token\'s tenant');
        my $s = EventsTest::SSE->open($t,
            "/events/stream?lastEventId=earliest&token=$tok");
        is($s->next_event(timeout => 2)->{json}{seq}, $r->{json}{seq},
            'jwt: a stream with ?token=');
        $s->close;
        is($t->get('/events-status', headers => {
            Authorization => "Bearer $tok" })->{status}, 403,
            'jwt: status needs admin');
    },
);

# files an example expects beside it
sub example_file {
    open(my $fh, '<', "$dir/$_[0]") or die "$_[0]: $!";
    local $/;
    return <$fh>;
}

my %files = ('jwt.conf' => { 'events-jwt.key' => "example-secret\n" },
    'functions.conf' => { 'functions.js' => example_file('functions.js') });

for my $file (@files) {
    open(my $fh, '<', "$dir/$file") or die "$file: $!";
    my $conf = do { local $/; <$fh> };
    close $fh;

    ok($conf =~ /127\.0\.0\.1:8080/, "$file listens on 127.0.0.1:8080");

    # the harness owns the process-level lines; the rest is as written
    # (other modules an example loads stay, first: before any block)
    $conf =~ s/^\s*load_module\s+\S*ngx_http_events_module\.so;\n//mg;
    my $modules = join '', $conf =~ /^(\s*load_module\b[^;]*;\n)/mg;
    $conf =~ s/^\s*load_module\b[^;]*;\n//mg;
    $conf =~ s/^\s*(worker_processes|pid|error_log)\b[^;]*;\n//mg;
    $conf =~ s/^events\s*\{[^}]*\}\n//m;
    $conf =~ s/127\.0\.0\.1:8080/127.0.0.1:%%PORT%%/g;
    $conf =~ s/127\.0\.0\.1:8081/127.0.0.1:%%PORT_2%%/g;

    my $t = EventsTest->new;
    mkdir $t->testdir . '/logs';
    chmod 0777, $t->testdir . '/logs';
    my $extra = $files{$file} // {};
    $t->write_file($_, $extra->{$_}) for keys %$extra;
    $t->write_config("$modules%%GLOBALS%%\n$conf");

    # another module the example loads is built for Debian's nginx: an
    # nginx of another version (make compat, T_NGINX) cannot load it
    if ($modules) {
        my ($ok, $out) = $t->_test_config;
        if (!$ok && $out =~ /(module "[^"]+" version \d+ instead of \d+)/) {
            my $why = $1;
            SKIP: { skip("$file needs a module of another nginx: $why", 1); }
            next;
        }
    }

    $t->run;

    ok($t->get('/')->{status}, "$file answers");
    $check{$file}->($t) if $check{$file};

    $t->stop;
    my @bad = grep { /\[(alert|crit|emerg)\]/ } split /\n/, $t->error_log;
    is_deeply(\@bad, [], "$file: a clean error.log");
}

done_testing;
