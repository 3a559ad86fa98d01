
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
 * The last good document is kept in a small zone of its own, named by
 * the URI ("events_jwks:/_jwks", 64 KB), with its generation and when
 * it was fetched, and the fetches' schedule: when the last one ended,
 * whether it brought a JWKS, which worker's is out.  So one fetch
 * serves every worker, and a reload keeps it (same name, same size):
 * new workers verify at once from the kept document while it is within
 * "valid".  A changed URI names another zone, which starts empty: keys
 * are never taken from a document another URI brought.  EVP_PKEYs
 * cannot live in shared memory: a worker that sees a newer generation
 * copies the bytes out under the zone's mutex and parses them into a
 * pool of its own, swapped whole.  Keys are used only inside
 * ngx_http_events_jwt_verify(), which never waits: once the swap is
 * made nothing points into the old set, so it is freed there.
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
 *     kids costs one fetch per 30 s, whichever worker makes it.
 *
 * One fetch at a time across the workers: the worker that finds none
 * out claims it in the zone (its pid; a claim whose worker is gone, or
 * older than 2 minutes, is taken over).  The requests that need it
 * meanwhile wait in their worker's queue, except those a key already
 * fits: they go on with the current keys.  They are woken when it ends:
 * by the fetch's own end in its worker (posted write events, as
 * limit_req's delay is), by a 20 ms timer that looks at the zone in the
 * others (armed only while requests wait).  A request waits for one
 * fetch at most.  A failed fetch (not a 200, not a JWKS, too large, no
 * answer) keeps the previous keys; with none, ngx_http_events_auth.c
 * answers 503 keys_unavailable.
 *
 * A document the zone cannot hold (over 52 KB: the old one is freed
 * first when the new one does not fit beside it) is logged as an error
 * and the zone's copy is dropped; then every worker fetches and keeps
 * its keys on its own, as before 0.15.0, on a schedule of its own,
 * until a fetch brings one that fits.
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
#define NGX_HTTP_EVENTS_JWKS_ZONE       65536
#define NGX_HTTP_EVENTS_JWKS_LEASE      120000      /* a claim's life */
#define NGX_HTTP_EVENTS_JWKS_POLL       20          /* ms */

#define NGX_HTTP_EVENTS_JWKS_MAGIC      0x736b776a  /* "jwks" */
#define NGX_HTTP_EVENTS_JWKS_LAYOUT     1

/* what a request does about the keys, ngx_http_events_jwks_decide() */
#define NGX_HTTP_EVENTS_JWKS_GO         0
#define NGX_HTTP_EVENTS_JWKS_FETCH      1
#define NGX_HTTP_EVENTS_JWKS_WAIT       2           /* this worker's */
#define NGX_HTTP_EVENTS_JWKS_WAIT_OTHER 3           /* another's fetch */


/* the fetches' schedule: in the zone, or a worker's own (see above) */

typedef struct {
    ngx_msec_t                  ended;          /* the last fetch */
    ngx_msec_t                  since;          /* the claim's */
    ngx_pid_t                   fetching;       /* whose is out, or 0 */
    unsigned                    tried:1;        /* a fetch has ended */
    unsigned                    ok:1;           /* and brought a JWKS */
} ngx_http_events_jwks_sched_t;


typedef struct {
    uint32_t                    magic;
    uint32_t                    layout;
    ngx_atomic_t                generation;     /* of doc, read unlocked */
    u_char                     *doc;            /* the last good JWKS */
    size_t                      len;
    time_t                      fetched;
    ngx_http_events_jwks_sched_t  sched;
    unsigned                    too_large:1;    /* each worker on its own */
} ngx_http_events_jwks_sh_t;


typedef struct {
    ngx_slab_pool_t            *shpool;
    ngx_http_events_jwks_sh_t  *sh;
} ngx_http_events_jwks_zone_t;


struct ngx_http_events_jwks_s {
    ngx_str_t                   uri;
    ngx_msec_t                  valid;
    ngx_msec_t                  refetch;
    ngx_shm_zone_t             *zone;

    /* the rest is each worker's own */
    ngx_pool_t                 *pool;           /* the keys' */
    ngx_array_t                *keys;           /* the last good JWKS's */
    ngx_atomic_uint_t           generation;     /* the zone's, parsed */
    ngx_http_request_t         *fetching;       /* whose subrequest is out */
    ngx_queue_t                 waiting;        /* jwks_wait_t */
    ngx_event_t                 poll;           /* for another's fetch */
    ngx_msec_t                  seen;           /* its sched.ended then */
    ngx_msec_t                  due;            /* for Retry-After */
    time_t                      fetched;        /* when the keys came */
    ngx_http_events_jwks_sched_t  local;        /* the zone's too small */
    unsigned                    shared:1;       /* the fetch out claimed
                                                   in the zone */
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
static ngx_int_t ngx_http_events_jwks_token(ngx_http_request_t *r,
    ngx_http_events_jwks_t *jwks, ngx_uint_t *known);
static ngx_uint_t ngx_http_events_jwks_decide(ngx_http_events_jwks_t *jwks,
    ngx_uint_t known);
static ngx_msec_t ngx_http_events_jwks_due(ngx_http_events_jwks_t *jwks,
    ngx_http_events_jwks_sched_t *s);
static ngx_uint_t ngx_http_events_jwks_stale(
    ngx_http_events_jwks_sched_t *s);
static void ngx_http_events_jwks_adopt(ngx_http_events_jwks_t *jwks);
static ngx_http_events_jwks_wait_t *ngx_http_events_jwks_waiter(
    ngx_http_request_t *r, ngx_http_events_jwks_t *jwks);
static ngx_int_t ngx_http_events_jwks_fetch(ngx_http_request_t *r,
    ngx_http_events_jwks_wait_t *w);
static ngx_int_t ngx_http_events_jwks_done(ngx_http_request_t *sr,
    void *data, ngx_int_t rc);
static void ngx_http_events_jwks_result(ngx_http_request_t *sr,
    ngx_http_events_jwks_wait_t *w, ngx_int_t rc);
static void ngx_http_events_jwks_end(ngx_http_events_jwks_t *jwks,
    ngx_str_t *doc, ngx_uint_t ended, ngx_log_t *log);
static ngx_uint_t ngx_http_events_jwks_publish_locked(
    ngx_http_events_jwks_zone_t *zone, ngx_str_t *doc);
static void ngx_http_events_jwks_wake(ngx_http_events_jwks_t *jwks,
    ngx_uint_t done);
static void ngx_http_events_jwks_poll(ngx_event_t *ev);
static void ngx_http_events_jwks_resume(ngx_http_request_t *r);
static void ngx_http_events_jwks_cleanup(void *data);
static ngx_int_t ngx_http_events_jwks_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static void ngx_http_events_jwks_free(void *data);
static ngx_int_t ngx_http_events_jwks_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in);


static ngx_http_output_body_filter_pt    ngx_http_next_body_filter;

/* its address tags the zones: an events_zone of that name is refused */
static ngx_str_t  ngx_http_events_jwks_tag = ngx_string("events_jwks");


/*
 * The keys to check tokens with, beside the configured ones; or NULL.
 * A document another worker fetched is taken here too, so that
 * $events_tenant read before the preaccess phase sees it.
 */

ngx_array_t *
ngx_http_events_jwks_keys(ngx_http_events_jwks_t *jwks)
{
    if (jwks == NULL) {
        return NULL;
    }

    ngx_http_events_jwks_adopt(jwks);

    return jwks->keys;
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
    ngx_uint_t                    known, rc;
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

    if (ngx_http_events_jwks_token(r, jwks, &known) != NGX_OK) {
        return NGX_DECLINED;
    }

    rc = ngx_http_events_jwks_decide(jwks, known);

    if (rc == NGX_HTTP_EVENTS_JWKS_GO) {
        return NGX_DECLINED;
    }

    w = ngx_http_events_jwks_waiter(r, jwks);

    if (rc == NGX_HTTP_EVENTS_JWKS_FETCH) {
        if (w == NULL || ngx_http_events_jwks_fetch(r, w) != NGX_OK) {
            ngx_http_events_jwks_end(jwks, NULL, 0, r->connection->log);
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        /* the subrequest resumes the phases when it ends */
        return NGX_AGAIN;
    }

    if (w == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "events jwks: waiting for the fetch of \"%V\"%s",
                   &jwks->uri, (rc == NGX_HTTP_EVENTS_JWKS_WAIT_OTHER)
                               ? " by another worker" : "");

    w->queued = 1;
    ngx_queue_insert_tail(&jwks->waiting, &w->queue);

    if (rc == NGX_HTTP_EVENTS_JWKS_WAIT_OTHER && !jwks->poll.timer_set) {
        jwks->poll.log = ngx_cycle->log;
        ngx_add_timer(&jwks->poll, NGX_HTTP_EVENTS_JWKS_POLL);
    }

    r->read_event_handler = ngx_http_test_reading;
    r->write_event_handler = ngx_http_events_jwks_resume;

    return NGX_AGAIN;
}


/*
 * NGX_OK: the request has a token whose alg a key could check, and
 * *known: a key fits its kid and alg.  No token, or one no key could
 * check, needs no fetch (it is refused later, whatever the keys).  The
 * keys configured beside count as known (a kid they have fetches
 * nothing more), but do not spare the first fetch nor the one after
 * "valid": a token's kid and alg pick among all the keys.
 */

static ngx_int_t
ngx_http_events_jwks_token(ngx_http_request_t *r,
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
        return NGX_DECLINED;
    }

    ngx_http_events_jwks_adopt(jwks);

    elcf = ngx_http_get_module_loc_conf(r, ngx_http_events_module);

    *known = ngx_http_events_jwt_has_key(jwks->keys, alg, &kid, has_kid)
             || ngx_http_events_jwt_has_key(elcf->jwt_keys, alg, &kid,
                                            has_kid);

    return NGX_OK;
}


/*
 * Under the zone's mutex, so that of the workers that find a fetch due
 * at once only one claims it.  A fetch that ended since the keys were
 * adopted leaves nothing due: the request goes on, and verifying takes
 * that fetch's document (ngx_http_events_jwks_keys()).
 */

static ngx_uint_t
ngx_http_events_jwks_decide(ngx_http_events_jwks_t *jwks, ngx_uint_t known)
{
    ngx_uint_t                     rc, due;
    ngx_msec_t                     now;
    ngx_http_events_jwks_zone_t   *zone;
    ngx_http_events_jwks_sched_t  *s;

    zone = jwks->zone->data;
    now = ngx_current_msec;

    ngx_shmtx_lock(&zone->shpool->mutex);

    s = zone->sh->too_large ? &jwks->local : &zone->sh->sched;

    jwks->due = s->tried ? ngx_http_events_jwks_due(jwks, s) : now;

    if (s->fetching && s != &jwks->local && ngx_http_events_jwks_stale(s)) {
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "events: the fetch of the JWKS from \"%V\" by worker "
                      "%P is given up; fetching it again", &jwks->uri,
                      s->fetching);
        s->fetching = 0;
    }

    due = !s->tried || (ngx_msec_int_t) (now - jwks->due) >= 0
          || (!known
              && (ngx_msec_int_t) (now - s->ended - jwks->refetch) >= 0);

    if (jwks->fetching || s->fetching) {
        /* a refetch is out; the current keys still do for this one */
        rc = known ? NGX_HTTP_EVENTS_JWKS_GO
                   : jwks->fetching ? NGX_HTTP_EVENTS_JWKS_WAIT
                                    : NGX_HTTP_EVENTS_JWKS_WAIT_OTHER;
        jwks->seen = s->ended;

    } else if (due) {
        s->fetching = ngx_pid;
        s->since = now;
        jwks->shared = (s != &jwks->local);
        rc = NGX_HTTP_EVENTS_JWKS_FETCH;

    } else {
        rc = NGX_HTTP_EVENTS_JWKS_GO;
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    return rc;
}


/* when the next fetch is due, after the last one */

static ngx_msec_t
ngx_http_events_jwks_due(ngx_http_events_jwks_t *jwks,
    ngx_http_events_jwks_sched_t *s)
{
    return s->ended + (s->ok ? jwks->valid
                             : ngx_min(jwks->valid, jwks->refetch));
}


/* a claim whose worker is gone (killed, crashed) or that is too old */

static ngx_uint_t
ngx_http_events_jwks_stale(ngx_http_events_jwks_sched_t *s)
{
    if ((ngx_msec_int_t) (ngx_current_msec - s->since)
        > NGX_HTTP_EVENTS_JWKS_LEASE)
    {
        return 1;
    }

    return s->fetching != ngx_pid
           && kill(s->fetching, 0) == -1 && ngx_errno == NGX_ESRCH;
}


/*
 * A newer document in the zone: its bytes copied out under the mutex,
 * parsed outside it into a pool of this worker's.  The generation is
 * read unlocked: a stale read only puts the copy off to the next look.
 */

static void
ngx_http_events_jwks_adopt(ngx_http_events_jwks_t *jwks)
{
    char                         *error;
    size_t                        size;
    u_char                       *buf;
    ngx_str_t                     doc;
    ngx_int_t                     rv;
    ngx_pool_t                   *pool;
    ngx_array_t                  *keys;
    ngx_atomic_uint_t             generation;
    time_t                        fetched;
    ngx_uint_t                    none;
    ngx_http_events_jwks_zone_t  *zone;

    zone = jwks->zone->data;

    if (zone->sh->generation == jwks->generation) {
        return;
    }

    pool = ngx_create_pool(NGX_DEFAULT_POOL_SIZE, ngx_cycle->log);
    if (pool == NULL) {
        return;
    }

    ngx_str_null(&doc);

    /*
     * The room for the copy is taken before the lock (no malloc() with
     * the zone's mutex held), as large as the document was when looked
     * at; one published meanwhile that is larger is taken next time.
     */

    size = zone->sh->len;
    buf = size ? ngx_pnalloc(pool, size) : NULL;

    ngx_shmtx_lock(&zone->shpool->mutex);

    generation = zone->sh->generation;
    fetched = zone->sh->fetched;
    none = (zone->sh->doc == NULL);

    if (zone->sh->doc && buf && zone->sh->len <= size) {
        doc.data = buf;
        doc.len = zone->sh->len;
        ngx_memcpy(doc.data, zone->sh->doc, doc.len);
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    if (doc.len == 0) {
        /*
         * none there, or not copied (no memory, or it grew since it was
         * looked at: taken at a later request): the keys held stay
         */
        if (none) {
            jwks->generation = generation;
        }

        ngx_destroy_pool(pool);
        return;
    }

    keys = ngx_array_create(pool, 4, sizeof(ngx_http_events_jwt_key_t));
    rv = keys ? ngx_http_events_jwk_set(pool, &doc, keys, &error) : NGX_ERROR;

    if (rv != NGX_OK) {
        /* it was parsed by the worker that fetched it: only memory */
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "events: the JWKS from \"%V\" in shared memory "
                      "could not be taken (%s)", &jwks->uri,
                      rv == NGX_ERROR ? "out of memory" : error);
        ngx_destroy_pool(pool);
        return;
    }

    if (jwks->pool) {
        ngx_destroy_pool(jwks->pool);
    }

    jwks->pool = pool;
    jwks->keys = keys;
    jwks->generation = generation;
    jwks->fetched = fetched;

    ngx_log_error(NGX_LOG_INFO, ngx_cycle->log, 0,
                  "events: the JWKS from \"%V\" fetched %T s ago, from "
                  "shared memory, brings %ui keys", &jwks->uri,
                  ngx_time() - fetched, keys->nelts);
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

    ngx_log_error(NGX_LOG_INFO, sr->connection->log, 0,
                  "events: the JWKS from \"%V\" brings %ui keys",
                  &jwks->uri, keys->nelts);

    ngx_http_events_jwks_end(jwks, &body, 1, sr->connection->log);
    return;

failed:

    ngx_http_events_jwks_end(jwks, NULL, 1, sr->connection->log);

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
 * A fetch is over: its claim released; ended, the schedule says when
 * and how (doc: the good JWKS it brought, put in the zone).  The worker's
 * own schedule follows too, for when the zone cannot hold a document.
 */

static void
ngx_http_events_jwks_end(ngx_http_events_jwks_t *jwks, ngx_str_t *doc,
    ngx_uint_t ended, ngx_log_t *log)
{
    ngx_uint_t                     fits, i;
    ngx_msec_t                     now;
    ngx_http_events_jwks_zone_t   *zone;
    ngx_http_events_jwks_sched_t  *s[2];

    zone = jwks->zone->data;
    now = ngx_current_msec;
    fits = 0;

    ngx_shmtx_lock(&zone->shpool->mutex);

    if (doc) {
        fits = ngx_http_events_jwks_publish_locked(zone, doc);
    }

    s[0] = &jwks->local;
    s[1] = (jwks->shared || fits) ? &zone->sh->sched : NULL;

    for (i = 0; i < 2 && s[i]; i++) {
        if (ended) {
            s[i]->ended = now;
            s[i]->tried = 1;
            s[i]->ok = (doc != NULL);
        }

        if (s[i]->fetching == ngx_pid && (i == 0 || jwks->shared)) {
            s[i]->fetching = 0;
        }
    }

    if (fits) {
        /* this worker parsed it already */
        jwks->generation = zone->sh->generation;
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    jwks->shared = 0;

    if (ended) {
        jwks->due = ngx_http_events_jwks_due(jwks, &jwks->local);
    }

    if (doc && !fits) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "events: the JWKS from \"%V\" (%uz bytes) does not "
                      "fit in the shared zone \"%V\" (%uz bytes); each "
                      "worker fetches it and keeps its keys on its own",
                      &jwks->uri, doc->len, &jwks->zone->shm.name,
                      jwks->zone->shm.size);
    }
}


/*
 * The old document is freed only if the new one does not fit beside
 * it; one that fits in neither way leaves the zone without a document
 * (never an older one than a worker holds) and the workers on their own.
 */

static ngx_uint_t
ngx_http_events_jwks_publish_locked(ngx_http_events_jwks_zone_t *zone,
    ngx_str_t *doc)
{
    u_char                     *p;
    ngx_http_events_jwks_sh_t  *sh;

    sh = zone->sh;

    p = ngx_slab_alloc_locked(zone->shpool, doc->len);

    if (sh->doc) {
        ngx_slab_free_locked(zone->shpool, sh->doc);
        sh->doc = NULL;
        sh->len = 0;
    }

    if (p == NULL) {
        p = ngx_slab_alloc_locked(zone->shpool, doc->len);
    }

    if (p) {
        ngx_memcpy(p, doc->data, doc->len);
        sh->doc = p;
        sh->len = doc->len;
        sh->fetched = ngx_time();
    }

    sh->too_large = (p == NULL);

    ngx_memory_barrier();

    sh->generation++;

    return p != NULL;
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


/*
 * Requests wait for another worker's fetch: has it ended (done), or
 * been given up (they look again)?  Not cancelable: it runs only while
 * requests wait, and a worker shutting down must still answer them; it
 * lets them go on at once then, with the keys there are.
 */

static void
ngx_http_events_jwks_poll(ngx_event_t *ev)
{
    ngx_uint_t                     ended, gone;
    ngx_http_events_jwks_t        *jwks;
    ngx_http_events_jwks_zone_t   *zone;
    ngx_http_events_jwks_sched_t  *s;

    jwks = ev->data;
    zone = jwks->zone->data;

    if (ngx_queue_empty(&jwks->waiting)) {
        return;
    }

    ngx_shmtx_lock(&zone->shpool->mutex);

    s = zone->sh->too_large ? &jwks->local : &zone->sh->sched;

    ended = (s->ended != jwks->seen);
    gone = (s->fetching == 0 || ngx_http_events_jwks_stale(s));

    if (ended) {
        /* for the Retry-After of a 503 after a failed fetch */
        jwks->due = ngx_http_events_jwks_due(jwks, s);
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    if (ended || gone || ngx_exiting) {
        ngx_http_events_jwks_wake(jwks, ended || ngx_exiting);
        return;
    }

    ngx_add_timer(ev, NGX_HTTP_EVENTS_JWKS_POLL);
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
        ngx_http_events_jwks_end(w->jwks, NULL, 0,
                                 w->request->connection->log);
        ngx_http_events_jwks_wake(w->jwks, 0);
    }
}


/* events_auth_jwt_key_request URI [valid=TIME] [refetch=TIME] */

char *
ngx_http_events_jwks_conf(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_events_loc_conf_t *elcf = conf;

    ngx_str_t               *value, s, name;
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

    jwks->poll.handler = ngx_http_events_jwks_poll;
    jwks->poll.data = jwks;
    jwks->poll.log = cf->log;

    /* named by the URI: directives naming one URI share its document */

    name.len = sizeof("events_jwks:") - 1 + value[1].len;
    name.data = ngx_pnalloc(cf->pool, name.len);
    if (name.data == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memcpy(ngx_cpymem(name.data, "events_jwks:",
                          sizeof("events_jwks:") - 1),
               value[1].data, value[1].len);

    jwks->zone = ngx_shared_memory_add(cf, &name, NGX_HTTP_EVENTS_JWKS_ZONE,
                                       &ngx_http_events_jwks_tag);
    if (jwks->zone == NULL) {
        return NGX_CONF_ERROR;
    }

    if (jwks->zone->data == NULL) {
        jwks->zone->data = ngx_pcalloc(cf->pool,
                                       sizeof(ngx_http_events_jwks_zone_t));
        if (jwks->zone->data == NULL) {
            return NGX_CONF_ERROR;
        }

        jwks->zone->init = ngx_http_events_jwks_init_zone;
    }

    cln->handler = ngx_http_events_jwks_free;
    cln->data = jwks;

    elcf->jwks = jwks;

    return NGX_CONF_OK;
}


/* kept by a reload (same URI, same size): its document serves at once */

static ngx_int_t
ngx_http_events_jwks_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_events_jwks_zone_t  *ozone = data;

    size_t                        len;
    ngx_slab_pool_t              *shpool;
    ngx_http_events_jwks_zone_t  *zone;

    zone = shm_zone->data;
    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;
    zone->shpool = shpool;

    if (ozone || shm_zone->shm.exists) {
        zone->sh = ozone ? ozone->sh : shpool->data;

        /* the zone of another version of the module, kept by a reload */
        if (zone->sh->magic != NGX_HTTP_EVENTS_JWKS_MAGIC
            || zone->sh->layout != NGX_HTTP_EVENTS_JWKS_LAYOUT)
        {
            ngx_log_error(NGX_LOG_EMERG, shm_zone->shm.log, 0,
                          "zone \"%V\" has an incompatible layout (this "
                          "module writes %d); restart nginx instead of "
                          "reloading", &shm_zone->shm.name,
                          NGX_HTTP_EVENTS_JWKS_LAYOUT);
            return NGX_ERROR;
        }

        return NGX_OK;
    }

    zone->sh = ngx_slab_calloc(shpool, sizeof(ngx_http_events_jwks_sh_t));
    if (zone->sh == NULL) {
        return NGX_ERROR;
    }

    zone->sh->magic = NGX_HTTP_EVENTS_JWKS_MAGIC;
    zone->sh->layout = NGX_HTTP_EVENTS_JWKS_LAYOUT;

    shpool->data = zone->sh;

    /* a document too large is said once, in our words */
    shpool->log_nomem = 0;

    len = sizeof(" in events_jwks zone \"\"") + shm_zone->shm.name.len;

    shpool->log_ctx = ngx_slab_alloc(shpool, len);
    if (shpool->log_ctx == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(shpool->log_ctx, " in events_jwks zone \"%V\"%Z",
                &shm_zone->shm.name);

    return NGX_OK;
}


static void
ngx_http_events_jwks_free(void *data)
{
    ngx_http_events_jwks_t *jwks = data;

    if (jwks->poll.timer_set) {
        ngx_del_timer(&jwks->poll);
    }

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
