
/*
 * Copyright (C) ngx_http_events_module authors
 */


/*
 * events_status: a zone's counters as JSON, or in Prometheus text format
 * with "Accept: text/plain" or "?format=prometheus".
 *
 * The page is made of sections.  The store's and the journal's are
 * written here from the core's statistics; a feature above HTTP (the
 * webhooks) registers its own section at configuration time, so this
 * file knows no feature.  Everything goes through the bounded builder:
 * the size of the page depends on the number of workers and on names
 * the configuration chose, so no estimate is trusted.  Names are escaped
 * for each format, and the Prometheus text is what promtool accepts:
 * base units, one TYPE per family, per-worker series by slot.
 *
 * "?ready" asks another question of the same location: whether the zone
 * takes writes, 200 or 503 with the reason, for load balancers.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_events_module.h"
#include "ngx_http_events_store.h"
#include "ngx_http_events_journal.h"
#include "ngx_http_events_buf.h"
#include "ngx_http_events_http.h"
#include "ngx_http_events_auth.h"
#include "ngx_http_events_status.h"


/* a metric of the zone's, in Prometheus text */

typedef struct {
    const char                 *name;
    const char                 *kind;
    const char                 *help;
    size_t                      offset;         /* in the stats */
    ngx_uint_t                  type;
} ngx_http_events_status_zone_metric_t;


#define NGX_HTTP_EVENTS_STAT_U64        0
#define NGX_HTTP_EVENTS_STAT_ATOMIC     1
#define NGX_HTTP_EVENTS_STAT_SECONDS    2       /* uint64_t ms */
#define NGX_HTTP_EVENTS_STAT_AGE        3       /* int64_t ms, -1: none */
#define NGX_HTTP_EVENTS_STAT_UINT       4       /* ngx_uint_t */


#define ngx_http_events_stat(field, type)                                     \
    offsetof(ngx_http_events_stats_t, field), NGX_HTTP_EVENTS_STAT_ ## type
#define ngx_http_events_counter(n)                                            \
    offsetof(ngx_http_events_stats_t, counters)                               \
    + (n) * sizeof(ngx_atomic_uint_t), NGX_HTTP_EVENTS_STAT_ATOMIC


static ngx_uint_t ngx_http_events_status_prometheus(ngx_http_request_t *r);
static ngx_uint_t ngx_http_events_status_ready_asked(ngx_http_request_t *r);
static ngx_int_t ngx_http_events_status_ready(ngx_http_request_t *r,
    ngx_http_events_store_t *store, ngx_http_events_stats_t *st);
static void ngx_http_events_status_json(ngx_http_events_buf_t *b,
    ngx_http_events_store_t *store, ngx_http_events_stats_t *st);
static void ngx_http_events_status_workers_json(ngx_http_events_buf_t *b,
    ngx_http_events_stats_t *st);
static void ngx_http_events_status_journal_json(ngx_http_events_buf_t *b,
    ngx_http_events_store_t *store, ngx_http_events_stats_t *st);
static void ngx_http_events_status_text(ngx_http_events_buf_t *b,
    ngx_http_events_store_t *store, ngx_http_events_stats_t *st);
static void ngx_http_events_status_table(ngx_http_events_buf_t *b,
    ngx_http_events_store_t *store, ngx_http_events_stats_t *st,
    ngx_http_events_status_zone_metric_t *m);
static void ngx_http_events_status_workers_text(ngx_http_events_buf_t *b,
    ngx_http_events_store_t *store, ngx_http_events_stats_t *st);
static void ngx_http_events_status_journal_text(ngx_http_events_buf_t *b,
    ngx_http_events_store_t *store, ngx_http_events_stats_t *st);


/* the zone's own metrics, then the journal's */

static ngx_http_events_status_zone_metric_t
    ngx_http_events_status_zone_metrics[] = {

    { "events_stored_total", "counter",
      "Events stored since the zone was created.",
      ngx_http_events_stat(stored, U64) },

    { "events_evicted_total", "counter",
      "Events evicted to make room.",
      ngx_http_events_stat(evicted, U64) },

    { "events_expired_total", "counter",
      "Events dropped by events_retention.",
      ngx_http_events_stat(expired, U64) },

    { "events_repeats_total", "counter",
      "Idempotent repeats answered from the store.",
      ngx_http_events_stat(repeats, U64) },

    { "events_conflicts_total", "counter",
      "Writes refused for an id with another body.",
      ngx_http_events_stat(conflicts, U64) },

    { "events_rejected_total", "counter",
      "Writes refused because the zone was full.",
      ngx_http_events_stat(rejected_full, U64) },

    { "events_captured_total", "counter",
      "Events captured from proxied responses and stored.",
      ngx_http_events_counter(NGX_HTTP_EVENTS_CAPTURED) },

    { "events_capture_invalid_total", "counter",
      "Captured events refused (invalid, or vetoed).",
      ngx_http_events_counter(NGX_HTTP_EVENTS_CAPTURE_INVALID) },

    { "events_validate_rejected_total", "counter",
      "Events the events_validate hook refused.",
      ngx_http_events_counter(NGX_HTTP_EVENTS_VALIDATE_REJECTED) },

    { "events_validate_failed_total", "counter",
      "Events refused because the hook did not answer.",
      ngx_http_events_counter(NGX_HTTP_EVENTS_VALIDATE_FAILED) },

    { "events_retained", "gauge",
      "Events in the window.",
      ngx_http_events_stat(retained, U64) },

    { "events_oldest_seq", "gauge",
      "Seq of the oldest event retained.",
      ngx_http_events_stat(oldest_seq, U64) },

    { "events_newest_seq", "gauge",
      "Seq of the newest event.",
      ngx_http_events_stat(head_seq, U64) },

    { "events_types", "gauge",
      "Types in the catalog.",
      ngx_http_events_stat(types, U64) },

    { "events_ring_bytes", "gauge",
      "Bytes of ring.",
      ngx_http_events_stat(ring_size, U64) },

    { "events_ring_used_bytes", "gauge",
      "Bytes of ring in use.",
      ngx_http_events_stat(ring_used, U64) },

    { "events_ring_slots", "gauge",
      "Slots of the ring's index: the most events it can hold.",
      ngx_http_events_stat(capacity, U64) },

    { "events_zone_bytes", "gauge",
      "Bytes of the shared memory zone.",
      ngx_http_events_stat(zone_size, U64) },

    { NULL, NULL, NULL, 0, 0 }
};


static ngx_http_events_status_zone_metric_t
    ngx_http_events_status_journal_metrics[] = {

    { "events_journal_bytes", "gauge",
      "Bytes in the journal's segments.",
      ngx_http_events_stat(journal_bytes, U64) },

    { "events_journal_segments", "gauge",
      "Segment files in the journal.",
      ngx_http_events_stat(journal_segments, U64) },

    { "events_journal_last_fsync_age_seconds", "gauge",
      "Time since the journal's last fsync.",
      ngx_http_events_stat(journal_fsync_age, AGE) },

    { "events_journal_fsyncs_total", "counter",
      "fsyncs of the journal.",
      ngx_http_events_stat(journal_fsyncs, U64) },

    { "events_journal_errors_total", "counter",
      "Journal writes or fsyncs that failed.",
      ngx_http_events_stat(journal_errors, U64) },

    { "events_journal_replay_seconds", "gauge",
      "Time the journal's replay took at start.",
      ngx_http_events_stat(journal_replay_ms, SECONDS) },

    { "events_journal_replayed", "gauge",
      "Events read back from the journal at start.",
      ngx_http_events_stat(journal_replayed, U64) },

    { "events_journal_cut_bytes", "gauge",
      "Bytes of a torn tail cut from the journal at start.",
      ngx_http_events_stat(journal_cut, U64) },

    { "events_journal_refusing", "gauge",
      "1 while the journal refuses writes: the last one failed.",
      ngx_http_events_stat(journal_refusing, UINT) },

    { "events_journal_unsynced", "gauge",
      "1 while the journal's last fsync failed.",
      ngx_http_events_stat(journal_unsynced, UINT) },

    { "events_history_ready", "gauge",
      "1 while the history index answers reads beyond the ring.",
      ngx_http_events_stat(history_ready, UINT) },

    { "events_history_indexed_seq", "gauge",
      "The newest seq the history index holds.",
      ngx_http_events_stat(history_indexed, U64) },

    { "events_history_removed_total", "counter",
      "Events removed from the history index by retention.",
      ngx_http_events_stat(history_removed, U64) },

    { "events_history_gone_seq", "gauge",
      "The newest seq retention removed from disk.",
      ngx_http_events_stat(history_gone, U64) },

    { "events_history_rebuilds_total", "counter",
      "Times the history index was rebuilt from the segments.",
      ngx_http_events_stat(history_rebuilds, U64) },

    { "events_history_build_seconds", "gauge",
      "Time the last check or build of the index took.",
      ngx_http_events_stat(history_build_ms, SECONDS) },

    { "events_history_errors_total", "counter",
      "Index writes or reads that failed.",
      ngx_http_events_stat(history_errors, U64) },

    { "events_history_cache_reads_total", "counter",
      "Reads from disk answered in a worker from the page cache.",
      ngx_http_events_stat(history_cache_reads, U64) },

    { "events_history_thread_reads_total", "counter",
      "Reads from disk (a page, an event by id) run in a thread.",
      ngx_http_events_stat(history_thread_reads, U64) },

    { "events_history_worker_reads_total", "counter",
      "Reads from disk run in a worker (no thread pool, or all busy).",
      ngx_http_events_stat(history_worker_reads, U64) },

    { NULL, NULL, NULL, 0, 0 }
};


/* the labels and Prometheus names of the per-worker counters */

typedef struct {
    const char                 *json;
    const char                 *name;
    const char                 *kind;
    const char                 *help;
    size_t                      offset;
} ngx_http_events_status_worker_metric_t;


static ngx_http_events_status_worker_metric_t
    ngx_http_events_status_worker_metrics[] = {

    { "subscribers", "events_stream_subscribers", "gauge",
      "Open streams, by worker slot.",
      offsetof(ngx_http_events_worker_stat_t, subscribers) },

    { "streamed", "events_streamed_total", "counter",
      "Events written to streams, by worker slot.",
      offsetof(ngx_http_events_worker_stat_t, streamed) },

    { "lagging", "events_stream_lagging_total", "counter",
      "Streams cut for not keeping up.",
      offsetof(ngx_http_events_worker_stat_t, lagging) },

    { "wakeups", "events_wakeups_total", "counter",
      "Wake-ups: times the worker was told of events another worker "
      "stored, to write them to its streams or webhooks.",
      offsetof(ngx_http_events_worker_stat_t, wakeups) },

    { NULL, NULL, NULL, NULL, 0 }
};


ngx_int_t
ngx_http_events_status_handler(ngx_http_request_t *r)
{
    ngx_int_t                          rc;
    ngx_str_t                          type;
    ngx_uint_t                         i, text;
    ngx_http_events_buf_t              b;
    ngx_http_events_error_t            err;
    ngx_http_events_stats_t           *st;
    ngx_http_events_store_t           *store;
    ngx_http_events_claims_t          *claims;
    ngx_http_events_loc_conf_t        *elcf;
    ngx_http_events_main_conf_t       *emcf;
    ngx_http_events_status_section_t  *sec;

    if (!ngx_http_events_auth_access(r, &rc)) {
        return rc;
    }

    claims = ngx_http_events_auth_claims(r);

    if (claims && !claims->admin) {
        ngx_http_discard_request_body(r);
        ngx_http_events_error(&err, 403, "forbidden", NULL, NULL, NULL,
                              "status needs a token with the admin claim");
        return ngx_http_events_http_send_error(r, &err, NULL);
    }

    if (r->method != NGX_HTTP_GET && r->method != NGX_HTTP_HEAD) {
        return ngx_http_events_http_not_allowed(r, "GET, HEAD");
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    elcf = ngx_http_get_module_loc_conf(r, ngx_http_events_module);
    emcf = ngx_http_get_module_main_conf(r, ngx_http_events_module);
    store = elcf->status_zone->data;

    st = ngx_palloc(r->pool, sizeof(ngx_http_events_stats_t));
    if (st == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_events_store_stats(store, st);

    if (ngx_http_events_status_ready_asked(r)) {
        return ngx_http_events_status_ready(r, store, st);
    }

    text = ngx_http_events_status_prometheus(r);
    sec = emcf->sections ? emcf->sections->elts : NULL;

    ngx_http_events_buf_init(&b, r->pool, 4096);

    if (text) {
        ngx_str_set(&type, "text/plain; version=0.0.4; charset=utf-8");
        ngx_http_events_status_text(&b, store, st);
        ngx_http_events_status_journal_text(&b, store, st);

    } else {
        ngx_str_set(&type, "application/json");
        ngx_http_events_status_json(&b, store, st);
        ngx_http_events_status_journal_json(&b, store, st);
    }

    for (i = 0; sec && i < emcf->sections->nelts; i++) {
        if (text) {
            sec[i].prometheus(&b, store);

        } else {
            sec[i].json(&b, store);
        }
    }

    if (!text) {
        ngx_http_events_buf_literal(&b, "}");
    }

    r->headers_out.last_modified_time = -1;

    return ngx_http_events_http_send_buf(r, NGX_HTTP_OK, &type, &b);
}


/* at configuration: a feature adds its part of the page */

ngx_int_t
ngx_http_events_status_register(ngx_conf_t *cf,
    ngx_http_events_status_section_t *section)
{
    ngx_http_events_main_conf_t       *emcf;
    ngx_http_events_status_section_t  *sec;

    emcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_events_module);

    if (emcf->sections == NULL) {
        emcf->sections =
                ngx_array_create(cf->pool, 2,
                                 sizeof(ngx_http_events_status_section_t));
        if (emcf->sections == NULL) {
            return NGX_ERROR;
        }
    }

    sec = ngx_array_push(emcf->sections);
    if (sec == NULL) {
        return NGX_ERROR;
    }

    *sec = *section;

    return NGX_OK;
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


/* "?ready", or "ready=" among other arguments */

static ngx_uint_t
ngx_http_events_status_ready_asked(ngx_http_request_t *r)
{
    u_char     *p, *last;
    ngx_str_t   value;

    if (ngx_http_arg(r, (u_char *) "ready", 5, &value) == NGX_OK) {
        return 1;
    }

    /* ngx_http_arg() wants a "=": a bare "ready" argument is looked for */

    p = r->args.data;
    last = p + r->args.len;

    while (p < last) {
        if (last - p >= 5 && ngx_strncmp(p, "ready", 5) == 0
            && (p + 5 == last || p[5] == '&'))
        {
            return 1;
        }

        p = ngx_strlchr(p, last, '&');

        if (p == NULL) {
            break;
        }

        p++;
    }

    return 0;
}


/*
 * Readiness, for load balancers: 200 while the zone takes writes, 503
 * with the reason while it cannot.  The zone's memory is there once a
 * worker runs; the journal is what fails in practice (a full disk, an
 * I/O error): its last write or fsync failed, and writes are refused
 * until one succeeds.  A cluster's zone also needs its link to the log
 * (the remote says how it is).  Either format asks the same question.
 */

static ngx_int_t
ngx_http_events_status_ready(ngx_http_request_t *r,
    ngx_http_events_store_t *store, ngx_http_events_stats_t *st)
{
    ngx_int_t               cluster;
    ngx_str_t               reason, detail, creason, cdetail;
    ngx_uint_t              status;
    ngx_http_events_buf_t   b;

    ngx_str_null(&reason);
    ngx_str_null(&detail);

    if (st->journal && st->journal_refusing) {
        ngx_str_set(&reason, "journal_refusing_writes");
        ngx_str_set(&detail, "the journal's last write failed (a full "
                    "disk?), events are refused until a write succeeds; "
                    "see error.log");

    } else if (st->journal && st->journal_unsynced) {
        ngx_str_set(&reason, "journal_fsync_failed");
        ngx_str_set(&detail, "the journal's last fsync failed, events are "
                    "not known to be on disk; see error.log");
    }

    /* a cluster's link: NGX_DONE stands for "not a cluster" */
    cluster = NGX_DONE;

    if (store->remote && store->remote->health) {
        cluster = store->remote->health(store->remote->data, r->pool,
                                        &creason, &cdetail);
        if (cluster == NGX_ERROR) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        if (cluster == NGX_DECLINED && reason.len == 0) {
            reason = creason;
            detail = cdetail;
        }
    }

    status = reason.len ? NGX_HTTP_SERVICE_UNAVAILABLE : NGX_HTTP_OK;

    ngx_http_events_buf_init(&b, r->pool, 512);

    ngx_http_events_buf_literal(&b, "{\"zone\":");
    ngx_http_events_buf_str(&b, store->name.data, store->name.len);
    ngx_http_events_buf_printf(&b, ",\"ready\":%s,\"journal\":%s,"
                               "\"cluster\":%s",
                               reason.len ? "false" : "true",
                               st->journal == 0 ? "null"
                               : (st->journal_refusing
                                  || st->journal_unsynced)
                                 ? "\"failing\"" : "\"ok\"",
                               cluster == NGX_DONE ? "null"
                               : cluster == NGX_OK ? "\"ok\""
                                                   : "\"failing\"");

    if (reason.len) {
        ngx_http_events_buf_literal(&b, ",\"reason\":");
        ngx_http_events_buf_str(&b, reason.data, reason.len);
        ngx_http_events_buf_literal(&b, ",\"detail\":");
        ngx_http_events_buf_str(&b, detail.data, detail.len);
    }

    ngx_http_events_buf_literal(&b, "}");

    r->headers_out.last_modified_time = -1;

    return ngx_http_events_http_send_buf(r, status, NULL, &b);
}


/* the zone's object, left open for the sections */

static void
ngx_http_events_status_json(ngx_http_events_buf_t *b,
    ngx_http_events_store_t *store, ngx_http_events_stats_t *st)
{
    ngx_http_events_buf_literal(b, "{\"zone\":");
    ngx_http_events_buf_str(b, store->name.data, store->name.len);

    ngx_http_events_buf_printf(b, ",\"epoch\":\"%016uxL\",\"events\":{",
                               st->epoch);

    ngx_http_events_buf_printf(b, "\"stored\":%uL,\"retained\":%uL,"
                               "\"evicted\":%uL,\"expired\":%uL,",
                               st->stored, st->retained, st->evicted,
                               st->expired);

    ngx_http_events_buf_printf(b, "\"repeats\":%uL,\"conflicts\":%uL,"
                               "\"rejected\":%uL,\"oldestSeq\":%uL,"
                               "\"newestSeq\":%uL,\"types\":%uL},",
                               st->repeats, st->conflicts, st->rejected_full,
                               st->oldest_seq, st->head_seq, st->types);

    ngx_http_events_buf_printf(b, "\"capture\":{\"stored\":%uA,"
                               "\"invalid\":%uA},",
                               st->counters[NGX_HTTP_EVENTS_CAPTURED],
                               st->counters[NGX_HTTP_EVENTS_CAPTURE_INVALID]);

    ngx_http_events_buf_printf(b, "\"validate\":{\"rejected\":%uA,"
                               "\"failed\":%uA},",
                               st->counters[NGX_HTTP_EVENTS_VALIDATE_REJECTED],
                               st->counters[NGX_HTTP_EVENTS_VALIDATE_FAILED]);

    ngx_http_events_buf_printf(b, "\"ring\":{\"zoneBytes\":%uL,"
                               "\"bytes\":%uL,\"used\":%uL,\"free\":%uL,"
                               "\"slots\":%uL},",
                               st->zone_size, st->ring_size, st->ring_used,
                               st->ring_size - st->ring_used, st->capacity);

    ngx_http_events_status_workers_json(b, st);
}


static void
ngx_http_events_status_workers_json(ngx_http_events_buf_t *b,
    ngx_http_events_stats_t *st)
{
    u_char                                  *w;
    ngx_uint_t                               i, m;
    ngx_atomic_uint_t                        total[4];
    ngx_http_events_status_worker_metric_t  *wm;

    wm = ngx_http_events_status_worker_metrics;

    ngx_memzero(total, sizeof(total));
    ngx_http_events_buf_literal(b, "\"workers\":[");

    for (i = 0; i < st->nworkers; i++) {
        w = (u_char *) &st->workers[i];

        ngx_http_events_buf_printf(b, "%s{\"worker\":%ui,\"pid\":%P,"
                                   "\"starts\":%uA,\"published\":%uL",
                                   i ? "," : "", st->slots[i],
                                   st->workers[i].pid,
                                   st->workers[i].starts,
                                   st->workers[i].published);

        for (m = 0; wm[m].json; m++) {
            ngx_http_events_buf_printf(b, ",\"%s\":%uA", wm[m].json,
                                 *(ngx_atomic_uint_t *) (w + wm[m].offset));
            total[m] += *(ngx_atomic_uint_t *) (w + wm[m].offset);
        }

        ngx_http_events_buf_literal(b, "}");
    }

    ngx_http_events_buf_printf(b, "],\"streams\":{\"subscribers\":%uA,"
                               "\"streamed\":%uA,\"lagging\":%uA}",
                               total[0], total[1], total[2]);
}


static void
ngx_http_events_status_journal_json(ngx_http_events_buf_t *b,
    ngx_http_events_store_t *store, ngx_http_events_stats_t *st)
{
    ngx_http_events_journal_t  *j;

    static const char  *modes[] = { "off", "interval", "always" };

    j = store->journal;

    if (j == NULL) {
        ngx_http_events_buf_literal(b, ",\"journal\":null");
        return;
    }

    ngx_http_events_buf_literal(b, ",\"journal\":{\"path\":");
    ngx_http_events_buf_str(b, j->path.data, j->path.len);

    ngx_http_events_buf_printf(b, ",\"fsync\":\"%s\",\"bytes\":%uL,"
                               "\"segments\":%uL,\"lastFsyncAgeMs\":",
                               modes[j->fsync], st->journal_bytes,
                               st->journal_segments);

    if (st->journal_fsync_age < 0) {
        ngx_http_events_buf_literal(b, "null");

    } else {
        ngx_http_events_buf_printf(b, "%uL",
                                   (uint64_t) st->journal_fsync_age);
    }

    ngx_http_events_buf_printf(b, ",\"fsyncs\":%uL,\"errors\":%uL,"
                               "\"replayMs\":%uL,\"replayed\":%uL,"
                               "\"cutBytes\":%uL,\"refusing\":%s,"
                               "\"unsynced\":%s,",
                               st->journal_fsyncs, st->journal_errors,
                               st->journal_replay_ms, st->journal_replayed,
                               st->journal_cut,
                               st->journal_refusing ? "true" : "false",
                               st->journal_unsynced ? "true" : "false");

    ngx_http_events_buf_printf(b, "\"history\":{\"ready\":%s,"
                               "\"indexed\":%uL,\"removed\":%uL,"
                               "\"gone\":%uL,\"rebuilds\":%uL,"
                               "\"buildMs\":%uL,\"errors\":%uL,"
                               "\"cacheReads\":%uL,\"threadReads\":%uL,"
                               "\"workerReads\":%uL}}",
                               st->history_ready ? "true" : "false",
                               st->history_indexed, st->history_removed,
                               st->history_gone, st->history_rebuilds,
                               st->history_build_ms, st->history_errors,
                               st->history_cache_reads,
                               st->history_thread_reads,
                               st->history_worker_reads);
}


/* Prometheus: one function writes every metric of the page */

void
ngx_http_events_status_help(ngx_http_events_buf_t *b, const char *name,
    const char *kind, const char *help)
{
    ngx_http_events_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n",
                               name, help, name, kind);
}


/*
 * name{zone="..."[,label="..."]} value; "milli": the value is in
 * thousandths, written as a decimal (seconds from milliseconds)
 */

void
ngx_http_events_status_sample(ngx_http_events_buf_t *b,
    ngx_http_events_store_t *store, const char *name, const char *label,
    ngx_str_t *label_value, uint64_t value, ngx_uint_t milli)
{
    ngx_http_events_buf_printf(b, "%s{zone=", name);
    ngx_http_events_buf_label(b, store->name.data, store->name.len);

    if (label) {
        ngx_http_events_buf_printf(b, ",%s=", label);
        ngx_http_events_buf_label(b, label_value->data, label_value->len);
    }

    if (milli) {
        ngx_http_events_buf_printf(b, "} %uL.%03uL\n", value / 1000,
                                   value % 1000);

    } else {
        ngx_http_events_buf_printf(b, "} %uL\n", value);
    }
}


void
ngx_http_events_status_metric(ngx_http_events_buf_t *b,
    ngx_http_events_store_t *store, const char *name, const char *kind,
    const char *help, uint64_t value)
{
    ngx_http_events_status_help(b, name, kind, help);
    ngx_http_events_status_sample(b, store, name, NULL, NULL, value, 0);
}


static void
ngx_http_events_status_text(ngx_http_events_buf_t *b,
    ngx_http_events_store_t *store, ngx_http_events_stats_t *st)
{
    ngx_http_events_status_table(b, store, st,
                                 ngx_http_events_status_zone_metrics);
    ngx_http_events_status_workers_text(b, store, st);
}


/* a table of metrics with one sample each; an absent age is left out */

static void
ngx_http_events_status_table(ngx_http_events_buf_t *b,
    ngx_http_events_store_t *store, ngx_http_events_stats_t *st,
    ngx_http_events_status_zone_metric_t *m)
{
    u_char    *f;
    int64_t    age;
    uint64_t   value;

    for ( /* void */ ; m->name; m++) {
        f = (u_char *) st + m->offset;

        switch (m->type) {

        case NGX_HTTP_EVENTS_STAT_ATOMIC:
            value = *(ngx_atomic_uint_t *) f;
            break;

        case NGX_HTTP_EVENTS_STAT_AGE:
            age = *(int64_t *) f;

            if (age < 0) {
                continue;
            }

            value = (uint64_t) age;
            break;

        case NGX_HTTP_EVENTS_STAT_UINT:
            value = *(ngx_uint_t *) f;
            break;

        default:
            value = *(uint64_t *) f;
        }

        ngx_http_events_status_help(b, m->name, m->kind, m->help);
        ngx_http_events_status_sample(b, store, m->name, NULL, NULL, value,
                                      m->type == NGX_HTTP_EVENTS_STAT_SECONDS
                                      || m->type == NGX_HTTP_EVENTS_STAT_AGE);
    }
}


/*
 * Per-worker metrics carry the worker's slot, stable across reloads, not
 * its pid: the counters are cumulative per slot, and a pid label would
 * start a new series at every reload with the old worker's count.  The
 * slot's current pid is in events_worker_info, the usual info metric.
 */

static void
ngx_http_events_status_workers_text(ngx_http_events_buf_t *b,
    ngx_http_events_store_t *store, ngx_http_events_stats_t *st)
{
    u_char                                  *w, buf[NGX_INT64_LEN];
    ngx_str_t                                slot;
    ngx_uint_t                               i, m;
    ngx_http_events_status_worker_metric_t  *wm;

    ngx_http_events_status_help(b, "events_worker_info", "gauge",
                                "The worker now in each slot: its pid.");

    for (i = 0; i < st->nworkers; i++) {
        ngx_http_events_buf_literal(b, "events_worker_info{zone=");
        ngx_http_events_buf_label(b, store->name.data, store->name.len);
        ngx_http_events_buf_printf(b, ",worker=\"%ui\",pid=\"%P\"} 1\n",
                                   st->slots[i], st->workers[i].pid);
    }

    ngx_http_events_status_help(b, "events_worker_starts_total", "counter",
                                "Workers started in the slot: 1, and one "
                                "more at each reload or respawn.");

    slot.data = buf;

    for (i = 0; i < st->nworkers; i++) {
        slot.len = ngx_sprintf(buf, "%ui", st->slots[i]) - buf;
        ngx_http_events_status_sample(b, store, "events_worker_starts_total",
                                      "worker", &slot,
                                      st->workers[i].starts, 0);
    }

    ngx_http_events_status_help(b, "events_published_total", "counter",
                                "Events stored, by the worker slot that "
                                "stored them.");

    for (i = 0; i < st->nworkers; i++) {
        slot.len = ngx_sprintf(buf, "%ui", st->slots[i]) - buf;
        ngx_http_events_status_sample(b, store, "events_published_total",
                                      "worker", &slot,
                                      st->workers[i].published, 0);
    }

    wm = ngx_http_events_status_worker_metrics;

    for (m = 0; wm[m].json; m++) {
        ngx_http_events_status_help(b, wm[m].name, wm[m].kind, wm[m].help);

        for (i = 0; i < st->nworkers; i++) {
            w = (u_char *) &st->workers[i];
            slot.len = ngx_sprintf(buf, "%ui", st->slots[i]) - buf;
            ngx_http_events_status_sample(b, store, wm[m].name, "worker",
                                    &slot,
                                    *(ngx_atomic_uint_t *) (w + wm[m].offset),
                                    0);
        }
    }
}


static void
ngx_http_events_status_journal_text(ngx_http_events_buf_t *b,
    ngx_http_events_store_t *store, ngx_http_events_stats_t *st)
{
    if (st->journal) {
        ngx_http_events_status_table(b, store, st,
                                     ngx_http_events_status_journal_metrics);
    }
}
