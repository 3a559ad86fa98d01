
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
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_events_module.h"
#include "ngx_http_events_store.h"
#include "ngx_http_events_webhook.h"
#include "ngx_http_events_cursor.h"
#include "ngx_http_events_id.h"
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


static void ngx_http_events_webhook_dispatch_tick(ngx_event_t *ev);
static void ngx_http_events_webhook_dispatch_kick(ngx_event_t *ev);
static void ngx_http_events_webhook_dispatch_lease(
    ngx_http_events_store_t *store);
static void ngx_http_events_webhook_dispatch_dispatch(
    ngx_http_events_store_t *store);
static void ngx_http_events_webhook_dispatch_scan(
    ngx_http_events_store_t *store,
    ngx_http_events_wh_scan_t *sc, ngx_http_events_scratch_t *scratch);
static void ngx_http_events_webhook_dispatch_start(
    ngx_http_events_wh_job_t *job);
static void *ngx_http_events_webhook_dispatch_handler_ctx(
    ngx_http_events_store_t *store,
    ngx_http_events_wh_endpoint_t *ep);
static void ngx_http_events_webhook_dispatch_done(
    ngx_http_events_wh_job_t *job);
static void ngx_http_events_webhook_dispatch_outcome(
    ngx_http_events_store_t *store,
    ngx_http_events_wh_sh_t *wh, ngx_http_events_wh_endpoint_t *ep,
    ngx_http_events_wh_job_t *job, uint64_t now,
    ngx_http_events_wh_attempt_t *a);
static void ngx_http_events_webhook_dispatch_log(
    ngx_http_events_wh_endpoint_t *ep,
    ngx_http_events_wh_job_t *job, ngx_http_events_wh_attempt_t *a);
static ngx_msec_t ngx_http_events_webhook_dispatch_jitter(ngx_msec_t delay);


static ngx_msec_t  ngx_http_events_wh_expired_warned;


static const char  *ngx_http_events_wh_reasons[] = {
    "", "gone", "receiver", "failing", "manual"
};


/* the dispatcher: a tick in every worker, the work in the lease owner */

ngx_int_t
ngx_http_events_webhook_dispatch_init_process(ngx_cycle_t *cycle)
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

        store->wh_tick.handler = ngx_http_events_webhook_dispatch_tick;
        store->wh_tick.data = store;
        store->wh_tick.log = cycle->log;
        store->wh_tick.cancelable = 1;

        if (ngx_http_events_webhook_state_save_init(cycle, store) != NGX_OK) {
            return NGX_ERROR;
        }

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
    if (store->wh_owner && !store->wh_kick.posted && !ngx_exiting) {
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

    if (store->wh_owner && !ngx_exiting) {
        ngx_http_events_webhook_dispatch_dispatch(store);
    }
}


static void
ngx_http_events_webhook_dispatch_lease(ngx_http_events_store_t *store)
{
    ngx_uint_t                      took;
    ngx_queue_t                    *q, *dq;
    ngx_http_events_wh_sh_t        *wh;
    ngx_http_events_wh_delivery_t  *d;
    ngx_http_events_wh_endpoint_t  *ep;

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
ngx_http_events_webhook_dispatch_dispatch(ngx_http_events_store_t *store)
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
        ngx_http_events_webhook_dispatch_scan(store, &sc[i], &ipc->scratch);
    }

    now = ngx_http_events_webhook_now();

    ngx_shmtx_lock(&store->shpool->mutex);

    for (i = 0; i < scans.nelts; i++) {
        ep = ngx_http_events_webhook_find(wh, &sc[i].q.tenant, &sc[i].id);

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
            if (ngx_http_events_webhook_queue(store, ep, seq[j],
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
                if (ngx_http_events_webhook_queue(store, ep, seq[j],
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

            job = ngx_http_events_webhook_dispatch_job(store, ep);
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
        ngx_http_events_webhook_dispatch_start(jp[i]);
    }

done:

    ngx_destroy_pool(pool);
}


/* the ring after an endpoint's positions, without the lock */

static void
ngx_http_events_webhook_dispatch_scan(ngx_http_events_store_t *store,
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

ngx_http_events_wh_job_t *
ngx_http_events_webhook_dispatch_job(ngx_http_events_store_t *store,
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
    job->done = ngx_http_events_webhook_dispatch_done;
    job->vet = !ep->is_static;
    job->handler = ep->is_handler;
    job->ctx = store->wh_ctx;

    if (ep->is_handler) {
        /* the server its location is in, from this cycle's config */
        job->ctx = ngx_http_events_webhook_dispatch_handler_ctx(store, ep);

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

    now = ngx_http_events_webhook_now();

    if (ep->previous_len && ep->previous_expires_ms > now) {
        ngx_memcpy(job->previous, ep->previous, ep->previous_len);
        job->previous_len = ep->previous_len;
    }

    return job;
}


/* a handler's server: its events_handler is in this cycle's config */

static void *
ngx_http_events_webhook_dispatch_handler_ctx(ngx_http_events_store_t *store,
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
ngx_http_events_webhook_dispatch_start(ngx_http_events_wh_job_t *job)
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


/* an attempt is over: log it, then retry, finish or give up */

static void
ngx_http_events_webhook_dispatch_done(ngx_http_events_wh_job_t *job)
{
    u_char                          buf[sizeof(ngx_http_events_wh_attempt_t)
                                        + 64];
    uint64_t                        now;
    ngx_http_events_store_t        *store;
    ngx_http_events_wh_sh_t        *wh;
    ngx_http_events_wh_attempt_t   *a;
    ngx_http_events_wh_endpoint_t  *ep;

    store = job->store;
    now = ngx_http_events_webhook_now();

    a = (ngx_http_events_wh_attempt_t *) buf;
    ngx_memzero(a, sizeof(ngx_http_events_wh_attempt_t));

    ngx_shmtx_lock(&store->shpool->mutex);

    wh = store->wh;
    ep = ngx_http_events_webhook_find(wh, &job->tenant, &job->endpoint);

    if (ep) {
        ngx_http_events_webhook_dispatch_outcome(store, wh, ep, job, now, a);
        ngx_http_events_webhook_dispatch_log(ep, job, a);
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
    ngx_http_events_webhook_dispatch_wake(store);
}


static void
ngx_http_events_webhook_dispatch_outcome(ngx_http_events_store_t *store,
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
            ngx_http_events_webhook_dequeue(store, ep, d);
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
            ngx_http_events_webhook_dequeue(store, ep, d);
        }

        if (job->disable) {
            ngx_http_events_webhook_dispatch_disable(ep,
                                                     NGX_HTTP_EVENTS_WH_RECEIVER, now);
        }

        return;
    }

    ep->last_failure_ms = now;
    ep->last_error = (u_char) job->error;

    if (ep->failing_since_ms == 0) {
        ep->failing_since_ms = now;
    }

    if (job->status == 410) {
        ngx_http_events_webhook_dispatch_disable(ep, NGX_HTTP_EVENTS_WH_GONE,
                                                 now);

    } else if (job->disable) {
        ngx_http_events_webhook_dispatch_disable(ep,
                                                 NGX_HTTP_EVENTS_WH_RECEIVER, now);
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

        ngx_http_events_webhook_dequeue(store, ep, d);

        /* failing for long enough, with no success since: disabled */
        if (!ep->disabled && whcf->disable_after
            && now - ep->failing_since_ms >= whcf->disable_after)
        {
            ngx_http_events_webhook_dispatch_disable(ep,
                                                     NGX_HTTP_EVENTS_WH_FAILING, now);
        }

        return;
    }

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


void
ngx_http_events_webhook_dispatch_disable(ngx_http_events_wh_endpoint_t *ep,
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
ngx_http_events_webhook_dispatch_log(ngx_http_events_wh_endpoint_t *ep,
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
ngx_http_events_webhook_dispatch_jitter(ngx_msec_t delay)
{
    ngx_msec_t  span;

    span = delay / 5;

    if (span == 0) {
        return delay;
    }

    return delay - span + (ngx_msec_t) (ngx_random() % (2 * span + 1));
}
