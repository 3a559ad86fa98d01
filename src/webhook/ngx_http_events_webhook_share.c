
/*
 * Copyright (C) ngx_http_events_module authors
 */


/*
 * Webhook endpoints made through the API on a cluster's zone are the
 * same on every node.  A change on one node (create, update, enable,
 * rotate, delete) is published through the zone's remote as the
 * endpoint's text (its spec, secrets included); every node's cluster
 * code reads the published set when it changed and gives it back here,
 * where it is applied to the zone: endpoints missing here are made with
 * the same id and secret, newer ones (by their update time) replace
 * what is here, and a deleted one (a tombstone with its time) goes
 * unless it changed here since.  Static
 * endpoints and handlers are each node's configuration, never touched.
 *
 * The text is the state file's form of an endpoint, written by the same
 * ngx_http_events_webhook_state_spec_text(), with its own numbers in
 * place of the delivery history, which stays each node's.
 *
 * An endpoint's failure state (disabled, failing since, paused until)
 * is shared too, static endpoints' included: the node where it changed
 * publishes it, and every node merges what was published into its own
 * (ngx_http_events_webhook_share_state_apply()), so an endpoint
 * disabled after failing on one node is disabled on all.
 *
 * The attempt log is shared the same way: each node's attempt records
 * go to the cluster and come back into the other nodes' logs, so the
 * attempts of an endpoint on any node are those of every node.  The
 * record is this build's struct (the nodes of a cluster run one version
 * of the module with one events_webhook_log_excerpt).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <jansson.h>

#include "ngx_http_events_module.h"
#include "ngx_http_events_store.h"
#include "ngx_http_events_webhook_shm.h"


typedef struct {
    json_t                         *json;
    ngx_http_events_webhook_spec_t  spec;
    json_int_t                      n[5];
    json_int_t                      deleted;        /* 0: not deleted */
} ngx_http_events_webhook_shared_t;


static ngx_int_t ngx_http_events_webhook_share_gone(
    ngx_http_events_store_t *store, ngx_str_t *tenant, ngx_str_t *id,
    ngx_pool_t *pool);
static size_t ngx_http_events_webhook_share_size(
    ngx_http_events_webhook_endpoint_t *ep);
static u_char *ngx_http_events_webhook_share_text(
    ngx_http_events_webhook_endpoint_t *ep, u_char *p);
static void ngx_http_events_webhook_share_one(ngx_http_events_store_t *store,
    ngx_http_events_webhook_sh_t *wh, ngx_http_events_webhook_shared_t *sh);
static void ngx_http_events_webhook_share_count(
    ngx_http_events_webhook_endpoint_t *ep,
    ngx_http_events_webhook_attempt_t *a);
static void ngx_http_events_webhook_share_state_one(
    ngx_http_events_webhook_sh_t *wh, ngx_http_events_webhook_fstate_t *st);


ngx_int_t
ngx_http_events_webhook_share_publish(ngx_http_events_store_t *store,
    ngx_str_t *tenant, ngx_str_t *id, ngx_pool_t *pool)
{
    u_char                              *buf;
    size_t                               size, need;
    ngx_str_t                            text;
    ngx_uint_t                           tries;
    ngx_http_events_webhook_sh_t        *wh;
    ngx_http_events_webhook_endpoint_t  *ep;

    if (store->remote == NULL || store->remote->wh_publish == NULL) {
        return NGX_OK;
    }

    buf = NULL;
    size = 0;

    /* the memory is taken outside the lock, the size found under it */

    for (tries = 0; tries < 3; tries++) {

        ngx_shmtx_lock(&store->shpool->mutex);

        wh = ngx_http_events_webhook_shm(store);
        ep = wh ? ngx_http_events_webhook_find(wh, tenant, id) : NULL;

        if (ep == NULL) {
            ngx_shmtx_unlock(&store->shpool->mutex);
            return ngx_http_events_webhook_share_gone(store, tenant, id,
                                                      pool);
        }

        need = ngx_http_events_webhook_share_size(ep);

        if (need <= size) {
            text.data = buf;
            text.len = ngx_http_events_webhook_share_text(ep, buf) - buf;

            ngx_shmtx_unlock(&store->shpool->mutex);

            return store->remote->wh_publish(store->remote->data, tenant,
                                             id, &text);
        }

        ngx_shmtx_unlock(&store->shpool->mutex);

        buf = ngx_pnalloc(pool, need);
        if (buf == NULL) {
            return NGX_ERROR;
        }

        size = need;
    }

    return NGX_ERROR;
}


/*
 * Deleted: a tombstone with the time, not an absence, so that a node
 * never takes an endpoint not yet published for one deleted elsewhere
 */

static ngx_int_t
ngx_http_events_webhook_share_gone(ngx_http_events_store_t *store,
    ngx_str_t *tenant, ngx_str_t *id, ngx_pool_t *pool)
{
    u_char     *p;
    ngx_str_t   text;

    p = ngx_pnalloc(pool, 6 * (tenant->len + id->len) + 64 + NGX_INT64_LEN);
    if (p == NULL) {
        return NGX_ERROR;
    }

    text.data = p;
    p = ngx_cpymem(p, "{\"id\":", 6);
    p = ngx_http_events_webhook_state_str(p, id->data, id->len);
    p = ngx_cpymem(p, ",\"tenant\":", 10);
    p = ngx_http_events_webhook_state_str(p, tenant->data, tenant->len);
    p = ngx_sprintf(p, ",\"deleted\":%uL}", ngx_http_events_webhook_now());
    text.len = p - text.data;

    return store->remote->wh_publish(store->remote->data, tenant, id, &text);
}


static size_t
ngx_http_events_webhook_share_size(ngx_http_events_webhook_endpoint_t *ep)
{
    return ngx_http_events_webhook_state_spec_size(ep)
           + sizeof(",\"n\":[,,,,]}") + 5 * NGX_INT64_LEN;
}


static u_char *
ngx_http_events_webhook_share_text(ngx_http_events_webhook_endpoint_t *ep,
    u_char *p)
{
    p = ngx_http_events_webhook_state_spec_text(p, ep);

    /*
     * previous expires, manually disabled, rate, updated, and where its
     * scan is (for a new one, the head it was made at: another node's
     * copy starts there)
     */
    return ngx_sprintf(p, ",\"n\":[%L,%L,%L,%L,%L]}",
                       (int64_t) ep->previous_expires_ms,
                       (int64_t) (ep->disabled
                                  == NGX_HTTP_EVENTS_WH_MANUALLY),
                       (int64_t) ep->rate_limit, (int64_t) ep->updated_ms,
                       (int64_t) ep->scan_seq);
}


/*
 * The published set, from the cluster: parsed before the lock (what
 * does not parse is logged and left out), applied under it.
 */

ngx_int_t
ngx_http_events_webhook_share_apply(ngx_http_events_store_t *store,
    ngx_str_t *texts, ngx_uint_t n, ngx_pool_t *pool)
{
    ngx_uint_t                           i, k;
    json_error_t                         err;
    ngx_http_events_webhook_sh_t        *wh;
    ngx_http_events_webhook_shared_t    *all;

    all = ngx_pcalloc(pool, (n + 1) * sizeof(ngx_http_events_webhook_shared_t));
    if (all == NULL) {
        return NGX_ERROR;
    }

    for (i = 0, k = 0; i < n; i++) {
        all[k].json = json_loadb((char *) texts[i].data, texts[i].len, 0,
                                 &err);

        if (all[k].json
            && json_unpack(all[k].json, "{s:s%,s:s%,s:I}",
                           "id", &all[k].spec.id.data, &all[k].spec.id.len,
                           "tenant", &all[k].spec.tenant.data,
                           &all[k].spec.tenant.len,
                           "deleted", &all[k].deleted)
               == 0
            && all[k].deleted > 0)
        {
            k++;
            continue;
        }

        if (all[k].json == NULL
            || ngx_http_events_webhook_state_spec(all[k].json, &all[k].spec)
               != NGX_OK
            || json_unpack(json_object_get(all[k].json, "n"), "[IIIII]",
                           &all[k].n[0], &all[k].n[1], &all[k].n[2],
                           &all[k].n[3], &all[k].n[4])
               != 0)
        {
            ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                          "events zone \"%V\": a shared webhook endpoint "
                          "that cannot be read, skipped", &store->name);

            if (all[k].json) {
                json_decref(all[k].json);
                all[k].json = NULL;
            }

            continue;
        }

        all[k].deleted = 0;
        k++;
    }

    ngx_shmtx_lock(&store->shpool->mutex);

    wh = ngx_http_events_webhook_shm(store);

    for (i = 0; wh && i < k; i++) {
        ngx_http_events_webhook_share_one(store, wh, &all[i]);
    }

    if (wh) {
        wh->version++;
    }

    ngx_shmtx_unlock(&store->shpool->mutex);

    for (i = 0; i < k; i++) {
        json_decref(all[i].json);
    }

    return wh ? NGX_OK : NGX_ERROR;
}


static void
ngx_http_events_webhook_share_one(ngx_http_events_store_t *store,
    ngx_http_events_webhook_sh_t *wh, ngx_http_events_webhook_shared_t *sh)
{
    uint64_t                             now, head;
    ngx_http_events_webhook_spec_t       merged, *spec;
    ngx_http_events_webhook_endpoint_t  *ep;

    spec = &sh->spec;
    now = ngx_http_events_webhook_now();

    ep = ngx_http_events_webhook_find(wh, &spec->tenant, &spec->id);

    if (sh->deleted) {
        if (ep && !ep->is_static && !ep->is_handler
            && ep->updated_ms <= (uint64_t) sh->deleted)
        {
            ngx_log_error(NGX_LOG_NOTICE, ngx_cycle->log, 0,
                          "events webhook \"%V\" deleted on another node",
                          &spec->id);
            ngx_http_events_webhook_free(store, wh, ep);
        }

        return;
    }

    if (ep && (ep->is_static || ep->is_handler
               || ep->updated_ms >= (uint64_t) sh->n[3]))
    {
        /* this node's configuration, or as new as the published one */
        return;
    }

    if (ep == NULL) {
        spec->enabled = sh->n[1] ? 0 : 1;
        spec->rate_limit = (ngx_uint_t) sh->n[2];

        ep = ngx_http_events_webhook_create_locked(store, wh, spec,
                                                   store->whcf);
        if (ep == NULL) {
            ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                          "events zone \"%V\": no room for the shared "
                          "webhook endpoint \"%V\"", &store->name,
                          &spec->id);
            return;
        }

        /* from where its node made it, if this ring has that far */
        head = ngx_http_events_store_head(store);

        if ((uint64_t) sh->n[4] < head) {
            ep->scan_seq = (uint64_t) sh->n[4];
        }

        ep->previous_expires_ms = (uint64_t) sh->n[0];
        ep->updated_ms = (uint64_t) sh->n[3];

        ngx_log_error(NGX_LOG_NOTICE, ngx_cycle->log, 0,
                      "events webhook \"%V\" made on another node",
                      &spec->id);
        return;
    }

    spec->set_url = 1;
    spec->set_patterns = 1;
    spec->set_description = 1;
    spec->set_headers = 1;
    spec->set_meta = 1;
    spec->set_rate = 1;
    spec->rate_limit = (ngx_uint_t) sh->n[2];

    ngx_http_events_webhook_merge(ep, spec, &merged);

    if (ngx_http_events_webhook_set(store, ep, &merged) != NGX_OK) {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "events zone \"%V\": no room to change the shared "
                      "webhook endpoint \"%V\"", &store->name, &spec->id);
        return;
    }

    ngx_memcpy(ep->secret, spec->secret, spec->secret_len);
    ep->secret_len = (u_char) spec->secret_len;
    ngx_memcpy(ep->previous, spec->previous, spec->previous_len);
    ep->previous_len = (u_char) spec->previous_len;
    ep->previous_expires_ms = (uint64_t) sh->n[0];

    /* a disable for failing here since the change stays */
    if (sh->n[1] || ep->disabled == NGX_HTTP_EVENTS_WH_MANUALLY
        || ep->disabled_ms <= (uint64_t) sh->n[3])
    {
        ngx_http_events_webhook_enable(store, ep, sh->n[1] ? 0 : 1, now);
    }

    ep->updated_ms = (uint64_t) sh->n[3];
}


/*
 * An endpoint's failure state changed here (an attempt failed or
 * succeeded after failures, the receiver asked for a pause, the endpoint
 * was disabled): for every node.  Values from under the lock, sent
 * outside it.
 */

void
ngx_http_events_webhook_share_state(ngx_http_events_store_t *store,
    ngx_str_t *tenant, ngx_str_t *id, ngx_http_events_webhook_fstate_t *st,
    ngx_pool_t *pool)
{
    u_char     *p;
    ngx_str_t   text;

    if (store->remote == NULL || store->remote->wh_state == NULL) {
        return;
    }

    p = ngx_pnalloc(pool, 6 * (tenant->len + id->len) + 64
                          + 5 * (NGX_INT64_LEN + 1));
    if (p == NULL) {
        return;
    }

    text.data = p;
    p = ngx_cpymem(p, "{\"id\":", 6);
    p = ngx_http_events_webhook_state_str(p, id->data, id->len);
    p = ngx_cpymem(p, ",\"tenant\":", 10);
    p = ngx_http_events_webhook_state_str(p, tenant->data, tenant->len);
    p = ngx_sprintf(p, ",\"s\":[%L,%L,%L,%L,%L]}", (int64_t) st->disabled,
                    (int64_t) st->disabled_ms, (int64_t) st->failing_since_ms,
                    (int64_t) st->paused_until_ms,
                    (int64_t) ngx_http_events_webhook_now());
    text.len = p - text.data;

    if (store->remote->wh_state(store->remote->data, tenant, id, &text)
        != NGX_OK)
    {
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "events webhook \"%V\": its failure state was not "
                      "shared with the cluster (Redis is away)", id);
    }
}


/*
 * Every endpoint's failure state, as last published by any node.  A
 * state older than the endpoint's last change through the API (or its
 * configuration on this node) is passed over: an enable made since
 * ends what it said.  Otherwise it is merged, the same whatever the
 * order and however often it comes: a disable is taken (only the API
 * enables), failing since the earliest time unless this node saw a
 * success since, failing no more unless this node saw a failure since,
 * paused until the latest time.
 */

ngx_int_t
ngx_http_events_webhook_share_state_apply(ngx_http_events_store_t *store,
    ngx_str_t *texts, ngx_uint_t n, ngx_pool_t *pool)
{
    json_t                              *json;
    ngx_str_t                            id, tenant;
    json_int_t                           v[5];
    ngx_uint_t                           i, k;
    json_error_t                         err;
    ngx_http_events_webhook_sh_t        *wh;
    ngx_http_events_webhook_fstate_t    *all;

    all = ngx_pcalloc(pool, (n + 1) * sizeof(ngx_http_events_webhook_fstate_t));
    if (all == NULL) {
        return NGX_ERROR;
    }

    for (i = 0, k = 0; i < n; i++) {
        json = json_loadb((char *) texts[i].data, texts[i].len, 0, &err);

        if (json == NULL
            || json_unpack(json, "{s:s%,s:s%,s:[IIIII]}",
                           "id", &id.data, &id.len,
                           "tenant", &tenant.data, &tenant.len,
                           "s", &v[0], &v[1], &v[2], &v[3], &v[4])
               != 0
            || id.len > NGX_HTTP_EVENTS_WH_MAX_ID
            || tenant.len > NGX_HTTP_EVENTS_MAX_TENANT
            || v[0] < 0 || v[0] > NGX_HTTP_EVENTS_WH_UNVERIFIED)
        {
            ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                          "events zone \"%V\": a shared webhook failure "
                          "state that cannot be read, skipped",
                          &store->name);

            if (json) {
                json_decref(json);
            }

            continue;
        }

        all[k].id.data = ngx_pstrdup(pool, &id);
        all[k].id.len = id.len;
        all[k].tenant.data = ngx_pstrdup(pool, &tenant);
        all[k].tenant.len = tenant.len;
        all[k].disabled = (ngx_uint_t) v[0];
        all[k].disabled_ms = (uint64_t) v[1];
        all[k].failing_since_ms = (uint64_t) v[2];
        all[k].paused_until_ms = (uint64_t) v[3];
        all[k].stamp_ms = (uint64_t) v[4];

        json_decref(json);

        if ((id.len && all[k].id.data == NULL)
            || (tenant.len && all[k].tenant.data == NULL))
        {
            return NGX_ERROR;
        }

        k++;
    }

    ngx_shmtx_lock(&store->shpool->mutex);

    wh = ngx_http_events_webhook_shm(store);

    for (i = 0; wh && i < k; i++) {
        ngx_http_events_webhook_share_state_one(wh, &all[i]);
    }

    if (wh) {
        wh->version++;
    }

    ngx_shmtx_unlock(&store->shpool->mutex);

    return wh ? NGX_OK : NGX_ERROR;
}


static void
ngx_http_events_webhook_share_state_one(ngx_http_events_webhook_sh_t *wh,
    ngx_http_events_webhook_fstate_t *st)
{
    ngx_http_events_webhook_endpoint_t  *ep;

    ep = ngx_http_events_webhook_find(wh, &st->tenant, &st->id);

    if (ep == NULL || ep->is_handler || st->stamp_ms <= ep->updated_ms) {
        return;
    }

    if (st->disabled && !ep->disabled) {
        ep->disabled = (u_char) st->disabled;
        ep->disabled_ms = st->disabled_ms;

        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "events webhook \"%V\" disabled on another node",
                      &st->id);
    }

    if (st->failing_since_ms) {
        if (st->stamp_ms > ep->last_success_ms
            && (ep->failing_since_ms == 0
                || st->failing_since_ms < ep->failing_since_ms))
        {
            ep->failing_since_ms = st->failing_since_ms;
        }

    } else if (st->stamp_ms > ep->last_failure_ms) {
        ep->failing_since_ms = 0;
    }

    ep->paused_until_ms = ngx_max(ep->paused_until_ms, st->paused_until_ms);
}


/*
 * Another node's attempt in the endpoint's stats, as dispatch_outcome()
 * counts this node's: so "ok", "failed", "expired" and the last times
 * and error are the cluster's (since this node started).
 */

static void
ngx_http_events_webhook_share_count(ngx_http_events_webhook_endpoint_t *ep,
    ngx_http_events_webhook_attempt_t *a)
{
    uint64_t  ended;

    /* when its node's dispatcher took the answer, as it counts it */
    ended = a->started_ms + a->duration_ms;

    ep->attempts++;

    switch (a->result) {

    case NGX_HTTP_EVENTS_WH_SUCCEEDED:
        ep->ok++;
        ep->last_success_ms = ngx_max(ep->last_success_ms, ended);
        return;

    case NGX_HTTP_EVENTS_WH_EXPIRED:
        ep->expired++;
        return;

    case NGX_HTTP_EVENTS_WH_FAILED_FINAL:
    case NGX_HTTP_EVENTS_WH_ABORTED:
        ep->failed++;
        break;

    default:
        break;
    }

    if (ended >= ep->last_failure_ms) {
        ep->last_failure_ms = ended;
        ep->last_error = a->error;
    }
}


/* another node's attempt, into this node's log of the endpoint */

void
ngx_http_events_webhook_share_attempt(ngx_http_events_store_t *store,
    ngx_str_t *tenant, ngx_str_t *id, u_char *rec, size_t len)
{
    ngx_http_events_webhook_sh_t        *wh;
    ngx_http_events_webhook_attempt_t   *a;
    ngx_http_events_webhook_endpoint_t  *ep;

    ngx_shmtx_lock(&store->shpool->mutex);

    wh = ngx_http_events_webhook_shm(store);
    ep = wh ? ngx_http_events_webhook_find(wh, tenant, id) : NULL;

    if (ep && ep->log_size && len == ep->log_entry) {
        a = (ngx_http_events_webhook_attempt_t *)
                (ep->log + (ep->log_next % ep->log_size) * ep->log_entry);

        ngx_memcpy(a, rec, len);
        a->n = ++ep->log_next;
        wh->version++;

        /* the endpoint's counters and last times: every node's attempts */
        ngx_http_events_webhook_share_count(ep, a);
    }

    ngx_shmtx_unlock(&store->shpool->mutex);
}
