
/*
 * Copyright (C) nginx-cache-guard authors
 *
 * The Redis wire format: commands written in RESP, and replies read
 * within a budget.  Replies are untrusted: hiredis' own reply objects,
 * built within a budget per reply, so that a broken or hostile server
 * cannot make a worker allocate without bound (a huge array count,
 * endless elements).
 */


#include "ngx_http_cache_guard_resp.h"


static u_char *ngx_http_cache_guard_resp_number(u_char *p, u_char type,
    size_t n);
static ngx_int_t ngx_http_cache_guard_resp_spend(const redisReadTask *task,
    size_t bytes);
static void *ngx_http_cache_guard_resp_string(const redisReadTask *task,
    char *str, size_t len);
static void *ngx_http_cache_guard_resp_array(const redisReadTask *task,
    int elements);
static void *ngx_http_cache_guard_resp_integer(const redisReadTask *task,
    long long value);
static void *ngx_http_cache_guard_resp_nil(const redisReadTask *task);


static redisReplyObjectFunctions  *ngx_http_cache_guard_resp_default_fn;

static redisReplyObjectFunctions  ngx_http_cache_guard_resp_fn = {
    ngx_http_cache_guard_resp_string,
    ngx_http_cache_guard_resp_array,
    ngx_http_cache_guard_resp_integer,
    ngx_http_cache_guard_resp_nil,
    freeReplyObject
};


/* error replies that say the server itself is unwell */

static ngx_str_t  ngx_http_cache_guard_resp_unwell[] = {
    ngx_string("LOADING"),
    ngx_string("BUSY "),
    ngx_string("MASTERDOWN"),
    ngx_string("READONLY"),
    ngx_string("OOM"),
    ngx_string("ERR max number of clients"),
    ngx_string("MISCONF"),
    ngx_string("TRYAGAIN"),
    ngx_string("CLUSTERDOWN"),
    ngx_null_string
};


/*
 * Each reply of this reader is built within budget->max bytes (and some);
 * the budget is the reader's own, so that a reply read in pieces on one
 * connection is not given a fresh budget by another connection's reply.
 */

void
ngx_http_cache_guard_resp_reader(redisReader *reader,
    ngx_http_cache_guard_resp_budget_t *budget)
{
    if (ngx_http_cache_guard_resp_default_fn == NULL) {
        ngx_http_cache_guard_resp_default_fn = reader->fn;
    }

    reader->fn = &ngx_http_cache_guard_resp_fn;
    reader->privdata = budget;
}


/*
 * The command in RESP, appended to the bytes [0, used) of a buffer the
 * caller keeps (grown, its bytes kept, as needed): hiredis' own argv
 * formatting costs more than the rest of an L2 hit's Redis work.
 */

size_t
ngx_http_cache_guard_resp_format(u_char **buf, size_t *size, size_t used,
    ngx_log_t *log, int argc, const char **argv, const size_t *argvlen)
{
    int      i;
    u_char  *p;
    size_t   len;

    len = 1 + NGX_SIZE_T_LEN + 2;

    for (i = 0; i < argc; i++) {
        len += 1 + NGX_SIZE_T_LEN + 2 + argvlen[i] + 2;
    }

    if (used + len > *size) {
        len = ngx_max(ngx_max(used + len, 4096), *size * 2);

        p = ngx_alloc(len, log);
        if (p == NULL) {
            return 0;
        }

        if (*buf) {
            ngx_memcpy(p, *buf, used);
            ngx_free(*buf);
        }

        *buf = p;
        *size = len;
    }

    p = ngx_http_cache_guard_resp_number(*buf + used, '*', argc);

    for (i = 0; i < argc; i++) {
        p = ngx_http_cache_guard_resp_number(p, '$', argvlen[i]);
        p = ngx_cpymem(p, argv[i], argvlen[i]);
        *p++ = CR;
        *p++ = LF;
    }

    return p - (*buf + used);
}


static u_char *
ngx_http_cache_guard_resp_number(u_char *p, u_char type, size_t n)
{
    u_char   digits[NGX_SIZE_T_LEN], *d;

    d = digits + NGX_SIZE_T_LEN;

    do {
        *--d = (u_char) ('0' + n % 10);
        n /= 10;
    } while (n);

    *p++ = type;
    p = ngx_cpymem(p, d, digits + NGX_SIZE_T_LEN - d);
    *p++ = CR;
    *p++ = LF;

    return p;
}


ngx_uint_t
ngx_http_cache_guard_resp_unhealthy(redisReply *reply)
{
    ngx_str_t  *e;

    if (reply->type != REDIS_REPLY_ERROR) {
        return 0;
    }

    for (e = ngx_http_cache_guard_resp_unwell; e->len; e++) {
        if ((size_t) reply->len >= e->len
            && ngx_strncmp(reply->str, e->data, e->len) == 0)
        {
            return 1;
        }
    }

    return 0;
}


/* NGX_OK, or NGX_ERROR when the reply would pass its budget */

static ngx_int_t
ngx_http_cache_guard_resp_spend(const redisReadTask *task, size_t bytes)
{
    ngx_http_cache_guard_resp_budget_t  *budget = task->privdata;

    /* a reply starts with its outermost object */

    if (task->parent == NULL) {
        budget->left = (ssize_t) budget->max + 65536;
    }

    budget->left -= (ssize_t) bytes + 32;

    if (budget->left < 0) {
        /*
         * hiredis takes NULL for no memory: the connection is dropped,
         * and logged as such (REDIS_ERR_OOM)
         */
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void *
ngx_http_cache_guard_resp_string(const redisReadTask *task, char *str,
    size_t len)
{
    if (ngx_http_cache_guard_resp_spend(task, len) != NGX_OK) {
        return NULL;
    }

    return ngx_http_cache_guard_resp_default_fn->createString(task, str,
                                                               len);
}


static void *
ngx_http_cache_guard_resp_array(const redisReadTask *task, int elements)
{
    if (elements < 0
        || ngx_http_cache_guard_resp_spend(task,
                                           (size_t) elements * sizeof(void *))
           != NGX_OK)
    {
        return NULL;
    }

    return ngx_http_cache_guard_resp_default_fn->createArray(task, elements);
}


static void *
ngx_http_cache_guard_resp_integer(const redisReadTask *task, long long value)
{
    if (ngx_http_cache_guard_resp_spend(task, 0) != NGX_OK) {
        return NULL;
    }

    return ngx_http_cache_guard_resp_default_fn->createInteger(task, value);
}


static void *
ngx_http_cache_guard_resp_nil(const redisReadTask *task)
{
    if (ngx_http_cache_guard_resp_spend(task, 0) != NGX_OK) {
        return NULL;
    }

    return ngx_http_cache_guard_resp_default_fn->createNil(task);
}
