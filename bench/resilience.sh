#!/bin/bash
# Latency when the cache tier fails: wrk (loopback, keep-alive) against one
# nginx-cache-guard worker, for L1 hits (one hot key) and for misses (a new
# key each request, answered by the test origin), with Redis healthy, with
# redis-server killed (the Redis breaker open) and with it paused by
# SIGSTOP.  Also the time from Redis' death (or pause) to the breaker
# opening, while wrk sends misses.  Starts its own redis-server
# (BENCH_REDIS_PORT, default 6393), test origin and nginx on ports 1817x;
# about 60 s.  Usage: bench/resilience.sh   (table in bench/out/resilience.txt)
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
module=${TEST_NGINX_MODULE:-$root/build/nginx/objs/ngx_http_cache_guard_module.so}
nginx=${TEST_NGINX_BINARY:-/usr/sbin/nginx}
rport=${BENCH_REDIS_PORT:-6393}
port=18171
origin_port=18172
out=$root/bench/out
work=$out/resilience
secs=${BENCH_SECONDS:-5}

die() { echo "resilience: $*" >&2; exit 1; }

[ -f "$module" ] || die "build the module first (make)"
command -v wrk >/dev/null || die "wrk is not installed (apt-get install wrk)"
command -v redis-server >/dev/null || die "redis-server is not installed"
ulimit -n 65536 2>/dev/null || true

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() {
    for _ in $(seq 1 100); do port_open "$1" && return 0; sleep 0.1; done
    die "nothing listens on port $1"
}
for p in $port $origin_port $rport; do
    port_open "$p" && die "port $p is in use"
done

origin_pid=
cleanup() {
    [ -f "$work/redis.pid" ] && kill -CONT "$(cat "$work/redis.pid")" 2>/dev/null
    [ -f "$work/nginx/logs/nginx.pid" ] && kill "$(cat "$work/nginx/logs/nginx.pid")"
    [ -n "$origin_pid" ] && kill "$origin_pid" 2>/dev/null
    [ -f "$work/redis.pid" ] && kill -9 "$(cat "$work/redis.pid")" 2>/dev/null
    wait 2>/dev/null
}
trap cleanup EXIT
trap 'exit 130' INT TERM

rm -rf "$work"
mkdir -p "$work/nginx/conf" "$work/nginx/logs" "$work/nginx/tmp"
user=
[ "$(id -u)" = 0 ] && user='user root;'

cat > "$work/p.lua" <<'LUA'
return {
  key = "$uri", ttl = 300, jitter = 0,
  l1 = { ttl = 300 },
  breaker = { redis = { window = 10, min_requests = 20, failure_rate = 0.5,
                        open_for = 600 } },
}
LUA

# a new key for every request: every one is a miss
cat > "$work/cold.lua" <<'LUA'
local n = 0
local id = tostring(math.random(1, 1e9))
request = function()
  n = n + 1
  return wrk.format("GET", "/cold/" .. id .. "/" .. n)
end
LUA

start_redis() {
    redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no \
        --daemonize yes --pidfile "$work/redis.pid" --dir "$work" \
        --logfile "$work/redis.log" || die "redis-server did not start"
    wait_port "$rport"
}

start_redis
perl "$root/t/lib/origin.pl" --port "$origin_port" --quiet > "$work/origin.log" 2>&1 &
origin_pid=$!
wait_port "$origin_port"
sed -e "s#@MODULE@#$module#" -e "s#@USER@#$user#" -e "s#@PORT@#$port#" \
    -e "s#@REDIS_PORT@#$rport#" -e "s#@ORIGIN_PORT@#$origin_port#" \
    -e "s#@POLICY@#$work/p.lua#" "$root/bench/resilience.conf.in" \
    > "$work/nginx/conf/nginx.conf"
"$nginx" -p "$work/nginx/" -c conf/nginx.conf || die "nginx did not start"
wait_port "$port"

url=http://127.0.0.1:$port
state() { curl -s "$url/admin/breaker/redis" | sed -n 's/.*"state": "\([a-z-]*\)".*/\1/p'; }

# run NAME ARGS...: wrk's p50 and p99 (ms), requests/s and non-2xx count
run() {
    local name=$1; shift
    wrk -t1 -c8 -d"${secs}s" --latency "$@" > "$work/$name.wrk" 2>&1
    awk -v n="$name" '
        function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0;
                         if (v ~ /s$/) return v * 1000; return v }
        $1 == "50%" { p50 = ms($2) } $1 == "99%" { p99 = ms($2) }
        /Requests\/sec/ { rps = $2 } /Non-2xx/ { bad = $NF }
        END { printf "%-28s %9.3f %9.3f %10.0f %7d\n", n, p50, p99, rps, bad }' \
        "$work/$name.wrk"
}

# opened_after: ms from now until the breaker reads open, wrk sending misses
opened_after() {
    local t0 t1
    t0=$(date +%s%N)
    for _ in $(seq 1 3000); do
        [ "$(state)" = open ] && break
        sleep 0.005
    done
    t1=$(date +%s%N)
    [ "$(state)" = open ] || { echo "never"; return; }
    echo $(( (t1 - t0) / 1000000 ))
}

curl -s "$url/hot" > /dev/null; sleep 0.2; curl -s "$url/hot" > /dev/null
{
    echo "resilience: wrk -t1 -c8 -d${secs}s, one nginx worker, loopback," \
         "$(nproc) CPUs ($(date -u '+%Y-%m-%d %H:%M UTC'))"
    echo "module sha1 $(sha1sum < "$module" | cut -c1-12); Redis timeout 200 ms"
    echo
    printf '%-28s %9s %9s %10s %7s\n' scenario 'p50 ms' 'p99 ms' 'req/s' 'non-2xx'
    run 'L1 hit, Redis healthy' "$url/hot"
    run 'miss, Redis healthy' -s "$work/cold.lua" "$url"

    # Redis killed while misses flow
    wrk -t1 -c8 -d10s -s "$work/cold.lua" "$url" > /dev/null 2>&1 &
    sleep 1
    kill -9 "$(cat "$work/redis.pid")"
    killed_ms=$(opened_after)
    wait
    run 'L1 hit, Redis killed' "$url/hot"
    run 'miss, Redis killed' -s "$work/cold.lua" "$url"

    # Redis back and a fresh nginx (no backoff, no breaker history left
    # from the kill), then Redis paused while misses flow
    rm -f "$work/redis.pid"
    start_redis
    "$nginx" -p "$work/nginx/" -c conf/nginx.conf -s stop
    while port_open "$port"; do sleep 0.1; done
    "$nginx" -p "$work/nginx/" -c conf/nginx.conf || die "nginx did not start"
    wait_port "$port"
    curl -s "$url/hot" > /dev/null; sleep 0.2; curl -s "$url/hot" > /dev/null
    wrk -t1 -c8 -d10s -s "$work/cold.lua" "$url" > /dev/null 2>&1 &
    sleep 1
    kill -STOP "$(cat "$work/redis.pid")"
    paused_ms=$(opened_after)
    wait
    run 'L1 hit, Redis paused' "$url/hot"
    run 'miss, Redis paused' -s "$work/cold.lua" "$url"
    kill -CONT "$(cat "$work/redis.pid")"
    echo
    echo "Redis killed -> breaker open: ${killed_ms} ms (under a wrk miss load)"
    echo "Redis paused -> breaker open: ${paused_ms} ms (under a wrk miss load)"
    echo "nginx [error] lines: $(grep -c '\[error\]' "$work/nginx/logs/error.log")," \
         "[alert]/[crit]: $(grep -cE '\[(alert|crit)\]' "$work/nginx/logs/error.log")"
} | tee "$out/resilience.txt"
