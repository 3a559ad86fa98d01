#!/usr/bin/perl

# events_zone ... metadata_index=KEY: the metadata key a zone indexes in
# memory (actorId unless set).  A query on it finds every match in one
# page; another key is scanned, events_scan_limit at a time.  A reload
# that changes the key re-hashes the ring under the lock; a restart
# from the journal indexes what it reads back; bad values fail nginx -t
# with the directive's line.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use EventsTest;

my $t = EventsTest->new;

my $conf = <<'EOF';
%%GLOBALS%%
http {
    %%HTTP_GLOBALS%%

    events_zone idx 8m KEYS;

    server {
        listen 127.0.0.1:%%PORT%%;

        location /idx {
            events_api idx;
            events_scan_limit 50;
        }
    }
}
EOF

sub config {
    my ($keys) = @_;
    (my $c = $conf) =~ s/KEYS/$keys/;
    $t->write_config($c);
}

config('metadata_index=userId retention=1h');
$t->run;

sub found {
    my ($query) = @_;
    $query .= '&limit=10' unless $query =~ /limit=/;
    my $r = $t->get("/idx?$query");
    die "GET $query: $r->{status} $r->{body}" unless $r->{status} == 200;
    return $r->{json};
}

# indexed: every match in one page, nothing more
sub indexed {
    my ($key, $n, $name) = @_;
    my $r = found("metadata.$key=needle");
    is(scalar @{ $r->{data} }, $n, "$name: every match in one page");
    ok(!$r->{has_more}, "$name: nothing more");
    is_deeply([ map { $_->{metadata}{$key} } @{ $r->{data} } ],
        [ ('needle') x $n ], "$name: the right ones");
}

# scanned: a page stops at events_scan_limit, short of the matches
sub scanned {
    my ($key, $name) = @_;
    my $r = found("metadata.$key=needle");
    ok($r->{has_more} && @{ $r->{data} } < 3,
        "$name: scanned, a page stops at events_scan_limit");
}

my @ev;
for my $i (1 .. 1000) {
    my $hit = $i % 400 == 123;
    push @ev, { type => 'idx.made', metadata => {
        userId => ($hit ? 'needle' : "hay-$i"),
        actorId => ($hit ? 'needle' : "hay-$i") } };
}
for my $k (0 .. 9) {
    my $r = $t->post_json('/idx', [ @ev[$k * 100 .. $k * 100 + 99] ]);
    die "POST idx: $r->{status}" unless $r->{status} == 201;
}

indexed('userId', 3, 'metadata_index=userId');
scanned('actorId', 'actorId, no longer the indexed key');

my $desc = found('metadata.userId=needle&order=desc&limit=2');
is(scalar @{ $desc->{data} }, 2, 'descending, paged');
my $rest = found("metadata.userId=needle&before=$desc->{next}");
is(scalar @{ $rest->{data} }, 1, 'the next page: the last one');

###########################################################################
# A reload that changes the key: the ring is indexed again

config('metadata_index=actorId');
ok($t->reload, 'reloaded with metadata_index=actorId');
my $log = 'events zone "idx": metadata_index changes from "userId" to '
    . '"actorId": 1000 events indexed again, 1000 with the key';
ok(index($t->error_log, $log) >= 0, 'logged');

indexed('actorId', 3, 'after the reload, actorId');
scanned('userId', 'after the reload, userId');

my $r = $t->post_json('/idx', { type => 'idx.made',
    metadata => { actorId => 'needle', userId => 'needle' } });
is($r->{status}, 201, 'a write after the reload');
indexed('actorId', 4, 'the new write, indexed by actorId');

# the default is actorId: no change, no re-hash
config('retention=1h');
ok($t->reload, 'reloaded without metadata_index');
indexed('actorId', 4, 'the default, actorId');
is(() = $t->error_log =~ /metadata_index changes/g, 1,
    'the same key: nothing indexed again');

config('metadata_index=userId');
ok($t->reload, 'reloaded back to userId');
indexed('userId', 4, 'back to userId');

###########################################################################
# A restart with a journal: the events read back at start are indexed
# as they were when posted (the replay's walk over each envelope)

{
    my $j = EventsTest->new;
    (my $c = $conf) =~ s{KEYS}{metadata_index=userId;
    events_journal idx %%TESTDIR%%/journal};
    $j->write_config($c);
    $j->run;
    for my $k (0 .. 9) {
        my $r = $j->post_json('/idx', [ @ev[$k * 100 .. $k * 100 + 99] ]);
        die "POST idx: $r->{status}" unless $r->{status} == 201;
    }
    $j->stop;
    $j->run;
    my $r = $j->get('/idx?metadata.userId=needle&limit=10');
    is_deeply([ map { $_->{metadata}{userId} } @{ $r->{json}{data} } ],
        [ ('needle') x 3 ],
        'after a restart from the journal: every match in one page');
    ok(!$r->{json}{has_more}, 'after a restart from the journal: no more');
    $j->stop;
}

###########################################################################
# Bad values: nginx -t fails with the directive's line

sub nginx_t {
    my ($keys) = @_;
    my $t2 = EventsTest->new;
    (my $c = $conf) =~ s/KEYS/$keys/;
    $t2->write_config($c);
    my ($ok, $out) = $t2->test_config_at(qr/events_zone/);
    return $ok ? 'accepted' : $out;
}

my $syntax = 'a key of 1-64 characters of [A-Za-z0-9_.:-]';

for my $bad ('metadata_index=', 'metadata_index=a/b',
    'metadata_index=' . ('k' x 65), 'metadata_index=user%20id')
{
    my $want = qq{[emerg] invalid metadata_index "$bad": $syntax in };
    my $out = nginx_t($bad);
    ok(index($out, $want) >= 0 && $out =~ /nginx\.conf:LINE$/m,
        "nginx -t: $bad") or diag $out;
}

like(nginx_t('metadata_index=a metadata_index=b'),
    qr/\[emerg\] invalid parameter "metadata_index=b" in \S+nginx\.conf:LINE/,
    'nginx -t: metadata_index twice');
like(nginx_t('index=userId'),
    qr/\[emerg\] invalid parameter "index=userId" in \S+nginx\.conf:LINE/,
    'nginx -t: an unknown parameter');
is(nginx_t('metadata_index=' . ('k' x 64)), 'accepted',
    'nginx -t: a key of 64 characters');
is(nginx_t('metadata_index=a.b:c-d_E9 retention=1h'), 'accepted',
    'nginx -t: every character the filter allows');

$t->done;
