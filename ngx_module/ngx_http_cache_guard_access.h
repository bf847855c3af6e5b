
/*
 * Copyright (C) nginx-cache-guard authors
 */


/* the access phase: policy validation, geo and Bloom checks */


#ifndef _NGX_HTTP_CACHE_GUARD_ACCESS_H_INCLUDED_
#define _NGX_HTTP_CACHE_GUARD_ACCESS_H_INCLUDED_


#include "ngx_http_cache_guard_types.h"


ngx_int_t ngx_http_cache_guard_access_handler(ngx_http_request_t *r);


#endif /* _NGX_HTTP_CACHE_GUARD_ACCESS_H_INCLUDED_ */
