
/*
 * Copyright (C) ngx_http_events_module authors
 */


#ifndef _NGX_HTTP_EVENTS_CLUSTER_H_INCLUDED_
#define _NGX_HTTP_EVENTS_CLUSTER_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_events_store.h"
#include "ngx_http_events_redis.h"


/* the layout of that zone: a reload that changes it is a restart */
#define NGX_HTTP_EVENTS_CLUSTER_MAGIC    0x31434545     /* "EECl" */
#define NGX_HTTP_EVENTS_CLUSTER_LAYOUT   2


/* a cluster's state in its own zone, events_cluster:ZONE */
typedef struct {
    uint32_t                    magic;
    uint32_t                    layout;
    ngx_pid_t                   lease_pid;
    ngx_msec_t                  lease_expires;
    uint64_t                    term;

    uint64_t                    epoch;          /* Redis's; 0: not known */
    uint64_t                    last_seq;       /* tailed up to here */
    uint64_t                    last_ms;
    uint64_t                    head_seq;
    uint64_t                    lag_ms;
    uint64_t                    gone;           /* the log's, trimmed */

    ngx_atomic_t                connected;
    ngx_msec_t                  link_since;     /* connected changed */
    size_t                      link_error_len;
    u_char                      link_error[96]; /* why it was lost */
    ngx_atomic_t                caught_up;
    ngx_atomic_t                appended;
    ngx_atomic_t                repeats;
    ngx_atomic_t                conflicts;
    ngx_atomic_t                unavailable;
    ngx_atomic_t                unreplicated;   /* wait= not met */
    ngx_atomic_t                tailed;
    ngx_atomic_t                resets;
    ngx_atomic_t                reconnects;
    ngx_atomic_t                errors;
    ngx_atomic_t                wh_claimed;     /* deliveries this node took */
    ngx_atomic_t                wh_taken;       /* held by another node */
    ngx_atomic_t                wh_elsewhere;   /* ended by another node */

    uint64_t                    node;           /* this node, in Redis */
    uint64_t                    att_ms;         /* attempts imported to */
    uint64_t                    att_seq;

    ngx_atomic_t                asks;           /* ASK redirects followed */
    ngx_atomic_t                scripts;        /* append scripts run */
    ngx_atomic_t                posts;          /* appends (POSTs) in them */
    ngx_atomic_t                tail_reads;     /* XREADs that brought any */
} ngx_http_events_cluster_sh_t;


/* one events_cluster */
typedef struct {
    ngx_str_t                   zone_name;
    ngx_shm_zone_t             *zone;           /* the events zone */
    ngx_shm_zone_t             *shm;            /* this module's */
    ngx_http_events_cluster_sh_t  *sh;
    ngx_slab_pool_t            *shpool;

    ngx_http_events_redis_conf_t  redis;
    ngx_str_t                   prefix;
    ngx_str_t                   key_log;
    ngx_str_t                   key_meta;
    ngx_str_t                   key_id;         /* ids' keys start so */
    ngx_str_t                   key_types;      /* tenants' catalogs */
    ngx_str_t                   max_len;        /* "0": no limit */
    ngx_str_t                   retention;      /* ms; "0": no limit */
    ngx_uint_t                  wait_n;         /* wait=: replicas */
    ngx_str_t                   wait;
    ngx_str_t                   wait_ms;
    ngx_str_t                   trusted;        /* rediss:// */
    ngx_msec_t                  wh_lease;       /* a webhook claim's */
    ngx_msec_t                  wh_done;        /* an ended one's mark */
    ngx_msec_t                  tail_pace;      /* 0: read at once */

    ngx_http_events_remote_t    remote;

    /* this worker's */
    ngx_log_t                  *log;
    ngx_http_events_redis_t     rd;             /* appends */
    ngx_http_events_redis_t     tail;           /* XREAD BLOCK */
    ngx_queue_t                 folding;        /* appends of this turn */
    ngx_uint_t                  fold_ops;
    ngx_uint_t                  fold_events;
    size_t                      fold_size;
    ngx_event_t                 fold;           /* posted: one script */
    ngx_uint_t                  fold_busy;      /* a script in flight */
    u_char                      candidate[16];  /* a new epoch, in hex */
    ngx_event_t                 tick;
    ngx_event_t                 tail_wait;      /* after an error */
    ngx_event_t                 tail_next;      /* a busy log: gather */
    ngx_uint_t                  tailing;
    ngx_queue_t                 reads;          /* free read ops */
    ngx_queue_t                 claims;         /* free claim ops */
    ngx_queue_t                 held;           /* claims being renewed */
    ngx_str_t                   token;          /* this worker's claims */
    u_char                      token_buf[32 + NGX_INT64_LEN];
    int64_t                     wh_ver;         /* endpoints applied */
    int64_t                     wh_seen;        /* endpoints read */
    int64_t                     st_ver;         /* failure states applied */
    int64_t                     st_seen;        /* failure states read */
    ngx_uint_t                  wh_polling;
    ngx_uint_t                  att_polling;
} ngx_http_events_cluster_t;


size_t ngx_http_events_cluster_rec_len(ngx_http_events_event_t *ev);
u_char *ngx_http_events_cluster_rec_write(u_char *p,
    ngx_http_events_event_t *ev);
ngx_int_t ngx_http_events_cluster_rec_read(u_char *p, size_t len,
    ngx_http_events_event_t *ev);

/* ngx_http_events_cluster_append.c */
void ngx_http_events_cluster_append_postconfiguration(void);
void *ngx_http_events_cluster_append(void *data,
    ngx_http_events_event_t *events, ngx_uint_t n, ngx_pool_t *pool,
    ngx_http_events_remote_done_pt done, void *ctx);
void ngx_http_events_cluster_cancel(void *handle);

/* ngx_http_events_cluster_tail.c */
void ngx_http_events_cluster_tail_start(ngx_http_events_cluster_t *cl);
void ngx_http_events_cluster_tail_stop(ngx_http_events_cluster_t *cl);
ngx_int_t ngx_http_events_cluster_id(u_char *p, size_t len, uint64_t *ms,
    uint64_t *seq);
ngx_int_t ngx_http_events_cluster_epoch(redisReply *reply, uint64_t *epoch);
ngx_int_t ngx_http_events_cluster_fields(redisReply *fields, uint64_t *gone);

void ngx_http_events_cluster_read_postconfiguration(void);
void *ngx_http_events_cluster_read_query(void *data,
    ngx_http_events_query_t *q, ngx_http_events_result_t *res,
    ngx_pool_t *pool, ngx_http_events_remote_read_pt done, void *ctx);
void *ngx_http_events_cluster_read_get(void *data, ngx_str_t *tenant,
    ngx_str_t *id, ngx_str_t *json, ngx_pool_t *pool,
    ngx_http_events_remote_read_pt done, void *ctx);
void *ngx_http_events_cluster_read_types(void *data, ngx_str_t *tenant,
    ngx_array_t *types, ngx_pool_t *pool,
    ngx_http_events_remote_read_pt done, void *ctx);
uint64_t ngx_http_events_cluster_read_gone(void *data);
void ngx_http_events_cluster_read_cancel(void *handle);
void ngx_http_events_cluster_read_free(ngx_http_events_cluster_t *cl);

void ngx_http_events_cluster_webhook_postconfiguration(void);
ngx_int_t ngx_http_events_cluster_webhook_init(ngx_http_events_cluster_t *cl);
void ngx_http_events_cluster_webhook_free(ngx_http_events_cluster_t *cl);
ngx_int_t ngx_http_events_cluster_webhook_claim(void *data,
    ngx_str_t *tenant, ngx_str_t *endpoint, uint64_t seq,
    ngx_http_events_remote_claim_pt done, void *ctx);
ngx_int_t ngx_http_events_cluster_webhook_publish(void *data,
    ngx_str_t *tenant, ngx_str_t *id, ngx_str_t *text);
ngx_int_t ngx_http_events_cluster_webhook_state(void *data,
    ngx_str_t *tenant, ngx_str_t *id, ngx_str_t *text);
void ngx_http_events_cluster_webhook_poll(ngx_http_events_cluster_t *cl);
void ngx_http_events_cluster_webhook_attempt(void *data, ngx_str_t *tenant,
    ngx_str_t *id, u_char *rec, size_t len);
ngx_int_t ngx_http_events_cluster_webhook_held(void *data, void *hold);
void ngx_http_events_cluster_webhook_settle(void *data, void *hold,
    ngx_int_t how, ngx_msec_t keep);

ngx_int_t ngx_http_events_cluster_status_register(ngx_conf_t *cf);
ngx_int_t ngx_http_events_cluster_health(void *data, ngx_pool_t *pool,
    ngx_str_t *reason, ngx_str_t *detail);


extern ngx_module_t  ngx_http_events_cluster_module;


#endif /* _NGX_HTTP_EVENTS_CLUSTER_H_INCLUDED_ */
