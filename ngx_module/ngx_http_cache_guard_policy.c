
/*
 * Copyright (C) nginx-cache-guard authors
 *
 * Policy files: a Lua file returning a table, run by LuaJIT when nginx
 * reads its configuration.  The loader, the table of fields, the
 * defaults and the checks once the configuration is read.  Static fields
 * become C structures, so the request path never calls Lua for them.
 */


#include "ngx_http_cache_guard_policy.h"
#include "ngx_http_cache_guard_breaker.h"
#include "ngx_http_cache_guard_key.h"
#include "ngx_http_cache_guard_lua.h"
#include "ngx_http_cache_guard_policy_fields.h"
#include "ngx_http_cache_guard_policy_rules.h"


typedef char *(*ngx_http_cache_guard_field_pt)(
    ngx_http_cache_guard_policy_ctx_t *pc);


typedef struct {
    const char                     *name;
    ngx_http_cache_guard_field_pt   handler;
} ngx_http_cache_guard_field_t;


static ngx_int_t ngx_http_cache_guard_policy_read(ngx_conf_t *cf,
    ngx_http_cache_guard_policy_t *pl, size_t dir);
static ngx_int_t ngx_http_cache_guard_policy_read_fields(
    ngx_http_cache_guard_policy_ctx_t *pc);
static void ngx_http_cache_guard_policy_set_defaults(
    ngx_http_cache_guard_policy_t *pl);
static u_char *ngx_http_cache_guard_policy_where(ngx_conf_t *cf,
    ngx_http_cache_guard_policy_t *pl, const char *field, u_char *buf,
    size_t size);


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
    { "on_hook_error", ngx_http_cache_guard_policy_on_hook_error },
    { "validate", ngx_http_cache_guard_policy_validate },
    { "reject", ngx_http_cache_guard_policy_reject },
    { "geo", ngx_http_cache_guard_policy_geo },
    { "bloom", ngx_http_cache_guard_policy_bloom },
    { "negative_max_entries", ngx_http_cache_guard_policy_negative_max },
    { "stale", ngx_http_cache_guard_policy_stale },
    { "early_refresh", ngx_http_cache_guard_policy_early_refresh },
    { "lock", ngx_http_cache_guard_policy_lock },
    { "origin", ngx_http_cache_guard_policy_origin },
    { "fallback", ngx_http_cache_guard_policy_fallback },
    { "breaker", ngx_http_cache_guard_policy_breaker },
    { "alerts", ngx_http_cache_guard_policy_alerts },
    { NULL, NULL }
};


static ngx_uint_t  ngx_http_cache_guard_default_cache_statuses[] = {
    200, 203, 204, 300, 301, 404, 410
};

static ngx_uint_t  ngx_http_cache_guard_default_negative_statuses[] = {
    404, 410
};


ngx_http_cache_guard_policy_t *
ngx_http_cache_guard_policy_load(ngx_conf_t *cf, ngx_str_t *path)
{
    u_char                             *p;
    ngx_str_t                           file;
    ngx_uint_t                          i;
    ngx_http_cache_guard_policy_t      *pl, **plp;
    ngx_http_cache_guard_main_conf_t   *mcf;

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

    if (ngx_http_cache_guard_policy_read(cf, pl, p - file.data) != NGX_OK) {
        return NULL;
    }

    if (pl->key == NULL && pl->key_fn == LUA_NOREF
        && ngx_http_cache_guard_key_compile(cf, pl, NULL) != NGX_OK)
    {
        return NULL;
    }

    pl->access = pl->validate_uri || pl->validate_methods
                 || pl->validate_args || pl->validate_fn != LUA_NOREF
                 || pl->geo_deny || pl->geo_allow || pl->bloom;

    plp = ngx_array_push(&mcf->policies);
    if (plp == NULL) {
        return NULL;
    }

    *plp = pl;

    return pl;
}


/*
 * Runs the policy file (dir: the length of its directory) and reads the
 * table it returns; a policy with hooks keeps its Lua state.
 */

static ngx_int_t
ngx_http_cache_guard_policy_read(ngx_conf_t *cf,
    ngx_http_cache_guard_policy_t *pl, size_t dir)
{
    lua_State                          *L;
    ngx_http_cache_guard_policy_ctx_t   pc;

    L = ngx_http_cache_guard_lua_new(cf);
    if (L == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "cache guard: cannot create a Lua state");
        return NGX_ERROR;
    }

    if (ngx_http_cache_guard_lua_run(L, &pl->file, dir) != NGX_OK) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "cache guard: policy %s",
                           lua_isstring(L, -1) ? lua_tostring(L, -1)
                                               : "raised an error");
        goto failed;
    }

    if (!lua_istable(L, -1)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "cache guard: policy \"%V\" must return a table, "
                           "not %s", &pl->file, luaL_typename(L, -1));
        goto failed;
    }

    pc.cf = cf;
    pc.L = L;
    pc.file = pl->file;
    pc.policy = pl;

    if (ngx_http_cache_guard_policy_read_fields(&pc) != NGX_OK) {
        goto failed;
    }

    if (pl->key_fn == LUA_NOREF && pl->validate_fn == LUA_NOREF
        && pl->bloom_item_fn == LUA_NOREF)
    {
        lua_close(L);
        return NGX_OK;
    }

    if (ngx_http_cache_guard_lua_keep(cf, pl, L) != NGX_OK) {
        goto failed;
    }

    return NGX_OK;

failed:

    lua_close(L);

    return NGX_ERROR;
}


static ngx_int_t
ngx_http_cache_guard_policy_read_fields(ngx_http_cache_guard_policy_ctx_t *pc)
{
    lua_State                     *L;
    const char                    *name;
    ngx_http_cache_guard_field_t  *f;

    L = pc->L;

    lua_pushnil(L);

    while (lua_next(L, -2) != 0) {

        if (lua_type(L, -2) != LUA_TSTRING) {
            ngx_http_cache_guard_policy_error(pc, NULL,
                                              "fields must have string names");
            return NGX_ERROR;
        }

        name = lua_tostring(L, -2);

        for (f = ngx_http_cache_guard_fields; f->name; f++) {
            if (ngx_strcmp(f->name, name) == 0) {
                break;
            }
        }

        if (f->name == NULL) {
            ngx_http_cache_guard_policy_error(pc, name, "is not a policy "
                                              "field");
            return NGX_ERROR;
        }

        if (f->handler(pc) != NGX_CONF_OK) {
            return NGX_ERROR;
        }

        lua_pop(L, 1);
    }

    return NGX_OK;
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

    if (ngx_http_cache_guard_key_compile(cf, pl, NULL) != NGX_OK) {
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
    pl->on_timeout = NGX_HTTP_CACHE_GUARD_ON_FOLLOW;
    pl->beta = 1.0;
    pl->on_overload = NGX_HTTP_CACHE_GUARD_ON_STALE;
    pl->fallback_status = 503;
    pl->retry_after = 5;
    pl->max_key_length = NGX_HTTP_CACHE_GUARD_MAX_KEY;
    pl->reject_status = 400;
    pl->geo_status = 403;
    pl->bloom_status = 404;
    pl->negative_max = 10000;
    pl->key_fn = LUA_NOREF;
    pl->validate_fn = LUA_NOREF;
    pl->bloom_item_fn = LUA_NOREF;
    pl->on_hook_error = NGX_HTTP_CACHE_GUARD_ON_HOOK_REJECT;

    pl->ncache = sizeof(ngx_http_cache_guard_default_cache_statuses)
                 / sizeof(ngx_uint_t);
    ngx_memcpy(pl->cache_statuses,
               ngx_http_cache_guard_default_cache_statuses,
               sizeof(ngx_http_cache_guard_default_cache_statuses));

    pl->alert_hit_ratio = -1;
    pl->alert_error_rate = -1;
    pl->alert_window_ms = 60000;
    pl->alert_window = 60;
    pl->alert_min_requests = 20;

    ngx_http_cache_guard_breaker_defaults(&pl->breaker, 30000);
    ngx_http_cache_guard_breaker_defaults(&pl->redis_breaker, 10000);

    pl->nnegative = sizeof(ngx_http_cache_guard_default_negative_statuses)
                    / sizeof(ngx_uint_t);
    ngx_memcpy(pl->negative_statuses,
               ngx_http_cache_guard_default_negative_statuses,
               sizeof(ngx_http_cache_guard_default_negative_statuses));
}


/*
 * $1..$9 are the captures of the location's regex: in a prefix or exact
 * location they are empty, so the key (or the Bloom item) would be empty
 * and every request would bypass the cache (or the filter).  Checked per
 * location, since a policy of a server applies to all its locations.
 * "if" blocks, limit_except and named locations are not checked: their
 * requests may carry captures from elsewhere.
 */

char *
ngx_http_cache_guard_policy_check_location(ngx_conf_t *cf,
    ngx_http_cache_guard_policy_t *pl)
{
    u_char                    *end, where[NGX_MAX_PATH + 32];
    ngx_uint_t                 i, n, have;
    ngx_array_t               *parts;
    const char                *field;
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (clcf->name.len == 0 || clcf->noname || clcf->named) {
        return NGX_CONF_OK;
    }

    have = clcf->regex ? clcf->regex->ncaptures : 0;

    for (i = 0; i < 2; i++) {
        parts = i ? pl->bloom_item : pl->key;
        field = i ? "bloom.item" : "key";

        n = ngx_http_cache_guard_key_max_capture(parts);

        if (n <= have) {
            continue;
        }

        end = ngx_http_cache_guard_policy_where(cf, pl, i ? "item" : "key",
                                                where, sizeof(where));

        if (clcf->regex == NULL) {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "cache guard: policy %*s: %s uses the capture "
                          "$%ui, but location \"%V\" is %s location, which "
                          "has no captures: use a regex location "
                          "(\"location ~ ...\"), or a variable such as "
                          "$uri or $arg_NAME", end - where, where, field, n,
                          &clcf->name,
                          clcf->exact_match ? "an exact" : "a prefix");

        } else {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "cache guard: policy %*s: %s uses the capture "
                          "$%ui, but the regex of location \"%V\" has %ui "
                          "capture%s", end - where, where, field, n,
                          &clcf->name, have, have == 1 ? "" : "s");
        }

        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/*
 * From postconfiguration, when every variable is declared (maps and sets
 * may come after the policy) and before nginx's own check, which names
 * neither the policy nor the field.
 */
ngx_int_t
ngx_http_cache_guard_policy_check_variables(ngx_conf_t *cf)
{
    u_char                            *end, where[NGX_MAX_PATH + 32];
    ngx_str_t                         *name;
    ngx_uint_t                         i, j;
    ngx_http_core_main_conf_t         *cmcf;
    ngx_http_cache_guard_policy_t    **plp;
    ngx_http_cache_guard_main_conf_t  *mcf;

    mcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_cache_guard_module);
    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    plp = mcf->policies.elts;

    for (i = 0; i < mcf->policies.nelts; i++) {
        for (j = 0; j < 2; j++) {
            name = ngx_http_cache_guard_key_unknown_variable(cmcf,
                                  j ? plp[i]->bloom_item : plp[i]->key);
            if (name == NULL) {
                continue;
            }

            end = ngx_http_cache_guard_policy_where(cf, plp[i],
                                                    j ? "item" : "key",
                                                    where, sizeof(where));

            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "cache guard: policy %*s: %s uses the unknown "
                          "variable \"$%V\"", end - where, where,
                          j ? "bloom.item" : "key", name);
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/* "/path/p.lua:LINE" where the field is set, or "/path/p.lua" */

static u_char *
ngx_http_cache_guard_policy_where(ngx_conf_t *cf,
    ngx_http_cache_guard_policy_t *pl, const char *field, u_char *buf,
    size_t size)
{
    ngx_uint_t  line;

    line = ngx_http_cache_guard_policy_line(cf, &pl->file, field);

    if (line) {
        return ngx_snprintf(buf, size, "%V:%ui", &pl->file, line);
    }

    return ngx_snprintf(buf, size, "%V", &pl->file);
}
