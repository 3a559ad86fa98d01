
/*
 * Copyright (C) ngx_http_events_module authors
 */


/*
 * The output builder every answer is written with: JSON bodies, status in
 * JSON and Prometheus text, webhook views.  It lives in a pool (the
 * request's), grows by doubling, and never writes past its end: a
 * formatted piece that fills the space left may have been cut, so it is
 * written again into a buffer twice as large.  A failed allocation sets
 * "failed", after which every call does nothing, and the caller answers
 * 500 once at the end instead of checking each piece.  Nothing here knows
 * HTTP (the fuzzers link it); ngx_http_events_http_send_buf() sends it.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_events_time.h"
#include "ngx_http_events_json.h"
#include "ngx_http_events_buf.h"


static ngx_int_t ngx_http_events_buf_grow(ngx_http_events_buf_t *b,
    size_t len);


void
ngx_http_events_buf_init(ngx_http_events_buf_t *b, ngx_pool_t *pool,
    size_t size)
{
    b->pool = pool;
    b->start = NULL;
    b->pos = NULL;
    b->end = NULL;
    b->failed = 0;

    if (size) {
        (void) ngx_http_events_buf_grow(b, size);
    }
}


u_char *
ngx_http_events_buf_reserve(ngx_http_events_buf_t *b, size_t len)
{
    if (b->failed) {
        return NULL;
    }

    if ((size_t) (b->end - b->pos) < len
        && ngx_http_events_buf_grow(b, len) != NGX_OK)
    {
        return NULL;
    }

    return b->pos;
}


void
ngx_http_events_buf_printf(ngx_http_events_buf_t *b, const char *fmt, ...)
{
    u_char   *p;
    size_t    room;
    va_list   args;

    room = 64;

    for ( ;; ) {
        p = ngx_http_events_buf_reserve(b, room);
        if (p == NULL) {
            return;
        }

        va_start(args, fmt);
        p = ngx_vslprintf(p, b->end, fmt, args);
        va_end(args);

        /*
         * ngx_vslprintf() stops at the end without saying so: a piece
         * that filled every byte left may have been cut, so write it
         * again with more room
         */

        if (p < b->end) {
            b->pos = p;
            return;
        }

        room = (size_t) (b->end - b->pos) + 1;
    }
}


void
ngx_http_events_buf_add(ngx_http_events_buf_t *b, u_char *s, size_t len)
{
    u_char  *p;

    p = ngx_http_events_buf_reserve(b, len);
    if (p == NULL) {
        return;
    }

    b->pos = ngx_cpymem(p, s, len);
}


/* a JSON string value: quoted, escaped */

void
ngx_http_events_buf_str(ngx_http_events_buf_t *b, u_char *s, size_t len)
{
    u_char  *p;

    p = ngx_http_events_buf_reserve(b, ngx_http_events_json_escape_len(s, len)
                                       + 2);
    if (p == NULL) {
        return;
    }

    *p++ = '"';
    p = ngx_http_events_json_escape(p, s, len);
    *p++ = '"';

    b->pos = p;
}


/*
 * a Prometheus label value: quoted; the text format escapes only the
 * backslash, the double quote and the line feed
 */

void
ngx_http_events_buf_label(ngx_http_events_buf_t *b, u_char *s, size_t len)
{
    u_char  *p, *last;

    p = ngx_http_events_buf_reserve(b, 2 * len + 2);
    if (p == NULL) {
        return;
    }

    *p++ = '"';

    for (last = s + len; s < last; s++) {
        switch (*s) {

        case '\\':
        case '"':
            *p++ = '\\';
            *p++ = *s;
            break;

        case '\n':
            *p++ = '\\';
            *p++ = 'n';
            break;

        default:
            *p++ = *s;
        }
    }

    *p++ = '"';

    b->pos = p;
}


/* a JSON time: the quoted RFC 3339 form, or null for "never" */

void
ngx_http_events_buf_time(ngx_http_events_buf_t *b, uint64_t ms)
{
    u_char  *p;

    if (ms == 0 || ms == (uint64_t) -1) {
        ngx_http_events_buf_literal(b, "null");
        return;
    }

    p = ngx_http_events_buf_reserve(b, NGX_HTTP_EVENTS_TIMESTAMP_LEN + 2);
    if (p == NULL) {
        return;
    }

    *p++ = '"';
    p = ngx_http_events_time_write(p, ms);
    *p++ = '"';

    b->pos = p;
}


static ngx_int_t
ngx_http_events_buf_grow(ngx_http_events_buf_t *b, size_t len)
{
    u_char  *p;
    size_t   size, used;

    used = b->pos - b->start;
    size = (b->end - b->start) ? (size_t) (b->end - b->start) * 2 : 1024;

    while (size < used + len) {
        if (size > NGX_MAX_SIZE_T_VALUE / 2) {
            b->failed = 1;
            return NGX_ERROR;
        }

        size *= 2;
    }

    p = ngx_pnalloc(b->pool, size);
    if (p == NULL) {
        b->failed = 1;
        return NGX_ERROR;
    }

    if (used) {
        ngx_memcpy(p, b->start, used);
    }

    if (b->start) {
        /* frees only a large allocation; a small one stays in the pool */
        (void) ngx_pfree(b->pool, b->start);
    }

    b->start = p;
    b->pos = p + used;
    b->end = p + size;

    return NGX_OK;
}
