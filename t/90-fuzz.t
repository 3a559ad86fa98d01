#!/usr/bin/perl

# The libFuzzer targets of t/fuzz/ (built by `make fuzz-build` into
# build/fuzz/), run briefly: first over their seeds once each, as a
# regression test, then fuzzing for T_FUZZ_SECONDS (default 10) each
# from a scratch copy of the seeds.  A crash, a leak, a sanitizer report
# or a failed invariant makes the target exit non-zero and the test fail;
# the input that did it is kept in build/fuzz/.

use strict;
use warnings;

use Cwd qw(abs_path);
use File::Basename qw(dirname);
use File::Copy qw(copy);
use File::Temp qw(tempdir);
use POSIX qw(WNOHANG);
use Test::More;

my $root = abs_path(dirname(__FILE__) . '/..');
my $dir = $ENV{T_FUZZ_DIR} // "$root/build/fuzz";
my $seconds = $ENV{T_FUZZ_SECONDS} // 10;
my @targets = qw(envelope query jwt parse);

my @missing = grep { !-x "$dir/fuzz_$_" } @targets;
# make test builds them and says so: there a missing target fails
if (@missing && $ENV{T_FUZZ_REQUIRED}) {
    fail("fuzz target built: $_") for @missing;
    done_testing;
    exit;
}

plan skip_all => "fuzz targets not built (make fuzz-build): "
    . join(', ', map { "$dir/fuzz_$_" } @missing)
    if @missing;

my @common = ('-rss_limit_mb=2048', '-timeout=10', '-print_final_stats=1');
local $ENV{ASAN_OPTIONS} = 'abort_on_error=1:detect_leaks=1';
local $ENV{UBSAN_OPTIONS} = 'print_stacktrace=1:halt_on_error=1';

for my $t (@targets) {
    my $bin = "$dir/fuzz_$t";
    my $seeds = "$root/t/fuzz/seeds/$t";
    my @seeds = sort glob("$seeds/*");
    my $tmp = tempdir("fuzz-$t-XXXXXX", TMPDIR => 1, CLEANUP => 1);

    ok(@seeds, "fuzz_$t: has seeds in t/fuzz/seeds/$t");

    my ($rc, $log) = run($tmp, 60, $bin, @common, "-artifact_prefix=$tmp/",
        @seeds);
    ok($rc == 0, "fuzz_$t: every seed passes") or report($tmp, $log, $t);

    mkdir "$tmp/corpus" or die "mkdir: $!";
    copy($_, "$tmp/corpus/") or die "copy $_: $!" for @seeds;

    ($rc, $log) = run($tmp, $seconds + 30, $bin, @common,
        "-max_total_time=$seconds", "-artifact_prefix=$tmp/",
        "$tmp/corpus");
    ok($rc == 0, "fuzz_$t: no crash in ${seconds}s of fuzzing")
        or report($tmp, $log, $t);

    my ($runs) = slurp($log) =~ /^stat::number_of_executed_units:\s*(\d+)/m;
    note("fuzz_$t: " . ($runs // '?') . " inputs");
}

done_testing();


# Runs the command with output to a log in $tmp, for at most $limit
# seconds; gives its exit status (-1 if it had to be killed) and the log.
sub run {
    my ($tmp, $limit, @cmd) = @_;

    my $log = "$tmp/run.log";
    my $pid = fork() // die "fork: $!";

    if ($pid == 0) {
        open STDOUT, '>', $log or die "open $log: $!";
        open STDERR, '>&', \*STDOUT or die "dup: $!";
        exec { $cmd[0] } @cmd or die "exec $cmd[0]: $!";
    }

    my $deadline = time() + $limit;

    while (time() < $deadline) {
        return ($? >> 8 || $? & 127, $log) if waitpid($pid, WNOHANG) == $pid;
        select(undef, undef, undef, 0.2);
    }

    kill 'KILL', $pid;
    waitpid($pid, 0);
    diag("$cmd[0]: still running after ${limit}s, killed");

    return (-1, $log);
}


sub report {
    my ($tmp, $log, $t) = @_;

    my @lines = split /\n/, slurp($log);
    my @show = grep { !/^(INFO|#\d+|Running|Executed|\*\*\*)/ } @lines;
    splice @show, 0, @show - 40 if @show > 40;
    diag(join "\n", @show);

    for my $crash (glob("$tmp/crash-* $tmp/leak-* $tmp/timeout-* "
        . "$tmp/oom-*"))
    {
        my $keep = "$dir/" . "$t-" . (split m{/}, $crash)[-1];
        copy($crash, $keep) and diag("the input is in $keep");
    }
}


sub slurp {
    my ($file) = @_;

    open my $fh, '<', $file or return '';
    local $/;
    return scalar <$fh>;
}
