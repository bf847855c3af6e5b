# Redis failing must never turn into an error for a request the origin can
# answer: these tests kill and pause the real test redis-server.
use lib 't/lib';
use Test::CacheGuard 'no_plan';
use Test::CacheGuard::Preset;

guard_preamble(
    zone       => '4m',
    redis      => 'timeout=300ms connect_timeout=300ms',
    upstream   => 1,
    config     => guard_location(),
    user_files => <<'LUA',
>>> p.lua
return { key = "$uri", l1 = false }
LUA
    init       => 'redis_start(); origin_reset(); redis_flush();',
);

run_tests();

__DATA__

=== TEST 1: Redis killed: every request is answered by the origin, then caching resumes
--- check
http_get('/warm');
ok(wait_for(sub { redis('EXISTS', 'cg:/warm') }, 5), 'cached before the kill');
redis_stop();
my ($bad, $slow) = (0, 0);
for my $i (1 .. 30) {
    my $r = http_get("/down$i");
    $bad++ if $r->{status} != 200;
    $slow++ if $r->{elapsed} > 0.3 + 1.5;
}
is($bad, 0, 'no request failed while Redis was down');
is($slow, 0, 'none waited longer than the time-out plus a margin');
is(origin_total(), 31, 'the origin answered them all');
redis_start();
ok(wait_for(sub {
       http_get('/back');
       redis('EXISTS', 'cg:/back');
   }, 15, 'caching resumes'), 'entries are stored again after Redis returns');
my $r = http_get('/back');
is($r->{headers}{'x-guard'}, 'HIT l2', 'and served from Redis');
--- no_error_log
[alert]
[crit]



=== TEST 2: Redis paused (SIGSTOP): requests complete within the time-out plus a margin
--- check
http_get('/p0');
redis_pause();
my ($bad, $slow, $max) = (0, 0, 0);
for my $i (1 .. 10) {
    my $r = http_get("/paused$i");
    $bad++ if $r->{status} != 200;
    $max = $r->{elapsed} if $r->{elapsed} > $max;
    $slow++ if $r->{elapsed} > 0.3 + 1.5;
}
redis_resume();
is($bad, 0, 'no request failed while Redis was paused');
is($slow, 0, "none waited much longer than the 300 ms time-out (max $max s)");
ok(wait_for(sub {
       http_get('/after');
       redis('EXISTS', 'cg:/after');
   }, 15, 'recovery'), 'caching resumes after SIGCONT');
--- no_error_log
[alert]
[crit]



=== TEST 3: concurrent requests while Redis is paused all complete
--- check
redis_pause();
my $res = http_concurrent(50, sub { "/c$_[0]" });
redis_resume();
is(scalar(grep { $_->{status} == 200 } @$res), 50, 'all 50 answered 200');
is(origin_total(), 50, 'all reached the origin');
--- no_error_log
[alert]
[crit]



=== TEST 4: Redis answers errors: one logged per 10 s, and the next one says how many were not logged
--- timeout: 60
--- check
my $wrong = sub {
    # GET answers WRONGTYPE; a fill's late SET may beat the RPUSH: again
    wait_for(sub {
        eval { redis('DEL', 'cg:/wrong'); redis('RPUSH', 'cg:/wrong', 'x') }
    }, 10) or die 'cannot make cg:/wrong a list';
    return http_get('/wrong');
};
$wrong->() for 1 .. 3;
my @logged = error_log_since_block() =~ /\[error\].*WRONGTYPE/g;
is(scalar @logged, 1, 'three error replies at once: one logged');
ok(wait_for(sub {
       $wrong->();
       error_log_since_block()
           =~ /\[error\].*WRONGTYPE.*\((\d+) similar errors in the last \d+ s not logged\)/
           && $1 >= 2;
   }, 40, 'the next error after the interval'),
   'the next one, past the interval, says how many were not logged');
--- no_error_log
[alert]
[crit]
