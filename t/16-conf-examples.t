#!/usr/bin/perl

# Every file in conf-examples/ starts as written (its port moved to a
# free one, its module path to the build) and answers what it promises.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use EventsTest;

my $dir = "$EventsTest::REPO/conf-examples";
opendir(my $dh, $dir) or die "$dir: $!";
my @files = sort grep { /\.conf$/ } readdir $dh;
closedir $dh;

ok(scalar @files, 'there are examples');

# what each example must answer, beyond starting
my %check = (
    'quickstart.conf' => sub {
        my ($t) = @_;
        my $r = $t->post_json('/events', { type => 'ticket.created',
            resourceId => 'ticket-123' },
            headers => { 'X-Tenant' => 'acme' });
        is($r->{status}, 201, 'quickstart: POST');
        is($r->{json}{source}, 'quickstart', 'quickstart: events_source');
        is($r->{json}{tenantId}, 'acme', 'quickstart: tenant from header');
        $r = $t->get('/events/ticket/ticket-123',
            headers => { 'X-Tenant' => 'acme' });
        is(scalar @{ $r->{json}{data} }, 1, 'quickstart: history');
        is($t->get('/events-status')->{json}{events}{stored}, 1,
            'quickstart: status');
    },
);

for my $file (@files) {
    open(my $fh, '<', "$dir/$file") or die "$file: $!";
    my $conf = do { local $/; <$fh> };
    close $fh;

    ok($conf =~ /127\.0\.0\.1:8080/, "$file listens on 127.0.0.1:8080");

    # the harness owns the process-level lines; the rest is as written
    $conf =~ s/^\s*(load_module|worker_processes|pid|error_log)\b[^;]*;\n//mg;
    $conf =~ s/^events\s*\{[^}]*\}\n//m;
    $conf =~ s/127\.0\.0\.1:8080/127.0.0.1:%%PORT%%/g;

    my $t = EventsTest->new;
    mkdir $t->testdir . '/logs';
    chmod 0777, $t->testdir . '/logs';
    $t->write_config("%%GLOBALS%%\n$conf");
    $t->run;

    ok($t->get('/')->{status}, "$file answers");
    $check{$file}->($t) if $check{$file};

    $t->stop;
    my @bad = grep { /\[(alert|crit|emerg)\]/ } split /\n/, $t->error_log;
    is_deeply(\@bad, [], "$file: a clean error.log");
}

done_testing;
