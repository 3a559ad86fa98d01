#!/usr/bin/perl

# Contract slips of the webhook API, each with its exact answer: the
# deliveries query follows the parameter contract of GET /events; the
# SSRF check at creation refuses private v4 addresses however a v6
# literal wraps them; a replay past the newest event, or ending before
# it starts, is refused; responseExcerpt is valid UTF-8, cut at a
# character boundary.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use JSON::PP;
use EventsTest;

my $t = EventsTest->new;

# the receivers: static files of this nginx, with the bytes we want
my $cut = '0123456789abcd' . "\xe2\x82\xac" . 'tail';       # 16th byte in €
my $bad = "ab\xff\xfe" . ('x' x 10) . "\xed\xa0\x80" . 'zz'; # invalid bytes
$t->write_file('cut.txt', $cut);
$t->write_file('bad.txt', $bad);

$t->write_config(<<'EOF');
%%GLOBALS%%
http {
    %%HTTP_GLOBALS%%

    events_zone main 8m;

    # nginx.conf endpoints may reach loopback, like a proxy_pass
    events_webhook main id=cut tenant=acme events=cut.x
        url=http://127.0.0.1:%%PORT_2%%/cut.txt
        secret=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw;
    events_webhook main id=bad tenant=acme events=bad.x
        url=http://127.0.0.1:%%PORT_2%%/bad.txt
        secret=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw;

    server {
        listen 127.0.0.1:%%PORT%%;
        events_tenant $http_x_tenant;

        events_webhook_retry off;
        events_webhook_response_excerpt 16;

        location /events { events_api main; }
        location /webhooks { events_webhooks main; }

        location = /_events_webhook {
            internal;
            proxy_pass $events_webhook_url;
        }
    }

    server {
        listen 127.0.0.1:%%PORT_2%%;
        root %%TESTDIR%%;
        default_type text/plain;
        location / { error_page 405 =200 $uri; }
    }
}
EOF
$t->run;

my %acme = ('X-Tenant' => 'acme');
my $json = JSON::PP->new->utf8;

sub api {
    my ($m, $p, $b) = @_;
    return $t->req($m, $p, headers => \%acme, defined $b ? (json => $b) : ());
}

sub param_error {
    my ($r, $status, $code, $param, $name) = @_;
    $t->is_error($r, $status, $code, $param, $name);
    my $e = eval { $json->decode($r->{body}) } // {};
    ok(($e->{error}{param} // '') eq $param && !exists $e->{error}{field},
        "$name: named in \"param\"");
}

# SSRF at creation: private v4 inside v6 literals
for my $u ('http://[::127.0.0.1]/x', 'http://[::7f00:1]/x',
    'http://[::ffff:0:127.0.0.1]/x', 'http://[::ffff:0:10.1.2.3]/x',
    'http://[64:ff9b:1::a00:1]/x', 'http://[64:ff9b:1:a00:1::]/x',
    'http://[64:ff9b::10.0.0.1]/x', 'http://[::ffff:192.168.1.1]/x',
    'http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/x',
    'http://[fec0::1]/x')
{
    $t->is_error(api(POST => '/webhooks', { url => $u, events => ['a'] }),
        400, 'blocked_url', 'url', "refused: $u");
}
for my $u ('http://[2606:4700::1111]/x', 'http://[64:ff9b::8.8.8.8]/x') {
    is(api(POST => '/webhooks', { url => $u, events => ['a'] })->{status},
        201, "a public address is accepted: $u");
}

sub publish {
    my $r = $t->post_json('/events', { type => $_[0] }, headers => \%acme);
    die "publish: $r->{body}" unless $r->{status} == 201;
    return $r->{json};
}

my @evs = map { publish($_) } qw(cut.x bad.x a.x a.x);

sub excerpt {
    my ($id) = @_;
    my $end = time + 10;
    while (time < $end) {
        my $r = api(GET => "/webhooks/$id/deliveries");
        my $doc = eval { $json->decode($r->{body}) };
        return (undef, $r->{body}) unless $doc;
        return ($doc->{data}[0]{responseExcerpt}, $r->{body})
            if @{ $doc->{data} // [] };
        select undef, undef, undef, 0.2;
    }
    return (undef, 'timeout');
}

my ($x, $raw) = excerpt('cut');
is($x, '0123456789abcd', 'cut before a character that does not fit whole')
    or diag $raw;
($x, $raw) = excerpt('bad');
is($x, "ab\x{fffd}\x{fffd}xxxxxxxx",
    'invalid bytes are U+FFFD, the copy ends where the next does not fit')
    or diag $raw;

# the deliveries query: the parameter contract of GET /events
my $p = '/webhooks/cut/deliveries';
param_error(api(GET => "$p?colour=red"), 400, 'invalid_parameter', 'colour',
    'an unknown parameter');
param_error(api(GET => "$p?limit=1&limit=2"), 400, 'invalid_parameter',
    'limit', 'a repeated parameter');
param_error(api(GET => "$p?limit=0"), 400, 'invalid_parameter', 'limit',
    'limit=0');
param_error(api(GET => "$p?limit=x"), 400, 'invalid_parameter', 'limit',
    'limit=x');
param_error(api(GET => "$p?status=meh"), 400, 'invalid_parameter', 'status',
    'a bad status');
param_error(api(GET => "$p?eventId=bad%20id"), 400, 'invalid_parameter',
    'eventId', 'a bad eventId');
param_error(api(GET => "$p?after=zz"), 400, 'invalid_cursor', 'after',
    'a bad cursor');
is(api(GET => "$p?limit=1&status=succeeded&eventId=$evs[0]{id}")->{status},
    200, 'every known parameter once: 200');

# replay: after beyond the newest event, until before after
my $head = $evs[-1]{seq};
my $r = api(POST => '/webhooks/cut/replay', { after => $head + 5 });
$t->is_error($r, 409, 'replay_out_of_range', 'after',
    'after beyond the newest event: 409');
like($r->{body}, qr/"newest":"[^"]+"/, 'with the newest cursor');
$t->is_error(api(POST => '/webhooks/cut/replay',
    { after => 2, until => 1 }), 400, 'invalid_field', 'until',
    'until before after: 400');
$r = api(POST => '/webhooks/cut/replay', { after => $head });
is($r->{status}, 202, 'after at the newest event: 202');
is($r->{json}{queued}, 0, 'nothing to queue');
is($r->{json}{from}, $r->{json}{to}, 'from = to');

$t->done;
