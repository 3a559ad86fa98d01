
/*
 * Copyright (C) ngx_http_events_module authors
 */


#ifndef _NGX_HTTP_EVENTS_HTTP_H_INCLUDED_
#define _NGX_HTTP_EVENTS_HTTP_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_events_json.h"
#include "ngx_http_events_buf.h"


/* what a whole body goes to; it returns what finalizes the request */
typedef ngx_int_t (*ngx_http_events_http_body_pt)(ngx_http_request_t *r,
    u_char *data, size_t len);


ngx_int_t ngx_http_events_http_send(ngx_http_request_t *r, ngx_uint_t status,
    ngx_str_t *type, u_char *data, size_t len);
ngx_int_t ngx_http_events_http_send_buf(ngx_http_request_t *r,
    ngx_uint_t status, ngx_str_t *type, ngx_http_events_buf_t *b);
ngx_int_t ngx_http_events_http_send_error(ngx_http_request_t *r,
    ngx_http_events_error_t *err, ngx_str_t *extra);
ngx_int_t ngx_http_events_http_not_allowed(ngx_http_request_t *r,
    char *allow);
ngx_int_t ngx_http_events_http_not_found(ngx_http_request_t *r,
    const char *message);
ngx_int_t ngx_http_events_http_add_header(ngx_http_request_t *r, char *name,
    ngx_str_t *value);
ngx_table_elt_t *ngx_http_events_http_header(ngx_http_request_t *r,
    const char *name);
ngx_int_t ngx_http_events_http_read_body(ngx_http_request_t *r,
    ngx_str_t *body);
ngx_int_t ngx_http_events_http_body(ngx_http_request_t *r, size_t max,
    const char *too_large, ngx_http_events_http_body_pt handler);
ngx_uint_t ngx_http_events_http_is_json(ngx_http_request_t *r);
ngx_int_t ngx_http_events_http_release_header(ngx_http_request_t *r,
    ngx_str_t **strs, ngx_uint_t n);


extern ngx_str_t  ngx_http_events_http_json_type;


#endif /* _NGX_HTTP_EVENTS_HTTP_H_INCLUDED_ */
