
/*
 * Copyright (C) ngx_http_events_module authors
 */


#ifndef _NGX_HTTP_EVENTS_MATCH_H_INCLUDED_
#define _NGX_HTTP_EVENTS_MATCH_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_events_store.h"


ngx_int_t ngx_http_events_match_type_valid(u_char *p, size_t len);
ngx_int_t ngx_http_events_match_tenant_valid(ngx_str_t *tenant);
ngx_int_t ngx_http_events_match_pattern_valid(u_char *p, size_t len);
ngx_uint_t ngx_http_events_match(ngx_str_t *pattern, ngx_str_t *type);
ngx_uint_t ngx_http_events_match_any(ngx_str_t *patterns, ngx_uint_t n,
    ngx_str_t *type);
ngx_uint_t ngx_http_events_match_pattern_covers(ngx_str_t *big,
    ngx_str_t *small);
ngx_int_t ngx_http_events_match_meta_key_valid(u_char *p, size_t len);
ngx_uint_t ngx_http_events_match_metadata(
    ngx_http_events_meta_filter_t *filters, ngx_uint_t n, u_char *json,
    size_t len);
ngx_int_t ngx_http_events_match_meta_in(u_char *p, u_char *end,
    ngx_str_t *name, ngx_str_t *value);
ngx_int_t ngx_http_events_match_meta_value(u_char *json, size_t len,
    ngx_str_t *name, ngx_str_t *value);


#endif /* _NGX_HTTP_EVENTS_MATCH_H_INCLUDED_ */
