
/*
 * Copyright (C) ngx_http_events_module authors
 */


#ifndef _NGX_HTTP_EVENTS_AUTH_H_INCLUDED_
#define _NGX_HTTP_EVENTS_AUTH_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_events_jwt.h"


ngx_uint_t ngx_http_events_auth_access(ngx_http_request_t *r, ngx_int_t *rc);
ngx_http_events_claims_t *ngx_http_events_auth_claims(ngx_http_request_t *r);
ngx_int_t ngx_http_events_auth_token(ngx_http_request_t *r, ngx_str_t *token,
    ngx_http_events_error_t *err);
ngx_int_t ngx_http_events_auth_add_variables(ngx_conf_t *cf);
char *ngx_http_events_auth_jwt_key(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);


#endif /* _NGX_HTTP_EVENTS_AUTH_H_INCLUDED_ */
