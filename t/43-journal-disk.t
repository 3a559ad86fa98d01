#!/usr/bin/perl

# A full disk: the write the journal cannot take is answered 503
# journal_unavailable, nothing of it is stored (not in the ring, not
# half in the file), and what was accepted before, a captured event
# (events_capture) included, survives a restart.
# Needs root to mount a small tmpfs.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use EventsTest;

plan(skip_all => 'mounting a tmpfs needs root') unless $> == 0;

my $t = EventsTest->new;
my $mnt = $t->testdir . '/full';
mkdir $mnt or die "mkdir $mnt: $!";

# 256k: the history index (index.mdb and its lock file) takes about 60k
# of it before the first event
system('mount', '-t', 'tmpfs', '-o', 'size=256k,mode=0755', 'tmpfs', $mnt) == 0
    or plan(skip_all => 'cannot mount a tmpfs here');
my $mounted = 1;
END { system('umount', $mnt) if $mounted && $mnt; }
chown $t->{uid}, $t->{gid}, $mnt if defined $t->{uid};

$t->write_config(<<'EOF');
%%GLOBALS%%
http {
    %%HTTP_GLOBALS%%

    events_zone main 4m;
    events_journal main %%TESTDIR%%/full fsync=always;

    server {
        listen 127.0.0.1:%%PORT%%;

        location /events { events_api main; }
        location = /events-status { events_status main; }

        location /api/ {
            events_capture header zone=main;
            proxy_pass http://127.0.0.1:%%PORT_2%%;
        }
    }

    # the backend: its answers name events to capture
    server {
        listen 127.0.0.1:%%PORT_2%%;

        location / {
            add_header X-Event-Emit '{"type":"captured.write"}';
            return 200 "done\n";
        }
    }
}
EOF
$t->run;

is($t->get('/api/x')->{status}, 200, 'a captured write');
my ($ok, $refused) = (1);
for my $n (1 .. 400) {
    my $r = $t->post_json('/events', { type => 'disk.fill', id => "e-$n",
        payload => { data => { pad => 'x' x 1000 } } });
    if ($r->{status} == 201) {
        $ok++;
        next;
    }
    $refused = [ $n, $r ];
    last;
}

ok($ok > 10, "$ok events fit");
ok($refused, 'then a write is refused') or BAIL_OUT('the disk never filled');
my ($n, $r) = @$refused;
$t->is_error($r, 503, 'journal_unavailable');
is($r->{body}, '{"error":{"status":503,"code":"journal_unavailable",'
    . '"message":"the journal on disk cannot take the write now; '
    . 'nothing was stored"}}', 'the exact body');

is($t->get("/events/e-$n")->{status}, 404, 'the refused event is not stored');
my $list = $t->get('/events?limit=1000')->{json}{data};
is(scalar @$list, $ok, 'the store holds exactly the accepted events');

# a batch is all or nothing here too
$r = $t->post_json('/events', [ { type => 'disk.small', id => 'b-1' },
    { type => 'disk.fill', id => 'b-2',
      payload => { data => { pad => 'x' x 60000 } } } ]);
$t->is_error($r, 503, 'journal_unavailable', undef, 'a batch is refused');
is($t->get('/events/b-1')->{status}, 404, 'none of it is stored');

my $s = $t->get('/events-status')->{json};
ok($s->{journal}{errors} >= 2, "status: $s->{journal}{errors} errors");
like($t->error_log, qr/\[error\].*write\(\) of \d+ bytes to journal segment ".*\.evj" failed \(\d+ written\); events refused.*No space left on device|\[error\].*No space left on device.*write\(\) of/,
    'logged with the file and the reason');

# the file ends with a whole record: nothing half-stored
my ($file) = glob "$mnt/*.evj";
open(my $fh, '<:raw', $file) or die "$file: $!";
my $data = do { local $/; <$fh> };
my ($off, $records) = (32, 0);
while ($off + 32 <= length $data) {
    my ($magic, undef, undef, $len) = unpack('C C S L', substr($data, $off));
    last unless $magic == 0xe5;
    $off += 32 + $len;
    $records++;
}
is($off, length $data, 'the segment ends at a record boundary');
is($records, $ok, 'with one record per accepted event');

$t->stop;
$t->run;
my @after = @{ $t->get('/events?limit=1000')->{json}{data} };
is(scalar @after, $ok, 'after a restart: the same events');
is($after[0]{type}, 'captured.write', 'the captured one included');

$t->done;
$t->stop;
