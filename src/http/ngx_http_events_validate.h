
/*
 * Copyright (C) ngx_http_events_module authors
 */


#ifndef _NGX_HTTP_EVENTS_VALIDATE_H_INCLUDED_
#define _NGX_HTTP_EVENTS_VALIDATE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_events_store.h"


/* the most of a hook's answer relayed to a client */
#define NGX_HTTP_EVENTS_VALIDATE_BODY   4096


struct ngx_http_events_validate_conf_s {
    ngx_str_t                   uri;            /* empty: off */
    ngx_str_t                  *types;          /* NULL: every type */
    ngx_uint_t                  ntypes;
    ngx_flag_t                  fail_open;
    ngx_uint_t                  set;
};



typedef void (*ngx_http_events_validated_pt)(ngx_http_request_t *r,
    ngx_http_events_validation_t *v);

/* one event on its way through the hook */
struct ngx_http_events_validation_s {
    ngx_http_events_event_t    *ev;
    ngx_http_request_t         *main;
    ngx_http_events_store_t    *store;          /* its counters */
    ngx_http_events_validated_pt  handler;      /* background only */
    void                       *data;
    ngx_uint_t                  status;         /* the hook's; 0: none */
    u_char                     *body;
    size_t                      len;
    ngx_str_t                   type;           /* the answer's */
    unsigned                    json:1;
    unsigned                    whole:1;        /* all of the body kept */
    unsigned                    done:1;
};


/* POST /events: what stores the events once the hook agreed */
typedef ngx_int_t (*ngx_http_events_commit_pt)(ngx_http_request_t *r,
    ngx_http_events_event_t *events, ngx_uint_t n, ngx_uint_t batch);


ngx_uint_t ngx_http_events_validate_wanted(ngx_http_request_t *r,
    ngx_http_events_event_t *ev);
ngx_int_t ngx_http_events_validate_batch(ngx_http_request_t *r,
    ngx_http_events_event_t *events, ngx_uint_t n, ngx_uint_t batch,
    ngx_http_events_commit_pt commit);
ngx_int_t ngx_http_events_validate_background(ngx_http_request_t *r,
    ngx_http_events_validation_t *v);
ngx_int_t ngx_http_events_validate_verdict(ngx_http_request_t *r,
    ngx_http_events_validation_t *v);
ngx_int_t ngx_http_events_validate_ask(ngx_http_request_t *r,
    ngx_http_events_validation_t *v, ngx_str_t *uri, u_char *body,
    size_t len);

char *ngx_http_events_validate(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
void ngx_http_events_validate_merge_conf(ngx_http_events_validate_conf_t *prev,
    ngx_http_events_validate_conf_t *conf);
ngx_int_t ngx_http_events_validate_init(ngx_conf_t *cf);


#endif /* _NGX_HTTP_EVENTS_VALIDATE_H_INCLUDED_ */
