
/*
 * Copyright (C) ngx_http_events_module authors
 */


/*
 * GET /events with "Accept: application/x-ndjson": every matching
 * event, oldest first, one envelope per line, without paging, for
 * audit exports.  The list's filters apply; "after" resumes an export
 * that broke off.  The export ends at the head the request found, so it
 * ends even while events keep coming.
 *
 * It reads as a stream does, one event at a time through
 * ngx_http_events_store_next(): the ring, and the history on disk
 * before it where a journal has one.  What it writes is bounded: lines
 * go into at most NGX_HTTP_EVENTS_EXPORT_BUFS buffers of
 * NGX_HTTP_EVENTS_EXPORT_BUF bytes, reused through free and busy chains;
 * when they are all unsent the export waits for the socket to drain
 * (the write event), and a turn writes at most NGX_HTTP_EVENTS_EXPORT_TURN
 * events before it lets other requests run.  A slow reader costs the
 * worker those buffers, not the size of the export.
 *
 * A cluster's zone: what left the node's ring is read from the log in
 * Redis a page (NGX_HTTP_EVENTS_EXPORT_PAGE events) at a time, as the
 * list reads it (remote->query()), into a pool of the page's own that
 * goes when its lines have; then the ring takes over.  A page's lines
 * go through the same buffers, so a slow reader holds back the next
 * read from Redis as it holds back the ring.
 *
 * Once the 200 has gone nothing can be said in an error, so an export
 * that cannot go on ends as one at a shutdown does (below), with a
 * reason in its last line: "cluster_unavailable" when a cluster's log
 * cannot be read (resume from "next": no gap), "cursor_expired" when
 * retention removed the events it was about to read ("next" is past
 * them: they are skipped, and the line is how the client learns it).
 * A client tells such an end from a truncated body, and neither from a
 * silently shortened export.
 *
 * A graceful shutdown (reload, quit) ends every export of the worker
 * at a line boundary: no event after those already in its buffers, then
 * one more line, {"has_more":true,"next":CURSOR}, where to resume with
 * "after", and the body's end.  The reader gets
 * NGX_HTTP_EVENTS_EXPORT_DRAIN ms to take what is buffered; after that
 * the connection is closed (a truncated body), so an old worker never
 * waits on a slow reader for longer.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_events_module.h"
#include "ngx_http_events_store.h"
#include "ngx_http_events_cursor.h"
#include "ngx_http_events_http.h"
#include "ngx_http_events_ipc.h"
#include "ngx_http_events_export.h"


#define NGX_HTTP_EVENTS_EXPORT_BUF     65536
#define NGX_HTTP_EVENTS_EXPORT_BUFS    4
#define NGX_HTTP_EVENTS_EXPORT_TURN    512
#define NGX_HTTP_EVENTS_EXPORT_BUDGET  1024
#define NGX_HTTP_EVENTS_EXPORT_PAGE    100
#define NGX_HTTP_EVENTS_EXPORT_DRAIN   5000


struct ngx_http_events_export_ctx_s {
    ngx_http_request_t         *request;
    ngx_http_events_store_t    *store;
    ngx_http_events_query_t     q;
    uint64_t                    cursor;
    uint64_t                    head;           /* where the export ends */
    ngx_buf_t                  *buf;            /* being filled */
    ngx_buf_t                  *big;            /* one line > a buffer */
    ngx_chain_t                *free;
    ngx_chain_t                *busy;
    ngx_uint_t                  nbufs;
    ngx_str_t                   pending;        /* a line with no room */
    size_t                      pending_size;
    uint64_t                    exported;
    uint64_t                    epoch;

    /* a page from a cluster's log */
    void                       *handle;         /* its read, in flight */
    ngx_pool_t                 *page_pool;      /* reset for each page */
    ngx_http_events_query_t     page_q;
    ngx_http_events_result_t    page;
    ngx_uint_t                  page_i;         /* its next line */

    ngx_queue_t                 queue;          /* store->exports */
    ngx_msec_t                  deadline;       /* closing: the drain's */
    uint64_t                    stop_seq;       /* stopped: resume after */
    const char                 *reason;         /* stopped: why */
    unsigned                    paging:1;       /* a page is out */
    unsigned                    deferred:1;     /* the 200 waits for it */
    unsigned                    queued:1;
    unsigned                    closing:1;
    unsigned                    stopped:1;      /* cannot go on: ends */
    unsigned                    resumed:1;      /* the last line is in */
    unsigned                    ended:1;        /* last_buf went */
};


static ngx_int_t ngx_http_events_export_begin(
    ngx_http_events_export_ctx_t *ctx);
static ngx_int_t ngx_http_events_export_unavailable(ngx_http_request_t *r);
static void ngx_http_events_export_write(ngx_http_request_t *r);
static void ngx_http_events_export_run(ngx_http_events_export_ctx_t *ctx);
static ngx_int_t ngx_http_events_export_line(
    ngx_http_events_export_ctx_t *ctx, ngx_str_t *json);
static ngx_int_t ngx_http_events_export_big(
    ngx_http_events_export_ctx_t *ctx, ngx_str_t *json);
static ngx_int_t ngx_http_events_export_keep(
    ngx_http_events_export_ctx_t *ctx, ngx_str_t *json);
static void ngx_http_events_export_wait(ngx_http_events_export_ctx_t *ctx);
static ngx_int_t ngx_http_events_export_send(
    ngx_http_events_export_ctx_t *ctx, ngx_chain_t *out);
static void ngx_http_events_export_finish(ngx_http_events_export_ctx_t *ctx);
static ngx_int_t ngx_http_events_export_fetch(
    ngx_http_events_export_ctx_t *ctx, ngx_http_events_window_t *w);
static void ngx_http_events_export_fetched(void *data, ngx_int_t rc);
static ngx_int_t ngx_http_events_export_page(
    ngx_http_events_export_ctx_t *ctx);
static void ngx_http_events_export_page_free(
    ngx_http_events_export_ctx_t *ctx);
static void ngx_http_events_export_stop(ngx_http_events_export_ctx_t *ctx,
    const char *reason, uint64_t seq);
static void ngx_http_events_export_close(ngx_http_events_export_ctx_t *ctx);
static void ngx_http_events_export_close_all(ngx_cycle_t *cycle);
static void ngx_http_events_export_cleanup(void *data);


static ngx_str_t  ngx_http_events_export_type =
    ngx_string("application/x-ndjson");


/* whether the request asks for NDJSON: its Accept names it */

ngx_uint_t
ngx_http_events_export_wanted(ngx_http_request_t *r)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                return 0;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len == sizeof("Accept") - 1
            && ngx_strncasecmp(h[i].key.data, (u_char *) "Accept",
                               sizeof("Accept") - 1) == 0
            && ngx_strlcasestrn(h[i].value.data,
                                h[i].value.data + h[i].value.len,
                                (u_char *) "application/x-ndjson",
                                sizeof("application/x-ndjson") - 2)
               != NULL)
        {
            return 1;
        }
    }
}


/*
 * The query is parsed and checked, its cursor in the window: answer
 * 200 and go.  The parameters of pages make no sense here.
 */

ngx_int_t
ngx_http_events_export_start(ngx_http_request_t *r,
    ngx_http_events_store_t *store, ngx_http_events_query_t *q,
    ngx_http_events_window_t *w)
{
    ngx_int_t                      rc;
    ngx_str_t                      v;
    const char                    *param;
    ngx_http_events_ctx_t         *ectx;
    ngx_pool_cleanup_t            *cln;
    ngx_http_events_error_t        err;
    ngx_http_events_export_ctx_t  *ctx;

    param = q->before ? "before"
            : ngx_http_arg(r, (u_char *) "limit", 5, &v) == NGX_OK ? "limit"
            : ngx_http_arg(r, (u_char *) "order", 5, &v) == NGX_OK ? "order"
            : NULL;

    if (param) {
        ngx_http_events_error(&err, 400, "invalid_parameter", "param", NULL,
                              param, "an NDJSON export has every matching "
                              "event, oldest first, without pages: drop "
                              "\"limit\", \"order\" and \"before\"");
        return ngx_http_events_http_send_error(r, &err, NULL);
    }

    ectx = ngx_http_events_ctx(r);
    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_events_export_ctx_t));
    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (ectx == NULL || ctx == NULL || cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ectx->export = ctx;

    ctx->request = r;
    ctx->store = store;
    ctx->q = *q;
    ctx->cursor = q->has_after ? q->after : 0;

    if (!q->has_after && store->remote == NULL) {
        /*
         * from the oldest retained: a ring that wrapped (and has no
         * journal) no longer holds seq 1, nor what came after it
         */
        ctx->cursor = w->evicted_seq;
    }
    ctx->head = w->head_seq;
    ctx->epoch = w->epoch;

    cln->handler = ngx_http_events_export_cleanup;
    cln->data = ctx;

    if (store->remote && r->method != NGX_HTTP_HEAD && !ngx_exiting
        && ctx->cursor < w->evicted_seq)
    {
        /*
         * the first page from the cluster's log before the 200: a log
         * that cannot be read is a 503 now, not a cut export
         */
        if (ngx_http_events_export_fetch(ctx, w) != NGX_OK) {
            return ngx_http_events_export_unavailable(r);
        }

        ctx->deferred = 1;
        r->main->count++;
        r->write_event_handler = ngx_http_request_empty_handler;

        ngx_queue_insert_tail(&store->exports, &ctx->queue);
        ctx->queued = 1;

        return NGX_DONE;
    }

    rc = ngx_http_events_export_begin(ctx);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    r->main->count++;

    ngx_queue_insert_tail(&store->exports, &ctx->queue);
    ctx->queued = 1;

    if (ngx_exiting) {
        /* after this worker's exports were ended: this one ends too */
        ctx->closing = 1;
        ctx->deadline = ngx_current_msec + NGX_HTTP_EVENTS_EXPORT_DRAIN;
    }

    ngx_http_events_export_run(ctx);

    return NGX_DONE;
}


/* the 200 and its headers; the body follows on write events */

static ngx_int_t
ngx_http_events_export_begin(ngx_http_events_export_ctx_t *ctx)
{
    ngx_int_t            rc;
    ngx_http_request_t  *r;

    r = ctx->request;

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = -1;
    r->headers_out.content_type = ngx_http_events_export_type;
    r->headers_out.content_type_len = ngx_http_events_export_type.len;
    r->headers_out.content_type_lowcase = NULL;

    if (r->method == NGX_HTTP_HEAD) {
        r->header_only = 1;
    }

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    r->write_event_handler = ngx_http_events_export_write;

    return NGX_OK;
}


static ngx_int_t
ngx_http_events_export_unavailable(ngx_http_request_t *r)
{
    ngx_str_t                retry;
    ngx_http_events_error_t  err;

    ngx_str_set(&retry, "1");

    if (ngx_http_events_http_add_header(r, "Retry-After", &retry)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_events_error(&err, 503, "cluster_unavailable", NULL, NULL, NULL,
                          "what this node's ring no longer holds is read "
                          "from the cluster's log, which cannot be "
                          "reached");

    return ngx_http_events_http_send_error(r, &err, NULL);
}


ngx_int_t
ngx_http_events_export_init_process(ngx_cycle_t *cycle)
{
    return ngx_http_events_ipc_on_shutdown(cycle,
                                           ngx_http_events_export_close_all);
}


/*
 * Graceful shutdown: each export ends at a line boundary with where to
 * resume, on its next write event (a read from Redis in flight is let
 * go: its page is read again by the resumed export).
 */

static void
ngx_http_events_export_close_all(ngx_cycle_t *cycle)
{
    ngx_int_t                      rc;
    ngx_uint_t                     i;
    ngx_queue_t                   *q, *next;
    ngx_shm_zone_t               **zones;
    ngx_connection_t              *c;
    ngx_http_events_store_t       *store;
    ngx_http_events_main_conf_t   *emcf;
    ngx_http_events_export_ctx_t  *ctx;

    emcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_events_module);
    zones = emcf->zones.elts;

    for (i = 0; i < emcf->zones.nelts; i++) {
        store = zones[i]->data;

        /* a request finalized here leaves the list: its next, first */
        for (q = ngx_queue_head(&store->exports);
             q != ngx_queue_sentinel(&store->exports);
             q = next)
        {
            next = ngx_queue_next(q);
            ctx = ngx_queue_data(q, ngx_http_events_export_ctx_t, queue);

            if (ctx->closing) {
                continue;
            }

            ctx->closing = 1;
            ctx->deadline = ngx_current_msec + NGX_HTTP_EVENTS_EXPORT_DRAIN;

            if (ctx->handle) {
                store->remote->cancel_read(ctx->handle);
                ctx->handle = NULL;
                ngx_http_events_export_page_free(ctx);
            }

            if (ctx->deferred) {
                /* no 200 yet: it goes, then where to resume */
                ctx->deferred = 0;
                rc = ngx_http_events_export_begin(ctx);

                if (rc != NGX_OK) {
                    c = ctx->request->connection;
                    ngx_http_finalize_request(ctx->request, rc);
                    ngx_http_run_posted_requests(c);
                    continue;
                }
            }

            ngx_post_event(ctx->request->connection->write,
                           &ngx_posted_events);
        }
    }
}


static void
ngx_http_events_export_cleanup(void *data)
{
    ngx_http_events_export_ctx_t  *ctx = data;

    if (ctx->queued) {
        ngx_queue_remove(&ctx->queue);
        ctx->queued = 0;
    }

    if (ctx->handle) {
        ctx->store->remote->cancel_read(ctx->handle);
        ctx->handle = NULL;
    }

    if (ctx->page_pool) {
        ngx_destroy_pool(ctx->page_pool);
        ctx->page_pool = NULL;
    }
}


/* the socket drained, or a turn ended: send what waits, then go on */

static void
ngx_http_events_export_write(ngx_http_request_t *r)
{
    ngx_event_t                   *wev;
    ngx_http_events_export_ctx_t  *ctx;

    wev = r->connection->write;
    ctx = ngx_http_events_ctx(r)->export;

    if (wev->timedout) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, NGX_ETIMEDOUT,
                      ctx->closing ? "events: export cut at shutdown after "
                                     "%uL events, the reader took too long"
                                   : "events: export timed out after %uL "
                                     "events",
                      ctx->exported);
        r->connection->timedout = 1;
        ngx_http_finalize_request(r, NGX_ERROR);
        return;
    }

    if (wev->timer_set) {
        ngx_del_timer(wev);
    }

    if (ngx_http_events_export_send(ctx, NULL) != NGX_OK) {
        ngx_http_finalize_request(r, NGX_ERROR);
        return;
    }

    ngx_http_events_export_run(ctx);
}


static void
ngx_http_events_export_run(ngx_http_events_export_ctx_t *ctx)
{
    uint64_t                   last;
    ngx_int_t                  rc;
    ngx_uint_t                 n;
    ngx_connection_t          *c;
    ngx_http_request_t        *r;
    ngx_http_events_ipc_t     *ipc;
    ngx_http_events_item_t     item;
    ngx_http_events_window_t   w;

    r = ctx->request;
    c = r->connection;
    ipc = ngx_http_events_ipc();

    if (ctx->handle) {
        /* a page is on its way from Redis: its reply goes on */
        return;
    }

    if (ctx->pending.len) {
        rc = ngx_http_events_export_line(ctx, &ctx->pending);

        if (rc == NGX_AGAIN) {
            ngx_http_events_export_wait(ctx);
            return;
        }

        if (rc != NGX_OK) {
            ngx_http_finalize_request(r, NGX_ERROR);
            return;
        }

        ctx->pending.len = 0;
    }

    if (ctx->closing || ctx->stopped) {
        ngx_http_events_export_close(ctx);
        return;
    }

    if (ctx->paging) {
        rc = ngx_http_events_export_page(ctx);

        if (rc == NGX_AGAIN) {
            ngx_http_events_export_wait(ctx);
            return;
        }

        if (rc != NGX_OK) {
            ngx_http_finalize_request(r, NGX_ERROR);
            return;
        }
    }

    for (n = 0; n < NGX_HTTP_EVENTS_EXPORT_TURN; /* void */) {

        if (ctx->cursor >= ctx->head) {
            ngx_http_events_export_finish(ctx);
            return;
        }

        if (ctx->store->remote) {
            ngx_http_events_store_window(ctx->store, &w);

            if (ctx->cursor < w.evicted_seq) {
                /* what left the ring: from the cluster's log */
                rc = ngx_http_events_export_fetch(ctx, &w);

                if (rc == NGX_DECLINED) {
                    ngx_http_events_export_stop(ctx, "cluster_unavailable",
                                                ctx->cursor);

                } else if (rc != NGX_OK) {
                    ngx_http_finalize_request(r, NGX_ERROR);
                }

                return;
            }
        }

        rc = ngx_http_events_store_next(ctx->store, &ctx->q, ctx->cursor,
                                        NGX_HTTP_EVENTS_EXPORT_BUDGET,
                                        &ipc->scratch, &item, &last);

        ctx->cursor = ngx_max(ctx->cursor, last);

        if (rc == NGX_OK) {
            if (item.seq > ctx->head) {
                ngx_http_events_export_finish(ctx);
                return;
            }

            rc = ngx_http_events_export_line(ctx, &item.json);

            if (rc == NGX_ERROR) {
                ngx_http_finalize_request(r, NGX_ERROR);
                return;
            }

            ctx->exported++;
            n++;

            if (rc == NGX_AGAIN) {
                /* kept aside: every buffer is unsent, wait for the socket */
                ngx_http_events_export_wait(ctx);
                return;
            }

            continue;
        }

        if (rc == NGX_DONE) {
            ngx_http_events_export_finish(ctx);
            return;
        }

        if (rc == NGX_AGAIN) {
            /* the budget of looks ran out: a turn for the others */
            break;
        }

        if (rc == NGX_DECLINED && ctx->store->remote) {
            /* the ring moved on under the export: the log has it */
            continue;
        }

        if (rc == NGX_DECLINED) {
            /* retention removed what came next: go on past it, said so */
            ngx_http_events_store_window(ctx->store, &w);
            ngx_http_events_export_stop(ctx, "cursor_expired",
                                        ngx_max(ctx->cursor, w.evicted_seq));
            return;
        }

        c->error = 1;
        ngx_http_finalize_request(r, NGX_ERROR);
        return;
    }

    /* the turn is over: what is filled goes out, the rest comes later */

    if (ctx->buf && ctx->buf->last > ctx->buf->pos) {
        if (ngx_http_events_export_send(ctx, NULL) != NGX_OK) {
            ngx_http_finalize_request(r, NGX_ERROR);
            return;
        }
    }

    ngx_post_event(c->write, &ngx_posted_events);
}


/*
 * One envelope and a newline into the buffer being filled; a full one
 * goes out and another is taken, from the free ones or new while fewer
 * than NGX_HTTP_EVENTS_EXPORT_BUFS exist.  NGX_AGAIN: none is free, the
 * line is kept aside (the reader's scratch is reused by the next read)
 * until the socket drains.
 */

static ngx_int_t
ngx_http_events_export_line(ngx_http_events_export_ctx_t *ctx,
    ngx_str_t *json)
{
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    b = ctx->buf;

    if (b && (size_t) (b->end - b->last) >= json->len + 1) {
        b->last = ngx_cpymem(b->last, json->data, json->len);
        *b->last++ = '\n';
        return NGX_OK;
    }

    if (b && b->last > b->pos
        && ngx_http_events_export_send(ctx, NULL) != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (json->len + 1 > NGX_HTTP_EVENTS_EXPORT_BUF) {
        return ngx_http_events_export_big(ctx, json);
    }

    if (ctx->buf == NULL) {

        if (ctx->free) {
            cl = ctx->free;
            ctx->free = cl->next;
            ctx->buf = cl->buf;
            ngx_free_chain(ctx->request->pool, cl);

        } else if (ctx->nbufs < NGX_HTTP_EVENTS_EXPORT_BUFS) {
            ctx->buf = ngx_create_temp_buf(ctx->request->pool,
                                           NGX_HTTP_EVENTS_EXPORT_BUF);
            if (ctx->buf == NULL) {
                return NGX_ERROR;
            }

            ctx->buf->tag = (ngx_buf_tag_t) &ngx_http_events_export_type;
            ctx->nbufs++;

        } else {
            return ngx_http_events_export_keep(ctx, json);
        }
    }

    b = ctx->buf;
    b->last = ngx_cpymem(b->last, json->data, json->len);
    *b->last++ = '\n';

    return NGX_OK;
}


/*
 * A line larger than a buffer goes out alone in one buffer kept for
 * such lines (grown to the largest seen), once it has gone out again.
 */

static ngx_int_t
ngx_http_events_export_big(ngx_http_events_export_ctx_t *ctx,
    ngx_str_t *json)
{
    ngx_buf_t    *b;
    ngx_chain_t   out;

    b = ctx->big;

    if (b && b->pos != b->last) {
        /* the writer has not sent it all yet */
        return ngx_http_events_export_keep(ctx, json);
    }

    if (b == NULL || (size_t) (b->end - b->start) < json->len + 1) {
        b = ngx_create_temp_buf(ctx->request->pool, json->len + 1);
        if (b == NULL) {
            return NGX_ERROR;
        }

        ctx->big = b;
    }

    b->pos = b->start;
    b->last = ngx_cpymem(b->start, json->data, json->len);
    *b->last++ = '\n';
    b->flush = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_http_events_export_send(ctx, &out);
}


static ngx_int_t
ngx_http_events_export_keep(ngx_http_events_export_ctx_t *ctx,
    ngx_str_t *json)
{
    u_char  *p;

    if (json == &ctx->pending) {
        return NGX_AGAIN;
    }

    if (json->len > ctx->pending_size) {
        p = ngx_pnalloc(ctx->request->pool, json->len);
        if (p == NULL) {
            return NGX_ERROR;
        }

        ctx->pending.data = p;
        ctx->pending_size = json->len;
    }

    ngx_memcpy(ctx->pending.data, json->data, json->len);
    ctx->pending.len = json->len;

    return NGX_AGAIN;
}


/* every buffer unsent: the write event says when the socket drained */

static void
ngx_http_events_export_wait(ngx_http_events_export_ctx_t *ctx)
{
    ngx_connection_t          *c;
    ngx_http_request_t        *r;
    ngx_http_core_loc_conf_t  *clcf;

    r = ctx->request;
    c = r->connection;
    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    if (ctx->closing) {
        /* the old worker waits for the reader that long, no longer */
        if (c->write->timer_set) {
            ngx_del_timer(c->write);
        }

        ngx_add_timer(c->write, (ngx_msec_int_t) (ctx->deadline
                                                  - ngx_current_msec) > 0
                                ? ctx->deadline - ngx_current_msec : 1);

    } else if (!c->write->timer_set) {
        ngx_add_timer(c->write, clcf->send_timeout);
    }

    if (ngx_handle_write_event(c->write, clcf->send_lowat) != NGX_OK) {
        ngx_http_finalize_request(r, NGX_ERROR);
    }
}


/*
 * The buffer being filled (if any) and "out" go down the filters;
 * what they sent comes back on the free chain.
 */

static ngx_int_t
ngx_http_events_export_send(ngx_http_events_export_ctx_t *ctx,
    ngx_chain_t *out)
{
    ngx_int_t     rc;
    ngx_chain_t  *cl, *chain;

    chain = NULL;

    if (out) {
        /* the caller's link may be on its stack: the busy chain keeps it */
        chain = ngx_alloc_chain_link(ctx->request->pool);
        if (chain == NULL) {
            return NGX_ERROR;
        }

        chain->buf = out->buf;
        chain->next = NULL;
    }

    out = chain;

    if (ctx->buf && ctx->buf->last > ctx->buf->pos) {
        cl = ngx_alloc_chain_link(ctx->request->pool);
        if (cl == NULL) {
            return NGX_ERROR;
        }

        ctx->buf->flush = 1;
        cl->buf = ctx->buf;
        cl->next = out;
        chain = cl;
        ctx->buf = NULL;
    }

    rc = ngx_http_output_filter(ctx->request, chain);

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    ngx_chain_update_chains(ctx->request->pool, &ctx->free, &ctx->busy,
                            &chain,
                            (ngx_buf_tag_t) &ngx_http_events_export_type);

    return NGX_OK;
}


static void
ngx_http_events_export_finish(ngx_http_events_export_ctx_t *ctx)
{
    ngx_buf_t           *b;
    ngx_chain_t          out;
    ngx_http_request_t  *r;

    r = ctx->request;

    if (ctx->queued) {
        ngx_queue_remove(&ctx->queue);
        ctx->queued = 0;
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        ngx_http_finalize_request(r, NGX_ERROR);
        return;
    }

    b->last_buf = 1;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    r->write_event_handler = ngx_http_request_empty_handler;

    if (ngx_http_events_export_send(ctx, &out) != NGX_OK) {
        ngx_http_finalize_request(r, NGX_ERROR);
        return;
    }

    /* nginx's writer sends what is left, then the request ends */
    ngx_http_finalize_request(r, NGX_OK);
}


/*
 * The export cannot go on: it ends as at a shutdown, with the reason
 * in its last line and "next" at seq, and the reader has send_timeout
 * per write to take it, as any line (not the shutdown's drain).
 */

static void
ngx_http_events_export_stop(ngx_http_events_export_ctx_t *ctx,
    const char *reason, uint64_t seq)
{
    ngx_uint_t           level, skipped;
    ngx_http_request_t  *r;

    r = ctx->request;

    /* events the client will not get are a warning; a pause, not */
    skipped = ngx_strcmp(reason, "cursor_expired") == 0;
    level = skipped ? NGX_LOG_WARN : NGX_LOG_INFO;

    ngx_log_error(level, r->connection->log, 0,
                  "events: export ends early after %uL events, %s, to "
                  "resume after seq %uL (\"%s\"%s)", ctx->exported,
                  skipped ? "retention removed the events it was to read"
                          : "the cluster's log cannot be read",
                  seq, reason,
                  skipped ? ", the events before it are skipped" : "");

    ctx->stopped = 1;
    ctx->stop_seq = seq;
    ctx->reason = reason;

    ngx_http_events_export_close(ctx);
}


/*
 * Shutdown: no more events; the line that says where to resume, once
 * a buffer has room for it, then the end, which the reader has until
 * the deadline to take (the export's own wait, not nginx's writer and
 * its send_timeout).
 */

static void
ngx_http_events_export_close(ngx_http_events_export_ctx_t *ctx)
{
    u_char                         *p;
    uint64_t                        seq;
    ngx_int_t                       rc;
    ngx_str_t                       line;
    ngx_buf_t                      *b;
    ngx_chain_t                     out;
    ngx_connection_t               *c;
    ngx_http_request_t             *r;
    ngx_http_events_item_t         *items;
    u_char                          buf[sizeof("{\"has_more\":true,"
                                               "\"next\":\"\",\"reason\":"
                                               "\"cluster_unavailable\"}")
                                        + NGX_HTTP_EVENTS_CURSOR_LEN];

    r = ctx->request;
    c = r->connection;

    if (!ctx->resumed) {
        /* everything up to seq is in the buffers */
        seq = ctx->cursor;

        if (ctx->stopped) {
            seq = ctx->stop_seq;

        } else if (ctx->paging) {
            items = ctx->page.items.elts;
            seq = ctx->page_i ? items[ctx->page_i - 1].seq : ctx->cursor;
            ngx_http_events_export_page_free(ctx);

        } else if (ctx->cursor >= ctx->head) {
            /* nothing was left: an export that ends as any other */
            ctx->resumed = 1;
            goto end;
        }

        p = ngx_cpymem(buf, "{\"has_more\":true,\"next\":\"",
                       sizeof("{\"has_more\":true,\"next\":\"") - 1);
        p = ngx_http_events_cursor_write(ctx->q.cursor_key, p, ctx->epoch,
                                         seq);
        *p++ = '"';

        if (ctx->reason) {
            p = ngx_sprintf(p, ",\"reason\":\"%s\"", ctx->reason);
        }

        *p++ = '}';

        line.data = buf;
        line.len = p - buf;

        rc = ngx_http_events_export_line(ctx, &line);

        if (rc == NGX_ERROR) {
            ngx_http_finalize_request(r, NGX_ERROR);
            return;
        }

        ctx->resumed = 1;

        if (!ctx->stopped) {
            ngx_log_error(NGX_LOG_INFO, c->log, 0,
                          "events: export ends at shutdown after %uL "
                          "events, to resume after seq %uL",
                          ctx->exported, seq);
        }

        if (rc == NGX_AGAIN) {
            /* kept aside, as any line: it goes when the socket drains */
            ngx_http_events_export_wait(ctx);
            return;
        }
    }

end:

    if (!ctx->ended) {
        b = ngx_calloc_buf(r->pool);
        if (b == NULL) {
            ngx_http_finalize_request(r, NGX_ERROR);
            return;
        }

        b->last_buf = 1;
        b->last_in_chain = 1;

        out.buf = b;
        out.next = NULL;

        if (ngx_http_events_export_send(ctx, &out) != NGX_OK) {
            ngx_http_finalize_request(r, NGX_ERROR);
            return;
        }

        ctx->ended = 1;
    }

    if (c->buffered || r->buffered || ctx->busy) {
        ngx_http_events_export_wait(ctx);
        return;
    }

    if (ctx->queued) {
        ngx_queue_remove(&ctx->queue);
        ctx->queued = 0;
    }

    r->write_event_handler = ngx_http_request_empty_handler;

    ngx_http_finalize_request(r, NGX_OK);
}


/*
 * A page of what left the ring, from the cluster's log, after the
 * cursor and up to the ring's head (or the export's end), into a pool
 * of its own.
 */

static ngx_int_t
ngx_http_events_export_fetch(ngx_http_events_export_ctx_t *ctx,
    ngx_http_events_window_t *w)
{
    ngx_http_events_query_t  *q;

    if (ctx->page_pool == NULL) {
        ctx->page_pool = ngx_create_pool(NGX_DEFAULT_POOL_SIZE,
                                         ctx->request->connection->log);
        if (ctx->page_pool == NULL) {
            return NGX_ERROR;
        }
    }

    ctx->paging = 1;

    q = &ctx->page_q;
    *q = ctx->q;
    q->desc = 0;
    q->before = 0;
    q->after = ctx->cursor;
    q->has_after = ctx->q.has_after || ctx->cursor != 0;
    q->limit = NGX_HTTP_EVENTS_EXPORT_PAGE;

    ngx_memzero(&ctx->page, sizeof(ngx_http_events_result_t));
    ctx->page.window = *w;
    ctx->page.window.head_seq = ngx_min(w->head_seq, ctx->head);
    ctx->page_i = 0;

    ctx->handle = ctx->store->remote->query(ctx->store->remote->data, q,
                                            &ctx->page, ctx->page_pool,
                                            ngx_http_events_export_fetched,
                                            ctx);
    if (ctx->handle == NULL) {
        ngx_http_events_export_page_free(ctx);
        return NGX_DECLINED;
    }

    return NGX_OK;
}


static void
ngx_http_events_export_fetched(void *data, ngx_int_t rc)
{
    ngx_http_events_export_ctx_t  *ctx = data;

    ngx_connection_t    *c;
    ngx_http_request_t  *r;

    r = ctx->request;
    c = r->connection;
    ctx->handle = NULL;

    if (ctx->deferred) {
        ctx->deferred = 0;

        if (rc != NGX_OK) {
            ngx_http_events_export_page_free(ctx);
            rc = rc == NGX_BUSY ? ngx_http_events_export_unavailable(r)
                                : NGX_HTTP_INTERNAL_SERVER_ERROR;
            ngx_http_finalize_request(r, rc);
            ngx_http_run_posted_requests(c);
            return;
        }

        rc = ngx_http_events_export_begin(ctx);

        if (rc != NGX_OK) {
            ngx_http_events_export_page_free(ctx);
            ngx_http_finalize_request(r, rc);
            ngx_http_run_posted_requests(c);
            return;
        }
    }

    if (rc != NGX_OK || ctx->page.expired) {
        ngx_http_events_export_page_free(ctx);

        if (rc != NGX_OK) {
            /* nothing of the page went: the same page, when resumed */
            ngx_http_events_export_stop(ctx, "cluster_unavailable",
                                        ctx->cursor);

        } else {
            /* the log trimmed what came next: past it, said so */
            ngx_http_events_export_stop(ctx, "cursor_expired",
                                        ngx_max(ctx->cursor,
                                            ctx->page.window.evicted_seq));
        }

        ngx_http_run_posted_requests(c);
        return;
    }

    ngx_http_events_export_run(ctx);
    ngx_http_run_posted_requests(c);
}


/*
 * The page's lines from where the last call stopped; NGX_OK: all out,
 * the cursor moves past the page, which goes.
 */

static ngx_int_t
ngx_http_events_export_page(ngx_http_events_export_ctx_t *ctx)
{
    ngx_int_t                rc;
    ngx_http_events_item_t  *items;

    items = ctx->page.items.elts;

    while (ctx->page_i < ctx->page.items.nelts) {
        rc = ngx_http_events_export_line(ctx, &items[ctx->page_i].json);

        if (rc == NGX_ERROR) {
            return NGX_ERROR;
        }

        ctx->page_i++;
        ctx->exported++;

        if (rc == NGX_AGAIN) {
            return NGX_AGAIN;
        }
    }

    /* the log's page said where to go on, past what it looked at */
    ctx->cursor = ngx_max(ctx->cursor, ctx->page.next);

    ngx_http_events_export_page_free(ctx);

    return NGX_OK;
}


/* done with the page: its pool is reset for the next one, not freed */

static void
ngx_http_events_export_page_free(ngx_http_events_export_ctx_t *ctx)
{
    if (ctx->paging) {
        ngx_reset_pool(ctx->page_pool);
        ctx->paging = 0;
    }
}
