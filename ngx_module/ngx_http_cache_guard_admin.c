
/*
 * Copyright (C) nginx-cache-guard authors
 *
 * The admin API: the content handler of a location with cache_guard_admin.
 * Calls are matched on the URI after the location's prefix, so with
 * "location /admin/" the Bloom filter "users" is /admin/bloom/users.
 *
 * The module does no access control of its own: the location must be
 * protected with allow/deny, auth_basic or auth_request, since anyone who
 * reaches it can add items to a filter.
 */


#include "ngx_http_cache_guard_admin.h"
#include "ngx_http_cache_guard_api.h"
#include "ngx_http_cache_guard_status.h"
#include "ngx_http_cache_guard_json.h"
#include "ngx_http_cache_guard_bloom.h"
#include "ngx_http_cache_guard_bloom_sync.h"
#include "ngx_http_cache_guard_sbbf.h"
#include "ngx_http_cache_guard_breaker.h"
#include "ngx_http_cache_guard_redis.h"
#include "ngx_http_cache_guard_purge.h"
#include "ngx_http_cache_guard_warm.h"


/* POST /bloom/NAME: items and bytes per call */
#define NGX_HTTP_CACHE_GUARD_ADMIN_ITEMS  100000
#define NGX_HTTP_CACHE_GUARD_ADMIN_BYTES  (16 * 1024 * 1024)



typedef struct {
    ngx_http_cache_guard_api_body_t   body;
    ngx_http_request_t             *request;
    ngx_http_cache_guard_bloom_t   *bf;
    ngx_array_t                     hashes;       /* uint64_t */
} ngx_http_cache_guard_admin_add_t;


static ngx_int_t ngx_http_cache_guard_admin_handler(ngx_http_request_t *r);
static void ngx_http_cache_guard_admin_path(ngx_http_request_t *r,
    ngx_str_t *path);
static ngx_int_t ngx_http_cache_guard_admin_breaker(ngx_http_request_t *r,
    ngx_str_t *path);
static ngx_http_cache_guard_bloom_t *ngx_http_cache_guard_admin_filter(
    ngx_http_request_t *r, ngx_str_t *name);
static ngx_int_t ngx_http_cache_guard_admin_bloom(ngx_http_request_t *r,
    ngx_http_cache_guard_bloom_t *bf);
static ngx_int_t ngx_http_cache_guard_admin_bloom_test(ngx_http_request_t *r,
    ngx_http_cache_guard_bloom_t *bf, ngx_str_t *arg);
static ngx_int_t ngx_http_cache_guard_admin_bloom_info(ngx_http_request_t *r,
    ngx_http_cache_guard_bloom_t *bf);
static void ngx_http_cache_guard_admin_bloom_body(ngx_http_request_t *r,
    ngx_http_cache_guard_api_body_t *ab, ngx_int_t rc);
static ngx_int_t ngx_http_cache_guard_admin_bloom_line(
    ngx_http_cache_guard_lines_t *ls, u_char *item, size_t len);
static void ngx_http_cache_guard_admin_bloom_pushed(void *data, ngx_int_t rc);
static ngx_int_t ngx_http_cache_guard_admin_bloom_added(ngx_http_request_t *r,
    ngx_http_cache_guard_admin_add_t *add, ngx_int_t rc);


char *
ngx_http_cache_guard_admin_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_cache_guard_loc_conf_t  *lcf = conf;

    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (clcf->handler == ngx_http_cache_guard_admin_handler) {
        return "is duplicate";
    }

    /* the admin calls are matched by the path under a prefix location */

    if (clcf->regex || clcf->named) {
        return "must be in a prefix location";
    }

    /* "location = /admin" would match none of the calls, all under it */

    if (clcf->exact_match) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "cache guard: cache_guard_admin cannot be in an "
                           "exact-match location, its calls are under it: "
                           "write \"location %V/ { cache_guard_admin; }\"",
                           &clcf->name);
        return NGX_CONF_ERROR;
    }

    /* an admin answer must never come from the cache */

    if (lcf->enable == 1) {
        return "cannot share a location with cache_guard";
    }

    lcf->enable = 0;
    lcf->shm_zone = NULL;

    clcf->handler = ngx_http_cache_guard_admin_handler;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_cache_guard_admin_handler(ngx_http_request_t *r)
{
    ngx_str_t                      name, path;
    ngx_http_cache_guard_bloom_t  *bf;

    ngx_http_cache_guard_admin_path(r, &path);

    if ((path.len == 7 || (path.len > 7 && path.data[7] == '/'))
        && ngx_strncmp(path.data, "breaker", 7) == 0)
    {
        return ngx_http_cache_guard_admin_breaker(r, &path);
    }

    if (path.len == 5 && ngx_strncmp(path.data, "cache", 5) == 0) {
        return ngx_http_cache_guard_purge_handler(r);
    }

    if (path.len == 4 && ngx_strncmp(path.data, "warm", 4) == 0) {
        return ngx_http_cache_guard_warm_handler(r);
    }

    bf = ngx_http_cache_guard_admin_filter(r, &name);

    if (bf) {
        return ngx_http_cache_guard_admin_bloom(r, bf);
    }

    if (name.len) {
        return ngx_http_cache_guard_api_error(r, NGX_HTTP_NOT_FOUND,
                                              "unknown bloom filter "
                                              "\"%V\"", &name);
    }

    return ngx_http_cache_guard_api_error(r, NGX_HTTP_NOT_FOUND,
                                          "unknown admin call");
}


/* the URI after the location's prefix, without leading slashes */

static void
ngx_http_cache_guard_admin_path(ngx_http_request_t *r, ngx_str_t *path)
{
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    *path = r->uri;

    if (path->len >= clcf->name.len
        && ngx_strncmp(path->data, clcf->name.data, clcf->name.len) == 0)
    {
        path->data += clcf->name.len;
        path->len -= clcf->name.len;
    }

    while (path->len && path->data[0] == '/') {
        path->data++;
        path->len--;
    }
}


/*
 * GET /breaker: every breaker of this configuration;
 * GET /breaker/NAME: one; POST /breaker/NAME?state=open|closed|auto
 */

#define NGX_HTTP_CACHE_GUARD_ADMIN_BREAKER_JSON                              \
    (NGX_HTTP_CACHE_GUARD_RECORD_NAME * 6 + 512)

static ngx_int_t
ngx_http_cache_guard_admin_breaker(ngx_http_request_t *r, ngx_str_t *path)
{
    u_char                               *p, *start;
    ngx_str_t                             name, arg;
    ngx_uint_t                            i, n, forced;
    ngx_http_cache_guard_policy_t       **plp, *pl;
    ngx_http_cache_guard_record_t        *rec;
    ngx_http_cache_guard_main_conf_t     *mcf;
    ngx_http_cache_guard_breaker_conf_t  *bc;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_cache_guard_module);

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD|NGX_HTTP_POST))) {
        return ngx_http_cache_guard_api_allow(r, "GET, HEAD, POST");
    }

    n = mcf->policies.nelts + 2;

    if (path->len <= 8) {
        if (r->method == NGX_HTTP_POST) {
            return ngx_http_cache_guard_api_allow(r, "GET, HEAD");
        }

        start = ngx_pnalloc(r->pool,
                            n * NGX_HTTP_CACHE_GUARD_ADMIN_BREAKER_JSON + 32);
        if (start == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        p = ngx_cpymem(start, "{\"breakers\": [", 14);

        if (mcf->redis && mcf->redis->rec) {
            p = ngx_http_cache_guard_breaker_json(p, mcf->redis->rec,
                                                        &mcf->redis->breaker);
        }

        plp = mcf->policies.elts;

        for (i = 0; i <= mcf->policies.nelts; i++) {
            pl = (i < mcf->policies.nelts) ? plp[i] : mcf->default_policy;

            if (pl == NULL || pl->rec == NULL) {
                continue;
            }

            if (p[-1] == '}') {
                *p++ = ',';
                *p++ = ' ';
            }

            p = ngx_http_cache_guard_breaker_json(p, pl->rec,
                                                        &pl->breaker);
        }

        p = ngx_cpymem(p, "]}\n", 3);

        return ngx_http_cache_guard_api_send(r, NGX_HTTP_OK, start,
                                             p - start);
    }

    name.data = path->data + 8;
    name.len = path->len - 8;

    rec = NULL;
    bc = NULL;

    if (mcf->redis && mcf->redis->rec
        && name.len == 5 && ngx_strncmp(name.data, "redis", 5) == 0)
    {
        rec = mcf->redis->rec;
        bc = &mcf->redis->breaker;

    } else {
        plp = mcf->policies.elts;

        for (i = 0; i <= mcf->policies.nelts; i++) {
            pl = (i < mcf->policies.nelts) ? plp[i] : mcf->default_policy;

            if (pl && pl->rec && pl->rec->len == name.len
                && ngx_strncmp(pl->rec->name, name.data, name.len) == 0)
            {
                rec = pl->rec;
                bc = &pl->breaker;
                break;
            }
        }
    }

    if (rec == NULL) {
        return ngx_http_cache_guard_api_error(r, NGX_HTTP_NOT_FOUND,
                                              "unknown breaker \"%V\"",
                                              &name);
    }

    if (r->method == NGX_HTTP_POST) {

        if (!bc->enabled) {
            return ngx_http_cache_guard_api_error(r, NGX_HTTP_CONFLICT,
                                                  "the breaker \"%V\" is "
                                                  "turned off by the "
                                                  "policy", &name);
        }

        if (ngx_http_arg(r, (u_char *) "state", 5, &arg) != NGX_OK) {
            return ngx_http_cache_guard_api_error(r, NGX_HTTP_BAD_REQUEST,
                                                  "state=open, closed or "
                                                  "auto is missing");
        }

        if (arg.len == 4 && ngx_strncmp(arg.data, "open", 4) == 0) {
            forced = NGX_HTTP_CACHE_GUARD_FORCED_OPEN;

        } else if (arg.len == 6 && ngx_strncmp(arg.data, "closed", 6) == 0) {
            forced = NGX_HTTP_CACHE_GUARD_FORCED_CLOSED;

        } else if (arg.len == 4 && ngx_strncmp(arg.data, "auto", 4) == 0) {
            forced = NGX_HTTP_CACHE_GUARD_FORCED_AUTO;

        } else {
            return ngx_http_cache_guard_api_error(r, NGX_HTTP_BAD_REQUEST,
                                                  "state must be open, "
                                                  "closed or auto");
        }

        (void) ngx_http_cache_guard_breaker_force(rec, forced,
                                                  r->connection->log);
    }

    start = ngx_pnalloc(r->pool, NGX_HTTP_CACHE_GUARD_ADMIN_BREAKER_JSON + 2);
    if (start == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_http_cache_guard_breaker_json(start, rec, bc);
    *p++ = LF;

    return ngx_http_cache_guard_api_send(r, NGX_HTTP_OK, start, p - start);
}


/*
 * The filter of a /bloom/NAME call, or NULL with name empty when the URI
 * is no such call
 */

static ngx_http_cache_guard_bloom_t *
ngx_http_cache_guard_admin_filter(ngx_http_request_t *r, ngx_str_t *name)
{
    ngx_str_t  path;

    ngx_http_cache_guard_admin_path(r, &path);

    name->len = 0;

    if (path.len <= 6
        || ngx_strncmp(path.data, "bloom/", 6) != 0
        || ngx_strlchr(path.data + 6, path.data + path.len, '/'))
    {
        return NULL;
    }

    name->data = path.data + 6;
    name->len = path.len - 6;

    return ngx_http_cache_guard_bloom_get(r, name);
}


static ngx_int_t
ngx_http_cache_guard_admin_bloom(ngx_http_request_t *r,
    ngx_http_cache_guard_bloom_t *bf)
{
    ngx_str_t                          arg;
    ngx_http_cache_guard_admin_add_t  *add;

    if (r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD)) {

        if (ngx_http_arg(r, (u_char *) "item", 4, &arg) == NGX_OK) {
            return ngx_http_cache_guard_admin_bloom_test(r, bf, &arg);
        }

        return ngx_http_cache_guard_admin_bloom_info(r, bf);
    }

    if (r->method != NGX_HTTP_POST) {
        return ngx_http_cache_guard_api_allow(r, "GET, HEAD, POST");
    }

    add = ngx_pcalloc(r->pool, sizeof(ngx_http_cache_guard_admin_add_t));
    if (add == NULL
        || ngx_array_init(&add->hashes, r->pool, 64, sizeof(uint64_t))
           != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    add->request = r;
    add->bf = bf;

    add->body.lines.handler = ngx_http_cache_guard_admin_bloom_line;
    add->body.lines.data = add;
    add->body.limit = NGX_HTTP_CACHE_GUARD_ADMIN_BYTES;
    add->body.too_large = "a body is %O bytes at most per call";
    add->body.done = ngx_http_cache_guard_admin_bloom_body;

    /* a body over client_max_body_size: nginx answers 413 itself */

    return ngx_http_cache_guard_api_read_body(r, &add->body);
}


/* GET /bloom/NAME?item=X */

static ngx_int_t
ngx_http_cache_guard_admin_bloom_test(ngx_http_request_t *r,
    ngx_http_cache_guard_bloom_t *bf, ngx_str_t *arg)
{
    u_char                            *p, *start, *src;
    size_t                             len;
    ngx_str_t                          item;
    ngx_uint_t                         present;
    ngx_http_cache_guard_bloom_info_t  info;

    item.data = ngx_pnalloc(r->pool, arg->len);
    if (item.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = item.data;
    src = arg->data;
    ngx_unescape_uri(&p, &src, arg->len, 0);
    item.len = p - item.data;

    if (item.len == 0 || item.len > NGX_HTTP_CACHE_GUARD_BLOOM_MAX_ITEM) {
        return ngx_http_cache_guard_api_error(r, NGX_HTTP_BAD_REQUEST,
                                         "an item is 1 to %d bytes",
                                         NGX_HTTP_CACHE_GUARD_BLOOM_MAX_ITEM);
    }

    ngx_http_cache_guard_bloom_info(bf, &info);

    present = ngx_http_cache_guard_bloom_contains(bf, item.data, item.len);

    len = sizeof("{\"filter\": , \"item\": , \"present\": false, "
                 "\"loaded\": false}\n") - 1
          + ngx_http_cache_guard_json_str_len(&info.name)
          + ngx_http_cache_guard_json_str_len(&item);

    start = ngx_pnalloc(r->pool, len);
    if (start == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_cpymem(start, "{\"filter\": ", sizeof("{\"filter\": ") - 1);
    p = ngx_http_cache_guard_json_str(p, &info.name);
    p = ngx_cpymem(p, ", \"item\": ", sizeof(", \"item\": ") - 1);
    p = ngx_http_cache_guard_json_str(p, &item);
    p = ngx_sprintf(p, ", \"present\": %s, \"loaded\": %s}\n",
                    present ? "true" : "false",
                    info.loaded ? "true" : "false");

    return ngx_http_cache_guard_api_send(r, NGX_HTTP_OK, start, p - start);
}


/* GET /bloom/NAME: what the filter is and holds */

static ngx_int_t
ngx_http_cache_guard_admin_bloom_info(ngx_http_request_t *r,
    ngx_http_cache_guard_bloom_t *bf)
{
    u_char                             *p, *start;
    size_t                              len;
    ngx_http_cache_guard_bloom_info_t   info;

    ngx_http_cache_guard_bloom_info(bf, &info);

    len = 512
          + ngx_http_cache_guard_json_str_len(&info.name)
          + ngx_http_cache_guard_json_str_len(&info.file)
          + ngx_http_cache_guard_json_str_len(&info.redis_key);

    start = ngx_pnalloc(r->pool, len);
    if (start == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_cpymem(start, "{\"filter\": ", sizeof("{\"filter\": ") - 1);
    p = ngx_http_cache_guard_json_str(p, &info.name);

    p = ngx_sprintf(p, ", \"mode\": \"%s\", \"loaded\": %s, "
                    "\"capacity\": %ui, \"error_rate\": ",
                    info.mode == NGX_HTTP_CACHE_GUARD_BLOOM_SHADOW
                    ? "shadow" : "enforce",
                    info.loaded ? "true" : "false", info.capacity);
    p = ngx_http_cache_guard_json_number(p, info.error_rate);

    p = ngx_sprintf(p, ", \"items\": %ui, \"blocks\": %uD, \"bytes\": %uz, "
                    "\"bits_per_item\": ",
                    info.items, info.blocks, info.bytes);
    p = ngx_http_cache_guard_json_number(p,
                                   (double) info.bytes * 8 / info.capacity);

    p = ngx_sprintf(p, ", \"zone_bytes\": %uz, \"rejected\": %ui, "
                    "\"shadow_rejected\": %ui, \"file\": ",
                    info.zone_bytes, info.rejected, info.shadow_rejected);

    if (info.file.len) {
        p = ngx_http_cache_guard_json_str(p, &info.file);

    } else {
        p = ngx_cpymem(p, "null", 4);
    }

    p = ngx_cpymem(p, ", \"redis_key\": ", sizeof(", \"redis_key\": ") - 1);

    if (info.redis_key.len) {
        p = ngx_http_cache_guard_json_str(p, &info.redis_key);
        p = ngx_sprintf(p, ", \"sync_ms\": %M, \"last_sync\": ", info.sync);

        if (info.last_sync) {
            p = ngx_sprintf(p, "%T", info.last_sync);

        } else {
            p = ngx_cpymem(p, "null", 4);
        }

    } else {
        p = ngx_cpymem(p, "null", 4);
    }

    *p++ = '}';
    *p++ = LF;

    return ngx_http_cache_guard_api_send(r, NGX_HTTP_OK, start, p - start);
}


/*
 * POST /bloom/NAME, one item per line: every item is hashed as the body
 * comes, and added once all are, so a bad line adds nothing
 */

static void
ngx_http_cache_guard_admin_bloom_body(ngx_http_request_t *r,
    ngx_http_cache_guard_api_body_t *ab, ngx_int_t rc)
{
    ngx_http_cache_guard_admin_add_t  *add = (void *) ab;

    if (rc == NGX_DECLINED) {
        rc = ngx_http_cache_guard_api_error(r, NGX_HTTP_BAD_REQUEST,
                                         "line %ui is longer than %d bytes, "
                                         "nothing was added", ab->lines.line,
                                         NGX_HTTP_CACHE_GUARD_BLOOM_MAX_ITEM);
        ngx_http_finalize_request(r, rc);
        return;
    }

    if (rc == NGX_HTTP_REQUEST_ENTITY_TOO_LARGE) {
        rc = ngx_http_cache_guard_api_error(r,
                                         NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                         "%d items at most per call, "
                                         "nothing was added",
                                         NGX_HTTP_CACHE_GUARD_ADMIN_ITEMS);
        ngx_http_finalize_request(r, rc);
        return;
    }

    if (rc != NGX_OK) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    ngx_http_cache_guard_bloom_add(add->bf, add->hashes.elts,
                                   add->hashes.nelts);

    rc = ngx_http_cache_guard_bloom_sync_push(add->bf, r->pool,
                                     add->hashes.elts, add->hashes.nelts,
                                     ngx_http_cache_guard_admin_bloom_pushed,
                                     add);

    if (rc == NGX_AGAIN) {
        return;
    }

    ngx_http_finalize_request(r,
                   ngx_http_cache_guard_admin_bloom_added(r, add, rc));
}


static ngx_int_t
ngx_http_cache_guard_admin_bloom_line(ngx_http_cache_guard_lines_t *ls,
    u_char *item, size_t len)
{
    ngx_http_cache_guard_admin_add_t  *add = ls->data;

    uint64_t  *h;

    if (add->hashes.nelts == NGX_HTTP_CACHE_GUARD_ADMIN_ITEMS) {
        return NGX_HTTP_REQUEST_ENTITY_TOO_LARGE;
    }

    h = ngx_array_push(&add->hashes);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_cache_guard_sbbf_hash(item, len);

    return NGX_OK;
}


static void
ngx_http_cache_guard_admin_bloom_pushed(void *data, ngx_int_t rc)
{
    ngx_http_cache_guard_admin_add_t  *add = data;

    ngx_connection_t    *c;
    ngx_http_request_t  *r;

    r = add->request;
    c = r->connection;

    ngx_http_finalize_request(r,
                   ngx_http_cache_guard_admin_bloom_added(r, add, rc));

    ngx_http_run_posted_requests(c);
}


/* {"filter": NAME, "added": N} and, with a redis_key, whether Redis has them */

static ngx_int_t
ngx_http_cache_guard_admin_bloom_added(ngx_http_request_t *r,
    ngx_http_cache_guard_admin_add_t *add, ngx_int_t rc)
{
    u_char                             *p, *start;
    size_t                              len;
    ngx_http_cache_guard_bloom_info_t   info;

    ngx_http_cache_guard_bloom_info(add->bf, &info);

    len = sizeof("{\"filter\": , \"added\": , \"redis\": false}\n") - 1
          + NGX_INT_T_LEN + ngx_http_cache_guard_json_str_len(&info.name);

    start = ngx_pnalloc(r->pool, len);
    if (start == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_cpymem(start, "{\"filter\": ", sizeof("{\"filter\": ") - 1);
    p = ngx_http_cache_guard_json_str(p, &info.name);
    p = ngx_sprintf(p, ", \"added\": %ui", add->hashes.nelts);

    if (rc != NGX_DECLINED) {
        p = ngx_sprintf(p, ", \"redis\": %s",
                        rc == NGX_OK ? "true" : "false");
    }

    *p++ = '}';
    *p++ = LF;

    return ngx_http_cache_guard_api_send(r, NGX_HTTP_OK, start, p - start);
}

