
/*
 * Copyright (C) nginx-cache-guard authors
 *
 * The line splitter: a stream of bytes (a file, a request body) as it
 * comes, cut into items one per line, each passed to a handler; a line
 * cut between two buffers is carried over.  A CR before the LF and empty
 * lines are dropped.  Used by the Bloom filters' files and the admin API's
 * bodies (items to add, URIs to warm).
 */


#include "ngx_http_cache_guard_lines.h"


static ngx_int_t ngx_http_cache_guard_lines_item(
    ngx_http_cache_guard_lines_t *ls, u_char *p, size_t len);


ngx_int_t
ngx_http_cache_guard_lines_split(ngx_http_cache_guard_lines_t *ls, u_char *p,
    u_char *last)
{
    u_char     *lf;
    size_t      n;
    ngx_int_t   rc;

    while (p < last) {
        lf = ngx_strlchr(p, last, LF);

        n = (lf ? lf : last) - p;

        /* one byte more than an item: its CR may follow */

        if (ls->carry_len + n > NGX_HTTP_CACHE_GUARD_LINES_MAX + 1) {
            ls->line++;
            return NGX_DECLINED;
        }

        if (lf == NULL) {
            ngx_memcpy(ls->carry + ls->carry_len, p, n);
            ls->carry_len += n;
            return NGX_OK;
        }

        ls->line++;

        if (ls->carry_len) {
            ngx_memcpy(ls->carry + ls->carry_len, p, n);
            rc = ngx_http_cache_guard_lines_item(ls, ls->carry,
                                                 ls->carry_len + n);
            ls->carry_len = 0;

        } else {
            rc = ngx_http_cache_guard_lines_item(ls, p, n);
        }

        if (rc != NGX_OK) {
            return rc;
        }

        p = lf + 1;
    }

    return NGX_OK;
}


ngx_int_t
ngx_http_cache_guard_lines_end(ngx_http_cache_guard_lines_t *ls)
{
    ngx_int_t  rc;

    /* the last line may have no LF */

    if (ls->carry_len == 0) {
        return NGX_OK;
    }

    ls->line++;

    rc = ngx_http_cache_guard_lines_item(ls, ls->carry, ls->carry_len);
    ls->carry_len = 0;

    return rc;
}


static ngx_int_t
ngx_http_cache_guard_lines_item(ngx_http_cache_guard_lines_t *ls, u_char *p,
    size_t len)
{
    if (len && p[len - 1] == CR) {
        len--;
    }

    if (len == 0) {
        return NGX_OK;
    }

    if (len > NGX_HTTP_CACHE_GUARD_LINES_MAX) {
        return NGX_DECLINED;
    }

    return ls->handler(ls, p, len);
}
