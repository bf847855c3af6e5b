
/*
 * Copyright (C) nginx-cache-guard authors
 */


/* JSON output helpers */


#ifndef _NGX_HTTP_CACHE_GUARD_JSON_H_INCLUDED_
#define _NGX_HTTP_CACHE_GUARD_JSON_H_INCLUDED_


#include "ngx_http_cache_guard_types.h"


/* the length of s as a quoted JSON string */
size_t ngx_http_cache_guard_json_str_len(ngx_str_t *s);
u_char *ngx_http_cache_guard_json_str(u_char *p, ngx_str_t *s);
/* at most 15 decimals, trailing zeros dropped */
u_char *ngx_http_cache_guard_json_number(u_char *p, double d);


#endif /* _NGX_HTTP_CACHE_GUARD_JSON_H_INCLUDED_ */
