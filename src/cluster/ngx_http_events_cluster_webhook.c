
/*
 * Copyright (C) ngx_http_events_module authors
 */


/*
 * Webhooks once per cluster: every node's dispatcher finds the same
 * deliveries in its ring (the same events, the same static endpoints),
 * and each claims a delivery in Redis before an attempt.  The claim is
 * a key with a lease (SET PX, in one script with the check for a
 * delivery already ended): one node at a time attempts it, the others
 * ask again later.  After an attempt the claimer ends the delivery for
 * everyone (a "done" key, kept as long as retention=, else a day), or
 * holds the claim until its next attempt plus the lease.  A node killed
 * mid-delivery holds its claim until the lease lapses; then another
 * node's dispatcher takes the delivery and sends it again with the same
 * webhook-id (at least once).
 *
 * Keys: {prefix}:wh:c:<tenant length>:<tenant><endpoint>:<seq> (the
 * claim, valued with the claimer's token) and {prefix}:wh:d:... (done).
 *
 * Endpoints made through the API are published by the node that changed
 * them into the hash {prefix}:wh:eps (field "<tenant length>:<tenant>
 * <id>", the endpoint's text, or a tombstone) with a counter
 * {prefix}:wh:ver; the
 * worker that tails the log looks at the counter every tick and, when
 * it moved, reads the hash and gives it to the zone's webhooks.  An
 * endpoint's failure state goes the same way, through {prefix}:wh:st and
 * {prefix}:wh:stv (both counters in one MGET), from the node where an
 * attempt changed it.
 *
 * Attempts go to the stream {prefix}:wh:att (capped at some 10000), each
 * with the node that made it; the tailing worker reads what came since
 * it last looked and gives the other nodes' attempts to the zone's
 * attempt logs.  A node starts with the attempts made after it did.
 * Ops come from a free list of the worker, so that a reply finds its op
 * whatever became of the job it was for.
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


#define NGX_HTTP_EVENTS_CLUSTER_WH_BUF    768
#define NGX_HTTP_EVENTS_CLUSTER_WH_DONE   (24 * 3600 * 1000)
#define NGX_HTTP_EVENTS_CLUSTER_WH_AGAIN  1000   /* ask again at most */


typedef struct {
    ngx_queue_t                 queue;          /* free, or held */
    ngx_http_events_cluster_t  *cl;
    ngx_http_events_remote_claim_pt  done;
    void                       *ctx;
    ngx_str_t                  *script;
    u_char                     *sha;
    ngx_event_t                 renew;          /* a held claim's timer */
    ngx_msec_t                  sent;           /* the last claim or renew */
    ngx_msec_t                  confirmed;      /* held from then on */
    int                         argc;
    const char                 *argv[9];
    size_t                      argvlen[9];
    unsigned                    retried:1;
    unsigned                    held:1;         /* an attempt runs on it */
    unsigned                    renewing:1;     /* a renewal is out */
    unsigned                    lost:1;
    u_char                      buf[NGX_HTTP_EVENTS_CLUSTER_WH_BUF];
} ngx_http_events_cluster_wh_t;


static void ngx_http_events_cluster_webhook_published(void *data,
    redisReply *reply, ngx_http_events_redis_cmd_t *cmd);
static void ngx_http_events_cluster_webhook_version(void *data,
    redisReply *reply, ngx_http_events_redis_cmd_t *cmd);
static ngx_int_t ngx_http_events_cluster_webhook_set(
    ngx_http_events_cluster_t *cl, const char *hash, const char *ver,
    ngx_str_t *tenant, ngx_str_t *id, ngx_str_t *text);
static ngx_int_t ngx_http_events_cluster_webhook_read(
    ngx_http_events_cluster_t *cl, const char *hash,
    ngx_http_events_redis_pt handler);
static void ngx_http_events_cluster_webhook_endpoints(void *data,
    redisReply *reply, ngx_http_events_redis_cmd_t *cmd);
static void ngx_http_events_cluster_webhook_states(void *data,
    redisReply *reply, ngx_http_events_redis_cmd_t *cmd);
static ngx_int_t ngx_http_events_cluster_webhook_texts(
    ngx_http_events_cluster_t *cl, redisReply *reply,
    ngx_http_events_store_apply_pt apply);
static void ngx_http_events_cluster_webhook_attempts_read(
    ngx_http_events_cluster_t *cl);
static void ngx_http_events_cluster_webhook_attempts(void *data,
    redisReply *reply, ngx_http_events_redis_cmd_t *cmd);
static ngx_http_events_cluster_wh_t *ngx_http_events_cluster_webhook_get(
    ngx_http_events_cluster_t *cl);
static ngx_http_events_cluster_wh_t *ngx_http_events_cluster_webhook_op(
    ngx_http_events_cluster_t *cl, ngx_str_t *tenant, ngx_str_t *endpoint,
    uint64_t seq);
static ngx_int_t ngx_http_events_cluster_webhook_send(
    ngx_http_events_cluster_wh_t *op, ngx_http_events_redis_pt handler);
static ngx_uint_t ngx_http_events_cluster_webhook_again(
    ngx_http_events_cluster_wh_t *op, redisReply **reply,
    ngx_http_events_redis_pt handler);
static void ngx_http_events_cluster_webhook_reply(void *data,
    redisReply *reply, ngx_http_events_redis_cmd_t *cmd);
static void ngx_http_events_cluster_webhook_hold(
    ngx_http_events_cluster_wh_t *op);
static void ngx_http_events_cluster_webhook_renew(ngx_event_t *ev);
static void ngx_http_events_cluster_webhook_renewed(void *data,
    redisReply *reply, ngx_http_events_redis_cmd_t *cmd);
static void ngx_http_events_cluster_webhook_put(
    ngx_http_events_cluster_wh_t *op);


/*
 * KEYS: done, claim.  ARGV: the token, the lease.  Answers {"done"},
 * {"taken", its ms left} or {"mine"}.
 */

static ngx_str_t  ngx_http_events_cluster_webhook_claim_lua = ngx_string(
"if redis.call('EXISTS', KEYS[1]) == 1 then return {'done', 0} end\n"
"local c = redis.call('GET', KEYS[2])\n"
"if c and c ~= ARGV[1] then\n"
"  return {'taken', redis.call('PTTL', KEYS[2])}\n"
"end\n"
"redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])\n"
"return {'mine', 0}\n");


/*
 * KEYS: done, claim.  ARGV: the token, "d" (ended), "k" (keep) or "r"
 * (release), ms.  Only the claimer's token settles.
 */

static ngx_str_t  ngx_http_events_cluster_webhook_settle_lua = ngx_string(
"local c = redis.call('GET', KEYS[2])\n"
"if c and c ~= ARGV[1] then return 0 end\n"
"if ARGV[2] == 'd' then\n"
"  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])\n"
"  redis.call('DEL', KEYS[2])\n"
"elseif ARGV[2] == 'k' then\n"
"  redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[3])\n"
"else\n"
"  redis.call('DEL', KEYS[2])\n"
"end\n"
"return 1\n");


/*
 * KEYS: done, claim.  ARGV: the token, the lease.  Extends the claim
 * only for the token that holds it: 1, or 0 (lost).
 */

static ngx_str_t  ngx_http_events_cluster_webhook_renew_lua = ngx_string(
"if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end\n"
"redis.call('PEXPIRE', KEYS[2], ARGV[2])\n"
"return 1\n");


/* KEYS: the hash, the counter.  ARGV: the field, the text */

static ngx_str_t  ngx_http_events_cluster_webhook_publish_lua = ngx_string(
"redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])\n"
"return redis.call('INCR', KEYS[2])\n");


static u_char  ngx_http_events_cluster_webhook_claim_sha[SHA_DIGEST_LENGTH * 2];
static u_char  ngx_http_events_cluster_webhook_settle_sha[
                   SHA_DIGEST_LENGTH * 2];
static u_char  ngx_http_events_cluster_webhook_renew_sha[
                   SHA_DIGEST_LENGTH * 2];


void
ngx_http_events_cluster_webhook_postconfiguration(void)
{
    u_char  sha[SHA_DIGEST_LENGTH];

    SHA1(ngx_http_events_cluster_webhook_claim_lua.data,
         ngx_http_events_cluster_webhook_claim_lua.len, sha);
    ngx_hex_dump(ngx_http_events_cluster_webhook_claim_sha, sha,
                 SHA_DIGEST_LENGTH);

    SHA1(ngx_http_events_cluster_webhook_settle_lua.data,
         ngx_http_events_cluster_webhook_settle_lua.len, sha);
    ngx_hex_dump(ngx_http_events_cluster_webhook_settle_sha, sha,
                 SHA_DIGEST_LENGTH);

    SHA1(ngx_http_events_cluster_webhook_renew_lua.data,
         ngx_http_events_cluster_webhook_renew_lua.len, sha);
    ngx_hex_dump(ngx_http_events_cluster_webhook_renew_sha, sha,
                 SHA_DIGEST_LENGTH);
}


/* a token of this worker, for its claims */

ngx_int_t
ngx_http_events_cluster_webhook_init(ngx_http_events_cluster_t *cl)
{
    u_char  rnd[8];

    ngx_queue_init(&cl->claims);
    ngx_queue_init(&cl->held);

    if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
        return NGX_ERROR;
    }

    cl->token.data = cl->token_buf;
    cl->token.len = ngx_sprintf(ngx_hex_dump(cl->token_buf, rnd,
                                             sizeof(rnd)),
                                ":%P", ngx_pid)
                    - cl->token_buf;

    return NGX_OK;
}


void
ngx_http_events_cluster_webhook_free(ngx_http_events_cluster_t *cl)
{
    ngx_queue_t                   *q;
    ngx_http_events_cluster_wh_t  *op;

    if (cl->claims.next == NULL) {
        return;
    }

    while (!ngx_queue_empty(&cl->held)) {
        q = ngx_queue_head(&cl->held);
        ngx_queue_remove(q);
        op = ngx_queue_data(q, ngx_http_events_cluster_wh_t, queue);

        if (op->renew.timer_set) {
            ngx_del_timer(&op->renew);
        }

        ngx_free(op);
    }

    while (!ngx_queue_empty(&cl->claims)) {
        q = ngx_queue_head(&cl->claims);
        ngx_queue_remove(q);
        ngx_free(ngx_queue_data(q, ngx_http_events_cluster_wh_t, queue));
    }
}


ngx_int_t
ngx_http_events_cluster_webhook_claim(void *data, ngx_str_t *tenant,
    ngx_str_t *endpoint, uint64_t seq, ngx_http_events_remote_claim_pt done,
    void *ctx)
{
    ngx_http_events_cluster_t  *cl = data;

    u_char                        *p;
    ngx_http_events_cluster_wh_t  *op;

    op = ngx_http_events_cluster_webhook_op(cl, tenant, endpoint, seq);
    if (op == NULL) {
        return NGX_ERROR;
    }

    op->done = done;
    op->ctx = ctx;
    op->script = &ngx_http_events_cluster_webhook_claim_lua;
    op->sha = ngx_http_events_cluster_webhook_claim_sha;

    p = (u_char *) op->argv[4] + op->argvlen[4];

    op->argv[5] = (const char *) cl->token.data;
    op->argvlen[5] = cl->token.len;
    op->argv[6] = (const char *) p;
    op->argvlen[6] = ngx_sprintf(p, "%M", cl->wh_lease) - p;
    op->argc = 7;

    if (ngx_http_events_cluster_webhook_send(op,
                                         ngx_http_events_cluster_webhook_reply)
        != NGX_OK)
    {
        ngx_queue_insert_head(&cl->claims, &op->queue);
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* NGX_OK: the claim is still this node's, as far as it knows */

ngx_int_t
ngx_http_events_cluster_webhook_held(void *data, void *hold)
{
    ngx_http_events_cluster_t  *cl = data;

    ngx_http_events_cluster_wh_t  *op = hold;

    if (op->lost || ngx_current_msec - op->confirmed >= cl->wh_lease) {
        return NGX_DECLINED;
    }

    return NGX_OK;
}


/*
 * After the attempt on a held claim: its renewal stops, and the claim
 * is settled with the held op's keys, unless it was lost (then it is
 * another node's to settle, and how is not looked at).
 */

void
ngx_http_events_cluster_webhook_settle(void *data, void *hold,
    ngx_int_t how, ngx_msec_t keep)
{
    ngx_http_events_cluster_t  *cl = data;

    u_char                        *p;
    ngx_int_t                      held;
    ngx_msec_t                     ms;
    ngx_http_events_cluster_wh_t  *op, *h;

    h = hold;
    held = ngx_http_events_cluster_webhook_held(cl, h);

    h->held = 0;
    ngx_queue_remove(&h->queue);

    if (h->renew.timer_set) {
        ngx_del_timer(&h->renew);
    }

    op = (held == NGX_OK) ? ngx_http_events_cluster_webhook_get(cl) : NULL;

    if (op) {
        /* the keys, done and claim, as the hold has them */
        p = ngx_cpymem(op->buf, h->buf, h->argvlen[3] + h->argvlen[4]);

        op->argv[2] = "2";
        op->argvlen[2] = 1;
        op->argv[3] = (const char *) op->buf;
        op->argvlen[3] = h->argvlen[3];
        op->argv[4] = (const char *) op->buf + h->argvlen[3];
        op->argvlen[4] = h->argvlen[4];
    }

    ngx_http_events_cluster_webhook_put(h);

    if (op == NULL) {
        return;
    }

    op->script = &ngx_http_events_cluster_webhook_settle_lua;
    op->sha = ngx_http_events_cluster_webhook_settle_sha;

    if (how == NGX_OK) {
        op->argv[6] = "d";
        ms = cl->wh_done;

    } else if (how == NGX_AGAIN) {
        op->argv[6] = "k";
        ms = keep + cl->wh_lease;

    } else {
        op->argv[6] = "r";
        ms = 0;
    }

    op->argv[5] = (const char *) cl->token.data;
    op->argvlen[5] = cl->token.len;
    op->argvlen[6] = 1;
    op->argv[7] = (const char *) p;
    op->argvlen[7] = ngx_sprintf(p, "%M", ngx_max(ms, 1)) - p;
    op->argc = 8;

    if (ngx_http_events_cluster_webhook_send(op,
                                         ngx_http_events_cluster_webhook_reply)
        != NGX_OK)
    {
        /* the claim lapses with its lease; done is not known then */
        ngx_queue_insert_head(&cl->claims, &op->queue);
    }
}


/* an op of the free list, or a new one */

static ngx_http_events_cluster_wh_t *
ngx_http_events_cluster_webhook_get(ngx_http_events_cluster_t *cl)
{
    ngx_queue_t                   *q;
    ngx_http_events_cluster_wh_t  *op;

    if (!ngx_queue_empty(&cl->claims)) {
        q = ngx_queue_head(&cl->claims);
        ngx_queue_remove(q);
        op = ngx_queue_data(q, ngx_http_events_cluster_wh_t, queue);

    } else {
        op = ngx_alloc(sizeof(ngx_http_events_cluster_wh_t), cl->log);
        if (op == NULL) {
            return NULL;
        }
    }

    ngx_memzero(op, offsetof(ngx_http_events_cluster_wh_t, buf));

    op->cl = cl;

    return op;
}


/* an op with its two keys: done, claim */

static ngx_http_events_cluster_wh_t *
ngx_http_events_cluster_webhook_op(ngx_http_events_cluster_t *cl,
    ngx_str_t *tenant, ngx_str_t *endpoint, uint64_t seq)
{
    u_char                        *p;
    size_t                         len;
    ngx_http_events_cluster_wh_t  *op;

    len = cl->prefix.len + sizeof("{}:wh:c::") + 2 * NGX_INT64_LEN
          + tenant->len + endpoint->len;

    if (2 * len + 2 * NGX_INT64_LEN > NGX_HTTP_EVENTS_CLUSTER_WH_BUF) {
        return NULL;
    }

    op = ngx_http_events_cluster_webhook_get(cl);
    if (op == NULL) {
        return NULL;
    }

    p = op->buf;

    op->argv[2] = "2";
    op->argvlen[2] = 1;

    op->argv[3] = (const char *) p;
    p = ngx_sprintf(p, "{%V}:wh:d:%uz:%V%V:%uL", &cl->prefix, tenant->len,
                    tenant, endpoint, seq);
    op->argvlen[3] = p - op->buf;

    op->argv[4] = (const char *) p;
    p = ngx_sprintf(p, "{%V}:wh:c:%uz:%V%V:%uL", &cl->prefix, tenant->len,
                    tenant, endpoint, seq);
    op->argvlen[4] = p - (u_char *) op->argv[4];

    return op;
}


static ngx_int_t
ngx_http_events_cluster_webhook_send(ngx_http_events_cluster_wh_t *op,
    ngx_http_events_redis_pt handler)
{
    if (op->retried) {
        op->argv[0] = "EVAL";
        op->argvlen[0] = 4;
        op->argv[1] = (const char *) op->script->data;
        op->argvlen[1] = op->script->len;

    } else {
        op->argv[0] = "EVALSHA";
        op->argvlen[0] = 7;
        op->argv[1] = (const char *) op->sha;
        op->argvlen[1] = SHA_DIGEST_LENGTH * 2;
    }

    op->sent = ngx_current_msec;

    if (ngx_http_events_redis_send(&op->cl->rd, op->argc, op->argv,
                                   op->argvlen, handler, op)
        == NULL)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * NOSCRIPT: once more with the script's text (EVAL loads it).  1: sent
 * again; 0: go on with the reply (NULL if it could not be sent).
 */

static ngx_uint_t
ngx_http_events_cluster_webhook_again(ngx_http_events_cluster_wh_t *op,
    redisReply **reply, ngx_http_events_redis_pt handler)
{
    if (*reply == NULL || op->retried
        || !ngx_http_events_redis_is_error(*reply, "NOSCRIPT"))
    {
        return 0;
    }

    op->retried = 1;

    if (ngx_http_events_cluster_webhook_send(op, handler) == NGX_OK) {
        return 1;
    }

    *reply = NULL;

    return 0;
}


static void
ngx_http_events_cluster_webhook_reply(void *data, redisReply *reply,
    ngx_http_events_redis_cmd_t *cmd)
{
    ngx_http_events_cluster_wh_t  *op = data;

    void                             *ctx, *hold;
    ngx_int_t                         rc;
    ngx_msec_t                        wait;
    redisReply                      **el;
    ngx_http_events_cluster_t        *cl;
    ngx_http_events_remote_claim_pt   done;

    cl = op->cl;
    rc = NGX_BUSY;
    wait = NGX_HTTP_EVENTS_CLUSTER_WH_AGAIN;
    hold = NULL;

    if (ngx_http_events_cluster_webhook_again(op, &reply,
                                         ngx_http_events_cluster_webhook_reply))
    {
        return;
    }

    if (reply && reply->type == REDIS_REPLY_ERROR) {
        ngx_log_error(NGX_LOG_ERR, cl->log, 0,
                      "events_cluster: redis %V refused a webhook claim: "
                      "%*s", &cl->redis.url,
                      (size_t) ngx_min(reply->len, 200), reply->str);
        (void) ngx_atomic_fetch_add(&cl->sh->errors, 1);

    } else if (reply && op->done) {
        el = reply->element;

        if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2
            || el[0]->type != REDIS_REPLY_STRING
            || el[1]->type != REDIS_REPLY_INTEGER)
        {
            ngx_log_error(NGX_LOG_ERR, cl->log, 0,
                          "events_cluster: redis %V answered a webhook "
                          "claim with an unexpected shape", &cl->redis.url);
            (void) ngx_atomic_fetch_add(&cl->sh->errors, 1);

        } else if (el[0]->len == 4 && ngx_strncmp(el[0]->str, "mine", 4) == 0)
        {
            rc = NGX_OK;
            hold = op;
            (void) ngx_atomic_fetch_add(&cl->sh->wh_claimed, 1);

        } else if (el[0]->len == 4
                   && ngx_strncmp(el[0]->str, "done", 4) == 0)
        {
            rc = NGX_DONE;
            (void) ngx_atomic_fetch_add(&cl->sh->wh_elsewhere, 1);

        } else {
            (void) ngx_atomic_fetch_add(&cl->sh->wh_taken, 1);

            if (el[1]->integer > 0) {
                wait = ngx_min((ngx_msec_t) el[1]->integer + 1,
                               NGX_HTTP_EVENTS_CLUSTER_WH_AGAIN);
            }
        }
    }

    done = op->done;
    ctx = op->ctx;

    if (hold) {
        /* the attempt runs on it: renewed until it is settled */
        ngx_http_events_cluster_webhook_hold(op);

    } else {
        ngx_queue_insert_head(&cl->claims, &op->queue);
    }

    if (done) {
        done(ctx, rc, wait, hold);
    }
}


static void
ngx_http_events_cluster_webhook_hold(ngx_http_events_cluster_wh_t *op)
{
    ngx_http_events_cluster_t  *cl;

    cl = op->cl;

    op->held = 1;
    op->confirmed = op->sent;
    op->done = NULL;

    /* the same keys and arguments, the renewing script */
    op->script = &ngx_http_events_cluster_webhook_renew_lua;
    op->sha = ngx_http_events_cluster_webhook_renew_sha;
    op->retried = 0;

    op->renew.handler = ngx_http_events_cluster_webhook_renew;
    op->renew.data = op;
    op->renew.log = cl->log;
    op->renew.cancelable = 1;

    ngx_queue_insert_head(&cl->held, &op->queue);

    ngx_add_timer(&op->renew, ngx_max(cl->wh_lease / 3, 1));
}


/*
 * Every third of the lease while the attempt runs.  Also when the
 * worker exits gracefully: the attempt in flight still needs its
 * claim, and the timer, cancelable, does not hold the exit back.
 */

static void
ngx_http_events_cluster_webhook_renew(ngx_event_t *ev)
{
    ngx_http_events_cluster_wh_t  *op = ev->data;

    ngx_http_events_cluster_t  *cl;

    cl = op->cl;

    if (op->lost) {
        return;
    }

    if (!op->renewing) {
        op->retried = 0;

        if (ngx_http_events_cluster_webhook_send(op,
                                     ngx_http_events_cluster_webhook_renewed)
            == NGX_OK)
        {
            op->renewing = 1;
        }
    }

    ngx_add_timer(&op->renew, ngx_max(cl->wh_lease / 3, 1));
}


static void
ngx_http_events_cluster_webhook_renewed(void *data, redisReply *reply,
    ngx_http_events_redis_cmd_t *cmd)
{
    ngx_http_events_cluster_wh_t  *op = data;

    ngx_http_events_cluster_t  *cl;

    cl = op->cl;

    if (op->held
        && ngx_http_events_cluster_webhook_again(op, &reply,
                                     ngx_http_events_cluster_webhook_renewed))
    {
        return;
    }

    op->renewing = 0;

    if (!op->held) {
        /* settled meanwhile */
        ngx_http_events_cluster_webhook_put(op);
        return;
    }

    if (reply == NULL) {
        /* Redis away: no renewal this time; a lease without one is lost */
        return;
    }

    if (reply->type == REDIS_REPLY_INTEGER && reply->integer == 1) {
        op->confirmed = op->sent;
        return;
    }

    if (reply->type == REDIS_REPLY_INTEGER) {
        op->lost = 1;

        if (op->renew.timer_set) {
            ngx_del_timer(&op->renew);
        }

        ngx_log_error(NGX_LOG_WARN, cl->log, 0,
                      "events_cluster: the webhook claim %*s was lost "
                      "while its attempt ran", op->argvlen[4], op->argv[4]);
        return;
    }

    ngx_log_error(NGX_LOG_ERR, cl->log, 0,
                  "events_cluster: redis %V refused to renew a webhook "
                  "claim: %*s", &cl->redis.url,
                  (size_t) (reply->type == REDIS_REPLY_ERROR
                            ? ngx_min(reply->len, 200) : 0),
                  reply->str);
    (void) ngx_atomic_fetch_add(&cl->sh->errors, 1);
}


/* a held op settled: to the free list once no renewal is out */

static void
ngx_http_events_cluster_webhook_put(ngx_http_events_cluster_wh_t *op)
{
    if (op->held || op->renewing) {
        return;
    }

    ngx_queue_insert_head(&op->cl->claims, &op->queue);
}


/*
 * An endpoint changed on this node: into the published set, with the
 * script's text (the command is formatted now, so nothing of it needs
 * to outlive the call).  Refused while the node's tailer has no link to
 * Redis; a link lost after this is only logged, by the reply.
 */

ngx_int_t
ngx_http_events_cluster_webhook_publish(void *data, ngx_str_t *tenant,
    ngx_str_t *id, ngx_str_t *text)
{
    return ngx_http_events_cluster_webhook_set(data, "eps", "ver", tenant,
                                               id, text);
}


/* an endpoint's failure state changed on this node: for every node */

ngx_int_t
ngx_http_events_cluster_webhook_state(void *data, ngx_str_t *tenant,
    ngx_str_t *id, ngx_str_t *text)
{
    return ngx_http_events_cluster_webhook_set(data, "st", "stv", tenant,
                                               id, text);
}


/* into the hash {prefix}:wh:HASH, and the counter {prefix}:wh:VER moves */

static ngx_int_t
ngx_http_events_cluster_webhook_set(ngx_http_events_cluster_t *cl,
    const char *hash, const char *ver, ngx_str_t *tenant, ngx_str_t *id,
    ngx_str_t *text)
{
    u_char      *p, *keys;
    size_t       argvlen[7];
    const char  *argv[7];

    if (!cl->sh->connected) {
        /* the node's link to Redis is down: the change would not go */
        return NGX_ERROR;
    }

    keys = ngx_alloc(3 * cl->prefix.len + 32 + NGX_INT_T_LEN + tenant->len
                     + id->len, cl->log);
    if (keys == NULL) {
        return NGX_ERROR;
    }

    argv[0] = "EVAL";
    argvlen[0] = 4;
    argv[1] = (const char *) ngx_http_events_cluster_webhook_publish_lua.data;
    argvlen[1] = ngx_http_events_cluster_webhook_publish_lua.len;
    argv[2] = "2";
    argvlen[2] = 1;

    p = keys;
    argv[3] = (const char *) p;
    p = ngx_sprintf(p, "{%V}:wh:%s", &cl->prefix, hash);
    argvlen[3] = p - keys;

    argv[4] = (const char *) p;
    p = ngx_sprintf(p, "{%V}:wh:%s", &cl->prefix, ver);
    argvlen[4] = p - (u_char *) argv[4];

    argv[5] = (const char *) p;
    p = ngx_sprintf(p, "%uz:%V%V", tenant->len, tenant, id);
    argvlen[5] = p - (u_char *) argv[5];

    argv[6] = (const char *) text->data;
    argvlen[6] = text->len;

    if (ngx_http_events_redis_send(&cl->rd, 7, argv, argvlen,
                                   ngx_http_events_cluster_webhook_published,
                                   cl)
        == NULL)
    {
        ngx_free(keys);
        return NGX_ERROR;
    }

    ngx_free(keys);

    return NGX_OK;
}


static void
ngx_http_events_cluster_webhook_published(void *data, redisReply *reply,
    ngx_http_events_redis_cmd_t *cmd)
{
    ngx_http_events_cluster_t  *cl = data;

    if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
        ngx_log_error(NGX_LOG_ERR, cl->log, 0,
                      "events_cluster: redis %V: a webhook endpoint's "
                      "change or attempt was not shared: %*s", &cl->redis.url,
                      (size_t) (reply ? ngx_min(reply->len, 200) : 11),
                      reply ? reply->str : "no answer");
        (void) ngx_atomic_fetch_add(&cl->sh->errors, 1);
    }
}


/*
 * The tailing worker, every tick: did the published endpoints or
 * failure states change?  Both counters in one MGET.
 */

void
ngx_http_events_cluster_webhook_poll(ngx_http_events_cluster_t *cl)
{
    u_char                   *p;
    size_t                    argvlen[3];
    const char               *argv[3];
    u_char                    keys[160];
    ngx_http_events_store_t  *store;

    store = cl->zone->data;

    if (store->wh_apply == NULL || cl->prefix.len > sizeof(keys) / 2 - 16) {
        return;
    }

    ngx_http_events_cluster_webhook_attempts_read(cl);

    if (cl->wh_polling) {
        return;
    }

    argv[0] = "MGET";
    argvlen[0] = 4;
    argv[1] = (const char *) keys;
    p = ngx_sprintf(keys, "{%V}:wh:ver", &cl->prefix);
    argvlen[1] = p - keys;
    argv[2] = (const char *) p;
    argvlen[2] = ngx_sprintf(p, "{%V}:wh:stv", &cl->prefix) - p;

    if (ngx_http_events_redis_send(&cl->rd, 3, argv, argvlen,
                                   ngx_http_events_cluster_webhook_version,
                                   cl)
        != NULL)
    {
        cl->wh_polling = 1;
    }
}


static void
ngx_http_events_cluster_webhook_version(void *data, redisReply *reply,
    ngx_http_events_redis_cmd_t *cmd)
{
    ngx_http_events_cluster_t  *cl = data;

    size_t       i;
    int64_t      ver[2];
    redisReply  *v;

    cl->wh_polling = 0;

    if (reply == NULL) {
        return;
    }

    for (i = 0; i < 2; i++) {
        v = (reply->type == REDIS_REPLY_ARRAY && reply->elements == 2)
            ? reply->element[i] : NULL;

        if (v && v->type == REDIS_REPLY_NIL) {
            ver[i] = 0;

        } else if (v && v->type == REDIS_REPLY_STRING) {
            ver[i] = ngx_atoof((u_char *) v->str, v->len);

        } else {
            ver[i] = -1;
        }

        if (ver[i] < 0) {
            ngx_log_error(NGX_LOG_ERR, cl->log, 0,
                          "events_cluster: redis %V: {%V}:wh:ver or "
                          "{%V}:wh:stv is not a counter", &cl->redis.url,
                          &cl->prefix, &cl->prefix);
            (void) ngx_atomic_fetch_add(&cl->sh->errors, 1);
            return;
        }
    }

    /*
     * Endpoints first, on the same connection: the states that follow
     * find the endpoints they are for.  New endpoints take the states
     * again.
     */

    if (ver[0] != cl->wh_ver) {
        cl->wh_seen = ver[0];

        if (ngx_http_events_cluster_webhook_read(cl, "eps",
                                     ngx_http_events_cluster_webhook_endpoints)
            != NGX_OK)
        {
            return;
        }

        cl->st_ver = -1;
    }

    if (ver[1] != cl->st_ver) {
        cl->st_seen = ver[1];

        (void) ngx_http_events_cluster_webhook_read(cl, "st",
                                     ngx_http_events_cluster_webhook_states);
    }
}


static ngx_int_t
ngx_http_events_cluster_webhook_read(ngx_http_events_cluster_t *cl,
    const char *hash, ngx_http_events_redis_pt handler)
{
    size_t       argvlen[2];
    const char  *argv[2];
    u_char       key[80];

    argv[0] = "HGETALL";
    argvlen[0] = 7;
    argv[1] = (const char *) key;
    argvlen[1] = ngx_sprintf(key, "{%V}:wh:%s", &cl->prefix, hash) - key;

    if (ngx_http_events_redis_send(&cl->rd, 2, argv, argvlen, handler, cl)
        == NULL)
    {
        return NGX_ERROR;
    }

    cl->wh_polling++;

    return NGX_OK;
}


static void
ngx_http_events_cluster_webhook_endpoints(void *data, redisReply *reply,
    ngx_http_events_redis_cmd_t *cmd)
{
    ngx_http_events_cluster_t  *cl = data;

    ngx_http_events_store_t  *store;

    cl->wh_polling--;
    store = cl->zone->data;

    if (ngx_http_events_cluster_webhook_texts(cl, reply, store->wh_apply)
        == NGX_OK)
    {
        cl->wh_ver = cl->wh_seen;
    }
}


static void
ngx_http_events_cluster_webhook_states(void *data, redisReply *reply,
    ngx_http_events_redis_cmd_t *cmd)
{
    ngx_http_events_cluster_t  *cl = data;

    ngx_http_events_store_t  *store;

    cl->wh_polling--;
    store = cl->zone->data;

    if (ngx_http_events_cluster_webhook_texts(cl, reply,
                                              store->wh_state_apply)
        == NGX_OK)
    {
        cl->st_ver = cl->st_seen;
    }
}


/* HGETALL's values, to the zone's webhooks */

static ngx_int_t
ngx_http_events_cluster_webhook_texts(ngx_http_events_cluster_t *cl,
    redisReply *reply, ngx_http_events_store_apply_pt apply)
{
    size_t                    i;
    ngx_int_t                 rc;
    ngx_str_t                *texts;
    ngx_uint_t                n;
    ngx_pool_t               *pool;

    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY
        || reply->elements % 2)
    {
        return NGX_ERROR;
    }

    pool = ngx_create_pool(4096, cl->log);
    if (pool == NULL) {
        return NGX_ERROR;
    }

    texts = ngx_palloc(pool, (reply->elements / 2 + 1) * sizeof(ngx_str_t));
    if (texts == NULL) {
        ngx_destroy_pool(pool);
        return NGX_ERROR;
    }

    n = 0;

    for (i = 1; i < reply->elements; i += 2) {
        if (reply->element[i]->type != REDIS_REPLY_STRING) {
            continue;
        }

        texts[n].data = (u_char *) reply->element[i]->str;
        texts[n].len = reply->element[i]->len;
        n++;
    }

    rc = apply(cl->zone->data, texts, n, pool);

    ngx_destroy_pool(pool);

    return rc;
}


/* an attempt made here: for the other nodes' logs */

void
ngx_http_events_cluster_webhook_attempt(void *data, ngx_str_t *tenant,
    ngx_str_t *id, u_char *rec, size_t len)
{
    ngx_http_events_cluster_t  *cl = data;

    u_char      *p, *keys;
    size_t       argvlen[12];
    const char  *argv[12];

    keys = ngx_alloc(cl->prefix.len + 64 + NGX_INT_T_LEN + tenant->len
                     + id->len + NGX_INT64_LEN, cl->log);
    if (keys == NULL) {
        return;
    }

    p = keys;

    argv[0] = "XADD";
    argvlen[0] = 4;
    argv[1] = (const char *) p;
    p = ngx_sprintf(p, "{%V}:wh:att", &cl->prefix);
    argvlen[1] = p - keys;
    argv[2] = "MAXLEN";
    argvlen[2] = 6;
    argv[3] = "~";
    argvlen[3] = 1;
    argv[4] = "10000";
    argvlen[4] = 5;
    argv[5] = "*";
    argvlen[5] = 1;
    argv[6] = "o";
    argvlen[6] = 1;
    argv[7] = (const char *) p;
    p = ngx_sprintf(p, "%016uxL", cl->sh->node);
    argvlen[7] = 16;
    argv[8] = "k";
    argvlen[8] = 1;
    argv[9] = (const char *) p;
    p = ngx_sprintf(p, "%uz:%V%V", tenant->len, tenant, id);
    argvlen[9] = p - (u_char *) argv[9];
    argv[10] = "r";
    argvlen[10] = 1;
    argv[11] = (const char *) rec;
    argvlen[11] = len;

    (void) ngx_http_events_redis_send(&cl->rd, 12, argv, argvlen,
                                      ngx_http_events_cluster_webhook_published,
                                      cl);
    ngx_free(keys);
}


static void
ngx_http_events_cluster_webhook_attempts_read(ngx_http_events_cluster_t *cl)
{
    u_char       *p, key[80], from[2 * NGX_INT64_LEN + 4];
    size_t        argvlen[6];
    ngx_time_t   *tp;
    const char   *argv[6];

    if (cl->att_polling) {
        return;
    }

    if (cl->sh->att_ms == 0) {
        /* a node starts with the attempts made after it did */
        tp = ngx_timeofday();
        cl->sh->att_ms = (uint64_t) tp->sec * 1000 + tp->msec;
        cl->sh->att_seq = 0;
    }

    argv[0] = "XRANGE";
    argvlen[0] = 6;
    argv[1] = (const char *) key;
    argvlen[1] = ngx_sprintf(key, "{%V}:wh:att", &cl->prefix) - key;
    argv[2] = (const char *) from;
    p = ngx_sprintf(from, "(%uL-%uL", cl->sh->att_ms, cl->sh->att_seq);
    argvlen[2] = p - from;
    argv[3] = "+";
    argvlen[3] = 1;
    argv[4] = "COUNT";
    argvlen[4] = 5;
    argv[5] = "500";
    argvlen[5] = 3;

    if (ngx_http_events_redis_send(&cl->rd, 6, argv, argvlen,
                                   ngx_http_events_cluster_webhook_attempts,
                                   cl)
        != NULL)
    {
        cl->att_polling = 1;
    }
}


/* [[id, [o, node, k, key, r, record]], ...] */

static void
ngx_http_events_cluster_webhook_attempts(void *data, redisReply *reply,
    ngx_http_events_redis_cmd_t *cmd)
{
    ngx_http_events_cluster_t  *cl = data;

    u_char                   *p, *colon, node[16];
    size_t                    i;
    uint64_t                  ms, seq;
    ngx_int_t                 tlen;
    ngx_str_t                 tenant, id;
    redisReply               *e, **f;
    ngx_http_events_store_t  *store;

    cl->att_polling = 0;
    store = cl->zone->data;

    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY) {
        return;
    }

    (void) ngx_sprintf(node, "%016uxL", cl->sh->node);

    for (i = 0; i < reply->elements; i++) {
        e = reply->element[i];

        if (e->type != REDIS_REPLY_ARRAY || e->elements != 2
            || e->element[0]->type != REDIS_REPLY_STRING
            || ngx_http_events_cluster_id((u_char *) e->element[0]->str,
                                          e->element[0]->len, &ms, &seq)
               != NGX_OK)
        {
            return;
        }

        cl->sh->att_ms = ms;
        cl->sh->att_seq = seq;

        f = e->element[1]->element;

        if (e->element[1]->type != REDIS_REPLY_ARRAY
            || e->element[1]->elements != 6
            || f[1]->type != REDIS_REPLY_STRING || f[1]->len != 16
            || f[3]->type != REDIS_REPLY_STRING
            || f[5]->type != REDIS_REPLY_STRING
            || ngx_memcmp(f[1]->str, node, 16) == 0)
        {
            /* this node's own, or not one of ours */
            continue;
        }

        /* "<tenant length>:<tenant><id>" */
        p = (u_char *) f[3]->str;
        colon = ngx_strlchr(p, p + f[3]->len, ':');

        if (colon == NULL) {
            continue;
        }

        tlen = ngx_atoi(p, colon - p);

        if (tlen == NGX_ERROR
            || (size_t) tlen > f[3]->len - (colon + 1 - p))
        {
            continue;
        }

        tenant.data = colon + 1;
        tenant.len = tlen;
        id.data = tenant.data + tlen;
        id.len = p + f[3]->len - id.data;

        store->wh_attempt_apply(store, &tenant, &id, (u_char *) f[5]->str,
                                f[5]->len);
    }
}
