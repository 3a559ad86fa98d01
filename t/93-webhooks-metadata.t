#!/usr/bin/perl

# Webhook endpoints filter on metadata as lists do (?metadata.KEY=VALUE):
# "metadata": {"KEY": "VALUE"} through the API and metadata.KEY=VALUE on
# events_webhook; every filter must match exactly, values as strings.  A
# real receiver gets only the matching events; bad filters are refused
# with exact bodies (and fail nginx -t); the filters survive a restart
# with events_journal, and PATCH changes or removes them.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use JSON::PP;
use Time::HiRes qw(sleep);
use EventsTest;
use EventsTest::Receiver;

my $conf = <<'EOF';
%%GLOBALS%%
http {
    %%HTTP_GLOBALS%%

    events_zone main 8m;
    events_journal main %%TESTDIR%%/journal fsync=always;

    events_webhook main id=st url=http://127.0.0.1:RPORT/static events=doc.*
        secret=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw STATIC;

    server {
        listen 127.0.0.1:%%PORT%%;

        events_webhook_allow_private on;
        events_webhook_retry 1s 1s;

        location /events { events_api main; }
        location /webhooks { events_webhooks main; }

        location = /_events_webhook {
            internal;
            proxy_pass $events_webhook_url;
        }
    }
}
EOF

my $t = EventsTest->new;
my $rcv = EventsTest::Receiver->new(dir => $t->testdir, name => 'r1');

sub config {
    my ($tt, $static) = @_;
    (my $c = $conf) =~ s/RPORT/$rcv->port/e;
    $c =~ s/STATIC/$static/;
    $tt->write_config($c);
}

sub refused {
    my ($static) = @_;
    my $tt = EventsTest->new;
    config($tt, $static);
    my ($ok, $out) = $tt->_test_config;
    return $ok ? '' : $out;
}

# bad static filters fail nginx -t
for my $p ('metadata.b@d=x', 'metadata.=x', 'metadata.k=', 'metadata.k',
    'metadata.k=a metadata.k=b', 'metadata.' . ('k' x 65) . '=x',
    'metadata.k=' . ('v' x 257),
    join(' ', map { "metadata.k$_=v" } 1 .. 9))
{
    like(refused($p), qr/\[emerg\] invalid parameter "metadata\./,
        "events_webhook: $p" =~ s/(.{70}).*/$1.../r);
}

config($t, 'metadata.region=us metadata.tier=gold');
$t->run;

my $url = $rcv->url('/hook');

sub event {
    my ($id, $meta) = @_;
    my $r = $t->post_json('/events', { id => $id, type => 'doc.created',
        defined $meta ? (metadata => $meta) : () });
    is($r->{status}, 201, "event $id") or diag $r->{body};
}

sub delivered {
    my ($path, $n) = @_;
    my @r = $rcv->wait_requests($path, $n, 10);
    sleep 1;    # and nothing more comes

    # an endpoint that is not ordered may have two attempts in flight
    return [ sort map { $_->{headers}{'webhook-id'} }
             $rcv->requests($path) ];
}

# the static endpoint shows its filters
my $st = $t->get('/webhooks/st')->{json};
is_deeply($st->{metadata}, { region => 'us', tier => 'gold' },
    'static: metadata shown');

# create with filters
my $r = $t->post_json('/webhooks', { url => $url, events => ['doc.*'],
    metadata => { actorId => 'u-1', region => 'eu' } });
is($r->{status}, 201, 'created') or diag $r->{body};
my $id = $r->{json}{id};
is_deeply($r->{json}{metadata}, { actorId => 'u-1', region => 'eu' },
    'metadata in the answer');
is_deeply($t->get("/webhooks/$id")->{json}{metadata},
    { actorId => 'u-1', region => 'eu' }, 'metadata in GET');

# one with a value that needs escaping, and one on a number
my $q = $t->post_json('/webhooks', { url => $rcv->url('/quoted'),
    events => ['doc.*'], metadata => { note => "a \"b\" \x{e9}\\" } });
is($q->{status}, 201, 'created: escaped value') or diag $q->{body};
my $n = $t->post_json('/webhooks', { url => $rcv->url('/number'),
    events => ['doc.*'], metadata => { n => '5' } });
is($n->{status}, 201, 'created: a number as a string') or diag $n->{body};
is_deeply($t->get("/webhooks/$q->{json}{id}")->{json}{metadata},
    { note => "a \"b\" \x{e9}\\" }, 'an escaped value as given');

event('m1', { actorId => 'u-1', region => 'eu' });
event('m2', { actorId => 'u-2', region => 'eu' });
event('m3', { actorId => 'u-1' });
event('m4', { region => 'eu', actorId => 'u-1', extra => 'x' });
event('m5');
event('m6', { actorId => { id => 'u-1' }, region => 'eu' });
event('m7', { note => "a \"b\" \x{e9}\\", n => 5 });
event('m8', { note => 'a "b" e\\', n => '5', region => 'us',
    tier => 'gold' });
event('m9', { region => 'us', tier => 'silver' });
event('m10', { n => '05' });

is_deeply(delivered('/hook', 2), [ 'm1', 'm4' ],
    'API endpoint: only the events with every filter, exact');
is_deeply(delivered('/quoted', 1), [ 'm7' ],
    'an escaped value matches as sent');
is_deeply(delivered('/number', 2), [ 'm7', 'm8' ],
    'a number matches its text, as lists do');
is_deeply(delivered('/static', 1), [ 'm8' ], 'static endpoint: filtered');

# the same filters on the list name the same events
my $l = $t->get('/events?metadata.actorId=u-1&metadata.region=eu');
is_deeply([ map { $_->{id} } @{ $l->{json}{data} } ], [ 'm1', 'm4' ],
    'the list agrees');

# bad filters: exact bodies, nothing changed
sub bad {
    my ($meta, $detail, $name) = @_;
    for my $m ('POST', 'PATCH') {
        my $r = $m eq 'POST'
            ? $t->post_json('/webhooks', { url => $url, events => ['doc.*'],
                metadata => $meta })
            : $t->req(PATCH => "/webhooks/$id", json => { metadata => $meta });
        is($r->{status}, 400, "$m $name: 400");
        is_deeply($r->{json}, { error => { status => 400, code => 'invalid_field',
            field => 'metadata', message => $detail } },
            "$m $name: the body") or diag $r->{body};
    }
}

my $keys = 'metadata keys are 1-64 characters of [A-Za-z0-9_.:-]';
my $vals = 'must be a string of 1-256 bytes of printable UTF-8';
bad({ 'b@d' => 'x' }, $keys, 'a bad key');
bad({ '' => 'x' }, $keys, 'an empty key');
bad({ ('k' x 65) => 'x' }, $keys, 'a long key');
bad({ k => '' }, "metadata \"k\" $vals", 'an empty value');
bad({ k => 'v' x 257 }, "metadata \"k\" $vals", 'a long value');
bad({ k => "a\nb" }, "metadata \"k\" $vals", 'a control character');
bad({ k => 5 }, "metadata \"k\" $vals", 'a number');
bad({ k => undef }, "metadata \"k\" $vals", 'null');
bad({ k => ['a'] }, "metadata \"k\" $vals", 'an array');
bad({ map { ("k$_" => 'v') } 1 .. 9 }, 'at most 8 metadata filters',
    'nine filters');
$r = $t->post_json('/webhooks', { url => $url, events => ['doc.*'],
    metadata => ['a'] });
is($r->{status}, 400, 'metadata not an object: 400');
is_deeply($r->{json}, { error => { status => 400, code => 'invalid_field',
    field => 'metadata', message => 'metadata has the wrong type' } },
    'metadata not an object: the body') or diag $r->{body};
is(scalar @{ $t->get('/webhooks')->{json}{data} }, 4,
    'nothing was created by bad input');
is_deeply($t->get("/webhooks/$id")->{json}{metadata},
    { actorId => 'u-1', region => 'eu' }, 'nor changed');

# PATCH changes the filters; a PATCH without them keeps them
$r = $t->req(PATCH => "/webhooks/$id", json => {
    metadata => { actorId => 'u-2' } });
is($r->{status}, 200, 'PATCH metadata') or diag $r->{body};
is_deeply($r->{json}{metadata}, { actorId => 'u-2' }, 'changed');
$r = $t->req(PATCH => "/webhooks/$id", json => { description => 'd' });
is_deeply($r->{json}{metadata}, { actorId => 'u-2' },
    'a PATCH without metadata keeps it');

# a restart: the filters come back from the state file
$t->stop;
$t->run;
is_deeply($t->get("/webhooks/$id")->{json}{metadata}, { actorId => 'u-2' },
    'after a restart: the filters');
is_deeply($t->get("/webhooks/$q->{json}{id}")->{json}{metadata},
    { note => "a \"b\" \x{e9}\\" }, 'after a restart: the escaped value');
$rcv->reset_log;
event('r1', { actorId => 'u-1' });
event('r2', { actorId => 'u-2' });
event('r3', { note => "a \"b\" \x{e9}\\" });
is_deeply(delivered('/hook', 1), [ 'r2' ], 'after a restart: filtered');
is_deeply(delivered('/quoted', 1), [ 'r3' ],
    'after a restart: the escaped value matches');

# {} takes the filters away
$r = $t->req(PATCH => "/webhooks/$id", json => { metadata => {} });
is_deeply($r->{json}{metadata}, {}, 'PATCH {}: no filters');
$rcv->reset_log;
event('r4');
is_deeply(delivered('/hook', 1), [ 'r4' ], 'no filters: every doc event');

$t->stop;
done_testing();
