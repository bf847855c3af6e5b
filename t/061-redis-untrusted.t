# Replies from Redis are untrusted: a server that is loading, out of
# memory, sends garbage, stops in the middle of a reply, answers with the
# wrong type, or announces a 2 GB string or a 2-billion-element array must
# never fail a request, serve something it did not store, hang a request
# past the time-out, crash the worker or make it allocate without bound.
# The Redis here is t/lib/fake-redis.pl in one of its modes; it logs every
# command and connection it gets.
use lib 't/lib';
use Test::CacheGuard 'no_plan';
use Test::CacheGuard::Assert;
use Test::CacheGuard::Preset;
use Test::CacheGuard::Status;
use Test::CacheGuard::FakeRedis;

use JSON::PP qw(decode_json);
use IO::Socket::INET;
use Time::HiRes qw(sleep);

# Every request is asked of Redis (no L1), and the Redis breaker is off
# unless a block says otherwise, so that every bad reply reaches the module
# (only the reconnect backoff spares it some).
guard_preamble(
    zone       => '4m',
    redis      => 'timeout=300ms connect_timeout=300ms',
    redis_port => 'TEST_NGINX_FAKE_REDIS_PORT',
    upstream   => 1,
    config     => guard_location() . admin_location(),
    user_files => <<'LUA',
>>> p.lua
return { key = "$uri", l1 = false, breaker = { redis = false } }
LUA
    cleanup    => 'fake_redis_stop();',
);

# The Redis time-out of the config above, in seconds.
use constant REDIS_TIMEOUT => 0.3;

# $n keys one after the other, the same $n again, then $n new keys at
# once.  Every one must be answered 200 by the origin with the body of its
# own path, fetched anew each time (the origin's body counts the requests
# for the path), as a MISS, never from Redis, within the time-out plus a
# margin.  Returns the responses.
sub survives {
    my ($prefix, $n) = @_;
    $n //= 10;
    my $origin_before = origin_total();
    my (@res, @want);
    for my $round (1, 2) {
        for my $i (1 .. $n) {
            push @res, http_get("/$prefix$i");
            push @want, ["/$prefix$i", $round];
        }
    }
    push @res, @{http_concurrent($n, sub { "/${prefix}c$_[0]" })};
    push @want, map { ["/${prefix}c$_", 1] } 0 .. $n - 1;
    my $count = @res;

    is(scalar(grep { $_->{status} == 200 } @res), $count,
       "$prefix: all $count requests answered 200") or diag(tally(\@res));
    my @wrong = grep {
        my ($path, $nth) = @{$want[$_]};
        ($res[$_]{body} // '') !~ /^\{"path":"\Q$path\E","n":$nth,/;
    } 0 .. $#res;
    is(scalar @wrong, 0, "$prefix: each with the origin's body for its own path")
        or diag("request $wrong[0] ($want[$wrong[0]][0]): "
                . ($res[$wrong[0]]{body} // ''));
    is(origin_total() - $origin_before, $count,
       "$prefix: every one was fetched from the origin");
    is(scalar(grep { guard($_) =~ /^HIT/ } @res), 0,
       "$prefix: none was served from Redis") or diag(tally(\@res));
    is(scalar(grep { guard($_) eq 'MISS' } @res), $count,
       "$prefix: every one a MISS") or diag(tally(\@res));
    my $max = max_elapsed(\@res);
    ok($max < (REDIS_TIMEOUT + 1.5) * slow(),
       "$prefix: none waited much past the " . REDIS_TIMEOUT . "s time-out (slowest ${max}s)");
    return \@res;
}

# The fake got GETs for keys of $prefix: the bad replies were asked for.
sub asked {
    my ($prefix) = @_;
    my @gets = grep { m{^GET cg:/\Q$prefix\E} } fake_redis_commands('GET');
    ok(scalar @gets, "$prefix: the module asked the fake Redis ("
                     . @gets . ' GETs)');
    return scalar @gets;
}

# After survives(): the worker backs off after a dropped connection, and
# requests meanwhile go to the origin without asking Redis.  $rounds
# times: send requests for new keys until one of them is asked of the fake
# again (after the worker reconnected), so that the bad reply is met again
# on a new connection.  Every response must still be a 200 MISS.
sub again {
    my ($prefix, $rounds) = @_;
    my @res;
    my $k = 0;
    for my $round (1 .. $rounds) {
        my $asked = wait_for(sub {
            push @res, http_get("/${prefix}r$round-" . ++$k);
            scalar grep { m{^GET cg:/\Q$prefix\Er$round-} }
                fake_redis_commands('GET');
        }, 20, "round $round of $prefix to reach the fake Redis");
        ok($asked, "$prefix: round $round: asked Redis again after $k requests");
    }
    is(scalar(grep { $_->{status} == 200 && guard($_) eq 'MISS' } @res),
       scalar @res, "$prefix: and all " . @res . ' requests meanwhile were 200 MISS')
        or diag(tally(\@res));
    my $max = max_elapsed(\@res);
    ok($max < (REDIS_TIMEOUT + 1.5) * slow(),
       "$prefix: none waited much past the time-out (slowest ${max}s)");
    return \@res;
}

# "CLOSE n peer|server bytes" lines of the fake's log, by who closed.
sub closed_by {
    my ($by) = @_;
    return grep { /^CLOSE \d+ \Q$by\E / } fake_redis_log();
}

# The fake logs a close when it sees it, after the module closed: wait for
# $n of them (the last may be a moment behind the response).
sub closed_by_peer {
    my ($n) = @_;
    wait_for(sub { closed_by('peer') >= $n }, 10);
    return closed_by('peer');
}

# The paths of @paths for which the fake got no "$command $prefix$path".
sub missing {
    my ($command, $prefix, @paths) = @_;
    my %seen = map { ($_ => 1) } fake_redis_commands($command);
    return grep { !$seen{"$command $prefix$_"} } @paths;
}

# The worker's peak resident memory (VmHWM) in kB; under valgrind, whose
# own memory that would be, 0.
sub worker_peak_kb {
    return 0 if $ENV{TEST_NGINX_USE_VALGRIND};
    my ($pid) = worker_pids();
    open my $fh, '<', "/proc/$pid/status" or die "no /proc/$pid/status: $!\n";
    my ($kb) = map { /^VmHWM:\s+(\d+)\s+kB/ ? $1 : () } <$fh>;
    return $kb // die "no VmHWM in /proc/$pid/status\n";
}

# The worker's largest private anonymous mapping in MB (glibc gives a
# large malloc one of its own); under valgrind, whose own memory that
# would be, 0.
sub largest_private_mb {
    return 0 if $ENV{TEST_NGINX_USE_VALGRIND};
    my ($pid) = worker_pids();
    open my $fh, '<', "/proc/$pid/maps" or die "no /proc/$pid/maps: $!\n";
    my $max = 0;
    no warnings 'portable';    # 64-bit addresses
    while (<$fh>) {
        my ($from, $to, $perms, $path) =
            /^([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \S+\s*(.*)$/ or next;
        next unless $perms eq 'rw-p' && $path eq '';
        my $mb = (hex($to) - hex($from)) / (1024 * 1024);
        $max = $mb if $mb > $max;
    }
    return sprintf '%.1f', $max;
}

run_tests();

__DATA__

=== TEST 1: LOADING replies: requests go to the origin, the Redis breaker opens, then Redis gets no command and no connection
--- setup
fake_redis_start('loading');
--- user_files
>>> p.lua
return {
  key = "$uri", l1 = false,
  breaker = { redis = { window = 10, min_requests = 5, failure_rate = 0.5,
                        open_for = 30, half_open_requests = 1 } },
}
--- check
is(breaker()->{state}, 'closed', 'the breaker starts closed');
my $i = 0;
my @res;
ok(wait_for(sub { push @res, http_get('/load' . ++$i); breaker()->{state} eq 'open' },
            10, 'the breaker to open'),
   "the breaker opened after $i requests");
is(scalar(grep { $_->{status} == 200 && guard($_) eq 'MISS' } @res), scalar @res,
   'those requests were answered 200 MISS by the origin') or diag(tally(\@res));
my $state = breaker();
ok($state->{requests} >= 5, "at least min_requests results counted ($state->{requests})");
ok($state->{failures} >= 0.5 * $state->{requests},
   "at least half of them failures ($state->{failures})");
my @logged = fake_redis_log();
ok(scalar(grep { m{^GET cg:/load} } @logged), 'the fake was asked');
my $conns = fake_redis_connections();
my $origin_before = origin_total();
my @open = map { http_get("/open$_") } 1 .. 10;
push @open, @{http_concurrent(10, sub { "/openc$_[0]" })};
is(scalar(grep { $_->{status} == 200 && guard($_) eq 'MISS' } @open), 20,
   'with the breaker open: 20 requests answered 200 MISS') or diag(tally(\@open));
is(origin_total() - $origin_before, 20, 'by the origin');
ok(max_elapsed(\@open) < 1 * slow(), 'at once (slowest ' . max_elapsed(\@open) . 's)');
# A lookup (GET, or the lock's SET) waits for its reply, so any command
# for these keys, and the connection it needed, is in the fake's log by
# the time its request was answered; commands of the /load keys written
# just before the breaker opened may still arrive, they do not count.
my @asked = grep { m{ cg:(?:lock:)?/open} } fake_redis_log();
is(scalar @asked, 0, 'the fake Redis got no command for them')
    or diag(join "\n", @asked);
is(fake_redis_connections(), $conns, 'and no new connection');
is(breaker()->{state}, 'open', 'the breaker is still open');
--- error_log eval
qr/cache guard: breaker "redis" open, (?:too many failures|failures in a row)/
--- no_error_log
[alert]
[crit]
[emerg]
exited on signal



=== TEST 2: OOM on writes: the lock and the value are refused, every request is a MISS from the origin, no lock is released that was never taken
--- setup
fake_redis_start('oom');
--- check
survives('oom');
my @paths = ((map { "/oom$_" } 1 .. 10), (map { "/oomc$_" } 0 .. 9));
ok(wait_for(sub { !missing('SET', 'cg:', @paths) }, 10, 'a SET for each key'),
   'the module tried to store each response (SET key)')
    or diag('no SET for ' . join ' ', missing('SET', 'cg:', @paths));
is(join(' ', missing('SET', 'cg:lock:', @paths)), '',
   'and asked for the Redis lock of each key (SET lock NX)');
is(scalar(fake_redis_commands('EVAL', 'EVALSHA')), 0,
   'no lock release: no lock was ever granted');
my $r = http_get('/oom1');
is(guard($r), 'MISS', 'a refused SET is not taken for stored: the next request is a MISS again');
like($r->{body}, qr/"n":3,/, 'fetched from the origin a third time');
--- error_log
OOM command not allowed
--- no_error_log
[alert]
[crit]
[emerg]
exited on signal



=== TEST 3: garbage instead of RESP: the connection is dropped, requests go to the origin, the worker reconnects after its backoff and drops the next one too
--- setup
fake_redis_start('garbage');
--- check
survives('junk');
asked('junk');
again('junk', 3);
ok(fake_redis_connections() >= 4,
   'the worker reconnected after each drop (' . fake_redis_connections() . ' connections)');
my $closed = closed_by_peer(4);
ok($closed >= 4,
   "the module closed each connection that sent garbage ($closed)");
--- error_log
Protocol error
--- no_error_log
[alert]
[crit]
[emerg]
exited on signal



=== TEST 4: a bulk reply cut short on an open connection: the command times out, requests go to the origin within the time-out
--- setup
fake_redis_start('truncated');
--- check
my $res = survives('cut');
asked('cut');
ok($res->[0]{elapsed} >= REDIS_TIMEOUT * 0.9,
   "the first request did wait for the time-out ($res->[0]{elapsed}s)");
again('cut', 2);
my $closed = closed_by_peer(3);
ok($closed >= 3, "the module dropped each stalled connection ($closed)");
--- error_log
timed out
--- no_error_log
[alert]
[crit]
[emerg]
exited on signal



=== TEST 5: a bulk reply cut short, then the connection closed: requests go to the origin without waiting for the time-out
--- setup
fake_redis_start('truncated-close');
--- check
survives('cutclose');
asked('cutclose');
again('cutclose', 3);
ok(fake_redis_connections() >= 4,
   'the worker reconnected after each close (' . fake_redis_connections() . ' connections)');
--- error_log
Server closed the connection
--- no_error_log
timed out
[alert]
[crit]
[emerg]
exited on signal



=== TEST 6: an integer where a GET returns a string: a miss, not an entry, and the connection is kept
--- setup
fake_redis_start('wrongtype');
--- check
survives('int');
is(join(' ', missing('GET', 'cg:', (map { "/int$_" } 1 .. 10), map { "/intc$_" } 0 .. 9)),
   '', 'every key was asked of Redis');
is(fake_redis_connections(), 1, 'all on the one connection: a wrong type is no reason to drop it');
--- error_log
unexpected redis reply of type 3
--- no_error_log
[alert]
[crit]
[emerg]
exited on signal



=== TEST 7: an array where a GET returns a string: a miss, not an entry, and the connection is kept
--- setup
fake_redis_start('wrongtype-array');
--- check
survives('arr');
is(join(' ', missing('GET', 'cg:', (map { "/arr$_" } 1 .. 10), map { "/arrc$_" } 0 .. 9)),
   '', 'every key was asked of Redis');
is(fake_redis_connections(), 1, 'all on the one connection: a wrong type is no reason to drop it');
--- error_log
unexpected redis reply of type 2
--- no_error_log
[alert]
[crit]
[emerg]
exited on signal



=== TEST 8: a 2 GB bulk string: the connection is dropped past the largest possible entry, memory stays bounded
--- setup
fake_redis_start('huge', stream_bytes => 32 * 1024 * 1024);
--- check
my $peak = worker_peak_kb();
survives('big');
asked('big');
again('big', 3);
my $grown = worker_peak_kb() - $peak;
ok($grown < 24 * 1024,
   "the worker's peak memory grew by $grown kB, far less than one 32 MiB stream");
closed_by_peer(4);
my @closed = closed_by('peer');
ok(@closed >= 4, 'the module closed each connection in the middle of its stream ('
                 . @closed . ')') or diag(join "\n", fake_redis_log());
my @full = grep { (split / /)[3] >= 32 * 1024 * 1024 } @closed;
is(scalar @full, 0, 'no stream was read to its end') or diag("@full");
--- error_log
reply over
--- no_error_log
[alert]
[crit]
[emerg]
exited on signal



=== TEST 9: an array of 2 billion elements: refused at its header, memory stays bounded
--- setup
fake_redis_start('hugearray', stream_bytes => 8 * 1024 * 1024);
--- check
my $peak = worker_peak_kb();
survives('many');
asked('many');
again('many', 3);
my $grown = worker_peak_kb() - $peak;
ok($grown < 24 * 1024,
   "the worker's peak memory grew by $grown kB (8 MiB of elements were streamed)");
closed_by_peer(4);
my @closed = closed_by('peer');
ok(@closed >= 4, 'the module closed each connection in the middle of its stream ('
                 . @closed . ')') or diag(join "\n", fake_redis_log());
--- error_log
reply over
--- no_error_log
[alert]
[crit]
[emerg]
exited on signal



=== TEST 10: the purge subscription flooded with messages: the worker reads them by turns and goes on answering requests meanwhile
--- setup
fake_redis_start('flood');
--- check
ok(wait_for(sub { grep { /^SUBSCRIBER / } fake_redis_log() }, 10,
            'the purge listener to subscribe'),
   'the purge listener subscribed, and the flood began');
sleep 0.5;
my @res;
for my $i (1 .. 5) {
    push @res, http_get("/flood$i");
    sleep 0.1;
}
is(scalar(grep { $_->{status} == 200 } @res), 5,
   'five requests during the flood answered 200') or diag(tally(\@res));
my $max = max_elapsed(\@res);
ok($max < 1 * slow(), "none waited behind the flood (slowest ${max}s)");
is(scalar(grep { /^CLOSE / } fake_redis_log()), 0,
   'the subscription was not dropped for it');
--- no_error_log
[alert]
[crit]
[emerg]
exited on signal



=== TEST 11: a command behind one not yet answered goes at once, not held back (Nagle) until the server's delayed ACK
--- setup
fake_redis_start('stall-slow');
--- check
# Answered at once for a while, the fake's socket acknowledges lazily
# (up to 40 ms later, unless a reply carries the ACK).  Then one command
# is never answered, and each of five more, 2 ms apart, must reach the
# fake about when its request is made, not at the next delayed ACK.
http_get("/warm$_") for 1 .. 10;
my @socks;
my $send = sub {
    my $s = IO::Socket::INET->new("127.0.0.1:$ENV{TEST_NGINX_SERVER_PORT}")
        or die "connect: $!";
    print {$s} "GET $_[0] HTTP/1.0\r\nHost: localhost\r\n\r\n";
    push @socks, $s;
    return Time::HiRes::time();
};
my $t0 = $send->('/slow');
Time::HiRes::sleep(0.0005)
    until grep { m{^GET cg:/slow$} } fake_redis_log()
          or Time::HiRes::time() > $t0 + 5;
ok(scalar(grep { m{^GET cg:/slow$} } fake_redis_log()),
   'the GET of /slow reached the fake');
Time::HiRes::sleep(0.002);
my (%sent, %seen);
my $look = sub {
    my $now = Time::HiRes::time();
    for my $line (fake_redis_log()) {
        $seen{$1} //= $now if $line =~ m{^GET cg:/fast(\d)$};
    }
    Time::HiRes::sleep(0.0005);
};
for my $i (1 .. 5) {
    $sent{$i} = $send->("/fast$i");
    $look->() while Time::HiRes::time() < $sent{$i} + 0.002;
}
$look->() while keys %seen < 5 && Time::HiRes::time() < $sent{5} + 1;
my @late = grep { ($seen{$_} // 9e9) - $sent{$_} > 0.015 * slow() } 1 .. 5;
is("@late", '', 'each GET reached the fake within 15 ms of its request')
    or diag(join ' ', map { sprintf '%.1fms', 1000 * (($seen{$_} // 9e9) - $sent{$_}) } 1 .. 5);
--- no_error_log
[alert]
[crit]
[emerg]
exited on signal



=== TEST 12: a server that stops reading: the commands queued meanwhile are dropped with the connection, and their buffer is not kept
--- setup
fake_redis_start('deaf-big');
--- user_files
>>> p.lua
return { key = "$uri", l1 = false, max_entry_size = "4m", breaker = { redis = false } }
--- timeout: 60
--- check
my $res = http_concurrent(12, sub { "/deaf$_[0]?size=3900000" });
is(scalar(grep { $_->{status} == 200 && length($_->{body} // '') == 3900000 } @$res),
   12, 'twelve responses of 3.9 MB answered whole') or diag(tally($res));
ok(wait_for(sub { grep { m{^SET cg:/deaf} } fake_redis_log() }, 10,
            'an entry stored'),
   'an entry of 3.9 MB reached the fake, which then stopped reading');
ok(wait_for(sub { error_log_since_block() =~ /redis "[^"]+" timed out/ }, 10,
            'the time-out'), 'the command not read timed out, the connection was dropped');
sleep 0.5;
my $mb = largest_private_mb();
ok($mb < 24, "no buffer of those commands left in the worker (largest private mapping ${mb} MB)");
--- no_error_log
[alert]
[crit]
[emerg]
exited on signal
