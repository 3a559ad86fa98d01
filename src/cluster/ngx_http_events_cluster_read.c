
/*
 * Copyright (C) ngx_http_events_module authors
 */


/*
 * Reads of a cluster's log that the node's ring cannot answer: pages of
 * the list (and of an entity's history) older than the ring, and single
 * events that left it.  They go to Redis on the worker's appends
 * connection, pipelined with the appends, never blocking: one Lua
 * script per read (EVALSHA; EVAL when Redis answers NOSCRIPT), bounded
 * by COUNT.  The filters of the query are applied here, on what came
 * back, so a page with filters may hold fewer events than its limit and
 * say has_more with a cursor to go on from.
 *
 * Entries are "<ms>-<seq>" and both parts grow together, so the order
 * of ids is the order of seqs; a cursor carries the seq only.  The
 * script finds the ms of the last entry at or before a seq by a binary
 * search on ms (XRANGE COUNT 1 per step, some 30 steps for a day of
 * retention), then reads the page from there.  What the stream no longer
 * holds (trimmed by max_len= or retention=) is what answers 410.
 *
 * A tenant's type catalog is a hash the append script keeps
 * (ngx_http_events_cluster_append.c): one HGETALL, no script.
 *
 * A read op outlives a request that ended early: ops come from a free
 * list of the worker, so a reply for a cancelled read finds its op.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <openssl/sha.h>

#include "ngx_http_events_module.h"
#include "ngx_http_events_store.h"
#include "ngx_http_events_query.h"
#include "ngx_http_events_redis.h"
#include "ngx_http_events_cluster.h"


/* entries read per page with filters: a bound per request */
#define NGX_HTTP_EVENTS_CLUSTER_READ_COUNT  1000
#define NGX_HTTP_EVENTS_CLUSTER_READ_ARGS   8
#define NGX_HTTP_EVENTS_CLUSTER_READ_BUF    512


typedef struct {
    ngx_queue_t                 queue;          /* the free list */
    ngx_http_events_cluster_t  *cl;
    ngx_http_events_query_t    *q;
    ngx_http_events_result_t   *res;
    ngx_str_t                  *json;
    ngx_array_t                *types;          /* a catalog's */
    ngx_pool_t                 *pool;
    ngx_http_events_remote_read_pt  done;
    void                       *ctx;
    ngx_str_t                  *script;
    u_char                     *sha;
    int                         argc;
    const char                 *argv[NGX_HTTP_EVENTS_CLUSTER_READ_ARGS];
    size_t                      argvlen[NGX_HTTP_EVENTS_CLUSTER_READ_ARGS];
    uint64_t                    count;
    u_char                      buf[NGX_HTTP_EVENTS_CLUSTER_READ_BUF];
    unsigned                    retried:1;
    unsigned                    busy:1;         /* a reply is due */
} ngx_http_events_cluster_read_t;


static ngx_http_events_cluster_read_t *ngx_http_events_cluster_read_op(
    ngx_http_events_cluster_t *cl, ngx_pool_t *pool,
    ngx_http_events_remote_read_pt done, void *ctx);
static ngx_int_t ngx_http_events_cluster_read_send(
    ngx_http_events_cluster_read_t *op);
static void ngx_http_events_cluster_read_reply(void *data, redisReply *reply,
    ngx_http_events_redis_cmd_t *cmd);
static ngx_int_t ngx_http_events_cluster_read_page(
    ngx_http_events_cluster_read_t *op, redisReply *reply);
static ngx_int_t ngx_http_events_cluster_read_one(
    ngx_http_events_cluster_read_t *op, redisReply *reply);
static ngx_int_t ngx_http_events_cluster_read_catalog(
    ngx_http_events_cluster_read_t *op, redisReply *reply);
static ngx_int_t ngx_http_events_cluster_read_entry(
    ngx_http_events_cluster_t *cl, uint64_t epoch, redisReply *entry,
    ngx_http_events_event_t *ev);
static void ngx_http_events_cluster_read_end(
    ngx_http_events_cluster_read_t *op, ngx_int_t rc);


/*
 * KEYS: the stream.  ARGV: "a" (ascending, after the seq) or "d"
 * (descending, before the seq + 1), the seq, COUNT.  Answers {the
 * oldest seq in the stream (0: empty), the entries}.
 */

static ngx_str_t  ngx_http_events_cluster_read_range = ngx_string(
"local function seqof(id) return tonumber(string.match(id, '%-(%d+)$')) end\n"
"local function msof(id) return tonumber(string.match(id, '^(%d+)')) end\n"
"local s = tonumber(ARGV[2])\n"
"local n = tonumber(ARGV[3])\n"
"local first = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)[1]\n"
"if not first then return {0, {}} end\n"
"local oldest = seqof(first[1])\n"
"local m = nil\n"
"if oldest <= s then\n"
"  local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)[1]\n"
"  local lo, hi = msof(first[1]), msof(last[1])\n"
"  while lo < hi do\n"
"    local mid = math.floor((lo + hi + 1) / 2)\n"
"    local e = redis.call('XRANGE', KEYS[1], string.format('%d-0', mid),\n"
"                         '+', 'COUNT', 1)[1]\n"
"    if e and seqof(e[1]) <= s then lo = mid else hi = mid - 1 end\n"
"  end\n"
"  m = string.format('%d-%d', lo, s)\n"
"end\n"
"if ARGV[1] == 'a' then\n"
"  if m then\n"
"    return {oldest, redis.call('XRANGE', KEYS[1], '(' .. m, '+',\n"
"                               'COUNT', n)}\n"
"  end\n"
"  return {oldest, redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', n)}\n"
"end\n"
"if m then\n"
"  return {oldest, redis.call('XREVRANGE', KEYS[1], m, '-', 'COUNT', n)}\n"
"end\n"
"return {oldest, {}}\n");


/* KEYS: the stream, the id's key.  Answers the entry, or nil. */

static ngx_str_t  ngx_http_events_cluster_read_id = ngx_string(
"local v = redis.call('GET', KEYS[2])\n"
"if not v then return false end\n"
"local id = string.sub(v, 34)\n"
"local e = redis.call('XRANGE', KEYS[1], id, id)\n"
"return e[1] or false\n");


static u_char  ngx_http_events_cluster_read_range_sha[SHA_DIGEST_LENGTH * 2];
static u_char  ngx_http_events_cluster_read_id_sha[SHA_DIGEST_LENGTH * 2];


void
ngx_http_events_cluster_read_postconfiguration(void)
{
    u_char  sha[SHA_DIGEST_LENGTH];

    SHA1(ngx_http_events_cluster_read_range.data,
         ngx_http_events_cluster_read_range.len, sha);
    ngx_hex_dump(ngx_http_events_cluster_read_range_sha, sha,
                 SHA_DIGEST_LENGTH);

    SHA1(ngx_http_events_cluster_read_id.data,
         ngx_http_events_cluster_read_id.len, sha);
    ngx_hex_dump(ngx_http_events_cluster_read_id_sha, sha,
                 SHA_DIGEST_LENGTH);
}


void *
ngx_http_events_cluster_read_query(void *data, ngx_http_events_query_t *q,
    ngx_http_events_result_t *res, ngx_pool_t *pool,
    ngx_http_events_remote_read_pt done, void *ctx)
{
    ngx_http_events_cluster_t  *cl = data;

    u_char                          *p;
    uint64_t                         seq;
    ngx_uint_t                       filtered;
    ngx_http_events_cluster_read_t  *op;

    if (ngx_array_init(&res->items, pool, q->limit + 1,
                       sizeof(ngx_http_events_item_t))
        != NGX_OK)
    {
        return NULL;
    }

    res->has_next = 0;
    res->has_more = 0;
    res->expired = 0;

    op = ngx_http_events_cluster_read_op(cl, pool, done, ctx);
    if (op == NULL) {
        return NULL;
    }

    op->q = q;
    op->res = res;
    op->script = &ngx_http_events_cluster_read_range;
    op->sha = ngx_http_events_cluster_read_range_sha;

    /*
     * without filters a page needs limit + 1 entries to know has_more;
     * a tenant's page a few times that (other tenants' events pass by);
     * with filters, up to the scan limit
     */
    filtered = q->ntypes || q->rtype.len || q->rid.len || q->source.len
               || q->action || q->since_ms >= 0 || q->until_ms >= 0
               || q->nmeta;

    op->count = q->limit + 1;

    if (filtered) {
        op->count = ngx_max(op->count,
                            ngx_min(q->scan_limit,
                                    NGX_HTTP_EVENTS_CLUSTER_READ_COUNT));

    } else if (!q->any_tenant) {
        op->count = ngx_min(ngx_max(4 * op->count, 100),
                            ngx_max(op->count,
                                    NGX_HTTP_EVENTS_CLUSTER_READ_COUNT));
    }

    if (q->desc) {
        seq = q->before ? q->before - 1 : res->window.head_seq;

    } else {
        seq = q->after;
    }

    p = op->buf;

    op->argv[3] = (const char *) cl->key_log.data;
    op->argvlen[3] = cl->key_log.len;
    op->argv[4] = q->desc ? "d" : "a";
    op->argvlen[4] = 1;
    op->argv[5] = (const char *) p;
    op->argvlen[5] = ngx_sprintf(p, "%uL", seq) - p;
    p += op->argvlen[5];
    op->argv[6] = (const char *) p;
    op->argvlen[6] = ngx_sprintf(p, "%uL", op->count) - p;
    op->argc = 7;

    if (ngx_http_events_cluster_read_send(op) != NGX_OK) {
        ngx_queue_insert_head(&cl->reads, &op->queue);
        return NULL;
    }

    return op;
}


void *
ngx_http_events_cluster_read_get(void *data, ngx_str_t *tenant,
    ngx_str_t *id, ngx_str_t *json, ngx_pool_t *pool,
    ngx_http_events_remote_read_pt done, void *ctx)
{
    ngx_http_events_cluster_t  *cl = data;

    u_char                          *p;
    ngx_http_events_cluster_read_t  *op;

    if (cl->key_id.len + NGX_INT_T_LEN + 1 + tenant->len + id->len
        > NGX_HTTP_EVENTS_CLUSTER_READ_BUF)
    {
        return NULL;
    }

    op = ngx_http_events_cluster_read_op(cl, pool, done, ctx);
    if (op == NULL) {
        return NULL;
    }

    op->json = json;
    op->script = &ngx_http_events_cluster_read_id;
    op->sha = ngx_http_events_cluster_read_id_sha;

    /* the key the append wrote: prefix, the tenant's length, tenant, id */
    p = op->buf;

    op->argv[3] = (const char *) cl->key_log.data;
    op->argvlen[3] = cl->key_log.len;
    op->argv[4] = (const char *) p;
    op->argvlen[4] = ngx_sprintf(p, "%V%uz:%V%V", &cl->key_id, tenant->len,
                                 tenant, id)
                     - p;
    op->argc = 5;

    if (ngx_http_events_cluster_read_send(op) != NGX_OK) {
        ngx_queue_insert_head(&cl->reads, &op->queue);
        return NULL;
    }

    return op;
}


void *
ngx_http_events_cluster_read_types(void *data, ngx_str_t *tenant,
    ngx_array_t *types, ngx_pool_t *pool,
    ngx_http_events_remote_read_pt done, void *ctx)
{
    ngx_http_events_cluster_t  *cl = data;

    u_char                          *p;
    ngx_http_events_cluster_read_t  *op;

    if (cl->key_types.len + NGX_INT_T_LEN + 1 + tenant->len
        > NGX_HTTP_EVENTS_CLUSTER_READ_BUF)
    {
        return NULL;
    }

    op = ngx_http_events_cluster_read_op(cl, pool, done, ctx);
    if (op == NULL) {
        return NULL;
    }

    op->types = types;

    /* the key the append script keeps: prefix, tenant's length, tenant */
    p = op->buf;

    op->argv[3] = "HGETALL";
    op->argvlen[3] = 7;
    op->argv[4] = (const char *) p;
    op->argvlen[4] = ngx_sprintf(p, "%V%uz:%V", &cl->key_types,
                                 tenant->len, tenant)
                     - p;
    op->argc = 5;

    if (ngx_http_events_cluster_read_send(op) != NGX_OK) {
        ngx_queue_insert_head(&cl->reads, &op->queue);
        return NULL;
    }

    return op;
}


uint64_t
ngx_http_events_cluster_read_gone(void *data)
{
    ngx_http_events_cluster_t  *cl = data;

    return cl->sh->gone;
}


void
ngx_http_events_cluster_read_cancel(void *handle)
{
    ngx_http_events_cluster_read_t  *op = handle;

    /* the reply, when it comes, finds the op and puts it back */
    op->done = NULL;
    op->pool = NULL;
}


void
ngx_http_events_cluster_read_free(ngx_http_events_cluster_t *cl)
{
    ngx_queue_t  *q;

    if (cl->reads.next == NULL) {
        return;
    }

    /* after the connection closed: no reply is due any more */
    while (!ngx_queue_empty(&cl->reads)) {
        q = ngx_queue_head(&cl->reads);
        ngx_queue_remove(q);
        ngx_free(ngx_queue_data(q, ngx_http_events_cluster_read_t, queue));
    }
}


static ngx_http_events_cluster_read_t *
ngx_http_events_cluster_read_op(ngx_http_events_cluster_t *cl,
    ngx_pool_t *pool, ngx_http_events_remote_read_pt done, void *ctx)
{
    ngx_queue_t                     *q;
    ngx_http_events_cluster_read_t  *op;

    if (!ngx_queue_empty(&cl->reads)) {
        q = ngx_queue_head(&cl->reads);
        ngx_queue_remove(q);
        op = ngx_queue_data(q, ngx_http_events_cluster_read_t, queue);

    } else {
        op = ngx_alloc(sizeof(ngx_http_events_cluster_read_t), cl->log);
        if (op == NULL) {
            return NULL;
        }
    }

    ngx_memzero(op, sizeof(ngx_http_events_cluster_read_t));

    op->cl = cl;
    op->pool = pool;
    op->done = done;
    op->ctx = ctx;

    return op;
}


static ngx_int_t
ngx_http_events_cluster_read_send(ngx_http_events_cluster_read_t *op)
{
    ngx_http_events_cluster_t  *cl;

    cl = op->cl;

    if (op->script == NULL) {
        /* a plain command in argv[3..] */
        if (ngx_http_events_redis_send(&cl->rd, op->argc - 3, &op->argv[3],
                                       &op->argvlen[3],
                                       ngx_http_events_cluster_read_reply,
                                       op)
            == NULL)
        {
            return NGX_ERROR;
        }

        op->busy = 1;

        return NGX_OK;
    }

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

    op->argv[2] = op->argc == 5 ? "2" : "1";
    op->argvlen[2] = 1;

    if (ngx_http_events_redis_send(&cl->rd, op->argc, op->argv, op->argvlen,
                                   ngx_http_events_cluster_read_reply, op)
        == NULL)
    {
        return NGX_ERROR;
    }

    op->busy = 1;

    return NGX_OK;
}


static void
ngx_http_events_cluster_read_reply(void *data, redisReply *reply,
    ngx_http_events_redis_cmd_t *cmd)
{
    ngx_http_events_cluster_read_t  *op = data;

    ngx_int_t                   rc;
    ngx_http_events_cluster_t  *cl;

    cl = op->cl;
    op->busy = 0;

    if (op->done == NULL) {
        ngx_queue_insert_head(&cl->reads, &op->queue);
        return;
    }

    if (reply == NULL) {
        ngx_http_events_cluster_read_end(op, NGX_BUSY);
        return;
    }

    if (ngx_http_events_redis_is_error(reply, "NOSCRIPT") && !op->retried) {
        op->retried = 1;

        if (ngx_http_events_cluster_read_send(op) == NGX_OK) {
            return;
        }

        ngx_http_events_cluster_read_end(op, NGX_BUSY);
        return;
    }

    if (reply->type == REDIS_REPLY_ERROR) {
        ngx_log_error(NGX_LOG_ERR, cl->log, 0,
                      "events_cluster: redis %V refused a read of %V: %*s",
                      &cl->redis.url, &cl->key_log,
                      (size_t) ngx_min(reply->len, 200), reply->str);
        (void) ngx_atomic_fetch_add(&cl->sh->errors, 1);
        ngx_http_events_cluster_read_end(op, NGX_BUSY);
        return;
    }

    rc = op->q ? ngx_http_events_cluster_read_page(op, reply)
         : op->types ? ngx_http_events_cluster_read_catalog(op, reply)
         : ngx_http_events_cluster_read_one(op, reply);

    if (rc == NGX_ABORT) {
        ngx_log_error(NGX_LOG_ERR, cl->log, 0,
                      "events_cluster: redis %V answered a read of %V "
                      "with an unexpected shape", &cl->redis.url,
                      &cl->key_log);
        (void) ngx_atomic_fetch_add(&cl->sh->errors, 1);
        rc = NGX_BUSY;
    }

    ngx_http_events_cluster_read_end(op, rc);
}


/* the one way a read ends: its op back to the free list, then done() */

static void
ngx_http_events_cluster_read_end(ngx_http_events_cluster_read_t *op,
    ngx_int_t rc)
{
    void                            *ctx;
    ngx_http_events_remote_read_pt   done;

    done = op->done;
    ctx = op->ctx;

    ngx_queue_insert_head(&op->cl->reads, &op->queue);

    done(ctx, rc);
}


/*
 * {oldest, entries}: the page, as the ring's scan would have made it,
 * within what the stream holds and up to the ring's head.  NGX_ABORT:
 * a reply of another shape.
 */

static ngx_int_t
ngx_http_events_cluster_read_page(ngx_http_events_cluster_read_t *op,
    redisReply *reply)
{
    size_t                     i;
    uint64_t                   oldest, gone, last, head, ms, seq;
    ngx_str_t                  json;
    redisReply                *entries, *e;
    ngx_http_events_item_t    *item;
    ngx_http_events_query_t   *q;
    ngx_http_events_event_t    ev;
    ngx_http_events_result_t  *res;
    ngx_http_events_window_t  *w;

    q = op->q;
    res = op->res;
    w = &res->window;
    head = w->head_seq;

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2
        || reply->element[0]->type != REDIS_REPLY_INTEGER
        || reply->element[0]->integer < 0
        || reply->element[1]->type != REDIS_REPLY_ARRAY)
    {
        return NGX_ABORT;
    }

    oldest = (uint64_t) reply->element[0]->integer;
    entries = reply->element[1];

    /* what neither the stream nor the ring holds any more */
    gone = oldest ? ngx_min(oldest - 1, w->evicted_seq) : w->evicted_seq;

    w->evicted_seq = gone;
    w->oldest_seq = gone + 1;

    if ((q->has_after && q->after < gone)
        || (q->before && q->before <= gone))
    {
        res->expired = 1;
        return NGX_OK;
    }

    last = q->desc ? (q->before ? q->before : head + 1) : q->after;

    for (i = 0; i < entries->elements; i++) {
        e = entries->element[i];

        if (e->type != REDIS_REPLY_ARRAY || e->elements != 2
            || e->element[0]->type != REDIS_REPLY_STRING
            || ngx_http_events_cluster_id((u_char *) e->element[0]->str,
                                          e->element[0]->len, &ms, &seq)
               != NGX_OK)
        {
            return NGX_ABORT;
        }

        if (!q->desc && seq > head) {
            /* past what this node's ring has: the next page is the ring's */
            break;
        }

        if (seq > head) {
            continue;
        }

        ngx_memzero(&ev, sizeof(ngx_http_events_event_t));

        if (ngx_http_events_cluster_read_entry(op->cl, w->epoch, e, &ev)
            != NGX_OK)
        {
            /* another program's entry, or another epoch's */
            last = seq;
            continue;
        }

        /* the envelope first: metadata filters read it */
        json.data = ngx_pnalloc(op->pool, ngx_http_events_store_json_len(&ev)
                                          + ev.type.len);
        if (json.data == NULL) {
            return NGX_ERROR;
        }

        json.len = ngx_http_events_store_json(json.data, &ev) - json.data;

        if (!ngx_http_events_store_match(q, &ev, &json)) {
            last = seq;
            continue;
        }

        if (res->items.nelts == q->limit) {
            res->has_more = 1;
            break;
        }

        item = ngx_array_push(&res->items);
        if (item == NULL) {
            return NGX_ERROR;
        }

        ngx_memzero(item, sizeof(ngx_http_events_item_t));

        item->seq = seq;
        item->json = json;
        item->type.data = json.data + json.len;
        item->type.len = ev.type.len;
        ngx_memcpy(item->type.data, ev.type.data, ev.type.len);

        last = seq;
    }

    if (i == entries->elements && entries->elements == op->count) {
        /* the stream has more than this read took */
        res->has_more = 1;
    }

    if (!q->desc) {
        res->next = res->has_more ? last : ngx_max(last, head);
        res->has_next = 1;

    } else if (res->has_more) {
        res->next = last;
        res->has_next = 1;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_events_cluster_read_one(ngx_http_events_cluster_read_t *op,
    redisReply *reply)
{
    uint64_t                 ms, seq;
    ngx_http_events_event_t  ev;

    if (reply->type == REDIS_REPLY_NIL) {
        return NGX_DECLINED;
    }

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2
        || reply->element[0]->type != REDIS_REPLY_STRING
        || ngx_http_events_cluster_id((u_char *) reply->element[0]->str,
                                      reply->element[0]->len, &ms, &seq)
           != NGX_OK)
    {
        return NGX_ABORT;
    }

    ngx_memzero(&ev, sizeof(ngx_http_events_event_t));

    if (ngx_http_events_cluster_read_entry(op->cl,
                                           ngx_http_events_store_epoch(
                                               op->cl->zone->data),
                                           reply, &ev)
        != NGX_OK)
    {
        /* an id of an older epoch still remembered */
        return NGX_DECLINED;
    }

    op->json->data = ngx_pnalloc(op->pool,
                                 ngx_http_events_store_json_len(&ev));
    if (op->json->data == NULL) {
        return NGX_ERROR;
    }

    op->json->len = ngx_http_events_store_json(op->json->data, &ev)
                    - op->json->data;

    return NGX_OK;
}


/* type -> "<count> <last ms>" pairs: the catalog, in the op's pool */

static ngx_int_t
ngx_http_events_cluster_read_catalog(ngx_http_events_cluster_read_t *op,
    redisReply *reply)
{
    u_char                       *sp, *end;
    size_t                        i;
    off_t                         count, ms;
    redisReply                   *k, *v;
    ngx_http_events_type_info_t  *ti;

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements % 2) {
        return NGX_ABORT;
    }

    for (i = 0; i < reply->elements; i += 2) {
        k = reply->element[i];
        v = reply->element[i + 1];

        if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING
            || k->len == 0 || k->len > NGX_HTTP_EVENTS_MAX_TYPE)
        {
            return NGX_ABORT;
        }

        end = (u_char *) v->str + v->len;
        sp = ngx_strlchr((u_char *) v->str, end, ' ');

        if (sp == NULL) {
            return NGX_ABORT;
        }

        count = ngx_atoof((u_char *) v->str, sp - (u_char *) v->str);
        ms = ngx_atoof(sp + 1, end - sp - 1);

        if (count == NGX_ERROR || ms == NGX_ERROR) {
            return NGX_ABORT;
        }

        if (count == 0) {
            continue;
        }

        ti = ngx_array_push(op->types);
        if (ti == NULL) {
            return NGX_ERROR;
        }

        ti->type.data = ngx_pnalloc(op->pool, k->len);
        if (ti->type.data == NULL) {
            return NGX_ERROR;
        }

        ngx_memcpy(ti->type.data, k->str, k->len);
        ti->type.len = k->len;
        ti->count = (uint64_t) count;
        ti->last_ms = (uint64_t) ms;
    }

    return NGX_OK;
}


/* [id, [e, epoch, r, record, ...]] of this epoch: the event */

static ngx_int_t
ngx_http_events_cluster_read_entry(ngx_http_events_cluster_t *cl,
    uint64_t epoch, redisReply *entry, ngx_http_events_event_t *ev)
{
    uint64_t     ms, seq, e, gone;
    redisReply  **f;

    if (ngx_http_events_cluster_id((u_char *) entry->element[0]->str,
                                   entry->element[0]->len, &ms, &seq)
        != NGX_OK
        || ngx_http_events_cluster_fields(entry->element[1], &gone)
           == NGX_ERROR)
    {
        return NGX_DECLINED;
    }

    f = entry->element[1]->element;

    if (ngx_http_events_cluster_epoch(f[1], &e) != NGX_OK
        || e != epoch || seq == 0
        || ngx_http_events_cluster_rec_read((u_char *) f[3]->str, f[3]->len,
                                            ev)
           != NGX_OK)
    {
        return NGX_DECLINED;
    }

    ev->seq = seq;
    ev->time_ms = ms;

    return NGX_OK;
}
