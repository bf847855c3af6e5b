
/*
 * Copyright (C) nginx-cache-guard authors
 *
 * Policy files: a Lua file returning a table, run by LuaJIT when nginx
 * reads its configuration.  Static fields become C structures here, so
 * the request path never calls Lua for them.
 */


#include "ngx_http_cache_guard_policy.h"
#include "ngx_http_cache_guard_bloom.h"
#include "ngx_http_cache_guard_codec.h"
#include "ngx_http_cache_guard_geo.h"

#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>
#include <luajit.h>


/*
 * The work a Lua call may do, counted in VM instructions by a count hook
 * every NGX_HTTP_CACHE_GUARD_LUA_STEP of them: a hook call, and running
 * the policy file with what it requires.  The memory of a policy's state
 * is capped too.
 */

#define NGX_HTTP_CACHE_GUARD_LUA_STEP         1000
#define NGX_HTTP_CACHE_GUARD_LUA_CALL_STEPS   1000     /* 1e6 instructions */
#define NGX_HTTP_CACHE_GUARD_LUA_LOAD_STEPS   100000   /* 1e8 */
#define NGX_HTTP_CACHE_GUARD_LUA_MEMORY       (64 * 1024 * 1024)


typedef struct {
    lua_Alloc                       alloc;
    void                           *ud;
    size_t                          used;
} ngx_http_cache_guard_lua_mem_t;


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
static char *ngx_http_cache_guard_policy_breaker(
    ngx_http_cache_guard_policy_ctx_t *pc);
static char *ngx_http_cache_guard_policy_breaker_one(
    ngx_http_cache_guard_policy_ctx_t *pc, ngx_uint_t origin);
static char *ngx_http_cache_guard_policy_alerts(
    ngx_http_cache_guard_policy_ctx_t *pc);
static char *ngx_http_cache_guard_policy_fallback(
    ngx_http_cache_guard_policy_ctx_t *pc);
static char *ngx_http_cache_guard_policy_statuses(
    ngx_http_cache_guard_policy_ctx_t *pc, ngx_uint_t *list, ngx_uint_t *n);
static char *ngx_http_cache_guard_policy_validate(
    ngx_http_cache_guard_policy_ctx_t *pc);
static char *ngx_http_cache_guard_policy_args(
    ngx_http_cache_guard_policy_ctx_t *pc);
static char *ngx_http_cache_guard_policy_reject(
    ngx_http_cache_guard_policy_ctx_t *pc);
static char *ngx_http_cache_guard_policy_geo(
    ngx_http_cache_guard_policy_ctx_t *pc);
static char *ngx_http_cache_guard_policy_bloom(
    ngx_http_cache_guard_policy_ctx_t *pc);
static char *ngx_http_cache_guard_policy_negative_max(
    ngx_http_cache_guard_policy_ctx_t *pc);
static ngx_regex_t *ngx_http_cache_guard_policy_regex(
    ngx_http_cache_guard_policy_ctx_t *pc, const char *field);
static ngx_array_t *ngx_http_cache_guard_policy_strings(
    ngx_http_cache_guard_policy_ctx_t *pc, const char *field);
static ngx_int_t ngx_http_cache_guard_policy_status(
    ngx_http_cache_guard_policy_ctx_t *pc, const char *field,
    ngx_uint_t *status);
static ngx_array_t *ngx_http_cache_guard_policy_template(ngx_conf_t *cf,
    ngx_str_t *value, const char *field);
static ngx_uint_t ngx_http_cache_guard_policy_max_capture(ngx_array_t *parts);
static u_char *ngx_http_cache_guard_policy_where(ngx_conf_t *cf,
    ngx_http_cache_guard_policy_t *pl, const char *field, u_char *buf,
    size_t size);
static ngx_int_t ngx_http_cache_guard_policy_known_variable(
    ngx_http_core_main_conf_t *cmcf, ngx_str_t *name);
static void ngx_http_cache_guard_policy_close(void *data);
static void ngx_http_cache_guard_request_metatable(lua_State *L);
static int ngx_http_cache_guard_request_index(lua_State *L);
static int ngx_http_cache_guard_hook_trampoline(lua_State *L);
static int ngx_http_cache_guard_request_arg(lua_State *L);
static int ngx_http_cache_guard_request_header(lua_State *L);
static int ngx_http_cache_guard_request_var(lua_State *L);
static ngx_http_request_t *ngx_http_cache_guard_request_check(lua_State *L);
static char *ngx_http_cache_guard_policy_table(
    ngx_http_cache_guard_policy_ctx_t *pc, const char *field,
    ngx_http_cache_guard_subfield_t *subs, const char *expected);
static void ngx_http_cache_guard_policy_error(
    ngx_http_cache_guard_policy_ctx_t *pc, const char *field,
    const char *reason);
static void ngx_http_cache_guard_policy_one_of(u_char *buf, size_t size,
    const char **values);
static ngx_uint_t ngx_http_cache_guard_policy_line(ngx_conf_t *cf,
    ngx_str_t *file, const char *field);
static void ngx_http_cache_guard_policy_set_defaults(
    ngx_http_cache_guard_policy_t *pl);
static char *ngx_http_cache_guard_policy_on_hook_error(
    ngx_http_cache_guard_policy_ctx_t *pc);
static lua_State *ngx_http_cache_guard_lua_new(ngx_conf_t *cf);
static void *ngx_http_cache_guard_lua_alloc(void *ud, void *ptr, size_t osize,
    size_t nsize);
static void ngx_http_cache_guard_lua_start(ngx_uint_t steps);
static void ngx_http_cache_guard_lua_count(lua_State *L, lua_Debug *ar);
static int ngx_http_cache_guard_lua_loading_fn(lua_State *L);
static int ngx_http_cache_guard_lua_pcall(lua_State *L);
static int ngx_http_cache_guard_lua_gsub(lua_State *L);
static int ngx_http_cache_guard_lua_xpcall(lua_State *L);
static void ngx_http_cache_guard_hook_error(ngx_http_request_t *r,
    ngx_http_cache_guard_policy_t *pl, ngx_uint_t hook, const char *fmt, ...);


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

    /* documented, arriving with later versions: refuse, never ignore */
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

static ngx_str_t  ngx_http_cache_guard_default_key =
    ngx_string("$scheme://$host$request_uri");


const char  *ngx_http_cache_guard_hook_names[] = {
    "key", "validate", "bloom.item"
};


/* one Lua call runs at a time in a process: its budget is global */

static ngx_uint_t  ngx_http_cache_guard_lua_steps;       /* hooks left */
static ngx_uint_t  ngx_http_cache_guard_lua_limit;       /* instructions */
static ngx_uint_t  ngx_http_cache_guard_lua_exhausted;
static ngx_uint_t  ngx_http_cache_guard_lua_loading;
static ngx_uint_t  ngx_http_cache_guard_lua_depth;    /* of gsub calls */

#define NGX_HTTP_CACHE_GUARD_LUA_DEPTH  16


/*
 * The environment of a policy file and of every function it defines or
 * requires: the pure libraries, no I/O, no ffi, no debug, no loading of
 * code.  require() loads Lua files only (next to the policy, or on
 * LUA_PATH), when the policy is read, into the same environment.  Run
 * with the real globals; returns the sandbox.
 */

static const char  ngx_http_cache_guard_lua_sandbox[] =
    "local loading, pcall, xpcall, gsub = ...\n"
    "local G, error, type, pairs = _G, error, type, pairs\n"
    "local env = {}\n"
    "for _, k in ipairs({ 'assert', 'error', 'getmetatable', 'ipairs',\n"
    "    'next', 'pairs', 'rawequal', 'rawget', 'select', 'setmetatable',\n"
    "    'tonumber', 'tostring', 'type', 'unpack', '_VERSION' }) do\n"
    "  env[k] = G[k]\n"
    "end\n"
    "local function copy(t)\n"
    "  local c = {}\n"
    "  for k, v in pairs(t) do c[k] = v end\n"
    "  return c\n"
    "end\n"
    "env.pcall, env.xpcall = pcall, xpcall\n"
    "env.string, env.table = copy(string), copy(table)\n"
    "env.math, env.bit = copy(math), copy(bit)\n"
    "env.string.dump = nil\n"
    "env.string.gsub = gsub\n"
    "env.os = { time = os.time, clock = os.clock }\n"
    "env._G = env\n"
    "getmetatable('').__index = env.string\n"
    "local builtin = { string = env.string, table = env.table,\n"
    "                  math = env.math, bit = env.bit }\n"
    "local loaded, real, preload = {}, package.loaded, package.preload\n"
    "local path, searchpath = package.path, package.searchpath\n"
    "local loadfile, setfenv = loadfile, setfenv\n"
    "env.require = function(name)\n"
    "  if type(name) ~= 'string' then\n"
    "    error(\"bad argument #1 to 'require' (string expected)\", 2)\n"
    "  end\n"
    "  local m = loaded[name]\n"
    "  if m == false then\n"
    "    error(\"loop or previous error loading module '\" .. name\n"
    "          .. \"'\", 2)\n"
    "  end\n"
    "  if m ~= nil then return m end\n"
    "  if builtin[name] then return builtin[name] end\n"
    "  if real[name] ~= nil or preload[name] ~= nil then\n"
    "    error(\"module '\" .. name .. \"' is not available to policies\",\n"
    "          2)\n"
    "  end\n"
    "  if not loading() then\n"
    "    error(\"module '\" .. name .. \"' was not required when the \"\n"
    "          .. \"policy was read: require it at the top of the policy\",\n"
    "          2)\n"
    "  end\n"
    "  local file, err = searchpath(name, path)\n"
    "  if not file then\n"
    "    error(\"module '\" .. name .. \"' not found (policies require \"\n"
    "          .. \"Lua files, next to them or on LUA_PATH):\" .. err, 2)\n"
    "  end\n"
    "  local chunk, err = loadfile(file)\n"
    "  if not chunk then error(err, 0) end\n"
    "  setfenv(chunk, env)\n"
    "  loaded[name] = false\n"
    "  m = chunk(name)\n"
    "  if m == nil then m = true end\n"
    "  loaded[name] = m\n"
    "  return m\n"
    "end\n"
    "setfenv(env.require, env)\n"
    "return env\n";


ngx_http_cache_guard_policy_t *
ngx_http_cache_guard_policy_load(ngx_conf_t *cf, ngx_str_t *path)
{
    int                                 rc;
    u_char                             *p;
    ngx_str_t                           file;
    ngx_uint_t                          i;
    lua_State                          *L;
    const char                         *name;
    ngx_pool_cleanup_t                 *cln;
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

    L = ngx_http_cache_guard_lua_new(cf);
    if (L == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "cache guard: cannot create a Lua state");
        return NULL;
    }

    /*
     * require() looks next to the policy first, then in LUA_PATH (read
     * here, when nginx reads its configuration) and LuaJIT's defaults.
     */

    lua_getglobal(L, "package");
    lua_pushlstring(L, (char *) file.data, pl->name.data - file.data);
    lua_pushliteral(L, "?.lua;");
    lua_pushlstring(L, (char *) file.data, pl->name.data - file.data);
    lua_pushliteral(L, "?/init.lua;");
    lua_getfield(L, -5, "path");
    lua_concat(L, 5);
    lua_setfield(L, -2, "path");
    lua_pop(L, 1);

    pc.cf = cf;
    pc.L = L;
    pc.file = file;
    pc.policy = pl;

    /* the sandbox at index 1, the environment of the policy file */

    lua_settop(L, 0);

    if (luaL_loadbuffer(L, ngx_http_cache_guard_lua_sandbox,
                        sizeof(ngx_http_cache_guard_lua_sandbox) - 1,
                        "=sandbox") != 0)
    {
        goto lua_failed;
    }

    lua_pushcfunction(L, ngx_http_cache_guard_lua_loading_fn);
    lua_pushcfunction(L, ngx_http_cache_guard_lua_pcall);
    lua_pushcfunction(L, ngx_http_cache_guard_lua_xpcall);

    lua_getglobal(L, "string");
    lua_getfield(L, -1, "gsub");
    lua_remove(L, -2);
    lua_pushcclosure(L, ngx_http_cache_guard_lua_gsub, 1);

    if (lua_pcall(L, 4, 1, 0) != 0) {
        goto lua_failed;
    }

    /* file is NUL-terminated by ngx_conf_full_name() */

    if (luaL_loadfile(L, (const char *) file.data) != 0) {
        goto lua_failed;
    }

    lua_pushvalue(L, 1);
    lua_setfenv(L, -2);

    ngx_http_cache_guard_lua_loading = 1;
    ngx_http_cache_guard_lua_start(NGX_HTTP_CACHE_GUARD_LUA_LOAD_STEPS);

    rc = lua_pcall(L, 0, 1, 0);

    ngx_http_cache_guard_lua_loading = 0;

    if (rc != 0) {
        goto lua_failed;
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

        if (f->handler(&pc) != NGX_CONF_OK) {
            goto failed;
        }

        lua_pop(L, 1);
    }

    if (pl->key_fn == LUA_NOREF && pl->validate_fn == LUA_NOREF
        && pl->bloom_item_fn == LUA_NOREF)
    {
        lua_close(L);

    } else {
        /* the hooks run in this state, in every worker (after fork) */

        lua_settop(L, 0);

        cln = ngx_pool_cleanup_add(cf->pool, 0);
        if (cln == NULL) {
            lua_close(L);
            return NULL;
        }

        cln->handler = ngx_http_cache_guard_policy_close;
        cln->data = L;
        pl->L = L;

        ngx_http_cache_guard_request_metatable(L);

        /* made once: a hook call must allocate nothing unprotected */
        lua_pushcfunction(L, ngx_http_cache_guard_hook_trampoline);
        pl->call_fn = luaL_ref(L, LUA_REGISTRYINDEX);
    }

    if (pl->key == NULL && pl->key_fn == LUA_NOREF
        && ngx_http_cache_guard_policy_compile_key(cf, pl, NULL) != NGX_OK)
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

lua_failed:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "cache guard: policy %s",
                       lua_isstring(L, -1) ? lua_tostring(L, -1)
                                           : "raised an error");

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
 * Key templates are compiled into literals, variable indexes and regex
 * captures, and evaluated in one pass into one allocation: cheaper than a
 * complex value, which runs its script twice and copies the result again.
 */

ngx_int_t
ngx_http_cache_guard_policy_compile_key(ngx_conf_t *cf,
    ngx_http_cache_guard_policy_t *pl, ngx_str_t *value)
{
    pl->key = ngx_http_cache_guard_policy_template(cf,
                  value ? value : &ngx_http_cache_guard_default_key, "key");

    return pl->key ? NGX_OK : NGX_ERROR;
}


static ngx_array_t *
ngx_http_cache_guard_policy_template(ngx_conf_t *cf, ngx_str_t *value,
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

        n = ngx_http_cache_guard_policy_max_capture(parts);

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


static ngx_uint_t
ngx_http_cache_guard_policy_max_capture(ngx_array_t *parts)
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


/*
 * From postconfiguration, when every variable is declared (maps and sets
 * may come after the policy) and before nginx's own check, which names
 * neither the policy nor the field.
 */

ngx_int_t
ngx_http_cache_guard_policy_check_variables(ngx_conf_t *cf)
{
    u_char                            *end, where[NGX_MAX_PATH + 32];
    ngx_uint_t                         i, j, k;
    ngx_array_t                       *parts;
    ngx_http_core_main_conf_t         *cmcf;
    ngx_http_cache_guard_key_part_t   *part;
    ngx_http_cache_guard_policy_t    **plp;
    ngx_http_cache_guard_main_conf_t  *mcf;

    mcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_cache_guard_module);
    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    plp = mcf->policies.elts;

    for (i = 0; i < mcf->policies.nelts; i++) {
        for (j = 0; j < 2; j++) {
            parts = j ? plp[i]->bloom_item : plp[i]->key;

            if (parts == NULL) {
                continue;
            }

            part = parts->elts;

            for (k = 0; k < parts->nelts; k++) {
                if (part[k].index == -1
                    || ngx_http_cache_guard_policy_known_variable(cmcf,
                                                           &part[k].text)
                       == NGX_OK)
                {
                    continue;
                }

                end = ngx_http_cache_guard_policy_where(cf, plp[i],
                                                      j ? "item" : "key",
                                                      where, sizeof(where));

                ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                              "cache guard: policy %*s: %s uses the unknown "
                              "variable \"$%V\"", end - where, where,
                              j ? "bloom.item" : "key", &part[k].text);
                return NGX_ERROR;
            }
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


/* as ngx_http_variables_init_vars() finds them */

static ngx_int_t
ngx_http_cache_guard_policy_known_variable(ngx_http_core_main_conf_t *cmcf,
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
ngx_http_cache_guard_policy_eval_key(ngx_http_request_t *r,
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

    if (lua_type(pc->L, -1) == LUA_TFUNCTION) {
        lua_pushvalue(pc->L, -1);
        pc->policy->key_fn = luaL_ref(pc->L, LUA_REGISTRYINDEX);
        return NGX_CONF_OK;
    }

    if (lua_type(pc->L, -1) != LUA_TSTRING) {
        ngx_http_cache_guard_policy_error(pc, "key", "must be a string of "
                                          "nginx variables or a function");
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


/* on_hook_error = "reject" | "pass" */

static char *
ngx_http_cache_guard_policy_on_hook_error(
    ngx_http_cache_guard_policy_ctx_t *pc)
{
    const char  *v;

    v = (lua_type(pc->L, -1) == LUA_TSTRING) ? lua_tostring(pc->L, -1) : "";

    if (ngx_strcmp(v, "reject") == 0) {
        pc->policy->on_hook_error = NGX_HTTP_CACHE_GUARD_ON_HOOK_REJECT;

    } else if (ngx_strcmp(v, "pass") == 0) {
        pc->policy->on_hook_error = NGX_HTTP_CACHE_GUARD_ON_HOOK_PASS;

    } else {
        ngx_http_cache_guard_policy_error(pc, "on_hook_error", "must be one "
                                          "of \"reject\", \"pass\"");
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_cache_guard_policy_lock(ngx_http_cache_guard_policy_ctx_t *pc)
{
    static const char  *on_timeout[] = { "stale", "origin", "error", "follow",
                                         NULL };

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


static char *
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


/* alerts = { hit_ratio_below = 0.8, error_rate_above = 0.05, window = 60 } */

static char *
ngx_http_cache_guard_policy_alerts(ngx_http_cache_guard_policy_ctx_t *pc)
{
    static ngx_http_cache_guard_subfield_t  subs[] = {
        { "hit_ratio_below", NGX_HTTP_CACHE_GUARD_NUMBER,
          offsetof(ngx_http_cache_guard_policy_t, alert_hit_ratio), 0, 1,
          NULL },
        { "error_rate_above", NGX_HTTP_CACHE_GUARD_NUMBER,
          offsetof(ngx_http_cache_guard_policy_t, alert_error_rate), 0, 1,
          NULL },
        { "window", NGX_HTTP_CACHE_GUARD_SECONDS,
          offsetof(ngx_http_cache_guard_policy_t, alert_window_ms), 0, 0,
          NULL },
        { "min_requests", NGX_HTTP_CACHE_GUARD_INTEGER,
          offsetof(ngx_http_cache_guard_policy_t, alert_min_requests), 1, 1e9,
          NULL },
        { NULL, 0, 0, 0, 0, NULL }
    };

    ngx_http_cache_guard_policy_t  *pl;

    if (ngx_http_cache_guard_policy_table(pc, "alerts", subs,
                                          "a table such as "
                                          "{ hit_ratio_below = 0.8 }")
        != NGX_CONF_OK)
    {
        return NGX_CONF_ERROR;
    }

    pl = pc->policy;

    /* the window is read from one-second snapshots, 60 of them at most */

    if (pl->alert_window_ms % 1000
        || pl->alert_window_ms > 1000 * (NGX_HTTP_CACHE_GUARD_HISTORY - 4))
    {
        ngx_http_cache_guard_policy_error(pc, "alerts.window", "must be whole "
                                          "seconds, 60 at most");
        return NGX_CONF_ERROR;
    }

    pl->alert_window = pl->alert_window_ms / 1000;

    return NGX_CONF_OK;
}


/* a table of named sub-fields: "lock = { ttl = 10, wait = 5 }" */

static char *
ngx_http_cache_guard_policy_table(ngx_http_cache_guard_policy_ctx_t *pc,
    const char *field, ngx_http_cache_guard_subfield_t *subs,
    const char *expected)
{
    u_char                           *base, name[128], msg[256];
    double                            v;
    lua_State                        *L;
    const char                       *key, *str, **e;
    ngx_http_cache_guard_subfield_t  *sf;

    L = pc->L;
    base = (u_char *) pc->policy;

    if (!lua_istable(L, -1)) {
        *ngx_snprintf(name, sizeof(name) - 1, "must be %s", expected) = '\0';
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

        /* ngx_snprintf() does not terminate what it truncates */
        *ngx_snprintf(name, sizeof(name) - 1, "%s.%s", field,
                      sf->name ? sf->name : key) = '\0';

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

            if (lua_type(L, -1) != LUA_TNUMBER || v != v
                || v < sf->min || v > sf->max
                || (sf->kind == NGX_HTTP_CACHE_GUARD_INTEGER
                    && v != (double) (ngx_int_t) v))
            {
                (void) snprintf((char *) msg, sizeof(msg),
                                "must be a %s from %.15g to %.15g",
                                sf->kind == NGX_HTTP_CACHE_GUARD_INTEGER
                                ? "whole number" : "number",
                                sf->min, sf->max);
                ngx_http_cache_guard_policy_error(pc, (char *) name,
                                                  (char *) msg);
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
                ngx_http_cache_guard_policy_one_of(msg, sizeof(msg),
                                                   sf->values);
                ngx_http_cache_guard_policy_error(pc, (char *) name,
                                                  (char *) msg);
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


/* "must be one of "a", "b"" from a NULL-terminated list ("" skipped) */

static void
ngx_http_cache_guard_policy_one_of(u_char *buf, size_t size,
    const char **values)
{
    u_char       *p, *last;
    const char  **e, *sep;

    last = buf + size - 1;
    p = ngx_slprintf(buf, last, "must be one of ");
    sep = "";

    for (e = values; *e; e++) {
        if (**e) {
            p = ngx_slprintf(p, last, "%s\"%s\"", sep, *e);
            sep = ", ";
        }
    }

    *p = '\0';
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


/*
 * validate = { uri = "^/api/users/[0-9]+$", methods = { "GET" },
 *              args = { id = { type = "int", min = 1, max = 999 } },
 *              max_key_length = 512 }, or a function(r)
 */

static char *
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


static char *
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

static char *
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

static char *
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
                pc->policy->bloom_item = ngx_http_cache_guard_policy_template(
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


static char *
ngx_http_cache_guard_policy_negative_max(
    ngx_http_cache_guard_policy_ctx_t *pc)
{
    double  v;

    v = lua_tonumber(pc->L, -1);

    if (lua_type(pc->L, -1) != LUA_TNUMBER || v < 0 || v > 1e9
        || v != (double) (ngx_uint_t) v)
    {
        ngx_http_cache_guard_policy_error(pc, "negative_max_entries",
                                          "must be a whole number, 0 or more");
        return NGX_CONF_ERROR;
    }

    pc->policy->negative_max = (ngx_uint_t) v;

    return NGX_CONF_OK;
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


static void
ngx_http_cache_guard_policy_close(void *data)
{
    lua_close(data);
}


/*
 * The request object given to hooks: a userdata holding the request, with
 * fields read lazily.  It is cleared when the hook returns, so a hook that
 * keeps it gets an error, not a freed request.
 */

typedef struct {
    ngx_http_request_t             *request;
    ngx_http_cache_guard_geo_t      geo;
    ngx_uint_t                      geo_state;    /* 0, 1 found, 2 none */
} ngx_http_cache_guard_lua_request_t;


typedef struct {
    int                                  fn;
    ngx_http_request_t                  *request;
    ngx_http_cache_guard_lua_request_t  *lr;
} ngx_http_cache_guard_lua_call_t;


#define NGX_HTTP_CACHE_GUARD_LUA_REQUEST  "cache_guard.request"


static void
ngx_http_cache_guard_request_metatable(lua_State *L)
{
    luaL_newmetatable(L, NGX_HTTP_CACHE_GUARD_LUA_REQUEST);
    lua_pushcfunction(L, ngx_http_cache_guard_request_index);
    lua_setfield(L, -2, "__index");

    /* getmetatable(r) must not reach it */
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");

    lua_pop(L, 1);
}


/* in the protected call: the request object, then the hook */

static int
ngx_http_cache_guard_hook_trampoline(lua_State *L)
{
    ngx_http_cache_guard_lua_call_t     *call;
    ngx_http_cache_guard_lua_request_t  *lr;

    call = lua_touserdata(L, 1);
    lua_settop(L, 0);

    lua_rawgeti(L, LUA_REGISTRYINDEX, call->fn);

    lr = lua_newuserdata(L, sizeof(ngx_http_cache_guard_lua_request_t));
    ngx_memzero(lr, sizeof(ngx_http_cache_guard_lua_request_t));
    lr->request = call->request;
    call->lr = lr;

    luaL_getmetatable(L, NGX_HTTP_CACHE_GUARD_LUA_REQUEST);
    lua_setmetatable(L, -2);

    lua_call(L, 1, 2);

    return 2;
}


/*
 * Calls a hook with the request object.  Key and item hooks (status is
 * NULL) return a string (NGX_OK, *str) or nil (NGX_DECLINED); a validate
 * hook returns nil (NGX_OK) or a status and a message (NGX_DECLINED).
 * NGX_ERROR: the hook raised an error, ran out of instructions or memory,
 * or returned something else; counted and logged (rate-limited).
 */

ngx_int_t
ngx_http_cache_guard_policy_call(ngx_http_request_t *r,
    ngx_http_cache_guard_policy_t *pl, ngx_uint_t hook, ngx_str_t *str,
    ngx_uint_t *status)
{
    int                                  top, t, fn;
    size_t                               len;
    double                               v;
    ngx_int_t                            rc;
    lua_State                           *L;
    const char                          *s, *err;
    ngx_http_cache_guard_lua_call_t      call;
    ngx_http_cache_guard_lua_request_t  *lr;

    switch (hook) {

    case NGX_HTTP_CACHE_GUARD_HOOK_KEY:
        fn = pl->key_fn;
        break;

    case NGX_HTTP_CACHE_GUARD_HOOK_VALIDATE:
        fn = pl->validate_fn;
        break;

    default: /* NGX_HTTP_CACHE_GUARD_HOOK_BLOOM */
        fn = pl->bloom_item_fn;
    }

    L = pl->L;
    top = lua_gettop(L);

    /*
     * Nothing is allocated outside the protected call: a state at its
     * memory cap would otherwise panic and end the worker.
     */

    call.fn = fn;
    call.request = r;
    call.lr = NULL;

    lua_rawgeti(L, LUA_REGISTRYINDEX, pl->call_fn);
    lua_pushlightuserdata(L, &call);

    ngx_http_cache_guard_lua_start(NGX_HTTP_CACHE_GUARD_LUA_CALL_STEPS);

    t = lua_pcall(L, 1, 2, 0);

    lr = call.lr;

    if (lr) {
        lr->request = NULL;
    }

    if (t != 0) {
        err = lua_isstring(L, -1) ? lua_tostring(L, -1) : "(no message)";
        ngx_http_cache_guard_hook_error(r, pl, hook, "failed: %s", err);
        lua_settop(L, top);
        return NGX_ERROR;
    }

    rc = NGX_ERROR;
    t = lua_type(L, -2);

    if (t == LUA_TNIL || (t == LUA_TBOOLEAN && !lua_toboolean(L, -2))) {
        rc = status ? NGX_OK : NGX_DECLINED;

    } else if (status == NULL && t == LUA_TSTRING) {
        s = lua_tolstring(L, -2, &len);
        str->data = ngx_pnalloc(r->pool, len);

        if (str->data == NULL) {
            lua_settop(L, top);
            return NGX_ERROR;
        }

        ngx_memcpy(str->data, s, len);
        str->len = len;
        rc = NGX_OK;

    } else if (status && t == LUA_TNUMBER) {
        v = lua_tonumber(L, -2);

        if (v >= 400 && v <= 599) {
            *status = (ngx_uint_t) v;
            ngx_str_null(str);

            if (lua_type(L, -1) == LUA_TSTRING) {
                s = lua_tolstring(L, -1, &len);
                len = ngx_min(len, 512);
                str->data = ngx_pnalloc(r->pool, len);

                if (str->data) {
                    ngx_memcpy(str->data, s, len);
                    str->len = len;
                }
            }

            rc = NGX_DECLINED;
        }
    }

    if (rc == NGX_ERROR) {
        ngx_http_cache_guard_hook_error(r, pl, hook, "returned %s, expected %s",
                                        lua_typename(L, t),
                                        status ? "nil, or a status from 400 "
                                                 "to 599 and a message"
                                               : "a string or nil");
    }

    lua_settop(L, top);

    return rc;
}


/*
 * A failed hook is counted, and logged at most once a second per policy
 * and hook on this node, with the number of failures not logged: a flood
 * of requests that fail must not flood the log.
 */

static void
ngx_http_cache_guard_hook_error(ngx_http_request_t *r,
    ngx_http_cache_guard_policy_t *pl, ngx_uint_t hook, const char *fmt, ...)
{
    u_char                          *p, buf[NGX_MAX_ERROR_STR];
    time_t                           now;
    va_list                          args;
    ngx_atomic_uint_t                n, last, skipped;
    ngx_http_cache_guard_metrics_t  *m;

    skipped = 0;

    if (pl->rec) {
        m = &pl->rec->m;

        n = ngx_atomic_fetch_add(&m->hook_errors[hook], 1) + 1;
        now = ngx_time();
        last = m->hook_logged[hook];

        if ((time_t) last == now
            || !ngx_atomic_cmp_set(&m->hook_logged[hook], last, now))
        {
            return;
        }

        if (n - 1 > m->hook_logged_n[hook]) {
            skipped = n - 1 - m->hook_logged_n[hook];
        }

        m->hook_logged_n[hook] = n;
    }

    va_start(args, fmt);
    p = ngx_vslprintf(buf, buf + sizeof(buf) - 64, fmt, args);
    va_end(args);

    if (skipped) {
        p = ngx_slprintf(p, buf + sizeof(buf), " (and %uA more failures "
                         "not logged)", skipped);
    }

    ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                  "cache guard: policy \"%V\" %s hook %*s", &pl->name,
                  ngx_http_cache_guard_hook_names[hook], p - buf, buf);
}


/*
 * A policy's state: LuaJIT's allocator under a cap, the interpreter only
 * (compiled traces never call count hooks, so a loop the JIT compiled
 * would never be stopped), the count hook, the standard libraries (the
 * sandbox is built from them).
 */

static lua_State *
ngx_http_cache_guard_lua_new(ngx_conf_t *cf)
{
    lua_State                       *L;
    ngx_http_cache_guard_lua_mem_t  *mem;

    mem = ngx_palloc(cf->pool, sizeof(ngx_http_cache_guard_lua_mem_t));
    if (mem == NULL) {
        return NULL;
    }

    L = luaL_newstate();
    if (L == NULL) {
        return NULL;
    }

    mem->alloc = lua_getallocf(L, &mem->ud);
    mem->used = (size_t) lua_gc(L, LUA_GCCOUNT, 0) * 1024
                + lua_gc(L, LUA_GCCOUNTB, 0);
    lua_setallocf(L, ngx_http_cache_guard_lua_alloc, mem);

    lua_sethook(L, ngx_http_cache_guard_lua_count, LUA_MASKCOUNT,
                NGX_HTTP_CACHE_GUARD_LUA_STEP);

    ngx_http_cache_guard_lua_start(NGX_HTTP_CACHE_GUARD_LUA_LOAD_STEPS);

    luaL_openlibs(L);

    /* after the jit library, which turns the JIT on */
    luaJIT_setmode(L, 0, LUAJIT_MODE_ENGINE|LUAJIT_MODE_OFF);

    return L;
}


/* Lua raises "not enough memory" when an allocation fails */

static void *
ngx_http_cache_guard_lua_alloc(void *ud, void *ptr, size_t osize,
    size_t nsize)
{
    ngx_http_cache_guard_lua_mem_t  *mem = ud;

    void  *p;

    if (nsize > osize
        && mem->used + (nsize - osize) > NGX_HTTP_CACHE_GUARD_LUA_MEMORY)
    {
        return NULL;
    }

    p = mem->alloc(mem->ud, ptr, osize, nsize);

    if (p == NULL && nsize != 0) {
        return NULL;
    }

    if (nsize >= osize) {
        mem->used += nsize - osize;

    } else {
        mem->used -= ngx_min(mem->used, osize - nsize);
    }

    return p;
}


static void
ngx_http_cache_guard_lua_start(ngx_uint_t steps)
{
    ngx_http_cache_guard_lua_depth = 0;
    ngx_http_cache_guard_lua_steps = steps;
    ngx_http_cache_guard_lua_limit = steps * NGX_HTTP_CACHE_GUARD_LUA_STEP;
    ngx_http_cache_guard_lua_exhausted = 0;
}


/*
 * string.gsub with a function calls back into Lua from C: a replacement
 * that calls gsub again recurses on the C stack, where the instruction
 * count does not look.  The depth is bounded; an error unwinds past the
 * decrement, so each hook call starts from 0 (lua_start).
 */

static int
ngx_http_cache_guard_lua_gsub(lua_State *L)
{
    int  n;

    if (++ngx_http_cache_guard_lua_depth > NGX_HTTP_CACHE_GUARD_LUA_DEPTH) {
        return luaL_error(L, "string.gsub calls nested too deep");
    }

    n = lua_gettop(L);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, n, LUA_MULTRET);

    ngx_http_cache_guard_lua_depth--;

    return lua_gettop(L);
}


/*
 * Once the budget is spent, every further count hook raises again, and
 * the sandbox's pcall() and xpcall() pass the error on: the call ends.
 */

static void
ngx_http_cache_guard_lua_count(lua_State *L, lua_Debug *ar)
{
    if (ngx_http_cache_guard_lua_steps > 1) {
        ngx_http_cache_guard_lua_steps--;
        return;
    }

    ngx_http_cache_guard_lua_steps = 0;
    ngx_http_cache_guard_lua_exhausted = 1;

    luaL_where(L, 0);
    lua_pushfstring(L, "more than %d instructions",
                    (int) ngx_http_cache_guard_lua_limit);
    lua_concat(L, 2);
    lua_error(L);
}


static int
ngx_http_cache_guard_lua_loading_fn(lua_State *L)
{
    lua_pushboolean(L, ngx_http_cache_guard_lua_loading);
    return 1;
}


static int
ngx_http_cache_guard_lua_pcall(lua_State *L)
{
    int  rc;

    luaL_checkany(L, 1);

    rc = lua_pcall(L, lua_gettop(L) - 1, LUA_MULTRET, 0);

    if (rc != 0 && ngx_http_cache_guard_lua_exhausted) {
        return lua_error(L);
    }

    lua_pushboolean(L, rc == 0);
    lua_insert(L, 1);

    return lua_gettop(L);
}


/* xpcall(f, handler, ...) */

static int
ngx_http_cache_guard_lua_xpcall(lua_State *L)
{
    int  rc;

    luaL_checkany(L, 2);

    /* handler, f, args */
    lua_pushvalue(L, 1);
    lua_pushvalue(L, 2);
    lua_replace(L, 1);
    lua_replace(L, 2);

    rc = lua_pcall(L, lua_gettop(L) - 2, LUA_MULTRET, 1);

    if (rc != 0 && ngx_http_cache_guard_lua_exhausted) {
        return lua_error(L);
    }

    lua_pushboolean(L, rc == 0);
    lua_replace(L, 1);

    return lua_gettop(L);
}


static ngx_http_request_t *
ngx_http_cache_guard_request_check(lua_State *L)
{
    ngx_http_cache_guard_lua_request_t  *lr;

    lr = luaL_checkudata(L, 1, NGX_HTTP_CACHE_GUARD_LUA_REQUEST);

    if (lr->request == NULL) {
        luaL_error(L, "the request object is used after its hook returned");
    }

    return lr->request;
}


static int
ngx_http_cache_guard_request_index(lua_State *L)
{
    size_t                               len;
    ngx_str_t                           *v;
    const char                          *key;
    ngx_http_request_t                  *r;
    ngx_http_cache_guard_lua_request_t  *lr;

    r = ngx_http_cache_guard_request_check(L);
    lr = lua_touserdata(L, 1);
    key = luaL_checklstring(L, 2, &len);

    switch (len) {

    case 3:
        if (ngx_strcmp(key, "uri") == 0) {
            v = &r->uri;
            goto string;
        }

        if (ngx_strcmp(key, "arg") == 0) {
            lua_pushcfunction(L, ngx_http_cache_guard_request_arg);
            return 1;
        }

        if (ngx_strcmp(key, "var") == 0) {
            lua_pushcfunction(L, ngx_http_cache_guard_request_var);
            return 1;
        }

        if (ngx_strcmp(key, "geo") == 0) {
            if (lr->geo_state == 0) {
                lr->geo_state = (ngx_http_cache_guard_geo_lookup(r, &lr->geo)
                                 == NGX_OK) ? 1 : 2;
            }

            lua_createtable(L, 0, 4);

            if (lr->geo_state == 1) {
                if (lr->geo.country.len) {
                    lua_pushlstring(L, (char *) lr->geo.country.data,
                                    lr->geo.country.len);
                    lua_setfield(L, -2, "country");
                }

                if (lr->geo.continent.len) {
                    lua_pushlstring(L, (char *) lr->geo.continent.data,
                                    lr->geo.continent.len);
                    lua_setfield(L, -2, "continent");
                }

                if (lr->geo.asn) {
                    lua_pushnumber(L, (lua_Number) lr->geo.asn);
                    lua_setfield(L, -2, "asn");
                }

                if (lr->geo.asn_org.len) {
                    lua_pushlstring(L, (char *) lr->geo.asn_org.data,
                                    lr->geo.asn_org.len);
                    lua_setfield(L, -2, "asn_org");
                }
            }

            return 1;
        }

        break;

    case 4:
        if (ngx_strcmp(key, "args") == 0) {
            v = &r->args;
            goto string;
        }

        if (ngx_strcmp(key, "host") == 0) {
            v = &r->headers_in.server;
            goto string;
        }

        break;

    case 6:
        if (ngx_strcmp(key, "method") == 0) {
            v = &r->method_name;
            goto string;
        }

        if (ngx_strcmp(key, "header") == 0) {
            lua_pushcfunction(L, ngx_http_cache_guard_request_header);
            return 1;
        }

        break;

    case 9:
        if (ngx_strcmp(key, "client_ip") == 0) {
            v = &r->connection->addr_text;
            goto string;
        }

        break;
    }

    lua_pushnil(L);
    return 1;

string:

    lua_pushlstring(L, (char *) v->data, v->len);
    return 1;
}


/*
 * r:arg(name): the argument as the origin reads it and as the declarative
 * rules check it (decoded, "+" as a space, the name in any case, "id[]"
 * as "id"); nil when absent; false and a reason when it is there but
 * unusable: the query does not decode, or the argument is given twice
 * with different values, so that one origin would read the first and
 * another the last.
 */

static int
ngx_http_cache_guard_request_arg(lua_State *L)
{
    u_char              *p, *end, *buf;
    size_t               len;
    ngx_int_t            rc;
    ngx_str_t            want, name, value, found;
    ngx_uint_t           n;
    const char          *arg;
    ngx_http_request_t  *r;

    r = ngx_http_cache_guard_request_check(L);
    arg = luaL_checklstring(L, 2, &len);

    want.data = (u_char *) arg;
    want.len = len;

    buf = ngx_pnalloc(r->pool, r->args.len + 1);
    if (buf == NULL) {
        return luaL_error(L, "no memory");
    }

    p = r->args.data;
    end = p + r->args.len;
    n = 0;
    ngx_str_null(&found);

    for ( ;; ) {
        rc = ngx_http_cache_guard_arg_next(&p, end, buf, &name, &value);

        if (rc == NGX_DONE) {
            break;
        }

        if (rc == NGX_ERROR) {
            lua_settop(L, 2);
            lua_pushboolean(L, 0);
            lua_pushliteral(L, "does not decode");
            return 2;
        }

        if (!ngx_http_cache_guard_arg_is(&name, &want)) {
            continue;
        }

        if (n++ == 0) {
            /* kept in a Lua string at once: the buffer is reused */
            lua_pushlstring(L, (char *) value.data, value.len);
            found.data = (u_char *) lua_tolstring(L, -1, &found.len);

        } else if (value.len != found.len
                   || ngx_memcmp(value.data, found.data, value.len) != 0)
        {
            lua_settop(L, 2);
            lua_pushboolean(L, 0);
            lua_pushliteral(L, "is given twice");
            return 2;
        }
    }

    if (n == 0) {
        lua_pushnil(L);
    }

    return 1;
}


/* r:header(name): the first request header of that name, or nil */

static int
ngx_http_cache_guard_request_header(lua_State *L)
{
    size_t               len;
    ngx_uint_t           i;
    const char          *name;
    ngx_list_part_t     *part;
    ngx_table_elt_t     *h;
    ngx_http_request_t  *r;

    r = ngx_http_cache_guard_request_check(L);
    name = luaL_checklstring(L, 2, &len);

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len == len
            && ngx_strncasecmp(h[i].key.data, (u_char *) name, len) == 0)
        {
            lua_pushlstring(L, (char *) h[i].value.data, h[i].value.len);
            return 1;
        }
    }

    lua_pushnil(L);
    return 1;
}


/* r:var(name): an nginx variable, or nil */

static int
ngx_http_cache_guard_request_var(lua_State *L)
{
    size_t                      len;
    u_char                     *low;
    ngx_str_t                   name;
    ngx_uint_t                  key;
    const char                 *s;
    ngx_http_request_t         *r;
    ngx_http_variable_value_t  *vv;

    r = ngx_http_cache_guard_request_check(L);
    s = luaL_checklstring(L, 2, &len);

    low = ngx_pnalloc(r->pool, len);
    if (low == NULL) {
        return luaL_error(L, "out of memory");
    }

    key = ngx_hash_strlow(low, (u_char *) s, len);
    name.data = low;
    name.len = len;

    vv = ngx_http_get_variable(r, &name, key);

    if (vv == NULL || vv->not_found) {
        lua_pushnil(L);
        return 1;
    }

    lua_pushlstring(L, (char *) vv->data, vv->len);
    return 1;
}
