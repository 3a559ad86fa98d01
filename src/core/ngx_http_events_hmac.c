
/*
 * Copyright (C) ngx_http_events_module authors
 */


/*
 * HMAC-SHA256 over several pieces without copying them together (a
 * webhook signs "id.timestamp." and the body).  OpenSSL 3 deprecates
 * HMAC_CTX: there EVP_MAC does it; older OpenSSL keeps HMAC_CTX.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#if (OPENSSL_VERSION_NUMBER >= 0x30000000L)
#include <openssl/core_names.h>
#endif

#include "ngx_http_events_hmac.h"


#if (OPENSSL_VERSION_NUMBER >= 0x30000000L)

ngx_int_t
ngx_http_events_hmac_sha256(u_char *key, size_t key_len, ngx_str_t *parts,
    ngx_uint_t nparts, u_char *out)
{
    size_t         len;
    ngx_int_t      rc;
    ngx_uint_t     i;
    EVP_MAC       *mac;
    OSSL_PARAM     params[2];
    EVP_MAC_CTX   *ctx;

    mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    if (mac == NULL) {
        return NGX_ERROR;
    }

    ctx = EVP_MAC_CTX_new(mac);
    if (ctx == NULL) {
        EVP_MAC_free(mac);
        return NGX_ERROR;
    }

    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
                                                 (char *) "SHA256", 0);
    params[1] = OSSL_PARAM_construct_end();

    rc = NGX_ERROR;

    if (EVP_MAC_init(ctx, key, key_len, params) != 1) {
        goto done;
    }

    for (i = 0; i < nparts; i++) {
        if (EVP_MAC_update(ctx, parts[i].data, parts[i].len) != 1) {
            goto done;
        }
    }

    if (EVP_MAC_final(ctx, out, &len, NGX_HTTP_EVENTS_HMAC_SHA256_LEN) == 1
        && len == NGX_HTTP_EVENTS_HMAC_SHA256_LEN)
    {
        rc = NGX_OK;
    }

done:

    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(mac);

    return rc;
}

#else

ngx_int_t
ngx_http_events_hmac_sha256(u_char *key, size_t key_len, ngx_str_t *parts,
    ngx_uint_t nparts, u_char *out)
{
    ngx_int_t      rc;
    ngx_uint_t     i;
    unsigned int   len;
    HMAC_CTX      *ctx;

    ctx = HMAC_CTX_new();
    if (ctx == NULL) {
        return NGX_ERROR;
    }

    rc = NGX_ERROR;

    if (HMAC_Init_ex(ctx, key, (int) key_len, EVP_sha256(), NULL) != 1) {
        goto done;
    }

    for (i = 0; i < nparts; i++) {
        if (HMAC_Update(ctx, parts[i].data, parts[i].len) != 1) {
            goto done;
        }
    }

    if (HMAC_Final(ctx, out, &len) == 1
        && len == NGX_HTTP_EVENTS_HMAC_SHA256_LEN)
    {
        rc = NGX_OK;
    }

done:

    HMAC_CTX_free(ctx);

    return rc;
}

#endif
