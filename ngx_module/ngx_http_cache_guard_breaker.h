
/*
 * Copyright (C) nginx-cache-guard authors
 */


/* the state zone, its records and the circuit breakers */


#ifndef _NGX_HTTP_CACHE_GUARD_BREAKER_H_INCLUDED_
#define _NGX_HTTP_CACHE_GUARD_BREAKER_H_INCLUDED_


#include "ngx_http_cache_guard_types.h"
#include "ngx_http_cache_guard_stats.h"


#define NGX_HTTP_CACHE_GUARD_MAX_RECORDS   256
#define NGX_HTTP_CACHE_GUARD_RECORD_NAME   128
#define NGX_HTTP_CACHE_GUARD_SLOTS         128
#define NGX_HTTP_CACHE_GUARD_MAX_WINDOW    60     /* seconds, one bucket each */

#define NGX_HTTP_CACHE_GUARD_CLOSED        0
#define NGX_HTTP_CACHE_GUARD_OPEN          1
#define NGX_HTTP_CACHE_GUARD_HALF_OPEN     2

#define NGX_HTTP_CACHE_GUARD_FORCED_AUTO   0
#define NGX_HTTP_CACHE_GUARD_FORCED_OPEN   1
#define NGX_HTTP_CACHE_GUARD_FORCED_CLOSED 2


struct ngx_http_cache_guard_record_s {
    u_char                          name[NGX_HTTP_CACHE_GUARD_RECORD_NAME];
    size_t                          len;
    ngx_uint_t                      gen;          /* last to name it */
    ngx_atomic_t                    state;
    ngx_atomic_t                    forced;
    ngx_atomic_t                    since;        /* ngx_current_msec */
    ngx_atomic_t                    probes;       /* let through, half-open */
    ngx_atomic_t                    probe_ok;
    ngx_atomic_t                    opened;       /* times it opened */
    ngx_atomic_t                    consecutive;  /* failures in a row */
    ngx_atomic_t                    buckets[NGX_HTTP_CACHE_GUARD_MAX_WINDOW];
    ngx_atomic_t                    inflight;     /* origin fetches */
    ngx_atomic_t                    slot_inflight[NGX_HTTP_CACHE_GUARD_SLOTS];
    ngx_http_cache_guard_metrics_t  m;
};



/* warm-up progress, of the last job started on this node */

typedef struct {
    ngx_atomic_t                    running;
    ngx_atomic_t                    total;
    ngx_atomic_t                    done;
    ngx_atomic_t                    filled;
    ngx_atomic_t                    hits;
    ngx_atomic_t                    failed;
    ngx_atomic_t                    started;      /* ngx_time() */
} ngx_http_cache_guard_warm_state_t;


typedef struct {
    ngx_uint_t                      layout;
    time_t                          started;      /* the zone, not nginx */
    uint64_t                        node;         /* this node, at random */
    ngx_http_cache_guard_warm_state_t  warm;
    ngx_pid_t                       slots[NGX_HTTP_CACHE_GUARD_SLOTS];
    ngx_uint_t                      slot_gen[NGX_HTTP_CACHE_GUARD_SLOTS];
    ngx_uint_t                      generation;   /* configurations read */
    ngx_uint_t                      nrecords;
    ngx_http_cache_guard_record_t   records[NGX_HTTP_CACHE_GUARD_MAX_RECORDS];
} ngx_http_cache_guard_state_t;


typedef struct {
    ngx_uint_t                      requests;
    ngx_uint_t                      failures;
} ngx_http_cache_guard_window_t;


extern ngx_http_cache_guard_state_t  *ngx_http_cache_guard_state;

void ngx_http_cache_guard_breaker_defaults(
    ngx_http_cache_guard_breaker_conf_t *bc, ngx_msec_t open_for);
ngx_uint_t ngx_http_cache_guard_breaker_same(
    ngx_http_cache_guard_breaker_conf_t *a,
    ngx_http_cache_guard_breaker_conf_t *b, ngx_uint_t strict);
ngx_int_t ngx_http_cache_guard_state_want(ngx_conf_t *cf, ngx_str_t *name,
    ngx_http_cache_guard_record_t **rec);
ngx_int_t ngx_http_cache_guard_state_add(ngx_conf_t *cf);
void ngx_http_cache_guard_state_init_worker(ngx_cycle_t *cycle);
void ngx_http_cache_guard_state_exit_worker(void);
ngx_int_t ngx_http_cache_guard_inflight_add(
    ngx_http_cache_guard_record_t *rec, ngx_uint_t max, ngx_log_t *log);
void ngx_http_cache_guard_inflight_done(ngx_http_cache_guard_record_t *rec);
ngx_int_t ngx_http_cache_guard_breaker_allow(
    ngx_http_cache_guard_record_t *rec,
    ngx_http_cache_guard_breaker_conf_t *bc, ngx_log_t *log);
void ngx_http_cache_guard_breaker_record(ngx_http_cache_guard_record_t *rec,
    ngx_http_cache_guard_breaker_conf_t *bc, ngx_uint_t failed,
    ngx_log_t *log);
void ngx_http_cache_guard_breaker_unprobe(ngx_http_cache_guard_record_t *rec,
    ngx_http_cache_guard_breaker_conf_t *bc);
ngx_uint_t ngx_http_cache_guard_breaker_state(
    ngx_http_cache_guard_record_t *rec,
    ngx_http_cache_guard_breaker_conf_t *bc);
void ngx_http_cache_guard_breaker_window(ngx_http_cache_guard_record_t *rec,
    ngx_uint_t window, ngx_http_cache_guard_window_t *win);
ngx_int_t ngx_http_cache_guard_breaker_force(
    ngx_http_cache_guard_record_t *rec, ngx_uint_t forced, ngx_log_t *log);
const char *ngx_http_cache_guard_breaker_name(ngx_uint_t state);

#define ngx_http_cache_guard_breaker_counts(bc, status)                     \
    ((status) < 640                                                         \
     && ((bc)->statuses[(status) / 64] & ((uint64_t) 1 << ((status) % 64))))


#endif /* _NGX_HTTP_CACHE_GUARD_BREAKER_H_INCLUDED_ */
