#!/bin/bash
# The demo: redis-server, a demo API (the test suite's counting origin) and
# nginx with the module, all on loopback.  Usage: demo.sh start|stop|run
# ("run" stays in the foreground until Ctrl-C).
set -u
root=$(cd "$(dirname "$0")/../.." && pwd)
dir=$root/build/demo
module=${TEST_NGINX_MODULE:-$root/build/nginx/objs/ngx_http_cache_guard_module.so}

# Stops what start started and waits (bounded) until it is gone, so that a
# new start finds its ports free.
stop() {
    local pids="" p
    [ -f "$dir/logs/nginx.pid" ] && pids="$pids $(cat "$dir/logs/nginx.pid")"
    [ -f "$dir/origin.pid" ] && pids="$pids $(cat "$dir/origin.pid")"
    [ -f "$dir/redis.pid" ] && pids="$pids $(cat "$dir/redis.pid")"
    for p in $pids; do
        kill -QUIT "$p" 2>/dev/null
    done
    for _ in $(seq 1 50); do
        alive=
        for p in $pids; do
            [ -d "/proc/$p" ] && ! grep -q '^State:.*Z' "/proc/$p/status" \
                && alive=1
        done
        [ -z "$alive" ] && break
        sleep 0.1
    done
    for p in $pids; do
        kill -KILL "$p" 2>/dev/null
    done
    rm -f "$dir/origin.pid" "$dir/redis.pid" "$dir/logs/nginx.pid"
    echo "demo stopped"
}

wait_port() {
    for _ in $(seq 1 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "demo: nothing listens on port $1; see $dir" >&2
    return 1
}

start() {
    [ -f "$module" ] || { echo "demo: build the module first (make)" >&2; exit 1; }
    stop >/dev/null 2>&1
    mkdir -p "$dir/conf" "$dir/logs" "$dir/tmp"
    seq 1 1000 > "$dir/user-ids.txt"
    sed -e "s#@ROOT@#$root#g" -e "s#@MODULE@#$module#g" -e "s#@DIR@#$dir#g" \
        "$root/docs/demo/nginx.conf.in" > "$dir/conf/nginx.conf"

    redis-server --port 6391 --bind 127.0.0.1 --save '' --appendonly no \
        --daemonize yes --pidfile "$dir/redis.pid" \
        --logfile "$dir/logs/redis.log" --dir "$dir" || exit 1
    perl "$root/t/lib/origin.pl" --port 8081 --quiet \
        > "$dir/logs/origin.log" 2>&1 &
    echo $! > "$dir/origin.pid"
    wait_port 6391 && wait_port 8081 || { stop; exit 1; }
    LUA_PATH="$root/lua/?.lua;;" nginx -p "$dir" -c conf/nginx.conf \
        || { stop; exit 1; }
    wait_port 8080 || { stop; exit 1; }

    cat <<MSG

nginx-cache-guard demo is running:
  nginx      http://127.0.0.1:8080  (conf: $dir/conf/nginx.conf)
  demo API   http://127.0.0.1:8081  (counts its requests: /_origin/total)
  redis      127.0.0.1:6391         (keys under demo:)

A miss, then a hit of the same user:
MSG
    for i in 1 2; do
        printf '  curl -i http://127.0.0.1:8080/api/users/42 -> '
        curl -s -D - -o /dev/null http://127.0.0.1:8080/api/users/42 \
            | tr -d '\r' | grep -i '^x-cache-guard' || echo "(no answer)"
    done
    printf '  requests that reached the demo API: '
    curl -s http://127.0.0.1:8081/_origin/total; echo
    echo
    echo "Its key is the policy's \$host\$request_uri (the access log's key=):"
    printf "  curl -X DELETE 'http://127.0.0.1:8080/admin/cache?key=127.0.0.1/api/users/42' -> "
    curl -s -X DELETE \
        'http://127.0.0.1:8080/admin/cache?key=127.0.0.1/api/users/42' \
        || echo "(no answer)"
    cat <<MSG

Try:
  curl -i http://127.0.0.1:8080/api/users/7          (MISS, then HIT)
  curl -i 'http://127.0.0.1:8080/api/users/9?status=404'  (NEGATIVE the 2nd time)
  curl -i http://127.0.0.1:8080/api/users/5000       (BLOOM_REJECT: no such id)
  curl -i 'http://127.0.0.1:8080/api/users/7?status=99' (INVALID: refused in C)
  curl -i 'http://127.0.0.1:8080/api/catalog?page=0' (INVALID: a Lua validator)
  curl -i 'http://127.0.0.1:8080/api/catalog?page=2&delay=1'  (a slow origin, once)
  curl http://127.0.0.1:8080/metrics                 (Prometheus metrics)
  open http://127.0.0.1:8080/status in a browser     (the live dashboard)
  curl -X DELETE 'http://127.0.0.1:8080/admin/cache?key=127.0.0.1/api/users/7'
                                                     (purge; "found": false if no such key)
  curl http://127.0.0.1:8080/admin/breaker           (the circuit breakers)
  redis-cli -p 6391 --scan --pattern 'demo:*'
  tail -f $dir/logs/access.log

Stop it with: make demo-stop
MSG
}

case "${1:-}" in
start) start ;;
stop) stop ;;
run)
    start
    trap 'echo; stop; exit 0' INT TERM
    echo "(running in the foreground: Ctrl-C stops the demo)"
    while sleep 1; do :; done
    ;;
*) echo "usage: $0 start|stop|run" >&2; exit 2 ;;
esac
