
/*
 * Copyright (C) ngx_http_events_module authors
 */


/*
 * Appends.  A POST on any node runs one Lua script in Redis (EVALSHA;
 * EVAL with the script's text when Redis answers NOSCRIPT, which also
 * loads it) that checks the ids of the batch, assigns the seqs, adds
 * the events to the stream with the id "<ms>-<seq>" and records the
 * ids, all or nothing.  The answer goes after Redis answered, from what
 * the script assigned; nothing is written to the local ring by this
 * path (the tailer brings it).  Scripts of one worker share its
 * connection, pipelined; wait=N sends WAIT right behind the script.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <openssl/rand.h>
#include <openssl/sha.h>

#include "ngx_http_events_module.h"
#include "ngx_http_events_store.h"
#include "ngx_http_events_redis.h"
#include "ngx_http_events_cluster.h"


/* one append on its way through Redis */
typedef struct {
    ngx_http_events_cluster_t  *cl;
    ngx_http_events_event_t    *events;
    ngx_uint_t                  n;
    ngx_pool_t                 *pool;
    ngx_http_events_remote_done_pt  done;
    void                       *ctx;
    int                         argc;
    const char                **argv;
    size_t                     *argvlen;
    ngx_http_events_redis_cmd_t  *cmd;
    ngx_int_t                   rc;             /* the script's, for WAIT */
    ngx_uint_t                  failed;
    ngx_uint_t                  stale_waits;    /* WAITs to pass over */
    ngx_event_t                 again;          /* a slot migrating */
    ngx_msec_t                  started;
    unsigned                    retried:1;
    unsigned                    no_wait:1;      /* WAIT could not go */
} ngx_http_events_cluster_op_t;


static ngx_int_t ngx_http_events_cluster_send(
    ngx_http_events_cluster_op_t *op);
static void ngx_http_events_cluster_appended(void *data, redisReply *reply,
    ngx_http_events_redis_cmd_t *cmd);
static void ngx_http_events_cluster_waited(void *data, redisReply *reply,
    ngx_http_events_redis_cmd_t *cmd);
static void ngx_http_events_cluster_finish(ngx_http_events_cluster_op_t *op,
    ngx_int_t rc, ngx_uint_t failed);
static ngx_int_t ngx_http_events_cluster_answer(
    ngx_http_events_cluster_op_t *op, redisReply *reply, ngx_uint_t *failed);
static ngx_int_t ngx_http_events_cluster_stored(ngx_pool_t *pool,
    ngx_http_events_event_t *ev, redisReply *rec);
static void ngx_http_events_cluster_again(ngx_event_t *ev);


/*
 * The append.  KEYS: the stream, the meta hash, then one key per event
 * (its id: a client's is checked, every one is kept for reads by id).
 * ARGV: a new epoch in case the log has none, max
 * length, retention in ms, the number of events, then per event: the
 * index of its id key (0: none), its digest, its record.  Answers
 * {epoch, "conflict", index} or {epoch, "ok", then per event: "n" (new)
 * or "r" (a repeat), its stream id, and a repeat's stored record}.
 */

static ngx_str_t  ngx_http_events_cluster_script = ngx_string(
"local epoch = redis.call('HGET', KEYS[2], 'epoch')\n"
"if not epoch then\n"
"  epoch = ARGV[1]\n"
"  redis.call('HSET', KEYS[2], 'epoch', epoch, 'seq', 0, 'ms', 0)\n"
"end\n"
"local n = tonumber(ARGV[4])\n"
"local found = {}\n"
"for i = 1, n do\n"
"  local k = tonumber(ARGV[2 + 3 * i])\n"
"  if k > 0 then\n"
"    local v = redis.call('GET', KEYS[2 + k])\n"
"    if v then\n"
"      if string.sub(v, 1, 32) ~= ARGV[3 + 3 * i] then\n"
"        return {epoch, 'conflict', i - 1}\n"
"      end\n"
"      found[i] = string.sub(v, 34)\n"
"    end\n"
"  end\n"
"end\n"
"local t = redis.call('TIME')\n"
"local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
"local last = tonumber(redis.call('HGET', KEYS[2], 'ms') or 0)\n"
"if ms < last then ms = last end\n"
"local seq = tonumber(redis.call('HGET', KEYS[2], 'seq') or 0)\n"
"local maxlen = tonumber(ARGV[2])\n"
"local ret = tonumber(ARGV[3])\n"
"local out = {epoch, 'ok'}\n"
"for i = 1, n do\n"
"  if found[i] then\n"
"    local e = redis.call('XRANGE', KEYS[1], found[i], found[i])\n"
"    local rec = ''\n"
"    if e[1] then rec = e[1][2][4] end\n"
"    out[#out + 1] = 'r'\n"
"    out[#out + 1] = found[i]\n"
"    out[#out + 1] = rec\n"
"  else\n"
"    seq = seq + 1\n"
"    local id = string.format('%d-%d', ms, seq)\n"
"    if maxlen > 0 then\n"
"      redis.call('XADD', KEYS[1], 'MAXLEN', '~', maxlen, id,\n"
"                 'e', epoch, 'r', ARGV[4 + 3 * i])\n"
"    else\n"
"      redis.call('XADD', KEYS[1], id, 'e', epoch, 'r', ARGV[4 + 3 * i])\n"
"    end\n"
"    local k = tonumber(ARGV[2 + 3 * i])\n"
"    if k > 0 then\n"
"      local v = ARGV[3 + 3 * i] .. ' ' .. id\n"
"      if ret > 0 then\n"
"        redis.call('SET', KEYS[2 + k], v, 'PX', ret)\n"
"      else\n"
"        redis.call('SET', KEYS[2 + k], v)\n"
"      end\n"
"    end\n"
"    out[#out + 1] = 'n'\n"
"    out[#out + 1] = id\n"
"    out[#out + 1] = ''\n"
"  end\n"
"end\n"
"redis.call('HSET', KEYS[2], 'seq', seq, 'ms', ms)\n"
"if ret > 0 then\n"
"  redis.call('XTRIM', KEYS[1], 'MINID', '~',\n"
"             string.format('%d-0', ms - ret))\n"
"end\n"
"return out\n");


static u_char  ngx_http_events_cluster_sha[SHA_DIGEST_LENGTH * 2];


void
ngx_http_events_cluster_append_postconfiguration(void)
{
    u_char  sha[SHA_DIGEST_LENGTH];

    SHA1(ngx_http_events_cluster_script.data,
         ngx_http_events_cluster_script.len, sha);
    ngx_hex_dump(ngx_http_events_cluster_sha, sha, SHA_DIGEST_LENGTH);
}


/* appends */

void *
ngx_http_events_cluster_append(void *data, ngx_http_events_event_t *events,
    ngx_uint_t n, ngx_pool_t *pool, ngx_http_events_remote_done_pt done,
    void *ctx)
{
    ngx_http_events_cluster_t  *cl = data;

    u_char                        *p, *digest;
    size_t                        *argvlen;
    uint64_t                       candidate;
    ngx_uint_t                     i, k, nkeys;
    const char                   **argv;
    ngx_http_events_event_t       *ev;
    ngx_http_events_cluster_op_t  *op;

    nkeys = 2;

    /*
     * every id gets its key, a server's too: GET /events/{id} finds an
     * event that left the ring through it
     */
    nkeys += n;

    op = ngx_pcalloc(pool, sizeof(ngx_http_events_cluster_op_t));
    argv = ngx_palloc(pool, (3 + nkeys + 4 + 3 * n) * sizeof(char *));
    argvlen = ngx_palloc(pool, (3 + nkeys + 4 + 3 * n) * sizeof(size_t));
    p = ngx_pnalloc(pool, SHA_DIGEST_LENGTH * 2 + NGX_INT_T_LEN + 16
                          + NGX_INT_T_LEN + n * (NGX_INT_T_LEN + 32));

    if (op == NULL || argv == NULL || argvlen == NULL || p == NULL) {
        return NULL;
    }

    op->cl = cl;
    op->events = events;
    op->n = n;
    op->pool = pool;
    op->done = done;
    op->ctx = ctx;
    op->argv = argv;
    op->argvlen = argvlen;
    op->started = ngx_current_msec;
    op->again.handler = ngx_http_events_cluster_again;
    op->again.data = op;
    op->again.log = cl->log;

    argv[0] = "EVALSHA";
    argvlen[0] = 7;
    argv[1] = (const char *) ngx_http_events_cluster_sha;
    argvlen[1] = SHA_DIGEST_LENGTH * 2;

    argv[2] = (const char *) p;
    argvlen[2] = ngx_sprintf(p, "%ui", nkeys) - p;
    p += argvlen[2];

    argv[3] = (const char *) cl->key_log.data;
    argvlen[3] = cl->key_log.len;
    argv[4] = (const char *) cl->key_meta.data;
    argvlen[4] = cl->key_meta.len;

    op->argc = 5;

    /* an id's key: prefix, the tenant's length, tenant, id */

    for (i = 0; i < n; i++) {
        ev = &events[i];

        argv[op->argc] = ngx_pnalloc(pool, cl->key_id.len + NGX_INT_T_LEN + 1
                                           + ev->tenant.len + ev->id.len);
        if (argv[op->argc] == NULL) {
            return NULL;
        }

        argvlen[op->argc] = ngx_sprintf((u_char *) argv[op->argc],
                                        "%V%uz:%V%V", &cl->key_id,
                                        ev->tenant.len, &ev->tenant,
                                        &ev->id)
                            - (u_char *) argv[op->argc];
        op->argc++;
    }

    /* a fresh epoch for a log that has none: never the one it had */
    do {
        if (RAND_bytes((u_char *) &candidate, sizeof(uint64_t)) != 1) {
            return NULL;
        }
    } while (candidate == 0);

    argv[op->argc] = (const char *) p;
    argvlen[op->argc++] = ngx_sprintf(p, "%016uxL", candidate) - p;
    p += 16;

    argv[op->argc] = (const char *) cl->max_len.data;
    argvlen[op->argc++] = cl->max_len.len;
    argv[op->argc] = (const char *) cl->retention.data;
    argvlen[op->argc++] = cl->retention.len;

    argv[op->argc] = (const char *) p;
    argvlen[op->argc] = ngx_sprintf(p, "%ui", n) - p;
    p += argvlen[op->argc++];

    k = 0;

    for (i = 0; i < n; i++) {
        ev = &events[i];

        argv[op->argc] = (const char *) p;
        argvlen[op->argc] = ngx_sprintf(p, "%ui", ++k)
                            - p;
        p += argvlen[op->argc++];

        digest = p;
        p = ngx_hex_dump(p, ev->digest, 16);
        argv[op->argc] = (const char *) digest;
        argvlen[op->argc++] = 32;

        argv[op->argc] = ngx_pnalloc(pool,
                                     ngx_http_events_cluster_rec_len(ev));
        if (argv[op->argc] == NULL) {
            return NULL;
        }

        argvlen[op->argc] = ngx_http_events_cluster_rec_write(
                                (u_char *) argv[op->argc], ev)
                            - (u_char *) argv[op->argc];
        op->argc++;
    }

    if (ngx_http_events_cluster_send(op) != NGX_OK) {
        (void) ngx_atomic_fetch_add(&cl->sh->unavailable, 1);
        return NULL;
    }

    return op;
}


void
ngx_http_events_cluster_cancel(void *handle)
{
    ngx_http_events_cluster_op_t  *op = handle;

    /* the script may still run: its reply is dropped */
    op->done = NULL;

    if (op->again.timer_set) {
        ngx_del_timer(&op->again);
    }
}


static ngx_int_t
ngx_http_events_cluster_send(ngx_http_events_cluster_op_t *op)
{
    size_t                      argvlen[3];
    const char                 *argv[3];
    ngx_http_events_cluster_t  *cl;

    cl = op->cl;

    op->cmd = ngx_http_events_redis_send(&cl->rd, op->argc, op->argv,
                                         op->argvlen,
                                         ngx_http_events_cluster_appended,
                                         op);
    if (op->cmd == NULL) {
        return NGX_ERROR;
    }

    if (cl->wait.len == 0) {
        return NGX_OK;
    }

    /* wait=N: right behind the script, in the same write */

    argv[0] = "WAIT";
    argvlen[0] = 4;
    argv[1] = (const char *) cl->wait.data;
    argvlen[1] = cl->wait.len;
    argv[2] = (const char *) cl->wait_ms.data;
    argvlen[2] = cl->wait_ms.len;

    if (ngx_http_events_redis_send(&cl->rd, 3, argv, argvlen,
                                   ngx_http_events_cluster_waited, op)
        == NULL)
    {
        op->no_wait = 1;
    }

    return NGX_OK;
}


static void
ngx_http_events_cluster_appended(void *data, redisReply *reply,
    ngx_http_events_redis_cmd_t *cmd)
{
    ngx_http_events_cluster_op_t  *op = data;

    ngx_int_t                   rc;
    ngx_uint_t                  failed;
    ngx_http_events_cluster_t  *cl;

    cl = op->cl;

    if (op->done == NULL) {
        return;
    }

    failed = 0;

    if (reply == NULL) {
        /* written and not answered: the script may have run */
        rc = cmd->written ? NGX_AGAIN : NGX_BUSY;
        (void) ngx_atomic_fetch_add(&cl->sh->unavailable, 1);
        ngx_http_events_cluster_finish(op, rc, 0);
        return;
    }

    if (ngx_http_events_redis_is_error(reply, "NOSCRIPT") && !op->retried) {
        /* EVAL with the text runs it and loads it for the next EVALSHA */
        op->retried = 1;
        op->argv[0] = "EVAL";
        op->argvlen[0] = 4;
        op->argv[1] = (const char *) ngx_http_events_cluster_script.data;
        op->argvlen[1] = ngx_http_events_cluster_script.len;

        if (cl->wait.len && !op->no_wait) {
            /* the WAIT sent behind the refused script answers first */
            op->stale_waits++;
        }

        if (ngx_http_events_cluster_send(op) == NGX_OK) {
            return;
        }

        (void) ngx_atomic_fetch_add(&cl->sh->unavailable, 1);
        ngx_http_events_cluster_finish(op, NGX_BUSY, 0);
        return;
    }

    if ((ngx_http_events_redis_is_error(reply, "TRYAGAIN")
         || ngx_http_events_redis_is_error(reply, "ASK "))
        && ngx_current_msec - op->started < cl->redis.timeout)
    {
        /*
         * A Redis Cluster moves the log's slot: the script did not run.
         * Its keys are split between the two nodes, or the ids' keys are
         * new (TRYAGAIN on both sides, ASK followed or not): it goes
         * again shortly, until the slot has moved (then MOVED takes the
         * connection there) or the timeout passed
         */
        if (cl->wait.len && !op->no_wait) {
            op->stale_waits++;
        }

        ngx_add_timer(&op->again, 50);
        return;
    }

    rc = ngx_http_events_cluster_answer(op, reply, &failed);

    if (rc == NGX_ERROR) {
        (void) ngx_atomic_fetch_add(&cl->sh->errors, 1);
        (void) ngx_atomic_fetch_add(&cl->sh->unavailable, 1);
        rc = NGX_BUSY;
    }

    if (rc == NGX_OK && cl->wait.len) {
        if (op->no_wait) {
            ngx_http_events_cluster_finish(op, NGX_ABORT, 0);
            return;
        }

        /* the answer waits for the replicas */
        op->rc = rc;
        op->failed = failed;
        return;
    }

    ngx_http_events_cluster_finish(op, rc, failed);
}


static void
ngx_http_events_cluster_again(ngx_event_t *ev)
{
    ngx_http_events_cluster_op_t  *op = ev->data;

    if (op->done == NULL) {
        return;
    }

    op->no_wait = 0;

    if (ngx_http_events_cluster_send(op) != NGX_OK) {
        (void) ngx_atomic_fetch_add(&op->cl->sh->unavailable, 1);
        ngx_http_events_cluster_finish(op, NGX_BUSY, 0);
    }
}


/* wait=N: how many replicas have the writes of this connection so far */

static void
ngx_http_events_cluster_waited(void *data, redisReply *reply,
    ngx_http_events_redis_cmd_t *cmd)
{
    ngx_http_events_cluster_op_t  *op = data;

    ngx_http_events_cluster_t  *cl;

    cl = op->cl;

    if (op->stale_waits) {
        op->stale_waits--;
        return;
    }

    if (op->done == NULL) {
        return;
    }

    if (reply == NULL) {
        ngx_http_events_cluster_finish(op, NGX_AGAIN, 0);
        return;
    }

    if (reply->type != REDIS_REPLY_INTEGER
        || reply->integer < (long long) cl->wait_n)
    {
        if (reply->type == REDIS_REPLY_INTEGER) {
            ngx_log_error(NGX_LOG_ERR, cl->log, 0,
                          "events_cluster: redis %V: %L replicas of %ui "
                          "confirmed an append in time", &cl->redis.url,
                          (int64_t) reply->integer, cl->wait_n);

        } else {
            ngx_log_error(NGX_LOG_ERR, cl->log, 0,
                          "events_cluster: redis %V refused WAIT: %*s",
                          &cl->redis.url, (size_t) ngx_min(reply->len, 200),
                          reply->str);
        }

        (void) ngx_atomic_fetch_add(&cl->sh->unreplicated, 1);
        ngx_http_events_cluster_finish(op, NGX_ABORT, 0);
        return;
    }

    ngx_http_events_cluster_finish(op, op->rc, op->failed);
}


/* the one way an append ends: once */

static void
ngx_http_events_cluster_finish(ngx_http_events_cluster_op_t *op,
    ngx_int_t rc, ngx_uint_t failed)
{
    ngx_http_events_remote_done_pt  done;

    done = op->done;
    op->done = NULL;

    if (done) {
        done(op->ctx, rc, failed);
    }
}


static ngx_int_t
ngx_http_events_cluster_answer(ngx_http_events_cluster_op_t *op,
    redisReply *reply, ngx_uint_t *failed)
{
    uint64_t                    ms, seq;
    ngx_int_t                   k;
    ngx_uint_t                  i;
    redisReply                **el;
    ngx_http_events_event_t    *ev;
    ngx_http_events_cluster_t  *cl;

    cl = op->cl;

    if (reply->type == REDIS_REPLY_ERROR) {
        ngx_log_error(NGX_LOG_ERR, cl->log, 0,
                      "events_cluster: redis %V refused the append: %*s",
                      &cl->redis.url, (size_t) ngx_min(reply->len, 200),
                      reply->str);
        return NGX_ERROR;
    }

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 3) {
        goto invalid;
    }

    el = reply->element;

    if (el[1]->type != REDIS_REPLY_STRING) {
        goto invalid;
    }

    if (el[1]->len == 8 && ngx_strncmp(el[1]->str, "conflict", 8) == 0) {
        if (el[2]->type != REDIS_REPLY_INTEGER
            || el[2]->integer < 0 || (ngx_uint_t) el[2]->integer >= op->n)
        {
            goto invalid;
        }

        *failed = (ngx_uint_t) el[2]->integer;
        (void) ngx_atomic_fetch_add(&cl->sh->conflicts, 1);
        return NGX_DECLINED;
    }

    if (reply->elements != 2 + 3 * op->n) {
        goto invalid;
    }

    for (i = 0; i < op->n; i++) {
        ev = &op->events[i];
        k = 2 + 3 * i;

        if (el[k]->type != REDIS_REPLY_STRING || el[k]->len != 1
            || el[k + 1]->type != REDIS_REPLY_STRING
            || el[k + 2]->type != REDIS_REPLY_STRING
            || ngx_http_events_cluster_id((u_char *) el[k + 1]->str,
                                          el[k + 1]->len, &ms, &seq)
               != NGX_OK)
        {
            goto invalid;
        }

        ev->seq = seq;
        ev->time_ms = ms;
        ev->repeat = (el[k]->str[0] == 'r');

        if (ngx_http_events_cluster_stored(op->pool, ev, el[k + 2])
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        if (ev->repeat) {
            (void) ngx_atomic_fetch_add(&cl->sh->repeats, 1);

        } else {
            (void) ngx_atomic_fetch_add(&cl->sh->appended, 1);

            if (seq > cl->sh->head_seq) {
                cl->sh->head_seq = seq;
            }
        }
    }

    return NGX_OK;

invalid:

    ngx_log_error(NGX_LOG_ERR, cl->log, 0,
                  "events_cluster: redis %V gave the append an answer of "
                  "an unexpected shape", &cl->redis.url);

    return NGX_ERROR;
}


/*
 * The envelope as stored: a repeat's from its record in the stream (the
 * first body), a new event's from its own template.
 */

static ngx_int_t
ngx_http_events_cluster_stored(ngx_pool_t *pool, ngx_http_events_event_t *ev,
    redisReply *rec)
{
    u_char                   *p;
    ngx_http_events_event_t   stored, *src;

    src = ev;

    if (ev->repeat && rec->len) {
        ngx_memzero(&stored, sizeof(ngx_http_events_event_t));

        if (ngx_http_events_cluster_rec_read((u_char *) rec->str, rec->len,
                                             &stored)
            == NGX_OK)
        {
            stored.seq = ev->seq;
            stored.time_ms = ev->time_ms;
            src = &stored;
        }
    }

    p = ngx_pnalloc(pool, ngx_http_events_store_json_len(src));
    if (p == NULL) {
        return NGX_ERROR;
    }

    ev->stored.data = p;
    ev->stored.len = ngx_http_events_store_json(p, src) - p;

    return NGX_OK;
}
