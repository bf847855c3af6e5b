
/*
 * Copyright (C) nginx-cache-guard authors
 *
 * The access phase: a request a policy refuses never reaches Redis or the
 * origin.  The declarative rules (methods, the URI, typed arguments) are
 * checked in C; then the policy's validate hook, the country rules and the
 * Bloom filter.  A refused request is answered with a JSON error by the
 * content handler below; the cache lookup in the precontent phase sees it
 * as done.
 */


#include "ngx_http_cache_guard_access.h"
#include "ngx_http_cache_guard_respond.h"
#include "ngx_http_cache_guard_bloom.h"
#include "ngx_http_cache_guard_codec.h"
#include "ngx_http_cache_guard_geo.h"
#include "ngx_http_cache_guard_ctx.h"
#include "ngx_http_cache_guard_key.h"
#include "ngx_http_cache_guard_lua.h"
#include "ngx_http_cache_guard_policy_rules.h"


static ngx_int_t ngx_http_cache_guard_check_args(ngx_http_request_t *r,
    ngx_http_cache_guard_ctx_t *ctx);
static ngx_int_t ngx_http_cache_guard_check_geo(ngx_http_request_t *r,
    ngx_http_cache_guard_ctx_t *ctx);
static ngx_int_t ngx_http_cache_guard_check_bloom(ngx_http_request_t *r,
    ngx_http_cache_guard_ctx_t *ctx);


/*
 * Returns NGX_DECLINED whatever it decides: NGX_OK would grant access
 * under "satisfy any" and skip allow/deny and auth_request.
 */

ngx_int_t
ngx_http_cache_guard_access_handler(ngx_http_request_t *r)
{
    ngx_uint_t                        status;
    ngx_str_t                         msg;
    ngx_http_cache_guard_hook_rc_t    rc;
    ngx_http_cache_guard_ctx_t       *ctx;
    ngx_http_cache_guard_policy_t    *pl;
    ngx_http_cache_guard_loc_conf_t  *lcf;

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_cache_guard_module);

    if (!lcf->enable || !lcf->policy->access || r != r->main) {
        return NGX_DECLINED;
    }

    ctx = ngx_http_cache_guard_get_ctx(r);
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ctx->checked) {
        return NGX_DECLINED;
    }

    ctx->checked = 1;
    pl = ctx->policy;

    if (pl->validate_methods && !(r->method & pl->validate_methods)) {
        return ngx_http_cache_guard_reject(r, ctx,
                                           NGX_HTTP_CACHE_GUARD_INVALID,
                                           pl->reject_status,
                                           "method %V is not allowed",
                                           &r->method_name);
    }

    /*
     * nginx cuts $uri and $args at a '#', which a request target must not
     * hold (RFC 9112), while proxy_pass sends the target on whole: the
     * rules would check less than some origins read.
     */

    if ((pl->validate_uri || pl->validate_args)
        && ngx_strlchr(r->unparsed_uri.data,
                       r->unparsed_uri.data + r->unparsed_uri.len, '#'))
    {
        return ngx_http_cache_guard_reject(r, ctx,
                                           NGX_HTTP_CACHE_GUARD_INVALID,
                                           pl->reject_status,
                                           "a '#' in the request target");
    }

    if (pl->validate_uri
        && ngx_regex_exec(pl->validate_uri, &r->uri, NULL, 0)
           == NGX_REGEX_NO_MATCHED)
    {
        return ngx_http_cache_guard_reject(r, ctx,
                                           NGX_HTTP_CACHE_GUARD_INVALID,
                                           pl->reject_status,
                                           "invalid uri");
    }

    if (pl->validate_args
        && ngx_http_cache_guard_check_args(r, ctx) != NGX_OK)
    {
        return NGX_DECLINED;
    }

    if (pl->validate_fn != LUA_NOREF) {
        rc = ngx_http_cache_guard_lua_call(r, pl,
                                           NGX_HTTP_CACHE_GUARD_HOOK_VALIDATE,
                                           &msg, &status);
        if (rc == NGX_HTTP_CACHE_GUARD_HOOK_ERROR) {
            if (pl->on_hook_error != NGX_HTTP_CACHE_GUARD_ON_HOOK_PASS) {
                return ngx_http_cache_guard_reject_hook(r, ctx);
            }

            /* "pass": the request is valid as far as the hook goes */
            rc = NGX_HTTP_CACHE_GUARD_HOOK_OK;
        }

        if (rc == NGX_HTTP_CACHE_GUARD_HOOK_REFUSED) {
            return ngx_http_cache_guard_reject(r, ctx,
                                               NGX_HTTP_CACHE_GUARD_INVALID,
                                               status, "%V",
                                               msg.len ? &msg
                                               : &(ngx_str_t)
                                                 ngx_string("invalid request"));
        }
    }

    if ((pl->geo_deny || pl->geo_allow)
        && ngx_http_cache_guard_check_geo(r, ctx) != NGX_OK)
    {
        return NGX_DECLINED;
    }

    if (pl->bloom) {
        (void) ngx_http_cache_guard_check_bloom(r, ctx);
    }

    return NGX_DECLINED;
}


/*
 * Every occurrence of a ruled argument is checked, not just the first
 * (as $arg_ and ngx_http_arg() see it): "?id=1&id=junk" must not pass to
 * an origin that reads the last one.  Names and values are checked as the
 * origin reads them, decoded: "?id=1&%69d=junk" is two ids.  An argument
 * that does not decode (a bad %XY, a NUL, a name holding '=' or '&') is
 * refused, since origins disagree on what it means.
 */

#define NGX_HTTP_CACHE_GUARD_ARGS_STACK  512

static ngx_int_t
ngx_http_cache_guard_check_args(ngx_http_request_t *r,
    ngx_http_cache_guard_ctx_t *ctx)
{
    u_char                           *p, *end, *v, *buf;
    u_char                            stack[NGX_HTTP_CACHE_GUARD_ARGS_STACK];
    double                            n;
    ngx_int_t                         rc;
    ngx_str_t                         name, value;
    ngx_uint_t                        i, digits, nrules;
    ngx_uint_t                        seen[NGX_HTTP_CACHE_GUARD_MAX_ARG_RULES];
    ngx_http_cache_guard_policy_t    *pl;
    ngx_http_cache_guard_arg_rule_t  *rule;

    pl = ctx->policy;
    rule = pl->validate_args->elts;
    nrules = pl->validate_args->nelts;

    ngx_memzero(seen, sizeof(seen));

    /* a decoded argument is never longer than its encoding */

    if (r->args.len <= NGX_HTTP_CACHE_GUARD_ARGS_STACK) {
        buf = stack;

    } else {
        buf = ngx_pnalloc(r->pool, r->args.len);
        if (buf == NULL) {
            return ngx_http_cache_guard_fallback(r, ctx);
        }
    }

    p = r->args.data;
    end = p + r->args.len;

    for ( ;; ) {
        rc = ngx_http_cache_guard_arg_next(&p, end, buf, &name, &value);

        if (rc == NGX_DONE) {
            break;
        }

        if (rc == NGX_ERROR) {
            goto undecodable;
        }

        for (i = 0; i < nrules; i++) {
            if (ngx_http_cache_guard_arg_is(&name, &rule[i].name)) {
                break;
            }
        }

        if (i == nrules) {
            continue;
        }

        seen[i] = 1;

        if (rule[i].type == NGX_HTTP_CACHE_GUARD_ARG_INT) {
            v = value.data;
            n = 0;
            digits = 0;

            if (value.len && *v == '-') {
                v++;
            }

            for ( /* void */ ; v < value.data + value.len
                               && *v >= '0' && *v <= '9'; v++)
            {
                n = n * 10 + (*v - '0');
                digits++;
            }

            if (value.len && value.data[0] == '-') {
                n = -n;
            }

            if (v != value.data + value.len || digits == 0 || digits > 15
                || n < rule[i].min || n > rule[i].max)
            {
                goto invalid;
            }

        } else if ((double) value.len < rule[i].min
                   || (double) value.len > rule[i].max
                   || (rule[i].pattern
                       && ngx_regex_exec(rule[i].pattern, &value, NULL, 0)
                          == NGX_REGEX_NO_MATCHED))
        {
            goto invalid;
        }
    }

    for (i = 0; i < nrules; i++) {
        if (rule[i].required && !seen[i]) {
            ngx_http_cache_guard_reject(r, ctx, NGX_HTTP_CACHE_GUARD_INVALID,
                                        pl->reject_status,
                                        "argument \"%V\" is required",
                                        &rule[i].name);
            return NGX_DECLINED;
        }
    }

    return NGX_OK;

invalid:

    ngx_http_cache_guard_reject(r, ctx, NGX_HTTP_CACHE_GUARD_INVALID,
                                pl->reject_status,
                                "invalid argument \"%V\"", &rule[i].name);
    return NGX_DECLINED;

undecodable:

    /* the JSON answer names it in printable ASCII only */

    name.len = ngx_min(name.len, sizeof(stack) / 8);

    for (i = 0; i < name.len; i++) {
        stack[i] = (name.data[i] >= 0x20 && name.data[i] < 0x7f)
                   ? name.data[i] : '?';
    }

    name.data = stack;

    ngx_http_cache_guard_reject(r, ctx, NGX_HTTP_CACHE_GUARD_INVALID,
                                pl->reject_status,
                                "argument \"%V\" is not well encoded", &name);
    return NGX_DECLINED;
}


/* an address with no country passes deny lists and fails allow lists */

static ngx_int_t
ngx_http_cache_guard_check_geo(ngx_http_request_t *r,
    ngx_http_cache_guard_ctx_t *ctx)
{
    ngx_str_t                      *c;
    ngx_uint_t                      i, found;
    ngx_array_t                    *list;
    ngx_http_cache_guard_geo_t      geo;
    ngx_http_cache_guard_policy_t  *pl;

    pl = ctx->policy;

    switch (ngx_http_cache_guard_geo_lookup(r, &geo)) {

    case NGX_OK:
        break;

    case NGX_ERROR:
        /* no memory: refusing is safer than letting a denied country in */
        ngx_http_cache_guard_fallback(r, ctx);
        return NGX_DECLINED;

    default:
        ngx_str_null(&geo.country);
    }

    list = pl->geo_allow ? pl->geo_allow : pl->geo_deny;
    c = list->elts;
    found = 0;

    for (i = 0; geo.country.len && i < list->nelts; i++) {
        if (c[i].len == geo.country.len
            && ngx_strncasecmp(c[i].data, geo.country.data, c[i].len) == 0)
        {
            found = 1;
            break;
        }
    }

    if (pl->geo_deny && found && list == pl->geo_deny) {
        goto reject;
    }

    if (pl->geo_allow && !found) {
        goto reject;
    }

    if (pl->geo_allow && pl->geo_deny) {
        /* an allowed country may still be denied explicitly */
        c = pl->geo_deny->elts;

        for (i = 0; i < pl->geo_deny->nelts; i++) {
            if (c[i].len == geo.country.len
                && ngx_strncasecmp(c[i].data, geo.country.data, c[i].len)
                   == 0)
            {
                goto reject;
            }
        }
    }

    return NGX_OK;

reject:

    ngx_http_cache_guard_reject(r, ctx, NGX_HTTP_CACHE_GUARD_INVALID,
                                pl->geo_status,
                                "access from this location is not allowed");
    return NGX_DECLINED;
}


/*
 * A key that cannot exist is refused without touching Redis or the
 * origin.  A filter not loaded yet lets everything through (fail open);
 * in shadow mode a rejection is only counted.
 */

static ngx_int_t
ngx_http_cache_guard_check_bloom(ngx_http_request_t *r,
    ngx_http_cache_guard_ctx_t *ctx)
{
    ngx_int_t                       rc;
    ngx_str_t                       item;
    ngx_http_cache_guard_hook_rc_t  hrc;
    ngx_http_cache_guard_policy_t  *pl;

    static ngx_str_t  none = ngx_null_string;
    static ngx_str_t  not_found = ngx_string("not found");

    pl = ctx->policy;

    if (pl->bloom_item_fn != LUA_NOREF) {
        hrc = ngx_http_cache_guard_lua_call(r, pl,
                                            NGX_HTTP_CACHE_GUARD_HOOK_BLOOM,
                                            &item, NULL);
        if (hrc == NGX_HTTP_CACHE_GUARD_HOOK_ERROR) {
            if (pl->on_hook_error != NGX_HTTP_CACHE_GUARD_ON_HOOK_PASS) {
                return ngx_http_cache_guard_reject_hook(r, ctx);
            }

            /* "pass": no Bloom check */
            return NGX_OK;
        }

        rc = (hrc == NGX_HTTP_CACHE_GUARD_HOOK_NIL) ? NGX_DECLINED : NGX_OK;

    } else {
        rc = ngx_http_cache_guard_key_eval(r, pl->bloom_item, &none,
                                           &none, &item);
        if (rc == NGX_ERROR) {
            return NGX_ERROR;
        }
    }

    if (rc == NGX_DECLINED) {
        /* no item (an empty one, or nil from the hook): nothing to test */
        return NGX_OK;
    }

    /* an item too long to have been added (NGX_ABORT) is absent */

    if (rc == NGX_OK
        && ngx_http_cache_guard_bloom_test(pl->bloom, item.data, item.len)
           != NGX_DECLINED)
    {
        return NGX_OK;
    }

    ngx_http_cache_guard_bloom_rejected(pl->bloom);

    if (ngx_http_cache_guard_bloom_mode(pl->bloom)
        == NGX_HTTP_CACHE_GUARD_BLOOM_SHADOW)
    {
        return NGX_OK;
    }

    return ngx_http_cache_guard_reject_str(r, ctx,
                                           NGX_HTTP_CACHE_GUARD_BLOOM_REJECT,
                                           pl->bloom_status, &not_found);
}


