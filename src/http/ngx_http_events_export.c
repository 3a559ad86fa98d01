
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
 * Once the 200 has gone nothing can be said in an error: if retention
 * removes events under a slow export, the connection is closed before
 * the chunked body's end, so the client sees a truncated export (and
 * the last seq it has), never a silently shortened one.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_events_module.h"
#include "ngx_http_events_store.h"
#include "ngx_http_events_http.h"
#include "ngx_http_events_ipc.h"
#include "ngx_http_events_export.h"


#define NGX_HTTP_EVENTS_EXPORT_BUF     65536
#define NGX_HTTP_EVENTS_EXPORT_BUFS    4
#define NGX_HTTP_EVENTS_EXPORT_TURN    512
#define NGX_HTTP_EVENTS_EXPORT_BUDGET  1024


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
};


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
    if (ectx == NULL || ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ectx->export = ctx;

    ctx->request = r;
    ctx->store = store;
    ctx->q = *q;
    ctx->cursor = q->has_after ? q->after : 0;
    ctx->head = w->head_seq;

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

    r->main->count++;
    r->write_event_handler = ngx_http_events_export_write;

    ngx_http_events_export_run(ctx);

    return NGX_DONE;
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
                      "events: export timed out after %uL events",
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

    r = ctx->request;
    c = r->connection;
    ipc = ngx_http_events_ipc();

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

    for (n = 0; n < NGX_HTTP_EVENTS_EXPORT_TURN; /* void */) {

        if (ctx->cursor >= ctx->head) {
            ngx_http_events_export_finish(ctx);
            return;
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

        if (rc == NGX_DECLINED) {
            ngx_log_error(NGX_LOG_INFO, c->log, 0,
                          "events: export cut after %uL events, retention "
                          "removed the events after seq %uL",
                          ctx->exported, ctx->cursor);
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

    if (!c->write->timer_set) {
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
