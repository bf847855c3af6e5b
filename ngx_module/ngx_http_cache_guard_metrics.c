
/*
 * Copyright (C) nginx-cache-guard authors
 *
 * What the guard does, counted: counters in the state zone (atomics
 * shared by all workers, kept across reload), updated once per request in
 * the log phase.  One worker per node takes a snapshot of the counters
 * every second, for the alert windows, and reads Redis' INFO every 5 s.
 * The metrics and status pages (prometheus.c, status.c) print what
 * ngx_http_cache_guard_metrics_collect() reads, once, for a request.
 */


#include "ngx_http_cache_guard_metrics.h"
#include "ngx_http_cache_guard_redis.h"
#include "ngx_http_cache_guard_store.h"
#include "ngx_http_cache_guard_respond.h"
#include "ngx_http_cache_guard_ctx.h"


#define NGX_HTTP_CACHE_GUARD_INFO_EVERY  5        /* seconds */


static void ngx_http_cache_guard_metrics_tick(ngx_event_t *ev);
static void ngx_http_cache_guard_info_done(redisReply *reply, void *data);
static void ngx_http_cache_guard_snapshot(ngx_http_cache_guard_record_t *rec,
    time_t now);
static void ngx_http_cache_guard_window(ngx_http_cache_guard_record_t *rec,
    ngx_uint_t seconds, ngx_http_cache_guard_snapshot_t *delta);
static void ngx_http_cache_guard_totals(ngx_http_cache_guard_record_t *rec,
    ngx_http_cache_guard_snapshot_t *s);
static void ngx_http_cache_guard_totals_of(ngx_atomic_uint_t *n,
    ngx_http_cache_guard_snapshot_t *s);
static double ngx_http_cache_guard_quantile(
    ngx_http_cache_guard_histogram_view_t *h, double q);
static ngx_int_t ngx_http_cache_guard_collect_policies(ngx_http_request_t *r,
    ngx_http_cache_guard_main_conf_t *mcf, ngx_http_cache_guard_view_t *v);
static void ngx_http_cache_guard_collect_policy(
    ngx_http_cache_guard_policy_view_t *pv, ngx_http_cache_guard_policy_t *pl);
static ngx_int_t ngx_http_cache_guard_collect_redis(ngx_http_request_t *r,
    ngx_http_cache_guard_redis_t *rd, ngx_http_cache_guard_view_t *v);
static ngx_int_t ngx_http_cache_guard_collect_zones(ngx_http_request_t *r,
    ngx_http_cache_guard_main_conf_t *mcf, ngx_http_cache_guard_view_t *v);
static void ngx_http_cache_guard_collect_breaker(
    ngx_http_cache_guard_breaker_view_t *bv,
    ngx_http_cache_guard_record_t *rec,
    ngx_http_cache_guard_breaker_conf_t *bc);
static void ngx_http_cache_guard_collect_histogram(
    ngx_http_cache_guard_histogram_view_t *hv,
    ngx_http_cache_guard_histogram_t *h);
static ngx_http_cache_guard_policy_t *ngx_http_cache_guard_policy_at(
    ngx_http_cache_guard_main_conf_t *mcf, ngx_uint_t i);
static ngx_uint_t ngx_http_cache_guard_seen(
    ngx_http_cache_guard_main_conf_t *mcf, ngx_uint_t i,
    ngx_http_cache_guard_record_t *rec);


/* the upper bounds of the duration buckets, in seconds */

const char  *ngx_http_cache_guard_les[NGX_HTTP_CACHE_GUARD_NBUCKETS] = {
    "0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005", "0.01",
    "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf"
};

const char  *ngx_http_cache_guard_rerr_names[NGX_HTTP_CACHE_GUARD_NRERR] = {
    "connect", "timeout", "lost", "protocol", "reply", "oversize",
    "breaker_open"
};

const char  *ngx_http_cache_guard_info_names[NGX_HTTP_CACHE_GUARD_NINFO] = {
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

    ngx_http_cache_guard_tick_ev.handler = ngx_http_cache_guard_metrics_tick;
    ngx_http_cache_guard_tick_ev.data = cycle;
    ngx_http_cache_guard_tick_ev.log = cycle->log;
    ngx_http_cache_guard_tick_ev.cancelable = 1;

    ngx_add_timer(&ngx_http_cache_guard_tick_ev, 1000);
}


static void
ngx_http_cache_guard_metrics_tick(ngx_event_t *ev)
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

        for (i = 0; i < NGX_HTTP_CACHE_GUARD_NINFO; i++) {
            if (ngx_strlen(ngx_http_cache_guard_info_names[i]) == len
                && ngx_strncmp(p, ngx_http_cache_guard_info_names[i], len) == 0)
            {
                break;
            }
        }

        if (i == NGX_HTTP_CACHE_GUARD_NINFO) {
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
    ngx_uint_t         i;
    ngx_atomic_uint_t  n[NGX_HTTP_CACHE_GUARD_NSTATUS];

    /* each counter read once: other workers go on counting meanwhile */

    for (i = 0; i < NGX_HTTP_CACHE_GUARD_NSTATUS; i++) {
        n[i] = rec->m.requests[i];
    }

    ngx_http_cache_guard_totals_of(n, s);
    s->errors = rec->m.responses_5xx;
}


/* of requests counted by status: the cache traffic, and its hits */

static void
ngx_http_cache_guard_totals_of(ngx_atomic_uint_t *n,
    ngx_http_cache_guard_snapshot_t *s)
{
    /* answered from the cache: fresh, negative or stale */

    s->hits = n[NGX_HTTP_CACHE_GUARD_HIT] + n[NGX_HTTP_CACHE_GUARD_NEGATIVE]
              + n[NGX_HTTP_CACHE_GUARD_STALE]
              + n[NGX_HTTP_CACHE_GUARD_UPDATING];

    /* what could have been: refusals and bypasses are not cache traffic */

    s->requests = s->hits + n[NGX_HTTP_CACHE_GUARD_MISS]
                  + n[NGX_HTTP_CACHE_GUARD_LOCK_TIMEOUT]
                  + n[NGX_HTTP_CACHE_GUARD_FALLBACK];
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
ngx_http_cache_guard_quantile(ngx_http_cache_guard_histogram_view_t *h,
    double q)
{
    double      target, cum, lower, upper, n;
    ngx_uint_t  i;

    target = q * (double) h->count;
    cum = 0;
    lower = 0;

    for (i = 0; i < NGX_HTTP_CACHE_GUARD_NBUCKETS - 1; i++) {
        n = (double) h->bucket[i];
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

/*
 * A location of cache_guard_metrics or cache_guard_status: live numbers
 * must never come from the cache, so a cache_guard inherited from the
 * server or http level is turned off here, as for the admin
 */

char *
ngx_http_cache_guard_metrics_location(ngx_conf_t *cf, void *conf,
    ngx_http_handler_pt handler)
{
    ngx_http_cache_guard_loc_conf_t  *lcf = conf;

    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (clcf->handler) {
        return "is duplicate, or the location has another handler";
    }

    if (lcf->enable == 1) {
        return "cannot share a location with cache_guard";
    }

    lcf->enable = 0;
    lcf->shm_zone = NULL;

    clcf->handler = handler;

    return NGX_CONF_OK;
}


/* the counters of this configuration, read once for a page */

ngx_http_cache_guard_view_t *
ngx_http_cache_guard_metrics_collect(ngx_http_request_t *r)
{
    ngx_uint_t                          i;
    ngx_time_t                         *tp;
    ngx_http_cache_guard_view_t        *v;
    ngx_http_cache_guard_bloom_t      **bfp;
    ngx_http_cache_guard_main_conf_t   *mcf;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_cache_guard_module);

    v = ngx_pcalloc(r->pool, sizeof(ngx_http_cache_guard_view_t));
    if (v == NULL) {
        return NULL;
    }

    tp = ngx_timeofday();

    v->time = ngx_time();
    v->msec = tp->msec;
    v->uptime = ngx_http_cache_guard_state
                ? v->time - ngx_http_cache_guard_state->started : 0;

    if (ngx_http_cache_guard_collect_policies(r, mcf, v) != NGX_OK
        || ngx_http_cache_guard_collect_redis(r, mcf->redis, v) != NGX_OK
        || ngx_http_cache_guard_collect_zones(r, mcf, v) != NGX_OK)
    {
        return NULL;
    }

    v->nfilters = mcf->blooms.nelts;
    v->filters = ngx_palloc(r->pool, (v->nfilters + 1)
                                 * sizeof(ngx_http_cache_guard_bloom_info_t));
    if (v->filters == NULL) {
        return NULL;
    }

    bfp = mcf->blooms.elts;

    for (i = 0; i < v->nfilters; i++) {
        ngx_http_cache_guard_bloom_info(bfp[i], &v->filters[i]);
    }

    return v;
}


/* each record once: policies of one name share theirs */

static ngx_int_t
ngx_http_cache_guard_collect_policies(ngx_http_request_t *r,
    ngx_http_cache_guard_main_conf_t *mcf, ngx_http_cache_guard_view_t *v)
{
    ngx_uint_t                      i;
    ngx_http_cache_guard_policy_t  *pl;

    v->policies = ngx_palloc(r->pool, (mcf->policies.nelts + 1)
                                  * sizeof(ngx_http_cache_guard_policy_view_t));
    if (v->policies == NULL) {
        return NGX_ERROR;
    }

    for (i = 0; i <= mcf->policies.nelts; i++) {
        pl = ngx_http_cache_guard_policy_at(mcf, i);

        if (pl == NULL || pl->rec == NULL
            || ngx_http_cache_guard_seen(mcf, i, pl->rec))
        {
            continue;
        }

        ngx_http_cache_guard_collect_policy(&v->policies[v->npolicies++], pl);
    }

    return NGX_OK;
}


static void
ngx_http_cache_guard_collect_policy(ngx_http_cache_guard_policy_view_t *pv,
    ngx_http_cache_guard_policy_t *pl)
{
    ngx_uint_t                       i, alert;
    ngx_http_cache_guard_metrics_t  *m;

    m = &pl->rec->m;

    ngx_memzero(pv, sizeof(ngx_http_cache_guard_policy_view_t));

    pv->policy = pl;
    ngx_http_cache_guard_collect_breaker(&pv->breaker, pl->rec, &pl->breaker);

    for (i = 0; i < NGX_HTTP_CACHE_GUARD_NSTATUS; i++) {
        pv->requests[i] = m->requests[i];
    }

    for (i = 0; i < 3; i++) {
        pv->hits[i] = m->hits[i];
    }

    for (i = 0; i < NGX_HTTP_CACHE_GUARD_NHOOKS; i++) {
        pv->hook_errors[i] = m->hook_errors[i];
    }

    pv->responses_5xx = m->responses_5xx;
    pv->origin_fetches = m->origin_fetches;
    pv->origin_errors = m->origin_errors;
    pv->inflight = pl->rec->inflight;
    pv->lock_waits = m->lock_waits;
    pv->lock_timeouts = m->lock_timeouts;
    pv->early_refreshes = m->early_refreshes;

    ngx_http_cache_guard_collect_histogram(&pv->duration, &m->duration);

    ngx_http_cache_guard_totals_of(pv->requests, &pv->total);
    pv->total.errors = pv->responses_5xx;

    pv->requests_all = pv->total.requests
                       + pv->requests[NGX_HTTP_CACHE_GUARD_BLOOM_REJECT]
                       + pv->requests[NGX_HTTP_CACHE_GUARD_INVALID]
                       + pv->requests[NGX_HTTP_CACHE_GUARD_BYPASS];

    /* the alerts: the policy's thresholds over its window */

    ngx_http_cache_guard_window(pl->rec, pl->alert_window, &pv->window);

    if (pv->window.requests == 0) {
        pv->window_hit_ratio = -1;
        pv->window_error_rate = -1;
        return;
    }

    pv->window_hit_ratio = (double) pv->window.hits
                           / (double) pv->window.requests;
    pv->window_error_rate = (double) pv->window.errors
                            / (double) pv->window.requests;

    alert = (pv->window.requests >= pl->alert_min_requests);

    pv->alert_hit_ratio = alert && pl->alert_hit_ratio >= 0
                          && pv->window_hit_ratio < pl->alert_hit_ratio;
    pv->alert_error_rate = alert && pl->alert_error_rate >= 0
                           && pv->window_error_rate > pl->alert_error_rate;
}


static ngx_int_t
ngx_http_cache_guard_collect_redis(ngx_http_request_t *r,
    ngx_http_cache_guard_redis_t *rd, ngx_http_cache_guard_view_t *v)
{
    ngx_uint_t                          i;
    ngx_http_cache_guard_metrics_t     *m;
    ngx_http_cache_guard_redis_view_t  *rv;

    if (rd == NULL || rd->rec == NULL) {
        return NGX_OK;
    }

    rv = ngx_pcalloc(r->pool, sizeof(ngx_http_cache_guard_redis_view_t));
    if (rv == NULL) {
        return NGX_ERROR;
    }

    m = &rd->rec->m;

    rv->address = rd->addr_text;
    ngx_http_cache_guard_collect_breaker(&rv->breaker, rd->rec, &rd->breaker);

    for (i = 0; i < NGX_HTTP_CACHE_GUARD_NRERR; i++) {
        rv->errors[i] = m->redis_errors[i];
    }

    rv->commands = m->redis_commands;
    ngx_http_cache_guard_collect_histogram(&rv->duration, &m->redis_duration);

    if (m->info_time) {
        rv->info_read = 1;
        rv->info_age = v->time - (time_t) m->info_time;

        for (i = 0; i < NGX_HTTP_CACHE_GUARD_NINFO; i++) {
            rv->info[i] = m->info[i];
        }
    }

    v->redis = rv;

    return NGX_OK;
}


static ngx_int_t
ngx_http_cache_guard_collect_zones(ngx_http_request_t *r,
    ngx_http_cache_guard_main_conf_t *mcf, ngx_http_cache_guard_view_t *v)
{
    ngx_uint_t                          i;
    ngx_http_cache_guard_zone_t       **zones;
    ngx_http_cache_guard_zone_view_t   *zv;

    v->nzones = mcf->zones.nelts;
    v->zones = ngx_palloc(r->pool, (v->nzones + 1)
                                   * sizeof(ngx_http_cache_guard_zone_view_t));
    if (v->zones == NULL) {
        return NGX_ERROR;
    }

    zones = mcf->zones.elts;

    for (i = 0; i < v->nzones; i++) {
        zv = &v->zones[i];
        zv->name = zones[i]->name;
        zv->size = zones[i]->size;
        zv->entries = zones[i]->sh->entries;
        zv->bytes = zones[i]->sh->bytes;
        zv->evictions = zones[i]->sh->evictions;
    }

    return NGX_OK;
}


static void
ngx_http_cache_guard_collect_breaker(ngx_http_cache_guard_breaker_view_t *bv,
    ngx_http_cache_guard_record_t *rec, ngx_http_cache_guard_breaker_conf_t *bc)
{
    bv->name.data = rec->name;
    bv->name.len = rec->len;
    bv->rec = rec;
    bv->conf = bc;
    bv->state = ngx_http_cache_guard_breaker_state(rec, bc);
    bv->opened = rec->opened;
}


/* the buckets, their count and the sum agree: each is read once */

static void
ngx_http_cache_guard_collect_histogram(
    ngx_http_cache_guard_histogram_view_t *hv,
    ngx_http_cache_guard_histogram_t *h)
{
    ngx_uint_t  i;

    hv->count = 0;

    for (i = 0; i < NGX_HTTP_CACHE_GUARD_NBUCKETS; i++) {
        hv->bucket[i] = h->histogram[i];
        hv->count += hv->bucket[i];
    }

    hv->sum_us = h->sum_us;

    if (hv->count) {
        hv->p50 = ngx_http_cache_guard_quantile(hv, 0.5);
        hv->p95 = ngx_http_cache_guard_quantile(hv, 0.95);
        hv->p99 = ngx_http_cache_guard_quantile(hv, 0.99);
    }
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


ngx_int_t
ngx_http_cache_guard_metrics_send(ngx_http_request_t *r,
    ngx_http_cache_guard_out_t *o, const char *type)
{
    /* a full buffer cut something: no half an answer */

    if (ngx_http_cache_guard_out_full(o)) {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "cache guard: the %s answer outgrew its buffer", type);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_cache_guard_send_buf(r, NGX_HTTP_OK, type, o->start,
                                         o->pos - o->start);
}
