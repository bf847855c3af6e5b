# Avalanche protection when the cache tier itself fails: the Redis circuit
# breaker.  redis-server is killed (SIGKILL) or paused (SIGSTOP) under
# load; the breaker opens, no traffic reaches the Redis port while it is
# open (a listener on that port counts connection attempts), L1 keeps
# serving, the origin answers the rest; when Redis returns, probes close
# the breaker and caching resumes.
use lib 't/lib';
use Test::CacheGuard 'no_plan';
use Test::CacheGuard::Assert;
use Test::CacheGuard::Preset;
use Test::CacheGuard::Status;

use IO::Socket::INET;
use JSON::PP;
use POSIX ();
use Time::HiRes qw(time sleep);

guard_preamble(
    zone     => '8m',
    redis    => sub {
        my $timeout = $_[0]->redis_timeout // '300ms';
        return "timeout=$timeout connect_timeout=$timeout";
    },
    upstream => 'keepalive 16',
    config   => admin_location() . guard_location(extra => <<'CONF'),
proxy_http_version 1.1;
proxy_set_header Connection "";
CONF
    init     => 'redis_start(); origin_reset(); redis_flush();',
);

# A listener on the Redis port that counts the connections it accepts and
# closes them; returns (pid, file holding the count).
sub counting_listener {
    my $file = servroot() . '/accepts';
    unlink $file;
    my $sock = IO::Socket::INET->new(LocalAddr => '127.0.0.1',
                                     LocalPort => $ENV{TEST_NGINX_REDIS_PORT},
                                     Listen => 128, ReuseAddr => 1)
        or die "cannot listen on the Redis port: $!\n";
    my $pid = fork() // die "fork: $!\n";
    if ($pid == 0) {
        # not the harness' handlers: they would stop the servers
        $SIG{$_} = 'DEFAULT' for qw(TERM INT HUP);
        my $n = 0;
        open my $fh, '>', $file; close $fh;
        while (my $c = $sock->accept) {
            $n++;
            open my $out, '>', $file; print $out $n; close $out;
            close $c;
        }
        POSIX::_exit(0);
    }
    close $sock;
    return ($pid, $file);
}

sub accepts {
    my ($file) = @_;
    open my $fh, '<', $file or return 0;
    my $n = <$fh>;
    return 0 + ($n // 0);
}

run_tests();

__DATA__

=== TEST 1: Redis killed under load: no 5xx, L1 keeps serving, the breaker opens, no connection attempts while open, probes close it when Redis is back
--- user_files
>>> p.lua
return {
  key = "$uri", ttl = 60, jitter = 0,
  l1 = { ttl = 120 },
  breaker = { redis = { window = 10, min_requests = 10, failure_rate = 0.5,
                        open_for = 6, half_open_requests = 2 } },
}
--- check
my @hot = map { "/hot$_" } 1 .. 5;
http_get($_) for @hot;
ok(wait_for(sub { redis('EXISTS', 'cg:/hot5') }, 5), 'hot keys stored in Redis');
my $r = http_get('/hot1');
is(guard($r), 'HIT l1', 'hot keys are L1 hits');
is(breaker()->{state}, 'closed', 'the breaker starts closed');

redis_stop();
my $killed = time;

my (@all, $i, $opened_after);
until (($opened_after) = (breaker()->{state} // '') eq 'open' ? ($i // 0) : ()) {
    last if ++$i > 200;
    push @all, http_get($hot[$i % 5]), http_get("/cold$i");
}
ok(defined $opened_after, "the breaker opened after Redis died ($i rounds, "
   . sprintf('%.2f', time - $killed) . ' s)');
ok(($opened_after // 999) <= 20,
   'within the failures the policy allows (min_requests 10, rate 0.5)');

# while open: a listener on the Redis port sees no connection at all
my ($lpid, $file) = counting_listener();
my $start = time;
my @open;
my $n = 0;
while (time - $start < 2.5) {
    $n++;
    push @open, http_get($hot[$n % 5]), http_get("/open$n");
}
my $seen = accepts($file);
is($seen, 0, "no connection attempt reached the Redis port while the breaker was open ($n rounds)");
is(breaker()->{state}, 'open', 'still open within open_for');
is(scalar(grep { $_->{status} != 200 } @all, @open), 0, 'no request failed (no 5xx)');
my @hot_open = @open[grep { $_ % 2 == 0 } 0 .. $#open];
is(scalar(grep { guard($_) ne 'HIT l1' } @hot_open), 0,
   'hot keys kept being served from L1 while Redis was down')
    or diag(tally(\@hot_open));
is(origin_count('/hot1'), 1, 'and never reached the origin again');
is(origin_count('/open1'), 1, 'cold keys went to the origin');

kill 'KILL', $lpid; waitpid $lpid, 0;
redis_start();

# open_for passes: probes go to the real Redis and close the breaker
ok(wait_for(sub { http_get('/probe' . time); breaker()->{state} eq 'closed' }, 30,
            'breaker closed'), 'after Redis returns, the breaker closes');
my $log = error_log_since_block();
like($log, qr/breaker "redis" open, (?:too many failures|failures in a row)/, 'it logged the opening');
like($log, qr/breaker "redis" half-open, probing.*breaker "redis" closed, the probes succeeded/s,
     'then half-open, then closed after the probes');
ok(wait_for(sub { http_get('/after'); redis('EXISTS', 'cg:/after') }, 10),
   'caching in Redis resumes');
--- no_error_log
[alert]
[crit]



=== TEST 2: Redis paused (SIGSTOP): each request completes within the time-out plus a margin, the breaker opens, then nobody waits for Redis
--- redis_timeout: 1s
--- user_files
>>> p.lua
return {
  key = "$uri", l1 = false,
  breaker = { redis = { window = 10, min_requests = 6, failure_rate = 0.5,
                        open_for = 60 } },
}
--- check
http_get('/warm');
redis_pause();
my ($bad, $slow, $max, $i) = (0, 0, 0, 0);
until (breaker()->{state} eq 'open') {
    last if ++$i > 60;
    my $r = http_get("/paused$i");
    $bad++ if $r->{status} != 200;
    $max = $r->{elapsed} if $r->{elapsed} > $max;
    $slow++ if $r->{elapsed} > 1 + 1.5;
}
is(breaker()->{state}, 'open', "the breaker opened ($i requests)");
is($slow, 0, sprintf('none waited much longer than the 1 s time-out (max %.2f s)', $max));
my $open_max = 0;
for my $j (1 .. 10) {
    my $r = http_get("/open$j");
    $bad++ if $r->{status} != 200;
    $open_max = $r->{elapsed} if $r->{elapsed} > $open_max;
}
is($bad, 0, 'no request failed');
ok($open_max < 0.9, sprintf('with the breaker open no request waits for the '
                            . '1 s time-out (max %.2f s)', $open_max));
redis_resume();
--- cleanup
redis_resume();
--- no_error_log
[alert]
[crit]



=== TEST 3: breaker = { redis = false }: Redis failures never stop the traffic
--- user_files
>>> p.lua
return { key = "$uri", l1 = false, breaker = { redis = false } }
--- check
redis_stop();
http_get("/x$_") for 1 .. 30;
my $b = breaker();
is($b->{enabled}, JSON::PP::false, 'reported as disabled');
is($b->{state}, 'closed', 'and it stays closed');
redis_start();
ok(wait_for(sub { http_get('/y'); redis('EXISTS', 'cg:/y') }, 15),
   'Redis is used again as soon as it answers');
--- no_error_log
[alert]



=== TEST 4: l1.ttl written in the policy: while the Redis breaker is open, L1 keeps what it stores for the entry's whole life
--- user_files
>>> p.lua
return { key = "$uri", ttl = 60, jitter = 0, l1 = { ttl = 1 } }
--- check
is(http_request('POST', '/admin/breaker/redis?state=open')->{status}, 200,
   'the Redis breaker forced open');
like(guard(http_get('/l1')), qr/^MISS/, 'filled from the origin, Redis skipped');
# l1.ttl (1 s) must pass: that wait is the point
sleep 1.5;
my $r = http_get('/l1');
is(guard($r), 'HIT l1', 'still an L1 hit past l1.ttl: L1 is the only copy');
is(origin_count('/l1'), 1, 'one origin request');
is(http_request('POST', '/admin/breaker/redis?state=auto')->{status}, 200,
   'the breaker released');
--- no_error_log
[alert]
[crit]
