# The embedded default: no cache_guard_redis, the zone's L1 is the only
# tier.  Every test counts what reached the test origin.
use lib 't/lib';
use Test::CacheGuard 'no_plan';
use Test::CacheGuard::Preset;

guard_preamble(
    zone     => '4m',
    upstream => 1,
    init     => 'origin_reset();',
);

run_tests();

__DATA__

=== TEST 1: miss then hit: the origin sees one request for five
--- config
    location /a {
        cache_guard main;
        proxy_pass http://origin;
        add_header X-Guard "$cache_guard_status $cache_guard_level" always;
    }
--- request eval
["GET /a?size=1024", "GET /a?size=1024", "GET /a?size=1024", "GET /a?size=1024", "GET /a?size=1024"]
--- error_code eval
[200, 200, 200, 200, 200]
--- response_headers eval
["X-Guard: MISS\nContent-Type: application/json\nContent-Length: 1024\n!Age",
 "X-Guard: HIT l1\nContent-Type: application/json\nContent-Length: 1024\nAge: 0",
 "X-Guard: HIT l1\nContent-Type: application/json",
 "X-Guard: HIT l1\nContent-Type: application/json",
 "X-Guard: HIT l1\nContent-Type: application/json"]
--- response_body_like eval
[qr/^\{"path":"\/a","n":1,.*/s, qr/^\{"path":"\/a","n":1,.*/s, qr/^\{"path":"\/a","n":1,.*/s, qr/^\{"path":"\/a","n":1,.*/s, qr/^\{"path":"\/a","n":1,.*/s]
--- check
is(origin_count('/a'), 1, 'the origin saw exactly one request');
--- no_error_log
[error]
[alert]



=== TEST 2: the hit is byte for byte the origin's body, with its headers
--- config
    location /b {
        cache_guard main;
        proxy_pass http://origin;
    }
--- request eval
["GET /b?size=5000&ct=text/csv&hdr=X-Version:7&hdr=ETag:%22e1%22",
 "GET /b?size=5000&ct=text/csv&hdr=X-Version:7&hdr=ETag:%22e1%22"]
--- error_code eval
[200, 200]
--- response_headers eval
[undef, qq{Content-Type: text/csv\nX-Version: 7\nETag: "e1"}]
--- response_body_like eval
[undef, qr/\A.{5000}\z/s]
--- check
my ($miss, $hit) = @{block_responses()};
is($hit->{body}, $miss->{body}, 'hit body identical');
is(origin_count('/b'), 1, 'one origin request');
--- no_error_log
[error]



=== TEST 3: a conditional request gets 304 on the miss (the fill asks the origin unconditionally) and on the hit (nginx's own filter)
--- config
    location /c {
        cache_guard main;
        proxy_pass http://origin;
        add_header X-Guard $cache_guard_status always;
    }
--- request eval
["GET /c?hdr=ETag:%22v9%22", "GET /c?hdr=ETag:%22v9%22"]
--- more_headers
If-None-Match: "v9"
--- error_code eval
[304, 304]
--- response_headers eval
["X-Guard: MISS", "X-Guard: HIT"]
--- check
is(origin_count('/c'), 1, 'one origin request');



=== TEST 4: HEAD on a cold key fills the cache with a GET; HEAD on a hit serves headers
--- config
    location /h {
        cache_guard main;
        proxy_pass http://origin;
        add_header X-Guard $cache_guard_status always;
    }
--- request eval
["HEAD /h?size=100", "GET /h?size=100", "GET /h?size=100", "HEAD /h?size=100"]
--- error_code eval
[200, 200, 200, 200]
--- response_headers eval
["X-Guard: MISS\nContent-Length: 100", "X-Guard: HIT\nContent-Length: 100", "X-Guard: HIT\nContent-Length: 100", "X-Guard: HIT\nContent-Length: 100"]
--- response_body eval
["", qr/.{100}/s, qr/.{100}/s, ""]
--- check
is(origin_count('/h'), 1, 'the HEAD miss filled: one origin request');
my @log = origin_log();
is($log[0]{method}, 'GET', 'a GET');



=== TEST 5: negative caching: a 404 is served as NEGATIVE from then on
--- config
    location /n {
        cache_guard main;
        proxy_pass http://origin;
        add_header X-Guard $cache_guard_status always;
    }
--- request eval
["GET /n?status=404", "GET /n?status=404", "GET /n?status=404"]
--- error_code eval
[404, 404, 404]
--- response_headers eval
["X-Guard: MISS", "X-Guard: NEGATIVE", "X-Guard: NEGATIVE"]
--- check
is(origin_count('/n'), 1, 'one origin request for three 404s');



=== TEST 6: negative entries expire after negative_ttl, positive ones do not
--- config
    location / {
        cache_guard main;
        cache_guard_policy $TEST_NGINX_HTML_DIR/p.lua;
        proxy_pass http://origin;
    }
--- user_files
>>> p.lua
return { ttl = 60, jitter = 0, negative_ttl = 1 }
--- check
http_get('/neg?status=404');
http_get('/pos');
is(origin_count('/neg'), 1, 'negative filled once');
ok(wait_for(sub { http_get('/neg?status=404'); origin_count('/neg') == 2 }, 10,
            'the negative entry expires'), 'negative entry refilled after 1 s');
http_get('/pos');
is(origin_count('/pos'), 1, 'the positive entry is still cached');



=== TEST 7: responses that must not be shared are never stored
--- config
    location / {
        cache_guard main;
        proxy_pass http://origin;
        add_header X-Guard $cache_guard_status always;
    }
--- request eval
[map { ("GET $_") x 3 }
     '/cookie?hdr=Set-Cookie:sid%3D1',
     '/nostore?hdr=Cache-Control:no-store',
     '/private?hdr=Cache-Control:private,%20max-age%3D60',
     '/varyall?hdr=Vary:*',
     '/varyck?hdr=Vary:Cookie',
     '/s500?status=500',
     '/s302?status=302&hdr=Location:/x']
--- response_headers
X-Guard: MISS
--- check
is(origin_count($_), 3, "$_ reached the origin every time")
    for qw(/cookie /nostore /private /varyall /varyck /s500 /s302);



=== TEST 8: a request with Authorization is neither served from nor stored in the cache
--- config
    location / {
        cache_guard main;
        proxy_pass http://origin;
        add_header X-Guard $cache_guard_status always;
    }
--- request eval
["GET /auth", "GET /auth", "GET /auth", "GET /secret", "GET /secret"]
--- more_headers eval
[undef, undef, "Authorization: Bearer alice", "Authorization: Bearer alice",
 undef]
--- response_headers eval
[undef,
 "X-Guard: HIT",       # anonymous request hits
 "X-Guard: BYPASS",    # authorised request bypasses
 undef,
 "X-Guard: MISS"]      # a response to an authorised request was not stored
--- check
is(origin_count('/auth'), 2, 'the authorised request reached the origin');
is(origin_count('/secret'), 2, 'both requests reached the origin');



=== TEST 9: a body over max_entry_size is not stored, one within it is
--- config
    location / {
        cache_guard main;
        cache_guard_policy $TEST_NGINX_HTML_DIR/p.lua;
        proxy_pass http://origin;
    }
--- user_files
>>> p.lua
return { max_entry_size = "10k" }
--- request eval
["GET /big?size=10241", "GET /big?size=10241",
 "GET /fits?size=10240", "GET /fits?size=10240"]
--- error_code
200
--- check
is(origin_count('/big'), 2, 'an entry over 10k is not stored');
is(origin_count('/fits'), 1, 'an entry of exactly 10k is stored');



=== TEST 10: other methods bypass the cache
--- config
    location / {
        cache_guard main;
        proxy_pass http://origin;
        add_header X-Guard $cache_guard_status always;
    }
--- request eval
["POST /m\r\nhello", "POST /m\r\nhello", "GET /m", "GET /m"]
--- response_headers eval
["X-Guard: BYPASS", "X-Guard: BYPASS", "X-Guard: MISS", "X-Guard: HIT"]
--- check
is(origin_count('/m'), 3, 'POSTs always reach the origin');



=== TEST 11: the key template: $cache_guard_key, and args outside the key share an entry
--- config
    location / {
        cache_guard main;
        cache_guard_policy $TEST_NGINX_HTML_DIR/p.lua;
        proxy_pass http://origin;
        add_header X-Key $cache_guard_key always;
        add_header X-Guard $cache_guard_status always;
    }
--- user_files
>>> p.lua
return { key = "k:$uri:$arg_id" }
--- request eval
["GET /u?id=1&utm=a", "GET /u?id=1&utm=b", "GET /u?id=2"]
--- response_headers eval
["X-Key: k:/u:1\nX-Guard: MISS", "X-Key: k:/u:1\nX-Guard: HIT", "X-Key: k:/u:2\nX-Guard: MISS"]
--- check
is(origin_count('/u'), 2, 'two keys, two origin requests');



=== TEST 12: clients that accept gzip get their own variant of the key
--- config
    location / {
        cache_guard main;
        proxy_pass http://origin;
        add_header X-Key $cache_guard_key always;
    }
--- request eval
["GET /ae", "GET /ae", "GET /ae"]
--- more_headers eval
[undef, "Accept-Encoding: gzip, br", "Accept-Encoding: gzip;q=1, deflate"]
--- response_headers eval
["X-Key: http://localhost/ae",
 # the variable shows the key as one purges it, without the variant
 "X-Key: http://localhost/ae",
 undef]
--- check
is(origin_count('/ae'), 2, 'gzip clients share one variant');



=== TEST 13: gzip-encoded origin responses are only served to gzip clients
--- config
    location / {
        cache_guard main;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/gz/;
        add_header X-Guard $cache_guard_status always;
    }
    # the origin behind nginx's gzip: compressed only when asked for
    location /gz/ {
        gzip on;
        gzip_types application/json;
        gzip_min_length 1;
        gzip_http_version 1.0;
        gzip_proxied any;
        gzip_vary on;
        proxy_pass http://origin/;
    }
    # an origin that says gzip whatever the client accepts
    location /raw/ {
        cache_guard main;
        proxy_pass http://origin;
        add_header X-Guard $cache_guard_status always;
    }
--- check
use IO::Uncompress::Gunzip qw(gunzip $GunzipError);
my %gzip = (headers => { 'Accept-Encoding' => 'gzip' });
my $gunzip = sub {
    my ($r) = @_;
    my $text;
    gunzip(\$r->{body} => \$text) or return "not gzip: $GunzipError";
    return $text;
};
my $answer = sub {
    my ($r) = @_;
    return join ' ', $r->{headers}{'x-guard'} // '-',
        $r->{headers}{'content-encoding'} // 'identity';
};
my $n1 = qr/^\{"path":"\/enc","n":1,"status":200\}/;
my $n2 = qr/^\{"path":"\/enc","n":2,"status":200\}/;

my $r = http_get('/enc', %gzip);
is($answer->($r), 'MISS gzip', 'a gzip client: a miss, gzip');
like($gunzip->($r), $n1, "of the origin's first answer");
is(origin_count('/enc'), 1, 'which reached the origin');
$r = http_get('/enc', %gzip);
is($answer->($r), 'HIT gzip', 'again: a hit, gzip');
like($gunzip->($r), $n1, 'the same answer');

$r = http_get('/enc');
is($answer->($r), 'MISS identity', 'a client without gzip: a miss, identity');
like($r->{body}, $n2, "the origin's second answer, plain");
is(origin_count('/enc'), 2, 'which reached the origin');
$r = http_get('/enc');
is($answer->($r), 'HIT identity', 'again: a hit, identity');
like($r->{body}, $n2, 'the same plain answer');

$r = http_get('/enc', %gzip);
is($answer->($r), 'HIT gzip', 'the gzip variant is still served to gzip clients');
like($gunzip->($r), $n1, 'compressed');
is(origin_count('/enc'), 2, 'two origin requests in all');

my $q = '?hdr=Content-Encoding:gzip&hdr=Vary:Accept-Encoding';
http_get("/raw/e$q", %gzip);
is($answer->(http_get("/raw/e$q", %gzip)), 'HIT gzip',
   'an origin always saying gzip: stored for gzip clients');
is(origin_count('/raw/e'), 1, 'one origin request');
is($answer->(http_get("/raw/e$q")), 'MISS gzip',
   "a client without gzip misses (and gets the origin's answer)");
is($answer->(http_get("/raw/e$q")), 'MISS gzip',
   'and an encoded body is never stored for it');
is(origin_count('/raw/e'), 3, 'each of its requests reached the origin');
--- no_error_log
[error]
[alert]



=== TEST 14: cache_guard off in a nested location
--- config
    location / {
        cache_guard main;
        proxy_pass http://origin;
        location /off/ {
            cache_guard off;
            proxy_pass http://origin;
        }
    }
--- request eval
["GET /off/x", "GET /off/x", "GET /on", "GET /on"]
--- check
is(origin_count('/off/x'), 2, 'not cached where off');
is(origin_count('/on'), 1, 'cached where on');



=== TEST 15: a full zone evicts least recently used entries and keeps serving
--- http_config
    cache_guard_zone small size=256k;
--- config
    location / {
        cache_guard small;
        proxy_pass http://origin;
        add_header X-Guard $cache_guard_status always;
    }
--- request eval
[(map { "GET /fill$_?size=20000" } 1 .. 40),
 "GET /fill40?size=20000", "GET /fill1?size=20000"]
--- response_headers eval
[("X-Guard: MISS") x 40,
 "X-Guard: HIT",    # the newest entry is still there
 "X-Guard: MISS"]   # the oldest entry was evicted
--- check
is(origin_total(), 41, 'forty fills, then the miss of the evicted /fill1');
--- error_log
zone "small" is full, evicting least recently used entries
--- no_error_log
[error]
[crit]
