# Purge through the admin API: DELETE /cache?key=K removes K (and its gzip variant)
# from this node's L1 at once, from Redis with UNLINK, and from every other
# node's L1 through the Redis pub/sub channel cg:purge; soft=1 makes the
# entry stale instead, so stale-while-revalidate still shields the origin;
# DELETE /cache?pattern=GLOB purges with SCAN + UNLINK in batches and never
# touches a fill lock.  Every block counts origin requests, reads Redis or
# reads the X-Guard header ("$cache_guard_status $cache_guard_level").
use lib 't/lib';
use Test::CacheGuard 'no_plan';
use Test::CacheGuard::Preset;
use Test::CacheGuard::Status;
use Test::CacheGuard::Assert;

use IO::Select;
use IO::Socket::INET;
use JSON::PP qw(decode_json);
use Time::HiRes qw(time sleep);

# The server of every block, and of the second node of the two-node blocks.
sub purge_server {
    return admin_location() . <<'CONF' . guard_location();
    location /plain {
        return 200 "plain\n";
    }
CONF
}

guard_preamble(
    zone     => '8m',
    redis    => sub {
        defined $_[0]->no_redis ? undef : 'timeout=' . startup_redis_timeout()
    },
    upstream => 1,
    config   => purge_server(),
    init     => 'origin_reset(); redis_flush();',
);

sub purge {
    my ($args, %opt) = @_;
    return http_request('DELETE', "/admin/cache?$args", %opt);
}

# How many nodes listen on cg:purge.
sub subscribers { return redis('PUBSUB', 'NUMSUB', 'cg:purge')->[1] }

# Redis counts a subscription before the node has read its confirmation:
# $n subscribers for longer than the Redis time-out, so that none of them
# can still time out.
sub subscribed {
    my ($n) = @_;
    my $hold = $ENV{TEST_NGINX_USE_VALGRIND} ? 6 : 1.5;
    my $since;
    return wait_for(sub {
        if (subscribers() != $n) {
            undef $since;
            return 0;
        }
        $since //= time;
        return time - $since >= $hold;
    }, 15 + 2 * $hold, "$n subscribers on cg:purge");
}

sub port2 { return $ENV{TEST_NGINX_SERVER_PORT2} }

run_tests();

__DATA__

=== TEST 1: two nodes: a key purged on A leaves B's L1 through pub/sub, and B's next request reaches the origin
--- user_files
>>> p.lua
return { key = "$uri", ttl = 60, jitter = 0, l1 = { ttl = 60 } }
--- check
start_second_nginx(purge_server());
ok(main::subscribed(2), 'both nodes listen on cg:purge');

my $r = http_get('/k');
is(guard($r), 'MISS', 'A fills /k');
ok(stored('cg:/k'), 'into Redis at cg:/k');
is(guard(http_get('/k')), 'HIT l1', 'A holds it in L1');
is(guard(http_get('/k', port => port2())), 'HIT l2', 'B reads it from Redis');
$r = http_get('/k', port => port2());
is(guard($r), 'HIT l1', 'then B holds it in L1');
is(body_n($r), 1, 'the first fill');
is(origin_count('/k'), 1, 'one origin request so far');

$r = purge('key=/k');
is($r->{status}, 200, 'the purge answers 200');
is($r->{headers}{'content-type'}, 'application/json', 'in JSON');
my $j = json_of($r);
is($j->{key}, '/k', 'key');
ok(defined $j->{soft} && !$j->{soft}, 'soft: false');
is($j->{l1}, 1, 'one L1 entry purged on A');
is($j->{redis}, 1, 'one Redis key deleted');
ok(($j->{nodes} // 0) >= 2, "both nodes got the message (nodes $j->{nodes})");
is(redis('EXISTS', 'cg:/k'), 0, 'cg:/k is gone from Redis');

my $b;
ok(wait_for(sub { $b = http_get('/k', port => port2()); guard($b) ne 'HIT l1' },
            5 * slow(), 'B to drop /k'), 'B no longer serves /k from L1');
is(guard($b), 'MISS', 'B misses');
is(origin_count('/k'), 2, 'and asks the origin');
is(body_n($b), 2, 'for a new body');
ok(stored('cg:/k'), 'which B stores');
$r = http_get('/k');
is(guard($r), 'HIT l2', "A's L1 was purged: A reads B's fill from Redis");
is(body_n($r), 2, 'the new body');
is(origin_count('/k'), 2, 'no further origin request');
--- no_error_log
[error]
[alert]
[crit]



=== TEST 2: two nodes: an encoded key (%2Fk) purged on B, with its gzip variant, leaves A's L1
--- user_files
>>> p.lua
return { key = "$uri", ttl = 60, jitter = 0, l1 = { ttl = 60 } }
--- check
start_second_nginx(purge_server());
ok(main::subscribed(2), 'both nodes listen on cg:purge');
my %gz = (headers => { 'Accept-Encoding' => 'gzip' });
is(guard(http_get('/a/b')), 'MISS', 'A fills /a/b');
is(guard(http_get('/a/b', %gz)), 'MISS', 'and its gzip variant');
ok(stored('cg:/a/b') && stored("cg:/a/b\0gzip"), 'both in Redis');
is(guard(http_get('/a/b')), 'HIT l1', 'A holds /a/b in L1');
is(guard(http_get('/a/b', %gz)), 'HIT l1', 'and the variant');
is(origin_count('/a/b'), 2, 'two origin requests');

my $r = purge('key=%2Fa%2Fb', port => port2());
is($r->{status}, 200, 'B answers 200');
my $j = json_of($r);
is($j->{key}, '/a/b', 'the key is URI-decoded');
is($j->{l1}, 0, 'B held nothing in L1');
is($j->{redis}, 2, 'both variants deleted from Redis');
ok(($j->{nodes} // 0) >= 2, "both nodes got the message (nodes $j->{nodes})");
is(redis('EXISTS', 'cg:/a/b', "cg:/a/b\0gzip"), 0, 'both keys are gone');
my $a;
ok(wait_for(sub { $a = http_get('/a/b', %gz); guard($a) ne 'HIT l1' },
            5 * slow(), 'A to drop the gzip variant'),
   'A no longer serves the gzip variant from L1');
is(guard($a), 'MISS', 'A misses it');
is(guard(http_get('/a/b')), 'MISS', 'and the plain one');
is(origin_count('/a/b'), 4, 'both reach the origin again');
--- no_error_log
[error]
[alert]
[crit]



=== TEST 3: a pattern purge of 10,000 keys: all of them UNLINKed in batches, unrelated keys and fill locks kept, nginx responsive meanwhile
--- user_files
>>> p.lua
return { key = "$uri", ttl = 60, jitter = 0, l1 = { ttl = 60 } }
--- timeout: 60
--- check
ok(main::subscribed(1), 'the node listens on cg:purge');
redis('EVAL', "for i=1,10000 do redis.call('SET','cg:/bulk/'..i,'x') end", 0);
redis('EVAL', "for i=1,100 do redis.call('SET','cg:/keep/'..i,'x') end", 0);
redis('SET', 'other:/bulk/1', 'x');
redis('SET', 'cg:lock:/bulk/1', 'token');
is(redis('DBSIZE'), 10102, '10,102 keys in Redis');
is(guard(http_get('/bulk/l1')), 'MISS', 'one /bulk/ entry filled');
is(guard(http_get('/bulk/l1')), 'HIT l1', 'held in L1');
is(guard(http_get('/keep/l1')), 'MISS', 'one /keep/ entry filled');
ok(wait_for(sub { redis('DBSIZE') == 10104 }, 5 * slow(), 'the fills'),
   'their fills are in Redis too');

# the purge on a socket of its own, a plain request meanwhile
my $t0 = time;
my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                 PeerPort => $ENV{TEST_NGINX_SERVER_PORT})
    or die "connect: $!";
print {$sock} "DELETE /admin/cache?pattern=/bulk/* HTTP/1.1\r\n"
              . "Host: localhost\r\nConnection: close\r\n\r\n";
my $plain = http_get('/plain');
is($plain->{status}, 200, 'a request to another location is answered');
ok($plain->{elapsed} < 2 * slow(),
   sprintf('at once (%.3f s)', $plain->{elapsed}));
note(IO::Select->new($sock)->can_read(0)
     ? 'the purge had answered before the plain request'
     : 'the plain request was answered while the purge ran');
my $raw = '';
my $select = IO::Select->new($sock);
while ($select->can_read(30)) {
    last unless sysread $sock, my $chunk, 65536;
    $raw .= $chunk;
}
my $elapsed = time - $t0;
ok($elapsed < 20, sprintf('the purge completed in %.2f s', $elapsed));
my ($status) = $raw =~ m{^HTTP/1\.1 (\d+)};
is($status, 200, 'it answers 200');
my ($body) = $raw =~ /\r\n\r\n(.*)\z/s;
my $j = eval { decode_json($body) } // {};
is($j->{pattern}, '/bulk/*', 'pattern');
ok(defined $j->{soft} && !$j->{soft}, 'soft: false');
is($j->{redis}, 10001, '10,001 keys deleted (10,000 written, one filled)')
    or diag($body);
is($j->{l1}, 1, 'the one L1 entry purged');
is($j->{nodes}, 1, 'one node got the message');

my $left = 0;
my $cursor = 0;
do {
    my $reply = redis('SCAN', $cursor, 'MATCH', 'cg:/bulk/*', 'COUNT', 1000);
    $cursor = $reply->[0];
    $left += @{$reply->[1]};
} while ($cursor != 0);
is($left, 0, 'no cg:/bulk/* key left');
is(redis('DBSIZE'), 103, 'the other 103 keys are left');
is(redis('EXISTS', map { "cg:/keep/$_" } 1 .. 100), 100, 'cg:/keep/1..100');
is(redis('GET', 'other:/bulk/1'), 'x', 'a key of another prefix');
is(redis('GET', 'cg:lock:/bulk/1'), 'token', 'the lock');
my $r = http_get('/bulk/l1');
is(guard($r), 'MISS', "the node's L1 entry is gone");
is(guard(http_get('/keep/l1')), 'HIT l1', 'an entry of another path is not');
is(origin_count('/bulk/l1'), 2, 'the purged entry is filled again');
ok(wait_for(sub { redis('DBSIZE') == 104 }, 5 * slow(), 'the fill'),
   'and stored');

# a pattern that matches the locks: they are skipped
redis('SET', 'cg:lock:/keep/1', 'token');
$r = purge('pattern=*');
$j = json_of($r);
is($r->{status}, 200, 'pattern=* answers 200');
is($j->{redis}, 102, 'every entry under cg: deleted (100 + two fills)')
    or diag($r->{body});
is(redis('DBSIZE'), 3, 'three keys left');
is(redis('EXISTS', 'cg:lock:/bulk/1', 'cg:lock:/keep/1', 'other:/bulk/1'), 3,
   'the two locks and the other prefix');
--- no_error_log
[error]
[alert]
[crit]



=== TEST 4: L1 only (no Redis): a pattern purge by glob, and a soft purge that serves stale while one refresh runs
--- no_redis
--- user_files
>>> p.lua
return { key = "$uri", ttl = 60, jitter = 0, l1 = { ttl = 60 },
         stale = { while_revalidate = 30 } }
--- check
http_get($_) for qw(/l/1 /l/2 /l/3 /l/x/4 /m/1 /s);
is(origin_total(), 6, 'six entries filled');
is(scalar(grep { guard(http_get($_)) eq 'HIT l1' } qw(/l/1 /l/2 /l/3 /l/x/4 /m/1 /s)),
   6, 'all six held in L1');

my $r = purge('pattern=/l/*');
is($r->{status}, 200, 'the purge answers 200');
my $j = json_of($r);
is_deeply($j, { pattern => '/l/*', soft => JSON::PP::false, l1 => 4,
                found => JSON::PP::true },
          'four L1 entries purged (the glob crosses "/"), no Redis fields');
is(scalar(grep { guard(http_get($_)) eq 'MISS' } qw(/l/1 /l/2 /l/3 /l/x/4)),
   4, 'the purged ones miss');
is(guard(http_get('/m/1')), 'HIT l1', 'the other is kept');
is(origin_total(), 10, 'four new origin requests');

$r = purge('key=/s&soft=1');
is($r->{status}, 200, 'a soft purge answers 200');
is_deeply(json_of($r), { key => '/s', soft => JSON::PP::true, l1 => 1,
                         found => JSON::PP::true },
          'one L1 entry made stale');
$r = http_get('/s');
is(guard($r), 'STALE', 'the next request gets the stale copy');
is(body_n($r), 1, 'with the old body');
ok(wait_for(sub { origin_count('/s') == 2 }, 5 * slow(), 'the refresh'),
   'one background refresh reached the origin');
ok(wait_for(sub { $r = http_get('/s'); guard($r) eq 'HIT l1' }, 5 * slow(),
            'a hit'), 'then a hit');
is(body_n($r), 2, 'with the new body');
is(origin_count('/s'), 2, 'one refresh only');
$r = purge('key=/nothing&soft=1');
is(json_of($r)->{l1}, 0, 'a soft purge of an absent key counts 0');
is(json_of($r)->{found}, JSON::PP::false, 'and says it found nothing');
--- no_error_log
[error]
[alert]
[crit]



=== TEST 5: soft purge: the stale copy keeps its window, the next request is STALE and starts one refresh; 20 concurrent clients after a soft purge make one refresh
--- user_files
>>> p.lua
return { key = "$uri", ttl = 60, jitter = 0,
         stale = { while_revalidate = 30 }, early_refresh = false }
--- check
ok(main::subscribed(1), 'the node listens on cg:purge');
is(guard(http_get('/s')), 'MISS', '/s filled');
ok(stored('cg:/s'), 'into Redis');
is(guard(http_get('/s')), 'HIT l1', 'then held in L1');
my $pttl = redis('PTTL', 'cg:/s');

my $r = purge('key=/s&soft=1');
is($r->{status}, 200, 'the soft purge answers 200');
my $j = json_of($r);
ok($j->{soft}, 'soft: true');
is($j->{key}, '/s', 'key');
is($j->{l1}, 1, 'the L1 entry made stale');
is($j->{redis}, 1, 'the Redis entry made stale');
is($j->{nodes}, 1, 'one node got the message');
is(redis('EXISTS', 'cg:/s'), 1, 'the entry stays in Redis');
my $after = redis('PTTL', 'cg:/s');
ok(abs($pttl - $after) < 5000,
   "with its expiry kept (PTTL $pttl before, $after after)");

$r = http_get('/s');
is(guard($r), 'STALE', 'the next request gets the stale copy');
is(body_n($r), 1, 'with the old body');
ok(wait_for(sub { origin_count('/s') == 2 }, 5 * slow(), 'the refresh'),
   'one background refresh reached the origin');
ok(wait_for(sub { $r = http_get('/s'); guard($r) =~ /^HIT/ }, 5 * slow(),
            'a hit'), 'then hits');
is(body_n($r), 2, 'with the new body');
is(origin_count('/s'), 2, 'no other origin request');

# a slow refresh: 20 clients arrive while it runs
origin_set('/s', delay => 0.5);
is(purge('key=/s&soft=1')->{status}, 200, 'soft purged again');
my $res = http_concurrent(20, '/s');
is(scalar(grep { $_->{status} == 200 && body_n($_) == 2 } @$res), 20,
   'all 20 got the stale copy') or diag(tally($res));
is(scalar(grep { guard($_) =~ /^(?:STALE|UPDATING)/ } @$res), 20,
   'as STALE or UPDATING') or diag(tally($res));
ok(wait_for(sub { $r = http_get('/s'); guard($r) =~ /^HIT/ }, 5 * slow(),
            'a hit'), 'then hits');
is(body_n($r), 3, 'of the refresh');
is(origin_count('/s'), 3, 'the origin saw exactly one refresh for the 20');

# a soft purge of an expired or absent key makes nothing stale
$r = purge('key=/none&soft=1');
is($r->{status}, 200, 'a soft purge of an absent key answers 200');
is(json_of($r)->{redis}, 0, 'redis: 0');
is(redis('EXISTS', 'cg:/none'), 0, 'and creates nothing');
--- no_error_log
[error]
[alert]
[crit]



=== TEST 6: bad input: no key, an empty key, soft with a pattern, another method, an unknown call; nothing is purged
--- user_files
>>> p.lua
return { key = "$uri", ttl = 60, jitter = 0, l1 = { ttl = 60 } }
--- init
http_get('/k');
ok(stored('cg:/k'), '/k filled');
--- request eval
["DELETE /admin/cache",                       # no key or pattern
 "DELETE /admin/cache?key=",                  # an empty key
 "DELETE /admin/cache?other=/k",              # an unknown argument only
 "DELETE /admin/cache?pattern=/k*&soft=1",    # soft with a pattern
 "GET /admin/cache?key=/k",
 "POST /admin/cache?key=/k",
 "DELETE /admin/nope?key=/k",                 # an unknown admin call
 "DELETE /admin/cache/x?key=/k",              # a path under /cache
 "GET /k"]                                    # the L1 entry is still there
--- more_headers eval
[(undef) x 5, "Content-Length: 0", (undef) x 3]
--- error_code eval
[400, 400, 400, 400, 405, 405, 404, 404, 200]
--- response_body_like eval
[(qr/^\{"error": "[^"]+"\}\s*$/) x 8, undef]    # a JSON error
--- response_headers eval
[(undef) x 4, "Allow: DELETE", "Allow: DELETE", undef, undef, "X-Guard: HIT l1"]
--- check
is(redis('EXISTS', 'cg:/k'), 1, 'the Redis entry is still there');
is(origin_count('/k'), 1, 'no origin request but the fill');
--- no_error_log
[error]
[alert]
[crit]



=== TEST 7: Redis down: 503 with an error, and this node's L1 purged all the same
--- user_files
>>> p.lua
return { key = "$uri", ttl = 60, jitter = 0, l1 = { ttl = 60 } }
--- check
http_get('/k');
http_get('/p/1');
is(guard(http_get('/k')), 'HIT l1', '/k held in L1');
is(guard(http_get('/p/1')), 'HIT l1', '/p/1 held in L1');
redis_stop();
my $r = purge('key=/k');
is($r->{status}, 503, 'a key purge answers 503');
my $j = json_of($r);
ok($j->{error}, "with an error ($j->{error})") or diag($r->{body});
is($j->{l1}, 1, "this node's L1 entry was purged");
$r = purge('pattern=/p/*');
is($r->{status}, 503, 'a pattern purge answers 503') or diag($r->{body});
$j = json_of($r);
ok($j->{error}, 'with an error') or diag($r->{body});
is($j->{l1}, 1, "this node's L1 entry was purged");
$r = http_get('/k');
isnt(guard($r), 'HIT l1', '/k is no longer served from L1');
--- cleanup
redis_start();
--- no_error_log
[alert]
[crit]




=== TEST 8: a purge of a key that does not exist says "found": false (still 200, with the counts), one that exists "found": true
--- user_files
>>> p.lua
return { key = "$host$request_uri", ttl = 60, jitter = 0, l1 = { ttl = 60 } }
--- check
http_get('/u/7');
ok(wait_for(sub { defined redis('GET', 'cg:localhost/u/7') }, 5, 'stored'),
   'the entry is in Redis under $host$request_uri');
my $r = purge('key=/u/7');
is($r->{status}, 200, 'a purge of a mistyped key (no host) answers 200');
my $j = json_of($r);
delete $j->{nodes};    # the listeners subscribed by now: 0 or 1
is_deeply($j, { key => '/u/7', soft => JSON::PP::false, l1 => 0, redis => 0,
                found => JSON::PP::false },
          '"found": false, and the counts are zeros') or diag($r->{body});
is(guard(http_get('/u/7')), 'HIT l1', 'the entry is still there');
$r = purge('pattern=nothing*');
is(json_of($r)->{found}, JSON::PP::false, 'a pattern that matches nothing: "found": false');
$r = purge('key=localhost/u/7');
is($r->{status}, 200, 'the right key: 200');
$j = json_of($r);
is($j->{found}, JSON::PP::true, '"found": true') or diag($r->{body});
is($j->{l1}, 1, 'one L1 entry');
is($j->{redis}, 1, 'one Redis key');
is(redis('GET', 'cg:localhost/u/7'), undef, 'gone from Redis');
is(guard(http_get('/u/7')), 'MISS', 'and the next request misses');
--- no_error_log
[error]
[alert]



=== TEST 9: a pattern purge reaches the gzip variants in Redis too (a glob that does not end in "*" does not match KEY\0gzip)
--- user_files
>>> p.lua
return { key = "$uri", ttl = 60, jitter = 0, l1 = { ttl = 60 } }
--- check
my %gz = (headers => { 'Accept-Encoding' => 'gzip' });
for my $k ('/p1', '/p2', '/q1') {
    http_get($k);
    http_get($k, %gz);
}
ok(stored('cg:/p1') && stored("cg:/p1\0gzip") && stored("cg:/q1\0gzip"),
   'plain and gzip entries stored');
my $j = json_of(purge('pattern=/p%3F'));
is($j->{redis}, 4, '/p1 and /p2 and their gzip variants deleted in Redis')
    or diag(Test::More::explain($j));
is($j->{l1}, 4, 'and from L1');
is(redis('EXISTS', 'cg:/p1', "cg:/p1\0gzip", 'cg:/p2', "cg:/p2\0gzip"), 0,
   'none of them is left');
is(redis('EXISTS', 'cg:/q1', "cg:/q1\0gzip"), 2, '/q1 is kept, both variants');
my $r = http_get('/p1', %gz);
is(guard($r), 'MISS', 'a gzip client of /p1 now misses');
is(body_n($r), 3, 'and gets a new answer from the origin');
--- no_error_log
[error]
[alert]



=== TEST 10: the subscriber's connection is its own: when Redis drops it, it subscribes again, and the data path's Redis errors and breaker count nothing of it
--- config eval
main::purge_server() . "    location = /status {\n        cache_guard_status;\n    }\n"
--- user_files
>>> p.lua
return { key = "$uri", ttl = 60, jitter = 0 }
--- check
ok(main::subscribed(1), 'the node listens on cg:purge');
is(guard(http_get('/a')), 'MISS', 'the data path works');
my $errors = status_json()->{redis}{errors};
my $b = breaker('redis');
is(redis('CLIENT', 'KILL', 'TYPE', 'pubsub'), 1, 'Redis dropped the subscriber');
ok(wait_for(sub { main::subscribers() == 0 }, 5, 'the subscription gone'),
   'the subscription is gone');
ok(main::subscribed(1), 'the node subscribed again');
is_deeply(status_json()->{redis}{errors}, $errors,
          'no Redis error counted for the data path (the subscriber lost its connection)')
    or diag(Test::More::explain(status_json()->{redis}{errors}));
my $b2 = breaker('redis');
is("$b2->{state} $b2->{failures}", "closed $b->{failures}",
   'the Redis breaker saw no failure') or diag(Test::More::explain($b2));
my $r = http_get('/a');
like(guard($r), qr/^HIT l[12]$/,
     'the data path still serves (from L2 once L1 expired, under valgrind)');
is(json_of(purge('key=/a'))->{found}, JSON::PP::true, 'and a purge works');
--- no_error_log
[alert]
