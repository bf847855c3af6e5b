# Metrics: the Prometheus exposition of cache_guard_metrics read by a
# strict parser of the text format 0.0.4 (Test::CacheGuard::Prom), its
# counters checked against what the requests were (their X-Guard header)
# and what reached the test origin, the JSON of cache_guard_status agreeing
# with them, counters kept across reloads, Redis' own numbers and failures,
# and the status page's alerts.
use lib 't/lib';
use Test::CacheGuard 'no_plan';
use Test::CacheGuard::Preset;
use Test::CacheGuard::Status;
use Test::CacheGuard::Assert;
use Test::CacheGuard::Prom;
use Test::CacheGuard::FakeRedis;

use JSON::PP qw(decode_json);
use List::Util qw(first min);
use POSIX ();

our @STATUSES = qw(HIT MISS STALE UPDATING NEGATIVE BLOOM_REJECT INVALID
                   BYPASS LOCK_TIMEOUT FALLBACK);
our @LES = qw(0.0001 0.00025 0.0005 0.001 0.0025 0.005 0.01 0.025 0.05 0.1
              0.25 0.5 1 2.5 5 10 +Inf);

# Every block: a zone, Redis, a Bloom filter holding the ids 1 to 100, the
# exposition, the status page, the admin API, /u/ID guarded by users.lua
# (with the filter) and everything else by p.lua (from the block).
guard_preamble(
    zone             => '4m',
    redis            => 'timeout=1s',
    http_config      => <<'CONF',
    cache_guard_bloom users capacity=1000 error_rate=0.01
                      file=$TEST_NGINX_HTML_DIR/users.txt;
CONF
    upstream         => 1,
    config_after     => <<'CONF'
    location = /metrics {
        cache_guard_metrics;
    }
    location = /status {
        cache_guard_status;
    }
CONF
        . admin_location()
        . guard_location(path => '~ ^/u/(\d+)$', policy => 'users.lua')
        . guard_location(extra => 'proxy_read_timeout 5s;'),
    user_files_after => ">>> users.lua\n"
        . "return { key = \"\$uri\", bloom = { filter = \"users\", item = \"\$1\" } }\n"
        . ">>> users.txt\n" . join('', map { "$_\n" } 1 .. 100),
);

# GET /metrics, parsed (dies unless 200).
sub metrics {
    my $r = http_get('/metrics');
    die "GET /metrics: $r->{status} " . ($r->{error} // '') . "\n"
        unless $r->{status} == 200;
    my $p = prom_parse($r->{body});
    $p->{response} = $r;
    return $p;
}

sub policy_json {
    my ($st, $name) = @_;
    return first { $_->{name} eq $name } @{$st->{policies}};
}

# X-Guard of each response -> ({STATUS => n}, {l1 => n, l2 => n}); the
# levels of the answers counted as hits (HIT and NEGATIVE).
sub expected {
    my (%status, %level);
    for my $r (@_) {
        my ($s, $l) = split ' ', guard($r);
        $status{$s // '-'}++;
        $level{$l}++ if defined $l && ($s eq 'HIT' || $s eq 'NEGATIVE');
    }
    return (\%status, \%level);
}

# "name{a="1",b="2"}" => value for every counter (and histogram part),
# except the Redis ones that the INFO ticks keep moving.
sub counters {
    my ($p) = @_;
    my %c;
    for my $name (@{$p->{order}}) {
        my $f = $p->{families}{$name};
        next unless ($f->{type} // '') =~ /^(counter|histogram)$/;
        next if $name =~ /^cache_guard_redis_/;
        for my $s (@{$f->{samples}}) {
            my $l = $s->{labels};
            $c{$s->{name} . '{' . join(',', map { "$_=\"$l->{$_}\"" }
                                            sort keys %$l) . '}'}
                = $s->{raw};
        }
    }
    return \%c;
}

sub alerts_of {
    my ($kind) = @_;
    return [grep { $_->{alert} eq $kind } @{status_json()->{alerts}}];
}

run_tests();

__DATA__

=== TEST 1: the exposition is valid text format 0.0.4, with every family, its TYPE and its HELP, and the label sets documented
--- user_files
>>> p.lua
return { key = "$uri" }
--- check
http_get('/a');
http_get('/u/1');
ok(wait_for(sub { defined prom_value(metrics(), 'cache_guard_redis_used_memory_bytes', {}) },
            15, 'Redis INFO in the exposition'), 'INFO was read');
my $p = metrics();
my $r = $p->{response};
is($r->{headers}{'content-type'}, 'text/plain; version=0.0.4; charset=utf-8',
   'the content type of the text format');
is_deeply($p->{errors}, [], 'no error from the strict parser')
    or diag(Test::More::explain($p->{errors}));
my %types = map { ($_ => $p->{families}{$_}{type}) } @{$p->{order}};
is_deeply(\%types, {
    cache_guard_requests_total => 'counter',
    cache_guard_hits_total => 'counter',
    cache_guard_origin_fetches_total => 'counter',
    cache_guard_origin_errors_total => 'counter',
    cache_guard_origin_inflight => 'gauge',
    cache_guard_lock_waits_total => 'counter',
    cache_guard_lock_timeouts_total => 'counter',
    cache_guard_early_refreshes_total => 'counter',
    cache_guard_responses_5xx_total => 'counter',
    cache_guard_hook_errors_total => 'counter',
    cache_guard_request_duration_seconds => 'histogram',
    cache_guard_breaker_state => 'gauge',
    cache_guard_breaker_opened_total => 'counter',
    cache_guard_redis_errors_total => 'counter',
    cache_guard_redis_commands_total => 'counter',
    cache_guard_redis_duration_seconds => 'histogram',
    cache_guard_redis_used_memory_bytes => 'gauge',
    cache_guard_redis_mem_fragmentation_ratio => 'gauge',
    cache_guard_redis_evicted_keys_total => 'counter',
    cache_guard_redis_expired_keys_total => 'counter',
    cache_guard_redis_keyspace_hits_total => 'counter',
    cache_guard_redis_keyspace_misses_total => 'counter',
    cache_guard_redis_connected_clients => 'gauge',
    cache_guard_redis_info_age_seconds => 'gauge',
    cache_guard_bloom_items => 'gauge',
    cache_guard_bloom_fill_ratio => 'gauge',
    cache_guard_bloom_rejections_total => 'counter',
    cache_guard_l1_entries => 'gauge',
    cache_guard_l1_bytes => 'gauge',
    cache_guard_l1_evictions_total => 'counter',
}, 'every family, with its TYPE') or diag(Test::More::explain(\%types));
is_deeply([grep { !length($p->{families}{$_}{help} // '') } @{$p->{order}}], [],
          'every family has a HELP text');
is_deeply([grep { !@{$p->{families}{$_}{samples}} } @{$p->{order}}], [],
          'and samples');

my @req = prom_samples($p, 'cache_guard_requests_total');
is_deeply([sort keys %{{ map { ($_->{labels}{policy} => 1) } @req }}],
          ['p', 'users'], 'the policies, named after their files');
for my $policy ('p', 'users') {
    is_deeply([map { $_->{labels}{status} }
               grep { $_->{labels}{policy} eq $policy } @req],
              \@main::STATUSES, "$policy: all ten statuses");
    is_deeply([map { $_->{labels}{le} }
               grep { $_->{labels}{policy} eq $policy }
               prom_samples($p, 'cache_guard_request_duration_seconds_bucket')],
              \@main::LES, "$policy: the duration buckets");
    is_deeply([map { $_->{labels}{level} }
               grep { $_->{labels}{policy} eq $policy }
               prom_samples($p, 'cache_guard_hits_total')],
              ['l1', 'l2'], "$policy: the hit levels");
}
is_deeply([sort map { $_->{labels}{breaker} } prom_samples($p, 'cache_guard_breaker_state')],
          ['origin:p', 'origin:users', 'redis'], 'a breaker per policy and Redis');
is_deeply([map { $_->{labels}{kind} } prom_samples($p, 'cache_guard_redis_errors_total')],
          [qw(connect timeout lost protocol reply oversize breaker_open)],
          'the kinds of Redis errors');
is_deeply([map { $_->{labels}{le} } prom_samples($p, 'cache_guard_redis_duration_seconds_bucket')],
          \@main::LES, 'the Redis duration buckets, without labels');
is_deeply([map { "$_->{labels}{filter} $_->{labels}{mode}" }
           prom_samples($p, 'cache_guard_bloom_rejections_total')],
          ['users enforce', 'users shadow'], 'the Bloom rejections by mode');
is_deeply([map { $_->{labels}{zone} } prom_samples($p, 'cache_guard_l1_entries')],
          ['main'], 'the zone');
is(http_request('POST', '/metrics', body => '')->{status}, 405, 'POST is not allowed');
my $head = http_request('HEAD', '/metrics');
is("$head->{status} " . length($head->{body}), '200 0', 'HEAD: the headers only');
--- no_error_log
[error]
[alert]



=== TEST 2: exact counters after a known sequence, L1 hits, and the JSON status agrees
--- user_files
>>> p.lua
return { key = "$uri", negative_ttl = 30 }
--- check
my @p = (
    http_get('/a'), http_get('/a'), http_get('/b'),
    http_get('/n?status=404'), http_get('/n?status=404'),
    http_get('/a', headers => { Authorization => 'Bearer x' }),
    http_get('/s?status=500'),
);
my @u = (http_get('/u/1'), http_get('/u/1'), http_get('/u/5000'));
is(join(', ', map { guard($_) } @p, @u),
   'MISS, HIT l1, MISS, MISS, NEGATIVE l1, BYPASS, MISS, MISS, HIT l1, BLOOM_REJECT',
   'the sequence as expected');
my %exp;
@{$exp{p}}{qw(status level)} = expected(@p);
@{$exp{users}}{qw(status level)} = expected(@u);

my $m = metrics();
is_deeply($m->{errors}, [], 'a valid exposition');
for my $policy ('p', 'users') {
    my $e = $exp{$policy};
    is_deeply({ map { ($_ => prom_value($m, 'cache_guard_requests_total',
                                        { policy => $policy, status => $_ })) } @main::STATUSES },
              { map { ($_ => $e->{status}{$_} // 0) } @main::STATUSES },
              "$policy: requests_total per status");
    for my $level ('l1', 'l2') {
        is(prom_value($m, 'cache_guard_hits_total', { policy => $policy, level => $level }),
           $e->{level}{$level} // 0, "$policy: hits_total{level=\"$level\"}");
    }
}
is(prom_sum($m, 'cache_guard_origin_fetches_total'), origin_total(),
   'origin_fetches_total: what reached the origin (' . origin_total() . ')');
is(prom_value($m, 'cache_guard_origin_fetches_total', { policy => 'p' }), 5,
   'p: four fills and a bypass');
is(prom_value($m, 'cache_guard_origin_fetches_total', { policy => 'users' }), 1,
   'users: one fill, the rejected id never left');
is(prom_value($m, 'cache_guard_origin_errors_total', { policy => 'p' }), 1,
   'origin_errors_total: the 500');
is(prom_value($m, 'cache_guard_responses_5xx_total', { policy => 'p' }), 1,
   'responses_5xx_total: the 500');
is(prom_value($m, 'cache_guard_request_duration_seconds_count', { policy => 'p' }),
   scalar @p, 'p: a duration per request');
is(prom_value($m, 'cache_guard_request_duration_seconds_count', { policy => 'users' }),
   scalar(grep { guard($_) !~ /^(?:BLOOM_REJECT|INVALID)\b/ } @u),
   'users: a duration per request looked up (refusals are not timed)');
my $sum = prom_value($m, 'cache_guard_request_duration_seconds_sum', { policy => 'p' });
ok($sum > 0 && $sum < 10 * @p, "p: the durations add up to a plausible $sum s");
is(prom_value($m, 'cache_guard_bloom_rejections_total', { filter => 'users', mode => 'enforce' }),
   1, 'the Bloom rejection, enforced');
is(prom_value($m, 'cache_guard_bloom_rejections_total', { filter => 'users', mode => 'shadow' }),
   0, 'none in shadow');
my $items = prom_value($m, 'cache_guard_bloom_items', { filter => 'users' });
ok($items >= 90 && $items <= 110, "bloom_items about the 100 ids loaded: $items");
my $fill = prom_value($m, 'cache_guard_bloom_fill_ratio', { filter => 'users' });
ok($fill > 0 && $fill < 0.5, "bloom_fill_ratio: $fill");
is(prom_value($m, 'cache_guard_l1_entries', { zone => 'main' }), 4,
   'l1_entries: /a, /b, /n and /u/1');
ok(prom_value($m, 'cache_guard_l1_bytes', { zone => 'main' }) > 0, 'l1_bytes');
for my $zero (qw(cache_guard_lock_waits_total cache_guard_lock_timeouts_total
                 cache_guard_early_refreshes_total cache_guard_origin_inflight
                 cache_guard_hook_errors_total)) {
    is(prom_sum($m, $zero), 0, "$zero: 0");
}

my $st = status_json();
for my $policy ('p', 'users') {
    my $j = policy_json($st, $policy);
    is_deeply($j->{requests},
              { map { ($_ => prom_value($m, 'cache_guard_requests_total',
                                        { policy => $policy, status => $_ })) } @main::STATUSES },
              "status JSON, $policy: the same requests per status");
    is_deeply([$j->{requests_total}, $j->{hits}{l1}, $j->{hits}{l2},
               $j->{origin}{fetches}, $j->{origin}{errors}, $j->{responses_5xx},
               $j->{latency}{count}],
              [prom_sum($m, 'cache_guard_requests_total', { policy => $policy }),
               map({ prom_value($m, 'cache_guard_hits_total', { policy => $policy, level => $_ }) }
                   'l1', 'l2'),
               map({ prom_value($m, $_, { policy => $policy }) }
                   qw(cache_guard_origin_fetches_total cache_guard_origin_errors_total
                      cache_guard_responses_5xx_total
                      cache_guard_request_duration_seconds_count))],
              "status JSON, $policy: requests_total, hits, origin, 5xx, latency count");
}
is(policy_json($st, 'p')->{hit_ratio}, 0.333333,
   'hit ratio of p: 2 answers from the cache of 6 cacheable requests');
is($st->{zones}[0]{entries}, 4, 'status JSON: the L1 entries');
is($st->{filters}[0]{rejected}, 1, 'status JSON: the Bloom rejection');
--- no_error_log
[error]
[alert]



=== TEST 3: with l1 = false the hits come from Redis: hits_total{level="l2"}
--- user_files
>>> p.lua
return { key = "$uri", l1 = false }
--- check
my @res = (http_get('/a'));
stored('cg:/a');
push @res, http_get('/a'), http_get('/a'), http_get('/n?status=404');
stored('cg:/n');
push @res, http_get('/n?status=404');
is(join(', ', map { guard($_) } @res), 'MISS, HIT l2, HIT l2, MISS, NEGATIVE l2',
   'the sequence as expected');
my $m = metrics();
is_deeply($m->{errors}, [], 'a valid exposition');
is(prom_value($m, 'cache_guard_hits_total', { policy => 'p', level => 'l2' }), 3,
   'three hits from L2 (two fresh, one negative)');
is(prom_value($m, 'cache_guard_hits_total', { policy => 'p', level => 'l1' }), 0,
   'none from L1');
is(prom_value($m, 'cache_guard_requests_total', { policy => 'p', status => 'HIT' }), 2, 'HIT 2');
is(prom_value($m, 'cache_guard_requests_total', { policy => 'p', status => 'NEGATIVE' }), 1,
   'NEGATIVE 1');
is(prom_value($m, 'cache_guard_requests_total', { policy => 'p', status => 'MISS' }), 2, 'MISS 2');
is(prom_value($m, 'cache_guard_l1_entries', { zone => 'main' }), 0, 'L1 holds nothing');
is(prom_value($m, 'cache_guard_request_duration_seconds_count', { policy => 'p' }), 5,
   'five durations');
my $j = policy_json(status_json(), 'p');
is("$j->{hits}{l1} $j->{hits}{l2}", '0 3', 'status JSON: the same hits');
--- no_error_log
[error]
[alert]



=== TEST 4: counters are kept across reloads, the same configuration or a new one, and go on counting
--- skip_valgrind
--- user_files
>>> p.lua
return { key = "$uri" }
>>> v.lua
return { key = "$uri" }
--- check
my @res = map { http_get($_) } '/a', '/a', '/b', '/s?status=500', '/u/9999';
is(join(', ', map { guard($_) } @res), 'MISS, HIT l1, MISS, MISS, BLOOM_REJECT',
   'the sequence as expected');
my $before = metrics();
my $uptime = status_json()->{uptime};
my @workers = worker_pids();
ok(nginx_reload(), 'reloaded');
isnt(join(',', worker_pids()), join(',', @workers), 'new workers');
my $after = metrics();
is_deeply($after->{errors}, [], 'a valid exposition');
is_deeply(counters($after), counters($before), 'every counter unchanged by the reload')
    or diag(Test::More::explain(counters($after)));
ok(prom_value($after, 'cache_guard_redis_commands_total', {})
   >= prom_value($before, 'cache_guard_redis_commands_total', {}),
   'redis_commands_total kept');
ok(status_json()->{uptime} >= $uptime, 'uptime counts from the first start');

my @more = map { http_get($_) } '/a', '/c';
is(join(', ', map { guard($_) } @more), 'HIT l1, MISS', 'a hit and a miss after the reload');
my $m = metrics();
for my $s ('HIT', 'MISS') {
    is(prom_value($m, 'cache_guard_requests_total', { policy => 'p', status => $s }),
       prom_value($before, 'cache_guard_requests_total', { policy => 'p', status => $s }) + 1,
       "requests_total{status=\"$s\"} went on by one");
}
is(prom_value($m, 'cache_guard_request_duration_seconds_count', { policy => 'p' }),
   prom_value($before, 'cache_guard_request_duration_seconds_count', { policy => 'p' }) + 2,
   'duration count went on by two');

# a new configuration: one more location, with a new policy
my $file = servroot() . '/conf/nginx.conf';
open my $in, '<', $file or die "$file: $!";
my $conf = do { local $/; <$in> };
close $in;
my $v = "    location /v/ {\n        cache_guard main;\n"
      . "        cache_guard_policy $ENV{TEST_NGINX_HTML_DIR}/v.lua;\n"
      . "        proxy_pass http://origin;\n    }\n";
$conf =~ s/(    location = \/metrics)/$v$1/ or die 'no /metrics location';
open my $out, '>', $file or die "$file: $!";
print {$out} $conf;
close $out;
my $c1 = counters(metrics());
ok(nginx_reload(), 'reloaded with a new policy');
my $m2 = metrics();
is_deeply($m2->{errors}, [], 'a valid exposition');
my $c2 = counters($m2);
is_deeply({ map { ($_ => $c2->{$_}) } grep { !/policy="v"|origin:v/ } keys %$c2 }, $c1,
          'the counters of the old policies unchanged');
is(prom_sum($m2, 'cache_guard_requests_total', { policy => 'v' }), 0, 'the new policy at 0');
http_get('/v/1');
is(prom_value(metrics(), 'cache_guard_requests_total', { policy => 'v', status => 'MISS' }), 1,
   'and counting');
--- no_error_log
[error]
[alert]
[crit]



=== TEST 5: Redis metrics: commands, latency, INFO; errors and the breaker when Redis dies
--- user_files
>>> p.lua
return { key = "$uri", l1 = false, breaker = { redis = { min_requests = 5 } } }
--- check
my @res = (http_get('/a'));
stored('cg:/a');
push @res, http_get('/a');
is(join(', ', map { guard($_) } @res), 'MISS, HIT l2', 'a fill and a hit from Redis');
my $m = metrics();
my $commands = prom_value($m, 'cache_guard_redis_commands_total', {});
ok($commands >= 3, "commands sent: $commands (GET, SET, GET at least)");
my $count = prom_value($m, 'cache_guard_redis_duration_seconds_count', {});
ok($count > 0 && $count <= $commands, "a duration per command answered: $count");

ok(wait_for(sub {
    $m = metrics();
    defined prom_value($m, 'cache_guard_redis_used_memory_bytes', {})
        && prom_value($m, 'cache_guard_redis_keyspace_hits_total', {}) >= 1;
}, 15, 'INFO in the exposition, after the hit'), 'INFO was read');
my %info = map { /^(\w+):(.*?)\r?$/ ? ($1 => $2) : () }
           split /\n/, redis('INFO', 'all');
my $used = prom_value($m, 'cache_guard_redis_used_memory_bytes', {});
ok($used > 100_000 && $used < 100 * $info{used_memory},
   "used memory: $used bytes (Redis says $info{used_memory} now)");
ok(prom_value($m, 'cache_guard_redis_connected_clients', {}) >= 1, 'connected clients');
ok(prom_value($m, 'cache_guard_redis_mem_fragmentation_ratio', {}) > 0, 'fragmentation ratio');
is(prom_value($m, 'cache_guard_redis_evicted_keys_total', {}), $info{evicted_keys},
   'evicted keys as in INFO');
my $hits = prom_value($m, 'cache_guard_redis_keyspace_hits_total', {});
ok($hits >= 1 && $hits <= $info{keyspace_hits}, "keyspace hits: $hits");
my $age = prom_value($m, 'cache_guard_redis_info_age_seconds', {});
ok(defined $age && $age >= 0 && $age <= 10, 'INFO is ' . ($age // 'missing')
   . ' s old');
my $j = status_json()->{redis};
ok($j->{info}{used_memory} > 0, 'status JSON: INFO too');

# Redis dies
my $errors = sub {
    my $p = shift;
    return prom_value($p, 'cache_guard_redis_errors_total', { kind => 'connect' })
         + prom_value($p, 'cache_guard_redis_errors_total', { kind => 'lost' });
};
my $failed = $errors->($m);
is(prom_value($m, 'cache_guard_breaker_state', { breaker => 'redis' }), 0, 'the breaker is closed');
redis_stop();
my @down;
my $i = 0;
ok(wait_for(sub {
    push @down, http_get('/d' . $i++);
    prom_value(metrics(), 'cache_guard_breaker_state', { breaker => 'redis' }) == 1;
}, 20, 'the Redis breaker open'), 'breaker_state{breaker="redis"} 1 (open)');
is(scalar(grep { $_->{status} != 200 } @down), 0,
   scalar(@down) . ' requests while Redis was down: all 200 from the origin')
    or diag(tally(\@down));
$m = metrics();
is_deeply($m->{errors}, [], 'a valid exposition');
ok($errors->($m) > $failed, 'redis_errors_total{kind="connect"} + {kind="lost"}: '
   . $errors->($m) . ", was $failed");
ok(prom_value($m, 'cache_guard_breaker_opened_total', { breaker => 'redis' }) >= 1,
   'breaker_opened_total{breaker="redis"}');
my $refused = prom_value($m, 'cache_guard_redis_errors_total', { kind => 'breaker_open' });
http_get("/e$_") for 1 .. 3;
ok(prom_value(metrics(), 'cache_guard_redis_errors_total', { kind => 'breaker_open' }) > $refused,
   'redis_errors_total{kind="breaker_open"}: commands refused while open');
my $st = status_json();
is($st->{redis}{breaker}{state}, 'open', 'status JSON: the breaker open');
is_deeply(alerts_of('breaker_open'), [{ alert => 'breaker_open', breaker => 'redis', state => 'open' }],
          'and an alert');
--- cleanup
redis_start();
--- no_error_log
[alert]
[crit]



=== TEST 6: alert hit_ratio_below: only misses give it, a policy with hits has none
--- config
    location /h/ {
        cache_guard main;
        cache_guard_policy $TEST_NGINX_HTML_DIR/h.lua;
        proxy_pass http://origin;
        add_header X-Guard "$cache_guard_status $cache_guard_level" always;
    }
--- user_files
>>> p.lua
return { key = "$uri", alerts = { hit_ratio_below = 0.8, min_requests = 5, window = 60 } }
>>> h.lua
return { key = "$uri", alerts = { hit_ratio_below = 0.8, min_requests = 5, window = 60 } }
--- check
is_deeply(status_json()->{alerts}, [], 'no alert without requests');
http_get('/h/1') for 1 .. 11;
my $i = 0;
my $alerts;
ok(wait_for(sub {
    http_get('/m' . $i++);
    http_get('/h/1');
    $alerts = alerts_of('hit_ratio_below');
    return @$alerts;
}, 15, 'the alert'), "after $i misses: an alert") or diag(Test::More::explain(status_json()));
is(scalar @$alerts, 1, 'one alert');
my $a = $alerts->[0];
is("$a->{policy} $a->{value} $a->{threshold} $a->{window}", 'p 0 0.8 60',
   'for p: hit ratio 0, below 0.8, over 60 s');
my $h = policy_json(status_json(), 'h');
ok($h->{window}{hit_ratio} >= 0.8, "h has hits ($h->{window}{hit_ratio}): no alert for it");
--- no_error_log
[error]
[alert]



=== TEST 7: alert error_rate_above: origin 500s give it
--- user_files
>>> p.lua
return { key = "$uri", alerts = { error_rate_above = 0.05, min_requests = 5 },
         breaker = { origin = { min_requests = 1000 } } }
--- check
http_get("/ok$_") for 1 .. 5;
is_deeply(alerts_of('error_rate_above'), [], 'no alert while the origin answers 200');
my $i = 0;
my $alerts;
ok(wait_for(sub {
    http_get('/e' . $i++ . '?status=500');
    $alerts = alerts_of('error_rate_above');
    return @$alerts;
}, 15, 'the alert'), "after $i errors: an alert") or diag(Test::More::explain(status_json()));
my $a = $alerts->[0];
is("$a->{policy} $a->{threshold} $a->{window}", 'p 0.05 60', 'for p, above 0.05, over 60 s');
ok($a->{value} > 0.05 && $a->{value} <= 1, "the error rate: $a->{value}");
is(prom_value(metrics(), 'cache_guard_responses_5xx_total', { policy => 'p' }), $i,
   'responses_5xx_total counts them');
is_deeply(alerts_of('hit_ratio_below'), [], 'no hit ratio alert: not configured');
--- no_error_log
[error]
[alert]



=== TEST 8: alert breaker_open: a breaker forced open through the admin API, in the JSON and in breaker_state
--- user_files
>>> p.lua
return { key = "$uri" }
--- check
is_deeply(alerts_of('breaker_open'), [], 'no alert while closed');
my $r = http_request('POST', '/admin/breaker/origin:p?state=open', body => '');
is($r->{status}, 200, 'forced open');
is_deeply(alerts_of('breaker_open'),
          [{ alert => 'breaker_open', breaker => 'origin:p', state => 'open' }],
          'the alert names the breaker');
my $m = metrics();
is(prom_value($m, 'cache_guard_breaker_state', { breaker => 'origin:p' }), 1, 'breaker_state 1');
is(prom_value($m, 'cache_guard_breaker_state', { breaker => 'origin:users' }), 0,
   'the other policy\'s breaker 0');
my $f = http_get('/x');
is(join(' ', $f->{status}, split ' ', guard($f)), '503 FALLBACK', 'requests get the fallback');
is(prom_value(metrics(), 'cache_guard_requests_total', { policy => 'p', status => 'FALLBACK' }), 1,
   'requests_total{status="FALLBACK"}');
http_request('POST', '/admin/breaker/origin:p?state=closed', body => '');
is_deeply(alerts_of('breaker_open'), [], 'closed: no alert');
is(prom_value(metrics(), 'cache_guard_breaker_state', { breaker => 'origin:p' }), 0, 'breaker_state 0');
--- no_error_log
[error]
[alert]



=== TEST 9: label values are escaped: a policy named after a file with a quote, a backslash and a line feed
--- config
    location /q/ {
        cache_guard main;
        cache_guard_policy "$TEST_NGINX_HTML_DIR/q\"b\\s\nl.lua";
        proxy_pass http://origin;
    }
--- user_files
>>> p.lua
return { key = "$uri" }
--- setup
my $file = "$ENV{TEST_NGINX_HTML_DIR}/q\"b\\s\nl.lua";
open my $fh, '>', $file or die "$file: $!";
print {$fh} "return { key = \"\$uri\" }\n";
close $fh or die "$file: $!";
--- check
http_get('/q/1');
my $m = metrics();
my $text = $m->{response}{body};
is_deeply($m->{errors}, [], 'a valid exposition');
like($text, qr/^cache_guard_requests_total\{policy="q\\"b\\\\s\\nl",status="MISS"\} 1$/m,
     'written escaped');
is(prom_value($m, 'cache_guard_requests_total', { policy => "q\"b\\s\nl", status => 'MISS' }), 1,
   'read back as the name');
is(prom_value($m, 'cache_guard_breaker_state', { breaker => "origin:q\"b\\s\nl" }), 0,
   'in the breaker\'s name too');
is(policy_json(status_json(), "q\"b\\s\nl")->{requests}{MISS}, 1, 'and in the JSON');
--- no_error_log
[error]
[alert]



=== TEST 10: the parser is strict: each flaw in an exposition is reported (hand-written texts, and the module's own output spoiled)
--- user_files
>>> p.lua
return { key = "$uri" }
--- check
my $good = <<'TEXT';
# HELP x_total A \\ counter,\nwith escapes.
# TYPE x_total counter
x_total{a="q\"b\\s\nl",b=""} 1
x_total{a="2",} 2.5e3 1700000000000
# a comment
# TYPE h histogram
h_bucket{le="0.5"} 1
h_bucket{le="1"} 2
h_bucket{le="+Inf"} 2
h_sum 0.75
h_count 2
g NaN
g2{} -Inf
TEXT
my $p = prom_parse($good);
is_deeply($p->{errors}, [], 'a valid text') or diag(Test::More::explain($p->{errors}));
is($p->{families}{x_total}{help}, "A \\ counter,\nwith escapes.", 'HELP unescaped');
is(prom_value($p, 'x_total', { a => "q\"b\\s\nl", b => '' }), 1, 'label values unescaped');
is(prom_value($p, 'x_total', { a => 2 }), 2500, 'a trailing comma, an exponent');
is(prom_value($p, 'h_count', {}), 2, 'a histogram');

my %bad = (
    'an unknown escape'        => [qq{x{a="\\t"} 1\n}, qr/invalid escape/],
    'an unescaped quote'       => [qq{x{a="q"b"} 1\n}, qr/expected ','|bad label/],
    'a lone backslash'         => [qq{x{a="\\"} 1\n}, qr/bad label|expected/],
    'an escaped quote in HELP' => [qq{# HELP x a \\"b\\"\nx 1\n}, qr/invalid escape/],
    'a label name'             => [qq{x{1a="b"} 1\n}, qr/bad label/],
    'a reserved label name'    => [qq{x{__a="b"} 1\n}, qr/reserved/],
    'a label twice'            => [qq{x{a="b",a="c"} 1\n}, qr/twice/],
    'a metric name'            => [qq{x-y 1\n}, qr/value|name/],
    'a value'                  => [qq{x 1,5\n}, qr/not a float/],
    'a timestamp'              => [qq{x 1 1.5\n}, qr/not an integer/],
    'no final line feed'       => [qq{x 1}, qr/line feed/],
    'an unknown TYPE'          => [qq{# TYPE x countr\nx 1\n}, qr/unknown TYPE/],
    'two TYPEs'                => [qq{# TYPE x gauge\n# TYPE x gauge\nx 1\n}, qr/second TYPE/],
    'two HELPs'                => [qq{# HELP x a\n# HELP x b\nx 1\n}, qr/second HELP/],
    'TYPE after the samples'   => [qq{x 1\n# TYPE x gauge\n}, qr/after its samples/],
    'a family in two groups'   => [qq{x 1\ny 1\nx{a="b"} 1\n}, qr/one group/],
    'a duplicate series'       => [qq{x{a="b"} 1\nx{a="b"} 2\n}, qr/duplicate/],
    'a counter without _total' => [qq{# TYPE x counter\nx 1\n}, qr/_total/],
    'buckets out of order'     => [qq{# TYPE h histogram\nh_bucket{le="1"} 1\nh_bucket{le="0.5"} 1\nh_bucket{le="+Inf"} 1\nh_sum 1\nh_count 1\n}, qr/not above/],
    'buckets not cumulative'   => [qq{# TYPE h histogram\nh_bucket{le="0.5"} 2\nh_bucket{le="1"} 1\nh_bucket{le="+Inf"} 2\nh_sum 1\nh_count 2\n}, qr/less than/],
    'no +Inf bucket'           => [qq{# TYPE h histogram\nh_bucket{le="1"} 1\nh_sum 1\nh_count 1\n}, qr/\+Inf/],
    '_count not the +Inf one'  => [qq{# TYPE h histogram\nh_bucket{le="+Inf"} 2\nh_sum 1\nh_count 3\n}, qr/differs/],
    'no _sum'                  => [qq{# TYPE h histogram\nh_bucket{le="+Inf"} 2\nh_count 2\n}, qr/no h_sum/],
    'a bucket without le'      => [qq{# TYPE h histogram\nh_bucket 2\nh_bucket{le="+Inf"} 2\nh_sum 1\nh_count 2\n}, qr/without le/],
);
for my $what (sort keys %bad) {
    my ($text, $re) = @{$bad{$what}};
    my $errors = prom_parse($text)->{errors};
    ok(@$errors && (grep { $_ =~ $re } @$errors), "refused: $what")
        or diag(Test::More::explain($errors));
}

# the module's own exposition, valid, then spoiled one way at a time
http_get("/$_") for 'a', 'a', 'b';
my $text = http_get('/metrics')->{body};
is_deeply(prom_parse($text)->{errors}, [], 'the module\'s exposition is valid');
my @lines = split /\n/, $text;
my $bucket = first { $lines[$_] =~ /_bucket\{.*le="0.001"/ } 0 .. $#lines;
my %spoiled = (
    'a sample repeated' => sub { my @l = @lines; splice @l, 3, 0, $l[2]; @l },
    'buckets swapped'   => sub { my @l = @lines; @l[$bucket, $bucket + 1] = @l[$bucket + 1, $bucket]; @l },
    'a family split'    => sub { my @l = @lines; push @l, $l[2]; splice @l, 2, 1; @l },
    'a quote unescaped' => sub { map { s/policy="p"/policy="p"x"/r } @lines },
    'a TYPE repeated'   => sub { my @l = @lines; splice @l, 2, 0, $l[1]; @l },
    'a counter renamed' => sub { map { s/^cache_guard_hits_total/cache_guard_hits/r
                                       =~ s/TYPE cache_guard_hits_total/TYPE cache_guard_hits/r } @lines },
);
for my $what (sort keys %spoiled) {
    my $errors = prom_parse(join('', map { "$_\n" } $spoiled{$what}->()))->{errors};
    ok(scalar @$errors, "spoiled ($what): refused") or diag(Test::More::explain($errors));
}
--- no_error_log
[error]
[alert]



=== TEST 11: lock waits and inflight (counted for origin.max_concurrent): 5 clients on one key with a slow origin, one fetch in flight, four waits
--- user_files
>>> p.lua
return { key = "$uri", origin = { max_concurrent = 10 } }
--- check
my $pid = fork // die "fork: $!";
if (!$pid) {
    eval { http_concurrent(5, sub { '/slow?delay=3' }, timeout => 20) };
    POSIX::_exit(0);
}
my $seen;
ok(wait_for(sub {
    my $m = metrics();
    $seen = $m if prom_value($m, 'cache_guard_origin_inflight', { policy => 'p' }) == 1
                  && prom_value($m, 'cache_guard_lock_waits_total', { policy => 'p' }) == 4;
    return $seen;
}, 10, 'one fetch in flight and four waiting'), 'origin_inflight 1 and lock_waits_total 4 during the fetch');
waitpid $pid, 0;
my $m = metrics();
is(prom_value($m, 'cache_guard_origin_inflight', { policy => 'p' }), 0, 'inflight 0 after it');
is(prom_value($m, 'cache_guard_origin_fetches_total', { policy => 'p' }), 1, 'one fetch');
is(origin_total(), 1, 'one request at the origin');
is(prom_value($m, 'cache_guard_lock_waits_total', { policy => 'p' }), 4, 'four waits');
is(prom_value($m, 'cache_guard_requests_total', { policy => 'p', status => 'MISS' }), 1, 'one MISS');
is(prom_sum($m, 'cache_guard_requests_total', { policy => 'p' }), 5, 'five requests');
--- no_error_log
[error]
[alert]



=== TEST 12: two policies with one name (two p.lua in different directories) share one record: each series is written once
--- config
    location /x/ {
        cache_guard main;
        cache_guard_policy $TEST_NGINX_HTML_DIR/x/p.lua;
        proxy_pass http://origin;
    }
--- user_files
>>> p.lua
return { key = "$uri" }
>>> x/p.lua
return { key = "$uri" }
--- check
http_get('/x/1');
http_get('/a');
my $m = metrics();
my @miss = grep { $_->{labels}{policy} eq 'p' && $_->{labels}{status} eq 'MISS' }
           prom_samples($m, 'cache_guard_requests_total');
is_deeply($m->{errors}, [], 'a valid exposition (no duplicate series)');
is(scalar @miss, 1, 'one requests_total{policy="p",status="MISS"}');
is(scalar(grep { $_->{name} eq 'p' } @{status_json()->{policies}}), 1,
   'one policy "p" in the status JSON');
is($miss[0]{value}, 2, 'counting the requests of both locations');
--- no_error_log
[error]
[alert]



=== TEST 13: requests made before the first one-second snapshot stay in the alert window
--- user_files
>>> p.lua
return { key = "$uri", alerts = { hit_ratio_below = 0.8, min_requests = 5, window = 60 } }
--- check
# A new nginx (the second one: a zone of its own) on the fake Redis, which
# logs the commands in the order its one worker sent them.  The tick that
# takes the first snapshot sends the first INFO right after it, so an INFO
# after "GET cg:/m2" means /m1 was counted before the first snapshot.  A
# start so slow that the tick came first is tried again with a new zone.
my $port2 = $ENV{TEST_NGINX_SERVER_PORT2};
my ($st, $order);
for my $try (1 .. 5) {
    fake_redis_start('nil');
    start_second_nginx(<<'CONF', http_config => <<'HTTP');
    location = /status {
        cache_guard_status;
    }
    location / {
        cache_guard main;
        cache_guard_policy $TEST_NGINX_HTML_DIR/p.lua;
        proxy_pass http://origin;
    }
CONF
    cache_guard_zone main size=4m;
    cache_guard_redis 127.0.0.1:$TEST_NGINX_FAKE_REDIS_PORT timeout=1s;
    upstream origin { server 127.0.0.1:$TEST_NGINX_ORIGIN_PORT; }
HTTP
    http_get("/m$_", port => $port2) for 1 .. 10;
    ok(wait_for(sub { fake_redis_commands('INFO') }, 10, 'the first INFO'),
       "try $try: the first snapshot was taken");
    my @commands = fake_redis_commands('GET', 'INFO');
    my $info = first { $commands[$_] =~ /^INFO\b/ } 0 .. $#commands;
    my $m2 = first { $commands[$_] eq 'GET cg:/m2' } 0 .. $#commands;
    $order = join ', ', @commands[0 .. min($info + 1, $#commands)];
    if (defined $m2 && $m2 < $info) {
        my $r = http_get('/status', port => $port2);
        $st = decode_json($r->{body});
        last;
    }
    note("try $try: the first snapshot came too early: $order");
    stop_second_nginx();
}
ok($st, 'a request was counted before the first snapshot') or diag($order);
$st //= { policies => [], alerts => [] };
is(policy_json($st, 'p')->{window}{requests}, 10,
   'ten misses in the window, after the first snapshot');
is(scalar(grep { $_->{alert} eq 'hit_ratio_below' } @{$st->{alerts}}), 1,
   'the alert is active');
--- cleanup
fake_redis_stop();
--- no_error_log
[error]
[alert]



=== TEST 14: with cache_guard at server level, /metrics and /status are never cached: two answers differ, no cache status, nothing in Redis
--- config
    cache_guard main;
    cache_guard_policy $TEST_NGINX_HTML_DIR/p.lua;
    add_header X-Guard "$cache_guard_status" always;
--- user_files
>>> p.lua
return { key = "$uri", ttl = 60 }
--- check
for my $path ('/metrics', '/status') {
    my $first = http_get($path);
    http_get('/a');
    my $second = http_get($path);
    is($first->{status}, 200, "$path: 200");
    is($second->{status}, 200, "$path: 200 again");
    is(guard($_), '', "$path: no cache status") for $first, $second;
    isnt($second->{body}, $first->{body},
         "$path: the second answer is not the first one (a counter moved)");
}
my $req = sub {
    prom_value(metrics(), 'cache_guard_requests_total',
               { policy => 'p', status => $_[0] }) // 0
};
is($req->('MISS'), 1, 'one MISS counted: /a');
is($req->('HIT'), 1, 'one HIT counted: /a again, not /metrics nor /status');
my @keys = grep { m{metrics|status} } @{redis('KEYS', '*')};
is_deeply(\@keys, [], 'Redis holds no key for /metrics or /status');
--- no_error_log
[error]
[alert]
