
/*
 * Copyright (C) ngx_http_events_module authors
 */


#ifndef _NGX_HTTP_EVENTS_JOURNAL_H_INCLUDED_
#define _NGX_HTTP_EVENTS_JOURNAL_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#if (NGX_THREADS)
#include <ngx_thread_pool.h>
#endif

#include "ngx_http_events_store.h"
#include "ngx_http_events_history.h"


#define NGX_HTTP_EVENTS_FSYNC_OFF       0
#define NGX_HTTP_EVENTS_FSYNC_INTERVAL  1
#define NGX_HTTP_EVENTS_FSYNC_ALWAYS    2

/* the kind byte of a record; other kinds (webhook state) may follow */
#define NGX_HTTP_EVENTS_JOURNAL_EVENT   1

/* fsync=always: at most this many syncs under way in a zone */
#define NGX_HTTP_EVENTS_JOURNAL_DEPTH    2

#define NGX_HTTP_EVENTS_JOURNAL_RECORD   0xe5
#define NGX_HTTP_EVENTS_JOURNAL_HDR_SIZE 32


/* a record's header; the index reads records back by their place */
typedef struct {
    u_char                      magic;
    u_char                      kind;
    uint16_t                    flags;
    uint32_t                    len;            /* of the body */
    uint32_t                    crc;            /* this, crc 0, and body */
    uint32_t                    reserved;
    uint64_t                    seq;
    uint64_t                    time_ms;
} ngx_http_events_journal_rec_t;


/* the body of an event record, then the keys, then the envelope */
typedef struct {
    u_char                      digest[16];
    uint16_t                    tenant_len;
    uint16_t                    id_len;
    uint16_t                    type_len;
    uint16_t                    rtype_len;
    uint16_t                    rid_len;
    uint16_t                    source_len;
    u_char                      action;
    u_char                      client_id;
    uint16_t                    reserved;
    uint32_t                    seq_at;         /* in the unfilled json */
    uint32_t                    ts_at;
    uint32_t                    json_len;       /* of the stored one */
} ngx_http_events_journal_ev_t;


/* the journal's state in the zone, under shpool->mutex */
struct ngx_http_events_journal_sh_s {
    uint64_t                    config;         /* hash of the path */
    uint64_t                    gen;            /* bumped: reopen */
    uint64_t                    segment;        /* its first seq; 0: none */
    uint64_t                    size;           /* of that segment */
    uint64_t                    closed_bytes;   /* the older segments' */
    uint64_t                    closed;         /* how many of them */
    uint64_t                    written;        /* bytes appended, ever */
    uint64_t                    synced;         /* durable up to here */
    uint64_t                    fsync_ms;       /* wall clock; 0: never */
    uint64_t                    fsyncs;
    uint64_t                    errors;
    uint64_t                    replay_ms;
    uint64_t                    replayed;
    uint64_t                    cut;            /* bytes cut at start */
    uint64_t                    writes;         /* fsync=always's */
    uint64_t                    sync_writes;    /* when it was started */
    uint64_t                    last_writes;    /* the one before */
    uint64_t                    gather_from;    /* writes when it was set */
    uint64_t                    gather;         /* start at these writes */
    uint64_t                    gather_us;      /* or at this time */
    uint64_t                    gather_skip;    /* syncs left without */
    uint64_t                    sync_us;        /* the last one took */
    uint64_t                    sync_start[NGX_HTTP_EVENTS_JOURNAL_DEPTH];
    uint64_t                    fail_from;      /* a failed sync's bytes */
    uint64_t                    fail_upto;
    ngx_pid_t                   sync_pid[NGX_HTTP_EVENTS_JOURNAL_DEPTH];
                                                /* syncing; 0: free */
    ngx_pid_t                   writer;         /* a write under way */
    u_char                      ring[NGX_HTTP_EVENTS_MAX_WORKERS];
                                                /* waits: ring it */
    ngx_http_events_history_sh_t  history;
    unsigned                    refusing:1;     /* the last write failed */
    unsigned                    unsynced:1;     /* the last fsync failed */
};


/* a request waiting for an fsync=always sync done in a thread */
typedef struct {
    ngx_queue_t                 queue;
    uint64_t                    end;            /* durable up to here */
    void                       *data;
    void                      (*handler)(void *data, ngx_int_t rc);
    unsigned                    queued:1;
} ngx_http_events_journal_waiter_t;


/* rings a worker's doorbell: its waiters' bytes may be durable now */
typedef void (*ngx_http_events_journal_ring_pt)(ngx_uint_t worker);


struct ngx_http_events_journal_s {
    ngx_str_t                   zone;
    ngx_str_t                   path;           /* null-terminated */
    ngx_uint_t                  fsync;
    ngx_msec_t                  interval;
    off_t                       max_size;       /* 0: no limit */
    off_t                       segment_size;
    ngx_cycle_t                *cycle;
    ngx_http_events_store_t    *store;
    ngx_http_events_history_t  *history;

    /* this process's */
    ngx_fd_t                    fd;
    uint64_t                    gen;
    uint64_t                    segment;
    ngx_event_t                 sync_timer;
    ngx_event_t                 sweep_timer;

    /* fsync=always in a thread: one sync at a time in the zone */
    ngx_queue_t                 waiting;
    ngx_event_t                 follow;         /* on another's sync */
    ngx_event_t                 gather;         /* bounds the delay */
    ngx_http_events_journal_ring_pt  ring;
#if (NGX_THREADS)
    ngx_thread_pool_t          *thread_pool;
    ngx_thread_task_t          *task;
#endif
    ngx_fd_t                    sync_fd;
    uint64_t                    sync_upto;
    uint64_t                    sync_us;        /* the last one took */
    ngx_err_t                   sync_err;
    unsigned                    syncing:1;
    unsigned                    new_secret:1;   /* none on disk at start */
};


char *ngx_http_events_journal_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_events_journal_bind(ngx_conf_t *cf, ngx_array_t *journals,
    ngx_array_t *zones);

ngx_int_t ngx_http_events_journal_init_zone(ngx_http_events_journal_t *j,
    ngx_log_t *log, ngx_uint_t reused);
ngx_int_t ngx_http_events_journal_init_process(ngx_cycle_t *cycle,
    ngx_array_t *journals, ngx_http_events_journal_ring_pt ring);
void ngx_http_events_journal_exit_process(ngx_array_t *journals);

size_t ngx_http_events_journal_size(ngx_http_events_event_t *ev);
ngx_int_t ngx_http_events_journal_write_locked(ngx_http_events_journal_t *j,
    ngx_http_events_journal_sh_t *jsh, ngx_http_events_event_t *events,
    ngx_uint_t n, u_char *buf, uint64_t *end);
ngx_int_t ngx_http_events_journal_sync(ngx_http_events_journal_t *j,
    uint64_t end);
ngx_int_t ngx_http_events_journal_wait(ngx_http_events_journal_t *j,
    ngx_http_events_journal_waiter_t *w);
void ngx_http_events_journal_unwait(ngx_http_events_journal_waiter_t *w);
void ngx_http_events_journal_wake(ngx_http_events_store_t *store);
uint64_t ngx_http_events_journal_current(ngx_http_events_journal_t *j);
uint64_t ngx_http_events_journal_after(ngx_http_events_journal_t *j,
    uint64_t first);

ngx_http_events_history_sh_t *ngx_http_events_journal_history(
    ngx_http_events_journal_t *j);
ngx_int_t ngx_http_events_journal_segments(ngx_http_events_journal_t *j,
    ngx_pool_t *pool, ngx_array_t *firsts, ngx_log_t *log);
u_char *ngx_http_events_journal_segment_name(ngx_http_events_journal_t *j,
    u_char *buf, uint64_t first);
ngx_int_t ngx_http_events_journal_segment_valid(u_char *map, uint64_t first);
uint32_t ngx_http_events_journal_crc(ngx_http_events_journal_rec_t *rec,
    u_char *body);


#endif /* _NGX_HTTP_EVENTS_JOURNAL_H_INCLUDED_ */
