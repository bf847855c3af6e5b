# What a fill asks of the origin, and what its waiters do while it runs:
# - lock.on_timeout = "follow" (the default): a waiter whose lock.wait
#   passes while a live filler is still fetching keeps following it (or
#   takes a stale copy); before, 200 clients of a cold key behind a 6 s
#   origin made 200 origin requests;
# - a fill asks for the whole entity: Range and conditional headers are not
#   sent on, and the client's own range or condition is answered from the
#   full response (before: each filler got a 206 or 304, stored nothing,
#   and the next waiter tried again);
# - a HEAD miss fills with a GET, behind the same lock (before: 100 HEADs,
#   100 origin requests).
use lib 't/lib';
use Test::CacheGuard 'no_plan';
use Test::CacheGuard::Assert;
use Test::CacheGuard::Preset;

use List::Util qw(max);
use Time::HiRes qw(sleep);
use POSIX ();
use IO::Socket::INET;
use Socket ();

standard_preamble(config => guard_location(x_guard => '$cache_guard_status'));

sub same_body {
    my ($res) = @_;
    my %b = map { ($_->{body} // '') => 1 } @$res;
    return scalar keys %b;
}

run_tests();

__DATA__

=== TEST 1: defaults: 200 clients of a cold key behind a 6 s origin (longer than lock.wait) make one origin request
--- user_files
>>> p.lua
return { ttl = 60, jitter = 0 }
--- config
    location = /metrics {
        cache_guard_metrics;
    }
    location / {
        cache_guard main;
        cache_guard_policy $TEST_NGINX_HTML_DIR/p.lua;
        proxy_pass http://origin;
        add_header X-Guard "$cache_guard_status" always;
    }
--- check
origin_set('/slow', delay => 6);
my $n = clients(200);
my $res = http_concurrent($n, '/slow', timeout => 60);
is(origin_count('/slow'), 1, 'the origin saw one request');
is(scalar(grep { $_->{status} == 200 } @$res), $n, "all $n answered 200")
    or diag(tally($res));
is(main::same_body($res), 1, 'with the one body the origin sent');
is(scalar(grep { guard($_) eq 'MISS' } @$res), 1, 'one filler')
    or diag(tally($res));
is(scalar(grep { guard($_) eq 'HIT' } @$res), $n - 1,
   'every waiter followed it to the end and was served the entry')
    or diag(tally($res));
my $m = http_get('/metrics')->{body};
like($m, qr/^cache_guard_lock_timeouts_total\{policy="p"\} @{[$n - 1]}$/m,
     'each waiter that passed lock.wait is counted as a lock time-out');
--- no_error_log
[error]
[alert]



=== TEST 2: "follow" with a stale copy: at lock.wait the waiters get it, the filler goes on
--- user_files
>>> p.lua
return { key = "$uri", ttl = 1, jitter = 0, early_refresh = false,
         stale = { while_revalidate = 0, if_error = 60 },
         lock = { wait = 1 } }
--- check
http_get('/st');
ok(stored('cg:/st'), 'filled');
# the entry's own ttl of 1 s must pass: that wait is the point
sleep 1.3;
origin_reset();
origin_set('/st', delay => 4);
my $res = http_concurrent(20, '/st?x', timeout => 30);
is(origin_count('/st'), 1, 'one refill reached the origin');
is(scalar(grep { guard($_) eq 'STALE' && $_->{status} == 200 } @$res), 19,
   'the 19 waiters got the stale copy at lock.wait') or diag(tally($res));
is(scalar(grep { guard($_) eq 'MISS' } @$res), 1, 'the filler went on');
--- no_error_log
[error]
[alert]



=== TEST 3: an explicit on_timeout = "origin" keeps its meaning: waiters past lock.wait go to the origin
--- user_files
>>> p.lua
return { ttl = 60, jitter = 0, lock = { wait = 1, on_timeout = "origin" } }
--- check
origin_set('/o', delay => 3);
my $res = http_concurrent(5, '/o', timeout => 30);
is(origin_count('/o'), 5, 'each waiter went to the origin after lock.wait');
is(scalar(grep { guard($_) eq 'LOCK_TIMEOUT' } @$res), 4, 'as LOCK_TIMEOUT')
    or diag(tally($res));
--- no_error_log
[error]
[alert]



=== TEST 4: "follow" across nodes: a waiter on another node polls on past lock.wait and lock.ttl (its holder renews the Redis lock) and gets the value
--- user_files
>>> p.lua
return { ttl = 60, jitter = 0, lock = { ttl = 2, wait = 1 } }
--- check
start_second_nginx(guard_location(x_guard => '$cache_guard_status'));
origin_set('/x', delay => 4);
my $pid = fork // die "fork: $!";
if ($pid == 0) {
    my $r = http_get('/x', timeout => 20);
    POSIX::_exit($r->{status} == 200 ? 0 : 1);
}
ok(wait_for(sub { origin_inflight() >= 1 }, 10, 'the fill at the origin'),
   'node A fills /x');
my $b = http_get('/x', port => $ENV{TEST_NGINX_SERVER_PORT2}, timeout => 20);
is($b->{status}, 200, 'node B answers 200');
is(guard($b), 'HIT', 'from the value node A stored');
waitpid $pid, 0;
is($?, 0, 'node A\'s filler was served');
is(origin_count('/x'), 1, 'the origin saw one request');
stop_second_nginx();
--- no_error_log
[error]
[alert]



=== TEST 5: 30 concurrent "Range: bytes=0-99" on a cold key: one full fill; the filler's client gets the entity, the others their 206
--- user_files
>>> p.lua
return { key = "$uri", ttl = 60, jitter = 0 }
--- check
my $res = http_concurrent(30, '/r?size=1000&delay=0.3',
                          headers => { Range => 'bytes=0-99' }, timeout => 30);
is(origin_count('/r'), 1, 'the origin saw one request');
my $last = origin_last_request('/r');
ok(!exists $last->{headers}{range}, 'without the client\'s Range')
    or diag(Test::More::explain($last->{headers}));
my @filler = grep { guard($_) eq 'MISS' } @$res;
is(scalar @filler, 1, 'one filler') or diag(tally($res));
is($filler[0]{status} . ' ' . length($filler[0]{body}), '200 1000',
   'whose client gets the whole entity, as proxy_cache answers a miss');
my @w = grep { guard($_) eq 'HIT' } @$res;
is(scalar(grep { $_->{status} == 206
                 && ($_->{headers}{'content-range'} // '') eq 'bytes 0-99/1000'
                 && length($_->{body}) == 100 } @w), 29,
   'the 29 waiters got 206, bytes 0-99 of 1000') or diag(tally($res));
ok(stored('cg:/r'), 'the whole entity is stored');
my $full = http_get('/r');
is($full->{status} . ' ' . guard($full), '200 HIT', 'a plain GET is a hit');
is(length $full->{body}, 1000, 'of the full body');
is(substr($full->{body}, 0, 100), $w[0]{body}, 'whose first 100 bytes the ranges got');
--- no_error_log
[error]
[alert]



=== TEST 6: a conditional request on a cold key: the origin is asked unconditionally, the client gets 304, the entry is stored
--- user_files
>>> p.lua
return { key = "$uri", ttl = 60, jitter = 0 }
--- check
origin_set('/c', hdr => ['ETag:"v1"']);
my $r = http_get('/c', headers => { 'If-None-Match' => '"v1"' });
is($r->{status}, 304, 'the client\'s condition holds: 304');
is($r->{body}, '', 'without a body');
my $last = origin_last_request('/c');
ok(!exists $last->{headers}{'if-none-match'}, 'the origin was asked without it');
ok(stored('cg:/c'), 'the entity was stored');
my $g = http_get('/c');
is($g->{status} . ' ' . guard($g), '200 HIT', 'a plain GET is then a hit');
like($g->{body}, qr/"path":"\/c"/, 'with the body');
my $m = http_get('/c', headers => { 'If-None-Match' => '"v0"' });
is($m->{status}, 200, 'a condition that fails gets the body');
is(origin_count('/c'), 1, 'one origin request for all of them');
--- no_error_log
[error]
[alert]



=== TEST 7: 100 concurrent HEADs of a cold key: one GET reaches the origin, every HEAD is answered without a body, the entry is stored
--- user_files
>>> p.lua
return { key = "$uri", ttl = 60, jitter = 0 }
--- check
origin_set('/h', delay => 0.5);
my $res = http_concurrent(100, { method => 'HEAD', path => '/h' }, timeout => 30);
is(origin_count('/h'), 1, 'the origin saw one request');
my @log = grep { $_->{target} eq '/h' } origin_log();
is($log[0]{method}, 'GET', 'a GET, to fill');
is(scalar(grep { $_->{status} == 200 && ($_->{body} // '') eq '' } @$res), 100,
   'all 100 got 200 without a body') or diag(tally($res));
my %len = map { ($_->{headers}{'content-length'} // '-') => 1 } @$res;
is(join(',', keys %len), length('{"path":"/h","n":1,"status":200}'),
   'each with the entity\'s Content-Length');
ok(stored('cg:/h'), 'stored');
my $g = http_get('/h');
is($g->{status} . ' ' . guard($g), '200 HIT', 'a GET then hits');
like($g->{body}, qr/^\{"path":"\/h","n":1,/, 'the body of the HEAD\'s fill');
--- no_error_log
[error]
[alert]



=== TEST 8: a HEAD fill on a keep-alive connection, then a GET on it: no stray body bytes between them
--- user_files
>>> p.lua
return { key = "$uri", ttl = 60, jitter = 0 }
--- pipelined_requests eval
["HEAD /k", "GET /k2"]
--- error_code eval
[200,
 200]    # the GET that follows is answered
--- response_headers eval
["X-Guard: MISS", undef]    # the HEAD filled
--- response_body eval
["",                              # with no body
 qr/^\{"path":"\/k2","n":1,/]    # with its own body
--- check
is(scalar @{block_responses()}, 2, 'two responses');
ok(stored('cg:/k'), 'the HEAD stored /k');
my $h = http_request('HEAD', '/k');
is($h->{status} . ' ' . guard($h), '200 HIT', 'a second HEAD hits');
--- no_error_log
[error]
[alert]



=== TEST 9: a HEAD of a response that may not be stored is passed on as a HEAD answer, and stores nothing
--- user_files
>>> p.lua
return { key = "$uri", ttl = 60, jitter = 0 }
--- request eval
["HEAD /nc?hdr=Set-Cookie:a%3D1", "GET /nc?hdr=Set-Cookie:a%3D1"]
--- error_code eval
[200, undef]
--- response_body eval
["",                    # the HEAD, without a body
 qr/"path":"\/nc"/]    # a GET then goes to the origin
--- check
is(redis('EXISTS', 'cg:/nc'), 0, 'nothing stored');
is(origin_count('/nc'), 2, 'twice at the origin');
--- no_error_log
[error]
[alert]



=== TEST 10: a fill that takes longer than lock.ttl keeps its lock (its worker renews it): the waiters follow it, one origin request
--- user_files
>>> p.lua
return { key = "$uri", ttl = 60, jitter = 0, lock = { ttl = 2, wait = 1 } }
--- check
origin_set('/t', delay => 5);
my $res = http_concurrent(10, '/t', timeout => 30);
is(origin_count('/t'), 1, 'the origin saw one request');
is(scalar(grep { guard($_) eq 'MISS' } @$res), 1, 'one filler')
    or diag(tally($res));
is(scalar(grep { guard($_) eq 'HIT' && $_->{body} =~ /"n":1,/ } @$res), 9,
   'nine waiters served its value') or diag(tally($res));
ok(wait_for(sub { !redis('EXISTS', 'cg:lock:/t') }, 5),
   'the Redis lock was released at the end');
--- no_error_log
[error]
[alert]



=== TEST 11: a Range header sent twice is not passed on either: one full fill
--- user_files
>>> p.lua
return { key = "$uri", ttl = 60, jitter = 0 }
--- check
my $res = http_concurrent(10, '/dr?size=1000&delay=0.3',
    headers => ['Range: bytes=0-9', 'Range: bytes=0-9', 'request-range: bytes=0-9'],
    timeout => 30);
is(origin_count('/dr'), 1, 'the origin saw one request');
my $last = origin_last_request('/dr');
ok(!exists $last->{headers}{range} && !exists $last->{headers}{'request-range'},
   'with no range header at all') or diag(Test::More::explain($last->{headers}));
ok(stored('cg:/dr'), 'the entity is stored');
--- no_error_log
[alert]



=== TEST 12: a HEAD filled through gzip on a keep-alive connection: no body bytes before the next response
--- config
    location / {
        cache_guard main;
        cache_guard_policy $TEST_NGINX_HTML_DIR/p.lua;
        gzip on;
        gzip_types application/json;
        gzip_min_length 1;
        proxy_pass http://origin;
        add_header X-Guard "$cache_guard_status" always;
    }
--- user_files
>>> p.lua
return { key = "$uri", ttl = 60, jitter = 0 }
--- pipelined_requests eval
["HEAD /gz", "GET /gz2"]
--- more_headers eval
["Accept-Encoding: gzip", undef]
--- error_code eval
[200,
 200]    # the next response on the connection is intact
--- response_headers eval
["X-Guard: MISS", undef]    # the HEAD filled
--- response_body_like eval
[undef, qr/^\{"path":"\/gz2","n":1,/]    # with its own body
--- check
ok(stored("cg:/gz\0gzip"), 'the HEAD stored the gzip variant');
--- no_error_log
[error]
[alert]



=== TEST 13: a HEAD of a chunked body over max_entry_size does not read the rest of the body
--- http_config
    log_format up '$uri $upstream_bytes_received';
--- config
    location /cs/ {
        access_log off;
        sub_filter 'zzzz' 'y';
        sub_filter_once off;
        sub_filter_types *;
        proxy_pass http://origin/;
    }
    location / {
        cache_guard main;
        cache_guard_policy $TEST_NGINX_HTML_DIR/p.lua;
        access_log logs/up.log up;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/cs/;
        add_header X-Guard "$cache_guard_status" always;
    }
--- user_files
>>> p.lua
return { key = "$uri", ttl = 60, jitter = 0, max_entry_size = "64k" }
--- check
my $r = http_request('HEAD', '/big?size=30000000', timeout => 30);
is($r->{status}, 200, 'the HEAD is answered');
is($r->{body}, '', 'without a body');
is(redis('EXISTS', 'cg:/big'), 0, 'nothing stored');
my $log = '';
ok(wait_for(sub {
       open my $fh, '<', servroot() . '/logs/up.log' or return 0;
       local $/; $log = <$fh>; $log =~ m{^/big \d+$}m }, 10, 'the log line'),
   'the request was logged');
my ($bytes) = $log =~ m{^/big (\d+)$}m;
ok($bytes < 10_000_000, "the upstream was cut off ($bytes of 30,000,000+ bytes read)");



=== TEST 14: a filler whose client does not read: once the origin has answered, its lock is no longer renewed, and a waiter takes over after lock.ttl
--- http_config
    server {
        listen 127.0.0.1:$TEST_NGINX_SERVER_PORT2 sndbuf=16k;
        send_timeout 30s;
        location / {
            cache_guard main;
            cache_guard_policy $TEST_NGINX_HTML_DIR/p.lua;
            proxy_pass http://origin;
            add_header X-Guard "$cache_guard_status" always;
        }
    }
--- user_files
>>> p.lua
return { key = "$uri", ttl = 60, jitter = 0, lock = { ttl = 2, wait = 1 } }
--- check
socket(my $s, Socket::PF_INET(), Socket::SOCK_STREAM(), 0) or die "socket: $!";
setsockopt($s, Socket::SOL_SOCKET(), Socket::SO_RCVBUF(), 2048) or die;
connect($s, Socket::pack_sockaddr_in($ENV{TEST_NGINX_SERVER_PORT2},
                                     Socket::inet_aton('127.0.0.1')))
    or die "connect: $!";
syswrite($s, "GET /sc?size=900000 HTTP/1.1\r\nHost: localhost\r\n\r\n");
ok(wait_for(sub { origin_count('/sc') >= 1 }, 10, 'the fill'),
   'the filler reached the origin, and reads nothing of the answer');
my $r = http_get('/sc?size=900000', port => $ENV{TEST_NGINX_SERVER_PORT2},
                 timeout => 20);
is($r->{status}, 200, 'a waiter is answered');
is(guard($r), 'MISS', 'by taking the fill over');
is(length $r->{body}, 900000, 'with the whole body');
is(origin_count('/sc'), 2, 'the origin saw the two fills');
close $s;
--- no_error_log
[alert]



=== TEST 15: waiters whose clients go away are ended at once, while the fill still runs
--- user_files
>>> p.lua
return { key = "$uri", ttl = 60, jitter = 0 }
--- config
    location = /metrics {
        cache_guard_metrics;
    }
    location / {
        cache_guard main;
        cache_guard_policy $TEST_NGINX_HTML_DIR/p.lua;
        proxy_pass http://origin;
        add_header X-Guard "$cache_guard_status" always;
    }
--- check
origin_set('/gone', delay => 4);
my @socks;
for my $i (1 .. 21) {
    my $c = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                  PeerPort => $ENV{TEST_NGINX_SERVER_PORT})
        or die "connect: $!";
    print $c "GET /gone HTTP/1.1\r\nHost: localhost\r\n\r\n";
    push @socks, $c;
    ok(wait_for(sub { origin_inflight() >= 1 }, 10, 'the fill'),
       'the first is at the origin') if $i == 1;
}
ok(wait_for(sub { http_get('/metrics')->{body}
                  =~ /^cache_guard_lock_waits_total\{policy="p"\} 20$/m }, 10,
            '20 lock waits'),
   'the 20 others wait for the fill');
close $_ for @socks[1 .. 20];
ok(wait_for(sub {
       my @l = error_log_since_block()
               =~ /client prematurely closed connection/g;
       @l >= 20 }, 3, '20 waiters ended'),
   'nginx ended the 20 waiters whose clients left');
is(origin_inflight(), 1, 'while the fill was still at the origin');
close $socks[0];
--- no_error_log
[alert]
