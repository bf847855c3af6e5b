
/*
 * Copyright (C) nginx-cache-guard authors
 *
 * The request flow: the lookup in the precontent phase (after nginx's own
 * access control), L1 then L2, and the content handler that serves a hit.
 * A miss falls through to the location's own content handler, whose
 * response the filters capture.
 */


#include "ngx_http_cache_guard_module.h"


static ngx_int_t ngx_http_cache_guard_start(ngx_http_request_t *r,
    ngx_http_cache_guard_ctx_t *ctx, ngx_http_cache_guard_loc_conf_t *lcf);
static ngx_int_t ngx_http_cache_guard_make_key(ngx_http_request_t *r,
    ngx_http_cache_guard_ctx_t *ctx);
static ngx_int_t ngx_http_cache_guard_l2_lookup(ngx_http_request_t *r,
    ngx_http_cache_guard_ctx_t *ctx, ngx_http_cache_guard_redis_t *rd);
static void ngx_http_cache_guard_l2_done(redisReply *reply, void *data);
static void ngx_http_cache_guard_wake(ngx_event_t *ev);
static void ngx_http_cache_guard_cleanup(void *data);
static ngx_int_t ngx_http_cache_guard_l2_result(ngx_http_request_t *r,
    ngx_http_cache_guard_ctx_t *ctx);
static ngx_int_t ngx_http_cache_guard_hit(ngx_http_request_t *r,
    ngx_http_cache_guard_ctx_t *ctx, ngx_str_t *blob, ngx_uint_t verify);
static ngx_int_t ngx_http_cache_guard_miss(ngx_http_request_t *r,
    ngx_http_cache_guard_ctx_t *ctx);
static ngx_int_t ngx_http_cache_guard_send_hit(ngx_http_request_t *r);
static ngx_int_t ngx_http_cache_guard_hit_header(ngx_http_request_t *r,
    ngx_str_t *name, ngx_str_t *value);
static ngx_int_t ngx_http_cache_guard_variable(ngx_http_variable_value_t *v,
    ngx_str_t *s);
static ngx_int_t ngx_http_cache_guard_status_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_cache_guard_level_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_cache_guard_key_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);


static ngx_str_t  ngx_http_cache_guard_status_names[] = {
    ngx_null_string,
    ngx_string("HIT"),
    ngx_string("MISS"),
    ngx_string("STALE"),
    ngx_string("UPDATING"),
    ngx_string("NEGATIVE"),
    ngx_string("BLOOM_REJECT"),
    ngx_string("INVALID"),
    ngx_string("BYPASS"),
    ngx_string("LOCK_TIMEOUT"),
    ngx_string("FALLBACK")
};


static ngx_str_t  ngx_http_cache_guard_level_names[] = {
    ngx_null_string,
    ngx_string("l1"),
    ngx_string("l2")
};


static ngx_http_variable_t  ngx_http_cache_guard_variables[] = {

    { ngx_string("cache_guard_status"), NULL,
      ngx_http_cache_guard_status_variable, 0,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("cache_guard_level"), NULL,
      ngx_http_cache_guard_level_variable, 0,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("cache_guard_key"), NULL,
      ngx_http_cache_guard_key_variable, 0,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


ngx_int_t
ngx_http_cache_guard_precontent_handler(ngx_http_request_t *r)
{
    ngx_http_cache_guard_ctx_t       *ctx;
    ngx_http_cache_guard_loc_conf_t  *lcf;

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_cache_guard_module);

    if (!lcf->enable || r != r->main) {
        return NGX_DECLINED;
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_cache_guard_module);

    if (ctx == NULL) {
        ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_cache_guard_ctx_t));
        if (ctx == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ctx->request = r;
        ctx->zone = lcf->shm_zone->data;
        ctx->policy = lcf->policy;

        ngx_http_set_ctx(r, ctx, ngx_http_cache_guard_module);

        return ngx_http_cache_guard_start(r, ctx, lcf);
    }

    if (ctx->waiting) {
        return NGX_DONE;
    }

    if (!ctx->done) {
        return ngx_http_cache_guard_l2_result(r, ctx);
    }

    return NGX_DECLINED;
}


static ngx_int_t
ngx_http_cache_guard_start(ngx_http_request_t *r,
    ngx_http_cache_guard_ctx_t *ctx, ngx_http_cache_guard_loc_conf_t *lcf)
{
    ngx_int_t                          rc;
    ngx_str_t                          blob;
    ngx_http_cache_guard_main_conf_t  *mcf;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))
        || r->headers_in.authorization)
    {
        /* a response to an authorised request is that user's alone */
        ctx->status = NGX_HTTP_CACHE_GUARD_BYPASS;
        ctx->done = 1;
        return NGX_DECLINED;
    }

    rc = ngx_http_cache_guard_make_key(r, ctx);

    if (rc != NGX_OK) {
        if (rc == NGX_ERROR) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ctx->status = NGX_HTTP_CACHE_GUARD_BYPASS;
        ctx->done = 1;
        return NGX_DECLINED;
    }

    if (ctx->policy->l1) {
        rc = ngx_http_cache_guard_l1_get(ctx->zone, &ctx->key, r->pool, &blob,
                                         ngx_http_cache_guard_now());

        if (rc == NGX_ERROR) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        if (rc == NGX_OK) {
            ctx->level = NGX_HTTP_CACHE_GUARD_LEVEL_L1;

            if (ngx_http_cache_guard_hit(r, ctx, &blob, 0) == NGX_OK) {
                return NGX_DECLINED;
            }
        }
    }

    mcf = ngx_http_get_module_main_conf(r, ngx_http_cache_guard_module);

    if (mcf->redis) {
        return ngx_http_cache_guard_l2_lookup(r, ctx, mcf->redis);
    }

    return ngx_http_cache_guard_miss(r, ctx);
}


/*
 * The key is the policy's template; a client that accepts gzip gets its
 * own variant, so an encoded response never reaches a client that cannot
 * decode it.
 */

static ngx_int_t
ngx_http_cache_guard_make_key(ngx_http_request_t *r,
    ngx_http_cache_guard_ctx_t *ctx)
{
    ngx_int_t                           rc;
    ngx_str_t                          *prefix;
    ngx_table_elt_t                    *ae;
    ngx_http_cache_guard_main_conf_t   *mcf;

    static ngx_str_t  none = ngx_null_string;
    static ngx_str_t  gzip = ngx_string("#gzip");

    mcf = ngx_http_get_module_main_conf(r, ngx_http_cache_guard_module);
    prefix = mcf->redis ? &mcf->redis->prefix : &none;

    ae = r->headers_in.accept_encoding;

    rc = ngx_http_cache_guard_policy_eval_key(r, ctx->policy, prefix,
             (ae && ngx_http_cache_guard_accepts_gzip(ae->value.data,
                                                      ae->value.len))
             ? &gzip : &none,
             &ctx->rkey);

    if (rc != NGX_OK) {
        return rc;
    }

    ctx->key.data = ctx->rkey.data + prefix->len;
    ctx->key.len = ctx->rkey.len - prefix->len;

    return NGX_OK;
}


static ngx_int_t
ngx_http_cache_guard_l2_lookup(ngx_http_request_t *r,
    ngx_http_cache_guard_ctx_t *ctx, ngx_http_cache_guard_redis_t *rd)
{
    size_t               argvlen[2];
    const char          *argv[2];
    ngx_pool_cleanup_t  *cln;

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    argv[0] = "GET";
    argvlen[0] = 3;
    argv[1] = (const char *) ctx->rkey.data;
    argvlen[1] = ctx->rkey.len;

    ctx->cmd = ngx_http_cache_guard_redis_command(rd,
                                                  ngx_http_cache_guard_l2_done,
                                                  ctx, 2, argv, argvlen);

    if (ctx->cmd == NULL) {
        /* Redis is down or backing off: the origin answers */
        return ngx_http_cache_guard_miss(r, ctx);
    }

    cln->handler = ngx_http_cache_guard_cleanup;
    cln->data = ctx;

    ctx->wake.handler = ngx_http_cache_guard_wake;
    ctx->wake.data = ctx;
    ctx->wake.log = r->connection->log;

    ctx->waiting = 1;
    r->main->count++;
    r->write_event_handler = ngx_http_request_empty_handler;

    return NGX_DONE;
}


static void
ngx_http_cache_guard_l2_done(redisReply *reply, void *data)
{
    ngx_http_cache_guard_ctx_t  *ctx = data;

    ngx_http_request_t  *r;

    r = ctx->request;
    ctx->cmd = NULL;

    if (reply == NULL) {
        ctx->l2_rc = NGX_ERROR;

    } else if (reply->type == REDIS_REPLY_NIL) {
        ctx->l2_rc = NGX_DECLINED;

    } else if (reply->type == REDIS_REPLY_STRING
               && reply->len <= ctx->policy->max_entry_size
                                + NGX_HTTP_CACHE_GUARD_MAX_KEY * 4)
    {
        ctx->l2_value.data = ngx_pnalloc(r->pool, reply->len);

        if (ctx->l2_value.data) {
            ngx_memcpy(ctx->l2_value.data, reply->str, reply->len);
            ctx->l2_value.len = reply->len;
            ctx->l2_rc = NGX_OK;

        } else {
            ctx->l2_rc = NGX_ERROR;
        }

    } else {
        /* an error reply, a wrong type or an oversized value */
        ctx->l2_rc = NGX_ERROR;
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "cache guard: unexpected redis reply of type %d "
                      "for \"%V\"", reply->type, &ctx->rkey);
    }

    /* resume from the event loop, outside hiredis' callback */
    ngx_post_event(&ctx->wake, &ngx_posted_events);
}


static void
ngx_http_cache_guard_wake(ngx_event_t *ev)
{
    ngx_http_cache_guard_ctx_t  *ctx = ev->data;

    ngx_connection_t    *c;
    ngx_http_request_t  *r;

    r = ctx->request;
    c = r->connection;

    ctx->waiting = 0;
    r->write_event_handler = ngx_http_core_run_phases;

    ngx_http_finalize_request(r, NGX_DONE);
    ngx_http_core_run_phases(r);
    ngx_http_run_posted_requests(c);
}


static void
ngx_http_cache_guard_cleanup(void *data)
{
    ngx_http_cache_guard_ctx_t  *ctx = data;

    if (ctx->cmd) {
        ngx_http_cache_guard_redis_cancel(ctx->cmd);
        ctx->cmd = NULL;
    }

    if (ctx->wake.posted) {
        ngx_delete_posted_event(&ctx->wake);
    }
}


static ngx_int_t
ngx_http_cache_guard_l2_result(ngx_http_request_t *r,
    ngx_http_cache_guard_ctx_t *ctx)
{
    if (ctx->l2_rc != NGX_OK) {
        return ngx_http_cache_guard_miss(r, ctx);
    }

    ctx->level = NGX_HTTP_CACHE_GUARD_LEVEL_L2;

    if (ngx_http_cache_guard_hit(r, ctx, &ctx->l2_value, 1) != NGX_OK) {
        return ngx_http_cache_guard_miss(r, ctx);
    }

    ngx_http_cache_guard_l1_keep(r, ctx, &ctx->l2_value,
                                 ctx->entry.stale_until);

    return NGX_DECLINED;
}


/*
 * Decodes an entry and, when it is fresh, makes this request serve it.
 * A value that does not decode was not written by us, or was damaged: it
 * is a miss, and the fill overwrites it.
 */

static ngx_int_t
ngx_http_cache_guard_hit(ngx_http_request_t *r,
    ngx_http_cache_guard_ctx_t *ctx, ngx_str_t *blob, ngx_uint_t verify)
{
    ngx_http_cache_guard_entry_t  *e;

    e = &ctx->entry;

    if (ngx_http_cache_guard_entry_decode(blob->data, blob->len, e, verify)
        != NGX_OK)
    {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "cache guard: invalid entry for \"%V\" in %s, "
                      "ignored", &ctx->key,
                      verify ? "redis" : "shared memory");
        ctx->level = NGX_HTTP_CACHE_GUARD_LEVEL_NONE;
        return NGX_DECLINED;
    }

    if (e->fresh_until <= ngx_http_cache_guard_now()) {
        ctx->level = NGX_HTTP_CACHE_GUARD_LEVEL_NONE;
        return NGX_DECLINED;
    }

    ctx->status = (e->flags & NGX_HTTP_CACHE_GUARD_ENTRY_NEGATIVE)
                  ? NGX_HTTP_CACHE_GUARD_NEGATIVE : NGX_HTTP_CACHE_GUARD_HIT;
    ctx->done = 1;

    r->content_handler = ngx_http_cache_guard_send_hit;

    return NGX_OK;
}


static ngx_int_t
ngx_http_cache_guard_miss(ngx_http_request_t *r,
    ngx_http_cache_guard_ctx_t *ctx)
{
    ctx->status = NGX_HTTP_CACHE_GUARD_MISS;
    ctx->level = NGX_HTTP_CACHE_GUARD_LEVEL_NONE;
    ctx->done = 1;

    /* HEAD never fills: its response has no body to store */
    ctx->fill = (r->method == NGX_HTTP_GET);
    ctx->fill_start = ngx_http_cache_guard_now();

    return NGX_DECLINED;
}


static ngx_int_t
ngx_http_cache_guard_send_hit(ngx_http_request_t *r)
{
    u_char                        *p;
    time_t                         age;
    ngx_int_t                      rc;
    ngx_str_t                      name, value;
    ngx_buf_t                     *b;
    ngx_chain_t                    out;
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

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->pos = e->body.data;
    b->last = e->body.data + e->body.len;
    b->memory = 1;
    b->last_buf = 1;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
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


ngx_int_t
ngx_http_cache_guard_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var, *v;

    for (v = ngx_http_cache_guard_variables; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = v->get_handler;
        var->data = v->data;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_cache_guard_variable(ngx_http_variable_value_t *v, ngx_str_t *s)
{
    if (s->len == 0) {
        v->not_found = 1;
        return NGX_OK;
    }

    v->len = s->len;
    v->valid = 1;
    v->no_cacheable = 0;
    v->not_found = 0;
    v->data = s->data;

    return NGX_OK;
}


static ngx_int_t
ngx_http_cache_guard_status_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_http_cache_guard_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r->main, ngx_http_cache_guard_module);

    return ngx_http_cache_guard_variable(v,
                 &ngx_http_cache_guard_status_names[ctx ? ctx->status : 0]);
}


static ngx_int_t
ngx_http_cache_guard_level_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_http_cache_guard_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r->main, ngx_http_cache_guard_module);

    return ngx_http_cache_guard_variable(v,
                 &ngx_http_cache_guard_level_names[ctx ? ctx->level : 0]);
}


static ngx_int_t
ngx_http_cache_guard_key_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_str_t                    none = ngx_null_string;
    ngx_http_cache_guard_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r->main, ngx_http_cache_guard_module);

    return ngx_http_cache_guard_variable(v, ctx ? &ctx->key : &none);
}
