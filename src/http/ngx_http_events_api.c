
/*
 * Copyright (C) ngx_http_events_module authors
 */


/*
 * The REST API at an events_api location P:
 *
 *   POST P                 one event, or an array of them (all or nothing)
 *   GET  P                 the list, with filters and cursor paging;
 *                          with Accept: application/x-ndjson, an export
 *   GET  P/types           the type catalog of the window
 *   GET  P/{id}            one event
 *   GET  P/{type}/{id}     an entity's history, from its index
 *
 * Every failure answers the JSON error envelope.  A list page or an
 * event that only the history on disk has is read in a thread of
 * nginx's pool (the request waits, blocked, as for "aio threads"), so
 * that a cold disk stalls a thread, not the worker's other requests.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_events_module.h"
#include "ngx_http_events_store.h"
#include "ngx_http_events_http.h"
#include "ngx_http_events_buf.h"
#include "ngx_http_events_api.h"
#include "ngx_http_events_json.h"
#include "ngx_http_events_parse.h"
#include "ngx_http_events_query.h"
#include "ngx_http_events_cursor.h"
#include "ngx_http_events_id.h"
#include "ngx_http_events_ipc.h"
#include "ngx_http_events_auth.h"
#include "ngx_http_events_validate.h"
#include "ngx_http_events_journal.h"
#include "ngx_http_events_history.h"
#include "ngx_http_events_export.h"


/* how often a POST waiting for an fsync says so, keeping its worker */
#define NGX_HTTP_EVENTS_API_HOLD        10000


/* a POST whose events wait for the journal's fsync */
typedef struct {
    ngx_http_events_journal_waiter_t   waiter;
    ngx_event_t                        hold;
    ngx_http_request_t                *request;
    ngx_http_events_store_t           *store;
    ngx_http_events_event_t           *events;
    ngx_uint_t                         n;
    ngx_uint_t                         batch;
} ngx_http_events_api_wait_t;


/* a GET answered from disk in a thread (or after waiting for the index) */
typedef struct {
    ngx_http_request_t                *request;
    ngx_http_events_store_t           *store;
    ngx_pool_t                        *pool;
    ngx_event_t                        hold;
    ngx_http_events_history_job_t      job;
    ngx_http_events_query_t            q;
    ngx_http_events_result_t           res;
    ngx_str_t                          tenant;
    ngx_str_t                          id;
    ngx_array_t                        types;
} ngx_http_events_api_read_t;


/*
 * A request that waits for a cluster's log, first in the contexts
 * below: the handle of the store's operation, cancelled if the request
 * ends before its answer (a request ended early must not be answered)
 */
typedef struct {
    ngx_http_request_t                *request;
    ngx_http_events_store_t           *store;
    void                              *handle;      /* NULL: none due */
    void                             (*cancel)(void *handle);
} ngx_http_events_api_await_t;


/* a POST whose events wait for a cluster's log */
typedef struct {
    ngx_http_events_api_await_t        await;
    ngx_http_events_event_t           *events;
    ngx_uint_t                         n;
    ngx_uint_t                         batch;
} ngx_http_events_api_remote_t;


/* a read of a cluster's log, for what the ring no longer holds */
typedef struct {
    ngx_http_events_api_await_t        await;
    ngx_http_events_query_t            q;
    ngx_http_events_result_t           res;
    ngx_str_t                          json;
    ngx_array_t                        types;
} ngx_http_events_api_fetch_t;


static ngx_int_t ngx_http_events_api_collection(ngx_http_request_t *r,
    ngx_str_t *tenant);
static void ngx_http_events_api_hold(ngx_event_t *ev);
static ngx_int_t ngx_http_events_api_post(ngx_http_request_t *r);
static ngx_int_t ngx_http_events_api_ingest(ngx_http_request_t *r,
    u_char *body, size_t len);
static ngx_uint_t ngx_http_events_api_events(ngx_http_request_t *r,
    json_t *root, ngx_http_events_event_t *events, ngx_uint_t n,
    ngx_uint_t batch, ngx_http_events_error_t *err, ngx_int_t *rc);
static ngx_int_t ngx_http_events_api_store(ngx_http_request_t *r,
    json_t *root, ngx_http_events_error_t *err);
static ngx_int_t ngx_http_events_api_commit(ngx_http_request_t *r,
    ngx_http_events_event_t *events, ngx_uint_t n, ngx_uint_t batch);
static ngx_int_t ngx_http_events_api_sync(ngx_http_request_t *r,
    ngx_http_events_store_t *store, ngx_http_events_event_t *events,
    ngx_uint_t n, ngx_uint_t batch, uint64_t upto);
static void ngx_http_events_api_synced(void *data, ngx_int_t rc);
static void ngx_http_events_api_cleanup(void *data);
static ngx_int_t ngx_http_events_api_unsynced(ngx_http_request_t *r,
    ngx_http_events_store_t *store);
static ngx_int_t ngx_http_events_api_remote(ngx_http_request_t *r,
    ngx_http_events_store_t *store, ngx_http_events_event_t *events,
    ngx_uint_t n, ngx_uint_t batch);
static void ngx_http_events_api_remoted(void *data, ngx_int_t rc,
    ngx_uint_t failed);
static void *ngx_http_events_api_await_alloc(ngx_http_request_t *r,
    ngx_http_events_store_t *store, size_t size, void (*cancel)(void *));
static ngx_int_t ngx_http_events_api_await_start(
    ngx_http_events_api_await_t *w, void *handle, ngx_int_t busy);
static ngx_http_request_t *ngx_http_events_api_await_end(
    ngx_http_events_api_await_t *w);
static void ngx_http_events_api_await_finalize(ngx_http_request_t *r,
    ngx_int_t rc);
static void ngx_http_events_api_await_cleanup(void *data);
static ngx_int_t ngx_http_events_api_unavailable(ngx_http_request_t *r,
    ngx_int_t rc);
static ngx_int_t ngx_http_events_api_conflict(ngx_http_request_t *r,
    ngx_uint_t batch, ngx_uint_t failed);
static ngx_int_t ngx_http_events_api_created(ngx_http_request_t *r,
    ngx_http_events_store_t *store, ngx_http_events_event_t *events,
    ngx_uint_t n, ngx_uint_t batch);
static ngx_uint_t ngx_http_events_api_list_query(ngx_http_request_t *r,
    ngx_str_t *tenant, ngx_str_t *rtype, ngx_str_t *rid,
    ngx_http_events_cursor_key_t *key, ngx_http_events_query_t *q,
    ngx_int_t *rc);
static ngx_int_t ngx_http_events_api_list(ngx_http_request_t *r,
    ngx_str_t *tenant, ngx_str_t *rtype, ngx_str_t *rid);
static ngx_int_t ngx_http_events_api_list_body(ngx_http_request_t *r,
    ngx_http_events_query_t *q, ngx_http_events_result_t *res,
    ngx_uint_t empty);
static void ngx_http_events_api_link_encode(ngx_http_events_buf_t *b,
    u_char *s, size_t len, ngx_uint_t path);
static ngx_int_t ngx_http_events_api_link(ngx_http_request_t *r,
    ngx_http_events_query_t *q, ngx_http_events_result_t *res);
static ngx_int_t ngx_http_events_api_gone(ngx_http_request_t *r,
    ngx_http_events_cursor_key_t *key, ngx_http_events_window_t *w,
    const char *param, const char *code, const char *message);
static ngx_int_t ngx_http_events_api_list_answer(ngx_http_request_t *r,
    ngx_http_events_store_t *store, ngx_http_events_query_t *q,
    ngx_http_events_result_t *res);
static ngx_int_t ngx_http_events_api_read(ngx_http_request_t *r,
    ngx_http_events_store_t *store, ngx_http_events_query_t *q,
    ngx_http_events_result_t *res, ngx_str_t *tenant, ngx_str_t *id);
static void ngx_http_events_api_read_wait(ngx_http_request_t *r);
static void ngx_http_events_api_read_done(ngx_http_events_history_job_t *job);
static void ngx_http_events_api_read_hold(ngx_event_t *ev);
static void ngx_http_events_api_read_cleanup(void *data);
static ngx_int_t ngx_http_events_api_get(ngx_http_request_t *r,
    ngx_str_t *tenant, ngx_str_t *id);
static ngx_int_t ngx_http_events_api_get_answer(ngx_http_request_t *r,
    ngx_int_t rc, ngx_str_t *json);
static ngx_int_t ngx_http_events_api_fetch(ngx_http_request_t *r,
    ngx_http_events_store_t *store, ngx_http_events_query_t *q,
    ngx_http_events_window_t *w, ngx_str_t *tenant, ngx_str_t *id);
static void ngx_http_events_api_fetched_list(void *data, ngx_int_t rc);
static void ngx_http_events_api_fetched_event(void *data, ngx_int_t rc);
static ngx_int_t ngx_http_events_api_types(ngx_http_request_t *r,
    ngx_str_t *tenant);
static ngx_int_t ngx_http_events_api_types_fetch(ngx_http_request_t *r,
    ngx_http_events_store_t *store, ngx_str_t *tenant);
static void ngx_http_events_api_types_fetched(void *data, ngx_int_t rc);
static ngx_int_t ngx_http_events_api_types_answer(ngx_http_request_t *r,
    ngx_array_t *types);
static void ngx_http_events_api_oldest(ngx_http_events_store_t *store,
    ngx_http_events_window_t *w);
static ngx_uint_t ngx_http_events_api_visible(ngx_http_request_t *r,
    ngx_str_t *json);
static int ngx_libc_cdecl ngx_http_events_api_type_cmp(const void *one,
    const void *two);
static ngx_uint_t ngx_http_events_api_path_ok(ngx_str_t *s, ngx_uint_t rid);




ngx_int_t
ngx_http_events_api_handler(ngx_http_request_t *r)
{
    u_char                      *slash;
    ngx_int_t                    rc;
    ngx_str_t                    rest, tenant, first, second;
    ngx_http_events_error_t      err;
    ngx_http_events_store_t     *store;
    ngx_http_events_loc_conf_t  *elcf;

    elcf = ngx_http_get_module_loc_conf(r, ngx_http_events_module);

    if (!ngx_http_events_auth_access(r, &rc)) {
        return rc;
    }

    rc = ngx_http_events_get_tenant(r, &tenant);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_DECLINED) {
        ngx_http_discard_request_body(r);
        ngx_http_events_error(&err, 400, "invalid_tenant", NULL, NULL, NULL,
                              "the request's tenant must be 1-64 "
                              "characters of [A-Za-z0-9_.:-]");
        return ngx_http_events_http_send_error(r, &err, NULL);
    }

    store = elcf->api_zone->data;

    if (store->remote && r->method != NGX_HTTP_POST
        && store->remote->ready(store->remote->data) != NGX_OK)
    {
        /* a node that has not caught up with the log must not answer */
        ngx_http_discard_request_body(r);
        return ngx_http_events_api_unavailable(r, NGX_DONE);
    }

    rest.data = r->uri.data + elcf->prefix.len;
    rest.len = r->uri.len - ngx_min(r->uri.len, elcf->prefix.len);

    if (rest.len == 0 || (rest.len == 1 && rest.data[0] == '/')) {
        return ngx_http_events_api_collection(r, &tenant);
    }

    if (rest.data[0] != '/') {
        /* "/eventsfoo" in "location /events" */
        return ngx_http_events_http_not_found(r, "no such endpoint");
    }

    rest.data++;
    rest.len--;

    slash = ngx_strlchr(rest.data, rest.data + rest.len, '/');

    first.data = rest.data;
    first.len = slash ? (size_t) (slash - rest.data) : rest.len;

    if (slash == NULL) {
        if (r->method != NGX_HTTP_GET && r->method != NGX_HTTP_HEAD) {
            return ngx_http_events_http_not_allowed(r, "GET, HEAD");
        }

        if (first.len == 5 && ngx_strncmp(first.data, "types", 5) == 0) {
            return ngx_http_events_api_types(r, &tenant);
        }

        if (first.len == 6 && ngx_strncmp(first.data, "stream", 6) == 0) {
            return ngx_http_events_http_not_found(r, "the stream is served by "
                                                  "an events_stream location");
        }

        return ngx_http_events_api_get(r, &tenant, &first);
    }

    second.data = slash + 1;
    second.len = rest.data + rest.len - second.data;

    if (!ngx_http_events_api_path_ok(&first, 0)
        || !ngx_http_events_api_path_ok(&second, 1))
    {
        return ngx_http_events_http_not_found(r, "no such endpoint");
    }

    if (r->method != NGX_HTTP_GET && r->method != NGX_HTTP_HEAD) {
        return ngx_http_events_http_not_allowed(r, "GET, HEAD");
    }

    return ngx_http_events_api_list(r, &tenant, &first, &second);
}


static ngx_uint_t
ngx_http_events_api_path_ok(ngx_str_t *s, ngx_uint_t rid)
{
    size_t  i;
    u_char  ch;

    if (s->len == 0 || s->len > (rid ? NGX_HTTP_EVENTS_MAX_RID
                                     : NGX_HTTP_EVENTS_MAX_RTYPE))
    {
        return 0;
    }

    for (i = 0; i < s->len; i++) {
        ch = s->data[i];

        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z')
              || (ch >= '0' && ch <= '9') || ch == '_' || ch == '-'
              || (rid && (ch == '.' || ch == ':' || ch == '@'))))
        {
            return 0;
        }
    }

    return 1;
}


static ngx_int_t
ngx_http_events_api_collection(ngx_http_request_t *r, ngx_str_t *tenant)
{
    ngx_http_events_ctx_t  *ctx;

    if (r->method == NGX_HTTP_POST) {
        /* for the body handler, later */
        ctx = ngx_http_events_ctx(r);
        if (ctx == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ctx->tenant = *tenant;

        return ngx_http_events_api_post(r);
    }

    if (r->method == NGX_HTTP_GET || r->method == NGX_HTTP_HEAD) {
        return ngx_http_events_api_list(r, tenant, NULL, NULL);
    }

    return ngx_http_events_http_not_allowed(r, "GET, HEAD, POST");
}


/* POST */

static ngx_int_t
ngx_http_events_api_post(ngx_http_request_t *r)
{
    ngx_http_events_error_t      err;
    ngx_http_events_loc_conf_t  *elcf;

    elcf = ngx_http_get_module_loc_conf(r, ngx_http_events_module);

    if (!ngx_http_events_http_is_json(r)) {
        ngx_http_discard_request_body(r);
        ngx_http_events_error(&err, 415, "unsupported_media_type", NULL,
                              NULL, NULL, "events are sent as "
                              "application/json");
        return ngx_http_events_http_send_error(r, &err, NULL);
    }

    return ngx_http_events_http_body(r, elcf->max_body_size, NULL,
                                     ngx_http_events_api_ingest);
}


/* the body of a POST, whole */

static ngx_int_t
ngx_http_events_api_ingest(ngx_http_request_t *r, u_char *body, size_t len)
{
    json_t                   *root;
    json_error_t              jerr;
    ngx_http_events_error_t   err;

    ngx_memzero(&err, sizeof(ngx_http_events_error_t));

    /*
     * in the request's pool, which the events point into until stored,
     * maybe after a hook; nothing on this path changes the tree
     */

    root = ngx_http_events_parse_json(r->pool, body, len, &jerr);

    if (root == NULL) {
        ngx_http_events_error(&err, 400, "invalid_json", NULL, NULL, NULL,
                              "malformed JSON at line %d, column %d: %s",
                              jerr.line, jerr.column, jerr.text);
        return ngx_http_events_http_send_error(r, &err, NULL);
    }

    return ngx_http_events_api_store(r, root, &err);
}


/* a JSON value kept as long as the request, then freed */

ngx_int_t
ngx_http_events_api_hold_json(ngx_http_request_t *r, json_t *v)
{
    ngx_pool_cleanup_t  *cln;

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_ERROR;
    }

    cln->handler = ngx_http_events_json_cleanup;
    cln->data = v;

    return NGX_OK;
}


/*
 * An event object made by another front of the store (inbound
 * webhooks), held by the request: checked, hooked and stored exactly as
 * the body of POST /events, and answered the same way.
 */

ngx_int_t
ngx_http_events_api_ingest_json(ngx_http_request_t *r, json_t *root)
{
    ngx_http_events_error_t  err;

    ngx_memzero(&err, sizeof(ngx_http_events_error_t));

    return ngx_http_events_api_store(r, root, &err);
}


static ngx_int_t
ngx_http_events_api_store(ngx_http_request_t *r, json_t *root,
    ngx_http_events_error_t *err)
{
    ngx_int_t                    rc;
    ngx_uint_t                   n, batch;
    ngx_http_events_event_t     *events;
    ngx_http_events_store_t     *store;
    ngx_http_events_loc_conf_t  *elcf;

    elcf = ngx_http_get_module_loc_conf(r, ngx_http_events_module);
    store = elcf->api_zone->data;

    batch = json_is_array(root);
    n = batch ? json_array_size(root) : 1;

    if (!batch && !json_is_object(root)) {
        ngx_http_events_error(err, 400, "invalid_body", NULL, NULL, NULL,
                              "the body must be an event object or an "
                              "array of them");
        return ngx_http_events_http_send_error(r, err, NULL);
    }

    if (n == 0) {
        ngx_http_events_error(err, 400, "invalid_body", NULL, NULL, NULL,
                              "the batch is empty");
        return ngx_http_events_http_send_error(r, err, NULL);
    }

    if (n > ngx_min(NGX_HTTP_EVENTS_MAX_BATCH,
                    ngx_http_events_store_max_batch(store)))
    {
        ngx_http_events_error(err, 413, "payload_too_large", NULL, NULL,
                              NULL, "a batch holds at most %ui events",
                              ngx_min(NGX_HTTP_EVENTS_MAX_BATCH,
                                      ngx_http_events_store_max_batch(store)));
        return ngx_http_events_http_send_error(r, err, NULL);
    }

    events = ngx_palloc(r->pool, n * sizeof(ngx_http_events_event_t));
    if (events == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (!ngx_http_events_api_events(r, root, events, n, batch, err, &rc)) {
        return rc;
    }

    rc = ngx_http_events_validate_batch(r, events, n, batch,
                                        ngx_http_events_api_commit);

    if (rc != NGX_DECLINED) {
        return rc;
    }

    return ngx_http_events_api_commit(r, events, n, batch);
}


/*
 * Each event of the body checked and enveloped, as the token allows, and
 * ids unique in the batch.  Whether all are good; if not, the request
 * has been answered with *rc.
 */

static ngx_uint_t
ngx_http_events_api_events(ngx_http_request_t *r, json_t *root,
    ngx_http_events_event_t *events, ngx_uint_t n, ngx_uint_t batch,
    ngx_http_events_error_t *err, ngx_int_t *rc)
{
    ngx_uint_t                   i, j;
    ngx_http_events_ipc_t       *ipc;
    ngx_http_events_store_t     *store;
    ngx_http_events_claims_t    *claims;
    ngx_http_events_envelope_t   env;
    ngx_http_events_loc_conf_t  *elcf;
    u_char                       prefix[NGX_INT_T_LEN + 4];

    elcf = ngx_http_get_module_loc_conf(r, ngx_http_events_module);
    store = elcf->api_zone->data;
    claims = ngx_http_events_auth_claims(r);

    ngx_memzero(&env, sizeof(ngx_http_events_envelope_t));

    env.tenant = ngx_http_events_ctx(r)->tenant;

    if (elcf->source
        && ngx_http_complex_value(r, elcf->source, &env.source) != NGX_OK)
    {
        *rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        return 0;
    }

    ipc = ngx_http_events_ipc();

    env.pool = r->pool;
    env.rng = ipc ? &ipc->rng : NULL;
    env.max_size = ngx_min(elcf->max_event_size,
                           ngx_http_events_store_max_record(store));

    for (i = 0; i < n; i++) {
        if (batch) {
            env.prefix.data = prefix;
            env.prefix.len = ngx_sprintf(prefix, "[%ui].", i) - prefix;
        }

        err->status = 0;

        if (ngx_http_events_json_event(&env,
                                       batch ? json_array_get(root, i) : root,
                                       &events[i], err)
            != NGX_OK)
        {
            *rc = err->status
                  ? ngx_http_events_http_send_error(r, err, NULL)
                  : NGX_HTTP_INTERNAL_SERVER_ERROR;
            return 0;
        }

        if (claims
            && !ngx_http_events_jwt_granted(claims->publish, claims->npublish,
                                            &events[i].type))
        {
            ngx_http_events_error(err, 403, "forbidden", "field",
                                  &env.prefix, "type", "the token may not "
                                  "publish this type");
            *rc = ngx_http_events_http_send_error(r, err, NULL);
            return 0;
        }

        if (!events[i].client_id) {
            continue;
        }

        for (j = 0; j < i; j++) {
            if (events[j].client_id
                && events[j].id.len == events[i].id.len
                && ngx_memcmp(events[j].id.data, events[i].id.data,
                              events[i].id.len) == 0)
            {
                ngx_http_events_error(err, 400, "invalid_body", "field",
                                      &env.prefix, "id", "the id appears "
                                      "more than once in the batch");
                *rc = ngx_http_events_http_send_error(r, err, NULL);
                return 0;
            }
        }
    }

    return 1;
}


/* the events are valid, and the hook, if any, agreed: store them */

static ngx_int_t
ngx_http_events_api_commit(ngx_http_request_t *r,
    ngx_http_events_event_t *events, ngx_uint_t n, ngx_uint_t batch)
{
    uint64_t                     upto;
    ngx_str_t                    prefix;
    ngx_uint_t                   failed;
    ngx_http_events_error_t     *err, error;
    ngx_http_events_store_t     *store;
    ngx_http_events_loc_conf_t  *elcf;
    ngx_http_events_store_rc_e   rc;
    u_char                       item[NGX_INT_T_LEN + 4];

    elcf = ngx_http_get_module_loc_conf(r, ngx_http_events_module);
    store = elcf->api_zone->data;

    err = &error;
    ngx_memzero(err, sizeof(ngx_http_events_error_t));
    ngx_str_null(&prefix);

    if (store->remote) {
        return ngx_http_events_api_remote(r, store, events, n, batch);
    }

    rc = ngx_http_events_store_append_nosync(store, events, n, r->pool,
                                             &failed, &upto);

    if (rc == NGX_HTTP_EVENTS_STORE_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc != NGX_HTTP_EVENTS_STORE_OK && batch) {
        prefix.data = item;
        prefix.len = ngx_sprintf(item, "[%ui].", failed) - item;
    }

    if (rc == NGX_HTTP_EVENTS_STORE_CONFLICT) {
        return ngx_http_events_api_conflict(r, batch, failed);
    }

    if (rc == NGX_HTTP_EVENTS_STORE_TOO_LARGE) {
        ngx_http_events_error(err, 413, "payload_too_large", NULL, NULL,
                              NULL, "the events are larger than the zone "
                              "can hold");
        return ngx_http_events_http_send_error(r, err, NULL);
    }

    if (rc == NGX_HTTP_EVENTS_STORE_TOO_MANY_TYPES) {
        ngx_http_events_error(err, 409, "too_many_types", "field", &prefix,
                              "type", "this tenant has %d types in the "
                              "store, the most it may have; events of "
                              "types it has are taken",
                              NGX_HTTP_EVENTS_TENANT_TYPES);
        return ngx_http_events_http_send_error(r, err, NULL);
    }

    if (rc == NGX_HTTP_EVENTS_STORE_JOURNAL_FAILED) {
        ngx_http_events_error(err, 503, "journal_unavailable", NULL, NULL,
                              NULL, "the journal on disk cannot take the "
                              "write now; nothing was stored");
        return ngx_http_events_http_send_error(r, err, NULL);
    }

    if (rc != NGX_HTTP_EVENTS_STORE_OK) {
        ngx_http_events_error(err, 503, "store_unavailable", NULL, NULL,
                              NULL, "the store cannot take the write now; "
                              "nothing was stored");
        return ngx_http_events_http_send_error(r, err, NULL);
    }

    if (upto) {
        return ngx_http_events_api_sync(r, store, events, n, batch, upto);
    }

    return ngx_http_events_api_created(r, store, events, n, batch);
}


static ngx_int_t
ngx_http_events_api_conflict(ngx_http_request_t *r, ngx_uint_t batch,
    ngx_uint_t failed)
{
    ngx_str_t                 prefix;
    ngx_http_events_error_t   err;
    u_char                    item[NGX_INT_T_LEN + 4];

    ngx_memzero(&err, sizeof(ngx_http_events_error_t));
    ngx_str_null(&prefix);

    if (batch) {
        prefix.data = item;
        prefix.len = ngx_sprintf(item, "[%ui].", failed) - item;
    }

    ngx_http_events_error(&err, 409, "conflict", "field", &prefix,
                          "id", "an event with this id and a different "
                          "body exists");
    return ngx_http_events_http_send_error(r, &err, NULL);
}


/*
 * A cluster's zone: the events go to the cluster's log; the answer
 * waits for it, and the ring gets them from the log like every node's.
 */

static ngx_int_t
ngx_http_events_api_remote(ngx_http_request_t *r,
    ngx_http_events_store_t *store, ngx_http_events_event_t *events,
    ngx_uint_t n, ngx_uint_t batch)
{
    ngx_http_events_api_remote_t  *ar;

    ar = ngx_http_events_api_await_alloc(r, store,
                                        sizeof(ngx_http_events_api_remote_t),
                                        store->remote->cancel);
    if (ar == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ar->events = events;
    ar->n = n;
    ar->batch = batch;

    /* the parsed body the events point into lives as long as r */
    return ngx_http_events_api_await_start(&ar->await,
               store->remote->append(store->remote->data, events, n,
                                     r->pool, ngx_http_events_api_remoted,
                                     ar),
               NGX_BUSY);
}


static void
ngx_http_events_api_remoted(void *data, ngx_int_t rc, ngx_uint_t failed)
{
    ngx_http_events_api_remote_t  *ar = data;

    ngx_http_request_t  *r;

    r = ngx_http_events_api_await_end(&ar->await);

    switch (rc) {

    case NGX_OK:
        rc = ngx_http_events_api_created(r, ar->await.store, ar->events,
                                         ar->n, ar->batch);
        break;

    case NGX_DECLINED:
        rc = ngx_http_events_api_conflict(r, ar->batch, failed);
        break;

    default:
        rc = ngx_http_events_api_unavailable(r, rc);
        break;
    }

    ngx_http_events_api_await_finalize(r, rc);
}


/*
 * The context of a request that waits for a cluster's log (size bytes,
 * a wait first), with its cleanup; NULL: no memory
 */

static void *
ngx_http_events_api_await_alloc(ngx_http_request_t *r,
    ngx_http_events_store_t *store, size_t size, void (*cancel)(void *))
{
    ngx_http_cleanup_t          *cln;
    ngx_http_events_api_await_t  *w;

    w = ngx_pcalloc(r->pool, size);
    cln = ngx_http_cleanup_add(r, 0);
    if (w == NULL || cln == NULL) {
        return NULL;
    }

    w->request = r;
    w->store = store;
    w->cancel = cancel;

    /* nothing to cancel until the operation started */
    cln->handler = ngx_http_events_api_await_cleanup;
    cln->data = w;

    return w;
}


/* the operation's handle; NULL: refused now, answered busy at once */

static ngx_int_t
ngx_http_events_api_await_start(ngx_http_events_api_await_t *w, void *handle,
    ngx_int_t busy)
{
    if (handle == NULL) {
        return ngx_http_events_api_unavailable(w->request, busy);
    }

    w->handle = handle;
    w->request->main->count++;

    return NGX_DONE;
}


/* the operation answered: nothing to cancel any more */

static ngx_http_request_t *
ngx_http_events_api_await_end(ngx_http_events_api_await_t *w)
{
    w->handle = NULL;

    return w->request;
}


static void
ngx_http_events_api_await_finalize(ngx_http_request_t *r, ngx_int_t rc)
{
    ngx_connection_t  *c;

    c = r->connection;

    ngx_http_finalize_request(r, rc);
    ngx_http_run_posted_requests(c);
}


static void
ngx_http_events_api_await_cleanup(void *data)
{
    ngx_http_events_api_await_t  *w = data;

    if (w->handle) {
        w->cancel(w->handle);
        w->handle = NULL;
    }
}


static ngx_int_t
ngx_http_events_api_unavailable(ngx_http_request_t *r, ngx_int_t rc)
{
    ngx_str_t                 retry;
    ngx_http_events_error_t   err;

    ngx_memzero(&err, sizeof(ngx_http_events_error_t));
    ngx_str_set(&retry, "1");

    if (ngx_http_events_http_add_header(r, "Retry-After", &retry)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_DONE) {
        ngx_http_events_error(&err, 503, "cluster_catching_up", NULL, NULL,
                              NULL, "this node is still reading the "
                              "cluster's log; it answers when it has "
                              "caught up");

    } else if (rc == NGX_AGAIN) {
        ngx_http_events_error(&err, 503, "cluster_unavailable", NULL, NULL,
                              NULL, "the cluster's log did not answer in "
                              "time; the events may have been stored, a "
                              "retry with the same ids is safe");

    } else if (rc == NGX_ABORT) {
        ngx_http_events_error(&err, 503, "cluster_unreplicated", NULL, NULL,
                              NULL, "the cluster's log stored the events, "
                              "but fewer replicas than required confirmed "
                              "them in time; a retry with the same ids is "
                              "safe");

    } else if (rc == NGX_DECLINED) {
        ngx_http_events_error(&err, 503, "cluster_unavailable", NULL, NULL,
                              NULL, "what this node's ring no longer holds "
                              "is read from the cluster's log, which "
                              "cannot be reached");

    } else {
        ngx_http_events_error(&err, 503, "cluster_unavailable", NULL, NULL,
                              NULL, "the cluster's log cannot be reached; "
                              "nothing was stored");
    }

    return ngx_http_events_http_send_error(r, &err, NULL);
}


/*
 * fsync=always: the answer waits until the journal is durable past the
 * events' records, in a thread when nginx has a thread pool, so that
 * the worker serves other requests meanwhile and they share the sync.
 *
 * A worker in graceful shutdown exits once no timer but cancelable ones
 * is left, and nothing of a task out in the thread pool is a timer: the
 * waiting request holds a timer that is not cancelable, so its worker
 * stays until it has answered (accepted events are answered, never
 * dropped with the connection).
 */

static ngx_int_t
ngx_http_events_api_sync(ngx_http_request_t *r, ngx_http_events_store_t *store,
    ngx_http_events_event_t *events, ngx_uint_t n, ngx_uint_t batch,
    uint64_t upto)
{
    ngx_int_t                    rc;
    ngx_http_cleanup_t          *cln;
    ngx_http_events_api_wait_t  *aw;

    aw = ngx_pcalloc(r->pool, sizeof(ngx_http_events_api_wait_t));
    cln = ngx_http_cleanup_add(r, 0);
    if (aw == NULL || cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    aw->waiter.end = upto;
    aw->waiter.data = aw;
    aw->waiter.handler = ngx_http_events_api_synced;
    aw->request = r;
    aw->store = store;
    aw->events = events;
    aw->n = n;
    aw->batch = batch;

    /* a request ended early must not stay in the queue */
    cln->handler = ngx_http_events_api_cleanup;
    cln->data = aw;

    rc = ngx_http_events_journal_wait(store->journal, &aw->waiter);

    if (rc == NGX_AGAIN) {
        aw->hold.handler = ngx_http_events_api_hold;
        aw->hold.data = aw;
        aw->hold.log = r->connection->log;
        ngx_add_timer(&aw->hold, NGX_HTTP_EVENTS_API_HOLD);

        /* the parsed body the events point into lives as long as r */
        r->main->count++;
        return NGX_DONE;
    }

    if (rc == NGX_DECLINED) {
        rc = ngx_http_events_journal_sync(store->journal, upto);
    }

    if (rc != NGX_OK) {
        return ngx_http_events_api_unsynced(r, store);
    }

    return ngx_http_events_api_created(r, store, events, n, batch);
}


static void
ngx_http_events_api_synced(void *data, ngx_int_t rc)
{
    ngx_http_events_api_wait_t  *aw = data;

    ngx_connection_t    *c;
    ngx_http_request_t  *r;

    r = aw->request;
    c = r->connection;

    if (aw->hold.timer_set) {
        ngx_del_timer(&aw->hold);
    }

    if (rc == NGX_OK) {
        rc = ngx_http_events_api_created(r, aw->store, aw->events, aw->n,
                                         aw->batch);

    } else {
        rc = ngx_http_events_api_unsynced(r, aw->store);
    }

    ngx_http_finalize_request(r, rc);
    ngx_http_run_posted_requests(c);
}


static void
ngx_http_events_api_cleanup(void *data)
{
    ngx_http_events_api_wait_t  *aw = data;

    ngx_http_events_journal_unwait(&aw->waiter);

    if (aw->hold.timer_set) {
        ngx_del_timer(&aw->hold);
    }
}


/* only keeps the worker: the sync's end answers, however long it takes */

static void
ngx_http_events_api_hold(ngx_event_t *ev)
{
    ngx_http_events_api_wait_t  *aw = ev->data;

    ngx_log_error(NGX_LOG_WARN, ev->log, 0,
                  "events: zone \"%V\": a POST still waits for the "
                  "journal's fsync", &aw->store->name);

    ngx_add_timer(&aw->hold, NGX_HTTP_EVENTS_API_HOLD);
}


static ngx_int_t
ngx_http_events_api_unsynced(ngx_http_request_t *r,
    ngx_http_events_store_t *store)
{
    ngx_http_events_error_t  err;

    /* published: streams see it; the client must not assume either */
    ngx_http_events_ipc_notify(store);

    ngx_http_events_error(&err, 503, "journal_unavailable", NULL, NULL,
                          NULL, "the events were stored but could not "
                          "be synced to disk; a retry with the same "
                          "ids is safe");
    return ngx_http_events_http_send_error(r, &err, NULL);
}


static ngx_int_t
ngx_http_events_api_created(ngx_http_request_t *r,
    ngx_http_events_store_t *store, ngx_http_events_event_t *events,
    ngx_uint_t n, ngx_uint_t batch)
{
    u_char                      *p, *body;
    size_t                       len;
    ngx_str_t                    location;
    ngx_uint_t                   i, created, status;
    ngx_http_events_event_t     *ev;
    ngx_http_events_loc_conf_t  *elcf;

    elcf = ngx_http_get_module_loc_conf(r, ngx_http_events_module);

    created = 0;
    len = sizeof("{\"data\":[]}");

    for (i = 0; i < n; i++) {
        created += !events[i].repeat;
        len += events[i].stored.len + 1;
    }

    status = created ? NGX_HTTP_CREATED : NGX_HTTP_OK;

    if (created) {
        /* streams hear of it after this answer has gone */
        ngx_http_events_ipc_notify(store);
    }

    if (!batch && elcf->prefix.len == 0) {
        /* not an events_api location: no collection to point into */
        return ngx_http_events_http_send(r, status,
                                         &ngx_http_events_http_json_type,
                                         events[0].stored.data,
                                         events[0].stored.len);
    }

    if (!batch) {
        ev = &events[0];

        location.len = elcf->prefix.len + 1 + ev->id.len;
        location.data = ngx_pnalloc(r->pool, location.len);
        if (location.data == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        p = ngx_cpymem(location.data, elcf->prefix.data, elcf->prefix.len);
        *p++ = '/';
        ngx_memcpy(p, ev->id.data, ev->id.len);

        if (ngx_http_events_http_add_header(r, "Location", &location)
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_http_events_http_send(r, status,
                                         &ngx_http_events_http_json_type,
                                         ev->stored.data, ev->stored.len);
    }

    body = ngx_pnalloc(r->pool, len);
    if (body == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_cpymem(body, "{\"data\":[", sizeof("{\"data\":[") - 1);

    for (i = 0; i < n; i++) {
        if (i) {
            *p++ = ',';
        }

        p = ngx_cpymem(p, events[i].stored.data, events[i].stored.len);
    }

    *p++ = ']';
    *p++ = '}';

    return ngx_http_events_http_send(r, status,
                                     &ngx_http_events_http_json_type,
                                     body, p - body);
}


/* GET */

static ngx_int_t
ngx_http_events_api_list(ngx_http_request_t *r, ngx_str_t *tenant,
    ngx_str_t *rtype, ngx_str_t *rid)
{
    ngx_int_t                    rc;
    ngx_http_events_error_t      err;
    ngx_http_events_query_t        q;
    ngx_http_events_store_t       *store;
    ngx_http_events_result_t       res;
    ngx_http_events_window_t       w;
    ngx_http_events_loc_conf_t    *elcf;
    ngx_http_events_cursor_key_t  *key;

    elcf = ngx_http_get_module_loc_conf(r, ngx_http_events_module);
    store = elcf->api_zone->data;

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    key = ngx_http_events_store_cursor_key(store);
    if (key == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (!ngx_http_events_api_list_query(r, tenant, rtype, rid, key, &q,
                                        &rc))
    {
        return rc;
    }

    ngx_http_events_store_window(store, &w);

    if ((q.has_after && q.after_epoch != w.epoch)
        || (q.before && q.before_epoch != w.epoch))
    {
        ngx_http_events_api_oldest(store, &w);

        return ngx_http_events_api_gone(r, key, &w,
                                        q.has_after ? "after" : "before",
                                        "epoch_changed",
                                        "the cursor is from another "
                                        "incarnation of the store; read "
                                        "again from \"oldest\"");
    }

    if ((q.has_after && q.after > w.head_seq)
        || (q.before && q.before > w.head_seq + 1))
    {
        ngx_http_events_error(&err, 400, "invalid_cursor", "param", NULL,
                              q.has_after ? "after" : "before",
                              "the cursor is ahead of the store's head");
        return ngx_http_events_http_send_error(r, &err, NULL);
    }

    if (ngx_http_events_export_wanted(r)) {
        /* a cluster's export reads what left the ring from the log */
        ngx_http_events_api_oldest(store, &w);

        if (q.has_after && q.after < w.evicted_seq) {
            return ngx_http_events_api_gone(r, key, &w, "after",
                                            "cursor_expired",
                                            "the events after this cursor "
                                            "have left the store; read "
                                            "again from \"oldest\"");
        }

        return ngx_http_events_export_start(r, store, &q, &w);
    }

    /* a cluster's log holds what left the ring: the page from there */
    if (store->remote
        && (q.desc ? q.before && q.before - 1 <= w.evicted_seq
                   : q.after < w.evicted_seq))
    {
        return ngx_http_events_api_fetch(r, store, &q, &w, NULL, NULL);
    }

    if (ngx_http_events_store_query_deferred(store, &q, r->pool, &res)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (res.disk) {
        return ngx_http_events_api_read(r, store, &q, &res, NULL, NULL);
    }

    if (store->remote
        && (res.expired
            || (q.desc && !res.has_more && res.items.nelts < q.limit
                && res.window.evicted_seq)))
    {
        /* the ring moved on meanwhile, or ran out before the page did */
        return ngx_http_events_api_fetch(r, store, &q, &res.window, NULL,
                                         NULL);
    }

    return ngx_http_events_api_list_answer(r, store, &q, &res);
}


static ngx_int_t
ngx_http_events_api_list_answer(ngx_http_request_t *r,
    ngx_http_events_store_t *store, ngx_http_events_query_t *q,
    ngx_http_events_result_t *res)
{
    ngx_uint_t  empty;

    ngx_http_events_api_oldest(store, &res->window);

    if (res->expired) {
        return ngx_http_events_api_gone(r, q->cursor_key, &res->window,
                                        q->has_after ? "after" : "before",
                                        "cursor_expired",
                                        "the events after this cursor have "
                                        "left the store; read again from "
                                        "\"oldest\"");
    }

    empty = !q->any_tenant
            && ngx_http_events_store_tenant_empty(store, &q->tenant);

    return ngx_http_events_api_list_body(r, q, res, empty);
}


/*
 * A page or an event from disk, in a thread: its results go to a pool
 * of their own (the thread's alone meanwhile), freed with the request;
 * the request is blocked, so that a client gone meanwhile does not
 * free what the thread writes.  Without a thread to run it (more reads
 * in threads than the cap), it is read here, bounded as always.
 */

static ngx_int_t
ngx_http_events_api_read(ngx_http_request_t *r,
    ngx_http_events_store_t *store, ngx_http_events_query_t *q,
    ngx_http_events_result_t *res, ngx_str_t *tenant, ngx_str_t *id)
{
    ngx_int_t                      rc;
    ngx_pool_t                    *pool;
    ngx_pool_cleanup_t            *cln;
    ngx_http_events_api_read_t    *ar;
    ngx_http_events_history_job_t *job;

    ar = ngx_pcalloc(r->pool, sizeof(ngx_http_events_api_read_t));
    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (ar == NULL || cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    pool = ngx_create_pool(NGX_DEFAULT_POOL_SIZE, r->connection->log);
    if (pool == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln->handler = ngx_http_events_api_read_cleanup;
    cln->data = ar;

    ar->request = r;
    ar->store = store;
    ar->pool = pool;

    job = &ar->job;
    job->history = store->journal->history;
    job->pool = pool;
    job->handler = ngx_http_events_api_read_done;
    job->data = ar;

    if (q) {
        ar->q = *q;
        ar->res = *res;

        if (ngx_array_init(&ar->res.items, pool, q->limit + 1,
                           sizeof(ngx_http_events_item_t))
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        job->query = &ar->q;
        job->res = &ar->res;

    } else if (id == NULL) {
        /* the catalog: it waits for the index to have the head */
        if (ngx_array_init(&ar->types, pool, 16,
                           sizeof(ngx_http_events_type_info_t))
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ar->tenant = *tenant;
        job->tenant = &ar->tenant;
        job->types = &ar->types;

    } else {
        ar->tenant = *tenant;
        ar->id = *id;
        job->tenant = &ar->tenant;
        job->id = &ar->id;
    }

    rc = ngx_http_events_history_post(job);

    if (rc == NGX_AGAIN) {
        /* a timer keeps a worker that shuts down until the thread ends */
        ar->hold.handler = ngx_http_events_api_read_hold;
        ar->hold.data = ar;
        ar->hold.log = r->connection->log;
        ngx_add_timer(&ar->hold, NGX_HTTP_EVENTS_API_HOLD);

        r->main->blocked++;
        r->aio = 1;
        r->main->count++;
        r->write_event_handler = ngx_http_events_api_read_wait;
        return NGX_DONE;
    }

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_DECLINED) {
        ngx_http_events_history_run(job);
    }

    if (q) {
        return job->rc == NGX_OK
               ? ngx_http_events_api_list_answer(r, store, &ar->q, &ar->res)
               : NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (job->types) {
        return job->rc == NGX_OK
               ? ngx_http_events_api_types_answer(r, &ar->types)
               : NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_events_api_get_answer(r, job->rc, &job->json);
}


/* a write event while the thread reads: nothing to write yet */

static void
ngx_http_events_api_read_wait(ngx_http_request_t *r)
{
    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "events: a read from disk is still in a thread");
}


static void
ngx_http_events_api_read_done(ngx_http_events_history_job_t *job)
{
    ngx_http_events_api_read_t *ar = job->data;

    ngx_int_t            rc;
    ngx_connection_t    *c;
    ngx_http_request_t  *r;

    r = ar->request;
    c = r->connection;

    ngx_http_set_log_request(c->log, r);

    if (ar->hold.timer_set) {
        ngx_del_timer(&ar->hold);
    }

    r->main->blocked--;
    r->aio = 0;

    if (r->write_event_handler != ngx_http_events_api_read_wait) {
        /* ended meanwhile (the client went away): only finalized now */
        r->write_event_handler(r);
        ngx_http_run_posted_requests(c);
        return;
    }

    r->write_event_handler = ngx_http_request_empty_handler;

    if (job->query) {
        rc = job->rc == NGX_OK
             ? ngx_http_events_api_list_answer(r, ar->store, &ar->q,
                                               &ar->res)
             : NGX_HTTP_INTERNAL_SERVER_ERROR;

    } else if (job->types) {
        rc = job->rc == NGX_OK
             ? ngx_http_events_api_types_answer(r, &ar->types)
             : NGX_HTTP_INTERNAL_SERVER_ERROR;

    } else {
        rc = ngx_http_events_api_get_answer(r, job->rc, &job->json);
    }

    ngx_http_finalize_request(r, rc);
    ngx_http_run_posted_requests(c);
}


static void
ngx_http_events_api_read_hold(ngx_event_t *ev)
{
    ngx_log_error(NGX_LOG_WARN, ev->log, 0,
                  "events: a read from the history on disk still waits "
                  "for its thread");

    ngx_add_timer(ev, NGX_HTTP_EVENTS_API_HOLD);
}


static void
ngx_http_events_api_read_cleanup(void *data)
{
    ngx_http_events_api_read_t *ar = data;

    if (ar->hold.timer_set) {
        ngx_del_timer(&ar->hold);
    }

    ngx_destroy_pool(ar->pool);
}


/*
 * The query of a list: its parameters, the entity of the path, the
 * request's tenant, the token's grant.  Whether it can run; if not, the
 * request has been answered with *rc.
 */

static ngx_uint_t
ngx_http_events_api_list_query(ngx_http_request_t *r, ngx_str_t *tenant,
    ngx_str_t *rtype, ngx_str_t *rid, ngx_http_events_cursor_key_t *key,
    ngx_http_events_query_t *q, ngx_int_t *rc)
{
    ngx_int_t                    narrowed;
    ngx_http_events_error_t      err;
    ngx_http_events_claims_t    *claims;
    ngx_http_events_loc_conf_t  *elcf;

    elcf = ngx_http_get_module_loc_conf(r, ngx_http_events_module);

    ngx_memzero(q, sizeof(ngx_http_events_query_t));
    ngx_memzero(&err, sizeof(ngx_http_events_error_t));

    if (ngx_http_events_query_parse(&r->args, NGX_HTTP_EVENTS_QUERY_LIST, key,
                                    r->pool, q, &err)
        != NGX_OK)
    {
        *rc = err.status ? ngx_http_events_http_send_error(r, &err, NULL)
                         : NGX_HTTP_INTERNAL_SERVER_ERROR;
        return 0;
    }

    if (rtype) {
        if ((q->rtype.len && (q->rtype.len != rtype->len
                              || ngx_strncmp(q->rtype.data, rtype->data,
                                             rtype->len) != 0))
            || (q->rid.len && (q->rid.len != rid->len
                               || ngx_strncmp(q->rid.data, rid->data,
                                              rid->len) != 0)))
        {
            ngx_http_events_error(&err, 400, "invalid_parameter", "param",
                                  NULL, "resourceType", "the path names "
                                  "the entity; the query may not name "
                                  "another");
            *rc = ngx_http_events_http_send_error(r, &err, NULL);
            return 0;
        }

        q->rtype = *rtype;
        q->rid = *rid;
    }

    q->tenant = *tenant;
    q->scan_limit = elcf->scan_limit;

    claims = ngx_http_events_auth_claims(r);

    if (claims == NULL) {
        return 1;
    }

    narrowed = ngx_http_events_jwt_narrow(claims->subscribe,
                                          claims->nsubscribe, &q->types,
                                          &q->ntypes, r->pool);

    if (narrowed == NGX_ERROR) {
        *rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        return 0;
    }

    if (narrowed == NGX_DECLINED) {
        ngx_http_events_error(&err, 403, "forbidden", "param", NULL,
                              "types", "the token grants no "
                              "subscription to these types");
        *rc = ngx_http_events_http_send_error(r, &err, NULL);
        return 0;
    }

    return 1;
}


/*
 * A tenant with no event in the store gets "head": null and no
 * Events-Head: its head would be a position among other tenants' events.
 */

static ngx_int_t
ngx_http_events_api_list_body(ngx_http_request_t *r,
    ngx_http_events_query_t *q, ngx_http_events_result_t *res,
    ngx_uint_t empty)
{
    u_char                    *p;
    size_t                     len;
    ngx_str_t                  head;
    ngx_uint_t                 i;
    ngx_http_events_buf_t      b;
    ngx_http_events_item_t    *items;
    ngx_http_events_window_t  *w;

    w = &res->window;
    items = res->items.elts;

    len = 128 + 3 * NGX_HTTP_EVENTS_CURSOR_LEN;

    for (i = 0; i < res->items.nelts; i++) {
        len += items[i].json.len + 1;
    }

    /* one allocation in the common case: the events' size is known */
    ngx_http_events_buf_init(&b, r->pool, len);

    head.data = ngx_pnalloc(r->pool, NGX_HTTP_EVENTS_CURSOR_LEN);
    if (head.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    head.len = ngx_http_events_cursor_write(q->cursor_key, head.data,
                                            w->epoch, w->head_seq)
               - head.data;

    ngx_http_events_buf_literal(&b, "{\"data\":[");

    for (i = 0; i < res->items.nelts; i++) {
        if (i) {
            ngx_http_events_buf_literal(&b, ",");
        }

        ngx_http_events_buf_add(&b, items[i].json.data, items[i].json.len);
    }

    ngx_http_events_buf_printf(&b, "],\"has_more\":%s,\"next\":",
                               res->has_more ? "true" : "false");

    p = ngx_http_events_buf_reserve(&b, NGX_HTTP_EVENTS_CURSOR_LEN + 2);

    if (p && res->has_next) {
        *p++ = '"';
        p = ngx_http_events_cursor_write(q->cursor_key, p, w->epoch,
                                         res->next);
        *p++ = '"';
        b.pos = p;

    } else {
        ngx_http_events_buf_literal(&b, "null");
    }

    if (empty) {
        ngx_http_events_buf_literal(&b, ",\"head\":null,\"oldest\":\"");

    } else {
        ngx_http_events_buf_printf(&b, ",\"head\":\"%V\",\"oldest\":\"",
                                   &head);
    }

    p = ngx_http_events_buf_reserve(&b, NGX_HTTP_EVENTS_CURSOR_LEN + 2);

    if (p) {
        p = ngx_http_events_cursor_write(q->cursor_key, p, w->epoch,
                                         w->evicted_seq);
        *p++ = '"';
        *p++ = '}';
        b.pos = p;
    }

    if (!empty
        && ngx_http_events_http_add_header(r, "Events-Head", &head) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (res->has_more && ngx_http_events_api_link(r, q, res) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_events_http_send_buf(r, NGX_HTTP_OK, NULL, &b);
}


/*
 * Link: <same query, the cursor moved on>; rel="next".  Built from the
 * query as parsed (every name known, given once), each value decoded as
 * the parser decodes it and encoded again with everything but unreserved
 * characters escaped: nothing a client sent can end the URI reference
 * or add a parameter to the header ("<", ">", ",", ";", quotes).
 */

static ngx_int_t
ngx_http_events_api_link(ngx_http_request_t *r, ngx_http_events_query_t *q,
    ngx_http_events_result_t *res)
{
    u_char                 *arg, *end, *amp, *eq, *src, *dst, *v;
    size_t                  name;
    ngx_str_t               link;
    ngx_http_events_buf_t   b;

    ngx_http_events_buf_init(&b, r->pool, r->uri.len + 3 * r->args.len
                                          + NGX_HTTP_EVENTS_CURSOR_LEN + 64);

    ngx_http_events_buf_literal(&b, "<");
    ngx_http_events_api_link_encode(&b, r->uri.data, r->uri.len, 1);
    ngx_http_events_buf_literal(&b, "?");

    v = ngx_pnalloc(r->pool, r->args.len);
    if (v == NULL) {
        return NGX_ERROR;
    }

    arg = r->args.data;
    end = arg + r->args.len;

    for ( /* void */ ; arg < end; arg = amp + 1) {
        amp = ngx_strlchr(arg, end, '&');
        if (amp == NULL) {
            amp = end;
        }

        eq = ngx_strlchr(arg, amp, '=');
        name = (eq ? eq : amp) - arg;

        if (name == 0
            || (name == 5 && ngx_strncmp(arg, "after", 5) == 0)
            || (name == 6 && ngx_strncmp(arg, "before", 6) == 0))
        {
            continue;
        }

        /* the name is one the parser knows: letters only */
        ngx_http_events_buf_add(&b, arg, name);
        ngx_http_events_buf_literal(&b, "=");

        if (eq) {
            src = eq + 1;
            dst = v;
            ngx_unescape_uri(&dst, &src, amp - eq - 1, 0);
            ngx_http_events_api_link_encode(&b, v, dst - v, 0);
        }

        ngx_http_events_buf_literal(&b, "&");
    }

    ngx_http_events_buf_add(&b, (u_char *) (q->desc ? "before=" : "after="),
                            q->desc ? 7 : 6);

    dst = ngx_http_events_buf_reserve(&b, NGX_HTTP_EVENTS_CURSOR_LEN);
    if (dst) {
        b.pos = ngx_http_events_cursor_write(q->cursor_key, dst,
                                             res->window.epoch, res->next);
    }

    ngx_http_events_buf_literal(&b, ">; rel=\"next\"");

    if (b.failed) {
        return NGX_ERROR;
    }

    link.data = b.start;
    link.len = b.pos - b.start;

    return ngx_http_events_http_add_header(r, "Link", &link);
}


/* percent-encoded but for RFC 3986's unreserved characters (and "/") */

static void
ngx_http_events_api_link_encode(ngx_http_events_buf_t *b, u_char *s,
    size_t len, ngx_uint_t path)
{
    u_char  *p, c;

    static u_char  hex[] = "0123456789ABCDEF";

    p = ngx_http_events_buf_reserve(b, 3 * len);
    if (p == NULL) {
        return;
    }

    while (len--) {
        c = *s++;

        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
            || (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_'
            || c == '~' || (path && c == '/'))
        {
            *p++ = c;
            continue;
        }

        *p++ = '%';
        *p++ = hex[c >> 4];
        *p++ = hex[c & 0xf];
    }

    b->pos = p;
}


static ngx_int_t
ngx_http_events_api_gone(ngx_http_request_t *r,
    ngx_http_events_cursor_key_t *key, ngx_http_events_window_t *w,
    const char *param, const char *code, const char *message)
{
    u_char                   *p;
    ngx_str_t                 extra;
    ngx_http_events_error_t   err;

    extra.data = ngx_pnalloc(r->pool, sizeof(",\"oldest\":\"\",\"head\":\"\"")
                                      + 2 * NGX_HTTP_EVENTS_CURSOR_LEN);
    if (extra.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_cpymem(extra.data, ",\"oldest\":\"", sizeof(",\"oldest\":\"") - 1);
    p = ngx_http_events_cursor_write(key, p, w->epoch, w->evicted_seq);
    p = ngx_cpymem(p, "\",\"head\":\"", sizeof("\",\"head\":\"") - 1);
    p = ngx_http_events_cursor_write(key, p, w->epoch, w->head_seq);
    *p++ = '"';

    extra.len = p - extra.data;

    ngx_http_events_error(&err, 410, code, "param", NULL, param, "%s",
                          message);

    return ngx_http_events_http_send_error(r, &err, &extra);
}


static ngx_int_t
ngx_http_events_api_get(ngx_http_request_t *r, ngx_str_t *tenant,
    ngx_str_t *id)
{
    ngx_int_t                    rc;
    ngx_str_t                    json;
    ngx_http_events_store_t     *store;
    ngx_http_events_loc_conf_t  *elcf;

    elcf = ngx_http_get_module_loc_conf(r, ngx_http_events_module);
    store = elcf->api_zone->data;

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    if (ngx_http_events_id_valid(id->data, id->len) != NGX_OK) {
        return ngx_http_events_http_not_found(r, "no event with this id");
    }

    rc = ngx_http_events_store_get_ring(store, tenant, id, r->pool, &json);

    if (rc == NGX_AGAIN) {
        /* only the history on disk may have it */
        return ngx_http_events_api_read(r, store, NULL, NULL, tenant, id);
    }

    if (rc == NGX_DECLINED && store->remote) {
        /* a cluster's log holds what left the ring */
        return ngx_http_events_api_fetch(r, store, NULL, NULL, tenant, id);
    }

    return ngx_http_events_api_get_answer(r, rc, &json);
}


static ngx_int_t
ngx_http_events_api_get_answer(ngx_http_request_t *r, ngx_int_t rc,
    ngx_str_t *json)
{
    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_DECLINED
        || !ngx_http_events_api_visible(r, json))
    {
        /* another tenant's event, or one the token may not see: 404 */
        return ngx_http_events_http_not_found(r, "no event with this id");
    }

    return ngx_http_events_http_send(r, NGX_HTTP_OK,
                                     &ngx_http_events_http_json_type,
                                     json->data, json->len);
}


/*
 * A cluster's node reads what its ring no longer holds from the log: a
 * page of the list (q), or one event (id).  The request waits for Redis
 * as a POST does.
 */

static ngx_int_t
ngx_http_events_api_fetch(ngx_http_request_t *r,
    ngx_http_events_store_t *store, ngx_http_events_query_t *q,
    ngx_http_events_window_t *w, ngx_str_t *tenant, ngx_str_t *id)
{
    void                         *handle;
    ngx_http_events_api_fetch_t  *ar;

    ar = ngx_http_events_api_await_alloc(r, store,
                                        sizeof(ngx_http_events_api_fetch_t),
                                        store->remote->cancel_read);
    if (ar == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (q) {
        ar->q = *q;
        ar->res.window = *w;
        handle = store->remote->query(store->remote->data, &ar->q, &ar->res,
                                      r->pool,
                                      ngx_http_events_api_fetched_list, ar);

    } else {
        handle = store->remote->get(store->remote->data, tenant, id,
                                    &ar->json, r->pool,
                                    ngx_http_events_api_fetched_event, ar);
    }

    return ngx_http_events_api_await_start(&ar->await, handle, NGX_DECLINED);
}


static void
ngx_http_events_api_fetched_list(void *data, ngx_int_t rc)
{
    ngx_http_events_api_fetch_t  *ar = data;

    ngx_http_request_t  *r;

    r = ngx_http_events_api_await_end(&ar->await);

    if (rc == NGX_OK) {
        rc = ngx_http_events_api_list_answer(r, ar->await.store, &ar->q,
                                              &ar->res);

    } else if (rc == NGX_BUSY) {
        rc = ngx_http_events_api_unavailable(r, NGX_DECLINED);

    } else {
        rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_events_api_await_finalize(r, rc);
}


static void
ngx_http_events_api_fetched_event(void *data, ngx_int_t rc)
{
    ngx_http_events_api_fetch_t  *ar = data;

    ngx_http_request_t  *r;

    r = ngx_http_events_api_await_end(&ar->await);

    if (rc == NGX_OK && ngx_http_events_api_visible(r, &ar->json)) {
        rc = ngx_http_events_http_send(r, NGX_HTTP_OK,
                                       &ngx_http_events_http_json_type,
                                       ar->json.data, ar->json.len);

    } else if (rc == NGX_OK || rc == NGX_DECLINED) {
        rc = ngx_http_events_http_not_found(r, "no event with this id");

    } else if (rc == NGX_BUSY) {
        rc = ngx_http_events_api_unavailable(r, NGX_DECLINED);

    } else {
        rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_events_api_await_finalize(r, rc);
}


static ngx_int_t
ngx_http_events_api_types(ngx_http_request_t *r, ngx_str_t *tenant)
{
    ngx_int_t                     rc;
    ngx_array_t                   types;
    ngx_http_events_error_t       err;
    ngx_http_events_store_t      *store;
    ngx_http_events_loc_conf_t   *elcf;

    elcf = ngx_http_get_module_loc_conf(r, ngx_http_events_module);
    store = elcf->api_zone->data;

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    if (r->args.len) {
        ngx_http_events_error(&err, 400, "invalid_parameter", NULL, NULL,
                              NULL, "the catalog takes no parameters");
        return ngx_http_events_http_send_error(r, &err, NULL);
    }

    if (store->remote) {
        /* the catalog of the cluster's log, kept in Redis */
        return ngx_http_events_api_types_fetch(r, store, tenant);
    }

    if (store->journal
        && ngx_http_events_history_ready(store->journal->history))
    {
        /* the index's catalog, once the index has every published event */
        return ngx_http_events_api_read(r, store, NULL, NULL, tenant, NULL);
    }

    if (ngx_array_init(&types, r->pool, 16,
                       sizeof(ngx_http_events_type_info_t))
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_http_events_store_types(store, tenant, r->pool, &types)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_events_api_types_answer(r, &types);
}


static ngx_int_t
ngx_http_events_api_types_fetch(ngx_http_request_t *r,
    ngx_http_events_store_t *store, ngx_str_t *tenant)
{
    ngx_http_events_api_fetch_t  *ar;

    ar = ngx_http_events_api_await_alloc(r, store,
                                        sizeof(ngx_http_events_api_fetch_t),
                                        store->remote->cancel_read);
    if (ar == NULL
        || ngx_array_init(&ar->types, r->pool, 16,
                          sizeof(ngx_http_events_type_info_t))
           != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_events_api_await_start(&ar->await,
               store->remote->types(store->remote->data, tenant, &ar->types,
                                    r->pool,
                                    ngx_http_events_api_types_fetched, ar),
               NGX_DECLINED);
}


static void
ngx_http_events_api_types_fetched(void *data, ngx_int_t rc)
{
    ngx_http_events_api_fetch_t  *ar = data;

    ngx_http_request_t  *r;

    r = ngx_http_events_api_await_end(&ar->await);

    if (rc == NGX_OK) {
        rc = ngx_http_events_api_types_answer(r, &ar->types);

    } else if (rc == NGX_BUSY) {
        rc = ngx_http_events_api_unavailable(r, NGX_DECLINED);

    } else {
        rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_events_api_await_finalize(r, rc);
}


/* the catalog, cut to the token's grant, by type */

static ngx_int_t
ngx_http_events_api_types_answer(ngx_http_request_t *r, ngx_array_t *types)
{
    ngx_uint_t                    i, n;
    ngx_http_events_buf_t         b;
    ngx_http_events_claims_t     *claims;
    ngx_http_events_type_info_t  *ti;

    ti = types->elts;
    claims = ngx_http_events_auth_claims(r);

    if (claims) {
        for (i = 0, n = 0; i < types->nelts; i++) {
            if (ngx_http_events_jwt_granted(claims->subscribe,
                                            claims->nsubscribe, &ti[i].type))
            {
                ti[n++] = ti[i];
            }
        }

        types->nelts = n;
    }

    ngx_qsort(ti, types->nelts, sizeof(ngx_http_events_type_info_t),
              ngx_http_events_api_type_cmp);

    ngx_http_events_buf_init(&b, r->pool, 64 * (types->nelts + 1));
    ngx_http_events_buf_literal(&b, "{\"data\":[");

    for (i = 0; i < types->nelts; i++) {
        if (i) {
            ngx_http_events_buf_literal(&b, ",");
        }

        ngx_http_events_buf_literal(&b, "{\"type\":");
        ngx_http_events_buf_str(&b, ti[i].type.data, ti[i].type.len);
        ngx_http_events_buf_printf(&b, ",\"count\":%uL,\"lastTimestamp\":",
                                   ti[i].count);
        ngx_http_events_buf_time(&b, ti[i].last_ms);
        ngx_http_events_buf_literal(&b, "}");
    }

    ngx_http_events_buf_literal(&b, "]}");

    return ngx_http_events_http_send_buf(r, NGX_HTTP_OK, NULL, &b);
}


/*
 * What a list calls "oldest": the ring's start on one machine; in a
 * cluster, where the log's retention left it as of the ring's head, so
 * that every node says the same, however large its ring.
 */

static void
ngx_http_events_api_oldest(ngx_http_events_store_t *store,
    ngx_http_events_window_t *w)
{
    if (store->remote) {
        w->evicted_seq = ngx_min(store->remote->gone(store->remote->data),
                                 w->head_seq);
    }
}


/* whether the token's subscribe grant covers a stored event's type */

static ngx_uint_t
ngx_http_events_api_visible(ngx_http_request_t *r, ngx_str_t *json)
{
    u_char                    *p, *end;
    ngx_str_t                  type;
    ngx_http_events_claims_t  *claims;

    claims = ngx_http_events_auth_claims(r);

    if (claims == NULL) {
        return 1;
    }

    /* the envelope is ours: "type" is the third key, a plain string */
    p = ngx_strlcasestrn(json->data, json->data + json->len,
                         (u_char *) ",\"type\":\"", sizeof(",\"type\":\"") - 2);
    if (p == NULL) {
        return 0;
    }

    p += sizeof(",\"type\":\"") - 1;
    end = ngx_strlchr(p, json->data + json->len, '"');
    if (end == NULL) {
        return 0;
    }

    type.data = p;
    type.len = end - p;

    return ngx_http_events_jwt_granted(claims->subscribe, claims->nsubscribe,
                                       &type);
}


static int ngx_libc_cdecl
ngx_http_events_api_type_cmp(const void *one, const void *two)
{
    const ngx_http_events_type_info_t  *a = one;
    const ngx_http_events_type_info_t  *b = two;

    ngx_int_t  rc;

    rc = ngx_memn2cmp(a->type.data, b->type.data, a->type.len, b->type.len);

    return (int) rc;
}



