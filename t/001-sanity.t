# Configuration: directives, policy files, and the errors nginx -t reports.
use lib 't/lib';
use Test::CacheGuard 'no_plan';

run_tests();

__DATA__

=== TEST 1: smoke test: the module loads and an unguarded location works
--- http_config
    cache_guard_zone main size=1m;
--- config
    location /t {
        return 200 "ok\n";
    }
--- request
GET /t
--- response_body
ok
--- no_error_log
[error]
[alert]
[emerg]



=== TEST 2: a zone without size= is refused
--- http_config
    cache_guard_zone main 1m;
--- config
--- must_die
--- error_log
invalid parameter "1m", expected size=SIZE



=== TEST 3: a zone that is too small is refused
--- http_config
    cache_guard_zone main size=4k;
--- config
--- must_die
--- error_log
zone "main" is too small



=== TEST 4: a guarded location naming an unknown zone is refused with our message, the file and the line of cache_guard
--- config
    include $TEST_NGINX_HTML_DIR/guard.conf;
--- user_files
>>> guard.conf
location /a {
    return 200;
    cache_guard nosuchzone;
}
--- must_die
--- error_log eval
qr{cache guard: cache_guard_zone "nosuchzone" is not defined: declare it at the http level with "cache_guard_zone nosuchzone size=SIZE;" in \S*/html/guard\.conf:3\b}



=== TEST 5: a policy with a Lua syntax error names the file and line
--- http_config
    cache_guard_zone main size=1m;
--- config
    location /a {
        cache_guard main;
        cache_guard_policy $TEST_NGINX_HTML_DIR/broken.lua;
        return 200;
    }
--- user_files
>>> broken.lua
return {
  ttl = 10,
  jitter = = 0.1,
}
--- must_die
--- error_log eval
qr{cache guard: policy .*/broken\.lua:3: unexpected symbol near '='}



=== TEST 6: a policy field with a bad value names the file, line and field
--- http_config
    cache_guard_zone main size=1m;
--- config
    location /a {
        cache_guard main;
        cache_guard_policy $TEST_NGINX_HTML_DIR/users.lua;
        return 200;
    }
--- user_files
>>> users.lua
-- users
return {
  name = "users",

  ttl = -5,
}
--- must_die
--- error_log eval
qr{cache guard: policy .*/users\.lua:5: ttl must be a positive number of seconds}



=== TEST 7: an unknown policy field is refused, not ignored
--- http_config
    cache_guard_zone main size=1m;
--- config
    location /a {
        cache_guard main;
        cache_guard_policy $TEST_NGINX_HTML_DIR/p.lua;
        return 200;
    }
--- user_files
>>> p.lua
return { ttl = 10, tll = 20 }
--- must_die
--- error_log eval
qr{cache guard: policy .*/p\.lua:1: tll is not a policy field}



=== TEST 8: a key that is neither a template nor a function is refused
--- http_config
    cache_guard_zone main size=1m;
--- config
    location /a {
        cache_guard main;
        cache_guard_policy $TEST_NGINX_HTML_DIR/p.lua;
        return 200;
    }
--- user_files
>>> p.lua
return {
  key = 42,
}
--- must_die
--- error_log eval
qr{cache guard: policy .*/p\.lua:2: key must be a string of nginx variables or a function}



=== TEST 9: a policy that does not return a table is refused
--- http_config
    cache_guard_zone main size=1m;
--- config
    location /a {
        cache_guard main;
        cache_guard_policy $TEST_NGINX_HTML_DIR/p.lua;
        return 200;
    }
--- user_files
>>> p.lua
return 42
--- must_die
--- error_log eval
qr{cache guard: policy ".*/p\.lua" must return a table, not number}



=== TEST 10: a missing policy file is refused
--- http_config
    cache_guard_zone main size=1m;
--- config
    location /a {
        cache_guard main;
        cache_guard_policy $TEST_NGINX_HTML_DIR/nope.lua;
        return 200;
    }
--- must_die
--- error_log eval
qr{cache guard: policy cannot open .*/nope\.lua}



=== TEST 11: bad status lists, jitter, sizes and key templates are refused
--- http_config
    cache_guard_zone main size=1m;
--- config
    location /a {
        cache_guard main;
        cache_guard_policy $TEST_NGINX_HTML_DIR/p.lua;
        return 200;
    }
--- user_files
>>> p.lua
return {
  cache_statuses = { 200, 99 },
}
--- must_die
--- error_log eval
qr{p\.lua:2: cache_statuses must be a list of HTTP statuses}



=== TEST 12: jitter must be below 1
--- http_config
    cache_guard_zone main size=1m;
--- config
    location /a {
        cache_guard main;
        cache_guard_policy $TEST_NGINX_HTML_DIR/p.lua;
        return 200;
    }
--- user_files
>>> p.lua
return { jitter = 1.5 }
--- must_die
--- error_log eval
qr{p\.lua:1: jitter must be at least 0 and less than 1}



=== TEST 13: a key template with an unknown variable is refused
--- http_config
    cache_guard_zone main size=1m;
--- config
    location /a {
        cache_guard main;
        cache_guard_policy $TEST_NGINX_HTML_DIR/p.lua;
        return 200;
    }
--- user_files
>>> p.lua
return { key = "$host$no_such_variable" }
--- must_die
--- error_log eval
qr{cache guard: policy .*/p\.lua:1: key uses the unknown variable "\$no_such_variable"}



=== TEST 14: a breaker window that is not whole seconds is refused with its line
--- http_config
    cache_guard_zone main size=1m;
--- config
    location /a {
        cache_guard main;
        cache_guard_policy $TEST_NGINX_HTML_DIR/p.lua;
        return 200;
    }
--- user_files
>>> p.lua
return {
  ttl = 30,
  breaker = { redis = { window = 1.5 } },
}
--- must_die
--- error_log eval
qr{p\.lua:3: breaker\.redis window must be whole seconds, 60 at most}



=== TEST 14b: breaker fields are checked: unknown sub-fields, statuses, rates
--- http_config
    cache_guard_zone main size=1m;
--- config
    location /a {
        cache_guard main;
        cache_guard_policy $TEST_NGINX_HTML_DIR/p.lua;
        return 200;
    }
--- user_files
>>> p.lua
return {
  breaker = { origin = { failure_rate = 2 } },
}
--- must_die
--- error_log eval
qr{p\.lua:2: breaker\.origin\.failure_rate must be a number from 0\.01 to 1\b}



=== TEST 14c: two policies cannot give the one Redis backend two breakers
--- http_config
    cache_guard_zone main size=1m;
    cache_guard_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
--- config
    location /a {
        cache_guard main;
        cache_guard_policy $TEST_NGINX_HTML_DIR/a.lua;
        return 200;
    }
    location /b {
        cache_guard main;
        cache_guard_policy $TEST_NGINX_HTML_DIR/b.lua;
        return 200;
    }
--- user_files
>>> a.lua
return { breaker = { redis = { open_for = 5 } } }
>>> b.lua
return { breaker = { redis = { open_for = 7 } } }
--- must_die
--- error_log eval
qr{set breaker\.redis differently; one Redis backend has one breaker}



=== TEST 14e: policies that share a name share a breaker: they must set it alike
--- http_config
    cache_guard_zone main size=1m;
--- config
    location /a {
        cache_guard main;
        cache_guard_policy $TEST_NGINX_HTML_DIR/a.lua;
        return 200;
    }
    location /b {
        cache_guard main;
        cache_guard_policy $TEST_NGINX_HTML_DIR/b.lua;
        return 200;
    }
--- user_files
>>> a.lua
return { name = "api", origin = { max_concurrent = 4 } }
>>> b.lua
return { name = "api", origin = { max_concurrent = 8 } }
--- must_die
--- error_log eval
qr{share the name "api" and so the breaker "origin:api", but set breaker\.origin or origin\.max_concurrent differently}



=== TEST 14d: breaker.origin.statuses must list HTTP statuses
--- http_config
    cache_guard_zone main size=1m;
--- config
    location /a {
        cache_guard main;
        cache_guard_policy $TEST_NGINX_HTML_DIR/p.lua;
        return 200;
    }
--- user_files
>>> p.lua
return {
  breaker = { origin = { statuses = { "500" } } },
}
--- must_die
--- error_log eval
qr{breaker\.origin\.statuses must be a list of HTTP statuses}



=== TEST 15: a valid policy with every supported field loads
--- http_config
    cache_guard_zone main size=1m;
--- config
    location /a {
        cache_guard main;
        cache_guard_policy $TEST_NGINX_HTML_DIR/p.lua;
        return 200 "ok\n";
    }
--- user_files
>>> p.lua
return {
  name = "users",
  key = "$host$uri",
  ttl = "5m",
  jitter = 0.2,
  negative_ttl = 0,
  negative_statuses = { 404 },
  cache_statuses = { 200, 404 },
  max_entry_size = "64k",
  l1 = { ttl = 2.5 },
  breaker = {
    redis = { window = 5, min_requests = 10, failure_rate = 0.25,
              open_for = 3, half_open_requests = 2 },
    origin = { statuses = { 502, 503, 504 }, open_for = "1m" },
  },
}
--- request
GET /a
--- response_body
ok
--- no_error_log
[error]
[emerg]



=== TEST 16: cache_guard_redis rejects modes this version lacks
--- http_config
    cache_guard_zone main size=1m;
    cache_guard_redis 127.0.0.1:6379 mode=cluster;
--- config
--- must_die
--- error_log
not supported



=== TEST 17: cache_guard_redis rejects a bad time-out
--- http_config
    cache_guard_zone main size=1m;
    cache_guard_redis 127.0.0.1:6379 timeout=fast;
--- config
--- must_die
--- error_log
timeout=fast



=== TEST 18: cache_guard_redis is http-level only
--- config
    location /a {
        cache_guard_redis 127.0.0.1:6379;
    }
--- must_die
--- error_log
"cache_guard_redis" directive is not allowed here



=== TEST 19: a bad lock.on_timeout names the sub-field
--- http_config
    cache_guard_zone main size=1m;
--- config
    location /a {
        cache_guard main;
        cache_guard_policy $TEST_NGINX_HTML_DIR/p.lua;
        return 200;
    }
--- user_files
>>> p.lua
return {
  lock = { ttl = 10, on_timeout = "panic" },
}
--- must_die
--- error_log eval
qr{p\.lua:2: lock\.on_timeout must be one of .*"stale", .*"error"}



=== TEST 20: an unknown sub-field is refused
--- http_config
    cache_guard_zone main size=1m;
--- config
    location /a {
        cache_guard main;
        cache_guard_policy $TEST_NGINX_HTML_DIR/p.lua;
        return 200;
    }
--- user_files
>>> p.lua
return { stale = { while_revalidat = 30 } }
--- must_die
--- error_log eval
qr{p\.lua: stale\.while_revalidat is not a policy field|p\.lua:1: stale}



=== TEST 21: origin.max_concurrent must be a whole number of at least 1
--- http_config
    cache_guard_zone main size=1m;
--- config
    location /a {
        cache_guard main;
        cache_guard_policy $TEST_NGINX_HTML_DIR/p.lua;
        return 200;
    }
--- user_files
>>> p.lua
return {
  origin = { max_concurrent = 0 },
}
--- must_die
--- error_log eval
qr{p\.lua:2: origin\.max_concurrent must be a whole number from 1 to 1000000\b}



=== TEST 22: every breakdown field loads
--- http_config
    cache_guard_zone main size=1m;
--- config
    location /a {
        cache_guard main;
        cache_guard_policy $TEST_NGINX_HTML_DIR/p.lua;
        return 200 "ok\n";
    }
--- user_files
>>> p.lua
return {
  lock = { ttl = 10, wait = 5, on_timeout = "error" },
  stale = { while_revalidate = 30, if_error = "10m" },
  early_refresh = { beta = 1.5 },
  origin = { max_concurrent = 64, on_overload = "fallback" },
  fallback = { status = 503, retry_after = 5 },
}
--- request
GET /a
--- response_body
ok
--- no_error_log
[emerg]



=== TEST 23: cache_guard_policy in a location without cache_guard is refused, naming the file and line of the policy
--- http_config
    cache_guard_zone main size=1m;
--- config
    include $TEST_NGINX_HTML_DIR/guard.conf;
    location /b {
        cache_guard main;
        return 200;
    }
--- user_files
>>> guard.conf
location /a {
    return 200;
    cache_guard_policy $TEST_NGINX_HTML_DIR/p.lua;
}
>>> p.lua
return { ttl = 10 }
--- must_die
--- error_log eval
qr{cache guard: "cache_guard_policy" where "cache_guard" is off guards nothing: add "cache_guard ZONE;" to the location \(or to its server or http level\) in \S*/html/guard\.conf:3\b}



=== TEST 24: cache_guard_policy next to an explicit "cache_guard off" is refused too
--- http_config
    cache_guard_zone main size=1m;
--- config
    cache_guard main;
    include $TEST_NGINX_HTML_DIR/guard.conf;
--- user_files
>>> guard.conf
location /a {
    cache_guard off;
    cache_guard_policy $TEST_NGINX_HTML_DIR/p.lua;
    return 200;
}
>>> p.lua
return { ttl = 10 }
--- must_die
--- error_log eval
qr{"cache_guard_policy" where "cache_guard" is off guards nothing.* in \S*/html/guard\.conf:3\b}



=== TEST 25: a policy that a guarded location uses is fine: cache_guard at http level with a policy per location, or a policy at server level with cache_guard in a location
--- http_config
    cache_guard_zone main size=1m;
    cache_guard main;
    server {
        listen 127.0.0.1:$TEST_NGINX_SERVER_PORT2;
        cache_guard off;
        cache_guard_policy $TEST_NGINX_HTML_DIR/p.lua;
        location /c {
            cache_guard main;
            proxy_pass http://127.0.0.1:$TEST_NGINX_ORIGIN_PORT;
        }
        location /plain {
            return 200;
        }
    }
--- config
    location /a {
        cache_guard_policy $TEST_NGINX_HTML_DIR/p.lua;
        proxy_pass http://127.0.0.1:$TEST_NGINX_ORIGIN_PORT;
        add_header X-Guard $cache_guard_status always;
    }
--- user_files
>>> p.lua
return { key = "$uri", ttl = 10 }
--- request eval
["GET /a", "GET /a"]
--- response_headers eval
["X-Guard: MISS", "X-Guard: HIT"]
--- no_error_log
[emerg]
[error]
[alert]



=== TEST 26: cache_guard_admin in an exact-match location is refused, saying what to write
--- config
    location = /admin {
        cache_guard_admin;
    }
--- must_die
--- error_log eval
qr{cache_guard_admin cannot be in an exact-match location, its calls are under it: write "location /admin/ \{ cache_guard_admin; \}" in \S*nginx\.conf:\d+}



=== TEST 27: a Redis time-out without a unit over 10 s (seconds, as nginx reads times) is a warning: nginx -t passes and asks "did you mean 250ms?"
--- http_config
    cache_guard_zone main size=1m;
    cache_guard_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT timeout=250 connect_timeout=1m;
--- config
    location /t {
        return 200 "ok\n";
    }
--- request
GET /t
--- response_body
ok
--- check
my $nginx = $ENV{TEST_NGINX_BINARY}
    // (-x '/usr/sbin/nginx' ? '/usr/sbin/nginx' : 'nginx');
my $root = servroot();
my $out = `$nginx -t -p $root/ -c conf/nginx.conf 2>&1`;
is($? >> 8, 0, 'nginx -t passes') or diag($out);
like($out, qr{\[warn\].*cache guard: redis time-out "timeout=250" is 250 seconds, did you mean 250ms\? in \S*nginx\.conf:\d+},
     'nginx -t warns about timeout=250');
like($out, qr{\[warn\].*redis time-out "connect_timeout=1m" is over 10 seconds},
     'and about connect_timeout=1m');
--- no_error_log
[error]
[alert]
