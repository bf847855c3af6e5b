# When the origin fails: the origin's circuit breaker and stale-if-error.
# The test origin is told to answer 500 (status=500 in the query string,
# which the policies' key "$uri" ignores) or to answer late; it counts what
# reaches it.  Nobody waits on a dead origin: a stale copy within
# stale.if_error, else the fallback status with Retry-After, at once.
use lib 't/lib';
use Test::CacheGuard 'no_plan';
use Test::CacheGuard::Assert;
use Test::CacheGuard::Preset;
use Test::CacheGuard::Status;

use JSON::PP;
use Time::HiRes qw(time sleep);

guard_preamble(
    zone     => '8m',
    redis    => 'timeout=1s',
    upstream => 1,
    config   => admin_location()
              . guard_location(path => '/e/', policy => 'e.lua',
                               extra => 'proxy_read_timeout 1s;')
              . guard_location(extra => 'proxy_read_timeout 1s;'),
    init     => 'origin_reset(); redis_flush();',
);

run_tests();

__DATA__

=== TEST 1: origin answers 500 for everything: stale within if_error, the breaker opens, then stale or the fallback at once, and a probe closes it when the origin recovers
--- user_files
>>> p.lua
return {
  name = "api", key = "$uri", ttl = 1, jitter = 0,
  stale = { while_revalidate = 0, if_error = 300 },
  early_refresh = false,
  breaker = { origin = { window = 10, min_requests = 6, failure_rate = 0.5,
                         open_for = 3, half_open_requests = 1 } },
  fallback = { status = 503, retry_after = 7 },
}
>>> e.lua
return {
  name = "api", key = "$uri", ttl = 1, jitter = 0,
  stale = { while_revalidate = 0, if_error = 0 },
  early_refresh = false,
  breaker = { origin = { window = 10, min_requests = 6, failure_rate = 0.5,
                         open_for = 3, half_open_requests = 1 } },
  fallback = { status = 503, retry_after = 7 },
}
--- check
http_get("/s/$_") for 1 .. 3;
http_get('/e/1');
is(origin_total(), 4, 'four keys filled');
sleep 1.5;    # past the 1 s ttl: every entry is stale

# the filler's own 500 is replaced by the stale copy
my @stale = map { http_get("/s/$_?status=500") } 1 .. 3;
is(scalar(grep { $_->{status} == 200 && guard($_) eq 'STALE' } @stale), 3,
   'the origin answered 500: each filler got its stale copy (200 STALE)')
    or diag(tally(\@stale));
is(scalar(grep { body_n($_) == 1 } @stale), 3, 'with the old body');
is(origin_total(), 7, 'each of them did ask the origin');

my $fail = http_get('/cold1?status=500');
is($fail->{status}, 500, 'without a stale copy the origin\'s 500 is passed on');
my $b = breaker('origin:api');
is($b->{state}, 'open', 'the breaker opened') or diag(Test::More::explain($b));
is("$b->{failures} of $b->{requests}", '4 of 8',
   'at half of the results failed, with min_requests reached');

my $before = origin_total();
my $t0 = time;
my $s = http_get('/s/1?status=500');
is(guard($s) . " $s->{status}", 'STALE 200', 'open: a stale key is served stale');
my @fb = map { http_get($_) } '/cold2?status=500', '/e/1', '/s/99';
is(scalar(grep { $_->{status} == 503 && guard($_) =~ /^FALLBACK/ } @fb), 3,
   'open: no usable copy gives the fallback status') or diag(tally(\@fb));
is(scalar(grep { ($_->{headers}{'retry-after'} // '') eq '7' } @fb), 3,
   'with Retry-After');
is(scalar(grep { is_fallback_body($_->{body}) } @fb), 3, 'and a JSON error');
my $auth = http_get('/private', headers => { Authorization => 'Bearer x' });
is($auth->{status}, 503, 'a request that bypasses the cache gets it too');
is(origin_total(), $before, 'none of them reached the origin');
ok(time - $t0 < 2, sprintf('answered at once (%.2f s for 5 requests)', time - $t0));

# the origin recovers: after open_for one probe closes the breaker
ok(wait_for(sub { http_get('/s/2'); breaker('origin:api')->{state} eq 'closed' }, 20,
            'closed'), 'a successful probe closed the breaker');
my $log = error_log_since_block();
like($log, qr/breaker "origin:api" open, too many failures.*breaker "origin:api" half-open, probing.*breaker "origin:api" closed, the probes succeeded/s,
     'open, half-open, closed, in that order');
my $r = http_get('/s/3');
is($r->{status}, 200, 'requests reach the origin again');
ok(body_n($r) >= 2, 'and get its new answer');
--- no_error_log
[alert]
[crit]



=== TEST 2: 30 clients on a stale key while the origin answers 500 late: one request reaches the origin, all get the stale copy
--- user_files
>>> p.lua
return {
  key = "$uri", ttl = 1, jitter = 0,
  stale = { while_revalidate = 0, if_error = 300 },
  early_refresh = false,
}
>>> e.lua
return {}
--- check
http_get('/k');
sleep 1.5;
my $res = http_concurrent(30, sub { '/k?status=500&delay=0.5' });
is(origin_count('/k'), 2, 'one fill reached the origin');
is(scalar(grep { $_->{status} == 200 && guard($_) eq 'STALE' } @$res), 30,
   'all 30 got the stale copy') or diag(tally($res));
is(scalar(grep { body_n($_) == 1 } @$res), 30, 'with the stored body');
--- no_error_log
[alert]
[crit]



=== TEST 3: origin slower than proxy_read_timeout: stale served, no pile-up
--- user_files
>>> p.lua
return {
  key = "$uri", ttl = 1, jitter = 0,
  stale = { while_revalidate = 0, if_error = 300 },
  early_refresh = false,
}
>>> e.lua
return {}
--- check
http_get("/slow$_") for 1 .. 5;
sleep 1.5;
my $res = http_concurrent(50, sub { '/slow' . ($_[0] % 5 + 1) . '?delay=4' });
is(scalar(grep { $_->{status} == 200 && guard($_) eq 'STALE' } @$res), 50,
   'all 50 got a stale copy') or diag(tally($res));
ok(max_elapsed($res) < 3.5, sprintf('none waited for the 4 s origin (slowest %.2f s)',
                                    max_elapsed($res)));
ok(origin_peak() <= 5, 'at most one origin request per key at a time (peak '
                       . origin_peak() . ')');
is(origin_total(), 10, 'one timed-out fill per key');
like(error_log_since_block(), qr/upstream timed out/, 'nginx timed the origin out');
--- no_error_log
[alert]
[crit]



=== TEST 4: breaker.origin.statuses chooses what counts as a failure
--- user_files
>>> p.lua
return {
  key = "$uri", l1 = false,
  breaker = { origin = { min_requests = 5, failure_rate = 0.5, open_for = 60,
                         statuses = { 503 } } },
}
>>> e.lua
return {}
--- check
http_get("/a$_?status=500") for 1 .. 10;
my $b = breaker('origin:p');
is($b->{state}, 'closed', '500 does not count');
is($b->{requests}, 10, 'ten results counted');
is($b->{failures}, 0, 'none as a failure');
http_get("/b$_?status=503") for 1 .. 10;
is(breaker('origin:p')->{state}, 'open', '503 does');
--- no_error_log
[alert]



=== TEST 5: the admin API forces a breaker open, closed, and releases it
--- user_files
>>> p.lua
return { key = "$uri", l1 = false,
         breaker = { origin = { half_open_requests = 2 } } }
>>> e.lua
return {}
--- check
my $r = http_request('POST', '/admin/breaker/origin:p?state=open', body => '');
is($r->{status}, 200, 'forced open');
my $j = decode_json($r->{body});
is("$j->{state} $j->{forced}", 'open open', 'reported as forced open');
my $f = http_get('/x');
is($f->{status}, 503, 'requests get the fallback');
is(origin_total(), 0, 'and never reach the origin');

$r = http_request('POST', '/admin/breaker/origin:p?state=auto', body => '');
is(decode_json($r->{body})->{state}, 'half-open', 'released: half-open, probes decide');
http_get("/y$_") for 1 .. 2;
is(breaker('origin:p')->{state}, 'closed', 'two good probes close it');

$r = http_request('POST', '/admin/breaker/origin:p?state=closed', body => '');
http_get("/z$_?status=500") for 1 .. 40;
is(breaker('origin:p')->{state}, 'closed', 'forced closed stays closed whatever fails');
is(origin_total(), 42, 'everything went to the origin');

$r = http_request('POST', '/admin/breaker/origin:p?state=maybe', body => '');
is($r->{status}, 400, 'an unknown state is refused');
like($r->{body}, qr/"error": "state must be open, closed or auto"/, 'with a JSON error');
$r = http_request('POST', '/admin/breaker/origin:nope?state=open', body => '');
is($r->{status}, 404, 'an unknown breaker is 404');
$r = http_request('DELETE', '/admin/breaker/origin:p', body => '');
is($r->{status}, 405, 'DELETE is not allowed');
$r = http_get('/admin/breaker');
my $all = decode_json($r->{body});
is_deeply([sort map { $_->{name} } @{$all->{breakers}}], ['origin:e', 'origin:p', 'redis'],
          'GET /breaker lists every breaker');
--- no_error_log
[alert]



=== TEST 6: a HEAD (which never fills) of a stale key while the origin answers 500 gets the stale copy too
--- user_files
>>> p.lua
return {
  key = "$uri", ttl = 1, jitter = 0,
  stale = { while_revalidate = 0, if_error = 300 },
  early_refresh = false,
}
>>> e.lua
return {}
--- check
http_get('/h');
sleep 1.5;
my $r = http_request('HEAD', '/h?status=500');
is($r->{status}, 200, 'HEAD: 200 from the stale copy, not the 500');
is(guard($r), 'STALE', 'marked STALE');
is($r->{body} // '', '', 'without a body');
is(origin_count('/h'), 2, 'the HEAD did reach the origin');
--- no_error_log
[alert]
[crit]
