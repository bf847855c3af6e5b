
/*
 * Copyright (C) nginx-cache-guard authors
 *
 * The Lua runtime of policies: a state under a memory cap and an
 * instruction budget, the sandbox a policy file and its hooks run in,
 * the request object r, and the protected call of a hook per request.
 */


#include "ngx_http_cache_guard_lua.h"
#include "ngx_http_cache_guard_breaker.h"
#include "ngx_http_cache_guard_codec.h"
#include "ngx_http_cache_guard_geo.h"
#include "ngx_http_cache_guard_stats.h"

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


static void ngx_http_cache_guard_lua_cleanup(void *data);
static void ngx_http_cache_guard_request_metatable(lua_State *L);
static int ngx_http_cache_guard_request_index(lua_State *L);
static int ngx_http_cache_guard_hook_trampoline(lua_State *L);
static int ngx_http_cache_guard_request_arg(lua_State *L);
static int ngx_http_cache_guard_request_header(lua_State *L);
static int ngx_http_cache_guard_request_var(lua_State *L);
static ngx_http_request_t *ngx_http_cache_guard_request_check(lua_State *L);
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


/*
 * Runs a policy file in the sandbox, under the budget of a load.
 * require() looks next to the policy first (dir: the length of its
 * directory), then in LUA_PATH (read here, when nginx reads its
 * configuration) and LuaJIT's defaults.  NGX_OK: the sandbox at index 1
 * and what the file returned on top; NGX_ERROR: the error on top.
 */

ngx_int_t
ngx_http_cache_guard_lua_run(lua_State *L, ngx_str_t *file, size_t dir)
{
    int  rc;

    lua_getglobal(L, "package");
    lua_pushlstring(L, (char *) file->data, dir);
    lua_pushliteral(L, "?.lua;");
    lua_pushlstring(L, (char *) file->data, dir);
    lua_pushliteral(L, "?/init.lua;");
    lua_getfield(L, -5, "path");
    lua_concat(L, 5);
    lua_setfield(L, -2, "path");
    lua_pop(L, 1);

    /* the sandbox at index 1, the environment of the policy file */

    lua_settop(L, 0);

    if (luaL_loadbuffer(L, ngx_http_cache_guard_lua_sandbox,
                        sizeof(ngx_http_cache_guard_lua_sandbox) - 1,
                        "=sandbox") != 0)
    {
        return NGX_ERROR;
    }

    lua_pushcfunction(L, ngx_http_cache_guard_lua_loading_fn);
    lua_pushcfunction(L, ngx_http_cache_guard_lua_pcall);
    lua_pushcfunction(L, ngx_http_cache_guard_lua_xpcall);

    lua_getglobal(L, "string");
    lua_getfield(L, -1, "gsub");
    lua_remove(L, -2);
    lua_pushcclosure(L, ngx_http_cache_guard_lua_gsub, 1);

    if (lua_pcall(L, 4, 1, 0) != 0) {
        return NGX_ERROR;
    }

    /* file is NUL-terminated by ngx_conf_full_name() */

    if (luaL_loadfile(L, (const char *) file->data) != 0) {
        return NGX_ERROR;
    }

    lua_pushvalue(L, 1);
    lua_setfenv(L, -2);

    ngx_http_cache_guard_lua_loading = 1;
    ngx_http_cache_guard_lua_start(NGX_HTTP_CACHE_GUARD_LUA_LOAD_STEPS);

    rc = lua_pcall(L, 0, 1, 0);

    ngx_http_cache_guard_lua_loading = 0;

    return (rc == 0) ? NGX_OK : NGX_ERROR;
}


/* the hooks run in this state, in every worker (after fork) */

ngx_int_t
ngx_http_cache_guard_lua_keep(ngx_conf_t *cf,
    ngx_http_cache_guard_policy_t *pl, lua_State *L)
{
    ngx_pool_cleanup_t  *cln;

    lua_settop(L, 0);

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        return NGX_ERROR;
    }

    cln->handler = ngx_http_cache_guard_lua_cleanup;
    cln->data = L;
    pl->L = L;

    ngx_http_cache_guard_request_metatable(L);

    /* made once: a hook call must allocate nothing unprotected */
    lua_pushcfunction(L, ngx_http_cache_guard_hook_trampoline);
    pl->call_fn = luaL_ref(L, LUA_REGISTRYINDEX);

    return NGX_OK;
}


static void
ngx_http_cache_guard_lua_cleanup(void *data)
{
    lua_close(data);
}


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
 * NULL) return a string (HOOK_OK, *str) or nil (HOOK_NIL); a validate
 * hook returns nil (HOOK_OK) or a status and a message (HOOK_REFUSED).
 * HOOK_ERROR: the hook raised an error, ran out of instructions or memory,
 * or returned something else; counted and logged (rate-limited).
 */

ngx_http_cache_guard_hook_rc_t
ngx_http_cache_guard_lua_call(ngx_http_request_t *r,
    ngx_http_cache_guard_policy_t *pl, ngx_uint_t hook, ngx_str_t *str,
    ngx_uint_t *status)
{
    int                                  top, t, fn;
    size_t                               len;
    double                               v;
    lua_State                           *L;
    const char                          *s, *err;
    ngx_http_cache_guard_hook_rc_t       rc;
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
        return NGX_HTTP_CACHE_GUARD_HOOK_ERROR;
    }

    rc = NGX_HTTP_CACHE_GUARD_HOOK_ERROR;
    t = lua_type(L, -2);

    if (t == LUA_TNIL || (t == LUA_TBOOLEAN && !lua_toboolean(L, -2))) {
        rc = status ? NGX_HTTP_CACHE_GUARD_HOOK_OK
                    : NGX_HTTP_CACHE_GUARD_HOOK_NIL;

    } else if (status == NULL && t == LUA_TSTRING) {
        s = lua_tolstring(L, -2, &len);
        str->data = ngx_pnalloc(r->pool, len);

        if (str->data == NULL) {
            lua_settop(L, top);
            return NGX_HTTP_CACHE_GUARD_HOOK_ERROR;
        }

        ngx_memcpy(str->data, s, len);
        str->len = len;
        rc = NGX_HTTP_CACHE_GUARD_HOOK_OK;

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

            rc = NGX_HTTP_CACHE_GUARD_HOOK_REFUSED;
        }
    }

    if (rc == NGX_HTTP_CACHE_GUARD_HOOK_ERROR) {
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

lua_State *
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
