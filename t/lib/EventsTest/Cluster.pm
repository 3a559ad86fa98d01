package EventsTest::Cluster;

# What the cluster tests (t/70-t/79, t/96-t/99) share: a cluster node's
# nginx.conf (two workers, one events zone on a Redis URL, the API and
# the status, the stream and the webhooks when asked), the waits for a
# node to follow the log, every page of a list, a Redis Cluster of
# masters, and the end of a test with several nodes.
#
#     use EventsTest::Cluster qw(node pages list_all caught_up finish);
#
#     my @nodes = map { node($redis->url, zone => '16m',
#         cluster => 'prefix=t70 timeout=1s', heartbeat => '500ms') } 1 .. 3;
#     caught_up($_) for @nodes;
#     my @events = list_all($nodes[0]);
#     my ($events, $statuses) = pages($nodes[1], '/events?order=desc',
#         limit => 250);
#     finish(@nodes);
#
# Core Perl only.  POD at the end.

use strict;
use warnings;

use Carp qw(croak);
use Exporter qw(import);
use Test::More ();
use Time::HiRes qw(sleep);

use EventsTest;
use EventsTest::Daemon;
use EventsTest::Redis;

our @EXPORT_OK = qw(node config pages list_all wait_list status_until
    cluster_status caught_up tailed readable stop_ok finish redis_cluster
    id_of);

my %OPTION = map { $_ => 1 } qw(zone cluster http server listen heartbeat
    status webhooks locations run);

sub config {
    my ($url, %o) = @_;
    my @bad = grep { !$OPTION{$_} } sort keys %o;
    croak "EventsTest::Cluster: unknown option(s) @bad" if @bad;

    my $zone = $o{zone} // '4m';
    my $cluster = join ' ', grep { length } $url, $o{cluster} // '';
    my $listen = join ' ', grep { length } '127.0.0.1:%%PORT%%',
        $o{listen} // '';
    my $status = exists $o{status} ? $o{status} : '/events-status';

    my $http = _indent($o{http}, 4);
    my $server = _indent($o{server}, 8);
    my $locations = '';

    if (defined $o{heartbeat}) {
        $locations .= <<"EOF";

        location /events/stream {
            events_stream main;
            events_heartbeat $o{heartbeat};
        }
EOF
    }

    $locations .= "\n        location /events { events_api main; }\n";

    if (defined $status) {
        $locations .= "        location = $status { events_status main; }\n";
    }

    if (defined $o{webhooks}) {
        $server = "        events_webhook_allow 127.0.0.1/32;\n$server";
        $locations .= <<"EOF";
        location /webhooks { events_webhooks main; }

        location = /_events_webhook {
            internal;
            proxy_pass \$events_webhook_url;
            proxy_set_header Host \$events_webhook_host;
            proxy_connect_timeout 2s;
            proxy_read_timeout $o{webhooks};
        }
EOF
    }

    $locations .= _indent($o{locations}, 8);

    return <<"EOF";
%%GLOBALS%%
http {
    %%HTTP_GLOBALS%%

    events_zone main $zone;
    events_cluster main $cluster;
$http
    server {
        listen $listen;
$server$locations    }
}
EOF
}

# a caller's directives indented to their block: the first line's own
# indent and the indent the later lines share are taken away
sub _indent {
    my ($text, $n) = @_;
    return '' unless defined $text && length $text;
    my ($first, @rest) = split /\n/, $text;
    my ($common) = sort { $a <=> $b }
        map { /^( *)/; length $1 } grep { /\S/ } @rest;
    $common //= 0;
    my $out = ' ' x $n . ($first =~ s/^\s+//r) . "\n";
    for my $line (@rest) {
        $out .= $line =~ /\S/ ? ' ' x $n . substr($line, $common) . "\n"
                              : "\n";
    }
    return $out;
}

sub node {
    my ($url, %o) = @_;
    my $run = exists $o{run} ? delete $o{run} : 1;
    my $t = EventsTest->new(workers => 2);
    $t->write_config(config($url, %o));
    $t->run if $run;
    return $t;
}

# every page of a list, following "next" ("before" for order=desc)
sub pages {
    my ($t, $path, %o) = @_;
    my $limit = $o{limit} // 1000;
    my $cursor = $o{after};
    my $sep = $path =~ /\?/ ? '&' : '?';
    my $dir = $path =~ /order=desc/ ? 'before' : 'after';
    my (@all, @statuses);
    for (1 .. 10000) {
        my $r = $t->get("$path${sep}limit=$limit"
            . ($cursor ? "&$dir=$cursor" : ''),
            $o{headers} ? (headers => $o{headers}) : ());
        push @statuses, $r->{status};
        last unless $r->{status} == 200;
        push @all, @{ $r->{json}{data} };
        last unless $r->{json}{has_more};
        $cursor = $r->{json}{next};
    }
    return (\@all, \@statuses);
}

sub list_all {
    my ($t, $path, %o) = @_;
    my ($all, $statuses) = pages($t, $path // '/events', %o);
    return () if grep { $_ != 200 } @$statuses;
    return @$all;
}

sub wait_list {
    my ($t, $cond, $path) = @_;
    my @ev;
    for (1 .. 200) {
        @ev = list_all($t, $path);
        return @ev if $cond->(@ev);
        sleep 0.05;
    }
    return @ev;
}

sub status_until {
    my ($t, $cond, $tries) = @_;
    my $s = {};
    for (1 .. $tries // 200) {
        $s = $t->get('/events-status')->{json} // {};
        last if $cond->($s);
        sleep 0.05;
    }
    return $s;
}

sub cluster_status {
    my ($t) = @_;
    return ($t->get('/events-status')->{json} // {})->{cluster} // {};
}

sub caught_up {
    my ($t) = @_;
    my $s = status_until($t, sub { ($_[0]{cluster} // {})->{caughtUp} });
    return ($s->{cluster} // {})->{caughtUp} ? 1 : 0;
}

sub tailed {
    my ($t, $n) = @_;
    return status_until($t,
        sub { (($_[0]{cluster} // {})->{lastSeq} // 0) >= $n }, 400);
}

sub readable {
    my ($t) = @_;
    for (1 .. 200) {
        return 1 if $t->get('/events')->{status} == 200;
        sleep 0.05;
    }
    return 0;
}

sub stop_ok {
    my ($t, $name) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    $t->stop;
    my @bad = grep {
        my $l = $_;
        /\[(?:alert|crit|emerg)\]/ && !grep { $l =~ $_ } @{ $t->{expected} };
    } split /\n/, $t->error_log;
    my $ok = Test::More::ok(!@bad,
        $name // 'no alert, crit or emerg in a node\'s error.log');
    Test::More::diag(join "\n", @bad[0 .. ($#bad < 9 ? $#bad : 9)])
        unless $ok;
    return $ok;
}

sub finish {
    my (@t) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    my $last = pop @t;
    stop_ok($_) for @t;
    $last->done;
}

sub redis_cluster {
    my ($n) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;

    # the cluster bus of each master on a port of its own, held like the
    # rest
    my (@masters, @hold);
    for (1 .. $n // 3) {
        my (undef, $udp, $bus) = EventsTest::Daemon::reserve_port();
        push @hold, $udp;
        undef $udp;
        push @masters, EventsTest::Redis->new(args => [ '--cluster-enabled',
            'yes', '--cluster-config-file', 'nodes.conf', '--cluster-port',
            $bus, '--cluster-node-timeout', '5000' ]);
    }
    @hold = ();

    my $cmd = "$EventsTest::Redis::CLI --cluster create "
        . join(' ', map { '127.0.0.1:' . $_->port } @masters)
        . ' --cluster-replicas 0 --cluster-yes 2>&1';
    my $create = `$cmd`;
    Test::More::like($create, qr/All 16384 slots covered/,
        'redis-cli --cluster create');

    my $ok = 0;
    for (1 .. 200) {
        $ok = grep {
            ($_->cli('CLUSTER', 'INFO') // '') =~ /cluster_state:ok/
        } @masters;
        last if $ok == @masters;
        sleep 0.05;
    }
    Test::More::is($ok, scalar @masters, 'the Redis Cluster is up');
    return @masters;
}

sub id_of {
    my ($redis) = @_;
    return (split ' ', $redis->cli('CLUSTER', 'MYID') // '')[0] // '';
}

1;

__END__

=head1 NAME

EventsTest::Cluster - cluster nodes, their waits and lists, for the tests

=head1 FUNCTIONS

Exported on request (C<use EventsTest::Cluster qw(node finish)>).

=over

=item node($url, %options)

A new EventsTest with two workers whose nginx.conf is a cluster node's
(C<config()>), started.  C<< run => 0 >> only writes the file (for
C<< $t->_test_config >>).

=item config($url, %options)

The nginx.conf text: C<events_zone main SIZE;>, C<events_cluster main
URL PARAMETERS;>, and one server on C<127.0.0.1:%%PORT%%> with
C<location /events { events_api main; }> and C<location =
/events-status { events_status main; }>.  Options:

  zone      => '16m'          the zone's size (default 4m)
  cluster   => 'prefix=t70 timeout=1s'
                              events_cluster's parameters after the URL
  http      => "..."          more directives in http{}, after
                              events_cluster (other zones, webhooks)
  listen    => 'sndbuf=16k'   more parameters of listen
  server    => "..."          more directives in server{}
  heartbeat => '500ms'        adds location /events/stream with
                              events_stream main and that heartbeat
  status    => '/ready'       where events_status main is (default
                              /events-status; undef: nowhere)
  webhooks  => '10s'          adds events_webhook_allow 127.0.0.1/32,
                              location /webhooks (events_webhooks main)
                              and the /_events_webhook proxy location
                              with proxy_read_timeout 10s
  locations => "..."          more locations

Text options are indented to their block: the first line's own indent
and the indent the later lines share are replaced by the block's.  An
unknown option dies.

=item pages($t, $path, limit => N, after => CURSOR, headers => \%h)

Every page of the list at C<$path> (which may have a query), C<limit>
events a page (default 1000), following C<next> (as C<after>, or as
C<before> when the path asks C<order=desc>), from C<after> if given.
Stops at the first answer that is not 200.  Returns the events and the
statuses of the pages: C<(\@events, \@statuses)>.

=item list_all($t, $path, %options)

The events of C<pages()> (path default C</events>), or an empty list
when a page was not 200: a caller that waits for a count waits on.

=item wait_list($t, $cond, $path)

Polls C<list_all()> every 50 ms, at most 200 times, until
C<< $cond->(@events) >> is true; returns the last list.

=item status_until($t, $cond, $tries)

Polls C<GET /events-status> until C<< $cond->($json) >> is true, every
50 ms, at most C<$tries> times (default 200: 10 s); returns the last
JSON (C<{}> when there was none).

=item cluster_status($t)

The C<cluster> object of the node's status now (C<{}> when none).

=item caught_up($t)

Waits up to 10 s until the status says C<caughtUp>; 1 or 0.

=item tailed($t, $n)

Waits up to 20 s until the node's tailer has read seq C<$n>
(C<cluster.lastSeq>); returns the last status JSON.

=item readable($t)

Waits up to 10 s until C<GET /events> is 200 (the node has read the
log); 1 or 0.

=item stop_ok($t, $name)

Stops a node and runs one test: no [alert], [crit] or [emerg] in its
error.log but what C<expect_log()> allowed (default name "no alert,
crit or emerg in a node's error.log"); the first ten such lines are
diagnosed.

=item finish(@nodes)

C<stop_ok()> for every node but the last, then the last one's
C<done()>, which ends the test.

=item redis_cluster($n)

C<$n> (default 3) EventsTest::Redis masters, cluster-enabled, each
cluster bus on a reserved port, joined by C<redis-cli --cluster create>
with every slot assigned.  Runs two tests: the create covered all 16384
slots ("redis-cli --cluster create"), and every master says
C<cluster_state:ok> within 10 s ("the Redis Cluster is up").  Returns
the masters.

=item id_of($redis)

The node id of a Redis Cluster master (C<CLUSTER MYID>).

=back

=cut
