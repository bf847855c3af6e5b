
/*
 * Copyright (C) nginx-cache-guard authors
 */


/*
 * the split-block Bloom filter's maths: hash, sizing, bit layout; pure code,
 * unit tested without nginx running
 */


#ifndef _NGX_HTTP_CACHE_GUARD_SBBF_H_INCLUDED_
#define _NGX_HTTP_CACHE_GUARD_SBBF_H_INCLUDED_


#include "ngx_http_cache_guard_types.h"


/* bump when the hash, the salts or the layout change: nodes must agree */
#define NGX_HTTP_CACHE_GUARD_BLOOM_MAGIC         0x43474201

/* bytes per block: 256 bits, eight 32-bit words */
#define NGX_HTTP_CACHE_GUARD_BLOOM_BLOCK         32


uint64_t ngx_http_cache_guard_sbbf_hash(u_char *p, size_t len);
double ngx_http_cache_guard_sbbf_fp_rate(double items_per_block);
uint32_t ngx_http_cache_guard_sbbf_blocks(uint64_t capacity,
    double error_rate);
ngx_uint_t ngx_http_cache_guard_sbbf_set(u_char *bits, uint32_t nblocks,
    uint64_t hash);
ngx_uint_t ngx_http_cache_guard_sbbf_has(u_char *bits, uint32_t nblocks,
    uint64_t hash);
void ngx_http_cache_guard_sbbf_bit_offsets(uint32_t nblocks, uint64_t hash,
    uint64_t *offsets);


#endif /* _NGX_HTTP_CACHE_GUARD_SBBF_H_INCLUDED_ */
