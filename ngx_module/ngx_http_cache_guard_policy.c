
/*
 * Copyright (C) nginx-cache-guard authors
 *
 * Policy files: a Lua file returning a table, run by LuaJIT when nginx
 * reads its configuration.  Static fields become C structures here, so
 * the request path never calls Lua for them.
 */


#include "ngx_http_cache_guard_module.h"

#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>


typedef struct {
    ngx_conf_t                     *cf;
    lua_State                      *L;
    ngx_str_t                       file;
    ngx_http_cache_guard_policy_t  *policy;
} ngx_http_cache_guard_policy_ctx_t;


typedef char *(*ngx_http_cache_guard_field_pt)(
    ngx_http_cache_guard_policy_ctx_t *pc);


typedef struct {
    const char                     *name;
    ngx_http_cache_guard_field_pt   handler;    /* NULL: not supported yet */
} ngx_http_cache_guard_field_t;


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


static char *ngx_http_cache_guard_policy_name(
    ngx_http_cache_guard_policy_ctx_t *pc);
static char *ngx_http_cache_guard_policy_key(
    ngx_http_cache_guard_policy_ctx_t *pc);
static char *ngx_http_cache_guard_policy_ttl(
    ngx_http_cache_guard_policy_ctx_t *pc);
static char *ngx_http_cache_guard_policy_jitter(
    ngx_http_cache_guard_policy_ctx_t *pc);
static char *ngx_http_cache_guard_policy_negative_ttl(
    ngx_http_cache_guard_policy_ctx_t *pc);
static char *ngx_http_cache_guard_policy_negative_statuses(
    ngx_http_cache_guard_policy_ctx_t *pc);
static char *ngx_http_cache_guard_policy_cache_statuses(
    ngx_http_cache_guard_policy_ctx_t *pc);
static char *ngx_http_cache_guard_policy_max_entry_size(
    ngx_http_cache_guard_policy_ctx_t *pc);
static char *ngx_http_cache_guard_policy_l1(
    ngx_http_cache_guard_policy_ctx_t *pc);
static char *ngx_http_cache_guard_policy_seconds(
    ngx_http_cache_guard_policy_ctx_t *pc, const char *field, ngx_msec_t *ms,
    ngx_uint_t zero);
static char *ngx_http_cache_guard_policy_lock(
    ngx_http_cache_guard_policy_ctx_t *pc);
static char *ngx_http_cache_guard_policy_stale(
    ngx_http_cache_guard_policy_ctx_t *pc);
static char *ngx_http_cache_guard_policy_early_refresh(
    ngx_http_cache_guard_policy_ctx_t *pc);
static char *ngx_http_cache_guard_policy_origin(
    ngx_http_cache_guard_policy_ctx_t *pc);
static char *ngx_http_cache_guard_policy_fallback(
    ngx_http_cache_guard_policy_ctx_t *pc);
static char *ngx_http_cache_guard_policy_statuses(
    ngx_http_cache_guard_policy_ctx_t *pc, ngx_uint_t *list, ngx_uint_t *n);
static char *ngx_http_cache_guard_policy_table(
    ngx_http_cache_guard_policy_ctx_t *pc, const char *field,
    ngx_http_cache_guard_subfield_t *subs, const char *expected);
static void ngx_http_cache_guard_policy_error(
    ngx_http_cache_guard_policy_ctx_t *pc, const char *field,
    const char *reason);
static ngx_uint_t ngx_http_cache_guard_policy_line(ngx_conf_t *cf,
    ngx_str_t *file, const char *field);
static void ngx_http_cache_guard_policy_set_defaults(
    ngx_http_cache_guard_policy_t *pl);


static ngx_http_cache_guard_field_t  ngx_http_cache_guard_fields[] = {
    { "name", ngx_http_cache_guard_policy_name },
    { "key", ngx_http_cache_guard_policy_key },
    { "ttl", ngx_http_cache_guard_policy_ttl },
    { "jitter", ngx_http_cache_guard_policy_jitter },
    { "negative_ttl", ngx_http_cache_guard_policy_negative_ttl },
    { "negative_statuses", ngx_http_cache_guard_policy_negative_statuses },
    { "cache_statuses", ngx_http_cache_guard_policy_cache_statuses },
    { "max_entry_size", ngx_http_cache_guard_policy_max_entry_size },
    { "l1", ngx_http_cache_guard_policy_l1 },

    /* documented, arriving with later versions: refuse, never ignore */
    { "validate", NULL },
    { "reject", NULL },
    { "geo", NULL },
    { "bloom", NULL },
    { "stale", ngx_http_cache_guard_policy_stale },
    { "early_refresh", ngx_http_cache_guard_policy_early_refresh },
    { "lock", ngx_http_cache_guard_policy_lock },
    { "origin", ngx_http_cache_guard_policy_origin },
    { "fallback", ngx_http_cache_guard_policy_fallback },
    { "breaker", NULL },
    { NULL, NULL }
};


static ngx_uint_t  ngx_http_cache_guard_default_cache_statuses[] = {
    200, 203, 204, 300, 301, 404, 410
};

static ngx_uint_t  ngx_http_cache_guard_default_negative_statuses[] = {
    404, 410
};

static ngx_str_t  ngx_http_cache_guard_default_key =
    ngx_string("$scheme://$host$request_uri");


ngx_http_cache_guard_policy_t *
ngx_http_cache_guard_policy_load(ngx_conf_t *cf, ngx_str_t *path)
{
    u_char                             *p;
    ngx_str_t                           file;
    ngx_uint_t                          i;
    lua_State                          *L;
    const char                         *name;
    ngx_http_cache_guard_field_t       *f;
    ngx_http_cache_guard_policy_t      *pl, **plp;
    ngx_http_cache_guard_main_conf_t   *mcf;
    ngx_http_cache_guard_policy_ctx_t   pc;

    file = *path;

    if (ngx_conf_full_name(cf->cycle, &file, 0) != NGX_OK) {
        return NULL;
    }

    mcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_cache_guard_module);

    plp = mcf->policies.elts;
    for (i = 0; i < mcf->policies.nelts; i++) {
        if (plp[i]->file.len == file.len
            && ngx_strncmp(plp[i]->file.data, file.data, file.len) == 0)
        {
            return plp[i];
        }
    }

    pl = ngx_pcalloc(cf->pool, sizeof(ngx_http_cache_guard_policy_t));
    if (pl == NULL) {
        return NULL;
    }

    if (mcf->npolicies == NGX_HTTP_CACHE_GUARD_MAX_POLICIES) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "cache guard: more than %d policies",
                           NGX_HTTP_CACHE_GUARD_MAX_POLICIES);
        return NULL;
    }

    ngx_http_cache_guard_policy_set_defaults(pl);
    pl->file = file;
    pl->index = mcf->npolicies++;

    /* the default name: the file name without its directory and ".lua" */

    p = file.data + file.len;
    while (p > file.data && p[-1] != '/') {
        p--;
    }

    pl->name.data = p;
    pl->name.len = file.data + file.len - p;

    if (pl->name.len > 4
        && ngx_strncmp(pl->name.data + pl->name.len - 4, ".lua", 4) == 0)
    {
        pl->name.len -= 4;
    }

    L = luaL_newstate();
    if (L == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "cache guard: cannot create a Lua state");
        return NULL;
    }

    luaL_openlibs(L);

    pc.cf = cf;
    pc.L = L;
    pc.file = file;
    pc.policy = pl;

    /* file is NUL-terminated by ngx_conf_full_name() */

    if (luaL_loadfile(L, (const char *) file.data) != 0
        || lua_pcall(L, 0, 1, 0) != 0)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "cache guard: policy %s", lua_tostring(L, -1));
        goto failed;
    }

    if (!lua_istable(L, -1)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "cache guard: policy \"%V\" must return a table, "
                           "not %s", &file, luaL_typename(L, -1));
        goto failed;
    }

    lua_pushnil(L);

    while (lua_next(L, -2) != 0) {

        if (lua_type(L, -2) != LUA_TSTRING) {
            ngx_http_cache_guard_policy_error(&pc, NULL,
                                              "fields must have string names");
            goto failed;
        }

        name = lua_tostring(L, -2);

        for (f = ngx_http_cache_guard_fields; f->name; f++) {
            if (ngx_strcmp(f->name, name) == 0) {
                break;
            }
        }

        if (f->name == NULL) {
            ngx_http_cache_guard_policy_error(&pc, name, "is not a policy "
                                              "field");
            goto failed;
        }

        if (f->handler == NULL) {
            ngx_http_cache_guard_policy_error(&pc, name, "is not supported "
                                              "by this version yet");
            goto failed;
        }

        if (lua_type(L, -1) == LUA_TFUNCTION) {
            ngx_http_cache_guard_policy_error(&pc, name, "as a function is "
                                              "not supported by this version "
                                              "yet");
            goto failed;
        }

        if (f->handler(&pc) != NGX_CONF_OK) {
            goto failed;
        }

        lua_pop(L, 1);
    }

    lua_close(L);

    if (pl->key == NULL
        && ngx_http_cache_guard_policy_compile_key(cf, pl, NULL) != NGX_OK)
    {
        return NULL;
    }

    plp = ngx_array_push(&mcf->policies);
    if (plp == NULL) {
        return NULL;
    }

    *plp = pl;

    return pl;

failed:

    lua_close(L);

    return NULL;
}


ngx_http_cache_guard_policy_t *
ngx_http_cache_guard_policy_default(ngx_conf_t *cf)
{
    ngx_http_cache_guard_policy_t     *pl;
    ngx_http_cache_guard_main_conf_t  *mcf;

    mcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_cache_guard_module);

    if (mcf->default_policy) {
        return mcf->default_policy;
    }

    pl = ngx_pcalloc(cf->pool, sizeof(ngx_http_cache_guard_policy_t));
    if (pl == NULL) {
        return NULL;
    }

    ngx_http_cache_guard_policy_set_defaults(pl);
    ngx_str_set(&pl->name, "default");

    if (mcf->npolicies == NGX_HTTP_CACHE_GUARD_MAX_POLICIES) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "cache guard: more than %d policies",
                           NGX_HTTP_CACHE_GUARD_MAX_POLICIES);
        return NULL;
    }

    pl->index = mcf->npolicies++;

    if (ngx_http_cache_guard_policy_compile_key(cf, pl, NULL) != NGX_OK) {
        return NULL;
    }

    mcf->default_policy = pl;

    return pl;
}


ngx_uint_t
ngx_http_cache_guard_policy_has_status(ngx_uint_t *list, ngx_uint_t n,
    ngx_uint_t status)
{
    ngx_uint_t  i;

    for (i = 0; i < n; i++) {
        if (list[i] == status) {
            return 1;
        }
    }

    return 0;
}


static void
ngx_http_cache_guard_policy_set_defaults(ngx_http_cache_guard_policy_t *pl)
{
    pl->key = NULL;                       /* the default key, compiled later */
    pl->ttl = 60000;
    pl->jitter = 0.1;
    pl->negative_ttl = 30000;
    pl->max_entry_size = 1024 * 1024;
    pl->l1 = 1;
    pl->l1_ttl = NGX_CONF_UNSET_MSEC;
    pl->lock = 1;
    pl->lock_ttl = 10000;
    pl->lock_wait = 5000;
    pl->on_timeout = NGX_HTTP_CACHE_GUARD_ON_STALE;
    pl->beta = 1.0;
    pl->on_overload = NGX_HTTP_CACHE_GUARD_ON_STALE;
    pl->fallback_status = 503;
    pl->retry_after = 5;

    pl->ncache = sizeof(ngx_http_cache_guard_default_cache_statuses)
                 / sizeof(ngx_uint_t);
    ngx_memcpy(pl->cache_statuses,
               ngx_http_cache_guard_default_cache_statuses,
               sizeof(ngx_http_cache_guard_default_cache_statuses));

    pl->nnegative = sizeof(ngx_http_cache_guard_default_negative_statuses)
                    / sizeof(ngx_uint_t);
    ngx_memcpy(pl->negative_statuses,
               ngx_http_cache_guard_default_negative_statuses,
               sizeof(ngx_http_cache_guard_default_negative_statuses));
}


/*
 * Key templates are compiled into literals, variable indexes and regex
 * captures, and evaluated in one pass into one allocation: cheaper than a
 * complex value, which runs its script twice and copies the result again.
 */

ngx_int_t
ngx_http_cache_guard_policy_compile_key(ngx_conf_t *cf,
    ngx_http_cache_guard_policy_t *pl, ngx_str_t *value)
{
    u_char                           *p, *end, *start;
    ngx_str_t                         name;
    ngx_uint_t                        braces;
    ngx_http_cache_guard_key_part_t  *part;

    if (value == NULL) {
        value = &ngx_http_cache_guard_default_key;
    }

    pl->key = ngx_array_create(cf->pool, 4,
                               sizeof(ngx_http_cache_guard_key_part_t));
    if (pl->key == NULL) {
        return NGX_ERROR;
    }

    p = value->data;
    end = p + value->len;

    while (p < end) {

        if (pl->key->nelts == NGX_HTTP_CACHE_GUARD_MAX_KEY_PARTS) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "cache guard: key \"%V\" has more than %d "
                               "parts", value,
                               NGX_HTTP_CACHE_GUARD_MAX_KEY_PARTS);
            return NGX_ERROR;
        }

        part = ngx_array_push(pl->key);
        if (part == NULL) {
            return NGX_ERROR;
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
                               "cache guard: invalid variable name in key "
                               "\"%V\"", value);
            return NGX_ERROR;
        }

        if (braces) {
            p++;
        }

        if (part->capture == -1) {
            part->index = ngx_http_get_variable_index(cf, &name);
            if (part->index == NGX_ERROR) {
                return NGX_ERROR;
            }
        }
    }

    return NGX_OK;
}


ngx_int_t
ngx_http_cache_guard_policy_eval_key(ngx_http_request_t *r,
    ngx_http_cache_guard_policy_t *pl, ngx_str_t *prefix, ngx_str_t *suffix,
    ngx_str_t *out)
{
    u_char                           *p;
    size_t                            len;
    ngx_uint_t                        i, n;
    ngx_str_t                         vals[NGX_HTTP_CACHE_GUARD_MAX_KEY_PARTS];
    ngx_http_variable_value_t        *vv;
    ngx_http_cache_guard_key_part_t  *part;

    part = pl->key->elts;
    n = pl->key->nelts;
    len = 0;

    for (i = 0; i < n; i++) {

        if (part[i].index != -1) {
            vv = ngx_http_get_indexed_variable(r, part[i].index);

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

    if (len == 0 || len > NGX_HTTP_CACHE_GUARD_MAX_KEY) {
        return NGX_DECLINED;
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


static char *
ngx_http_cache_guard_policy_name(ngx_http_cache_guard_policy_ctx_t *pc)
{
    size_t       len;
    u_char      *p;
    const char  *s;

    if (lua_type(pc->L, -1) != LUA_TSTRING) {
        ngx_http_cache_guard_policy_error(pc, "name", "must be a string");
        return NGX_CONF_ERROR;
    }

    s = lua_tolstring(pc->L, -1, &len);

    if (len == 0 || len > 64) {
        ngx_http_cache_guard_policy_error(pc, "name", "must have 1 to 64 "
                                          "characters");
        return NGX_CONF_ERROR;
    }

    for (p = (u_char *) s; p < (u_char *) s + len; p++) {
        if (!(isalnum(*p) || *p == '_' || *p == '-' || *p == '.')) {
            ngx_http_cache_guard_policy_error(pc, "name", "may hold letters, "
                                              "digits, \"_\", \"-\" and \".\" "
                                              "only");
            return NGX_CONF_ERROR;
        }
    }

    pc->policy->name.data = ngx_pstrdup(pc->cf->pool,
                                        &(ngx_str_t) { len, (u_char *) s });
    if (pc->policy->name.data == NULL) {
        return NGX_CONF_ERROR;
    }

    pc->policy->name.len = len;

    return NGX_CONF_OK;
}


static char *
ngx_http_cache_guard_policy_key(ngx_http_cache_guard_policy_ctx_t *pc)
{
    size_t       len;
    ngx_str_t    value;
    const char  *s;

    if (lua_type(pc->L, -1) != LUA_TSTRING) {
        ngx_http_cache_guard_policy_error(pc, "key", "must be a string of "
                                          "nginx variables");
        return NGX_CONF_ERROR;
    }

    s = lua_tolstring(pc->L, -1, &len);

    if (len == 0) {
        ngx_http_cache_guard_policy_error(pc, "key", "must not be empty");
        return NGX_CONF_ERROR;
    }

    value.len = len;
    value.data = ngx_pnalloc(pc->cf->pool, len);
    if (value.data == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memcpy(value.data, s, len);

    if (ngx_http_cache_guard_policy_compile_key(pc->cf, pc->policy, &value)
        != NGX_OK)
    {
        ngx_http_cache_guard_policy_error(pc, "key", "is not a valid "
                                          "template (see the error above)");
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_cache_guard_policy_ttl(ngx_http_cache_guard_policy_ctx_t *pc)
{
    return ngx_http_cache_guard_policy_seconds(pc, "ttl", &pc->policy->ttl,
                                               0);
}


static char *
ngx_http_cache_guard_policy_negative_ttl(ngx_http_cache_guard_policy_ctx_t *pc)
{
    return ngx_http_cache_guard_policy_seconds(pc, "negative_ttl",
                                               &pc->policy->negative_ttl, 1);
}


static char *
ngx_http_cache_guard_policy_jitter(ngx_http_cache_guard_policy_ctx_t *pc)
{
    double  v;

    if (lua_type(pc->L, -1) != LUA_TNUMBER) {
        ngx_http_cache_guard_policy_error(pc, "jitter", "must be a number");
        return NGX_CONF_ERROR;
    }

    v = lua_tonumber(pc->L, -1);

    if (!(v >= 0 && v < 1)) {
        ngx_http_cache_guard_policy_error(pc, "jitter", "must be at least 0 "
                                          "and less than 1");
        return NGX_CONF_ERROR;
    }

    pc->policy->jitter = v;

    return NGX_CONF_OK;
}


static char *
ngx_http_cache_guard_policy_negative_statuses(
    ngx_http_cache_guard_policy_ctx_t *pc)
{
    return ngx_http_cache_guard_policy_statuses(pc,
                                             pc->policy->negative_statuses,
                                             &pc->policy->nnegative);
}


static char *
ngx_http_cache_guard_policy_cache_statuses(
    ngx_http_cache_guard_policy_ctx_t *pc)
{
    return ngx_http_cache_guard_policy_statuses(pc, pc->policy->cache_statuses,
                                                &pc->policy->ncache);
}


static char *
ngx_http_cache_guard_policy_max_entry_size(
    ngx_http_cache_guard_policy_ctx_t *pc)
{
    size_t       len;
    ssize_t      size;
    double       v;
    ngx_str_t    s;

    if (lua_type(pc->L, -1) == LUA_TNUMBER) {
        v = lua_tonumber(pc->L, -1);
        size = (v >= 1 && v <= 0x7fffffff) ? (ssize_t) v : NGX_ERROR;

    } else if (lua_type(pc->L, -1) == LUA_TSTRING) {
        s.data = (u_char *) lua_tolstring(pc->L, -1, &len);
        s.len = len;
        size = ngx_parse_size(&s);

    } else {
        size = NGX_ERROR;
    }

    if (size <= 0 || size > 0x7fffffff) {
        ngx_http_cache_guard_policy_error(pc, "max_entry_size", "must be a "
                                          "size such as 65536, \"64k\" or "
                                          "\"1m\"");
        return NGX_CONF_ERROR;
    }

    pc->policy->max_entry_size = size;

    return NGX_CONF_OK;
}


static char *
ngx_http_cache_guard_policy_l1(ngx_http_cache_guard_policy_ctx_t *pc)
{
    static ngx_http_cache_guard_subfield_t  subs[] = {
        { "ttl", NGX_HTTP_CACHE_GUARD_SECONDS,
          offsetof(ngx_http_cache_guard_policy_t, l1_ttl), 0, 0, NULL },
        { NULL, 0, 0, 0, 0, NULL }
    };

    if (lua_type(pc->L, -1) == LUA_TBOOLEAN) {
        pc->policy->l1 = lua_toboolean(pc->L, -1);
        return NGX_CONF_OK;
    }

    return ngx_http_cache_guard_policy_table(pc, "l1", subs,
                                             "false or a table such as "
                                             "{ ttl = 5 }");
}


static char *
ngx_http_cache_guard_policy_lock(ngx_http_cache_guard_policy_ctx_t *pc)
{
    static const char  *on_timeout[] = { "stale", "origin", "error", NULL };

    static ngx_http_cache_guard_subfield_t  subs[] = {
        { "ttl", NGX_HTTP_CACHE_GUARD_SECONDS,
          offsetof(ngx_http_cache_guard_policy_t, lock_ttl), 0, 0, NULL },
        { "wait", NGX_HTTP_CACHE_GUARD_SECONDS0,
          offsetof(ngx_http_cache_guard_policy_t, lock_wait), 0, 0, NULL },
        { "on_timeout", NGX_HTTP_CACHE_GUARD_ENUM,
          offsetof(ngx_http_cache_guard_policy_t, on_timeout), 0, 0,
          on_timeout },
        { NULL, 0, 0, 0, 0, NULL }
    };

    if (lua_type(pc->L, -1) == LUA_TBOOLEAN) {
        pc->policy->lock = lua_toboolean(pc->L, -1);
        return NGX_CONF_OK;
    }

    return ngx_http_cache_guard_policy_table(pc, "lock", subs,
                                             "false or a table such as "
                                             "{ ttl = 10, wait = 5 }");
}


static char *
ngx_http_cache_guard_policy_stale(ngx_http_cache_guard_policy_ctx_t *pc)
{
    static ngx_http_cache_guard_subfield_t  subs[] = {
        { "while_revalidate", NGX_HTTP_CACHE_GUARD_SECONDS0,
          offsetof(ngx_http_cache_guard_policy_t, while_revalidate), 0, 0,
          NULL },
        { "if_error", NGX_HTTP_CACHE_GUARD_SECONDS0,
          offsetof(ngx_http_cache_guard_policy_t, if_error), 0, 0, NULL },
        { NULL, 0, 0, 0, 0, NULL }
    };

    return ngx_http_cache_guard_policy_table(pc, "stale", subs,
                                             "a table such as "
                                             "{ while_revalidate = 30 }");
}


static char *
ngx_http_cache_guard_policy_early_refresh(
    ngx_http_cache_guard_policy_ctx_t *pc)
{
    static ngx_http_cache_guard_subfield_t  subs[] = {
        { "beta", NGX_HTTP_CACHE_GUARD_NUMBER,
          offsetof(ngx_http_cache_guard_policy_t, beta), 0.001, 1e6, NULL },
        { NULL, 0, 0, 0, 0, NULL }
    };

    if (lua_type(pc->L, -1) == LUA_TBOOLEAN && !lua_toboolean(pc->L, -1)) {
        pc->policy->beta = 0;
        return NGX_CONF_OK;
    }

    return ngx_http_cache_guard_policy_table(pc, "early_refresh", subs,
                                             "false or a table such as "
                                             "{ beta = 1.0 }");
}


static char *
ngx_http_cache_guard_policy_origin(ngx_http_cache_guard_policy_ctx_t *pc)
{
    static const char  *on_overload[] = { "stale", "", "fallback", NULL };

    static ngx_http_cache_guard_subfield_t  subs[] = {
        { "max_concurrent", NGX_HTTP_CACHE_GUARD_INTEGER,
          offsetof(ngx_http_cache_guard_policy_t, max_concurrent), 1, 1e6,
          NULL },
        { "on_overload", NGX_HTTP_CACHE_GUARD_ENUM,
          offsetof(ngx_http_cache_guard_policy_t, on_overload), 0, 0,
          on_overload },
        { NULL, 0, 0, 0, 0, NULL }
    };

    return ngx_http_cache_guard_policy_table(pc, "origin", subs,
                                             "a table such as "
                                             "{ max_concurrent = 64 }");
}


static char *
ngx_http_cache_guard_policy_fallback(ngx_http_cache_guard_policy_ctx_t *pc)
{
    static ngx_http_cache_guard_subfield_t  subs[] = {
        { "status", NGX_HTTP_CACHE_GUARD_INTEGER,
          offsetof(ngx_http_cache_guard_policy_t, fallback_status), 200, 599,
          NULL },
        { "retry_after", NGX_HTTP_CACHE_GUARD_INTEGER,
          offsetof(ngx_http_cache_guard_policy_t, retry_after), 0, 86400,
          NULL },
        { NULL, 0, 0, 0, 0, NULL }
    };

    return ngx_http_cache_guard_policy_table(pc, "fallback", subs,
                                             "a table such as "
                                             "{ status = 503, "
                                             "retry_after = 5 }");
}


/* a table of named sub-fields: "lock = { ttl = 10, wait = 5 }" */

static char *
ngx_http_cache_guard_policy_table(ngx_http_cache_guard_policy_ctx_t *pc,
    const char *field, ngx_http_cache_guard_subfield_t *subs,
    const char *expected)
{
    u_char                           *base, name[64];
    double                            v;
    lua_State                        *L;
    const char                       *key, *str, **e;
    ngx_http_cache_guard_subfield_t  *sf;

    L = pc->L;
    base = (u_char *) pc->policy;

    if (!lua_istable(L, -1)) {
        ngx_snprintf(name, sizeof(name), "must be %s%Z", expected);
        ngx_http_cache_guard_policy_error(pc, field, (char *) name);
        return NGX_CONF_ERROR;
    }

    lua_pushnil(L);

    while (lua_next(L, -2) != 0) {
        key = (lua_type(L, -2) == LUA_TSTRING) ? lua_tostring(L, -2) : "";

        for (sf = subs; sf->name; sf++) {
            if (ngx_strcmp(sf->name, key) == 0) {
                break;
            }
        }

        ngx_snprintf(name, sizeof(name), "%s.%s%Z", field,
                     sf->name ? sf->name : key);

        if (sf->name == NULL) {
            ngx_http_cache_guard_policy_error(pc, (char *) name,
                                              "is not a policy field");
            return NGX_CONF_ERROR;
        }

        switch (sf->kind) {

        case NGX_HTTP_CACHE_GUARD_SECONDS:
        case NGX_HTTP_CACHE_GUARD_SECONDS0:
            if (ngx_http_cache_guard_policy_seconds(pc, (char *) name,
                                       (ngx_msec_t *) (base + sf->offset),
                                       sf->kind
                                       == NGX_HTTP_CACHE_GUARD_SECONDS0)
                != NGX_CONF_OK)
            {
                return NGX_CONF_ERROR;
            }

            break;

        case NGX_HTTP_CACHE_GUARD_NUMBER:
        case NGX_HTTP_CACHE_GUARD_INTEGER:
            v = lua_tonumber(L, -1);

            if (lua_type(L, -1) != LUA_TNUMBER || v < sf->min || v > sf->max
                || (sf->kind == NGX_HTTP_CACHE_GUARD_INTEGER
                    && v != (double) (ngx_int_t) v))
            {
                ngx_http_cache_guard_policy_error(pc, (char *) name,
                                                  "is out of range");
                return NGX_CONF_ERROR;
            }

            if (sf->kind == NGX_HTTP_CACHE_GUARD_NUMBER) {
                *(double *) (base + sf->offset) = v;

            } else if (sf->offset
                       == offsetof(ngx_http_cache_guard_policy_t, retry_after))
            {
                *(time_t *) (base + sf->offset) = (time_t) v;

            } else {
                *(ngx_uint_t *) (base + sf->offset) = (ngx_uint_t) v;
            }

            break;

        default: /* NGX_HTTP_CACHE_GUARD_ENUM */
            str = (lua_type(L, -1) == LUA_TSTRING) ? lua_tostring(L, -1) : "";

            for (e = sf->values; *e; e++) {
                if (**e && ngx_strcmp(*e, str) == 0) {
                    break;
                }
            }

            if (*e == NULL) {
                ngx_http_cache_guard_policy_error(pc, (char *) name,
                                                  "has an unknown value");
                return NGX_CONF_ERROR;
            }

            *(ngx_uint_t *) (base + sf->offset) = e - sf->values;
        }

        lua_pop(L, 1);
    }

    return NGX_CONF_OK;
}


/* a number of seconds, or a string in nginx's time syntax ("5m") */

static char *
ngx_http_cache_guard_policy_seconds(ngx_http_cache_guard_policy_ctx_t *pc,
    const char *field, ngx_msec_t *ms, ngx_uint_t zero)
{
    int          idx;
    size_t       len;
    double       v;
    ngx_str_t    s;
    ngx_int_t    n;

    idx = -1;

    if (lua_type(pc->L, idx) == LUA_TNUMBER) {
        v = lua_tonumber(pc->L, idx) * 1000;

        if (v >= (zero ? 0 : 1) && v <= 365.0 * 86400 * 1000) {
            *ms = (ngx_msec_t) v;
            return NGX_CONF_OK;
        }

    } else if (lua_type(pc->L, idx) == LUA_TSTRING) {
        s.data = (u_char *) lua_tolstring(pc->L, idx, &len);
        s.len = len;
        n = ngx_parse_time(&s, 0);

        if (n != NGX_ERROR && (zero || n > 0)) {
            *ms = (ngx_msec_t) n;
            return NGX_CONF_OK;
        }
    }

    ngx_http_cache_guard_policy_error(pc, field,
                                      zero ? "must be a number of seconds, "
                                             "0 or more"
                                           : "must be a positive number of "
                                             "seconds");
    return NGX_CONF_ERROR;
}


static char *
ngx_http_cache_guard_policy_statuses(ngx_http_cache_guard_policy_ctx_t *pc,
    ngx_uint_t *list, ngx_uint_t *n)
{
    double       v;
    lua_State   *L;
    ngx_uint_t   i, len;
    const char  *field;

    L = pc->L;
    field = lua_tostring(L, -2);

    if (!lua_istable(L, -1)) {
        goto invalid;
    }

    len = lua_objlen(L, -1);

    if (len > NGX_HTTP_CACHE_GUARD_MAX_STATUSES) {
        ngx_http_cache_guard_policy_error(pc, field, "may list 16 statuses "
                                          "at most");
        return NGX_CONF_ERROR;
    }

    for (i = 0; i < len; i++) {
        lua_rawgeti(L, -1, i + 1);

        if (lua_type(L, -1) != LUA_TNUMBER) {
            lua_pop(L, 1);
            goto invalid;
        }

        v = lua_tonumber(L, -1);
        lua_pop(L, 1);

        if (v < 100 || v > 599 || v != (ngx_uint_t) v) {
            goto invalid;
        }

        list[i] = (ngx_uint_t) v;
    }

    *n = len;

    return NGX_CONF_OK;

invalid:

    ngx_http_cache_guard_policy_error(pc, field, "must be a list of HTTP "
                                      "statuses such as { 404, 410 }");
    return NGX_CONF_ERROR;
}


static void
ngx_http_cache_guard_policy_error(ngx_http_cache_guard_policy_ctx_t *pc,
    const char *field, const char *reason)
{
    ngx_uint_t   line;
    const char  *last;

    line = 0;

    if (field) {
        /* "lock.wait" is written "wait = ..." inside the lock table */
        last = strrchr(field, '.');
        line = ngx_http_cache_guard_policy_line(pc->cf, &pc->file,
                                                last ? last + 1 : field);
    }

    if (line) {
        ngx_conf_log_error(NGX_LOG_EMERG, pc->cf, 0,
                           "cache guard: policy %V:%ui: %s %s",
                           &pc->file, line, field, reason);
        return;
    }

    ngx_conf_log_error(NGX_LOG_EMERG, pc->cf, 0,
                       "cache guard: policy %V: %s%s%s",
                       &pc->file, field ? field : "", field ? " " : "",
                       reason);
}


/*
 * Lua does not say where a table field was set, so find the first line
 * that assigns it: "ttl = ...".  Good enough to point an operator at it.
 */

static ngx_uint_t
ngx_http_cache_guard_policy_line(ngx_conf_t *cf, ngx_str_t *file,
    const char *field)
{
    u_char           *buf, *p, *end, *f;
    size_t            flen;
    ssize_t           n;
    ngx_fd_t          fd;
    ngx_uint_t        line, found;
    ngx_file_info_t   fi;

    fd = ngx_open_file(file->data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
    if (fd == NGX_INVALID_FILE) {
        return 0;
    }

    found = 0;
    buf = NULL;

    if (ngx_fd_info(fd, &fi) == NGX_FILE_ERROR
        || ngx_file_size(&fi) > 1024 * 1024)
    {
        goto done;
    }

    buf = ngx_alloc(ngx_file_size(&fi) + 1, cf->log);
    if (buf == NULL) {
        goto done;
    }

    n = read(fd, buf, ngx_file_size(&fi));
    if (n <= 0) {
        goto done;
    }

    flen = ngx_strlen(field);
    end = buf + n;
    line = 1;

    for (p = buf; p + flen < end; p++) {

        if (*p == '\n') {
            line++;
            continue;
        }

        /* the field as a whole word, not "x.ttl" or "my_ttl" */

        if (ngx_strncmp(p, field, flen) != 0
            || (p > buf && (isalnum(p[-1]) || p[-1] == '_' || p[-1] == '.')))
        {
            continue;
        }

        f = p + flen;

        while (f < end && (*f == ' ' || *f == '\t')) {
            f++;
        }

        if (f < end && *f == '=' && (f + 1 == end || f[1] != '=')) {
            found = line;
            break;
        }
    }

done:

    if (buf) {
        ngx_free(buf);
    }

    ngx_close_file(fd);

    return found;
}
