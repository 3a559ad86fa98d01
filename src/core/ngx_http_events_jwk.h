
/*
 * Copyright (C) ngx_http_events_module authors
 */


#ifndef _NGX_HTTP_EVENTS_JWK_H_INCLUDED_
#define _NGX_HTTP_EVENTS_JWK_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


char *ngx_http_events_jwk_load(ngx_conf_t *cf, ngx_array_t *keys,
    ngx_str_t *path, ngx_str_t *kid, ngx_str_t *alg);
ngx_int_t ngx_http_events_jwk_set(ngx_pool_t *pool, ngx_str_t *data,
    ngx_array_t *keys, char **error);


#endif /* _NGX_HTTP_EVENTS_JWK_H_INCLUDED_ */
