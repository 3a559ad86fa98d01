
/*
 * Copyright (C) ngx_http_events_module authors
 */


#ifndef _NGX_HTTP_EVENTS_STATUS_H_INCLUDED_
#define _NGX_HTTP_EVENTS_STATUS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_events_types.h"
#include "ngx_http_events_buf.h"


typedef void (*ngx_http_events_status_write_pt)(ngx_http_events_buf_t *b,
    ngx_http_events_store_t *store);


/*
 * a part of the status page a feature owns: "json" writes
 * ',"name":{...}' into the zone's object, "prometheus" its metrics;
 * either writes nothing for a zone the feature does not serve
 */
typedef struct {
    ngx_http_events_status_write_pt  json;
    ngx_http_events_status_write_pt  prometheus;
} ngx_http_events_status_section_t;


ngx_int_t ngx_http_events_status_handler(ngx_http_request_t *r);
ngx_int_t ngx_http_events_status_register(ngx_conf_t *cf,
    ngx_http_events_status_section_t *section);

void ngx_http_events_status_metric(ngx_http_events_buf_t *b,
    ngx_http_events_store_t *store, const char *name, const char *kind,
    const char *help, uint64_t value);
void ngx_http_events_status_help(ngx_http_events_buf_t *b, const char *name,
    const char *kind, const char *help);
void ngx_http_events_status_sample(ngx_http_events_buf_t *b,
    ngx_http_events_store_t *store, const char *name, const char *label,
    ngx_str_t *label_value, uint64_t value, ngx_uint_t milli);


#endif /* _NGX_HTTP_EVENTS_STATUS_H_INCLUDED_ */
