
/*
 * Copyright (C) ngx_http_events_module authors
 */


#ifndef _NGX_HTTP_EVENTS_REDIS_H_INCLUDED_
#define _NGX_HTTP_EVENTS_REDIS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_event_connect.h>

#include <hiredis/hiredis.h>


#define NGX_HTTP_EVENTS_REDIS_IDLE        0
#define NGX_HTTP_EVENTS_REDIS_CONNECTING  1
#define NGX_HTTP_EVENTS_REDIS_READY       2
#define NGX_HTTP_EVENTS_REDIS_BACKOFF     3
#define NGX_HTTP_EVENTS_REDIS_CLOSED      4


typedef struct ngx_http_events_redis_s      ngx_http_events_redis_t;
typedef struct ngx_http_events_redis_cmd_s  ngx_http_events_redis_cmd_t;

/* reply NULL: no answer (connection lost, refused, timed out, closed) */
typedef void (*ngx_http_events_redis_pt)(void *data, redisReply *reply,
    ngx_http_events_redis_cmd_t *cmd);


/* where a Redis is and how to talk to it, from events_cluster's URL */
typedef struct {
    ngx_str_t                   url;            /* without the password */
    ngx_str_t                   host;
    in_port_t                   port;
    ngx_addr_t                 *addrs;          /* read with the conf */
    ngx_uint_t                  naddrs;
    ngx_resolver_t             *resolver;       /* or a name, at run time */
    ngx_str_t                   hostport;       /* as in the URL */
    ngx_str_t                   conf_file;      /* where the URL is */
    ngx_uint_t                  conf_line;
    ngx_str_t                   user;
    ngx_str_t                   password;
    ngx_int_t                   db;             /* -1: not given */
    ngx_msec_t                  connect_timeout;
    ngx_msec_t                  timeout;
#if (NGX_SSL)
    ngx_ssl_t                  *ssl;            /* rediss:// */
    u_char                     *sni;            /* NULL: an address */
#endif
    unsigned                    tls:1;
    unsigned                    named:1;        /* the host is a name */
} ngx_http_events_redis_conf_t;


struct ngx_http_events_redis_cmd_s {
    ngx_queue_t                 queue;
    ngx_http_events_redis_pt    handler;        /* NULL: nobody waits */
    void                       *data;
    char                       *buf;            /* formatted, for a redo */
    size_t                      len;
    unsigned                    written:1;      /* reached the socket */
};


struct ngx_http_events_redis_s {
    ngx_http_events_redis_conf_t  *conf;
    ngx_log_t                  *log;
    ngx_peer_connection_t       pc;
    redisReader                *reader;
    ngx_pool_t                 *replies;        /* the reader's objects */
    size_t                      reply_size;     /* in it since emptied */

    /* formatted commands not yet written */
    u_char                     *out;
    size_t                      out_size;
    size_t                      out_pos;
    size_t                      out_len;

    ngx_queue_t                 pending;        /* waiting for replies */
    ngx_queue_t                 redo;           /* MOVED: for the next */
    ngx_queue_t                 free;
    ngx_uint_t                  npending;
    ngx_uint_t                  nwritten;       /* of them, on the wire */

    ngx_event_t                 flush;          /* posted: write out */
    ngx_event_t                 quit;           /* posted: close, if idle */
    ngx_uint_t                  holds;          /* sends due on a timer */
    ngx_event_t                 retry;          /* backoff, then connect */
    ngx_msec_t                  backoff;
    ngx_msec_t                  extra;          /* XREAD BLOCK's wait */
    ngx_uint_t                  state;

    /* told when the connection is ready (AUTH, SELECT done) or lost */
    void                      (*ready)(ngx_http_events_redis_t *rd);
    void                      (*lost)(ngx_http_events_redis_t *rd);
    void                       *data;

    /* where a Redis Cluster said the keys are (MOVED) */
    ngx_addr_t                  moved;
    struct sockaddr_in          moved_sin;
    u_char                      moved_name[NGX_SOCKADDR_STRLEN];
    ngx_uint_t                  moves;          /* in a row */

    /* ASK: one command to the importing node, on a connection of its own */
    ngx_http_events_redis_t    *ask;
    ngx_http_events_redis_t    *parent;         /* of an ASK connection */
    ngx_atomic_t               *asks;           /* counted there if set */

    /* the host's name, resolved at each connect (conf->resolver) */
    ngx_resolver_ctx_t         *resolving;
    ngx_msec_t                  resolve_start;
    ngx_addr_t                  peer;
    ngx_sockaddr_t              peer_sa;
    u_char                      peer_name[NGX_SOCKADDR_STRLEN];
    ngx_atomic_t               *errors;         /* counted there if set */

    ngx_uint_t                  connects;
    ngx_uint_t                  failures;
    ngx_uint_t                  redirects;
    ngx_str_t                   error;          /* the last, for logs */
    u_char                      errbuf[128];
    unsigned                    broken:1;       /* close after the reads */
    unsigned                    abandon:1;      /* quit without replies */
    unsigned                    redirect:1;     /* go where MOVED said */
};


char *ngx_http_events_redis_parse_url(ngx_conf_t *cf, ngx_str_t *value,
    ngx_http_events_redis_conf_t *conf);
char *ngx_http_events_redis_tls(ngx_conf_t *cf,
    ngx_http_events_redis_conf_t *conf, ngx_str_t *trusted);
ngx_int_t ngx_http_events_redis_resolver(ngx_conf_t *cf,
    ngx_http_events_redis_conf_t *conf, ngx_resolver_t *resolver);
ngx_int_t ngx_http_events_redis_init(ngx_http_events_redis_t *rd,
    ngx_http_events_redis_conf_t *conf, ngx_log_t *log);
void ngx_http_events_redis_connect(ngx_http_events_redis_t *rd);
void ngx_http_events_redis_hold(ngx_http_events_redis_t *rd);
void ngx_http_events_redis_release(ngx_http_events_redis_t *rd);
ngx_http_events_redis_cmd_t *ngx_http_events_redis_send(
    ngx_http_events_redis_t *rd, int argc, const char **argv,
    const size_t *argvlen, ngx_http_events_redis_pt handler, void *data);
ngx_int_t ngx_http_events_redis_usable(ngx_http_events_redis_t *rd);
void ngx_http_events_redis_close(ngx_http_events_redis_t *rd);
ngx_uint_t ngx_http_events_redis_is_error(redisReply *reply,
    const char *prefix);


#endif /* _NGX_HTTP_EVENTS_REDIS_H_INCLUDED_ */
