
/*
 * Copyright (C) nginx-cache-guard authors
 *
 * The policy fields that refuse: validate (rules or a hook), reject, geo
 * and bloom, checked by the access phase; breaker, which stops calling a
 * failing origin or Redis.
 */


#include "ngx_http_cache_guard_policy_rules.h"
#include "ngx_http_cache_guard_bloom.h"
#include "ngx_http_cache_guard_key.h"


static char *ngx_http_cache_guard_policy_breaker_one(
    ngx_http_cache_guard_policy_ctx_t *pc, ngx_uint_t origin);
static char *ngx_http_cache_guard_policy_args(
    ngx_http_cache_guard_policy_ctx_t *pc);
static ngx_regex_t *ngx_http_cache_guard_policy_regex(
    ngx_http_cache_guard_policy_ctx_t *pc, const char *field);
static ngx_array_t *ngx_http_cache_guard_policy_strings(
    ngx_http_cache_guard_policy_ctx_t *pc, const char *field);
static ngx_int_t ngx_http_cache_guard_policy_status(
    ngx_http_cache_guard_policy_ctx_t *pc, const char *field,
    ngx_uint_t *status);


/*
 * validate = { uri = "^/api/users/[0-9]+$", methods = { "GET" },
 *              args = { id = { type = "int", min = 1, max = 999 } },
 *              max_key_length = 512 }, or a function(r)
 */

char *
ngx_http_cache_guard_policy_validate(ngx_http_cache_guard_policy_ctx_t *pc)
{
    double          v;
    lua_State      *L;
    ngx_uint_t      i, n;
    const char     *key, *m;

    static struct {
        const char  *name;
        ngx_uint_t   method;
    } methods[] = {
        { "GET", NGX_HTTP_GET }, { "HEAD", NGX_HTTP_HEAD },
        { "POST", NGX_HTTP_POST }, { "PUT", NGX_HTTP_PUT },
        { "DELETE", NGX_HTTP_DELETE }, { "PATCH", NGX_HTTP_PATCH },
        { "OPTIONS", NGX_HTTP_OPTIONS }, { NULL, 0 }
    };

    L = pc->L;

    if (lua_type(L, -1) == LUA_TFUNCTION) {
        lua_pushvalue(L, -1);
        pc->policy->validate_fn = luaL_ref(L, LUA_REGISTRYINDEX);
        return NGX_CONF_OK;
    }

    if (!lua_istable(L, -1)) {
        ngx_http_cache_guard_policy_error(pc, "validate", "must be a table "
                                          "of rules or a function");
        return NGX_CONF_ERROR;
    }

    lua_pushnil(L);

    while (lua_next(L, -2) != 0) {
        key = (lua_type(L, -2) == LUA_TSTRING) ? lua_tostring(L, -2) : "";

        if (ngx_strcmp(key, "uri") == 0) {
            pc->policy->validate_uri =
                ngx_http_cache_guard_policy_regex(pc, "validate.uri");
            if (pc->policy->validate_uri == NULL) {
                return NGX_CONF_ERROR;
            }

        } else if (ngx_strcmp(key, "methods") == 0) {
            if (!lua_istable(L, -1)) {
                goto methods;
            }

            n = lua_objlen(L, -1);

            for (i = 1; i <= n; i++) {
                lua_rawgeti(L, -1, i);
                m = (lua_type(L, -1) == LUA_TSTRING) ? lua_tostring(L, -1)
                                                     : "";
                lua_pop(L, 1);

                for (n = 0; methods[n].name; n++) {
                    if (ngx_strcmp(methods[n].name, m) == 0) {
                        break;
                    }
                }

                if (methods[n].name == NULL) {
                    goto methods;
                }

                pc->policy->validate_methods |= methods[n].method;
                n = lua_objlen(L, -1);
            }

            if (pc->policy->validate_methods == 0) {
                goto methods;
            }

        } else if (ngx_strcmp(key, "args") == 0) {
            if (ngx_http_cache_guard_policy_args(pc) != NGX_CONF_OK) {
                return NGX_CONF_ERROR;
            }

        } else if (ngx_strcmp(key, "max_key_length") == 0) {
            v = lua_tonumber(L, -1);

            if (lua_type(L, -1) != LUA_TNUMBER || v < 1
                || v > NGX_HTTP_CACHE_GUARD_MAX_KEY)
            {
                ngx_http_cache_guard_policy_error(pc,
                                              "validate.max_key_length",
                                              "must be from 1 to 4096");
                return NGX_CONF_ERROR;
            }

            pc->policy->max_key_length = (size_t) v;

        } else {
            ngx_http_cache_guard_policy_error(pc, "validate", "may hold uri, "
                                              "methods, args and "
                                              "max_key_length only");
            return NGX_CONF_ERROR;
        }

        lua_pop(L, 1);
    }

    return NGX_CONF_OK;

methods:

    ngx_http_cache_guard_policy_error(pc, "validate.methods", "must list "
                                      "methods such as { \"GET\", "
                                      "\"HEAD\" }, each one of \"GET\", "
                                      "\"HEAD\", \"POST\", \"PUT\", "
                                      "\"DELETE\", \"PATCH\", "
                                      "\"OPTIONS\"");
    return NGX_CONF_ERROR;
}


/* args = { NAME = { type = "int"|"string", min, max, pattern, required } } */

static char *
ngx_http_cache_guard_policy_args(ngx_http_cache_guard_policy_ctx_t *pc)
{
    size_t                            len;
    lua_State                        *L;
    const char                       *name, *key, *type;
    ngx_http_cache_guard_arg_rule_t  *rule;

    L = pc->L;

    if (!lua_istable(L, -1)) {
        goto invalid;
    }

    pc->policy->validate_args = ngx_array_create(pc->cf->pool, 4,
                                    sizeof(ngx_http_cache_guard_arg_rule_t));
    if (pc->policy->validate_args == NULL) {
        return NGX_CONF_ERROR;
    }

    lua_pushnil(L);

    while (lua_next(L, -2) != 0) {

        if (lua_type(L, -2) != LUA_TSTRING || !lua_istable(L, -1)) {
            goto invalid;
        }

        if (pc->policy->validate_args->nelts
            == NGX_HTTP_CACHE_GUARD_MAX_ARG_RULES)
        {
            ngx_http_cache_guard_policy_error(pc, "validate.args", "may "
                                              "hold 32 rules at most");
            return NGX_CONF_ERROR;
        }

        rule = ngx_array_push(pc->policy->validate_args);
        if (rule == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_memzero(rule, sizeof(ngx_http_cache_guard_arg_rule_t));

        name = lua_tolstring(L, -2, &len);
        rule->name.data = ngx_pnalloc(pc->cf->pool, len);
        if (rule->name.data == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_memcpy(rule->name.data, name, len);
        rule->name.len = len;
        rule->min = -1e18;
        rule->max = 1e18;

        lua_pushnil(L);

        while (lua_next(L, -2) != 0) {
            key = (lua_type(L, -2) == LUA_TSTRING) ? lua_tostring(L, -2) : "";

            if (ngx_strcmp(key, "type") == 0) {
                type = (lua_type(L, -1) == LUA_TSTRING) ? lua_tostring(L, -1)
                                                        : "";

                if (ngx_strcmp(type, "int") == 0) {
                    rule->type = NGX_HTTP_CACHE_GUARD_ARG_INT;

                } else if (ngx_strcmp(type, "string") == 0) {
                    rule->type = NGX_HTTP_CACHE_GUARD_ARG_STRING;

                } else {
                    ngx_http_cache_guard_policy_error(pc,
                                                  "validate.args.type",
                                                  "must be one of \"int\", "
                                                  "\"string\"");
                    return NGX_CONF_ERROR;
                }

            } else if (ngx_strcmp(key, "min") == 0
                       && lua_type(L, -1) == LUA_TNUMBER)
            {
                rule->min = lua_tonumber(L, -1);

            } else if (ngx_strcmp(key, "max") == 0
                       && lua_type(L, -1) == LUA_TNUMBER)
            {
                rule->max = lua_tonumber(L, -1);

            } else if (ngx_strcmp(key, "required") == 0
                       && lua_type(L, -1) == LUA_TBOOLEAN)
            {
                rule->required = lua_toboolean(L, -1);

            } else if (ngx_strcmp(key, "pattern") == 0) {
                rule->pattern = ngx_http_cache_guard_policy_regex(pc,
                                                 "validate.args pattern");
                if (rule->pattern == NULL) {
                    return NGX_CONF_ERROR;
                }

            } else {
                goto invalid;
            }

            lua_pop(L, 1);
        }

        lua_pop(L, 1);
    }

    return NGX_CONF_OK;

invalid:

    ngx_http_cache_guard_policy_error(pc, "validate.args", "must map argument "
                                      "names to rules such as { type = "
                                      "\"int\", min = 1, max = 999, required "
                                      "= true } (type \"int\" or \"string\"; "
                                      "for strings min and max bound the "
                                      "length; pattern is a regex)");
    return NGX_CONF_ERROR;
}


char *
ngx_http_cache_guard_policy_reject(ngx_http_cache_guard_policy_ctx_t *pc)
{
    const char  *key;

    if (!lua_istable(pc->L, -1)) {
        ngx_http_cache_guard_policy_error(pc, "reject", "must be a table such "
                                          "as { status = 400 }");
        return NGX_CONF_ERROR;
    }

    lua_pushnil(pc->L);

    while (lua_next(pc->L, -2) != 0) {
        key = (lua_type(pc->L, -2) == LUA_TSTRING) ? lua_tostring(pc->L, -2)
                                                   : "";

        if (ngx_strcmp(key, "status") != 0
            || ngx_http_cache_guard_policy_status(pc, "reject.status",
                                                  &pc->policy->reject_status)
               != NGX_OK)
        {
            ngx_http_cache_guard_policy_error(pc, "reject", "may hold a status "
                                              "from 400 to 599 only");
            return NGX_CONF_ERROR;
        }

        lua_pop(pc->L, 1);
    }

    return NGX_CONF_OK;
}


/* geo = { deny_countries = { "XX" }, allow_countries = { ... }, status } */

char *
ngx_http_cache_guard_policy_geo(ngx_http_cache_guard_policy_ctx_t *pc)
{
    const char                        *key;
    ngx_http_cache_guard_main_conf_t  *mcf;

    mcf = ngx_http_conf_get_module_main_conf(pc->cf,
                                             ngx_http_cache_guard_module);

    if (mcf->geoip == NULL) {
        ngx_http_cache_guard_policy_error(pc, "geo", "needs a database: put "
                                          "cache_guard_geoip before the "
                                          "policy");
        return NGX_CONF_ERROR;
    }

    if (!lua_istable(pc->L, -1)) {
        goto invalid;
    }

    lua_pushnil(pc->L);

    while (lua_next(pc->L, -2) != 0) {
        key = (lua_type(pc->L, -2) == LUA_TSTRING) ? lua_tostring(pc->L, -2)
                                                   : "";

        if (ngx_strcmp(key, "deny_countries") == 0) {
            pc->policy->geo_deny = ngx_http_cache_guard_policy_strings(pc,
                                                   "geo.deny_countries");
            if (pc->policy->geo_deny == NULL) {
                return NGX_CONF_ERROR;
            }

        } else if (ngx_strcmp(key, "allow_countries") == 0) {
            pc->policy->geo_allow = ngx_http_cache_guard_policy_strings(pc,
                                                   "geo.allow_countries");
            if (pc->policy->geo_allow == NULL) {
                return NGX_CONF_ERROR;
            }

        } else if (ngx_strcmp(key, "status") != 0) {
            goto invalid;

        } else if (ngx_http_cache_guard_policy_status(pc, "geo.status",
                                                 &pc->policy->geo_status)
                   != NGX_OK)
        {
            ngx_http_cache_guard_policy_error(pc, "geo.status", "must be a "
                                              "status from 400 to 599");
            return NGX_CONF_ERROR;
        }

        lua_pop(pc->L, 1);
    }

    return NGX_CONF_OK;

invalid:

    ngx_http_cache_guard_policy_error(pc, "geo", "must be a table such as "
                                      "{ deny_countries = { \"XX\" }, "
                                      "status = 403 }");
    return NGX_CONF_ERROR;
}


/* bloom = { filter = "users", item = "$1" or function(r), on_reject = 404 } */

char *
ngx_http_cache_guard_policy_bloom(ngx_http_cache_guard_policy_ctx_t *pc)
{
    size_t       len;
    ngx_str_t    value;
    lua_State   *L;
    const char  *key, *str;

    L = pc->L;

    if (!lua_istable(L, -1)) {
        goto invalid;
    }

    lua_pushnil(L);

    while (lua_next(L, -2) != 0) {
        key = (lua_type(L, -2) == LUA_TSTRING) ? lua_tostring(L, -2) : "";

        if (ngx_strcmp(key, "item") == 0
            && lua_type(L, -1) == LUA_TFUNCTION)
        {
            lua_pushvalue(L, -1);
            pc->policy->bloom_item_fn = luaL_ref(L, LUA_REGISTRYINDEX);

        } else if ((ngx_strcmp(key, "item") == 0
                    || ngx_strcmp(key, "filter") == 0)
                   && lua_type(L, -1) == LUA_TSTRING)
        {
            str = lua_tolstring(L, -1, &len);

            value.data = ngx_pnalloc(pc->cf->pool, len);
            if (value.data == NULL) {
                return NGX_CONF_ERROR;
            }

            ngx_memcpy(value.data, str, len);
            value.len = len;

            if (key[0] == 'f') {
                pc->policy->bloom = ngx_http_cache_guard_bloom_find(pc->cf,
                                                                    &value);
                if (pc->policy->bloom == NULL) {
                    ngx_http_cache_guard_policy_error(pc, "bloom.filter",
                                                  "names no cache_guard_bloom "
                                                  "declared before the policy");
                    return NGX_CONF_ERROR;
                }

            } else {
                pc->policy->bloom_item = ngx_http_cache_guard_key_template(
                                                pc->cf, &value, "bloom.item");
                if (pc->policy->bloom_item == NULL) {
                    return NGX_CONF_ERROR;
                }
            }

        } else if (ngx_strcmp(key, "on_reject") == 0) {
            if (ngx_http_cache_guard_policy_status(pc, "bloom.on_reject",
                                                   &pc->policy->bloom_status)
                != NGX_OK)
            {
                ngx_http_cache_guard_policy_error(pc, "bloom.on_reject",
                                                  "must be a status from 400 "
                                                  "to 599");
                return NGX_CONF_ERROR;
            }

        } else if (ngx_strcmp(key, "item") != 0
                   && ngx_strcmp(key, "filter") != 0)
        {
            ngx_http_cache_guard_policy_error(pc, "bloom", "may hold filter, "
                                              "item and on_reject only");
            return NGX_CONF_ERROR;

        } else {
            goto invalid;
        }

        lua_pop(L, 1);
    }

    if (pc->policy->bloom == NULL
        || (pc->policy->bloom_item == NULL
            && pc->policy->bloom_item_fn == LUA_NOREF))
    {
        goto invalid;
    }

    return NGX_CONF_OK;

invalid:

    ngx_http_cache_guard_policy_error(pc, "bloom", "must be a table such as "
                                      "{ filter = \"users\", item = \"$1\", "
                                      "on_reject = 404 }, with filter and "
                                      "item");
    return NGX_CONF_ERROR;
}


/*
 * breaker = { redis = { ... }, origin = { ..., statuses = { 502, 504 } } },
 * or false for neither; each of the two may be false too
 */

#define NGX_HTTP_CACHE_GUARD_BREAKER_SUBS(f)                                  \
    {                                                                         \
        { "window", NGX_HTTP_CACHE_GUARD_SECONDS,                             \
          offsetof(ngx_http_cache_guard_policy_t, f.window_ms), 0, 0, NULL }, \
        { "min_requests", NGX_HTTP_CACHE_GUARD_INTEGER,                       \
          offsetof(ngx_http_cache_guard_policy_t, f.min_requests), 1, 1e6,    \
          NULL },                                                             \
        { "failure_rate", NGX_HTTP_CACHE_GUARD_NUMBER,                        \
          offsetof(ngx_http_cache_guard_policy_t, f.failure_rate), 0.01, 1,   \
          NULL },                                                             \
        { "open_for", NGX_HTTP_CACHE_GUARD_SECONDS,                           \
          offsetof(ngx_http_cache_guard_policy_t, f.open_for), 0, 0, NULL },  \
        { "half_open_requests", NGX_HTTP_CACHE_GUARD_INTEGER,                 \
          offsetof(ngx_http_cache_guard_policy_t, f.half_open), 1, 1000,      \
          NULL },                                                             \
        { NULL, 0, 0, 0, 0, NULL }                                            \
    }


char *
ngx_http_cache_guard_policy_breaker(ngx_http_cache_guard_policy_ctx_t *pc)
{
    lua_State                      *L;
    const char                     *key;
    ngx_http_cache_guard_policy_t  *pl;

    L = pc->L;
    pl = pc->policy;

    if (lua_isboolean(L, -1) && !lua_toboolean(L, -1)) {
        pl->breaker.enabled = 0;
        pl->redis_breaker.enabled = 0;
        pl->redis_breaker.set = 1;
        return NGX_CONF_OK;
    }

    if (!lua_istable(L, -1)) {
        ngx_http_cache_guard_policy_error(pc, "breaker", "must be false or a "
                                          "table such as { origin = "
                                          "{ failure_rate = 0.5 } }");
        return NGX_CONF_ERROR;
    }

    lua_pushnil(L);

    while (lua_next(L, -2) != 0) {
        key = (lua_type(L, -2) == LUA_TSTRING) ? lua_tostring(L, -2) : "";

        if (ngx_strcmp(key, "origin") == 0) {
            if (ngx_http_cache_guard_policy_breaker_one(pc, 1)
                != NGX_CONF_OK)
            {
                return NGX_CONF_ERROR;
            }

        } else if (ngx_strcmp(key, "redis") == 0) {
            if (ngx_http_cache_guard_policy_breaker_one(pc, 0)
                != NGX_CONF_OK)
            {
                return NGX_CONF_ERROR;
            }

        } else {
            ngx_http_cache_guard_policy_error(pc, "breaker", "may hold "
                                              "\"redis\" and \"origin\" "
                                              "only");
            return NGX_CONF_ERROR;
        }

        lua_pop(L, 1);
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_cache_guard_policy_breaker_one(ngx_http_cache_guard_policy_ctx_t *pc,
    ngx_uint_t origin)
{
    double                                v;
    lua_State                            *L;
    ngx_uint_t                            i, n;
    const char                           *field;
    ngx_http_cache_guard_breaker_conf_t  *bc;

    static ngx_http_cache_guard_subfield_t  origin_subs[] =
        NGX_HTTP_CACHE_GUARD_BREAKER_SUBS(breaker);
    static ngx_http_cache_guard_subfield_t  redis_subs[] =
        NGX_HTTP_CACHE_GUARD_BREAKER_SUBS(redis_breaker);

    L = pc->L;
    bc = origin ? &pc->policy->breaker : &pc->policy->redis_breaker;
    field = origin ? "breaker.origin" : "breaker.redis";

    bc->set = 1;

    if (lua_isboolean(L, -1) && !lua_toboolean(L, -1)) {
        bc->enabled = 0;
        return NGX_CONF_OK;
    }

    if (origin && lua_istable(L, -1)) {
        lua_pushliteral(L, "statuses");
        lua_rawget(L, -2);

        if (!lua_isnil(L, -1)) {
            if (!lua_istable(L, -1) || (n = lua_objlen(L, -1)) == 0) {
                goto invalid;
            }

            ngx_memzero(bc->statuses, sizeof(bc->statuses));

            for (i = 1; i <= n; i++) {
                lua_rawgeti(L, -1, i);
                v = lua_tonumber(L, -1);

                if (lua_type(L, -1) != LUA_TNUMBER
                    || v < 100 || v > 599 || v != (double) (ngx_uint_t) v)
                {
                    lua_pop(L, 1);
                    goto invalid;
                }

                lua_pop(L, 1);
                bc->statuses[(ngx_uint_t) v / 64] |=
                                        (uint64_t) 1 << ((ngx_uint_t) v % 64);
            }

            /* read here: the generic table reader must not see it */
            lua_pop(L, 1);
            lua_pushliteral(L, "statuses");
            lua_pushnil(L);
            lua_rawset(L, -3);

        } else {
            lua_pop(L, 1);
        }
    }

    if (ngx_http_cache_guard_policy_table(pc, field,
                                          origin ? origin_subs : redis_subs,
                                          "false or a table such as "
                                          "{ failure_rate = 0.5, "
                                          "open_for = 10 }")
        != NGX_CONF_OK)
    {
        return NGX_CONF_ERROR;
    }

    if (bc->window_ms % 1000 || bc->window_ms > 60000) {
        ngx_http_cache_guard_policy_error(pc, field, "window must be whole "
                                          "seconds, 60 at most");
        return NGX_CONF_ERROR;
    }

    bc->window = bc->window_ms / 1000;

    return NGX_CONF_OK;

invalid:

    lua_pop(L, 1);
    ngx_http_cache_guard_policy_error(pc, "breaker.origin.statuses",
                                      "must be a list of HTTP statuses such "
                                      "as { 500, 502, 503, 504 }");
    return NGX_CONF_ERROR;
}


static ngx_regex_t *
ngx_http_cache_guard_policy_regex(ngx_http_cache_guard_policy_ctx_t *pc,
    const char *field)
{
    size_t               len;
    u_char               errstr[NGX_MAX_CONF_ERRSTR], msg[256];
    const char          *str;
    ngx_regex_compile_t  rc;

    if (lua_type(pc->L, -1) != LUA_TSTRING) {
        ngx_http_cache_guard_policy_error(pc, field, "must be a regular "
                                          "expression");
        return NULL;
    }

    str = lua_tolstring(pc->L, -1, &len);

    ngx_memzero(&rc, sizeof(ngx_regex_compile_t));

    rc.pattern.data = ngx_pnalloc(pc->cf->pool, len);
    if (rc.pattern.data == NULL) {
        return NULL;
    }

    ngx_memcpy(rc.pattern.data, str, len);
    rc.pattern.len = len;
    rc.pool = pc->cf->pool;
    rc.err.len = NGX_MAX_CONF_ERRSTR;
    rc.err.data = errstr;

    if (ngx_regex_compile(&rc) != NGX_OK) {
        ngx_snprintf(msg, sizeof(msg), "is not a valid regex: %V%Z", &rc.err);
        ngx_http_cache_guard_policy_error(pc, field, (char *) msg);
        return NULL;
    }

    return rc.regex;
}


static ngx_array_t *
ngx_http_cache_guard_policy_strings(ngx_http_cache_guard_policy_ctx_t *pc,
    const char *field)
{
    size_t        len;
    ngx_str_t    *v;
    ngx_uint_t    i, n;
    const char   *str;
    ngx_array_t  *a;

    if (!lua_istable(pc->L, -1) || (n = lua_objlen(pc->L, -1)) == 0) {
        goto invalid;
    }

    a = ngx_array_create(pc->cf->pool, n, sizeof(ngx_str_t));
    if (a == NULL) {
        return NULL;
    }

    for (i = 1; i <= n; i++) {
        lua_rawgeti(pc->L, -1, i);

        if (lua_type(pc->L, -1) != LUA_TSTRING) {
            lua_pop(pc->L, 1);
            goto invalid;
        }

        str = lua_tolstring(pc->L, -1, &len);
        v = ngx_array_push(a);
        v->data = ngx_pnalloc(pc->cf->pool, len);
        if (v->data == NULL) {
            return NULL;
        }

        ngx_memcpy(v->data, str, len);
        v->len = len;
        lua_pop(pc->L, 1);
    }

    return a;

invalid:

    ngx_http_cache_guard_policy_error(pc, field, "must be a list of strings "
                                      "such as { \"XX\", \"YY\" }");
    return NULL;
}


static ngx_int_t
ngx_http_cache_guard_policy_status(ngx_http_cache_guard_policy_ctx_t *pc,
    const char *field, ngx_uint_t *status)
{
    double  v;

    v = lua_tonumber(pc->L, -1);

    if (lua_type(pc->L, -1) != LUA_TNUMBER || v < 400 || v > 599
        || v != (double) (ngx_uint_t) v)
    {
        return NGX_ERROR;
    }

    *status = (ngx_uint_t) v;

    return NGX_OK;
}
