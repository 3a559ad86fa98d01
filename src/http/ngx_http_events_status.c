
/*
 * Copyright (C) ngx_http_events_module authors
 */


/*
 * events_status: the store's counters as JSON, or in Prometheus text
 * format with "Accept: text/plain" or "?format=prometheus".
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_events_module.h"
#include "ngx_http_events_store.h"
#include "ngx_http_events_status.h"
#include "ngx_http_events_http.h"
#include "ngx_http_events_auth.h"
#include "ngx_http_events_journal.h"
#include "ngx_http_events_webhook.h"


#define NGX_HTTP_EVENTS_STATUS_LEN  8192


static ngx_uint_t ngx_http_events_status_prometheus(ngx_http_request_t *r);
static u_char *ngx_http_events_status_json(u_char *p, ngx_str_t *zone,
    ngx_http_events_stats_t *st);
static u_char *ngx_http_events_status_text(u_char *p, ngx_str_t *zone,
    ngx_http_events_stats_t *st);
static u_char *ngx_http_events_status_journal_json(u_char *p,
    ngx_http_events_store_t *store, ngx_http_events_stats_t *st);
static u_char *ngx_http_events_status_journal_text(u_char *p,
    ngx_str_t *zone, ngx_http_events_stats_t *st);
static u_char *ngx_http_events_status_wh_json(u_char *p,
    ngx_http_events_webhook_stats_t *ws);
static u_char *ngx_http_events_status_wh_text(u_char *p, ngx_str_t *zone,
    ngx_http_events_webhook_stats_t *ws);


ngx_int_t
ngx_http_events_status_handler(ngx_http_request_t *r)
{
    u_char                          *p, *body;
    ngx_int_t                        rc;
    ngx_http_events_webhook_stats_t  ws;
    ngx_str_t                        type;
    ngx_uint_t                       text;
    ngx_http_events_error_t          err;
    ngx_http_events_stats_t         *st;
    ngx_http_events_store_t         *store;
    ngx_http_events_loc_conf_t      *elcf;

    if (!ngx_http_events_auth_access(r, &rc)) {
        return rc;
    }

    if (ngx_http_events_auth_claims(r)
        && !ngx_http_events_auth_claims(r)->admin) {
        ngx_http_discard_request_body(r);
        ngx_http_events_error(&err, 403, "forbidden", NULL, NULL, NULL,
                              "status needs a token with the admin claim");
        return ngx_http_events_http_send_error(r, &err, NULL);
    }

    if (r->method != NGX_HTTP_GET && r->method != NGX_HTTP_HEAD) {
        ngx_str_set(&type, "GET, HEAD");

        if (ngx_http_events_http_add_header(r, "Allow", &type) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ngx_http_discard_request_body(r);
        ngx_http_events_error(&err, 405, "method_not_allowed", NULL, NULL,
                              NULL, "this endpoint allows GET, HEAD");
        return ngx_http_events_http_send_error(r, &err, NULL);
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    elcf = ngx_http_get_module_loc_conf(r, ngx_http_events_module);
    store = elcf->status_zone->data;

    st = ngx_palloc(r->pool, sizeof(ngx_http_events_stats_t));
    body = ngx_pnalloc(r->pool, NGX_HTTP_EVENTS_STATUS_LEN * 2
                                + NGX_HTTP_EVENTS_MAX_WORKERS * 160
                                + (store->journal
                                   ? 6 * store->journal->path.len : 0));
    if (st == NULL || body == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_events_store_stats(store, st);

    text = ngx_http_events_status_prometheus(r);

    if (store->whcf) {
        ngx_http_events_webhook_stats(store, &ws);
    }

    if (text) {
        ngx_str_set(&type, "text/plain; version=0.0.4; charset=utf-8");
        p = ngx_http_events_status_text(body, &store->name, st);
        p = ngx_http_events_status_journal_text(p, &store->name, st);

        if (store->whcf) {
            p = ngx_http_events_status_wh_text(p, &store->name, &ws);
        }

    } else {
        ngx_str_set(&type, "application/json");
        p = ngx_http_events_status_json(body, &store->name, st);

        /* the journal goes inside the object: replace its last brace */
        p = ngx_http_events_status_journal_json(p - 1, store, st);

        if (store->whcf) {
            p--;                                /* the closing brace */
            p = ngx_http_events_status_wh_json(p, &ws);
        }
    }

    r->headers_out.last_modified_time = -1;

    return ngx_http_events_http_send(r, NGX_HTTP_OK, &type, body, p - body);
}


static ngx_uint_t
ngx_http_events_status_prometheus(ngx_http_request_t *r)
{
    ngx_str_t         value;
    ngx_table_elt_t  *accept;

    if (ngx_http_arg(r, (u_char *) "format", 6, &value) == NGX_OK) {
        return value.len == 10
               && ngx_strncmp(value.data, "prometheus", 10) == 0;
    }

    accept = r->headers_in.accept;

    return accept != NULL
           && ngx_strlcasestrn(accept->value.data,
                               accept->value.data + accept->value.len,
                               (u_char *) "text/plain", 10 - 1)
              != NULL;
}


static u_char *
ngx_http_events_status_json(u_char *p, ngx_str_t *zone,
    ngx_http_events_stats_t *st)
{
    ngx_uint_t         i;
    ngx_atomic_uint_t  subscribers, streamed, lagging;

    p = ngx_sprintf(p, "{\"zone\":\"%V\",\"epoch\":\"%016uxL\","
                    "\"events\":{\"stored\":%uL,\"retained\":%uL,"
                    "\"evicted\":%uL,\"expired\":%uL,\"repeats\":%uL,"
                    "\"conflicts\":%uL,\"rejected\":%uL,"
                    "\"oldestSeq\":%uL,\"newestSeq\":%uL,\"types\":%uL},",
                    zone, st->epoch, st->stored, st->retained, st->evicted,
                    st->expired, st->repeats, st->conflicts,
                    st->rejected_full, st->oldest_seq, st->head_seq,
                    st->types);

    p = ngx_sprintf(p, "\"capture\":{\"stored\":%uA,\"invalid\":%uA},"
                    "\"validate\":{\"rejected\":%uA,\"failed\":%uA},",
                    st->counters[NGX_HTTP_EVENTS_CAPTURED],
                    st->counters[NGX_HTTP_EVENTS_CAPTURE_INVALID],
                    st->counters[NGX_HTTP_EVENTS_VALIDATE_REJECTED],
                    st->counters[NGX_HTTP_EVENTS_VALIDATE_FAILED]);

    p = ngx_sprintf(p, "\"ring\":{\"zoneBytes\":%uL,\"bytes\":%uL,"
                    "\"used\":%uL,\"free\":%uL,\"slots\":%uL},"
                    "\"workers\":[",
                    st->zone_size, st->ring_size, st->ring_used,
                    st->ring_size - st->ring_used, st->capacity);

    subscribers = 0;
    streamed = 0;
    lagging = 0;

    for (i = 0; i < st->nworkers; i++) {
        p = ngx_sprintf(p, "%s{\"pid\":%P,\"published\":%uL,"
                        "\"subscribers\":%uA,\"streamed\":%uA,"
                        "\"lagging\":%uA,\"wakeups\":%uA}",
                        i ? "," : "", st->workers[i].pid,
                        st->workers[i].published,
                        st->workers[i].subscribers,
                        st->workers[i].streamed, st->workers[i].lagging,
                        st->workers[i].wakeups);

        subscribers += st->workers[i].subscribers;
        streamed += st->workers[i].streamed;
        lagging += st->workers[i].lagging;
    }

    return ngx_sprintf(p, "],\"streams\":{\"subscribers\":%uA,"
                       "\"streamed\":%uA,\"lagging\":%uA}}",
                       subscribers, streamed, lagging);
}


static u_char *
ngx_http_events_status_text(u_char *p, ngx_str_t *zone,
    ngx_http_events_stats_t *st)
{
    ngx_uint_t  i;

#define ngx_http_events_metric(name, kind, help, value)                       \
    p = ngx_sprintf(p, "# HELP " name " " help "\n# TYPE " name " " kind "\n" \
                    name "{zone=\"%V\"} %uL\n", zone, (uint64_t) (value))

    ngx_http_events_metric("events_stored_total", "counter",
                           "Events stored since the zone was created.",
                           st->stored);
    ngx_http_events_metric("events_evicted_total", "counter",
                           "Events evicted to make room.", st->evicted);
    ngx_http_events_metric("events_expired_total", "counter",
                           "Events dropped by events_retention.",
                           st->expired);
    ngx_http_events_metric("events_repeats_total", "counter",
                           "Idempotent repeats answered from the store.",
                           st->repeats);
    ngx_http_events_metric("events_conflicts_total", "counter",
                           "Writes refused for an id with another body.",
                           st->conflicts);
    ngx_http_events_metric("events_rejected_total", "counter",
                           "Writes refused because the zone was full.",
                           st->rejected_full);
    ngx_http_events_metric("events_captured_total", "counter",
                           "Events captured from proxied responses and "
                           "stored.",
                           st->counters[NGX_HTTP_EVENTS_CAPTURED]);
    ngx_http_events_metric("events_capture_invalid_total", "counter",
                           "Captured events refused (invalid, or vetoed).",
                           st->counters[NGX_HTTP_EVENTS_CAPTURE_INVALID]);
    ngx_http_events_metric("events_validate_rejected_total", "counter",
                           "Events the events_validate hook refused.",
                           st->counters[NGX_HTTP_EVENTS_VALIDATE_REJECTED]);
    ngx_http_events_metric("events_validate_failed_total", "counter",
                           "Events refused because the hook did not "
                           "answer.",
                           st->counters[NGX_HTTP_EVENTS_VALIDATE_FAILED]);
    ngx_http_events_metric("events_retained", "gauge",
                           "Events in the window.", st->retained);
    ngx_http_events_metric("events_oldest_seq", "gauge",
                           "Seq of the oldest event retained.",
                           st->oldest_seq);
    ngx_http_events_metric("events_newest_seq", "gauge",
                           "Seq of the newest event.", st->head_seq);
    ngx_http_events_metric("events_types", "gauge",
                           "Types in the catalog.", st->types);
    ngx_http_events_metric("events_ring_bytes", "gauge",
                           "Bytes of ring.", st->ring_size);
    ngx_http_events_metric("events_ring_used_bytes", "gauge",
                           "Bytes of ring in use.", st->ring_used);

#undef ngx_http_events_metric

    p = ngx_sprintf(p, "# HELP events_published_total Events stored, by "
                    "the worker that stored them.\n"
                    "# TYPE events_published_total counter\n");

    for (i = 0; i < st->nworkers; i++) {
        p = ngx_sprintf(p, "events_published_total{zone=\"%V\",pid=\"%P\"} "
                        "%uL\n", zone, st->workers[i].pid,
                        st->workers[i].published);
    }

#define ngx_http_events_worker_metric(name, kind, help, field)                \
    p = ngx_sprintf(p, "# HELP " name " " help "\n# TYPE " name " " kind     \
                    "\n");                                                    \
    for (i = 0; i < st->nworkers; i++) {                                      \
        p = ngx_sprintf(p, name "{zone=\"%V\",pid=\"%P\"} %uA\n", zone,       \
                        st->workers[i].pid, st->workers[i].field);            \
    }

    ngx_http_events_worker_metric("events_stream_subscribers", "gauge",
                                  "Open streams, by worker.", subscribers);
    ngx_http_events_worker_metric("events_streamed_total", "counter",
                                  "Events written to streams, by worker.",
                                  streamed);
    ngx_http_events_worker_metric("events_stream_lagging_total", "counter",
                                  "Streams cut for not keeping up.",
                                  lagging);
    ngx_http_events_worker_metric("events_wakeups_total", "counter",
                                  "Doorbells answered: news from another "
                                  "worker.", wakeups);

#undef ngx_http_events_worker_metric

    return p;
}


static u_char *
ngx_http_events_status_journal_json(u_char *p, ngx_http_events_store_t *store,
    ngx_http_events_stats_t *st)
{
    ngx_http_events_journal_t  *j;

    static const char  *modes[] = { "off", "interval", "always" };

    j = store->journal;

    if (j == NULL) {
        return ngx_cpymem(p, ",\"journal\":null}",
                          sizeof(",\"journal\":null}") - 1);
    }

    p = ngx_cpymem(p, ",\"journal\":{\"path\":\"",
                   sizeof(",\"journal\":{\"path\":\"") - 1);
    p = (u_char *) ngx_escape_json(p, j->path.data, j->path.len);

    p = ngx_sprintf(p, "\",\"fsync\":\"%s\",\"bytes\":%uL,"
                    "\"segments\":%uL,\"lastFsyncAgeMs\":",
                    modes[j->fsync], st->journal_bytes,
                    st->journal_segments);

    if (st->journal_fsync_age < 0) {
        p = ngx_cpymem(p, "null", 4);

    } else {
        p = ngx_sprintf(p, "%uL", (uint64_t) st->journal_fsync_age);
    }

    return ngx_sprintf(p, ",\"fsyncs\":%uL,\"errors\":%uL,"
                       "\"replayMs\":%uL,\"replayed\":%uL,"
                       "\"cutBytes\":%uL}}",
                       st->journal_fsyncs, st->journal_errors,
                       st->journal_replay_ms, st->journal_replayed,
                       st->journal_cut);
}


static u_char *
ngx_http_events_status_wh_json(u_char *p, ngx_http_events_webhook_stats_t *ws)
{
    ngx_uint_t  i;

    p = ngx_sprintf(p, ",\"webhooks\":{\"dispatcherPid\":%P,"
                    "\"endpoints\":%uL,\"disabled\":%uL,\"pending\":%uL,"
                    "\"inFlight\":%uL,\"oldestPendingAgeMs\":%uL,"
                    "\"ok\":%uL,\"failed\":%uL,\"expired\":%uL,"
                    "\"aborted\":%uL,\"attempts\":%uL,\"retries\":%uL,"
                    "\"errors\":{",
                    ws->owner, ws->endpoints, ws->disabled, ws->pending,
                    ws->inflight, ws->oldest_pending_ms, ws->ok, ws->failed,
                    ws->expired, ws->aborted, ws->attempts, ws->retries);

    for (i = 1; i < NGX_HTTP_EVENTS_E_MAX; i++) {
        p = ngx_sprintf(p, "%s\"%s\":%uL", i > 1 ? "," : "",
                        ngx_http_events_webhook_errors[i], ws->errors[i]);
    }

    return ngx_sprintf(p, "}}}");
}


static u_char *
ngx_http_events_status_journal_text(u_char *p, ngx_str_t *zone,
    ngx_http_events_stats_t *st)
{
    if (!st->journal) {
        return p;
    }

#define ngx_http_events_metric(name, kind, help, fmt, ...)                    \
    p = ngx_sprintf(p, "# HELP " name " " help "\n# TYPE " name " " kind "\n" \
                    name "{zone=\"%V\"} " fmt "\n", zone, __VA_ARGS__)

    ngx_http_events_metric("events_journal_bytes", "gauge",
                           "Bytes in the journal's segments.", "%uL",
                           st->journal_bytes);
    ngx_http_events_metric("events_journal_segments", "gauge",
                           "Segment files in the journal.", "%uL",
                           st->journal_segments);

    if (st->journal_fsync_age >= 0) {
        ngx_http_events_metric("events_journal_last_fsync_age_seconds",
                               "gauge", "Time since the journal's last "
                               "fsync.", "%uL.%03uL",
                               (uint64_t) st->journal_fsync_age / 1000,
                               (uint64_t) st->journal_fsync_age % 1000);
    }

    ngx_http_events_metric("events_journal_fsyncs_total", "counter",
                           "fsyncs of the journal.", "%uL",
                           st->journal_fsyncs);
    ngx_http_events_metric("events_journal_errors_total", "counter",
                           "Journal writes or fsyncs that failed.", "%uL",
                           st->journal_errors);
    ngx_http_events_metric("events_journal_replay_seconds", "gauge",
                           "Time the journal's replay took at start.",
                           "%uL.%03uL", st->journal_replay_ms / 1000,
                           st->journal_replay_ms % 1000);
    ngx_http_events_metric("events_journal_replayed", "gauge",
                           "Events read back from the journal at start.",
                           "%uL", st->journal_replayed);

#undef ngx_http_events_metric

    return p;
}


static u_char *
ngx_http_events_status_wh_text(u_char *p, ngx_str_t *zone,
    ngx_http_events_webhook_stats_t *ws)
{
    ngx_uint_t  i;

#define ngx_http_events_metric(name, kind, help, value)                       \
    p = ngx_sprintf(p, "# HELP " name " " help "\n# TYPE " name " " kind "\n" \
                    name "{zone=\"%V\"} %uL\n", zone, (uint64_t) (value))

    ngx_http_events_metric("events_webhook_endpoints", "gauge",
                           "Webhook endpoints.", ws->endpoints);
    ngx_http_events_metric("events_webhook_endpoints_disabled", "gauge",
                           "Webhook endpoints disabled.", ws->disabled);
    ngx_http_events_metric("events_webhook_pending", "gauge",
                           "Deliveries queued or in flight.", ws->pending);
    ngx_http_events_metric("events_webhook_in_flight", "gauge",
                           "Attempts in flight.", ws->inflight);
    ngx_http_events_metric("events_webhook_oldest_pending_age_ms", "gauge",
                           "Age of the oldest delivery not done.",
                           ws->oldest_pending_ms);
    ngx_http_events_metric("events_webhook_delivered_total", "counter",
                           "Deliveries that succeeded.", ws->ok);
    ngx_http_events_metric("events_webhook_failed_total", "counter",
                           "Deliveries that ended failed.", ws->failed);
    ngx_http_events_metric("events_webhook_expired_total", "counter",
                           "Deliveries whose event left the ring.",
                           ws->expired);
    ngx_http_events_metric("events_webhook_attempts_total", "counter",
                           "Attempts made.", ws->attempts);
    ngx_http_events_metric("events_webhook_retries_total", "counter",
                           "Retries scheduled.", ws->retries);
    ngx_http_events_metric("events_webhook_dispatcher_pid", "gauge",
                           "The worker that dispatches.", ws->owner);

#undef ngx_http_events_metric

    p = ngx_sprintf(p, "# HELP events_webhook_errors_total Failed attempts, "
                    "by error.\n# TYPE events_webhook_errors_total "
                    "counter\n");

    for (i = 1; i < NGX_HTTP_EVENTS_E_MAX; i++) {
        p = ngx_sprintf(p, "events_webhook_errors_total{zone=\"%V\","
                        "error=\"%s\"} %uL\n", zone,
                        ngx_http_events_webhook_errors[i], ws->errors[i]);
    }

    return p;
}
