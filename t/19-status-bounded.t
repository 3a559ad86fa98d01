#!/usr/bin/perl

# events_status with many workers and odd zone names: every byte goes
# through the bounded builder (64 workers and a 60-character name used to
# overflow the Prometheus buffer), names are escaped for JSON and for
# Prometheus labels, and more workers than the zone has slots for are
# refused at configuration.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use JSON::PP;
use EventsTest;

my $long = 'z' x 54 . 'we"ird';                 # 60 characters
my $odd = 'a\\b"c';                             # a\b"c

sub config {
    my ($t) = @_;
    $t->write_config(<<'EOF');
%%GLOBALS%%
http {
    %%HTTP_GLOBALS%%

    events_zone "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzwe\"ird" 1m;
    events_zone "a\\b\"c" 1m;

    server {
        listen 127.0.0.1:%%PORT%% reuseport;

        location /long/ {
            events_api "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzwe\"ird";
        }

        location = /long-status {
            events_status "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzwe\"ird";
        }

        location = /odd-status {
            events_status "a\\b\"c";
        }
    }
}
EOF
}

# one Prometheus sample line: name{zone="...",label="..."} number
my $sample = qr/^[a-z_]+\{zone="(?:[^"\\\n]|\\[\\"n])*"
                (?:,[a-z]+="(?:[^"\\\n]|\\[\\"n])*")*\}\ [0-9]+(?:\.[0-9]+)?$/x;

sub prometheus_ok {
    my ($body, $name) = @_;
    my @bad = grep { !/^# (?:HELP|TYPE) / && !/$sample/ }
        split /\n/, $body;
    ok(!@bad && $body =~ /\n\z/, "$name: every line parses")
        or diag(join "\n", @bad[0 .. ($#bad > 4 ? 4 : $#bad)]);

    # and Prometheus's own linter, where installed (make deps)
    return unless -x '/usr/bin/promtool';
    my $file = "/tmp/events-metrics-$$.txt";
    open my $fh, '>', $file or die "$file: $!";
    print $fh $body;
    close $fh;
    my $out = `/usr/bin/promtool check metrics < $file 2>&1`;
    unlink $file;
    ok($? == 0 && $out eq '', "$name: promtool check metrics") or diag($out);
}

# more workers than the zone has slots: refused, not folded onto slot 0

my $t2 = EventsTest->new(workers => 65);
config($t2);
my ($ok, $out) = $t2->_test_config;
ok(!$ok, '65 workers refused');
like($out,
    qr/\[emerg\] events zones support at most 64 worker processes, not 65/,
    'says why');
undef $t2;

my $t = EventsTest->new(workers => 64);
config($t);
$t->run;

# every worker stores an event, so that every one has its line: new
# connections spread over the workers' reuseport sockets
my $seen = 0;
for my $i (1 .. 3000) {
    $t->post_json('/long/', { type => 'a.b' });
    next if $i % 100;
    $seen = @{ $t->get('/long-status')->{json}{workers} // [] };
    last if $seen == 64;
}
is($seen, 64, 'all 64 workers stored events');
my $stored = $t->get('/long-status')->{json}{events}{stored};

my $r = $t->get('/long-status');
is($r->{status}, 200, '64 workers, 60-character name: JSON status');
my $j = eval { JSON::PP->new->utf8->decode($r->{body}) };
ok($j, 'valid JSON') or diag(substr($r->{body} // '', 0, 300));
is($j->{zone}, $long, 'the name, unescaped by a JSON parser');
is(scalar @{ $j->{workers} // [] }, 64, 'one entry per worker');
is($j->{events}{stored}, $stored, 'the counters');

$r = $t->get('/long-status?format=prometheus');
is($r->{status}, 200, 'Prometheus status');
prometheus_ok($r->{body}, '64 workers');
my @published = $r->{body} =~ /^events_published_total\{.*\} \d+$/mg;
is(scalar @published, 64, 'a sample per worker');
like($r->{body}, qr/^events_stored_total\{zone="z{54}we\\"ird"\} $stored$/m,
    'the quote escaped in the label');
my $len = length $r->{body};
cmp_ok($len, '>', 30000, "the whole page ($len bytes)");
like($r->{body},
    qr/^events_wakeups_total\{zone="z{54}we\\"ird",worker="63"\} \d+\n\z/m,
    'ends with the last worker of the last metric');

$r = $t->get('/odd-status');
$j = eval { JSON::PP->new->utf8->decode($r->{body}) };
ok($j, 'a backslash and a quote: valid JSON');
is($j->{zone}, $odd, 'the name');

$r = $t->get('/odd-status?format=prometheus');
prometheus_ok($r->{body}, 'backslash and quote');
like($r->{body}, qr/^events_stored_total\{zone="a\\\\b\\"c"\} 0$/m,
    'the label escaped as the text format says');

$t->done;
