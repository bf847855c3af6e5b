
/*
 * Copyright (C) nginx-cache-guard authors
 *
 * GeoIP: a MaxMind DB mapped read-only when nginx reads its configuration,
 * shared by the workers after fork, and looked up by the client address
 * when a policy asks for it.
 */


#include "ngx_http_cache_guard_geo.h"
#include "ngx_http_cache_guard_log.h"

#include <maxminddb.h>


#define NGX_HTTP_CACHE_GUARD_GEO_LOG_INTERVAL  10


static void ngx_http_cache_guard_geo_close(void *data);
static ngx_int_t ngx_http_cache_guard_geo_value(ngx_http_request_t *r,
    MMDB_entry_s *entry, const char *const *path, MMDB_entry_data_s *data);
static ngx_int_t ngx_http_cache_guard_geo_string(ngx_http_request_t *r,
    MMDB_entry_s *entry, const char *const *path, ngx_str_t *out);
static ngx_int_t ngx_http_cache_guard_geo_number(ngx_http_request_t *r,
    MMDB_entry_s *entry, const char *const *path, ngx_uint_t *out);
static void ngx_http_cache_guard_geo_error(ngx_http_request_t *r, int status);


/* GeoLite2-Country and GeoLite2-ASN layouts */

static const char *const  ngx_http_cache_guard_geo_country[] =
    { "country", "iso_code", NULL };
static const char *const  ngx_http_cache_guard_geo_continent[] =
    { "continent", "code", NULL };
static const char *const  ngx_http_cache_guard_geo_asn[] =
    { "autonomous_system_number", NULL };
static const char *const  ngx_http_cache_guard_geo_asn_org[] =
    { "autonomous_system_organization", NULL };

/* a broken database's warnings: as they come, one per interval */
static ngx_http_cache_guard_log_limit_t  ngx_http_cache_guard_geo_log_limit;


char *
ngx_http_cache_guard_geoip_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_cache_guard_main_conf_t *mcf = conf;

    int                  status;
    MMDB_s              *mmdb;
    ngx_err_t            err;
    ngx_str_t           *value, path;
    ngx_pool_cleanup_t  *cln;

    if (mcf->geoip) {
        return "is duplicate";
    }

    value = cf->args->elts;
    path = value[1];

    if (ngx_conf_full_name(cf->cycle, &path, 0) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    mmdb = ngx_pcalloc(cf->pool, sizeof(MMDB_s));
    if (mmdb == NULL) {
        return NGX_CONF_ERROR;
    }

    /* added first so that the mapping cannot outlive a failed allocation */

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        return NGX_CONF_ERROR;
    }

    status = MMDB_open((char *) path.data, MMDB_MODE_MMAP, mmdb);

    if (status != MMDB_SUCCESS) {
        err = (status == MMDB_FILE_OPEN_ERROR || status == MMDB_IO_ERROR)
              ? ngx_errno : 0;

        ngx_conf_log_error(NGX_LOG_EMERG, cf, err,
                           "cache guard: cannot open geoip database \"%V\": "
                           "%s", &path, MMDB_strerror(status));
        return NGX_CONF_ERROR;
    }

    /* the configuration's pool is freed on reload: unmap the old file */

    cln->handler = ngx_http_cache_guard_geo_close;
    cln->data = mmdb;

    mcf->geoip = mmdb;

    return NGX_CONF_OK;
}


static void
ngx_http_cache_guard_geo_close(void *data)
{
    MMDB_s  *mmdb = data;

    MMDB_close(mmdb);
}


ngx_int_t
ngx_http_cache_guard_geo_lookup(ngx_http_request_t *r,
    ngx_http_cache_guard_geo_t *out)
{
    int                                status;
    MMDB_s                            *mmdb;
    ngx_int_t                          rc;
    struct sockaddr                   *sa;
    MMDB_lookup_result_s               result;
    ngx_http_cache_guard_main_conf_t  *mcf;
#if (NGX_HAVE_INET6)
    struct sockaddr_in                 sin;
    struct sockaddr_in6               *sin6;
#endif

    ngx_memzero(out, sizeof(ngx_http_cache_guard_geo_t));

    mcf = ngx_http_get_module_main_conf(r, ngx_http_cache_guard_module);

    mmdb = mcf->geoip;
    if (mmdb == NULL) {
        return NGX_DECLINED;
    }

    /* the realip module, when configured, has already replaced it */

    sa = r->connection->sockaddr;

    switch (sa->sa_family) {

    case AF_INET:
        break;

#if (NGX_HAVE_INET6)
    case AF_INET6:
        sin6 = (struct sockaddr_in6 *) sa;

        /*
         * ::ffff:a.b.c.d is looked up as a.b.c.d: an IPv4-only database
         * refuses IPv6 addresses, and an IPv6 one may not alias ::ffff:0:0/96
         * to its IPv4 networks
         */

        if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr)) {
            ngx_memzero(&sin, sizeof(struct sockaddr_in));
            sin.sin_family = AF_INET;
            ngx_memcpy(&sin.sin_addr, &sin6->sin6_addr.s6_addr[12], 4);
            sa = (struct sockaddr *) &sin;
        }

        break;
#endif

    default:
        /* a unix socket peer has no address to look up */
        return NGX_DECLINED;
    }

    result = MMDB_lookup_sockaddr(mmdb, sa, &status);

    if (status == MMDB_IPV6_LOOKUP_IN_IPV4_DATABASE_ERROR) {
        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "cache guard: geoip: ipv6 client, ipv4 database");
        return NGX_DECLINED;
    }

    if (status != MMDB_SUCCESS) {
        ngx_http_cache_guard_geo_error(r, status);
        return NGX_DECLINED;
    }

    if (!result.found_entry) {
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "cache guard: geoip: %V not found",
                       &r->connection->addr_text);
        return NGX_DECLINED;
    }

    rc = ngx_http_cache_guard_geo_string(r, &result.entry,
                                         ngx_http_cache_guard_geo_country,
                                         &out->country);
    if (rc != NGX_OK) {
        goto failed;
    }

    rc = ngx_http_cache_guard_geo_string(r, &result.entry,
                                         ngx_http_cache_guard_geo_continent,
                                         &out->continent);
    if (rc != NGX_OK) {
        goto failed;
    }

    rc = ngx_http_cache_guard_geo_number(r, &result.entry,
                                         ngx_http_cache_guard_geo_asn,
                                         &out->asn);
    if (rc != NGX_OK) {
        goto failed;
    }

    rc = ngx_http_cache_guard_geo_string(r, &result.entry,
                                         ngx_http_cache_guard_geo_asn_org,
                                         &out->asn_org);
    if (rc != NGX_OK) {
        goto failed;
    }

    ngx_log_debug5(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "cache guard: geoip: %V country \"%V\" continent \"%V\" "
                   "asn %ui \"%V\"", &r->connection->addr_text,
                   &out->country, &out->continent, out->asn, &out->asn_org);

    return NGX_OK;

failed:

    /* a half-read entry is no answer */

    ngx_memzero(out, sizeof(ngx_http_cache_guard_geo_t));

    return rc;
}


/*
 * A field the database does not have is left empty: a database may hold
 * only some of them (a country database has no ASN), and libmaxminddb
 * reports a missing key as a path that does not match the data.
 * NGX_DECLINED: the database could not be read (logged).
 */

static ngx_int_t
ngx_http_cache_guard_geo_value(ngx_http_request_t *r, MMDB_entry_s *entry,
    const char *const *path, MMDB_entry_data_s *data)
{
    int  status;

    status = MMDB_aget_value(entry, data, path);

    if (status == MMDB_LOOKUP_PATH_DOES_NOT_MATCH_DATA_ERROR) {
        data->has_data = 0;
        return NGX_OK;
    }

    if (status != MMDB_SUCCESS) {
        ngx_http_cache_guard_geo_error(r, status);
        return NGX_DECLINED;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_cache_guard_geo_string(ngx_http_request_t *r, MMDB_entry_s *entry,
    const char *const *path, ngx_str_t *out)
{
    MMDB_entry_data_s  data;

    if (ngx_http_cache_guard_geo_value(r, entry, path, &data) != NGX_OK) {
        return NGX_DECLINED;
    }

    if (!data.has_data
        || data.type != MMDB_DATA_TYPE_UTF8_STRING
        || data.data_size == 0)
    {
        return NGX_OK;
    }

    /* the string points into the mapping, which a reload unmaps */

    out->data = ngx_pnalloc(r->pool, data.data_size);
    if (out->data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(out->data, data.utf8_string, data.data_size);
    out->len = data.data_size;

    return NGX_OK;
}


static ngx_int_t
ngx_http_cache_guard_geo_number(ngx_http_request_t *r, MMDB_entry_s *entry,
    const char *const *path, ngx_uint_t *out)
{
    MMDB_entry_data_s  data;

    if (ngx_http_cache_guard_geo_value(r, entry, path, &data) != NGX_OK) {
        return NGX_DECLINED;
    }

    if (!data.has_data) {
        return NGX_OK;
    }

    switch (data.type) {

    case MMDB_DATA_TYPE_UINT16:
        *out = data.uint16;
        break;

    case MMDB_DATA_TYPE_UINT32:
        *out = data.uint32;
        break;

    default:
        break;
    }

    return NGX_OK;
}


/* a broken database fails every lookup: log it once in a while */

static void
ngx_http_cache_guard_geo_error(ngx_http_request_t *r, int status)
{
    ngx_http_cache_guard_log_limited(&ngx_http_cache_guard_geo_log_limit,
                                     NGX_HTTP_CACHE_GUARD_GEO_LOG_INTERVAL,
                                     NGX_LOG_WARN, r->connection->log,
                                     "cache guard: geoip lookup failed: %s",
                                     MMDB_strerror(status));
}
