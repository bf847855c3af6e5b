#!/bin/bash
# Instructions per request of each path, as a ratio to `return 200` of the
# same 1 KiB body, with ../shared/tools/ipr.sh (callgrind).  Starts its own
# redis-server on BENCH_REDIS_PORT (default 6392) for the L2 path.
# Usage: bench/ipr.sh [IPR_SH]
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
ipr=${1:-$root/../shared/tools/ipr.sh}
module=${TEST_NGINX_MODULE:-$root/build/nginx/objs/ngx_http_cache_guard_module.so}
rport=${BENCH_REDIS_PORT:-6392}
out=$root/bench/out
mkdir -p "$out"
[ -x "$ipr" ] || { echo "no ipr.sh at $ipr" >&2; exit 2; }
[ -f "$module" ] || { echo "build the module first (make)" >&2; exit 2; }

body=$(printf '{"id":42,"pad":"%s"}' "$(head -c 1000 /dev/zero | tr '\0' x)")
body=${body:0:1024}

redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no \
    --daemonize yes --pidfile "$out/redis.pid" --logfile "$out/redis.log"
trap 'kill $(cat "$out/redis.pid") 2>/dev/null' EXIT

printf "return { l1 = false, ttl = 3600 }\n" > "$out/l2.lua"; mkdir -p "$out/tmp"
printf 'return { bloom = { filter = "users", item = "$1" } }\n' > "$out/bloom.lua"
seq 1 100000 > "$out/ids.txt"
for conf in return200 l1hit l2hit return404 bloom404; do
    sed -e "s#@MODULE@#$module#" -e "s#@BODY@#$body#" \
        -e "s#@REDIS_PORT@#$rport#" -e "s#@OUT@#$out#" \
        "$root/bench/$conf.conf.in" > "$out/$conf.conf"
done

declare -A ipr_of
for conf in return200 l1hit l2hit return404 bloom404; do
    url=http://127.0.0.1:8090/k
    case $conf in *404) url=http://127.0.0.1:8090/k/999999999 ;; esac
    r=$("$ipr" "$out/$conf.conf" "$url" | sed -n 's/^ipr=//p')
    ipr_of[$conf]=$r
    echo "$conf: ipr=$r"
done
base=${ipr_of[return200]}
for conf in l1hit l2hit; do
    awk -v a="${ipr_of[$conf]}" -v b="$base" -v n="$conf" \
        'BEGIN { printf "%s / return200 = %.2fx\n", n, a / b }'
done
awk -v a="${ipr_of[bloom404]}" -v b="${ipr_of[return404]}" \
    'BEGIN { printf "bloom404 / return404 = %.2fx\n", a / b }'
