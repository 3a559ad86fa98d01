
/*
 * Copyright (C) ngx_http_events_module authors
 */


#ifndef _NGX_HTTP_EVENTS_CLOUDEVENTS_H_INCLUDED_
#define _NGX_HTTP_EVENTS_CLOUDEVENTS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


/* an envelope's members the mapping uses: JSON tokens, len 0 if null */
typedef struct {
    ngx_str_t                   id;
    ngx_str_t                   type;
    ngx_str_t                   source;
    ngx_str_t                   time;
    ngx_str_t                   subject;
    ngx_str_t                   tenant;
    ngx_str_t                   seq;            /* digits */
} ngx_http_events_ce_t;


/* the attributes before "data": 6 x 512 + 3 x 1024 and the names */
#define NGX_HTTP_EVENTS_CE_HEAD         8192


ngx_int_t ngx_http_events_ce_parse(ngx_str_t *envelope,
    ngx_http_events_ce_t *ce);
u_char *ngx_http_events_ce_source(u_char *p, ngx_http_events_ce_t *ce);
u_char *ngx_http_events_ce_head(u_char *p, ngx_http_events_ce_t *ce);


#endif /* _NGX_HTTP_EVENTS_CLOUDEVENTS_H_INCLUDED_ */
