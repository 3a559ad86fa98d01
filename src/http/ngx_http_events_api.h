
/*
 * Copyright (C) ngx_http_events_module authors
 */


#ifndef _NGX_HTTP_EVENTS_API_H_INCLUDED_
#define _NGX_HTTP_EVENTS_API_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_events_json.h"


ngx_int_t ngx_http_events_api_handler(ngx_http_request_t *r);
ngx_int_t ngx_http_events_api_hold_json(ngx_http_request_t *r, json_t *v);
ngx_int_t ngx_http_events_api_ingest_json(ngx_http_request_t *r,
    json_t *root);


#endif /* _NGX_HTTP_EVENTS_API_H_INCLUDED_ */
