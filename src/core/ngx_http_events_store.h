
/*
 * Copyright (C) ngx_http_events_module authors
 */


#ifndef _NGX_HTTP_EVENTS_STORE_H_INCLUDED_
#define _NGX_HTTP_EVENTS_STORE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>

#include "ngx_http_events_types.h"
#include "ngx_http_events_time.h"
#include "ngx_http_events_cursor.h"


#define NGX_HTTP_EVENTS_MAX_WORKERS     64

#define NGX_HTTP_EVENTS_ACTION_CREATED  1
#define NGX_HTTP_EVENTS_ACTION_UPDATED  2
#define NGX_HTTP_EVENTS_ACTION_DELETED  3
#define NGX_HTTP_EVENTS_ACTION_OCCURRED 4

/* the longest strings a record keeps beside its JSON */
#define NGX_HTTP_EVENTS_MAX_TENANT      64
#define NGX_HTTP_EVENTS_MAX_ID          128
#define NGX_HTTP_EVENTS_MAX_TYPE        128
#define NGX_HTTP_EVENTS_MAX_RTYPE       64
#define NGX_HTTP_EVENTS_MAX_RID         128
#define NGX_HTTP_EVENTS_MAX_SOURCE      128
#define NGX_HTTP_EVENTS_MAX_KEYS        (64 + 128 + 128 + 64 + 128 + 128)


/*
 * A tenant's distinct types in the catalog, at most; the catalog also
 * leaves 1/4 of the zone's spare memory (after ring and indexes) to
 * webhook endpoints and deliveries.
 */
#define NGX_HTTP_EVENTS_TENANT_TYPES    1000


/* what a write into the store came to */
typedef enum {
    NGX_HTTP_EVENTS_STORE_OK = 0,
    NGX_HTTP_EVENTS_STORE_ERROR = -1,       /* no memory in the pool */
    NGX_HTTP_EVENTS_STORE_CONFLICT = 1,     /* an id with another body */
    NGX_HTTP_EVENTS_STORE_TOO_LARGE,        /* more than the ring holds */
    NGX_HTTP_EVENTS_STORE_FULL,             /* the catalog cannot grow */
    NGX_HTTP_EVENTS_STORE_TOO_MANY_TYPES,   /* the tenant's types: capped */
    NGX_HTTP_EVENTS_STORE_JOURNAL_FAILED,   /* nothing written or stored */
    NGX_HTTP_EVENTS_STORE_JOURNAL_UNSYNCED, /* stored; its fsync failed */
    NGX_HTTP_EVENTS_STORE_STALE,            /* restore: seq not after head */
    NGX_HTTP_EVENTS_STORE_REMOTE,           /* a cluster's: its tailer's */
    NGX_HTTP_EVENTS_STORE_BUSY              /* ids: the ring kept moving */
} ngx_http_events_store_rc_e;


typedef struct ngx_http_events_journal_sh_s  ngx_http_events_journal_sh_t;


/* what happens around the write path: capture and pre-write hooks */
#define NGX_HTTP_EVENTS_CAPTURED        0   /* captured and stored */
#define NGX_HTTP_EVENTS_CAPTURE_INVALID 1   /* captured, refused */
#define NGX_HTTP_EVENTS_VALIDATE_REJECTED  2   /* the hook said no */
#define NGX_HTTP_EVENTS_VALIDATE_FAILED 3   /* the hook did not answer */
#define NGX_HTTP_EVENTS_NCOUNTERS       4


/* one event on its way into the store, and what the store made of it */
typedef struct {
    ngx_str_t                   tenant;
    ngx_str_t                   id;
    ngx_str_t                   type;
    ngx_str_t                   rtype;
    ngx_str_t                   rid;
    ngx_str_t                   source;
    ngx_uint_t                  action;
    u_char                      digest[16];

    /*
     * the envelope without seq and timestamp: the store writes them
     * in at seq_at and ts_at once it has assigned them
     */
    u_char                     *json;
    size_t                      json_len;
    size_t                      seq_at;
    size_t                      ts_at;
    size_t                      meta_at;        /* metadata's value, or 0 */

    unsigned                    client_id:1;
    unsigned                    repeat:1;

    /*
     * the metadata index, found before the lock (from meta_at): whether
     * the event has the key store->index_key, and its hash
     */
    unsigned                    actor_known:1;
    unsigned                    actor:1;
    uint32_t                    actor_hash;

    uint64_t                    seq;
    uint64_t                    time_ms;
    ngx_str_t                   stored;         /* the envelope, as stored */

    /* where the journal wrote its record, for the history index */
    uint64_t                    jsegment;
    uint64_t                    joffset;
    uint32_t                    jlen;
} ngx_http_events_event_t;


/* a consistent view of the store's window, taken without the lock */
typedef struct {
    uint64_t                    epoch;
    uint64_t                    head_seq;       /* newest published */
    uint64_t                    evicted_seq;    /* newest gone */
    uint64_t                    oldest_seq;     /* oldest retained, or 0 */
} ngx_http_events_window_t;


/*
 * ?metadata.KEY=VALUE: key and value as the envelope writer escapes
 * them, so that they compare with the stored bytes as they are
 */
#define NGX_HTTP_EVENTS_MAX_META_FILTERS  8
#define NGX_HTTP_EVENTS_MAX_META_KEY      64
#define NGX_HTTP_EVENTS_MAX_META_VALUE    256

typedef struct {
    ngx_str_t                   key;
    ngx_str_t                   value;
} ngx_http_events_meta_filter_t;


typedef struct {
    ngx_http_events_cursor_key_t  *cursor_key;  /* after, before */
    ngx_str_t                   tenant;
    ngx_str_t                  *types;
    ngx_uint_t                  ntypes;
    ngx_str_t                   rtype;
    ngx_str_t                   rid;
    ngx_str_t                   source;
    ngx_uint_t                  action;
    ngx_http_events_meta_filter_t  *meta;
    ngx_uint_t                  nmeta;
    int64_t                     since_ms;       /* -1: none */
    int64_t                     until_ms;       /* -1: none */
    uint64_t                    after;
    uint64_t                    after_epoch;
    uint64_t                    before;         /* 0: none */
    uint64_t                    before_epoch;
    ngx_uint_t                  limit;
    ngx_uint_t                  scan_limit;
    ngx_str_t                   last_event_id;  /* streams only */
    unsigned                    desc:1;
    unsigned                    any_tenant:1;
    unsigned                    has_after:1;
    unsigned                    named:1;
    unsigned                    cloudevents:1;  /* streams: ?format= */
} ngx_http_events_query_t;


typedef struct {
    uint64_t                    seq;
    ngx_str_t                   json;
    ngx_str_t                   type;
    ngx_str_t                   id;             /* store_next() only */
    ngx_str_t                   tenant;         /* store_next() only */
} ngx_http_events_item_t;


/* where a reader copies one event: grown, never shrunk */
typedef struct {
    u_char                     *data;
    size_t                      size;
    u_char                      type[NGX_HTTP_EVENTS_MAX_TYPE];
    u_char                      id[NGX_HTTP_EVENTS_MAX_ID];
    u_char                      tenant[NGX_HTTP_EVENTS_MAX_TENANT];
} ngx_http_events_scratch_t;


typedef struct {
    ngx_array_t                 items;          /* ngx_http_events_item_t */
    ngx_http_events_window_t    window;
    uint64_t                    next;           /* cursor seq to go on */
    unsigned                    has_next:1;
    unsigned                    has_more:1;
    unsigned                    expired:1;      /* the cursor left the window */
    unsigned                    defer:1;        /* in: disk reads may wait */
    unsigned                    disk:1;         /* out: the disk's to read */
} ngx_http_events_result_t;


typedef struct {
    ngx_str_t                   type;
    uint64_t                    count;
    uint64_t                    last_ms;
} ngx_http_events_type_info_t;


/*
 * A worker slot's counters: cumulative per slot since the zone was
 * created, across reloads and crashes; pid is the worker now in the slot,
 * written when it starts, and starts counts the workers that took it.
 */
typedef struct {
    ngx_pid_t                   pid;
    ngx_atomic_t                starts;
    uint64_t                    published;
    ngx_atomic_t                subscribers;
    ngx_atomic_t                pending;        /* its doorbell rang */
    ngx_atomic_t                streamed;
    ngx_atomic_t                lagging;
    ngx_atomic_t                wakeups;        /* its doorbell, answered */
    ngx_atomic_t                dispatching;    /* webhooks: rings it too */
} ngx_http_events_worker_stat_t;


typedef struct {
    uint64_t                    epoch;
    uint64_t                    zone_size;
    uint64_t                    ring_size;
    uint64_t                    ring_used;
    uint64_t                    capacity;       /* index slots */
    uint64_t                    retained;
    uint64_t                    stored;
    uint64_t                    evicted;
    uint64_t                    expired;
    uint64_t                    repeats;
    uint64_t                    conflicts;
    uint64_t                    rejected_full;
    ngx_atomic_uint_t           counters[NGX_HTTP_EVENTS_NCOUNTERS];
    uint64_t                    head_seq;
    uint64_t                    oldest_seq;
    uint64_t                    types;

    unsigned                    journal:1;
    uint64_t                    journal_bytes;
    uint64_t                    journal_segments;
    int64_t                     journal_fsync_age;  /* ms; -1: never */
    uint64_t                    journal_fsyncs;
    uint64_t                    journal_errors;
    uint64_t                    journal_replay_ms;
    uint64_t                    journal_replayed;
    uint64_t                    journal_cut;
    ngx_uint_t                  journal_refusing;   /* last write failed */
    ngx_uint_t                  journal_unsynced;   /* last fsync failed */

    ngx_uint_t                  history_ready;
    uint64_t                    history_indexed;    /* up to this seq */
    uint64_t                    history_removed;    /* by retention */
    uint64_t                    history_gone;
    uint64_t                    history_rebuilds;
    uint64_t                    history_build_ms;
    uint64_t                    history_errors;
    uint64_t                    history_cache_reads;
    uint64_t                    history_thread_reads;
    uint64_t                    history_worker_reads;

    ngx_uint_t                  nworkers;
    ngx_uint_t                  slots[NGX_HTTP_EVENTS_MAX_WORKERS];
    ngx_http_events_worker_stat_t  workers[NGX_HTTP_EVENTS_MAX_WORKERS];
} ngx_http_events_stats_t;


typedef struct ngx_http_events_sh_s  ngx_http_events_sh_t;


/*
 * Cluster mode (src/cluster/): appends go to another log and come back
 * into the ring through ngx_http_events_store_restore(), in its order.
 * done() gets NGX_OK (the events carry their seq, time and stored
 * envelope, repeats marked), NGX_DECLINED (failed: a conflicting id),
 * NGX_BUSY (not stored: the log is unreachable), NGX_AGAIN (no answer
 * in time: maybe stored) or NGX_ABORT (stored, but not confirmed by as
 * many replicas as required).
 */

typedef void (*ngx_http_events_remote_done_pt)(void *ctx, ngx_int_t rc,
    ngx_uint_t failed);


/*
 * Reads of what the ring no longer holds, from the cluster's log.
 * done() gets NGX_OK (query: res filled; get: json), NGX_DECLINED (get:
 * no such event), NGX_BUSY (the log is unreachable) or NGX_ERROR.
 */

typedef void (*ngx_http_events_remote_read_pt)(void *ctx, ngx_int_t rc);


/*
 * Webhooks once per cluster: a delivery (endpoint, seq) is claimed
 * before each attempt.  done() gets NGX_OK (this node attempts it, with
 * hold: the claim, renewed until settle()), NGX_DONE (another node ended
 * it) or NGX_BUSY (another node holds it, or the log is unreachable: ask
 * again in wait ms).  held() after the attempt: NGX_OK, or NGX_DECLINED
 * (the claim was lost meanwhile: the result is not this node's to
 * record).  settle() then, always: NGX_OK (ended), NGX_AGAIN (retried:
 * held keep ms more) or NGX_DECLINED (let go, for another node); nothing
 * for a lost claim.
 */

typedef void (*ngx_http_events_remote_claim_pt)(void *ctx, ngx_int_t rc,
    ngx_msec_t wait, void *hold);


/* texts published by the nodes of a cluster, into the zone */

typedef ngx_int_t (*ngx_http_events_store_apply_pt)(
    ngx_http_events_store_t *store, ngx_str_t *texts, ngx_uint_t n,
    ngx_pool_t *pool);


typedef struct {
    void                       *data;

    /* a handle for cancel(); NULL: refused now, done() is not called */
    void                     *(*append)(void *data,
                                        ngx_http_events_event_t *events,
                                        ngx_uint_t n, ngx_pool_t *pool,
                                        ngx_http_events_remote_done_pt done,
                                        void *ctx);
    void                      (*cancel)(void *handle);
    /* NGX_AGAIN: the ring is still catching up with the log */
    ngx_int_t                 (*ready)(void *data);
    /*
     * a page of the list older than the ring: res->window holds the
     * ring's on the call (the page stops at its head); a handle for
     * cancel(), NULL: refused now
     */
    void                     *(*query)(void *data,
                                       ngx_http_events_query_t *q,
                                       ngx_http_events_result_t *res,
                                       ngx_pool_t *pool,
                                       ngx_http_events_remote_read_pt done,
                                       void *ctx);
    void                     *(*get)(void *data, ngx_str_t *tenant,
                                     ngx_str_t *id, ngx_str_t *json,
                                     ngx_pool_t *pool,
                                     ngx_http_events_remote_read_pt done,
                                     void *ctx);
    void                      (*cancel_read)(void *handle);
    /*
     * the tenant's type catalog over the log (type_info_t into types);
     * a handle for cancel_read(), NULL: refused now
     */
    void                     *(*types)(void *data, ngx_str_t *tenant,
                                       ngx_array_t *types, ngx_pool_t *pool,
                                       ngx_http_events_remote_read_pt done,
                                       void *ctx);
    /* the last seq the log had trimmed, as of the ring's head */
    uint64_t                  (*gone)(void *data);
    ngx_int_t                 (*claim)(void *data, ngx_str_t *tenant,
                                       ngx_str_t *endpoint, uint64_t seq,
                                       ngx_http_events_remote_claim_pt done,
                                       void *ctx);
    ngx_int_t                 (*held)(void *data, void *hold);
    void                      (*settle)(void *data, void *hold,
                                        ngx_int_t how, ngx_msec_t keep);
    /*
     * an endpoint made, changed or deleted by the API, as text for every
     * node; NGX_ERROR: it cannot go now
     */
    ngx_int_t                 (*wh_publish)(void *data, ngx_str_t *tenant,
                                            ngx_str_t *id, ngx_str_t *text);
    /* an endpoint's failure state, as text for every node */
    ngx_int_t                 (*wh_state)(void *data, ngx_str_t *tenant,
                                          ngx_str_t *id, ngx_str_t *text);
    /* an attempt's record, for the attempt log of every node */
    void                      (*wh_attempt)(void *data, ngx_str_t *tenant,
                                            ngx_str_t *id, u_char *rec,
                                            size_t len);
    /* readiness: NGX_DECLINED with a reason and a detail, or NGX_OK */
    ngx_int_t                 (*health)(void *data, ngx_pool_t *pool,
                                        ngx_str_t *reason,
                                        ngx_str_t *detail);
} ngx_http_events_remote_t;


struct ngx_http_events_store_s {
    ngx_http_events_sh_t       *sh;
    ngx_slab_pool_t            *shpool;
    ngx_str_t                   name;
    ngx_msec_t                  retention;
    ngx_str_t                   index_key;      /* metadata_index= */
    uint64_t                    epoch;
    ngx_http_events_journal_t  *journal;        /* NULL: none */
    ngx_http_events_remote_t   *remote;         /* NULL: not a cluster */
    ngx_http_events_cursor_key_t  cursor_key;   /* keyed on first use */

    /* this worker's streams on the zone */
    ngx_queue_t                 subscribers;
    ngx_uint_t                  nsubscribers;
    ngx_queue_t                 exports;        /* NDJSON, this worker's */
    ngx_uint_t                  wake_left;      /* streams this wake owes */
    ngx_event_t                 wake_more;      /* posted: the rest */

    /* webhooks: the server that sends them, their settings, the queue */
    void                       *wh_ctx;         /* ngx_http_conf_ctx_t */
    ngx_http_events_webhook_conf_t  *whcf;
    ngx_array_t                *wh_static;      /* webhook_spec_t */
    ngx_http_events_webhook_sh_t    *wh;        /* in the zone */
    ngx_event_t                 wh_tick;
    ngx_event_t                 wh_kick;        /* posted: events came */
    ngx_uint_t                  wh_inflight;    /* this process's */
    ngx_msec_t                  wh_saved;       /* state last written */
    ngx_thread_task_t          *wh_task;
    ngx_http_events_webhook_jobs_t  *wh_jobs;   /* this process's */
    /*
     * a cluster's: every node's API endpoints, and every endpoint's
     * failure state, as published, to apply
     */
    ngx_http_events_store_apply_pt  wh_apply;
    ngx_http_events_store_apply_pt  wh_state_apply;
    void                      (*wh_attempt_apply)(
                                  ngx_http_events_store_t *store,
                                  ngx_str_t *tenant, ngx_str_t *id,
                                  u_char *rec, size_t len);
    unsigned                    wh_writing:1;   /* the task is out */
    unsigned                    wh_owner:1;
};


ngx_int_t ngx_http_events_store_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);

size_t ngx_http_events_store_max_record(ngx_http_events_store_t *store);
ngx_uint_t ngx_http_events_store_max_batch(ngx_http_events_store_t *store);

ngx_http_events_store_rc_e ngx_http_events_store_append(
    ngx_http_events_store_t *store, ngx_http_events_event_t *events,
    ngx_uint_t n, ngx_pool_t *pool, ngx_uint_t *failed);
ngx_http_events_store_rc_e ngx_http_events_store_append_nosync(
    ngx_http_events_store_t *store, ngx_http_events_event_t *events,
    ngx_uint_t n, ngx_pool_t *pool, ngx_uint_t *failed, uint64_t *upto);

ngx_http_events_journal_sh_t *ngx_http_events_store_journal(
    ngx_http_events_store_t *store);
ngx_http_events_store_rc_e ngx_http_events_store_restore(
    ngx_http_events_store_t *store, ngx_http_events_event_t *ev);
void ngx_http_events_store_resume(ngx_http_events_store_t *store,
    uint64_t epoch, uint64_t last_seq, uint64_t last_ms, uint64_t gone);
size_t ngx_http_events_store_json_len(ngx_http_events_event_t *ev);
u_char *ngx_http_events_store_json(u_char *p, ngx_http_events_event_t *ev);

void ngx_http_events_store_reset(ngx_http_events_store_t *store,
    uint64_t epoch, u_char *secret);
uint64_t ngx_http_events_store_epoch(ngx_http_events_store_t *store);

void ngx_http_events_store_tally(ngx_http_events_store_t *store,
    ngx_uint_t counter);
void ngx_http_events_store_window(ngx_http_events_store_t *store,
    ngx_http_events_window_t *w);
ngx_int_t ngx_http_events_store_get(ngx_http_events_store_t *store,
    ngx_str_t *tenant, ngx_str_t *id, ngx_pool_t *pool, ngx_str_t *json);
ngx_int_t ngx_http_events_store_get_ring(ngx_http_events_store_t *store,
    ngx_str_t *tenant, ngx_str_t *id, ngx_pool_t *pool, ngx_str_t *json);
ngx_uint_t ngx_http_events_store_match(ngx_http_events_query_t *q,
    ngx_http_events_event_t *ev, ngx_str_t *json);
ngx_int_t ngx_http_events_store_query(ngx_http_events_store_t *store,
    ngx_http_events_query_t *q, ngx_pool_t *pool,
    ngx_http_events_result_t *res);
ngx_int_t ngx_http_events_store_query_deferred(
    ngx_http_events_store_t *store, ngx_http_events_query_t *q,
    ngx_pool_t *pool, ngx_http_events_result_t *res);
ngx_int_t ngx_http_events_store_types(ngx_http_events_store_t *store,
    ngx_str_t *tenant, ngx_pool_t *pool, ngx_array_t *types);
ngx_int_t ngx_http_events_store_next(ngx_http_events_store_t *store,
    ngx_http_events_query_t *q, uint64_t after, ngx_uint_t budget,
    ngx_http_events_scratch_t *scratch, ngx_http_events_item_t *item,
    uint64_t *last);
void ngx_http_events_store_stats(ngx_http_events_store_t *store,
    ngx_http_events_stats_t *st);

void ngx_http_events_store_subscribe(ngx_http_events_store_t *store,
    ngx_int_t delta);
void ngx_http_events_store_dispatching(ngx_http_events_store_t *store,
    ngx_uint_t on);
ngx_uint_t ngx_http_events_store_listening(ngx_http_events_store_t *store,
    ngx_uint_t worker);
ngx_uint_t ngx_http_events_store_ring(ngx_http_events_store_t *store,
    ngx_uint_t worker);
void ngx_http_events_store_unring(ngx_http_events_store_t *store,
    ngx_uint_t worker);
void ngx_http_events_store_count(ngx_http_events_store_t *store,
    ngx_uint_t streamed, ngx_uint_t lagging);
void ngx_http_events_store_woken(ngx_http_events_store_t *store);
void ngx_http_events_store_worker_start(ngx_http_events_store_t *store,
    ngx_uint_t workers);

void **ngx_http_events_store_wh_slot(ngx_http_events_store_t *store);
void **ngx_http_events_store_inbound_slot(ngx_http_events_store_t *store);
uint64_t ngx_http_events_store_head(ngx_http_events_store_t *store);
ngx_uint_t ngx_http_events_store_tenant_empty(ngx_http_events_store_t *store,
    ngx_str_t *tenant);
u_char *ngx_http_events_store_secret(ngx_http_events_store_t *store);
ngx_http_events_cursor_key_t *ngx_http_events_store_cursor_key(
    ngx_http_events_store_t *store);


#endif /* _NGX_HTTP_EVENTS_STORE_H_INCLUDED_ */
