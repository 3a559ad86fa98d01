
/*
 * Copyright (C) ngx_http_events_module authors
 */


#ifndef _NGX_HTTP_EVENTS_CORS_H_INCLUDED_
#define _NGX_HTTP_EVENTS_CORS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


char *ngx_http_events_cors(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
ngx_int_t ngx_http_events_cors_init(ngx_conf_t *cf);
ngx_uint_t ngx_http_events_cors_websocket(ngx_http_request_t *r);


#endif /* _NGX_HTTP_EVENTS_CORS_H_INCLUDED_ */
