
/*
 * Copyright (C) nginx-cache-guard authors
 */


/* counters in shared memory and the clocks they use */


#ifndef _NGX_HTTP_CACHE_GUARD_STATS_H_INCLUDED_
#define _NGX_HTTP_CACHE_GUARD_STATS_H_INCLUDED_


#include "ngx_http_cache_guard_types.h"

#include <time.h>


/* counters: atomics in the state zone, shared by all workers */

#define NGX_HTTP_CACHE_GUARD_NSTATUS       11     /* status_e values */
#define NGX_HTTP_CACHE_GUARD_NBUCKETS      17     /* the last is +Inf */
#define NGX_HTTP_CACHE_GUARD_HISTORY       64     /* seconds of snapshots */

#define NGX_HTTP_CACHE_GUARD_RERR_CONNECT  0
#define NGX_HTTP_CACHE_GUARD_RERR_TIMEOUT  1
#define NGX_HTTP_CACHE_GUARD_RERR_LOST     2
#define NGX_HTTP_CACHE_GUARD_RERR_PROTOCOL 3
#define NGX_HTTP_CACHE_GUARD_RERR_REPLY    4     /* LOADING, OOM, ... */
#define NGX_HTTP_CACHE_GUARD_RERR_OVERSIZE 5
#define NGX_HTTP_CACHE_GUARD_RERR_OPEN     6     /* refused: breaker open */
#define NGX_HTTP_CACHE_GUARD_NRERR         7

/* Lua hooks of a policy */
#define NGX_HTTP_CACHE_GUARD_HOOK_KEY      0
#define NGX_HTTP_CACHE_GUARD_HOOK_VALIDATE 1
#define NGX_HTTP_CACHE_GUARD_HOOK_BLOOM    2     /* bloom.item */
#define NGX_HTTP_CACHE_GUARD_NHOOKS        3


typedef struct {
    ngx_atomic_t                    histogram[NGX_HTTP_CACHE_GUARD_NBUCKETS];
    ngx_atomic_t                    sum_us;
} ngx_http_cache_guard_histogram_t;


typedef struct {
    uint64_t                        sec;          /* ngx_time(); 0: none */
    uint64_t                        requests;     /* cumulative */
    uint64_t                        hits;
    uint64_t                        errors;       /* 5xx answers */
} ngx_http_cache_guard_snapshot_t;


typedef struct {
    ngx_atomic_t                    requests[NGX_HTTP_CACHE_GUARD_NSTATUS];
    ngx_atomic_t                    hits[3];      /* by level_e */
    ngx_atomic_t                    responses_5xx;
    ngx_atomic_t                    origin_fetches;
    ngx_atomic_t                    origin_errors;
    ngx_atomic_t                    lock_waits;
    ngx_atomic_t                    lock_timeouts;
    ngx_atomic_t                    early_refreshes;
    ngx_atomic_t                    hook_errors[NGX_HTTP_CACHE_GUARD_NHOOKS];
    /* the last hook error logged: ngx_time(), and hook_errors then */
    ngx_atomic_t                    hook_logged[NGX_HTTP_CACHE_GUARD_NHOOKS];
    ngx_atomic_t                    hook_logged_n[NGX_HTTP_CACHE_GUARD_NHOOKS];
    ngx_http_cache_guard_histogram_t  duration;

    /* the record "redis" */
    ngx_atomic_t                    redis_errors[NGX_HTTP_CACHE_GUARD_NRERR];
    ngx_atomic_t                    redis_commands;
    ngx_http_cache_guard_histogram_t  redis_duration;
    ngx_atomic_t                    info_time;    /* ngx_time() of INFO */
    ngx_atomic_t                    info[7];      /* INFO_, metrics.h */

    ngx_http_cache_guard_snapshot_t  history[NGX_HTTP_CACHE_GUARD_HISTORY];
} ngx_http_cache_guard_metrics_t;


/* microseconds on the monotonic clock: durations, never dates */

static ngx_inline uint64_t
ngx_http_cache_guard_usec(void)
{
    struct timespec  ts;

    (void) clock_gettime(CLOCK_MONOTONIC, &ts);

    return (uint64_t) ts.tv_sec * 1000000 + (uint64_t) ts.tv_nsec / 1000;
}


/* milliseconds since the epoch, from nginx's cached time: dates */

static ngx_inline uint64_t
ngx_http_cache_guard_now(void)
{
    ngx_time_t  *tp;

    tp = ngx_timeofday();

    return (uint64_t) tp->sec * 1000 + tp->msec;
}



extern ngx_str_t  ngx_http_cache_guard_status_names[];   /* by status_e */
extern ngx_str_t  ngx_http_cache_guard_level_names[];    /* by level_e */
extern const char *ngx_http_cache_guard_hook_names[];   /* by HOOK_ */
extern uint64_t   ngx_http_cache_guard_bounds[];         /* us, NBUCKETS - 1 */

void ngx_http_cache_guard_stats_init(void);
void ngx_http_cache_guard_histogram_add(ngx_http_cache_guard_histogram_t *h,
    uint64_t us);

#endif /* _NGX_HTTP_CACHE_GUARD_STATS_H_INCLUDED_ */
