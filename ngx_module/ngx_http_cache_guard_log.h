
/*
 * Copyright (C) nginx-cache-guard authors
 */


/* error logging that a failing backend cannot flood */


#ifndef _NGX_HTTP_CACHE_GUARD_LOG_H_INCLUDED_
#define _NGX_HTTP_CACHE_GUARD_LOG_H_INCLUDED_


#include "ngx_http_cache_guard_types.h"


typedef struct {
    time_t                          last;         /* 0: none logged yet */
    ngx_uint_t                      suppressed;   /* since then */
    ngx_uint_t                      count;        /* tell "suppressed" */
} ngx_http_cache_guard_log_limit_t;


/*
 * Logs at most one message per "interval" seconds at "level"; the others
 * go to the debug log, and with "count" set the next one logged says how
 * many there were.
 */
void ngx_http_cache_guard_log_limited(ngx_http_cache_guard_log_limit_t *lim,
    time_t interval, ngx_uint_t level, ngx_log_t *log, const char *fmt, ...);


#endif /* _NGX_HTTP_CACHE_GUARD_LOG_H_INCLUDED_ */
