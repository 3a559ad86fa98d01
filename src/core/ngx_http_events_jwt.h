
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


/* a key verifies tokens of one alg only: the key's type decides it */
#define NGX_HTTP_EVENTS_JWT_HS256       0
#define NGX_HTTP_EVENTS_JWT_RS256       1
#define NGX_HTTP_EVENTS_JWT_ES256       2
#define NGX_HTTP_EVENTS_JWT_EDDSA       3


typedef struct {
    ngx_str_t                   kid;            /* empty: no kid */
    ngx_uint_t                  alg;            /* NGX_HTTP_EVENTS_JWT_* */
    ngx_str_t                   secret;         /* HS256 */
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
    ngx_array_t                *keys;           /* jwt_key_t */
    ngx_str_t                   audience;
    ngx_str_t                   issuer;
    time_t                      leeway;
    time_t                      now;
} ngx_http_events_jwt_conf_t;


ngx_int_t ngx_http_events_jwt_verify(ngx_http_events_jwt_conf_t *conf,
    ngx_str_t *token, ngx_pool_t *pool, ngx_http_events_claims_t *claims,
    ngx_http_events_error_t *err);

const char *ngx_http_events_jwt_alg_name(ngx_uint_t alg);
ngx_uint_t ngx_http_events_jwt_granted(ngx_str_t *grants, ngx_uint_t n,
    ngx_str_t *type);
ngx_int_t ngx_http_events_jwt_narrow(ngx_str_t *grants, ngx_uint_t ngrants,
    ngx_str_t **patterns, ngx_uint_t *npatterns, ngx_pool_t *pool);


#endif /* _NGX_HTTP_EVENTS_JWT_H_INCLUDED_ */
