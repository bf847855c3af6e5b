
/*
 * Copyright (C) nginx-cache-guard authors
 */


/* the $cache_guard_* variables */


#ifndef _NGX_HTTP_CACHE_GUARD_VARIABLES_H_INCLUDED_
#define _NGX_HTTP_CACHE_GUARD_VARIABLES_H_INCLUDED_


#include "ngx_http_cache_guard_types.h"


ngx_int_t ngx_http_cache_guard_add_variables(ngx_conf_t *cf);


#endif /* _NGX_HTTP_CACHE_GUARD_VARIABLES_H_INCLUDED_ */
