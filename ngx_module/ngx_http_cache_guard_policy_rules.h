
/*
 * Copyright (C) nginx-cache-guard authors
 */


/* policy fields that refuse: validate, reject, geo, bloom, breaker */


#ifndef _NGX_HTTP_CACHE_GUARD_POLICY_RULES_H_INCLUDED_
#define _NGX_HTTP_CACHE_GUARD_POLICY_RULES_H_INCLUDED_


#include "ngx_http_cache_guard_types.h"
#include "ngx_http_cache_guard_policy_fields.h"


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

char *ngx_http_cache_guard_policy_validate(
    ngx_http_cache_guard_policy_ctx_t *pc);
char *ngx_http_cache_guard_policy_reject(
    ngx_http_cache_guard_policy_ctx_t *pc);
char *ngx_http_cache_guard_policy_geo(
    ngx_http_cache_guard_policy_ctx_t *pc);
char *ngx_http_cache_guard_policy_bloom(
    ngx_http_cache_guard_policy_ctx_t *pc);
char *ngx_http_cache_guard_policy_breaker(
    ngx_http_cache_guard_policy_ctx_t *pc);


#endif /* _NGX_HTTP_CACHE_GUARD_POLICY_RULES_H_INCLUDED_ */
