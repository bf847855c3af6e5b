
/*
 * Copyright (C) nginx-cache-guard authors
 *
 * What the guard does, counted and shown: counters in the state zone
 * (atomics shared by all workers, kept across reload), updated once per
 * request in the log phase; a Prometheus exposition (cache_guard_metrics)
 * and a JSON status with an HTML dashboard (cache_guard_status).  One
 * worker per node takes a snapshot of the counters every second, for the
 * alert windows, and reads Redis' INFO every 5 s.
 */


#include "ngx_http_cache_guard_metrics.h"
#include "ngx_http_cache_guard_admin.h"
#include "ngx_http_cache_guard_respond.h"
#include "ngx_http_cache_guard_bloom.h"
#include "ngx_http_cache_guard_breaker.h"
#include "ngx_http_cache_guard_codec.h"
#include "ngx_http_cache_guard_lua.h"
#include "ngx_http_cache_guard_redis.h"
#include "ngx_http_cache_guard_stats.h"
#include "ngx_http_cache_guard_store.h"
#include "ngx_http_cache_guard_ctx.h"

#include <time.h>


/* the dashboard page, made a C string by the build (config) */
#include "ngx_http_cache_guard_dashboard.h"


#define NGX_HTTP_CACHE_GUARD_INFO_EVERY  5        /* seconds */

#define NGX_HTTP_CACHE_GUARD_INFO_USED_MEMORY    0
#define NGX_HTTP_CACHE_GUARD_INFO_FRAGMENTATION  1   /* ratio x 1000 */
#define NGX_HTTP_CACHE_GUARD_INFO_EVICTED        2
#define NGX_HTTP_CACHE_GUARD_INFO_EXPIRED        3
#define NGX_HTTP_CACHE_GUARD_INFO_HITS           4
#define NGX_HTTP_CACHE_GUARD_INFO_MISSES         5
#define NGX_HTTP_CACHE_GUARD_INFO_CLIENTS        6


typedef struct {
    u_char                         *start;
    u_char                         *pos;
    u_char                         *end;
} ngx_http_cache_guard_out_t;


static ngx_int_t ngx_http_cache_guard_metrics_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_cache_guard_status_handler(ngx_http_request_t *r);
static void ngx_http_cache_guard_tick(ngx_event_t *ev);
static void ngx_http_cache_guard_info_done(redisReply *reply, void *data);
static void ngx_http_cache_guard_snapshot(ngx_http_cache_guard_record_t *rec,
    time_t now);
static void ngx_http_cache_guard_window(ngx_http_cache_guard_record_t *rec,
    ngx_uint_t seconds, ngx_http_cache_guard_snapshot_t *delta);
static void ngx_http_cache_guard_totals(ngx_http_cache_guard_record_t *rec,
    ngx_http_cache_guard_snapshot_t *s);
static double ngx_http_cache_guard_quantile(
    ngx_http_cache_guard_histogram_t *h, double q);
static ngx_int_t ngx_http_cache_guard_out_init(ngx_http_request_t *r,
    ngx_http_cache_guard_out_t *o, size_t size);
static void ngx_http_cache_guard_out(ngx_http_cache_guard_out_t *o,
    const char *fmt, ...);
static void ngx_http_cache_guard_out_label(ngx_http_cache_guard_out_t *o,
    u_char *p, size_t len);
static void ngx_http_cache_guard_out_json(ngx_http_cache_guard_out_t *o,
    u_char *p, size_t len);
static void ngx_http_cache_guard_out_double(ngx_http_cache_guard_out_t *o,
    double d);
static void ngx_http_cache_guard_prom_histogram(ngx_http_cache_guard_out_t *o,
    const char *name, const char *label, u_char *value, size_t len,
    ngx_http_cache_guard_histogram_t *h);
static void ngx_http_cache_guard_json_histogram(ngx_http_cache_guard_out_t *o,
    ngx_http_cache_guard_histogram_t *h);
static void ngx_http_cache_guard_json_breaker(ngx_http_cache_guard_out_t *o,
    ngx_http_cache_guard_record_t *rec,
    ngx_http_cache_guard_breaker_conf_t *bc);
static ngx_int_t ngx_http_cache_guard_out_send(ngx_http_request_t *r,
    ngx_http_cache_guard_out_t *o, const char *type);
static ngx_http_cache_guard_policy_t *ngx_http_cache_guard_policy_at(
    ngx_http_cache_guard_main_conf_t *mcf, ngx_uint_t i);
static ngx_uint_t ngx_http_cache_guard_seen(
    ngx_http_cache_guard_main_conf_t *mcf, ngx_uint_t i,
    ngx_http_cache_guard_record_t *rec);


static const char  *ngx_http_cache_guard_les[NGX_HTTP_CACHE_GUARD_NBUCKETS] = {
    "0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005", "0.01",
    "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf"
};

static const char  *ngx_http_cache_guard_status_labels[] = {
    "", "HIT", "MISS", "STALE", "UPDATING", "NEGATIVE", "BLOOM_REJECT",
    "INVALID", "BYPASS", "LOCK_TIMEOUT", "FALLBACK"
};

static const char  *ngx_http_cache_guard_rerr_labels[] = {
    "connect", "timeout", "lost", "protocol", "reply", "oversize",
    "breaker_open"
};

static const char  *ngx_http_cache_guard_info_names[] = {
    "used_memory", "mem_fragmentation_ratio", "evicted_keys",
    "expired_keys", "keyspace_hits", "keyspace_misses", "connected_clients"
};

static ngx_event_t  ngx_http_cache_guard_tick_ev;
static ngx_uint_t   ngx_http_cache_guard_ticks;


/* the log phase: one request of a guarded location is counted */

ngx_int_t
ngx_http_cache_guard_log_handler(ngx_http_request_t *r)
{
    ngx_http_cache_guard_ctx_t      *ctx;
    ngx_http_cache_guard_metrics_t  *m;

    ctx = ngx_http_cache_guard_find_ctx(r);

    /* log_subrequest on: a refresh or a warm-up is no client's request */

    if (ctx == NULL || ctx->status == NGX_HTTP_CACHE_GUARD_NONE
        || ctx->request != r || r != r->main || ctx->policy->rec == NULL)
    {
        return NGX_OK;
    }

    m = &ctx->policy->rec->m;

    (void) ngx_atomic_fetch_add(&m->requests[ctx->status], 1);

    if (ctx->status == NGX_HTTP_CACHE_GUARD_HIT
        || ctx->status == NGX_HTTP_CACHE_GUARD_NEGATIVE)
    {
        (void) ngx_atomic_fetch_add(&m->hits[ctx->level], 1);
    }

    if (r->headers_out.status >= NGX_HTTP_INTERNAL_SERVER_ERROR) {
        (void) ngx_atomic_fetch_add(&m->responses_5xx, 1);
    }

    if (ctx->start_us) {
        ngx_http_cache_guard_histogram_add(&m->duration,
                                  ngx_http_cache_guard_usec() - ctx->start_us);
    }

    return NGX_OK;
}


/* one worker per node: snapshots every second, Redis INFO every 5 s */

void
ngx_http_cache_guard_metrics_init_worker(ngx_cycle_t *cycle)
{
    if (ngx_worker != 0 || ngx_http_cache_guard_state == NULL) {
        return;
    }

    ngx_http_cache_guard_tick_ev.handler = ngx_http_cache_guard_tick;
    ngx_http_cache_guard_tick_ev.data = cycle;
    ngx_http_cache_guard_tick_ev.log = cycle->log;
    ngx_http_cache_guard_tick_ev.cancelable = 1;

    ngx_add_timer(&ngx_http_cache_guard_tick_ev, 1000);
}


static void
ngx_http_cache_guard_tick(ngx_event_t *ev)
{
    size_t                             argvlen[1];
    time_t                             now;
    ngx_uint_t                         i, n;
    const char                        *argv[1];
    ngx_cycle_t                       *cycle;
    ngx_http_cache_guard_state_t      *st;
    ngx_http_cache_guard_main_conf_t  *mcf;

    if (ngx_exiting) {
        return;
    }

    cycle = ev->data;
    st = ngx_http_cache_guard_state;
    now = ngx_time();
    n = st->nrecords;

    for (i = 0; i < n; i++) {
        ngx_http_cache_guard_snapshot(&st->records[i], now);
    }

    mcf = ngx_http_cycle_get_module_main_conf(cycle,
                                              ngx_http_cache_guard_module);

    if (mcf->redis
        && ngx_http_cache_guard_ticks++ % NGX_HTTP_CACHE_GUARD_INFO_EVERY == 0)
    {
        /* every section: several at once need Redis 7 */

        argv[0] = "INFO";
        argvlen[0] = 4;

        /* an open breaker refuses it: nothing is sent then */

        (void) ngx_http_cache_guard_redis_command(mcf->redis,
                                                  ngx_http_cache_guard_info_done,
                                                  mcf->redis, 1, argv, argvlen);
    }

    ngx_add_timer(ev, 1000);
}


static void
ngx_http_cache_guard_info_done(redisReply *reply, void *data)
{
    ngx_http_cache_guard_redis_t *rd = data;

    u_char                          *p, *last, *eol, *colon;
    size_t                           len;
    ngx_uint_t                       i;
    ngx_http_cache_guard_metrics_t  *m;

    if (reply == NULL || reply->type != REDIS_REPLY_STRING || rd->rec == NULL)
    {
        return;
    }

    m = &rd->rec->m;
    p = (u_char *) reply->str;
    last = p + reply->len;

    for ( /* void */ ; p < last; p = eol + 1) {
        eol = ngx_strlchr(p, last, '\n');
        if (eol == NULL) {
            eol = last;
        }

        colon = ngx_strlchr(p, eol, ':');
        if (colon == NULL) {
            continue;
        }

        len = colon - p;

        for (i = 0; i < 7; i++) {
            if (ngx_strlen(ngx_http_cache_guard_info_names[i]) == len
                && ngx_strncmp(p, ngx_http_cache_guard_info_names[i], len) == 0)
            {
                break;
            }
        }

        if (i == 7) {
            continue;
        }

        colon++;
        len = eol - colon;

        if (len && colon[len - 1] == CR) {
            len--;
        }

        if (i == NGX_HTTP_CACHE_GUARD_INFO_FRAGMENTATION) {
            m->info[i] = (ngx_atomic_uint_t) (strtod((char *) colon, NULL)
                                              * 1000);

        } else {
            m->info[i] = (ngx_atomic_uint_t) ngx_atoof(colon, len);
        }
    }

    m->info_time = ngx_time();
}


static void
ngx_http_cache_guard_totals(ngx_http_cache_guard_record_t *rec,
    ngx_http_cache_guard_snapshot_t *s)
{
    ngx_uint_t                       i;
    ngx_atomic_uint_t                n[NGX_HTTP_CACHE_GUARD_NSTATUS];
    ngx_http_cache_guard_metrics_t  *m;

    m = &rec->m;

    /* each counter read once: other workers go on counting meanwhile */

    for (i = 0; i < NGX_HTTP_CACHE_GUARD_NSTATUS; i++) {
        n[i] = m->requests[i];
    }

    /* answered from the cache: fresh, negative or stale */

    s->hits = n[NGX_HTTP_CACHE_GUARD_HIT] + n[NGX_HTTP_CACHE_GUARD_NEGATIVE]
              + n[NGX_HTTP_CACHE_GUARD_STALE]
              + n[NGX_HTTP_CACHE_GUARD_UPDATING];

    /* what could have been: refusals and bypasses are not cache traffic */

    s->requests = s->hits + n[NGX_HTTP_CACHE_GUARD_MISS]
                  + n[NGX_HTTP_CACHE_GUARD_LOCK_TIMEOUT]
                  + n[NGX_HTTP_CACHE_GUARD_FALLBACK];

    s->errors = m->responses_5xx;
}


static void
ngx_http_cache_guard_snapshot(ngx_http_cache_guard_record_t *rec, time_t now)
{
    ngx_http_cache_guard_snapshot_t  s;

    ngx_http_cache_guard_totals(rec, &s);
    s.sec = (uint64_t) now;

    rec->m.history[now % NGX_HTTP_CACHE_GUARD_HISTORY] = s;
}


/* what happened in the last "seconds": now minus the oldest snapshot */

static void
ngx_http_cache_guard_window(ngx_http_cache_guard_record_t *rec,
    ngx_uint_t seconds, ngx_http_cache_guard_snapshot_t *delta)
{
    uint64_t                          since;
    ngx_uint_t                        i;
    ngx_http_cache_guard_snapshot_t   now, *s, *oldest;

    ngx_http_cache_guard_totals(rec, &now);

    since = (uint64_t) ngx_time() - seconds;
    oldest = NULL;

    for (i = 0; i < NGX_HTTP_CACHE_GUARD_HISTORY; i++) {
        s = &rec->m.history[i];

        if (s->sec >= since && (oldest == NULL || s->sec < oldest->sec)) {
            oldest = s;
        }
    }

    /*
     * The zone is younger than the window: everything counted so far is
     * in it, the snapshots of its first seconds do not cover it all.
     */

    if (ngx_http_cache_guard_state == NULL
        || (uint64_t) ngx_http_cache_guard_state->started >= since)
    {
        oldest = NULL;
    }

    delta->requests = now.requests - (oldest ? oldest->requests : 0);
    delta->hits = now.hits - (oldest ? oldest->hits : 0);
    delta->errors = now.errors - (oldest ? oldest->errors : 0);
    delta->sec = oldest ? (uint64_t) ngx_time() - oldest->sec : 0;
}


/* a quantile from the buckets, linear within the bucket: seconds */

static double
ngx_http_cache_guard_quantile(ngx_http_cache_guard_histogram_t *h, double q)
{
    double      total, target, cum, lower, upper, n;
    ngx_uint_t  i;

    total = 0;

    for (i = 0; i < NGX_HTTP_CACHE_GUARD_NBUCKETS; i++) {
        total += (double) h->histogram[i];
    }

    if (total == 0) {
        return 0;
    }

    target = q * total;
    cum = 0;
    lower = 0;

    for (i = 0; i < NGX_HTTP_CACHE_GUARD_NBUCKETS - 1; i++) {
        n = (double) h->histogram[i];
        upper = (double) ngx_http_cache_guard_bounds[i] / 1e6;

        if (n > 0 && cum + n >= target) {
            return lower + (upper - lower) * (target - cum) / n;
        }

        cum += n;
        lower = upper;
    }

    /* in the +Inf bucket: the largest finite bound is all that is known */

    return lower;
}


char *
ngx_http_cache_guard_metrics_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_cache_guard_loc_conf_t  *lcf = conf;

    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (clcf->handler) {
        return "is duplicate, or the location has another handler";
    }

    /*
     * live numbers must never come from the cache: a cache_guard inherited
     * from the server or http level is turned off here, as for the admin
     */

    if (lcf->enable == 1) {
        return "cannot share a location with cache_guard";
    }

    lcf->enable = 0;
    lcf->shm_zone = NULL;

    clcf->handler = (cmd->post == NULL) ? ngx_http_cache_guard_metrics_handler
                                        : ngx_http_cache_guard_status_handler;

    return NGX_CONF_OK;
}


/* whether a policy before the i-th has this record */

static ngx_uint_t
ngx_http_cache_guard_seen(ngx_http_cache_guard_main_conf_t *mcf, ngx_uint_t i,
    ngx_http_cache_guard_record_t *rec)
{
    ngx_uint_t                      j;
    ngx_http_cache_guard_policy_t  *pl;

    for (j = 0; j < i; j++) {
        pl = ngx_http_cache_guard_policy_at(mcf, j);

        if (pl && pl->rec == rec) {
            return 1;
        }
    }

    return 0;
}


static ngx_http_cache_guard_policy_t *
ngx_http_cache_guard_policy_at(ngx_http_cache_guard_main_conf_t *mcf,
    ngx_uint_t i)
{
    ngx_http_cache_guard_policy_t  **plp;

    plp = mcf->policies.elts;

    return (i < mcf->policies.nelts) ? plp[i] : mcf->default_policy;
}


/* GET: the Prometheus text exposition format, version 0.0.4 */

static ngx_int_t
ngx_http_cache_guard_metrics_handler(ngx_http_request_t *r)
{
    size_t                              size;
    ngx_uint_t                          i, j, state, nzones;
    ngx_http_cache_guard_zone_t       **zones;
    ngx_http_cache_guard_out_t          o;
    ngx_http_cache_guard_zone_t        *zone;
    ngx_http_cache_guard_record_t      *rec;
    ngx_http_cache_guard_policy_t      *pl;
    ngx_http_cache_guard_metrics_t     *m;
    ngx_http_cache_guard_main_conf_t   *mcf;
    ngx_http_cache_guard_bloom_t      **bfp;
    ngx_http_cache_guard_bloom_info_t   info;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    mcf = ngx_http_get_module_main_conf(r, ngx_http_cache_guard_module);

    nzones = mcf->zones.nelts;
    zones = mcf->zones.elts;

    size = 8192 + (mcf->policies.nelts + 2) * 16384 + nzones * 1024
           + mcf->blooms.nelts * 1024;

    if (ngx_http_cache_guard_out_init(r, &o, size) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* per policy */

/* each record once: policies of one name share theirs */

#define NGX_HTTP_CACHE_GUARD_EACH_POLICY                                      \
    for (i = 0; i <= mcf->policies.nelts; i++)                                \
        if ((pl = ngx_http_cache_guard_policy_at(mcf, i)) != NULL             \
            && (rec = pl->rec) != NULL                                        \
            && !ngx_http_cache_guard_seen(mcf, i, rec)                        \
            && ((m = &rec->m) != NULL))

    ngx_http_cache_guard_out(&o,
        "# HELP cache_guard_requests_total Requests of guarded locations, "
        "by policy and $cache_guard_status.\n"
        "# TYPE cache_guard_requests_total counter\n");

    NGX_HTTP_CACHE_GUARD_EACH_POLICY {
        for (j = 1; j < NGX_HTTP_CACHE_GUARD_NSTATUS; j++) {
            ngx_http_cache_guard_out(&o, "cache_guard_requests_total{policy=\"");
            ngx_http_cache_guard_out_label(&o, pl->name.data, pl->name.len);
            ngx_http_cache_guard_out(&o, "\",status=\"%s\"} %uA\n",
                                     ngx_http_cache_guard_status_labels[j],
                                     m->requests[j]);
        }
    }

    ngx_http_cache_guard_out(&o,
        "# HELP cache_guard_hits_total Fresh and negative hits, by level.\n"
        "# TYPE cache_guard_hits_total counter\n");

    NGX_HTTP_CACHE_GUARD_EACH_POLICY {
        for (j = NGX_HTTP_CACHE_GUARD_LEVEL_L1;
             j <= NGX_HTTP_CACHE_GUARD_LEVEL_L2;
             j++)
        {
            ngx_http_cache_guard_out(&o, "cache_guard_hits_total{policy=\"");
            ngx_http_cache_guard_out_label(&o, pl->name.data, pl->name.len);
            ngx_http_cache_guard_out(&o, "\",level=\"l%ui\"} %uA\n", j,
                                     m->hits[j]);
        }
    }

#define NGX_HTTP_CACHE_GUARD_PROM_COUNTER(metric, type, help, field)          \
    ngx_http_cache_guard_out(&o, "# HELP " metric " " help "\n"               \
                             "# TYPE " metric " " type "\n");                 \
    NGX_HTTP_CACHE_GUARD_EACH_POLICY {                                        \
        ngx_http_cache_guard_out(&o, metric "{policy=\"");                    \
        ngx_http_cache_guard_out_label(&o, pl->name.data, pl->name.len);      \
        ngx_http_cache_guard_out(&o, "\"} %uA\n", field);                     \
    }

    NGX_HTTP_CACHE_GUARD_PROM_COUNTER("cache_guard_origin_fetches_total",
        "counter", "Requests let through to the origin (fills, refreshes, "
        "bypasses).", m->origin_fetches);
    NGX_HTTP_CACHE_GUARD_PROM_COUNTER("cache_guard_origin_errors_total",
        "counter", "Origin answers counted as failures by the breaker.",
        m->origin_errors);
    NGX_HTTP_CACHE_GUARD_PROM_COUNTER("cache_guard_origin_inflight",
        "gauge", "Origin fetches in flight on this node (counted with "
        "origin.max_concurrent only).", rec->inflight);
    NGX_HTTP_CACHE_GUARD_PROM_COUNTER("cache_guard_lock_waits_total",
        "counter", "Requests that waited for another request's fill.",
        m->lock_waits);
    NGX_HTTP_CACHE_GUARD_PROM_COUNTER("cache_guard_lock_timeouts_total",
        "counter", "Waits that passed lock.wait.", m->lock_timeouts);
    NGX_HTTP_CACHE_GUARD_PROM_COUNTER("cache_guard_early_refreshes_total",
        "counter", "Background refreshes started before expiry (XFetch).",
        m->early_refreshes);
    NGX_HTTP_CACHE_GUARD_PROM_COUNTER("cache_guard_responses_5xx_total",
        "counter", "Answers of guarded locations with a 5xx status.",
        m->responses_5xx);

    ngx_http_cache_guard_out(&o,
        "# HELP cache_guard_hook_errors_total Lua hook calls that raised an "
        "error, ran too long or returned a wrong value.\n"
        "# TYPE cache_guard_hook_errors_total counter\n");

    NGX_HTTP_CACHE_GUARD_EACH_POLICY {
        for (j = 0; j < NGX_HTTP_CACHE_GUARD_NHOOKS; j++) {
            ngx_http_cache_guard_out(&o,
                                     "cache_guard_hook_errors_total{policy=\"");
            ngx_http_cache_guard_out_label(&o, pl->name.data, pl->name.len);
            ngx_http_cache_guard_out(&o, "\",hook=\"%s\"} %uA\n",
                                     ngx_http_cache_guard_hook_names[j],
                                     m->hook_errors[j]);
        }
    }

    ngx_http_cache_guard_out(&o,
        "# HELP cache_guard_request_duration_seconds From the lookup to the "
        "log phase; refusals are not timed.\n"
        "# TYPE cache_guard_request_duration_seconds histogram\n");

    NGX_HTTP_CACHE_GUARD_EACH_POLICY {
        ngx_http_cache_guard_prom_histogram(&o,
                                       "cache_guard_request_duration_seconds",
                                       "policy", pl->name.data, pl->name.len,
                                       &m->duration);
    }

    /* breakers */

    ngx_http_cache_guard_out(&o,
        "# HELP cache_guard_breaker_state 0 closed, 1 open, 2 half-open.\n"
        "# TYPE cache_guard_breaker_state gauge\n");

    if (mcf->redis && mcf->redis->rec) {
        ngx_http_cache_guard_out(&o, "cache_guard_breaker_state{breaker=\"redis\"} "
                                 "%ui\n", ngx_http_cache_guard_breaker_state(
                                                          mcf->redis->rec,
                                                  &mcf->redis->breaker));
    }

    NGX_HTTP_CACHE_GUARD_EACH_POLICY {
        state = ngx_http_cache_guard_breaker_state(rec, &pl->breaker);
        ngx_http_cache_guard_out(&o, "cache_guard_breaker_state{breaker=\"");
        ngx_http_cache_guard_out_label(&o, rec->name, rec->len);
        ngx_http_cache_guard_out(&o, "\"} %ui\n", state);
    }

    ngx_http_cache_guard_out(&o,
        "# HELP cache_guard_breaker_opened_total Times a breaker opened.\n"
        "# TYPE cache_guard_breaker_opened_total counter\n");

    if (mcf->redis && mcf->redis->rec) {
        ngx_http_cache_guard_out(&o, "cache_guard_breaker_opened_total"
                                 "{breaker=\"redis\"} %uA\n",
                                 mcf->redis->rec->opened);
    }

    NGX_HTTP_CACHE_GUARD_EACH_POLICY {
        ngx_http_cache_guard_out(&o, "cache_guard_breaker_opened_total"
                                 "{breaker=\"");
        ngx_http_cache_guard_out_label(&o, rec->name, rec->len);
        ngx_http_cache_guard_out(&o, "\"} %uA\n", rec->opened);
    }

    /* Redis */

    if (mcf->redis && mcf->redis->rec) {
        m = &mcf->redis->rec->m;

        ngx_http_cache_guard_out(&o,
            "# HELP cache_guard_redis_errors_total Redis failures, by kind.\n"
            "# TYPE cache_guard_redis_errors_total counter\n");

        for (j = 0; j < NGX_HTTP_CACHE_GUARD_NRERR; j++) {
            ngx_http_cache_guard_out(&o, "cache_guard_redis_errors_total"
                                     "{kind=\"%s\"} %uA\n",
                                     ngx_http_cache_guard_rerr_labels[j],
                                     m->redis_errors[j]);
        }

        ngx_http_cache_guard_out(&o,
            "# HELP cache_guard_redis_commands_total Commands sent to Redis.\n"
            "# TYPE cache_guard_redis_commands_total counter\n"
            "cache_guard_redis_commands_total %uA\n"
            "# HELP cache_guard_redis_duration_seconds From a command's queueing "
            "to its reply.\n"
            "# TYPE cache_guard_redis_duration_seconds histogram\n",
            m->redis_commands);

        ngx_http_cache_guard_prom_histogram(&o,
                                            "cache_guard_redis_duration_seconds",
                                            NULL, NULL, 0, &m->redis_duration);

        if (m->info_time) {
            ngx_http_cache_guard_out(&o,
                "# HELP cache_guard_redis_used_memory_bytes Redis INFO "
                "used_memory.\n"
                "# TYPE cache_guard_redis_used_memory_bytes gauge\n"
                "cache_guard_redis_used_memory_bytes %uA\n"
                "# HELP cache_guard_redis_mem_fragmentation_ratio Redis INFO "
                "mem_fragmentation_ratio.\n"
                "# TYPE cache_guard_redis_mem_fragmentation_ratio gauge\n"
                "cache_guard_redis_mem_fragmentation_ratio %uA.%03uA\n"
                "# HELP cache_guard_redis_evicted_keys_total Redis INFO "
                "evicted_keys.\n"
                "# TYPE cache_guard_redis_evicted_keys_total counter\n"
                "cache_guard_redis_evicted_keys_total %uA\n"
                "# HELP cache_guard_redis_expired_keys_total Redis INFO "
                "expired_keys.\n"
                "# TYPE cache_guard_redis_expired_keys_total counter\n"
                "cache_guard_redis_expired_keys_total %uA\n",
                m->info[NGX_HTTP_CACHE_GUARD_INFO_USED_MEMORY],
                m->info[NGX_HTTP_CACHE_GUARD_INFO_FRAGMENTATION] / 1000,
                m->info[NGX_HTTP_CACHE_GUARD_INFO_FRAGMENTATION] % 1000,
                m->info[NGX_HTTP_CACHE_GUARD_INFO_EVICTED],
                m->info[NGX_HTTP_CACHE_GUARD_INFO_EXPIRED]);

            ngx_http_cache_guard_out(&o,
                "# HELP cache_guard_redis_keyspace_hits_total Redis INFO "
                "keyspace_hits.\n"
                "# TYPE cache_guard_redis_keyspace_hits_total counter\n"
                "cache_guard_redis_keyspace_hits_total %uA\n"
                "# HELP cache_guard_redis_keyspace_misses_total Redis INFO "
                "keyspace_misses.\n"
                "# TYPE cache_guard_redis_keyspace_misses_total counter\n"
                "cache_guard_redis_keyspace_misses_total %uA\n"
                "# HELP cache_guard_redis_connected_clients Redis INFO "
                "connected_clients.\n"
                "# TYPE cache_guard_redis_connected_clients gauge\n"
                "cache_guard_redis_connected_clients %uA\n"
                "# HELP cache_guard_redis_info_age_seconds Since Redis INFO "
                "was last read.\n"
                "# TYPE cache_guard_redis_info_age_seconds gauge\n"
                "cache_guard_redis_info_age_seconds %T\n",
                m->info[NGX_HTTP_CACHE_GUARD_INFO_HITS],
                m->info[NGX_HTTP_CACHE_GUARD_INFO_MISSES],
                m->info[NGX_HTTP_CACHE_GUARD_INFO_CLIENTS],
                ngx_time() - (time_t) m->info_time);
        }
    }

    /* Bloom filters */

    if (mcf->blooms.nelts) {
        bfp = mcf->blooms.elts;

        ngx_http_cache_guard_out(&o,
            "# HELP cache_guard_bloom_items Items in a Bloom filter "
            "(approximate).\n"
            "# TYPE cache_guard_bloom_items gauge\n");

        for (i = 0; i < mcf->blooms.nelts; i++) {
            ngx_http_cache_guard_bloom_info(bfp[i], &info);
            ngx_http_cache_guard_out(&o, "cache_guard_bloom_items{filter=\"");
            ngx_http_cache_guard_out_label(&o, info.name.data, info.name.len);
            ngx_http_cache_guard_out(&o, "\"} %ui\n", info.items);
        }

        ngx_http_cache_guard_out(&o,
            "# HELP cache_guard_bloom_fill_ratio Share of a Bloom filter's "
            "bits set.\n"
            "# TYPE cache_guard_bloom_fill_ratio gauge\n");

        for (i = 0; i < mcf->blooms.nelts; i++) {
            ngx_http_cache_guard_bloom_info(bfp[i], &info);
            ngx_http_cache_guard_out(&o, "cache_guard_bloom_fill_ratio"
                                     "{filter=\"");
            ngx_http_cache_guard_out_label(&o, info.name.data, info.name.len);
            ngx_http_cache_guard_out(&o, "\"} ");
            ngx_http_cache_guard_out_double(&o, info.fill_ratio);
            ngx_http_cache_guard_out(&o, "\n");
        }

        ngx_http_cache_guard_out(&o,
            "# HELP cache_guard_bloom_rejections_total Requests a Bloom "
            "filter refused, or in shadow mode would have.\n"
            "# TYPE cache_guard_bloom_rejections_total counter\n");

        for (i = 0; i < mcf->blooms.nelts; i++) {
            ngx_http_cache_guard_bloom_info(bfp[i], &info);
            ngx_http_cache_guard_out(&o, "cache_guard_bloom_rejections_total"
                                     "{filter=\"");
            ngx_http_cache_guard_out_label(&o, info.name.data, info.name.len);
            ngx_http_cache_guard_out(&o, "\",mode=\"enforce\"} %ui\n",
                                     info.rejected);
            ngx_http_cache_guard_out(&o, "cache_guard_bloom_rejections_total"
                                     "{filter=\"");
            ngx_http_cache_guard_out_label(&o, info.name.data, info.name.len);
            ngx_http_cache_guard_out(&o, "\",mode=\"shadow\"} %ui\n",
                                     info.shadow_rejected);
        }
    }

    /* L1 zones */

    if (nzones) {
        ngx_http_cache_guard_out(&o,
            "# HELP cache_guard_l1_entries Entries in a zone's L1.\n"
            "# TYPE cache_guard_l1_entries gauge\n");

        for (i = 0; i < nzones; i++) {
            zone = zones[i];
            ngx_http_cache_guard_out(&o, "cache_guard_l1_entries{zone=\"");
            ngx_http_cache_guard_out_label(&o, zone->name.data, zone->name.len);
            ngx_http_cache_guard_out(&o, "\"} %uA\n", zone->sh->entries);
        }

        ngx_http_cache_guard_out(&o,
            "# HELP cache_guard_l1_bytes Bytes of the entries in a zone's "
            "L1.\n"
            "# TYPE cache_guard_l1_bytes gauge\n");

        for (i = 0; i < nzones; i++) {
            zone = zones[i];
            ngx_http_cache_guard_out(&o, "cache_guard_l1_bytes{zone=\"");
            ngx_http_cache_guard_out_label(&o, zone->name.data, zone->name.len);
            ngx_http_cache_guard_out(&o, "\"} %uA\n", zone->sh->bytes);
        }

        ngx_http_cache_guard_out(&o,
            "# HELP cache_guard_l1_evictions_total Entries evicted from a "
            "zone's L1 for room.\n"
            "# TYPE cache_guard_l1_evictions_total counter\n");

        for (i = 0; i < nzones; i++) {
            zone = zones[i];
            ngx_http_cache_guard_out(&o, "cache_guard_l1_evictions_total"
                                     "{zone=\"");
            ngx_http_cache_guard_out_label(&o, zone->name.data, zone->name.len);
            ngx_http_cache_guard_out(&o, "\"} %uA\n", zone->sh->evictions);
        }
    }

    return ngx_http_cache_guard_out_send(r, &o,
                                  "text/plain; version=0.0.4; charset=utf-8");
}


static void
ngx_http_cache_guard_prom_histogram(ngx_http_cache_guard_out_t *o,
    const char *name, const char *label, u_char *value, size_t len,
    ngx_http_cache_guard_histogram_t *h)
{
    ngx_uint_t         i;
    ngx_atomic_uint_t  cum, counts[NGX_HTTP_CACHE_GUARD_NBUCKETS];

    /* read once: the buckets, the count and the sum agree */

    cum = 0;

    for (i = 0; i < NGX_HTTP_CACHE_GUARD_NBUCKETS; i++) {
        cum += h->histogram[i];
        counts[i] = cum;
    }

    for (i = 0; i < NGX_HTTP_CACHE_GUARD_NBUCKETS; i++) {
        ngx_http_cache_guard_out(o, "%s_bucket{", name);

        if (label) {
            ngx_http_cache_guard_out(o, "%s=\"", label);
            ngx_http_cache_guard_out_label(o, value, len);
            ngx_http_cache_guard_out(o, "\",");
        }

        ngx_http_cache_guard_out(o, "le=\"%s\"} %uA\n",
                                 ngx_http_cache_guard_les[i], counts[i]);
    }

    ngx_http_cache_guard_out(o, "%s_sum", name);

    if (label) {
        ngx_http_cache_guard_out(o, "{%s=\"", label);
        ngx_http_cache_guard_out_label(o, value, len);
        ngx_http_cache_guard_out(o, "\"}");
    }

    ngx_http_cache_guard_out(o, " %uA.%06uA\n", h->sum_us / 1000000,
                             h->sum_us % 1000000);

    ngx_http_cache_guard_out(o, "%s_count", name);

    if (label) {
        ngx_http_cache_guard_out(o, "{%s=\"", label);
        ngx_http_cache_guard_out_label(o, value, len);
        ngx_http_cache_guard_out(o, "\"}");
    }

    ngx_http_cache_guard_out(o, " %uA\n", cum);
}


/* GET: JSON, or the dashboard for a client that accepts text/html */

static ngx_int_t
ngx_http_cache_guard_status_handler(ngx_http_request_t *r)
{
    double                              hr, er;
    size_t                              size;
    ngx_str_t                           format;
    ngx_uint_t                          i, j, html, first, nzones, state;
    ngx_http_cache_guard_zone_t       **zones;
    ngx_table_elt_t                    *accept;
    ngx_http_cache_guard_out_t          o;
    ngx_http_cache_guard_zone_t        *zone;
    ngx_http_cache_guard_record_t      *rec;
    ngx_http_cache_guard_policy_t      *pl;
    ngx_http_cache_guard_metrics_t     *m;
    ngx_http_cache_guard_snapshot_t     total, win;
    ngx_http_cache_guard_main_conf_t   *mcf;
    ngx_http_cache_guard_bloom_t      **bfp;
    ngx_http_cache_guard_bloom_info_t   info;

    static u_char  dashboard[] = NGX_HTTP_CACHE_GUARD_DASHBOARD;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

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

    if (html) {
        o.start = dashboard;
        o.pos = dashboard + sizeof(dashboard) - 1;
        o.end = dashboard + sizeof(dashboard);

        return ngx_http_cache_guard_out_send(r, &o,
                                             "text/html; charset=utf-8");
    }

    mcf = ngx_http_get_module_main_conf(r, ngx_http_cache_guard_module);

    nzones = mcf->zones.nelts;
    zones = mcf->zones.elts;

    size = 8192 + (mcf->policies.nelts + 2) * 8192 + nzones * 512
           + mcf->blooms.nelts * 1024;

    if (ngx_http_cache_guard_out_init(r, &o, size) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_cache_guard_out(&o, "{\"version\": \"%s\", \"time\": %T.%03M, "
                             "\"uptime\": %T, \"policies\": [",
                             NGX_HTTP_CACHE_GUARD_VERSION, ngx_time(),
                             ngx_timeofday()->msec,
                             ngx_http_cache_guard_state
                             ? ngx_time() - ngx_http_cache_guard_state->started
                             : 0);

    first = 1;

    NGX_HTTP_CACHE_GUARD_EACH_POLICY {
        ngx_http_cache_guard_out(&o, "%s{\"name\": ", first ? "" : ", ");
        first = 0;
        ngx_http_cache_guard_out_json(&o, pl->name.data, pl->name.len);
        ngx_http_cache_guard_out(&o, ", \"requests\": {");

        for (j = 1; j < NGX_HTTP_CACHE_GUARD_NSTATUS; j++) {
            ngx_http_cache_guard_out(&o, "%s\"%s\": %uA", j == 1 ? "" : ", ",
                                     ngx_http_cache_guard_status_labels[j],
                                     m->requests[j]);
        }

        ngx_http_cache_guard_totals(rec, &total);
        ngx_http_cache_guard_window(rec, pl->alert_window, &win);

        ngx_http_cache_guard_out(&o, "}, \"requests_total\": %uL, "
                                 "\"hits\": {\"l1\": %uA, \"l2\": %uA}, "
                                 "\"hit_ratio\": ",
                                 total.requests
                                 + m->requests[NGX_HTTP_CACHE_GUARD_BLOOM_REJECT]
                                 + m->requests[NGX_HTTP_CACHE_GUARD_INVALID]
                                 + m->requests[NGX_HTTP_CACHE_GUARD_BYPASS],
                                 m->hits[NGX_HTTP_CACHE_GUARD_LEVEL_L1],
                                 m->hits[NGX_HTTP_CACHE_GUARD_LEVEL_L2]);

        if (total.requests) {
            ngx_http_cache_guard_out_double(&o, (double) total.hits
                                                / (double) total.requests);
        } else {
            ngx_http_cache_guard_out(&o, "null");
        }

        ngx_http_cache_guard_out(&o, ", \"window\": {\"seconds\": %M, "
                                 "\"requests\": %uL, \"hit_ratio\": ",
                                 pl->alert_window, win.requests);

        hr = win.requests ? (double) win.hits / (double) win.requests : -1;
        er = win.requests ? (double) win.errors / (double) win.requests : -1;

        if (hr >= 0) {
            ngx_http_cache_guard_out_double(&o, hr);
            ngx_http_cache_guard_out(&o, ", \"error_rate\": ");
            ngx_http_cache_guard_out_double(&o, er);

        } else {
            ngx_http_cache_guard_out(&o, "null, \"error_rate\": null");
        }

        ngx_http_cache_guard_out(&o, "}, \"responses_5xx\": %uA, "
                                 "\"origin\": {\"fetches\": %uA, "
                                 "\"errors\": %uA, \"inflight\": %A}, "
                                 "\"lock\": {\"waits\": %uA, "
                                 "\"timeouts\": %uA}, "
                                 "\"early_refreshes\": %uA, "
                                 "\"hook_errors\": {\"key\": %uA, "
                                 "\"validate\": %uA, \"bloom.item\": %uA}, "
                                 "\"latency\": ",
                                 m->responses_5xx, m->origin_fetches,
                                 m->origin_errors,
                                 (ngx_atomic_int_t) rec->inflight,
                                 m->lock_waits, m->lock_timeouts,
                                 m->early_refreshes,
                                 m->hook_errors[NGX_HTTP_CACHE_GUARD_HOOK_KEY],
                                 m->hook_errors[
                                     NGX_HTTP_CACHE_GUARD_HOOK_VALIDATE],
                                 m->hook_errors[
                                     NGX_HTTP_CACHE_GUARD_HOOK_BLOOM]);

        ngx_http_cache_guard_json_histogram(&o, &m->duration);
        ngx_http_cache_guard_out(&o, ", \"breaker\": ");
        ngx_http_cache_guard_json_breaker(&o, rec, &pl->breaker);
        ngx_http_cache_guard_out(&o, "}");
    }

    ngx_http_cache_guard_out(&o, "], \"redis\": ");

    if (mcf->redis && mcf->redis->rec) {
        m = &mcf->redis->rec->m;

        ngx_http_cache_guard_out(&o, "{\"address\": ");
        ngx_http_cache_guard_out_json(&o, mcf->redis->addr_text.data,
                                      mcf->redis->addr_text.len);
        ngx_http_cache_guard_out(&o, ", \"breaker\": ");
        ngx_http_cache_guard_json_breaker(&o, mcf->redis->rec,
                                          &mcf->redis->breaker);
        ngx_http_cache_guard_out(&o, ", \"commands\": %uA, \"errors\": {",
                                 m->redis_commands);

        for (j = 0; j < NGX_HTTP_CACHE_GUARD_NRERR; j++) {
            ngx_http_cache_guard_out(&o, "%s\"%s\": %uA", j ? ", " : "",
                                     ngx_http_cache_guard_rerr_labels[j],
                                     m->redis_errors[j]);
        }

        ngx_http_cache_guard_out(&o, "}, \"latency\": ");
        ngx_http_cache_guard_json_histogram(&o, &m->redis_duration);
        ngx_http_cache_guard_out(&o, ", \"info\": ");

        if (m->info_time) {
            ngx_http_cache_guard_out(&o, "{\"age\": %T, \"used_memory\": %uA, "
                              "\"mem_fragmentation_ratio\": %uA.%03uA, "
                              "\"evicted_keys\": %uA, \"expired_keys\": %uA, "
                              "\"keyspace_hits\": %uA, "
                              "\"keyspace_misses\": %uA, "
                              "\"connected_clients\": %uA}}",
                              ngx_time() - (time_t) m->info_time,
                              m->info[NGX_HTTP_CACHE_GUARD_INFO_USED_MEMORY],
                              m->info[NGX_HTTP_CACHE_GUARD_INFO_FRAGMENTATION]
                              / 1000,
                              m->info[NGX_HTTP_CACHE_GUARD_INFO_FRAGMENTATION]
                              % 1000,
                              m->info[NGX_HTTP_CACHE_GUARD_INFO_EVICTED],
                              m->info[NGX_HTTP_CACHE_GUARD_INFO_EXPIRED],
                              m->info[NGX_HTTP_CACHE_GUARD_INFO_HITS],
                              m->info[NGX_HTTP_CACHE_GUARD_INFO_MISSES],
                              m->info[NGX_HTTP_CACHE_GUARD_INFO_CLIENTS]);

        } else {
            ngx_http_cache_guard_out(&o, "null}");
        }

    } else {
        ngx_http_cache_guard_out(&o, "null");
    }

    ngx_http_cache_guard_out(&o, ", \"zones\": [");
    first = 1;

    for (i = 0; i < nzones; i++) {
        zone = zones[i];
        ngx_http_cache_guard_out(&o, "%s{\"name\": ", first ? "" : ", ");
        first = 0;
        ngx_http_cache_guard_out_json(&o, zone->name.data, zone->name.len);
        ngx_http_cache_guard_out(&o, ", \"size\": %uz, \"entries\": %uA, "
                                 "\"bytes\": %uA, \"evictions\": %uA}",
                                 zone->size, zone->sh->entries,
                                 zone->sh->bytes, zone->sh->evictions);
    }

    ngx_http_cache_guard_out(&o, "], \"filters\": [");
    bfp = mcf->blooms.elts;

    for (i = 0; i < mcf->blooms.nelts; i++) {
        ngx_http_cache_guard_bloom_info(bfp[i], &info);
        ngx_http_cache_guard_out(&o, "%s{\"name\": ", i ? ", " : "");
        ngx_http_cache_guard_out_json(&o, info.name.data, info.name.len);
        ngx_http_cache_guard_out(&o, ", \"mode\": \"%s\", \"loaded\": %s, "
                                 "\"items\": %ui, \"capacity\": %ui, "
                                 "\"fill_ratio\": ",
                                 info.mode == NGX_HTTP_CACHE_GUARD_BLOOM_SHADOW
                                 ? "shadow" : "enforce",
                                 info.loaded ? "true" : "false", info.items,
                                 info.capacity);
        ngx_http_cache_guard_out_double(&o, info.fill_ratio);
        ngx_http_cache_guard_out(&o, ", \"rejected\": %ui, "
                                 "\"shadow_rejected\": %ui}",
                                 info.rejected, info.shadow_rejected);
    }

    /* alerts: the policies' thresholds over their window, open breakers */

    ngx_http_cache_guard_out(&o, "], \"alerts\": [");
    first = 1;

    if (mcf->redis && mcf->redis->rec) {
        state = ngx_http_cache_guard_breaker_state(mcf->redis->rec,
                                                   &mcf->redis->breaker);

        if (state != NGX_HTTP_CACHE_GUARD_CLOSED) {
            ngx_http_cache_guard_out(&o, "{\"alert\": \"breaker_open\", "
                                     "\"breaker\": \"redis\", "
                                     "\"state\": \"%s\"}",
                                     ngx_http_cache_guard_breaker_name(state));
            first = 0;
        }
    }

    NGX_HTTP_CACHE_GUARD_EACH_POLICY {
        state = ngx_http_cache_guard_breaker_state(rec, &pl->breaker);

        if (state != NGX_HTTP_CACHE_GUARD_CLOSED) {
            ngx_http_cache_guard_out(&o, "%s{\"alert\": \"breaker_open\", "
                                     "\"breaker\": ", first ? "" : ", ");
            ngx_http_cache_guard_out_json(&o, rec->name, rec->len);
            ngx_http_cache_guard_out(&o, ", \"state\": \"%s\"}",
                                     ngx_http_cache_guard_breaker_name(state));
            first = 0;
        }

        ngx_http_cache_guard_window(rec, pl->alert_window, &win);

        if (win.requests == 0 || win.requests < pl->alert_min_requests) {
            continue;
        }

        hr = (double) win.hits / (double) win.requests;
        er = (double) win.errors / (double) win.requests;

        if (pl->alert_hit_ratio >= 0 && hr < pl->alert_hit_ratio) {
            ngx_http_cache_guard_out(&o, "%s{\"alert\": \"hit_ratio_below\", "
                                     "\"policy\": ", first ? "" : ", ");
            ngx_http_cache_guard_out_json(&o, pl->name.data, pl->name.len);
            ngx_http_cache_guard_out(&o, ", \"value\": ");
            ngx_http_cache_guard_out_double(&o, hr);
            ngx_http_cache_guard_out(&o, ", \"threshold\": ");
            ngx_http_cache_guard_out_double(&o, pl->alert_hit_ratio);
            ngx_http_cache_guard_out(&o, ", \"window\": %M}",
                                     pl->alert_window);
            first = 0;
        }

        if (pl->alert_error_rate >= 0 && er > pl->alert_error_rate) {
            ngx_http_cache_guard_out(&o, "%s{\"alert\": \"error_rate_above\", "
                                     "\"policy\": ", first ? "" : ", ");
            ngx_http_cache_guard_out_json(&o, pl->name.data, pl->name.len);
            ngx_http_cache_guard_out(&o, ", \"value\": ");
            ngx_http_cache_guard_out_double(&o, er);
            ngx_http_cache_guard_out(&o, ", \"threshold\": ");
            ngx_http_cache_guard_out_double(&o, pl->alert_error_rate);
            ngx_http_cache_guard_out(&o, ", \"window\": %M}",
                                     pl->alert_window);
            first = 0;
        }
    }

    ngx_http_cache_guard_out(&o, "]}\n");

    return ngx_http_cache_guard_out_send(r, &o, "application/json");
}


static void
ngx_http_cache_guard_json_histogram(ngx_http_cache_guard_out_t *o,
    ngx_http_cache_guard_histogram_t *h)
{
    ngx_uint_t         i;
    ngx_atomic_uint_t  cum;

    cum = 0;

    for (i = 0; i < NGX_HTTP_CACHE_GUARD_NBUCKETS; i++) {
        cum += h->histogram[i];
    }

    ngx_http_cache_guard_out(o, "{\"count\": %uA, \"sum\": %uA.%06uA",
                             cum, h->sum_us / 1000000, h->sum_us % 1000000);

    if (cum == 0) {
        /* no request yet: no percentile either */
        ngx_http_cache_guard_out(o, ", \"p50\": null, \"p95\": null, "
                                 "\"p99\": null");

    } else {
        ngx_http_cache_guard_out(o, ", \"p50\": ");
        ngx_http_cache_guard_out_double(o,
                                     ngx_http_cache_guard_quantile(h, 0.5));
        ngx_http_cache_guard_out(o, ", \"p95\": ");
        ngx_http_cache_guard_out_double(o,
                                     ngx_http_cache_guard_quantile(h, 0.95));
        ngx_http_cache_guard_out(o, ", \"p99\": ");
        ngx_http_cache_guard_out_double(o,
                                     ngx_http_cache_guard_quantile(h, 0.99));
    }

    ngx_http_cache_guard_out(o, ", \"buckets\": [");

    cum = 0;

    for (i = 0; i < NGX_HTTP_CACHE_GUARD_NBUCKETS; i++) {
        cum += h->histogram[i];

        if (i < NGX_HTTP_CACHE_GUARD_NBUCKETS - 1) {
            ngx_http_cache_guard_out(o, "%s[%s, %uA]", i ? ", " : "",
                                     ngx_http_cache_guard_les[i], cum);

        } else {
            ngx_http_cache_guard_out(o, ", [\"+Inf\", %uA]", cum);
        }
    }

    ngx_http_cache_guard_out(o, "]}");
}


static void
ngx_http_cache_guard_json_breaker(ngx_http_cache_guard_out_t *o,
    ngx_http_cache_guard_record_t *rec,
    ngx_http_cache_guard_breaker_conf_t *bc)
{
    /* the admin API's own JSON of a breaker, at most this long */

    if ((size_t) (o->end - o->pos) < NGX_HTTP_CACHE_GUARD_RECORD_NAME * 6 + 512)
    {
        o->pos = o->end;
        return;
    }

    o->pos = ngx_http_cache_guard_breaker_json(o->pos, rec, bc);
}


static ngx_int_t
ngx_http_cache_guard_out_init(ngx_http_request_t *r,
    ngx_http_cache_guard_out_t *o, size_t size)
{
    o->start = ngx_pnalloc(r->pool, size);
    if (o->start == NULL) {
        return NGX_ERROR;
    }

    o->pos = o->start;
    o->end = o->start + size;

    return NGX_OK;
}


static void
ngx_http_cache_guard_out(ngx_http_cache_guard_out_t *o, const char *fmt, ...)
{
    va_list  args;

    va_start(args, fmt);
    o->pos = ngx_vslprintf(o->pos, o->end, fmt, args);
    va_end(args);
}


/* a Prometheus label value: backslash, double quote and newline escaped */

static void
ngx_http_cache_guard_out_label(ngx_http_cache_guard_out_t *o, u_char *p,
    size_t len)
{
    u_char  *last;

    for (last = p + len; p < last && o->end - o->pos >= 2; p++) {
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


static void
ngx_http_cache_guard_out_json(ngx_http_cache_guard_out_t *o, u_char *p,
    size_t len)
{
    if ((size_t) (o->end - o->pos) < 2 + len * 6) {
        o->pos = o->end;
        return;
    }

    *o->pos++ = '"';
    o->pos = (u_char *) ngx_http_cache_guard_escape_json(o->pos, p, len);
    *o->pos++ = '"';
}


static void
ngx_http_cache_guard_out_double(ngx_http_cache_guard_out_t *o, double d)
{
    u_char  *p, *last;

    if (o->end - o->pos < 32) {
        o->pos = o->end;
        return;
    }

    /* six decimals, without the trailing zeros */

    p = o->pos;
    last = ngx_sprintf(p, "%.6f", d);

    while (last[-1] == '0') {
        last--;
    }

    if (last[-1] == '.') {
        last--;
    }

    o->pos = last;
}


static ngx_int_t
ngx_http_cache_guard_out_send(ngx_http_request_t *r,
    ngx_http_cache_guard_out_t *o, const char *type)
{
    /* a full buffer cut something: no half an answer */

    if (o->pos == o->end && o->end != o->start) {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "cache guard: the %s answer outgrew its buffer", type);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_cache_guard_send_buf(r, NGX_HTTP_OK, type, o->start,
                                         o->pos - o->start);
}
