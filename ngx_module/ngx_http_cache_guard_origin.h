
/*
 * Copyright (C) nginx-cache-guard authors
 */


/* to the origin: the cap, the breaker, a fill's request */


#ifndef _NGX_HTTP_CACHE_GUARD_ORIGIN_H_INCLUDED_
#define _NGX_HTTP_CACHE_GUARD_ORIGIN_H_INCLUDED_


#include "ngx_http_cache_guard_types.h"


ngx_int_t ngx_http_cache_guard_origin(ngx_http_request_t *r,
    ngx_http_cache_guard_ctx_t *ctx, ngx_uint_t status, ngx_uint_t fill);


#endif /* _NGX_HTTP_CACHE_GUARD_ORIGIN_H_INCLUDED_ */
