# Fills that take a detour or end early: an internal redirect (error_page,
# try_files to a named location) keeps the fill and its locks; a filler
# whose client goes away, or whose answer is not stored, lets its waiters
# go on instead of failing them or making them fill one after another.
use lib 't/lib';
use Test::CacheGuard 'no_plan';
use Test::CacheGuard::Assert;
use Test::CacheGuard::Preset;

use IO::Socket::INET;
use Time::HiRes qw(sleep);

guard_preamble(
    zone  => '4m',
    redis => 'timeout=1s',
    init  => 'origin_reset(); redis_flush();',
);

run_tests();

__DATA__

=== TEST 1: a background refresh whose origin fails behind error_page ends, and frees its locks
--- config
    error_page 500 502 503 504 /50x.html;
    location = /50x.html {
        return 502 "bad gateway\n";
    }
    location / {
        cache_guard main;
        cache_guard_policy $TEST_NGINX_HTML_DIR/p.lua;
        proxy_pass http://127.0.0.1:$TEST_NGINX_ORIGIN_PORT;
        add_header X-Guard $cache_guard_status always;
    }
--- user_files
>>> p.lua
return { key = "$uri", ttl = 1, jitter = 0, stale = { while_revalidate = 60 },
         early_refresh = false, lock = { ttl = 30 } }
--- check
http_get('/r');
ok(stored('cg:/r'), 'filled');
# the entry's own ttl of 1 s must pass: that wait is the point
sleep 1.3;
origin_set('/r', close => 1);
my $r = http_get('/r', timeout => 5 * slow());
is($r->{status}, 200, 'the stale copy is served');
is(guard($r), 'STALE', 'STALE, with a refresh started');
ok($r->{elapsed} < 3 * slow(), "the connection closed promptly ($r->{elapsed} s)");
ok(wait_for(sub { !redis('EXISTS', 'cg:lock:/r') }, 5), 'the refresh released its Redis lock');
origin_clear('/r');
ok(wait_for(sub { guard(http_get('/r')) eq 'STALE'
                  && origin_count('/r') >= 3 }, 10),
   'a later request starts a new refresh: no lock was left behind');



=== TEST 2: a filler sent through try_files to a named location still fills, and waits for nobody
--- config
    cache_guard main;
    cache_guard_policy $TEST_NGINX_HTML_DIR/p.lua;
    location / {
        try_files /nonexistent @be;
        add_header X-Guard $cache_guard_status always;
    }
    location @be {
        proxy_pass http://127.0.0.1:$TEST_NGINX_ORIGIN_PORT;
        add_header X-Guard $cache_guard_status always;
    }
--- user_files
>>> p.lua
return { key = "$uri", lock = { wait = 3 } }
--- check
my $r = http_get('/t');
is($r->{status}, 200, 'answered');
ok($r->{elapsed} < 2, "without waiting for its own lock ($r->{elapsed} s)");
ok(stored('cg:/t'), 'and stored');
is(guard(http_get('/t')), 'HIT', 'then a hit');
is(origin_count('/t'), 1, 'one origin request');



=== TEST 3: a filler whose client goes away: a waiter fills instead of getting the fallback
--- config
    location / {
        cache_guard main;
        cache_guard_policy $TEST_NGINX_HTML_DIR/p.lua;
        proxy_pass http://127.0.0.1:$TEST_NGINX_ORIGIN_PORT;
        add_header X-Guard $cache_guard_status always;
    }
--- user_files
>>> p.lua
return { key = "$uri", lock = { wait = 10 } }
--- check
origin_set('/gone', delay => 1.5);
my $sock = IO::Socket::INET->new(
    PeerAddr => "127.0.0.1:$ENV{TEST_NGINX_SERVER_PORT}", Timeout => 5)
    or die "connect: $!";
print $sock "GET /gone HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
ok(wait_for(sub { origin_count('/gone') == 1 }, 5), 'the filler reached the origin');
my @waiters = map {
    my $s = IO::Socket::INET->new(
        PeerAddr => "127.0.0.1:$ENV{TEST_NGINX_SERVER_PORT}", Timeout => 5);
    print $s "GET /gone HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    $s;
} 1 .. 3;
close $sock;
my @res;
for my $s (@waiters) {
    local $/;
    my $raw = <$s> // '';
    push @res, $raw =~ m{^HTTP/1\.1 (\d+)} ? $1 : 0;
}
is(join(',', @res), '200,200,200', 'the waiters got 200, not the fallback');
ok(origin_count('/gone') <= 2, 'one of them filled: ' . origin_count('/gone') . ' origin requests');



=== TEST 4: a response that is not stored lets the waiters go to the origin at once, not one after another
--- config
    location / {
        cache_guard main;
        cache_guard_policy $TEST_NGINX_HTML_DIR/p.lua;
        proxy_pass http://127.0.0.1:$TEST_NGINX_ORIGIN_PORT;
    }
--- user_files
>>> p.lua
return { key = "$uri", negative_ttl = 0, lock = { wait = 20 } }
--- check
origin_set('/nf', status => 404, delay => 1);
my $res = http_concurrent(6, sub { '/nf' }, timeout => 30);
is(scalar(grep { $_->{status} == 404 } @$res), 6, 'all six got the 404');
ok(max_elapsed($res) < 3.5 * slow(),
   'within two origin delays, not six: ' . max_elapsed($res) . ' s');
