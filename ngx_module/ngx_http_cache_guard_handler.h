
/*
 * Copyright (C) nginx-cache-guard authors
 */


/* the request state machine: lookup, single flight, fill and answer */


#ifndef _NGX_HTTP_CACHE_GUARD_HANDLER_H_INCLUDED_
#define _NGX_HTTP_CACHE_GUARD_HANDLER_H_INCLUDED_


#include "ngx_http_cache_guard_types.h"
#include "ngx_http_cache_guard_redis.h"


void ngx_http_cache_guard_resume(ngx_http_cache_guard_ctx_t *ctx);
void ngx_http_cache_guard_l2_done(redisReply *reply, void *data);
ngx_int_t ngx_http_cache_guard_precontent_handler(ngx_http_request_t *r);
ngx_int_t ngx_http_cache_guard_set_cleanup(ngx_http_request_t *r,
    ngx_http_cache_guard_ctx_t *ctx);
ngx_http_cache_guard_ctx_t *ngx_http_cache_guard_get_ctx(
    ngx_http_request_t *r);
ngx_http_cache_guard_ctx_t *ngx_http_cache_guard_find_ctx_slow(
    ngx_http_request_t *r);

/* run by every filter and phase: the usual case without a call */
#define ngx_http_cache_guard_find_ctx(r)                                      \
    (((r)->ctx[ngx_http_cache_guard_module.ctx_index] || !(r)->internal)      \
     ? (ngx_http_cache_guard_ctx_t *)                                         \
           (r)->ctx[ngx_http_cache_guard_module.ctx_index]                    \
     : ngx_http_cache_guard_find_ctx_slow(r))

void ngx_http_cache_guard_answer(ngx_http_request_t *r,
    ngx_http_cache_guard_ctx_t *ctx, ngx_http_handler_pt handler);
ngx_int_t ngx_http_cache_guard_fallback(ngx_http_request_t *r,
    ngx_http_cache_guard_ctx_t *ctx);
ngx_int_t ngx_http_cache_guard_add_variables(ngx_conf_t *cf);
ngx_int_t ngx_http_cache_guard_stale_if_error(ngx_http_request_t *r,
    ngx_http_cache_guard_ctx_t *ctx);


#endif /* _NGX_HTTP_CACHE_GUARD_HANDLER_H_INCLUDED_ */
