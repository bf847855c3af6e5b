
/*
 * Copyright (C) nginx-cache-guard authors
 */


/* the admin API */


#ifndef _NGX_HTTP_CACHE_GUARD_ADMIN_H_INCLUDED_
#define _NGX_HTTP_CACHE_GUARD_ADMIN_H_INCLUDED_


#include "ngx_http_cache_guard_types.h"
#include "ngx_http_cache_guard_bloom.h"
#include "ngx_http_cache_guard_breaker.h"


typedef struct ngx_http_cache_guard_admin_body_s
    ngx_http_cache_guard_admin_body_t;

/*
 * Called once the body is split into lines, or was refused: NGX_OK,
 * NGX_DECLINED (line lines.line is bad), NGX_ERROR or the line handler's
 * own code; it answers the request.
 */
typedef void (*ngx_http_cache_guard_admin_body_pt)(ngx_http_request_t *r,
    ngx_http_cache_guard_admin_body_t *ab, ngx_int_t rc);

/* a request body read as it comes and split into lines, never stored */
struct ngx_http_cache_guard_admin_body_s {
    ngx_http_cache_guard_bloom_lines_t  lines;   /* handler, data: set */
    off_t                           limit;       /* bytes */
    off_t                           received;
    const char                     *too_large;   /* "...%O..." the limit */
    ngx_http_cache_guard_admin_body_pt  done;
    ngx_uint_t                      finished;    /* unsigned:1 */
};


char *ngx_http_cache_guard_admin_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_http_cache_guard_admin_error(ngx_http_request_t *r,
    ngx_uint_t status, const char *fmt, ...);
ngx_int_t ngx_http_cache_guard_admin_send(ngx_http_request_t *r,
    ngx_uint_t status, u_char *p, size_t len);
ngx_int_t ngx_http_cache_guard_send_buf(ngx_http_request_t *r,
    ngx_uint_t status, const char *type, u_char *p, size_t len);
ngx_int_t ngx_http_cache_guard_send_body(ngx_http_request_t *r, u_char *p,
    size_t len);
ngx_int_t ngx_http_cache_guard_admin_allow(ngx_http_request_t *r,
    const char *methods);
ngx_int_t ngx_http_cache_guard_admin_read_body(ngx_http_request_t *r,
    ngx_http_cache_guard_admin_body_t *ab);

u_char *ngx_http_cache_guard_breaker_json(u_char *p,
    ngx_http_cache_guard_record_t *rec,
    ngx_http_cache_guard_breaker_conf_t *bc);


#endif /* _NGX_HTTP_CACHE_GUARD_ADMIN_H_INCLUDED_ */
