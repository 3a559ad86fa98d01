
/*
 * Copyright (C) ngx_http_events_module authors
 */


/*
 * Appends.  The POSTs that reach a worker in one turn of its event loop
 * are folded into one run of a Lua script in Redis (EVALSHA; EVAL with
 * the script's text when Redis answers NOSCRIPT, which also loads it):
 * a posted event sends what the turn queued.  For each POST in turn the
 * script checks its ids, and then, all or nothing for that POST, assigns
 * the seqs, adds the events to the stream with the id "<ms>-<seq>" and
 * records the ids; a conflict refuses that POST only.  Each POST is
 * answered after Redis answered, from what the script assigned to it;
 * nothing is written to the local ring by this path (the tailer brings
 * it).  While a worker's script is in flight its next appends wait
 * for the answer (at most one round trip), then go together: under
 * load, a script takes what came in during the previous one (group
 * commit).  Scripts of one worker share its connection, pipelined;
 * wait=N sends WAIT right behind the script.
 *
 * A fold lives in a pool of its own, with copies of what it sends, so
 * that a request that ends early (its op cancelled) leaves it whole:
 * a NOSCRIPT or a migrating slot sends it again.
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


/* at most this much in one script: Redis runs it in one go */
#define NGX_HTTP_EVENTS_CLUSTER_FOLD_EVENTS  512
#define NGX_HTTP_EVENTS_CLUSTER_FOLD_SIZE    (4 * 1024 * 1024)


typedef struct ngx_http_events_cluster_fold_s  ngx_http_events_cluster_fold_t;


/* one POST's append */
typedef struct {
    ngx_http_events_cluster_t  *cl;
    ngx_http_events_event_t    *events;
    ngx_uint_t                  n;
    size_t                      size;           /* its records' bytes */
    ngx_pool_t                 *pool;
    ngx_http_events_remote_done_pt  done;
    void                       *ctx;
    ngx_queue_t                 queue;          /* waiting for the turn */
    ngx_http_events_cluster_fold_t  *fold;      /* sent in it */
    ngx_uint_t                  index;          /* of it */
    ngx_int_t                   rc;             /* the script's, for WAIT */
    ngx_uint_t                  failed;
} ngx_http_events_cluster_op_t;


/* the appends of one turn, one script */
struct ngx_http_events_cluster_fold_s {
    ngx_http_events_cluster_t  *cl;
    ngx_pool_t                 *pool;
    ngx_http_events_cluster_op_t  **ops;        /* NULL: cancelled */
    ngx_uint_t                 *ns;             /* events of each */
    ngx_uint_t                  nops;
    ngx_uint_t                  live;
    int                         argc;
    const char                **argv;
    size_t                     *argvlen;
    ngx_uint_t                  replies;        /* due to its handlers */
    ngx_uint_t                  stale_waits;    /* WAITs to pass over */
    ngx_event_t                 again;          /* a slot migrating */
    ngx_msec_t                  started;
    unsigned                    retried:1;
    unsigned                    no_wait:1;      /* WAIT could not go */
    unsigned                    wait_due:1;     /* its WAIT not answered */
    unsigned                    answered:1;     /* the script answered */
    unsigned                    holds:1;        /* the worker's in flight */
};


static void ngx_http_events_cluster_fold(ngx_event_t *ev);
static ngx_int_t ngx_http_events_cluster_fold_args(
    ngx_http_events_cluster_fold_t *f, ngx_queue_t *ops);
static ngx_int_t ngx_http_events_cluster_send(
    ngx_http_events_cluster_fold_t *f);
static void ngx_http_events_cluster_appended(void *data, redisReply *reply,
    ngx_http_events_redis_cmd_t *cmd);
static void ngx_http_events_cluster_waited(void *data, redisReply *reply,
    ngx_http_events_redis_cmd_t *cmd);
static void ngx_http_events_cluster_fail_all(
    ngx_http_events_cluster_fold_t *f, ngx_int_t rc);
static void ngx_http_events_cluster_finish(
    ngx_http_events_cluster_fold_t *f, ngx_uint_t i, ngx_int_t rc,
    ngx_uint_t failed);
static void ngx_http_events_cluster_fold_free(
    ngx_http_events_cluster_fold_t *f);
static ngx_int_t ngx_http_events_cluster_answer(
    ngx_http_events_cluster_fold_t *f, redisReply *reply);
static ngx_int_t ngx_http_events_cluster_answer_one(
    ngx_http_events_cluster_op_t *op, redisReply **el, ngx_uint_t nel,
    ngx_uint_t *pos, ngx_uint_t n);
static ngx_int_t ngx_http_events_cluster_stored(ngx_pool_t *pool,
    ngx_http_events_event_t *ev, redisReply *rec);
static void ngx_http_events_cluster_again(ngx_event_t *ev);


/*
 * The append.  KEYS: the stream, the meta hash, then one key per event
 * (its id: a client's is checked, every one is kept for reads by id).
 * ARGV: a new epoch in case the log has none, max length, retention in
 * ms, the number of events, the number of POSTs, the number of events
 * of each, then per event: its digest, its record.  Answers {epoch,
 * then per POST: "conflict", index | "ok", then per event: "n" (new) or
 * "r" (a repeat), its stream id, and a repeat's stored record}.  A POST
 * sees the ids of those before it in the same run.
 *
 * The catalog.  Each tenant's types are a hash "{prefix}:ty:<tenant
 * length>:<tenant>", type -> "<count> <last ms>", of what the stream
 * holds: so the script trims the stream itself, exactly (XTRIM MINID to
 * the entry after the last one it read), taking each trimmed event off
 * its type's count: by age once a run, by length before an XADD that
 * would pass max_len by 1% (room()), at most 1000 entries a time.
 * Every new entry carries "g", the last seq trimmed so far (the seq
 * before the stream's first entry: the stream holds every seq after
 * it, however it was trimmed): a node's "oldest" is the log's as of
 * its head.  The tenant and the type come
 * from the record's header (ngx_http_events_cluster_rec_write()).
 */

static ngx_str_t  ngx_http_events_cluster_script = ngx_string(
"local base = string.sub(KEYS[1], 1, -4) .. 'ty:'\n"
"local acc = {}\n"
"local function bump(rec, d, ms)\n"
"  if type(rec) ~= 'string' or #rec < 43 then return end\n"
"  local t1, t2, i1, i2, y1, y2 = string.byte(rec, 28, 33)\n"
"  local tl, il, yl = t1 + t2 * 256, i1 + i2 * 256, y1 + y2 * 256\n"
"  local tn = string.sub(rec, 44, 43 + tl)\n"
"  local ty = string.sub(rec, 44 + tl + il, 43 + tl + il + yl)\n"
"  local t = acc[tn]\n"
"  if not t then t = {}; acc[tn] = t end\n"
"  local a = t[ty]\n"
"  if not a then a = {0, 0}; t[ty] = a end\n"
"  a[1] = a[1] + d\n"
"  if ms > a[2] then a[2] = ms end\n"
"end\n"
"local function flush()\n"
"  for tn, t in pairs(acc) do\n"
"    local k = base .. #tn .. ':' .. tn\n"
"    for ty, a in pairs(t) do\n"
"      local v = redis.call('HGET', k, ty)\n"
"      local c, l = 0, 0\n"
"      if v then\n"
"        local sc, sl = string.match(v, '^(%d+) (%d+)$')\n"
"        c, l = tonumber(sc or 0), tonumber(sl or 0)\n"
"      end\n"
"      c = c + a[1]\n"
"      if a[2] > l then l = a[2] end\n"
"      if c > 0 then redis.call('HSET', k, ty, c .. ' ' .. l)\n"
"      elseif v then redis.call('HDEL', k, ty) end\n"
"    end\n"
"  end\n"
"end\n"
"local xlen, gone = 0, 0\n"
"local function trim(es)\n"
"  if #es == 0 then return end\n"
"  for _, e in ipairs(es) do bump(e[2][4], -1, 0) end\n"
"  local m, s = string.match(es[#es][1], '^(%d+)%-(%d+)$')\n"
"  redis.call('XTRIM', KEYS[1], 'MINID',\n"
"             string.format('%s-%d', m, tonumber(s) + 1))\n"
"  xlen = xlen - #es\n"
"  gone = math.max(gone, tonumber(s))\n"
"end\n"
"local function room(maxlen)\n"
"  if maxlen > 0 and xlen >= maxlen + math.floor(maxlen / 100) then\n"
"    trim(redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT',\n"
"                    math.min(xlen + 1 - maxlen, 1000)))\n"
"  end\n"
"  xlen = xlen + 1\n"
"end\n"
"local meta = redis.call('HMGET', KEYS[2], 'epoch', 'seq', 'ms')\n"
"local epoch = meta[1]\n"
"if not epoch then\n"
"  epoch = ARGV[1]\n"
"  redis.call('HSET', KEYS[2], 'epoch', epoch, 'seq', 0, 'ms', 0)\n"
"  meta = {epoch, 0, 0}\n"
"end\n"
"local g = tonumber(ARGV[5])\n"
"local av = 5 + g\n"
"local t = redis.call('TIME')\n"
"local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
"local last = tonumber(meta[3] or 0)\n"
"if ms < last then ms = last end\n"
"local seq = tonumber(meta[2] or 0)\n"
"local maxlen = tonumber(ARGV[2])\n"
"local ret = tonumber(ARGV[3])\n"
"if maxlen > 0 then xlen = redis.call('XLEN', KEYS[1]) end\n"
"local first = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)[1]\n"
"if first then\n"
"  gone = tonumber(string.match(first[1], '%-(%d+)$')) - 1\n"
"else\n"
"  gone = seq\n"
"end\n"
"if ret > 0 then\n"
"  trim(redis.call('XRANGE', KEYS[1], '-',\n"
"                  string.format('(%d-0', ms - ret), 'COUNT', 1000))\n"
"end\n"
"local out = {epoch}\n"
"local x = 0\n"
"for j = 1, g do\n"
"  local m = tonumber(ARGV[5 + j])\n"
"  local found = {}\n"
"  local bad = -1\n"
"  for i = 1, m do\n"
"    local v = false\n"
"    if string.byte(ARGV[av + 2 * (x + i)], 3) ~= 0 then\n"
"      v = redis.call('GET', KEYS[2 + x + i])\n"
"    end\n"
"    if v then\n"
"      if string.sub(v, 1, 32) ~= ARGV[av + 2 * (x + i) - 1] then\n"
"        bad = i - 1\n"
"        break\n"
"      end\n"
"      found[i] = string.sub(v, 34)\n"
"    end\n"
"  end\n"
"  if bad >= 0 then\n"
"    out[#out + 1] = 'conflict'\n"
"    out[#out + 1] = bad\n"
"  else\n"
"    out[#out + 1] = 'ok'\n"
"    for i = 1, m do\n"
"      local k = x + i\n"
"      if found[i] then\n"
"        local e = redis.call('XRANGE', KEYS[1], found[i], found[i])\n"
"        local rec = ''\n"
"        if e[1] then rec = e[1][2][4] end\n"
"        out[#out + 1] = 'r'\n"
"        out[#out + 1] = found[i]\n"
"        out[#out + 1] = rec\n"
"      else\n"
"        seq = seq + 1\n"
"        local id = string.format('%d-%d', ms, seq)\n"
"        room(maxlen)\n"
"        redis.call('XADD', KEYS[1], id, 'e', epoch,\n"
"                   'r', ARGV[av + 2 * k], 'g', string.format('%d', gone))\n"
"        bump(ARGV[av + 2 * k], 1, ms)\n"
"        local v = ARGV[av + 2 * k - 1] .. ' ' .. id\n"
"        if ret > 0 then\n"
"          redis.call('SET', KEYS[2 + k], v, 'PX', ret)\n"
"        else\n"
"          redis.call('SET', KEYS[2 + k], v)\n"
"        end\n"
"        out[#out + 1] = 'n'\n"
"        out[#out + 1] = id\n"
"        out[#out + 1] = ''\n"
"      end\n"
"    end\n"
"  end\n"
"  x = x + m\n"
"end\n"
"redis.call('HSET', KEYS[2], 'seq', seq, 'ms', ms)\n"
"flush()\n"
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


/*
 * An append waits for the end of the turn, when one script takes every
 * append the turn queued.  NULL: Redis cannot be reached now (503 at
 * once, nothing stored).
 */

void *
ngx_http_events_cluster_append(void *data, ngx_http_events_event_t *events,
    ngx_uint_t n, ngx_pool_t *pool, ngx_http_events_remote_done_pt done,
    void *ctx)
{
    ngx_http_events_cluster_t  *cl = data;

    size_t                         size;
    ngx_uint_t                     i;
    ngx_http_events_cluster_op_t  *op;

    if (cl->fold.handler == NULL) {
        ngx_queue_init(&cl->folding);
        cl->fold.handler = ngx_http_events_cluster_fold;
        cl->fold.data = cl;
        cl->fold.log = cl->log;
    }

    if (ngx_http_events_redis_usable(&cl->rd) != NGX_OK) {
        (void) ngx_atomic_fetch_add(&cl->sh->unavailable, 1);
        return NULL;
    }

    op = ngx_pcalloc(pool, sizeof(ngx_http_events_cluster_op_t));
    if (op == NULL) {
        return NULL;
    }

    size = 0;

    for (i = 0; i < n; i++) {
        size += ngx_http_events_cluster_rec_len(&events[i])
                + cl->key_id.len + events[i].tenant.len + events[i].id.len
                + 2 * NGX_INT_T_LEN + 64;
    }

    op->cl = cl;
    op->events = events;
    op->n = n;
    op->size = size;
    op->pool = pool;
    op->done = done;
    op->ctx = ctx;

    if (cl->fold_ops
        && (cl->fold_events + n > NGX_HTTP_EVENTS_CLUSTER_FOLD_EVENTS
            || cl->fold_size + size > NGX_HTTP_EVENTS_CLUSTER_FOLD_SIZE))
    {
        /* the turn's script is full: it goes now, this one in the next */
        ngx_http_events_cluster_fold(&cl->fold);
    }

    ngx_queue_insert_tail(&cl->folding, &op->queue);
    cl->fold_ops++;
    cl->fold_events += n;
    cl->fold_size += size;

    if (!cl->fold_busy && !cl->fold.posted) {
        ngx_post_event(&cl->fold, &ngx_posted_events);
    }

    return op;
}


void
ngx_http_events_cluster_cancel(void *handle)
{
    ngx_http_events_cluster_op_t  *op = handle;

    ngx_http_events_cluster_t       *cl;
    ngx_http_events_cluster_fold_t  *f;

    op->done = NULL;
    f = op->fold;

    if (f == NULL) {
        /* not sent yet: it never will be */
        cl = op->cl;
        ngx_queue_remove(&op->queue);
        cl->fold_ops--;
        cl->fold_events -= op->n;
        cl->fold_size -= op->size;
        return;
    }

    /* the script may still run: its answer for this one is dropped */
    f->ops[op->index] = NULL;
    f->live--;
}


/* the end of a turn: what it queued goes in one script */

static void
ngx_http_events_cluster_fold(ngx_event_t *ev)
{
    ngx_http_events_cluster_t  *cl = ev->data;

    ngx_pool_t                      *pool;
    ngx_queue_t                      ops;
    ngx_http_events_cluster_fold_t  *f;

    if (ev->posted) {
        ngx_delete_posted_event(ev);
    }

    if (cl->fold_ops == 0) {
        return;
    }

    ngx_queue_init(&ops);
    ngx_queue_add(&ops, &cl->folding);
    ngx_queue_init(&cl->folding);

    pool = ngx_create_pool(ngx_max(cl->fold_size + 1024, NGX_MIN_POOL_SIZE),
                           cl->log);

    f = pool ? ngx_pcalloc(pool, sizeof(ngx_http_events_cluster_fold_t))
             : NULL;

    if (f) {
        f->cl = cl;
        f->pool = pool;
        f->started = ngx_current_msec;
        f->again.handler = ngx_http_events_cluster_again;
        f->again.data = f;
        f->again.log = cl->log;
    }

    if (f == NULL || ngx_http_events_cluster_fold_args(f, &ops) != NGX_OK) {
        /* no memory: the queued appends are not sent (nothing stored) */
        while (!ngx_queue_empty(&ops)) {
            ngx_http_events_cluster_op_t  *op;

            op = ngx_queue_data(ngx_queue_head(&ops),
                                ngx_http_events_cluster_op_t, queue);
            ngx_queue_remove(&op->queue);
            cl->fold_ops--;
            cl->fold_events -= op->n;
            cl->fold_size -= op->size;

            if (op->done) {
                op->done(op->ctx, NGX_BUSY, 0);
            }
        }

        if (pool) {
            ngx_destroy_pool(pool);
        }

        return;
    }

    (void) ngx_atomic_fetch_add(&cl->sh->scripts, 1);
    (void) ngx_atomic_fetch_add(&cl->sh->posts, f->nops);

    if (ngx_http_events_cluster_send(f) != NGX_OK) {
        (void) ngx_atomic_fetch_add(&cl->sh->unavailable, f->live);
        ngx_http_events_cluster_fail_all(f, NGX_BUSY);
        return;
    }

    if (!cl->fold_busy) {
        cl->fold_busy = 1;
        f->holds = 1;
    }
}


/* the script's arguments, copied into the fold's pool */

static ngx_int_t
ngx_http_events_cluster_fold_args(ngx_http_events_cluster_fold_t *f,
    ngx_queue_t *ops)
{
    u_char                        *p, *digest;
    size_t                        *argvlen;
    uint64_t                       candidate;
    ngx_uint_t                     i, j, n, nops, nargs;
    ngx_queue_t                   *q;
    const char                   **argv;
    ngx_http_events_event_t       *ev;
    ngx_http_events_cluster_t     *cl;
    ngx_http_events_cluster_op_t  *op;

    cl = f->cl;
    nops = cl->fold_ops;
    n = cl->fold_events;

    /* EVALSHA sha numkeys log meta ids.. epoch max ret n g sizes.. 2n */
    nargs = 5 + n + 5 + nops + 2 * n;

    f->ops = ngx_palloc(f->pool, nops * sizeof(void *));
    f->ns = ngx_palloc(f->pool, nops * sizeof(ngx_uint_t));
    argv = ngx_palloc(f->pool, nargs * sizeof(char *));
    argvlen = ngx_palloc(f->pool, nargs * sizeof(size_t));
    p = ngx_pnalloc(f->pool, 16 + (3 + nops) * NGX_INT_T_LEN + 32 * n);

    if (f->ops == NULL || f->ns == NULL || argv == NULL || argvlen == NULL
        || p == NULL)
    {
        return NGX_ERROR;
    }

    f->argv = argv;
    f->argvlen = argvlen;

    argv[0] = "EVALSHA";
    argvlen[0] = 7;
    argv[1] = (const char *) ngx_http_events_cluster_sha;
    argvlen[1] = SHA_DIGEST_LENGTH * 2;

    argv[2] = (const char *) p;
    argvlen[2] = ngx_sprintf(p, "%ui", 2 + n) - p;
    p += argvlen[2];

    argv[3] = (const char *) cl->key_log.data;
    argvlen[3] = cl->key_log.len;
    argv[4] = (const char *) cl->key_meta.data;
    argvlen[4] = cl->key_meta.len;

    f->argc = 5;

    /* an id's key: prefix, the tenant's length, tenant, id */

    for (q = ngx_queue_head(ops); q != ngx_queue_sentinel(ops);
         q = ngx_queue_next(q))
    {
        op = ngx_queue_data(q, ngx_http_events_cluster_op_t, queue);

        for (i = 0; i < op->n; i++) {
            ev = &op->events[i];

            argv[f->argc] = ngx_pnalloc(f->pool, cl->key_id.len
                                        + NGX_INT_T_LEN + 1 + ev->tenant.len
                                        + ev->id.len);
            if (argv[f->argc] == NULL) {
                return NGX_ERROR;
            }

            argvlen[f->argc] = ngx_sprintf((u_char *) argv[f->argc],
                                           "%V%uz:%V%V", &cl->key_id,
                                           ev->tenant.len, &ev->tenant,
                                           &ev->id)
                               - (u_char *) argv[f->argc];
            f->argc++;
        }
    }

    /*
     * A fresh epoch for a log that has none: never the one it had.  It
     * is drawn again only once a script may have taken it (its answer
     * said so, or none came): a draw from OpenSSL's DRBG costs more than
     * the rest of a script's arguments.
     */

    if (cl->candidate[0] == '\0') {
        do {
            if (RAND_bytes((u_char *) &candidate, sizeof(uint64_t)) != 1) {
                return NGX_ERROR;
            }
        } while (candidate == 0);

        (void) ngx_sprintf(cl->candidate, "%016uxL", candidate);
    }

    argv[f->argc] = (const char *) p;
    argvlen[f->argc++] = sizeof(cl->candidate);
    p = ngx_cpymem(p, cl->candidate, sizeof(cl->candidate));

    argv[f->argc] = (const char *) cl->max_len.data;
    argvlen[f->argc++] = cl->max_len.len;
    argv[f->argc] = (const char *) cl->retention.data;
    argvlen[f->argc++] = cl->retention.len;

    argv[f->argc] = (const char *) p;
    argvlen[f->argc] = ngx_sprintf(p, "%ui", n) - p;
    p += argvlen[f->argc++];

    argv[f->argc] = (const char *) p;
    argvlen[f->argc] = ngx_sprintf(p, "%ui", nops) - p;
    p += argvlen[f->argc++];

    for (q = ngx_queue_head(ops); q != ngx_queue_sentinel(ops);
         q = ngx_queue_next(q))
    {
        op = ngx_queue_data(q, ngx_http_events_cluster_op_t, queue);

        argv[f->argc] = (const char *) p;
        argvlen[f->argc] = ngx_sprintf(p, "%ui", op->n) - p;
        p += argvlen[f->argc++];
    }

    for (q = ngx_queue_head(ops); q != ngx_queue_sentinel(ops);
         q = ngx_queue_next(q))
    {
        op = ngx_queue_data(q, ngx_http_events_cluster_op_t, queue);

        for (i = 0; i < op->n; i++) {
            ev = &op->events[i];

            digest = p;
            p = ngx_hex_dump(p, ev->digest, 16);
            argv[f->argc] = (const char *) digest;
            argvlen[f->argc++] = 32;

            argv[f->argc] = ngx_pnalloc(f->pool,
                                        ngx_http_events_cluster_rec_len(ev));
            if (argv[f->argc] == NULL) {
                return NGX_ERROR;
            }

            argvlen[f->argc] = ngx_http_events_cluster_rec_write(
                                   (u_char *) argv[f->argc], ev)
                               - (u_char *) argv[f->argc];
            f->argc++;
        }
    }

    /* the ops move from the turn's queue into the fold */

    j = 0;

    while (!ngx_queue_empty(ops)) {
        q = ngx_queue_head(ops);
        ngx_queue_remove(q);
        op = ngx_queue_data(q, ngx_http_events_cluster_op_t, queue);

        op->fold = f;
        op->index = j;
        f->ops[j] = op;
        f->ns[j] = op->n;
        j++;
    }

    f->nops = nops;
    f->live = nops;

    cl->fold_ops = 0;
    cl->fold_events = 0;
    cl->fold_size = 0;

    return NGX_OK;
}


static ngx_int_t
ngx_http_events_cluster_send(ngx_http_events_cluster_fold_t *f)
{
    size_t                      argvlen[3];
    const char                 *argv[3];
    ngx_http_events_cluster_t  *cl;

    cl = f->cl;

    if (ngx_http_events_redis_send(&cl->rd, f->argc, f->argv, f->argvlen,
                                   ngx_http_events_cluster_appended, f)
        == NULL)
    {
        return NGX_ERROR;
    }

    f->replies++;

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
                                   ngx_http_events_cluster_waited, f)
        == NULL)
    {
        f->no_wait = 1;

    } else {
        f->replies++;
        f->wait_due = 1;
    }

    return NGX_OK;
}


static void
ngx_http_events_cluster_appended(void *data, redisReply *reply,
    ngx_http_events_redis_cmd_t *cmd)
{
    ngx_http_events_cluster_fold_t  *f = data;

    ngx_int_t                   rc;
    ngx_uint_t                  i;
    ngx_http_events_cluster_t  *cl;

    cl = f->cl;
    f->replies--;

    if (f->holds) {
        /* what came meanwhile goes now */
        f->holds = 0;
        cl->fold_busy = 0;

        if (cl->fold_ops && !cl->fold.posted) {
            ngx_post_event(&cl->fold, &ngx_posted_events);
        }
    }

    if (f->live == 0) {
        ngx_http_events_cluster_fold_free(f);
        return;
    }

    if (reply == NULL) {
        /* written and not answered: the script may have run */
        (void) ngx_atomic_fetch_add(&cl->sh->unavailable, f->live);
        ngx_http_events_cluster_fail_all(f, cmd->written ? NGX_AGAIN
                                                         : NGX_BUSY);
        return;
    }

    if (ngx_http_events_redis_is_error(reply, "NOSCRIPT") && !f->retried) {
        /* EVAL with the text runs it and loads it for the next EVALSHA */
        f->retried = 1;
        f->argv[0] = "EVAL";
        f->argvlen[0] = 4;
        f->argv[1] = (const char *) ngx_http_events_cluster_script.data;
        f->argvlen[1] = ngx_http_events_cluster_script.len;

        if (f->wait_due) {
            /* the WAIT sent behind the refused script answers first */
            f->wait_due = 0;
            f->stale_waits++;
        }

        f->no_wait = 0;

        if (ngx_http_events_cluster_send(f) == NGX_OK) {
            return;
        }

        (void) ngx_atomic_fetch_add(&cl->sh->unavailable, f->live);
        ngx_http_events_cluster_fail_all(f, NGX_BUSY);
        return;
    }

    if ((ngx_http_events_redis_is_error(reply, "TRYAGAIN")
         || ngx_http_events_redis_is_error(reply, "ASK "))
        && ngx_current_msec - f->started < cl->redis.timeout)
    {
        /*
         * A Redis Cluster moves the log's slot: the script did not run.
         * Its keys are split between the two nodes, or the ids' keys are
         * new (TRYAGAIN on both sides, ASK followed or not): it goes
         * again shortly, until the slot has moved (then MOVED takes the
         * connection there) or the timeout passed
         */
        if (f->wait_due) {
            f->wait_due = 0;
            f->stale_waits++;
        }

        ngx_add_timer(&f->again, 50);

        /* a graceful shutdown keeps the connection for it */
        ngx_http_events_redis_hold(&cl->rd);
        return;
    }

    rc = ngx_http_events_cluster_answer(f, reply);

    if (rc == NGX_ERROR) {
        (void) ngx_atomic_fetch_add(&cl->sh->errors, 1);
        (void) ngx_atomic_fetch_add(&cl->sh->unavailable, f->live);
        ngx_http_events_cluster_fail_all(f, NGX_BUSY);
        return;
    }

    f->answered = 1;

    /* conflicts are answered now; the stored wait for WAIT, if any */

    for (i = 0; i < f->nops; i++) {
        if (f->ops[i] == NULL) {
            continue;
        }

        if (f->ops[i]->rc == NGX_OK && cl->wait.len) {
            if (!f->wait_due) {
                /*
                 * WAIT could not go, or the script went on to another
                 * node (ASK) and WAIT, on this connection, answered for
                 * this node: no replica confirmed it
                 */
                (void) ngx_atomic_fetch_add(&cl->sh->unreplicated, 1);
                ngx_http_events_cluster_finish(f, i, NGX_ABORT, 0);
            }

            continue;
        }

        ngx_http_events_cluster_finish(f, i, f->ops[i]->rc,
                                       f->ops[i]->failed);
    }

    if (f->live == 0 || f->replies == 0) {
        ngx_http_events_cluster_fold_free(f);
    }
}


static void
ngx_http_events_cluster_again(ngx_event_t *ev)
{
    ngx_http_events_cluster_fold_t  *f = ev->data;

    ngx_http_events_cluster_t  *cl;

    cl = f->cl;

    if (f->live == 0) {
        ngx_http_events_cluster_fold_free(f);

    } else {
        f->no_wait = 0;

        if (ngx_http_events_cluster_send(f) != NGX_OK) {
            (void) ngx_atomic_fetch_add(&cl->sh->unavailable, f->live);
            ngx_http_events_cluster_fail_all(f, NGX_BUSY);
        }
    }

    /* once sent: a graceful shutdown closes when nothing more is due */
    ngx_http_events_redis_release(&cl->rd);
}


/* wait=N: how many replicas have the writes of this connection so far */

static void
ngx_http_events_cluster_waited(void *data, redisReply *reply,
    ngx_http_events_redis_cmd_t *cmd)
{
    ngx_http_events_cluster_fold_t  *f = data;

    ngx_int_t                   rc;
    ngx_uint_t                  i;
    ngx_http_events_cluster_t  *cl;

    cl = f->cl;
    f->replies--;

    if (f->stale_waits) {
        f->stale_waits--;
        ngx_http_events_cluster_fold_free(f);
        return;
    }

    f->wait_due = 0;

    if (!f->answered) {
        /* the script went on to another node (ASK): not its WAIT */
        ngx_http_events_cluster_fold_free(f);
        return;
    }

    if (f->live == 0) {
        ngx_http_events_cluster_fold_free(f);
        return;
    }

    if (reply == NULL) {
        ngx_http_events_cluster_fail_all(f, NGX_AGAIN);
        return;
    }

    rc = NGX_OK;

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

        rc = NGX_ABORT;
    }

    for (i = 0; i < f->nops; i++) {
        if (f->ops[i] == NULL) {
            continue;
        }

        if (rc == NGX_ABORT) {
            (void) ngx_atomic_fetch_add(&cl->sh->unreplicated, 1);
            ngx_http_events_cluster_finish(f, i, NGX_ABORT, 0);
            continue;
        }

        ngx_http_events_cluster_finish(f, i, f->ops[i]->rc,
                                       f->ops[i]->failed);
    }

    ngx_http_events_cluster_fold_free(f);
}


/* every append still waiting ends so; the fold goes when nothing is due */

static void
ngx_http_events_cluster_fail_all(ngx_http_events_cluster_fold_t *f,
    ngx_int_t rc)
{
    ngx_uint_t  i;

    /* the script may have run and made the candidate the log's epoch */
    f->cl->candidate[0] = '\0';

    for (i = 0; i < f->nops; i++) {
        if (f->ops[i]) {
            ngx_http_events_cluster_finish(f, i, rc, 0);
        }
    }

    ngx_http_events_cluster_fold_free(f);
}


/* the one way an append ends: once; its request may be gone after */

static void
ngx_http_events_cluster_finish(ngx_http_events_cluster_fold_t *f,
    ngx_uint_t i, ngx_int_t rc, ngx_uint_t failed)
{
    void                            *ctx;
    ngx_http_events_remote_done_pt   done;

    done = f->ops[i]->done;
    ctx = f->ops[i]->ctx;

    f->ops[i]->done = NULL;
    f->ops[i] = NULL;
    f->live--;

    if (done) {
        done(ctx, rc, failed);
    }
}


/* freed once no append waits and no reply is due to it */

static void
ngx_http_events_cluster_fold_free(ngx_http_events_cluster_fold_t *f)
{
    if (f->live || f->replies || f->again.timer_set) {
        return;
    }

    ngx_destroy_pool(f->pool);
}


static ngx_int_t
ngx_http_events_cluster_answer(ngx_http_events_cluster_fold_t *f,
    redisReply *reply)
{
    ngx_uint_t                  i, pos;
    ngx_http_events_cluster_t  *cl;

    cl = f->cl;

    if (reply->type == REDIS_REPLY_ERROR) {
        ngx_log_error(NGX_LOG_ERR, cl->log, 0,
                      "events_cluster: redis %V refused the append: %*s",
                      &cl->redis.url, (size_t) ngx_min(reply->len, 200),
                      reply->str);
        return NGX_ERROR;
    }

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 1) {
        goto invalid;
    }

    if (reply->element[0]->type != REDIS_REPLY_STRING
        || (reply->element[0]->len == sizeof(cl->candidate)
            && ngx_strncmp(reply->element[0]->str, cl->candidate,
                           sizeof(cl->candidate)) == 0))
    {
        /* the log took it: the next new epoch must be another */
        cl->candidate[0] = '\0';
    }

    pos = 1;

    for (i = 0; i < f->nops; i++) {
        if (ngx_http_events_cluster_answer_one(f->ops[i], reply->element,
                                               reply->elements, &pos,
                                               f->ns[i])
            != NGX_OK)
        {
            goto invalid;
        }
    }

    if (pos != reply->elements) {
        goto invalid;
    }

    return NGX_OK;

invalid:

    ngx_log_error(NGX_LOG_ERR, cl->log, 0,
                  "events_cluster: redis %V gave the append an answer of "
                  "an unexpected shape", &cl->redis.url);

    return NGX_ERROR;
}


/* one POST's part of the answer; op NULL: cancelled, passed over */

static ngx_int_t
ngx_http_events_cluster_answer_one(ngx_http_events_cluster_op_t *op,
    redisReply **el, ngx_uint_t nel, ngx_uint_t *pos, ngx_uint_t n)
{
    uint64_t                    ms, seq;
    ngx_uint_t                  i, k;
    ngx_http_events_event_t    *ev;
    ngx_http_events_cluster_t  *cl;

    k = *pos;

    if (k >= nel || el[k]->type != REDIS_REPLY_STRING) {
        return NGX_ERROR;
    }

    if (el[k]->len == 8 && ngx_strncmp(el[k]->str, "conflict", 8) == 0) {
        if (k + 1 >= nel || el[k + 1]->type != REDIS_REPLY_INTEGER
            || el[k + 1]->integer < 0 || (ngx_uint_t) el[k + 1]->integer >= n)
        {
            return NGX_ERROR;
        }

        *pos = k + 2;

        if (op) {
            op->rc = NGX_DECLINED;
            op->failed = (ngx_uint_t) el[k + 1]->integer;
            (void) ngx_atomic_fetch_add(&op->cl->sh->conflicts, 1);
        }

        return NGX_OK;
    }

    if (el[k]->len != 2 || ngx_strncmp(el[k]->str, "ok", 2) != 0
        || k + 1 + 3 * n > nel)
    {
        return NGX_ERROR;
    }

    k++;
    *pos = k + 3 * n;

    if (op == NULL) {
        return NGX_OK;
    }

    cl = op->cl;

    for (i = 0; i < n; i++, k += 3) {
        ev = &op->events[i];

        if (el[k]->type != REDIS_REPLY_STRING || el[k]->len != 1
            || el[k + 1]->type != REDIS_REPLY_STRING
            || el[k + 2]->type != REDIS_REPLY_STRING
            || ngx_http_events_cluster_id((u_char *) el[k + 1]->str,
                                          el[k + 1]->len, &ms, &seq)
               != NGX_OK)
        {
            return NGX_ERROR;
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

    op->rc = NGX_OK;

    return NGX_OK;
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
