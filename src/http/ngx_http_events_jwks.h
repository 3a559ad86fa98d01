
/*
 * Copyright (C) ngx_http_events_module authors
 */


#ifndef _NGX_HTTP_EVENTS_JWKS_H_INCLUDED_
#define _NGX_HTTP_EVENTS_JWKS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_events_types.h"


ngx_array_t *ngx_http_events_jwks_keys(ngx_http_events_jwks_t *jwks);
time_t ngx_http_events_jwks_retry_after(ngx_http_events_jwks_t *jwks);
ngx_int_t ngx_http_events_jwks_init(ngx_conf_t *cf);
char *ngx_http_events_jwks_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);


#endif /* _NGX_HTTP_EVENTS_JWKS_H_INCLUDED_ */
