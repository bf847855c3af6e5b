# cache_guard_redis parameters: prefix=, db=, password=, a unix socket, a
# host name; and replies larger than a read, pipelined.
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



=== TEST 4: a unix socket: entries go to the server listening on it, and come back from it
--- setup
my $dir = "$ENV{TEST_NGINX_SERVROOT}-unix";
mkdir $dir;
system('redis-server', '--port', '0', '--unixsocket', "$dir/redis.sock",
       '--daemonize', 'yes', '--pidfile', "$dir/redis.pid",
       '--logfile', "$dir/redis.log", '--save', '', '--appendonly', 'no',
       '--dir', $dir) == 0 or die "redis-server: $?";
wait_for(sub { -S "$dir/redis.sock"
               && `redis-cli -s $dir/redis.sock PING` =~ /PONG/ }, 10)
    or die 'no redis on the unix socket';
--- http_config
    cache_guard_zone main size=1m;
    cache_guard_redis unix:$TEST_NGINX_SERVROOT-unix/redis.sock;
--- config eval
guard_location(pass => 'http://127.0.0.1:$TEST_NGINX_ORIGIN_PORT')
--- user_files
>>> p.lua
return { key = "$uri", l1 = false }
--- check
my $sock = "$ENV{TEST_NGINX_SERVROOT}-unix/redis.sock";
is(http_get('/u')->{headers}{'x-guard'}, 'MISS', 'a miss fills');
ok(wait_for(sub { `redis-cli -s $sock EXISTS cg:/u` =~ /^1/ }, 10),
   'the entry is on the unix socket\'s server');
is(redis('EXISTS', 'cg:/u'), 0, 'not on the TCP one');
is(http_get('/u')->{headers}{'x-guard'}, 'HIT l2', 'and is read back from it');
is(origin_count('/u'), 1, 'the origin was asked once');
--- cleanup
my $dir = "$ENV{TEST_NGINX_SERVROOT}-unix";
system("kill \$(cat $dir/redis.pid) 2>/dev/null");
--- no_error_log
[error]



=== TEST 5: a host name is resolved when nginx reads its configuration
--- http_config
    cache_guard_zone main size=1m;
    cache_guard_redis localhost:$TEST_NGINX_REDIS_PORT;
--- config eval
guard_location(pass => 'http://127.0.0.1:$TEST_NGINX_ORIGIN_PORT')
--- user_files
>>> p.lua
return { key = "$uri", l1 = false }
--- check
http_get('/h');
ok(wait_for(sub { redis('EXISTS', 'cg:/h') }, 10), 'stored through localhost');
is(http_get('/h')->{headers}{'x-guard'}, 'HIT l2', 'and read back');
--- no_error_log
[error]



=== TEST 6: replies larger than a read and than a wake's budget, many at once: each whole, in order
--- http_config
    cache_guard_zone main size=1m;
    cache_guard_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT timeout=5s;
--- config eval
guard_location(pass => 'http://127.0.0.1:$TEST_NGINX_ORIGIN_PORT')
--- user_files
>>> p.lua
return { key = "$uri", l1 = false, max_entry_size = "4m" }
--- timeout: 60
--- check
my %size = map { ("/big/$_" => 100_000 * $_ + 7) } 1 .. 12;   # to 1.2 MB
for my $path (sort keys %size) {
    http_get("$path?size=$size{$path}");
}
for my $path (sort keys %size) {
    ok(wait_for(sub { redis('EXISTS', "cg:$path") }, 10), "$path stored");
}
my $res = http_concurrent(12, sub {
    my $path = '/big/' . ($_[0] + 1);
    return "$path?size=$size{$path}";
});
my @wrong = grep {
    ($res->[$_]{headers}{'x-guard'} // '') ne 'HIT l2'
        || length($res->[$_]{body} // '') != $size{'/big/' . ($_ + 1)}
} 0 .. 11;
is("@wrong", '', 'twelve concurrent L2 hits of 0.1 to 1.2 MB, each whole');
for my $path (sort keys %size) {
    my $r = http_get("$path?size=$size{$path}");
    is(length $r->{body}, $size{$path}, "$path whole from L2");
    is($r->{headers}{'x-guard'}, 'HIT l2', "$path from L2");
}
is(origin_total(), 12, 'the origin saw each once');
--- no_error_log
[error]
