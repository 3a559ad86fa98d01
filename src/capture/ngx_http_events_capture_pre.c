
/*
 * Copyright (C) ngx_http_events_module authors
 */


/*
 * Pre-write vetoes: "events_capture_pre URI [fail=closed|open];" where
 * "events_capture auto" captures.  Before a write on an events_resource
 * (POST, PUT, PATCH, DELETE) reaches the backend, the module reads the
 * request's body (memory or temp file, kept for the proxy with
 * preserve_body, as the mirror module does), and asks URI in a waited
 * subrequest with the intended event:
 *
 *     {"type":"ticket.update","resourceType":"ticket","resourceId":"42",
 *      "payload":{"data":<the request's JSON body>},"metadata":{...}}
 *
 * 2xx: the request goes on to the content handler (proxy_pass) as if
 * nothing happened.  4xx: that answer (status, type, body up to 4 KB)
 * is the client's, and the backend never sees the request.  Anything
 * else, no answer, 5xx, 502/504 from a dead or slow hook: fail=closed
 * answers 503 "pre_hook_unavailable", fail=open lets the request
 * through (logged at warn).
 *
 * It runs in the precontent phase: after access checks (a client that
 * may not write never reaches the hook), before the content handler.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_events_module.h"
#include "ngx_http_events_http.h"
#include "ngx_http_events_json.h"
#include "ngx_http_events_validate.h"
#include "ngx_http_events_capture.h"
#include "ngx_http_events_capture_pre.h"


#define NGX_HTTP_EVENTS_PRE_READING  1
#define NGX_HTTP_EVENTS_PRE_ASKED    2
#define NGX_HTTP_EVENTS_PRE_PASSED   3


struct ngx_http_events_capture_pre_s {
    ngx_uint_t                     state;
    ngx_http_events_validation_t   v;
};


static ngx_int_t ngx_http_events_capture_pre_handler(ngx_http_request_t *r);
static void ngx_http_events_capture_pre_body(ngx_http_request_t *r);
static ngx_int_t ngx_http_events_capture_pre_ask(ngx_http_request_t *r,
    ngx_http_events_capture_pre_t *pre);
static json_t *ngx_http_events_capture_pre_data(ngx_http_request_t *r);
static ngx_int_t ngx_http_events_capture_pre_verdict(ngx_http_request_t *r,
    ngx_http_events_capture_pre_t *pre);


ngx_int_t
ngx_http_events_capture_pre_init(ngx_conf_t *cf)
{
    ngx_http_handler_pt        *h;
    ngx_http_core_main_conf_t  *cmcf;

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_PRECONTENT_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_events_capture_pre_handler;

    return NGX_OK;
}


static ngx_int_t
ngx_http_events_capture_pre_handler(ngx_http_request_t *r)
{
    json_t                         *intent;
    ngx_int_t                       rc;
    ngx_uint_t                      none;
    ngx_http_events_ctx_t          *ectx;
    ngx_http_events_loc_conf_t     *elcf;
    ngx_http_events_capture_pre_t  *pre;

    if (r != r->main) {
        return NGX_DECLINED;
    }

    elcf = ngx_http_get_module_loc_conf(r, ngx_http_events_module);

    if (elcf->capture->pre.len == 0
        || !(elcf->capture->modes & NGX_HTTP_EVENTS_CAPTURE_AUTO))
    {
        return NGX_DECLINED;
    }

    ectx = ngx_http_get_module_ctx(r, ngx_http_events_module);
    pre = ectx ? ectx->pre : NULL;

    if (pre == NULL) {
        /* a write on a resource? (no body is needed to know) */
        intent = ngx_http_events_capture_intent(r, NULL, &none);

        if (intent == NULL) {
            return none ? NGX_DECLINED : NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        json_decref(intent);

        ectx = ngx_http_events_ctx(r);
        pre = ngx_pcalloc(r->pool, sizeof(ngx_http_events_capture_pre_t));
        if (ectx == NULL || pre == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ectx->pre = pre;
        pre->state = NGX_HTTP_EVENTS_PRE_READING;

        rc = ngx_http_read_client_request_body(r,
                                          ngx_http_events_capture_pre_body);
        if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
            return rc;
        }

        ngx_http_finalize_request(r, NGX_DONE);
        return NGX_DONE;
    }

    switch (pre->state) {

    case NGX_HTTP_EVENTS_PRE_PASSED:
        return NGX_DECLINED;

    case NGX_HTTP_EVENTS_PRE_ASKED:
        if (!pre->v.done) {
            return NGX_AGAIN;
        }

        return ngx_http_events_capture_pre_verdict(r, pre);

    default:
        /* still reading the body */
        return NGX_AGAIN;
    }
}


/* the body is read (and kept for the proxy): ask the hook */

static void
ngx_http_events_capture_pre_body(ngx_http_request_t *r)
{
    ngx_http_events_capture_pre_t  *pre;

    r->preserve_body = 1;

    pre = ngx_http_events_ctx(r)->pre;

    if (ngx_http_events_capture_pre_ask(r, pre) != NGX_OK) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    pre->state = NGX_HTTP_EVENTS_PRE_ASKED;

    /* the hook's end wakes the request: the phases run on from here */
    r->write_event_handler = ngx_http_core_run_phases;
}


static ngx_int_t
ngx_http_events_capture_pre_ask(ngx_http_request_t *r,
    ngx_http_events_capture_pre_t *pre)
{
    char                        *s;
    size_t                       len;
    u_char                      *p;
    json_t                      *data, *intent;
    ngx_uint_t                   none;
    ngx_http_events_loc_conf_t  *elcf;

    elcf = ngx_http_get_module_loc_conf(r, ngx_http_events_module);

    data = ngx_http_events_capture_pre_data(r);
    intent = ngx_http_events_capture_intent(r, data, &none);
    json_decref(data);

    if (intent == NULL) {
        return NGX_ERROR;
    }

    s = json_dumps(intent, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(intent);

    if (s == NULL) {
        return NGX_ERROR;
    }

    len = ngx_strlen(s);
    p = ngx_pnalloc(r->pool, len);

    if (p) {
        ngx_memcpy(p, s, len);
    }

    free(s);

    if (p == NULL) {
        return NGX_ERROR;
    }

    return ngx_http_events_validate_ask(r, &pre->v, &elcf->capture->pre, p,
                                        len);
}


/*
 * The request's body as the intended event's data: JSON within
 * events_capture_max_body, else null (the hook still hears of the write)
 */

static json_t *
ngx_http_events_capture_pre_data(ngx_http_request_t *r)
{
    json_t                      *data;
    ngx_str_t                    body;
    json_error_t                 jerr;
    ngx_http_events_loc_conf_t  *elcf;

    elcf = ngx_http_get_module_loc_conf(r, ngx_http_events_module);

    if (!ngx_http_events_http_is_json(r)
        || r->headers_in.content_length_n > (off_t) elcf->capture->max_body)
    {
        return NULL;
    }

    if (ngx_http_events_http_read_body(r, &body) != NGX_OK
        || body.len == 0 || body.len > elcf->capture->max_body)
    {
        return NULL;
    }

    data = json_loadb((char *) body.data, body.len,
                      JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);

    return data;
}


static ngx_int_t
ngx_http_events_capture_pre_verdict(ngx_http_request_t *r,
    ngx_http_events_capture_pre_t *pre)
{
    ngx_int_t                     rc;
    ngx_http_events_error_t       err;
    ngx_http_events_loc_conf_t   *elcf;
    ngx_http_events_validation_t *v;

    elcf = ngx_http_get_module_loc_conf(r, ngx_http_events_module);
    v = &pre->v;

    r->write_event_handler = ngx_http_core_run_phases;

    if (v->status >= NGX_HTTP_OK && v->status < NGX_HTTP_SPECIAL_RESPONSE) {
        pre->state = NGX_HTTP_EVENTS_PRE_PASSED;
        return NGX_DECLINED;
    }

    if (v->status >= NGX_HTTP_BAD_REQUEST && v->status < 500) {
        /* the hook's refusal is the client's answer, as it gave it */

        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "events: the pre-write hook refused %V %V with %ui",
                      &r->method_name, &r->uri, v->status);

        if (v->whole) {
            rc = ngx_http_events_http_send(r, v->status, &v->type,
                                           v->body, v->len);

        } else {
            ngx_http_events_error(&err, v->status, "rejected", NULL, NULL,
                                  NULL, "the pre-write hook refused the "
                                  "request");
            rc = ngx_http_events_http_send_error(r, &err, NULL);
        }

        ngx_http_finalize_request(r, rc);
        return NGX_DONE;
    }

    ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                  "events: the pre-write hook \"%V\" failed (status %ui) "
                  "on %V %V, %s", &elcf->capture->pre, v->status,
                  &r->method_name, &r->uri,
                  elcf->capture->pre_fail_open ? "let through (fail=open)"
                                               : "refused");

    if (elcf->capture->pre_fail_open) {
        pre->state = NGX_HTTP_EVENTS_PRE_PASSED;
        return NGX_DECLINED;
    }

    ngx_http_events_error(&err, 503, "pre_hook_unavailable", NULL, NULL,
                          NULL, "the pre-write hook did not answer; the "
                          "request was not sent on");

    ngx_http_finalize_request(r,
                              ngx_http_events_http_send_error(r, &err, NULL));
    return NGX_DONE;
}


/* events_capture_pre URI [fail=closed|open] */

char *
ngx_http_events_capture_pre(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_events_loc_conf_t *elcf = conf;

    ngx_str_t   *value;
    ngx_uint_t   i;

    if (elcf->capture->pre_fail_open != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (value[1].len == 0 || value[1].data[0] != '/') {
        return "needs a URI that starts with \"/\"";
    }

    elcf->capture->pre = value[1];
    elcf->capture->pre_fail_open = 0;

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strcmp(value[i].data, "fail=open") == 0) {
            elcf->capture->pre_fail_open = 1;
            continue;
        }

        if (ngx_strcmp(value[i].data, "fail=closed") == 0) {
            elcf->capture->pre_fail_open = 0;
            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\"", &value[i]);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}
