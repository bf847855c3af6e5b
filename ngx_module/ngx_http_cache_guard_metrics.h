
/*
 * Copyright (C) nginx-cache-guard authors
 */


/* metrics and status pages */


#ifndef _NGX_HTTP_CACHE_GUARD_METRICS_H_INCLUDED_
#define _NGX_HTTP_CACHE_GUARD_METRICS_H_INCLUDED_


#include "ngx_http_cache_guard_types.h"
#include "ngx_http_cache_guard_stats.h"


void ngx_http_cache_guard_metrics_init_worker(ngx_cycle_t *cycle);
char *ngx_http_cache_guard_metrics_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_http_cache_guard_log_handler(ngx_http_request_t *r);


#endif /* _NGX_HTTP_CACHE_GUARD_METRICS_H_INCLUDED_ */
