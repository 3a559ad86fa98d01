
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
#include "ngx_http_events_webhook.h"
#include "ngx_http_events_journal.h"


#define NGX_HTTP_EVENTS_WH_STATE_VERSION  1


static json_t *ngx_http_events_webhook_state_json(ngx_http_events_wh_sh_t *wh);
static json_t *ngx_http_events_webhook_state_str(
    ngx_http_events_wh_endpoint_t *ep,
    ngx_http_events_wh_str_t *s);
static json_t *ngx_http_events_webhook_state_b64(u_char *p, size_t len);
static ngx_int_t ngx_http_events_webhook_state_endpoint(
    ngx_http_events_store_t *store, ngx_http_events_wh_sh_t *wh,
    json_t *o, ngx_log_t *log);
static ngx_int_t ngx_http_events_webhook_state_unb64(json_t *v, u_char *out,
    size_t *len);
static ngx_int_t ngx_http_events_webhook_state_path(
    ngx_http_events_store_t *store,
    const char *name, u_char *buf, size_t size);


/* what a write needs, from the main thread to a thread of the pool */
typedef struct {
    ngx_http_events_store_t    *store;
    ngx_http_events_wh_sh_t    *wh;
    char                       *text;
    size_t                      len;
    uint64_t                    version;
    ngx_uint_t                  fsync;
    ngx_err_t                   err;
    u_char                      path[NGX_MAX_PATH];
    u_char                      lock[NGX_MAX_PATH];
    u_char                      tmp[NGX_MAX_PATH];
} ngx_http_events_wh_write_t;


static ngx_int_t ngx_http_events_webhook_state_snapshot(
    ngx_http_events_store_t *store,
    ngx_http_events_wh_write_t *w);
static void ngx_http_events_webhook_state_write(ngx_http_events_wh_write_t *w);
#if (NGX_THREADS)
static void ngx_http_events_webhook_state_write_thread(void *data,
    ngx_log_t *log);
static void ngx_http_events_webhook_state_written(ngx_event_t *ev);
#endif


/* write the state now; NGX_DECLINED: the zone has no journal */

ngx_int_t
ngx_http_events_webhook_state_save(ngx_http_events_store_t *store)
{
    ngx_int_t                   rc;
    ngx_http_events_wh_write_t  w;

    rc = ngx_http_events_webhook_state_snapshot(store, &w);
    if (rc != NGX_OK) {
        return rc;
    }

    ngx_http_events_webhook_state_write(&w);

    free(w.text);

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
    ngx_uint_t                   changed;
    ngx_http_events_wh_sh_t     *wh;
#if (NGX_THREADS)
    ngx_http_events_wh_write_t  *w;
#endif

    ngx_shmtx_lock(&store->shpool->mutex);
    wh = store->wh;
    changed = wh && wh->version != wh->saved;
    ngx_shmtx_unlock(&store->shpool->mutex);

    if (!changed) {
        return;
    }

#if (NGX_THREADS)
    if (store->wh_task && !ngx_exiting) {

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

        free(w->text);
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
                                 sizeof(ngx_http_events_wh_write_t));
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
    ngx_http_events_store_t     *store = ev->data;
    ngx_http_events_wh_write_t  *w;

    w = ((ngx_thread_task_t *) store->wh_task)->ctx;
    store->wh_writing = 0;

    if (w->err) {
        ngx_log_error(NGX_LOG_ERR, ev->log, w->err,
                      "events zone \"%V\": cannot write the webhook state "
                      "\"%s\"", &store->name, w->path);
    }

    free(w->text);
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


/* the state as JSON text, copied under the zone lock */

static ngx_int_t
ngx_http_events_webhook_state_snapshot(ngx_http_events_store_t *store,
    ngx_http_events_wh_write_t *w)
{
    json_t                   *root;
    ngx_http_events_wh_sh_t  *wh;

    ngx_memzero(w, sizeof(ngx_http_events_wh_write_t));

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

    ngx_shmtx_lock(&store->shpool->mutex);

    wh = store->wh;
    w->wh = wh;
    w->version = wh ? wh->version : 0;
    root = wh ? ngx_http_events_webhook_state_json(wh) : NULL;

    ngx_shmtx_unlock(&store->shpool->mutex);

    if (root == NULL) {
        return wh ? NGX_ERROR : NGX_DECLINED;
    }

    w->text = json_dumps(root, JSON_COMPACT);
    json_decref(root);

    if (w->text == NULL) {
        return NGX_ERROR;
    }

    w->len = ngx_strlen(w->text);

    return NGX_OK;
}


/*
 * Under a flock, so that writers take turns: a snapshot older than the
 * one on disk is not written (the version only grows, and "saved" only
 * changes under the flock).  Runs in a worker or in a pool thread.
 */

static void
ngx_http_events_webhook_state_write(ngx_http_events_wh_write_t *w)
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


static json_t *
ngx_http_events_webhook_state_json(ngx_http_events_wh_sh_t *wh)
{
    json_t                         *root, *eps, *o, *a, *h, *d;
    ngx_uint_t                      i;
    ngx_queue_t                    *q, *dq;
    ngx_http_events_wh_delivery_t  *dl;
    ngx_http_events_wh_endpoint_t  *ep;

    root = json_object();
    eps = json_array();

    if (root == NULL || eps == NULL) {
        goto failed;
    }

    json_object_set_new(root, "version",
                        json_integer(NGX_HTTP_EVENTS_WH_STATE_VERSION));
    json_object_set_new(root, "endpoints", eps);

    for (q = ngx_queue_head(&wh->endpoints);
         q != ngx_queue_sentinel(&wh->endpoints);
         q = ngx_queue_next(q))
    {
        ep = ngx_queue_data(q, ngx_http_events_wh_endpoint_t, queue);

        o = json_object();
        if (o == NULL || json_array_append_new(eps, o) != 0) {
            goto failed;
        }

        json_object_set_new(o, "id", json_stringn((char *) ep->id,
                                                  ep->id_len));
        json_object_set_new(o, "tenant", json_stringn((char *) ep->tenant,
                                                      ep->tenant_len));
        json_object_set_new(o, "url",
                            ngx_http_events_webhook_state_str(ep, &ep->url));
        json_object_set_new(o, "description",
                            ngx_http_events_webhook_state_str(ep,
                                                              &ep->description));

        a = json_array();
        json_object_set_new(o, "events", a);

        for (i = 0; i < ep->npatterns; i++) {
            json_array_append_new(a, ngx_http_events_webhook_state_str(ep,
                                                        &ep->patterns[i]));
        }

        h = json_array();
        json_object_set_new(o, "headers", h);

        for (i = 0; i < ep->nheaders; i++) {
            json_array_append_new(h, ngx_http_events_webhook_state_str(ep,
                                                        &ep->hnames[i]));
            json_array_append_new(h, ngx_http_events_webhook_state_str(ep,
                                                        &ep->hvalues[i]));
        }

        json_object_set_new(o, "secret",
                            ngx_http_events_webhook_state_b64(ep->secret,
                                                              ep->secret_len));
        json_object_set_new(o, "previous",
                            ngx_http_events_webhook_state_b64(ep->previous,
                                                              ep->previous_len));

        json_object_set_new(o, "n", json_pack("[IIIIIIIIIIIIIII]",
            (json_int_t) ep->previous_expires_ms,
            (json_int_t) ep->is_static, (json_int_t) ep->is_handler,
            (json_int_t) ep->disabled, (json_int_t) ep->rate_limit,
            (json_int_t) ep->created_ms, (json_int_t) ep->updated_ms,
            (json_int_t) ep->disabled_ms, (json_int_t) ep->failing_since_ms,
            (json_int_t) ep->last_success_ms,
            (json_int_t) ep->last_failure_ms, (json_int_t) ep->ok,
            (json_int_t) ep->failed, (json_int_t) ep->expired,
            (json_int_t) ep->scan_seq));

        a = json_array();
        json_object_set_new(o, "skips", a);

        for (i = 0; i < ep->nskips; i++) {
            json_array_append_new(a, json_pack("[II]",
                                  (json_int_t) ep->skips[i].from,
                                  (json_int_t) ep->skips[i].to));
        }

        a = json_array();
        json_object_set_new(o, "failedSeqs", a);

        for (i = 0; i < ngx_min(ep->nfailed, NGX_HTTP_EVENTS_WH_FAILED);
             i++)
        {
            json_array_append_new(a, json_integer((json_int_t)
                ep->failed_seqs[(ep->nfailed
                                 - ngx_min(ep->nfailed,
                                           NGX_HTTP_EVENTS_WH_FAILED) + i)
                                % NGX_HTTP_EVENTS_WH_FAILED]));
        }

        a = json_array();
        json_object_set_new(o, "deliveries", a);

        for (dq = ngx_queue_head(&ep->deliveries);
             dq != ngx_queue_sentinel(&ep->deliveries);
             dq = ngx_queue_next(dq))
        {
            dl = ngx_queue_data(dq, ngx_http_events_wh_delivery_t, queue);

            d = json_pack("[IIIII]", (json_int_t) dl->seq,
                          (json_int_t) dl->attempts, (json_int_t) dl->next_ms,
                          (json_int_t) dl->created_ms,
                          (json_int_t) dl->trigger);
            json_array_append_new(a, d);
        }
    }

    return root;

failed:

    if (root) {
        json_decref(root);
    }

    return NULL;
}


static json_t *
ngx_http_events_webhook_state_str(ngx_http_events_wh_endpoint_t *ep,
    ngx_http_events_wh_str_t *s)
{
    return json_stringn((char *) ep->blob + s->off, s->len);
}


static json_t *
ngx_http_events_webhook_state_b64(u_char *p, size_t len)
{
    u_char     buf[ngx_base64_encoded_length(NGX_HTTP_EVENTS_WH_MAX_SECRET)];
    ngx_str_t  src, dst;

    src.data = p;
    src.len = len;
    dst.data = buf;

    ngx_encode_base64(&dst, &src);

    return json_stringn((char *) dst.data, dst.len);
}


/*
 * Master, once, when the zone is new: the state file back into the
 * zone.  A file that cannot be read is logged and skipped (a start is
 * never refused for it); an endpoint that does not fit is logged.
 */

ngx_int_t
ngx_http_events_webhook_state_load(ngx_http_events_store_t *store,
    ngx_http_events_wh_sh_t *wh, ngx_log_t *log)
{
    size_t        i;
    json_t       *root, *eps, *o;
    ngx_uint_t    n;
    json_error_t  jerr;
    u_char        path[NGX_MAX_PATH];

    if (ngx_http_events_webhook_state_path(store, "webhooks.state", path,
                                           sizeof(path))
        != NGX_OK)
    {
        return NGX_DECLINED;
    }

    if (access((char *) path, F_OK) == -1) {
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

    json_array_foreach(eps, i, o) {
        if (ngx_http_events_webhook_state_endpoint(store, wh, o,
                                                   log) == NGX_OK) {
            n++;
        }
    }

    json_decref(root);

    ngx_log_error(NGX_LOG_NOTICE, log, 0,
                  "events zone \"%V\": %ui webhook endpoints restored from "
                  "\"%s\"", &store->name, n, path);

    return NGX_OK;
}


static ngx_int_t
ngx_http_events_webhook_state_endpoint(ngx_http_events_store_t *store,
    ngx_http_events_wh_sh_t *wh, json_t *o, ngx_log_t *log)
{
    size_t                          i;
    json_t                         *v, *a, *nums;
    json_int_t                      f[15], d[5];
    ngx_http_events_wh_spec_t       spec;
    ngx_http_events_wh_delivery_t  *dl;
    ngx_http_events_wh_endpoint_t  *ep;

    ngx_memzero(&spec, sizeof(ngx_http_events_wh_spec_t));

#define ngx_http_events_state_string(field, name)                             \
    v = json_object_get(o, name);                                             \
    if (!json_is_string(v)) {                                                 \
        goto invalid;                                                         \
    }                                                                         \
    spec.field.data = (u_char *) json_string_value(v);                        \
    spec.field.len = json_string_length(v)

    ngx_http_events_state_string(id, "id");
    ngx_http_events_state_string(tenant, "tenant");
    ngx_http_events_state_string(url, "url");
    ngx_http_events_state_string(description, "description");

#undef ngx_http_events_state_string

    if (spec.id.len > NGX_HTTP_EVENTS_WH_MAX_ID
        || spec.tenant.len > NGX_HTTP_EVENTS_MAX_TENANT)
    {
        goto invalid;
    }

    a = json_object_get(o, "events");

    json_array_foreach(a, i, v) {
        if (i == NGX_HTTP_EVENTS_WH_MAX_PATTERNS || !json_is_string(v)) {
            goto invalid;
        }

        spec.patterns[i].data = (u_char *) json_string_value(v);
        spec.patterns[i].len = json_string_length(v);
        spec.npatterns = i + 1;
    }

    a = json_object_get(o, "headers");

    json_array_foreach(a, i, v) {
        if (i / 2 == NGX_HTTP_EVENTS_WH_MAX_HEADERS || !json_is_string(v)) {
            goto invalid;
        }

        if (i % 2 == 0) {
            spec.hnames[i / 2].data = (u_char *) json_string_value(v);
            spec.hnames[i / 2].len = json_string_length(v);

        } else {
            spec.hvalues[i / 2].data = (u_char *) json_string_value(v);
            spec.hvalues[i / 2].len = json_string_length(v);
            spec.nheaders = i / 2 + 1;
        }
    }

    if (ngx_http_events_webhook_state_unb64(json_object_get(o, "secret"),
                                            spec.secret, &spec.secret_len)
        != NGX_OK
        || ngx_http_events_webhook_state_unb64(json_object_get(o, "previous"),
                                               spec.previous, &spec.previous_len)
           != NGX_OK)
    {
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

    json_array_foreach(a, i, v) {
        if (json_unpack(v, "[IIIII]", &d[0], &d[1], &d[2], &d[3], &d[4])
            != 0)
        {
            continue;
        }

        dl = ngx_slab_calloc_locked(store->shpool,
                                    sizeof(ngx_http_events_wh_delivery_t));
        if (dl == NULL) {
            break;
        }

        /* in flight when nginx stopped: not known to have arrived */
        dl->seq = (uint64_t) d[0];
        dl->attempts = (uint32_t) d[1];
        dl->next_ms = (uint64_t) d[2];
        dl->created_ms = (uint64_t) d[3];
        dl->trigger = (u_char) d[4];
        dl->state = NGX_HTTP_EVENTS_WH_QUEUED;

        ngx_queue_insert_tail(&ep->deliveries, &dl->queue);
        ep->pending++;
    }

    return NGX_OK;

invalid:

    ngx_log_error(NGX_LOG_ERR, log, 0,
                  "events zone \"%V\": an invalid webhook endpoint in the "
                  "state file, skipped", &store->name);

    return NGX_ERROR;
}


static ngx_int_t
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
