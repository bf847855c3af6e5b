# cache_guard_redis parameters: prefix=, db=, password=, a unix socket.
use lib 't/lib';
use Test::CacheGuard 'no_plan';
use Test::CacheGuard::Preset;

guard_preamble(init => 'origin_reset(); redis_flush();');

run_tests();

__DATA__

=== TEST 1: prefix= and db= choose where entries live
--- http_config
    cache_guard_zone main size=1m;
    cache_guard_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT prefix=app1: db=3;
--- config
    location / {
        cache_guard main;
        proxy_pass http://127.0.0.1:$TEST_NGINX_ORIGIN_PORT;
    }
--- request
GET /p
--- check
ok(wait_for(sub { redis('SELECT', 3); my $v = redis('EXISTS', 'app1:http://localhost/p'); redis('SELECT', 0); $v }, 5),
   'the entry is in db 3 under the prefix');
is(redis('EXISTS', 'app1:http://localhost/p'), 0, 'not in db 0');
--- no_error_log
[error]



=== TEST 2: a wrong password is logged and requests still reach the origin
--- http_config
    cache_guard_zone main size=1m;
    cache_guard_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT password=wrong;
--- config
    location / {
        cache_guard main;
        proxy_pass http://127.0.0.1:$TEST_NGINX_ORIGIN_PORT;
        add_header X-Guard $cache_guard_status always;
    }
--- init
redis('CONFIG', 'SET', 'requirepass', 'sekrit');
--- request
GET /pw
--- error_code: 200
--- response_headers
X-Guard: MISS
--- error_log
AUTH failed
--- cleanup
redis('AUTH', 'sekrit'); redis('CONFIG', 'SET', 'requirepass', '');



=== TEST 3: the right password works
--- http_config
    cache_guard_zone main size=1m;
    cache_guard_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT password=sekrit;
--- config
    location / {
        cache_guard main;
        proxy_pass http://127.0.0.1:$TEST_NGINX_ORIGIN_PORT;
        add_header X-Guard $cache_guard_status always;
    }
--- setup
redis('CONFIG', 'SET', 'requirepass', 'sekrit');
redis('AUTH', 'sekrit');
--- request
GET /pw2
--- check
ok(wait_for(sub { redis('EXISTS', 'cg:http://localhost/pw2') }, 5),
   'stored with AUTH');
--- cleanup
redis('CONFIG', 'SET', 'requirepass', '');
--- no_error_log
[error]
