
/*
 * Copyright (C) nginx-cache-guard authors
 *
 * The cache_guard_redis directive: the backend's address, time-outs,
 * credentials, database and key prefix.
 */


#include "ngx_http_cache_guard_redis_conf.h"
#include "ngx_http_cache_guard_redis.h"


#define NGX_HTTP_CACHE_GUARD_REDIS_PORT          6379
#define NGX_HTTP_CACHE_GUARD_REDIS_TIMEOUT       500
#define NGX_HTTP_CACHE_GUARD_REDIS_PREFIX_MAX    64


static char *ngx_http_cache_guard_redis_parse_addr(ngx_conf_t *cf,
    ngx_http_cache_guard_redis_t *rd, ngx_str_t *addr);
static char *ngx_http_cache_guard_redis_parse_time(ngx_conf_t *cf,
    ngx_str_t *value, size_t skip, ngx_msec_t *msec);


char *
ngx_http_cache_guard_redis_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_cache_guard_main_conf_t *mcf = conf;

    ngx_int_t                      db;
    ngx_str_t                     *value, s;
    ngx_uint_t                     i;
    ngx_http_cache_guard_redis_t  *rd;

    if (mcf->redis) {
        return "is duplicate";
    }

    rd = ngx_pcalloc(cf->pool, sizeof(ngx_http_cache_guard_redis_t));
    if (rd == NULL) {
        return NGX_CONF_ERROR;
    }

    rd->timeout = NGX_HTTP_CACHE_GUARD_REDIS_TIMEOUT;
    rd->connect_timeout = NGX_HTTP_CACHE_GUARD_REDIS_TIMEOUT;
    ngx_str_set(&rd->prefix, "cg:");

    value = cf->args->elts;

    if (ngx_http_cache_guard_redis_parse_addr(cf, rd, &value[1])
        != NGX_CONF_OK)
    {
        return NGX_CONF_ERROR;
    }

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "timeout=", 8) == 0) {

            if (ngx_http_cache_guard_redis_parse_time(cf, &value[i], 8,
                                                      &rd->timeout)
                != NGX_CONF_OK)
            {
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "connect_timeout=", 16) == 0) {

            if (ngx_http_cache_guard_redis_parse_time(cf, &value[i], 16,
                                                      &rd->connect_timeout)
                != NGX_CONF_OK)
            {
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "password=", 9) == 0) {
            rd->password.len = value[i].len - 9;
            rd->password.data = value[i].data + 9;

            if (rd->password.len == 0) {
                goto invalid;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "user=", 5) == 0) {
            rd->user.len = value[i].len - 5;
            rd->user.data = value[i].data + 5;

            if (rd->user.len == 0) {
                goto invalid;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "db=", 3) == 0) {
            db = ngx_atoi(value[i].data + 3, value[i].len - 3);

            if (db == NGX_ERROR) {
                goto invalid;
            }

            rd->db = db;
            continue;
        }

        if (ngx_strncmp(value[i].data, "prefix=", 7) == 0) {
            rd->prefix.len = value[i].len - 7;
            rd->prefix.data = value[i].data + 7;

            if (rd->prefix.len == 0
                || rd->prefix.len > NGX_HTTP_CACHE_GUARD_REDIS_PREFIX_MAX)
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "cache guard: redis key prefix in "
                                   "\"%V\" must be "
                                   "1 to %d bytes long", &value[i],
                                   NGX_HTTP_CACHE_GUARD_REDIS_PREFIX_MAX);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "mode=", 5) == 0) {
            s.len = value[i].len - 5;
            s.data = value[i].data + 5;

            if (s.len == 10 && ngx_strncmp(s.data, "standalone", 10) == 0) {
                continue;
            }

            if ((s.len == 7 && ngx_strncmp(s.data, "cluster", 7) == 0)
                || (s.len == 8 && ngx_strncmp(s.data, "sentinel", 8) == 0))
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "cache guard: redis \"%V\" is not "
                                   "supported yet, "
                                   "only \"mode=standalone\" is",
                                   &value[i]);
                return NGX_CONF_ERROR;
            }

            goto invalid;
        }

        if (ngx_strncmp(value[i].data, "master=", 7) == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "cache guard: redis sentinel \"%V\" is not "
                               "supported yet",
                               &value[i]);
            return NGX_CONF_ERROR;
        }

        if (ngx_strlchr(value[i].data, value[i].data + value[i].len, '=')
            == NULL)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "cache guard: several redis addresses are "
                               "not supported "
                               "yet, \"%V\" follows \"%V\"",
                               &value[i], &value[1]);
            return NGX_CONF_ERROR;
        }

        goto invalid;
    }

    if (rd->user.len && rd->password.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "cache guard: redis \"user=%V\" requires "
                           "\"password=\"",
                           &rd->user);
        return NGX_CONF_ERROR;
    }

    mcf->redis = rd;

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "cache guard: invalid redis parameter \"%V\"",
                       &value[i]);

    return NGX_CONF_ERROR;
}


static char *
ngx_http_cache_guard_redis_parse_addr(ngx_conf_t *cf,
    ngx_http_cache_guard_redis_t *rd, ngx_str_t *addr)
{
    ngx_url_t  u;

    ngx_memzero(&u, sizeof(ngx_url_t));

    u.url = *addr;
    u.default_port = NGX_HTTP_CACHE_GUARD_REDIS_PORT;

    if (ngx_parse_url(cf->pool, &u) != NGX_OK) {
        if (u.err) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "cache guard: %s in redis address \"%V\"",
                               u.err, addr);
        }

        return NGX_CONF_ERROR;
    }

    rd->addr_text = *addr;

    /* names are resolved here, once: a worker never blocks on DNS */

    rd->peer = &u.addrs[0];

    return NGX_CONF_OK;
}


static char *
ngx_http_cache_guard_redis_parse_time(ngx_conf_t *cf, ngx_str_t *value,
    size_t skip, ngx_msec_t *msec)
{
    ngx_int_t  n;
    ngx_str_t  s;

    s.len = value->len - skip;
    s.data = value->data + skip;

    n = ngx_parse_time(&s, 0);

    if (n == NGX_ERROR || n == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "cache guard: invalid redis time-out \"%V\"", value);
        return NGX_CONF_ERROR;
    }

    *msec = (ngx_msec_t) n;

    /* nginx reads "250" as seconds: a request would wait that long */

    if (n > 10000) {
        for (n = 0; n < (ngx_int_t) s.len; n++) {
            if (s.data[n] < '0' || s.data[n] > '9') {
                break;
            }
        }

        if (n == (ngx_int_t) s.len) {
            ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                               "cache guard: redis time-out \"%V\" is "
                               "%V seconds, did you mean %Vms?",
                               value, &s, &s);

        } else {
            ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                               "cache guard: redis time-out \"%V\" is over "
                               "10 seconds, a request may wait that long "
                               "for Redis", value);
        }
    }

    return NGX_CONF_OK;
}
