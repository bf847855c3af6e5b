
/*
 * Copyright (C) nginx-cache-guard authors
 *
 * The Redis client: one hiredis asynchronous context per worker, driven by
 * nginx's event loop, with per-command time-outs and a reconnect backoff.
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
    ngx_http_cache_guard_redis_t *rd, redisAsyncContext *ac);
static void ngx_http_cache_guard_redis_close(ngx_http_cache_guard_redis_t *rd);
static void ngx_http_cache_guard_redis_backoff(
    ngx_http_cache_guard_redis_t *rd);
static void ngx_http_cache_guard_redis_lost(ngx_http_cache_guard_redis_t *rd,
    redisAsyncContext *ac);
static void ngx_http_cache_guard_redis_ready(ngx_http_cache_guard_redis_t *rd);
static void ngx_http_cache_guard_redis_connected(const redisAsyncContext *ac,
    int status);
static void ngx_http_cache_guard_redis_handshake_done(redisAsyncContext *ac,
    void *r, void *privdata);
static void ngx_http_cache_guard_redis_reply(redisAsyncContext *ac, void *r,
    void *privdata);
static void ngx_http_cache_guard_redis_cmd_timeout(ngx_event_t *ev);
static void ngx_http_cache_guard_redis_connect_timeout(ngx_event_t *ev);
static void ngx_http_cache_guard_redis_backoff_expired(ngx_event_t *ev);
static void ngx_http_cache_guard_redis_read_handler(ngx_event_t *rev);
static void ngx_http_cache_guard_redis_write_handler(ngx_event_t *wev);
static void ngx_http_cache_guard_redis_event(ngx_event_t *ev, ngx_int_t event,
    ngx_uint_t add);
static void ngx_http_cache_guard_redis_add_read(void *privdata);
static void ngx_http_cache_guard_redis_del_read(void *privdata);
static void ngx_http_cache_guard_redis_add_write(void *privdata);
static void ngx_http_cache_guard_redis_del_write(void *privdata);
static void ngx_http_cache_guard_redis_cleanup(void *privdata);


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

    if (rd->ac) {
        ngx_http_cache_guard_redis_close(rd);
    }

    if (rd->backoff_timer.timer_set) {
        ngx_del_timer(&rd->backoff_timer);
    }

    if (rd->out) {
        ngx_free(rd->out);
        rd->out = NULL;
        rd->out_size = 0;
    }

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
    size_t                             len;
    ngx_int_t                          rc;
    ngx_http_cache_guard_redis_cmd_t  *cmd;

    if (rd->exiting) {
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

    if (rd->ac == NULL) {

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

    cmd = rd->free;

    if (cmd) {
        rd->free = cmd->next;

    } else {
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
    }

    cmd->handler = handler;
    cmd->data = data;

    len = ngx_http_cache_guard_resp_format(&rd->out, &rd->out_size, rd->log,
                                          argc, argv, argvlen);

    if (len == 0
        || redisAsyncFormattedCommand(rd->ac, ngx_http_cache_guard_redis_reply,
                                      cmd, (const char *) rd->out, len)
           != REDIS_OK)
    {
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, rd->log, 0,
                       "cache guard: redis \"%V\" refused a command",
                       &rd->addr_text);

        cmd->handler = NULL;
        cmd->data = NULL;
        cmd->next = rd->free;
        rd->free = cmd;

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
    /* the struct goes back to the free list when hiredis is done with it */

    cmd->handler = NULL;
    cmd->data = NULL;
}


static ngx_int_t
ngx_http_cache_guard_redis_connect(ngx_http_cache_guard_redis_t *rd)
{
    ngx_connection_t   *c;
    redisAsyncContext  *ac;

    if (rd->unix_path.len) {
        ac = redisAsyncConnectUnix((const char *) rd->unix_path.data);

    } else {
        ac = redisAsyncConnect((const char *) rd->host.data, rd->port);
    }

    if (ac == NULL) {
        ngx_http_cache_guard_redis_error(rd,
                            "cache guard: redis \"%V\" connect failed: "
                            "out of memory", &rd->addr_text);
        ngx_http_cache_guard_redis_backoff(rd);
        return NGX_ERROR;
    }

    if (ac->err) {
        ngx_http_cache_guard_redis_count(rd, NGX_HTTP_CACHE_GUARD_RERR_CONNECT);
        ngx_http_cache_guard_redis_error(rd,
                            "cache guard: redis \"%V\" connect failed: %s",
                            &rd->addr_text, ac->errstr);
        redisAsyncFree(ac);
        ngx_http_cache_guard_redis_backoff(rd);
        return NGX_ERROR;
    }

    /* a connection that only listens learns of a dead peer this way */

    if (rd->lazy && rd->unix_path.len == 0) {
        (void) redisEnableKeepAlive(&ac->c);
    }

    c = ngx_get_connection(ac->c.fd, rd->log);
    if (c == NULL) {
        redisAsyncFree(ac);
        ngx_http_cache_guard_redis_backoff(rd);
        return NGX_ERROR;
    }

    /* ngx_close_connection() is never used: hiredis owns the socket */

    c->data = ac;
    c->type = SOCK_STREAM;
    c->log = rd->log;
    c->read->log = rd->log;
    c->write->log = rd->log;
    c->read->handler = ngx_http_cache_guard_redis_read_handler;
    c->write->handler = ngx_http_cache_guard_redis_write_handler;

    ngx_http_cache_guard_resp_reader(ac->c.reader, rd->max_reply);

    ac->data = rd;
    ac->ev.data = c;
    ac->ev.addRead = ngx_http_cache_guard_redis_add_read;
    ac->ev.delRead = ngx_http_cache_guard_redis_del_read;
    ac->ev.addWrite = ngx_http_cache_guard_redis_add_write;
    ac->ev.delWrite = ngx_http_cache_guard_redis_del_write;
    ac->ev.cleanup = ngx_http_cache_guard_redis_cleanup;

    rd->ac = ac;
    rd->conn = c;
    rd->connected = 0;

    /*
     * every end of a context, failed connects included, goes through the
     * cleanup hook, so no disconnect callback is needed
     */

    (void) redisAsyncSetConnectCallback(ac,
                                        ngx_http_cache_guard_redis_connected);

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, rd->log, 0,
                   "cache guard: redis \"%V\" connecting, fd:%d backoff:%M",
                   &rd->addr_text, c->fd, rd->backoff);

    if (ngx_http_cache_guard_redis_handshake(rd, ac) != NGX_OK) {
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
ngx_http_cache_guard_redis_handshake(ngx_http_cache_guard_redis_t *rd,
    redisAsyncContext *ac)
{
    int          argc;
    u_char       db[NGX_INT_T_LEN];
    size_t       argvlen[3];
    const char  *argv[3];

    /* hiredis buffers these until connected; they go before any command */

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

        if (redisAsyncCommandArgv(ac, ngx_http_cache_guard_redis_handshake_done,
                                  (void *) ngx_http_cache_guard_redis_auth,
                                  argc, argv, argvlen)
            != REDIS_OK)
        {
            return NGX_ERROR;
        }
    }

    if (rd->db) {
        argv[0] = ngx_http_cache_guard_redis_select;
        argvlen[0] = sizeof(ngx_http_cache_guard_redis_select) - 1;
        argv[1] = (const char *) db;
        argvlen[1] = ngx_sprintf(db, "%i", rd->db) - db;

        if (redisAsyncCommandArgv(ac, ngx_http_cache_guard_redis_handshake_done,
                                  (void *) ngx_http_cache_guard_redis_select,
                                  2, argv, argvlen)
            != REDIS_OK)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static void
ngx_http_cache_guard_redis_close(ngx_http_cache_guard_redis_t *rd)
{
    redisAsyncContext  *ac;

    /*
     * detach first: handlers run inside redisAsyncFree() with NULL replies
     * and must not queue onto the dying context
     */

    ac = rd->ac;
    rd->ac = NULL;
    rd->connected = 0;

    if (rd->connect_timer.timer_set) {
        ngx_del_timer(&rd->connect_timer);
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, rd->log, 0,
                   "cache guard: redis \"%V\" closing", &rd->addr_text);

    redisAsyncFree(ac);
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


static void
ngx_http_cache_guard_redis_lost(ngx_http_cache_guard_redis_t *rd,
    redisAsyncContext *ac)
{
    /* a context that hiredis ends itself: an I/O error or a failed connect */

    if (rd->ac != ac) {
        return;
    }

    rd->ac = NULL;

    if (rd->connect_timer.timer_set) {
        ngx_del_timer(&rd->connect_timer);
    }

    if (ac->c.err == REDIS_ERR_OOM) {
        /* our reply budget said no */
        ngx_http_cache_guard_redis_count(rd,
                                         NGX_HTTP_CACHE_GUARD_RERR_OVERSIZE);

    } else if (ac->c.err == REDIS_ERR_PROTOCOL) {
        ngx_http_cache_guard_redis_count(rd,
                                         NGX_HTTP_CACHE_GUARD_RERR_PROTOCOL);

    } else if (rd->connected) {
        ngx_http_cache_guard_redis_count(rd, NGX_HTTP_CACHE_GUARD_RERR_LOST);

    } else {
        ngx_http_cache_guard_redis_count(rd, NGX_HTTP_CACHE_GUARD_RERR_CONNECT);
    }

    if (ac->c.err == REDIS_ERR_OOM) {
        rd->connected = 0;
        ngx_http_cache_guard_redis_error(rd,
                            "cache guard: redis \"%V\" sent a reply over "
                            "%uz bytes, connection dropped",
                            &rd->addr_text, rd->max_reply);

    } else if (rd->connected) {
        rd->connected = 0;
        ngx_http_cache_guard_redis_error(rd,
                            "cache guard: redis \"%V\" connection lost: %s",
                            &rd->addr_text, ac->c.errstr);

    } else {
        ngx_http_cache_guard_redis_error(rd,
                            "cache guard: redis \"%V\" connect failed: %s",
                            &rd->addr_text, ac->c.errstr);
    }

    ngx_http_cache_guard_redis_backoff(rd);
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

    ngx_memcpy(copy, rd, offsetof(ngx_http_cache_guard_redis_t, ac));

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
ngx_http_cache_guard_redis_connected(const redisAsyncContext *ac, int status)
{
    ngx_http_cache_guard_redis_t  *rd = ac->data;

    /* a failed connect is reported by the cleanup hook */

    if (status != REDIS_OK) {
        return;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, rd->log, 0,
                   "cache guard: redis \"%V\" connected", &rd->addr_text);

    rd->connected = 1;

    if (rd->password.len == 0 && rd->db == 0) {
        ngx_http_cache_guard_redis_ready(rd);
    }
}


static void
ngx_http_cache_guard_redis_handshake_done(redisAsyncContext *ac, void *r,
    void *privdata)
{
    const char                    *name = privdata;
    redisReply                    *reply = r;
    ngx_http_cache_guard_redis_t  *rd = ac->data;

    if (reply == NULL) {
        ngx_http_cache_guard_redis_lost(rd, ac);
        return;
    }

    if (reply->type != REDIS_REPLY_STATUS
        || reply->len != 2
        || ngx_strncmp(reply->str, "OK", 2) != 0)
    {
        ngx_http_cache_guard_redis_error(rd,
                            "cache guard: redis \"%V\" %s failed: %*s",
                            &rd->addr_text, name,
                            (size_t) ngx_min(reply->len, 256),
                            reply->str ? reply->str : "");

        /* hiredis frees the context when this callback returns */

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


static void
ngx_http_cache_guard_redis_reply(redisAsyncContext *ac, void *r,
    void *privdata)
{
    ngx_http_cache_guard_redis_cmd_t *cmd = privdata;

    redisReply                    *reply = r;
    ngx_uint_t                     unwell;
    ngx_http_cache_guard_redis_t  *rd;

    rd = cmd->redis;

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
        /* the subscription is confirmed; its callback stays in hiredis */

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
     * NULL replies come only from a context being freed; any other reply
     * proves the backend healthy, a TCP connect alone does not: a stopped
     * server still completes handshakes from its listen queue
     */

    if (reply == NULL) {
        ngx_http_cache_guard_redis_lost(rd, ac);

    } else {
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

    cmd->handler = NULL;
    cmd->data = NULL;
    cmd->persistent = 0;
    cmd->confirmed = 0;
    cmd->next = rd->free;
    rd->free = cmd;
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

    if (rd->ac == NULL && !ngx_exiting && !rd->lazy
        && ngx_http_cache_guard_breaker_state(rd->rec, &rd->breaker)
           == NGX_HTTP_CACHE_GUARD_CLOSED)
    {
        (void) ngx_http_cache_guard_redis_connect(rd);
    }
}


static void
ngx_http_cache_guard_redis_read_handler(ngx_event_t *rev)
{
    ngx_connection_t  *c = rev->data;

    redisReader                   *reader;
    redisAsyncContext             *ac;
    ngx_http_cache_guard_redis_t  *rd;

    ac = c->data;
    rd = ac->data;

    /* the context and the connection may be gone when this returns */

    redisAsyncHandleRead(ac);

    if (rd->ac != ac) {
        return;
    }

    /*
     * what is left unparsed is one reply still arriving: a bulk string
     * longer than any entry is not buffered to its end
     */

    reader = ac->c.reader;

    if (reader->len - reader->pos > rd->max_reply + 4096) {
        ngx_http_cache_guard_redis_count(rd,
                                         NGX_HTTP_CACHE_GUARD_RERR_OVERSIZE);
        ngx_http_cache_guard_redis_error(rd,
                            "cache guard: redis \"%V\" sent a reply over "
                            "%uz bytes, connection dropped",
                            &rd->addr_text, rd->max_reply);
        ngx_http_cache_guard_redis_backoff(rd);
        ngx_http_cache_guard_redis_close(rd);
    }
}


static void
ngx_http_cache_guard_redis_write_handler(ngx_event_t *wev)
{
    ngx_connection_t  *c = wev->data;

    redisAsyncHandleWrite(c->data);
}


static void
ngx_http_cache_guard_redis_event(ngx_event_t *ev, ngx_int_t event,
    ngx_uint_t add)
{
    /*
     * level-triggered: hiredis reads at most 16 KiB per call and would
     * miss the rest of a large reply with edge-triggered epoll;
     * a failure is logged by the event module and caught by the time-outs
     */

    if (add) {
        if (!ev->active) {
            (void) ngx_add_event(ev, event, NGX_LEVEL_EVENT);
        }

    } else if (ev->active) {
        (void) ngx_del_event(ev, event, 0);
    }
}


static void
ngx_http_cache_guard_redis_add_read(void *privdata)
{
    ngx_connection_t  *c = privdata;

    ngx_http_cache_guard_redis_event(c->read, NGX_READ_EVENT, 1);
}


static void
ngx_http_cache_guard_redis_del_read(void *privdata)
{
    ngx_connection_t  *c = privdata;

    ngx_http_cache_guard_redis_event(c->read, NGX_READ_EVENT, 0);
}


static void
ngx_http_cache_guard_redis_add_write(void *privdata)
{
    ngx_connection_t  *c = privdata;

    ngx_http_cache_guard_redis_event(c->write, NGX_WRITE_EVENT, 1);
}


static void
ngx_http_cache_guard_redis_del_write(void *privdata)
{
    ngx_connection_t  *c = privdata;

    ngx_http_cache_guard_redis_event(c->write, NGX_WRITE_EVENT, 0);
}


static void
ngx_http_cache_guard_redis_cleanup(void *privdata)
{
    ngx_connection_t  *c = privdata;

    redisAsyncContext             *ac;
    ngx_http_cache_guard_redis_t  *rd;

    ac = c->data;
    rd = ac->data;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, rd->log, 0,
                   "cache guard: redis \"%V\" context freed, fd:%d",
                   &rd->addr_text, c->fd);

    /* hiredis closes the socket itself right after this hook */

    ngx_http_cache_guard_redis_event(c->read, NGX_READ_EVENT, 0);
    ngx_http_cache_guard_redis_event(c->write, NGX_WRITE_EVENT, 0);

    if (c->read->posted) {
        ngx_delete_posted_event(c->read);
    }

    if (c->write->posted) {
        ngx_delete_posted_event(c->write);
    }

    ngx_free_connection(c);

    /* the exit check for open sockets looks at fd */

    c->fd = (ngx_socket_t) -1;

    if (rd->conn == c) {
        rd->conn = NULL;
    }

    ngx_http_cache_guard_redis_lost(rd, ac);
}

