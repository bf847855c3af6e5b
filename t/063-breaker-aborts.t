# A client that goes away is not an origin failure.  Before, a request let
# through to the origin whose client disconnected was counted as a failure
# in its cleanup: 40 clients that sent a request and closed at once opened
# the policy's origin breaker, and every uncached key then got 503.  Only
# what the origin (or nginx's upstream: a connect error, a time-out, a 5xx
# in `statuses`) answered counts; a hanging origin still opens it, through
# the upstream's own time-out.
use lib 't/lib';
use Test::CacheGuard 'no_plan';
use Test::CacheGuard::Assert;
use Test::CacheGuard::Preset;
use Test::CacheGuard::Status;

use IO::Socket::INET;
use JSON::PP;
use Time::HiRes qw(sleep);
use POSIX ();

guard_preamble(
    zone       => '8m',
    redis      => 'timeout=1s',
    upstream   => 1,
    config     => admin_location()
                . guard_location(path => '/raw/', x_guard => undef,
                                 pass => 'http://127.0.0.1:$TEST_NGINX_SERVER_PORT2',
                                 extra => 'proxy_read_timeout 1s;')
                . guard_location(x_guard => '$cache_guard_status',
                                 extra => "proxy_read_timeout 1s;\nproxy_buffer_size 4k;"),
    user_files => <<'FILES',
>>> p.lua
return {
  name = "api", ttl = 60, jitter = 0,
  breaker = { origin = { window = 30, min_requests = 10, failure_rate = 0.5,
                         open_for = 30, half_open_requests = 1 } },
}
FILES
    init       => 'origin_reset(); redis_flush();',
);

# $n clients each send a request for a distinct slow key, wait until the
# origin holds all of them, then close their connections without reading.
sub abort_wave {
    my ($n, $tag) = @_;
    my @socks;
    for my $i (1 .. $n) {
        my $s = IO::Socket::INET->new(
            PeerAddr => '127.0.0.1', PeerPort => $ENV{TEST_NGINX_SERVER_PORT},
            Proto => 'tcp') or die "connect: $!";
        print $s "GET /fast$i?r=$tag$i&delay=5 HTTP/1.1\r\nHost: localhost\r\n"
               . "Connection: close\r\n\r\n";
        push @socks, $s;
    }
    my $held = wait_for(sub { origin_inflight() >= $n }, 20, "$n in flight");
    close $_ for @socks;
    return $held;
}

run_tests();

__DATA__

=== TEST 1: 40 clients that abort while their requests are at the origin do not open the breaker
--- check
ok(main::abort_wave(40, 'a'), 'the origin holds 40 requests');
# nginx ends each upstream when it sees its client gone: wait for all 40
ok(wait_for(sub {
       my @l = error_log_since_block()
               =~ /client prematurely closed connection/g;
       @l >= 40 }, 20, '40 aborts seen by nginx'),
   'nginx saw the 40 clients go');
my $b = breaker('origin:api');
is($b->{state}, 'closed', 'the origin breaker stays closed')
    or diag(Test::More::explain($b));
is($b->{failures} // -1, 0, 'no failure was recorded');
my @r = map { http_get("/after$_") } 1 .. 5;
is(scalar(grep { $_->{status} == 200 && guard($_) eq 'MISS' } @r), 5,
   'uncached keys still reach the origin') or diag(tally(\@r));
is(origin_count("/after$_"), 1, "the origin served /after$_") for 1 .. 5;
--- no_error_log
[alert]
[crit]



=== TEST 2: a hanging origin still opens it, through the upstream's own time-out (504)
--- check
my $res = http_concurrent(10, sub { "/hang$_[0]?delay=5" }, timeout => 20);
my @r = @$res;
is(scalar(grep { $_->{status} == 504 } @r), 10,
   'ten requests timed out at the upstream (proxy_read_timeout 1s)')
    or diag(tally(\@r));
my $b = breaker('origin:api');
is($b->{state}, 'open', 'the breaker opened') or diag(Test::More::explain($b));
is($b->{failures}, 10, 'ten failures recorded');
my $before = origin_total();
my $f = http_get('/cold');
is($f->{status}, 503, 'a cold key now gets the fallback');
is(origin_total(), $before, 'without reaching the origin');
--- no_error_log
[alert]
[crit]



=== TEST 3: half-open: the probe's client goes away; refusals took no place of probes, and the next request probes at once
--- user_files
>>> p.lua
return {
  name = "api", ttl = 60, jitter = 0,
  breaker = { origin = { window = 30, min_requests = 4, failure_rate = 0.5,
                         open_for = 2, half_open_requests = 1 } },
}
--- check
my @f = map { http_get("/f$_?status=500") } 1 .. 4;
is(breaker('origin:api')->{state}, 'open', 'four 500s opened the breaker');
# open_for (2 s) must pass: that wait is the point
sleep 2.5;
my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                              PeerPort => $ENV{TEST_NGINX_SERVER_PORT})
    or die "connect: $!";
print $s "GET /probe?delay=5 HTTP/1.1\r\nHost: localhost\r\n\r\n";
ok(wait_for(sub { origin_inflight() >= 1 }, 10, 'the probe at the origin'),
   'a probe is let through');
my @r = map { http_get("/busy$_") } 1 .. 5;
is(scalar(grep { $_->{status} == 503 } @r), 5,
   'while it runs, others get the fallback') or diag(tally(\@r));
close $s;
ok(wait_for(sub { error_log_since_block()
                  =~ /client prematurely closed connection/ }, 10, 'abort'),
   'nginx saw the probe\'s client go');
my $n = http_get('/next');
is($n->{status}, 200, 'the next request probes at once and is served');
is(origin_count('/next'), 1, 'by the origin');
is(breaker('origin:api')->{state}, 'closed', 'and its success closes the breaker');
--- no_error_log
[alert]
[crit]



=== TEST 4: nginx's own 502 for an origin that did answer (a header too big for proxy_buffer_size) does not count
--- check
my $big = 'x' x 6000;
my @r = map { http_get("/tb$_?hdr=X-Big:$big") } 1 .. 10;
is(scalar(grep { $_->{status} == 502 } @r), 10,
   'ten 502s, "upstream sent too big header"') or diag(tally(\@r));
is(origin_count("/tb$_"), 1, "the origin answered /tb$_") for 1 .. 3;
my $b = breaker('origin:api');
is($b->{state}, 'closed', 'the breaker stays closed')
    or diag(Test::More::explain($b));
is($b->{failures}, 0, 'no failure counted');
is(http_get('/fine')->{status}, 200, 'other keys are served');
--- no_error_log
[alert]
[crit]



=== TEST 5: an origin that breaks off its answer's header (nginx's 502) still counts as a failure
--- check
my $srv = IO::Socket::INET->new(LocalAddr => '127.0.0.1',
                                LocalPort => $ENV{TEST_NGINX_SERVER_PORT2},
                                Listen => 64, ReuseAddr => 1)
    or die "listen: $!";
my $pid = fork // die "fork: $!";
if ($pid == 0) {
    $SIG{$_} = 'DEFAULT' for qw(TERM INT HUP);
    while (my $c = $srv->accept) {
        my $head = '';
        while ($head !~ /\r\n\r\n/) {
            last unless sysread $c, $head, 4096, length $head;
        }
        print $c "HTTP/1.1 200 OK\r\nContent-Type: text/pl";
        close $c;
    }
    POSIX::_exit(0);
}
close $srv;
my @r = map { http_get("/raw/b$_") } 1 .. 12;
kill 'KILL', $pid;
waitpid $pid, 0;
is(scalar(grep { $_->{status} == 502 } @r[0 .. 9]), 10,
   'ten 502s: "upstream prematurely closed connection"') or diag(tally(\@r));
is(scalar(grep { $_->{status} == 503 } @r[10, 11]), 2,
   'then the fallback: ten failures in a row opened the breaker');
my $b = breaker('origin:api');
is($b->{state}, 'open', 'the breaker opened') or diag(Test::More::explain($b));
--- no_error_log
[alert]
