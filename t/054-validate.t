# Penetration protection, validation: declarative rules checked in C and
# Lua hooks (key, validate) with the request object.  A rejected request
# gets the configured status and a JSON error, and reaches neither Redis
# nor the origin (the origin counts, Redis is read).
use lib 't/lib';
use Test::CacheGuard 'no_plan';
use Test::CacheGuard::Assert;
use Test::CacheGuard::Preset;

guard_preamble(
    zone   => '4m',
    redis  => 'timeout=1s',
    config => guard_location(pass => 'http://127.0.0.1:$TEST_NGINX_ORIGIN_PORT',
                             x_guard => '$cache_guard_status',
                             extra => 'add_header X-Key $cache_guard_key always;'),
    init   => 'origin_reset(); redis_flush();',
);

our $JSON_ERROR = qr/^\{"error": "(?:[^"\\]|\\.)+"\}\n$/;
sub json_error { return $_[0]{body} =~ $JSON_ERROR }

# A request that was refused: status, JSON body, INVALID, nothing reached
# the origin or Redis for it.
sub refused {
    my ($path, $status, %opt) = @_;
    my $r = http_request($opt{method} // 'GET', $path, %opt);
    is($r->{status}, $status, "$path refused with $status");
    ok(json_error($r), "$path: a JSON error body") or diag($r->{body});
    is(guard($r), $opt{guard} // 'INVALID', "$path: status variable");
    return $r;
}

run_tests();

__DATA__

=== TEST 1: uri, methods and typed argument rules, checked in C
--- user_files
>>> p.lua
return {
  key = "$uri?$args",
  validate = {
    uri = "^/api/users/[0-9]{1,9}$",
    methods = { "GET", "HEAD" },
    args = {
      fields = { type = "int", min = 1, max = 999 },
      q = { type = "string", max = 8, pattern = "^[a-z]+$" },
      v = { type = "int", required = true },
    },
  },
}
--- check
refused('/api/users/abc?v=1', 400);
refused('/api/users/1234567890?v=1', 400);
refused('/api/users/1?v=1', 400, method => 'DELETE');
refused('/api/users/1', 400);
refused('/api/users/1?v=x', 400);
refused('/api/users/1?v=1&fields=0', 400);
refused('/api/users/1?v=1&fields=1000', 400);
refused('/api/users/1?v=1&fields=12a', 400);
refused('/api/users/1?v=1&q=toolongvalue', 400);
refused('/api/users/1?v=1&q=UPPER', 400);
is(origin_total(), 0, 'no refused request reached the origin');
is(scalar @{ redis('KEYS', '*') }, 0, 'nor left anything in Redis');
my $r = http_get('/api/users/42?v=1&fields=999&q=abc');
is($r->{status}, 200, 'a valid request passes');
is(guard($r), 'MISS', 'and is cached as usual');
like(http_get('/api/users/1?v=-3')->{body}, qr/"path"/, 'negative ints parse');
is(origin_total(), 2, 'both valid requests reached the origin');
--- no_error_log
[error]



=== TEST 2: reject.status sets the status of declarative rejections
--- user_files
>>> p.lua
return {
  validate = { args = { id = { type = "int", min = 1, required = true } } },
  reject = { status = 422 },
}
--- request
GET /x?id=0
--- error_code: 422
--- response_headers
X-Guard: INVALID
--- response_body
{"error": "invalid argument \"id\""}
--- check
is(origin_total(), 0, 'nothing reached the origin');



=== TEST 3: max_key_length refuses over-long keys
--- user_files
>>> p.lua
return { key = "$uri", validate = { max_key_length = 16 } }
--- request eval
["GET /" . ('a' x 16), "GET /" . ('a' x 15)]
--- error_code eval
[400,    # a key of 17 bytes refused
 200]    # a key of 16 bytes passes
--- response_headers eval
["X-Guard: INVALID", undef]
--- response_body_like eval
[$main::JSON_ERROR, undef]
--- check
is(origin_total(), 1, 'only it reached the origin');



=== TEST 4: a validate hook: nil passes, (status, message) refuses
--- user_files
>>> p.lua
return {
  validate = function(r)
    local id = r:arg("id")
    if not id then return 400, "id is required" end
    if r:header("X-Tenant") ~= "acme" then return 403, "unknown tenant" end
    if r.method ~= "GET" then return 405, "read only" end
    return nil
  end,
}
--- request eval
["GET /v?x=1", "GET /v?id=1", "GET /v?id=1"]
--- more_headers eval
[undef, undef, "X-Tenant: acme"]
--- error_code eval
[400,
 403,
 200]    # a request the hook accepts passes
--- response_headers eval
["X-Guard: INVALID", "X-Guard: INVALID", undef]
--- response_body eval
[qq({"error": "id is required"}\n),    # the hook message is the error
 qq({"error": "unknown tenant"}\n),    # header read through r:header
 undef]
--- check
is(origin_total(), 1, 'only it reached the origin');
--- no_error_log
[error]



=== TEST 5: a key hook builds the key from the request object; nil bypasses
--- user_files
>>> p.lua
return {
  key = function(r)
    if r:arg("nocache") then return nil end
    return r.method .. " " .. r.host .. r.uri .. "#" .. (r:arg("id") or "")
           .. "#" .. r:var("request_method") .. "#" .. r.client_ip
  end,
}
--- request eval
["GET /k?id=7&utm=1", "GET /k?id=7&utm=2", "GET /k?id=7&nocache=1"]
--- response_headers eval
["X-Key: GET localhost/k#7#GET#127.0.0.1\nX-Guard: MISS",
 "X-Guard: HIT",       # the same key for another utm
 "X-Guard: BYPASS"]    # nil from the key hook bypasses the cache
--- check
is(origin_total(), 2, 'the miss and the bypass reached the origin');
--- no_error_log
[error]



=== TEST 6: a hook that raises an error: 500 policy error (never the fallback), the error logged, the next request fine
--- user_files
>>> p.lua
return {
  name = "users",
  validate = function(r)
    if r:arg("boom") then error("kaboom") end
    return nil
  end,
  fallback = { status = 503, retry_after = 7 },
}
--- request eval
["GET /h?boom=1", "GET /h"]
--- error_code eval
[500,    # a policy error
 200]    # the next request is fine
--- response_body eval
[qq({"error": "policy error"}\n), undef]
--- response_headers eval
["!Retry-After\nX-Guard: INVALID", undef]    # not the fallback
--- error_log eval
qr/policy "users" validate hook failed: .*kaboom/
--- check
is_deeply([map { $_->{target} } origin_log()], ['/h'],
          'the origin was asked only for the next request');
--- no_error_log
[alert]
[crit]



=== TEST 7: a hook that returns the wrong type, and one that keeps the request object
--- user_files
>>> p.lua
local kept
return {
  key = function(r)
    if r:arg("table") then return {} end
    return r.uri
  end,
  validate = function(r)
    if r:arg("late") then return kept.uri end
    kept = r
  end,
}
--- request eval
["GET /w?table=1", "GET /w", "GET /w?late=1", "GET /w"]
--- error_code eval
[500,      # a table from the key hook: a policy error
 undef,    # keeps the request object
 500,      # a request object kept past its hook raises: a policy error
 200]      # and the worker still serves
--- error_log eval
[qr/key hook returned table, expected a string or nil/,
 qr/validate hook failed: .*used after its hook returned/]
--- no_error_log
[alert]
[crit]



=== TEST 8: policies are checked when nginx reads them: a bad regex names the field
--- config
    location / {
        cache_guard main;
        cache_guard_policy $TEST_NGINX_HTML_DIR/p.lua;
        return 200;
    }
--- user_files
>>> p.lua
return {
  validate = {
    uri = "^/api/(users",
  },
}
--- must_die
--- error_log eval
qr{p\.lua:3: validate\.uri is not a valid regex}



=== TEST 9: an unknown validate rule is refused
--- config
    location / {
        cache_guard main;
        cache_guard_policy $TEST_NGINX_HTML_DIR/p.lua;
        return 200;
    }
--- user_files
>>> p.lua
return {
  validate = { urls = "^/x$" },
}
--- must_die
--- error_log eval
qr{p\.lua:2: validate may hold uri, methods, args and max_key_length only}
