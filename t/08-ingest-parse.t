#!/usr/bin/perl

# POST /events parsed by YAJL into a jansson tree (0.12.0): the semantics
# jansson's json_loadb() had, kept byte for byte where the API promises
# them: duplicate keys refused, integers exact in int64, \u0000 and lone
# surrogates refused, UTF-8 checked strictly, nesting bounded at 2048,
# nothing after the value; every malformed class with its status, line,
# column and text; large bodies and batches.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use JSON::PP;
use EventsTest;

my $t = EventsTest->new;

$t->write_config(<<'EOF2');
%%GLOBALS%%
http {
    %%HTTP_GLOBALS%%

    events_zone main 16m;

    server {
        listen 127.0.0.1:%%PORT%%;
        client_body_buffer_size 8k;

        location /events {
            events_api main;
            events_max_event_size 512k;
            events_max_body_size 4m;
        }
    }
}
EOF2

$t->run;

my $enc = JSON::PP->new->allow_nonref;

sub post_raw {
    my ($body) = @_;
    return $t->req('POST', '/events', body => $body,
        headers => { 'Content-Type' => 'application/json' });
}

sub malformed {
    my ($body, $line, $column, $text, $name) = @_;
    my $r = post_raw($body);
    my $want = '{"error":{"status":400,"code":"invalid_json","message":'
        . $enc->encode("malformed JSON at line $line, column $column: $text")
        . '}}';
    is($r->{status}, 400, "$name: 400");
    is($r->{body}, $want, "$name: the error, byte for byte")
        or diag($r->{body});
}

sub created {
    my ($body, $name) = @_;
    my $r = post_raw($body);
    is($r->{status}, 201, "$name: created") or diag($r->{body});
    return $r;
}

sub chars {
    my ($len, $s) = @_;
    return scalar(() = substr($s, 0, $len) =~ /[^\x80-\xbf]/g);
}

sub ev {
    my ($data) = @_;
    return '{"type":"parse.test","payload":{"data":' . $data . '}}';
}

###########################################################################
# Malformed, class by class: where (line, column in characters) and why

malformed('{"type":', 1, 8, 'unexpected end of input', 'cut short');
malformed('', 1, 0, 'unexpected end of input', 'empty body');
malformed("  \n ", 2, 1, 'unexpected end of input', 'blanks only');
malformed('"abc', 1, 4, 'unexpected end of input', 'string unterminated');
malformed('{"type":"a.b"}x', 1, 15, 'trailing garbage', 'trailing garbage');
malformed('{"type":"a.b"} {"type":"a.b"}', 1, 16, 'trailing garbage',
    'two values');
malformed('[{"type":"a.b"}]]', 1, 17, 'trailing garbage', 'one ] too many');
malformed('[{"type":"a.b"},]', 1, 17,
    'unallowed token at this point in JSON text', 'trailing comma');
malformed('{"type" "a.b"}', 1, 13, "object key and value must be "
    . "separated by a colon (':')", 'no colon');
malformed('{type:"a.b"}', 1, 2, 'invalid string in json text',
    'bare key');
malformed('{"type":"a.b",}', 1, 15,
    'invalid object key (must be a string)', 'comma before }');
malformed('[1 2]', 1, 4, "after array element, I expect ',' or ']'",
    'no comma');
malformed(ev('tru'), 1, 42, 'invalid string in json text', 'bad literal');
malformed(ev('01'), 1, 40, "after key and value, inside map, I expect ',' "
    . "or '}'", 'leading zero');
malformed(ev('1.'), 1, 41, 'malformed number, a digit is required after '
    . 'the decimal point', 'bad number');
malformed(ev('"a\x"'), 1, 42, "inside a string, '\\' occurs before a "
    . 'character which it may not', 'bad escape');
malformed(ev('"\u12x4"'), 1, 44, "invalid (non-hex) character occurs after "
    . "'\\u' inside string", 'bad \u');
malformed(ev("\"a\tb\""), 1, 41, 'invalid character inside string',
    'raw tab in a string');
malformed(ev('/* c */ 1'), 1, 39, 'probable comment found in input text, '
    . 'comments are not enabled', 'comment');
malformed('true"', 1, 5, 'trailing garbage',
    'a token begun after the value, never ended');
malformed('{"type":"a.b"} "x', 1, 16, 'trailing garbage',
    'a string begun after the value, never ended');
malformed("{\"type\":\"a.b\"}\0", 1, 15, 'trailing garbage',
    'a NUL byte after the value');
malformed("\f{\"type\":\"a.b\"}", 1, 1, 'invalid character U+000C',
    'a form feed is no JSON blank');
malformed("{\"type\":\"a.b\",\x0b\"x\":1}", 1, 15,
    'invalid character U+000B', 'nor a vertical tab');
malformed("{\"type\":\"a.b\",\x0b\"x\":1,\f\"y\":2}", 1, 15,
    'invalid character U+000B', 'the first of both: a vertical tab');
malformed("[{\"type\":\"a.b\"},\f{\"type\":\"a.b\"}\x0b]", 1, 17,
    'invalid character U+000C', 'the first of both: a form feed');
malformed('[' . join(',', ('{"type":"a.b"}') x 300) . "\n\x0b]", 2, 1,
    'invalid character U+000B', 'a vertical tab after 4 KB of a batch');
malformed("{\n  \"type\": \"a.b\",\n  \"payload\": }", 3, 14,
    'unallowed token at this point in JSON text', 'line and column');
malformed("{\"type\":\"a.b\",\"n\":\"\xc3\xa9\xc3\xa9\", x}", 1, 25,
    'invalid char in json text',
    'columns count characters, not bytes');

###########################################################################
# Duplicate keys: refused wherever they are, however spelt

malformed('{"type":"a.b","type":"c.d"}', 1, 20,
    'duplicate object key "type"', 'duplicate at the top');
malformed(ev('{"k":1,"j":{"k":2},"k":3}'), 1, 61,
    'duplicate object key "k"', 'duplicate nested');
malformed('{"type":"a.b","typ\u0065":"c.d"}', 1, 25,
    'duplicate object key "type"', 'duplicate spelt with an escape');
malformed('{"type":"a.b","payload":{},"payload":{"data":1}}', 1, 36,
    'duplicate object key "payload"', 'duplicate object value');
my $k = 'k' x 100;
malformed(ev(qq({"$k":1,"$k":2})), 1, 247,
    'duplicate object key "' . ('k' x 64) . '..."', 'a long key cut short');
my $e = "\xc3\xa9" x 40;
malformed(ev(qq({"$e":1,"$e":2})), 1, 127,
    'duplicate object key "' . ("\xc3\xa9" x 32) . '..."',
    'a long key cut at a character');
malformed('[{"type":"a.b"},{"type":"a.b","x":1,"x":2}]', 1, 39,
    'duplicate object key "x"', 'duplicate in a batch\'s second event');
created(ev('{"k":1,"j":{"k":2},"K":3}'), 'same key in other objects');

###########################################################################
# Numbers: integers exact in int64, else refused; reals as doubles

my $r = created(ev('[9223372036854775807,-9223372036854775808,0,-0,'
    . '1e-400,1.7976931348623157e308,12345678901234567890.0]'),
    'int64 extremes');
like($r->{body}, qr/"data":\[9223372036854775807,-9223372036854775808,0,0,/,
    '... exact');
malformed(ev('9223372036854775808'), 1, 58,
    'integer out of the int64 range', 'int64 max + 1');
malformed(ev('-9223372036854775809'), 1, 59,
    'integer out of the int64 range', 'int64 min - 1');
malformed(ev('[99999999999999999999999]'), 1, 63,
    'integer out of the int64 range', 'far past int64');
malformed('18446744073709551616', 1, 20, 'integer out of the int64 range',
    'the body a number out of range (found at the end)');
malformed(ev('1e400'), 1, 44, 'real number overflow', 'real overflow');
malformed(ev('-1' . ('0' x 400) . '.5'), 1, 443, 'real number overflow',
    'a long real overflows');

###########################################################################
# Strings: UTF-8 strictly, \u escapes as jansson takes them

$r = created(ev('["\ud83d\ude00","' . "\xf0\x9f\x98\x80" . '","\u00e9",'
    . '"\u0001","\\\\\"","\\\\","\"\\\\"]'), 'escapes and 4-byte UTF-8');
ok(index($r->{body}, '"data":["' . "\xf0\x9f\x98\x80\xf0\x9f\x98\x80"
    . "\xc3\xa9" . '","\u0001","\\\\\"","\\\\","\"\\\\"]') >= 0
    || index($r->{body}, "\xf0\x9f\x98\x80\",\"\xf0\x9f\x98\x80\"") >= 0,
    '... decoded') or diag($r->{body});
my $d = $r->{json}{payload}{data};
is_deeply($d, [ "\x{1F600}", "\x{1F600}", "\x{e9}", "\x01", "\\\"", "\\",
    "\"\\" ], '... each as sent') or diag(explain($d));

malformed(ev('"a\u0000"'), 1, 48, '\u0000 is not allowed', 'NUL');
malformed(ev('{"a\u0000b":1}'), 1, 50, '\u0000 is not allowed',
    'NUL in a key');
malformed(ev('"\"\\\\\u0000"'), 1, 51, '\u0000 is not allowed',
    'NUL after escaped quotes and backslashes');
malformed(ev('"\ud800"'), 1, 47, 'invalid \u escape: a lone UTF-16 '
    . 'surrogate', 'lone high surrogate');
malformed(ev('"\udc00x"'), 1, 48, 'invalid \u escape: a lone UTF-16 '
    . 'surrogate', 'lone low surrogate');
malformed(ev('"\ud800\u0041"'), 1, 53, 'invalid \u escape: a lone UTF-16 '
    . 'surrogate', 'high surrogate, then no low one');
malformed(ev('{"\ud800":1}'), 1, 48, 'invalid \u escape: a lone UTF-16 '
    . 'surrogate', 'lone surrogate in a key');

for my $bad ([ "\xc3\x28", 'a bad continuation' ],
             [ "\xc0\xaf", 'overlong' ],
             [ "\xe0\x80\xaf", 'overlong, 3 bytes' ],
             [ "\xed\xa0\x80", 'a surrogate encoded' ],
             [ "\xf4\x90\x80\x80", 'past U+10FFFF' ],
             [ "\xe2\x82", 'cut short' ],
             [ "\xff", 'never in UTF-8' ],
             [ "\x80", 'a lone continuation' ])
{
    my ($bytes, $name) = @$bad;
    # where the string ends, in characters (bytes but continuations)
    my $body = ev('"abcdefghij' . $bytes . 'klm"');
    malformed($body, 1, chars(length($body) - 2, $body), 'invalid UTF-8',
        "invalid UTF-8: $name");
    $body = ev('{"' . $bytes . '":1}');
    malformed($body, 1, chars(length($body) - 5, $body), 'invalid UTF-8',
        "invalid UTF-8 in a key: $name");
}
malformed(ev('"\u00e9' . "\xc0\xaf" . '"'), 1, 48, 'invalid UTF-8',
    'invalid UTF-8 in a string with escapes');

###########################################################################
# Nesting: 2048 deep is jansson's bound, and so ours

# the event and its payload are two levels
my $n = 2048 - 2;
$r = created(ev(('[' x $n) . (']' x $n)), '2048 deep');
ok(index($r->{body}, ('[' x $n) . (']' x $n)) >= 0, '... as sent');
$n++;
malformed(ev(('[' x $n) . (']' x $n)), 1, 39 + $n,
    'nested deeper than 2048', '2049 deep');
malformed(ev('{"a":' x 3000), 1, 39 + 5 * 2046 + 1, 'nested deeper than 2048',
    'objects 3000 deep, cut short');
malformed('[' x 1_000_000, 1, 2049, 'nested deeper than 2048',
    'a megabyte of [');

###########################################################################
# Not an object: any JSON value parses, the API then says what it wants

for my $v ('1', '"x"', 'null', 'true', '1.5') {
    $r = post_raw($v);
    $t->is_error($r, 400, 'invalid_body', undef, "the body $v");
}

###########################################################################
# Large bodies and batches

my $big = 'x' x 400_000;
$r = created(ev('"' . $big . '"'), 'a 400 KB string');
is(length($r->{json}{payload}{data} // ''), 400_000, '... all of it');

$r = created(ev('"' . ('\n\u00e9' x 50_000) . '"'),
    'a string of 100 000 escapes');
is($r->{json}{payload}{data}, "\n\x{e9}" x 50_000, '... decoded');

$r = created(ev('{' . join(',', map { qq("k$_":$_) } 1 .. 5000) . '}'),
    '5000 keys');
is(scalar keys %{ $r->{json}{payload}{data} }, 5000, '... all kept');
is(join(',', (keys %{ $r->{json}{payload}{data} })[0]) =~ /^k\d+$/ ? 1 : 0,
    1, '... keyed as sent');
like($r->{body}, qr/"data":\{"k1":1,"k2":2,"k3":3,/, '... in order');

my @batch = map { '{"type":"batch.parse","resourceId":"r-' . $_
    . '","payload":{"data":{"n":' . $_ . ',"s":"v\u00e9' . $_ . '"}}}' }
    1 .. 500;
$r = created('[' . join(",\n", @batch) . ']', 'a batch of 500');
is(scalar @{ $r->{json}{data} }, 500, '... 500 answered');
is_deeply([ map { $_->{payload}{data}{s} } @{ $r->{json}{data} } ],
    [ map { "v\x{e9}$_" } 1 .. 500 ], '... each its own');

$batch[299] =~ s/"n":/"n":1,"n":/;
malformed('[' . join(",\n", @batch) . ']', 300, 71,
    'duplicate object key "n"', 'a duplicate in the 300th event of a batch');

$r = $t->get('/events?limit=1');
is($r->{status}, 200, 'the store still answers');

$t->done;
