
/*
 * Copyright (C) ngx_http_events_module authors
 */


#ifndef _NGX_HTTP_EVENTS_CAPTURE_PRE_H_INCLUDED_
#define _NGX_HTTP_EVENTS_CAPTURE_PRE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_events_types.h"


ngx_int_t ngx_http_events_capture_pre_init(ngx_conf_t *cf);
char *ngx_http_events_capture_pre(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);


#endif /* _NGX_HTTP_EVENTS_CAPTURE_PRE_H_INCLUDED_ */
