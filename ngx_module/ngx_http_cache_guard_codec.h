
/*
 * Copyright (C) nginx-cache-guard authors
 */


/*
 * the entry codec, hashes and request-independent parsing: pure code, unit
 * tested without nginx running
 */


#ifndef _NGX_HTTP_CACHE_GUARD_CODEC_H_INCLUDED_
#define _NGX_HTTP_CACHE_GUARD_CODEC_H_INCLUDED_


#include "ngx_http_cache_guard_types.h"


size_t ngx_http_cache_guard_entry_size(ngx_http_cache_guard_entry_t *e);
u_char *ngx_http_cache_guard_entry_encode(u_char *buf,
    ngx_http_cache_guard_entry_t *e);
ngx_int_t ngx_http_cache_guard_entry_decode(u_char *buf, size_t len,
    ngx_http_cache_guard_entry_t *e, ngx_uint_t verify);
ngx_int_t ngx_http_cache_guard_entry_next_header(
    ngx_http_cache_guard_entry_t *e, ngx_str_t *name, ngx_str_t *value);
uint32_t ngx_http_cache_guard_crc32c(uint32_t crc, const u_char *p,
    size_t len);
uint64_t ngx_http_cache_guard_siphash(const u_char *key, const u_char *p,
    size_t len);
ngx_int_t ngx_http_cache_guard_arg_decode(ngx_str_t *src, u_char *dst,
    ngx_str_t *out);
ngx_int_t ngx_http_cache_guard_arg_next(u_char **pos, u_char *end,
    u_char *buf, ngx_str_t *name, ngx_str_t *value);
ngx_uint_t ngx_http_cache_guard_arg_is(ngx_str_t *name, ngx_str_t *rule);
uint64_t ngx_http_cache_guard_jitter_ttl(uint64_t ttl_ms, double jitter,
    double rnd);
ngx_uint_t ngx_http_cache_guard_accepts_gzip(u_char *p, size_t len);
ngx_int_t ngx_http_cache_guard_entry_expire(u_char *buf, size_t len,
    uint64_t now);
/* JSON string content; not UTF-8: \u00XX of each byte; dst NULL: added */
uintptr_t ngx_http_cache_guard_escape_json(u_char *dst, u_char *src,
    size_t size);


#endif /* _NGX_HTTP_CACHE_GUARD_CODEC_H_INCLUDED_ */
