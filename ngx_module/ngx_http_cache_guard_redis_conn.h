
/*
 * Copyright (C) nginx-cache-guard authors
 */


/* one nginx connection to a Redis server: bytes out, parsed replies in */


#ifndef _NGX_HTTP_CACHE_GUARD_REDIS_CONN_H_INCLUDED_
#define _NGX_HTTP_CACHE_GUARD_REDIS_CONN_H_INCLUDED_


#include "ngx_http_cache_guard_types.h"
#include "ngx_http_cache_guard_resp.h"

#include <hiredis/hiredis.h>


typedef struct ngx_http_cache_guard_redis_conn_s
    ngx_http_cache_guard_redis_conn_t;

/* each reply, in order; valid only during the call */
typedef void (*ngx_http_cache_guard_redis_conn_reply_pt)(void *data,
    redisReply *reply);
/* the connect completed */
typedef void (*ngx_http_cache_guard_redis_conn_up_pt)(void *data);
/*
 * the connection failed (kind: a RERR_ kind, or -1 for "lost, or the
 * connect failed"); the owner must close it before it returns
 */
typedef void (*ngx_http_cache_guard_redis_conn_lost_pt)(void *data,
    ngx_uint_t kind, const char *why);


struct ngx_http_cache_guard_redis_conn_s {
    ngx_connection_t               *c;           /* NULL: none */
    redisReader                    *reader;      /* RESP parser only */
    ngx_http_cache_guard_resp_budget_t  budget;  /* of its replies */
    u_char                         *sbuf;        /* bytes to send */
    size_t                          spos;
    size_t                          slast;
    size_t                          ssize;
    ngx_uint_t                      connected;   /* unsigned:1 */

    /* set by the owner */
    ngx_addr_t                     *peer;
    ngx_str_t                      *name;        /* for the log */
    size_t                          max_reply;
    ngx_uint_t                      keepalive;   /* probe an idle peer */
    ngx_log_t                      *log;
    void                           *data;
    ngx_http_cache_guard_redis_conn_reply_pt  reply;
    ngx_http_cache_guard_redis_conn_up_pt     up;
    ngx_http_cache_guard_redis_conn_lost_pt   lost;
};


/* NGX_OK: connecting or connected; NGX_ERROR: *why says why */
ngx_int_t ngx_http_cache_guard_redis_conn_open(
    ngx_http_cache_guard_redis_conn_t *rc, const char **why);
/* the command is sent after the caller returns, in order */
ngx_int_t ngx_http_cache_guard_redis_conn_send(
    ngx_http_cache_guard_redis_conn_t *rc, int argc, const char **argv,
    const size_t *argvlen);
void ngx_http_cache_guard_redis_conn_close(
    ngx_http_cache_guard_redis_conn_t *rc);
/* at exit: the buffers too */
void ngx_http_cache_guard_redis_conn_free(
    ngx_http_cache_guard_redis_conn_t *rc);


#endif /* _NGX_HTTP_CACHE_GUARD_REDIS_CONN_H_INCLUDED_ */
