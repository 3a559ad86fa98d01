
/*
 * Copyright (C) ngx_http_events_module authors
 */


/*
 * Built-in tokens: JWTs signed with HS256, HS384 or HS512 by a shared
 * secret, or by the holder of a private key whose public half is
 * configured (ngx_http_events_jwk.c loads it): RS256, RS384, RS512
 * (PKCS #1 v1.5), PS256, PS384, PS512 (RSASSA-PSS), ES256, ES384, ES512
 * (P-256, P-384, P-521) or EdDSA (Ed25519), as RFC 7518 and 8037 say.
 *
 * Each key verifies one alg, fixed when it is loaded; a token is
 * checked only with keys of its alg and kid, so "none" and unknown algs
 * match nothing, a public key is never used as an HMAC secret, and an
 * RSA key verifies PKCS #1 v1.5 or PSS, never both (a PSS check of an
 * RS token, or the reverse, is never made).  An HMAC is compared in
 * constant time; "exp" is required.
 * The claims say the tenant (authoritative), the subject, and what the
 * bearer may publish and subscribe to, as type patterns.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rsa.h>
#include <openssl/ec.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <jansson.h>

#include "ngx_http_events_jwt.h"
#include "ngx_http_events_match.h"
#include "ngx_http_events_store.h"


static ngx_int_t ngx_http_events_jwt_segment(ngx_str_t *seg, ngx_pool_t *pool,
    ngx_str_t *out);
static json_t *ngx_http_events_jwt_json(ngx_str_t *seg, ngx_pool_t *pool);
static ngx_int_t ngx_http_events_jwt_signature(
    ngx_http_events_jwt_conf_t *conf, json_t *header, ngx_str_t *signed_part,
    ngx_str_t *sig, ngx_pool_t *pool, ngx_http_events_error_t *err);
static ngx_uint_t ngx_http_events_jwt_key_fits(ngx_http_events_jwt_key_t *key,
    ngx_uint_t alg, ngx_str_t *kid, ngx_uint_t has_kid);
static ngx_int_t ngx_http_events_jwt_hmac(ngx_http_events_jwt_key_t *key,
    ngx_str_t *signed_part, ngx_str_t *raw);
static ngx_int_t ngx_http_events_jwt_pkey(ngx_http_events_jwt_key_t *key,
    ngx_str_t *signed_part, ngx_str_t *raw, ngx_pool_t *pool);
static ngx_int_t ngx_http_events_jwt_der(ngx_str_t *raw, ngx_pool_t *pool,
    ngx_str_t *der);
static ngx_int_t ngx_http_events_jwt_times(ngx_http_events_jwt_conf_t *conf,
    json_t *payload, ngx_http_events_claims_t *claims,
    ngx_http_events_error_t *err);
static ngx_int_t ngx_http_events_jwt_claims(ngx_http_events_jwt_conf_t *conf,
    json_t *payload, ngx_pool_t *pool, ngx_http_events_claims_t *claims,
    ngx_http_events_error_t *err);
static ngx_int_t ngx_http_events_jwt_grants(json_t *v, ngx_pool_t *pool,
    ngx_str_t **grants, ngx_uint_t *n);
static ngx_int_t ngx_http_events_jwt_string(json_t *v, ngx_pool_t *pool,
    ngx_str_t *s);
static void ngx_http_events_jwt_error(ngx_http_events_error_t *err,
    const char *code, const char *message);


/*
 * By NGX_HTTP_EVENTS_JWT_*.  An ECDSA signature is r || s, each as long
 * as the curve's order (RFC 7518, 3.4).
 */

static const ngx_http_events_jwt_alg_t  ngx_http_events_jwt_algs[] = {
    { "HS256", NGX_HTTP_EVENTS_JWT_HMAC, EVP_sha256, 32, NULL, NULL },
    { "RS256", NGX_HTTP_EVENTS_JWT_RSA, EVP_sha256, 0, NULL, NULL },
    { "ES256", NGX_HTTP_EVENTS_JWT_ECDSA, EVP_sha256, 64, "prime256v1",
      "P-256" },
    { "EdDSA", NGX_HTTP_EVENTS_JWT_OKP, NULL, 64, NULL, "Ed25519" },
    { "HS384", NGX_HTTP_EVENTS_JWT_HMAC, EVP_sha384, 48, NULL, NULL },
    { "HS512", NGX_HTTP_EVENTS_JWT_HMAC, EVP_sha512, 64, NULL, NULL },
    { "RS384", NGX_HTTP_EVENTS_JWT_RSA, EVP_sha384, 0, NULL, NULL },
    { "RS512", NGX_HTTP_EVENTS_JWT_RSA, EVP_sha512, 0, NULL, NULL },
    { "PS256", NGX_HTTP_EVENTS_JWT_PSS, EVP_sha256, 0, NULL, NULL },
    { "PS384", NGX_HTTP_EVENTS_JWT_PSS, EVP_sha384, 0, NULL, NULL },
    { "PS512", NGX_HTTP_EVENTS_JWT_PSS, EVP_sha512, 0, NULL, NULL },
    { "ES384", NGX_HTTP_EVENTS_JWT_ECDSA, EVP_sha384, 96, "secp384r1",
      "P-384" },
    { "ES512", NGX_HTTP_EVENTS_JWT_ECDSA, EVP_sha512, 132, "secp521r1",
      "P-521" }
};


ngx_int_t
ngx_http_events_jwt_verify(ngx_http_events_jwt_conf_t *conf, ngx_str_t *token,
    ngx_pool_t *pool, ngx_http_events_claims_t *claims,
    ngx_http_events_error_t *err)
{
    u_char     *dot1, *dot2, *end;
    json_t     *header, *payload;
    ngx_int_t   rc;
    ngx_str_t   h, p, sig, signed_part;

    ngx_memzero(claims, sizeof(ngx_http_events_claims_t));
    conf->no_key = 0;

    if (token->len > NGX_HTTP_EVENTS_MAX_TOKEN) {
        ngx_http_events_jwt_error(err, "invalid_token",
                                  "the token is too large");
        return NGX_ERROR;
    }

    end = token->data + token->len;
    dot1 = ngx_strlchr(token->data, end, '.');
    dot2 = dot1 ? ngx_strlchr(dot1 + 1, end, '.') : NULL;

    if (dot1 == NULL || dot2 == NULL
        || ngx_strlchr(dot2 + 1, end, '.') != NULL
        || dot1 == token->data || dot2 == dot1 + 1 || dot2 + 1 == end)
    {
        ngx_http_events_jwt_error(err, "invalid_token",
                                  "the token is not a JWT");
        return NGX_ERROR;
    }

    h.data = token->data;
    h.len = dot1 - token->data;
    p.data = dot1 + 1;
    p.len = dot2 - p.data;
    sig.data = dot2 + 1;
    sig.len = end - sig.data;
    signed_part.data = token->data;
    signed_part.len = dot2 - token->data;

    header = ngx_http_events_jwt_json(&h, pool);
    if (header == NULL) {
        ngx_http_events_jwt_error(err, "invalid_token",
                                  "the token's header is not JSON");
        return NGX_ERROR;
    }

    rc = ngx_http_events_jwt_signature(conf, header, &signed_part, &sig, pool,
                                       err);
    json_decref(header);

    if (rc != NGX_OK) {
        return NGX_ERROR;
    }

    /* only a signed payload is read */

    payload = ngx_http_events_jwt_json(&p, pool);
    if (payload == NULL) {
        ngx_http_events_jwt_error(err, "invalid_token",
                                  "the token's payload is not JSON");
        return NGX_ERROR;
    }

    rc = ngx_http_events_jwt_times(conf, payload, claims, err);

    if (rc == NGX_OK) {
        rc = ngx_http_events_jwt_claims(conf, payload, pool, claims, err);
    }

    json_decref(payload);

    return rc;
}


/*
 * JWS segments are base64url without padding (RFC 7515, 2):
 * ngx_decode_base64url() stops at the first "=" and ignores what
 * follows, so a padded or suffixed segment would pass for another.
 */

static ngx_int_t
ngx_http_events_jwt_segment(ngx_str_t *seg, ngx_pool_t *pool, ngx_str_t *out)
{
    if (ngx_strlchr(seg->data, seg->data + seg->len, '=') != NULL) {
        return NGX_ERROR;
    }

    out->data = ngx_pnalloc(pool, ngx_base64_decoded_length(seg->len) + 1);
    if (out->data == NULL) {
        return NGX_ERROR;
    }

    return ngx_decode_base64url(out, seg);
}


static json_t *
ngx_http_events_jwt_json(ngx_str_t *seg, ngx_pool_t *pool)
{
    json_t        *v;
    ngx_str_t      raw;
    json_error_t   jerr;

    if (ngx_http_events_jwt_segment(seg, pool, &raw) != NGX_OK) {
        return NULL;
    }

    v = json_loadb((char *) raw.data, raw.len, JSON_REJECT_DUPLICATES, &jerr);

    if (v && !json_is_object(v)) {
        json_decref(v);
        return NULL;
    }

    return v;
}


/*
 * The token's alg picks the keys it may be checked with: only keys of
 * that alg, so a public key is never taken for an HMAC secret (the
 * HS256-with-the-public-key attack), an RSA key for PSS verifies no RS
 * token nor the reverse, and "none" matches no key at all.
 */

static ngx_int_t
ngx_http_events_jwt_signature(ngx_http_events_jwt_conf_t *conf,
    json_t *header, ngx_str_t *signed_part, ngx_str_t *sig, ngx_pool_t *pool,
    ngx_http_events_error_t *err)
{
    json_t                           *alg, *kid;
    ngx_int_t                         rc, a;
    ngx_str_t                         raw, want;
    ngx_uint_t                        i, set, tried;
    ngx_array_t                      *keys;
    ngx_http_events_jwt_key_t        *key;
    const ngx_http_events_jwt_alg_t  *def;

    alg = json_object_get(header, "alg");

    a = json_is_string(alg)
        ? ngx_http_events_jwt_alg_find((u_char *) json_string_value(alg),
                                       json_string_length(alg))
        : NGX_ERROR;

    if (a == NGX_ERROR) {
        ngx_http_events_jwt_error(err, "invalid_token",
                                  "the token's alg is not allowed; this "
                                  "server takes HS256, HS384, HS512, "
                                  "RS256, RS384, RS512, PS256, PS384, "
                                  "PS512, ES256, ES384, ES512 and EdDSA");
        return NGX_ERROR;
    }

    def = &ngx_http_events_jwt_algs[a];

    kid = json_object_get(header, "kid");

    if (kid && !json_is_string(kid)) {
        ngx_http_events_jwt_error(err, "invalid_token",
                                  "the token's kid is not a string");
        return NGX_ERROR;
    }

    ngx_str_null(&want);

    if (kid) {
        want.data = (u_char *) json_string_value(kid);
        want.len = json_string_length(kid);
    }

    if (ngx_http_events_jwt_segment(sig, pool, &raw) != NGX_OK
        || raw.len == 0
        || (def->siglen && raw.len != def->siglen))
    {
        ngx_http_events_jwt_error(err, "invalid_token",
                                  "the token's signature is malformed");
        return NGX_ERROR;
    }

    tried = 0;

    /* the configured keys first, then a fetched JWKS's: any may verify */

    for (set = 0; set < 2; set++) {
        keys = set ? conf->fetched : conf->keys;

        if (keys == NULL) {
            continue;
        }

        key = keys->elts;

        for (i = 0; i < keys->nelts; i++) {

            if (!ngx_http_events_jwt_key_fits(&key[i], a, &want, kid != NULL))
            {
                continue;
            }

            tried++;

            rc = (def->kind == NGX_HTTP_EVENTS_JWT_HMAC)
                 ? ngx_http_events_jwt_hmac(&key[i], signed_part, &raw)
                 : ngx_http_events_jwt_pkey(&key[i], signed_part, &raw, pool);

            if (rc == NGX_OK) {
                return NGX_OK;
            }

            if (rc == NGX_ERROR) {
                ngx_http_events_error(err, 0, "", NULL, NULL, NULL,
                                      "signature check");
                return NGX_ERROR;
            }
        }
    }

    conf->no_key = (tried == 0);

    ngx_http_events_jwt_error(err, "invalid_token",
                              tried ? "the token's signature is wrong"
                                    : "no key for the token's kid and alg");
    return NGX_ERROR;
}


/* "kid": "" names a key; it is not the absence of a kid */

static ngx_uint_t
ngx_http_events_jwt_key_fits(ngx_http_events_jwt_key_t *key, ngx_uint_t alg,
    ngx_str_t *kid, ngx_uint_t has_kid)
{
    return key->alg == alg
           && has_kid == (key->kid.len != 0)
           && key->kid.len == kid->len
           && (kid->len == 0
               || ngx_strncmp(key->kid.data, kid->data, kid->len) == 0);
}


/* whether a key of "keys" may check a token of that alg and kid */

ngx_uint_t
ngx_http_events_jwt_has_key(ngx_array_t *keys, ngx_uint_t alg, ngx_str_t *kid,
    ngx_uint_t has_kid)
{
    ngx_uint_t                  i;
    ngx_http_events_jwt_key_t  *key;

    if (keys == NULL) {
        return 0;
    }

    key = keys->elts;

    for (i = 0; i < keys->nelts; i++) {
        if (ngx_http_events_jwt_key_fits(&key[i], alg, kid, has_kid)) {
            return 1;
        }
    }

    return 0;
}


/*
 * A token's alg and kid, read before its keys are at hand (to know
 * whether to fetch them); the kid is copied to the pool.  NGX_DECLINED:
 * no JWT, or no alg known here: no key could check it anyway.
 */

ngx_int_t
ngx_http_events_jwt_header(ngx_str_t *token, ngx_pool_t *pool,
    ngx_uint_t *alg, ngx_str_t *kid, ngx_uint_t *has_kid)
{
    u_char     *dot;
    json_t     *header, *a, *k;
    ngx_int_t   rc, found;
    ngx_str_t   h;

    if (token->len > NGX_HTTP_EVENTS_MAX_TOKEN) {
        return NGX_DECLINED;
    }

    dot = ngx_strlchr(token->data, token->data + token->len, '.');
    if (dot == NULL || dot == token->data) {
        return NGX_DECLINED;
    }

    h.data = token->data;
    h.len = dot - token->data;

    header = ngx_http_events_jwt_json(&h, pool);
    if (header == NULL) {
        return NGX_DECLINED;
    }

    rc = NGX_DECLINED;
    a = json_object_get(header, "alg");
    k = json_object_get(header, "kid");

    found = json_is_string(a)
            ? ngx_http_events_jwt_alg_find((u_char *) json_string_value(a),
                                           json_string_length(a))
            : NGX_ERROR;

    if (found != NGX_ERROR && (k == NULL || json_is_string(k))) {
        *alg = found;
        *has_kid = (k != NULL);
        ngx_str_null(kid);
        rc = NGX_OK;

        if (k && ngx_http_events_jwt_string(k, pool, kid) != NGX_OK) {
            rc = NGX_ERROR;
        }
    }

    json_decref(header);

    return rc;
}


/* NGX_OK: the signature is right; NGX_DECLINED: wrong */

static ngx_int_t
ngx_http_events_jwt_hmac(ngx_http_events_jwt_key_t *key,
    ngx_str_t *signed_part, ngx_str_t *raw)
{
    unsigned int  len;
    u_char        mac[EVP_MAX_MD_SIZE];

    if (HMAC(ngx_http_events_jwt_algs[key->alg].md(), key->secret.data,
             (int) key->secret.len, signed_part->data, signed_part->len,
             mac, &len)
        == NULL)
    {
        return NGX_ERROR;
    }

    if (raw->len == len && CRYPTO_memcmp(mac, raw->data, len) == 0) {
        return NGX_OK;
    }

    return NGX_DECLINED;
}


/*
 * Through EVP_DigestVerify; PSS with MGF1 of the token's hash and a salt
 * as long as the hash (RFC 7518, 3.5), which OpenSSL then requires
 * exactly.  A signature OpenSSL cannot parse is a wrong one, not a
 * server error.
 */

static ngx_int_t
ngx_http_events_jwt_pkey(ngx_http_events_jwt_key_t *key,
    ngx_str_t *signed_part, ngx_str_t *raw, ngx_pool_t *pool)
{
    ngx_int_t                         rc;
    ngx_str_t                         sig;
    EVP_MD_CTX                       *md;
    EVP_PKEY_CTX                     *pctx;
    const EVP_MD                     *type;
    const ngx_http_events_jwt_alg_t  *def;

    def = &ngx_http_events_jwt_algs[key->alg];
    sig = *raw;

    if (def->kind == NGX_HTTP_EVENTS_JWT_ECDSA
        && ngx_http_events_jwt_der(raw, pool, &sig) != NGX_OK)
    {
        return NGX_ERROR;
    }

    type = def->md ? def->md() : NULL;

    md = EVP_MD_CTX_new();
    if (md == NULL) {
        return NGX_ERROR;
    }

    rc = NGX_DECLINED;
    pctx = NULL;

    if (EVP_DigestVerifyInit(md, &pctx, type, NULL, key->pkey) != 1
        || (def->kind == NGX_HTTP_EVENTS_JWT_PSS
            && (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING)
                <= 0
                || EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx,
                                                    RSA_PSS_SALTLEN_DIGEST)
                   <= 0
                || EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, type) <= 0)))
    {
        rc = NGX_ERROR;

    } else if (EVP_DigestVerify(md, sig.data, sig.len, signed_part->data,
                                signed_part->len)
               == 1)
    {
        rc = NGX_OK;
    }

    EVP_MD_CTX_free(md);

    /* a refused signature leaves its reason on the error queue */
    ERR_clear_error();

    return rc;
}


/*
 * JOSE writes an ECDSA signature as r || s, each as long as the curve's
 * order (RFC 7518, 3.4), and OpenSSL takes DER: rewritten first.
 */

static ngx_int_t
ngx_http_events_jwt_der(ngx_str_t *raw, ngx_pool_t *pool, ngx_str_t *der)
{
    int         n;
    size_t      half;
    BIGNUM     *r, *s;
    u_char     *p;
    ECDSA_SIG  *es;

    half = raw->len / 2;

    es = ECDSA_SIG_new();
    r = BN_bin2bn(raw->data, (int) half, NULL);
    s = BN_bin2bn(raw->data + half, (int) half, NULL);

    if (es == NULL || r == NULL || s == NULL
        || ECDSA_SIG_set0(es, r, s) != 1)
    {
        ECDSA_SIG_free(es);
        BN_free(r);
        BN_free(s);
        return NGX_ERROR;
    }

    /* r and s belong to es now */

    der->data = NULL;
    n = i2d_ECDSA_SIG(es, NULL);

    if (n > 0) {
        der->data = ngx_pnalloc(pool, n);
    }

    if (der->data == NULL) {
        ECDSA_SIG_free(es);
        return NGX_ERROR;
    }

    p = der->data;
    n = i2d_ECDSA_SIG(es, &p);
    ECDSA_SIG_free(es);

    if (n <= 0) {
        return NGX_ERROR;
    }

    der->len = n;

    return NGX_OK;
}


static ngx_int_t
ngx_http_events_jwt_times(ngx_http_events_jwt_conf_t *conf, json_t *payload,
    ngx_http_events_claims_t *claims, ngx_http_events_error_t *err)
{
    json_t  *exp, *nbf;

    exp = json_object_get(payload, "exp");

    if (!json_is_number(exp)) {
        ngx_http_events_jwt_error(err, "invalid_token",
                                  "the token has no exp");
        return NGX_ERROR;
    }

    if (json_number_value(exp) + (double) conf->leeway < (double) conf->now) {
        ngx_http_events_jwt_error(err, "token_expired",
                                  "the token has expired");
        return NGX_ERROR;
    }

    nbf = json_object_get(payload, "nbf");

    if (nbf && !json_is_number(nbf)) {
        ngx_http_events_jwt_error(err, "invalid_token",
                                  "the token's nbf is not a number");
        return NGX_ERROR;
    }

    if (nbf
        && json_number_value(nbf) - (double) conf->leeway
           > (double) conf->now)
    {
        ngx_http_events_jwt_error(err, "invalid_token",
                                  "the token is not valid yet");
        return NGX_ERROR;
    }

    claims->exp = json_number_value(exp) > 4e12
                  ? (time_t) 4e12 : (time_t) json_number_value(exp);

    return NGX_OK;
}


static ngx_int_t
ngx_http_events_jwt_claims(ngx_http_events_jwt_conf_t *conf, json_t *payload,
    ngx_pool_t *pool, ngx_http_events_claims_t *claims,
    ngx_http_events_error_t *err)
{
    size_t      i;
    json_t     *v, *item;
    ngx_uint_t  ok;

    if (conf->issuer.len) {
        v = json_object_get(payload, "iss");

        if (!json_is_string(v)
            || json_string_length(v) != conf->issuer.len
            || ngx_strncmp(json_string_value(v), conf->issuer.data,
                           conf->issuer.len) != 0)
        {
            ngx_http_events_jwt_error(err, "invalid_token",
                                      "the token's issuer is not accepted");
            return NGX_ERROR;
        }
    }

    if (conf->audience.len) {
        v = json_object_get(payload, "aud");
        ok = 0;

        if (json_is_string(v)) {
            ok = json_string_length(v) == conf->audience.len
                 && ngx_strncmp(json_string_value(v), conf->audience.data,
                                conf->audience.len) == 0;

        } else if (json_is_array(v)) {
            json_array_foreach(v, i, item) {
                if (json_is_string(item)
                    && json_string_length(item) == conf->audience.len
                    && ngx_strncmp(json_string_value(item),
                                   conf->audience.data, conf->audience.len)
                       == 0)
                {
                    ok = 1;
                }
            }
        }

        if (!ok) {
            ngx_http_events_jwt_error(err, "invalid_token",
                                      "the token is not for this audience");
            return NGX_ERROR;
        }
    }

    v = json_object_get(payload, "tenant");

    if (v && !json_is_null(v)) {
        if (ngx_http_events_jwt_string(v, pool, &claims->tenant) != NGX_OK
            || ngx_http_events_match_tenant_valid(&claims->tenant) != NGX_OK)
        {
            ngx_http_events_jwt_error(err, "invalid_token",
                                      "the token's tenant claim is not a "
                                      "tenant");
            return NGX_ERROR;
        }
    }

    v = json_object_get(payload, "sub");

    if (json_is_string(v)
        && ngx_http_events_jwt_string(v, pool, &claims->subject) != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (ngx_http_events_jwt_grants(json_object_get(payload, "publish"), pool,
                                   &claims->publish, &claims->npublish)
        != NGX_OK
        || ngx_http_events_jwt_grants(json_object_get(payload, "subscribe"),
                                      pool, &claims->subscribe,
                                      &claims->nsubscribe)
           != NGX_OK)
    {
        ngx_http_events_jwt_error(err, "invalid_token",
                                  "publish and subscribe must be lists of "
                                  "type patterns");
        return NGX_ERROR;
    }

    claims->admin = json_is_true(json_object_get(payload, "admin"));

    return NGX_OK;
}


static ngx_int_t
ngx_http_events_jwt_grants(json_t *v, ngx_pool_t *pool, ngx_str_t **grants,
    ngx_uint_t *n)
{
    size_t   i;
    json_t  *item;

    *n = 0;

    if (v == NULL || json_is_null(v)) {
        return NGX_OK;
    }

    if (!json_is_array(v) || json_array_size(v) > NGX_HTTP_EVENTS_MAX_GRANTS)
    {
        return NGX_ERROR;
    }

    *grants = ngx_palloc(pool, (json_array_size(v) + 1) * sizeof(ngx_str_t));
    if (*grants == NULL) {
        return NGX_ERROR;
    }

    json_array_foreach(v, i, item) {
        if (!json_is_string(item)
            || ngx_http_events_match_pattern_valid(
                   (u_char *) json_string_value(item),
                   json_string_length(item))
               != NGX_OK
            || ngx_http_events_jwt_string(item, pool, &(*grants)[i])
               != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    *n = json_array_size(v);

    return NGX_OK;
}


static ngx_int_t
ngx_http_events_jwt_string(json_t *v, ngx_pool_t *pool, ngx_str_t *s)
{
    if (!json_is_string(v)) {
        return NGX_ERROR;
    }

    s->len = json_string_length(v);
    s->data = ngx_pnalloc(pool, s->len + 1);
    if (s->data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(s->data, json_string_value(v), s->len);

    return NGX_OK;
}


static void
ngx_http_events_jwt_error(ngx_http_events_error_t *err, const char *code,
    const char *message)
{
    ngx_http_events_error(err, 401, code, NULL, NULL, NULL, "%s", message);
}


const char *
ngx_http_events_jwt_alg_name(ngx_uint_t alg)
{
    return ngx_http_events_jwt_algs[alg].name;
}


const ngx_http_events_jwt_alg_t *
ngx_http_events_jwt_alg(ngx_uint_t alg)
{
    return &ngx_http_events_jwt_algs[alg];
}


/* the alg of that name (case matters, RFC 7515, 4.1.1), or NGX_ERROR */

ngx_int_t
ngx_http_events_jwt_alg_find(u_char *name, size_t len)
{
    ngx_uint_t  a;

    for (a = 0; a < NGX_HTTP_EVENTS_JWT_NALGS; a++) {
        if (ngx_strlen(ngx_http_events_jwt_algs[a].name) == len
            && ngx_strncmp(ngx_http_events_jwt_algs[a].name, name, len) == 0)
        {
            return a;
        }
    }

    return NGX_ERROR;
}


/* grants: a type is granted if a pattern matches it */

ngx_uint_t
ngx_http_events_jwt_granted(ngx_str_t *grants, ngx_uint_t n, ngx_str_t *type)
{
    return ngx_http_events_match_any(grants, n, type);
}


/*
 * A filter cut to the grants, never widened: a pattern the grants cover
 * stays, a grant the pattern covers replaces it, the rest goes (an
 * overlap that neither covers is dropped: narrower, never wider).  No
 * filter means everything granted.  Nothing left: NGX_DECLINED.
 */

ngx_int_t
ngx_http_events_jwt_narrow(ngx_str_t *grants, ngx_uint_t ngrants,
    ngx_str_t **patterns, ngx_uint_t *npatterns, ngx_pool_t *pool)
{
    ngx_str_t   *out, *in;
    ngx_uint_t   i, j, n;

    if (*npatterns == 0) {
        *patterns = grants;
        *npatterns = ngrants;
        return ngrants ? NGX_OK : NGX_DECLINED;
    }

    in = *patterns;

    out = ngx_palloc(pool, (*npatterns + ngrants) * sizeof(ngx_str_t));
    if (out == NULL) {
        return NGX_ERROR;
    }

    n = 0;

    for (i = 0; i < *npatterns; i++) {
        for (j = 0; j < ngrants; j++) {
            if (ngx_http_events_match_pattern_covers(&grants[j], &in[i])) {
                out[n++] = in[i];
                break;
            }
        }
    }

    for (j = 0; j < ngrants; j++) {
        for (i = 0; i < *npatterns; i++) {
            if (!ngx_http_events_match_pattern_covers(&grants[j], &in[i])
                && ngx_http_events_match_pattern_covers(&in[i], &grants[j]))
            {
                out[n++] = grants[j];
                break;
            }
        }
    }

    *patterns = out;
    *npatterns = n;

    return n ? NGX_OK : NGX_DECLINED;
}
