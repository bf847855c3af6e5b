# Breakdown protection for many keys at once: origin.max_concurrent caps
# the origin fetches in flight per policy per node; beyond it on_overload
# answers with a stale copy or the fallback (status, Retry-After, JSON
# error body).  The test origin measures its own peak concurrency.
use lib 't/lib';
use Test::CacheGuard 'no_plan';
use Test::CacheGuard::Assert;
use Test::CacheGuard::Preset;

use IO::Socket::INET;
use List::Util qw(max);
use Time::HiRes qw(time sleep);

standard_preamble();






# The fallback answers among $res: all FALLBACK with $status, Retry-After
# $retry and a JSON error body, answered before the origin could have.
sub check_fallbacks {
    my ($res, $count, $status, $retry, $origin_delay) = @_;
    my @fb = grep { guard($_) =~ /^FALLBACK\b/ } @$res;
    is(scalar @fb, $count, "$count over the cap got the fallback (FALLBACK)")
        or diag(tally($res));
    is(scalar(grep { $_->{status} == $status } @fb), scalar @fb,
       "with status $status");
    is(scalar(grep { ($_->{headers}{'retry-after'} // '') eq $retry } @fb),
       scalar @fb, "and Retry-After: $retry");
    is(scalar(grep { is_fallback_body($_->{body}) } @fb), scalar @fb,
       'and a JSON {"error": ...} body') or diag($fb[0]{body} // '');
    my $max = max 0, map { $_->{elapsed} } @fb;
    ok($max < $origin_delay / 2, "at once, without waiting for a slot: slowest ${max}s");
    return \@fb;
}

run_tests();

__DATA__

=== TEST 1: max_concurrent = 2, on_overload = fallback: 20 cold keys at once, 2 reach the origin, 18 get 503
--- user_files
>>> p.lua
return {
  ttl = 60, jitter = 0,
  origin = { max_concurrent = 2, on_overload = "fallback" },
}
--- check
my $delay = 2 * slow();
my $res = http_concurrent(20, sub { "/k$_[0]?delay=$delay" });
ok(origin_peak() <= 2, 'at most 2 origin fetches in flight (peak ' . origin_peak() . ')');
is(origin_total(), 2, 'the origin saw 2 requests');
my @miss = grep { guard($_) eq 'MISS' } @$res;
is(scalar @miss, 2, '2 misses went to the origin') or diag(tally($res));
is(scalar(grep { $_->{status} == 200 } @miss), 2, 'and got 200');
my $fb = check_fallbacks($res, 18, 503, '5', $delay);
my ($i) = (grep({ guard($res->[$_]) =~ /^FALLBACK\b/ } 0 .. 19), 0);
my $r = http_get("/k$i?delay=$delay", timeout => $delay + 20);
is($r->{status}, 200, 'a key that got the fallback is fetched once slots are free');
is(guard($r), 'MISS', 'the fallback answer was not stored');
is(origin_total(), 3, 'one more origin request');
--- no_error_log
[alert]
[crit]



=== TEST 2: on_overload = stale with stale copies: 2 refills reach the origin, 18 get their stale copy at once
--- user_files
>>> p.lua
-- Copies kept for if_error only, so a request after fresh-until is a
-- refill that needs an origin slot (stale-while-revalidate would answer
-- every one of them STALE without asking for a slot).
return {
  ttl = 1, jitter = 0,
  stale = { while_revalidate = 0, if_error = 600 },
  early_refresh = false,
  origin = { max_concurrent = 2, on_overload = "stale" },
}
--- check
my %old;
for my $i (0 .. 19) {
    my $r = http_get("/s$i");
    $old{"/s$i"} = $r->{body};
}
my $filled = time;
is(origin_total(), 20, '20 keys filled one by one');
ok(!(grep { !stored("cg:http://localhost/s$_") } 0 .. 19), 'all 20 in Redis');
sleep(max(0, $filled + 1.2 - time));    # fresh-until (ttl = 1) has passed
my $delay = 2 * slow();
origin_set("/s$_", delay => $delay) for 0 .. 19;
my $res = http_concurrent(20, sub { "/s$_[0]" });
ok(origin_peak() <= 2, 'at most 2 origin fetches in flight (peak ' . origin_peak() . ')');
is(origin_total(), 22, 'the origin saw 2 refills');
my @miss = grep { guard($res->[$_]) eq 'MISS' } 0 .. 19;
is(scalar @miss, 2, '2 refills went to the origin') or diag(tally($res));
is(scalar(grep { $res->[$_]{body} =~ /"n":2,/ } @miss), 2, 'and got new bodies');
my @stale = grep { guard($res->[$_]) =~ /^STALE\b/ } 0 .. 19;
is(scalar @stale, 18, 'the 18 over the cap were served STALE') or diag(tally($res));
is(scalar(grep { $res->[$_]{status} == 200
                 && $res->[$_]{body} eq $old{"/s$_"} } @stale),
   18, 'each with its own old body');
my $max = max 0, map { $res->[$_]{elapsed} } @stale;
ok($max < $delay / 2, "at once, without waiting for a slot: slowest ${max}s");
--- no_error_log
[alert]
[crit]



=== TEST 3: on_overload = stale without stale copies falls back, with the policy's fallback status and Retry-After
--- user_files
>>> p.lua
return {
  ttl = 60, jitter = 0,
  origin = { max_concurrent = 2, on_overload = "stale" },
  fallback = { status = 429, retry_after = 7 },
}
--- check
my $delay = 2 * slow();
my $res = http_concurrent(20, sub { "/c$_[0]?delay=$delay" });
ok(origin_peak() <= 2, 'at most 2 origin fetches in flight (peak ' . origin_peak() . ')');
is(origin_total(), 2, 'the origin saw 2 requests');
is(scalar(grep { guard($_) eq 'MISS' && $_->{status} == 200 } @$res), 2,
   '2 misses went to the origin') or diag(tally($res));
check_fallbacks($res, 18, 429, '7', $delay);
--- no_error_log
[alert]
[crit]



=== TEST 4: the cap is per policy: two policies with max_concurrent = 2 each get 2 slots
--- config
    location /a/ {
        cache_guard main;
        cache_guard_policy $TEST_NGINX_HTML_DIR/a.lua;
        proxy_pass http://origin;
        add_header X-Guard "$cache_guard_status $cache_guard_level" always;
    }
    location /b/ {
        cache_guard main;
        cache_guard_policy $TEST_NGINX_HTML_DIR/b.lua;
        proxy_pass http://origin;
        add_header X-Guard "$cache_guard_status $cache_guard_level" always;
    }
--- user_files
>>> a.lua
return { ttl = 60, origin = { max_concurrent = 2, on_overload = "fallback" } }
>>> b.lua
return { ttl = 60, origin = { max_concurrent = 2, on_overload = "fallback" } }
--- check
my $delay = 2 * slow();
my $res = http_concurrent(20, sub {
    my $i = shift;
    return ($i % 2 ? '/b/' : '/a/') . "k$i?delay=$delay";
});
ok(origin_peak() <= 4, 'at most 2 + 2 origin fetches in flight (peak ' . origin_peak() . ')');
is(origin_total(), 4, 'the origin saw 4 requests');
my @a = @$res[grep { !($_ % 2) } 0 .. 19];
my @b = @$res[grep { $_ % 2 } 0 .. 19];
is(scalar(grep { guard($_) eq 'MISS' } @a), 2, 'policy a: 2 misses') or diag(tally(\@a));
is(scalar(grep { guard($_) eq 'MISS' } @b), 2, 'policy b: 2 misses') or diag(tally(\@b));
check_fallbacks($res, 16, 503, '5', $delay);
--- no_error_log
[alert]
[crit]



=== TEST 5: slots are given back when a fetch fails or its client goes away
--- user_files
>>> p.lua
return { ttl = 60, origin = { max_concurrent = 2, on_overload = "fallback" } }
--- check
is(http_get("/e$_?status=500")->{status}, 500, "failed fetch $_") for 1 .. 3;
my @gone = map { http_get("/gone$_?delay=30", timeout => 0.5) } 1 .. 2;
ok(!(grep { $_->{status} } @gone), 'two clients left during their fetches');
ok(wait_for(sub { origin_inflight() == 0 }, 10, 'nginx to drop the abandoned fetches'),
   'the abandoned fetches were closed');
my $r = http_get('/after');
is($r->{status}, 200, 'a new key still gets an origin slot');
is(guard($r), 'MISS', 'as a MISS, not a FALLBACK');
is(origin_count('/after'), 1, 'it reached the origin');
--- no_error_log
[alert]
[crit]



=== TEST 6: requests that bypass the cache (Authorization, a nil key hook) are outside the cap: a fill holding the only slot does not turn them away
--- user_files
>>> p.lua
return {
  key = function(r)
    if r:arg("nocache") then return nil end
    return r.uri
  end,
  ttl = 60, jitter = 0,
  origin = { max_concurrent = 1, on_overload = "fallback" },
}
--- check
my $delay = 2 * slow();
my $fill = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                 PeerPort => $ENV{TEST_NGINX_SERVER_PORT})
    or die "connect: $!";
print {$fill} "GET /fill?delay=$delay HTTP/1.1\r\nHost: localhost\r\n"
              . "Connection: close\r\n\r\n";
ok(wait_for(sub { origin_inflight() == 1 }, 5, 'the fill at the origin'),
   'a fill holds the only slot');
my @req = (map({ { path => "/auth$_?delay=0.5",
                   headers => { Authorization => "Bearer u$_" } } } 1 .. 2),
           map({ "/nc$_?nocache=1&delay=0.5" } 1 .. 2));
my $res = http_concurrent(scalar @req, sub { $req[$_[0]] });
is(scalar(grep { $_->{status} == 200 && guard($_) eq 'BYPASS' } @$res), 4,
   'the four bypasses went to the origin beside it') or diag(tally($res));
is(origin_peak(), 5, 'five origin requests in flight at once');
my $raw = '';
local $/;
$raw = <$fill>;
like($raw, qr{^HTTP/1\.1 200 .*X-Guard: MISS}s, 'the fill was answered 200 MISS');
my $r = http_get('/after');
is(guard($r) . " $r->{status}", 'MISS 200',
   'afterwards a new key gets the slot: no bypass kept one');
--- no_error_log
[alert]
[crit]
