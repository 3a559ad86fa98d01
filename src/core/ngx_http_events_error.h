
/*
 * Copyright (C) ngx_http_events_module authors
 */


#ifndef _NGX_HTTP_EVENTS_ERROR_H_INCLUDED_
#define _NGX_HTTP_EVENTS_ERROR_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_events_types.h"


/* what a failed request says, in the error envelope of the contract */
struct ngx_http_events_error_s {
    ngx_uint_t                  status;
    const char                 *code;
    const char                 *kind;           /* "param", "field", NULL */
    size_t                      name_len;
    size_t                      message_len;
    u_char                      name[160];
    u_char                      message[320];
};


void ngx_http_events_error_name(ngx_http_events_error_t *err);
void ngx_http_events_error(ngx_http_events_error_t *err, ngx_uint_t status,
    const char *code, const char *kind, ngx_str_t *prefix, const char *name,
    const char *fmt, ...);


#endif /* _NGX_HTTP_EVENTS_ERROR_H_INCLUDED_ */
