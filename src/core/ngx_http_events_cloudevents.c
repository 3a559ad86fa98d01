
/*
 * Copyright (C) ngx_http_events_module authors
 */


/*
 * Our envelope as a CloudEvents 1.0 event.  The envelope is the store's
 * own canonical JSON, so its top-level members are found by walking it
 * once, without a parser or an allocation (streams call this for every
 * event), and the attribute values are its JSON string tokens copied as
 * they are.  The mapping (README, "CloudEvents"):
 *
 *   id       <- id                 type     <- type
 *   source   <- source, percent-encoded, or "/events" when it is null
 *   time     <- timestamp          subject  <- resourceId, when set
 *   seq      <- seq, as a string   tenantid <- tenantId, when set
 *   datacontenttype "application/json", data <- the whole envelope
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_events_cloudevents.h"


static u_char *ngx_http_events_ce_skip(u_char *p, u_char *last);
static void ngx_http_events_ce_member(u_char *key, size_t len, char *name,
    ngx_str_t *value, ngx_str_t *to);
static ngx_uint_t ngx_http_events_ce_hex(u_char c);


/* the members the mapping uses; a missing id or type is not an event */

ngx_int_t
ngx_http_events_ce_parse(ngx_str_t *envelope, ngx_http_events_ce_t *ce)
{
    u_char     *p, *last, *key, *end;
    size_t      len;
    ngx_str_t   value;

    ngx_memzero(ce, sizeof(ngx_http_events_ce_t));

    p = envelope->data;
    last = p + envelope->len;

    while (p < last && *p != '{') {
        p++;
    }

    if (p == last) {
        return NGX_ERROR;
    }

    p++;

    for ( ;; ) {
        while (p < last && (*p == ' ' || *p == ',' || *p == '\n'
                            || *p == '\r' || *p == '\t'))
        {
            p++;
        }

        if (p >= last || *p != '"') {
            break;
        }

        key = p + 1;
        end = ngx_http_events_ce_skip(p, last);
        if (end == NULL) {
            return NGX_ERROR;
        }

        len = end - key - 1;
        p = end;

        while (p < last && (*p == ' ' || *p == ':')) {
            p++;
        }

        value.data = p;
        p = ngx_http_events_ce_skip(p, last);
        if (p == NULL) {
            return NGX_ERROR;
        }

        value.len = p - value.data;

        if (value.len == 4 && ngx_strncmp(value.data, "null", 4) == 0) {
            continue;
        }

        ngx_http_events_ce_member(key, len, "id", &value, &ce->id);
        ngx_http_events_ce_member(key, len, "type", &value, &ce->type);
        ngx_http_events_ce_member(key, len, "source", &value, &ce->source);
        ngx_http_events_ce_member(key, len, "timestamp", &value, &ce->time);
        ngx_http_events_ce_member(key, len, "resourceId", &value,
                                  &ce->subject);
        ngx_http_events_ce_member(key, len, "tenantId", &value, &ce->tenant);
        ngx_http_events_ce_member(key, len, "seq", &value, &ce->seq);
    }

    if (ce->id.len == 0 || ce->type.len == 0) {
        return NGX_ERROR;
    }

    /* what the head may hold: NGX_HTTP_EVENTS_CE_HEAD */
    if (ce->id.len > 512 || ce->type.len > 512 || ce->time.len > 512
        || ce->subject.len > 512 || ce->tenant.len > 512
        || ce->seq.len > 512 || ce->source.len > 1024)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* a top-level member the mapping uses: its value token */

static void
ngx_http_events_ce_member(u_char *key, size_t len, char *name,
    ngx_str_t *value, ngx_str_t *to)
{
    if (len == ngx_strlen(name) && ngx_strncmp(key, name, len) == 0) {
        *to = *value;
    }
}


/* a hex digit of a \uXXXX escape the store wrote (so a valid one) */

static ngx_uint_t
ngx_http_events_ce_hex(u_char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }

    c |= 0x20;

    return (c >= 'a' && c <= 'f') ? c - 'a' + 10 : 0;
}


/* past one JSON value (or key) that starts at p */

static u_char *
ngx_http_events_ce_skip(u_char *p, u_char *last)
{
    ngx_uint_t  depth, string, escape;

    depth = 0;
    string = 0;
    escape = 0;

    for ( /* void */ ; p < last; p++) {

        if (string) {
            if (escape) {
                escape = 0;

            } else if (*p == '\\') {
                escape = 1;

            } else if (*p == '"') {
                string = 0;

                if (depth == 0) {
                    return p + 1;
                }
            }

            continue;
        }

        switch (*p) {

        case '"':
            string = 1;
            break;

        case '{':
        case '[':
            depth++;
            break;

        case '}':
        case ']':
            if (depth == 0) {
                return p;
            }

            if (--depth == 0) {
                return p + 1;
            }

            break;

        case ',':
            if (depth == 0) {
                return p;
            }

            break;
        }
    }

    return depth || string ? NULL : p;
}


/*
 * source must be a URI-reference, ours is any printable text: it is
 * decoded from JSON and every byte outside RFC 3986's unreserved and
 * reserved characters is percent-encoded ("caf\u00e9 x" becomes
 * "caf%C3%A9%20x"); null is "/events"
 */

u_char *
ngx_http_events_ce_source(u_char *p, ngx_http_events_ce_t *ce)
{
    u_char     *s, *last, c, utf[4];
    ngx_uint_t  i, n, u, lo;

    static u_char  hex[] = "0123456789ABCDEF";

    static uint32_t  uri[] = {
        0x00000000, /* 0000 0000 0000 0000  0000 0000 0000 0000 */
                    /* ?>=< ;:98 7654 3210  /.-, +*)( '&%$ #"!  */
        0xafffffd2, /* 1010 1111 1111 1111  1111 1111 1101 0010 */
                    /* _^]\ [ZYX WVUT SRQP  ONML KJIH GFED CBA@ */
        0x87ffffff, /* 1000 0111 1111 1111  1111 1111 1111 1111 */
                    /*  ~}| {zyx wvut srqp  onml kjih gfed cba` */
        0x47fffffe, /* 0100 0111 1111 1111  1111 1111 1111 1110 */
        0, 0, 0, 0
    };

    if (ce->source.len < 2) {
        return ngx_cpymem(p, "/events", 7);
    }

    s = ce->source.data + 1;
    last = ce->source.data + ce->source.len - 1;

    while (s < last) {
        c = *s++;

        if (c == '\\' && s < last) {
            c = *s++;

            switch (c) {
            case 'b': c = '\b'; break;
            case 'f': c = '\f'; break;
            case 'n': c = '\n'; break;
            case 'r': c = '\r'; break;
            case 't': c = '\t'; break;

            case 'u':
                u = 0;

                for (i = 0; i < 4 && s < last; i++, s++) {
                    u = u * 16 + ngx_http_events_ce_hex(*s);
                }

                /* a surrogate pair: the low half follows as \uDCxx */
                if (u >= 0xd800 && u <= 0xdbff && last - s >= 6
                    && s[0] == '\\' && s[1] == 'u')
                {
                    lo = 0;

                    for (i = 2; i < 6; i++) {
                        lo = lo * 16 + ngx_http_events_ce_hex(s[i]);
                    }

                    if (lo >= 0xdc00 && lo <= 0xdfff) {
                        s += 6;
                        u = 0x10000 + ((u - 0xd800) << 10) + (lo - 0xdc00);
                    }
                }

                if (u < 0x80) {
                    c = (u_char) u;
                    break;
                }

                /* UTF-8, each byte percent-encoded */
                if (u < 0x800) {
                    n = 2;
                    utf[0] = 0xc0 | (u >> 6);

                } else if (u < 0x10000) {
                    n = 3;
                    utf[0] = 0xe0 | (u >> 12);

                } else {
                    n = 4;
                    utf[0] = 0xf0 | (u >> 18);
                }

                for (i = n - 1; i > 0; i--) {
                    utf[i] = 0x80 | (u & 0x3f);
                    u >>= 6;
                }

                for (i = 0; i < n; i++) {
                    *p++ = '%';
                    *p++ = hex[utf[i] >> 4];
                    *p++ = hex[utf[i] & 0xf];
                }

                continue;
            }
        }

        if (uri[c >> 5] & (1U << (c & 0x1f))) {
            *p++ = c;

        } else {
            *p++ = '%';
            *p++ = hex[c >> 4];
            *p++ = hex[c & 0xf];
        }
    }

    return p;
}


/*
 * application/cloudevents+json up to the data, which the caller adds
 * (the envelope) and closes with "}"; at most NGX_HTTP_EVENTS_CE_HEAD
 */

u_char *
ngx_http_events_ce_head(u_char *p, ngx_http_events_ce_t *ce)
{
    p = ngx_sprintf(p, "{\"specversion\":\"1.0\",\"id\":%V,\"source\":\"",
                    &ce->id);
    p = ngx_http_events_ce_source(p, ce);
    p = ngx_sprintf(p, "\",\"type\":%V", &ce->type);

    if (ce->time.len) {
        p = ngx_sprintf(p, ",\"time\":%V", &ce->time);
    }

    if (ce->subject.len) {
        p = ngx_sprintf(p, ",\"subject\":%V", &ce->subject);
    }

    p = ngx_cpymem(p, ",\"datacontenttype\":\"application/json\"",
                   sizeof(",\"datacontenttype\":\"application/json\"") - 1);

    if (ce->seq.len) {
        p = ngx_sprintf(p, ",\"seq\":\"%V\"", &ce->seq);
    }

    if (ce->tenant.len) {
        p = ngx_sprintf(p, ",\"tenantid\":%V", &ce->tenant);
    }

    return ngx_cpymem(p, ",\"data\":", 8);
}
