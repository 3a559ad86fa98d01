package EventsTest;

# Test harness for ngx_http_events_module.
#
# Each EventsTest object owns one private nginx: a temporary directory
# that holds nginx.conf, the pid file, the logs and every temp path;
# loopback ports reserved for it; and the master process, started in
# the foreground ("daemon off") as our own child so that we can always
# reap it and, if need be, kill it.  HTTP is spoken on raw sockets so
# that tests see the exact bytes nginx sent.
#
#     use lib 't/lib';
#     use Test::More;
#     use EventsTest;
#
#     my $t = EventsTest->new;
#     $t->write_config(<<'EOF');
#     %%GLOBALS%%
#     http {
#         %%HTTP_GLOBALS%%
#         server { listen 127.0.0.1:%%PORT%%; ... }
#     }
#     EOF
#     $t->run;
#     is($t->get('/')->{status}, 200, 'root');
#     $t->done;
#
# Modelled on nginx-tests' lib/Test/Nginx.pm; the API is documented in
# the POD at the end of this file.  Perl core modules only.

use strict;
use warnings;

use Carp qw(croak);
use Cwd qw(abs_path);
use File::Basename qw(dirname);
use File::Path qw(make_path);
use File::Temp qw(tempdir);
use IO::Handle;
use IO::Select;
use IO::Socket::IP;
use JSON::PP;
use POSIX qw(WNOHANG);
use Scalar::Util qw(weaken refaddr);
use Test::More ();
use Time::HiRes qw(time sleep);

our $NGINX = $ENV{T_NGINX} // '/usr/sbin/nginx';
our $REPO = abs_path(dirname(__FILE__) . '/../..');
our $MODULE = $ENV{T_MODULE} // "$REPO/build/ngx_http_events_module.so";

# Canonical so that request bodies, and so Content-Length, are stable.
my $JSON = JSON::PP->new->utf8->canonical->allow_nonref;

# Every object not yet destroyed, held weakly: END stops their nginx
# even when a test file dies while a lexical still holds the object.
my %LIVE;

# A signal that kills perl outright skips END; turn these into an
# ordinary exit so that no nginx outlives an interrupted test (PIPE:
# the reader of our TAP went away).
my %SIGNO = (HUP => 1, INT => 2, PIPE => 13, TERM => 15);
for my $sig (sort keys %SIGNO) {
    $SIG{$sig} = sub { exit 128 + $SIGNO{$sig} }
        if !$SIG{$sig} || $SIG{$sig} eq 'DEFAULT';
}

END {
    local $?;
    for my $t (values %LIVE) {
        eval { $t->stop } if $t && $t->{owner} == $$;
    }
}

###########################################################################
# Construction, paths, files

sub new {
    my ($class, %opt) = @_;

    my $self = bless {
        workers      => $opt{workers} // 2,
        module       => $opt{module} // 1,
        events_block => $opt{events_block} // 1,
        asan         => $ENV{T_ASAN},
        owner        => $$,
        ports        => {},
        expected     => [],
        pid          => undef,
    }, $class;

    $self->{dir} = tempdir('events-test-XXXXXXXX', TMPDIR => 1,
        CLEANUP => !$ENV{T_KEEP});
    Test::More::diag("test dir: $self->{dir}") if $ENV{T_KEEP};

    # As root, nginx runs its workers as an unprivileged user (its
    # default, "nobody").  We say so explicitly and keep it, because
    # that is how the module runs in production: a worker that writes
    # where only the master may is a bug the tests should see.  The
    # only cost is that workers must be able to enter the test dir,
    # hence 0755 (tempdir makes it 0700, and then every request body
    # spooled to client_body_temp fails with EACCES).  nginx itself
    # chowns the temp path directories it creates to the worker user.
    # user => 'root' gives workers every right; user => undef writes
    # no "user" directive and leaves the dir 0700 (nginx then still
    # runs workers as nobody: only for tests of exactly that).  For a
    # directory workers may write to, see worker_dir().
    my $user = exists $opt{user} ? $opt{user}
        : $> == 0 ? 'nobody' : undef;
    if (defined $user && $> == 0) {
        my @pw = getpwnam($user) or croak "no such user: $user";
        my $group = getgrgid($pw[3]) // $pw[3];
        $self->{user} = "$user $group";
        @{$self}{qw(uid gid)} = @pw[2, 3];
        chmod 0755, $self->{dir} or croak "chmod $self->{dir}: $!";
    }

    $LIVE{refaddr $self} = $self;
    weaken $LIVE{refaddr $self};

    return $self;
}

sub DESTROY {
    my ($self) = @_;
    local ($?, $@, $!);
    eval { $self->stop } if $self->{owner} == $$;
    delete $LIVE{refaddr $self};
}

sub testdir { $_[0]{dir} }
sub module_path { $MODULE }
sub master_pid { $_[0]{pid} }
sub asan { !!$_[0]{asan} }

# Timeouts are given for a plain build; an ASan build is ~3x slower.
sub scale {
    my ($self, $seconds) = @_;
    return $seconds * ($self->{asan} ? 3 : 1);
}

sub _path { "$_[0]{dir}/$_[1]" }

sub _slurp {
    my ($file) = @_;
    open(my $fh, '<', $file) or return '';
    binmode $fh;
    local $/;
    return scalar(<$fh>) // '';
}

sub read_file {
    my ($self, $name) = @_;
    return _slurp($self->_path($name));
}

sub write_file {
    my ($self, $name, $text) = @_;

    my $file = $self->_path($name);
    make_path(dirname($file));
    $text = $self->expand($text);

    open(my $fh, '>', $file) or croak "create $file: $!";
    binmode $fh;
    print {$fh} $text or croak "write $file: $!";
    close($fh) or croak "close $file: $!";
    return $file;
}

sub write_config {
    my ($self, $text) = @_;
    return $self->write_file('nginx.conf', $text);
}

# A directory under the test dir that worker processes may write to.
sub worker_dir {
    my ($self, $name) = @_;
    my $dir = $self->_path($name);
    make_path($dir);
    chown $self->{uid}, $self->{gid}, $dir if defined $self->{uid};
    return $dir;
}

###########################################################################
# Ports

# A loopback TCP port for index $n, the same one for the object's life.
# The kernel picks a free port for a TCP bind to port 0; we then bind a
# UDP socket to the same number and hold it.  The TCP socket is closed
# for nginx to take over, but another test file following the same
# protocol cannot get that number: its UDP bind fails and it retries.
sub port {
    my ($self, $n) = @_;
    $n //= 1;
    return $self->{ports}{$n}{port} if $self->{ports}{$n};

    for (1 .. 100) {
        my $tcp = IO::Socket::IP->new(LocalHost => '127.0.0.1',
            LocalPort => 0, Proto => 'tcp', Listen => 1) or next;
        my $port = $tcp->sockport;
        my $udp = IO::Socket::IP->new(LocalHost => '127.0.0.1',
            LocalPort => $port, Proto => 'udp') or next;
        close $tcp;
        $self->{ports}{$n} = { port => $port, lock => $udp };
        return $port;
    }
    croak "cannot reserve a loopback port: $!";
}

###########################################################################
# Configuration placeholders

sub _globals {
    my ($self) = @_;
    my $dir = $self->{dir};
    my $level = $ENV{T_DEBUG} ? 'debug' : 'info';

    my @g;
    # T_MODULE=static: the module is built into T_NGINX (--add-module)
    push @g, "load_module $MODULE;" if $self->{module} && $MODULE ne 'static';
    push @g, "worker_processes $self->{workers};",
        "pid $dir/nginx.pid;",
        "lock_file $dir/nginx.lock;",
        "error_log $dir/error.log $level;";
    push @g, "user $self->{user};" if $self->{user};
    push @g, 'events { worker_connections 4096; }'
        if $self->{events_block};
    return @g;
}

# Debian's nginx is built with every temp path under /var/lib/nginx and
# the access log in /var/log/nginx; a test must use none of them.
sub _http_globals {
    my ($self) = @_;
    my $dir = $self->{dir};
    return ("access_log $dir/access.log;",
        map { "${_}_temp_path $dir/${_}_temp;" }
            qw(client_body proxy fastcgi uwsgi scgi));
}

sub expand {
    my ($self, $text) = @_;

    # Block placeholders alone on their line keep its indentation.
    my $block = sub {
        my ($indent, @lines) = @_;
        $indent //= '';
        return join("\n", map { "$indent$_" } @lines);
    };
    $text =~ s/(?:^([ \t]*))?%%GLOBALS%%/
        $block->($1, $self->_globals)/gmex;
    $text =~ s/(?:^([ \t]*))?%%HTTP_GLOBALS%%/
        $block->($1, $self->_http_globals)/gmex;

    $text =~ s/%%PORT%%/$self->port(1)/ge;
    $text =~ s/%%PORT_(\d+)%%/$self->port($1)/ge;
    $text =~ s/%%TESTDIR%%/$self->{dir}/g;
    $text =~ s/%%MODULE%%/$MODULE/g;

    croak "unknown placeholder $1" if $text =~ /(%%[A-Z0-9_]+%%)/;
    return $text;
}

###########################################################################
# Processes

# Wait up to $seconds (scaled) for $cond to return true.
sub _wait_until {
    my ($self, $seconds, $cond) = @_;
    my $deadline = time + $self->scale($seconds);
    while (1) {
        return 1 if $cond->();
        return 0 if time >= $deadline;
        sleep 0.02;
    }
}

# Reap our child $pid within $seconds; true once it is gone.
sub _reap {
    my ($self, $pid, $seconds) = @_;
    return $self->_wait_until($seconds, sub {
        my $r = waitpid($pid, WNOHANG);
        $self->{exit_status} = $? if $r == $pid;
        return $r == $pid || $r == -1;
    });
}

# fork + exec @argv with stdout and stderr appended to $out.
sub _spawn {
    my ($self, $out, @argv) = @_;

    STDOUT->flush;
    STDERR->flush;
    my $pid = fork // croak "fork: $!";
    return $pid if $pid;

    open(STDIN, '<', '/dev/null');
    open(STDOUT, '>>', $out);
    open(STDERR, '>&', \*STDOUT);
    if ($self->{asan}) {
        # The module is built with ASan, nginx is not: the runtime must
        # be the first library loaded.  Leaks are not checked (nginx
        # frees pools at exit only in part); a report goes to stderr,
        # which nginx points at error.log, and done() looks for it.
        $ENV{LD_PRELOAD} = $self->{asan};
        $ENV{ASAN_OPTIONS} = join ':', 'detect_leaks=0:abort_on_error=0',
            grep { defined } $ENV{ASAN_OPTIONS};
    }
    { no warnings 'exec'; exec { $argv[0] } @argv; }
    print STDERR "exec $argv[0]: $!\n";
    POSIX::_exit(127);
}

# nginx -t; returns (ok, what nginx printed).
sub _test_config {
    my ($self) = @_;
    my $dir = $self->{dir};
    my $out = $self->_path('nginx-t.log');

    croak "no nginx.conf: call write_config() first"
        unless -e $self->_path('nginx.conf');
    if ($self->{module} && $MODULE ne 'static' && !-e $MODULE) {
        return (0, "module not built: $MODULE (run make)\n");
    }

    unlink $out;
    my $pid = $self->_spawn($out, $NGINX, '-t', '-p', "$dir/",
        '-c', 'nginx.conf', '-e', "$dir/error.log");
    unless ($self->_reap($pid, 10)) {
        kill 'KILL', $pid;
        waitpid($pid, 0);
        return (0, "nginx -t did not finish\n" . _slurp($out));
    }
    my $ok = $self->{exit_status} == 0;

    # nginx -t creates the pid file, empty, to see that it can.
    unlink $self->_path('nginx.pid');
    return ($ok, _slurp($out));
}

# nginx -t, with "nginx.conf:N" of the first line matching $re (the
# directive under test) written "nginx.conf:LINE"; returns (ok, output).
sub test_config_at {
    my ($self, $re) = @_;
    my ($ok, $out) = $self->_test_config;
    my @lines = split /\n/, $self->read_file('nginx.conf');
    my ($line) = grep { $lines[$_ - 1] =~ $re } 1 .. @lines;
    $out =~ s/nginx\.conf:$line\b/nginx.conf:LINE/g if $line;
    return ($ok, $out);
}

sub run {
    my ($self) = @_;
    my ($ok, $out) = $self->_test_config;
    die "nginx -t failed:\n$out" unless $ok;
    return $self->_start;
}

# Like run(), but a configuration nginx rejects skips the whole test
# file.  Call it before any test has run.
sub try_run {
    my ($self, $reason) = @_;
    my ($ok, $out) = $self->_test_config;
    unless ($ok) {
        Test::More::diag($out) if $ENV{T_VERBOSE};
        Test::More::plan(skip_all => $reason);
    }
    return $self->_start;
}

sub _start {
    my ($self) = @_;
    my $dir = $self->{dir};
    croak 'nginx is already running' if $self->{pid};

    my $pos = -s $self->_path('error.log') // 0;
    my $pid = $self->_spawn($self->_path('stderr.log'), $NGINX,
        '-p', "$dir/", '-c', 'nginx.conf', '-e', "$dir/error.log",
        '-g', 'daemon off;');
    $self->{pid} = $pid;

    # Ready means: the master wrote its pid, the main port accepts
    # connections (when one was reserved) and all workers are there.
    my $port = $self->{ports}{1} && $self->{ports}{1}{port};
    my (%ready, $exited);
    my $ok = $self->_wait_until(10, sub {
        if (waitpid($pid, WNOHANG) == $pid) {
            $exited = $?;
            return 1;
        }
        $ready{pid} ||= _slurp("$dir/nginx.pid") =~ /^\s*$pid\s*$/;
        $ready{port} ||= !$port || _can_connect($port);
        my @w = $self->worker_pids;
        $ready{workers} = @w == $self->{workers};
        return $ready{pid} && $ready{port} && $ready{workers};
    });

    if (defined $exited) {
        $self->{pid} = undef;
        die "nginx exited at start (status $exited):\n"
            . _excerpt($self->_log_since($pos)
                . _slurp($self->_path('stderr.log')));
    }
    unless ($ok) {
        my @missing = grep { !$ready{$_} } qw(pid port workers);
        $self->stop;
        die sprintf("nginx not ready in %gs (no %s):\n%s",
            $self->scale(10), join(', ', @missing),
            _excerpt($self->_log_since($pos)));
    }
    return $self;
}

sub _can_connect {
    my ($port) = @_;
    my $s = IO::Socket::IP->new(PeerHost => '127.0.0.1',
        PeerPort => $port, Proto => 'tcp', Timeout => 1);
    return !!$s;
}

sub _log_since {
    my ($self, $pos) = @_;
    my $log = $self->error_log;
    return length $log > $pos ? substr($log, $pos) : '';
}

# Head and tail of a long text (a worker crashing in a respawn loop can
# log thousands of lines).
sub _excerpt {
    my ($text) = @_;
    my @lines = split /\n/, $text;
    return $text if @lines <= 60;
    return join "\n", @lines[0 .. 39],
        sprintf('... %d lines ...', @lines - 60), @lines[-20 .. -1], '';
}

# Children of the master whose command line says "worker process"
# (including ones "shutting down" after a reload), sorted.
sub worker_pids {
    my ($self) = @_;
    my $master = $self->{pid} or return ();

    opendir(my $dh, '/proc') or return ();
    my @pids;
    for my $pid (grep { /^\d+$/ } readdir $dh) {
        my $stat = _slurp("/proc/$pid/stat");
        # The command name, in parentheses, may itself hold ") ".
        my $rest = substr($stat, rindex($stat, ')') + 1);
        my ($state, $ppid) = split ' ', $rest;
        next unless defined $ppid && $ppid == $master && $state ne 'Z';
        push @pids, $pid if _slurp("/proc/$pid/cmdline") =~ /worker process/;
    }
    # sorted into an array: "sort" in scalar context is undefined,
    # and callers compare the count
    my @sorted = sort { $a <=> $b } @pids;
    return @sorted;
}

# the workers' anonymous resident memory (RssAnon), summed, in kB
sub rss_anon {
    my ($self) = @_;
    my $kb = 0;
    for my $pid ($self->worker_pids) {
        $kb += $1 if _slurp("/proc/$pid/status") =~ /^RssAnon:\s+(\d+)/m;
    }
    return $kb;
}

sub _master_alive {
    my ($self) = @_;
    my $pid = $self->{pid} or return 0;
    my $r = waitpid($pid, WNOHANG);
    return 1 if $r == 0;
    $self->{exit_status} = $? if $r == $pid;
    $self->{pid} = undef;
    return 0;
}

# HUP, then wait until a whole new set of workers runs and the old ones
# are gone.  A configuration nginx rejects logs [emerg] and keeps the
# old workers: that returns false at once (expect_log() the message).
sub reload {
    my ($self, %o) = @_;
    my $pid = $self->{pid} or croak 'nginx is not running';

    my %old = map { $_ => 1 } $self->worker_pids;
    my $pos = -s $self->_path('error.log') // 0;
    kill 'HUP', $pid or return 0;

    my $failed;
    my $ok = $self->_wait_until($o{timeout} // 15, sub {
        if (!$self->_master_alive
            || $self->_log_since($pos) =~ /\[emerg\]/)
        {
            return $failed = 1;
        }
        my @now = $self->worker_pids;
        return @now == $self->{workers} && !grep { $old{$_} } @now;
    });
    return $ok && !$failed ? 1 : 0;
}

sub stop {
    my ($self) = @_;
    my $pid = $self->{pid};
    return $self unless $pid && $self->{owner} == $$;

    my @workers = $self->worker_pids;
    for my $step (['QUIT', 10], ['TERM', 5], ['KILL', 5]) {
        my ($sig, $seconds) = @$step;
        kill $sig, $pid;
        last if $self->_reap($pid, $seconds);
        Test::More::diag("nginx did not exit in ${seconds}s after SIG$sig")
            unless $sig eq 'KILL';
    }

    # Workers outlive a KILLed master and would keep our ports.
    for my $w (@workers) {
        kill 'KILL', $w
            if _slurp("/proc/$w/cmdline") =~ /^nginx: worker process/;
    }

    $self->{pid} = undef;
    return $self;
}

sub restart {
    my ($self) = @_;
    $self->stop;
    return $self->run;
}

###########################################################################
# Log checks

sub error_log {
    my ($self) = @_;
    return $self->read_file('error.log');
}

# Lines matching $re are not held against the test by done().
sub expect_log {
    my ($self, $re) = @_;
    push @{ $self->{expected} }, $re;
    return $self;
}

sub done {
    my ($self) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;

    $self->stop;
    my $log = $self->error_log;
    my $stderr = $self->read_file('stderr.log');

    my @alerts = grep {
        my $line = $_;
        /\[(?:alert|crit|emerg)\]/
            && !grep { $line =~ $_ } @{ $self->{expected} };
    } split /\n/, $log;
    Test::More::ok(!@alerts, 'no alert, crit or emerg in error.log')
        or Test::More::diag(_excerpt(join "\n", @alerts));

    # An ASan report in a worker only shows as "exited with code 1" at
    # [notice]: the report itself is what we must look for.
    my $all = "$log\n$stderr";
    my @reports = $all =~ /^(=+\d+=+ERROR: .*?^SUMMARY: [^\n]*)/gms;
    @reports = grep { /Sanitizer/ } split /\n/, $all unless @reports;
    Test::More::ok(!@reports, 'no sanitizer reports')
        or Test::More::diag(_excerpt($reports[0]),
            @reports > 1 ? sprintf("\n(and %d more)", @reports - 1) : '');

    Test::More::diag("error.log:\n$log")
        if $ENV{T_CATLOG} && !Test::More->builder->is_passing;

    Test::More::done_testing();
}

###########################################################################
# HTTP

sub get {
    my ($self, $path, %o) = @_;
    return $self->req('GET', $path, %o);
}

sub post_json {
    my ($self, $path, $data, %o) = @_;
    return $self->req('POST', $path, json => $data, %o);
}

sub req {
    my ($self, $method, $path, %o) = @_;
    my $port = $self->port($o{port} // 1);
    my $request = $o{raw} // $self->request_bytes($method, $path, %o);
    return $self->_exchange($port, $request, $method,
        $self->scale($o{timeout} // 10));
}

# headers => {name => value} or [name => value, ...] or [[name, value],
# ...]; returns a list of [name, value].
sub _header_pairs {
    my ($h) = @_;
    return () unless $h;
    return map { [$_, $h->{$_}] } sort keys %$h if ref $h eq 'HASH';
    return @$h if ref $h->[0];
    return map { [ @$h[2 * $_, 2 * $_ + 1] ] } 0 .. @$h / 2 - 1;
}

# The bytes of a request.  Host, Connection: close, Content-Type (for
# json) and Content-Length (for a body) are added unless given; a
# header given with an undef value suppresses its default.
sub request_bytes {
    my ($self, $method, $path, %o) = @_;
    my $port = $self->port($o{port} // 1);
    my @headers = _header_pairs($o{headers});
    my %given = map { lc $_->[0] => 1 } @headers;

    my $body = $o{body};
    $body = $JSON->encode($o{json}) if exists $o{json};
    croak 'body must be bytes' if defined $body && !utf8::downgrade($body, 1);

    my @defaults = (['Host', "127.0.0.1:$port"], ['Connection', 'close']);
    push @defaults, ['Content-Type', 'application/json'] if exists $o{json};
    push @defaults, ['Content-Length', length $body]
        if defined $body && !$given{'transfer-encoding'};

    my $head = "$method $path HTTP/1.1\r\n";
    for my $h ((grep { !$given{ lc $_->[0] } } @defaults), @headers) {
        $head .= "$h->[0]: $h->[1]\r\n" if defined $h->[1];
    }
    return "$head\r\n" . ($body // '');
}

sub _exchange {
    my ($self, $port, $request, $method, $timeout) = @_;
    my $deadline = time + $timeout;
    my $reader = EventsTest::Reader->new(method => $method);

    # A server that answers early (413) and closes must not kill us.
    local $SIG{PIPE} = 'IGNORE';

    my $sock = IO::Socket::IP->new(PeerHost => '127.0.0.1',
        PeerPort => $port, Proto => 'tcp', Timeout => $timeout)
        or return $reader->result(error => "connect: $@");
    $sock->blocking(0);
    my $sel = IO::Select->new($sock);

    my $off = 0;
    while ($off < length $request) {
        my $left = $deadline - time;
        return $reader->result(error => 'timeout writing request')
            if $left <= 0;
        next unless $sel->can_write($left);
        my $n = syswrite($sock, $request, 65536, $off);
        if (!defined $n) {
            next if $!{EAGAIN} || $!{EINTR};
            last;    # the server stopped reading: see what it said
        }
        $off += $n;
    }

    until ($reader->complete) {
        my $left = $deadline - time;
        return $reader->result(error => 'timeout') if $left <= 0;
        next unless $sel->can_read($left);
        my $n = sysread($sock, my $buf, 65536);
        if (!defined $n) {
            next if $!{EAGAIN} || $!{EINTR};
            $reader->eof;
            return $reader->result(error => "read: $!");
        }
        if ($n == 0) {
            $reader->eof;
            last;
        }
        $reader->feed($buf);
    }

    return $reader->result;
}

# Types of decoded JSON values.  JSON::PP tells numbers from strings by
# the scalar's flags, so ask before comparing (== makes a string look
# numeric, eq a number look like a string).
sub json_type {
    my ($v) = @_;
    return 'null' unless defined $v;
    return 'bool' if JSON::PP::is_bool($v);
    return ref($v) eq 'HASH' ? 'object' : 'array' if ref $v;
    return JSON::PP->new->allow_nonref->encode($v) =~ /^"/
        ? 'string' : 'number';
}

# What is wrong with $res as the error envelope
#   {"error":{"status":N,"code":"...","message":"...", ...}}
# (empty list: nothing).
sub error_problems {
    my ($self, $res, $status, $code, $param) = @_;
    my @why;

    push @why, sprintf('status %s, expected %s',
        $res->{status} // 'none', $status)
        unless ($res->{status} // 0) == $status;
    my $ct = $res->{headers}{'content-type'} // '';
    push @why, "content-type '$ct'" unless $ct =~ m{^application/json}i;

    my $doc = eval { $JSON->decode($res->{body} // '') };
    return (@why, 'body is not JSON') unless defined $doc;
    return (@why, 'not {"error": {...}} alone')
        unless json_type($doc) eq 'object' && scalar(keys %$doc) == 1
            && json_type($doc->{error}) eq 'object';

    my $e = $doc->{error};
    if (json_type($e->{status}) ne 'number') {
        push @why, 'error.status is not a number';
    } elsif ($e->{status} != $status) {
        push @why, "error.status $e->{status}";
    }
    push @why, sprintf("error.code %s, expected '%s'",
        $JSON->encode($e->{code}), $code)
        unless json_type($e->{code}) eq 'string' && $e->{code} eq $code;
    push @why, 'error.message is not a non-empty string'
        unless json_type($e->{message}) eq 'string'
            && length $e->{message};
    if (defined $param) {
        my @got = grep { json_type($_) eq 'string' }
            @{$e}{qw(param field)};
        push @why, "neither error.param nor error.field is '$param'"
            unless grep { $_ eq $param } @got;
    }
    return @why;
}

sub is_error {
    my ($self, $res, $status, $code, $param, $name) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;

    my @why = $self->error_problems($res, $status, $code, $param);
    my $ok = Test::More::ok(!@why,
        $name // "error $status $code" . (defined $param ? " $param" : ''));
    Test::More::diag(join("\n", @why, 'body: ' . ($res->{body} // '')))
        unless $ok;
    return $ok;
}

###########################################################################
# Concurrency

# Run $code->($i) for $i = 0 .. n-1 in n child processes at once, wait
# for all of them and return what each returned (passed back as JSON,
# so plain data only), in order of $i.  A child that dies or is killed
# at the timeout yields undef, with a diag.  The code must not run
# tests itself: it returns data and the parent tests that.
sub parallel {
    my ($self, %o) = @_;
    my $n = $o{n} // croak 'parallel: n required';
    my $code = $o{code} // croak 'parallel: code required';
    my $json = JSON::PP->new->utf8->canonical->allow_nonref;
    my $parent = $$;
    my $file = sub { $self->_path("parallel.$parent.$_[0].json") };

    # The children wait on this pipe until all of them exist, so that
    # they really do start together.
    pipe(my $gate_r, my $gate_w) or croak "pipe: $!";
    STDOUT->flush;
    STDERR->flush;

    my %kids;
    for my $i (0 .. $n - 1) {
        my $pid = fork;
        unless (defined $pid) {
            kill 'KILL', keys %kids;
            waitpid($_, 0) for keys %kids;
            croak "fork: $!";
        }
        if ($pid == 0) {
            close $gate_w;
            sysread($gate_r, my $x, 1);
            my $r = eval { +{ result => scalar $code->($i) } }
                // { error => "$@" };
            if (open(my $fh, '>', $file->($i))) {
                print {$fh} $json->encode($r);
                close $fh;
            }
            # No END blocks, no Test::More bookkeeping, no stop().
            POSIX::_exit(0);
        }
        $kids{$pid} = $i;
    }
    close $gate_r;
    close $gate_w;

    # Each child by its pid: waitpid(-1) could reap nginx itself.
    $self->_wait_until($o{timeout} // 30, sub {
        delete @kids{ grep { waitpid($_, WNOHANG) } keys %kids };
        return !%kids;
    });
    for my $pid (keys %kids) {
        Test::More::diag("parallel: client $kids{$pid} timed out");
        kill 'KILL', $pid;
        waitpid($pid, 0);
    }

    my @results;
    for my $i (0 .. $n - 1) {
        my $r = eval { $json->decode(_slurp($file->($i))) } // {};
        unlink $file->($i);
        Test::More::diag("parallel: client $i: $r->{error}")
            if defined $r->{error};
        push @results, $r->{result};
    }
    return wantarray ? @results : \@results;
}

###########################################################################

package EventsTest::Reader;

# Incremental parser of one HTTP/1.x response: feed() it bytes as they
# arrive, eof() when the peer closes; complete() says when the message
# is over by its own framing; result() gives the response hash.

use strict;
use warnings;

sub new {
    my ($class, %o) = @_;
    return bless {
        method  => uc($o{method} // 'GET'),
        raw     => '',
        head    => '',
        body    => '',
        headers => {},
        raw_headers => [],
    }, $class;
}

sub feed {
    my ($self, $bytes) = @_;
    $self->{raw} .= $bytes;
    return if $self->{error};
    return $self->_body($bytes) if $self->{framing};

    $self->{head} .= $bytes;
    while ((my $end = index($self->{head}, "\r\n\r\n")) >= 0) {
        my $head = substr($self->{head}, 0, $end + 4, '');
        $self->_parse_head($head) or return;
        # 1xx (100 Continue) precede the real response.
        last unless $self->{status} =~ /^1/ && $self->{status} != 101;
        push @{ $self->{informational} }, $self->{status};
    }
    return unless $self->{framing};
    $self->_body(delete $self->{head});
}

sub _parse_head {
    my ($self, $head) = @_;
    my ($line, @lines) = split /\r\n/, $head;

    unless ($line =~ m{^HTTP/(\d\.\d) (\d{3})(?: (.*))?$}) {
        $self->{error} = 'bad status line: ' . ($line // '');
        return 0;
    }
    @{$self}{qw(status_line status reason)} = ($line, $2, $3 // '');
    $self->{headers} = {};
    $self->{raw_headers} = [];
    for (@lines) {
        my ($name, $value) = /^([^:]+):[ \t]*(.*?)[ \t]*$/ or next;
        push @{ $self->{raw_headers} }, [$name, $value];
        my $h = \$self->{headers}{ lc $name };
        $$h = defined $$h ? "$$h, $value" : $value;
    }

    my $h = $self->{headers};
    my $status = $self->{status};
    if ($status =~ /^1/ && $status != 101) {
        return 1;
    } elsif ($self->{method} eq 'HEAD' || $status == 204
        || $status == 304)
    {
        $self->{framing} = 'none';
    } elsif (($h->{'transfer-encoding'} // '') =~ /chunked\s*$/i) {
        $self->{framing} = 'chunked';
        $self->{chunked} = EventsTest::Chunked->new;
    } elsif (defined $h->{'content-length'}) {
        $self->{framing} = 'length';
        $self->{left} = $h->{'content-length'} + 0;
    } else {
        $self->{framing} = 'close';
    }
    $self->{complete} = 1
        if $self->{framing} eq 'none'
            || $self->{framing} eq 'length' && !$self->{left};
    return 1;
}

sub _body {
    my ($self, $bytes) = @_;
    my $framing = $self->{framing};

    if ($self->{complete}) {
        $self->{extra} .= $bytes;
    } elsif ($framing eq 'chunked') {
        my $c = $self->{chunked};
        $self->{body} .= $c->feed($bytes);
        $self->{error} = $c->error if $c->error;
        $self->{complete} = $c->done;
        $self->{extra} .= $c->extra if $c->done && length $c->extra;
    } elsif ($framing eq 'length') {
        my $take = substr($bytes, 0, $self->{left}, '');
        $self->{body} .= $take;
        $self->{left} -= length $take;
        $self->{complete} = !$self->{left};
        $self->{extra} .= $bytes if length $bytes;
    } else {
        $self->{body} .= $bytes;
    }
}

sub eof {
    my ($self) = @_;
    $self->{eof} = 1;
    $self->{complete} = 1
        if ($self->{framing} // '') eq 'close' && !$self->{error};
}

sub complete { $_[0]{complete} || $_[0]{error} }
sub headers_done { !!$_[0]{framing} }

sub result {
    my ($self, %o) = @_;
    my $error = $o{error} // $self->{error};
    $error //= 'incomplete response'
        if $self->{eof} && !$self->{complete};

    my $res = {
        status      => $self->{framing} ? $self->{status} + 0 : undef,
        status_line => $self->{status_line},
        headers     => $self->{headers},
        raw_headers => $self->{raw_headers},
        body        => $self->{body},
        chunked     => ($self->{framing} // '') eq 'chunked' ? 1 : 0,
        raw         => $self->{raw},
        json        => undef,
    };
    $res->{trailers} = [ $self->{chunked}->trailers ] if $self->{chunked};
    $res->{extra} = $self->{extra} if defined $self->{extra};
    $res->{error} = $error if defined $error;

    if (($res->{headers}{'content-type'} // '')
        =~ m{^application/json\s*(?:;|$)}i)
    {
        $res->{json} = eval { $JSON->decode($res->{body}) };
    }
    return $res;
}

###########################################################################

package EventsTest::Chunked;

# Incremental decoder of the chunked transfer coding (RFC 9112 7.1),
# strict about CRLF so that framing bugs show.

use strict;
use warnings;

sub new { bless { state => 'size', buf => '', trailers => [] }, $_[0] }

sub done { $_[0]{state} eq 'done' }
sub error { $_[0]{error} }
sub trailers { @{ $_[0]{trailers} } }
sub extra { $_[0]{state} eq 'done' ? $_[0]{buf} : '' }

# Takes raw bytes, returns the decoded ones among them.
sub feed {
    my ($self, $bytes) = @_;
    my $out = '';
    $self->{buf} .= $bytes;

    while (!$self->{error} && $self->{state} ne 'done') {
        my $state = $self->{state};
        if ($state eq 'size' || $state eq 'trailer') {
            my $i = index($self->{buf}, "\r\n");
            if ($i < 0) {
                $self->{error} = 'chunk size line too long'
                    if length $self->{buf} > 4096;
                last;
            }
            my $line = substr($self->{buf}, 0, $i + 2, '');
            chop $line;
            chop $line;
            if ($state eq 'trailer') {
                $self->{state} = 'done' if $line eq '';
                push @{ $self->{trailers} }, $line if $line ne '';
            } elsif ($line =~ /^([0-9a-fA-F]{1,15})[ \t]*(?:;.*)?$/) {
                $self->{left} = hex $1;
                $self->{state} = $self->{left} ? 'data' : 'trailer';
            } else {
                $self->{error} = "bad chunk size line '$line'";
            }
        } elsif ($state eq 'data') {
            last unless length $self->{buf};
            my $take = substr($self->{buf}, 0, $self->{left}, '');
            $out .= $take;
            $self->{left} -= length $take;
            $self->{state} = 'crlf' unless $self->{left};
        } else {    # crlf after the data
            last if length $self->{buf} < 2;
            if (substr($self->{buf}, 0, 2, '') ne "\r\n") {
                $self->{error} = 'no CRLF after chunk data';
            }
            $self->{state} = 'size';
        }
    }
    return $out;
}

1;

__END__

=head1 NAME

EventsTest - nginx test harness for ngx_http_events_module

=head1 CONSTRUCTION

  my $t = EventsTest->new(%opt);

  workers      => 2      worker_processes (default 2)
  module       => 1      0: %%GLOBALS%% has no load_module (stock nginx)
  events_block => 1      0: %%GLOBALS%% has no "events {}" block
  user         => ...    as root: worker user, default 'nobody' (with
                         its primary group), test dir made 0755;
                         undef: no "user" directive, dir left 0700

The module is $ENV{T_MODULE}, default <repo>/build/ngx_http_events_module.so;
T_MODULE=static leaves load_module out, for an nginx built with the module
in it (make compat: T_NGINX=build/compat/VERSION/static/objs/nginx).
Environment: T_KEEP keep the test dir, T_DEBUG debug error log, T_ASAN
path to libasan.so (LD_PRELOAD, timeouts x3), T_CATLOG dump error.log
when a test failed, T_NGINX nginx binary (default /usr/sbin/nginx).

=head1 FILES AND CONFIGURATION

  $t->write_config($text)        writes nginx.conf, expanding:
  $t->write_file($name, $text)   (returns the path)
      %%GLOBALS%%       load_module, worker_processes, pid, lock_file,
                        error_log, user (as root), events {}
      %%HTTP_GLOBALS%%  access_log and all *_temp_path in the test dir
      %%PORT%% %%PORT_N%% %%TESTDIR%% %%MODULE%%
  $t->read_file($name)  $t->testdir  $t->worker_dir($name)
  $t->port($n)          port for index $n (1 = main), stable

=head1 PROCESSES

  $t->run                nginx -t (dies with its output), then start;
                         waits for pid file, port(1) and all workers
  $t->try_run($reason)   same, but nginx -t failure: skip_all
  $t->master_pid         $t->worker_pids (sorted)
  $t->rss_anon           the workers' RssAnon summed, kB
  $t->reload             true when all workers were replaced
  $t->stop               QUIT, TERM, KILL; idempotent
  $t->restart            stop + run on the same dir
  $t->error_log          $t->expect_log(qr/.../)
  $t->done               stop, log checks (2 tests), done_testing

=head1 HTTP

  my $r = $t->req($method, $path, headers => {...} | [...],
      json => $data | body => $bytes, port => $n, timeout => 10,
      raw => $request_bytes);
  $t->get($path, %o);  $t->post_json($path, $data, %o);

  $r = { status => 200, status_line => '...', headers => { lc => v },
         raw_headers => [[name, value], ...], body => $bytes,
         json => $decoded_or_undef, chunked => 0|1, trailers => [...],
         raw => $all_bytes, error => 'timeout' (only on failure) }

  $t->is_error($r, $status, $code, $param_or_field, $name)
  $t->error_problems($r, $status, $code, $param)   (list of strings)
  my @results = $t->parallel(n => $n, code => sub { my ($i) = @_; ... },
      timeout => 30);

=cut
