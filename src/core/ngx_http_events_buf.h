
/*
 * Copyright (C) ngx_http_events_module authors
 */


#ifndef _NGX_HTTP_EVENTS_BUF_H_INCLUDED_
#define _NGX_HTTP_EVENTS_BUF_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


/* a JSON or text answer grown in a pool; see ngx_http_events_buf.c */
typedef struct {
    ngx_pool_t                 *pool;
    u_char                     *start;
    u_char                     *pos;
    u_char                     *end;
    unsigned                    failed:1;
} ngx_http_events_buf_t;


void ngx_http_events_buf_init(ngx_http_events_buf_t *b, ngx_pool_t *pool,
    size_t size);
u_char *ngx_http_events_buf_reserve(ngx_http_events_buf_t *b, size_t len);
void ngx_http_events_buf_printf(ngx_http_events_buf_t *b,
    const char *fmt, ...);
void ngx_http_events_buf_add(ngx_http_events_buf_t *b, u_char *s,
    size_t len);
void ngx_http_events_buf_str(ngx_http_events_buf_t *b, u_char *s,
    size_t len);
void ngx_http_events_buf_label(ngx_http_events_buf_t *b, u_char *s,
    size_t len);
void ngx_http_events_buf_time(ngx_http_events_buf_t *b, uint64_t ms);


/* a string literal, and only one: its size is known at compile time */
#define ngx_http_events_buf_literal(b, s)                                     \
    ngx_http_events_buf_add(b, (u_char *) (s), sizeof(s) - 1)


#endif /* _NGX_HTTP_EVENTS_BUF_H_INCLUDED_ */
