#!/usr/bin/perl

# The layering rule of src/, checked on every header a file includes:
#
#   0  src/core/, src/ngx_http_events_types.h,  the store and its parsers;
#      src/ngx_http_events_version.h            no ngx_http.h
#   1  src/ngx_http_events_ipc.[ch]             doorbells between workers
#      src/ngx_http_events_module.h             confs, ctx: declarations
#                                               only (includes types.h)
#   2  src/http/                                toolkit, REST, streams,
#                                               status, auth, validate
#   3  src/webhook/, src/capture/, src/cluster/ features: own folder or below
#   4  src/ngx_http_events_module.c             directives, lifecycle
#
# A file may include headers of its own layer or below; at layer 3 only
# its own folder's.  The core includes no HTTP header, so the fuzzers can
# link it without nginx's HTTP code.

use strict;
use warnings;
use File::Basename qw(dirname basename);
use File::Find;
use Test::More;

my $root = dirname(dirname(__FILE__)) . '/src';

my (%path, @files);

find(sub { return unless /\.[ch]$/; push @files, $File::Find::name;
           $path{$_} = $File::Find::name; }, $root);

sub place {
    my ($f) = @_;
    my $rel = substr($f, length($root) + 1);

    return (0, 'core') if $rel =~ m{^core/};
    return (0, 'core') if $rel eq 'ngx_http_events_types.h';
    return (0, 'core') if $rel eq 'ngx_http_events_version.h';
    return (1, 'ipc') if $rel =~ m{^ngx_http_events_ipc\.[ch]$};
    return (1, 'ipc') if $rel eq 'ngx_http_events_module.h';
    return (2, 'http') if $rel =~ m{^http/};
    return (3, $1) if $rel =~ m{^(webhook|capture|cluster)/};
    return (4, 'module') if $rel eq 'ngx_http_events_module.c';
    return (undef, $rel);
}

ok(scalar @files > 20, 'sources found under src/');

for my $f (sort @files) {
    my ($layer, $folder) = place($f);
    my $rel = substr($f, length($root) + 1);

    ok(defined $layer, "$rel has a layer") or next;

    open(my $fh, '<', $f) or die "$f: $!";
    my @bad;

    while (my $line = <$fh>) {
        if ($line =~ /^#include\s+<ngx_http\.h>/ && $layer == 0) {
            push @bad, "ngx_http.h (line $.)";
        }

        next unless $line =~ /^#include\s+"([^"]+)"/;
        my $h = $1;
        my $hp = $path{$h};

        if (!defined $hp) {
            push @bad, "$h: not under src/";
            next;
        }

        my ($hl, $hf) = place($hp);

        next if $hl < $layer && !($hl == 3);
        next if $hl == $layer && ($layer != 3 || $hf eq $folder);
        next if $hl == 3 && $layer == 4;

        push @bad, "$h (layer $hl, $hf) at line $.";
    }

    close $fh;
    is("@bad", '', "$rel includes only its layer or below");
}

# the headers the issue names: the transport and the shared declarations
# know no consumer, status knows no feature, REST no pre-write hook's
# caller above it
for ([ 'ngx_http_events_ipc.h', qr/"ngx_http_events_module\.h"/ ],
     [ 'ngx_http_events_module.h', qr/"ngx_http_events_(?!types\.h)/ ],
     [ 'ngx_http_events_ipc.c', qr/"ngx_http_events_(?:stream|webhook)/ ],
     [ 'ngx_http_events_status.c', qr/"ngx_http_events_webhook/ ],
     [ 'ngx_http_events_api.c', qr/"ngx_http_events_(?:capture|webhook)/ ])
{
    my ($name, $re) = @$_;
    open(my $fh, '<', $path{$name}) or die "$name: $!";
    my @hits = grep { /^#include/ && $_ =~ $re } <$fh>;
    chomp @hits;
    is("@hits", '', "$name: none of $re");
}

done_testing();
