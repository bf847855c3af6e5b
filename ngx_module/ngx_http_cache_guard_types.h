
/*
 * Copyright (C) nginx-cache-guard authors
 */


/*
 * the data every layer passes around: configuration, policies, cache entries
 * and a request's state; types only
 */


#ifndef _NGX_HTTP_CACHE_GUARD_TYPES_H_INCLUDED_
#define _NGX_HTTP_CACHE_GUARD_TYPES_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


#define NGX_HTTP_CACHE_GUARD_VERSION  "0.6.0"

typedef struct ngx_http_cache_guard_zone_s   ngx_http_cache_guard_zone_t;
typedef struct ngx_http_cache_guard_record_s ngx_http_cache_guard_record_t;
typedef struct ngx_http_cache_guard_bloom_s  ngx_http_cache_guard_bloom_t;
typedef struct ngx_http_cache_guard_redis_s  ngx_http_cache_guard_redis_t;
typedef struct ngx_http_cache_guard_redis_cmd_s
    ngx_http_cache_guard_redis_cmd_t;

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

/* policy */

#define NGX_HTTP_CACHE_GUARD_MAX_STATUSES  16
#define NGX_HTTP_CACHE_GUARD_MAX_POLICIES  64
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

#define NGX_HTTP_CACHE_GUARD_ON_STALE     0
#define NGX_HTTP_CACHE_GUARD_ON_ORIGIN    1
#define NGX_HTTP_CACHE_GUARD_ON_ERROR     2
#define NGX_HTTP_CACHE_GUARD_ON_FOLLOW    3     /* lock.on_timeout only */

#define NGX_HTTP_CACHE_GUARD_ON_HOOK_REJECT  0
#define NGX_HTTP_CACHE_GUARD_ON_HOOK_PASS    1

/* configuration */

/* where a cache_guard or cache_guard_policy was written, checked later */

typedef struct {
    ngx_str_t                       file;
    ngx_uint_t                      line;
    ngx_shm_zone_t                 *shm_zone;     /* cache_guard ZONE */
    ngx_uint_t                      used;         /* a guarded location */
} ngx_http_cache_guard_conf_src_t;


/* a record of the state zone asked for by name */

typedef struct {
    ngx_str_t                       name;
    ngx_http_cache_guard_record_t **rec;          /* set at zone init */
} ngx_http_cache_guard_want_t;


typedef struct {
    ngx_http_cache_guard_redis_t   *redis;
    ngx_array_t                     blooms;       /* bloom_t * */
    ngx_array_t                     zones;        /* zone_t * */
    void                           *geoip;        /* MMDB_s *, or NULL */
    ngx_array_t                     policies;     /* policy_t * */
    ngx_uint_t                      npolicies;    /* counter indexes */
    ngx_http_cache_guard_policy_t  *default_policy;
    ngx_uint_t                      state_gen;    /* see breaker.c */
    ngx_array_t                     wants;        /* want_t, see breaker.c */
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

    uint64_t                        hash;         /* keyed, locks; 0: none */
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

extern ngx_module_t  ngx_http_cache_guard_module;


#endif /* _NGX_HTTP_CACHE_GUARD_TYPES_H_INCLUDED_ */
