
/*
 * Copyright (C) nginx-cache-guard authors
 */


/* the request flow's answers, and answers from memory */


#ifndef _NGX_HTTP_CACHE_GUARD_RESPOND_H_INCLUDED_
#define _NGX_HTTP_CACHE_GUARD_RESPOND_H_INCLUDED_


#include "ngx_http_cache_guard_types.h"
#include "ngx_http_cache_guard_stats.h"


ngx_int_t ngx_http_cache_guard_send_buf(ngx_http_request_t *r,
    ngx_uint_t status, const char *type, u_char *p, size_t len);
ngx_int_t ngx_http_cache_guard_send_body(ngx_http_request_t *r, u_char *p,
    size_t len);
ngx_int_t ngx_http_cache_guard_fallback(ngx_http_request_t *r,
    ngx_http_cache_guard_ctx_t *ctx);
ngx_int_t ngx_http_cache_guard_send_hit(ngx_http_request_t *r);
ngx_int_t ngx_http_cache_guard_serve_stale(ngx_http_request_t *r,
    ngx_http_cache_guard_ctx_t *ctx, ngx_uint_t status);
ngx_int_t ngx_http_cache_guard_stale_or_fallback(ngx_http_request_t *r,
    ngx_http_cache_guard_ctx_t *ctx);
ngx_int_t ngx_http_cache_guard_stale_if_error(ngx_http_request_t *r,
    ngx_http_cache_guard_ctx_t *ctx);
ngx_int_t ngx_http_cache_guard_send_nothing(ngx_http_request_t *r);
ngx_int_t ngx_http_cache_guard_reject(ngx_http_request_t *r,
    ngx_http_cache_guard_ctx_t *ctx, ngx_uint_t cg_status, ngx_uint_t status,
    const char *fmt, ...);
ngx_int_t ngx_http_cache_guard_reject_str(ngx_http_request_t *r,
    ngx_http_cache_guard_ctx_t *ctx, ngx_uint_t cg_status, ngx_uint_t status,
    ngx_str_t *msg);
ngx_int_t ngx_http_cache_guard_reject_hook(ngx_http_request_t *r,
    ngx_http_cache_guard_ctx_t *ctx);


/*
 * The request is answered by one of our content handlers: the
 * precontent handler then ends its phase, so that try_files or mirror
 * cannot replace the answer.
 */

static ngx_inline void
ngx_http_cache_guard_answer(ngx_http_request_t *r,
    ngx_http_cache_guard_ctx_t *ctx, ngx_http_handler_pt handler)
{
    ctx->answered = 1;
    r->content_handler = handler;
}


/* a stale copy that stale.if_error still lets stand in for an error */

static ngx_inline ngx_uint_t
ngx_http_cache_guard_stale_on_error(ngx_http_cache_guard_ctx_t *ctx)
{
    return ctx->stale_blob.len
           && ngx_http_cache_guard_now() < ctx->stale.fresh_until
                                            + ctx->policy->if_error;
}


#endif /* _NGX_HTTP_CACHE_GUARD_RESPOND_H_INCLUDED_ */
