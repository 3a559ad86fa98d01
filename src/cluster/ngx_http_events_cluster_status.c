
/*
 * Copyright (C) ngx_http_events_module authors
 */


/*
 * The cluster's part of events_status: the Redis it follows (without
 * the password), this node's tail of the log and the outcomes of its
 * appends, as JSON and as Prometheus metrics.  Registered with the
 * status page at configuration time; a zone without events_cluster has
 * no section.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_events_module.h"
#include "ngx_http_events_store.h"
#include "ngx_http_events_buf.h"
#include "ngx_http_events_status.h"
#include "ngx_http_events_cluster.h"


/* one consistent look at the zone's counters */
typedef struct {
    uint64_t                    epoch;
    uint64_t                    last_seq;
    uint64_t                    head_seq;
    uint64_t                    lag_ms;
    ngx_pid_t                   tailer;
} ngx_http_events_cluster_status_t;


static ngx_http_events_cluster_t *ngx_http_events_cluster_status_get(
    ngx_http_events_store_t *store, ngx_http_events_cluster_status_t *cs);
static void ngx_http_events_cluster_status_json(ngx_http_events_buf_t *b,
    ngx_http_events_store_t *store);
static void ngx_http_events_cluster_status_text(ngx_http_events_buf_t *b,
    ngx_http_events_store_t *store);


static ngx_http_events_status_section_t  ngx_http_events_cluster_status = {
    ngx_http_events_cluster_status_json,
    ngx_http_events_cluster_status_text
};


ngx_int_t
ngx_http_events_cluster_status_register(ngx_conf_t *cf)
{
    return ngx_http_events_status_register(cf,
                                           &ngx_http_events_cluster_status);
}


static ngx_http_events_cluster_t *
ngx_http_events_cluster_status_get(ngx_http_events_store_t *store,
    ngx_http_events_cluster_status_t *cs)
{
    ngx_http_events_cluster_t     *cl;
    ngx_http_events_cluster_sh_t  *sh;

    if (store->remote == NULL) {
        return NULL;
    }

    cl = store->remote->data;
    sh = cl->sh;

    ngx_shmtx_lock(&cl->shpool->mutex);

    cs->epoch = sh->epoch;
    cs->last_seq = sh->last_seq;
    cs->head_seq = ngx_max(sh->head_seq, sh->last_seq);
    cs->lag_ms = sh->lag_ms;
    cs->tailer = sh->lease_pid;

    ngx_shmtx_unlock(&cl->shpool->mutex);

    return cl;
}


static void
ngx_http_events_cluster_status_json(ngx_http_events_buf_t *b,
    ngx_http_events_store_t *store)
{
    ngx_http_events_cluster_t         *cl;
    ngx_http_events_cluster_sh_t      *sh;
    ngx_http_events_cluster_status_t   cs;

    cl = ngx_http_events_cluster_status_get(store, &cs);
    if (cl == NULL) {
        return;
    }

    sh = cl->sh;

    ngx_http_events_buf_literal(b, ",\"cluster\":{\"url\":");
    ngx_http_events_buf_str(b, cl->redis.url.data, cl->redis.url.len);
    ngx_http_events_buf_literal(b, ",\"prefix\":");
    ngx_http_events_buf_str(b, cl->prefix.data, cl->prefix.len);

    /* where this worker's connection went: the host's name can move */
    ngx_http_events_buf_literal(b, ",\"address\":");

    if (cl->rd.state == NGX_HTTP_EVENTS_REDIS_READY && cl->rd.pc.name) {
        ngx_http_events_buf_str(b, cl->rd.pc.name->data,
                                cl->rd.pc.name->len);

    } else {
        ngx_http_events_buf_literal(b, "null");
    }

    ngx_http_events_buf_printf(b, ",\"connected\":%s,\"caughtUp\":%s,"
                    "\"epoch\":\"%016uxL\",\"lastSeq\":%uL,"
                    "\"headSeq\":%uL,\"lagEvents\":%uL,\"lagMs\":%uL,"
                    "\"tailerPid\":%P,\"appended\":%uA,\"repeats\":%uA,"
                    "\"conflicts\":%uA,\"unavailable\":%uA,"
                    "\"unreplicated\":%uA,"
                    "\"tailed\":%uA,\"tailReads\":%uA,"
                    "\"epochResets\":%uA,"
                    "\"reconnects\":%uA,\"errors\":%uA,\"asks\":%uA,"
                    "\"appendScripts\":%uA,\"appendPosts\":%uA,"
                    "\"webhooks\":{\"claimed\":%uA,\"heldElsewhere\":%uA,"
                    "\"endedElsewhere\":%uA}}",
                    sh->connected ? "true" : "false",
                    sh->caught_up ? "true" : "false",
                    cs.epoch, cs.last_seq, cs.head_seq,
                    cs.head_seq - cs.last_seq, cs.lag_ms, cs.tailer,
                    sh->appended, sh->repeats, sh->conflicts,
                    sh->unavailable, sh->unreplicated, sh->tailed,
                    sh->tail_reads, sh->resets,
                    sh->reconnects, sh->errors, sh->asks, sh->scripts,
                    sh->posts, sh->wh_claimed,
                    sh->wh_taken, sh->wh_elsewhere);
}


static void
ngx_http_events_cluster_status_text(ngx_http_events_buf_t *b,
    ngx_http_events_store_t *store)
{
    ngx_http_events_cluster_t         *cl;
    ngx_http_events_cluster_sh_t      *sh;
    ngx_http_events_cluster_status_t   cs;

    cl = ngx_http_events_cluster_status_get(store, &cs);
    if (cl == NULL) {
        return;
    }

    sh = cl->sh;

    ngx_http_events_status_metric(b, store, "events_cluster_connected",
                  "gauge", "1 when this node's tailer is connected to "
                  "Redis.", sh->connected ? 1 : 0);
    ngx_http_events_status_metric(b, store, "events_cluster_caught_up",
                  "gauge", "1 when the ring has caught up with the log.",
                  sh->caught_up ? 1 : 0);
    ngx_http_events_status_metric(b, store, "events_cluster_last_seq",
                  "gauge", "The newest seq tailed into the ring.",
                  cs.last_seq);
    ngx_http_events_status_metric(b, store, "events_cluster_head_seq",
                  "gauge", "The newest seq of the log this node saw.",
                  cs.head_seq);
    ngx_http_events_status_metric(b, store, "events_cluster_lag_events",
                  "gauge", "Events in the log not yet in the ring.",
                  cs.head_seq - cs.last_seq);
    ngx_http_events_status_metric(b, store, "events_cluster_lag_ms",
                  "gauge", "From append to the ring, the last event.",
                  cs.lag_ms);
    ngx_http_events_status_metric(b, store, "events_cluster_tailer_pid",
                  "gauge", "The worker that tails the log.",
                  (uint64_t) cs.tailer);
    ngx_http_events_status_metric(b, store, "events_cluster_appended_total",
                  "counter", "Events this node appended to the log.",
                  sh->appended);
    ngx_http_events_status_metric(b, store, "events_cluster_repeats_total",
                  "counter", "Appends answered with an existing event.",
                  sh->repeats);
    ngx_http_events_status_metric(b, store,
                  "events_cluster_conflicts_total", "counter",
                  "Appends refused: an id with another body.",
                  sh->conflicts);
    ngx_http_events_status_metric(b, store,
                  "events_cluster_unavailable_total", "counter",
                  "Appends answered 503: Redis unreachable.",
                  sh->unavailable);
    ngx_http_events_status_metric(b, store,
                  "events_cluster_unreplicated_total", "counter",
                  "Appends answered 503: fewer replicas than wait=.",
                  sh->unreplicated);
    ngx_http_events_status_metric(b, store, "events_cluster_tailed_total",
                  "counter", "Events tailed from the log into the ring.",
                  sh->tailed);
    ngx_http_events_status_metric(b, store,
                  "events_cluster_tail_reads_total", "counter",
                  "Reads of the log that brought events (tailed / reads: "
                  "events a read).", sh->tail_reads);
    ngx_http_events_status_metric(b, store,
                  "events_cluster_epoch_resets_total", "counter",
                  "New epochs of the log adopted.", sh->resets);
    ngx_http_events_status_metric(b, store,
                  "events_cluster_reconnects_total", "counter",
                  "Connections to Redis lost.", sh->reconnects);
    ngx_http_events_status_metric(b, store, "events_cluster_errors_total",
                  "counter", "Unexpected answers from Redis, and names "
                  "not resolved.", sh->errors);
    ngx_http_events_status_metric(b, store, "events_cluster_asks_total",
                  "counter", "ASK redirects followed (a slot migrating).",
                  sh->asks);
    ngx_http_events_status_metric(b, store,
                  "events_cluster_append_scripts_total", "counter",
                  "Append scripts run in Redis (POSTs of a turn share "
                  "one).", sh->scripts);
    ngx_http_events_status_metric(b, store,
                  "events_cluster_append_posts_total", "counter",
                  "POSTs sent in those scripts.", sh->posts);
    ngx_http_events_status_metric(b, store,
                  "events_cluster_webhook_claims_total", "counter",
                  "Webhook deliveries this node claimed to attempt.",
                  sh->wh_claimed);
    ngx_http_events_status_metric(b, store,
                  "events_cluster_webhook_held_elsewhere_total", "counter",
                  "Webhook claims found held by another node.",
                  sh->wh_taken);
    ngx_http_events_status_metric(b, store,
                  "events_cluster_webhook_ended_elsewhere_total", "counter",
                  "Webhook deliveries another node had ended.",
                  sh->wh_elsewhere);
}


/*
 * Readiness: this node serves the cluster's log while one of its
 * workers holds the tail lease, is alive, and is connected to Redis
 * (then POSTs reach Redis too: the same address), and its ring has
 * caught up.  A balancer takes a node out while its link is down.
 */

ngx_int_t
ngx_http_events_cluster_health(void *data, ngx_pool_t *pool,
    ngx_str_t *reason, ngx_str_t *detail)
{
    ngx_http_events_cluster_t  *cl = data;

    u_char                        *p;
    size_t                         len;
    ngx_pid_t                      pid;
    ngx_msec_t                     expires, since;
    ngx_uint_t                     connected, caught_up, gone;
    ngx_http_events_cluster_sh_t  *sh;
    u_char                         error[96];

    sh = cl->sh;

    ngx_shmtx_lock(&cl->shpool->mutex);

    pid = sh->lease_pid;
    expires = sh->lease_expires;
    connected = sh->connected;
    caught_up = sh->caught_up;
    since = sh->link_since;
    len = sh->link_error_len;
    ngx_memcpy(error, sh->link_error, len);

    ngx_shmtx_unlock(&cl->shpool->mutex);

    gone = pid == 0 || (ngx_msec_int_t) (ngx_current_msec - expires) > 0
           || (kill(pid, 0) == -1 && ngx_errno == NGX_ESRCH);

    if (!gone && connected && caught_up) {
        return NGX_OK;
    }

    p = ngx_pnalloc(pool, 256 + cl->redis.url.len + len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    detail->data = p;

    if (gone) {
        ngx_str_set(reason, "cluster_link_down");
        p = ngx_sprintf(p, "no live worker of this node holds the tail "
                        "lease of %V (another takes it within 3 s)",
                        &cl->redis.url);

    } else if (!connected) {
        ngx_str_set(reason, "cluster_link_down");
        p = ngx_sprintf(p, "the tailing worker %P has no connection to "
                        "%V for %M ms", pid, &cl->redis.url,
                        (ngx_msec_t) (ngx_current_msec - since));

        if (len) {
            p = ngx_sprintf(p, " (last error: %*s)", len, error);
        }

        p = ngx_sprintf(p, "; POSTs answer 503 cluster_unavailable");

    } else {
        ngx_str_set(reason, "cluster_catching_up");
        p = ngx_sprintf(p, "this node reads the log from %V; reads answer "
                        "503 cluster_catching_up until it has",
                        &cl->redis.url);
    }

    detail->len = p - detail->data;

    return NGX_DECLINED;
}
