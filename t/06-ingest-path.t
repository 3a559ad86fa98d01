#!/usr/bin/perl

# The POST path as made cheaper in 0.12.0, byte for byte: the body parsed
# by YAJL (t/08 has its every error) into the request's pool (large
# bodies, batches, bad JSON, and jansson's allocator given back: the
# idempotent path's digest allocates after the parse), escaping by
# table, the seq and timestamp written digit by digit, and the metadata
# index found before the zone's lock.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use JSON::PP;
use POSIX qw(strftime);
use EventsTest;

my $t = EventsTest->new;

$t->write_config(<<'EOF');
%%GLOBALS%%
http {
    %%HTTP_GLOBALS%%

    events_zone main 8m;
    events_zone other 4m metadata_index=userId;

    server {
        listen 127.0.0.1:%%PORT%%;
        client_body_buffer_size 8k;

        location /events {
            events_api main;
        }

        location /other {
            events_api other;
        }

        location /big {
            events_api main;
            events_max_event_size 512k;
        }
    }
}
EOF

$t->run;

my $json = JSON::PP->new->canonical;

sub post_raw {
    my ($path, $body) = @_;
    return $t->req('POST', $path, body => $body,
        headers => { 'Content-Type' => 'application/json' });
}

###########################################################################
# Escapes: every control character, quote, backslash, and what needs none

my $body = '{"type":"esc.test","payload":{"data":{'
    . '"k\u0001\"\\\\":"a\"b\\\\c\u0001\b\t\n\f\r\u000b\u001f'
    . "\x7f" . '\/\u00e9' . "\xc3\xa9" . 'z"}}}';
my $r = post_raw('/events', $body);
is($r->{status}, 201, 'escapes: created');

my $want = '"data":{"k\u0001\"\\\\":"a\"b\\\\c\u0001\b\t\n\f\r'
    . '\u000b\u001f' . "\x7f" . "/\xc3\xa9\xc3\xa9" . 'z"}';
ok(index($r->{body}, $want) >= 0, 'escapes: the answer, byte for byte')
    or diag($r->{body});

my $id = $r->{json}{id};
my $g = $t->get("/events/$id");
ok(index($g->{body}, $want) >= 0, 'escapes: the stored event, the same')
    or diag($g->{body});
is($g->{body}, $r->{body}, 'the answer is the stored envelope');

$r = post_raw('/events', '{"type":"esc.test","payload":{"data":"a\u0000"}}');
is($r->{body}, '{"error":{"status":400,"code":"invalid_json","message":'
    . '"malformed JSON at line 1, column 46: \\\\u0000 is not allowed"}}',
    'NUL refused, the error byte for byte')
    or diag($r->{body});

###########################################################################
# Seq and timestamp

my @seqs;
for my $i (1 .. 12) {
    my $before = time;
    $r = $t->post_json('/events', { type => 'seq.test' });
    my $after = time;
    push @seqs, $r->{json}{seq};

    my $ts = $r->{json}{timestamp};
    my ($day, $ms) = $ts =~ /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\.(\d{3})Z$/;
    ok(defined $day, "timestamp $i has its form") or diag($ts);
    ok((grep { strftime('%Y-%m-%dT%H:%M:%S', gmtime $_) eq $day }
        $before - 1 .. $after + 1), "timestamp $i is now, in UTC")
        or diag("$ts, now " . strftime('%Y-%m-%dT%H:%M:%S', gmtime));
}
is_deeply(\@seqs, [ $seqs[0] .. $seqs[0] + 11 ], 'seqs one after another');
like($r->{body}, qr/"seq":$seqs[-1],"type"/, 'seq written as a number');

###########################################################################
# Numbers come back as they were sent

$r = post_raw('/events', '{"type":"num.test","payload":{"data":{"i":-42,'
    . '"big":9007199254740993,"max":9223372036854775807,'
    . '"min":-9223372036854775808,"r":1.5,"one":1.0,"e":1e2,"z":0,'
    . '"t":true,"f":false,"n":null,"a":[1,[2,{}],[]]}}}');
is($r->{status}, 201, 'numbers: created');
like($r->{body}, qr/"data":\{"i":-42,"big":9007199254740993,"max":9223372036854775807,"min":-9223372036854775808,"r":1\.5,"one":1\.0,"e":100\.0,"z":0,"t":true,"f":false,"n":null,"a":\[1,\[2,\{\}\],\[\]\]\}/,
    'numbers: as sent, reals stay reals');

###########################################################################
# Bodies parsed into the pool: large, batched, nested, bad

my $long = 'x' x 300_000;
$r = post_raw('/big', '{"type":"big.test","payload":{"data":{"s":"' . $long
    . '"}}}');
is($r->{status}, 201, 'a 300 KB string: created');
is(length($r->{json}{payload}{data}{s} // ''), 300_000, '... all of it');

my $deep = ('[' x 500) . (']' x 500);
$r = post_raw('/events', '{"type":"deep.test","payload":{"data":' . $deep
    . '}}');
is($r->{status}, 201, 'nested 500 deep: created');
ok(index($r->{body}, $deep) >= 0, '... as sent');

my @batch = map { { type => 'batch.test', resourceId => "r-$_",
    payload => { data => { n => $_, s => "v\n$_" } } } } 1 .. 100;
$r = $t->post_json('/events', \@batch);
is($r->{status}, 201, 'a batch of 100: created');
is(scalar @{ $r->{json}{data} }, 100, '... 100 answered');
is_deeply([ map { $_->{payload}{data}{s} } @{ $r->{json}{data} } ],
    [ map { "v\n$_" } 1 .. 100 ], '... each its own');

$r = post_raw('/events', '{"type":');
is($r->{status}, 400, 'malformed: 400');
is($r->{body}, '{"error":{"status":400,"code":"invalid_json","message":'
    . '"malformed JSON at line 1, column 8: unexpected end of input"}}',
    'malformed: the error, byte for byte')
    or diag($r->{body});

$r = post_raw('/events', '{"type":"a.b","type":"c.d"}');
is($r->{body}, '{"error":{"status":400,"code":"invalid_json","message":'
    . '"malformed JSON at line 1, column 20: duplicate object key '
    . '\\"type\\""}}',
    'duplicate key: the error, byte for byte')
    or diag($r->{body});

$r = post_raw('/events', '[{"type":"a.b"},{"type":"a.b","payload":'
    . '{"data":"' . ('y' x 5000) . '"');
$t->is_error($r, 400, 'invalid_json', undef, 'a batch cut short');

# the client's id: its digest allocates through jansson after the parse,
# with the allocator given back (a pool pointer freed by free() would
# crash the worker); the same body again is a repeat, another a conflict
for my $round (1 .. 3) {
    $r = $t->post_json('/events', { id => 'client-1', type => 'id.test',
        payload => { data => { k => 'v' } } });
    is($r->{status}, $round == 1 ? 201 : 200, "client id, round $round");
}
$r = $t->post_json('/events', { id => 'client-1', type => 'id.test',
    payload => { data => { k => 'w' } } });
$t->is_error($r, 409, 'conflict', 'id', 'client id, another body');

###########################################################################
# The metadata index, found before the lock

my @ev = (
    { type => 'm.a', metadata => { userId => 'u-1' } },
    { type => 'm.b', metadata => { other => 1, userId => 'u-2' } },
    { type => 'm.c', metadata => { userId => 'u-1', x => [ 1 ] } },
    { type => 'm.d', payload => { data => { userId => 'u-1' } } },
    { type => 'm.e', metadata => undef },
    { type => 'm.f', metadata => { userId => { deep => 'u-1' } } },
    { type => 'm.g', metadata => { userId => 7 } },
    { type => 'm.h', metadata => { user => 'u-1' } },
    { type => 'm.i', metadata => { userId => "q\"1" } },
);
$r = $t->post_json('/other', \@ev);
is($r->{status}, 201, 'metadata batch: created');
$r = $t->post_json('/other', { type => 'm.j', metadata => { userId => 'u-1' } });
is($r->{status}, 201, 'metadata single: created');

sub types {
    my ($q) = @_;
    my $g = $t->get("/other?$q");
    return join ',', map { $_->{type} } @{ $g->{json}{data} || [] };
}

is(types('metadata.userId=u-1'), 'm.a,m.c,m.j', 'indexed: u-1');
is(types('metadata.userId=u-2'), 'm.b', 'indexed: u-2 after another key');
is(types('metadata.userId=7'), 'm.g', 'indexed: a number');
is(types('metadata.userId=q%221'), 'm.i', 'indexed: an escaped string');

$t->done;
