
/*
 * Copyright (C) ngx_http_events_module authors
 */


/*
 * Cursors are what clients see of log positions, 36 characters of
 * base64url over 27 bytes:
 *
 *   epoch (8) | AES-128(secret; epoch, seq) (16) | crc32 of both (3)
 *
 * The seq is encrypted with the zone's secret, so a cursor says nothing
 * of how many events the store has taken (a tenant's cursors would
 * otherwise count every tenant's writes), and the epoch inside the block
 * authenticates it: a changed block decrypts to another epoch, with
 * odds of 2^-64 of passing.  The epoch stays in the clear in front,
 * because a cursor of another incarnation of the store (a restart
 * without a journal draws a new epoch and a new secret) must still be
 * told apart from garbage: it means "start again" (410, or a reset on
 * a stream), where garbage means 400.  The check bytes tell garbage
 * from a cursor of another epoch; they are no protection, and need not
 * be: a forged foreign epoch earns a reset, nothing more.
 *
 * The secret lives in the zone header (it survives reload) and, with a
 * journal, in the journal's directory (it survives restarts with the
 * epoch it belongs to).  Each process keeps its AES contexts, keyed
 * once, since a stream writes a cursor per event.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_events_cursor.h"


#define NGX_HTTP_EVENTS_CURSOR_RAW      27


static void ngx_http_events_cursor_put64(u_char *p, uint64_t v);
static uint64_t ngx_http_events_cursor_get64(u_char *p);
static void ngx_http_events_cursor_check(u_char *raw, u_char *check);


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


static void
ngx_http_events_cursor_check(u_char *raw, u_char *check)
{
    uint32_t  crc;

    crc = ngx_crc32_short(raw, 24);

    check[0] = (u_char) (crc >> 16);
    check[1] = (u_char) (crc >> 8);
    check[2] = (u_char) crc;
}


ngx_int_t
ngx_http_events_cursor_key_init(ngx_http_events_cursor_key_t *key,
    u_char *secret, uint64_t epoch)
{
    key->epoch = epoch;
    key->enc = EVP_CIPHER_CTX_new();
    key->dec = EVP_CIPHER_CTX_new();

    if (key->enc == NULL || key->dec == NULL
        || EVP_EncryptInit_ex(key->enc, EVP_aes_128_ecb(), NULL, secret, NULL)
           != 1
        || EVP_DecryptInit_ex(key->dec, EVP_aes_128_ecb(), NULL, secret, NULL)
           != 1
        || EVP_CIPHER_CTX_set_padding(key->enc, 0) != 1
        || EVP_CIPHER_CTX_set_padding(key->dec, 0) != 1)
    {
        ngx_http_events_cursor_key_free(key);
        return NGX_ERROR;
    }

    return NGX_OK;
}


void
ngx_http_events_cursor_key_free(ngx_http_events_cursor_key_t *key)
{
    if (key->enc) {
        EVP_CIPHER_CTX_free(key->enc);
        key->enc = NULL;
    }

    if (key->dec) {
        EVP_CIPHER_CTX_free(key->dec);
        key->dec = NULL;
    }
}


/*
 * One AES block through a context keyed at start: it cannot fail short
 * of memory corruption; if it did (or with no key: the process had no
 * memory for one), the block is zeros, which never reads back as a
 * cursor of this epoch: 400 later, never a wrong place.
 */

u_char *
ngx_http_events_cursor_write(ngx_http_events_cursor_key_t *key, u_char *p,
    uint64_t epoch, uint64_t seq)
{
    int        n;
    u_char     block[16];
    u_char     raw[NGX_HTTP_EVENTS_CURSOR_RAW];
    ngx_str_t  src, dst;

    ngx_http_events_cursor_put64(raw, epoch);
    ngx_http_events_cursor_put64(block, epoch);
    ngx_http_events_cursor_put64(block + 8, seq);

    if (key == NULL
        || EVP_EncryptUpdate(key->enc, raw + 8, &n, block, 16) != 1
        || n != 16)
    {
        ngx_memzero(raw + 8, 16);
    }

    ngx_http_events_cursor_check(raw, raw + 24);

    src.data = raw;
    src.len = NGX_HTTP_EVENTS_CURSOR_RAW;
    dst.data = p;

    ngx_encode_base64url(&dst, &src);

    return p + dst.len;
}


/*
 * NGX_OK with the epoch and seq of a cursor of this epoch, or with
 * another epoch and seq 0 (the caller starts again); NGX_ERROR for
 * anything else.
 */

ngx_int_t
ngx_http_events_cursor_parse(ngx_http_events_cursor_key_t *key, u_char *p,
    size_t len, uint64_t *epoch, uint64_t *seq)
{
    int        n;
    u_char     block[16], check[3];
    u_char     raw[NGX_HTTP_EVENTS_CURSOR_RAW + 3];
    uint64_t   e;
    ngx_str_t  src, dst;

    if (key == NULL || len != NGX_HTTP_EVENTS_CURSOR_LEN
        || ngx_strlchr(p, p + len, '=') != NULL)
    {
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

    ngx_http_events_cursor_check(raw, check);

    if (ngx_memcmp(check, raw + 24, 3) != 0) {
        return NGX_ERROR;
    }

    e = ngx_http_events_cursor_get64(raw);

    if (e != key->epoch) {
        *epoch = e;
        *seq = 0;
        return NGX_OK;
    }

    if (EVP_DecryptUpdate(key->dec, block, &n, raw + 8, 16) != 1
        || n != 16
        || ngx_http_events_cursor_get64(block) != e)
    {
        return NGX_ERROR;
    }

    *epoch = e;
    *seq = ngx_http_events_cursor_get64(block + 8);

    return NGX_OK;
}
