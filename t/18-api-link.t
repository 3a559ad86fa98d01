#!/usr/bin/perl

# The Link header of a page is built from the parsed query, every value
# re-encoded: a source like "a>,<https://evil.example/x?" cannot end the
# URI reference and add a link of its own, and following Link gives the
# next page of the same filter.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use EventsTest;

my $t = EventsTest->new;

$t->write_config(<<'EOF');
%%GLOBALS%%
http {
    %%HTTP_GLOBALS%%

    events_zone main 1m;

    server {
        listen 127.0.0.1:%%PORT%%;

        location /events {
            events_api main;
        }
    }
}
EOF

$t->run;

my $evil = 'a>,<https://evil.example/x?';
my @seq;
for my $i (1 .. 3) {
    my $r = $t->post_json('/events', { type => 'a.b', source => $evil });
    push @seq, $r->{json}{seq};
}
$t->post_json('/events', { type => 'a.b', source => 'other' });

# what a Link parser (RFC 8288) takes from the header: every <target>
sub targets {
    my ($h) = @_;
    return $h =~ /<([^>]*)>/g;
}

for my $query ('source=a>,<https://evil.example/x?&limit=1',
               'limit=1&source=a%3E%2C%3Chttps%3A%2F%2Fevil.example%2Fx%3F')
{
    my $r = $t->get("/events?$query");
    is($r->{status}, 200, "GET ?$query");
    is_deeply([ map { $_->{seq} } @{ $r->{json}{data} } ], [ $seq[0] ],
        'the first page');

    my $link = $r->{headers}{link} // '';
    my @t = targets($link);
    is(scalar @t, 1, 'one link target') or diag($link);
    like($link, qr/^<[^<>]+>; rel="next"$/, 'nothing after rel="next"');
    unlike($link, qr/evil\.example\/x\?/, 'the value is not copied raw');
    my $src = 'source=a%3E%2C%3Chttps%3A%2F%2Fevil\.example%2Fx%3F';
    like($t[0], qr{^/events\?(?:$src&limit=1|limit=1&$src)&after=\S+$},
        'the parameters, re-encoded, and the cursor');

    $r = $t->get($t[0]);
    is($r->{status}, 200, 'following Link');
    is_deeply([ map { $_->{seq} } @{ $r->{json}{data} } ], [ $seq[1] ],
        'the next page of the same filter');
}

# a path with characters that need encoding keeps working
my $r = $t->get('/events?limit=1&types=a.*');
like($r->{headers}{link} // '', qr{^</events\?limit=1&types=a\.%2A&after=},
    'a wildcard is encoded, and still means a wildcard')
    and is_deeply([ map { $_->{seq} }
        @{ $t->get(($r->{headers}{link} =~ /<([^>]*)>/)[0])->{json}{data} } ],
        [ $seq[1] ], 'followed');

$t->done;
