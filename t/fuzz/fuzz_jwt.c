
/*
 * Copyright (C) ngx_http_events_module authors
 */


/*
 * libFuzzer target for the token verifier (src/ngx_http_events_jwt.c).
 *
 * The first byte picks a mode:
 *   even: the rest is a token as a client would send it; whatever is
 *         accepted must carry a real HS256 signature by one of the keys,
 *         in base64url without "=" padding;
 *   odd:  the rest is "header JSON \n payload JSON", which the harness
 *         signs with the first key, so the claims parser is reached; an
 *         accepted token must have said alg HS256, and its claims must
 *         be what the verifier promises (tenant, patterns, exp).
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include <stdio.h>
#include <stdlib.h>
#include <openssl/hmac.h>
#include <openssl/evp.h>

#include "ngx_http_events_jwt.h"
#include "ngx_http_events_match.h"
#include "fuzz_utf8.h"


#define FZ_NOW      1800000000
#define FZ_LEEWAY   30

#define fz_check(cond, ...)                                                   \
    do {                                                                      \
        if (!(cond)) {                                                        \
            fprintf(stderr, "fuzz_jwt: invariant failed: %s: ", #cond);       \
            fprintf(stderr, __VA_ARGS__);                                     \
            fprintf(stderr, "\n");                                            \
            abort();                                                          \
        }                                                                     \
    } while (0)


static ngx_str_t  fz_key1 = ngx_string("s3cret-one");
static ngx_str_t  fz_key2 = ngx_string("another-secret");


static ngx_uint_t
fz_signed_by(ngx_str_t *token, ngx_str_t *key, ngx_pool_t *pool)
{
    u_char        *dot;
    u_char         mac[EVP_MAX_MD_SIZE];
    ngx_str_t      sig, raw;
    unsigned int   len;

    dot = (u_char *) memrchr(token->data, '.', token->len);
    if (dot == NULL) {
        return 0;
    }

    sig.data = dot + 1;
    sig.len = token->data + token->len - sig.data;

    raw.data = ngx_pnalloc(pool, sig.len + 4);
    if (raw.data == NULL || ngx_decode_base64url(&raw, &sig) != NGX_OK) {
        return 0;
    }

    HMAC(EVP_sha256(), key->data, (int) key->len, token->data,
         dot - token->data, mac, &len);

    return raw.len == len && memcmp(raw.data, mac, len) == 0;
}


static void
fz_sign(ngx_pool_t *pool, const uint8_t *data, size_t size, ngx_str_t *token)
{
    u_char        *nl, *p;
    u_char         mac[EVP_MAX_MD_SIZE];
    ngx_str_t      h, pl, src, dst;
    unsigned int   len;

    nl = memchr(data, '\n', size);

    h.data = (u_char *) data;
    h.len = nl ? (size_t) (nl - data) : size;
    pl.data = nl ? nl + 1 : (u_char *) "";
    pl.len = nl ? size - h.len - 1 : 0;

    token->data = ngx_pnalloc(pool, 2 * (size + 64));
    if (token->data == NULL) {
        abort();
    }

    p = token->data;

    dst.data = p;
    ngx_encode_base64url(&dst, &h);
    p += dst.len;
    *p++ = '.';

    dst.data = p;
    ngx_encode_base64url(&dst, &pl);
    p += dst.len;

    HMAC(EVP_sha256(), fz_key1.data, (int) fz_key1.len, token->data,
         p - token->data, mac, &len);

    *p++ = '.';

    src.data = mac;
    src.len = len;
    dst.data = p;
    ngx_encode_base64url(&dst, &src);
    p += dst.len;

    token->len = p - token->data;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ngx_int_t                   rc;
    ngx_uint_t                  i, mode;
    ngx_str_t                   token;
    ngx_pool_t                 *pool;
    ngx_array_t                *keys, karr;
    ngx_http_events_error_t     err;
    ngx_http_events_claims_t    claims;
    ngx_http_events_jwt_key_t  *k, kv[2];
    ngx_http_events_jwt_conf_t  conf;

    if (size == 0) {
        return 0;
    }

    mode = data[0] & 1;
    data++;
    size--;

    pool = ngx_create_pool(4096, NULL);
    if (pool == NULL) {
        abort();
    }

    /* the verifier only reads elts and nelts */
    k = kv;
    ngx_str_null(&k[0].kid);
    k[0].secret = fz_key1;
    ngx_str_set(&k[1].kid, "k2");
    k[1].secret = fz_key2;

    keys = &karr;
    keys->elts = kv;
    keys->nelts = 2;
    keys->size = sizeof(ngx_http_events_jwt_key_t);
    keys->nalloc = 2;
    keys->pool = pool;

    ngx_memzero(&conf, sizeof(ngx_http_events_jwt_conf_t));
    conf.keys = keys;
    conf.leeway = FZ_LEEWAY;
    conf.now = FZ_NOW;

    if (mode) {
        fz_sign(pool, data, size, &token);

    } else {
        /* an exact-size copy, so that over-reads show */
        token.data = ngx_pnalloc(pool, size ? size : 1);
        ngx_memcpy(token.data, data, size);
        token.len = size;
    }

    ngx_memzero(&err, sizeof(ngx_http_events_error_t));

    rc = ngx_http_events_jwt_verify(&conf, &token, pool, &claims, &err);

    if (rc != NGX_OK) {
        fz_check(err.status == 401, "status %lu", (unsigned long) err.status);
        fz_check(err.code != NULL, "no code");
        fz_check(fz_utf8_valid(err.message, err.message_len),
                 "message not UTF-8");

    } else {
        fz_check(fz_signed_by(&token, &fz_key1, pool)
                 || fz_signed_by(&token, &fz_key2, pool),
                 "accepted without a valid signature: %.*s",
                 (int) token.len, token.data);
        fz_check(memchr(token.data, '=', token.len) == NULL,
                 "accepted with base64 padding: %.*s",
                 (int) token.len, token.data);
        fz_check(claims.exp + FZ_LEEWAY >= FZ_NOW, "expired exp %lld",
                 (long long) claims.exp);
        fz_check(ngx_http_events_match_tenant_valid(&claims.tenant) == NGX_OK,
                 "tenant %.*s", (int) claims.tenant.len, claims.tenant.data);

        for (i = 0; i < claims.npublish; i++) {
            fz_check(ngx_http_events_match_pattern_valid(
                         claims.publish[i].data, claims.publish[i].len)
                     == NGX_OK, "publish pattern");
        }

        for (i = 0; i < claims.nsubscribe; i++) {
            fz_check(ngx_http_events_match_pattern_valid(
                         claims.subscribe[i].data, claims.subscribe[i].len)
                     == NGX_OK, "subscribe pattern");

            /* a grant never narrows to something it does not cover */
            fz_check(ngx_http_events_match_pattern_covers(&claims.subscribe[i],
                                                          &claims.subscribe[i]),
                     "a pattern does not cover itself");
        }
    }

    ngx_destroy_pool(pool);

    return 0;
}
