
/*
 * Copyright (C) ngx_http_events_module authors
 */


#ifndef _NGX_HTTP_EVENTS_STREAM_H_INCLUDED_
#define _NGX_HTTP_EVENTS_STREAM_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_events_store.h"
#include "ngx_http_events_query.h"
#include "ngx_http_events_cursor.h"


/* why a stream ends: an SSE comment, a WebSocket close code */
#define NGX_HTTP_EVENTS_STREAM_END_RESET       0   /* after a reset */
#define NGX_HTTP_EVENTS_STREAM_END_LAGGING     1   /* out of the window */
#define NGX_HTTP_EVENTS_STREAM_END_OVERLOADED  2   /* refused at a limit */
#define NGX_HTTP_EVENTS_STREAM_END_RESTART     3   /* reload, shutdown */
#define NGX_HTTP_EVENTS_STREAM_END_LIFETIME    4
#define NGX_HTTP_EVENTS_STREAM_END_EXPIRED     5   /* the token's */


typedef struct ngx_http_events_ws_s  ngx_http_events_ws_t;

/* a worker's SSE frames and spare output buffers (stream.c) */
typedef struct ngx_http_events_stream_cache_s  ngx_http_events_stream_cache_t;


/*
 * How a stream's frames reach the client: Server-Sent Events or a
 * WebSocket.  The rest (where a stream starts, what it is sent, when,
 * and when it is cut off) is the same for both.
 */

typedef struct {
    /* the response head; the connection's handlers */
    ngx_int_t   (*open)(ngx_http_events_stream_ctx_t *ctx);
    ngx_int_t   (*event)(ngx_http_events_stream_ctx_t *ctx,
                         ngx_http_events_item_t *item);
    /* a named control frame: json is an object with members */
    ngx_int_t   (*control)(ngx_http_events_stream_ctx_t *ctx,
                           const char *name, u_char *id, u_char *json,
                           size_t len);
    ngx_int_t   (*heartbeat)(ngx_http_events_stream_ctx_t *ctx);
    ngx_int_t   (*flush)(ngx_http_events_stream_ctx_t *ctx);
    off_t       (*unsent)(ngx_http_events_stream_ctx_t *ctx);
    /* the last frames and the end of the request */
    void        (*end)(ngx_http_events_stream_ctx_t *ctx, ngx_uint_t why);
} ngx_http_events_stream_proto_t;


struct ngx_http_events_stream_ctx_s {
    ngx_http_request_t         *request;
    ngx_http_events_store_t    *store;
    ngx_http_events_cursor_key_t  *key;
    ngx_queue_t                 queue;
    ngx_http_events_query_t     filter;
    ngx_http_events_stream_proto_t  *proto;
    ngx_http_events_ws_t       *ws;
    ngx_http_events_stream_cache_t  *cache;

    uint64_t                    cursor;         /* sent or passed over */
    uint64_t                    epoch;          /* the cursor's */
    uint64_t                    replay_until;
    ngx_uint_t                  replayed;
    size_t                      max_buffer;
    ngx_msec_t                  heartbeat_ms;
    ngx_msec_t                  flushed;        /* when output last went */
    ngx_msec_t                  retry;

    ngx_chain_t                *free;           /* SSE output */
    ngx_chain_t                *busy;
    ngx_chain_t                *out;
    ngx_chain_t               **last;
    ngx_chain_t                *tail;
    off_t                       stalled_sent;

    ngx_event_t                 heartbeat;
    ngx_event_t                 lifetime;
    ngx_event_t                 resume;
    ngx_event_t                 expiry;         /* the token's */
    time_t                      exp;

    /* a page of a cluster's log, for what the ring no longer holds */
    void                       *backfill;
    ngx_pool_t                 *backfill_pool;
    ngx_http_events_query_t     backfill_q;
    ngx_http_events_result_t    backfill_res;

    unsigned                    queued:1;
    unsigned                    replaying:1;
    unsigned                    named:1;
    unsigned                    stalled:1;
    unsigned                    done:1;
    unsigned                    overloaded:1;
    unsigned                    chunked:1;      /* SSE: frames are chunks */
    unsigned                    plain:1;        /* no filter but a tenant */
};


ngx_int_t ngx_http_events_stream_handler(ngx_http_request_t *r);
ngx_int_t ngx_http_events_stream_init_process(ngx_cycle_t *cycle);

void ngx_http_events_stream_pump(ngx_http_events_stream_ctx_t *ctx);
ngx_int_t ngx_http_events_stream_flush(ngx_http_events_stream_ctx_t *ctx);
void ngx_http_events_stream_detach(ngx_http_events_stream_ctx_t *ctx);
u_char *ngx_http_events_stream_cursor(ngx_http_events_stream_ctx_t *ctx,
    uint64_t seq);


#endif /* _NGX_HTTP_EVENTS_STREAM_H_INCLUDED_ */
