
/*
 * Copyright (C) nginx-cache-guard authors
 *
 * Reading a policy's fields: the readers every field uses (seconds,
 * status lists, tables of sub-fields), the errors that point at the line
 * of the policy file, and the fields of caching (key, ttl, lock, stale,
 * origin, fallback, alerts and the like).
 */


#include "ngx_http_cache_guard_policy_fields.h"
#include "ngx_http_cache_guard_key.h"
#include "ngx_http_cache_guard_stats.h"


static char *ngx_http_cache_guard_policy_seconds(
    ngx_http_cache_guard_policy_ctx_t *pc, const char *field, ngx_msec_t *ms,
    ngx_uint_t zero);
static char *ngx_http_cache_guard_policy_statuses(
    ngx_http_cache_guard_policy_ctx_t *pc, ngx_uint_t *list, ngx_uint_t *n);
static void ngx_http_cache_guard_policy_one_of(u_char *buf, size_t size,
    const char **values);


char *
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


char *
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

    if (ngx_http_cache_guard_key_compile(pc->cf, pc->policy, &value)
        != NGX_OK)
    {
        ngx_http_cache_guard_policy_error(pc, "key", "is not a valid "
                                          "template (see the error above)");
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


char *
ngx_http_cache_guard_policy_ttl(ngx_http_cache_guard_policy_ctx_t *pc)
{
    return ngx_http_cache_guard_policy_seconds(pc, "ttl", &pc->policy->ttl,
                                               0);
}


char *
ngx_http_cache_guard_policy_negative_ttl(ngx_http_cache_guard_policy_ctx_t *pc)
{
    return ngx_http_cache_guard_policy_seconds(pc, "negative_ttl",
                                               &pc->policy->negative_ttl, 1);
}


char *
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


char *
ngx_http_cache_guard_policy_negative_statuses(
    ngx_http_cache_guard_policy_ctx_t *pc)
{
    return ngx_http_cache_guard_policy_statuses(pc,
                                             pc->policy->negative_statuses,
                                             &pc->policy->nnegative);
}


char *
ngx_http_cache_guard_policy_cache_statuses(
    ngx_http_cache_guard_policy_ctx_t *pc)
{
    return ngx_http_cache_guard_policy_statuses(pc, pc->policy->cache_statuses,
                                                &pc->policy->ncache);
}


char *
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


char *
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

char *
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


char *
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


char *
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


char *
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


char *
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


char *
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


/* alerts = { hit_ratio_below = 0.8, error_rate_above = 0.05, window = 60 } */

char *
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


char *
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


/* a table of named sub-fields: "lock = { ttl = 10, wait = 5 }" */

char *
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


void
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

ngx_uint_t
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
