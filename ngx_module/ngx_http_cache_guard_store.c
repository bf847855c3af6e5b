
/*
 * Copyright (C) nginx-cache-guard authors
 *
 * The store: L1 entries in the shared memory zone (an rbtree for lookup, a
 * queue for LRU eviction) and the write path that sends a captured
 * response to L1 and Redis.
 */


#include "ngx_http_cache_guard_store.h"
#include "ngx_http_cache_guard_breaker.h"
#include "ngx_http_cache_guard_codec.h"
#include "ngx_http_cache_guard_policy.h"
#include "ngx_http_cache_guard_redis.h"

#include <fnmatch.h>
#include <sys/random.h>


/* bump when the layout of the zone changes: a reload then starts afresh */
#define NGX_HTTP_CACHE_GUARD_LAYOUT  0x43470004


typedef struct {
    u_char                          color;
    u_char                          negative;     /* 0, or policy index + 1 */
    u_short                         key_len;
    uint32_t                        blob_len;
    ngx_queue_t                     queue;
    uint64_t                        expires;
    u_char                          data[1];      /* key, then blob */
} ngx_http_cache_guard_l1_node_t;


static void ngx_http_cache_guard_rbtree_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel);
static ngx_http_cache_guard_l1_node_t *ngx_http_cache_guard_l1_lookup(
    ngx_http_cache_guard_zone_t *zone, ngx_str_t *key, uint32_t hash);
static void ngx_http_cache_guard_l1_free(ngx_http_cache_guard_zone_t *zone,
    ngx_http_cache_guard_l1_node_t *ln);
static ngx_uint_t ngx_http_cache_guard_l1_purge_one(
    ngx_http_cache_guard_zone_t *zone, ngx_http_cache_guard_l1_node_t *ln,
    ngx_uint_t soft, uint64_t now);
static void ngx_http_cache_guard_set_done(redisReply *reply, void *data);


#define ngx_http_cache_guard_l1_node(n)                                       \
    ((ngx_http_cache_guard_l1_node_t *) &(n)->color)

#define ngx_http_cache_guard_rb_node(ln)                                      \
    ((ngx_rbtree_node_t *)                                                    \
        ((u_char *) (ln) - offsetof(ngx_rbtree_node_t, color)))


ngx_int_t
ngx_http_cache_guard_zone_init(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_cache_guard_zone_t  *ozone = data;

    size_t                        len;
    ngx_http_cache_guard_zone_t  *zone;

    zone = shm_zone->data;

    if (ozone) {
        zone->sh = ozone->sh;
        zone->shpool = ozone->shpool;

        if (zone->sh->layout == NGX_HTTP_CACHE_GUARD_LAYOUT) {
            return NGX_OK;
        }

        /* a segment left by another version of the module */

        ngx_slab_init(zone->shpool);
        goto create;
    }

    zone->shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        zone->sh = zone->shpool->data;
        return NGX_OK;
    }

create:

    zone->sh = ngx_slab_alloc(zone->shpool,
                              sizeof(ngx_http_cache_guard_shctx_t));
    if (zone->sh == NULL) {
        return NGX_ERROR;
    }

    ngx_memzero(zone->sh, sizeof(ngx_http_cache_guard_shctx_t));

    zone->shpool->data = zone->sh;

    /*
     * The lock table's hash keys: random, kept across reloads with the
     * zone, so that no client can choose keys that share a slot.  The
     * master reads them once; getrandom() blocks only before the kernel's
     * pool is ready, early at boot.
     */

    if (getrandom(zone->sh->lock_key, sizeof(zone->sh->lock_key), 0)
        != (ssize_t) sizeof(zone->sh->lock_key))
    {
        ngx_log_error(NGX_LOG_EMERG, shm_zone->shm.log, ngx_errno,
                      "cache guard: getrandom() failed");
        return NGX_ERROR;
    }

    ngx_rbtree_init(&zone->sh->rbtree, &zone->sh->sentinel,
                    ngx_http_cache_guard_rbtree_insert);
    ngx_queue_init(&zone->sh->lru);
    ngx_queue_init(&zone->sh->lru_negative);

    len = sizeof(" in cache_guard_zone \"\"") + shm_zone->shm.name.len;

    zone->shpool->log_ctx = ngx_slab_alloc(zone->shpool, len);
    if (zone->shpool->log_ctx == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(zone->shpool->log_ctx, " in cache_guard_zone \"%V\"%Z",
                &shm_zone->shm.name);

    /* a full zone evicts, so the slab allocator's own message is noise */
    zone->shpool->log_nomem = 0;

    zone->sh->layout = NGX_HTTP_CACHE_GUARD_LAYOUT;

    return NGX_OK;
}


/*
 * Copies a live entry into the pool: the shared copy may be evicted by
 * another worker while this request is still sending it.
 */

ngx_int_t
ngx_http_cache_guard_l1_get(ngx_http_cache_guard_zone_t *zone,
    ngx_str_t *key, ngx_pool_t *pool, ngx_str_t *blob, uint64_t now)
{
    uint32_t                         hash;
    ngx_int_t                        rc;
    ngx_http_cache_guard_l1_node_t  *ln;

    hash = ngx_http_cache_guard_crc32c(0, key->data, key->len);
    rc = NGX_DECLINED;

    ngx_shmtx_lock(&zone->shpool->mutex);

    ln = ngx_http_cache_guard_l1_lookup(zone, key, hash);

    if (ln == NULL) {
        goto done;
    }

    if (ln->expires <= now) {
        ngx_http_cache_guard_l1_free(zone, ln);
        goto done;
    }

    blob->data = ngx_pnalloc(pool, ln->blob_len);
    if (blob->data == NULL) {
        rc = NGX_ERROR;
        goto done;
    }

    blob->len = ln->blob_len;
    ngx_memcpy(blob->data, ln->data + ln->key_len, ln->blob_len);

    ngx_queue_remove(&ln->queue);
    ngx_queue_insert_head(ln->negative ? &zone->sh->lru_negative
                                       : &zone->sh->lru, &ln->queue);

    rc = NGX_OK;

done:

    ngx_shmtx_unlock(&zone->shpool->mutex);

    return rc;
}


/*
 * Purge: the entries of one key, or of keys matching a glob (as Redis'
 * MATCH: *, ?, [...], \\), deleted or, soft, made stale now.  The number
 * of entries purged.  A glob walks the whole zone under its mutex.
 */

ngx_uint_t
ngx_http_cache_guard_l1_purge(ngx_http_cache_guard_zone_t *zone,
    ngx_str_t *key, ngx_str_t *pattern, ngx_uint_t soft)
{
    u_char                           name[NGX_HTTP_CACHE_GUARD_MAX_KEY + 16];
    u_char                           glob[NGX_HTTP_CACHE_GUARD_MAX_KEY + 16];
    size_t                           literal;
    uint64_t                         now;
    ngx_uint_t                       n, i;
    ngx_queue_t                     *q, *next, *queues[2];
    ngx_http_cache_guard_l1_node_t  *ln;

    now = ngx_http_cache_guard_now();
    n = 0;

    literal = 0;

    if (pattern) {
        if (pattern->len >= sizeof(glob)) {
            return 0;
        }

        ngx_memcpy(glob, pattern->data, pattern->len);
        glob[pattern->len] = '\0';

        /* the part before the first special character: a cheap first test */

        while (literal < pattern->len
               && ngx_strchr("*?[\\", glob[literal]) == NULL)
        {
            literal++;
        }
    }

    ngx_shmtx_lock(&zone->shpool->mutex);

    if (key) {
        ln = ngx_http_cache_guard_l1_lookup(zone, key,
                                            ngx_http_cache_guard_crc32c(0,
                                                        key->data, key->len));
        if (ln) {
            n += ngx_http_cache_guard_l1_purge_one(zone, ln, soft, now);
        }

        goto done;
    }

    queues[0] = &zone->sh->lru;
    queues[1] = &zone->sh->lru_negative;

    for (i = 0; i < 2; i++) {
        for (q = ngx_queue_head(queues[i]);
             q != ngx_queue_sentinel(queues[i]);
             q = next)
        {
            next = ngx_queue_next(q);
            ln = ngx_queue_data(q, ngx_http_cache_guard_l1_node_t, queue);

            if (ln->key_len >= sizeof(name)
                || ln->key_len < literal
                || ngx_memcmp(ln->data, glob, literal) != 0)
            {
                continue;
            }

            ngx_memcpy(name, ln->data, ln->key_len);
            name[ln->key_len] = '\0';

            if (fnmatch((char *) glob, (char *) name, 0) == 0) {
                n += ngx_http_cache_guard_l1_purge_one(zone, ln, soft, now);
            }
        }
    }

done:

    ngx_shmtx_unlock(&zone->shpool->mutex);

    return n;
}


/* under the mutex: 1 if the entry was deleted or, soft, made stale */

static ngx_uint_t
ngx_http_cache_guard_l1_purge_one(ngx_http_cache_guard_zone_t *zone,
    ngx_http_cache_guard_l1_node_t *ln, ngx_uint_t soft, uint64_t now)
{
    if (!soft) {
        ngx_http_cache_guard_l1_free(zone, ln);
        return 1;
    }

    return ngx_http_cache_guard_entry_expire(ln->data + ln->key_len,
                                             ln->blob_len, now)
           == NGX_OK;
}


/*
 * Negative entries have a queue of their own and go first when the zone
 * is full, so a flood of keys that do not exist never evicts hot entries;
 * a policy keeps at most negative_max of them.
 */

ngx_int_t
ngx_http_cache_guard_l1_put(ngx_http_cache_guard_zone_t *zone,
    ngx_str_t *key, ngx_str_t *blob, uint64_t expires, ngx_log_t *log,
    ngx_http_cache_guard_policy_t *pl, ngx_uint_t negative)
{
    size_t                           size;
    uint32_t                         hash;
    ngx_uint_t                       evicted;
    ngx_queue_t                     *q, *lru;
    ngx_rbtree_node_t               *node;
    ngx_http_cache_guard_l1_node_t  *ln;

    size = offsetof(ngx_rbtree_node_t, color)
           + offsetof(ngx_http_cache_guard_l1_node_t, data)
           + key->len + blob->len;

    /* one entry may not take more than a quarter of the zone */

    if (key->len > 0xffff || size > zone->size / 4) {
        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, log, 0,
                       "cache guard: entry of %uz bytes too large for l1 "
                       "zone \"%V\"", size, &zone->name);
        return NGX_DECLINED;
    }

    hash = ngx_http_cache_guard_crc32c(0, key->data, key->len);
    evicted = 0;

    ngx_shmtx_lock(&zone->shpool->mutex);

    ln = ngx_http_cache_guard_l1_lookup(zone, key, hash);
    if (ln) {
        ngx_http_cache_guard_l1_free(zone, ln);
    }

    if (negative && zone->sh->negative[pl->index] >= pl->negative_max) {
        ngx_shmtx_unlock(&zone->shpool->mutex);
        return NGX_DECLINED;
    }

    for ( ;; ) {
        node = ngx_slab_alloc_locked(zone->shpool, size);
        if (node) {
            break;
        }

        lru = &zone->sh->lru_negative;

        if (ngx_queue_empty(lru)) {
            lru = &zone->sh->lru;
        }

        if (ngx_queue_empty(lru)) {
            ngx_shmtx_unlock(&zone->shpool->mutex);
            return NGX_DECLINED;
        }

        q = ngx_queue_last(lru);
        ln = ngx_queue_data(q, ngx_http_cache_guard_l1_node_t, queue);
        ngx_http_cache_guard_l1_free(zone, ln);
        zone->sh->evictions++;
        evicted++;
    }

    node->key = hash;
    ln = ngx_http_cache_guard_l1_node(node);
    ln->key_len = (u_short) key->len;
    ln->blob_len = (uint32_t) blob->len;
    ln->expires = expires;
    ln->negative = negative ? (u_char) (pl->index + 1) : 0;
    ngx_memcpy(ln->data, key->data, key->len);
    ngx_memcpy(ln->data + key->len, blob->data, blob->len);

    ngx_rbtree_insert(&zone->sh->rbtree, node);

    if (negative) {
        ngx_queue_insert_head(&zone->sh->lru_negative, &ln->queue);
        zone->sh->negative[pl->index]++;

    } else {
        ngx_queue_insert_head(&zone->sh->lru, &ln->queue);
    }

    zone->sh->entries++;
    zone->sh->bytes += size;

    ngx_shmtx_unlock(&zone->shpool->mutex);

    if (evicted && !zone->full_logged) {
        zone->full_logged = 1;
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "cache guard: zone \"%V\" is full, evicting least "
                      "recently used entries", &zone->name);
    }

    return NGX_OK;
}


/*
 * The write path, at the end of a captured response: encode, then L1 and
 * Redis (SET PX with the jittered TTL).  The Redis write is fire and
 * forget: the request does not wait for it.
 */

void
ngx_http_cache_guard_store(ngx_http_request_t *r,
    ngx_http_cache_guard_ctx_t *ctx)
{
    u_char                            *p, px[NGX_INT64_LEN];
    size_t                             argvlen[5];
    uint64_t                           now, ttl;
    ngx_str_t                          blob;
    const char                        *argv[5];
    ngx_http_cache_guard_entry_t       e;
    ngx_http_cache_guard_redis_t      *rd;
    ngx_http_cache_guard_policy_t     *pl;
    ngx_http_cache_guard_main_conf_t  *mcf;

    pl = ctx->policy;
    now = ngx_http_cache_guard_now();

    ngx_memzero(&e, sizeof(ngx_http_cache_guard_entry_t));

    /* nginx's range and not-modified filters change it after ours */
    e.status = ctx->fill_status;

    if (ngx_http_cache_guard_policy_has_status(pl->negative_statuses,
                                               pl->nnegative, e.status))
    {
        e.flags = NGX_HTTP_CACHE_GUARD_ENTRY_NEGATIVE;
        ttl = pl->negative_ttl;

    } else {
        ttl = pl->ttl;
    }

    if (ttl == 0) {
        return;
    }

    ttl = ngx_http_cache_guard_jitter_ttl(ttl, pl->jitter,
                                          (double) ngx_random() / 2147483648.0);

    e.created = now;
    e.fresh_until = now + ttl;

    /* kept past fresh-until for stale-while-revalidate and stale-if-error */
    e.stale_until = e.fresh_until
                    + ngx_max(pl->while_revalidate, pl->if_error);
    e.fill_ms = (uint32_t) (ngx_current_msec - ctx->fill_start);
    e.nheaders = ctx->headers.nelts;
    e.headers = ctx->headers.elts;
    e.body.data = ctx->body->pos;
    e.body.len = ctx->body->last - ctx->body->pos;

    blob.len = ngx_http_cache_guard_entry_size(&e);
    blob.data = ngx_pnalloc(r->pool, blob.len);
    if (blob.data == NULL) {
        return;
    }

    ngx_http_cache_guard_entry_encode(blob.data, &e);

    /* what a lookup would refuse to read back is not written */

    if (blob.len > NGX_HTTP_CACHE_GUARD_ENTRY_MAX(pl)) {
        return;
    }

    ctx->stored = (ngx_http_cache_guard_l1_keep(r, ctx, &blob, &e) == NGX_OK);

    mcf = ngx_http_get_module_main_conf(r, ngx_http_cache_guard_module);
    rd = mcf->redis;

    if (rd == NULL) {
        goto done;
    }

    p = ngx_sprintf(px, "%uL", e.stale_until - now);

    argv[0] = "SET";
    argvlen[0] = 3;
    argv[1] = (const char *) ctx->rkey.data;
    argvlen[1] = ctx->rkey.len;
    argv[2] = (const char *) blob.data;
    argvlen[2] = blob.len;
    argv[3] = "PX";
    argvlen[3] = 2;
    argv[4] = (const char *) px;
    argvlen[4] = p - px;

    if (ngx_http_cache_guard_redis_command(rd, ngx_http_cache_guard_set_done,
                                           rd, 5, argv, argvlen)
        != NULL)
    {
        ctx->stored = 1;
    }

done:

    /*
     * a warm-up's pool lives until its URI is done: the copies are given
     * back now (the command has its own)
     */

    if (ctx->warm) {
        ngx_pfree(r->pool, blob.data);
        ngx_pfree(r->pool, ctx->body->start);
    }
}


/*
 * A node keeps its L1 copy for at most l1.ttl; with Redis the default is
 * short, because other nodes may change the key there.
 */

ngx_int_t
ngx_http_cache_guard_l1_keep(ngx_http_request_t *r,
    ngx_http_cache_guard_ctx_t *ctx, ngx_str_t *blob,
    ngx_http_cache_guard_entry_t *e)
{
    uint64_t                           expires, now;
    ngx_http_cache_guard_policy_t     *pl;
    ngx_http_cache_guard_main_conf_t  *mcf;

    pl = ctx->policy;

    if (!pl->l1) {
        return NGX_DECLINED;
    }

    now = ngx_http_cache_guard_now();
    expires = e->stale_until;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_cache_guard_module);

    /*
     * With Redis' breaker open L1 is the only copy, and the origin's only
     * shield: it keeps the entry for its whole life, whether l1.ttl was
     * written or not.
     */

    if (mcf->redis
        && ngx_http_cache_guard_breaker_state(mcf->redis->rec,
                                              &mcf->redis->breaker)
           != NGX_HTTP_CACHE_GUARD_CLOSED)
    {
        /* void */

    } else if (pl->l1_ttl != NGX_CONF_UNSET_MSEC) {
        expires = ngx_min(expires, now + pl->l1_ttl);

    } else if (mcf->redis) {
        expires = ngx_min(expires, now + 5000);
    }

    return ngx_http_cache_guard_l1_put(ctx->zone, &ctx->key, blob, expires,
                                       r->connection->log, pl,
                                       e->flags
                                       & NGX_HTTP_CACHE_GUARD_ENTRY_NEGATIVE);
}


static void
ngx_http_cache_guard_set_done(redisReply *reply, void *data)
{
    ngx_http_cache_guard_redis_t  *rd = data;

    /* rate-limited: a full or read-only Redis fails every SET */

    if (reply && reply->type == REDIS_REPLY_ERROR) {
        ngx_http_cache_guard_redis_error(rd,
                                         "cache guard: redis \"%V\" SET "
                                         "failed: %*s", &rd->addr_text,
                                         (size_t) ngx_min(reply->len, 256),
                                         reply->str);
    }
}


static ngx_http_cache_guard_l1_node_t *
ngx_http_cache_guard_l1_lookup(ngx_http_cache_guard_zone_t *zone,
    ngx_str_t *key, uint32_t hash)
{
    ngx_int_t                        rc;
    ngx_rbtree_node_t               *node, *sentinel;
    ngx_http_cache_guard_l1_node_t  *ln;

    node = zone->sh->rbtree.root;
    sentinel = zone->sh->rbtree.sentinel;

    while (node != sentinel) {

        if (hash < node->key) {
            node = node->left;
            continue;
        }

        if (hash > node->key) {
            node = node->right;
            continue;
        }

        ln = ngx_http_cache_guard_l1_node(node);

        rc = ngx_memn2cmp(key->data, ln->data, key->len,
                          (size_t) ln->key_len);

        if (rc == 0) {
            return ln;
        }

        node = (rc < 0) ? node->left : node->right;
    }

    return NULL;
}


static void
ngx_http_cache_guard_l1_free(ngx_http_cache_guard_zone_t *zone,
    ngx_http_cache_guard_l1_node_t *ln)
{
    ngx_rbtree_node_t  *node;

    node = ngx_http_cache_guard_rb_node(ln);

    ngx_queue_remove(&ln->queue);
    ngx_rbtree_delete(&zone->sh->rbtree, node);

    if (ln->negative) {
        zone->sh->negative[ln->negative - 1]--;
    }

    zone->sh->entries--;
    zone->sh->bytes -= offsetof(ngx_rbtree_node_t, color)
                       + offsetof(ngx_http_cache_guard_l1_node_t, data)
                       + ln->key_len + ln->blob_len;

    ngx_slab_free_locked(zone->shpool, node);
}


static void
ngx_http_cache_guard_rbtree_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel)
{
    ngx_rbtree_node_t               **p;
    ngx_http_cache_guard_l1_node_t   *ln, *lnt;

    for ( ;; ) {

        if (node->key < temp->key) {
            p = &temp->left;

        } else if (node->key > temp->key) {
            p = &temp->right;

        } else {
            ln = ngx_http_cache_guard_l1_node(node);
            lnt = ngx_http_cache_guard_l1_node(temp);

            p = (ngx_memn2cmp(ln->data, lnt->data, ln->key_len,
                              lnt->key_len) < 0)
                ? &temp->left : &temp->right;
        }

        if (*p == sentinel) {
            break;
        }

        temp = *p;
    }

    *p = node;
    node->parent = temp;
    node->left = sentinel;
    node->right = sentinel;
    ngx_rbt_red(node);
}
