
/*
 * Copyright (C) nginx-cache-guard authors
 */


/* JSON output helpers, and a bounded buffer written a piece at a time */


#ifndef _NGX_HTTP_CACHE_GUARD_JSON_H_INCLUDED_
#define _NGX_HTTP_CACHE_GUARD_JSON_H_INCLUDED_


#include "ngx_http_cache_guard_types.h"


/* a buffer filled in steps; one that would overflow ends with pos == end */
typedef struct {
    u_char                         *start;
    u_char                         *pos;
    u_char                         *end;
} ngx_http_cache_guard_out_t;


/* the length of s as a quoted JSON string */
size_t ngx_http_cache_guard_json_str_len(ngx_str_t *s);
u_char *ngx_http_cache_guard_json_str(u_char *p, ngx_str_t *s);
/* at most 15 decimals, trailing zeros dropped */
u_char *ngx_http_cache_guard_json_number(u_char *p, double d);

ngx_int_t ngx_http_cache_guard_out_init(ngx_pool_t *pool,
    ngx_http_cache_guard_out_t *o, size_t size);
void ngx_http_cache_guard_out(ngx_http_cache_guard_out_t *o,
    const char *fmt, ...);
/* a quoted JSON string */
void ngx_http_cache_guard_out_json(ngx_http_cache_guard_out_t *o,
    ngx_str_t *s);
/* at most 6 decimals, trailing zeros dropped */
void ngx_http_cache_guard_out_double(ngx_http_cache_guard_out_t *o,
    double d);
/* whether a piece did not fit: the buffer holds no whole answer */
ngx_uint_t ngx_http_cache_guard_out_full(ngx_http_cache_guard_out_t *o);


#endif /* _NGX_HTTP_CACHE_GUARD_JSON_H_INCLUDED_ */
