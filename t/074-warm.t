# Warm-up through the admin API: POST /warm with one URI per line fills
# them as background subrequests of the admin request, at most
# concurrency=N at a time, each taking the normal path of the location it
# reaches (L1, Redis, the locks, the fill); the answer comes when all are
# done and counts what happened; GET /warm shows the last job.  Every block
# counts what reached the test origin and reads Redis.
use lib 't/lib';
use Test::CacheGuard 'no_plan';
use Test::CacheGuard::Preset;
use Test::CacheGuard::Status;
use Test::CacheGuard::Assert;

use IO::Select;
use IO::Socket::INET;
use JSON::PP qw(decode_json);
use Time::HiRes qw(time sleep);

sub warm_server {
    return <<'CONF' . guard_location(path => '/h/', policy => 'h.lua')
    location /admin/ {
        # reads $http_authorization, so the admin request caches its value
        if ($http_authorization = "refused") {
            return 403;
        }
        cache_guard_admin;
    }
    location /raw/ {
        proxy_pass http://origin;
    }
    location /d/ {
        cache_guard main;
        proxy_pass http://origin;
    }
    location /hx/ {
        cache_guard main;
        cache_guard_policy $TEST_NGINX_HTML_DIR/p.lua;
        proxy_set_header X-Auth $http_authorization;
        proxy_pass http://origin;
    }
    location /dead/ {
        cache_guard main;
        cache_guard_policy $TEST_NGINX_HTML_DIR/p.lua;
        proxy_pass http://127.0.0.1:1;
    }
    location /idx/ {
        cache_guard main;
        cache_guard_policy $TEST_NGINX_HTML_DIR/p.lua;
        root $TEST_NGINX_HTML_DIR;
        try_files /nothing-here @named;
    }
    location @named {
        proxy_pass http://origin;
    }
CONF
        . guard_location();
}

guard_preamble(
    zone       => '8m',
    redis      => 'timeout=' . startup_redis_timeout(),
    upstream   => 1,
    config     => warm_server(),
    user_files => <<'LUA',
>>> p.lua
return { key = "$uri", ttl = 60, jitter = 0, l1 = { ttl = 60 } }
>>> h.lua
return { key = "$host$uri", ttl = 60, jitter = 0 }
LUA
    init       => 'origin_reset(); redis_flush();',
);

sub warm {
    my ($body, $args, %opt) = @_;
    return http_request('POST', '/admin/warm' . ($args // ''), body => $body,
                        timeout => 60, %opt);
}

sub progress { return json_of(http_get('/admin/warm', @_)) }

sub counts {
    my ($j) = @_;
    return join ' ', map { "$_ " . ($j->{$_} // '-') }
        qw(total filled hits passed failed concurrency);
}

run_tests();

__DATA__

=== TEST 1: 100 URIs at concurrency 8: each filled once, at most 8 at a time, then served as hits; a second warm finds them cached
--- check
my @uris = map { "/w/$_" } 1 .. 100;
my $list = join '', map { "$_?delay=0.05\n" } @uris;
my $t0 = time;
my $r = warm($list, '?concurrency=8');
is($r->{status}, 200, 'the warm answers 200');
is($r->{headers}{'content-type'}, 'application/json', 'in JSON');
my $j = json_of($r);
is(counts($j), 'total 100 filled 100 hits 0 passed 0 failed 0 concurrency 8',
   'all 100 filled') or diag($r->{body});
is(origin_total(), 100, 'the origin saw 100 requests');
is(scalar(grep { origin_count($_) == 1 } @uris), 100, 'one for each URI');
my $peak = origin_peak();
ok($peak <= 8, "at most 8 at a time (peak $peak)");
ok($peak >= 2, "several at a time (peak $peak)");
ok(wait_for(sub { redis('EXISTS', map { "cg:$_" } @uris) == 100 }, 10 * slow(),
            'the 100 keys'), 'all 100 stored in Redis under their $uri key');

my @res = map { http_get($_) } @uris;
is(scalar(grep { guard($_) =~ /^HIT l[12]$/ } @res), 100,
   'later GETs are hits') or diag(tally(\@res));
is(scalar(grep { $_->{body} =~ /"n":1,/ } @res), 100, 'of the warmed bodies');
is(origin_total(), 100, 'no new origin request');

$r = warm($list);
$j = json_of($r);
is(counts($j), 'total 100 filled 0 hits 100 passed 0 failed 0 concurrency 8',
   'a second warm: 100 hits, the default concurrency') or diag($r->{body});
is(origin_total(), 100, 'the origin saw nothing more');

my $p = progress();
ok(defined $p->{running} && !$p->{running}, 'GET /warm: not running');
is(join(' ', map { "$_ " . ($p->{$_} // '-') } qw(total done filled hits failed)),
   'total 100 done 100 filled 0 hits 100 failed 0', 'the last job, done');
ok($p->{started} >= int($t0) && $p->{started} <= time + 1,
   "started is a recent time ($p->{started})");

# a bad line: nothing is warmed, the last job's progress is kept
my @bad = (["/x/1\n/x/2\n/x/ 3\n/x/4\n", 3], ["/x/1\nx/2\n", 2],
           ["/x/1\n/x/\t2\n", 2], ["/x/1\n/x/2\x01\n", 2],
           ["http://localhost/x/1\n", 1]);
for my $case (@bad) {
    my ($body, $line) = @$case;
    (my $shown = $body) =~ s/([^\x21-\x7e])/sprintf '\\x%02x', ord $1/ge;
    $r = warm($body);
    is($r->{status}, 400, "a bad line is refused: $shown");
    like(json_of($r)->{error} // '', qr/^line $line is not a URI path/,
         "a JSON error naming line $line") or diag($r->{body});
}
is(origin_total(), 100, 'the origin saw nothing of them');
is(redis('EXISTS', 'cg:/x/1'), 0, 'nothing was stored');
is(progress()->{total}, 100, 'and the last job is still the one shown');
--- no_error_log
[error]
[alert]
[crit]



=== TEST 2: what each URI was: filled, a hit, passed (not guarded, not cacheable), failed (status >= 400); $host keys are the admin request's Host
--- check
http_get('/cached');
ok(stored('cg:/cached'), '/cached is cached beforehand');
origin_set('/nocache', hdr => 'Cache-Control:no-store');
origin_set('/broken', status => 500);
my $list = join "\r\n", '/cached', '/fresh?x=1', '/raw/1', '/nocache', '/broken',
                      '/raw/2?status=503', '', '/h/1', '/fresh2';
my $r = warm("$list\r\n", '?concurrency=3',
             headers => { Host => 'api.example.com' });
is($r->{status}, 200, 'the warm answers 200') or diag($r->{body});
my $j = json_of($r);
is(counts($j), 'total 8 filled 3 hits 1 passed 2 failed 2 concurrency 3',
   'empty lines skipped, CRLF accepted, each counted') or diag($r->{body});
is(origin_total(), 8, 'the origin saw the seven not cached, and the first fill');
ok(wait_for(sub { redis('EXISTS', 'cg:/fresh', 'cg:/fresh2',
                        'cg:api.example.com/h/1') == 3 }, 5 * slow(),
            'the fills'), 'filled under their keys (the Host of the admin request)');
is(redis('EXISTS', 'cg:/nocache', 'cg:/broken'), 0,
   'the uncacheable and the failed are not stored');
like(guard(http_get('/h/1', headers => { Host => 'api.example.com' })), qr/^HIT l[12]$/,
   'a client with that Host gets a hit');
is(origin_count('/h/1'), 1, 'without an origin request');
--- no_error_log
[error]
[alert]
[crit]



=== TEST 3: GET /warm while a job runs: running, with its progress; the concurrency argument is checked; an empty list answers at once
--- check
my @uris = map { "/slow/$_" } 1 .. 4;
my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                 PeerPort => $ENV{TEST_NGINX_SERVER_PORT})
    or die "connect: $!";
my $body = join '', map { "$_?delay=0.5\n" } @uris;
print {$sock} "POST /admin/warm?concurrency=1 HTTP/1.1\r\nHost: localhost\r\n"
              . "Connection: close\r\nContent-Length: " . length($body)
              . "\r\n\r\n$body";
my $p;
ok(wait_for(sub { $p = progress(); $p->{running} && $p->{done} >= 1 },
            10 * slow(), 'a running job'), 'GET /warm shows it running');
is($p->{total}, 4, 'total 4');
ok($p->{done} < 4, "not done yet ($p->{done} of 4)");
ok(origin_peak() <= 1, 'one at a time');
my ($raw, $select) = ('', IO::Select->new($sock));
while ($select->can_read(30)) {
    last unless sysread $sock, my $chunk, 65536;
    $raw .= $chunk;
}
like($raw, qr/^HTTP\/1\.1 200 .*"total": 4, "filled": 4,/s, 'the job answers when done');
$p = progress();
is(join(' ', map { "$_ " . ($p->{$_} // '-') } qw(total done filled)),
   'total 4 done 4 filled 4', 'GET /warm: done');
ok(!$p->{running}, 'not running');
is(origin_peak(), 1, 'the origin saw one at a time');

for my $c (0, 65, -1, 'x') {
    my $r = warm("/c/1\n", "?concurrency=$c");
    is($r->{status}, 400, "concurrency=$c is refused");
    like($r->{body}, qr/"error": "concurrency must be 1 to 64"/, 'with a JSON error');
}
is(counts(json_of(warm("/c/1\n", '?concurrency=64'))),
   'total 1 filled 1 hits 0 passed 0 failed 0 concurrency 64', 'concurrency=64 is fine');
my $r = warm('');
is(counts(json_of($r)), 'total 0 filled 0 hits 0 passed 0 failed 0 concurrency 8',
   'an empty list: nothing to do');
$r = http_request('DELETE', '/admin/warm');
is($r->{status}, 405, 'DELETE /warm: 405');
is($r->{headers}{allow}, 'GET, HEAD, POST', 'with Allow');
is(origin_total(), 5, 'the origin saw the four and /c/1');
--- no_error_log
[error]
[alert]
[crit]



=== TEST 4: two nodes: a warm on A fills Redis, and B serves every URI from it
--- check
start_second_nginx(warm_server());
my @uris = map { "/two/$_" } 1 .. 20;
my $r = warm(join("\n", @uris) . "\n", '?concurrency=4');
is(counts(json_of($r)), 'total 20 filled 20 hits 0 passed 0 failed 0 concurrency 4',
   'A filled 20') or diag($r->{body});
ok(wait_for(sub { redis('EXISTS', map { "cg:$_" } @uris) == 20 }, 5 * slow(),
            'the keys'), 'into Redis');
my @res = map { http_get($_, port => $ENV{TEST_NGINX_SERVER_PORT2}) } @uris;
is(scalar(grep { guard($_) eq 'HIT l2' } @res), 20, 'B: 20 hits from Redis')
    or diag(tally(\@res));
$r = warm(join("\n", @uris) . "\n", '', port => $ENV{TEST_NGINX_SERVER_PORT2});
is(json_of($r)->{hits}, 20, 'a warm on B finds them all cached');
is(origin_total(), 20, 'the origin saw each URI once');
--- no_error_log
[error]
[alert]
[crit]



=== TEST 5: the admin request's body, cookies and credentials never reach the origin; an error nginx answers itself is counted once and the concurrency holds; an internal redirect does not hang the job
--- check
my $r = warm("/w/secret1\n/w/secret2\n", '?concurrency=1',
             headers => { Authorization => 'Basic YWRtaW46c2VjcmV0',
                          Cookie => 'session=admin' });
is(counts(json_of($r)), 'total 2 filled 2 hits 0 passed 0 failed 0 concurrency 1',
   'with Authorization and a cookie on the admin request, both URIs were filled');
my $last = origin_last_request('/w/secret2');
is($last->{method}, 'GET', 'the origin got a GET');
ok(!exists $last->{headers}{authorization}, 'without the admin credentials');
ok(!exists $last->{headers}{cookie}, 'without the admin cookie');
ok(!exists $last->{headers}{'content-length'}, 'without a Content-Length');
is($last->{body} // '', '', 'and without the list of URIs as its body');

# a variable the admin request computed is not the warm-up's
$r = warm("/hx/1\n", '', headers => { Authorization => 'Basic YWRtaW46c2VjcmV0' });
is(json_of($r)->{filled}, 1, '/hx/1 filled');
ok(!exists origin_last_request('/hx/1')->{headers}{'x-auth'},
   '$http_authorization is empty in the warm-up, not the admin request\'s');

# the default key ($scheme://$host$request_uri) is each URI's own
$r = warm("/d/1\n/d/2?x=1\n");
is(counts(json_of($r)), 'total 2 filled 2 hits 0 passed 0 failed 0 concurrency 8',
   'two URIs under the default key: two fills');
# (a fill's SET goes out after its answer: wait for it)
ok(stored('cg:http://localhost/d/1'), 'stored under its own $request_uri');
ok(stored('cg:http://localhost/d/2?x=1'), 'with its arguments');

# /dead/ proxies to a closed port: nginx answers 502 itself
$r = warm(join('', map { "/dead/$_\n" } 1 .. 6), '?concurrency=2');
is(counts(json_of($r)), 'total 6 filled 0 hits 0 passed 0 failed 6 concurrency 2',
   'six 502s nginx answered itself: six failures, each counted once');

# /idx/ redirects internally (index) to a file that is not there
$r = warm("/idx/\n/w/after\n", '', timeout => 20);
is($r->{status}, 200, 'a URI with an internal redirect does not hang the job');
is(json_of($r)->{total}, 2, 'both URIs done');
--- no_error_log
[alert]
[crit]



=== TEST 6: each URI's memory is freed when it is done: 1,000 URIs with 64 KiB bodies raise the worker's peak RSS by far less than their 62.5 MiB (88 MiB before)
--- timeout: 300
--- check
my ($pid) = worker_pids();
my $status = sub {
    open my $fh, '<', "/proc/$pid/status" or die "/proc/$pid/status: $!";
    return { map { /^(\w+):\s+(\d+) kB/ ? ($1, $2) : () } <$fh> };
};
http_get('/mem/0?size=65536');
my $before = $status->();
my $r = warm(join('', map { "/mem/$_?size=65536\n" } 1 .. 1000), '',
             timeout => 300);
is(counts(json_of($r)), 'total 1000 filled 1000 hits 0 passed 0 failed 0 concurrency 8',
   '1,000 URIs of 64 KiB filled') or diag($r->{body});
is(origin_total(), 1001, 'the origin saw each once');
SKIP: {
    skip 'RSS under valgrind means nothing', 1 if $ENV{TEST_NGINX_USE_VALGRIND};
    my $grown = $status->()->{VmHWM} - $before->{VmRSS};
    note("worker RSS: $before->{VmRSS} kB before, peak "
         . ($before->{VmRSS} + $grown) . " kB");
    ok($grown < 32 * 1024, "the peak RSS grew by $grown kB, under 32 MiB");
}
--- no_error_log
[error]
[alert]
[crit]



=== TEST 7: a warm-up of a stale key fills it in place: no refresh subrequest outlives the URI's pool, and the job ends
--- user_files
>>> p.lua
return { key = "$uri", ttl = 1, jitter = 0, l1 = { ttl = 60 },
         stale = { while_revalidate = 60 } }
>>> h.lua
return { key = "$host$uri", ttl = 60, jitter = 0 }
--- check
http_get('/ws');
ok(stored('cg:/ws'), 'filled');
# the entry's ttl (1 s) must pass: that wait is the point
sleep 1.3;
origin_set('/ws', delay => 1);
my $r = warm("/ws\n/ws2\n", '', timeout => 20);
is($r->{status}, 200, 'the warm-up answers');
my $j = json_of($r);
is("$j->{total} $j->{filled}", '2 2', 'both filled') or diag($r->{body});
is(origin_count('/ws'), 2, 'the stale key was fetched again, once');
my $g = http_get('/ws');
like(guard($g), qr/^HIT/, 'then served from the cache');
like($g->{body}, qr/"n":2,/, 'with the new answer');
--- no_error_log
[error]
[alert]
