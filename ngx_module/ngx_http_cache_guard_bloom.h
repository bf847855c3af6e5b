
/*
 * Copyright (C) nginx-cache-guard authors
 */


/* Bloom filters: zone, directive, request-time test and Redis sync */


#ifndef _NGX_HTTP_CACHE_GUARD_BLOOM_H_INCLUDED_
#define _NGX_HTTP_CACHE_GUARD_BLOOM_H_INCLUDED_


#include "ngx_http_cache_guard_types.h"


#define NGX_HTTP_CACHE_GUARD_BLOOM_ENFORCE  0
#define NGX_HTTP_CACHE_GUARD_BLOOM_SHADOW   1

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
ngx_int_t ngx_http_cache_guard_bloom_init_worker(ngx_cycle_t *cycle);

/* the longest item a file or the admin API may add */
#define NGX_HTTP_CACHE_GUARD_BLOOM_MAX_ITEM  4096


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


/* splits a stream of bytes into items, one per line */

typedef struct ngx_http_cache_guard_bloom_lines_s
    ngx_http_cache_guard_bloom_lines_t;

typedef ngx_int_t (*ngx_http_cache_guard_bloom_line_pt)(
    ngx_http_cache_guard_bloom_lines_t *ls, u_char *item, size_t len);

struct ngx_http_cache_guard_bloom_lines_s {
    ngx_http_cache_guard_bloom_line_pt  handler;
    void                           *data;
    u_char                         *carry;       /* MAX_ITEM + 1 bytes */
    size_t                          carry_len;
    ngx_uint_t                      line;        /* the last line seen */
};


/* called with NGX_OK once Redis has every item, NGX_ERROR if it may not */
typedef void (*ngx_http_cache_guard_bloom_done_pt)(void *data, ngx_int_t rc);


/* pure code (unit tested) */
uint64_t ngx_http_cache_guard_bloom_hash(u_char *p, size_t len);
double ngx_http_cache_guard_bloom_fp_rate(double items_per_block);
uint32_t ngx_http_cache_guard_bloom_blocks(uint64_t capacity,
    double error_rate);
ngx_uint_t ngx_http_cache_guard_bloom_set(u_char *bits, uint32_t nblocks,
    uint64_t hash);
ngx_uint_t ngx_http_cache_guard_bloom_has(u_char *bits, uint32_t nblocks,
    uint64_t hash);
void ngx_http_cache_guard_bloom_bit_offsets(uint32_t nblocks, uint64_t hash,
    uint64_t *offsets);
/* NGX_OK; NGX_DECLINED: line ls->line is too long; or the handler's error */
ngx_int_t ngx_http_cache_guard_bloom_split(ngx_http_cache_guard_bloom_lines_t
    *ls, u_char *p, u_char *last);
ngx_int_t ngx_http_cache_guard_bloom_split_end(
    ngx_http_cache_guard_bloom_lines_t *ls);

/* at run time, for the admin API and metrics */
ngx_http_cache_guard_bloom_t *ngx_http_cache_guard_bloom_get(
    ngx_http_request_t *r, ngx_str_t *name);
ngx_uint_t ngx_http_cache_guard_bloom_contains(
    ngx_http_cache_guard_bloom_t *bf, u_char *item, size_t len);
void ngx_http_cache_guard_bloom_add(ngx_http_cache_guard_bloom_t *bf,
    uint64_t *hashes, ngx_uint_t n);
/* NGX_AGAIN: done() follows; NGX_OK: n is 0; NGX_DECLINED: no redis_key */
ngx_int_t ngx_http_cache_guard_bloom_push(ngx_http_cache_guard_bloom_t *bf,
    ngx_pool_t *pool, uint64_t *hashes, ngx_uint_t n,
    ngx_http_cache_guard_bloom_done_pt done, void *data);
void ngx_http_cache_guard_bloom_info(ngx_http_cache_guard_bloom_t *bf,
    ngx_http_cache_guard_bloom_info_t *info);


#endif /* _NGX_HTTP_CACHE_GUARD_BLOOM_H_INCLUDED_ */
