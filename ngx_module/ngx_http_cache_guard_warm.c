
/*
 * Copyright (C) nginx-cache-guard authors
 *
 * Warm-up, from the admin API: POST /warm with one URI per line.  Each URI
 * is a background subrequest of the admin request through the server's own
 * locations, so a guarded one takes the normal path (L1, Redis, the locks,
 * the fill); concurrency=N of them at a time.  The answer comes when all
 * are done; GET /warm shows the progress of the last job on this node.
 *
 * A subrequest allocates from its parent's pool, which lives until the
 * job ends: each one gets a pool of its own instead, freed once it is done,
 * so a job holds the memory of the URIs in flight only.
 */


#include "ngx_http_cache_guard_warm.h"
#include "ngx_http_cache_guard_api.h"
#include "ngx_http_cache_guard_breaker.h"
#include "ngx_http_cache_guard_ctx.h"


#define NGX_HTTP_CACHE_GUARD_WARM_CONCURRENCY  8
#define NGX_HTTP_CACHE_GUARD_WARM_MAX          64
#define NGX_HTTP_CACHE_GUARD_WARM_LINES        1000
/* the body: as many URIs of the longest, with CRLF */
#define NGX_HTTP_CACHE_GUARD_WARM_BYTES                                      \
    (NGX_HTTP_CACHE_GUARD_WARM_LINES                                         \
     * (NGX_HTTP_CACHE_GUARD_LINES_MAX + 2))


typedef struct ngx_http_cache_guard_warm_s  ngx_http_cache_guard_warm_t;


typedef struct ngx_http_cache_guard_warm_uri_s
    ngx_http_cache_guard_warm_uri_t;


/* one URI: nginx may call its post-subrequest handler more than once */

struct ngx_http_cache_guard_warm_uri_s {
    ngx_http_cache_guard_warm_t    *warm;
    ngx_http_request_t             *request;
    ngx_pool_t                     *pool;         /* the subrequest's own */
    ngx_http_cache_guard_warm_uri_t  *next;       /* its pool not freed */
    ngx_http_post_subrequest_t      ps;
    ngx_uint_t                      done;         /* unsigned:1 */
};


struct ngx_http_cache_guard_warm_s {
    ngx_http_cache_guard_api_body_t   body;
    ngx_http_request_t             *request;
    ngx_array_t                     uris;         /* ngx_str_t */
    ngx_uint_t                      next;
    ngx_uint_t                      inflight;
    ngx_uint_t                      concurrency;
    ngx_uint_t                      done;
    ngx_uint_t                      filled;
    ngx_uint_t                      hits;
    ngx_uint_t                      passed;
    ngx_uint_t                      failed;
    ngx_http_cache_guard_warm_uri_t  *live;       /* pools to free */
    ngx_event_t                     release;
    ngx_event_t                     finish;
};


static void ngx_http_cache_guard_warm_body(ngx_http_request_t *r,
    ngx_http_cache_guard_api_body_t *ab, ngx_int_t rc);
static ngx_int_t ngx_http_cache_guard_warm_line(
    ngx_http_cache_guard_lines_t *ls, u_char *item, size_t len);
static ngx_int_t ngx_http_cache_guard_warm_start(
    ngx_http_cache_guard_warm_t *w);
static ngx_int_t ngx_http_cache_guard_warm_done(ngx_http_request_t *sr,
    void *data, ngx_int_t rc);
static void ngx_http_cache_guard_warm_release(ngx_event_t *ev);
static ngx_uint_t ngx_http_cache_guard_warm_busy(
    ngx_http_cache_guard_warm_t *w, ngx_http_request_t *sr);
static void ngx_http_cache_guard_warm_free(ngx_http_cache_guard_warm_t *w,
    ngx_http_cache_guard_warm_uri_t *wu);
static void ngx_http_cache_guard_warm_finish(ngx_event_t *ev);
static void ngx_http_cache_guard_warm_cleanup(void *data);
static ngx_int_t ngx_http_cache_guard_warm_headers(ngx_http_request_t *sr);
static ngx_int_t ngx_http_cache_guard_warm_progress(ngx_http_request_t *r);


ngx_int_t
ngx_http_cache_guard_warm_handler(ngx_http_request_t *r)
{
    ngx_int_t                     n;
    ngx_str_t                     arg;
    ngx_http_cache_guard_warm_t  *w;

    if (r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD)) {
        return ngx_http_cache_guard_warm_progress(r);
    }

    if (r->method != NGX_HTTP_POST) {
        return ngx_http_cache_guard_api_allow(r, "GET, HEAD, POST");
    }

    w = ngx_pcalloc(r->pool, sizeof(ngx_http_cache_guard_warm_t));
    if (w == NULL
        || ngx_array_init(&w->uris, r->pool, 64, sizeof(ngx_str_t)) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    w->request = r;
    w->concurrency = NGX_HTTP_CACHE_GUARD_WARM_CONCURRENCY;

    if (ngx_http_arg(r, (u_char *) "concurrency", 11, &arg) == NGX_OK) {
        n = ngx_atoi(arg.data, arg.len);

        if (n < 1 || n > NGX_HTTP_CACHE_GUARD_WARM_MAX) {
            return ngx_http_cache_guard_api_error(r, NGX_HTTP_BAD_REQUEST,
                                               "concurrency must be 1 to %d",
                                               NGX_HTTP_CACHE_GUARD_WARM_MAX);
        }

        w->concurrency = (ngx_uint_t) n;
    }

    /* every line is checked before the first fill: a bad one starts none */

    w->body.lines.handler = ngx_http_cache_guard_warm_line;
    w->body.lines.data = w;
    w->body.limit = NGX_HTTP_CACHE_GUARD_WARM_BYTES;
    w->body.too_large = "a body is %O bytes at most (1000 URIs) per call, "
                        "nothing was warmed";
    w->body.done = ngx_http_cache_guard_warm_body;

    return ngx_http_cache_guard_api_read_body(r, &w->body);
}


static void
ngx_http_cache_guard_warm_body(ngx_http_request_t *r,
    ngx_http_cache_guard_api_body_t *ab, ngx_int_t rc)
{
    ngx_pool_cleanup_t                 *cln;
    ngx_http_cache_guard_warm_t        *w = (void *) ab;
    ngx_http_cache_guard_warm_state_t  *ws;

    if (rc == NGX_DECLINED) {
        ngx_http_finalize_request(r,
            ngx_http_cache_guard_api_error(r, NGX_HTTP_BAD_REQUEST,
                                           "line %ui is not a URI path "
                                           "(\"/...\", 4096 bytes at most, "
                                           "no spaces), nothing was warmed",
                                           ab->lines.line));
        return;
    }

    if (rc == NGX_HTTP_REQUEST_ENTITY_TOO_LARGE) {
        ngx_http_finalize_request(r,
            ngx_http_cache_guard_api_error(r,
                                           NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                           "%d URIs at most per call, "
                                           "nothing was warmed",
                                           NGX_HTTP_CACHE_GUARD_WARM_LINES));
        return;
    }

    if (rc != NGX_OK) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    if (ngx_http_cache_guard_state) {
        ws = &ngx_http_cache_guard_state->warm;
        ws->running = 1;
        ws->total = w->uris.nelts;
        ws->done = 0;
        ws->filled = 0;
        ws->hits = 0;
        ws->failed = 0;
        ws->started = ngx_time();
    }

    w->finish.handler = ngx_http_cache_guard_warm_finish;
    w->finish.data = w;
    w->finish.log = r->connection->log;

    w->release.handler = ngx_http_cache_guard_warm_release;
    w->release.data = w;
    w->release.log = r->connection->log;

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    cln->handler = ngx_http_cache_guard_warm_cleanup;
    cln->data = w;

    /*
     * The reference the body reading took is released at the finish; a
     * URI that cannot start counts as failed, and the finish still comes.
     */

    if (w->uris.nelts == 0 || ngx_http_cache_guard_warm_start(w) != NGX_OK) {
        w->failed += w->uris.nelts - w->done - w->inflight;
        w->done = w->uris.nelts - w->inflight;
        w->next = w->uris.nelts;

        if (w->inflight == 0) {
            ngx_post_event(&w->finish, &ngx_posted_events);
        }
    }
}


/* the request ends before the finish ran: the event must not run then */

static void
ngx_http_cache_guard_warm_cleanup(void *data)
{
    ngx_http_cache_guard_warm_t *w = data;

    ngx_http_cache_guard_warm_uri_t  *wu;

    if (w->finish.posted) {
        ngx_delete_posted_event(&w->finish);
    }

    if (w->release.posted) {
        ngx_delete_posted_event(&w->release);
    }

    /* the subrequests are over: nginx ran their upstreams' cleanups */

    for (wu = w->live; wu; wu = wu->next) {
        ngx_http_cache_guard_warm_free(w, wu);
    }

    w->live = NULL;

    if (ngx_http_cache_guard_state) {
        ngx_http_cache_guard_state->warm.running = 0;
    }
}


static ngx_int_t
ngx_http_cache_guard_warm_line(ngx_http_cache_guard_lines_t *ls,
    u_char *item, size_t len)
{
    ngx_http_cache_guard_warm_t *w = ls->data;

    size_t      i;
    ngx_str_t  *uri;

    while (len && (item[len - 1] == ' ' || item[len - 1] == '\t')) {
        len--;
    }

    if (len == 0) {
        return NGX_OK;
    }

    if (item[0] != '/') {
        return NGX_DECLINED;
    }

    for (i = 0; i < len; i++) {
        if (item[i] <= ' ' || item[i] == 0x7f) {
            return NGX_DECLINED;
        }
    }

    if (w->uris.nelts == NGX_HTTP_CACHE_GUARD_WARM_LINES) {
        return NGX_HTTP_REQUEST_ENTITY_TOO_LARGE;
    }

    uri = ngx_array_push(&w->uris);
    if (uri == NULL) {
        return NGX_ERROR;
    }

    uri->data = ngx_pnalloc(w->request->pool, len);
    if (uri->data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(uri->data, item, len);
    uri->len = len;

    return NGX_OK;
}


static ngx_int_t
ngx_http_cache_guard_warm_start(ngx_http_cache_guard_warm_t *w)
{
    u_char                           *q;
    ngx_str_t                        *uri, path, args;
    ngx_pool_t                       *pool;
    ngx_http_request_t               *sr;
    ngx_http_core_srv_conf_t         *cscf;
    ngx_http_cache_guard_ctx_t       *sctx;
    ngx_http_cache_guard_warm_uri_t  *wu;

    uri = w->uris.elts;
    cscf = ngx_http_get_module_srv_conf(w->request, ngx_http_core_module);

    while (w->inflight < w->concurrency && w->next < w->uris.nelts) {

        path = uri[w->next];
        args.len = 0;
        args.data = NULL;

        q = ngx_strlchr(path.data, path.data + path.len, '?');

        if (q) {
            args.data = q + 1;
            args.len = path.data + path.len - args.data;
            path.len = q - path.data;
        }

        pool = ngx_create_pool(cscf->request_pool_size,
                               w->request->connection->log);
        if (pool == NULL) {
            return NGX_ERROR;
        }

        /* what outlives the subrequest is in the admin request's pool */

        wu = ngx_pcalloc(w->request->pool,
                         sizeof(ngx_http_cache_guard_warm_uri_t));

        /* its zone and policy: the location's, once the subrequest is there */
        sctx = ngx_http_cache_guard_create_ctx(pool, NULL, NULL);
        if (wu == NULL || sctx == NULL) {
            ngx_destroy_pool(pool);
            return NGX_ERROR;
        }

        wu->warm = w;
        wu->ps.handler = ngx_http_cache_guard_warm_done;
        wu->ps.data = wu;

        if (ngx_http_subrequest(w->request, &path, args.len ? &args : NULL,
                                &sr, &wu->ps, NGX_HTTP_SUBREQUEST_BACKGROUND)
            != NGX_OK)
        {
            ngx_destroy_pool(pool);
            return NGX_ERROR;
        }

        /* it has not run yet: from now on it allocates from its own */

        sr->pool = pool;
        wu->request = sr;
        wu->pool = pool;
        wu->next = w->live;
        w->live = wu;

        w->next++;
        w->inflight++;

        /*
         * A mark, set first: the precontent handler completes it for the
         * location; its output is swallowed.  Found again through its
         * cleanup after an internal redirect.
         */

        sctx->warm = 1;
        sctx->quiet = 1;

        if (ngx_http_cache_guard_attach_ctx(sr, sctx) != NGX_OK) {
            return NGX_ERROR;
        }

        /* $request_uri, and so the default key, is the URI's own */
        sr->unparsed_uri = uri[w->next - 1];

        /* the admin request's body, credentials and cached values stay */

        if (ngx_http_cache_guard_warm_headers(sr) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_cache_guard_warm_done(ngx_http_request_t *sr, void *data,
    ngx_int_t rc)
{
    ngx_http_cache_guard_warm_uri_t *wu = data;

    ngx_uint_t                          failed;
    ngx_http_cache_guard_warm_t        *w;
    ngx_http_cache_guard_ctx_t         *ctx;
    ngx_http_cache_guard_warm_state_t  *ws;

    w = wu->warm;

    /* its pool is freed once it is done, after nginx ends it */

    if (wu->pool && !w->release.posted) {
        ngx_post_event(&w->release, &ngx_posted_events);
    }

    /* an error nginx answers itself finalizes the subrequest twice */

    if (wu->done) {
        return rc;
    }

    wu->done = 1;

    ctx = ngx_http_cache_guard_find_ctx(sr);
    failed = 0;

    /* a 404 stored (or served) as a negative entry is no failure */

    if ((rc != NGX_OK && rc != NGX_DONE) || sr->headers_out.status >= 400
        || sr->headers_out.status == 0)
    {
        failed = (ctx == NULL
                  || !(ctx->stored
                       || ctx->status == NGX_HTTP_CACHE_GUARD_NEGATIVE));
    }

    w->inflight--;
    w->done++;

    ws = ngx_http_cache_guard_state ? &ngx_http_cache_guard_state->warm
                                    : NULL;

    if (failed) {
        w->failed++;

    } else if (ctx && ctx->policy && ctx->stored) {
        w->filled++;

    } else if (ctx && ctx->policy
               && (ctx->status == NGX_HTTP_CACHE_GUARD_HIT
                   || ctx->status == NGX_HTTP_CACHE_GUARD_NEGATIVE))
    {
        w->hits++;

    } else {
        w->passed++;
    }

    if (ws) {
        ws->done = w->done;
        ws->filled = w->filled;
        ws->hits = w->hits;
        ws->failed = w->failed;
    }

    if (w->done == w->uris.nelts) {
        if (!w->finish.posted) {
            ngx_post_event(&w->finish, &ngx_posted_events);
        }

        return rc;
    }

    if (ngx_http_cache_guard_warm_start(w) != NGX_OK) {
        w->failed += w->uris.nelts - w->next;
        w->done += w->uris.nelts - w->next;
        w->next = w->uris.nelts;

        if (w->done == w->uris.nelts && !w->finish.posted) {
            ngx_post_event(&w->finish, &ngx_posted_events);
        }
    }

    return rc;
}


/* the pools of the subrequests that are over */

static void
ngx_http_cache_guard_warm_release(ngx_event_t *ev)
{
    ngx_http_cache_guard_warm_t *w = ev->data;

    ngx_http_cache_guard_warm_uri_t  *wu, **wup;

    wup = &w->live;

    while (*wup) {
        wu = *wup;

        /*
         * Not done: an error page redirected it, it runs on and this
         * comes again when it ends; busy: its upstream is not finalized
         * (the admin request's end frees it then)
         */

        if (!wu->done || !wu->request->done
            || ngx_http_cache_guard_warm_busy(w, wu->request))
        {
            wup = &wu->next;
            continue;
        }

        *wup = wu->next;
        ngx_http_cache_guard_warm_free(w, wu);
    }
}


/*
 * Something of the subrequest's that has not run yet: a cleanup (an
 * upstream's) or a posted call
 */

static ngx_uint_t
ngx_http_cache_guard_warm_busy(ngx_http_cache_guard_warm_t *w,
    ngx_http_request_t *sr)
{
    ngx_http_cleanup_t          *cln;
    ngx_http_posted_request_t   *pr;

    for (cln = w->request->cleanup; cln; cln = cln->next) {
        if (cln->handler && cln->data == sr) {
            return 1;
        }
    }

    for (pr = w->request->posted_requests; pr; pr = pr->next) {
        if (pr->request == sr) {
            return 1;
        }
    }

    return 0;
}


static void
ngx_http_cache_guard_warm_free(ngx_http_cache_guard_warm_t *w,
    ngx_http_cache_guard_warm_uri_t *wu)
{
    ngx_pool_t          *pool;
    ngx_http_request_t  *sr;
    ngx_http_log_ctx_t  *lctx;

    sr = wu->request;
    pool = wu->pool;

    /* the error log shows the request it was last set to */

    lctx = sr->connection->log->data;

    if (lctx && lctx->current_request == sr) {
        lctx->current_request = w->request;
    }

    sr->pool = w->request->pool;
    wu->pool = NULL;

    ngx_destroy_pool(pool);
}


/*
 * A subrequest shares its parent's headers and body: a warm-up's own are
 * a GET's, without the admin request's body, cookies or credentials.
 */

static ngx_int_t
ngx_http_cache_guard_warm_headers(ngx_http_request_t *sr)
{
    ngx_uint_t                  i;
    ngx_list_t                  old;
    ngx_list_part_t            *part;
    ngx_table_elt_t            *h, *nh;
    ngx_http_core_main_conf_t  *cmcf;

    static ngx_str_t  drop[] = {
        ngx_string("Authorization"),
        ngx_string("Proxy-Authorization"),
        ngx_string("Cookie"),
        ngx_string("Content-Length"),
        ngx_string("Content-Type"),
        ngx_string("Transfer-Encoding"),
        ngx_string("Expect"),
        ngx_string("Range"),
        ngx_string("If-Range"),
        ngx_string("If-None-Match"),
        ngx_string("If-Modified-Since"),
        ngx_null_string
    };

    ngx_str_t  *d;

    /* a variable cache of its own: the parent's holds its headers' values */

    cmcf = ngx_http_get_module_main_conf(sr, ngx_http_core_module);

    sr->variables = ngx_pcalloc(sr->pool, cmcf->variables.nelts
                                          * sizeof(ngx_http_variable_value_t));
    if (sr->variables == NULL) {
        return NGX_ERROR;
    }

    /* a list of its own, made in place: a list points into itself */

    old = sr->headers_in.headers;

    if (ngx_list_init(&sr->headers_in.headers, sr->pool, 8,
                      sizeof(ngx_table_elt_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    part = &old.part;
    h = part->elts;

    for (i = 0; /* void */ ; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        for (d = drop; d->len; d++) {
            if (h[i].key.len == d->len
                && ngx_strncasecmp(h[i].key.data, d->data, d->len) == 0)
            {
                break;
            }
        }

        if (d->len) {
            continue;
        }

        nh = ngx_list_push(&sr->headers_in.headers);
        if (nh == NULL) {
            return NGX_ERROR;
        }

        *nh = h[i];
    }

    sr->headers_in.authorization = NULL;
    sr->headers_in.if_modified_since = NULL;
    sr->headers_in.if_none_match = NULL;
    sr->headers_in.range = NULL;
    sr->headers_in.if_range = NULL;
    sr->headers_in.content_length = NULL;
    sr->headers_in.content_type = NULL;
    sr->headers_in.transfer_encoding = NULL;
    sr->headers_in.content_length_n = -1;
    sr->headers_in.chunked = 0;

    if (ngx_array_init(&sr->headers_in.cookies, sr->pool, 1,
                       sizeof(ngx_table_elt_t *))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    sr->request_body = NULL;

    return NGX_OK;
}


static void
ngx_http_cache_guard_warm_finish(ngx_event_t *ev)
{
    ngx_http_cache_guard_warm_t *w = ev->data;

    u_char              *p, *start;
    ngx_connection_t    *c;
    ngx_http_request_t  *r;

    r = w->request;
    c = r->connection;

    if (ngx_http_cache_guard_state) {
        ngx_http_cache_guard_state->warm.running = 0;
    }

    start = ngx_pnalloc(r->pool, 256);
    if (start == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        ngx_http_run_posted_requests(c);
        return;
    }

    /* filled: stored now; hits: were cached; passed: not cacheable */

    p = ngx_sprintf(start, "{\"total\": %ui, \"filled\": %ui, \"hits\": %ui, "
                    "\"passed\": %ui, \"failed\": %ui, \"concurrency\": %ui}\n",
                    w->uris.nelts, w->filled, w->hits, w->passed, w->failed,
                    w->concurrency);

    ngx_http_finalize_request(r,
                              ngx_http_cache_guard_api_send(r, NGX_HTTP_OK,
                                                            start,
                                                            p - start));
    ngx_http_run_posted_requests(c);
}


static ngx_int_t
ngx_http_cache_guard_warm_progress(ngx_http_request_t *r)
{
    u_char                             *p, *start;
    ngx_http_cache_guard_warm_state_t  *ws;

    start = ngx_pnalloc(r->pool, 256);
    if (start == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_http_cache_guard_state == NULL) {
        p = ngx_cpymem(start, "{\"running\": false, \"total\": 0}\n", 31);

    } else {
        ws = &ngx_http_cache_guard_state->warm;
        p = ngx_sprintf(start, "{\"running\": %s, \"total\": %uA, "
                        "\"done\": %uA, \"filled\": %uA, \"hits\": %uA, "
                        "\"failed\": %uA, \"started\": %uA}\n",
                        ws->running ? "true" : "false", ws->total, ws->done,
                        ws->filled, ws->hits, ws->failed, ws->started);
    }

    return ngx_http_cache_guard_api_send(r, NGX_HTTP_OK, start, p - start);
}
