# The node lock table cannot be steered by a client.  Before, a key's slot
# was chosen and matched by two seeded CRC32Cs; CRC is affine, so a key of
# the victim's length with the victim's CRC32C shared its slot under both
# seeds, and the victim waited for the attacker's slow fill (or timed
# out).  Now the slot comes from SipHash under random keys kept in the
# zone, and a second keyed hash confirms the match.
use lib 't/lib';
use Test::CacheGuard 'no_plan';
use Test::CacheGuard::Assert;
use Test::CacheGuard::Preset;

use POSIX ();

guard_preamble(
    zone     => '4m',
    upstream => 1,
    config   => guard_location(x_guard => '$cache_guard_status',
                               extra => 'add_header X-Key "$cache_guard_key" always;'),
    init     => 'origin_reset();',
);

# CRC32C (Castagnoli, reflected), as the module computed it before.
my @T = map {
    my $c = $_;
    $c = $c & 1 ? ($c >> 1) ^ 0x82f63b78 : $c >> 1 for 1 .. 8;
    $c;
} 0 .. 255;

sub crc32c {
    my ($seed, $data) = @_;
    my $c = ~$seed & 0xffffffff;
    $c = $T[($c ^ $_) & 0xff] ^ ($c >> 8) for unpack 'C*', $data;
    return ~$c & 0xffffffff;
}

# A string of $victim's length that starts with $prefix and has its CRC32C
# (under every seed: equal lengths): 16 characters 0x40..0x4f after the
# prefix are solved for, 4 free bits each, over GF(2).
sub forge {
    my ($victim, $prefix) = @_;
    my $free = 16;
    die "the prefix is too long\n" if length($prefix) + $free > length $victim;
    my $base = $prefix . ('@' x $free)
               . substr($victim, length($prefix) + $free);
    my $c0 = crc32c(0, $base);
    my @cols;
    for my $p (0 .. $free - 1) {
        for my $bit (0 .. 3) {
            my $t = $base;
            substr($t, length($prefix) + $p, 1) = chr(0x40 | (1 << $bit));
            push @cols, crc32c(0, $t) ^ $c0;
        }
    }
    my $want = $c0 ^ crc32c(0, $victim);
    my $n = @cols;
    my @rows = map { my $ob = $_;
                     [ [map { ($cols[$_] >> $ob) & 1 } 0 .. $n - 1],
                       ($want >> $ob) & 1 ] } 0 .. 31;
    my ($r, @piv) = (0);
    for my $col (0 .. $n - 1) {
        my ($sel) = grep { $rows[$_][0][$col] } $r .. 31;
        next unless defined $sel;
        @rows[$r, $sel] = @rows[$sel, $r];
        for my $k (0 .. 31) {
            next if $k == $r || !$rows[$k][0][$col];
            $rows[$k][0][$_] ^= $rows[$r][0][$_] for 0 .. $n - 1;
            $rows[$k][1] ^= $rows[$r][1];
        }
        push @piv, $col;
        last if ++$r == 32;
    }
    for my $k ($r .. 31) { return undef if $rows[$k][1] }
    my @x = (0) x $n;
    $x[$piv[$_]] = $rows[$_][1] for 0 .. $#piv;
    my $out = $base;
    for my $p (0 .. $free - 1) {
        my $v = 0;
        $v |= $x[$p * 4 + $_] << $_ for 0 .. 3;
        substr($out, length($prefix) + $p, 1) = chr(0x40 | $v);
    }
    return $out;
}

run_tests();

__DATA__

=== TEST 1: a URL forged to the victim key's CRC32C does not share its lock: the victim is not held behind the attacker's slow fill
--- user_files
>>> p.lua
return { key = "$uri$is_args$args", ttl = 60, jitter = 0,
         lock = { wait = 1, on_timeout = "error" } }
--- check
my $victim = '/nbk/victim/item-0000000000000001000000';
my $evil = main::forge($victim, '/nbk/slow?delay=4&p=');
ok(defined $evil, "forged $evil");
is(length $evil, length $victim, 'of the same length');
is(sprintf('%08x %08x', main::crc32c(0, $evil), main::crc32c(0x9e3779b9, $evil)),
   sprintf('%08x %08x', main::crc32c(0, $victim), main::crc32c(0x9e3779b9, $victim)),
   'with the same CRC32Cs under both seeds the module used');

# the attacker's slow fill first, holding its lock; then the victim
my $pid = fork // die "fork: $!";
if ($pid == 0) {
    my $r = http_get($evil, timeout => 20);
    POSIX::_exit($r->{status} == 200 ? 0 : 1);
}
ok(wait_for(sub { origin_inflight() >= 1 }, 10, 'the attacker at the origin'),
   'the attacker\'s fill is at the origin');
my $v = http_get($victim, timeout => 20);
is($v->{status}, 200, 'the victim is served by the origin, not refused')
    or diag("victim: $v->{status} " . guard($v));
waitpid $pid, 0;
is($?, 0, 'the attacker is served too, after its 4 s');
is(guard($v), 'MISS', 'as a miss of its own');
is(origin_count('/nbk/victim/item-0000000000000001000000'), 1,
   'the origin served the victim');
--- no_error_log
[error]
[alert]
