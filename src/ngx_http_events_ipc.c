
/*
 * Copyright (C) ngx_http_events_module authors
 */


/*
 * Waking the workers that hold streams when another worker publishes.
 *
 * The events stay in the shared ring; only a doorbell rings: one
 * eventfd per worker number, made by the master before it forks, so a
 * respawned worker inherits its own.  A publisher rings a worker only
 * when that worker has subscribers on the zone and its pending flag
 * goes from 0 to 1, so a burst is one wake-up; the woken worker clears
 * the flag before it reads the ring, so nothing published meanwhile
 * is missed.  The publishing worker fans out locally from a posted
 * event, after its answer has gone.
 *
 * A fake idle "watcher" connection is told by nginx the moment a
 * graceful shutdown starts.
 *
 * This file is a transport only: it knows its consumers (streams, the
 * webhook dispatcher) through the wake and shutdown handlers they
 * register at init_process, as Nchan's ipc_set_handler does.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <ngx_channel.h>

#include <sys/eventfd.h>

#include "ngx_http_events_module.h"
#include "ngx_http_events_ipc.h"


static void ngx_http_events_ipc_cleanup(void *data);
static void ngx_http_events_ipc_doorbell(ngx_event_t *ev);
static void ngx_http_events_ipc_fanout(ngx_event_t *ev);
static void ngx_http_events_ipc_wake(ngx_cycle_t *cycle,
    ngx_uint_t doorbell);
static ngx_int_t ngx_http_events_ipc_watch(ngx_cycle_t *cycle,
    ngx_http_events_ipc_t *ipc);
static void ngx_http_events_ipc_watcher(ngx_event_t *ev);
static void ngx_http_events_ipc_unwatch(ngx_http_events_ipc_t *ipc);


ngx_http_events_ipc_t *
ngx_http_events_ipc(void)
{
    ngx_http_events_main_conf_t  *emcf;

    emcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_http_events_module);

    return emcf ? emcf->ipc : NULL;
}


ngx_int_t
ngx_http_events_ipc_on_wake(ngx_cycle_t *cycle,
    ngx_http_events_ipc_wake_pt handler)
{
    ngx_http_events_ipc_t  *ipc;

    ipc = ngx_http_events_ipc();

    if (ipc == NULL) {
        return NGX_OK;
    }

    if (ipc->nwake == NGX_HTTP_EVENTS_IPC_HANDLERS) {
        ngx_log_error(NGX_LOG_ALERT, cycle->log, 0,
                      "events: too many wake handlers");
        return NGX_ERROR;
    }

    ipc->wake[ipc->nwake++] = handler;

    return NGX_OK;
}


ngx_int_t
ngx_http_events_ipc_on_shutdown(ngx_cycle_t *cycle,
    ngx_http_events_ipc_shutdown_pt handler)
{
    ngx_http_events_ipc_t  *ipc;

    ipc = ngx_http_events_ipc();

    if (ipc == NULL) {
        return NGX_OK;
    }

    if (ipc->nshutdown == NGX_HTTP_EVENTS_IPC_HANDLERS) {
        ngx_log_error(NGX_LOG_ALERT, cycle->log, 0,
                      "events: too many shutdown handlers");
        return NGX_ERROR;
    }

    ipc->shutdown[ipc->nshutdown++] = handler;

    return NGX_OK;
}


ngx_int_t
ngx_http_events_ipc_init_module(ngx_cycle_t *cycle)
{
    ngx_uint_t                    i;
    ngx_core_conf_t              *ccf;
    ngx_pool_cleanup_t           *cln;
    ngx_http_events_ipc_t        *ipc;
    ngx_http_events_main_conf_t  *emcf;

    emcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_events_module);

    if (emcf == NULL || emcf->zones.nelts == 0) {
        return NGX_OK;
    }

    ccf = (ngx_core_conf_t *) ngx_get_conf(cycle->conf_ctx, ngx_core_module);

    if (ccf->worker_processes > NGX_HTTP_EVENTS_MAX_WORKERS) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                      "events zones support at most %d worker processes, "
                      "not %i", NGX_HTTP_EVENTS_MAX_WORKERS,
                      ccf->worker_processes);
        return NGX_ERROR;
    }

    ipc = ngx_pcalloc(cycle->pool, sizeof(ngx_http_events_ipc_t));
    if (ipc == NULL) {
        return NGX_ERROR;
    }

    emcf->ipc = ipc;

    if (!ccf->master) {
        /* a single process fans out locally only */
        return NGX_OK;
    }

    ipc->ndoorbells = ccf->worker_processes;
    ipc->doorbells = ngx_palloc(cycle->pool,
                                ipc->ndoorbells * sizeof(ngx_fd_t));
    if (ipc->doorbells == NULL) {
        return NGX_ERROR;
    }

    cln = ngx_pool_cleanup_add(cycle->pool, 0);
    if (cln == NULL) {
        return NGX_ERROR;
    }

    for (i = 0; i < ipc->ndoorbells; i++) {
        ipc->doorbells[i] = -1;
    }

    /* the master closes a cycle's doorbells when it drops that cycle */
    cln->handler = ngx_http_events_ipc_cleanup;
    cln->data = ipc;

    for (i = 0; i < ipc->ndoorbells; i++) {
        ipc->doorbells[i] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);

        if (ipc->doorbells[i] == -1) {
            ngx_log_error(NGX_LOG_EMERG, cycle->log, ngx_errno,
                          "eventfd() failed");
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static void
ngx_http_events_ipc_cleanup(void *data)
{
    ngx_http_events_ipc_t  *ipc = data;

    ngx_uint_t  i;

    for (i = 0; i < ipc->ndoorbells; i++) {
        if (ipc->doorbells[i] != -1) {
            (void) close(ipc->doorbells[i]);
            ipc->doorbells[i] = -1;
        }
    }
}


ngx_int_t
ngx_http_events_ipc_init_process(ngx_cycle_t *cycle)
{
    ngx_http_events_ipc_t  *ipc;

    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    ipc = ngx_http_events_ipc();
    if (ipc == NULL) {
        return NGX_OK;
    }

    ipc->fanout.handler = ngx_http_events_ipc_fanout;
    ipc->fanout.log = cycle->log;
    ipc->fanout.data = ipc;

    if (ipc->ndoorbells && ngx_worker < ipc->ndoorbells) {
        if (ngx_add_channel_event(cycle, ipc->doorbells[ngx_worker],
                                  NGX_READ_EVENT,
                                  ngx_http_events_ipc_doorbell)
            == NGX_ERROR)
        {
            return NGX_ERROR;
        }
    }

    return ngx_http_events_ipc_watch(cycle, ipc);
}


void
ngx_http_events_ipc_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_events_ipc_t  *ipc;

    ipc = ngx_http_events_ipc();
    if (ipc == NULL) {
        return;
    }

    if (ipc->fanout.posted) {
        ngx_delete_posted_event(&ipc->fanout);
    }

    ngx_http_events_ipc_unwatch(ipc);

    if (ipc->scratch.data) {
        ngx_free(ipc->scratch.data);
        ipc->scratch.data = NULL;
        ipc->scratch.size = 0;
    }
}


/* after a write: ring the workers that listen, fan out here later */

void
ngx_http_events_ipc_notify(ngx_http_events_store_t *store)
{
    uint64_t                one;
    ngx_uint_t              i;
    ngx_http_events_ipc_t  *ipc;

    ipc = ngx_http_events_ipc();
    if (ipc == NULL) {
        return;
    }

    /* a consumer here (a stream, the dispatcher) listens as others do */
    if (ngx_http_events_store_listening(store, ngx_worker)
        && !ipc->fanout.posted && !ngx_exiting)
    {
        ngx_post_event(&ipc->fanout, &ngx_posted_events);
    }

    one = 1;

    for (i = 0; i < ipc->ndoorbells; i++) {

        if (i == ngx_worker
            || !ngx_http_events_store_listening(store, i)
            || !ngx_http_events_store_ring(store, i))
        {
            continue;
        }

        if (write(ipc->doorbells[i], &one, sizeof(uint64_t)) == -1
            && ngx_errno != NGX_EAGAIN)
        {
            ngx_log_error(NGX_LOG_ALERT, ngx_cycle->log, ngx_errno,
                          "write() to the doorbell of worker %ui failed", i);
        }
    }
}


/* one worker's doorbell, whatever it listens to: the journal's waiters */

void
ngx_http_events_ipc_ring(ngx_uint_t worker)
{
    uint64_t                one;
    ngx_http_events_ipc_t  *ipc;

    ipc = ngx_http_events_ipc();

    if (ipc == NULL || worker >= ipc->ndoorbells) {
        return;
    }

    one = 1;

    if (write(ipc->doorbells[worker], &one, sizeof(uint64_t)) == -1
        && ngx_errno != NGX_EAGAIN)
    {
        ngx_log_error(NGX_LOG_ALERT, ngx_cycle->log, ngx_errno,
                      "write() to the doorbell of worker %ui failed",
                      worker);
    }
}


static void
ngx_http_events_ipc_doorbell(ngx_event_t *ev)
{
    uint64_t           n;
    ngx_connection_t  *c;

    c = ev->data;

    /* level-triggered: read it empty, whatever follows */
    if (read(c->fd, &n, sizeof(uint64_t)) == -1 && ngx_errno != NGX_EAGAIN) {
        ngx_log_error(NGX_LOG_ALERT, ev->log, ngx_errno,
                      "read() from the doorbell failed");
    }

    ngx_http_events_ipc_wake((ngx_cycle_t *) ngx_cycle, 1);
}


static void
ngx_http_events_ipc_fanout(ngx_event_t *ev)
{
    ngx_http_events_ipc_wake((ngx_cycle_t *) ngx_cycle, 0);
}


static void
ngx_http_events_ipc_wake(ngx_cycle_t *cycle, ngx_uint_t doorbell)
{
    ngx_uint_t                    i, h;
    ngx_shm_zone_t              **zones;
    ngx_http_events_ipc_t        *ipc;
    ngx_http_events_store_t      *store;
    ngx_http_events_main_conf_t  *emcf;

    emcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_events_module);
    zones = emcf->zones.elts;
    ipc = emcf->ipc;

    for (i = 0; i < emcf->zones.nelts; i++) {
        store = zones[i]->data;

        /* clear first: a publish from now on rings again */
        ngx_http_events_store_unring(store, ngx_worker);

        if (doorbell) {
            ngx_http_events_store_woken(store);
        }

        for (h = 0; h < ipc->nwake; h++) {
            ipc->wake[h](store);
        }
    }
}


/* the shutdown watcher, an idle connection nginx calls when it quits */

static ngx_int_t
ngx_http_events_ipc_watch(ngx_cycle_t *cycle, ngx_http_events_ipc_t *ipc)
{
    ngx_connection_t  *c, *saved;

    /* ngx_get_connection() files the connection under its fd: keep 0's */
    saved = cycle->files ? cycle->files[0] : NULL;

    c = ngx_get_connection(0, cycle->log);

    if (cycle->files) {
        cycle->files[0] = saved;
    }

    if (c == NULL) {
        return NGX_ERROR;
    }

    c->fd = (ngx_socket_t) -2;
    c->idle = 1;
    c->data = ipc;
    c->read->handler = ngx_http_events_ipc_watcher;
    c->read->log = cycle->log;

    ipc->watcher = c;

    return NGX_OK;
}


static void
ngx_http_events_ipc_watcher(ngx_event_t *ev)
{
    ngx_uint_t              h;
    ngx_connection_t       *c;
    ngx_http_events_ipc_t  *ipc;

    c = ev->data;
    ipc = c->data;

    if (!c->close) {
        return;
    }

    ngx_log_error(NGX_LOG_INFO, ev->log, 0,
                  "events: shutting down, closing streams");

    ngx_http_events_ipc_unwatch(ipc);

    for (h = 0; h < ipc->nshutdown; h++) {
        ipc->shutdown[h]((ngx_cycle_t *) ngx_cycle);
    }
}


static void
ngx_http_events_ipc_unwatch(ngx_http_events_ipc_t *ipc)
{
    ngx_connection_t  *c;

    c = ipc->watcher;

    if (c == NULL) {
        return;
    }

    ipc->watcher = NULL;

    /*
     * ngx_free_connection() clears cycle->files[c->fd] when it holds c
     * (poll, select): an fd of -1 would read before the array; 0 is
     * safe, files[0] was given back to its owner in watch()
     */
    c->fd = 0;
    ngx_free_connection(c);
    c->fd = (ngx_socket_t) -1;
}
