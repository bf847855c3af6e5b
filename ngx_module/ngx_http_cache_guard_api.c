
/*
 * Copyright (C) nginx-cache-guard authors
 *
 * What every admin call shares: JSON answers and errors, the Allow header
 * of a refused method, and request bodies read as they arrive and split
 * into lines, never stored whole.
 */


#include "ngx_http_cache_guard_api.h"
#include "ngx_http_cache_guard_json.h"
#include "ngx_http_cache_guard_respond.h"


/*
 * The most of a request body split in one turn of the event loop: the
 * rest waits for the other connections of the worker.
 */
#define NGX_HTTP_CACHE_GUARD_ADMIN_STEP   262144

#define NGX_HTTP_CACHE_GUARD_ADMIN_ERROR  256


static void ngx_http_cache_guard_api_body_ready(ngx_http_request_t *r);
static void ngx_http_cache_guard_api_body_read(ngx_http_request_t *r);
static void ngx_http_cache_guard_api_body_step(ngx_http_request_t *r,
    ngx_http_cache_guard_api_body_t *ab);
static ngx_http_cache_guard_api_body_t *ngx_http_cache_guard_api_body_find(
    ngx_http_request_t *r);
static void ngx_http_cache_guard_api_body_cleanup(void *data);


ngx_int_t
ngx_http_cache_guard_api_allow(ngx_http_request_t *r, const char *methods)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "Allow");
    h->value.data = (u_char *) methods;
    h->value.len = ngx_strlen(methods);

    return ngx_http_cache_guard_api_error(r, NGX_HTTP_NOT_ALLOWED,
                                          "method not allowed, use %s",
                                          methods);
}


/* {"error": "..."} with a 4xx status */

ngx_int_t
ngx_http_cache_guard_api_error(ngx_http_request_t *r, ngx_uint_t status,
    const char *fmt, ...)
{
    u_char     msg[NGX_HTTP_CACHE_GUARD_ADMIN_ERROR], *p, *start;
    size_t     len;
    va_list    args;
    ngx_str_t  s;

    va_start(args, fmt);
    p = ngx_vslprintf(msg, msg + sizeof(msg), fmt, args);
    va_end(args);

    s.data = msg;
    s.len = p - msg;

    len = sizeof("{\"error\": }\n") - 1
          + ngx_http_cache_guard_json_str_len(&s);

    start = ngx_pnalloc(r->pool, len);
    if (start == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_cpymem(start, "{\"error\": ", sizeof("{\"error\": ") - 1);
    p = ngx_http_cache_guard_json_str(p, &s);
    *p++ = '}';
    *p++ = LF;

    return ngx_http_cache_guard_api_send(r, status, start, p - start);
}


ngx_int_t
ngx_http_cache_guard_api_send(ngx_http_request_t *r, ngx_uint_t status,
    u_char *p, size_t len)
{
    return ngx_http_cache_guard_send_buf(r, status, "application/json", p,
                                         len);
}


/*
 * A request body, split into lines as it comes from the client: unbuffered
 * reading, so nothing is written to a temporary file, and at most a step's
 * worth is split before the other connections of the worker get their
 * turn.  A body over the limit is refused with 413 from its Content-Length,
 * or, chunked, as soon as it passes the limit.
 */

ngx_int_t
ngx_http_cache_guard_api_read_body(ngx_http_request_t *r,
    ngx_http_cache_guard_api_body_t *ab)
{
    ngx_int_t            rc;
    ngx_pool_cleanup_t  *cln;

    if (r->headers_in.content_length_n > ab->limit) {
        /* refused unread: no "100 Continue" */
        r->expect_tested = 1;

        return ngx_http_cache_guard_api_error(r,
                                         NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                         ab->too_large, ab->limit);
    }

    ab->lines.carry = ngx_pnalloc(r->pool,
                                  NGX_HTTP_CACHE_GUARD_LINES_MAX + 1);
    if (ab->lines.carry == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ab->lines.carry_len = 0;
    ab->lines.line = 0;

    /* the read handlers find the state by this cleanup */

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln->handler = ngx_http_cache_guard_api_body_cleanup;
    cln->data = ab;

    r->request_body_no_buffering = 1;

    rc = ngx_http_read_client_request_body(r,
                                       ngx_http_cache_guard_api_body_ready);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }

    return NGX_DONE;
}


/* the first part of the body, or all of it, is there */

static void
ngx_http_cache_guard_api_body_ready(ngx_http_request_t *r)
{
    ngx_http_cache_guard_api_body_t  *ab;

    ab = ngx_http_cache_guard_api_body_find(r);

    if (ab == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    if (r->reading_body) {
        r->read_event_handler = ngx_http_cache_guard_api_body_read;
    }

    ngx_http_cache_guard_api_body_step(r, ab);
}


static void
ngx_http_cache_guard_api_body_read(ngx_http_request_t *r)
{
    ngx_http_cache_guard_api_body_t  *ab;

    ab = ngx_http_cache_guard_api_body_find(r);

    if (ab == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    ngx_http_cache_guard_api_body_step(r, ab);
}


static void
ngx_http_cache_guard_api_body_step(ngx_http_request_t *r,
    ngx_http_cache_guard_api_body_t *ab)
{
    size_t                    size, step;
    ngx_int_t                 rc;
    ngx_buf_t                *b;
    ngx_chain_t              *cl;
    ngx_http_request_body_t  *rb;

    if (ab->finished) {
        return;
    }

    rb = r->request_body;
    step = 0;

    for ( ;; ) {

        /* the buffers are nginx's own: each is split, then marked read */

        for (cl = rb ? rb->bufs : NULL; cl; cl = cl->next) {
            b = cl->buf;

            if (b->in_file) {
                ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                              "cache guard: an admin request body in a "
                              "file");
                rc = NGX_ERROR;
                goto done;
            }

            size = b->last - b->pos;
            ab->received += size;

            if (ab->received > ab->limit) {
                ab->finished = 1;
                r->read_event_handler = ngx_http_block_reading;

                ngx_http_finalize_request(r,
                    ngx_http_cache_guard_api_error(r,
                                         NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                         ab->too_large, ab->limit));
                return;
            }

            rc = ngx_http_cache_guard_lines_split(&ab->lines, b->pos,
                                                  b->last);
            b->pos = b->last;

            if (rc != NGX_OK) {
                goto done;
            }

            step += size;
        }

        if (rb) {
            rb->bufs = NULL;
        }

        if (!r->reading_body) {
            rc = ngx_http_cache_guard_lines_end(&ab->lines);
            goto done;
        }

        if (step >= NGX_HTTP_CACHE_GUARD_ADMIN_STEP) {
            /* on at the next turn of the loop, after the other events */
            ngx_post_event(r->connection->read, &ngx_posted_next_events);
            return;
        }

        rc = ngx_http_read_unbuffered_request_body(r);

        if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
            ab->finished = 1;
            ngx_http_finalize_request(r, rc);
            return;
        }

        if (rb->bufs == NULL && r->reading_body) {
            /* the rest comes with a read event */
            return;
        }
    }

done:

    /* what is still unread when the answer is early, nginx drops */

    ab->finished = 1;
    r->read_event_handler = ngx_http_block_reading;

    ab->done(r, ab, rc);
}


static ngx_http_cache_guard_api_body_t *
ngx_http_cache_guard_api_body_find(ngx_http_request_t *r)
{
    ngx_pool_cleanup_t  *cln;

    for (cln = r->pool->cleanup; cln; cln = cln->next) {
        if (cln->handler == ngx_http_cache_guard_api_body_cleanup) {
            return cln->data;
        }
    }

    return NULL;
}


/* a mark only: the state lives in the request's pool */

static void
ngx_http_cache_guard_api_body_cleanup(void *data)
{
}
