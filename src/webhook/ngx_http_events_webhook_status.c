
/*
 * Copyright (C) ngx_http_events_module authors
 */


/*
 * The webhooks' part of events_status: the dispatcher, the queue and the
 * outcomes of a zone, as JSON and as Prometheus metrics.  Registered with
 * the status page at configuration time, so the page knows nothing of
 * webhooks; written with the bounded builder and the page's one metric
 * writer.  A zone no events_webhooks location serves has no section.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_events_module.h"
#include "ngx_http_events_store.h"
#include "ngx_http_events_buf.h"
#include "ngx_http_events_status.h"
#include "ngx_http_events_webhook.h"


/* one metric and where its value is in the statistics */
typedef struct {
    const char                 *name;
    const char                 *kind;
    const char                 *help;
    size_t                      offset;
} ngx_http_events_webhook_status_metric_t;


static void ngx_http_events_webhook_status_json(ngx_http_events_buf_t *b,
    ngx_http_events_store_t *store);
static void ngx_http_events_webhook_status_text(ngx_http_events_buf_t *b,
    ngx_http_events_store_t *store);


static ngx_http_events_status_section_t  ngx_http_events_webhook_status = {
    ngx_http_events_webhook_status_json,
    ngx_http_events_webhook_status_text
};


#define ngx_http_events_webhook_stat(field)                                   \
    offsetof(ngx_http_events_webhook_stats_t, field)


static ngx_http_events_webhook_status_metric_t
    ngx_http_events_webhook_status_metrics[] = {

    { "events_webhook_endpoints", "gauge",
      "Webhook endpoints.", ngx_http_events_webhook_stat(endpoints) },

    { "events_webhook_endpoints_disabled", "gauge",
      "Webhook endpoints disabled.", ngx_http_events_webhook_stat(disabled) },

    { "events_webhook_pending", "gauge",
      "Deliveries queued or in flight.",
      ngx_http_events_webhook_stat(pending) },

    { "events_webhook_in_flight", "gauge",
      "Attempts in flight.", ngx_http_events_webhook_stat(inflight) },


    { "events_webhook_delivered_total", "counter",
      "Deliveries that succeeded.", ngx_http_events_webhook_stat(ok) },

    { "events_webhook_failed_total", "counter",
      "Deliveries that ended failed.", ngx_http_events_webhook_stat(failed) },

    { "events_webhook_expired_total", "counter",
      "Deliveries whose event left the ring.",
      ngx_http_events_webhook_stat(expired) },

    { "events_webhook_aborted_total", "counter",
      "Deliveries abandoned: the endpoint was deleted or disabled.",
      ngx_http_events_webhook_stat(aborted) },

    { "events_webhook_attempts_total", "counter",
      "Attempts made.", ngx_http_events_webhook_stat(attempts) },

    { "events_webhook_retries_total", "counter",
      "Retries scheduled.", ngx_http_events_webhook_stat(retries) },

    { NULL, NULL, NULL, 0 }
};


ngx_int_t
ngx_http_events_webhook_status_register(ngx_conf_t *cf)
{
    return ngx_http_events_status_register(cf,
                                           &ngx_http_events_webhook_status);
}


static void
ngx_http_events_webhook_status_json(ngx_http_events_buf_t *b,
    ngx_http_events_store_t *store)
{
    ngx_uint_t                       i;
    ngx_http_events_webhook_stats_t  ws;

    if (store->whcf == NULL) {
        return;
    }

    ngx_http_events_webhook_stats(store, &ws);

    ngx_http_events_buf_printf(b, ",\"webhooks\":{\"dispatcherPid\":%P,"
                               "\"endpoints\":%uL,\"disabled\":%uL,"
                               "\"pending\":%uL,\"inFlight\":%uL,"
                               "\"oldestPendingAgeMs\":%uL,",
                               ws.owner, ws.endpoints, ws.disabled,
                               ws.pending, ws.inflight,
                               ws.oldest_pending_ms);

    ngx_http_events_buf_printf(b, "\"ok\":%uL,\"failed\":%uL,"
                               "\"expired\":%uL,\"aborted\":%uL,"
                               "\"attempts\":%uL,\"retries\":%uL,"
                               "\"errors\":{",
                               ws.ok, ws.failed, ws.expired, ws.aborted,
                               ws.attempts, ws.retries);

    for (i = 1; i < NGX_HTTP_EVENTS_E_MAX; i++) {
        ngx_http_events_buf_printf(b, "%s\"%s\":%uL", i > 1 ? "," : "",
                                   ngx_http_events_webhook_errors[i],
                                   ws.errors[i]);
    }

    ngx_http_events_buf_literal(b, "}}");
}


static void
ngx_http_events_webhook_status_text(ngx_http_events_buf_t *b,
    ngx_http_events_store_t *store)
{
    ngx_str_t                                 error;
    ngx_uint_t                                i;
    ngx_http_events_webhook_stats_t           ws;
    ngx_http_events_webhook_status_metric_t  *m;

    if (store->whcf == NULL) {
        return;
    }

    ngx_http_events_webhook_stats(store, &ws);

    for (m = ngx_http_events_webhook_status_metrics; m->name; m++) {
        ngx_http_events_status_metric(b, store, m->name, m->kind, m->help,
                                *(uint64_t *) ((u_char *) &ws + m->offset));
    }

    /* seconds, the base unit, from the milliseconds of the JSON */
    ngx_http_events_status_help(b, "events_webhook_oldest_pending_age_seconds",
                                "gauge",
                                "Age of the oldest delivery not done.");
    ngx_http_events_status_sample(b, store,
                                  "events_webhook_oldest_pending_age_seconds",
                                  NULL, NULL, ws.oldest_pending_ms, 1);

    /* a pid, not a counter */
    ngx_http_events_status_metric(b, store, "events_webhook_dispatcher_pid",
                                  "gauge", "The worker that dispatches.",
                                  (uint64_t) ws.owner);

    ngx_http_events_status_help(b, "events_webhook_errors_total", "counter",
                                "Failed attempts, by error.");

    for (i = 1; i < NGX_HTTP_EVENTS_E_MAX; i++) {
        error.data = (u_char *) ngx_http_events_webhook_errors[i];
        error.len = ngx_strlen(error.data);

        ngx_http_events_status_sample(b, store,
                                      "events_webhook_errors_total",
                                      "error", &error, ws.errors[i], 0);
    }
}
