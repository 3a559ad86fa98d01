
/*
 * Copyright (C) ngx_http_events_module authors
 */


/*
 * The list filters of GET /events, from the query string.  Every
 * parameter is known, given once, and checked; what is wrong is named.
 * "metadata.KEY" is a family: one parameter per key, each key once.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_events_query.h"
#include "ngx_http_events_cursor.h"
#include "ngx_http_events_match.h"
#include "ngx_http_events_json.h"


typedef ngx_int_t (*ngx_http_events_param_pt)(ngx_http_events_query_t *q,
    ngx_str_t *value, ngx_pool_t *pool, ngx_http_events_error_t *err);


typedef struct {
    ngx_str_t                   name;
    ngx_http_events_param_pt    handler;
    ngx_uint_t                  modes;
} ngx_http_events_param_t;


static ngx_int_t ngx_http_events_query_param_types(ngx_http_events_query_t *q,
    ngx_str_t *value, ngx_pool_t *pool, ngx_http_events_error_t *err);
static ngx_int_t ngx_http_events_query_param_rtype(ngx_http_events_query_t *q,
    ngx_str_t *value, ngx_pool_t *pool, ngx_http_events_error_t *err);
static ngx_int_t ngx_http_events_query_param_rid(ngx_http_events_query_t *q,
    ngx_str_t *value, ngx_pool_t *pool, ngx_http_events_error_t *err);
static ngx_int_t ngx_http_events_query_param_action(ngx_http_events_query_t *q,
    ngx_str_t *value, ngx_pool_t *pool, ngx_http_events_error_t *err);
static ngx_int_t ngx_http_events_query_param_source(ngx_http_events_query_t *q,
    ngx_str_t *value, ngx_pool_t *pool, ngx_http_events_error_t *err);
static ngx_int_t ngx_http_events_query_param_since(ngx_http_events_query_t *q,
    ngx_str_t *value, ngx_pool_t *pool, ngx_http_events_error_t *err);
static ngx_int_t ngx_http_events_query_param_until(ngx_http_events_query_t *q,
    ngx_str_t *value, ngx_pool_t *pool, ngx_http_events_error_t *err);
static ngx_int_t ngx_http_events_query_param_after(ngx_http_events_query_t *q,
    ngx_str_t *value, ngx_pool_t *pool, ngx_http_events_error_t *err);
static ngx_int_t ngx_http_events_query_param_before(ngx_http_events_query_t *q,
    ngx_str_t *value, ngx_pool_t *pool, ngx_http_events_error_t *err);
static ngx_int_t ngx_http_events_query_param_limit(ngx_http_events_query_t *q,
    ngx_str_t *value, ngx_pool_t *pool, ngx_http_events_error_t *err);
static ngx_int_t ngx_http_events_query_param_order(ngx_http_events_query_t *q,
    ngx_str_t *value, ngx_pool_t *pool, ngx_http_events_error_t *err);
static ngx_int_t ngx_http_events_query_param_last(ngx_http_events_query_t *q,
    ngx_str_t *value, ngx_pool_t *pool, ngx_http_events_error_t *err);
static ngx_int_t ngx_http_events_query_param_named(ngx_http_events_query_t *q,
    ngx_str_t *value, ngx_pool_t *pool, ngx_http_events_error_t *err);
static ngx_int_t ngx_http_events_query_param_token(ngx_http_events_query_t *q,
    ngx_str_t *value, ngx_pool_t *pool, ngx_http_events_error_t *err);
static ngx_int_t ngx_http_events_query_param_format(ngx_http_events_query_t *q,
    ngx_str_t *value, ngx_pool_t *pool, ngx_http_events_error_t *err);
static ngx_int_t ngx_http_events_query_key_string(ngx_str_t *value, size_t max,
    ngx_uint_t rid);
static ngx_int_t ngx_http_events_query_meta(ngx_http_events_query_t *q,
    ngx_str_t *name, ngx_str_t *value, ngx_pool_t *pool,
    ngx_http_events_error_t *err);
static ngx_int_t ngx_http_events_query_meta_name(
    ngx_http_events_error_t *err, ngx_str_t *name);
static ngx_int_t ngx_http_events_query_unescape(ngx_str_t *value,
    u_char *eq, u_char *amp, ngx_pool_t *pool,
    ngx_http_events_error_t *err);


#define L  NGX_HTTP_EVENTS_QUERY_LIST
#define S  NGX_HTTP_EVENTS_QUERY_STREAM

static ngx_http_events_param_t  ngx_http_events_params[] = {
    { ngx_string("types"), ngx_http_events_query_param_types, L|S },
    { ngx_string("resourceType"), ngx_http_events_query_param_rtype, L|S },
    { ngx_string("resourceId"), ngx_http_events_query_param_rid, L|S },
    { ngx_string("action"), ngx_http_events_query_param_action, L|S },
    { ngx_string("source"), ngx_http_events_query_param_source, L|S },
    { ngx_string("since"), ngx_http_events_query_param_since, L },
    { ngx_string("until"), ngx_http_events_query_param_until, L },
    { ngx_string("after"), ngx_http_events_query_param_after, L },
    { ngx_string("before"), ngx_http_events_query_param_before, L },
    { ngx_string("limit"), ngx_http_events_query_param_limit, L },
    { ngx_string("order"), ngx_http_events_query_param_order, L },
    { ngx_string("lastEventId"), ngx_http_events_query_param_last, S },
    { ngx_string("named"), ngx_http_events_query_param_named, S },
    { ngx_string("format"), ngx_http_events_query_param_format, S },
    { ngx_string("token"), ngx_http_events_query_param_token, L|S },
    { ngx_null_string, NULL, 0 }
};

#undef L
#undef S


ngx_int_t
ngx_http_events_query_parse(ngx_str_t *args, ngx_uint_t mode,
    ngx_http_events_cursor_key_t *key, ngx_pool_t *pool,
    ngx_http_events_query_t *q, ngx_http_events_error_t *err)
{
    u_char                   *p, *end, *amp, *eq;
    uint32_t                  seen;
    ngx_str_t                 name, value;
    ngx_uint_t                i, order_set;
    ngx_http_events_param_t  *param;

    q->cursor_key = key;
    q->since_ms = -1;
    q->until_ms = -1;
    q->limit = NGX_HTTP_EVENTS_DEFAULT_LIMIT;

    seen = 0;
    order_set = 0;

    p = args->data;
    end = p + args->len;

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

        if (name.len >= sizeof("metadata.") - 1
            && ngx_strncmp(name.data, "metadata.", sizeof("metadata.") - 1)
               == 0)
        {
            if (ngx_http_events_query_unescape(&value, eq, amp, pool, err)
                != NGX_OK
                || ngx_http_events_query_meta(q, &name, &value, pool, err)
                   != NGX_OK)
            {
                return NGX_ERROR;
            }

            continue;
        }

        param = NULL;

        for (i = 0; ngx_http_events_params[i].name.len; i++) {
            if ((ngx_http_events_params[i].modes & mode)
                && name.len == ngx_http_events_params[i].name.len
                && ngx_strncmp(name.data, ngx_http_events_params[i].name.data,
                               name.len) == 0)
            {
                param = &ngx_http_events_params[i];
                break;
            }
        }

        if (param == NULL) {
            /* name the parameter as sent, within reason */
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

        if (ngx_http_events_query_unescape(&value, eq, amp, pool, err)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        if (param->handler == ngx_http_events_query_param_order) {
            order_set = 1;
        }

        if (param->handler(q, &value, pool, err) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    if (q->has_after && q->before) {
        ngx_http_events_error(err, 400, "invalid_parameter", "param", NULL,
                              "before", "give \"after\" or \"before\", "
                              "not both");
        return NGX_ERROR;
    }

    if (q->before && !order_set) {
        q->desc = 1;

    } else if (q->before && !q->desc) {
        ngx_http_events_error(err, 400, "invalid_parameter", "param", NULL,
                              "before", "\"before\" pages in descending "
                              "order: drop order=asc, or use \"after\"");
        return NGX_ERROR;

    } else if (q->has_after && q->desc) {
        ngx_http_events_error(err, 400, "invalid_parameter", "param", NULL,
                              "after", "\"after\" pages in ascending "
                              "order: drop order=desc, or use \"before\"");
        return NGX_ERROR;
    }

    if (q->rid.len && q->rtype.len == 0) {
        ngx_http_events_error(err, 400, "invalid_parameter", "param", NULL,
                              "resourceId", "\"resourceId\" needs "
                              "\"resourceType\"");
        return NGX_ERROR;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_events_query_unescape(ngx_str_t *value, u_char *eq, u_char *amp,
    ngx_pool_t *pool, ngx_http_events_error_t *err)
{
    u_char  *src, *dst;

    ngx_str_set(value, "");

    if (eq == NULL) {
        return NGX_OK;
    }

    value->data = ngx_pnalloc(pool, amp - eq);
    if (value->data == NULL) {
        err->status = 0;
        return NGX_ERROR;
    }

    src = eq + 1;
    dst = value->data;
    ngx_unescape_uri(&dst, &src, amp - eq - 1, 0);
    value->len = dst - value->data;

    return NGX_OK;
}


/*
 * metadata.KEY=VALUE: exact match of one metadata key; the value is
 * kept escaped as the envelope writer escapes strings
 */

static ngx_int_t
ngx_http_events_query_meta(ngx_http_events_query_t *q, ngx_str_t *name,
    ngx_str_t *value, ngx_pool_t *pool, ngx_http_events_error_t *err)
{
    u_char                         *p;
    size_t                          i, n;
    ngx_str_t                       key;
    ngx_uint_t                      k;
    ngx_http_events_meta_filter_t  *f;

    key.data = name->data + sizeof("metadata.") - 1;
    key.len = name->len - (sizeof("metadata.") - 1);

    if (ngx_http_events_match_meta_key_valid(key.data, key.len) != NGX_OK) {
        ngx_http_events_error(err, 400, "invalid_parameter", "param", NULL,
                              NULL, "a metadata filter is "
                              "metadata.KEY=VALUE, KEY 1-%d characters of "
                              "[A-Za-z0-9_.:-]",
                              NGX_HTTP_EVENTS_MAX_META_KEY);
        return ngx_http_events_query_meta_name(err, name);
    }

    for (i = 0; i < value->len; i += n) {
        n = ngx_http_events_json_utf8_len(value->data + i, value->len - i);
        if (n == 0 || (n == 1 && value->data[i] < 0x20)) {
            break;
        }
    }

    if (value->len == 0 || value->len > NGX_HTTP_EVENTS_MAX_META_VALUE
        || i < value->len)
    {
        ngx_http_events_error(err, 400, "invalid_parameter", "param", NULL,
                              NULL, "\"%V\" must be 1-%d bytes of printable "
                              "UTF-8", name, NGX_HTTP_EVENTS_MAX_META_VALUE);
        return ngx_http_events_query_meta_name(err, name);
    }

    for (k = 0; k < q->nmeta; k++) {
        if (q->meta[k].key.len == key.len
            && ngx_memcmp(q->meta[k].key.data, key.data, key.len) == 0)
        {
            ngx_http_events_error(err, 400, "invalid_parameter", "param",
                                  NULL, NULL, "\"%V\" is given more than "
                                  "once", name);
            return ngx_http_events_query_meta_name(err, name);
        }
    }

    if (q->nmeta == NGX_HTTP_EVENTS_MAX_META_FILTERS) {
        ngx_http_events_error(err, 400, "invalid_parameter", "param", NULL,
                              NULL, "at most %d metadata filters",
                              NGX_HTTP_EVENTS_MAX_META_FILTERS);
        return ngx_http_events_query_meta_name(err, name);
    }

    if (q->meta == NULL) {
        q->meta = ngx_palloc(pool, NGX_HTTP_EVENTS_MAX_META_FILTERS
                                   * sizeof(ngx_http_events_meta_filter_t));
        if (q->meta == NULL) {
            err->status = 0;
            return NGX_ERROR;
        }
    }

    p = ngx_pnalloc(pool, ngx_http_events_json_escape_len(value->data,
                                                           value->len));
    if (p == NULL) {
        err->status = 0;
        return NGX_ERROR;
    }

    f = &q->meta[q->nmeta++];
    f->key = key;
    f->value.data = p;
    f->value.len = ngx_http_events_json_escape(p, value->data, value->len)
                   - p;

    return NGX_OK;
}


/* the parameter as sent names the error: ERROR, for "return" */

static ngx_int_t
ngx_http_events_query_meta_name(ngx_http_events_error_t *err,
    ngx_str_t *name)
{
    err->name_len = ngx_min(name->len, sizeof(err->name));
    ngx_memcpy(err->name, name->data, err->name_len);
    ngx_http_events_error_name(err);

    return NGX_ERROR;
}


static ngx_int_t
ngx_http_events_query_param_types(ngx_http_events_query_t *q, ngx_str_t *value,
    ngx_pool_t *pool, ngx_http_events_error_t *err)
{
    u_char     *p, *end, *comma;
    ngx_str_t  *pat;

    q->types = ngx_palloc(pool,
                          NGX_HTTP_EVENTS_MAX_PATTERNS * sizeof(ngx_str_t));
    if (q->types == NULL) {
        err->status = 0;
        return NGX_ERROR;
    }

    p = value->data;
    end = p + value->len;

    for ( ;; ) {
        comma = ngx_strlchr(p, end, ',');
        if (comma == NULL) {
            comma = end;
        }

        if (q->ntypes == NGX_HTTP_EVENTS_MAX_PATTERNS) {
            ngx_http_events_error(err, 400, "invalid_parameter", "param",
                                  NULL, "types", "\"types\" takes at most "
                                  "%d patterns", NGX_HTTP_EVENTS_MAX_PATTERNS);
            return NGX_ERROR;
        }

        if (ngx_http_events_match_pattern_valid(p, comma - p) != NGX_OK) {
            ngx_http_events_error(err, 400, "invalid_parameter", "param",
                                  NULL, "types", "\"types\" has an invalid "
                                  "pattern \"%*s\": use dot-separated "
                                  "segments of [a-z0-9_], \"*\" for one "
                                  "segment, a trailing \".*\" for the rest",
                                  ngx_min(comma - p, 128), p);
            return NGX_ERROR;
        }

        pat = &q->types[q->ntypes++];
        pat->data = p;
        pat->len = comma - p;

        if (comma == end) {
            return NGX_OK;
        }

        p = comma + 1;
    }
}


static ngx_int_t
ngx_http_events_query_key_string(ngx_str_t *value, size_t max, ngx_uint_t rid)
{
    size_t  i;
    u_char  ch;

    if (value->len == 0 || value->len > max) {
        return NGX_ERROR;
    }

    for (i = 0; i < value->len; i++) {
        ch = value->data[i];

        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z')
            || (ch >= '0' && ch <= '9') || ch == '_' || ch == '-')
        {
            continue;
        }

        if (rid && (ch == '.' || ch == ':' || ch == '@')) {
            continue;
        }

        return NGX_ERROR;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_events_query_param_rtype(ngx_http_events_query_t *q, ngx_str_t *value,
    ngx_pool_t *pool, ngx_http_events_error_t *err)
{
    if (ngx_http_events_query_key_string(value, NGX_HTTP_EVENTS_MAX_RTYPE, 0)
        != NGX_OK)
    {
        ngx_http_events_error(err, 400, "invalid_parameter", "param", NULL,
                              "resourceType", "\"resourceType\" must be "
                              "1-64 characters of [A-Za-z0-9_-]");
        return NGX_ERROR;
    }

    q->rtype = *value;

    return NGX_OK;
}


static ngx_int_t
ngx_http_events_query_param_rid(ngx_http_events_query_t *q, ngx_str_t *value,
    ngx_pool_t *pool, ngx_http_events_error_t *err)
{
    if (ngx_http_events_query_key_string(value, NGX_HTTP_EVENTS_MAX_RID, 1)
        != NGX_OK)
    {
        ngx_http_events_error(err, 400, "invalid_parameter", "param", NULL,
                              "resourceId", "\"resourceId\" must be "
                              "1-128 characters of [A-Za-z0-9_.:@-]");
        return NGX_ERROR;
    }

    q->rid = *value;

    return NGX_OK;
}


static ngx_int_t
ngx_http_events_query_param_action(ngx_http_events_query_t *q, ngx_str_t *value,
    ngx_pool_t *pool, ngx_http_events_error_t *err)
{
    static ngx_str_t  actions[] = {
        ngx_string("created"), ngx_string("updated"),
        ngx_string("deleted"), ngx_string("occurred")
    };

    ngx_uint_t  i;

    for (i = 0; i < 4; i++) {
        if (value->len == actions[i].len
            && ngx_strncmp(value->data, actions[i].data, value->len) == 0)
        {
            q->action = i + 1;
            return NGX_OK;
        }
    }

    ngx_http_events_error(err, 400, "invalid_parameter", "param", NULL,
                          "action", "\"action\" must be one of created, "
                          "updated, deleted, occurred");
    return NGX_ERROR;
}


static ngx_int_t
ngx_http_events_query_param_source(ngx_http_events_query_t *q, ngx_str_t *value,
    ngx_pool_t *pool, ngx_http_events_error_t *err)
{
    if (value->len == 0 || value->len > NGX_HTTP_EVENTS_MAX_SOURCE) {
        ngx_http_events_error(err, 400, "invalid_parameter", "param", NULL,
                              "source", "\"source\" must be 1-128 "
                              "characters");
        return NGX_ERROR;
    }

    q->source = *value;

    return NGX_OK;
}


static ngx_int_t
ngx_http_events_query_param_since(ngx_http_events_query_t *q, ngx_str_t *value,
    ngx_pool_t *pool, ngx_http_events_error_t *err)
{
    if (ngx_http_events_time_parse(value->data, value->len, &q->since_ms)
        != NGX_OK)
    {
        ngx_http_events_error(err, 400, "invalid_parameter", "param", NULL,
                              "since", "\"since\" must be an ISO-8601 time, "
                              "e.g. 2026-11-23T12:00:00Z");
        return NGX_ERROR;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_events_query_param_until(ngx_http_events_query_t *q, ngx_str_t *value,
    ngx_pool_t *pool, ngx_http_events_error_t *err)
{
    if (ngx_http_events_time_parse(value->data, value->len, &q->until_ms)
        != NGX_OK)
    {
        ngx_http_events_error(err, 400, "invalid_parameter", "param", NULL,
                              "until", "\"until\" must be an ISO-8601 time, "
                              "e.g. 2026-11-23T12:00:00Z");
        return NGX_ERROR;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_events_query_param_after(ngx_http_events_query_t *q, ngx_str_t *value,
    ngx_pool_t *pool, ngx_http_events_error_t *err)
{
    if (ngx_http_events_cursor_parse(q->cursor_key, value->data, value->len,
                                     &q->after_epoch, &q->after)
        != NGX_OK)
    {
        ngx_http_events_error(err, 400, "invalid_cursor", "param", NULL,
                              "after", "\"after\" is not a cursor of this "
                              "API");
        return NGX_ERROR;
    }

    q->has_after = 1;

    return NGX_OK;
}


static ngx_int_t
ngx_http_events_query_param_before(ngx_http_events_query_t *q, ngx_str_t *value,
    ngx_pool_t *pool, ngx_http_events_error_t *err)
{
    if (ngx_http_events_cursor_parse(q->cursor_key, value->data, value->len,
                                     &q->before_epoch, &q->before)
        != NGX_OK
        || (q->before == 0 && q->before_epoch == q->cursor_key->epoch))
    {
        ngx_http_events_error(err, 400, "invalid_cursor", "param", NULL,
                              "before", "\"before\" is not a cursor of "
                              "this API");
        return NGX_ERROR;
    }

    if (q->before_epoch != q->cursor_key->epoch) {
        /* another epoch's: present, at no place here (the caller: 410) */
        q->before = (uint64_t) -1;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_events_query_param_limit(ngx_http_events_query_t *q, ngx_str_t *value,
    ngx_pool_t *pool, ngx_http_events_error_t *err)
{
    ngx_int_t  n;

    n = (value->len && value->len <= 4) ? ngx_atoi(value->data, value->len)
                                        : NGX_ERROR;

    if (n < 1 || n > NGX_HTTP_EVENTS_MAX_LIMIT) {
        ngx_http_events_error(err, 400, "invalid_parameter", "param", NULL,
                              "limit", "limit must be between 1 and %d",
                              NGX_HTTP_EVENTS_MAX_LIMIT);
        return NGX_ERROR;
    }

    q->limit = n;

    return NGX_OK;
}


static ngx_int_t
ngx_http_events_query_param_last(ngx_http_events_query_t *q, ngx_str_t *value,
    ngx_pool_t *pool, ngx_http_events_error_t *err)
{
    /* checked when the stream starts: a bad one is a reset, not a 400 */
    q->last_event_id = *value;

    return NGX_OK;
}


static ngx_int_t
ngx_http_events_query_param_token(ngx_http_events_query_t *q, ngx_str_t *value,
    ngx_pool_t *pool, ngx_http_events_error_t *err)
{
    /* the auth layer's: refused there unless events_auth_query_token */
    return NGX_OK;
}


static ngx_int_t
ngx_http_events_query_param_named(ngx_http_events_query_t *q, ngx_str_t *value,
    ngx_pool_t *pool, ngx_http_events_error_t *err)
{
    if (value->len == 1 && (value->data[0] == '0' || value->data[0] == '1')) {
        q->named = value->data[0] == '1';
        return NGX_OK;
    }

    ngx_http_events_error(err, 400, "invalid_parameter", "param", NULL,
                          "named", "\"named\" must be 0 or 1");
    return NGX_ERROR;
}


/* a stream's data: our envelope, or a structured CloudEvent */

static ngx_int_t
ngx_http_events_query_param_format(ngx_http_events_query_t *q,
    ngx_str_t *value, ngx_pool_t *pool, ngx_http_events_error_t *err)
{
    if (value->len == 8 && ngx_strncmp(value->data, "envelope", 8) == 0) {
        q->cloudevents = 0;
        return NGX_OK;
    }

    if (value->len == 11
        && ngx_strncmp(value->data, "cloudevents", 11) == 0)
    {
        q->cloudevents = 1;
        return NGX_OK;
    }

    ngx_http_events_error(err, 400, "invalid_parameter", "param", NULL,
                          "format", "\"format\" must be envelope or "
                          "cloudevents");
    return NGX_ERROR;
}


static ngx_int_t
ngx_http_events_query_param_order(ngx_http_events_query_t *q, ngx_str_t *value,
    ngx_pool_t *pool, ngx_http_events_error_t *err)
{
    if (value->len == 3 && ngx_strncmp(value->data, "asc", 3) == 0) {
        q->desc = 0;
        return NGX_OK;
    }

    if (value->len == 4 && ngx_strncmp(value->data, "desc", 4) == 0) {
        q->desc = 1;
        return NGX_OK;
    }

    ngx_http_events_error(err, 400, "invalid_parameter", "param", NULL,
                          "order", "\"order\" must be asc or desc");
    return NGX_ERROR;
}
