#!/usr/bin/perl

# The journal after crashes and damage: kill -9 of the master and the
# workers under a write load with fsync=always loses no event that got
# its 201; a segment cut in the middle of a record, or with flipped
# bytes, is read up to the damage, the rest cut off and logged with the
# file and the offset.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use POSIX qw(_exit);
use Time::HiRes qw(sleep time);
use EventsTest;

my $t = EventsTest->new;

my $conf = <<'EOF';
%%GLOBALS%%
http {
    %%HTTP_GLOBALS%%

    events_zone main 4m;
    events_journal main %%TESTDIR%%/journal fsync=always PARAMS;

    server {
        listen 127.0.0.1:%%PORT%%;

        location /events { events_api main; }
        location = /events-status { events_status main; }
    }
}
EOF

sub config {
    my ($params) = @_;
    (my $c = $conf) =~ s/PARAMS/$params/;
    $t->write_config($c);
}

# (offset, seq, length) of each record of a segment
sub records {
    my ($file) = @_;
    open(my $fh, '<:raw', $file) or die "$file: $!";
    local $/;
    my $data = <$fh>;
    my ($off, @recs) = (32);
    while ($off + 32 <= length $data) {
        my ($magic, $kind, $flags, $len, $crc, $res, $seq)
            = unpack('C C S L L L Q', substr($data, $off, 32));
        last unless $magic == 0xe5 && $off + 32 + $len <= length $data;
        push @recs, [$off, $seq, 32 + $len];
        $off += 32 + $len;
    }
    return @recs;
}

# every event retained, page by page
sub all_events {
    my ($path, @all) = ('/events?limit=1000');
    for (1 .. 100) {
        my $j = $t->get($path)->{json};
        push @all, @{ $j->{data} };
        last unless $j->{has_more};
        $path = "/events?limit=1000&after=$j->{next}";
    }
    return @all;
}

sub seqs {
    return [ map { $_->{seq} } all_events() ];
}

###########################################################################
# kill -9 of everything under load

config('');
$t->run;

my $master = $t->master_pid;
my @procs = ($master, $t->worker_pids);

# the killer: everything at once, 0.7 s into the load
my $killer = fork // die "fork: $!";
unless ($killer) {
    sleep 0.7;
    kill 'KILL', @procs;
    _exit(0);
}

my $deadline = time + 10;
my @got = $t->parallel(n => 4, timeout => 20, code => sub {
    my ($i) = @_;
    my @ok;
    for my $n (1 .. 2000) {
        last if time > $deadline;
        my $r = $t->post_json('/events', { type => 'load.tick',
            id => "c$i-$n", payload => { data => { n => $n } } },
            timeout => 3);
        last unless $r->{status};
        push @ok, [ "c$i-$n", $r->{json}{seq} ] if $r->{status} == 201;
    }
    return \@ok;
});
waitpid($killer, 0);

my %acked = map { $_->[0] => $_->[1] } map { @{ $_ // [] } } @got;
ok(keys %acked > 20, scalar(keys %acked) . ' events got a 201 before the kill');

$t->stop;    # reaps the master, KILLs any worker left
$t->run;

my %have = map { $_->{id} => $_->{seq} } all_events();
my @lost = grep { !exists $have{$_} } sort keys %acked;
is(scalar @lost, 0, 'every event that got a 201 is there after the restart')
    or diag "lost: @lost[0 .. ($#lost > 9 ? 9 : $#lost)]";
my @moved = grep { exists $have{$_} && $have{$_} != $acked{$_} } keys %acked;
is(scalar @moved, 0, 'each with the seq it was given');

my $last = (sort { $a <=> $b } values %have)[-1] // 0;
my $r = $t->post_json('/events', { type => 'after.crash' });
ok($r->{json}{seq} > $last, "seq goes on ($r->{json}{seq} > $last)");

$t->stop;

###########################################################################
# a record cut in the middle, as a crash during a write leaves it

$t->run;
my $base = $t->get('/events-status')->{json}{events}{newestSeq};
$t->post_json('/events', { type => 'cut.test', payload => { data => {
    n => $_, pad => 'x' x 100 } } }) for 1 .. 10;
$t->stop;

# each start begins a segment: these ten have one of their own
my @segs = glob $t->testdir . '/journal/*.evj';
my $file = $segs[-1];
my @recs = records($file);
is(scalar @recs, 10, 'ten records in the newest segment');

my ($off8, $seq8) = @{ $recs[7] };
truncate($file, $off8 + 40) or die "truncate: $!";

$t->run;
is_deeply([ grep { $_ > $base } @{ seqs() } ], [ $base + 1 .. $seq8 - 1 ],
    'a torn last record: everything before it is there');
like($t->error_log, qr/\[warn\].*journal segment "\Q$file\E": a torn record at offset $off8; 40 bytes cut off/,
    'logged with the file and the offset');
is(-s $file, $off8, 'and the file is cut there');
is($t->get('/events-status')->{json}{journal}{cutBytes}, 40,
    'status: bytes cut');

# a new segment for what comes next, never the cut file
$r = $t->post_json('/events', { type => 'after.cut' });
is($r->{status}, 201, 'writes go on');
is($r->{json}{seq}, $seq8, "with seq $seq8");
$t->stop;

###########################################################################
# flipped bytes: the checksum finds them

@segs = glob $t->testdir . '/journal/*.evj';
$file = $segs[-2];    # the cut one; the newest has one record
@recs = records($file);
my ($off4, $seq4, $len4) = @{ $recs[3] };

open(my $fh, '+<:raw', $file) or die "$file: $!";
seek($fh, $off4 + 60, 0);
read($fh, my $byte, 1);
seek($fh, $off4 + 60, 0);
print {$fh} chr(ord($byte) ^ 0x5a);
close $fh;
my $size = -s $file;

$t->run;
my $seqs = seqs();
ok(!grep({ $_ >= $seq4 && $_ < $seq8 } @$seqs),
    'the damaged record and what follows it in its segment are gone');
ok(grep({ $_ == $seq4 - 1 } @$seqs), 'the record before it is there');
ok(grep({ $_ == $seq8 } @$seqs), 'the next segment is read as usual');
like($t->error_log, qr/\[error\].*journal segment "\Q$file\E": a checksum mismatch at offset $off4; @{[ $size - $off4 ]} bytes cut off/,
    'logged with the file and the offset, as an error: not the tail');

###########################################################################
# damage in the middle of the newest segment: published events are cut,
# so their seqs must not come back under the same epoch

my $epoch = $t->get('/events-status')->{json}{epoch};
$t->post_json('/events', { type => 'mid.test', payload => { data => {
    n => $_, pad => 'x' x 100 } } }) for 1 .. 6;
my $cursor = $t->get('/events')->{json}{head};
$t->stop;

@segs = glob $t->testdir . '/journal/*.evj';
$file = $segs[-1];
@recs = records($file);
my ($off2) = @{ $recs[2] };

open($fh, '+<:raw', $file) or die "$file: $!";
seek($fh, $off2 + 60, 0);
read($fh, $byte, 1);
seek($fh, $off2 + 60, 0);
print {$fh} chr(ord($byte) ^ 0x5a);
close $fh;

$t->run;
like($t->error_log, qr/\[error\].*journal segment "\Q$file\E": a checksum mismatch at offset $off2;/,
    'damage in the middle of the newest segment is an error');
unlike($t->error_log, qr/\[warn\].*journal segment "\Q$file\E": a /,
    'not a torn tail at warn');
like($t->error_log, qr/\[error\].*journal damaged: epoch [0-9a-f]+ ends here/,
    'the epoch ends there');
isnt($t->get('/events-status')->{json}{epoch}, $epoch, 'a new epoch');
$t->is_error($t->get("/events?after=$cursor"), 410, 'epoch_changed', 'after',
    'a cursor from before the damage gets 410, not 400');
is($t->post_json('/events', { type => 'after.damage' })->{status}, 201,
    'writes go on');
$t->stop;

# the next start keeps the new epoch
my $new = do { $t->run; $t->get('/events-status')->{json}{epoch} };
is($new, $t->get('/events-status')->{json}{epoch}, 'and it stays');

$t->done;
