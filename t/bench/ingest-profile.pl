#!/usr/bin/perl
#
# The client of t/bench/ingest-profile.sh: COUNT POSTs to URL on one
# keep-alive connection, one after the other, each of BATCH 300-byte
# events (the event of post.lua; BATCH 1 sends the object, more an
# array).  Fails on any answer but 201.
#
#   ingest-profile.pl PORT COUNT BATCH

use strict;
use warnings;

use IO::Socket::INET;

my ($port, $count, $batch) = @ARGV;
die "usage: $0 PORT COUNT BATCH\n" unless $batch;

my $size = $ENV{BENCH_BODY_BYTES} || 300;
my $head = '{"type":"ticket.updated","resourceId":"ticket-123",'
    . '"payload":{"data":{"status":"open","priority":"high",'
    . '"assignee":"agent-42","note":"';
my $tail = '"}}}';
my $pad = $size - length($head) - length($tail);
$pad = 0 if $pad < 0;
my $event = $head . ('x' x $pad) . $tail;
my $body = $batch > 1 ? '[' . join(',', ($event) x $batch) . ']' : $event;

my $req = "POST /events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    . "Content-Type: application/json\r\n"
    . 'Content-Length: ' . length($body) . "\r\n\r\n" . $body;

my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port", Proto => 'tcp')
    or die "connect: $!\n";
binmode $s;

my $buf = '';
for my $i (1 .. $count) {
    print {$s} $req or die "write: $!\n";

    my ($status, $len);
    while (1) {
        if ($buf =~ /\A(.*?\r\n\r\n)/s) {
            my $h = $1;
            ($status) = $h =~ m{\AHTTP/1\.1 (\d+)};
            ($len) = $h =~ /^Content-Length:\s*(\d+)/mi;
            die "no Content-Length in: $h\n" unless defined $len;
            if (length($buf) >= length($h) + $len) {
                my $b = substr($buf, length($h), $len);
                substr($buf, 0, length($h) + $len) = '';
                die "POST $i answered $status: $b\n" unless $status == 201;
                last;
            }
        }
        my $n = sysread($s, $buf, 65536, length $buf);
        die "read: " . (defined $n ? 'closed' : $!) . "\n" unless $n;
    }
}
