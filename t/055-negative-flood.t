# Negative caching under attack: negative entries live apart from positive
# ones in L1, so a flood of keys that do not exist never evicts hot
# entries, and a policy keeps at most negative_max_entries of them.
use lib 't/lib';
use Test::CacheGuard 'no_plan';
use Test::CacheGuard::Assert;
use Test::CacheGuard::Preset;

guard_preamble(
    config => guard_location(pass => 'http://127.0.0.1:$TEST_NGINX_ORIGIN_PORT'),
    init   => 'origin_reset();',
);

run_tests();

__DATA__

=== TEST 1: a flood of 5,000 distinct 404 keys does not evict 100 hot positive keys from L1
--- event_config
    worker_connections 4096;
--- http_config
    cache_guard_zone main size=1m;
--- user_files
>>> p.lua
return { key = "$uri", ttl = 600, negative_ttl = 600, jitter = 0 }
--- check
http_get("/hot/$_?size=2000") for 1 .. 100;
is(origin_total(), 100, '100 hot keys filled');
my $got = 0;
for my $batch (0 .. 9) {
    my $flood = http_concurrent(500, sub { "/nope/$batch-$_[0]?status=404" },
                                timeout => 60);
    $got += grep { $_->{status} == 404 } @$flood;
}
is($got, 5000, 'the flood of 5,000 distinct keys got its 404s');
my $hits = 0;
for (1 .. 100) {
    $hits++ if guard(http_get("/hot/$_?size=2000")) eq 'HIT l1';
}
is($hits, 100, 'every hot key is still an L1 hit');
is(origin_total(), 5100, 'the hot keys did not go back to the origin');
--- error_log
zone "main" is full, evicting least recently used entries
--- no_error_log
[error]
[crit]



=== TEST 2: negative_max_entries bounds a policy's negative entries in L1
--- http_config
    cache_guard_zone main size=4m;
--- user_files
>>> p.lua
return { key = "$uri", negative_ttl = 600, negative_max_entries = 10 }
--- check
http_get("/nf/$_?status=404") for 1 .. 20;
my $l1 = 0;
for (1 .. 20) {
    $l1++ if guard(http_get("/nf/$_?status=404")) eq 'NEGATIVE l1';
}
is($l1, 10, 'only 10 negative entries were kept in L1');
is(origin_total(), 30, 'the others went back to the origin (no Redis here)');
--- no_error_log
[error]
