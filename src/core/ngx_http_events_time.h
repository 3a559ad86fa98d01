
/*
 * Copyright (C) ngx_http_events_module authors
 */


#ifndef _NGX_HTTP_EVENTS_TIME_H_INCLUDED_
#define _NGX_HTTP_EVENTS_TIME_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


#define NGX_HTTP_EVENTS_TIMESTAMP_LEN   24  /* 2026-11-23T12:00:00.123Z */


uint64_t ngx_http_events_time_now_ms(void);
u_char *ngx_http_events_time_write(u_char *p, uint64_t ms);
ngx_int_t ngx_http_events_time_parse(u_char *p, size_t len, int64_t *ms);


#endif /* _NGX_HTTP_EVENTS_TIME_H_INCLUDED_ */
