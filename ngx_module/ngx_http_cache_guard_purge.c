
/*
 * Copyright (C) nginx-cache-guard authors
 *
 * Purge, from the admin API: DELETE /cache?key=K (soft=1: made stale, not
 * deleted) and DELETE /cache?pattern=GLOB.  This node's L1 is purged at
 * once, Redis with UNLINK (a pattern with SCAN and UNLINK in batches, one
 * round trip at a time, so neither Redis nor the worker is held), and the
 * other nodes learn of it on a Redis pub/sub channel, PREFIX "purge", that
 * one worker per node listens to on a connection of its own.
 */


#include "ngx_http_cache_guard_purge.h"
#include "ngx_http_cache_guard_api.h"
#include "ngx_http_cache_guard_breaker.h"
#include "ngx_http_cache_guard_codec.h"
#include "ngx_http_cache_guard_redis.h"
#include "ngx_http_cache_guard_store.h"
#include "ngx_http_cache_guard_stats.h"


/* a SCAN that never ends (a broken server) is cut short */
#define NGX_HTTP_CACHE_GUARD_PURGE_SCANS   100000

#define NGX_HTTP_CACHE_GUARD_P_UNLINK      0
#define NGX_HTTP_CACHE_GUARD_P_GET         1
#define NGX_HTTP_CACHE_GUARD_P_SET         2
#define NGX_HTTP_CACHE_GUARD_P_SCAN        3
#define NGX_HTTP_CACHE_GUARD_P_PUBLISH     4


typedef struct {
    ngx_http_request_t             *request;
    ngx_http_cache_guard_redis_t   *redis;
    ngx_http_cache_guard_redis_cmd_t  *cmd;
    ngx_str_t                       key;          /* or empty */
    ngx_str_t                       pattern;      /* or empty */
    ngx_uint_t                      soft;
    ngx_uint_t                      variant;      /* 0: key, 1: gzip */
    ngx_uint_t                      pass;         /* SCAN: 0 keys, 1 gzip */
    ngx_uint_t                      step;         /* NGX_HTTP_CACHE_GUARD_P_ */
    ngx_uint_t                      l1;
    ngx_uint_t                      deleted;      /* in Redis */
    ngx_uint_t                      scanned;
    ngx_int_t                       receivers;    /* -1: not published */
    ngx_str_t                       cursor;
    u_char                          cursor_buf[24];
    ngx_str_t                       match;        /* SCAN's MATCH */
    const char                    **argv;         /* UNLINK's */
    size_t                         *argvlen;
    size_t                          nargv;
    const char                     *failed;       /* a Redis step failed */
} ngx_http_cache_guard_purge_t;


static ngx_int_t ngx_http_cache_guard_purge_next(
    ngx_http_cache_guard_purge_t *pu);
static void ngx_http_cache_guard_purge_reply(redisReply *reply, void *data);
static ngx_int_t ngx_http_cache_guard_purge_scanned(
    ngx_http_cache_guard_purge_t *pu, redisReply *reply);
static ngx_int_t ngx_http_cache_guard_purge_scanned_all(
    ngx_http_cache_guard_purge_t *pu);
static ngx_int_t ngx_http_cache_guard_purge_publish(
    ngx_http_cache_guard_purge_t *pu);
static ngx_int_t ngx_http_cache_guard_purge_send(
    ngx_http_cache_guard_purge_t *pu);
static void ngx_http_cache_guard_purge_cleanup(void *data);
static ngx_uint_t ngx_http_cache_guard_purge_local(ngx_str_t *key,
    ngx_str_t *pattern, ngx_uint_t soft);
static void ngx_http_cache_guard_purge_message(redisReply *reply, void *data);
static void ngx_http_cache_guard_purge_tick(ngx_event_t *ev);
static ngx_int_t ngx_http_cache_guard_purge_rkey(ngx_pool_t *pool,
    ngx_http_cache_guard_redis_t *rd, ngx_str_t *key, ngx_uint_t gzip,
    ngx_str_t *out);


/* a soft purge's write: only over the value it read */

static ngx_str_t  ngx_http_cache_guard_purge_cas = ngx_string(
    "if redis.call('GET', KEYS[1]) == ARGV[1] then "
    "return redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) end "
    "return 0");


/* this node's listener: worker 0 only */

static ngx_http_cache_guard_redis_t      *ngx_http_cache_guard_sub;
static ngx_http_cache_guard_redis_cmd_t  *ngx_http_cache_guard_sub_cmd;
static ngx_event_t                        ngx_http_cache_guard_sub_tick;
static ngx_str_t                          ngx_http_cache_guard_sub_channel;
static ngx_http_cache_guard_main_conf_t  *ngx_http_cache_guard_sub_mcf;


ngx_int_t
ngx_http_cache_guard_purge_handler(ngx_http_request_t *r)
{
    u_char                            *dst, *src;
    ngx_str_t                          arg, value;
    ngx_uint_t                         is_key;
    ngx_pool_cleanup_t                *cln;
    ngx_http_cache_guard_purge_t      *pu;
    ngx_http_cache_guard_main_conf_t  *mcf;

    if (r->method != NGX_HTTP_DELETE) {
        return ngx_http_cache_guard_api_allow(r, "DELETE");
    }

    pu = ngx_pcalloc(r->pool, sizeof(ngx_http_cache_guard_purge_t));
    if (pu == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    pu->request = r;
    pu->receivers = -1;

    is_key = 0;

    if (ngx_http_arg(r, (u_char *) "key", 3, &value) == NGX_OK) {
        is_key = 1;

    } else if (ngx_http_arg(r, (u_char *) "pattern", 7, &value) != NGX_OK) {
        return ngx_http_cache_guard_api_error(r, NGX_HTTP_BAD_REQUEST,
                                              "key=K or pattern=GLOB "
                                              "is missing");
    }

    /* arguments are URI-encoded: %2F, %2A, %23 are decoded */

    if (value.len == 0 || value.len > NGX_HTTP_CACHE_GUARD_MAX_KEY * 3) {
        return ngx_http_cache_guard_api_error(r, NGX_HTTP_BAD_REQUEST,
                                              "the key or pattern is empty "
                                              "or too long");
    }

    arg.data = ngx_pnalloc(r->pool, value.len);
    if (arg.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    dst = arg.data;
    src = value.data;
    ngx_unescape_uri(&dst, &src, value.len, 0);
    arg.len = dst - arg.data;

    if (arg.len == 0 || arg.len > NGX_HTTP_CACHE_GUARD_MAX_KEY) {
        return ngx_http_cache_guard_api_error(r, NGX_HTTP_BAD_REQUEST,
                                              "the key or pattern is empty "
                                              "or over %d bytes",
                                              NGX_HTTP_CACHE_GUARD_MAX_KEY);
    }

    if (is_key) {
        pu->key = arg;

    } else {
        pu->pattern = arg;
    }

    if (ngx_http_arg(r, (u_char *) "soft", 4, &value) == NGX_OK
        && !(value.len == 1 && value.data[0] == '0'))
    {
        if (pu->pattern.len) {
            return ngx_http_cache_guard_api_error(r, NGX_HTTP_BAD_REQUEST,
                                                  "a soft purge takes one "
                                                  "key");
        }

        pu->soft = 1;
    }

    /* this node first: its L1 is purged whatever Redis does */

    pu->l1 = ngx_http_cache_guard_purge_local(pu->key.len ? &pu->key : NULL,
                                              pu->pattern.len ? &pu->pattern
                                                              : NULL,
                                              pu->soft);

    mcf = ngx_http_get_module_main_conf(r, ngx_http_cache_guard_module);
    pu->redis = mcf->redis;

    if (pu->redis == NULL) {
        return ngx_http_cache_guard_purge_send(pu);
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln->handler = ngx_http_cache_guard_purge_cleanup;
    cln->data = pu;

    ngx_str_set(&pu->cursor, "0");

    pu->step = pu->pattern.len ? NGX_HTTP_CACHE_GUARD_P_SCAN
               : pu->soft ? NGX_HTTP_CACHE_GUARD_P_GET
               : NGX_HTTP_CACHE_GUARD_P_UNLINK;

    if (ngx_http_cache_guard_purge_next(pu) != NGX_OK) {
        return ngx_http_cache_guard_purge_send(pu);
    }

    /* the request waits for Redis; the body, if any, is not wanted */

    if (ngx_http_discard_request_body(r) != NGX_OK) {
        r->keepalive = 0;
    }

    r->main->count++;

    return NGX_DONE;
}


/* sends the command of pu->step: NGX_OK when one is on its way */

static ngx_int_t
ngx_http_cache_guard_purge_next(ngx_http_cache_guard_purge_t *pu)
{
    int                  argc;
    u_char              *p;
    size_t               argvlen[4], i;
    ngx_str_t            rkey, rkey2, match;
    const char          *argv[4];
    ngx_http_request_t  *r;

    r = pu->request;
    argc = 0;

    switch (pu->step) {

    case NGX_HTTP_CACHE_GUARD_P_UNLINK:
        if (ngx_http_cache_guard_purge_rkey(r->pool, pu->redis, &pu->key, 0,
                                            &rkey)
            != NGX_OK
            || ngx_http_cache_guard_purge_rkey(r->pool, pu->redis, &pu->key, 1,
                                               &rkey2)
               != NGX_OK)
        {
            pu->failed = "no memory";
            return NGX_ERROR;
        }

        argv[0] = "UNLINK";
        argvlen[0] = 6;
        argv[1] = (const char *) rkey.data;
        argvlen[1] = rkey.len;
        argv[2] = (const char *) rkey2.data;
        argvlen[2] = rkey2.len;
        argc = 3;
        break;

    case NGX_HTTP_CACHE_GUARD_P_GET:
        if (ngx_http_cache_guard_purge_rkey(r->pool, pu->redis, &pu->key,
                                            pu->variant, &rkey)
            != NGX_OK)
        {
            pu->failed = "no memory";
            return NGX_ERROR;
        }

        argv[0] = "GET";
        argvlen[0] = 3;
        argv[1] = (const char *) rkey.data;
        argvlen[1] = rkey.len;
        argc = 2;
        break;

    case NGX_HTTP_CACHE_GUARD_P_SCAN:

        if (pu->scanned >= NGX_HTTP_CACHE_GUARD_PURGE_SCANS) {
            pu->failed = "redis never ended the SCAN";
            return NGX_ERROR;
        }

        /* the prefix is literal: its glob characters are escaped */

        if (pu->match.len == 0) {
            pu->match.data = ngx_pnalloc(r->pool, 2 * pu->redis->prefix.len
                               + pu->pattern.len
                               + sizeof(NGX_HTTP_CACHE_GUARD_GZIP_VARIANT));
            if (pu->match.data == NULL) {
                pu->failed = "no memory";
                return NGX_ERROR;
            }

            p = pu->match.data;

            for (i = 0; i < pu->redis->prefix.len; i++) {
                if (ngx_strchr("*?[]\\", pu->redis->prefix.data[i])) {
                    *p++ = '\\';
                }

                *p++ = pu->redis->prefix.data[i];
            }

            p = ngx_cpymem(p, pu->pattern.data, pu->pattern.len);

            if (pu->pass) {
                p = ngx_cpymem(p, NGX_HTTP_CACHE_GUARD_GZIP_VARIANT,
                               sizeof(NGX_HTTP_CACHE_GUARD_GZIP_VARIANT) - 1);
            }

            pu->match.len = p - pu->match.data;
        }

        match = pu->match;

        argv[0] = "SCAN";
        argvlen[0] = 4;
        argv[1] = (const char *) pu->cursor.data;
        argvlen[1] = pu->cursor.len;
        argv[2] = "MATCH";
        argvlen[2] = 5;
        argv[3] = (const char *) match.data;
        argvlen[3] = match.len;
        argc = 4;

        /* COUNT: how many keys Redis looks at per call, not how many match */

        {
            size_t       avl[6];
            const char  *av[6];

            ngx_memcpy(av, argv, sizeof(argv));
            ngx_memcpy(avl, argvlen, sizeof(argvlen));
            av[4] = "COUNT";
            avl[4] = 5;
            av[5] = "1000";
            avl[5] = 4;

            pu->cmd = ngx_http_cache_guard_redis_command(pu->redis,
                                             ngx_http_cache_guard_purge_reply,
                                             pu, 6, av, avl);

            if (pu->cmd == NULL) {
                pu->failed = "redis is not available";
                return NGX_ERROR;
            }

            return NGX_OK;
        }

    default: /* NGX_HTTP_CACHE_GUARD_P_PUBLISH */
        return ngx_http_cache_guard_purge_publish(pu);
    }

    pu->cmd = ngx_http_cache_guard_redis_command(pu->redis,
                                             ngx_http_cache_guard_purge_reply,
                                             pu, argc, argv, argvlen);

    if (pu->cmd == NULL) {
        pu->failed = "redis is not available";
        return NGX_ERROR;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_cache_guard_purge_publish(ngx_http_cache_guard_purge_t *pu)
{
    u_char              *p;
    size_t               argvlen[3];
    ngx_str_t            channel, msg, *what;
    const char          *argv[3];
    ngx_http_request_t  *r;

    r = pu->request;
    what = pu->key.len ? &pu->key : &pu->pattern;

    channel.len = pu->redis->prefix.len + sizeof("purge") - 1;
    msg.len = sizeof("pattern \n") - 1 + NGX_INT64_LEN + what->len;

    p = ngx_pnalloc(r->pool, channel.len + msg.len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    channel.data = p;
    p = ngx_cpymem(p, pu->redis->prefix.data, pu->redis->prefix.len);
    p = ngx_cpymem(p, "purge", 5);

    /* "kind node\nwhat": a node skips its own messages */

    msg.data = p;
    p = ngx_sprintf(p, "%s %uL\n",
                    pu->pattern.len ? "pattern" : pu->soft ? "soft" : "key",
                    ngx_http_cache_guard_state
                    ? ngx_http_cache_guard_state->node : 0);
    p = ngx_cpymem(p, what->data, what->len);
    msg.len = p - msg.data;

    argv[0] = "PUBLISH";
    argvlen[0] = 7;
    argv[1] = (const char *) channel.data;
    argvlen[1] = channel.len;
    argv[2] = (const char *) msg.data;
    argvlen[2] = msg.len;

    pu->step = NGX_HTTP_CACHE_GUARD_P_PUBLISH;
    pu->cmd = ngx_http_cache_guard_redis_command(pu->redis,
                                             ngx_http_cache_guard_purge_reply,
                                             pu, 3, argv, argvlen);

    if (pu->cmd == NULL) {
        pu->failed = "redis is not available";
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void
ngx_http_cache_guard_purge_reply(redisReply *reply, void *data)
{
    ngx_http_cache_guard_purge_t  *pu = data;

    u_char                         px[NGX_INT64_LEN];
    uint64_t                       now;
    ngx_int_t                      rc;
    ngx_str_t                      rkey, blob, args[3];
    ngx_connection_t              *c;
    ngx_http_request_t            *r;
    ngx_http_cache_guard_entry_t   e;

    r = pu->request;
    c = r->connection;
    pu->cmd = NULL;
    rc = NGX_OK;

    if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
        pu->failed = reply ? "redis answered an error" : "redis failed";
        goto done;
    }

    switch (pu->step) {

    case NGX_HTTP_CACHE_GUARD_P_UNLINK:
        if (reply->type == REDIS_REPLY_INTEGER && reply->integer > 0) {
            pu->deleted += (ngx_uint_t) reply->integer;
        }

        /* a pattern's batch: on with the SCAN until its cursor is 0 */

        if (pu->pattern.len
            && !(pu->cursor.len == 1 && pu->cursor.data[0] == '0'))
        {
            pu->step = NGX_HTTP_CACHE_GUARD_P_SCAN;
            rc = ngx_http_cache_guard_purge_next(pu);

        } else if (pu->pattern.len) {
            rc = ngx_http_cache_guard_purge_scanned_all(pu);

        } else {
            rc = ngx_http_cache_guard_purge_publish(pu);
        }

        break;

    case NGX_HTTP_CACHE_GUARD_P_GET:

        /* soft: the entry is made stale now and written back as it was */

        if (reply->type == REDIS_REPLY_STRING
            && (blob.data = ngx_pnalloc(r->pool, reply->len)) != NULL)
        {
            ngx_memcpy(blob.data, reply->str, reply->len);
            blob.len = reply->len;
            now = ngx_http_cache_guard_now();

            if (ngx_http_cache_guard_entry_expire(blob.data, blob.len, now)
                == NGX_OK
                && ngx_http_cache_guard_entry_decode(blob.data, blob.len, &e,
                                                     0)
                   == NGX_OK
                && e.stale_until > now
                && ngx_http_cache_guard_purge_rkey(r->pool, pu->redis,
                                                   &pu->key, pu->variant,
                                                   &rkey)
                   == NGX_OK)
            {
                /*
                 * Compare and set: a fill stored since the GET is newer
                 * and stays; PX: the entry's stale window.
                 */

                args[0].data = (u_char *) reply->str;
                args[0].len = reply->len;
                args[1] = blob;
                args[2].data = px;
                args[2].len = ngx_sprintf(px, "%uL", e.stale_until - now) - px;

                pu->step = NGX_HTTP_CACHE_GUARD_P_SET;
                pu->cmd = ngx_http_cache_guard_redis_script(pu->redis, "EVAL",
                                             &ngx_http_cache_guard_purge_cas,
                                             &rkey, 3, args,
                                             ngx_http_cache_guard_purge_reply,
                                             pu);

                if (pu->cmd == NULL) {
                    pu->failed = "redis is not available";
                    goto done;
                }

                return;
            }
        }

        /* nothing fresh to make stale: the next variant */

        /* fall through */

    case NGX_HTTP_CACHE_GUARD_P_SET:
        if (pu->step == NGX_HTTP_CACHE_GUARD_P_SET
            && reply->type == REDIS_REPLY_STATUS)
        {
            pu->deleted++;
        }

        if (pu->variant == 0) {
            pu->variant = 1;
            pu->step = NGX_HTTP_CACHE_GUARD_P_GET;
            rc = ngx_http_cache_guard_purge_next(pu);

        } else {
            rc = ngx_http_cache_guard_purge_publish(pu);
        }

        break;

    case NGX_HTTP_CACHE_GUARD_P_SCAN:
        rc = ngx_http_cache_guard_purge_scanned(pu, reply);
        break;

    default: /* NGX_HTTP_CACHE_GUARD_P_PUBLISH */
        if (reply->type == REDIS_REPLY_INTEGER) {
            pu->receivers = (ngx_int_t) reply->integer;
        }

        goto done;
    }

    if (rc == NGX_OK && pu->cmd) {
        return;
    }

    if (pu->failed == NULL) {
        pu->failed = "redis is not available";
    }

done:

    ngx_http_finalize_request(r, ngx_http_cache_guard_purge_send(pu));
    ngx_http_run_posted_requests(c);
}


/* a SCAN reply: UNLINK what it found (never a lock), then SCAN on */

static ngx_int_t
ngx_http_cache_guard_purge_scanned(ngx_http_cache_guard_purge_t *pu,
    redisReply *reply)
{
    size_t                            *argvlen;
    ngx_uint_t                         i, n;
    redisReply                        *keys, *k;
    const char                       **argv;
    ngx_http_request_t                *r;
    ngx_http_cache_guard_redis_t      *rd;

    r = pu->request;
    rd = pu->redis;

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2
        || reply->element[0]->type != REDIS_REPLY_STRING
        || reply->element[0]->len > 20
        || reply->element[1]->type != REDIS_REPLY_ARRAY)
    {
        pu->failed = "redis answered SCAN with something else";
        return NGX_ERROR;
    }

    pu->cursor.len = reply->element[0]->len;
    pu->cursor.data = pu->cursor_buf;
    ngx_memcpy(pu->cursor.data, reply->element[0]->str, pu->cursor.len);

    keys = reply->element[1];
    pu->scanned++;

    /* one array for every batch: a big purge must not grow the pool */

    if (keys->elements + 1 > pu->nargv) {
        pu->nargv = keys->elements + 1;
        pu->argv = ngx_palloc(r->pool, pu->nargv * sizeof(char *));
        pu->argvlen = ngx_palloc(r->pool, pu->nargv * sizeof(size_t));
        if (pu->argv == NULL || pu->argvlen == NULL) {
            return NGX_ERROR;
        }
    }

    argv = pu->argv;
    argvlen = pu->argvlen;

    argv[0] = "UNLINK";
    argvlen[0] = 6;
    n = 1;

    for (i = 0; i < keys->elements; i++) {
        k = keys->element[i];

        if (k->type != REDIS_REPLY_STRING) {
            continue;
        }

        /* fill locks belong to their holders */

        if ((size_t) k->len >= rd->prefix.len + 5
            && ngx_strncmp(k->str + rd->prefix.len, "lock:", 5) == 0)
        {
            continue;
        }

        /* the command is formatted at once: the reply's bytes will do */

        argv[n] = k->str;
        argvlen[n++] = k->len;
    }

    if (n > 1) {
        pu->step = NGX_HTTP_CACHE_GUARD_P_UNLINK;
        pu->cmd = ngx_http_cache_guard_redis_command(rd,
                                             ngx_http_cache_guard_purge_reply,
                                             pu, (int) n, argv, argvlen);

        if (pu->cmd == NULL) {
            pu->failed = "redis is not available";
            return NGX_ERROR;
        }

        /* after the UNLINK: on with the SCAN, unless it ended */
        return NGX_OK;
    }

    if (pu->cursor.len == 1 && pu->cursor.data[0] == '0') {
        return ngx_http_cache_guard_purge_scanned_all(pu);
    }

    return ngx_http_cache_guard_purge_next(pu);
}


/*
 * A SCAN ended.  The gzip variant of a key is the key, a NUL and "gzip":
 * a glob that matches the key does not match it unless it ends in "*",
 * so a second SCAN looks for PATTERN\0gzip, as L1 purges the variants of
 * the keys the glob matches.
 */

static ngx_int_t
ngx_http_cache_guard_purge_scanned_all(ngx_http_cache_guard_purge_t *pu)
{
    size_t  n;

    if (pu->pass == 0) {
        n = pu->pattern.len;

        if (!(n && pu->pattern.data[n - 1] == '*'
              && (n == 1 || pu->pattern.data[n - 2] != '\\')))
        {
            pu->pass = 1;
            pu->match.len = 0;
            pu->scanned = 0;
            ngx_str_set(&pu->cursor, "0");
            pu->step = NGX_HTTP_CACHE_GUARD_P_SCAN;

            return ngx_http_cache_guard_purge_next(pu);
        }
    }

    return ngx_http_cache_guard_purge_publish(pu);
}


static ngx_int_t
ngx_http_cache_guard_purge_send(ngx_http_cache_guard_purge_t *pu)
{
    u_char              *p, *start;
    size_t               len;
    ngx_str_t           *what;
    ngx_http_request_t  *r;

    r = pu->request;
    what = pu->key.len ? &pu->key : &pu->pattern;

    len = 256 + what->len * 6;

    start = ngx_pnalloc(r->pool, len);
    if (start == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_sprintf(start, "{\"%s\": \"", pu->key.len ? "key" : "pattern");
    p = (u_char *) ngx_http_cache_guard_escape_json(p, what->data,
                                                    what->len);
    p = ngx_sprintf(p, "\", \"soft\": %s, \"l1\": %ui",
                    pu->soft ? "true" : "false", pu->l1);

    if (pu->redis) {
        p = ngx_sprintf(p, ", \"redis\": %ui, \"nodes\": %i",
                        pu->deleted, pu->receivers);
    }

    /* nothing here nor in Redis: a typo in the key shows */

    p = ngx_sprintf(p, ", \"found\": %s",
                    (pu->l1 || pu->deleted) ? "true" : "false");

    if (pu->failed) {
        p = ngx_sprintf(p, ", \"error\": \"%s: purged from this node's L1 "
                        "only, or in part\"", pu->failed);
    }

    p = ngx_cpymem(p, "}\n", 2);

    /* Redis failed: the other nodes and Redis may still hold the key */

    return ngx_http_cache_guard_api_send(r, pu->failed
                                              ? NGX_HTTP_SERVICE_UNAVAILABLE
                                              : NGX_HTTP_OK,
                                         start, p - start);
}


static void
ngx_http_cache_guard_purge_cleanup(void *data)
{
    ngx_http_cache_guard_purge_t  *pu = data;

    if (pu->cmd) {
        ngx_http_cache_guard_redis_cancel(pu->cmd);
        pu->cmd = NULL;
    }
}


static ngx_int_t
ngx_http_cache_guard_purge_rkey(ngx_pool_t *pool,
    ngx_http_cache_guard_redis_t *rd, ngx_str_t *key, ngx_uint_t gzip,
    ngx_str_t *out)
{
    u_char  *p;

    out->len = rd->prefix.len + key->len
               + (gzip ? sizeof(NGX_HTTP_CACHE_GUARD_GZIP_VARIANT) - 1 : 0);
    out->data = ngx_pnalloc(pool, out->len);
    if (out->data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(out->data, rd->prefix.data, rd->prefix.len);
    p = ngx_cpymem(p, key->data, key->len);

    if (gzip) {
        ngx_memcpy(p, NGX_HTTP_CACHE_GUARD_GZIP_VARIANT,
                   sizeof(NGX_HTTP_CACHE_GUARD_GZIP_VARIANT) - 1);
    }

    return NGX_OK;
}


/* every zone of this node: the key and its gzip variant, or the glob */

static ngx_uint_t
ngx_http_cache_guard_purge_local(ngx_str_t *key, ngx_str_t *pattern,
    ngx_uint_t soft)
{
    u_char                             buf[NGX_HTTP_CACHE_GUARD_MAX_KEY + 8];
    ngx_str_t                          gz;
    ngx_uint_t                         i, n;
    ngx_http_cache_guard_zone_t      **zones;
    ngx_http_cache_guard_main_conf_t  *mcf;

    mcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                              ngx_http_cache_guard_module);
    if (mcf == NULL) {
        return 0;
    }

    zones = mcf->zones.elts;
    n = 0;

    for (i = 0; i < mcf->zones.nelts; i++) {
        if (zones[i]->sh == NULL) {
            continue;
        }

        n += ngx_http_cache_guard_l1_purge(zones[i], key, pattern, soft);

        if (key && key->len <= NGX_HTTP_CACHE_GUARD_MAX_KEY) {
            gz.data = buf;
            gz.len = ngx_cpymem(ngx_cpymem(buf, key->data, key->len),
                                NGX_HTTP_CACHE_GUARD_GZIP_VARIANT,
                                sizeof(NGX_HTTP_CACHE_GUARD_GZIP_VARIANT) - 1)
                     - buf;
            n += ngx_http_cache_guard_l1_purge(zones[i], &gz, NULL, soft);
        }
    }

    return n;
}


/*
 * The listener: one worker per node subscribes on a connection of its own
 * and purges its L1 for every message; it subscribes again within a
 * second when that connection is lost.
 */

void
ngx_http_cache_guard_purge_init_worker(ngx_cycle_t *cycle)
{
    ngx_http_cache_guard_redis_t      *sub;
    ngx_http_cache_guard_main_conf_t  *mcf;

    mcf = ngx_http_cycle_get_module_main_conf(cycle,
                                              ngx_http_cache_guard_module);

    if (ngx_worker != 0 || mcf == NULL || mcf->redis == NULL
        || mcf->zones.nelts == 0)
    {
        return;
    }

    /* the same backend and settings, a state of its own */

    sub = ngx_http_cache_guard_redis_clone(mcf->redis, cycle->log);
    if (sub == NULL) {
        return;
    }

    /*
     * No breaker record of its own, nor the data path's: its results must
     * not open or close the data path's breaker; it only waits while that
     * one is not closed (the tick looks).
     */

    sub->rec = NULL;
    sub->breaker.enabled = 0;

    /* it connects when it subscribes, from the event loop */
    sub->lazy = 1;

    ngx_http_cache_guard_sub_channel.len = sub->prefix.len + 5;
    ngx_http_cache_guard_sub_channel.data = ngx_alloc(
                                 ngx_http_cache_guard_sub_channel.len,
                                 cycle->log);
    if (ngx_http_cache_guard_sub_channel.data == NULL) {
        ngx_free(sub);
        return;
    }

    ngx_memcpy(ngx_cpymem(ngx_http_cache_guard_sub_channel.data,
                          sub->prefix.data, sub->prefix.len), "purge", 5);

    if (ngx_http_cache_guard_redis_init_worker(sub, cycle) != NGX_OK) {
        ngx_free(sub);
        return;
    }

    ngx_http_cache_guard_sub = sub;
    ngx_http_cache_guard_sub_mcf = mcf;

    ngx_http_cache_guard_sub_tick.handler = ngx_http_cache_guard_purge_tick;
    ngx_http_cache_guard_sub_tick.data = sub;
    ngx_http_cache_guard_sub_tick.log = cycle->log;
    ngx_http_cache_guard_sub_tick.cancelable = 1;

    /* soon, but from the event loop: the worker has started by then */
    ngx_add_timer(&ngx_http_cache_guard_sub_tick, 100);
}


void
ngx_http_cache_guard_purge_exit_worker(void)
{
    if (ngx_http_cache_guard_sub) {
        ngx_http_cache_guard_redis_exit_worker(ngx_http_cache_guard_sub);
    }
}


static void
ngx_http_cache_guard_purge_tick(ngx_event_t *ev)
{
    if (ngx_exiting) {
        return;
    }

    if (ngx_http_cache_guard_sub_cmd == NULL
        && ngx_http_cache_guard_breaker_state(
               ngx_http_cache_guard_sub_mcf->redis->rec,
               &ngx_http_cache_guard_sub_mcf->redis->breaker)
           == NGX_HTTP_CACHE_GUARD_CLOSED)
    {
        ngx_http_cache_guard_sub_cmd = ngx_http_cache_guard_redis_subscribe(
                                           ngx_http_cache_guard_sub,
                                           ngx_http_cache_guard_purge_message,
                                           NULL,
                                           &ngx_http_cache_guard_sub_channel);
    }

    ngx_add_timer(ev, 1000);
}


static void
ngx_http_cache_guard_purge_message(redisReply *reply, void *data)
{
    u_char      *nl, *sp;
    uint64_t     node;
    ngx_str_t    kind, what;
    redisReply  *payload;

    if (reply == NULL) {
        /* the connection ended: subscribe again at the next tick */
        ngx_http_cache_guard_sub_cmd = NULL;
        return;
    }

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 3
        || reply->element[0]->type != REDIS_REPLY_STRING
        || reply->element[0]->len != 7
        || ngx_strncmp(reply->element[0]->str, "message", 7) != 0
        || reply->element[2]->type != REDIS_REPLY_STRING)
    {
        /* the subscription's confirmation, or something else */
        return;
    }

    payload = reply->element[2];
    nl = (u_char *) ngx_strlchr((u_char *) payload->str,
                                (u_char *) payload->str + payload->len, '\n');
    if (nl == NULL) {
        return;
    }

    kind.data = (u_char *) payload->str;
    kind.len = nl - kind.data;
    what.data = nl + 1;
    what.len = (u_char *) payload->str + payload->len - what.data;

    if (what.len == 0 || what.len > NGX_HTTP_CACHE_GUARD_MAX_KEY) {
        return;
    }

    /* "kind node": this node purged its own L1 already */

    sp = ngx_strlchr(kind.data, kind.data + kind.len, ' ');

    if (sp) {
        node = (uint64_t) ngx_atoof(sp + 1, kind.data + kind.len - sp - 1);
        kind.len = sp - kind.data;

        if (ngx_http_cache_guard_state
            && node == ngx_http_cache_guard_state->node)
        {
            return;
        }
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                   "cache guard: purge message \"%V\" \"%V\"", &kind, &what);

    /* a soft purge elsewhere: the stale copy is in Redis, drop this one */

    if (kind.len == 7 && ngx_strncmp(kind.data, "pattern", 7) == 0) {
        (void) ngx_http_cache_guard_purge_local(NULL, &what, 0);

    } else if ((kind.len == 3 && ngx_strncmp(kind.data, "key", 3) == 0)
               || (kind.len == 4 && ngx_strncmp(kind.data, "soft", 4) == 0))
    {
        (void) ngx_http_cache_guard_purge_local(&what, NULL, 0);
    }
}
