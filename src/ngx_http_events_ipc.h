
/*
 * Copyright (C) ngx_http_events_module authors
 */


#ifndef _NGX_HTTP_EVENTS_IPC_H_INCLUDED_
#define _NGX_HTTP_EVENTS_IPC_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_events_types.h"
#include "ngx_http_events_store.h"
#include "ngx_http_events_cursor.h"
#include "ngx_http_events_id.h"
#include "ngx_http_events_cloudevents.h"


/* how many consumers may register for each kind of news */
#define NGX_HTTP_EVENTS_IPC_HANDLERS    4


/* news on a zone: events were published, here or by another worker */
typedef void (*ngx_http_events_ipc_wake_pt)(ngx_http_events_store_t *store);

/* a graceful shutdown began: end what keeps the worker alive */
typedef void (*ngx_http_events_ipc_shutdown_pt)(ngx_cycle_t *cycle);


/* one per worker process, hung off the main conf */
struct ngx_http_events_ipc_s {
    ngx_fd_t                   *doorbells;      /* by ngx_worker */
    ngx_uint_t                  ndoorbells;
    ngx_event_t                 fanout;         /* posted: local publish */
    ngx_connection_t           *watcher;        /* learns of shutdown */
    ngx_http_events_scratch_t   scratch;        /* one event, for streams */
    ngx_http_events_id_rng_t    rng;            /* for event ids */

    /* the last event's cursor, framed for many streams in a wake */
    uint64_t                    cursor_seq;
    uint64_t                    cursor_epoch;
    u_char                      cursor[NGX_HTTP_EVENTS_CURSOR_LEN];

    /* and its CloudEvents attributes, for ?format=cloudevents streams */
    uint64_t                    ce_seq;
    uint64_t                    ce_epoch;
    size_t                      ce_len;         /* 0: none yet */
    u_char                      ce_head[NGX_HTTP_EVENTS_CE_HEAD];

    /* the consumers, registered at init_process */
    ngx_http_events_ipc_wake_pt      wake[NGX_HTTP_EVENTS_IPC_HANDLERS];
    ngx_http_events_ipc_shutdown_pt  shutdown[NGX_HTTP_EVENTS_IPC_HANDLERS];
    ngx_uint_t                       nwake;
    ngx_uint_t                       nshutdown;

    void                       *streams;        /* the streams' own */
};


ngx_int_t ngx_http_events_ipc_init_module(ngx_cycle_t *cycle);
ngx_int_t ngx_http_events_ipc_init_process(ngx_cycle_t *cycle);
void ngx_http_events_ipc_exit_process(ngx_cycle_t *cycle);
void ngx_http_events_ipc_notify(ngx_http_events_store_t *store);
void ngx_http_events_ipc_ring(ngx_uint_t worker);
ngx_http_events_ipc_t *ngx_http_events_ipc(void);
ngx_int_t ngx_http_events_ipc_on_wake(ngx_cycle_t *cycle,
    ngx_http_events_ipc_wake_pt handler);
ngx_int_t ngx_http_events_ipc_on_shutdown(ngx_cycle_t *cycle,
    ngx_http_events_ipc_shutdown_pt handler);


#endif /* _NGX_HTTP_EVENTS_IPC_H_INCLUDED_ */
