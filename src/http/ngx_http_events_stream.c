
/*
 * Copyright (C) ngx_http_events_module authors
 */


/*
 * Server-Sent Events at an events_stream location.
 *
 * A stream is a position in the shared ring: it pulls the events after
 * its cursor that match its filters, so replay and live delivery are the
 * same code, and nothing is missed or sent twice whichever worker wrote
 * the events.  Frames go out in recycled buffers whose memory is given
 * back whenever the client has taken everything, so an idle stream
 * holds none; a client that stops reading is cut off once its unsent
 * output passes events_stream_max_buffer.
 *
 * The same location takes WebSocket upgrades (ngx_http_events_ws.c):
 * everything here but the framing and the writing is shared, and those
 * go through the stream's proto, the SSE one below or the WebSocket one.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_events_module.h"
#include "ngx_http_events_store.h"
#include "ngx_http_events_stream.h"
#include "ngx_http_events_http.h"
#include "ngx_http_events_ipc.h"
#include "ngx_http_events_query.h"
#include "ngx_http_events_cursor.h"
#include "ngx_http_events_auth.h"
#include "ngx_http_events_ws.h"
#include "ngx_http_events_cloudevents.h"


#define NGX_HTTP_EVENTS_STREAM_BUF      16384
#define NGX_HTTP_EVENTS_STREAM_BUDGET   4096    /* records per look */
#define NGX_HTTP_EVENTS_STREAM_LOOKS    64      /* looks per turn */
#define NGX_HTTP_EVENTS_STREAM_TURN     65536   /* bytes framed per turn */
#define NGX_HTTP_EVENTS_STREAM_WAKE     64      /* streams woken per turn */
#define NGX_HTTP_EVENTS_STREAM_BACKFILL 100     /* a cluster's log: a page */
#define NGX_HTTP_EVENTS_STREAM_RETRY    1000    /* the log did not answer */
#define NGX_HTTP_EVENTS_STREAM_FRAMES   256     /* SSE frames a worker keeps */
#define NGX_HTTP_EVENTS_STREAM_FRAME_MAX  65536 /* a larger one: not kept */
#define NGX_HTTP_EVENTS_STREAM_FRAMES_MAX 4194304 /* all of them, bytes */
#define NGX_HTTP_EVENTS_STREAM_SPARE    16      /* output buffers kept */


/*
 * An event's SSE frame, built once for all the streams a wake sends it
 * to (chunk header included).  Linked: a stream with no filter but its
 * tenant whose cursor is "after" has this event next, and does not look
 * in the ring for it.  A turn frames up to NGX_HTTP_EVENTS_STREAM_TURN
 * bytes for one stream before the next stream's turn: the worker keeps
 * enough frames for that many small events.
 */

typedef struct {
    ngx_http_events_store_t    *store;
    uint64_t                    epoch;
    uint64_t                    seq;
    uint64_t                    after;
    ngx_uint_t                  flags;
    u_char                     *data;
    size_t                      len;            /* 0: none */
    size_t                      size;
    size_t                      tenant_len;
    unsigned                    linked:1;
    unsigned                    any_tenant:1;
    u_char                      tenant[NGX_HTTP_EVENTS_MAX_TENANT];
} ngx_http_events_stream_frame_t;


/* a worker's, for its streams */

struct ngx_http_events_stream_cache_s {
    ngx_http_events_stream_frame_t  frames[NGX_HTTP_EVENTS_STREAM_FRAMES];
    /* by "after": the frame that comes next */
    ngx_http_events_stream_frame_t *next[NGX_HTTP_EVENTS_STREAM_FRAMES];
    size_t                      bytes;
    u_char                     *spare[NGX_HTTP_EVENTS_STREAM_SPARE];
    ngx_uint_t                  nspare;
};


static void ngx_http_events_stream_event_init(
    ngx_http_events_stream_ctx_t *ctx, ngx_event_t *ev,
    ngx_event_handler_pt handler);
static ngx_uint_t ngx_http_events_stream_accept(ngx_http_request_t *r,
    ngx_http_events_stream_ctx_t *ctx, ngx_int_t *rc);
static void ngx_http_events_stream_release(
    ngx_http_events_stream_ctx_t *ctx);
static void ngx_http_events_stream_subscribe(
    ngx_http_events_stream_ctx_t *ctx);
static ngx_int_t ngx_http_events_stream_refuse(ngx_http_request_t *r,
    ngx_uint_t status, const char *code, const char *message);
static ngx_int_t ngx_http_events_stream_start(
    ngx_http_events_stream_ctx_t *ctx);
static ngx_str_t *ngx_http_events_stream_last_id(ngx_http_request_t *r,
    ngx_http_events_query_t *q);
static ngx_int_t ngx_http_events_stream_reset(
    ngx_http_events_stream_ctx_t *ctx, const char *reason);
static ngx_int_t ngx_http_events_stream_ready(
    ngx_http_events_stream_ctx_t *ctx);
static ngx_int_t ngx_http_events_stream_overloaded(
    ngx_http_events_stream_ctx_t *ctx);
static ngx_int_t ngx_http_events_stream_backfill(
    ngx_http_events_stream_ctx_t *ctx);
static void ngx_http_events_stream_backfilled(void *data, ngx_int_t rc);
static void ngx_http_events_stream_backfill_end(
    ngx_http_events_stream_ctx_t *ctx);
static ngx_int_t ngx_http_events_stream_frame(
    ngx_http_events_stream_ctx_t *ctx, off_t unsent);
static void ngx_http_events_stream_finish(ngx_http_events_stream_ctx_t *ctx,
    ngx_uint_t why);
static void ngx_http_events_stream_cut(ngx_http_events_stream_ctx_t *ctx);
static void ngx_http_events_stream_heartbeat(ngx_event_t *ev);
static void ngx_http_events_stream_lifetime(ngx_event_t *ev);
static void ngx_http_events_stream_resume(ngx_event_t *ev);
static void ngx_http_events_stream_expiry(ngx_event_t *ev);
static ngx_uint_t ngx_http_events_stream_grants(ngx_http_request_t *r,
    ngx_http_events_stream_ctx_t *ctx, ngx_int_t *rc);
static void ngx_http_events_stream_wake_more(ngx_event_t *ev);
static void ngx_http_events_stream_wake_turn(ngx_http_events_store_t *store);
static void ngx_http_events_stream_wake(ngx_http_events_store_t *store);
static void ngx_http_events_stream_close_all(ngx_cycle_t *cycle);
static void ngx_http_events_stream_unsubscribe(
    ngx_http_events_stream_ctx_t *ctx);
static void ngx_http_events_stream_cleanup(void *data);

static ngx_int_t ngx_http_events_sse_open(ngx_http_events_stream_ctx_t *ctx);
static ngx_int_t ngx_http_events_sse_append(ngx_http_events_stream_ctx_t *ctx,
    u_char *data, size_t len);
static ngx_int_t ngx_http_events_sse_frame(ngx_http_events_stream_ctx_t *ctx,
    ngx_str_t *parts, ngx_uint_t n);
static ngx_uint_t ngx_http_events_sse_flags(ngx_http_events_stream_ctx_t *ctx);
static ngx_int_t ngx_http_events_sse_keep(ngx_http_events_stream_ctx_t *ctx,
    ngx_http_events_stream_frame_t *f, uint64_t seq, ngx_str_t *parts,
    ngx_uint_t n);
static void ngx_http_events_sse_link(ngx_http_events_stream_ctx_t *ctx,
    uint64_t after, uint64_t seq);
static ngx_http_events_stream_frame_t *ngx_http_events_sse_cached(
    ngx_http_events_stream_ctx_t *ctx);
static u_char *ngx_http_events_sse_buf(ngx_http_events_stream_cache_t *cache,
    ngx_log_t *log);
static void ngx_http_events_sse_unbuf(ngx_http_events_stream_cache_t *cache,
    u_char *p);
static void ngx_http_events_sse_unbuf_chain(
    ngx_http_events_stream_cache_t *cache, ngx_chain_t *cl);
static void ngx_http_events_stream_cache_cleanup(void *data);
static ngx_int_t ngx_http_events_sse_event(ngx_http_events_stream_ctx_t *ctx,
    ngx_http_events_item_t *item);
static ngx_int_t ngx_http_events_sse_cloudevent(
    ngx_http_events_stream_ctx_t *ctx, ngx_http_events_item_t *item,
    ngx_str_t *attrs);
static ngx_int_t ngx_http_events_sse_control(
    ngx_http_events_stream_ctx_t *ctx, const char *name, u_char *id,
    u_char *json, size_t len);
static ngx_int_t ngx_http_events_sse_heartbeat(
    ngx_http_events_stream_ctx_t *ctx);
static ngx_int_t ngx_http_events_sse_flush(ngx_http_events_stream_ctx_t *ctx);
static off_t ngx_http_events_sse_unsent(ngx_http_events_stream_ctx_t *ctx);
static void ngx_http_events_sse_release(ngx_http_events_stream_ctx_t *ctx);
static void ngx_http_events_sse_end(ngx_http_events_stream_ctx_t *ctx,
    ngx_uint_t why);
static void ngx_http_events_sse_writer(ngx_http_request_t *r);


static ngx_http_events_stream_proto_t  ngx_http_events_sse_proto = {
    ngx_http_events_sse_open,
    ngx_http_events_sse_event,
    ngx_http_events_sse_control,
    ngx_http_events_sse_heartbeat,
    ngx_http_events_sse_flush,
    ngx_http_events_sse_unsent,
    ngx_http_events_sse_end
};


/* the last comment of an SSE stream, by why it ends */
static char  *ngx_http_events_sse_ends[] = {
    NULL,                                           /* reset */
    NULL,                                           /* lagging */
    NULL,                                           /* overloaded */
    ": server restarting, reconnect\n\n",
    ": lifetime over, reconnect\n\n",
    ": token expired, reconnect with a new one\n\n"
};


ngx_int_t
ngx_http_events_stream_handler(ngx_http_request_t *r)
{
    ngx_int_t                      rc;
    ngx_uint_t                     ws;
    ngx_pool_cleanup_t            *cln;
    ngx_http_events_loc_conf_t    *elcf;
    ngx_http_events_stream_ctx_t  *ctx;

    if (r->method != NGX_HTTP_GET) {
        return ngx_http_events_http_not_allowed(r, "GET");
    }

    if (!ngx_http_events_auth_access(r, &rc)) {
        return rc;
    }

    if (!ngx_http_events_ws_handshake(r, &ws, &rc)) {
        return rc;
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_events_stream_ctx_t));
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->proto = ws ? &ngx_http_events_ws_proto : &ngx_http_events_sse_proto;
    ctx->cache = ngx_http_events_ipc() ? ngx_http_events_ipc()->streams
                                       : NULL;

    if (!ngx_http_events_stream_accept(r, ctx, &rc)) {
        return rc;
    }

    ngx_http_events_ctx(r)->stream = ctx;

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln->handler = ngx_http_events_stream_cleanup;
    cln->data = ctx;

    rc = ctx->proto->open(ctx);

    if (rc == NGX_ERROR || rc > NGX_OK) {
        return rc;
    }

    if (ctx->overloaded) {
        if (ngx_http_events_stream_overloaded(ctx) != NGX_OK) {
            return NGX_ERROR;
        }

        r->main->count++;
        ngx_http_events_stream_finish(ctx,
                                      NGX_HTTP_EVENTS_STREAM_END_OVERLOADED);
        return NGX_DONE;
    }

    if (ngx_http_events_stream_start(ctx) != NGX_OK) {
        return NGX_ERROR;
    }

    elcf = ngx_http_get_module_loc_conf(r, ngx_http_events_module);

    if (elcf->stream_release_header) {
        ngx_http_events_stream_release(ctx);
    }

    r->main->count++;

    if (ngx_exiting) {
        /*
         * the headers came after this worker began a graceful shutdown
         * and closed its streams: end this one as they were ended, with
         * the retry hint open() wrote, rather than subscribe a stream
         * no one will close
         */
        ngx_http_events_stream_finish(ctx, NGX_HTTP_EVENTS_STREAM_END_RESTART);
        return NGX_DONE;
    }

    ngx_http_events_stream_subscribe(ctx);

    ngx_http_events_stream_pump(ctx);

    return NGX_DONE;
}


/*
 * Past its headers a stream needs none of its header buffer: nearly a
 * tenth of what an idle stream holds goes back (the bytes it used move
 * into the request's pool, with the filters that point into them).
 * nginx's own pointers into the buffer are moved; a third-party module's
 * are not, hence events_stream_release_header off.
 */

static void
ngx_http_events_stream_release(ngx_http_events_stream_ctx_t *ctx)
{
    ngx_str_t                *strs[5 + NGX_HTTP_EVENTS_MAX_PATTERNS
                                   + 2 * NGX_HTTP_EVENTS_MAX_META_FILTERS];
    ngx_uint_t                i, n;
    ngx_http_events_query_t  *q;

    q = &ctx->filter;

    if (q->ntypes > NGX_HTTP_EVENTS_MAX_PATTERNS
        || q->nmeta > NGX_HTTP_EVENTS_MAX_META_FILTERS)
    {
        return;
    }

    n = 0;
    strs[n++] = &q->tenant;
    strs[n++] = &q->rtype;
    strs[n++] = &q->rid;
    strs[n++] = &q->source;
    strs[n++] = &q->last_event_id;

    for (i = 0; i < q->ntypes; i++) {
        strs[n++] = &q->types[i];
    }

    for (i = 0; i < q->nmeta; i++) {
        strs[n++] = &q->meta[i].key;
        strs[n++] = &q->meta[i].value;
    }

    (void) ngx_http_events_http_release_header(ctx->request, strs, n);
}


/*
 * Before it is an EventSource, a bad request may be a 4xx: the tenant,
 * the filters, the token's grant and the worker's room for one more.
 * NGX_OK: the stream may start, ctx is set up; else it was answered.
 */

static ngx_uint_t
ngx_http_events_stream_accept(ngx_http_request_t *r,
    ngx_http_events_stream_ctx_t *ctx, ngx_int_t *rc)
{
    ngx_int_t                    trc;
    ngx_http_events_error_t      err;
    ngx_http_events_query_t     *q;
    ngx_http_events_store_t     *store;
    ngx_http_events_loc_conf_t  *elcf;

    elcf = ngx_http_get_module_loc_conf(r, ngx_http_events_module);
    store = elcf->stream_zone->data;

    ngx_memzero(&err, sizeof(ngx_http_events_error_t));

    trc = ngx_http_events_get_tenant(r, &ctx->filter.tenant);

    if (trc == NGX_ERROR) {
        *rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        return 0;
    }

    if (trc == NGX_DECLINED) {
        *rc = ngx_http_events_stream_refuse(r, 400, "invalid_tenant",
                                            "the request's tenant must be "
                                            "1-64 characters of "
                                            "[A-Za-z0-9_.:-]");
        return 0;
    }

    /* before it is an EventSource, a bad request may be a 4xx */

    ctx->key = ngx_http_events_store_cursor_key(store);
    if (ctx->key == NULL) {
        *rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        return 0;
    }

    if (ngx_http_events_query_parse(&r->args, NGX_HTTP_EVENTS_QUERY_STREAM,
                                    ctx->key, r->pool, &ctx->filter, &err)
        != NGX_OK)
    {
        *rc = err.status ? ngx_http_events_http_send_error(r, &err, NULL)
                         : NGX_HTTP_INTERNAL_SERVER_ERROR;
        return 0;
    }

    if (!ngx_http_events_stream_grants(r, ctx, rc)) {
        return 0;
    }

    q = &ctx->filter;

    /* what comes next for it is what comes next for its tenant */
    ctx->plain = q->ntypes == 0 && q->rtype.len == 0 && q->rid.len == 0
                 && q->source.len == 0 && q->action == 0 && q->nmeta == 0
                 && q->since_ms < 0 && q->until_ms < 0
                 && q->tenant.len <= NGX_HTTP_EVENTS_MAX_TENANT;

    ctx->retry = elcf->stream_retry;

    if (elcf->stream_max_subscribers
        && store->nsubscribers >= elcf->stream_max_subscribers)
    {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "events: %ui streams on zone \"%V\" in this worker, "
                      "stream refused", store->nsubscribers, &store->name);

        /*
         * a 503 would make an EventSource give up for good; a retry in
         * [retry, 2 * retry) so that the refused do not come back at once
         */
        ctx->overloaded = 1;
        ctx->retry = elcf->stream_retry
                     + (ngx_msec_t) ngx_random() % (elcf->stream_retry + 1);
    }

    ctx->request = r;
    ctx->store = store;
    ctx->max_buffer = elcf->stream_max_buffer;
    ctx->heartbeat_ms = elcf->heartbeat;
    ctx->named = elcf->stream_event_field || ctx->filter.named;
    ctx->last = &ctx->out;

    ctx->filter.scan_limit = NGX_HTTP_EVENTS_STREAM_BUDGET;

    return 1;
}


/* the stream's timers, and on the worker's list of the zone's streams */

static void
ngx_http_events_stream_subscribe(ngx_http_events_stream_ctx_t *ctx)
{
    ngx_http_events_store_t     *store;
    ngx_http_events_loc_conf_t  *elcf;

    elcf = ngx_http_get_module_loc_conf(ctx->request, ngx_http_events_module);
    store = ctx->store;

    ngx_http_events_stream_event_init(ctx, &ctx->heartbeat,
                                      ngx_http_events_stream_heartbeat);
    ngx_http_events_stream_event_init(ctx, &ctx->resume,
                                      ngx_http_events_stream_resume);
    ngx_http_events_stream_event_init(ctx, &ctx->lifetime,
                                      ngx_http_events_stream_lifetime);
    ngx_http_events_stream_event_init(ctx, &ctx->expiry,
                                      ngx_http_events_stream_expiry);

    if (elcf->stream_max_lifetime) {
        /* up to a tenth earlier, so that reconnects spread out */
        ngx_add_timer(&ctx->lifetime,
                      elcf->stream_max_lifetime
                      - (ngx_msec_t) ngx_random()
                        % (elcf->stream_max_lifetime / 10 + 1));
    }

    if (ctx->exp) {
        /* "reauth" a little before the token expires, the end at expiry */
        ngx_add_timer(&ctx->expiry,
                      ctx->exp - ngx_time() > 30
                      ? (ngx_msec_t) (ctx->exp - ngx_time() - 30) * 1000
                      : 0);
    }

    ngx_queue_insert_tail(&store->subscribers, &ctx->queue);
    store->nsubscribers++;
    ctx->queued = 1;
    ngx_http_events_store_subscribe(store, 1);
}


/* the doorbells' news and the start of a shutdown come through ipc */

ngx_int_t
ngx_http_events_stream_init_process(ngx_cycle_t *cycle)
{
    ngx_pool_cleanup_t              *cln;
    ngx_http_events_ipc_t           *ipc;
    ngx_http_events_stream_cache_t  *cache;

    ipc = ngx_http_events_ipc();

    if (ipc && ipc->streams == NULL) {
        cln = ngx_pool_cleanup_add(cycle->pool, 0);
        if (cln == NULL) {
            return NGX_ERROR;
        }

        cache = ngx_pcalloc(cycle->pool,
                            sizeof(ngx_http_events_stream_cache_t));
        if (cache == NULL) {
            return NGX_ERROR;
        }

        cln->handler = ngx_http_events_stream_cache_cleanup;
        cln->data = cache;
        ipc->streams = cache;
    }

    if (ngx_http_events_ipc_on_wake(cycle, ngx_http_events_stream_wake)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_http_events_ipc_on_shutdown(cycle,
                                           ngx_http_events_stream_close_all);
}


/* the stream's own timers: cancelable, so that they never hold up exit */

static void
ngx_http_events_stream_event_init(ngx_http_events_stream_ctx_t *ctx,
    ngx_event_t *ev, ngx_event_handler_pt handler)
{
    ev->handler = handler;
    ev->data = ctx;
    ev->log = ctx->request->connection->log;
    ev->cancelable = 1;
}


/*
 * A token's subscribe grant narrows the filters, never widens them.
 * Whether the stream may start; if not, it has been answered with *rc.
 */

static ngx_uint_t
ngx_http_events_stream_grants(ngx_http_request_t *r,
    ngx_http_events_stream_ctx_t *ctx, ngx_int_t *rc)
{
    ngx_int_t                  narrowed;
    ngx_http_events_claims_t  *claims;

    claims = ngx_http_events_auth_claims(r);

    if (claims == NULL) {
        return 1;
    }

    ctx->exp = claims->exp;

    narrowed = ngx_http_events_jwt_narrow(claims->subscribe, claims->nsubscribe,
                                          &ctx->filter.types,
                                          &ctx->filter.ntypes, r->pool);

    if (narrowed == NGX_ERROR) {
        *rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        return 0;
    }

    if (narrowed == NGX_DECLINED) {
        *rc = ngx_http_events_stream_refuse(r, 403, "forbidden",
                                            "the token grants no "
                                            "subscription to these types");
        return 0;
    }

    return 1;
}


static ngx_int_t
ngx_http_events_stream_refuse(ngx_http_request_t *r, ngx_uint_t status,
    const char *code, const char *message)
{
    ngx_http_events_error_t  err;

    ngx_http_discard_request_body(r);
    ngx_http_events_error(&err, status, code, NULL, NULL, NULL, "%s",
                          message);

    return ngx_http_events_http_send_error(r, &err, NULL);
}


/* the SSE head, the retry hint first, and the connection's handlers */

static ngx_int_t
ngx_http_events_sse_open(ngx_http_events_stream_ctx_t *ctx)
{
    u_char                     buf[sizeof("retry: \n\n") + NGX_INT_T_LEN];
    ngx_int_t                  rc;
    ngx_str_t                  value, part;
    ngx_http_request_t        *r;
    ngx_http_core_loc_conf_t  *clcf;

    r = ctx->request;
    ctx->last = &ctx->out;

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = -1;
    ngx_str_set(&r->headers_out.content_type,
                "text/event-stream; charset=utf-8");
    r->headers_out.content_type_len = sizeof("text/event-stream") - 1;
    r->headers_out.content_type_lowcase = NULL;

    ngx_str_set(&value, "no-cache, no-transform");
    if (ngx_http_events_http_add_header(r, "Cache-Control", &value) != NGX_OK) {
        return NGX_ERROR;
    }

    /* for an nginx in front of us: do not buffer this */
    ngx_str_set(&value, "no");
    if (ngx_http_events_http_add_header(r, "X-Accel-Buffering", &value)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

#if (NGX_HTTP_GZIP)
    /* whatever gzip_types says: compression would hold events back */
    r->gzip_tested = 1;
    r->gzip_ok = 0;
#endif

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK) {
        return rc;
    }

    r->read_event_handler = ngx_http_test_reading;
    r->write_event_handler = ngx_http_events_sse_writer;

    /*
     * nginx turns Nagle off only for keep-alive connections: a frame
     * written while the client has not acknowledged the previous one
     * would wait for its delayed ACK, up to 40 ms
     */
    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    if (clcf->tcp_nodelay && ngx_tcp_nodelay(r->connection) != NGX_OK) {
        return NGX_ERROR;
    }

    /*
     * the frames skip the body filters for the write filter (nothing
     * there is for a stream: gzip is off, there are no subrequests),
     * each one a chunk of its own when chunked; only the last chunk
     * goes through the chunked filter, at the end
     */
    ctx->chunked = r->chunked;

    part.data = buf;
    part.len = ngx_sprintf(buf, "retry: %M\n\n", ctx->retry) - buf;

    return ngx_http_events_sse_frame(ctx, &part, 1);
}


/*
 * Where the stream starts: the head, or after the client's cursor.
 * A cursor that cannot be followed is never a 4xx (an EventSource would
 * give up for good): the stream says "reset" and goes on from the head.
 */

static ngx_int_t
ngx_http_events_stream_start(ngx_http_events_stream_ctx_t *ctx)
{
    uint64_t                   epoch, seq;
    ngx_str_t                 *last;
    const char                *reason;
    ngx_http_request_t        *r;
    ngx_http_events_window_t   w;

    r = ctx->request;

    ngx_http_events_store_window(ctx->store, &w);

    ctx->cursor = w.head_seq;
    ctx->epoch = w.epoch;

    last = ngx_http_events_stream_last_id(r, &ctx->filter);

    if (last == NULL || last->len == 0) {
        return NGX_OK;
    }

    reason = NULL;

    if (last->len == 8 && ngx_strncmp(last->data, "earliest", 8) == 0) {
        /* a cluster's log holds what left the ring */
        seq = ctx->store->remote ? 0 : w.evicted_seq;

    } else if (ngx_http_events_cursor_parse(ctx->key, last->data, last->len,
                                            &epoch, &seq)
               != NGX_OK)
    {
        reason = "invalid_cursor";

    } else if (epoch != w.epoch) {
        reason = "epoch_changed";

    } else if (seq < w.evicted_seq && ctx->store->remote == NULL) {
        /* a cluster's log answers for itself, when the stream reads it */
        reason = "cursor_expired";

    } else if (seq > w.head_seq) {
        reason = "invalid_cursor";
    }

    if (reason) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "events: stream resumes from the head: %s", reason);

        return ngx_http_events_stream_reset(ctx, reason);
    }

    ctx->cursor = seq;
    ctx->replay_until = w.head_seq;
    ctx->replaying = 1;

    return NGX_OK;
}


/* the header wins: it is what a reconnecting EventSource sends */

static ngx_str_t *
ngx_http_events_stream_last_id(ngx_http_request_t *r,
    ngx_http_events_query_t *q)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len == sizeof("Last-Event-ID") - 1
            && ngx_strncasecmp(h[i].key.data, (u_char *) "Last-Event-ID",
                               sizeof("Last-Event-ID") - 1) == 0)
        {
            return &h[i].value;
        }
    }

    return q->last_event_id.len ? &q->last_event_id : NULL;
}


/* SSE frames */

static ngx_int_t
ngx_http_events_sse_append(ngx_http_events_stream_ctx_t *ctx,
    u_char *data, size_t len)
{
    size_t               n;
    u_char              *start, *end;
    ngx_buf_t           *b;
    ngx_chain_t         *cl;
    ngx_http_request_t  *r;

    r = ctx->request;

    while (len) {
        b = ctx->tail ? ctx->tail->buf : NULL;

        if (b == NULL || b->last == b->end) {
            cl = ngx_chain_get_free_buf(r->pool, &ctx->free);
            if (cl == NULL) {
                return NGX_ERROR;
            }

            b = cl->buf;
            start = b->start;
            end = b->end;

            if (start == NULL) {
                start = ngx_http_events_sse_buf(ctx->cache,
                                                r->connection->log);
                if (start == NULL) {
                    return NGX_ERROR;
                }

                end = start + NGX_HTTP_EVENTS_STREAM_BUF;
            }

            ngx_memzero(b, sizeof(ngx_buf_t));

            b->start = start;
            b->end = end;
            b->pos = start;
            b->last = start;
            b->temporary = 1;
            b->tag = (ngx_buf_tag_t) &ngx_http_events_module;

            *ctx->last = cl;
            ctx->last = &cl->next;
            ctx->tail = cl;
        }

        n = ngx_min(len, (size_t) (b->end - b->last));
        b->last = ngx_cpymem(b->last, data, n);
        data += n;
        len -= n;
    }

    return NGX_OK;
}


/* one frame of several parts, a chunk of its own if chunked */

static ngx_int_t
ngx_http_events_sse_frame(ngx_http_events_stream_ctx_t *ctx,
    ngx_str_t *parts, ngx_uint_t n)
{
    u_char      *p;
    u_char       chunk[NGX_SIZE_T_LEN + 2];
    size_t       size;
    ngx_uint_t   i;

    if (ctx->chunked) {
        size = 0;

        for (i = 0; i < n; i++) {
            size += parts[i].len;
        }

        p = ngx_sprintf(chunk, "%xz" CRLF, size);

        if (ngx_http_events_sse_append(ctx, chunk, p - chunk) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    for (i = 0; i < n; i++) {
        if (ngx_http_events_sse_append(ctx, parts[i].data, parts[i].len)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    if (ctx->chunked) {
        return ngx_http_events_sse_append(ctx, (u_char *) CRLF, 2);
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_events_sse_event(ngx_http_events_stream_ctx_t *ctx,
    ngx_http_events_item_t *item)
{
    u_char                          *p;
    u_char                           head[sizeof("event: \nid: \ndata: ")
                                          + NGX_HTTP_EVENTS_MAX_TYPE
                                          + NGX_HTTP_EVENTS_CURSOR_LEN];
    ngx_str_t                        parts[4];
    ngx_uint_t                       n;
    ngx_http_events_stream_frame_t  *f;

    f = NULL;

    if (ctx->cache) {
        /* another stream of this wake may have framed it already */
        f = &ctx->cache->frames[item->seq % NGX_HTTP_EVENTS_STREAM_FRAMES];

        if (f->len && f->seq == item->seq && f->store == ctx->store
            && f->epoch == ctx->epoch
            && f->flags == ngx_http_events_sse_flags(ctx))
        {
            return ngx_http_events_sse_append(ctx, f->data, f->len);
        }
    }

    p = head;

    if (ctx->named) {
        p = ngx_sprintf(p, "event: %V\n", &item->type);
    }

    p = ngx_cpymem(p, "id: ", 4);
    p = ngx_cpymem(p, ngx_http_events_stream_cursor(ctx, item->seq),
                   NGX_HTTP_EVENTS_CURSOR_LEN);
    p = ngx_cpymem(p, "\ndata: ", 7);

    parts[0].data = head;
    parts[0].len = p - head;
    n = 1;

    if (ctx->filter.cloudevents) {
        if (ngx_http_events_sse_cloudevent(ctx, item, &parts[n++])
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    parts[n++] = item->json;

    if (ctx->filter.cloudevents) {
        ngx_str_set(&parts[n], "}\n\n");

    } else {
        ngx_str_set(&parts[n], "\n\n");
    }

    n++;

    if (f && ngx_http_events_sse_keep(ctx, f, item->seq, parts, n) == NGX_OK)
    {
        return ngx_http_events_sse_append(ctx, f->data, f->len);
    }

    return ngx_http_events_sse_frame(ctx, parts, n);
}


/*
 * ?format=cloudevents: the event as structured CloudEvents JSON, the
 * envelope as its data; the attributes are built once per event for
 * all the streams a wake frames it for, as the cursor is
 */

static ngx_int_t
ngx_http_events_sse_cloudevent(ngx_http_events_stream_ctx_t *ctx,
    ngx_http_events_item_t *item, ngx_str_t *attrs)
{
    ngx_http_events_ce_t    ce;
    ngx_http_events_ipc_t  *ipc;

    ipc = ngx_http_events_ipc();

    if (ipc->ce_len == 0 || ipc->ce_seq != item->seq
        || ipc->ce_epoch != ctx->epoch)
    {
        if (ngx_http_events_ce_parse(&item->json, &ce) != NGX_OK) {
            ngx_log_error(NGX_LOG_ALERT, ngx_cycle->log, 0,
                          "events: event %uL cannot be a CloudEvent",
                          item->seq);
            return NGX_ERROR;
        }

        ipc->ce_len = ngx_http_events_ce_head(ipc->ce_head, &ce)
                      - ipc->ce_head;
        ipc->ce_seq = item->seq;
        ipc->ce_epoch = ctx->epoch;
    }

    attrs->data = ipc->ce_head;
    attrs->len = ipc->ce_len;

    return NGX_OK;
}


/* what an SSE frame's bytes depend on besides the event */

static ngx_uint_t
ngx_http_events_sse_flags(ngx_http_events_stream_ctx_t *ctx)
{
    return ctx->named | ctx->filter.cloudevents << 1 | ctx->chunked << 2;
}


/* the frame, built into the worker's cache: NGX_DECLINED if not kept */

static ngx_int_t
ngx_http_events_sse_keep(ngx_http_events_stream_ctx_t *ctx,
    ngx_http_events_stream_frame_t *f, uint64_t seq, ngx_str_t *parts,
    ngx_uint_t n)
{
    u_char      *p;
    u_char       chunk[NGX_SIZE_T_LEN + 2];
    size_t       size, total, clen, alloc;
    ngx_uint_t   i;

    size = 0;

    for (i = 0; i < n; i++) {
        size += parts[i].len;
    }

    clen = ctx->chunked ? (size_t) (ngx_sprintf(chunk, "%xz" CRLF, size)
                                    - chunk)
                        : 0;

    total = clen + size + (ctx->chunked ? 2 : 0);

    if (total > NGX_HTTP_EVENTS_STREAM_FRAME_MAX) {
        return NGX_DECLINED;
    }

    f->len = 0;
    f->linked = 0;

    if (f->size < total) {
        alloc = ngx_max(total, 512);

        if (ctx->cache->bytes - f->size + alloc
            > NGX_HTTP_EVENTS_STREAM_FRAMES_MAX)
        {
            return NGX_DECLINED;
        }

        p = ngx_alloc(alloc, ngx_cycle->log);
        if (p == NULL) {
            return NGX_DECLINED;
        }

        if (f->data) {
            ngx_free(f->data);
        }

        ctx->cache->bytes += alloc - f->size;
        f->data = p;
        f->size = alloc;
    }

    p = ngx_cpymem(f->data, chunk, clen);

    for (i = 0; i < n; i++) {
        p = ngx_cpymem(p, parts[i].data, parts[i].len);
    }

    if (ctx->chunked) {
        *p++ = CR; *p++ = LF;
    }

    f->len = p - f->data;
    f->store = ctx->store;
    f->epoch = ctx->epoch;
    f->seq = seq;
    f->flags = ngx_http_events_sse_flags(ctx);

    return NGX_OK;
}


/* the ring said seq comes next after "after" for this stream's tenant */

static void
ngx_http_events_sse_link(ngx_http_events_stream_ctx_t *ctx, uint64_t after,
    uint64_t seq)
{
    ngx_http_events_stream_frame_t  *f;

    f = &ctx->cache->frames[seq % NGX_HTTP_EVENTS_STREAM_FRAMES];

    if (f->len == 0 || f->seq != seq || f->store != ctx->store
        || f->epoch != ctx->epoch || f->flags != ngx_http_events_sse_flags(ctx))
    {
        return;
    }

    f->after = after;
    f->any_tenant = ctx->filter.any_tenant;
    f->tenant_len = ctx->filter.tenant.len;
    ngx_memcpy(f->tenant, ctx->filter.tenant.data, f->tenant_len);
    f->linked = 1;

    ctx->cache->next[after % NGX_HTTP_EVENTS_STREAM_FRAMES] = f;
}


/* the next frame of a plain stream, if a stream before it had it */

static ngx_http_events_stream_frame_t *
ngx_http_events_sse_cached(ngx_http_events_stream_ctx_t *ctx)
{
    ngx_http_events_stream_frame_t  *f;

    f = ctx->cache->next[ctx->cursor % NGX_HTTP_EVENTS_STREAM_FRAMES];

    if (f && f->linked && f->after == ctx->cursor
        && f->store == ctx->store && f->epoch == ctx->epoch
        && f->flags == ngx_http_events_sse_flags(ctx)
        && f->any_tenant == ctx->filter.any_tenant
        && f->tenant_len == ctx->filter.tenant.len
        && ngx_memcmp(f->tenant, ctx->filter.tenant.data, f->tenant_len) == 0)
    {
        return f;
    }

    return NULL;
}


/* the worker keeps a few output buffers for the next stream's frames */

static u_char *
ngx_http_events_sse_buf(ngx_http_events_stream_cache_t *cache,
    ngx_log_t *log)
{
    if (cache && cache->nspare) {
        return cache->spare[--cache->nspare];
    }

    return ngx_alloc(NGX_HTTP_EVENTS_STREAM_BUF, log);
}


static void
ngx_http_events_sse_unbuf(ngx_http_events_stream_cache_t *cache, u_char *p)
{
    if (cache && cache->nspare < NGX_HTTP_EVENTS_STREAM_SPARE) {
        cache->spare[cache->nspare++] = p;
        return;
    }

    ngx_free(p);
}


static void
ngx_http_events_sse_unbuf_chain(ngx_http_events_stream_cache_t *cache,
    ngx_chain_t *cl)
{
    for ( /* void */ ; cl; cl = cl->next) {
        if (cl->buf->start) {
            ngx_http_events_sse_unbuf(cache, cl->buf->start);
            cl->buf->start = NULL;
            cl->buf->end = NULL;
            cl->buf->pos = NULL;
            cl->buf->last = NULL;
        }
    }
}


static void
ngx_http_events_stream_cache_cleanup(void *data)
{
    ngx_http_events_stream_cache_t  *cache = data;

    ngx_uint_t  i;

    for (i = 0; i < NGX_HTTP_EVENTS_STREAM_FRAMES; i++) {
        if (cache->frames[i].data) {
            ngx_free(cache->frames[i].data);
        }
    }

    while (cache->nspare) {
        ngx_free(cache->spare[--cache->nspare]);
    }

    ngx_memzero(cache, sizeof(ngx_http_events_stream_cache_t));
}


/* control frames are always named: they never reach onmessage */

static ngx_int_t
ngx_http_events_sse_control(ngx_http_events_stream_ctx_t *ctx,
    const char *name, u_char *id, u_char *json, size_t len)
{
    u_char     *p;
    u_char      head[sizeof("event: \nid: \ndata: ")
                     + NGX_HTTP_EVENTS_MAX_TYPE
                     + NGX_HTTP_EVENTS_CURSOR_LEN];
    ngx_str_t   parts[3];

    p = ngx_sprintf(head, "event: %s\n", name);

    if (id) {
        p = ngx_cpymem(p, "id: ", 4);
        p = ngx_cpymem(p, id, NGX_HTTP_EVENTS_CURSOR_LEN);
        *p++ = '\n';
    }

    p = ngx_cpymem(p, "data: ", 6);

    parts[0].data = head;
    parts[0].len = p - head;
    parts[1].data = json;
    parts[1].len = len;
    ngx_str_set(&parts[2], "\n\n");

    return ngx_http_events_sse_frame(ctx, parts, 3);
}


static ngx_int_t
ngx_http_events_sse_heartbeat(ngx_http_events_stream_ctx_t *ctx)
{
    ngx_str_t  part = ngx_string(": heartbeat\n\n");

    return ngx_http_events_sse_frame(ctx, &part, 1);
}


/* a wake frames the same event for many streams: its cursor once */

u_char *
ngx_http_events_stream_cursor(ngx_http_events_stream_ctx_t *ctx,
    uint64_t seq)
{
    ngx_http_events_ipc_t  *ipc;

    ipc = ngx_http_events_ipc();

    if (ipc->cursor_seq != seq || ipc->cursor_epoch != ctx->epoch) {
        (void) ngx_http_events_cursor_write(ctx->key, ipc->cursor,
                                            ctx->epoch, seq);
        ipc->cursor_seq = seq;
        ipc->cursor_epoch = ctx->epoch;
    }

    return ipc->cursor;
}


/* "id:" the head, so that an EventSource's next reconnect does not loop */

static ngx_int_t
ngx_http_events_stream_reset(ngx_http_events_stream_ctx_t *ctx,
    const char *reason)
{
    u_char                    *p;
    u_char                     buf[256];
    u_char                     head[NGX_HTTP_EVENTS_CURSOR_LEN];
    ngx_http_events_window_t   w;

    ngx_http_events_store_window(ctx->store, &w);

    p = ngx_sprintf(buf, "{\"reason\":\"%s\",\"oldest\":\"", reason);
    p = ngx_http_events_cursor_write(ctx->key, p, w.epoch, w.evicted_seq);
    p = ngx_cpymem(p, "\",\"head\":\"", sizeof("\",\"head\":\"") - 1);
    p = ngx_http_events_cursor_write(ctx->key, p, w.epoch, w.head_seq);
    p = ngx_cpymem(p, "\"}", 2);

    (void) ngx_http_events_cursor_write(ctx->key, head, w.epoch, w.head_seq);

    ctx->cursor = w.head_seq;
    ctx->epoch = w.epoch;

    return ctx->proto->control(ctx, "reset", head, buf, p - buf);
}


static ngx_int_t
ngx_http_events_stream_ready(ngx_http_events_stream_ctx_t *ctx)
{
    u_char  *p;
    u_char   buf[128];

    p = ngx_sprintf(buf, "{\"replayed\":%ui,\"head\":\"", ctx->replayed);
    p = ngx_http_events_cursor_write(ctx->key, p, ctx->epoch, ctx->cursor);
    p = ngx_cpymem(p, "\"}", 2);

    return ctx->proto->control(ctx, "ready", NULL, buf, p - buf);
}


/*
 * Refused at a limit, a stream still opens (a 200 EventSource, a 101
 * WebSocket): a jittered retry, set in accept(), and a reset that says
 * why.  No "id:": the client keeps its own cursor and resumes from it
 * once it gets in.
 */

static ngx_int_t
ngx_http_events_stream_overloaded(ngx_http_events_stream_ctx_t *ctx)
{
    u_char  *p;
    u_char   buf[sizeof("{\"reason\":\"overloaded\",\"retry\":}")
                 + NGX_INT_T_LEN];

    p = ngx_sprintf(buf, "{\"reason\":\"overloaded\",\"retry\":%M}",
                    ctx->retry);

    return ctx->proto->control(ctx, "reset", NULL, buf, p - buf);
}


/* output */

static off_t
ngx_http_events_sse_unsent(ngx_http_events_stream_ctx_t *ctx)
{
    off_t         n;
    ngx_chain_t  *cl;

    n = 0;

    for (cl = ctx->busy; cl; cl = cl->next) {
        n += ngx_buf_size(cl->buf);
    }

    for (cl = ctx->out; cl; cl = cl->next) {
        n += ngx_buf_size(cl->buf);
    }

    return n;
}


/*
 * A heartbeat after this long without output.  The timer is not moved
 * at every flush (a delete and an insert in the timer tree per
 * delivery): the flush only notes when, and the timer, when it fires
 * early, waits for the rest.
 */

ngx_int_t
ngx_http_events_stream_flush(ngx_http_events_stream_ctx_t *ctx)
{
    if (ctx->proto->flush(ctx) != NGX_OK) {
        return NGX_ERROR;
    }

    if (!ctx->done && !ngx_exiting) {
        ctx->flushed = ngx_current_msec;

        if (!ctx->heartbeat.timer_set) {
            ngx_add_timer(&ctx->heartbeat, ctx->heartbeat_ms);
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_events_sse_flush(ngx_http_events_stream_ctx_t *ctx)
{
    ngx_int_t                  rc;
    ngx_event_t               *wev;
    ngx_connection_t          *c;
    ngx_http_request_t        *r;
    ngx_http_core_loc_conf_t  *clcf;

    r = ctx->request;
    c = r->connection;
    wev = c->write;

    if (ctx->out == NULL && ctx->busy == NULL && !c->buffered) {
        return NGX_OK;
    }

    if (ctx->tail) {
        /* past postpone_output at once */
        ctx->tail->buf->flush = 1;
    }

    rc = ngx_http_write_filter(r, ctx->out);

    ngx_chain_update_chains(r->pool, &ctx->free, &ctx->busy, &ctx->out,
                            (ngx_buf_tag_t) &ngx_http_events_module);

    ctx->last = &ctx->out;
    ctx->tail = NULL;

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    if (ctx->busy || c->buffered) {
        if (!wev->delayed) {
            ngx_add_timer(wev, clcf->send_timeout);
        }

        if (ngx_handle_write_event(wev, clcf->send_lowat) != NGX_OK) {
            return NGX_ERROR;
        }

    } else {
        if (wev->timer_set) {
            ngx_del_timer(wev);
        }

        ngx_http_events_sse_release(ctx);
    }

    return NGX_OK;
}


/* the client took everything: give the buffers' memory back */

static void
ngx_http_events_sse_release(ngx_http_events_stream_ctx_t *ctx)
{
    ngx_http_events_sse_unbuf_chain(ctx->cache, ctx->free);
}


void
ngx_http_events_stream_pump(ngx_http_events_stream_ctx_t *ctx)
{
    off_t                unsent;
    ngx_int_t            rc;
    ngx_connection_t    *c;
    ngx_http_request_t  *r;

    if (ctx->done) {
        return;
    }

    r = ctx->request;
    c = r->connection;

    if (ngx_http_events_store_epoch(ctx->store) != ctx->epoch) {
        /* a cluster's log began again: this cursor means nothing now */
        ngx_log_error(NGX_LOG_INFO, c->log, 0,
                      "events: the epoch of zone \"%V\" changed under a "
                      "stream", &ctx->store->name);

        if (ngx_http_events_stream_reset(ctx, "epoch_changed") != NGX_OK) {
            ngx_http_finalize_request(r, NGX_ERROR);
            return;
        }

        ngx_http_events_stream_finish(ctx, NGX_HTTP_EVENTS_STREAM_END_RESET);
        return;
    }

    unsent = ctx->proto->unsent(ctx);

    if (unsent >= (off_t) ctx->max_buffer) {
        if (ctx->stalled && c->sent == ctx->stalled_sent) {
            ngx_http_events_stream_cut(ctx);
            return;
        }

        /* wait for the writer; cut if it does not move by the next turn */
        ctx->stalled = 1;
        ctx->stalled_sent = c->sent;
        return;
    }

    ctx->stalled = 0;

    if (ctx->backfill) {
        /* a page of the cluster's log is on its way */
        return;
    }

    if (ctx->store->remote) {
        rc = ngx_http_events_stream_backfill(ctx);

        if (rc == NGX_ERROR) {
            ngx_http_finalize_request(r, NGX_ERROR);
            return;
        }

        if (rc == NGX_DONE) {
            /* what was framed goes now, the page when it comes */
            if (ngx_http_events_stream_flush(ctx) != NGX_OK) {
                ngx_http_finalize_request(r, NGX_ERROR);
            }

            return;
        }
    }

    rc = ngx_http_events_stream_frame(ctx, unsent);

    if (rc == NGX_DECLINED) {
        /* the window moved past this stream: it resumes from the head */
        ngx_log_error(NGX_LOG_INFO, c->log, 0,
                      "events: stream fell out of the window of zone \"%V\"",
                      &ctx->store->name);

        ngx_http_events_store_count(ctx->store, 0, 1);

        if (ngx_http_events_stream_reset(ctx, "lagging") != NGX_OK) {
            ngx_http_finalize_request(r, NGX_ERROR);
            return;
        }

        ngx_http_events_stream_finish(ctx,
                                      NGX_HTTP_EVENTS_STREAM_END_LAGGING);
        return;
    }

    if (rc == NGX_ERROR) {
        ngx_http_finalize_request(r, NGX_ERROR);
        return;
    }

    if (rc == NGX_AGAIN && !ctx->resume.posted) {
        /* more to go: in the next turn of the event loop, not this one */
        ngx_post_event(&ctx->resume, &ngx_posted_next_events);
    }

    if (ctx->replaying && ctx->cursor >= ctx->replay_until) {
        ctx->replaying = 0;

        if (ngx_http_events_stream_ready(ctx) != NGX_OK) {
            ngx_http_finalize_request(r, NGX_ERROR);
            return;
        }
    }

    if (ngx_http_events_stream_flush(ctx) != NGX_OK) {
        ngx_http_finalize_request(r, NGX_ERROR);
    }
}


/*
 * A cluster's node: a stream whose cursor is older than the ring (a
 * resume by Last-Event-ID or "earliest", or one that fell behind) reads
 * the cluster's log a page at a time until the ring has the rest.
 * NGX_DONE: a page is on its way (or the log is retried later); NGX_OK:
 * the ring has what comes next.
 */

static ngx_int_t
ngx_http_events_stream_backfill(ngx_http_events_stream_ctx_t *ctx)
{
    ngx_http_events_store_t   *store;
    ngx_http_events_window_t   w;

    store = ctx->store;

    ngx_http_events_store_window(store, &w);

    if (ctx->cursor >= w.evicted_seq) {
        return NGX_OK;
    }

    if (ctx->resume.timer_set) {
        /* the log did not answer: not again before the timer */
        return NGX_DONE;
    }

    ctx->backfill_pool = ngx_create_pool(4096, ctx->request->connection->log);
    if (ctx->backfill_pool == NULL) {
        return NGX_ERROR;
    }

    ctx->backfill_q = ctx->filter;
    ctx->backfill_q.after = ctx->cursor;
    ctx->backfill_q.has_after = 1;
    ctx->backfill_q.desc = 0;
    ctx->backfill_q.before = 0;
    ctx->backfill_q.limit = NGX_HTTP_EVENTS_STREAM_BACKFILL;

    ngx_memzero(&ctx->backfill_res, sizeof(ngx_http_events_result_t));
    ctx->backfill_res.window = w;

    ctx->backfill = store->remote->query(store->remote->data,
                                         &ctx->backfill_q,
                                         &ctx->backfill_res,
                                         ctx->backfill_pool,
                                         ngx_http_events_stream_backfilled,
                                         ctx);

    if (ctx->backfill == NULL) {
        ngx_http_events_stream_backfill_end(ctx);
        ngx_add_timer(&ctx->resume, NGX_HTTP_EVENTS_STREAM_RETRY);
    }

    return NGX_DONE;
}


static void
ngx_http_events_stream_backfilled(void *data, ngx_int_t rc)
{
    ngx_http_events_stream_ctx_t  *ctx = data;

    ngx_uint_t                 i;
    ngx_connection_t          *c;
    ngx_http_request_t        *r;
    ngx_http_events_item_t    *items;
    ngx_http_events_result_t  *res;

    r = ctx->request;
    c = r->connection;
    res = &ctx->backfill_res;

    ctx->backfill = NULL;

    if (rc != NGX_OK) {
        ngx_log_error(NGX_LOG_INFO, c->log, 0,
                      "events: the cluster's log did not answer a stream's "
                      "read of zone \"%V\", retried", &ctx->store->name);

        ngx_http_events_stream_backfill_end(ctx);
        ngx_add_timer(&ctx->resume, NGX_HTTP_EVENTS_STREAM_RETRY);
        return;
    }

    if (res->expired) {
        ngx_http_events_stream_backfill_end(ctx);

        ngx_log_error(NGX_LOG_INFO, c->log, 0,
                      "events: stream resumes from the head: "
                      "cursor_expired");

        if (ngx_http_events_stream_reset(ctx, "cursor_expired") != NGX_OK) {
            ngx_http_finalize_request(r, NGX_ERROR);
            ngx_http_run_posted_requests(c);
            return;
        }

    } else {
        items = res->items.elts;

        for (i = 0; i < res->items.nelts; i++) {
            if (ctx->proto->event(ctx, &items[i]) != NGX_OK) {
                ngx_http_events_stream_backfill_end(ctx);
                ngx_http_finalize_request(r, NGX_ERROR);
                ngx_http_run_posted_requests(c);
                return;
            }

            ctx->cursor = items[i].seq;
            ctx->replayed += ctx->replaying;
        }

        if (res->has_next) {
            ctx->cursor = ngx_max(ctx->cursor, res->next);
        }

        ngx_http_events_store_count(ctx->store, res->items.nelts, 0);
        ngx_http_events_stream_backfill_end(ctx);
    }

    ngx_http_events_stream_pump(ctx);
    ngx_http_run_posted_requests(c);
}


static void
ngx_http_events_stream_backfill_end(ngx_http_events_stream_ctx_t *ctx)
{
    if (ctx->backfill) {
        ctx->store->remote->cancel_read(ctx->backfill);
        ctx->backfill = NULL;
    }

    if (ctx->backfill_pool) {
        ngx_destroy_pool(ctx->backfill_pool);
        ctx->backfill_pool = NULL;
    }
}


/*
 * The events after the cursor, framed.  A turn frames at most
 * NGX_HTTP_EVENTS_STREAM_TURN bytes: a stream far behind then holds
 * little memory, and it goes on in the next turn of the event loop,
 * after other streams and requests had theirs.  NGX_AGAIN: more to go;
 * NGX_DECLINED: the window moved past the cursor; NGX_ERROR; else done
 * for now.
 */

static ngx_int_t
ngx_http_events_stream_frame(ngx_http_events_stream_ctx_t *ctx,
    off_t unsent)
{
    size_t                           framed, len;
    uint64_t                         last, after;
    ngx_int_t                        rc;
    ngx_uint_t                       looks, streamed, cached;
    ngx_http_events_ipc_t           *ipc;
    ngx_http_events_item_t           item;
    ngx_http_events_stream_frame_t  *f;

    ipc = ngx_http_events_ipc();

    streamed = 0;
    framed = 0;
    rc = NGX_DONE;

    /* a plain SSE stream may take the frames another stream had */
    cached = ctx->plain && ctx->cache
             && ctx->proto == &ngx_http_events_sse_proto;

    for (looks = 0; looks < NGX_HTTP_EVENTS_STREAM_LOOKS; looks++) {

        f = cached ? ngx_http_events_sse_cached(ctx) : NULL;

        if (f) {
            if (ngx_http_events_sse_append(ctx, f->data, f->len) != NGX_OK) {
                rc = NGX_ERROR;
                break;
            }

            ctx->cursor = f->seq;
            len = f->len;
            rc = NGX_OK;

        } else {
            after = ctx->cursor;

            rc = ngx_http_events_store_next(ctx->store, &ctx->filter,
                                            ctx->cursor,
                                            NGX_HTTP_EVENTS_STREAM_BUDGET,
                                            &ipc->scratch, &item, &last);

            ctx->cursor = ngx_max(ctx->cursor, last);

            if (rc == NGX_OK) {
                if (ctx->proto->event(ctx, &item) != NGX_OK) {
                    rc = NGX_ERROR;
                    break;
                }

                if (cached) {
                    ngx_http_events_sse_link(ctx, after, item.seq);
                }

                len = item.json.len;
            }
        }

        if (rc == NGX_OK) {
            streamed++;
            ctx->replayed += ctx->replaying;
            unsent += len;
            framed += len;

            if (unsent >= (off_t) ctx->max_buffer) {
                break;
            }

            if (framed >= NGX_HTTP_EVENTS_STREAM_TURN) {
                rc = NGX_AGAIN;
                break;
            }

            looks--;
            continue;
        }

        if (rc != NGX_AGAIN) {
            break;
        }
    }

    ngx_http_events_store_count(ctx->store, streamed, 0);

    return rc;
}


/* a client that does not read: closed, it resumes from its last cursor */

static void
ngx_http_events_stream_cut(ngx_http_events_stream_ctx_t *ctx)
{
    ngx_http_request_t  *r;

    r = ctx->request;

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "events: stream cut, the client does not read "
                  "(%O bytes unsent)", ctx->proto->unsent(ctx));

    ngx_http_events_store_count(ctx->store, 0, 1);
    ngx_http_events_stream_unsubscribe(ctx);

    ctx->done = 1;
    r->connection->error = 1;

    ngx_http_finalize_request(r, NGX_ERROR);
}


/* a clean end: off the list, then the proto's last frames */

static void
ngx_http_events_stream_finish(ngx_http_events_stream_ctx_t *ctx,
    ngx_uint_t why)
{
    if (ctx->done) {
        return;
    }

    ngx_http_events_stream_detach(ctx);

    ctx->proto->end(ctx, why);
}


/* the last comment, the end of the chunked body */

static void
ngx_http_events_sse_end(ngx_http_events_stream_ctx_t *ctx, ngx_uint_t why)
{
    char                *comment;
    ngx_int_t            rc;
    ngx_str_t            part;
    ngx_http_request_t  *r;

    r = ctx->request;
    comment = ngx_http_events_sse_ends[why];

    part.data = (u_char *) comment;
    part.len = comment ? ngx_strlen(comment) : 0;

    if (comment && ngx_http_events_sse_frame(ctx, &part, 1) != NGX_OK) {
        ngx_http_finalize_request(r, NGX_ERROR);
        return;
    }

    if (ngx_http_events_stream_flush(ctx) != NGX_OK) {
        ngx_http_finalize_request(r, NGX_ERROR);
        return;
    }

    rc = ngx_http_send_special(r, NGX_HTTP_LAST | NGX_HTTP_FLUSH);

    ngx_http_finalize_request(r, rc == NGX_ERROR ? NGX_ERROR : NGX_OK);
}


static void
ngx_http_events_sse_writer(ngx_http_request_t *r)
{
    ngx_event_t                   *wev;
    ngx_connection_t              *c;
    ngx_http_events_ctx_t         *rctx;
    ngx_http_events_stream_ctx_t  *ctx;

    c = r->connection;
    wev = c->write;
    rctx = ngx_http_get_module_ctx(r, ngx_http_events_module);
    ctx = rctx ? rctx->stream : NULL;

    if (wev->timedout) {
        ngx_log_error(NGX_LOG_INFO, c->log, NGX_ETIMEDOUT,
                      "events: stream client timed out");
        c->timedout = 1;
        ngx_http_finalize_request(r, NGX_HTTP_REQUEST_TIME_OUT);
        return;
    }

    if (wev->delayed || ctx == NULL || ctx->done) {
        return;
    }

    if (ngx_http_events_stream_flush(ctx) != NGX_OK) {
        ngx_http_finalize_request(r, NGX_ERROR);
        return;
    }

    ngx_http_events_stream_pump(ctx);
}


static void
ngx_http_events_stream_heartbeat(ngx_event_t *ev)
{
    ngx_msec_t                     elapsed;
    ngx_connection_t              *c;
    ngx_http_events_stream_ctx_t  *ctx;

    ctx = ev->data;
    c = ctx->request->connection;

    if (ctx->done || ctx->stalled) {
        return;
    }

    elapsed = ngx_current_msec - ctx->flushed;

    if (elapsed < ctx->heartbeat_ms) {
        /* there was output meanwhile */
        ngx_add_timer(ev, ctx->heartbeat_ms - elapsed);
        return;
    }

    if (ctx->proto->heartbeat(ctx) != NGX_OK
        || ngx_http_events_stream_flush(ctx) != NGX_OK)
    {
        ngx_http_finalize_request(ctx->request, NGX_ERROR);
    }

    ngx_http_run_posted_requests(c);
}


static void
ngx_http_events_stream_lifetime(ngx_event_t *ev)
{
    ngx_connection_t              *c;
    ngx_http_events_stream_ctx_t  *ctx;

    ctx = ev->data;
    c = ctx->request->connection;

    ngx_http_events_stream_finish(ctx, NGX_HTTP_EVENTS_STREAM_END_LIFETIME);
    ngx_http_run_posted_requests(c);
}


static void
ngx_http_events_stream_expiry(ngx_event_t *ev)
{
    u_char                        *p;
    u_char                         buf[96];
    ngx_connection_t              *c;
    ngx_http_events_stream_ctx_t  *ctx;

    ctx = ev->data;
    c = ctx->request->connection;

    if (ctx->done) {
        return;
    }

    if (ngx_time() >= ctx->exp) {
        ngx_http_events_stream_finish(ctx,
                                      NGX_HTTP_EVENTS_STREAM_END_EXPIRED);
        ngx_http_run_posted_requests(c);
        return;
    }

    p = ngx_sprintf(buf, "{\"exp\":%T}", ctx->exp);

    if (ctx->proto->control(ctx, "reauth", NULL, buf, p - buf) != NGX_OK
        || ngx_http_events_stream_flush(ctx) != NGX_OK)
    {
        ngx_http_finalize_request(ctx->request, NGX_ERROR);
        ngx_http_run_posted_requests(c);
        return;
    }

    ngx_add_timer(&ctx->expiry, (ngx_msec_t) (ctx->exp - ngx_time()) * 1000);

    ngx_http_run_posted_requests(c);
}


static void
ngx_http_events_stream_resume(ngx_event_t *ev)
{
    ngx_connection_t              *c;
    ngx_http_events_stream_ctx_t  *ctx;

    ctx = ev->data;
    c = ctx->request->connection;

    ngx_http_events_stream_pump(ctx);
    ngx_http_run_posted_requests(c);
}


/*
 * Called for this worker's streams on a zone when it has news.  A turn
 * of the event loop serves at most NGX_HTTP_EVENTS_STREAM_WAKE streams,
 * moving each to the back of the queue, and the next turn goes on: a
 * fan-out to thousands of streams does not hold up the requests (and
 * publishes) that arrive meanwhile.
 */

static void
ngx_http_events_stream_wake(ngx_http_events_store_t *store)
{
    if (store->nsubscribers == 0) {
        return;
    }

    if (store->wake_more.handler == NULL) {
        store->wake_more.handler = ngx_http_events_stream_wake_more;
        store->wake_more.data = store;
        store->wake_more.log = ngx_cycle->log;
    }

    store->wake_left = store->nsubscribers;

    ngx_http_events_stream_wake_turn(store);
}


static void
ngx_http_events_stream_wake_more(ngx_event_t *ev)
{
    ngx_http_events_stream_wake_turn(ev->data);
}


static void
ngx_http_events_stream_wake_turn(ngx_http_events_store_t *store)
{
    ngx_uint_t                     n;
    ngx_queue_t                   *q;
    ngx_connection_t              *c;
    ngx_http_events_stream_ctx_t  *ctx;

    for (n = 0;
         n < NGX_HTTP_EVENTS_STREAM_WAKE && store->wake_left
         && !ngx_queue_empty(&store->subscribers);
         n++)
    {
        store->wake_left--;

        q = ngx_queue_head(&store->subscribers);
        ngx_queue_remove(q);
        ngx_queue_insert_tail(&store->subscribers, q);

        ctx = ngx_queue_data(q, ngx_http_events_stream_ctx_t, queue);
        c = ctx->request->connection;

        ngx_http_events_stream_pump(ctx);
        ngx_http_run_posted_requests(c);
    }

    if (store->wake_left && !ngx_queue_empty(&store->subscribers)
        && !store->wake_more.posted && !ngx_exiting)
    {
        ngx_post_event(&store->wake_more, &ngx_posted_next_events);
    }
}


/* graceful shutdown: every stream ends cleanly, clients reconnect */

static void
ngx_http_events_stream_close_all(ngx_cycle_t *cycle)
{
    ngx_uint_t                     i;
    ngx_queue_t                   *q;
    ngx_shm_zone_t               **zones;
    ngx_connection_t              *c;
    ngx_http_events_store_t       *store;
    ngx_http_events_main_conf_t   *emcf;
    ngx_http_events_stream_ctx_t  *ctx;

    emcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_events_module);
    zones = emcf->zones.elts;

    for (i = 0; i < emcf->zones.nelts; i++) {
        store = zones[i]->data;

        if (store->wake_more.posted) {
            ngx_delete_posted_event(&store->wake_more);
        }

        while (!ngx_queue_empty(&store->subscribers)) {
            q = ngx_queue_head(&store->subscribers);
            ctx = ngx_queue_data(q, ngx_http_events_stream_ctx_t, queue);
            c = ctx->request->connection;

            if (ctx->done) {
                /* ending already: only let go of it, or this never ends */
                ngx_http_events_stream_unsubscribe(ctx);
                continue;
            }

            /* finish() unlinks it, whatever happens to the request */
            ngx_http_events_stream_finish(ctx,
                                          NGX_HTTP_EVENTS_STREAM_END_RESTART);
            ngx_http_run_posted_requests(c);
        }
    }
}


/* done with: no more frames, the stream's own or the proto's end */

void
ngx_http_events_stream_detach(ngx_http_events_stream_ctx_t *ctx)
{
    ctx->done = 1;
    ngx_http_events_stream_unsubscribe(ctx);
}


/* off the worker's list, and no timer or posted event left behind */

static void
ngx_http_events_stream_unsubscribe(ngx_http_events_stream_ctx_t *ctx)
{
    if (ctx->queued) {
        ctx->queued = 0;
        ngx_queue_remove(&ctx->queue);
        ctx->store->nsubscribers--;
        ngx_http_events_store_subscribe(ctx->store, -1);
    }

    if (ctx->heartbeat.timer_set) {
        ngx_del_timer(&ctx->heartbeat);
    }

    if (ctx->lifetime.timer_set) {
        ngx_del_timer(&ctx->lifetime);
    }

    if (ctx->expiry.timer_set) {
        ngx_del_timer(&ctx->expiry);
    }

    if (ctx->resume.posted) {
        ngx_delete_posted_event(&ctx->resume);
    }

    if (ctx->resume.timer_set) {
        ngx_del_timer(&ctx->resume);
    }

    ngx_http_events_stream_backfill_end(ctx);
}


static void
ngx_http_events_stream_cleanup(void *data)
{
    ngx_http_events_stream_ctx_t  *ctx = data;

    /* unsubscribe() also deletes the stream's timers and posted event */
    ctx->done = 1;
    ngx_http_events_stream_unsubscribe(ctx);

    /* nothing is written after this: the buffers go back to the worker */
    ngx_http_events_sse_unbuf_chain(ctx->cache, ctx->free);
    ngx_http_events_sse_unbuf_chain(ctx->cache, ctx->busy);
    ngx_http_events_sse_unbuf_chain(ctx->cache, ctx->out);
}
