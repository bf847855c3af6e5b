# Avalanche: keys written at the same moment must not expire at the same
# moment.  2,000 keys are filled within a few seconds with ttl = 20,
# jitter = 0.2, and the expiry Redis holds for each is read back: every
# stored TTL lies in [16 s, 24 s], spread over the whole range, and no
# second of the range sees many more expiries than the average.
use lib 't/lib';
use Test::CacheGuard 'no_plan';
use Test::CacheGuard::Assert;
use Test::CacheGuard::Preset;

use List::Util qw(max min sum);
use Time::HiRes qw(time);

guard_preamble(
    zone     => '32m',
    redis    => 'timeout=1s',
    upstream => 1,
    init     => 'origin_reset(); redis_flush();',
);

use constant { KEYS => 2000, BATCH => 200 };

# Fills /av/1 .. /av/KEYS in concurrent batches of BATCH.  Returns the
# responses and, per key, the time window (s) in which its SET reached
# Redis: from the start of its batch to the moment all keys of the batch
# were there.
sub fill_all {
    my (@res, @window);
    for (my $first = 1; $first <= KEYS; $first += BATCH) {
        my @ids = $first .. min($first + BATCH - 1, KEYS);
        my $start = time;
        my $batch = http_concurrent(scalar @ids, sub { "/av/$ids[$_[0]]" });
        wait_for(sub { redis('EXISTS', map { "cg:/av/$_" } @ids) == @ids },
                 10, "the SETs of keys $ids[0] .. $ids[-1]");
        my $end = time;
        push @res, @$batch;
        $window[$_] = [$start, $end] for @ids;
    }
    return (\@res, \@window);
}

# Absolute expiry (ms since the epoch) of each key, from its PTTL and the
# time the PTTL was asked: [earliest, latest] it can be.
sub expiries {
    my @expiry;
    for my $i (1 .. KEYS) {
        my $before = time;
        my $pttl = redis('PTTL', "cg:/av/$i");
        my $after = time;
        $expiry[$i] = $pttl < 0 ? undef
                    : [$before * 1000 + $pttl, $after * 1000 + $pttl];
    }
    return \@expiry;
}

sub stddev {
    my @v = @_;
    my $mean = sum(@v) / @v;
    return sqrt(sum(map { ($_ - $mean) ** 2 } @v) / @v);
}

run_tests();

__DATA__

=== TEST 1: 2,000 keys filled at once with ttl = 20, jitter = 0.2 expire spread over [16 s, 24 s]
--- config
    location / {
        cache_guard main;
        cache_guard_policy $TEST_NGINX_HTML_DIR/p.lua;
        proxy_pass http://origin;
        add_header X-Guard "$cache_guard_status $cache_guard_level" always;
    }
--- user_files
>>> p.lua
-- No stale window: the PX written to Redis is the jittered TTL itself.
return {
  key = "$uri",
  ttl = 20, jitter = 0.2,
  stale = { while_revalidate = 0, if_error = 0 },
  early_refresh = false,
}
--- check
my $KEYS = KEYS;
my $t0 = time;
my ($res, $window) = fill_all();
my $span = time - $t0;
note(sprintf '%d keys filled in %.2f s', $KEYS, $span);
is(scalar(grep { $_->{status} == 200 && guard($_) eq 'MISS' } @$res), $KEYS,
   "all $KEYS requests were answered 200 by a fill") or diag(tally($res));
is(origin_total(), $KEYS, "the origin saw $KEYS requests");

my $expiry = expiries();
my @missing = grep { !defined $expiry->[$_] } 1 .. $KEYS;
is(scalar @missing, 0, "all $KEYS keys are in Redis with an expiry")
    or diag("missing or without expiry: @missing[0 .. min(9, $#missing)]");

# The stored TTL of a key is its expiry minus the moment of its SET, which
# lies in its batch's window: out of [16 s, 24 s] only when the whole
# interval this allows is (5 ms for the rounding of times).
my (@low, @high, @ttl);
for my $i (grep { defined $expiry->[$_] } 1 .. $KEYS) {
    my ($e0, $e1) = @{$expiry->[$i]};
    my ($w0, $w1) = map { $_ * 1000 } @{$window->[$i]};
    push @low, $i if $e1 - $w0 < 16000 - 5;
    push @high, $i if $e0 - $w1 > 24000 + 5;
    push @ttl, ($e0 + $e1) / 2 - ($w0 + $w1) / 2;
}
is(scalar @low, 0, 'no stored TTL under 16 s')
    or diag(join ', ', map { "/av/$_" } @low[0 .. min(9, $#low)]);
is(scalar @high, 0, 'no stored TTL over 24 s')
    or diag(join ', ', map { "/av/$_" } @high[0 .. min(9, $#high)]);

# The spread: one-second buckets of the stored TTL, 8 of them in range.
my %bucket;
$bucket{int(($_ - 16000) / 1000)}++ for @ttl;
my $largest = max values %bucket;
my $shape = join ' ', map { "${\($_ + 16)}s:$bucket{$_}" }
    sort { $a <=> $b } keys %bucket;
ok(keys %bucket >= 7, 'stored TTLs fall in at least 7 of the 8 seconds')
    or diag($shape);
ok($largest <= 2 * $KEYS / 8,
   "no second holds more than twice the average ($largest)") or diag($shape);
ok(min(@ttl) < 17000 && max(@ttl) > 23000,
   sprintf('both ends of the range are reached: %.0f .. %.0f ms',
           min(@ttl), max(@ttl)));
my $sd = stddev(@ttl) / 1000;
ok($sd >= 1.8 && $sd <= 2.8,
   sprintf 'the spread is uniform\'s (8/sqrt(12) = 2.31 s): %.2f s', $sd);

# What the avalanche is about: how many keys expire in the same second.
my %second;
$second{int(($_->[0] + $_->[1]) / 2000 - $t0)}++
    for grep { defined } @$expiry[1 .. $KEYS];
my $peak = max values %second;
ok($peak <= 2 * $KEYS / 8,
   "at most twice the average expire in any one second ($peak)")
    or diag(join ' ', map { "+${_}s:$second{$_}" }
                      sort { $a <=> $b } keys %second);
--- no_error_log
[error]
[alert]
[crit]
is full
