# Breakdown protection without waiting: stale-while-revalidate (the old
# entry answers at once while exactly one background refresh goes to the
# origin), XFetch probabilistic early refresh before fresh-until, and
# stale-if-error.  Every test counts what reached the test origin.
use lib 't/lib';
use Test::CacheGuard 'no_plan';
use Test::CacheGuard::Assert;
use Test::CacheGuard::Preset;

use List::Util qw(max);
use Time::HiRes qw(time sleep);

standard_preamble();





# Sleep until $seconds after $since (the entry's fresh-until has passed).
sub sleep_past { my ($since, $seconds) = @_; sleep(max(0, $since + $seconds - time)) }

# Request $path every 100 ms for $seconds; the responses.
sub poll_for {
    my ($path, $seconds) = @_;
    my ($end, @res) = (time + $seconds);
    while (time < $end) {
        push @res, http_get($path);
        sleep 0.1;
    }
    return \@res;
}

run_tests();

__DATA__

=== TEST 1: stale-while-revalidate: 50 clients get the old body at once, one background refresh, then the new body
--- user_files
>>> p.lua
return {
  ttl = 2, jitter = 0,
  stale = { while_revalidate = 30 },
  early_refresh = false,
}
--- check
my $key = 'cg:http://localhost/swr';
my $fill = http_get('/swr');
my $filled = time;
is(guard($fill), 'MISS', 'first fill');
like($fill->{body}, qr/"n":1,/, 'the first body');
ok(stored($key), 'the entry is in Redis');
my $pttl = redis('PTTL', $key);
ok($pttl > 29_000, "kept in Redis through while_revalidate (PTTL $pttl)");
like(guard(http_get('/swr')), qr/^HIT l[12]$/, 'a hit while fresh');
sleep_past($filled, 2.2);    # fresh-until (ttl = 2) has passed
my $delay = slow();
origin_set('/swr', delay => $delay);
my $res = http_concurrent(50, '/swr');
is(scalar(grep { $_->{status} == 200 && $_->{body} eq $fill->{body} } @$res), 50,
   'all 50 got the old body') or diag(tally($res));
is(scalar(grep { guard($_) =~ /^(?:STALE|UPDATING)\b/ } @$res), 50,
   'all 50 were STALE or UPDATING') or diag(tally($res));
ok(scalar(grep { guard($_) =~ /^STALE\b/ } @$res) >= 1,
   'one of them started the refresh (STALE)') or diag(tally($res));
my $max = max map { $_->{elapsed} } @$res;
ok($max < 0.8 * $delay, "none waited for the origin: slowest ${max}s");
ok(wait_for(sub { origin_count('/swr') >= 2 }, 10, 'the refresh'),
   'the background refresh reached the origin');
my $new = wait_for(sub {
    my $r = http_get('/swr');
    return $r->{body} =~ /"n":2,/ ? $r : 0;
}, 10 * $delay, 'the new body');
ok($new, 'the refreshed entry is served');
like(guard($new || {}), qr/^HIT l[12]$/, 'as a HIT');
is(origin_count('/swr'), 2, 'the origin saw exactly one refresh');
ok((redis('GET', $key) // '') =~ qr/"n":2,/, 'Redis holds the refreshed entry');
--- no_error_log
[error]
[alert]
[crit]



=== TEST 2: XFetch with a large beta: a slow-to-fill key is refreshed before fresh-until, never a miss
--- user_files
>>> p.lua
return { ttl = 3, jitter = 0, early_refresh = { beta = 1000 } }
--- check
origin_set('/xf', delay => 0.3);
my $fill = http_get('/xf');
is(guard($fill), 'MISS', 'first fill, measured at about 0.3 s');
ok(stored('cg:http://localhost/xf'), 'the entry is in Redis');
my $res = poll_for('/xf', 1.5);    # all before fresh-until (ttl = 3)
ok(origin_count('/xf') >= 2, 'an early refresh reached the origin ('
   . origin_count('/xf') . ' origin requests)');
is(scalar(grep { guard($_) =~ /^HIT l[12]$/ } @$res), scalar @$res,
   'every request was a HIT') or diag(tally($res));
is(scalar(grep { $_->{status} == 200 && $_->{body} =~ /^\{"path":"\/xf","n":\d+,/ } @$res),
   scalar @$res, 'of the old or a refreshed body');
ok(scalar(grep { $_->{body} !~ /"n":1,/ } @$res) >= 1,
   'and the refreshed body was served before the old one expired');
--- no_error_log
[error]
[alert]
[crit]



=== TEST 3: early_refresh = false: the same requests leave the origin alone until fresh-until
--- user_files
>>> p.lua
return { ttl = 3, jitter = 0, early_refresh = false }
--- check
origin_set('/xf', delay => 0.3);
my $fill = http_get('/xf');
is(guard($fill), 'MISS', 'first fill');
ok(stored('cg:http://localhost/xf'), 'the entry is in Redis');
my $res = poll_for('/xf', 1.5);
is(origin_count('/xf'), 1, 'no refresh reached the origin');
is(scalar(grep { guard($_) =~ /^HIT l[12]$/ && $_->{body} eq $fill->{body} } @$res),
   scalar @$res, 'every request was a HIT of the one fill') or diag(tally($res));
--- no_error_log
[error]
[alert]
[crit]



=== TEST 4: stale-if-error: an expired entry answers the waiters when the refill fails, and is kept
--- user_files
>>> p.lua
return {
  ttl = 1, jitter = 0,
  stale = { while_revalidate = 0, if_error = 600 },
  early_refresh = false,
}
--- check
my $key = 'cg:http://localhost/sie';
my $fill = http_get('/sie');
my $filled = time;
is(guard($fill), 'MISS', 'first fill');
ok(stored($key), 'the entry is in Redis');
my $pttl = redis('PTTL', $key);
ok($pttl > 500_000, "kept in Redis through if_error (PTTL $pttl)");
sleep_past($filled, 1.2);    # fresh-until (ttl = 1) has passed
origin_set('/sie', status => 500, delay => 1);
my $res = http_concurrent(10, '/sie');
is(origin_count('/sie'), 2, 'the origin saw the first fill and one failed refill');
my @stale = grep { guard($_) =~ /^STALE\b/ } @$res;
ok(@stale >= 9, 'the waiters were served the stale copy (STALE)') or diag(tally($res));
is(scalar(grep { $_->{status} == 200 && $_->{body} eq $fill->{body} } @stale),
   scalar @stale, 'with the old body and status');
is(scalar(grep { $_->{status} == 200 || $_->{status} == 500 } @$res), 10,
   "the filler got the stale copy or the origin's 500, nobody a fallback")
    or diag(tally($res));
my $max = max map { $_->{elapsed} } @$res;
ok($max < 1 + 3 * slow(), "the waiters were woken by the failure: slowest ${max}s");
ok((redis('GET', $key) // '') =~ qr/"n":1,/, 'Redis still holds the old entry');
origin_clear('/sie');
my $r = http_get('/sie');
is($r->{status}, 200, 'the recovered origin');
like($r->{body}, qr/"n":3,/, 'refills the entry');
ok(wait_for(sub { (redis('GET', $key) // '') =~ /"n":3,/ }, 5),
   'and Redis holds the new entry');
--- no_error_log
[alert]
[crit]
