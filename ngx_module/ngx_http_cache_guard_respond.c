
/*
 * Copyright (C) nginx-cache-guard authors
 *
 * Answers from memory: a status, a type and a body in one buffer, for the
 * request flow's own answers and for every page the operations serve.
 */


#include "ngx_http_cache_guard_respond.h"


/* one answer from memory, for the admin API, the metrics and the status */

ngx_int_t
ngx_http_cache_guard_send_buf(ngx_http_request_t *r, ngx_uint_t status,
    const char *type, u_char *p, size_t len)
{
    ngx_int_t  rc;

    /* a no-op once the body was read */

    rc = ngx_http_discard_request_body(r);

    if (rc != NGX_OK) {
        return rc;
    }

    r->headers_out.status = status;
    r->headers_out.content_length_n = len;

    r->headers_out.content_type.data = (u_char *) type;
    r->headers_out.content_type.len = ngx_strlen(type);
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = NULL;

    return ngx_http_cache_guard_send_body(r, p, len);
}


/* the header as it is set, then the body from memory, in one buffer */

ngx_int_t
ngx_http_cache_guard_send_body(ngx_http_request_t *r, u_char *p, size_t len)
{
    ngx_int_t     rc;
    ngx_buf_t    *b;
    ngx_chain_t   out;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_ERROR;
    }

    b->pos = p;
    b->last = p + len;
    b->memory = 1;
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}
