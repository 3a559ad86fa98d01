#!/usr/bin/perl

# The zone survives nginx -s reload with its events, epoch and cursors;
# a changed size is a new zone with a new epoch, and old cursors get 410.

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

    events_zone main SIZE;

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
EOF

(my $c = $conf) =~ s/SIZE/4m/;
$t->write_config($c);
$t->run;

for my $n (1 .. 50) {
    $t->post_json('/events', { type => 'before.reload', resourceId => 'r-1',
        payload => { data => { n => $n } } });
}

my $list = $t->get('/events?limit=100');
my $epoch = $t->get('/events-status')->{json}{epoch};
my $mid = $t->get('/events?limit=20')->{json}{next};
my @old = $t->worker_pids;

ok($t->reload, 'reloaded');
my @new = $t->worker_pids;
ok(!grep({ my $o = $_; grep { $_ == $o } @new } @old), 'new workers');

is($t->get('/events-status')->{json}{epoch}, $epoch, 'same epoch');
my $again = $t->get('/events?limit=100');
is($again->{body}, $list->{body}, 'the same events, the same cursors');
is(scalar @{ $again->{json}{data} }, 50, 'all 50');
is_deeply([ map { $_->{seq} } @{ $t->get("/events?after=$mid&limit=100")
    ->{json}{data} } ], [ 21 .. 50 ], 'a cursor from before goes on');

my $r = $t->post_json('/events', { type => 'after.reload' });
is($r->{json}{seq}, 51, 'seq goes on after the reload');
is(scalar @{ $t->get('/events/before/r-1?limit=100')->{json}{data} }, 50,
    'the entity index survived');
is($t->get('/events/types')->{json}{data}[1]{count}, 50,
    'the catalog survived');

# another size is another zone: a new epoch, old cursors are foreign
($c = $conf) =~ s/SIZE/5m/;
$t->write_config($c);
ok($t->reload, 'reloaded with another size');
isnt($t->get('/events-status')->{json}{epoch}, $epoch, 'a new epoch');
is(scalar @{ $t->get('/events')->{json}{data} }, 0, 'a new, empty zone');
$t->is_error($t->get("/events?after=$mid"), 410, 'epoch_changed', 'after',
    'an old cursor is from another incarnation');

$t->done;
