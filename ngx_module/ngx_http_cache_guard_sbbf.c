
/*
 * Copyright (C) nginx-cache-guard authors
 *
 * The split-block Bloom filter's maths, pure code: XXH64, the false
 * positive rate and the sizing it gives, and the bits an item sets.
 *
 * The layout is Apache Parquet's: blocks of 256 bits, eight 32-bit words
 * each; an item's 64-bit hash (XXH64, seed 0) picks a block with its upper
 * half and sets one bit in every word of it with its lower half.  Bit i of
 * the filter is Redis' bit i of the string (SETBIT numbering: byte i / 8,
 * bit 7 - i % 8), so the bitmap in Redis is a byte for byte copy.
 */


#include "ngx_http_cache_guard_sbbf.h"

#include <math.h>


#define NGX_HTTP_CACHE_GUARD_XXH_P1  0x9E3779B185EBCA87ULL
#define NGX_HTTP_CACHE_GUARD_XXH_P2  0xC2B2AE3D27D4EB4FULL
#define NGX_HTTP_CACHE_GUARD_XXH_P3  0x165667B19E3779F9ULL
#define NGX_HTTP_CACHE_GUARD_XXH_P4  0x85EBCA77C2B2AE63ULL
#define NGX_HTTP_CACHE_GUARD_XXH_P5  0x27D4EB2F165667C5ULL

#define ngx_http_cache_guard_rotl64(x, r)  (((x) << (r)) | ((x) >> (64 - (r))))


/* Parquet's salts: each maps the item's lower 32 bits to one word's bit */

static const uint32_t  ngx_http_cache_guard_bloom_salt[8] = {
    0x47b6137bU, 0x44974d91U, 0x8824ad5bU, 0xa2b7289dU,
    0x705495c7U, 0x2df1424bU, 0x9efc4947U, 0x5c6bfb31U
};


/*
 * XXH64 with seed 0, from its specification
 * (github.com/Cyan4973/xxHash, doc/xxhash_spec.md): every node and the
 * Redis bitmap must agree on it bit for bit.
 */

static ngx_inline uint64_t
ngx_http_cache_guard_xxh_read64(u_char *p)
{
    return (uint64_t) p[0] | (uint64_t) p[1] << 8 | (uint64_t) p[2] << 16
           | (uint64_t) p[3] << 24 | (uint64_t) p[4] << 32
           | (uint64_t) p[5] << 40 | (uint64_t) p[6] << 48
           | (uint64_t) p[7] << 56;
}


static ngx_inline uint64_t
ngx_http_cache_guard_xxh_round(uint64_t acc, uint64_t lane)
{
    acc += lane * NGX_HTTP_CACHE_GUARD_XXH_P2;
    acc = ngx_http_cache_guard_rotl64(acc, 31);

    return acc * NGX_HTTP_CACHE_GUARD_XXH_P1;
}


static ngx_inline uint64_t
ngx_http_cache_guard_xxh_merge(uint64_t acc, uint64_t v)
{
    acc ^= ngx_http_cache_guard_xxh_round(0, v);

    return acc * NGX_HTTP_CACHE_GUARD_XXH_P1 + NGX_HTTP_CACHE_GUARD_XXH_P4;
}


uint64_t
ngx_http_cache_guard_sbbf_hash(u_char *p, size_t len)
{
    u_char    *end, *limit;
    uint64_t   h, v1, v2, v3, v4;

    end = p + len;

    if (len >= 32) {
        limit = end - 32;

        v1 = NGX_HTTP_CACHE_GUARD_XXH_P1 + NGX_HTTP_CACHE_GUARD_XXH_P2;
        v2 = NGX_HTTP_CACHE_GUARD_XXH_P2;
        v3 = 0;
        v4 = 0 - NGX_HTTP_CACHE_GUARD_XXH_P1;

        do {
            v1 = ngx_http_cache_guard_xxh_round(v1,
                                          ngx_http_cache_guard_xxh_read64(p));
            v2 = ngx_http_cache_guard_xxh_round(v2,
                                      ngx_http_cache_guard_xxh_read64(p + 8));
            v3 = ngx_http_cache_guard_xxh_round(v3,
                                     ngx_http_cache_guard_xxh_read64(p + 16));
            v4 = ngx_http_cache_guard_xxh_round(v4,
                                     ngx_http_cache_guard_xxh_read64(p + 24));
            p += 32;
        } while (p <= limit);

        h = ngx_http_cache_guard_rotl64(v1, 1)
            + ngx_http_cache_guard_rotl64(v2, 7)
            + ngx_http_cache_guard_rotl64(v3, 12)
            + ngx_http_cache_guard_rotl64(v4, 18);

        h = ngx_http_cache_guard_xxh_merge(h, v1);
        h = ngx_http_cache_guard_xxh_merge(h, v2);
        h = ngx_http_cache_guard_xxh_merge(h, v3);
        h = ngx_http_cache_guard_xxh_merge(h, v4);

    } else {
        h = NGX_HTTP_CACHE_GUARD_XXH_P5;
    }

    h += (uint64_t) len;

    while (p + 8 <= end) {
        h ^= ngx_http_cache_guard_xxh_round(0,
                                         ngx_http_cache_guard_xxh_read64(p));
        h = ngx_http_cache_guard_rotl64(h, 27) * NGX_HTTP_CACHE_GUARD_XXH_P1
            + NGX_HTTP_CACHE_GUARD_XXH_P4;
        p += 8;
    }

    if (p + 4 <= end) {
        h ^= ((uint64_t) p[0] | (uint64_t) p[1] << 8 | (uint64_t) p[2] << 16
              | (uint64_t) p[3] << 24)
             * NGX_HTTP_CACHE_GUARD_XXH_P1;
        h = ngx_http_cache_guard_rotl64(h, 23) * NGX_HTTP_CACHE_GUARD_XXH_P2
            + NGX_HTTP_CACHE_GUARD_XXH_P3;
        p += 4;
    }

    while (p < end) {
        h ^= *p * NGX_HTTP_CACHE_GUARD_XXH_P5;
        h = ngx_http_cache_guard_rotl64(h, 11) * NGX_HTTP_CACHE_GUARD_XXH_P1;
        p++;
    }

    h ^= h >> 33;
    h *= NGX_HTTP_CACHE_GUARD_XXH_P2;
    h ^= h >> 29;
    h *= NGX_HTTP_CACHE_GUARD_XXH_P3;
    h ^= h >> 32;

    return h;
}


/*
 * The false positive rate of a split-block filter holding, on average,
 * lambda items per block: items per block are Poisson distributed, and a
 * block with k items answers "present" for another item when its 8 bits,
 * one per word, are all among the k set in each 32-bit word.
 */

double
ngx_http_cache_guard_sbbf_fp_rate(double lambda)
{
    double      p, fp;
    ngx_uint_t  k, kmax;

    p = exp(-lambda);
    fp = 0.0;
    kmax = (ngx_uint_t) (lambda + 20.0 * sqrt(lambda) + 50.0);

    for (k = 0; k <= kmax; k++) {

        if (k) {
            p *= lambda / k;
        }

        fp += p * pow(1.0 - pow(31.0 / 32.0, (double) k), 8.0);
    }

    return fp;
}


/* the fewest blocks whose false positive rate at capacity is error_rate */

uint32_t
ngx_http_cache_guard_sbbf_blocks(uint64_t capacity, double error_rate)
{
    double      lo, hi, mid, nblocks;
    ngx_uint_t  i;

    /* below one item per thousand blocks the rate hardly falls any more */

    lo = 0.001;
    hi = 256.0;

    if (ngx_http_cache_guard_sbbf_fp_rate(lo) > error_rate) {
        return 0;
    }

    for (i = 0; i < 60; i++) {
        mid = (lo + hi) / 2;

        if (ngx_http_cache_guard_sbbf_fp_rate(mid) <= error_rate) {
            lo = mid;

        } else {
            hi = mid;
        }
    }

    nblocks = ceil((double) capacity / lo);

    if (nblocks > (double) NGX_MAX_UINT32_VALUE) {
        return 0;
    }

    return (uint32_t) nblocks;
}


/* bit j (0..31) of word i of block b is filter bit 256 b + 32 i + j */

ngx_uint_t
ngx_http_cache_guard_sbbf_set(u_char *bits, uint32_t nblocks, uint64_t hash)
{
    u_char      *block, *p, m;
    uint32_t     key, j;
    ngx_uint_t   i, added;

    block = bits + (((hash >> 32) * nblocks) >> 32)
                   * NGX_HTTP_CACHE_GUARD_BLOOM_BLOCK;
    key = (uint32_t) hash;
    added = 0;

    for (i = 0; i < 8; i++) {
        j = (key * ngx_http_cache_guard_bloom_salt[i]) >> 27;
        p = block + i * 4 + (j >> 3);
        m = (u_char) (0x80 >> (j & 7));

        /* other workers and the master add to the same bytes */

        if ((*p & m) == 0) {
            (void) __atomic_fetch_or(p, m, __ATOMIC_RELAXED);
            added = 1;
        }
    }

    return added;
}


ngx_uint_t
ngx_http_cache_guard_sbbf_has(u_char *bits, uint32_t nblocks, uint64_t hash)
{
    u_char      *block;
    uint32_t     key, j;
    ngx_uint_t   i;

    block = bits + (((hash >> 32) * nblocks) >> 32)
                   * NGX_HTTP_CACHE_GUARD_BLOOM_BLOCK;
    key = (uint32_t) hash;

    for (i = 0; i < 8; i++) {
        j = (key * ngx_http_cache_guard_bloom_salt[i]) >> 27;

        if ((block[i * 4 + (j >> 3)] & (0x80 >> (j & 7))) == 0) {
            return 0;
        }
    }

    return 1;
}


void
ngx_http_cache_guard_sbbf_bit_offsets(uint32_t nblocks, uint64_t hash,
    uint64_t *offsets)
{
    uint64_t    block;
    uint32_t    key;
    ngx_uint_t  i;

    block = ((hash >> 32) * nblocks) >> 32;
    key = (uint32_t) hash;

    for (i = 0; i < 8; i++) {
        offsets[i] = block * 256 + i * 32
                     + ((key * ngx_http_cache_guard_bloom_salt[i]) >> 27);
    }
}
