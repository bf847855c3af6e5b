# cache_guard_status: the JSON status with exact counters after a known
# sequence of requests, the HTML dashboard (self-contained: nothing
# loaded from elsewhere), and the dashboard running in headless Chromium:
# it polls the JSON, draws every chart, follows new traffic, and shows an
# error banner while polls fail.  The browser is driven over the DevTools
# protocol on a pipe (Test::CacheGuard::Chromium), in real time; a
# screenshot is left in the server root.
use lib 't/lib';
use Test::CacheGuard 'no_plan';
use Test::CacheGuard::Preset;
use Test::CacheGuard::Status;
use Test::CacheGuard::Util qw(slurp);
use Test::CacheGuard::Assert;
use Test::CacheGuard::Chromium;

use JSON::PP;
use List::Util qw(first);
use Time::HiRes qw(time);

sub page_file {
    return "$ENV{TEST_NGINX_ROOT}/ngx_module/ngx_http_cache_guard_dashboard.html";
}

sub no_chromium {
    return "$Test::CacheGuard::Chromium::BINARY is missing: the dashboard "
        . 'is not run in a browser (apt-get install chromium)';
}

guard_preamble(
    zone       => '4m',
    redis      => 'timeout=1s',
    config     => <<'CONF' . guard_location(policy => 'api.lua', pass => 'http://127.0.0.1:$TEST_NGINX_ORIGIN_PORT'),
    location = /status {
        cache_guard_status;
    }
    # the page is served, every poll of its JSON fails
    location = /broken {
        if ($arg_format = json) {
            return 502;
        }
        cache_guard_status;
    }
    # no guarded request from the browser but ours
    location = /favicon.ico {
        return 204;
    }
CONF
    user_files => <<'LUA',
>>> api.lua
return {
  name = "api", key = "$uri", ttl = 300, jitter = 0,
  early_refresh = false,
  alerts = { hit_ratio_below = 0.9, min_requests = 1 },
}
LUA
);

# MISS, HIT on /a, MISS on /b: what every block starts from.
sub known_traffic {
    my @got = map { guard(http_get($_)) } '/a', '/a', '/b';
    is("@got[0, 2]", 'MISS MISS', 'the first /a and /b are misses');
    like($got[1], qr/^HIT/, 'the second /a is a hit');
    return;
}

sub policy {
    my ($status, $name) = @_;
    my ($p) = grep { $_->{name} eq $name } @{$status->{policies}};
    return $p;
}

sub near { return abs($_[0] - $_[1]) < 1e-5 }

sub browser {
    return Test::CacheGuard::Chromium->new(
        log => servroot() . '/logs/chromium.log', timeout => 60);
}

sub url { return "http://127.0.0.1:$ENV{TEST_NGINX_SERVER_PORT}$_[0]" }

# Every chart's data-points: "chart-rate=12 ...".
sub points_js {
    return q{Array.from(document.querySelectorAll('canvas'))
        .map(function (c) { return c.id + '=' + c.dataset.points; })
        .join(' ')};
}

run_tests();

__DATA__

=== TEST 1: JSON: exact counters after MISS, HIT, MISS; the schema's fields
--- check
known_traffic();
my $r = http_get('/status');
is($r->{status}, 200, 'GET /status');
like($r->{headers}{'content-type'}, qr{^application/json\b},
     'without Accept: text/html the answer is JSON');
my $s = eval { decode_json($r->{body}) };
ok($s, 'it parses') or diag($@, $r->{body});

like($s->{version}, qr/^\d+\.\d+\.\d+$/, 'version');
ok(abs($s->{time} - time) < 5, "time is now ($s->{time})");
# the zone was made after this test started
ok(defined $s->{uptime} && $s->{uptime} =~ /^\d+$/
   && $s->{uptime} <= time - $^T,
   'uptime of the zone: whole seconds, at most the test\'s age ('
   . ($s->{uptime} // 'missing') . ')');

is(scalar @{$s->{policies}}, 1, 'one policy');
my $p = policy($s, 'api');
ok($p, 'named after the policy file\'s name') or diag(explain($s->{policies}));
is_deeply($p->{requests}, {
    HIT => 1, MISS => 2, STALE => 0, UPDATING => 0, NEGATIVE => 0,
    BLOOM_REJECT => 0, INVALID => 0, BYPASS => 0, LOCK_TIMEOUT => 0,
    FALLBACK => 0,
}, 'requests by status: MISS 2, HIT 1, nothing else');
is($p->{requests_total}, 3, 'requests_total');
is($p->{hits}{l1} + $p->{hits}{l2}, 1, 'one hit, from L1 or L2');
ok(near($p->{hit_ratio}, 1 / 3), "hit_ratio 1/3 ($p->{hit_ratio})");
is($p->{window}{seconds}, 60, 'window: 60 s (the default)');
is($p->{window}{requests}, 3, 'window: the three requests');
ok(near($p->{window}{hit_ratio}, 1 / 3), 'window: hit_ratio 1/3');
is($p->{window}{error_rate}, 0, 'window: no errors');
is($p->{responses_5xx}, 0, 'no 5xx');
is_deeply($p->{origin}, { fetches => 2, errors => 0, inflight => 0 },
          'origin: two fetches, none in flight');
is(origin_total(), 2, 'as the origin counted');
is_deeply($p->{lock}, { waits => 0, timeouts => 0 }, 'no lock waits');
is($p->{early_refreshes}, 0, 'no early refresh');

my $l = $p->{latency};
is($l->{count}, 3, 'latency: three requests measured');
my @b = @{$l->{buckets}};
is_deeply($b[-1], ['+Inf', 3], 'latency: the +Inf bucket holds them all');
ok(!grep({ $b[$_][0] >= $b[$_ + 1][0] || $b[$_][1] > $b[$_ + 1][1] }
         0 .. $#b - 2)
   && $b[-2][1] <= 3,
   'latency: le increasing, counts cumulative') or diag(explain(\@b));
# each request lies within its bucket: (the previous le, its le]
my ($low, $high) = (0, 0);
for my $i (0 .. $#b) {
    my $n = $b[$i][1] - ($i ? $b[$i - 1][1] : 0);
    next unless $n;
    $low += $n * ($i ? $b[$i - 1][0] : 0);
    $high = $b[$i][0] eq '+Inf' ? 9**9**9 : $high + $n * $b[$i][0];
}
ok(exists $l->{sum} && defined $l->{sum}
   && $l->{sum} > 0 && $l->{sum} > $low - 1e-6 && $l->{sum} <= $high + 1e-6,
   'latency: sum, within what the buckets allow ('
   . ($l->{sum} // 'missing') . " in ($low, $high])");
ok(defined $l->{p50} && defined $l->{p95} && defined $l->{p99}
   && 0 < $l->{p50} && $l->{p50} <= $l->{p95} && $l->{p95} <= $l->{p99}
   && $l->{p99} <= (first { $_->[1] == 3 } @b)->[0],
   '0 < p50 <= p95 <= p99 <= the le of the bucket that holds them all')
    or diag(explain($l));

my $br = $p->{breaker};
is("$br->{name} $br->{state} $br->{forced}", 'origin:api closed auto',
   'the origin breaker');
ok(exists $br->{$_}, "breaker: $_") for qw(enabled window requests failures
    min_requests failure_rate open_for half_open_requests opened since_ms
    inflight);

my $rd = $s->{redis};
is($rd->{address}, "127.0.0.1:$ENV{TEST_NGINX_REDIS_PORT}", 'redis: address');
is("$rd->{breaker}{name} $rd->{breaker}{state}", 'redis closed',
   'redis: its breaker');
ok($rd->{commands} >= 3, "redis: commands ($rd->{commands})");
is_deeply($rd->{errors}, { map { ($_ => 0) }
    qw(connect timeout lost protocol reply oversize breaker_open) },
    'redis: no errors, by kind');
ok($rd->{latency}{count} >= 3, 'redis: latency histogram');

is(scalar @{$s->{zones}}, 1, 'one zone');
my $z = $s->{zones}[0];
is("$z->{name} $z->{size}", 'main ' . 4 * 1024 * 1024, 'zone main, 4m');
is($z->{entries}, 2, 'two L1 entries: /a and /b');
ok($z->{bytes} > 0, 'their bytes');
is($z->{evictions}, 0, 'no eviction');
is_deeply($s->{filters}, [], 'no Bloom filter');

my @alerts = @{$s->{alerts}};
is(scalar @alerts, 1, 'one alert') or diag(explain(\@alerts));
is("$alerts[0]{alert} $alerts[0]{policy} $alerts[0]{threshold}",
   'hit_ratio_below api 0.9', 'hit ratio below the policy\'s 0.9');
ok(near($alerts[0]{value}, 1 / 3), 'at 1/3');

# Redis INFO is read every few seconds
my $info = wait_for(sub { status_json()->{redis}{info} }, 15, 'redis info');
ok($info, 'redis: INFO arrives');
ok($info->{used_memory} > 0 && $info->{connected_clients} >= 1,
   'redis: used memory, connected clients') or diag(explain($info));
ok(exists $info->{$_}, "redis info: $_") for qw(age mem_fragmentation_ratio
    evicted_keys expired_keys keyspace_hits keyspace_misses);
--- no_error_log
[error]
[alert]



=== TEST 2: ?format= overrides the Accept header both ways
--- request eval
["GET /status?format=html", "GET /status?format=json", "GET /status"]
--- more_headers eval
[undef, "Accept: text/html", "Accept: application/json"]
--- response_headers_like eval
["Content-Type: ^text/html",           # ?format=html: HTML
 "Content-Type: ^application/json",    # ?format=json with Accept: text/html
 "Content-Type: ^application/json"]    # Accept: application/json
--- check
ok(eval { decode_json(block_responses()->[1]{body}) },
   '?format=json with Accept: text/html: JSON that parses');
--- no_error_log
[error]
[alert]



=== TEST 3: HTML: with Accept: text/html, the dashboard, self-contained, byte for byte the file in ngx_module/
--- request
GET /status
--- more_headers
Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8
--- error_code: 200
--- response_headers_like
Content-Type: ^text/html
--- check
my $body = block_responses()->[0]{body};
like($body, qr/^<!DOCTYPE html>/i, 'an HTML page');
my $file = slurp(page_file());
ok($body eq $file, 'the embedded page is the file, unchanged by the build')
    or diag(sprintf 'served %d bytes, the file has %d, they differ from '
        . 'byte %d on: rebuild the module (make)', length $body, length $file,
        (grep { substr($body, $_, 1) ne substr($file, $_, 1) }
            0 .. length $file)[0]);
ok(length($body) < 40 * 1024, 'under 40 KB (' . length($body) . ' bytes)');
for my $ref ('src="http', "src='http", 'href="http', "href='http",
             '@import', '<link', 'url(', 'src="//', 'href="//') {
    ok(index(lc $body, $ref) < 0, "no external reference: no $ref");
}
like($body, qr/fetch\(location\.pathname \+ "\?format=json"/,
     'it polls its own URL with ?format=json');
ok($body =~ /id="chart-$_"/, "canvas chart-$_")
    for qw(hit-ratio rate latency origin breakers);
--- no_error_log
[error]
[alert]



=== TEST 4: Chromium: the page polls, draws every chart, follows new traffic
--- check
SKIP: {
    skip no_chromium(), 1 unless Test::CacheGuard::Chromium::available();
    known_traffic();
    my $b = browser();
    $b->navigate(url('/status'));
    is($b->js('document.contentType'), 'text/html',
       'the browser gets the page (its Accept has text/html)');
    ok($b->wait_for('+document.body.dataset.polls >= 2', 30),
       'it polled the JSON twice') or diag($b->js('document.body.outerHTML'));
    ok($b->wait_for(q{Array.from(document.querySelectorAll('canvas'))
        .every(function (c) { return +c.dataset.points > 0; })}, 20),
       'every chart has drawn points') or diag($b->js(points_js()));
    my %points = map { split /=/ } split ' ', $b->js(points_js());
    ok($points{"chart-$_"} > 0, "chart-$_: $points{qq{chart-$_}} points")
        for qw(hit-ratio rate latency origin breakers);
    is($b->js('document.body.dataset.requests'), 3,
       'data-requests: the three requests');

    http_get('/a') for 1 .. 3;
    http_get("/c$_") for 1 .. 2;
    ok($b->wait_for('document.body.dataset.requests === "8"', 20),
       'five more requests: the page shows 8')
        or diag('data-requests: ' . $b->js('document.body.dataset.requests'));
    is(policy(status_json(), 'api')->{requests_total}, 8, 'as the JSON says');
    is($b->js('document.getElementById("t-requests").textContent'), '8',
       'and the header');

    is($b->js('document.querySelectorAll("#policies tbody tr").length'), 1,
       'the policy table has the policy');
    is($b->js('document.querySelectorAll("#breaker-badges .badge").length'), 2,
       'two breaker badges: origin:api and redis');
    like($b->js('document.getElementById("breaker-badges").textContent'),
         qr/origin:api: closed.*redis: closed/, 'both closed');
    like($b->js('document.getElementById("alerts").textContent'),
         qr/hit ratio below/i, 'the hit ratio alert is shown');
    is($b->js('getComputedStyle(document.getElementById("error")).display'),
       'none', 'no error banner');

    $b->wait_for('+document.body.dataset.polls >= 5', 20);
    my $png = $b->screenshot(servroot() . '/dashboard.png');
    ok(-s $png > 10_000, 'a screenshot');
    diag("dashboard screenshot: $png");
    is_deeply($b->js('window.__errors'), [], 'no JavaScript error');
    $b->quit;
}
--- no_error_log
[error]
[alert]



=== TEST 5: Chromium: polls that fail show the error banner, and polling goes on
--- check
SKIP: {
    skip no_chromium(), 1 unless Test::CacheGuard::Chromium::available();
    my $b = browser();
    $b->navigate(url('/broken'));
    ok($b->wait_for(q{getComputedStyle(document.getElementById('error')).display
                      === 'block'}, 20), 'the error banner shows');
    like($b->js('document.getElementById("error").textContent'),
         qr/HTTP 502/, 'with the reason');
    my $log = servroot() . '/logs/access.log';
    my $polls = sub {
        return scalar(() = slurp($log) =~ m{GET /broken\?format=json }g);
    };
    ok(wait_for(sub { $polls->() >= 3 }, 20, 'three polls'),
       'it goes on polling (' . $polls->() . ' polls)');
    is($b->js('document.body.dataset.polls'), '0', 'none succeeded');
    is_deeply($b->js('window.__errors'), [], 'no JavaScript error');
    $b->quit;
}
--- no_error_log
[error]
[alert]
