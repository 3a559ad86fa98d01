
/*
 * Copyright (C) ngx_http_events_module authors
 */


/*
 * The envelope: a client's event object is checked field by field and
 * turned into the stored envelope, keys in one fixed order.  The tree
 * is jansson's; the writer is ours, so that numbers come back as they
 * were sent (shortest form that reads back the same) and the output
 * lands in one pool buffer.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_md5.h>

#include <stdio.h>
#include <stdlib.h>
#include <math.h>

#include "ngx_http_events_json.h"
#include "ngx_http_events_id.h"
#include "ngx_http_events_match.h"


#define NGX_HTTP_EVENTS_REAL_LEN    32


typedef struct {
    json_t                     *id;
    json_t                     *type;
    json_t                     *source;
    json_t                     *tenant;
    json_t                     *project;
    json_t                     *rtype;
    json_t                     *rid;
    json_t                     *occurred;
    json_t                     *payload;
    json_t                     *metadata;
    json_t                     *data;
    json_t                     *changes;
    ngx_uint_t                  action;
    ngx_str_t                   project_id;
    ngx_str_t                   occurred_at;
} ngx_http_events_fields_t;


static ngx_int_t ngx_http_events_json_fields(ngx_http_events_envelope_t *env,
    json_t *obj, ngx_http_events_fields_t *f, ngx_http_events_error_t *err);
static ngx_int_t ngx_http_events_json_type(ngx_http_events_envelope_t *env,
    ngx_http_events_fields_t *f, ngx_http_events_event_t *ev,
    ngx_http_events_error_t *err);
static ngx_int_t ngx_http_events_json_id(ngx_http_events_envelope_t *env,
    json_t *obj, ngx_http_events_fields_t *f, ngx_http_events_event_t *ev,
    ngx_http_events_error_t *err);
static ngx_int_t ngx_http_events_json_tenant(ngx_http_events_envelope_t *env,
    ngx_http_events_fields_t *f, ngx_http_events_event_t *ev,
    ngx_http_events_error_t *err);
static ngx_int_t ngx_http_events_json_keys(ngx_http_events_envelope_t *env,
    ngx_http_events_fields_t *f, ngx_http_events_event_t *ev,
    ngx_http_events_error_t *err);
static ngx_int_t ngx_http_events_json_envelope(
    ngx_http_events_envelope_t *env, ngx_http_events_fields_t *f,
    ngx_http_events_event_t *ev, ngx_http_events_error_t *err);
static ngx_int_t ngx_http_events_json_payload(
    ngx_http_events_envelope_t *env, ngx_http_events_fields_t *f,
    ngx_str_t *type, ngx_http_events_error_t *err);
static ngx_uint_t ngx_http_events_json_payload_own(const char *key);
static u_char *ngx_http_events_json_payload_extra(
    ngx_http_events_envelope_t *env, u_char *p, json_t *payload);
static u_char *ngx_http_events_json_put(ngx_http_events_envelope_t *env,
    u_char *p, json_t *v);
static u_char *ngx_http_events_json_put_key(ngx_http_events_envelope_t *env,
    u_char *p, const char *key, ngx_uint_t comma);
static ngx_inline u_char *ngx_http_events_json_room(
    ngx_http_events_envelope_t *env, u_char *p, size_t need);
static u_char *ngx_http_events_json_grow(ngx_http_events_envelope_t *env,
    u_char *p, size_t need);
static size_t ngx_http_events_json_escape_max(u_char *s, size_t len);
static ngx_int_t ngx_http_events_json_string(ngx_http_events_envelope_t *env,
    json_t *v, const char *name, size_t max, ngx_uint_t kind, ngx_str_t *s,
    ngx_http_events_error_t *err);
static ngx_uint_t ngx_http_events_json_text_char(u_char ch);
static ngx_int_t ngx_http_events_json_text_valid(u_char *p, size_t len,
    size_t max);
static ngx_int_t ngx_http_events_json_digest(json_t *obj, u_char *digest);
static u_char *ngx_http_events_json_str(u_char *p, ngx_str_t *s);
static size_t ngx_http_events_json_real(double d, u_char *buf);
static u_char *ngx_http_events_json_int(u_char *p, json_int_t i);
static ngx_uint_t ngx_http_events_json_action(ngx_str_t *s);


/*
 * The bytes each kind of key field may hold, one lookup a byte: TEXT
 * any but the control characters and DEL (UTF-8 is not checked, as
 * before), RTYPE [A-Za-z0-9_-], RID those and ".:@"
 */

#define NGX_HTTP_EVENTS_JSON_TEXT   1
#define NGX_HTTP_EVENTS_JSON_RTYPE  2
#define NGX_HTTP_EVENTS_JSON_RID    4

static const u_char  ngx_http_events_json_chars[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 7, 5, 1,
    7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 5, 1, 1, 1, 1, 1,
    5, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
    7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 1, 1, 1, 1, 7,
    1, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
    7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 1, 1, 1, 1, 0,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
};


static ngx_str_t  ngx_http_events_actions[] = {
    ngx_null_string,
    ngx_string("created"),
    ngx_string("updated"),
    ngx_string("deleted"),
    ngx_string("occurred")
};


/* for ngx_pool_cleanup_add(): a JSON value lives as long as a request */

void
ngx_http_events_json_cleanup(void *data)
{
    json_decref(data);
}


ngx_int_t
ngx_http_events_json_event(ngx_http_events_envelope_t *env, json_t *obj,
    ngx_http_events_event_t *ev, ngx_http_events_error_t *err)
{
    ngx_http_events_fields_t  f;

    ngx_memzero(ev, sizeof(ngx_http_events_event_t));
    ngx_memzero(&f, sizeof(ngx_http_events_fields_t));

    if (!json_is_object(obj)) {
        ngx_http_events_error(err, 400, "invalid_body", NULL, NULL, NULL,
                              "%san event must be a JSON object",
                              env->prefix.len ? "each item: " : "");
        return NGX_ERROR;
    }

    if (ngx_http_events_json_fields(env, obj, &f, err) != NGX_OK
        || ngx_http_events_json_type(env, &f, ev, err) != NGX_OK
        || ngx_http_events_json_id(env, obj, &f, ev, err) != NGX_OK
        || ngx_http_events_json_tenant(env, &f, ev, err) != NGX_OK
        || ngx_http_events_json_keys(env, &f, ev, err) != NGX_OK
        || ngx_http_events_json_payload(env, &f, &ev->type, err) != NGX_OK)
    {
        return NGX_ERROR;
    }

    ev->action = f.action;

    if (f.metadata && !json_is_null(f.metadata)
        && !json_is_object(f.metadata))
    {
        ngx_http_events_error(err, 400, "invalid_field", "field",
                              &env->prefix, "metadata",
                              "\"metadata\" must be an object");
        return NGX_ERROR;
    }

    return ngx_http_events_json_envelope(env, &f, ev, err);
}


/* type: required, a valid type */

static ngx_int_t
ngx_http_events_json_type(ngx_http_events_envelope_t *env,
    ngx_http_events_fields_t *f, ngx_http_events_event_t *ev,
    ngx_http_events_error_t *err)
{
    if (f->type == NULL) {
        ngx_http_events_error(err, 400, "missing_field", "field",
                              &env->prefix, "type", "\"type\" is required");
        return NGX_ERROR;
    }

    if (!json_is_string(f->type)
        || ngx_http_events_match_type_valid(
               (u_char *) json_string_value(f->type),
               json_string_length(f->type))
           != NGX_OK)
    {
        ngx_http_events_error(err, 400, "invalid_field", "field",
                              &env->prefix, "type",
                              "\"type\" must be a string of dot-separated "
                              "segments of [a-z0-9_], 1-128 characters");
        return NGX_ERROR;
    }

    ev->type.data = (u_char *) json_string_value(f->type);
    ev->type.len = json_string_length(f->type);

    return NGX_OK;
}


/* id: the client's makes ingestion idempotent; else a ULID of ours */

static ngx_int_t
ngx_http_events_json_id(ngx_http_events_envelope_t *env, json_t *obj,
    ngx_http_events_fields_t *f, ngx_http_events_event_t *ev,
    ngx_http_events_error_t *err)
{
    ngx_time_t  *tp;

    if (f->id && !json_is_null(f->id)) {
        if (!json_is_string(f->id)
            || ngx_http_events_id_valid((u_char *) json_string_value(f->id),
                                        json_string_length(f->id))
               != NGX_OK)
        {
            ngx_http_events_error(err, 400, "invalid_field", "field",
                                  &env->prefix, "id",
                                  "\"id\" must be a string of 1-128 "
                                  "characters of [A-Za-z0-9_:-]");
            return NGX_ERROR;
        }

        ev->id.data = (u_char *) json_string_value(f->id);
        ev->id.len = json_string_length(f->id);
        ev->client_id = 1;

        if (ngx_http_events_json_digest(obj, ev->digest) != NGX_OK) {
            return NGX_ERROR;
        }

    } else {
        ev->id.data = ngx_pnalloc(env->pool, NGX_HTTP_EVENTS_ID_LEN);
        if (ev->id.data == NULL) {
            return NGX_ERROR;
        }

        tp = ngx_timeofday();

        if (ngx_http_events_id_generate(ev->id.data,
                                        (uint64_t) tp->sec * 1000 + tp->msec,
                                        env->rng)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        ev->id.len = NGX_HTTP_EVENTS_ID_LEN;
    }

    return NGX_OK;
}


/* the tenant is the request's, never the body's */

static ngx_int_t
ngx_http_events_json_tenant(ngx_http_events_envelope_t *env,
    ngx_http_events_fields_t *f, ngx_http_events_event_t *ev,
    ngx_http_events_error_t *err)
{
    ngx_str_t  tenant;

    ev->tenant = env->tenant;

    if (f->tenant && !json_is_null(f->tenant)) {
        if (!json_is_string(f->tenant)) {
            ngx_http_events_error(err, 400, "invalid_field", "field",
                                  &env->prefix, "tenantId",
                                  "\"tenantId\" must be a string");
            return NGX_ERROR;
        }

        tenant.data = (u_char *) json_string_value(f->tenant);
        tenant.len = json_string_length(f->tenant);

        if (tenant.len != env->tenant.len
            || (tenant.len
                && ngx_memcmp(tenant.data, env->tenant.data, tenant.len)
                   != 0))
        {
            ngx_http_events_error(err, 403, "tenant_mismatch", "field",
                                  &env->prefix, "tenantId",
                                  "\"tenantId\" names another tenant than "
                                  "the request's");
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/* the keys the indexes use, and occurredAt */

static ngx_int_t
ngx_http_events_json_keys(ngx_http_events_envelope_t *env,
    ngx_http_events_fields_t *f, ngx_http_events_event_t *ev,
    ngx_http_events_error_t *err)
{
    u_char  *dot;

    if (ngx_http_events_json_string(env, f->source, "source",
                                    NGX_HTTP_EVENTS_MAX_SOURCE,
                                    NGX_HTTP_EVENTS_JSON_TEXT, &ev->source,
                                    err)
        != NGX_OK
        || ngx_http_events_json_string(env, f->project, "projectId", 128,
                                       NGX_HTTP_EVENTS_JSON_TEXT,
                                       &f->project_id, err)
           != NGX_OK
        || ngx_http_events_json_string(env, f->rtype, "resourceType",
                                       NGX_HTTP_EVENTS_MAX_RTYPE,
                                       NGX_HTTP_EVENTS_JSON_RTYPE,
                                       &ev->rtype, err)
           != NGX_OK
        || ngx_http_events_json_string(env, f->rid, "resourceId",
                                       NGX_HTTP_EVENTS_MAX_RID,
                                       NGX_HTTP_EVENTS_JSON_RID, &ev->rid,
                                       err)
           != NGX_OK
        || ngx_http_events_json_string(env, f->occurred, "occurredAt", 64,
                                       NGX_HTTP_EVENTS_JSON_TEXT,
                                       &f->occurred_at, err)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (f->occurred_at.len
        && ngx_http_events_time_parse(f->occurred_at.data,
                                      f->occurred_at.len, NULL)
           != NGX_OK)
    {
        ngx_http_events_error(err, 400, "invalid_field", "field",
                              &env->prefix, "occurredAt",
                              "\"occurredAt\" must be an ISO-8601 time, "
                              "e.g. 2026-11-23T12:00:00.123Z");
        return NGX_ERROR;
    }

    if (ev->source.len == 0 && env->source.len) {
        /* the configured default, often from a variable: check it too */
        if (ngx_http_events_json_text_valid(env->source.data, env->source.len,
                                            NGX_HTTP_EVENTS_MAX_SOURCE)
            != NGX_OK)
        {
            ngx_http_events_error(err, 400, "invalid_source", NULL, NULL,
                                  NULL, "the request's source "
                                  "(events_source) must be 1-128 bytes of "
                                  "printable UTF-8");
            return NGX_ERROR;
        }

        ev->source = env->source;
    }

    if (ev->rtype.len == 0) {
        dot = ngx_strlchr(ev->type.data, ev->type.data + ev->type.len, '.');
        ev->rtype.data = ev->type.data;
        ev->rtype.len = dot ? (size_t) (dot - ev->type.data) : ev->type.len;
    }

    return NGX_OK;
}


/* the envelope, in its one order */

static ngx_int_t
ngx_http_events_json_envelope(ngx_http_events_envelope_t *env,
    ngx_http_events_fields_t *f, ngx_http_events_event_t *ev,
    ngx_http_events_error_t *err)
{
    u_char  *p, *v;
    size_t   len, data_len, changes_len, extra_len, meta_len;

    /*
     * The values as sent (data, changes, the payload's other keys,
     * metadata) are written once, into the scratch, and their lengths
     * read from it: the envelope's size and its limit as before, without
     * a walk of the tree to size them and escaping twice
     */

    p = ngx_http_events_json_room(env, env->scratch, 4);
    if (p == NULL) {
        return NGX_ERROR;
    }

    p = f->data ? ngx_http_events_json_put(env, p, f->data)
                : ngx_cpymem(p, "null", 4);
    if (p == NULL) {
        return NGX_ERROR;
    }

    data_len = p - env->scratch;

    p = f->changes ? ngx_http_events_json_put(env, p, f->changes)
                   : ngx_http_events_json_room(env, p, 4);
    if (p == NULL) {
        return NGX_ERROR;
    }

    if (f->changes == NULL) {
        p = ngx_cpymem(p, "null", 4);
    }

    changes_len = p - env->scratch - data_len;

    p = ngx_http_events_json_payload_extra(env, p, f->payload);
    if (p == NULL) {
        return NGX_ERROR;
    }

    extra_len = p - env->scratch - data_len - changes_len;

    p = f->metadata ? ngx_http_events_json_put(env, p, f->metadata)
                    : ngx_http_events_json_room(env, p, 4);
    if (p == NULL) {
        return NGX_ERROR;
    }

    if (f->metadata == NULL) {
        p = ngx_cpymem(p, "null", 4);
    }

    meta_len = p - env->scratch - data_len - changes_len - extra_len;

    len = sizeof("{\"id\":,\"seq\":,\"type\":,\"source\":,\"tenantId\":,"
                 "\"projectId\":,\"resourceType\":,\"resourceId\":,"
                 "\"timestamp\":\"\",\"occurredAt\":,\"payload\":"
                 "{\"action\":\"\",\"data\":,\"changes\":},"
                 "\"metadata\":}")
          + ev->id.len + ev->type.len
          + 2 + ngx_http_events_json_escape_len(ev->source.data,
                                                ev->source.len)
          + 2 + ngx_http_events_json_escape_len(ev->tenant.data,
                                                ev->tenant.len)
          + 2 + ngx_http_events_json_escape_len(f->project_id.data,
                                                f->project_id.len)
          + ev->rtype.len + ev->rid.len + 8
          + 2 + ngx_http_events_json_escape_len(f->occurred_at.data,
                                                f->occurred_at.len)
          + ngx_http_events_actions[f->action].len
          + data_len + changes_len + extra_len + meta_len + 16;

    if (len + NGX_INT64_LEN + NGX_HTTP_EVENTS_TIMESTAMP_LEN > env->max_size) {
        ngx_http_events_error(err, 413, "payload_too_large", NULL, NULL,
                              NULL, "%san event may be at most %uz bytes",
                              env->prefix.len ? "each item: " : "",
                              env->max_size);
        return NGX_ERROR;
    }

    p = ngx_pnalloc(env->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ev->json = p;

    p = ngx_cpymem(p, "{\"id\":", sizeof("{\"id\":") - 1);
    p = ngx_http_events_json_str(p, &ev->id);
    p = ngx_cpymem(p, ",\"seq\":", sizeof(",\"seq\":") - 1);
    ev->seq_at = p - ev->json;

    p = ngx_cpymem(p, ",\"type\":", sizeof(",\"type\":") - 1);
    p = ngx_http_events_json_str(p, &ev->type);
    p = ngx_cpymem(p, ",\"source\":", sizeof(",\"source\":") - 1);
    p = ngx_http_events_json_str(p, &ev->source);
    p = ngx_cpymem(p, ",\"tenantId\":", sizeof(",\"tenantId\":") - 1);
    p = ngx_http_events_json_str(p, &ev->tenant);
    p = ngx_cpymem(p, ",\"projectId\":", sizeof(",\"projectId\":") - 1);
    p = ngx_http_events_json_str(p, &f->project_id);
    p = ngx_cpymem(p, ",\"resourceType\":",
                   sizeof(",\"resourceType\":") - 1);
    p = ngx_http_events_json_str(p, &ev->rtype);
    p = ngx_cpymem(p, ",\"resourceId\":", sizeof(",\"resourceId\":") - 1);
    p = ngx_http_events_json_str(p, &ev->rid);
    p = ngx_cpymem(p, ",\"timestamp\":\"", sizeof(",\"timestamp\":\"") - 1);
    ev->ts_at = p - ev->json;

    p = ngx_cpymem(p, "\",\"occurredAt\":", sizeof("\",\"occurredAt\":") - 1);
    p = ngx_http_events_json_str(p, &f->occurred_at);
    p = ngx_cpymem(p, ",\"payload\":{\"action\":\"",
                   sizeof(",\"payload\":{\"action\":\"") - 1);
    p = ngx_cpymem(p, ngx_http_events_actions[f->action].data,
                   ngx_http_events_actions[f->action].len);
    v = env->scratch;
    p = ngx_cpymem(p, "\",\"data\":", sizeof("\",\"data\":") - 1);
    p = ngx_cpymem(p, v, data_len);
    v += data_len;
    p = ngx_cpymem(p, ",\"changes\":", sizeof(",\"changes\":") - 1);
    p = ngx_cpymem(p, v, changes_len + extra_len);
    v += changes_len + extra_len;
    p = ngx_cpymem(p, "},\"metadata\":", sizeof("},\"metadata\":") - 1);
    ev->meta_at = p - ev->json;
    p = ngx_cpymem(p, v, meta_len);
    *p++ = '}';

    ev->json_len = p - ev->json;

    return NGX_OK;
}


static ngx_int_t
ngx_http_events_json_fields(ngx_http_events_envelope_t *env, json_t *obj,
    ngx_http_events_fields_t *f, ngx_http_events_error_t *err)
{
    json_t      *v, **field;
    const char  *key, *name;

    json_object_foreach(obj, key, v) {

        /*
         * a key's first byte picks the one name it can be: one strcmp()
         * a key, not up to a dozen
         */

        switch (key[0]) {

        case 'i':
            name = "id"; field = &f->id;
            break;

        case 't':
            if (key[1] == 'y') {
                name = "type"; field = &f->type;

            } else {
                name = "tenantId"; field = &f->tenant;
            }

            break;

        case 's':
            name = "source"; field = &f->source;
            break;

        case 'p':
            if (key[1] == 'r') {
                name = "projectId"; field = &f->project;

            } else {
                name = "payload"; field = &f->payload;
            }

            break;

        case 'r':
            if (ngx_strcmp(key, "resourceId") == 0) {
                f->rid = v;
                continue;
            }

            name = "resourceType"; field = &f->rtype;
            break;

        case 'o':
            name = "occurredAt"; field = &f->occurred;
            break;

        case 'm':
            name = "metadata"; field = &f->metadata;
            break;

        default:
            name = NULL; field = NULL;
        }

        if (field && ngx_strcmp(key, name) == 0) {
            *field = v;

        } else if (ngx_strcmp(key, "seq") == 0
                   || ngx_strcmp(key, "timestamp") == 0)
        {
            ngx_http_events_error(err, 400, "invalid_field", "field",
                                  &env->prefix, key,
                                  "\"%s\" is set by the server", key);
            return NGX_ERROR;

        } else {
            ngx_http_events_error(err, 400, "unknown_field", "field",
                                  &env->prefix, key,
                                  "unknown field \"%s\"; custom data "
                                  "belongs in payload.data or metadata",
                                  key);
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_events_json_payload(ngx_http_events_envelope_t *env,
    ngx_http_events_fields_t *f, ngx_str_t *type,
    ngx_http_events_error_t *err)
{
    u_char      *p;
    json_t      *v, *action;
    ngx_str_t    s;
    const char  *key;

    action = NULL;

    if (f->payload && !json_is_null(f->payload)) {

        if (!json_is_object(f->payload)) {
            ngx_http_events_error(err, 400, "invalid_field", "field",
                                  &env->prefix, "payload",
                                  "\"payload\" must be an object");
            return NGX_ERROR;
        }

        json_object_foreach(f->payload, key, v) {

            /* the first byte first: most keys are none of the three */

            if (key[0] == 'a' && ngx_strcmp(key, "action") == 0) {
                action = v;

            } else if (key[0] == 'd' && ngx_strcmp(key, "data") == 0) {
                f->data = v;

            } else if (key[0] == 'c' && ngx_strcmp(key, "changes") == 0) {
                f->changes = json_is_null(v) ? NULL : v;
            }
        }
    }

    if (action && !json_is_null(action)) {
        s.data = (u_char *) json_string_value(action);
        s.len = json_is_string(action) ? json_string_length(action) : 0;

        f->action = ngx_http_events_json_action(&s);

        if (f->action == 0) {
            ngx_http_events_error(err, 400, "invalid_field", "field",
                                  &env->prefix, "payload.action",
                                  "\"payload.action\" must be one of "
                                  "created, updated, deleted, occurred");
            return NGX_ERROR;
        }

    } else {
        /* from the type's last segment, when it is one of the four */
        p = type->data + type->len;
        while (p > type->data && p[-1] != '.') {
            p--;
        }

        s.data = p;
        s.len = type->data + type->len - p;

        f->action = ngx_http_events_json_action(&s);

        if (f->action == 0) {
            f->action = NGX_HTTP_EVENTS_ACTION_OCCURRED;
        }
    }

    if (f->changes) {
        if (f->action != NGX_HTTP_EVENTS_ACTION_UPDATED) {
            ngx_http_events_error(err, 400, "invalid_field", "field",
                                  &env->prefix, "payload.changes",
                                  "\"payload.changes\" is only valid with "
                                  "action \"updated\"");
            return NGX_ERROR;
        }

        if (!json_is_object(f->changes)) {
            ngx_http_events_error(err, 400, "invalid_field", "field",
                                  &env->prefix, "payload.changes",
                                  "\"payload.changes\" must be an object "
                                  "of previous values");
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static ngx_uint_t
ngx_http_events_json_payload_own(const char *key)
{
    return (key[0] == 'a' && ngx_strcmp(key, "action") == 0)
           || (key[0] == 'd' && ngx_strcmp(key, "data") == 0)
           || (key[0] == 'c' && ngx_strcmp(key, "changes") == 0);
}


/*
 * The payload's other keys, in the order they were sent (jansson keeps
 * insertion order), after action, data and changes: a consumer that
 * knows only those three still finds them first.
 */

static u_char *
ngx_http_events_json_payload_extra(ngx_http_events_envelope_t *env,
    u_char *p, json_t *payload)
{
    json_t      *v;
    const char  *key;

    if (payload == NULL || !json_is_object(payload)) {
        return p;
    }

    json_object_foreach(payload, key, v) {

        if (ngx_http_events_json_payload_own(key)) {
            continue;
        }

        p = ngx_http_events_json_put_key(env, p, key, 1);
        if (p == NULL) {
            return NULL;
        }

        p = ngx_http_events_json_put(env, p, v);
        if (p == NULL) {
            return NULL;
        }
    }

    return p;
}


static ngx_uint_t
ngx_http_events_json_action(ngx_str_t *s)
{
    ngx_uint_t  i;

    for (i = 1; i < sizeof(ngx_http_events_actions) / sizeof(ngx_str_t); i++)
    {
        if (s->len == ngx_http_events_actions[i].len
            && ngx_strncmp(s->data, ngx_http_events_actions[i].data, s->len)
               == 0)
        {
            return i;
        }
    }

    return 0;
}


/* an optional string field: absent or null is empty */

static ngx_int_t
ngx_http_events_json_string(ngx_http_events_envelope_t *env, json_t *v,
    const char *name, size_t max, ngx_uint_t kind, ngx_str_t *s,
    ngx_http_events_error_t *err)
{
    size_t  i;

    ngx_str_null(s);

    if (v == NULL || json_is_null(v)) {
        return NGX_OK;
    }

    if (!json_is_string(v)) {
        ngx_http_events_error(err, 400, "invalid_field", "field",
                              &env->prefix, name,
                              "\"%s\" must be a string", name);
        return NGX_ERROR;
    }

    s->data = (u_char *) json_string_value(v);
    s->len = json_string_length(v);

    if (s->len == 0 || s->len > max) {
        ngx_http_events_error(err, 400, "invalid_field", "field",
                              &env->prefix, name,
                              "\"%s\" must be 1-%uz characters", name, max);
        return NGX_ERROR;
    }

    for (i = 0; i < s->len; i++) {
        if (!(ngx_http_events_json_chars[s->data[i]] & kind)) {
            ngx_http_events_error(err, 400, "invalid_field", "field",
                                  &env->prefix, name,
                                  "\"%s\" has a character it may not "
                                  "have at offset %uz", name, i);
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static ngx_uint_t
ngx_http_events_json_text_char(u_char ch)
{
    return ch >= 0x20 && ch != 0x7f;
}


/* the length of the well-formed UTF-8 sequence at p, or 0 */

size_t
ngx_http_events_json_utf8_len(u_char *p, size_t len)
{
    size_t    i, n;
    uint32_t  cp, min;

    if (p[0] < 0x80) {
        return 1;
    }

    if ((p[0] & 0xe0) == 0xc0) {
        n = 1; cp = p[0] & 0x1f; min = 0x80;

    } else if ((p[0] & 0xf0) == 0xe0) {
        n = 2; cp = p[0] & 0x0f; min = 0x800;

    } else if ((p[0] & 0xf8) == 0xf0) {
        n = 3; cp = p[0] & 0x07; min = 0x10000;

    } else {
        return 0;
    }

    if (len - 1 < n) {
        return 0;
    }

    for (i = 1; i <= n; i++) {
        if ((p[i] & 0xc0) != 0x80) {
            return 0;
        }

        cp = (cp << 6) | (p[i] & 0x3f);
    }

    /* no overlong forms, no surrogates */
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
        return 0;
    }

    return n + 1;
}


static ngx_int_t
ngx_http_events_json_text_valid(u_char *p, size_t len, size_t max)
{
    size_t  i, n;

    if (len == 0 || len > max) {
        return NGX_ERROR;
    }

    for (i = 0; i < len; i += n) {
        n = ngx_http_events_json_utf8_len(p + i, len - i);

        if (n == 0 || (n == 1 && !ngx_http_events_json_text_char(p[i]))) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/* the same body is the same object, whatever the order of its keys */

static ngx_int_t
ngx_http_events_json_digest(json_t *obj, u_char *digest)
{
    char       *s;
    ngx_md5_t   md5;

    s = json_dumps(obj, JSON_SORT_KEYS | JSON_COMPACT);
    if (s == NULL) {
        return NGX_ERROR;
    }

    ngx_md5_init(&md5);
    ngx_md5_update(&md5, s, ngx_strlen(s));
    ngx_md5_final(digest, &md5);

    free(s);

    return NGX_OK;
}


static u_char *
ngx_http_events_json_str(u_char *p, ngx_str_t *s)
{
    if (s->len == 0) {
        return ngx_cpymem(p, "null", 4);
    }

    *p++ = '"';
    p = ngx_http_events_json_escape(p, s->data, s->len);
    *p++ = '"';

    return p;
}


/*
 * What escaping adds to a byte: 1 for " and \ and the control
 * characters with a short form (\n and friends), 5 for the other
 * control characters (\u00XX), 0 for the rest.  Strings are escaped
 * twice per event (its length, then its bytes), most bytes need
 * nothing: a lookup per byte, and runs copied at once.
 */

static const u_char  ngx_http_events_json_extra[256] = {
    5, 5, 5, 5, 5, 5, 5, 5, 1, 1, 1, 5, 1, 1, 5, 5,     /* \b \t \n \f \r */
    5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5,
    0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,     /* " */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0,     /* \ */
};


/*
 * Whether eight bytes hold one that escaping changes: a byte below
 * 0x20, a '"' or a '\\' (each test is exact for "is there one", even
 * where its borrow marks a later byte too)
 */

#define NGX_HTTP_EVENTS_JSON_ONES   0x0101010101010101ULL
#define NGX_HTTP_EVENTS_JSON_HIGHS  0x8080808080808080ULL

static ngx_inline ngx_uint_t
ngx_http_events_json_special8(u_char *s)
{
    uint64_t  w, q, b;

    ngx_memcpy(&w, s, 8);

    q = w ^ (NGX_HTTP_EVENTS_JSON_ONES * '"');
    b = w ^ (NGX_HTTP_EVENTS_JSON_ONES * '\\');

    return (((w - NGX_HTTP_EVENTS_JSON_ONES * 0x20) & ~w)
            | ((q - NGX_HTTP_EVENTS_JSON_ONES) & ~q)
            | ((b - NGX_HTTP_EVENTS_JSON_ONES) & ~b))
           & NGX_HTTP_EVENTS_JSON_HIGHS
           ? 1 : 0;
}


size_t
ngx_http_events_json_escape_len(u_char *s, size_t len)
{
    size_t  n, i, j;

    n = len;

    /* eight bytes at a time; a word with a byte to escape byte by byte */

    for (i = 0; len - i >= 8; i += 8) {
        if (!ngx_http_events_json_special8(s + i)) {
            continue;
        }

        for (j = i; j < i + 8; j++) {
            n += ngx_http_events_json_extra[s[j]];
        }
    }

    for ( /* void */ ; i < len; i++) {
        n += ngx_http_events_json_extra[s[i]];
    }

    return n;
}


u_char *
ngx_http_events_json_escape(u_char *p, u_char *s, size_t len)
{
    size_t             i, run;
    u_char             ch;
    static const char  hex[] = "0123456789abcdef";

    for (i = 0; i < len; i++) {

        /* the run to copy as it is: words, then the bytes to its end */

        for (run = i;
             len - i >= 8 && !ngx_http_events_json_special8(s + i);
             i += 8)
        {
            /* void */
        }

        for ( /* void */ ; i < len && ngx_http_events_json_extra[s[i]] == 0;
             i++)
        {
            /* void */
        }

        p = ngx_cpymem(p, s + run, i - run);

        if (i == len) {
            break;
        }

        ch = s[i];

        if (ch == '"' || ch == '\\') {
            *p++ = '\\';
            *p++ = ch;

        } else if (ch < 0x20) {
            *p++ = '\\';

            switch (ch) {
            case '\n': *p++ = 'n'; break;
            case '\r': *p++ = 'r'; break;
            case '\t': *p++ = 't'; break;
            case '\b': *p++ = 'b'; break;
            case '\f': *p++ = 'f'; break;
            default:
                *p++ = 'u';
                *p++ = '0';
                *p++ = '0';
                *p++ = hex[ch >> 4];
                *p++ = hex[ch & 0xf];
            }
        }
    }

    return p;
}


/* ngx_sprintf("%L") without its format parsing: numbers are written twice */

static u_char *
ngx_http_events_json_int(u_char *p, json_int_t i)
{
    u_char    *d, digits[NGX_INT64_LEN];
    uint64_t   n;

    /* the magnitude, INT64_MIN included */
    n = i < 0 ? (uint64_t) -(i + 1) + 1 : (uint64_t) i;

    d = digits + NGX_INT64_LEN;

    do {
        *--d = (u_char) ('0' + n % 10);
        n /= 10;
    } while (n);

    if (i < 0) {
        *p++ = '-';
    }

    return ngx_cpymem(p, d, digits + NGX_INT64_LEN - d);
}


/* the shortest decimal that reads back as the same double */

static size_t
ngx_http_events_json_real(double d, u_char *buf)
{
    int     n, prec;
    char    s[NGX_HTTP_EVENTS_REAL_LEN];
    double  back;

    n = 0;

    for (prec = 15; prec <= 17; prec++) {
        n = snprintf(s, NGX_HTTP_EVENTS_REAL_LEN, "%.*g", prec, d);
        back = strtod(s, NULL);

        if (back == d) {
            break;
        }
    }

    /* keep it a real: 1.0 stays 1.0 */
    if (strpbrk(s, ".eEni") == NULL && n + 2 < NGX_HTTP_EVENTS_REAL_LEN) {
        s[n++] = '.';
        s[n++] = '0';
    }

    /* the trials wrote into s: only the result, and no NUL, goes out */
    ngx_memcpy(buf, s, n);

    return n;
}


/*
 * ngx_http_events_json_write() into the envelope's scratch, which grows
 * as a value needs: each piece makes room for the most it can take
 * first.  NULL: out of memory.
 */

static u_char *
ngx_http_events_json_put(ngx_http_events_envelope_t *env, u_char *p,
    json_t *v)
{
    size_t       i, n;
    json_t      *item;
    const char  *key;

    switch (json_typeof(v)) {

    case JSON_OBJECT:
        p = ngx_http_events_json_room(env, p, 2);
        if (p == NULL) {
            return NULL;
        }

        *p++ = '{';
        i = 0;

        json_object_foreach(v, key, item) {
            p = ngx_http_events_json_put_key(env, p, key, i++);
            if (p == NULL) {
                return NULL;
            }

            p = ngx_http_events_json_put(env, p, item);
            if (p == NULL) {
                return NULL;
            }
        }

        p = ngx_http_events_json_room(env, p, 1);
        if (p == NULL) {
            return NULL;
        }

        *p++ = '}';
        return p;

    case JSON_ARRAY:
        p = ngx_http_events_json_room(env, p, 2);
        if (p == NULL) {
            return NULL;
        }

        *p++ = '[';
        n = json_array_size(v);

        for (i = 0; i < n; i++) {
            if (i) {
                p = ngx_http_events_json_room(env, p, 1);
                if (p == NULL) {
                    return NULL;
                }

                *p++ = ',';
            }

            p = ngx_http_events_json_put(env, p, json_array_get(v, i));
            if (p == NULL) {
                return NULL;
            }
        }

        p = ngx_http_events_json_room(env, p, 1);
        if (p == NULL) {
            return NULL;
        }

        *p++ = ']';
        return p;

    case JSON_STRING:
        n = json_string_length(v);

        p = ngx_http_events_json_room(env, p,
                   2 + ngx_http_events_json_escape_max(
                           (u_char *) json_string_value(v), n));
        if (p == NULL) {
            return NULL;
        }

        *p++ = '"';
        p = ngx_http_events_json_escape(p, (u_char *) json_string_value(v), n);
        *p++ = '"';
        return p;

    case JSON_INTEGER:
        p = ngx_http_events_json_room(env, p, NGX_INT64_LEN);
        if (p == NULL) {
            return NULL;
        }

        return ngx_http_events_json_int(p, json_integer_value(v));

    case JSON_REAL:
        p = ngx_http_events_json_room(env, p, NGX_HTTP_EVENTS_REAL_LEN);
        if (p == NULL) {
            return NULL;
        }

        return p + ngx_http_events_json_real(json_real_value(v), p);

    default:
        p = ngx_http_events_json_room(env, p, 5);
        if (p == NULL) {
            return NULL;
        }

        return ngx_http_events_json_write(p, v);
    }
}


/* "key": with a comma before it unless it is the object's first */

static u_char *
ngx_http_events_json_put_key(ngx_http_events_envelope_t *env, u_char *p,
    const char *key, ngx_uint_t comma)
{
    size_t  len;

    len = ngx_strlen(key);

    p = ngx_http_events_json_room(env, p,
               4 + ngx_http_events_json_escape_max((u_char *) key, len));
    if (p == NULL) {
        return NULL;
    }

    if (comma) {
        *p++ = ',';
    }

    *p++ = '"';
    p = ngx_http_events_json_escape(p, (u_char *) key, len);
    *p++ = '"';
    *p++ = ':';

    return p;
}


/*
 * At least need bytes free after p in the scratch, p moved with it if
 * it had to grow (doubled, in the pool: the old one goes back if large)
 */

static ngx_inline u_char *
ngx_http_events_json_room(ngx_http_events_envelope_t *env, u_char *p,
    size_t need)
{
    if (env->scratch && (size_t) (env->scratch_end - p) >= need) {
        return p;
    }

    return ngx_http_events_json_grow(env, p, need);
}


static u_char *
ngx_http_events_json_grow(ngx_http_events_envelope_t *env, u_char *p,
    size_t need)
{
    u_char  *n;
    size_t   size, used;

    used = env->scratch ? (size_t) (p - env->scratch) : 0;
    size = env->scratch ? (size_t) (env->scratch_end - env->scratch) * 2
                        : 1024;

    while (size < used + need) {
        if (size > NGX_MAX_SIZE_T_VALUE / 2) {
            return NULL;
        }

        size *= 2;
    }

    n = ngx_pnalloc(env->pool, size);
    if (n == NULL) {
        return NULL;
    }

    if (used) {
        ngx_memcpy(n, env->scratch, used);
    }

    if (env->scratch) {
        (void) ngx_pfree(env->pool, env->scratch);
    }

    env->scratch = n;
    env->scratch_end = n + size;

    return n + used;
}


/*
 * The most escaping can make of a string: 6 bytes a byte (\u00XX), or
 * for a long one its exact length, so that the scratch stays near the
 * size of what is written in it
 */

static size_t
ngx_http_events_json_escape_max(u_char *s, size_t len)
{
    return len <= 1024 ? 6 * len : ngx_http_events_json_escape_len(s, len);
}


size_t
ngx_http_events_json_size(json_t *v)
{
    u_char       buf[NGX_HTTP_EVENTS_REAL_LEN];
    size_t       len, i;
    json_t      *item;
    const char  *key;

    switch (json_typeof(v)) {

    case JSON_OBJECT:
        len = 2;

        /* "key":value, a comma after each but the last */
        json_object_foreach(v, key, item) {
            len += 4 + ngx_http_events_json_escape_len((u_char *) key,
                                                       ngx_strlen(key))
                   + ngx_http_events_json_size(item);
        }

        return len - (json_object_size(v) ? 1 : 0);

    case JSON_ARRAY:
        len = 2;

        for (i = 0; i < json_array_size(v); i++) {
            len += 1 + ngx_http_events_json_size(json_array_get(v, i));
        }

        return len - (json_array_size(v) ? 1 : 0);

    case JSON_STRING:
        return 2 + ngx_http_events_json_escape_len(
                       (u_char *) json_string_value(v),
                       json_string_length(v));

    case JSON_INTEGER:
        return ngx_http_events_json_int(buf, json_integer_value(v)) - buf;

    case JSON_REAL:
        return ngx_http_events_json_real(json_real_value(v), buf);

    case JSON_TRUE:
        return 4;

    case JSON_FALSE:
        return 5;

    default: /* JSON_NULL */
        return 4;
    }
}


u_char *
ngx_http_events_json_write(u_char *p, json_t *v)
{
    size_t       i;
    json_t      *item;
    const char  *key;

    switch (json_typeof(v)) {

    case JSON_OBJECT:
        *p++ = '{';
        i = 0;

        json_object_foreach(v, key, item) {
            if (i++) {
                *p++ = ',';
            }

            *p++ = '"';
            p = ngx_http_events_json_escape(p, (u_char *) key,
                                            ngx_strlen(key));
            *p++ = '"';
            *p++ = ':';
            p = ngx_http_events_json_write(p, item);
        }

        *p++ = '}';
        return p;

    case JSON_ARRAY:
        *p++ = '[';

        for (i = 0; i < json_array_size(v); i++) {
            if (i) {
                *p++ = ',';
            }

            p = ngx_http_events_json_write(p, json_array_get(v, i));
        }

        *p++ = ']';
        return p;

    case JSON_STRING:
        *p++ = '"';
        p = ngx_http_events_json_escape(p, (u_char *) json_string_value(v),
                                        json_string_length(v));
        *p++ = '"';
        return p;

    case JSON_INTEGER:
        return ngx_http_events_json_int(p, json_integer_value(v));

    case JSON_REAL:
        return p + ngx_http_events_json_real(json_real_value(v), p);

    case JSON_TRUE:
        return ngx_cpymem(p, "true", 4);

    case JSON_FALSE:
        return ngx_cpymem(p, "false", 5);

    default: /* JSON_NULL */
        return ngx_cpymem(p, "null", 4);
    }
}
