
/*
 * Copyright (C) nginx-cache-guard authors
 *
 * The module: directives, configuration and the hooks into nginx.  The
 * work itself lives in the other ngx_http_cache_guard_*.c files.
 */


#include "ngx_http_cache_guard_access.h"
#include "ngx_http_cache_guard_admin.h"
#include "ngx_http_cache_guard_bloom.h"
#include "ngx_http_cache_guard_bloom_sync.h"
#include "ngx_http_cache_guard_breaker.h"
#include "ngx_http_cache_guard_filter.h"
#include "ngx_http_cache_guard_geo.h"
#include "ngx_http_cache_guard_handler.h"
#include "ngx_http_cache_guard_metrics.h"
#include "ngx_http_cache_guard_prometheus.h"
#include "ngx_http_cache_guard_status.h"
#include "ngx_http_cache_guard_policy.h"
#include "ngx_http_cache_guard_purge.h"
#include "ngx_http_cache_guard_redis.h"
#include "ngx_http_cache_guard_redis_conf.h"
#include "ngx_http_cache_guard_stats.h"
#include "ngx_http_cache_guard_store.h"
#include "ngx_http_cache_guard_variables.h"


static ngx_int_t ngx_http_cache_guard_preconfiguration(ngx_conf_t *cf);
static ngx_int_t ngx_http_cache_guard_init_state(ngx_conf_t *cf);
static ngx_int_t ngx_http_cache_guard_postconfiguration(ngx_conf_t *cf);
static void *ngx_http_cache_guard_create_main_conf(ngx_conf_t *cf);
static void *ngx_http_cache_guard_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_cache_guard_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static char *ngx_http_cache_guard_zone(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_cache_guard(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_cache_guard_policy(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_http_cache_guard_conf_src_t *ngx_http_cache_guard_conf_src(
    ngx_conf_t *cf, ngx_array_t *list);
static ngx_int_t ngx_http_cache_guard_check_conf(ngx_conf_t *cf);
static ngx_int_t ngx_http_cache_guard_init_process(ngx_cycle_t *cycle);
static void ngx_http_cache_guard_exit_process(ngx_cycle_t *cycle);


static ngx_command_t  ngx_http_cache_guard_commands[] = {

    { ngx_string("cache_guard_zone"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE2,
      ngx_http_cache_guard_zone,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("cache_guard_redis"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_http_cache_guard_redis_conf,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("cache_guard_bloom"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_2MORE,
      ngx_http_cache_guard_bloom_conf,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("cache_guard_geoip"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_cache_guard_geoip_conf,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("cache_guard_admin"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_cache_guard_admin_conf,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("cache_guard_metrics"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_cache_guard_prometheus_conf,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("cache_guard_status"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_cache_guard_status_conf,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("cache_guard"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_cache_guard,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("cache_guard_policy"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_cache_guard_policy,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_cache_guard_module_ctx = {
    ngx_http_cache_guard_preconfiguration, /* preconfiguration */
    ngx_http_cache_guard_postconfiguration, /* postconfiguration */

    ngx_http_cache_guard_create_main_conf, /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_cache_guard_create_loc_conf,  /* create location configuration */
    ngx_http_cache_guard_merge_loc_conf    /* merge location configuration */
};


ngx_module_t  ngx_http_cache_guard_module = {
    NGX_MODULE_V1,
    &ngx_http_cache_guard_module_ctx,      /* module context */
    ngx_http_cache_guard_commands,         /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_http_cache_guard_init_process,     /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_cache_guard_exit_process,     /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_int_t
ngx_http_cache_guard_preconfiguration(ngx_conf_t *cf)
{
    ngx_http_cache_guard_stats_init();

    return ngx_http_cache_guard_add_variables(cf);
}


static ngx_int_t
ngx_http_cache_guard_postconfiguration(ngx_conf_t *cf)
{
    ngx_http_handler_pt        *h;
    ngx_http_core_main_conf_t  *cmcf;

    if (ngx_http_cache_guard_check_conf(cf) != NGX_OK) {
        return NGX_ERROR;
    }

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_PRECONTENT_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_cache_guard_precontent_handler;

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_ACCESS_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_cache_guard_access_handler;

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_LOG_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_cache_guard_log_handler;

    if (ngx_http_cache_guard_policy_check_variables(cf) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_http_cache_guard_init_state(cf) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_http_cache_guard_filter_init(cf);
}


/*
 * The records of the state zone: one breaker per Redis backend, whose
 * settings come from the policies that set breaker.redis (they must
 * agree), and one per policy name (policies of one name share a breaker
 * and a cap: they must agree too).  Also sizes the largest reply read
 * from Redis.
 */

static ngx_int_t
ngx_http_cache_guard_init_state(ngx_conf_t *cf)
{
    u_char                             *p;
    ngx_str_t                           name;
    ngx_uint_t                          i, j, n;
    ngx_http_cache_guard_redis_t       *rd;
    ngx_http_cache_guard_policy_t     **plp, *pl, *first;
    ngx_http_cache_guard_main_conf_t   *mcf;

    mcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_cache_guard_module);
    rd = mcf->redis;
    plp = mcf->policies.elts;
    n = mcf->policies.nelts;

    if (rd) {
        ngx_http_cache_guard_breaker_defaults(&rd->breaker, 10000);

        /* GETRANGE chunks of Bloom filters and INFO fit in this */
        rd->max_reply = 1024 * 1024;

        first = NULL;

        for (i = 0; i <= n; i++) {
            pl = (i < n) ? plp[i] : mcf->default_policy;

            if (pl == NULL) {
                continue;
            }

            rd->max_reply = ngx_max(rd->max_reply,
                                    NGX_HTTP_CACHE_GUARD_ENTRY_MAX(pl));

            if (!pl->redis_breaker.set) {
                continue;
            }

            if (first == NULL) {
                first = pl;
                rd->breaker = pl->redis_breaker;
                continue;
            }

            if (!ngx_http_cache_guard_breaker_same(&first->redis_breaker,
                                                   &pl->redis_breaker, 0))
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "cache guard: the policies \"%V\" and "
                                   "\"%V\" set breaker.redis differently; "
                                   "one Redis backend has one breaker",
                                   &first->file, &pl->file);
                return NGX_ERROR;
            }
        }

        ngx_str_set(&name, "redis");

        if (ngx_http_cache_guard_state_want(cf, &name, &rd->rec) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    for (i = 0; i <= n; i++) {
        pl = (i < n) ? plp[i] : mcf->default_policy;

        if (pl == NULL) {
            continue;
        }

        for (j = i + 1; j <= n; j++) {
            first = (j < n) ? plp[j] : mcf->default_policy;

            if (first == NULL
                || first->name.len != pl->name.len
                || ngx_strncmp(first->name.data, pl->name.data,
                               pl->name.len) != 0)
            {
                continue;
            }

            if (pl->max_concurrent != first->max_concurrent
                || !ngx_http_cache_guard_breaker_same(&pl->breaker,
                                                      &first->breaker, 1))
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "cache guard: the policies \"%V\" and "
                                   "\"%V\" share the name \"%V\" and so "
                                   "the breaker \"origin:%V\", but set "
                                   "breaker.origin or origin.max_concurrent "
                                   "differently", &pl->file, &first->file,
                                   &pl->name, &pl->name);
                return NGX_ERROR;
            }
        }

        name.len = sizeof("origin:") - 1 + pl->name.len;
        name.data = ngx_pnalloc(cf->pool, name.len);
        if (name.data == NULL) {
            return NGX_ERROR;
        }

        p = ngx_cpymem(name.data, "origin:", sizeof("origin:") - 1);
        ngx_memcpy(p, pl->name.data, pl->name.len);

        if (ngx_http_cache_guard_state_want(cf, &name, &pl->rec) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    if (mcf->npolicies == 0 && rd == NULL) {
        return NGX_OK;
    }

    return ngx_http_cache_guard_state_add(cf);
}


static void *
ngx_http_cache_guard_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_cache_guard_main_conf_t  *mcf;

    mcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_cache_guard_main_conf_t));
    if (mcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     mcf->redis = NULL;
     *     mcf->geoip = NULL;
     *     mcf->default_policy = NULL;
     */

    if (ngx_array_init(&mcf->policies, cf->pool, 4,
                       sizeof(ngx_http_cache_guard_policy_t *))
        != NGX_OK
        || ngx_array_init(&mcf->blooms, cf->pool, 4,
                          sizeof(ngx_http_cache_guard_bloom_t *))
           != NGX_OK
        || ngx_array_init(&mcf->zones, cf->pool, 4,
                          sizeof(ngx_http_cache_guard_zone_t *))
           != NGX_OK
        || ngx_array_init(&mcf->guards, cf->pool, 4,
                          sizeof(ngx_http_cache_guard_conf_src_t *))
           != NGX_OK
        || ngx_array_init(&mcf->policy_srcs, cf->pool, 4,
                          sizeof(ngx_http_cache_guard_conf_src_t *))
           != NGX_OK)
    {
        return NULL;
    }

    return mcf;
}


static void *
ngx_http_cache_guard_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_cache_guard_loc_conf_t  *lcf;

    lcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_cache_guard_loc_conf_t));
    if (lcf == NULL) {
        return NULL;
    }

    lcf->enable = NGX_CONF_UNSET;
    lcf->shm_zone = NGX_CONF_UNSET_PTR;
    lcf->policy = NGX_CONF_UNSET_PTR;
    lcf->policy_src = NGX_CONF_UNSET_PTR;

    return lcf;
}


static char *
ngx_http_cache_guard_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_cache_guard_loc_conf_t  *prev = parent;
    ngx_http_cache_guard_loc_conf_t  *conf = child;

    ngx_conf_merge_value(conf->enable, prev->enable, 0);
    ngx_conf_merge_ptr_value(conf->shm_zone, prev->shm_zone, NULL);
    ngx_conf_merge_ptr_value(conf->policy, prev->policy, NULL);
    ngx_conf_merge_ptr_value(conf->policy_src, prev->policy_src, NULL);

    /* the policy directive is of use (see check_conf below) */

    if (conf->enable && conf->policy_src) {
        conf->policy_src->used = 1;
    }

    if (conf->enable && conf->policy == NULL) {
        conf->policy = ngx_http_cache_guard_policy_default(cf);
        if (conf->policy == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    if (conf->enable && conf->policy
        && ngx_http_cache_guard_policy_check_location(cf, conf->policy)
           != NGX_CONF_OK)
    {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* cache_guard_zone NAME size=SIZE; */

static char *
ngx_http_cache_guard_zone(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_cache_guard_main_conf_t  *mcf = conf;

    ssize_t                       size;
    ngx_http_cache_guard_zone_t **zp;
    ngx_str_t                    *value, s;
    ngx_shm_zone_t               *shm_zone;
    ngx_http_cache_guard_zone_t  *zone;

    value = cf->args->elts;

    if (value[1].len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "cache guard: empty zone name");
        return NGX_CONF_ERROR;
    }

    if (ngx_strncmp(value[2].data, "size=", 5) != 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "cache guard: invalid parameter \"%V\", "
                           "expected size=SIZE", &value[2]);
        return NGX_CONF_ERROR;
    }

    s.data = value[2].data + 5;
    s.len = value[2].len - 5;

    size = ngx_parse_size(&s);

    if (size == NGX_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "cache guard: invalid zone size \"%V\"", &value[2]);
        return NGX_CONF_ERROR;
    }

    if (size < (ssize_t) (64 * ngx_pagesize)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "cache guard: zone \"%V\" is too small, "
                           "%uzk at least", &value[1],
                           64 * ngx_pagesize / 1024);
        return NGX_CONF_ERROR;
    }

    shm_zone = ngx_shared_memory_add(cf, &value[1], size,
                                     &ngx_http_cache_guard_module);
    if (shm_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    if (shm_zone->data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "cache guard: duplicate zone \"%V\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    zone = ngx_pcalloc(cf->pool, sizeof(ngx_http_cache_guard_zone_t));
    if (zone == NULL) {
        return NGX_CONF_ERROR;
    }

    zone->name = value[1];
    zone->size = size;
    zone->shm_zone = shm_zone;

    shm_zone->init = ngx_http_cache_guard_zone_init;
    shm_zone->data = zone;

    zp = ngx_array_push(&mcf->zones);
    if (zp == NULL) {
        return NGX_CONF_ERROR;
    }

    *zp = zone;

    return NGX_CONF_OK;
}


/* cache_guard ZONE | off; */

static char *
ngx_http_cache_guard(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_cache_guard_loc_conf_t  *lcf = conf;

    ngx_str_t                         *value;
    ngx_http_cache_guard_conf_src_t   *src;
    ngx_http_cache_guard_main_conf_t  *mcf;

    if (lcf->enable != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "off") == 0) {
        lcf->enable = 0;
        lcf->shm_zone = NULL;
        return NGX_CONF_OK;
    }

    /* the zone may be declared further down: check_conf checks it is */

    lcf->shm_zone = ngx_shared_memory_add(cf, &value[1], 0,
                                          &ngx_http_cache_guard_module);
    if (lcf->shm_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    mcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_cache_guard_module);

    src = ngx_http_cache_guard_conf_src(cf, &mcf->guards);
    if (src == NULL) {
        return NGX_CONF_ERROR;
    }

    src->shm_zone = lcf->shm_zone;

    lcf->enable = 1;

    return NGX_CONF_OK;
}


/* cache_guard_policy PATH; */

static char *
ngx_http_cache_guard_policy(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_cache_guard_loc_conf_t  *lcf = conf;

    ngx_str_t                         *value;
    ngx_http_cache_guard_main_conf_t  *mcf;

    if (lcf->policy != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    lcf->policy = ngx_http_cache_guard_policy_load(cf, &value[1]);
    if (lcf->policy == NULL) {
        return NGX_CONF_ERROR;
    }

    mcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_cache_guard_module);

    lcf->policy_src = ngx_http_cache_guard_conf_src(cf, &mcf->policy_srcs);
    if (lcf->policy_src == NULL) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* the file and line of the directive being read, kept in the list */

static ngx_http_cache_guard_conf_src_t *
ngx_http_cache_guard_conf_src(ngx_conf_t *cf, ngx_array_t *list)
{
    ngx_http_cache_guard_conf_src_t  *src, **srcp;

    src = ngx_pcalloc(cf->pool, sizeof(ngx_http_cache_guard_conf_src_t));
    if (src == NULL) {
        return NULL;
    }

    srcp = ngx_array_push(list);
    if (srcp == NULL) {
        return NULL;
    }

    src->file = cf->conf_file->file.name;
    src->line = cf->conf_file->line;
    *srcp = src;

    return src;
}


/*
 * After every location is merged, the mistakes that would otherwise leave
 * a location silently unguarded or fail later without our file and line:
 * a cache_guard naming a zone that no cache_guard_zone declares, and a
 * cache_guard_policy that no guarded location uses (written where
 * cache_guard is off, explicitly or by default, and inherited by no
 * location that turns it on).
 */

static ngx_int_t
ngx_http_cache_guard_check_conf(ngx_conf_t *cf)
{
    ngx_uint_t                         i;
    ngx_http_cache_guard_conf_src_t  **srcp;
    ngx_http_cache_guard_main_conf_t  *mcf;

    mcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_cache_guard_module);

    srcp = mcf->guards.elts;

    for (i = 0; i < mcf->guards.nelts; i++) {
        if (srcp[i]->shm_zone->data == NULL) {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "cache guard: cache_guard_zone \"%V\" is not "
                          "defined: declare it at the http level with "
                          "\"cache_guard_zone %V size=SIZE;\" in %V:%ui",
                          &srcp[i]->shm_zone->shm.name,
                          &srcp[i]->shm_zone->shm.name,
                          &srcp[i]->file, srcp[i]->line);
            return NGX_ERROR;
        }
    }

    srcp = mcf->policy_srcs.elts;

    for (i = 0; i < mcf->policy_srcs.nelts; i++) {
        if (!srcp[i]->used) {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "cache guard: \"cache_guard_policy\" where "
                          "\"cache_guard\" is off guards nothing: add "
                          "\"cache_guard ZONE;\" to the location (or to "
                          "its server or http level) in %V:%ui",
                          &srcp[i]->file, srcp[i]->line);
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_cache_guard_init_process(ngx_cycle_t *cycle)
{
    ngx_http_cache_guard_main_conf_t  *mcf;

    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    mcf = ngx_http_cycle_get_module_main_conf(cycle,
                                              ngx_http_cache_guard_module);

    if (mcf == NULL) {
        return NGX_OK;
    }

    ngx_http_cache_guard_state_init_worker(cycle);
    ngx_http_cache_guard_metrics_init_worker(cycle);
    ngx_http_cache_guard_purge_init_worker(cycle);

    if (mcf->redis
        && ngx_http_cache_guard_redis_init_worker(mcf->redis, cycle)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_http_cache_guard_bloom_sync_init_worker(cycle);
}


static void
ngx_http_cache_guard_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_cache_guard_main_conf_t  *mcf;

    mcf = ngx_http_cycle_get_module_main_conf(cycle,
                                              ngx_http_cache_guard_module);

    if (mcf && mcf->redis) {
        ngx_http_cache_guard_redis_exit_worker(mcf->redis);
    }

    ngx_http_cache_guard_purge_exit_worker();
    ngx_http_cache_guard_state_exit_worker();
}
