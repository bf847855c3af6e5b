
/*
 * Copyright (C) nginx-cache-guard authors
 *
 * Locks for single flight.  On a node, a table of slots in the zone: one
 * fill per key across all workers; a slot expires by itself (lock.ttl) and
 * a slot whose holder died is taken over.  Waiters of a worker are checked
 * every few milliseconds by one timer, and at once when a request of the
 * same worker releases a slot.  Across nodes, a Redis lock: SET NX PX,
 * pipelined with a GET of the value, and released by its holder only,
 * with a compare-and-delete script.  The end of a fill releases both and
 * the origin slot.  Waiters are woken through the event the request flow
 * gave them (ctx->wake), and a GET's reply goes to the handler it passed.
 */


#include "ngx_http_cache_guard_lock.h"
#include "ngx_http_cache_guard_store.h"
#include "ngx_http_cache_guard_breaker.h"
#include "ngx_http_cache_guard_codec.h"
#include "ngx_http_cache_guard_redis.h"
#include "ngx_http_cache_guard_stats.h"


#define NGX_HTTP_CACHE_GUARD_TICK  5

/* if redis.call("get", KEYS[1]) == ARGV[1] then ... del ... end return 0 */
#define NGX_HTTP_CACHE_GUARD_RELEASE_SHA                                     \
    "08782137c8358e2fede877aa6fa70109ca306cec"


typedef struct {
    ngx_http_cache_guard_redis_t   *redis;
    ngx_uint_t                      eval;         /* EVAL sent */
    ngx_str_t                       lkey;
    ngx_str_t                       token;
} ngx_http_cache_guard_release_t;


static void ngx_http_cache_guard_lock_hash(ngx_http_cache_guard_ctx_t *ctx);
static void ngx_http_cache_guard_hold(ngx_http_cache_guard_ctx_t *ctx);
static void ngx_http_cache_guard_unhold(ngx_http_cache_guard_ctx_t *ctx);
static void ngx_http_cache_guard_renew_handler(ngx_event_t *ev);
static void ngx_http_cache_guard_renew_done(redisReply *reply, void *data);
static ngx_uint_t ngx_http_cache_guard_fetching(
    ngx_http_cache_guard_ctx_t *ctx);
static ngx_uint_t ngx_http_cache_guard_alive(ngx_pid_t pid);
static void ngx_http_cache_guard_tick_handler(ngx_event_t *ev);
static void ngx_http_cache_guard_kick(void);
static void ngx_http_cache_guard_rlock_done(redisReply *reply, void *data);
static void ngx_http_cache_guard_release_send(
    ngx_http_cache_guard_release_t *rl);
static void ngx_http_cache_guard_release_done(redisReply *reply, void *data);


static ngx_str_t  ngx_http_cache_guard_release_script = ngx_string(
    "if redis.call(\"get\", KEYS[1]) == ARGV[1] then "
    "return redis.call(\"del\", KEYS[1]) end return 0");


/* per worker: the requests waiting for a node lock */
static ngx_queue_t  ngx_http_cache_guard_waiters;
static ngx_event_t  ngx_http_cache_guard_lock_tick;
static ngx_uint_t   ngx_http_cache_guard_ticks;

/* nginx's debug log reads a timer's data as a connection */
static ngx_connection_t  ngx_http_cache_guard_tick_conn;

/* per worker: the requests holding a lock, renewed while they fill */
static ngx_queue_t  ngx_http_cache_guard_holders;
static ngx_event_t  ngx_http_cache_guard_renew;

#define NGX_HTTP_CACHE_GUARD_RENEW  100

/* if redis.call("get", KEYS[1]) == ARGV[1] then ... pexpire ... end */
static ngx_str_t  ngx_http_cache_guard_renew_script = ngx_string(
    "if redis.call(\"get\", KEYS[1]) == ARGV[1] then "
    "return redis.call(\"pexpire\", KEYS[1], ARGV[2]) end return 0");


/*
 * The key's place in the lock table: SipHash with the zone's random keys,
 * so that no client can choose a key that shares another key's slot; a
 * second hash confirms the match (2^-128 for a chance collision).
 */

static void
ngx_http_cache_guard_lock_hash(ngx_http_cache_guard_ctx_t *ctx)
{
    u_char  *k;

    if (ctx->hash) {
        return;
    }

    k = ctx->zone->sh->lock_key;

    ctx->hash = ngx_http_cache_guard_siphash(k, ctx->key.data, ctx->key.len);
    ctx->check = ngx_http_cache_guard_siphash(k + 16, ctx->key.data,
                                              ctx->key.len);

    if (ctx->hash == 0) {
        /* 0 marks a slot never used */
        ctx->hash = 1;
    }
}


#define ngx_http_cache_guard_slot_is(s, ctx)                                \
    ((s)->hash == (ctx)->hash && (s)->check == (ctx)->check)


/*
 * NGX_OK: this request holds the slot and fills; NGX_BUSY: another fill is
 * in progress, ctx->slot and ctx->gen say which to wait for; NGX_DECLINED:
 * no slot is free near the key's place, fill without node coordination.
 * Whether a holder is alive is asked outside the zone's mutex.
 */

ngx_int_t
ngx_http_cache_guard_lock_acquire(ngx_http_cache_guard_ctx_t *ctx,
    ngx_msec_t ttl)
{
    uint32_t                           gen, dead_gen;
    uint64_t                           now;
    ngx_pid_t                          pid, dead_pid;
    ngx_int_t                          take, idle, busy;
    ngx_uint_t                         i, n;
    ngx_http_cache_guard_zone_t       *zone;
    ngx_http_cache_guard_lock_slot_t  *s;

    ngx_http_cache_guard_lock_hash(ctx);

    zone = ctx->zone;
    dead_pid = 0;
    dead_gen = 0;
    pid = 0;
    gen = 0;

again:

    now = ngx_http_cache_guard_now();
    take = -1;
    idle = -1;
    busy = -1;

    ngx_shmtx_lock(&zone->shpool->mutex);

    for (i = 0; i < NGX_HTTP_CACHE_GUARD_LOCK_PROBE; i++) {
        n = (ctx->hash + i) % NGX_HTTP_CACHE_GUARD_LOCK_SLOTS;
        s = &zone->sh->locks[n];

        if (ngx_http_cache_guard_slot_is(s, ctx)) {

            if (s->expires > now
                && !(dead_pid && s->pid == dead_pid && s->gen == dead_gen))
            {
                busy = n;
                pid = s->pid;
                gen = s->gen;
                break;
            }

            take = n;
            break;
        }

        if (idle == -1 && s->expires <= now) {
            idle = n;
        }
    }

    if (busy != -1) {
        ngx_shmtx_unlock(&zone->shpool->mutex);

        if (dead_pid == 0 && pid != ngx_pid
            && !ngx_http_cache_guard_alive(pid))
        {
            /* its holder died: take it over, unless it changed meanwhile */
            dead_pid = pid;
            dead_gen = gen;
            goto again;
        }

        ctx->slot = busy;
        ctx->gen = gen;
        return NGX_BUSY;
    }

    if (take == -1) {
        take = idle;
    }

    if (take == -1) {
        ngx_shmtx_unlock(&zone->shpool->mutex);
        return NGX_DECLINED;
    }

    s = &zone->sh->locks[take];
    s->hash = ctx->hash;
    s->check = ctx->check;
    s->expires = now + ttl;
    s->pid = ngx_pid;
    s->failed = 0;
    s->gen++;

    ctx->slot = take;
    ctx->gen = s->gen;
    ctx->node_locked = 1;

    ngx_shmtx_unlock(&zone->shpool->mutex);

    ngx_http_cache_guard_hold(ctx);

    return NGX_OK;
}


/*
 * failed: 0 the value was stored, 1 the fill failed (waiters follow the
 * stale and fallback rules), 2 the response may not be stored (waiters
 * go to the origin themselves).
 */

void
ngx_http_cache_guard_lock_release(ngx_http_cache_guard_ctx_t *ctx,
    ngx_uint_t failed)
{
    ngx_http_cache_guard_zone_t       *zone;
    ngx_http_cache_guard_lock_slot_t  *s;

    if (!ctx->node_locked) {
        return;
    }

    ctx->node_locked = 0;
    zone = ctx->zone;
    s = &zone->sh->locks[ctx->slot];

    ngx_shmtx_lock(&zone->shpool->mutex);

    /* a holder whose worker stalled past lock.ttl may have been taken over */

    if (ngx_http_cache_guard_slot_is(s, ctx) && s->gen == ctx->gen) {
        s->expires = 0;
        s->failed = failed;
        s->gen++;
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    ngx_http_cache_guard_unhold(ctx);
    ngx_http_cache_guard_kick();
}


/*
 * A live filler keeps its locks: while it works for its key (fetching),
 * this worker renews its node slot and its Redis lock (PEXPIRE, by its
 * holder only) whenever less than half of lock.ttl is left.  Waiters then
 * follow a slow fill to its end, whatever lock.ttl is; a lock expires when
 * its holder's worker died or stalled, or once the origin has answered
 * and a slow client holds the fill, and then one waiter takes over.
 */

static void
ngx_http_cache_guard_hold(ngx_http_cache_guard_ctx_t *ctx)
{
    ngx_event_t  *ev;

    if (ctx->holding) {
        return;
    }

    ev = &ngx_http_cache_guard_renew;

    if (ev->handler == NULL) {
        ngx_queue_init(&ngx_http_cache_guard_holders);
        ngx_http_cache_guard_tick_conn.fd = (ngx_socket_t) -1;
        ev->data = &ngx_http_cache_guard_tick_conn;
        ev->handler = ngx_http_cache_guard_renew_handler;
        ev->log = ngx_cycle->log;
        ev->cancelable = 1;
    }

    ngx_queue_insert_tail(&ngx_http_cache_guard_holders, &ctx->held);
    ctx->holding = 1;

    if (!ev->timer_set) {
        ngx_add_timer(ev, NGX_HTTP_CACHE_GUARD_RENEW);
    }
}


static void
ngx_http_cache_guard_unhold(ngx_http_cache_guard_ctx_t *ctx)
{
    if (ctx->holding && !ctx->node_locked && !ctx->redis_locked) {
        ngx_queue_remove(&ctx->held);
        ctx->holding = 0;
    }
}


static void
ngx_http_cache_guard_renew_handler(ngx_event_t *ev)
{
    u_char                             buf[NGX_INT64_LEN];
    uint64_t                           now, ttl;
    ngx_str_t                          args[2];
    ngx_queue_t                       *q;
    ngx_http_cache_guard_ctx_t        *ctx;
    ngx_http_cache_guard_zone_t       *zone;
    ngx_http_cache_guard_lock_slot_t  *s;
    ngx_http_cache_guard_main_conf_t  *mcf;

    now = ngx_http_cache_guard_now();
    mcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                              ngx_http_cache_guard_module);

    for (q = ngx_queue_head(&ngx_http_cache_guard_holders);
         q != ngx_queue_sentinel(&ngx_http_cache_guard_holders);
         q = ngx_queue_next(q))
    {
        ctx = ngx_queue_data(q, ngx_http_cache_guard_ctx_t, held);
        ttl = ctx->policy->lock_ttl;

        if (!ngx_http_cache_guard_fetching(ctx)) {
            continue;
        }

        if (ctx->node_locked) {
            zone = ctx->zone;
            s = &zone->sh->locks[ctx->slot];

            ngx_shmtx_lock(&zone->shpool->mutex);

            if (ngx_http_cache_guard_slot_is(s, ctx) && s->gen == ctx->gen
                && s->expires < now + ttl / 2)
            {
                s->expires = now + ttl;
            }

            ngx_shmtx_unlock(&zone->shpool->mutex);
        }

        if (ctx->redis_locked && mcf && mcf->redis
            && ctx->rlock_until < now + ttl / 2)
        {
            ctx->rlock_until = now + ttl;

            args[0].data = ctx->token;
            args[0].len = sizeof(ctx->token);
            args[1].data = buf;
            args[1].len = ngx_sprintf(buf, "%uL", ttl) - buf;

            /* refused (breaker open, no connection): the lock expires */
            (void) ngx_http_cache_guard_redis_script(mcf->redis, "EVAL",
                                        &ngx_http_cache_guard_renew_script,
                                        &ctx->lkey, 2, args,
                                        ngx_http_cache_guard_renew_done, NULL);
        }
    }

    if (!ngx_queue_empty(&ngx_http_cache_guard_holders)) {
        ngx_add_timer(ev, NGX_HTTP_CACHE_GUARD_RENEW);
    }
}


/*
 * Whether a holder still works for its key: before the origin (its lookup
 * and lock replies are bounded by Redis' time-out), or while its upstream
 * still reads the origin's answer.  Once the origin has answered, a client
 * that reads slowly holds the fill, and the lock is left to expire:
 * nobody follows it past lock.ttl.
 */

static ngx_uint_t
ngx_http_cache_guard_fetching(ngx_http_cache_guard_ctx_t *ctx)
{
    ngx_http_upstream_t  *u;

    if (!ctx->to_origin && ctx->state != NGX_HTTP_CACHE_GUARD_S_DONE) {
        return 1;
    }

    u = ctx->request->upstream;

    if (u == NULL || u->peer.connection == NULL) {
        return 0;
    }

    return !(u->pipe && (u->pipe->upstream_done || u->pipe->upstream_eof
                         || u->pipe->upstream_error));
}


static void
ngx_http_cache_guard_renew_done(redisReply *reply, void *data)
{
    /* nothing to do: a lock not renewed expires, and one waiter takes over */
}


/* after a wake-up: did the fill this request waited for fail? */

ngx_uint_t
ngx_http_cache_guard_lock_failed(ngx_http_cache_guard_ctx_t *ctx)
{
    ngx_uint_t                         failed;
    ngx_http_cache_guard_zone_t       *zone;
    ngx_http_cache_guard_lock_slot_t  *s;

    zone = ctx->zone;
    s = &zone->sh->locks[ctx->slot];
    failed = 0;

    ngx_shmtx_lock(&zone->shpool->mutex);

    if (ngx_http_cache_guard_slot_is(s, ctx) && s->expires == 0
        && s->gen == ctx->gen + 1)
    {
        failed = s->failed;
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    return failed;
}


/* a wait that passed lock.wait, counted once whatever follows */

void
ngx_http_cache_guard_lock_late(ngx_http_cache_guard_ctx_t *ctx)
{
    if (ctx->late) {
        return;
    }

    ctx->late = 1;

    if (ctx->policy->rec) {
        (void) ngx_atomic_fetch_add(&ctx->policy->rec->m.lock_timeouts, 1);
    }
}


ngx_int_t
ngx_http_cache_guard_lock_wait(ngx_http_cache_guard_ctx_t *ctx)
{
    ngx_event_t  *ev;

    ev = &ngx_http_cache_guard_lock_tick;

    if (ev->handler == NULL) {
        ngx_queue_init(&ngx_http_cache_guard_waiters);
        ngx_http_cache_guard_tick_conn.fd = (ngx_socket_t) -1;
        ev->data = &ngx_http_cache_guard_tick_conn;
        ev->handler = ngx_http_cache_guard_tick_handler;
        ev->log = ngx_cycle->log;

        /*
         * not cancelable: a worker shutting down gracefully answers its
         * waiters first, which lock.wait bounds
         */
    }

    ngx_queue_insert_tail(&ngx_http_cache_guard_waiters, &ctx->queue);
    ctx->queued = 1;

    if (!ev->timer_set) {
        ngx_add_timer(ev, NGX_HTTP_CACHE_GUARD_TICK);
    }

    return NGX_OK;
}


void
ngx_http_cache_guard_lock_unwait(ngx_http_cache_guard_ctx_t *ctx)
{
    if (ctx->queued) {
        ngx_queue_remove(&ctx->queue);
        ctx->queued = 0;
    }
}


static void
ngx_http_cache_guard_kick(void)
{
    ngx_event_t  *ev;

    ev = &ngx_http_cache_guard_lock_tick;

    if (ev->handler && !ev->posted
        && !ngx_queue_empty(&ngx_http_cache_guard_waiters))
    {
        ngx_post_event(ev, &ngx_posted_events);
    }
}


static void
ngx_http_cache_guard_tick_handler(ngx_event_t *ev)
{
    uint64_t                           now;
    ngx_pid_t                          pid;
    ngx_uint_t                         released, check_pid;
    ngx_queue_t                       *q, *next;
    ngx_http_cache_guard_ctx_t        *ctx;
    ngx_http_cache_guard_zone_t       *zone;
    ngx_http_cache_guard_lock_slot_t  *s;

    if (ev->timer_set) {
        ngx_del_timer(ev);
    }

    now = ngx_http_cache_guard_now();

    /* a holder's death is looked for every 100 ms, not on every tick */
    check_pid = (++ngx_http_cache_guard_ticks % 20 == 0);

    for (q = ngx_queue_head(&ngx_http_cache_guard_waiters);
         q != ngx_queue_sentinel(&ngx_http_cache_guard_waiters);
         q = next)
    {
        next = ngx_queue_next(q);
        ctx = ngx_queue_data(q, ngx_http_cache_guard_ctx_t, queue);
        zone = ctx->zone;
        s = &zone->sh->locks[ctx->slot];

        /* read under the mutex: another worker may rewrite the slot */

        ngx_shmtx_lock(&zone->shpool->mutex);

        released = !ngx_http_cache_guard_slot_is(s, ctx)
                   || s->gen != ctx->gen || s->expires <= now;
        pid = s->pid;

        ngx_shmtx_unlock(&zone->shpool->mutex);

        if (!released && check_pid && !ngx_http_cache_guard_alive(pid)) {
            released = 1;
        }

        if (!released) {

            if (ngx_current_msec - ctx->wait_start < ctx->policy->lock_wait) {
                continue;
            }

            /*
             * lock.wait passed and the filler is alive and fetching: with
             * "follow" and no stale copy, going to the origin now would
             * only double its load; the slot's own lock.ttl bounds this.
             */

            if (ctx->policy->on_timeout == NGX_HTTP_CACHE_GUARD_ON_FOLLOW
                && ctx->stale_blob.len == 0)
            {
                ngx_http_cache_guard_lock_late(ctx);
                continue;
            }
        }

        ctx->timed_out = !released;
        ngx_http_cache_guard_lock_unwait(ctx);
        ngx_http_cache_guard_resume(ctx);
    }

    if (!ngx_queue_empty(&ngx_http_cache_guard_waiters)) {
        ngx_add_timer(ev, NGX_HTTP_CACHE_GUARD_TICK);
    }
}


static ngx_uint_t
ngx_http_cache_guard_alive(ngx_pid_t pid)
{
    if (pid == ngx_pid) {
        return 1;
    }

    return kill(pid, 0) == 0 || ngx_errno != NGX_ESRCH;
}


/*
 * SET lock token NX PX ttl and GET key, pipelined: the GET catches a value
 * stored between this request's first GET and its lock attempt.  Both
 * replies arrive in order; the GET's reply goes to l2_done, the request
 * flow's own handler of a GET, which resumes the request.
 */

ngx_int_t
ngx_http_cache_guard_rlock_try(ngx_http_cache_guard_ctx_t *ctx,
    ngx_http_cache_guard_redis_t *rd, ngx_http_cache_guard_redis_pt l2_done)
{
    u_char              *p, px[NGX_INT64_LEN], rnd[8];
    size_t               argvlen[6];
    uint32_t             v;
    const char          *argv[6];
    ngx_http_request_t  *r;

    r = ctx->request;

    if (ctx->lkey.len == 0) {
        ctx->lkey.len = rd->prefix.len + sizeof("lock:") - 1 + ctx->key.len;
        ctx->lkey.data = ngx_pnalloc(r->pool, ctx->lkey.len);
        if (ctx->lkey.data == NULL) {
            return NGX_ERROR;
        }

        p = ngx_cpymem(ctx->lkey.data, rd->prefix.data, rd->prefix.len);
        p = ngx_cpymem(p, "lock:", sizeof("lock:") - 1);
        ngx_memcpy(p, ctx->key.data, ctx->key.len);

        v = (uint32_t) ngx_random() ^ ((uint32_t) ngx_pid << 16);
        ngx_memcpy(rnd, &v, 4);
        v = (uint32_t) ngx_random() ^ (uint32_t) ngx_current_msec;
        ngx_memcpy(rnd + 4, &v, 4);
        ngx_hex_dump(ctx->token, rnd, 8);
    }

    p = ngx_sprintf(px, "%M", ctx->policy->lock_ttl);

    argv[0] = "SET";
    argvlen[0] = 3;
    argv[1] = (const char *) ctx->lkey.data;
    argvlen[1] = ctx->lkey.len;
    argv[2] = (const char *) ctx->token;
    argvlen[2] = sizeof(ctx->token);
    argv[3] = "NX";
    argvlen[3] = 2;
    argv[4] = "PX";
    argvlen[4] = 2;
    argv[5] = (const char *) px;
    argvlen[5] = p - px;

    ctx->rlock_rc = NGX_ERROR;
    ctx->cmd2 = ngx_http_cache_guard_redis_command(rd,
                                                ngx_http_cache_guard_rlock_done,
                                                ctx, 6, argv, argvlen);
    if (ctx->cmd2 == NULL) {
        return NGX_ERROR;
    }

    argv[0] = "GET";
    argv[1] = (const char *) ctx->rkey.data;
    argvlen[1] = ctx->rkey.len;

    ctx->l2_rc = NGX_ERROR;

    /* the SET NX was let through: its GET must go too, or the lock is lost */
    rd->force = 1;

    ctx->cmd = ngx_http_cache_guard_redis_command(rd, l2_done, ctx, 2, argv,
                                                  argvlen);
    if (ctx->cmd == NULL) {
        ngx_http_cache_guard_redis_cancel(ctx->cmd2);
        ctx->cmd2 = NULL;
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void
ngx_http_cache_guard_rlock_done(redisReply *reply, void *data)
{
    ngx_http_cache_guard_ctx_t  *ctx = data;

    ctx->cmd2 = NULL;

    if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
        ctx->rlock_rc = NGX_ERROR;

    } else if (reply->type == REDIS_REPLY_STATUS) {
        ctx->rlock_rc = NGX_OK;
        ctx->redis_locked = 1;
        ctx->rlock_until = ngx_http_cache_guard_now() + ctx->policy->lock_ttl;
        ngx_http_cache_guard_hold(ctx);

    } else {
        ctx->rlock_rc = NGX_DECLINED;
    }
}


/*
 * Released by its holder only, whatever happens to the request: the
 * release carries its own copy of the key and token.
 */

void
ngx_http_cache_guard_rlock_release(ngx_http_cache_guard_ctx_t *ctx,
    ngx_http_cache_guard_redis_t *rd)
{
    ngx_http_cache_guard_release_t  *rl;

    if (!ctx->redis_locked) {
        return;
    }

    ctx->redis_locked = 0;
    ngx_http_cache_guard_unhold(ctx);

    rl = ngx_alloc(sizeof(ngx_http_cache_guard_release_t) + ctx->lkey.len
                   + sizeof(ctx->token), rd->log);
    if (rl == NULL) {
        return;
    }

    rl->redis = rd;
    rl->eval = 0;
    rl->lkey.len = ctx->lkey.len;
    rl->lkey.data = (u_char *) rl + sizeof(ngx_http_cache_guard_release_t);
    ngx_memcpy(rl->lkey.data, ctx->lkey.data, ctx->lkey.len);
    rl->token.len = sizeof(ctx->token);
    rl->token.data = rl->lkey.data + rl->lkey.len;
    ngx_memcpy(rl->token.data, ctx->token, sizeof(ctx->token));

    ngx_http_cache_guard_release_send(rl);
}


static void
ngx_http_cache_guard_release_send(ngx_http_cache_guard_release_t *rl)
{
    ngx_str_t  sha;

    ngx_str_set(&sha, NGX_HTTP_CACHE_GUARD_RELEASE_SHA);

    /* a lock held is released on a live connection, whatever the breaker */
    rl->redis->force = (rl->redis->conn.c != NULL);

    if (ngx_http_cache_guard_redis_script(rl->redis,
                                      rl->eval ? "EVAL" : "EVALSHA",
                                      rl->eval
                                      ? &ngx_http_cache_guard_release_script
                                      : &sha,
                                      &rl->lkey, 1, &rl->token,
                                      ngx_http_cache_guard_release_done, rl)
        == NULL)
    {
        /* Redis is away: the lock expires by itself */
        ngx_free(rl);
    }
}


static void
ngx_http_cache_guard_release_done(redisReply *reply, void *data)
{
    ngx_http_cache_guard_release_t  *rl = data;

    if (reply && reply->type == REDIS_REPLY_ERROR && !rl->eval
        && reply->len >= 8 && ngx_strncmp(reply->str, "NOSCRIPT", 8) == 0)
    {
        /* the script cache was flushed or this is a new server */
        rl->eval = 1;
        ngx_http_cache_guard_release_send(rl);
        return;
    }

    if (reply && reply->type == REDIS_REPLY_ERROR) {
        ngx_http_cache_guard_redis_error(rl->redis,
                                         "cache guard: redis \"%V\" lock "
                                         "release failed: %*s",
                                         &rl->redis->addr_text,
                                         (size_t) ngx_min(reply->len, 256),
                                         reply->str);
    }

    ngx_free(rl);
}


/*
 * The end of a fill, stored or not: release the Redis lock and the node
 * lock (which wakes this node's waiters) and the origin slot.
 */

void
ngx_http_cache_guard_fill_end(ngx_http_cache_guard_ctx_t *ctx,
    ngx_uint_t failed)
{
    ngx_http_cache_guard_main_conf_t  *mcf;

    if (ctx->redis_locked) {
        mcf = ngx_http_get_module_main_conf(ctx->request,
                                            ngx_http_cache_guard_module);
        ngx_http_cache_guard_rlock_release(ctx, mcf->redis);
    }

    ngx_http_cache_guard_lock_release(ctx, failed);

    if (ctx->counted) {
        ctx->counted = 0;
        ngx_http_cache_guard_inflight_done(ctx->policy->rec);
    }
}
