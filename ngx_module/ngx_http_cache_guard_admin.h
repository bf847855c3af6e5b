
/*
 * Copyright (C) nginx-cache-guard authors
 */


/* the admin API */


#ifndef _NGX_HTTP_CACHE_GUARD_ADMIN_H_INCLUDED_
#define _NGX_HTTP_CACHE_GUARD_ADMIN_H_INCLUDED_


#include "ngx_http_cache_guard_types.h"
#include "ngx_http_cache_guard_bloom.h"
#include "ngx_http_cache_guard_breaker.h"


char *ngx_http_cache_guard_admin_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);


#endif /* _NGX_HTTP_CACHE_GUARD_ADMIN_H_INCLUDED_ */
