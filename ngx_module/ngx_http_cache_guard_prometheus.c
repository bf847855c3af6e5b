
/*
 * Copyright (C) nginx-cache-guard authors
 *
 * The Prometheus text exposition (format 0.0.4) of a location with
 * cache_guard_metrics, written from the counters metrics.c collects: per
 * policy, breakers, Redis and its INFO, Bloom filters, L1 zones.
 */


#include "ngx_http_cache_guard_prometheus.h"
#include "ngx_http_cache_guard_metrics.h"


/* a counter or gauge of a policy, one sample per policy */
typedef struct {
    const char                     *metric;
    const char                     *type;
    const char                     *help;
    size_t                          offset;   /* in policy_view_t */
} ngx_http_cache_guard_prom_metric_t;


static ngx_int_t ngx_http_cache_guard_prometheus_handler(
    ngx_http_request_t *r);
static void ngx_http_cache_guard_prom_policies(ngx_http_cache_guard_out_t *o,
    ngx_http_cache_guard_view_t *v);
static void ngx_http_cache_guard_prom_breakers(ngx_http_cache_guard_out_t *o,
    ngx_http_cache_guard_view_t *v);
static void ngx_http_cache_guard_prom_redis(ngx_http_cache_guard_out_t *o,
    ngx_http_cache_guard_redis_view_t *rv);
static void ngx_http_cache_guard_prom_filters(ngx_http_cache_guard_out_t *o,
    ngx_http_cache_guard_view_t *v);
static void ngx_http_cache_guard_prom_zones(ngx_http_cache_guard_out_t *o,
    ngx_http_cache_guard_view_t *v);
static void ngx_http_cache_guard_prom_help(ngx_http_cache_guard_out_t *o,
    const char *metric, const char *type, const char *help);
static void ngx_http_cache_guard_prom_sample(ngx_http_cache_guard_out_t *o,
    const char *metric, const char *label, ngx_str_t *value,
    const char *label2, const char *value2, ngx_atomic_uint_t n);
static void ngx_http_cache_guard_prom_histogram(ngx_http_cache_guard_out_t *o,
    const char *metric, ngx_str_t *policy,
    ngx_http_cache_guard_histogram_view_t *h);
static void ngx_http_cache_guard_prom_labels(ngx_http_cache_guard_out_t *o,
    const char *open, ngx_str_t *policy, const char *close);
static void ngx_http_cache_guard_prom_label(ngx_http_cache_guard_out_t *o,
    ngx_str_t *value);


#define NGX_HTTP_CACHE_GUARD_PROM_FIELD(field)                                \
    offsetof(ngx_http_cache_guard_policy_view_t, field)

static ngx_http_cache_guard_prom_metric_t
    ngx_http_cache_guard_prom_policy[] =
{
    { "cache_guard_origin_fetches_total", "counter",
      "Requests let through to the origin (fills, refreshes, bypasses).",
      NGX_HTTP_CACHE_GUARD_PROM_FIELD(origin_fetches) },
    { "cache_guard_origin_errors_total", "counter",
      "Origin answers counted as failures by the breaker.",
      NGX_HTTP_CACHE_GUARD_PROM_FIELD(origin_errors) },
    { "cache_guard_origin_inflight", "gauge",
      "Origin fetches in flight on this node (counted with "
      "origin.max_concurrent only).",
      NGX_HTTP_CACHE_GUARD_PROM_FIELD(inflight) },
    { "cache_guard_lock_waits_total", "counter",
      "Requests that waited for another request's fill.",
      NGX_HTTP_CACHE_GUARD_PROM_FIELD(lock_waits) },
    { "cache_guard_lock_timeouts_total", "counter",
      "Waits that passed lock.wait.",
      NGX_HTTP_CACHE_GUARD_PROM_FIELD(lock_timeouts) },
    { "cache_guard_early_refreshes_total", "counter",
      "Background refreshes started before expiry (XFetch).",
      NGX_HTTP_CACHE_GUARD_PROM_FIELD(early_refreshes) },
    { "cache_guard_responses_5xx_total", "counter",
      "Answers of guarded locations with a 5xx status.",
      NGX_HTTP_CACHE_GUARD_PROM_FIELD(responses_5xx) },
    { NULL, NULL, NULL, 0 }
};


/* Redis INFO fields, by INFO_ index */

static ngx_http_cache_guard_prom_metric_t
    ngx_http_cache_guard_prom_info[] =
{
    { "cache_guard_redis_used_memory_bytes", "gauge", NULL, 0 },
    { "cache_guard_redis_mem_fragmentation_ratio", "gauge", NULL, 0 },
    { "cache_guard_redis_evicted_keys_total", "counter", NULL, 0 },
    { "cache_guard_redis_expired_keys_total", "counter", NULL, 0 },
    { "cache_guard_redis_keyspace_hits_total", "counter", NULL, 0 },
    { "cache_guard_redis_keyspace_misses_total", "counter", NULL, 0 },
    { "cache_guard_redis_connected_clients", "gauge", NULL, 0 }
};


char *
ngx_http_cache_guard_prometheus_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    return ngx_http_cache_guard_metrics_location(cf, conf,
                                     ngx_http_cache_guard_prometheus_handler);
}


/* GET: the Prometheus text exposition format, version 0.0.4 */

static ngx_int_t
ngx_http_cache_guard_prometheus_handler(ngx_http_request_t *r)
{
    size_t                             size;
    ngx_http_cache_guard_out_t         o;
    ngx_http_cache_guard_view_t       *v;
    ngx_http_cache_guard_main_conf_t  *mcf;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    mcf = ngx_http_get_module_main_conf(r, ngx_http_cache_guard_module);

    size = 8192 + (mcf->policies.nelts + 2) * 16384 + mcf->zones.nelts * 1024
           + mcf->blooms.nelts * 1024;

    v = ngx_http_cache_guard_metrics_collect(r);

    if (v == NULL
        || ngx_http_cache_guard_out_init(r->pool, &o, size) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_cache_guard_prom_policies(&o, v);
    ngx_http_cache_guard_prom_breakers(&o, v);

    if (v->redis) {
        ngx_http_cache_guard_prom_redis(&o, v->redis);
    }

    ngx_http_cache_guard_prom_filters(&o, v);
    ngx_http_cache_guard_prom_zones(&o, v);

    return ngx_http_cache_guard_metrics_send(r, &o,
                                  "text/plain; version=0.0.4; charset=utf-8");
}


static void
ngx_http_cache_guard_prom_policies(ngx_http_cache_guard_out_t *o,
    ngx_http_cache_guard_view_t *v)
{
    ngx_uint_t                           i, j;
    ngx_atomic_uint_t                   *n;
    ngx_http_cache_guard_prom_metric_t  *pm;
    ngx_http_cache_guard_policy_view_t  *pv;

    ngx_http_cache_guard_prom_help(o, "cache_guard_requests_total", "counter",
                                   "Requests of guarded locations, by policy "
                                   "and $cache_guard_status.");

    for (i = 0; i < v->npolicies; i++) {
        pv = &v->policies[i];

        for (j = 1; j < NGX_HTTP_CACHE_GUARD_NSTATUS; j++) {
            ngx_http_cache_guard_prom_sample(o, "cache_guard_requests_total",
                                 "policy", &pv->policy->name, "status",
                                 (char *) ngx_http_cache_guard_status_names[j]
                                     .data,
                                 pv->requests[j]);
        }
    }

    ngx_http_cache_guard_prom_help(o, "cache_guard_hits_total", "counter",
                                   "Fresh and negative hits, by level.");

    for (i = 0; i < v->npolicies; i++) {
        pv = &v->policies[i];

        for (j = NGX_HTTP_CACHE_GUARD_LEVEL_L1;
             j <= NGX_HTTP_CACHE_GUARD_LEVEL_L2;
             j++)
        {
            ngx_http_cache_guard_prom_sample(o, "cache_guard_hits_total",
                                  "policy", &pv->policy->name, "level",
                                  (char *) ngx_http_cache_guard_level_names[j]
                                      .data,
                                  pv->hits[j]);
        }
    }

    for (pm = ngx_http_cache_guard_prom_policy; pm->metric; pm++) {
        ngx_http_cache_guard_prom_help(o, pm->metric, pm->type, pm->help);

        for (i = 0; i < v->npolicies; i++) {
            pv = &v->policies[i];
            n = (ngx_atomic_uint_t *) ((u_char *) pv + pm->offset);

            ngx_http_cache_guard_prom_sample(o, pm->metric, "policy",
                                             &pv->policy->name, NULL, NULL,
                                             *n);
        }
    }

    ngx_http_cache_guard_prom_help(o, "cache_guard_hook_errors_total",
                                   "counter",
                                   "Lua hook calls that raised an error, ran "
                                   "too long or returned a wrong value.");

    for (i = 0; i < v->npolicies; i++) {
        pv = &v->policies[i];

        for (j = 0; j < NGX_HTTP_CACHE_GUARD_NHOOKS; j++) {
            ngx_http_cache_guard_prom_sample(o,
                                           "cache_guard_hook_errors_total",
                                           "policy", &pv->policy->name, "hook",
                                           ngx_http_cache_guard_hook_names[j],
                                           pv->hook_errors[j]);
        }
    }

    ngx_http_cache_guard_prom_help(o, "cache_guard_request_duration_seconds",
                                   "histogram",
                                   "From the lookup to the log phase; "
                                   "refusals are not timed.");

    for (i = 0; i < v->npolicies; i++) {
        pv = &v->policies[i];
        ngx_http_cache_guard_prom_histogram(o,
                                       "cache_guard_request_duration_seconds",
                                       &pv->policy->name, &pv->duration);
    }
}


/* the redis breaker first, then the policies' */

static void
ngx_http_cache_guard_prom_breakers(ngx_http_cache_guard_out_t *o,
    ngx_http_cache_guard_view_t *v)
{
    ngx_uint_t                            i, opened;
    ngx_http_cache_guard_breaker_view_t  *bv;

    static const char  *metrics[] = {
        "cache_guard_breaker_state", "gauge",
        "0 closed, 1 open, 2 half-open.",
        "cache_guard_breaker_opened_total", "counter",
        "Times a breaker opened."
    };

    for (opened = 0; opened < 2; opened++) {
        ngx_http_cache_guard_prom_help(o, metrics[opened * 3],
                                       metrics[opened * 3 + 1],
                                       metrics[opened * 3 + 2]);

        for (i = v->redis ? 0 : 1; i <= v->npolicies; i++) {
            bv = i ? &v->policies[i - 1].breaker : &v->redis->breaker;

            ngx_http_cache_guard_prom_sample(o, metrics[opened * 3],
                                             "breaker", &bv->name, NULL, NULL,
                                             opened ? bv->opened : bv->state);
        }
    }
}


static void
ngx_http_cache_guard_prom_redis(ngx_http_cache_guard_out_t *o,
    ngx_http_cache_guard_redis_view_t *rv)
{
    ngx_uint_t                           i;
    ngx_http_cache_guard_prom_metric_t  *pm;

    ngx_http_cache_guard_prom_help(o, "cache_guard_redis_errors_total",
                                   "counter", "Redis failures, by kind.");

    for (i = 0; i < NGX_HTTP_CACHE_GUARD_NRERR; i++) {
        ngx_http_cache_guard_out(o, "cache_guard_redis_errors_total"
                                 "{kind=\"%s\"} %uA\n",
                                 ngx_http_cache_guard_rerr_names[i],
                                 rv->errors[i]);
    }

    ngx_http_cache_guard_prom_help(o, "cache_guard_redis_commands_total",
                                   "counter", "Commands sent to Redis.");
    ngx_http_cache_guard_out(o, "cache_guard_redis_commands_total %uA\n",
                             rv->commands);

    ngx_http_cache_guard_prom_help(o, "cache_guard_redis_duration_seconds",
                                   "histogram", "From a command's queueing to "
                                   "its reply.");
    ngx_http_cache_guard_prom_histogram(o, "cache_guard_redis_duration_seconds",
                                        NULL, &rv->duration);

    if (!rv->info_read) {
        return;
    }

    for (i = 0; i < NGX_HTTP_CACHE_GUARD_NINFO; i++) {
        pm = &ngx_http_cache_guard_prom_info[i];

        ngx_http_cache_guard_out(o, "# HELP %s Redis INFO %s.\n"
                                 "# TYPE %s %s\n%s ",
                                 pm->metric, ngx_http_cache_guard_info_names[i],
                                 pm->metric, pm->type, pm->metric);

        if (i == NGX_HTTP_CACHE_GUARD_INFO_FRAGMENTATION) {
            ngx_http_cache_guard_out(o, "%uA.%03uA\n", rv->info[i] / 1000,
                                     rv->info[i] % 1000);

        } else {
            ngx_http_cache_guard_out(o, "%uA\n", rv->info[i]);
        }
    }

    ngx_http_cache_guard_prom_help(o, "cache_guard_redis_info_age_seconds",
                                   "gauge", "Since Redis INFO was last read.");
    ngx_http_cache_guard_out(o, "cache_guard_redis_info_age_seconds %T\n",
                             rv->info_age);
}


static void
ngx_http_cache_guard_prom_filters(ngx_http_cache_guard_out_t *o,
    ngx_http_cache_guard_view_t *v)
{
    ngx_uint_t                          i;
    ngx_http_cache_guard_bloom_info_t  *info;

    if (v->nfilters == 0) {
        return;
    }

    ngx_http_cache_guard_prom_help(o, "cache_guard_bloom_items", "gauge",
                                   "Items in a Bloom filter (approximate).");

    for (i = 0; i < v->nfilters; i++) {
        info = &v->filters[i];
        ngx_http_cache_guard_prom_sample(o, "cache_guard_bloom_items",
                                         "filter", &info->name, NULL, NULL,
                                         info->items);
    }

    ngx_http_cache_guard_prom_help(o, "cache_guard_bloom_fill_ratio", "gauge",
                                   "Share of a Bloom filter's bits set.");

    for (i = 0; i < v->nfilters; i++) {
        info = &v->filters[i];
        ngx_http_cache_guard_out(o, "cache_guard_bloom_fill_ratio{filter=\"");
        ngx_http_cache_guard_prom_label(o, &info->name);
        ngx_http_cache_guard_out(o, "\"} ");
        ngx_http_cache_guard_out_double(o, info->fill_ratio);
        ngx_http_cache_guard_out(o, "\n");
    }

    ngx_http_cache_guard_prom_help(o, "cache_guard_bloom_rejections_total",
                                   "counter",
                                   "Requests a Bloom filter refused, or in "
                                   "shadow mode would have.");

    for (i = 0; i < v->nfilters; i++) {
        info = &v->filters[i];
        ngx_http_cache_guard_prom_sample(o,
                                         "cache_guard_bloom_rejections_total",
                                         "filter", &info->name, "mode",
                                         "enforce", info->rejected);
        ngx_http_cache_guard_prom_sample(o,
                                         "cache_guard_bloom_rejections_total",
                                         "filter", &info->name, "mode",
                                         "shadow", info->shadow_rejected);
    }
}


static void
ngx_http_cache_guard_prom_zones(ngx_http_cache_guard_out_t *o,
    ngx_http_cache_guard_view_t *v)
{
    ngx_uint_t                           i;
    ngx_atomic_uint_t                   *n;
    ngx_http_cache_guard_prom_metric_t  *pm;

#define NGX_HTTP_CACHE_GUARD_PROM_ZONE(field)                                 \
    offsetof(ngx_http_cache_guard_zone_view_t, field)

    static ngx_http_cache_guard_prom_metric_t  metrics[] = {
        { "cache_guard_l1_entries", "gauge", "Entries in a zone's L1.",
          NGX_HTTP_CACHE_GUARD_PROM_ZONE(entries) },
        { "cache_guard_l1_bytes", "gauge",
          "Bytes of the entries in a zone's L1.",
          NGX_HTTP_CACHE_GUARD_PROM_ZONE(bytes) },
        { "cache_guard_l1_evictions_total", "counter",
          "Entries evicted from a zone's L1 for room.",
          NGX_HTTP_CACHE_GUARD_PROM_ZONE(evictions) },
        { NULL, NULL, NULL, 0 }
    };

    if (v->nzones == 0) {
        return;
    }

    for (pm = metrics; pm->metric; pm++) {
        ngx_http_cache_guard_prom_help(o, pm->metric, pm->type, pm->help);

        for (i = 0; i < v->nzones; i++) {
            n = (ngx_atomic_uint_t *) ((u_char *) &v->zones[i] + pm->offset);

            ngx_http_cache_guard_prom_sample(o, pm->metric, "zone",
                                             &v->zones[i].name, NULL, NULL,
                                             *n);
        }
    }
}


static void
ngx_http_cache_guard_prom_help(ngx_http_cache_guard_out_t *o,
    const char *metric, const char *type, const char *help)
{
    ngx_http_cache_guard_out(o, "# HELP %s %s\n# TYPE %s %s\n", metric, help,
                             metric, type);
}


/* metric{label="value"[,label2="value2"]} n */

static void
ngx_http_cache_guard_prom_sample(ngx_http_cache_guard_out_t *o,
    const char *metric, const char *label, ngx_str_t *value,
    const char *label2, const char *value2, ngx_atomic_uint_t n)
{
    ngx_http_cache_guard_out(o, "%s{%s=\"", metric, label);
    ngx_http_cache_guard_prom_label(o, value);

    if (label2) {
        ngx_http_cache_guard_out(o, "\",%s=\"%s", label2, value2);
    }

    ngx_http_cache_guard_out(o, "\"} %uA\n", n);
}


/* the buckets cumulative, the sum in seconds; a policy's, or Redis' */

static void
ngx_http_cache_guard_prom_histogram(ngx_http_cache_guard_out_t *o,
    const char *metric, ngx_str_t *policy,
    ngx_http_cache_guard_histogram_view_t *h)
{
    ngx_uint_t         i;
    ngx_atomic_uint_t  cum;

    cum = 0;

    for (i = 0; i < NGX_HTTP_CACHE_GUARD_NBUCKETS; i++) {
        cum += h->bucket[i];

        ngx_http_cache_guard_out(o, "%s_bucket{", metric);
        ngx_http_cache_guard_prom_labels(o, "", policy, ",");
        ngx_http_cache_guard_out(o, "le=\"%s\"} %uA\n",
                                 ngx_http_cache_guard_les[i], cum);
    }

    ngx_http_cache_guard_out(o, "%s_sum", metric);
    ngx_http_cache_guard_prom_labels(o, "{", policy, "}");
    ngx_http_cache_guard_out(o, " %uA.%06uA\n", h->sum_us / 1000000,
                             h->sum_us % 1000000);

    ngx_http_cache_guard_out(o, "%s_count", metric);
    ngx_http_cache_guard_prom_labels(o, "{", policy, "}");
    ngx_http_cache_guard_out(o, " %uA\n", h->count);
}


/* open, policy="NAME" and close; nothing without a policy */

static void
ngx_http_cache_guard_prom_labels(ngx_http_cache_guard_out_t *o,
    const char *open, ngx_str_t *policy, const char *close)
{
    if (policy == NULL) {
        return;
    }

    ngx_http_cache_guard_out(o, "%spolicy=\"", open);
    ngx_http_cache_guard_prom_label(o, policy);
    ngx_http_cache_guard_out(o, "\"%s", close);
}


/* a label value: backslash, double quote and newline escaped */

static void
ngx_http_cache_guard_prom_label(ngx_http_cache_guard_out_t *o,
    ngx_str_t *value)
{
    u_char  *p, *last;

    p = value->data;

    for (last = p + value->len; p < last && o->end - o->pos >= 2; p++) {
        switch (*p) {
        case '\\':
        case '"':
            *o->pos++ = '\\';
            *o->pos++ = *p;
            break;
        case '\n':
            *o->pos++ = '\\';
            *o->pos++ = 'n';
            break;
        default:
            *o->pos++ = *p;
        }
    }
}
