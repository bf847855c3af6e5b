
/*
 * Copyright (C) nginx-cache-guard authors
 */


/* key templates: compiled at configuration, evaluated per request */


#ifndef _NGX_HTTP_CACHE_GUARD_KEY_H_INCLUDED_
#define _NGX_HTTP_CACHE_GUARD_KEY_H_INCLUDED_


#include "ngx_http_cache_guard_types.h"


ngx_array_t *ngx_http_cache_guard_key_template(ngx_conf_t *cf,
    ngx_str_t *value, const char *field);
ngx_int_t ngx_http_cache_guard_key_compile(ngx_conf_t *cf,
    ngx_http_cache_guard_policy_t *pl, ngx_str_t *value);
ngx_uint_t ngx_http_cache_guard_key_max_capture(ngx_array_t *parts);
ngx_str_t *ngx_http_cache_guard_key_unknown_variable(
    ngx_http_core_main_conf_t *cmcf, ngx_array_t *parts);
ngx_int_t ngx_http_cache_guard_key_eval(ngx_http_request_t *r,
    ngx_array_t *parts, ngx_str_t *prefix, ngx_str_t *suffix,
    ngx_str_t *out);


#endif /* _NGX_HTTP_CACHE_GUARD_KEY_H_INCLUDED_ */
