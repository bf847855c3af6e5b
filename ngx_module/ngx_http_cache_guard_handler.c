
/*
 * Copyright (C) nginx-cache-guard authors
 *
 * The request flow, run in the precontent phase (after nginx's own access
 * control) as a small state machine: L1, then a Redis GET, then, for a
 * miss, the node lock and the Redis lock, so that one request fills a key
 * while the others wait.  A request that waits is parked (NGX_DONE with a
 * reference on the request) and resumed by a posted event.  The filler
 * falls through to the location's own content handler, whose response the
 * filters capture; a hit or a fallback is served by our content handlers.
 */


#include "ngx_http_cache_guard_handler.h"
#include "ngx_http_cache_guard_access.h"
#include "ngx_http_cache_guard_respond.h"
#include "ngx_http_cache_guard_breaker.h"
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
static ngx_int_t ngx_http_cache_guard_origin(ngx_http_request_t *r,
    ngx_http_cache_guard_ctx_t *ctx, ngx_uint_t status, ngx_uint_t fill);
static ngx_int_t ngx_http_cache_guard_fill_request(ngx_http_request_t *r,
    ngx_http_cache_guard_ctx_t *ctx);
static ngx_uint_t ngx_http_cache_guard_conditional(ngx_table_elt_t *h);
static ngx_int_t ngx_http_cache_guard_pass(ngx_http_request_t *r,
    ngx_http_cache_guard_ctx_t *ctx);
static ngx_int_t ngx_http_cache_guard_origin_down(ngx_http_request_t *r,
    ngx_http_cache_guard_ctx_t *ctx);
static ngx_int_t ngx_http_cache_guard_timeout(ngx_http_request_t *r,
    ngx_http_cache_guard_ctx_t *ctx);
static ngx_int_t ngx_http_cache_guard_serve_stale(ngx_http_request_t *r,
    ngx_http_cache_guard_ctx_t *ctx, ngx_uint_t status);
static ngx_int_t ngx_http_cache_guard_evaluate(ngx_http_request_t *r,
    ngx_http_cache_guard_ctx_t *ctx, ngx_str_t *blob, ngx_uint_t verify,
    ngx_uint_t level);
static ngx_int_t ngx_http_cache_guard_refresh(ngx_http_request_t *r,
    ngx_http_cache_guard_ctx_t *ctx);
static ngx_int_t ngx_http_cache_guard_park(ngx_http_request_t *r,
    ngx_http_cache_guard_ctx_t *ctx);
static void ngx_http_cache_guard_wake(ngx_event_t *ev);
static void ngx_http_cache_guard_poll(ngx_event_t *ev);
static void ngx_http_cache_guard_cleanup(void *data);
static ngx_int_t ngx_http_cache_guard_send_hit(ngx_http_request_t *r);
static ngx_int_t ngx_http_cache_guard_send_fallback(ngx_http_request_t *r);
static ngx_int_t ngx_http_cache_guard_send_nothing(ngx_http_request_t *r);
static ngx_int_t ngx_http_cache_guard_hit_header(ngx_http_request_t *r,
    ngx_str_t *name, ngx_str_t *value);
static ngx_int_t ngx_http_cache_guard_variable(ngx_http_variable_value_t *v,
    ngx_str_t *s);
static ngx_int_t ngx_http_cache_guard_get_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);


#define NGX_HTTP_CACHE_GUARD_SERVED  1


static ngx_http_variable_t  ngx_http_cache_guard_variables[] = {

    { ngx_string("cache_guard_status"), NULL,
      ngx_http_cache_guard_get_variable, 0,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("cache_guard_level"), NULL,
      ngx_http_cache_guard_get_variable, 1,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("cache_guard_key"), NULL,
      ngx_http_cache_guard_get_variable, 2,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


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


/*
 * An internal redirect (error_page, try_files to a named location,
 * X-Accel-Redirect) wipes the request's module contexts; a context that
 * holds locks or a fill is found again through its pool cleanup, as the
 * realip module does, so the fill goes on and the locks are released.
 */

ngx_http_cache_guard_ctx_t *
ngx_http_cache_guard_find_ctx_slow(ngx_http_request_t *r)
{
    ngx_pool_cleanup_t          *cln;
    ngx_http_cache_guard_ctx_t  *ctx;

    for (cln = r->pool->cleanup; cln; cln = cln->next) {
        if (cln->handler == ngx_http_cache_guard_cleanup) {
            ctx = cln->data;

            if (ctx->request == r) {
                ngx_http_set_ctx(r, ctx, ngx_http_cache_guard_module);
                return ctx;
            }
        }
    }

    return NULL;
}


ngx_http_cache_guard_ctx_t *
ngx_http_cache_guard_get_ctx(ngx_http_request_t *r)
{
    ngx_http_cache_guard_ctx_t       *ctx;
    ngx_http_cache_guard_loc_conf_t  *lcf;

    ctx = ngx_http_cache_guard_find_ctx(r);

    if (ctx) {
        return ctx;
    }

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_cache_guard_module);

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_cache_guard_ctx_t));
    if (ctx == NULL) {
        return NULL;
    }

    ctx->request = r;
    ctx->zone = lcf->shm_zone->data;
    ctx->policy = lcf->policy;
    ctx->slot = -1;

    ngx_http_set_ctx(r, ctx, ngx_http_cache_guard_module);

    return ctx;
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
            if (rc == NGX_HTTP_CACHE_GUARD_SERVED) {
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
            if (ctx->stale_blob.len
                && ngx_http_cache_guard_now() < ctx->stale.fresh_until
                                                 + ctx->policy->if_error)
            {
                return ngx_http_cache_guard_serve_stale(r, ctx,
                                               NGX_HTTP_CACHE_GUARD_STALE);
            }

            return ngx_http_cache_guard_fallback(r, ctx);
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
            return ngx_http_cache_guard_pass(r, ctx);
        }

        /*
         * A '#' in the target: nginx cuts $uri and $args there, proxy_pass
         * sends it whole, so a key made of them could name what some
         * origin answers for another URL.  Not cached.
         */

        if (ngx_strlchr(r->unparsed_uri.data,
                        r->unparsed_uri.data + r->unparsed_uri.len, '#'))
        {
            return ngx_http_cache_guard_pass(r, ctx);
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

            return ngx_http_cache_guard_pass(r, ctx);
        }

        if (rc != NGX_OK) {
            return ngx_http_cache_guard_pass(r, ctx);
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
               == NGX_HTTP_CACHE_GUARD_SERVED)
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
        && ngx_http_cache_guard_rlock_try(ctx, mcf->redis) == NGX_OK)
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
           == NGX_HTTP_CACHE_GUARD_SERVED)
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

    if (ngx_http_cache_guard_rlock_try(ctx, mcf->redis) != NGX_OK) {
        ctx->rlock_rc = NGX_ERROR;
        ctx->l2_rc = NGX_ERROR;
        ngx_http_cache_guard_resume(ctx);
    }
}


/*
 * To the origin: a fill (fill = 1) or a pass-through, within the policy's
 * cap on concurrent origin fetches.
 */

static ngx_int_t
ngx_http_cache_guard_origin(ngx_http_request_t *r,
    ngx_http_cache_guard_ctx_t *ctx, ngx_uint_t status, ngx_uint_t fill)
{
    ngx_int_t                       rc;
    ngx_http_cache_guard_policy_t  *pl;

    pl = ctx->policy;

    if (pl->max_concurrent && pl->rec) {

        if (ngx_http_cache_guard_inflight_add(pl->rec, pl->max_concurrent,
                                              r->connection->log)
            != NGX_OK)
        {
            ngx_http_cache_guard_fill_end(ctx,
                                          NGX_HTTP_CACHE_GUARD_FILL_FAILED);

            if (pl->on_overload == NGX_HTTP_CACHE_GUARD_ON_STALE
                && ctx->stale_blob.len)
            {
                return ngx_http_cache_guard_serve_stale(r, ctx,
                                                   NGX_HTTP_CACHE_GUARD_STALE);
            }

            return ngx_http_cache_guard_fallback(r, ctx);
        }

        ctx->counted = 1;
    }

    /* after the cap, so that a probe let through is never lost on it */

    rc = ngx_http_cache_guard_breaker_allow(pl->rec, &pl->breaker,
                                            r->connection->log);

    if (rc == NGX_DECLINED) {
        return ngx_http_cache_guard_origin_down(r, ctx);
    }

    ctx->probe = (rc == NGX_AGAIN);

    /* the cleanup counts an origin that never answered as a failure */

    if (ngx_http_cache_guard_set_cleanup(r, ctx) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (!fill) {
        /* a request that does not fill holds no lock */
        ngx_http_cache_guard_fill_end(ctx, NGX_HTTP_CACHE_GUARD_FILL_RETRY);

    } else if (ngx_http_cache_guard_fill_request(r, ctx) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ctx->status == 0 || !ctx->refresh) {
        ctx->status = status;
    }

    ctx->level = NGX_HTTP_CACHE_GUARD_LEVEL_NONE;
    ctx->state = NGX_HTTP_CACHE_GUARD_S_DONE;
    ctx->fill = fill;
    ctx->to_origin = 1;
    ctx->fill_start = ngx_current_msec;

    if (pl->rec) {
        (void) ngx_atomic_fetch_add(&pl->rec->m.origin_fetches, 1);
    }

    return NGX_DECLINED;
}


/*
 * A fill asks the origin for the whole entity, whatever the client asked:
 * a HEAD becomes a GET (the client still gets a HEAD's answer, see the
 * header filter), and Range and conditional headers are not sent on, as
 * proxy_cache does, so that a 206 or a 304 never stands in for the
 * entry.  The filters still read them from headers_in to answer this
 * client.
 */

static ngx_int_t
ngx_http_cache_guard_fill_request(ngx_http_request_t *r,
    ngx_http_cache_guard_ctx_t *ctx)
{
    ngx_uint_t        i, n, strip;
    ngx_list_t        list;
    ngx_table_elt_t  *h, *copy;
    ngx_list_part_t  *part;

    static ngx_str_t  get = ngx_string("GET");

    if (r->method == NGX_HTTP_HEAD) {
        r->method = NGX_HTTP_GET;
        r->method_name = get;
        ctx->head = 1;
    }

    /* by name: nginx keeps a pointer to the first Range header only */

    n = 0;
    strip = 0;

    for (part = &r->headers_in.headers.part; part; part = part->next) {
        h = part->elts;

        for (i = 0; i < part->nelts; i++) {
            strip += ngx_http_cache_guard_conditional(&h[i]);
        }

        n += part->nelts;
    }

    if (strip == 0) {
        return NGX_OK;
    }

    if (ngx_list_init(&list, r->pool, n, sizeof(ngx_table_elt_t)) != NGX_OK) {
        return NGX_ERROR;
    }

    for (part = &r->headers_in.headers.part; part; part = part->next) {
        h = part->elts;

        for (i = 0; i < part->nelts; i++) {
            if (ngx_http_cache_guard_conditional(&h[i])) {
                continue;
            }

            copy = ngx_list_push(&list);
            if (copy == NULL) {
                return NGX_ERROR;
            }

            *copy = h[i];
        }
    }

    /* the fields of headers_in still point to the old elements */
    r->headers_in.headers = list;

    return NGX_OK;
}


/* a request header that asks for less than the whole entity */

static ngx_uint_t
ngx_http_cache_guard_conditional(ngx_table_elt_t *h)
{
    ngx_str_t  *name;

    static ngx_str_t  names[] = {
        ngx_string("range"),
        ngx_string("if-range"),
        ngx_string("if-match"),
        ngx_string("if-none-match"),
        ngx_string("if-modified-since"),
        ngx_string("if-unmodified-since"),
        ngx_string("request-range"),     /* an old name Apache honours */
        ngx_null_string
    };

    if (h->key.len < 5
        || ((h->key.data[0] | 0x20) != 'i' && (h->key.data[0] | 0x20) != 'r'))
    {
        return 0;
    }

    for (name = names; name->len; name++) {
        if (h->key.len == name->len
            && ngx_strncasecmp(h->key.data, name->data, name->len) == 0)
        {
            return 1;
        }
    }

    return 0;
}


/* not cached at all (Authorization, a nil key): still behind the breaker */

static ngx_int_t
ngx_http_cache_guard_pass(ngx_http_request_t *r,
    ngx_http_cache_guard_ctx_t *ctx)
{
    ngx_int_t                       rc;
    ngx_http_cache_guard_policy_t  *pl;

    pl = ctx->policy;

    rc = ngx_http_cache_guard_breaker_allow(pl->rec, &pl->breaker,
                                            r->connection->log);

    if (rc == NGX_DECLINED) {
        return ngx_http_cache_guard_fallback(r, ctx);
    }

    ctx->probe = (rc == NGX_AGAIN);

    if (pl->breaker.enabled
        && ngx_http_cache_guard_set_cleanup(r, ctx) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->status = NGX_HTTP_CACHE_GUARD_BYPASS;
    ctx->state = NGX_HTTP_CACHE_GUARD_S_DONE;
    ctx->to_origin = 1;

    if (pl->rec) {
        (void) ngx_atomic_fetch_add(&pl->rec->m.origin_fetches, 1);
    }

    return NGX_DECLINED;
}


/*
 * The origin's breaker is open: nobody waits on a dead origin.  A stale
 * copy within stale.if_error, else the fallback at once; a refresh simply
 * does not happen.
 */

static ngx_int_t
ngx_http_cache_guard_origin_down(ngx_http_request_t *r,
    ngx_http_cache_guard_ctx_t *ctx)
{
    ngx_http_cache_guard_fill_end(ctx, NGX_HTTP_CACHE_GUARD_FILL_FAILED);

    if (ctx->refresh) {
        ctx->state = NGX_HTTP_CACHE_GUARD_S_DONE;
        ngx_http_cache_guard_answer(r, ctx, ngx_http_cache_guard_send_nothing);
        return NGX_DECLINED;
    }

    if (ctx->stale_blob.len
        && ngx_http_cache_guard_now() < ctx->stale.fresh_until
                                         + ctx->policy->if_error)
    {
        return ngx_http_cache_guard_serve_stale(r, ctx,
                                                NGX_HTTP_CACHE_GUARD_STALE);
    }

    return ngx_http_cache_guard_fallback(r, ctx);
}


/*
 * Called by the header filter: the filler's own origin answered with an
 * error, and a stale copy within stale.if_error replaces the answer.  The
 * origin's body that follows is swallowed by the body filter.
 */

ngx_int_t
ngx_http_cache_guard_stale_if_error(ngx_http_request_t *r,
    ngx_http_cache_guard_ctx_t *ctx)
{
    ngx_int_t  rc;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "cache guard: origin answered %ui, serving stale",
                   r->headers_out.status);

    ngx_http_clean_header(r);

    /* a special response (nginx's own 502 or 504) sets it; ours wins */
    r->err_status = 0;

    ctx->entry = ctx->stale;
    ctx->status = NGX_HTTP_CACHE_GUARD_STALE;

    rc = ngx_http_cache_guard_send_hit(r);

    if (!r->header_sent) {
        /* nothing went out: the request ends as an error */
        return NGX_ERROR;
    }

    /* what follows of the origin's answer is swallowed */

    ctx->swallow = 1;

    return (rc == NGX_OK || rc == NGX_AGAIN) ? NGX_OK : NGX_ERROR;
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


static ngx_int_t
ngx_http_cache_guard_serve_stale(ngx_http_request_t *r,
    ngx_http_cache_guard_ctx_t *ctx, ngx_uint_t status)
{
    ctx->entry = ctx->stale;
    ctx->status = status;
    ctx->state = NGX_HTTP_CACHE_GUARD_S_DONE;

    ngx_http_cache_guard_answer(r, ctx, ngx_http_cache_guard_send_hit);

    return NGX_DECLINED;
}


/*
 * The request is answered by one of our content handlers: the
 * precontent handler then ends its phase, so that try_files or mirror
 * cannot replace the answer.
 */

void
ngx_http_cache_guard_answer(ngx_http_request_t *r,
    ngx_http_cache_guard_ctx_t *ctx, ngx_http_handler_pt handler)
{
    ctx->answered = 1;
    r->content_handler = handler;
}


ngx_int_t
ngx_http_cache_guard_fallback(ngx_http_request_t *r,
    ngx_http_cache_guard_ctx_t *ctx)
{
    ctx->status = NGX_HTTP_CACHE_GUARD_FALLBACK;
    ctx->level = NGX_HTTP_CACHE_GUARD_LEVEL_NONE;
    ctx->state = NGX_HTTP_CACHE_GUARD_S_DONE;

    ngx_http_cache_guard_answer(r, ctx, ngx_http_cache_guard_send_fallback);

    return NGX_DECLINED;
}


/*
 * Decodes an entry.  A fresh one is served (and may start an early
 * refresh); a stale one is kept as the stale copy; one that does not
 * decode was not written by us, or was damaged: it is a miss, and the
 * fill overwrites it.
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

    return NGX_HTTP_CACHE_GUARD_SERVED;
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

    sctx = ngx_pcalloc(r->pool, sizeof(ngx_http_cache_guard_ctx_t));
    if (sctx == NULL) {
        return NGX_ERROR;
    }

    sctx->zone = ctx->zone;
    sctx->policy = ctx->policy;
    sctx->key = ctx->key;
    sctx->rkey = ctx->rkey;
    sctx->hash = ctx->hash;
    sctx->check = ctx->check;
    sctx->gzip = ctx->gzip;
    sctx->slot = -1;
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

    sctx->request = sr;
    ngx_http_set_ctx(sr, sctx, ngx_http_cache_guard_module);

    if (ngx_http_cache_guard_set_cleanup(sr, sctx) != NGX_OK) {
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
            && ngx_http_cache_guard_rlock_try(ctx, mcf->redis) == NGX_OK)
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
        rc = ngx_http_cache_guard_policy_eval_key(r, pl->key, prefix, suffix,
                                                  &ctx->rkey);

    } else {
        /* the hook's string, framed like a template's result */

        hrc = ngx_http_cache_guard_policy_call(r, pl,
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

        rc = ngx_http_cache_guard_policy_eval_key(r, &parts, prefix, suffix,
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


static ngx_int_t
ngx_http_cache_guard_park(ngx_http_request_t *r,
    ngx_http_cache_guard_ctx_t *ctx)
{
    if (ngx_http_cache_guard_set_cleanup(r, ctx) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->wake.handler = ngx_http_cache_guard_wake;
    ctx->wake.data = ctx;
    ctx->wake.log = r->connection->log;

    ctx->waiting = 1;
    r->main->count++;
    r->write_event_handler = ngx_http_request_empty_handler;

    /* a client that goes away while it waits ends its request, as limit_req */

    if (r == r->main) {
        r->read_event_handler = ngx_http_test_reading;
    }

    return NGX_DONE;
}


/* resume from the event loop, never from inside a hiredis callback */

void
ngx_http_cache_guard_resume(ngx_http_cache_guard_ctx_t *ctx)
{
    if (!ctx->wake.posted) {
        ngx_post_event(&ctx->wake, &ngx_posted_events);
    }
}


void
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


static void
ngx_http_cache_guard_wake(ngx_event_t *ev)
{
    ngx_http_cache_guard_ctx_t  *ctx = ev->data;

    ngx_connection_t    *c;
    ngx_http_request_t  *r;

    r = ctx->request;
    c = r->connection;

    ctx->waiting = 0;
    r->write_event_handler = ngx_http_core_run_phases;

    if (r == r->main) {
        r->read_event_handler = ngx_http_block_reading;
    }

    ngx_http_finalize_request(r, NGX_DONE);
    ngx_http_core_run_phases(r);
    ngx_http_run_posted_requests(c);
}


ngx_int_t
ngx_http_cache_guard_set_cleanup(ngx_http_request_t *r,
    ngx_http_cache_guard_ctx_t *ctx)
{
    ngx_pool_cleanup_t  *cln;

    if (ctx->cleanup_set) {
        return NGX_OK;
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_ERROR;
    }

    cln->handler = ngx_http_cache_guard_cleanup;
    cln->data = ctx;
    ctx->cleanup_set = 1;

    return NGX_OK;
}


/* the request is gone: drop what it waits for, release what it holds */

static void
ngx_http_cache_guard_cleanup(void *data)
{
    ngx_http_cache_guard_ctx_t  *ctx = data;

    if (ctx->cmd) {
        ngx_http_cache_guard_redis_cancel(ctx->cmd);
        ctx->cmd = NULL;
    }

    if (ctx->cmd2) {
        ngx_http_cache_guard_redis_cancel(ctx->cmd2);
        ctx->cmd2 = NULL;
    }

    if (ctx->wake.posted) {
        ngx_delete_posted_event(&ctx->wake);
    }

    if (ctx->poll_timer.timer_set) {
        ngx_del_timer(&ctx->poll_timer);
    }

    ngx_http_cache_guard_lock_unwait(ctx);

    /*
     * Let through and never answered: its client went away first (nginx
     * then ends the upstream, and no header is sent).  That says nothing
     * of the origin, and a client must not be able to open the breaker by
     * aborting: only what the origin or nginx's upstream answered counts
     * (a hanging origin counts by the upstream's own time-out, a 504).  A
     * half-open probe it held is given back.
     */

    if (ctx->to_origin) {
        ctx->to_origin = 0;

        if (ctx->probe) {
            ngx_http_cache_guard_breaker_unprobe(ctx->policy->rec,
                                                 &ctx->policy->breaker);
        }
    }

    /*
     * A fill that ended without a result (its client went away, the
     * upstream response was cut): the waiters try again, one fills.
     */

    ngx_http_cache_guard_fill_end(ctx, NGX_HTTP_CACHE_GUARD_FILL_RETRY);
}


static ngx_int_t
ngx_http_cache_guard_send_fallback(ngx_http_request_t *r)
{
    ngx_table_elt_t                *h;
    ngx_http_cache_guard_ctx_t     *ctx;
    ngx_http_cache_guard_policy_t  *pl;

    static u_char  body[] = "{\"error\": \"the origin is not available, "
                            "retry later\"}\n";

    ctx = ngx_http_get_module_ctx(r, ngx_http_cache_guard_module);
    pl = ctx->policy;

    if (pl->retry_after) {
        h = ngx_list_push(&r->headers_out.headers);
        if (h == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        h->value.data = ngx_pnalloc(r->pool, NGX_TIME_T_LEN);
        if (h->value.data == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        h->hash = 1;
        ngx_str_set(&h->key, "Retry-After");
        h->value.len = ngx_sprintf(h->value.data, "%T", pl->retry_after)
                       - h->value.data;
    }

    return ngx_http_cache_guard_send_buf(r, pl->fallback_status,
                                         "application/json", body,
                                         sizeof(body) - 1);
}


/* a refresh that found nothing to do */

static ngx_int_t
ngx_http_cache_guard_send_nothing(ngx_http_request_t *r)
{
    return NGX_OK;
}


static ngx_int_t
ngx_http_cache_guard_send_hit(ngx_http_request_t *r)
{
    u_char                        *p;
    time_t                         age;
    ngx_int_t                      rc;
    ngx_str_t                      name, value;
    ngx_table_elt_t               *h;
    ngx_http_cache_guard_ctx_t    *ctx;
    ngx_http_cache_guard_entry_t  *e;

    ctx = ngx_http_get_module_ctx(r, ngx_http_cache_guard_module);
    e = &ctx->entry;

    rc = ngx_http_discard_request_body(r);

    if (rc != NGX_OK) {
        return rc;
    }

    r->headers_out.status = e->status;
    r->headers_out.content_length_n = e->body.len;

    while (ngx_http_cache_guard_entry_next_header(e, &name, &value)
           == NGX_OK)
    {
        if (ngx_http_cache_guard_hit_header(r, &name, &value) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    age = ngx_time() - (time_t) (e->created / 1000);

    h->hash = 1;
    ngx_str_set(&h->key, "Age");

    /* ngx_sprintf() costs more than the rest of this header's work */

    if (age <= 0) {
        ngx_str_set(&h->value, "0");

    } else {
        h->value.data = ngx_pnalloc(r->pool, NGX_TIME_T_LEN);
        if (h->value.data == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        p = h->value.data + NGX_TIME_T_LEN;

        do {
            *--p = (u_char) ('0' + age % 10);
            age /= 10;
        } while (age);

        h->value.len = h->value.data + NGX_TIME_T_LEN - p;
        h->value.data = p;
    }

    if (e->status == NGX_HTTP_OK) {
        r->allow_ranges = 1;
    }

    if (e->body.len == 0) {
        r->header_only = 1;
    }

    return ngx_http_cache_guard_send_body(r, e->body.data, e->body.len);
}


/* headers with a field of their own in headers_out, for nginx's filters */

static ngx_int_t
ngx_http_cache_guard_hit_header(ngx_http_request_t *r, ngx_str_t *name,
    ngx_str_t *value)
{
    ngx_table_elt_t  *h;

    if (name->len == sizeof("Content-Type") - 1
        && ngx_strncasecmp(name->data, (u_char *) "Content-Type",
                           name->len) == 0)
    {
        r->headers_out.content_type = *value;
        r->headers_out.content_type_len = value->len;
        r->headers_out.content_type_lowcase = NULL;
        return NGX_OK;
    }

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    h->key = *name;
    h->value = *value;

    switch (name->len) {

    case sizeof("ETag") - 1:
        if (ngx_strncasecmp(name->data, (u_char *) "ETag", 4) == 0) {
            r->headers_out.etag = h;
        }
        break;

    case sizeof("Location") - 1:
        if (ngx_strncasecmp(name->data, (u_char *) "Location", 8) == 0) {
            r->headers_out.location = h;
        }
        break;

    case sizeof("Last-Modified") - 1:
        if (ngx_strncasecmp(name->data, (u_char *) "Last-Modified", 13) == 0) {
            r->headers_out.last_modified = h;
            r->headers_out.last_modified_time = ngx_parse_http_time(
                                                 value->data, value->len);
        }
        break;

    case sizeof("Content-Encoding") - 1:
        if (ngx_strncasecmp(name->data, (u_char *) "Content-Encoding", 16)
            == 0)
        {
            r->headers_out.content_encoding = h;
        }
        break;
    }

    return NGX_OK;
}


ngx_int_t
ngx_http_cache_guard_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var, *v;

    for (v = ngx_http_cache_guard_variables; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = v->get_handler;
        var->data = v->data;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_cache_guard_variable(ngx_http_variable_value_t *v, ngx_str_t *s)
{
    if (s->len == 0) {
        v->not_found = 1;
        return NGX_OK;
    }

    v->len = s->len;
    v->valid = 1;
    v->no_cacheable = 0;
    v->not_found = 0;
    v->data = s->data;

    return NGX_OK;
}


/* data: 0 the status, 1 the level, 2 the key */

static ngx_int_t
ngx_http_cache_guard_get_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_str_t                   *s, key;
    ngx_http_cache_guard_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r->main, ngx_http_cache_guard_module);

    if (ctx == NULL) {
        v->not_found = 1;
        return NGX_OK;
    }

    if (data == 2) {
        /* the key as an operator writes it (to purge it): no variant */
        key = ctx->key;

        if (ctx->gzip) {
            key.len -= sizeof(NGX_HTTP_CACHE_GUARD_GZIP_VARIANT) - 1;
        }

        s = &key;

    } else {
        s = (data == 0) ? &ngx_http_cache_guard_status_names[ctx->status]
                        : &ngx_http_cache_guard_level_names[ctx->level];
    }

    return ngx_http_cache_guard_variable(v, s);
}
