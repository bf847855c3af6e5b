
/*
 * Copyright (C) nginx-cache-guard authors
 */


/* the Lua runtime: policy states, the sandbox, hook calls */


#ifndef _NGX_HTTP_CACHE_GUARD_LUA_H_INCLUDED_
#define _NGX_HTTP_CACHE_GUARD_LUA_H_INCLUDED_


#include "ngx_http_cache_guard_types.h"

#include <lua.h>
#include <lauxlib.h>


/* what a hook call came to */

typedef enum {
    NGX_HTTP_CACHE_GUARD_HOOK_OK = 0,   /* a string; validate: nil, valid */
    NGX_HTTP_CACHE_GUARD_HOOK_NIL,      /* key, bloom.item: nil, no value */
    NGX_HTTP_CACHE_GUARD_HOOK_REFUSED,  /* validate: a status, a message */
    NGX_HTTP_CACHE_GUARD_HOOK_ERROR     /* raised, over budget, bad value */
} ngx_http_cache_guard_hook_rc_t;



lua_State *ngx_http_cache_guard_lua_new(ngx_conf_t *cf);
ngx_int_t ngx_http_cache_guard_lua_run(lua_State *L, ngx_str_t *file,
    size_t dir);
ngx_int_t ngx_http_cache_guard_lua_keep(ngx_conf_t *cf,
    ngx_http_cache_guard_policy_t *pl, lua_State *L);
ngx_http_cache_guard_hook_rc_t ngx_http_cache_guard_lua_call(
    ngx_http_request_t *r, ngx_http_cache_guard_policy_t *pl,
    ngx_uint_t hook, ngx_str_t *str, ngx_uint_t *status);


#endif /* _NGX_HTTP_CACHE_GUARD_LUA_H_INCLUDED_ */
