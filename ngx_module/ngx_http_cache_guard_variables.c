
/*
 * Copyright (C) nginx-cache-guard authors
 *
 * The variables $cache_guard_status, $cache_guard_level and
 * $cache_guard_key: what the request flow did, for the access log and for
 * the configuration.
 */


#include "ngx_http_cache_guard_variables.h"
#include "ngx_http_cache_guard_stats.h"


static ngx_int_t ngx_http_cache_guard_variable(ngx_http_variable_value_t *v,
    ngx_str_t *s);
static ngx_int_t ngx_http_cache_guard_get_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);


static ngx_http_variable_t  ngx_http_cache_guard_variables[] = {

    { ngx_string("cache_guard_status"), NULL,
      ngx_http_cache_guard_get_variable, 0,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("cache_guard_level"), NULL,
      ngx_http_cache_guard_get_variable, 1,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("cache_guard_key"), NULL,
      ngx_http_cache_guard_get_variable, 2,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


ngx_int_t
ngx_http_cache_guard_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var, *v;

    for (v = ngx_http_cache_guard_variables; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = v->get_handler;
        var->data = v->data;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_cache_guard_variable(ngx_http_variable_value_t *v, ngx_str_t *s)
{
    if (s->len == 0) {
        v->not_found = 1;
        return NGX_OK;
    }

    v->len = s->len;
    v->valid = 1;
    v->no_cacheable = 0;
    v->not_found = 0;
    v->data = s->data;

    return NGX_OK;
}


/* data: 0 the status, 1 the level, 2 the key */

static ngx_int_t
ngx_http_cache_guard_get_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_str_t                   *s, key;
    ngx_http_cache_guard_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r->main, ngx_http_cache_guard_module);

    if (ctx == NULL) {
        v->not_found = 1;
        return NGX_OK;
    }

    if (data == 2) {
        /* the key as an operator writes it (to purge it): no variant */
        key = ctx->key;

        if (ctx->gzip) {
            key.len -= sizeof(NGX_HTTP_CACHE_GUARD_GZIP_VARIANT) - 1;
        }

        s = &key;

    } else {
        s = (data == 0) ? &ngx_http_cache_guard_status_names[ctx->status]
                        : &ngx_http_cache_guard_level_names[ctx->level];
    }

    return ngx_http_cache_guard_variable(v, s);
}
