
/*
 * Copyright (C) ngx_http_events_module authors
 */


/*
 * Pre-write hooks: events_validate URI sends each event about to be
 * stored to that location as a POST subrequest (body: the event as it
 * will be stored, seq and timestamp null).  2xx stores it; another
 * status refuses it.  POST /events waits for the answers, one event
 * after the other; captured events are checked in background
 * subrequests, and the client's answer never waits for them.
 *
 * The hook's answer never reaches the client on its own: a body filter
 * keeps the first NGX_HTTP_EVENTS_VALIDATE_BODY bytes (relayed when the
 * hook refuses in JSON) and swallows the rest, so there is no
 * subrequest_output_buffer_size limit to trip over.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_events_module.h"
#include "ngx_http_events_validate.h"
#include "ngx_http_events_store.h"
#include "ngx_http_events_json.h"
#include "ngx_http_events_match.h"
#include "ngx_http_events_http.h"


#define NGX_HTTP_EVENTS_VALIDATE_MAX_TYPES  32


/* POST /events waiting for the hook */
struct ngx_http_events_validate_ctx_s {
    ngx_http_events_event_t    *events;
    ngx_uint_t                  n;
    ngx_uint_t                  i;
    ngx_uint_t                  batch;
    ngx_http_events_commit_pt   commit;
    ngx_http_events_validation_t  v;
};


static ngx_int_t ngx_http_events_validate_start(ngx_http_request_t *r,
    ngx_http_events_validation_t *v, ngx_uint_t background);
static ngx_int_t ngx_http_events_validate_subrequest(ngx_http_request_t *r,
    ngx_http_events_validation_t *v, ngx_str_t *uri, ngx_buf_t *b,
    ngx_uint_t flags);
static ngx_int_t ngx_http_events_validate_headers(ngx_http_request_t *sr,
    size_t len);
static ngx_int_t ngx_http_events_validate_done(ngx_http_request_t *sr,
    void *data, ngx_int_t rc);
static void ngx_http_events_validate_resume(ngx_http_request_t *r);
static ngx_int_t ngx_http_events_validate_next(ngx_http_request_t *r,
    ngx_http_events_validate_ctx_t *ctx);
static ngx_int_t ngx_http_events_validate_refuse(ngx_http_request_t *r,
    ngx_http_events_validate_ctx_t *ctx);
static ngx_int_t ngx_http_events_validate_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in);


static ngx_http_output_body_filter_pt    ngx_http_next_body_filter;


static ngx_str_t  ngx_http_events_post = ngx_string("POST");


ngx_int_t
ngx_http_events_validate_init(ngx_conf_t *cf)
{
    ngx_http_next_body_filter = ngx_http_top_body_filter;
    ngx_http_top_body_filter = ngx_http_events_validate_body_filter;

    return NGX_OK;
}


ngx_uint_t
ngx_http_events_validate_wanted(ngx_http_request_t *r,
    ngx_http_events_event_t *ev)
{
    ngx_http_events_loc_conf_t  *elcf;

    elcf = ngx_http_get_module_loc_conf(r, ngx_http_events_module);

    if (elcf->validate->uri.len == 0) {
        return 0;
    }

    return elcf->validate->types == NULL
           || ngx_http_events_match_any(elcf->validate->types,
                                        elcf->validate->ntypes, &ev->type);
}


/*
 * POST /events: NGX_DECLINED when no event needs the hook (the caller
 * stores them now), NGX_DONE when the hook was asked (the commit runs
 * once it has agreed to all), or an HTTP status.
 */

ngx_int_t
ngx_http_events_validate_batch(ngx_http_request_t *r,
    ngx_http_events_event_t *events, ngx_uint_t n, ngx_uint_t batch,
    ngx_http_events_commit_pt commit)
{
    ngx_uint_t                       i;
    ngx_http_events_ctx_t           *ectx;
    ngx_http_events_validate_ctx_t  *ctx;

    for (i = 0; i < n; i++) {
        if (ngx_http_events_validate_wanted(r, &events[i])) {
            break;
        }
    }

    if (i == n) {
        return NGX_DECLINED;
    }

    ectx = ngx_http_events_ctx(r);
    if (ectx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_events_validate_ctx_t));
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->events = events;
    ctx->n = n;
    ctx->i = i;
    ctx->batch = batch;
    ctx->commit = commit;

    ectx->validate = ctx;

    if (ngx_http_events_validate_next(r, ctx) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* ours until the last answer: resume() finalizes */
    r->main->count++;
    r->write_event_handler = ngx_http_events_validate_resume;

    return NGX_DONE;
}


static ngx_int_t
ngx_http_events_validate_next(ngx_http_request_t *r,
    ngx_http_events_validate_ctx_t *ctx)
{
    ngx_http_events_loc_conf_t  *elcf;

    elcf = ngx_http_get_module_loc_conf(r, ngx_http_events_module);

    ngx_memzero(&ctx->v, sizeof(ngx_http_events_validation_t));

    ctx->v.ev = &ctx->events[ctx->i];
    ctx->v.store = elcf->api_zone->data;

    return ngx_http_events_validate_start(r, &ctx->v, 0);
}


static void
ngx_http_events_validate_resume(ngx_http_request_t *r)
{
    ngx_int_t                        rc;
    ngx_http_events_ctx_t           *ectx;
    ngx_http_events_error_t          err;
    ngx_http_events_validate_ctx_t  *ctx;

    ectx = ngx_http_get_module_ctx(r, ngx_http_events_module);
    ctx = ectx->validate;

    if (!ctx->v.done) {
        /* a write event before the hook answered */
        return;
    }

    r->write_event_handler = ngx_http_request_empty_handler;

    rc = ngx_http_events_validate_verdict(r, &ctx->v);

    if (rc == NGX_DECLINED) {
        ngx_http_finalize_request(r,
                                  ngx_http_events_validate_refuse(r, ctx));
        return;
    }

    if (rc == NGX_BUSY) {
        ngx_http_events_error(&err, 503, "validation_unavailable", NULL,
                              NULL, NULL, "the validation hook did not "
                              "answer; nothing was stored");
        ngx_http_finalize_request(r,
                                  ngx_http_events_http_send_error(r, &err,
                                                                  NULL));
        return;
    }

    for (ctx->i++; ctx->i < ctx->n; ctx->i++) {
        if (!ngx_http_events_validate_wanted(r, &ctx->events[ctx->i])) {
            continue;
        }

        if (ngx_http_events_validate_next(r, ctx) != NGX_OK) {
            ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
            return;
        }

        r->write_event_handler = ngx_http_events_validate_resume;
        return;
    }

    ngx_http_finalize_request(r, ctx->commit(r, ctx->events, ctx->n,
                                             ctx->batch));
}


/* the hook's own answer when it is JSON and whole, else ours */

static ngx_int_t
ngx_http_events_validate_refuse(ngx_http_request_t *r,
    ngx_http_events_validate_ctx_t *ctx)
{
    u_char                        item[NGX_INT_T_LEN + 3];
    ngx_str_t                     prefix;
    ngx_http_events_error_t       err;
    ngx_http_events_validation_t *v;

    v = &ctx->v;

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "events: the validation hook refused \"%V\" with %ui",
                  &v->ev->type, v->status);

    if (v->json && v->whole && v->len) {
        return ngx_http_events_http_send(r, v->status,
                                         &ngx_http_events_http_json_type,
                                         v->body, v->len);
    }

    prefix.data = item;
    prefix.len = ngx_sprintf(item, "[%ui]", ctx->i) - item;

    ngx_http_events_error(&err, v->status, "rejected",
                          ctx->batch ? "field" : NULL,
                          ctx->batch ? &prefix : NULL, NULL,
                          "the validation hook refused the event");

    return ngx_http_events_http_send_error(r, &err, NULL);
}


/* capture: the handler runs when the hook has answered */

ngx_int_t
ngx_http_events_validate_background(ngx_http_request_t *r,
    ngx_http_events_validation_t *v)
{
    return ngx_http_events_validate_start(r, v, 1);
}


/*
 * NGX_OK: store it; NGX_DECLINED: the hook refused it (v->status);
 * NGX_BUSY: the hook did not answer and fail=closed
 */

ngx_int_t
ngx_http_events_validate_verdict(ngx_http_request_t *r,
    ngx_http_events_validation_t *v)
{
    ngx_http_events_loc_conf_t  *elcf;

    elcf = ngx_http_get_module_loc_conf(r, ngx_http_events_module);

    if (v->status >= NGX_HTTP_OK && v->status < NGX_HTTP_SPECIAL_RESPONSE) {
        return NGX_OK;
    }

    if (v->status >= NGX_HTTP_BAD_REQUEST && v->status <= 599
        && v->status != NGX_HTTP_BAD_GATEWAY
        && v->status != NGX_HTTP_GATEWAY_TIME_OUT)
    {
        ngx_http_events_store_tally(v->store,
                                    NGX_HTTP_EVENTS_VALIDATE_REJECTED);
        return NGX_DECLINED;
    }

    /* no answer, an upstream failure, or a status that says nothing */

    ngx_http_events_store_tally(v->store, NGX_HTTP_EVENTS_VALIDATE_FAILED);

    ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                  "events: the validation hook \"%V\" failed (status %ui) "
                  "on \"%V\", %s", &elcf->validate->uri, v->status,
                  &v->ev->type,
                  elcf->validate->fail_open ? "stored (fail=open)"
                                           : "refused");

    return elcf->validate->fail_open ? NGX_OK : NGX_BUSY;
}


static ngx_int_t
ngx_http_events_validate_start(ngx_http_request_t *r,
    ngx_http_events_validation_t *v, ngx_uint_t background)
{
    u_char                      *p;
    size_t                       len;
    ngx_buf_t                   *b;
    ngx_http_events_event_t     *ev;
    ngx_http_events_loc_conf_t  *elcf;

    elcf = ngx_http_get_module_loc_conf(r, ngx_http_events_module);
    ev = v->ev;

    /* the event as it will be stored, seq and timestamp not yet known */

    len = ev->json_len + sizeof("nullnull");

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_ERROR;
    }

    b->pos = p;
    p = ngx_cpymem(p, ev->json, ev->seq_at);
    p = ngx_cpymem(p, "null", 4);
    /* ts_at is inside the quotes of "timestamp":"..." */
    p = ngx_cpymem(p, ev->json + ev->seq_at, ev->ts_at - 1 - ev->seq_at);
    p = ngx_cpymem(p, "null", 4);
    p = ngx_cpymem(p, ev->json + ev->ts_at + 1,
                   ev->json_len - ev->ts_at - 1);
    b->last = p;
    /* the proxy rewinds to start to send it again to the next upstream */
    b->start = b->pos;
    b->end = b->last;
    b->memory = 1;
    b->last_buf = 1;
    b->last_in_chain = 1;

    return ngx_http_events_validate_subrequest(r, v, &elcf->validate->uri,
                                               b,
                                               background
                                               ? NGX_HTTP_SUBREQUEST_BACKGROUND
                                               : NGX_HTTP_SUBREQUEST_WAITED);
}


/*
 * Any body to a hook location, answered into v (for events_capture_pre
 * too): the request waits for it (NGX_HTTP_SUBREQUEST_WAITED) or not
 */

ngx_int_t
ngx_http_events_validate_ask(ngx_http_request_t *r,
    ngx_http_events_validation_t *v, ngx_str_t *uri, u_char *body,
    size_t len)
{
    ngx_buf_t  *b;

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_ERROR;
    }

    b->pos = body;
    b->last = body + len;
    b->start = b->pos;
    b->end = b->last;
    b->memory = 1;
    b->last_buf = 1;
    b->last_in_chain = 1;

    return ngx_http_events_validate_subrequest(r, v, uri, b,
                                               NGX_HTTP_SUBREQUEST_WAITED);
}


static ngx_int_t
ngx_http_events_validate_subrequest(ngx_http_request_t *r,
    ngx_http_events_validation_t *v, ngx_str_t *uri, ngx_buf_t *b,
    ngx_uint_t flags)
{
    ngx_chain_t                 *cl;
    ngx_http_request_t          *sr;
    ngx_http_events_ctx_t       *sctx;
    ngx_http_request_body_t     *rb;
    ngx_http_post_subrequest_t  *ps;

    cl = ngx_alloc_chain_link(r->pool);
    rb = ngx_pcalloc(r->pool, sizeof(ngx_http_request_body_t));
    ps = ngx_palloc(r->pool, sizeof(ngx_http_post_subrequest_t));
    sctx = ngx_pcalloc(r->pool, sizeof(ngx_http_events_ctx_t));

    if (cl == NULL || rb == NULL || ps == NULL || sctx == NULL) {
        return NGX_ERROR;
    }

    cl->buf = b;
    cl->next = NULL;

    rb->bufs = cl;
    rb->buf = b;

    ps->handler = ngx_http_events_validate_done;
    ps->data = v;

    v->main = r;
    v->whole = 1;

    if (ngx_http_subrequest(r, uri, NULL, &sr, ps, flags) != NGX_OK) {
        return NGX_ERROR;
    }

    sr->method = NGX_HTTP_POST;
    sr->method_name = ngx_http_events_post;
    sr->request_body = rb;

    if (ngx_http_events_validate_headers(sr, b->last - b->pos) != NGX_OK) {
        return NGX_ERROR;
    }

    sctx->validation = v;
    ngx_http_set_ctx(sr, sctx, ngx_http_events_module);

    return NGX_OK;
}


/*
 * The subrequest shares its parent's header list: give it its own, with
 * the parent's headers (the hook may want Authorization) but its own
 * body's type and length.
 */

static ngx_int_t
ngx_http_events_validate_headers(ngx_http_request_t *sr, size_t len)
{
    ngx_uint_t        i;
    ngx_list_t        headers;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h, *copy;

    if (ngx_list_init(&headers, sr->pool, 8, sizeof(ngx_table_elt_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    part = &sr->headers_in.headers.part;
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

        if ((h[i].key.len == 12
             && ngx_strncasecmp(h[i].key.data, (u_char *) "Content-Type", 12)
                == 0)
            || (h[i].key.len == 14
                && ngx_strncasecmp(h[i].key.data,
                                   (u_char *) "Content-Length", 14) == 0)
            || (h[i].key.len == 17
                && ngx_strncasecmp(h[i].key.data,
                                   (u_char *) "Transfer-Encoding", 17) == 0))
        {
            continue;
        }

        copy = ngx_list_push(&headers);
        if (copy == NULL) {
            return NGX_ERROR;
        }

        *copy = h[i];
    }

    copy = ngx_list_push(&headers);
    if (copy == NULL) {
        return NGX_ERROR;
    }

    ngx_str_set(&copy->key, "Content-Type");
    ngx_str_set(&copy->value, "application/json");
    copy->lowcase_key = (u_char *) "content-type";
    copy->hash = ngx_hash_key(copy->lowcase_key, copy->key.len);

    sr->headers_in.headers = headers;
    sr->headers_in.content_type = copy;
    sr->headers_in.content_length = NULL;
    sr->headers_in.transfer_encoding = NULL;
    sr->headers_in.chunked = 0;
    sr->headers_in.content_length_n = len;

    return NGX_OK;
}


/* always NGX_OK: an error code here would end the parent request too */

static ngx_int_t
ngx_http_events_validate_done(ngx_http_request_t *sr, void *data,
    ngx_int_t rc)
{
    ngx_http_events_validation_t *v = data;

    u_char     *p;
    ngx_str_t  *type;

    if (v->done || rc == NGX_AGAIN) {
        return NGX_OK;
    }

    v->done = 1;
    v->status = sr->headers_out.status;

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE && rc <= 599
        && (v->status == 0 || sr->upstream))
    {
        /* "return 403;", or the proxy's 502/504: nothing was sent */
        v->status = rc;
    }

    type = &sr->headers_out.content_type;
    p = type->data;
    v->type = *type;

    v->json = p && type->len >= 16
              && ngx_strncasecmp(p, (u_char *) "application/json", 16) == 0
              && (type->len == 16 || p[16] == ';' || p[16] == ' ');

    if (sr->background && v->handler) {
        v->handler(v->main, v);
    }

    return NGX_OK;
}


/* a hook's answer: the first bytes kept, everything consumed */

static ngx_int_t
ngx_http_events_validate_body_filter(ngx_http_request_t *r, ngx_chain_t *in)
{
    size_t                         n, room;
    ngx_buf_t                     *b;
    ngx_chain_t                   *cl;
    ngx_http_events_ctx_t         *ectx;
    ngx_http_events_validation_t  *v;

    if (r == r->main) {
        return ngx_http_next_body_filter(r, in);
    }

    ectx = ngx_http_get_module_ctx(r, ngx_http_events_module);
    v = ectx ? ectx->validation : NULL;

    if (v == NULL) {
        return ngx_http_next_body_filter(r, in);
    }

    for (cl = in; cl; cl = cl->next) {
        b = cl->buf;

        if (ngx_buf_in_memory(b)) {
            n = b->last - b->pos;
            room = NGX_HTTP_EVENTS_VALIDATE_BODY - v->len;

            if (n > room) {
                v->whole = 0;
                n = room;
            }

            if (n && v->body == NULL) {
                v->body = ngx_pnalloc(r->pool, NGX_HTTP_EVENTS_VALIDATE_BODY);
                if (v->body == NULL) {
                    return NGX_ERROR;
                }
            }

            if (n) {
                ngx_memcpy(v->body + v->len, b->pos, n);
                v->len += n;
            }

            b->pos = b->last;

        } else if (b->in_file && b->file_last > b->file_pos) {
            /* a large answer spooled to disk: too big to relay */
            v->whole = 0;
        }

        if (b->in_file) {
            b->file_pos = b->file_last;
        }
    }

    return NGX_OK;
}


/* configuration */

void
ngx_http_events_validate_merge_conf(ngx_http_events_validate_conf_t *prev,
    ngx_http_events_validate_conf_t *conf)
{
    if (!conf->set) {
        *conf = *prev;
    }
}


/* events_validate URI|off [types=PATTERN,...] [fail=closed|open] */

char *
ngx_http_events_validate(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_events_loc_conf_t *elcf = conf;

    u_char                           *p, *end, *comma;
    ngx_str_t                        *value, *pattern;
    ngx_uint_t                        i;
    ngx_http_events_validate_conf_t  *vcf;

    vcf = elcf->validate;

    if (vcf->set) {
        return "is duplicate";
    }

    vcf->set = 1;
    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "off") == 0) {
        if (cf->args->nelts != 2) {
            return "takes no parameters with \"off\"";
        }

        return NGX_CONF_OK;
    }

    if (value[1].len == 0 || value[1].data[0] != '/') {
        return "needs a URI that starts with \"/\"";
    }

    vcf->uri = value[1];

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strcmp(value[i].data, "fail=open") == 0) {
            vcf->fail_open = 1;
            continue;
        }

        if (ngx_strcmp(value[i].data, "fail=closed") == 0) {
            vcf->fail_open = 0;
            continue;
        }

        if (ngx_strncmp(value[i].data, "types=", 6) != 0 || vcf->types) {
            goto invalid;
        }

        vcf->types = ngx_palloc(cf->pool, NGX_HTTP_EVENTS_VALIDATE_MAX_TYPES
                                          * sizeof(ngx_str_t));
        if (vcf->types == NULL) {
            return NGX_CONF_ERROR;
        }

        p = value[i].data + 6;
        end = value[i].data + value[i].len;

        while (p <= end) {
            comma = ngx_strlchr(p, end, ',');
            if (comma == NULL) {
                comma = end;
            }

            if (vcf->ntypes == NGX_HTTP_EVENTS_VALIDATE_MAX_TYPES
                || ngx_http_events_match_pattern_valid(p, comma - p) != NGX_OK)
            {
                goto invalid;
            }

            pattern = &vcf->types[vcf->ntypes++];
            pattern->data = p;
            pattern->len = comma - p;

            p = comma + 1;
        }
    }

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid parameter \"%V\"", &value[i]);

    return NGX_CONF_ERROR;
}
