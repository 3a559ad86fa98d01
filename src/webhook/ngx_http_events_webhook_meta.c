
/*
 * Copyright (C) ngx_http_events_module authors
 */


/*
 * Meta events (events_webhook_meta_events on): what happens to a
 * tenant's endpoints becomes events in that tenant's log, so they can be
 * read, streamed and delivered like any other.  The dispatcher notes
 * them on the attempt's job under the zone's lock and they are appended
 * here, after it is released, as a POST would append them:
 *
 *   webhook.endpoint.disabled    the dispatcher disabled an endpoint
 *   webhook.delivery.exhausted   a delivery ended failed
 *   webhook.endpoint.recovered   the first success after either
 *
 * resourceType "webhook", resourceId the endpoint's id.  A delivery of a
 * webhook.* event that ends failed makes no new event, so a receiver
 * that subscribes to its own failures cannot start a chain.  With
 * fsync=always the dispatcher does not wait for the disk: the next sync
 * covers them.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <jansson.h>

#include "ngx_http_events_module.h"
#include "ngx_http_events_ipc.h"
#include "ngx_http_events_json.h"
#include "ngx_http_events_webhook_shm.h"


static ngx_int_t ngx_http_events_webhook_meta_append(
    ngx_http_events_webhook_job_t *job, json_t *obj);
static json_t *ngx_http_events_webhook_meta_event(
    ngx_http_events_webhook_job_t *job, const char *type, json_t *data);
static json_t *ngx_http_events_webhook_meta_str(ngx_str_t *s);


static const char  *ngx_http_events_webhook_meta_reasons[] = {
    "", "gone", "receiver", "failing", "manual", "verification"
};


void
ngx_http_events_webhook_meta(ngx_http_events_webhook_job_t *job)
{
    json_t  *obj, *data;

    if (job->tenant.len == 1 && job->tenant.data[0] == '*') {
        /* a handler of every tenant has no tenant's log */
        return;
    }

    if (job->meta_exhausted) {
        data = json_pack("{s:o,s:o,s:I,s:o,s:I,s:s,s:o}",
                     "endpointId", ngx_http_events_webhook_meta_str(
                                       &job->endpoint),
                     "eventId", ngx_http_events_webhook_meta_str(
                                    &job->event_id),
                     "eventSeq", (json_int_t) job->seq,
                     "eventType", ngx_http_events_webhook_meta_str(&job->type),
                     "attempts", (json_int_t) job->attempt,
                     "lastError", ngx_http_events_webhook_errors[job->error],
                     "httpStatus", job->status ? json_integer(job->status)
                                               : json_null());

        obj = ngx_http_events_webhook_meta_event(job,
                                                 "webhook.delivery.exhausted",
                                                 data);
        (void) ngx_http_events_webhook_meta_append(job, obj);
    }

    if (job->meta_disabled) {
        data = json_pack("{s:o,s:s,s:s,s:o}",
                     "endpointId", ngx_http_events_webhook_meta_str(
                                       &job->endpoint),
                     "reason", ngx_http_events_webhook_meta_reasons[
                                   job->meta_reason < 6 ? job->meta_reason
                                                        : 0],
                     "lastError", ngx_http_events_webhook_errors[job->error],
                     "httpStatus", job->status ? json_integer(job->status)
                                               : json_null());

        obj = ngx_http_events_webhook_meta_event(job,
                                                 "webhook.endpoint.disabled",
                                                 data);
        (void) ngx_http_events_webhook_meta_append(job, obj);
    }

    if (job->meta_recovered) {
        data = json_pack("{s:o}", "endpointId",
                         ngx_http_events_webhook_meta_str(&job->endpoint));

        obj = ngx_http_events_webhook_meta_event(job,
                                                 "webhook.endpoint.recovered",
                                                 data);
        (void) ngx_http_events_webhook_meta_append(job, obj);
    }
}


static json_t *
ngx_http_events_webhook_meta_event(ngx_http_events_webhook_job_t *job,
    const char *type, json_t *data)
{
    if (data == NULL) {
        return NULL;
    }

    return json_pack("{s:s,s:s,s:s,s:o,s:{s:o}}",
                     "type", type,
                     "source", "webhooks",
                     "resourceType", "webhook",
                     "resourceId", ngx_http_events_webhook_meta_str(
                                       &job->endpoint),
                     "payload", "data", data);
}


/* as POST /events: validated, then appended; a failure is only logged */

static ngx_int_t
ngx_http_events_webhook_meta_append(ngx_http_events_webhook_job_t *job,
    json_t *obj)
{
    uint64_t                     upto;
    ngx_int_t                    rc;
    ngx_uint_t                   failed;
    ngx_http_events_ipc_t       *ipc;
    ngx_http_events_error_t      err;
    ngx_http_events_event_t      ev;
    ngx_http_events_store_t     *store;
    ngx_http_events_envelope_t   env;

    store = job->store;

    if (obj == NULL) {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "events webhook \"%V\": no memory for a meta event",
                      &job->endpoint);
        return NGX_ERROR;
    }

    if (store->remote) {
        /* a cluster's zone: its log is in Redis, not appended from here */
        json_decref(obj);
        return NGX_DECLINED;
    }

    ipc = ngx_http_events_ipc();

    ngx_memzero(&env, sizeof(ngx_http_events_envelope_t));
    ngx_memzero(&err, sizeof(ngx_http_events_error_t));
    ngx_memzero(&ev, sizeof(ngx_http_events_event_t));

    env.tenant = job->tenant;
    env.pool = job->pool;
    env.rng = ipc ? &ipc->rng : NULL;
    env.max_size = ngx_http_events_store_max_record(store);

    /* the event's strings point into obj until it is stored */
    rc = ngx_http_events_json_event(&env, obj, &ev, &err);

    if (rc != NGX_OK) {
        json_decref(obj);
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "events webhook \"%V\": a meta event was refused: %s",
                      &job->endpoint, err.code ? err.code : "error");
        return NGX_ERROR;
    }

    rc = ngx_http_events_store_append_nosync(store, &ev, 1, job->pool,
                                             &failed, &upto);
    json_decref(obj);

    if (rc != NGX_HTTP_EVENTS_STORE_OK) {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "events webhook \"%V\": a meta event could not be "
                      "stored", &job->endpoint);
        return NGX_ERROR;
    }

    return NGX_OK;
}


static json_t *
ngx_http_events_webhook_meta_str(ngx_str_t *s)
{
    return json_stringn((char *) s->data, s->len);
}
