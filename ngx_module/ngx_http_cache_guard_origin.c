
/*
 * Copyright (C) nginx-cache-guard authors
 *
 * To the origin: within the policy's cap on concurrent origin fetches
 * and behind its breaker (an open one answers at once, from a stale copy
 * or with the fallback); a fill asks the origin for the whole entity.
 */


#include "ngx_http_cache_guard_origin.h"
#include "ngx_http_cache_guard_respond.h"
#include "ngx_http_cache_guard_ctx.h"
#include "ngx_http_cache_guard_breaker.h"
#include "ngx_http_cache_guard_lock.h"


static ngx_int_t ngx_http_cache_guard_origin_down(ngx_http_request_t *r,
    ngx_http_cache_guard_ctx_t *ctx);
static ngx_int_t ngx_http_cache_guard_fill_request(ngx_http_request_t *r,
    ngx_http_cache_guard_ctx_t *ctx);
static ngx_uint_t ngx_http_cache_guard_conditional(ngx_table_elt_t *h);


/*
 * To the origin, behind the breaker: a fill (fill = 1) or a pass-through,
 * within the policy's cap on concurrent origin fetches; or, with status
 * BYPASS, a request not cached at all (Authorization, a nil key), outside
 * the cap.
 */

ngx_int_t
ngx_http_cache_guard_origin(ngx_http_request_t *r,
    ngx_http_cache_guard_ctx_t *ctx, ngx_uint_t status, ngx_uint_t fill)
{
    ngx_int_t                       rc;
    ngx_uint_t                      bypass;
    ngx_http_cache_guard_policy_t  *pl;

    pl = ctx->policy;
    bypass = (status == NGX_HTTP_CACHE_GUARD_BYPASS);

    if (pl->max_concurrent && pl->rec && !bypass) {

        if (ngx_http_cache_guard_inflight_add(pl->rec, pl->max_concurrent,
                                              r->connection->log)
            != NGX_OK)
        {
            ngx_http_cache_guard_fill_end(ctx,
                                          NGX_HTTP_CACHE_GUARD_FILL_FAILED);

            if (pl->on_overload == NGX_HTTP_CACHE_GUARD_ON_STALE
                && ctx->stale_blob.len)
            {
                return ngx_http_cache_guard_serve_stale(r, ctx,
                                                   NGX_HTTP_CACHE_GUARD_STALE);
            }

            return ngx_http_cache_guard_fallback(r, ctx);
        }

        ctx->counted = 1;
    }

    /* after the cap, so that a probe let through is never lost on it */

    rc = ngx_http_cache_guard_breaker_allow(pl->rec, &pl->breaker,
                                            r->connection->log);

    if (rc == NGX_DECLINED) {
        return ngx_http_cache_guard_origin_down(r, ctx);
    }

    ctx->probe = (rc == NGX_AGAIN);

    /*
     * The cleanup counts an origin that never answered as a failure; a
     * bypass holds nothing else, and needs it only for a breaker's probe.
     */

    if ((!bypass || pl->breaker.enabled)
        && ngx_http_cache_guard_set_cleanup(r, ctx) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (!fill) {
        /* a request that does not fill holds no lock */
        ngx_http_cache_guard_fill_end(ctx, NGX_HTTP_CACHE_GUARD_FILL_RETRY);

    } else if (ngx_http_cache_guard_fill_request(r, ctx) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ctx->status == 0 || !ctx->refresh) {
        ctx->status = status;
    }

    ctx->level = NGX_HTTP_CACHE_GUARD_LEVEL_NONE;
    ctx->state = NGX_HTTP_CACHE_GUARD_S_DONE;
    ctx->fill = fill;
    ctx->to_origin = 1;
    ctx->fill_start = ngx_current_msec;

    if (pl->rec) {
        (void) ngx_atomic_fetch_add(&pl->rec->m.origin_fetches, 1);
    }

    return NGX_DECLINED;
}


/*
 * The origin's breaker is open: nobody waits on a dead origin.  A stale
 * copy within stale.if_error, else the fallback at once; a refresh simply
 * does not happen.
 */

static ngx_int_t
ngx_http_cache_guard_origin_down(ngx_http_request_t *r,
    ngx_http_cache_guard_ctx_t *ctx)
{
    ngx_http_cache_guard_fill_end(ctx, NGX_HTTP_CACHE_GUARD_FILL_FAILED);

    if (ctx->refresh) {
        ctx->state = NGX_HTTP_CACHE_GUARD_S_DONE;
        ngx_http_cache_guard_answer(r, ctx, ngx_http_cache_guard_send_nothing);
        return NGX_DECLINED;
    }

    return ngx_http_cache_guard_stale_or_fallback(r, ctx);
}


/*
 * A fill asks the origin for the whole entity, whatever the client asked:
 * a HEAD becomes a GET (the client still gets a HEAD's answer, see the
 * header filter), and Range and conditional headers are not sent on, as
 * proxy_cache does, so that a 206 or a 304 never stands in for the
 * entry.  The filters still read them from headers_in to answer this
 * client.
 */

static ngx_int_t
ngx_http_cache_guard_fill_request(ngx_http_request_t *r,
    ngx_http_cache_guard_ctx_t *ctx)
{
    ngx_uint_t        i, n, strip;
    ngx_list_t        list;
    ngx_table_elt_t  *h, *copy;
    ngx_list_part_t  *part;

    static ngx_str_t  get = ngx_string("GET");

    if (r->method == NGX_HTTP_HEAD) {
        r->method = NGX_HTTP_GET;
        r->method_name = get;
        ctx->head = 1;
    }

    /* by name: nginx keeps a pointer to the first Range header only */

    n = 0;
    strip = 0;

    for (part = &r->headers_in.headers.part; part; part = part->next) {
        h = part->elts;

        for (i = 0; i < part->nelts; i++) {
            strip += ngx_http_cache_guard_conditional(&h[i]);
        }

        n += part->nelts;
    }

    if (strip == 0) {
        return NGX_OK;
    }

    if (ngx_list_init(&list, r->pool, n, sizeof(ngx_table_elt_t)) != NGX_OK) {
        return NGX_ERROR;
    }

    for (part = &r->headers_in.headers.part; part; part = part->next) {
        h = part->elts;

        for (i = 0; i < part->nelts; i++) {
            if (ngx_http_cache_guard_conditional(&h[i])) {
                continue;
            }

            copy = ngx_list_push(&list);
            if (copy == NULL) {
                return NGX_ERROR;
            }

            *copy = h[i];
        }
    }

    /* the fields of headers_in still point to the old elements */
    r->headers_in.headers = list;

    return NGX_OK;
}


/* a request header that asks for less than the whole entity */

static ngx_uint_t
ngx_http_cache_guard_conditional(ngx_table_elt_t *h)
{
    ngx_str_t  *name;

    static ngx_str_t  names[] = {
        ngx_string("range"),
        ngx_string("if-range"),
        ngx_string("if-match"),
        ngx_string("if-none-match"),
        ngx_string("if-modified-since"),
        ngx_string("if-unmodified-since"),
        ngx_string("request-range"),     /* an old name Apache honours */
        ngx_null_string
    };

    if (h->key.len < 5
        || ((h->key.data[0] | 0x20) != 'i' && (h->key.data[0] | 0x20) != 'r'))
    {
        return 0;
    }

    for (name = names; name->len; name++) {
        if (h->key.len == name->len
            && ngx_strncasecmp(h->key.data, name->data, name->len) == 0)
        {
            return 1;
        }
    }

    return 0;
}
