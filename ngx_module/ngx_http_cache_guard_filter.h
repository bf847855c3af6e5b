
/*
 * Copyright (C) nginx-cache-guard authors
 */


/* the header and body filters: capture of the origin's response */


#ifndef _NGX_HTTP_CACHE_GUARD_FILTER_H_INCLUDED_
#define _NGX_HTTP_CACHE_GUARD_FILTER_H_INCLUDED_


#include "ngx_http_cache_guard_types.h"


ngx_int_t ngx_http_cache_guard_filter_init(ngx_conf_t *cf);


#endif /* _NGX_HTTP_CACHE_GUARD_FILTER_H_INCLUDED_ */
