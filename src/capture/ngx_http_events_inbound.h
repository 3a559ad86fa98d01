
/*
 * Copyright (C) ngx_http_events_module authors
 */


#ifndef _NGX_HTTP_EVENTS_INBOUND_H_INCLUDED_
#define _NGX_HTTP_EVENTS_INBOUND_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_events_types.h"


#define NGX_HTTP_EVENTS_INBOUND_GITHUB    1
#define NGX_HTTP_EVENTS_INBOUND_STRIPE    2
#define NGX_HTTP_EVENTS_INBOUND_STANDARD  3
#define NGX_HTTP_EVENTS_INBOUND_HMAC      4

/* secret= per location: the old and the new during a rotation, and spare */
#define NGX_HTTP_EVENTS_INBOUND_SECRETS   4

/* a location's name on the status page (name=, or the location's) */
#define NGX_HTTP_EVENTS_INBOUND_NAME      128

/* a secret's fingerprint: the first bytes of SHA-256 of its text */
#define NGX_HTTP_EVENTS_INBOUND_FP        4


typedef struct ngx_http_events_inbound_node_s
    ngx_http_events_inbound_node_t;
typedef struct ngx_http_events_inbound_ring_s
    ngx_http_events_inbound_ring_t;


struct ngx_http_events_inbound_conf_s {
    ngx_uint_t                  kind;
    ngx_uint_t                  nkeys;
    ngx_str_t                   name;           /* "github", ... */
    /* the HMAC keys' bytes, in the order of the secret= parameters */
    ngx_str_t                   keys[NGX_HTTP_EVENTS_INBOUND_SECRETS];
    ngx_str_t                   header;         /* hmac: the signature's */
    ngx_http_complex_value_t   *type;           /* NULL: the sender's */
    ngx_http_complex_value_t   *id;             /* NULL: the sender's */
    time_t                      tolerance;      /* stripe, standard */
    time_t                      replay;         /* hmac; 0: off */
    ngx_uint_t                  replay_size;    /* entries remembered */

    /* the status page's: the zone, the label, each secret's fingerprint */
    ngx_shm_zone_t             *zone;
    ngx_str_t                   label;
    u_char                      fp[NGX_HTTP_EVENTS_INBOUND_SECRETS]
                                  [NGX_HTTP_EVENTS_INBOUND_FP];

    /* this worker's pointers to the counters in the zone, found once */
    ngx_http_events_inbound_node_t  *node;
    ngx_http_events_inbound_node_t  *secrets[NGX_HTTP_EVENTS_INBOUND_SECRETS];
    ngx_http_events_inbound_ring_t  *ring;
};


char *ngx_http_events_inbound(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_http_events_inbound_add_variables(ngx_conf_t *cf);


#endif /* _NGX_HTTP_EVENTS_INBOUND_H_INCLUDED_ */
