# Breakdown protection, single flight: one fill per key per node (all its
# workers) and, through a Redis lock at cg:lock:KEY, across nodes; waiters
# are served the filled entry; lock.wait and lock.on_timeout bound the wait;
# a failed fill is never stored and wakes its waiters at once.  Every test
# counts what reached the test origin and reads Redis.
use lib 't/lib';
use Test::CacheGuard 'no_plan';
use Test::CacheGuard::Assert;
use Test::CacheGuard::Preset;

use IO::Select;
use IO::Socket::INET;
use List::Util qw(max min);
use Time::HiRes qw(time sleep);

standard_preamble();

# How many responses have an X-Guard matching $re.
sub with_guard {
    my ($res, $re) = @_;
    return scalar grep { guard($_) =~ $re } @$res;
}

# Every response 200 with one and the same body: the body of the nth
# origin request for $path.
sub all_served_fill {
    my ($res, $path, $n, $what) = @_;
    my $total = @$res;
    is(scalar(grep { $_->{status} == 200 } @$res), $total,
       "$what: all $total answered 200") or diag(tally($res));
    my %bodies = map { ($_->{body} => 1) } @$res;
    my @some = (sort keys %bodies)[0 .. 2];
    is(scalar(keys %bodies), 1, "$what: all got the same body")
        or diag(scalar(keys %bodies) . " bodies, e.g.\n"
                . join "\n", grep { defined } @some);
    like((keys %bodies)[0], qr/^\{"path":"\Q$path\E","n":$n,/,
         "$what: the body of origin request $n");
}

# Everything until the server closes the connection (at most $timeout s).
sub read_all {
    my ($sock, $timeout) = @_;
    my ($data, $deadline) = ('', time + $timeout);
    my $select = IO::Select->new($sock);
    while (time < $deadline) {
        next unless $select->can_read($deadline - time);
        my $n = sysread $sock, my $chunk, 65536;
        last unless $n;
        $data .= $chunk;
    }
    return $data;
}

# The JSON error body of a fallback answer.

run_tests();

__DATA__

=== TEST 1: 200 concurrent requests for a cold key: single flight is on by default, the origin sees one
--- user_files
>>> p.lua
return { ttl = 60, jitter = 0 }
--- check
origin_set('/hot', delay => 1);
my $n = clients(200);
my $res = http_concurrent($n, '/hot', timeout => 60);
is(origin_count('/hot'), 1, 'the origin saw exactly one request');
all_served_fill($res, '/hot', 1, "$n clients");
is(with_guard($res, qr/^MISS$/), 1, 'one filler (MISS)') or diag(tally($res));
is(with_guard($res, qr/^HIT l[12]$/), $n - 1,
   'every waiter was served the filled entry as a HIT') or diag(tally($res));
my $max = max_elapsed($res);
ok($max < 1 + 3 * slow(),
   "waiters were woken by the fill, not by lock.wait (5 s): slowest ${max}s");
ok(stored('cg:http://localhost/hot'), 'the entry is in Redis');
ok(wait_for(sub { !redis('EXISTS', 'cg:lock:http://localhost/hot') }, 5),
   'the Redis lock was released');
--- no_error_log
[error]
[alert]
[crit]



=== TEST 2: the per-node lock spans workers: 200 concurrent requests on 2 workers, the origin sees one
--- skip_valgrind
--- main_config
    worker_processes 2;
--- config
    location / {
        cache_guard main;
        cache_guard_policy $TEST_NGINX_HTML_DIR/p.lua;
        proxy_pass http://origin;
        add_header X-Guard "$cache_guard_status $cache_guard_level" always;
        add_header X-Pid $pid always;
    }
--- user_files
>>> p.lua
return { ttl = 60, jitter = 0 }
--- check
is(scalar(() = worker_pids()), 2, 'two workers');
# The kernel decides which worker accepts a connection: try another cold
# key in the unlikely case that one worker took all 200.
my ($res, $path, %pids);
for my $try (1 .. 3) {
    $path = "/hot2-$try";
    origin_set($path, delay => 1);
    $res = http_concurrent(200, $path, timeout => 60);
    %pids = map { ($_->{headers}{'x-pid'} // '?' => 1) } @$res;
    last if keys %pids == 2;
}
is(scalar(keys %pids), 2, 'both workers served some of the clients')
    or diag(join ' ', keys %pids);
is(origin_count($path), 1, 'the origin saw exactly one request');
all_served_fill($res, $path, 1, '200 clients on 2 workers');
is(with_guard($res, qr/^MISS$/), 1, 'one filler (MISS)') or diag(tally($res));
is(with_guard($res, qr/^HIT l[12]$/), 199, 'every waiter got a HIT')
    or diag(tally($res));
my $max = max_elapsed($res);
ok($max < 1 + 3, "the other worker's waiters were woken too: slowest ${max}s");
--- no_error_log
[error]
[alert]
[crit]



=== TEST 3: lock.on_timeout = origin: waiters go to the origin after lock.wait, only the filler's response is stored
--- user_files
>>> p.lua
return { ttl = 60, jitter = 0, lock = { wait = 1, on_timeout = "origin" } }
--- check
origin_set('/slow', delay => 3);
my $res = http_concurrent(20, '/slow');
is(origin_count('/slow'), 20, 'the origin saw the filler and the 19 timed-out waiters');
is(scalar(grep { $_->{status} == 200 } @$res), 20, 'all answered 200')
    or diag(tally($res));
my ($filler) = grep { guard($_) eq 'MISS' } @$res;
is(with_guard($res, qr/^MISS$/), 1, 'one filler (MISS)') or diag(tally($res));
like($filler->{body} // '', qr/"n":1,/, 'the filler got the first origin response');
is(with_guard($res, qr/^LOCK_TIMEOUT$/), 19, '19 waiters timed out (LOCK_TIMEOUT)')
    or diag(tally($res));
my @times = sort { $a <=> $b } map { $_->{time} } origin_log();
my $first = shift @times;
ok(@times && min(@times) - $first >= 0.9,
   'the waiters reached the origin no sooner than lock.wait after the filler');
ok(@times && max(@times) - $first < 1 + 2 * slow(), 'and soon after lock.wait');
ok(stored('cg:http://localhost/slow'), 'the entry is in Redis');
ok((redis('GET', 'cg:http://localhost/slow') // '') =~ qr/"n":1,/,
     "Redis holds the filler's response, not a timed-out waiter's");
my $r = http_get('/slow');
is(guard($r), 'HIT l1', 'then a hit');
like($r->{body}, qr/"n":1,/, "of the filler's response");
is(origin_count('/slow'), 20, 'no more origin requests');
--- no_error_log
[alert]
[crit]



=== TEST 4: lock.on_timeout = stale without a stale copy: waiters go to the origin as LOCK_TIMEOUT
--- user_files
>>> p.lua
return { ttl = 60, jitter = 0, lock = { wait = 1, on_timeout = "stale" } }
--- check
origin_set('/slow', delay => 3);
my $res = http_concurrent(20, '/slow');
is(origin_count('/slow'), 20, 'the origin saw the filler and the 19 timed-out waiters');
is(scalar(grep { $_->{status} == 200 } @$res), 20, 'all answered 200')
    or diag(tally($res));
is(with_guard($res, qr/^MISS$/), 1, 'one filler (MISS)') or diag(tally($res));
is(with_guard($res, qr/^LOCK_TIMEOUT$/), 19, '19 waiters timed out (LOCK_TIMEOUT)')
    or diag(tally($res));
my @times = sort { $a <=> $b } map { $_->{time} } origin_log();
my $first = shift @times;
ok(@times && min(@times) - $first >= 0.9,
   'the waiters reached the origin no sooner than lock.wait after the filler');
ok(stored('cg:http://localhost/slow'), 'the entry is in Redis');
ok((redis('GET', 'cg:http://localhost/slow') // '') =~ qr/"n":1,/,
     "Redis holds the filler's response");
--- no_error_log
[alert]
[crit]



=== TEST 5: lock.on_timeout = stale with a stale copy: waiters get it after lock.wait, the origin sees only the filler
--- user_files
>>> p.lua
-- The copy is kept for if_error only: a request after fresh-until must
-- refill (no stale-while-revalidate), so the waiters wait on the lock.
return {
  ttl = 1, jitter = 0,
  stale = { while_revalidate = 0, if_error = 600 },
  early_refresh = false,
  lock = { wait = 1, on_timeout = "stale" },
}
--- check
my $fill = http_get('/st');
is(guard($fill), 'MISS', 'first fill');
my $filled = time;
ok(stored('cg:http://localhost/st'), 'the entry is in Redis');
my $pttl = redis('PTTL', 'cg:http://localhost/st');
ok($pttl > 500_000, "the entry is kept for stale.if_error (PTTL $pttl)");
sleep(max(0, $filled + 1.2 - time));    # fresh-until (ttl = 1) has passed
origin_set('/st', delay => 3);
my $res = http_concurrent(20, '/st');
is(origin_count('/st'), 2, 'the origin saw the first fill and one refill');
is(scalar(grep { $_->{status} == 200 } @$res), 20, 'all answered 200')
    or diag(tally($res));
my @filler = grep { guard($_) eq 'MISS' } @$res;
is(scalar @filler, 1, 'one filler (MISS)') or diag(tally($res));
like($filler[0]{body} // '', qr/"n":2,/, 'the filler got the new response');
my @stale = grep { guard($_) =~ /^STALE\b/ } @$res;
is(scalar @stale, 19, '19 waiters were served the stale copy') or diag(tally($res));
is(scalar(grep { $_->{body} eq $fill->{body} } @stale), 19, 'with the old body');
my $late = min(map { $_->{elapsed} } @stale) // 0;
my $early = max(map { $_->{elapsed} } @stale) // 0;
ok($late >= 0.9, "after lock.wait (fastest stale answer ${late}s)");
ok($early < 3, "before the filler's origin response (slowest ${early}s)");
ok(wait_for(sub { (redis('GET', 'cg:http://localhost/st') // '') =~ /"n":2,/ }, 5),
   "Redis then holds the filler's response");
--- no_error_log
[alert]
[crit]



=== TEST 6: lock.on_timeout = error: waiters get the fallback (503, Retry-After: 5) after lock.wait
--- user_files
>>> p.lua
return { ttl = 60, jitter = 0, lock = { wait = 1, on_timeout = "error" } }
--- check
origin_set('/slow', delay => 3);
my $res = http_concurrent(20, '/slow');
is(origin_count('/slow'), 1, 'the origin saw only the filler');
my @filler = grep { guard($_) eq 'MISS' } @$res;
is(scalar @filler, 1, 'one filler (MISS)') or diag(tally($res));
is($filler[0]{status} // 0, 200, 'the filler got 200');
my @fb = grep { guard($_) =~ /^FALLBACK\b/ } @$res;
is(scalar @fb, 19, '19 waiters got the fallback (FALLBACK)') or diag(tally($res));
is(scalar(grep { $_->{status} == 503 } @fb), 19, 'with status 503');
is(scalar(grep { ($_->{headers}{'retry-after'} // '') eq '5' } @fb), 19,
   'and Retry-After: 5');
is(scalar(grep { is_fallback_body($_->{body}) } @fb), 19,
   'and a JSON {"error": ...} body') or diag($fb[0]{body} // '');
my $late = min(map { $_->{elapsed} } @fb) // 0;
my $early = max(map { $_->{elapsed} } @fb) // 0;
ok($late >= 0.9, "after lock.wait (fastest fallback ${late}s)");
ok($early < 3, "before the filler's origin response (slowest ${early}s)");
ok(stored('cg:http://localhost/slow'), "the filler's response is stored");
my $r = http_get('/slow');
is(guard($r), 'HIT l1', 'then a hit');
like($r->{body}, qr/"n":1,/, "of the filler's response");
--- no_error_log
[alert]
[crit]



=== TEST 7: two nodes, 100 concurrent requests each for one cold key: the Redis lock makes the origin see one
--- user_files
>>> p.lua
return { ttl = 60, jitter = 0 }
--- check
start_second_nginx(guard_location());
my ($port1, $port2) = @ENV{qw(TEST_NGINX_SERVER_PORT TEST_NGINX_SERVER_PORT2)};
origin_set('/both', delay => 1);
my $n = clients(200);
my $res = http_concurrent($n, sub {
    return { path => '/both', port => $_[0] % 2 ? $port2 : $port1 };
}, timeout => 60);
is(origin_count('/both'), 1, 'the origin saw exactly one request for both nodes');
all_served_fill($res, '/both', 1, "$n clients on two nodes");
is(with_guard($res, qr/^MISS$/), 1, 'one filler (MISS) on one node')
    or diag(tally($res));
is(with_guard($res, qr/^HIT l[12]$/), $n - 1, 'everyone else got a HIT')
    or diag(tally($res));
my @nodes = ([grep { !($_ % 2) } 0 .. $n - 1], [grep { $_ % 2 } 0 .. $n - 1]);
my ($other) = grep { my $node = $_; !grep { guard($res->[$_]) eq 'MISS' } @$node } @nodes;
ok($other && !(grep { guard($res->[$_]) !~ /^HIT l[12]$/ } @$other),
   'the node without the filler answered all its clients with HITs');
my $max = max_elapsed($res);
ok($max < 1 + 3 * slow(),
   "the other node's waiters saw the value in Redis: slowest ${max}s");
--- no_error_log
[error]
[alert]
[crit]



=== TEST 8: a Redis lock held by someone who never fills: waiters take over when it expires, the origin sees one
--- user_files
>>> p.lua
return { ttl = 60, jitter = 0, lock = { wait = 10 } }
--- check
my $lock = 'cg:lock:http://localhost/planted';
my $planted = time;
redis('SET', $lock, 'someone-else', 'PX', 1500);
my $res = http_concurrent(20, '/planted');
is(origin_count('/planted'), 1, 'the origin saw exactly one request');
all_served_fill($res, '/planted', 1, '20 clients');
is(with_guard($res, qr/^MISS$/), 1, 'one waiter took over as the filler')
    or diag(tally($res));
is(with_guard($res, qr/^HIT l[12]$/), 19, 'the others got its fill as a HIT')
    or diag(tally($res));
my ($at) = map { $_->{time} } origin_log();
ok(defined $at && $at - $planted >= 1.4,
   'the origin was asked only once the planted lock had expired ('
   . (defined $at ? sprintf('%.2fs', $at - $planted) : 'never') . ')');
my $max = max_elapsed($res);
ok($max < 1.5 + 3 * slow(), "nobody waited for lock.wait (10 s): slowest ${max}s");
ok(stored('cg:http://localhost/planted'), 'the entry is in Redis');
ok(wait_for(sub { !redis('EXISTS', $lock) }, 5), 'the new lock was released');
--- no_error_log
[alert]
[crit]



=== TEST 9: a failed fill (500 after 1 s) is not stored, releases the locks and wakes the waiters at once
--- user_files
>>> p.lua
return { ttl = 60, jitter = 0, lock = { wait = 10 } }
--- check
origin_set('/fail', status => 500, delay => 1);
my $res = http_concurrent(20, '/fail');
my $count = origin_count('/fail');
ok($count >= 1 && $count <= 21, "the origin saw a bounded number of requests ($count)");
my $max = max_elapsed($res);
ok($max < 1 + 4 * slow(), "no waiter waited for lock.wait (10 s): slowest ${max}s");
is(scalar(grep { $_->{status} == 500 || $_->{status} == 503 } @$res), 20,
   "every client got the origin's 500 or the fallback 503") or diag(tally($res));
ok(scalar(grep { $_->{status} == 500 } @$res) >= 1,
   "the origin's error was passed through to the filler");
my @fb = grep { $_->{status} == 503 } @$res;
is(scalar(grep { guard($_) =~ /^FALLBACK\b/
                 && ($_->{headers}{'retry-after'} // '') eq '5' } @fb),
   scalar @fb, 'every 503 is a FALLBACK with Retry-After: 5');
ok(wait_for(sub { !redis('EXISTS', 'cg:lock:http://localhost/fail') }, 2),
   'the Redis lock is gone');
# A SET of the fill would be sent with its last buffer, before the client
# had the response; the one worker's Redis commands go in order on its one
# connection: once a later fill's SET is in Redis, so would that one be.
my $marker = http_get('/marker9');
is(guard($marker), 'MISS', 'a later fill of another key');
ok(stored('cg:http://localhost/marker9'), 'is stored in Redis');
is(redis('EXISTS', 'cg:http://localhost/fail'), 0, 'nothing was stored in Redis');
origin_clear('/fail');
my $r = http_get('/fail');
is($r->{status}, 200, 'the recovered origin answers the next request');
is(guard($r), 'MISS', 'as a MISS: no error was kept in L1 either');
--- no_error_log
[alert]
[crit]



=== TEST 10: lock = false disables single flight: every concurrent miss reaches the origin
--- user_files
>>> p.lua
return { ttl = 60, jitter = 0, lock = false }
--- check
origin_set('/nolock', delay => 3);
# the 20 requests sent, their responses read later
my @socks = map {
    my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
        PeerPort => $ENV{TEST_NGINX_SERVER_PORT}, Proto => 'tcp')
        or die "connect: $!\n";
    print {$sock} "GET /nolock HTTP/1.1\r\nHost: localhost\r\n"
                . "Connection: close\r\n\r\n";
    $sock;
} 1 .. 20;
# a lock is taken before the fetch: with all 20 fetches at the origin, any
# would be in Redis now, and none is released before the origin answers
ok(wait_for(sub { origin_inflight() == 20 }, 10, '20 requests at the origin'),
   'all 20 are at the origin at once');
is(redis('EXISTS', 'cg:lock:http://localhost/nolock'), 0,
   'no Redis lock while they are');
my @answers = map { read_all($_, 10) } @socks;
is(origin_count('/nolock'), 20, 'all 20 reached the origin');
is(scalar(grep { m{^HTTP/1\.1 200 .*\r\nX-Guard: MISS ?\r\n}s } @answers), 20,
   'all 20 were misses') or diag(join "\n", map { (split /\r\n\r\n/)[0] } @answers[0, 1]);
--- no_error_log
[alert]
[crit]



=== TEST 11: the filler holds a Redis lock with a token and lock.ttl, and releases it after the fill
--- user_files
>>> p.lua
return { ttl = 60, jitter = 0, lock = { ttl = 3 } }
--- check
my $lock = 'cg:lock:http://localhost/lk';
origin_set('/lk', delay => 1.5);
my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
    PeerPort => $ENV{TEST_NGINX_SERVER_PORT}, Proto => 'tcp')
    or die "connect: $!\n";
print {$sock} "GET /lk HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
ok(wait_for(sub { redis('EXISTS', $lock) }, 1.5 * slow(), 'the lock'),
   'the filler took the Redis lock during the fill');
my $pttl = redis('PTTL', $lock);
ok($pttl > 0 && $pttl <= 3000, "with PX lock.ttl (PTTL $pttl)");
my $token = redis('GET', $lock) // '';
ok(length $token >= 8, "holding a random token ($token)");
my $response = read_all($sock, 10);
like($response, qr{^HTTP/1\.1 200 }, 'the filler got 200');
like($response, qr{\r\nX-Guard: MISS ?\r\n}, 'as a MISS');
ok(wait_for(sub { !redis('EXISTS', $lock) }, 1, 'the lock release'),
   'the lock is released after the fill');
ok(stored('cg:http://localhost/lk'), 'the entry is in Redis');
--- no_error_log
[error]
[alert]
[crit]
