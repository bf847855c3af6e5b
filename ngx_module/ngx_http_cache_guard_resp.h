
/*
 * Copyright (C) nginx-cache-guard authors
 */


/* the Redis wire format: RESP commands out, bounded replies in */


#ifndef _NGX_HTTP_CACHE_GUARD_RESP_H_INCLUDED_
#define _NGX_HTTP_CACHE_GUARD_RESP_H_INCLUDED_


#include "ngx_http_cache_guard_types.h"

#include <hiredis/hiredis.h>


/*
 * The command appended to the "used" bytes of *buf (grown as needed, kept
 * by the caller); its length, 0 if out of memory
 */
size_t ngx_http_cache_guard_resp_format(u_char **buf, size_t *size,
    size_t used, ngx_log_t *log, int argc, const char **argv,
    const size_t *argvlen);
/* an error reply that says the server itself is unwell (LOADING, OOM...) */
ngx_uint_t ngx_http_cache_guard_resp_unhealthy(redisReply *reply);
/* what the reply being read may still allocate, per reader */
typedef struct {
    size_t                          max;          /* max_reply */
    ssize_t                         left;
} ngx_http_cache_guard_resp_budget_t;

/* the reader's replies are built within budget->max bytes, or refused */
void ngx_http_cache_guard_resp_reader(redisReader *reader,
    ngx_http_cache_guard_resp_budget_t *budget);


#endif /* _NGX_HTTP_CACHE_GUARD_RESP_H_INCLUDED_ */
