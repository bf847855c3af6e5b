
/*
 * Copyright (C) nginx-cache-guard authors
 *
 * The request flow's answers: a hit or a stale copy from its entry, the
 * fallback, a refusal's JSON error, nothing (a refresh); and answers from
 * memory (a status, a type and a body in one buffer) for them and for
 * every page the operations serve.  The flow picks one by setting the
 * content handler (ngx_http_cache_guard_answer in the header).
 */


#include "ngx_http_cache_guard_respond.h"
#include "ngx_http_cache_guard_codec.h"


static ngx_int_t ngx_http_cache_guard_send_fallback(ngx_http_request_t *r);
static ngx_int_t ngx_http_cache_guard_send_reject(ngx_http_request_t *r);
static ngx_int_t ngx_http_cache_guard_hit_header(ngx_http_request_t *r,
    ngx_str_t *name, ngx_str_t *value);


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


ngx_int_t
ngx_http_cache_guard_fallback(ngx_http_request_t *r,
    ngx_http_cache_guard_ctx_t *ctx)
{
    ctx->status = NGX_HTTP_CACHE_GUARD_FALLBACK;
    ctx->level = NGX_HTTP_CACHE_GUARD_LEVEL_NONE;
    ctx->state = NGX_HTTP_CACHE_GUARD_S_DONE;

    ngx_http_cache_guard_answer(r, ctx, ngx_http_cache_guard_send_fallback);

    return NGX_DECLINED;
}


static ngx_int_t
ngx_http_cache_guard_send_fallback(ngx_http_request_t *r)
{
    ngx_table_elt_t                *h;
    ngx_http_cache_guard_ctx_t     *ctx;
    ngx_http_cache_guard_policy_t  *pl;

    static u_char  body[] = "{\"error\": \"the origin is not available, "
                            "retry later\"}\n";

    ctx = ngx_http_get_module_ctx(r, ngx_http_cache_guard_module);
    pl = ctx->policy;

    if (pl->retry_after) {
        h = ngx_list_push(&r->headers_out.headers);
        if (h == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        h->value.data = ngx_pnalloc(r->pool, NGX_TIME_T_LEN);
        if (h->value.data == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        h->hash = 1;
        ngx_str_set(&h->key, "Retry-After");
        h->value.len = ngx_sprintf(h->value.data, "%T", pl->retry_after)
                       - h->value.data;
    }

    return ngx_http_cache_guard_send_buf(r, pl->fallback_status,
                                         "application/json", body,
                                         sizeof(body) - 1);
}


/* a hit or a stale copy: ctx->entry */

ngx_int_t
ngx_http_cache_guard_send_hit(ngx_http_request_t *r)
{
    u_char                        *p;
    time_t                         age;
    ngx_int_t                      rc;
    ngx_str_t                      name, value;
    ngx_table_elt_t               *h;
    ngx_http_cache_guard_ctx_t    *ctx;
    ngx_http_cache_guard_entry_t  *e;

    ctx = ngx_http_get_module_ctx(r, ngx_http_cache_guard_module);
    e = &ctx->entry;

    rc = ngx_http_discard_request_body(r);

    if (rc != NGX_OK) {
        return rc;
    }

    r->headers_out.status = e->status;
    r->headers_out.content_length_n = e->body.len;

    while (ngx_http_cache_guard_entry_next_header(e, &name, &value)
           == NGX_OK)
    {
        if (ngx_http_cache_guard_hit_header(r, &name, &value) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    age = ngx_time() - (time_t) (e->created / 1000);

    h->hash = 1;
    ngx_str_set(&h->key, "Age");

    /* ngx_sprintf() costs more than the rest of this header's work */

    if (age <= 0) {
        ngx_str_set(&h->value, "0");

    } else {
        h->value.data = ngx_pnalloc(r->pool, NGX_TIME_T_LEN);
        if (h->value.data == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        p = h->value.data + NGX_TIME_T_LEN;

        do {
            *--p = (u_char) ('0' + age % 10);
            age /= 10;
        } while (age);

        h->value.len = h->value.data + NGX_TIME_T_LEN - p;
        h->value.data = p;
    }

    if (e->status == NGX_HTTP_OK) {
        r->allow_ranges = 1;
    }

    if (e->body.len == 0) {
        r->header_only = 1;
    }

    return ngx_http_cache_guard_send_body(r, e->body.data, e->body.len);
}


/* headers with a field of their own in headers_out, for nginx's filters */

static ngx_int_t
ngx_http_cache_guard_hit_header(ngx_http_request_t *r, ngx_str_t *name,
    ngx_str_t *value)
{
    ngx_table_elt_t  *h;

    if (name->len == sizeof("Content-Type") - 1
        && ngx_strncasecmp(name->data, (u_char *) "Content-Type",
                           name->len) == 0)
    {
        r->headers_out.content_type = *value;
        r->headers_out.content_type_len = value->len;
        r->headers_out.content_type_lowcase = NULL;
        return NGX_OK;
    }

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    h->key = *name;
    h->value = *value;

    switch (name->len) {

    case sizeof("ETag") - 1:
        if (ngx_strncasecmp(name->data, (u_char *) "ETag", 4) == 0) {
            r->headers_out.etag = h;
        }
        break;

    case sizeof("Location") - 1:
        if (ngx_strncasecmp(name->data, (u_char *) "Location", 8) == 0) {
            r->headers_out.location = h;
        }
        break;

    case sizeof("Last-Modified") - 1:
        if (ngx_strncasecmp(name->data, (u_char *) "Last-Modified", 13) == 0) {
            r->headers_out.last_modified = h;
            r->headers_out.last_modified_time = ngx_parse_http_time(
                                                 value->data, value->len);
        }
        break;

    case sizeof("Content-Encoding") - 1:
        if (ngx_strncasecmp(name->data, (u_char *) "Content-Encoding", 16)
            == 0)
        {
            r->headers_out.content_encoding = h;
        }
        break;
    }

    return NGX_OK;
}


/* the stale copy, with the status given */

ngx_int_t
ngx_http_cache_guard_serve_stale(ngx_http_request_t *r,
    ngx_http_cache_guard_ctx_t *ctx, ngx_uint_t status)
{
    ctx->entry = ctx->stale;
    ctx->status = status;
    ctx->state = NGX_HTTP_CACHE_GUARD_S_DONE;

    ngx_http_cache_guard_answer(r, ctx, ngx_http_cache_guard_send_hit);

    return NGX_DECLINED;
}


/* the fill failed: a stale copy within stale.if_error, else the fallback */

ngx_int_t
ngx_http_cache_guard_stale_or_fallback(ngx_http_request_t *r,
    ngx_http_cache_guard_ctx_t *ctx)
{
    if (ngx_http_cache_guard_stale_on_error(ctx)) {
        return ngx_http_cache_guard_serve_stale(r, ctx,
                                                NGX_HTTP_CACHE_GUARD_STALE);
    }

    return ngx_http_cache_guard_fallback(r, ctx);
}


/*
 * Called by the header filter: the filler's own origin answered with an
 * error, and a stale copy within stale.if_error replaces the answer.  The
 * origin's body that follows is swallowed by the body filter.
 */

ngx_int_t
ngx_http_cache_guard_stale_if_error(ngx_http_request_t *r,
    ngx_http_cache_guard_ctx_t *ctx)
{
    ngx_int_t  rc;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "cache guard: origin answered %ui, serving stale",
                   r->headers_out.status);

    ngx_http_clean_header(r);

    /* a special response (nginx's own 502 or 504) sets it; ours wins */
    r->err_status = 0;

    ctx->entry = ctx->stale;
    ctx->status = NGX_HTTP_CACHE_GUARD_STALE;

    rc = ngx_http_cache_guard_send_hit(r);

    if (!r->header_sent) {
        /* nothing went out: the request ends as an error */
        return NGX_ERROR;
    }

    /* what follows of the origin's answer is swallowed */

    ctx->swallow = 1;

    return (rc == NGX_OK || rc == NGX_AGAIN) ? NGX_OK : NGX_ERROR;
}


/* a refresh that found nothing to do */

ngx_int_t
ngx_http_cache_guard_send_nothing(ngx_http_request_t *r)
{
    return NGX_OK;
}


/*
 * The JSON error answer: ctx->reject_code with {"error": "..."}.  The
 * request is done as far as the cache is concerned.  Returns NGX_DECLINED
 * for the phase handlers that call it.
 */

ngx_int_t
ngx_http_cache_guard_reject(ngx_http_request_t *r,
    ngx_http_cache_guard_ctx_t *ctx, ngx_uint_t cg_status, ngx_uint_t status,
    const char *fmt, ...)
{
    u_char     *p, buf[1024];
    va_list     args;
    ngx_str_t   msg;

    va_start(args, fmt);
    p = ngx_vslprintf(buf, buf + sizeof(buf), fmt, args);
    va_end(args);

    msg.len = p - buf;
    msg.data = ngx_pnalloc(r->pool, msg.len);

    if (msg.data == NULL) {
        msg.len = 0;

    } else {
        ngx_memcpy(msg.data, buf, msg.len);
    }

    ngx_http_cache_guard_reject_str(r, ctx, cg_status, status, &msg);

    /* it may hold what a hook returned */
    ctx->reject_escape = 1;

    return NGX_DECLINED;
}


/*
 * The same with a constant message that needs no JSON escaping: no
 * formatting, no copy, no escaping (a Bloom rejection is a hot path).
 */

ngx_int_t
ngx_http_cache_guard_reject_str(ngx_http_request_t *r,
    ngx_http_cache_guard_ctx_t *ctx, ngx_uint_t cg_status, ngx_uint_t status,
    ngx_str_t *msg)
{
    ctx->reject_msg = *msg;
    ctx->status = cg_status;
    ctx->reject_code = status;
    ctx->state = NGX_HTTP_CACHE_GUARD_S_DONE;

    ngx_http_cache_guard_answer(r, ctx, ngx_http_cache_guard_send_reject);

    return NGX_DECLINED;
}


/* a hook failed (logged, counted) and on_hook_error is "reject" */

ngx_int_t
ngx_http_cache_guard_reject_hook(ngx_http_request_t *r,
    ngx_http_cache_guard_ctx_t *ctx)
{
    static ngx_str_t  msg = ngx_string("policy error");

    return ngx_http_cache_guard_reject_str(r, ctx,
                                           NGX_HTTP_CACHE_GUARD_INVALID,
                                           NGX_HTTP_INTERNAL_SERVER_ERROR,
                                           &msg);
}


static ngx_int_t
ngx_http_cache_guard_send_reject(ngx_http_request_t *r)
{
    size_t                       len;
    u_char                      *p, *start;
    ngx_http_cache_guard_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_cache_guard_module);

    len = sizeof("{\"error\": \"\"}\n") - 1 + ctx->reject_msg.len;

    if (ctx->reject_escape) {
        len += ngx_http_cache_guard_escape_json(NULL, ctx->reject_msg.data,
                                                ctx->reject_msg.len);
    }

    start = ngx_pnalloc(r->pool, len);
    if (start == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_cpymem(start, "{\"error\": \"", sizeof("{\"error\": \"") - 1);
    p = ctx->reject_escape
        ? (u_char *) ngx_http_cache_guard_escape_json(p,
                                                      ctx->reject_msg.data,
                                                      ctx->reject_msg.len)
        : ngx_cpymem(p, ctx->reject_msg.data, ctx->reject_msg.len);
    p = ngx_cpymem(p, "\"}\n", sizeof("\"}\n") - 1);

    return ngx_http_cache_guard_send_buf(r, ctx->reject_code,
                                         "application/json", start,
                                         p - start);
}
