
/*
 * Copyright (C) ngx_http_events_module authors
 */


#ifndef _NGX_HTTP_EVENTS_TYPES_H_INCLUDED_
#define _NGX_HTTP_EVENTS_TYPES_H_INCLUDED_


/*
 * The module's types, declared before they are defined, as ngx_core.h
 * does for nginx: a header that only points to a type includes this,
 * not the header of the layer that defines it.  Each comment names the
 * defining header.
 */


#include <ngx_config.h>
#include <ngx_core.h>


/* core/ */
typedef struct ngx_http_events_store_s       ngx_http_events_store_t;
                                                    /* store.h */
typedef struct ngx_http_events_journal_s     ngx_http_events_journal_t;
                                                    /* journal.h */
typedef struct ngx_http_events_error_s       ngx_http_events_error_t;
                                                    /* json.h */
typedef struct ngx_http_events_claims_s      ngx_http_events_claims_t;
                                                    /* jwt.h */

/* src/ */
typedef struct ngx_http_events_ipc_s         ngx_http_events_ipc_t;
                                                    /* ipc.h */
typedef struct ngx_http_events_loc_conf_s    ngx_http_events_loc_conf_t;
                                                    /* module.h */

/* http/ */
typedef struct ngx_http_events_stream_ctx_s  ngx_http_events_stream_ctx_t;
                                                    /* stream.c */
typedef struct ngx_http_events_export_ctx_s   ngx_http_events_export_ctx_t;
typedef struct ngx_http_events_capture_pre_s  ngx_http_events_capture_pre_t;
typedef struct ngx_http_events_inbound_conf_s
    ngx_http_events_inbound_conf_t;
typedef struct ngx_http_events_validate_conf_s
    ngx_http_events_validate_conf_t;                /* validate.h */
typedef struct ngx_http_events_validate_ctx_s
    ngx_http_events_validate_ctx_t;                 /* validate.c */
typedef struct ngx_http_events_validation_s  ngx_http_events_validation_t;
                                                    /* validate.h */
typedef struct ngx_http_events_jwks_s        ngx_http_events_jwks_t;
                                                    /* jwks.c */
typedef struct ngx_http_events_jwks_wait_s   ngx_http_events_jwks_wait_t;
                                                    /* jwks.c */

/* webhook/ */
typedef struct ngx_http_events_webhook_conf_s
    ngx_http_events_webhook_conf_t;                 /* webhook.h */
typedef struct ngx_http_events_webhook_sh_s
    ngx_http_events_webhook_sh_t;                   /* webhook_shm.h */
typedef struct ngx_http_events_webhook_job_s
    ngx_http_events_webhook_job_t;                  /* webhook_shm.h */
typedef struct ngx_http_events_webhook_jobs_s
    ngx_http_events_webhook_jobs_t;                 /* webhook_shm.h */
typedef struct ngx_http_events_webhook_route_s
    ngx_http_events_webhook_route_t;                /* webhook_api.c */

/* capture/ */
typedef struct ngx_http_events_capture_conf_s
    ngx_http_events_capture_conf_t;                 /* capture.h */
typedef struct ngx_http_events_capture_ctx_s
    ngx_http_events_capture_ctx_t;                  /* capture.c */


#endif /* _NGX_HTTP_EVENTS_TYPES_H_INCLUDED_ */
