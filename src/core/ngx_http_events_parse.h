
/*
 * Copyright (C) ngx_http_events_module authors
 */


#ifndef _NGX_HTTP_EVENTS_PARSE_H_INCLUDED_
#define _NGX_HTTP_EVENTS_PARSE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include <jansson.h>


json_t *ngx_http_events_parse_json(ngx_pool_t *pool, u_char *data,
    size_t len, json_error_t *error);


#endif /* _NGX_HTTP_EVENTS_PARSE_H_INCLUDED_ */
