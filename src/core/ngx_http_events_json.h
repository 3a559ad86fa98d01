
/*
 * Copyright (C) ngx_http_events_module authors
 */


#ifndef _NGX_HTTP_EVENTS_JSON_H_INCLUDED_
#define _NGX_HTTP_EVENTS_JSON_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <jansson.h>

#include "ngx_http_events_store.h"
#include "ngx_http_events_id.h"
#include "ngx_http_events_error.h"


typedef struct {
    ngx_str_t                   tenant;
    ngx_str_t                   source;         /* default, may be empty */
    ngx_str_t                   prefix;         /* "[3]." in a batch */
    size_t                      max_size;
    ngx_pool_t                 *pool;
    ngx_http_events_id_rng_t   *rng;            /* for ids, may be NULL */

    /* the values' scratch, in pool; zeroed by the caller, kept for a batch */
    u_char                     *scratch;
    u_char                     *scratch_end;
} ngx_http_events_envelope_t;


ngx_int_t ngx_http_events_json_event(ngx_http_events_envelope_t *env,
    json_t *obj, ngx_http_events_event_t *ev, ngx_http_events_error_t *err);

size_t ngx_http_events_json_size(json_t *v);
u_char *ngx_http_events_json_write(u_char *p, json_t *v);
size_t ngx_http_events_json_escape_len(u_char *s, size_t len);
u_char *ngx_http_events_json_escape(u_char *p, u_char *s, size_t len);
size_t ngx_http_events_json_utf8_len(u_char *p, size_t len);

void ngx_http_events_json_cleanup(void *data);

#endif /* _NGX_HTTP_EVENTS_JSON_H_INCLUDED_ */
