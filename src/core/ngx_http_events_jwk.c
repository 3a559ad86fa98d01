
/*
 * Copyright (C) ngx_http_events_module authors
 */


/*
 * Token keys, read at configuration load (so a reload reads them again):
 * a file holds an HMAC secret, a PEM public key, or a JWKS.  What the
 * file holds decides the key's type, and the type decides the one alg
 * the key verifies, or the few it may be told to verify (alg=, a JWK's
 * "alg"): a PEM or JWKS key is never an HMAC secret, and an alg that
 * does not fit the key's type fails the configuration.
 *
 *   "-----BEGIN PUBLIC KEY-----"  RSA (>= 2048 bits) -> RS256, or alg=
 *                                 RS384, RS512, PS256, PS384, PS512;
 *                                 EC: the curve decides, P-256 -> ES256,
 *                                 P-384 -> ES384, P-521 -> ES512;
 *                                 Ed25519 -> EdDSA
 *   "{"                           a JWKS, {"keys": [...]}: kty RSA, EC
 *                                 (those curves), OKP (Ed25519), as
 *                                 above, "alg" for alg=; each key's own
 *                                 kid; keys for other uses or algs are
 *                                 skipped, a malformed key is refused
 *   anything else                 an HMAC secret, the file's bytes:
 *                                 HS256, or alg= HS384, HS512
 *
 * The EVP_PKEYs live as long as the configuration's pool.  A JWKS
 * fetched at run time (events_auth_jwt_key_request) is read by the same
 * ngx_http_events_jwk_set(), into a pool of its own that is freed with
 * its keys when a newer JWKS replaces it.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/err.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/param_build.h>
#include <jansson.h>

#include "ngx_http_events_jwt.h"
#include "ngx_http_events_jwk.h"


#define NGX_HTTP_EVENTS_JWK_MAX_FILE    65536
#define NGX_HTTP_EVENTS_JWK_MAX_SECRET  4096
#define NGX_HTTP_EVENTS_JWK_MAX_TEXT    256

/* no alg= nor "alg": the key type's own */
#define NGX_HTTP_EVENTS_JWK_DEFAULT     NGX_HTTP_EVENTS_JWT_NALGS


static ngx_int_t ngx_http_events_jwk_read(ngx_conf_t *cf, ngx_str_t *path,
    ngx_str_t *data);
static char *ngx_http_events_jwk_secret(ngx_conf_t *cf, ngx_str_t *path,
    ngx_str_t *data, ngx_uint_t want, ngx_http_events_jwt_key_t *key);
static char *ngx_http_events_jwk_pem(ngx_conf_t *cf, ngx_str_t *path,
    ngx_str_t *data, ngx_uint_t want, ngx_http_events_jwt_key_t *key);
static char *ngx_http_events_jwk_entry(ngx_pool_t *pool, json_t *jwk,
    ngx_http_events_jwt_key_t *key);
static EVP_PKEY *ngx_http_events_jwk_rsa(ngx_pool_t *pool, json_t *jwk,
    char **error);
static EVP_PKEY *ngx_http_events_jwk_ec(ngx_pool_t *pool, json_t *jwk,
    char **error);
static EVP_PKEY *ngx_http_events_jwk_okp(ngx_pool_t *pool, json_t *jwk,
    char **error);
static ngx_int_t ngx_http_events_jwk_bytes(ngx_pool_t *pool, json_t *jwk,
    const char *name, size_t len, ngx_str_t *out);
static EVP_PKEY *ngx_http_events_jwk_fromdata(const char *type,
    OSSL_PARAM_BLD *bld);
static char *ngx_http_events_jwk_alg(ngx_pool_t *pool, EVP_PKEY *pkey,
    ngx_uint_t want, const char *what, ngx_uint_t *alg);
static char *ngx_http_events_jwk_misfit(ngx_pool_t *pool, const char *what,
    ngx_uint_t want, const char *key, const char *algs);
static char *ngx_http_events_jwk_text(ngx_pool_t *pool, const char *fmt,
    ...);
static ngx_int_t ngx_http_events_jwk_keep(ngx_pool_t *pool, EVP_PKEY *pkey);
static void ngx_http_events_jwk_free(void *data);
static const char *ngx_http_events_jwk_ssl_error(void);


/* events_auth_jwt_key FILE [kid=ID] [alg=ALG]: the keys the file holds */

char *
ngx_http_events_jwk_load(ngx_conf_t *cf, ngx_array_t *keys, ngx_str_t *path,
    ngx_str_t *kid, ngx_str_t *alg)
{
    char                       *rv, *error;
    u_char                     *p, *last;
    ngx_int_t                   a, rc;
    ngx_str_t                   data;
    ngx_uint_t                  want;
    ngx_http_events_jwt_key_t  *key;

    if (ngx_conf_full_name(cf->cycle, path, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    want = NGX_HTTP_EVENTS_JWK_DEFAULT;

    if (alg->len) {
        a = ngx_http_events_jwt_alg_find(alg->data, alg->len);

        if (a == NGX_ERROR) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "unknown alg \"%V\" for the key file \"%V\"; "
                               "known: HS256, HS384, HS512, RS256, RS384, "
                               "RS512, PS256, PS384, PS512, ES256, ES384, "
                               "ES512, EdDSA", alg, path);
            return NGX_CONF_ERROR;
        }

        want = a;
    }

    if (ngx_http_events_jwk_read(cf, path, &data) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    p = data.data;
    last = data.data + data.len;

    while (p < last && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n'))
    {
        p++;
    }

    if (last - p > 0 && *p == '{') {
        if (kid->len || alg->len) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"%s=\" does not apply to the JWKS \"%V\": "
                               "its keys name their own %s",
                               kid->len ? "kid" : "alg", path,
                               kid->len ? "kid" : "alg");
            return NGX_CONF_ERROR;
        }

        rc = ngx_http_events_jwk_set(cf->pool, &data, keys, &error);

        if (rc == NGX_DECLINED) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "the JWKS \"%V\"%s",
                               path, error);
        }

        return (rc == NGX_OK) ? NGX_CONF_OK : NGX_CONF_ERROR;
    }

    key = ngx_array_push(keys);
    if (key == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(key, sizeof(ngx_http_events_jwt_key_t));
    key->kid = *kid;

    if (last - p >= 11 && ngx_strncmp(p, "-----BEGIN ", 11) == 0) {
        rv = ngx_http_events_jwk_pem(cf, path, &data, want, key);

    } else {
        rv = ngx_http_events_jwk_secret(cf, path, &data, want, key);
    }

    if (rv != NGX_CONF_OK) {
        keys->nelts--;
    }

    return rv;
}


/* an HMAC secret; a key written with echo ends with a newline */

static char *
ngx_http_events_jwk_secret(ngx_conf_t *cf, ngx_str_t *path, ngx_str_t *data,
    ngx_uint_t want, ngx_http_events_jwt_key_t *key)
{
    size_t  siglen;

    key->alg = NGX_HTTP_EVENTS_JWT_HS256;

    if (want != NGX_HTTP_EVENTS_JWK_DEFAULT) {
        if (ngx_http_events_jwt_alg(want)->kind != NGX_HTTP_EVENTS_JWT_HMAC) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "the key in \"%V\" cannot verify tokens: "
                               "alg=%s does not fit an HMAC secret (HS256, "
                               "HS384 or HS512); a PEM public key starts "
                               "with \"-----BEGIN \"", path,
                               ngx_http_events_jwt_alg_name(want));
            return NGX_CONF_ERROR;
        }

        key->alg = want;
    }

    while (data->len && (data->data[data->len - 1] == '\n'
                         || data->data[data->len - 1] == '\r'))
    {
        data->len--;
    }

    if (data->len == 0 || data->len > NGX_HTTP_EVENTS_JWK_MAX_SECRET) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "the %s secret in \"%V\" must hold 1 to %d "
                           "bytes", ngx_http_events_jwt_alg_name(key->alg),
                           path, NGX_HTTP_EVENTS_JWK_MAX_SECRET);
        return NGX_CONF_ERROR;
    }

    key->secret = *data;

    siglen = ngx_http_events_jwt_alg(key->alg)->siglen;

    if (data->len < siglen) {
        /* allowed, as before, but a short secret is a guessable one */
        ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                           "the %s secret in \"%V\" has %uz bytes, fewer "
                           "than the %uz RFC 7518 asks for (\"openssl rand "
                           "-base64 %uz\" makes one)",
                           ngx_http_events_jwt_alg_name(key->alg), path,
                           data->len, siglen, siglen);
    }

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_events_jwk_read(ngx_conf_t *cf, ngx_str_t *path, ngx_str_t *data)
{
    ssize_t          n;
    ngx_fd_t         fd;
    ngx_file_info_t  fi;

    fd = ngx_open_file(path->data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
    if (fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           ngx_open_file_n " \"%V\" failed", path);
        return NGX_ERROR;
    }

    if (ngx_fd_info(fd, &fi) == NGX_FILE_ERROR
        || ngx_file_size(&fi) == 0
        || ngx_file_size(&fi) > NGX_HTTP_EVENTS_JWK_MAX_FILE)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "the key file \"%V\" must hold 1 to %d bytes",
                           path, NGX_HTTP_EVENTS_JWK_MAX_FILE);
        (void) ngx_close_file(fd);
        return NGX_ERROR;
    }

    data->data = ngx_pnalloc(cf->pool, ngx_file_size(&fi));
    if (data->data == NULL) {
        (void) ngx_close_file(fd);
        return NGX_ERROR;
    }

    n = ngx_read_fd(fd, data->data, ngx_file_size(&fi));
    (void) ngx_close_file(fd);

    if (n != ngx_file_size(&fi)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "could not read the key file \"%V\"", path);
        return NGX_ERROR;
    }

    data->len = n;

    return NGX_OK;
}


static char *
ngx_http_events_jwk_pem(ngx_conf_t *cf, ngx_str_t *path, ngx_str_t *data,
    ngx_uint_t want, ngx_http_events_jwt_key_t *key)
{
    BIO       *bio;
    char      *error;
    EVP_PKEY  *pkey;

    if (ngx_strlcasestrn(data->data, data->data + data->len,
                         (u_char *) "PRIVATE KEY", 11 - 1)
        != NULL)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "the key file \"%V\" holds a private key; give "
                           "nginx the public key (openssl pkey -pubout)",
                           path);
        return NGX_CONF_ERROR;
    }

    bio = BIO_new_mem_buf(data->data, (int) data->len);
    if (bio == NULL) {
        return NGX_CONF_ERROR;
    }

    pkey = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
    BIO_free(bio);

    if (pkey == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "the key file \"%V\" is not a PEM public key "
                           "(\"BEGIN PUBLIC KEY\"): %s",
                           path, ngx_http_events_jwk_ssl_error());
        return NGX_CONF_ERROR;
    }

    error = ngx_http_events_jwk_alg(cf->pool, pkey, want, "alg=",
                                    &key->alg);

    if (error == NGX_CONF_ERROR) {
        EVP_PKEY_free(pkey);
        return NGX_CONF_ERROR;
    }

    if (error) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "the key in \"%V\" cannot verify tokens: %s",
                           path, error);
        EVP_PKEY_free(pkey);
        return NGX_CONF_ERROR;
    }

    if (ngx_http_events_jwk_keep(cf->pool, pkey) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    key->pkey = pkey;

    return NGX_CONF_OK;
}


/*
 * A JWKS's keys, pushed to "keys" and living in "pool" (the EVP_PKEYs
 * are freed with it): a file's at configuration load, a fetched one's
 * at run time (ngx_http_events_jwks.c).  NGX_DECLINED: *error says what
 * is wrong, in words that follow the JWKS's name (" is not JSON: ...");
 * NGX_ERROR: out of memory.
 */

ngx_int_t
ngx_http_events_jwk_set(ngx_pool_t *pool, ngx_str_t *data,
    ngx_array_t *keys, char **error)
{
    char                       *e;
    size_t                      i;
    json_t                     *root, *list, *jwk, *kid;
    ngx_uint_t                  used;
    json_error_t                jerr;
    ngx_http_events_jwt_key_t  *key;

    root = json_loadb((char *) data->data, data->len, JSON_REJECT_DUPLICATES,
                      &jerr);
    if (root == NULL) {
        *error = ngx_http_events_jwk_text(pool, " is not JSON: %s at line %d",
                                          jerr.text, jerr.line);
        return (*error == NGX_CONF_ERROR) ? NGX_ERROR : NGX_DECLINED;
    }

    list = json_object_get(root, "keys");

    if (!json_is_array(list)) {
        *error = " has no \"keys\" list";
        json_decref(root);
        return NGX_DECLINED;
    }

    used = 0;

    json_array_foreach(list, i, jwk) {

        key = ngx_array_push(keys);
        if (key == NULL) {
            json_decref(root);
            return NGX_ERROR;
        }

        ngx_memzero(key, sizeof(ngx_http_events_jwt_key_t));

        e = ngx_http_events_jwk_entry(pool, jwk, key);

        if (e == NGX_CONF_OK) {
            used++;
            continue;
        }

        keys->nelts--;

        if (e == NGX_CONF_ERROR) {
            json_decref(root);
            return NGX_ERROR;
        }

        if (*e == '\0') {
            /* a key for another use or alg: not ours to check */
            continue;
        }

        kid = json_is_object(jwk) ? json_object_get(jwk, "kid") : NULL;

        *error = ngx_http_events_jwk_text(pool, ": key %uz%s%s%s: %s", i,
                     json_is_string(kid) ? " (kid \"" : "",
                     json_is_string(kid) ? json_string_value(kid) : "",
                     json_is_string(kid) ? "\")" : "", e);
        json_decref(root);
        return (*error == NGX_CONF_ERROR) ? NGX_ERROR : NGX_DECLINED;
    }

    json_decref(root);

    if (used == 0) {
        *error = " has no signing key of type RSA, EC (P-256, P-384, "
                 "P-521) or OKP Ed25519";
        return NGX_DECLINED;
    }

    return NGX_OK;
}


/*
 * NGX_CONF_OK: the key is in *key; "": a key to skip (another use, an
 * alg or a type not verified here); NGX_CONF_ERROR: out of memory;
 * otherwise what is wrong with it.
 */

static char *
ngx_http_events_jwk_entry(ngx_pool_t *pool, json_t *jwk,
    ngx_http_events_jwt_key_t *key)
{
    char        *error;
    json_t      *kty, *use, *alg, *kid;
    EVP_PKEY    *pkey;
    ngx_int_t    found;
    ngx_uint_t   a, want;

    if (!json_is_object(jwk)) {
        return "not an object";
    }

    kty = json_object_get(jwk, "kty");
    use = json_object_get(jwk, "use");
    alg = json_object_get(jwk, "alg");
    kid = json_object_get(jwk, "kid");

    if (!json_is_string(kty)) {
        return "no \"kty\"";
    }

    if (use && (!json_is_string(use)
                || ngx_strcmp(json_string_value(use), "sig") != 0))
    {
        return "";
    }

    if (kid && !json_is_string(kid)) {
        return "\"kid\" is not a string";
    }

    if (alg && !json_is_string(alg)) {
        return "\"alg\" is not a string";
    }

    want = NGX_HTTP_EVENTS_JWK_DEFAULT;

    if (alg) {
        found = ngx_http_events_jwt_alg_find((u_char *) json_string_value(alg),
                                             json_string_length(alg));
        if (found == NGX_ERROR) {
            /* RSA-OAEP, ECDH-ES, ES256K...: a key for something else */
            return "";
        }

        want = found;
    }

    error = NULL;

    if (ngx_strcmp(json_string_value(kty), "RSA") == 0) {
        pkey = ngx_http_events_jwk_rsa(pool, jwk, &error);

    } else if (ngx_strcmp(json_string_value(kty), "EC") == 0) {
        pkey = ngx_http_events_jwk_ec(pool, jwk, &error);

    } else if (ngx_strcmp(json_string_value(kty), "OKP") == 0) {
        pkey = ngx_http_events_jwk_okp(pool, jwk, &error);

    } else {
        return "";
    }

    if (pkey == NULL) {
        return error;
    }

    /* a known alg that does not fit the key is a mistake, not a skip */
    error = ngx_http_events_jwk_alg(pool, pkey, want, "\"alg\" ", &a);

    if (error) {
        EVP_PKEY_free(pkey);
        return error;
    }

    if (ngx_http_events_jwk_keep(pool, pkey) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    key->alg = a;
    key->pkey = pkey;

    if (kid) {
        key->kid.len = json_string_length(kid);
        key->kid.data = ngx_pnalloc(pool, key->kid.len + 1);
        if (key->kid.data == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_memcpy(key->kid.data, json_string_value(kid), key->kid.len);
    }

    return NGX_CONF_OK;
}


static EVP_PKEY *
ngx_http_events_jwk_rsa(ngx_pool_t *pool, json_t *jwk, char **error)
{
    BIGNUM          *n, *e;
    EVP_PKEY        *pkey;
    ngx_str_t        nb, eb;
    OSSL_PARAM_BLD  *bld;

    if (ngx_http_events_jwk_bytes(pool, jwk, "n", 0, &nb) != NGX_OK
        || ngx_http_events_jwk_bytes(pool, jwk, "e", 0, &eb) != NGX_OK)
    {
        *error = "\"n\" and \"e\" must be base64url";
        return NULL;
    }

    n = BN_bin2bn(nb.data, (int) nb.len, NULL);
    e = BN_bin2bn(eb.data, (int) eb.len, NULL);
    bld = OSSL_PARAM_BLD_new();
    pkey = NULL;

    if (n && e && bld
        && OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n)
        && OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e))
    {
        pkey = ngx_http_events_jwk_fromdata("RSA", bld);
    }

    OSSL_PARAM_BLD_free(bld);
    BN_free(n);
    BN_free(e);

    if (pkey == NULL) {
        *error = "not an RSA public key";
    }

    return pkey;
}


static EVP_PKEY *
ngx_http_events_jwk_ec(ngx_pool_t *pool, json_t *jwk, char **error)
{
    int                               ok;
    size_t                            len;
    json_t                           *crv;
    EVP_PKEY                         *pkey;
    ngx_str_t                         x, y;
    ngx_uint_t                        a;
    EVP_PKEY_CTX                     *ctx;
    OSSL_PARAM_BLD                   *bld;
    const ngx_http_events_jwt_alg_t  *def;
    u_char                            point[1 + 2 * 66];    /* P-521 */

    crv = json_object_get(jwk, "crv");
    def = NULL;

    for (a = 0; json_is_string(crv) && a < NGX_HTTP_EVENTS_JWT_NALGS; a++) {
        def = ngx_http_events_jwt_alg(a);

        if (def->kind == NGX_HTTP_EVENTS_JWT_ECDSA
            && ngx_strcmp(json_string_value(crv), def->curve) == 0)
        {
            break;
        }

        def = NULL;
    }

    if (def == NULL) {
        /* secp256k1 and the like: not verified here */
        *error = "";
        return NULL;
    }

    /* a coordinate is as long as the order, half the signature */
    len = def->siglen / 2;

    if (ngx_http_events_jwk_bytes(pool, jwk, "x", len, &x) != NGX_OK
        || ngx_http_events_jwk_bytes(pool, jwk, "y", len, &y) != NGX_OK)
    {
        *error = ngx_http_events_jwk_text(pool, "\"x\" and \"y\" must be %uz "
                                          "bytes in base64url", len);
        return NULL;
    }

    /* an uncompressed point, as SEC 1 writes it */
    point[0] = 0x04;
    ngx_memcpy(point + 1, x.data, len);
    ngx_memcpy(point + 1 + len, y.data, len);

    bld = OSSL_PARAM_BLD_new();
    pkey = NULL;

    if (bld
        && OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME,
                                           def->group, 0)
        && OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY,
                                            point, 1 + 2 * len))
    {
        pkey = ngx_http_events_jwk_fromdata("EC", bld);
    }

    OSSL_PARAM_BLD_free(bld);

    if (pkey) {
        ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
        ok = ctx && EVP_PKEY_public_check(ctx) == 1;
        EVP_PKEY_CTX_free(ctx);

        if (!ok) {
            EVP_PKEY_free(pkey);
            pkey = NULL;
        }
    }

    if (pkey == NULL) {
        ERR_clear_error();
        *error = ngx_http_events_jwk_text(pool, "not a point of %s",
                                          def->curve);
    }

    return pkey;
}


static EVP_PKEY *
ngx_http_events_jwk_okp(ngx_pool_t *pool, json_t *jwk, char **error)
{
    json_t          *crv;
    EVP_PKEY        *pkey;
    ngx_str_t        x;
    OSSL_PARAM_BLD  *bld;

    crv = json_object_get(jwk, "crv");

    if (!json_is_string(crv)
        || ngx_strcmp(json_string_value(crv), "Ed25519") != 0)
    {
        /* Ed448, X25519 (not a signing key) */
        *error = "";
        return NULL;
    }

    if (ngx_http_events_jwk_bytes(pool, jwk, "x", 32, &x) != NGX_OK) {
        *error = "\"x\" must be 32 bytes in base64url";
        return NULL;
    }

    bld = OSSL_PARAM_BLD_new();
    pkey = NULL;

    if (bld
        && OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY,
                                            x.data, x.len))
    {
        pkey = ngx_http_events_jwk_fromdata("ED25519", bld);
    }

    OSSL_PARAM_BLD_free(bld);

    if (pkey == NULL) {
        *error = "not an Ed25519 public key";
    }

    return pkey;
}


/* a base64url member, "len" bytes long unless len is 0 */

static ngx_int_t
ngx_http_events_jwk_bytes(ngx_pool_t *pool, json_t *jwk, const char *name,
    size_t len, ngx_str_t *out)
{
    json_t     *v;
    ngx_str_t   src;

    v = json_object_get(jwk, name);

    if (!json_is_string(v) || json_string_length(v) == 0) {
        return NGX_ERROR;
    }

    src.data = (u_char *) json_string_value(v);
    src.len = json_string_length(v);

    if (ngx_strlchr(src.data, src.data + src.len, '=') != NULL) {
        return NGX_ERROR;
    }

    out->data = ngx_pnalloc(pool, ngx_base64_decoded_length(src.len) + 1);
    if (out->data == NULL) {
        return NGX_ERROR;
    }

    if (ngx_decode_base64url(out, &src) != NGX_OK
        || out->len == 0 || (len && out->len != len))
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static EVP_PKEY *
ngx_http_events_jwk_fromdata(const char *type, OSSL_PARAM_BLD *bld)
{
    EVP_PKEY      *pkey;
    OSSL_PARAM    *params;
    EVP_PKEY_CTX  *ctx;

    pkey = NULL;
    params = OSSL_PARAM_BLD_to_param(bld);
    ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);

    if (params == NULL || ctx == NULL
        || EVP_PKEY_fromdata_init(ctx) != 1
        || EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1)
    {
        pkey = NULL;
        ERR_clear_error();
    }

    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);

    return pkey;
}


/*
 * The alg a key verifies: the one its type fixes, or the one "want"
 * names among those its type fits (NGX_HTTP_EVENTS_JWK_DEFAULT: the
 * type's first); otherwise why it verifies none ("what" says where the
 * alg was named: "alg=" or a JWK's "alg").
 */

static char *
ngx_http_events_jwk_alg(ngx_pool_t *pool, EVP_PKEY *pkey, ngx_uint_t want,
    const char *what, ngx_uint_t *alg)
{
    size_t                            len;
    ngx_uint_t                        a, kind;
    const ngx_http_events_jwt_alg_t  *def;
    char                              group[64];

    kind = (want == NGX_HTTP_EVENTS_JWK_DEFAULT)
           ? NGX_HTTP_EVENTS_JWT_NALGS : ngx_http_events_jwt_alg(want)->kind;

    if (EVP_PKEY_is_a(pkey, "RSA")) {
        if (EVP_PKEY_get_bits(pkey) < 2048) {
            return "an RSA key must have 2048 bits or more";
        }

        if (want == NGX_HTTP_EVENTS_JWK_DEFAULT) {
            *alg = NGX_HTTP_EVENTS_JWT_RS256;
            return NULL;
        }

        if (kind != NGX_HTTP_EVENTS_JWT_RSA
            && kind != NGX_HTTP_EVENTS_JWT_PSS)
        {
            return ngx_http_events_jwk_misfit(pool, what, want, "an RSA key",
                                              "RS256, RS384, RS512, PS256, "
                                              "PS384 or PS512");
        }

        *alg = want;
        return NULL;
    }

    if (EVP_PKEY_is_a(pkey, "EC")) {
        if (EVP_PKEY_get_group_name(pkey, group, sizeof(group), &len) != 1) {
            ERR_clear_error();
            group[0] = '\0';
        }

        for (a = 0; a < NGX_HTTP_EVENTS_JWT_NALGS; a++) {
            def = ngx_http_events_jwt_alg(a);

            if (def->kind == NGX_HTTP_EVENTS_JWT_ECDSA
                && ngx_strcmp(group, def->group) == 0)
            {
                break;
            }
        }

        if (a == NGX_HTTP_EVENTS_JWT_NALGS) {
            return "an EC key must be on P-256, P-384 or P-521";
        }

        if (want != NGX_HTTP_EVENTS_JWK_DEFAULT && want != a) {
            return ngx_http_events_jwk_misfit(pool, what, want,
                       ngx_http_events_jwk_text(pool, "an EC key on %s",
                                                def->curve),
                       def->name);
        }

        *alg = a;
        return NULL;
    }

    if (EVP_PKEY_is_a(pkey, "ED25519")) {
        if (want != NGX_HTTP_EVENTS_JWK_DEFAULT
            && want != NGX_HTTP_EVENTS_JWT_EDDSA)
        {
            return ngx_http_events_jwk_misfit(pool, what, want,
                                              "an Ed25519 key", "EdDSA");
        }

        *alg = NGX_HTTP_EVENTS_JWT_EDDSA;
        return NULL;
    }

    return "the key type is not RSA, EC or Ed25519";
}


static char *
ngx_http_events_jwk_misfit(ngx_pool_t *pool, const char *what, ngx_uint_t want,
    const char *key, const char *algs)
{
    if (key == NGX_CONF_ERROR) {
        return NGX_CONF_ERROR;
    }

    return ngx_http_events_jwk_text(pool, "%s%s does not fit %s (%s)", what,
                                    ngx_http_events_jwt_alg_name(want), key,
                                    algs);
}


/* a message in the configuration's pool; NGX_CONF_ERROR: out of memory */

static char *
ngx_http_events_jwk_text(ngx_pool_t *pool, const char *fmt, ...)
{
    u_char   *p, *last;
    va_list   args;

    p = ngx_pnalloc(pool, NGX_HTTP_EVENTS_JWK_MAX_TEXT);
    if (p == NULL) {
        return NGX_CONF_ERROR;
    }

    va_start(args, fmt);
    last = ngx_vslprintf(p, p + NGX_HTTP_EVENTS_JWK_MAX_TEXT - 1, fmt, args);
    va_end(args);

    *last = '\0';

    return (char *) p;
}


static ngx_int_t
ngx_http_events_jwk_keep(ngx_pool_t *pool, EVP_PKEY *pkey)
{
    ngx_pool_cleanup_t  *cln;

    cln = ngx_pool_cleanup_add(pool, 0);
    if (cln == NULL) {
        EVP_PKEY_free(pkey);
        return NGX_ERROR;
    }

    cln->handler = ngx_http_events_jwk_free;
    cln->data = pkey;

    return NGX_OK;
}


static void
ngx_http_events_jwk_free(void *data)
{
    EVP_PKEY_free(data);
}


static const char *
ngx_http_events_jwk_ssl_error(void)
{
    const char  *reason;

    reason = ERR_reason_error_string(ERR_peek_last_error());
    ERR_clear_error();

    return reason ? reason : "unknown error";
}
