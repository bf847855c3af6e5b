
/*
 * Copyright (C) nginx-cache-guard authors
 */


/* the client's country from a MaxMind database */


#ifndef _NGX_HTTP_CACHE_GUARD_GEO_H_INCLUDED_
#define _NGX_HTTP_CACHE_GUARD_GEO_H_INCLUDED_


#include "ngx_http_cache_guard_types.h"


typedef struct {
    ngx_str_t                       country;      /* ISO code, or empty */
    ngx_str_t                       continent;    /* code, or empty */
    ngx_uint_t                      asn;          /* 0: unknown */
    ngx_str_t                       asn_org;
} ngx_http_cache_guard_geo_t;

char *ngx_http_cache_guard_geoip_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
/*
 * NGX_OK and *out filled; NGX_DECLINED: no database or address unknown;
 * NGX_ERROR: no memory
 */
ngx_int_t ngx_http_cache_guard_geo_lookup(ngx_http_request_t *r,
    ngx_http_cache_guard_geo_t *out);


#endif /* _NGX_HTTP_CACHE_GUARD_GEO_H_INCLUDED_ */
