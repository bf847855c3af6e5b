
/*
 * Copyright (C) nginx-cache-guard authors
 *
 * Nanoseconds per Bloom filter lookup, as the request path does it: XXH64
 * of the item, then 8 bit tests in one 32-byte block.  A filter of
 * 1,000,000 items at error_rate 0.01, 10,000,000 lookups: 10 passes over
 * 1,000,000 random items (half of them present), timed with
 * clock_gettime(CLOCK_MONOTONIC).  The items are read in order, as a
 * request's item is at hand: what is timed is the hash and the filter's
 * random block, not the bench's own cache misses.  Built like
 * t/002-bloom-unit.t builds the unit tests (B: a configured nginx tree,
 * as make leaves in build/nginx):
 *
 *   B=build/nginx
 *   cc -O2 -I$B/src/core -I$B/src/event -I$B/src/event/modules \
 *      -I$B/src/os/unix -I$B/objs -I$B/src/http -I$B/src/http/modules \
 *      -I$B/src/http/v2 \
 *      -Ingx_module -I/usr/include/luajit-2.1 \
 *      -o /tmp/bloom_bench bench/bloom_bench.c \
 *      ngx_module/ngx_http_cache_guard_sbbf.c -lm && /tmp/bloom_bench
 */


#include "ngx_http_cache_guard_sbbf.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>


#define BENCH_CAPACITY  1000000
#define BENCH_ITEMS     1000000
#define BENCH_LOOKUPS   10000000
#define BENCH_ITEM_LEN  16


static double
now_ns(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);

    return ts.tv_sec * 1e9 + ts.tv_nsec;
}


int
main(void)
{
    char       *items, *p, *t;
    u_char     *bits;
    size_t     *lens;
    double      start, hash_ns, test_ns, add_ns;
    uint32_t    nblocks, i, j;
    uint64_t    sink;
    ngx_uint_t  present;

    nblocks = ngx_http_cache_guard_sbbf_blocks(BENCH_CAPACITY, 0.01);

    bits = calloc(nblocks, 32);
    items = malloc(BENCH_ITEMS * BENCH_ITEM_LEN);
    lens = malloc(BENCH_ITEMS * sizeof(size_t));

    if (bits == NULL || items == NULL || lens == NULL) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }

    /* the filter holds user:0 .. user:999999 */

    for (i = 0; i < BENCH_CAPACITY; i++) {
        p = items + (size_t) i * BENCH_ITEM_LEN;
        lens[i] = snprintf(p, BENCH_ITEM_LEN, "user:%u", i);
    }

    start = now_ns();

    for (i = 0; i < BENCH_CAPACITY; i++) {
        t = items + (size_t) i * BENCH_ITEM_LEN;
        ngx_http_cache_guard_sbbf_set(bits, nblocks,
                              ngx_http_cache_guard_sbbf_hash((u_char *) t,
                                                             lens[i]));
    }

    add_ns = (now_ns() - start) / BENCH_CAPACITY;

    /* looked up: random ids, half of them in the filter */

    srandom(1);

    for (i = 0; i < BENCH_ITEMS; i++) {
        p = items + (size_t) i * BENCH_ITEM_LEN;
        j = random() % (2 * BENCH_CAPACITY);
        lens[i] = snprintf(p, BENCH_ITEM_LEN, "%s:%u",
                           j < BENCH_CAPACITY ? "user" : "none",
                           j % BENCH_CAPACITY);
    }

    sink = 0;
    start = now_ns();

    for (i = 0; i < BENCH_LOOKUPS; i++) {
        j = i % BENCH_ITEMS;
        sink += ngx_http_cache_guard_sbbf_hash(
                    (u_char *) items + (size_t) j * BENCH_ITEM_LEN, lens[j]);
    }

    hash_ns = (now_ns() - start) / BENCH_LOOKUPS;

    present = 0;
    start = now_ns();

    for (i = 0; i < BENCH_LOOKUPS; i++) {
        j = i % BENCH_ITEMS;
        t = items + (size_t) j * BENCH_ITEM_LEN;
        present += ngx_http_cache_guard_sbbf_has(bits, nblocks,
                              ngx_http_cache_guard_sbbf_hash((u_char *) t,
                                                             lens[j]));
    }

    test_ns = (now_ns() - start) / BENCH_LOOKUPS;

    printf("filter: %u items at 0.01, %u blocks, %zu bytes, %.2f bits per "
           "item\n", BENCH_CAPACITY, nblocks, (size_t) nblocks * 32,
           nblocks * 256.0 / BENCH_CAPACITY);
    printf("add:    %.1f ns per item (hash + 8 atomic ORs)\n", add_ns);
    printf("hash:   %.1f ns per item (XXH64 of 6 to 11 bytes)\n", hash_ns);
    printf("lookup: %.1f ns per item (hash + 8 bit tests), %u lookups, "
           "%.1f%% present\n", test_ns, BENCH_LOOKUPS,
           100.0 * present / BENCH_LOOKUPS);
    printf("(checksum %llu)\n", (unsigned long long) sink);

    free(bits);
    free(items);
    free(lens);

    return 0;
}
