
/*
 * Copyright (C) nginx-cache-guard authors
 *
 * Error logging that a failing backend (Redis, a GeoIP database) cannot
 * flood: one message per interval, the rest counted.
 */


#include "ngx_http_cache_guard_log.h"


void
ngx_http_cache_guard_log_limited(ngx_http_cache_guard_log_limit_t *lim,
    time_t interval, ngx_uint_t level, ngx_log_t *log, const char *fmt, ...)
{
    u_char   *p, buf[NGX_MAX_ERROR_STR];
    time_t    now;
    va_list   args;

    va_start(args, fmt);
    p = ngx_vslprintf(buf, buf + sizeof(buf), fmt, args);
    va_end(args);

    now = ngx_time();

    if (lim->last && now - lim->last < interval) {
        lim->suppressed++;

        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, log, 0,
                       "%*s (not logged)", (size_t) (p - buf), buf);
        return;
    }

    if (lim->suppressed && lim->count) {
        ngx_log_error(level, log, 0,
                      "%*s (%ui similar errors in the last %T s not logged)",
                      (size_t) (p - buf), buf, lim->suppressed,
                      now - lim->last);

    } else {
        ngx_log_error(level, log, 0, "%*s", (size_t) (p - buf), buf);
    }

    lim->last = now;
    lim->suppressed = 0;
}
