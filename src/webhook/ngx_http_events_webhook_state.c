
/*
 * Copyright (C) ngx_http_events_module authors
 */


/*
 * The webhooks' state on disk, beside the zone's journal: a snapshot of
 * the endpoints (secrets included, so the file is 0600) and of their
 * queued deliveries, written to a temporary file and renamed over
 * PATH/webhooks.state.  Endpoint changes are written before the API
 * answers; delivery progress by the dispatcher, at most once a second.
 * A restart reads it back after the journal has refilled the ring, so
 * the seqs it names are there again; what was in flight is queued.
 * Writers take a flock on PATH/webhooks.lock and copy the state after
 * they have it, so a later rename never carries an older snapshot.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <jansson.h>

#include <sys/file.h>

#include "ngx_http_events_module.h"
#include "ngx_http_events_store.h"
#include "ngx_http_events_webhook_shm.h"
#include "ngx_http_events_journal.h"
#include "ngx_http_events_json.h"


#define NGX_HTTP_EVENTS_WH_STATE_VERSION  1

/* the attempt log on disk: the newest attempts, their excerpts cut */
#define NGX_HTTP_EVENTS_WH_STATE_LOG      64
#define NGX_HTTP_EVENTS_WH_STATE_EXCERPT  256


static size_t ngx_http_events_webhook_state_size(
    ngx_http_events_webhook_sh_t *wh);
static u_char *ngx_http_events_webhook_state_text(
    ngx_http_events_store_t *store, ngx_http_events_webhook_sh_t *wh,
    u_char *p);
static void ngx_http_events_webhook_state_positions(
    ngx_http_events_store_t *store, ngx_http_events_webhook_sh_t *wh,
    json_t *root, ngx_log_t *log);
static void ngx_http_events_webhook_state_clamp(ngx_http_events_store_t *store,
    ngx_http_events_webhook_endpoint_t *ep, uint64_t head);
static ngx_int_t ngx_http_events_webhook_state_endpoint(
    ngx_http_events_store_t *store, ngx_http_events_webhook_sh_t *wh, json_t *o,
    ngx_log_t *log);
static void ngx_http_events_webhook_state_history(
    ngx_http_events_store_t *store, ngx_http_events_webhook_endpoint_t *ep,
    json_t *o, ngx_str_t *id, ngx_log_t *log);
static u_char *ngx_http_events_webhook_state_pairs(u_char *p,
    ngx_http_events_webhook_endpoint_t *ep, ngx_http_events_webhook_str_t *k,
    ngx_http_events_webhook_str_t *v, ngx_uint_t n);
static u_char *ngx_http_events_webhook_state_log(u_char *p,
    ngx_http_events_webhook_endpoint_t *ep);
static void ngx_http_events_webhook_state_attempts(
    ngx_http_events_webhook_endpoint_t *ep, json_t *log);
static size_t ngx_http_events_webhook_state_bytes(json_t *v, u_char *to,
    size_t max);
static ngx_int_t ngx_http_events_webhook_state_path(
    ngx_http_events_store_t *store, const char *name, u_char *buf, size_t size);


/* what a write needs, from the main thread to a thread of the pool */
typedef struct {
    ngx_http_events_store_t       *store;
    ngx_http_events_webhook_sh_t  *wh;
    char                          *text;
    size_t                         len;
    uint64_t                       version;
    ngx_uint_t                     fsync;
    ngx_err_t                      err;
    u_char                         path[NGX_MAX_PATH];
    u_char                         lock[NGX_MAX_PATH];
    u_char                         tmp[NGX_MAX_PATH];
} ngx_http_events_webhook_write_t;


static ngx_int_t ngx_http_events_webhook_state_snapshot(
    ngx_http_events_store_t *store, ngx_http_events_webhook_write_t *w);
static void ngx_http_events_webhook_state_write(
    ngx_http_events_webhook_write_t *w);
#if (NGX_THREADS)
static void ngx_http_events_webhook_state_write_thread(void *data,
    ngx_log_t *log);
static void ngx_http_events_webhook_state_written(ngx_event_t *ev);
#endif


/* write the state now; NGX_DECLINED: the zone has no journal */

ngx_int_t
ngx_http_events_webhook_state_save(ngx_http_events_store_t *store)
{
    ngx_int_t                        rc;
    ngx_http_events_webhook_write_t  w;

    rc = ngx_http_events_webhook_state_snapshot(store, &w);
    if (rc != NGX_OK) {
        return rc;
    }

    ngx_http_events_webhook_state_write(&w);

    ngx_free(w.text);

    if (w.err) {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, w.err,
                      "events zone \"%V\": cannot write the webhook state "
                      "\"%s\"", &store->name, w.path);
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * The dispatcher: write what changed since the last save, in a thread
 * of nginx's pool when the journal syncs there (fsync=always), so the
 * worker does not wait for the disk; in the worker otherwise.
 */

void
ngx_http_events_webhook_state_save_changed(ngx_http_events_store_t *store)
{
    ngx_uint_t                     changed;
    ngx_http_events_webhook_sh_t  *wh;
#if (NGX_THREADS)
    ngx_http_events_webhook_write_t  *w;
#endif

    ngx_shmtx_lock(&store->shpool->mutex);
    wh = store->wh;
    changed = wh && wh->version != wh->saved;
    ngx_shmtx_unlock(&store->shpool->mutex);

    if (!changed) {
        return;
    }

#if (NGX_THREADS)
    /*
     * Not when the worker stops, gracefully or fast (SIGTERM sets only
     * ngx_terminate): the thread pools may be destroyed already.
     */
    if (store->wh_task && !ngx_exiting && !ngx_terminate && !ngx_quit) {

        if (store->wh_writing) {
            return;                             /* next time */
        }

        w = ((ngx_thread_task_t *) store->wh_task)->ctx;

        if (ngx_http_events_webhook_state_snapshot(store, w) != NGX_OK) {
            return;
        }

        if (ngx_thread_task_post(store->journal->thread_pool, store->wh_task)
            == NGX_OK)
        {
            store->wh_writing = 1;
            return;
        }

        ngx_free(w->text);
    }
#endif

    (void) ngx_http_events_webhook_state_save(store);
}


#if (NGX_THREADS)

ngx_int_t
ngx_http_events_webhook_state_save_init(ngx_cycle_t *cycle,
    ngx_http_events_store_t *store)
{
    ngx_thread_task_t  *task;

    if (store->journal == NULL || store->journal->thread_pool == NULL) {
        return NGX_OK;
    }

    task = ngx_thread_task_alloc(cycle->pool,
                                 sizeof(ngx_http_events_webhook_write_t));
    if (task == NULL) {
        return NGX_ERROR;
    }

    task->handler = ngx_http_events_webhook_state_write_thread;
    task->event.handler = ngx_http_events_webhook_state_written;
    task->event.data = store;
    task->event.log = cycle->log;

    store->wh_task = task;

    return NGX_OK;
}


static void
ngx_http_events_webhook_state_write_thread(void *data, ngx_log_t *log)
{
    ngx_http_events_webhook_state_write(data);
}


static void
ngx_http_events_webhook_state_written(ngx_event_t *ev)
{
    ngx_http_events_store_t          *store = ev->data;
    ngx_http_events_webhook_write_t  *w;

    w = ((ngx_thread_task_t *) store->wh_task)->ctx;
    store->wh_writing = 0;

    if (w->err) {
        ngx_log_error(NGX_LOG_ERR, ev->log, w->err,
                      "events zone \"%V\": cannot write the webhook state "
                      "\"%s\"", &store->name, w->path);
    }

    ngx_free(w->text);
    w->text = NULL;
}

#else

ngx_int_t
ngx_http_events_webhook_state_save_init(ngx_cycle_t *cycle,
    ngx_http_events_store_t *store)
{
    return NGX_OK;
}

#endif


/*
 * Under a flock, so that writers take turns: a snapshot older than the
 * one on disk is not written (the version only grows, and "saved" only
 * changes under the flock).  Runs in a worker or in a pool thread.
 */

static void
ngx_http_events_webhook_state_write(ngx_http_events_webhook_write_t *w)
{
    int      fd, lock;
    ssize_t  n;

    w->err = 0;

    lock = open((char *) w->lock, O_RDWR | O_CREAT, 0600);
    if (lock == -1) {
        w->err = ngx_errno;
        return;
    }

    if (flock(lock, LOCK_EX) == -1) {
        w->err = ngx_errno;
        close(lock);
        return;
    }

    if (w->wh->saved >= w->version) {
        close(lock);
        return;
    }

    fd = open((char *) w->tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd == -1) {
        w->err = ngx_errno;
        close(lock);
        return;
    }

    n = write(fd, w->text, w->len);

    if (n != (ssize_t) w->len || (w->fsync && fsync(fd) == -1)) {
        w->err = (n == -1 || n == (ssize_t) w->len) ? ngx_errno : NGX_ENOSPC;
        close(fd);
        (void) unlink((char *) w->tmp);
        close(lock);
        return;
    }

    close(fd);

    if (rename((char *) w->tmp, (char *) w->path) == -1) {
        w->err = ngx_errno;
        (void) unlink((char *) w->tmp);
        close(lock);
        return;
    }

    /* read by writers only under the flock */
    w->wh->saved = w->version;

    close(lock);
}


/*
 * The state as JSON text.  jansson would allocate under the zone lock:
 * the text is written by hand into memory taken before the lock, sized
 * by a look under it, and the look is repeated if the state grew
 * between the two.
 */

static ngx_int_t
ngx_http_events_webhook_state_snapshot(ngx_http_events_store_t *store,
    ngx_http_events_webhook_write_t *w)
{
    size_t                         size, need;
    ngx_uint_t                     tries;
    ngx_http_events_webhook_sh_t  *wh;

    ngx_memzero(w, sizeof(ngx_http_events_webhook_write_t));

    if (ngx_http_events_webhook_state_path(store, "webhooks.state", w->path,
                                           sizeof(w->path))
           != NGX_OK
        || ngx_http_events_webhook_state_path(store, "webhooks.lock", w->lock,
                                              sizeof(w->lock))
           != NGX_OK)
    {
        return NGX_DECLINED;
    }

    ngx_snprintf(w->tmp, sizeof(w->tmp), "%s.%P%Z", w->path, ngx_pid);

    w->store = store;
    w->fsync = store->journal->fsync != NGX_HTTP_EVENTS_FSYNC_OFF;

    size = 0;

    for (tries = 0; tries < 4; tries++) {

        ngx_shmtx_lock(&store->shpool->mutex);

        wh = store->wh;
        need = wh ? ngx_http_events_webhook_state_size(wh) : 0;

        if (wh && need <= size) {
            w->wh = wh;
            w->version = wh->version;
            w->len = ngx_http_events_webhook_state_text(store, wh,
                                                        (u_char *) w->text)
                     - (u_char *) w->text;
        }

        ngx_shmtx_unlock(&store->shpool->mutex);

        if (wh == NULL) {
            ngx_free(w->text);
            w->text = NULL;
            return NGX_DECLINED;
        }

        if (need <= size) {
            return NGX_OK;
        }

        ngx_free(w->text);

        size = need + 4096;

        w->text = ngx_alloc(size, ngx_cycle->log);
        if (w->text == NULL) {
            return NGX_ERROR;
        }
    }

    ngx_free(w->text);
    w->text = NULL;

    return NGX_ERROR;
}


/* at most what ngx_http_events_webhook_state_text() writes */

static size_t
ngx_http_events_webhook_state_size(ngx_http_events_webhook_sh_t *wh)
{
    size_t                               size;
    ngx_queue_t                         *q;
    ngx_http_events_webhook_endpoint_t  *ep;

    size = sizeof("{\"version\":,\"epoch\":\"\",\"head\":,\"endpoints\":[]}")
           + 3 * NGX_INT64_LEN;

    for (q = ngx_queue_head(&wh->endpoints);
         q != ngx_queue_sentinel(&wh->endpoints);
         q = ngx_queue_next(q))
    {
        ep = ngx_queue_data(q, ngx_http_events_webhook_endpoint_t, queue);

        size += ngx_http_events_webhook_state_spec_size(ep)
                + 256 + 15 * (NGX_INT64_LEN + 1)
                + ep->nskips * (2 * NGX_INT64_LEN + 4)
                + NGX_HTTP_EVENTS_WH_FAILED * (NGX_INT64_LEN + 1)
                + ep->pending * (5 * NGX_INT64_LEN + 8)
                + ngx_min(ep->log_size, NGX_HTTP_EVENTS_WH_STATE_LOG)
                  * (12 * (NGX_INT64_LEN + 1)
                     + 6 * (26 + NGX_HTTP_EVENTS_MAX_ID
                            + NGX_HTTP_EVENTS_MAX_TYPE)
                     + ngx_base64_encoded_length(96)
                     + ngx_base64_encoded_length(64)
                     + ngx_base64_encoded_length(
                           NGX_HTTP_EVENTS_WH_STATE_EXCERPT)
                     + 32);
    }

    return size;
}


/* under the lock, into memory of state_size() bytes */

static u_char *
ngx_http_events_webhook_state_text(ngx_http_events_store_t *store,
    ngx_http_events_webhook_sh_t *wh, u_char *p)
{
    ngx_uint_t                           i, n;
    ngx_queue_t                         *q, *dq;
    ngx_http_events_window_t             w;
    ngx_http_events_webhook_delivery_t  *d;
    ngx_http_events_webhook_endpoint_t  *ep;

    /* the positions below are seqs of this epoch, up to this head */
    ngx_http_events_store_window(store, &w);

    p = ngx_sprintf(p, "{\"version\":%d,\"epoch\":\"%016xL\",\"head\":%uL,"
                    "\"endpoints\":[", NGX_HTTP_EVENTS_WH_STATE_VERSION,
                    w.epoch, w.head_seq);

    for (q = ngx_queue_head(&wh->endpoints);
         q != ngx_queue_sentinel(&wh->endpoints);
         q = ngx_queue_next(q))
    {
        ep = ngx_queue_data(q, ngx_http_events_webhook_endpoint_t, queue);

        if (q != ngx_queue_head(&wh->endpoints)) {
            *p++ = ',';
        }

        p = ngx_http_events_webhook_state_spec_text(p, ep);

        /* signed, as the reader's json_int_t: -1 is "never expires" */
        p = ngx_sprintf(p, ",\"n\":[%L,%L,%L,%L,%L,%L,%L,%L,%L,%L,%L,%L,%L,"
                        "%L,%L]",
                        (int64_t) ep->previous_expires_ms,
                        (int64_t) ep->is_static, (int64_t) ep->is_handler,
                        (int64_t) ep->disabled, (int64_t) ep->rate_limit,
                        (int64_t) ep->created_ms, (int64_t) ep->updated_ms,
                        (int64_t) ep->disabled_ms,
                        (int64_t) ep->failing_since_ms,
                        (int64_t) ep->last_success_ms,
                        (int64_t) ep->last_failure_ms, (int64_t) ep->ok,
                        (int64_t) ep->failed, (int64_t) ep->expired,
                        (int64_t) ep->scan_seq);

        p = ngx_cpymem(p, ",\"skips\":[", 10);

        for (i = 0; i < ep->nskips; i++) {
            p = ngx_sprintf(p, "%s[%L,%L]", i ? "," : "",
                            (int64_t) ep->skips[i].from,
                            (int64_t) ep->skips[i].to);
        }

        p = ngx_cpymem(p, "],\"failedSeqs\":[", 16);
        n = ngx_min(ep->nfailed, NGX_HTTP_EVENTS_WH_FAILED);

        for (i = 0; i < n; i++) {
            p = ngx_sprintf(p, "%s%L", i ? "," : "",
                            (int64_t) ep->failed_seqs[(ep->nfailed - n + i)
                                                  % NGX_HTTP_EVENTS_WH_FAILED]);
        }

        p = ngx_cpymem(p, "],\"deliveries\":[", 16);

        for (dq = ngx_queue_head(&ep->deliveries);
             dq != ngx_queue_sentinel(&ep->deliveries);
             dq = ngx_queue_next(dq))
        {
            d = ngx_queue_data(dq, ngx_http_events_webhook_delivery_t, queue);

            p = ngx_sprintf(p, "%s[%L,%L,%L,%L,%L]",
                            dq == ngx_queue_head(&ep->deliveries) ? "" : ",",
                            (int64_t) d->seq, (int64_t) d->attempts,
                            (int64_t) d->next_ms, (int64_t) d->created_ms,
                            (int64_t) d->trigger);
        }

        p = ngx_cpymem(p, "],\"log\":[", 9);
        p = ngx_http_events_webhook_state_log(p, ep);
        p = ngx_cpymem(p, "]}", 2);
    }

    return ngx_cpymem(p, "]}", 2);
}


/*
 * An endpoint's configuration and secrets: what both the state file
 * and the cluster's copy of an endpoint (ngx_http_events_webhook_share.c)
 * say of it, and ngx_http_events_webhook_state_spec() reads back.  The
 * object is left open: each adds its own numbers, then "}".
 */

size_t
ngx_http_events_webhook_state_spec_size(ngx_http_events_webhook_endpoint_t *ep)
{
    /* every byte of the strings escaped as \u00XX, quotes, commas */
    return 6 * (ep->id_len + ep->tenant_len + ep->blob_len)
           + 4 * (4 + ep->npatterns + 2 * ep->nheaders + 2 * ep->nmeta)
           + sizeof("{\"id\":,\"tenant\":,\"url\":,\"description\":,"
                    "\"events\":[],\"headers\":[],\"metadata\":[],"
                    "\"secret\":,\"previous\":,\"opts\":[,,],"
                    "\"verify\":")
           + 2 * ngx_base64_encoded_length(NGX_HTTP_EVENTS_WH_MAX_SECRET)
           + 4 * (NGX_INT64_LEN + 1);
}


u_char *
ngx_http_events_webhook_state_spec_text(u_char *p,
    ngx_http_events_webhook_endpoint_t *ep)
{
    ngx_uint_t  i;

    p = ngx_cpymem(p, "{\"id\":", 6);
    p = ngx_http_events_webhook_state_str(p, ep->id, ep->id_len);
    p = ngx_cpymem(p, ",\"tenant\":", 10);
    p = ngx_http_events_webhook_state_str(p, ep->tenant, ep->tenant_len);
    p = ngx_cpymem(p, ",\"url\":", 7);
    p = ngx_http_events_webhook_state_str(p, ep->blob + ep->url.off,
                                          ep->url.len);
    p = ngx_cpymem(p, ",\"description\":", 15);
    p = ngx_http_events_webhook_state_str(p, ep->blob + ep->description.off,
                                          ep->description.len);

    p = ngx_cpymem(p, ",\"events\":[", 11);

    for (i = 0; i < ep->npatterns; i++) {
        p = ngx_cpymem(p, ",", i ? 1 : 0);
        p = ngx_http_events_webhook_state_str(p,
                                          ep->blob + ep->patterns[i].off,
                                          ep->patterns[i].len);
    }

    p = ngx_cpymem(p, "],\"headers\":[", 13);
    p = ngx_http_events_webhook_state_pairs(p, ep, ep->hnames, ep->hvalues,
                                            ep->nheaders);
    p = ngx_cpymem(p, "],\"metadata\":[", 14);
    p = ngx_http_events_webhook_state_pairs(p, ep, ep->mkeys, ep->mvalues,
                                            ep->nmeta);

    p = ngx_cpymem(p, "],\"secret\":", 11);
    p = ngx_http_events_webhook_state_b64(p, ep->secret, ep->secret_len);
    p = ngx_cpymem(p, ",\"previous\":", 12);
    p = ngx_http_events_webhook_state_b64(p, ep->previous, ep->previous_len);

    /* format, ordered, maxInFlight, verify: absent from older files */
    return ngx_sprintf(p, ",\"opts\":[%L,%L,%L],\"verify\":%L",
                       (int64_t) ep->format, (int64_t) ep->ordered,
                       (int64_t) ep->max_inflight, (int64_t) ep->verify);
}


/* names and values, one after the other, as strings */

static u_char *
ngx_http_events_webhook_state_pairs(u_char *p,
    ngx_http_events_webhook_endpoint_t *ep, ngx_http_events_webhook_str_t *k,
    ngx_http_events_webhook_str_t *v, ngx_uint_t n)
{
    ngx_uint_t  i;

    for (i = 0; i < n; i++) {
        p = ngx_cpymem(p, ",", i ? 1 : 0);
        p = ngx_http_events_webhook_state_str(p, ep->blob + k[i].off,
                                              k[i].len);
        *p++ = ',';
        p = ngx_http_events_webhook_state_str(p, ep->blob + v[i].off,
                                              v[i].len);
    }

    return p;
}


u_char *
ngx_http_events_webhook_state_str(u_char *p, u_char *s, size_t len)
{
    *p++ = '"';
    p = ngx_http_events_json_escape(p, s, len);
    *p++ = '"';

    return p;
}


u_char *
ngx_http_events_webhook_state_b64(u_char *p, u_char *s, size_t len)
{
    ngx_str_t  src, dst;

    src.data = s;
    src.len = len;
    dst.data = p + 1;

    ngx_encode_base64(&dst, &src);

    *p = '"';
    p[dst.len + 1] = '"';

    return p + dst.len + 2;
}


/*
 * Master, once, when the zone is new: the state file back into the
 * zone.  A file that cannot be read is logged and skipped (a start is
 * never refused for it); an endpoint that does not fit is logged.  The
 * file is parsed before the zone is locked, and put into it under the
 * lock, where nothing is allocated but zone memory.
 */

ngx_int_t
ngx_http_events_webhook_state_load(ngx_http_events_store_t *store,
    ngx_log_t *log)
{
    size_t                         i;
    json_t                        *root, *eps, *o;
    ngx_uint_t                     n, loaded;
    json_error_t                   jerr;
    ngx_http_events_webhook_sh_t  *wh;
    u_char                         path[NGX_MAX_PATH];

    /* once per zone: a reload keeps the zone and what it holds */
    ngx_shmtx_lock(&store->shpool->mutex);

    wh = ngx_http_events_webhook_shm(store);
    loaded = (wh == NULL || wh->loaded);

    if (!loaded) {
        wh->loaded = 1;
    }

    ngx_shmtx_unlock(&store->shpool->mutex);

    if (loaded
        || ngx_http_events_webhook_state_path(store, "webhooks.state", path,
                                              sizeof(path))
           != NGX_OK
        || access((char *) path, F_OK) == -1)
    {
        return NGX_DECLINED;
    }

    root = json_load_file((char *) path, 0, &jerr);

    if (root == NULL) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "events zone \"%V\": the webhook state \"%s\" cannot "
                      "be read (line %d: %s); starting without it",
                      &store->name, path, jerr.line, jerr.text);
        return NGX_ERROR;
    }

    eps = json_object_get(root, "endpoints");
    n = 0;

    ngx_shmtx_lock(&store->shpool->mutex);

    json_array_foreach(eps, i, o) {
        if (ngx_http_events_webhook_state_endpoint(store, wh, o, log)
            == NGX_OK)
        {
            n++;
        }
    }

    ngx_http_events_webhook_state_positions(store, wh, root, log);

    ngx_shmtx_unlock(&store->shpool->mutex);

    json_decref(root);

    ngx_log_error(NGX_LOG_NOTICE, log, 0,
                  "events zone \"%V\": %ui webhook endpoints restored from "
                  "\"%s\"", &store->name, n, path);

    return NGX_OK;
}


/*
 * The positions restored are seqs of the store the state was written
 * with.  In another epoch (the journal was gone, seqs start again at 1)
 * none of them means anything: the endpoints start at the store's
 * first event.  In the same epoch, a store that holds less than the
 * state names (the journal was cut back) moves them back to its head,
 * so that no new event hides behind an old position.
 */

static void
ngx_http_events_webhook_state_positions(ngx_http_events_store_t *store,
    ngx_http_events_webhook_sh_t *wh, json_t *root, ngx_log_t *log)
{
    u_char                              *p;
    json_t                              *v;
    uint64_t                             epoch, head;
    ngx_int_t                            digit;
    ngx_uint_t                           moved;
    ngx_queue_t                         *q;
    ngx_http_events_window_t             w;
    ngx_http_events_webhook_endpoint_t  *ep;

    ngx_http_events_store_window(store, &w);

    v = json_object_get(root, "epoch");
    epoch = w.epoch;

    if (json_is_string(v) && json_string_length(v) == 16) {
        epoch = 0;

        for (p = (u_char *) json_string_value(v); *p; p++) {
            digit = ngx_hextoi(p, 1);

            if (digit == NGX_ERROR) {
                epoch = w.epoch;        /* not ours: not checked */
                break;
            }

            epoch = (epoch << 4) | (uint64_t) digit;
        }
    }

    /* another epoch: nothing of the old seqs is kept */
    head = (epoch == w.epoch) ? w.head_seq : 0;
    moved = 0;

    for (q = ngx_queue_head(&wh->endpoints);
         q != ngx_queue_sentinel(&wh->endpoints);
         q = ngx_queue_next(q))
    {
        ep = ngx_queue_data(q, ngx_http_events_webhook_endpoint_t, queue);

        if (ep->scan_seq > head || epoch != w.epoch) {
            ngx_http_events_webhook_state_clamp(store, ep, head);
            moved++;
        }
    }

    if (moved == 0) {
        return;
    }

    if (epoch != w.epoch) {
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "events zone \"%V\": the store is not the one the "
                      "webhook state was written with (epoch %016xL, now "
                      "%016xL): %ui endpoints start at its first event",
                      &store->name, epoch, w.epoch, moved);
        return;
    }

    ngx_log_error(NGX_LOG_WARN, log, 0,
                  "events zone \"%V\": the store ends at seq %uL, before "
                  "what the webhook state names: %ui endpoints go on from "
                  "there", &store->name, w.head_seq, moved);
}


/* an endpoint's positions and deliveries, none after head */

static void
ngx_http_events_webhook_state_clamp(ngx_http_events_store_t *store,
    ngx_http_events_webhook_endpoint_t *ep, uint64_t head)
{
    uint64_t                             failed[NGX_HTTP_EVENTS_WH_FAILED];
    ngx_uint_t                           i, j, n;
    ngx_queue_t                         *q, *next;
    ngx_http_events_webhook_delivery_t  *d;

    ep->scan_seq = ngx_min(ep->scan_seq, head);

    for (q = ngx_queue_head(&ep->deliveries);
         q != ngx_queue_sentinel(&ep->deliveries);
         q = next)
    {
        next = ngx_queue_next(q);
        d = ngx_queue_data(q, ngx_http_events_webhook_delivery_t, queue);

        if (d->seq > head) {
            ngx_http_events_webhook_dequeue(store, ep, d);
        }
    }

    if (ep->replay_mode && ep->replay_after >= head) {
        ep->replay_mode = 0;
    }

    ep->replay_to = ngx_min(ep->replay_to, head);

    for (i = 0, j = 0; i < ep->nskips; i++) {
        if (ep->skips[i].from < head) {
            ep->skips[j].from = ep->skips[i].from;
            ep->skips[j++].to = ngx_min(ep->skips[i].to, head);
        }
    }

    ep->nskips = j;

    n = ngx_min(ep->nfailed, NGX_HTTP_EVENTS_WH_FAILED);

    for (i = 0, j = 0; i < n; i++) {
        if (ep->failed_seqs[i] <= head) {
            failed[j++] = ep->failed_seqs[i];
        }
    }

    ngx_memcpy(ep->failed_seqs, failed, j * sizeof(uint64_t));
    ep->nfailed = j;
}


static ngx_int_t
ngx_http_events_webhook_state_endpoint(ngx_http_events_store_t *store,
    ngx_http_events_webhook_sh_t *wh, json_t *o, ngx_log_t *log)
{
    json_t                              *nums;
    json_int_t                           f[15];
    ngx_http_events_webhook_spec_t       spec;
    ngx_http_events_webhook_endpoint_t  *ep;

    if (ngx_http_events_webhook_state_spec(o, &spec) != NGX_OK) {
        goto invalid;
    }

    nums = json_object_get(o, "n");

    if (json_unpack(nums, "[IIIIIIIIIIIIIII]", &f[0], &f[1], &f[2], &f[3],
                    &f[4], &f[5], &f[6], &f[7], &f[8], &f[9], &f[10],
                    &f[11], &f[12], &f[13], &f[14])
        != 0)
    {
        goto invalid;
    }

    spec.is_static = f[1] ? 1 : 0;
    spec.is_handler = f[2] ? 1 : 0;
    spec.enabled = f[3] ? 0 : 1;
    spec.rate_limit = (ngx_uint_t) f[4];

    ep = ngx_http_events_webhook_create_locked(store, wh, &spec, store->whcf);
    if (ep == NULL) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "events zone \"%V\": no room to restore webhook "
                      "endpoint \"%V\"", &store->name, &spec.id);
        return NGX_ERROR;
    }

    /* as it was, not as a new endpoint */
    ep->previous_expires_ms = (uint64_t) f[0];
    ep->disabled = (u_char) f[3];
    ep->created_ms = (uint64_t) f[5];
    ep->updated_ms = (uint64_t) f[6];
    ep->disabled_ms = (uint64_t) f[7];
    ep->failing_since_ms = (uint64_t) f[8];
    ep->last_success_ms = (uint64_t) f[9];
    ep->last_failure_ms = (uint64_t) f[10];
    ep->ok = (uint64_t) f[11];
    ep->failed = (uint64_t) f[12];
    ep->expired = (uint64_t) f[13];
    ep->scan_seq = (uint64_t) f[14];

    ngx_http_events_webhook_state_history(store, ep, o, &spec.id, log);

    return NGX_OK;

invalid:

    ngx_log_error(NGX_LOG_ERR, log, 0,
                  "events zone \"%V\": an invalid webhook endpoint in the "
                  "state file, skipped", &store->name);

    return NGX_ERROR;
}


/* an endpoint's strings and secrets, pointing into the JSON */

ngx_int_t
ngx_http_events_webhook_state_spec(json_t *o,
    ngx_http_events_webhook_spec_t *spec)
{
    size_t       i;
    json_t      *v, *a;
    json_int_t   g[3];

    ngx_memzero(spec, sizeof(ngx_http_events_webhook_spec_t));

#define ngx_http_events_state_string(field, name)                             \
    v = json_object_get(o, name);                                             \
    if (!json_is_string(v)) {                                                 \
        return NGX_ERROR;                                                     \
    }                                                                         \
    spec->field.data = (u_char *) json_string_value(v);                       \
    spec->field.len = json_string_length(v)

    ngx_http_events_state_string(id, "id");
    ngx_http_events_state_string(tenant, "tenant");
    ngx_http_events_state_string(url, "url");
    ngx_http_events_state_string(description, "description");

#undef ngx_http_events_state_string

    if (spec->id.len > NGX_HTTP_EVENTS_WH_MAX_ID
        || spec->tenant.len > NGX_HTTP_EVENTS_MAX_TENANT)
    {
        return NGX_ERROR;
    }

    a = json_object_get(o, "events");

    json_array_foreach(a, i, v) {
        if (i == NGX_HTTP_EVENTS_WH_MAX_PATTERNS || !json_is_string(v)) {
            return NGX_ERROR;
        }

        spec->patterns[i].data = (u_char *) json_string_value(v);
        spec->patterns[i].len = json_string_length(v);
        spec->npatterns = i + 1;
    }

    a = json_object_get(o, "headers");

    json_array_foreach(a, i, v) {
        if (i / 2 == NGX_HTTP_EVENTS_WH_MAX_HEADERS || !json_is_string(v)) {
            return NGX_ERROR;
        }

        if (i % 2 == 0) {
            spec->hnames[i / 2].data = (u_char *) json_string_value(v);
            spec->hnames[i / 2].len = json_string_length(v);

        } else {
            spec->hvalues[i / 2].data = (u_char *) json_string_value(v);
            spec->hvalues[i / 2].len = json_string_length(v);
            spec->nheaders = i / 2 + 1;
        }
    }

    /* none in a file of a version without them */
    a = json_object_get(o, "metadata");

    json_array_foreach(a, i, v) {
        if (i / 2 == NGX_HTTP_EVENTS_MAX_META_FILTERS || !json_is_string(v)) {
            return NGX_ERROR;
        }

        if (i % 2 == 0) {
            spec->mkeys[i / 2].data = (u_char *) json_string_value(v);
            spec->mkeys[i / 2].len = json_string_length(v);

        } else {
            spec->mvalues[i / 2].data = (u_char *) json_string_value(v);
            spec->mvalues[i / 2].len = json_string_length(v);
            spec->nmeta = i / 2 + 1;
        }
    }

    if (ngx_http_events_webhook_state_unb64(json_object_get(o, "secret"),
                                            spec->secret, &spec->secret_len)
        != NGX_OK
        || ngx_http_events_webhook_state_unb64(json_object_get(o, "previous"),
                                               spec->previous,
                                               &spec->previous_len)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    /* format, ordered, maxInFlight: absent from older files */
    if (json_unpack(json_object_get(o, "opts"), "[III]", &g[0], &g[1],
                    &g[2])
        == 0)
    {
        if (g[0] < 0 || g[0] > NGX_HTTP_EVENTS_WH_CE_STRUCTURED
            || g[2] < 0 || g[2] > NGX_HTTP_EVENTS_WH_MAX_INFLIGHT)
        {
            return NGX_ERROR;
        }

        spec->format = (ngx_uint_t) g[0];
        spec->ordered = g[1] ? 1 : 0;
        spec->max_inflight = (ngx_uint_t) g[2];
        spec->set_format = 1;
        spec->set_ordered = 1;
        spec->set_max_inflight = 1;
    }

    v = json_object_get(o, "verify");

    if (v) {
        if (!json_is_integer(v) || json_integer_value(v) < 0
            || json_integer_value(v) > NGX_HTTP_EVENTS_WH_VERIFY_CE)
        {
            return NGX_ERROR;
        }

        spec->verify = (ngx_uint_t) json_integer_value(v);
        spec->set_verify = 1;
    }

    return NGX_OK;
}


/* what an endpoint skipped, failed and had queued, as it was */

static void
ngx_http_events_webhook_state_history(ngx_http_events_store_t *store,
    ngx_http_events_webhook_endpoint_t *ep, json_t *o, ngx_str_t *id,
    ngx_log_t *log)
{
    size_t                               i;
    json_t                              *v, *a;
    json_int_t                           d[5];
    ngx_uint_t                           lost;
    ngx_http_events_webhook_delivery_t  *dl;

    ep->nskips = 0;
    a = json_object_get(o, "skips");

    json_array_foreach(a, i, v) {
        if (i < NGX_HTTP_EVENTS_WH_SKIPS
            && json_unpack(v, "[II]", &d[0], &d[1]) == 0)
        {
            ep->skips[ep->nskips].from = (uint64_t) d[0];
            ep->skips[ep->nskips].to = (uint64_t) d[1];
            ep->nskips++;
        }
    }

    a = json_object_get(o, "failedSeqs");

    json_array_foreach(a, i, v) {
        if (json_is_integer(v)) {
            ep->failed_seqs[ep->nfailed++ % NGX_HTTP_EVENTS_WH_FAILED] =
                                               (uint64_t) json_integer_value(v);
        }
    }

    a = json_object_get(o, "deliveries");
    lost = 0;

    json_array_foreach(a, i, v) {
        if (json_unpack(v, "[IIIII]", &d[0], &d[1], &d[2], &d[3], &d[4])
            != 0)
        {
            continue;
        }

        /* in flight when nginx stopped: not known to have arrived */
        dl = ngx_http_events_webhook_queue(store, ep, (uint64_t) d[0],
                                           (ngx_uint_t) d[4],
                                           (uint64_t) d[3]);

        if (dl == NULL) {
            /* no room (a smaller window): the scan takes it again */
            ep->scan_seq = ngx_min(ep->scan_seq, (uint64_t) d[0] - 1);
            lost++;
            continue;
        }

        dl->attempts = (uint32_t) d[1];
        dl->next_ms = (uint64_t) d[2];
    }

    ngx_http_events_webhook_state_attempts(ep, json_object_get(o, "log"));

    if (lost) {
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "events zone \"%V\": %ui deliveries of webhook "
                      "endpoint \"%V\" did not fit its window; they are "
                      "scanned again from seq %uL", &store->name, lost,
                      id, ep->scan_seq);
    }
}


/*
 * The newest attempts of the log, oldest first; the binary parts (the
 * answer's content type and excerpt, the detail) in base64, so the
 * file stays valid JSON whatever a receiver sent.
 */

static u_char *
ngx_http_events_webhook_state_log(u_char *p,
    ngx_http_events_webhook_endpoint_t *ep)
{
    size_t                              len;
    uint64_t                            n, oldest;
    ngx_http_events_webhook_attempt_t  *a;

    if (ep->log_size == 0) {
        return p;
    }

    oldest = ep->log_next > ep->log_size ? ep->log_next - ep->log_size : 0;
    if (ep->log_next - oldest > NGX_HTTP_EVENTS_WH_STATE_LOG) {
        oldest = ep->log_next - NGX_HTTP_EVENTS_WH_STATE_LOG;
    }

    for (n = oldest; n < ep->log_next; n++) {
        a = (ngx_http_events_webhook_attempt_t *)
                (ep->log + (n % ep->log_size) * ep->log_entry);

        /* cut on a character's start: the excerpt is valid UTF-8 */
        len = ngx_min(a->excerpt_len, NGX_HTTP_EVENTS_WH_STATE_EXCERPT);

        while (len && len < a->excerpt_len
               && (a->excerpt[len] & 0xc0) == 0x80)
        {
            len--;
        }

        p = ngx_sprintf(p, "%s[%L,%L,%L,%L,%L,%L,%L,%L,%L,%L,%L,",
                        n == oldest ? "" : ",",
                        (int64_t) a->n, (int64_t) a->seq,
                        (int64_t) a->started_ms, (int64_t) a->next_ms,
                        (int64_t) a->retry_after_ms,
                        (int64_t) a->duration_ms, (int64_t) a->http_status,
                        (int64_t) a->attempt, (int64_t) a->trigger,
                        (int64_t) a->result, (int64_t) a->error);
        p = ngx_http_events_webhook_state_str(p, a->aid, 26);
        *p++ = ',';
        p = ngx_http_events_webhook_state_str(p, a->event_id,
                                              a->event_id_len);
        *p++ = ',';
        p = ngx_http_events_webhook_state_str(p, a->type, a->type_len);
        *p++ = ',';
        p = ngx_http_events_webhook_state_b64(p, a->detail, a->detail_len);
        *p++ = ',';
        p = ngx_http_events_webhook_state_b64(p, a->ctype, a->ctype_len);
        *p++ = ',';
        p = ngx_http_events_webhook_state_b64(p, a->excerpt, len);
        *p++ = ']';
    }

    return p;
}


/* the attempts back into the log, each in its slot by its number */

static void
ngx_http_events_webhook_state_attempts(ngx_http_events_webhook_endpoint_t *ep,
    json_t *log)
{
    size_t                              i;
    json_t                             *v, *detail, *ctype, *excerpt;
    json_int_t                          f[11];
    const char                         *aid, *id, *type;
    ngx_http_events_webhook_attempt_t  *a;

    if (ep->log_size == 0 || !json_is_array(log)) {
        return;
    }

    json_array_foreach(log, i, v) {
        if (json_unpack(v, "[IIIIIIIIIIIsssooo]", &f[0], &f[1], &f[2],
                        &f[3], &f[4], &f[5], &f[6], &f[7], &f[8], &f[9],
                        &f[10], &aid, &id, &type, &detail, &ctype, &excerpt)
            != 0
            || f[0] < 1 || ngx_strlen(aid) != 26
            || ngx_strlen(id) > NGX_HTTP_EVENTS_MAX_ID
            || ngx_strlen(type) > NGX_HTTP_EVENTS_MAX_TYPE
            || f[10] < 0 || f[10] >= NGX_HTTP_EVENTS_E_MAX)
        {
            continue;
        }

        a = (ngx_http_events_webhook_attempt_t *)
                (ep->log + ((uint64_t) (f[0] - 1) % ep->log_size)
                           * ep->log_entry);

        ngx_memzero(a, offsetof(ngx_http_events_webhook_attempt_t, excerpt));

        a->n = (uint64_t) f[0];
        a->seq = (uint64_t) f[1];
        a->started_ms = (uint64_t) f[2];
        a->next_ms = (uint64_t) f[3];
        a->retry_after_ms = (uint64_t) f[4];
        a->duration_ms = (uint32_t) f[5];
        a->http_status = (uint16_t) f[6];
        a->attempt = (u_char) f[7];
        a->trigger = (u_char) f[8];
        a->result = (u_char) f[9];
        a->error = (u_char) f[10];
        ngx_memcpy(a->aid, aid, 26);

        a->event_id_len = (u_char) ngx_strlen(id);
        ngx_memcpy(a->event_id, id, a->event_id_len);
        a->type_len = (u_char) ngx_strlen(type);
        ngx_memcpy(a->type, type, a->type_len);

        /* the excerpt cut to this log's size, as dispatch_log would */
        a->detail_len = (u_char) ngx_http_events_webhook_state_bytes(detail,
                                                  a->detail,
                                                  sizeof(a->detail));
        a->ctype_len = (u_char) ngx_http_events_webhook_state_bytes(ctype,
                                                  a->ctype,
                                                  sizeof(a->ctype));
        a->excerpt_len = (uint16_t) ngx_http_events_webhook_state_bytes(
                                                  excerpt, a->excerpt,
                                                  ep->excerpt_size);

        ep->log_next = ngx_max(ep->log_next, a->n);
    }
}


/* base64 bytes of the log into at most max, cut on a UTF-8 start */

static size_t
ngx_http_events_webhook_state_bytes(json_t *v, u_char *to, size_t max)
{
    size_t     len;
    ngx_str_t  src, dst;
    u_char     buf[ngx_base64_decoded_length(ngx_base64_encoded_length(
                   NGX_HTTP_EVENTS_WH_STATE_EXCERPT)) + 4];

    if (!json_is_string(v)
        || json_string_length(v)
           > ngx_base64_encoded_length(NGX_HTTP_EVENTS_WH_STATE_EXCERPT))
    {
        return 0;
    }

    src.data = (u_char *) json_string_value(v);
    src.len = json_string_length(v);
    dst.data = buf;

    if (ngx_decode_base64(&dst, &src) != NGX_OK) {
        return 0;
    }

    len = ngx_min(dst.len, max);

    while (len && len < dst.len && (buf[len] & 0xc0) == 0x80) {
        len--;
    }

    ngx_memcpy(to, buf, len);

    return len;
}


ngx_int_t
ngx_http_events_webhook_state_unb64(json_t *v, u_char *out, size_t *len)
{
    u_char     buf[ngx_base64_decoded_length(
                       ngx_base64_encoded_length(
                           NGX_HTTP_EVENTS_WH_MAX_SECRET)) + 4];
    ngx_str_t  src, dst;

    if (!json_is_string(v)
        || json_string_length(v)
           > ngx_base64_encoded_length(NGX_HTTP_EVENTS_WH_MAX_SECRET))
    {
        return NGX_ERROR;
    }

    src.data = (u_char *) json_string_value(v);
    src.len = json_string_length(v);
    dst.data = buf;

    if (ngx_decode_base64(&dst, &src) != NGX_OK
        || dst.len > NGX_HTTP_EVENTS_WH_MAX_SECRET)
    {
        return NGX_ERROR;
    }

    ngx_memcpy(out, dst.data, dst.len);
    *len = dst.len;

    return NGX_OK;
}


static ngx_int_t
ngx_http_events_webhook_state_path(ngx_http_events_store_t *store,
    const char *name, u_char *buf, size_t size)
{
    if (store->journal == NULL) {
        return NGX_DECLINED;
    }

    if (store->journal->path.len + ngx_strlen(name) + 16 > size) {
        return NGX_ERROR;
    }

    ngx_sprintf(buf, "%V/%s%Z", &store->journal->path, name);

    return NGX_OK;
}
