# Attempts to get past the checks, and places where an answer must not be
# replaced or cached: try_files after a refusal or a hit, over-long keys
# and Bloom items, repeated arguments, the admin API under a guarded
# server, a reload that changes a Bloom filter's size, and arguments
# encoded to hide from the rules.
use lib 't/lib';
use Test::CacheGuard 'no_plan';
use Test::CacheGuard::Assert;
use Test::CacheGuard::Preset;

use JSON::PP ();

guard_preamble(
    zone  => '4m',
    redis => 'timeout=1s',
    init  => 'origin_reset(); redis_flush();',
);

run_tests();

__DATA__

=== TEST 1: try_files after the guard can neither undo a refusal nor replace a hit
--- config
    location /api/ {
        cache_guard main;
        cache_guard_policy $TEST_NGINX_HTML_DIR/p.lua;
        try_files /nonexistent @origin;
        add_header X-Guard $cache_guard_status always;
    }
    location @origin {
        proxy_pass http://127.0.0.1:$TEST_NGINX_ORIGIN_PORT;
    }
    location /fill {
        cache_guard main;
        cache_guard_policy $TEST_NGINX_HTML_DIR/p.lua;
        proxy_pass http://127.0.0.1:$TEST_NGINX_ORIGIN_PORT;
    }
--- user_files
>>> p.lua
return { key = "k:$arg_k", validate = { uri = "^/(api/ok|fill)$" } }
--- check
my $r = http_get('/api/bad?k=1');
is($r->{status}, 400, 'the refusal stands');
is(guard($r), 'INVALID', 'INVALID');
is(origin_count('/api/bad'), 0, 'the origin was not asked');
http_get('/fill?k=1');
ok(stored('cg:k:1'), 'an entry filled by another location');
$r = http_get('/api/ok?k=1');
is(guard($r), 'HIT', 'is a hit here, which try_files does not replace');
like($r->{body}, qr/"path":"\/fill"/, 'with the stored body');
is(origin_count('/api/ok'), 0, 'the origin was not asked');



=== TEST 2: a Bloom item over 4096 bytes is refused, not skipped; a key over max_key_length is refused, one over 4096 bytes bypasses the cache (never cut down to another key)
--- http_config
    cache_guard_bloom ids capacity=1000 error_rate=0.01 file=$TEST_NGINX_HTML_DIR/ids.txt;
--- config
    location /b {
        cache_guard main;
        cache_guard_policy $TEST_NGINX_HTML_DIR/b.lua;
        proxy_pass http://127.0.0.1:$TEST_NGINX_ORIGIN_PORT;
        add_header X-Guard $cache_guard_status always;
    }
    location /k {
        cache_guard main;
        cache_guard_policy $TEST_NGINX_HTML_DIR/k.lua;
        proxy_pass http://127.0.0.1:$TEST_NGINX_ORIGIN_PORT;
        add_header X-Guard $cache_guard_status always;
    }
    location /long {
        cache_guard main;
        cache_guard_policy $TEST_NGINX_HTML_DIR/long.lua;
        proxy_pass http://127.0.0.1:$TEST_NGINX_ORIGIN_PORT;
        add_header X-Guard $cache_guard_status always;
    }
--- user_files
>>> ids.txt
7
>>> b.lua
return { bloom = { filter = "ids", item = "$arg_id" } }
>>> k.lua
return { key = "$uri$args", validate = { max_key_length = 64 } }
>>> long.lua
return { key = "$uri$args" }
--- request eval
["GET /b?id=7", "GET /b?id=" . ('9' x 5000), "GET /k?q=" . ('x' x 100),
 map { "GET /long?q=" . ('x' x 5000) . $_ } 'a', 'b', 'a']
--- error_code eval
[200,              # a known id passes
 404,              # a 5000-byte id is refused
 400,              # a key over max_key_length is refused
 200, 200, 200]    # a key over 4096 bytes reaches the origin
--- response_headers eval
[undef,
 "X-Guard: BLOOM_REJECT",
 "X-Guard: INVALID",
 ("X-Guard: BYPASS") x 3]
--- response_body_like eval
[undef, undef, undef,
 # the origin's answer n, not a stored one
 qr/"n":1\b/, qr/"n":2\b/, qr/"n":3\b/]
--- check
is(origin_count('/long'), 3, 'each over-long request reached the origin');
is(origin_total(), 4, 'and of the others only the known id');
is(scalar @{ redis('KEYS', 'cg:*') } , 1, 'and nothing of them is in Redis')
    or diag(join ' ', map { substr($_, 0, 40) } @{ redis('KEYS', 'cg:*') });



=== TEST 3: every occurrence of a ruled argument is checked
--- config
    location / {
        cache_guard main;
        cache_guard_policy $TEST_NGINX_HTML_DIR/p.lua;
        proxy_pass http://127.0.0.1:$TEST_NGINX_ORIGIN_PORT;
    }
--- user_files
>>> p.lua
return { validate = { args = { id = { type = "int", max = 999, required = true } } } }
--- request eval
["GET /a?id=1", "GET /a?id=1&id=2", "GET /a?id=1&id=abc", "GET /a?id=1&ID=99999",
 "GET /a?x=1"]
--- error_code eval
[200,    # one valid id passes
 200,    # two valid ids pass
 400,    # a bad second id is refused
 400,    # in any case of the name
 400]    # a missing required id is refused
--- check
is(origin_total(), 2, 'only the valid requests reached the origin');



=== TEST 4: the admin API under a guarded server is never cached
--- http_config
    cache_guard_bloom ids capacity=1000 error_rate=0.01;
--- config
    cache_guard main;
    location /admin/ {
        cache_guard_admin;
    }
--- request eval
["GET /admin/bloom/ids?item=7",
 "POST /admin/bloom/ids\n7\n\n",    # the body "7\n"
 "GET /admin/bloom/ids?item=7"]
--- response_body_like eval
[qr/"present":\s*false/,    # absent at first
 undef,
 qr/"present":\s*true/]     # present after the add, not a cached answer
--- check
is(scalar @{ redis('KEYS', 'cg:*') }, 0, 'nothing of the admin API in Redis');



=== TEST 5: cache_guard_admin refuses a regex location
--- config
    location ~ ^/adm/ {
        cache_guard_admin;
    }
--- must_die
--- error_log
must be in a prefix location



=== TEST 6: a reload that changes a filter's size never re-lays the running workers' filter
--- skip_valgrind
--- http_config
    cache_guard_bloom ids capacity=1000 error_rate=0.01 file=$TEST_NGINX_HTML_DIR/ids.txt;
--- config
    location /b {
        cache_guard main;
        cache_guard_policy $TEST_NGINX_HTML_DIR/b.lua;
        proxy_pass http://127.0.0.1:$TEST_NGINX_ORIGIN_PORT;
    }
--- user_files eval
">>> ids.txt\n" . join('', map { "$_\n" } 1 .. 100)
. ">>> b.lua\nreturn { bloom = { filter = \"ids\", item = \"\$arg_id\" } }\n"
--- check
my $ok = grep { http_get("/b?id=$_")->{status} == 200 } 1 .. 100;
is($ok, 100, 'all 100 ids pass before the reload');
my $conf = servroot() . '/conf/nginx.conf';
open my $in, '<', $conf or die $!;
my $text = do { local $/; <$in> };
close $in;
# a new size, and a second filter whose file does not exist: the reload fails
$text =~ s/capacity=1000 /capacity=1100 /;
$text =~ s/(cache_guard_bloom ids [^\n]*\n)/$1    cache_guard_bloom other capacity=10 error_rate=0.01 file=\/nonexistent\/ids.txt;\n/;
open my $out, '>', $conf or die $!;
print $out $text;
close $out;
ok(!nginx_reload(), 'the reload fails');
$ok = grep { http_get("/b?id=$_")->{status} == 200 } 1 .. 100;
is($ok, 100, 'the running workers still let all 100 ids pass');



=== TEST 7: argument names and values are checked decoded, as the origin reads them; an argument that does not decode is refused
--- config
    location / {
        cache_guard main;
        cache_guard_policy $TEST_NGINX_HTML_DIR/p.lua;
        proxy_pass http://127.0.0.1:$TEST_NGINX_ORIGIN_PORT;
        add_header X-Guard $cache_guard_status always;
    }
--- user_files
>>> p.lua
return {
  key = "$request_uri",
  reject = { status = 422 },
  validate = { args = {
    id = { type = "int", max = 999, required = true },
    q = { type = "string", max = 8, pattern = "^[a-z ]*$" },
  } },
}
--- check
my @refused = (
    # the name encoded: the origin reads a second id, "abc"
    '/a?id=1&%69d=abc', '/a?id=1&%69%44=abc', '/a?%49D=abc&id=1',
    '/a?id=1&%69%64=abc',
    # PHP and Rack read id[] as the id
    '/a?id=1&id[]=abc', '/a?id=1&id%5B%5D=abc',
    # the value decoded: "1+1", " 1", "1 "
    '/a?id=1%2B1', '/a?id=+1', '/a?id=1+', '/a?id=1%20',
    '/a?id=1&q=a%2Bb', '/a?id=1&q=%41', '/a?id=1&q=a%2fb',
    # what does not decode, in any argument
    '/a?id=1&x=%zz', '/a?id=1&x=%4', '/a?id=1&x=%', '/a?id=1&x=%00',
    '/a?id=1&%00=1', '/a?id=1%00', '/a?id=1&x=%g1',
    # '=' or '&' hidden in a name: parsers disagree on it
    '/a?id=1&id%3D5=abc', '/a?id=1&x%26id=abc',
);
for my $path (@refused) {
    my $r = http_get($path);
    is($r->{status}, 422, "$path: refused with the policy's status");
    is(guard($r), 'INVALID', "$path: INVALID");
    like($r->{body}, qr/^\{"error": "(?:invalid argument \\"(?:id|q)\\"|argument \\".*\\" is not well encoded)"\}\n$/,
         "$path: a JSON error") or diag($r->{body});
}
my $r = http_get("/a?id=1&\xff\xfe%=1");
is($r->{status}, 422, 'a name of raw bytes with a bad escape: refused');
my $j = eval { JSON::PP::decode_json($r->{body}) };
like($j && $j->{error}, qr/^argument "\?\?%" is not well encoded$/,
     'with valid JSON naming it in printable ASCII') or diag($r->{body});
is(origin_total(), 0, 'no refused request reached the origin');
my @passed = ('/a?id=%31', '/a?id=%35%30', '/a?id=7&q=ab+cd', '/a?id=8&q=a%20b',
              '/a?id=9&x=%E2%82%AC', '/a?id[]=5', '/a?ID=6&identity=abc');
for my $path (@passed) {
    my $r = http_get($path);
    is($r->{status}, 200, "$path: passes");
}
is(origin_total(), scalar @passed, 'the valid requests reached the origin');
--- no_error_log
[error]
[alert]



=== TEST 8: the README's one-line policies for cookies: a key per session, or no cache for requests with a Cookie
--- config
    location /s/ {
        cache_guard main;
        cache_guard_policy $TEST_NGINX_HTML_DIR/session.lua;
        proxy_pass http://127.0.0.1:$TEST_NGINX_ORIGIN_PORT;
        add_header X-Guard $cache_guard_status always;
    }
    location /c/ {
        cache_guard main;
        cache_guard_policy $TEST_NGINX_HTML_DIR/cookie.lua;
        proxy_pass http://127.0.0.1:$TEST_NGINX_ORIGIN_PORT;
        add_header X-Guard $cache_guard_status always;
    }
--- user_files
>>> session.lua
return { key = "$host$request_uri|$cookie_session" }
>>> cookie.lua
return { key = function(r) if not r:header("Cookie") then return r.host .. r:var("request_uri") end end }
--- request eval
[("GET /s/a") x 3, ("GET /c/a") x 4]
--- more_headers eval
["Cookie: session=alice", "Cookie: session=bob", "Cookie: session=alice",
 undef, "Cookie: session=alice", undef, "Cookie: x=1"]
--- response_headers eval
[# one entry per session: bob never gets alice's
 "X-Guard: MISS", "X-Guard: MISS", "X-Guard: HIT",
 # a request with a Cookie bypasses the cache
 "X-Guard: MISS", "X-Guard: BYPASS", "X-Guard: HIT", "X-Guard: BYPASS"]
--- check
is(origin_count('/s/a'), 2, 'two sessions, two fills');
is(origin_count('/c/a'), 3, 'the fill and the two cookie requests');
--- no_error_log
[error]
[alert]
