
/*
 * Copyright (C) nginx-cache-guard authors
 */


/* the Prometheus exposition: cache_guard_metrics */


#ifndef _NGX_HTTP_CACHE_GUARD_PROMETHEUS_H_INCLUDED_
#define _NGX_HTTP_CACHE_GUARD_PROMETHEUS_H_INCLUDED_


#include "ngx_http_cache_guard_types.h"


char *ngx_http_cache_guard_prometheus_conf(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);


#endif /* _NGX_HTTP_CACHE_GUARD_PROMETHEUS_H_INCLUDED_ */
