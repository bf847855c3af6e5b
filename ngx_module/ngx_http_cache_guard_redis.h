
/*
 * Copyright (C) nginx-cache-guard authors
 */


/* the Redis client: one connection per worker, commands with a time-out */


#ifndef _NGX_HTTP_CACHE_GUARD_REDIS_H_INCLUDED_
#define _NGX_HTTP_CACHE_GUARD_REDIS_H_INCLUDED_


#include "ngx_http_cache_guard_types.h"
#include "ngx_http_cache_guard_breaker.h"
#include "ngx_http_cache_guard_log.h"
#include "ngx_http_cache_guard_redis_conn.h"

#include <hiredis/hiredis.h>


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
    ngx_http_cache_guard_redis_cmd_t  *next;     /* queue or free list */
    unsigned                        persistent:1; /* SUBSCRIBE */
    unsigned                        confirmed:1;
    unsigned                        handshake:1;  /* AUTH, SELECT */
};


struct ngx_http_cache_guard_redis_s {
    /* configuration */
    ngx_str_t                       addr_text;   /* as written */
    ngx_addr_t                     *peer;        /* resolved, or unix: */
    ngx_msec_t                      timeout;
    ngx_msec_t                      connect_timeout;
    ngx_str_t                       password;
    ngx_str_t                       user;
    ngx_int_t                       db;
    ngx_str_t                       prefix;
    ngx_http_cache_guard_breaker_conf_t  breaker;
    ngx_http_cache_guard_record_t  *rec;         /* the breaker "redis" */
    size_t                          max_reply;   /* the largest we read */

    /* per worker state, from here on (see redis_clone) */
    ngx_http_cache_guard_redis_conn_t  conn;
    ngx_http_cache_guard_redis_cmd_t  *head;     /* sent or to send, FIFO */
    ngx_http_cache_guard_redis_cmd_t  *tail;
    ngx_event_t                     connect_timer;
    ngx_event_t                     backoff_timer;
    ngx_msec_t                      backoff;
    ngx_msec_t                      retry_at;    /* ngx_current_msec */
    ngx_uint_t                      pending;
    ngx_http_cache_guard_redis_cmd_t  *free;
    ngx_http_cache_guard_log_limit_t  log_limit;
    ngx_uint_t                      exiting;     /* unsigned:1 */
    ngx_uint_t                      force;       /* next: past the breaker */
    ngx_uint_t                      lazy;        /* no connect ahead */
    ngx_log_t                      *log;
};


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
#define NGX_HTTP_CACHE_GUARD_SCRIPT_ARGS  4

ngx_http_cache_guard_redis_cmd_t *ngx_http_cache_guard_redis_script(
    ngx_http_cache_guard_redis_t *rd, const char *cmd, ngx_str_t *script,
    ngx_str_t *key, ngx_uint_t nargs, ngx_str_t *args,
    ngx_http_cache_guard_redis_pt handler, void *data);
/* a client of the same backend and settings, with a state of its own */
ngx_http_cache_guard_redis_t *ngx_http_cache_guard_redis_clone(
    ngx_http_cache_guard_redis_t *rd, ngx_log_t *log);
void ngx_http_cache_guard_redis_error(ngx_http_cache_guard_redis_t *rd,
    const char *fmt, ...);


#endif /* _NGX_HTTP_CACHE_GUARD_REDIS_H_INCLUDED_ */
