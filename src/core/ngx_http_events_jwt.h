
/*
 * Copyright (C) ngx_http_events_module authors
 */


#ifndef _NGX_HTTP_EVENTS_JWT_H_INCLUDED_
#define _NGX_HTTP_EVENTS_JWT_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include <openssl/evp.h>

#include "ngx_http_events_json.h"


#define NGX_HTTP_EVENTS_MAX_TOKEN       8192
#define NGX_HTTP_EVENTS_MAX_GRANTS      32


/*
 * A key verifies tokens of one alg only: the key's type decides it, or
 * picks it among the few its type fits (alg= for an HMAC secret or an
 * RSA key, a JWK's "alg").  The first four keep the numbers they had
 * (t/fuzz/fuzz_jwt.c indexes its keys by them).
 */
#define NGX_HTTP_EVENTS_JWT_HS256       0
#define NGX_HTTP_EVENTS_JWT_RS256       1
#define NGX_HTTP_EVENTS_JWT_ES256       2
#define NGX_HTTP_EVENTS_JWT_EDDSA       3
#define NGX_HTTP_EVENTS_JWT_HS384       4
#define NGX_HTTP_EVENTS_JWT_HS512       5
#define NGX_HTTP_EVENTS_JWT_RS384       6
#define NGX_HTTP_EVENTS_JWT_RS512       7
#define NGX_HTTP_EVENTS_JWT_PS256       8
#define NGX_HTTP_EVENTS_JWT_PS384       9
#define NGX_HTTP_EVENTS_JWT_PS512       10
#define NGX_HTTP_EVENTS_JWT_ES384       11
#define NGX_HTTP_EVENTS_JWT_ES512       12
#define NGX_HTTP_EVENTS_JWT_NALGS       13

/* the kind of key an alg needs */
#define NGX_HTTP_EVENTS_JWT_HMAC        0
#define NGX_HTTP_EVENTS_JWT_RSA         1       /* PKCS #1 v1.5 */
#define NGX_HTTP_EVENTS_JWT_PSS         2       /* RSASSA-PSS, an RSA key */
#define NGX_HTTP_EVENTS_JWT_ECDSA       3
#define NGX_HTTP_EVENTS_JWT_OKP         4


typedef struct {
    const char                 *name;           /* as in a token's "alg" */
    ngx_uint_t                  kind;           /* HMAC, RSA, PSS, ECDSA... */
    const EVP_MD              *(*md)(void);     /* NULL: EdDSA's own */
    size_t                      siglen;         /* 0: the RSA modulus's */
    const char                 *group;          /* ECDSA: OpenSSL's curve */
    const char                 *curve;          /* ECDSA: JOSE's "crv" */
} ngx_http_events_jwt_alg_t;


typedef struct {
    ngx_str_t                   kid;            /* empty: no kid */
    ngx_uint_t                  alg;            /* NGX_HTTP_EVENTS_JWT_* */
    ngx_str_t                   secret;         /* HS256, HS384, HS512 */
    EVP_PKEY                   *pkey;           /* the others */
} ngx_http_events_jwt_key_t;


/* what a valid token says */
struct ngx_http_events_claims_s {
    ngx_str_t                   tenant;
    ngx_str_t                   subject;
    ngx_str_t                  *publish;
    ngx_uint_t                  npublish;
    ngx_str_t                  *subscribe;
    ngx_uint_t                  nsubscribe;
    time_t                      exp;
    unsigned                    admin:1;
};


typedef struct {
    ngx_array_t                *keys;           /* jwt_key_t, may be NULL */
    ngx_array_t                *fetched;        /* a fetched JWKS's, too */
    ngx_str_t                   audience;
    ngx_str_t                   issuer;
    time_t                      leeway;
    time_t                      now;
    unsigned                    no_key:1;       /* out: none had its kid */
} ngx_http_events_jwt_conf_t;


ngx_int_t ngx_http_events_jwt_verify(ngx_http_events_jwt_conf_t *conf,
    ngx_str_t *token, ngx_pool_t *pool, ngx_http_events_claims_t *claims,
    ngx_http_events_error_t *err);

ngx_int_t ngx_http_events_jwt_header(ngx_str_t *token, ngx_pool_t *pool,
    ngx_uint_t *alg, ngx_str_t *kid, ngx_uint_t *has_kid);
ngx_uint_t ngx_http_events_jwt_has_key(ngx_array_t *keys, ngx_uint_t alg,
    ngx_str_t *kid, ngx_uint_t has_kid);

const char *ngx_http_events_jwt_alg_name(ngx_uint_t alg);
const ngx_http_events_jwt_alg_t *ngx_http_events_jwt_alg(ngx_uint_t alg);
ngx_int_t ngx_http_events_jwt_alg_find(u_char *name, size_t len);
ngx_uint_t ngx_http_events_jwt_granted(ngx_str_t *grants, ngx_uint_t n,
    ngx_str_t *type);
ngx_int_t ngx_http_events_jwt_narrow(ngx_str_t *grants, ngx_uint_t ngrants,
    ngx_str_t **patterns, ngx_uint_t *npatterns, ngx_pool_t *pool);


#endif /* _NGX_HTTP_EVENTS_JWT_H_INCLUDED_ */
