
/*
 * Copyright (C) nginx-cache-guard authors
 */


/*
 * Bloom filters and Redis: one worker per node merges the shared bitmap;
 * added items are written through
 */


#ifndef _NGX_HTTP_CACHE_GUARD_BLOOM_SYNC_H_INCLUDED_
#define _NGX_HTTP_CACHE_GUARD_BLOOM_SYNC_H_INCLUDED_


#include "ngx_http_cache_guard_types.h"


/* called with NGX_OK once Redis has every item, NGX_ERROR if it may not */
typedef void (*ngx_http_cache_guard_bloom_done_pt)(void *data, ngx_int_t rc);


ngx_int_t ngx_http_cache_guard_bloom_sync_init_worker(ngx_cycle_t *cycle);
/* NGX_AGAIN: done() follows; NGX_OK: n is 0; NGX_DECLINED: no redis_key */
ngx_int_t ngx_http_cache_guard_bloom_sync_push(ngx_http_cache_guard_bloom_t *bf,
    ngx_pool_t *pool, uint64_t *hashes, ngx_uint_t n,
    ngx_http_cache_guard_bloom_done_pt done, void *data);


#endif /* _NGX_HTTP_CACHE_GUARD_BLOOM_SYNC_H_INCLUDED_ */
