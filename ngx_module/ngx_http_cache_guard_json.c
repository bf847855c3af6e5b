
/*
 * Copyright (C) nginx-cache-guard authors
 *
 * JSON output helpers: strings (escaped byte by byte) and numbers, written
 * at a pointer or into a bounded buffer filled a piece at a time (the
 * metrics and status pages).
 */


#include "ngx_http_cache_guard_json.h"
#include "ngx_http_cache_guard_codec.h"


static u_char *ngx_http_cache_guard_json_trim(u_char *last);


size_t
ngx_http_cache_guard_json_str_len(ngx_str_t *s)
{
    return 2 + s->len + ngx_http_cache_guard_escape_json(NULL, s->data, s->len);
}


/* a JSON string, quoted */

u_char *
ngx_http_cache_guard_json_str(u_char *p, ngx_str_t *s)
{
    *p++ = '"';
    p = (u_char *) ngx_http_cache_guard_escape_json(p, s->data, s->len);
    *p++ = '"';

    return p;
}


u_char *
ngx_http_cache_guard_json_number(u_char *p, double d)
{
    return ngx_http_cache_guard_json_trim(ngx_sprintf(p, "%.15f", d));
}


/* a fraction without the trailing zeros of a fixed width */

static u_char *
ngx_http_cache_guard_json_trim(u_char *last)
{
    while (last[-1] == '0') {
        last--;
    }

    if (last[-1] == '.') {
        last--;
    }

    return last;
}


ngx_int_t
ngx_http_cache_guard_out_init(ngx_pool_t *pool, ngx_http_cache_guard_out_t *o,
    size_t size)
{
    o->start = ngx_pnalloc(pool, size);
    if (o->start == NULL) {
        return NGX_ERROR;
    }

    o->pos = o->start;
    o->end = o->start + size;

    return NGX_OK;
}


void
ngx_http_cache_guard_out(ngx_http_cache_guard_out_t *o, const char *fmt, ...)
{
    va_list  args;

    va_start(args, fmt);
    o->pos = ngx_vslprintf(o->pos, o->end, fmt, args);
    va_end(args);
}


void
ngx_http_cache_guard_out_json(ngx_http_cache_guard_out_t *o, ngx_str_t *s)
{
    if ((size_t) (o->end - o->pos) < 2 + s->len * 6) {
        o->pos = o->end;
        return;
    }

    o->pos = ngx_http_cache_guard_json_str(o->pos, s);
}


void
ngx_http_cache_guard_out_double(ngx_http_cache_guard_out_t *o, double d)
{
    if (o->end - o->pos < 32) {
        o->pos = o->end;
        return;
    }

    o->pos = ngx_http_cache_guard_json_trim(ngx_sprintf(o->pos, "%.6f", d));
}


ngx_uint_t
ngx_http_cache_guard_out_full(ngx_http_cache_guard_out_t *o)
{
    return o->pos == o->end && o->end != o->start;
}
