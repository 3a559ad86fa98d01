
/*
 * Copyright (C) ngx_http_events_module authors
 */


#ifndef _NGX_HTTP_EVENTS_QUERY_H_INCLUDED_
#define _NGX_HTTP_EVENTS_QUERY_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_events_store.h"
#include "ngx_http_events_json.h"


#define NGX_HTTP_EVENTS_MAX_PATTERNS    32
#define NGX_HTTP_EVENTS_MAX_LIMIT       1000
#define NGX_HTTP_EVENTS_DEFAULT_LIMIT   25


#define NGX_HTTP_EVENTS_QUERY_LIST      1
#define NGX_HTTP_EVENTS_QUERY_STREAM    2


ngx_int_t ngx_http_events_query_parse(ngx_str_t *args, ngx_uint_t mode,
    ngx_http_events_cursor_key_t *key, ngx_pool_t *pool,
    ngx_http_events_query_t *q, ngx_http_events_error_t *err);


#endif /* _NGX_HTTP_EVENTS_QUERY_H_INCLUDED_ */
