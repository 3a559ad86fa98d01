
/*
 * Copyright (C) ngx_http_events_module authors
 */


#ifndef _NGX_HTTP_EVENTS_STREAM_H_INCLUDED_
#define _NGX_HTTP_EVENTS_STREAM_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_events_store.h"


ngx_int_t ngx_http_events_stream_handler(ngx_http_request_t *r);
ngx_int_t ngx_http_events_stream_init_process(ngx_cycle_t *cycle);


#endif /* _NGX_HTTP_EVENTS_STREAM_H_INCLUDED_ */
