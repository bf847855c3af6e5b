# Policy mistakes nginx -t must catch, each named with the policy file, the
# line, the field and (for a location's type) the location: captures where
# the location has none, unknown variables in templates, and enumerated
# fields whose messages list what is allowed.
use lib 't/lib';
use Test::CacheGuard 'no_plan';
use Test::CacheGuard::Preset;
use Test::CacheGuard::Assert;

guard_preamble(
    zone   => '1m',
    config => <<'CONF',
    location / {
        cache_guard main;
        cache_guard_policy $TEST_NGINX_HTML_DIR/p.lua;
        return 200;
    }
CONF
);

run_tests();

__DATA__

=== TEST 1: a capture in the key of a prefix location
--- config
    location /api/ {
        cache_guard main;
        cache_guard_policy $TEST_NGINX_HTML_DIR/p.lua;
        return 200;
    }
--- user_files
>>> p.lua
return {
  key = "$host/$1",
}
--- must_die
--- error_log eval
qr{cache guard: policy .*/p\.lua:2: key uses the capture \$1, but location "/api/" is a prefix location, which has no captures}



=== TEST 2: a capture in the Bloom item of an exact location
--- http_config
    cache_guard_bloom ids capacity=100 error_rate=0.01;
--- config
    location = /item {
        cache_guard main;
        cache_guard_policy $TEST_NGINX_HTML_DIR/p.lua;
        return 200;
    }
--- user_files
>>> p.lua
return {
  key = "$uri",
  bloom = { filter = "ids",
            item = "${2}" },
}
--- must_die
--- error_log eval
qr{cache guard: policy .*/p\.lua:4: bloom\.item uses the capture \$2, but location "/item" is an exact location}



=== TEST 3: a server's policy is checked in each location that inherits it
--- config
    cache_guard main;
    cache_guard_policy $TEST_NGINX_HTML_DIR/p.lua;
    location ~ ^/u/(\d+)$ {
        return 200;
    }
    location /other/ {
        return 200;
    }
--- user_files
>>> p.lua
return { key = "u:$1" }
--- must_die
--- error_log eval
qr{cache guard: policy .*/p\.lua:1: key uses the capture \$1, but location "/other/" is a prefix location}



=== TEST 4: a regex location with fewer captures than the key uses
--- config
    location ~ ^/u/(\d+)$ {
        cache_guard main;
        cache_guard_policy $TEST_NGINX_HTML_DIR/p.lua;
        return 200;
    }
--- user_files
>>> p.lua
return { key = "$1:$2" }
--- must_die
--- error_log eval
qr{cache guard: policy .*/p\.lua:1: key uses the capture \$2, but the regex of location "\^/u/\(\\d\+\)\$" has 1 capture\b}



=== TEST 5: captures where the location has them are fine, in its "if" blocks too; the key is the capture
--- config
    cache_guard main;
    cache_guard_policy $TEST_NGINX_HTML_DIR/p.lua;
    location ~ ^/u/(\d+)/(\w+)$ {
        if ($arg_x) {
            add_header X-If 1;
        }
        proxy_pass http://127.0.0.1:$TEST_NGINX_ORIGIN_PORT;
        add_header X-Key $cache_guard_key always;
    }
    location /plain/ {
        cache_guard off;
        return 200;
    }
--- user_files
>>> p.lua
return { key = "u:$2:$1" }
--- request
GET /u/42/name
--- response_headers
X-Key: u:name:42
--- no_error_log
[error]
[emerg]



=== TEST 6: an unknown variable in the key names the policy and the field
--- user_files
>>> p.lua
return {
  ttl = 10,
  key = "$host$no_such_variable",
}
--- must_die
--- error_log eval
qr{cache guard: policy .*/p\.lua:3: key uses the unknown variable "\$no_such_variable"}



=== TEST 7: an unknown variable in the Bloom item names the policy and the field
--- http_config
    cache_guard_bloom ids capacity=100 error_rate=0.01;
--- user_files
>>> p.lua
return {
  bloom = { filter = "ids", item = "$arg_id$nope" },
}
--- must_die
--- error_log eval
qr{cache guard: policy .*/p\.lua:2: bloom\.item uses the unknown variable "\$nope"}



=== TEST 8: variables declared after the policy (map, set) and prefix variables are known
--- http_config
    map $arg_t $tenant {
        default "t-$arg_t";
    }
--- config
    location / {
        cache_guard main;
        cache_guard_policy $TEST_NGINX_HTML_DIR/p.lua;
        set $late "L";
        proxy_pass http://127.0.0.1:$TEST_NGINX_ORIGIN_PORT;
        add_header X-Key $cache_guard_key always;
    }
--- user_files
>>> p.lua
return { key = "$tenant|$late|$arg_id|$http_x_a|$cookie_c|${uri}" }
--- request
GET /k?t=acme&id=5
--- more_headers
X-A: b
Cookie: c=d
--- response_headers
X-Key: t-acme|L|5|b|d|/k
--- no_error_log
[error]
[emerg]



=== TEST 9: an argument rule's type lists the allowed types
--- user_files
>>> p.lua
return {
  validate = {
    args = { id = { type = "integer" } },
  },
}
--- must_die
--- error_log eval
qr{cache guard: policy .*/p\.lua:3: validate\.args\.type must be one of "int", "string"}



=== TEST 10: bloom.on_reject says what it takes
--- http_config
    cache_guard_bloom ids capacity=100 error_rate=0.01;
--- user_files
>>> p.lua
return {
  bloom = { filter = "ids", item = "$arg_id",
            on_reject = "drop" },
}
--- must_die
--- error_log eval
qr{cache guard: policy .*/p\.lua:3: bloom\.on_reject must be a status from 400 to 599}



=== TEST 11: an unknown Bloom field is named
--- http_config
    cache_guard_bloom ids capacity=100 error_rate=0.01;
--- user_files
>>> p.lua
return {
  bloom = { filter = "ids", item = "$arg_id", mode = "shadow" },
}
--- must_die
--- error_log eval
qr{cache guard: policy .*/p\.lua:2: bloom may hold filter, item and on_reject only}



=== TEST 12: origin.on_overload lists its values
--- user_files
>>> p.lua
return {
  origin = { max_concurrent = 4,
             on_overload = "queue" },
}
--- must_die
--- error_log eval
qr{cache guard: policy .*/p\.lua:3: origin\.on_overload must be one of "stale", "fallback"}



=== TEST 13: validate.methods lists the methods it knows
--- user_files
>>> p.lua
return {
  validate = { methods = { "GET", "FETCH" } },
}
--- must_die
--- error_log eval
qr{cache guard: policy .*/p\.lua:2: validate\.methods must list methods such as \{ "GET", "HEAD" \}, each one of "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"}



=== TEST 14: a whole-number field out of range gives the range
--- user_files
>>> p.lua
return {
  fallback = { status = 700 },
}
--- must_die
--- error_log eval
qr{cache guard: policy .*/p\.lua:2: fallback\.status must be a whole number from 200 to 599}
