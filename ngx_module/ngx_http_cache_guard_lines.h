
/*
 * Copyright (C) nginx-cache-guard authors
 */


/*
 * a stream of bytes split into items, one per line; pure code, unit tested
 * without nginx running
 */


#ifndef _NGX_HTTP_CACHE_GUARD_LINES_H_INCLUDED_
#define _NGX_HTTP_CACHE_GUARD_LINES_H_INCLUDED_


#include "ngx_http_cache_guard_types.h"


/* the longest item (a line without its CR LF) */
#define NGX_HTTP_CACHE_GUARD_LINES_MAX  4096


typedef struct ngx_http_cache_guard_lines_s  ngx_http_cache_guard_lines_t;

typedef ngx_int_t (*ngx_http_cache_guard_line_pt)(
    ngx_http_cache_guard_lines_t *ls, u_char *item, size_t len);

struct ngx_http_cache_guard_lines_s {
    ngx_http_cache_guard_line_pt    handler;
    void                           *data;
    u_char                         *carry;       /* LINES_MAX + 1 bytes */
    size_t                          carry_len;
    ngx_uint_t                      line;        /* the last line seen */
};


/* NGX_OK; NGX_DECLINED: line ls->line is too long; or the handler's error */
ngx_int_t ngx_http_cache_guard_lines_split(ngx_http_cache_guard_lines_t *ls,
    u_char *p, u_char *last);
/* the last line, which may have no LF */
ngx_int_t ngx_http_cache_guard_lines_end(ngx_http_cache_guard_lines_t *ls);


#endif /* _NGX_HTTP_CACHE_GUARD_LINES_H_INCLUDED_ */
