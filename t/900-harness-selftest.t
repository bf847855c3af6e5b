# Self-test of the test harness (t/lib/Test/CacheGuard.pm, t/lib/origin.pl,
# t/lib/redis-ctl): plain nginx features only, our module is not loaded.

BEGIN { $ENV{TEST_NGINX_NO_MODULE} = 1 }

use lib 't/lib';
use Test::CacheGuard 'no_plan';
use FindBin;
use Time::HiRes qw(time);

# Exit status of t/lib/redis-ctl with these arguments.
sub redis_ctl {
    my @args = @_;
    return system("$FindBin::Bin/lib/redis-ctl @args >/dev/null") >> 8;
}

run_tests();

__DATA__

=== TEST 1: return 200, exact body, headers present and absent
--- config
    location /t {
        add_header X-Port $server_port;
        return 200 "hello";
    }
--- request
GET /t
--- error_code: 200
--- response_body chomp
hello
--- response_headers
Content-Type: text/plain
X-Port: $TEST_NGINX_SERVER_PORT
!X-Cache
--- response_headers_like
Server: ^nginx
--- no_error_log
[error]
[alert]



=== TEST 2: several requests through proxy_pass; the origin counts exactly
--- config
    location / {
        proxy_pass http://127.0.0.1:$TEST_NGINX_ORIGIN_PORT;
    }
--- request eval
["GET /a", "GET /a?x=1", "GET /b", "HEAD /a"]
--- error_code eval
[200, 200, 200, 200]
--- response_body eval
['{"path":"/a","n":1,"status":200}', '{"path":"/a","n":2,"status":200}',
 '{"path":"/b","n":1,"status":200}', '']
--- response_headers
Content-Type: application/json
--- check
    is(origin_count('/a'), 3, 'three requests for /a (query excluded)');
    is(origin_count('/b'), 1, 'one request for /b');
    is(origin_count('/c'), 0, 'none for /c');
    is(origin_total(), 4, 'four in total');
    my @log = origin_log();
    is(scalar @log, 4, 'four log entries');
    is($log[1]{target}, '/a?x=1', 'log keeps the query string');
    is($log[3]{method}, 'HEAD', 'log has the method');
    ok($log[0]{time} > 1e9 && $log[0]{time} <= $log[3]{time},
       'log entries have increasing timestamps');
    is(scalar @{block_responses()}, 4, 'block_responses has the 4 responses');
--- no_error_log
[error]



=== TEST 3: the origin is reset between blocks
--- config
    location / {
        proxy_pass http://127.0.0.1:$TEST_NGINX_ORIGIN_PORT;
    }
--- request
GET /a
--- response_body chomp
{"path":"/a","n":1,"status":200}



=== TEST 4: must_die with a bad directive, matched against stderr
--- config
    location /t {
        no_such_directive on;
    }
--- must_die
--- error_log
unknown directive "no_such_directive"
--- no_error_log
[alert]



=== TEST 5: error_log with strings, regexes and arrays; only this block's log
--- config
    location /down {
        proxy_pass http://127.0.0.1:1;
    }
--- request
GET /down
--- error_code: 502
--- error_log eval
["[error]", qr/connect\(\) failed \(111: Connection refused\)/]
--- no_error_log eval
qr/\[emerg\]|\[alert\]/
--- check
    like(error_log_since_block(), qr/upstream: "http:\/\/127\.0\.0\.1:1\/down"/,
         'error_log_since_block() has the upstream error');



=== TEST 6: the previous block's errors are not in this block's log
--- config
    location /t { return 204; }
--- request
GET /t
--- error_code: 204
--- response_body
--- no_error_log
Connection refused
[error]



=== TEST 7: response_headers per request, origin extra headers, body regex
--- config
    location / {
        proxy_pass http://127.0.0.1:$TEST_NGINX_ORIGIN_PORT;
    }
--- request eval
["GET /h?hdr=X-Test:one&hdr=Set-Cookie:a%3D1",
 "GET /h?hdr=X-Test:two&ct=text/html&status=404",
 "GET /h?size=100"]
--- error_code eval
[200, 404, 200]
--- response_headers eval
["X-Test: one\nSet-Cookie: a=1", "X-Test: two\n!Set-Cookie\nContent-Type: text/html", "!X-Test\nContent-Length: 100"]
--- response_headers_like eval
["X-Test: ^o", "X-Test: ^tw", undef]
--- response_body_like eval
[qr/"n":1/, qr/"status":404/, '^\{"path":"/h","n":3,"status":200\} {68}$']



=== TEST 8: more_headers and a POST body reach the origin
--- config
    location / {
        proxy_pass http://127.0.0.1:$TEST_NGINX_ORIGIN_PORT;
    }
--- more_headers
X-Client: abc
Cookie: session=1
--- request
POST /post
hello body
--- error_code: 200
--- check
    my $req = origin_last_request('/post');
    is($req->{method}, 'POST', 'origin saw a POST');
    is($req->{body}, 'hello body', 'origin got the body');
    is($req->{headers}{'x-client'}, 'abc', 'origin got X-Client');
    is($req->{headers}{cookie}, 'session=1', 'origin got Cookie');
    is($req->{headers}{host}, "127.0.0.1:$ENV{TEST_NGINX_ORIGIN_PORT}",
       'origin got the proxied Host');
    is(origin_last_request('/never'), undef, 'no request for /never');



=== TEST 9: user_files under $TEST_NGINX_HTML_DIR
--- config
    location /files/ {
        alias $TEST_NGINX_HTML_DIR/;
    }
--- user_files
>>> a.txt
file a
>>> sub/dir/b.json
{"b": true}
--- request eval
["GET /files/a.txt", "GET /files/sub/dir/b.json"]
--- response_body eval
["file a\n", "{\"b\": true}\n"]
--- check
    ok(-f "$ENV{TEST_NGINX_HTML_DIR}/sub/dir/b.json", 'file written');
    is($ENV{TEST_NGINX_HTML_DIR}, servroot() . '/html', 'HTML_DIR is servroot/html');



=== TEST 10: origin behaviours: status, delay, size, ct, close, set/clear
--- config
    location / {
        proxy_pass http://127.0.0.1:$TEST_NGINX_ORIGIN_PORT;
        proxy_read_timeout 10s;
    }
--- check
    my $r = http_get('/d?delay=0.5&status=201&ct=text/x-test&size=40');
    is($r->{status}, 201, 'status from the query');
    ok($r->{elapsed} >= 0.5, "delayed at least 0.5 s ($r->{elapsed})");
    is($r->{headers}{'content-type'}, 'text/x-test', 'ct from the query');
    is(length $r->{body}, 40, 'size from the query');
    like($r->{body}, qr/^\{"path":"\/d","n":1,"status":201\} +$/,
         'padded JSON body');

    is(http_get('/d?size=10')->{body}, '{"path":"/', 'short size cuts the body');

    origin_set('/s', status => 503, hdr => ['X-A:1', 'X-B:2']);
    $r = http_get('/s?status=200');
    is($r->{status}, 503, 'per-path setting wins over the query');
    is($r->{headers}{'x-a'} . $r->{headers}{'x-b'}, '12', 'hdr list from set');
    origin_clear('/s');
    is(http_get('/s')->{status}, 200, 'cleared');

    origin_set('/gone', close => 1);
    is(http_get('/gone')->{status}, 502, 'close: nginx answers 502');
    is(origin_count('/gone'), 1, 'the closed request was counted');

    $r = http_get('/slow?delay=3', timeout => 0.5);
    is($r->{status}, 0, 'client timeout: no status');
    like($r->{error}, qr/timeout/, 'client timeout reported');
--- error_log
upstream prematurely closed connection



=== TEST 11: chunked responses are decoded
--- config
    location / {
        sub_filter '"n"' '"N"';
        sub_filter_types application/json;
        proxy_pass http://127.0.0.1:$TEST_NGINX_ORIGIN_PORT;
    }
--- request
GET /chunked
--- response_headers
Transfer-Encoding: chunked
!Content-Length
--- response_body chomp
{"path":"/chunked","N":1,"status":200}



=== TEST 12: upstream keep-alive connections to the origin
--- http_config
    upstream origin {
        server 127.0.0.1:$TEST_NGINX_ORIGIN_PORT;
        keepalive 4;
    }
--- config
    location / {
        proxy_pass http://origin;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
    }
--- request eval
["GET /k?size=3000", "GET /k?delay=0.1", "HEAD /k", "GET /k?status=404&size=5", "GET /k"]
--- error_code eval
[200, 200, 200, 404, 200]
--- response_body eval
[undef, '{"path":"/k","n":2,"status":200}', '', '{"pat', '{"path":"/k","n":5,"status":200}']
--- check
    is(length block_responses()->[0]{body}, 3000, 'sized body');
    is(origin_count('/k'), 5, 'five requests over kept-alive connections');
--- no_error_log
[error]



=== TEST 13: pipelined requests on one connection
--- config
    location /p { return 200 "p:$request_uri"; }
--- pipelined_requests eval
["GET /p1", "GET /p2", "HEAD /p3"]
--- error_code eval
[200, 200, 200]
--- response_body eval
["p:/p1", "p:/p2", ""]



=== TEST 14: redis helpers: binary values, replies, kill and restart
--- config
    location /t { return 200; }
--- init
    is(redis('DBSIZE'), 0, 'redis is flushed at the start of a block');
--- check
    my $binary = join '', map { chr } 0 .. 255, 0, 13, 10;
    is(redis('SET', 'bin', $binary), 'OK', 'SET');
    is(redis('GET', 'bin'), $binary, 'binary-safe GET');
    is(redis('GET', 'missing'), undef, 'nil is undef');
    is(redis('INCR', 'n'), 1, 'integer reply');
    is_deeply(redis('MGET', 'n', 'missing'), ['1', undef], 'array reply');
    ok(!eval { redis('NO_SUCH_COMMAND'); 1 }, 'an error reply dies');
    like($@, qr/^redis error: ERR/, 'with the error message');
    redis('SET', 'big', 'x' x 1_000_000);
    is(length redis('GET', 'big'), 1_000_000, '1 MB value');

    ok(redis_stop(), 'redis_stop');
    ok(!redis_running(), 'not running after redis_stop');
    ok(!eval { redis('PING'); 1 }, 'commands fail while it is down');
    is(redis_ctl('status'), 3, 'redis-ctl status: not running');
    is(redis_ctl('start'), 0, 'redis-ctl start');
    is(redis_ctl('status'), 0, 'redis-ctl status: running');
    ok(redis_stop(), 'redis_stop of the server redis-ctl started');
    ok(redis_start(), 'redis_start');
    ok(redis_running(), 'running again');
    is(redis('GET', 'bin'), undef, 'no persistence across restarts');

    ok(redis_pause(), 'redis_pause');
    {
        local $Test::CacheGuard::Redis::TIMEOUT = 0.5;
        ok(!eval { redis('PING'); 1 }, 'a paused redis does not answer');
    }
    ok(redis_resume(), 'redis_resume');
    is(redis('PING'), 'PONG', 'answers after resume');



=== TEST 15: redis() is a session: SELECT and AUTH carry over; cleanup
--- init
    redis('CONFIG', 'SET', 'requirepass', 'secret');
--- check
    ok(redis_running(), 'a server asking for a password is running');
    is(redis('PING'), 'PONG', 'the session opened before requirepass is in');
    redis('SELECT', 5);
    redis('SET', 'in5', 'five');
    is(redis('GET', 'in5'), 'five', 'SELECT carries over to the next call');
--- cleanup
    redis('CONFIG', 'SET', 'requirepass', '');



=== TEST 16: each block starts a new redis session in db 0
--- check
    redis('SET', 'here', 1);
    redis('SELECT', 0);
    is(redis('EXISTS', 'here'), 1, 'the block started in db 0');
    redis('SELECT', 5);
    is(redis('EXISTS', 'in5'), 0, 'all dbs were flushed');



=== TEST 17: a stopped redis is running again in the next block
--- init
    redis_stop();
--- check
    ok(!redis_running(), 'stopped inside the block');



=== TEST 18: (continued) redis is back
--- config
    location /t { return 200; }
--- check
    ok(redis_running(), 'the harness restarted redis');



=== TEST 19: 200 concurrent requests through nginx reach the origin at once
--- config
    location / {
        proxy_pass http://127.0.0.1:$TEST_NGINX_ORIGIN_PORT;
        proxy_read_timeout 30s;
    }
--- check
    my $start = time;
    my $responses = http_concurrent(200, '/slow?delay=1');
    my $elapsed = time - $start;
    is(scalar @$responses, 200, '200 responses');
    is(scalar(grep { $_->{status} == 200 } @$responses), 200, 'all 200 OK');
    is(origin_peak(), 200, 'the origin had 200 requests in flight at once');
    is(origin_count('/slow'), 200, 'the origin counted 200');
    is(origin_inflight(), 0, 'none in flight any more');
    ok($elapsed < 20, "concurrent, not serial ($elapsed s)");
    my %n = map { $_->{body} =~ /"n":(\d+)/ ? ($1 => 1) : () } @$responses;
    is(scalar keys %n, 200, 'each response has its own count');

    my $mixed = http_concurrent(3, sub {
        my ($i) = @_;
        return $i == 2 ? { method => 'POST', path => '/m-post', body => 'x' }
                       : "/m?i=$i";
    });
    is(join(',', map { $_->{status} } @$mixed), '200,200,200', 'coderef');
    is(origin_count('/m'), 2, 'coderef paths');
    is(origin_last_request('/m-post')->{body}, 'x',
       'POST body in a concurrent batch');
--- timeout: 40
--- no_error_log
[error]



=== TEST 20: 1000 concurrent requests against the origin
--- check
    my $responses = http_concurrent(1000, '/many?delay=1',
        port => $ENV{TEST_NGINX_ORIGIN_PORT}, timeout => 60);
    is(scalar(grep { $_->{status} == 200 } @$responses), 1000,
       '1000 responses with status 200')
        or diag(join "\n", map { $_->{error} // () } @$responses[0 .. 9]);
    is(origin_peak(), 1000, 'the origin held 1000 requests at once');



=== TEST 21: main_config directives replace the defaults; worker_pids: every worker is up once nginx started
--- skip_valgrind
--- main_config
    worker_processes 4;
--- config
    location /t { return 200; }
--- check
    # no wait: the harness returns from the start once all four run
    my @workers = worker_pids();
    is(scalar @workers, 4, 'four workers');
    ok(!grep({ $_ == nginx_pid() } @workers), 'workers are not the master');



=== TEST 22: nginx_reload serves the new configuration with new workers
--- skip_valgrind
--- config
    location /gen { return 200 "gen1"; }
--- request
GET /gen
--- response_body chomp
gen1
--- check
    my @before = worker_pids();
    my $file = servroot() . '/conf/nginx.conf';
    open my $in, '<', $file or die $!;
    my $conf = do { local $/; <$in> };
    close $in;
    $conf =~ s/"gen1"/"gen2"/;
    open my $out, '>', $file or die $!;
    print {$out} $conf;
    close $out;
    ok(nginx_reload(), 'nginx_reload');
    my @after = worker_pids();
    ok(@after && !grep({ my $old = $_; grep { $_ == $old } @after } @before),
       'new workers');
    is(http_get('/gen')->{body}, 'gen2', 'new configuration served');
--- no_error_log
[emerg]



=== TEST 23: nginx_reload waits for every new worker: a reload from 2 to 3 workers
--- skip_valgrind
--- main_config
    worker_processes 2;
--- config
    location /t { return 200; }
--- check
    my @before = worker_pids();
    is(scalar @before, 2, 'two workers once started');
    my $file = servroot() . '/conf/nginx.conf';
    open my $in, '<', $file or die $!;
    my $conf = do { local $/; <$in> };
    close $in;
    $conf =~ s/worker_processes 2;/worker_processes 3;/ or die "no workers\n";
    open my $out, '>', $file or die $!;
    print {$out} $conf;
    close $out;
    ok(nginx_reload(), 'nginx_reload');
    my @after = worker_pids();
    is(scalar @after, 3, 'three serving workers when it returns');
    my %old = map { ($_ => 1) } @before;
    ok(!grep({ $old{$_} } @after), 'all of them new');
--- no_error_log
[emerg]



=== TEST 24: worker_processes auto: as many workers as CPUs online
--- skip_valgrind
--- main_config
    worker_processes auto;
--- config
    location /t { return 200; }
--- check
    chomp(my $cpus = `getconf _NPROCESSORS_ONLN`);
    ok($cpus =~ /^\d+$/ && $cpus > 0, "$cpus CPUs online");
    is(scalar(() = worker_pids()), $cpus, 'one worker per CPU');



=== TEST 25: a second nginx instance, stopped at the end of the block
--- http_config
    map $server_port $node { default "node-$server_port"; }
--- config
    location /who {
        proxy_pass http://127.0.0.1:$TEST_NGINX_ORIGIN_PORT/who?from=$node;
    }
    location / { return 404; }
--- check
    start_second_nginx(<<'CONF');
        location /who {
            proxy_pass http://127.0.0.1:$TEST_NGINX_ORIGIN_PORT/who?from=$node;
        }
        location /name { return 200 "second"; }
CONF
    my $port2 = $ENV{TEST_NGINX_SERVER_PORT2};
    is(http_get('/name', port => $port2)->{body}, 'second', 'second serves');
    is(http_get('/name')->{status}, 404, 'first is another server');
    http_get('/who');
    http_get('/who', port => $port2);
    is(origin_count('/who'), 2, 'both reach the same origin');
    my @froms = map { $_->{target} } origin_log();
    is_deeply([sort @froms],
        ["/who?from=node-$ENV{TEST_NGINX_SERVER_PORT}", "/who?from=node-$port2"],
        'the second instance uses the block http_config');
    ok(nginx_pid('second') && nginx_pid('second') != nginx_pid(), 'own pid');
    is(servroot('second'), servroot() . '2', 'own servroot');
    like(error_log_since_block('second'), qr/\S/, 'own error log');
--- no_error_log
[error]



=== TEST 26: (continued) the second instance is gone
--- config
    location /t { return 200; }
--- check
    ok(!eval { nginx_pid('second'); 1 }, 'no second nginx any more');
    is(http_get('/', port => $ENV{TEST_NGINX_SERVER_PORT2})->{status}, 0,
       'nothing listens on the second port');



=== TEST 27: helpers: wait_for, http errors
--- config
    location / {
        proxy_pass http://127.0.0.1:$TEST_NGINX_ORIGIN_PORT;
    }
--- check
    my $t0 = time;
    ok(!wait_for(sub { 0 }, 0.2), 'wait_for returns false on timeout');
    ok(time - $t0 < 5, 'and returns soon after the timeout');
    is(wait_for(sub { 42 }, 1), 42, 'wait_for returns the value');
    my $n = 0;
    ok(wait_for(sub { ++$n >= 3 }, 5), 'wait_for polls');
    ok(!wait_for(sub { die "boom\n" }, 0.1), 'exceptions count as false');

    my $r = http_get('/x', port => 1);
    is($r->{status}, 0, 'connection refused: status 0');
    like($r->{error}, qr/refused|failed|closed/i, 'with an error');

    http_get('/bg?delay=0.3', timeout => 0.1);
    ok(wait_for(sub { origin_count('/bg') == 1 }, 10, 'the origin request'),
       'wait_for an origin condition');



=== TEST 28: wait and timeout sections
--- config
    location / {
        proxy_pass http://127.0.0.1:$TEST_NGINX_ORIGIN_PORT;
    }
--- request
GET /w?delay=0.2
--- timeout: 5
--- wait: 0.1
--- error_code: 200



=== TEST 29: more_headers eval: one set of headers per request
--- config
    location / {
        add_header X-Got "$http_x_client|$http_cookie" always;
        return 200;
    }
--- request eval
["GET /a", "GET /b", "GET /c"]
--- more_headers eval
["X-Client: one", "X-Client: two\nCookie: c=2", undef]
--- response_headers eval
["X-Got: one|", "X-Got: two|c=2", "X-Got: |"]
