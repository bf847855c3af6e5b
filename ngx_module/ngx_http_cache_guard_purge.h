
/*
 * Copyright (C) nginx-cache-guard authors
 */


/* purge and the purge broadcast */


#ifndef _NGX_HTTP_CACHE_GUARD_PURGE_H_INCLUDED_
#define _NGX_HTTP_CACHE_GUARD_PURGE_H_INCLUDED_


#include "ngx_http_cache_guard_types.h"


ngx_int_t ngx_http_cache_guard_purge_handler(ngx_http_request_t *r);
void ngx_http_cache_guard_purge_init_worker(ngx_cycle_t *cycle);
void ngx_http_cache_guard_purge_exit_worker(void);


#endif /* _NGX_HTTP_CACHE_GUARD_PURGE_H_INCLUDED_ */
