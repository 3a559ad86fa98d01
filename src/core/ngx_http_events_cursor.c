
/*
 * Copyright (C) ngx_http_events_module authors
 */


/*
 * Cursors are what clients see of log positions: base64url of the
 * store's epoch, the seq and a check, so that a cursor of another
 * incarnation of the store is told apart from a current one, and a
 * mangled one from both.
 *
 * Server-made ids are ULIDs (time, then randomness, Crockford base32),
 * so they sort by time.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include <openssl/rand.h>

#include "ngx_http_events_cursor.h"
#include "ngx_http_events_store.h"


#define NGX_HTTP_EVENTS_CURSOR_RAW      18


static void ngx_http_events_cursor_put64(u_char *p, uint64_t v);
static uint64_t ngx_http_events_cursor_get64(u_char *p);
static uint64_t ngx_http_events_splitmix(uint64_t *state);


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


/*
 * A worker's stream of id randomness: splitmix64 from a seed drawn once
 * from RAND_bytes(); a call per event to the CSPRNG cost more than the
 * rest of the id (ids need to be unique and unguessable enough to not
 * collide, not secret).  Without a state, RAND_bytes() it is.
 */

static uint64_t
ngx_http_events_splitmix(uint64_t *state)
{
    uint64_t  z;

    z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;

    return z ^ (z >> 31);
}


ngx_int_t
ngx_http_events_id_generate(u_char *p, uint64_t ms, uint64_t *rng)
{
    u_char             rnd[10];
    uint64_t           hi, lo, r;
    ngx_uint_t         i;
    static const char  b32[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

    if (rng) {
        r = ngx_http_events_splitmix(rng);
        ngx_http_events_cursor_put64(rnd + 2, r);
        r = ngx_http_events_splitmix(rng);
        rnd[0] = (u_char) r;
        rnd[1] = (u_char) (r >> 8);

    } else if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
        return NGX_ERROR;
    }

    /* 48 bits of time, 80 of randomness: 128 bits as 26 digits */

    hi = (ms << 16) | ((uint64_t) rnd[0] << 8) | rnd[1];
    lo = ngx_http_events_cursor_get64(rnd + 2);

    p = ngx_cpymem(p, "evt_", 4);

    for (i = 26; i > 0; i--) {
        p[i - 1] = b32[lo & 0x1f];
        lo = (lo >> 5) | ((hi & 0x1f) << 59);
        hi >>= 5;
    }

    return NGX_OK;
}


ngx_int_t
ngx_http_events_id_valid(u_char *p, size_t len)
{
    size_t  i;
    u_char  ch;

    if (len == 0 || len > NGX_HTTP_EVENTS_MAX_ID) {
        return NGX_ERROR;
    }

    for (i = 0; i < len; i++) {
        ch = p[i];

        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z')
              || (ch >= '0' && ch <= '9') || ch == '_' || ch == ':'
              || ch == '-'))
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}
