#!/usr/bin/perl

# Many clients writing at once over many connections, so that both
# workers write: every event is stored once, seqs strictly increasing
# with no gap or duplicate, and a reader paging while writers run never
# skips nor repeats an event.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use EventsTest;

my $t = EventsTest->new(workers => 2);

$t->write_config(<<'EOF2');
%%GLOBALS%%
http {
    %%HTTP_GLOBALS%%

    events_zone main 32m;

    server {
        listen 127.0.0.1:%%PORT%%;

        location /events {
            events_api main;
        }

        location = /events-status {
            events_status main;
        }
    }
}
EOF2

$t->run;

my ($clients, $each) = (8, 60);

# writers, each on fresh connections, with a reader paging alongside
my @res = $t->parallel(n => $clients + 1, timeout => 60, code => sub {
    my ($i) = @_;

    if ($i == $clients) {
        my (@seen, $after);
        my $empty = 0;
        my $deadline = time + 30;
        while (time < $deadline) {
            my $q = '/events?limit=7' . ($after ? "&after=$after" : '');
            my $r = $t->get($q);
            return { error => "$r->{status} $r->{body}" }
                unless $r->{status} == 200;
            push @seen, map { $_->{seq} } @{ $r->{json}{data} };
            $after = $r->{json}{next};
            $empty = @{ $r->{json}{data} } ? 0 : $empty + 1;
            last if @seen >= $clients * $each;
            select(undef, undef, undef, 0.01) if $empty;
        }
        return { seen => \@seen };
    }

    my (@ids, @bad);
    for my $n (1 .. $each) {
        my $r = $t->post_json('/events', {
            type => 'load.written', resourceId => "c$i",
            payload => { data => { client => $i, n => $n } } });
        if ($r->{status} == 201) {
            push @ids, [ $r->{json}{id}, $r->{json}{seq} ];
        } else {
            push @bad, "$r->{status} $r->{body}";
        }
    }
    return { ids => \@ids, bad => \@bad };
});

my (@all, @bad);
for my $i (0 .. $clients - 1) {
    push @all, @{ $res[$i]{ids} // [] };
    push @bad, @{ $res[$i]{bad} // [] };
}
is(scalar @all, $clients * $each, 'every write answered 201');
is_deeply(\@bad, [], 'no write failed');

my @seqs = sort { $a <=> $b } map { $_->[1] } @all;
is_deeply(\@seqs, [ 1 .. $clients * $each ],
    'seqs are 1..N: no gap, no duplicate');

# each client's own seqs increase in the order it wrote
my $ordered = 1;
for my $i (0 .. $clients - 1) {
    my @s = map { $_->[1] } @{ $res[$i]{ids} // [] };
    $ordered &&= !grep { $s[$_] <= $s[$_ - 1] } 1 .. $#s;
}
ok($ordered, 'a client\'s seqs increase in its order');

# the reader that paged during the writes saw each event exactly once
my $seen = $res[$clients]{seen} // [];
is_deeply($seen, [ 1 .. $clients * $each ],
    'paging while writing never skips nor repeats')
    or diag(substr(join(',', @$seen), 0, 400));

# everything is readable afterwards, by id and by list
my $missing = grep { $t->get("/events/$_->[0]")->{status} != 200 }
    @all[ map { $_ * 7 } 0 .. int($#all / 7) ];
is($missing, 0, 'a sample of ids reads back');

my (@list, $after);
for (1 .. 20) {
    my $r = $t->get('/events?limit=1000' . ($after ? "&after=$after" : ''));
    push @list, map { $_->{seq} } @{ $r->{json}{data} };
    last unless $r->{json}{has_more};
    $after = $r->{json}{next};
}
is_deeply(\@list, [ 1 .. $clients * $each ], 'the list has them all');

# both workers wrote
my $st = $t->get('/events-status')->{json};
my @writers = grep { $_->{published} > 0 } @{ $st->{workers} };
is(scalar @writers, 2, 'both workers stored events')
    or diag(explain($st->{workers}));
is($st->{events}{stored}, $clients * $each, 'status counts them');

$t->done;
