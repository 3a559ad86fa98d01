
/*
 * Copyright (C) ngx_http_events_module authors
 */


#ifndef _NGX_HTTP_EVENTS_MODULE_H_INCLUDED_
#define _NGX_HTTP_EVENTS_MODULE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


#define NGX_HTTP_EVENTS_MAX_BATCH       1000
#define NGX_HTTP_EVENTS_MAX_TENANT      64


typedef struct ngx_http_events_ipc_s  ngx_http_events_ipc_t;


typedef struct {
    ngx_array_t                 zones;          /* ngx_shm_zone_t * */
    ngx_msec_t                  retention;
    ngx_http_events_ipc_t      *ipc;            /* this process's */
} ngx_http_events_main_conf_t;


typedef struct {
    ngx_shm_zone_t             *api_zone;
    ngx_shm_zone_t             *status_zone;
    ngx_shm_zone_t             *stream_zone;

    ngx_http_complex_value_t   *tenant;
    ngx_http_complex_value_t   *source;

    size_t                      max_event_size;
    size_t                      max_body_size;
    ngx_uint_t                  scan_limit;

    ngx_msec_t                  heartbeat;
    ngx_msec_t                  stream_retry;
    ngx_msec_t                  stream_max_lifetime;
    size_t                      stream_max_buffer;
    ngx_uint_t                  stream_max_subscribers;
    ngx_flag_t                  stream_event_field;

    ngx_str_t                   prefix;
} ngx_http_events_loc_conf_t;


ngx_int_t ngx_http_events_get_tenant(ngx_http_request_t *r, ngx_str_t *tenant);


extern ngx_module_t  ngx_http_events_module;


#endif /* _NGX_HTTP_EVENTS_MODULE_H_INCLUDED_ */
