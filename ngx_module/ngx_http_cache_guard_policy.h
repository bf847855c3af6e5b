
/*
 * Copyright (C) nginx-cache-guard authors
 */


/* policy files: the loader, the default policy, the checks */


#ifndef _NGX_HTTP_CACHE_GUARD_POLICY_H_INCLUDED_
#define _NGX_HTTP_CACHE_GUARD_POLICY_H_INCLUDED_


#include "ngx_http_cache_guard_types.h"


ngx_http_cache_guard_policy_t *ngx_http_cache_guard_policy_load(
    ngx_conf_t *cf, ngx_str_t *path);
ngx_http_cache_guard_policy_t *ngx_http_cache_guard_policy_default(
    ngx_conf_t *cf);
char *ngx_http_cache_guard_policy_check_location(ngx_conf_t *cf,
    ngx_http_cache_guard_policy_t *pl);
ngx_int_t ngx_http_cache_guard_policy_check_variables(ngx_conf_t *cf);
ngx_uint_t ngx_http_cache_guard_policy_has_status(ngx_uint_t *list,
    ngx_uint_t n, ngx_uint_t status);


#endif /* _NGX_HTTP_CACHE_GUARD_POLICY_H_INCLUDED_ */
