
/*
 * Copyright (C) nginx-cache-guard authors
 */


/* policy fields: the readers, the errors, the fields of caching */


#ifndef _NGX_HTTP_CACHE_GUARD_POLICY_FIELDS_H_INCLUDED_
#define _NGX_HTTP_CACHE_GUARD_POLICY_FIELDS_H_INCLUDED_


#include "ngx_http_cache_guard_types.h"

#include <lua.h>
#include <lauxlib.h>


/* a policy file being read: its table's field is on top of the stack */

typedef struct {
    ngx_conf_t                     *cf;
    lua_State                      *L;
    ngx_str_t                       file;
    ngx_http_cache_guard_policy_t  *policy;
} ngx_http_cache_guard_policy_ctx_t;


/* the kinds of sub-fields policy_table() reads */

#define NGX_HTTP_CACHE_GUARD_SECONDS   0        /* more than 0 */
#define NGX_HTTP_CACHE_GUARD_SECONDS0  1        /* 0 or more */
#define NGX_HTTP_CACHE_GUARD_NUMBER    2        /* double in [min, max] */
#define NGX_HTTP_CACHE_GUARD_INTEGER   3        /* whole, in [min, max] */
#define NGX_HTTP_CACHE_GUARD_ENUM      4        /* index in values */


typedef struct {
    const char                     *name;
    ngx_uint_t                      kind;
    size_t                          offset;     /* in the policy */
    double                          min;
    double                          max;
    const char                    **values;
} ngx_http_cache_guard_subfield_t;


char *ngx_http_cache_guard_policy_name(
    ngx_http_cache_guard_policy_ctx_t *pc);
char *ngx_http_cache_guard_policy_key(
    ngx_http_cache_guard_policy_ctx_t *pc);
char *ngx_http_cache_guard_policy_ttl(
    ngx_http_cache_guard_policy_ctx_t *pc);
char *ngx_http_cache_guard_policy_negative_ttl(
    ngx_http_cache_guard_policy_ctx_t *pc);
char *ngx_http_cache_guard_policy_jitter(
    ngx_http_cache_guard_policy_ctx_t *pc);
char *ngx_http_cache_guard_policy_negative_statuses(
    ngx_http_cache_guard_policy_ctx_t *pc);
char *ngx_http_cache_guard_policy_cache_statuses(
    ngx_http_cache_guard_policy_ctx_t *pc);
char *ngx_http_cache_guard_policy_max_entry_size(
    ngx_http_cache_guard_policy_ctx_t *pc);
char *ngx_http_cache_guard_policy_l1(
    ngx_http_cache_guard_policy_ctx_t *pc);
char *ngx_http_cache_guard_policy_on_hook_error(
    ngx_http_cache_guard_policy_ctx_t *pc);
char *ngx_http_cache_guard_policy_lock(
    ngx_http_cache_guard_policy_ctx_t *pc);
char *ngx_http_cache_guard_policy_stale(
    ngx_http_cache_guard_policy_ctx_t *pc);
char *ngx_http_cache_guard_policy_early_refresh(
    ngx_http_cache_guard_policy_ctx_t *pc);
char *ngx_http_cache_guard_policy_origin(
    ngx_http_cache_guard_policy_ctx_t *pc);
char *ngx_http_cache_guard_policy_fallback(
    ngx_http_cache_guard_policy_ctx_t *pc);
char *ngx_http_cache_guard_policy_alerts(
    ngx_http_cache_guard_policy_ctx_t *pc);
char *ngx_http_cache_guard_policy_negative_max(
    ngx_http_cache_guard_policy_ctx_t *pc);
char *ngx_http_cache_guard_policy_table(ngx_http_cache_guard_policy_ctx_t *pc,
    const char *field, ngx_http_cache_guard_subfield_t *subs,
    const char *expected);
void ngx_http_cache_guard_policy_error(ngx_http_cache_guard_policy_ctx_t *pc,
    const char *field, const char *reason);
ngx_uint_t ngx_http_cache_guard_policy_line(ngx_conf_t *cf, ngx_str_t *file,
    const char *field);


#endif /* _NGX_HTTP_CACHE_GUARD_POLICY_FIELDS_H_INCLUDED_ */
