
/*
 * Copyright (C) ngx_http_events_module authors
 */


/*
 * History on disk: an LMDB index beside the journal's segments, so that
 * every read answers for everything the journal retains, not only for
 * what the ring still holds.
 *
 * The index does not hold events: the segments do, once.  It maps
 *
 *   seq       seq                      -> segment, offset, length, time
 *   tenant    tenant                   -> seqs          (dupsort, fixed)
 *   type      tenant, type             -> seqs          (dupsort, fixed)
 *   entity    tenant, rtype \0 rid     -> seqs          (dupsort, fixed)
 *   id        tenant, id               -> seq, digest, client id
 *   time      ms                       -> first seq at that ms
 *   catalog   tenant, type             -> type number, count, last time
 *   tenants   't' tenant               -> tenant number
 *   meta      name                     -> value
 *
 * with seqs big-endian, so that LMDB's byte order is seq order and a
 * dupsort key's values are one packed array of 8-byte seqs.  A read
 * walks one of these in seq order (several for type patterns, merged),
 * reads each candidate's record from its segment with pread() and
 * checks it against every filter: the index picks, the record decides.
 *
 * Writer: an indexer that reads the segments from where it left off up
 * to the published head (in a thread of the pool, so that a stalled
 * disk does not stall the worker), one LMDB write transaction per batch
 * in the worker (worker 0 every few milliseconds, and a reader that
 * needs what it has not reached yet, first: a read handed to a thread
 * waits for it without blocking the loop), committed without fsync
 * (MDB_NOSYNC): the index is derived from the segments, and the
 * master checks it against them at every start, completing it, or
 * rebuilding it when it is missing, damaged, or does not match.  The
 * POST's critical section does not touch it.  Readers take no lock: a
 * read transaction begun after the indexer caught up with the head sees
 * every event up to it.
 *
 * Retention: worker 0's sweep moves "gone" (events older than max_age,
 * or in segments over max_size), removes their index entries a bounded
 * number at a time, and only then lets the journal delete the files.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include <sys/mman.h>
#include <sys/uio.h>

#include "ngx_http_events_store.h"
#include "ngx_http_events_journal.h"
#include "ngx_http_events_match.h"
#include "ngx_http_events_history.h"


#define NGX_HTTP_EVENTS_HISTORY_VERSION  1

#ifndef MDB_PROBLEM
#define MDB_PROBLEM  EIO                /* LMDB before 0.9.25 */
#endif
#define NGX_HTTP_EVENTS_HISTORY_MAP      ((size_t) 32 << 30)
#define NGX_HTTP_EVENTS_HISTORY_BATCH    20000
#define NGX_HTTP_EVENTS_HISTORY_CLEAN    500
#define NGX_HTTP_EVENTS_HISTORY_MERGE    32
#define NGX_HTTP_EVENTS_HISTORY_SCAN     2000
#define NGX_HTTP_EVENTS_HISTORY_TICK     10
#define NGX_HTTP_EVENTS_HISTORY_READERS  32
#define NGX_HTTP_EVENTS_HISTORY_AHEAD    65536
#define NGX_HTTP_EVENTS_HISTORY_GATHER   1024
#define NGX_HTTP_EVENTS_HISTORY_DATA     (1024 * 1024)
#define NGX_HTTP_EVENTS_HISTORY_HOLD     10000

#if (NGX_LINUX && defined RWF_NOWAIT)
#define NGX_HTTP_EVENTS_HISTORY_NOWAIT  1
#else
#define NGX_HTTP_EVENTS_HISTORY_NOWAIT  0
#endif

#define NGX_HTTP_EVENTS_HISTORY_KEY      (4 + NGX_HTTP_EVENTS_MAX_RTYPE + 1 \
                                          + NGX_HTTP_EVENTS_MAX_RID)


typedef struct {
    uint64_t                    seq;
    u_char                      digest[16];
    u_char                      client_id;
    u_char                      pad[7];
} ngx_http_events_history_idv_t;


typedef struct {
    uint32_t                    type;
    uint32_t                    pad;
    uint64_t                    count;
    uint64_t                    last_ms;
} ngx_http_events_history_cat_t;


/* one walk in seq order over a dupsort key, or over the seq table */
typedef struct {
    MDB_cursor                 *cur;
    u_char                      key[NGX_HTTP_EVENTS_HISTORY_KEY];
    MDB_val                     k;
    uint64_t                    seq;
    unsigned                    dup:1;
    unsigned                    done:1;
} ngx_http_events_history_it_t;


typedef struct {
    ngx_http_events_history_it_t  it[NGX_HTTP_EVENTS_HISTORY_MERGE];
    ngx_uint_t                  n;
    uint64_t                    lo;             /* exclusive */
    uint64_t                    hi;             /* inclusive */
    uint32_t                    tenant;
    unsigned                    desc:1;
    unsigned                    empty:1;
} ngx_http_events_history_plan_t;


/* a record the indexer read back, for the worker to index */
typedef struct {
    ngx_http_events_history_rec_t  rec;
    ngx_http_events_history_loc_t  loc;
} ngx_http_events_history_ent_t;


/*
 * One batch of the indexer: the records from where the index left off
 * up to "head", read from the segments (in a thread of the pool, or in
 * the worker), then indexed in one write transaction in the worker.  It
 * has a reader of its own (descriptors, a buffer): a thread never
 * touches the worker's.  The records are copied to "data", so that the
 * reader's buffer may move on.
 */
struct ngx_http_events_history_ix_s {
    ngx_http_events_history_t     *history;
    ngx_http_events_history_rd_t   rd;
    uint64_t                       from;        /* indexed when it began */
    uint64_t                       head;        /* read up to this seq */
    uint64_t                       seg0;        /* where it began */
    uint64_t                       off0;
    uint64_t                       seg;         /* and where it ended */
    uint64_t                       off;
    ngx_http_events_history_ent_t *ents;
    ngx_uint_t                     n;
    u_char                        *data;
    size_t                         size;
    size_t                         used;
    ngx_int_t                      rc;          /* of the reading */
#if (NGX_THREADS)
    ngx_thread_task_t              task;
    ngx_event_t                    hold;
#endif
    unsigned                       busy:1;      /* in a thread now */
};


static ngx_int_t ngx_http_events_history_open(ngx_http_events_history_t *h,
    ngx_log_t *log);
static void ngx_http_events_history_close(ngx_http_events_history_t *h);
static void ngx_http_events_history_remove(ngx_http_events_history_t *h,
    ngx_log_t *log);
static ngx_int_t ngx_http_events_history_check(ngx_http_events_history_t *h,
    uint64_t first_segment, uint64_t last_seq, ngx_log_t *log,
    const char **why);
static ngx_int_t ngx_http_events_history_walk(ngx_http_events_history_t *h,
    ngx_array_t *segs, ngx_uint_t verify, ngx_log_t *log,
    const char **why);
static ngx_int_t ngx_http_events_history_walk_segment(
    ngx_http_events_history_t *h, uint64_t first, ngx_uint_t verify,
    ngx_log_t *log, const char **why);
static ngx_int_t ngx_http_events_history_decode(u_char *p, size_t len,
    ngx_http_events_history_rec_t *r);
static ngx_int_t ngx_http_events_history_read(ngx_http_events_history_t *h,
    ngx_http_events_history_rd_t *rd, ngx_http_events_history_loc_t *loc,
    uint64_t seq, ngx_http_events_history_rec_t *r);
static ngx_fd_t ngx_http_events_history_fd(ngx_http_events_history_t *h,
    ngx_http_events_history_rd_t *rd, uint64_t segment);
static void ngx_http_events_history_rd_init(ngx_http_events_history_rd_t *rd);
static void ngx_http_events_history_rd_close(ngx_http_events_history_rd_t *rd);
static ngx_int_t ngx_http_events_history_loc(ngx_http_events_history_t *h,
    MDB_txn *txn, uint64_t seq, ngx_http_events_history_loc_t *loc);
static ngx_int_t ngx_http_events_history_tenant(ngx_http_events_history_t *h,
    MDB_txn *txn, ngx_str_t *tenant, ngx_uint_t create, uint32_t *tid);
static ngx_int_t ngx_http_events_history_counter(
    ngx_http_events_history_t *h, MDB_txn *txn, const char *name,
    uint64_t *value);
static ngx_int_t ngx_http_events_history_put_meta(
    ngx_http_events_history_t *h, MDB_txn *txn, const char *name,
    uint64_t value);
static uint64_t ngx_http_events_history_get_meta(
    ngx_http_events_history_t *h, MDB_txn *txn, const char *name);
static ngx_int_t ngx_http_events_history_add(ngx_http_events_history_t *h,
    MDB_txn *txn, ngx_http_events_event_t *ev);
static ngx_http_events_history_ix_t *ngx_http_events_history_ix_create(
    ngx_http_events_history_t *h);
static void ngx_http_events_history_ix_free(ngx_http_events_history_ix_t *ix);
static ngx_int_t ngx_http_events_history_begin(
    ngx_http_events_history_ix_t *ix);
static void ngx_http_events_history_gather(ngx_http_events_history_ix_t *ix);
static void ngx_http_events_history_rebase(ngx_http_events_history_rec_t *r,
    u_char *from, u_char *to);
static ngx_int_t ngx_http_events_history_commit(
    ngx_http_events_history_ix_t *ix);
static ngx_int_t ngx_http_events_history_failed(ngx_http_events_history_t *h,
    int rc, uint64_t seg, uint64_t off);
static ngx_int_t ngx_http_events_history_next_record(
    ngx_http_events_history_t *h, ngx_http_events_history_rd_t *rd,
    uint64_t *seg, uint64_t *off,
    ngx_http_events_history_rec_t *r, ngx_http_events_history_loc_t *loc);
static void ngx_http_events_history_tick(ngx_event_t *ev);
static ngx_int_t ngx_http_events_history_fill(ngx_http_events_history_t *h,
    ngx_http_events_query_t *q, uint64_t after, uint64_t head);
static uint64_t ngx_http_events_history_qkey(ngx_http_events_query_t *q);
static ngx_int_t ngx_http_events_history_rtxn(ngx_http_events_history_t *h,
    ngx_http_events_history_rd_t *rd);
static void ngx_http_events_history_rdone(ngx_http_events_history_rd_t *rd);
static ngx_int_t ngx_http_events_history_plan(ngx_http_events_history_t *h,
    ngx_http_events_history_rd_t *rd, ngx_http_events_query_t *q,
    uint64_t lo, uint64_t hi, ngx_http_events_history_plan_t *pl);
static ngx_int_t ngx_http_events_history_it_start(
    ngx_http_events_history_it_t *it, uint64_t lo, uint64_t hi,
    ngx_uint_t desc);
static void ngx_http_events_history_it_step(
    ngx_http_events_history_it_t *it, ngx_uint_t desc);
static uint64_t ngx_http_events_history_plan_next(
    ngx_http_events_history_plan_t *pl);
static void ngx_http_events_history_plan_close(
    ngx_http_events_history_plan_t *pl);
static ngx_uint_t ngx_http_events_history_match(ngx_http_events_query_t *q,
    ngx_http_events_history_rec_t *r);
static ngx_int_t ngx_http_events_history_candidate(
    ngx_http_events_history_t *h, ngx_http_events_history_rd_t *rd,
    ngx_http_events_query_t *q, ngx_http_events_history_plan_t *pl,
    uint64_t seq, ngx_http_events_history_rec_t *r);
static ngx_int_t ngx_http_events_history_at(ngx_http_events_history_t *h,
    MDB_txn *txn, uint64_t ms, uint64_t *seq);
static ngx_int_t ngx_http_events_history_types_indexed(
    ngx_http_events_history_t *h, ngx_str_t *tenant, ngx_pool_t *pool,
    ngx_array_t *types);
static ngx_int_t ngx_http_events_history_catalog(MDB_cursor *cur,
    u_char *tenant, ngx_uint_t first, ngx_str_t *name,
    ngx_http_events_history_cat_t *cat);
static uint64_t ngx_http_events_history_pending(MDB_cursor *cur,
    uint32_t tenant, uint32_t type, uint64_t gone);
static ngx_int_t ngx_http_events_history_clean(ngx_http_events_history_t *h,
    ngx_http_events_history_sh_t *hsh, uint64_t gone);
static ngx_int_t ngx_http_events_history_unindex(
    ngx_http_events_history_t *h, MDB_txn *txn, uint64_t seq,
    ngx_http_events_history_loc_t *loc);
#if (NGX_THREADS)
static ngx_int_t ngx_http_events_history_cached(
    ngx_http_events_history_job_t *job);
static void ngx_http_events_history_thread(void *data, ngx_log_t *log);
static void ngx_http_events_history_thread_done(ngx_event_t *ev);
static ngx_int_t ngx_http_events_history_start(
    ngx_http_events_history_job_t *job);
static void ngx_http_events_history_kick(ngx_http_events_history_t *h);
static void ngx_http_events_history_ix_thread(void *data, ngx_log_t *log);
static void ngx_http_events_history_ix_done(ngx_event_t *ev);
static void ngx_http_events_history_ix_hold(ngx_event_t *ev);
static void ngx_http_events_history_wake(ngx_http_events_history_t *h,
    ngx_uint_t all);
static void ngx_http_events_history_resume(
    ngx_http_events_history_job_t *job);
#endif
static ngx_inline void ngx_http_events_history_be64(u_char *p, uint64_t v);
static ngx_inline uint64_t ngx_http_events_history_get64(u_char *p);
static ngx_inline void ngx_http_events_history_be32(u_char *p, uint32_t v);


/* events_journal ... max_age=TIME index_size=SIZE */

ngx_int_t
ngx_http_events_history_conf(ngx_conf_t *cf, ngx_http_events_journal_t *j,
    ngx_str_t *value)
{
    off_t                       size;
    ngx_str_t                   s;
    ngx_msec_t                  age;
    ngx_http_events_history_t  *h;

    h = j->history;

    if (ngx_strncmp(value->data, "max_age=", 8) == 0) {
        s.data = value->data + 8;
        s.len = value->len - 8;

        age = ngx_parse_time(&s, 0);
        if (age == (ngx_msec_t) NGX_ERROR || age == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid max_age \"%V\"", value);
            return NGX_ERROR;
        }

        h->max_age = age;
        return NGX_OK;
    }

    if (ngx_strncmp(value->data, "index_size=", 11) == 0) {
        s.data = value->data + 11;
        s.len = value->len - 11;

        size = ngx_parse_offset(&s);
        if (size == NGX_ERROR || size < 1024 * 1024) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid index_size \"%V\": at least 1m",
                               value);
            return NGX_ERROR;
        }

        h->map_size = (size_t) size;
        return NGX_OK;
    }

    if (ngx_strncmp(value->data, "thread_pool=", 12) == 0) {
        s.data = value->data + 12;
        s.len = value->len - 12;

        if (s.len == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid thread_pool \"%V\"", value);
            return NGX_ERROR;
        }

        if (s.len == 3 && ngx_strncmp(s.data, "off", 3) == 0) {
            h->no_threads = 1;
            return NGX_OK;
        }

#if !(NGX_THREADS)
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\": this nginx is built without threads",
                           value);
        return NGX_ERROR;
#else
        h->pool_name = s;
        return NGX_OK;
#endif
    }

    return NGX_DECLINED;
}


/*
 * Reads that touch the disk go to a thread pool, as "aio threads" reads
 * do: the one named by thread_pool=, or nginx's default one.  Without
 * threads they run in the worker, bounded per request.
 */

ngx_int_t
ngx_http_events_history_conf_threads(ngx_conf_t *cf,
    ngx_http_events_history_t *h)
{
#if (NGX_THREADS)
    if (!h->no_threads
        && ngx_thread_pool_add(cf, h->pool_name.len ? &h->pool_name : NULL)
           == NULL)
    {
        return NGX_ERROR;
    }
#endif

    return NGX_OK;
}


static ngx_int_t
ngx_http_events_history_open(ngx_http_events_history_t *h, ngx_log_t *log)
{
    int       rc;
    MDB_txn  *txn;

    if (h->map_size == 0) {
        h->map_size = NGX_HTTP_EVENTS_HISTORY_MAP;
    }

    rc = mdb_env_create(&h->env);
    if (rc != 0) {
        goto failed;
    }

    (void) mdb_env_set_mapsize(h->env, h->map_size);
    (void) mdb_env_set_maxdbs(h->env, 16);
    /* every worker keeps up to 33 readers (its own, its threads') */
    (void) mdb_env_set_maxreaders(h->env, 4096);

    rc = mdb_env_open(h->env, (char *) h->file.data,
                      MDB_NOSUBDIR|MDB_NOSYNC|MDB_NOTLS|MDB_NORDAHEAD, 0600);
    if (rc != 0) {
        goto failed;
    }

    rc = mdb_txn_begin(h->env, NULL, 0, &txn);
    if (rc != 0) {
        goto failed;
    }

    if ((rc = mdb_dbi_open(txn, "seq", MDB_CREATE, &h->seq)) != 0
        || (rc = mdb_dbi_open(txn, "tenant",
                              MDB_CREATE|MDB_DUPSORT|MDB_DUPFIXED,
                              &h->tenant)) != 0
        || (rc = mdb_dbi_open(txn, "type",
                              MDB_CREATE|MDB_DUPSORT|MDB_DUPFIXED,
                              &h->type)) != 0
        || (rc = mdb_dbi_open(txn, "entity",
                              MDB_CREATE|MDB_DUPSORT|MDB_DUPFIXED,
                              &h->entity)) != 0
        || (rc = mdb_dbi_open(txn, "id", MDB_CREATE, &h->id)) != 0
        || (rc = mdb_dbi_open(txn, "time", MDB_CREATE, &h->time)) != 0
        || (rc = mdb_dbi_open(txn, "catalog", MDB_CREATE, &h->catalog)) != 0
        || (rc = mdb_dbi_open(txn, "tenants", MDB_CREATE, &h->tenants)) != 0
        || (rc = mdb_dbi_open(txn, "meta", MDB_CREATE, &h->meta)) != 0)
    {
        mdb_txn_abort(txn);
        goto failed;
    }

    rc = mdb_txn_commit(txn);
    if (rc != 0) {
        goto failed;
    }

    return NGX_OK;

failed:

    ngx_log_error(NGX_LOG_ERR, log, 0,
                  "events zone \"%V\": history index \"%V\" cannot be "
                  "opened: %s", &h->journal->zone, &h->file,
                  mdb_strerror(rc));

    if (h->env) {
        mdb_env_close(h->env);
        h->env = NULL;
    }

    return NGX_ERROR;
}


static void
ngx_http_events_history_close(ngx_http_events_history_t *h)
{
    ngx_http_events_history_rd_t  *rd;

    ngx_http_events_history_rd_close(&h->rd);

    for (rd = h->free; rd; rd = rd->next) {
        ngx_http_events_history_rd_close(rd);
    }

    if (h->env) {
        mdb_env_close(h->env);
        h->env = NULL;
    }
}


static void
ngx_http_events_history_rd_init(ngx_http_events_history_rd_t *rd)
{
    ngx_uint_t  i;

    rd->txn = NULL;
    rd->cseg = 0;
    rd->clen = 0;
    rd->cend = 0;
    rd->clast = 0;

    for (i = 0; i < NGX_HTTP_EVENTS_HISTORY_FDS; i++) {
        rd->fds[i].fd = NGX_INVALID_FILE;
        rd->fds[i].used = 0;
    }
}


/* its transaction and descriptors; the buffer stays for the next use */

static void
ngx_http_events_history_rd_close(ngx_http_events_history_rd_t *rd)
{
    ngx_uint_t  i;

    if (rd->txn) {
        mdb_txn_abort(rd->txn);
        rd->txn = NULL;
    }

    for (i = 0; i < NGX_HTTP_EVENTS_HISTORY_FDS; i++) {
        if (rd->fds[i].fd != NGX_INVALID_FILE && rd->fds[i].used) {
            (void) ngx_close_file(rd->fds[i].fd);
        }

        rd->fds[i].fd = NGX_INVALID_FILE;
        rd->fds[i].used = 0;
    }
}


static void
ngx_http_events_history_remove(ngx_http_events_history_t *h, ngx_log_t *log)
{
    u_char  name[NGX_MAX_PATH];

    ngx_http_events_history_close(h);

    if (ngx_delete_file(h->file.data) == NGX_FILE_ERROR
        && ngx_errno != NGX_ENOENT)
    {
        ngx_log_error(NGX_LOG_ERR, log, ngx_errno,
                      ngx_delete_file_n " \"%V\" failed", &h->file);
    }

    ngx_sprintf(name, "%V-lock%Z", &h->file);
    (void) ngx_delete_file(name);
}


/*
 * The master, after the journal's replay: the index must answer for
 * exactly the segments.  Missing, unreadable, from another journal or
 * not matching the records: rebuilt, and said so.  Behind the journal
 * (a crash before the kernel wrote it back): the rest is added.
 */

ngx_int_t
ngx_http_events_history_replay_done(ngx_http_events_history_t *h,
    uint64_t last_seq, ngx_log_t *log)
{
    u_char                         *p, name[NGX_MAX_PATH];
    uint64_t                        first_segment;
    ngx_int_t                       rc;
    ngx_uint_t                      level;
    ngx_msec_t                      start;
    ngx_pool_t                     *pool;
    ngx_array_t                     segs;
    ngx_time_t                     *tp;
    const char                     *why;
    ngx_file_info_t                 fi;
    ngx_core_conf_t                *ccf;
    ngx_http_events_history_sh_t   *hsh;

    hsh = ngx_http_events_journal_history(h->journal);

    if (!h->added) {
        /* a start: the journal holds every event the zone does */
        hsh->base = 0;
    }

    ngx_http_events_history_rd_init(&h->rd);

    ngx_time_update();
    tp = ngx_timeofday();
    start = (ngx_msec_t) (tp->sec * 1000 + tp->msec);

    pool = ngx_create_pool(4096, log);
    if (pool == NULL) {
        return NGX_ERROR;
    }

    if (ngx_http_events_journal_segments(h->journal, pool, &segs, log)
        != NGX_OK)
    {
        ngx_destroy_pool(pool);
        return NGX_ERROR;
    }

    first_segment = segs.nelts ? ((uint64_t *) segs.elts)[0] : 0;

    why = NULL;
    h->rebuild = 0;

    if (ngx_file_info(h->file.data, &fi) == NGX_FILE_ERROR) {
        why = h->added ? "the journal was added by a reload"
                       : "it is missing";
        h->rebuild = 1;
    }

    if (ngx_http_events_history_open(h, log) != NGX_OK) {
        why = "it cannot be opened";
        h->rebuild = 1;
        ngx_http_events_history_remove(h, log);

        if (ngx_http_events_history_open(h, log) != NGX_OK) {
            ngx_destroy_pool(pool);
            ngx_log_error(NGX_LOG_ERR, log, 0,
                          "events zone \"%V\": reads beyond the ring are "
                          "off", &h->journal->zone);
            hsh->ready = 0;
            return NGX_OK;
        }
    }

    if (!h->rebuild
        && ngx_http_events_history_check(h, first_segment, last_seq, log,
                                         &why)
           != NGX_OK)
    {
        h->rebuild = 1;
    }

    rc = NGX_OK;

    for ( ;; ) {
        if (h->rebuild) {
            ngx_log_error(NGX_LOG_WARN, log, 0,
                          "events zone \"%V\": history index \"%V\" is "
                          "rebuilt from the journal's segments: %s",
                          &h->journal->zone, &h->file, why);

            ngx_http_events_history_remove(h, log);

            if (ngx_http_events_history_open(h, log) != NGX_OK) {
                rc = NGX_ERROR;
                break;
            }

            h->indexed = 0;
            hsh->gone = 0;
            hsh->cleaned = 0;
            hsh->rebuilds++;
        }

        why = NULL;
        rc = ngx_http_events_history_walk(h, &segs, !h->rebuild, log, &why);

        if (rc == NGX_DECLINED && !h->rebuild) {
            /* the index does not match the records: from scratch */
            h->rebuild = 1;
            continue;
        }

        break;
    }

    ngx_destroy_pool(pool);

    if (rc != NGX_OK) {
        /* the journal and the ring still work: only history is off */
        ngx_http_events_history_close(h);
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "events zone \"%V\": history index \"%V\" cannot be "
                      "built%s%s; reads beyond the ring are off",
                      &h->journal->zone, &h->file,
                      why ? ": " : "", why ? why : "");
        hsh->ready = 0;
        return NGX_OK;
    }

    ngx_http_events_history_close(h);

    ccf = (ngx_core_conf_t *) ngx_get_conf(h->journal->cycle->conf_ctx,
                                           ngx_core_module);

    if (ccf && geteuid() == 0
        && ccf->user != (ngx_uid_t) NGX_CONF_UNSET_UINT)
    {
        /* the workers open it as their user */
        p = ngx_sprintf(name, "%V-lock%Z", &h->file);

        if (chown((char *) h->file.data, ccf->user, ccf->group) == -1
            || chown((char *) name, ccf->user, ccf->group) == -1)
        {
            ngx_log_error(NGX_LOG_EMERG, log, ngx_errno,
                          "events zone \"%V\": chown(\"%V\") failed",
                          &h->journal->zone, &h->file);
            return NGX_ERROR;
        }

        (void) p;
    }

    ngx_time_update();
    tp = ngx_timeofday();

    hsh->ready = 1;
    hsh->indexed = h->indexed;
    hsh->first_segment = first_segment;

    if (first_segment && first_segment - 1 > hsh->gone) {
        hsh->gone = first_segment - 1;
    }

    if (h->rebuild) {
        /* what is not in the segments was never indexed */
        hsh->cleaned = hsh->gone;
    }

    hsh->rebuild_ms = (uint64_t) (tp->sec * 1000 + tp->msec) - start;

    level = h->rebuild ? NGX_LOG_WARN : NGX_LOG_NOTICE;

    ngx_log_error(level, log, 0,
                  "events zone \"%V\": history index \"%V\": %uL events "
                  "checked, %uL added%s in %uL ms",
                  &h->journal->zone, &h->file, h->verified, h->batch,
                  h->rebuild ? " (rebuilt)" : "", hsh->rebuild_ms);

    return NGX_OK;
}


/*
 * The master, at a reload that adds a journal to a running zone: its
 * index is built at once (it is empty: the journal starts a segment of
 * its own), so that reads go to disk without a restart.  The events
 * before it are the ring's only: "base" becomes the newest of them when
 * the first segment is written, and reads take what the ring has lost
 * of them as removed.  A directory that already holds segments (of an
 * earlier life of this journal) is indexed at the next start.
 */

ngx_int_t
ngx_http_events_history_added(ngx_http_events_history_t *h, uint64_t head,
    ngx_log_t *log)
{
    ngx_int_t                      rc;
    ngx_pool_t                    *pool;
    ngx_array_t                    segs;
    ngx_http_events_history_sh_t  *hsh;

    hsh = ngx_http_events_journal_history(h->journal);

    pool = ngx_create_pool(4096, log);
    if (pool == NULL) {
        return NGX_ERROR;
    }

    rc = ngx_http_events_journal_segments(h->journal, pool, &segs, log);
    ngx_destroy_pool(pool);

    if (rc != NGX_OK) {
        return NGX_ERROR;
    }

    if (segs.nelts) {
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "events zone \"%V\": the journal added by a reload "
                      "finds segments of an earlier one in \"%V\"; reads "
                      "beyond the ring wait for the next start",
                      &h->journal->zone, &h->journal->path);
        return NGX_OK;
    }

    /* a stale index of an earlier life: its journal is gone */
    ngx_http_events_history_remove(h, log);

    hsh->base = NGX_HTTP_EVENTS_HISTORY_PENDING;
    h->added = 1;

    rc = ngx_http_events_history_replay_done(h, head, log);

    h->added = 0;

    /* nothing before this head will be indexed: readers need not wait */
    if (hsh->ready && hsh->indexed < head) {
        hsh->indexed = head;
    }

    return rc;
}


/*
 * The newest seq reads take as removed: what retention removed, and of
 * the events from before a journal added by a reload, those the ring no
 * longer has.
 */

uint64_t
ngx_http_events_history_gone(ngx_http_events_history_t *h,
    uint64_t ring_evicted)
{
    uint64_t                       base, gone;
    ngx_http_events_history_sh_t  *hsh;

    hsh = ngx_http_events_journal_history(h->journal);

    gone = hsh->gone;
    base = hsh->base;

    return ngx_max(gone, ngx_min(base, ring_evicted));
}


/* what the index says of itself must agree with the journal */

static ngx_int_t
ngx_http_events_history_check(ngx_http_events_history_t *h,
    uint64_t first_segment, uint64_t last_seq, ngx_log_t *log,
    const char **why)
{
    int                             rc;
    MDB_txn                        *txn;
    MDB_val                         k, v;
    uint64_t                        version, epoch, first;
    MDB_cursor                     *cur;
    ngx_http_events_history_sh_t   *hsh;

    hsh = ngx_http_events_journal_history(h->journal);

    rc = mdb_txn_begin(h->env, NULL, MDB_RDONLY, &txn);
    if (rc != 0) {
        *why = mdb_strerror(rc);
        return NGX_ERROR;
    }

    version = ngx_http_events_history_get_meta(h, txn, "version");
    epoch = ngx_http_events_history_get_meta(h, txn, "epoch");
    h->indexed = ngx_http_events_history_get_meta(h, txn, "indexed");
    hsh->gone = ngx_http_events_history_get_meta(h, txn, "gone");
    hsh->cleaned = ngx_http_events_history_get_meta(h, txn, "cleaned");

    if (version != NGX_HTTP_EVENTS_HISTORY_VERSION) {
        *why = "it has another layout version";
        goto bad;
    }

    if (epoch != h->journal->store->epoch) {
        *why = "it belongs to another epoch";
        goto bad;
    }

    if (h->indexed > last_seq) {
        *why = "it holds events the journal does not";
        goto bad;
    }

    rc = mdb_cursor_open(txn, h->seq, &cur);
    if (rc != 0) {
        *why = mdb_strerror(rc);
        goto bad;
    }

    rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);

    if (rc == 0 && k.mv_size == 8) {
        first = ngx_http_events_history_get64(k.mv_data);

        if (first_segment == 0 || first < first_segment) {
            *why = "it holds events of segments that were removed";
            mdb_cursor_close(cur);
            goto bad;
        }

    } else if (rc != MDB_NOTFOUND) {
        *why = rc ? mdb_strerror(rc) : "a malformed key";
        mdb_cursor_close(cur);
        goto bad;
    }

    mdb_cursor_close(cur);
    mdb_txn_abort(txn);

    return NGX_OK;

bad:

    mdb_txn_abort(txn);
    return NGX_ERROR;
}


/*
 * One pass over the segments: records the index has are checked against
 * its seq table (every one: seq and place), the others are added.
 * NGX_DECLINED: a mismatch, *why says which.
 */

static ngx_int_t
ngx_http_events_history_walk(ngx_http_events_history_t *h, ngx_array_t *segs,
    ngx_uint_t verify, ngx_log_t *log, const char **why)
{
    int                              rc;
    MDB_val                          k, v;
    uint64_t                        *first;
    ngx_int_t                        n;
    ngx_uint_t                       i;
    MDB_cursor                      *cur;

    h->verified = 0;
    h->batch = 0;
    h->wseg = 0;
    h->woff = 0;
    first = segs->elts;

    rc = mdb_txn_begin(h->env, NULL, 0, &h->wtxn);
    if (rc != 0) {
        *why = mdb_strerror(rc);
        return NGX_ERROR;
    }

    rc = mdb_cursor_open(h->wtxn, h->seq, &cur);
    if (rc != 0) {
        *why = mdb_strerror(rc);
        mdb_txn_abort(h->wtxn);
        h->wtxn = NULL;
        return NGX_ERROR;
    }

    h->vcur = cur;

    /* positioned on the first entry: the walk checks them in order */
    rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    if (rc != 0 && rc != MDB_NOTFOUND) {
        *why = mdb_strerror(rc);
        goto failed;
    }

    h->vrc = rc;

    for (i = 0; i < segs->nelts; i++) {
        n = ngx_http_events_history_walk_segment(h, first[i], verify, log,
                                                 why);
        if (n != NGX_OK) {
            mdb_txn_abort(h->wtxn);
            h->wtxn = NULL;
            return n;
        }

        /* the transaction may have been committed and begun again */
        cur = h->vcur;
    }

    /* past the end, LMDB's cursor stays on the last entry: vrc says so */
    if (verify && h->batch == 0 && h->vrc == 0
        && mdb_cursor_get(cur, &k, &v, MDB_GET_CURRENT) == 0
        && ngx_http_events_history_get64(k.mv_data) <= h->indexed)
    {
        *why = "it holds events the segments do not";
        mdb_txn_abort(h->wtxn);
        h->wtxn = NULL;
        return NGX_DECLINED;
    }

    if (ngx_http_events_history_put_meta(h, h->wtxn, "version",
                                         NGX_HTTP_EVENTS_HISTORY_VERSION)
        != NGX_OK
        || ngx_http_events_history_put_meta(h, h->wtxn, "epoch",
                                            h->journal->store->epoch)
           != NGX_OK
        || ngx_http_events_history_put_meta(h, h->wtxn, "indexed",
                                            h->indexed)
           != NGX_OK
        || ngx_http_events_history_put_meta(h, h->wtxn, "nseg", h->wseg)
           != NGX_OK
        || ngx_http_events_history_put_meta(h, h->wtxn, "noff", h->woff)
           != NGX_OK)
    {
        *why = "a write failed";
        goto failed;
    }

    rc = mdb_txn_commit(h->wtxn);
    h->wtxn = NULL;

    if (rc != 0) {
        *why = mdb_strerror(rc);
        return NGX_ERROR;
    }

    rc = mdb_env_sync(h->env, 1);
    if (rc != 0) {
        *why = mdb_strerror(rc);
        return NGX_ERROR;
    }

    return NGX_OK;

failed:

    mdb_txn_abort(h->wtxn);
    h->wtxn = NULL;
    return NGX_ERROR;
}


static ngx_int_t
ngx_http_events_history_walk_segment(ngx_http_events_history_t *h,
    uint64_t first, ngx_uint_t verify, ngx_log_t *log, const char **why)
{
    int                              rc;
    u_char                          *map, *p, *end, name[NGX_MAX_PATH];
    off_t                            size;
    MDB_val                          k, v;
    uint64_t                         seq;
    ngx_fd_t                         fd;
    ngx_file_info_t                  fi;
    ngx_http_events_event_t          ev;
    ngx_http_events_history_rec_t    r;
    ngx_http_events_history_loc_t    loc;
    ngx_http_events_journal_rec_t    rec;
    MDB_cursor                      *cur;

    cur = h->vcur;

    /* the indexer goes on from the end of the last segment walked */
    h->wseg = first;
    h->woff = NGX_HTTP_EVENTS_JOURNAL_HDR_SIZE;

    ngx_http_events_journal_segment_name(h->journal, name, first);

    fd = ngx_open_file(name, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
    if (fd == NGX_INVALID_FILE) {
        if (ngx_errno == NGX_ENOENT) {
            return NGX_OK;
        }

        ngx_log_error(NGX_LOG_ERR, log, ngx_errno,
                      ngx_open_file_n " \"%s\" failed", name);
        *why = "a segment cannot be read";
        return NGX_ERROR;
    }

    if (ngx_fd_info(fd, &fi) == NGX_FILE_ERROR) {
        (void) ngx_close_file(fd);
        *why = "a segment cannot be read";
        return NGX_ERROR;
    }

    size = ngx_file_size(&fi);

    if (size <= (off_t) NGX_HTTP_EVENTS_JOURNAL_HDR_SIZE) {
        (void) ngx_close_file(fd);
        return NGX_OK;
    }

    map = mmap(NULL, (size_t) size, PROT_READ, MAP_SHARED, fd, 0);
    (void) ngx_close_file(fd);

    if (map == MAP_FAILED) {
        *why = "a segment cannot be mapped";
        return NGX_ERROR;
    }

    if (ngx_http_events_journal_segment_valid(map, first) != NGX_OK) {
        /* the replay said so and left it: nothing of it is indexed */
        (void) munmap(map, (size_t) size);
        return NGX_OK;
    }

    p = map + NGX_HTTP_EVENTS_JOURNAL_HDR_SIZE;
    end = map + size;
    rc = NGX_OK;

    while ((size_t) (end - p) >= sizeof(ngx_http_events_journal_rec_t)) {

        ngx_memcpy(&rec, p, sizeof(ngx_http_events_journal_rec_t));

        if (rec.magic != NGX_HTTP_EVENTS_JOURNAL_RECORD
            || rec.len > (size_t) (end - p)
                         - sizeof(ngx_http_events_journal_rec_t))
        {
            break;
        }

        if (rec.kind != NGX_HTTP_EVENTS_JOURNAL_EVENT) {
            p += sizeof(ngx_http_events_journal_rec_t) + rec.len;
            continue;
        }

        /*
         * the replay has just checked every record's crc; what is
         * indexed already is compared by place, the rest decoded below
         */

        seq = rec.seq;

        loc.segment = first;
        loc.offset = p - map;
        loc.len = (uint32_t) (sizeof(ngx_http_events_journal_rec_t)
                              + rec.len);
        loc.time_ms = rec.time_ms;

        p += loc.len;

        if (seq <= h->indexed) {
            if (!verify) {
                continue;
            }

            rc = (h->vrc == 0) ? mdb_cursor_get(cur, &k, &v, MDB_GET_CURRENT)
                               : h->vrc;

            if (rc != 0 || k.mv_size != 8 || v.mv_size != sizeof(loc)
                || ngx_http_events_history_get64(k.mv_data) != seq
                || ((ngx_http_events_history_loc_t *) v.mv_data)->segment
                   != loc.segment
                || ((ngx_http_events_history_loc_t *) v.mv_data)->offset
                   != loc.offset)
            {
                *why = "its seq table does not match the records";
                (void) munmap(map, (size_t) size);
                return NGX_DECLINED;
            }

            h->verified++;
            h->vrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
            continue;
        }

        if (verify && cur != NULL && h->batch == 0 && h->vrc == 0
            && mdb_cursor_get(cur, &k, &v, MDB_GET_CURRENT) == 0
            && ngx_http_events_history_get64(k.mv_data) <= h->indexed)
        {
            *why = "it holds events the segments do not";
            (void) munmap(map, (size_t) size);
            return NGX_DECLINED;
        }

        if (ngx_http_events_history_decode(map + loc.offset, loc.len, &r)
            != NGX_OK)
        {
            /* the replay cut the segment here */
            break;
        }

        ngx_memzero(&ev, sizeof(ngx_http_events_event_t));
        ev.seq = seq;
        ev.time_ms = rec.time_ms;
        ev.tenant = r.tenant;
        ev.id = r.id;
        ev.type = r.type;
        ev.rtype = r.rtype;
        ev.rid = r.rid;
        ev.source = r.source;
        ev.action = r.action;
        ev.client_id = r.client_id;
        ngx_memcpy(ev.digest, r.digest, 16);
        ev.jsegment = loc.segment;
        ev.joffset = loc.offset;
        ev.jlen = loc.len;

        if (ngx_http_events_history_add(h, h->wtxn, &ev) != NGX_OK) {
            *why = "a write failed (is index_size large enough?)";
            (void) munmap(map, (size_t) size);
            return NGX_ERROR;
        }

        h->indexed = seq;
        cur = NULL;

        if (++h->batch % NGX_HTTP_EVENTS_HISTORY_BATCH == 0) {
            /* keep a transaction's dirty pages bounded */
            if (ngx_http_events_history_put_meta(h, h->wtxn, "indexed",
                                                 h->indexed)
                != NGX_OK
                || mdb_txn_commit(h->wtxn) != 0)
            {
                h->wtxn = NULL;
                *why = "a commit failed";
                (void) munmap(map, (size_t) size);
                return NGX_ERROR;
            }

            h->wtxn = NULL;

            if (mdb_txn_begin(h->env, NULL, 0, &h->wtxn) != 0
                || mdb_cursor_open(h->wtxn, h->seq, &h->vcur) != 0)
            {
                *why = "a transaction cannot begin";
                (void) munmap(map, (size_t) size);
                return NGX_ERROR;
            }
        }
    }

    h->woff = p - map;

    (void) munmap(map, (size_t) size);

    return rc == NGX_DECLINED ? NGX_DECLINED : NGX_OK;
}


/* a record as the journal wrote it: header, event header, keys, JSON */

static ngx_int_t
ngx_http_events_history_decode(u_char *p, size_t len,
    ngx_http_events_history_rec_t *r)
{
    size_t                          keys;
    ngx_http_events_journal_ev_t    e;
    ngx_http_events_journal_rec_t   rec;

    if (len < sizeof(ngx_http_events_journal_rec_t)
              + sizeof(ngx_http_events_journal_ev_t))
    {
        return NGX_ERROR;
    }

    ngx_memcpy(&rec, p, sizeof(ngx_http_events_journal_rec_t));

    if (rec.magic != NGX_HTTP_EVENTS_JOURNAL_RECORD
        || rec.kind != NGX_HTTP_EVENTS_JOURNAL_EVENT
        || rec.len != len - sizeof(ngx_http_events_journal_rec_t)
        || ngx_http_events_journal_crc(&rec,
                                       p + sizeof(
                                           ngx_http_events_journal_rec_t))
           != rec.crc)
    {
        return NGX_ERROR;
    }

    p += sizeof(ngx_http_events_journal_rec_t);
    ngx_memcpy(&e, p, sizeof(ngx_http_events_journal_ev_t));
    p += sizeof(ngx_http_events_journal_ev_t);

    keys = (size_t) e.tenant_len + e.id_len + e.type_len + e.rtype_len
           + e.rid_len + e.source_len;

    if (sizeof(ngx_http_events_journal_ev_t) + keys + e.json_len != rec.len
        || keys > NGX_HTTP_EVENTS_MAX_KEYS)
    {
        return NGX_ERROR;
    }

    r->seq = rec.seq;
    r->time_ms = rec.time_ms;
    r->tenant.len = e.tenant_len;
    r->tenant.data = p;
    p += e.tenant_len;
    r->id.len = e.id_len;
    r->id.data = p;
    p += e.id_len;
    r->type.len = e.type_len;
    r->type.data = p;
    p += e.type_len;
    r->rtype.len = e.rtype_len;
    r->rtype.data = p;
    p += e.rtype_len;
    r->rid.len = e.rid_len;
    r->rid.data = p;
    p += e.rid_len;
    r->source.len = e.source_len;
    r->source.data = p;
    p += e.source_len;
    r->json.len = e.json_len;
    r->json.data = p;
    r->action = e.action;
    r->client_id = e.client_id ? 1 : 0;
    ngx_memcpy(r->digest, e.digest, 16);

    return NGX_OK;
}


/*
 * One record from its segment, into the reader's buffer.  A reader that
 * goes through a segment in order (a stream catching up, a page of
 * consecutive events) reads 64 KB at a time, and the records after this
 * one come from the buffer: one pread() for about 60 of them instead of
 * one each; in reverse order (a descending page), the 64 KB before it.
 * Records never change once written, so what the buffer holds stays
 * right; a record that does not check out there (the tail of a
 * write that failed and was written again) is read again from the file.
 */

static ngx_int_t
ngx_http_events_history_read(ngx_http_events_history_t *h,
    ngx_http_events_history_rd_t *rd, ngx_http_events_history_loc_t *loc,
    uint64_t seq, ngx_http_events_history_rec_t *r)
{
    u_char        *p;
    size_t         want;
    ssize_t        n;
    uint64_t       off, end;
    ngx_fd_t       fd;
#if (NGX_HTTP_EVENTS_HISTORY_NOWAIT)
    struct iovec   iov;
#endif

    end = loc->offset + loc->len;

    if (rd->buf && rd->cseg == loc->segment && loc->offset >= rd->coff
        && end <= rd->coff + rd->clen)
    {
        p = rd->buf + (loc->offset - rd->coff);

        if (ngx_http_events_history_decode(p, loc->len, r) == NGX_OK
            && r->seq == seq)
        {
            rd->cend = end;
            rd->clast = loc->offset;
            return NGX_OK;
        }
    }

    off = loc->offset;
    want = loc->len;

    if (rd->cseg == loc->segment && rd->cend == loc->offset) {
        /* in order: read ahead */
        want = ngx_max(want, NGX_HTTP_EVENTS_HISTORY_AHEAD);

    } else if (rd->cseg == loc->segment && rd->clast == end) {
        /* in reverse order (a descending page): read behind */
        off = end > NGX_HTTP_EVENTS_HISTORY_AHEAD
              ? end - NGX_HTTP_EVENTS_HISTORY_AHEAD : 0;
        want = ngx_max(want, end - off);
        off = end - want;
    }

    if (want > rd->size) {
        p = ngx_alloc(ngx_max(want, NGX_HTTP_EVENTS_HISTORY_AHEAD),
                      ngx_cycle->log);
        if (p == NULL) {
            return NGX_ERROR;
        }

        if (rd->buf) {
            ngx_free(rd->buf);
        }

        rd->buf = p;
        rd->size = ngx_max(want, NGX_HTTP_EVENTS_HISTORY_AHEAD);
    }

    rd->clen = 0;

    fd = ngx_http_events_history_fd(h, rd, loc->segment);
    if (fd == NGX_INVALID_FILE) {
        return NGX_DECLINED;
    }

#if (NGX_HTTP_EVENTS_HISTORY_NOWAIT)
    if (rd->nowait) {
        iov.iov_base = rd->buf;
        iov.iov_len = want;

        /* what the page cache does not have is a thread's to read */
        n = preadv2(fd, &iov, 1, (off_t) off, RWF_NOWAIT);

        if (n < (ssize_t) (end - off)) {
            return NGX_AGAIN;
        }

    } else {
        n = pread(fd, rd->buf, want, (off_t) off);
    }
#else
    n = pread(fd, rd->buf, want, (off_t) off);
#endif

    if (n >= (ssize_t) (end - off)) {
        rd->cseg = loc->segment;
        rd->coff = off;
        rd->clen = n;
        rd->cend = end;
        rd->clast = loc->offset;
    }

    if (n < (ssize_t) (end - off)
        || ngx_http_events_history_decode(rd->buf + (loc->offset - off),
                                          loc->len, r)
           != NGX_OK
        || r->seq != seq)
    {
        rd->clen = 0;

        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "events zone \"%V\": history: event seq %uL is not "
                      "where the index says (segment %uL, offset %uL); "
                      "the index is rebuilt at the next start",
                      &h->journal->zone, seq, loc->segment, loc->offset);
        ngx_http_events_journal_history(h->journal)->errors++;
        return NGX_DECLINED;
    }

    return NGX_OK;
}


static ngx_fd_t
ngx_http_events_history_fd(ngx_http_events_history_t *h,
    ngx_http_events_history_rd_t *rd, uint64_t segment)
{
    u_char                         name[NGX_MAX_PATH];
    uint64_t                       oldest;
    ngx_uint_t                     i, victim;
    ngx_http_events_history_fd_t  *f;

    oldest = ngx_http_events_journal_history(h->journal)->first_segment;
    victim = 0;
    rd->clock++;

    for (i = 0; i < NGX_HTTP_EVENTS_HISTORY_FDS; i++) {
        f = &rd->fds[i];

        if (f->used && f->first < oldest) {
            /* deleted by retention: let the disk have its space back */
            (void) ngx_close_file(f->fd);
            f->used = 0;
        }

        if (f->used && f->first == segment) {
            f->used = rd->clock;
            return f->fd;
        }

        if (f->used < rd->fds[victim].used) {
            victim = i;
        }
    }

    f = &rd->fds[victim];

    if (f->used) {
        (void) ngx_close_file(f->fd);
        f->used = 0;
    }

    ngx_http_events_journal_segment_name(h->journal, name, segment);

    f->fd = ngx_open_file(name, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
    if (f->fd == NGX_INVALID_FILE) {
        return NGX_INVALID_FILE;
    }

    f->first = segment;
    f->used = rd->clock;

    return f->fd;
}


static ngx_int_t
ngx_http_events_history_loc(ngx_http_events_history_t *h, MDB_txn *txn,
    uint64_t seq, ngx_http_events_history_loc_t *loc)
{
    u_char   key[8];
    MDB_val  k, v;

    ngx_http_events_history_be64(key, seq);
    k.mv_size = 8;
    k.mv_data = key;

    if (mdb_get(txn, h->seq, &k, &v) != 0
        || v.mv_size != sizeof(ngx_http_events_history_loc_t))
    {
        return NGX_DECLINED;
    }

    ngx_memcpy(loc, v.mv_data, sizeof(ngx_http_events_history_loc_t));

    return NGX_OK;
}


/* tenants are numbered, so that every key starts with 4 bytes */

static ngx_int_t
ngx_http_events_history_tenant(ngx_http_events_history_t *h, MDB_txn *txn,
    ngx_str_t *tenant, ngx_uint_t create, uint32_t *tid)
{
    u_char    key[1 + NGX_HTTP_EVENTS_MAX_TENANT];
    MDB_val   k, v;
    uint64_t  n;

    key[0] = 't';
    ngx_memcpy(key + 1, tenant->data, tenant->len);
    k.mv_size = 1 + tenant->len;
    k.mv_data = key;

    if (mdb_get(txn, h->tenants, &k, &v) == 0 && v.mv_size == 4) {
        ngx_memcpy(tid, v.mv_data, 4);
        return NGX_OK;
    }

    if (!create) {
        return NGX_DECLINED;
    }

    if (ngx_http_events_history_counter(h, txn, "tenants", &n) != NGX_OK) {
        return NGX_ERROR;
    }

    *tid = (uint32_t) n;
    v.mv_size = 4;
    v.mv_data = tid;

    return mdb_put(txn, h->tenants, &k, &v, 0) == 0 ? NGX_OK : NGX_ERROR;
}


static ngx_int_t
ngx_http_events_history_counter(ngx_http_events_history_t *h, MDB_txn *txn,
    const char *name, uint64_t *value)
{
    *value = ngx_http_events_history_get_meta(h, txn, name) + 1;

    return ngx_http_events_history_put_meta(h, txn, name, *value);
}


static ngx_int_t
ngx_http_events_history_put_meta(ngx_http_events_history_t *h, MDB_txn *txn,
    const char *name, uint64_t value)
{
    MDB_val  k, v;

    k.mv_size = ngx_strlen(name);
    k.mv_data = (void *) name;
    v.mv_size = 8;
    v.mv_data = &value;

    return mdb_put(txn, h->meta, &k, &v, 0) == 0 ? NGX_OK : NGX_ERROR;
}


static uint64_t
ngx_http_events_history_get_meta(ngx_http_events_history_t *h, MDB_txn *txn,
    const char *name)
{
    MDB_val   k, v;
    uint64_t  value;

    k.mv_size = ngx_strlen(name);
    k.mv_data = (void *) name;

    if (mdb_get(txn, h->meta, &k, &v) != 0 || v.mv_size != 8) {
        return 0;
    }

    ngx_memcpy(&value, v.mv_data, 8);

    return value;
}


/* one event into every index */

static ngx_int_t
ngx_http_events_history_add(ngx_http_events_history_t *h, MDB_txn *txn,
    ngx_http_events_event_t *ev)
{
    int                             rc;
    u_char                          key[NGX_HTTP_EVENTS_HISTORY_KEY];
    u_char                          seq[8], *p;
    MDB_val                         k, v;
    uint32_t                        tid;
    uint64_t                        n;
    ngx_http_events_history_loc_t   loc;
    ngx_http_events_history_idv_t   idv;
    ngx_http_events_history_cat_t   cat;

    if (ngx_http_events_history_tenant(h, txn, &ev->tenant, 1, &tid)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    ngx_http_events_history_be64(seq, ev->seq);

    /* seq -> where */

    ngx_memzero(&loc, sizeof(ngx_http_events_history_loc_t));
    loc.segment = ev->jsegment;
    loc.offset = ev->joffset;
    loc.len = ev->jlen;
    loc.time_ms = ev->time_ms;
    loc.tenant = tid;

    k.mv_size = 8;
    k.mv_data = seq;
    v.mv_size = sizeof(ngx_http_events_history_loc_t);
    v.mv_data = &loc;

    rc = mdb_put(txn, h->seq, &k, &v, MDB_APPEND);
    if (rc == MDB_KEYEXIST) {
        rc = mdb_put(txn, h->seq, &k, &v, 0);
    }

    if (rc != 0) {
        goto failed;
    }

    /* tenant -> seqs */

    ngx_http_events_history_be32(key, tid);
    k.mv_size = 4;
    k.mv_data = key;
    v.mv_size = 8;
    v.mv_data = seq;

    rc = mdb_put(txn, h->tenant, &k, &v, MDB_APPENDDUP);
    if (rc == MDB_KEYEXIST) {
        rc = mdb_put(txn, h->tenant, &k, &v, MDB_NODUPDATA);
    }

    if (rc != 0 && rc != MDB_KEYEXIST) {
        goto failed;
    }

    /* the catalog: the type's number, count and last time */

    p = ngx_cpymem(key + 4, ev->type.data, ev->type.len);
    k.mv_size = p - key;

    rc = mdb_get(txn, h->catalog, &k, &v);

    if (rc == 0 && v.mv_size == sizeof(ngx_http_events_history_cat_t)) {
        ngx_memcpy(&cat, v.mv_data, sizeof(ngx_http_events_history_cat_t));

    } else {
        if (ngx_http_events_history_counter(h, txn, "types", &n) != NGX_OK) {
            rc = MDB_PROBLEM;
            goto failed;
        }

        ngx_memzero(&cat, sizeof(ngx_http_events_history_cat_t));
        cat.type = (uint32_t) n;
    }

    cat.count++;
    cat.last_ms = ev->time_ms;

    v.mv_size = sizeof(ngx_http_events_history_cat_t);
    v.mv_data = &cat;

    rc = mdb_put(txn, h->catalog, &k, &v, 0);
    if (rc != 0) {
        goto failed;
    }

    /* tenant, type -> seqs */

    ngx_http_events_history_be32(key + 4, cat.type);
    k.mv_size = 8;
    v.mv_size = 8;
    v.mv_data = seq;

    rc = mdb_put(txn, h->type, &k, &v, MDB_APPENDDUP);
    if (rc == MDB_KEYEXIST) {
        rc = mdb_put(txn, h->type, &k, &v, MDB_NODUPDATA);
    }

    if (rc != 0 && rc != MDB_KEYEXIST) {
        goto failed;
    }

    /* tenant, entity -> seqs */

    if (ev->rid.len) {
        p = ngx_cpymem(key + 4, ev->rtype.data, ev->rtype.len);
        *p++ = '\0';
        p = ngx_cpymem(p, ev->rid.data, ev->rid.len);
        k.mv_size = p - key;

        rc = mdb_put(txn, h->entity, &k, &v, MDB_APPENDDUP);
        if (rc == MDB_KEYEXIST) {
            rc = mdb_put(txn, h->entity, &k, &v, MDB_NODUPDATA);
        }

        if (rc != 0 && rc != MDB_KEYEXIST) {
            goto failed;
        }
    }

    /* tenant, id -> seq, digest */

    p = ngx_cpymem(key + 4, ev->id.data, ev->id.len);
    k.mv_size = p - key;

    ngx_memzero(&idv, sizeof(ngx_http_events_history_idv_t));
    idv.seq = ev->seq;
    ngx_memcpy(idv.digest, ev->digest, 16);
    idv.client_id = ev->client_id;

    v.mv_size = sizeof(ngx_http_events_history_idv_t);
    v.mv_data = &idv;

    rc = mdb_put(txn, h->id, &k, &v, 0);
    if (rc != 0) {
        goto failed;
    }

    /* time -> the first seq at that millisecond */

    ngx_http_events_history_be64(key, ev->time_ms);
    k.mv_size = 8;
    k.mv_data = key;
    v.mv_size = 8;
    v.mv_data = seq;

    rc = mdb_put(txn, h->time, &k, &v, MDB_NOOVERWRITE);
    if (rc != 0 && rc != MDB_KEYEXIST) {
        goto failed;
    }

    return NGX_OK;

failed:

    ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                  "events zone \"%V\": history index \"%V\": event seq %uL "
                  "cannot be indexed: %s", &h->journal->zone, &h->file,
                  ev->seq, mdb_strerror(rc));

    return NGX_ERROR;
}


/* workers */

ngx_int_t
ngx_http_events_history_init_process(ngx_http_events_history_t *h,
    ngx_cycle_t *cycle)
{
    int         dead;
#if (NGX_THREADS)
    ngx_str_t   name;
#endif

    ngx_http_events_history_rd_init(&h->rd);

    h->env = NULL;
    h->wtxn = NULL;
    h->free = NULL;
    h->readers = 0;
    h->ix = NULL;
    h->tix = NULL;
    ngx_queue_init(&h->waiting);

#if (NGX_THREADS)
    h->thread_pool = NULL;

    if (!h->no_threads) {
        ngx_str_set(&name, "default");

        h->thread_pool = ngx_thread_pool_get(cycle, h->pool_name.len
                                                    ? &h->pool_name : &name);
    }
#endif

    if (!ngx_http_events_journal_history(h->journal)->ready) {
        return NGX_OK;
    }

    if (ngx_http_events_history_open(h, cycle->log) != NGX_OK) {
        return NGX_OK;
    }

    /* the read slots of processes killed while reading */
    (void) mdb_reader_check(h->env, &dead);

    h->ix = ngx_http_events_history_ix_create(h);
    if (h->ix == NULL) {
        return NGX_ERROR;
    }

#if (NGX_THREADS)
    if (h->thread_pool) {
        h->tix = ngx_http_events_history_ix_create(h);
        if (h->tix == NULL) {
            return NGX_ERROR;
        }
    }
#endif

    if (ngx_worker == 0) {
        h->tick.handler = ngx_http_events_history_tick;
        h->tick.log = cycle->log;
        h->tick.data = h;
        h->tick.cancelable = 1;
        ngx_add_timer(&h->tick, NGX_HTTP_EVENTS_HISTORY_TICK);
    }

    return NGX_OK;
}


/* worker 0's indexer: in a thread of the pool, or here without one */

static void
ngx_http_events_history_tick(ngx_event_t *ev)
{
    ngx_http_events_history_t  *h = ev->data;

    ngx_http_events_history_sh_t  *hsh;

    hsh = ngx_http_events_journal_history(h->journal);

    if (hsh->ready) {
#if (NGX_THREADS)
        if (h->tix) {
            ngx_http_events_history_kick(h);

        } else {
            (void) ngx_http_events_history_catchup(h);
        }
#else
        (void) ngx_http_events_history_catchup(h);
#endif
    }

    if (!ngx_exiting && !ngx_terminate && !ngx_quit) {
        ngx_add_timer(ev, NGX_HTTP_EVENTS_HISTORY_TICK);
    }
}


void
ngx_http_events_history_exit_process(ngx_http_events_history_t *h)
{
    ngx_http_events_history_rd_t  *rd;

    /*
     * The thread pool has joined its threads: an indexer still "busy"
     * (nginx terminated at once) has ended, and what it read is dropped;
     * the worker's own indexer reads it again.
     */

    if (h->env && h->ix) {
        if (ngx_http_events_journal_history(h->journal)->ready) {
            (void) ngx_http_events_history_catchup(h);
        }

        (void) mdb_env_sync(h->env, 1);
    }

    if (h->ix) {
        ngx_http_events_history_ix_free(h->ix);
        h->ix = NULL;
    }

    if (h->tix) {
        ngx_http_events_history_ix_free(h->tix);
        h->tix = NULL;
    }

    ngx_http_events_history_close(h);

    if (h->rd.buf) {
        ngx_free(h->rd.buf);
        h->rd.buf = NULL;
        h->rd.size = 0;
    }

    /* the thread pool has joined its threads: no reader is in use */
    while (h->free) {
        rd = h->free;
        h->free = rd->next;

        if (rd->buf) {
            ngx_free(rd->buf);
        }

        ngx_free(rd);
    }
}


/*
 * Idempotency beyond the ring, before the zone's mutex is taken (so that
 * the disk this may wait for stalls this worker only): what the index
 * has under a client id.  The index is first brought up to "evicted",
 * the ring's evicted seq as the caller read it, and *upto is set to the
 * seq up to which this lookup saw every indexed event; the caller, under
 * the lock, trusts an answer for an id the ring does not have only while
 * the ring has not evicted past *upto.  NGX_OK: found, its stored
 * envelope read back; NGX_AGAIN: found, but newer than "evicted" (the
 * ring had it: the record is not read); NGX_DECLINED: unknown (or
 * removed by retention).
 */

ngx_int_t
ngx_http_events_history_find(ngx_http_events_history_t *h,
    ngx_str_t *tenant, ngx_str_t *id, uint64_t evicted, ngx_pool_t *pool,
    ngx_http_events_event_t *found, uint64_t *upto)
{
    u_char                          key[4 + NGX_HTTP_EVENTS_MAX_ID], *p;
    MDB_val                         k, v;
    uint32_t                        tid;
    ngx_int_t                       rc;
    ngx_uint_t                      failed;
    ngx_http_events_history_rec_t   r;
    ngx_http_events_history_loc_t   loc;
    ngx_http_events_history_idv_t   idv;
    ngx_http_events_history_sh_t   *hsh;

    hsh = ngx_http_events_journal_history(h->journal);
    failed = 0;

    /* what the ring has not kept must be on disk before it is asked */
    if (hsh->indexed < evicted
        && ngx_http_events_history_catchup(h) != NGX_OK)
    {
        /* as reads do: on with what is indexed, not retried for it */
        failed = 1;
    }

    /*
     * "indexed" moves on after the commit that indexed up to it: a read
     * transaction begun after it was read sees every event up to it
     */
    *upto = failed ? (uint64_t) -1 : hsh->indexed;
    ngx_memory_barrier();

    if (ngx_http_events_history_rtxn(h, &h->rd) != NGX_OK) {
        /* as before: an index that cannot be read does not know the id */
        *upto = (uint64_t) -1;
        return NGX_DECLINED;
    }

    rc = NGX_DECLINED;

    if (ngx_http_events_history_tenant(h, h->rd.txn, tenant, 0, &tid)
        != NGX_OK)
    {
        goto done;
    }

    ngx_http_events_history_be32(key, tid);
    p = ngx_cpymem(key + 4, id->data, id->len);
    k.mv_size = p - key;
    k.mv_data = key;

    if (mdb_get(h->rd.txn, h->id, &k, &v) != 0
        || v.mv_size != sizeof(ngx_http_events_history_idv_t))
    {
        goto done;
    }

    ngx_memcpy(&idv, v.mv_data, sizeof(ngx_http_events_history_idv_t));

    if (idv.seq <= hsh->gone) {
        goto done;
    }

    found->seq = idv.seq;
    found->client_id = idv.client_id;
    ngx_memcpy(found->digest, idv.digest, 16);

    if (idv.seq > evicted) {
        rc = NGX_AGAIN;
        goto done;
    }

    if (ngx_http_events_history_loc(h, h->rd.txn, idv.seq, &loc) != NGX_OK) {
        found->seq = 0;
        goto done;
    }

    rc = ngx_http_events_history_read(h, &h->rd, &loc, idv.seq, &r);
    if (rc != NGX_OK) {
        rc = NGX_ERROR;
        goto done;
    }

    p = ngx_pnalloc(pool, r.json.len);
    if (p == NULL) {
        rc = NGX_ERROR;
        goto done;
    }

    ngx_memcpy(p, r.json.data, r.json.len);

    found->time_ms = loc.time_ms;
    found->stored.data = p;
    found->stored.len = r.json.len;

done:

    ngx_http_events_history_rdone(&h->rd);

    return rc;
}


/*
 * The indexer: from where the index left off in the segments, the
 * records up to the head.  Reading them (pread(), which a slow disk
 * stalls) and indexing them (LMDB pages, in memory) are two steps: with
 * a thread pool, worker 0 reads them in a thread every few milliseconds
 * and indexes them in the worker when the thread is done, and a reader
 * that needs what the index has not reached yet waits for that (see
 * ngx_http_events_history_post()).  Here both steps run in the worker,
 * a batch after another up to the head: without threads, and for the
 * reads that cannot wait (the type catalog, the idempotency of a POST).
 * The position is in the index itself and LMDB's writer lock makes one
 * commit at a time, never held across a read of the disk: two indexers
 * (two workers) that read the same records index them once.
 */

ngx_int_t
ngx_http_events_history_catchup(ngx_http_events_history_t *h)
{
    ngx_int_t                      rc;
    ngx_uint_t                     total;
    ngx_http_events_history_ix_t  *ix;

    ix = h->ix;

    if (ix == NULL) {
        return NGX_OK;
    }

    for (total = 0; total < NGX_HTTP_EVENTS_HISTORY_BATCH; total += ix->n) {

        rc = ngx_http_events_history_begin(ix);

        if (rc == NGX_DONE) {
            return NGX_OK;
        }

        if (rc != NGX_OK) {
            return NGX_ERROR;
        }

        ngx_http_events_history_gather(ix);

        if (ngx_http_events_history_commit(ix) != NGX_OK) {
            return NGX_ERROR;
        }

        if (ix->n == 0 && ix->seg == ix->seg0 && ix->off == ix->off0) {
            /* nothing more to read now */
            break;
        }
    }

    return NGX_OK;
}


static ngx_http_events_history_ix_t *
ngx_http_events_history_ix_create(ngx_http_events_history_t *h)
{
    ngx_http_events_history_ix_t  *ix;

    ix = ngx_calloc(sizeof(ngx_http_events_history_ix_t), ngx_cycle->log);
    if (ix == NULL) {
        return NULL;
    }

    ix->ents = ngx_alloc(NGX_HTTP_EVENTS_HISTORY_GATHER
                         * sizeof(ngx_http_events_history_ent_t),
                         ngx_cycle->log);
    ix->data = ngx_alloc(NGX_HTTP_EVENTS_HISTORY_DATA, ngx_cycle->log);

    if (ix->ents == NULL || ix->data == NULL) {
        ngx_http_events_history_ix_free(ix);
        return NULL;
    }

    ix->size = NGX_HTTP_EVENTS_HISTORY_DATA;
    ix->history = h;
    ngx_http_events_history_rd_init(&ix->rd);

    return ix;
}


static void
ngx_http_events_history_ix_free(ngx_http_events_history_ix_t *ix)
{
    ngx_http_events_history_rd_close(&ix->rd);

#if (NGX_THREADS)
    if (ix->hold.timer_set) {
        ngx_del_timer(&ix->hold);
    }
#endif

    if (ix->rd.buf) {
        ngx_free(ix->rd.buf);
    }

    if (ix->ents) {
        ngx_free(ix->ents);
    }

    if (ix->data) {
        ngx_free(ix->data);
    }

    ngx_free(ix);
}


/*
 * Where the index left off, from a read transaction.  NGX_DONE: it has
 * every published event.
 */

static ngx_int_t
ngx_http_events_history_begin(ngx_http_events_history_ix_t *ix)
{
    ngx_http_events_history_t     *h;
    ngx_http_events_history_sh_t  *hsh;

    h = ix->history;
    hsh = ngx_http_events_journal_history(h->journal);

    ix->n = 0;
    ix->head = ngx_http_events_store_head(h->journal->store);

    if (hsh->indexed >= ix->head || h->env == NULL) {
        return NGX_DONE;
    }

    if (ngx_http_events_history_rtxn(h, &ix->rd) != NGX_OK) {
        return NGX_ERROR;
    }

    ix->from = ngx_http_events_history_get_meta(h, ix->rd.txn, "indexed");
    ix->seg0 = ngx_http_events_history_get_meta(h, ix->rd.txn, "nseg");
    ix->off0 = ngx_http_events_history_get_meta(h, ix->rd.txn, "noff");

    ngx_http_events_history_rdone(&ix->rd);

    ix->seg = ix->seg0;
    ix->off = ix->off0;

    if (ix->from >= ix->head) {
        if (ix->from > hsh->indexed) {
            hsh->indexed = ix->from;
        }

        return NGX_DONE;
    }

    return NGX_OK;
}


/*
 * The records after the position, up to the head, into the batch; it
 * touches the journal's files and the zone's counters only, so that it
 * may run in a thread.  ix->rc: NGX_ERROR, a record the journal
 * published cannot be read back; NGX_ABORT, no memory.
 */

static void
ngx_http_events_history_gather(ngx_http_events_history_ix_t *ix)
{
    u_char                         *p;
    size_t                          len;
    ngx_int_t                       n;
    ngx_http_events_history_t      *h;
    ngx_http_events_history_ent_t  *e;

    h = ix->history;

    ix->n = 0;
    ix->used = 0;
    ix->rc = NGX_OK;

    while (ix->n < NGX_HTTP_EVENTS_HISTORY_GATHER) {

        e = &ix->ents[ix->n];

        n = ngx_http_events_history_next_record(h, &ix->rd, &ix->seg,
                                                &ix->off, &e->rec, &e->loc);

        if (n == NGX_DONE) {
            break;
        }

        if (n != NGX_OK) {
            ix->rc = NGX_ERROR;
            break;
        }

        if (e->rec.seq > ix->head) {
            /* not published yet: the next round */
            break;
        }

        len = e->loc.len;

        if (e->rec.seq <= ix->from) {
            ix->off += len;
            continue;
        }

        if (ix->used + len > ix->size) {
            if (ix->n) {
                /* full: the next batch */
                break;
            }

            /* one record larger than the batch */
            p = ngx_alloc(len, ngx_cycle->log);
            if (p == NULL) {
                ix->rc = NGX_ABORT;
                break;
            }

            ngx_free(ix->data);
            ix->data = p;
            ix->size = len;
        }

        /* next_record() left it whole in the reader's buffer */
        p = ix->rd.buf + (e->loc.offset - ix->rd.coff);

        ngx_memcpy(ix->data + ix->used, p, len);
        ngx_http_events_history_rebase(&e->rec, p, ix->data + ix->used);

        ix->used += len;
        ix->off += len;
        ix->n++;
    }
}


static void
ngx_http_events_history_rebase(ngx_http_events_history_rec_t *r,
    u_char *from, u_char *to)
{
    r->tenant.data = to + (r->tenant.data - from);
    r->id.data = to + (r->id.data - from);
    r->type.data = to + (r->type.data - from);
    r->rtype.data = to + (r->rtype.data - from);
    r->rid.data = to + (r->rid.data - from);
    r->source.data = to + (r->source.data - from);
    r->json.data = to + (r->json.data - from);
}


/*
 * The batch into the index, in one write transaction, in the worker.
 * What another indexer added meanwhile (its position is further on) is
 * not added again, and the position never goes back.
 */

static ngx_int_t
ngx_http_events_history_commit(ngx_http_events_history_ix_t *ix)
{
    int                             rc;
    MDB_txn                        *txn;
    uint64_t                        indexed, last;
    ngx_uint_t                      i, added;
    ngx_http_events_event_t         ev;
    ngx_http_events_history_t      *h;
    ngx_http_events_history_ent_t  *e;
    ngx_http_events_history_sh_t   *hsh;

    h = ix->history;
    hsh = ngx_http_events_journal_history(h->journal);

    if (ix->rc == NGX_ERROR) {
        return ngx_http_events_history_failed(h, MDB_CORRUPTED, ix->seg,
                                              ix->off);
    }

    if (ix->rc == NGX_ABORT) {
        return ngx_http_events_history_failed(h, ENOMEM, ix->seg, ix->off);
    }

    rc = mdb_txn_begin(h->env, NULL, 0, &txn);
    if (rc != 0) {
        return ngx_http_events_history_failed(h, rc, ix->seg, ix->off);
    }

    indexed = ngx_http_events_history_get_meta(h, txn, "indexed");
    last = indexed;
    added = 0;

    for (i = 0; i < ix->n; i++) {
        e = &ix->ents[i];

        if (e->rec.seq <= indexed) {
            continue;
        }

        ngx_memzero(&ev, sizeof(ngx_http_events_event_t));
        ev.seq = e->rec.seq;
        ev.time_ms = e->rec.time_ms;
        ev.tenant = e->rec.tenant;
        ev.id = e->rec.id;
        ev.type = e->rec.type;
        ev.rtype = e->rec.rtype;
        ev.rid = e->rec.rid;
        ev.source = e->rec.source;
        ev.action = e->rec.action;
        ev.client_id = e->rec.client_id;
        ngx_memcpy(ev.digest, e->rec.digest, 16);
        ev.jsegment = e->loc.segment;
        ev.joffset = e->loc.offset;
        ev.jlen = e->loc.len;

        if (ngx_http_events_history_add(h, txn, &ev) != NGX_OK) {
            mdb_txn_abort(txn);
            return ngx_http_events_history_failed(h, MDB_PROBLEM, ix->seg,
                                                  ix->off);
        }

        last = e->rec.seq;
        added++;
    }

    if (added == 0
        && (indexed != ix->from
            || (ix->seg == ix->seg0 && ix->off == ix->off0)))
    {
        /* nothing new, or another indexer went further */
        mdb_txn_abort(txn);
        goto done;
    }

    if (ngx_http_events_history_put_meta(h, txn, "indexed", last) != NGX_OK
        || ngx_http_events_history_put_meta(h, txn, "nseg", ix->seg)
           != NGX_OK
        || ngx_http_events_history_put_meta(h, txn, "noff", ix->off)
           != NGX_OK)
    {
        mdb_txn_abort(txn);
        return ngx_http_events_history_failed(h, MDB_PROBLEM, ix->seg,
                                              ix->off);
    }

    rc = mdb_txn_commit(txn);
    if (rc != 0) {
        return ngx_http_events_history_failed(h, rc, ix->seg, ix->off);
    }

done:

    if (last > hsh->indexed) {
        hsh->indexed = last;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_events_history_failed(ngx_http_events_history_t *h, int rc,
    uint64_t seg, uint64_t off)
{
    ngx_http_events_history_sh_t  *hsh;

    hsh = ngx_http_events_journal_history(h->journal);
    hsh->errors++;

    if (rc == MDB_CORRUPTED) {
        /* a record the journal published cannot be read back */
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "events zone \"%V\": history index \"%V\": the "
                      "journal cannot be read at segment %uL offset %uL; "
                      "reads beyond the ring are off until the next start "
                      "rebuilds the index", &h->journal->zone, &h->file,
                      seg, off);
        hsh->ready = 0;
        return NGX_ERROR;
    }

    if (ngx_current_msec - h->logged >= 1000 || h->logged == 0) {
        /* a full disk, say: tried again every tick, said once a second */
        h->logged = ngx_current_msec;
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "events zone \"%V\": history index \"%V\": indexing "
                      "failed: %s; retried", &h->journal->zone, &h->file,
                      mdb_strerror(rc));
    }

    return NGX_ERROR;
}


/*
 * The record at (*seg, *off), read whole into rd's buffer; at the end
 * of a closed segment, on to the next one.  NGX_DONE: nothing more to
 * read now.
 */

static ngx_int_t
ngx_http_events_history_next_record(ngx_http_events_history_t *h,
    ngx_http_events_history_rd_t *rd, uint64_t *seg, uint64_t *off,
    ngx_http_events_history_rec_t *r, ngx_http_events_history_loc_t *loc)
{
    ssize_t                         n;
    ngx_fd_t                        fd;
    ngx_uint_t                      i;
    ngx_http_events_journal_rec_t   rec;

    for (i = 0; i < 64; i++) {

        fd = *seg ? ngx_http_events_history_fd(h, rd, *seg)
                  : NGX_INVALID_FILE;

        if (fd != NGX_INVALID_FILE) {
            n = pread(fd, &rec, sizeof(ngx_http_events_journal_rec_t),
                      (off_t) *off);

            if (n == (ssize_t) sizeof(ngx_http_events_journal_rec_t)
                && rec.magic == NGX_HTTP_EVENTS_JOURNAL_RECORD)
            {
                if (rec.kind != NGX_HTTP_EVENTS_JOURNAL_EVENT) {
                    *off += sizeof(ngx_http_events_journal_rec_t) + rec.len;
                    continue;
                }

                loc->segment = *seg;
                loc->offset = *off;
                loc->len = (uint32_t) (sizeof(ngx_http_events_journal_rec_t)
                                       + rec.len);
                loc->time_ms = rec.time_ms;

                if (rec.seq > ngx_http_events_store_head(
                                  h->journal->store))
                {
                    r->seq = rec.seq;
                    return NGX_OK;
                }

                return ngx_http_events_history_read(h, rd, loc, rec.seq, r)
                       == NGX_OK ? NGX_OK : NGX_ERROR;
            }

            if (*seg == ngx_http_events_journal_current(h->journal)) {
                /* the end of what is written so far */
                return NGX_DONE;
            }
        }

        /* the end of a closed segment: the one after it */

        *seg = ngx_http_events_journal_after(h->journal, *seg);
        *off = NGX_HTTP_EVENTS_JOURNAL_HDR_SIZE;

        if (*seg == 0) {
            return NGX_DONE;
        }
    }

    return NGX_DONE;
}


/* reading, without any lock */

ngx_uint_t
ngx_http_events_history_ready(ngx_http_events_history_t *h)
{
    return h != NULL && h->env != NULL
           && ngx_http_events_journal_history(h->journal)->ready;
}


static ngx_int_t
ngx_http_events_history_rtxn(ngx_http_events_history_t *h,
    ngx_http_events_history_rd_t *rd)
{
    int  rc;

    if (rd->txn == NULL) {
        rc = mdb_txn_begin(h->env, NULL, MDB_RDONLY, &rd->txn);
        if (rc != 0) {
            rd->txn = NULL;
        }

    } else {
        rc = mdb_txn_renew(rd->txn);
    }

    if (rc != 0) {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "events zone \"%V\": history index: read "
                      "transaction: %s", &h->journal->zone,
                      mdb_strerror(rc));
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void
ngx_http_events_history_rdone(ngx_http_events_history_rd_t *rd)
{
    mdb_txn_reset(rd->txn);
}


ngx_uint_t
ngx_http_events_history_threaded(ngx_http_events_history_t *h)
{
#if (NGX_THREADS)
    return h->thread_pool != NULL;
#else
    return 0;
#endif
}


/*
 * A read that may touch the disk, in a thread: its own LMDB reader and
 * descriptors (from this worker's free list); the catalog reads the
 * index only, and runs in the worker.  The index must have
 * every event published before it: if it has not, the read waits for
 * the indexer (in a thread too, see ngx_http_events_history_kick()),
 * and goes on when the index has reached the head it saw.  NGX_OK:
 * done at once from the page cache, job->rc set; NGX_AGAIN:
 * job->handler is called when it is done; NGX_DECLINED: no thread
 * pool, or as many readers in threads as the cap: run it in the worker.
 */

ngx_int_t
ngx_http_events_history_post(ngx_http_events_history_job_t *job)
{
#if (NGX_THREADS)
    uint64_t                    head;
    ngx_http_events_history_t  *h;

    h = job->history;

    if (h->thread_pool == NULL) {
        return NGX_DECLINED;
    }

    head = ngx_http_events_store_head(h->journal->store);

    if (h->tix && ngx_http_events_journal_history(h->journal)->indexed < head)
    {
        ngx_http_events_history_kick(h);

        if (h->tix->busy) {
            job->need = head;
            ngx_queue_insert_tail(&h->waiting, &job->queue);
            return NGX_AGAIN;
        }

        /* indexed meanwhile (or here, if the thread could not have it) */
    }

    return ngx_http_events_history_start(job);

#else

    return NGX_DECLINED;

#endif
}


#if (NGX_THREADS)

/* the read itself, the index being up to date: from the cache, or posted */

static ngx_int_t
ngx_http_events_history_start(ngx_http_events_history_job_t *job)
{
    ngx_thread_task_t             *task;
    ngx_http_events_history_t     *h;
    ngx_http_events_history_rd_t  *rd;

    h = job->history;

    if (job->types) {
        /* the index's pages only, no record: in the worker */
        job->rc = ngx_http_events_history_types_indexed(h, job->tenant,
                                                        job->pool,
                                                        job->types);
        return NGX_OK;
    }

    if (ngx_http_events_history_cached(job) == NGX_OK) {
        return NGX_OK;
    }

    task = ngx_thread_task_alloc(job->pool, 0);
    if (task == NULL) {
        return NGX_ERROR;
    }

    rd = h->free;

    if (rd) {
        h->free = rd->next;

    } else {
        if (h->readers == NGX_HTTP_EVENTS_HISTORY_READERS) {
            return NGX_DECLINED;
        }

        rd = ngx_calloc(sizeof(ngx_http_events_history_rd_t),
                        ngx_cycle->log);
        if (rd == NULL) {
            return NGX_DECLINED;
        }

        ngx_http_events_history_rd_init(rd);
        h->readers++;
    }

    job->rd = rd;

    task->ctx = job;
    task->handler = ngx_http_events_history_thread;
    task->event.handler = ngx_http_events_history_thread_done;
    task->event.data = job;
    task->event.log = ngx_cycle->log;

    if (ngx_thread_task_post(h->thread_pool, task) != NGX_OK) {
        rd->next = h->free;
        h->free = rd;
        job->rd = NULL;
        return NGX_ERROR;
    }

    (void) ngx_atomic_fetch_add(
                  &ngx_http_events_journal_history(h->journal)->thread_reads,
                  1);

    return NGX_AGAIN;
}


/*
 * The indexer's reading in a thread, one batch at a time per worker: a
 * stalled disk stalls the thread, and the worker goes on.  The batch is
 * the process's own memory, freed only at the worker's exit, after the
 * thread pool has joined its threads; a non-cancelable timer keeps a
 * worker that shuts down until the thread is done, as reads in threads
 * do.  If the task cannot be posted, the batch is read in the worker.
 */

static void
ngx_http_events_history_kick(ngx_http_events_history_t *h)
{
    ngx_int_t                      rc;
    ngx_http_events_history_ix_t  *ix;

    ix = h->tix;

    if (ix->busy) {
        return;
    }

    rc = ngx_http_events_history_begin(ix);

    if (rc == NGX_OK) {
        ngx_memzero(&ix->task, sizeof(ngx_thread_task_t));
        ix->task.ctx = ix;
        ix->task.handler = ngx_http_events_history_ix_thread;
        ix->task.event.handler = ngx_http_events_history_ix_done;
        ix->task.event.data = ix;
        ix->task.event.log = ngx_cycle->log;

        if (ngx_thread_task_post(h->thread_pool, &ix->task) == NGX_OK) {
            ix->busy = 1;

            ix->hold.handler = ngx_http_events_history_ix_hold;
            ix->hold.data = ix;
            ix->hold.log = ngx_cycle->log;
            ngx_add_timer(&ix->hold, NGX_HTTP_EVENTS_HISTORY_HOLD);
            return;
        }

        (void) ngx_http_events_history_catchup(h);
    }

    /* every read that waits may go on: as far as indexing went */
    ngx_http_events_history_wake(h, 1);
}


static void
ngx_http_events_history_ix_thread(void *data, ngx_log_t *log)
{
    ngx_http_events_history_ix_t  *ix = data;

    ngx_http_events_history_gather(ix);
}


/*
 * In the worker: the batch into the index, then the reads that waited
 * for it; the next batch at once while the index is behind and a read
 * waits (or after a full batch), else at worker 0's next tick.
 */

static void
ngx_http_events_history_ix_done(ngx_event_t *ev)
{
    ngx_http_events_history_ix_t  *ix = ev->data;

    ngx_uint_t                     more;
    ngx_http_events_history_t     *h;

    h = ix->history;
    ix->busy = 0;

    if (ix->hold.timer_set) {
        ngx_del_timer(&ix->hold);
    }

    if (h->env == NULL) {
        return;
    }

    more = ngx_http_events_history_commit(ix) == NGX_OK
           && (ix->n || ix->seg != ix->seg0 || ix->off != ix->off0);

    /* without progress, a read goes on with what is indexed, as before */
    ngx_http_events_history_wake(h, !more);

    if (more
        && (!ngx_queue_empty(&h->waiting)
            || (ix->n == NGX_HTTP_EVENTS_HISTORY_GATHER
                && !ngx_exiting && !ngx_quit && !ngx_terminate)))
    {
        ngx_http_events_history_kick(h);
    }
}


static void
ngx_http_events_history_ix_hold(ngx_event_t *ev)
{
    ngx_log_error(NGX_LOG_WARN, ev->log, 0,
                  "events: the history indexer still waits for its thread "
                  "to read the journal");

    ngx_add_timer(ev, NGX_HTTP_EVENTS_HISTORY_HOLD);
}


/* the reads that waited for the index, once it has their head (or all) */

static void
ngx_http_events_history_wake(ngx_http_events_history_t *h, ngx_uint_t all)
{
    uint64_t                        indexed;
    ngx_queue_t                     ready, *q, *next;
    ngx_http_events_history_job_t  *job;

    indexed = ngx_http_events_journal_history(h->journal)->indexed;

    ngx_queue_init(&ready);

    for (q = ngx_queue_head(&h->waiting);
         q != ngx_queue_sentinel(&h->waiting);
         q = next)
    {
        next = ngx_queue_next(q);
        job = ngx_queue_data(q, ngx_http_events_history_job_t, queue);

        if (all || job->need <= indexed) {
            ngx_queue_remove(q);
            ngx_queue_insert_tail(&ready, q);
        }
    }

    /* a handler may post another read meanwhile: it waits in "waiting" */

    while (!ngx_queue_empty(&ready)) {
        q = ngx_queue_head(&ready);
        ngx_queue_remove(q);

        job = ngx_queue_data(q, ngx_http_events_history_job_t, queue);
        ngx_http_events_history_resume(job);
    }
}


static void
ngx_http_events_history_resume(ngx_http_events_history_job_t *job)
{
    ngx_int_t  rc;

    rc = ngx_http_events_history_start(job);

    if (rc == NGX_AGAIN) {
        return;
    }

    if (rc == NGX_DECLINED) {
        ngx_http_events_history_run(job);

    } else if (rc == NGX_ERROR) {
        job->rc = NGX_ERROR;
    }

    job->handler(job);
}

#endif


#if (NGX_THREADS)

/*
 * First in the worker, from the page cache only: records are read with
 * RWF_NOWAIT, and the first one the cache does not have hands the whole
 * read to a thread (what was read is dropped).  A warm history then
 * costs no hop to a thread and back, which on a busy machine is two
 * waits for a CPU.  The index's pages are taken as in memory: they are
 * a fifth of the segments and read at every request.
 */

static ngx_int_t
ngx_http_events_history_cached(ngx_http_events_history_job_t *job)
{
#if (NGX_HTTP_EVENTS_HISTORY_NOWAIT)
    ngx_int_t                   rc;
    ngx_http_events_result_t    res;
    ngx_http_events_history_t  *h;

    h = job->history;
    h->rd.nowait = 1;

    if (job->query) {
        res = *job->res;
        rc = ngx_http_events_history_query_rd(h, &h->rd, job->query,
                                              job->pool, job->res);
        if (rc == NGX_AGAIN) {
            *job->res = res;
            job->res->items.nelts = 0;
        }

    } else {
        rc = ngx_http_events_history_get_rd(h, &h->rd, job->tenant, job->id,
                                            job->pool, &job->json);
    }

    h->rd.nowait = 0;

    if (rc == NGX_AGAIN) {
        return NGX_AGAIN;
    }

    job->rc = rc;

    (void) ngx_atomic_fetch_add(
                  &ngx_http_events_journal_history(h->journal)->cache_reads,
                  1);

    return NGX_OK;

#else

    return NGX_AGAIN;

#endif
}

#endif


/*
 * The same read in the worker, with its own reader.  With a thread
 * pool, post() has seen the index up to the head already.
 */

void
ngx_http_events_history_run(ngx_http_events_history_job_t *job)
{
    ngx_http_events_history_t  *h;

    h = job->history;

    if (!ngx_http_events_history_threaded(h)) {
        (void) ngx_http_events_history_catchup(h);
    }

    if (job->types) {
        job->rc = ngx_http_events_history_types_indexed(h, job->tenant,
                                                        job->pool,
                                                        job->types);
        return;
    }

    (void) ngx_atomic_fetch_add(
                  &ngx_http_events_journal_history(h->journal)->worker_reads,
                  1);

    if (job->query) {
        job->rc = ngx_http_events_history_query_rd(h, &h->rd, job->query,
                                                   job->pool, job->res);

    } else {
        job->rc = ngx_http_events_history_get_rd(h, &h->rd, job->tenant,
                                                 job->id, job->pool,
                                                 &job->json);
    }
}


#if (NGX_THREADS)

static void
ngx_http_events_history_thread(void *data, ngx_log_t *log)
{
    ngx_http_events_history_job_t  *job = data;

    if (job->query) {
        job->rc = ngx_http_events_history_query_rd(job->history, job->rd,
                                                   job->query, job->pool,
                                                   job->res);

    } else {
        job->rc = ngx_http_events_history_get_rd(job->history, job->rd,
                                                 job->tenant, job->id,
                                                 job->pool, &job->json);
    }
}


static void
ngx_http_events_history_thread_done(ngx_event_t *ev)
{
    ngx_http_events_history_job_t  *job = ev->data;

    ngx_http_events_history_t  *h;

    h = job->history;

    job->rd->next = h->free;
    h->free = job->rd;
    job->rd = NULL;

    job->handler(job);
}

#endif


/* the oldest event on disk, and the newest removed */

void
ngx_http_events_history_window(ngx_http_events_history_t *h,
    ngx_http_events_window_t *w)
{
    u_char        key[8];
    MDB_val       k, v;
    uint64_t      seq, ring;
    MDB_cursor   *cur;

    /* not indexed yet, the oldest is the ring's */
    ring = w->oldest_seq;

    w->evicted_seq = ngx_http_events_history_gone(h, w->evicted_seq);
    ngx_memory_barrier();

    if (ngx_http_events_history_rtxn(h, &h->rd) != NGX_OK) {
        w->oldest_seq = w->evicted_seq + 1;
        return;
    }

    w->oldest_seq = ring;

    if (mdb_cursor_open(h->rd.txn, h->seq, &cur) == 0) {
        ngx_http_events_history_be64(key, w->evicted_seq + 1);
        k.mv_size = 8;
        k.mv_data = key;

        if (mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE) == 0) {
            seq = ngx_http_events_history_get64(k.mv_data);

            if (seq <= w->head_seq && (ring == 0 || seq < ring)) {
                w->oldest_seq = seq;
            }
        }

        mdb_cursor_close(cur);
    }

    ngx_http_events_history_rdone(&h->rd);
}


/*
 * The newest seq at or before a time, through the time table; -1: the
 * newest indexed is.  A descending page up to a time older than the
 * ring is the disk's at once, without a scan of the ring first.
 */

uint64_t
ngx_http_events_history_until(ngx_http_events_history_t *h, uint64_t ms)
{
    uint64_t  seq;

    if (ngx_http_events_history_rtxn(h, &h->rd) != NGX_OK) {
        return (uint64_t) -1;
    }

    if (ngx_http_events_history_at(h, h->rd.txn, ms + 1, &seq) == NGX_OK) {
        seq--;

    } else {
        seq = (uint64_t) -1;
    }

    ngx_http_events_history_rdone(&h->rd);

    return seq;
}


/*
 * The first seq at or after a time, through the time table (times never
 * go back, so a time is a place in seq order).  NGX_DECLINED: none.
 */

static ngx_int_t
ngx_http_events_history_at(ngx_http_events_history_t *h, MDB_txn *txn,
    uint64_t ms, uint64_t *seq)
{
    int          rc;
    u_char       key[8];
    MDB_val      k, v;
    MDB_cursor  *cur;

    if (mdb_cursor_open(txn, h->time, &cur) != 0) {
        return NGX_ERROR;
    }

    ngx_http_events_history_be64(key, ms);
    k.mv_size = 8;
    k.mv_data = key;

    rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);

    mdb_cursor_close(cur);

    if (rc == MDB_NOTFOUND) {
        return NGX_DECLINED;
    }

    if (rc != 0 || v.mv_size != 8) {
        return NGX_ERROR;
    }

    *seq = ngx_http_events_history_get64(v.mv_data);

    return NGX_OK;
}


/*
 * A plan: which index to walk for a query, from "lo" (exclusive) to
 * "hi" (inclusive).  An entity, a handful of types, a tenant, or (a
 * webhook of every tenant) the seq table itself.
 */

static ngx_int_t
ngx_http_events_history_plan(ngx_http_events_history_t *h,
    ngx_http_events_history_rd_t *rd, ngx_http_events_query_t *q,
    uint64_t lo, uint64_t hi, ngx_http_events_history_plan_t *pl)
{
    u_char                          key[8], *p;
    uint32_t                        tid;
    uint64_t                        seq;
    ngx_int_t                       rc;
    ngx_str_t                       name;
    ngx_uint_t                      i, all;
    MDB_cursor                     *cur;
    ngx_http_events_history_it_t   *it;
    ngx_http_events_history_cat_t   cat;

    pl->n = 0;
    pl->desc = q->desc;
    pl->empty = 0;
    pl->tenant = 0;

    /* timestamps never go back: a time range is a seq range */

    if (q->since_ms >= 0) {
        rc = ngx_http_events_history_at(h, rd->txn, (uint64_t) q->since_ms,
                                        &seq);
        if (rc == NGX_ERROR) {
            return NGX_ERROR;
        }

        lo = (rc == NGX_OK) ? ngx_max(lo, seq - 1) : hi;
    }

    if (q->until_ms >= 0) {
        rc = ngx_http_events_history_at(h, rd->txn,
                                        (uint64_t) q->until_ms + 1, &seq);
        if (rc == NGX_ERROR) {
            return NGX_ERROR;
        }

        if (rc == NGX_OK) {
            hi = ngx_min(hi, seq - 1);
        }
    }

    pl->lo = lo;
    pl->hi = hi;

    if (lo >= hi) {
        pl->empty = 1;
        return NGX_OK;
    }

    if (!q->any_tenant) {
        if (ngx_http_events_history_tenant(h, rd->txn, &q->tenant, 0, &tid)
            != NGX_OK)
        {
            pl->empty = 1;
            return NGX_OK;
        }

        pl->tenant = tid;
    }

    it = pl->it;

    if (!q->any_tenant && q->rid.len && q->rtype.len) {
        ngx_http_events_history_be32(it->key, tid);
        p = ngx_cpymem(it->key + 4, q->rtype.data, q->rtype.len);
        *p++ = '\0';
        p = ngx_cpymem(p, q->rid.data, q->rid.len);
        it->k.mv_size = p - it->key;
        it->dup = 1;

        if (mdb_cursor_open(rd->txn, h->entity, &it->cur) != 0) {
            return NGX_ERROR;
        }

        pl->n = 1;
        goto start;
    }

    all = (q->ntypes == 0);

    for (i = 0; i < q->ntypes; i++) {
        if (q->types[i].len == 1 && q->types[i].data[0] == '*') {
            all = 1;
        }
    }

    if (!q->any_tenant && !all) {
        /* the tenant's types that match, from the catalog */

        if (mdb_cursor_open(rd->txn, h->catalog, &cur) != 0) {
            return NGX_ERROR;
        }

        ngx_http_events_history_be32(key, tid);

        for (rc = ngx_http_events_history_catalog(cur, key, 1, &name, &cat);
             rc != NGX_DONE;
             rc = ngx_http_events_history_catalog(cur, key, 0, &name, &cat))
        {
            if (!ngx_http_events_match_any(q->types, q->ntypes, &name)) {
                continue;
            }

            if (pl->n == NGX_HTTP_EVENTS_HISTORY_MERGE || rc != NGX_OK) {
                /* too many to merge: the tenant's walk, filtered */
                all = 1;
                break;
            }

            it = &pl->it[pl->n];
            ngx_http_events_history_be32(it->key, tid);
            ngx_http_events_history_be32(it->key + 4, cat.type);
            it->k.mv_size = 8;
            it->dup = 1;
            it->cur = NULL;
            pl->n++;
        }

        mdb_cursor_close(cur);

        if (!all) {
            if (pl->n == 0) {
                pl->empty = 1;
                return NGX_OK;
            }

            for (i = 0; i < pl->n; i++) {
                if (mdb_cursor_open(rd->txn, h->type, &pl->it[i].cur) != 0) {
                    pl->n = i;
                    return NGX_ERROR;
                }
            }

            goto start;
        }

        pl->n = 0;
    }

    it = pl->it;

    if (!q->any_tenant) {
        ngx_http_events_history_be32(it->key, tid);
        it->k.mv_size = 4;
        it->dup = 1;

        if (mdb_cursor_open(rd->txn, h->tenant, &it->cur) != 0) {
            return NGX_ERROR;
        }

    } else {
        it->dup = 0;

        if (mdb_cursor_open(rd->txn, h->seq, &it->cur) != 0) {
            return NGX_ERROR;
        }
    }

    pl->n = 1;

start:

    for (i = 0; i < pl->n; i++) {
        pl->it[i].k.mv_data = pl->it[i].key;

        if (ngx_http_events_history_it_start(&pl->it[i], lo, hi, q->desc)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_events_history_it_start(ngx_http_events_history_it_t *it,
    uint64_t lo, uint64_t hi, ngx_uint_t desc)
{
    int      rc;
    u_char   at[8];
    MDB_val  k, d;

    it->done = 0;
    k = it->k;
    ngx_http_events_history_be64(at, desc ? hi + 1 : lo + 1);
    d.mv_size = 8;
    d.mv_data = at;

    if (it->dup) {
        rc = mdb_cursor_get(it->cur, &k, &d, MDB_GET_BOTH_RANGE);

        if (desc) {
            if (rc == 0) {
                rc = mdb_cursor_get(it->cur, &k, &d, MDB_PREV_DUP);

            } else if (rc == MDB_NOTFOUND) {
                k = it->k;
                rc = mdb_cursor_get(it->cur, &k, &d, MDB_SET);

                if (rc == 0) {
                    rc = mdb_cursor_get(it->cur, &k, &d, MDB_LAST_DUP);
                }
            }
        }

    } else {
        k.mv_size = 8;
        k.mv_data = at;
        rc = mdb_cursor_get(it->cur, &k, &d, MDB_SET_RANGE);

        if (desc) {
            if (rc == 0) {
                rc = mdb_cursor_get(it->cur, &k, &d, MDB_PREV);

            } else if (rc == MDB_NOTFOUND) {
                rc = mdb_cursor_get(it->cur, &k, &d, MDB_LAST);
            }
        }

        d = k;
    }

    if (rc == MDB_NOTFOUND) {
        it->done = 1;
        return NGX_OK;
    }

    if (rc != 0 || d.mv_size != 8) {
        return NGX_ERROR;
    }

    it->seq = ngx_http_events_history_get64(d.mv_data);

    return NGX_OK;
}


static void
ngx_http_events_history_it_step(ngx_http_events_history_it_t *it,
    ngx_uint_t desc)
{
    int      rc;
    MDB_val  k, d;

    if (it->dup) {
        rc = mdb_cursor_get(it->cur, &k, &d, desc ? MDB_PREV_DUP
                                                   : MDB_NEXT_DUP);
    } else {
        rc = mdb_cursor_get(it->cur, &k, &d, desc ? MDB_PREV : MDB_NEXT);
        d = k;
    }

    if (rc != 0 || d.mv_size != 8) {
        it->done = 1;
        return;
    }

    it->seq = ngx_http_events_history_get64(d.mv_data);
}


/* the next candidate in the plan's order, 0: none left in range */

static uint64_t
ngx_http_events_history_plan_next(ngx_http_events_history_plan_t *pl)
{
    uint64_t                       seq;
    ngx_uint_t                     i, best;
    ngx_http_events_history_it_t  *it;

    if (pl->empty) {
        return 0;
    }

    best = pl->n;

    for (i = 0; i < pl->n; i++) {
        it = &pl->it[i];

        if (it->done) {
            continue;
        }

        if (best == pl->n
            || (pl->desc ? it->seq > pl->it[best].seq
                         : it->seq < pl->it[best].seq))
        {
            best = i;
        }
    }

    if (best == pl->n) {
        return 0;
    }

    seq = pl->it[best].seq;

    if (pl->desc ? seq <= pl->lo : seq > pl->hi) {
        pl->empty = 1;
        return 0;
    }

    ngx_http_events_history_it_step(&pl->it[best], pl->desc);

    return seq;
}


static void
ngx_http_events_history_plan_close(ngx_http_events_history_plan_t *pl)
{
    ngx_uint_t  i;

    for (i = 0; i < pl->n; i++) {
        if (pl->it[i].cur) {
            mdb_cursor_close(pl->it[i].cur);
            pl->it[i].cur = NULL;
        }
    }

    pl->n = 0;
}


static ngx_uint_t
ngx_http_events_history_match(ngx_http_events_query_t *q,
    ngx_http_events_history_rec_t *r)
{
    if (!q->any_tenant
        && (r->tenant.len != q->tenant.len
            || ngx_memcmp(r->tenant.data, q->tenant.data, q->tenant.len)
               != 0))
    {
        return 0;
    }

    if (q->ntypes && !ngx_http_events_match_any(q->types, q->ntypes,
                                                 &r->type))
    {
        return 0;
    }

    if (q->rtype.len
        && (q->rtype.len != r->rtype.len
            || ngx_memcmp(q->rtype.data, r->rtype.data, r->rtype.len) != 0))
    {
        return 0;
    }

    if (q->rid.len
        && (q->rid.len != r->rid.len
            || ngx_memcmp(q->rid.data, r->rid.data, r->rid.len) != 0))
    {
        return 0;
    }

    if (q->source.len
        && (q->source.len != r->source.len
            || ngx_memcmp(q->source.data, r->source.data, r->source.len)
               != 0))
    {
        return 0;
    }

    if (q->action && q->action != r->action) {
        return 0;
    }

    if (q->since_ms >= 0 && r->time_ms < (uint64_t) q->since_ms) {
        return 0;
    }

    if (q->until_ms >= 0 && r->time_ms > (uint64_t) q->until_ms) {
        return 0;
    }

    /* metadata is not indexed: checked on the envelope read from disk */
    return ngx_http_events_match_metadata(q->meta, q->nmeta, r->json.data,
                                          r->json.len);
}


/* NGX_OK: a match in *r; NGX_DECLINED: not one */

static ngx_int_t
ngx_http_events_history_candidate(ngx_http_events_history_t *h,
    ngx_http_events_history_rd_t *rd, ngx_http_events_query_t *q,
    ngx_http_events_history_plan_t *pl, uint64_t seq,
    ngx_http_events_history_rec_t *r)
{
    ngx_int_t                      rc;
    ngx_http_events_history_loc_t  loc;

    if (ngx_http_events_history_loc(h, rd->txn, seq, &loc) != NGX_OK) {
        return NGX_DECLINED;
    }

    if (!q->any_tenant && loc.tenant != pl->tenant) {
        return NGX_DECLINED;
    }

    rc = ngx_http_events_history_read(h, rd, &loc, seq, r);
    if (rc != NGX_OK) {
        return rc;
    }

    return ngx_http_events_history_match(q, r) ? NGX_OK : NGX_DECLINED;
}


/*
 * A page from disk, with the ring's paging rules: ascending, "next"
 * goes on from the last event looked at; descending, from the last
 * one returned.  At most NGX_HTTP_EVENTS_HISTORY_SCAN records are read
 * for one page, so a rare match behind many that do not costs a few
 * pages, not a stalled worker.
 */

ngx_int_t
ngx_http_events_history_query(ngx_http_events_history_t *h,
    ngx_http_events_query_t *q, ngx_pool_t *pool,
    ngx_http_events_result_t *res)
{
    (void) ngx_atomic_fetch_add(
                  &ngx_http_events_journal_history(h->journal)->worker_reads,
                  1);
    (void) ngx_http_events_history_catchup(h);

    return ngx_http_events_history_query_rd(h, &h->rd, q, pool, res);
}


/* the page itself: in the worker, or in a thread with a reader of its own */

ngx_int_t
ngx_http_events_history_query_rd(ngx_http_events_history_t *h,
    ngx_http_events_history_rd_t *rd, ngx_http_events_query_t *q,
    ngx_pool_t *pool, ngx_http_events_result_t *res)
{
    u_char                          *p;
    uint64_t                         lo, hi, head, last, seq, indexed;
    ngx_int_t                        rc;
    ngx_uint_t                       scanned, budget;
    ngx_http_events_item_t          *item;
    ngx_http_events_history_rec_t    r;
    ngx_http_events_history_plan_t   pl;

    head = res->window.head_seq;
    indexed = ngx_http_events_journal_history(h->journal)->indexed;

    lo = ngx_max(q->after, res->window.evicted_seq);
    hi = q->before ? ngx_min(q->before - 1, head) : head;
    hi = ngx_min(hi, indexed);

    if (!q->desc) {
        last = q->after;

    } else {
        last = q->before ? q->before : head + 1;
    }

    budget = ngx_min(q->scan_limit, NGX_HTTP_EVENTS_HISTORY_SCAN);

    if (ngx_http_events_history_rtxn(h, rd) != NGX_OK) {
        return NGX_ERROR;
    }

    rc = ngx_http_events_history_plan(h, rd, q, lo, hi, &pl);

    for (scanned = 0; rc == NGX_OK; /* void */) {

        seq = ngx_http_events_history_plan_next(&pl);
        if (seq == 0) {
            break;
        }

        if (scanned++ == budget) {
            res->has_more = 1;
            break;
        }

        rc = ngx_http_events_history_candidate(h, rd, q, &pl, seq, &r);

        if (rc == NGX_DECLINED) {
            last = seq;
            rc = NGX_OK;
            continue;
        }

        if (rc != NGX_OK) {
            break;
        }

        if (res->items.nelts == q->limit) {
            res->has_more = 1;
            break;
        }

        p = ngx_pnalloc(pool, r.json.len);
        item = ngx_array_push(&res->items);

        if (p == NULL || item == NULL) {
            rc = NGX_ERROR;
            break;
        }

        ngx_memcpy(p, r.json.data, r.json.len);

        item->seq = seq;
        item->json.data = p;
        item->json.len = r.json.len;
        ngx_str_null(&item->type);
        ngx_str_null(&item->id);
        ngx_str_null(&item->tenant);

        last = seq;
    }

    ngx_http_events_history_plan_close(&pl);
    ngx_http_events_history_rdone(rd);

    if (rc != NGX_OK) {
        return rc == NGX_AGAIN ? NGX_AGAIN : NGX_ERROR;
    }

    if (!q->desc && !res->has_more && indexed < head) {
        /* the newest are not indexed yet: the next page has them */
        res->has_more = 1;
        last = ngx_max(last, indexed);
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


ngx_int_t
ngx_http_events_history_get(ngx_http_events_history_t *h, ngx_str_t *tenant,
    ngx_str_t *id, ngx_pool_t *pool, ngx_str_t *json)
{
    (void) ngx_atomic_fetch_add(
                  &ngx_http_events_journal_history(h->journal)->worker_reads,
                  1);
    (void) ngx_http_events_history_catchup(h);

    return ngx_http_events_history_get_rd(h, &h->rd, tenant, id, pool, json);
}


ngx_int_t
ngx_http_events_history_get_rd(ngx_http_events_history_t *h,
    ngx_http_events_history_rd_t *rd, ngx_str_t *tenant, ngx_str_t *id,
    ngx_pool_t *pool, ngx_str_t *json)
{
    u_char                          key[4 + NGX_HTTP_EVENTS_MAX_ID], *p;
    MDB_val                         k, v;
    uint32_t                        tid;
    ngx_int_t                       rc;
    ngx_http_events_history_rec_t   r;
    ngx_http_events_history_loc_t   loc;
    ngx_http_events_history_idv_t   idv;

    if (id->len > NGX_HTTP_EVENTS_MAX_ID) {
        return NGX_DECLINED;
    }

    if (ngx_http_events_history_rtxn(h, rd) != NGX_OK) {
        return NGX_ERROR;
    }

    rc = NGX_DECLINED;

    if (ngx_http_events_history_tenant(h, rd->txn, tenant, 0, &tid)
        != NGX_OK)
    {
        goto done;
    }

    ngx_http_events_history_be32(key, tid);
    p = ngx_cpymem(key + 4, id->data, id->len);
    k.mv_size = p - key;
    k.mv_data = key;

    if (mdb_get(rd->txn, h->id, &k, &v) != 0
        || v.mv_size != sizeof(ngx_http_events_history_idv_t))
    {
        goto done;
    }

    ngx_memcpy(&idv, v.mv_data, sizeof(ngx_http_events_history_idv_t));

    if (idv.seq <= ngx_http_events_journal_history(h->journal)->gone
        || idv.seq > ngx_http_events_store_head(h->journal->store)
        || ngx_http_events_history_loc(h, rd->txn, idv.seq, &loc) != NGX_OK
        || loc.tenant != tid)
    {
        goto done;
    }

    rc = ngx_http_events_history_read(h, rd, &loc, idv.seq, &r);
    if (rc != NGX_OK) {
        goto done;
    }

    p = ngx_pnalloc(pool, r.json.len);
    if (p == NULL) {
        rc = NGX_ERROR;
        goto done;
    }

    ngx_memcpy(p, r.json.data, r.json.len);
    json->data = p;
    json->len = r.json.len;

done:

    ngx_http_events_history_rdone(rd);

    return rc;
}


/* the catalog of a tenant over everything retained */

ngx_int_t
ngx_http_events_history_types(ngx_http_events_history_t *h,
    ngx_str_t *tenant, ngx_pool_t *pool, ngx_array_t *types)
{
    /*
     * Like every read of the index, the indexer first: worker 0 runs it
     * only every few milliseconds, and a catalog read between its turns
     * would miss the events a client was just answered 201 for.  It
     * reads no record: not one of the status page's reads.  (The API
     * waits for the indexer in its thread instead: see post().)
     */

    (void) ngx_http_events_history_catchup(h);

    return ngx_http_events_history_types_indexed(h, tenant, pool, types);
}


static ngx_int_t
ngx_http_events_history_types_indexed(ngx_http_events_history_t *h,
    ngx_str_t *tenant, ngx_pool_t *pool, ngx_array_t *types)
{
    u_char                          key[4], *p;
    uint32_t                        tid;
    uint64_t                        gone;
    ngx_int_t                       rc, ret;
    ngx_str_t                       name;
    MDB_cursor                     *cur, *tcur;
    ngx_http_events_type_info_t    *ti;
    ngx_http_events_history_cat_t   cat;

    /*
     * Retention moves "gone" first and removes index entries (and
     * counts) after it, a batch per turn: the entries between are
     * taken off here, so that the catalog says what lists say.
     */

    gone = ngx_http_events_journal_history(h->journal)->gone;
    ngx_memory_barrier();

    if (ngx_http_events_history_rtxn(h, &h->rd) != NGX_OK) {
        return NGX_ERROR;
    }

    ret = NGX_OK;

    if (ngx_http_events_history_tenant(h, h->rd.txn, tenant, 0, &tid)
        != NGX_OK)
    {
        goto done;
    }

    if (mdb_cursor_open(h->rd.txn, h->catalog, &cur) != 0) {
        ret = NGX_ERROR;
        goto done;
    }

    if (mdb_cursor_open(h->rd.txn, h->type, &tcur) != 0) {
        mdb_cursor_close(cur);
        ret = NGX_ERROR;
        goto done;
    }

    ngx_http_events_history_be32(key, tid);

    for (rc = ngx_http_events_history_catalog(cur, key, 1, &name, &cat);
         rc != NGX_DONE;
         rc = ngx_http_events_history_catalog(cur, key, 0, &name, &cat))
    {
        if (rc != NGX_OK) {
            continue;
        }

        if (cat.count && gone) {
            cat.count -= ngx_min(cat.count,
                                 ngx_http_events_history_pending(tcur, tid,
                                                                 cat.type,
                                                                 gone));
        }

        if (cat.count == 0) {
            continue;
        }

        ti = ngx_array_push(types);
        p = ngx_pnalloc(pool, name.len);

        if (ti == NULL || p == NULL) {
            ret = NGX_ERROR;
            break;
        }

        ngx_memcpy(p, name.data, name.len);

        ti->type.data = p;
        ti->type.len = name.len;
        ti->count = cat.count;
        ti->last_ms = cat.last_ms;
    }

    mdb_cursor_close(tcur);
    mdb_cursor_close(cur);

done:

    ngx_http_events_history_rdone(&h->rd);

    return ret;
}


/*
 * A tenant's entries of the catalog in order, "first" from the start:
 * the type's name and its entry.  NGX_DECLINED: an entry of another
 * size (the name is set); NGX_DONE: past the tenant's.
 */

static ngx_int_t
ngx_http_events_history_catalog(MDB_cursor *cur, u_char *tenant,
    ngx_uint_t first, ngx_str_t *name, ngx_http_events_history_cat_t *cat)
{
    MDB_val  k, v;

    k.mv_size = 4;
    k.mv_data = tenant;

    if (mdb_cursor_get(cur, &k, &v, first ? MDB_SET_RANGE : MDB_NEXT) != 0
        || k.mv_size < 4 || ngx_memcmp(k.mv_data, tenant, 4) != 0)
    {
        return NGX_DONE;
    }

    name->data = (u_char *) k.mv_data + 4;
    name->len = k.mv_size - 4;

    if (v.mv_size != sizeof(ngx_http_events_history_cat_t)) {
        return NGX_DECLINED;
    }

    ngx_memcpy(cat, v.mv_data, sizeof(ngx_http_events_history_cat_t));

    return NGX_OK;
}


/*
 * How many of a type's entries retention removed but has not taken out
 * of the index yet: its oldest seqs up to "gone".  One lookup when the
 * sweep is done; at most its backlog otherwise, walked in packed pages.
 */

static uint64_t
ngx_http_events_history_pending(MDB_cursor *cur, uint32_t tenant,
    uint32_t type, uint64_t gone)
{
    int       rc;
    u_char    key[8];
    MDB_val   k, d;
    uint64_t  n;

    ngx_http_events_history_be32(key, tenant);
    ngx_http_events_history_be32(key + 4, type);
    k.mv_size = 8;
    k.mv_data = key;
    n = 0;

    for (rc = mdb_cursor_get(cur, &k, &d, MDB_SET_KEY);
         rc == 0 && d.mv_size == 8
         && ngx_http_events_history_get64(d.mv_data) <= gone;
         rc = mdb_cursor_get(cur, &k, &d, MDB_NEXT_DUP))
    {
        n++;
    }

    return n;
}


/*
 * What a stream or a webhook reads, one matching event at a time, from
 * disk while "after" is older than the ring: the same contract as the
 * store's next().  The candidates of a walk are kept for the next call
 * (a stream asks for one event at a time, thousands in a row), keyed by
 * the query and the position, so one index walk serves 64 of them.
 */

ngx_int_t
ngx_http_events_history_next(ngx_http_events_history_t *h,
    ngx_http_events_query_t *q, uint64_t after, uint64_t head,
    ngx_uint_t budget, ngx_http_events_scratch_t *scratch,
    ngx_http_events_item_t *item, uint64_t *last)
{
    u_char                          *p;
    uint64_t                         seq, indexed, key;
    ngx_int_t                        rc;
    ngx_uint_t                       n;
    ngx_http_events_history_rec_t    r;
    ngx_http_events_history_sh_t    *hsh;
    ngx_http_events_history_loc_t   *loc;

    hsh = ngx_http_events_journal_history(h->journal);
    *last = after;

    if (after < hsh->gone) {
        return NGX_DECLINED;
    }

#if (NGX_THREADS)
    if (h->tix && hsh->indexed > after) {
        /*
         * What is indexed is read now, the rest after the indexer's
         * next batch (in a thread) or from the ring: the caller goes
         * on from the ring where the index stops, or comes back.
         */
        ngx_http_events_history_kick(h);

    } else {
        (void) ngx_http_events_history_catchup(h);
    }
#else
    (void) ngx_http_events_history_catchup(h);
#endif

    /* up to what is indexed; NGX_DONE there hands over to the ring */
    indexed = hsh->indexed;
    head = ngx_min(head, indexed);

    if (after >= head) {
        *last = head;
        return NGX_DONE;
    }

    key = ngx_http_events_history_qkey(q);

    if (h->nq != q || h->nkey != key || h->nafter != after) {
        if (ngx_http_events_history_fill(h, q, after, head) != NGX_OK) {
            return NGX_ERROR;
        }

        h->nkey = key;
    }

    budget = ngx_min(budget, NGX_HTTP_EVENTS_HISTORY_SCAN);

    for (n = 0; n < budget; n++) {

        if (h->ni == h->nn) {
            if (h->nend >= head) {
                *last = head;
                h->nq = NULL;
                return NGX_DONE;
            }

            if (ngx_http_events_history_fill(h, q, h->nend, head) != NGX_OK)
            {
                return NGX_ERROR;
            }

            h->nkey = key;
            continue;
        }

        seq = h->nseqs[h->ni];
        loc = &h->nlocs[h->ni];
        h->ni++;

        rc = ngx_http_events_history_read(h, &h->rd, loc, seq, &r);

        if (rc != NGX_OK) {
            if (seq <= hsh->gone) {
                /* removed by retention under us */
                h->nq = NULL;
                return NGX_DECLINED;
            }

            *last = seq;
            continue;
        }

        if (!ngx_http_events_history_match(q, &r)) {
            *last = seq;
            continue;
        }

        if (r.json.len > scratch->size) {
            p = ngx_alloc(r.json.len, ngx_cycle->log);
            if (p == NULL) {
                h->nq = NULL;
                return NGX_ERROR;
            }

            if (scratch->data) {
                ngx_free(scratch->data);
            }

            scratch->data = p;
            scratch->size = r.json.len;
        }

        ngx_memcpy(scratch->data, r.json.data, r.json.len);
        ngx_memcpy(scratch->type, r.type.data, r.type.len);
        ngx_memcpy(scratch->id, r.id.data, r.id.len);
        ngx_memcpy(scratch->tenant, r.tenant.data, r.tenant.len);

        item->seq = seq;
        item->id.data = scratch->id;
        item->id.len = r.id.len;
        item->tenant.data = scratch->tenant;
        item->tenant.len = r.tenant.len;
        item->json.data = scratch->data;
        item->json.len = r.json.len;
        item->type.data = scratch->type;
        item->type.len = r.type.len;

        *last = seq;
        h->nafter = seq;

        return NGX_OK;
    }

    h->nafter = *last;

    return NGX_AGAIN;
}


/* the next candidates of a query after a position, into the cache */

static ngx_int_t
ngx_http_events_history_fill(ngx_http_events_history_t *h,
    ngx_http_events_query_t *q, uint64_t after, uint64_t head)
{
    uint64_t                         seq;
    ngx_int_t                        rc;
    ngx_http_events_query_t          qa;
    ngx_http_events_history_plan_t   pl;

    h->nq = NULL;
    h->nn = 0;
    h->ni = 0;
    h->nend = head;

    if (ngx_http_events_history_rtxn(h, &h->rd) != NGX_OK) {
        return NGX_ERROR;
    }

    /* streams have no time range; the records' times are checked */
    qa = *q;
    qa.desc = 0;
    qa.since_ms = -1;
    qa.until_ms = -1;

    rc = ngx_http_events_history_plan(h, &h->rd, &qa, after, head, &pl);

    while (rc == NGX_OK && h->nn < NGX_HTTP_EVENTS_HISTORY_NEXT) {

        seq = ngx_http_events_history_plan_next(&pl);
        if (seq == 0) {
            h->nend = head;
            break;
        }

        h->nend = seq;

        if (ngx_http_events_history_loc(h, h->rd.txn, seq, &h->nlocs[h->nn])
            != NGX_OK
            || (!q->any_tenant && h->nlocs[h->nn].tenant != pl.tenant))
        {
            continue;
        }

        h->nseqs[h->nn++] = seq;
    }

    ngx_http_events_history_plan_close(&pl);
    ngx_http_events_history_rdone(&h->rd);

    if (rc != NGX_OK) {
        return NGX_ERROR;
    }

    h->nq = q;
    h->nafter = after;

    return NGX_OK;
}


/* what a query asks for, as a number: the cache's key */

static uint64_t
ngx_http_events_history_qkey(ngx_http_events_query_t *q)
{
    uint32_t    crc;
    ngx_uint_t  i;

    ngx_crc32_init(crc);
    ngx_crc32_update(&crc, q->tenant.data, q->tenant.len);
    ngx_crc32_update(&crc, (u_char *) "\0", 1);

    for (i = 0; i < q->ntypes; i++) {
        ngx_crc32_update(&crc, q->types[i].data, q->types[i].len);
        ngx_crc32_update(&crc, (u_char *) ",", 1);
    }

    ngx_crc32_update(&crc, (u_char *) "\0", 1);
    ngx_crc32_update(&crc, q->rtype.data, q->rtype.len);
    ngx_crc32_update(&crc, (u_char *) "\0", 1);
    ngx_crc32_update(&crc, q->rid.data, q->rid.len);
    ngx_crc32_final(crc);

    return ((uint64_t) crc << 32) | (q->ntypes << 2) | (q->any_tenant << 1)
           | (q->rid.len != 0);
}


/*
 * Retention, in worker 0 every second (more often while it has work
 * left): "gone" moves past what max_age and max_size (the journal's
 * "size_gone") remove, at once for every reader; the index entries
 * under it are then removed a bounded number at a time, and *cleaned
 * tells the journal up to which seq segments may be deleted.
 */

void
ngx_http_events_history_sweep(ngx_http_events_history_t *h,
    uint64_t now_ms, uint64_t *cleaned)
{
    u_char                         key[8];
    MDB_val                        k, v;
    uint64_t                       gone, first;
    ngx_int_t                      rc;
    MDB_cursor                    *cur;
    ngx_http_events_history_sh_t  *hsh;

    hsh = ngx_http_events_journal_history(h->journal);
    gone = ngx_max(hsh->gone, *cleaned);

    if (h->max_age && now_ms > h->max_age
        && ngx_http_events_history_rtxn(h, &h->rd) == NGX_OK)
    {
        /* the newest event older than max_age */

        rc = ngx_http_events_history_at(h, h->rd.txn, now_ms - h->max_age,
                                        &first);

        if (rc == NGX_DECLINED) {
            first = ngx_http_events_store_head(h->journal->store) + 1;
        }

        if (rc != NGX_ERROR && first > gone + 1
            && mdb_cursor_open(h->rd.txn, h->seq, &cur) == 0)
        {
            ngx_http_events_history_be64(key, first);
            k.mv_size = 8;
            k.mv_data = key;

            if (mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE) == 0) {
                if (mdb_cursor_get(cur, &k, &v, MDB_PREV) == 0) {
                    gone = ngx_max(gone,
                                   ngx_http_events_history_get64(k.mv_data));
                }

            } else if (mdb_cursor_get(cur, &k, &v, MDB_LAST) == 0) {
                gone = ngx_max(gone, ngx_http_events_history_get64(k.mv_data));
            }

            mdb_cursor_close(cur);
        }

        ngx_http_events_history_rdone(&h->rd);
    }

    /* never past what the index has: its entries are what goes */
    gone = ngx_min(gone, hsh->indexed);

    if (gone > hsh->gone) {
        ngx_log_error(NGX_LOG_INFO, ngx_cycle->log, 0,
                      "events zone \"%V\": history: events up to seq %uL "
                      "removed by retention", &h->journal->zone, gone);

        ngx_memory_barrier();
        hsh->gone = gone;
    }

    if (hsh->cleaned < hsh->gone) {
        (void) ngx_http_events_history_clean(h, hsh, hsh->gone);
    }

    *cleaned = hsh->cleaned;
}


static ngx_int_t
ngx_http_events_history_clean(ngx_http_events_history_t *h,
    ngx_http_events_history_sh_t *hsh, uint64_t gone)
{
    int                             rc;
    MDB_txn                        *txn;
    MDB_val                         k, v;
    uint64_t                        seq, upto, first_ms;
    ngx_uint_t                      n;
    MDB_cursor                     *cur;
    ngx_http_events_history_loc_t   loc;

    rc = mdb_txn_begin(h->env, NULL, 0, &txn);
    if (rc != 0) {
        goto failed;
    }

    rc = mdb_cursor_open(txn, h->seq, &cur);
    if (rc != 0) {
        mdb_txn_abort(txn);
        goto failed;
    }

    upto = hsh->cleaned;

    for (n = 0; n < NGX_HTTP_EVENTS_HISTORY_CLEAN; n++) {
        rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);

        if (rc == MDB_NOTFOUND) {
            upto = gone;
            rc = 0;
            break;
        }

        if (rc != 0 || k.mv_size != 8 || v.mv_size != sizeof(loc)) {
            rc = rc ? rc : MDB_CORRUPTED;
            break;
        }

        seq = ngx_http_events_history_get64(k.mv_data);

        if (seq > gone) {
            upto = gone;
            break;
        }

        ngx_memcpy(&loc, v.mv_data, sizeof(loc));

        if (ngx_http_events_history_unindex(h, txn, seq, &loc) != NGX_OK) {
            rc = MDB_PROBLEM;
            break;
        }

        rc = mdb_cursor_del(cur, 0);
        if (rc != 0) {
            break;
        }

        upto = seq;
        hsh->removed++;
    }

    /* times before the oldest event left */

    if (rc == 0) {
        rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);

        if (rc == 0 && v.mv_size == sizeof(loc)) {
            ngx_memcpy(&loc, v.mv_data, sizeof(loc));
            first_ms = loc.time_ms;

        } else {
            first_ms = (uint64_t) -1;
        }

        mdb_cursor_close(cur);
        rc = mdb_cursor_open(txn, h->time, &cur);

        while (rc == 0) {
            rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);

            if (rc != 0 || k.mv_size != 8
                || ngx_http_events_history_get64(k.mv_data) >= first_ms)
            {
                rc = 0;
                break;
            }

            rc = mdb_cursor_del(cur, 0);
        }
    }

    if (rc == 0
        && (ngx_http_events_history_put_meta(h, txn, "gone", gone) != NGX_OK
            || ngx_http_events_history_put_meta(h, txn, "cleaned", upto)
               != NGX_OK))
    {
        rc = MDB_PROBLEM;
    }

    if (rc != 0) {
        mdb_txn_abort(txn);
        goto failed;
    }

    rc = mdb_txn_commit(txn);
    if (rc != 0) {
        goto failed;
    }

    hsh->cleaned = upto;

    return NGX_OK;

failed:

    hsh->errors++;
    ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                  "events zone \"%V\": history index \"%V\": removing "
                  "expired entries failed: %s", &h->journal->zone,
                  &h->file, mdb_strerror(rc));

    return NGX_ERROR;
}


/* one event out of the secondary indexes: its keys are in its record */

static ngx_int_t
ngx_http_events_history_unindex(ngx_http_events_history_t *h, MDB_txn *txn,
    uint64_t seq, ngx_http_events_history_loc_t *loc)
{
    u_char                          key[NGX_HTTP_EVENTS_HISTORY_KEY];
    u_char                          sq[8], *p;
    MDB_val                         k, v;
    ngx_http_events_history_rec_t   r;
    ngx_http_events_history_cat_t   cat;
    ngx_http_events_history_idv_t   idv;

    ngx_http_events_history_be64(sq, seq);
    ngx_http_events_history_be32(key, loc->tenant);

    k.mv_size = 4;
    k.mv_data = key;
    v.mv_size = 8;
    v.mv_data = sq;
    (void) mdb_del(txn, h->tenant, &k, &v);

    if (ngx_http_events_history_read(h, &h->rd, loc, seq, &r) != NGX_OK) {
        /* its keys are lost with it: only a rebuild drops the rest */
        return NGX_OK;
    }

    p = ngx_cpymem(key + 4, r.type.data, r.type.len);
    k.mv_size = p - key;

    if (mdb_get(txn, h->catalog, &k, &v) == 0
        && v.mv_size == sizeof(ngx_http_events_history_cat_t))
    {
        ngx_memcpy(&cat, v.mv_data, sizeof(ngx_http_events_history_cat_t));

        if (cat.count) {
            cat.count--;
        }

        /* the type keeps its number: seqs under it may remain */
        v.mv_size = sizeof(ngx_http_events_history_cat_t);
        v.mv_data = &cat;

        if (mdb_put(txn, h->catalog, &k, &v, 0) != 0) {
            return NGX_ERROR;
        }

        ngx_http_events_history_be32(key + 4, cat.type);
        k.mv_size = 8;
        v.mv_size = 8;
        v.mv_data = sq;
        (void) mdb_del(txn, h->type, &k, &v);
    }

    if (r.rid.len) {
        p = ngx_cpymem(key + 4, r.rtype.data, r.rtype.len);
        *p++ = '\0';
        p = ngx_cpymem(p, r.rid.data, r.rid.len);
        k.mv_size = p - key;
        v.mv_size = 8;
        v.mv_data = sq;
        (void) mdb_del(txn, h->entity, &k, &v);
    }

    p = ngx_cpymem(key + 4, r.id.data, r.id.len);
    k.mv_size = p - key;

    if (mdb_get(txn, h->id, &k, &v) == 0
        && v.mv_size == sizeof(ngx_http_events_history_idv_t))
    {
        ngx_memcpy(&idv, v.mv_data, sizeof(ngx_http_events_history_idv_t));

        if (idv.seq == seq) {
            (void) mdb_del(txn, h->id, &k, NULL);
        }
    }

    return NGX_OK;
}


static ngx_inline void
ngx_http_events_history_be64(u_char *p, uint64_t v)
{
    ngx_uint_t  i;

    for (i = 8; i > 0; i--) {
        p[i - 1] = (u_char) (v & 0xff);
        v >>= 8;
    }
}


static ngx_inline uint64_t
ngx_http_events_history_get64(u_char *p)
{
    uint64_t    v;
    ngx_uint_t  i;

    v = 0;

    for (i = 0; i < 8; i++) {
        v = (v << 8) | p[i];
    }

    return v;
}


static ngx_inline void
ngx_http_events_history_be32(u_char *p, uint32_t v)
{
    p[0] = (u_char) (v >> 24);
    p[1] = (u_char) (v >> 16);
    p[2] = (u_char) (v >> 8);
    p[3] = (u_char) v;
}
