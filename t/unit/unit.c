
/*
 * Copyright (C) nginx-cache-guard authors
 *
 * Unit tests of the pure code (entry codec, checksum, jitter,
 * Accept-Encoding classes, JSON escaping), printed as TAP for prove.
 */


#include "ngx_http_cache_guard_codec.h"

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


static void
test_crc32c(void)
{
    u_char  buf[4096];
    size_t  i;

    /* the check value of CRC-32C */
    ok(ngx_http_cache_guard_crc32c(0, (u_char *) "123456789", 9)
       == 0xe3069283, "crc32c check value");

    ok(ngx_http_cache_guard_crc32c(0, (u_char *) "", 0) == 0,
       "crc32c of nothing is 0");

    for (i = 0; i < sizeof(buf); i++) {
        buf[i] = (u_char) (i * 7 + 3);
    }

    /* chained calls give the same value as one call */
    ok(ngx_http_cache_guard_crc32c(ngx_http_cache_guard_crc32c(0, buf, 1001),
                                   buf + 1001, sizeof(buf) - 1001)
       == ngx_http_cache_guard_crc32c(0, buf, sizeof(buf)),
       "crc32c is incremental");
}


/* the reference vectors of the SipHash paper: key 00..0f, input 00..n-1 */

static void
test_siphash(void)
{
    u_char      key[16], in[64];
    ngx_uint_t  i;

    for (i = 0; i < 16; i++) {
        key[i] = (u_char) i;
    }

    for (i = 0; i < 64; i++) {
        in[i] = (u_char) i;
    }

    ok(ngx_http_cache_guard_siphash(key, in, 0) == 0x726fdb47dd0e0e31ULL,
       "siphash of nothing");
    ok(ngx_http_cache_guard_siphash(key, in, 1) == 0x74f839c593dc67fdULL,
       "siphash of 1 byte");
    ok(ngx_http_cache_guard_siphash(key, in, 8) == 0x93f5f5799a932462ULL,
       "siphash of 8 bytes");
    ok(ngx_http_cache_guard_siphash(key, in, 15) == 0xa129ca6149be45e5ULL,
       "siphash of 15 bytes");
    ok(ngx_http_cache_guard_siphash(key, in, 63) == 0x958a324ceb064572ULL,
       "siphash of 63 bytes");

    key[0] = 1;
    ok(ngx_http_cache_guard_siphash(key, in, 15) != 0xa129ca6149be45e5ULL,
       "siphash depends on the key");
}


static void
test_codec(void)
{
    u_char                        *blob, *end;
    size_t                         len, i;
    ngx_str_t                      name, value;
    ngx_uint_t                     n, bad;
    ngx_keyval_t                   hdrs[2];
    ngx_http_cache_guard_entry_t   e, d;

    ngx_str_set(&hdrs[0].key, "Content-Type");
    ngx_str_set(&hdrs[0].value, "application/json");
    ngx_str_set(&hdrs[1].key, "ETag");
    ngx_str_set(&hdrs[1].value, "\"v1\"");

    memset(&e, 0, sizeof(e));
    e.status = 200;
    e.flags = NGX_HTTP_CACHE_GUARD_ENTRY_NEGATIVE;
    e.created = 1700000000123ULL;
    e.fresh_until = e.created + 60000;
    e.stale_until = e.created + 90000;
    e.fill_ms = 42;
    e.nheaders = 2;
    e.headers = hdrs;
    ngx_str_set(&e.body, "{\"id\":1}");

    len = ngx_http_cache_guard_entry_size(&e);
    blob = malloc(len);
    end = ngx_http_cache_guard_entry_encode(blob, &e);

    ok((size_t) (end - blob) == len, "encode writes exactly entry_size bytes");
    ok(memcmp(blob, "CGE\1", 4) == 0, "magic and version");

    ok(ngx_http_cache_guard_entry_decode(blob, len, &d, 1) == NGX_OK,
       "decode of a fresh encode");
    ok(d.status == 200 && d.flags == e.flags && d.created == e.created
       && d.fresh_until == e.fresh_until && d.stale_until == e.stale_until
       && d.fill_ms == 42 && d.nheaders == 2, "fixed fields round-trip");
    ok(d.body.len == e.body.len
       && memcmp(d.body.data, e.body.data, e.body.len) == 0,
       "body round-trips");

    n = 0;
    bad = 0;

    while (ngx_http_cache_guard_entry_next_header(&d, &name, &value)
           == NGX_OK)
    {
        if (n >= 2 || name.len != hdrs[n].key.len
            || memcmp(name.data, hdrs[n].key.data, name.len) != 0
            || value.len != hdrs[n].value.len
            || memcmp(value.data, hdrs[n].value.data, value.len) != 0)
        {
            bad++;
        }

        n++;
    }

    ok(n == 2 && bad == 0, "headers round-trip in order");

    /* every single-byte corruption is caught by the checksum or parser */

    bad = 0;

    for (i = 0; i < len; i++) {
        blob[i] ^= 0x5a;

        if (ngx_http_cache_guard_entry_decode(blob, len, &d, 1) == NGX_OK) {
            bad++;
        }

        blob[i] ^= 0x5a;
    }

    ok(bad == 0, "every flipped byte makes the entry invalid");

    /* every truncation is invalid, even without the checksum */

    bad = 0;

    for (i = 0; i < len; i++) {
        if (ngx_http_cache_guard_entry_decode(blob, i, &d, 0) == NGX_OK) {
            bad++;
        }
    }

    ok(bad == 0, "every truncated entry is invalid");

    ok(ngx_http_cache_guard_entry_decode((u_char *) "hello world, not ours at "
                                         "all, some garbage bytes here ok", 55,
                                         &d, 1) == NGX_DECLINED,
       "a foreign value is invalid");

    /* a lying header length is refused even when the checksum is skipped */

    blob[NGX_HTTP_CACHE_GUARD_ENTRY_FIXED] = 0xff;
    ok(ngx_http_cache_guard_entry_decode(blob, len, &d, 0) == NGX_DECLINED,
       "an overrunning header length is invalid without the checksum");

    free(blob);

    /* an entry with no headers and no body */

    memset(&e, 0, sizeof(e));
    e.status = 204;
    blob = malloc(NGX_HTTP_CACHE_GUARD_ENTRY_FIXED);
    ngx_http_cache_guard_entry_encode(blob, &e);
    ok(ngx_http_cache_guard_entry_decode(blob,
                                         NGX_HTTP_CACHE_GUARD_ENTRY_FIXED,
                                         &d, 1) == NGX_OK
       && d.status == 204 && d.body.len == 0 && d.nheaders == 0,
       "an empty entry round-trips");
    free(blob);
}


static void
test_jitter(void)
{
    int       i, below, above;
    uint64_t  t, min, max;

    ok(ngx_http_cache_guard_jitter_ttl(100000, 0, 0.7) == 100000,
       "no jitter keeps the ttl");
    ok(ngx_http_cache_guard_jitter_ttl(100000, 0.2, 0) == 80000,
       "rnd 0 gives ttl * (1 - jitter)");
    ok(ngx_http_cache_guard_jitter_ttl(100000, 0.2, 0.5) == 100000,
       "rnd 0.5 gives ttl");

    min = (uint64_t) -1;
    max = 0;
    below = 0;
    above = 0;
    srand(1);

    for (i = 0; i < 10000; i++) {
        t = ngx_http_cache_guard_jitter_ttl(100000, 0.2,
                                            (double) rand()
                                            / ((double) RAND_MAX + 1));
        min = t < min ? t : min;
        max = t > max ? t : max;
        below += (t < 100000);
        above += (t > 100000);
    }

    ok(min >= 80000 && max < 120000, "jittered ttls stay in [0.8, 1.2) ttl");
    ok(min < 81000 && max > 119000, "jittered ttls cover the whole range");
    ok(below > 4500 && above > 4500, "jitter is spread both ways");
    ok(ngx_http_cache_guard_jitter_ttl(1, 0.9, 0) >= 1,
       "a jittered ttl is never 0");
}


static void
test_accept_encoding(void)
{
    static struct {
        const char  *value;
        ngx_uint_t   gzip;
    } cases[] = {
        { "gzip", 1 },
        { "gzip, deflate, br", 1 },
        { "br, GZIP", 1 },
        { "deflate, br", 0 },
        { "identity", 0 },
        { "", 0 },
        { "gzip;q=0", 0 },
        { "gzip; q=0.000, br", 0 },
        { "gzip;q=0.5", 1 },
        { "gzip;q=0.001", 1 },
        { "x-gzip", 1 },
        { "*", 1 },
        { "*;q=0", 0 },
        { "gzipx", 0 },
        { "agzip", 0 },
        { "br;q=1.0, gzip;q=0.8", 1 },
    };

    char        what[128];
    ngx_uint_t  i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        snprintf(what, sizeof(what), "Accept-Encoding \"%s\" %s gzip",
                 cases[i].value, cases[i].gzip ? "accepts" : "refuses");
        ok(ngx_http_cache_guard_accepts_gzip((u_char *) cases[i].value,
                                             strlen(cases[i].value))
           == cases[i].gzip, what);
    }
}


static void
test_escape_json(void)
{
    u_char     out[64], *last;
    uintptr_t  added;

    static u_char  in[] = "a\"b\\c\n\x01\xff\xfe"    /* escaped */
                          "\xc3\xa9\xe2\x82\xac"       /* valid: copied */
                          "\xc0\xaf\xed\xa0\x80"      /* overlong, surrogate */
                          "\xe2\x82";                 /* cut */

    static u_char  want[] = "a\\\"b\\\\c\\n\\u0001\\u00ff\\u00fe"
                            "\xc3\xa9\xe2\x82\xac"
                            "\\u00c0\\u00af\\u00ed\\u00a0\\u0080"
                            "\\u00e2\\u0082";

    added = ngx_http_cache_guard_escape_json(NULL, in, sizeof(in) - 1);
    last = (u_char *) ngx_http_cache_guard_escape_json(out, in,
                                                       sizeof(in) - 1);

    ok((size_t) (last - out) == sizeof(want) - 1
       && memcmp(out, want, sizeof(want) - 1) == 0,
       "json: quotes, controls and bytes that are not UTF-8 are escaped");
    ok(added == sizeof(want) - sizeof(in),
       "json: the length counts what the escaping adds");
}


int
main(void)
{
    test_crc32c();
    test_siphash();
    test_codec();
    test_jitter();
    test_accept_encoding();
    test_escape_json();

    printf("1..%d\n", ngx_http_cache_guard_test_n);

    return ngx_http_cache_guard_test_failed ? 1 : 0;
}
