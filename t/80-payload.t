#!/usr/bin/perl

# Free-form payloads: "payload" is any JSON object.  action, data and
# changes keep their meaning and their checks; every other key is kept as
# sent, after those three, and comes back byte for byte from the REST
# API, the stream, a webhook and header capture.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use JSON::PP;
use MIME::Base64 qw(encode_base64url);
use EventsTest;
use EventsTest::SSE;
use EventsTest::Backend;
use EventsTest::Receiver;

my $t = EventsTest->new;
my $rcv = EventsTest::Receiver->new(dir => $t->testdir, name => 'r1');

$t->write_config(<<'EOF2');
%%GLOBALS%%
http {
    %%HTTP_GLOBALS%%

    events_zone main 8m;

    server {
        listen 127.0.0.1:%%PORT%%;

        events_tenant $http_x_tenant;
        events_webhook_allow 127.0.0.1/32;

        location /events { events_api main; }
        location = /events/stream { events_stream main; }
        location /webhooks { events_webhooks main; }

        location /small {
            events_api main;
            events_max_event_size 512;
        }

        location /api/ {
            events_capture header zone=main;
            proxy_pass http://127.0.0.1:%%PORT_2%%;
        }

        location = /_events_webhook {
            internal;
            proxy_pass $events_webhook_url;
            proxy_set_header Host $events_webhook_host;
        }
    }
}
EOF2

my $backend = EventsTest::Backend->start($t, 2);
$t->run;

sub post_raw {
    my ($body, $path) = @_;
    return $t->req(POST => $path // '/events', body => $body,
        headers => { 'Content-Type' => 'application/json' });
}

# the stored payload, as bytes, cut out of an envelope
sub payload_bytes {
    my ($env) = @_;
    return $env =~ /,"payload":(\{.*\}),"metadata":/ ? $1 : undef;
}

my $ep = $t->post_json('/webhooks', { url => $rcv->url('/hook'),
    events => ['custom.*'] });
is($ep->{status}, 201, 'a webhook endpoint') or diag $ep->{body};

my $s = EventsTest::SSE->open($t, '/events/stream?types=custom.*');
is($s->status, 200, 'a stream');

###########################################################################
# cPod's own example, and keys of every JSON type

my $r = post_raw('{"type":"custom.report.generated",'
    . '"payload":{"format":"csv","rows":1200}}');
is($r->{status}, 201, 'cPod\'s custom event is stored') or diag $r->{body};
my $want = '{"action":"occurred","data":null,"changes":null,'
    . '"format":"csv","rows":1200}';
is(payload_bytes($r->{body}), $want,
    'the free keys kept as sent, after action, data and changes');
my $id = $r->{json}{id};

my $free = '{"action":"updated","data":{"status":"paid"},'
    . '"changes":{"status":"pending"},"zeta":[1,2.5,-0.0,"x",true,null],'
    . '"alpha":{"nested":{"deep":"caf\u00e9 \"q\""}},"n":12345678901234,'
    . '"e":1.0e-7,"s":"\\\\ \\/"}';
my $r2 = post_raw('{"type":"custom.order.updated","payload":' . $free . '}');
is($r2->{status}, 201, 'every JSON type in free keys') or diag $r2->{body};
my $back = payload_bytes($r2->{body});
is($back, '{"action":"updated","data":{"status":"paid"},'
    . '"changes":{"status":"pending"},"zeta":[1,2.5,-0.0,"x",true,null],'
    . "\"alpha\":{\"nested\":{\"deep\":\"caf\xc3\xa9 \\\"q\\\"\"}},"
    . '"n":12345678901234,"e":1e-07,"s":"\\\\ /"}',
    'the keys in the order sent, values written as the envelope writes'
    . ' data');
is_deeply(decode_json($r2->{body})->{payload},
    decode_json('{"action":"updated","data":{"status":"paid"},'
        . '"changes":{"status":"pending"},"zeta":[1,2.5,-0.0,"x",true,null],'
        . '"alpha":{"nested":{"deep":"caf\u00e9 \"q\""}},'
        . '"n":12345678901234,"e":1.0e-7,"s":"\\\\ /"}'),
    'the same values');

# REST reads give the stored bytes
my $get = $t->get("/events/$id");
is($get->{body}, $r->{body}, 'GET /events/{id}: the same bytes');
my $list = $t->get('/events?types=custom.*');
is(payload_bytes($list->{body} =~ /^\{"data":\[(\{.*?"metadata":null\})/
    ? $1 : ''), $want, 'the list: the same payload');

# the stream gives the stored bytes
my @e = map { $s->next_event(timeout => 5) } 1 .. 2;
utf8::encode($_->{data}) for @e;       # the parser gives characters
is($e[0]{data}, $r->{body}, 'SSE: the stored envelope, byte for byte');
is($e[1]{data}, $r2->{body}, 'SSE: the second one too');

# a webhook gets the stored bytes
# two deliveries may run at once: their order at the receiver is not seq's
my @req = sort { ($a->{body} =~ /"seq":(\d+)/)[0] <=> ($b->{body} =~ /"seq":(\d+)/)[0] }
          $rcv->wait_requests('/hook', 2, 10);
is($req[0]{body}, $r->{body}, 'webhook: the stored envelope');
is($req[1]{body}, $r2->{body}, 'webhook: the second one');

# idempotency covers the free keys
my $once = '{"id":"rep-1","type":"custom.x","payload":{"a":1,"b":2}}';
is(post_raw($once)->{status}, 201, 'a client id');
is(post_raw('{"id":"rep-1","type":"custom.x","payload":{"b":2,"a":1}}')
    ->{status}, 200, 'the same keys in another order: a repeat');
$t->is_error(post_raw('{"id":"rep-1","type":"custom.x",'
    . '"payload":{"a":1,"b":3}}'), 409, 'conflict', undef,
    'another free value: 409');

# the action still comes from the type when the payload does not say
$r = post_raw('{"type":"custom.thing.deleted","payload":{"reason":"spam"}}');
is($r->{json}{payload}{action}, 'deleted', 'action from the type');
is($r->{json}{payload}{reason}, 'spam', 'beside a free key');

###########################################################################
# header capture keeps them too

my $emit = '{"type":"custom.captured","payload":{"format":"pdf",'
    . '"pages":[1,2]}}';
$r = $t->get('/api/x', headers => { 'X-Emit' => encode_base64url($emit),
    'X-Body' => 'ok' });
is($r->{status}, 200, 'captured answer');
my ($cap) = grep { $_->{type} eq 'custom.captured' }
    @{ $t->get('/events?types=custom.captured')->{json}{data} };
is_deeply($cap->{payload}, { action => 'occurred', data => undef,
    changes => undef, format => 'pdf', pages => [1, 2] },
    'capture: free keys kept');

###########################################################################
# the checks that stay, with their exact answers

sub error_body {
    my ($r) = @_;
    return $r->{status} . ' ' . $r->{body};
}

is(error_body(post_raw('{"type":"a.b","payload":{"format":"csv",'
    . '"action":"archived"}}')),
    '400 {"error":{"status":400,"code":"invalid_field",'
    . '"message":"\"payload.action\" must be one of created, updated, '
    . 'deleted, occurred","field":"payload.action"}}',
    'a bad action beside free keys: 400');
is(error_body(post_raw('{"type":"a.created","payload":{"rows":1,'
    . '"changes":{"x":1}}}')),
    '400 {"error":{"status":400,"code":"invalid_field",'
    . '"message":"\"payload.changes\" is only valid with action '
    . '\"updated\"","field":"payload.changes"}}',
    'changes without updated: 400');
is(error_body(post_raw('{"type":"a.b","payload":["format"]}')),
    '400 {"error":{"status":400,"code":"invalid_field",'
    . '"message":"\"payload\" must be an object","field":"payload"}}',
    'a payload that is not an object: 400');
is(error_body(post_raw('{"type":"a.b","payload":{"a":1,"a":2}}')),
    '400 {"error":{"status":400,"code":"invalid_json",'
    . '"message":"malformed JSON at line 1, column 34: duplicate object '
    . 'key \"a\""}}',
    'a duplicate free key: 400');
is(error_body(post_raw('{"type":"a.b","payloads":{}}')),
    '400 {"error":{"status":400,"code":"unknown_field",'
    . '"message":"unknown field \"payloads\"; custom data belongs in '
    . 'payload.data or metadata","field":"payloads"}}',
    'unknown top-level fields are still refused');
is(post_raw('{"type":"a.b","payload":{"big":"' . ('x' x 600) . '"}}',
    '/small')->{status}, 413, 'free keys count in events_max_event_size');
like(post_raw('{"type":"a.b","payload":{"big":"' . ('x' x 600) . '"}}',
    '/small')->{body}, qr/"code":"payload_too_large"/, '413 body');

###########################################################################
# The envelope's values are written once and measured (0.15.0): the same
# bytes as before, escapes included, and the same events_max_event_size
# boundary, to the byte, for each part of the envelope

# JSON as the module writes it: the short escapes, \u00xx for the other
# control characters, everything else (UTF-8, DEL) as it is
sub esc_out {
    my ($v) = @_;
    $v =~ s/(["\\])/\\$1/g;
    $v =~ s/\n/\\n/g;
    $v =~ s/\r/\\r/g;
    $v =~ s/\t/\\t/g;
    $v =~ s/\x08/\\b/g;
    $v =~ s/\x0c/\\f/g;
    $v =~ s/([\x00-\x1f])/sprintf('\\u%04x', ord $1)/ge;
    return '"' . $v . '"';
}

# and as a client may send it: every control character as \u00XX
sub esc_in {
    my ($v) = @_;
    $v =~ s/(["\\])/\\$1/g;
    $v =~ s/([\x00-\x1f])/sprintf('\\u%04X', ord $1)/ge;
    return '"' . $v . '"';
}

# a byte to escape at each offset of strings of 1 to 17 bytes (the
# writer tests eight bytes at a time), each kind of such byte, and
# strings past 1024 bytes with them at the ends of words
my @specials = ('"', '\\', "\n", "\x01", "\x1f", "\x08", "\x0c", "\r",
    "\t");
my @strings;
for my $len (1 .. 17) {
    for my $at (0 .. $len - 1) {
        my $sp = $specials[($len + $at) % @specials];
        push @strings, ('a' x $at) . $sp . ('b' x ($len - $at - 1));
    }
}
push @strings, ('x' x 1031) . "\"\x01" . ('y' x 7) . "\\",
    ("\x7f" x 1030) . "caf\xc3\xa9\t", "\x1e" x 1100,
    "caf\xc3\xa9 \x7f \xe2\x82\xac \xf0\x9f\x98\x80";

my $data_in = '[' . join(',', map { esc_in($_) } @strings) . ']';
my $data_out = '[' . join(',', map { esc_out($_) } @strings) . ']';
my $key = "k\"\\\n\x01\xc3\xa9";

$r = post_raw('{"type":"esc.test","payload":{"data":' . $data_in . ','
    . esc_in($key) . ':' . esc_in("v\x02\"") . '},"metadata":{'
    . esc_in($key) . ':' . esc_in("m\\\x1f") . '}}');
is($r->{status}, 201, 'strings with escapes everywhere: 201')
    or diag $r->{body};
is(payload_bytes($r->{body}), '{"action":"occurred","data":' . $data_out
    . ',"changes":null,' . esc_out($key) . ':' . esc_out("v\x02\"") . '}',
    'the payload as written, escape for escape');
my $meta_out = esc_out($key) . ':' . esc_out("m\\\x1f");
like($r->{body}, qr/,"metadata":\{\Q$meta_out\E\}\}\z/,
    'the metadata as written');

# the largest N of a body made of N that /small (512 bytes) takes
sub largest {
    my ($mk) = @_;
    my ($lo, $hi) = (0, 600);

    return -1 if post_raw($mk->(0), '/small')->{status} != 201;

    while ($lo < $hi) {
        my $mid = int(($lo + $hi + 1) / 2);
        my $st = post_raw($mk->($mid), '/small')->{status};
        if ($st == 201) {
            $lo = $mid;
        } elsif ($st == 413) {
            $hi = $mid - 1;
        } else {
            return "status $st at $mid";
        }
    }

    return $lo;
}

my %limits = (
    'data' => [ 212, sub { '{"type":"a.b","payload":{"data":"'
        . ('x' x $_[0]) . '"}}' } ],
    'data escaped' => [ 35, sub { '{"type":"a.b","payload":{"data":"'
        . ('\u0001' x $_[0]) . '"}}' } ],
    'data numbers' => [ 53, sub { '{"type":"a.b","payload":{"data":['
        . join(',', ('1.5e0') x $_[0]) . ']}}' } ],
    'a free key' => [ 197, sub { '{"type":"a.b","payload":{"k\u0002":"'
        . ('x' x $_[0]) . '"}}' } ],
    'changes' => [ 201, sub { '{"type":"a.updated","payload":{"changes":'
        . '{"c":"' . ('x' x $_[0]) . '"}}}' } ],
    'metadata' => [ 206, sub { '{"type":"a.b","metadata":{"m":"'
        . ('x' x $_[0]) . '"}}' } ],
    'all four' => [ 48, sub { my $x = 'x' x $_[0]; '{"type":"a.updated",'
        . '"payload":{"data":"' . $x . '","changes":{"c":"' . $x . '"},'
        . '"f":"' . $x . '"},"metadata":{"m":"' . $x . '"}}' } ],
    'a batch item' => [ 212, sub { '[{"type":"a.b"},{"type":"a.b",'
        . '"payload":{"data":"' . ('x' x $_[0]) . '"}}]' } ],
);

for my $name (sort keys %limits) {
    my ($want, $mk) = @{ $limits{$name} };
    is(largest($mk), $want, "events_max_event_size 512, $name: the "
        . "largest taken is as before");
}

$s->close if $s->can('close');
$rcv->stop;
$backend->stop;
$t->done;
