
/*
 * Copyright (C) ngx_http_events_module authors
 */


/*
 * Webhooks as the rest of the module sees them: the settings a location
 * carries, what an nginx.conf endpoint is made of, the figures status
 * shows, and the hooks module.c and ipc.c call.  What lives in the zone
 * is in ngx_http_events_webhook_shm.h, for src/webhook/ only.
 */


#ifndef _NGX_HTTP_EVENTS_WEBHOOK_H_INCLUDED_
#define _NGX_HTTP_EVENTS_WEBHOOK_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_events_store.h"


#define NGX_HTTP_EVENTS_WH_MAX_PATTERNS     16
#define NGX_HTTP_EVENTS_WH_MAX_HEADERS      16
#define NGX_HTTP_EVENTS_WH_MAX_SECRET       64
#define NGX_HTTP_EVENTS_WH_MAX_INFLIGHT     1000

/* an endpoint's format: what its deliveries' bodies and headers are */
#define NGX_HTTP_EVENTS_WH_ENVELOPE         0
#define NGX_HTTP_EVENTS_WH_CE_BINARY        1   /* "cloudevents" */
#define NGX_HTTP_EVENTS_WH_CE_STRUCTURED    2

/* an endpoint's handshake before deliveries: none, or CloudEvents' */
#define NGX_HTTP_EVENTS_WH_VERIFY_NONE      0
#define NGX_HTTP_EVENTS_WH_VERIFY_CE        1   /* "cloudevents" */

/* error codes of the attempt log */
#define NGX_HTTP_EVENTS_E_NONE              0
#define NGX_HTTP_EVENTS_E_DNS               1
#define NGX_HTTP_EVENTS_E_CONNECT           2
#define NGX_HTTP_EVENTS_E_TLS               3
#define NGX_HTTP_EVENTS_E_TIMEOUT           4
#define NGX_HTTP_EVENTS_E_HTTP              5
#define NGX_HTTP_EVENTS_E_REDIRECT          6
#define NGX_HTTP_EVENTS_E_BLOCKED_IP        7
#define NGX_HTTP_EVENTS_E_EVICTED           8
#define NGX_HTTP_EVENTS_E_ABORTED           9
#define NGX_HTTP_EVENTS_E_INTERNAL          10
#define NGX_HTTP_EVENTS_E_MAX               11


/* the settings of a zone's deliveries, from its events_webhooks */
struct ngx_http_events_webhook_conf_s {
    ngx_array_t                *retry;          /* ngx_msec_t */
    ngx_msec_t                  overload_delay;
    ngx_msec_t                  disable_after;
    ngx_msec_t                  secret_grace;
    ngx_uint_t                  concurrency;
    ngx_uint_t                  endpoint_concurrency;
    ngx_uint_t                  log_size;
    size_t                      excerpt_size;
    ngx_uint_t                  max_endpoints;
    ngx_flag_t                  allow_private;
    ngx_flag_t                  https_only;
    ngx_flag_t                  meta_events;
    ngx_array_t                *allow;          /* ngx_cidr_t */
    ngx_str_t                   location;       /* the internal one */
};


/* what an endpoint is made of, given by the API or nginx.conf */
typedef struct {
    ngx_str_t                   id;
    ngx_str_t                   tenant;
    ngx_str_t                   url;
    ngx_str_t                   description;
    ngx_str_t                   patterns[NGX_HTTP_EVENTS_WH_MAX_PATTERNS];
    ngx_str_t                   hnames[NGX_HTTP_EVENTS_WH_MAX_HEADERS];
    ngx_str_t                   hvalues[NGX_HTTP_EVENTS_WH_MAX_HEADERS];
    ngx_uint_t                  npatterns;
    ngx_uint_t                  nheaders;

    /* "metadata": exact values, as sent (not escaped) */
    ngx_str_t                   mkeys[NGX_HTTP_EVENTS_MAX_META_FILTERS];
    ngx_str_t                   mvalues[NGX_HTTP_EVENTS_MAX_META_FILTERS];
    ngx_uint_t                  nmeta;

    u_char                      secret[NGX_HTTP_EVENTS_WH_MAX_SECRET];
    u_char                      previous[NGX_HTTP_EVENTS_WH_MAX_SECRET];
    size_t                      secret_len;
    size_t                      previous_len;
    ngx_uint_t                  rate_limit;
    ngx_uint_t                  format;
    ngx_uint_t                  max_inflight;   /* 0: the location's */
    ngx_uint_t                  verify;         /* the handshake */
    void                       *ctx;            /* a handler's server */

    unsigned                    is_static:1;
    unsigned                    is_handler:1;
    unsigned                    enabled:1;
    unsigned                    set_url:1;
    unsigned                    set_patterns:1;
    unsigned                    set_description:1;
    unsigned                    set_headers:1;
    unsigned                    set_enabled:1;
    unsigned                    set_rate:1;
    unsigned                    ordered:1;
    unsigned                    set_format:1;
    unsigned                    set_ordered:1;
    unsigned                    set_max_inflight:1;
    unsigned                    set_meta:1;
    unsigned                    set_verify:1;
} ngx_http_events_webhook_spec_t;


/* an events_webhook from nginx.conf, before its zone is known */
typedef struct {
    ngx_str_t                        zone;
    ngx_http_events_webhook_spec_t   spec;
} ngx_http_events_webhook_static_t;


/* an events_webhooks location: its server sends the zone's webhooks */
typedef struct {
    ngx_shm_zone_t                  *zone;
    ngx_http_conf_ctx_t             *ctx;
    ngx_http_events_loc_conf_t      *elcf;
} ngx_http_events_webhook_bind_t;


typedef struct {
    ngx_pid_t                   owner;          /* the dispatcher */
    uint64_t                    endpoints;
    uint64_t                    disabled;
    uint64_t                    pending;
    uint64_t                    inflight;
    uint64_t                    oldest_pending_ms;
    uint64_t                    ok;
    uint64_t                    failed;
    uint64_t                    expired;
    uint64_t                    aborted;
    uint64_t                    attempts;
    uint64_t                    retries;
    uint64_t                    errors[NGX_HTTP_EVENTS_E_MAX];
} ngx_http_events_webhook_stats_t;


/* ngx_http_events_webhook.c */
void ngx_http_events_webhook_stats(ngx_http_events_store_t *store,
    ngx_http_events_webhook_stats_t *st);

/* ngx_http_events_webhook_status.c */
ngx_int_t ngx_http_events_webhook_status_register(ngx_conf_t *cf);

/* ngx_http_events_webhook_dispatch.c */
ngx_int_t ngx_http_events_webhook_dispatch_init_process(ngx_cycle_t *cycle);
void ngx_http_events_webhook_dispatch_exit_process(ngx_cycle_t *cycle);
void ngx_http_events_webhook_dispatch_wake(ngx_http_events_store_t *store);
void ngx_http_events_webhook_dispatch_release(ngx_cycle_t *cycle);

/* ngx_http_events_webhook_conf.c: directives */
void ngx_http_events_webhook_conf_init(ngx_http_events_webhook_conf_t *whcf);
char *ngx_http_events_webhook_conf_merge(ngx_conf_t *cf,
    ngx_http_events_webhook_conf_t *prev, ngx_http_events_webhook_conf_t *conf);
char *ngx_http_events_webhook_conf_webhooks(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_events_webhook_conf_static(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_events_webhook_conf_handler(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_events_webhook_conf_retry(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_events_webhook_conf_allow(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_http_events_webhook_conf_postconfiguration(ngx_conf_t *cf);
ngx_int_t ngx_http_events_webhook_conf_init_module(ngx_cycle_t *cycle);

/* ngx_http_events_webhook_delivery.c */
ngx_int_t ngx_http_events_webhook_delivery_add_variables(ngx_conf_t *cf);

/* ngx_http_events_webhook_pool.c: reused connections */
#define NGX_HTTP_EVENTS_WH_POOL  "events-webhook-pinned"

ngx_int_t ngx_http_events_webhook_pool_add(ngx_conf_t *cf);
char *ngx_http_events_webhook_pool_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);

extern const char  *ngx_http_events_webhook_errors[];
extern const char  *ngx_http_events_webhook_formats[];


#endif /* _NGX_HTTP_EVENTS_WEBHOOK_H_INCLUDED_ */
