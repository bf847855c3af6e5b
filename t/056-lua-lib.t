# The Lua library under lua/ (validators, key builders) and the example
# policies the demo uses: policies find it through LUA_PATH, read when
# nginx reads its configuration.
use lib 't/lib';
use Cwd qw(getcwd);
BEGIN { $ENV{LUA_PATH} = getcwd() . '/lua/?.lua;;' }
use Test::CacheGuard 'no_plan';
use Test::CacheGuard::Assert;
use Test::CacheGuard::Preset;

guard_preamble(
    zone  => '4m',
    redis => 'timeout=1s',
    init  => 'origin_reset(); redis_flush();',
);

run_tests();

__DATA__

=== TEST 1: the demo's catalog policy: library validators and key builder
--- config
    location /api/catalog {
        cache_guard main;
        cache_guard_policy $TEST_NGINX_ROOT/lua/examples/catalog.lua;
        proxy_pass http://127.0.0.1:$TEST_NGINX_ORIGIN_PORT;
        add_header X-Guard $cache_guard_status always;
        add_header X-Key $cache_guard_key always;
    }
--- check
my $r = http_get('/api/catalog?page=0');
is($r->{status}, 400, 'page out of range refused');
like($r->{body}, qr/argument \\"page\\" must be from 1 to 1000/, 'with the reason');
is(http_get('/api/catalog?sort=weight')->{status}, 400, 'an unknown sort refused');
$r = http_get('/api/catalog?sort=name&page=2&utm=x');
is($r->{headers}{'x-key'}, 'localhost|/api/catalog|page=2|sort=name', 'the key');
is(guard($r), 'MISS', 'a miss');
$r = http_get('/api/catalog?page=2&utm=y&sort=name');
is(guard($r), 'HIT', 'argument order and tracking arguments share the entry');
is(origin_total(), 1, 'one origin request');
is(http_get('/api/catalog?page=3&status=404')->{status}, 404,
   'the demo API answers ?status=404 with a 404');
$r = http_get('/api/catalog?page=3');
is($r->{status}, 200, 'which the plain page never gets: the key holds status=');
is(guard($r), 'MISS', 'its own entry');
--- no_error_log
[error]



=== TEST 2: the demo's users policy: declarative rules and the Bloom filter of ids
--- http_config
    cache_guard_bloom users capacity=1000 error_rate=0.01 file=$TEST_NGINX_HTML_DIR/ids.txt;
--- user_files
>>> ids.txt
1
9
--- config
    location ~ ^/api/users/([0-9]+)$ {
        cache_guard main;
        cache_guard_policy $TEST_NGINX_ROOT/lua/examples/users.lua;
        proxy_pass http://127.0.0.1:$TEST_NGINX_ORIGIN_PORT;
        add_header X-Guard $cache_guard_status always;
    }
--- request eval
["GET /api/users/5000", "GET /api/users/1", "GET /api/users/9?status=404",
 "GET /api/users/9?status=404", "GET /api/users/9"]
--- error_code eval
[404,      # an id not in the filter refused
 200,      # a numeric id passes
 404,      # a 404 passes through
 undef,
 200]      # but only for ?status=404: the key is $host$request_uri
--- response_headers eval
["X-Guard: BLOOM_REJECT",    # by the Bloom filter
 undef,
 undef,
 "X-Guard: NEGATIVE",        # and is remembered
 "X-Guard: MISS"]            # the plain URL has its own entry
--- check
is(origin_total(), 3, 'the refused requests never reached the origin');
--- no_error_log
[error]



=== TEST 3: a policy next to a module of its own finds it without LUA_PATH
--- config
    location / {
        cache_guard main;
        cache_guard_policy $TEST_NGINX_HTML_DIR/p.lua;
        proxy_pass http://127.0.0.1:$TEST_NGINX_ORIGIN_PORT;
        add_header X-Key $cache_guard_key always;
    }
--- user_files
>>> mykeys.lua
return { tenant = function(r) return "t:" .. (r:header("X-Tenant") or "-") .. r.uri end }
>>> p.lua
local mykeys = require "mykeys"
return { key = mykeys.tenant }
--- request
GET /x
--- more_headers
X-Tenant: acme
--- response_headers
X-Key: t:acme/x
--- no_error_log
[error]



=== TEST 4: a library misuse is reported when nginx reads the policy
--- config
    location / {
        cache_guard main;
        cache_guard_policy $TEST_NGINX_HTML_DIR/p.lua;
        return 200;
    }
--- user_files
>>> p.lua
local v = require "cache_guard.validate"
return { validate = v.all(v.int_arg("id"), "oops") }
--- must_die
--- error_log eval
qr{p\.lua:2: cache_guard\.validate\.all: check 2 is a string, not a function}



=== TEST 5: r:arg and the library read arguments as the origin does: a repeated or encoded name cannot pass a rule or fill another URL's key
--- user_files
>>> p.lua
local key = require "cache_guard.key"
local v = require "cache_guard.validate"
return {
  ttl = 60, jitter = 0,
  key = key.uri_with_args({ "size" }),
  validate = v.all(v.int_arg("size", { min = 1, max = 100 })),
}
--- config
    location / {
        cache_guard main;
        cache_guard_policy $TEST_NGINX_HTML_DIR/p.lua;
        proxy_pass http://127.0.0.1:$TEST_NGINX_ORIGIN_PORT;
        add_header X-Guard $cache_guard_status always;
        add_header X-Key $cache_guard_key always;
    }
--- check
is(http_get('/x?size=500')->{status}, 400, 'over the rule\'s max: refused');
my $r = http_get('/x?size=10&size=5000');
is($r->{status}, 400, 'given twice with another value: refused');
like($r->{body}, qr/argument \\"size\\" is given twice/, 'with the reason');
$r = http_get('/y?size=10&%73ize=7000');
is($r->{status}, 400, 'an encoded second name: refused');
$r = http_get('/z?%73ize=9000');
is($r->{status}, 400, 'an encoded name is checked as the name: 9000 refused');
$r = http_get('/w?SIZE=90&size=10');
is($r->{status}, 400, 'the name in another case is the same argument');
$r = http_get('/v?size=%zz');
is($r->{status}, 400, 'a value that does not decode: refused');
$r = http_get('/u?size=1%30');
is($r->{status} . ' ' . $r->{headers}{'x-key'}, '200 localhost|/u|size=10',
   'a value is keyed decoded');
$r = http_get('/u?size=10&size=10');
is(guard($r), 'HIT', 'the same value twice is one argument');
for my $p ('/x', '/y', '/z', '/w') {
    is(origin_count($p), 0, "nothing of $p reached the origin");
}
$r = http_get('/x?size=10');
is($r->{status} . ' ' . length($r->{body}), '200 10',
   'and /x?size=10 is its own: 10 bytes, as the origin reads size');
is(origin_count('/x'), 1, 'filled by itself');
--- no_error_log
[error]
[alert]
