
/*
 * Copyright (C) ngx_http_events_module authors
 */


#ifndef _NGX_HTTP_EVENTS_WS_H_INCLUDED_
#define _NGX_HTTP_EVENTS_WS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_events_stream.h"


ngx_uint_t ngx_http_events_ws_handshake(ngx_http_request_t *r,
    ngx_uint_t *upgrade, ngx_int_t *rc);


extern ngx_http_events_stream_proto_t  ngx_http_events_ws_proto;


#endif /* _NGX_HTTP_EVENTS_WS_H_INCLUDED_ */
