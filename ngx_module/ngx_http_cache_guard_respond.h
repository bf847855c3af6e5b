
/*
 * Copyright (C) nginx-cache-guard authors
 */


/* answers from memory */


#ifndef _NGX_HTTP_CACHE_GUARD_RESPOND_H_INCLUDED_
#define _NGX_HTTP_CACHE_GUARD_RESPOND_H_INCLUDED_


#include "ngx_http_cache_guard_types.h"


ngx_int_t ngx_http_cache_guard_send_buf(ngx_http_request_t *r,
    ngx_uint_t status, const char *type, u_char *p, size_t len);
ngx_int_t ngx_http_cache_guard_send_body(ngx_http_request_t *r, u_char *p,
    size_t len);


#endif /* _NGX_HTTP_CACHE_GUARD_RESPOND_H_INCLUDED_ */
