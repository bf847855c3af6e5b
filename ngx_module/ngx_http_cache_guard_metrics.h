
/*
 * Copyright (C) nginx-cache-guard authors
 */


/* counting, the per-second tick, and the counters read for the writers */


#ifndef _NGX_HTTP_CACHE_GUARD_METRICS_H_INCLUDED_
#define _NGX_HTTP_CACHE_GUARD_METRICS_H_INCLUDED_


#include "ngx_http_cache_guard_types.h"
#include "ngx_http_cache_guard_stats.h"
#include "ngx_http_cache_guard_bloom.h"
#include "ngx_http_cache_guard_breaker.h"
#include "ngx_http_cache_guard_json.h"


/* the fields of Redis INFO kept, by index in metrics_t.info */
#define NGX_HTTP_CACHE_GUARD_INFO_USED_MEMORY    0
#define NGX_HTTP_CACHE_GUARD_INFO_FRAGMENTATION  1   /* ratio x 1000 */
#define NGX_HTTP_CACHE_GUARD_INFO_EVICTED        2
#define NGX_HTTP_CACHE_GUARD_INFO_EXPIRED        3
#define NGX_HTTP_CACHE_GUARD_INFO_HITS           4
#define NGX_HTTP_CACHE_GUARD_INFO_MISSES         5
#define NGX_HTTP_CACHE_GUARD_INFO_CLIENTS        6
#define NGX_HTTP_CACHE_GUARD_NINFO               7


/*
 * What the metrics and status pages show, read once from shared memory
 * (other workers go on counting meanwhile): both writers print this only.
 */

typedef struct {
    ngx_atomic_uint_t               bucket[NGX_HTTP_CACHE_GUARD_NBUCKETS];
    ngx_atomic_uint_t               count;        /* all buckets */
    ngx_atomic_uint_t               sum_us;
    double                          p50;          /* seconds; count > 0 */
    double                          p95;
    double                          p99;
} ngx_http_cache_guard_histogram_view_t;


/* a breaker: the redis one, or a policy's record "origin:NAME" */
typedef struct {
    ngx_str_t                       name;         /* the record's */
    ngx_http_cache_guard_record_t  *rec;
    ngx_http_cache_guard_breaker_conf_t  *conf;
    ngx_uint_t                      state;        /* CLOSED, OPEN, ... */
    ngx_atomic_uint_t               opened;
} ngx_http_cache_guard_breaker_view_t;


/* a policy; policies of one name share their record, shown once */
typedef struct {
    ngx_http_cache_guard_policy_t  *policy;       /* name, alert_* */
    ngx_http_cache_guard_breaker_view_t  breaker;
    ngx_atomic_uint_t               requests[NGX_HTTP_CACHE_GUARD_NSTATUS];
    ngx_atomic_uint_t               hits[3];      /* by level_e */
    ngx_atomic_uint_t               responses_5xx;
    ngx_atomic_uint_t               origin_fetches;
    ngx_atomic_uint_t               origin_errors;
    ngx_atomic_uint_t               inflight;
    ngx_atomic_uint_t               lock_waits;
    ngx_atomic_uint_t               lock_timeouts;
    ngx_atomic_uint_t               early_refreshes;
    ngx_atomic_uint_t               hook_errors[NGX_HTTP_CACHE_GUARD_NHOOKS];
    ngx_http_cache_guard_histogram_view_t  duration;

    uint64_t                        requests_all; /* every status */
    ngx_http_cache_guard_snapshot_t  total;       /* cache traffic */
    ngx_http_cache_guard_snapshot_t  window;      /* of alert_window */
    double                          window_hit_ratio;   /* -1: none */
    double                          window_error_rate;  /* -1: none */
    unsigned                        alert_hit_ratio:1;
    unsigned                        alert_error_rate:1;
} ngx_http_cache_guard_policy_view_t;


typedef struct {
    ngx_str_t                       address;
    ngx_http_cache_guard_breaker_view_t  breaker;
    ngx_atomic_uint_t               errors[NGX_HTTP_CACHE_GUARD_NRERR];
    ngx_atomic_uint_t               commands;
    ngx_http_cache_guard_histogram_view_t  duration;
    ngx_uint_t                      info_read;    /* INFO was read */
    time_t                          info_age;     /* seconds */
    ngx_atomic_uint_t               info[NGX_HTTP_CACHE_GUARD_NINFO];
} ngx_http_cache_guard_redis_view_t;


typedef struct {
    ngx_str_t                       name;
    size_t                          size;
    ngx_atomic_uint_t               entries;
    ngx_atomic_uint_t               bytes;
    ngx_atomic_uint_t               evictions;
} ngx_http_cache_guard_zone_view_t;


typedef struct {
    time_t                          time;         /* ngx_time() */
    ngx_msec_t                      msec;         /* and its milliseconds */
    time_t                          uptime;       /* of the state zone */
    ngx_http_cache_guard_policy_view_t  *policies;
    ngx_uint_t                      npolicies;
    ngx_http_cache_guard_redis_view_t   *redis;   /* NULL: no Redis */
    ngx_http_cache_guard_zone_view_t    *zones;
    ngx_uint_t                      nzones;
    ngx_http_cache_guard_bloom_info_t   *filters;
    ngx_uint_t                      nfilters;
} ngx_http_cache_guard_view_t;


/* the names the writers print */
extern const char  *ngx_http_cache_guard_les[];          /* bucket bounds */
extern const char  *ngx_http_cache_guard_rerr_names[];   /* by RERR_ */
extern const char  *ngx_http_cache_guard_info_names[];   /* by INFO_ */


ngx_int_t ngx_http_cache_guard_log_handler(ngx_http_request_t *r);
void ngx_http_cache_guard_metrics_init_worker(ngx_cycle_t *cycle);

/* the checks of cache_guard_metrics and cache_guard_status */
char *ngx_http_cache_guard_metrics_location(ngx_conf_t *cf, void *conf,
    ngx_http_handler_pt handler);

ngx_http_cache_guard_view_t *ngx_http_cache_guard_metrics_collect(
    ngx_http_request_t *r);
ngx_int_t ngx_http_cache_guard_metrics_send(ngx_http_request_t *r,
    ngx_http_cache_guard_out_t *o, const char *type);


#endif /* _NGX_HTTP_CACHE_GUARD_METRICS_H_INCLUDED_ */
