
/*
 * Copyright (C) ngx_http_events_module authors
 */


/*
 * The tailer.  The worker that holds the node's lease (ngx_http_events_
 * cluster.c) reads the stream with XREAD BLOCK on its own connection
 * into the local ring, through the store's one write path for events
 * that already have a seq (ngx_http_events_store_restore()), then rings
 * the doorbells: REST reads, streams and webhooks work from the ring as
 * on one machine, in one order on every node.
 *
 * Epochs.  The log's epoch lives in Redis ({prefix}:meta), made by the
 * first tailer or append that finds none; every entry carries it.  A
 * node adopts Redis's epoch: a different one (Redis lost its data, or
 * it is the node's first look) empties the ring and restarts the tail
 * from the start of the stream, so that cursors of the old epoch get
 * reset epoch_changed.  The tailer's link, up or down and why, is kept
 * in the cluster's zone for readiness.
 *
 * Pace.  Every node reads every event, so at a high rate the tail's cost
 * is its round trips: a wakeup and a read here, a reply written by
 * Redis, for the few events one round trip brings.  After a read that
 * brought NGX_HTTP_EVENTS_CLUSTER_BUSY or more, the next one waits
 * tail_pace= (2 ms by default): a few times more events a read, at most
 * that much later.  A quiet log is read at once, as before.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <openssl/rand.h>

#include "ngx_http_events_module.h"
#include "ngx_http_events_store.h"
#include "ngx_http_events_ipc.h"
#include "ngx_http_events_redis.h"
#include "ngx_http_events_cluster.h"


#define NGX_HTTP_EVENTS_CLUSTER_BLOCK    1000
#define NGX_HTTP_EVENTS_CLUSTER_COUNT    512

/* a read that brought this many: the log is busy, the next one waits */
#define NGX_HTTP_EVENTS_CLUSTER_BUSY     4


static void ngx_http_events_cluster_link(ngx_http_events_cluster_t *cl,
    ngx_uint_t up, ngx_str_t *why);
static void ngx_http_events_cluster_tail_ready(ngx_http_events_redis_t *rd);
static void ngx_http_events_cluster_tail_lost(ngx_http_events_redis_t *rd);
static void ngx_http_events_cluster_tail_epoch(void *data, redisReply *reply,
    ngx_http_events_redis_cmd_t *cmd);
static void ngx_http_events_cluster_tail_read(ngx_http_events_cluster_t *cl);
static void ngx_http_events_cluster_tail_later(ngx_http_events_cluster_t *cl);
static void ngx_http_events_cluster_tail_again(ngx_event_t *ev);
static void ngx_http_events_cluster_tail_paced(ngx_event_t *ev);
static void ngx_http_events_cluster_tailed(void *data, redisReply *reply,
    ngx_http_events_redis_cmd_t *cmd);
static ngx_int_t ngx_http_events_cluster_import(
    ngx_http_events_cluster_t *cl, redisReply *entry, ngx_uint_t *restart);
static void ngx_http_events_cluster_adopt(ngx_http_events_cluster_t *cl,
    uint64_t epoch, u_char *secret);


/* the tail */

void
ngx_http_events_cluster_tail_start(ngx_http_events_cluster_t *cl)
{
    if (ngx_http_events_redis_init(&cl->tail, &cl->redis, cl->log)
        != NGX_OK)
    {
        return;
    }

    cl->tail.data = cl;
    cl->tail.ready = ngx_http_events_cluster_tail_ready;
    cl->tail.lost = ngx_http_events_cluster_tail_lost;
    cl->tail.extra = NGX_HTTP_EVENTS_CLUSTER_BLOCK;
    cl->tail.asks = &cl->sh->asks;
    cl->tail.errors = &cl->sh->errors;
    cl->tail.abandon = 1;
    cl->tailing = 1;

    /* Redis refused or answered nonsense: the tail goes on after a wait */
    cl->tail_wait.handler = ngx_http_events_cluster_tail_again;
    cl->tail_wait.data = cl;
    cl->tail_wait.log = cl->log;
    cl->tail_wait.cancelable = 1;

    cl->tail_next.handler = ngx_http_events_cluster_tail_paced;
    cl->tail_next.data = cl;
    cl->tail_next.log = cl->log;
    cl->tail_next.cancelable = 1;

    ngx_http_events_cluster_link(cl, 0, NULL);

    ngx_http_events_redis_connect(&cl->tail);
}


void
ngx_http_events_cluster_tail_stop(ngx_http_events_cluster_t *cl)
{
    if (!cl->tailing) {
        return;
    }

    cl->tailing = 0;
    ngx_http_events_cluster_link(cl, 0, NULL);

    if (cl->tail_wait.timer_set) {
        ngx_del_timer(&cl->tail_wait);
    }

    if (cl->tail_next.timer_set) {
        ngx_del_timer(&cl->tail_next);
    }

    ngx_http_events_redis_close(&cl->tail);
}


static void
ngx_http_events_cluster_tail_ready(ngx_http_events_redis_t *rd)
{
    ngx_http_events_cluster_t  *cl = rd->data;

    u_char       hex[2 * NGX_HTTP_EVENTS_CURSOR_SECRET];
    size_t       argvlen[5];
    uint64_t     candidate;
    const char  *argv[5];
    u_char       secret[NGX_HTTP_EVENTS_CURSOR_SECRET];

    ngx_http_events_cluster_link(cl, 1, NULL);

    if (cl->tail_next.timer_set) {
        /* a read paced on the connection before: this one reads */
        ngx_del_timer(&cl->tail_next);
    }

    /*
     * A log without an epoch gets one now, before any append, so that
     * streams opened on a new cluster keep theirs through the first POST;
     * and one cursor secret for every node, so that a cursor from one
     * node is good on all
     */

    argv[1] = (const char *) cl->key_meta.data;
    argvlen[1] = cl->key_meta.len;

    if (RAND_bytes((u_char *) &candidate, sizeof(uint64_t)) == 1
        && candidate != 0)
    {
        argv[0] = "HSETNX";
        argvlen[0] = 6;
        argv[2] = "epoch";
        argvlen[2] = 5;
        argv[3] = (const char *) hex;
        argvlen[3] = ngx_sprintf(hex, "%016uxL", candidate) - hex;

        (void) ngx_http_events_redis_send(rd, 4, argv, argvlen, NULL, NULL);
    }

    if (RAND_bytes(secret, NGX_HTTP_EVENTS_CURSOR_SECRET) == 1) {
        argv[0] = "HSETNX";
        argvlen[0] = 6;
        argv[2] = "secret";
        argvlen[2] = 6;
        argv[3] = (const char *) hex;
        argvlen[3] = ngx_hex_dump(hex, secret, NGX_HTTP_EVENTS_CURSOR_SECRET)
                     - hex;

        (void) ngx_http_events_redis_send(rd, 4, argv, argvlen, NULL, NULL);
    }

    argv[0] = "HMGET";
    argvlen[0] = 5;
    argv[2] = "epoch";
    argvlen[2] = 5;
    argv[3] = "secret";
    argvlen[3] = 6;

    (void) ngx_http_events_redis_send(rd, 4, argv, argvlen,
                                      ngx_http_events_cluster_tail_epoch, cl);
}


static void
ngx_http_events_cluster_tail_lost(ngx_http_events_redis_t *rd)
{
    ngx_http_events_cluster_t  *cl = rd->data;

    ngx_http_events_cluster_link(cl, 0, &rd->error);
    (void) ngx_atomic_fetch_add(&cl->sh->reconnects, 1);
}


/*
 * The tailer's link to Redis, for readiness: since when it is up or
 * down, and why it went down (the error is the tailer's, in its worker)
 */

static void
ngx_http_events_cluster_link(ngx_http_events_cluster_t *cl, ngx_uint_t up,
    ngx_str_t *why)
{
    ngx_http_events_cluster_sh_t  *sh;

    sh = cl->sh;

    ngx_shmtx_lock(&cl->shpool->mutex);

    if (!up && sh->lease_pid != ngx_pid && sh->lease_pid != 0) {
        /* a worker that gave up the lease: the new holder's link counts */
        ngx_shmtx_unlock(&cl->shpool->mutex);
        return;
    }

    if (sh->connected != up || sh->link_since == 0) {
        sh->connected = up;
        sh->link_since = ngx_current_msec;
    }

    if (why && why->len) {
        sh->link_error_len = ngx_min(why->len, sizeof(sh->link_error));
        ngx_memcpy(sh->link_error, why->data, sh->link_error_len);
    }

    ngx_shmtx_unlock(&cl->shpool->mutex);
}


/*
 * Redis's epoch and cursor secret, before reading on: another epoch is
 * another log (or a ring made anew at a reload: its size changed while
 * this module's small zone was kept)
 */

static void
ngx_http_events_cluster_tail_epoch(void *data, redisReply *reply,
    ngx_http_events_redis_cmd_t *cmd)
{
    ngx_http_events_cluster_t  *cl = data;

    u_char                   *p;
    uint64_t                  epoch;
    ngx_uint_t                i;
    ngx_http_events_store_t  *store;
    u_char                    secret[NGX_HTTP_EVENTS_CURSOR_SECRET];

    if (reply == NULL || !cl->tailing) {
        return;
    }

    store = cl->zone->data;

    if (reply->type == REDIS_REPLY_ERROR) {
        ngx_log_error(NGX_LOG_ERR, cl->log, 0,
                      "events_cluster: redis %V refused HMGET %V: %*s",
                      &cl->redis.url, &cl->key_meta,
                      (size_t) ngx_min(reply->len, 200), reply->str);
        goto failed;
    }

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2) {
        goto invalid;
    }

    if (reply->element[0]->type == REDIS_REPLY_NIL) {
        /* a log flushed meanwhile: nothing to read until appends */
        cl->sh->caught_up = 1;
        ngx_http_events_cluster_tail_read(cl);
        return;
    }

    if (ngx_http_events_cluster_epoch(reply->element[0], &epoch) != NGX_OK
        || reply->element[1]->type != REDIS_REPLY_STRING
        || reply->element[1]->len != 2 * NGX_HTTP_EVENTS_CURSOR_SECRET)
    {
        goto invalid;
    }

    p = (u_char *) reply->element[1]->str;

    for (i = 0; i < NGX_HTTP_EVENTS_CURSOR_SECRET; i++) {
        if (ngx_hextoi(p + 2 * i, 2) == NGX_ERROR) {
            goto invalid;
        }

        secret[i] = (u_char) ngx_hextoi(p + 2 * i, 2);
    }

    if (epoch != cl->sh->epoch
        || epoch != ngx_http_events_store_epoch(store)
        || ngx_memcmp(secret, ngx_http_events_store_secret(store),
                      NGX_HTTP_EVENTS_CURSOR_SECRET)
           != 0)
    {
        ngx_http_events_cluster_adopt(cl, epoch, secret);
    }

    ngx_http_events_cluster_tail_read(cl);

    return;

invalid:

    ngx_log_error(NGX_LOG_ERR, cl->log, 0,
                  "events_cluster: redis %V: the epoch or secret in %V is "
                  "not what this module wrote", &cl->redis.url,
                  &cl->key_meta);

failed:

    (void) ngx_atomic_fetch_add(&cl->sh->errors, 1);
    ngx_http_events_cluster_tail_later(cl);
}


static void
ngx_http_events_cluster_tail_read(ngx_http_events_cluster_t *cl)
{
    u_char       *p, id[2 * NGX_INT64_LEN + 2], count[NGX_INT_T_LEN],
                  block[NGX_INT_T_LEN];
    size_t        argvlen[8];
    const char   *argv[8];

    argv[0] = "XREAD";
    argvlen[0] = 5;
    argv[1] = "COUNT";
    argvlen[1] = 5;
    argv[2] = (const char *) count;
    argvlen[2] = ngx_sprintf(count, "%d", NGX_HTTP_EVENTS_CLUSTER_COUNT)
                 - count;
    argv[3] = "BLOCK";
    argvlen[3] = 5;
    argv[4] = (const char *) block;
    argvlen[4] = ngx_sprintf(block, "%d", NGX_HTTP_EVENTS_CLUSTER_BLOCK)
                 - block;
    argv[5] = "STREAMS";
    argvlen[5] = 7;
    argv[6] = (const char *) cl->key_log.data;
    argvlen[6] = cl->key_log.len;

    p = ngx_sprintf(id, "%uL-%uL", cl->sh->last_ms, cl->sh->last_seq);
    argv[7] = (const char *) id;
    argvlen[7] = p - id;

    (void) ngx_http_events_redis_send(&cl->tail, 8, argv, argvlen,
                                      ngx_http_events_cluster_tailed, cl);
}


static void
ngx_http_events_cluster_tailed(void *data, redisReply *reply,
    ngx_http_events_redis_cmd_t *cmd)
{
    ngx_http_events_cluster_t  *cl = data;

    size_t        i;
    ngx_uint_t    restart, imported;
    redisReply   *entries;

    if (reply == NULL || !cl->tailing) {
        return;
    }

    if (reply->type == REDIS_REPLY_NIL) {
        /* nothing new within BLOCK: look at the epoch, then on */
        cl->sh->caught_up = 1;
        ngx_http_events_cluster_tail_ready(&cl->tail);
        return;
    }

    if (reply->type == REDIS_REPLY_ERROR) {
        ngx_log_error(NGX_LOG_ERR, cl->log, 0,
                      "events_cluster: redis %V refused XREAD: %*s",
                      &cl->redis.url, (size_t) ngx_min(reply->len, 200),
                      reply->str);
        (void) ngx_atomic_fetch_add(&cl->sh->errors, 1);
        ngx_http_events_cluster_tail_later(cl);
        return;
    }

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 1
        || reply->element[0]->type != REDIS_REPLY_ARRAY
        || reply->element[0]->elements != 2
        || reply->element[0]->element[1]->type != REDIS_REPLY_ARRAY)
    {
        goto invalid;
    }

    entries = reply->element[0]->element[1];
    restart = 0;
    imported = 0;

    for (i = 0; i < entries->elements; i++) {
        if (ngx_http_events_cluster_import(cl, entries->element[i], &restart)
            != NGX_OK)
        {
            goto invalid;
        }

        if (restart) {
            break;
        }

        imported++;
    }

    if (restart) {
        ngx_http_events_cluster_tail_ready(&cl->tail);

    } else {
        if (entries->elements < NGX_HTTP_EVENTS_CLUSTER_COUNT) {
            cl->sh->caught_up = 1;
        }

        /*
         * The next XREAD is queued before the doorbell: its flush is
         * posted ahead of this worker's own fan-out, so Redis holds the
         * next read while the streams here are written.  A busy log
         * (a read brought several) is read tail_pace later instead: the
         * events of that while come in one reply, for one wakeup here
         * and one write in Redis, not one per round trip.
         */
        if (cl->tail_pace
            && imported >= NGX_HTTP_EVENTS_CLUSTER_BUSY
            && entries->elements < NGX_HTTP_EVENTS_CLUSTER_COUNT)
        {
            ngx_add_timer(&cl->tail_next, cl->tail_pace);

        } else {
            ngx_http_events_cluster_tail_read(cl);
        }
    }

    if (imported) {
        (void) ngx_atomic_fetch_add(&cl->sh->tail_reads, 1);
        ngx_http_events_ipc_notify(cl->zone->data);
    }

    return;

invalid:

    ngx_log_error(NGX_LOG_ERR, cl->log, 0,
                  "events_cluster: redis %V: an entry in %V of an "
                  "unexpected shape", &cl->redis.url, &cl->key_log);
    (void) ngx_atomic_fetch_add(&cl->sh->errors, 1);

    ngx_http_events_cluster_tail_later(cl);
}


/* Redis refused or answered nonsense: not again at once, in a loop */

static void
ngx_http_events_cluster_tail_later(ngx_http_events_cluster_t *cl)
{
    if (!cl->tail_wait.timer_set) {
        ngx_add_timer(&cl->tail_wait, NGX_HTTP_EVENTS_CLUSTER_BLOCK);
    }
}


static void
ngx_http_events_cluster_tail_again(ngx_event_t *ev)
{
    ngx_http_events_cluster_t  *cl = ev->data;

    if (cl->tailing && cl->tail.state == NGX_HTTP_EVENTS_REDIS_READY) {
        ngx_http_events_cluster_tail_ready(&cl->tail);
    }
}


static void
ngx_http_events_cluster_tail_paced(ngx_event_t *ev)
{
    ngx_http_events_cluster_t  *cl = ev->data;

    if (cl->tailing && cl->tail.state == NGX_HTTP_EVENTS_REDIS_READY) {
        ngx_http_events_cluster_tail_read(cl);
    }
}


/* one entry: [id, [e, epoch, r, record]] */

static ngx_int_t
ngx_http_events_cluster_import(ngx_http_events_cluster_t *cl,
    redisReply *entry, ngx_uint_t *restart)
{
    uint64_t                       ms, seq, epoch, now, gone;
    ngx_int_t                      rc;
    ngx_time_t                    *tp;
    redisReply                   **f;
    ngx_http_events_event_t        ev;
    ngx_http_events_store_t       *store;
    ngx_http_events_cluster_sh_t  *sh;

    sh = cl->sh;
    store = cl->zone->data;

    if (entry->type != REDIS_REPLY_ARRAY || entry->elements != 2
        || entry->element[0]->type != REDIS_REPLY_STRING
        || ngx_http_events_cluster_id((u_char *) entry->element[0]->str,
                                      entry->element[0]->len, &ms, &seq)
           != NGX_OK)
    {
        /* not even an id to go on from */
        return NGX_ERROR;
    }

    f = entry->element[1]->element;
    gone = sh->gone;

    if (ngx_http_events_cluster_fields(entry->element[1], &gone) == NGX_ERROR
        || ngx_http_events_cluster_epoch(f[1], &epoch) != NGX_OK)
    {
        goto foreign;
    }

    if (epoch != sh->epoch) {
        /* a new log began: its epoch and secret, then from its start */
        *restart = 1;
        return NGX_OK;
    }

    ngx_memzero(&ev, sizeof(ngx_http_events_event_t));

    if (seq == 0
        || ngx_http_events_cluster_rec_read((u_char *) f[3]->str,
                                            f[3]->len, &ev)
           != NGX_OK)
    {
        goto foreign;
    }

    ev.seq = seq;
    ev.time_ms = ms;

    rc = ngx_http_events_store_restore(store, &ev);

    if (rc != NGX_HTTP_EVENTS_STORE_OK && rc != NGX_HTTP_EVENTS_STORE_STALE)
    {
        ngx_log_error(NGX_LOG_ERR, cl->log, 0,
                      "events_cluster: events zone \"%V\" could not take "
                      "event %uL from redis (%s); this node skips it",
                      &cl->zone_name, seq,
                      rc == NGX_HTTP_EVENTS_STORE_TOO_LARGE
                      ? "larger than the zone can hold"
                      : rc == NGX_HTTP_EVENTS_STORE_TOO_MANY_TYPES
                        ? "the tenant has too many types"
                        : "no memory for the type catalog");
        (void) ngx_atomic_fetch_add(&sh->errors, 1);
    }

    goto done;

foreign:

    /* something else wrote into the stream: skipped, not read again */
    ngx_log_error(NGX_LOG_ERR, cl->log, 0,
                  "events_cluster: redis %V: entry %*s of %V was not "
                  "written by this module; skipped", &cl->redis.url,
                  (size_t) entry->element[0]->len, entry->element[0]->str,
                  &cl->key_log);
    (void) ngx_atomic_fetch_add(&sh->errors, 1);

done:

    ngx_shmtx_lock(&cl->shpool->mutex);

    sh->last_seq = seq;
    sh->last_ms = ms;

    if (seq > sh->head_seq) {
        sh->head_seq = seq;
    }

    if (gone < seq) {
        /* what the log had trimmed when it took this entry */
        sh->gone = gone;
    }

    tp = ngx_timeofday();
    now = (uint64_t) tp->sec * 1000 + tp->msec;
    sh->lag_ms = now > ms ? now - ms : 0;

    ngx_shmtx_unlock(&cl->shpool->mutex);

    (void) ngx_atomic_fetch_add(&sh->tailed, 1);

    return NGX_OK;
}


/* Redis's log has another epoch: the ring starts again with it */

static void
ngx_http_events_cluster_adopt(ngx_http_events_cluster_t *cl, uint64_t epoch,
    u_char *secret)
{
    ngx_http_events_cluster_sh_t  *sh;

    sh = cl->sh;

    ngx_log_error(NGX_LOG_NOTICE, cl->log, 0,
                  "events_cluster: events zone \"%V\" takes epoch "
                  "%016uxL from redis %V (was %016uxL)",
                  &cl->zone_name, epoch, &cl->redis.url, sh->epoch);

    ngx_http_events_store_reset(cl->zone->data, epoch, secret);

    ngx_shmtx_lock(&cl->shpool->mutex);

    sh->epoch = epoch;
    sh->last_seq = 0;
    sh->last_ms = 0;
    sh->head_seq = 0;
    sh->gone = 0;
    sh->caught_up = 0;

    ngx_shmtx_unlock(&cl->shpool->mutex);

    (void) ngx_atomic_fetch_add(&sh->resets, 1);

    /* streams learn it from their doorbell */
    ngx_http_events_ipc_notify(cl->zone->data);
}
