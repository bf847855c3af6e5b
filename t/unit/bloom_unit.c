
/*
 * Copyright (C) nginx-cache-guard authors
 *
 * Unit tests of the Bloom filters' pure code (hash, sizing, bit layout,
 * line splitting) and their measured false positive rates, printed as TAP
 * for prove.  Linked with ngx_http_cache_guard_sbbf.c and
 * ngx_http_cache_guard_lines.c alone: pure code, no nginx running.
 */


#include "ngx_http_cache_guard_sbbf.h"
#include "ngx_http_cache_guard_lines.h"

#include <stdio.h>
#include <stdlib.h>


static int  ngx_http_cache_guard_test_n;
static int  ngx_http_cache_guard_test_failed;


static void
ok(int cond, const char *what)
{
    ngx_http_cache_guard_test_n++;

    if (!cond) {
        ngx_http_cache_guard_test_failed++;
    }

    printf("%sok %d - %s\n", cond ? "" : "not ", ngx_http_cache_guard_test_n,
           what);
}


static uint64_t
hash_str(const char *s)
{
    return ngx_http_cache_guard_sbbf_hash((u_char *) s, strlen(s));
}


/* published XXH64 (seed 0) values, for every path through the hash */

static void
test_hash(void)
{
    static const struct {
        const char  *input;
        uint64_t     hash;
    } cases[] = {
        { "", 0xEF46DB3751D8E999ULL },
        { "a", 0xD24EC4F1A98C6E5BULL },
        { "abc", 0x44BC2CF5AD770999ULL },
        { "abcd", 0xDE0327B0D25D92CCULL },
        { "Nobody inspects the spammish repetition",
          0xFBCEA83C8A378BF1ULL },
        { "The quick brown fox jumps over the lazy dog",
          0x0B242D361FDA71BCULL },
        { "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 0x856E843298F99AD7ULL },
    };

    char        what[128];
    u_char      buf[4000];
    ngx_uint_t  i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        snprintf(what, sizeof(what), "XXH64 of %zu bytes \"%.12s\"",
                 strlen(cases[i].input), cases[i].input);
        ok(hash_str(cases[i].input) == cases[i].hash, what);
    }

    for (i = 0; i < 999; i++) {
        ngx_memcpy(buf + i * 3, "abc", 3);
    }

    ok(ngx_http_cache_guard_sbbf_hash(buf, 2997) == 0x933EB85613976467ULL,
       "XXH64 of \"abc\" x 999");

    for (i = 0; i < 1000; i++) {
        ngx_memcpy(buf + i * 4, "abcd", 4);
    }

    ok(ngx_http_cache_guard_sbbf_hash(buf, 4000) == 0x205219D38E8898BCULL,
       "XXH64 of \"abcd\" x 1000");
}


static void
test_sizing(void)
{
    char      what[160];
    uint32_t  n1, n2, n3;

    n1 = ngx_http_cache_guard_sbbf_blocks(1000000, 0.01);
    n2 = ngx_http_cache_guard_sbbf_blocks(1000000, 0.001);
    n3 = ngx_http_cache_guard_sbbf_blocks(2000000, 0.01);

    printf("# 1M items at 0.01: %u blocks, %.2f bits per item\n",
           n1, n1 * 256.0 / 1000000);
    printf("# 1M items at 0.001: %u blocks, %.2f bits per item\n",
           n2, n2 * 256.0 / 1000000);

    snprintf(what, sizeof(what), "0.01 takes 10 to 11 bits per item (%.2f)",
             n1 * 256.0 / 1000000);
    ok(n1 * 256.0 / 1000000 > 10.0 && n1 * 256.0 / 1000000 < 11.0, what);

    snprintf(what, sizeof(what), "0.001 takes 16 to 17.5 bits per item "
             "(%.2f)", n2 * 256.0 / 1000000);
    ok(n2 * 256.0 / 1000000 > 16.0 && n2 * 256.0 / 1000000 < 17.5, what);

    ok(n3 >= 2 * n1 - 1 && n3 <= 2 * n1 + 1, "twice the items, twice "
       "the blocks");

    ok(ngx_http_cache_guard_sbbf_fp_rate(1000000.0 / n1) <= 0.01,
       "the predicted rate at capacity is within error_rate");

    ok(ngx_http_cache_guard_sbbf_fp_rate(1000000.0 / (n1 - n1 / 50))
       > 0.01, "2% fewer blocks would not do");

    ok(ngx_http_cache_guard_sbbf_blocks(1, 0.4) == 1, "one item, one block");

    ok(ngx_http_cache_guard_sbbf_blocks(1000, 1e-17) == 0,
       "an unattainable error_rate is refused");

    ok(ngx_http_cache_guard_sbbf_blocks(1000000000, 1e-13) == 0,
       "more than 2^32 blocks is refused");
}


/*
 * bit i of the filter is Redis' bit i: byte i / 8, bit 7 - i % 8;
 * an item sets one bit in each 32-bit word of one 256-bit block
 */

static void
test_layout(void)
{
    u_char      bits[32 * 64];
    char        what[200];
    uint64_t    hash, off[8];
    ngx_uint_t  i, nset, inplace;

    hash = hash_str("42");

    ngx_http_cache_guard_sbbf_bit_offsets(64, hash, off);

    ngx_memzero(bits, sizeof(bits));
    ok(ngx_http_cache_guard_sbbf_set(bits, 64, hash) == 1,
       "the first add sets new bits");
    ok(ngx_http_cache_guard_sbbf_set(bits, 64, hash) == 0,
       "the second sets none");

    nset = 0;

    for (i = 0; i < sizeof(bits); i++) {
        nset += __builtin_popcount(bits[i]);
    }

    ok(nset == 8, "one item sets 8 bits");

    inplace = 1;

    for (i = 0; i < 8; i++) {
        if (!(bits[off[i] / 8] & (0x80 >> (off[i] % 8)))
            || off[i] / 256 != off[0] / 256
            || off[i] % 256 / 32 != i)
        {
            inplace = 0;
        }
    }

    ok(inplace, "at its offsets, SETBIT numbering, one bit per word of "
       "one block");

    ok(ngx_http_cache_guard_sbbf_has(bits, 64, hash), "it is present");

    /* the bits Redis must hold after adding "42" to t/051's filter */

    ngx_http_cache_guard_sbbf_bit_offsets(
        ngx_http_cache_guard_sbbf_blocks(1000, 0.01), hash, off);

    snprintf(what, sizeof(what), "\"42\" in 1000 items at 0.01 (%u blocks) "
             "is at bits %llu %llu %llu %llu %llu %llu %llu %llu",
             ngx_http_cache_guard_sbbf_blocks(1000, 0.01),
             (unsigned long long) off[0], (unsigned long long) off[1],
             (unsigned long long) off[2], (unsigned long long) off[3],
             (unsigned long long) off[4], (unsigned long long) off[5],
             (unsigned long long) off[6], (unsigned long long) off[7]);

    ok(ngx_http_cache_guard_sbbf_blocks(1000, 0.01) == 42
       && off[0] == 4634 && off[1] == 4657 && off[2] == 4684
       && off[3] == 4713 && off[4] == 4751 && off[5] == 4788
       && off[6] == 4806 && off[7] == 4837, what);
}


/* capacity items added, then none of them absent and 1M others tested */

static void
test_rate(uint32_t capacity, double error_rate)
{
    char        what[200], item[32];
    u_char     *bits;
    size_t      len;
    uint32_t    nblocks, i, missing, fp;
    ngx_uint_t  tests;

    nblocks = ngx_http_cache_guard_sbbf_blocks(capacity, error_rate);

    bits = calloc(nblocks, 32);
    if (bits == NULL) {
        ok(0, "memory");
        return;
    }

    for (i = 0; i < capacity; i++) {
        len = snprintf(item, sizeof(item), "user:%u", i);
        ngx_http_cache_guard_sbbf_set(bits, nblocks,
                              ngx_http_cache_guard_sbbf_hash((u_char *) item,
                                                             len));
    }

    missing = 0;

    for (i = 0; i < capacity; i++) {
        len = snprintf(item, sizeof(item), "user:%u", i);
        missing += !ngx_http_cache_guard_sbbf_has(bits, nblocks,
                              ngx_http_cache_guard_sbbf_hash((u_char *) item,
                                                             len));
    }

    snprintf(what, sizeof(what), "no false negative among %u items at %g",
             capacity, error_rate);
    ok(missing == 0, what);

    tests = 1000000;
    fp = 0;

    for (i = 0; i < tests; i++) {
        len = snprintf(item, sizeof(item), "other:%u", i);
        fp += ngx_http_cache_guard_sbbf_has(bits, nblocks,
                              ngx_http_cache_guard_sbbf_hash((u_char *) item,
                                                             len));
    }

    printf("# capacity %u, error_rate %g: %.2f bits per item, "
           "measured false positive rate %.5f (%u of %lu), "
           "predicted %.5f\n",
           capacity, error_rate, nblocks * 256.0 / capacity,
           (double) fp / tests, fp, (unsigned long) tests,
           ngx_http_cache_guard_sbbf_fp_rate((double) capacity / nblocks));

    snprintf(what, sizeof(what), "false positives at capacity %u within "
             "1.3 x %g: %.5f", capacity, error_rate, (double) fp / tests);
    ok((double) fp / tests <= 1.3 * error_rate, what);

    free(bits);
}


static ngx_int_t
collect(ngx_http_cache_guard_lines_t *ls, u_char *item, size_t len)
{
    char  *out = ls->data;

    if (strlen(out) + len + 2 > 256) {
        return NGX_ERROR;
    }

    strncat(out, (char *) item, len);
    strcat(out, "|");

    return NGX_OK;
}


static ngx_int_t
feed(ngx_http_cache_guard_lines_t *ls, const char *s)
{
    return ngx_http_cache_guard_lines_split(ls, (u_char *) s,
                                            (u_char *) s + strlen(s));
}


static void
test_split(void)
{
    char                          out[256];
    u_char                        carry[NGX_HTTP_CACHE_GUARD_LINES_MAX + 1];
    ngx_int_t                     rc;
    ngx_http_cache_guard_lines_t  ls;

    ls.handler = collect;
    ls.data = out;
    ls.carry = carry;
    ls.carry_len = 0;
    ls.line = 0;
    out[0] = '\0';

    /* CRLF, empty lines, items cut across reads, no final LF */

    rc = feed(&ls, "a\r\n\nbb");
    rc |= feed(&ls, "b\r");
    rc |= feed(&ls, "\n\r\nc");
    rc |= ngx_http_cache_guard_lines_end(&ls);

    ok(rc == NGX_OK && strcmp(out, "a|bbb|c|") == 0,
       "lines: CR stripped, empty lines skipped, cut lines joined");
    ok(ls.line == 5, "lines counted");
}


static ngx_int_t
item_len(ngx_http_cache_guard_lines_t *ls, u_char *item, size_t len)
{
    *(size_t *) ls->data = len;

    return NGX_OK;
}


/* the longest item passes, one byte more is refused with its line */

static void
test_split_longest(void)
{
    size_t                        got;
    u_char                        carry[NGX_HTTP_CACHE_GUARD_LINES_MAX + 1];
    u_char                        line[NGX_HTTP_CACHE_GUARD_LINES_MAX + 2];
    ngx_int_t                     rc;
    ngx_http_cache_guard_lines_t  ls;

    ls.handler = item_len;
    ls.data = &got;
    ls.carry = carry;
    ls.carry_len = 0;
    ls.line = 0;
    got = 0;

    /* 4096 bytes and a CR, cut in two */

    ngx_memset(line, 'z', sizeof(line));
    line[NGX_HTTP_CACHE_GUARD_LINES_MAX] = '\r';
    line[NGX_HTTP_CACHE_GUARD_LINES_MAX + 1] = '\n';

    rc = ngx_http_cache_guard_lines_split(&ls, line, line + 3000);
    rc |= ngx_http_cache_guard_lines_split(&ls, line + 3000,
                                           line + sizeof(line));

    ok(rc == NGX_OK && got == NGX_HTTP_CACHE_GUARD_LINES_MAX,
       "an item of 4096 bytes and its CR, cut in two, is one item");

    /* 4097 bytes, after one good line */

    line[NGX_HTTP_CACHE_GUARD_LINES_MAX] = 'z';

    rc = feed(&ls, "ok\n");
    rc |= ngx_http_cache_guard_lines_split(&ls, line, line + 1000);
    rc |= ngx_http_cache_guard_lines_split(&ls, line + 1000,
                                           line + sizeof(line));

    ok(rc == NGX_DECLINED && ls.line == 3,
       "an item of 4097 bytes is refused, with its line number");

    /* the same without an LF, at the end of the input */

    ls.carry_len = 0;
    ls.line = 0;

    rc = ngx_http_cache_guard_lines_split(&ls, line,
                                          line + sizeof(line) - 1);
    if (rc == NGX_OK) {
        rc = ngx_http_cache_guard_lines_end(&ls);
    }

    ok(rc == NGX_DECLINED && ls.line == 1,
       "so is a last line of 4097 bytes without an LF");
}


int
main(void)
{
    test_hash();
    test_sizing();
    test_layout();
    test_rate(1000000, 0.01);
    test_rate(1000000, 0.001);
    test_rate(10000, 0.01);
    test_split();
    test_split_longest();

    printf("1..%d\n", ngx_http_cache_guard_test_n);

    return ngx_http_cache_guard_test_failed ? 1 : 0;
}
