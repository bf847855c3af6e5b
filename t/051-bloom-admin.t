# Bloom filters through the admin API (POST /bloom/NAME adds, GET tests)
# and through Redis: items added on one node are written to the bitmap at
# redis_key and merged by every other node; a filter whose only source is
# Redis stays unloaded (requests pass) while Redis is down.
use lib 't/lib';
use Test::CacheGuard 'no_plan';
use Test::CacheGuard::Preset;
use Test::CacheGuard::Status;

use JSON::PP qw(decode_json);

guard_preamble(
    config_before => admin_location(),
    init          => 'redis_flush() if redis_running();',
);

sub is_present {
    my ($name, $item, %opt) = @_;
    return json_of(http_get("/admin/bloom/$name?item=$item", %opt))->{present};
}

# Wait until the block's error log has a line matching $re: the sync step
# that a check of the filter's state must come after.
sub logged {
    my ($re, $what) = @_;
    return wait_for(sub { error_log_since_block() =~ $re }, 10, $what);
}

sub post_items {
    my ($name, $body, %opt) = @_;
    return http_request('POST', "/admin/bloom/$name", body => $body, %opt);
}

run_tests();

__DATA__

=== TEST 1: POST adds items, GET tests them; a filter with neither file nor Redis is loaded by its first add
--- http_config
    cache_guard_bloom users capacity=1000 error_rate=0.01;
--- check
my $before = json_of(http_get('/admin/bloom/users?item=alice'));
is_deeply($before, { filter => 'users', item => 'alice',
                     present => JSON::PP::false, loaded => JSON::PP::false },
          'absent, and not loaded before any add');
my $r = post_items('users', "alice\nbob\r\n\ncarol");
is($r->{status}, 200, 'POST answers 200');
is($r->{headers}{'content-type'}, 'application/json', 'in JSON');
is_deeply(json_of($r), { filter => 'users', added => 3 },
          'three items added (CRLF and an empty line, no final LF)');
ok(is_present('users', $_), "$_ present") for qw(alice bob carol);
ok(!is_present('users', 'dave'), 'dave absent');
ok(bloom_info('users')->{loaded}, 'loaded');
is(bloom_info('users')->{items}, 3, 'three items');
--- no_error_log
[error]
[alert]



=== TEST 2: items are URI-decoded in GET, raw in POST bodies
--- http_config
    cache_guard_bloom users capacity=1000 error_rate=0.01;
--- check
post_items('users', "a b/c?d\n\"quoted\"\n");
ok(is_present('users', 'a%20b%2Fc%3Fd'), 'an item with a space, / and ?');
my $r = json_of(http_get('/admin/bloom/users?item=%22quoted%22'));
is($r->{item}, '"quoted"', 'quotes escaped in the JSON answer');
ok($r->{present}, 'and present');
--- no_error_log
[error]
[alert]



=== TEST 3: errors are JSON with a 4xx status
--- http_config
    cache_guard_bloom users capacity=1000 error_rate=0.01;
--- config
    location /small/ {
        cache_guard_admin;
        client_max_body_size 1k;
    }
--- request eval
["GET /admin/bloom/nosuch?item=a",
 "GET /admin/nosuch",
 "GET /admin/bloom/users/more",                             # a longer path
 "DELETE /admin/bloom/users",
 "GET /admin/bloom/users?item=",                            # an empty item
 "POST /admin/bloom/users\nok\n" . ('x' x 4097) . "\n\n",    # line 2 too long
 "GET /admin/bloom/users?item=ok",                          # nothing was added
 "POST /small/bloom/users\n" . ('y' x 2000),                # over client_max_body_size
 "HEAD /admin/bloom/users?item=a"]
--- error_code eval
[404, 404, 404, 405, 400, 400, 200,
 413,    # from nginx
 200]
--- response_body eval
[qq({"error": "unknown bloom filter \\"nosuch\\""}\n),
 qq({"error": "unknown admin call"}\n),
 qq({"error": "unknown admin call"}\n),
 qq({"error": "method not allowed, use GET, HEAD, POST"}\n),
 qq({"error": "an item is 1 to 4096 bytes"}\n),
 qq({"error": "line 2 is longer than 4096 bytes, nothing was added"}\n),
 qr/"present": false/,
 undef,
 ""]     # HEAD: without a body
--- response_headers eval
["Content-Type: application/json",
 undef,
 undef,
 "Allow: GET, HEAD, POST",
 (undef) x 5]
--- no_error_log
[alert]



=== TEST 4: a large body, read as it comes in 8k buffers and never written to a temporary file, items cut across reads: all added
--- http_config
    cache_guard_bloom users capacity=100000 error_rate=0.01;
--- config
    location /big/ {
        cache_guard_admin;
        client_max_body_size 10m;
        client_body_buffer_size 8k;
    }
--- check
my $body = join '', map { "item-$_-" . ('p' x ($_ % 50)) . "\n" } 1 .. 20000;
ok(length($body) > 500_000, 'a body of ' . length($body) . ' bytes');
my $r = http_request('POST', '/big/bloom/users', body => $body);
is($r->{status}, 200, 'added');
is(json_of($r)->{added}, 20000, '20,000 items');
my @missing = grep {
    !is_present('users', "item-$_-" . ('p' x ($_ % 50)))
} map { 1 + int(rand(20000)) } 1 .. 300;
is(scalar @missing, 0, '300 sampled items all present');
ok(is_present('users', 'item-20000-' . ('p' x 0)), 'the last one too');
--- no_error_log
a client request body is buffered to a temporary file
[error]
[alert]



=== TEST 5: node A adds, Redis holds the bits at the offsets the unit test fixes, node B merges them
--- http_config
    cache_guard_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT timeout=1s;
    cache_guard_bloom users capacity=1000 error_rate=0.01 redis_key=bf:users
                      sync=1s;
--- check
ok(wait_for(sub { !bloom_info('users')->{loaded} }, 2), 'A: no key yet, '
   . 'so not loaded');
my $r = post_items('users', "42\n");
is_deeply(json_of($r), { filter => 'users', added => 1, redis => JSON::PP::true },
          'added, and written to Redis');
is(redis('BITCOUNT', 'bf:users'), 8, 'Redis holds 8 bits');
is(join(' ', map { redis('GETBIT', 'bf:users', $_) }
              4634, 4657, 4684, 4713, 4751, 4788, 4806, 4837),
   '1 1 1 1 1 1 1 1', 'at the offsets of t/unit/bloom_unit.c');
ok(redis('STRLEN', 'bf:users') <= bloom_info('users')->{bytes},
   'no longer than the filter');
ok(wait_for(sub { bloom_info('users')->{loaded} }, 5, 'A to merge'),
   'A loaded by its own merge');
start_second_nginx(admin_location());
my $port2 = $ENV{TEST_NGINX_SERVER_PORT2};
ok(wait_for(sub { is_present('users', '42', port => $port2) }, 5,
            'B to merge'), 'B has the item');
my $info = bloom_info('users', port => $port2);
ok($info->{loaded}, 'B loaded from Redis');
ok($info->{last_sync}, 'with a sync time');
is($info->{items}, 1, 'B estimates one item from the bits');
post_items('users', "43\n44\n", port => $port2);
ok(wait_for(sub { is_present('users', '43') && is_present('users', '44') },
            5, 'A to merge B\'s items'), 'and A has B\'s');
--- no_error_log
[error]
[alert]



=== TEST 6: a file and Redis: a node has both, and never a false negative
--- http_config
    cache_guard_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT timeout=1s;
    cache_guard_bloom users capacity=10000 error_rate=0.01 redis_key=bf:users
                      sync=1s file=$TEST_NGINX_HTML_DIR/users.txt;
--- user_files
>>> users.txt
from-file-1
from-file-2
--- check
ok(bloom_info('users')->{loaded}, 'loaded by the file at once');
post_items('users', join('', map { "from-admin-$_\n" } 1 .. 1000));
is(redis('BITCOUNT', 'bf:users') > 7000, 1, 'the admin items in Redis');
ok(!(grep { !is_present('users', "from-file-$_") } 1, 2), 'file items');
ok(!(grep { !is_present('users', "from-admin-$_") } 1 .. 1000),
   '1,000 admin items');
--- no_error_log
[error]
[alert]



=== TEST 7: Redis down, no file: not loaded, and an add reports Redis failed
--- http_config
    cache_guard_redis 127.0.0.1:1 timeout=200ms connect_timeout=200ms;
    cache_guard_bloom users capacity=1000 error_rate=0.01 redis_key=bf:users
                      sync=1s;
--- check
ok(logged(qr/cache guard: redis "127\.0\.0\.1:1" connect failed/,
          'the first sync to fail'), 'the first sync failed to connect');
my $info = bloom_info('users');
ok(!$info->{loaded}, 'not loaded');
is($info->{last_sync}, undef, 'never merged');
my $r = post_items('users', "alice\n");
is_deeply(json_of($r), { filter => 'users', added => 1, redis => JSON::PP::false },
          'added locally, not in Redis');
my $t = json_of(http_get('/admin/bloom/users?item=alice'));
ok($t->{present}, 'alice present on this node');
ok(!$t->{loaded}, 'but still not loaded: Redis is its source');
--- error_log
connect failed



=== TEST 8: Redis back: merged at the next sync
--- http_config
    cache_guard_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT timeout=200ms
                      connect_timeout=200ms;
    cache_guard_bloom users capacity=1000 error_rate=0.01 redis_key=bf:users
                      sync=1s;
--- setup
redis_stop();
--- check
ok(logged(qr/cache guard: redis "[^"]+:$ENV{TEST_NGINX_REDIS_PORT}" connect failed/,
          'the first sync to fail'), 'the first sync failed to connect');
ok(!bloom_info('users')->{loaded}, 'Redis down: not loaded');
redis_start();
redis('SETBIT', 'bf:users', $_, 1)
    for 4634, 4657, 4684, 4713, 4751, 4788, 4806, 4837;
ok(wait_for(sub { bloom_info('users')->{loaded} }, 15, 'the merge'),
   'loaded once Redis is back');
ok(is_present('users', '42'), 'with the item another node wrote');
ok(!is_present('users', '43'), 'and not another');



=== TEST 9: a Redis bitmap longer than the filter is not merged: nodes disagree on the size
--- http_config
    cache_guard_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT timeout=1s;
    cache_guard_bloom users capacity=1000 error_rate=0.01 redis_key=bf:users
                      sync=1s;
--- init
redis('SETBIT', 'bf:users', 100_000, 1);
--- check
ok(logged(qr/bloom "users": redis key "bf:users" holds 12501 bytes/,
          'the sync to read the key'), 'the sync read the length of the key');
ok(!bloom_info('users')->{loaded}, 'and did not load it');
--- error_log eval
qr{bloom "users": redis key "bf:users" holds 12501 bytes, more than the filter's 1344: do all nodes declare the same capacity and error_rate\?}



=== TEST 10: a bitmap larger than one GETRANGE chunk is merged in chunks
--- http_config
    cache_guard_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT timeout=1s;
    cache_guard_bloom users capacity=500000 error_rate=0.01 redis_key=bf:users
                      sync=1s;
--- check
my $body = join '', map { "u$_\n" } 1 .. 50000;
my $r = post_items('users', $body);
is(json_of($r)->{added}, 50000, 'added');
ok(json_of($r)->{redis}, 'written to Redis');
my $len = redis('STRLEN', 'bf:users');
ok($len > 3 * 65536, "the bitmap is $len bytes");
start_second_nginx(admin_location());
my $port2 = $ENV{TEST_NGINX_SERVER_PORT2};
ok(wait_for(sub { bloom_info('users', port => $port2)->{loaded} }, 5,
            'B to merge'), 'B merged');
ok(!(grep { !is_present('users', "u$_", port => $port2) }
     map { 1 + int(rand(50000)) } 1 .. 300), '300 sampled items on B');
my $items = bloom_info('users', port => $port2)->{items};
ok($items > 48000 && $items < 52000, "B estimates $items items");
--- no_error_log
[error]
[alert]
