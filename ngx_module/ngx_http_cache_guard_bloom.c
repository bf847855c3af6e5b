
/*
 * Copyright (C) nginx-cache-guard authors
 *
 * Bloom filters: a split-block Bloom filter (sbbf.c) per cache_guard_bloom
 * in its own shared memory zone: the directive, the zone, filled from a
 * file when nginx reads its configuration, and what requests, the admin
 * API and the metrics ask of it.  Its Redis side is bloom_sync.c.
 */


#include "ngx_http_cache_guard_bloom.h"
#include "ngx_http_cache_guard_sbbf.h"
#include "ngx_http_cache_guard_lines.h"


#define NGX_HTTP_CACHE_GUARD_BLOOM_MAX_CAPACITY  1000000000
#define NGX_HTTP_CACHE_GUARD_BLOOM_SYNC          10000
#define NGX_HTTP_CACHE_GUARD_BLOOM_READ          (1024 * 1024)

/* the largest Redis string (proto-max-bulk-len) */
#define NGX_HTTP_CACHE_GUARD_BLOOM_REDIS_MAX     (512 * 1024 * 1024)


typedef struct {
    ngx_http_cache_guard_bloom_t   *bf;
    ngx_uint_t                      items;
    ngx_uint_t                      added;        /* set a new bit */
} ngx_http_cache_guard_bloom_load_t;


static double ngx_http_cache_guard_bloom_fill(
    ngx_http_cache_guard_bloom_t *bf);
static ngx_http_cache_guard_bloom_t *ngx_http_cache_guard_bloom_lookup(
    ngx_http_cache_guard_main_conf_t *mcf, ngx_str_t *name);
static ngx_int_t ngx_http_cache_guard_bloom_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static ngx_int_t ngx_http_cache_guard_bloom_load_file(
    ngx_http_cache_guard_bloom_t *bf, ngx_log_t *log);
static ngx_int_t ngx_http_cache_guard_bloom_load_line(
    ngx_http_cache_guard_lines_t *ls, u_char *item, size_t len);
static void ngx_http_cache_guard_bloom_count(ngx_http_cache_guard_bloom_t *bf,
    ngx_uint_t items);


/*
 * cache_guard_bloom NAME capacity=N error_rate=P [file=PATH]
 *     [redis_key=KEY] [sync=T] [mode=enforce|shadow];
 */

char *
ngx_http_cache_guard_bloom_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_cache_guard_main_conf_t *mcf = conf;

    char                           *end;
    size_t                          size, pages;
    ngx_fd_t                        fd;
    ngx_int_t                       n, rc;
    ngx_str_t                      *value, s, zname, rate;
    ngx_uint_t                      i;
    ngx_file_info_t                 fi;
    ngx_http_cache_guard_bloom_t   *bf, **bfp;

    value = cf->args->elts;

    if (value[1].len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "cache guard: empty bloom name");
        return NGX_CONF_ERROR;
    }

    /* the name is a path segment of the admin API */

    for (i = 0; i < value[1].len; i++) {
        if (!(isalnum(value[1].data[i]) || value[1].data[i] == '_'
              || value[1].data[i] == '-' || value[1].data[i] == '.'))
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "cache guard: invalid bloom name \"%V\", "
                               "use letters, digits, \"_\", \"-\" and \".\"",
                               &value[1]);
            return NGX_CONF_ERROR;
        }
    }

    if (ngx_http_cache_guard_bloom_find(cf, &value[1])) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "cache guard: duplicate bloom \"%V\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    bf = ngx_pcalloc(cf->pool, sizeof(ngx_http_cache_guard_bloom_t));
    if (bf == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_str_null(&rate);

    bf->name = value[1];
    bf->sync = NGX_CONF_UNSET_MSEC;
    bf->mode = NGX_HTTP_CACHE_GUARD_BLOOM_ENFORCE;
    bf->mcf = mcf;
    bf->conf_file = cf->conf_file->file.name;
    bf->conf_line = cf->conf_file->line;

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "capacity=", 9) == 0) {
            n = ngx_atoi(value[i].data + 9, value[i].len - 9);

            if (n == NGX_ERROR || n < 1
                || n > NGX_HTTP_CACHE_GUARD_BLOOM_MAX_CAPACITY)
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "cache guard: invalid bloom \"%V\", "
                                   "capacity must be 1 to %d items",
                                   &value[i],
                                   NGX_HTTP_CACHE_GUARD_BLOOM_MAX_CAPACITY);
                return NGX_CONF_ERROR;
            }

            bf->capacity = n;
            continue;
        }

        if (ngx_strncmp(value[i].data, "error_rate=", 11) == 0) {

            /* arguments are NUL-terminated; nginx leaves the C locale */

            rate.len = value[i].len - 11;
            rate.data = value[i].data + 11;

            ngx_set_errno(0);
            bf->error_rate = strtod((char *) value[i].data + 11, &end);

            if (end != (char *) value[i].data + value[i].len
                || ngx_errno != 0
                || !(bf->error_rate > 0.0 && bf->error_rate < 0.5))
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "cache guard: invalid bloom \"%V\", "
                                   "error_rate must be a number above 0 "
                                   "and below 0.5", &value[i]);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "file=", 5) == 0) {
            bf->file.len = value[i].len - 5;
            bf->file.data = value[i].data + 5;

            if (bf->file.len == 0) {
                goto invalid;
            }

            /* relative to the prefix, like cache_guard_policy */

            if (ngx_conf_full_name(cf->cycle, &bf->file, 0) != NGX_OK) {
                return NGX_CONF_ERROR;
            }

            fd = ngx_open_file(bf->file.data, NGX_FILE_RDONLY,
                               NGX_FILE_OPEN, 0);
            if (fd == NGX_INVALID_FILE) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                                   "cache guard: bloom \"%V\": cannot read "
                                   "\"%V\"", &bf->name, &bf->file);
                return NGX_CONF_ERROR;
            }

            rc = ngx_fd_info(fd, &fi);
            (void) ngx_close_file(fd);

            if (rc == NGX_FILE_ERROR || !ngx_is_file(&fi)) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "cache guard: bloom \"%V\": \"%V\" is not "
                                   "a file", &bf->name, &bf->file);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "redis_key=", 10) == 0) {
            bf->redis_key.len = value[i].len - 10;
            bf->redis_key.data = value[i].data + 10;

            if (bf->redis_key.len == 0) {
                goto invalid;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "sync=", 5) == 0) {
            s.len = value[i].len - 5;
            s.data = value[i].data + 5;

            n = ngx_parse_time(&s, 0);

            if (n == NGX_ERROR || n == 0) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "cache guard: invalid bloom \"%V\", "
                                   "a time such as 10s is expected",
                                   &value[i]);
                return NGX_CONF_ERROR;
            }

            bf->sync = (ngx_msec_t) n;
            continue;
        }

        if (ngx_strcmp(value[i].data, "mode=enforce") == 0) {
            bf->mode = NGX_HTTP_CACHE_GUARD_BLOOM_ENFORCE;
            continue;
        }

        if (ngx_strcmp(value[i].data, "mode=shadow") == 0) {
            bf->mode = NGX_HTTP_CACHE_GUARD_BLOOM_SHADOW;
            continue;
        }

        goto invalid;
    }

    if (bf->capacity == 0 || bf->error_rate == 0.0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "cache guard: bloom \"%V\" needs capacity= "
                           "and error_rate=", &bf->name);
        return NGX_CONF_ERROR;
    }

    if (bf->sync != NGX_CONF_UNSET_MSEC && bf->redis_key.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "cache guard: bloom \"%V\": sync= needs "
                           "redis_key=", &bf->name);
        return NGX_CONF_ERROR;
    }

    if (bf->sync == NGX_CONF_UNSET_MSEC) {
        bf->sync = NGX_HTTP_CACHE_GUARD_BLOOM_SYNC;
    }

    bf->nblocks = ngx_http_cache_guard_sbbf_blocks(bf->capacity,
                                                   bf->error_rate);
    if (bf->nblocks == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "cache guard: bloom \"%V\": error_rate %V is "
                           "too small for capacity %ui", &bf->name, &rate,
                           bf->capacity);
        return NGX_CONF_ERROR;
    }

    bf->bytes = (size_t) bf->nblocks * NGX_HTTP_CACHE_GUARD_BLOOM_BLOCK;

    if (bf->redis_key.len
        && bf->bytes > NGX_HTTP_CACHE_GUARD_BLOOM_REDIS_MAX)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "cache guard: bloom \"%V\" takes %uz bytes, more "
                           "than a Redis string holds (512m): lower its "
                           "capacity or raise its error_rate",
                           &bf->name, bf->bytes);
        return NGX_CONF_ERROR;
    }

    /*
     * the bitmap takes whole slab pages; the rest is the slab's page
     * descriptors and slots, the header and the log context
     */

    pages = (bf->bytes + ngx_pagesize - 1) / ngx_pagesize + 8;
    size = pages * (ngx_pagesize + sizeof(ngx_slab_page_t)) + ngx_pagesize;

    /*
     * The layout is in the name: nginx keeps a segment across a reload
     * when its name and size match, and sizes are rounded to pages, so a
     * new block count must never land in the running workers' segment.
     */

    zname.len = sizeof("cache_guard_bloom::") - 1 + bf->name.len
                + NGX_INT_T_LEN;
    zname.data = ngx_pnalloc(cf->pool, zname.len);
    if (zname.data == NULL) {
        return NGX_CONF_ERROR;
    }

    zname.len = ngx_sprintf(zname.data, "cache_guard_bloom:%V:%ui",
                            &bf->name, (ngx_uint_t) bf->nblocks)
                - zname.data;

    bf->shm_zone = ngx_shared_memory_add(cf, &zname, size,
                                         &ngx_http_cache_guard_module);
    if (bf->shm_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    if (bf->shm_zone->data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "cache guard: duplicate zone \"%V\"", &zname);
        return NGX_CONF_ERROR;
    }

    bf->shm_zone->init = ngx_http_cache_guard_bloom_init_zone;
    bf->shm_zone->data = bf;

    bfp = ngx_array_push(&mcf->blooms);
    if (bfp == NULL) {
        return NGX_CONF_ERROR;
    }

    *bfp = bf;

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "cache guard: invalid bloom parameter \"%V\"",
                       &value[i]);

    return NGX_CONF_ERROR;
}


ngx_http_cache_guard_bloom_t *
ngx_http_cache_guard_bloom_find(ngx_conf_t *cf, ngx_str_t *name)
{
    return ngx_http_cache_guard_bloom_lookup(
               ngx_http_conf_get_module_main_conf(cf,
                                                  ngx_http_cache_guard_module),
               name);
}


ngx_http_cache_guard_bloom_t *
ngx_http_cache_guard_bloom_get(ngx_http_request_t *r, ngx_str_t *name)
{
    return ngx_http_cache_guard_bloom_lookup(
               ngx_http_get_module_main_conf(r, ngx_http_cache_guard_module),
               name);
}


static ngx_http_cache_guard_bloom_t *
ngx_http_cache_guard_bloom_lookup(ngx_http_cache_guard_main_conf_t *mcf,
    ngx_str_t *name)
{
    ngx_uint_t                      i;
    ngx_http_cache_guard_bloom_t  **bfp;

    bfp = mcf->blooms.elts;

    for (i = 0; i < mcf->blooms.nelts; i++) {
        if (bfp[i]->name.len == name->len
            && ngx_strncmp(bfp[i]->name.data, name->data, name->len) == 0)
        {
            return bfp[i];
        }
    }

    return NULL;
}


/*
 * Runs in the master (and for nginx -t) whenever nginx reads its
 * configuration: the file is read here, so a reload picks up a new one.
 * A segment kept across a reload keeps its bits: adds from the admin API
 * and Redis survive, and items dropped from the file stay (a Bloom filter
 * cannot forget; only a new size starts afresh).
 */

static ngx_int_t
ngx_http_cache_guard_bloom_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_cache_guard_bloom_t  *obf = data;

    size_t                           len;
    ngx_http_cache_guard_bloom_t    *bf;
    ngx_http_cache_guard_bloom_sh_t  *sh;

    bf = shm_zone->data;

    /* known only now that the whole configuration has been read */

    bf->redis = bf->mcf->redis;

    if (bf->redis_key.len && bf->redis == NULL) {
        ngx_log_error(NGX_LOG_EMERG, shm_zone->shm.log, 0,
                      "cache guard: bloom \"%V\" has redis_key=, but "
                      "cache_guard_redis is not configured in %V:%ui",
                      &bf->name, &bf->conf_file, bf->conf_line);
        return NGX_ERROR;
    }

    if (obf) {
        bf->shpool = obf->shpool;
        bf->sh = obf->sh;

        if (bf->sh->magic == NGX_HTTP_CACHE_GUARD_BLOOM_MAGIC
            && bf->sh->nblocks == bf->nblocks)
        {
            goto load;
        }

        /* another layout of the same size: start afresh */

        ngx_slab_init(bf->shpool);
        goto create;
    }

    bf->shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        bf->sh = bf->shpool->data;
        bf->bits = bf->sh->bits;
        return NGX_OK;
    }

create:

    sh = ngx_slab_alloc(bf->shpool, sizeof(ngx_http_cache_guard_bloom_sh_t));
    if (sh == NULL) {
        return NGX_ERROR;
    }

    ngx_memzero(sh, sizeof(ngx_http_cache_guard_bloom_sh_t));

    sh->bits = ngx_slab_alloc(bf->shpool, bf->bytes);
    if (sh->bits == NULL) {
        return NGX_ERROR;
    }

    ngx_memzero(sh->bits, bf->bytes);

    len = sizeof(" in cache_guard_bloom \"\"") + bf->name.len;

    bf->shpool->log_ctx = ngx_slab_alloc(bf->shpool, len);
    if (bf->shpool->log_ctx == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(bf->shpool->log_ctx, " in cache_guard_bloom \"%V\"%Z",
                &bf->name);

    sh->nblocks = bf->nblocks;
    sh->bytes = shm_zone->shm.size;
    sh->magic = NGX_HTTP_CACHE_GUARD_BLOOM_MAGIC;

    bf->shpool->data = sh;
    bf->sh = sh;

load:

    bf->bits = bf->sh->bits;

    if (bf->file.len) {
        return ngx_http_cache_guard_bloom_load_file(bf, shm_zone->shm.log);
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_cache_guard_bloom_load_file(ngx_http_cache_guard_bloom_t *bf,
    ngx_log_t *log)
{
    u_char                              *buf;
    ssize_t                              n;
    ngx_fd_t                             fd;
    ngx_int_t                            rc;
    ngx_msec_t                           ms;
    struct timeval                       start, end;
    ngx_http_cache_guard_bloom_load_t    ld;
    ngx_http_cache_guard_lines_t         ls;

    ngx_gettimeofday(&start);

    fd = ngx_open_file(bf->file.data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
    if (fd == NGX_INVALID_FILE) {
        ngx_log_error(NGX_LOG_EMERG, log, ngx_errno,
                      "cache guard: bloom \"%V\": "
                      ngx_open_file_n " \"%V\" failed", &bf->name, &bf->file);
        return NGX_ERROR;
    }

    buf = ngx_alloc(NGX_HTTP_CACHE_GUARD_BLOOM_READ
                    + NGX_HTTP_CACHE_GUARD_LINES_MAX + 1, log);
    if (buf == NULL) {
        (void) ngx_close_file(fd);
        return NGX_ERROR;
    }

    ld.bf = bf;
    ld.items = 0;
    ld.added = 0;

    ls.handler = ngx_http_cache_guard_bloom_load_line;
    ls.data = &ld;
    ls.carry = buf + NGX_HTTP_CACHE_GUARD_BLOOM_READ;
    ls.carry_len = 0;
    ls.line = 0;

    for ( ;; ) {
        n = ngx_read_fd(fd, buf, NGX_HTTP_CACHE_GUARD_BLOOM_READ);

        if (n == -1) {
            ngx_log_error(NGX_LOG_EMERG, log, ngx_errno,
                          "cache guard: bloom \"%V\": "
                          ngx_read_fd_n " \"%V\" failed",
                          &bf->name, &bf->file);
            rc = NGX_ERROR;
            break;
        }

        if (n == 0) {
            rc = ngx_http_cache_guard_lines_end(&ls);
            break;
        }

        rc = ngx_http_cache_guard_lines_split(&ls, buf, buf + n);

        if (rc != NGX_OK) {
            break;
        }
    }

    ngx_free(buf);

    if (ngx_close_file(fd) == NGX_FILE_ERROR) {
        ngx_log_error(NGX_LOG_ALERT, log, ngx_errno,
                      ngx_close_file_n " \"%V\" failed", &bf->file);
    }

    if (rc == NGX_DECLINED) {
        ngx_log_error(NGX_LOG_EMERG, log, 0,
                      "cache guard: bloom \"%V\": line %ui of \"%V\" is "
                      "longer than %d bytes", &bf->name, ls.line, &bf->file,
                      NGX_HTTP_CACHE_GUARD_LINES_MAX);
        return NGX_ERROR;
    }

    if (rc != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_http_cache_guard_bloom_count(bf, ld.added);
    bf->sh->loaded = 1;

    ngx_gettimeofday(&end);

    ms = (end.tv_sec - start.tv_sec) * 1000
         + (end.tv_usec - start.tv_usec) / 1000;

    ngx_log_error(NGX_LOG_NOTICE, log, 0,
                  "cache guard: bloom \"%V\" loaded %ui items from \"%V\" "
                  "(%ui new) in %M ms", &bf->name, ld.items, &bf->file,
                  ld.added, ms);

    return NGX_OK;
}


static ngx_int_t
ngx_http_cache_guard_bloom_load_line(ngx_http_cache_guard_lines_t *ls,
    u_char *item, size_t len)
{
    ngx_http_cache_guard_bloom_load_t  *ld = ls->data;

    ngx_http_cache_guard_bloom_t  *bf;

    bf = ld->bf;

    ld->items++;
    ld->added += ngx_http_cache_guard_sbbf_set(bf->bits, bf->nblocks,
                                 ngx_http_cache_guard_sbbf_hash(item, len));

    return NGX_OK;
}


/* the request path: a hash and 8 bit tests in one 32-byte block */

ngx_int_t
ngx_http_cache_guard_bloom_test(ngx_http_cache_guard_bloom_t *bf,
    u_char *item, size_t len)
{
    if (!bf->sh->loaded) {

        if (!bf->warned) {
            bf->warned = 1;
            ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                          "cache guard: bloom \"%V\" is not loaded yet, "
                          "letting requests through", &bf->name);
        }

        return NGX_AGAIN;
    }

    if (ngx_http_cache_guard_sbbf_has(bf->bits, bf->nblocks,
                                   ngx_http_cache_guard_sbbf_hash(item, len)))
    {
        return NGX_OK;
    }

    return NGX_DECLINED;
}


ngx_uint_t
ngx_http_cache_guard_bloom_mode(ngx_http_cache_guard_bloom_t *bf)
{
    return bf->mode;
}


void
ngx_http_cache_guard_bloom_rejected(ngx_http_cache_guard_bloom_t *bf)
{
    if (bf->mode == NGX_HTTP_CACHE_GUARD_BLOOM_SHADOW) {
        (void) ngx_atomic_fetch_add(&bf->sh->shadow_rejected, 1);

    } else {
        (void) ngx_atomic_fetch_add(&bf->sh->rejected, 1);
    }
}


/* the admin API's test: whether loaded or not, and without a warning */

ngx_uint_t
ngx_http_cache_guard_bloom_contains(ngx_http_cache_guard_bloom_t *bf,
    u_char *item, size_t len)
{
    return ngx_http_cache_guard_sbbf_has(bf->bits, bf->nblocks,
                                   ngx_http_cache_guard_sbbf_hash(item, len));
}


void
ngx_http_cache_guard_bloom_add(ngx_http_cache_guard_bloom_t *bf,
    uint64_t *hashes, ngx_uint_t n)
{
    ngx_uint_t  i, added;

    added = 0;

    for (i = 0; i < n; i++) {
        added += ngx_http_cache_guard_sbbf_set(bf->bits, bf->nblocks,
                                               hashes[i]);
    }

    ngx_http_cache_guard_bloom_count(bf, added);

    /* with a file or Redis behind it, a few items are not the whole set */

    if (n && bf->file.len == 0 && bf->redis_key.len == 0) {
        bf->sh->loaded = 1;
    }
}


/*
 * "items" counts the adds that set a new bit: duplicates and reloads of
 * the same file do not count twice, false positives are missed
 */

static void
ngx_http_cache_guard_bloom_count(ngx_http_cache_guard_bloom_t *bf,
    ngx_uint_t items)
{
    if (items) {
        (void) ngx_atomic_fetch_add(&bf->sh->items, items);
    }
}


void
ngx_http_cache_guard_bloom_info(ngx_http_cache_guard_bloom_t *bf,
    ngx_http_cache_guard_bloom_info_t *info)
{
    info->name = bf->name;
    info->capacity = bf->capacity;
    info->error_rate = bf->error_rate;
    info->mode = bf->mode;
    info->file = bf->file;
    info->redis_key = bf->redis_key;
    info->sync = bf->sync;
    info->blocks = bf->nblocks;
    info->bytes = bf->bytes;
    info->zone_bytes = bf->sh->bytes;
    info->items = bf->sh->items;
    info->loaded = bf->sh->loaded ? 1 : 0;
    info->rejected = bf->sh->rejected;
    info->shadow_rejected = bf->sh->shadow_rejected;
    info->last_sync = (time_t) bf->sh->last_sync;
    info->fill_ratio = ngx_http_cache_guard_bloom_fill(bf);
}


/* the share of bits set: a full filter answers "maybe" to everything */

static double
ngx_http_cache_guard_bloom_fill(ngx_http_cache_guard_bloom_t *bf)
{
    size_t     i, n;
    uint64_t   set, w;

    set = 0;
    n = bf->bytes / 8;

    for (i = 0; i < n; i++) {
        ngx_memcpy(&w, bf->bits + i * 8, 8);
        set += __builtin_popcountll(w);
    }

    return bf->bytes ? (double) set / (double) (bf->bytes * 8) : 0;
}

