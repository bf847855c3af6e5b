
/*
 * Copyright (C) nginx-cache-guard authors
 *
 * The request flow, run in the precontent phase (after nginx's own access
 * control) as a small state machine: L1, then a Redis GET, then, for a
 * miss, the node lock and the Redis lock, so that one request fills a key
 * while the others wait; and the background refresh.  A request that
 * waits is parked (NGX_DONE with a reference on the request, see the ctx
 * file) and resumed by a posted event.  The filler goes to the origin (the
 * origin file) through the location's own content handler, whose response
 * the filters capture; a hit, a stale copy or the fallback is served by
 * our content handlers (the respond file).
 */


#include "ngx_http_cache_guard_handler.h"
#include "ngx_http_cache_guard_respond.h"
#include "ngx_http_cache_guard_ctx.h"
#include "ngx_http_cache_guard_origin.h"
#include "ngx_http_cache_guard_codec.h"
#include "ngx_http_cache_guard_key.h"
#include "ngx_http_cache_guard_lock.h"
#include "ngx_http_cache_guard_lua.h"
#include "ngx_http_cache_guard_redis.h"
#include "ngx_http_cache_guard_store.h"
#include "ngx_http_cache_guard_stats.h"

#include <math.h>


static ngx_int_t ngx_http_cache_guard_step(ngx_http_request_t *r,
    ngx_http_cache_guard_ctx_t *ctx);
static ngx_int_t ngx_http_cache_guard_refresh_step(ngx_http_request_t *r,
    ngx_http_cache_guard_ctx_t *ctx);
static ngx_int_t ngx_http_cache_guard_begin(ngx_http_request_t *r,
    ngx_http_cache_guard_ctx_t *ctx);
static ngx_int_t ngx_http_cache_guard_make_key(ngx_http_request_t *r,
    ngx_http_cache_guard_ctx_t *ctx);
static ngx_int_t ngx_http_cache_guard_decide(ngx_http_request_t *r,
    ngx_http_cache_guard_ctx_t *ctx);
static ngx_int_t ngx_http_cache_guard_locked(ngx_http_request_t *r,
    ngx_http_cache_guard_ctx_t *ctx);
static ngx_int_t ngx_http_cache_guard_timeout(ngx_http_request_t *r,
    ngx_http_cache_guard_ctx_t *ctx);
static ngx_int_t ngx_http_cache_guard_evaluate(ngx_http_request_t *r,
    ngx_http_cache_guard_ctx_t *ctx, ngx_str_t *blob, ngx_uint_t verify,
    ngx_uint_t level);
static ngx_int_t ngx_http_cache_guard_refresh(ngx_http_request_t *r,
    ngx_http_cache_guard_ctx_t *ctx);
static void ngx_http_cache_guard_l2_done(redisReply *reply, void *data);
static void ngx_http_cache_guard_poll(ngx_event_t *ev);


ngx_int_t
ngx_http_cache_guard_precontent_handler(ngx_http_request_t *r)
{
    ngx_int_t                         rc;
    ngx_http_cache_guard_ctx_t       *ctx;
    ngx_http_cache_guard_loc_conf_t  *lcf;

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_cache_guard_module);

    if (!lcf->enable) {
        return NGX_DECLINED;
    }

    ctx = ngx_http_cache_guard_find_ctx(r);

    if (r != r->main) {
        /* only our own refresh and warm-up subrequests carry a context */

        if (ctx == NULL) {
            return NGX_DECLINED;
        }

        if (ctx->waiting) {
            return NGX_DONE;
        }

        if (ctx->warm) {
            /* a warm-up: the normal path, for the location it reached */

            if (ctx->policy == NULL) {
                ctx->zone = lcf->shm_zone->data;
                ctx->policy = lcf->policy;
                ctx->start_us = ngx_http_cache_guard_usec();
            }

            rc = ngx_http_cache_guard_step(r, ctx);

            return (rc == NGX_DECLINED && ctx->answered) ? NGX_OK : rc;
        }

        rc = ngx_http_cache_guard_refresh_step(r, ctx);

        return (rc == NGX_DECLINED && ctx->answered) ? NGX_OK : rc;
    }

    if (ctx == NULL) {
        ctx = ngx_http_cache_guard_get_ctx(r);
        if (ctx == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    if (ctx->waiting) {
        return NGX_DONE;
    }

    /* timed from the lookup: refusals in the access phase are not */

    if (ctx->state == NGX_HTTP_CACHE_GUARD_S_NEW && ctx->start_us == 0) {
        ctx->start_us = ngx_http_cache_guard_usec();
    }

    rc = ngx_http_cache_guard_step(r, ctx);

    /*
     * Our own answer (a hit, a stale copy, a refusal): the rest of the
     * precontent phase (try_files, mirror) must not replace it.
     */

    return (rc == NGX_DECLINED && ctx->answered) ? NGX_OK : rc;
}


static ngx_int_t
ngx_http_cache_guard_step(ngx_http_request_t *r,
    ngx_http_cache_guard_ctx_t *ctx)
{
    ngx_int_t   rc;
    ngx_uint_t  failed;

    switch (ctx->state) {

    case NGX_HTTP_CACHE_GUARD_S_NEW:
        return ngx_http_cache_guard_begin(r, ctx);

    case NGX_HTTP_CACHE_GUARD_S_L2:
        if (ctx->l2_rc == NGX_OK) {
            rc = ngx_http_cache_guard_evaluate(r, ctx, &ctx->l2_value, 1,
                                               NGX_HTTP_CACHE_GUARD_LEVEL_L2);
            if (rc == NGX_OK) {
                ngx_http_cache_guard_l1_keep(r, ctx, &ctx->l2_value,
                                             &ctx->entry);
                return NGX_DECLINED;
            }
        }

        return ngx_http_cache_guard_decide(r, ctx);

    case NGX_HTTP_CACHE_GUARD_S_LOCK:

        /* woken: the fill we waited for ended, or lock.wait passed */

        if (ctx->timed_out) {
            return ngx_http_cache_guard_timeout(r, ctx);
        }

        failed = ngx_http_cache_guard_lock_failed(ctx);

        if (failed == NGX_HTTP_CACHE_GUARD_FILL_FAILED) {
            return ngx_http_cache_guard_stale_or_fallback(r, ctx);
        }

        if (failed == NGX_HTTP_CACHE_GUARD_FILL_PASS) {
            return ngx_http_cache_guard_origin(r, ctx,
                                               NGX_HTTP_CACHE_GUARD_MISS, 0);
        }

        return ngx_http_cache_guard_begin(r, ctx);

    case NGX_HTTP_CACHE_GUARD_S_RLOCK:
        return ngx_http_cache_guard_locked(r, ctx);

    default: /* NGX_HTTP_CACHE_GUARD_S_DONE */
        return NGX_DECLINED;
    }
}


/* the lookup: L1, then Redis */

static ngx_int_t
ngx_http_cache_guard_begin(ngx_http_request_t *r,
    ngx_http_cache_guard_ctx_t *ctx)
{
    size_t                             argvlen[2];
    ngx_int_t                          rc;
    ngx_str_t                          blob;
    const char                        *argv[2];
    ngx_http_cache_guard_main_conf_t  *mcf;

    if (ctx->key.len == 0) {

        if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))
            || r->headers_in.authorization)
        {
            /* a response to an authorised request is that user's alone */
            return ngx_http_cache_guard_origin(r, ctx,
                                               NGX_HTTP_CACHE_GUARD_BYPASS, 0);
        }

        /*
         * A '#' in the target: nginx cuts $uri and $args there, proxy_pass
         * sends it whole, so a key made of them could name what some
         * origin answers for another URL.  Not cached.
         */

        if (ngx_strlchr(r->unparsed_uri.data,
                        r->unparsed_uri.data + r->unparsed_uri.len, '#'))
        {
            return ngx_http_cache_guard_origin(r, ctx,
                                               NGX_HTTP_CACHE_GUARD_BYPASS, 0);
        }

        rc = ngx_http_cache_guard_make_key(r, ctx);

        if (rc == NGX_BUSY) {
            /* the key hook failed (logged), on_hook_error is "reject" */
            return ngx_http_cache_guard_reject_hook(r, ctx);
        }

        if (rc == NGX_ERROR) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        if (rc == NGX_ABORT) {

            /* over validate.max_key_length, a rule of the policy */

            if (ctx->policy->max_key_length < NGX_HTTP_CACHE_GUARD_MAX_KEY) {
                return ngx_http_cache_guard_reject(r, ctx,
                                               NGX_HTTP_CACHE_GUARD_INVALID,
                                               ctx->policy->reject_status,
                                               "the key is too long");
            }

            /*
             * Over what the store holds: passed to the origin uncached, as
             * plain nginx would, or a long URL could not be reached at all;
             * never cut down to a key that another URL has.
             */

            ngx_str_null(&ctx->rkey);

            return ngx_http_cache_guard_origin(r, ctx,
                                               NGX_HTTP_CACHE_GUARD_BYPASS, 0);
        }

        if (rc != NGX_OK) {
            return ngx_http_cache_guard_origin(r, ctx,
                                               NGX_HTTP_CACHE_GUARD_BYPASS, 0);
        }
    }

    if (ctx->policy->l1) {
        rc = ngx_http_cache_guard_l1_get(ctx->zone, &ctx->key, r->pool, &blob,
                                         ngx_http_cache_guard_now());

        if (rc == NGX_ERROR) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        if (rc == NGX_OK
            && ngx_http_cache_guard_evaluate(r, ctx, &blob, 0,
                                             NGX_HTTP_CACHE_GUARD_LEVEL_L1)
               == NGX_OK)
        {
            return NGX_DECLINED;
        }
    }

    mcf = ngx_http_get_module_main_conf(r, ngx_http_cache_guard_module);

    if (mcf->redis == NULL) {
        return ngx_http_cache_guard_decide(r, ctx);
    }

    argv[0] = "GET";
    argvlen[0] = 3;
    argv[1] = (const char *) ctx->rkey.data;
    argvlen[1] = ctx->rkey.len;

    ctx->cmd = ngx_http_cache_guard_redis_command(mcf->redis,
                                                  ngx_http_cache_guard_l2_done,
                                                  ctx, 2, argv, argvlen);

    if (ctx->cmd == NULL) {
        /* Redis is down or backing off: the node lock still protects */
        return ngx_http_cache_guard_decide(r, ctx);
    }

    ctx->state = NGX_HTTP_CACHE_GUARD_S_L2;

    return ngx_http_cache_guard_park(r, ctx);
}


/* no fresh entry: serve stale while revalidating, or fill, or wait */

static ngx_int_t
ngx_http_cache_guard_decide(ngx_http_request_t *r,
    ngx_http_cache_guard_ctx_t *ctx)
{
    ngx_int_t                          rc;
    ngx_http_cache_guard_policy_t     *pl;
    ngx_http_cache_guard_main_conf_t  *mcf;

    pl = ctx->policy;

    /* a warm-up fills in place: its pool ends with it, a refresh's not */

    if (ctx->stale_blob.len && !ctx->warm
        && ngx_http_cache_guard_now() < ctx->stale.fresh_until
                                         + pl->while_revalidate)
    {
        /* STALE for the request that starts the refresh */

        return ngx_http_cache_guard_serve_stale(r, ctx,
                   (r->method == NGX_HTTP_GET
                    && ngx_http_cache_guard_refresh(r, ctx) == NGX_OK)
                   ? NGX_HTTP_CACHE_GUARD_STALE
                   : NGX_HTTP_CACHE_GUARD_UPDATING);
    }

    /* a HEAD fills too (with a GET), so its misses are single flight */

    if (!pl->lock || !(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return ngx_http_cache_guard_origin(r, ctx, NGX_HTTP_CACHE_GUARD_MISS,
                                      (r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))
                                      != 0);
    }

    if (ctx->wait_start == 0) {
        ctx->wait_start = ngx_current_msec ? ngx_current_msec : 1;
    }

    /* before the lock: a holder's cleanup releases it, whatever happens */

    if (ngx_http_cache_guard_set_cleanup(r, ctx) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_cache_guard_lock_acquire(ctx, pl->lock_ttl);

    if (rc == NGX_BUSY) {
        if (!ctx->waited && pl->rec) {
            ctx->waited = 1;
            (void) ngx_atomic_fetch_add(&pl->rec->m.lock_waits, 1);
        }

        /* a live filler holds it: "follow" waits on without a stale copy */

        if (ngx_current_msec - ctx->wait_start >= pl->lock_wait) {

            if (pl->on_timeout != NGX_HTTP_CACHE_GUARD_ON_FOLLOW
                || ctx->stale_blob.len)
            {
                ctx->timed_out = 1;
                return ngx_http_cache_guard_timeout(r, ctx);
            }

            ngx_http_cache_guard_lock_late(ctx);
        }

        ngx_http_cache_guard_lock_wait(ctx);
        ctx->state = NGX_HTTP_CACHE_GUARD_S_LOCK;

        return ngx_http_cache_guard_park(r, ctx);
    }

    mcf = ngx_http_get_module_main_conf(r, ngx_http_cache_guard_module);

    if (mcf->redis
        && ngx_http_cache_guard_rlock_try(ctx, mcf->redis,
                                          ngx_http_cache_guard_l2_done)
           == NGX_OK)
    {
        ctx->state = NGX_HTTP_CACHE_GUARD_S_RLOCK;
        return ngx_http_cache_guard_park(r, ctx);
    }

    return ngx_http_cache_guard_origin(r, ctx, NGX_HTTP_CACHE_GUARD_MISS, 1);
}


/* the replies to SET NX and GET: fill, take the value, or wait remotely */

static ngx_int_t
ngx_http_cache_guard_locked(ngx_http_request_t *r,
    ngx_http_cache_guard_ctx_t *ctx)
{
    ngx_msec_t  waited, max;

    if (ctx->l2_rc == NGX_OK
        && ngx_http_cache_guard_evaluate(r, ctx, &ctx->l2_value, 1,
                                         NGX_HTTP_CACHE_GUARD_LEVEL_L2)
           == NGX_OK)
    {
        /* another node stored it meanwhile */
        ngx_http_cache_guard_l1_keep(r, ctx, &ctx->l2_value, &ctx->entry);
        ngx_http_cache_guard_fill_end(ctx, NGX_HTTP_CACHE_GUARD_FILL_STORED);
        return NGX_DECLINED;
    }

    if (ctx->rlock_rc != NGX_DECLINED) {
        /* the Redis lock is ours, or Redis fails: the node lock holds */
        return ngx_http_cache_guard_origin(r, ctx,
                                           NGX_HTTP_CACHE_GUARD_MISS, 1);
    }

    /*
     * "follow" without a stale copy polls on while the other node's lock
     * lives: its holder renews it while it fills, and if that node dies
     * it expires within lock.ttl; then this request takes it (SET NX).
     */

    waited = ngx_current_msec - ctx->wait_start;

    if (waited >= ctx->policy->lock_wait) {

        if (ctx->policy->on_timeout != NGX_HTTP_CACHE_GUARD_ON_FOLLOW
            || ctx->stale_blob.len)
        {
            ngx_http_cache_guard_fill_end(ctx,
                                          NGX_HTTP_CACHE_GUARD_FILL_RETRY);
            ctx->timed_out = 1;
            return ngx_http_cache_guard_timeout(r, ctx);
        }

        ngx_http_cache_guard_lock_late(ctx);
    }

    /*
     * Another node fills: poll for its value, soon at first, then every
     * 40 ms at most, so a waiter here learns of it within 50 ms; every
     * 200 ms once past lock.wait, since that fill is a slow one.
     */

    max = ctx->late ? 200 : 40;
    ctx->poll = ctx->poll ? ngx_min(ctx->poll * 2, max) : 10;

    ctx->poll_timer.handler = ngx_http_cache_guard_poll;
    ctx->poll_timer.data = ctx;
    ctx->poll_timer.log = r->connection->log;
    ngx_add_timer(&ctx->poll_timer, ctx->poll);

    ctx->state = NGX_HTTP_CACHE_GUARD_S_REMOTE;

    return ngx_http_cache_guard_park(r, ctx);
}


static void
ngx_http_cache_guard_poll(ngx_event_t *ev)
{
    ngx_http_cache_guard_ctx_t        *ctx = ev->data;

    ngx_http_cache_guard_main_conf_t  *mcf;

    mcf = ngx_http_get_module_main_conf(ctx->request,
                                        ngx_http_cache_guard_module);

    ctx->state = NGX_HTTP_CACHE_GUARD_S_RLOCK;

    if (ngx_http_cache_guard_rlock_try(ctx, mcf->redis,
                                       ngx_http_cache_guard_l2_done)
        != NGX_OK)
    {
        ctx->rlock_rc = NGX_ERROR;
        ctx->l2_rc = NGX_ERROR;
        ngx_http_cache_guard_resume(ctx);
    }
}


static ngx_int_t
ngx_http_cache_guard_timeout(ngx_http_request_t *r,
    ngx_http_cache_guard_ctx_t *ctx)
{
    ngx_http_cache_guard_lock_late(ctx);

    switch (ctx->policy->on_timeout) {

    /* "follow" comes here only with a stale copy, at lock.wait */

    case NGX_HTTP_CACHE_GUARD_ON_FOLLOW:
    case NGX_HTTP_CACHE_GUARD_ON_STALE:
        if (ctx->stale_blob.len) {
            return ngx_http_cache_guard_serve_stale(r, ctx,
                                                   NGX_HTTP_CACHE_GUARD_STALE);
        }

        /* fall through */

    case NGX_HTTP_CACHE_GUARD_ON_ORIGIN:
        return ngx_http_cache_guard_origin(r, ctx,
                                           NGX_HTTP_CACHE_GUARD_LOCK_TIMEOUT,
                                           0);

    default: /* NGX_HTTP_CACHE_GUARD_ON_ERROR */
        return ngx_http_cache_guard_fallback(r, ctx);
    }
}


/*
 * Decodes an entry.  A fresh one is served (and may start an early
 * refresh); a stale one is kept as the stale copy; one that does not
 * decode was not written by us, or was damaged: it is a miss, and the
 * fill overwrites it.  NGX_OK: the request is answered from the entry
 * (our content handler is set); NGX_DECLINED: no fresh entry, go on.
 */

static ngx_int_t
ngx_http_cache_guard_evaluate(ngx_http_request_t *r,
    ngx_http_cache_guard_ctx_t *ctx, ngx_str_t *blob, ngx_uint_t verify,
    ngx_uint_t level)
{
    double                          rnd;
    uint64_t                        now;
    ngx_http_cache_guard_entry_t    e;
    ngx_http_cache_guard_policy_t  *pl;

    if (ngx_http_cache_guard_entry_decode(blob->data, blob->len, &e, verify)
        != NGX_OK)
    {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "cache guard: invalid entry for \"%V\" in %s, "
                      "ignored", &ctx->key,
                      verify ? "redis" : "shared memory");
        return NGX_DECLINED;
    }

    now = ngx_http_cache_guard_now();
    pl = ctx->policy;

    if (e.fresh_until <= now) {
        if (now < e.stale_until
            && (ctx->stale_blob.len == 0
                || e.fresh_until > ctx->stale.fresh_until))
        {
            ctx->stale = e;
            ctx->stale_blob = *blob;
        }

        return NGX_DECLINED;
    }

    ctx->entry = e;
    ctx->level = level;
    ctx->status = (e.flags & NGX_HTTP_CACHE_GUARD_ENTRY_NEGATIVE)
                  ? NGX_HTTP_CACHE_GUARD_NEGATIVE : NGX_HTTP_CACHE_GUARD_HIT;
    ctx->state = NGX_HTTP_CACHE_GUARD_S_DONE;

    /*
     * XFetch (Vattani et al.): refresh early with a probability that grows
     * as fresh-until nears, scaled by how long a fill takes.
     */

    /*
     * -ln(rnd) is at most ln(2^31) < 22: far from fresh-until no draw can
     * refresh, and random() and log() are skipped on the hot path.
     */

    if (pl->beta > 0 && e.fill_ms && r->method == NGX_HTTP_GET
        && (double) (e.fresh_until - now)
           < 22.0 * (double) e.fill_ms * pl->beta)
    {
        rnd = ((double) ngx_random() + 1.0) / 2147483648.0;

        if ((double) now - (double) e.fill_ms * pl->beta * log(rnd)
            >= (double) e.fresh_until
            && ngx_http_cache_guard_refresh(r, ctx) == NGX_OK
            && pl->rec)
        {
            (void) ngx_atomic_fetch_add(&pl->rec->m.early_refreshes, 1);
        }
    }

    /* after the refresh: its subrequest copies the content handler */
    ngx_http_cache_guard_answer(r, ctx, ngx_http_cache_guard_send_hit);

    return NGX_OK;
}


/*
 * A background refresh: a subrequest through the location's own content
 * handler, holding this node's lock (and then the Redis lock).  NGX_OK
 * when this request started one.
 */

static ngx_int_t
ngx_http_cache_guard_refresh(ngx_http_request_t *r,
    ngx_http_cache_guard_ctx_t *ctx)
{
    ngx_http_request_t          *sr;
    ngx_http_cache_guard_ctx_t  *sctx;

    if (ctx->refresh || ctx->warm || !ctx->policy->lock) {
        return NGX_DECLINED;
    }

    sctx = ngx_http_cache_guard_create_ctx(r->pool, ctx->zone, ctx->policy);
    if (sctx == NULL) {
        return NGX_ERROR;
    }

    sctx->key = ctx->key;
    sctx->rkey = ctx->rkey;
    sctx->hash = ctx->hash;
    sctx->check = ctx->check;
    sctx->gzip = ctx->gzip;
    sctx->refresh = 1;
    sctx->quiet = 1;

    if (ngx_http_cache_guard_lock_acquire(sctx, ctx->policy->lock_ttl)
        != NGX_OK)
    {
        /* someone refreshes it already */
        return NGX_DECLINED;
    }

    if (ngx_http_subrequest(r, &r->uri, &r->args, &sr, NULL,
                            NGX_HTTP_SUBREQUEST_CLONE
                            |NGX_HTTP_SUBREQUEST_BACKGROUND)
        != NGX_OK)
    {
        ngx_http_cache_guard_lock_release(sctx, 0);
        return NGX_ERROR;
    }

    if (ngx_http_cache_guard_attach_ctx(sr, sctx) != NGX_OK) {
        ngx_http_cache_guard_lock_release(sctx, 0);
        return NGX_ERROR;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_cache_guard_refresh_step(ngx_http_request_t *r,
    ngx_http_cache_guard_ctx_t *ctx)
{
    ngx_http_cache_guard_main_conf_t  *mcf;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_cache_guard_module);

    switch (ctx->state) {

    case NGX_HTTP_CACHE_GUARD_S_NEW:
        if (mcf->redis
            && ngx_http_cache_guard_rlock_try(ctx, mcf->redis,
                                              ngx_http_cache_guard_l2_done)
               == NGX_OK)
        {
            ctx->state = NGX_HTTP_CACHE_GUARD_S_RLOCK;
            return ngx_http_cache_guard_park(r, ctx);
        }

        break;

    case NGX_HTTP_CACHE_GUARD_S_RLOCK:
        if (ctx->rlock_rc == NGX_DECLINED) {
            /* another node refreshes it */
            ngx_http_cache_guard_fill_end(ctx,
                                          NGX_HTTP_CACHE_GUARD_FILL_STORED);
            ctx->state = NGX_HTTP_CACHE_GUARD_S_DONE;
            ngx_http_cache_guard_answer(r, ctx,
                                        ngx_http_cache_guard_send_nothing);
            return NGX_DECLINED;
        }

        break;

    default:
        return NGX_DECLINED;
    }

    if (ngx_http_cache_guard_origin(r, ctx, NGX_HTTP_CACHE_GUARD_MISS, 1)
        != NGX_DECLINED || !ctx->fill)
    {
        /* over the origin cap: no refresh now */
        ngx_http_cache_guard_answer(r, ctx, ngx_http_cache_guard_send_nothing);
    }

    return NGX_DECLINED;
}


/*
 * The key is the policy's template; a client that accepts gzip gets its
 * own variant, so an encoded response never reaches a client that cannot
 * decode it.  The variant is marked after a NUL byte, which no key can
 * hold (nginx refuses a NUL in a request line, a %00 in a URI and a NUL
 * in a header; a key that holds one anyway, from a hook, is not cached),
 * so no URL a client chooses can name another key's variant.
 */

static ngx_int_t
ngx_http_cache_guard_make_key(ngx_http_request_t *r,
    ngx_http_cache_guard_ctx_t *ctx)
{
    size_t                              len;
    ngx_int_t                           rc;
    ngx_str_t                          *prefix, *suffix, val;
    ngx_array_t                         parts;
    ngx_table_elt_t                    *ae;
    ngx_http_cache_guard_hook_rc_t      hrc;
    ngx_http_cache_guard_policy_t      *pl;
    ngx_http_cache_guard_key_part_t     part;
    ngx_http_cache_guard_main_conf_t   *mcf;

    static ngx_str_t  none = ngx_null_string;
    static ngx_str_t  gzip = ngx_string(NGX_HTTP_CACHE_GUARD_GZIP_VARIANT);

    mcf = ngx_http_get_module_main_conf(r, ngx_http_cache_guard_module);
    pl = ctx->policy;
    prefix = mcf->redis ? &mcf->redis->prefix : &none;

    ae = r->headers_in.accept_encoding;
    suffix = (ae && ngx_http_cache_guard_accepts_gzip(ae->value.data,
                                                      ae->value.len))
             ? &gzip : &none;

    if (pl->key_fn == LUA_NOREF) {
        rc = ngx_http_cache_guard_key_eval(r, pl->key, prefix, suffix,
                                           &ctx->rkey);

    } else {
        /* the hook's string, framed like a template's result */

        hrc = ngx_http_cache_guard_lua_call(r, pl,
                                            NGX_HTTP_CACHE_GUARD_HOOK_KEY,
                                            &val, NULL);
        if (hrc == NGX_HTTP_CACHE_GUARD_HOOK_ERROR) {
            /* "pass": bypass the cache */
            return (pl->on_hook_error == NGX_HTTP_CACHE_GUARD_ON_HOOK_PASS)
                   ? NGX_DECLINED : NGX_BUSY;
        }

        if (hrc == NGX_HTTP_CACHE_GUARD_HOOK_NIL) {
            return NGX_DECLINED;
        }

        part.text = val;
        part.index = -1;
        part.capture = -1;
        parts.elts = &part;
        parts.nelts = 1;

        rc = ngx_http_cache_guard_key_eval(r, &parts, prefix, suffix,
                                           &ctx->rkey);
    }

    if (rc != NGX_OK) {
        return rc;
    }

    len = ctx->rkey.len - prefix->len - suffix->len;

    if (len > pl->max_key_length) {
        return NGX_ABORT;
    }

    if (ngx_strlchr(ctx->rkey.data + prefix->len,
                    ctx->rkey.data + prefix->len + len, '\0'))
    {
        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "cache guard: a NUL in the key, not cached");
        return NGX_DECLINED;
    }

    ctx->key.data = ctx->rkey.data + prefix->len;
    ctx->key.len = ctx->rkey.len - prefix->len;
    ctx->gzip = (suffix->len != 0);

    return NGX_OK;
}


static void
ngx_http_cache_guard_l2_done(redisReply *reply, void *data)
{
    ngx_http_cache_guard_ctx_t  *ctx = data;

    ngx_http_request_t                *r;
    ngx_http_cache_guard_main_conf_t  *mcf;

    r = ctx->request;
    ctx->cmd = NULL;

    if (reply == NULL) {
        ctx->l2_rc = NGX_ERROR;

    } else if (reply->type == REDIS_REPLY_NIL) {
        ctx->l2_rc = NGX_DECLINED;

    } else if (reply->type == REDIS_REPLY_STRING
               && reply->len <= NGX_HTTP_CACHE_GUARD_ENTRY_MAX(ctx->policy))
    {
        ctx->l2_value.data = ngx_pnalloc(r->pool, reply->len);

        if (ctx->l2_value.data) {
            ngx_memcpy(ctx->l2_value.data, reply->str, reply->len);
            ctx->l2_value.len = reply->len;
            ctx->l2_rc = NGX_OK;

        } else {
            ctx->l2_rc = NGX_ERROR;
        }

    } else {
        /* an error reply, a wrong type or an oversized value: rate-limited */
        ctx->l2_rc = NGX_ERROR;
        mcf = ngx_http_get_module_main_conf(r, ngx_http_cache_guard_module);
        ngx_http_cache_guard_redis_error(mcf->redis,
                            "cache guard: unexpected redis reply of type %d "
                            "for \"%V\"%s%*s", reply->type, &ctx->rkey,
                            reply->type == REDIS_REPLY_ERROR ? ": " : "",
                            (size_t) (reply->type == REDIS_REPLY_ERROR
                                      ? ngx_min(reply->len, 128) : 0),
                            reply->type == REDIS_REPLY_ERROR
                            ? reply->str : "");
    }

    ngx_http_cache_guard_resume(ctx);
}


