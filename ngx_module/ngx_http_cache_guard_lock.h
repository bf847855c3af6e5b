
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
    ngx_http_cache_guard_redis_t *rd);
void ngx_http_cache_guard_rlock_release(ngx_http_cache_guard_ctx_t *ctx,
    ngx_http_cache_guard_redis_t *rd);


#endif /* _NGX_HTTP_CACHE_GUARD_LOCK_H_INCLUDED_ */
