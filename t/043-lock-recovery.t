# A worker that dies while it holds a fill lock leaves nothing stuck: the
# node lock names its holder's pid and a waiter takes over from a dead one
# at once; the Redis lock expires by itself after lock.ttl.
use lib 't/lib';

# Killing a worker needs nginx's master; valgrind runs one process.
use Test::CacheGuard $ENV{TEST_NGINX_USE_VALGRIND}
    ? (skip_all => 'workers are killed: not under valgrind') : 'no_plan';
use Test::CacheGuard::Assert;
use Test::CacheGuard::Preset;

use IO::Socket::INET;

guard_preamble(
    config     => guard_location(pass => 'http://127.0.0.1:$TEST_NGINX_ORIGIN_PORT'),
    user_files => <<'LUA',
>>> p.lua
return { key = "$uri", lock = { ttl = 3, wait = 10 } }
LUA
    init       => 'origin_reset(); redis_flush();',
);

# Starts a fill of $path that the origin holds for 30 s, and kills the
# worker doing it once the origin has the request.
sub kill_filler {
    my ($path) = @_;
    origin_set($path, delay => 30);
    my ($worker) = worker_pids();
    my $sock = IO::Socket::INET->new(
        PeerAddr => "127.0.0.1:$ENV{TEST_NGINX_SERVER_PORT}", Timeout => 5)
        or die "connect: $!";
    print $sock "GET $path HTTP/1.1\r\nHost: localhost\r\n"
              . "Connection: close\r\n\r\n";
    ok(wait_for(sub { origin_count($path) == 1 }, 10, 'the fill started'),
       'the filler reached the origin');
    kill 'KILL', $worker;
    ok(wait_for(sub { my @w = worker_pids(); @w && $w[0] != $worker }, 10,
                'a new worker'), 'the master started a new worker');
    origin_clear($path);
    return $sock;
}

run_tests();

__DATA__

=== TEST 1: L1 only: a waiter takes over from a dead holder at once
--- http_config
    cache_guard_zone main size=4m;
--- check
my $sock = kill_filler('/dead');
my $r = http_get('/dead');
is($r->{status}, 200, 'answered');
is(guard($r), 'MISS', 'by a new fill');
ok($r->{elapsed} < 2 * slow(), "at once, not after lock.ttl ($r->{elapsed} s)");
is(origin_count('/dead'), 2, 'the killed fill and the new one');
is(guard(http_get('/dead')), 'HIT l1', 'then cached');
--- error_log
exited on signal 9



=== TEST 2: with Redis: the dead holder's Redis lock expires after lock.ttl, then one request fills
--- http_config
    cache_guard_zone main size=4m;
    cache_guard_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT timeout=1s;
--- check
my $sock = kill_filler('/dead2');
ok(redis('EXISTS', 'cg:lock:/dead2'), 'the dead filler left its Redis lock');
my $res = http_concurrent(10, sub { '/dead2' }, timeout => 30);
is(scalar(grep { $_->{status} == 200 } @$res), 10, 'all 10 answered');
is(scalar(grep { guard($_) eq 'MISS' } @$res), 1, 'one of them filled');
ok(max_elapsed($res) < 3 + 2 * slow(),
   'within lock.ttl and a margin: ' . max_elapsed($res) . ' s');
is(origin_count('/dead2'), 2, 'the killed fill and one new fill');
ok(stored('cg:/dead2'), 'stored');
ok(wait_for(sub { !redis('EXISTS', 'cg:lock:/dead2') }, 5), 'no lock left');
--- error_log
exited on signal 9



=== TEST 3: the lock is released with EVALSHA, and with EVAL when Redis answers NOSCRIPT
--- http_config
    cache_guard_zone main size=4m;
    cache_guard_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT timeout=1s;
--- check
my $sha = '08782137c8358e2fede877aa6fa70109ca306cec';
redis('SCRIPT', 'FLUSH');
is(redis('SCRIPT', 'EXISTS', $sha)->[0], 0, 'no script cached');
origin_set('/ns', delay => 0.5);
my $r = http_get('/ns');
is(guard($r), 'MISS', 'a fill');
ok(wait_for(sub { !redis('EXISTS', 'cg:lock:/ns') }, 5),
   'its lock was released despite NOSCRIPT');
is(redis('SCRIPT', 'EXISTS', $sha)->[0], 1,
   'by EVAL, which cached the script under the SHA the module uses');
$r = http_get('/ns2');
ok(wait_for(sub { !redis('EXISTS', 'cg:lock:/ns2') }, 5),
   'the next release (EVALSHA) works too');
--- no_error_log
[error]
