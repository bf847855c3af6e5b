
/*
 * Copyright (C) nginx-cache-guard authors
 */


/* node locks in the zone, their waiters, and the Redis lock */


#ifndef _NGX_HTTP_CACHE_GUARD_LOCK_H_INCLUDED_
#define _NGX_HTTP_CACHE_GUARD_LOCK_H_INCLUDED_


#include "ngx_http_cache_guard_types.h"
#include "ngx_http_cache_guard_redis.h"


ngx_int_t ngx_http_cache_guard_lock_acquire(ngx_http_cache_guard_ctx_t *ctx,
    ngx_msec_t ttl);
void ngx_http_cache_guard_lock_release(ngx_http_cache_guard_ctx_t *ctx,
    ngx_uint_t failed);
ngx_int_t ngx_http_cache_guard_lock_wait(ngx_http_cache_guard_ctx_t *ctx);
void ngx_http_cache_guard_lock_unwait(ngx_http_cache_guard_ctx_t *ctx);
ngx_uint_t ngx_http_cache_guard_lock_failed(ngx_http_cache_guard_ctx_t *ctx);
void ngx_http_cache_guard_lock_late(ngx_http_cache_guard_ctx_t *ctx);
ngx_int_t ngx_http_cache_guard_rlock_try(ngx_http_cache_guard_ctx_t *ctx,
    ngx_http_cache_guard_redis_t *rd, ngx_http_cache_guard_redis_pt l2_done);
void ngx_http_cache_guard_rlock_release(ngx_http_cache_guard_ctx_t *ctx,
    ngx_http_cache_guard_redis_t *rd);
void ngx_http_cache_guard_fill_end(ngx_http_cache_guard_ctx_t *ctx,
    ngx_uint_t failed);


/*
 * A parked request is woken by posting ctx->wake, whose handler the
 * request flow set when it parked the request: the locks call no code of
 * the layers above them.  The request runs again from the event loop,
 * never inside a Redis reply handler.
 */

static ngx_inline void
ngx_http_cache_guard_resume(ngx_http_cache_guard_ctx_t *ctx)
{
    if (!ctx->wake.posted) {
        ngx_post_event(&ctx->wake, &ngx_posted_events);
    }
}


#endif /* _NGX_HTTP_CACHE_GUARD_LOCK_H_INCLUDED_ */
