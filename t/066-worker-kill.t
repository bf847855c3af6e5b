# A worker killed with SIGKILL in the middle of a fill takes nothing with
# it: its origin.max_concurrent slots are given back when the master
# starts its replacement (and only its slots: the other workers' fetches
# stay counted), the node lock it held is taken over, and its Redis lock
# expires after lock.ttl.
use lib 't/lib';

# Killing a worker needs nginx's master; valgrind runs one process.
use Test::CacheGuard $ENV{TEST_NGINX_USE_VALGRIND}
    ? (skip_all => 'workers are killed: not under valgrind') : 'no_plan';
use Test::CacheGuard::Assert;
use Test::CacheGuard::Preset;
use Test::CacheGuard::Status;

use IO::Socket::INET;
use JSON::PP ();
use Time::HiRes qw(time sleep);

guard_preamble(
    zone     => '4m',
    redis    => 'timeout=1s',
    upstream => 1,
    config   => guard_location() . admin_location(),
    init     => 'origin_reset(); redis_flush();',
);

sub inflight { return breaker('origin:p')->{inflight} }

# A connection to nginx on $port, not sending anything yet.
sub connect_to {
    my ($port) = @_;
    my $sock = IO::Socket::INET->new(
        PeerAddr => "127.0.0.1:$port", Timeout => 5)
        or die "connect to $port: $!\n";
    return $sock;
}

sub send_get {
    my ($sock, $path) = @_;
    print {$sock} "GET $path HTTP/1.1\r\nHost: localhost\r\n"
                . "Connection: close\r\n\r\n";
    return $sock;
}

# The worker that accepted the client connection $sock (to nginx's port
# $port): the one holding the server side's socket inode.  Undef until
# some worker accepted it.
sub worker_of {
    my ($sock, $port) = @_;
    my $inode;
    for my $table ('/proc/net/tcp', '/proc/net/tcp6') {
        open my $fh, '<', $table or next;
        while (<$fh>) {
            my @f = split;
            next unless @f > 9 && $f[1] =~ /:([0-9A-F]{4})$/
                && hex $1 == $port && $f[2] =~ /:([0-9A-F]{4})$/
                && hex $1 == $sock->sockport && $f[9];
            $inode = $f[9];
        }
    }
    return undef unless $inode;
    for my $pid (worker_pids()) {
        opendir my $dh, "/proc/$pid/fd" or next;
        for my $fd (readdir $dh) {
            my $link = readlink "/proc/$pid/fd/$fd" // next;
            return $pid if $link eq "socket:[$inode]";
        }
    }
    return undef;
}

# GET $path on a connection that worker $pid accepted: connections to the
# reuseport listener on $port are spread over the workers by the kernel,
# those that land on another worker are closed unused.
sub get_on_worker {
    my ($pid, $port, $path) = @_;
    for (1 .. 200) {
        my $sock = connect_to($port);
        my $worker = wait_for(sub { worker_of($sock, $port) }, 5);
        return send_get($sock, $path) if $worker && $worker == $pid;
        close $sock;
    }
    die "no connection to port $port landed on worker $pid\n";
}

# SIGKILL for $pid, then wait for the master to start a new worker.
sub kill_worker {
    my ($pid, $workers) = @_;
    kill 'KILL', $pid;
    return wait_for(sub {
        my @now = worker_pids();
        return @now == $workers && !grep { $_ == $pid } @now;
    }, 10, 'a new worker');
}

run_tests();

__DATA__

=== TEST 1: one worker killed while its fill holds the only origin slot: the slot is given back, nothing stays stuck
--- user_files
>>> p.lua
return {
  key = "$uri", ttl = 60,
  origin = { max_concurrent = 1, on_overload = "fallback" },
  lock = { ttl = 2, wait = 1 },
}
--- check
origin_set('/slow', delay => 30);
my ($worker) = worker_pids();
my $sock = send_get(connect_to($ENV{TEST_NGINX_SERVER_PORT}), '/slow');
ok(wait_for(sub { origin_count('/slow') == 1 }, 10, 'the fill'),
   'the fill reached the origin');
my $filled = time;
is(inflight(), 1, 'it holds the only origin slot');
ok(redis('EXISTS', 'cg:lock:/slow'), 'and the Redis lock');
is_fallback(http_get('/other'), 'a cold key while the slot is held');
is(origin_count('/other'), 0, 'which did not reach the origin');

ok(kill_worker($worker, 1), 'killed; the master started a new worker');
origin_clear('/slow');
ok(wait_for(sub { inflight() == 0 }, 10, 'inflight 0'),
   'the dead worker\'s slot was given back');
my $r = http_get('/cold');
is($r->{status} . ' ' . guard($r), '200 MISS',
   'a cold key gets the origin slot, not the fallback');
is(origin_count('/cold'), 1, 'it reached the origin');

ok(wait_for(sub { !redis('EXISTS', 'cg:lock:/slow') }, 2 + 3 * slow(),
            'the Redis lock to expire'), 'the dead fill\'s Redis lock expired');
my $expired = time - $filled;
ok($expired > 1, sprintf
   'by itself after lock.ttl = 2 s (%.1f s after the fill began)', $expired);
$r = http_get('/slow');
is($r->{status} . ' ' . guard($r), '200 MISS',
   'the killed fill\'s key is filled again');
ok(stored('cg:/slow'), 'and stored');
is(guard(http_get('/slow')), 'HIT l1', 'then a hit');
is(origin_count('/slow'), 2,
   'the killed fill and the new one reached the origin');
is(inflight(), 0, 'no origin slot is held once all is done');
--- error_log eval
qr/1 fetches to "origin:p" of the dead worker \d+ given back/
--- no_error_log eval
# nginx's own alert for the killed worker is expected, no other
[qr/\[alert\](?!.* exited on signal 9$)/m, '[error]', '[crit]']



=== TEST 2: two workers, one killed: only its fetch is given back, the other worker's stays counted
--- main_config
    worker_processes 2;
--- http_config
    server {
        listen 127.0.0.1:$TEST_NGINX_SERVER_PORT2 reuseport;
        location / {
            cache_guard main;
            cache_guard_policy $TEST_NGINX_HTML_DIR/p.lua;
            proxy_pass http://origin;
        }
    }
--- user_files
>>> p.lua
return {
  key = "$uri", ttl = 60,
  origin = { max_concurrent = 2, on_overload = "fallback" },
  lock = { ttl = 2, wait = 1 },
}
--- check
my $port2 = $ENV{TEST_NGINX_SERVER_PORT2};
my @workers = worker_pids();
is(scalar @workers, 2, 'two workers');
my ($dying, $living) = @workers;
origin_set($_, delay => 30) for '/slowA', '/slowB';
my $sock_a = get_on_worker($dying, $port2, '/slowA');
my $sock_b = get_on_worker($living, $port2, '/slowB');
ok(wait_for(sub { origin_count('/slowA') + origin_count('/slowB') == 2 }, 10,
            'the fills'), 'both fills reached the origin');
is(inflight(), 2, 'they hold both origin slots');
is_fallback(http_get('/x'), 'a cold key meanwhile');

ok(kill_worker($dying, 2), 'one worker killed; the master started a new one');
ok((grep { $_ == $living } worker_pids()), 'the other worker lives on');
# The new worker gives the dead workers' fetches back as it starts, before
# it serves (kill_worker waited for that): what is counted now is final.
like(error_log_since_block(),
     qr/1 fetches to "origin:p" of the dead worker $dying given back/,
     'the dead worker\'s fetch was given back as the new worker started');
is(inflight(), 1, 'and the living worker\'s fetch still counts');
my $res = http_concurrent(2, sub { "/c$_[0]?delay=1" });
is(tally($res), '200 MISS x1, 503 FALLBACK x1',
   'so of two cold keys one gets the free slot, one the fallback');

close $sock_b;
ok(wait_for(sub { origin_inflight() == 0 }, 10, 'the abandoned fetch closed'),
   'the living worker\'s fetch ended (its client went away)');
ok(wait_for(sub { inflight() == 0 }, 10, 'inflight 0'),
   'which gave its slot back: 0 in flight, not less');
my $r = http_get('/after');
is($r->{status} . ' ' . guard($r), '200 MISS', 'a new key fills');
my $log = error_log_since_block();
like($log, qr/1 fetches to "origin:p" of the dead worker $dying given back/,
     'the given back fetch is logged with the dead worker\'s pid');
unlike($log, qr/of the dead worker $living given back/,
       'nothing of the living worker was given back');
--- no_error_log eval
# nginx's own alert for the killed worker is expected, no other
[qr/\[alert\](?!.* exited on signal 9$)/m, '[error]', '[crit]']



=== TEST 3: an old worker killed while it finishes a fetch after a reload: its slot is given back when the cap is reached
--- user_files
>>> p.lua
return {
  key = "$uri", ttl = 60,
  origin = { max_concurrent = 1, on_overload = "fallback" },
  lock = { ttl = 2, wait = 1 },
}
--- check
# The master starts no worker in place of one that was shutting down: the
# dead old worker's slot is found when a request meets the cap.
origin_set('/slow', delay => 30);
my ($old) = worker_pids();
my $sock = send_get(connect_to($ENV{TEST_NGINX_SERVER_PORT}), '/slow');
ok(wait_for(sub { origin_count('/slow') == 1 }, 10, 'the fill'),
   'the fill reached the origin');
ok(nginx_reload(), 'reloaded: the old worker finishes its fetch');
ok(kill(0, $old), 'the old worker is still running');
is(inflight(), 1, 'its fetch holds the only origin slot');
kill 'KILL', $old;
ok(wait_for(sub { !kill 0, $old }, 10, 'the old worker to go'), 'killed');
my $r = http_get('/cold');
is($r->{status} . ' ' . guard($r), '200 MISS',
   'a cold key gets the origin slot, not the fallback');
ok(wait_for(sub { inflight() == 0 }, 5), 'and the slot count is back to 0');
--- error_log eval
qr/1 fetches to "origin:p" of the dead worker \d+ given back/
--- no_error_log eval
[qr/\[alert\](?!.* exited on signal 9$)/m, '[error]', '[crit]']
