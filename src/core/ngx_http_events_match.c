
/*
 * Copyright (C) ngx_http_events_module authors
 */


/*
 * Event types are dot-separated segments of [a-z0-9_].  A pattern is
 * an exact type, "*" (everything), "*" as a whole inner segment (exactly
 * one segment), or a trailing ".*" or ".**" (any non-empty rest).
 *
 * Metadata filters are matched on the stored envelope's bytes, not on
 * a parsed copy: the envelope is our writer's output (metadata its
 * last key, strings escaped one way), so a walk over its top-level keys
 * finds the metadata object, and a filter escaped the same way compares
 * with memcmp.  The walk is bounded by the length it is given and
 * safe on any bytes, so it may read a ring record that a writer is
 * overwriting; the caller checks the record afterwards.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_events_match.h"
#include "ngx_http_events_store.h"


static u_char *ngx_http_events_match_skip(u_char *p, u_char *end);
static u_char *ngx_http_events_match_string(u_char *p, u_char *end);
static u_char *ngx_http_events_match_key(u_char *p, u_char *end,
    ngx_str_t *key);
static u_char *ngx_http_events_match_meta_object(u_char *p, u_char *end);
static ngx_int_t ngx_http_events_match_meta_keys(u_char *p, u_char *end,
    ngx_str_t *name, ngx_str_t *value);
static u_char *ngx_http_events_match_meta_next(u_char *p, u_char *end,
    ngx_str_t *key, ngx_str_t *value);


static ngx_inline ngx_uint_t
ngx_http_events_match_seg_char(u_char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_';
}


ngx_int_t
ngx_http_events_match_type_valid(u_char *p, size_t len)
{
    size_t  i, seg;

    if (len == 0 || len > NGX_HTTP_EVENTS_MAX_TYPE) {
        return NGX_ERROR;
    }

    seg = 0;

    for (i = 0; i < len; i++) {
        if (p[i] == '.') {
            if (seg == 0) {
                return NGX_ERROR;
            }

            seg = 0;
            continue;
        }

        if (!ngx_http_events_match_seg_char(p[i])) {
            return NGX_ERROR;
        }

        seg++;
    }

    return seg ? NGX_OK : NGX_ERROR;
}


/* tenants are 1-64 of [A-Za-z0-9_.:-], or empty for the default one */

ngx_int_t
ngx_http_events_match_tenant_valid(ngx_str_t *tenant)
{
    size_t  i;
    u_char  ch;

    if (tenant->len > NGX_HTTP_EVENTS_MAX_TENANT) {
        return NGX_ERROR;
    }

    for (i = 0; i < tenant->len; i++) {
        ch = tenant->data[i];

        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z')
              || (ch >= '0' && ch <= '9') || ch == '_' || ch == '-'
              || ch == '.' || ch == ':'))
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


ngx_int_t
ngx_http_events_match_pattern_valid(u_char *p, size_t len)
{
    size_t  i, start;

    if (len == 0 || len > NGX_HTTP_EVENTS_MAX_TYPE) {
        return NGX_ERROR;
    }

    start = 0;

    for (i = 0; i <= len; i++) {
        if (i < len && p[i] != '.') {
            continue;
        }

        /* the segment p[start .. i) */

        if (i == start) {
            return NGX_ERROR;
        }

        if (i - start == 2 && p[start] == '*' && p[start + 1] == '*') {
            if (i != len) {
                return NGX_ERROR;
            }

        } else if (!(i - start == 1 && p[start] == '*')) {
            while (start < i) {
                if (!ngx_http_events_match_seg_char(p[start++])) {
                    return NGX_ERROR;
                }
            }
        }

        start = i + 1;
    }

    return NGX_OK;
}


ngx_uint_t
ngx_http_events_match(ngx_str_t *pattern, ngx_str_t *type)
{
    u_char  *p, *pend, *pseg, *t, *tend, *tseg;
    size_t   plen, tlen;

    p = pattern->data;
    pend = p + pattern->len;
    t = type->data;
    tend = t + type->len;

    if ((pattern->len == 1 && p[0] == '*')
        || (pattern->len == 2 && p[0] == '*' && p[1] == '*'))
    {
        return 1;
    }

    while (p < pend) {
        pseg = p;
        while (p < pend && *p != '.') {
            p++;
        }
        plen = p - pseg;

        if (p == pend && pseg != pattern->data
            && (plen == 1 || plen == 2) && pseg[0] == '*'
            && pseg[plen - 1] == '*')
        {
            /* a trailing wildcard: any non-empty rest */
            return t < tend;
        }

        if (t >= tend) {
            return 0;
        }

        tseg = t;
        while (t < tend && *t != '.') {
            t++;
        }
        tlen = t - tseg;

        if (!(plen == 1 && pseg[0] == '*')
            && (plen != tlen || ngx_memcmp(pseg, tseg, plen) != 0))
        {
            return 0;
        }

        /* step over the dots; a type never ends with one */
        if (p < pend) {
            p++;
        }

        if (t < tend) {
            t++;
        }
    }

    return t >= tend;
}


ngx_uint_t
ngx_http_events_match_any(ngx_str_t *patterns, ngx_uint_t n, ngx_str_t *type)
{
    ngx_uint_t  i;

    for (i = 0; i < n; i++) {
        if (ngx_http_events_match(&patterns[i], type)) {
            return 1;
        }
    }

    return 0;
}


/* a pattern's segments, and where its trailing wildcard is, if any */

typedef struct {
    ngx_str_t                   seg[NGX_HTTP_EVENTS_MAX_TYPE / 2 + 1];
    ngx_uint_t                  n;
    ngx_uint_t                  all;
    ngx_uint_t                  rest;           /* ends with .* or .** */
} ngx_http_events_segs_t;


static void
ngx_http_events_match_split(ngx_str_t *p, ngx_http_events_segs_t *s)
{
    u_char  *c, *end, *start;
    size_t   len;

    s->n = 0;
    c = p->data;
    end = c + p->len;

    for (start = c; c <= end; c++) {
        if (c < end && *c != '.') {
            continue;
        }

        s->seg[s->n].data = start;
        s->seg[s->n].len = c - start;
        s->n++;
        start = c + 1;
    }

    len = s->seg[s->n - 1].len;

    s->rest = s->n > 1 && (len == 1 || len == 2)
              && s->seg[s->n - 1].data[0] == '*';
    s->all = s->n == 1 && (len == 1 || len == 2) && s->seg[0].data[0] == '*';
}


/*
 * Whether every type that "small" matches, "big" matches too: what a
 * grant must be of a filter for the filter to stay as it is.
 */

ngx_uint_t
ngx_http_events_match_pattern_covers(ngx_str_t *big, ngx_str_t *small)
{
    ngx_uint_t              i;
    ngx_http_events_segs_t  b, a;

    ngx_http_events_match_split(big, &b);

    if (b.all) {
        return 1;
    }

    ngx_http_events_match_split(small, &a);

    if (a.all) {
        return 0;
    }

    for (i = 0; /* void */; i++) {

        if (b.rest && i == b.n - 1) {
            return i < a.n;
        }

        if (a.rest && i == a.n - 1) {
            return 0;
        }

        if (i == a.n || i == b.n) {
            return i == a.n && i == b.n;
        }

        if (b.seg[i].len == 1 && b.seg[i].data[0] == '*') {
            continue;
        }

        if (a.seg[i].len == 1 && a.seg[i].data[0] == '*') {
            return 0;
        }

        if (a.seg[i].len != b.seg[i].len
            || ngx_memcmp(a.seg[i].data, b.seg[i].data, a.seg[i].len) != 0)
        {
            return 0;
        }
    }
}


/* metadata keys a filter may name: 1-64 of [A-Za-z0-9_.:-] */

ngx_int_t
ngx_http_events_match_meta_key_valid(u_char *p, size_t len)
{
    size_t  i;
    u_char  ch;

    if (len == 0 || len > NGX_HTTP_EVENTS_MAX_META_KEY) {
        return NGX_ERROR;
    }

    for (i = 0; i < len; i++) {
        ch = p[i];

        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z')
            || (ch >= '0' && ch <= '9') || ch == '_' || ch == '.'
            || ch == ':' || ch == '-')
        {
            continue;
        }

        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * Every filter must find its key at the top of the envelope's metadata
 * object with that value: a string equal to it, or a number, true or
 * false written as it ("values as strings").  Objects, arrays and null
 * never match.
 */

ngx_uint_t
ngx_http_events_match_metadata(ngx_http_events_meta_filter_t *filters,
    ngx_uint_t n, u_char *json, size_t len)
{
    u_char      *p, *end;
    uint32_t     found;
    ngx_str_t    key, value;
    ngx_uint_t   i;

    if (n == 0) {
        return 1;
    }

    end = json + len;

    p = ngx_http_events_match_meta_object(json, end);
    if (p == NULL) {
        return 0;
    }

    found = 0;

    while ((p = ngx_http_events_match_meta_next(p, end, &key, &value))) {

        for (i = 0; i < n; i++) {
            if (filters[i].key.len == key.len
                && ngx_memcmp(filters[i].key.data, key.data, key.len) == 0)
            {
                if (filters[i].value.len != value.len
                    || ngx_memcmp(filters[i].value.data, value.data,
                                  value.len)
                       != 0)
                {
                    return 0;
                }

                found |= 1 << i;
            }
        }
    }

    return found == (uint32_t) ((1 << n) - 1);
}


/*
 * The value of one top-level metadata key, as a filter compares it (a
 * string's escaped bytes, a scalar's text): what the store's index of
 * the actor hashes.  NGX_DECLINED: no such key, or not a scalar.
 */

ngx_int_t
ngx_http_events_match_meta_value(u_char *json, size_t len, ngx_str_t *name,
    ngx_str_t *value)
{
    u_char  *p, *end;

    end = json + len;

    p = ngx_http_events_match_meta_object(json, end);
    if (p == NULL) {
        return NGX_DECLINED;
    }

    return ngx_http_events_match_meta_keys(p, end, name, value);
}


/*
 * The same from the envelope's metadata value at p ("{" or null), for
 * a writer that knows where it put it: no walk over the payload.
 */

ngx_int_t
ngx_http_events_match_meta_in(u_char *p, u_char *end, ngx_str_t *name,
    ngx_str_t *value)
{
    if (p == end || *p++ != '{') {
        return NGX_DECLINED;        /* null: no metadata */
    }

    return ngx_http_events_match_meta_keys(p, end, name, value);
}


/* the keys of the metadata object from past its "{" */

static ngx_int_t
ngx_http_events_match_meta_keys(u_char *p, u_char *end, ngx_str_t *name,
    ngx_str_t *value)
{
    ngx_str_t  key;

    while ((p = ngx_http_events_match_meta_next(p, end, &key, value))) {
        if (key.len == name->len
            && ngx_memcmp(key.data, name->data, key.len) == 0)
        {
            return value->len == (size_t) -1 ? NGX_DECLINED : NGX_OK;
        }
    }

    return NGX_DECLINED;
}


/* past the "{" of the envelope's metadata object, or NULL */

static u_char *
ngx_http_events_match_meta_object(u_char *p, u_char *end)
{
    ngx_str_t  key;

    if (p == end || *p++ != '{') {
        return NULL;
    }

    /* the envelope's keys, up to "metadata" */

    for ( ;; ) {
        p = ngx_http_events_match_key(p, end, &key);
        if (p == NULL) {
            return NULL;
        }

        if (key.len == sizeof("metadata") - 1
            && ngx_strncmp(key.data, "metadata", key.len) == 0)
        {
            break;
        }

        p = ngx_http_events_match_skip(p, end);
        if (p == NULL || p == end || *p++ != ',') {
            return NULL;
        }
    }

    if (p == end || *p++ != '{') {
        return NULL;        /* null: no metadata */
    }

    return p;
}


/*
 * The next key of the metadata object at p and its value: a string's
 * bytes inside its quotes, a scalar's text, or length -1 for an object,
 * an array or null; NULL at the object's end
 */

static u_char *
ngx_http_events_match_meta_next(u_char *p, u_char *end, ngx_str_t *key,
    ngx_str_t *value)
{
    u_char  *v, *next;

    if (p >= end || *p == '}') {
        return NULL;
    }

    p = ngx_http_events_match_key(p, end, key);
    if (p == NULL) {
        return NULL;
    }

    v = p;
    next = ngx_http_events_match_skip(p, end);
    if (next == NULL) {
        return NULL;
    }

    value->data = v;
    value->len = next - v;

    if (value->len && *v == '"') {
        value->data++;
        value->len -= 2;

    } else if (value->len == 0 || *v == '{' || *v == '[' || *v == 'n') {
        value->len = (size_t) -1;
    }

    if (next < end && *next == ',') {
        next++;
    }

    return next;
}


/* "key": at p; its bytes (still escaped) in *key, p after the colon */

static u_char *
ngx_http_events_match_key(u_char *p, u_char *end, ngx_str_t *key)
{
    u_char  *q;

    if (p == end || *p != '"') {
        return NULL;
    }

    q = ngx_http_events_match_string(p, end);
    if (q == NULL || q == end || *q != ':') {
        return NULL;
    }

    key->data = p + 1;
    key->len = q - p - 2;

    return q + 1;
}


/* past the string that starts at p */

static u_char *
ngx_http_events_match_string(u_char *p, u_char *end)
{
    u_char  *q, *b;

    /*
     * From quote to quote with memchr(): payloads are mostly long
     * strings.  A quote after an odd run of backslashes is escaped; the
     * run cannot reach back past p, which follows the string's start or
     * a quote.
     */

    for (p++; p < end; p = q + 1) {
        q = memchr(p, '"', end - p);
        if (q == NULL) {
            return NULL;
        }

        for (b = q; b > p && b[-1] == '\\'; b--) { /* void */ }

        if (((q - b) & 1) == 0) {
            return q + 1;
        }
    }

    return NULL;
}


/* past the compact JSON value at p (our writer's: no white space) */

static u_char *
ngx_http_events_match_skip(u_char *p, u_char *end)
{
    ngx_uint_t  depth;

    depth = 0;

    while (p < end) {
        switch (*p) {

        case '"':
            p = ngx_http_events_match_string(p, end);
            if (p == NULL) {
                return NULL;
            }

            break;

        case '{':
        case '[':
            depth++;
            p++;
            break;

        case '}':
        case ']':
            if (depth == 0) {
                return p;
            }

            depth--;
            p++;
            break;

        case ',':
            if (depth == 0) {
                return p;
            }

            p++;
            break;

        default:
            p++;
        }

        if (depth == 0 && p < end && (*p == ',' || *p == '}' || *p == ']'))
        {
            return p;
        }
    }

    return depth ? NULL : p;
}
