
/*
 * Copyright (C) ngx_http_events_module authors
 */


/*
 * Webhook endpoints and their deliveries, in the events zone.
 *
 * An endpoint keeps a scan position in the ring: the dispatcher turns
 * the matching events after it into deliveries, at most a window of
 * them at a time, so the queue's memory is bounded and the ring stays
 * the one source of truth (an event still waiting to be scanned is
 * still in the ring).  A delivery is (seq, attempts, next time, state);
 * every attempt is written to the endpoint's log, a ring of fixed-size
 * entries, before the next one is scheduled.
 *
 * One worker dispatches at a time, by a lease in the zone renewed on a
 * timer: another takes over when it expires or its owner is gone, with
 * a new term, and sends again whatever the old term had in flight (at
 * least once).  Everything is under shpool->mutex, the lock the master
 * releases when a worker dies holding it.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_events_module.h"
#include "ngx_http_events_store.h"
#include "ngx_http_events_webhook.h"
#include "ngx_http_events_match.h"
#include "ngx_http_events_cursor.h"
#include "ngx_http_events_ipc.h"


#define NGX_HTTP_EVENTS_WH_WINDOW       256     /* deliveries per endpoint */
#define NGX_HTTP_EVENTS_WH_TICK         250
#define NGX_HTTP_EVENTS_WH_LEASE        2000
#define NGX_HTTP_EVENTS_WH_SCAN         4096    /* records per endpoint scan */
#define NGX_HTTP_EVENTS_WH_MAX_PAUSE    (10 * 3600 * 1000)


/* what the dispatcher copies out of an endpoint to scan the ring */
typedef struct {
    ngx_str_t                   id;
    ngx_http_events_query_t     q;
    uint64_t                    scan_seq;
    uint64_t                    replay_after;
    uint64_t                    replay_to;
    ngx_uint_t                  replay_mode;
    ngx_uint_t                  want;
    ngx_array_t                 live;           /* uint64_t seqs */
    ngx_array_t                 replay;
    ngx_http_events_wh_skip_t   skips[NGX_HTTP_EVENTS_WH_SKIPS];
    ngx_uint_t                  nskips;
    uint64_t                    scanned;        /* live scan got to */
    uint64_t                    replayed;       /* replay scan got to */
    unsigned                    lost:1;         /* the ring moved past */
} ngx_http_events_wh_scan_t;


static ngx_http_events_wh_sh_t *ngx_http_events_wh_shm(
    ngx_http_events_store_t *store);
static ngx_http_events_wh_endpoint_t *ngx_http_events_wh_find(
    ngx_http_events_wh_sh_t *wh, ngx_str_t *tenant, ngx_str_t *id);
static ngx_int_t ngx_http_events_wh_set(ngx_http_events_store_t *store,
    ngx_http_events_wh_endpoint_t *ep, ngx_http_events_wh_spec_t *spec);
static void ngx_http_events_wh_free(ngx_http_events_store_t *store,
    ngx_http_events_wh_sh_t *wh, ngx_http_events_wh_endpoint_t *ep);
static void ngx_http_events_wh_view(ngx_http_events_wh_endpoint_t *ep,
    ngx_pool_t *pool, ngx_http_events_wh_view_t *view, uint64_t now);
static ngx_str_t ngx_http_events_wh_str(ngx_http_events_wh_endpoint_t *ep,
    ngx_http_events_wh_str_t *s);
static void ngx_http_events_wh_skip(ngx_http_events_wh_endpoint_t *ep,
    uint64_t from, uint64_t to);
static ngx_http_events_wh_delivery_t *ngx_http_events_wh_queue(
    ngx_http_events_store_t *store, ngx_http_events_wh_endpoint_t *ep,
    uint64_t seq, ngx_uint_t trigger, uint64_t now);
static void ngx_http_events_wh_dequeue(ngx_http_events_store_t *store,
    ngx_http_events_wh_endpoint_t *ep, ngx_http_events_wh_delivery_t *d);
static void ngx_http_events_wh_tick(ngx_event_t *ev);
static void ngx_http_events_wh_kick(ngx_event_t *ev);
static void ngx_http_events_wh_lease(ngx_http_events_store_t *store);
static void ngx_http_events_wh_dispatch(ngx_http_events_store_t *store);
static void ngx_http_events_wh_scan(ngx_http_events_store_t *store,
    ngx_http_events_wh_scan_t *sc, ngx_http_events_scratch_t *scratch);
static ngx_http_events_wh_job_t *ngx_http_events_wh_job(
    ngx_http_events_store_t *store, ngx_http_events_wh_endpoint_t *ep);
static void ngx_http_events_wh_start(ngx_http_events_wh_job_t *job);
static void *ngx_http_events_wh_handler_ctx(ngx_http_events_store_t *store,
    ngx_http_events_wh_endpoint_t *ep);
static void ngx_http_events_wh_done(ngx_http_events_wh_job_t *job);
static void ngx_http_events_wh_outcome(ngx_http_events_store_t *store,
    ngx_http_events_wh_sh_t *wh, ngx_http_events_wh_endpoint_t *ep,
    ngx_http_events_wh_job_t *job, uint64_t now,
    ngx_http_events_wh_attempt_t *a);
static void ngx_http_events_wh_disable(ngx_http_events_wh_endpoint_t *ep,
    ngx_uint_t reason, uint64_t now);
static void ngx_http_events_wh_log(ngx_http_events_wh_endpoint_t *ep,
    ngx_http_events_wh_job_t *job, ngx_http_events_wh_attempt_t *a);
static ngx_msec_t ngx_http_events_wh_jitter(ngx_msec_t delay);


static ngx_msec_t  ngx_http_events_wh_expired_warned;


static const char  *ngx_http_events_wh_reasons[] = {
    "", "gone", "receiver", "failing", "manual"
};


/* the webhooks' part of the zone, made on first use */

static ngx_http_events_wh_sh_t *
ngx_http_events_wh_shm(ngx_http_events_store_t *store)
{
    void                     **slot;
    ngx_http_events_wh_sh_t   *wh;

    if (store->wh) {
        return store->wh;
    }

    slot = ngx_http_events_store_wh_slot(store);

    if (*slot == NULL) {
        wh = ngx_slab_calloc_locked(store->shpool,
                                    sizeof(ngx_http_events_wh_sh_t));
        if (wh == NULL) {
            return NULL;
        }

        ngx_queue_init(&wh->endpoints);
        *slot = wh;
    }

    store->wh = *slot;

    return store->wh;
}


/* master, at start and on reload: the nginx.conf endpoints */

ngx_int_t
ngx_http_events_wh_init_zone(ngx_http_events_store_t *store,
    ngx_http_events_wh_conf_t *whcf)
{
    ngx_int_t                       rc;
    ngx_uint_t                      i;
    ngx_queue_t                    *q, *next;
    ngx_http_events_wh_sh_t        *wh;
    ngx_http_events_wh_spec_t      *spec;
    ngx_http_events_wh_endpoint_t  *ep;

    rc = NGX_OK;

    ngx_shmtx_lock(&store->shpool->mutex);

    wh = ngx_http_events_wh_shm(store);
    if (wh == NULL) {
        ngx_shmtx_unlock(&store->shpool->mutex);
        ngx_log_error(NGX_LOG_EMERG, ngx_cycle->log, 0,
                      "events zone \"%V\": no memory for webhooks",
                      &store->name);
        return NGX_ERROR;
    }

    /* a new zone: what the last run left on disk, beside the journal */
    if (!wh->loaded) {
        wh->loaded = 1;
        (void) ngx_http_events_wh_load(store, wh, ngx_cycle->log);
    }

    for (q = ngx_queue_head(&wh->endpoints);
         q != ngx_queue_sentinel(&wh->endpoints);
         q = ngx_queue_next(q))
    {
        ep = ngx_queue_data(q, ngx_http_events_wh_endpoint_t, queue);
        ep->seen = 0;
    }

    spec = store->wh_static ? store->wh_static->elts : NULL;

    for (i = 0; store->wh_static && i < store->wh_static->nelts; i++) {

        ep = ngx_http_events_wh_find(wh, &spec[i].tenant, &spec[i].id);

        if (ep) {
            /* the same id keeps its queue and scan position */
            if (ngx_http_events_wh_set(store, ep, &spec[i]) != NGX_OK) {
                rc = NGX_ERROR;
                break;
            }

            ep->secret_len = (u_char) spec[i].secret_len;
            ngx_memcpy(ep->secret, spec[i].secret, spec[i].secret_len);
            ep->previous_len = (u_char) spec[i].previous_len;
            ngx_memcpy(ep->previous, spec[i].previous,
                       spec[i].previous_len);
            ep->previous_expires_ms = spec[i].previous_len ? (uint64_t) -1
                                                           : 0;
            ep->seen = 1;
            continue;
        }

        if (ngx_http_events_wh_create_locked(store, wh, &spec[i], whcf)
            == NULL)
        {
            rc = NGX_ERROR;
            break;
        }
    }

    /* static endpoints gone from nginx.conf go with their deliveries */
    for (q = ngx_queue_head(&wh->endpoints);
         q != ngx_queue_sentinel(&wh->endpoints);
         q = next)
    {
        next = ngx_queue_next(q);
        ep = ngx_queue_data(q, ngx_http_events_wh_endpoint_t, queue);

        if (ep->is_static && !ep->seen && rc == NGX_OK) {
            ngx_http_events_wh_free(store, wh, ep);
        }
    }

    ngx_shmtx_unlock(&store->shpool->mutex);

    if (rc != NGX_OK) {
        ngx_log_error(NGX_LOG_EMERG, ngx_cycle->log, 0,
                      "events zone \"%V\": no memory for the static "
                      "webhook endpoints", &store->name);
    }

    return rc;
}


/* endpoints */

ngx_http_events_wh_endpoint_t *
ngx_http_events_wh_create_locked(ngx_http_events_store_t *store,
    ngx_http_events_wh_sh_t *wh, ngx_http_events_wh_spec_t *spec,
    ngx_http_events_wh_conf_t *whcf)
{
    uint64_t                        now, head;
    ngx_http_events_wh_endpoint_t  *ep;

    ep = ngx_slab_calloc_locked(store->shpool,
                                sizeof(ngx_http_events_wh_endpoint_t));
    if (ep == NULL) {
        return NULL;
    }

    ep->log_size = (uint32_t) whcf->log_size;
    ep->excerpt_size = (uint32_t) whcf->excerpt_size;
    ep->log_entry = (uint32_t) ngx_align(
                        offsetof(ngx_http_events_wh_attempt_t, excerpt)
                        + whcf->excerpt_size, 8);

    if (ep->log_size) {
        ep->log = ngx_slab_calloc_locked(store->shpool,
                                         (size_t) ep->log_size
                                         * ep->log_entry);
        if (ep->log == NULL) {
            ngx_slab_free_locked(store->shpool, ep);
            return NULL;
        }
    }

    if (ngx_http_events_wh_set(store, ep, spec) != NGX_OK) {
        if (ep->log) {
            ngx_slab_free_locked(store->shpool, ep->log);
        }

        ngx_slab_free_locked(store->shpool, ep);
        return NULL;
    }

    now = ngx_http_events_wh_now();
    head = ngx_http_events_store_head(store);

    ngx_memcpy(ep->id, spec->id.data, spec->id.len);
    ep->id_len = (u_char) spec->id.len;
    ngx_memcpy(ep->tenant, spec->tenant.data, spec->tenant.len);
    ep->tenant_len = (u_char) spec->tenant.len;

    ngx_memcpy(ep->secret, spec->secret, spec->secret_len);
    ep->secret_len = (u_char) spec->secret_len;
    ngx_memcpy(ep->previous, spec->previous, spec->previous_len);
    ep->previous_len = (u_char) spec->previous_len;
    ep->previous_expires_ms = spec->previous_len ? (uint64_t) -1 : 0;

    ep->is_static = spec->is_static;
    ep->is_handler = spec->is_handler;
    ep->seen = 1;
    ep->disabled = spec->enabled ? 0 : NGX_HTTP_EVENTS_WH_MANUALLY;
    ep->created_ms = now;
    ep->updated_ms = now;
    ep->disabled_ms = ep->disabled ? now : 0;

    /* what came before the endpoint is "missing" for a replay */
    ep->scan_seq = head;
    ngx_http_events_wh_skip(ep, 0, head);

    ngx_queue_init(&ep->deliveries);
    ngx_queue_insert_tail(&wh->endpoints, &ep->queue);
    wh->nendpoints++;
    wh->version++;

    return ep;
}


ngx_int_t
ngx_http_events_wh_create(ngx_http_events_store_t *store,
    ngx_http_events_wh_spec_t *spec, ngx_uint_t max)
{
    ngx_int_t                       rc;
    ngx_uint_t                      n;
    ngx_queue_t                    *q;
    ngx_http_events_wh_sh_t        *wh;
    ngx_http_events_wh_endpoint_t  *ep;

    ngx_shmtx_lock(&store->shpool->mutex);

    wh = ngx_http_events_wh_shm(store);
    if (wh == NULL) {
        rc = NGX_ERROR;
        goto done;
    }

    n = 0;

    for (q = ngx_queue_head(&wh->endpoints);
         q != ngx_queue_sentinel(&wh->endpoints);
         q = ngx_queue_next(q))
    {
        ep = ngx_queue_data(q, ngx_http_events_wh_endpoint_t, queue);

        if (ep->tenant_len == spec->tenant.len
            && ngx_strncmp(ep->tenant, spec->tenant.data, spec->tenant.len)
               == 0)
        {
            n++;
        }
    }

    if (n >= max) {
        rc = NGX_DECLINED;
        goto done;
    }

    ep = ngx_http_events_wh_create_locked(store, wh, spec, store->whcf);
    rc = ep ? NGX_OK : NGX_BUSY;

done:

    ngx_shmtx_unlock(&store->shpool->mutex);

    return rc;
}


ngx_int_t
ngx_http_events_wh_update(ngx_http_events_store_t *store,
    ngx_http_events_wh_spec_t *spec)
{
    ngx_int_t                       rc;
    uint64_t                        now, head;
    ngx_http_events_wh_sh_t        *wh;
    ngx_http_events_wh_spec_t       merged;
    ngx_http_events_wh_endpoint_t  *ep;
    ngx_uint_t                      i;

    ngx_shmtx_lock(&store->shpool->mutex);

    wh = ngx_http_events_wh_shm(store);
    ep = wh ? ngx_http_events_wh_find(wh, &spec->tenant, &spec->id) : NULL;

    if (ep == NULL) {
        rc = NGX_DECLINED;
        goto done;
    }

    if (ep->is_static) {
        rc = NGX_ABORT;
        goto done;
    }

    /* what the PATCH leaves out stays as it is */
    ngx_memzero(&merged, sizeof(ngx_http_events_wh_spec_t));

    merged.url = spec->set_url ? spec->url
                               : ngx_http_events_wh_str(ep, &ep->url);
    merged.description = spec->set_description
                         ? spec->description
                         : ngx_http_events_wh_str(ep, &ep->description);

    if (spec->set_patterns) {
        merged.npatterns = spec->npatterns;
        for (i = 0; i < spec->npatterns; i++) {
            merged.patterns[i] = spec->patterns[i];
        }

    } else {
        merged.npatterns = ep->npatterns;
        for (i = 0; i < ep->npatterns; i++) {
            merged.patterns[i] = ngx_http_events_wh_str(ep,
                                                        &ep->patterns[i]);
        }
    }

    if (spec->set_headers) {
        merged.nheaders = spec->nheaders;
        for (i = 0; i < spec->nheaders; i++) {
            merged.hnames[i] = spec->hnames[i];
            merged.hvalues[i] = spec->hvalues[i];
        }

    } else {
        merged.nheaders = ep->nheaders;
        for (i = 0; i < ep->nheaders; i++) {
            merged.hnames[i] = ngx_http_events_wh_str(ep, &ep->hnames[i]);
            merged.hvalues[i] = ngx_http_events_wh_str(ep, &ep->hvalues[i]);
        }
    }

    merged.rate_limit = spec->set_rate ? spec->rate_limit : ep->rate_limit;

    /* the old strings are in the blob being replaced: set copies first */
    if (ngx_http_events_wh_set(store, ep, &merged) != NGX_OK) {
        rc = NGX_BUSY;
        goto done;
    }

    now = ngx_http_events_wh_now();

    if (spec->set_enabled) {

        if (spec->enabled && ep->disabled) {
            /* events while disabled are "missing"; the queue resumes */
            head = ngx_http_events_store_head(store);
            ngx_http_events_wh_skip(ep, ep->scan_seq, head);
            ep->scan_seq = head;
            ep->disabled = 0;
            ep->disabled_ms = 0;
            ep->failing_since_ms = 0;
            ep->paused_until_ms = 0;

            ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                          "events webhook \"%*s\" enabled", ep->id_len,
                          ep->id);

        } else if (!spec->enabled && !ep->disabled) {
            ngx_http_events_wh_disable(ep, NGX_HTTP_EVENTS_WH_MANUALLY, now);
        }
    }

    ep->updated_ms = now;
    wh->version++;
    rc = NGX_OK;

done:

    ngx_shmtx_unlock(&store->shpool->mutex);

    return rc;
}


ngx_int_t
ngx_http_events_wh_delete(ngx_http_events_store_t *store, ngx_str_t *tenant,
    ngx_str_t *id)
{
    ngx_int_t                       rc;
    ngx_http_events_wh_sh_t        *wh;
    ngx_http_events_wh_endpoint_t  *ep;

    ngx_shmtx_lock(&store->shpool->mutex);

    wh = ngx_http_events_wh_shm(store);
    ep = wh ? ngx_http_events_wh_find(wh, tenant, id) : NULL;

    if (ep == NULL) {
        rc = NGX_DECLINED;

    } else if (ep->is_static) {
        rc = NGX_ABORT;

    } else {
        ngx_http_events_wh_free(store, wh, ep);
        rc = NGX_OK;
    }

    ngx_shmtx_unlock(&store->shpool->mutex);

    return rc;
}


ngx_int_t
ngx_http_events_wh_rotate(ngx_http_events_store_t *store, ngx_str_t *tenant,
    ngx_str_t *id, u_char *secret, size_t len, uint64_t grace_ms)
{
    ngx_int_t                       rc;
    uint64_t                        now;
    ngx_http_events_wh_sh_t        *wh;
    ngx_http_events_wh_endpoint_t  *ep;

    ngx_shmtx_lock(&store->shpool->mutex);

    wh = ngx_http_events_wh_shm(store);
    ep = wh ? ngx_http_events_wh_find(wh, tenant, id) : NULL;

    if (ep == NULL) {
        rc = NGX_DECLINED;
        goto done;
    }

    if (ep->is_static) {
        rc = NGX_ABORT;
        goto done;
    }

    now = ngx_http_events_wh_now();

    /* one previous secret: rotating in the grace drops the older one */
    if (grace_ms) {
        ngx_memcpy(ep->previous, ep->secret, ep->secret_len);
        ep->previous_len = ep->secret_len;
        ep->previous_expires_ms = now + grace_ms;

    } else {
        ep->previous_len = 0;
        ep->previous_expires_ms = 0;
    }

    ngx_memcpy(ep->secret, secret, len);
    ep->secret_len = (u_char) len;
    ep->updated_ms = now;
    wh->version++;
    rc = NGX_OK;

done:

    ngx_shmtx_unlock(&store->shpool->mutex);

    return rc;
}


ngx_int_t
ngx_http_events_wh_get(ngx_http_events_store_t *store, ngx_str_t *tenant,
    ngx_str_t *id, ngx_pool_t *pool, ngx_http_events_wh_view_t *view)
{
    ngx_int_t                       rc;
    ngx_http_events_wh_sh_t        *wh;
    ngx_http_events_wh_endpoint_t  *ep;

    ngx_shmtx_lock(&store->shpool->mutex);

    wh = ngx_http_events_wh_shm(store);
    ep = wh ? ngx_http_events_wh_find(wh, tenant, id) : NULL;

    if (ep == NULL) {
        rc = NGX_DECLINED;

    } else {
        ngx_http_events_wh_view(ep, pool, view, ngx_http_events_wh_now());
        rc = view->spec.url.data ? NGX_OK : NGX_ERROR;
    }

    ngx_shmtx_unlock(&store->shpool->mutex);

    return rc;
}


ngx_int_t
ngx_http_events_wh_list(ngx_http_events_store_t *store, ngx_str_t *tenant,
    ngx_pool_t *pool, ngx_array_t *views)
{
    ngx_int_t                       rc;
    uint64_t                        now;
    ngx_queue_t                    *q;
    ngx_http_events_wh_sh_t        *wh;
    ngx_http_events_wh_view_t      *view;
    ngx_http_events_wh_endpoint_t  *ep;

    rc = NGX_OK;
    now = ngx_http_events_wh_now();

    ngx_shmtx_lock(&store->shpool->mutex);

    wh = ngx_http_events_wh_shm(store);

    for (q = wh ? ngx_queue_head(&wh->endpoints) : NULL;
         q && q != ngx_queue_sentinel(&wh->endpoints);
         q = ngx_queue_next(q))
    {
        ep = ngx_queue_data(q, ngx_http_events_wh_endpoint_t, queue);

        if (ep->tenant_len != tenant->len
            || ngx_strncmp(ep->tenant, tenant->data, tenant->len) != 0)
        {
            continue;
        }

        view = ngx_array_push(views);
        if (view == NULL) {
            rc = NGX_ERROR;
            break;
        }

        ngx_http_events_wh_view(ep, pool, view, now);

        if (view->spec.url.data == NULL) {
            rc = NGX_ERROR;
            break;
        }
    }

    ngx_shmtx_unlock(&store->shpool->mutex);

    return rc;
}


/* the attempt log, newest first, below the cursor "before" (0: none) */

ngx_int_t
ngx_http_events_wh_attempts(ngx_http_events_store_t *store,
    ngx_str_t *tenant, ngx_str_t *id, uint64_t before, ngx_pool_t *pool,
    ngx_array_t *out)
{
    uint64_t                        n, oldest;
    ngx_int_t                       rc;
    ngx_http_events_wh_sh_t        *wh;
    ngx_http_events_wh_attempt_t   *a, *copy;
    ngx_http_events_wh_endpoint_t  *ep;

    rc = NGX_OK;

    ngx_shmtx_lock(&store->shpool->mutex);

    wh = ngx_http_events_wh_shm(store);
    ep = wh ? ngx_http_events_wh_find(wh, tenant, id) : NULL;

    if (ep == NULL) {
        rc = NGX_DECLINED;
        goto done;
    }

    oldest = ep->log_next > ep->log_size ? ep->log_next - ep->log_size : 0;
    /* the entry at index i is attempt n = i + 1 */
    n = (before && before <= ep->log_next) ? before - 1 : ep->log_next;

    while (n > oldest && out->nelts < out->nalloc) {
        n--;

        a = (ngx_http_events_wh_attempt_t *)
                (ep->log + (n % ep->log_size) * ep->log_entry);

        copy = ngx_array_push(out);
        if (copy == NULL) {
            rc = NGX_ERROR;
            break;
        }

        /* the entry may be of another size, from before a reload */
        if (out->size > ep->log_entry) {
            ngx_memzero(copy, out->size);
        }

        ngx_memcpy(copy, a, ngx_min(out->size, ep->log_entry));

        if (copy->excerpt_len > out->size
                                - offsetof(ngx_http_events_wh_attempt_t,
                                           excerpt))
        {
            copy->excerpt_len = (uint16_t) (out->size
                                - offsetof(ngx_http_events_wh_attempt_t,
                                           excerpt));
        }
    }

done:

    ngx_shmtx_unlock(&store->shpool->mutex);

    return rc;
}


ngx_int_t
ngx_http_events_wh_delivery(ngx_http_events_store_t *store,
    ngx_str_t *tenant, ngx_str_t *id, uint64_t seq,
    ngx_http_events_wh_delivery_t *d)
{
    ngx_int_t                       rc;
    ngx_queue_t                    *q;
    ngx_http_events_wh_sh_t        *wh;
    ngx_http_events_wh_delivery_t  *dd;
    ngx_http_events_wh_endpoint_t  *ep;

    rc = NGX_DONE;

    ngx_shmtx_lock(&store->shpool->mutex);

    wh = ngx_http_events_wh_shm(store);
    ep = wh ? ngx_http_events_wh_find(wh, tenant, id) : NULL;

    if (ep == NULL) {
        rc = NGX_DECLINED;
        goto done;
    }

    for (q = ngx_queue_head(&ep->deliveries);
         q != ngx_queue_sentinel(&ep->deliveries);
         q = ngx_queue_next(q))
    {
        dd = ngx_queue_data(q, ngx_http_events_wh_delivery_t, queue);

        if (dd->seq == seq) {
            *d = *dd;
            rc = NGX_OK;
            break;
        }
    }

done:

    ngx_shmtx_unlock(&store->shpool->mutex);

    return rc;
}


/*
 * A replay: "failed" queues the failed seqs it remembers in the range
 * now; "all" and "missing" are scanned by the dispatcher like live
 * events.  count is what the API counted in the ring for the answer.
 */

ngx_int_t
ngx_http_events_wh_replay(ngx_http_events_store_t *store, ngx_str_t *tenant,
    ngx_str_t *id, ngx_uint_t mode, uint64_t after, uint64_t to,
    ngx_uint_t count)
{
    uint64_t                        now, seq;
    ngx_int_t                       rc;
    ngx_uint_t                      i, n;
    ngx_http_events_wh_sh_t        *wh;
    ngx_http_events_wh_endpoint_t  *ep;

    ngx_shmtx_lock(&store->shpool->mutex);

    wh = ngx_http_events_wh_shm(store);
    ep = wh ? ngx_http_events_wh_find(wh, tenant, id) : NULL;

    if (ep == NULL) {
        rc = NGX_DECLINED;
        goto done;
    }

    if (ep->replay_mode) {
        rc = NGX_BUSY;
        goto done;
    }

    rc = NGX_OK;

    if (mode == 2) {
        now = ngx_http_events_wh_now();
        n = ngx_min(ep->nfailed, NGX_HTTP_EVENTS_WH_FAILED);

        for (i = 0; i < n; i++) {
            seq = ep->failed_seqs[(ep->nfailed - n + i)
                                  % NGX_HTTP_EVENTS_WH_FAILED];

            if (seq > after && seq <= to) {
                if (ngx_http_events_wh_queue(store, ep, seq,
                                             NGX_HTTP_EVENTS_WH_REPLAY, now)
                    == NULL)
                {
                    rc = NGX_BUSY;
                    break;
                }
            }
        }

        goto done;
    }

    ep->replay_mode = (u_char) mode;
    ep->replay_after = after;
    ep->replay_to = to;
    ep->replay_left = (uint32_t) count;
    wh->version++;

done:

    ngx_shmtx_unlock(&store->shpool->mutex);

    if (rc == NGX_OK) {
        ngx_http_events_wh_wake(store);
    }

    return rc;
}


/* whether seq is one a "failed" (mode 2) or "missing" (3) replay takes */

ngx_uint_t
ngx_http_events_wh_was_failed(ngx_http_events_store_t *store,
    ngx_str_t *tenant, ngx_str_t *id, uint64_t seq, ngx_uint_t mode)
{
    ngx_uint_t                      i, n, found;
    ngx_http_events_wh_sh_t        *wh;
    ngx_http_events_wh_endpoint_t  *ep;

    found = 0;

    ngx_shmtx_lock(&store->shpool->mutex);

    wh = ngx_http_events_wh_shm(store);
    ep = wh ? ngx_http_events_wh_find(wh, tenant, id) : NULL;

    if (ep && mode == 2) {
        n = ngx_min(ep->nfailed, NGX_HTTP_EVENTS_WH_FAILED);

        for (i = 0; i < n && !found; i++) {
            found = ep->failed_seqs[i] == seq;
        }

    } else if (ep && mode == 3) {
        for (i = 0; i < ep->nskips && !found; i++) {
            found = seq > ep->skips[i].from && seq <= ep->skips[i].to;
        }
    }

    ngx_shmtx_unlock(&store->shpool->mutex);

    return found;
}


/* a resend or a test ping: one attempt now, not retried */

ngx_int_t
ngx_http_events_wh_send_now(ngx_http_events_store_t *store,
    ngx_str_t *tenant, ngx_str_t *id, uint64_t seq, ngx_str_t *event_id,
    ngx_str_t *type, ngx_str_t *body)
{
    ngx_http_events_wh_sh_t        *wh;
    ngx_http_events_wh_job_t       *job;
    ngx_http_events_wh_endpoint_t  *ep;

    ngx_shmtx_lock(&store->shpool->mutex);

    wh = ngx_http_events_wh_shm(store);
    ep = wh ? ngx_http_events_wh_find(wh, tenant, id) : NULL;

    if (ep == NULL) {
        ngx_shmtx_unlock(&store->shpool->mutex);
        return NGX_DECLINED;
    }

    job = ngx_http_events_wh_job(store, ep);

    ngx_shmtx_unlock(&store->shpool->mutex);

    if (job == NULL) {
        return NGX_ERROR;
    }

    job->seq = seq;
    job->attempt = 1;
    job->trigger = NGX_HTTP_EVENTS_WH_MANUAL;
    job->event_tenant = job->tenant;

    job->event_id.data = ngx_pstrdup(job->pool, event_id);
    job->event_id.len = event_id->len;
    job->type.data = ngx_pstrdup(job->pool, type);
    job->type.len = type->len;
    job->body.data = ngx_pstrdup(job->pool, body);
    job->body.len = body->len;

    if (job->event_id.data == NULL || job->type.data == NULL
        || job->body.data == NULL)
    {
        ngx_destroy_pool(job->pool);
        return NGX_ERROR;
    }

    store->wh_inflight++;
    ngx_http_events_wh_send(job);

    return NGX_OK;
}


void
ngx_http_events_wh_stats(ngx_http_events_store_t *store,
    ngx_http_events_wh_stats_t *st)
{
    uint64_t                        now;
    ngx_queue_t                    *q, *dq;
    ngx_http_events_wh_sh_t        *wh;
    ngx_http_events_wh_delivery_t  *d;
    ngx_http_events_wh_endpoint_t  *ep;

    ngx_memzero(st, sizeof(ngx_http_events_wh_stats_t));

    now = ngx_http_events_wh_now();

    ngx_shmtx_lock(&store->shpool->mutex);

    wh = ngx_http_events_wh_shm(store);

    if (wh == NULL) {
        ngx_shmtx_unlock(&store->shpool->mutex);
        return;
    }

    st->owner = wh->owner;
    st->ok = wh->ok;
    st->failed = wh->failed;
    st->expired = wh->expired;
    st->aborted = wh->aborted;
    st->attempts = wh->attempts;
    st->retries = wh->retries;
    ngx_memcpy(st->errors, wh->errors, sizeof(st->errors));

    for (q = ngx_queue_head(&wh->endpoints);
         q != ngx_queue_sentinel(&wh->endpoints);
         q = ngx_queue_next(q))
    {
        ep = ngx_queue_data(q, ngx_http_events_wh_endpoint_t, queue);

        st->endpoints++;
        st->disabled += ep->disabled ? 1 : 0;
        st->inflight += ep->inflight;
        st->pending += ep->pending;

        for (dq = ngx_queue_head(&ep->deliveries);
             dq != ngx_queue_sentinel(&ep->deliveries);
             dq = ngx_queue_next(dq))
        {
            d = ngx_queue_data(dq, ngx_http_events_wh_delivery_t, queue);

            if (now > d->created_ms
                && now - d->created_ms > st->oldest_pending_ms)
            {
                st->oldest_pending_ms = now - d->created_ms;
            }
        }
    }

    ngx_shmtx_unlock(&store->shpool->mutex);
}


/* "whsec_" + base64 (padded or not) of 24-64 bytes */

ngx_int_t
ngx_http_events_wh_secret(ngx_str_t *text, u_char *out, size_t *len)
{
    u_char     buf[128];
    ngx_str_t  src, dst;

    if (text->len < 6 || ngx_strncmp(text->data, "whsec_", 6) != 0) {
        return NGX_ERROR;
    }

    src.data = buf;
    src.len = text->len - 6;

    if (src.len == 0 || src.len > sizeof(buf) - 4) {
        return NGX_ERROR;
    }

    ngx_memcpy(buf, text->data + 6, src.len);

    while (src.len % 4) {
        buf[src.len++] = '=';
    }

    dst.data = out;

    if (ngx_decode_base64(&dst, &src) != NGX_OK
        || dst.len < NGX_HTTP_EVENTS_WH_MIN_SECRET
        || dst.len > NGX_HTTP_EVENTS_WH_MAX_SECRET)
    {
        /* ngx_decode_base64 writes at most 3/4 of 124: out holds 96 */
        return NGX_ERROR;
    }

    *len = dst.len;

    return NGX_OK;
}


/* the zone's endpoints: lookups and the blob of strings */

static ngx_http_events_wh_endpoint_t *
ngx_http_events_wh_find(ngx_http_events_wh_sh_t *wh, ngx_str_t *tenant,
    ngx_str_t *id)
{
    ngx_queue_t                    *q;
    ngx_http_events_wh_endpoint_t  *ep;

    for (q = ngx_queue_head(&wh->endpoints);
         q != ngx_queue_sentinel(&wh->endpoints);
         q = ngx_queue_next(q))
    {
        ep = ngx_queue_data(q, ngx_http_events_wh_endpoint_t, queue);

        if (ep->id_len == id->len
            && ep->tenant_len == tenant->len
            && ngx_strncmp(ep->id, id->data, id->len) == 0
            && ngx_strncmp(ep->tenant, tenant->data, tenant->len) == 0)
        {
            return ep;
        }
    }

    return NULL;
}


static ngx_str_t
ngx_http_events_wh_str(ngx_http_events_wh_endpoint_t *ep,
    ngx_http_events_wh_str_t *s)
{
    ngx_str_t  str;

    str.data = ep->blob + s->off;
    str.len = s->len;

    return str;
}


static u_char *
ngx_http_events_wh_put(u_char *start, u_char *p, ngx_str_t *s,
    ngx_http_events_wh_str_t *ws)
{
    ws->off = (uint32_t) (p - start);
    ws->len = (uint32_t) s->len;

    return ngx_cpymem(p, s->data, s->len);
}


static ngx_int_t
ngx_http_events_wh_set(ngx_http_events_store_t *store,
    ngx_http_events_wh_endpoint_t *ep, ngx_http_events_wh_spec_t *spec)
{
    u_char      *blob, *p;
    size_t       len;
    ngx_uint_t   i;

    len = spec->url.len + spec->description.len;

    for (i = 0; i < spec->npatterns; i++) {
        len += spec->patterns[i].len;
    }

    for (i = 0; i < spec->nheaders; i++) {
        len += spec->hnames[i].len + spec->hvalues[i].len;
    }

    blob = ngx_slab_alloc_locked(store->shpool, len ? len : 1);
    if (blob == NULL) {
        return NGX_ERROR;
    }

    p = blob;
    p = ngx_http_events_wh_put(blob, p, &spec->url, &ep->url);
    p = ngx_http_events_wh_put(blob, p, &spec->description,
                               &ep->description);

    for (i = 0; i < spec->npatterns; i++) {
        p = ngx_http_events_wh_put(blob, p, &spec->patterns[i],
                                   &ep->patterns[i]);
    }

    for (i = 0; i < spec->nheaders; i++) {
        p = ngx_http_events_wh_put(blob, p, &spec->hnames[i],
                                   &ep->hnames[i]);
        p = ngx_http_events_wh_put(blob, p, &spec->hvalues[i],
                                   &ep->hvalues[i]);
    }

    ep->npatterns = (u_char) spec->npatterns;
    ep->nheaders = (u_char) spec->nheaders;
    ep->rate_limit = (uint32_t) spec->rate_limit;

    if (ep->blob) {
        ngx_slab_free_locked(store->shpool, ep->blob);
    }

    ep->blob = blob;
    ep->blob_len = len;

    return NGX_OK;
}


static void
ngx_http_events_wh_free(ngx_http_events_store_t *store,
    ngx_http_events_wh_sh_t *wh, ngx_http_events_wh_endpoint_t *ep)
{
    ngx_queue_t                    *q;
    ngx_http_events_wh_delivery_t  *d;

    while (!ngx_queue_empty(&ep->deliveries)) {
        q = ngx_queue_head(&ep->deliveries);
        d = ngx_queue_data(q, ngx_http_events_wh_delivery_t, queue);
        ngx_http_events_wh_dequeue(store, ep, d);
    }

    ngx_queue_remove(&ep->queue);
    wh->nendpoints--;
    wh->version++;

    if (ep->log) {
        ngx_slab_free_locked(store->shpool, ep->log);
    }

    if (ep->blob) {
        ngx_slab_free_locked(store->shpool, ep->blob);
    }

    ngx_slab_free_locked(store->shpool, ep);
}


static void
ngx_http_events_wh_view(ngx_http_events_wh_endpoint_t *ep, ngx_pool_t *pool,
    ngx_http_events_wh_view_t *view, uint64_t now)
{
    u_char                         *blob;
    ngx_uint_t                      i;
    ngx_queue_t                    *q;
    ngx_http_events_wh_spec_t      *spec;
    ngx_http_events_wh_delivery_t  *d;

    ngx_memzero(view, sizeof(ngx_http_events_wh_view_t));

    spec = &view->spec;

    blob = ngx_pnalloc(pool, ep->blob_len + ep->id_len + ep->tenant_len + 1);
    if (blob == NULL) {
        return;
    }

    /* the strings point into a copy of the blob */
    ngx_memcpy(blob, ep->blob, ep->blob_len);

    spec->id.data = ngx_cpymem(blob + ep->blob_len, ep->id, ep->id_len)
                    - ep->id_len;
    spec->id.len = ep->id_len;
    spec->tenant.data = ngx_cpymem(spec->id.data + ep->id_len, ep->tenant,
                                   ep->tenant_len)
                        - ep->tenant_len;
    spec->tenant.len = ep->tenant_len;

    spec->description.data = blob + ep->description.off;
    spec->description.len = ep->description.len;
    spec->npatterns = ep->npatterns;
    spec->nheaders = ep->nheaders;

    for (i = 0; i < ep->npatterns; i++) {
        spec->patterns[i].data = blob + ep->patterns[i].off;
        spec->patterns[i].len = ep->patterns[i].len;
    }

    for (i = 0; i < ep->nheaders; i++) {
        spec->hnames[i].data = blob + ep->hnames[i].off;
        spec->hnames[i].len = ep->hnames[i].len;
        spec->hvalues[i].data = blob + ep->hvalues[i].off;
        spec->hvalues[i].len = ep->hvalues[i].len;
    }

    ngx_memcpy(spec->secret, ep->secret, ep->secret_len);
    spec->secret_len = ep->secret_len;

    if (ep->previous_len && ep->previous_expires_ms > now) {
        ngx_memcpy(spec->previous, ep->previous, ep->previous_len);
        spec->previous_len = ep->previous_len;
        view->previous_expires_ms = ep->previous_expires_ms;
    }

    spec->rate_limit = ep->rate_limit;
    spec->is_static = ep->is_static;
    spec->is_handler = ep->is_handler;
    spec->enabled = !ep->disabled;

    view->disabled = ep->disabled;
    view->last_error = ep->last_error;
    view->created_ms = ep->created_ms;
    view->updated_ms = ep->updated_ms;
    view->disabled_ms = ep->disabled_ms;
    view->failing_since_ms = ep->failing_since_ms;
    view->paused_until_ms = ep->paused_until_ms > now ? ep->paused_until_ms
                                                      : 0;
    view->last_success_ms = ep->last_success_ms;
    view->last_failure_ms = ep->last_failure_ms;
    view->ok = ep->ok;
    view->failed = ep->failed;
    view->expired = ep->expired;
    view->pending = ep->pending;
    view->inflight = ep->inflight;

    for (q = ngx_queue_head(&ep->deliveries);
         q != ngx_queue_sentinel(&ep->deliveries);
         q = ngx_queue_next(q))
    {
        d = ngx_queue_data(q, ngx_http_events_wh_delivery_t, queue);

        if (now > d->created_ms
            && now - d->created_ms > view->oldest_pending_ms)
        {
            view->oldest_pending_ms = now - d->created_ms;
        }
    }

    /* last: the url is what tells the caller the copy worked */
    spec->url.data = blob + ep->url.off;
    spec->url.len = ep->url.len;
}


/* a range of seqs never delivered: merged into the last, or the oldest
 * one dropped when there are too many (then "missing" forgets them) */

static void
ngx_http_events_wh_skip(ngx_http_events_wh_endpoint_t *ep, uint64_t from,
    uint64_t to)
{
    ngx_http_events_wh_skip_t  *last;

    if (to <= from) {
        return;
    }

    if (ep->nskips) {
        last = &ep->skips[ep->nskips - 1];

        if (last->to >= from) {
            last->to = ngx_max(last->to, to);
            return;
        }
    }

    if (ep->nskips == NGX_HTTP_EVENTS_WH_SKIPS) {
        ngx_memmove(&ep->skips[0], &ep->skips[1],
                    (NGX_HTTP_EVENTS_WH_SKIPS - 1)
                    * sizeof(ngx_http_events_wh_skip_t));
        ep->nskips--;
    }

    ep->skips[ep->nskips].from = from;
    ep->skips[ep->nskips].to = to;
    ep->nskips++;
}


/* deliveries: a queue per endpoint, in the order they were made */

static ngx_http_events_wh_delivery_t *
ngx_http_events_wh_queue(ngx_http_events_store_t *store,
    ngx_http_events_wh_endpoint_t *ep, uint64_t seq, ngx_uint_t trigger,
    uint64_t now)
{
    ngx_queue_t                    *q;
    ngx_http_events_wh_delivery_t  *d;

    /* an event waits once per endpoint, whatever queued it */
    for (q = ngx_queue_head(&ep->deliveries);
         q != ngx_queue_sentinel(&ep->deliveries);
         q = ngx_queue_next(q))
    {
        d = ngx_queue_data(q, ngx_http_events_wh_delivery_t, queue);

        if (d->seq == seq) {
            return d;
        }
    }

    d = ngx_slab_calloc_locked(store->shpool,
                               sizeof(ngx_http_events_wh_delivery_t));
    if (d == NULL) {
        return NULL;
    }

    d->seq = seq;
    d->next_ms = now;
    d->created_ms = now;
    d->trigger = (u_char) trigger;
    d->state = NGX_HTTP_EVENTS_WH_QUEUED;

    ngx_queue_insert_tail(&ep->deliveries, &d->queue);
    ep->pending++;

    return d;
}


static void
ngx_http_events_wh_dequeue(ngx_http_events_store_t *store,
    ngx_http_events_wh_endpoint_t *ep, ngx_http_events_wh_delivery_t *d)
{
    if (d->state == NGX_HTTP_EVENTS_WH_INFLIGHT && ep->inflight) {
        ep->inflight--;
    }

    ngx_queue_remove(&d->queue);
    ep->pending--;
    ngx_slab_free_locked(store->shpool, d);
}


/* the dispatcher: a tick in every worker, the work in the lease owner */

ngx_int_t
ngx_http_events_wh_init_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                    i;
    ngx_shm_zone_t              **zones;
    ngx_http_events_store_t      *store;
    ngx_http_events_main_conf_t  *emcf;

    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    emcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_events_module);
    if (emcf == NULL) {
        return NGX_OK;
    }

    zones = emcf->zones.elts;

    for (i = 0; i < emcf->zones.nelts; i++) {
        store = zones[i]->data;

        if (store->whcf == NULL) {
            continue;
        }

        store->wh_tick.handler = ngx_http_events_wh_tick;
        store->wh_tick.data = store;
        store->wh_tick.log = cycle->log;
        store->wh_tick.cancelable = 1;

        store->wh_kick.handler = ngx_http_events_wh_kick;
        store->wh_kick.data = store;
        store->wh_kick.log = cycle->log;

        /* worker 0 first, so that ownership tends to stay there */
        ngx_add_timer(&store->wh_tick, ngx_worker == 0
                                       ? 1 : NGX_HTTP_EVENTS_WH_TICK
                                             + ngx_random() % 100);
    }

    return NGX_OK;
}


/* shutting down: let another worker take over now, not at expiry */

void
ngx_http_events_wh_release(ngx_cycle_t *cycle)
{
    ngx_uint_t                    i;
    ngx_shm_zone_t              **zones;
    ngx_http_events_wh_sh_t      *wh;
    ngx_http_events_store_t      *store;
    ngx_http_events_main_conf_t  *emcf;

    emcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_events_module);
    if (emcf == NULL) {
        return;
    }

    zones = emcf->zones.elts;

    for (i = 0; i < emcf->zones.nelts; i++) {
        store = zones[i]->data;

        if (store->wh_tick.timer_set) {
            ngx_del_timer(&store->wh_tick);
        }

        if (store->wh_kick.posted) {
            ngx_delete_posted_event(&store->wh_kick);
        }

        if (!store->wh_owner) {
            continue;
        }

        if (store->journal) {
            ngx_http_events_wh_save_changed(store);
        }

        ngx_shmtx_lock(&store->shpool->mutex);

        wh = store->wh;

        if (wh && wh->owner == ngx_pid) {
            wh->owner = 0;
            wh->lease_expires = 0;
        }

        ngx_shmtx_unlock(&store->shpool->mutex);

        store->wh_owner = 0;
        ngx_http_events_store_dispatching(store, 0);

        ngx_log_error(NGX_LOG_INFO, cycle->log, 0,
                      "events zone \"%V\": webhook dispatcher released",
                      &store->name);
    }
}


void
ngx_http_events_wh_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_events_wh_release(cycle);
}


/* events came: the owner looks for new deliveries at once */

void
ngx_http_events_wh_wake(ngx_http_events_store_t *store)
{
    if (store->wh_owner && !store->wh_kick.posted && !ngx_exiting) {
        ngx_post_event(&store->wh_kick, &ngx_posted_events);
    }
}


static void
ngx_http_events_wh_tick(ngx_event_t *ev)
{
    ngx_http_events_store_t  *store = ev->data;

    if (ngx_exiting || ngx_terminate || ngx_quit) {
        return;
    }

    ngx_http_events_wh_lease(store);

    if (store->wh_owner) {
        ngx_http_events_wh_dispatch(store);

        /* delivery progress to disk, at most once a second */
        if (store->journal
            && ngx_current_msec - store->wh_saved >= 1000)
        {
            store->wh_saved = ngx_current_msec;
            ngx_http_events_wh_save_changed(store);
        }
    }

    ngx_add_timer(ev, NGX_HTTP_EVENTS_WH_TICK);
}


static void
ngx_http_events_wh_kick(ngx_event_t *ev)
{
    ngx_http_events_store_t  *store = ev->data;

    if (store->wh_owner && !ngx_exiting) {
        ngx_http_events_wh_dispatch(store);
    }
}


static void
ngx_http_events_wh_lease(ngx_http_events_store_t *store)
{
    ngx_uint_t                      took;
    ngx_queue_t                    *q, *dq;
    ngx_http_events_wh_sh_t        *wh;
    ngx_http_events_wh_delivery_t  *d;
    ngx_http_events_wh_endpoint_t  *ep;

    took = 0;

    ngx_shmtx_lock(&store->shpool->mutex);

    wh = ngx_http_events_wh_shm(store);
    if (wh == NULL) {
        ngx_shmtx_unlock(&store->shpool->mutex);
        return;
    }

    if (wh->owner == ngx_pid) {
        wh->lease_expires = ngx_current_msec + NGX_HTTP_EVENTS_WH_LEASE;

    } else if (wh->owner == 0
               || (ngx_msec_int_t) (ngx_current_msec - wh->lease_expires)
                  > 0
               || (kill(wh->owner, 0) == -1 && ngx_errno == NGX_ESRCH))
    {
        wh->owner = ngx_pid;
        wh->term++;
        wh->lease_expires = ngx_current_msec + NGX_HTTP_EVENTS_WH_LEASE;
        took = 1;

        /* what the old term had in flight may not have arrived: again */
        for (q = ngx_queue_head(&wh->endpoints);
             q != ngx_queue_sentinel(&wh->endpoints);
             q = ngx_queue_next(q))
        {
            ep = ngx_queue_data(q, ngx_http_events_wh_endpoint_t, queue);
            ep->inflight = 0;

            for (dq = ngx_queue_head(&ep->deliveries);
                 dq != ngx_queue_sentinel(&ep->deliveries);
                 dq = ngx_queue_next(dq))
            {
                d = ngx_queue_data(dq, ngx_http_events_wh_delivery_t, queue);

                if (d->state == NGX_HTTP_EVENTS_WH_INFLIGHT) {
                    d->state = NGX_HTTP_EVENTS_WH_QUEUED;
                }
            }
        }

    } else if (store->wh_owner) {
        /* the lease went to another worker while this one stalled */
        store->wh_owner = 0;
        ngx_http_events_store_dispatching(store, 0);
    }

    ngx_shmtx_unlock(&store->shpool->mutex);

    if (took) {
        if (!store->wh_owner) {
            store->wh_owner = 1;
            ngx_http_events_store_dispatching(store, 1);
        }

        ngx_log_error(NGX_LOG_NOTICE, ngx_cycle->log, 0,
                      "events zone \"%V\": worker %P dispatches webhooks "
                      "(term %uD)", &store->name, ngx_pid, wh->term);
    }
}


/*
 * One dispatch: copy what the scans need out of the zone, scan the
 * ring without the lock, then under the lock queue what was found and
 * take the due deliveries the caps allow.  The attempts start after.
 */

static void
ngx_http_events_wh_dispatch(ngx_http_events_store_t *store)
{
    uint64_t                        now, *seq;
    ngx_uint_t                      i, j, n, cap;
    ngx_pool_t                     *pool;
    ngx_array_t                     scans, jobs;
    ngx_queue_t                    *q, *dq;
    ngx_http_events_ipc_t          *ipc;
    ngx_http_events_wh_sh_t        *wh;
    ngx_http_events_wh_job_t      **jp, *job;
    ngx_http_events_wh_conf_t      *whcf;
    ngx_http_events_wh_scan_t      *sc;
    ngx_http_events_wh_delivery_t  *d;
    ngx_http_events_wh_endpoint_t  *ep;

    whcf = store->whcf;
    ipc = ngx_http_events_ipc();

    if (ipc == NULL) {
        return;
    }

    pool = ngx_create_pool(16384, ngx_cycle->log);
    if (pool == NULL) {
        return;
    }

    if (ngx_array_init(&scans, pool, 8, sizeof(ngx_http_events_wh_scan_t))
        != NGX_OK
        || ngx_array_init(&jobs, pool, 16, sizeof(ngx_http_events_wh_job_t *))
           != NGX_OK)
    {
        goto done;
    }

    ngx_shmtx_lock(&store->shpool->mutex);

    wh = store->wh;

    for (q = ngx_queue_head(&wh->endpoints);
         q != ngx_queue_sentinel(&wh->endpoints);
         q = ngx_queue_next(q))
    {
        ep = ngx_queue_data(q, ngx_http_events_wh_endpoint_t, queue);

        if (ep->disabled || ep->pending >= NGX_HTTP_EVENTS_WH_WINDOW) {
            continue;
        }

        sc = ngx_array_push(&scans);
        if (sc == NULL) {
            break;
        }

        ngx_memzero(sc, sizeof(ngx_http_events_wh_scan_t));

        sc->id.data = ngx_pnalloc(pool, ep->id_len + ep->tenant_len);
        sc->q.types = ngx_palloc(pool, ep->npatterns * sizeof(ngx_str_t)
                                       + ep->blob_len + 1);

        if (sc->id.data == NULL || sc->q.types == NULL
            || ngx_array_init(&sc->live, pool, 16, sizeof(uint64_t))
               != NGX_OK
            || ngx_array_init(&sc->replay, pool, 16, sizeof(uint64_t))
               != NGX_OK)
        {
            scans.nelts--;
            break;
        }

        sc->id.len = ep->id_len;
        ngx_memcpy(sc->id.data, ep->id, ep->id_len);
        sc->q.tenant.data = ngx_cpymem(sc->id.data + ep->id_len, ep->tenant,
                                       ep->tenant_len) - ep->tenant_len;
        sc->q.tenant.len = ep->tenant_len;
        sc->q.any_tenant = (ep->tenant_len == 1 && ep->tenant[0] == '*');

        /* the patterns point into a copy of the blob after the array */
        ngx_memcpy((u_char *) (sc->q.types + ep->npatterns), ep->blob,
                   ep->blob_len);

        for (j = 0; j < ep->npatterns; j++) {
            sc->q.types[j].data = (u_char *) (sc->q.types + ep->npatterns)
                                  + ep->patterns[j].off;
            sc->q.types[j].len = ep->patterns[j].len;
        }

        sc->q.ntypes = ep->npatterns;
        sc->q.since_ms = -1;
        sc->q.until_ms = -1;
        sc->scan_seq = ep->scan_seq;
        sc->replay_mode = ep->replay_mode;
        sc->replay_after = ep->replay_after;
        sc->replay_to = ep->replay_to;
        sc->want = NGX_HTTP_EVENTS_WH_WINDOW - ep->pending;
        sc->nskips = ep->nskips;
        ngx_memcpy(sc->skips, ep->skips,
                   ep->nskips * sizeof(ngx_http_events_wh_skip_t));
        sc->scanned = sc->scan_seq;
        sc->replayed = sc->replay_after;
    }

    ngx_shmtx_unlock(&store->shpool->mutex);

    sc = scans.elts;

    for (i = 0; i < scans.nelts; i++) {
        ngx_http_events_wh_scan(store, &sc[i], &ipc->scratch);
    }

    now = ngx_http_events_wh_now();

    ngx_shmtx_lock(&store->shpool->mutex);

    for (i = 0; i < scans.nelts; i++) {
        ep = ngx_http_events_wh_find(wh, &sc[i].q.tenant, &sc[i].id);

        /* gone, or moved by an API call meanwhile: next time */
        if (ep == NULL || ep->scan_seq != sc[i].scan_seq
            || ep->replay_after != sc[i].replay_after
            || ep->replay_mode != sc[i].replay_mode)
        {
            continue;
        }

        if (sc[i].lost) {
            ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                          "events webhook \"%V\": events after seq %uL "
                          "left the ring before they were delivered",
                          &sc[i].id, sc[i].scan_seq);
        }

        seq = sc[i].live.elts;

        for (j = 0; j < sc[i].live.nelts; j++) {
            if (ngx_http_events_wh_queue(store, ep, seq[j],
                                         NGX_HTTP_EVENTS_WH_SCHEDULED, now)
                == NULL)
            {
                sc[i].scanned = j ? seq[j - 1] : sc[i].scan_seq;
                break;
            }
        }

        ep->scan_seq = sc[i].scanned;

        if (ep->replay_mode) {
            seq = sc[i].replay.elts;

            for (j = 0; j < sc[i].replay.nelts; j++) {
                if (ngx_http_events_wh_queue(store, ep, seq[j],
                                             NGX_HTTP_EVENTS_WH_REPLAY, now)
                    == NULL)
                {
                    sc[i].replayed = j ? seq[j - 1] : sc[i].replay_after;
                    break;
                }

                if (ep->replay_left) {
                    ep->replay_left--;
                }
            }

            ep->replay_after = sc[i].replayed;

            if (ep->replay_after >= ep->replay_to || ep->replay_left == 0) {
                ep->replay_mode = 0;
            }
        }
    }

    /* the due deliveries, as far as the caps allow */

    cap = whcf->concurrency > store->wh_inflight
          ? whcf->concurrency - store->wh_inflight : 0;

    for (q = ngx_queue_head(&wh->endpoints);
         q != ngx_queue_sentinel(&wh->endpoints) && cap;
         q = ngx_queue_next(q))
    {
        ep = ngx_queue_data(q, ngx_http_events_wh_endpoint_t, queue);

        if (ep->disabled || ep->paused_until_ms > now) {
            continue;
        }

        for (dq = ngx_queue_head(&ep->deliveries);
             dq != ngx_queue_sentinel(&ep->deliveries) && cap
             && ep->inflight < whcf->endpoint_concurrency;
             dq = ngx_queue_next(dq))
        {
            d = ngx_queue_data(dq, ngx_http_events_wh_delivery_t, queue);

            if (d->state != NGX_HTTP_EVENTS_WH_QUEUED || d->next_ms > now) {
                continue;
            }

            /* rateLimit: a virtual schedule, one slot per 1/rate s */
            if (ep->rate_limit) {
                if (ep->tokens_ms > now + 1000) {
                    break;
                }

                ep->tokens_ms = ngx_max(ep->tokens_ms, now)
                                + 1000 / ep->rate_limit;
            }

            job = ngx_http_events_wh_job(store, ep);
            if (job == NULL) {
                break;
            }

            jp = ngx_array_push(&jobs);
            if (jp == NULL) {
                ngx_destroy_pool(job->pool);
                break;
            }

            *jp = job;

            d->state = NGX_HTTP_EVENTS_WH_INFLIGHT;
            d->term = wh->term;
            d->attempts++;

            job->seq = d->seq;
            job->attempt = d->attempts;
            job->trigger = d->trigger;
            job->term = wh->term;
            job->queued = 1;

            ep->inflight++;
            store->wh_inflight++;
            cap--;
        }
    }

    for (i = 0; i < scans.nelts; i++) {
        if (sc[i].live.nelts || sc[i].replay.nelts || sc[i].lost) {
            wh->version++;
            break;
        }
    }

    if (jobs.nelts) {
        wh->version++;
    }

    ngx_shmtx_unlock(&store->shpool->mutex);

    jp = jobs.elts;
    n = jobs.nelts;

    for (i = 0; i < n; i++) {
        ngx_http_events_wh_start(jp[i]);
    }

done:

    ngx_destroy_pool(pool);
}


/* the ring after an endpoint's positions, without the lock */

static void
ngx_http_events_wh_scan(ngx_http_events_store_t *store,
    ngx_http_events_wh_scan_t *sc, ngx_http_events_scratch_t *scratch)
{
    uint64_t                  last, *seq, from;
    ngx_int_t                 rc;
    ngx_uint_t                budget, i, found;
    ngx_http_events_item_t    item;
    ngx_http_events_window_t  w;

    budget = NGX_HTTP_EVENTS_WH_SCAN;
    from = sc->scan_seq;

    while (sc->live.nelts < sc->want && budget) {

        rc = ngx_http_events_store_next(store, &sc->q, from, budget, scratch,
                                        &item, &last);
        budget = budget > 64 ? budget - 64 : 0;

        if (rc == NGX_OK) {
            seq = ngx_array_push(&sc->live);
            if (seq == NULL) {
                break;
            }

            *seq = item.seq;
            from = item.seq;
            continue;
        }

        if (rc == NGX_DECLINED) {
            /* the ring moved past: go on from the oldest event kept */
            ngx_http_events_store_window(store, &w);

            if (w.evicted_seq <= from) {
                break;
            }

            sc->lost = 1;
            from = w.evicted_seq;
            continue;
        }

        from = ngx_max(from, last);

        if (rc != NGX_AGAIN) {
            break;
        }
    }

    sc->scanned = from;

    if (!sc->replay_mode) {
        return;
    }

    budget = NGX_HTTP_EVENTS_WH_SCAN;
    from = sc->replay_after;

    while (sc->live.nelts + sc->replay.nelts < sc->want && budget
           && from < sc->replay_to)
    {
        rc = ngx_http_events_store_next(store, &sc->q, from, budget, scratch,
                                        &item, &last);
        budget = budget > 64 ? budget - 64 : 0;

        if (rc == NGX_OK) {
            from = item.seq;

            if (item.seq > sc->replay_to) {
                from = sc->replay_to;
                break;
            }

            if (sc->replay_mode == 3) {
                /* "missing": only what was never queued */
                found = 0;

                for (i = 0; i < sc->nskips && !found; i++) {
                    found = item.seq > sc->skips[i].from
                            && item.seq <= sc->skips[i].to;
                }

                if (!found) {
                    continue;
                }
            }

            seq = ngx_array_push(&sc->replay);
            if (seq == NULL) {
                break;
            }

            *seq = item.seq;
            continue;
        }

        if (rc == NGX_DECLINED) {
            ngx_http_events_store_window(store, &w);

            if (w.evicted_seq <= from) {
                break;
            }

            from = w.evicted_seq;
            continue;
        }

        from = ngx_max(from, last);

        if (rc != NGX_AGAIN) {
            break;
        }
    }

    sc->replayed = ngx_min(from, sc->replay_to);
}


/* an attempt's job: a pool of its own with the endpoint copied in */

static ngx_http_events_wh_job_t *
ngx_http_events_wh_job(ngx_http_events_store_t *store,
    ngx_http_events_wh_endpoint_t *ep)
{
    u_char                    *p;
    uint64_t                   now;
    ngx_uint_t                 i;
    ngx_pool_t                *pool;
    ngx_http_events_wh_job_t  *job;

    pool = ngx_create_pool(4096, ngx_cycle->log);
    if (pool == NULL) {
        return NULL;
    }

    job = ngx_pcalloc(pool, sizeof(ngx_http_events_wh_job_t));
    p = ngx_pnalloc(pool, ep->blob_len + ep->id_len + ep->tenant_len + 1);

    if (job == NULL || p == NULL) {
        ngx_destroy_pool(pool);
        return NULL;
    }

    job->pool = pool;
    job->store = store;
    job->whcf = store->whcf;
    job->excerpt_size = ep->excerpt_size;
    job->done = ngx_http_events_wh_done;
    job->vet = !ep->is_static;
    job->handler = ep->is_handler;
    job->ctx = store->wh_ctx;

    if (ep->is_handler) {
        /* the server its location is in, from this cycle's config */
        job->ctx = ngx_http_events_wh_handler_ctx(store, ep);

        if (job->ctx == NULL) {
            ngx_destroy_pool(pool);
            return NULL;
        }
    }

    ngx_memcpy(p, ep->blob, ep->blob_len);

    job->url.data = p + ep->url.off;
    job->url.len = ep->url.len;
    job->nheaders = ep->nheaders;

    for (i = 0; i < ep->nheaders; i++) {
        job->hnames[i].data = p + ep->hnames[i].off;
        job->hnames[i].len = ep->hnames[i].len;
        job->hvalues[i].data = p + ep->hvalues[i].off;
        job->hvalues[i].len = ep->hvalues[i].len;
    }

    p += ep->blob_len;

    job->endpoint.data = p;
    job->endpoint.len = ep->id_len;
    p = ngx_cpymem(p, ep->id, ep->id_len);

    job->tenant.data = p;
    job->tenant.len = ep->tenant_len;
    ngx_memcpy(p, ep->tenant, ep->tenant_len);

    ngx_memcpy(job->secret, ep->secret, ep->secret_len);
    job->secret_len = ep->secret_len;

    now = ngx_http_events_wh_now();

    if (ep->previous_len && ep->previous_expires_ms > now) {
        ngx_memcpy(job->previous, ep->previous, ep->previous_len);
        job->previous_len = ep->previous_len;
    }

    return job;
}


/* a handler's server: its events_handler is in this cycle's config */

static void *
ngx_http_events_wh_handler_ctx(ngx_http_events_store_t *store,
    ngx_http_events_wh_endpoint_t *ep)
{
    ngx_uint_t                  i;
    ngx_http_events_wh_spec_t  *spec;

    spec = store->wh_static ? store->wh_static->elts : NULL;

    for (i = 0; store->wh_static && i < store->wh_static->nelts; i++) {
        if (spec[i].is_handler && spec[i].id.len == ep->id_len
            && ngx_strncmp(spec[i].id.data, ep->id, ep->id_len) == 0)
        {
            return spec[i].ctx;
        }
    }

    return NULL;
}


/* the event, as GET /events/{id} gives it, then the attempt */

static void
ngx_http_events_wh_start(ngx_http_events_wh_job_t *job)
{
    u_char                    *p;
    uint64_t                   last;
    ngx_int_t                  rc;
    ngx_http_events_ipc_t     *ipc;
    ngx_http_events_item_t     item;
    ngx_http_events_query_t    q;

    ipc = ngx_http_events_ipc();

    ngx_memzero(&q, sizeof(ngx_http_events_query_t));
    q.tenant = job->tenant;
    q.any_tenant = (job->tenant.len == 1 && job->tenant.data[0] == '*');
    q.since_ms = -1;
    q.until_ms = -1;

    rc = ngx_http_events_store_next(job->store, &q, job->seq - 1, 1,
                                    &ipc->scratch, &item, &last);

    if (rc != NGX_OK || item.seq != job->seq) {
        job->started_ms = ngx_http_events_wh_now();
        job->error = NGX_HTTP_EVENTS_E_EVICTED;
        job->detail_len = ngx_sprintf(job->detail, "event %uL left the "
                                      "ring before it was delivered",
                                      job->seq) - job->detail;
        ngx_http_events_wh_done(job);
        return;
    }

    p = ngx_pnalloc(job->pool, item.json.len + item.type.len + item.id.len
                               + item.tenant.len);
    if (p == NULL) {
        job->error = NGX_HTTP_EVENTS_E_INTERNAL;
        ngx_http_events_wh_done(job);
        return;
    }

    job->body.data = p;
    job->body.len = item.json.len;
    p = ngx_cpymem(p, item.json.data, item.json.len);

    job->type.data = p;
    job->type.len = item.type.len;
    p = ngx_cpymem(p, item.type.data, item.type.len);

    job->event_id.data = p;
    job->event_id.len = item.id.len;
    p = ngx_cpymem(p, item.id.data, item.id.len);

    /* the event's own tenant: a handler of every tenant tells it */
    job->event_tenant.data = p;
    job->event_tenant.len = item.tenant.len;
    ngx_memcpy(p, item.tenant.data, item.tenant.len);

    ngx_http_events_wh_send(job);
}


/* an attempt is over: log it, then retry, finish or give up */

static void
ngx_http_events_wh_done(ngx_http_events_wh_job_t *job)
{
    u_char                          buf[sizeof(ngx_http_events_wh_attempt_t)
                                        + 64];
    uint64_t                        now;
    ngx_http_events_store_t        *store;
    ngx_http_events_wh_sh_t        *wh;
    ngx_http_events_wh_attempt_t   *a;
    ngx_http_events_wh_endpoint_t  *ep;

    store = job->store;
    now = ngx_http_events_wh_now();

    a = (ngx_http_events_wh_attempt_t *) buf;
    ngx_memzero(a, sizeof(ngx_http_events_wh_attempt_t));

    ngx_shmtx_lock(&store->shpool->mutex);

    wh = store->wh;
    ep = ngx_http_events_wh_find(wh, &job->tenant, &job->endpoint);

    if (ep) {
        ngx_http_events_wh_outcome(store, wh, ep, job, now, a);
        ngx_http_events_wh_log(ep, job, a);
        wh->version++;
    }

    wh->attempts++;
    wh->errors[job->error]++;

    ngx_shmtx_unlock(&store->shpool->mutex);

    if (job->error != NGX_HTTP_EVENTS_E_NONE) {
        ngx_log_error(NGX_LOG_INFO, ngx_cycle->log, 0,
                      "events webhook \"%V\": attempt %ui of event %uL "
                      "failed: %s %*s", &job->endpoint, job->attempt,
                      job->seq, ngx_http_events_wh_errors[job->error],
                      job->detail_len, job->detail);
    }

    if (store->wh_inflight) {
        store->wh_inflight--;
    }

    ngx_destroy_pool(job->pool);

    /* a slot is free: more may be due */
    ngx_http_events_wh_wake(store);
}


static void
ngx_http_events_wh_outcome(ngx_http_events_store_t *store,
    ngx_http_events_wh_sh_t *wh, ngx_http_events_wh_endpoint_t *ep,
    ngx_http_events_wh_job_t *job, uint64_t now,
    ngx_http_events_wh_attempt_t *a)
{
    uint64_t                        pause;
    ngx_msec_t                      delay;
    ngx_uint_t                      nretry, final;
    ngx_queue_t                    *q;
    ngx_http_events_wh_conf_t      *whcf;
    ngx_http_events_wh_delivery_t  *d, *dd;

    whcf = store->whcf;
    ep->attempts++;

    d = NULL;

    for (q = ngx_queue_head(&ep->deliveries);
         q != ngx_queue_sentinel(&ep->deliveries);
         q = ngx_queue_next(q))
    {
        dd = ngx_queue_data(q, ngx_http_events_wh_delivery_t, queue);

        if (dd->seq == job->seq) {
            d = dd;
            break;
        }
    }

    if (d && (!job->queued || d->state != NGX_HTTP_EVENTS_WH_INFLIGHT
              || d->term != job->term))
    {
        /*
         * Not this attempt's delivery: a manual one, or one a new
         * dispatcher queued again.  A success still ends it, if it is
         * not being sent right now.
         */
        if (job->error == NGX_HTTP_EVENTS_E_NONE
            && d->state == NGX_HTTP_EVENTS_WH_QUEUED)
        {
            ngx_http_events_wh_dequeue(store, ep, d);
        }

        d = NULL;
    }

    /* the endpoint's state, whatever the delivery's */

    if (job->error == NGX_HTTP_EVENTS_E_NONE) {
        ep->ok++;
        wh->ok++;
        ep->last_success_ms = now;
        ep->failing_since_ms = 0;
        a->result = NGX_HTTP_EVENTS_WH_SUCCEEDED;

        if (d) {
            ngx_http_events_wh_dequeue(store, ep, d);
        }

        if (job->disable) {
            ngx_http_events_wh_disable(ep, NGX_HTTP_EVENTS_WH_RECEIVER, now);
        }

        return;
    }

    ep->last_failure_ms = now;
    ep->last_error = (u_char) job->error;

    if (ep->failing_since_ms == 0) {
        ep->failing_since_ms = now;
    }

    if (job->status == 410) {
        ngx_http_events_wh_disable(ep, NGX_HTTP_EVENTS_WH_GONE, now);

    } else if (job->disable) {
        ngx_http_events_wh_disable(ep, NGX_HTTP_EVENTS_WH_RECEIVER, now);
    }

    if (d == NULL) {
        a->result = NGX_HTTP_EVENTS_WH_FAILED_FINAL;
        return;
    }

    nretry = whcf->retry ? whcf->retry->nelts : 0;
    final = 0;

    if (job->error == NGX_HTTP_EVENTS_E_EVICTED) {
        a->result = NGX_HTTP_EVENTS_WH_EXPIRED;
        ep->expired++;
        wh->expired++;
        final = 1;

        /* a ring too small for the retry horizon: say so, not too often */
        if (ngx_current_msec - ngx_http_events_wh_expired_warned > 60000
            || ngx_http_events_wh_expired_warned == 0)
        {
            ngx_http_events_wh_expired_warned = ngx_current_msec;
            ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                          "events webhook \"%V\": event %uL left the ring "
                          "before it was delivered (%uL such deliveries "
                          "in zone \"%V\"); the ring is smaller than the "
                          "retry horizon", &job->endpoint, job->seq,
                          wh->expired, &store->name);
        }

    } else if (job->abort || job->status == 410 || job->disable) {
        a->result = job->abort ? NGX_HTTP_EVENTS_WH_ABORTED
                               : NGX_HTTP_EVENTS_WH_FAILED_FINAL;
        if (job->abort) {
            wh->aborted++;
            job->error = NGX_HTTP_EVENTS_E_ABORTED;
        }

        final = 1;

    } else if (d->attempts > nretry) {
        a->result = NGX_HTTP_EVENTS_WH_FAILED_FINAL;
        final = 1;
    }

    if (final) {
        if (a->result != NGX_HTTP_EVENTS_WH_EXPIRED) {
            ep->failed++;
            wh->failed++;
            ep->failed_seqs[ep->nfailed++ % NGX_HTTP_EVENTS_WH_FAILED] =
                                                                   d->seq;
        }

        ngx_http_events_wh_dequeue(store, ep, d);

        /* failing for long enough, with no success since: disabled */
        if (!ep->disabled && whcf->disable_after
            && now - ep->failing_since_ms >= whcf->disable_after)
        {
            ngx_http_events_wh_disable(ep, NGX_HTTP_EVENTS_WH_FAILING, now);
        }

        return;
    }

    delay = ngx_http_events_wh_jitter(
                ((ngx_msec_t *) whcf->retry->elts)[d->attempts - 1]);

    /* overloaded or slow: at least the penalty */
    if (job->status == 429 || job->status == 502 || job->status == 504
        || job->error == NGX_HTTP_EVENTS_E_TIMEOUT)
    {
        delay = ngx_max(delay, whcf->overload_delay);
    }

    /* throttled: the whole endpoint waits */
    if ((job->status == 429 || job->status == 503) && job->retry_after_ms) {
        pause = ngx_min(job->retry_after_ms,
                        (uint64_t) NGX_HTTP_EVENTS_WH_MAX_PAUSE);
        ep->paused_until_ms = now + pause;
        delay = ngx_max(delay, (ngx_msec_t) pause);
        a->retry_after_ms = now + pause;
    }

    d->state = NGX_HTTP_EVENTS_WH_QUEUED;
    d->next_ms = now + delay;

    if (ep->inflight) {
        ep->inflight--;
    }

    wh->retries++;
    a->result = NGX_HTTP_EVENTS_WH_RETRYING;
    a->next_ms = d->next_ms;
}


static void
ngx_http_events_wh_disable(ngx_http_events_wh_endpoint_t *ep,
    ngx_uint_t reason, uint64_t now)
{
    if (ep->disabled) {
        return;
    }

    ep->disabled = (u_char) reason;
    ep->disabled_ms = now;

    ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                  "events webhook \"%*s\" disabled (%s)", ep->id_len, ep->id,
                  ngx_http_events_wh_reasons[reason]);
}


static void
ngx_http_events_wh_log(ngx_http_events_wh_endpoint_t *ep,
    ngx_http_events_wh_job_t *job, ngx_http_events_wh_attempt_t *src)
{
    u_char                         id[NGX_HTTP_EVENTS_ID_LEN];
    ngx_http_events_ipc_t         *ipc;
    ngx_http_events_wh_attempt_t  *a;

    if (ep->log_size == 0) {
        return;
    }

    a = (ngx_http_events_wh_attempt_t *)
            (ep->log + (ep->log_next % ep->log_size) * ep->log_entry);

    ngx_memzero(a, offsetof(ngx_http_events_wh_attempt_t, excerpt));

    ipc = ngx_http_events_ipc();
    (void) ngx_http_events_id_generate(id, job->started_ms,
                                       ipc ? &ipc->rng : NULL);
    ngx_memcpy(a->aid, id + 4, 26);

    a->n = ++ep->log_next;
    a->seq = job->seq;
    a->started_ms = job->started_ms;
    a->next_ms = src->next_ms;
    a->retry_after_ms = src->retry_after_ms;
    a->duration_ms = job->started ? (uint32_t) (ngx_current_msec
                                                - job->started)
                                  : 0;
    a->http_status = (uint16_t) job->status;
    a->attempt = (u_char) ngx_min(job->attempt, 255);
    a->trigger = (u_char) job->trigger;
    a->result = src->result;
    a->error = (u_char) job->error;

    a->event_id_len = (u_char) ngx_min(job->event_id.len,
                                       NGX_HTTP_EVENTS_MAX_ID);
    ngx_memcpy(a->event_id, job->event_id.data, a->event_id_len);

    a->type_len = (u_char) ngx_min(job->type.len, NGX_HTTP_EVENTS_MAX_TYPE);
    ngx_memcpy(a->type, job->type.data, a->type_len);

    a->detail_len = (u_char) job->detail_len;
    ngx_memcpy(a->detail, job->detail, job->detail_len);

    a->ctype_len = (u_char) ngx_min(job->ctype.len, sizeof(a->ctype));
    ngx_memcpy(a->ctype, job->ctype.data, a->ctype_len);

    a->excerpt_len = (uint16_t) ngx_min(job->excerpt_len, ep->excerpt_size);
    ngx_memcpy(a->excerpt, job->excerpt, a->excerpt_len);
}


/* +-20% */

static ngx_msec_t
ngx_http_events_wh_jitter(ngx_msec_t delay)
{
    ngx_msec_t  span;

    span = delay / 5;

    if (span == 0) {
        return delay;
    }

    return delay - span + (ngx_msec_t) (ngx_random() % (2 * span + 1));
}


uint64_t
ngx_http_events_wh_now(void)
{
    ngx_time_t  *tp;

    tp = ngx_timeofday();

    return (uint64_t) tp->sec * 1000 + tp->msec;
}
