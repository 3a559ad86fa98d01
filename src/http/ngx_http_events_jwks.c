
/*
 * Copyright (C) ngx_http_events_module authors
 */


/*
 * events_auth_jwt_key_request URI [valid=TIME] [refetch=TIME]: token
 * keys fetched from an identity provider's JWKS, as auth_request asks:
 * a subrequest from the client's request to an internal location the
 * operator writes (proxy_pass to the jwks_uri, proxy_cache if wanted).
 * Its answer is taken by a body filter of ours, up to 64 KB (as a JWKS
 * file), not by NGX_HTTP_SUBREQUEST_IN_MEMORY: an answer larger than
 * subrequest_output_buffer_size would end the client's request there,
 * where here it is only a failed fetch.
 *
 * Each worker keeps the last good JWKS of each directive in a pool of
 * its own, swapped whole when a fetch brings a good one.  Keys are used
 * only inside ngx_http_events_jwt_verify(), which never waits: once the
 * swap is made nothing points into the old set, so it is freed there.
 *
 * The fetch happens in the preaccess phase (not access: "satisfy any"
 * would skip it once an allow matched), for a request with a token
 * whose header names a known alg, and:
 *
 *   - no fetch has been made yet, or "valid" (10m) has passed since the
 *     last good one ("refetch", 30s, or "valid" if shorter, after a
 *     failed one);
 *   - or no key (fetched or configured) fits its kid and alg, and the
 *     last fetch ended "refetch" (30s) ago or more: a storm of unknown
 *     kids costs one fetch per worker per 30 s.
 *
 * One fetch at a time per worker and directive: the requests that need
 * it meanwhile wait in a queue and are woken when it ends (posted write
 * events, as limit_req's delay is), except those a key already fits:
 * they go on with the current keys.  A request waits for one fetch at
 * most.  A failed fetch (not a 200, not a JWKS, too large, no answer)
 * keeps the previous keys; with none, ngx_http_events_auth.c answers
 * 503 keys_unavailable.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_events_module.h"
#include "ngx_http_events_auth.h"
#include "ngx_http_events_jwk.h"
#include "ngx_http_events_jwks.h"


#define NGX_HTTP_EVENTS_JWKS_VALID      600000      /* 10m */
#define NGX_HTTP_EVENTS_JWKS_REFETCH    30000       /* 30s */
#define NGX_HTTP_EVENTS_JWKS_MAX        65536       /* as a JWKS file */


struct ngx_http_events_jwks_s {
    ngx_str_t                   uri;
    ngx_msec_t                  valid;
    ngx_msec_t                  refetch;

    /* the rest is each worker's own */
    ngx_pool_t                 *pool;           /* the keys' */
    ngx_array_t                *keys;           /* the last good JWKS's */
    ngx_http_request_t         *fetching;       /* whose subrequest is out */
    ngx_queue_t                 waiting;        /* jwks_wait_t */
    ngx_msec_t                  due;            /* the next fetch from then */
    ngx_msec_t                  kid_due;        /* for an unknown kid */
    time_t                      fetched;        /* when the keys came */
    unsigned                    tried:1;        /* a fetch has ended */
};


struct ngx_http_events_jwks_wait_s {
    ngx_queue_t                 queue;
    ngx_http_request_t         *request;
    ngx_http_events_jwks_t     *jwks;
    u_char                     *body;           /* its fetch's answer */
    size_t                      len;
    unsigned                    queued:1;
    unsigned                    done:1;         /* a fetch ended for it */
    unsigned                    too_large:1;
    unsigned                    unreadable:1;
};


static ngx_int_t ngx_http_events_jwks_handler(ngx_http_request_t *r);
static ngx_uint_t ngx_http_events_jwks_needed(ngx_http_request_t *r,
    ngx_http_events_jwks_t *jwks, ngx_uint_t *known);
static ngx_http_events_jwks_wait_t *ngx_http_events_jwks_waiter(
    ngx_http_request_t *r, ngx_http_events_jwks_t *jwks);
static ngx_int_t ngx_http_events_jwks_fetch(ngx_http_request_t *r,
    ngx_http_events_jwks_wait_t *w);
static ngx_int_t ngx_http_events_jwks_done(ngx_http_request_t *sr,
    void *data, ngx_int_t rc);
static void ngx_http_events_jwks_result(ngx_http_request_t *sr,
    ngx_http_events_jwks_wait_t *w, ngx_int_t rc);
static void ngx_http_events_jwks_wake(ngx_http_events_jwks_t *jwks,
    ngx_uint_t done);
static void ngx_http_events_jwks_resume(ngx_http_request_t *r);
static void ngx_http_events_jwks_cleanup(void *data);
static void ngx_http_events_jwks_free(void *data);
static ngx_int_t ngx_http_events_jwks_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in);


static ngx_http_output_body_filter_pt    ngx_http_next_body_filter;


/* the keys to check tokens with, beside the configured ones; or NULL */

ngx_array_t *
ngx_http_events_jwks_keys(ngx_http_events_jwks_t *jwks)
{
    return jwks ? jwks->keys : NULL;
}


/* seconds until the next fetch may be tried, for Retry-After */

time_t
ngx_http_events_jwks_retry_after(ngx_http_events_jwks_t *jwks)
{
    ngx_msec_int_t  left;

    left = (ngx_msec_int_t) (jwks->due - ngx_current_msec);

    return (left > 1000) ? (time_t) ((left + 999) / 1000) : 1;
}


ngx_int_t
ngx_http_events_jwks_init(ngx_conf_t *cf)
{
    ngx_http_handler_pt        *h;
    ngx_http_core_main_conf_t  *cmcf;

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_PREACCESS_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_events_jwks_handler;

    ngx_http_next_body_filter = ngx_http_top_body_filter;
    ngx_http_top_body_filter = ngx_http_events_jwks_body_filter;

    return NGX_OK;
}


static ngx_int_t
ngx_http_events_jwks_handler(ngx_http_request_t *r)
{
    ngx_uint_t                    known;
    ngx_http_events_ctx_t        *ctx;
    ngx_http_events_jwks_t       *jwks;
    ngx_http_events_jwks_wait_t  *w;
    ngx_http_events_loc_conf_t   *elcf;

    if (r != r->main) {
        return NGX_DECLINED;
    }

    elcf = ngx_http_get_module_loc_conf(r, ngx_http_events_module);
    jwks = elcf->jwks;

    if (jwks == NULL) {
        return NGX_DECLINED;
    }

    ctx = ngx_http_events_ctx(r);
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    w = ctx->jwks;

    if (w && (w->done || w->queued)) {
        return w->queued ? NGX_AGAIN : NGX_DECLINED;
    }

    if (!ngx_http_events_jwks_needed(r, jwks, &known)) {
        return NGX_DECLINED;
    }

    if (jwks->fetching && known) {
        /* a refetch is out; the current keys still do for this one */
        return NGX_DECLINED;
    }

    w = ngx_http_events_jwks_waiter(r, jwks);
    if (w == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (jwks->fetching == NULL) {
        if (ngx_http_events_jwks_fetch(r, w) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        /* the subrequest resumes the phases when it ends */
        return NGX_AGAIN;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "events jwks: waiting for the fetch of \"%V\"",
                   &jwks->uri);

    w->queued = 1;
    ngx_queue_insert_tail(&jwks->waiting, &w->queue);

    r->read_event_handler = ngx_http_test_reading;
    r->write_event_handler = ngx_http_events_jwks_resume;

    return NGX_AGAIN;
}


/*
 * Whether this request's token needs a fetch (or the one out); no
 * token, or one no key could check, needs none.  The keys configured
 * beside count as known (a kid they have fetches nothing more), but do
 * not spare the first fetch nor the one after "valid": a token's kid
 * and alg pick among all the keys.  *known: a key fits its kid and alg.
 */

static ngx_uint_t
ngx_http_events_jwks_needed(ngx_http_request_t *r,
    ngx_http_events_jwks_t *jwks, ngx_uint_t *known)
{
    ngx_str_t                    token, kid;
    ngx_uint_t                   alg, has_kid;
    ngx_http_events_error_t      err;
    ngx_http_events_loc_conf_t  *elcf;

    *known = 0;

    if (ngx_http_events_auth_token(r, &token, &err) != NGX_OK
        || ngx_http_events_jwt_header(&token, r->pool, &alg, &kid, &has_kid)
           != NGX_OK)
    {
        /* refused later, whatever the keys */
        return 0;
    }

    elcf = ngx_http_get_module_loc_conf(r, ngx_http_events_module);

    *known = ngx_http_events_jwt_has_key(jwks->keys, alg, &kid, has_kid)
             || ngx_http_events_jwt_has_key(elcf->jwt_keys, alg, &kid,
                                            has_kid);

    if (jwks->fetching || !jwks->tried) {
        return 1;
    }

    if ((ngx_msec_int_t) (ngx_current_msec - jwks->due) >= 0) {
        return 1;
    }

    return !*known
           && (ngx_msec_int_t) (ngx_current_msec - jwks->kid_due) >= 0;
}


static ngx_http_events_jwks_wait_t *
ngx_http_events_jwks_waiter(ngx_http_request_t *r,
    ngx_http_events_jwks_t *jwks)
{
    ngx_pool_cleanup_t           *cln;
    ngx_http_events_ctx_t        *ctx;
    ngx_http_events_jwks_wait_t  *w;

    ctx = ngx_http_events_ctx(r);

    if (ctx->jwks) {
        return ctx->jwks;
    }

    w = ngx_pcalloc(r->pool, sizeof(ngx_http_events_jwks_wait_t));
    cln = ngx_pool_cleanup_add(r->pool, 0);

    if (w == NULL || cln == NULL) {
        return NULL;
    }

    w->request = r;
    w->jwks = jwks;

    cln->handler = ngx_http_events_jwks_cleanup;
    cln->data = w;

    ctx->jwks = w;

    return w;
}


/*
 * A GET with none of the client's headers (its token and cookies are
 * not for the identity provider, its Content-Length not for a GET) and
 * no body; its answer taken by ngx_http_events_jwks_body_filter().
 */

static ngx_int_t
ngx_http_events_jwks_fetch(ngx_http_request_t *r,
    ngx_http_events_jwks_wait_t *w)
{
    ngx_http_request_t          *sr;
    ngx_http_events_ctx_t       *sctx;
    ngx_http_request_body_t     *rb;
    ngx_http_post_subrequest_t  *ps;

    ps = ngx_palloc(r->pool, sizeof(ngx_http_post_subrequest_t));
    rb = ngx_pcalloc(r->pool, sizeof(ngx_http_request_body_t));
    sctx = ngx_pcalloc(r->pool, sizeof(ngx_http_events_ctx_t));

    if (ps == NULL || rb == NULL || sctx == NULL) {
        return NGX_ERROR;
    }

    w->len = 0;
    w->too_large = 0;
    w->unreadable = 0;

    ps->handler = ngx_http_events_jwks_done;
    ps->data = w;

    if (ngx_http_subrequest(r, &w->jwks->uri, NULL, &sr, ps,
                            NGX_HTTP_SUBREQUEST_WAITED)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    sctx->jwks = w;
    ngx_http_set_ctx(sr, sctx, ngx_http_events_module);

    sr->method = NGX_HTTP_GET;
    sr->method_name = ngx_http_core_get_method;
    sr->request_body = rb;

    if (ngx_list_init(&sr->headers_in.headers, sr->pool, 2,
                      sizeof(ngx_table_elt_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    sr->headers_in.authorization = NULL;
    sr->headers_in.content_type = NULL;
    sr->headers_in.content_length = NULL;
    sr->headers_in.transfer_encoding = NULL;
    sr->headers_in.chunked = 0;
    sr->headers_in.content_length_n = -1;

    w->jwks->fetching = r;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "events jwks: fetching \"%V\"", &w->jwks->uri);

    return NGX_OK;
}


/* always NGX_OK: an error code here would end the client's request too */

static ngx_int_t
ngx_http_events_jwks_done(ngx_http_request_t *sr, void *data, ngx_int_t rc)
{
    ngx_http_events_jwks_wait_t *w = data;

    ngx_http_events_jwks_t  *jwks;

    jwks = w->jwks;

    if (jwks->fetching != w->request) {
        return NGX_OK;
    }

    jwks->fetching = NULL;
    w->done = 1;

    ngx_http_events_jwks_result(sr, w, rc);
    ngx_http_events_jwks_wake(jwks, 1);

    return NGX_OK;
}


static void
ngx_http_events_jwks_result(ngx_http_request_t *sr,
    ngx_http_events_jwks_wait_t *w, ngx_int_t rc)
{
    char                    *error, *what;
    u_char                   buf[NGX_INT_T_LEN + sizeof("status ")];
    ngx_int_t                rv;
    ngx_str_t                body;
    ngx_pool_t              *pool;
    ngx_array_t             *keys;
    ngx_http_events_jwks_t  *jwks;

    jwks = w->jwks;

    jwks->tried = 1;
    jwks->kid_due = ngx_current_msec + jwks->refetch;
    jwks->due = ngx_current_msec + ngx_min(jwks->valid, jwks->refetch);

    error = (char *) buf;
    pool = NULL;

    if (rc == NGX_ERROR || rc >= NGX_HTTP_SPECIAL_RESPONSE
        || sr->headers_out.status != NGX_HTTP_OK)
    {
        *ngx_sprintf(buf, "status %ui",
                     rc >= NGX_HTTP_SPECIAL_RESPONSE
                     ? (ngx_uint_t) rc : sr->headers_out.status) = '\0';
        goto failed;
    }

    if (w->too_large) {
        error = "an answer larger than 64 KB";
        goto failed;
    }

    if (w->unreadable) {
        error = "its file could not be read";
        goto failed;
    }

    if (w->len == 0) {
        error = "an empty answer";
        goto failed;
    }

    body.data = w->body;
    body.len = w->len;

    pool = ngx_create_pool(NGX_DEFAULT_POOL_SIZE, ngx_cycle->log);
    keys = pool ? ngx_array_create(pool, 4,
                                   sizeof(ngx_http_events_jwt_key_t))
                : NULL;

    if (keys == NULL) {
        error = "out of memory";
        goto failed;
    }

    rv = ngx_http_events_jwk_set(pool, &body, keys, &error);

    if (rv != NGX_OK) {
        if (rv == NGX_ERROR) {
            error = "out of memory";
        }

        goto failed;
    }

    /* nothing points into the old set now: verification never waits */

    if (jwks->pool) {
        ngx_destroy_pool(jwks->pool);
    }

    jwks->pool = pool;
    jwks->keys = keys;
    jwks->fetched = ngx_time();
    jwks->due = ngx_current_msec + jwks->valid;

    ngx_log_error(NGX_LOG_INFO, sr->connection->log, 0,
                  "events: the JWKS from \"%V\" brings %ui keys",
                  &jwks->uri, keys->nelts);
    return;

failed:

    /* the loader's words follow the JWKS's name */
    what = (error[0] == ' ' || error[0] == ':') ? "the JWKS" : "";

    if (jwks->keys) {
        ngx_log_error(NGX_LOG_WARN, sr->connection->log, 0,
                      "events: the JWKS from \"%V\" could not be fetched "
                      "(%s%s); the keys fetched %T s ago stay in use",
                      &jwks->uri, what, error, ngx_time() - jwks->fetched);

    } else {
        ngx_log_error(NGX_LOG_WARN, sr->connection->log, 0,
                      "events: the JWKS from \"%V\" could not be fetched "
                      "(%s%s); no fetched keys to check tokens with yet",
                      &jwks->uri, what, error);
    }

    /* the loader's words are in it */

    if (pool) {
        ngx_destroy_pool(pool);
    }
}


/*
 * The waiters go on, each at its next turn of the event loop: done,
 * they verify with what is there now; not done (the fetch was given up
 * with its request), they look again, and one of them fetches.
 */

static void
ngx_http_events_jwks_wake(ngx_http_events_jwks_t *jwks, ngx_uint_t done)
{
    ngx_queue_t                  *q;
    ngx_http_events_jwks_wait_t  *w;

    while (!ngx_queue_empty(&jwks->waiting)) {
        q = ngx_queue_head(&jwks->waiting);
        ngx_queue_remove(q);

        w = ngx_queue_data(q, ngx_http_events_jwks_wait_t, queue);
        w->queued = 0;
        w->done = done;

        ngx_post_event(w->request->connection->write, &ngx_posted_events);
    }
}


static void
ngx_http_events_jwks_resume(ngx_http_request_t *r)
{
    ngx_http_events_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_events_module);

    if (ctx == NULL || ctx->jwks == NULL || ctx->jwks->queued) {
        /* a write event of its own: still waiting */
        return;
    }

    r->read_event_handler = ngx_http_block_reading;
    r->write_event_handler = ngx_http_core_run_phases;

    ngx_http_core_run_phases(r);
}


/* the request is gone: out of the queue, or its fetch given up */

static void
ngx_http_events_jwks_cleanup(void *data)
{
    ngx_http_events_jwks_wait_t *w = data;

    if (w->queued) {
        ngx_queue_remove(&w->queue);
        w->queued = 0;
    }

    if (w->jwks->fetching == w->request) {
        w->jwks->fetching = NULL;
        ngx_http_events_jwks_wake(w->jwks, 0);
    }
}


/* events_auth_jwt_key_request URI [valid=TIME] [refetch=TIME] */

char *
ngx_http_events_jwks_conf(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_events_loc_conf_t *elcf = conf;

    ngx_str_t               *value, s;
    ngx_int_t                valid, refetch, *t;
    ngx_uint_t               i;
    ngx_pool_cleanup_t      *cln;
    ngx_http_events_jwks_t  *jwks;

    if (elcf->jwks) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (value[1].len == 0 || value[1].data[0] != '/') {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "the URI \"%V\" of \"%V\" must start with \"/\"",
                           &value[1], &cmd->name);
        return NGX_CONF_ERROR;
    }

    valid = NGX_HTTP_EVENTS_JWKS_VALID;
    refetch = NGX_HTTP_EVENTS_JWKS_REFETCH;

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "valid=", 6) == 0) {
            s.data = value[i].data + 6;
            s.len = value[i].len - 6;
            t = &valid;

        } else if (ngx_strncmp(value[i].data, "refetch=", 8) == 0) {
            s.data = value[i].data + 8;
            s.len = value[i].len - 8;
            t = &refetch;

        } else {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid parameter \"%V\"", &value[i]);
            return NGX_CONF_ERROR;
        }

        *t = ngx_parse_time(&s, 0);

        if (*t == NGX_ERROR || *t == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid \"%V\": it takes a time more "
                               "than 0", &value[i]);
            return NGX_CONF_ERROR;
        }
    }

    jwks = ngx_pcalloc(cf->pool, sizeof(ngx_http_events_jwks_t));
    cln = ngx_pool_cleanup_add(cf->pool, 0);

    if (jwks == NULL || cln == NULL) {
        return NGX_CONF_ERROR;
    }

    jwks->uri = value[1];
    jwks->valid = valid;
    jwks->refetch = refetch;
    ngx_queue_init(&jwks->waiting);

    cln->handler = ngx_http_events_jwks_free;
    cln->data = jwks;

    elcf->jwks = jwks;

    return NGX_CONF_OK;
}


static void
ngx_http_events_jwks_free(void *data)
{
    ngx_http_events_jwks_t *jwks = data;

    if (jwks->pool) {
        ngx_destroy_pool(jwks->pool);
        jwks->pool = NULL;
        jwks->keys = NULL;
    }
}


/* the answer to a fetch: kept for ngx_http_events_jwks_result() */

static ngx_int_t
ngx_http_events_jwks_body_filter(ngx_http_request_t *r, ngx_chain_t *in)
{
    size_t                        n;
    ngx_buf_t                    *b;
    ngx_chain_t                  *cl;
    ngx_http_events_ctx_t        *ctx;
    ngx_http_events_jwks_wait_t  *w;

    if (r == r->main) {
        return ngx_http_next_body_filter(r, in);
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_events_module);
    w = ctx ? ctx->jwks : NULL;

    if (w == NULL || w->request == r) {
        return ngx_http_next_body_filter(r, in);
    }

    for (cl = in; cl; cl = cl->next) {
        b = cl->buf;

        if (ngx_buf_in_memory(b)) {
            n = b->last - b->pos;

        } else if (b->in_file) {
            /* a cache hit, or an answer spooled to a temporary file */
            n = b->file_last - b->file_pos;

        } else {
            continue;
        }

        if (n > NGX_HTTP_EVENTS_JWKS_MAX - w->len) {
            w->too_large = 1;
            n = 0;
        }

        if (n && w->body == NULL) {
            w->body = ngx_pnalloc(w->request->pool, NGX_HTTP_EVENTS_JWKS_MAX);
            if (w->body == NULL) {
                return NGX_ERROR;
            }
        }

        if (n && ngx_buf_in_memory(b)) {
            ngx_memcpy(w->body + w->len, b->pos, n);
            w->len += n;

        } else if (n) {
            if (ngx_read_file(b->file, w->body + w->len, n, b->file_pos)
                != (ssize_t) n)
            {
                w->unreadable = 1;
            }

            w->len += n;
        }

        b->pos = b->last;

        if (b->in_file) {
            b->file_pos = b->file_last;
        }
    }

    return NGX_OK;
}
