
/*
 * Copyright (C) ngx_http_events_module authors
 */


/*
 * Inside src/webhook/ only: the endpoints, deliveries and attempt logs
 * in the events zone (read and written under shpool->mutex), the
 * copies taken out of it, and the functions the webhook files share.
 */


#ifndef _NGX_HTTP_EVENTS_WEBHOOK_SHM_H_INCLUDED_
#define _NGX_HTTP_EVENTS_WEBHOOK_SHM_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <jansson.h>

#include "ngx_http_events_store.h"
#include "ngx_http_events_cloudevents.h"
#include "ngx_http_events_webhook.h"


#define NGX_HTTP_EVENTS_WH_MAX_URL          2048
#define NGX_HTTP_EVENTS_WH_MAX_DESCRIPTION  512
#define NGX_HTTP_EVENTS_WH_MAX_HNAME        64
#define NGX_HTTP_EVENTS_WH_MAX_HVALUE       1024
#define NGX_HTTP_EVENTS_WH_MIN_SECRET       24
#define NGX_HTTP_EVENTS_WH_MAX_ID           64
#define NGX_HTTP_EVENTS_WH_MAX_RETRIES      20
#define NGX_HTTP_EVENTS_WH_SKIPS            16
#define NGX_HTTP_EVENTS_WH_FAILED           256
#define NGX_HTTP_EVENTS_WH_MAX_REPLAY       10000

/* an attempt, on the stack: the entry without its excerpt, and room */
#define NGX_HTTP_EVENTS_WH_ATTEMPT                                            \
    (sizeof(ngx_http_events_webhook_attempt_t) + 64)

/*
 * Deliveries an endpoint holds at once, in chunks of zone memory: the
 * first is made with the endpoint, the others when they are needed.
 */
#define NGX_HTTP_EVENTS_WH_WINDOW           256
#define NGX_HTTP_EVENTS_WH_CHUNK            32

/* an endpoint of every tenant (events_handler tenant=*) */
#define NGX_HTTP_EVENTS_WH_ANY_TENANT       "*"

/* delivery and attempt states */
#define NGX_HTTP_EVENTS_WH_QUEUED           0
#define NGX_HTTP_EVENTS_WH_INFLIGHT         1

#define NGX_HTTP_EVENTS_WH_SCHEDULED        0
#define NGX_HTTP_EVENTS_WH_MANUAL           1
#define NGX_HTTP_EVENTS_WH_REPLAY           2

#define NGX_HTTP_EVENTS_WH_SUCCEEDED        0
#define NGX_HTTP_EVENTS_WH_RETRYING         1   /* failed, will retry */
#define NGX_HTTP_EVENTS_WH_FAILED_FINAL     2
#define NGX_HTTP_EVENTS_WH_EXPIRED          3
#define NGX_HTTP_EVENTS_WH_ABORTED          4

/* why an endpoint is disabled */
#define NGX_HTTP_EVENTS_WH_ENABLED          0
#define NGX_HTTP_EVENTS_WH_GONE             1
#define NGX_HTTP_EVENTS_WH_RECEIVER         2
#define NGX_HTTP_EVENTS_WH_FAILING          3
#define NGX_HTTP_EVENTS_WH_MANUALLY         4
#define NGX_HTTP_EVENTS_WH_UNVERIFIED       5   /* the handshake failed */

/* where an endpoint's handshake is (verify "cloudevents") */
#define NGX_HTTP_EVENTS_WH_VERIFY_PENDING   0
#define NGX_HTTP_EVENTS_WH_VERIFY_OK        1
#define NGX_HTTP_EVENTS_WH_VERIFY_FAILED    2


/* what a call on the zone's endpoints says, whatever the caller makes of it */
typedef enum {
    NGX_HTTP_EVENTS_WEBHOOK_OK = 0,
    NGX_HTTP_EVENTS_WEBHOOK_NOT_FOUND,      /* no such endpoint */
    NGX_HTTP_EVENTS_WEBHOOK_STATIC,         /* from nginx.conf: read-only */
    NGX_HTTP_EVENTS_WEBHOOK_LIMIT,          /* the tenant has the most */
    NGX_HTTP_EVENTS_WEBHOOK_ZONE_FULL,      /* no room in the zone */
    NGX_HTTP_EVENTS_WEBHOOK_BUSY,           /* a replay is being queued */
    NGX_HTTP_EVENTS_WEBHOOK_NO_DELIVERY,    /* the event is not queued */
    NGX_HTTP_EVENTS_WEBHOOK_QUEUE_FULL,     /* no free delivery slot */
    NGX_HTTP_EVENTS_WEBHOOK_UNVERIFIED,     /* the handshake did not pass */
    NGX_HTTP_EVENTS_WEBHOOK_ERROR           /* out of process memory */
} ngx_http_events_webhook_rc_e;


typedef struct {
    uint32_t                    off;
    uint32_t                    len;
} ngx_http_events_webhook_str_t;


/* seqs (from, to] that were never turned into deliveries */
typedef struct {
    uint64_t                    from;
    uint64_t                    to;
} ngx_http_events_webhook_skip_t;


/* an event on its way to one endpoint */
typedef struct {
    ngx_queue_t                 queue;
    uint64_t                    seq;
    uint64_t                    next_ms;        /* wall clock */
    uint64_t                    created_ms;
    uint32_t                    attempts;       /* made so far */
    uint32_t                    term;           /* of the attempt in flight */
    u_char                      state;
    u_char                      trigger;
} ngx_http_events_webhook_delivery_t;


/* one attempt, in an endpoint's log */
typedef struct {
    uint64_t                    n;              /* the log's cursor */
    uint64_t                    seq;
    uint64_t                    started_ms;
    uint64_t                    next_ms;        /* 0: none */
    uint64_t                    retry_after_ms; /* 0: none */
    uint32_t                    duration_ms;
    uint16_t                    http_status;
    uint16_t                    excerpt_len;
    u_char                      attempt;
    u_char                      trigger;
    u_char                      result;
    u_char                      error;
    u_char                      event_id_len;
    u_char                      type_len;
    u_char                      detail_len;
    u_char                      ctype_len;
    u_char                      aid[26];        /* att_<aid> */
    u_char                      event_id[NGX_HTTP_EVENTS_MAX_ID];
    u_char                      type[NGX_HTTP_EVENTS_MAX_TYPE];
    u_char                      detail[96];
    u_char                      ctype[64];
    u_char                      excerpt[1];
} ngx_http_events_webhook_attempt_t;


/* delivery records of an endpoint, a chunk of them in one slab block */
typedef struct ngx_http_events_webhook_chunk_s
    ngx_http_events_webhook_chunk_t;

struct ngx_http_events_webhook_chunk_s {
    ngx_http_events_webhook_chunk_t     *next;
    ngx_http_events_webhook_delivery_t   deliveries[NGX_HTTP_EVENTS_WH_CHUNK];
};


/*
 * A tenant with endpoints: the dispatcher shares the delivery slots
 * among tenants and takes their deliveries in turn.
 */
typedef struct {
    ngx_queue_t                     queue;          /* wh->tenants */
    ngx_queue_t                     endpoints;      /* by ep->tqueue */
    u_char                          tenant[NGX_HTTP_EVENTS_MAX_TENANT];
    u_char                          tenant_len;
    uint32_t                        nendpoints;
    uint32_t                        inflight;       /* at the last turn */
} ngx_http_events_webhook_tenant_t;


typedef struct {
    ngx_queue_t                     queue;
    ngx_queue_t                     tqueue;         /* tn->endpoints */
    ngx_http_events_webhook_tenant_t  *tn;

    u_char                          id[NGX_HTTP_EVENTS_WH_MAX_ID];
    u_char                          tenant[NGX_HTTP_EVENTS_MAX_TENANT];
    u_char                          id_len;
    u_char                          tenant_len;

    /*
     * url, description, patterns, headers and metadata filters live in
     * one slab block
     */
    u_char                         *blob;
    size_t                          blob_len;
    ngx_http_events_webhook_str_t   url;
    ngx_http_events_webhook_str_t   description;
    ngx_http_events_webhook_str_t   patterns[NGX_HTTP_EVENTS_WH_MAX_PATTERNS];
    ngx_http_events_webhook_str_t   hnames[NGX_HTTP_EVENTS_WH_MAX_HEADERS];
    ngx_http_events_webhook_str_t   hvalues[NGX_HTTP_EVENTS_WH_MAX_HEADERS];
    ngx_http_events_webhook_str_t   mkeys[NGX_HTTP_EVENTS_MAX_META_FILTERS];
    ngx_http_events_webhook_str_t   mvalues[NGX_HTTP_EVENTS_MAX_META_FILTERS];
    u_char                          npatterns;
    u_char                          nheaders;
    u_char                          nmeta;

    u_char                          secret[NGX_HTTP_EVENTS_WH_MAX_SECRET];
    u_char                          previous[NGX_HTTP_EVENTS_WH_MAX_SECRET];
    u_char                          secret_len;
    u_char                          previous_len;
    uint64_t                        previous_expires_ms;

    u_char                          is_static;
    u_char                          is_handler;     /* url is a location */
    u_char                          seen;           /* static: still in conf */
    u_char                          disabled;       /* a reason, or 0 */
    u_char                          last_error;
    u_char                          meta_failed;    /* recovered is due */
    uint32_t                        rate_limit;     /* per second, 0: none */
    u_char                          format;
    u_char                          ordered;        /* one at a time */
    uint32_t                        max_inflight;   /* 0: the location's */
    uint64_t                        tokens_ms;      /* the bucket, in time */

    /*
     * The CloudEvents handshake: deliveries wait until it succeeded.
     * A new url starts it again (verify_gen++), and the answer of a
     * handshake sent before that is not taken.
     */
    u_char                          verify;
    u_char                          verify_state;
    u_char                          verify_busy;    /* one in flight */
    u_char                          verify_error;
    uint32_t                        verify_gen;
    uint32_t                        verify_attempts;
    uint32_t                        verify_status;  /* HTTP, 0: none */
    uint32_t                        allowed_rate;   /* per minute, 0: none */
    uint64_t                        verify_at_ms;   /* the last answer */
    uint64_t                        verify_next_ms;
    u_char                          verify_detail[96];
    u_char                          verify_detail_len;

    uint64_t                        created_ms;
    uint64_t                        updated_ms;
    uint64_t                        disabled_ms;
    uint64_t                        failing_since_ms;
    uint64_t                        paused_until_ms;
    uint64_t                        last_success_ms;
    uint64_t                        last_failure_ms;

    uint64_t                        ok;
    uint64_t                        failed;
    uint64_t                        expired;
    uint64_t                        attempts;
    uint32_t                        pending;
    uint32_t                        inflight;

    /* the live scan: events up to scan_seq are deliveries or done */
    uint64_t                        scan_seq;
    ngx_queue_t                     deliveries;

    /*
     * Its delivery records, in chunks: the first made with it, so that
     * its deliveries always go on whatever took the zone's memory.
     */
    ngx_http_events_webhook_chunk_t  *chunks;
    ngx_queue_t                     free;
    ngx_uint_t                      nchunks;

    /* a replay in progress: (replay_after, replay_to] */
    uint64_t                        replay_after;
    uint64_t                        replay_to;
    uint32_t                        replay_left;
    u_char                          replay_mode;    /* 0: none */

    ngx_http_events_webhook_skip_t  skips[NGX_HTTP_EVENTS_WH_SKIPS];
    ngx_uint_t                      nskips;
    uint64_t                        failed_seqs[NGX_HTTP_EVENTS_WH_FAILED];
    ngx_uint_t                      nfailed;        /* written ever */

    u_char                         *log;            /* attempts, a ring */
    uint64_t                        log_next;       /* the next attempt's n */
    uint32_t                        log_size;       /* entries */
    uint32_t                        log_entry;      /* bytes per entry */
    uint32_t                        excerpt_size;
} ngx_http_events_webhook_endpoint_t;


struct ngx_http_events_webhook_sh_s {
    ngx_queue_t                 endpoints;
    ngx_uint_t                  nendpoints;
    ngx_queue_t                 tenants;        /* in turn */
    ngx_msec_t                  chunk_warned;   /* no room for deliveries */

    /* the dispatcher lease */
    ngx_pid_t                   owner;
    ngx_msec_t                  lease_expires;  /* monotonic */
    uint32_t                    term;

    /* changes, and the last change on disk (webhook_state.c) */
    uint64_t                    version;
    uint64_t                    saved;
    ngx_uint_t                  loaded;         /* the file was read */

    uint64_t                    ok;
    uint64_t                    failed;
    uint64_t                    expired;
    uint64_t                    aborted;
    uint64_t                    attempts;
    uint64_t                    retries;
    uint64_t                    inflight;
    uint64_t                    errors[NGX_HTTP_EVENTS_E_MAX];
};


/* an endpoint copied out of the zone */
typedef struct {
    ngx_http_events_webhook_spec_t  spec;
    uint64_t                        previous_expires_ms;
    ngx_uint_t                      disabled;
    ngx_uint_t                      last_error;
    uint64_t                        created_ms;
    uint64_t                        updated_ms;
    uint64_t                        disabled_ms;
    uint64_t                        failing_since_ms;
    uint64_t                        paused_until_ms;
    uint64_t                        last_success_ms;
    uint64_t                        last_failure_ms;
    uint64_t                        oldest_pending_ms;
    uint64_t                        ok;
    uint64_t                        failed;
    uint64_t                        expired;
    uint64_t                        pending;
    uint64_t                        inflight;

    /* the handshake */
    ngx_uint_t                      verify_state;
    ngx_uint_t                      verify_attempts;
    ngx_uint_t                      verify_error;
    ngx_uint_t                      verify_status;
    ngx_uint_t                      allowed_rate;
    uint64_t                        verify_at_ms;
    uint64_t                        verify_next_ms;
    u_char                          verify_detail[96];
    size_t                          verify_detail_len;
} ngx_http_events_webhook_view_t;


/* an endpoint's failure state, as the nodes of a cluster share it */

typedef struct {
    ngx_str_t                        id;
    ngx_str_t                        tenant;
    ngx_uint_t                       disabled;       /* the reason, or 0 */
    uint64_t                         disabled_ms;
    uint64_t                         failing_since_ms;
    uint64_t                         paused_until_ms;
    uint64_t                         stamp_ms;       /* when it was so */
} ngx_http_events_webhook_fstate_t;


/* one attempt, everything it needs copied out of the zone */

struct ngx_http_events_webhook_job_s {
    ngx_queue_t                      queue;          /* free, or started */
    u_char                          *room;           /* the endpoint copy */
    size_t                           room_size;
    ngx_pool_t                      *pool;           /* of the attempt */
    ngx_http_events_store_t         *store;
    ngx_str_t                        endpoint;       /* id */
    ngx_str_t                        tenant;
    ngx_str_t                        url;
    ngx_str_t                        hnames[NGX_HTTP_EVENTS_WH_MAX_HEADERS];
    ngx_str_t                        hvalues[NGX_HTTP_EVENTS_WH_MAX_HEADERS];
    ngx_uint_t                       nheaders;
    u_char                           secret[NGX_HTTP_EVENTS_WH_MAX_SECRET];
    u_char                           previous[NGX_HTTP_EVENTS_WH_MAX_SECRET];
    size_t                           secret_len;
    size_t                           previous_len;

    uint64_t                         seq;
    ngx_str_t                        event_id;
    ngx_str_t                        event_tenant;
    ngx_str_t                        type;
    ngx_str_t                        body;
    ngx_uint_t                       attempt;        /* 1-based */
    ngx_uint_t                       trigger;
    uint32_t                         term;
    void                            *ctx;          /* the server it leaves by */
    void                            *hold;          /* a cluster's claim */
    unsigned                         queued:1;      /* a delivery waits on it */
    unsigned                         claimed:1;     /* a cluster's: ours */
    unsigned                         handler:1;      /* url is a location */
    unsigned                         vet:1;          /* check the address */
    unsigned                         verify:1;       /* the handshake */
    ngx_uint_t                       format;
    ngx_http_events_ce_t             ce;             /* format cloudevents */
    uint32_t                         verify_gen;
    ngx_uint_t                       rate_limit;     /* per second, 0: none */
    ngx_uint_t                       allowed_rate;   /* the answer's */

    /* where it went and what came back */
    ngx_http_events_webhook_conf_t  *whcf;
    ngx_http_request_t              *request;        /* the fake one */
    ngx_str_t                        uri;
    ngx_uint_t                       port;
    ngx_str_t                        pinned;         /* $events_webhook_url */
    ngx_sockaddr_t                   sockaddr;       /* the pinned address */
    socklen_t                        socklen;        /* 0: not pinned */
    ngx_str_t                        peer_name;      /* its text */
    ngx_str_t                        host;           /* $events_webhook_host */
    ngx_str_t                        server_name;
    ngx_msec_t                       started;
    uint64_t                         started_ms;
    ngx_uint_t                       status;
    ngx_uint_t                       error;
    u_char                           detail[96];
    size_t                           detail_len;
    ngx_str_t                        ctype;
    uint64_t                         retry_after_ms;
    unsigned                         https:1;
    unsigned                         answered:1;
    unsigned                         tls_failed:1;   /* seen by the pool */

    /* meta events this attempt caused, sent once the lock is released */
    unsigned                         meta_disabled:1;
    unsigned                         meta_exhausted:1;
    unsigned                         meta_recovered:1;
    ngx_uint_t                       meta_reason;    /* why disabled */
    unsigned                         disable:1;  /* webhook-delivery: disable */
    unsigned                         abort:1;        /* ...: abort-message */
    u_char                          *excerpt;
    size_t                           excerpt_len;
    size_t                           excerpt_size;

    void                           (*done)(
                                         ngx_http_events_webhook_job_t *job);
};


typedef struct ngx_http_events_webhook_scan_s
    ngx_http_events_webhook_scan_t;


/*
 * This process's dispatcher memory, kept between dispatches
 * (store->wh_jobs): jobs on a free list, the scans and their strings.
 */
struct ngx_http_events_webhook_jobs_s {
    ngx_queue_t                      free;
    ngx_uint_t                       nfree;
    size_t                           room;          /* the largest copy */
    ngx_http_events_webhook_scan_t  *scans;
    ngx_uint_t                       nscans;
    u_char                          *scan_mem;
    size_t                           scan_size;
};


/* ngx_http_events_webhook_meta.c */
void ngx_http_events_webhook_meta(ngx_http_events_webhook_job_t *job);


/* ngx_http_events_webhook.c: the endpoints, each call locks and unlocks */
ngx_int_t ngx_http_events_webhook_init_zone(ngx_http_events_store_t *store,
    ngx_http_events_webhook_conf_t *whcf);
ngx_http_events_webhook_rc_e ngx_http_events_webhook_create(
    ngx_http_events_store_t *store, ngx_http_events_webhook_spec_t *spec,
    ngx_uint_t max);
ngx_http_events_webhook_rc_e ngx_http_events_webhook_update(
    ngx_http_events_store_t *store, ngx_http_events_webhook_spec_t *spec);
ngx_http_events_webhook_rc_e ngx_http_events_webhook_delete(
    ngx_http_events_store_t *store, ngx_str_t *tenant, ngx_str_t *id);
ngx_http_events_webhook_rc_e ngx_http_events_webhook_rotate(
    ngx_http_events_store_t *store, ngx_str_t *tenant, ngx_str_t *id,
    u_char *secret, size_t len, uint64_t grace_ms);
ngx_http_events_webhook_rc_e ngx_http_events_webhook_get(
    ngx_http_events_store_t *store, ngx_str_t *tenant, ngx_str_t *id,
    ngx_pool_t *pool, ngx_http_events_webhook_view_t *view);
ngx_http_events_webhook_rc_e ngx_http_events_webhook_list(
    ngx_http_events_store_t *store, ngx_str_t *tenant, ngx_pool_t *pool,
    ngx_array_t *views);
ngx_http_events_webhook_rc_e ngx_http_events_webhook_attempts(
    ngx_http_events_store_t *store, ngx_str_t *tenant, ngx_str_t *id,
    uint64_t before, ngx_array_t *out);
ngx_http_events_webhook_rc_e ngx_http_events_webhook_attempt(
    ngx_http_events_store_t *store, ngx_str_t *tenant, ngx_str_t *id,
    uint64_t seq, ngx_http_events_webhook_delivery_t *d);
ngx_http_events_webhook_rc_e ngx_http_events_webhook_replay(
    ngx_http_events_store_t *store, ngx_str_t *tenant, ngx_str_t *id,
    ngx_uint_t mode, uint64_t after, uint64_t to, ngx_uint_t count);
ngx_uint_t ngx_http_events_webhook_was_failed(ngx_http_events_store_t *store,
    ngx_str_t *tenant, ngx_str_t *id, uint64_t seq, ngx_uint_t mode);
ngx_int_t ngx_http_events_webhook_secret(ngx_str_t *text, u_char *out,
    size_t *len);
uint64_t ngx_http_events_webhook_now(void);

/* ngx_http_events_webhook.c: called with shpool->mutex held */
ngx_http_events_webhook_sh_t *ngx_http_events_webhook_shm(
    ngx_http_events_store_t *store);
ngx_http_events_webhook_endpoint_t *ngx_http_events_webhook_find(
    ngx_http_events_webhook_sh_t *wh, ngx_str_t *tenant, ngx_str_t *id);
ngx_http_events_webhook_endpoint_t *ngx_http_events_webhook_create_locked(
    ngx_http_events_store_t *store, ngx_http_events_webhook_sh_t *wh,
    ngx_http_events_webhook_spec_t *spec, ngx_http_events_webhook_conf_t *whcf);
ngx_http_events_webhook_delivery_t *ngx_http_events_webhook_queue(
    ngx_http_events_store_t *store, ngx_http_events_webhook_endpoint_t *ep,
    uint64_t seq, ngx_uint_t trigger, uint64_t now);
void ngx_http_events_webhook_dequeue(ngx_http_events_store_t *store,
    ngx_http_events_webhook_endpoint_t *ep,
    ngx_http_events_webhook_delivery_t *d);
void ngx_http_events_webhook_disable(ngx_http_events_webhook_endpoint_t *ep,
    ngx_uint_t reason, uint64_t now);
ngx_int_t ngx_http_events_webhook_meta_value_valid(ngx_str_t *value);
ngx_int_t ngx_http_events_webhook_meta_filters(
    ngx_http_events_webhook_spec_t *spec, ngx_pool_t *pool,
    ngx_http_events_query_t *q);
ngx_int_t ngx_http_events_webhook_set(ngx_http_events_store_t *store,
    ngx_http_events_webhook_endpoint_t *ep,
    ngx_http_events_webhook_spec_t *spec);
void ngx_http_events_webhook_merge(ngx_http_events_webhook_endpoint_t *ep,
    ngx_http_events_webhook_spec_t *spec,
    ngx_http_events_webhook_spec_t *merged);
void ngx_http_events_webhook_enable(ngx_http_events_store_t *store,
    ngx_http_events_webhook_endpoint_t *ep, ngx_uint_t enabled, uint64_t now);
void ngx_http_events_webhook_free(ngx_http_events_store_t *store,
    ngx_http_events_webhook_sh_t *wh, ngx_http_events_webhook_endpoint_t *ep);

/* ngx_http_events_webhook_dispatch.c: the dispatcher */
ngx_http_events_webhook_rc_e ngx_http_events_webhook_dispatch_send_now(
    ngx_http_events_store_t *store, ngx_str_t *tenant, ngx_str_t *id,
    uint64_t seq, ngx_str_t *event_id, ngx_str_t *type, ngx_str_t *body);

/* ngx_http_events_webhook_state.c: the state beside the journal */
ngx_int_t ngx_http_events_webhook_state_save(ngx_http_events_store_t *store);
void ngx_http_events_webhook_state_save_changed(ngx_http_events_store_t *store);
ngx_int_t ngx_http_events_webhook_state_save_init(ngx_cycle_t *cycle,
    ngx_http_events_store_t *store);
ngx_int_t ngx_http_events_webhook_state_load(ngx_http_events_store_t *store,
    ngx_log_t *log);
u_char *ngx_http_events_webhook_state_str(u_char *p, u_char *s, size_t len);
u_char *ngx_http_events_webhook_state_b64(u_char *p, u_char *s, size_t len);
ngx_int_t ngx_http_events_webhook_state_unb64(json_t *v, u_char *out,
    size_t *len);
ngx_int_t ngx_http_events_webhook_state_spec(json_t *o,
    ngx_http_events_webhook_spec_t *spec);
size_t ngx_http_events_webhook_state_spec_size(
    ngx_http_events_webhook_endpoint_t *ep);
u_char *ngx_http_events_webhook_state_spec_text(u_char *p,
    ngx_http_events_webhook_endpoint_t *ep);

/* ngx_http_events_webhook_share.c: API endpoints on every cluster node */
ngx_int_t ngx_http_events_webhook_share_publish(
    ngx_http_events_store_t *store, ngx_str_t *tenant, ngx_str_t *id,
    ngx_pool_t *pool);
ngx_int_t ngx_http_events_webhook_share_apply(ngx_http_events_store_t *store,
    ngx_str_t *texts, ngx_uint_t n, ngx_pool_t *pool);
void ngx_http_events_webhook_share_state(ngx_http_events_store_t *store,
    ngx_str_t *tenant, ngx_str_t *id, ngx_http_events_webhook_fstate_t *st,
    ngx_pool_t *pool);
ngx_int_t ngx_http_events_webhook_share_state_apply(
    ngx_http_events_store_t *store, ngx_str_t *texts, ngx_uint_t n,
    ngx_pool_t *pool);
void ngx_http_events_webhook_share_attempt(ngx_http_events_store_t *store,
    ngx_str_t *tenant, ngx_str_t *id, u_char *rec, size_t len);

/* ngx_http_events_webhook_api.c: the management API */
ngx_int_t ngx_http_events_webhook_api_handler(ngx_http_request_t *r);

/* ngx_http_events_webhook_delivery.c: an attempt as a subrequest */
void ngx_http_events_webhook_delivery_send(ngx_http_events_webhook_job_t *job);
ngx_int_t ngx_http_events_webhook_delivery_sign(u_char *secret,
    size_t secret_len, ngx_str_t *id, time_t ts, ngx_str_t *body, u_char *out);
ngx_int_t ngx_http_events_webhook_delivery_init_filter(ngx_conf_t *cf);
ngx_uint_t ngx_http_events_webhook_delivery_addr_blocked(struct sockaddr *sa,
    ngx_http_events_webhook_conf_t *whcf);
void ngx_http_events_webhook_delivery_origin(void *ctx, ngx_str_t *origin);


#endif /* _NGX_HTTP_EVENTS_WEBHOOK_SHM_H_INCLUDED_ */
