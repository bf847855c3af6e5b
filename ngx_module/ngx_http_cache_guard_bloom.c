
/*
 * Copyright (C) nginx-cache-guard authors
 *
 * Bloom filters: a split-block Bloom filter per cache_guard_bloom in its
 * own shared memory zone, filled from a file when nginx reads its
 * configuration, from the admin API, and from a Redis bitmap every node
 * shares.
 *
 * The layout is Apache Parquet's: blocks of 256 bits, eight 32-bit words
 * each; an item's 64-bit hash (XXH64, seed 0) picks a block with its upper
 * half and sets one bit in every word of it with its lower half.  Bit i of
 * the filter is Redis' bit i of the string (SETBIT numbering: byte i / 8,
 * bit 7 - i % 8), so the bitmap in Redis is a byte for byte copy.
 */


#include "ngx_http_cache_guard_bloom.h"
#include "ngx_http_cache_guard_redis.h"

#include <math.h>


/* bump when the hash, the salts or the layout change: nodes must agree */
#define NGX_HTTP_CACHE_GUARD_BLOOM_MAGIC         0x43474201

#define NGX_HTTP_CACHE_GUARD_BLOOM_BLOCK         32
#define NGX_HTTP_CACHE_GUARD_BLOOM_MAX_CAPACITY  1000000000
#define NGX_HTTP_CACHE_GUARD_BLOOM_SYNC          10000
#define NGX_HTTP_CACHE_GUARD_BLOOM_READ          (1024 * 1024)

/* the largest Redis string (proto-max-bulk-len) */
#define NGX_HTTP_CACHE_GUARD_BLOOM_REDIS_MAX     (512 * 1024 * 1024)

/* one GETRANGE reply: Redis and the worker stay responsive */
#define NGX_HTTP_CACHE_GUARD_BLOOM_CHUNK         65536

/* items per BITFIELD command: 8 SET operations each, about 256 KiB */
#define NGX_HTTP_CACHE_GUARD_BLOOM_BATCH         256

#define NGX_HTTP_CACHE_GUARD_XXH_P1  0x9E3779B185EBCA87ULL
#define NGX_HTTP_CACHE_GUARD_XXH_P2  0xC2B2AE3D27D4EB4FULL
#define NGX_HTTP_CACHE_GUARD_XXH_P3  0x165667B19E3779F9ULL
#define NGX_HTTP_CACHE_GUARD_XXH_P4  0x85EBCA77C2B2AE63ULL
#define NGX_HTTP_CACHE_GUARD_XXH_P5  0x27D4EB2F165667C5ULL

#define ngx_http_cache_guard_rotl64(x, r)  (((x) << (r)) | ((x) >> (64 - (r))))


typedef struct {
    uint32_t                        magic;
    uint32_t                        nblocks;
    u_char                         *bits;
    ngx_atomic_t                    items;
    ngx_atomic_t                    loaded;
    ngx_atomic_t                    rejected;
    ngx_atomic_t                    shadow_rejected;
    ngx_atomic_t                    last_sync;
    ngx_atomic_t                    bytes;        /* the zone */
} ngx_http_cache_guard_bloom_sh_t;


struct ngx_http_cache_guard_bloom_s {
    ngx_str_t                       name;
    ngx_uint_t                      capacity;
    double                          error_rate;
    ngx_str_t                       file;         /* full path, NUL-ended */
    ngx_str_t                       redis_key;
    ngx_msec_t                      sync;
    ngx_uint_t                      mode;
    uint32_t                        nblocks;
    size_t                          bytes;
    ngx_str_t                       conf_file;    /* where it is declared */
    ngx_uint_t                      conf_line;

    ngx_shm_zone_t                 *shm_zone;
    ngx_slab_pool_t                *shpool;
    ngx_http_cache_guard_bloom_sh_t  *sh;
    u_char                         *bits;
    ngx_http_cache_guard_main_conf_t  *mcf;
    ngx_http_cache_guard_redis_t   *redis;

    /* per worker */
    ngx_event_t                     sync_timer;
    size_t                          sync_len;     /* STRLEN of the key */
    size_t                          sync_off;
    uint64_t                        sync_set;     /* bits set in the range */
    u_char                          range[2 * NGX_SIZE_T_LEN];
    ngx_uint_t                      warned;       /* unsigned:1 */
};


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
    ngx_http_cache_guard_bloom_lines_t *ls, u_char *item, size_t len);
static ngx_int_t ngx_http_cache_guard_bloom_line(
    ngx_http_cache_guard_bloom_lines_t *ls, u_char *p, size_t len);
static void ngx_http_cache_guard_bloom_count(ngx_http_cache_guard_bloom_t *bf,
    ngx_uint_t items);
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


/* Parquet's salts: each maps the item's lower 32 bits to one word's bit */

static const uint32_t  ngx_http_cache_guard_bloom_salt[8] = {
    0x47b6137bU, 0x44974d91U, 0x8824ad5bU, 0xa2b7289dU,
    0x705495c7U, 0x2df1424bU, 0x9efc4947U, 0x5c6bfb31U
};

static const char  ngx_http_cache_guard_bloom_strlen[] = "STRLEN";
static const char  ngx_http_cache_guard_bloom_getrange[] = "GETRANGE";
static const char  ngx_http_cache_guard_bloom_bitfield[] = "BITFIELD";
static const char  ngx_http_cache_guard_bloom_set_op[] = "SET";
static const char  ngx_http_cache_guard_bloom_u1[] = "u1";
static const char  ngx_http_cache_guard_bloom_one[] = "1";


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

    bf->nblocks = ngx_http_cache_guard_bloom_blocks(bf->capacity,
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
    ngx_http_cache_guard_bloom_lines_t   ls;

    ngx_gettimeofday(&start);

    fd = ngx_open_file(bf->file.data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
    if (fd == NGX_INVALID_FILE) {
        ngx_log_error(NGX_LOG_EMERG, log, ngx_errno,
                      "cache guard: bloom \"%V\": "
                      ngx_open_file_n " \"%V\" failed", &bf->name, &bf->file);
        return NGX_ERROR;
    }

    buf = ngx_alloc(NGX_HTTP_CACHE_GUARD_BLOOM_READ
                    + NGX_HTTP_CACHE_GUARD_BLOOM_MAX_ITEM + 1, log);
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
            rc = ngx_http_cache_guard_bloom_split_end(&ls);
            break;
        }

        rc = ngx_http_cache_guard_bloom_split(&ls, buf, buf + n);

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
                      NGX_HTTP_CACHE_GUARD_BLOOM_MAX_ITEM);
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
ngx_http_cache_guard_bloom_load_line(ngx_http_cache_guard_bloom_lines_t *ls,
    u_char *item, size_t len)
{
    ngx_http_cache_guard_bloom_load_t  *ld = ls->data;

    ngx_http_cache_guard_bloom_t  *bf;

    bf = ld->bf;

    ld->items++;
    ld->added += ngx_http_cache_guard_bloom_set(bf->bits, bf->nblocks,
                                 ngx_http_cache_guard_bloom_hash(item, len));

    return NGX_OK;
}


ngx_int_t
ngx_http_cache_guard_bloom_split(ngx_http_cache_guard_bloom_lines_t *ls,
    u_char *p, u_char *last)
{
    u_char     *lf;
    size_t      n;
    ngx_int_t   rc;

    while (p < last) {
        lf = ngx_strlchr(p, last, LF);

        n = (lf ? lf : last) - p;

        /* one byte more than an item: its CR may follow */

        if (ls->carry_len + n > NGX_HTTP_CACHE_GUARD_BLOOM_MAX_ITEM + 1) {
            ls->line++;
            return NGX_DECLINED;
        }

        if (lf == NULL) {
            ngx_memcpy(ls->carry + ls->carry_len, p, n);
            ls->carry_len += n;
            return NGX_OK;
        }

        ls->line++;

        if (ls->carry_len) {
            ngx_memcpy(ls->carry + ls->carry_len, p, n);
            rc = ngx_http_cache_guard_bloom_line(ls, ls->carry,
                                                 ls->carry_len + n);
            ls->carry_len = 0;

        } else {
            rc = ngx_http_cache_guard_bloom_line(ls, p, n);
        }

        if (rc != NGX_OK) {
            return rc;
        }

        p = lf + 1;
    }

    return NGX_OK;
}


ngx_int_t
ngx_http_cache_guard_bloom_split_end(ngx_http_cache_guard_bloom_lines_t *ls)
{
    ngx_int_t  rc;

    /* the last line may have no LF */

    if (ls->carry_len == 0) {
        return NGX_OK;
    }

    ls->line++;

    rc = ngx_http_cache_guard_bloom_line(ls, ls->carry, ls->carry_len);
    ls->carry_len = 0;

    return rc;
}


static ngx_int_t
ngx_http_cache_guard_bloom_line(ngx_http_cache_guard_bloom_lines_t *ls,
    u_char *p, size_t len)
{
    if (len && p[len - 1] == CR) {
        len--;
    }

    if (len == 0) {
        return NGX_OK;
    }

    if (len > NGX_HTTP_CACHE_GUARD_BLOOM_MAX_ITEM) {
        return NGX_DECLINED;
    }

    return ls->handler(ls, p, len);
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

    if (ngx_http_cache_guard_bloom_has(bf->bits, bf->nblocks,
                                   ngx_http_cache_guard_bloom_hash(item, len)))
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
    return ngx_http_cache_guard_bloom_has(bf->bits, bf->nblocks,
                                   ngx_http_cache_guard_bloom_hash(item, len));
}


void
ngx_http_cache_guard_bloom_add(ngx_http_cache_guard_bloom_t *bf,
    uint64_t *hashes, ngx_uint_t n)
{
    ngx_uint_t  i, added;

    added = 0;

    for (i = 0; i < n; i++) {
        added += ngx_http_cache_guard_bloom_set(bf->bits, bf->nblocks,
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


/*
 * One worker per node merges the Redis bitmap into the zone every sync=
 * interval: STRLEN, then GETRANGE chunks one after the other, each OR-ed
 * into shared memory, never one huge reply.  The other workers share the
 * zone and need not.
 */

ngx_int_t
ngx_http_cache_guard_bloom_init_worker(ngx_cycle_t *cycle)
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
        ngx_http_cache_guard_redis_error(bf->redis,
                            "cache guard: bloom \"%V\": STRLEN \"%V\" "
                            "failed: %*s", &bf->name, &bf->redis_key,
                            (size_t) ngx_min(reply->len, 256),
                            reply->str ? reply->str : "");
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
        ngx_http_cache_guard_redis_error(bf->redis,
                            "cache guard: bloom \"%V\": GETRANGE \"%V\" "
                            "failed: %*s", &bf->name, &bf->redis_key,
                            (size_t) ngx_min(reply->len, 256),
                            reply->str ? reply->str : "");
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
ngx_http_cache_guard_bloom_push(ngx_http_cache_guard_bloom_t *bf,
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
        ngx_http_cache_guard_bloom_bit_offsets(bf->nblocks, ps->hashes[i],
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
            ngx_http_cache_guard_redis_error(bf->redis,
                                "cache guard: bloom \"%V\": BITFIELD \"%V\" "
                                "failed: %*s", &bf->name, &bf->redis_key,
                                (size_t) ngx_min(reply->len, 256),
                                reply->str ? reply->str : "");
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


/*
 * XXH64 with seed 0, from its specification
 * (github.com/Cyan4973/xxHash, doc/xxhash_spec.md): every node and the
 * Redis bitmap must agree on it bit for bit.
 */

static ngx_inline uint64_t
ngx_http_cache_guard_xxh_read64(u_char *p)
{
    return (uint64_t) p[0] | (uint64_t) p[1] << 8 | (uint64_t) p[2] << 16
           | (uint64_t) p[3] << 24 | (uint64_t) p[4] << 32
           | (uint64_t) p[5] << 40 | (uint64_t) p[6] << 48
           | (uint64_t) p[7] << 56;
}


static ngx_inline uint64_t
ngx_http_cache_guard_xxh_round(uint64_t acc, uint64_t lane)
{
    acc += lane * NGX_HTTP_CACHE_GUARD_XXH_P2;
    acc = ngx_http_cache_guard_rotl64(acc, 31);

    return acc * NGX_HTTP_CACHE_GUARD_XXH_P1;
}


static ngx_inline uint64_t
ngx_http_cache_guard_xxh_merge(uint64_t acc, uint64_t v)
{
    acc ^= ngx_http_cache_guard_xxh_round(0, v);

    return acc * NGX_HTTP_CACHE_GUARD_XXH_P1 + NGX_HTTP_CACHE_GUARD_XXH_P4;
}


uint64_t
ngx_http_cache_guard_bloom_hash(u_char *p, size_t len)
{
    u_char    *end, *limit;
    uint64_t   h, v1, v2, v3, v4;

    end = p + len;

    if (len >= 32) {
        limit = end - 32;

        v1 = NGX_HTTP_CACHE_GUARD_XXH_P1 + NGX_HTTP_CACHE_GUARD_XXH_P2;
        v2 = NGX_HTTP_CACHE_GUARD_XXH_P2;
        v3 = 0;
        v4 = 0 - NGX_HTTP_CACHE_GUARD_XXH_P1;

        do {
            v1 = ngx_http_cache_guard_xxh_round(v1,
                                          ngx_http_cache_guard_xxh_read64(p));
            v2 = ngx_http_cache_guard_xxh_round(v2,
                                      ngx_http_cache_guard_xxh_read64(p + 8));
            v3 = ngx_http_cache_guard_xxh_round(v3,
                                     ngx_http_cache_guard_xxh_read64(p + 16));
            v4 = ngx_http_cache_guard_xxh_round(v4,
                                     ngx_http_cache_guard_xxh_read64(p + 24));
            p += 32;
        } while (p <= limit);

        h = ngx_http_cache_guard_rotl64(v1, 1)
            + ngx_http_cache_guard_rotl64(v2, 7)
            + ngx_http_cache_guard_rotl64(v3, 12)
            + ngx_http_cache_guard_rotl64(v4, 18);

        h = ngx_http_cache_guard_xxh_merge(h, v1);
        h = ngx_http_cache_guard_xxh_merge(h, v2);
        h = ngx_http_cache_guard_xxh_merge(h, v3);
        h = ngx_http_cache_guard_xxh_merge(h, v4);

    } else {
        h = NGX_HTTP_CACHE_GUARD_XXH_P5;
    }

    h += (uint64_t) len;

    while (p + 8 <= end) {
        h ^= ngx_http_cache_guard_xxh_round(0,
                                         ngx_http_cache_guard_xxh_read64(p));
        h = ngx_http_cache_guard_rotl64(h, 27) * NGX_HTTP_CACHE_GUARD_XXH_P1
            + NGX_HTTP_CACHE_GUARD_XXH_P4;
        p += 8;
    }

    if (p + 4 <= end) {
        h ^= ((uint64_t) p[0] | (uint64_t) p[1] << 8 | (uint64_t) p[2] << 16
              | (uint64_t) p[3] << 24)
             * NGX_HTTP_CACHE_GUARD_XXH_P1;
        h = ngx_http_cache_guard_rotl64(h, 23) * NGX_HTTP_CACHE_GUARD_XXH_P2
            + NGX_HTTP_CACHE_GUARD_XXH_P3;
        p += 4;
    }

    while (p < end) {
        h ^= *p * NGX_HTTP_CACHE_GUARD_XXH_P5;
        h = ngx_http_cache_guard_rotl64(h, 11) * NGX_HTTP_CACHE_GUARD_XXH_P1;
        p++;
    }

    h ^= h >> 33;
    h *= NGX_HTTP_CACHE_GUARD_XXH_P2;
    h ^= h >> 29;
    h *= NGX_HTTP_CACHE_GUARD_XXH_P3;
    h ^= h >> 32;

    return h;
}


/*
 * The false positive rate of a split-block filter holding, on average,
 * lambda items per block: items per block are Poisson distributed, and a
 * block with k items answers "present" for another item when its 8 bits,
 * one per word, are all among the k set in each 32-bit word.
 */

double
ngx_http_cache_guard_bloom_fp_rate(double lambda)
{
    double      p, fp;
    ngx_uint_t  k, kmax;

    p = exp(-lambda);
    fp = 0.0;
    kmax = (ngx_uint_t) (lambda + 20.0 * sqrt(lambda) + 50.0);

    for (k = 0; k <= kmax; k++) {

        if (k) {
            p *= lambda / k;
        }

        fp += p * pow(1.0 - pow(31.0 / 32.0, (double) k), 8.0);
    }

    return fp;
}


/* the fewest blocks whose false positive rate at capacity is error_rate */

uint32_t
ngx_http_cache_guard_bloom_blocks(uint64_t capacity, double error_rate)
{
    double      lo, hi, mid, nblocks;
    ngx_uint_t  i;

    /* below one item per thousand blocks the rate hardly falls any more */

    lo = 0.001;
    hi = 256.0;

    if (ngx_http_cache_guard_bloom_fp_rate(lo) > error_rate) {
        return 0;
    }

    for (i = 0; i < 60; i++) {
        mid = (lo + hi) / 2;

        if (ngx_http_cache_guard_bloom_fp_rate(mid) <= error_rate) {
            lo = mid;

        } else {
            hi = mid;
        }
    }

    nblocks = ceil((double) capacity / lo);

    if (nblocks > (double) NGX_MAX_UINT32_VALUE) {
        return 0;
    }

    return (uint32_t) nblocks;
}


/* bit j (0..31) of word i of block b is filter bit 256 b + 32 i + j */

ngx_uint_t
ngx_http_cache_guard_bloom_set(u_char *bits, uint32_t nblocks, uint64_t hash)
{
    u_char      *block, *p, m;
    uint32_t     key, j;
    ngx_uint_t   i, added;

    block = bits + (((hash >> 32) * nblocks) >> 32)
                   * NGX_HTTP_CACHE_GUARD_BLOOM_BLOCK;
    key = (uint32_t) hash;
    added = 0;

    for (i = 0; i < 8; i++) {
        j = (key * ngx_http_cache_guard_bloom_salt[i]) >> 27;
        p = block + i * 4 + (j >> 3);
        m = (u_char) (0x80 >> (j & 7));

        /* other workers and the master add to the same bytes */

        if ((*p & m) == 0) {
            (void) __atomic_fetch_or(p, m, __ATOMIC_RELAXED);
            added = 1;
        }
    }

    return added;
}


ngx_uint_t
ngx_http_cache_guard_bloom_has(u_char *bits, uint32_t nblocks, uint64_t hash)
{
    u_char      *block;
    uint32_t     key, j;
    ngx_uint_t   i;

    block = bits + (((hash >> 32) * nblocks) >> 32)
                   * NGX_HTTP_CACHE_GUARD_BLOOM_BLOCK;
    key = (uint32_t) hash;

    for (i = 0; i < 8; i++) {
        j = (key * ngx_http_cache_guard_bloom_salt[i]) >> 27;

        if ((block[i * 4 + (j >> 3)] & (0x80 >> (j & 7))) == 0) {
            return 0;
        }
    }

    return 1;
}


void
ngx_http_cache_guard_bloom_bit_offsets(uint32_t nblocks, uint64_t hash,
    uint64_t *offsets)
{
    uint64_t    block;
    uint32_t    key;
    ngx_uint_t  i;

    block = ((hash >> 32) * nblocks) >> 32;
    key = (uint32_t) hash;

    for (i = 0; i < 8; i++) {
        offsets[i] = block * 256 + i * 32
                     + ((key * ngx_http_cache_guard_bloom_salt[i]) >> 27);
    }
}
