
/*
 * Copyright (C) nginx-cache-guard authors
 *
 * Bloom filters and Redis: one worker per node merges the Redis bitmap
 * every node shares into the zone every sync= interval, and the admin
 * API's adds are written through to it (BITFIELD SET u1).  The bitmap is
 * a byte for byte copy of the zone's bits (see sbbf.c).
 */


#include "ngx_http_cache_guard_bloom_sync.h"
#include "ngx_http_cache_guard_bloom.h"
#include "ngx_http_cache_guard_redis.h"
#include "ngx_http_cache_guard_sbbf.h"

#include <math.h>


/* one GETRANGE reply: Redis and the worker stay responsive */
#define NGX_HTTP_CACHE_GUARD_BLOOM_CHUNK         65536

/* items per BITFIELD command: 8 SET operations each, about 256 KiB */
#define NGX_HTTP_CACHE_GUARD_BLOOM_BATCH         256


/* a write-through of added items to Redis, one command at a time */

typedef struct {
    ngx_http_cache_guard_bloom_t   *bf;
    uint64_t                       *hashes;
    ngx_uint_t                      n;
    ngx_uint_t                      next;
    ngx_http_cache_guard_redis_cmd_t  *cmd;
    const char                    **argv;
    size_t                         *argvlen;
    u_char                         *offsets;      /* decimal bit offsets */
    ngx_http_cache_guard_bloom_done_pt  done;
    void                           *data;
} ngx_http_cache_guard_bloom_push_t;


static void ngx_http_cache_guard_bloom_sync_start(ngx_event_t *ev);
static void ngx_http_cache_guard_bloom_sync_next(
    ngx_http_cache_guard_bloom_t *bf);
static void ngx_http_cache_guard_bloom_sync_later(
    ngx_http_cache_guard_bloom_t *bf);
static void ngx_http_cache_guard_bloom_strlen_done(redisReply *reply,
    void *data);
static void ngx_http_cache_guard_bloom_getrange_done(redisReply *reply,
    void *data);
static void ngx_http_cache_guard_bloom_sync_end(
    ngx_http_cache_guard_bloom_t *bf);
static uint64_t ngx_http_cache_guard_bloom_merge(u_char *dst, u_char *src,
    size_t len);
static ngx_int_t ngx_http_cache_guard_bloom_push_next(
    ngx_http_cache_guard_bloom_push_t *ps);
static void ngx_http_cache_guard_bloom_push_done(redisReply *reply,
    void *data);
static void ngx_http_cache_guard_bloom_push_cleanup(void *data);
static void ngx_http_cache_guard_bloom_failed(ngx_http_cache_guard_bloom_t *bf,
    const char *command, redisReply *reply);


static const char  ngx_http_cache_guard_bloom_strlen[] = "STRLEN";
static const char  ngx_http_cache_guard_bloom_getrange[] = "GETRANGE";
static const char  ngx_http_cache_guard_bloom_bitfield[] = "BITFIELD";
static const char  ngx_http_cache_guard_bloom_set_op[] = "SET";
static const char  ngx_http_cache_guard_bloom_u1[] = "u1";
static const char  ngx_http_cache_guard_bloom_one[] = "1";


/*
 * One worker per node merges the Redis bitmap into the zone every sync=
 * interval: STRLEN, then GETRANGE chunks one after the other, each OR-ed
 * into shared memory, never one huge reply.  The other workers share the
 * zone and need not.
 */

ngx_int_t
ngx_http_cache_guard_bloom_sync_init_worker(ngx_cycle_t *cycle)
{
    ngx_uint_t                         i;
    ngx_http_cache_guard_bloom_t     **bfp, *bf;
    ngx_http_cache_guard_main_conf_t  *mcf;

    mcf = ngx_http_cycle_get_module_main_conf(cycle,
                                              ngx_http_cache_guard_module);

    if (mcf == NULL || ngx_worker != 0) {
        return NGX_OK;
    }

    bfp = mcf->blooms.elts;

    for (i = 0; i < mcf->blooms.nelts; i++) {
        bf = bfp[i];

        if (bf->redis_key.len == 0) {
            continue;
        }

        /* no request waits on it: a graceful shutdown need not either */

        bf->sync_timer.handler = ngx_http_cache_guard_bloom_sync_start;
        bf->sync_timer.data = bf;
        bf->sync_timer.log = cycle->log;
        bf->sync_timer.cancelable = 1;

        /* the first merge at once: a filter without a file waits for it */

        ngx_add_timer(&bf->sync_timer, 1);
    }

    return NGX_OK;
}


static void
ngx_http_cache_guard_bloom_sync_start(ngx_event_t *ev)
{
    ngx_http_cache_guard_bloom_t  *bf = ev->data;

    size_t       argvlen[2];
    const char  *argv[2];

    argv[0] = ngx_http_cache_guard_bloom_strlen;
    argvlen[0] = sizeof(ngx_http_cache_guard_bloom_strlen) - 1;
    argv[1] = (const char *) bf->redis_key.data;
    argvlen[1] = bf->redis_key.len;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, ev->log, 0,
                   "cache guard: bloom \"%V\" sync", &bf->name);

    /* the client logs why it could not send; try again next time */

    if (ngx_http_cache_guard_redis_command(bf->redis,
                                     ngx_http_cache_guard_bloom_strlen_done,
                                     bf, 2, argv, argvlen)
        == NULL)
    {
        ngx_http_cache_guard_bloom_sync_later(bf);
    }
}


static void
ngx_http_cache_guard_bloom_sync_later(ngx_http_cache_guard_bloom_t *bf)
{
    if (ngx_exiting || bf->redis->exiting) {
        return;
    }

    ngx_add_timer(&bf->sync_timer, bf->sync);
}


static void
ngx_http_cache_guard_bloom_strlen_done(redisReply *reply, void *data)
{
    ngx_http_cache_guard_bloom_t  *bf = data;

    if (reply == NULL) {
        ngx_http_cache_guard_bloom_sync_later(bf);
        return;
    }

    if (reply->type != REDIS_REPLY_INTEGER) {
        ngx_http_cache_guard_bloom_failed(bf,
                                          ngx_http_cache_guard_bloom_strlen,
                                          reply);
        ngx_http_cache_guard_bloom_sync_later(bf);
        return;
    }

    /*
     * a key not written yet is not an empty set: the filter stays
     * unloaded (requests pass) until something is added
     */

    if (reply->integer == 0) {
        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, bf->sync_timer.log, 0,
                       "cache guard: bloom \"%V\": no redis key \"%V\" yet",
                       &bf->name, &bf->redis_key);
        ngx_http_cache_guard_bloom_sync_later(bf);
        return;
    }

    if (reply->integer < 0 || (uint64_t) reply->integer > bf->bytes) {
        ngx_http_cache_guard_redis_error(bf->redis,
                            "cache guard: bloom \"%V\": redis key \"%V\" "
                            "holds %L bytes, more than the filter's %uz: "
                            "do all nodes declare the same capacity and "
                            "error_rate?", &bf->name, &bf->redis_key,
                            (int64_t) reply->integer, bf->bytes);
        ngx_http_cache_guard_bloom_sync_later(bf);
        return;
    }

    bf->sync_len = (size_t) reply->integer;
    bf->sync_off = 0;
    bf->sync_set = 0;

    ngx_http_cache_guard_bloom_sync_next(bf);
}


static void
ngx_http_cache_guard_bloom_sync_next(ngx_http_cache_guard_bloom_t *bf)
{
    u_char      *p;
    size_t       last, argvlen[4];
    const char  *argv[4];

    last = ngx_min(bf->sync_off + NGX_HTTP_CACHE_GUARD_BLOOM_CHUNK,
                   bf->sync_len) - 1;

    argv[0] = ngx_http_cache_guard_bloom_getrange;
    argvlen[0] = sizeof(ngx_http_cache_guard_bloom_getrange) - 1;
    argv[1] = (const char *) bf->redis_key.data;
    argvlen[1] = bf->redis_key.len;

    p = bf->range;
    argv[2] = (const char *) p;
    p = ngx_sprintf(p, "%uz", bf->sync_off);
    argvlen[2] = p - bf->range;
    argv[3] = (const char *) p;
    argvlen[3] = ngx_sprintf(p, "%uz", last) - p;

    if (ngx_http_cache_guard_redis_command(bf->redis,
                                     ngx_http_cache_guard_bloom_getrange_done,
                                     bf, 4, argv, argvlen)
        == NULL)
    {
        ngx_http_cache_guard_bloom_sync_later(bf);
    }
}


static void
ngx_http_cache_guard_bloom_getrange_done(redisReply *reply, void *data)
{
    ngx_http_cache_guard_bloom_t  *bf = data;

    size_t  len;

    if (reply == NULL) {
        ngx_http_cache_guard_bloom_sync_later(bf);
        return;
    }

    if (reply->type != REDIS_REPLY_STRING) {
        ngx_http_cache_guard_bloom_failed(bf,
                                          ngx_http_cache_guard_bloom_getrange,
                                          reply);
        ngx_http_cache_guard_bloom_sync_later(bf);
        return;
    }

    /* the key may have been replaced by a longer one meanwhile */

    len = ngx_min((size_t) reply->len, bf->bytes - bf->sync_off);

    bf->sync_set += ngx_http_cache_guard_bloom_merge(bf->bits + bf->sync_off,
                                                     (u_char *) reply->str,
                                                     len);
    bf->sync_off += len;

    if (len == 0 || bf->sync_off >= bf->sync_len) {
        ngx_http_cache_guard_bloom_sync_end(bf);
        return;
    }

    ngx_http_cache_guard_bloom_sync_next(bf);
}


static void
ngx_http_cache_guard_bloom_sync_end(ngx_http_cache_guard_bloom_t *bf)
{
    double                            fill;
    uint64_t                          nblocks;
    ngx_atomic_uint_t                 items, old;
    ngx_http_cache_guard_bloom_sh_t  *sh;

    sh = bf->sh;

    /* the key went away between STRLEN and GETRANGE */

    if (bf->sync_off == 0) {
        ngx_http_cache_guard_bloom_sync_later(bf);
        return;
    }

    /*
     * a node that learns its items from Redis only estimates them from
     * the bits set: every item sets one bit in each of 8 words of 32 bits
     */

    nblocks = (bf->sync_off + NGX_HTTP_CACHE_GUARD_BLOOM_BLOCK - 1)
              / NGX_HTTP_CACHE_GUARD_BLOOM_BLOCK;
    fill = (double) bf->sync_set / (nblocks * 256);

    if (fill < 1.0) {
        items = (ngx_atomic_uint_t) (nblocks * log(1.0 - fill)
                                     / log(31.0 / 32.0) + 0.5);

        for ( ;; ) {
            old = sh->items;

            if (items <= old
                || ngx_atomic_cmp_set(&sh->items, old, items))
            {
                break;
            }
        }
    }

    if (!sh->loaded) {
        ngx_log_error(NGX_LOG_NOTICE, bf->sync_timer.log, 0,
                      "cache guard: bloom \"%V\" loaded from redis key "
                      "\"%V\" (%uz bytes)", &bf->name, &bf->redis_key,
                      bf->sync_off);
        sh->loaded = 1;
    }

    sh->last_sync = ngx_time();

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, bf->sync_timer.log, 0,
                   "cache guard: bloom \"%V\" merged %uz bytes, %uL bits set",
                   &bf->name, bf->sync_off, bf->sync_set);

    ngx_http_cache_guard_bloom_sync_later(bf);
}


/*
 * ORs a chunk of the Redis bitmap into the zone, a word at a time (dst is
 * 8-byte aligned: chunks start at multiples of 64 KiB of a page), and
 * returns how many bits the range has set afterwards
 */

static uint64_t
ngx_http_cache_guard_bloom_merge(u_char *dst, u_char *src, size_t len)
{
    size_t     i;
    u_char     b;
    uint64_t   w, *d, set;

    set = 0;

    for (i = 0; i + 8 <= len; i += 8) {
        ngx_memcpy(&w, src + i, 8);
        d = (uint64_t *) (dst + i);

        if ((*d & w) != w) {
            (void) __atomic_fetch_or(d, w, __ATOMIC_RELAXED);
        }

        set += __builtin_popcountll(*d);
    }

    for ( /* void */ ; i < len; i++) {
        b = src[i];

        if ((dst[i] & b) != b) {
            (void) __atomic_fetch_or(&dst[i], b, __ATOMIC_RELAXED);
        }

        set += __builtin_popcount(dst[i]);
    }

    return set;
}


/*
 * Writes added items through to the Redis bitmap: BITFIELD SET u1 for
 * their bits, in batches, one command in flight, so that a large POST
 * neither floods the connection nor holds its whole RESP in memory.
 */

ngx_int_t
ngx_http_cache_guard_bloom_sync_push(ngx_http_cache_guard_bloom_t *bf,
    ngx_pool_t *pool, uint64_t *hashes, ngx_uint_t n,
    ngx_http_cache_guard_bloom_done_pt done, void *data)
{
    ngx_uint_t                          argc;
    ngx_pool_cleanup_t                 *cln;
    ngx_http_cache_guard_bloom_push_t  *ps;

    if (bf->redis_key.len == 0) {
        return NGX_DECLINED;
    }

    if (n == 0) {
        return NGX_OK;
    }

    ps = ngx_pcalloc(pool, sizeof(ngx_http_cache_guard_bloom_push_t));
    if (ps == NULL) {
        return NGX_ERROR;
    }

    argc = 2 + NGX_HTTP_CACHE_GUARD_BLOOM_BATCH * 8 * 4;

    ps->argv = ngx_palloc(pool, argc * sizeof(const char *));
    ps->argvlen = ngx_palloc(pool, argc * sizeof(size_t));
    ps->offsets = ngx_pnalloc(pool, NGX_HTTP_CACHE_GUARD_BLOOM_BATCH * 8
                                    * NGX_INT64_LEN);

    cln = ngx_pool_cleanup_add(pool, 0);

    if (ps->argv == NULL || ps->argvlen == NULL || ps->offsets == NULL
        || cln == NULL)
    {
        return NGX_ERROR;
    }

    ps->bf = bf;
    ps->hashes = hashes;
    ps->n = n;
    ps->done = done;
    ps->data = data;

    cln->handler = ngx_http_cache_guard_bloom_push_cleanup;
    cln->data = ps;

    return ngx_http_cache_guard_bloom_push_next(ps);
}


static ngx_int_t
ngx_http_cache_guard_bloom_push_next(ngx_http_cache_guard_bloom_push_t *ps)
{
    u_char                        *p;
    uint64_t                       bits[8];
    ngx_uint_t                     argc, i, j, last;
    ngx_http_cache_guard_bloom_t  *bf;

    bf = ps->bf;

    ps->argv[0] = ngx_http_cache_guard_bloom_bitfield;
    ps->argvlen[0] = sizeof(ngx_http_cache_guard_bloom_bitfield) - 1;
    ps->argv[1] = (const char *) bf->redis_key.data;
    ps->argvlen[1] = bf->redis_key.len;

    argc = 2;
    p = ps->offsets;
    last = ngx_min(ps->n, ps->next + NGX_HTTP_CACHE_GUARD_BLOOM_BATCH);

    for (i = ps->next; i < last; i++) {
        ngx_http_cache_guard_sbbf_bit_offsets(bf->nblocks, ps->hashes[i],
                                              bits);

        for (j = 0; j < 8; j++) {
            ps->argv[argc] = ngx_http_cache_guard_bloom_set_op;
            ps->argvlen[argc++] = sizeof(ngx_http_cache_guard_bloom_set_op)
                                  - 1;
            ps->argv[argc] = ngx_http_cache_guard_bloom_u1;
            ps->argvlen[argc++] = sizeof(ngx_http_cache_guard_bloom_u1) - 1;
            ps->argv[argc] = (const char *) p;
            p = ngx_sprintf(p, "%uL", bits[j]);
            ps->argvlen[argc] = p - (u_char *) ps->argv[argc];
            argc++;
            ps->argv[argc] = ngx_http_cache_guard_bloom_one;
            ps->argvlen[argc++] = sizeof(ngx_http_cache_guard_bloom_one) - 1;
        }
    }

    ps->cmd = ngx_http_cache_guard_redis_command(bf->redis,
                                       ngx_http_cache_guard_bloom_push_done,
                                       ps, (int) argc, ps->argv, ps->argvlen);
    if (ps->cmd == NULL) {
        ngx_http_cache_guard_redis_error(bf->redis,
                            "cache guard: bloom \"%V\": could not write "
                            "%ui items to redis key \"%V\"", &bf->name,
                            ps->n - ps->next, &bf->redis_key);
        return NGX_ERROR;
    }

    ps->next = last;

    return NGX_AGAIN;
}


static void
ngx_http_cache_guard_bloom_push_done(redisReply *reply, void *data)
{
    ngx_http_cache_guard_bloom_push_t  *ps = data;

    ngx_http_cache_guard_bloom_t  *bf;

    bf = ps->bf;
    ps->cmd = NULL;

    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY) {

        if (reply) {
            ngx_http_cache_guard_bloom_failed(bf,
                                        ngx_http_cache_guard_bloom_bitfield,
                                        reply);
        }

        ps->done(ps->data, NGX_ERROR);
        return;
    }

    if (ps->next == ps->n) {
        ps->done(ps->data, NGX_OK);
        return;
    }

    if (ngx_http_cache_guard_bloom_push_next(ps) != NGX_AGAIN) {
        ps->done(ps->data, NGX_ERROR);
    }
}


static void
ngx_http_cache_guard_bloom_push_cleanup(void *data)
{
    ngx_http_cache_guard_bloom_push_t  *ps = data;

    /* the request went away while Redis had a batch */

    if (ps->cmd) {
        ngx_http_cache_guard_redis_cancel(ps->cmd);
        ps->cmd = NULL;
    }
}


/* an error reply, logged by the Redis client: rate-limited */

static void
ngx_http_cache_guard_bloom_failed(ngx_http_cache_guard_bloom_t *bf,
    const char *command, redisReply *reply)
{
    ngx_http_cache_guard_redis_error(bf->redis,
                                     "cache guard: bloom \"%V\": %s \"%V\" "
                                     "failed: %*s", &bf->name, command,
                                     &bf->redis_key,
                                     (size_t) ngx_min(reply->len, 256),
                                     reply->str ? reply->str : "");
}
