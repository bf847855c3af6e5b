# L2: Redis as the tier every node shares.  Tests read and write the test
# redis-server directly, and count what reached the test origin.
use lib 't/lib';
use Test::CacheGuard 'no_plan';
use Test::CacheGuard::Assert;
use Test::CacheGuard::Preset;

guard_preamble(
    zone     => '4m',
    redis    => 'timeout=1s',
    upstream => 1,
    init     => 'origin_reset(); redis_flush();',
);

run_tests();

__DATA__

=== TEST 1: miss then hit, and the entry is in Redis under the prefix
--- config
    location / {
        cache_guard main;
        proxy_pass http://origin;
        add_header X-Guard "$cache_guard_status $cache_guard_level" always;
    }
--- request eval
["GET /a?size=1024", "GET /a?size=1024", "GET /a?size=1024"]
--- response_headers eval
["X-Guard: MISS", "X-Guard: HIT l1", "X-Guard: HIT l1"]
--- check
is(origin_count('/a'), 1, 'one origin request');
ok(stored('cg:http://localhost/a?size=1024'), 'stored');
my $v = redis('GET', 'cg:http://localhost/a?size=1024');
ok(defined $v, 'the entry is in Redis');
is(substr($v, 0, 4), "CGE\x01", 'in the entry format');
my $pttl = redis('PTTL', 'cg:http://localhost/a?size=1024');
ok($pttl > 0 && $pttl <= 66000, "PTTL $pttl within ttl 60 s + 10% jitter");
--- no_error_log
[error]
[alert]



=== TEST 2: L1 hit with Redis emptied behind it
--- config
    location / {
        cache_guard main;
        proxy_pass http://origin;
        add_header X-Guard "$cache_guard_status $cache_guard_level" always;
    }
--- check
http_get('/l1');
redis_flush();
my $r = http_get('/l1');
is($r->{headers}{'x-guard'}, 'HIT l1', 'served from L1 with Redis empty');
is(origin_count('/l1'), 1, 'one origin request');



=== TEST 3: L2 hit from a fresh nginx (empty L1): the entry another node stored
--- config
    location / {
        cache_guard main;
        proxy_pass http://origin;
        add_header X-Guard "$cache_guard_status $cache_guard_level" always;
    }
--- check
my $first = http_get('/l2?size=3000&hdr=X-From:origin');
is($first->{headers}{'x-guard'}, 'MISS', 'first node fills');
ok(stored('cg:http://localhost/l2?size=3000&hdr=X-From:origin'), 'stored');
start_second_nginx(<<'CONF');
    location / {
        cache_guard main;
        proxy_pass http://origin;
        add_header X-Guard "$cache_guard_status $cache_guard_level" always;
    }
CONF
my $port2 = $ENV{TEST_NGINX_SERVER_PORT2};
my $r = http_get('/l2?size=3000&hdr=X-From:origin', port => $port2);
is($r->{headers}{'x-guard'}, 'HIT l2', 'second node hits in Redis');
is($r->{body}, $first->{body}, 'same body');
is($r->{headers}{'x-from'}, 'origin', 'same headers');
is($r->{headers}{'content-type'}, 'application/json', 'same content type');
$r = http_get('/l2?size=3000&hdr=X-From:origin', port => $port2);
is($r->{headers}{'x-guard'}, 'HIT l1', 'then from its own L1');
is(origin_count('/l2'), 1, 'one origin request for both nodes');



=== TEST 4: jitter: 200 keys with ttl=100, jitter=0.2 spread over [80 s, 120 s]
--- config
    location / {
        cache_guard main;
        cache_guard_policy $TEST_NGINX_HTML_DIR/p.lua;
        proxy_pass http://origin;
    }
--- user_files
>>> p.lua
return { ttl = 100, jitter = 0.2, key = "$uri" }
--- check
http_get("/j/$_") for 1 .. 200;
ok(!(grep { !stored("cg:/j/$_") } 1 .. 200), "all 200 keys stored");
my (%seen, $out, $min, $max) = ();
for my $i (1 .. 200) {
    my $pttl = redis('PTTL', "cg:/j/$i");
    $out++ if $pttl < 79000 || $pttl > 120000;
    $seen{int($pttl / 1000)}++;
    $min = $pttl if !defined $min || $pttl < $min;
    $max = $pttl if !defined $max || $pttl > $max;
}
ok(!$out, 'no PTTL outside [80 s, 120 s] (1 s allowed for the test run)');
ok(keys %seen > 20, 'PTTLs spread over more than 20 distinct seconds');
ok($min < 90000 && $max > 110000, "both ends reached: min $min, max $max");
is(origin_total(), 200, '200 fills');



=== TEST 5: a negative entry is stored with negative_ttl
--- config
    location / {
        cache_guard main;
        cache_guard_policy $TEST_NGINX_HTML_DIR/p.lua;
        proxy_pass http://origin;
        add_header X-Guard "$cache_guard_status $cache_guard_level" always;
    }
--- user_files
>>> p.lua
return { ttl = 300, negative_ttl = 7, jitter = 0, key = "$uri", l1 = false }
--- check
http_get('/gone?status=410');
ok(stored('cg:/gone'), 'stored');
my $pttl = redis('PTTL', 'cg:/gone');
ok($pttl > 5000 && $pttl <= 7000, "negative PTTL $pttl is about 7 s");
my $r = http_get('/gone?status=410');
is($r->{status}, 410, 'stored status served');
is($r->{headers}{'x-guard'}, 'NEGATIVE l2', 'served from Redis as NEGATIVE');
is(origin_count('/gone'), 1, 'one origin request');



=== TEST 6: uncacheable responses leave no key in Redis
--- config
    location / {
        cache_guard main;
        cache_guard_policy $TEST_NGINX_HTML_DIR/p.lua;
        proxy_pass http://origin;
    }
--- user_files
>>> p.lua
return { key = "$uri", max_entry_size = "4k" }
--- check
http_get('/cookie?hdr=Set-Cookie:a%3Db');
http_get('/nostore?hdr=Cache-Control:no-store');
http_get('/auth', headers => { Authorization => 'Basic YTpi' });
http_get('/big?size=5000');
http_get('/err?status=503');
http_get('/ok');
ok(wait_for(sub { defined redis('GET', 'cg:/ok') }, 5, 'the cacheable one'),
   'the cacheable response is in Redis');
is(redis('EXISTS', "cg:$_"), 0, "no key for $_")
    for qw(/cookie /nostore /auth /big /err);



=== TEST 7: a corrupt value in Redis is a miss, logged, and overwritten
--- config
    location / {
        cache_guard main;
        cache_guard_policy $TEST_NGINX_HTML_DIR/p.lua;
        proxy_pass http://origin;
        add_header X-Guard "$cache_guard_status $cache_guard_level" always;
    }
--- user_files
>>> p.lua
return { key = "$uri", l1 = false }
--- check
redis('SET', 'cg:/bad', "CGE\x01" . ("\xff" x 100));
redis('SET', 'cg:/foreign', '{"some":"other app"}');
for my $path ('/bad', '/foreign') {
    my $r = http_get($path);
    is($r->{status}, 200, "$path answered");
    is($r->{headers}{'x-guard'}, 'MISS', "$path is a miss");
    like($r->{body}, qr/"path":"\Q$path\E"/, "$path body from the origin");
    ok(wait_for(sub { substr(redis('GET', "cg:$path") // '', 0, 4) eq "CGE\x01"
                      && length(redis('GET', "cg:$path")) != 104 }, 5),
       "$path overwritten with a valid entry");
    $r = http_get($path);
    is($r->{headers}{'x-guard'}, 'HIT l2', "$path is then a hit");
    is(origin_count($path), 1, "$path: one origin request");
}
my $log = error_log_since_block();
like($log, qr/invalid entry for "\/bad" in redis/, 'the corrupt entry is logged');



=== TEST 8: a value of the wrong type in Redis is a miss, not an error
--- config
    location / {
        cache_guard main;
        cache_guard_policy $TEST_NGINX_HTML_DIR/p.lua;
        proxy_pass http://origin;
        add_header X-Guard "$cache_guard_status $cache_guard_level" always;
    }
--- user_files
>>> p.lua
return { key = "$uri", l1 = false }
--- init
redis('RPUSH', 'cg:/list', 'a', 'b');
--- request
GET /list
--- error_code: 200
--- response_headers
X-Guard: MISS
--- no_error_log
[alert]
[crit]



=== TEST 9: a large entry (500 KiB) round-trips through Redis
--- config
    location / {
        cache_guard main;
        cache_guard_policy $TEST_NGINX_HTML_DIR/p.lua;
        proxy_pass http://origin;
        add_header X-Guard "$cache_guard_status $cache_guard_level" always;
    }
--- user_files
>>> p.lua
return { key = "$uri", l1 = false, max_entry_size = "1m" }
--- check
my $miss = http_get('/large?size=512000');
ok(stored('cg:/large'), 'stored');
my $hit = http_get('/large?size=512000');
is($hit->{headers}{'x-guard'}, 'HIT l2', 'a hit from Redis');
is(length $hit->{body}, 512000, 'whole body');
is($hit->{body}, $miss->{body}, 'identical body');
is(origin_count('/large'), 1, 'one origin request');
