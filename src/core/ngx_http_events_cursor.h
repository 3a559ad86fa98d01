
/*
 * Copyright (C) ngx_http_events_module authors
 */


#ifndef _NGX_HTTP_EVENTS_CURSOR_H_INCLUDED_
#define _NGX_HTTP_EVENTS_CURSOR_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


#define NGX_HTTP_EVENTS_CURSOR_LEN      24


u_char *ngx_http_events_cursor_write(u_char *p, uint64_t epoch,
    uint64_t seq);
ngx_int_t ngx_http_events_cursor_parse(u_char *p, size_t len,
    uint64_t *epoch, uint64_t *seq);


#endif /* _NGX_HTTP_EVENTS_CURSOR_H_INCLUDED_ */
