
/*
 * Copyright (C) ngx_http_events_module authors
 */


/*
 * Events from proxied traffic, in front of a backend:
 *
 *   events_capture header   X-Event-Emit headers of a 2xx answer
 *   events_capture auto     POST/PUT/PATCH/DELETE answered 2xx on an
 *                           events_resource, with the JSON answer as data
 *
 * Both run as filters on the main request: the answer goes to the client
 * as it comes (less X-Event-Emit), and what is captured goes through the
 * same envelope validation and store append as POST /events.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_events_module.h"
#include "ngx_http_events_capture.h"
#include "ngx_http_events_validate.h"
#include "ngx_http_events_store.h"
#include "ngx_http_events_json.h"
#include "ngx_http_events_match.h"
#include "ngx_http_events_ipc.h"
#include "ngx_http_events_auth.h"


/* events_resource /api/tickets/{id} ticket; */
typedef struct {
    ngx_str_t                   prefix;         /* before {id} */
    ngx_str_t                   suffix;         /* after {id} */
    ngx_str_t                   type;
    ngx_str_t                   rtype;          /* the type's last segment */
    ngx_uint_t                  has_id;
} ngx_http_events_resource_t;


/* events_capture_metadata actorId $remote_user; */
typedef struct {
    ngx_str_t                   name;
    ngx_http_complex_value_t    value;
} ngx_http_events_capture_meta_t;


/* an automatic capture on its way: the answer's body, as it passes */
struct ngx_http_events_capture_ctx_s {
    ngx_http_events_resource_t *resource;
    const char                 *action;
    ngx_str_t                   rid;
    u_char                     *body;
    size_t                      len;
    size_t                      size;
    unsigned                    json:1;         /* worth keeping */
    unsigned                    done:1;
};


static ngx_int_t ngx_http_events_capture_header_filter(ngx_http_request_t *r);
static ngx_int_t ngx_http_events_capture_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in);
static void ngx_http_events_capture_headers(ngx_http_request_t *r,
    ngx_uint_t ok);
static void ngx_http_events_capture_emit_header(ngx_http_request_t *r,
    ngx_str_t *value);
static ngx_int_t ngx_http_events_capture_start(ngx_http_request_t *r);
static ngx_http_events_resource_t *ngx_http_events_capture_match(
    ngx_http_request_t *r, ngx_str_t *rid);
static ngx_uint_t ngx_http_events_capture_is_json(ngx_http_request_t *r);
static void ngx_http_events_capture_location(ngx_http_request_t *r,
    ngx_str_t *rid);
static void ngx_http_events_capture_copy(ngx_http_request_t *r,
    ngx_http_events_capture_ctx_t *ctx, ngx_buf_t *b);
static void ngx_http_events_capture_emit_auto(ngx_http_request_t *r,
    ngx_http_events_capture_ctx_t *ctx);
static void ngx_http_events_capture_body_id(ngx_http_request_t *r,
    ngx_http_events_capture_ctx_t *ctx, json_t *id);
static ngx_int_t ngx_http_events_capture_metadata_json(ngx_http_request_t *r,
    json_t **out);
static json_t *ngx_http_events_capture_envelope(ngx_http_request_t *r,
    ngx_http_events_capture_ctx_t *ctx, json_t *data);
static ngx_int_t ngx_http_events_capture_hook(ngx_http_request_t *r,
    json_t *obj, ngx_http_events_event_t *ev, const char *what);
static ngx_int_t ngx_http_events_capture_event(ngx_http_request_t *r,
    json_t *obj, const char *what);
static void ngx_http_events_capture_validated(ngx_http_request_t *r,
    ngx_http_events_validation_t *v);
static ngx_int_t ngx_http_events_capture_append(ngx_http_request_t *r,
    ngx_http_events_event_t *ev, const char *what);
static void ngx_http_events_capture_refused(ngx_http_request_t *r,
    const char *what, ngx_http_events_error_t *err);


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;
static ngx_http_output_body_filter_pt    ngx_http_next_body_filter;


static ngx_str_t  ngx_http_events_emit_header = ngx_string("X-Event-Emit");
static ngx_str_t  ngx_http_events_tenant_var = ngx_string("events_tenant");


ngx_int_t
ngx_http_events_capture_init(ngx_conf_t *cf)
{
    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_http_events_capture_header_filter;

    ngx_http_next_body_filter = ngx_http_top_body_filter;
    ngx_http_top_body_filter = ngx_http_events_capture_body_filter;

    return NGX_OK;
}


static ngx_int_t
ngx_http_events_capture_header_filter(ngx_http_request_t *r)
{
    ngx_uint_t                   ok;
    ngx_http_events_loc_conf_t  *elcf;

    elcf = ngx_http_get_module_loc_conf(r, ngx_http_events_module);

    if (elcf->capture->modes == 0 || r != r->main) {
        return ngx_http_next_header_filter(r);
    }

    /* an answer from proxy_cache was captured when the backend gave it */

    ok = r->headers_out.status >= NGX_HTTP_OK
         && r->headers_out.status < NGX_HTTP_SPECIAL_RESPONSE
         && !r->cached;

    if (elcf->capture->modes & NGX_HTTP_EVENTS_CAPTURE_HEADER) {
        ngx_http_events_capture_headers(r, ok);
    }

    if ((elcf->capture->modes & NGX_HTTP_EVENTS_CAPTURE_AUTO)
        && ok && ngx_http_events_capture_start(r) != NGX_OK)
    {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "events: automatic capture could not start");
    }

    return ngx_http_next_header_filter(r);
}


static ngx_int_t
ngx_http_events_capture_body_filter(ngx_http_request_t *r, ngx_chain_t *in)
{
    ngx_uint_t                      last;
    ngx_chain_t                    *cl;
    ngx_http_events_ctx_t          *ectx;
    ngx_http_events_capture_ctx_t  *ctx;

    if (r != r->main) {
        return ngx_http_next_body_filter(r, in);
    }

    ectx = ngx_http_get_module_ctx(r, ngx_http_events_module);
    ctx = ectx ? ectx->capture : NULL;

    if (ctx == NULL || ctx->done) {
        return ngx_http_next_body_filter(r, in);
    }

    /* copy before passing on: the next filters consume the buffers */

    last = 0;

    for (cl = in; cl; cl = cl->next) {
        if (ctx->json) {
            ngx_http_events_capture_copy(r, ctx, cl->buf);
        }

        if (cl->buf->last_buf) {
            last = 1;
        }
    }

    /*
     * stored before the last bytes go: a client that has the whole
     * answer finds the event (unless a hook is still deciding)
     */

    if (last) {
        ngx_http_events_capture_emit_auto(r, ctx);
    }

    return ngx_http_next_body_filter(r, in);
}


/* header capture */

static void
ngx_http_events_capture_headers(ngx_http_request_t *r, ngx_uint_t ok)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    part = &r->headers_out.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].hash == 0
            || h[i].key.len != ngx_http_events_emit_header.len
            || ngx_strncasecmp(h[i].key.data,
                               ngx_http_events_emit_header.data,
                               ngx_http_events_emit_header.len)
               != 0)
        {
            continue;
        }

        /* never to the client, whatever the status */
        h[i].hash = 0;

        if (ok) {
            ngx_http_events_capture_emit_header(r, &h[i].value);
        }
    }
}


static void
ngx_http_events_capture_emit_header(ngx_http_request_t *r, ngx_str_t *value)
{
    json_t                   *obj;
    ngx_str_t                 raw;
    json_error_t              jerr;
    ngx_http_events_error_t   err;

    raw = *value;

    if (raw.len == 0 || (raw.data[0] != '{' && raw.data[0] != '[')) {
        /* base64url, padded or not */
        raw.data = ngx_pnalloc(r->pool, ngx_base64_decoded_length(value->len));
        if (raw.data == NULL) {
            return;
        }

        if (ngx_decode_base64url(&raw, value) != NGX_OK) {
            ngx_http_events_error(&err, 400, "invalid_json", NULL, NULL, NULL,
                                  "neither JSON nor base64url");
            ngx_http_events_capture_refused(r, "X-Event-Emit", &err);
            return;
        }
    }

    obj = json_loadb((char *) raw.data, raw.len, JSON_REJECT_DUPLICATES,
                     &jerr);

    if (obj == NULL) {
        ngx_http_events_error(&err, 400, "invalid_json", NULL, NULL, NULL,
                              "malformed JSON at line %d, column %d: %s",
                              jerr.line, jerr.column, jerr.text);
        ngx_http_events_capture_refused(r, "X-Event-Emit", &err);
        return;
    }

    (void) ngx_http_events_capture_event(r, obj, "X-Event-Emit");

    json_decref(obj);
}


/* automatic capture */

static ngx_int_t
ngx_http_events_capture_start(ngx_http_request_t *r)
{
    ngx_str_t                       rid;
    const char                     *action;
    ngx_http_events_ctx_t          *ectx;
    ngx_http_events_resource_t     *res;
    ngx_http_events_loc_conf_t     *elcf;
    ngx_http_events_capture_ctx_t  *ctx;

    switch (r->method) {

    case NGX_HTTP_POST:
        action = "created";
        break;

    case NGX_HTTP_PUT:
    case NGX_HTTP_PATCH:
        action = "updated";
        break;

    case NGX_HTTP_DELETE:
        action = "deleted";
        break;

    default:
        return NGX_OK;
    }

    res = ngx_http_events_capture_match(r, &rid);
    if (res == NULL) {
        return NGX_OK;
    }

    elcf = ngx_http_get_module_loc_conf(r, ngx_http_events_module);

    ectx = ngx_http_events_ctx(r);
    if (ectx == NULL) {
        return NGX_ERROR;
    }

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_events_capture_ctx_t));
    if (ctx == NULL) {
        return NGX_ERROR;
    }

    ctx->resource = res;
    ctx->action = action;
    ctx->rid = rid;

    if (rid.len == 0) {
        ngx_http_events_capture_location(r, &ctx->rid);
    }

    if (r->header_only || r->headers_out.status == NGX_HTTP_NO_CONTENT
        || r->headers_out.content_length_n == 0)
    {
        /* no body will follow, and no last_buf may come to tell */
        ngx_http_events_capture_emit_auto(r, ctx);
        return NGX_OK;
    }

    ctx->json = ngx_http_events_capture_is_json(r)
                && r->headers_out.content_length_n
                   <= (off_t) elcf->capture->max_body;

    ctx->size = r->headers_out.content_length_n > 0
                ? (size_t) r->headers_out.content_length_n
                : elcf->capture->max_body;

    ectx->capture = ctx;

    return NGX_OK;
}


/*
 * The event a write is about to make, for events_capture_pre's hook:
 * TYPE.create, .update or .delete (not yet the past tense: nothing has
 * happened), the resource, data as given, the metadata.  *none when the
 * request is not a write on an events_resource; NULL also on error.
 */

json_t *
ngx_http_events_capture_intent(ngx_http_request_t *r, json_t *data,
    ngx_uint_t *none)
{
    ngx_http_events_capture_ctx_t  ctx;

    *none = 0;

    ngx_memzero(&ctx, sizeof(ngx_http_events_capture_ctx_t));

    switch (r->method) {

    case NGX_HTTP_POST:
        ctx.action = "create";
        break;

    case NGX_HTTP_PUT:
    case NGX_HTTP_PATCH:
        ctx.action = "update";
        break;

    case NGX_HTTP_DELETE:
        ctx.action = "delete";
        break;

    default:
        *none = 1;
        return NULL;
    }

    ctx.resource = ngx_http_events_capture_match(r, &ctx.rid);

    if (ctx.resource == NULL) {
        *none = 1;
        return NULL;
    }

    return ngx_http_events_capture_envelope(r, &ctx, data);
}


/*
 * "/api/tickets/{id}" matches /api/tickets/42 (id 42), and, for a
 * collection POST, /api/tickets and /api/tickets/ (no id yet)
 */

static ngx_http_events_resource_t *
ngx_http_events_capture_match(ngx_http_request_t *r, ngx_str_t *rid)
{
    u_char                      *p, *end;
    size_t                       len;
    ngx_uint_t                   i;
    ngx_http_events_resource_t  *res;
    ngx_http_events_loc_conf_t  *elcf;

    elcf = ngx_http_get_module_loc_conf(r, ngx_http_events_module);

    ngx_str_null(rid);

    if (elcf->capture->resources == NULL) {
        return NULL;
    }

    res = elcf->capture->resources->elts;

    for (i = 0; i < elcf->capture->resources->nelts; i++) {

        if (!res[i].has_id) {
            if (r->uri.len == res[i].prefix.len
                && ngx_strncmp(r->uri.data, res[i].prefix.data,
                               r->uri.len) == 0)
            {
                return &res[i];
            }

            continue;
        }

        /* the collection: the prefix, with or without its last slash */

        len = res[i].prefix.len;

        if (res[i].suffix.len == 0
            && (r->uri.len == len || r->uri.len + 1 == len)
            && ngx_strncmp(r->uri.data, res[i].prefix.data, r->uri.len)
               == 0)
        {
            return &res[i];
        }

        if (r->uri.len <= len + res[i].suffix.len
            || ngx_strncmp(r->uri.data, res[i].prefix.data, len) != 0)
        {
            continue;
        }

        end = r->uri.data + r->uri.len - res[i].suffix.len;

        if (ngx_strncmp(end, res[i].suffix.data, res[i].suffix.len) != 0) {
            continue;
        }

        p = r->uri.data + len;

        if (ngx_strlchr(p, end, '/') != NULL) {
            continue;
        }

        rid->data = p;
        rid->len = end - p;

        return &res[i];
    }

    return NULL;
}


static ngx_uint_t
ngx_http_events_capture_is_json(ngx_http_request_t *r)
{
    u_char     *p, *end, *semi;
    ngx_str_t  *enc;

    if (r->headers_out.content_encoding
        && r->headers_out.content_encoding->hash)
    {
        /* gzip from the backend: not ours to unpack */
        enc = &r->headers_out.content_encoding->value;

        if (enc->len != 8 || ngx_strncasecmp(enc->data,
                                             (u_char *) "identity", 8) != 0)
        {
            return 0;
        }
    }

    p = r->headers_out.content_type.data;
    end = p + r->headers_out.content_type.len;

    if (p == NULL) {
        return 0;
    }

    semi = ngx_strlchr(p, end, ';');
    if (semi) {
        end = semi;
    }

    while (end > p && end[-1] == ' ') {
        end--;
    }

    if (end - p == 16
        && ngx_strncasecmp(p, (u_char *) "application/json", 16) == 0)
    {
        return 1;
    }

    return end - p > 17
           && ngx_strncasecmp(p, (u_char *) "application/", 12) == 0
           && ngx_strncasecmp(end - 5, (u_char *) "+json", 5) == 0;
}


/*
 * Location: /api/tickets/42 (or an absolute URL, or with a query).  The
 * proxy sets headers_out.location only when proxy_redirect rewrote it,
 * so look in the list.
 */

static void
ngx_http_events_capture_location(ngx_http_request_t *r, ngx_str_t *rid)
{
    u_char           *p, *end, *q;
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h, *location;

    location = r->headers_out.location;

    part = &r->headers_out.headers.part;
    h = part->elts;

    for (i = 0; location == NULL; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].hash && h[i].key.len == 8
            && ngx_strncasecmp(h[i].key.data, (u_char *) "Location", 8) == 0)
        {
            location = &h[i];
        }
    }

    if (location == NULL || location->hash == 0) {
        return;
    }

    p = location->value.data;
    end = p + location->value.len;

    q = ngx_strlchr(p, end, '?');
    if (q) {
        end = q;
    }

    q = ngx_strlchr(p, end, '#');
    if (q) {
        end = q;
    }

    while (end > p && end[-1] == '/') {
        end--;
    }

    for (q = end; q > p && q[-1] != '/'; q--) { /* void */ }

    rid->data = q;
    rid->len = end - q;
}


static void
ngx_http_events_capture_copy(ngx_http_request_t *r,
    ngx_http_events_capture_ctx_t *ctx, ngx_buf_t *b)
{
    off_t                        n;
    ssize_t                      got;
    ngx_http_events_loc_conf_t  *elcf;

    if (ngx_buf_in_memory(b)) {
        n = b->last - b->pos;

    } else if (b->in_file) {
        n = b->file_last - b->file_pos;

    } else {
        return;
    }

    if (n == 0) {
        return;
    }

    elcf = ngx_http_get_module_loc_conf(r, ngx_http_events_module);

    if (ctx->len + n > elcf->capture->max_body || ctx->len + n > ctx->size) {
        /* too big, or longer than announced: the event has no data */
        ctx->json = 0;
        return;
    }

    if (ctx->body == NULL) {
        ctx->body = ngx_pnalloc(r->pool, ctx->size);
        if (ctx->body == NULL) {
            ctx->json = 0;
            return;
        }
    }

    if (ngx_buf_in_memory(b)) {
        ngx_memcpy(ctx->body + ctx->len, b->pos, n);
        ctx->len += n;
        return;
    }

    /* a proxy temp file: read back what is about to be sent from it */

    got = ngx_read_file(b->file, ctx->body + ctx->len, n, b->file_pos);

    if (got != n) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "events: automatic capture could not read back "
                      "\"%V\", the event has no data", &b->file->name);
        ctx->json = 0;
        return;
    }

    ctx->len += n;
}


static void
ngx_http_events_capture_emit_auto(ngx_http_request_t *r,
    ngx_http_events_capture_ctx_t *ctx)
{
    json_t        *data, *obj;
    ngx_int_t      rc;
    json_error_t   jerr;

    ctx->done = 1;

    data = NULL;

    if (ctx->json && ctx->len) {
        data = json_loadb((char *) ctx->body, ctx->len,
                          JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);

        if (data == NULL) {
            ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                          "events: automatic capture: the answer is not "
                          "JSON (line %d, column %d: %s), the event has no "
                          "data", jerr.line, jerr.column, jerr.text);
        }
    }

    if (ctx->rid.len == 0 && json_is_object(data)) {
        ngx_http_events_capture_body_id(r, ctx, json_object_get(data, "id"));
    }

    obj = ngx_http_events_capture_envelope(r, ctx, data);

    if (obj == NULL) {
        json_decref(data);
        return;
    }

    rc = ngx_http_events_capture_event(r, obj, "automatic");

    if (rc == NGX_HTTP_REQUEST_ENTITY_TOO_LARGE && data) {
        /* the answer is too big to ride along: keep the event, not it */
        json_decref(obj);
        obj = ngx_http_events_capture_envelope(r, ctx, NULL);

        if (obj) {
            ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                          "events: automatic capture: the answer is too "
                          "large for the event, stored without data");
            (void) ngx_http_events_capture_event(r, obj, "automatic");
        }
    }

    json_decref(obj);
    json_decref(data);
}


/* the answer's own id: a string, or an integer made one */

static void
ngx_http_events_capture_body_id(ngx_http_request_t *r,
    ngx_http_events_capture_ctx_t *ctx, json_t *id)
{
    u_char  *p;

    if (json_is_string(id)) {
        ctx->rid.len = json_string_length(id);
        ctx->rid.data = ngx_pnalloc(r->pool, ctx->rid.len);

        if (ctx->rid.data == NULL) {
            ctx->rid.len = 0;
            return;
        }

        ngx_memcpy(ctx->rid.data, json_string_value(id), ctx->rid.len);
        return;
    }

    if (json_is_integer(id)) {
        ctx->rid.data = ngx_pnalloc(r->pool, NGX_INT64_LEN);
        if (ctx->rid.data == NULL) {
            return;
        }

        p = ngx_sprintf(ctx->rid.data, "%L",
                        (int64_t) json_integer_value(id));
        ctx->rid.len = p - ctx->rid.data;
    }
}


static json_t *
ngx_http_events_capture_envelope(ngx_http_request_t *r,
    ngx_http_events_capture_ctx_t *ctx, json_t *data)
{
    u_char                      *p;
    json_t                      *obj, *v, *meta;
    ngx_http_events_resource_t  *res;
    u_char                       type[NGX_HTTP_EVENTS_MAX_TYPE + 16];

    res = ctx->resource;

    obj = json_object();
    if (obj == NULL) {
        return NULL;
    }

    p = ngx_snprintf(type, sizeof(type), "%V.%s", &res->type, ctx->action);

    if (json_object_set_new(obj, "type",
                            json_stringn((char *) type, p - type))
        != 0
        || json_object_set_new(obj, "resourceType",
                               json_stringn((char *) res->rtype.data,
                                            res->rtype.len))
           != 0)
    {
        goto failed;
    }

    v = NULL;

    if (ctx->rid.len) {
        v = json_stringn((char *) ctx->rid.data, ctx->rid.len);

        if (v == NULL) {
            /* not UTF-8: let the validation name the field */
            v = json_string("\x01");
        }
    }

    if (v && json_object_set_new(obj, "resourceId", v) != 0) {
        goto failed;
    }

    if (data && json_object_set_new(obj, "payload",
                                    json_pack("{sO}", "data", data))
                != 0)
    {
        goto failed;
    }

    if (ngx_http_events_capture_metadata_json(r, &meta) != NGX_OK) {
        goto failed;
    }

    if (meta == NULL) {
        return obj;
    }

    if (json_object_set_new(obj, "metadata", meta) != 0) {
        goto failed;
    }

    return obj;

failed:

    json_decref(obj);

    ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                  "events: automatic capture could not build the event");

    return NULL;
}


/* events_capture_metadata, evaluated: NULL when every value is empty */

static ngx_int_t
ngx_http_events_capture_metadata_json(ngx_http_request_t *r, json_t **out)
{
    json_t                          *meta, *v;
    ngx_str_t                        value;
    ngx_uint_t                       i;
    ngx_http_events_loc_conf_t      *elcf;
    ngx_http_events_capture_meta_t  *m;

    elcf = ngx_http_get_module_loc_conf(r, ngx_http_events_module);

    *out = NULL;

    if (elcf->capture->metadata == NULL) {
        return NGX_OK;
    }

    meta = json_object();
    if (meta == NULL) {
        return NGX_ERROR;
    }

    m = elcf->capture->metadata->elts;

    for (i = 0; i < elcf->capture->metadata->nelts; i++) {
        if (ngx_http_complex_value(r, &m[i].value, &value) != NGX_OK) {
            json_decref(meta);
            return NGX_ERROR;
        }

        /* an empty variable says nothing: leave the key out */
        if (value.len == 0) {
            continue;
        }

        v = json_stringn((char *) value.data, value.len);

        if (v == NULL) {
            /* not UTF-8: say so rather than drop the event */
            v = json_string("(not UTF-8)");
        }

        if (json_object_set_new(meta, (char *) m[i].name.data, v) != 0) {
            json_decref(meta);
            return NGX_ERROR;
        }
    }

    if (json_object_size(meta) == 0) {
        json_decref(meta);
        return NGX_OK;
    }

    *out = meta;

    return NGX_OK;
}


/*
 * Validate and store one captured event, exactly as POST /events would:
 * the request's tenant and events_source apply.  Returns NGX_OK, or the
 * HTTP status POST /events would have answered.
 */

static ngx_int_t
ngx_http_events_capture_event(ngx_http_request_t *r, json_t *obj,
    const char *what)
{
    ngx_int_t                    rc;
    ngx_str_t                   *name;
    ngx_http_events_ipc_t       *ipc;
    ngx_http_events_error_t      err;
    ngx_http_events_event_t     *ev;
    ngx_http_events_store_t     *store;
    ngx_http_events_envelope_t   env;
    ngx_http_events_loc_conf_t  *elcf;

    elcf = ngx_http_get_module_loc_conf(r, ngx_http_events_module);
    store = elcf->capture->zone->data;

    ngx_memzero(&env, sizeof(ngx_http_events_envelope_t));
    ngx_memzero(&err, sizeof(ngx_http_events_error_t));

    if (elcf->auth && ngx_http_events_auth_claims(r) == NULL) {
        /* nothing checked the token yet: the variable does, once */
        name = &ngx_http_events_tenant_var;
        (void) ngx_http_get_variable(r, name,
                                     ngx_hash_key(name->data, name->len));
    }

    rc = ngx_http_events_get_tenant(r, &env.tenant);

    if (rc != NGX_OK) {
        ngx_http_events_error(&err, 400, "invalid_tenant", NULL, NULL, NULL,
                              elcf->auth ? "no valid token names a tenant"
                                         : "the request's tenant is not a "
                              "valid tenant");
        ngx_http_events_capture_refused(r, what, &err);
        return err.status;
    }

    if (elcf->source
        && ngx_http_complex_value(r, elcf->source, &env.source) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ipc = ngx_http_events_ipc();

    env.pool = r->pool;
    env.rng = ipc ? &ipc->rng : NULL;
    env.max_size = ngx_min(elcf->max_event_size,
                           ngx_http_events_store_max_record(store));

    ev = ngx_palloc(r->pool, sizeof(ngx_http_events_event_t));
    if (ev == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_http_events_json_event(&env, obj, ev, &err) != NGX_OK) {
        if (err.status == 0) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        if (err.status == NGX_HTTP_REQUEST_ENTITY_TOO_LARGE
            && ngx_strcmp(what, "automatic") == 0)
        {
            /* the caller tries again without the data */
            return err.status;
        }

        ngx_http_events_capture_refused(r, what, &err);
        return err.status;
    }

    if (!ngx_http_events_validate_wanted(r, ev)) {
        return ngx_http_events_capture_append(r, ev, what);
    }

    return ngx_http_events_capture_hook(r, obj, ev, what);
}


/* an event the pre-write hook must see: stored when it agrees */

static ngx_int_t
ngx_http_events_capture_hook(ngx_http_request_t *r, json_t *obj,
    ngx_http_events_event_t *ev, const char *what)
{
    ngx_pool_cleanup_t            *cln;
    ngx_http_events_loc_conf_t    *elcf;
    ngx_http_events_validation_t  *v;

    elcf = ngx_http_get_module_loc_conf(r, ngx_http_events_module);

    /* the event points into obj: keep it until the hook has answered */

    cln = ngx_pool_cleanup_add(r->pool, 0);
    v = ngx_pcalloc(r->pool, sizeof(ngx_http_events_validation_t));

    if (cln == NULL || v == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln->handler = ngx_http_events_json_cleanup;
    cln->data = json_incref(obj);

    v->ev = ev;
    v->store = elcf->capture->zone->data;
    v->handler = ngx_http_events_capture_validated;
    v->data = (void *) what;

    if (ngx_http_events_validate_background(r, v) != NGX_OK) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "events: captured event (%s): could not ask the "
                      "validation hook", what);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return NGX_OK;
}


static void
ngx_http_events_capture_validated(ngx_http_request_t *r,
    ngx_http_events_validation_t *v)
{
    ngx_int_t                 rc;
    ngx_http_events_error_t   err;

    rc = ngx_http_events_validate_verdict(r, v);

    if (rc == NGX_OK) {
        (void) ngx_http_events_capture_append(r, v->ev, v->data);
        return;
    }

    if (rc == NGX_DECLINED) {
        ngx_http_events_error(&err, v->status, "rejected", NULL, NULL, NULL,
                              "the validation hook refused the event");

    } else {
        ngx_http_events_error(&err, 503, "validation_unavailable", NULL,
                              NULL, NULL, "the validation hook did not "
                              "answer");
    }

    ngx_http_events_capture_refused(r, v->data, &err);
}


static ngx_int_t
ngx_http_events_capture_append(ngx_http_request_t *r,
    ngx_http_events_event_t *ev, const char *what)
{
    ngx_uint_t                   failed;
    ngx_http_events_error_t      err;
    ngx_http_events_store_t     *store;
    ngx_http_events_loc_conf_t  *elcf;
    ngx_http_events_store_rc_e   rc;

    elcf = ngx_http_get_module_loc_conf(r, ngx_http_events_module);
    store = elcf->capture->zone->data;

    ngx_memzero(&err, sizeof(ngx_http_events_error_t));

    rc = ngx_http_events_store_append(store, ev, 1, r->pool, &failed);

    if (rc == NGX_HTTP_EVENTS_STORE_JOURNAL_UNSYNCED) {
        /* stored and published; the journal logged its fsync's failure */
        rc = NGX_HTTP_EVENTS_STORE_OK;
    }

    switch (rc) {

    case NGX_HTTP_EVENTS_STORE_OK:
        break;

    case NGX_HTTP_EVENTS_STORE_JOURNAL_FAILED:
        ngx_http_events_error(&err, 503, "journal_unavailable", NULL, NULL,
                              NULL, "the journal on disk cannot take the "
                              "write now");
        break;

    case NGX_HTTP_EVENTS_STORE_CONFLICT:
        ngx_http_events_error(&err, 409, "conflict", "field", NULL, "id",
                              "an event with this id and a different body "
                              "exists");
        break;

    case NGX_HTTP_EVENTS_STORE_TOO_MANY_TYPES:
        ngx_http_events_error(&err, 409, "too_many_types", "field", NULL,
                              "type", "this tenant has %d types in the "
                              "store, the most it may have",
                              NGX_HTTP_EVENTS_TENANT_TYPES);
        break;

    case NGX_HTTP_EVENTS_STORE_TOO_LARGE:
        ngx_http_events_error(&err, 413, "payload_too_large", NULL, NULL,
                              NULL, "the event is larger than the zone can "
                              "hold");
        break;

    default:
        ngx_http_events_error(&err, 503, "store_unavailable", NULL, NULL,
                              NULL, "the store cannot take the write now");
        break;
    }

    if (rc != NGX_HTTP_EVENTS_STORE_OK) {
        ngx_http_events_capture_refused(r, what, &err);
        return err.status;
    }

    if (!ev->repeat) {
        ngx_http_events_store_tally(store, NGX_HTTP_EVENTS_CAPTURED);
        ngx_http_events_ipc_notify(store);
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "events: captured \"%V\" from %s", &ev->type, what);

    return NGX_OK;
}


static void
ngx_http_events_capture_refused(ngx_http_request_t *r, const char *what,
    ngx_http_events_error_t *err)
{
    ngx_http_events_loc_conf_t  *elcf;

    elcf = ngx_http_get_module_loc_conf(r, ngx_http_events_module);

    ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                  "events: captured event (%s) refused: %s: %*s%s%*s%s",
                  what, err->code, err->message_len, err->message,
                  err->name_len ? " (" : "", err->name_len, err->name,
                  err->name_len ? ")" : "");

    ngx_http_events_store_tally(elcf->capture->zone->data,
                                NGX_HTTP_EVENTS_CAPTURE_INVALID);
}


/* configuration */

void
ngx_http_events_capture_create_conf(ngx_http_events_capture_conf_t *conf)
{
    conf->modes = NGX_CONF_UNSET_UINT;
    conf->zone = NULL;
    conf->resources = NGX_CONF_UNSET_PTR;
    conf->metadata = NGX_CONF_UNSET_PTR;
    conf->max_body = NGX_CONF_UNSET_SIZE;
    conf->pre_fail_open = NGX_CONF_UNSET_UINT;
}


char *
ngx_http_events_capture_merge_conf(ngx_conf_t *cf,
    ngx_http_events_capture_conf_t *prev,
    ngx_http_events_capture_conf_t *conf)
{
    if (conf->modes == NGX_CONF_UNSET_UINT) {
        conf->modes = (prev->modes == NGX_CONF_UNSET_UINT) ? 0 : prev->modes;
        conf->zone = prev->zone;
    }

    ngx_conf_merge_ptr_value(conf->resources, prev->resources, NULL);
    ngx_conf_merge_ptr_value(conf->metadata, prev->metadata, NULL);
    ngx_conf_merge_size_value(conf->max_body, prev->max_body, 64 * 1024);

    if (conf->pre_fail_open == NGX_CONF_UNSET_UINT) {
        conf->pre = prev->pre;
        conf->pre_fail_open = prev->pre_fail_open;
    }

    if (conf->pre.len && !(conf->modes & NGX_HTTP_EVENTS_CAPTURE_AUTO)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"events_capture_pre\" needs \"events_capture "
                           "auto\" where it applies");
        return NGX_CONF_ERROR;
    }

    if ((conf->modes & NGX_HTTP_EVENTS_CAPTURE_AUTO)
        && conf->resources == NULL)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"events_capture auto\" needs at least one "
                           "\"events_resource\"");
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* events_capture header|auto|off ... zone=NAME */

char *
ngx_http_events_capture(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_events_loc_conf_t *elcf = conf;

    ngx_str_t                    *value, name;
    ngx_uint_t                    i, modes;
    ngx_shm_zone_t              **zp;
    ngx_http_events_main_conf_t  *emcf;

    if (elcf->capture->modes != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;
    modes = 0;
    ngx_str_null(&name);

    for (i = 1; i < cf->args->nelts; i++) {

        if (ngx_strcmp(value[i].data, "header") == 0) {
            modes |= NGX_HTTP_EVENTS_CAPTURE_HEADER;
            continue;
        }

        if (ngx_strcmp(value[i].data, "auto") == 0) {
            modes |= NGX_HTTP_EVENTS_CAPTURE_AUTO;
            continue;
        }

        if (ngx_strcmp(value[i].data, "off") == 0 && cf->args->nelts == 2) {
            elcf->capture->modes = 0;
            return NGX_CONF_OK;
        }

        if (ngx_strncmp(value[i].data, "zone=", 5) == 0
            && value[i].len > 5)
        {
            name.data = value[i].data + 5;
            name.len = value[i].len - 5;
            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\"", &value[i]);
        return NGX_CONF_ERROR;
    }

    if (modes == 0) {
        return "needs \"header\", \"auto\" or both";
    }

    if (name.len == 0) {
        return "needs \"zone=\"";
    }

    elcf->capture->zone = ngx_shared_memory_add(cf, &name, 0,
                                                &ngx_http_events_module);
    if (elcf->capture->zone == NULL) {
        return NGX_CONF_ERROR;
    }

    /* a cluster's zone is written by its tailer only: it checks these */

    emcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_events_module);

    if (emcf->captured == NULL) {
        emcf->captured = ngx_array_create(cf->pool, 2,
                                          sizeof(ngx_shm_zone_t *));
        if (emcf->captured == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    zp = ngx_array_push(emcf->captured);
    if (zp == NULL) {
        return NGX_CONF_ERROR;
    }

    *zp = elcf->capture->zone;

    elcf->capture->modes = modes;

    return NGX_CONF_OK;
}


/* events_resource /api/tickets/{id} ticket; */

char *
ngx_http_events_capture_resource(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_events_loc_conf_t *elcf = conf;

    u_char                      *p, *dot;
    ngx_str_t                   *value;
    ngx_http_events_resource_t  *res;

    value = cf->args->elts;

    if (elcf->capture->resources == NGX_CONF_UNSET_PTR) {
        elcf->capture->resources =
                  ngx_array_create(cf->pool, 4,
                                   sizeof(ngx_http_events_resource_t));
        if (elcf->capture->resources == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    if (value[1].len == 0 || value[1].data[0] != '/') {
        return "needs a path that starts with \"/\"";
    }

    if (ngx_http_events_match_type_valid(value[2].data, value[2].len) != NGX_OK
        || value[2].len > NGX_HTTP_EVENTS_MAX_TYPE - sizeof(".created"))
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid type \"%V\": use dot-separated segments "
                           "of [a-z0-9_]", &value[2]);
        return NGX_CONF_ERROR;
    }

    res = ngx_array_push(elcf->capture->resources);
    if (res == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(res, sizeof(ngx_http_events_resource_t));

    res->type = value[2];

    dot = value[2].data + value[2].len;
    while (dot > value[2].data && dot[-1] != '.') {
        dot--;
    }

    res->rtype.data = dot;
    res->rtype.len = value[2].data + value[2].len - dot;

    if (res->rtype.len > NGX_HTTP_EVENTS_MAX_RTYPE) {
        return "has a type whose last segment is longer than 64";
    }

    p = ngx_strlcasestrn(value[1].data, value[1].data + value[1].len,
                         (u_char *) "{id}", 4 - 1);

    if (p == NULL) {
        res->prefix = value[1];
        return NGX_CONF_OK;
    }

    if (p > value[1].data && p[-1] != '/') {
        return "needs \"{id}\" as a whole path segment";
    }

    res->has_id = 1;
    res->prefix.data = value[1].data;
    res->prefix.len = p - value[1].data;
    res->suffix.data = p + 4;
    res->suffix.len = value[1].data + value[1].len - res->suffix.data;

    if (res->suffix.len && res->suffix.data[0] != '/') {
        return "needs \"{id}\" as a whole path segment";
    }

    if (ngx_strlcasestrn(res->suffix.data,
                         res->suffix.data + res->suffix.len,
                         (u_char *) "{id}", 4 - 1)
        != NULL)
    {
        return "may hold \"{id}\" only once";
    }

    return NGX_CONF_OK;
}


/* events_capture_metadata actorId $remote_user; */

char *
ngx_http_events_capture_metadata(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_events_loc_conf_t *elcf = conf;

    ngx_str_t                         *value;
    ngx_http_events_capture_meta_t    *m;
    ngx_http_compile_complex_value_t   ccv;

    value = cf->args->elts;

    if (elcf->capture->metadata == NGX_CONF_UNSET_PTR) {
        elcf->capture->metadata =
                  ngx_array_create(cf->pool, 4,
                                   sizeof(ngx_http_events_capture_meta_t));
        if (elcf->capture->metadata == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    if (value[1].len == 0 || value[1].len > 64) {
        return "needs a name of 1-64 characters";
    }

    m = ngx_array_push(elcf->capture->metadata);
    if (m == NULL) {
        return NGX_CONF_ERROR;
    }

    /* value[1] is NUL-terminated by the parser: jansson wants that */
    m->name = value[1];

    ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));

    ccv.cf = cf;
    ccv.value = &value[2];
    ccv.complex_value = &m->value;

    if (ngx_http_compile_complex_value(&ccv) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}
