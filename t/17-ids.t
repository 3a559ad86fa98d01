#!/usr/bin/perl

# Server-made ids: ULIDs whose 80 random bits cannot be computed from the
# ids a client has seen.  Before, a worker drew them from splitmix64,
# whose output function is invertible: one id gave the state, and the
# state every later id of that worker.  The test runs exactly that
# attack on the ids of one batch (one worker, consecutive draws).

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use Math::BigInt;
use EventsTest;

my $t = EventsTest->new;

$t->write_config(<<'EOF');
%%GLOBALS%%
http {
    %%HTTP_GLOBALS%%

    events_zone main 4m;

    server {
        listen 127.0.0.1:%%PORT%%;

        location /events {
            events_api main;
        }
    }
}
EOF

$t->run;

###########################################################################
# splitmix64, and the inverse of its output function

my $M64 = Math::BigInt->new(2)->bpow(64);
my $GAMMA = Math::BigInt->from_hex('9e3779b97f4a7c15');
my $C1 = Math::BigInt->from_hex('bf58476d1ce4e5b9');
my $C2 = Math::BigInt->from_hex('94d049bb133111eb');
my $C1_INV = $C1->copy->bmodinv($M64);
my $C2_INV = $C2->copy->bmodinv($M64);

sub xsr { my ($x, $k) = @_; $x->copy->bxor($x->copy->brsft($k)) }

sub unxsr {
    my ($y, $k) = @_;
    my $x = $y->copy;
    $x = $y->copy->bxor($x->copy->brsft($k)) for 1 .. int(64 / $k) + 1;
    return $x;
}

sub mix {
    my ($z) = @_;
    $z = xsr($z, 30)->bmul($C1)->bmod($M64);
    $z = xsr($z, 27)->bmul($C2)->bmod($M64);
    return xsr($z, 31);
}

sub unmix {
    my ($z) = @_;
    $z = unxsr($z, 31)->bmul($C2_INV)->bmod($M64);
    $z = unxsr($z, 27)->bmul($C1_INV)->bmod($M64);
    return unxsr($z, 30);
}

my $probe = Math::BigInt->from_hex('0123456789abcdef');
is(mix(unmix($probe))->as_hex, $probe->as_hex, 'the inverse inverts');

# an id's 80 random bits, as the old generator laid them out: the low 64
# the whole first draw, the 16 above the second draw's low two bytes,
# swapped
my %B32;
@B32{ split //, '0123456789ABCDEFGHJKMNPQRSTVWXYZ' } = 0 .. 31;

sub random80 {
    my ($id) = @_;
    my $v = Math::BigInt->new(0);
    $v->blsft(5)->badd($B32{$_}) for split //, substr($id, 4);
    return $v->bmod(Math::BigInt->new(2)->bpow(80));
}

sub predict_next {
    my ($id) = @_;
    my $state = unmix(random80($id)->bmod($M64));
    my $next1 = mix($state->copy->badd($GAMMA->copy->bmul(2))->bmod($M64));
    my $next2 = mix($state->copy->badd($GAMMA->copy->bmul(3))->bmod($M64));
    my $low16 = $next2->bmod(65536)->numify;
    my $swapped = (($low16 & 0xff) << 8) | ($low16 >> 8);
    return Math::BigInt->new($swapped)->blsft(64)->badd($next1);
}

###########################################################################
# the attack, on one batch: one worker, consecutive draws

my $r = $t->post_json('/events', [ map { { type => 'a.b' } } 1 .. 40 ]);
is($r->{status}, 201, 'a batch of 40');
my @ids = map { $_->{id} } @{ $r->{json}{data} // [] };
is(scalar @ids, 40, '40 ids');
like($_, qr/^evt_[0-9A-HJKMNP-TV-Z]{26}$/, "$_ is a ULID") for @ids[0, -1];

my $hits = grep { predict_next($ids[$_])->bcmp(random80($ids[$_ + 1])) == 0 }
    0 .. $#ids - 1;
is($hits, 0, 'no id follows from the one before');

# a few thousand, across workers: no repeats, bits that vary
my %seen;
my $ones = 0;
for (1 .. 25) {
    $r = $t->post_json('/events', [ map { { type => 'a.b' } } 1 .. 100 ]);
    for my $ev (@{ $r->{json}{data} // [] }) {
        $seen{ $ev->{id} }++;
        $ones += () = random80($ev->{id})->as_bin =~ /1/g;
    }
}
is(scalar keys %seen, 2500, '2500 distinct ids');
my $mean = $ones / 2500;
ok($mean > 38 && $mean < 42, "about half of 80 bits set ($mean)");

$t->done;
