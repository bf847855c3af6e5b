
/*
 * Copyright (C) nginx-cache-guard authors
 */


/* the request's context: made, found again, parked, cleaned up */


#ifndef _NGX_HTTP_CACHE_GUARD_CTX_H_INCLUDED_
#define _NGX_HTTP_CACHE_GUARD_CTX_H_INCLUDED_


#include "ngx_http_cache_guard_types.h"


ngx_http_cache_guard_ctx_t *ngx_http_cache_guard_find_ctx_slow(
    ngx_http_request_t *r);
ngx_http_cache_guard_ctx_t *ngx_http_cache_guard_get_ctx(
    ngx_http_request_t *r);
ngx_int_t ngx_http_cache_guard_attach_ctx(ngx_http_request_t *sr,
    ngx_http_cache_guard_ctx_t *ctx);
ngx_int_t ngx_http_cache_guard_set_cleanup(ngx_http_request_t *r,
    ngx_http_cache_guard_ctx_t *ctx);
void ngx_http_cache_guard_wake(ngx_event_t *ev);

/* run by every filter and phase: the usual case without a call */
#define ngx_http_cache_guard_find_ctx(r)                                      \
    (((r)->ctx[ngx_http_cache_guard_module.ctx_index] || !(r)->internal)      \
     ? (ngx_http_cache_guard_ctx_t *)                                         \
           (r)->ctx[ngx_http_cache_guard_module.ctx_index]                    \
     : ngx_http_cache_guard_find_ctx_slow(r))


/*
 * The one constructor of a context: the request's own (get_ctx), a
 * refresh's and a warm-up's (then attach_ctx).  Inline: every guarded
 * request makes one.
 */

static ngx_inline ngx_http_cache_guard_ctx_t *
ngx_http_cache_guard_create_ctx(ngx_pool_t *pool,
    ngx_http_cache_guard_zone_t *zone, ngx_http_cache_guard_policy_t *policy)
{
    ngx_http_cache_guard_ctx_t  *ctx;

    ctx = ngx_pcalloc(pool, sizeof(ngx_http_cache_guard_ctx_t));
    if (ctx == NULL) {
        return NULL;
    }

    ctx->zone = zone;
    ctx->policy = policy;
    ctx->slot = -1;

    return ctx;
}


/*
 * A request that waits: NGX_DONE with a reference on it, woken by posting
 * ctx->wake, whose handler runs its phases again.  Inline: an L2 lookup
 * parks the request.
 */

static ngx_inline ngx_int_t
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


#endif /* _NGX_HTTP_CACHE_GUARD_CTX_H_INCLUDED_ */
