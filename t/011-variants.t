# The gzip variant of a key cannot be named by a URL: it is marked after a
# NUL byte, which nginx refuses in request lines, decoded URIs and
# headers.  Before, the variant was the key plus "#gzip", so a client that
# asked for /u/42%23gzip (or sent a raw "#gzip" in the request line)
# filled the entry every gzip-capable client of /u/42 was served.
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

our %gz = (headers => { 'Accept-Encoding' => 'gzip, deflate' });

run_tests();

__DATA__

=== TEST 1: key "$host$uri": /u/42%23gzip answered 404 does not poison the gzip clients of /u/42
--- user_files
>>> p.lua
return { key = "$host$uri", ttl = 60, jitter = 0, negative_ttl = 60 }
--- config
    location /u/ {
        cache_guard main;
        cache_guard_policy $TEST_NGINX_HTML_DIR/p.lua;
        proxy_pass http://origin;
        add_header X-Guard "$cache_guard_status $cache_guard_level" always;
        add_header X-Key $cache_guard_key always;
    }
--- check
my $evil = http_get('/u/42%23gzip?status=404');
is($evil->{status}, 404, 'the attacker gets the origin\'s 404');
is($evil->{headers}{'x-key'}, 'localhost/u/42#gzip',
   'under a key of its own, as its URI decodes');
ok(stored('cg:localhost/u/42#gzip'), 'stored as a negative entry');

for my $i (1 .. 3) {
    my $r = http_get('/u/42', %main::gz);
    is($r->{status}, 200, "gzip client $i of /u/42 gets 200");
    like($r->{headers}{'x-guard'}, $i == 1 ? qr/^MISS/ : qr/^HIT/,
         "gzip client $i: " . ($i == 1 ? 'a miss' : 'a hit'));
}
is(origin_count('/u/42'), 1, 'the origin served /u/42 once');
ok(stored("cg:localhost/u/42\0gzip"), 'the real variant is after a NUL');
is(http_get('/u/42')->{status}, 200, 'a client without gzip gets 200 too');
--- no_error_log
[error]
[alert]



=== TEST 2: the default key: a raw "#gzip" in the request line does not fill the gzip variant of /v?id=5
--- config
    location /v {
        cache_guard main;
        proxy_pass http://origin;
        add_header X-Guard "$cache_guard_status $cache_guard_level" always;
    }
--- check
origin_set('/v', status => 404);
my $evil = http_get('/v?id=5#gzip');
is($evil->{status}, 404, 'the raw request line is accepted and answered 404');
origin_clear('/v');

my $r = http_get('/v?id=5', %main::gz);
is($r->{status}, 200, 'a gzip client of /v?id=5 gets the origin\'s 200');
like($r->{headers}{'x-guard'}, qr/^MISS/, 'as a miss: nothing was there');
$r = http_get('/v?id=5', %main::gz);
like($r->{headers}{'x-guard'}, qr/^HIT/, 'then a hit');
is($r->{status}, 200, 'of the 200');
is(origin_count('/v'), 2, 'the origin saw the two distinct keys');
--- no_error_log
[error]
[alert]



=== TEST 3: a key hook that returns a NUL byte is not cached (it could name a variant)
--- user_files
>>> p.lua
return {
  ttl = 60, jitter = 0,
  key = function(r) return "/w" .. string.char(0) .. "gzip" end,
}
--- config
    location /w {
        cache_guard main;
        cache_guard_policy $TEST_NGINX_HTML_DIR/p.lua;
        proxy_pass http://origin;
        add_header X-Guard "$cache_guard_status" always;
    }
--- request eval
["GET /w", "GET /w"]
--- error_code
200
--- response_headers
X-Guard: BYPASS
--- check
is(origin_count('/w'), 2, 'both requests reached the origin');
is(redis('DBSIZE'), 0, 'nothing in Redis');
--- no_error_log
[error]
[alert]



=== TEST 4: a '#' in the request target (nginx cuts $args there, proxy_pass sends it whole) is not cached, and fails the argument rules
--- user_files
>>> p.lua
return { key = "$host$uri$is_args$args", ttl = 60, jitter = 0 }
>>> v.lua
return { ttl = 60, jitter = 0,
         validate = { args = { size = { type = "int", min = 1, max = 100 } } } }
--- config
    location /x {
        cache_guard main;
        cache_guard_policy $TEST_NGINX_HTML_DIR/p.lua;
        proxy_pass http://origin;
        add_header X-Guard "$cache_guard_status" always;
    }
    location /v {
        cache_guard main;
        cache_guard_policy $TEST_NGINX_HTML_DIR/v.lua;
        proxy_pass http://origin;
        add_header X-Guard "$cache_guard_status" always;
    }
--- check
my $r = http_get('/x?size=10#&size=5000');
is(guard($r), 'BYPASS', 'a target with a \'#\' bypasses the cache');
is(redis('DBSIZE'), 0, 'nothing stored');
$r = http_get('/x?size=10');
is(guard($r) . ' ' . length($r->{body}), 'MISS 10',
   '/x?size=10 gets its own answer, not the 5000 bytes');
$r = http_get('/v?size=10#&size=5000');
is($r->{status}, 400, 'the argument rules refuse it');
like($r->{body}, qr/request target/, 'saying why');
is(origin_count('/v'), 0, 'it never reached the origin');
--- no_error_log
[error]
[alert]
