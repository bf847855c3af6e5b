
/*
 * Copyright (C) nginx-cache-guard authors
 */


#ifndef _NGX_HTTP_CACHE_GUARD_MODULE_H_INCLUDED_
#define _NGX_HTTP_CACHE_GUARD_MODULE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <hiredis/hiredis.h>
#include <hiredis/async.h>

#include <lua.h>
#include <lauxlib.h>

#include <time.h>


#define NGX_HTTP_CACHE_GUARD_VERSION  "0.6.0"


/* entry codec (pure code, unit tested without nginx running) */

#define NGX_HTTP_CACHE_GUARD_ENTRY_VERSION    1
#define NGX_HTTP_CACHE_GUARD_ENTRY_FIXED      52
#define NGX_HTTP_CACHE_GUARD_ENTRY_MAX_HDRS   100

#define NGX_HTTP_CACHE_GUARD_ENTRY_NEGATIVE   0x0001

/* the largest encoded entry read from Redis: the body and its headers */
#define NGX_HTTP_CACHE_GUARD_ENTRY_MAX(pl)                                  \
    ((pl)->max_entry_size + 4 * NGX_HTTP_CACHE_GUARD_MAX_KEY)


typedef struct {
    ngx_uint_t                      status;
    ngx_uint_t                      flags;
    uint64_t                        created;       /* ms since the epoch */
    uint64_t                        fresh_until;   /* ms */
    uint64_t                        stale_until;   /* ms */
    uint32_t                        fill_ms;       /* measured fill time */
    ngx_uint_t                      nheaders;
    ngx_keyval_t                   *headers;       /* encode: input */
    u_char                         *hdr_pos;       /* decode: packed */
    u_char                         *hdr_end;
    ngx_str_t                       body;
} ngx_http_cache_guard_entry_t;


size_t ngx_http_cache_guard_entry_size(ngx_http_cache_guard_entry_t *e);
u_char *ngx_http_cache_guard_entry_encode(u_char *buf,
    ngx_http_cache_guard_entry_t *e);
ngx_int_t ngx_http_cache_guard_entry_decode(u_char *buf, size_t len,
    ngx_http_cache_guard_entry_t *e, ngx_uint_t verify);
ngx_int_t ngx_http_cache_guard_entry_next_header(
    ngx_http_cache_guard_entry_t *e, ngx_str_t *name, ngx_str_t *value);
uint32_t ngx_http_cache_guard_crc32c(uint32_t crc, const u_char *p,
    size_t len);
uint64_t ngx_http_cache_guard_siphash(const u_char *key, const u_char *p,
    size_t len);
ngx_int_t ngx_http_cache_guard_arg_decode(ngx_str_t *src, u_char *dst,
    ngx_str_t *out);
ngx_int_t ngx_http_cache_guard_arg_next(u_char **pos, u_char *end,
    u_char *buf, ngx_str_t *name, ngx_str_t *value);
ngx_uint_t ngx_http_cache_guard_arg_is(ngx_str_t *name, ngx_str_t *rule);
uint64_t ngx_http_cache_guard_jitter_ttl(uint64_t ttl_ms, double jitter,
    double rnd);
ngx_uint_t ngx_http_cache_guard_accepts_gzip(u_char *p, size_t len);
ngx_int_t ngx_http_cache_guard_entry_expire(u_char *buf, size_t len,
    uint64_t now);
/* JSON string content; not UTF-8: \u00XX of each byte; dst NULL: added */
uintptr_t ngx_http_cache_guard_escape_json(u_char *dst, u_char *src,
    size_t size);


/* circuit breakers and shared state (ngx_http_cache_guard_breaker.c) */

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


typedef struct {
    ngx_flag_t                      enabled;
    ngx_uint_t                      set;          /* written by a policy */
    ngx_msec_t                      window_ms;    /* as parsed */
    ngx_uint_t                      window;       /* seconds */
    ngx_uint_t                      min_requests;
    double                          failure_rate;
    ngx_msec_t                      open_for;
    ngx_uint_t                      half_open;    /* probes */
    uint64_t                        statuses[10]; /* bit per HTTP status */
} ngx_http_cache_guard_breaker_conf_t;


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
    ngx_atomic_t                    info[7];      /* see metrics.c */

    ngx_http_cache_guard_snapshot_t  history[NGX_HTTP_CACHE_GUARD_HISTORY];
} ngx_http_cache_guard_metrics_t;


typedef struct {
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
} ngx_http_cache_guard_record_t;


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

ngx_int_t ngx_http_cache_guard_breaker_init_conf(ngx_conf_t *cf);
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
u_char *ngx_http_cache_guard_breaker_json(u_char *p,
    ngx_http_cache_guard_record_t *rec,
    ngx_http_cache_guard_breaker_conf_t *bc);


/* metrics and status (ngx_http_cache_guard_metrics.c) */

/* microseconds on the monotonic clock: durations, never dates */

static ngx_inline uint64_t
ngx_http_cache_guard_usec(void)
{
    struct timespec  ts;

    (void) clock_gettime(CLOCK_MONOTONIC, &ts);

    return (uint64_t) ts.tv_sec * 1000000 + (uint64_t) ts.tv_nsec / 1000;
}


void ngx_http_cache_guard_metrics_init(void);
void ngx_http_cache_guard_histogram_add(ngx_http_cache_guard_histogram_t *h,
    uint64_t us);
void ngx_http_cache_guard_metrics_init_worker(ngx_cycle_t *cycle);
char *ngx_http_cache_guard_metrics_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);

#define ngx_http_cache_guard_breaker_counts(bc, status)                     \
    ((status) < 640                                                         \
     && ((bc)->statuses[(status) / 64] & ((uint64_t) 1 << ((status) % 64))))


/* Redis client */

typedef struct ngx_http_cache_guard_bloom_s  ngx_http_cache_guard_bloom_t;

typedef struct ngx_http_cache_guard_redis_s      ngx_http_cache_guard_redis_t;
typedef struct ngx_http_cache_guard_redis_cmd_s
    ngx_http_cache_guard_redis_cmd_t;

/*
 * Called from an event handler, never from inside
 * ngx_http_cache_guard_redis_command(); reply is NULL on a connect error,
 * a time-out or a lost connection and is valid only during the call.
 */
typedef void (*ngx_http_cache_guard_redis_pt)(redisReply *reply, void *data);


struct ngx_http_cache_guard_redis_cmd_s {
    ngx_event_t                     timer;
    uint64_t                        start_us;
    ngx_http_cache_guard_redis_pt   handler;     /* NULL: cancelled */
    void                           *data;
    ngx_http_cache_guard_redis_t   *redis;
    ngx_http_cache_guard_redis_cmd_t  *next;     /* free list */
    unsigned                        persistent:1; /* SUBSCRIBE */
    unsigned                        confirmed:1;
};


struct ngx_http_cache_guard_redis_s {
    /* configuration */
    ngx_str_t                       addr_text;   /* as written */
    ngx_str_t                       host;        /* numeric, NUL-ended */
    in_port_t                       port;
    ngx_str_t                       unix_path;   /* NUL-ended, or empty */
    ngx_msec_t                      timeout;
    ngx_msec_t                      connect_timeout;
    ngx_str_t                       password;
    ngx_str_t                       user;
    ngx_int_t                       db;
    ngx_str_t                       prefix;
    ngx_http_cache_guard_breaker_conf_t  breaker;
    ngx_http_cache_guard_record_t  *rec;         /* the breaker "redis" */
    size_t                          max_reply;   /* the largest we read */

    /* per worker state */
    redisAsyncContext              *ac;
    ngx_connection_t               *conn;
    ngx_uint_t                      connected;   /* unsigned:1 */
    ngx_event_t                     connect_timer;
    ngx_event_t                     backoff_timer;
    ngx_msec_t                      backoff;
    ngx_msec_t                      retry_at;    /* ngx_current_msec */
    ngx_uint_t                      pending;
    ngx_http_cache_guard_redis_cmd_t  *free;
    u_char                         *out;          /* RESP of one command */
    size_t                          out_size;
    time_t                          last_error_log;
    ngx_uint_t                      errors_suppressed;
    ngx_uint_t                      exiting;     /* unsigned:1 */
    ngx_uint_t                      force;       /* next: past the breaker */
    ngx_uint_t                      lazy;        /* no connect ahead */
    ngx_log_t                      *log;
};


char *ngx_http_cache_guard_redis_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_http_cache_guard_redis_init_worker(
    ngx_http_cache_guard_redis_t *rd, ngx_cycle_t *cycle);
void ngx_http_cache_guard_redis_exit_worker(ngx_http_cache_guard_redis_t *rd);
ngx_http_cache_guard_redis_cmd_t *ngx_http_cache_guard_redis_command(
    ngx_http_cache_guard_redis_t *rd, ngx_http_cache_guard_redis_pt handler,
    void *data, int argc, const char **argv, const size_t *argvlen);
void ngx_http_cache_guard_redis_cancel(ngx_http_cache_guard_redis_cmd_t *cmd);
ngx_http_cache_guard_redis_cmd_t *ngx_http_cache_guard_redis_subscribe(
    ngx_http_cache_guard_redis_t *rd, ngx_http_cache_guard_redis_pt handler,
    void *data, ngx_str_t *channel);
void ngx_http_cache_guard_redis_error(ngx_http_cache_guard_redis_t *rd,
    const char *fmt, ...);


/* shared memory zone: L1 entries, node locks, origin counters */

#define NGX_HTTP_CACHE_GUARD_LOCK_SLOTS    1024
#define NGX_HTTP_CACHE_GUARD_LOCK_PROBE    16
#define NGX_HTTP_CACHE_GUARD_MAX_POLICIES  64


/* a fill in progress on this node: at most one per key */

typedef struct {
    uint64_t                        hash;         /* 0: never used */
    uint64_t                        check;        /* a second keyed hash */
    uint64_t                        expires;      /* ms; 0: free */
    ngx_pid_t                       pid;          /* holder */
    uint32_t                        gen;          /* bumped on release */
    uint32_t                        failed;       /* last fill failed */
} ngx_http_cache_guard_lock_slot_t;


typedef struct {
    ngx_rbtree_t                    rbtree;
    ngx_rbtree_node_t               sentinel;
    ngx_queue_t                     lru;
    ngx_uint_t                      layout;       /* reuse on reload */
    ngx_atomic_t                    entries;
    ngx_atomic_t                    bytes;
    ngx_atomic_t                    evictions;
    ngx_atomic_t                    negative[NGX_HTTP_CACHE_GUARD_MAX_POLICIES];
    ngx_queue_t                     lru_negative;
    u_char                          lock_key[32]; /* SipHash keys, random */
    ngx_http_cache_guard_lock_slot_t  locks[NGX_HTTP_CACHE_GUARD_LOCK_SLOTS];
} ngx_http_cache_guard_shctx_t;


typedef struct {
    ngx_http_cache_guard_shctx_t   *sh;
    ngx_slab_pool_t                *shpool;
    ngx_shm_zone_t                 *shm_zone;
    ngx_str_t                       name;
    size_t                          size;
    ngx_uint_t                      full_logged;  /* per worker */
} ngx_http_cache_guard_zone_t;


/* policy */

#define NGX_HTTP_CACHE_GUARD_MAX_STATUSES  16
#define NGX_HTTP_CACHE_GUARD_MAX_KEY_PARTS 32
#define NGX_HTTP_CACHE_GUARD_MAX_KEY       4096

/* appended to a key for gzip clients: no key holds a NUL */
#define NGX_HTTP_CACHE_GUARD_GZIP_VARIANT  "\0gzip"


/* a key template part: a literal, a variable, or a regex capture */

typedef struct {
    ngx_str_t                       text;         /* or the name of $N */
    ngx_int_t                       index;        /* variable, or -1 */
    ngx_int_t                       capture;      /* $N, or -1 */
} ngx_http_cache_guard_key_part_t;

typedef struct {
    ngx_str_t                       name;
    ngx_str_t                       file;
    ngx_array_t                    *key;          /* key_part_t */
    ngx_msec_t                      ttl;
    double                          jitter;
    ngx_msec_t                      negative_ttl;
    ngx_uint_t                      negative_statuses[
                                        NGX_HTTP_CACHE_GUARD_MAX_STATUSES];
    ngx_uint_t                      nnegative;
    ngx_uint_t                      cache_statuses[
                                        NGX_HTTP_CACHE_GUARD_MAX_STATUSES];
    ngx_uint_t                      ncache;
    size_t                          max_entry_size;
    ngx_flag_t                      l1;           /* false: skip L1 */
    ngx_msec_t                      l1_ttl;       /* UNSET: automatic */

    ngx_flag_t                      lock;         /* single flight */
    ngx_msec_t                      lock_ttl;
    ngx_msec_t                      lock_wait;
    ngx_uint_t                      on_timeout;   /* NGX_HTTP_CACHE_GUARD_ON_ */
    ngx_msec_t                      while_revalidate;
    ngx_msec_t                      if_error;
    double                          beta;         /* 0: no early refresh */
    ngx_uint_t                      max_concurrent;  /* 0: no cap */
    ngx_uint_t                      on_overload;
    ngx_uint_t                      fallback_status;
    time_t                          retry_after;
    ngx_uint_t                      index;        /* counter index */
    ngx_http_cache_guard_breaker_conf_t  breaker;  /* origin */
    ngx_http_cache_guard_breaker_conf_t  redis_breaker;
    ngx_http_cache_guard_record_t  *rec;          /* "origin:NAME" */

    /* checked in the access phase, before the lookup */
    ngx_uint_t                      access;       /* any of these is set */
    ngx_regex_t                    *validate_uri;
    ngx_uint_t                      validate_methods;  /* 0: any */
    ngx_array_t                    *validate_args;     /* arg_rule_t */
    size_t                          max_key_length;
    ngx_uint_t                      reject_status;
    ngx_array_t                    *geo_deny;     /* ngx_str_t */
    ngx_array_t                    *geo_allow;    /* ngx_str_t */
    ngx_uint_t                      geo_status;
    ngx_http_cache_guard_bloom_t   *bloom;
    ngx_array_t                    *bloom_item;   /* key_part_t */
    ngx_uint_t                      bloom_status;
    ngx_uint_t                      negative_max; /* L1 entries per policy */

    /* alerts in the status JSON: below 0, none */
    double                          alert_hit_ratio;
    double                          alert_error_rate;
    ngx_msec_t                      alert_window_ms;
    ngx_uint_t                      alert_window;  /* seconds */
    ngx_uint_t                      alert_min_requests;

    /* Lua hooks: references in the policy's state, or LUA_NOREF */
    void                           *L;
    int                             key_fn;
    int                             validate_fn;
    int                             bloom_item_fn;
    int                             call_fn;      /* the trampoline */
    ngx_uint_t                      on_hook_error;  /* ON_HOOK_ */
} ngx_http_cache_guard_policy_t;


#define NGX_HTTP_CACHE_GUARD_MAX_ARG_RULES  32

#define NGX_HTTP_CACHE_GUARD_ARG_INT     0
#define NGX_HTTP_CACHE_GUARD_ARG_STRING  1

typedef struct {
    ngx_str_t                       name;
    ngx_uint_t                      type;
    double                          min;          /* value, or length */
    double                          max;
    ngx_regex_t                    *pattern;
    ngx_flag_t                      required;
} ngx_http_cache_guard_arg_rule_t;


#define NGX_HTTP_CACHE_GUARD_ON_STALE     0
#define NGX_HTTP_CACHE_GUARD_ON_ORIGIN    1
#define NGX_HTTP_CACHE_GUARD_ON_ERROR     2
#define NGX_HTTP_CACHE_GUARD_ON_FOLLOW    3     /* lock.on_timeout only */

#define NGX_HTTP_CACHE_GUARD_ON_HOOK_REJECT  0
#define NGX_HTTP_CACHE_GUARD_ON_HOOK_PASS    1


ngx_http_cache_guard_policy_t *ngx_http_cache_guard_policy_load(
    ngx_conf_t *cf, ngx_str_t *path);
ngx_http_cache_guard_policy_t *ngx_http_cache_guard_policy_default(
    ngx_conf_t *cf);
ngx_int_t ngx_http_cache_guard_policy_compile_key(ngx_conf_t *cf,
    ngx_http_cache_guard_policy_t *pl, ngx_str_t *value);
ngx_int_t ngx_http_cache_guard_policy_eval_key(ngx_http_request_t *r,
    ngx_array_t *parts, ngx_str_t *prefix, ngx_str_t *suffix,
    ngx_str_t *out);
ngx_int_t ngx_http_cache_guard_policy_call(ngx_http_request_t *r,
    ngx_http_cache_guard_policy_t *pl, ngx_uint_t hook, ngx_str_t *str,
    ngx_uint_t *status);
char *ngx_http_cache_guard_policy_check_location(ngx_conf_t *cf,
    ngx_http_cache_guard_policy_t *pl);
ngx_int_t ngx_http_cache_guard_policy_check_variables(ngx_conf_t *cf);

extern const char  *ngx_http_cache_guard_hook_names[];
void ngx_http_cache_guard_policy_breaker_defaults(
    ngx_http_cache_guard_breaker_conf_t *bc, ngx_msec_t open_for);
ngx_uint_t ngx_http_cache_guard_policy_has_status(ngx_uint_t *list,
    ngx_uint_t n, ngx_uint_t status);


/* Bloom filters (ngx_http_cache_guard_bloom.c) */

#define NGX_HTTP_CACHE_GUARD_BLOOM_ENFORCE  0
#define NGX_HTTP_CACHE_GUARD_BLOOM_SHADOW   1

char *ngx_http_cache_guard_bloom_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_http_cache_guard_bloom_t *ngx_http_cache_guard_bloom_find(ngx_conf_t *cf,
    ngx_str_t *name);
/* NGX_OK: may be present; NGX_DECLINED: absent; NGX_AGAIN: not loaded */
ngx_int_t ngx_http_cache_guard_bloom_test(ngx_http_cache_guard_bloom_t *bf,
    u_char *item, size_t len);
ngx_uint_t ngx_http_cache_guard_bloom_mode(ngx_http_cache_guard_bloom_t *bf);
/* counts a rejection, or in shadow mode one that would have been */
void ngx_http_cache_guard_bloom_rejected(ngx_http_cache_guard_bloom_t *bf);
ngx_int_t ngx_http_cache_guard_bloom_init_worker(ngx_cycle_t *cycle);

/* the longest item a file or the admin API may add */
#define NGX_HTTP_CACHE_GUARD_BLOOM_MAX_ITEM  4096


typedef struct {
    ngx_str_t                       name;
    ngx_uint_t                      capacity;
    double                          error_rate;
    ngx_uint_t                      mode;
    ngx_str_t                       file;         /* or empty */
    ngx_str_t                       redis_key;    /* or empty */
    ngx_msec_t                      sync;
    uint32_t                        blocks;       /* of 256 bits */
    size_t                          bytes;        /* the bitmap */
    size_t                          zone_bytes;   /* the shared memory */
    ngx_uint_t                      items;        /* approximate */
    ngx_uint_t                      loaded;
    ngx_uint_t                      rejected;
    ngx_uint_t                      shadow_rejected;
    time_t                          last_sync;    /* last full Redis merge */
    double                          fill_ratio;   /* bits set */
} ngx_http_cache_guard_bloom_info_t;


/* splits a stream of bytes into items, one per line */

typedef struct ngx_http_cache_guard_bloom_lines_s
    ngx_http_cache_guard_bloom_lines_t;

typedef ngx_int_t (*ngx_http_cache_guard_bloom_line_pt)(
    ngx_http_cache_guard_bloom_lines_t *ls, u_char *item, size_t len);

struct ngx_http_cache_guard_bloom_lines_s {
    ngx_http_cache_guard_bloom_line_pt  handler;
    void                           *data;
    u_char                         *carry;       /* MAX_ITEM + 1 bytes */
    size_t                          carry_len;
    ngx_uint_t                      line;        /* the last line seen */
};


/* called with NGX_OK once Redis has every item, NGX_ERROR if it may not */
typedef void (*ngx_http_cache_guard_bloom_done_pt)(void *data, ngx_int_t rc);


/* pure code (unit tested) */
uint64_t ngx_http_cache_guard_bloom_hash(u_char *p, size_t len);
double ngx_http_cache_guard_bloom_fp_rate(double items_per_block);
uint32_t ngx_http_cache_guard_bloom_blocks(uint64_t capacity,
    double error_rate);
ngx_uint_t ngx_http_cache_guard_bloom_set(u_char *bits, uint32_t nblocks,
    uint64_t hash);
ngx_uint_t ngx_http_cache_guard_bloom_has(u_char *bits, uint32_t nblocks,
    uint64_t hash);
void ngx_http_cache_guard_bloom_bit_offsets(uint32_t nblocks, uint64_t hash,
    uint64_t *offsets);
/* NGX_OK; NGX_DECLINED: line ls->line is too long; or the handler's error */
ngx_int_t ngx_http_cache_guard_bloom_split(ngx_http_cache_guard_bloom_lines_t
    *ls, u_char *p, u_char *last);
ngx_int_t ngx_http_cache_guard_bloom_split_end(
    ngx_http_cache_guard_bloom_lines_t *ls);

/* at run time, for the admin API and metrics */
ngx_http_cache_guard_bloom_t *ngx_http_cache_guard_bloom_get(
    ngx_http_request_t *r, ngx_str_t *name);
ngx_uint_t ngx_http_cache_guard_bloom_contains(
    ngx_http_cache_guard_bloom_t *bf, u_char *item, size_t len);
void ngx_http_cache_guard_bloom_add(ngx_http_cache_guard_bloom_t *bf,
    uint64_t *hashes, ngx_uint_t n);
/* NGX_AGAIN: done() follows; NGX_OK: n is 0; NGX_DECLINED: no redis_key */
ngx_int_t ngx_http_cache_guard_bloom_push(ngx_http_cache_guard_bloom_t *bf,
    ngx_pool_t *pool, uint64_t *hashes, ngx_uint_t n,
    ngx_http_cache_guard_bloom_done_pt done, void *data);
void ngx_http_cache_guard_bloom_info(ngx_http_cache_guard_bloom_t *bf,
    ngx_http_cache_guard_bloom_info_t *info);


/* the admin API (ngx_http_cache_guard_admin.c) */

typedef struct ngx_http_cache_guard_admin_body_s
    ngx_http_cache_guard_admin_body_t;

/*
 * Called once the body is split into lines, or was refused: NGX_OK,
 * NGX_DECLINED (line lines.line is bad), NGX_ERROR or the line handler's
 * own code; it answers the request.
 */
typedef void (*ngx_http_cache_guard_admin_body_pt)(ngx_http_request_t *r,
    ngx_http_cache_guard_admin_body_t *ab, ngx_int_t rc);

/* a request body read as it comes and split into lines, never stored */
struct ngx_http_cache_guard_admin_body_s {
    ngx_http_cache_guard_bloom_lines_t  lines;   /* handler, data: set */
    off_t                           limit;       /* bytes */
    off_t                           received;
    const char                     *too_large;   /* "...%O..." the limit */
    ngx_http_cache_guard_admin_body_pt  done;
    ngx_uint_t                      finished;    /* unsigned:1 */
};


char *ngx_http_cache_guard_admin_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_http_cache_guard_admin_error(ngx_http_request_t *r,
    ngx_uint_t status, const char *fmt, ...);
ngx_int_t ngx_http_cache_guard_admin_send(ngx_http_request_t *r,
    ngx_uint_t status, u_char *p, size_t len);
ngx_int_t ngx_http_cache_guard_send_buf(ngx_http_request_t *r,
    ngx_uint_t status, const char *type, u_char *p, size_t len);
ngx_int_t ngx_http_cache_guard_send_body(ngx_http_request_t *r, u_char *p,
    size_t len);
ngx_int_t ngx_http_cache_guard_admin_allow(ngx_http_request_t *r,
    const char *methods);
ngx_int_t ngx_http_cache_guard_admin_read_body(ngx_http_request_t *r,
    ngx_http_cache_guard_admin_body_t *ab);
ngx_int_t ngx_http_cache_guard_warm_handler(ngx_http_request_t *r);


/* purge and the purge broadcast (ngx_http_cache_guard_purge.c) */

ngx_int_t ngx_http_cache_guard_purge_handler(ngx_http_request_t *r);
void ngx_http_cache_guard_purge_init_worker(ngx_cycle_t *cycle);
void ngx_http_cache_guard_purge_exit_worker(void);


/* geo (ngx_http_cache_guard_geo.c) */

typedef struct {
    ngx_str_t                       country;      /* ISO code, or empty */
    ngx_str_t                       continent;    /* code, or empty */
    ngx_uint_t                      asn;          /* 0: unknown */
    ngx_str_t                       asn_org;
} ngx_http_cache_guard_geo_t;

char *ngx_http_cache_guard_geoip_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
/*
 * NGX_OK and *out filled; NGX_DECLINED: no database or address unknown;
 * NGX_ERROR: no memory
 */
ngx_int_t ngx_http_cache_guard_geo_lookup(ngx_http_request_t *r,
    ngx_http_cache_guard_geo_t *out);


/* configuration */

/* where a cache_guard or cache_guard_policy was written, checked later */

typedef struct {
    ngx_str_t                       file;
    ngx_uint_t                      line;
    ngx_shm_zone_t                 *shm_zone;     /* cache_guard ZONE */
    ngx_uint_t                      used;         /* a guarded location */
} ngx_http_cache_guard_conf_src_t;


typedef struct {
    ngx_http_cache_guard_redis_t   *redis;
    ngx_array_t                     blooms;       /* bloom_t * */
    ngx_array_t                     zones;        /* zone_t * */
    void                           *geoip;        /* MMDB_s *, or NULL */
    ngx_array_t                     policies;     /* policy_t * */
    ngx_uint_t                      npolicies;    /* counter indexes */
    ngx_http_cache_guard_policy_t  *default_policy;
    ngx_uint_t                      state_gen;    /* see breaker.c */
    ngx_array_t                     guards;       /* conf_src_t * */
    ngx_array_t                     policy_srcs;  /* conf_src_t * */
} ngx_http_cache_guard_main_conf_t;


typedef struct {
    ngx_flag_t                      enable;
    ngx_shm_zone_t                 *shm_zone;
    ngx_http_cache_guard_policy_t  *policy;
    ngx_http_cache_guard_conf_src_t  *policy_src;  /* its directive */
} ngx_http_cache_guard_loc_conf_t;


/* request state */

typedef enum {
    NGX_HTTP_CACHE_GUARD_NONE = 0,
    NGX_HTTP_CACHE_GUARD_HIT,
    NGX_HTTP_CACHE_GUARD_MISS,
    NGX_HTTP_CACHE_GUARD_STALE,
    NGX_HTTP_CACHE_GUARD_UPDATING,
    NGX_HTTP_CACHE_GUARD_NEGATIVE,
    NGX_HTTP_CACHE_GUARD_BLOOM_REJECT,
    NGX_HTTP_CACHE_GUARD_INVALID,
    NGX_HTTP_CACHE_GUARD_BYPASS,
    NGX_HTTP_CACHE_GUARD_LOCK_TIMEOUT,
    NGX_HTTP_CACHE_GUARD_FALLBACK
} ngx_http_cache_guard_status_e;


typedef enum {
    NGX_HTTP_CACHE_GUARD_LEVEL_NONE = 0,
    NGX_HTTP_CACHE_GUARD_LEVEL_L1,
    NGX_HTTP_CACHE_GUARD_LEVEL_L2
} ngx_http_cache_guard_level_e;


typedef struct {
    ngx_http_request_t             *request;
    ngx_http_cache_guard_zone_t    *zone;
    ngx_http_cache_guard_policy_t  *policy;
    ngx_str_t                       key;          /* as stored, no prefix */
    ngx_str_t                       rkey;         /* prefix + key */
    ngx_uint_t                      status;       /* status_e */
    ngx_uint_t                      level;        /* level_e */

    ngx_http_cache_guard_entry_t    entry;        /* the hit to serve */
    ngx_str_t                       blob;

    ngx_uint_t                      state;        /* NGX_HTTP_CACHE_GUARD_S_ */

    ngx_http_cache_guard_redis_cmd_t  *cmd;       /* pending GET */
    ngx_http_cache_guard_redis_cmd_t  *cmd2;      /* pending SET NX */
    ngx_event_t                     wake;
    ngx_str_t                       l2_value;
    ngx_int_t                       l2_rc;        /* NGX_OK, DECLINED, ERROR */
    ngx_int_t                       rlock_rc;     /* the SET NX */

    ngx_http_cache_guard_entry_t    stale;        /* a stale copy */
    ngx_str_t                       stale_blob;

    uint64_t                        hash;         /* keyed, for locks; 0: none */
    uint64_t                        check;        /* confirms a slot's key */
    ngx_int_t                       slot;         /* node lock, or -1 */
    uint32_t                        gen;
    ngx_queue_t                     queue;        /* a worker's waiters */
    ngx_queue_t                     held;         /* a worker's lock holders */
    uint64_t                        rlock_until;  /* ms: the Redis lock's end */
    ngx_msec_t                      wait_start;
    ngx_msec_t                      poll;         /* remote wait interval */
    ngx_event_t                     poll_timer;
    ngx_str_t                       lkey;         /* prefix lock: key */
    ngx_uint_t                      reject_code;  /* an HTTP status */
    ngx_str_t                       reject_msg;
    u_char                          token[16];

    ngx_msec_t                      fill_start;   /* ngx_current_msec */
    uint64_t                        start_us;     /* for the duration */
    ngx_buf_t                      *body;         /* captured */
    ngx_uint_t                      fill_status;  /* the origin's */
    ngx_array_t                     headers;      /* ngx_keyval_t */

    unsigned                        done:1;       /* lookup finished */
    unsigned                        waiting:1;
    unsigned                        node_locked:1;
    unsigned                        redis_locked:1;
    unsigned                        refresh:1;    /* background subrequest */
    unsigned                        counted:1;    /* in origin[] */
    unsigned                        timed_out:1;
    unsigned                        queued:1;
    unsigned                        cleanup_set:1;
    unsigned                        checked:1;    /* access phase done */
    unsigned                        reject_escape:1;
    unsigned                        answered:1;   /* by our content handler */
    unsigned                        fill:1;       /* may store the reply */
    unsigned                        capture:1;    /* capturing the body */
    unsigned                        stored:1;
    unsigned                        to_origin:1;  /* a result to count */
    unsigned                        swallow:1;    /* replaced by stale */
    unsigned                        waited:1;     /* counted as a wait */
    unsigned                        warm:1;       /* a warm-up subrequest */
    unsigned                        quiet:1;      /* output swallowed */
    unsigned                        gzip:1;       /* the key's gzip variant */
    unsigned                        probe:1;      /* a half-open probe */
    unsigned                        head:1;       /* a HEAD filled by a GET */
    unsigned                        headonly:1;   /* body read, not sent */
    unsigned                        late:1;       /* past lock.wait, counted */
    unsigned                        holding:1;    /* in the holders' queue */
} ngx_http_cache_guard_ctx_t;


/* how a fill ended, for its waiters (lock_release) */
#define NGX_HTTP_CACHE_GUARD_FILL_STORED  0     /* look again: it is there */
#define NGX_HTTP_CACHE_GUARD_FILL_FAILED  1     /* stale copy or fallback */
#define NGX_HTTP_CACHE_GUARD_FILL_PASS    2     /* not storable: go yourself */
#define NGX_HTTP_CACHE_GUARD_FILL_RETRY   3     /* no result: one fills again */

#define NGX_HTTP_CACHE_GUARD_S_NEW       0
#define NGX_HTTP_CACHE_GUARD_S_L2         1     /* GET sent */
#define NGX_HTTP_CACHE_GUARD_S_LOCK       2     /* waiting for a node lock */
#define NGX_HTTP_CACHE_GUARD_S_RLOCK      3     /* SET NX + GET sent */
#define NGX_HTTP_CACHE_GUARD_S_REMOTE     4     /* another node fills */
#define NGX_HTTP_CACHE_GUARD_S_DONE       5


/* locks: node locks in the zone, waiters, the Redis lock */

ngx_int_t ngx_http_cache_guard_lock_acquire(ngx_http_cache_guard_ctx_t *ctx,
    ngx_msec_t ttl);
void ngx_http_cache_guard_lock_release(ngx_http_cache_guard_ctx_t *ctx,
    ngx_uint_t failed);
ngx_int_t ngx_http_cache_guard_lock_wait(ngx_http_cache_guard_ctx_t *ctx);
void ngx_http_cache_guard_lock_unwait(ngx_http_cache_guard_ctx_t *ctx);
ngx_uint_t ngx_http_cache_guard_lock_failed(ngx_http_cache_guard_ctx_t *ctx);
void ngx_http_cache_guard_lock_late(ngx_http_cache_guard_ctx_t *ctx);
ngx_int_t ngx_http_cache_guard_rlock_try(ngx_http_cache_guard_ctx_t *ctx,
    ngx_http_cache_guard_redis_t *rd);
void ngx_http_cache_guard_rlock_release(ngx_http_cache_guard_ctx_t *ctx,
    ngx_http_cache_guard_redis_t *rd);
void ngx_http_cache_guard_resume(ngx_http_cache_guard_ctx_t *ctx);
void ngx_http_cache_guard_l2_done(redisReply *reply, void *data);


/* store: L1 and the write path */

ngx_int_t ngx_http_cache_guard_zone_init(ngx_shm_zone_t *shm_zone,
    void *data);
ngx_int_t ngx_http_cache_guard_l1_get(ngx_http_cache_guard_zone_t *zone,
    ngx_str_t *key, ngx_pool_t *pool, ngx_str_t *blob, uint64_t now);
ngx_int_t ngx_http_cache_guard_l1_put(ngx_http_cache_guard_zone_t *zone,
    ngx_str_t *key, ngx_str_t *blob, uint64_t expires, ngx_log_t *log,
    ngx_http_cache_guard_policy_t *pl, ngx_uint_t negative);
ngx_int_t ngx_http_cache_guard_l1_keep(ngx_http_request_t *r,
    ngx_http_cache_guard_ctx_t *ctx, ngx_str_t *blob,
    ngx_http_cache_guard_entry_t *e);
uint64_t ngx_http_cache_guard_now(void);
ngx_uint_t ngx_http_cache_guard_l1_purge(ngx_http_cache_guard_zone_t *zone,
    ngx_str_t *key, ngx_str_t *pattern, ngx_uint_t soft);


/* handler and filter */

ngx_int_t ngx_http_cache_guard_precontent_handler(ngx_http_request_t *r);
ngx_int_t ngx_http_cache_guard_log_handler(ngx_http_request_t *r);
ngx_int_t ngx_http_cache_guard_set_cleanup(ngx_http_request_t *r,
    ngx_http_cache_guard_ctx_t *ctx);
ngx_int_t ngx_http_cache_guard_access_handler(ngx_http_request_t *r);
ngx_http_cache_guard_ctx_t *ngx_http_cache_guard_get_ctx(
    ngx_http_request_t *r);
ngx_http_cache_guard_ctx_t *ngx_http_cache_guard_find_ctx_slow(
    ngx_http_request_t *r);

/* run by every filter and phase: the usual case without a call */
#define ngx_http_cache_guard_find_ctx(r)                                      \
    (((r)->ctx[ngx_http_cache_guard_module.ctx_index] || !(r)->internal)      \
     ? (ngx_http_cache_guard_ctx_t *)                                         \
           (r)->ctx[ngx_http_cache_guard_module.ctx_index]                    \
     : ngx_http_cache_guard_find_ctx_slow(r))
ngx_int_t ngx_http_cache_guard_reject(ngx_http_request_t *r,
    ngx_http_cache_guard_ctx_t *ctx, ngx_uint_t cg_status, ngx_uint_t status,
    const char *fmt, ...);
ngx_int_t ngx_http_cache_guard_reject_str(ngx_http_request_t *r,
    ngx_http_cache_guard_ctx_t *ctx, ngx_uint_t cg_status, ngx_uint_t status,
    ngx_str_t *msg);
ngx_int_t ngx_http_cache_guard_reject_hook(ngx_http_request_t *r,
    ngx_http_cache_guard_ctx_t *ctx);
void ngx_http_cache_guard_answer(ngx_http_request_t *r,
    ngx_http_cache_guard_ctx_t *ctx, ngx_http_handler_pt handler);
ngx_int_t ngx_http_cache_guard_fallback(ngx_http_request_t *r,
    ngx_http_cache_guard_ctx_t *ctx);
ngx_int_t ngx_http_cache_guard_filter_init(ngx_conf_t *cf);
ngx_int_t ngx_http_cache_guard_add_variables(ngx_conf_t *cf);
void ngx_http_cache_guard_store(ngx_http_request_t *r,
    ngx_http_cache_guard_ctx_t *ctx);
void ngx_http_cache_guard_fill_end(ngx_http_cache_guard_ctx_t *ctx,
    ngx_uint_t failed);
ngx_int_t ngx_http_cache_guard_stale_if_error(ngx_http_request_t *r,
    ngx_http_cache_guard_ctx_t *ctx);


extern ngx_module_t  ngx_http_cache_guard_module;


#endif /* _NGX_HTTP_CACHE_GUARD_MODULE_H_INCLUDED_ */
