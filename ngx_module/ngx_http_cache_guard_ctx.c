
/*
 * Copyright (C) nginx-cache-guard authors
 *
 * The request's context: made for a request (or for a refresh's or a
 * warm-up's subrequest), found again after an internal redirect, parked
 * while it waits and woken, and cleaned up with the request's pool, which
 * releases whatever it still holds.
 */


#include "ngx_http_cache_guard_ctx.h"
#include "ngx_http_cache_guard_breaker.h"
#include "ngx_http_cache_guard_lock.h"
#include "ngx_http_cache_guard_redis.h"


static void ngx_http_cache_guard_cleanup(void *data);


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

    ctx = ngx_http_cache_guard_create_ctx(r->pool, lcf->shm_zone->data,
                                          lcf->policy);
    if (ctx == NULL) {
        return NULL;
    }

    ctx->request = r;
    ngx_http_set_ctx(r, ctx, ngx_http_cache_guard_module);

    return ctx;
}


/*
 * A refresh's or a warm-up's context becomes its subrequest's own, found
 * again through its cleanup after an internal redirect.
 */

ngx_int_t
ngx_http_cache_guard_attach_ctx(ngx_http_request_t *sr,
    ngx_http_cache_guard_ctx_t *ctx)
{
    ctx->request = sr;
    ngx_http_set_ctx(sr, ctx, ngx_http_cache_guard_module);

    return ngx_http_cache_guard_set_cleanup(sr, ctx);
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


/* the event a parked request waits for: its phases run again */

void
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
