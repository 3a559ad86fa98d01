#!/usr/bin/perl

# CloudEvents 1.0 per endpoint: "format": "cloudevents" (binary content
# mode, ce-* headers, the envelope as the body) and
# "cloudevents-structured" (application/cloudevents+json, the envelope
# as data), both still signed with Standard Webhooks headers.  Read by
# the CloudEvents SDK (npm cloudevents, HTTP.toEvent) and verified by
# the standardwebhooks library; the mapping checked attribute by
# attribute.  SSE ?format=cloudevents gives structured events.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use JSON::PP;
use MIME::Base64;
use File::Temp qw(tempfile);
use Time::HiRes qw(time sleep);
use EventsTest;
use EventsTest::Receiver;
use EventsTest::Webhook qw(node_verify node_missing);

my $why = node_missing();
plan skip_all => $why if $why;
(my $node_dir = EventsTest::Webhook::node_script()) =~ s{/[^/]+$}{};
my $script = "$node_dir/cloudevents-receive.js";
plan skip_all => 'the cloudevents npm package is not installed (npm ci)'
    unless -e "$node_dir/node_modules/cloudevents/package.json";

my $t = EventsTest->new;
$t->write_config(<<'EOF');
%%GLOBALS%%
http {
    %%HTTP_GLOBALS%%

    events_zone main 4m;

    server {
        listen 127.0.0.1:%%PORT%%;

        events_webhook_allow 127.0.0.1/32;
        events_webhook_retry off;
        events_tenant $http_x_tenant;

        location /events { events_api main; }
        location /events/stream { events_stream main; }
        location /webhooks { events_webhooks main; }

        location = /_events_webhook {
            internal;
            proxy_pass $events_webhook_url;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $events_webhook_host;
        }
    }
}
EOF
$t->run;

my $rcv = EventsTest::Receiver->new(dir => $t->testdir, name => 'ce');
my $json = JSON::PP->new->utf8->canonical;
my %h = (headers => { 'X-Tenant' => 'acme' });

sub create {
    my (%o) = @_;
    my $r = $t->post_json('/webhooks', { events => ['*'], %o }, %h);
    die "create: $r->{body}" unless $r->{status} == 201;
    return $r->{json};
}

# the SDK's reading of each request
sub sdk {
    my @reqs = @_;
    my ($in, $file) = tempfile('ce-XXXXXXXX', TMPDIR => 1, UNLINK => 1);
    binmode $in;
    print {$in} $json->encode({ headers => $_->{headers},
        body_b64 => encode_base64($_->{body}, '') }), "\n" for @reqs;
    close $in;
    my @out = `node $script < $file`;
    return map { $json->decode($_) } @out;
}

my $bin = create(url => $rcv->url('/bin'), format => 'cloudevents',
    headers => { 'ce-type' => 'forged', 'X-Extra' => 'yes' });
my $str = create(url => $rcv->url('/str'), format => 'cloudevents-structured');
my $env = create(url => $rcv->url('/env'));

is($bin->{format}, 'cloudevents', 'binary: format shown');
is($str->{format}, 'cloudevents-structured', 'structured: format shown');
is($env->{format}, 'envelope', 'default: envelope');

my $e1 = $t->post_json('/events', { type => 'ticket.created',
    source => 'helpdesk', resourceId => 'ticket-1',
    payload => { data => { title => 'Printer on fire' } } }, %h)->{json};
my $e2 = $t->post_json('/events', { type => 'ticket.noted',
    source => "caf\x{e9} \"x\" 100%" }, %h)->{json};
my %stored = map { $_->{id} => $t->get("/events/$_->{id}", %h) }
    ($e1, $e2);

my @b = $rcv->wait_requests('/bin', 2, 10);
my @s = $rcv->wait_requests('/str', 2, 10);
my @n = $rcv->wait_requests('/env', 2, 10);
is(scalar @b, 2, 'binary: 2 deliveries');
is(scalar @s, 2, 'structured: 2 deliveries');

# signed as any delivery, over the body actually sent
my @v = node_verify(map { { secret => $_->[0]{secret}, headers => $_->[1]{headers},
    body => $_->[1]{body} } } (map([$bin, $_], @b), map([$str, $_], @s),
    map([$env, $_], @n)));
is(scalar(grep { $_->{ok} } @v), 6,
    'every delivery verifies with standardwebhooks')
    or diag explain \@v;

# binary: the envelope is the body, the attributes are headers
my ($b1) = grep { $_->{headers}{'webhook-id'} eq $e1->{id} } @b;
my ($b2) = grep { $_->{headers}{'webhook-id'} eq $e2->{id} } @b;
is($b1->{body}, $stored{ $e1->{id} }{body}, 'binary: the body is the envelope');
is($b1->{headers}{'content-type'}, 'application/json',
    'binary: content-type is datacontenttype');
is($b1->{headers}{'ce-specversion'}, '1.0', 'binary: ce-specversion');
is($b1->{headers}{'ce-type'}, 'ticket.created',
    'binary: ce-type, a custom ce-* header does not replace it');
is($b1->{headers}{'x-extra'}, 'yes', 'binary: other custom headers sent');
is($b1->{headers}{'ce-seq'}, "$e1->{seq}", 'binary: ce-seq');
is($b1->{headers}{'ce-tenantid'}, 'acme', 'binary: ce-tenantid');
is($b2->{headers}{'ce-source'}, 'caf%25C3%25A9%2520%2522x%2522%2520100%2525',
    'binary: source as a URI-reference, percent-encoded again as a header');
ok(!exists $b2->{headers}{'ce-subject'}, 'binary: no resourceId, no subject');

my @ce = sdk($b1, $b2, @s);
is(scalar(grep { $_->{ok} } @ce), 4, 'the SDK reads all four')
    or diag explain \@ce;

my $env1 = $stored{ $e1->{id} }{json};
for my $c (['binary', $ce[0]{event}], ['structured',
    (grep { $_->{event}{id} eq $e1->{id} } @ce[2, 3])[0]{event}])
{
    my ($mode, $ev) = @$c;
    is($ev->{specversion}, '1.0', "$mode: specversion");
    is($ev->{id}, $env1->{id}, "$mode: id");
    is($ev->{type}, 'ticket.created', "$mode: type");
    is($ev->{source}, 'helpdesk', "$mode: source");
    is($ev->{time}, $env1->{timestamp}, "$mode: time is the timestamp");
    is($ev->{subject}, 'ticket-1', "$mode: subject is resourceId");
    is($ev->{seq}, "$env1->{seq}", "$mode: seq extension");
    is($ev->{tenantid}, 'acme', "$mode: tenantid extension");
    is($ev->{datacontenttype}, 'application/json', "$mode: datacontenttype");
    is_deeply($ev->{data}, $env1, "$mode: data is the envelope");
}

# structured: the content type, and the envelope's own source kept
my ($s2) = grep { $_->{headers}{'webhook-id'} eq $e2->{id} } @s;
like($s2->{headers}{'content-type'}, qr{^application/cloudevents\+json},
    'structured: application/cloudevents+json');
my $d2 = $json->decode($s2->{body});
is($d2->{source}, 'caf%C3%A9%20%22x%22%20100%25',
    'structured: source percent-encoded into a URI-reference');
ok(!exists $d2->{subject}, 'structured: no resourceId, no subject');
ok(!grep({ /^ce-/ } keys %{ $s2->{headers} }), 'structured: no ce-* headers');

# an event without a source: "/events"
my $e3 = $t->post_json('/events', { type => 'ticket.bare' }, %h)->{json};
my ($b3) = grep { $_->{headers}{'webhook-id'} eq $e3->{id} }
    $rcv->wait_requests('/bin', 3, 10);
is($b3->{headers}{'ce-source'}, '/events', 'no source: /events');

# the envelope endpoint is unchanged
is($n[0]{headers}{'content-type'}, 'application/json', 'envelope: json');
ok(!grep({ /^ce-/ } keys %{ $n[0]{headers} }), 'envelope: no ce-* headers');

# bad input: exact errors, nothing changed
my $r = $t->post_json('/webhooks', { url => $rcv->url('/x'), events => ['*'],
    format => 'xml' }, %h);
$t->is_error($r, 400, 'invalid_field', 'format', 'format xml: 400');
like($r->{json}{detail} // $r->{body}, qr/cloudevents-structured/,
    'the error names the formats');
$r = $t->post_json('/webhooks', { url => $rcv->url('/x'), events => ['*'],
    format => 1 }, %h);
$t->is_error($r, 400, 'invalid_field', 'format', 'format 1: 400');
$r = $t->req(PATCH => "/webhooks/$bin->{id}", json => { format => 'CloudEvents' },
    %h);
$t->is_error($r, 400, 'invalid_field', 'format', 'PATCH format CloudEvents: 400');
is($t->get("/webhooks/$bin->{id}", %h)->{json}{format}, 'cloudevents',
    'a refused PATCH changes nothing');
is(scalar @{ $t->get('/webhooks', %h)->{json}{data} }, 3,
    'a refused create creates nothing');

# PATCH to envelope: the next delivery is an envelope
$r = $t->req(PATCH => "/webhooks/$bin->{id}", json => { format => 'envelope' },
    %h);
is($r->{json}{format}, 'envelope', 'PATCH format envelope');
$rcv->reset_log;
my $e4 = $t->post_json('/events', { type => 'ticket.after' }, %h)->{json};
my ($b4) = $rcv->wait_requests('/bin', 1, 10);
ok($b4 && !exists $b4->{headers}{'ce-id'}, 'after PATCH: no ce-* headers');

# SSE: ?format=cloudevents
my $sse = $t->get('/events/stream?format=cloudevents&lastEventId=earliest',
    %h, timeout => 2);
my @lines = $sse->{body} =~ /^id: .*\ndata: (.*)$/mg;
my @data = map { $json->decode($_) } @lines;
ok(@data >= 2, 'sse: events as data') or diag $sse->{body};
is($data[0]{specversion}, '1.0', 'sse: a CloudEvent');
is($data[0]{id}, $e1->{id}, 'sse: its id');
is_deeply($data[0]{data}, $env1, 'sse: data is the envelope');
my @sse_sdk = sdk(map { +{ headers => { 'content-type' =>
    'application/cloudevents+json' }, body => $_ } }
    @lines);
ok(@sse_sdk && !grep({ !$_->{ok} } @sse_sdk), 'sse: the SDK reads each')
    or diag explain \@sse_sdk;
$r = $t->get('/events/stream?format=xml', %h);
$t->is_error($r, 400, 'invalid_parameter', 'format', 'sse format=xml: 400');

$rcv->stop;
$t->done;
