
/*
 * Copyright (C) ngx_http_events_module authors
 */


#ifndef _NGX_HTTP_EVENTS_MODULE_H_INCLUDED_
#define _NGX_HTTP_EVENTS_MODULE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_events_types.h"


#define NGX_HTTP_EVENTS_MAX_BATCH       1000


/* what a request carries between the module's handlers */
typedef struct {
    ngx_str_t                   tenant;         /* the request's */
    ngx_http_events_claims_t   *claims;         /* a valid token's */
    ngx_http_events_stream_ctx_t    *stream;
    ngx_http_events_export_ctx_t    *export;    /* an NDJSON export's */
    ngx_http_events_webhook_job_t   *job;       /* a webhook attempt's */
    ngx_http_events_webhook_route_t  *route;    /* a webhooks API call's */
    ngx_http_events_capture_ctx_t   *capture;
    ngx_http_events_capture_pre_t   *pre;       /* a write before its hook */
    ngx_http_events_validate_ctx_t  *validate;  /* waiting for the hook */
    ngx_http_events_validation_t    *validation;  /* a hook's subrequest */
    ngx_int_t                   auth_rc;        /* 0: not checked yet */
    ngx_http_events_error_t    *auth_err;
    ngx_http_events_jwks_wait_t     *jwks;      /* waiting for the keys */
    ngx_uint_t                  inbound_secrets;  /* bits: which matched */
    /* a body being read by ngx_http_events_http_body() */
    size_t                      body_max;
    const char                 *body_too_large;
    ngx_int_t                 (*body_handler)(ngx_http_request_t *r,
                                              u_char *data, size_t len);
} ngx_http_events_ctx_t;


typedef struct {
    ngx_array_t                 zones;          /* ngx_shm_zone_t * */
    ngx_array_t                 wh_static;      /* webhook_static_t */
    ngx_array_t                 wh_bind;        /* webhook_bind_t */
    ngx_msec_t                  retention;
    ngx_array_t                *journals;       /* journal_t * */
    ngx_http_events_ipc_t      *ipc;            /* this process's */
    ngx_array_t                *sections;       /* status_section_t */
    ngx_array_t                *inbound;        /* inbound_conf_t * */
    ngx_array_t                *captured;       /* shm_zone_t *, capture's */
    ngx_uint_t                  wh_keepalive;   /* idle connections */
    ngx_msec_t                  wh_keepalive_timeout;
    unsigned                    wh_pool:1;      /* its upstream is added */
} ngx_http_events_main_conf_t;


struct ngx_http_events_loc_conf_s {
    ngx_shm_zone_t             *api_zone;
    ngx_shm_zone_t             *status_zone;
    ngx_shm_zone_t             *stream_zone;
    ngx_shm_zone_t             *webhooks_zone;

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
    ngx_flag_t                  stream_release_header;
    ngx_flag_t                  ws_deflate;

    ngx_flag_t                  auth;
    ngx_array_t                *jwt_keys;
    ngx_http_events_jwks_t     *jwks;           /* ..._jwt_key_request */
    ngx_str_t                   auth_cookie;
    ngx_flag_t                  auth_query_token;
    ngx_str_t                   auth_audience;
    ngx_str_t                   auth_issuer;
    time_t                      auth_leeway;

    /* the features' own settings, each allocated by create_loc_conf */
    ngx_http_events_webhook_conf_t   *wh;
    ngx_http_events_capture_conf_t   *capture;
    ngx_http_events_validate_conf_t  *validate;
    ngx_http_events_inbound_conf_t   *inbound;  /* events_inbound's */

    ngx_array_t                *cors;           /* ngx_str_t origins */

    ngx_str_t                   prefix;
};


ngx_int_t ngx_http_events_get_tenant(ngx_http_request_t *r, ngx_str_t *tenant);
ngx_http_events_ctx_t *ngx_http_events_ctx(ngx_http_request_t *r);


extern ngx_module_t  ngx_http_events_module;


#endif /* _NGX_HTTP_EVENTS_MODULE_H_INCLUDED_ */
