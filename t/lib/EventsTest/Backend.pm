package EventsTest::Backend;

# A small HTTP/1.1 backend on loopback, forked by a test, steered by the
# request's own headers so that each test says what it wants answered:
#
#   X-Status: 201            the status (default 200)
#   X-Location: /api/t/7     a Location header
#   X-Content-Type: ...      the Content-Type (default application/json)
#   X-Body: ...              the body (default: the request's body)
#   X-Body-Size: N           a JSON body of N bytes: {"id":"big","pad":"xx.."}
#   X-Emit: ...              an X-Event-Emit header (X-Emit-2, X-Emit-3 too)
#   X-Slow: N                the body in N pieces, 0.3 s apart, chunked
#   X-Delay: S               wait S seconds before answering
#   X-Reject-If: TEXT        422 {"error":"rejected by the backend"} when
#                            the request's body holds TEXT
#
# It answers one connection at a time and appends "METHOD PATH TYPE BODY"
# of each request to log(), so a test can see what reached it.

use strict;
use warnings;

use IO::Socket::IP;
use Time::HiRes qw(sleep);
use POSIX ();

sub start {
    my ($class, $t, $n) = @_;
    my $port = $t->port($n);
    my $log = $t->testdir . "/backend-$n.log";

    my $sock = IO::Socket::IP->new(LocalHost => '127.0.0.1',
        LocalPort => $port, Proto => 'tcp', Listen => 64, ReuseAddr => 1)
        or die "backend on $port: $@";

    my $pid = fork // die "fork: $!";

    if ($pid == 0) {
        $SIG{PIPE} = 'IGNORE';
        while (my $c = $sock->accept) {
            eval { _serve($c, $log) };
            close $c;
        }
        POSIX::_exit(0);
    }

    close $sock;
    return bless { pid => $pid, port => $port, log => $log }, $class;
}

sub port { $_[0]{port} }

sub log {
    my ($self) = @_;
    open my $fh, '<', $self->{log} or return ();
    chomp(my @lines = <$fh>);
    return @lines;
}

sub stop {
    my ($self) = @_;
    return unless $self->{pid};
    kill 'TERM', $self->{pid};
    waitpid $self->{pid}, 0;
    delete $self->{pid};
}

sub DESTROY { local ($?, $@, $!); $_[0]->stop }

sub _serve {
    my ($c, $log) = @_;
    local $/ = "\r\n";
    $c->autoflush(1);

    my $line = <$c> // return;
    my ($method, $path) = $line =~ m{^(\S+) (\S+)} or return;
    my %h;
    while (my $l = <$c>) {
        last if $l eq "\r\n";
        $l =~ s/\r\n$//;
        my ($k, $v) = split /:\s*/, $l, 2;
        $h{ lc $k } = $v;
    }

    my $body = '';
    read($c, $body, $h{'content-length'}) if $h{'content-length'};

    open my $fh, '>>', $log or die "$log: $!";
    print $fh "$method $path ", $h{'content-type'} // '-', " $body\n";
    close $fh;

    sleep $h{'x-delay'} if $h{'x-delay'};

    my $status = $h{'x-status'} // 200;
    my $type = $h{'x-content-type'} // 'application/json';
    my $out = $h{'x-body'} // $body;
    if (defined $h{'x-reject-if'} && index($body, $h{'x-reject-if'}) >= 0) {
        $status = 422;
        $out = '{"error":"rejected by the backend"}';
    }
    if (my $size = $h{'x-body-size'}) {
        $out = '{"id":"big","pad":"' . ('x' x ($size - 21)) . '"}';
    }

    my $head = "HTTP/1.1 $status X\r\nContent-Type: $type\r\n"
        . "Connection: close\r\n";
    $head .= "Location: $h{'x-location'}\r\n" if $h{'x-location'};
    for my $k ('x-emit', 'x-emit-2', 'x-emit-3') {
        $head .= "X-Event-Emit: $h{$k}\r\n" if defined $h{$k};
    }

    if (my $pieces = $h{'x-slow'}) {
        print $c "${head}Transfer-Encoding: chunked\r\n\r\n";
        my $len = int(length($out) / $pieces) || 1;
        my @parts = unpack("(a$len)*", $out);
        for my $i (0 .. $#parts) {
            printf $c "%x\r\n%s\r\n", length $parts[$i], $parts[$i];
            sleep 0.3 if $i < $#parts;
        }
        print $c "0\r\n\r\n";
        return;
    }

    print $c $head . 'Content-Length: ' . length($out) . "\r\n\r\n";
    print $c $out unless $method eq 'HEAD' || $status == 204;
}

1;
