
/*
 * Copyright (C) ngx_http_events_module authors
 */


#ifndef _NGX_HTTP_EVENTS_EXPORT_H_INCLUDED_
#define _NGX_HTTP_EVENTS_EXPORT_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_events_store.h"


ngx_uint_t ngx_http_events_export_wanted(ngx_http_request_t *r);
ngx_int_t ngx_http_events_export_start(ngx_http_request_t *r,
    ngx_http_events_store_t *store, ngx_http_events_query_t *q,
    ngx_http_events_window_t *w);
ngx_int_t ngx_http_events_export_init_process(ngx_cycle_t *cycle);


#endif /* _NGX_HTTP_EVENTS_EXPORT_H_INCLUDED_ */
