# Lua hooks run in a sandbox under a bound: a hook that loops forever, or
# reaches for io, os, ffi, debug or code loading, fails alone; the request
# gets 500 {"error": "policy error"} (on_hook_error = "reject", the
# default) or goes on without the hook ("pass"); the worker carries on
# (same pid), the failure is counted in cache_guard_hook_errors_total and
# logged at most once a second per policy and hook.
use lib 't/lib';
use Cwd qw(getcwd);
BEGIN { $ENV{LUA_PATH} = getcwd() . '/lua/?.lua;;' }
use Test::CacheGuard 'no_plan';
use Test::CacheGuard::Assert;
use Test::CacheGuard::Preset;
use Test::CacheGuard::Prom;

use JSON::PP qw(decode_json);

guard_preamble(
    zone         => '4m',
    redis        => 'timeout=1s',
    config_after => <<'CONF',
    location = /metrics {
        cache_guard_metrics;
    }
    location = /status {
        cache_guard_status;
    }
CONF
    init         => 'origin_reset(); redis_flush();',
);

sub policy_error {
    my ($r, $what) = @_;
    is($r->{status}, 500, "$what: 500");
    is($r->{body}, qq({"error": "policy error"}\n), "$what: the JSON body");
    is($r->{headers}{'content-type'}, 'application/json',
       "$what: a JSON answer");
}

sub hook_errors {
    my ($policy, $hook) = @_;
    my $p = prom_parse(http_get('/metrics')->{body});
    return prom_value($p, 'cache_guard_hook_errors_total',
                      { policy => $policy, hook => $hook });
}

sub log_lines {
    my ($re) = @_;
    return scalar(() = error_log_since_block() =~ /$re/g);
}

run_tests();

__DATA__

=== TEST 1: a hook that loops forever is stopped (the JIT would never call the count hook), the worker still serves
--- config
    location / {
        cache_guard main;
        cache_guard_policy $TEST_NGINX_HTML_DIR/loop.lua;
        proxy_pass http://127.0.0.1:$TEST_NGINX_ORIGIN_PORT;
        add_header X-Guard $cache_guard_status always;
    }
--- user_files
>>> loop.lua
return {
  validate = function(r)
    if r:arg("loop") then
      while true do end
    end
    if r:arg("nested") then
      -- the bound is not caught by the hook's own pcall
      while true do pcall(function() while true do end end) end
    end
    return nil
  end,
}
--- check
my ($pid) = worker_pids();
my $r = http_get('/a?loop=1', timeout => 30);
policy_error($r, 'an endless loop');
is(guard($r), 'INVALID', 'refused by the policy');
ok(wait_for(sub { error_log_since_block() =~ /policy "loop" validate hook failed: .*loop\.lua:4: more than 1000000 instructions/ }, 5),
   'logged with the policy, the hook and where it was stopped');
$r = http_get('/b?nested=1', timeout => 30);
policy_error($r, 'an endless loop of pcalls');
is(http_get('/a')->{status}, 200, 'the next request is served');
is_deeply([worker_pids()], [$pid], 'by the same worker');
is(origin_total(), 1, 'only the good request reached the origin');
is(hook_errors('loop', 'validate'), 2, 'both counted');
--- no_error_log
[alert]
[crit]



=== TEST 2: hooks cannot reach io, os, ffi, debug or load code; each attempt is a policy error, logged
--- user_files
>>> io.lua
return { validate = function(r) io.open("/etc/passwd") end }
>>> os.lua
return { validate = function(r) os.execute("touch $TEST_NGINX_HTML_DIR/executed") end }
>>> ffi.lua
return { validate = function(r) local ffi = require "ffi" end }
>>> load.lua
return { validate = function(r) return loadstring("return 1")() end }
>>> debug.lua
return { validate = function(r) return debug.getinfo(1) end }
>>> fenv.lua
return { validate = function(r) return getfenv(0) end }
>>> late.lua
return { validate = function(r) require "cache_guard.key" end }
>>> ok.lua
local key = require "cache_guard.key"
local build = key.uri_with_args({ "id" })
return {
  key = function(r)
    -- what hooks have: pure libraries, os.time, pcall, the library
    local ok = pcall(error, "x")
    local xok, h = xpcall(error, function(e) return "handled " .. e end, "y", 0)
    local _, sum = pcall(function(a, b) return a + b end, 1, 2)
    return build(r) .. string.format("|%d|%s|%s|%s|%s|%d", math.floor(2.5),
      table.concat({ "a", "b" }, ","), tostring(not ok and type(os.time()) == "number"),
      tostring(xok), h, sum)
  end,
}
--- config
    location /io/ {
        cache_guard main;
        cache_guard_policy $TEST_NGINX_HTML_DIR/io.lua;
        proxy_pass http://127.0.0.1:$TEST_NGINX_ORIGIN_PORT;
    }
    location /os/ {
        cache_guard main;
        cache_guard_policy $TEST_NGINX_HTML_DIR/os.lua;
        proxy_pass http://127.0.0.1:$TEST_NGINX_ORIGIN_PORT;
    }
    location /ffi/ {
        cache_guard main;
        cache_guard_policy $TEST_NGINX_HTML_DIR/ffi.lua;
        proxy_pass http://127.0.0.1:$TEST_NGINX_ORIGIN_PORT;
    }
    location /load/ {
        cache_guard main;
        cache_guard_policy $TEST_NGINX_HTML_DIR/load.lua;
        proxy_pass http://127.0.0.1:$TEST_NGINX_ORIGIN_PORT;
    }
    location /debug/ {
        cache_guard main;
        cache_guard_policy $TEST_NGINX_HTML_DIR/debug.lua;
        proxy_pass http://127.0.0.1:$TEST_NGINX_ORIGIN_PORT;
    }
    location /fenv/ {
        cache_guard main;
        cache_guard_policy $TEST_NGINX_HTML_DIR/fenv.lua;
        proxy_pass http://127.0.0.1:$TEST_NGINX_ORIGIN_PORT;
    }
    location /late/ {
        cache_guard main;
        cache_guard_policy $TEST_NGINX_HTML_DIR/late.lua;
        proxy_pass http://127.0.0.1:$TEST_NGINX_ORIGIN_PORT;
    }
    location /ok/ {
        cache_guard main;
        cache_guard_policy $TEST_NGINX_HTML_DIR/ok.lua;
        proxy_pass http://127.0.0.1:$TEST_NGINX_ORIGIN_PORT;
        add_header X-Key $cache_guard_key always;
    }
--- check
my %why = (
    io    => qr/attempt to index global 'io' \(a nil value\)/,
    os    => qr/attempt to call field 'execute' \(a nil value\)/,
    ffi   => qr/module 'ffi' is not available to policies/,
    load  => qr/attempt to call global 'loadstring' \(a nil value\)/,
    debug => qr/attempt to index global 'debug' \(a nil value\)/,
    fenv  => qr/attempt to call global 'getfenv' \(a nil value\)/,
    late  => qr/module 'cache_guard.key' was not required when the policy was read/,
);
for my $p (sort keys %why) {
    policy_error(http_get("/$p/x"), $p);
    ok(wait_for(sub { error_log_since_block() =~ /policy "$p" validate hook failed: .*$why{$p}/ }, 5),
       "$p: logged with the reason");
}
ok(!-e "$ENV{TEST_NGINX_HTML_DIR}/executed", 'os.execute ran nothing');
is(origin_total(), 0, 'none reached the origin');
my $r = http_get('/ok/x?id=3&utm=1');
is($r->{status}, 200, 'a hook using what the sandbox gives works');
is($r->{headers}{'x-key'}, 'localhost|/ok/x|id=3|2|a,b|true|false|handled y|3', 'with the library');
--- no_error_log
[alert]
[crit]



=== TEST 3: a hook that raises: 500 by default; with on_hook_error = "pass" key bypasses, validate accepts, bloom.item skips the filter
--- http_config
    cache_guard_bloom ids capacity=1000 error_rate=0.01 file=$TEST_NGINX_HTML_DIR/ids.txt;
--- config
    location /reject/ {
        cache_guard main;
        cache_guard_policy $TEST_NGINX_HTML_DIR/reject.lua;
        proxy_pass http://127.0.0.1:$TEST_NGINX_ORIGIN_PORT;
        add_header X-Guard $cache_guard_status always;
    }
    location /pass/ {
        cache_guard main;
        cache_guard_policy $TEST_NGINX_HTML_DIR/pass.lua;
        proxy_pass http://127.0.0.1:$TEST_NGINX_ORIGIN_PORT;
        add_header X-Guard $cache_guard_status always;
    }
--- user_files
>>> ids.txt
1
>>> hooks.lua
local function fails(r, what)
  if r:arg(what) then error(what .. " went wrong") end
end
return {
  key = function(r) fails(r, "key") return r.uri end,
  validate = function(r) fails(r, "validate") return nil end,
  bloom = { filter = "ids",
            item = function(r) fails(r, "item") return r:arg("id") end },
}
>>> reject.lua
local p = require "hooks"
p.name = "reject"
return p
>>> pass.lua
local p = require "hooks"
local q = { name = "pass", on_hook_error = "pass" }
for k, v in pairs(p) do if k ~= "name" then q[k] = v end end
return q
--- check
for my $hook (qw(key validate item)) {
    my $r = http_get("/reject/a?$hook=1");
    policy_error($r, "reject, $hook");
    is(guard($r), 'INVALID', "reject, $hook: INVALID");
}
is(origin_total(), 0, 'nothing reached the origin');
my $r = http_get('/pass/a?validate=1');
is($r->{status}, 200, 'pass: a failing validate hook accepts');
$r = http_get('/pass/a?key=1');
is($r->{status}, 200, 'pass: a failing key hook ...');
is(guard($r), 'BYPASS', '... bypasses the cache');
$r = http_get('/pass/b?item=1');
is($r->{status}, 200, 'pass: a failing item hook skips the Bloom filter');
is(guard($r), 'MISS', 'the request was looked up and filled');
is(origin_count('/pass/a'), 2, 'the validate and key requests reached the origin');
is(origin_count('/pass/b'), 1, 'and the item one');
is(http_get('/pass/b?id=7')->{status}, 404, 'without the failure the filter still refuses');
my %want = (key => 1, validate => 1, 'bloom.item' => 1);
for my $p (qw(reject pass)) {
    for my $hook (sort keys %want) {
        is(hook_errors($p, $hook), 1, "$p: the $hook failure counted");
    }
}
my ($st) = grep { $_->{name} eq 'pass' }
            @{ decode_json(http_get('/status')->{body})->{policies} };
is_deeply($st->{hook_errors}, { key => 1, validate => 1, 'bloom.item' => 1 },
          'the status JSON has them too');
ok(wait_for(sub { error_log_since_block() =~ /policy "pass" bloom\.item hook failed: .*item went wrong/ }, 5),
   'a passed failure is logged too');
--- no_error_log
[alert]
[crit]



=== TEST 4: a flood of failing requests: every one counted, at most a line a second logged
--- config
    location / {
        cache_guard main;
        cache_guard_policy $TEST_NGINX_HTML_DIR/p.lua;
        proxy_pass http://127.0.0.1:$TEST_NGINX_ORIGIN_PORT;
    }
--- user_files
>>> p.lua
return { validate = function(r) error("always") end }
--- check
my $start = time;
my $bad = grep { $_->{status} != 500 } @{ http_concurrent(50, '/x') };
my $secs = time - $start + 1;
is($bad, 0, '50 policy errors');
is(hook_errors('p', 'validate'), 50, 'all counted');
my $lines = log_lines(qr/validate hook failed/);
ok($lines >= 1 && $lines <= $secs + 1, "$lines log lines in about $secs s")
    or diag(error_log_since_block());
--- no_error_log
[alert]
[crit]



=== TEST 5: a hook that asks for too much memory fails alone
--- config
    location / {
        cache_guard main;
        cache_guard_policy $TEST_NGINX_HTML_DIR/p.lua;
        proxy_pass http://127.0.0.1:$TEST_NGINX_ORIGIN_PORT;
    }
--- user_files
>>> p.lua
return {
  key = function(r)
    if r:arg("big") then return string.rep("x", 256 * 1024 * 1024) end
    return r.uri
  end,
}
--- init
($main::pid) = worker_pids();
--- request eval
["GET /a?big=1", "GET /a"]
--- error_code eval
[500,    # a 256 MB string: a policy error
 200]    # the next request is served
--- response_body eval
[qq({"error": "policy error"}\n), undef]
--- response_headers eval
["Content-Type: application/json", undef]
--- error_log
policy "p" key hook failed: not enough memory
--- check
is_deeply([worker_pids()], [$main::pid], 'by the same worker');
--- no_error_log
[alert]
[crit]



=== TEST 6: the policy file runs in the sandbox too: io at load time fails nginx -t
--- config
    location / {
        cache_guard main;
        cache_guard_policy $TEST_NGINX_HTML_DIR/p.lua;
        return 200;
    }
--- user_files
>>> p.lua
local ids = io.open("/etc/hostname"):read("*a")
return { key = "$uri" }
--- must_die
--- error_log eval
qr{cache guard: policy .*/p\.lua:1: attempt to index global 'io' \(a nil value\)}



=== TEST 7: require "ffi" when the policy is read fails nginx -t
--- config
    location / {
        cache_guard main;
        cache_guard_policy $TEST_NGINX_HTML_DIR/p.lua;
        return 200;
    }
--- user_files
>>> p.lua
local ffi = require "ffi"
return {}
--- must_die
--- error_log eval
qr{cache guard: policy .*/p\.lua:1: module 'ffi' is not available to policies}



=== TEST 8: a policy file that never ends fails nginx -t instead of hanging it
--- config
    location / {
        cache_guard main;
        cache_guard_policy $TEST_NGINX_HTML_DIR/p.lua;
        return 200;
    }
--- user_files
>>> p.lua
local n = 0
while true do n = n + 1 end
--- must_die
--- error_log eval
qr{cache guard: policy .*/p\.lua:2: more than 100000000 instructions}



=== TEST 9: on_hook_error takes "reject" or "pass" only, and says so
--- config
    location / {
        cache_guard main;
        cache_guard_policy $TEST_NGINX_HTML_DIR/p.lua;
        return 200;
    }
--- user_files
>>> p.lua
return {
  key = "$uri",
  on_hook_error = "ignore",
}
--- must_die
--- error_log eval
qr{cache guard: policy .*/p\.lua:3: on_hook_error must be one of "reject", "pass"}



=== TEST 10: a state filled to its memory cap: the next calls fail alone, the worker lives (nothing is allocated outside the protected call)
--- config
    location / {
        cache_guard main;
        cache_guard_policy $TEST_NGINX_HTML_DIR/p.lua;
        proxy_pass http://127.0.0.1:$TEST_NGINX_ORIGIN_PORT;
    }
--- user_files
>>> p.lua
local hoard, k = {}, 0
local rep, floor, pcall = string.rep, math.floor, pcall
local function add(n) k = k + 1; hoard[k] = rep("x", n) .. k end
return {
  key = function(r)
    if r:arg("fill") then
      local n = 1024 * 1024
      while n >= 1 do
        if not pcall(add, n) then n = floor(n / 2) end
      end
    end
    return r.uri
  end,
}
--- check
my ($pid) = worker_pids();
my @u = ('/a?fill=1', '/b', '/c', '/d', '/e?fill=1', '/f', '/g');
my @r = map { http_get($_, timeout => 20) } @u;
is(scalar(grep { $_->{status} == 500 || $_->{status} == 200 } @r), 7,
   'each request is answered (500 when its hook ran out of memory)');
is_deeply([worker_pids()], [$pid], 'by the same worker: no panic');
unlike(error_log_since_block(), qr/PANIC|exited on signal|exited with code/,
       'no panic in the log');
--- no_error_log
[alert]
[crit]



=== TEST 11: string.gsub calling itself from its replacement function is stopped before the C stack runs out
--- config
    location / {
        cache_guard main;
        cache_guard_policy $TEST_NGINX_HTML_DIR/p.lua;
        proxy_pass http://127.0.0.1:$TEST_NGINX_ORIGIN_PORT;
    }
--- user_files
>>> p.lua
return {
  key = function(r)
    if r:arg("gs") then
      local function f(c) return (("ab"):gsub(".", f)) end
      f()
    end
    if r:arg("ok") then
      return (r.uri:gsub("/", function(c) return (c:gsub("/", "|")) end))
    end
    return r.uri
  end,
}
--- init
($main::pid) = worker_pids();
--- request eval
["GET /a?gs=1", "GET /b?ok=1"]
--- error_code eval
[500,    # gsub recursion: a policy error
 200]    # a gsub inside a gsub still works
--- response_body eval
[qq({"error": "policy error"}\n), undef]
--- response_headers eval
["Content-Type: application/json", undef]
--- error_log eval
qr/policy "p" key hook failed: .*nested too deep/
--- check
is_deeply([worker_pids()], [$main::pid], 'by the same worker');
--- no_error_log
[alert]
[crit]
