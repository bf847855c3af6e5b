
/*
 * Copyright (C) nginx-cache-guard authors
 *
 * The status of a location with cache_guard_status: JSON written from the
 * counters metrics.c collects (policies, Redis, zones, Bloom filters and
 * the alerts), or the dashboard page for a browser; and the JSON of a
 * breaker, which the admin API shows too.
 */


#include "ngx_http_cache_guard_status.h"
#include "ngx_http_cache_guard_metrics.h"


/* the dashboard page, made a C string by the build (config) */
#include "ngx_http_cache_guard_dashboard.h"


static ngx_int_t ngx_http_cache_guard_status_handler(ngx_http_request_t *r);
static ngx_uint_t ngx_http_cache_guard_status_html(ngx_http_request_t *r);
static void ngx_http_cache_guard_status_policy(ngx_http_cache_guard_out_t *o,
    ngx_http_cache_guard_policy_view_t *pv);
static void ngx_http_cache_guard_status_redis(ngx_http_cache_guard_out_t *o,
    ngx_http_cache_guard_redis_view_t *rv);
static void ngx_http_cache_guard_status_zones(ngx_http_cache_guard_out_t *o,
    ngx_http_cache_guard_view_t *v);
static void ngx_http_cache_guard_status_alerts(ngx_http_cache_guard_out_t *o,
    ngx_http_cache_guard_view_t *v);
static ngx_uint_t ngx_http_cache_guard_status_breaker_alert(
    ngx_http_cache_guard_out_t *o, ngx_uint_t first,
    ngx_http_cache_guard_breaker_view_t *bv);
static void ngx_http_cache_guard_status_alert(ngx_http_cache_guard_out_t *o,
    ngx_uint_t first, const char *alert, ngx_http_cache_guard_policy_t *pl,
    double value, double threshold);
static void ngx_http_cache_guard_status_counts(ngx_http_cache_guard_out_t *o,
    const char **names, ngx_atomic_uint_t *n, ngx_uint_t count);
static void ngx_http_cache_guard_status_histogram(
    ngx_http_cache_guard_out_t *o, ngx_http_cache_guard_histogram_view_t *h);
static void ngx_http_cache_guard_status_breaker(ngx_http_cache_guard_out_t *o,
    ngx_http_cache_guard_breaker_view_t *bv);


char *
ngx_http_cache_guard_status_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    return ngx_http_cache_guard_metrics_location(cf, conf,
                                         ngx_http_cache_guard_status_handler);
}


/* GET: JSON, or the dashboard for a client that accepts text/html */

static ngx_int_t
ngx_http_cache_guard_status_handler(ngx_http_request_t *r)
{
    size_t                             size;
    ngx_uint_t                         i;
    ngx_http_cache_guard_out_t         o;
    ngx_http_cache_guard_view_t       *v;
    ngx_http_cache_guard_main_conf_t  *mcf;

    static u_char  dashboard[] = NGX_HTTP_CACHE_GUARD_DASHBOARD;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    if (ngx_http_cache_guard_status_html(r)) {
        o.start = dashboard;
        o.pos = dashboard + sizeof(dashboard) - 1;
        o.end = dashboard + sizeof(dashboard);

        return ngx_http_cache_guard_metrics_send(r, &o,
                                                 "text/html; charset=utf-8");
    }

    mcf = ngx_http_get_module_main_conf(r, ngx_http_cache_guard_module);

    size = 8192 + (mcf->policies.nelts + 2) * 8192 + mcf->zones.nelts * 512
           + mcf->blooms.nelts * 1024;

    v = ngx_http_cache_guard_metrics_collect(r);

    if (v == NULL
        || ngx_http_cache_guard_out_init(r->pool, &o, size) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_cache_guard_out(&o, "{\"version\": \"%s\", \"time\": %T.%03M, "
                             "\"uptime\": %T, \"policies\": [",
                             NGX_HTTP_CACHE_GUARD_VERSION, v->time, v->msec,
                             v->uptime);

    for (i = 0; i < v->npolicies; i++) {
        ngx_http_cache_guard_out(&o, "%s", i ? ", " : "");
        ngx_http_cache_guard_status_policy(&o, &v->policies[i]);
    }

    ngx_http_cache_guard_out(&o, "], \"redis\": ");

    if (v->redis) {
        ngx_http_cache_guard_status_redis(&o, v->redis);

    } else {
        ngx_http_cache_guard_out(&o, "null");
    }

    ngx_http_cache_guard_status_zones(&o, v);
    ngx_http_cache_guard_status_alerts(&o, v);

    return ngx_http_cache_guard_metrics_send(r, &o, "application/json");
}


/* text/html in Accept, unless ?format= says otherwise */

static ngx_uint_t
ngx_http_cache_guard_status_html(ngx_http_request_t *r)
{
    ngx_str_t         format;
    ngx_uint_t        html;
    ngx_table_elt_t  *accept;

    html = 0;
    accept = r->headers_in.accept;

    if (accept && ngx_strlcasestrn(accept->value.data,
                                   accept->value.data + accept->value.len,
                                   (u_char *) "text/html", 9 - 1)
                  != NULL)
    {
        html = 1;
    }

    if (ngx_http_arg(r, (u_char *) "format", 6, &format) == NGX_OK) {
        html = (format.len == 4 && ngx_strncmp(format.data, "html", 4) == 0);
    }

    return html;
}


static void
ngx_http_cache_guard_status_policy(ngx_http_cache_guard_out_t *o,
    ngx_http_cache_guard_policy_view_t *pv)
{
    ngx_uint_t                      i;
    ngx_http_cache_guard_policy_t  *pl;

    pl = pv->policy;

    ngx_http_cache_guard_out(o, "{\"name\": ");
    ngx_http_cache_guard_out_json(o, &pl->name);
    ngx_http_cache_guard_out(o, ", \"requests\": {");

    for (i = 1; i < NGX_HTTP_CACHE_GUARD_NSTATUS; i++) {
        ngx_http_cache_guard_out(o, "%s\"%V\": %uA", i == 1 ? "" : ", ",
                                 &ngx_http_cache_guard_status_names[i],
                                 pv->requests[i]);
    }

    ngx_http_cache_guard_out(o, "}, \"requests_total\": %uL, "
                             "\"hits\": {\"l1\": %uA, \"l2\": %uA}, "
                             "\"hit_ratio\": ",
                             pv->requests_all,
                             pv->hits[NGX_HTTP_CACHE_GUARD_LEVEL_L1],
                             pv->hits[NGX_HTTP_CACHE_GUARD_LEVEL_L2]);

    if (pv->total.requests) {
        ngx_http_cache_guard_out_double(o, (double) pv->total.hits
                                           / (double) pv->total.requests);
    } else {
        ngx_http_cache_guard_out(o, "null");
    }

    ngx_http_cache_guard_out(o, ", \"window\": {\"seconds\": %M, "
                             "\"requests\": %uL, \"hit_ratio\": ",
                             pl->alert_window, pv->window.requests);

    if (pv->window_hit_ratio >= 0) {
        ngx_http_cache_guard_out_double(o, pv->window_hit_ratio);
        ngx_http_cache_guard_out(o, ", \"error_rate\": ");
        ngx_http_cache_guard_out_double(o, pv->window_error_rate);

    } else {
        ngx_http_cache_guard_out(o, "null, \"error_rate\": null");
    }

    ngx_http_cache_guard_out(o, "}, \"responses_5xx\": %uA, "
                             "\"origin\": {\"fetches\": %uA, "
                             "\"errors\": %uA, \"inflight\": %A}, "
                             "\"lock\": {\"waits\": %uA, "
                             "\"timeouts\": %uA}, "
                             "\"early_refreshes\": %uA, "
                             "\"hook_errors\": {",
                             pv->responses_5xx, pv->origin_fetches,
                             pv->origin_errors,
                             (ngx_atomic_int_t) pv->inflight,
                             pv->lock_waits, pv->lock_timeouts,
                             pv->early_refreshes);

    ngx_http_cache_guard_status_counts(o, ngx_http_cache_guard_hook_names,
                                       pv->hook_errors,
                                       NGX_HTTP_CACHE_GUARD_NHOOKS);

    ngx_http_cache_guard_out(o, "}, \"latency\": ");
    ngx_http_cache_guard_status_histogram(o, &pv->duration);
    ngx_http_cache_guard_out(o, ", \"breaker\": ");
    ngx_http_cache_guard_status_breaker(o, &pv->breaker);
    ngx_http_cache_guard_out(o, "}");
}


static void
ngx_http_cache_guard_status_redis(ngx_http_cache_guard_out_t *o,
    ngx_http_cache_guard_redis_view_t *rv)
{
    ngx_uint_t  i;

    ngx_http_cache_guard_out(o, "{\"address\": ");
    ngx_http_cache_guard_out_json(o, &rv->address);
    ngx_http_cache_guard_out(o, ", \"breaker\": ");
    ngx_http_cache_guard_status_breaker(o, &rv->breaker);
    ngx_http_cache_guard_out(o, ", \"commands\": %uA, \"errors\": {",
                             rv->commands);

    ngx_http_cache_guard_status_counts(o, ngx_http_cache_guard_rerr_names,
                                       rv->errors,
                                       NGX_HTTP_CACHE_GUARD_NRERR);

    ngx_http_cache_guard_out(o, "}, \"latency\": ");
    ngx_http_cache_guard_status_histogram(o, &rv->duration);
    ngx_http_cache_guard_out(o, ", \"info\": ");

    if (!rv->info_read) {
        ngx_http_cache_guard_out(o, "null}");
        return;
    }

    ngx_http_cache_guard_out(o, "{\"age\": %T", rv->info_age);

    for (i = 0; i < NGX_HTTP_CACHE_GUARD_NINFO; i++) {
        ngx_http_cache_guard_out(o, ", \"%s\": ",
                                 ngx_http_cache_guard_info_names[i]);

        if (i == NGX_HTTP_CACHE_GUARD_INFO_FRAGMENTATION) {
            ngx_http_cache_guard_out(o, "%uA.%03uA", rv->info[i] / 1000,
                                     rv->info[i] % 1000);

        } else {
            ngx_http_cache_guard_out(o, "%uA", rv->info[i]);
        }
    }

    ngx_http_cache_guard_out(o, "}}");
}


/* the L1 zones and the Bloom filters */

static void
ngx_http_cache_guard_status_zones(ngx_http_cache_guard_out_t *o,
    ngx_http_cache_guard_view_t *v)
{
    ngx_uint_t                          i;
    ngx_http_cache_guard_zone_view_t   *zv;
    ngx_http_cache_guard_bloom_info_t  *info;

    ngx_http_cache_guard_out(o, ", \"zones\": [");

    for (i = 0; i < v->nzones; i++) {
        zv = &v->zones[i];
        ngx_http_cache_guard_out(o, "%s{\"name\": ", i ? ", " : "");
        ngx_http_cache_guard_out_json(o, &zv->name);
        ngx_http_cache_guard_out(o, ", \"size\": %uz, \"entries\": %uA, "
                                 "\"bytes\": %uA, \"evictions\": %uA}",
                                 zv->size, zv->entries, zv->bytes,
                                 zv->evictions);
    }

    ngx_http_cache_guard_out(o, "], \"filters\": [");

    for (i = 0; i < v->nfilters; i++) {
        info = &v->filters[i];
        ngx_http_cache_guard_out(o, "%s{\"name\": ", i ? ", " : "");
        ngx_http_cache_guard_out_json(o, &info->name);
        ngx_http_cache_guard_out(o, ", \"mode\": \"%s\", \"loaded\": %s, "
                                 "\"items\": %ui, \"capacity\": %ui, "
                                 "\"fill_ratio\": ",
                                 info->mode == NGX_HTTP_CACHE_GUARD_BLOOM_SHADOW
                                 ? "shadow" : "enforce",
                                 info->loaded ? "true" : "false", info->items,
                                 info->capacity);
        ngx_http_cache_guard_out_double(o, info->fill_ratio);
        ngx_http_cache_guard_out(o, ", \"rejected\": %ui, "
                                 "\"shadow_rejected\": %ui}",
                                 info->rejected, info->shadow_rejected);
    }
}


/* the policies' thresholds over their window, and open breakers */

static void
ngx_http_cache_guard_status_alerts(ngx_http_cache_guard_out_t *o,
    ngx_http_cache_guard_view_t *v)
{
    ngx_uint_t                           i, first;
    ngx_http_cache_guard_policy_view_t  *pv;

    ngx_http_cache_guard_out(o, "], \"alerts\": [");
    first = 1;

    if (v->redis) {
        first = ngx_http_cache_guard_status_breaker_alert(o, first,
                                                          &v->redis->breaker);
    }

    for (i = 0; i < v->npolicies; i++) {
        pv = &v->policies[i];

        first = ngx_http_cache_guard_status_breaker_alert(o, first,
                                                          &pv->breaker);

        if (pv->alert_hit_ratio) {
            ngx_http_cache_guard_status_alert(o, first, "hit_ratio_below",
                                              pv->policy, pv->window_hit_ratio,
                                              pv->policy->alert_hit_ratio);
            first = 0;
        }

        if (pv->alert_error_rate) {
            ngx_http_cache_guard_status_alert(o, first, "error_rate_above",
                                              pv->policy,
                                              pv->window_error_rate,
                                              pv->policy->alert_error_rate);
            first = 0;
        }
    }

    ngx_http_cache_guard_out(o, "]}\n");
}


/* an alert for a breaker not closed; whether the list is still empty */

static ngx_uint_t
ngx_http_cache_guard_status_breaker_alert(ngx_http_cache_guard_out_t *o,
    ngx_uint_t first, ngx_http_cache_guard_breaker_view_t *bv)
{
    if (bv->state == NGX_HTTP_CACHE_GUARD_CLOSED) {
        return first;
    }

    ngx_http_cache_guard_out(o, "%s{\"alert\": \"breaker_open\", "
                             "\"breaker\": ", first ? "" : ", ");
    ngx_http_cache_guard_out_json(o, &bv->name);
    ngx_http_cache_guard_out(o, ", \"state\": \"%s\"}",
                             ngx_http_cache_guard_breaker_name(bv->state));

    return 0;
}


static void
ngx_http_cache_guard_status_alert(ngx_http_cache_guard_out_t *o,
    ngx_uint_t first, const char *alert, ngx_http_cache_guard_policy_t *pl,
    double value, double threshold)
{
    ngx_http_cache_guard_out(o, "%s{\"alert\": \"%s\", \"policy\": ",
                             first ? "" : ", ", alert);
    ngx_http_cache_guard_out_json(o, &pl->name);
    ngx_http_cache_guard_out(o, ", \"value\": ");
    ngx_http_cache_guard_out_double(o, value);
    ngx_http_cache_guard_out(o, ", \"threshold\": ");
    ngx_http_cache_guard_out_double(o, threshold);
    ngx_http_cache_guard_out(o, ", \"window\": %M}", pl->alert_window);
}


/* "name": n, ... of counters by name */

static void
ngx_http_cache_guard_status_counts(ngx_http_cache_guard_out_t *o,
    const char **names, ngx_atomic_uint_t *n, ngx_uint_t count)
{
    ngx_uint_t  i;

    for (i = 0; i < count; i++) {
        ngx_http_cache_guard_out(o, "%s\"%s\": %uA", i ? ", " : "", names[i],
                                 n[i]);
    }
}


static void
ngx_http_cache_guard_status_histogram(ngx_http_cache_guard_out_t *o,
    ngx_http_cache_guard_histogram_view_t *h)
{
    ngx_uint_t         i;
    ngx_atomic_uint_t  cum;

    ngx_http_cache_guard_out(o, "{\"count\": %uA, \"sum\": %uA.%06uA",
                             h->count, h->sum_us / 1000000,
                             h->sum_us % 1000000);

    if (h->count == 0) {
        /* no request yet: no percentile either */
        ngx_http_cache_guard_out(o, ", \"p50\": null, \"p95\": null, "
                                 "\"p99\": null");

    } else {
        ngx_http_cache_guard_out(o, ", \"p50\": ");
        ngx_http_cache_guard_out_double(o, h->p50);
        ngx_http_cache_guard_out(o, ", \"p95\": ");
        ngx_http_cache_guard_out_double(o, h->p95);
        ngx_http_cache_guard_out(o, ", \"p99\": ");
        ngx_http_cache_guard_out_double(o, h->p99);
    }

    ngx_http_cache_guard_out(o, ", \"buckets\": [");

    cum = 0;

    for (i = 0; i < NGX_HTTP_CACHE_GUARD_NBUCKETS; i++) {
        cum += h->bucket[i];

        /* the last bound, "+Inf", is no JSON number: quoted */

        ngx_http_cache_guard_out(o,
                                 (i < NGX_HTTP_CACHE_GUARD_NBUCKETS - 1)
                                 ? "%s[%s, %uA]" : "%s[\"%s\", %uA]",
                                 i ? ", " : "", ngx_http_cache_guard_les[i],
                                 cum);
    }

    ngx_http_cache_guard_out(o, "]}");
}


static void
ngx_http_cache_guard_status_breaker(ngx_http_cache_guard_out_t *o,
    ngx_http_cache_guard_breaker_view_t *bv)
{
    /* the admin API's own JSON of a breaker, at most this long */

    if ((size_t) (o->end - o->pos) < NGX_HTTP_CACHE_GUARD_BREAKER_JSON) {
        o->pos = o->end;
        return;
    }

    o->pos = ngx_http_cache_guard_breaker_json(o->pos, bv->rec, bv->conf);
}


u_char *
ngx_http_cache_guard_breaker_json(u_char *p,
    ngx_http_cache_guard_record_t *rec,
    ngx_http_cache_guard_breaker_conf_t *bc)
{
    ngx_str_t                      name;
    ngx_uint_t                     forced;
    ngx_http_cache_guard_window_t  win;

    static const char  *forced_names[] = { "auto", "open", "closed" };

    name.data = rec->name;
    name.len = rec->len;
    forced = rec->forced;

    ngx_http_cache_guard_breaker_window(rec, bc->window, &win);

    *p++ = '{';
    p = ngx_cpymem(p, "\"name\": ", 8);
    p = ngx_http_cache_guard_json_str(p, &name);

    p = ngx_sprintf(p, ", \"state\": \"%s\", \"forced\": \"%s\", "
                    "\"enabled\": %s, \"window\": %ui, \"requests\": %ui, "
                    "\"failures\": %ui, \"min_requests\": %ui, "
                    "\"failure_rate\": ",
                    ngx_http_cache_guard_breaker_name(
                        ngx_http_cache_guard_breaker_state(rec, bc)),
                    forced_names[forced < 3 ? forced : 0],
                    bc->enabled ? "true" : "false", bc->window,
                    win.requests, win.failures, bc->min_requests);

    p = ngx_http_cache_guard_json_number(p, bc->failure_rate);

    p = ngx_sprintf(p, ", \"open_for\": %M, \"half_open_requests\": %ui, "
                    "\"opened\": %uA, \"since_ms\": %M, "
                    "\"inflight\": %A}",
                    bc->open_for / 1000, bc->half_open,
                    rec->opened,
                    ngx_current_msec - (ngx_msec_t) rec->since,
                    (ngx_atomic_int_t) rec->inflight);

    return p;
}
