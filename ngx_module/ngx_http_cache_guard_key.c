
/*
 * Copyright (C) nginx-cache-guard authors
 *
 * Key templates ("$host$uri", "$1"), of a policy's key and bloom.item:
 * compiled into literals, variable indexes and regex captures when nginx
 * reads its configuration, evaluated per request in one pass into one
 * allocation (cheaper than a complex value, which runs its script twice
 * and copies the result again).
 */


#include "ngx_http_cache_guard_key.h"


static ngx_int_t ngx_http_cache_guard_key_known_variable(
    ngx_http_core_main_conf_t *cmcf, ngx_str_t *name);


static ngx_str_t  ngx_http_cache_guard_default_key =
    ngx_string("$scheme://$host$request_uri");


/* a policy's key: the template value, or the default one when NULL */

ngx_int_t
ngx_http_cache_guard_key_compile(ngx_conf_t *cf,
    ngx_http_cache_guard_policy_t *pl, ngx_str_t *value)
{
    pl->key = ngx_http_cache_guard_key_template(cf,
                  value ? value : &ngx_http_cache_guard_default_key, "key");

    return pl->key ? NGX_OK : NGX_ERROR;
}


ngx_array_t *
ngx_http_cache_guard_key_template(ngx_conf_t *cf, ngx_str_t *value,
    const char *field)
{
    u_char                           *p, *end, *start;
    ngx_str_t                         name;
    ngx_uint_t                        braces;
    ngx_array_t                      *parts;
    ngx_http_cache_guard_key_part_t  *part;

    parts = ngx_array_create(cf->pool, 4,
                             sizeof(ngx_http_cache_guard_key_part_t));
    if (parts == NULL) {
        return NULL;
    }

    p = value->data;
    end = p + value->len;

    while (p < end) {

        if (parts->nelts == NGX_HTTP_CACHE_GUARD_MAX_KEY_PARTS) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "cache guard: %s \"%V\" has more than %d "
                               "parts", field, value,
                               NGX_HTTP_CACHE_GUARD_MAX_KEY_PARTS);
            return NULL;
        }

        part = ngx_array_push(parts);
        if (part == NULL) {
            return NULL;
        }

        part->index = -1;
        part->capture = -1;
        ngx_str_null(&part->text);

        if (*p != '$' || p + 1 == end) {
            start = p;

            for (p++; p < end && *p != '$'; p++) { /* void */ }

            part->text.data = start;
            part->text.len = p - start;
            continue;
        }

        p++;
        braces = (*p == '{');

        if (braces) {
            p++;
        }

        start = p;

        if (p < end && *p >= '1' && *p <= '9') {
            part->capture = *p++ - '0';

        } else {
            while (p < end && (isalnum(*p) || *p == '_')) {
                p++;
            }
        }

        name.data = start;
        name.len = p - start;

        if (name.len == 0 || (braces && (p == end || *p != '}'))) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "cache guard: invalid variable name in %s "
                               "\"%V\"", field, value);
            return NULL;
        }

        if (braces) {
            p++;
        }

        /* the name, for the checks once every variable is declared */
        part->text = name;

        if (part->capture == -1) {
            part->index = ngx_http_get_variable_index(cf, &name);
            if (part->index == NGX_ERROR) {
                return NULL;
            }
        }
    }

    return parts;
}


ngx_uint_t
ngx_http_cache_guard_key_max_capture(ngx_array_t *parts)
{
    ngx_uint_t                        i, n;
    ngx_http_cache_guard_key_part_t  *part;

    n = 0;

    if (parts == NULL) {
        return 0;
    }

    part = parts->elts;

    for (i = 0; i < parts->nelts; i++) {
        if (part[i].capture > (ngx_int_t) n) {
            n = part[i].capture;
        }
    }

    return n;
}


/* the first variable of a template nginx does not know, or NULL */

ngx_str_t *
ngx_http_cache_guard_key_unknown_variable(ngx_http_core_main_conf_t *cmcf,
    ngx_array_t *parts)
{
    ngx_uint_t                        i;
    ngx_http_cache_guard_key_part_t  *part;

    if (parts == NULL) {
        return NULL;
    }

    part = parts->elts;

    for (i = 0; i < parts->nelts; i++) {
        if (part[i].index != -1
            && ngx_http_cache_guard_key_known_variable(cmcf, &part[i].text)
               != NGX_OK)
        {
            return &part[i].text;
        }
    }

    return NULL;
}


/* as ngx_http_variables_init_vars() finds them */

static ngx_int_t
ngx_http_cache_guard_key_known_variable(ngx_http_core_main_conf_t *cmcf,
    ngx_str_t *name)
{
    ngx_uint_t             i;
    ngx_hash_key_t        *key;
    ngx_http_variable_t   *pv;

    if (cmcf->variables_keys == NULL) {
        return NGX_OK;
    }

    key = cmcf->variables_keys->keys.elts;

    for (i = 0; i < cmcf->variables_keys->keys.nelts; i++) {
        if (key[i].key.len == name->len
            && ngx_strncasecmp(key[i].key.data, name->data, name->len) == 0)
        {
            return NGX_OK;
        }
    }

    pv = cmcf->prefix_variables.elts;

    for (i = 0; i < cmcf->prefix_variables.nelts; i++) {
        if (name->len >= pv[i].name.len
            && ngx_strncasecmp(name->data, pv[i].name.data, pv[i].name.len)
               == 0)
        {
            return NGX_OK;
        }
    }

    return NGX_DECLINED;
}


ngx_int_t
ngx_http_cache_guard_key_eval(ngx_http_request_t *r,
    ngx_array_t *parts, ngx_str_t *prefix, ngx_str_t *suffix,
    ngx_str_t *out)
{
    u_char                           *p;
    size_t                            len;
    ngx_uint_t                        i, n;
    ngx_str_t                         vals[NGX_HTTP_CACHE_GUARD_MAX_KEY_PARTS];
    ngx_http_variable_value_t        *vv;
    ngx_http_cache_guard_key_part_t  *part;

    part = parts->elts;
    n = parts->nelts;
    len = 0;

    for (i = 0; i < n; i++) {

        if (part[i].index != -1) {
            /* flushed: a subrequest shares its parent's variable cache */
            vv = ngx_http_get_flushed_variable(r, part[i].index);

            if (vv == NULL || vv->not_found) {
                ngx_str_null(&vals[i]);

            } else {
                vals[i].data = vv->data;
                vals[i].len = vv->len;
            }

        } else if (part[i].capture != -1) {
            if ((ngx_uint_t) part[i].capture < r->ncaptures / 2
                && r->captures_data)
            {
                vals[i].data = r->captures_data
                               + r->captures[2 * part[i].capture];
                vals[i].len = r->captures[2 * part[i].capture + 1]
                              - r->captures[2 * part[i].capture];

            } else {
                ngx_str_null(&vals[i]);
            }

        } else {
            vals[i] = part[i].text;
        }

        len += vals[i].len;
    }

    /* too long is not "nothing": an attacker must not skip checks so */

    if (len == 0) {
        return NGX_DECLINED;
    }

    if (len > NGX_HTTP_CACHE_GUARD_MAX_KEY) {
        return NGX_ABORT;
    }

    out->len = prefix->len + len + suffix->len;
    out->data = ngx_pnalloc(r->pool, out->len);
    if (out->data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(out->data, prefix->data, prefix->len);

    for (i = 0; i < n; i++) {
        p = ngx_cpymem(p, vals[i].data, vals[i].len);
    }

    ngx_memcpy(p, suffix->data, suffix->len);

    return NGX_OK;
}
