
/*
 * Copyright (C) ngx_http_events_module authors
 */


#ifndef _NGX_HTTP_EVENTS_HISTORY_H_INCLUDED_
#define _NGX_HTTP_EVENTS_HISTORY_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include <lmdb.h>

#if (NGX_THREADS)
#include <ngx_thread_pool.h>
#endif

#include "ngx_http_events_store.h"


#define NGX_HTTP_EVENTS_HISTORY_FDS     64
#define NGX_HTTP_EVENTS_HISTORY_NEXT    64


/* the index's state in the zone, beside the journal's */
typedef struct {
    uint64_t                    indexed;        /* up to this seq */
    uint64_t                    gone;           /* newest seq removed */
    uint64_t                    cleaned;        /* index entries removed */
    uint64_t                    first_segment;  /* oldest kept */
    uint64_t                    errors;
    uint64_t                    rebuilds;
    uint64_t                    rebuild_ms;
    uint64_t                    removed;        /* by retention, ever */
    uint64_t                    base;           /* newest never journaled */
    ngx_atomic_t                cache_reads;    /* from the page cache */
    ngx_atomic_t                thread_reads;   /* disk reads in a thread */
    ngx_atomic_t                worker_reads;   /* and in a worker */
    ngx_uint_t                  ready;          /* reads may use it */
} ngx_http_events_history_sh_t;


/* base of a journal added by a reload, before its first segment */
#define NGX_HTTP_EVENTS_HISTORY_PENDING  ((uint64_t) -1)


/* an event read back from its segment */
typedef struct {
    uint64_t                    seq;
    uint64_t                    time_ms;
    ngx_str_t                   tenant;
    ngx_str_t                   id;
    ngx_str_t                   type;
    ngx_str_t                   rtype;
    ngx_str_t                   rid;
    ngx_str_t                   source;
    ngx_str_t                   json;
    ngx_uint_t                  action;
    u_char                      digest[16];
    unsigned                    client_id:1;
} ngx_http_events_history_rec_t;


/* the value of a seq entry: where the record is */
typedef struct {
    uint64_t                    segment;
    uint64_t                    offset;
    uint64_t                    time_ms;
    uint32_t                    len;
    uint32_t                    tenant;
} ngx_http_events_history_loc_t;


typedef struct {
    uint64_t                    first;
    ngx_fd_t                    fd;
    ngx_uint_t                  used;
} ngx_http_events_history_fd_t;


typedef struct ngx_http_events_history_rd_s  ngx_http_events_history_rd_t;

/*
 * What one reader needs of its own: an LMDB read transaction (MDB_NOTLS:
 * any thread, one at a time), a buffer for a record, segment
 * descriptors.  The worker has one; a read in a thread takes another.
 */
struct ngx_http_events_history_rd_s {
    MDB_txn                    *txn;            /* reset between reads */
    u_char                     *buf;            /* records read back */
    size_t                      size;
    uint64_t                    cseg;           /* what buf holds */
    uint64_t                    coff;
    size_t                      clen;
    uint64_t                    cend;           /* the last record's end */
    uint64_t                    clast;          /* and its offset */
    ngx_uint_t                  nowait;         /* NGX_AGAIN, not the disk */
    ngx_uint_t                  clock;          /* of the fd cache */
    ngx_http_events_history_rd_t  *next;        /* free */
    ngx_http_events_history_fd_t  fds[NGX_HTTP_EVENTS_HISTORY_FDS];
};


typedef struct ngx_http_events_history_job_s  ngx_http_events_history_job_t;
typedef struct ngx_http_events_history_ix_s  ngx_http_events_history_ix_t;

typedef void (*ngx_http_events_history_done_pt)(
    ngx_http_events_history_job_t *job);


/* this process's handle on the index */
typedef struct {
    ngx_str_t                   file;           /* PATH/index.mdb */
    size_t                      map_size;
    ngx_msec_t                  max_age;        /* 0: none */
    ngx_http_events_journal_t  *journal;

    MDB_env                    *env;
    MDB_txn                    *wtxn;           /* under the zone lock */
    MDB_cursor                 *vcur;           /* the master's check */
    int                         vrc;            /* where vcur is */
    MDB_dbi                     seq;
    MDB_dbi                     tenant;
    MDB_dbi                     type;
    MDB_dbi                     entity;
    MDB_dbi                     id;
    MDB_dbi                     time;
    MDB_dbi                     catalog;
    MDB_dbi                     tenants;
    MDB_dbi                     meta;

    ngx_http_events_history_rd_t   rd;          /* the worker's own */
    ngx_http_events_history_rd_t  *free;        /* for threads */
    ngx_http_events_history_ix_t  *ix;          /* the indexer, here */
    ngx_http_events_history_ix_t  *tix;         /* and in a thread */
    ngx_queue_t                 waiting;        /* jobs, for the index */
    ngx_uint_t                  readers;        /* in threads, made */
    ngx_str_t                   pool_name;      /* thread_pool= */
    ngx_uint_t                  no_threads;     /* thread_pool=off */
#if (NGX_THREADS)
    ngx_thread_pool_t          *thread_pool;
#endif
    ngx_msec_t                  logged;

    /* next(): the candidates of the last walk, for the calls after it */
    void                       *nq;
    uint64_t                    nkey;
    uint64_t                    nafter;
    uint64_t                    nend;           /* walked up to here */
    ngx_uint_t                  nn;
    ngx_uint_t                  ni;
    uint64_t                    nseqs[NGX_HTTP_EVENTS_HISTORY_NEXT];
    ngx_http_events_history_loc_t  nlocs[NGX_HTTP_EVENTS_HISTORY_NEXT];

    /* the master's rebuild */
    uint64_t                    indexed;
    uint64_t                    wseg;           /* where the walk ended */
    uint64_t                    woff;
    uint64_t                    batch;
    uint64_t                    verified;
    ngx_uint_t                  rebuild;
    ngx_uint_t                  added;          /* by a reload */
    ngx_msec_t                  start;
    ngx_event_t                 tick;           /* worker 0's indexer */
} ngx_http_events_history_t;


/*
 * A read that may touch the disk, handed to a thread: a page of a query
 * (query, res) or an event by id (tenant, id); or the type catalog
 * (tenant, types), which reads the index only and runs in the worker
 * once the index has the head.  Results are allocated from "pool",
 * which only the thread uses meanwhile; "handler" is called in the
 * worker when it is done, with "rc" set.  Before that it may wait in
 * "waiting" for the indexer (in a thread too) to reach "need".
 */
struct ngx_http_events_history_job_s {
    ngx_http_events_history_t  *history;
    ngx_http_events_history_rd_t  *rd;
    ngx_http_events_query_t    *query;
    ngx_http_events_result_t   *res;
    ngx_str_t                  *tenant;
    ngx_str_t                  *id;
    ngx_array_t                *types;
    ngx_str_t                   json;
    ngx_pool_t                 *pool;
    ngx_int_t                   rc;
    ngx_http_events_history_done_pt  handler;
    void                       *data;
    ngx_queue_t                 queue;          /* in waiting */
    uint64_t                    need;           /* the head it waits for */
};


ngx_int_t ngx_http_events_history_conf(ngx_conf_t *cf,
    ngx_http_events_journal_t *j, ngx_str_t *value);
ngx_int_t ngx_http_events_history_conf_threads(ngx_conf_t *cf,
    ngx_http_events_history_t *h);

ngx_int_t ngx_http_events_history_replay_done(ngx_http_events_history_t *h,
    uint64_t last_seq, ngx_log_t *log);
ngx_int_t ngx_http_events_history_added(ngx_http_events_history_t *h,
    uint64_t head, ngx_log_t *log);

ngx_int_t ngx_http_events_history_init_process(ngx_http_events_history_t *h,
    ngx_cycle_t *cycle);
void ngx_http_events_history_exit_process(ngx_http_events_history_t *h);

ngx_int_t ngx_http_events_history_find(ngx_http_events_history_t *h,
    ngx_str_t *tenant, ngx_str_t *id, uint64_t evicted, ngx_pool_t *pool,
    ngx_http_events_event_t *found, uint64_t *upto);
ngx_int_t ngx_http_events_history_catchup(ngx_http_events_history_t *h);

ngx_uint_t ngx_http_events_history_ready(ngx_http_events_history_t *h);
ngx_uint_t ngx_http_events_history_threaded(ngx_http_events_history_t *h);
ngx_int_t ngx_http_events_history_post(ngx_http_events_history_job_t *job);
void ngx_http_events_history_run(ngx_http_events_history_job_t *job);
uint64_t ngx_http_events_history_gone(ngx_http_events_history_t *h,
    uint64_t ring_evicted);
uint64_t ngx_http_events_history_until(ngx_http_events_history_t *h,
    uint64_t ms);
void ngx_http_events_history_window(ngx_http_events_history_t *h,
    ngx_http_events_window_t *w);
ngx_int_t ngx_http_events_history_query(ngx_http_events_history_t *h,
    ngx_http_events_query_t *q, ngx_pool_t *pool,
    ngx_http_events_result_t *res);
ngx_int_t ngx_http_events_history_query_rd(ngx_http_events_history_t *h,
    ngx_http_events_history_rd_t *rd, ngx_http_events_query_t *q,
    ngx_pool_t *pool, ngx_http_events_result_t *res);
ngx_int_t ngx_http_events_history_get(ngx_http_events_history_t *h,
    ngx_str_t *tenant, ngx_str_t *id, ngx_pool_t *pool, ngx_str_t *json);
ngx_int_t ngx_http_events_history_get_rd(ngx_http_events_history_t *h,
    ngx_http_events_history_rd_t *rd, ngx_str_t *tenant, ngx_str_t *id,
    ngx_pool_t *pool, ngx_str_t *json);
ngx_int_t ngx_http_events_history_types(ngx_http_events_history_t *h,
    ngx_str_t *tenant, ngx_pool_t *pool, ngx_array_t *types);
ngx_int_t ngx_http_events_history_next(ngx_http_events_history_t *h,
    ngx_http_events_query_t *q, uint64_t after, uint64_t head,
    ngx_uint_t budget, ngx_http_events_scratch_t *scratch,
    ngx_http_events_item_t *item, uint64_t *last);
void ngx_http_events_history_sweep(ngx_http_events_history_t *h,
    uint64_t now_ms, uint64_t *cleaned);


#endif /* _NGX_HTTP_EVENTS_HISTORY_H_INCLUDED_ */
