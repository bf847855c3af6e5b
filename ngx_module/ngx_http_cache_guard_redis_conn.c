
/*
 * Copyright (C) nginx-cache-guard authors
 *
 * One connection to a Redis server, owned by nginx: made with
 * ngx_event_connect_peer (a name was resolved when nginx read its
 * configuration: a worker never blocks), edge-triggered, read until
 * EAGAIN with a budget per wake; the bytes of the commands sent in order,
 * and the replies parsed by hiredis' reader alone, within the reply
 * budget of resp.c.  What the replies mean is the owner's (redis.c).
 */


#include "ngx_http_cache_guard_redis_conn.h"
#include "ngx_http_cache_guard_resp.h"
#include "ngx_http_cache_guard_stats.h"

#include <netinet/tcp.h>


/*
 * Whether the connection is still the one a handler started with: a
 * callback may close it, and a reconnect in the same call may get the same
 * struct back (nginx reuses the last freed), with another number.
 */
#define ngx_http_cache_guard_redis_conn_same(rc, c, n)                       \
    ((rc)->c == (c) && (c)->number == (n))


/* read per wake before the other connections get their turn */
#define NGX_HTTP_CACHE_GUARD_REDIS_READ_BUDGET   65536
#define NGX_HTTP_CACHE_GUARD_REDIS_BUF           16384
/* a send buffer larger than this is freed once empty */
#define NGX_HTTP_CACHE_GUARD_REDIS_SBUF_KEEP     65536


static void ngx_http_cache_guard_redis_conn_keepalive(ngx_socket_t fd);
static void ngx_http_cache_guard_redis_conn_read(ngx_event_t *rev);
static ngx_int_t ngx_http_cache_guard_redis_conn_parse(
    ngx_http_cache_guard_redis_conn_t *rc, ngx_connection_t *c);
static void ngx_http_cache_guard_redis_conn_write(ngx_event_t *wev);
static void ngx_http_cache_guard_redis_conn_drained(
    ngx_http_cache_guard_redis_conn_t *rc);


ngx_int_t
ngx_http_cache_guard_redis_conn_open(ngx_http_cache_guard_redis_conn_t *rc,
    const char **why)
{
    ngx_err_t               err;
    ngx_int_t               rv;
    ngx_log_t               quiet;
    ngx_connection_t       *c;
    ngx_peer_connection_t   pc;

    ngx_memzero(&pc, sizeof(ngx_peer_connection_t));

    /*
     * nginx logs a refused connect itself, at each try: the owner's
     * message is the one logged, and rate-limited
     */

    quiet = *rc->log;
    quiet.log_level = NGX_LOG_EMERG;

    pc.sockaddr = rc->peer->sockaddr;
    pc.socklen = rc->peer->socklen;
    pc.name = rc->name;
    pc.get = ngx_event_get_peer;
    pc.log = &quiet;
    pc.log_error = NGX_ERROR_INFO;

    rv = ngx_event_connect_peer(&pc);
    err = ngx_socket_errno;

    if (rv == NGX_ERROR || rv == NGX_BUSY || rv == NGX_DECLINED) {
        *why = (rv == NGX_DECLINED) ? strerror(err) : "no socket";

        if (pc.connection) {
            pc.connection->log = rc->log;
            ngx_close_connection(pc.connection);
        }

        return NGX_ERROR;
    }

    c = pc.connection;

    rc->reader = redisReaderCreate();
    if (rc->reader == NULL) {
        c->log = rc->log;
        ngx_close_connection(c);
        *why = "out of memory";
        return NGX_ERROR;
    }

    rc->budget.max = rc->max_reply;
    ngx_http_cache_guard_resp_reader(rc->reader, &rc->budget);

    /* a connection that only listens learns of a dead peer this way */

    if (rc->keepalive && rc->peer->sockaddr->sa_family != AF_UNIX) {
        ngx_http_cache_guard_redis_conn_keepalive(c->fd);
    }

    /* recv() and send() errors are the owner's to log, rate-limited */

    c->data = rc;
    c->log = rc->log;
    c->log_error = NGX_ERROR_INFO;
    c->read->log = rc->log;
    c->write->log = rc->log;
    c->read->handler = ngx_http_cache_guard_redis_conn_read;
    c->write->handler = ngx_http_cache_guard_redis_conn_write;

    /*
     * commands are small and pipelined: one must not wait (Nagle) for
     * the ACK of the one before, which a server that has not answered yet
     * delays; hiredis set it too (a unix socket: nothing to do)
     */

    (void) ngx_tcp_nodelay(c);

    rc->c = c;
    rc->connected = 0;
    rc->spos = 0;
    rc->slast = 0;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, rc->log, 0,
                   "cache guard: redis \"%V\" connecting, fd:%d",
                   rc->name, c->fd);

    if (rv == NGX_OK) {
        /* a unix socket, or a loopback connect done at once */
        ngx_post_event(c->write, &ngx_posted_events);
    }

    return NGX_OK;
}


static void
ngx_http_cache_guard_redis_conn_keepalive(ngx_socket_t fd)
{
    int  on, idle, interval, count;

    on = 1;
    idle = 15;
    interval = 5;
    count = 3;

    (void) setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, (const void *) &on,
                      sizeof(int));
#ifdef TCP_KEEPIDLE
    (void) setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, (const void *) &idle,
                      sizeof(int));
    (void) setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL,
                      (const void *) &interval, sizeof(int));
    (void) setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, (const void *) &count,
                      sizeof(int));
#endif
}


/*
 * The command in RESP at the end of the bytes to send; the write is
 * posted, so that it happens after the caller returns, with the other
 * commands of this turn.
 */

ngx_int_t
ngx_http_cache_guard_redis_conn_send(ngx_http_cache_guard_redis_conn_t *rc,
    int argc, const char **argv, const size_t *argvlen)
{
    size_t  len;

    /* what a short write left goes to the start first */

    if (rc->spos == rc->slast) {
        rc->spos = 0;
        rc->slast = 0;

    } else if (rc->spos) {
        ngx_memmove(rc->sbuf, rc->sbuf + rc->spos, rc->slast - rc->spos);
        rc->slast -= rc->spos;
        rc->spos = 0;
    }

    len = ngx_http_cache_guard_resp_format(&rc->sbuf, &rc->ssize, rc->slast,
                                          rc->log, argc, argv, argvlen);
    if (len == 0) {
        return NGX_ERROR;
    }

    rc->slast += len;

    if (rc->connected && !rc->c->write->posted) {
        ngx_post_event(rc->c->write, &ngx_posted_events);
    }

    return NGX_OK;
}


void
ngx_http_cache_guard_redis_conn_close(ngx_http_cache_guard_redis_conn_t *rc)
{
    ngx_connection_t  *c;

    c = rc->c;

    rc->c = NULL;
    rc->connected = 0;

    ngx_http_cache_guard_redis_conn_drained(rc);

    if (rc->reader) {
        redisReaderFree(rc->reader);
        rc->reader = NULL;
    }

    if (c) {
        ngx_close_connection(c);
    }
}


void
ngx_http_cache_guard_redis_conn_free(ngx_http_cache_guard_redis_conn_t *rc)
{
    ngx_http_cache_guard_redis_conn_close(rc);

    if (rc->sbuf) {
        ngx_free(rc->sbuf);
        rc->sbuf = NULL;
        rc->ssize = 0;
    }
}


/*
 * Edge-triggered: read until EAGAIN, or until the budget of a wake is
 * spent (then the read goes on in the next turn of the event loop, after
 * the other connections and the timers).
 */

static void
ngx_http_cache_guard_redis_conn_read(ngx_event_t *rev)
{
    ngx_connection_t  *c = rev->data;

    size_t                              total;
    ssize_t                             n;
    ngx_atomic_uint_t                   number;
    ngx_http_cache_guard_redis_conn_t  *rc;
    u_char                              buf[NGX_HTTP_CACHE_GUARD_REDIS_BUF];

    rc = c->data;
    number = c->number;

    if (!rc->connected) {
        /* a refused or reset connect shows here first */
        ngx_http_cache_guard_redis_conn_write(c->write);

        if (!ngx_http_cache_guard_redis_conn_same(rc, c, number)
            || !rc->connected)
        {
            return;
        }
    }

    for (total = 0; total < NGX_HTTP_CACHE_GUARD_REDIS_READ_BUDGET;
         total += n)
    {
        n = c->recv(c, buf, sizeof(buf));

        if (n == NGX_AGAIN) {
            if (ngx_handle_read_event(rev, 0) != NGX_OK) {
                rc->lost(rc->data, (ngx_uint_t) -1, "no read event");
            }

            return;
        }

        if (n == 0) {
            rc->lost(rc->data, (ngx_uint_t) -1,
                     "Server closed the connection");
            return;
        }

        if (n == NGX_ERROR) {
            rc->lost(rc->data, (ngx_uint_t) -1, "read error");
            return;
        }

        if (redisReaderFeed(rc->reader, (const char *) buf, n) != REDIS_OK) {
            rc->lost(rc->data, (ngx_uint_t) -1, "out of memory");
            return;
        }

        if (ngx_http_cache_guard_redis_conn_parse(rc, c) != NGX_OK) {
            return;
        }
    }

    /* the budget is spent: the rest in the next turn, after the others */

    ngx_post_event(rev, &ngx_posted_next_events);
}


/* NGX_OK: go on reading; NGX_DONE: the connection is gone */

static ngx_int_t
ngx_http_cache_guard_redis_conn_parse(ngx_http_cache_guard_redis_conn_t *rc,
    ngx_connection_t *c)
{
    void               *reply;
    redisReader        *reader;
    ngx_atomic_uint_t   number;

    number = c->number;

    for ( ;; ) {
        reader = rc->reader;

        if (redisReaderGetReply(reader, &reply) != REDIS_OK) {

            /* REDIS_ERR_OOM: our reply budget said no */

            rc->lost(rc->data,
                     reader->err == REDIS_ERR_OOM
                     ? NGX_HTTP_CACHE_GUARD_RERR_OVERSIZE
                     : NGX_HTTP_CACHE_GUARD_RERR_PROTOCOL,
                     reader->errstr);
            return NGX_DONE;
        }

        if (reply == NULL) {
            break;
        }

        rc->reply(rc->data, reply);

        freeReplyObject(reply);

        if (!ngx_http_cache_guard_redis_conn_same(rc, c, number)) {
            return NGX_DONE;
        }
    }

    /*
     * what is left unparsed is one reply still arriving: a bulk string
     * longer than any entry is not buffered to its end
     */

    if (reader->len - reader->pos > rc->max_reply + 4096) {
        rc->lost(rc->data, NGX_HTTP_CACHE_GUARD_RERR_OVERSIZE, "too long");
        return NGX_DONE;
    }

    return NGX_OK;
}


static void
ngx_http_cache_guard_redis_conn_write(ngx_event_t *wev)
{
    ngx_connection_t  *c = wev->data;

    int                                 err;
    ssize_t                             n;
    socklen_t                           len;
    ngx_atomic_uint_t                   number;
    ngx_http_cache_guard_redis_conn_t  *rc;

    rc = c->data;
    number = c->number;

    if (!rc->connected) {
        err = 0;
        len = sizeof(int);

        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, (void *) &err, &len)
            == -1)
        {
            err = ngx_socket_errno;
        }

        if (err) {
            rc->lost(rc->data, NGX_HTTP_CACHE_GUARD_RERR_CONNECT,
                     strerror(err));
            return;
        }

        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, rc->log, 0,
                       "cache guard: redis \"%V\" connected", rc->name);

        rc->connected = 1;
        rc->up(rc->data);

        if (!ngx_http_cache_guard_redis_conn_same(rc, c, number)) {
            return;
        }
    }

    while (rc->spos < rc->slast) {
        n = c->send(c, rc->sbuf + rc->spos, rc->slast - rc->spos);

        if (n == NGX_AGAIN) {
            if (ngx_handle_write_event(wev, 0) != NGX_OK) {
                rc->lost(rc->data, (ngx_uint_t) -1, "no write event");
            }

            return;
        }

        if (n == NGX_ERROR) {
            rc->lost(rc->data, (ngx_uint_t) -1, "write error");
            return;
        }

        rc->spos += n;
    }

    ngx_http_cache_guard_redis_conn_drained(rc);
}


/* nothing left to send: a buffer grown by a burst is not kept */

static void
ngx_http_cache_guard_redis_conn_drained(ngx_http_cache_guard_redis_conn_t *rc)
{
    rc->spos = 0;
    rc->slast = 0;

    if (rc->ssize > NGX_HTTP_CACHE_GUARD_REDIS_SBUF_KEEP) {
        ngx_free(rc->sbuf);
        rc->sbuf = NULL;
        rc->ssize = 0;
    }
}
