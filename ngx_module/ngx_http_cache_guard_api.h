
/*
 * Copyright (C) nginx-cache-guard authors
 */


/* what every admin call shares: JSON answers, errors, streamed bodies */


#ifndef _NGX_HTTP_CACHE_GUARD_API_H_INCLUDED_
#define _NGX_HTTP_CACHE_GUARD_API_H_INCLUDED_


#include "ngx_http_cache_guard_types.h"
#include "ngx_http_cache_guard_lines.h"


typedef struct ngx_http_cache_guard_api_body_s
    ngx_http_cache_guard_api_body_t;

/*
 * Called once the body is split into lines, or was refused: NGX_OK,
 * NGX_DECLINED (line lines.line is bad), NGX_ERROR or the line handler's
 * own code; it answers the request.
 */
typedef void (*ngx_http_cache_guard_api_body_pt)(ngx_http_request_t *r,
    ngx_http_cache_guard_api_body_t *ab, ngx_int_t rc);

/* a request body read as it comes and split into lines, never stored */
struct ngx_http_cache_guard_api_body_s {
    ngx_http_cache_guard_lines_t    lines;       /* handler, data: set */
    off_t                           limit;       /* bytes */
    off_t                           received;
    const char                     *too_large;   /* "...%O..." the limit */
    ngx_http_cache_guard_api_body_pt  done;
    ngx_uint_t                      finished;    /* unsigned:1 */
};


ngx_int_t ngx_http_cache_guard_api_error(ngx_http_request_t *r,
    ngx_uint_t status, const char *fmt, ...);
ngx_int_t ngx_http_cache_guard_api_send(ngx_http_request_t *r,
    ngx_uint_t status, u_char *p, size_t len);
ngx_int_t ngx_http_cache_guard_api_allow(ngx_http_request_t *r,
    const char *methods);
ngx_int_t ngx_http_cache_guard_api_read_body(ngx_http_request_t *r,
    ngx_http_cache_guard_api_body_t *ab);


#endif /* _NGX_HTTP_CACHE_GUARD_API_H_INCLUDED_ */
