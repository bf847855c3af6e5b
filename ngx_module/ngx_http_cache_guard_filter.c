
/*
 * Copyright (C) nginx-cache-guard authors
 *
 * Capture: the header filter decides whether the filler's response may be
 * stored and keeps its headers; the body filter copies the body and, at
 * the last buffer, hands the response to the store.  They run before
 * gzip, range and the other output filters, so what is stored is the
 * origin's response, and hits go through those filters again.
 */


#include "ngx_http_cache_guard_filter.h"
#include "ngx_http_cache_guard_breaker.h"
#include "ngx_http_cache_guard_ctx.h"
#include "ngx_http_cache_guard_lock.h"
#include "ngx_http_cache_guard_respond.h"
#include "ngx_http_cache_guard_policy.h"
#include "ngx_http_cache_guard_store.h"


static ngx_int_t ngx_http_cache_guard_header_filter(ngx_http_request_t *r);
static void ngx_http_cache_guard_origin_answered(ngx_http_request_t *r,
    ngx_http_cache_guard_ctx_t *ctx);
static ngx_int_t ngx_http_cache_guard_capture(ngx_http_request_t *r,
    ngx_http_cache_guard_ctx_t *ctx);
static ngx_int_t ngx_http_cache_guard_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in);
static ngx_int_t ngx_http_cache_guard_cacheable(ngx_http_request_t *r,
    ngx_http_cache_guard_ctx_t *ctx);
static ngx_int_t ngx_http_cache_guard_append(ngx_http_request_t *r,
    ngx_http_cache_guard_ctx_t *ctx, u_char *p, size_t len);
static ngx_int_t ngx_http_cache_guard_keep_fields(ngx_http_request_t *r,
    ngx_http_cache_guard_ctx_t *ctx);
static const char *ngx_http_cache_guard_refused(
    ngx_http_cache_guard_ctx_t *ctx, ngx_table_elt_t *h);
static ngx_uint_t ngx_http_cache_guard_has_token(ngx_str_t *value,
    const char *token);
static ngx_uint_t ngx_http_cache_guard_vary_ok(ngx_str_t *value);
static ngx_uint_t ngx_http_cache_guard_not_modified(ngx_http_request_t *r);
static void ngx_http_cache_guard_consume(ngx_chain_t *in);
static ngx_int_t ngx_http_cache_guard_headonly(ngx_http_request_t *r,
    ngx_http_cache_guard_ctx_t *ctx, ngx_chain_t *in);


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;
static ngx_http_output_body_filter_pt    ngx_http_next_body_filter;

static ngx_str_t  ngx_http_cache_guard_head = ngx_string("HEAD");
static ngx_str_t  ngx_http_cache_guard_get = ngx_string("GET");


/* not stored: hop-by-hop, recomputed on a hit, or per response */

static ngx_str_t  ngx_http_cache_guard_skip_headers[] = {
    ngx_string("Connection"),
    ngx_string("Keep-Alive"),
    ngx_string("Proxy-Authenticate"),
    ngx_string("Proxy-Connection"),
    ngx_string("Trailer"),
    ngx_string("Transfer-Encoding"),
    ngx_string("Upgrade"),
    ngx_string("Content-Length"),
    ngx_string("Date"),
    ngx_string("Server"),
    ngx_string("Age"),
    ngx_string("X-Accel-Redirect"),
    ngx_string("X-Accel-Expires"),
    ngx_string("X-Accel-Buffering"),
    ngx_string("X-Accel-Charset"),
    ngx_string("X-Accel-Limit-Rate"),
    ngx_null_string
};


ngx_int_t
ngx_http_cache_guard_filter_init(ngx_conf_t *cf)
{
    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_http_cache_guard_header_filter;

    ngx_http_next_body_filter = ngx_http_top_body_filter;
    ngx_http_top_body_filter = ngx_http_cache_guard_body_filter;

    return NGX_OK;
}


/*
 * A refresh subrequest's response is captured and goes no further: it is
 * for the cache, not for the client.
 */

static ngx_int_t
ngx_http_cache_guard_header_filter(ngx_http_request_t *r)
{
    ngx_int_t                    rc;
    ngx_http_cache_guard_ctx_t  *ctx;

    ctx = ngx_http_cache_guard_find_ctx(r);

    if (ctx == NULL || (r != r->main && !ctx->quiet)) {
        return ngx_http_next_header_filter(r);
    }

    if (ctx->to_origin && ctx->request == r) {
        ctx->to_origin = 0;

        ngx_http_cache_guard_origin_answered(r, ctx);

        /* a fill, or a HEAD or a lock time-out sent to the origin */

        if (r == r->main
            && r->headers_out.status >= NGX_HTTP_INTERNAL_SERVER_ERROR
            && ngx_http_cache_guard_stale_on_error(ctx))
        {
            ctx->fill = 0;
            ngx_http_cache_guard_fill_end(ctx,
                                          NGX_HTTP_CACHE_GUARD_FILL_FAILED);
            return ngx_http_cache_guard_stale_if_error(r, ctx);
        }
    }

    if (!ctx->fill) {
        /* a pass-through: its origin slot is free once it answers */

        if (ctx->counted || ctx->node_locked || ctx->redis_locked) {
            ngx_http_cache_guard_fill_end(ctx,
                                          NGX_HTTP_CACHE_GUARD_FILL_RETRY);
        }

        goto next;
    }

    ctx->fill = 0;

    rc = ngx_http_cache_guard_cacheable(r, ctx);

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (rc != NGX_OK) {
        /*
         * An error answers the waiters with a stale copy or the fallback;
         * a 304 or 206 (the filler's own conditional or range request)
         * says nothing of the entry: one of them fills again.
         */

        ngx_http_cache_guard_fill_end(ctx,
            r->headers_out.status >= 500 ? NGX_HTTP_CACHE_GUARD_FILL_FAILED
            : (r->headers_out.status == NGX_HTTP_NOT_MODIFIED
               || r->headers_out.status == NGX_HTTP_PARTIAL_CONTENT)
              ? NGX_HTTP_CACHE_GUARD_FILL_RETRY
              : NGX_HTTP_CACHE_GUARD_FILL_PASS);
        goto next;
    }

    if (ngx_http_cache_guard_capture(r, ctx) != NGX_OK) {
        return NGX_ERROR;
    }

next:

    if (ctx->quiet) {
        return NGX_OK;
    }

    if (r != ctx->request || !(ctx->head || ctx->capture)) {
        return ngx_http_next_header_filter(r);
    }

    /* a HEAD filled with a GET: the client's answer is a HEAD's */

    if (ctx->head) {
        r->method = NGX_HTTP_HEAD;
        r->method_name = ngx_http_cache_guard_head;
    }

    rc = ngx_http_next_header_filter(r);

    if (ctx->capture && r->header_only) {
        /*
         * A HEAD, or a 304 from the client's conditional: no body goes to
         * the client, but the upstream must read it for the store (it
         * stops after the header of a header-only answer); the body
         * filter keeps it from the client.
         */

        r->header_only = 0;
        ctx->headonly = 1;

        if (ctx->head) {
            r->method = NGX_HTTP_GET;
            r->method_name = ngx_http_cache_guard_get;
        }
    }

    return rc;
}


/* the origin's answer (nginx's own 502 or 504 included), for the breaker */

static void
ngx_http_cache_guard_origin_answered(ngx_http_request_t *r,
    ngx_http_cache_guard_ctx_t *ctx)
{
    ngx_uint_t                  failed, status;
    ngx_http_upstream_state_t  *us;

    /*
     * the upstream's own status, if there was one: error_page may
     * have replaced what is sent (error_page 502 =200 /maintenance)
     */

    status = r->headers_out.status;

    if (r->upstream_states && r->upstream_states->nelts) {
        us = r->upstream_states->elts;
        us += r->upstream_states->nelts - 1;

        if (us->status) {
            status = us->status;
        }
    }

    /*
     * nginx's own 502 for an answer the origin did give (a header too
     * big for proxy_buffer_size, say) depends on the request, not on
     * the origin's health: a client could trip the breaker with it
     */

    if (status == NGX_HTTP_BAD_GATEWAY && r->upstream
        && r->upstream->headers_in.status_n
        && r->upstream->headers_in.status_n < NGX_HTTP_INTERNAL_SERVER_ERROR
        && r->upstream->buffer.start
        && r->upstream->buffer.last == r->upstream->buffer.end)
    {
        /* nginx's own test for "upstream sent too big header" */
        status = r->upstream->headers_in.status_n;
    }

    failed = ngx_http_cache_guard_breaker_counts(&ctx->policy->breaker,
                                                 status);

    if (failed && ctx->policy->rec) {
        (void) ngx_atomic_fetch_add(&ctx->policy->rec->m.origin_errors, 1);
    }

    ngx_http_cache_guard_breaker_record(ctx->policy->rec,
                                        &ctx->policy->breaker, failed,
                                        r->connection->log);
}


/* the response is stored: its body is copied as it goes by */

static ngx_int_t
ngx_http_cache_guard_capture(ngx_http_request_t *r,
    ngx_http_cache_guard_ctx_t *ctx)
{
    off_t  len;

    len = r->headers_out.content_length_n;

    ctx->body = ngx_create_temp_buf(r->pool, len > 0 ? (size_t) len : 4096);
    if (ctx->body == NULL) {
        return NGX_ERROR;
    }

    ctx->capture = 1;
    ctx->fill_status = r->headers_out.status;

    /* the copy filter reads file buffers into memory for us */
    r->filter_need_in_memory = 1;

    /*
     * The fill asked the origin for the whole entity (fill_request).  The
     * range body filter runs before ours and would cut what is stored, so
     * the filler's own client gets the whole entity, as from proxy_cache
     * on a miss; its waiters' ranges are cut from the entry.  Its
     * condition is answered here: nginx's not-modified filter ran before
     * ours, disabled for an upstream response.
     */

    r->allow_ranges = 0;

    if (r == r->main && r->headers_out.status == NGX_HTTP_OK) {

        if (ngx_http_cache_guard_not_modified(r)) {
            r->headers_out.status = NGX_HTTP_NOT_MODIFIED;
            r->headers_out.status_line.len = 0;
            r->headers_out.content_type.len = 0;
            ngx_http_clear_content_length(r);
            ngx_http_clear_accept_ranges(r);

            if (r->headers_out.content_encoding) {
                r->headers_out.content_encoding->hash = 0;
                r->headers_out.content_encoding = NULL;
            }
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_cache_guard_body_filter(ngx_http_request_t *r, ngx_chain_t *in)
{
    ngx_buf_t                   *b;
    ngx_chain_t                 *cl;
    ngx_http_cache_guard_ctx_t  *ctx;

    ctx = ngx_http_cache_guard_find_ctx(r);

    if (ctx == NULL
        || (!ctx->capture && !ctx->quiet && !ctx->swallow && !ctx->headonly))
    {
        return ngx_http_next_body_filter(r, in);
    }

    if (ctx->swallow && r == ctx->request) {
        /* the origin's error body, replaced by a stale copy */

        for (cl = in; cl; cl = cl->next) {
            cl->buf->pos = cl->buf->last;
            cl->buf->file_pos = cl->buf->file_last;
        }

        /* what the client has not taken yet of the stale copy */
        return ngx_http_next_body_filter(r, NULL);
    }

    for (cl = in; cl && ctx->capture; cl = cl->next) {
        b = cl->buf;

        if (b->in_file && !ngx_buf_in_memory(b)) {
            ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                           "cache guard: body in a file, not stored");
            ctx->capture = 0;
            ngx_http_cache_guard_fill_end(ctx, NGX_HTTP_CACHE_GUARD_FILL_PASS);
            break;
        }

        if (ngx_buf_in_memory(b) && b->last > b->pos
            && ngx_http_cache_guard_append(r, ctx, b->pos, b->last - b->pos)
               != NGX_OK)
        {
            ctx->capture = 0;
            ngx_http_cache_guard_fill_end(ctx, NGX_HTTP_CACHE_GUARD_FILL_PASS);
            break;
        }

        /* a subrequest's last buffer is last_in_chain, not last_buf */

        if (r == r->main ? b->last_buf : b->last_in_chain) {
            ctx->capture = 0;
            ngx_http_cache_guard_store(r, ctx);

            /* waiters told "stored" look again: it must be there */
            ngx_http_cache_guard_fill_end(ctx,
                                          ctx->stored
                                          ? NGX_HTTP_CACHE_GUARD_FILL_STORED
                                          : NGX_HTTP_CACHE_GUARD_FILL_PASS);
            break;
        }
    }

    if (ctx->headonly && r == ctx->request) {
        return ngx_http_cache_guard_headonly(r, ctx, in);
    }

    if (!ctx->quiet) {
        return ngx_http_next_body_filter(r, in);
    }

    ngx_http_cache_guard_consume(in);

    return NGX_OK;
}


/* consumed, so that the upstream can reuse its buffers */

static void
ngx_http_cache_guard_consume(ngx_chain_t *in)
{
    ngx_chain_t  *cl;

    for (cl = in; cl; cl = cl->next) {
        cl->buf->pos = cl->buf->last;
        cl->buf->file_pos = cl->buf->file_last;
    }
}


/* a header-only answer whose body was read for the store: only its end */

static ngx_int_t
ngx_http_cache_guard_headonly(ngx_http_request_t *r,
    ngx_http_cache_guard_ctx_t *ctx, ngx_chain_t *in)
{
    ngx_buf_t    *b;
    ngx_chain_t  *cl, out;

    for (cl = in; cl; cl = cl->next) {
        if (cl->buf->last_buf) {
            break;
        }
    }

    ngx_http_cache_guard_consume(in);

    if (cl == NULL) {
        if (ctx->capture) {
            return NGX_OK;
        }

        /*
         * Not stored after all (over max_entry_size): the rest of the
         * body is of no use, and the client's answer is complete.  An
         * error ends the upstream instead of reading it to its end.
         */

        r->header_only = 1;
        return NGX_ERROR;
    }

    ctx->headonly = 0;

    if (ctx->head) {
        /* for the log */
        r->method = NGX_HTTP_HEAD;
        r->method_name = ngx_http_cache_guard_head;
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_ERROR;
    }

    b->last_buf = 1;

    out.buf = b;
    out.next = NULL;

    /* the filters after ours (gzip, addition) saw a header-only answer */
    r->header_only = 1;

    return ngx_http_next_body_filter(r, &out);
}


static ngx_int_t
ngx_http_cache_guard_append(ngx_http_request_t *r,
    ngx_http_cache_guard_ctx_t *ctx, u_char *p, size_t len)
{
    size_t      size, used;
    ngx_buf_t  *b;

    b = ctx->body;
    used = b->last - b->pos;

    if (used + len > ctx->policy->max_entry_size) {
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "cache guard: body over max_entry_size %uz, "
                       "not stored", ctx->policy->max_entry_size);
        return NGX_DECLINED;
    }

    if ((size_t) (b->end - b->last) < len) {
        size = ngx_max(2 * (size_t) (b->end - b->start), used + len);
        size = ngx_min(size, ctx->policy->max_entry_size);

        b = ngx_create_temp_buf(r->pool, size);
        if (b == NULL) {
            return NGX_ERROR;
        }

        b->last = ngx_cpymem(b->pos, ctx->body->pos, used);
        ngx_pfree(r->pool, ctx->body->start);
        ctx->body = b;
    }

    b->last = ngx_cpymem(b->last, p, len);

    return NGX_OK;
}


/*
 * Whether the response may be shared and stored, and its headers to
 * store, in one pass over them: NGX_OK, NGX_DECLINED or NGX_ERROR.
 */

static ngx_int_t
ngx_http_cache_guard_cacheable(ngx_http_request_t *r,
    ngx_http_cache_guard_ctx_t *ctx)
{
    ngx_str_t                       *skip;
    ngx_uint_t                       i;
    const char                      *why;
    ngx_keyval_t                    *kv;
    ngx_list_part_t                 *part;
    ngx_table_elt_t                 *h;
    ngx_http_cache_guard_policy_t   *pl;

    pl = ctx->policy;
    why = NULL;

    if (r->method != NGX_HTTP_GET || r->headers_in.authorization) {
        why = "method or authorization";
        goto no;
    }

    if (!ngx_http_cache_guard_policy_has_status(pl->cache_statuses,
                                                pl->ncache,
                                                r->headers_out.status))
    {
        why = "status";
        goto no;
    }

    if (r->headers_out.content_length_n > (off_t) pl->max_entry_size) {
        why = "content length over max_entry_size";
        goto no;
    }

    if (ngx_array_init(&ctx->headers, r->pool, 8, sizeof(ngx_keyval_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (ngx_http_cache_guard_keep_fields(r, ctx) != NGX_OK) {
        return NGX_ERROR;
    }

    part = &r->headers_out.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].hash == 0) {
            continue;
        }

        why = ngx_http_cache_guard_refused(ctx, &h[i]);

        if (why) {
            goto no;
        }

        for (skip = ngx_http_cache_guard_skip_headers; skip->len; skip++) {
            if (skip->len == h[i].key.len
                && ngx_strncasecmp(skip->data, h[i].key.data, skip->len) == 0)
            {
                break;
            }
        }

        if (skip->len) {
            continue;
        }

        if (ctx->headers.nelts >= NGX_HTTP_CACHE_GUARD_ENTRY_MAX_HDRS) {
            why = "too many headers";
            goto no;
        }

        kv = ngx_array_push(&ctx->headers);
        if (kv == NULL) {
            return NGX_ERROR;
        }

        kv->key = h[i].key;
        kv->value = h[i].value;
    }

    return NGX_OK;

no:

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "cache guard: status %ui response not stored: %s",
                   r->headers_out.status, why);

    return NGX_DECLINED;
}


/* the headers nginx keeps in fields of their own, not in the list */

static ngx_int_t
ngx_http_cache_guard_keep_fields(ngx_http_request_t *r,
    ngx_http_cache_guard_ctx_t *ctx)
{
    u_char        *p;
    ngx_keyval_t  *kv;

    if (r->headers_out.content_type.len) {
        kv = ngx_array_push(&ctx->headers);
        if (kv == NULL) {
            return NGX_ERROR;
        }

        ngx_str_set(&kv->key, "Content-Type");
        kv->value = r->headers_out.content_type;

        if (r->headers_out.content_type_len == r->headers_out.content_type.len
            && r->headers_out.charset.len)
        {
            kv->value.len = r->headers_out.content_type.len
                            + sizeof("; charset=") - 1
                            + r->headers_out.charset.len;

            p = ngx_pnalloc(r->pool, kv->value.len);
            if (p == NULL) {
                return NGX_ERROR;
            }

            kv->value.data = p;
            p = ngx_cpymem(p, r->headers_out.content_type.data,
                           r->headers_out.content_type.len);
            p = ngx_cpymem(p, "; charset=", sizeof("; charset=") - 1);
            ngx_memcpy(p, r->headers_out.charset.data,
                       r->headers_out.charset.len);
        }
    }

    if (r->headers_out.last_modified == NULL
        && r->headers_out.last_modified_time != -1)
    {
        kv = ngx_array_push(&ctx->headers);
        if (kv == NULL) {
            return NGX_ERROR;
        }

        p = ngx_pnalloc(r->pool, sizeof("Mon, 28 Sep 1970 06:00:00 GMT") - 1);
        if (p == NULL) {
            return NGX_ERROR;
        }

        ngx_str_set(&kv->key, "Last-Modified");
        kv->value.data = p;
        kv->value.len = ngx_http_time(p, r->headers_out.last_modified_time)
                        - p;
    }

    return NGX_OK;
}


/* a header that keeps the response from being stored: why, or NULL */

static const char *
ngx_http_cache_guard_refused(ngx_http_cache_guard_ctx_t *ctx,
    ngx_table_elt_t *h)
{
    ngx_str_t  *name;

    name = &h->key;

    if (name->len == sizeof("Set-Cookie") - 1
        && ngx_strncasecmp(name->data, (u_char *) "Set-Cookie", name->len)
           == 0)
    {
        return "Set-Cookie";
    }

    if (name->len == sizeof("Cache-Control") - 1
        && ngx_strncasecmp(name->data, (u_char *) "Cache-Control",
                           name->len) == 0
        && (ngx_http_cache_guard_has_token(&h->value, "private")
            || ngx_http_cache_guard_has_token(&h->value, "no-store")
            || ngx_http_cache_guard_has_token(&h->value, "no-cache")))
    {
        return "Cache-Control";
    }

    /* the key varies on Accept-Encoding only */

    if (name->len == sizeof("Vary") - 1
        && ngx_strncasecmp(name->data, (u_char *) "Vary", name->len) == 0
        && !ngx_http_cache_guard_vary_ok(&h->value))
    {
        return "Vary";
    }

    /* an encoding the client's variant of the key may not accept */

    if (name->len == sizeof("Content-Encoding") - 1
        && ngx_strncasecmp(name->data, (u_char *) "Content-Encoding",
                           name->len) == 0
        && !(h->value.len == 8
             && ngx_strncasecmp(h->value.data, (u_char *) "identity", 8) == 0)
        && !(h->value.len == 4
             && ngx_strncasecmp(h->value.data, (u_char *) "gzip", 4) == 0
             && ctx->gzip))
    {
        return "Content-Encoding";
    }

    if (h->key.len > 0xffff || h->value.len > 0xffff) {
        return "header too long";
    }

    return NULL;
}


/*
 * Whether the client's own condition says its copy is current (RFC 9110
 * 13.2.2): If-None-Match by weak comparison if it was sent, else
 * If-Modified-Since as the location's if_modified_since setting reads it.
 */

static ngx_uint_t
ngx_http_cache_guard_not_modified(ngx_http_request_t *r)
{
    time_t                     ims;
    u_char                    *p, *end, *tok;
    ngx_str_t                  etag;
    ngx_http_core_loc_conf_t  *clcf;

    if (r->headers_in.if_none_match) {
        p = r->headers_in.if_none_match->value.data;
        end = p + r->headers_in.if_none_match->value.len;

        if (end - p == 1 && *p == '*') {
            return 1;
        }

        if (r->headers_out.etag == NULL) {
            return 0;
        }

        etag = r->headers_out.etag->value;

        if (etag.len > 2 && etag.data[0] == 'W' && etag.data[1] == '/') {
            etag.data += 2;
            etag.len -= 2;
        }

        while (p < end) {
            while (p < end && (*p == ' ' || *p == '\t' || *p == ',')) {
                p++;
            }

            if (end - p > 2 && p[0] == 'W' && p[1] == '/') {
                p += 2;
            }

            tok = p;

            while (p < end && *p != ',' && *p != ' ' && *p != '\t') {
                p++;
            }

            if ((size_t) (p - tok) == etag.len
                && ngx_strncmp(tok, etag.data, etag.len) == 0)
            {
                return 1;
            }
        }

        return 0;
    }

    if (r->headers_in.if_modified_since == NULL
        || r->headers_out.last_modified_time == -1)
    {
        return 0;
    }

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    if (clcf->if_modified_since == NGX_HTTP_IMS_OFF) {
        return 0;
    }

    ims = ngx_parse_http_time(r->headers_in.if_modified_since->value.data,
                              r->headers_in.if_modified_since->value.len);

    if (ims == NGX_ERROR) {
        return 0;
    }

    return clcf->if_modified_since == NGX_HTTP_IMS_EXACT
           ? ims == r->headers_out.last_modified_time
           : ims >= r->headers_out.last_modified_time;
}


static ngx_uint_t
ngx_http_cache_guard_has_token(ngx_str_t *value, const char *token)
{
    size_t   len;
    u_char  *p, *end;

    len = ngx_strlen(token);
    p = value->data;
    end = p + value->len;

    while (p + len <= end) {
        if (ngx_strncasecmp(p, (u_char *) token, len) == 0
            && (p == value->data || p[-1] == ' ' || p[-1] == ',')
            && (p + len == end || p[len] == ' ' || p[len] == ','
                || p[len] == '='))
        {
            return 1;
        }

        p++;
    }

    return 0;
}


/* a Vary on Accept-Encoding only: the key has the gzip variant */

static ngx_uint_t
ngx_http_cache_guard_vary_ok(ngx_str_t *value)
{
    u_char  *p, *end, *tok;

    p = value->data;
    end = p + value->len;

    while (p < end) {

        while (p < end && (*p == ' ' || *p == ',' || *p == '\t')) {
            p++;
        }

        tok = p;

        while (p < end && *p != ',' && *p != ' ' && *p != '\t') {
            p++;
        }

        if (p > tok
            && !(p - tok == sizeof("Accept-Encoding") - 1
                 && ngx_strncasecmp(tok, (u_char *) "Accept-Encoding",
                                    p - tok) == 0))
        {
            return 0;
        }
    }

    return 1;
}
