
/*
 * Copyright (C) ngx_http_events_module authors
 */


/*
 * Directives, configuration and the request-level helpers every
 * endpoint shares (the tenant of a request).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_events_module.h"
#include "ngx_http_events_store.h"
#include "ngx_http_events_api.h"
#include "ngx_http_events_status.h"
#include "ngx_http_events_stream.h"
#include "ngx_http_events_export.h"
#include "ngx_http_events_ipc.h"
#include "ngx_http_events_auth.h"
#include "ngx_http_events_jwks.h"
#include "ngx_http_events_cors.h"
#include "ngx_http_events_match.h"
#include "ngx_http_events_journal.h"
#include "ngx_http_events_validate.h"
#include "ngx_http_events_webhook.h"
#include "ngx_http_events_capture.h"
#include "ngx_http_events_inbound.h"
#include "ngx_http_events_capture_pre.h"


static ngx_int_t ngx_http_events_preconfiguration(ngx_conf_t *cf);
static ngx_int_t ngx_http_events_postconfiguration(ngx_conf_t *cf);
static void *ngx_http_events_create_main_conf(ngx_conf_t *cf);
static char *ngx_http_events_init_main_conf(ngx_conf_t *cf, void *conf);
static void *ngx_http_events_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_events_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static char *ngx_http_events_zone(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_events_api(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_events_status(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_events_stream(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_http_events_init_module(ngx_cycle_t *cycle);
static ngx_int_t ngx_http_events_init_process(ngx_cycle_t *cycle);
static void ngx_http_events_exit_process(ngx_cycle_t *cycle);
static ngx_shm_zone_t *ngx_http_events_zone_ref(ngx_conf_t *cf,
    ngx_str_t *name);
static char *ngx_http_events_conf_slot(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);


/*
 * A feature's settings live in its own struct, which the location's conf
 * points to; its directives use the stock slots through this table of
 * (slot, where the pointer is).
 */

typedef struct {
    char                     *(*set)(ngx_conf_t *cf, ngx_command_t *cmd,
                                     void *conf);
    size_t                      conf;
} ngx_http_events_conf_slot_t;


static ngx_http_events_conf_slot_t  ngx_http_events_capture_size = {
    ngx_conf_set_size_slot, offsetof(ngx_http_events_loc_conf_t, capture)
};

static ngx_http_events_conf_slot_t  ngx_http_events_wh_flag = {
    ngx_conf_set_flag_slot, offsetof(ngx_http_events_loc_conf_t, wh)
};

static ngx_http_events_conf_slot_t  ngx_http_events_wh_msec = {
    ngx_conf_set_msec_slot, offsetof(ngx_http_events_loc_conf_t, wh)
};

static ngx_http_events_conf_slot_t  ngx_http_events_wh_num = {
    ngx_conf_set_num_slot, offsetof(ngx_http_events_loc_conf_t, wh)
};

static ngx_http_events_conf_slot_t  ngx_http_events_wh_size = {
    ngx_conf_set_size_slot, offsetof(ngx_http_events_loc_conf_t, wh)
};

static ngx_http_events_conf_slot_t  ngx_http_events_wh_str = {
    ngx_conf_set_str_slot, offsetof(ngx_http_events_loc_conf_t, wh)
};


static ngx_conf_num_bounds_t  ngx_http_events_scan_bounds = {
    ngx_conf_check_num_bounds, 1, 10000000
};


static ngx_conf_num_bounds_t  ngx_http_events_subscribers_bounds = {
    ngx_conf_check_num_bounds, 0, 10000000
};


static ngx_command_t  ngx_http_events_commands[] = {

    { ngx_string("events_zone"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE2|NGX_CONF_TAKE3|NGX_CONF_TAKE4,
      ngx_http_events_zone,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("events_retention"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_events_main_conf_t, retention),
      NULL },

    { ngx_string("events_journal"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_2MORE,
      ngx_http_events_journal_directive,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_events_main_conf_t, journals),
      NULL },

    { ngx_string("events_api"),
      NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_events_api,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("events_cors"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_events_cors,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("events_status"),
      NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_events_status,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("events_tenant"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_set_complex_value_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_events_loc_conf_t, tenant),
      NULL },

    { ngx_string("events_source"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_set_complex_value_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_events_loc_conf_t, source),
      NULL },

    { ngx_string("events_max_event_size"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_events_loc_conf_t, max_event_size),
      NULL },

    { ngx_string("events_max_body_size"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_events_loc_conf_t, max_body_size),
      NULL },

    { ngx_string("events_scan_limit"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_events_loc_conf_t, scan_limit),
      &ngx_http_events_scan_bounds },

    { ngx_string("events_stream"),
      NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_events_stream,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("events_heartbeat"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_events_loc_conf_t, heartbeat),
      NULL },

    { ngx_string("events_stream_retry"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_events_loc_conf_t, stream_retry),
      NULL },

    { ngx_string("events_stream_max_lifetime"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_events_loc_conf_t, stream_max_lifetime),
      NULL },

    { ngx_string("events_stream_max_buffer"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_events_loc_conf_t, stream_max_buffer),
      NULL },

    { ngx_string("events_stream_max_subscribers"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_events_loc_conf_t, stream_max_subscribers),
      &ngx_http_events_subscribers_bounds },

    { ngx_string("events_stream_event_field"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_events_loc_conf_t, stream_event_field),
      NULL },

    { ngx_string("events_stream_release_header"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_events_loc_conf_t, stream_release_header),
      NULL },

    { ngx_string("events_ws_deflate"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_events_loc_conf_t, ws_deflate),
      NULL },

    { ngx_string("events_auth"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_events_loc_conf_t, auth),
      NULL },

    { ngx_string("events_auth_jwt_key"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE123,
      ngx_http_events_auth_jwt_key,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("events_auth_jwt_key_request"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE123,
      ngx_http_events_jwks_conf,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("events_auth_cookie"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_events_loc_conf_t, auth_cookie),
      NULL },

    { ngx_string("events_auth_query_token"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_events_loc_conf_t, auth_query_token),
      NULL },

    { ngx_string("events_auth_audience"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_events_loc_conf_t, auth_audience),
      NULL },

    { ngx_string("events_auth_issuer"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_events_loc_conf_t, auth_issuer),
      NULL },

    { ngx_string("events_auth_leeway"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_sec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_events_loc_conf_t, auth_leeway),
      NULL },

    { ngx_string("events_webhooks"),
      NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_events_webhook_conf_webhooks,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("events_webhook"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_2MORE,
      ngx_http_events_webhook_conf_static,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("events_handler"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_CONF_2MORE,
      ngx_http_events_webhook_conf_handler,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("events_webhook_retry"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_events_webhook_conf_retry,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("events_webhook_overload_delay"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_events_conf_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_events_webhook_conf_t, overload_delay),
      &ngx_http_events_wh_msec },

    { ngx_string("events_webhook_disable_after"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_events_conf_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_events_webhook_conf_t, disable_after),
      &ngx_http_events_wh_msec },

    { ngx_string("events_webhook_secret_grace"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_events_conf_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_events_webhook_conf_t, secret_grace),
      &ngx_http_events_wh_msec },

    { ngx_string("events_webhook_concurrency"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_events_conf_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_events_webhook_conf_t, concurrency),
      &ngx_http_events_wh_num },

    { ngx_string("events_webhook_endpoint_concurrency"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_events_conf_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_events_webhook_conf_t, endpoint_concurrency),
      &ngx_http_events_wh_num },

    { ngx_string("events_webhook_log_size"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_events_conf_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_events_webhook_conf_t, log_size),
      &ngx_http_events_wh_num },

    { ngx_string("events_webhook_response_excerpt"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_events_conf_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_events_webhook_conf_t, excerpt_size),
      &ngx_http_events_wh_size },

    { ngx_string("events_webhook_max_per_tenant"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_events_conf_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_events_webhook_conf_t, max_endpoints),
      &ngx_http_events_wh_num },

    { ngx_string("events_webhook_allow_private"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_http_events_conf_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_events_webhook_conf_t, allow_private),
      &ngx_http_events_wh_flag },

    { ngx_string("events_webhook_https_only"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_http_events_conf_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_events_webhook_conf_t, https_only),
      &ngx_http_events_wh_flag },

    { ngx_string("events_webhook_allow"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_events_webhook_conf_allow,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("events_inbound"),
      NGX_HTTP_LOC_CONF|NGX_CONF_2MORE,
      ngx_http_events_inbound,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("events_capture"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_events_capture,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("events_resource"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE2,
      ngx_http_events_capture_resource,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("events_capture_metadata"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE2,
      ngx_http_events_capture_metadata,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("events_capture_max_body"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_events_conf_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_events_capture_conf_t, max_body),
      &ngx_http_events_capture_size },

    { ngx_string("events_capture_pre"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE12,
      ngx_http_events_capture_pre,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("events_validate"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_events_validate,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("events_webhook_meta_events"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_http_events_conf_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_events_webhook_conf_t, meta_events),
      &ngx_http_events_wh_flag },

    { ngx_string("events_webhook_keepalive"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE12,
      ngx_http_events_webhook_pool_conf,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("events_webhook_location"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_events_conf_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_events_webhook_conf_t, location),
      &ngx_http_events_wh_str },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_events_module_ctx = {
    ngx_http_events_preconfiguration,      /* preconfiguration */
    ngx_http_events_postconfiguration,     /* postconfiguration */

    ngx_http_events_create_main_conf,      /* create main configuration */
    ngx_http_events_init_main_conf,        /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_events_create_loc_conf,       /* create location configuration */
    ngx_http_events_merge_loc_conf         /* merge location configuration */
};


ngx_module_t  ngx_http_events_module = {
    NGX_MODULE_V1,
    &ngx_http_events_module_ctx,           /* module context */
    ngx_http_events_commands,              /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    ngx_http_events_init_module,           /* init module */
    ngx_http_events_init_process,          /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_events_exit_process,          /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


ngx_int_t
ngx_http_events_get_tenant(ngx_http_request_t *r, ngx_str_t *tenant)
{
    ngx_http_events_claims_t    *claims;
    ngx_http_events_loc_conf_t  *elcf;

    elcf = ngx_http_get_module_loc_conf(r, ngx_http_events_module);

    if (elcf->auth) {
        /* the token's word is final: a request never picks a tenant */
        claims = ngx_http_events_auth_claims(r);

        if (claims == NULL) {
            return NGX_ERROR;
        }

        *tenant = claims->tenant;
        return NGX_OK;
    }

    if (elcf->tenant == NULL) {
        ngx_str_null(tenant);
        return NGX_OK;
    }

    if (ngx_http_complex_value(r, elcf->tenant, tenant) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_http_events_match_tenant_valid(tenant) == NGX_OK ? NGX_OK
                                                          : NGX_DECLINED;
}


ngx_http_events_ctx_t *
ngx_http_events_ctx(ngx_http_request_t *r)
{
    ngx_http_events_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_events_module);

    if (ctx == NULL) {
        ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_events_ctx_t));
        if (ctx == NULL) {
            return NULL;
        }

        ngx_http_set_ctx(r, ctx, ngx_http_events_module);
    }

    return ctx;
}


static ngx_int_t
ngx_http_events_preconfiguration(ngx_conf_t *cf)
{
    if (ngx_http_events_auth_add_variables(cf) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_http_events_inbound_add_variables(cf) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_http_events_webhook_delivery_add_variables(cf);
}


/*
 * The body filters, last registered first called: a validate hook's
 * answer and a webhook's are swallowed before capture could see them.
 */

static ngx_int_t
ngx_http_events_postconfiguration(ngx_conf_t *cf)
{
    if (ngx_http_events_webhook_conf_postconfiguration(cf) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_http_events_capture_init(cf) != NGX_OK
        || ngx_http_events_capture_pre_init(cf) != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (ngx_http_events_cors_init(cf) != NGX_OK
        || ngx_http_events_jwks_init(cf) != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_http_events_validate_init(cf);
}


static void *
ngx_http_events_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_events_main_conf_t  *emcf;

    emcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_events_main_conf_t));
    if (emcf == NULL) {
        return NULL;
    }

    if (ngx_array_init(&emcf->zones, cf->pool, 2, sizeof(ngx_shm_zone_t *))
        != NGX_OK
        || ngx_array_init(&emcf->wh_static, cf->pool, 2,
                          sizeof(ngx_http_events_webhook_static_t))
           != NGX_OK
        || ngx_array_init(&emcf->wh_bind, cf->pool, 2,
                          sizeof(ngx_http_events_webhook_bind_t))
           != NGX_OK)
    {
        return NULL;
    }

    emcf->retention = NGX_CONF_UNSET_MSEC;
    emcf->wh_keepalive = NGX_CONF_UNSET_UINT;
    emcf->wh_keepalive_timeout = NGX_CONF_UNSET_MSEC;

    return emcf;
}


static char *
ngx_http_events_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_http_events_main_conf_t  *emcf = conf;

    ngx_uint_t                i;
    ngx_shm_zone_t          **zones;
    ngx_core_conf_t          *ccf;
    ngx_http_events_store_t  *store;

    ngx_conf_init_msec_value(emcf->retention, 0);

    /*
     * the zone counts and rings workers in fixed slots; a worker_processes
     * after the http block is checked again in init_module
     */

    ccf = (ngx_core_conf_t *) ngx_get_conf(cf->cycle->conf_ctx,
                                           ngx_core_module);

    if (emcf->zones.nelts
        && ccf->worker_processes != NGX_CONF_UNSET
        && ccf->worker_processes > NGX_HTTP_EVENTS_MAX_WORKERS)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "events zones support at most %d worker "
                           "processes, not %i", NGX_HTTP_EVENTS_MAX_WORKERS,
                           ccf->worker_processes);
        return NGX_CONF_ERROR;
    }

    zones = emcf->zones.elts;

    for (i = 0; i < emcf->zones.nelts; i++) {
        store = zones[i]->data;

        if (store->retention == NGX_CONF_UNSET_MSEC) {
            store->retention = emcf->retention;
        }
    }

    return ngx_http_events_journal_bind(cf, emcf->journals, &emcf->zones);
}


static void *
ngx_http_events_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_events_loc_conf_t  *elcf;

    elcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_events_loc_conf_t));
    if (elcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     elcf->api_zone = NULL;
     *     elcf->status_zone = NULL;
     *     elcf->prefix = { 0, NULL };
     *     elcf->jwt_keys = NULL;
     *     elcf->jwks = NULL;
     *     elcf->auth_cookie = { 0, NULL };
     *     elcf->auth_audience = { 0, NULL };
     *     elcf->auth_issuer = { 0, NULL };
     */

    elcf->tenant = NGX_CONF_UNSET_PTR;
    elcf->source = NGX_CONF_UNSET_PTR;
    elcf->max_event_size = NGX_CONF_UNSET_SIZE;
    elcf->max_body_size = NGX_CONF_UNSET_SIZE;
    elcf->scan_limit = NGX_CONF_UNSET_UINT;
    elcf->heartbeat = NGX_CONF_UNSET_MSEC;
    elcf->stream_retry = NGX_CONF_UNSET_MSEC;
    elcf->stream_max_lifetime = NGX_CONF_UNSET_MSEC;
    elcf->stream_max_buffer = NGX_CONF_UNSET_SIZE;
    elcf->stream_max_subscribers = NGX_CONF_UNSET_UINT;
    elcf->stream_event_field = NGX_CONF_UNSET;
    elcf->stream_release_header = NGX_CONF_UNSET;
    elcf->ws_deflate = NGX_CONF_UNSET;
    elcf->auth = NGX_CONF_UNSET;
    elcf->auth_query_token = NGX_CONF_UNSET;
    elcf->auth_leeway = NGX_CONF_UNSET;
    elcf->cors = NGX_CONF_UNSET_PTR;

    elcf->wh = ngx_pcalloc(cf->pool, sizeof(ngx_http_events_webhook_conf_t));
    elcf->capture = ngx_pcalloc(cf->pool,
                                sizeof(ngx_http_events_capture_conf_t));
    elcf->validate = ngx_pcalloc(cf->pool,
                                 sizeof(ngx_http_events_validate_conf_t));

    if (elcf->wh == NULL || elcf->capture == NULL || elcf->validate == NULL)
    {
        return NULL;
    }

    ngx_http_events_webhook_conf_init(elcf->wh);
    ngx_http_events_capture_create_conf(elcf->capture);

    return elcf;
}


static char *
ngx_http_events_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_events_loc_conf_t  *prev = parent;
    ngx_http_events_loc_conf_t  *conf = child;

    ngx_conf_merge_ptr_value(conf->tenant, prev->tenant, NULL);
    ngx_conf_merge_ptr_value(conf->source, prev->source, NULL);
    ngx_conf_merge_size_value(conf->max_event_size, prev->max_event_size,
                              64 * 1024);
    ngx_conf_merge_size_value(conf->max_body_size, prev->max_body_size,
                              1024 * 1024);
    ngx_conf_merge_uint_value(conf->scan_limit, prev->scan_limit, 100000);
    ngx_conf_merge_msec_value(conf->heartbeat, prev->heartbeat, 20000);
    ngx_conf_merge_msec_value(conf->stream_retry, prev->stream_retry, 3000);
    ngx_conf_merge_msec_value(conf->stream_max_lifetime,
                              prev->stream_max_lifetime, 0);
    ngx_conf_merge_size_value(conf->stream_max_buffer,
                              prev->stream_max_buffer, 1024 * 1024);
    ngx_conf_merge_uint_value(conf->stream_max_subscribers,
                              prev->stream_max_subscribers, 0);
    ngx_conf_merge_value(conf->stream_event_field, prev->stream_event_field,
                         0);
    ngx_conf_merge_value(conf->stream_release_header,
                         prev->stream_release_header, 1);
    ngx_conf_merge_value(conf->ws_deflate, prev->ws_deflate, 1);

    ngx_conf_merge_value(conf->auth, prev->auth, 0);
    ngx_conf_merge_value(conf->auth_query_token, prev->auth_query_token, 0);
    ngx_conf_merge_str_value(conf->auth_cookie, prev->auth_cookie, "");
    ngx_conf_merge_str_value(conf->auth_audience, prev->auth_audience, "");
    ngx_conf_merge_str_value(conf->auth_issuer, prev->auth_issuer, "");
    ngx_conf_merge_sec_value(conf->auth_leeway, prev->auth_leeway, 30);
    ngx_conf_merge_ptr_value(conf->cors, prev->cors, NULL);

    if (conf->jwt_keys == NULL) {
        conf->jwt_keys = prev->jwt_keys;
    }

    if (conf->jwks == NULL) {
        conf->jwks = prev->jwks;
    }

    if (ngx_http_events_webhook_conf_merge(cf, prev->wh, conf->wh)
        != NGX_CONF_OK)
    {
        return NGX_CONF_ERROR;
    }

    if (conf->auth && conf->jwt_keys == NULL && conf->jwks == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"events_auth on\" needs "
                           "\"events_auth_jwt_key\" or "
                           "\"events_auth_jwt_key_request\"");
        return NGX_CONF_ERROR;
    }

    if (conf->heartbeat == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"events_heartbeat\" must be more than 0");
        return NGX_CONF_ERROR;
    }

    if (conf->max_event_size < 256) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"events_max_event_size\" must be at least 256");
        return NGX_CONF_ERROR;
    }

    ngx_http_events_validate_merge_conf(prev->validate, conf->validate);

    return ngx_http_events_capture_merge_conf(cf, prev->capture,
                                              conf->capture);
}


/* events_zone NAME SIZE [retention=TIME] [metadata_index=KEY] */

static char *
ngx_http_events_zone(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_events_main_conf_t  *emcf = conf;

    ssize_t                   size;
    ngx_str_t                *value, s, key;
    ngx_uint_t                i, indexed;
    ngx_msec_t                retention;
    ngx_shm_zone_t           *shm_zone, **zp;
    ngx_http_events_store_t  *store;

    value = cf->args->elts;
    retention = NGX_CONF_UNSET_MSEC;
    indexed = 0;
    ngx_str_set(&key, "actorId");

    size = ngx_parse_size(&value[2]);

    if (size == NGX_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid zone size \"%V\"", &value[2]);
        return NGX_CONF_ERROR;
    }

    if (size < (ssize_t) (64 * ngx_pagesize)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "events zone \"%V\" is too small: at least %uz",
                           &value[1], 64 * ngx_pagesize);
        return NGX_CONF_ERROR;
    }

    for (i = 3; i < cf->args->nelts; i++) {

        if (value[i].len >= 10
            && ngx_strncmp(value[i].data, "retention=", 10) == 0
            && retention == NGX_CONF_UNSET_MSEC)
        {
            s.data = value[i].data + 10;
            s.len = value[i].len - 10;

            retention = ngx_parse_time(&s, 0);
            if (retention == (ngx_msec_t) NGX_ERROR) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid retention \"%V\"", &value[i]);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        /* the key of ?metadata.KEY=, indexed: the same syntax */
        if (value[i].len >= 15
            && ngx_strncmp(value[i].data, "metadata_index=", 15) == 0
            && !indexed)
        {
            indexed = 1;
            key.data = value[i].data + 15;
            key.len = value[i].len - 15;

            if (ngx_http_events_match_meta_key_valid(key.data, key.len)
                != NGX_OK)
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid metadata_index \"%V\": a key "
                                   "of 1-%d characters of [A-Za-z0-9_.:-]",
                                   &value[i], NGX_HTTP_EVENTS_MAX_META_KEY);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\"", &value[i]);
        return NGX_CONF_ERROR;
    }

    shm_zone = ngx_shared_memory_add(cf, &value[1], size,
                                     &ngx_http_events_module);
    if (shm_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    if (shm_zone->data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "duplicate events zone \"%V\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    store = ngx_pcalloc(cf->pool, sizeof(ngx_http_events_store_t));
    if (store == NULL) {
        return NGX_CONF_ERROR;
    }

    store->name = value[1];
    store->retention = retention;
    store->index_key = key;
    ngx_queue_init(&store->subscribers);
    ngx_queue_init(&store->exports);

    shm_zone->init = ngx_http_events_store_init_zone;
    shm_zone->data = store;

    zp = ngx_array_push(&emcf->zones);
    if (zp == NULL) {
        return NGX_CONF_ERROR;
    }

    *zp = shm_zone;

    return NGX_CONF_OK;
}


static char *
ngx_http_events_conf_slot(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_command_t                 c;
    ngx_http_events_conf_slot_t  *slot;

    slot = cmd->post;

    c = *cmd;
    c.post = NULL;

    return slot->set(cf, &c, *(void **) ((u_char *) conf + slot->conf));
}


static ngx_shm_zone_t *
ngx_http_events_zone_ref(ngx_conf_t *cf, ngx_str_t *name)
{
    /* size 0: declared by events_zone, before or after this directive */
    return ngx_shared_memory_add(cf, name, 0, &ngx_http_events_module);
}


static char *
ngx_http_events_api(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_events_loc_conf_t *elcf = conf;

    ngx_str_t                 *value;
    ngx_http_core_loc_conf_t  *clcf;

    if (elcf->api_zone) {
        return "is duplicate";
    }

    value = cf->args->elts;

    elcf->api_zone = ngx_http_events_zone_ref(cf, &value[1]);
    if (elcf->api_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

#if (NGX_PCRE)
    if (clcf->regex) {
        return "needs a prefix location, not a regular expression";
    }
#endif

    if (clcf->named) {
        return "needs a prefix location, not a named one";
    }

    /* the location's prefix is the collection; "/events/" too */
    elcf->prefix = clcf->name;

    while (elcf->prefix.len > 1
           && elcf->prefix.data[elcf->prefix.len - 1] == '/')
    {
        elcf->prefix.len--;
    }

    clcf->handler = ngx_http_events_api_handler;

    return NGX_CONF_OK;
}


static char *
ngx_http_events_status(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_events_loc_conf_t *elcf = conf;

    ngx_str_t                 *value;
    ngx_http_core_loc_conf_t  *clcf;

    if (elcf->status_zone) {
        return "is duplicate";
    }

    value = cf->args->elts;

    elcf->status_zone = ngx_http_events_zone_ref(cf, &value[1]);
    if (elcf->status_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_events_status_handler;

    return NGX_CONF_OK;
}


static char *
ngx_http_events_stream(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_events_loc_conf_t *elcf = conf;

    ngx_str_t                 *value;
    ngx_http_core_loc_conf_t  *clcf;

    if (elcf->stream_zone) {
        return "is duplicate";
    }

    value = cf->args->elts;

    elcf->stream_zone = ngx_http_events_zone_ref(cf, &value[1]);
    if (elcf->stream_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_events_stream_handler;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_events_init_module(ngx_cycle_t *cycle)
{
    if (ngx_http_events_ipc_init_module(cycle) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_http_events_webhook_conf_init_module(cycle);
}


static ngx_int_t
ngx_http_events_init_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                    i;
    ngx_shm_zone_t              **zones;
    ngx_core_conf_t              *ccf;
    ngx_http_events_main_conf_t  *emcf;

    if (ngx_http_events_ipc_init_process(cycle) != NGX_OK
        || ngx_http_events_stream_init_process(cycle) != NGX_OK
        || ngx_http_events_export_init_process(cycle) != NGX_OK)
    {
        return NGX_ERROR;
    }

    emcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_events_module);

    if (emcf != NULL
        && (ngx_process == NGX_PROCESS_WORKER
            || ngx_process == NGX_PROCESS_SINGLE))
    {
        ccf = (ngx_core_conf_t *) ngx_get_conf(cycle->conf_ctx,
                                               ngx_core_module);
        zones = emcf->zones.elts;

        for (i = 0; i < emcf->zones.nelts; i++) {
            ngx_http_events_store_worker_start(zones[i]->data,
                                               ccf->worker_processes);
        }
    }

    if (emcf != NULL
        && ngx_http_events_journal_init_process(cycle, emcf->journals,
                                                ngx_http_events_ipc_ring)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    /* fsync=always: a worker's sync may cover another's waiting bytes */
    if (emcf != NULL && emcf->journals != NULL
        && ngx_http_events_ipc_on_wake(cycle, ngx_http_events_journal_wake)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_http_events_webhook_dispatch_init_process(cycle);
}


static void
ngx_http_events_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_events_main_conf_t  *emcf;

    ngx_http_events_webhook_dispatch_exit_process(cycle);
    ngx_http_events_ipc_exit_process(cycle);

    emcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_events_module);

    if (emcf != NULL) {
        ngx_http_events_journal_exit_process(emcf->journals);
    }
}
