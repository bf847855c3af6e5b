
/*
 * Copyright (C) nginx-cache-guard authors
 */


/*
 * Bloom filters: directive, zone, request-time test and what the admin API
 * and metrics ask
 */


#ifndef _NGX_HTTP_CACHE_GUARD_BLOOM_H_INCLUDED_
#define _NGX_HTTP_CACHE_GUARD_BLOOM_H_INCLUDED_


#include "ngx_http_cache_guard_types.h"
#include "ngx_http_cache_guard_lines.h"


#define NGX_HTTP_CACHE_GUARD_BLOOM_ENFORCE  0
#define NGX_HTTP_CACHE_GUARD_BLOOM_SHADOW   1

/* the longest item a file or the admin API may add: one line */
#define NGX_HTTP_CACHE_GUARD_BLOOM_MAX_ITEM  NGX_HTTP_CACHE_GUARD_LINES_MAX


/* in the zone, shared by the master and every worker */

typedef struct {
    uint32_t                        magic;
    uint32_t                        nblocks;
    u_char                         *bits;
    ngx_atomic_t                    items;
    ngx_atomic_t                    loaded;
    ngx_atomic_t                    rejected;
    ngx_atomic_t                    shadow_rejected;
    ngx_atomic_t                    last_sync;
    ngx_atomic_t                    bytes;        /* the zone */
} ngx_http_cache_guard_bloom_sh_t;


struct ngx_http_cache_guard_bloom_s {
    ngx_str_t                       name;
    ngx_uint_t                      capacity;
    double                          error_rate;
    ngx_str_t                       file;         /* full path, NUL-ended */
    ngx_str_t                       redis_key;
    ngx_msec_t                      sync;
    ngx_uint_t                      mode;
    uint32_t                        nblocks;
    size_t                          bytes;
    ngx_str_t                       conf_file;    /* where it is declared */
    ngx_uint_t                      conf_line;

    ngx_shm_zone_t                 *shm_zone;
    ngx_slab_pool_t                *shpool;
    ngx_http_cache_guard_bloom_sh_t  *sh;
    u_char                         *bits;
    ngx_http_cache_guard_main_conf_t  *mcf;
    ngx_http_cache_guard_redis_t   *redis;

    /* per worker: the merge of bloom_sync.c, the warning of test() */
    ngx_event_t                     sync_timer;
    size_t                          sync_len;     /* STRLEN of the key */
    size_t                          sync_off;
    uint64_t                        sync_set;     /* bits set in the range */
    u_char                          range[2 * NGX_SIZE_T_LEN];
    ngx_uint_t                      warned;       /* unsigned:1 */
};


typedef struct {
    ngx_str_t                       name;
    ngx_uint_t                      capacity;
    double                          error_rate;
    ngx_uint_t                      mode;
    ngx_str_t                       file;         /* or empty */
    ngx_str_t                       redis_key;    /* or empty */
    ngx_msec_t                      sync;
    uint32_t                        blocks;       /* of 256 bits */
    size_t                          bytes;        /* the bitmap */
    size_t                          zone_bytes;   /* the shared memory */
    ngx_uint_t                      items;        /* approximate */
    ngx_uint_t                      loaded;
    ngx_uint_t                      rejected;
    ngx_uint_t                      shadow_rejected;
    time_t                          last_sync;    /* last full Redis merge */
    double                          fill_ratio;   /* bits set */
} ngx_http_cache_guard_bloom_info_t;


char *ngx_http_cache_guard_bloom_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_http_cache_guard_bloom_t *ngx_http_cache_guard_bloom_find(ngx_conf_t *cf,
    ngx_str_t *name);

/* NGX_OK: may be present; NGX_DECLINED: absent; NGX_AGAIN: not loaded */
ngx_int_t ngx_http_cache_guard_bloom_test(ngx_http_cache_guard_bloom_t *bf,
    u_char *item, size_t len);
ngx_uint_t ngx_http_cache_guard_bloom_mode(ngx_http_cache_guard_bloom_t *bf);
/* counts a rejection, or in shadow mode one that would have been */
void ngx_http_cache_guard_bloom_rejected(ngx_http_cache_guard_bloom_t *bf);

/* at run time, for the admin API and metrics */
ngx_http_cache_guard_bloom_t *ngx_http_cache_guard_bloom_get(
    ngx_http_request_t *r, ngx_str_t *name);
ngx_uint_t ngx_http_cache_guard_bloom_contains(
    ngx_http_cache_guard_bloom_t *bf, u_char *item, size_t len);
/* hashes: of ngx_http_cache_guard_sbbf_hash() (sbbf.h) */
void ngx_http_cache_guard_bloom_add(ngx_http_cache_guard_bloom_t *bf,
    uint64_t *hashes, ngx_uint_t n);
void ngx_http_cache_guard_bloom_info(ngx_http_cache_guard_bloom_t *bf,
    ngx_http_cache_guard_bloom_info_t *info);


#endif /* _NGX_HTTP_CACHE_GUARD_BLOOM_H_INCLUDED_ */
