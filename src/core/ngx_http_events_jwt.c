
/*
 * Copyright (C) ngx_http_events_module authors
 */


/*
 * Built-in tokens: JWTs signed with HS256 by a shared secret.
 *
 * The algorithm comes from the allow-list, never from the token ("none"
 * and every other alg are refused, so an RS256 token cannot be verified
 * with an HMAC key); the key comes from the configuration, chosen by
 * "kid"; the signature is compared in constant time; "exp" is required.
 * The claims say the tenant (authoritative), the subject, and what the
 * bearer may publish and subscribe to, as type patterns.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <jansson.h>

#include "ngx_http_events_jwt.h"
#include "ngx_http_events_match.h"
#include "ngx_http_events_store.h"


#define NGX_HTTP_EVENTS_HS256_LEN   32


static ngx_int_t ngx_http_events_jwt_segment(ngx_str_t *seg, ngx_pool_t *pool,
    ngx_str_t *out);
static json_t *ngx_http_events_jwt_json(ngx_str_t *seg, ngx_pool_t *pool);
static ngx_int_t ngx_http_events_jwt_signature(
    ngx_http_events_jwt_conf_t *conf, json_t *header, ngx_str_t *signed_part,
    ngx_str_t *sig, ngx_pool_t *pool, ngx_http_events_error_t *err);
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


static ngx_int_t
ngx_http_events_jwt_signature(ngx_http_events_jwt_conf_t *conf,
    json_t *header, ngx_str_t *signed_part, ngx_str_t *sig, ngx_pool_t *pool,
    ngx_http_events_error_t *err)
{
    json_t                     *alg, *kid;
    ngx_str_t                   raw, want;
    ngx_uint_t                  i, tried;
    unsigned int                len;
    ngx_http_events_jwt_key_t  *keys;
    u_char                      mac[EVP_MAX_MD_SIZE];

    alg = json_object_get(header, "alg");

    if (!json_is_string(alg) || ngx_strcmp(json_string_value(alg), "HS256")) {
        ngx_http_events_jwt_error(err, "invalid_token",
                                  "the token's alg is not allowed; this "
                                  "server takes HS256");
        return NGX_ERROR;
    }

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
        || raw.len != NGX_HTTP_EVENTS_HS256_LEN)
    {
        ngx_http_events_jwt_error(err, "invalid_token",
                                  "the token's signature is malformed");
        return NGX_ERROR;
    }

    keys = conf->keys->elts;
    tried = 0;

    for (i = 0; i < conf->keys->nelts; i++) {

        /* "kid": "" names a key; it is not the absence of a kid */

        if ((kid != NULL) != (keys[i].kid.len != 0)
            || keys[i].kid.len != want.len
            || (want.len
                && ngx_strncmp(keys[i].kid.data, want.data, want.len) != 0))
        {
            continue;
        }

        tried++;

        if (HMAC(EVP_sha256(), keys[i].secret.data, (int) keys[i].secret.len,
                 signed_part->data, signed_part->len, mac, &len)
            == NULL)
        {
            ngx_http_events_error(err, 0, "", NULL, NULL, NULL, "HMAC()");
            return NGX_ERROR;
        }

        if (len == NGX_HTTP_EVENTS_HS256_LEN
            && CRYPTO_memcmp(mac, raw.data, len) == 0)
        {
            return NGX_OK;
        }
    }

    ngx_http_events_jwt_error(err, "invalid_token",
                              tried ? "the token's signature is wrong"
                                    : "no key for the token's kid");
    return NGX_ERROR;
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
