#!/usr/bin/perl

# events.js at the server's limits, in Node: a stream refused at
# events_stream_max_subscribers is retried with backoff, keeping its
# place, and gets everything once it is let in; a token that expires
# ends the stream ("reauth" first) and the client comes back with a
# fresh token from its token function, missing nothing.

use strict;
use warnings;

use lib 't/lib';
use JSON::PP;
use Test::More;
use EventsTest;
use EventsNode;

my $REPO = $EventsTest::REPO;

plan skip_all => 'no node' unless `node --version 2>/dev/null` =~ /^v(\d+)/
                                   && $1 >= 18;

my $t = EventsTest->new;

$t->write_file('hs.key', "s3cret-one\n");
$t->write_config(<<'EOF2');
%%GLOBALS%%
http {
    %%HTTP_GLOBALS%%

    events_zone main 4m;
    events_stream_retry 300ms;

    server {
        listen 127.0.0.1:%%PORT%%;

        location = /events/stream {
            events_stream_max_subscribers 1;
            events_stream main;
        }
        location /events { events_api main; }
    }

    server {
        listen 127.0.0.1:%%PORT_2%%;

        events_auth on;
        events_auth_jwt_key %%TESTDIR%%/hs.key;

        location = /events/stream { events_stream main; }
        location /events { events_api main; }
    }
}
EOF2

$t->run;

my $json = JSON::PP->new->canonical;
my @node = ('node', "$REPO/t/node/client-node.mjs");

sub publish {
    my $r = $t->post_json('/events', $_[0]);
    die "publish: $r->{status} $r->{body}" unless $r->{status} == 201;
    return $r->{json}{id};
}

sub events_of { map { $_->{id} } grep { exists $_->{seq} } @_ }

###########################################################################
# refused at the limit (one stream per worker, two workers, three
# clients): retried, and in the end every client has every event once

my @want = map { publish({ type => 'ticket.created' }) } 1 .. 5;

my @n = map {
    EventsNode->start(@node, 'follow', $json->encode({
        base => 'http://127.0.0.1:' . $t->port(1),
        lastEventId => 'earliest' }))
} 1 .. 3;

# all three have tried: two are in, one at least is retrying
for my $n (@n) {
    $n->until(sub { ($_[0]{state} // '') =~ /^(open|reconnecting)$/ }, 10);
}
select(undef, undef, undef, 1);
push @want, publish({ type => 'test.end' });

my $refused = 0;
for my $i (0 .. $#n) {
    ok($n[$i]->until(sub { $_[0]{done} }, 30), "client $i: done")
        or diag $n[$i]->output;
    my @lines = $n[$i]->lines;
    is_deeply([ events_of(@lines) ], \@want,
              "client $i: every event once, in order");
    my @states = map { $_->{state} } grep { $_->{state} } @lines;
    $refused++ if grep { $_ eq 'reconnecting' } @states
                  or grep { ($_->{reset} // '') eq 'overloaded' } @lines;
    ok(!grep({ $_->{failed} } @lines), "client $i: no failure");
    $n[$i]->stop;
}
cmp_ok($refused, '>=', 1, "$refused client(s) refused at the limit, "
       . 'retried, and let in later');
$t->expect_log(qr/stream refused/);

###########################################################################
# a token that expires: reauth, the end of the stream, a fresh token

sub jwt {
    my ($exp) = @_;
    require Digest::SHA;
    require MIME::Base64;
    my $enc = sub { MIME::Base64::encode_base64url($_[0]) };
    my $h = $enc->('{"alg":"HS256","typ":"JWT"}');
    my $p = $enc->($json->encode({ exp => $exp, tenant => 'acme',
                                   publish => ['*'], subscribe => ['*'] }));
    return "$h.$p." . $enc->(Digest::SHA::hmac_sha256("$h.$p", 's3cret-one'));
}

my $n = EventsNode->start(@node, 'follow', $json->encode({
    base => 'http://127.0.0.1:' . $t->port(2),
    tokens => [ jwt(time + 2), jwt(time + 600) ] }));
ok($n->until(sub { ($_[0]{state} // '') eq 'open' }, 10), 'token: open');

sub tpublish {
    my $r = $t->post_json('/events', $_[0],
                          port => 2, headers => { Authorization => 'Bearer '
                              . jwt(time + 600) });
    die "publish: $r->{status} $r->{body}" unless $r->{status} == 201;
    return $r->{json}{id};
}

@want = (tpublish({ type => 'ticket.created' }));
my $reauth = $n->until(sub { $_[0]{reauth} }, 10);
ok($reauth, 'token: reauth before expiry');
ok($n->until(sub { ($_[0]{state} // '') eq 'reconnecting' }, 10),
   'token: the stream ends at expiry');
push @want, tpublish({ type => 'ticket.updated' });
ok($n->until(sub { ($_[0]{state} // '') eq 'open' }, 10),
   'token: open again with the next token');
push @want, tpublish({ type => 'test.end' });
ok($n->until(sub { $_[0]{done} }, 10), 'token: the end');
is_deeply([ events_of($n->lines) ], \@want,
          'token: every event once across the change of token');
ok(!grep({ $_->{error} } $n->lines), 'token: no error');
$n->stop;

$t->done;
