
/*
 * Copyright (C) ngx_http_events_module authors
 */


/*
 * The webhook dispatcher: one worker at a time turns events into
 * deliveries and sends the due ones (ngx_http_events_webhook_delivery.c makes
 * each attempt a subrequest), then decides what an answer means.
 *
 * The worker holds a lease in the zone, renewed on a timer: another
 * takes over when it expires or its owner is gone, with a new term, and
 * sends again whatever the old term had in flight (at least once).
 * New events wake it through the doorbell streams use.
 *
 * On a cluster's zone every node's dispatcher finds the same deliveries:
 * each delivery is claimed through the zone's remote before an attempt
 * (one node at a time attempts it), deferred while another node holds
 * it, dropped when another node ended it, and settled after the attempt.
 *
 * An endpoint with "verify": "cloudevents" gets the handshake first (a
 * job of its own, no event): its deliveries are queued as usual but none
 * is due until the receiver allowed us, and its allowed rate then limits
 * them with rateLimit.  A failed handshake is retried on the retry
 * schedule; when that runs out the endpoint is disabled ("verification"),
 * its deliveries still queued.  Each node of a cluster makes its own.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_events_module.h"
#include "ngx_http_events_store.h"
#include "ngx_http_events_json.h"
#include "ngx_http_events_webhook_shm.h"
#include "ngx_http_events_cursor.h"
#include "ngx_http_events_id.h"
#include "ngx_http_events_ipc.h"


#define NGX_HTTP_EVENTS_WH_TICK         250
#define NGX_HTTP_EVENTS_WH_LEASE        2000
#define NGX_HTTP_EVENTS_WH_SCAN         4096    /* records per endpoint scan */
#define NGX_HTTP_EVENTS_WH_MAX_PAUSE    (10 * 3600 * 1000)
#define NGX_HTTP_EVENTS_WH_CLAIM_AGAIN  1000    /* a cluster's log: away */


/* what the dispatcher copies out of an endpoint to scan the ring */
typedef struct ngx_http_events_webhook_scan_s {
    ngx_str_t                       id;
    ngx_http_events_query_t         q;
    uint64_t                        scan_seq;
    uint64_t                        replay_after;
    uint64_t                        replay_to;
    ngx_uint_t                      replay_mode;
    ngx_uint_t                      want;
    ngx_http_events_webhook_skip_t  skips[NGX_HTTP_EVENTS_WH_SKIPS];
    ngx_uint_t                      nskips;
    uint64_t                        scanned;        /* live scan got to */
    uint64_t                        replayed;       /* replay scan got to */
    unsigned                        lost:1;         /* the ring moved past */
    ngx_uint_t                      nlive;
    ngx_uint_t                      nreplay;

    /* what was found: nlive live seqs, then nreplay replayed ones */
    uint64_t                        seqs[NGX_HTTP_EVENTS_WH_WINDOW];
} ngx_http_events_webhook_scan_t;


static void ngx_http_events_webhook_dispatch_tick(ngx_event_t *ev);
static void ngx_http_events_webhook_dispatch_kick(ngx_event_t *ev);
static void ngx_http_events_webhook_dispatch_lease(
    ngx_http_events_store_t *store);
static void ngx_http_events_webhook_dispatch_dispatch(
    ngx_http_events_store_t *store);
static ngx_uint_t ngx_http_events_webhook_dispatch_copy(
    ngx_http_events_store_t *store);
static size_t ngx_http_events_webhook_dispatch_copy_size(
    ngx_http_events_webhook_endpoint_t *ep);
static u_char *ngx_http_events_webhook_dispatch_copy_one(
    ngx_http_events_webhook_endpoint_t *ep, ngx_http_events_webhook_scan_t *sc,
    u_char *p);
static ngx_int_t ngx_http_events_webhook_dispatch_grow(
    ngx_http_events_webhook_jobs_t *jobs, ngx_uint_t n, size_t size);
static ngx_uint_t ngx_http_events_webhook_dispatch_found(
    ngx_http_events_store_t *store, ngx_http_events_webhook_sh_t *wh,
    ngx_http_events_webhook_scan_t *sc, uint64_t now);
static void ngx_http_events_webhook_dispatch_due(ngx_http_events_store_t *store,
    ngx_http_events_webhook_sh_t *wh, ngx_uint_t cap, uint64_t now,
    ngx_queue_t *started);
static ngx_http_events_webhook_job_t *ngx_http_events_webhook_dispatch_next(
    ngx_http_events_store_t *store, ngx_http_events_webhook_sh_t *wh,
    ngx_http_events_webhook_tenant_t *tn, uint64_t now);
static void ngx_http_events_webhook_dispatch_scan(
    ngx_http_events_store_t *store, ngx_http_events_webhook_scan_t *sc,
    ngx_http_events_scratch_t *scratch);
static ngx_uint_t ngx_http_events_webhook_dispatch_reserve(
    ngx_http_events_store_t *store, ngx_uint_t n);
static ngx_http_events_webhook_delivery_t *
    ngx_http_events_webhook_dispatch_first(
    ngx_http_events_webhook_endpoint_t *ep);
static ngx_http_events_webhook_job_t *ngx_http_events_webhook_dispatch_take(
    ngx_http_events_store_t *store, ngx_http_events_webhook_endpoint_t *ep);
static void ngx_http_events_webhook_dispatch_give(
    ngx_http_events_webhook_job_t *job);
static ngx_int_t ngx_http_events_webhook_dispatch_pool(
    ngx_http_events_webhook_job_t *job);
static void ngx_http_events_webhook_dispatch_start(
    ngx_http_events_webhook_job_t *job);
static void ngx_http_events_webhook_dispatch_claimed(void *ctx, ngx_int_t rc,
    ngx_msec_t wait, void *hold);
static void ngx_http_events_webhook_dispatch_defer(
    ngx_http_events_webhook_job_t *job, ngx_msec_t wait, ngx_uint_t ended);
static void ngx_http_events_webhook_dispatch_lost(
    ngx_http_events_webhook_job_t *job);
static void ngx_http_events_webhook_dispatch_fstate(
    ngx_http_events_webhook_endpoint_t *ep,
    ngx_http_events_webhook_fstate_t *st);
static void ngx_http_events_webhook_dispatch_settle(
    ngx_http_events_webhook_job_t *job, ngx_uint_t found,
    ngx_http_events_webhook_attempt_t *a, uint64_t now);
static void *ngx_http_events_webhook_dispatch_handler_ctx(
    ngx_http_events_store_t *store, ngx_http_events_webhook_endpoint_t *ep);
static void ngx_http_events_webhook_dispatch_done(
    ngx_http_events_webhook_job_t *job);
static void ngx_http_events_webhook_dispatch_outcome(
    ngx_http_events_store_t *store, ngx_http_events_webhook_sh_t *wh,
    ngx_http_events_webhook_endpoint_t *ep, ngx_http_events_webhook_job_t *job,
    uint64_t now, ngx_http_events_webhook_attempt_t *a);
static ngx_http_events_webhook_delivery_t *
    ngx_http_events_webhook_dispatch_delivery(ngx_http_events_store_t *store,
    ngx_http_events_webhook_endpoint_t *ep,
    ngx_http_events_webhook_job_t *job);
static ngx_uint_t ngx_http_events_webhook_dispatch_final(
    ngx_http_events_store_t *store, ngx_http_events_webhook_sh_t *wh,
    ngx_http_events_webhook_endpoint_t *ep,
    ngx_http_events_webhook_delivery_t *d, ngx_http_events_webhook_job_t *job,
    uint64_t now, ngx_http_events_webhook_attempt_t *a);
static void ngx_http_events_webhook_dispatch_expired(
    ngx_http_events_store_t *store, ngx_http_events_webhook_sh_t *wh,
    ngx_http_events_webhook_job_t *job);
static void ngx_http_events_webhook_dispatch_retry(
    ngx_http_events_store_t *store, ngx_http_events_webhook_sh_t *wh,
    ngx_http_events_webhook_endpoint_t *ep,
    ngx_http_events_webhook_delivery_t *d, ngx_http_events_webhook_job_t *job,
    uint64_t now, ngx_http_events_webhook_attempt_t *a);
static void ngx_http_events_webhook_dispatch_log(
    ngx_http_events_webhook_endpoint_t *ep, ngx_http_events_webhook_job_t *job,
    ngx_http_events_webhook_attempt_t *a);
static ngx_http_events_webhook_job_t *ngx_http_events_webhook_dispatch_verify(
    ngx_http_events_store_t *store, ngx_http_events_webhook_sh_t *wh,
    ngx_http_events_webhook_tenant_t *tn,
    ngx_http_events_webhook_endpoint_t *ep);
static void ngx_http_events_webhook_dispatch_verified(
    ngx_http_events_webhook_job_t *job);
static void ngx_http_events_webhook_dispatch_verify_outcome(
    ngx_http_events_store_t *store, ngx_http_events_webhook_endpoint_t *ep,
    ngx_http_events_webhook_job_t *job, uint64_t now);
static ngx_msec_t ngx_http_events_webhook_dispatch_interval(
    ngx_http_events_webhook_endpoint_t *ep);
static size_t ngx_http_events_webhook_dispatch_utf8(u_char *dst, size_t size,
    u_char *src, size_t len);
static ngx_msec_t ngx_http_events_webhook_dispatch_jitter(ngx_msec_t delay);


static ngx_msec_t  ngx_http_events_webhook_expired_warned;


/* the dispatcher: a tick in every worker, the work in the lease owner */

ngx_int_t
ngx_http_events_webhook_dispatch_init_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                       i;
    ngx_shm_zone_t                 **zones;
    ngx_http_events_store_t         *store;
    ngx_http_events_webhook_jobs_t  *jobs;
    ngx_http_events_main_conf_t     *emcf;

    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    if (ngx_http_events_ipc_on_wake(cycle,
                                    ngx_http_events_webhook_dispatch_wake)
        != NGX_OK
        || ngx_http_events_ipc_on_shutdown(cycle,
                                   ngx_http_events_webhook_dispatch_release)
           != NGX_OK)
    {
        return NGX_ERROR;
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

        /* a cluster's: the API endpoints of every node come here */
        store->wh_apply = ngx_http_events_webhook_share_apply;
        store->wh_state_apply = ngx_http_events_webhook_share_state_apply;
        store->wh_attempt_apply = ngx_http_events_webhook_share_attempt;

        store->wh_tick.handler = ngx_http_events_webhook_dispatch_tick;
        store->wh_tick.data = store;
        store->wh_tick.log = cycle->log;
        store->wh_tick.cancelable = 1;

        if (ngx_http_events_webhook_state_save_init(cycle, store) != NGX_OK) {
            return NGX_ERROR;
        }

        jobs = ngx_pcalloc(cycle->pool,
                           sizeof(ngx_http_events_webhook_jobs_t));
        if (jobs == NULL) {
            return NGX_ERROR;
        }

        ngx_queue_init(&jobs->free);
        jobs->room = 4096;
        store->wh_jobs = jobs;

        store->wh_kick.handler = ngx_http_events_webhook_dispatch_kick;
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
ngx_http_events_webhook_dispatch_release(ngx_cycle_t *cycle)
{
    ngx_uint_t                     i;
    ngx_shm_zone_t               **zones;
    ngx_http_events_webhook_sh_t  *wh;
    ngx_http_events_store_t       *store;
    ngx_http_events_main_conf_t   *emcf;

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
            ngx_http_events_webhook_state_save_changed(store);
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
ngx_http_events_webhook_dispatch_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_events_webhook_dispatch_release(cycle);
}


/* events came: the owner looks for new deliveries at once */

void
ngx_http_events_webhook_dispatch_wake(ngx_http_events_store_t *store)
{
    if (store->wh_owner && !store->wh_kick.posted && !ngx_exiting
        && !ngx_terminate && !ngx_quit)
    {
        ngx_post_event(&store->wh_kick, &ngx_posted_events);
    }
}


static void
ngx_http_events_webhook_dispatch_tick(ngx_event_t *ev)
{
    ngx_http_events_store_t  *store = ev->data;

    if (ngx_exiting || ngx_terminate || ngx_quit) {
        return;
    }

    ngx_http_events_webhook_dispatch_lease(store);

    if (store->wh_owner) {
        ngx_http_events_webhook_dispatch_dispatch(store);

        /* delivery progress to disk, at most once a second */
        if (store->journal
            && ngx_current_msec - store->wh_saved >= 1000)
        {
            store->wh_saved = ngx_current_msec;
            ngx_http_events_webhook_state_save_changed(store);
        }
    }

    ngx_add_timer(ev, NGX_HTTP_EVENTS_WH_TICK);
}


static void
ngx_http_events_webhook_dispatch_kick(ngx_event_t *ev)
{
    ngx_http_events_store_t  *store = ev->data;

    if (store->wh_owner && !ngx_exiting && !ngx_terminate && !ngx_quit) {
        ngx_http_events_webhook_dispatch_dispatch(store);
    }
}


static void
ngx_http_events_webhook_dispatch_lease(ngx_http_events_store_t *store)
{
    ngx_uint_t                           took;
    ngx_queue_t                         *q, *dq;
    ngx_http_events_webhook_sh_t        *wh;
    ngx_http_events_webhook_delivery_t  *d;
    ngx_http_events_webhook_endpoint_t  *ep;

    took = 0;

    ngx_shmtx_lock(&store->shpool->mutex);

    wh = ngx_http_events_webhook_shm(store);
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
            ep = ngx_queue_data(q, ngx_http_events_webhook_endpoint_t, queue);
            ep->inflight = 0;
            ep->verify_busy = 0;

            for (dq = ngx_queue_head(&ep->deliveries);
                 dq != ngx_queue_sentinel(&ep->deliveries);
                 dq = ngx_queue_next(dq))
            {
                d = ngx_queue_data(dq, ngx_http_events_webhook_delivery_t,
                                   queue);

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
 * The copies and the jobs are this process's, made before the lock.
 */

static void
ngx_http_events_webhook_dispatch_dispatch(ngx_http_events_store_t *store)
{
    uint64_t                         now;
    ngx_uint_t                       i, n, cap, found;
    ngx_queue_t                     *q, started;
    ngx_http_events_ipc_t           *ipc;
    ngx_http_events_webhook_sh_t    *wh;
    ngx_http_events_webhook_job_t   *job;
    ngx_http_events_webhook_conf_t  *whcf;
    ngx_http_events_webhook_jobs_t  *jobs;

    whcf = store->whcf;
    jobs = store->wh_jobs;
    ipc = ngx_http_events_ipc();

    if (ipc == NULL) {
        return;
    }

    /* as many jobs as the cap may take */
    cap = whcf->concurrency > store->wh_inflight
          ? whcf->concurrency - store->wh_inflight : 0;
    cap = ngx_min(cap, ngx_http_events_webhook_dispatch_reserve(store, cap));

    n = ngx_http_events_webhook_dispatch_copy(store);

    for (i = 0; i < n; i++) {
        ngx_http_events_webhook_dispatch_scan(store, &jobs->scans[i],
                                              &ipc->scratch);
    }

    now = ngx_http_events_webhook_now();
    ngx_queue_init(&started);

    ngx_shmtx_lock(&store->shpool->mutex);

    wh = store->wh;
    found = 0;

    for (i = 0; i < n; i++) {
        found |= ngx_http_events_webhook_dispatch_found(store, wh,
                                                        &jobs->scans[i], now);
    }

    /* the due deliveries, as far as the caps allow */
    ngx_http_events_webhook_dispatch_due(store, wh, cap, now, &started);

    if (found || !ngx_queue_empty(&started)) {
        wh->version++;
    }

    ngx_shmtx_unlock(&store->shpool->mutex);

    while (!ngx_queue_empty(&started)) {
        q = ngx_queue_head(&started);
        ngx_queue_remove(q);
        job = ngx_queue_data(q, ngx_http_events_webhook_job_t, queue);
        ngx_http_events_webhook_dispatch_start(job);
    }
}


/*
 * What the scans need, copied out of the zone into this process's scans
 * and their memory; both are made larger outside the lock when the
 * endpoints outgrew them, and the copy is tried again.
 */

static ngx_uint_t
ngx_http_events_webhook_dispatch_copy(ngx_http_events_store_t *store)
{
    u_char                              *p;
    size_t                               need;
    ngx_uint_t                           n, tries;
    ngx_queue_t                         *q;
    ngx_http_events_webhook_sh_t        *wh;
    ngx_http_events_webhook_jobs_t      *jobs;
    ngx_http_events_webhook_endpoint_t  *ep;

    jobs = store->wh_jobs;

    for (tries = 0; tries < 3; tries++) {

        ngx_shmtx_lock(&store->shpool->mutex);

        wh = store->wh;
        n = 0;
        need = 0;

        for (q = ngx_queue_head(&wh->endpoints);
             q != ngx_queue_sentinel(&wh->endpoints);
             q = ngx_queue_next(q))
        {
            ep = ngx_queue_data(q, ngx_http_events_webhook_endpoint_t, queue);

            if (!ep->disabled && ep->pending < NGX_HTTP_EVENTS_WH_WINDOW) {
                need += ngx_http_events_webhook_dispatch_copy_size(ep);
                n++;
            }
        }

        if (n <= jobs->nscans && need <= jobs->scan_size) {
            p = jobs->scan_mem;
            n = 0;

            for (q = ngx_queue_head(&wh->endpoints);
                 q != ngx_queue_sentinel(&wh->endpoints);
                 q = ngx_queue_next(q))
            {
                ep = ngx_queue_data(q, ngx_http_events_webhook_endpoint_t,
                                    queue);

                if (!ep->disabled && ep->pending < NGX_HTTP_EVENTS_WH_WINDOW)
                {
                    p = ngx_http_events_webhook_dispatch_copy_one(ep,
                                                       &jobs->scans[n++], p);
                }
            }

            ngx_shmtx_unlock(&store->shpool->mutex);

            return n;
        }

        ngx_shmtx_unlock(&store->shpool->mutex);

        if (ngx_http_events_webhook_dispatch_grow(jobs, n + 8, need + 4096)
            != NGX_OK)
        {
            return 0;
        }
    }

    return 0;
}


static size_t
ngx_http_events_webhook_dispatch_copy_size(
    ngx_http_events_webhook_endpoint_t *ep)
{
    size_t      len;
    ngx_uint_t  j;

    len = ep->npatterns * sizeof(ngx_str_t)
          + ep->nmeta * sizeof(ngx_http_events_meta_filter_t)
          + ep->blob_len + ep->id_len + ep->tenant_len;

    for (j = 0; j < ep->nmeta; j++) {
        len += ngx_http_events_json_escape_len(ep->blob + ep->mvalues[j].off,
                                               ep->mvalues[j].len);
    }

    return ngx_align(len, sizeof(void *));
}


/* under the lock: one endpoint's scan, its strings at p */

static u_char *
ngx_http_events_webhook_dispatch_copy_one(
    ngx_http_events_webhook_endpoint_t *ep,
    ngx_http_events_webhook_scan_t *sc, u_char *p)
{
    u_char      *blob, *next, *value;
    ngx_uint_t   j;

    next = p + ngx_http_events_webhook_dispatch_copy_size(ep);

    ngx_memzero(sc, offsetof(ngx_http_events_webhook_scan_t, seqs));

    /*
     * the patterns and metadata filters, then the blob they point into,
     * the id, the tenant, and the filters' values escaped as the
     * envelope writer escapes them, as a query compares them
     */
    sc->q.types = (ngx_str_t *) p;
    sc->q.meta = (ngx_http_events_meta_filter_t *)
                     (p + ep->npatterns * sizeof(ngx_str_t));
    blob = (u_char *) (sc->q.meta + ep->nmeta);
    ngx_memcpy(blob, ep->blob, ep->blob_len);

    for (j = 0; j < ep->npatterns; j++) {
        sc->q.types[j].data = blob + ep->patterns[j].off;
        sc->q.types[j].len = ep->patterns[j].len;
    }

    sc->id.data = blob + ep->blob_len;
    sc->id.len = ep->id_len;
    ngx_memcpy(sc->id.data, ep->id, ep->id_len);

    sc->q.tenant.data = sc->id.data + ep->id_len;
    sc->q.tenant.len = ep->tenant_len;
    ngx_memcpy(sc->q.tenant.data, ep->tenant, ep->tenant_len);

    value = sc->q.tenant.data + ep->tenant_len;

    for (j = 0; j < ep->nmeta; j++) {
        sc->q.meta[j].key.data = blob + ep->mkeys[j].off;
        sc->q.meta[j].key.len = ep->mkeys[j].len;
        sc->q.meta[j].value.data = value;
        value = ngx_http_events_json_escape(value,
                                            blob + ep->mvalues[j].off,
                                            ep->mvalues[j].len);
        sc->q.meta[j].value.len = value - sc->q.meta[j].value.data;
    }

    sc->q.nmeta = ep->nmeta;

    sc->q.any_tenant = (ep->tenant_len == 1 && ep->tenant[0] == '*');
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
               ep->nskips * sizeof(ngx_http_events_webhook_skip_t));
    sc->scanned = sc->scan_seq;
    sc->replayed = sc->replay_after;

    return next;
}


/* out of the lock: room for n scans and size bytes of their strings */

static ngx_int_t
ngx_http_events_webhook_dispatch_grow(ngx_http_events_webhook_jobs_t *jobs,
    ngx_uint_t n, size_t size)
{
    void  *p;

    if (n > jobs->nscans) {
        p = ngx_alloc(n * sizeof(ngx_http_events_webhook_scan_t),
                      ngx_cycle->log);
        if (p == NULL) {
            return NGX_ERROR;
        }

        ngx_free(jobs->scans);
        jobs->scans = p;
        jobs->nscans = n;
    }

    if (size > jobs->scan_size) {
        p = ngx_alloc(size, ngx_cycle->log);
        if (p == NULL) {
            return NGX_ERROR;
        }

        ngx_free(jobs->scan_mem);
        jobs->scan_mem = p;
        jobs->scan_size = size;
    }

    return NGX_OK;
}


/*
 * Under the lock: what a scan found becomes deliveries, unless the
 * endpoint went or an API call moved it meanwhile (then next time).
 * Whatever its window cannot take now waits in the ring.
 */

static ngx_uint_t
ngx_http_events_webhook_dispatch_found(ngx_http_events_store_t *store,
    ngx_http_events_webhook_sh_t *wh, ngx_http_events_webhook_scan_t *sc,
    uint64_t now)
{
    uint64_t                            *seq;
    ngx_uint_t                           j;
    ngx_http_events_webhook_endpoint_t  *ep;

    ep = ngx_http_events_webhook_find(wh, &sc->q.tenant, &sc->id);

    if (ep == NULL || ep->scan_seq != sc->scan_seq
        || ep->replay_after != sc->replay_after
        || ep->replay_mode != sc->replay_mode)
    {
        return 0;
    }

    if (sc->lost) {
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "events webhook \"%V\": events after seq %uL "
                      "left the ring before they were delivered",
                      &sc->id, sc->scan_seq);
    }

    seq = sc->seqs;

    for (j = 0; j < sc->nlive; j++) {
        if (ngx_http_events_webhook_queue(store, ep, seq[j],
                                          NGX_HTTP_EVENTS_WH_SCHEDULED, now)
            == NULL)
        {
            sc->scanned = j ? seq[j - 1] : sc->scan_seq;
            break;
        }
    }

    ep->scan_seq = sc->scanned;

    if (ep->replay_mode) {
        seq = sc->seqs + sc->nlive;

        for (j = 0; j < sc->nreplay; j++) {
            if (ngx_http_events_webhook_queue(store, ep, seq[j],
                                              NGX_HTTP_EVENTS_WH_REPLAY, now)
                == NULL)
            {
                sc->replayed = j ? seq[j - 1] : sc->replay_after;
                break;
            }

            if (ep->replay_left) {
                ep->replay_left--;
            }
        }

        ep->replay_after = sc->replayed;

        if (ep->replay_after >= ep->replay_to || ep->replay_left == 0) {
            ep->replay_mode = 0;
        }
    }

    return sc->nlive || sc->nreplay || sc->lost;
}


/*
 * The due deliveries, under the lock, into jobs made before it.  The
 * slots are shared among the tenants that have endpoints: none takes
 * more than its share of events_webhook_concurrency, so a tenant whose
 * receivers hang holds its share and no more.  Tenants take one
 * delivery each in turn, from their endpoints in turn, and the tenant
 * that went first goes last next time.
 */

static void
ngx_http_events_webhook_dispatch_due(ngx_http_events_store_t *store,
    ngx_http_events_webhook_sh_t *wh, ngx_uint_t cap, uint64_t now,
    ngx_queue_t *started)
{
    ngx_uint_t                           ntenants, share, took;
    ngx_queue_t                         *q;
    ngx_http_events_webhook_job_t       *job;
    ngx_http_events_webhook_conf_t      *whcf;
    ngx_http_events_webhook_tenant_t    *tn;
    ngx_http_events_webhook_endpoint_t  *ep;

    if (ngx_queue_empty(&wh->tenants)) {
        return;
    }

    /* what each tenant has in flight now, in every worker */

    for (q = ngx_queue_head(&wh->tenants);
         q != ngx_queue_sentinel(&wh->tenants);
         q = ngx_queue_next(q))
    {
        tn = ngx_queue_data(q, ngx_http_events_webhook_tenant_t, queue);
        tn->inflight = 0;
    }

    ntenants = 0;

    for (q = ngx_queue_head(&wh->endpoints);
         q != ngx_queue_sentinel(&wh->endpoints);
         q = ngx_queue_next(q))
    {
        ep = ngx_queue_data(q, ngx_http_events_webhook_endpoint_t, queue);
        ep->tn->inflight += ep->inflight;
    }

    for (q = ngx_queue_head(&wh->tenants);
         q != ngx_queue_sentinel(&wh->tenants);
         q = ngx_queue_next(q))
    {
        ntenants++;
    }

    whcf = store->whcf;
    share = (whcf->concurrency + ntenants - 1) / ntenants;

    do {
        took = 0;

        for (q = ngx_queue_head(&wh->tenants);
             q != ngx_queue_sentinel(&wh->tenants) && cap;
             q = ngx_queue_next(q))
        {
            tn = ngx_queue_data(q, ngx_http_events_webhook_tenant_t, queue);

            if (tn->inflight >= share) {
                continue;
            }

            job = ngx_http_events_webhook_dispatch_next(store, wh, tn, now);

            if (job == NGX_CONF_ERROR) {
                cap = 0;                    /* no job left: next time */
                break;
            }

            if (job == NULL) {
                continue;
            }

            ngx_queue_insert_tail(started, &job->queue);
            tn->inflight++;
            took++;
            cap--;
        }

    } while (took && cap);

    /* the next turn begins with the tenant after this one's first */
    q = ngx_queue_head(&wh->tenants);
    ngx_queue_remove(q);
    ngx_queue_insert_tail(&wh->tenants, q);
}


/*
 * A tenant's next due delivery, from its endpoints in turn, as a job:
 * NULL when it has none now, NGX_CONF_ERROR when no job is left.
 */

static ngx_http_events_webhook_job_t *
ngx_http_events_webhook_dispatch_next(ngx_http_events_store_t *store,
    ngx_http_events_webhook_sh_t *wh, ngx_http_events_webhook_tenant_t *tn,
    uint64_t now)
{
    ngx_msec_t                           interval;
    ngx_uint_t                           max;
    ngx_queue_t                         *q, *dq;
    ngx_http_events_webhook_job_t       *job;
    ngx_http_events_webhook_conf_t      *whcf;
    ngx_http_events_webhook_delivery_t  *d;
    ngx_http_events_webhook_endpoint_t  *ep;

    whcf = store->whcf;

    for (q = ngx_queue_head(&tn->endpoints);
         q != ngx_queue_sentinel(&tn->endpoints);
         q = ngx_queue_next(q))
    {
        ep = ngx_queue_data(q, ngx_http_events_webhook_endpoint_t, tqueue);

        /* maxInFlight or the location's, within the global cap */
        max = ep->ordered ? 1
                          : ep->max_inflight ? ep->max_inflight
                                             : whcf->endpoint_concurrency;

        if (ep->disabled || ep->paused_until_ms > now || ep->inflight >= max) {
            continue;
        }

        if (ep->verify && ep->verify_state != NGX_HTTP_EVENTS_WH_VERIFY_OK) {
            /* no delivery before the receiver allowed us */
            if (ep->verify_busy || ep->verify_next_ms > now) {
                continue;
            }

            return ngx_http_events_webhook_dispatch_verify(store, wh, tn, ep);
        }

        if (ep->ordered) {
            /* the lowest seq not done goes first, or nothing goes */
            d = ngx_http_events_webhook_dispatch_first(ep);

            if (d == NULL || d->state != NGX_HTTP_EVENTS_WH_QUEUED
                || d->next_ms > now)
            {
                continue;
            }

        } else {
            for (dq = ngx_queue_head(&ep->deliveries);
                 dq != ngx_queue_sentinel(&ep->deliveries);
                 dq = ngx_queue_next(dq))
            {
                d = ngx_queue_data(dq, ngx_http_events_webhook_delivery_t,
                                   queue);

                if (d->state == NGX_HTTP_EVENTS_WH_QUEUED
                    && d->next_ms <= now)
                {
                    break;
                }
            }

            if (dq == ngx_queue_sentinel(&ep->deliveries)) {
                continue;
            }
        }

        /*
         * rateLimit, or the rate the handshake allowed: a virtual
         * schedule, one slot per interval, a second's worth ahead
         */
        interval = ngx_http_events_webhook_dispatch_interval(ep);

        if (interval && ep->tokens_ms > now + 1000) {
            continue;
        }

        job = ngx_http_events_webhook_dispatch_take(store, ep);
        if (job == NULL) {
            return NGX_CONF_ERROR;
        }

        if (interval) {
            ep->tokens_ms = ngx_max(ep->tokens_ms, now) + interval;
        }

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

        /* the tenant's next turn begins with its next endpoint */
        ngx_queue_remove(&ep->tqueue);
        ngx_queue_insert_tail(&tn->endpoints, &ep->tqueue);

        return job;
    }

    return NULL;
}


/* under the lock: the endpoint's handshake, as a job without an event */

static ngx_http_events_webhook_job_t *
ngx_http_events_webhook_dispatch_verify(ngx_http_events_store_t *store,
    ngx_http_events_webhook_sh_t *wh, ngx_http_events_webhook_tenant_t *tn,
    ngx_http_events_webhook_endpoint_t *ep)
{
    ngx_http_events_webhook_job_t  *job;

    job = ngx_http_events_webhook_dispatch_take(store, ep);
    if (job == NULL) {
        return NGX_CONF_ERROR;
    }

    job->verify = 1;
    job->verify_gen = ep->verify_gen;
    job->attempt = ep->verify_attempts + 1;
    job->term = wh->term;

    ep->verify_busy = 1;
    ep->inflight++;
    store->wh_inflight++;

    ngx_queue_remove(&ep->tqueue);
    ngx_queue_insert_tail(&tn->endpoints, &ep->tqueue);

    return job;
}


/*
 * Milliseconds between two deliveries: the slower of rateLimit (per
 * second) and the handshake's WebHook-Allowed-Rate (per minute); 0: no
 * limit
 */

static ngx_msec_t
ngx_http_events_webhook_dispatch_interval(
    ngx_http_events_webhook_endpoint_t *ep)
{
    ngx_msec_t  interval;

    interval = ep->rate_limit ? 1000 / ep->rate_limit : 0;

    if (ep->verify && ep->allowed_rate) {
        interval = ngx_max(interval, 60000 / ep->allowed_rate);
    }

    return interval;
}


/*
 * An ordered endpoint's next delivery: the lowest seq in its queue,
 * whatever its state (a replay may queue seqs below the live ones).
 */

static ngx_http_events_webhook_delivery_t *
ngx_http_events_webhook_dispatch_first(ngx_http_events_webhook_endpoint_t *ep)
{
    ngx_queue_t                         *q;
    ngx_http_events_webhook_delivery_t  *d, *first;

    first = NULL;

    for (q = ngx_queue_head(&ep->deliveries);
         q != ngx_queue_sentinel(&ep->deliveries);
         q = ngx_queue_next(q))
    {
        d = ngx_queue_data(q, ngx_http_events_webhook_delivery_t, queue);

        if (first == NULL || d->seq < first->seq) {
            first = d;
        }
    }

    return first;
}


/* the ring after an endpoint's positions, without the lock */

static void
ngx_http_events_webhook_dispatch_scan(ngx_http_events_store_t *store,
    ngx_http_events_webhook_scan_t *sc, ngx_http_events_scratch_t *scratch)
{
    uint64_t                  last, from;
    ngx_int_t                 rc;
    ngx_uint_t                budget, i, found;
    ngx_http_events_item_t    item;
    ngx_http_events_window_t  w;

    budget = NGX_HTTP_EVENTS_WH_SCAN;
    from = sc->scan_seq;

    while (sc->nlive < sc->want && budget) {

        rc = ngx_http_events_store_next(store, &sc->q, from, budget, scratch,
                                        &item, &last);
        budget = budget > 64 ? budget - 64 : 0;

        if (rc == NGX_OK) {
            sc->seqs[sc->nlive++] = item.seq;
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

    while (sc->nlive + sc->nreplay < sc->want && budget
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

            sc->seqs[sc->nlive + sc->nreplay++] = item.seq;
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


/*
 * Jobs: this process's free list, each job with room for the copy of
 * one endpoint (its blob, id and tenant).  Jobs are made and grown
 * before the zone is locked, taken from the list under the lock (a copy,
 * no allocation), and go back to the list when their attempt is over.
 */

static ngx_uint_t
ngx_http_events_webhook_dispatch_reserve(ngx_http_events_store_t *store,
    ngx_uint_t n)
{
    ngx_queue_t                     *q, *next;
    ngx_http_events_webhook_job_t   *job;
    ngx_http_events_webhook_jobs_t  *jobs;

    jobs = store->wh_jobs;

    /* a job too small for the largest endpoint seen is made again */
    for (q = ngx_queue_head(&jobs->free);
         q != ngx_queue_sentinel(&jobs->free);
         q = next)
    {
        next = ngx_queue_next(q);
        job = ngx_queue_data(q, ngx_http_events_webhook_job_t, queue);

        if (job->room_size < jobs->room) {
            ngx_queue_remove(q);
            jobs->nfree--;
            ngx_free(job);
        }
    }

    while (jobs->nfree < n) {
        job = ngx_alloc(sizeof(ngx_http_events_webhook_job_t) + jobs->room,
                        ngx_cycle->log);
        if (job == NULL) {
            break;
        }

        job->room = (u_char *) (job + 1);
        job->room_size = jobs->room;

        ngx_queue_insert_tail(&jobs->free, &job->queue);
        jobs->nfree++;
    }

    return jobs->nfree;
}


/* under the lock: a free job with the endpoint copied in, or NULL */

static ngx_http_events_webhook_job_t *
ngx_http_events_webhook_dispatch_take(ngx_http_events_store_t *store,
    ngx_http_events_webhook_endpoint_t *ep)
{
    u_char                          *p, *room;
    size_t                           need, room_size;
    uint64_t                         now;
    ngx_uint_t                       i;
    ngx_queue_t                     *q;
    ngx_http_events_webhook_job_t   *job;
    ngx_http_events_webhook_jobs_t  *jobs;

    jobs = store->wh_jobs;
    need = ep->blob_len + ep->id_len + ep->tenant_len;

    if (ngx_queue_empty(&jobs->free)) {
        return NULL;
    }

    q = ngx_queue_head(&jobs->free);
    job = ngx_queue_data(q, ngx_http_events_webhook_job_t, queue);

    if (job->room_size < need) {
        /* the next reserve, outside the lock, makes them larger */
        jobs->room = ngx_max(jobs->room, ngx_align(need, 1024));
        return NULL;
    }

    ngx_queue_remove(q);
    jobs->nfree--;

    room = job->room;
    room_size = job->room_size;

    ngx_memzero(job, sizeof(ngx_http_events_webhook_job_t));

    job->room = room;
    job->room_size = room_size;
    job->store = store;
    job->whcf = store->whcf;
    job->excerpt_size = ep->excerpt_size;
    job->done = ngx_http_events_webhook_dispatch_done;
    job->vet = !ep->is_static;
    job->format = ep->format;
    job->handler = ep->is_handler;
    job->rate_limit = ep->rate_limit;
    job->ctx = store->wh_ctx;

    if (ep->is_handler) {
        /* the server its location is in, from this cycle's config */
        job->ctx = ngx_http_events_webhook_dispatch_handler_ctx(store, ep);

        if (job->ctx == NULL) {
            ngx_queue_insert_head(&jobs->free, &job->queue);
            jobs->nfree++;
            return NULL;
        }
    }

    p = room;
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

    now = ngx_http_events_webhook_now();

    if (ep->previous_len && ep->previous_expires_ms > now) {
        ngx_memcpy(job->previous, ep->previous, ep->previous_len);
        job->previous_len = ep->previous_len;
    }

    return job;
}


/* an attempt is over, or never began: the job goes back to the list */

static void
ngx_http_events_webhook_dispatch_give(ngx_http_events_webhook_job_t *job)
{
    ngx_http_events_webhook_jobs_t  *jobs;

    jobs = job->store->wh_jobs;

    if (job->pool) {
        ngx_destroy_pool(job->pool);
        job->pool = NULL;
    }

    /* more than the caps need were made for a burst: let them go */
    if (jobs->nfree > job->whcf->concurrency + 8) {
        ngx_free(job);
        return;
    }

    ngx_queue_insert_head(&jobs->free, &job->queue);
    jobs->nfree++;
}


/* out of the lock: the pool an attempt allocates from */

static ngx_int_t
ngx_http_events_webhook_dispatch_pool(ngx_http_events_webhook_job_t *job)
{
    job->pool = ngx_create_pool(4096, ngx_cycle->log);

    return job->pool ? NGX_OK : NGX_ERROR;
}


/*
 * A resend or a test ping: one attempt now, not retried.  The endpoint
 * is copied under the lock into a job made before it; a copy larger
 * than the job's room makes the jobs larger and is tried again.
 */

ngx_http_events_webhook_rc_e
ngx_http_events_webhook_dispatch_send_now(ngx_http_events_store_t *store,
    ngx_str_t *tenant, ngx_str_t *id, uint64_t seq, ngx_str_t *event_id,
    ngx_str_t *type, ngx_str_t *body)
{
    ngx_uint_t                           tries, found;
    ngx_http_events_webhook_sh_t        *wh;
    ngx_http_events_webhook_job_t       *job;
    ngx_http_events_webhook_endpoint_t  *ep;

    job = NULL;
    found = 0;

    for (tries = 0; tries < 3 && job == NULL; tries++) {

        if (ngx_http_events_webhook_dispatch_reserve(store, 1) == 0) {
            return NGX_HTTP_EVENTS_WEBHOOK_ERROR;
        }

        ngx_shmtx_lock(&store->shpool->mutex);

        wh = ngx_http_events_webhook_shm(store);
        ep = wh ? ngx_http_events_webhook_find(wh, tenant, id) : NULL;

        if (ep && ep->verify
            && ep->verify_state != NGX_HTTP_EVENTS_WH_VERIFY_OK)
        {
            /* a resend or a ping would go around the handshake */
            ngx_shmtx_unlock(&store->shpool->mutex);
            return NGX_HTTP_EVENTS_WEBHOOK_UNVERIFIED;
        }

        if (ep) {
            found = 1;
            job = ngx_http_events_webhook_dispatch_take(store, ep);
        }

        ngx_shmtx_unlock(&store->shpool->mutex);

        if (ep == NULL) {
            return NGX_HTTP_EVENTS_WEBHOOK_NOT_FOUND;
        }
    }

    if (job == NULL) {
        return found ? NGX_HTTP_EVENTS_WEBHOOK_ERROR
                     : NGX_HTTP_EVENTS_WEBHOOK_NOT_FOUND;
    }

    job->seq = seq;
    job->attempt = 1;
    job->trigger = NGX_HTTP_EVENTS_WH_MANUAL;
    job->event_tenant = job->tenant;

    if (ngx_http_events_webhook_dispatch_pool(job) != NGX_OK) {
        ngx_http_events_webhook_dispatch_give(job);
        return NGX_HTTP_EVENTS_WEBHOOK_ERROR;
    }

    job->event_id.data = ngx_pstrdup(job->pool, event_id);
    job->event_id.len = event_id->len;
    job->type.data = ngx_pstrdup(job->pool, type);
    job->type.len = type->len;
    job->body.data = ngx_pstrdup(job->pool, body);
    job->body.len = body->len;

    if (job->event_id.data == NULL || job->type.data == NULL
        || job->body.data == NULL)
    {
        ngx_http_events_webhook_dispatch_give(job);
        return NGX_HTTP_EVENTS_WEBHOOK_ERROR;
    }

    store->wh_inflight++;
    ngx_http_events_webhook_delivery_send(job);

    return NGX_HTTP_EVENTS_WEBHOOK_OK;
}


/* a handler's server: its events_handler is in this cycle's config */

static void *
ngx_http_events_webhook_dispatch_handler_ctx(ngx_http_events_store_t *store,
    ngx_http_events_webhook_endpoint_t *ep)
{
    ngx_uint_t                       i;
    ngx_http_events_webhook_spec_t  *spec;

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
ngx_http_events_webhook_dispatch_start(ngx_http_events_webhook_job_t *job)
{
    u_char                    *p;
    uint64_t                   last;
    ngx_int_t                  rc;
    ngx_http_events_ipc_t     *ipc;
    ngx_http_events_item_t     item;
    ngx_http_events_query_t    q;
    ngx_http_events_store_t   *store;

    ipc = ngx_http_events_ipc();
    store = job->store;

    if (job->verify) {
        if (ngx_http_events_webhook_dispatch_pool(job) != NGX_OK) {
            job->started_ms = ngx_http_events_webhook_now();
            job->error = NGX_HTTP_EVENTS_E_INTERNAL;
            ngx_http_events_webhook_dispatch_done(job);
            return;
        }

        ngx_http_events_webhook_delivery_send(job);
        return;
    }

    if (job->queued && !job->claimed && store->remote
        && store->remote->claim)
    {
        /* a cluster's: this node attempts it only with the claim */
        if (store->remote->claim(store->remote->data, &job->tenant,
                                 &job->endpoint, job->seq,
                                 ngx_http_events_webhook_dispatch_claimed,
                                 job)
            != NGX_OK)
        {
            ngx_http_events_webhook_dispatch_defer(job,
                                  NGX_HTTP_EVENTS_WH_CLAIM_AGAIN, 0);
        }

        return;
    }

    if (ngx_http_events_webhook_dispatch_pool(job) != NGX_OK) {
        job->started_ms = ngx_http_events_webhook_now();
        job->error = NGX_HTTP_EVENTS_E_INTERNAL;
        ngx_http_events_webhook_dispatch_done(job);
        return;
    }

    ngx_memzero(&q, sizeof(ngx_http_events_query_t));
    q.tenant = job->tenant;
    q.any_tenant = (job->tenant.len == 1 && job->tenant.data[0] == '*');
    q.since_ms = -1;
    q.until_ms = -1;

    rc = ngx_http_events_store_next(job->store, &q, job->seq - 1, 1,
                                    &ipc->scratch, &item, &last);

    if (rc != NGX_OK || item.seq != job->seq) {
        job->started_ms = ngx_http_events_webhook_now();
        job->error = NGX_HTTP_EVENTS_E_EVICTED;
        job->detail_len = ngx_sprintf(job->detail, "event %uL left the "
                                      "ring before it was delivered",
                                      job->seq) - job->detail;
        ngx_http_events_webhook_dispatch_done(job);
        return;
    }

    p = ngx_pnalloc(job->pool, item.json.len + item.type.len + item.id.len
                               + item.tenant.len);
    if (p == NULL) {
        job->error = NGX_HTTP_EVENTS_E_INTERNAL;
        ngx_http_events_webhook_dispatch_done(job);
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

    ngx_http_events_webhook_delivery_send(job);
}


/* a cluster's claim answered */

static void
ngx_http_events_webhook_dispatch_claimed(void *ctx, ngx_int_t rc,
    ngx_msec_t wait, void *hold)
{
    ngx_http_events_webhook_job_t  *job = ctx;

    if (rc == NGX_OK) {
        job->claimed = 1;
        job->hold = hold;
        ngx_http_events_webhook_dispatch_start(job);
        return;
    }

    ngx_http_events_webhook_dispatch_defer(job, wait, rc == NGX_DONE);
}


/*
 * Not attempted here: another node holds the delivery (it is due again
 * in wait ms, its attempt not counted), or ended it (it goes).
 */

static void
ngx_http_events_webhook_dispatch_defer(ngx_http_events_webhook_job_t *job,
    ngx_msec_t wait, ngx_uint_t ended)
{
    ngx_queue_t                         *q;
    ngx_http_events_store_t             *store;
    ngx_http_events_webhook_sh_t        *wh;
    ngx_http_events_webhook_endpoint_t  *ep;
    ngx_http_events_webhook_delivery_t  *d;

    store = job->store;

    ngx_shmtx_lock(&store->shpool->mutex);

    wh = store->wh;
    ep = ngx_http_events_webhook_find(wh, &job->tenant, &job->endpoint);

    for (q = ep ? ngx_queue_head(&ep->deliveries) : NULL;
         q && q != ngx_queue_sentinel(&ep->deliveries);
         q = ngx_queue_next(q))
    {
        d = ngx_queue_data(q, ngx_http_events_webhook_delivery_t, queue);

        if (d->seq != job->seq || d->state != NGX_HTTP_EVENTS_WH_INFLIGHT
            || d->term != job->term)
        {
            continue;
        }

        if (ended) {
            ngx_http_events_webhook_dequeue(store, ep, d);
            wh->version++;
            break;
        }

        d->state = NGX_HTTP_EVENTS_WH_QUEUED;
        d->next_ms = ngx_http_events_webhook_now() + wait;

        if (d->attempts) {
            d->attempts--;
        }

        if (ep->inflight) {
            ep->inflight--;
        }

        break;
    }

    ngx_shmtx_unlock(&store->shpool->mutex);

    if (store->wh_inflight) {
        store->wh_inflight--;
    }

    ngx_http_events_webhook_dispatch_give(job);

    if (ended) {
        ngx_http_events_webhook_dispatch_wake(store);
    }
}


/*
 * The claim was lost while the attempt ran (longer than the lease, and
 * Redis let it lapse or another node took it): another node may have
 * sent it too and owns its outcome now.  Nothing of the result is
 * recorded here (not the endpoint's state, not the attempt log, not the
 * delivery's count); the delivery is claimed again soon, and dropped if
 * the other node ended it.
 */

static void
ngx_http_events_webhook_dispatch_lost(ngx_http_events_webhook_job_t *job)
{
    ngx_http_events_store_t  *store;

    store = job->store;

    ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                  "events webhook \"%V\": the cluster's claim of event %uL "
                  "lapsed during its attempt (%s); its result is left to "
                  "the node that holds the delivery now", &job->endpoint,
                  job->seq, job->error ? "failed" : "succeeded");

    store->remote->settle(store->remote->data, job->hold, NGX_DECLINED, 0);
    job->claimed = 0;
    job->hold = NULL;

    ngx_http_events_webhook_dispatch_defer(job,
                                           NGX_HTTP_EVENTS_WH_CLAIM_AGAIN, 0);
}


/* after this node's attempt: ended for every node, held, or let go */

static void
ngx_http_events_webhook_dispatch_settle(ngx_http_events_webhook_job_t *job,
    ngx_uint_t found, ngx_http_events_webhook_attempt_t *a, uint64_t now)
{
    ngx_int_t                 how;
    ngx_msec_t                keep;
    ngx_http_events_store_t  *store;

    store = job->store;
    keep = 0;

    if (!found || a->result == NGX_HTTP_EVENTS_WH_EXPIRED) {
        /* not this node's to end: another's ring may still have it */
        how = NGX_DECLINED;

    } else if (a->result == NGX_HTTP_EVENTS_WH_RETRYING) {
        how = NGX_AGAIN;
        keep = a->next_ms > now ? (ngx_msec_t) (a->next_ms - now) : 0;

    } else {
        how = NGX_OK;
    }

    store->remote->settle(store->remote->data, job->hold, how, keep);
}


/* an attempt is over: log it, then retry, finish or give up */

static void
ngx_http_events_webhook_dispatch_done(ngx_http_events_webhook_job_t *job)
{
    u_char                               buf[NGX_HTTP_EVENTS_WH_ATTEMPT];
    u_char                               disabled;
    uint64_t                             now;
    ngx_str_t                            shared;
    ngx_uint_t                           changed;
    ngx_http_events_store_t             *store;
    ngx_http_events_webhook_fstate_t     before, after;
    ngx_http_events_webhook_sh_t        *wh;
    ngx_http_events_webhook_attempt_t   *a;
    ngx_http_events_webhook_endpoint_t  *ep;

    if (job->verify) {
        ngx_http_events_webhook_dispatch_verified(job);
        return;
    }

    store = job->store;
    now = ngx_http_events_webhook_now();

    if (job->claimed
        && store->remote->held(store->remote->data, job->hold) != NGX_OK)
    {
        ngx_http_events_webhook_dispatch_lost(job);
        return;
    }

    a = (ngx_http_events_webhook_attempt_t *) buf;
    ngx_memzero(a, sizeof(ngx_http_events_webhook_attempt_t));

    /* a cluster's: the attempt's record for the other nodes' logs */
    shared.len = 0;
    shared.data = NULL;

    if (store->remote && store->remote->wh_attempt && job->pool) {
        shared.data = ngx_pnalloc(job->pool,
                          offsetof(ngx_http_events_webhook_attempt_t, excerpt)
                          + job->excerpt_size + 8);
    }

    ngx_shmtx_lock(&store->shpool->mutex);

    wh = store->wh;
    ep = ngx_http_events_webhook_find(wh, &job->tenant, &job->endpoint);

    changed = 0;

    if (ep) {
        disabled = ep->disabled;
        ngx_http_events_webhook_dispatch_fstate(ep, &before);

        ngx_http_events_webhook_dispatch_outcome(store, wh, ep, job, now, a);
        ngx_http_events_webhook_dispatch_log(ep, job, a);
        wh->version++;

        ngx_http_events_webhook_dispatch_fstate(ep, &after);
        changed = ngx_memcmp(&before, &after,
                             sizeof(ngx_http_events_webhook_fstate_t));

        if (!disabled && ep->disabled) {
            job->meta_disabled = 1;
            job->meta_reason = ep->disabled;
            ep->meta_failed = 1;
        }

        if (shared.data && ep->log_size
            && ep->log_entry <= offsetof(ngx_http_events_webhook_attempt_t,
                                         excerpt)
                                + job->excerpt_size + 8)
        {
            shared.len = ep->log_entry;
            ngx_memcpy(shared.data,
                       ep->log + ((ep->log_next - 1) % ep->log_size)
                                 * ep->log_entry,
                       shared.len);
        }
    }

    wh->attempts++;
    wh->errors[job->error]++;

    ngx_shmtx_unlock(&store->shpool->mutex);

    if (job->claimed) {
        ngx_http_events_webhook_dispatch_settle(job, ep != NULL, a, now);
    }

    if (shared.len) {
        store->remote->wh_attempt(store->remote->data, &job->tenant,
                                  &job->endpoint, shared.data, shared.len);
    }

    if (changed && job->pool) {
        /* a cluster's: every node takes the endpoint's new state */
        ngx_http_events_webhook_share_state(store, &job->tenant,
                                            &job->endpoint, &after,
                                            job->pool);
    }

    if (job->error != NGX_HTTP_EVENTS_E_NONE) {
        ngx_log_error(NGX_LOG_INFO, ngx_cycle->log, 0,
                      "events webhook \"%V\": attempt %ui of event %uL "
                      "failed: %s %*s", &job->endpoint, job->attempt,
                      job->seq, ngx_http_events_webhook_errors[job->error],
                      job->detail_len, job->detail);
    }

    if (store->wh_inflight) {
        store->wh_inflight--;
    }

    if (store->whcf->meta_events && !job->handler
        && (job->meta_disabled || job->meta_exhausted || job->meta_recovered))
    {
        ngx_http_events_webhook_meta(job);
    }

    ngx_http_events_webhook_dispatch_give(job);

    /* a slot is free: more may be due */
    ngx_http_events_webhook_dispatch_wake(store);
}


/*
 * A handshake is over.  Its answer is taken unless the endpoint went,
 * or its url changed (a handshake of the new url is due then), or
 * another dispatcher took over meanwhile (it sends one again).
 */

static void
ngx_http_events_webhook_dispatch_verified(ngx_http_events_webhook_job_t *job)
{
    u_char                               disabled;
    uint64_t                             now;
    ngx_uint_t                           changed;
    ngx_http_events_store_t             *store;
    ngx_http_events_webhook_fstate_t     before, after;
    ngx_http_events_webhook_sh_t        *wh;
    ngx_http_events_webhook_endpoint_t  *ep;

    store = job->store;
    now = ngx_http_events_webhook_now();
    changed = 0;

    ngx_shmtx_lock(&store->shpool->mutex);

    wh = store->wh;
    ep = ngx_http_events_webhook_find(wh, &job->tenant, &job->endpoint);

    if (ep && job->term == wh->term) {
        if (ep->inflight) {
            ep->inflight--;
        }

        if (ep->verify && ep->verify_busy
            && ep->verify_gen == job->verify_gen)
        {
            disabled = ep->disabled;
            ngx_http_events_webhook_dispatch_fstate(ep, &before);

            ngx_http_events_webhook_dispatch_verify_outcome(store, ep, job,
                                                            now);
            wh->version++;

            ngx_http_events_webhook_dispatch_fstate(ep, &after);
            changed = ngx_memcmp(&before, &after,
                                 sizeof(ngx_http_events_webhook_fstate_t));

            if (!disabled && ep->disabled) {
                job->meta_disabled = 1;
                job->meta_reason = ep->disabled;
                ep->meta_failed = 1;
            }
        }
    }

    ngx_shmtx_unlock(&store->shpool->mutex);

    if (changed && job->pool) {
        ngx_http_events_webhook_share_state(store, &job->tenant,
                                            &job->endpoint, &after,
                                            job->pool);
    }

    if (store->wh_inflight) {
        store->wh_inflight--;
    }

    if (store->whcf->meta_events && job->meta_disabled) {
        ngx_http_events_webhook_meta(job);
    }

    ngx_http_events_webhook_dispatch_give(job);

    /* verified: its deliveries are due */
    ngx_http_events_webhook_dispatch_wake(store);
}


/* under the lock: verified, or again later, or given up (disabled) */

static void
ngx_http_events_webhook_dispatch_verify_outcome(ngx_http_events_store_t *store,
    ngx_http_events_webhook_endpoint_t *ep, ngx_http_events_webhook_job_t *job,
    uint64_t now)
{
    u_char                          *p, *last;
    ngx_uint_t                       nretry;
    ngx_http_events_webhook_conf_t  *whcf;

    whcf = store->whcf;

    ep->verify_busy = 0;
    ep->verify_attempts++;
    ep->verify_at_ms = now;
    ep->verify_status = (uint32_t) job->status;
    ep->verify_error = (u_char) job->error;

    /* the detail may quote the receiver's header: printable ASCII only */
    last = ngx_cpymem(ep->verify_detail, job->detail,
                      ngx_min(job->detail_len, sizeof(ep->verify_detail)));
    ep->verify_detail_len = (u_char) (last - ep->verify_detail);

    for (p = ep->verify_detail; p < last; p++) {
        if (*p < 0x20 || *p >= 0x7f) {
            *p = '?';
        }
    }

    if (job->error == NGX_HTTP_EVENTS_E_NONE) {
        ep->verify_state = NGX_HTTP_EVENTS_WH_VERIFY_OK;
        ep->allowed_rate = (uint32_t) job->allowed_rate;
        ep->verify_next_ms = 0;

        ngx_log_error(NGX_LOG_NOTICE, ngx_cycle->log, 0,
                      "events webhook \"%V\" verified by its receiver "
                      "(allowed rate %uD a minute, 0: any)", &job->endpoint,
                      ep->allowed_rate);
        return;
    }

    ngx_log_error(NGX_LOG_INFO, ngx_cycle->log, 0,
                  "events webhook \"%V\": handshake %ui failed: %s %*s",
                  &job->endpoint, job->attempt,
                  ngx_http_events_webhook_errors[job->error],
                  job->detail_len, job->detail);

    nretry = whcf->retry ? whcf->retry->nelts : 0;

    if (ep->verify_attempts > nretry) {
        ep->verify_state = NGX_HTTP_EVENTS_WH_VERIFY_FAILED;
        ep->verify_next_ms = 0;
        ngx_http_events_webhook_disable(ep, NGX_HTTP_EVENTS_WH_UNVERIFIED,
                                        now);
        return;
    }

    ep->verify_next_ms = now + ngx_http_events_webhook_dispatch_jitter(
                  ((ngx_msec_t *) whcf->retry->elts)[ep->verify_attempts - 1]);
}


/* the part of an endpoint's state the nodes of a cluster share */

static void
ngx_http_events_webhook_dispatch_fstate(ngx_http_events_webhook_endpoint_t *ep,
    ngx_http_events_webhook_fstate_t *st)
{
    ngx_memzero(st, sizeof(ngx_http_events_webhook_fstate_t));

    st->disabled = ep->disabled;
    st->disabled_ms = ep->disabled_ms;
    st->failing_since_ms = ep->failing_since_ms;
    st->paused_until_ms = ep->paused_until_ms;
}


static void
ngx_http_events_webhook_dispatch_outcome(ngx_http_events_store_t *store,
    ngx_http_events_webhook_sh_t *wh, ngx_http_events_webhook_endpoint_t *ep,
    ngx_http_events_webhook_job_t *job, uint64_t now,
    ngx_http_events_webhook_attempt_t *a)
{
    ngx_http_events_webhook_delivery_t  *d;

    ep->attempts++;

    d = ngx_http_events_webhook_dispatch_delivery(store, ep, job);

    /* the endpoint's state, whatever the delivery's */

    if (job->error == NGX_HTTP_EVENTS_E_NONE) {
        ep->ok++;
        wh->ok++;
        ep->last_success_ms = now;
        ep->failing_since_ms = 0;
        a->result = NGX_HTTP_EVENTS_WH_SUCCEEDED;

        if (ep->meta_failed) {
            /* the first success after an exhausted delivery or a disable */
            ep->meta_failed = 0;
            job->meta_recovered = 1;
        }

        if (d) {
            ngx_http_events_webhook_dequeue(store, ep, d);
        }

        if (job->disable) {
            ngx_http_events_webhook_disable(ep, NGX_HTTP_EVENTS_WH_RECEIVER,
                                            now);
        }

        return;
    }

    ep->last_failure_ms = now;
    ep->last_error = (u_char) job->error;

    if (ep->failing_since_ms == 0) {
        ep->failing_since_ms = now;
    }

    if (job->status == 410) {
        ngx_http_events_webhook_disable(ep, NGX_HTTP_EVENTS_WH_GONE, now);

    } else if (job->disable) {
        ngx_http_events_webhook_disable(ep, NGX_HTTP_EVENTS_WH_RECEIVER, now);
    }

    if (d == NULL) {
        a->result = NGX_HTTP_EVENTS_WH_FAILED_FINAL;
        return;
    }

    if (ngx_http_events_webhook_dispatch_final(store, wh, ep, d, job, now, a))
    {
        return;
    }

    ngx_http_events_webhook_dispatch_retry(store, wh, ep, d, job, now, a);
}


/*
 * The attempt's delivery, or NULL when it is not this attempt's: a
 * manual one, or one a new dispatcher queued again.  A success still
 * ends that one, if it is not being sent right now.
 */

static ngx_http_events_webhook_delivery_t *
ngx_http_events_webhook_dispatch_delivery(ngx_http_events_store_t *store,
    ngx_http_events_webhook_endpoint_t *ep, ngx_http_events_webhook_job_t *job)
{
    ngx_queue_t                         *q;
    ngx_http_events_webhook_delivery_t  *d;

    for (q = ngx_queue_head(&ep->deliveries);
         q != ngx_queue_sentinel(&ep->deliveries);
         q = ngx_queue_next(q))
    {
        d = ngx_queue_data(q, ngx_http_events_webhook_delivery_t, queue);

        if (d->seq != job->seq) {
            continue;
        }

        if (job->queued && d->state == NGX_HTTP_EVENTS_WH_INFLIGHT
            && d->term == job->term)
        {
            return d;
        }

        if (job->error == NGX_HTTP_EVENTS_E_NONE
            && d->state == NGX_HTTP_EVENTS_WH_QUEUED)
        {
            ngx_http_events_webhook_dequeue(store, ep, d);
        }

        return NULL;
    }

    return NULL;
}


/* a failed attempt that ends its delivery: 1, and the delivery is gone */

static ngx_uint_t
ngx_http_events_webhook_dispatch_final(ngx_http_events_store_t *store,
    ngx_http_events_webhook_sh_t *wh, ngx_http_events_webhook_endpoint_t *ep,
    ngx_http_events_webhook_delivery_t *d, ngx_http_events_webhook_job_t *job,
    uint64_t now, ngx_http_events_webhook_attempt_t *a)
{
    ngx_uint_t                       nretry;
    ngx_http_events_webhook_conf_t  *whcf;

    whcf = store->whcf;
    nretry = whcf->retry ? whcf->retry->nelts : 0;

    if (job->error == NGX_HTTP_EVENTS_E_EVICTED) {
        a->result = NGX_HTTP_EVENTS_WH_EXPIRED;
        ep->expired++;
        wh->expired++;
        ngx_http_events_webhook_dispatch_expired(store, wh, job);

    } else if (job->abort) {
        a->result = NGX_HTTP_EVENTS_WH_ABORTED;
        wh->aborted++;
        job->error = NGX_HTTP_EVENTS_E_ABORTED;

    } else if (job->status == 410 || job->disable || d->attempts > nretry) {
        a->result = NGX_HTTP_EVENTS_WH_FAILED_FINAL;

        /* a meta event's own failure makes no other: no chain */
        if (!(job->type.len > 8
              && ngx_strncmp(job->type.data, "webhook.", 8) == 0))
        {
            job->meta_exhausted = 1;
            ep->meta_failed = 1;
        }

    } else {
        return 0;
    }

    if (a->result != NGX_HTTP_EVENTS_WH_EXPIRED) {
        ep->failed++;
        wh->failed++;
        ep->failed_seqs[ep->nfailed++ % NGX_HTTP_EVENTS_WH_FAILED] = d->seq;
    }

    ngx_http_events_webhook_dequeue(store, ep, d);

    /* failing for long enough, with no success since: disabled */
    if (!ep->disabled && whcf->disable_after
        && now - ep->failing_since_ms >= whcf->disable_after)
    {
        ngx_http_events_webhook_disable(ep, NGX_HTTP_EVENTS_WH_FAILING, now);
    }

    return 1;
}


/* a ring too small for the retry horizon: say so, not too often */

static void
ngx_http_events_webhook_dispatch_expired(ngx_http_events_store_t *store,
    ngx_http_events_webhook_sh_t *wh, ngx_http_events_webhook_job_t *job)
{
    if (ngx_current_msec - ngx_http_events_webhook_expired_warned > 60000
        || ngx_http_events_webhook_expired_warned == 0)
    {
        ngx_http_events_webhook_expired_warned = ngx_current_msec;
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "events webhook \"%V\": event %uL left the ring "
                      "before it was delivered (%uL such deliveries "
                      "in zone \"%V\"); the ring is smaller than the "
                      "retry horizon", &job->endpoint, job->seq,
                      wh->expired, &store->name);
    }
}


/* the next attempt: the schedule's delay, or what the receiver asked */

static void
ngx_http_events_webhook_dispatch_retry(ngx_http_events_store_t *store,
    ngx_http_events_webhook_sh_t *wh, ngx_http_events_webhook_endpoint_t *ep,
    ngx_http_events_webhook_delivery_t *d, ngx_http_events_webhook_job_t *job,
    uint64_t now, ngx_http_events_webhook_attempt_t *a)
{
    uint64_t                         pause;
    ngx_msec_t                       delay;
    ngx_http_events_webhook_conf_t  *whcf;

    whcf = store->whcf;

    delay = ngx_http_events_webhook_dispatch_jitter(
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
ngx_http_events_webhook_dispatch_log(ngx_http_events_webhook_endpoint_t *ep,
    ngx_http_events_webhook_job_t *job, ngx_http_events_webhook_attempt_t *src)
{
    u_char                              id[NGX_HTTP_EVENTS_ID_LEN];
    ngx_http_events_ipc_t              *ipc;
    ngx_http_events_webhook_attempt_t  *a;

    if (ep->log_size == 0) {
        return;
    }

    a = (ngx_http_events_webhook_attempt_t *)
            (ep->log + (ep->log_next % ep->log_size) * ep->log_entry);

    ngx_memzero(a, offsetof(ngx_http_events_webhook_attempt_t, excerpt));

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

    /* the receiver's bytes, shown as JSON: valid UTF-8 as the excerpt */
    a->ctype_len = (u_char) ngx_http_events_webhook_dispatch_utf8(
                                a->ctype, sizeof(a->ctype), job->ctype.data,
                                job->ctype.len);

    a->excerpt_len = (uint16_t) ngx_http_events_webhook_dispatch_utf8(
                                    a->excerpt, ep->excerpt_size,
                                    job->excerpt, job->excerpt_len);
}


/*
 * The answer's first bytes as valid UTF-8, for JSON: a byte that does
 * not begin a valid character becomes U+FFFD, and the copy ends before
 * a character that does not fit whole (or was cut by the excerpt).
 */

static size_t
ngx_http_events_webhook_dispatch_utf8(u_char *dst, size_t size, u_char *src,
    size_t len)
{
    u_char    *p, *last, *start, *d;
    size_t     n;
    uint32_t   u;

    p = src;
    last = src + len;
    d = dst;

    while (p < last) {
        start = p;

        if (*p < 0x80) {
            p++;
            u = 0;

        } else {
            u = ngx_utf8_decode(&p, last - p);

            if (u == 0xfffffffe) {
                break;                      /* cut by the excerpt */
            }

            if (u == 0xffffffff || u > 0x10ffff
                || (u >= 0xd800 && u <= 0xdfff))
            {
                u = 0xffffffff;
                p = start + 1;
            }
        }

        n = (u == 0xffffffff) ? 3 : (size_t) (p - start);

        if ((size_t) (d - dst) + n > size) {
            break;
        }

        d = (u == 0xffffffff) ? ngx_cpymem(d, "\xef\xbf\xbd", 3)
                              : ngx_cpymem(d, start, n);
    }

    return d - dst;
}


/* +-20% */

static ngx_msec_t
ngx_http_events_webhook_dispatch_jitter(ngx_msec_t delay)
{
    ngx_msec_t  span;

    span = delay / 5;

    if (span == 0) {
        return delay;
    }

    return delay - span + (ngx_msec_t) (ngx_random() % (2 * span + 1));
}
