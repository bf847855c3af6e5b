
/*
 * Copyright (C) nginx-cache-guard authors
 *
 * JSON output helpers: strings (escaped byte by byte) and numbers.
 */


#include "ngx_http_cache_guard_json.h"
#include "ngx_http_cache_guard_codec.h"


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


/* a fraction without the trailing zeros of a fixed width */

u_char *
ngx_http_cache_guard_json_number(u_char *p, double d)
{
    u_char  *last;

    last = ngx_sprintf(p, "%.15f", d);

    while (last[-1] == '0') {
        last--;
    }

    if (last[-1] == '.') {
        last--;
    }

    return last;
}
