
/*
 * Copyright (C) ngx_http_events_module authors
 */


#ifndef _NGX_HTTP_EVENTS_ID_H_INCLUDED_
#define _NGX_HTTP_EVENTS_ID_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


#define NGX_HTTP_EVENTS_ID_LEN          (sizeof("evt_") - 1 + 26)
#define NGX_HTTP_EVENTS_ID_RANDOM       10  /* bytes of randomness an id has */


/*
 * A process's buffered randomness for ids: zeroed means empty, so a
 * pcalloc'd owner needs no init (see ngx_http_events_id.c).
 */
typedef struct {
    u_char                      buf[NGX_HTTP_EVENTS_ID_RANDOM * 256];
    size_t                      left;
    ngx_pid_t                   pid;
} ngx_http_events_id_rng_t;


ngx_int_t ngx_http_events_id_generate(u_char *p, uint64_t ms,
    ngx_http_events_id_rng_t *rng);
ngx_int_t ngx_http_events_id_valid(u_char *p, size_t len);


#endif /* _NGX_HTTP_EVENTS_ID_H_INCLUDED_ */
