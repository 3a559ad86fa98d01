#!/usr/bin/perl

# events_inbound: third-party webhooks in, verified the way each sender
# signs them (GitHub X-Hub-Signature-256, Stripe Stripe-Signature with
# its timestamp tolerance, Standard Webhooks, a generic HMAC header),
# stored as events with the sender's delivery id, so that a redelivery
# is a repeat.  Bad or stale signatures: 401, nothing stored.  The
# signatures are made here as the senders document them: Perl's
# Digest::SHA, and openssl dgst for one of them.  A rotation: several
# secret= on a line, any may match, $events_inbound_secret says which.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use JSON::PP;
use Digest::SHA qw(hmac_sha256_hex hmac_sha256_base64);
use MIME::Base64 qw(decode_base64 encode_base64);
use EventsTest;
use EventsTest::Webhook qw(sign);

my $t = EventsTest->new;

$t->write_config(<<'EOF2');
%%GLOBALS%%
http {
    %%HTTP_GLOBALS%%

    events_zone main 8m;

    server {
        listen 127.0.0.1:%%PORT%%;
        events_tenant $http_x_tenant;
        client_body_buffer_size 1k;

        location /events { events_api main; }

        location = /in/github {
            events_tenant acme;
            events_inbound main github secret=gh-s3cret;
        }

        location = /in/github-docs {
            events_inbound main github "secret=It's a Secret to Everybody";
        }

        location = /in/small {
            events_max_event_size 1k;
            events_inbound main github secret=gh-s3cret;
        }

        location = /in/stripe {
            events_tenant shop;
            events_inbound main stripe secret=whsec_stripe_test_123;
        }

        location = /in/standard {
            events_inbound main standard
                secret=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw;
        }

        location = /in/shop {
            events_source shopify;
            events_inbound main hmac secret=plain-key header=X-Shop-Hmac
                type=shop.order.paid id=$http_x_shop_delivery
                tolerance=1m;
        }

        # rotations: the old secret first, the new beside it

        location = /rot/github {
            events_tenant rot;
            add_header X-Secret $events_inbound_secret always;
            events_inbound main github secret=gh-old secret=gh-new;
        }

        location = /rot/stripe {
            events_tenant rot;
            add_header X-Secret $events_inbound_secret always;
            events_inbound main stripe secret=whsec_old secret=whsec_new;
        }

        location = /rot/standard {
            events_tenant rot;
            add_header X-Secret $events_inbound_secret always;
            events_inbound main standard
                secret=whsec_b2xkLW9sZC1vbGQtb2xkLW9sZA==
                secret=whsec_bmV3LW5ldy1uZXctbmV3LW5ldw==;
        }

        location = /rot/hmac {
            events_tenant rot;
            add_header X-Secret $events_inbound_secret always;
            events_inbound main hmac secret=k1 secret=k2 secret=k3
                secret=k4 type=rot.hmac id=$http_x_delivery;
        }

        location = /rot/file {
            events_tenant rot;
            add_header X-Secret $events_inbound_secret always;
            events_inbound main github secret_file=old.secret
                secret_file=%%TESTDIR%%/new.secret;
        }
    }
}
EOF2

$t->write_file('old.secret', "gh-old\n");
$t->write_file('new.secret', "gh-new");
$t->run;

my $JSON = JSON::PP->new->canonical->allow_nonref;

sub count {
    my ($tenant) = @_;
    my $r = $t->get('/events?limit=1000',
        headers => { $tenant ? ('X-Tenant' => $tenant) : () });
    return scalar @{ $r->{json}{data} };
}

sub in {
    my ($path, $body, %h) = @_;
    return $t->req(POST => $path, body => $body,
        headers => { 'Content-Type' => 'application/json', %h });
}

# the error envelope, keys in the module's order
sub error_body {
    my ($status, $code, $message) = @_;
    return "$status {\"error\":{\"status\":$status,\"code\":\"$code\","
        . '"message":' . $JSON->encode($message) . '}}';
}

sub error_is {
    my ($r, $status, $code, $message, $name) = @_;
    is($r->{status} . ' ' . $r->{body}, error_body($status, $code, $message),
        $name);
}

###########################################################################
# GitHub: X-Hub-Signature-256 = sha256=HMAC-SHA256 hex of the body

my $gh = '{"action":"opened","number":7,"changes":{"title":{"from":"x"}},'
    . '"pull_request":{"title":"Fix the printer"}}';
my $delivery = '72d3162e-cc78-11e3-81ab-4c9367dc0958';
my %gh = ('X-GitHub-Event' => 'pull_request',
    'X-GitHub-Delivery' => $delivery,
    'X-Hub-Signature-256' => 'sha256=' . hmac_sha256_hex($gh, 'gh-s3cret'));

my $r = in('/in/github', $gh, %gh);
is($r->{status}, 201, 'github: a good delivery is stored') or diag $r->{body};
my $ev = $r->{json};
is($ev->{type}, 'github.pull_request', 'github: type from X-GitHub-Event');
is($ev->{id}, $delivery, 'github: id from X-GitHub-Delivery');
is($ev->{tenantId}, 'acme', 'github: the location\'s events_tenant');
is($ev->{source}, 'github', 'github: source');
is_deeply($ev->{metadata}, { inbound => 'github' }, 'github: metadata');
is($JSON->encode($ev->{payload}{data}), $JSON->encode(decode_json($gh)),
    'github: the body is payload.data, its own action and changes kept');
is($ev->{payload}{action}, 'occurred', 'github: our action');
ok(!exists $r->{headers}{location}, 'no Location: not a collection');

my $again = in('/in/github', $gh, %gh);
is($again->{status}, 200, 'github: a redelivery is a repeat (200)');
is($again->{body}, $r->{body}, 'github: with the stored event');
is(count('acme'), 1, 'github: one event stored');

my $stored = $t->get("/events/$delivery", headers => { 'X-Tenant' => 'acme' });
is($stored->{body}, $r->{body}, 'github: readable in the tenant\'s log');

# GitHub's documented vector: "Hello, World!" with "It's a Secret to
# Everybody" signs as 757107ea...; verified, then refused as not JSON
$r = in('/in/github-docs', 'Hello, World!', 'X-GitHub-Event' => 'ping',
    'X-Hub-Signature-256' => 'sha256=757107ea0eb2509fc211221cce984b8a'
        . '37570b6d7586c22c46f4379c8b043e17');
error_is($r, 400, 'invalid_json', 'malformed JSON at line 1, column 5: '
    . "invalid token near 'Hello'",
    'github: the documented vector verifies; the body is not JSON');
is(hmac_sha256_hex('Hello, World!', "It's a Secret to Everybody"),
    '757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17',
    'the documented vector, in Perl');

my $before = count('acme');

error_is(in('/in/github', $gh, %gh, 'X-Hub-Signature-256' => 'sha256='
    . hmac_sha256_hex($gh . ' ', 'gh-s3cret')), 401, 'invalid_signature',
    'the signature does not match the body', 'github: a bad signature');
error_is(in('/in/github', $gh, %gh, 'X-Hub-Signature-256' => 'sha256='
    . hmac_sha256_hex($gh, 'other')), 401, 'invalid_signature',
    'the signature does not match the body', 'github: another secret');
error_is(in('/in/github', $gh, %gh, 'X-Hub-Signature-256' =>
    hmac_sha256_hex($gh, 'gh-s3cret')), 401, 'invalid_signature',
    'the signature does not match the body', 'github: no sha256= prefix');
my %nosig = %gh;
delete $nosig{'X-Hub-Signature-256'};
error_is(in('/in/github', $gh, %nosig), 401, 'invalid_signature',
    'the X-Hub-Signature-256 header is missing', 'github: no signature');
my %noev = %gh;
delete $noev{'X-GitHub-Event'};
error_is(in('/in/github', $gh, %noev), 400, 'invalid_body',
    'the sender did not name the event\'s type (X-GitHub-Event); set '
    . 'type= in events_inbound', 'github: no event header');
my $bad = '{"zen":"x"}';
error_is(in('/in/github', $bad, %gh, 'X-GitHub-Event' => 'Bad-Event',
    'X-Hub-Signature-256' => 'sha256=' . hmac_sha256_hex($bad, 'gh-s3cret')),
    400, 'invalid_type', 'the event\'s type "github.Bad-Event" is not a '
    . 'type: dot-separated segments of [a-z0-9_], 1-128 characters',
    'github: an event name that is not a type segment');
error_is(in('/in/github', '[1,2]', %gh, 'X-Hub-Signature-256' => 'sha256='
    . hmac_sha256_hex('[1,2]', 'gh-s3cret')), 400, 'invalid_body',
    'the body must be a JSON object', 'github: not an object');
error_is($t->req(POST => '/in/github', body => "payload=$gh", headers => {
    'Content-Type' => 'application/x-www-form-urlencoded', %gh }), 415,
    'unsupported_media_type', 'inbound webhooks take JSON bodies: set the '
    . 'sender\'s content type to application/json',
    'github: a form-encoded delivery');
my $big = '{"pad":"' . ('x' x 1100) . '"}';
error_is(in('/in/small', $big, %gh, 'X-Hub-Signature-256' => 'sha256='
    . hmac_sha256_hex($big, 'gh-s3cret')), 413, 'payload_too_large',
    'the body may be at most 1024 bytes', 'github: larger than '
    . 'events_max_event_size');
$r = $t->req(GET => '/in/github');
is($r->{status}, 405, 'GET: 405');
is($r->{headers}{allow}, 'POST', 'Allow: POST');
is(count('acme'), $before, 'nothing stored by any of these');

# a body in a temp file (larger than client_body_buffer_size)
my $mid = '{"pad":"' . ('y' x 3000) . '"}';
$r = in('/in/github', $mid, 'X-GitHub-Event' => 'push',
    'X-GitHub-Delivery' => 'd-file',
    'X-Hub-Signature-256' => 'sha256=' . hmac_sha256_hex($mid, 'gh-s3cret'));
is($r->{status}, 201, 'github: a body nginx kept in a temp file')
    or diag $r->{body};

###########################################################################
# Stripe: Stripe-Signature: t=TS,v1=hex HMAC-SHA256 of "TS.body", with
# the whole secret (whsec_ included) as the key; made with openssl here

sub openssl_hmac_hex {
    my ($key, $data) = @_;
    my $f = $t->write_file('stripe-payload', $data);
    my $out = `openssl dgst -sha256 -hmac '$key' -r '$f'`;
    die "openssl: $?" if $?;
    return (split ' ', $out)[0];
}

my $st = '{"id":"evt_1NsX","object":"event","type":"payment_intent.'
    . 'succeeded","data":{"object":{"id":"pi_1","amount":2000}}}';
my $now = time;
my $v1 = openssl_hmac_hex('whsec_stripe_test_123', "$now.$st");
is($v1, hmac_sha256_hex("$now.$st", 'whsec_stripe_test_123'),
    'stripe: openssl and Digest::SHA agree');

$r = in('/in/stripe', $st, 'Stripe-Signature' => "t=$now,v1=$v1,v0=abc");
is($r->{status}, 201, 'stripe: a good event') or diag $r->{body};
is($r->{json}{type}, 'stripe.payment_intent.succeeded',
    'stripe: type from the body');
is($r->{json}{id}, 'evt_1NsX', 'stripe: the event id');
is($r->{json}{tenantId}, 'shop', 'stripe: tenant');

my $later = $now + 2;
$r = in('/in/stripe', $st, 'Stripe-Signature' => "t=$later,v1="
    . ('0' x 64) . ',v1=' . hmac_sha256_hex("$later.$st",
        'whsec_stripe_test_123'));
is($r->{status}, 200, 'stripe: a retry, signed anew, one of two v1 good:'
    . ' a repeat');

$before = count('shop');
my $old = time - 3600;
$r = in('/in/stripe', $st, 'Stripe-Signature' => "t=$old,v1="
    . hmac_sha256_hex("$old.$st", 'whsec_stripe_test_123'));
my $age = time - $old;
ok(grep({ $r->{status} . ' ' . $r->{body} eq error_body(401,
    'invalid_signature', "the signature's timestamp is $_ s away from "
        . "now; at most 300 s are allowed") } ($age - 1, $age)),
    'stripe: a stale signature (an hour old): 401') or diag $r->{body};
my $future = time + 3600;
$r = in('/in/stripe', $st, 'Stripe-Signature' => "t=$future,v1="
    . hmac_sha256_hex("$future.$st", 'whsec_stripe_test_123'));
is($r->{status}, 401, 'stripe: an hour ahead: 401');
error_is(in('/in/stripe', $st, 'Stripe-Signature' => "t=$now,v1="
    . hmac_sha256_hex("$now.$st", 'whsec_other')), 401,
    'invalid_signature', 'the signature does not match the body',
    'stripe: another secret');
error_is(in('/in/stripe', $st, 'Stripe-Signature' => "v1=$v1"), 401,
    'invalid_signature', 'the Stripe-Signature header has no timestamp (t=)',
    'stripe: no timestamp');
error_is(in('/in/stripe', $st, 'Stripe-Signature' => "t=$now,v0=$v1"), 401,
    'invalid_signature', 'the Stripe-Signature header has no v1= signature',
    'stripe: no v1');
error_is(in('/in/stripe', $st, 'Stripe-Signature' => "t=abc,v1=$v1"), 401,
    'invalid_signature', 'the signature\'s timestamp is not a number of '
    . 'seconds', 'stripe: a timestamp that is not a number');
error_is(in('/in/stripe', $st), 401, 'invalid_signature',
    'the Stripe-Signature header is missing', 'stripe: no header');
is(count('shop'), $before, 'stripe: nothing stored by these');

###########################################################################
# Standard Webhooks: webhook-id, webhook-timestamp, webhook-signature
# v1,base64 HMAC-SHA256 of "id.timestamp.body" with the secret's bytes

my $sw_secret = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
my $sw = '{"type":"invoice.paid","timestamp":"2026-12-03T08:00:00Z",'
    . '"data":{"invoice":"in_1"}}';
$now = time;
my %sw = ('webhook-id' => 'msg_2KWPBgLlAfxdpx2AI54pPJ85f4W',
    'webhook-timestamp' => $now,
    'webhook-signature' => sign($sw_secret, 'msg_2KWPBgLlAfxdpx2AI54pPJ85f4W',
        $now, $sw));
like($sw{'webhook-signature'}, qr/^v1,[A-Za-z0-9+\/]{43}=$/,
    'standard: a v1 signature');
is($sw{'webhook-signature'}, 'v1,' . hmac_sha256_base64(
    "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W.$now.$sw",
    decode_base64('MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw')) . '=',
    'standard: as the spec computes it');

$r = in('/in/standard', $sw, %sw);
is($r->{status}, 201, 'standard: stored') or diag $r->{body};
is($r->{json}{type}, 'webhook.invoice.paid', 'standard: type');
is($r->{json}{id}, 'msg_2KWPBgLlAfxdpx2AI54pPJ85f4W', 'standard: webhook-id');
is($r->{json}{tenantId}, undef, 'standard: the default tenant');

# a replay: same message, signed again later, two signatures (rotation)
my $ts2 = $now + 1;
$r = in('/in/standard', $sw, %sw, 'webhook-timestamp' => $ts2,
    'webhook-signature' => 'v1,' . encode_base64('x' x 32, '') . ' '
        . sign($sw_secret, $sw{'webhook-id'}, $ts2, $sw));
is($r->{status}, 200, 'standard: a replayed message is a repeat');

$before = count();
error_is(in('/in/standard', $sw, %sw, 'webhook-id' => 'msg_other'), 401,
    'invalid_signature', 'the signature does not match the body',
    'standard: the id is signed');
my $stale = time - 600;
$r = in('/in/standard', $sw, %sw, 'webhook-timestamp' => $stale,
    'webhook-signature' => sign($sw_secret, $sw{'webhook-id'}, $stale, $sw));
is($r->{status}, 401, 'standard: a stale timestamp');
like($r->{body}, qr/"message":"the signature's timestamp is 60[01] s away/,
    'standard: says how far');
my %nots = %sw;
delete $nots{'webhook-timestamp'};
error_is(in('/in/standard', $sw, %nots), 401, 'invalid_signature',
    'the webhook-timestamp header is missing', 'standard: no timestamp');
is(count(), $before, 'standard: nothing stored by these');

###########################################################################
# Generic HMAC: a named header, hex (sha256= optional) or base64; the
# type and id from the configuration

my $shop = '{"order":"o-9","total":"12.50"}';
$r = in('/in/shop', $shop, 'X-Shop-Delivery' => 'sh-1',
    'X-Shop-Hmac' => hmac_sha256_base64($shop, 'plain-key') . '=');
is($r->{status}, 201, 'hmac: base64') or diag $r->{body};
is($r->{json}{type}, 'shop.order.paid', 'hmac: type=');
is($r->{json}{id}, 'sh-1', 'hmac: id= from a variable');
is($r->{json}{source}, 'shopify', 'hmac: events_source wins');
$r = in('/in/shop', $shop, 'X-Shop-Delivery' => 'sh-1',
    'X-Shop-Hmac' => 'sha256=' . uc hmac_sha256_hex($shop, 'plain-key'));
is($r->{status}, 200, 'hmac: hex (any case, sha256=): the same delivery');
$r = in('/in/shop', $shop,
    'X-Shop-Hmac' => hmac_sha256_hex($shop, 'plain-key'));
is($r->{status}, 201, 'hmac: without a delivery id: a new event');
like($r->{json}{id}, qr/^evt_/, 'hmac: a server id');
error_is(in('/in/shop', $shop, 'X-Shop-Hmac' => 'nope'), 401,
    'invalid_signature', 'the signature does not match the body',
    'hmac: bad');
error_is(in('/in/shop', $shop), 401, 'invalid_signature',
    'the X-Shop-Hmac header is missing', 'hmac: missing');
error_is(in('/in/shop', $shop, 'X-Shop-Delivery' => 'bad id!',
    'X-Shop-Hmac' => hmac_sha256_hex($shop, 'plain-key')), 400, 'invalid_id',
    'the sender\'s delivery id "bad id!" is not an event id: 1-128 '
    . 'characters of [A-Za-z0-9_:-]', 'hmac: an id that is not an event id');

###########################################################################
# Rotation: during a change of secret either is accepted, the event is
# the same whichever matched, and $events_inbound_secret (here in the
# X-Secret header) lists the secrets that matched, by position

sub same_event {
    my ($a, $b, $name) = @_;
    my %a = %$a;
    my %b = %$b;
    delete @a{qw(id seq timestamp)};
    delete @b{qw(id seq timestamp)};
    is($JSON->encode(\%b), $JSON->encode(\%a), $name);
}

my $unknown_401 = error_body(401, 'invalid_signature',
    'the signature does not match the body');

# GitHub switches at once: either secret, one signature

my %rg = ('X-GitHub-Event' => 'push');
my $rb = '{"ref":"refs/heads/main"}';
my $rsig = sub { 'sha256=' . hmac_sha256_hex($rb, $_[0]) };

$r = in('/rot/github', $rb, %rg, 'X-GitHub-Delivery' => 'rot-gh-1',
    'X-Hub-Signature-256' => $rsig->('gh-old'));
is($r->{status}, 201, 'rotation, github: the old secret') or diag $r->{body};
is($r->{headers}{'x-secret'}, '1', 'rotation, github: secret 1 matched');
my $rold = $r;

$r = in('/rot/github', $rb, %rg, 'X-GitHub-Delivery' => 'rot-gh-2',
    'X-Hub-Signature-256' => $rsig->('gh-new'));
is($r->{status}, 201, 'rotation, github: the new secret') or diag $r->{body};
is($r->{headers}{'x-secret'}, '2', 'rotation, github: secret 2 matched');
same_event($rold->{json}, $r->{json},
    'rotation, github: the same event whichever secret matched');

$r = in('/rot/github', $rb, %rg, 'X-GitHub-Delivery' => 'rot-gh-1',
    'X-Hub-Signature-256' => $rsig->('gh-new'));
is($r->{status} . ' ' . $r->{body}, '200 ' . $rold->{body},
    'rotation, github: a redelivery signed with the new: the stored event');

$before = count('rot');
$r = in('/rot/github', $rb, %rg, 'X-GitHub-Delivery' => 'rot-gh-3',
    'X-Hub-Signature-256' => $rsig->('gh-third'));
is($r->{status} . ' ' . $r->{body}, $unknown_401,
    'rotation, github: a third secret: 401');
ok(!exists $r->{headers}{'x-secret'}, 'rotation, github: none matched');
is(count('rot'), $before, 'rotation, github: nothing stored');

# Stripe rolls: both signatures for a while, then the new one

my $rs = '{"id":"evt_rot_1","object":"event","type":"charge.succeeded"}';
my $rt = time;
my $sv1 = sub { 'v1=' . hmac_sha256_hex("$rt.$rs", $_[0]) };

$r = in('/rot/stripe', $rs, 'Stripe-Signature' => "t=$rt,"
    . $sv1->('whsec_old'));
is($r->{status}, 201, 'rotation, stripe: the old secret') or diag $r->{body};
is($r->{headers}{'x-secret'}, '1', 'rotation, stripe: secret 1 matched');
$rold = $r;

$r = in('/rot/stripe', $rs, 'Stripe-Signature' => "t=$rt,"
    . $sv1->('whsec_new'));
is($r->{status} . ' ' . $r->{body}, '200 ' . $rold->{body},
    'rotation, stripe: the new secret: the same event');
is($r->{headers}{'x-secret'}, '2', 'rotation, stripe: secret 2 matched');

$r = in('/rot/stripe', $rs, 'Stripe-Signature' => "t=$rt,"
    . $sv1->('whsec_old') . ',' . $sv1->('whsec_new'));
is($r->{status}, 200, 'rotation, stripe: signed with both (a roll)');
is($r->{headers}{'x-secret'}, '1,2', 'rotation, stripe: both matched');

$r = in('/rot/stripe', $rs, 'Stripe-Signature' => "t=$rt,"
    . $sv1->('whsec_third') . ',' . $sv1->('whsec_new'));
is($r->{status}, 200, 'rotation, stripe: only the second v1 matches');
is($r->{headers}{'x-secret'}, '2', 'rotation, stripe: with secret 2');

$r = in('/rot/stripe', $rs, 'Stripe-Signature' => "t=$rt,"
    . $sv1->('whsec_third') . ',' . $sv1->('whsec_fourth'));
is($r->{status} . ' ' . $r->{body}, $unknown_401,
    'rotation, stripe: two v1 under unknown secrets: 401');
ok(!exists $r->{headers}{'x-secret'}, 'rotation, stripe: none matched');

# Standard Webhooks: several v1, signatures, space-separated

my @sws = ('whsec_b2xkLW9sZC1vbGQtb2xkLW9sZA==',
    'whsec_bmV3LW5ldy1uZXctbmV3LW5ldw==');
my $third = 'whsec_dGhpcmQtdGhpcmQtdGhpcmQ=';
my $rw = '{"type":"invoice.paid","data":{"n":1}}';
$rt = time;
my $swh = sub {
    my ($id, @secrets) = @_;
    return ('webhook-id' => $id, 'webhook-timestamp' => $rt,
        'webhook-signature' => join(' ', map { sign($_, $id, $rt, $rw) }
            @secrets));
};

$r = in('/rot/standard', $rw, $swh->('msg_rot_1', $sws[0]));
is($r->{status}, 201, 'rotation, standard: the old secret')
    or diag $r->{body};
is($r->{headers}{'x-secret'}, '1', 'rotation, standard: secret 1 matched');
$rold = $r;

$r = in('/rot/standard', $rw, $swh->('msg_rot_2', $sws[1]));
is($r->{status}, 201, 'rotation, standard: the new secret')
    or diag $r->{body};
is($r->{headers}{'x-secret'}, '2', 'rotation, standard: secret 2 matched');
same_event($rold->{json}, $r->{json},
    'rotation, standard: the same event whichever secret matched');

$r = in('/rot/standard', $rw, $swh->('msg_rot_1', $third, $sws[1]));
is($r->{status} . ' ' . $r->{body}, '200 ' . $rold->{body},
    'rotation, standard: only the second signature matches: a repeat');
is($r->{headers}{'x-secret'}, '2', 'rotation, standard: with secret 2');

$r = in('/rot/standard', $rw, $swh->('msg_rot_1', @sws));
is($r->{status}, 200, 'rotation, standard: signed with both');
is($r->{headers}{'x-secret'}, '1,2', 'rotation, standard: both matched');

$r = in('/rot/standard', $rw, $swh->('msg_rot_3', $third));
is($r->{status} . ' ' . $r->{body}, $unknown_401,
    'rotation, standard: a third secret: 401');
ok(!exists $r->{headers}{'x-secret'}, 'rotation, standard: none matched');

# plain HMAC, four secrets, hex or base64 under any of them

my $rh = '{"n":1}';
for my $k (1 .. 4) {
    $r = in('/rot/hmac', $rh, 'X-Delivery' => "rot-h-$k",
        'X-Signature' => $k % 2 ? hmac_sha256_hex($rh, "k$k")
            : hmac_sha256_base64($rh, "k$k") . '=');
    is($r->{status}, 201, "rotation, hmac: secret $k of 4")
        or diag $r->{body};
    is($r->{headers}{'x-secret'}, $k, "rotation, hmac: secret $k matched");
}
$r = in('/rot/hmac', $rh, 'X-Delivery' => 'rot-h-5',
    'X-Signature' => hmac_sha256_hex($rh, 'k5'));
is($r->{status} . ' ' . $r->{body}, $unknown_401,
    'rotation, hmac: a fifth secret: 401');
is(count('rot'), $before + 7,
    'rotation: one stripe, two standard, four hmac events more, none twice');

# secret_file=: the secret is the file's line (a final newline is not
# part of it), read again at a reload: the rotation done with files

my $fsig = sub { ('X-GitHub-Event' => 'push', 'X-GitHub-Delivery' => $_[0],
    'X-Hub-Signature-256' => 'sha256=' . hmac_sha256_hex($rb, $_[1])) };

$r = in('/rot/file', $rb, $fsig->('rot-f-1', 'gh-old'));
is($r->{status} . ' ' . ($r->{headers}{'x-secret'} // ''), '201 1',
    'secret_file: the old secret, from a file with a newline');
$r = in('/rot/file', $rb, $fsig->('rot-f-2', 'gh-new'));
is($r->{status} . ' ' . ($r->{headers}{'x-secret'} // ''), '201 2',
    'secret_file: the new secret, from a file without one');
$r = in('/rot/file', $rb, $fsig->('rot-f-3', "gh-old\n"));
is($r->{status} . ' ' . $r->{body}, $unknown_401,
    'secret_file: the newline is not part of the secret');

$t->write_file('old.secret', "gh-newer\r\n");
ok($t->reload, 'secret_file: reload with a file changed');
$r = in('/rot/file', $rb, $fsig->('rot-f-4', 'gh-newer'));
is($r->{status} . ' ' . ($r->{headers}{'x-secret'} // ''), '201 1',
    'secret_file: after the reload, the file\'s new secret');
$r = in('/rot/file', $rb, $fsig->('rot-f-5', 'gh-old'));
is($r->{status} . ' ' . $r->{body}, $unknown_401,
    'secret_file: after the reload, the secret it held before: 401');

###########################################################################
# Counters on the status page: per location, its verified deliveries and
# its 401s by reason; per secret (named by the first 8 hex digits of
# SHA-256 of its text), the deliveries it verified.  Their own nginx, so
# that nothing above is in the counts; two workers, each must count.

my $promtool = '/usr/bin/promtool';
my $s = EventsTest->new;

my $counters_config = sub {
    my ($gh_secrets) = @_;
    return <<"EOF4";
%%GLOBALS%%
http {
    %%HTTP_GLOBALS%%

    events_zone main 1m;

    server {
        listen 127.0.0.1:%%PORT%%;
        events_tenant t1;
        add_header X-Pid \$pid always;

        location = /status { events_status main; }

        location = /hooks/gh {
            events_inbound main github $gh_secrets;
        }

        location = /hooks/stripe {
            events_inbound main stripe secret=whsec_count name=stripe-in;
        }
    }
}
EOF4
};

$s->write_config($counters_config->('secret=gh-old secret=gh-new'));
$s->run;

sub fp { substr(Digest::SHA::sha256_hex($_[0]), 0, 8) }

sub cin {
    my ($path, $body, %h) = @_;
    return $s->req(POST => $path, body => $body,
        headers => { 'Content-Type' => 'application/json', %h });
}

my $cb = '{"zen":"Keep it logically awesome."}';
my $cn = 0;
my $gsig = sub {
    my ($secret, $body) = @_;
    $body //= $cb;
    return ('X-GitHub-Event' => 'ping', 'X-GitHub-Delivery' => 'c-' . ++$cn,
        'X-Hub-Signature-256' => 'sha256=' . hmac_sha256_hex($body, $secret));
};

# deliveries with a secret until both workers took some; how many
my $deliver = sub {
    my ($secret) = @_;
    my (%pids, $n);
    for (1 .. 60) {
        my $r = cin('/hooks/gh', $cb, $gsig->($secret));
        return (0, 0) unless $r->{status} == 201;
        $n++;
        $pids{ $r->{headers}{'x-pid'} } = 1;
        last if keys %pids == 2 && $n >= 3;
    }
    return ($n, scalar keys %pids);
};

my ($n_old, $w_old) = $deliver->('gh-old');
my ($n_new, $w_new) = $deliver->('gh-new');
is("$w_old $w_new", '2 2', 'counters: deliveries with each secret reached '
    . 'both workers');

# verified, then 400 as not JSON: still a verified delivery
$r = cin('/hooks/gh', 'not json', $gsig->('gh-old', 'not json'));
is($r->{status}, 400, 'counters: a verified body that is not JSON: 400');
$n_old++;

error_is(cin('/hooks/gh', $cb, $gsig->('gh-other')), 401,
    'invalid_signature', 'the signature does not match the body',
    'counters: another secret: 401');
error_is(cin('/hooks/gh', $cb . ' ', $gsig->('gh-new')), 401,
    'invalid_signature', 'the signature does not match the body',
    'counters: the new secret, another body: 401');
my %nohdr = $gsig->('gh-new');
delete $nohdr{'X-Hub-Signature-256'};
error_is(cin('/hooks/gh', $cb, %nohdr), 401, 'invalid_signature',
    'the X-Hub-Signature-256 header is missing',
    'counters: no signature: 401');
is(cin('/hooks/gh', $cb, $gsig->('gh-new'), 'Content-Type' => 'text/plain')
    ->{status}, 415, 'counters: not JSON by its type: 415, not counted');

my $cs = '{"id":"evt_c1","type":"charge.succeeded"}';
my $ct = time;
is(cin('/hooks/stripe', $cs, 'Stripe-Signature' => "t=$ct,v1="
    . hmac_sha256_hex("$ct.$cs", 'whsec_count'))->{status}, 201,
    'counters: stripe: a good event');
$ct = time - 3600;
is(cin('/hooks/stripe', $cs, 'Stripe-Signature' => "t=$ct,v1="
    . hmac_sha256_hex("$ct.$cs", 'whsec_count'))->{status}, 401,
    'counters: stripe: a stale one');
is(cin('/hooks/stripe', $cs, 'Stripe-Signature' => "t=abc,v1=00")
    ->{status}, 401, 'counters: stripe: a timestamp not a number');

my $inbound = sub {
    my ($old, $new, $mismatch, $malformed, $extra) = @_;
    my @secrets = ({ position => 1, fingerprint => fp('gh-old'),
                     verified => $old },
                   { position => 2, fingerprint => fp('gh-new'),
                     verified => $new });
    @secrets = @$extra if $extra;
    my $v = 0;
    $v += $_->{verified} for @secrets;
    return [
        { name => '/hooks/gh', sender => 'github', verified => $v,
          rejected => { malformed => $malformed, stale => 0,
                        mismatch => $mismatch },
          secrets => \@secrets },
        { name => 'stripe-in', sender => 'stripe', verified => 1,
          rejected => { malformed => 1, stale => 1, mismatch => 0 },
          secrets => [ { position => 1, fingerprint => fp('whsec_count'),
                         verified => 1 } ] } ];
};

my $st_json = $s->get('/status')->{json};
is_deeply($st_json->{inbound}, $inbound->($n_old, $n_new, 2, 1),
    "counters: JSON: $n_old with the old secret, $n_new with the new, "
    . '2 mismatches, 1 malformed, stripe\'s stale')
    or diag explain $st_json->{inbound};
unlike($s->get('/status')->{body}, qr/gh-old|gh-new|whsec_count/,
    'counters: no secret on the page');

my $prom = $s->get('/status?format=prometheus')->{body};
my ($fo, $fn, $fs) = (fp('gh-old'), fp('gh-new'), fp('whsec_count'));
my $line = sub {
    my ($name, $in, $label, $v) = @_;
    return "$name\{zone=\"main\",inbound=\"$in\"$label\} $v";
};
my @want = (
    $line->('events_inbound_verified_total', '/hooks/gh', '',
        $n_old + $n_new),
    $line->('events_inbound_verified_total', 'stripe-in', '', 1),
    $line->('events_inbound_secret_verified_total', '/hooks/gh',
        ",secret=\"$fo\"", $n_old),
    $line->('events_inbound_secret_verified_total', '/hooks/gh',
        ",secret=\"$fn\"", $n_new),
    $line->('events_inbound_secret_verified_total', 'stripe-in',
        ",secret=\"$fs\"", 1),
    $line->('events_inbound_secret_info', '/hooks/gh',
        ",secret=\"$fo\",position=\"1\"", 1),
    $line->('events_inbound_secret_info', '/hooks/gh',
        ",secret=\"$fn\",position=\"2\"", 1),
    $line->('events_inbound_rejected_total', '/hooks/gh',
        ',reason="mismatch"', 2),
    $line->('events_inbound_rejected_total', '/hooks/gh',
        ',reason="malformed"', 1),
    $line->('events_inbound_rejected_total', '/hooks/gh',
        ',reason="stale"', 0),
    $line->('events_inbound_rejected_total', 'stripe-in',
        ',reason="stale"', 1),
    $line->('events_inbound_rejected_total', 'stripe-in',
        ',reason="malformed"', 1),
    '# TYPE events_inbound_secret_verified_total counter',
    '# TYPE events_inbound_secret_info gauge',
    '# TYPE events_inbound_rejected_total counter');
for my $w (@want) {
    like($prom, qr/^\Q$w\E$/m, "counters: prometheus: $w");
}
is(scalar(() = $prom =~ /^# TYPE events_inbound_verified_total /mg), 1,
    'counters: prometheus: one TYPE for the family of two locations');

SKIP: {
    skip "no $promtool", 1 unless -x $promtool;
    my $f = $s->write_file('metrics.txt', $prom);
    my $out = `$promtool check metrics < '$f' 2>&1`;
    is($? . $out, '0', 'counters: promtool check metrics');
}

ok($s->reload, 'counters: reload, the same secrets');
is_deeply($s->get('/status')->{json}{inbound},
    $inbound->($n_old, $n_new, 2, 1), 'counters: kept across the reload')
    or diag explain $s->get('/status')->{json}{inbound};

# the rotation's end: the old secret out, the new first, a newer beside
$s->write_config($counters_config->('secret=gh-new secret=gh-newer'));
ok($s->reload, 'counters: reload, the old secret removed');
is(cin('/hooks/gh', $cb, $gsig->('gh-old'))->{status}, 401,
    'counters: the old secret: 401 now');
is(cin('/hooks/gh', $cb, $gsig->('gh-newer'))->{status}, 201,
    'counters: the newer secret');
$st_json = $s->get('/status')->{json}{inbound};
my $gh_now = $st_json->[0];
is_deeply($gh_now->{secrets},
    [ { position => 1, fingerprint => fp('gh-new'), verified => $n_new },
      { position => 2, fingerprint => fp('gh-newer'), verified => 1 } ],
    'counters: the new secret keeps its count in its new position; the '
    . 'newer starts at 0; the old one is gone from the page')
    or diag explain $gh_now;
is("$gh_now->{verified} $gh_now->{rejected}{mismatch}",
    ($n_old + $n_new + 1) . ' 3',
    'counters: the location\'s counts go on across the reload');

$s->stop;
unlike($s->error_log . $s->read_file('stderr.log'),
    qr/\[(?:alert|crit|emerg)\]|Sanitizer/,
    'counters: no alert, crit, emerg or sanitizer report');

###########################################################################
# Replays: a generic HMAC signs the body alone, so without a delivery id
# the same body, signed, is remembered for replay= (1h) in the zone; a
# replay gets the first delivery's event id and is answered as its
# repeat: 200 and the stored event, nothing new.  Its own nginx, two
# workers: the ring is in the zone, so either worker knows the other's.

my $p = EventsTest->new;

my $replay_config = sub {
    my ($size) = @_;
    return <<"EOF5";
%%GLOBALS%%
http {
    %%HTTP_GLOBALS%%

    events_zone main 1m;

    server {
        listen 127.0.0.1:%%PORT%%;
        events_tenant t1;
        add_header X-Pid \$pid always;

        location = /status { events_status main; }
        location /events { events_api main; }

        location = /plain {
            events_inbound main hmac secret=pk-old secret=pk-new
                type=plain.hit $size;
        }

        location = /short {
            events_inbound main hmac secret=pk type=short.hit replay=2s;
        }

        location = /off {
            events_inbound main hmac secret=pk type=off.hit replay=off;
        }

        location = /ids {
            events_inbound main hmac secret=pk type=ids.hit
                id=\$http_x_delivery;
        }

        location = /gh {
            events_inbound main github secret=pk;
        }
    }
}
EOF5
};

$p->write_config($replay_config->(''));
$p->run;

sub pin {
    my ($path, $body, %h) = @_;
    return $p->req(POST => $path, body => $body,
        headers => { 'Content-Type' => 'application/json', %h });
}

sub pcount {
    my ($type) = @_;
    my $r = $p->get("/events?types=$type&limit=1000");
    return scalar @{ $r->{json}{data} };
}

my $pb = '{"order":"o-1","total":"9.99"}';
my $psig = sub { ('X-Signature' => hmac_sha256_hex($_[1] // $pb, $_[0])) };

my $first = pin('/plain', $pb, $psig->('pk-old'));
is($first->{status}, 201, 'replay: the first delivery is stored')
    or diag $first->{body};
like($first->{json}{id}, qr/^evt_/, 'replay: a server id');

# the same signed delivery again until both workers answered one
my (%ppids, @pst, $pn);
for (1 .. 40) {
    my $r = pin('/plain', $pb, $psig->('pk-old'));
    push @pst, $r->{status} . ' ' . $r->{body};
    $pn++;
    $ppids{ $r->{headers}{'x-pid'} } = 1;
    last if keys %ppids == 2 && $pn >= 3;
}
is(scalar keys %ppids, 2, 'replay: the replays reached both workers');
is_deeply([ grep { $_ ne "200 $first->{body}" } @pst ], [],
    "replay: each of $pn replays: 200 and the stored event");
is(pcount('plain.hit'), 1, 'replay: one event stored');

# the same body is the same delivery whichever secret signed it, and in
# whichever encoding
$r = pin('/plain', $pb, $psig->('pk-new'));
is($r->{status} . ' ' . $r->{body}, "200 $first->{body}",
    'replay: signed with the other secret: the same delivery');
$r = pin('/plain', $pb, 'X-Signature' => 'sha256='
    . uc hmac_sha256_hex($pb, 'pk-old'));
is($r->{status} . ' ' . $r->{body}, "200 $first->{body}",
    'replay: hex in capitals with sha256=: the same delivery');
$pn += 2;

# another body, validly signed, is another delivery
my $pb2 = '{"order":"o-2","total":"9.99"}';
$r = pin('/plain', $pb2, $psig->('pk-old', $pb2));
is($r->{status}, 201, 'replay: another body: a new event');
isnt($r->{json}{id}, $first->{json}{id}, 'replay: with its own id');
my $second = $r;
is(pcount('plain.hit'), 2, 'replay: two events stored');

# a bad signature is refused before the ring is asked
is(pin('/plain', $pb, 'X-Signature' => hmac_sha256_hex($pb, 'pk-x'))
    ->{status}, 401, 'replay: a bad signature is still 401');

# replay=off: the old behaviour, each delivery a new event
is(pin('/off', $pb, $psig->('pk'))->{status}, 201, 'replay=off: stored');
is(pin('/off', $pb, $psig->('pk'))->{status}, 201,
    'replay=off: the same delivery again: a new event');
is(pcount('off.hit'), 2, 'replay=off: two events');

# with a delivery id the id decides, as before; without one, the ring
$r = pin('/ids', $pb, $psig->('pk'), 'X-Delivery' => 'd-1');
is($r->{status}, 201, 'replay, id=: stored under its id');
is(pin('/ids', $pb, $psig->('pk'), 'X-Delivery' => 'd-1')->{status}, 200,
    'replay, id=: the same id: a repeat');
is(pin('/ids', $pb, $psig->('pk'), 'X-Delivery' => 'd-2')->{status}, 201,
    'replay, id=: another id: a new event, as before');
my $noid = pin('/ids', $pb, $psig->('pk'));
is($noid->{status}, 201, 'replay, id= empty: the first without an id');
$r = pin('/ids', $pb, $psig->('pk'));
is($r->{status} . ' ' . $r->{body}, "200 $noid->{body}",
    'replay, id= empty: its replay is its repeat');
is(pcount('ids.hit'), 3, 'replay, id=: three events');

# github sends a delivery id (unsigned): no ring, the id decides
my %pg = ('X-GitHub-Event' => 'ping',
    'X-Hub-Signature-256' => 'sha256=' . hmac_sha256_hex($pb, 'pk'));
is(pin('/gh', $pb, %pg, 'X-GitHub-Delivery' => 'g-1')->{status}, 201,
    'replay: github keeps its delivery id');
is(pin('/gh', $pb, %pg, 'X-GitHub-Delivery' => 'g-2')->{status}, 201,
    'replay: github: another delivery id is another event (no ring)');

# after the window the same body is a new delivery
my $short = pin('/short', $pb, $psig->('pk'));
is($short->{status}, 201, 'replay=2s: stored');
$r = pin('/short', $pb, $psig->('pk'));
is($r->{status} . ' ' . $r->{body}, "200 $short->{body}",
    'replay=2s: within the window: the stored event');
sleep 3;
$r = pin('/short', $pb, $psig->('pk'));
is($r->{status}, 201, 'replay=2s: after the window: a new event');
isnt($r->{json}{id}, $short->{json}{id}, 'replay=2s: with a new id');
is(pcount('short.hit'), 2, 'replay=2s: two events');

# the counters: replayed beside verified, for hmac with a ring only
my $pst = $p->get('/status')->{json}{inbound};
my %pin = map { $_->{name} => $_ } @$pst;
is("$pin{'/plain'}{verified} $pin{'/plain'}{replayed}",
    ($pn + 2) . " $pn", "replay: status: /plain verified and replayed $pn")
    or diag explain $pst;
is($pin{'/short'}{replayed}, 1, 'replay: status: /short replayed 1');
is($pin{'/ids'}{replayed}, 1, 'replay: status: /ids replayed 1');
ok(!exists $pin{'/off'}{replayed} && !exists $pin{'/gh'}{replayed},
    'replay: status: no replayed count without a ring');
$prom = $p->get('/status?format=prometheus')->{body};
like($prom,
    qr/^events_inbound_replayed_total\{zone="main",inbound="\/plain"\} $pn$/m,
    'replay: prometheus: events_inbound_replayed_total');
like($prom, qr/^# TYPE events_inbound_replayed_total counter$/m,
    'replay: prometheus: its TYPE');
unlike($prom, qr/^events_inbound_replayed_total\{[^}]*"\/off"/m,
    'replay: prometheus: not for replay=off');

# a reload keeps the ring; another replay_size= starts a new one
ok($p->reload, 'replay: reload');
$r = pin('/plain', $pb2, $psig->('pk-new', $pb2));
is($r->{status} . ' ' . $r->{body}, "200 $second->{body}",
    'replay: after a reload, still remembered');
$p->write_config($replay_config->('replay_size=16'));
ok($p->reload, 'replay: reload with replay_size=16');
$r = pin('/plain', $pb2, $psig->('pk-new', $pb2));
is($r->{status}, 201, 'replay: a new ring (replay_size= changed): '
    . 'the body is new to it');

# a ring of 16: the 17th delivery overwrites the oldest
my @ring;
for my $i (1 .. 17) {
    my $b = "{\"n\":$i}";
    push @ring, pin('/plain', $b, $psig->('pk-old', $b));
}
is(join(' ', map { $_->{status} } @ring), join(' ', ('201') x 17),
    'replay_size=16: 17 new deliveries');
$r = pin('/plain', '{"n":17}', $psig->('pk-old', '{"n":17}'));
is($r->{status} . ' ' . $r->{body}, "200 $ring[16]{body}",
    'replay_size=16: the newest is remembered');
$r = pin('/plain', '{"n":2}', $psig->('pk-old', '{"n":2}'));
is($r->{status} . ' ' . $r->{body}, "200 $ring[1]{body}",
    'replay_size=16: the second is remembered');
$r = pin('/plain', '{"n":1}', $psig->('pk-old', '{"n":1}'));
is($r->{status}, 201, 'replay_size=16: the first was overwritten: a new '
    . 'event');

$p->stop;
unlike($p->error_log . $p->read_file('stderr.log'),
    qr/\[(?:alert|crit|emerg)\]|Sanitizer/,
    'replay: no alert, crit, emerg or sanitizer report');

###########################################################################
# Configuration

for my $bad (['events_inbound main gitlab secret=x;',
              'unknown sender "gitlab": github, stripe, standard or hmac'],
             ['events_inbound main github;',
              'needs "secret=" or "secret_file="'],
             ['events_inbound main github secret=;',
              'has an empty "secret="'],
             ['events_inbound main github secret=old secret= secret=new;',
              'has an empty "secret="'],
             ['events_inbound main github secret=1 secret=2 secret=3 '
              . 'secret=4 secret=5;',
              '[emerg] "events_inbound" takes at most 4 secrets (secret= '
              . 'and secret_file=) in '],
             ['events_inbound main github secret=1 secret=2 secret=3 '
              . 'secret_file=one.secret secret_file=one.secret;',
              '[emerg] "events_inbound" takes at most 4 secrets (secret= '
              . 'and secret_file=) in '],
             ['events_inbound main github secret_file=;',
              'has an empty "secret_file="'],
             ['events_inbound main github secret_file=none.secret;',
              '[emerg] open() "%%TESTDIR%%/none.secret" failed (2: No such '
              . 'file or directory) in '],
             ['events_inbound main github secret_file=empty.secret;',
              '[emerg] the secret file "%%TESTDIR%%/empty.secret" is '
              . 'empty in '],
             ['events_inbound main github secret_file=two.secret;',
              '[emerg] the secret file "%%TESTDIR%%/two.secret" holds more '
              . 'than one line: one secret a file in '],
             ['events_inbound main github secret_file=big.secret;',
              '[emerg] the secret file "%%TESTDIR%%/big.secret" must be a '
              . 'file of at most 4096 bytes in '],
             ['events_inbound main standard secret_file=one.secret;',
              'needs a "secret=whsec_..." for standard webhooks'],
             ['events_inbound main standard secret=whsec_b2xk '
              . 'secret=new;',
              'needs a "secret=whsec_..." for standard webhooks'],
             ['events_inbound main standard secret=abc;',
              'needs a "secret=whsec_..." for standard webhooks'],
             ['events_inbound main github secret=x colour=red;',
              'invalid parameter "colour=red"'],
             ['events_inbound main github secret=x; events_api main;',
              'is duplicate'],
             ['events_inbound main github secret=x name=;',
              'has an invalid "name=": 1-128 characters'],
             ['events_inbound main github secret=x name=' . ('n' x 129)
              . ';', 'has an invalid "name=": 1-128 characters'],
             ['events_inbound main github secret=x name=hooks; } '
              . 'location /in2 { events_inbound main stripe secret=y '
              . 'name=hooks;',
              '[emerg] "events_inbound" "hooks" is already a name in zone '
              . '"main": set name= to tell the locations apart in '],
             ['events_inbound main github secret=x; } location /'
              . ('l' x 128) . ' { events_inbound main github secret=y;',
              'needs a "name=" of 1-128 characters for the status page: '
              . 'the location\'s name is longer'],
             ['events_inbound main github secret=x replay=1m;',
              '[emerg] "replay=1m" is for hmac: github deliveries carry an '
              . 'id, which makes a replay a repeat in '],
             ['events_inbound main stripe secret=x replay_size=64;',
              '[emerg] "replay_size=64" is for hmac: stripe deliveries '
              . 'carry an id, which makes a replay a repeat in '],
             ['events_inbound main hmac secret=x replay=;',
              'has an invalid "replay=": a time or off'],
             ['events_inbound main hmac secret=x replay=0;',
              'has an invalid "replay=": a time or off'],
             ['events_inbound main hmac secret=x replay=soon;',
              'has an invalid "replay=": a time or off'],
             ['events_inbound main hmac secret=x replay_size=15;',
              'has an invalid "replay_size=": 16-65536'],
             ['events_inbound main hmac secret=x replay_size=65537;',
              'has an invalid "replay_size=": 16-65536'],
             ['events_inbound main hmac secret=x replay_size=many;',
              'has an invalid "replay_size=": 16-65536'],
             ['events_inbound main github secret=x; } location /in { '
              . 'events_inbound main stripe secret=y;',
              '[emerg] "events_inbound" "/in" is already a name in zone '
              . '"main"'])
{
    my $c = EventsTest->new;
    $c->write_config(<<"EOF3");
%%GLOBALS%%
http {
    %%HTTP_GLOBALS%%
    events_zone main 1m;
    server {
        listen 127.0.0.1:%%PORT%%;
        location /in { $bad->[0] }
    }
}
EOF3
    $c->write_file('one.secret', "s1\n");
    $c->write_file('empty.secret', "\n");
    $c->write_file('two.secret', "old\nnew\n");
    $c->write_file('big.secret', 'x' x 4097);
    my ($ok, $out) = $c->_test_config;
    my $want = $c->expand($bad->[1]);
    ok(!$ok, "nginx -t refuses: $bad->[0]");
    like($out, qr/\Q$want\E/, "nginx -t: $bad->[1]");
}

$t->done;
