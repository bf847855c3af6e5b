
/*
 * Copyright (C) nginx-cache-guard authors
 */


/* the request state machine: lookup, single flight, fill and answer */


#ifndef _NGX_HTTP_CACHE_GUARD_HANDLER_H_INCLUDED_
#define _NGX_HTTP_CACHE_GUARD_HANDLER_H_INCLUDED_


#include "ngx_http_cache_guard_types.h"


ngx_int_t ngx_http_cache_guard_precontent_handler(ngx_http_request_t *r);


#endif /* _NGX_HTTP_CACHE_GUARD_HANDLER_H_INCLUDED_ */
