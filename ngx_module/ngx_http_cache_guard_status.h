
/*
 * Copyright (C) nginx-cache-guard authors
 */


/* the JSON status and the dashboard: cache_guard_status */


#ifndef _NGX_HTTP_CACHE_GUARD_STATUS_H_INCLUDED_
#define _NGX_HTTP_CACHE_GUARD_STATUS_H_INCLUDED_


#include "ngx_http_cache_guard_types.h"
#include "ngx_http_cache_guard_breaker.h"


/* the longest JSON of a breaker */
#define NGX_HTTP_CACHE_GUARD_BREAKER_JSON                                    \
    (NGX_HTTP_CACHE_GUARD_RECORD_NAME * 6 + 512)


char *ngx_http_cache_guard_status_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);

u_char *ngx_http_cache_guard_breaker_json(u_char *p,
    ngx_http_cache_guard_record_t *rec,
    ngx_http_cache_guard_breaker_conf_t *bc);


#endif /* _NGX_HTTP_CACHE_GUARD_STATUS_H_INCLUDED_ */
