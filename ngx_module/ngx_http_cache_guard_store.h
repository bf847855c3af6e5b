
/*
 * Copyright (C) nginx-cache-guard authors
 */


/*
 * the cache zone: L1 entries, node lock slots, and the write path to L1 and
 * Redis
 */


#ifndef _NGX_HTTP_CACHE_GUARD_STORE_H_INCLUDED_
#define _NGX_HTTP_CACHE_GUARD_STORE_H_INCLUDED_


#include "ngx_http_cache_guard_types.h"
#include "ngx_http_cache_guard_codec.h"
#include "ngx_http_cache_guard_redis.h"


#define NGX_HTTP_CACHE_GUARD_LOCK_SLOTS    1024
#define NGX_HTTP_CACHE_GUARD_LOCK_PROBE    16


/* a fill in progress on this node: at most one per key */

typedef struct {
    uint64_t                        hash;         /* 0: never used */
    uint64_t                        check;        /* a second keyed hash */
    uint64_t                        expires;      /* ms; 0: free */
    ngx_pid_t                       pid;          /* holder */
    uint32_t                        gen;          /* bumped on release */
    uint32_t                        failed;       /* last fill failed */
} ngx_http_cache_guard_lock_slot_t;


typedef struct {
    ngx_rbtree_t                    rbtree;
    ngx_rbtree_node_t               sentinel;
    ngx_queue_t                     lru;
    ngx_uint_t                      layout;       /* reuse on reload */
    ngx_atomic_t                    entries;
    ngx_atomic_t                    bytes;
    ngx_atomic_t                    evictions;
    ngx_atomic_t                    negative[NGX_HTTP_CACHE_GUARD_MAX_POLICIES];
    ngx_queue_t                     lru_negative;
    u_char                          lock_key[32]; /* SipHash keys, random */
    ngx_http_cache_guard_lock_slot_t  locks[NGX_HTTP_CACHE_GUARD_LOCK_SLOTS];
} ngx_http_cache_guard_shctx_t;



struct ngx_http_cache_guard_zone_s {
    ngx_http_cache_guard_shctx_t   *sh;
    ngx_slab_pool_t                *shpool;
    ngx_shm_zone_t                 *shm_zone;
    ngx_str_t                       name;
    size_t                          size;
    ngx_uint_t                      full_logged;  /* per worker */
};

ngx_int_t ngx_http_cache_guard_zone_init(ngx_shm_zone_t *shm_zone,
    void *data);
ngx_int_t ngx_http_cache_guard_l1_get(ngx_http_cache_guard_zone_t *zone,
    ngx_str_t *key, ngx_pool_t *pool, ngx_str_t *blob, uint64_t now);
ngx_int_t ngx_http_cache_guard_l1_put(ngx_http_cache_guard_zone_t *zone,
    ngx_str_t *key, ngx_str_t *blob, uint64_t expires, ngx_log_t *log,
    ngx_http_cache_guard_policy_t *pl, ngx_uint_t negative);
ngx_int_t ngx_http_cache_guard_l1_keep(ngx_http_request_t *r,
    ngx_http_cache_guard_ctx_t *ctx, ngx_str_t *blob,
    ngx_http_cache_guard_entry_t *e);
ngx_uint_t ngx_http_cache_guard_l1_purge(ngx_http_cache_guard_zone_t *zone,
    ngx_str_t *key, ngx_str_t *pattern, ngx_uint_t soft);
void ngx_http_cache_guard_store(ngx_http_request_t *r,
    ngx_http_cache_guard_ctx_t *ctx);


#endif /* _NGX_HTTP_CACHE_GUARD_STORE_H_INCLUDED_ */
