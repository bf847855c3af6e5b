
/*
 * Copyright (C) nginx-cache-guard authors
 */


/* policy files: the loader, key templates and Lua hooks */


#ifndef _NGX_HTTP_CACHE_GUARD_POLICY_H_INCLUDED_
#define _NGX_HTTP_CACHE_GUARD_POLICY_H_INCLUDED_


#include "ngx_http_cache_guard_types.h"
#include "ngx_http_cache_guard_breaker.h"

#include <lua.h>
#include <lauxlib.h>


#define NGX_HTTP_CACHE_GUARD_MAX_ARG_RULES  32

#define NGX_HTTP_CACHE_GUARD_ARG_INT     0
#define NGX_HTTP_CACHE_GUARD_ARG_STRING  1

typedef struct {
    ngx_str_t                       name;
    ngx_uint_t                      type;
    double                          min;          /* value, or length */
    double                          max;
    ngx_regex_t                    *pattern;
    ngx_flag_t                      required;
} ngx_http_cache_guard_arg_rule_t;

ngx_http_cache_guard_policy_t *ngx_http_cache_guard_policy_load(
    ngx_conf_t *cf, ngx_str_t *path);
ngx_http_cache_guard_policy_t *ngx_http_cache_guard_policy_default(
    ngx_conf_t *cf);
ngx_int_t ngx_http_cache_guard_policy_compile_key(ngx_conf_t *cf,
    ngx_http_cache_guard_policy_t *pl, ngx_str_t *value);
ngx_int_t ngx_http_cache_guard_policy_eval_key(ngx_http_request_t *r,
    ngx_array_t *parts, ngx_str_t *prefix, ngx_str_t *suffix,
    ngx_str_t *out);
ngx_int_t ngx_http_cache_guard_policy_call(ngx_http_request_t *r,
    ngx_http_cache_guard_policy_t *pl, ngx_uint_t hook, ngx_str_t *str,
    ngx_uint_t *status);
char *ngx_http_cache_guard_policy_check_location(ngx_conf_t *cf,
    ngx_http_cache_guard_policy_t *pl);
ngx_int_t ngx_http_cache_guard_policy_check_variables(ngx_conf_t *cf);

extern const char  *ngx_http_cache_guard_hook_names[];
ngx_uint_t ngx_http_cache_guard_policy_has_status(ngx_uint_t *list,
    ngx_uint_t n, ngx_uint_t status);


#endif /* _NGX_HTTP_CACHE_GUARD_POLICY_H_INCLUDED_ */
