
/*
 * Copyright (C) nginx-cache-guard authors
 *
 * The Redis client of a worker: commands pipelined in order on one
 * connection (redis_conn.c), each reply given to its command's handler;
 * the handshake (AUTH, SELECT), per-command time-outs, a reconnect
 * backoff, the Redis breaker, subscriptions and scripts.
 */


#include "ngx_http_cache_guard_redis.h"
#include "ngx_http_cache_guard_breaker.h"
#include "ngx_http_cache_guard_log.h"
#include "ngx_http_cache_guard_resp.h"
#include "ngx_http_cache_guard_stats.h"


#define NGX_HTTP_CACHE_GUARD_REDIS_BACKOFF_MIN   100
#define NGX_HTTP_CACHE_GUARD_REDIS_BACKOFF_MAX   5000
#define NGX_HTTP_CACHE_GUARD_REDIS_LOG_INTERVAL  10


static ngx_int_t ngx_http_cache_guard_redis_connect(
    ngx_http_cache_guard_redis_t *rd);
static ngx_int_t ngx_http_cache_guard_redis_handshake(
    ngx_http_cache_guard_redis_t *rd);
static ngx_int_t ngx_http_cache_guard_redis_queue(
    ngx_http_cache_guard_redis_t *rd, ngx_http_cache_guard_redis_cmd_t *cmd,
    int argc, const char **argv, const size_t *argvlen);
static ngx_http_cache_guard_redis_cmd_t *ngx_http_cache_guard_redis_cmd_get(
    ngx_http_cache_guard_redis_t *rd);
static void ngx_http_cache_guard_redis_cmd_free(
    ngx_http_cache_guard_redis_t *rd, ngx_http_cache_guard_redis_cmd_t *cmd);
static void ngx_http_cache_guard_redis_close(ngx_http_cache_guard_redis_t *rd);
static void ngx_http_cache_guard_redis_backoff(
    ngx_http_cache_guard_redis_t *rd);
static void ngx_http_cache_guard_redis_lost(void *data, ngx_uint_t kind,
    const char *why);
static void ngx_http_cache_guard_redis_up(void *data);
static void ngx_http_cache_guard_redis_ready(ngx_http_cache_guard_redis_t *rd);
static void ngx_http_cache_guard_redis_handshake_done(
    ngx_http_cache_guard_redis_t *rd, redisReply *reply, const char *name);
static void ngx_http_cache_guard_redis_reply(ngx_http_cache_guard_redis_t *rd,
    ngx_http_cache_guard_redis_cmd_t *cmd, redisReply *reply);
static void ngx_http_cache_guard_redis_dispatch(void *data,
    redisReply *reply);
static void ngx_http_cache_guard_redis_cmd_timeout(ngx_event_t *ev);
static void ngx_http_cache_guard_redis_connect_timeout(ngx_event_t *ev);
static void ngx_http_cache_guard_redis_backoff_expired(ngx_event_t *ev);


/* one more error of this kind, in the breaker record's counters */

static ngx_inline void
ngx_http_cache_guard_redis_count(ngx_http_cache_guard_redis_t *rd,
    ngx_uint_t kind)
{
    if (rd->rec) {
        (void) ngx_atomic_fetch_add(&rd->rec->m.redis_errors[kind], 1);
    }
}


static const char  ngx_http_cache_guard_redis_auth[] = "AUTH";
static const char  ngx_http_cache_guard_redis_select[] = "SELECT";


ngx_int_t
ngx_http_cache_guard_redis_init_worker(ngx_http_cache_guard_redis_t *rd,
    ngx_cycle_t *cycle)
{
    rd->log = cycle->log;
    rd->backoff = NGX_HTTP_CACHE_GUARD_REDIS_BACKOFF_MIN;
    rd->log_limit.count = 1;

    rd->conn.peer = rd->peer;
    rd->conn.name = &rd->addr_text;
    rd->conn.max_reply = rd->max_reply;
    rd->conn.keepalive = rd->lazy;
    rd->conn.log = rd->log;
    rd->conn.data = rd;
    rd->conn.reply = ngx_http_cache_guard_redis_dispatch;
    rd->conn.up = ngx_http_cache_guard_redis_up;
    rd->conn.lost = ngx_http_cache_guard_redis_lost;

    /* neither timer holds a request: a graceful shutdown need not wait */

    rd->connect_timer.handler = ngx_http_cache_guard_redis_connect_timeout;
    rd->connect_timer.data = rd;
    rd->connect_timer.log = rd->log;
    rd->connect_timer.cancelable = 1;

    rd->backoff_timer.handler = ngx_http_cache_guard_redis_backoff_expired;
    rd->backoff_timer.data = rd;
    rd->backoff_timer.log = rd->log;
    rd->backoff_timer.cancelable = 1;

    /*
     * a failure here only starts the backoff; the worker runs without L2;
     * an open breaker (kept across a reload) means no connect at all
     */

    if (!rd->lazy
        && ngx_http_cache_guard_breaker_state(rd->rec, &rd->breaker)
           == NGX_HTTP_CACHE_GUARD_CLOSED)
    {
        (void) ngx_http_cache_guard_redis_connect(rd);
    }

    return NGX_OK;
}


void
ngx_http_cache_guard_redis_exit_worker(ngx_http_cache_guard_redis_t *rd)
{
    ngx_http_cache_guard_redis_cmd_t  *cmd;

    /* handlers that get their NULL reply now must not reconnect */

    rd->exiting = 1;

    if (rd->conn.c) {
        ngx_http_cache_guard_redis_close(rd);
    }

    if (rd->backoff_timer.timer_set) {
        ngx_del_timer(&rd->backoff_timer);
    }

    ngx_http_cache_guard_redis_conn_free(&rd->conn);

    while (rd->free) {
        cmd = rd->free;
        rd->free = cmd->next;
        ngx_free(cmd);
    }
}


ngx_http_cache_guard_redis_cmd_t *
ngx_http_cache_guard_redis_command(ngx_http_cache_guard_redis_t *rd,
    ngx_http_cache_guard_redis_pt handler, void *data, int argc,
    const char **argv, const size_t *argvlen)
{
    ngx_int_t                          rc;
    ngx_http_cache_guard_redis_cmd_t  *cmd;

    if (rd->exiting) {
        rd->force = 0;
        return NULL;
    }

    /* an open breaker: no command, no connect, until a probe */

    if (rd->force) {
        rd->force = 0;
        rc = NGX_OK;

    } else {
        rc = ngx_http_cache_guard_breaker_allow(rd->rec, &rd->breaker,
                                                rd->log);
    }

    if (rc == NGX_DECLINED) {
        ngx_http_cache_guard_redis_count(rd, NGX_HTTP_CACHE_GUARD_RERR_OPEN);
        return NULL;
    }

    if (rd->conn.c == NULL) {

        /* a probe does not wait for the backoff: open_for was its wait */

        if (rc != NGX_AGAIN
            && (ngx_msec_int_t) (rd->retry_at - ngx_current_msec) > 0)
        {
            ngx_log_debug1(NGX_LOG_DEBUG_HTTP, rd->log, 0,
                           "cache guard: redis \"%V\" in backoff, "
                           "command failed", &rd->addr_text);
            ngx_http_cache_guard_breaker_record(rd->rec, &rd->breaker, 1,
                                                rd->log);
            ngx_http_cache_guard_redis_count(rd,
                                             NGX_HTTP_CACHE_GUARD_RERR_CONNECT);
            return NULL;
        }

        if (ngx_http_cache_guard_redis_connect(rd) != NGX_OK) {
            ngx_http_cache_guard_breaker_record(rd->rec, &rd->breaker, 1,
                                                rd->log);
            return NULL;
        }
    }

    cmd = ngx_http_cache_guard_redis_cmd_get(rd);
    if (cmd == NULL) {
        return NULL;
    }

    cmd->handler = handler;
    cmd->data = data;

    if (ngx_http_cache_guard_redis_queue(rd, cmd, argc, argv, argvlen)
        != NGX_OK)
    {
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, rd->log, 0,
                       "cache guard: redis \"%V\" refused a command",
                       &rd->addr_text);

        ngx_http_cache_guard_redis_cmd_free(rd, cmd);
        return NULL;
    }

    ngx_add_timer(&cmd->timer, rd->timeout);

    cmd->start_us = ngx_http_cache_guard_usec();
    rd->pending++;

    if (rd->rec) {
        (void) ngx_atomic_fetch_add(&rd->rec->m.redis_commands, 1);
    }

    ngx_log_debug4(NGX_LOG_DEBUG_HTTP, rd->log, 0,
                   "cache guard: redis \"%V\" queued %*s, pending:%ui",
                   &rd->addr_text, argvlen[0], argv[0], rd->pending);

    return cmd;
}


void
ngx_http_cache_guard_redis_cancel(ngx_http_cache_guard_redis_cmd_t *cmd)
{
    /*
     * the struct goes back to the free list when its reply comes or the
     * connection ends
     */

    cmd->handler = NULL;
    cmd->data = NULL;
}


static ngx_http_cache_guard_redis_cmd_t *
ngx_http_cache_guard_redis_cmd_get(ngx_http_cache_guard_redis_t *rd)
{
    ngx_http_cache_guard_redis_cmd_t  *cmd;

    cmd = rd->free;

    if (cmd) {
        rd->free = cmd->next;
        cmd->next = NULL;
        return cmd;
    }

    cmd = ngx_calloc(sizeof(ngx_http_cache_guard_redis_cmd_t), rd->log);
    if (cmd == NULL) {
        return NULL;
    }

    /*
     * the timer is not cancelable: a request waiting for the reply may
     * have no timer of its own, and a graceful shutdown must not drop
     * it; the wait is bounded by the time-out
     */

    cmd->redis = rd;
    cmd->timer.handler = ngx_http_cache_guard_redis_cmd_timeout;
    cmd->timer.data = cmd;
    cmd->timer.log = rd->log;

    return cmd;
}


static void
ngx_http_cache_guard_redis_cmd_free(ngx_http_cache_guard_redis_t *rd,
    ngx_http_cache_guard_redis_cmd_t *cmd)
{
    if (cmd->timer.timer_set) {
        ngx_del_timer(&cmd->timer);
    }

    cmd->handler = NULL;
    cmd->data = NULL;
    cmd->persistent = 0;
    cmd->confirmed = 0;
    cmd->handshake = 0;
    cmd->next = rd->free;
    rd->free = cmd;
}


/* the command sent, and its reply's place at the end of the queue */

static ngx_int_t
ngx_http_cache_guard_redis_queue(ngx_http_cache_guard_redis_t *rd,
    ngx_http_cache_guard_redis_cmd_t *cmd, int argc, const char **argv,
    const size_t *argvlen)
{
    if (ngx_http_cache_guard_redis_conn_send(&rd->conn, argc, argv, argvlen)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    cmd->next = NULL;

    if (rd->tail) {
        rd->tail->next = cmd;

    } else {
        rd->head = cmd;
    }

    rd->tail = cmd;

    return NGX_OK;
}


static ngx_int_t
ngx_http_cache_guard_redis_connect(ngx_http_cache_guard_redis_t *rd)
{
    const char  *why;

    rd->head = NULL;
    rd->tail = NULL;

    if (ngx_http_cache_guard_redis_conn_open(&rd->conn, &why) != NGX_OK) {
        ngx_http_cache_guard_redis_count(rd, NGX_HTTP_CACHE_GUARD_RERR_CONNECT);
        ngx_http_cache_guard_redis_error(rd,
                            "cache guard: redis \"%V\" connect failed: %s",
                            &rd->addr_text, why);
        ngx_http_cache_guard_redis_backoff(rd);
        return NGX_ERROR;
    }

    if (ngx_http_cache_guard_redis_handshake(rd) != NGX_OK) {
        ngx_http_cache_guard_redis_error(rd,
                            "cache guard: redis \"%V\" could not queue "
                            "the handshake", &rd->addr_text);
        ngx_http_cache_guard_redis_backoff(rd);
        ngx_http_cache_guard_redis_close(rd);
        return NGX_ERROR;
    }

    /* covers the TCP connect and the AUTH and SELECT replies */

    ngx_add_timer(&rd->connect_timer, rd->connect_timeout);

    return NGX_OK;
}


static ngx_int_t
ngx_http_cache_guard_redis_handshake(ngx_http_cache_guard_redis_t *rd)
{
    int                                argc;
    u_char                             db[NGX_INT_T_LEN];
    size_t                             argvlen[3];
    const char                        *argv[3];
    ngx_http_cache_guard_redis_cmd_t  *cmd;

    /* queued first: they go before any command */

    if (rd->password.len) {
        argc = 0;

        argv[argc] = ngx_http_cache_guard_redis_auth;
        argvlen[argc++] = sizeof(ngx_http_cache_guard_redis_auth) - 1;

        if (rd->user.len) {
            argv[argc] = (const char *) rd->user.data;
            argvlen[argc++] = rd->user.len;
        }

        argv[argc] = (const char *) rd->password.data;
        argvlen[argc++] = rd->password.len;

        cmd = ngx_http_cache_guard_redis_cmd_get(rd);
        if (cmd == NULL) {
            return NGX_ERROR;
        }

        cmd->handshake = 1;
        cmd->data = (void *) ngx_http_cache_guard_redis_auth;

        if (ngx_http_cache_guard_redis_queue(rd, cmd, argc, argv, argvlen)
            != NGX_OK)
        {
            ngx_http_cache_guard_redis_cmd_free(rd, cmd);
            return NGX_ERROR;
        }
    }

    if (rd->db) {
        argv[0] = ngx_http_cache_guard_redis_select;
        argvlen[0] = sizeof(ngx_http_cache_guard_redis_select) - 1;
        argv[1] = (const char *) db;
        argvlen[1] = ngx_sprintf(db, "%i", rd->db) - db;

        cmd = ngx_http_cache_guard_redis_cmd_get(rd);
        if (cmd == NULL) {
            return NGX_ERROR;
        }

        cmd->handshake = 1;
        cmd->data = (void *) ngx_http_cache_guard_redis_select;

        if (ngx_http_cache_guard_redis_queue(rd, cmd, 2, argv, argvlen)
            != NGX_OK)
        {
            ngx_http_cache_guard_redis_cmd_free(rd, cmd);
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/*
 * Ends the connection: every command still queued gets its NULL reply,
 * after the connection is detached, so that a handler's new command
 * does not go onto the dying one.
 */

static void
ngx_http_cache_guard_redis_close(ngx_http_cache_guard_redis_t *rd)
{
    ngx_http_cache_guard_redis_cmd_t  *cmd, *next;

    cmd = rd->head;

    rd->head = NULL;
    rd->tail = NULL;

    if (rd->connect_timer.timer_set) {
        ngx_del_timer(&rd->connect_timer);
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, rd->log, 0,
                   "cache guard: redis \"%V\" closing", &rd->addr_text);

    ngx_http_cache_guard_redis_conn_close(&rd->conn);

    while (cmd) {
        next = cmd->next;

        if (cmd->handshake) {
            ngx_http_cache_guard_redis_cmd_free(rd, cmd);

        } else {
            ngx_http_cache_guard_redis_reply(rd, cmd, NULL);
        }

        cmd = next;
    }
}


static void
ngx_http_cache_guard_redis_backoff(ngx_http_cache_guard_redis_t *rd)
{
    ngx_msec_t  delay;

    /* jitter in [0.5, 1.5) keeps workers from reconnecting in lockstep */

    delay = rd->backoff / 2 + (ngx_msec_t) ngx_random() % rd->backoff;

    rd->retry_at = ngx_current_msec + delay;
    rd->backoff = ngx_min(rd->backoff * 2,
                          NGX_HTTP_CACHE_GUARD_REDIS_BACKOFF_MAX);

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, rd->log, 0,
                   "cache guard: redis \"%V\" backoff %M ms",
                   &rd->addr_text, delay);

    if (!rd->exiting) {
        ngx_add_timer(&rd->backoff_timer, delay);
    }
}


/*
 * The connection failed or was lost (kind: a RERR_ kind, or -1: lost or
 * connect, by whether it was connected); why: what happened, for the log
 */

static void
ngx_http_cache_guard_redis_lost(void *data, ngx_uint_t kind, const char *why)
{
    ngx_http_cache_guard_redis_t  *rd = data;

    if (rd->conn.c == NULL) {
        return;
    }

    if (kind == (ngx_uint_t) -1) {
        kind = rd->conn.connected ? NGX_HTTP_CACHE_GUARD_RERR_LOST
                                  : NGX_HTTP_CACHE_GUARD_RERR_CONNECT;
    }

    ngx_http_cache_guard_redis_count(rd, kind);

    if (kind == NGX_HTTP_CACHE_GUARD_RERR_OVERSIZE) {
        ngx_http_cache_guard_redis_error(rd,
                            "cache guard: redis \"%V\" sent a reply over "
                            "%uz bytes, connection dropped",
                            &rd->addr_text, rd->max_reply);

    } else if (rd->conn.connected) {
        ngx_http_cache_guard_redis_error(rd,
                            "cache guard: redis \"%V\" connection lost: %s",
                            &rd->addr_text, why);

    } else {
        ngx_http_cache_guard_redis_error(rd,
                            "cache guard: redis \"%V\" connect failed: %s",
                            &rd->addr_text, why);
    }

    ngx_http_cache_guard_redis_backoff(rd);
    ngx_http_cache_guard_redis_close(rd);
}


static void
ngx_http_cache_guard_redis_ready(ngx_http_cache_guard_redis_t *rd)
{
    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, rd->log, 0,
                   "cache guard: redis \"%V\" ready", &rd->addr_text);

    if (rd->connect_timer.timer_set) {
        ngx_del_timer(&rd->connect_timer);
    }
}


/* the connect completed: without a handshake, it is ready */

static void
ngx_http_cache_guard_redis_up(void *data)
{
    ngx_http_cache_guard_redis_t  *rd = data;

    if (rd->password.len == 0 && rd->db == 0) {
        ngx_http_cache_guard_redis_ready(rd);
    }
}


/* CMD (EVAL or EVALSHA) SCRIPT 1 KEY ARGS...: a script on one key */

ngx_http_cache_guard_redis_cmd_t *
ngx_http_cache_guard_redis_script(ngx_http_cache_guard_redis_t *rd,
    const char *cmd, ngx_str_t *script, ngx_str_t *key, ngx_uint_t nargs,
    ngx_str_t *args, ngx_http_cache_guard_redis_pt handler, void *data)
{
    size_t       argvlen[4 + NGX_HTTP_CACHE_GUARD_SCRIPT_ARGS];
    ngx_uint_t   i;
    const char  *argv[4 + NGX_HTTP_CACHE_GUARD_SCRIPT_ARGS];

    if (nargs > NGX_HTTP_CACHE_GUARD_SCRIPT_ARGS) {
        return NULL;
    }

    argv[0] = cmd;
    argvlen[0] = ngx_strlen(cmd);
    argv[1] = (const char *) script->data;
    argvlen[1] = script->len;
    argv[2] = "1";
    argvlen[2] = 1;
    argv[3] = (const char *) key->data;
    argvlen[3] = key->len;

    for (i = 0; i < nargs; i++) {
        argv[4 + i] = (const char *) args[i].data;
        argvlen[4 + i] = args[i].len;
    }

    return ngx_http_cache_guard_redis_command(rd, handler, data, 4 + nargs,
                                              argv, argvlen);
}


ngx_http_cache_guard_redis_t *
ngx_http_cache_guard_redis_clone(ngx_http_cache_guard_redis_t *rd,
    ngx_log_t *log)
{
    ngx_http_cache_guard_redis_t  *copy;

    copy = ngx_calloc(sizeof(ngx_http_cache_guard_redis_t), log);
    if (copy == NULL) {
        return NULL;
    }

    /* the configuration: the fields before the per-worker state */

    ngx_memcpy(copy, rd, offsetof(ngx_http_cache_guard_redis_t, conn));

    return copy;
}


void
ngx_http_cache_guard_redis_error(ngx_http_cache_guard_redis_t *rd,
    const char *fmt, ...)
{
    u_char   *p, buf[NGX_MAX_ERROR_STR];
    va_list   args;

    va_start(args, fmt);
    p = ngx_vslprintf(buf, buf + sizeof(buf), fmt, args);
    va_end(args);

    /* an unreachable backend must not flood the error log */

    ngx_http_cache_guard_log_limited(&rd->log_limit,
                                     NGX_HTTP_CACHE_GUARD_REDIS_LOG_INTERVAL,
                                     NGX_LOG_ERR, rd->log, "%*s",
                                     (size_t) (p - buf), buf);
}


static void
ngx_http_cache_guard_redis_handshake_done(ngx_http_cache_guard_redis_t *rd,
    redisReply *reply, const char *name)
{
    if (reply->type != REDIS_REPLY_STATUS
        || reply->len != 2
        || ngx_strncmp(reply->str, "OK", 2) != 0)
    {
        ngx_http_cache_guard_redis_error(rd,
                            "cache guard: redis \"%V\" %s failed: %*s",
                            &rd->addr_text, name,
                            (size_t) ngx_min(reply->len, 256),
                            reply->str ? reply->str : "");

        ngx_http_cache_guard_redis_backoff(rd);
        ngx_http_cache_guard_redis_close(rd);
        return;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, rd->log, 0,
                   "cache guard: redis \"%V\" %s ok", &rd->addr_text, name);

    rd->backoff = NGX_HTTP_CACHE_GUARD_REDIS_BACKOFF_MIN;

    /* SELECT, when sent, is the last step of the handshake */

    if (name == ngx_http_cache_guard_redis_select || rd->db == 0) {
        ngx_http_cache_guard_redis_ready(rd);
    }
}


/* a reply, or NULL when the connection ends, for a command of the queue */

static void
ngx_http_cache_guard_redis_reply(ngx_http_cache_guard_redis_t *rd,
    ngx_http_cache_guard_redis_cmd_t *cmd, redisReply *reply)
{
    ngx_uint_t  unwell;

    if (cmd->timer.timer_set) {
        ngx_del_timer(&cmd->timer);
    }

    if (cmd->persistent && cmd->confirmed && reply) {
        /* a message on a subscription: it stays */

        if (cmd->handler) {
            cmd->handler(reply, cmd->data);
        }

        return;
    }

    if (!(cmd->persistent && cmd->confirmed)) {
        rd->pending--;
    }

    if (cmd->persistent && reply) {
        /* the subscription is confirmed; it stays at the queue's head */

        cmd->confirmed = 1;

        ngx_http_cache_guard_breaker_record(rd->rec, &rd->breaker,
                                ngx_http_cache_guard_resp_unhealthy(reply),
                                rd->log);

        if (cmd->handler) {
            cmd->handler(reply, cmd->data);
        }

        return;
    }

    /*
     * any reply proves the backend healthy, a TCP connect alone does not:
     * a stopped server still completes handshakes from its listen queue
     */

    if (reply) {
        rd->backoff = NGX_HTTP_CACHE_GUARD_REDIS_BACKOFF_MIN;
    }

    if (!rd->exiting) {
        unwell = (reply && ngx_http_cache_guard_resp_unhealthy(reply));

        if (unwell) {
            ngx_http_cache_guard_redis_count(rd,
                                             NGX_HTTP_CACHE_GUARD_RERR_REPLY);
        }

        ngx_http_cache_guard_breaker_record(rd->rec, &rd->breaker,
                                            reply == NULL || unwell, rd->log);

        if (rd->rec) {
            ngx_http_cache_guard_histogram_add(&rd->rec->m.redis_duration,
                                   ngx_http_cache_guard_usec() - cmd->start_us);
        }
    }

    ngx_log_debug4(NGX_LOG_DEBUG_HTTP, rd->log, 0,
                   "cache guard: redis \"%V\" reply type:%d, pending:%ui%s",
                   &rd->addr_text, reply ? reply->type : 0, rd->pending,
                   cmd->handler ? "" : ", cancelled");

    if (cmd->handler) {
        cmd->handler(reply, cmd->data);
    }

    ngx_http_cache_guard_redis_cmd_free(rd, cmd);
}


/* a reply read: it belongs to the queue's head */

static void
ngx_http_cache_guard_redis_dispatch(void *data, redisReply *reply)
{
    ngx_http_cache_guard_redis_t  *rd = data;

    ngx_http_cache_guard_redis_cmd_t  *cmd;

    cmd = rd->head;

    if (cmd == NULL) {
        /* nothing asked: a server that talks out of turn is dropped */
        ngx_http_cache_guard_redis_lost(rd, NGX_HTTP_CACHE_GUARD_RERR_PROTOCOL,
                                        "a reply nothing asked for");
        return;
    }

    /* a subscription stays at the head: every message is its own */

    if (!cmd->persistent) {
        rd->head = cmd->next;

        if (rd->head == NULL) {
            rd->tail = NULL;
        }

        cmd->next = NULL;
    }

    if (cmd->handshake) {
        ngx_http_cache_guard_redis_handshake_done(rd, reply, cmd->data);
        ngx_http_cache_guard_redis_cmd_free(rd, cmd);
        return;
    }

    ngx_http_cache_guard_redis_reply(rd, cmd, reply);
}


/*
 * SUBSCRIBE on a connection of its own: the handler gets the confirmation,
 * then every message, then NULL when the connection ends.
 */

ngx_http_cache_guard_redis_cmd_t *
ngx_http_cache_guard_redis_subscribe(ngx_http_cache_guard_redis_t *rd,
    ngx_http_cache_guard_redis_pt handler, void *data, ngx_str_t *channel)
{
    size_t                             argvlen[2];
    const char                        *argv[2];
    ngx_http_cache_guard_redis_cmd_t  *cmd;

    argv[0] = "SUBSCRIBE";
    argvlen[0] = 9;
    argv[1] = (const char *) channel->data;
    argvlen[1] = channel->len;

    cmd = ngx_http_cache_guard_redis_command(rd, handler, data, 2, argv,
                                             argvlen);
    if (cmd) {
        cmd->persistent = 1;
    }

    return cmd;
}


static void
ngx_http_cache_guard_redis_cmd_timeout(ngx_event_t *ev)
{
    ngx_http_cache_guard_redis_cmd_t *cmd = ev->data;

    ngx_http_cache_guard_redis_t  *rd;

    rd = cmd->redis;

    ngx_http_cache_guard_redis_count(rd, NGX_HTTP_CACHE_GUARD_RERR_TIMEOUT);
    ngx_http_cache_guard_redis_error(rd,
                                     "cache guard: redis \"%V\" timed out",
                                     &rd->addr_text);

    /* an unanswered command stalls the pipeline: drop the connection */

    ngx_http_cache_guard_redis_backoff(rd);
    ngx_http_cache_guard_redis_close(rd);
}


static void
ngx_http_cache_guard_redis_connect_timeout(ngx_event_t *ev)
{
    ngx_http_cache_guard_redis_t *rd = ev->data;

    ngx_http_cache_guard_redis_count(rd, NGX_HTTP_CACHE_GUARD_RERR_CONNECT);
    ngx_http_cache_guard_redis_error(rd,
                                     "cache guard: redis \"%V\" connect "
                                     "timed out", &rd->addr_text);

    ngx_http_cache_guard_redis_backoff(rd);
    ngx_http_cache_guard_redis_close(rd);
}


static void
ngx_http_cache_guard_redis_backoff_expired(ngx_event_t *ev)
{
    ngx_http_cache_guard_redis_t *rd = ev->data;

    /* connect ahead of the next command, unless a command already did */

    if (rd->conn.c == NULL && !ngx_exiting && !rd->lazy
        && ngx_http_cache_guard_breaker_state(rd->rec, &rd->breaker)
           == NGX_HTTP_CACHE_GUARD_CLOSED)
    {
        (void) ngx_http_cache_guard_redis_connect(rd);
    }
}





