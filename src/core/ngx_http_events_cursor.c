
/*
 * Copyright (C) ngx_http_events_module authors
 */


/*
 * Cursors are what clients see of log positions: base64url of the
 * store's epoch, the seq and a check, so that a cursor of another
 * incarnation of the store is told apart from a current one, and a
 * mangled one from both.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_events_cursor.h"
#include "ngx_http_events_store.h"


#define NGX_HTTP_EVENTS_CURSOR_RAW      18


static void ngx_http_events_cursor_put64(u_char *p, uint64_t v);
static uint64_t ngx_http_events_cursor_get64(u_char *p);


static void
ngx_http_events_cursor_put64(u_char *p, uint64_t v)
{
    ngx_uint_t  i;

    for (i = 0; i < 8; i++) {
        p[7 - i] = (u_char) (v >> (i * 8));
    }
}


static uint64_t
ngx_http_events_cursor_get64(u_char *p)
{
    uint64_t    v;
    ngx_uint_t  i;

    v = 0;

    for (i = 0; i < 8; i++) {
        v = (v << 8) | p[i];
    }

    return v;
}


u_char *
ngx_http_events_cursor_write(u_char *p, uint64_t epoch, uint64_t seq)
{
    u_char     raw[NGX_HTTP_EVENTS_CURSOR_RAW];
    uint32_t   crc;
    ngx_str_t  src, dst;

    ngx_http_events_cursor_put64(raw, epoch);
    ngx_http_events_cursor_put64(raw + 8, seq);

    crc = ngx_crc32_short(raw, 16);
    raw[16] = (u_char) (crc >> 8);
    raw[17] = (u_char) crc;

    src.data = raw;
    src.len = NGX_HTTP_EVENTS_CURSOR_RAW;
    dst.data = p;

    ngx_encode_base64url(&dst, &src);

    return p + dst.len;
}


ngx_int_t
ngx_http_events_cursor_parse(u_char *p, size_t len, uint64_t *epoch,
    uint64_t *seq)
{
    u_char     raw[NGX_HTTP_EVENTS_CURSOR_RAW + 3];
    uint32_t   crc;
    ngx_str_t  src, dst;

    if (len != NGX_HTTP_EVENTS_CURSOR_LEN) {
        return NGX_ERROR;
    }

    src.data = p;
    src.len = len;
    dst.data = raw;

    if (ngx_decode_base64url(&dst, &src) != NGX_OK
        || dst.len != NGX_HTTP_EVENTS_CURSOR_RAW)
    {
        return NGX_ERROR;
    }

    crc = ngx_crc32_short(raw, 16);

    if (raw[16] != (u_char) (crc >> 8) || raw[17] != (u_char) crc) {
        return NGX_ERROR;
    }

    *epoch = ngx_http_events_cursor_get64(raw);
    *seq = ngx_http_events_cursor_get64(raw + 8);

    return NGX_OK;
}
