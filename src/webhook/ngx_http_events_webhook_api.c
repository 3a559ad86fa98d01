
/*
 * Copyright (C) ngx_http_events_module authors
 */


/*
 * events_webhooks: the management API of a zone's webhook endpoints,
 * every route confined to the caller's tenant.
 *
 *   GET  P                         list          POST P       create
 *   GET  P/{id}                    one           PATCH, DELETE
 *   GET  P/{id}/deliveries         attempt log
 *   GET  P/{id}/deliveries/{event} one delivery and its attempts
 *   POST P/{id}/deliveries/{event}/retry
 *   POST P/{id}/replay | test | rotate-secret
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <openssl/rand.h>

#include "ngx_http_events_module.h"
#include "ngx_http_events_store.h"
#include "ngx_http_events_http.h"
#include "ngx_http_events_buf.h"
#include "ngx_http_events_auth.h"
#include "ngx_http_events_cursor.h"
#include "ngx_http_events_id.h"
#include "ngx_http_events_match.h"
#include "ngx_http_events_webhook_shm.h"
#include "ngx_http_events_ipc.h"


#define NGX_HTTP_EVENTS_WH_LIST         0
#define NGX_HTTP_EVENTS_WH_ONE          1
#define NGX_HTTP_EVENTS_WH_DELIVERIES   2
#define NGX_HTTP_EVENTS_WH_DELIVERY     3
#define NGX_HTTP_EVENTS_WH_RETRY        4
#define NGX_HTTP_EVENTS_WH_REPLAY_R     5
#define NGX_HTTP_EVENTS_WH_TEST         6
#define NGX_HTTP_EVENTS_WH_ROTATE       7


struct ngx_http_events_webhook_route_s {
    ngx_uint_t                  route;
    ngx_int_t                   rc;             /* of an answer sent */
    unsigned                    answered:1;
    ngx_str_t                   tenant;
    ngx_str_t                   id;
    ngx_str_t                   event;
};


typedef ngx_int_t (*ngx_http_events_webhook_field_pt)(ngx_http_request_t *r,
    json_t *v, ngx_http_events_webhook_spec_t *spec,
    ngx_http_events_error_t *err);


/* a field of an endpoint's JSON: its type, and what checks and takes it */
typedef struct {
    const char                          *name;
    json_type                            type;      /* JSON_TRUE: boolean */
    ngx_uint_t                           nullable;
    ngx_http_events_webhook_field_pt     handler;
} ngx_http_events_webhook_field_t;


/* a replay's range and mode, as the body gives them */
typedef struct {
    uint64_t                    after;
    uint64_t                    to;
    ngx_uint_t                  mode;           /* 1 all, 2 failed, 3 missing */
    ngx_uint_t                  count;
    unsigned                    truncated:1;
} ngx_http_events_webhook_range_t;


/* the filters of GET P/{id}/deliveries */
typedef struct {
    ngx_int_t                   limit;
    ngx_int_t                   result;         /* -1: any */
    uint64_t                    before;         /* 0: from the newest */
    ngx_str_t                   event_id;
} ngx_http_events_webhook_filter_t;


typedef ngx_int_t (*ngx_http_events_webhook_param_pt)(
    ngx_http_events_webhook_filter_t *f, ngx_str_t *value,
    ngx_http_events_error_t *err);


typedef struct {
    ngx_str_t                           name;
    ngx_http_events_webhook_param_pt    handler;
} ngx_http_events_webhook_param_t;


static ngx_int_t ngx_http_events_webhook_api_route(ngx_http_request_t *r,
    ngx_http_events_webhook_route_t *rt);
static ngx_int_t ngx_http_events_webhook_api_body(ngx_http_request_t *r,
    u_char *data, size_t len);
static ngx_int_t ngx_http_events_webhook_api_run(ngx_http_request_t *r,
    ngx_http_events_webhook_route_t *rt, ngx_str_t *body);
static ngx_int_t ngx_http_events_webhook_api_create(ngx_http_request_t *r,
    ngx_http_events_webhook_route_t *rt, json_t *root);
static ngx_int_t ngx_http_events_webhook_api_patch(ngx_http_request_t *r,
    ngx_http_events_webhook_route_t *rt, json_t *root);
static ngx_int_t ngx_http_events_webhook_api_spec(ngx_http_request_t *r,
    json_t *root, ngx_http_events_webhook_spec_t *spec, ngx_uint_t create,
    ngx_http_events_error_t *err);
static ngx_int_t ngx_http_events_webhook_api_url(ngx_http_request_t *r,
    ngx_str_t *url, ngx_http_events_error_t *err);
static ngx_int_t ngx_http_events_webhook_api_get(ngx_http_request_t *r,
    ngx_http_events_webhook_route_t *rt, ngx_uint_t status, ngx_str_t *secret);
static ngx_int_t ngx_http_events_webhook_api_list(ngx_http_request_t *r,
    ngx_http_events_webhook_route_t *rt);
static ngx_int_t ngx_http_events_webhook_api_attempts(ngx_http_request_t *r,
    ngx_http_events_webhook_route_t *rt);
static ngx_int_t ngx_http_events_webhook_api_delivery(ngx_http_request_t *r,
    ngx_http_events_webhook_route_t *rt);
static ngx_int_t ngx_http_events_webhook_api_log(ngx_http_request_t *r,
    ngx_http_events_webhook_route_t *rt, uint64_t before, ngx_array_t *all);
static ngx_int_t ngx_http_events_webhook_api_retry(ngx_http_request_t *r,
    ngx_http_events_webhook_route_t *rt);
static ngx_int_t ngx_http_events_webhook_api_test(ngx_http_request_t *r,
    ngx_http_events_webhook_route_t *rt);
static ngx_int_t ngx_http_events_webhook_api_rotate(ngx_http_request_t *r,
    ngx_http_events_webhook_route_t *rt, json_t *root);
static ngx_int_t ngx_http_events_webhook_api_replay(ngx_http_request_t *r,
    ngx_http_events_webhook_route_t *rt, json_t *root);
static ngx_int_t ngx_http_events_webhook_api_event(ngx_http_request_t *r,
    ngx_http_events_webhook_route_t *rt, ngx_str_t *json, uint64_t *seq,
    ngx_str_t *type);
static ngx_int_t ngx_http_events_webhook_api_replay_body(
    ngx_http_request_t *r, json_t *root, ngx_http_events_webhook_range_t *rg,
    ngx_http_events_error_t *err);
static ngx_int_t ngx_http_events_webhook_api_replay_range(
    ngx_http_events_webhook_range_t *rg, ngx_http_events_window_t *w,
    ngx_http_events_cursor_key_t *ckey, ngx_http_events_error_t *err,
    ngx_str_t *x);
static void ngx_http_events_webhook_api_replay_count(ngx_http_request_t *r,
    ngx_http_events_webhook_route_t *rt, ngx_http_events_webhook_view_t *view,
    ngx_http_events_webhook_range_t *rg);
static ngx_int_t ngx_http_events_webhook_api_position(ngx_http_request_t *r,
    json_t *v, const char *name, ngx_uint_t until, uint64_t *seq,
    ngx_http_events_error_t *err);
static void ngx_http_events_webhook_api_view_json(ngx_http_events_buf_t *o,
    ngx_http_events_webhook_view_t *v);
static void ngx_http_events_webhook_api_attempt_json(ngx_http_events_buf_t *o,
    ngx_http_events_webhook_attempt_t *a);
static void ngx_http_events_webhook_api_share(ngx_http_request_t *r,
    ngx_http_events_store_t *store, ngx_http_events_webhook_route_t *rt);
static ngx_int_t ngx_http_events_webhook_api_fail(ngx_http_request_t *r,
    ngx_uint_t status, const char *code, const char *field, const char *fmt,
    ...);
static ngx_int_t ngx_http_events_webhook_api_unknown(ngx_http_request_t *r,
    ngx_http_events_webhook_route_t *rt);
static ngx_uint_t ngx_http_events_webhook_api_granted(ngx_http_request_t *r,
    ngx_str_t *type);
static ngx_int_t ngx_http_events_webhook_api_covered(ngx_http_request_t *r,
    ngx_str_t *patterns, ngx_uint_t n, ngx_http_events_error_t *err);



static ngx_int_t ngx_http_events_webhook_api_params(ngx_http_request_t *r,
    ngx_http_events_webhook_filter_t *f, ngx_http_events_error_t *err);
static ngx_int_t ngx_http_events_webhook_api_param_limit(
    ngx_http_events_webhook_filter_t *f, ngx_str_t *value,
    ngx_http_events_error_t *err);
static ngx_int_t ngx_http_events_webhook_api_param_after(
    ngx_http_events_webhook_filter_t *f, ngx_str_t *value,
    ngx_http_events_error_t *err);
static ngx_int_t ngx_http_events_webhook_api_param_status(
    ngx_http_events_webhook_filter_t *f, ngx_str_t *value,
    ngx_http_events_error_t *err);
static ngx_int_t ngx_http_events_webhook_api_param_event(
    ngx_http_events_webhook_filter_t *f, ngx_str_t *value,
    ngx_http_events_error_t *err);
static ngx_int_t ngx_http_events_webhook_api_param_token(
    ngx_http_events_webhook_filter_t *f, ngx_str_t *value,
    ngx_http_events_error_t *err);


static ngx_int_t ngx_http_events_webhook_api_field_url(ngx_http_request_t *r,
    json_t *v, ngx_http_events_webhook_spec_t *spec,
    ngx_http_events_error_t *err);
static ngx_int_t ngx_http_events_webhook_api_field_events(
    ngx_http_request_t *r, json_t *v, ngx_http_events_webhook_spec_t *spec,
    ngx_http_events_error_t *err);
static ngx_int_t ngx_http_events_webhook_api_field_description(
    ngx_http_request_t *r, json_t *v, ngx_http_events_webhook_spec_t *spec,
    ngx_http_events_error_t *err);
static ngx_int_t ngx_http_events_webhook_api_field_secret(
    ngx_http_request_t *r, json_t *v, ngx_http_events_webhook_spec_t *spec,
    ngx_http_events_error_t *err);
static ngx_int_t ngx_http_events_webhook_api_field_enabled(
    ngx_http_request_t *r, json_t *v, ngx_http_events_webhook_spec_t *spec,
    ngx_http_events_error_t *err);
static ngx_int_t ngx_http_events_webhook_api_field_rate(
    ngx_http_request_t *r, json_t *v, ngx_http_events_webhook_spec_t *spec,
    ngx_http_events_error_t *err);
static ngx_int_t ngx_http_events_webhook_api_field_format(
    ngx_http_request_t *r, json_t *v, ngx_http_events_webhook_spec_t *spec,
    ngx_http_events_error_t *err);
static ngx_int_t ngx_http_events_webhook_api_field_metadata(
    ngx_http_request_t *r, json_t *v, ngx_http_events_webhook_spec_t *spec,
    ngx_http_events_error_t *err);
static ngx_int_t ngx_http_events_webhook_api_field_headers(
    ngx_http_request_t *r, json_t *v, ngx_http_events_webhook_spec_t *spec,
    ngx_http_events_error_t *err);
static ngx_int_t ngx_http_events_webhook_api_field_ordered(
    ngx_http_request_t *r, json_t *v, ngx_http_events_webhook_spec_t *spec,
    ngx_http_events_error_t *err);
static ngx_int_t ngx_http_events_webhook_api_field_inflight(
    ngx_http_request_t *r, json_t *v, ngx_http_events_webhook_spec_t *spec,
    ngx_http_events_error_t *err);
static ngx_int_t ngx_http_events_webhook_api_unverified(ngx_http_request_t *r);
static ngx_int_t ngx_http_events_webhook_api_field_verify(
    ngx_http_request_t *r, json_t *v, ngx_http_events_webhook_spec_t *spec,
    ngx_http_events_error_t *err);
static void ngx_http_events_webhook_api_verify_json(ngx_http_events_buf_t *o,
    ngx_http_events_webhook_view_t *v);


static ngx_http_events_webhook_field_t  ngx_http_events_webhook_fields[] = {
    { "url", JSON_STRING, 0, ngx_http_events_webhook_api_field_url },
    { "events", JSON_ARRAY, 0, ngx_http_events_webhook_api_field_events },
    { "description", JSON_STRING, 0,
      ngx_http_events_webhook_api_field_description },
    { "secret", JSON_STRING, 0, ngx_http_events_webhook_api_field_secret },
    { "enabled", JSON_TRUE, 0, ngx_http_events_webhook_api_field_enabled },
    { "rateLimit", JSON_INTEGER, 1, ngx_http_events_webhook_api_field_rate },
    { "format", JSON_STRING, 0, ngx_http_events_webhook_api_field_format },
    { "headers", JSON_OBJECT, 0, ngx_http_events_webhook_api_field_headers },
    { "metadata", JSON_OBJECT, 0,
      ngx_http_events_webhook_api_field_metadata },
    { "ordered", JSON_TRUE, 0, ngx_http_events_webhook_api_field_ordered },
    { "maxInFlight", JSON_INTEGER, 1,
      ngx_http_events_webhook_api_field_inflight },
    { "verify", JSON_STRING, 1, ngx_http_events_webhook_api_field_verify },
    { NULL, JSON_NULL, 0, NULL }
};


static ngx_http_events_webhook_param_t  ngx_http_events_webhook_params[] = {
    { ngx_string("limit"), ngx_http_events_webhook_api_param_limit },
    { ngx_string("after"), ngx_http_events_webhook_api_param_after },
    { ngx_string("status"), ngx_http_events_webhook_api_param_status },
    { ngx_string("eventId"), ngx_http_events_webhook_api_param_event },
    { ngx_string("token"), ngx_http_events_webhook_api_param_token },
    { ngx_null_string, NULL }
};


static const char  *ngx_http_events_webhook_results[] = {
    "succeeded", "failed", "failed", "expired", "aborted"
};

static const char  *ngx_http_events_webhook_triggers[] = {
    "scheduled", "manual", "replay"
};

static const char  *ngx_http_events_webhook_modes[] = {
    NULL, "all", "failed", "missing"
};

static const char  *ngx_http_events_webhook_disabled[] = {
    NULL, "gone", "receiver", "failing", "manual", "verification"
};

static const char  *ngx_http_events_webhook_verify_states[] = {
    "pending", "verified", "failed"
};


ngx_int_t
ngx_http_events_webhook_api_handler(ngx_http_request_t *r)
{
    ngx_int_t                         rc;
    ngx_http_events_ctx_t            *ctx;
    ngx_http_events_loc_conf_t       *elcf;
    ngx_http_events_webhook_route_t  *rt;

    if (!ngx_http_events_auth_access(r, &rc)) {
        return rc;
    }

    rt = ngx_pcalloc(r->pool, sizeof(ngx_http_events_webhook_route_t));
    if (rt == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_events_get_tenant(r, &rt->tenant);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_DECLINED) {
        ngx_http_discard_request_body(r);
        return ngx_http_events_webhook_api_fail(r, 400, "invalid_tenant", NULL,
                                                "the request's tenant must be "
                                                "1-64 characters of "
                                                "[A-Za-z0-9_.:-]");
    }

    rc = ngx_http_events_webhook_api_route(r, rt);
    if (rt->answered) {
        return rc;
    }

    if (r->method != NGX_HTTP_POST && r->method != NGX_HTTP_PATCH) {
        ngx_http_discard_request_body(r);
        return ngx_http_events_webhook_api_run(r, rt, NULL);
    }

    if (!ngx_http_events_http_is_json(r)
        && (r->headers_in.content_length_n > 0
            || r->headers_in.chunked))
    {
        ngx_http_discard_request_body(r);
        return ngx_http_events_webhook_api_fail(r, 415,
                                                "unsupported_media_type", NULL,
                                                "send application/json");
    }

    ctx = ngx_http_events_ctx(r);
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->route = rt;

    elcf = ngx_http_get_module_loc_conf(r, ngx_http_events_module);

    return ngx_http_events_http_body(r, elcf->max_body_size,
                                     "the body is too large",
                                     ngx_http_events_webhook_api_body);
}


/* which route, and whether the method fits it */

static ngx_int_t
ngx_http_events_webhook_api_route(ngx_http_request_t *r,
    ngx_http_events_webhook_route_t *rt)
{
    u_char                      *p, *last, *s;
    ngx_str_t                    seg[4];
    ngx_uint_t                   n, m;
    const char                  *allow;
    ngx_http_events_loc_conf_t  *elcf;

    elcf = ngx_http_get_module_loc_conf(r, ngx_http_events_module);

    p = r->uri.data + ngx_min(r->uri.len, elcf->prefix.len);
    last = r->uri.data + r->uri.len;

    if (p < last && *p != '/') {
        goto not_found;
    }

    for (n = 0; p < last && n < 4; n++) {
        p++;

        if (p == last && n > 0) {
            break;
        }

        s = p;

        while (p < last && *p != '/') {
            p++;
        }

        seg[n].data = s;
        seg[n].len = p - s;

        if (seg[n].len == 0 && !(n == 0 && p == last)) {
            break;
        }
    }

    if (n == 1 && seg[0].len == 0) {
        n = 0;
    }

    m = r->method;
    allow = NULL;

    if (p < last || n > 4) {
        goto not_found;
    }

    if (n == 0) {
        rt->route = NGX_HTTP_EVENTS_WH_LIST;
        allow = (m & (NGX_HTTP_GET|NGX_HTTP_HEAD|NGX_HTTP_POST))
                ? NULL : "GET, HEAD, POST";
        goto done;
    }

    rt->id = seg[0];

    if (n == 1) {
        rt->route = NGX_HTTP_EVENTS_WH_ONE;
        allow = (m & (NGX_HTTP_GET|NGX_HTTP_HEAD|NGX_HTTP_PATCH
                      |NGX_HTTP_DELETE))
                ? NULL : "GET, HEAD, PATCH, DELETE";
        goto done;
    }

    if (n == 2 && seg[1].len == 10
        && ngx_strncmp(seg[1].data, "deliveries", 10) == 0)
    {
        rt->route = NGX_HTTP_EVENTS_WH_DELIVERIES;
        allow = (m & (NGX_HTTP_GET|NGX_HTTP_HEAD)) ? NULL : "GET, HEAD";
        goto done;
    }

    if (n == 2) {
        if (seg[1].len == 6 && ngx_strncmp(seg[1].data, "replay", 6) == 0) {
            rt->route = NGX_HTTP_EVENTS_WH_REPLAY_R;

        } else if (seg[1].len == 4
                   && ngx_strncmp(seg[1].data, "test", 4) == 0)
        {
            rt->route = NGX_HTTP_EVENTS_WH_TEST;

        } else if (seg[1].len == 13
                   && ngx_strncmp(seg[1].data, "rotate-secret", 13) == 0)
        {
            rt->route = NGX_HTTP_EVENTS_WH_ROTATE;

        } else {
            goto not_found;
        }

        allow = (m & NGX_HTTP_POST) ? NULL : "POST";
        goto done;
    }

    if (seg[1].len != 10 || ngx_strncmp(seg[1].data, "deliveries", 10) != 0)
    {
        goto not_found;
    }

    rt->event = seg[2];

    if (n == 3) {
        rt->route = NGX_HTTP_EVENTS_WH_DELIVERY;
        allow = (m & (NGX_HTTP_GET|NGX_HTTP_HEAD)) ? NULL : "GET, HEAD";
        goto done;
    }

    if (seg[3].len != 5 || ngx_strncmp(seg[3].data, "retry", 5) != 0) {
        goto not_found;
    }

    rt->route = NGX_HTTP_EVENTS_WH_RETRY;
    allow = (m & NGX_HTTP_POST) ? NULL : "POST";

done:

    if (allow) {
        rt->answered = 1;
        return ngx_http_events_http_not_allowed(r, (char *) allow);
    }

    return NGX_OK;

not_found:

    ngx_http_discard_request_body(r);
    rt->answered = 1;

    return ngx_http_events_webhook_api_fail(r, 404, "not_found", NULL,
                                            "no such endpoint");
}


static ngx_int_t
ngx_http_events_webhook_api_body(ngx_http_request_t *r, u_char *data,
    size_t len)
{
    ngx_str_t               body;
    ngx_http_events_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_events_module);

    body.data = data;
    body.len = len;

    return ngx_http_events_webhook_api_run(r, ctx->route, &body);
}


static ngx_int_t
ngx_http_events_webhook_api_run(ngx_http_request_t *r,
    ngx_http_events_webhook_route_t *rt, ngx_str_t *body)
{
    json_t                      *root;
    ngx_int_t                    rc;
    json_error_t                 jerr;
    ngx_http_events_store_t     *store;
    ngx_http_events_loc_conf_t  *elcf;

    elcf = ngx_http_get_module_loc_conf(r, ngx_http_events_module);
    store = elcf->webhooks_zone->data;

    if (store->whcf == NULL) {
        return ngx_http_events_webhook_api_fail(r, 500, "internal_error", NULL,
                                                "webhooks are not set up");
    }

    root = NULL;

    if (body && body->len) {
        root = json_loadb((char *) body->data, body->len,
                          JSON_REJECT_DUPLICATES, &jerr);

        if (root == NULL) {
            return ngx_http_events_webhook_api_fail(r, 400, "invalid_json",
                                                    NULL,
                                                    "malformed JSON at line "
                                                    "%d, column %d: %s",
                                                    jerr.line, jerr.column,
                                                    jerr.text);
        }

        if (!json_is_object(root)) {
            json_decref(root);
            return ngx_http_events_webhook_api_fail(r, 400, "invalid_body",
                                                    NULL,
                                                    "the body must be a JSON "
                                                    "object");
        }
    }

    switch (rt->route) {

    case NGX_HTTP_EVENTS_WH_LIST:
        rc = (r->method == NGX_HTTP_POST)
             ? ngx_http_events_webhook_api_create(r, rt, root)
             : ngx_http_events_webhook_api_list(r, rt);
        break;

    case NGX_HTTP_EVENTS_WH_ONE:

        if (r->method == NGX_HTTP_PATCH) {
            rc = ngx_http_events_webhook_api_patch(r, rt, root);

        } else if (r->method == NGX_HTTP_DELETE) {
            rc = ngx_http_events_webhook_delete(store, &rt->tenant, &rt->id);

            if (rc == NGX_HTTP_EVENTS_WEBHOOK_OK) {
                (void) ngx_http_events_webhook_state_save(store);
                ngx_http_events_webhook_api_share(r, store, rt);
                r->headers_out.status = NGX_HTTP_NO_CONTENT;
                r->header_only = 1;
                r->headers_out.content_length_n = 0;
                rc = ngx_http_send_header(r);

            } else if (rc == NGX_HTTP_EVENTS_WEBHOOK_STATIC) {
                rc = ngx_http_events_webhook_api_fail(r, 409, "static_endpoint",
                                                      NULL,
                                                      "this endpoint comes "
                                                      "from nginx.conf; "
                                                      "change it there");
            } else {
                rc = ngx_http_events_webhook_api_unknown(r, rt);
            }

        } else {
            rc = ngx_http_events_webhook_api_get(r, rt, NGX_HTTP_OK, NULL);
        }

        break;

    case NGX_HTTP_EVENTS_WH_DELIVERIES:
        rc = ngx_http_events_webhook_api_attempts(r, rt);
        break;

    case NGX_HTTP_EVENTS_WH_DELIVERY:
        rc = ngx_http_events_webhook_api_delivery(r, rt);
        break;

    case NGX_HTTP_EVENTS_WH_RETRY:
        rc = ngx_http_events_webhook_api_retry(r, rt);
        break;

    case NGX_HTTP_EVENTS_WH_TEST:
        rc = ngx_http_events_webhook_api_test(r, rt);
        break;

    case NGX_HTTP_EVENTS_WH_ROTATE:
        rc = ngx_http_events_webhook_api_rotate(r, rt, root);
        break;

    default: /* NGX_HTTP_EVENTS_WH_REPLAY_R */
        rc = ngx_http_events_webhook_api_replay(r, rt, root);
        break;
    }

    if (root) {
        json_decref(root);
    }

    return rc;
}


/* POST P */

static ngx_int_t
ngx_http_events_webhook_api_create(ngx_http_request_t *r,
    ngx_http_events_webhook_route_t *rt, json_t *root)
{
    u_char                          *p;
    u_char                           id[NGX_HTTP_EVENTS_ID_LEN];
    ngx_int_t                        rc;
    ngx_str_t                        src, text;
    ngx_http_events_ipc_t           *ipc;
    ngx_http_events_error_t          err;
    ngx_http_events_store_t         *store;
    ngx_http_events_webhook_spec_t  *spec;
    ngx_http_events_loc_conf_t      *elcf;

    elcf = ngx_http_get_module_loc_conf(r, ngx_http_events_module);
    store = elcf->webhooks_zone->data;

    if (root == NULL) {
        return ngx_http_events_webhook_api_fail(r, 400, "invalid_body", NULL,
                                                "send the endpoint as a JSON "
                                                "object");
    }

    spec = ngx_pcalloc(r->pool, sizeof(ngx_http_events_webhook_spec_t));
    if (spec == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_http_events_webhook_api_spec(r, root, spec, 1, &err) != NGX_OK) {
        return ngx_http_events_http_send_error(r, &err, NULL);
    }

    if (ngx_http_events_webhook_api_covered(r, spec->patterns, spec->npatterns,
                                            &err)
        != NGX_OK)
    {
        return ngx_http_events_http_send_error(r, &err, NULL);
    }

    if (spec->secret_len == 0) {
        if (RAND_bytes(spec->secret, 32) != 1) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        spec->secret_len = 32;
    }

    ipc = ngx_http_events_ipc();

    if (ngx_http_events_id_generate(id, ngx_time() * 1000,
                                    ipc ? &ipc->rng : NULL)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_pnalloc(r->pool, 3 + 26);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_memcpy(p, "wh_", 3);
    ngx_memcpy(p + 3, id + 4, 26);

    spec->id.data = p;
    spec->id.len = 29;
    spec->tenant = rt->tenant;
    spec->enabled = 1;

    rc = ngx_http_events_webhook_create(store, spec, elcf->wh->max_endpoints);

    if (rc == NGX_HTTP_EVENTS_WEBHOOK_LIMIT) {
        return ngx_http_events_webhook_api_fail(r, 409, "too_many_endpoints",
                                                NULL, "this tenant has %ui "
                                                "endpoints, the most "
                                                "events_webhook_max_per_tenant"
                                                " allows",
                                                elcf->wh->max_endpoints);
    }

    if (rc != NGX_HTTP_EVENTS_WEBHOOK_OK) {
        return ngx_http_events_webhook_api_fail(r, 503, "zone_full", NULL,
                                                "no room for another endpoint "
                                                "in events zone \"%V\"",
                                                &store->name);
    }

    /* with a journal, on disk before the 201, or not at all */
    if (ngx_http_events_webhook_state_save(store) == NGX_ERROR) {
        (void) ngx_http_events_webhook_delete(store, &rt->tenant, &spec->id);
        return ngx_http_events_webhook_api_fail(r, 503, "journal_unavailable",
                                                NULL,
                                                "the webhook state cannot be "
                                                "written; nothing was created");
    }

    rt->id = spec->id;

    /* a cluster's: on every node, or not at all */
    if (ngx_http_events_webhook_share_publish(store, &rt->tenant, &spec->id,
                                              r->pool)
        != NGX_OK)
    {
        (void) ngx_http_events_webhook_delete(store, &rt->tenant, &spec->id);
        return ngx_http_events_webhook_api_fail(r, 503, "cluster_unavailable",
                                                NULL,
                                                "the cluster's log cannot be "
                                                "reached; nothing was "
                                                "created");
    }

    /* the secret is shown now and on rotation, never again */
    src.data = spec->secret;
    src.len = spec->secret_len;

    text.data = ngx_pnalloc(r->pool, 6 + ngx_base64_encoded_length(src.len));
    if (text.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_cpymem(text.data, "whsec_", 6);
    text.len = 6;
    src.len = spec->secret_len;

    {
        ngx_str_t  b64;

        b64.data = p;
        ngx_encode_base64(&b64, &src);
        text.len += b64.len;
    }

    p = ngx_pnalloc(r->pool, elcf->prefix.len + 1 + rt->id.len);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    src.data = p;
    p = ngx_cpymem(p, elcf->prefix.data, elcf->prefix.len);
    *p++ = '/';
    p = ngx_cpymem(p, rt->id.data, rt->id.len);
    src.len = p - src.data;

    if (ngx_http_events_http_add_header(r, "Location", &src) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_events_webhook_api_get(r, rt, NGX_HTTP_CREATED, &text);
}


/* PATCH P/{id} */

static ngx_int_t
ngx_http_events_webhook_api_patch(ngx_http_request_t *r,
    ngx_http_events_webhook_route_t *rt, json_t *root)
{
    ngx_int_t                        rc;
    ngx_http_events_error_t          err;
    ngx_http_events_store_t         *store;
    ngx_http_events_webhook_spec_t  *spec;
    ngx_http_events_loc_conf_t      *elcf;

    elcf = ngx_http_get_module_loc_conf(r, ngx_http_events_module);
    store = elcf->webhooks_zone->data;

    if (root == NULL) {
        return ngx_http_events_webhook_api_fail(r, 400, "invalid_body", NULL,
                                                "send the changes as a JSON "
                                                "object");
    }

    spec = ngx_pcalloc(r->pool, sizeof(ngx_http_events_webhook_spec_t));
    if (spec == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_http_events_webhook_api_spec(r, root, spec, 0, &err) != NGX_OK) {
        return ngx_http_events_http_send_error(r, &err, NULL);
    }

    if (json_object_get(root, "secret")) {
        return ngx_http_events_webhook_api_fail(r, 400, "invalid_field",
                                                "secret",
                                                "change the secret with POST "
                                                ".../rotate-secret");
    }

    if (spec->set_patterns
        && ngx_http_events_webhook_api_covered(r, spec->patterns,
                                               spec->npatterns,
                                               &err)
           != NGX_OK)
    {
        return ngx_http_events_http_send_error(r, &err, NULL);
    }

    spec->id = rt->id;
    spec->tenant = rt->tenant;

    rc = ngx_http_events_webhook_update(store, spec);

    if (rc == NGX_HTTP_EVENTS_WEBHOOK_NOT_FOUND) {
        return ngx_http_events_webhook_api_unknown(r, rt);
    }

    if (rc == NGX_HTTP_EVENTS_WEBHOOK_STATIC) {
        return ngx_http_events_webhook_api_fail(r, 409, "static_endpoint", NULL,
                                                "this endpoint comes from "
                                                "nginx.conf; change it there");
    }

    if (rc != NGX_HTTP_EVENTS_WEBHOOK_OK) {
        return ngx_http_events_webhook_api_fail(r, 503, "zone_full", NULL,
                                                "no room in events zone \"%V\"",
                                                &store->name);
    }

    (void) ngx_http_events_webhook_state_save(store);
    ngx_http_events_webhook_api_share(r, store, rt);

    return ngx_http_events_webhook_api_get(r, rt, NGX_HTTP_OK, NULL);
}


/*
 * The fields of a create or a patch, checked; nothing is changed yet.
 * Each known field has its handler in ngx_http_events_webhook_fields.
 */

static ngx_int_t
ngx_http_events_webhook_api_spec(ngx_http_request_t *r, json_t *root,
    ngx_http_events_webhook_spec_t *spec, ngx_uint_t create,
    ngx_http_events_error_t *err)
{
    json_t                           *v;
    const char                       *key;
    ngx_http_events_webhook_field_t  *f;

    json_object_foreach(root, key, v) {

        for (f = ngx_http_events_webhook_fields; f->name; f++) {
            if (ngx_strcmp(key, f->name) == 0) {
                break;
            }
        }

        if (f->name == NULL) {
            ngx_http_events_error(err, 400, "unknown_field", "field", NULL,
                                  key, "unknown field \"%s\"", key);
            return NGX_ERROR;
        }

        /* a field of the wrong JSON type, whatever it is */
        if (f->type != JSON_NULL && json_typeof(v) != f->type
            && !(f->type == JSON_TRUE && json_is_boolean(v))
            && !(f->nullable && json_is_null(v)))
        {
            ngx_http_events_error(err, 400, "invalid_field", "field", NULL,
                                  key, "%s has the wrong type", key);
            return NGX_ERROR;
        }

        if (f->handler(r, v, spec, err) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    if (create && !spec->set_url) {
        ngx_http_events_error(err, 400, "missing_field", "field", NULL, "url",
                              "url is required");
        return NGX_ERROR;
    }

    if (create && !spec->set_patterns) {
        ngx_http_events_error(err, 400, "missing_field", "field", NULL,
                              "events", "events is required: a list of "
                              "type patterns");
        return NGX_ERROR;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_events_webhook_api_field_url(ngx_http_request_t *r, json_t *v,
    ngx_http_events_webhook_spec_t *spec, ngx_http_events_error_t *err)
{
    spec->url.data = (u_char *) json_string_value(v);
    spec->url.len = json_string_length(v);
    spec->set_url = 1;

    return ngx_http_events_webhook_api_url(r, &spec->url, err);
}


static ngx_int_t
ngx_http_events_webhook_api_field_events(ngx_http_request_t *r, json_t *v,
    ngx_http_events_webhook_spec_t *spec, ngx_http_events_error_t *err)
{
    size_t   i;
    json_t  *item;

    if (json_array_size(v) == 0) {
        ngx_http_events_error(err, 400, "invalid_field", "field", NULL,
                              "events", "events must be a non-empty array "
                              "of type patterns");
        return NGX_ERROR;
    }

    if (json_array_size(v) > NGX_HTTP_EVENTS_WH_MAX_PATTERNS) {
        ngx_http_events_error(err, 400, "invalid_field", "field", NULL,
                              "events", "at most %d patterns",
                              NGX_HTTP_EVENTS_WH_MAX_PATTERNS);
        return NGX_ERROR;
    }

    json_array_foreach(v, i, item) {
        if (!json_is_string(item)
            || ngx_http_events_match_pattern_valid(
                   (u_char *) json_string_value(item),
                   json_string_length(item))
               != NGX_OK)
        {
            ngx_http_events_error(err, 400, "invalid_pattern", "field", NULL,
                                  "events", "events[%uz] is not a type "
                                  "pattern like \"ticket.*\", \"*.created\" "
                                  "or \"*\"", i);
            return NGX_ERROR;
        }

        spec->patterns[i].data = (u_char *) json_string_value(item);
        spec->patterns[i].len = json_string_length(item);
    }

    spec->npatterns = json_array_size(v);
    spec->set_patterns = 1;

    return NGX_OK;
}


static ngx_int_t
ngx_http_events_webhook_api_field_description(ngx_http_request_t *r,
    json_t *v, ngx_http_events_webhook_spec_t *spec,
    ngx_http_events_error_t *err)
{
    if (json_string_length(v) > NGX_HTTP_EVENTS_WH_MAX_DESCRIPTION) {
        ngx_http_events_error(err, 400, "invalid_field", "field", NULL,
                              "description", "at most %d bytes",
                              NGX_HTTP_EVENTS_WH_MAX_DESCRIPTION);
        return NGX_ERROR;
    }

    spec->description.data = (u_char *) json_string_value(v);
    spec->description.len = json_string_length(v);
    spec->set_description = 1;

    return NGX_OK;
}


static ngx_int_t
ngx_http_events_webhook_api_field_secret(ngx_http_request_t *r, json_t *v,
    ngx_http_events_webhook_spec_t *spec, ngx_http_events_error_t *err)
{
    ngx_str_t  s;

    s.data = (u_char *) json_string_value(v);
    s.len = json_string_length(v);

    if (ngx_http_events_webhook_secret(&s, spec->secret, &spec->secret_len)
        != NGX_OK)
    {
        ngx_http_events_error(err, 400, "invalid_secret", "field", NULL,
                              "secret", "a secret is \"whsec_\" and the "
                              "base64 of 24 to 64 random bytes");
        return NGX_ERROR;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_events_webhook_api_field_enabled(ngx_http_request_t *r, json_t *v,
    ngx_http_events_webhook_spec_t *spec, ngx_http_events_error_t *err)
{
    spec->enabled = json_is_true(v);
    spec->set_enabled = 1;

    return NGX_OK;
}


static ngx_int_t
ngx_http_events_webhook_api_field_rate(ngx_http_request_t *r, json_t *v,
    ngx_http_events_webhook_spec_t *spec, ngx_http_events_error_t *err)
{
    json_int_t  n;

    spec->set_rate = 1;

    if (json_is_null(v)) {
        spec->rate_limit = 0;
        return NGX_OK;
    }

    n = json_integer_value(v);

    if (n < 1 || n > 100000) {
        ngx_http_events_error(err, 400, "invalid_field", "field", NULL,
                              "rateLimit", "rateLimit is deliveries per "
                              "second, 1-100000, or null");
        return NGX_ERROR;
    }

    spec->rate_limit = (ngx_uint_t) n;

    return NGX_OK;
}


static ngx_int_t
ngx_http_events_webhook_api_field_format(ngx_http_request_t *r, json_t *v,
    ngx_http_events_webhook_spec_t *spec, ngx_http_events_error_t *err)
{
    ngx_uint_t   i;
    const char  *s;

    s = json_string_value(v);

    for (i = 0; ngx_http_events_webhook_formats[i]; i++) {
        if (ngx_strcmp(s, ngx_http_events_webhook_formats[i]) == 0) {
            spec->format = i;
            spec->set_format = 1;
            return NGX_OK;
        }
    }

    ngx_http_events_error(err, 400, "invalid_field", "field", NULL,
                          "format", "format is \"envelope\", \"cloudevents\" "
                          "or \"cloudevents-structured\"");
    return NGX_ERROR;
}


static ngx_int_t
ngx_http_events_webhook_api_field_ordered(ngx_http_request_t *r, json_t *v,
    ngx_http_events_webhook_spec_t *spec, ngx_http_events_error_t *err)
{
    spec->ordered = json_is_true(v);
    spec->set_ordered = 1;

    return NGX_OK;
}


/*
 * A resend or a test ping of an endpoint whose receiver has not allowed
 * us yet: sending it would bypass the handshake.
 */

static ngx_int_t
ngx_http_events_webhook_api_unverified(ngx_http_request_t *r)
{
    return ngx_http_events_webhook_api_fail(r, 409, "not_verified", NULL,
                                            "the receiver has not answered "
                                            "the CloudEvents handshake yet "
                                            "(see \"verification\")");
}


/* the CloudEvents handshake before the first delivery, or null: none */

static ngx_int_t
ngx_http_events_webhook_api_field_verify(ngx_http_request_t *r, json_t *v,
    ngx_http_events_webhook_spec_t *spec, ngx_http_events_error_t *err)
{
    spec->set_verify = 1;

    if (json_is_null(v)) {
        spec->verify = NGX_HTTP_EVENTS_WH_VERIFY_NONE;
        return NGX_OK;
    }

    if (ngx_strcmp(json_string_value(v), "cloudevents") == 0) {
        spec->verify = NGX_HTTP_EVENTS_WH_VERIFY_CE;
        return NGX_OK;
    }

    ngx_http_events_error(err, 400, "invalid_field", "field", NULL,
                          "verify", "verify is \"cloudevents\" or null");
    return NGX_ERROR;
}


static ngx_int_t
ngx_http_events_webhook_api_field_inflight(ngx_http_request_t *r, json_t *v,
    ngx_http_events_webhook_spec_t *spec, ngx_http_events_error_t *err)
{
    json_int_t  n;

    spec->set_max_inflight = 1;

    if (json_is_null(v)) {
        spec->max_inflight = 0;
        return NGX_OK;
    }

    n = json_integer_value(v);

    if (n < 1 || n > NGX_HTTP_EVENTS_WH_MAX_INFLIGHT) {
        ngx_http_events_error(err, 400, "invalid_field", "field", NULL,
                              "maxInFlight", "maxInFlight is attempts in "
                              "flight at once, 1-1000, or null");
        return NGX_ERROR;
    }

    spec->max_inflight = (ngx_uint_t) n;

    return NGX_OK;
}


/*
 * "metadata": {"KEY": "VALUE", ...}: events whose metadata has every
 * KEY with that VALUE, by the rules of ?metadata.KEY=VALUE on lists;
 * {} takes the filters away
 */

static ngx_int_t
ngx_http_events_webhook_api_field_metadata(ngx_http_request_t *r, json_t *v,
    ngx_http_events_webhook_spec_t *spec, ngx_http_events_error_t *err)
{
    json_t      *item;
    ngx_str_t    key, value;
    ngx_uint_t   n;
    const char  *mkey;

    if (json_object_size(v) > NGX_HTTP_EVENTS_MAX_META_FILTERS) {
        ngx_http_events_error(err, 400, "invalid_field", "field", NULL,
                              "metadata", "at most %d metadata filters",
                              NGX_HTTP_EVENTS_MAX_META_FILTERS);
        return NGX_ERROR;
    }

    n = 0;

    json_object_foreach(v, mkey, item) {
        key.data = (u_char *) mkey;
        key.len = ngx_strlen(mkey);

        if (ngx_http_events_match_meta_key_valid(key.data, key.len)
            != NGX_OK)
        {
            ngx_http_events_error(err, 400, "invalid_field", "field", NULL,
                                  "metadata", "metadata keys are 1-%d "
                                  "characters of [A-Za-z0-9_.:-]",
                                  NGX_HTTP_EVENTS_MAX_META_KEY);
            return NGX_ERROR;
        }

        if (json_is_string(item)) {
            value.data = (u_char *) json_string_value(item);
            value.len = json_string_length(item);
        }

        if (!json_is_string(item)
            || ngx_http_events_webhook_meta_value_valid(&value) != NGX_OK)
        {
            ngx_http_events_error(err, 400, "invalid_field", "field", NULL,
                                  "metadata", "metadata \"%s\" must be a "
                                  "string of 1-%d bytes of printable UTF-8",
                                  mkey, NGX_HTTP_EVENTS_MAX_META_VALUE);
            return NGX_ERROR;
        }

        spec->mkeys[n] = key;
        spec->mvalues[n] = value;
        n++;
    }

    spec->nmeta = n;
    spec->set_meta = 1;

    return NGX_OK;
}


/* names the module sets itself may not be given */
static const char  *ngx_http_events_webhook_reserved[] = {
    "content-type", "content-length", "host", "user-agent", "connection",
    "transfer-encoding", NULL
};


static ngx_int_t
ngx_http_events_webhook_api_field_headers(ngx_http_request_t *r, json_t *v,
    ngx_http_events_webhook_spec_t *spec, ngx_http_events_error_t *err)
{
    u_char       *p;
    size_t        len;
    json_t       *item;
    ngx_uint_t    n, i;
    const char   *hkey;

    if (json_object_size(v) > NGX_HTTP_EVENTS_WH_MAX_HEADERS) {
        ngx_http_events_error(err, 400, "invalid_field", "field", NULL,
                              "headers", "at most %d headers",
                              NGX_HTTP_EVENTS_WH_MAX_HEADERS);
        return NGX_ERROR;
    }

    n = 0;

    json_object_foreach(v, hkey, item) {
        len = ngx_strlen(hkey);

        if (len == 0 || len > NGX_HTTP_EVENTS_WH_MAX_HNAME) {
            goto invalid;
        }

        for (p = (u_char *) hkey; *p; p++) {
            if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')
                  || (*p >= '0' && *p <= '9') || *p == '-' || *p == '_'))
            {
                goto invalid;
            }
        }

        for (i = 0; ngx_http_events_webhook_reserved[i]; i++) {
            if (ngx_strcasecmp((u_char *) hkey,
                        (u_char *) ngx_http_events_webhook_reserved[i])
                == 0)
            {
                break;
            }
        }

        if (ngx_http_events_webhook_reserved[i]
            || (len >= 8 && ngx_strncasecmp((u_char *) hkey,
                                            (u_char *) "webhook-", 8) == 0)
            || (len >= 9 && ngx_strncasecmp((u_char *) hkey,
                                            (u_char *) "x-events-", 9) == 0))
        {
            ngx_http_events_error(err, 400, "invalid_field", "field", NULL,
                                  "headers", "header \"%s\" is set by the "
                                  "module", hkey);
            return NGX_ERROR;
        }

        if (!json_is_string(item)
            || json_string_length(item) > NGX_HTTP_EVENTS_WH_MAX_HVALUE)
        {
            goto invalid;
        }

        for (p = (u_char *) json_string_value(item); *p; p++) {
            if (*p < 0x20 && *p != '\t') {
                goto invalid;
            }
        }

        spec->hnames[n].data = (u_char *) hkey;
        spec->hnames[n].len = len;
        spec->hvalues[n].data = (u_char *) json_string_value(item);
        spec->hvalues[n].len = json_string_length(item);
        n++;
    }

    spec->nheaders = n;
    spec->set_headers = 1;

    return NGX_OK;

invalid:

    ngx_http_events_error(err, 400, "invalid_field", "field", NULL,
                          "headers", "header names are 1-%d characters of "
                          "[A-Za-z0-9_-], values are strings of at most %d "
                          "bytes without control characters",
                          NGX_HTTP_EVENTS_WH_MAX_HNAME,
                          NGX_HTTP_EVENTS_WH_MAX_HVALUE);
    return NGX_ERROR;
}


/* an http(s) URL with a host; a literal private address is refused now */

static ngx_int_t
ngx_http_events_webhook_api_url(ngx_http_request_t *r, ngx_str_t *url,
    ngx_http_events_error_t *err)
{
    size_t                       skip;
    ngx_url_t                    u;
    ngx_str_t                    host;
    ngx_addr_t                   addr;
    ngx_uint_t                   i;
    ngx_http_events_loc_conf_t  *elcf;

    elcf = ngx_http_get_module_loc_conf(r, ngx_http_events_module);

    if (url->len > NGX_HTTP_EVENTS_WH_MAX_URL) {
        ngx_http_events_error(err, 400, "invalid_url", "field", NULL, "url",
                              "the url may be at most %d bytes",
                              NGX_HTTP_EVENTS_WH_MAX_URL);
        return NGX_ERROR;
    }

    for (i = 0; i < url->len; i++) {
        if (url->data[i] <= 0x20 || url->data[i] >= 0x7f) {
            goto invalid;
        }
    }

    ngx_memzero(&u, sizeof(ngx_url_t));

    if (url->len > 8 && ngx_strncasecmp(url->data, (u_char *) "https://", 8)
                        == 0)
    {
        skip = 8;
        u.default_port = 443;

    } else if (url->len > 7
               && ngx_strncasecmp(url->data, (u_char *) "http://", 7) == 0)
    {
        if (elcf->wh->https_only) {
            ngx_http_events_error(err, 400, "invalid_url", "field", NULL,
                                  "url", "only https URLs are allowed "
                                  "(events_webhook_https_only)");
            return NGX_ERROR;
        }

        skip = 7;
        u.default_port = 80;

    } else {
        goto invalid;
    }

    u.url.data = url->data + skip;
    u.url.len = url->len - skip;
    u.uri_part = 1;
    u.no_resolve = 1;

    if (ngx_strlchr(u.url.data, u.url.data + u.url.len, '@')
        || ngx_parse_url(r->pool, &u) != NGX_OK || u.host.len == 0)
    {
        goto invalid;
    }

    host = u.host;

    if (host.len > 2 && host.data[0] == '[') {
        host.data++;
        host.len -= 2;
    }

    if (ngx_parse_addr(r->pool, &addr, host.data, host.len) == NGX_OK
        && ngx_http_events_webhook_delivery_addr_blocked(addr.sockaddr,
                                                         elcf->wh))
    {
        ngx_http_events_error(err, 400, "blocked_url", "field", NULL, "url",
                              "%V is a loopback, private or reserved "
                              "address (events_webhook_allow_private, "
                              "events_webhook_allow)", &host);
        return NGX_ERROR;
    }

    return NGX_OK;

invalid:

    ngx_http_events_error(err, 400, "invalid_url", "field", NULL, "url",
                          "the url must be http:// or https:// with a host, "
                          "and without credentials or spaces");
    return NGX_ERROR;
}


/* the token's subscribe grant must cover every pattern */

static ngx_int_t
ngx_http_events_webhook_api_covered(ngx_http_request_t *r, ngx_str_t *patterns,
    ngx_uint_t n, ngx_http_events_error_t *err)
{
    ngx_uint_t                 i, j, ok;
    ngx_http_events_claims_t  *claims;

    claims = ngx_http_events_auth_claims(r);

    if (claims == NULL || claims->admin) {
        return NGX_OK;
    }

    for (i = 0; i < n; i++) {
        ok = 0;

        for (j = 0; j < claims->nsubscribe && !ok; j++) {
            ok = ngx_http_events_match_pattern_covers(&claims->subscribe[j],
                                                      &patterns[i]);
        }

        if (!ok) {
            ngx_http_events_error(err, 403, "forbidden", "field", NULL,
                                  "events", "the token does not grant "
                                  "subscribe to \"%V\"", &patterns[i]);
            return NGX_DECLINED;
        }
    }

    return NGX_OK;
}


/* GET P/{id}, and the answers of create and patch */

static ngx_int_t
ngx_http_events_webhook_api_get(ngx_http_request_t *r,
    ngx_http_events_webhook_route_t *rt, ngx_uint_t status, ngx_str_t *secret)
{
    ngx_int_t                       rc;
    ngx_http_events_buf_t           o;
    ngx_http_events_store_t        *store;
    ngx_http_events_webhook_view_t  view;
    ngx_http_events_loc_conf_t     *elcf;

    elcf = ngx_http_get_module_loc_conf(r, ngx_http_events_module);
    store = elcf->webhooks_zone->data;

    rc = ngx_http_events_webhook_get(store, &rt->tenant, &rt->id, r->pool,
                                     &view);

    if (rc == NGX_HTTP_EVENTS_WEBHOOK_NOT_FOUND) {
        return ngx_http_events_webhook_api_unknown(r, rt);
    }

    if (rc != NGX_HTTP_EVENTS_WEBHOOK_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_events_buf_init(&o, r->pool, 1024);

    ngx_http_events_webhook_api_view_json(&o, &view);

    if (secret && o.pos) {
        o.pos--;        /* the closing brace */
        ngx_http_events_buf_printf(&o, ",\"secret\":");
        ngx_http_events_buf_str(&o, secret->data, secret->len);
        ngx_http_events_buf_printf(&o, "}");
    }

    return ngx_http_events_http_send_buf(r, status, NULL, &o);
}


static ngx_int_t
ngx_http_events_webhook_api_list(ngx_http_request_t *r,
    ngx_http_events_webhook_route_t *rt)
{
    ngx_uint_t                       i;
    ngx_array_t                      views;
    ngx_http_events_buf_t            o;
    ngx_http_events_store_t         *store;
    ngx_http_events_webhook_view_t  *v;
    ngx_http_events_loc_conf_t      *elcf;

    elcf = ngx_http_get_module_loc_conf(r, ngx_http_events_module);
    store = elcf->webhooks_zone->data;

    if (ngx_array_init(&views, r->pool, 8,
                       sizeof(ngx_http_events_webhook_view_t))
        != NGX_OK
        || ngx_http_events_webhook_list(store, &rt->tenant, r->pool, &views)
           != NGX_HTTP_EVENTS_WEBHOOK_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_events_buf_init(&o, r->pool, 1024);

    ngx_http_events_buf_printf(&o, "{\"data\":[");

    v = views.elts;

    for (i = 0; i < views.nelts; i++) {
        if (i) {
            ngx_http_events_buf_printf(&o, ",");
        }

        ngx_http_events_webhook_api_view_json(&o, &v[i]);
    }

    ngx_http_events_buf_printf(&o, "]}");

    return ngx_http_events_http_send_buf(r, NGX_HTTP_OK, NULL, &o);
}


/* GET P/{id}/deliveries: the attempt log, newest first */

static ngx_int_t
ngx_http_events_webhook_api_attempts(ngx_http_request_t *r,
    ngx_http_events_webhook_route_t *rt)
{
    size_t                              size;
    uint64_t                            before, next;
    ngx_int_t                           rc, limit, result;
    ngx_str_t                           event_id, type;
    ngx_uint_t                          i, n;
    ngx_array_t                         all;
    ngx_http_events_buf_t               o;
    ngx_http_events_error_t             err;
    ngx_http_events_loc_conf_t         *elcf;
    ngx_http_events_webhook_filter_t    f;
    ngx_http_events_webhook_attempt_t  *a;

    elcf = ngx_http_get_module_loc_conf(r, ngx_http_events_module);

    ngx_memzero(&f, sizeof(ngx_http_events_webhook_filter_t));
    f.limit = 50;
    f.result = -1;

    if (ngx_http_events_webhook_api_params(r, &f, &err) != NGX_OK) {
        return err.status ? ngx_http_events_http_send_error(r, &err, NULL)
                          : NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    limit = f.limit;
    before = f.before;
    result = f.result;
    event_id = f.event_id;

    /* the whole log below the cursor: it is small, and filters skip */
    rc = ngx_http_events_webhook_api_log(r, rt, before, &all);
    size = all.size;

    if (rc == NGX_DECLINED) {
        return ngx_http_events_webhook_api_unknown(r, rt);
    }

    if (rc != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_events_buf_init(&o, r->pool, 1024);

    ngx_http_events_buf_printf(&o, "{\"data\":[");

    n = 0;
    next = 0;

    for (i = 0; i < all.nelts; i++) {
        a = (ngx_http_events_webhook_attempt_t *)
                ((u_char *) all.elts + i * size);

        /* what the caller's grant does not cover is not shown */
        type.data = a->type;
        type.len = a->type_len;

        if (!ngx_http_events_webhook_api_granted(r, &type)) {
            continue;
        }

        if ((result == 1 && a->result != 1 && a->result != 2)
            || (result != -1 && result != 1 && a->result != result)
            || (event_id.len && (a->event_id_len != event_id.len
                                 || ngx_strncmp(a->event_id, event_id.data,
                                                event_id.len) != 0)))
        {
            continue;
        }

        if (n == (ngx_uint_t) limit) {
            break;
        }

        if (n++) {
            ngx_http_events_buf_printf(&o, ",");
        }

        /* a copy longer than its excerpt was cut by the array's size */
        if (a->excerpt_len > elcf->wh->excerpt_size) {
            a->excerpt_len = (uint16_t) elcf->wh->excerpt_size;
        }

        ngx_http_events_webhook_api_attempt_json(&o, a);
        next = a->n;
    }

    if (i < all.nelts && next) {
        ngx_http_events_buf_printf(&o, "],\"nextCursor\":\"a%uL\"}", next);

    } else {
        ngx_http_events_buf_printf(&o, "],\"nextCursor\":null}");
    }

    return ngx_http_events_http_send_buf(r, NGX_HTTP_OK, NULL, &o);
}


/*
 * The query of GET P/{id}/deliveries, under the contract of GET /events:
 * every parameter known, given once, and checked; what is wrong is
 * invalid_parameter with its name in "param".
 */

static ngx_int_t
ngx_http_events_webhook_api_params(ngx_http_request_t *r,
    ngx_http_events_webhook_filter_t *f, ngx_http_events_error_t *err)
{
    u_char                                *p, *end, *amp, *eq, *src, *dst;
    ngx_str_t                              name, value;
    ngx_uint_t                             i, seen;
    ngx_http_events_webhook_param_t       *param;

    seen = 0;
    err->status = 0;

    p = r->args.data;
    end = p + r->args.len;

    for ( /* void */ ; p < end; p = amp + 1) {
        amp = ngx_strlchr(p, end, '&');
        if (amp == NULL) {
            amp = end;
        }

        if (amp == p) {
            continue;
        }

        eq = ngx_strlchr(p, amp, '=');

        name.data = p;
        name.len = (eq ? eq : amp) - p;

        param = NULL;

        for (i = 0; ngx_http_events_webhook_params[i].name.len; i++) {
            if (name.len == ngx_http_events_webhook_params[i].name.len
                && ngx_strncmp(name.data,
                               ngx_http_events_webhook_params[i].name.data,
                               name.len) == 0)
            {
                param = &ngx_http_events_webhook_params[i];
                break;
            }
        }

        if (param == NULL) {
            ngx_http_events_error(err, 400, "invalid_parameter", "param",
                                  NULL, NULL, "unknown parameter \"%*s\"",
                                  ngx_min(name.len, 64), name.data);
            err->name_len = ngx_min(name.len, sizeof(err->name));
            ngx_memcpy(err->name, name.data, err->name_len);
            ngx_http_events_error_name(err);
            return NGX_ERROR;
        }

        if (seen & (1 << i)) {
            ngx_http_events_error(err, 400, "invalid_parameter", "param",
                                  NULL, (char *) param->name.data,
                                  "\"%V\" is given more than once",
                                  &param->name);
            return NGX_ERROR;
        }

        seen |= 1 << i;

        ngx_str_set(&value, "");

        if (eq) {
            value.data = ngx_pnalloc(r->pool, amp - eq);
            if (value.data == NULL) {
                return NGX_ERROR;
            }

            src = eq + 1;
            dst = value.data;
            ngx_unescape_uri(&dst, &src, amp - eq - 1, 0);
            value.len = dst - value.data;
        }

        if (param->handler(f, &value, err) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_events_webhook_api_param_limit(ngx_http_events_webhook_filter_t *f,
    ngx_str_t *value, ngx_http_events_error_t *err)
{
    f->limit = ngx_atoi(value->data, value->len);

    if (f->limit < 1 || f->limit > 1000) {
        ngx_http_events_error(err, 400, "invalid_parameter", "param", NULL,
                              "limit", "\"limit\" must be 1-1000");
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* "a" and an attempt's number: the log's own cursor */

static ngx_int_t
ngx_http_events_webhook_api_param_after(ngx_http_events_webhook_filter_t *f,
    ngx_str_t *value, ngx_http_events_error_t *err)
{
    ngx_int_t  n;

    n = (value->len >= 2 && value->data[0] == 'a')
        ? ngx_atoi(value->data + 1, value->len - 1) : NGX_ERROR;

    if (n == NGX_ERROR) {
        ngx_http_events_error(err, 400, "invalid_cursor", "param", NULL,
                              "after", "\"after\" is not a cursor of this "
                              "log");
        return NGX_ERROR;
    }

    f->before = (uint64_t) n;

    return NGX_OK;
}


static ngx_int_t
ngx_http_events_webhook_api_param_status(ngx_http_events_webhook_filter_t *f,
    ngx_str_t *value, ngx_http_events_error_t *err)
{
    size_t      len;
    ngx_uint_t  i;

    for (i = 0; i < 5; i++) {
        len = ngx_strlen(ngx_http_events_webhook_results[i]);

        if (i != NGX_HTTP_EVENTS_WH_FAILED_FINAL && value->len == len
            && ngx_strncmp(value->data, ngx_http_events_webhook_results[i],
                           len) == 0)
        {
            f->result = i;
            return NGX_OK;
        }
    }

    ngx_http_events_error(err, 400, "invalid_parameter", "param", NULL,
                          "status", "\"status\" must be succeeded, failed, "
                          "expired or aborted");
    return NGX_ERROR;
}


static ngx_int_t
ngx_http_events_webhook_api_param_event(ngx_http_events_webhook_filter_t *f,
    ngx_str_t *value, ngx_http_events_error_t *err)
{
    if (ngx_http_events_id_valid(value->data, value->len) != NGX_OK) {
        ngx_http_events_error(err, 400, "invalid_parameter", "param", NULL,
                              "eventId", "\"eventId\" is not an event id");
        return NGX_ERROR;
    }

    f->event_id = *value;

    return NGX_OK;
}


static ngx_int_t
ngx_http_events_webhook_api_param_token(ngx_http_events_webhook_filter_t *f,
    ngx_str_t *value, ngx_http_events_error_t *err)
{
    /* the auth layer's: refused there unless events_auth_query_token */
    return NGX_OK;
}


/* the endpoint's attempts below "before", copied into all */

static ngx_int_t
ngx_http_events_webhook_api_log(ngx_http_request_t *r,
    ngx_http_events_webhook_route_t *rt, uint64_t before, ngx_array_t *all)
{
    size_t                       size;
    ngx_http_events_loc_conf_t  *elcf;

    elcf = ngx_http_get_module_loc_conf(r, ngx_http_events_module);

    size = ngx_align(offsetof(ngx_http_events_webhook_attempt_t, excerpt)
                     + elcf->wh->excerpt_size, 8);

    if (ngx_array_init(all, r->pool, elcf->wh->log_size + 1, size) != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_http_events_webhook_attempts(elcf->webhooks_zone->data,
                                            &rt->tenant, &rt->id, before, all)
           == NGX_HTTP_EVENTS_WEBHOOK_OK ? NGX_OK : NGX_DECLINED;
}


/* GET P/{id}/deliveries/{eventId} */

static ngx_int_t
ngx_http_events_webhook_api_delivery(ngx_http_request_t *r,
    ngx_http_events_webhook_route_t *rt)
{
    const char                         *state;
    size_t                              size;
    uint64_t                            seq;
    ngx_int_t                           rc;
    ngx_str_t                           json, type;
    ngx_uint_t                          i, n;
    ngx_array_t                         all;
    ngx_http_events_buf_t               o;
    ngx_http_events_store_t            *store;
    ngx_http_events_loc_conf_t         *elcf;
    ngx_http_events_webhook_attempt_t  *a;
    ngx_http_events_webhook_delivery_t  d;

    elcf = ngx_http_get_module_loc_conf(r, ngx_http_events_module);
    store = elcf->webhooks_zone->data;

    rc = ngx_http_events_webhook_api_event(r, rt, &json, &seq, &type);
    if (rc != NGX_OK) {
        return rc == NGX_DECLINED ? rt->rc : rc;
    }

    rc = ngx_http_events_webhook_attempt(store, &rt->tenant, &rt->id, seq, &d);

    if (rc == NGX_HTTP_EVENTS_WEBHOOK_NOT_FOUND) {
        return ngx_http_events_webhook_api_unknown(r, rt);
    }

    if (ngx_http_events_webhook_api_log(r, rt, 0, &all) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    size = all.size;

    ngx_http_events_buf_init(&o, r->pool, 1024);

    ngx_http_events_buf_printf(&o, "{\"eventId\":");
    ngx_http_events_buf_str(&o, rt->event.data, rt->event.len);
    state = (rc != NGX_HTTP_EVENTS_WEBHOOK_OK) ? "none"
            : (d.state == NGX_HTTP_EVENTS_WH_INFLIGHT) ? "in_flight"
            : "pending";

    ngx_http_events_buf_printf(&o, ",\"seq\":%uL,\"state\":\"%s\"", seq,
                               state);

    if (rc == NGX_HTTP_EVENTS_WEBHOOK_OK) {
        ngx_http_events_buf_printf(&o, ",\"attempts\":%uD,\"trigger\":\"%s\","
                                   "\"nextAttemptAt\":", d.attempts,
                                   ngx_http_events_webhook_triggers[d.trigger]);
        ngx_http_events_buf_time(&o, d.state == NGX_HTTP_EVENTS_WH_QUEUED
                                     ? d.next_ms : 0);
    }

    ngx_http_events_buf_printf(&o, ",\"log\":[");

    n = 0;

    for (i = 0; i < all.nelts; i++) {
        a = (ngx_http_events_webhook_attempt_t *)
                ((u_char *) all.elts + i * size);

        if (a->seq != seq || a->event_id_len != rt->event.len
            || ngx_strncmp(a->event_id, rt->event.data, rt->event.len) != 0)
        {
            continue;
        }

        if (n++) {
            ngx_http_events_buf_printf(&o, ",");
        }

        ngx_http_events_webhook_api_attempt_json(&o, a);
    }

    ngx_http_events_buf_printf(&o, "]}");

    return ngx_http_events_http_send_buf(r, NGX_HTTP_OK, NULL, &o);
}


/* POST P/{id}/deliveries/{eventId}/retry: once, now */

static ngx_int_t
ngx_http_events_webhook_api_retry(ngx_http_request_t *r,
    ngx_http_events_webhook_route_t *rt)
{
    uint64_t                     seq;
    ngx_int_t                    rc;
    ngx_str_t                    json, type;
    ngx_http_events_buf_t        o;
    ngx_http_events_store_t     *store;
    ngx_http_events_loc_conf_t  *elcf;

    elcf = ngx_http_get_module_loc_conf(r, ngx_http_events_module);
    store = elcf->webhooks_zone->data;

    rc = ngx_http_events_webhook_api_event(r, rt, &json, &seq, &type);
    if (rc != NGX_OK) {
        return rc == NGX_DECLINED ? rt->rc : rc;
    }

    rc = ngx_http_events_webhook_dispatch_send_now(store, &rt->tenant,
                                                   &rt->id, seq, &rt->event,
                                                   &type, &json);

    if (rc == NGX_HTTP_EVENTS_WEBHOOK_NOT_FOUND) {
        return ngx_http_events_webhook_api_unknown(r, rt);
    }

    if (rc == NGX_HTTP_EVENTS_WEBHOOK_UNVERIFIED) {
        return ngx_http_events_webhook_api_unverified(r);
    }

    if (rc != NGX_HTTP_EVENTS_WEBHOOK_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_events_buf_init(&o, r->pool, 1024);

    ngx_http_events_buf_printf(&o, "{\"eventId\":");
    ngx_http_events_buf_str(&o, rt->event.data, rt->event.len);
    ngx_http_events_buf_printf(&o, ",\"seq\":%uL,\"trigger\":\"manual\"}", seq);

    return ngx_http_events_http_send_buf(r, NGX_HTTP_ACCEPTED, NULL, &o);
}


/* POST P/{id}/test: a webhook.test event, not stored, signed as any */

static ngx_int_t
ngx_http_events_webhook_api_test(ngx_http_request_t *r,
    ngx_http_events_webhook_route_t *rt)
{
    u_char                       id[NGX_HTTP_EVENTS_ID_LEN];
    uint64_t                     ms;
    ngx_int_t                    rc;
    ngx_str_t                    event_id, type, body;
    ngx_http_events_buf_t        o, b;
    ngx_http_events_ipc_t       *ipc;
    ngx_http_events_store_t     *store;
    ngx_http_events_loc_conf_t  *elcf;

    elcf = ngx_http_get_module_loc_conf(r, ngx_http_events_module);
    store = elcf->webhooks_zone->data;
    ipc = ngx_http_events_ipc();

    ms = ngx_http_events_webhook_now();

    if (ngx_http_events_id_generate(id, ms, ipc ? &ipc->rng : NULL)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    event_id.data = id;
    event_id.len = NGX_HTTP_EVENTS_ID_LEN;
    ngx_str_set(&type, "webhook.test");

    ngx_http_events_buf_init(&b, r->pool, 1024);

    ngx_http_events_buf_printf(&b, "{\"id\":\"%*s\",\"seq\":0,\"type\":"
                               "\"webhook.test\",\"source\":"
                               "\"ngx_http_events\",\"tenantId\":",
                               event_id.len, event_id.data);
    ngx_http_events_buf_str(&b, rt->tenant.data, rt->tenant.len);
    ngx_http_events_buf_printf(&b,
                               ",\"resourceType\":\"webhook\",\"resourceId\":");
    ngx_http_events_buf_str(&b, rt->id.data, rt->id.len);
    ngx_http_events_buf_printf(&b, ",\"timestamp\":");
    ngx_http_events_buf_time(&b, ms);
    ngx_http_events_buf_printf(&b, ",\"payload\":{\"action\":\"occurred\","
                               "\"data\":{\"webhookId\":");
    ngx_http_events_buf_str(&b, rt->id.data, rt->id.len);
    ngx_http_events_buf_printf(&b, "},\"changes\":null}}");

    if (b.failed) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    body.data = b.start;
    body.len = b.pos - b.start;

    rc = ngx_http_events_webhook_dispatch_send_now(store, &rt->tenant,
                                                   &rt->id, 0, &event_id,
                                                   &type, &body);

    if (rc == NGX_HTTP_EVENTS_WEBHOOK_NOT_FOUND) {
        return ngx_http_events_webhook_api_unknown(r, rt);
    }

    if (rc == NGX_HTTP_EVENTS_WEBHOOK_UNVERIFIED) {
        return ngx_http_events_webhook_api_unverified(r);
    }

    if (rc != NGX_HTTP_EVENTS_WEBHOOK_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_events_buf_init(&o, r->pool, 1024);

    ngx_http_events_buf_printf(&o, "{\"eventId\":\"%*s\",\"type\":"
                               "\"webhook.test\",\"trigger\":\"manual\"}",
                               event_id.len, event_id.data);

    return ngx_http_events_http_send_buf(r, NGX_HTTP_ACCEPTED, NULL, &o);
}


/* POST P/{id}/rotate-secret {"secret"?, "graceSeconds"?} */

static ngx_int_t
ngx_http_events_webhook_api_rotate(ngx_http_request_t *r,
    ngx_http_events_webhook_route_t *rt, json_t *root)
{
    u_char                       secret[NGX_HTTP_EVENTS_WH_MAX_SECRET + 32];
    size_t                       len;
    json_t                      *v;
    uint64_t                     grace;
    ngx_int_t                    rc;
    ngx_str_t                    s, src, b64;
    const char                  *key;
    ngx_http_events_buf_t        o;
    ngx_http_events_store_t     *store;
    ngx_http_events_loc_conf_t  *elcf;

    elcf = ngx_http_get_module_loc_conf(r, ngx_http_events_module);
    store = elcf->webhooks_zone->data;

    len = 0;
    grace = elcf->wh->secret_grace;

    if (root) {
        json_object_foreach(root, key, v) {

            if (ngx_strcmp(key, "secret") == 0) {
                if (!json_is_string(v)) {
                    return ngx_http_events_webhook_api_fail(r, 400,
                                                            "invalid_field",
                                                            "secret",
                                                            "secret has the "
                                                            "wrong type");
                }

                s.data = (u_char *) json_string_value(v);
                s.len = json_string_length(v);

                if (ngx_http_events_webhook_secret(&s, secret,
                                                   &len) != NGX_OK) {
                    return ngx_http_events_webhook_api_fail(r, 400,
                                                            "invalid_secret",
                                                            "secret",
                                                            "a secret is "
                                                            "\"whsec_\" and "
                                                            "the base64 of 24 "
                                                            "to 64 random "
                                                            "bytes");
                }

            } else if (ngx_strcmp(key, "graceSeconds") == 0) {
                if (!json_is_integer(v) || json_integer_value(v) < 0
                    || json_integer_value(v) > 30 * 86400)
                {
                    return ngx_http_events_webhook_api_fail(r, 400,
                                                            "invalid_field",
                                                            "graceSeconds",
                                                            "graceSeconds is "
                                                            "0-2592000");
                }

                grace = (uint64_t) json_integer_value(v) * 1000;

            } else {
                return ngx_http_events_webhook_api_fail(r, 400, "unknown_field",
                                                        key,
                                                        "unknown field \"%s\"",
                                                        key);
            }
        }
    }

    if (len == 0) {
        if (RAND_bytes(secret, 32) != 1) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        len = 32;
    }

    rc = ngx_http_events_webhook_rotate(store, &rt->tenant, &rt->id, secret,
                                        len,
                                        grace);

    if (rc == NGX_HTTP_EVENTS_WEBHOOK_NOT_FOUND) {
        return ngx_http_events_webhook_api_unknown(r, rt);
    }

    if (rc == NGX_HTTP_EVENTS_WEBHOOK_STATIC) {
        return ngx_http_events_webhook_api_fail(r, 409, "static_endpoint", NULL,
                                                "this endpoint comes from "
                                                "nginx.conf: rotate with "
                                                "secret= and secret_previous= "
                                                "there");
    }

    (void) ngx_http_events_webhook_state_save(store);
    ngx_http_events_webhook_api_share(r, store, rt);

    src.data = secret;
    src.len = len;

    b64.data = ngx_pnalloc(r->pool, ngx_base64_encoded_length(len));
    if (b64.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_encode_base64(&b64, &src);

    ngx_http_events_buf_init(&o, r->pool, 1024);

    ngx_http_events_buf_printf(&o, "{\"secret\":\"whsec_%V\","
                               "\"previousExpiresAt\":", &b64);
    ngx_http_events_buf_time(&o,
                             grace ? ngx_http_events_webhook_now() + grace : 0);
    ngx_http_events_buf_printf(&o, "}");

    return ngx_http_events_http_send_buf(r, NGX_HTTP_OK, NULL, &o);
}


/*
 * POST P/{id}/replay {"after" | "since", "until"?, "mode"?}: the events
 * of the range that match the endpoint, counted now, queued by the
 * dispatcher.
 */

static ngx_int_t
ngx_http_events_webhook_api_replay(ngx_http_request_t *r,
    ngx_http_events_webhook_route_t *rt, json_t *root)
{
    u_char                           id[NGX_HTTP_EVENTS_ID_LEN];
    u_char                           from_c[NGX_HTTP_EVENTS_CURSOR_LEN];
    u_char                           to_c[NGX_HTTP_EVENTS_CURSOR_LEN];
    u_char                           extra[64];
    ngx_int_t                        rc;
    ngx_str_t                        x;
    ngx_http_events_buf_t            o;
    ngx_http_events_ipc_t           *ipc;
    ngx_http_events_error_t          err;
    ngx_http_events_window_t         w;
    ngx_http_events_store_t         *store;
    ngx_http_events_loc_conf_t      *elcf;
    ngx_http_events_cursor_key_t    *ckey;
    ngx_http_events_webhook_view_t   view;
    ngx_http_events_webhook_range_t  rg;

    elcf = ngx_http_get_module_loc_conf(r, ngx_http_events_module);
    store = elcf->webhooks_zone->data;
    ipc = ngx_http_events_ipc();

    if (ngx_http_events_webhook_api_replay_body(r, root, &rg, &err)
        != NGX_OK)
    {
        return ngx_http_events_http_send_error(r, &err, NULL);
    }

    if (ngx_http_events_webhook_get(store, &rt->tenant, &rt->id, r->pool,
                                    &view)
        != NGX_HTTP_EVENTS_WEBHOOK_OK)
    {
        return ngx_http_events_webhook_api_unknown(r, rt);
    }

    /* a replay sends what the endpoint takes: the grant must cover it */
    if (ngx_http_events_webhook_api_covered(r, view.spec.patterns,
                                            view.spec.npatterns, &err)
        != NGX_OK)
    {
        return ngx_http_events_http_send_error(r, &err, NULL);
    }

    ngx_http_events_store_window(store, &w);

    x.data = extra;
    x.len = 0;

    ckey = ngx_http_events_store_cursor_key(store);
    if (ckey == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_http_events_webhook_api_replay_range(&rg, &w, ckey, &err, &x)
        != NGX_OK)
    {
        return ngx_http_events_http_send_error(r, &err, &x);
    }

    ngx_http_events_webhook_api_replay_count(r, rt, &view, &rg);

    rc = ngx_http_events_webhook_replay(store, &rt->tenant, &rt->id, rg.mode,
                                        rg.after, rg.to, rg.count);

    switch (rc) {

    case NGX_HTTP_EVENTS_WEBHOOK_OK:
        break;

    case NGX_HTTP_EVENTS_WEBHOOK_NOT_FOUND:
        return ngx_http_events_webhook_api_unknown(r, rt);

    case NGX_HTTP_EVENTS_WEBHOOK_QUEUE_FULL:
        return ngx_http_events_webhook_api_fail(r, 409, "queue_full", NULL,
                                                "the endpoint's deliveries "
                                                "waiting leave no room for "
                                                "this replay; try again when "
                                                "they are sent");

    case NGX_HTTP_EVENTS_WEBHOOK_ZONE_FULL:
        return ngx_http_events_webhook_api_fail(r, 503, "zone_full", NULL,
                                                "no room in the zone for "
                                                "the replay's deliveries; "
                                                "some may be queued");

    case NGX_HTTP_EVENTS_WEBHOOK_BUSY:
        return ngx_http_events_webhook_api_fail(r, 409, "replay_in_progress",
                                                NULL, "a replay of this "
                                                "endpoint is still being "
                                                "queued; try again shortly");

    default:
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_http_events_id_generate(id, (uint64_t) ngx_time() * 1000,
                                    ipc ? &ipc->rng : NULL)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    (void) ngx_http_events_cursor_write(ckey, from_c, w.epoch, rg.after);
    (void) ngx_http_events_cursor_write(ckey, to_c, w.epoch, rg.to);

    ngx_http_events_buf_init(&o, r->pool, 1024);

    ngx_http_events_buf_printf(&o, "{\"replayId\":\"rp_%*s\",\"mode\":\"%s\","
                               "\"queued\":%ui,\"from\":\"%*s\","
                               "\"to\":\"%*s\",\"truncated\":%s}",
                               (size_t) 26, id + 4,
                               ngx_http_events_webhook_modes[rg.mode],
                               rg.count,
                               (size_t) NGX_HTTP_EVENTS_CURSOR_LEN, from_c,
                               (size_t) NGX_HTTP_EVENTS_CURSOR_LEN, to_c,
                               rg.truncated ? "true" : "false");

    return ngx_http_events_http_send_buf(r, NGX_HTTP_ACCEPTED, NULL, &o);
}


/* the replay's body: where it starts and ends, and which events */

static ngx_int_t
ngx_http_events_webhook_api_replay_body(ngx_http_request_t *r, json_t *root,
    ngx_http_events_webhook_range_t *rg, ngx_http_events_error_t *err)
{
    json_t                       *v;
    ngx_uint_t                    has_from;
    const char                   *key, *m;
    ngx_http_events_window_t      w;
    ngx_http_events_loc_conf_t   *elcf;

    elcf = ngx_http_get_module_loc_conf(r, ngx_http_events_module);

    ngx_memzero(rg, sizeof(ngx_http_events_webhook_range_t));
    rg->mode = 1;
    has_from = 0;

    ngx_http_events_store_window(elcf->webhooks_zone->data, &w);
    rg->to = w.head_seq;

    json_object_foreach(root, key, v) {

        if (ngx_strcmp(key, "after") == 0 || ngx_strcmp(key, "since") == 0)
        {
            if (has_from) {
                ngx_http_events_error(err, 400, "invalid_field", "field",
                                      NULL, key, "give \"after\" or "
                                      "\"since\", not both");
                return NGX_ERROR;
            }

            if (ngx_http_events_webhook_api_position(r, v, key, 0,
                                                     &rg->after, err)
                != NGX_OK)
            {
                return NGX_ERROR;
            }

            has_from = 1;

        } else if (ngx_strcmp(key, "until") == 0) {
            if (ngx_http_events_webhook_api_position(r, v, key, 1, &rg->to,
                                                     err)
                != NGX_OK)
            {
                return NGX_ERROR;
            }

        } else if (ngx_strcmp(key, "mode") == 0) {
            m = json_is_string(v) ? json_string_value(v) : "";

            for (rg->mode = 1; rg->mode < 4; rg->mode++) {
                if (ngx_strcmp(m, ngx_http_events_webhook_modes[rg->mode])
                    == 0)
                {
                    break;
                }
            }

            if (rg->mode == 4) {
                ngx_http_events_error(err, 400, "invalid_field", "field",
                                      NULL, "mode", "mode is \"all\", "
                                      "\"failed\" or \"missing\"");
                return NGX_ERROR;
            }

        } else {
            ngx_http_events_error(err, 400, "unknown_field", "field", NULL,
                                  key, "unknown field \"%s\"", key);
            return NGX_ERROR;
        }
    }

    if (!has_from) {
        ngx_http_events_error(err, 400, "missing_field", "field", NULL,
                              "after", "say where the replay starts: "
                              "\"after\" (a cursor or seq) or \"since\" "
                              "(a time)");
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * A range the ring holds, or the error that says why not (and in x, 64
 * bytes, the cursor of the ring's end it went past).
 */

static ngx_int_t
ngx_http_events_webhook_api_replay_range(ngx_http_events_webhook_range_t *rg,
    ngx_http_events_window_t *w, ngx_http_events_cursor_key_t *ckey,
    ngx_http_events_error_t *err, ngx_str_t *x)
{
    u_char  c[NGX_HTTP_EVENTS_CURSOR_LEN];

    if (rg->after < w->evicted_seq || rg->after > w->head_seq) {
        x->len = ngx_sprintf(x->data, ",\"%s\":\"%*s\"",
                            rg->after < w->evicted_seq ? "oldest" : "newest",
                            (size_t) NGX_HTTP_EVENTS_CURSOR_LEN,
                            ngx_http_events_cursor_write(ckey, c, w->epoch,
                                          rg->after < w->evicted_seq
                                          ? w->evicted_seq : w->head_seq)
                            - NGX_HTTP_EVENTS_CURSOR_LEN)
                 - x->data;

        ngx_http_events_error(err, 409, "replay_out_of_range", "field",
                              NULL, "after",
                              rg->after < w->evicted_seq
                              ? "the range starts before the oldest event "
                                "the ring still holds"
                              : "the range starts after the newest event "
                                "the ring holds");
        return NGX_ERROR;
    }

    if (rg->to < rg->after) {
        ngx_http_events_error(err, 400, "invalid_field", "field", NULL,
                              "until", "until is before the start of the "
                              "range");
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* what the replay will take, counted in the ring up to the cap */

static void
ngx_http_events_webhook_api_replay_count(ngx_http_request_t *r,
    ngx_http_events_webhook_route_t *rt,
    ngx_http_events_webhook_view_t *view,
    ngx_http_events_webhook_range_t *rg)
{
    uint64_t                     last, final;
    ngx_int_t                    rc;
    ngx_http_events_ipc_t       *ipc;
    ngx_http_events_item_t       item;
    ngx_http_events_query_t      q;
    ngx_http_events_store_t     *store;
    ngx_http_events_loc_conf_t  *elcf;

    elcf = ngx_http_get_module_loc_conf(r, ngx_http_events_module);
    store = elcf->webhooks_zone->data;
    ipc = ngx_http_events_ipc();

    ngx_memzero(&q, sizeof(ngx_http_events_query_t));
    q.tenant = rt->tenant;
    q.types = view->spec.patterns;
    q.ntypes = view->spec.npatterns;
    q.since_ms = -1;
    q.until_ms = -1;

    if (ngx_http_events_webhook_meta_filters(&view->spec, r->pool, &q)
        != NGX_OK)
    {
        return;
    }

    last = rg->after;
    final = rg->after;

    while (last < rg->to) {
        rc = ngx_http_events_store_next(store, &q, last, 4096, &ipc->scratch,
                                        &item, &last);

        if (rc == NGX_AGAIN) {
            continue;
        }

        if (rc != NGX_OK || item.seq > rg->to) {
            break;
        }

        if (rg->mode != 1
            && !ngx_http_events_webhook_was_failed(store, &rt->tenant,
                                                   &rt->id, item.seq,
                                                   rg->mode))
        {
            continue;
        }

        if (rg->count == NGX_HTTP_EVENTS_WH_MAX_REPLAY) {
            rg->truncated = 1;
            rg->to = final;
            break;
        }

        rg->count++;
        final = item.seq;
    }
}


/* a position: a cursor, a seq, or (since/until) an ISO-8601 time */

static ngx_int_t
ngx_http_events_webhook_api_position(ngx_http_request_t *r, json_t *v,
    const char *name, ngx_uint_t until, uint64_t *seq,
    ngx_http_events_error_t *err)
{
    int64_t                      ms;
    uint64_t                     epoch, s;
    ngx_http_events_query_t      q;
    ngx_http_events_result_t     res;
    ngx_http_events_item_t      *item;
    ngx_http_events_loc_conf_t  *elcf;
    ngx_http_events_window_t     w;
    ngx_str_t                    tenant;

    elcf = ngx_http_get_module_loc_conf(r, ngx_http_events_module);

    if (json_is_integer(v) && json_integer_value(v) >= 0) {
        *seq = (uint64_t) json_integer_value(v);
        return NGX_OK;
    }

    if (!json_is_string(v)) {
        goto invalid;
    }

    if (ngx_strcmp(name, "after") == 0) {
        if (ngx_http_events_cursor_parse(
                ngx_http_events_store_cursor_key(elcf->webhooks_zone->data),
                (u_char *) json_string_value(v), json_string_length(v),
                &epoch, &s)
            != NGX_OK)
        {
            goto invalid;
        }

        ngx_http_events_store_window(elcf->webhooks_zone->data, &w);

        if (epoch != w.epoch) {
            ngx_http_events_error(err, 409, "epoch_changed", "field", NULL,
                                  name, "the cursor is from another "
                                  "incarnation of the store");
            return NGX_ERROR;
        }

        *seq = s;
        return NGX_OK;
    }

    if (ngx_http_events_time_parse((u_char *) json_string_value(v),
                                   json_string_length(v), &ms)
        != NGX_OK)
    {
        goto invalid;
    }

    /* the first event at or after since, the last at or before until */

    if (ngx_http_events_get_tenant(r, &tenant) != NGX_OK) {
        goto invalid;
    }

    ngx_memzero(&q, sizeof(ngx_http_events_query_t));
    q.tenant = tenant;
    q.limit = 1;
    q.scan_limit = 10000000;
    q.since_ms = until ? -1 : ms;
    q.until_ms = until ? ms : -1;
    q.desc = until;

    ngx_memzero(&res, sizeof(ngx_http_events_result_t));

    if (ngx_array_init(&res.items, r->pool, 1,
                       sizeof(ngx_http_events_item_t))
        != NGX_OK
        || ngx_http_events_store_query(elcf->webhooks_zone->data, &q,
                                       r->pool, &res)
           != NGX_OK)
    {
        goto invalid;
    }

    if (res.items.nelts == 0) {
        *seq = until ? 0 : res.window.head_seq;
        return NGX_OK;
    }

    item = res.items.elts;
    *seq = until ? item->seq : item->seq - 1;

    return NGX_OK;

invalid:

    ngx_http_events_error(err, 400, "invalid_field", "field", NULL, name,
                          "%s is a cursor, a seq, or an ISO-8601 time "
                          "(since, until)", name);
    return NGX_ERROR;
}


/*
 * An event of the tenant by id, for an endpoint: its JSON, seq and type.
 * An event the endpoint's patterns or the caller's subscribe grant do
 * not cover is answered as one that does not exist, so that the routes
 * tell nothing of the events a token may not see.
 */

static ngx_int_t
ngx_http_events_webhook_api_event(ngx_http_request_t *r,
    ngx_http_events_webhook_route_t *rt, ngx_str_t *json, uint64_t *seq,
    ngx_str_t *type)
{
    json_t                          *root, *v;
    ngx_int_t                        rc;
    ngx_http_events_query_t          q;
    ngx_http_events_store_t         *store;
    ngx_http_events_webhook_view_t   view;
    ngx_http_events_loc_conf_t      *elcf;

    elcf = ngx_http_get_module_loc_conf(r, ngx_http_events_module);
    store = elcf->webhooks_zone->data;

    rc = ngx_http_events_webhook_get(store, &rt->tenant, &rt->id, r->pool,
                                     &view);

    if (rc == NGX_HTTP_EVENTS_WEBHOOK_NOT_FOUND) {
        rt->rc = ngx_http_events_webhook_api_unknown(r, rt);
        return NGX_DECLINED;
    }

    if (rc != NGX_HTTP_EVENTS_WEBHOOK_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_http_events_id_valid(rt->event.data, rt->event.len) != NGX_OK) {
        goto not_found;
    }

    rc = ngx_http_events_store_get(store, &rt->tenant, &rt->event, r->pool,
                                   json);

    if (rc == NGX_DECLINED) {
        goto not_found;
    }

    if (rc != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    root = json_loadb((char *) json->data, json->len, 0, NULL);
    if (root == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    v = json_object_get(root, "seq");
    *seq = json_is_integer(v) ? (uint64_t) json_integer_value(v) : 0;

    v = json_object_get(root, "type");
    type->len = json_is_string(v) ? json_string_length(v) : 0;
    type->data = ngx_pnalloc(r->pool, type->len + 1);

    if (type->data == NULL) {
        json_decref(root);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_memcpy(type->data, json_string_value(v), type->len);

    json_decref(root);

    if (!ngx_http_events_match_any(view.spec.patterns, view.spec.npatterns,
                                   type)
        || !ngx_http_events_webhook_api_granted(r, type))
    {
        goto not_found;
    }

    if (view.spec.nmeta) {
        ngx_memzero(&q, sizeof(ngx_http_events_query_t));

        if (ngx_http_events_webhook_meta_filters(&view.spec, r->pool, &q)
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        if (!ngx_http_events_match_metadata(q.meta, q.nmeta, json->data,
                                            json->len))
        {
            goto not_found;
        }
    }

    return NGX_OK;

not_found:

    rt->rc = ngx_http_events_webhook_api_fail(r, 404, "not_found", NULL,
                                              "no event \"%V\" in the ring",
                                              &rt->event);
    return NGX_DECLINED;
}


/* whether the caller's subscribe grant covers an event type */

static ngx_uint_t
ngx_http_events_webhook_api_granted(ngx_http_request_t *r, ngx_str_t *type)
{
    ngx_http_events_claims_t  *claims;

    claims = ngx_http_events_auth_claims(r);

    if (claims == NULL || claims->admin) {
        return 1;
    }

    return ngx_http_events_jwt_granted(claims->subscribe, claims->nsubscribe,
                                       type);
}


/* answers */

static void
ngx_http_events_webhook_api_view_json(ngx_http_events_buf_t *o,
    ngx_http_events_webhook_view_t *v)
{
    u_char      hint[ngx_base64_encoded_length(NGX_HTTP_EVENTS_WH_MAX_SECRET)];
    ngx_str_t   src, b64;
    ngx_uint_t  i;

    ngx_http_events_buf_printf(o, "{\"id\":");
    ngx_http_events_buf_str(o, v->spec.id.data, v->spec.id.len);

    if (v->spec.is_handler) {
        ngx_http_events_buf_printf(o, ",\"url\":null,\"location\":");

    } else {
        ngx_http_events_buf_printf(o, ",\"url\":");
    }

    ngx_http_events_buf_str(o, v->spec.url.data, v->spec.url.len);
    ngx_http_events_buf_printf(o, ",\"events\":[");

    for (i = 0; i < v->spec.npatterns; i++) {
        ngx_http_events_buf_printf(o, i ? "," : "");
        ngx_http_events_buf_str(o, v->spec.patterns[i].data,
                                v->spec.patterns[i].len);
    }

    ngx_http_events_buf_printf(o, "],\"metadata\":{");

    for (i = 0; i < v->spec.nmeta; i++) {
        ngx_http_events_buf_printf(o, i ? "," : "");
        ngx_http_events_buf_str(o, v->spec.mkeys[i].data,
                                v->spec.mkeys[i].len);
        ngx_http_events_buf_printf(o, ":");
        ngx_http_events_buf_str(o, v->spec.mvalues[i].data,
                                v->spec.mvalues[i].len);
    }

    ngx_http_events_buf_printf(o, "},\"description\":");
    ngx_http_events_buf_str(o, v->spec.description.data,
                            v->spec.description.len);

    ngx_http_events_buf_printf(o, ",\"status\":\"%s\",\"disabledReason\":",
                               v->disabled ? "disabled" : "enabled");

    if (v->disabled) {
        ngx_http_events_buf_printf(o, "\"%s\"",
                             ngx_http_events_webhook_disabled[v->disabled]);

    } else {
        ngx_http_events_buf_printf(o, "null");
    }

    ngx_http_events_buf_printf(o, ",\"disabledAt\":");
    ngx_http_events_buf_time(o, v->disabled_ms);
    ngx_http_events_buf_printf(o, ",\"failingSince\":");
    ngx_http_events_buf_time(o, v->failing_since_ms);
    ngx_http_events_buf_printf(o, ",\"pausedUntil\":");
    ngx_http_events_buf_time(o, v->paused_until_ms);

    if (v->spec.rate_limit) {
        ngx_http_events_buf_printf(o, ",\"rateLimit\":%ui", v->spec.rate_limit);

    } else {
        ngx_http_events_buf_printf(o, ",\"rateLimit\":null");
    }

    /* header values may be credentials: only their names are shown */
    ngx_http_events_buf_printf(o, ",\"headers\":{");

    for (i = 0; i < v->spec.nheaders; i++) {
        ngx_http_events_buf_printf(o, i ? "," : "");
        ngx_http_events_buf_str(o, v->spec.hnames[i].data,
                                v->spec.hnames[i].len);
        ngx_http_events_buf_printf(o, ":\"(set)\"");
    }

    src.data = v->spec.secret;
    src.len = v->spec.secret_len;
    b64.data = hint;
    ngx_encode_base64(&b64, &src);

    ngx_http_events_buf_printf(o, "},\"format\":\"%s\",\"ordered\":%s,"
                               "\"maxInFlight\":",
                               ngx_http_events_webhook_formats[
                                   v->spec.format],
                               v->spec.ordered ? "true" : "false");

    if (v->spec.max_inflight) {
        ngx_http_events_buf_printf(o, "%ui", v->spec.max_inflight);

    } else {
        ngx_http_events_buf_printf(o, "null");
    }

    ngx_http_events_webhook_api_verify_json(o, v);

    ngx_http_events_buf_printf(o, ",\"static\":%s,\"handler\":%s,"
                               "\"secretHint\":",
                               v->spec.is_static ? "true" : "false",
                               v->spec.is_handler ? "true" : "false");

    if (b64.len >= 4) {
        ngx_http_events_buf_printf(o, "\"whsec_\xe2\x80\xa6%*s\"", (size_t) 4,
                                   b64.data + b64.len - 4);

    } else {
        ngx_http_events_buf_printf(o, "null");
    }

    ngx_http_events_buf_printf(o, ",\"previousSecretExpiresAt\":");
    ngx_http_events_buf_time(o, v->spec.is_static ? 0 : v->previous_expires_ms);

    ngx_http_events_buf_printf(o, ",\"createdAt\":");
    ngx_http_events_buf_time(o, v->created_ms);
    ngx_http_events_buf_printf(o, ",\"updatedAt\":");
    ngx_http_events_buf_time(o, v->updated_ms);

    ngx_http_events_buf_printf(o, ",\"stats\":{\"ok\":%uL,\"failed\":%uL,"
                               "\"expired\":%uL,\"pending\":%uL,\"inFlight\":"
                               "%uL,\"lastSuccessAt\":", v->ok, v->failed,
                               v->expired, v->pending, v->inflight);
    ngx_http_events_buf_time(o, v->last_success_ms);
    ngx_http_events_buf_printf(o, ",\"lastFailureAt\":");
    ngx_http_events_buf_time(o, v->last_failure_ms);

    if (v->last_error) {
        ngx_http_events_buf_printf(o, ",\"lastError\":\"%s\"",
                             ngx_http_events_webhook_errors[v->last_error]);

    } else {
        ngx_http_events_buf_printf(o, ",\"lastError\":null");
    }

    ngx_http_events_buf_printf(o, ",\"oldestPendingAgeMs\":%uL}}",
                               v->oldest_pending_ms);
}


/*
 * "verify", and where its handshake is: "verification" is null for an
 * endpoint without one
 */

static void
ngx_http_events_webhook_api_verify_json(ngx_http_events_buf_t *o,
    ngx_http_events_webhook_view_t *v)
{
    if (v->spec.verify == NGX_HTTP_EVENTS_WH_VERIFY_NONE) {
        ngx_http_events_buf_printf(o, ",\"verify\":null,"
                                   "\"verification\":null");
        return;
    }

    ngx_http_events_buf_printf(o, ",\"verify\":\"cloudevents\","
                               "\"verification\":{\"state\":\"%s\","
                               "\"attempts\":%ui,\"at\":",
                               ngx_http_events_webhook_verify_states[
                                   v->verify_state],
                               v->verify_attempts);
    ngx_http_events_buf_time(o, v->verify_at_ms);

    ngx_http_events_buf_printf(o, ",\"nextAttemptAt\":");
    ngx_http_events_buf_time(o, v->verify_state
                                == NGX_HTTP_EVENTS_WH_VERIFY_PENDING
                                && !v->disabled ? v->verify_next_ms : 0);

    if (v->verify_error) {
        ngx_http_events_buf_printf(o, ",\"error\":\"%s\",\"detail\":",
                             ngx_http_events_webhook_errors[v->verify_error]);
        ngx_http_events_buf_str(o, v->verify_detail, v->verify_detail_len);

    } else {
        ngx_http_events_buf_printf(o, ",\"error\":null,\"detail\":null");
    }

    ngx_http_events_buf_printf(o, v->verify_status ? ",\"httpStatus\":%ui"
                                                   : ",\"httpStatus\":null",
                               v->verify_status);

    ngx_http_events_buf_printf(o, v->allowed_rate ? ",\"allowedRate\":%ui}"
                                                  : ",\"allowedRate\":null}",
                               v->allowed_rate);
}


static void
ngx_http_events_webhook_api_attempt_json(ngx_http_events_buf_t *o,
    ngx_http_events_webhook_attempt_t *a)
{
    ngx_http_events_buf_printf(o, "{\"id\":\"att_%*s\",\"eventId\":",
                               (size_t) 26, a->aid);
    ngx_http_events_buf_str(o, a->event_id, a->event_id_len);
    ngx_http_events_buf_printf(o, ",\"seq\":%uL,\"type\":", a->seq);
    ngx_http_events_buf_str(o, a->type, a->type_len);
    ngx_http_events_buf_printf(o, ",\"attempt\":%ud,\"trigger\":\"%s\","
                               "\"startedAt\":", (unsigned) a->attempt,
                               ngx_http_events_webhook_triggers[a->trigger]);
    ngx_http_events_buf_time(o, a->started_ms);
    ngx_http_events_buf_printf(o, ",\"durationMs\":%uD,\"result\":\"%s\"",
                               a->duration_ms,
                               ngx_http_events_webhook_results[a->result]);

    if (a->http_status) {
        ngx_http_events_buf_printf(o, ",\"httpStatus\":%ud",
                                   (unsigned) a->http_status);

    } else {
        ngx_http_events_buf_printf(o, ",\"httpStatus\":null");
    }

    if (a->error) {
        ngx_http_events_buf_printf(o, ",\"error\":\"%s\",\"errorDetail\":",
                                   ngx_http_events_webhook_errors[a->error]);
        ngx_http_events_buf_str(o, a->detail, a->detail_len);

    } else {
        ngx_http_events_buf_printf(o, ",\"error\":null,\"errorDetail\":null");
    }

    ngx_http_events_buf_printf(o, ",\"retryAfter\":");
    ngx_http_events_buf_time(o, a->retry_after_ms);
    ngx_http_events_buf_printf(o, ",\"responseExcerpt\":");
    ngx_http_events_buf_str(o, a->excerpt, a->excerpt_len);
    ngx_http_events_buf_printf(o, ",\"responseContentType\":");

    if (a->ctype_len) {
        ngx_http_events_buf_str(o, a->ctype, a->ctype_len);

    } else {
        ngx_http_events_buf_printf(o, "null");
    }

    ngx_http_events_buf_printf(o, ",\"nextAttemptAt\":");
    ngx_http_events_buf_time(o, a->next_ms);
    ngx_http_events_buf_printf(o, "}");
}


static ngx_int_t
ngx_http_events_webhook_api_unknown(ngx_http_request_t *r,
    ngx_http_events_webhook_route_t *rt)
{
    return ngx_http_events_webhook_api_fail(r, 404, "not_found", NULL,
                                            "no webhook endpoint \"%V\"",
                                            &rt->id);
}


/*
 * A cluster's: a change made here goes to every node.  Redis out of
 * reach, the change stands here and other nodes do not learn it: said
 * in the log (a create is refused instead, see api_create()).
 */

static void
ngx_http_events_webhook_api_share(ngx_http_request_t *r,
    ngx_http_events_store_t *store, ngx_http_events_webhook_route_t *rt)
{
    if (ngx_http_events_webhook_share_publish(store, &rt->tenant, &rt->id,
                                              r->pool)
        != NGX_OK)
    {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "events webhook \"%V\": the change could not be "
                      "shared with the cluster's other nodes", &rt->id);
    }
}


static ngx_int_t
ngx_http_events_webhook_api_fail(ngx_http_request_t *r, ngx_uint_t status,
    const char *code, const char *field, const char *fmt, ...)
{
    u_char                   *p;
    va_list                   args;
    ngx_http_events_error_t   err;

    ngx_http_events_error(&err, status, code, field ? "field" : NULL, NULL,
                          field, "");

    va_start(args, fmt);
    p = ngx_vslprintf(err.message, err.message + sizeof(err.message), fmt,
                      args);
    va_end(args);

    err.message_len = p - err.message;

    ngx_http_events_error_name(&err);

    return ngx_http_events_http_send_error(r, &err, NULL);
}
