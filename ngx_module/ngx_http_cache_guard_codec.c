
/*
 * Copyright (C) nginx-cache-guard authors
 *
 * The entry codec: a versioned binary format with a CRC32C checksum.
 * Everything here is pure code (no nginx calls), so the unit tests link
 * this file alone.
 *
 *   0  "CGE" + version (1 byte)
 *   4  crc32c of bytes 8 .. end
 *   8  flags (2), status (2)
 *  12  number of headers (4)
 *  16  created, fresh until, stale until (8 each, ms since the epoch)
 *  40  fill time (4, ms)
 *  44  headers length (4), body length (4)
 *  52  headers: name length (2), value length (2), name, value
 *      body
 *
 * Integers are little-endian whatever the host.
 */


#include "ngx_http_cache_guard_codec.h"


static void ngx_http_cache_guard_put16(u_char *p, uint32_t v);
static void ngx_http_cache_guard_put32(u_char *p, uint32_t v);
static void ngx_http_cache_guard_put64(u_char *p, uint64_t v);
static uint32_t ngx_http_cache_guard_get16(u_char *p);
static uint32_t ngx_http_cache_guard_get32(u_char *p);
static uint64_t ngx_http_cache_guard_get64(u_char *p);
static size_t ngx_http_cache_guard_utf8_len(u_char *p, size_t size);


static uint32_t  ngx_http_cache_guard_crc32c_table[256];
static ngx_uint_t  ngx_http_cache_guard_crc32c_ready;


size_t
ngx_http_cache_guard_entry_size(ngx_http_cache_guard_entry_t *e)
{
    size_t      len;
    ngx_uint_t  i;

    len = NGX_HTTP_CACHE_GUARD_ENTRY_FIXED + e->body.len;

    for (i = 0; i < e->nheaders; i++) {
        len += 4 + e->headers[i].key.len + e->headers[i].value.len;
    }

    return len;
}


u_char *
ngx_http_cache_guard_entry_encode(u_char *buf, ngx_http_cache_guard_entry_t *e)
{
    u_char      *p, *hdr;
    ngx_uint_t   i;

    p = buf + NGX_HTTP_CACHE_GUARD_ENTRY_FIXED;
    hdr = p;

    for (i = 0; i < e->nheaders; i++) {
        ngx_http_cache_guard_put16(p, e->headers[i].key.len);
        ngx_http_cache_guard_put16(p + 2, e->headers[i].value.len);
        p = ngx_cpymem(p + 4, e->headers[i].key.data, e->headers[i].key.len);
        p = ngx_cpymem(p, e->headers[i].value.data, e->headers[i].value.len);
    }

    buf[0] = 'C';
    buf[1] = 'G';
    buf[2] = 'E';
    buf[3] = NGX_HTTP_CACHE_GUARD_ENTRY_VERSION;
    ngx_http_cache_guard_put16(buf + 8, e->flags);
    ngx_http_cache_guard_put16(buf + 10, e->status);
    ngx_http_cache_guard_put32(buf + 12, e->nheaders);
    ngx_http_cache_guard_put64(buf + 16, e->created);
    ngx_http_cache_guard_put64(buf + 24, e->fresh_until);
    ngx_http_cache_guard_put64(buf + 32, e->stale_until);
    ngx_http_cache_guard_put32(buf + 40, e->fill_ms);
    ngx_http_cache_guard_put32(buf + 44, p - hdr);
    ngx_http_cache_guard_put32(buf + 48, e->body.len);

    p = ngx_cpymem(p, e->body.data, e->body.len);

    ngx_http_cache_guard_put32(buf + 4,
                          ngx_http_cache_guard_crc32c(0, buf + 8, p - buf - 8));

    return p;
}


/*
 * A soft purge: a fresh entry becomes stale now, keeping its stale window,
 * so stale-while-revalidate still shields the origin.  NGX_OK when it was
 * changed, NGX_DECLINED when it is not ours or already stale.
 */

ngx_int_t
ngx_http_cache_guard_entry_expire(u_char *buf, size_t len, uint64_t now)
{
    ngx_http_cache_guard_entry_t  e;

    if (ngx_http_cache_guard_entry_decode(buf, len, &e, 1) != NGX_OK
        || e.fresh_until <= now)
    {
        return NGX_DECLINED;
    }

    ngx_http_cache_guard_put64(buf + 24, now);
    ngx_http_cache_guard_put32(buf + 4,
                          ngx_http_cache_guard_crc32c(0, buf + 8, len - 8));

    return NGX_OK;
}


/*
 * Anything that does not parse exactly is NGX_DECLINED: values in Redis are
 * untrusted.  verify = 0 skips the checksum for entries that never left
 * our own shared memory.
 */

ngx_int_t
ngx_http_cache_guard_entry_decode(u_char *buf, size_t len,
    ngx_http_cache_guard_entry_t *e, ngx_uint_t verify)
{
    u_char      *p, *end;
    size_t       hlen, blen;
    ngx_uint_t   i, n;

    if (len < NGX_HTTP_CACHE_GUARD_ENTRY_FIXED
        || buf[0] != 'C' || buf[1] != 'G' || buf[2] != 'E'
        || buf[3] != NGX_HTTP_CACHE_GUARD_ENTRY_VERSION)
    {
        return NGX_DECLINED;
    }

    hlen = ngx_http_cache_guard_get32(buf + 44);
    blen = ngx_http_cache_guard_get32(buf + 48);
    n = ngx_http_cache_guard_get32(buf + 12);

    if (hlen > len || blen > len
        || NGX_HTTP_CACHE_GUARD_ENTRY_FIXED + hlen + blen != len
        || n > NGX_HTTP_CACHE_GUARD_ENTRY_MAX_HDRS)
    {
        return NGX_DECLINED;
    }

    if (verify
        && ngx_http_cache_guard_get32(buf + 4)
           != ngx_http_cache_guard_crc32c(0, buf + 8, len - 8))
    {
        return NGX_DECLINED;
    }

    e->flags = ngx_http_cache_guard_get16(buf + 8);
    e->status = ngx_http_cache_guard_get16(buf + 10);
    e->nheaders = n;
    e->created = ngx_http_cache_guard_get64(buf + 16);
    e->fresh_until = ngx_http_cache_guard_get64(buf + 24);
    e->stale_until = ngx_http_cache_guard_get64(buf + 32);
    e->fill_ms = ngx_http_cache_guard_get32(buf + 40);
    e->headers = NULL;
    e->hdr_pos = buf + NGX_HTTP_CACHE_GUARD_ENTRY_FIXED;
    e->hdr_end = e->hdr_pos + hlen;
    e->body.data = e->hdr_end;
    e->body.len = blen;

    if (e->status < 100 || e->status > 599) {
        return NGX_DECLINED;
    }

    /* walk the headers once so that serving never meets a bad length */

    p = e->hdr_pos;
    end = e->hdr_end;

    for (i = 0; i < n; i++) {
        if (end - p < 4) {
            return NGX_DECLINED;
        }

        hlen = 4 + ngx_http_cache_guard_get16(p)
               + ngx_http_cache_guard_get16(p + 2);

        if ((size_t) (end - p) < hlen) {
            return NGX_DECLINED;
        }

        p += hlen;
    }

    return (p == end) ? NGX_OK : NGX_DECLINED;
}


ngx_int_t
ngx_http_cache_guard_entry_next_header(ngx_http_cache_guard_entry_t *e,
    ngx_str_t *name, ngx_str_t *value)
{
    u_char  *p;

    p = e->hdr_pos;

    if (p >= e->hdr_end) {
        return NGX_DONE;
    }

    name->len = ngx_http_cache_guard_get16(p);
    value->len = ngx_http_cache_guard_get16(p + 2);
    name->data = p + 4;
    value->data = name->data + name->len;

    e->hdr_pos = value->data + value->len;

    return NGX_OK;
}


/* CRC32C (Castagnoli), reflected, as in iSCSI and ext4 */

#if (defined __x86_64__ && defined __GNUC__)

__attribute__((target("sse4.2")))
static uint32_t
ngx_http_cache_guard_crc32c_hw(uint32_t crc, const u_char *p, size_t len)
{
    uint64_t  c, w;

    c = crc;

    while (len >= 8) {
        ngx_memcpy(&w, p, 8);
        c = __builtin_ia32_crc32di(c, w);
        p += 8;
        len -= 8;
    }

    crc = (uint32_t) c;

    while (len--) {
        crc = __builtin_ia32_crc32qi(crc, *p++);
    }

    return crc;
}

#endif


uint32_t
ngx_http_cache_guard_crc32c(uint32_t crc, const u_char *p, size_t len)
{
    uint32_t    c;
    ngx_uint_t  i, k;

    crc = ~crc;

#if (defined __x86_64__ && defined __GNUC__)

    if (__builtin_cpu_supports("sse4.2")) {
        return ~ngx_http_cache_guard_crc32c_hw(crc, p, len);
    }

#endif

    if (!ngx_http_cache_guard_crc32c_ready) {
        for (i = 0; i < 256; i++) {
            c = i;

            for (k = 0; k < 8; k++) {
                c = (c & 1) ? (c >> 1) ^ 0x82f63b78 : (c >> 1);
            }

            ngx_http_cache_guard_crc32c_table[i] = c;
        }

        ngx_http_cache_guard_crc32c_ready = 1;
    }

    while (len--) {
        crc = ngx_http_cache_guard_crc32c_table[(crc ^ *p++) & 0xff]
              ^ (crc >> 8);
    }

    return ~crc;
}


/*
 * SipHash-2-4 (Aumasson and Bernstein): a keyed hash for tables an
 * attacker feeds, the node lock table; without the key no one can choose
 * inputs that collide.
 */

#define ngx_http_cache_guard_rotl(x, b)  (((x) << (b)) | ((x) >> (64 - (b))))

#define ngx_http_cache_guard_sipround(v0, v1, v2, v3)                        \
    v0 += v1; v1 = ngx_http_cache_guard_rotl(v1, 13); v1 ^= v0;              \
    v0 = ngx_http_cache_guard_rotl(v0, 32);                                  \
    v2 += v3; v3 = ngx_http_cache_guard_rotl(v3, 16); v3 ^= v2;              \
    v0 += v3; v3 = ngx_http_cache_guard_rotl(v3, 21); v3 ^= v0;              \
    v2 += v1; v1 = ngx_http_cache_guard_rotl(v1, 17); v1 ^= v2;              \
    v2 = ngx_http_cache_guard_rotl(v2, 32)


uint64_t
ngx_http_cache_guard_siphash(const u_char *key, const u_char *p, size_t len)
{
    u_char    tail[8];
    size_t    left;
    uint64_t  k0, k1, v0, v1, v2, v3, m;

    k0 = ngx_http_cache_guard_get64((u_char *) key);
    k1 = ngx_http_cache_guard_get64((u_char *) key + 8);

    v0 = k0 ^ 0x736f6d6570736575ULL;
    v1 = k1 ^ 0x646f72616e646f6dULL;
    v2 = k0 ^ 0x6c7967656e657261ULL;
    v3 = k1 ^ 0x7465646279746573ULL;

    for (left = len; left >= 8; left -= 8, p += 8) {
        m = ngx_http_cache_guard_get64((u_char *) p);
        v3 ^= m;
        ngx_http_cache_guard_sipround(v0, v1, v2, v3);
        ngx_http_cache_guard_sipround(v0, v1, v2, v3);
        v0 ^= m;
    }

    ngx_memzero(tail, 8);
    ngx_memcpy(tail, p, left);
    tail[7] = (u_char) len;

    m = ngx_http_cache_guard_get64(tail);
    v3 ^= m;
    ngx_http_cache_guard_sipround(v0, v1, v2, v3);
    ngx_http_cache_guard_sipround(v0, v1, v2, v3);
    v0 ^= m;

    v2 ^= 0xff;
    ngx_http_cache_guard_sipround(v0, v1, v2, v3);
    ngx_http_cache_guard_sipround(v0, v1, v2, v3);
    ngx_http_cache_guard_sipround(v0, v1, v2, v3);
    ngx_http_cache_guard_sipround(v0, v1, v2, v3);

    return v0 ^ v1 ^ v2 ^ v3;
}


/*
 * The percent-decoding of a query string argument's name or value, '+'
 * as a space, into dst (room for src->len bytes).  NGX_ERROR for a '%'
 * without two hex digits and for a NUL, encoded or not.
 */

ngx_int_t
ngx_http_cache_guard_arg_decode(ngx_str_t *src, u_char *dst, ngx_str_t *out)
{
    u_char  *p, *end, *d, c, hi, lo;

    p = src->data;
    end = p + src->len;
    d = dst;

    while (p < end) {
        c = *p++;

        if (c == '+') {
            c = ' ';

        } else if (c == '%') {
            if (end - p < 2) {
                return NGX_ERROR;
            }

            hi = p[0];
            lo = p[1];

            if (hi >= '0' && hi <= '9') {
                hi -= '0';

            } else if ((hi | 0x20) >= 'a' && (hi | 0x20) <= 'f') {
                hi = (hi | 0x20) - 'a' + 10;

            } else {
                return NGX_ERROR;
            }

            if (lo >= '0' && lo <= '9') {
                lo -= '0';

            } else if ((lo | 0x20) >= 'a' && (lo | 0x20) <= 'f') {
                lo = (lo | 0x20) - 'a' + 10;

            } else {
                return NGX_ERROR;
            }

            c = (u_char) (hi << 4 | lo);
            p += 2;
        }

        if (c == '\0') {
            return NGX_ERROR;
        }

        *d++ = c;
    }

    out->data = dst;
    out->len = d - dst;

    return NGX_OK;
}


/*
 * The next argument of a query string, from *pos to end: its name and
 * value decoded into buf (room for end - *pos bytes; a name and its value
 * are never longer decoded).  NGX_OK; NGX_DONE at the end; NGX_ERROR when
 * the name or the value does not decode, or the name holds '=' or '&'
 * (origins disagree on what it means): then *name is the name as sent, or
 * decoded if only the value failed.
 */

ngx_int_t
ngx_http_cache_guard_arg_next(u_char **pos, u_char *end, u_char *buf,
    ngx_str_t *name, ngx_str_t *value)
{
    u_char     *p;
    ngx_str_t   raw;

    p = *pos;

    if (p >= end) {
        return NGX_DONE;
    }

    raw.data = p;

    while (p < end && *p != '=' && *p != '&') {
        p++;
    }

    raw.len = p - raw.data;

    if (ngx_http_cache_guard_arg_decode(&raw, buf, name) != NGX_OK
        || ngx_strlchr(name->data, name->data + name->len, '=')
        || ngx_strlchr(name->data, name->data + name->len, '&'))
    {
        *name = raw;
        return NGX_ERROR;
    }

    value->data = buf + name->len;
    value->len = 0;

    if (p < end && *p == '=') {
        raw.data = ++p;

        while (p < end && *p != '&') {
            p++;
        }

        raw.len = p - raw.data;

        if (ngx_http_cache_guard_arg_decode(&raw, buf + name->len, value)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    *pos = (p < end) ? p + 1 : p;

    return NGX_OK;
}


/*
 * Whether a decoded argument name is the rule's, in any case; "id[]" and
 * "id[k]" are "id" too, as PHP and Rack read them (an array of ids).
 */

ngx_uint_t
ngx_http_cache_guard_arg_is(ngx_str_t *name, ngx_str_t *rule)
{
    size_t  i;

    if (name->len < rule->len) {
        return 0;
    }

    for (i = 0; i < rule->len; i++) {
        if (ngx_tolower(name->data[i]) != ngx_tolower(rule->data[i])) {
            return 0;
        }
    }

    return name->len == rule->len || name->data[rule->len] == '[';
}


/* stored TTL = ttl * (1 + U(-jitter, +jitter)); rnd is uniform in [0, 1) */

uint64_t
ngx_http_cache_guard_jitter_ttl(uint64_t ttl_ms, double jitter, double rnd)
{
    double  f;

    if (jitter <= 0) {
        return ttl_ms;
    }

    f = 1.0 + jitter * (2.0 * rnd - 1.0);
    ttl_ms = (uint64_t) ((double) ttl_ms * f);

    return ttl_ms ? ttl_ms : 1;
}


/*
 * Whether an Accept-Encoding value accepts gzip: a "gzip" or "x-gzip"
 * coding (or "*") whose q is not 0.  Only two classes exist, so clients
 * that differ in irrelevant ways share one cache entry.
 */

ngx_uint_t
ngx_http_cache_guard_accepts_gzip(u_char *p, size_t len)
{
    u_char  *end, *tok, *tend, *q;

    end = p + len;

    while (p < end) {
        while (p < end && (*p == ' ' || *p == '\t' || *p == ',')) {
            p++;
        }

        tok = p;

        while (p < end && *p != ',' && *p != ';' && *p != ' ' && *p != '\t') {
            p++;
        }

        tend = p;

        /* parameters: look for q=0, q=0.0, q=0.00, q=0.000 */

        q = NULL;

        while (p < end && *p != ',') {
            if ((*p == 'q' || *p == 'Q') && p + 1 < end && p[1] == '=') {
                q = p + 2;
            }

            p++;
        }

        if (tend - tok >= 2 && (tok[0] | 0x20) == 'x' && tok[1] == '-') {
            tok += 2;
        }

        if (!((tend - tok == 4
               && (tok[0] | 0x20) == 'g' && (tok[1] | 0x20) == 'z'
               && (tok[2] | 0x20) == 'i' && (tok[3] | 0x20) == 'p')
              || (tend - tok == 1 && *tok == '*')))
        {
            continue;
        }

        if (q == NULL) {
            return 1;
        }

        if (*q != '0') {
            return 1;
        }

        for (q++; q < p && (*q == '.' || *q == '0'); q++) {
            /* void */
        }

        if (q < p && *q >= '1' && *q <= '9') {
            return 1;
        }
    }

    return 0;
}


static void
ngx_http_cache_guard_put16(u_char *p, uint32_t v)
{
    p[0] = (u_char) v;
    p[1] = (u_char) (v >> 8);
}


static void
ngx_http_cache_guard_put32(u_char *p, uint32_t v)
{
    p[0] = (u_char) v;
    p[1] = (u_char) (v >> 8);
    p[2] = (u_char) (v >> 16);
    p[3] = (u_char) (v >> 24);
}


static void
ngx_http_cache_guard_put64(u_char *p, uint64_t v)
{
    ngx_http_cache_guard_put32(p, (uint32_t) v);
    ngx_http_cache_guard_put32(p + 4, (uint32_t) (v >> 32));
}


static uint32_t
ngx_http_cache_guard_get16(u_char *p)
{
    return p[0] | (p[1] << 8);
}


static uint32_t
ngx_http_cache_guard_get32(u_char *p)
{
    return (uint32_t) p[0] | ((uint32_t) p[1] << 8)
           | ((uint32_t) p[2] << 16) | ((uint32_t) p[3] << 24);
}


static uint64_t
ngx_http_cache_guard_get64(u_char *p)
{
    return ngx_http_cache_guard_get32(p)
           | ((uint64_t) ngx_http_cache_guard_get32(p + 4) << 32);
}


/*
 * The inside of a JSON string, for any bytes a client sent: '"', '\' and
 * control characters escaped as ngx_escape_json() does, valid UTF-8
 * copied, and every byte that is not part of a valid UTF-8 sequence
 * written as \u00XX, the code point of the same number, so the answer is
 * valid JSON and the byte's value stays visible.  With dst NULL: the
 * number of bytes the escaping adds (at most 5 per byte).
 */

uintptr_t
ngx_http_cache_guard_escape_json(u_char *dst, u_char *src, size_t size)
{
    u_char      c;
    size_t      n;
    uintptr_t   len;

    static const u_char  hex[] = "0123456789abcdef";

    len = 0;

    while (size) {
        c = *src;

        if (c >= 0x80) {
            n = ngx_http_cache_guard_utf8_len(src, size);

            if (n) {
                if (dst) {
                    dst = ngx_cpymem(dst, src, n);
                }

                src += n;
                size -= n;
                continue;
            }

        } else if (c >= 0x20 && c != '"' && c != '\\') {
            if (dst) {
                *dst++ = c;
            }

            src++;
            size--;
            continue;
        }

        switch (c) {
        case '"':
        case '\\':
        case '\n':
        case '\r':
        case '\t':
        case '\b':
        case '\f':
            len++;

            if (dst) {
                *dst++ = '\\';
                *dst++ = (c == '\n') ? 'n' : (c == '\r') ? 'r'
                         : (c == '\t') ? 't' : (c == '\b') ? 'b'
                         : (c == '\f') ? 'f' : c;
            }

            break;

        default:
            len += 5;

            if (dst) {
                *dst++ = '\\';
                *dst++ = 'u';
                *dst++ = '0';
                *dst++ = '0';
                *dst++ = hex[c >> 4];
                *dst++ = hex[c & 0xf];
            }
        }

        src++;
        size--;
    }

    return dst ? (uintptr_t) dst : len;
}


/* the length of the valid UTF-8 sequence at p (RFC 3629), 0 if none */

static size_t
ngx_http_cache_guard_utf8_len(u_char *p, size_t size)
{
    u_char  c, lo, hi;
    size_t  n, i;

    c = p[0];

    lo = 0x80;
    hi = 0xbf;

    if (c >= 0xc2 && c <= 0xdf) {
        n = 2;

    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;

        if (c == 0xe0) {
            lo = 0xa0;              /* no overlong form */

        } else if (c == 0xed) {
            hi = 0x9f;              /* no surrogate */
        }

    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;

        if (c == 0xf0) {
            lo = 0x90;

        } else if (c == 0xf4) {
            hi = 0x8f;              /* nothing above U+10FFFF */
        }

    } else {
        return 0;
    }

    if (size < n || p[1] < lo || p[1] > hi) {
        return 0;
    }

    for (i = 2; i < n; i++) {
        if (p[i] < 0x80 || p[i] > 0xbf) {
            return 0;
        }
    }

    return n;
}
