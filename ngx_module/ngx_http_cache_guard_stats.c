
/*
 * Copyright (C) nginx-cache-guard authors
 *
 * Counters: the names of the cache statuses and levels, and the duration
 * histograms (buckets found in a step or two, atomics in shared memory).
 */


#include "ngx_http_cache_guard_stats.h"


ngx_str_t  ngx_http_cache_guard_status_names[] = {
    ngx_null_string,
    ngx_string("HIT"),
    ngx_string("MISS"),
    ngx_string("STALE"),
    ngx_string("UPDATING"),
    ngx_string("NEGATIVE"),
    ngx_string("BLOOM_REJECT"),
    ngx_string("INVALID"),
    ngx_string("BYPASS"),
    ngx_string("LOCK_TIMEOUT"),
    ngx_string("FALLBACK")
};


ngx_str_t  ngx_http_cache_guard_level_names[] = {
    ngx_null_string,
    ngx_string("l1"),
    ngx_string("l2")
};


const char  *ngx_http_cache_guard_hook_names[] = {
    "key", "validate", "bloom.item"
};


/* upper bounds of the duration buckets, microseconds; the last is +Inf */

uint64_t  ngx_http_cache_guard_bounds[NGX_HTTP_CACHE_GUARD_NBUCKETS - 1]
    = { 100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000,
        500000, 1000000, 2500000, 5000000, 10000000 };


/*
 * The bucket of a duration: the first bound not below it.  For each bit
 * length of the duration, the first bucket it may fall in; at most two
 * steps on from there.
 */

static u_char  ngx_http_cache_guard_first_bucket[65];


void
ngx_http_cache_guard_stats_init(void)
{
    ngx_uint_t  bits, i;
    uint64_t    low;

    for (bits = 0; bits <= 64; bits++) {
        low = bits ? (uint64_t) 1 << (bits - 1) : 0;

        for (i = 0; i < NGX_HTTP_CACHE_GUARD_NBUCKETS - 1; i++) {
            if (low <= ngx_http_cache_guard_bounds[i]) {
                break;
            }
        }

        ngx_http_cache_guard_first_bucket[bits] = (u_char) i;
    }
}


void
ngx_http_cache_guard_histogram_add(ngx_http_cache_guard_histogram_t *h,
    uint64_t us)
{
    ngx_uint_t  i;

    i = ngx_http_cache_guard_first_bucket[us ? 64 - __builtin_clzll(us) : 0];

    while (i < NGX_HTTP_CACHE_GUARD_NBUCKETS - 1
           && us > ngx_http_cache_guard_bounds[i])
    {
        i++;
    }

    (void) ngx_atomic_fetch_add(&h->histogram[i], 1);
    (void) ngx_atomic_fetch_add(&h->sum_us, us);
}
