# Bloom filters on the request path: a policy's bloom = { filter, item,
# on_reject } rejects requests for keys the filter says cannot exist, before
# Redis and the origin; shadow mode lets them through and counts them; a
# filter not loaded yet lets everything through.  Every test counts what
# reached the test origin.
use lib 't/lib';
use Test::CacheGuard 'no_plan';
use Test::CacheGuard::Assert;
use Test::CacheGuard::Preset;
use Test::CacheGuard::Status;
use Test::CacheGuard::Util qw(write_lines);

use JSON::PP qw(decode_json);

guard_preamble(
    zone          => '8m',
    redis         => 'timeout=1s',
    upstream      => 1,
    config_before => admin_location(),
    init          => 'origin_reset(); redis_flush();',
);

sub users_location {
    return <<'CONF';
    location ~ ^/api/users/(\d+)$ {
        cache_guard main;
        cache_guard_policy $TEST_NGINX_HTML_DIR/users.lua;
        proxy_pass http://origin;
        add_header X-Guard "$cache_guard_status $cache_guard_level" always;
    }
CONF
}

# GET every path, 200 at a time; the responses in order.
sub get_all {
    my (@paths) = @_;
    my @res;
    while (my @batch = splice @paths, 0, 200) {
        push @res, @{http_concurrent(scalar @batch, sub { $batch[$_[0]] })};
    }
    return \@res;
}

run_tests();

__DATA__

=== TEST 1: 10,000 ids that do not exist: at most 1.3% reach the origin, the rest are 404 BLOOM_REJECT in JSON
--- http_config
    cache_guard_bloom users capacity=100000 error_rate=0.01
                      file=$TEST_NGINX_HTML_DIR/users.txt;
--- config eval
main::users_location()
--- user_files
>>> users.lua
return { key = "$uri", bloom = { filter = "users", item = "$1", on_reject = 404 } }
--- setup
write_lines('users.txt', 1 .. 100_000);
--- check
my $res = get_all(map { '/api/users/' . (1_000_000 + $_) } 1 .. 10_000);
my @rejected = grep { guard($_) eq 'BLOOM_REJECT' } @$res;
my $passed = origin_total();
note("origin requests: $passed of 10,000; rejected: " . scalar @rejected);
ok($passed <= 130, "at most 1.3% reach the origin: $passed");
is(scalar(@rejected) + $passed, 10_000, 'the others are rejected');
ok(!(grep { $_->{status} != 404 } @rejected), 'rejected with 404');
ok(!(grep { !is_fallback_body($_->{body}) } @rejected),
   'with a JSON error body');
is($rejected[0]{headers}{'content-type'}, 'application/json', 'in JSON');
ok(wait_for(sub { redis('DBSIZE') == $passed }, 5, 'the fills'),
   'Redis holds only the requests that passed');
my $info = bloom_info('users');
is($info->{rejected}, scalar @rejected, 'rejections counted');
is($info->{shadow_rejected}, 0, 'none in shadow');
--- no_error_log
[error]
[alert]



=== TEST 2: every existing id still reaches the origin, then the cache
--- http_config
    cache_guard_bloom users capacity=100000 error_rate=0.01
                      file=$TEST_NGINX_HTML_DIR/users.txt;
--- config eval
main::users_location()
--- user_files
>>> users.lua
return { key = "$uri", bloom = { filter = "users", item = "$1" } }
--- setup
write_lines('users.txt', 1 .. 100_000);
--- check
my @ids = map { 1 + int(rand(100_000)) } 1 .. 500;
my %seen;
@ids = grep { !$seen{$_}++ } @ids;
my $res = get_all(map { "/api/users/$_" } @ids);
is(scalar(grep { $_->{status} == 200 && guard($_) eq 'MISS' } @$res),
   scalar @ids, scalar(@ids) . ' existing ids: all 200 MISS')
    or diag(tally($res));
is(origin_total(), scalar @ids, 'each reached the origin once');
$res = get_all(map { "/api/users/$_" } @ids);
is(scalar(grep { $_->{status} == 200 && guard($_) =~ /^HIT/ } @$res),
   scalar @ids, 'then all hits') or diag(tally($res));
is(origin_total(), scalar @ids, 'no more origin requests');
--- no_error_log
[error]
[alert]



=== TEST 3: on_reject sets the status
--- http_config
    cache_guard_bloom users capacity=1000 error_rate=0.01
                      file=$TEST_NGINX_HTML_DIR/users.txt;
--- config eval
main::users_location()
--- user_files
>>> users.lua
return { key = "$uri", bloom = { filter = "users", item = "$1", on_reject = 410 } }
>>> users.txt
1
2
--- request eval
["GET /api/users/1", "GET /api/users/999999"]
--- error_code eval
[200, 410]
--- response_headers eval
["X-Guard: MISS", "X-Guard: BLOOM_REJECT"]
--- check
is(origin_total(), 1, 'only the existing id reached the origin');
--- no_error_log
[error]
[alert]



=== TEST 4: shadow mode lets every request through and counts the would-be rejections
--- http_config
    cache_guard_bloom users capacity=100000 error_rate=0.01 mode=shadow
                      file=$TEST_NGINX_HTML_DIR/users.txt;
--- config eval
main::users_location()
--- user_files
>>> users.lua
return { key = "$uri", bloom = { filter = "users", item = "$1" } }
--- setup
write_lines('users.txt', 1 .. 100_000);
--- check
my $res = get_all(map { '/api/users/' . (1_000_000 + $_) } 1 .. 2000);
is(scalar(grep { $_->{status} == 200 && guard($_) eq 'MISS' } @$res), 2000,
   'all 2,000 answered by the origin') or diag(tally($res));
is(origin_total(), 2000, 'all reached it');
my $info = bloom_info('users');
ok($info->{shadow_rejected} >= 1950 && $info->{shadow_rejected} <= 2000,
   "would-be rejections counted ($info->{shadow_rejected})");
is($info->{rejected}, 0, 'none rejected');
--- no_error_log
[error]
[alert]



=== TEST 5: a filter not loaded yet lets requests through, with one warning per worker
--- http_config
    cache_guard_bloom users capacity=1000 error_rate=0.01 redis_key=bf:users
                      sync=1s;
--- config eval
main::users_location()
--- user_files
>>> users.lua
return { key = "$uri", bloom = { filter = "users", item = "$1" } }
--- check
my $res = get_all(map { "/api/users/$_" } 1 .. 50);
is(scalar(grep { $_->{status} == 200 && guard($_) eq 'MISS' } @$res), 50,
   'all 50 reach the origin') or diag(tally($res));
ok(!bloom_info('users')->{loaded}, 'the filter is not loaded');
my @warnings = error_log_since_block()
    =~ /bloom "users" is not loaded yet, letting requests through/g;
is(scalar @warnings, 1, 'warned once (one worker)');
--- no_error_log
[error]
[alert]



=== TEST 6: an id added through the admin API is never rejected, on this node and, through Redis, on another
--- http_config
    cache_guard_bloom users capacity=1000 error_rate=0.01 redis_key=bf:users
                      sync=1s file=$TEST_NGINX_HTML_DIR/users.txt;
--- config eval
main::users_location()
--- user_files
>>> users.lua
return { key = "$uri", bloom = { filter = "users", item = "$1" } }
>>> users.txt
1
--- check
my $r = http_get('/api/users/5555555');
is(guard($r), 'BLOOM_REJECT', 'rejected before it is added');
$r = http_request('POST', '/admin/bloom/users', body => "5555555\n");
is($r->{status}, 200, 'added');
$r = http_get('/api/users/5555555');
is($r->{status}, 200, 'then served');
is(guard($r), 'MISS', 'by the origin');
start_second_nginx(main::users_location() . <<'CONF');
    location /admin/ {
        cache_guard_admin;
    }
CONF
my $port2 = $ENV{TEST_NGINX_SERVER_PORT2};
ok(wait_for(sub {
    decode_json(http_get('/admin/bloom/users?item=5555555',
                         port => $port2)->{body})->{present}
}, 5, 'node B to merge'), 'node B merged it');
$r = http_get('/api/users/5555555', port => $port2);
is($r->{status}, 200, 'node B serves it');
like(guard($r), qr/^(?:HIT|MISS)/, 'from the cache or the origin');
--- no_error_log
[error]
[alert]



=== TEST 7: the item from $arg_id
--- http_config
    cache_guard_bloom users capacity=1000 error_rate=0.01
                      file=$TEST_NGINX_HTML_DIR/users.txt;
--- config
    location /user {
        cache_guard main;
        cache_guard_policy $TEST_NGINX_HTML_DIR/users.lua;
        proxy_pass http://origin;
        add_header X-Guard "$cache_guard_status $cache_guard_level" always;
    }
--- user_files
>>> users.lua
return { key = "$uri$is_args$args", bloom = { filter = "users", item = "$arg_id" } }
>>> users.txt
7
--- request eval
["GET /user?id=7", "GET /user?id=8"]
--- error_code eval
[200, 404]
--- response_headers eval
["X-Guard: MISS", "X-Guard: BLOOM_REJECT"]
--- no_error_log
[error]
[alert]



=== TEST 8: a bloom.item hook: nil skips the filter (not a rejection), an item not in it is refused, one in it passes
--- http_config
    cache_guard_bloom users capacity=1000 error_rate=0.01
                      file=$TEST_NGINX_HTML_DIR/users.txt;
--- config
    location /hook {
        cache_guard main;
        cache_guard_policy $TEST_NGINX_HTML_DIR/users.lua;
        proxy_pass http://origin;
        add_header X-Guard "$cache_guard_status $cache_guard_level" always;
    }
--- user_files
>>> users.lua
return {
  key = "$uri$is_args$args",
  bloom = { filter = "users", item = function(r) return r:arg("id") end },
}
>>> users.txt
7
--- request eval
["GET /hook?id=7", "GET /hook?id=8", "GET /hook?other=1", "GET /hook?other=1"]
--- error_code eval
[200,    # in the filter
 404,    # not in it: refused
 200,    # nil from the hook: nothing to test, looked up and filled
 200]
--- response_headers eval
["X-Guard: MISS", "X-Guard: BLOOM_REJECT", "X-Guard: MISS", "X-Guard: HIT l1"]
--- check
is(origin_total(), 2, 'the item in the filter and the nil one reached the origin');
is(bloom_info('users')->{rejected}, 1, 'one rejection counted: nil is not one');
--- no_error_log
[error]
[alert]
