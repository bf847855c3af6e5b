#!/bin/bash
# Cache stampede: 1000 concurrent clients ask for ONE cold key whose origin
# takes 6 s to answer.  Three set-ups, each with a fresh key:
#   1. nginx-cache-guard, one node (2 workers): single flight in the node.
#   2. nginx-cache-guard, two nodes sharing one Redis, 500 clients each:
#      single flight across nodes through the Redis lock.
#   3. nginx's proxy_cache with proxy_cache_lock on (no module loaded).
# For each: what the origin counted, how many clients got 200, and how long
# after the reference response the others completed (the filler, X-Guard
# MISS, for cache-guard; the first response for proxy_cache).  After 1.,
# the same 1000 clients ask for the key just cached: the spread of those
# hits is what answering 1000 clients costs on this machine.  The client
# is bench/stampede.pl.  Starts its own redis-server (BENCH_REDIS_PORT,
# default 6393), test origin and nginx instances on loopback ports 18xxx,
# and stops them on exit.  Takes about 25 s.
# Usage: bench/stampede.sh      (table in bench/out/stampede.txt)
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
module=${TEST_NGINX_MODULE:-$root/build/nginx/objs/ngx_http_cache_guard_module.so}
nginx=${TEST_NGINX_BINARY:-/usr/sbin/nginx}
rport=${BENCH_REDIS_PORT:-6393}
out=$root/bench/out
work=$out/stampede
node1_port=18081
node2_port=18082
pcache_port=18083
origin_port=18090
clients=1000
delay=6            # seconds the origin takes to answer
batch_timeout=60   # seconds a batch of clients may take in all

die() { echo "stampede: $*" >&2; exit 1; }

[ -f "$module" ] || die "build the module first (make)"
module_sha=$(sha1sum < "$module" | cut -c1-12)
[ -x "$nginx" ] || die "no nginx at $nginx"
command -v redis-server >/dev/null || die "redis-server is not installed"
command -v curl >/dev/null || die "curl is not installed"

# 1000 client sockets in one process, and as many nginx connections (plus
# as many upstream ones for proxy_cache), need far more than the usual 1024
# descriptors; nginx and the origin inherit the limit.  Where the hard limit
# cannot be raised (a container), its value does if it is 4096 or more.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
[ "$(ulimit -n)" -ge 4096 ] \
    || die "ulimit -n is $(ulimit -n) (hard $(ulimit -Hn)); 4096 are needed"

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
    for _ in $(seq 1 100); do
        port_open "$1" && return 0
        sleep 0.1
    done
    die "nothing listens on port $1; see $work"
}

for p in $node1_port $node2_port $pcache_port $origin_port $rport; do
    port_open "$p" && die "port $p is in use"
done

# stop PID: TERM (every client is done by then), then wait until it has
# exited, so that the next run finds the ports free.  An exited daemon may
# stay a zombie until init reaps it (seconds in some containers): it holds
# no port any more, so it counts as gone.
stop() {
    kill -TERM "$1" 2>/dev/null || return 0
    for _ in $(seq 1 100); do
        case $(ps -o stat= -p "$1") in ''|Z*) return 0 ;; esac
        sleep 0.1
    done
    echo "stampede: process $1 did not stop" >&2
}

origin_pid=
cleanup() {
    for d in node1 node2 pcache; do
        [ -f "$work/$d/logs/nginx.pid" ] && stop "$(cat "$work/$d/logs/nginx.pid")"
    done
    [ -n "$origin_pid" ] && stop "$origin_pid"
    [ -f "$work/redis.pid" ] && stop "$(cat "$work/redis.pid")"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

rm -rf "$work"
mkdir -p "$work"

# The master runs the workers as root when it is root (like the test
# harness), so they can write the temp and cache directories under bench/out.
user=
[ "$(id -u)" = 0 ] && user='user root;'

# The lock on its defaults, as proxy_cache_lock is on its own: lock.wait
# 5 s and lock.on_timeout "follow", so a waiter follows the 6 s fill past
# lock.wait; the key is the URI alone, so both nodes share it.
cat > "$work/stampede.lua" <<'LUA'
return { key = "$uri", ttl = 300, jitter = 0 }
LUA

# render TEMPLATE DIR PORT [ZONE]: an nginx prefix with its conf.
render() {
    mkdir -p "$2/conf" "$2/logs" "$2/tmp"
    sed -e "s#@MODULE@#$module#" -e "s#@USER@#$user#" \
        -e "s#@PORT@#$3#" -e "s#@ZONE@#${4:-}#g" \
        -e "s#@REDIS_PORT@#$rport#" -e "s#@ORIGIN_PORT@#$origin_port#" \
        -e "s#@POLICY@#$work/stampede.lua#" \
        "$root/bench/$1.conf.in" > "$2/conf/nginx.conf"
    "$nginx" -p "$2/" -c conf/nginx.conf || die "nginx in $2 did not start"
    wait_port "$3"
}

redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no \
    --daemonize yes --pidfile "$work/redis.pid" --dir "$work" \
    --logfile "$work/redis.log" || die "redis-server did not start"
perl "$root/t/lib/origin.pl" --port "$origin_port" --quiet \
    > "$work/origin.log" 2>&1 &
origin_pid=$!
wait_port "$rport"
wait_port "$origin_port"

render stampede-guard "$work/node1" "$node1_port" node1
render stampede-guard "$work/node2" "$node2_port" node2
render stampede-proxy-cache "$work/pcache" "$pcache_port"

run=$(date +%s)-$$

# batch NAME KEY REF NGINX_DIRS PORT=COUNT...: one burst of clients for
# /stampede/KEY-RUN; the client's summary goes to NAME.sum, and what the
# origin counted for that key and the errors nginx logged are added to it.
batch() {
    local name=$1 path=/stampede/$2-$run ref=$3 dirs=$4 d
    shift 4
    for d in $dirs; do : > "$work/$d/logs/error.log"; done
    perl "$root/bench/stampede.pl" --path "$path?delay=$delay" --ref "$ref" \
        --timeout "$batch_timeout" --raw "$work/$name.tsv" "$@" \
        > "$work/$name.sum" || die "the client failed in $name"
    echo "origin=$(curl -s "http://127.0.0.1:$origin_port/_origin/count?path=$path")" \
        >> "$work/$name.sum"
    echo "log_errors=$(for d in $dirs; do cat "$work/$d/logs/error.log"; done \
        | grep -cE '\[(emerg|alert|crit|error)\]')" >> "$work/$name.sum"
}

val() { sed -n "s/^$2=//p" "$work/$1.sum"; }

batch one-node one-node miss node1 "$node1_port=$clients"
# The same clients again for the key just filled: all hits, answered at
# once.  How long answering 1000 clients takes here (nginx and this client
# on the same CPUs) is the floor under the waiters' latency above.
batch cached one-node first node1 "$node1_port=$clients"
batch two-nodes two-nodes miss "node1 node2" \
    "$node1_port=$((clients / 2))" "$node2_port=$((clients - clients / 2))"
batch proxy-cache proxy-cache first pcache "$pcache_port=$clients"

# row NAME LABEL GROUP:TITLE...: the batch's counts on its first line, then
# one line per latency group.
row() {
    local name=$1 label=$2 g first=1
    shift 2
    for g in "$@"; do
        if [ $first = 1 ]; then
            printf '%-20s %7s %5s %6s %6s %6s %12s  ' "$label" \
                "$(val "$name" clients)" "$(val "$name" ok)" \
                "$(val "$name" errors)" "$(val "$name" origin)" \
                "$(val "$name" log_errors)" \
                "$(awk -v ms="$(val "$name" ref_ms)" -v m="$(val "$name" misses)" \
                    'BEGIN { if (ms == "n/a") print "none"
                             else printf "%s %.3fs", m ? "MISS" : "first",
                                         ms / 1000 }')"
            first=0
        else
            printf '%-20s %7s %5s %6s %6s %6s %12s  ' '' '' '' '' '' '' ''
        fi
        printf '%-21s %5s %8s %8s %8s\n' "${g#*:}" \
            "$(val "$name" "${g%%:*}_n")" "$(val "$name" "${g%%:*}_p50")" \
            "$(val "$name" "${g%%:*}_p99")" "$(val "$name" "${g%%:*}_max")"
    done
}

{
    echo "stampede: $clients clients at once, one cold key, origin answers" \
         "in $delay s ($(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs," \
         "ulimit -n $(ulimit -n))"
    echo "module: $module (sha1 $module_sha)"
    echo "latency = a client's completion - the reference's (the filler's" \
         "MISS, or the first response), ms; failed = no complete response;"
    echo "origin = requests the origin counted; logerr = [error] or worse" \
         "in nginx's error logs"
    echo
    printf '%-20s %7s %5s %6s %6s %6s %12s  %-21s %5s %8s %8s %8s\n' \
        scenario clients 200 failed origin logerr reference 'latency of' \
        n p50 p99 max
    row one-node 'cache-guard 1 node' 'same_node:waiters' \
        "same_worker:  filler's worker" 'other_worker:  other worker'
    row cached '  same key, cached' 'others:after the first'
    row two-nodes 'cache-guard 2 nodes' 'same_node:same-node waiters' \
        'cross_node:cross-node waiters'
    row proxy-cache 'proxy_cache_lock' 'others:after the first'
    echo
    for b in one-node cached two-nodes proxy-cache; do
        echo "$b: $(val $b tally); requests sent in $(val $b burst_ms) ms"
    done
} | tee "$out/stampede.txt"
