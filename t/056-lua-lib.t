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
--- request eval
["GET /api/catalog?page=0", "GET /api/catalog?sort=weight",
 "GET /api/catalog?sort=name&page=2&utm=x", "GET /api/catalog?page=2&utm=y&sort=name",
 "GET /api/catalog?page=3&status=404", "GET /api/catalog?page=3"]
--- error_code eval
[400,      # page out of range refused
 400,      # an unknown sort refused
 undef,
 undef,
 404,      # the demo API answers ?status=404 with a 404
 200]      # which the plain page never gets: the key holds status=
--- response_body_like eval
[qr/argument \\"page\\" must be from 1 to 1000/, undef, undef, undef, undef, undef]
--- response_headers eval
[undef,
 undef,
 "X-Key: localhost|/api/catalog|page=2|sort=name\nX-Guard: MISS",
 "X-Guard: HIT",     # argument order and tracking arguments share the entry
 undef,
 "X-Guard: MISS"]    # its own entry
--- check
is_deeply([map { $_->{target} } origin_log()],
          ['/api/catalog?sort=name&page=2&utm=x',
           '/api/catalog?page=3&status=404', '/api/catalog?page=3'],
          'one origin request for page 2, one for each page 3');
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
--- request eval
["GET /x?size=500", "GET /x?size=10&size=5000", "GET /y?size=10&%73ize=7000",
 "GET /z?%73ize=9000", "GET /w?SIZE=90&size=10", "GET /v?size=%zz",
 "GET /u?size=1%30", "GET /u?size=10&size=10", "GET /x?size=10"]
--- error_code eval
[400,      # over the rule's max: refused
 400,      # given twice with another value: refused
 400,      # an encoded second name: refused
 400,      # an encoded name is checked as the name: 9000 refused
 400,      # the name in another case is the same argument
 400,      # a value that does not decode: refused
 200,
 undef,
 200]
--- response_headers eval
[undef, undef, undef, undef, undef, undef,
 "X-Key: localhost|/u|size=10",    # a value is keyed decoded
 "X-Guard: HIT",                   # the same value twice is one argument
 undef]
--- response_body_like eval
[undef,
 qr/argument \\"size\\" is given twice/,
 undef, undef, undef, undef, undef, undef,
 # /x?size=10 is its own: 10 bytes, as the origin reads size
 qr/\A.{10}\z/s]
--- check
is(origin_count($_), 0, "nothing of $_ reached the origin") for qw(/y /z /w);
is(origin_count('/x'), 1, '/x?size=10 filled by itself');
--- no_error_log
[error]
[alert]
