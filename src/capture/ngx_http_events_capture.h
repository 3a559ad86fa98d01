
/*
 * Copyright (C) ngx_http_events_module authors
 */


#ifndef _NGX_HTTP_EVENTS_CAPTURE_H_INCLUDED_
#define _NGX_HTTP_EVENTS_CAPTURE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <jansson.h>

#include "ngx_http_events_types.h"


#define NGX_HTTP_EVENTS_CAPTURE_HEADER  0x01
#define NGX_HTTP_EVENTS_CAPTURE_AUTO    0x02


struct ngx_http_events_capture_conf_s {
    ngx_uint_t                  modes;          /* NGX_CONF_UNSET_UINT */
    ngx_shm_zone_t             *zone;
    ngx_array_t                *resources;      /* resource_t */
    ngx_array_t                *metadata;       /* meta_t */
    size_t                      max_body;
    ngx_str_t                   pre;            /* events_capture_pre */
    ngx_uint_t                  pre_fail_open;  /* NGX_CONF_UNSET_UINT */
};


char *ngx_http_events_capture(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_events_capture_resource(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_events_capture_metadata(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
void ngx_http_events_capture_create_conf(ngx_http_events_capture_conf_t *conf);
char *ngx_http_events_capture_merge_conf(ngx_conf_t *cf,
    ngx_http_events_capture_conf_t *prev,
    ngx_http_events_capture_conf_t *conf);
ngx_int_t ngx_http_events_capture_init(ngx_conf_t *cf);
json_t *ngx_http_events_capture_intent(ngx_http_request_t *r, json_t *data,
    ngx_uint_t *none);


#endif /* _NGX_HTTP_EVENTS_CAPTURE_H_INCLUDED_ */
