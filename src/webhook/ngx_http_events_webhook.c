
/*
 * Copyright (C) ngx_http_events_module authors
 */


/*
 * Webhook endpoints and their deliveries, in the events zone: what the
 * API and nginx.conf make of them (ngx_http_events_webhook_dispatch.c sends
 * them).
 *
 * An endpoint keeps a scan position in the ring: the dispatcher turns
 * the matching events after it into deliveries, at most a window of
 * them at a time, so the queue's memory is bounded and the ring stays
 * the one source of truth (an event still waiting to be scanned is
 * still in the ring).  A delivery is (seq, attempts, next time, state);
 * every attempt is written to the endpoint's log, a ring of fixed-size
 * entries, before the next one is scheduled.  Everything is under
 * shpool->mutex, the lock the master releases when a worker dies
 * holding it.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_events_store.h"
#include "ngx_http_events_json.h"
#include "ngx_http_events_webhook_shm.h"


static ngx_http_events_webhook_tenant_t *ngx_http_events_webhook_tenant(
    ngx_http_events_store_t *store, ngx_http_events_webhook_sh_t *wh,
    ngx_str_t *tenant);
static ngx_http_events_webhook_endpoint_t *ngx_http_events_webhook_locate(
    ngx_http_events_store_t *store, ngx_str_t *tenant, ngx_str_t *id);
static size_t ngx_http_events_webhook_view_size(
    ngx_http_events_webhook_endpoint_t *ep);
static void ngx_http_events_webhook_view(ngx_http_events_webhook_endpoint_t *ep,
    u_char *blob, ngx_http_events_webhook_view_t *view, uint64_t now);
static ngx_str_t ngx_http_events_webhook_str(
    ngx_http_events_webhook_endpoint_t *ep, ngx_http_events_webhook_str_t *s);
static ngx_int_t ngx_http_events_webhook_chunk(
    ngx_http_events_store_t *store, ngx_http_events_webhook_endpoint_t *ep);
static void ngx_http_events_webhook_skip(ngx_http_events_webhook_endpoint_t *ep,
    uint64_t from, uint64_t to);
static void ngx_http_events_webhook_verify_again(
    ngx_http_events_webhook_endpoint_t *ep);


static const char  *ngx_http_events_webhook_reasons[] = {
    "", "gone", "receiver", "failing", "manual", "verification"
};



/* the webhooks' part of the zone, made on first use */

ngx_http_events_webhook_sh_t *
ngx_http_events_webhook_shm(ngx_http_events_store_t *store)
{
    void                         **slot;
    ngx_http_events_webhook_sh_t  *wh;

    if (store->wh) {
        return store->wh;
    }

    slot = ngx_http_events_store_wh_slot(store);

    if (*slot == NULL) {
        wh = ngx_slab_calloc_locked(store->shpool,
                                    sizeof(ngx_http_events_webhook_sh_t));
        if (wh == NULL) {
            return NULL;
        }

        ngx_queue_init(&wh->endpoints);
        ngx_queue_init(&wh->tenants);
        *slot = wh;
    }

    store->wh = *slot;

    return store->wh;
}


/* master, at start and on reload: the nginx.conf endpoints */

ngx_int_t
ngx_http_events_webhook_init_zone(ngx_http_events_store_t *store,
    ngx_http_events_webhook_conf_t *whcf)
{
    ngx_int_t                            rc;
    ngx_uint_t                           i;
    ngx_queue_t                         *q, *next;
    ngx_http_events_webhook_sh_t        *wh;
    ngx_http_events_webhook_spec_t      *spec;
    ngx_http_events_webhook_endpoint_t  *ep;

    rc = NGX_OK;

    /* a new zone: what the last run left on disk, beside the journal */
    (void) ngx_http_events_webhook_state_load(store, ngx_cycle->log);

    ngx_shmtx_lock(&store->shpool->mutex);

    wh = ngx_http_events_webhook_shm(store);
    if (wh == NULL) {
        ngx_shmtx_unlock(&store->shpool->mutex);
        ngx_log_error(NGX_LOG_EMERG, ngx_cycle->log, 0,
                      "events zone \"%V\": no memory for webhooks",
                      &store->name);
        return NGX_ERROR;
    }

    for (q = ngx_queue_head(&wh->endpoints);
         q != ngx_queue_sentinel(&wh->endpoints);
         q = ngx_queue_next(q))
    {
        ep = ngx_queue_data(q, ngx_http_events_webhook_endpoint_t, queue);
        ep->seen = 0;
    }

    spec = store->wh_static ? store->wh_static->elts : NULL;

    for (i = 0; store->wh_static && i < store->wh_static->nelts; i++) {

        ep = ngx_http_events_webhook_find(wh, &spec[i].tenant, &spec[i].id);

        if (ep) {
            /* the same id keeps its queue and scan position */
            if (ngx_http_events_webhook_set(store, ep, &spec[i]) != NGX_OK) {
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

        if (ngx_http_events_webhook_create_locked(store, wh, &spec[i], whcf)
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
        ep = ngx_queue_data(q, ngx_http_events_webhook_endpoint_t, queue);

        if (ep->is_static && !ep->seen && rc == NGX_OK) {
            ngx_http_events_webhook_free(store, wh, ep);
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


/* a tenant's record, made with its first endpoint */

static ngx_http_events_webhook_tenant_t *
ngx_http_events_webhook_tenant(ngx_http_events_store_t *store,
    ngx_http_events_webhook_sh_t *wh, ngx_str_t *tenant)
{
    ngx_queue_t                       *q;
    ngx_http_events_webhook_tenant_t  *tn;

    for (q = ngx_queue_head(&wh->tenants);
         q != ngx_queue_sentinel(&wh->tenants);
         q = ngx_queue_next(q))
    {
        tn = ngx_queue_data(q, ngx_http_events_webhook_tenant_t, queue);

        if (tn->tenant_len == tenant->len
            && ngx_strncmp(tn->tenant, tenant->data, tenant->len) == 0)
        {
            return tn;
        }
    }

    tn = ngx_slab_calloc_locked(store->shpool,
                                sizeof(ngx_http_events_webhook_tenant_t));
    if (tn == NULL) {
        return NULL;
    }

    ngx_memcpy(tn->tenant, tenant->data, tenant->len);
    tn->tenant_len = (u_char) tenant->len;
    ngx_queue_init(&tn->endpoints);
    ngx_queue_insert_tail(&wh->tenants, &tn->queue);

    return tn;
}


/* endpoints */

/* the tenant's endpoint id, the zone locked by the caller */

static ngx_http_events_webhook_endpoint_t *
ngx_http_events_webhook_locate(ngx_http_events_store_t *store,
    ngx_str_t *tenant, ngx_str_t *id)
{
    ngx_http_events_webhook_sh_t  *wh;

    wh = ngx_http_events_webhook_shm(store);

    return wh ? ngx_http_events_webhook_find(wh, tenant, id) : NULL;
}


ngx_http_events_webhook_endpoint_t *
ngx_http_events_webhook_create_locked(ngx_http_events_store_t *store,
    ngx_http_events_webhook_sh_t *wh, ngx_http_events_webhook_spec_t *spec,
    ngx_http_events_webhook_conf_t *whcf)
{
    uint64_t                             now, head;
    ngx_http_events_webhook_endpoint_t  *ep;

    ep = ngx_slab_calloc_locked(store->shpool,
                                sizeof(ngx_http_events_webhook_endpoint_t));
    if (ep == NULL) {
        return NULL;
    }

    ep->log_size = (uint32_t) whcf->log_size;
    ep->excerpt_size = (uint32_t) whcf->excerpt_size;
    ep->log_entry = (uint32_t) ngx_align(
                        offsetof(ngx_http_events_webhook_attempt_t, excerpt)
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

    ngx_queue_init(&ep->free);

    ep->tn = ngx_http_events_webhook_tenant(store, wh, &spec->tenant);

    if (ngx_http_events_webhook_chunk(store, ep) != NGX_OK || ep->tn == NULL
        || ngx_http_events_webhook_set(store, ep, spec) != NGX_OK)
    {
        if (ep->tn && ep->tn->nendpoints == 0) {
            ngx_queue_remove(&ep->tn->queue);
            ngx_slab_free_locked(store->shpool, ep->tn);
        }

        if (ep->chunks) {
            ngx_slab_free_locked(store->shpool, ep->chunks);
        }

        if (ep->log) {
            ngx_slab_free_locked(store->shpool, ep->log);
        }

        ngx_slab_free_locked(store->shpool, ep);
        return NULL;
    }

    now = ngx_http_events_webhook_now();
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
    ngx_http_events_webhook_skip(ep, 0, head);

    ngx_queue_init(&ep->deliveries);
    ngx_queue_insert_tail(&wh->endpoints, &ep->queue);
    ngx_queue_insert_tail(&ep->tn->endpoints, &ep->tqueue);
    ep->tn->nendpoints++;
    wh->nendpoints++;
    wh->version++;

    return ep;
}


ngx_http_events_webhook_rc_e
ngx_http_events_webhook_create(ngx_http_events_store_t *store,
    ngx_http_events_webhook_spec_t *spec, ngx_uint_t max)
{
    ngx_uint_t                           n;
    ngx_queue_t                         *q;
    ngx_http_events_webhook_sh_t        *wh;
    ngx_http_events_webhook_rc_e         rc;
    ngx_http_events_webhook_endpoint_t  *ep;

    ngx_shmtx_lock(&store->shpool->mutex);

    wh = ngx_http_events_webhook_shm(store);
    if (wh == NULL) {
        rc = NGX_HTTP_EVENTS_WEBHOOK_ZONE_FULL;
        goto done;
    }

    n = 0;

    for (q = ngx_queue_head(&wh->endpoints);
         q != ngx_queue_sentinel(&wh->endpoints);
         q = ngx_queue_next(q))
    {
        ep = ngx_queue_data(q, ngx_http_events_webhook_endpoint_t, queue);

        if (ep->tenant_len == spec->tenant.len
            && ngx_strncmp(ep->tenant, spec->tenant.data, spec->tenant.len)
               == 0)
        {
            n++;
        }
    }

    if (n >= max) {
        rc = NGX_HTTP_EVENTS_WEBHOOK_LIMIT;
        goto done;
    }

    ep = ngx_http_events_webhook_create_locked(store, wh, spec, store->whcf);
    rc = ep ? NGX_HTTP_EVENTS_WEBHOOK_OK : NGX_HTTP_EVENTS_WEBHOOK_ZONE_FULL;

done:

    ngx_shmtx_unlock(&store->shpool->mutex);

    return rc;
}


ngx_http_events_webhook_rc_e
ngx_http_events_webhook_update(ngx_http_events_store_t *store,
    ngx_http_events_webhook_spec_t *spec)
{
    uint64_t                             now;
    ngx_http_events_webhook_rc_e         rc;
    ngx_http_events_webhook_spec_t       merged;
    ngx_http_events_webhook_endpoint_t  *ep;

    ngx_shmtx_lock(&store->shpool->mutex);

    ep = ngx_http_events_webhook_locate(store, &spec->tenant, &spec->id);

    if (ep == NULL) {
        rc = NGX_HTTP_EVENTS_WEBHOOK_NOT_FOUND;
        goto done;
    }

    if (ep->is_static) {
        rc = NGX_HTTP_EVENTS_WEBHOOK_STATIC;
        goto done;
    }

    ngx_http_events_webhook_merge(ep, spec, &merged);

    /* the old strings are in the blob being replaced: set copies first */
    if (ngx_http_events_webhook_set(store, ep, &merged) != NGX_OK) {
        rc = NGX_HTTP_EVENTS_WEBHOOK_ZONE_FULL;
        goto done;
    }

    now = ngx_http_events_webhook_now();

    if (spec->set_enabled) {
        ngx_http_events_webhook_enable(store, ep, spec->enabled, now);
    }

    ep->updated_ms = now;
    ngx_http_events_webhook_shm(store)->version++;
    rc = NGX_HTTP_EVENTS_WEBHOOK_OK;

done:

    ngx_shmtx_unlock(&store->shpool->mutex);

    return rc;
}


/* a metadata filter's value: 1-256 bytes of printable UTF-8, as lists */

ngx_int_t
ngx_http_events_webhook_meta_value_valid(ngx_str_t *value)
{
    size_t  i, n;

    if (value->len == 0 || value->len > NGX_HTTP_EVENTS_MAX_META_VALUE) {
        return NGX_ERROR;
    }

    for (i = 0; i < value->len; i += n) {
        n = ngx_http_events_json_utf8_len(value->data + i, value->len - i);
        if (n == 0 || (n == 1 && value->data[i] < 0x20)) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/*
 * An endpoint's metadata filters as a query takes them: the values
 * escaped as the envelope writer escapes strings
 */

ngx_int_t
ngx_http_events_webhook_meta_filters(ngx_http_events_webhook_spec_t *spec,
    ngx_pool_t *pool, ngx_http_events_query_t *q)
{
    u_char      *p;
    ngx_uint_t   i;

    q->nmeta = spec->nmeta;

    if (spec->nmeta == 0) {
        return NGX_OK;
    }

    q->meta = ngx_palloc(pool, spec->nmeta
                               * sizeof(ngx_http_events_meta_filter_t));
    if (q->meta == NULL) {
        return NGX_ERROR;
    }

    for (i = 0; i < spec->nmeta; i++) {
        p = ngx_pnalloc(pool,
                        ngx_http_events_json_escape_len(spec->mvalues[i].data,
                                                        spec->mvalues[i].len));
        if (p == NULL) {
            return NGX_ERROR;
        }

        q->meta[i].key = spec->mkeys[i];
        q->meta[i].value.data = p;
        q->meta[i].value.len = ngx_http_events_json_escape(p,
                                                  spec->mvalues[i].data,
                                                  spec->mvalues[i].len)
                               - p;
    }

    return NGX_OK;
}


/* what a PATCH leaves out stays as it is */

void
ngx_http_events_webhook_merge(ngx_http_events_webhook_endpoint_t *ep,
    ngx_http_events_webhook_spec_t *spec,
    ngx_http_events_webhook_spec_t *merged)
{
    ngx_uint_t  i;

    ngx_memzero(merged, sizeof(ngx_http_events_webhook_spec_t));

    merged->url = spec->set_url
                  ? spec->url : ngx_http_events_webhook_str(ep, &ep->url);
    merged->description = spec->set_description
                          ? spec->description
                          : ngx_http_events_webhook_str(ep,
                                                        &ep->description);

    if (spec->set_patterns) {
        merged->npatterns = spec->npatterns;
        for (i = 0; i < spec->npatterns; i++) {
            merged->patterns[i] = spec->patterns[i];
        }

    } else {
        merged->npatterns = ep->npatterns;
        for (i = 0; i < ep->npatterns; i++) {
            merged->patterns[i] = ngx_http_events_webhook_str(ep,
                                                          &ep->patterns[i]);
        }
    }

    if (spec->set_headers) {
        merged->nheaders = spec->nheaders;
        for (i = 0; i < spec->nheaders; i++) {
            merged->hnames[i] = spec->hnames[i];
            merged->hvalues[i] = spec->hvalues[i];
        }

    } else {
        merged->nheaders = ep->nheaders;
        for (i = 0; i < ep->nheaders; i++) {
            merged->hnames[i] = ngx_http_events_webhook_str(ep,
                                                            &ep->hnames[i]);
            merged->hvalues[i] = ngx_http_events_webhook_str(ep,
                                                           &ep->hvalues[i]);
        }
    }

    if (spec->set_meta) {
        merged->nmeta = spec->nmeta;
        for (i = 0; i < spec->nmeta; i++) {
            merged->mkeys[i] = spec->mkeys[i];
            merged->mvalues[i] = spec->mvalues[i];
        }

    } else {
        merged->nmeta = ep->nmeta;
        for (i = 0; i < ep->nmeta; i++) {
            merged->mkeys[i] = ngx_http_events_webhook_str(ep, &ep->mkeys[i]);
            merged->mvalues[i] = ngx_http_events_webhook_str(ep,
                                                           &ep->mvalues[i]);
        }
    }

    merged->rate_limit = spec->set_rate ? spec->rate_limit : ep->rate_limit;
    merged->format = spec->set_format ? spec->format : ep->format;
    merged->ordered = spec->set_ordered ? spec->ordered : ep->ordered;
    merged->max_inflight = spec->set_max_inflight ? spec->max_inflight
                                                  : ep->max_inflight;
    merged->verify = spec->set_verify ? spec->verify : ep->verify;
}


void
ngx_http_events_webhook_enable(ngx_http_events_store_t *store,
    ngx_http_events_webhook_endpoint_t *ep, ngx_uint_t enabled, uint64_t now)
{
    uint64_t  head;

    if (enabled && ep->disabled) {
        /* events while disabled are "missing"; the queue resumes */
        head = ngx_http_events_store_head(store);
        ngx_http_events_webhook_skip(ep, ep->scan_seq, head);
        ep->scan_seq = head;
        ep->disabled = 0;
        ep->disabled_ms = 0;
        ep->failing_since_ms = 0;
        ep->paused_until_ms = 0;

        if (ep->verify && ep->verify_state != NGX_HTTP_EVENTS_WH_VERIFY_OK) {
            /* a failed handshake is not given up on for good */
            ngx_http_events_webhook_verify_again(ep);
        }

        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "events webhook \"%*s\" enabled", ep->id_len, ep->id);

    } else if (!enabled && !ep->disabled) {
        ngx_http_events_webhook_disable(ep, NGX_HTTP_EVENTS_WH_MANUALLY, now);
    }
}


void
ngx_http_events_webhook_disable(ngx_http_events_webhook_endpoint_t *ep,
    ngx_uint_t reason, uint64_t now)
{
    if (ep->disabled) {
        return;
    }

    ep->disabled = (u_char) reason;
    ep->disabled_ms = now;

    ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                  "events webhook \"%*s\" disabled (%s)", ep->id_len, ep->id,
                  ngx_http_events_webhook_reasons[reason]);
}


ngx_http_events_webhook_rc_e
ngx_http_events_webhook_delete(ngx_http_events_store_t *store,
    ngx_str_t *tenant, ngx_str_t *id)
{
    ngx_http_events_webhook_rc_e         rc;
    ngx_http_events_webhook_endpoint_t  *ep;

    ngx_shmtx_lock(&store->shpool->mutex);

    ep = ngx_http_events_webhook_locate(store, tenant, id);

    if (ep == NULL) {
        rc = NGX_HTTP_EVENTS_WEBHOOK_NOT_FOUND;

    } else if (ep->is_static) {
        rc = NGX_HTTP_EVENTS_WEBHOOK_STATIC;

    } else {
        ngx_http_events_webhook_free(store, store->wh, ep);
        rc = NGX_HTTP_EVENTS_WEBHOOK_OK;
    }

    ngx_shmtx_unlock(&store->shpool->mutex);

    return rc;
}


ngx_http_events_webhook_rc_e
ngx_http_events_webhook_rotate(ngx_http_events_store_t *store,
    ngx_str_t *tenant, ngx_str_t *id, u_char *secret, size_t len,
    uint64_t grace_ms)
{
    uint64_t                             now;
    ngx_http_events_webhook_rc_e         rc;
    ngx_http_events_webhook_endpoint_t  *ep;

    ngx_shmtx_lock(&store->shpool->mutex);

    ep = ngx_http_events_webhook_locate(store, tenant, id);

    if (ep == NULL) {
        rc = NGX_HTTP_EVENTS_WEBHOOK_NOT_FOUND;
        goto done;
    }

    if (ep->is_static) {
        rc = NGX_HTTP_EVENTS_WEBHOOK_STATIC;
        goto done;
    }

    now = ngx_http_events_webhook_now();

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
    ngx_http_events_webhook_shm(store)->version++;
    rc = NGX_HTTP_EVENTS_WEBHOOK_OK;

done:

    ngx_shmtx_unlock(&store->shpool->mutex);

    return rc;
}


/*
 * An endpoint copied out: the copy's memory is taken before the lock,
 * sized by a look under the lock, and the look is repeated when the
 * endpoint grew meanwhile (a PATCH between the two).
 */

ngx_http_events_webhook_rc_e
ngx_http_events_webhook_get(ngx_http_events_store_t *store,
    ngx_str_t *tenant, ngx_str_t *id, ngx_pool_t *pool,
    ngx_http_events_webhook_view_t *view)
{
    u_char                              *buf;
    size_t                               size, need;
    uint64_t                             now;
    ngx_uint_t                           tries;
    ngx_http_events_webhook_endpoint_t  *ep;

    buf = NULL;
    size = 0;
    now = ngx_http_events_webhook_now();

    for (tries = 0; tries < 4; tries++) {

        ngx_shmtx_lock(&store->shpool->mutex);

        ep = ngx_http_events_webhook_locate(store, tenant, id);
        need = ep ? ngx_http_events_webhook_view_size(ep) : 0;

        if (ep && need <= size) {
            ngx_http_events_webhook_view(ep, buf, view, now);
        }

        ngx_shmtx_unlock(&store->shpool->mutex);

        if (ep == NULL) {
            return NGX_HTTP_EVENTS_WEBHOOK_NOT_FOUND;
        }

        if (need <= size) {
            return NGX_HTTP_EVENTS_WEBHOOK_OK;
        }

        size = need + 256;

        buf = ngx_pnalloc(pool, size);
        if (buf == NULL) {
            return NGX_HTTP_EVENTS_WEBHOOK_ERROR;
        }
    }

    return NGX_HTTP_EVENTS_WEBHOOK_ERROR;
}


ngx_http_events_webhook_rc_e
ngx_http_events_webhook_list(ngx_http_events_store_t *store,
    ngx_str_t *tenant, ngx_pool_t *pool, ngx_array_t *views)
{
    u_char                              *buf, *p;
    size_t                               size, need;
    uint64_t                             now;
    ngx_uint_t                           tries, n, fits;
    ngx_queue_t                         *q;
    ngx_http_events_webhook_sh_t        *wh;
    ngx_http_events_webhook_view_t      *view;
    ngx_http_events_webhook_endpoint_t  *ep;

    buf = NULL;
    size = 0;
    now = ngx_http_events_webhook_now();

    for (tries = 0; tries < 4; tries++) {

        ngx_shmtx_lock(&store->shpool->mutex);

        wh = ngx_http_events_webhook_shm(store);
        need = 0;
        n = 0;

        for (q = wh ? ngx_queue_head(&wh->endpoints) : NULL;
             q && q != ngx_queue_sentinel(&wh->endpoints);
             q = ngx_queue_next(q))
        {
            ep = ngx_queue_data(q, ngx_http_events_webhook_endpoint_t, queue);

            if (ep->tenant_len == tenant->len
                && ngx_strncmp(ep->tenant, tenant->data, tenant->len) == 0)
            {
                need += ngx_http_events_webhook_view_size(ep);
                n++;
            }
        }

        fits = (need <= size && n <= views->nalloc);
        p = buf;

        for (q = (wh && fits) ? ngx_queue_head(&wh->endpoints) : NULL;
             q && q != ngx_queue_sentinel(&wh->endpoints);
             q = ngx_queue_next(q))
        {
            ep = ngx_queue_data(q, ngx_http_events_webhook_endpoint_t, queue);

            if (ep->tenant_len != tenant->len
                || ngx_strncmp(ep->tenant, tenant->data, tenant->len) != 0)
            {
                continue;
            }

            /* within nalloc: the array does not grow under the lock */
            view = ngx_array_push(views);
            ngx_http_events_webhook_view(ep, p, view, now);
            p += ngx_http_events_webhook_view_size(ep);
        }

        ngx_shmtx_unlock(&store->shpool->mutex);

        if (fits) {
            return NGX_HTTP_EVENTS_WEBHOOK_OK;
        }

        size = need + 256;

        buf = ngx_pnalloc(pool, size);
        if (buf == NULL) {
            return NGX_HTTP_EVENTS_WEBHOOK_ERROR;
        }

        if (n > views->nalloc
            && ngx_array_init(views, pool, n + 4,
                              sizeof(ngx_http_events_webhook_view_t))
               != NGX_OK)
        {
            return NGX_HTTP_EVENTS_WEBHOOK_ERROR;
        }
    }

    return NGX_HTTP_EVENTS_WEBHOOK_ERROR;
}


/*
 * The attempt log, newest first, below the cursor "before" (0: none),
 * into out, whose room (nalloc) was made before: nothing is allocated
 * under the lock.
 */

ngx_http_events_webhook_rc_e
ngx_http_events_webhook_attempts(ngx_http_events_store_t *store,
    ngx_str_t *tenant, ngx_str_t *id, uint64_t before, ngx_array_t *out)
{
    size_t                               room;
    uint64_t                             n, oldest;
    ngx_http_events_webhook_rc_e         rc;
    ngx_http_events_webhook_attempt_t   *a, *copy;
    ngx_http_events_webhook_endpoint_t  *ep;

    rc = NGX_HTTP_EVENTS_WEBHOOK_OK;
    room = out->size - offsetof(ngx_http_events_webhook_attempt_t, excerpt);

    ngx_shmtx_lock(&store->shpool->mutex);

    ep = ngx_http_events_webhook_locate(store, tenant, id);

    if (ep == NULL) {
        rc = NGX_HTTP_EVENTS_WEBHOOK_NOT_FOUND;
        goto done;
    }

    oldest = ep->log_next > ep->log_size ? ep->log_next - ep->log_size : 0;
    /* the entry at index i is attempt n = i + 1 */
    n = (before && before <= ep->log_next) ? before - 1 : ep->log_next;

    while (n > oldest && out->nelts < out->nalloc) {
        n--;

        a = (ngx_http_events_webhook_attempt_t *)
                (ep->log + (n % ep->log_size) * ep->log_entry);

        if (a->n != n + 1) {
            /* never written: the log was restored with fewer */
            break;
        }

        copy = ngx_array_push(out);

        /* the entry may be of another size, from before a reload */
        if (out->size > ep->log_entry) {
            ngx_memzero(copy, out->size);
        }

        ngx_memcpy(copy, a, ngx_min(out->size, ep->log_entry));

        if (copy->excerpt_len > room) {
            copy->excerpt_len = (uint16_t) room;
        }
    }

done:

    ngx_shmtx_unlock(&store->shpool->mutex);

    return rc;
}


ngx_http_events_webhook_rc_e
ngx_http_events_webhook_attempt(ngx_http_events_store_t *store,
    ngx_str_t *tenant, ngx_str_t *id, uint64_t seq,
    ngx_http_events_webhook_delivery_t *d)
{
    ngx_queue_t                         *q;
    ngx_http_events_webhook_rc_e         rc;
    ngx_http_events_webhook_delivery_t  *dd;
    ngx_http_events_webhook_endpoint_t  *ep;

    rc = NGX_HTTP_EVENTS_WEBHOOK_NO_DELIVERY;

    ngx_shmtx_lock(&store->shpool->mutex);

    ep = ngx_http_events_webhook_locate(store, tenant, id);

    if (ep == NULL) {
        rc = NGX_HTTP_EVENTS_WEBHOOK_NOT_FOUND;
        goto done;
    }

    for (q = ngx_queue_head(&ep->deliveries);
         q != ngx_queue_sentinel(&ep->deliveries);
         q = ngx_queue_next(q))
    {
        dd = ngx_queue_data(q, ngx_http_events_webhook_delivery_t, queue);

        if (dd->seq == seq) {
            *d = *dd;
            rc = NGX_HTTP_EVENTS_WEBHOOK_OK;
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

ngx_http_events_webhook_rc_e
ngx_http_events_webhook_replay(ngx_http_events_store_t *store,
    ngx_str_t *tenant, ngx_str_t *id, ngx_uint_t mode, uint64_t after,
    uint64_t to, ngx_uint_t count)
{
    uint64_t                             now, seq;
    ngx_uint_t                           i, n, want;
    ngx_http_events_webhook_rc_e         rc;
    ngx_http_events_webhook_endpoint_t  *ep;

    ngx_shmtx_lock(&store->shpool->mutex);

    ep = ngx_http_events_webhook_locate(store, tenant, id);

    if (ep == NULL) {
        rc = NGX_HTTP_EVENTS_WEBHOOK_NOT_FOUND;
        goto done;
    }

    if (ep->replay_mode) {
        rc = NGX_HTTP_EVENTS_WEBHOOK_BUSY;
        goto done;
    }

    rc = NGX_HTTP_EVENTS_WEBHOOK_OK;

    if (mode == 2) {
        now = ngx_http_events_webhook_now();
        n = ngx_min(ep->nfailed, NGX_HTTP_EVENTS_WH_FAILED);

        /* all of them, or none: what is in the window must fit */
        for (i = 0, want = 0; i < n; i++) {
            seq = ep->failed_seqs[i];
            want += (seq > after && seq <= to);
        }

        if (want > NGX_HTTP_EVENTS_WH_WINDOW - ep->pending) {
            rc = NGX_HTTP_EVENTS_WEBHOOK_QUEUE_FULL;
            goto done;
        }

        for (i = 0; i < n; i++) {
            seq = ep->failed_seqs[(ep->nfailed - n + i)
                                  % NGX_HTTP_EVENTS_WH_FAILED];

            if (seq > after && seq <= to
                && ngx_http_events_webhook_queue(store, ep, seq,
                                                 NGX_HTTP_EVENTS_WH_REPLAY,
                                                 now)
                   == NULL)
            {
                rc = NGX_HTTP_EVENTS_WEBHOOK_ZONE_FULL;
                break;
            }
        }

        goto done;
    }

    ep->replay_mode = (u_char) mode;
    ep->replay_after = after;
    ep->replay_to = to;
    ep->replay_left = (uint32_t) count;
    ngx_http_events_webhook_shm(store)->version++;

done:

    ngx_shmtx_unlock(&store->shpool->mutex);

    return rc;
}


/* whether seq is one a "failed" (mode 2) or "missing" (3) replay takes */

ngx_uint_t
ngx_http_events_webhook_was_failed(ngx_http_events_store_t *store,
    ngx_str_t *tenant, ngx_str_t *id, uint64_t seq, ngx_uint_t mode)
{
    ngx_uint_t                           i, n, found;
    ngx_http_events_webhook_endpoint_t  *ep;

    found = 0;

    ngx_shmtx_lock(&store->shpool->mutex);

    ep = ngx_http_events_webhook_locate(store, tenant, id);

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


void
ngx_http_events_webhook_stats(ngx_http_events_store_t *store,
    ngx_http_events_webhook_stats_t *st)
{
    uint64_t                             now;
    ngx_queue_t                         *q, *dq;
    ngx_http_events_webhook_sh_t        *wh;
    ngx_http_events_webhook_delivery_t  *d;
    ngx_http_events_webhook_endpoint_t  *ep;

    ngx_memzero(st, sizeof(ngx_http_events_webhook_stats_t));

    now = ngx_http_events_webhook_now();

    ngx_shmtx_lock(&store->shpool->mutex);

    wh = ngx_http_events_webhook_shm(store);

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
        ep = ngx_queue_data(q, ngx_http_events_webhook_endpoint_t, queue);

        st->endpoints++;
        st->disabled += ep->disabled ? 1 : 0;
        st->inflight += ep->inflight;
        st->pending += ep->pending;

        for (dq = ngx_queue_head(&ep->deliveries);
             dq != ngx_queue_sentinel(&ep->deliveries);
             dq = ngx_queue_next(dq))
        {
            d = ngx_queue_data(dq, ngx_http_events_webhook_delivery_t, queue);

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
ngx_http_events_webhook_secret(ngx_str_t *text, u_char *out, size_t *len)
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

ngx_http_events_webhook_endpoint_t *
ngx_http_events_webhook_find(ngx_http_events_webhook_sh_t *wh,
    ngx_str_t *tenant, ngx_str_t *id)
{
    ngx_queue_t                         *q;
    ngx_http_events_webhook_endpoint_t  *ep;

    for (q = ngx_queue_head(&wh->endpoints);
         q != ngx_queue_sentinel(&wh->endpoints);
         q = ngx_queue_next(q))
    {
        ep = ngx_queue_data(q, ngx_http_events_webhook_endpoint_t, queue);

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
ngx_http_events_webhook_str(ngx_http_events_webhook_endpoint_t *ep,
    ngx_http_events_webhook_str_t *s)
{
    ngx_str_t  str;

    str.data = ep->blob + s->off;
    str.len = s->len;

    return str;
}


static u_char *
ngx_http_events_webhook_put(u_char *start, u_char *p, ngx_str_t *s,
    ngx_http_events_webhook_str_t *ws)
{
    ws->off = (uint32_t) (p - start);
    ws->len = (uint32_t) s->len;

    return ngx_cpymem(p, s->data, s->len);
}


ngx_int_t
ngx_http_events_webhook_set(ngx_http_events_store_t *store,
    ngx_http_events_webhook_endpoint_t *ep,
    ngx_http_events_webhook_spec_t *spec)
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

    for (i = 0; i < spec->nmeta; i++) {
        len += spec->mkeys[i].len + spec->mvalues[i].len;
    }

    blob = ngx_slab_alloc_locked(store->shpool, len ? len : 1);
    if (blob == NULL) {
        return NGX_ERROR;
    }

    p = blob;
    p = ngx_http_events_webhook_put(blob, p, &spec->url, &ep->url);
    p = ngx_http_events_webhook_put(blob, p, &spec->description,
                                    &ep->description);

    for (i = 0; i < spec->npatterns; i++) {
        p = ngx_http_events_webhook_put(blob, p, &spec->patterns[i],
                                        &ep->patterns[i]);
    }

    for (i = 0; i < spec->nheaders; i++) {
        p = ngx_http_events_webhook_put(blob, p, &spec->hnames[i],
                                        &ep->hnames[i]);
        p = ngx_http_events_webhook_put(blob, p, &spec->hvalues[i],
                                        &ep->hvalues[i]);
    }

    for (i = 0; i < spec->nmeta; i++) {
        p = ngx_http_events_webhook_put(blob, p, &spec->mkeys[i],
                                        &ep->mkeys[i]);
        p = ngx_http_events_webhook_put(blob, p, &spec->mvalues[i],
                                        &ep->mvalues[i]);
    }

    /* a new url, or the handshake just asked for: it is made (again) */
    if (spec->verify
        && (!ep->verify || ep->blob == NULL || spec->url.len != ep->url.len
            || ngx_memcmp(spec->url.data, ep->blob + ep->url.off,
                          spec->url.len)
               != 0))
    {
        ngx_http_events_webhook_verify_again(ep);
    }

    ep->verify = (u_char) spec->verify;

    ep->npatterns = (u_char) spec->npatterns;
    ep->nheaders = (u_char) spec->nheaders;
    ep->nmeta = (u_char) spec->nmeta;
    ep->rate_limit = (uint32_t) spec->rate_limit;
    ep->format = (u_char) spec->format;
    ep->ordered = spec->ordered;
    ep->max_inflight = (uint32_t) spec->max_inflight;

    if (ep->blob) {
        ngx_slab_free_locked(store->shpool, ep->blob);
    }

    ep->blob = blob;
    ep->blob_len = len;

    return NGX_OK;
}


void
ngx_http_events_webhook_free(ngx_http_events_store_t *store,
    ngx_http_events_webhook_sh_t *wh, ngx_http_events_webhook_endpoint_t *ep)
{
    ngx_http_events_webhook_chunk_t     *chunk;
    ngx_queue_t                         *q;
    ngx_http_events_webhook_delivery_t  *d;

    while (!ngx_queue_empty(&ep->deliveries)) {
        q = ngx_queue_head(&ep->deliveries);
        d = ngx_queue_data(q, ngx_http_events_webhook_delivery_t, queue);
        ngx_http_events_webhook_dequeue(store, ep, d);
    }

    ngx_queue_remove(&ep->queue);
    ngx_queue_remove(&ep->tqueue);
    wh->nendpoints--;
    wh->version++;

    if (--ep->tn->nendpoints == 0) {
        ngx_queue_remove(&ep->tn->queue);
        ngx_slab_free_locked(store->shpool, ep->tn);
    }

    if (ep->log) {
        ngx_slab_free_locked(store->shpool, ep->log);
    }

    if (ep->blob) {
        ngx_slab_free_locked(store->shpool, ep->blob);
    }

    while (ep->chunks) {
        chunk = ep->chunks;
        ep->chunks = chunk->next;
        ngx_slab_free_locked(store->shpool, chunk);
    }

    ngx_slab_free_locked(store->shpool, ep);
}


/* what a view copies: the blob, the id and the tenant */

static size_t
ngx_http_events_webhook_view_size(ngx_http_events_webhook_endpoint_t *ep)
{
    return ep->blob_len + ep->id_len + ep->tenant_len + 1;
}


static void
ngx_http_events_webhook_view(ngx_http_events_webhook_endpoint_t *ep,
    u_char *blob, ngx_http_events_webhook_view_t *view, uint64_t now)
{
    ngx_uint_t                           i;
    ngx_queue_t                         *q;
    ngx_http_events_webhook_spec_t      *spec;
    ngx_http_events_webhook_delivery_t  *d;

    ngx_memzero(view, sizeof(ngx_http_events_webhook_view_t));

    spec = &view->spec;

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

    spec->nmeta = ep->nmeta;

    for (i = 0; i < ep->nmeta; i++) {
        spec->mkeys[i].data = blob + ep->mkeys[i].off;
        spec->mkeys[i].len = ep->mkeys[i].len;
        spec->mvalues[i].data = blob + ep->mvalues[i].off;
        spec->mvalues[i].len = ep->mvalues[i].len;
    }

    ngx_memcpy(spec->secret, ep->secret, ep->secret_len);
    spec->secret_len = ep->secret_len;

    if (ep->previous_len && ep->previous_expires_ms > now) {
        ngx_memcpy(spec->previous, ep->previous, ep->previous_len);
        spec->previous_len = ep->previous_len;
        view->previous_expires_ms = ep->previous_expires_ms;
    }

    spec->rate_limit = ep->rate_limit;
    spec->format = ep->format;
    spec->ordered = ep->ordered;
    spec->max_inflight = ep->max_inflight;
    spec->verify = ep->verify;
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

    view->verify_state = ep->verify_state;
    view->verify_attempts = ep->verify_attempts;
    view->verify_error = ep->verify_error;
    view->verify_status = ep->verify_status;
    view->allowed_rate = ep->allowed_rate;
    view->verify_at_ms = ep->verify_at_ms;
    view->verify_next_ms = ep->verify_next_ms;
    view->verify_detail_len = ep->verify_detail_len;
    ngx_memcpy(view->verify_detail, ep->verify_detail, ep->verify_detail_len);

    for (q = ngx_queue_head(&ep->deliveries);
         q != ngx_queue_sentinel(&ep->deliveries);
         q = ngx_queue_next(q))
    {
        d = ngx_queue_data(q, ngx_http_events_webhook_delivery_t, queue);

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


/*
 * The handshake is to be made from the start: its deliveries wait for
 * it, and the answer of one still in flight is not taken (verify_gen).
 */

static void
ngx_http_events_webhook_verify_again(ngx_http_events_webhook_endpoint_t *ep)
{
    ep->verify_gen++;
    ep->verify_state = NGX_HTTP_EVENTS_WH_VERIFY_PENDING;
    ep->verify_busy = 0;
    ep->verify_error = 0;
    ep->verify_attempts = 0;
    ep->verify_status = 0;
    ep->verify_next_ms = 0;
    ep->verify_detail_len = 0;
    ep->allowed_rate = 0;
}


/* a range of seqs never delivered: merged into the last, or the oldest
 * one dropped when there are too many (then "missing" forgets them) */

static void
ngx_http_events_webhook_skip(ngx_http_events_webhook_endpoint_t *ep,
    uint64_t from, uint64_t to)
{
    ngx_http_events_webhook_skip_t  *last;

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
                    * sizeof(ngx_http_events_webhook_skip_t));
        ep->nskips--;
    }

    ep->skips[ep->nskips].from = from;
    ep->skips[ep->nskips].to = to;
    ep->nskips++;
}


/*
 * Another chunk of an endpoint's delivery records.  When the zone has
 * no room, the endpoint goes on with the chunks it has (its first is
 * made with it), and the scan waits: once a minute the log says so.
 */

static ngx_int_t
ngx_http_events_webhook_chunk(ngx_http_events_store_t *store,
    ngx_http_events_webhook_endpoint_t *ep)
{
    ngx_uint_t                        i;
    ngx_http_events_webhook_chunk_t  *chunk;

    chunk = ngx_slab_calloc_locked(store->shpool,
                                   sizeof(ngx_http_events_webhook_chunk_t));

    if (chunk == NULL) {
        if (ep->chunks
            && (ngx_current_msec - store->wh->chunk_warned > 60000
                || store->wh->chunk_warned == 0))
        {
            store->wh->chunk_warned = ngx_current_msec;
            ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                          "events webhook \"%*s\": no room in zone \"%V\" "
                          "for more than %ui waiting deliveries; the next "
                          "events wait in the ring", ep->id_len, ep->id,
                          &store->name, ep->pending);
        }

        return NGX_ERROR;
    }

    for (i = 0; i < NGX_HTTP_EVENTS_WH_CHUNK; i++) {
        ngx_queue_insert_tail(&ep->free, &chunk->deliveries[i].queue);
    }

    chunk->next = ep->chunks;
    ep->chunks = chunk;
    ep->nchunks++;

    return NGX_OK;
}


/*
 * Deliveries: a queue per endpoint, in the order they were made, from
 * the endpoint's own window of them; NULL when the window is full.
 */

ngx_http_events_webhook_delivery_t *
ngx_http_events_webhook_queue(ngx_http_events_store_t *store,
    ngx_http_events_webhook_endpoint_t *ep, uint64_t seq, ngx_uint_t trigger,
    uint64_t now)
{
    ngx_queue_t                         *q;
    ngx_http_events_webhook_delivery_t  *d;

    /* an event waits once per endpoint, whatever queued it */
    for (q = ngx_queue_head(&ep->deliveries);
         q != ngx_queue_sentinel(&ep->deliveries);
         q = ngx_queue_next(q))
    {
        d = ngx_queue_data(q, ngx_http_events_webhook_delivery_t, queue);

        if (d->seq == seq) {
            return d;
        }
    }

    if (ngx_queue_empty(&ep->free)
        && (ep->pending >= NGX_HTTP_EVENTS_WH_WINDOW
            || ngx_http_events_webhook_chunk(store, ep) != NGX_OK))
    {
        return NULL;
    }

    q = ngx_queue_head(&ep->free);
    ngx_queue_remove(q);

    d = ngx_queue_data(q, ngx_http_events_webhook_delivery_t, queue);
    ngx_memzero(d, sizeof(ngx_http_events_webhook_delivery_t));

    d->seq = seq;
    d->next_ms = now;
    d->created_ms = now;
    d->trigger = (u_char) trigger;
    d->state = NGX_HTTP_EVENTS_WH_QUEUED;

    ngx_queue_insert_tail(&ep->deliveries, &d->queue);
    ep->pending++;

    return d;
}


void
ngx_http_events_webhook_dequeue(ngx_http_events_store_t *store,
    ngx_http_events_webhook_endpoint_t *ep,
    ngx_http_events_webhook_delivery_t *d)
{
    if (d->state == NGX_HTTP_EVENTS_WH_INFLIGHT && ep->inflight) {
        ep->inflight--;
    }

    ngx_queue_remove(&d->queue);
    ep->pending--;
    ngx_queue_insert_head(&ep->free, &d->queue);
}


uint64_t
ngx_http_events_webhook_now(void)
{
    ngx_time_t  *tp;

    tp = ngx_timeofday();

    return (uint64_t) tp->sec * 1000 + tp->msec;
}
