
/*
 * Copyright (C) ngx_http_events_module authors
 */


/*
 * libFuzzer target: the envelope validator and writer
 * (src/ngx_http_events_json.c).
 *
 * The input is a request body as POST /events gets it: jansson parses
 * it (rejecting duplicate keys, as the module does); an object is one
 * event, an array a batch.  Every event that the validator accepts must
 * give an envelope that, once the store has written its seq and
 * timestamp in at seq_at and ts_at, is an object that reads back with
 * the same id, type, tenant and the same payload and metadata values.
 *
 * Bytes after a first NUL (never part of a valid JSON text) choose the
 * request's side of the envelope: the first one the tenant (bit 0: none
 * configured), the rest the configured source, as it came from the
 * events_source value (which may be a variable the client sets).
 * Server-made ids come from a buffered per-process state in objects and
 * odd batch items, from RAND_bytes() in the others, as with and without
 * the module's per-worker state.
 *
 * The same bytes also go to ngx_http_events_time_parse(), checked
 * against a reference written here from its documented grammar.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <ctype.h>

#include <jansson.h>

#include "ngx_http_events_json.h"
#include "ngx_http_events_parse.h"
#include "ngx_http_events_cursor.h"
#include "ngx_http_events_id.h"
#include "ngx_http_events_match.h"
#include "ngx_http_events_cloudevents.h"

#include "fuzz_utf8.h"


#define FZ_TIMESTAMP   "2026-11-23T12:00:00.123Z"
#define FZ_MAX_BATCH   64


#define fz_check(cond, ...)                                                  \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fprintf(stderr, "fuzz_envelope: invariant failed: %s (%s:%d)\n", \
                    #cond, __FILE__, __LINE__);                              \
            fprintf(stderr, "  " __VA_ARGS__);                               \
            fprintf(stderr, "\n");                                           \
            abort();                                                         \
        }                                                                    \
    } while (0)


static void fz_time(const uint8_t *data, size_t size);
static ngx_int_t fz_ref_time(const u_char *p, size_t len, int64_t *ms);
static void fz_size_write(json_t *v);
static void fz_event(ngx_http_events_envelope_t *env, json_t *obj);
static void fz_check_envelope(ngx_http_events_envelope_t *env, json_t *obj,
    ngx_http_events_event_t *ev);
static ngx_uint_t fz_str_is(json_t *v, ngx_str_t *s);
static json_t *fz_get(json_t *obj, const char *key);
static size_t fz_payload_extra(json_t *sent, json_t *back);
static void fz_meta(json_t *meta, u_char *buf, size_t len);
static void fz_cloudevent(u_char *buf, size_t len, json_t *back);


static ngx_http_events_id_rng_t  fz_rng;


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t                       i, n, json_len;
    json_t                      *root;
    u_char                       prefix[16];
    const uint8_t               *nul;
    json_error_t                 jerr;
    ngx_http_events_envelope_t   env;

    fz_time(data, size);

    ngx_memzero(&env, sizeof(ngx_http_events_envelope_t));

    env.rng = &fz_rng;

    ngx_str_set(&env.tenant, "acme");
    ngx_str_set(&env.source, "web");

    json_len = size;
    nul = memchr(data, '\0', size);

    if (nul) {
        json_len = nul - data;

        if (json_len + 1 < size) {
            if (nul[1] & 1) {
                ngx_str_null(&env.tenant);
            }

            /* the configured source, as events_source's variable gave it */
            env.source.data = (u_char *) nul + 2;
            env.source.len = size - json_len - 2;
        }
    }

    env.pool = ngx_create_pool(4096, NULL);
    if (env.pool == NULL) {
        abort();
    }

    /* as POST /events parses: into the pool, the tree going with it */
    root = ngx_http_events_parse_json(env.pool, (u_char *) data,
                                          json_len, &jerr);
    if (root == NULL) {
        ngx_destroy_pool(env.pool);
        return 0;
    }

    if (json_is_array(root)) {
        n = ngx_min(json_array_size(root), FZ_MAX_BATCH);

        for (i = 0; i < n; i++) {
            env.prefix.data = prefix;
            env.prefix.len = ngx_sprintf(prefix, "[%uz].", i) - prefix;

            /* small limits in some items, to reach the 413 path */
            env.max_size = (i % 3 == 2) ? 256 + 64 * i : 1024 * 1024;
            env.rng = (i % 2) ? &fz_rng : NULL;

            fz_event(&env, json_array_get(root, i));
        }

    } else {
        env.max_size = 1024 * 1024;
        fz_event(&env, root);
    }

    /* after the events, so that a wrong size shows in the event path */
    fz_size_write(root);

    ngx_destroy_pool(env.pool);

    return 0;
}


/* the value writer: within json_size(), and the text reads back */

static void
fz_size_write(json_t *v)
{
    u_char        *buf, *end;
    size_t         size;
    json_t        *back;
    json_error_t   jerr;

    size = ngx_http_events_json_size(v);

    buf = malloc(size ? size : 1);
    if (buf == NULL) {
        abort();
    }

    end = ngx_http_events_json_write(buf, v);

    /*
     * At most what json_size() said: the buffer is exactly that long, so
     * ASan stops a longer write first.  json_size() may say more than is
     * written (it counts 6 bytes for a control character that has a
     * 2-byte escape such as \n), which costs room but is safe.
     */
    fz_check((size_t) (end - buf) <= size,
             "json_size() said %zu, json_write() wrote %zu",
             size, (size_t) (end - buf));

    size = end - buf;

    back = json_loadb((char *) buf, size,
                      JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);

    fz_check(back != NULL, "written value does not parse: %s: %.*s",
             jerr.text, (int) size, buf);
    fz_check(json_equal(back, v), "written value differs: %.*s",
             (int) size, buf);

    json_decref(back);
    free(buf);
}


static void
fz_event(ngx_http_events_envelope_t *env, json_t *obj)
{
    ngx_int_t                 rc;
    ngx_http_events_event_t   ev;
    ngx_http_events_error_t   err;

    ngx_memzero(&err, sizeof(ngx_http_events_error_t));

    rc = ngx_http_events_json_event(env, obj, &ev, &err);

    if (rc != NGX_OK) {
        fz_check(rc == NGX_ERROR, "rc %ld", (long) rc);
        fz_check(err.status == 400 || err.status == 403
                 || err.status == 413, "status %lu",
                 (unsigned long) err.status);
        fz_check(err.code != NULL, "no error code");
        fz_check(err.name_len <= sizeof(err.name), "name_len %zu",
                 err.name_len);
        fz_check(err.message_len <= sizeof(err.message), "message_len %zu",
                 err.message_len);

        /* both go out in a JSON error body */
        fz_check(fz_utf8_valid(err.name, err.name_len),
                 "error name not UTF-8: \"%.*s\"", (int) err.name_len,
                 err.name);
        fz_check(fz_utf8_valid(err.message, err.message_len),
                 "error message not UTF-8: \"%.*s\"", (int) err.message_len,
                 err.message);
        return;
    }

    fz_check_envelope(env, obj, &ev);
}


static void
fz_check_envelope(ngx_http_events_envelope_t *env, json_t *obj,
    ngx_http_events_event_t *ev)
{
    u_char        *buf, *p;
    size_t         len, ts_len;
    json_t        *back, *v, *payload, *orig, *opay;
    ngx_str_t      s;
    json_error_t   jerr;

    static ngx_str_t  actions[] = {
        ngx_null_string,
        ngx_string("created"),
        ngx_string("updated"),
        ngx_string("deleted"),
        ngx_string("occurred")
    };

    fz_check(ev->json != NULL, "no json");
    fz_check(ev->seq_at <= ev->ts_at && ev->ts_at <= ev->json_len,
             "seq_at %zu ts_at %zu json_len %zu",
             ev->seq_at, ev->ts_at, ev->json_len);
    fz_check(ev->json_len + NGX_INT64_LEN + NGX_HTTP_EVENTS_TIMESTAMP_LEN
             <= env->max_size, "json_len %zu over max_size %zu",
             ev->json_len, env->max_size);

    fz_check(ngx_http_events_match_type_valid(ev->type.data, ev->type.len)
             == NGX_OK, "type \"%.*s\" not valid",
             (int) ev->type.len, ev->type.data);
    fz_check(ngx_http_events_id_valid(ev->id.data, ev->id.len) == NGX_OK,
             "id \"%.*s\" not valid", (int) ev->id.len, ev->id.data);
    fz_check(ev->action >= 1 && ev->action <= 4, "action %lu",
             (unsigned long) ev->action);

    /* what the store does: seq and timestamp written in */

    ts_len = sizeof(FZ_TIMESTAMP) - 1;
    len = ev->json_len + 1 + ts_len;

    buf = malloc(len);
    if (buf == NULL) {
        abort();
    }

    p = ngx_cpymem(buf, ev->json, ev->seq_at);
    *p++ = '1';
    p = ngx_cpymem(p, ev->json + ev->seq_at, ev->ts_at - ev->seq_at);
    p = ngx_cpymem(p, FZ_TIMESTAMP, ts_len);
    p = ngx_cpymem(p, ev->json + ev->ts_at, ev->json_len - ev->ts_at);

    /* "\u0000" is valid JSON, and a configured source may hold one */
    back = json_loadb((char *) buf, len,
                      JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);

    fz_check(back != NULL, "envelope does not parse: %s at %d: %.*s",
             jerr.text, jerr.position, (int) len, buf);
    fz_check(json_is_object(back), "envelope not an object: %.*s",
             (int) len, buf);
    fz_check(json_object_size(back) == 12, "%zu keys: %.*s",
             json_object_size(back), (int) len, buf);

    fz_check(fz_str_is(fz_get(back, "type"), &ev->type),
             "type differs: %.*s", (int) len, buf);
    fz_check(fz_str_is(fz_get(back, "id"), &ev->id),
             "id differs: %.*s", (int) len, buf);

    v = fz_get(back, "seq");
    fz_check(json_is_integer(v) && json_integer_value(v) == 1,
             "seq: %.*s", (int) len, buf);

    s.data = (u_char *) FZ_TIMESTAMP;
    s.len = ts_len;
    fz_check(fz_str_is(fz_get(back, "timestamp"), &s),
             "timestamp: %.*s", (int) len, buf);

    /* the tenant is the request's; none is null */

    v = fz_get(back, "tenantId");
    fz_check(env->tenant.len ? fz_str_is(v, &env->tenant) : json_is_null(v),
             "tenantId: %.*s", (int) len, buf);

    /* the source: the body's, else the configured one, else null */

    v = fz_get(back, "source");
    orig = json_object_get(obj, "source");

    if (json_is_string(orig)) {
        fz_check(json_equal(v, orig), "source: %.*s", (int) len, buf);

    } else if (env->source.len) {
        fz_check(fz_str_is(v, &env->source), "source: %.*s", (int) len, buf);

    } else {
        fz_check(json_is_null(v), "source: %.*s", (int) len, buf);
    }

    fz_check(fz_str_is(fz_get(back, "resourceType"), &ev->rtype),
             "resourceType: %.*s", (int) len, buf);

    v = fz_get(back, "resourceId");
    fz_check(ev->rid.len ? fz_str_is(v, &ev->rid) : json_is_null(v),
             "resourceId: %.*s", (int) len, buf);

    v = fz_get(back, "projectId");
    orig = json_object_get(obj, "projectId");
    fz_check(json_is_string(orig) ? json_equal(v, orig) : json_is_null(v),
             "projectId: %.*s", (int) len, buf);

    v = fz_get(back, "occurredAt");
    orig = json_object_get(obj, "occurredAt");
    fz_check(json_is_string(orig) ? json_equal(v, orig) : json_is_null(v),
             "occurredAt: %.*s", (int) len, buf);

    /* the payload: the action, and data and changes as sent */

    payload = fz_get(back, "payload");
    opay = json_object_get(obj, "payload");
    fz_check(json_is_object(payload)
             && json_object_size(payload)
                == 3 + fz_payload_extra(opay, payload),
             "payload: %.*s", (int) len, buf);

    fz_check(fz_str_is(json_object_get(payload, "action"),
                       &actions[ev->action]),
             "payload.action: %.*s", (int) len, buf);

    orig = json_is_object(opay) ? json_object_get(opay, "data") : NULL;
    v = json_object_get(payload, "data");
    fz_check(v != NULL && (orig ? json_equal(v, orig) : json_is_null(v)),
             "payload.data: %.*s", (int) len, buf);

    orig = json_is_object(opay) ? json_object_get(opay, "changes") : NULL;
    v = json_object_get(payload, "changes");
    fz_check(v != NULL && (orig ? json_equal(v, orig) : json_is_null(v)),
             "payload.changes: %.*s", (int) len, buf);

    orig = json_object_get(obj, "metadata");
    v = fz_get(back, "metadata");
    fz_check(orig ? json_equal(v, orig) : json_is_null(v),
             "metadata: %.*s", (int) len, buf);

    fz_meta(orig, buf, len);
    fz_cloudevent(buf, len, back);

    json_decref(back);
    free(buf);
}


/*
 * The envelope as a structured CloudEvent (ngx_http_events_cloudevents.c):
 * the head fits its bound, the whole parses, id, type and subject are the
 * envelope's, data is the envelope, and source is a URI-reference that
 * percent-decodes to the envelope's source.
 */

static void
fz_cloudevent(u_char *buf, size_t len, json_t *back)
{
    u_char                *ce_buf, *p, *d, *dec;
    char                   hex[3];
    size_t                 n;
    json_t                *ce, *v, *src;
    ngx_str_t              env;
    json_error_t           jerr;
    ngx_http_events_ce_t   attrs;

    env.data = buf;
    env.len = len;

    fz_check(ngx_http_events_ce_parse(&env, &attrs) == NGX_OK,
             "ce_parse refused: %.*s", (int) len, buf);

    ce_buf = malloc(NGX_HTTP_EVENTS_CE_HEAD + len + 1);
    if (ce_buf == NULL) {
        abort();
    }

    p = ngx_http_events_ce_head(ce_buf, &attrs);
    fz_check((size_t) (p - ce_buf) <= NGX_HTTP_EVENTS_CE_HEAD,
             "ce head of %zu bytes", (size_t) (p - ce_buf));
    p = ngx_cpymem(p, buf, len);
    *p++ = '}';

    ce = json_loadb((char *) ce_buf, p - ce_buf,
                    JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
    fz_check(ce != NULL && json_is_object(ce), "cloudevent does not parse: "
             "%s: %.*s", jerr.text, (int) (p - ce_buf), ce_buf);

    fz_check(json_equal(json_object_get(ce, "id"), fz_get(back, "id")),
             "ce id: %.*s", (int) (p - ce_buf), ce_buf);
    fz_check(json_equal(json_object_get(ce, "type"), fz_get(back, "type")),
             "ce type: %.*s", (int) (p - ce_buf), ce_buf);
    fz_check(json_equal(json_object_get(ce, "data"), back),
             "ce data: %.*s", (int) (p - ce_buf), ce_buf);

    v = json_object_get(ce, "subject");
    src = fz_get(back, "resourceId");
    fz_check(json_is_null(src) ? v == NULL : json_equal(v, src),
             "ce subject: %.*s", (int) (p - ce_buf), ce_buf);

    /* source: only URI characters, and it decodes to the envelope's */
    v = json_object_get(ce, "source");
    src = fz_get(back, "source");
    fz_check(json_is_string(v), "ce source: %.*s", (int) (p - ce_buf),
             ce_buf);

    d = (u_char *) json_string_value(v);
    n = json_string_length(v);
    dec = malloc(n + 1);
    if (dec == NULL) {
        abort();
    }

    p = dec;

    while (n) {
        fz_check(*d > 0x20 && *d < 0x7f && *d != '"' && *d != '\\'
                 && *d != '<' && *d != '>' && *d != '#' && *d != '['
                 && *d != ']' && *d != '^' && *d != '`' && *d != '{'
                 && *d != '|' && *d != '}', "ce source byte %02x", *d);

        if (*d == '%') {
            fz_check(n >= 3 && isxdigit(d[1]) && isxdigit(d[2]),
                     "ce source: a bad escape");
            hex[0] = d[1];
            hex[1] = d[2];
            hex[2] = '\0';
            *p++ = (u_char) strtol(hex, NULL, 16);
            d += 3;
            n -= 3;
            continue;
        }

        *p++ = *d++;
        n--;
    }

    if (json_is_string(src)) {
        fz_check((size_t) (p - dec) == json_string_length(src)
                 && ngx_memcmp(dec, json_string_value(src), p - dec) == 0,
                 "ce source does not decode to the envelope's");

    } else {
        fz_check(p - dec == 7 && ngx_memcmp(dec, "/events", 7) == 0,
                 "ce source of a null one");
    }

    free(dec);
    json_decref(ce);
    free(ce_buf);
}


static ngx_uint_t
fz_str_is(json_t *v, ngx_str_t *s)
{
    return json_is_string(v)
           && json_string_length(v) == s->len
           && (s->len == 0
               || memcmp(json_string_value(v), s->data, s->len) == 0);
}


/*
 * The payload's keys other than action, data and changes: each must
 * come back equal, and after those three, in the order sent.
 */

static size_t
fz_payload_extra(json_t *sent, json_t *back)
{
    size_t       n, i;
    json_t      *v;
    const char  *key, *bkey;
    void        *it;

    if (!json_is_object(sent)) {
        return 0;
    }

    n = 0;
    it = json_object_iter(back);

    for (i = 0; i < 3 && it; i++) {
        it = json_object_iter_next(back, it);
    }

    json_object_foreach(sent, key, v) {
        if (strcmp(key, "action") == 0 || strcmp(key, "data") == 0
            || strcmp(key, "changes") == 0)
        {
            continue;
        }

        fz_check(it != NULL, "payload.%s missing", key);

        bkey = json_object_iter_key(it);
        fz_check(strcmp(bkey, key) == 0 && json_equal(v,
                                              json_object_iter_value(it)),
                 "payload.%s not kept as sent", key);

        it = json_object_iter_next(back, it);
        n++;
    }

    return n;
}


/*
 * ?metadata.KEY=VALUE as the query parser makes it (the value escaped
 * by the envelope's writer) finds each string value of the event's
 * metadata in the stored envelope, and a changed value does not
 */

static void
fz_meta(json_t *meta, u_char *buf, size_t len)
{
    u_char                         *esc;
    size_t                          vlen;
    json_t                         *v;
    const char                     *key;
    ngx_http_events_meta_filter_t   f;

    if (!json_is_object(meta)) {
        return;
    }

    json_object_foreach(meta, key, v) {
        if (!json_is_string(v)
            || ngx_http_events_match_meta_key_valid((u_char *) key,
                                                    strlen(key))
               != NGX_OK)
        {
            continue;
        }

        vlen = json_string_length(v);
        esc = malloc(vlen * 6 + 2);
        if (esc == NULL) {
            abort();
        }

        f.key.data = (u_char *) key;
        f.key.len = strlen(key);
        f.value.data = esc;
        f.value.len = ngx_http_events_json_escape(esc,
                          (u_char *) json_string_value(v), vlen) - esc;

        fz_check(ngx_http_events_match_metadata(&f, 1, buf, len),
                 "metadata.%s not found: %.*s", key, (int) len, buf);

        esc[f.value.len] = 'X';
        f.value.len++;

        fz_check(!ngx_http_events_match_metadata(&f, 1, buf, len),
                 "metadata.%s matches another value: %.*s", key,
                 (int) len, buf);

        free(esc);
    }
}


static json_t *
fz_get(json_t *obj, const char *key)
{
    json_t  *v;

    v = json_object_get(obj, key);

    fz_check(v != NULL, "the envelope has no \"%s\"", key);

    return v;
}


/* parse_time: the same answer as the reference, and ms or not alike */

static void
fz_time(const uint8_t *data, size_t size)
{
    u_char     *p;
    int64_t     ms, ref;
    ngx_int_t   rc, rc_null, rc_ref;

    /* a copy of exactly the length, so that over-reads show */
    p = malloc(size ? size : 1);
    if (p == NULL) {
        abort();
    }

    ngx_memcpy(p, data, size);

    ms = 0;
    rc = ngx_http_events_time_parse(p, size, &ms);
    rc_null = ngx_http_events_time_parse(p, size, NULL);
    rc_ref = fz_ref_time(p, size, &ref);

    fz_check(rc == rc_null, "with and without ms differ: \"%.*s\"",
             (int) size, p);
    fz_check(rc == rc_ref, "parse_time %ld, reference %ld: \"%.*s\"",
             (long) rc, (long) rc_ref, (int) size, p);

    if (rc == NGX_OK) {
        fz_check(ms == ref, "parse_time %lld ms, reference %lld ms: "
                 "\"%.*s\"", (long long) ms, (long long) ref,
                 (int) size, p);
    }

    free(p);
}


static int
fz_digits(const u_char *p, size_t n)
{
    int  v;

    v = 0;

    while (n--) {
        if (*p < '0' || *p > '9') {
            return -1;
        }

        v = v * 10 + (*p++ - '0');
    }

    return v;
}


/*
 * YYYY-MM-DD, or YYYY-MM-DD(T|t| )hh:mm:ss[.d+](Z|z|(+|-)hh:mm);
 * year >= 1970, fields in range (a day that exists in its month: timegm()
 * leaves it as it was, a second up to 60); a fraction counts to the
 * millisecond.  timegm() does the calendar.
 */

static ngx_int_t
fz_ref_time(const u_char *p, size_t len, int64_t *ms)
{
    int            year, month, day, hour, min, sec, zh, zm, zone;
    size_t         i;
    int64_t        frac, scale;
    struct tm      tm;

    if (len < 10 || p[4] != '-' || p[7] != '-') {
        return NGX_ERROR;
    }

    year = fz_digits(p, 4);
    month = fz_digits(p + 5, 2);
    day = fz_digits(p + 8, 2);

    if (year < 1970 || month < 1 || month > 12 || day < 1 || day > 31) {
        return NGX_ERROR;
    }

    hour = min = sec = zone = 0;
    frac = 0;

    if (len > 10) {
        if (len < 20 || (p[10] != 'T' && p[10] != 't' && p[10] != ' ')
            || p[13] != ':' || p[16] != ':')
        {
            return NGX_ERROR;
        }

        hour = fz_digits(p + 11, 2);
        min = fz_digits(p + 14, 2);
        sec = fz_digits(p + 17, 2);

        if (hour < 0 || hour > 23 || min < 0 || min > 59
            || sec < 0 || sec > 60)
        {
            return NGX_ERROR;
        }

        i = 19;

        if (p[i] == '.') {
            i++;
            scale = 100;

            if (i == len || p[i] < '0' || p[i] > '9') {
                return NGX_ERROR;
            }

            while (i < len && p[i] >= '0' && p[i] <= '9') {
                frac += (p[i] - '0') * scale;
                scale /= 10;
                i++;
            }
        }

        if (i == len) {
            return NGX_ERROR;
        }

        if ((p[i] == 'Z' || p[i] == 'z') && i + 1 == len) {
            zone = 0;

        } else if ((p[i] == '+' || p[i] == '-') && i + 6 == len
                   && p[i + 3] == ':')
        {
            zh = fz_digits(p + i + 1, 2);
            zm = fz_digits(p + i + 4, 2);

            if (zh < 0 || zh > 23 || zm < 0 || zm > 59) {
                return NGX_ERROR;
            }

            zone = (zh * 60 + zm) * (p[i] == '-' ? -1 : 1);

        } else {
            return NGX_ERROR;
        }
    }

    ngx_memzero(&tm, sizeof(struct tm));
    tm.tm_year = year - 1900;
    tm.tm_mon = month - 1;
    tm.tm_mday = day;

    /* timegm() rolls 02-30 over into March: a day that does not exist */
    (void) timegm(&tm);

    if (tm.tm_mday != day || tm.tm_mon != month - 1) {
        return NGX_ERROR;
    }

    tm.tm_hour = hour;
    tm.tm_min = min;
    tm.tm_sec = sec;

    *ms = ((int64_t) timegm(&tm) - (int64_t) zone * 60) * 1000 + frac;

    /* before 1970 in UTC is refused: the store has no such times */
    if ((int64_t) timegm(&tm) - (int64_t) zone * 60 < 0) {
        return NGX_ERROR;
    }

    return NGX_OK;
}
