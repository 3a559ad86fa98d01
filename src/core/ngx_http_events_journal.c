
/*
 * Copyright (C) ngx_http_events_module authors
 */


/*
 * The journal: every event the store accepts, appended to segment files
 * under one directory per zone, and read back into the ring at start.
 *
 *   PATH/00000000000000000001.evj     segments, named by their first seq
 *   PATH/00000000000000004242.evj
 *
 * A segment is a header (magic, epoch, first seq, checksum) and then
 * records: magic, kind, length, crc32, seq, time, and for an event the
 * keys the indexes need and the envelope as stored.  Integers are in
 * the host's byte order: a journal moves between machines of the same
 * architecture only.
 *
 * Writers hold the zone's mutex: the records of a request go to the
 * file with one write(2) just before the ring publishes them, so the
 * journal is in seq order and a write the disk refuses leaves nothing
 * published.  Each worker keeps its own O_APPEND descriptor; the
 * segment being written is recorded in the zone, and a worker reopens
 * when it changed.  With fsync=always the request waits, outside the
 * lock, for an fdatasync() that covers its bytes, run in a thread so
 * that the worker goes on.  The group commit is the zone's: a sync,
 * whichever worker runs it, covers what all of them wrote before it
 * started; the zone knows how far the file is durable, and
 * the workers whose requests a sync covered are rung (see "fsync=always
 * without blocking the worker" below).
 *
 * The master replays the journal when it creates the zone (a start, or
 * a reload that resized the zone); a reused zone already has it all.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>

#include <dirent.h>
#include <sys/mman.h>
#include <zlib.h>

#include "ngx_http_events_journal.h"


#define NGX_HTTP_EVENTS_JOURNAL_MAGIC    "EVJ1"
#define NGX_HTTP_EVENTS_JOURNAL_SUFFIX   ".evj"
#define NGX_HTTP_EVENTS_JOURNAL_NAME_LEN (20 + sizeof(".evj") - 1)

#define NGX_HTTP_EVENTS_JOURNAL_SEGMENT  (64 * 1024 * 1024)
#define NGX_HTTP_EVENTS_JOURNAL_SWEEP    1000
#define NGX_HTTP_EVENTS_JOURNAL_FOLLOW   10     /* ms: another's sync */
#define NGX_HTTP_EVENTS_JOURNAL_GATHER   1      /* ms: commit delay, most */
#define NGX_HTTP_EVENTS_JOURNAL_SKIP     8      /* syncs without, on a miss */


typedef struct {
    u_char                      magic[4];
    uint32_t                    size;           /* of this header */
    uint64_t                    epoch;
    uint64_t                    first_seq;
    uint32_t                    reserved;
    uint32_t                    crc;            /* of the bytes before */
} ngx_http_events_journal_hdr_t;


/* what became of one record at replay */
typedef enum {
    NGX_HTTP_EVENTS_JOURNAL_REC_OK = 0,
    NGX_HTTP_EVENTS_JOURNAL_REC_ERROR = -1,     /* no memory: stop */
    NGX_HTTP_EVENTS_JOURNAL_REC_MALFORMED = 1   /* checksummed, not ours */
} ngx_http_events_journal_rec_rc_e;


typedef struct {
    uint64_t                    first;
    off_t                       size;
    time_t                      mtime;
} ngx_http_events_journal_seg_t;


/* what a replay found, for the log and the zone */
typedef struct {
    uint64_t                    epoch;
    uint64_t                    last_seq;
    uint64_t                    last_ms;
    uint64_t                    gone;
    uint64_t                    replayed;
    uint64_t                    skipped;
    uint64_t                    cut;
    uint64_t                    bytes;
    uint64_t                    segments;
    uint64_t                    now;
    u_char                     *buf;            /* an envelope template */
    size_t                      size;
    unsigned                    damaged:1;      /* cut, not at a torn tail */
} ngx_http_events_replay_t;


static char *ngx_http_events_journal_param(ngx_conf_t *cf,
    ngx_http_events_journal_t *j, ngx_str_t *v);
static ngx_int_t ngx_http_events_journal_secret(ngx_http_events_journal_t *j,
    ngx_log_t *log, ngx_uint_t from_zone);
static ngx_int_t ngx_http_events_journal_dir(ngx_http_events_journal_t *j,
    ngx_log_t *log);
static ngx_int_t ngx_http_events_journal_parent(
    ngx_http_events_journal_t *j, ngx_log_t *log);
static ngx_int_t ngx_http_events_journal_probe(ngx_http_events_journal_t *j,
    ngx_core_conf_t *ccf, ngx_log_t *log);
static ngx_int_t ngx_http_events_journal_list(ngx_http_events_journal_t *j,
    ngx_pool_t *pool, ngx_array_t *segs, ngx_log_t *log);
static int ngx_libc_cdecl ngx_http_events_journal_cmp(const void *one,
    const void *two);
static ngx_int_t ngx_http_events_journal_replay(ngx_http_events_journal_t *j,
    ngx_log_t *log);
static ngx_int_t ngx_http_events_journal_replay_segment(
    ngx_http_events_journal_t *j, ngx_http_events_journal_seg_t *seg,
    ngx_uint_t last, ngx_http_events_replay_t *rp, ngx_log_t *log);
static ngx_int_t ngx_http_events_journal_records(ngx_http_events_journal_t *j,
    u_char *name, u_char *map, off_t size, ngx_uint_t last,
    ngx_http_events_replay_t *rp, ngx_log_t *log);
static ngx_http_events_journal_rec_rc_e ngx_http_events_journal_restore(
    ngx_http_events_journal_t *j, ngx_http_events_journal_rec_t *rec,
    u_char *body, ngx_http_events_replay_t *rp, ngx_log_t *log);
static void ngx_http_events_journal_cut(ngx_http_events_journal_t *j,
    u_char *name, off_t off, off_t size, ngx_uint_t last, ngx_uint_t torn,
    const char *why, ngx_http_events_replay_t *rp, ngx_log_t *log);
static u_char *ngx_http_events_journal_name(ngx_http_events_journal_t *j,
    u_char *buf, uint64_t first);
static ngx_int_t ngx_http_events_journal_repair_locked(
    ngx_http_events_journal_t *j, ngx_http_events_journal_sh_t *jsh);
static ngx_int_t ngx_http_events_journal_rotate_locked(
    ngx_http_events_journal_t *j, ngx_http_events_journal_sh_t *jsh,
    uint64_t first);
static ngx_int_t ngx_http_events_journal_open_locked(
    ngx_http_events_journal_t *j, ngx_http_events_journal_sh_t *jsh);
static ngx_int_t ngx_http_events_journal_fsync_locked(
    ngx_http_events_journal_t *j, ngx_http_events_journal_sh_t *jsh);
static void ngx_http_events_journal_sync_dir(ngx_http_events_journal_t *j);
static void ngx_http_events_journal_sync_handler(ngx_event_t *ev);
#if (NGX_THREADS)
static ngx_int_t ngx_http_events_journal_durable_locked(
    ngx_http_events_journal_sh_t *jsh, uint64_t end);
static ngx_int_t ngx_http_events_journal_claim_locked(
    ngx_http_events_journal_t *j, ngx_http_events_journal_sh_t *jsh,
    ngx_uint_t force);
static void ngx_http_events_journal_release_locked(
    ngx_http_events_journal_sh_t *jsh);
static ngx_int_t ngx_http_events_journal_post(ngx_http_events_journal_t *j);
static void ngx_http_events_journal_follow(ngx_http_events_journal_t *j,
    ngx_int_t rc);
static void ngx_http_events_journal_follow_handler(ngx_event_t *ev);
static void ngx_http_events_journal_check(ngx_http_events_journal_t *j,
    ngx_uint_t probe);
static void ngx_http_events_journal_fsync_thread(void *data, ngx_log_t *log);
static uint64_t ngx_http_events_journal_us(void);
static void ngx_http_events_journal_synced(ngx_event_t *ev);
static void ngx_http_events_journal_answer(ngx_http_events_journal_t *j,
    uint64_t synced, uint64_t fail_from, uint64_t fail_upto, ngx_uint_t all);
#endif
static void ngx_http_events_journal_sweep_handler(ngx_event_t *ev);
static void ngx_http_events_journal_sweep(ngx_http_events_journal_t *j);
static void ngx_http_events_journal_sweep_history(
    ngx_http_events_journal_t *j);
static uint64_t ngx_http_events_journal_now(void);


/* events_journal ZONE PATH [fsync=...] [interval=...] [max_size=...] ... */

char *
ngx_http_events_journal_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_array_t  **journals = (ngx_array_t **) ((char *) conf + cmd->offset);

    ngx_str_t                  *value;
    ngx_uint_t                  i;
    ngx_http_events_journal_t  *j, **jp;

    value = cf->args->elts;

    j = ngx_pcalloc(cf->pool, sizeof(ngx_http_events_journal_t));
    if (j == NULL) {
        return NGX_CONF_ERROR;
    }

    j->zone = value[1];
    j->path = value[2];
    j->fsync = NGX_HTTP_EVENTS_FSYNC_INTERVAL;
    j->interval = 1000;
    j->segment_size = NGX_CONF_UNSET;
    j->cycle = cf->cycle;
    j->fd = NGX_INVALID_FILE;

    j->history = ngx_pcalloc(cf->pool, sizeof(ngx_http_events_history_t));
    if (j->history == NULL) {
        return NGX_CONF_ERROR;
    }

    j->history->journal = j;

    while (j->path.len > 1 && j->path.data[j->path.len - 1] == '/') {
        j->path.len--;
    }

    if (ngx_conf_full_name(cf->cycle, &j->path, 0) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    j->history->file.len = j->path.len + sizeof("/index.mdb") - 1;
    j->history->file.data = ngx_pnalloc(cf->pool, j->history->file.len + 1);
    if (j->history->file.data == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_sprintf(j->history->file.data, "%V/index.mdb%Z", &j->path);

    for (i = 3; i < cf->args->nelts; i++) {
        if (ngx_http_events_journal_param(cf, j, &value[i]) != NGX_CONF_OK) {
            return NGX_CONF_ERROR;
        }
    }

    if (j->segment_size == NGX_CONF_UNSET) {
        /* several segments fit in max_size, so the limit is kept */
        j->segment_size = NGX_HTTP_EVENTS_JOURNAL_SEGMENT;

        if (j->max_size && j->max_size / 4 < j->segment_size) {
            j->segment_size = ngx_max(j->max_size / 4, 4096);
        }
    }

    if (ngx_http_events_history_conf_threads(cf, j->history) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

#if (NGX_THREADS)
    /* fsync=always syncs in nginx's default pool, as "aio threads" does */
    if (j->fsync == NGX_HTTP_EVENTS_FSYNC_ALWAYS
        && ngx_thread_pool_add(cf, NULL) == NULL)
    {
        return NGX_CONF_ERROR;
    }
#endif

    if (j->max_size && j->max_size < 2 * j->segment_size) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"max_size\" must be at least twice "
                           "\"segment_size\"");
        return NGX_CONF_ERROR;
    }

    if (*journals == NULL) {
        *journals = ngx_array_create(cf->pool, 2,
                                     sizeof(ngx_http_events_journal_t *));
        if (*journals == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    jp = (*journals)->elts;

    for (i = 0; i < (*journals)->nelts; i++) {
        if (jp[i]->zone.len == j->zone.len
            && ngx_strncmp(jp[i]->zone.data, j->zone.data, j->zone.len) == 0)
        {
            return "is duplicate for this zone";
        }

        if (jp[i]->path.len == j->path.len
            && ngx_strncmp(jp[i]->path.data, j->path.data, j->path.len) == 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "journal directory \"%V\" is already used "
                               "by zone \"%V\"", &j->path, &jp[i]->zone);
            return NGX_CONF_ERROR;
        }
    }

    jp = ngx_array_push(*journals);
    if (jp == NULL) {
        return NGX_CONF_ERROR;
    }

    *jp = j;

    return NGX_CONF_OK;
}


/* one key=value of events_journal */

static char *
ngx_http_events_journal_param(ngx_conf_t *cf, ngx_http_events_journal_t *j,
    ngx_str_t *v)
{
    off_t       size;
    ngx_str_t   s;
    ngx_msec_t  interval;

    if (ngx_strcmp(v->data, "fsync=always") == 0) {
        j->fsync = NGX_HTTP_EVENTS_FSYNC_ALWAYS;
        return NGX_CONF_OK;
    }

    if (ngx_strcmp(v->data, "fsync=interval") == 0) {
        j->fsync = NGX_HTTP_EVENTS_FSYNC_INTERVAL;
        return NGX_CONF_OK;
    }

    if (ngx_strcmp(v->data, "fsync=off") == 0) {
        j->fsync = NGX_HTTP_EVENTS_FSYNC_OFF;
        return NGX_CONF_OK;
    }

    if (ngx_strncmp(v->data, "interval=", 9) == 0) {
        s.data = v->data + 9;
        s.len = v->len - 9;

        interval = ngx_parse_time(&s, 0);
        if (interval == (ngx_msec_t) NGX_ERROR || interval == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid interval \"%V\"", v);
            return NGX_CONF_ERROR;
        }

        j->interval = interval;
        return NGX_CONF_OK;
    }

    if (ngx_strncmp(v->data, "max_size=", 9) == 0) {
        s.data = v->data + 9;
        s.len = v->len - 9;

        size = ngx_parse_offset(&s);
        if (size == NGX_ERROR || size == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid max_size \"%V\"", v);
            return NGX_CONF_ERROR;
        }

        j->max_size = size;
        return NGX_CONF_OK;
    }

    if (ngx_strncmp(v->data, "segment_size=", 13) == 0) {
        s.data = v->data + 13;
        s.len = v->len - 13;

        size = ngx_parse_offset(&s);
        if (size == NGX_ERROR || size < 4096) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid segment_size \"%V\": "
                               "at least 4k", v);
            return NGX_CONF_ERROR;
        }

        j->segment_size = size;
        return NGX_CONF_OK;
    }

    switch (ngx_http_events_history_conf(cf, j, v)) {
    case NGX_OK:
        return NGX_CONF_OK;
    case NGX_ERROR:
        return NGX_CONF_ERROR;
    default:
        break;
    }

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "invalid parameter \"%V\"", v);
    return NGX_CONF_ERROR;
}


/* after the http block: each journal to its zone, declared anywhere */

char *
ngx_http_events_journal_bind(ngx_conf_t *cf, ngx_array_t *journals,
    ngx_array_t *zones)
{
    ngx_uint_t                  i, k;
    ngx_shm_zone_t            **zp;
    ngx_http_events_store_t    *store;
    ngx_http_events_journal_t **jp;

    if (journals == NULL) {
        return NGX_CONF_OK;
    }

    jp = journals->elts;
    zp = zones->elts;
    store = NULL;   /* -fsanitize=undefined: "may be used uninitialized" */

    for (i = 0; i < journals->nelts; i++) {

        for (k = 0; k < zones->nelts; k++) {
            store = zp[k]->data;

            if (store->name.len == jp[i]->zone.len
                && ngx_strncmp(store->name.data, jp[i]->zone.data,
                               store->name.len) == 0)
            {
                break;
            }
        }

        if (k == zones->nelts) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"events_journal\" names an unknown "
                               "events zone \"%V\"", &jp[i]->zone);
            return NGX_CONF_ERROR;
        }

        store->journal = jp[i];
        jp[i]->store = store;
    }

    return NGX_CONF_OK;
}


/* in the master, from init_zone: the directory, then the replay */

ngx_int_t
ngx_http_events_journal_init_zone(ngx_http_events_journal_t *j,
    ngx_log_t *log, ngx_uint_t reused)
{
    uint32_t                       hash;
    ngx_http_events_journal_sh_t  *jsh;

    if (ngx_http_events_journal_dir(j, log) != NGX_OK) {
        return NGX_ERROR;
    }

    jsh = ngx_http_events_store_journal(j->store);
    hash = ngx_crc32_long(j->path.data, j->path.len);

    if (reused) {
        if (jsh->config != hash
            && ngx_http_events_journal_secret(j, log, 1) != NGX_OK)
        {
            return NGX_ERROR;
        }

        if (jsh->config != hash) {
            /* a journal new to this zone: it starts a segment of its own */
            ngx_shmtx_lock(&j->store->shpool->mutex);

            jsh->config = hash;
            jsh->segment = 0;
            jsh->size = 0;
            jsh->closed = 0;
            jsh->closed_bytes = 0;
            jsh->gen++;

            ngx_memzero(&jsh->history, sizeof(ngx_http_events_history_sh_t));

            ngx_shmtx_unlock(&j->store->shpool->mutex);

            if (!ngx_test_config) {
                /* its index, empty, so that reads use it from now on */
                return ngx_http_events_history_added(
                           j->history, ngx_http_events_store_head(j->store),
                           log);
            }
        }

        return NGX_OK;
    }

    jsh->config = hash;

    if (ngx_test_config) {
        return NGX_OK;
    }

    if (ngx_http_events_journal_secret(j, log, 0) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_http_events_journal_replay(j, log);
}


ngx_http_events_history_sh_t *
ngx_http_events_journal_history(ngx_http_events_journal_t *j)
{
    return &ngx_http_events_store_journal(j->store)->history;
}


/* the segment being written, 0: none yet */

uint64_t
ngx_http_events_journal_current(ngx_http_events_journal_t *j)
{
    uint64_t  segment;

    segment = ngx_http_events_store_journal(j->store)->segment;
    ngx_memory_barrier();

    return segment;
}


/* the segment after the one named by "first", 0: none */

uint64_t
ngx_http_events_journal_after(ngx_http_events_journal_t *j, uint64_t first)
{
    uint64_t                        next;
    ngx_uint_t                      i;
    ngx_pool_t                     *pool;
    ngx_array_t                     segs;
    ngx_http_events_journal_seg_t  *seg;

    pool = ngx_create_pool(4096, ngx_cycle->log);
    if (pool == NULL) {
        return 0;
    }

    next = 0;

    if (ngx_http_events_journal_list(j, pool, &segs, ngx_cycle->log)
        == NGX_OK)
    {
        seg = segs.elts;

        for (i = 0; i < segs.nelts; i++) {
            if (seg[i].first > first) {
                next = seg[i].first;
                break;
            }
        }
    }

    ngx_destroy_pool(pool);

    return next;
}


/* the first seqs of the segments, oldest first */

ngx_int_t
ngx_http_events_journal_segments(ngx_http_events_journal_t *j,
    ngx_pool_t *pool, ngx_array_t *firsts, ngx_log_t *log)
{
    uint64_t                       *first;
    ngx_uint_t                      i;
    ngx_array_t                     segs;
    ngx_http_events_journal_seg_t  *seg;

    if (ngx_http_events_journal_list(j, pool, &segs, log) != NGX_OK
        || ngx_array_init(firsts, pool, segs.nelts + 1, sizeof(uint64_t))
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    seg = segs.elts;

    for (i = 0; i < segs.nelts; i++) {
        first = ngx_array_push(firsts);
        if (first == NULL) {
            return NGX_ERROR;
        }

        *first = seg[i].first;
    }

    return NGX_OK;
}


u_char *
ngx_http_events_journal_segment_name(ngx_http_events_journal_t *j,
    u_char *buf, uint64_t first)
{
    return ngx_http_events_journal_name(j, buf, first);
}


ngx_int_t
ngx_http_events_journal_segment_valid(u_char *map, uint64_t first)
{
    ngx_http_events_journal_hdr_t  hdr;

    ngx_memcpy(&hdr, map, sizeof(ngx_http_events_journal_hdr_t));

    if (ngx_memcmp(hdr.magic, NGX_HTTP_EVENTS_JOURNAL_MAGIC, 4) != 0
        || hdr.size != sizeof(ngx_http_events_journal_hdr_t)
        || hdr.first_seq != first
        || hdr.crc != ngx_crc32_long(map, offsetof(
                                     ngx_http_events_journal_hdr_t, crc)))
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * The directory must exist and be writable by the worker user, which
 * is not the master's when the master runs as root: nginx -t says so
 * rather than the first POST.
 */

static ngx_int_t
ngx_http_events_journal_dir(ngx_http_events_journal_t *j, ngx_log_t *log)
{
    ngx_err_t         err;
    ngx_file_info_t   fi;
    ngx_core_conf_t  *ccf;

    ccf = (ngx_core_conf_t *) ngx_get_conf(j->cycle->conf_ctx,
                                           ngx_core_module);

    if (ngx_file_info(j->path.data, &fi) == NGX_FILE_ERROR) {
        err = ngx_errno;

        if (err != NGX_ENOENT) {
            ngx_log_error(NGX_LOG_EMERG, log, err,
                          "events zone \"%V\": journal directory \"%V\" "
                          "cannot be used", &j->zone, &j->path);
            return NGX_ERROR;
        }

        if (ngx_test_config) {
            /* made at start, in a directory that must be there */
            return ngx_http_events_journal_parent(j, log);
        }

        if (ngx_create_dir(j->path.data, 0700) == NGX_FILE_ERROR) {
            ngx_log_error(NGX_LOG_EMERG, log, ngx_errno,
                          "events zone \"%V\": cannot create journal "
                          "directory \"%V\"", &j->zone, &j->path);
            return NGX_ERROR;
        }

        if (geteuid() == 0
            && ccf->user != (ngx_uid_t) NGX_CONF_UNSET_UINT
            && chown((char *) j->path.data, ccf->user, ccf->group) == -1)
        {
            ngx_log_error(NGX_LOG_EMERG, log, ngx_errno,
                          "events zone \"%V\": chown(\"%V\") to the "
                          "worker user failed", &j->zone, &j->path);
            return NGX_ERROR;
        }

        return NGX_OK;
    }

    if (!ngx_is_dir(&fi)) {
        ngx_log_error(NGX_LOG_EMERG, log, 0,
                      "events zone \"%V\": journal path \"%V\" is not "
                      "a directory", &j->zone, &j->path);
        return NGX_ERROR;
    }

    return ngx_http_events_journal_probe(j, ccf, log);
}


static ngx_int_t
ngx_http_events_journal_parent(ngx_http_events_journal_t *j, ngx_log_t *log)
{
    u_char           *p, *parent;
    ngx_file_info_t   fi;

    parent = ngx_pnalloc(j->cycle->pool, j->path.len + 1);
    if (parent == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(parent, j->path.data, j->path.len + 1);

    p = (u_char *) strrchr((char *) parent, '/');

    if (p == NULL || p == parent) {
        return NGX_OK;
    }

    *p = '\0';

    if (ngx_file_info(parent, &fi) == NGX_FILE_ERROR || !ngx_is_dir(&fi)) {
        ngx_log_error(NGX_LOG_EMERG, log, ngx_errno,
                      "events zone \"%V\": journal directory \"%V\" "
                      "cannot be created: \"%s\" is not a directory",
                      &j->zone, &j->path, parent);
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* create and remove a file there as the worker user would */

static ngx_int_t
ngx_http_events_journal_probe(ngx_http_events_journal_t *j,
    ngx_core_conf_t *ccf, ngx_log_t *log)
{
    u_char          *name;
    ngx_fd_t         fd;
    ngx_err_t        err;
    ngx_uint_t       as_user;
    struct passwd   *pw;

    name = ngx_pnalloc(j->cycle->pool, j->path.len + 32);
    if (name == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(name, "%V/.probe.%P%Z", &j->path, ngx_pid);

    as_user = geteuid() == 0
              && ccf->user != (ngx_uid_t) NGX_CONF_UNSET_UINT
              && ccf->user != 0;

    if (as_user) {
        if (setegid(ccf->group) == -1 || seteuid(ccf->user) == -1) {
            ngx_log_error(NGX_LOG_EMERG, log, ngx_errno,
                          "events zone \"%V\": seteuid(%d) failed",
                          &j->zone, (int) ccf->user);
            if (setegid(0) == -1) {
                ngx_log_error(NGX_LOG_ALERT, log, ngx_errno,
                              "events zone \"%V\": setegid(0) failed",
                              &j->zone);
            }

            return NGX_ERROR;
        }
    }

    fd = ngx_open_file(name, NGX_FILE_WRONLY, NGX_FILE_CREATE_OR_OPEN, 0600);
    err = ngx_errno;

    if (fd != NGX_INVALID_FILE) {
        (void) ngx_close_file(fd);
        (void) ngx_delete_file(name);
    }

    if (as_user && (seteuid(0) == -1 || setegid(0) == -1)) {
        ngx_log_error(NGX_LOG_EMERG, log, ngx_errno,
                      "events zone \"%V\": seteuid(0) failed", &j->zone);
        return NGX_ERROR;
    }

    if (fd != NGX_INVALID_FILE) {
        return NGX_OK;
    }

    pw = as_user ? getpwuid(ccf->user) : NULL;

    ngx_log_error(NGX_LOG_EMERG, log, err,
                  "events zone \"%V\": journal directory \"%V\" is not "
                  "writable by the worker user \"%s\"",
                  &j->zone, &j->path,
                  pw ? pw->pw_name : (as_user ? "?" : "(this user)"));

    return NGX_ERROR;
}


/*
 * The zone's cursor secret, beside the segments: cursors of an epoch the
 * journal brings back must read back after a restart.  An existing file
 * gives the zone its secret; otherwise (or for a zone that had a secret
 * before the journal came: its cursors are out) the zone's is written,
 * whole or not at all (a temporary file, fsync, rename).  Only the
 * master reads it; 0600, like the segments.
 */

static ngx_int_t
ngx_http_events_journal_secret(ngx_http_events_journal_t *j, ngx_log_t *log,
    ngx_uint_t from_zone)
{
    u_char    *secret, name[NGX_MAX_PATH], tmp[NGX_MAX_PATH];
    u_char     buf[NGX_HTTP_EVENTS_CURSOR_SECRET + 1];
    ssize_t    n;
    ngx_fd_t   fd;

    if (j->path.len + sizeof("/cursor.key.tmp") > NGX_MAX_PATH) {
        ngx_log_error(NGX_LOG_EMERG, log, 0,
                      "events zone \"%V\": journal path too long", &j->zone);
        return NGX_ERROR;
    }

    ngx_sprintf(name, "%V/cursor.key%Z", &j->path);
    ngx_sprintf(tmp, "%V/cursor.key.tmp%Z", &j->path);

    secret = ngx_http_events_store_secret(j->store);

    if (!from_zone) {
        fd = ngx_open_file(name, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);

        if (fd != NGX_INVALID_FILE) {
            n = ngx_read_fd(fd, buf, sizeof(buf));
            (void) ngx_close_file(fd);

            if (n == NGX_HTTP_EVENTS_CURSOR_SECRET) {
                ngx_memcpy(secret, buf, NGX_HTTP_EVENTS_CURSOR_SECRET);
                return NGX_OK;
            }

            ngx_log_error(NGX_LOG_ERR, log, 0,
                          "events zone \"%V\": \"%s\" is damaged; "
                          "cursors of before are refused", &j->zone, name);

        } else if (ngx_errno != NGX_ENOENT) {
            ngx_log_error(NGX_LOG_EMERG, log, ngx_errno,
                          ngx_open_file_n " \"%s\" failed", name);
            return NGX_ERROR;
        }
    }

    j->new_secret = !from_zone;

    fd = ngx_open_file(tmp, NGX_FILE_WRONLY, NGX_FILE_TRUNCATE, 0600);
    if (fd == NGX_INVALID_FILE) {
        ngx_log_error(NGX_LOG_EMERG, log, ngx_errno,
                      ngx_open_file_n " \"%s\" failed", tmp);
        return NGX_ERROR;
    }

    n = ngx_write_fd(fd, secret, NGX_HTTP_EVENTS_CURSOR_SECRET);

    if (n != NGX_HTTP_EVENTS_CURSOR_SECRET || fsync(fd) == -1) {
        ngx_log_error(NGX_LOG_EMERG, log, ngx_errno,
                      "events zone \"%V\": writing \"%s\" failed",
                      &j->zone, tmp);
        (void) ngx_close_file(fd);
        (void) ngx_delete_file(tmp);
        return NGX_ERROR;
    }

    (void) ngx_close_file(fd);

    if (ngx_rename_file(tmp, name) == NGX_FILE_ERROR) {
        ngx_log_error(NGX_LOG_EMERG, log, ngx_errno,
                      ngx_rename_file_n " \"%s\" to \"%s\" failed",
                      tmp, name);
        (void) ngx_delete_file(tmp);
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* the segments in the directory, oldest first */

static ngx_int_t
ngx_http_events_journal_list(ngx_http_events_journal_t *j, ngx_pool_t *pool,
    ngx_array_t *segs, ngx_log_t *log)
{
    u_char                         *p, name[NGX_MAX_PATH];
    DIR                            *dir;
    size_t                          len;
    uint64_t                        first;
    struct dirent                  *de;
    ngx_file_info_t                 fi;
    ngx_http_events_journal_seg_t  *seg;

    if (ngx_array_init(segs, pool, 16, sizeof(ngx_http_events_journal_seg_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    dir = opendir((char *) j->path.data);
    if (dir == NULL) {
        ngx_log_error(NGX_LOG_ERR, log, ngx_errno,
                      "opendir(\"%V\") failed", &j->path);
        return NGX_ERROR;
    }

    for ( ;; ) {
        ngx_set_errno(0);
        de = readdir(dir);

        if (de == NULL) {
            break;
        }

        len = ngx_strlen(de->d_name);

        if (len != NGX_HTTP_EVENTS_JOURNAL_NAME_LEN
            || ngx_strcmp(de->d_name + 20, NGX_HTTP_EVENTS_JOURNAL_SUFFIX)
               != 0)
        {
            continue;
        }

        first = 0;

        for (p = (u_char *) de->d_name; p < (u_char *) de->d_name + 20; p++) {
            if (*p < '0' || *p > '9' || first > ((uint64_t) -1 - 9) / 10) {
                break;
            }

            first = first * 10 + (*p - '0');
        }

        if (p != (u_char *) de->d_name + 20 || first == 0) {
            continue;
        }

        ngx_http_events_journal_name(j, name, first);

        if (ngx_file_info(name, &fi) == NGX_FILE_ERROR
            || !ngx_is_file(&fi))
        {
            continue;
        }

        seg = ngx_array_push(segs);
        if (seg == NULL) {
            (void) closedir(dir);
            return NGX_ERROR;
        }

        seg->first = first;
        seg->size = ngx_file_size(&fi);
        seg->mtime = ngx_file_mtime(&fi);
    }

    (void) closedir(dir);

    ngx_qsort(segs->elts, segs->nelts, sizeof(ngx_http_events_journal_seg_t),
              ngx_http_events_journal_cmp);

    return NGX_OK;
}


static int ngx_libc_cdecl
ngx_http_events_journal_cmp(const void *one, const void *two)
{
    const ngx_http_events_journal_seg_t  *a = one, *b = two;

    return a->first < b->first ? -1 : (a->first > b->first);
}


static u_char *
ngx_http_events_journal_name(ngx_http_events_journal_t *j, u_char *buf,
    uint64_t first)
{
    if (j->path.len + 1 + NGX_HTTP_EVENTS_JOURNAL_NAME_LEN + 1
        > NGX_MAX_PATH)
    {
        /* checked at start: never here */
        *buf = '\0';
        return buf;
    }

    ngx_sprintf(buf, "%V/%020uL" NGX_HTTP_EVENTS_JOURNAL_SUFFIX "%Z",
                &j->path, first);

    return buf;
}


/* replay */

static ngx_int_t
ngx_http_events_journal_replay(ngx_http_events_journal_t *j, ngx_log_t *log)
{
    ngx_uint_t                      i;
    ngx_msec_t                      start;
    ngx_pool_t                     *pool;
    ngx_array_t                     segs;
    ngx_http_events_replay_t        rp;
    ngx_http_events_journal_sh_t   *jsh;
    ngx_http_events_journal_seg_t  *seg;

    if (j->path.len + 1 + NGX_HTTP_EVENTS_JOURNAL_NAME_LEN + 1
        > NGX_MAX_PATH)
    {
        ngx_log_error(NGX_LOG_EMERG, log, 0,
                      "events zone \"%V\": journal path \"%V\" is too long",
                      &j->zone, &j->path);
        return NGX_ERROR;
    }

    start = ngx_http_events_journal_now();

    pool = ngx_create_pool(4096, log);
    if (pool == NULL) {
        return NGX_ERROR;
    }

    if (ngx_http_events_journal_list(j, pool, &segs, log) != NGX_OK) {
        ngx_destroy_pool(pool);
        return NGX_ERROR;
    }

    ngx_memzero(&rp, sizeof(ngx_http_events_replay_t));
    rp.now = start;

    seg = segs.elts;

    for (i = 0; i < segs.nelts; i++) {
        if (ngx_http_events_journal_replay_segment(j, &seg[i],
                                                   i == segs.nelts - 1,
                                                   &rp, log)
            != NGX_OK)
        {
            ngx_free(rp.buf);
            ngx_destroy_pool(pool);
            return NGX_ERROR;
        }
    }

    ngx_free(rp.buf);

    if (segs.nelts && seg[0].first - 1 > rp.gone) {
        /* older segments were deleted: their events are gone */
        rp.gone = seg[0].first - 1;
    }

    if (rp.damaged && rp.epoch) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "events zone \"%V\": journal damaged: epoch "
                      "%016uxL ends here, cursors of it get 410",
                      &j->zone, rp.epoch);

        /* the zone's own, freshly drawn epoch */
        rp.epoch = 0;

    } else if (j->new_secret && rp.epoch) {
        /* its cursors cannot be read without their secret: start again */
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "events zone \"%V\": no cursor secret in \"%V\": "
                      "epoch %016uxL ends here, cursors of it get 410",
                      &j->zone, &j->path, rp.epoch);
        rp.epoch = 0;
    }

    ngx_http_events_store_resume(j->store, rp.epoch, rp.last_seq, rp.last_ms,
                                 rp.gone);

    jsh = ngx_http_events_store_journal(j->store);

    /* the next write starts a segment: nothing appends to a cut file */
    jsh->segment = 0;
    jsh->size = 0;
    jsh->closed = rp.segments;
    jsh->closed_bytes = rp.bytes;
    jsh->replayed = rp.replayed;
    jsh->cut = rp.cut;
    jsh->replay_ms = ngx_http_events_journal_now() - start;

    ngx_destroy_pool(pool);

    ngx_log_error(NGX_LOG_NOTICE, log, 0,
                  "events zone \"%V\": journal \"%V\": %uL events replayed, "
                  "%uL skipped, from %uL segments (%uL bytes) in %uL ms; "
                  "last seq %uL, epoch %016uxL",
                  &j->zone, &j->path, rp.replayed, rp.skipped, rp.segments,
                  rp.bytes, jsh->replay_ms, rp.last_seq, j->store->epoch);

    return ngx_http_events_history_replay_done(j->history, rp.last_seq, log);
}


static ngx_int_t
ngx_http_events_journal_replay_segment(ngx_http_events_journal_t *j,
    ngx_http_events_journal_seg_t *seg, ngx_uint_t last,
    ngx_http_events_replay_t *rp, ngx_log_t *log)
{
    u_char                         *map;
    u_char                          name[NGX_MAX_PATH];
    ngx_fd_t                        fd;
    ngx_int_t                       rc;
    ngx_file_info_t                 fi;
    ngx_http_events_journal_hdr_t   hdr;

    ngx_http_events_journal_name(j, name, seg->first);

    /* seqs go on past every segment, even an empty one */
    if (seg->first - 1 > rp->last_seq) {
        rp->last_seq = seg->first - 1;
    }

    fd = ngx_open_file(name, NGX_FILE_RDWR, NGX_FILE_OPEN, 0);
    if (fd == NGX_INVALID_FILE) {
        ngx_log_error(NGX_LOG_EMERG, log, ngx_errno,
                      "events zone \"%V\": cannot open journal segment "
                      "\"%s\"", &j->zone, name);
        return NGX_ERROR;
    }

    if (ngx_fd_info(fd, &fi) == NGX_FILE_ERROR) {
        ngx_log_error(NGX_LOG_EMERG, log, ngx_errno,
                      ngx_fd_info_n " \"%s\" failed", name);
        (void) ngx_close_file(fd);
        return NGX_ERROR;
    }

    seg->size = ngx_file_size(&fi);

    if (seg->size < (off_t) sizeof(ngx_http_events_journal_hdr_t)) {
        /* a crash as the segment was made: nothing in it */
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "events zone \"%V\": journal segment \"%s\" has no "
                      "header (%O bytes): removed", &j->zone, name,
                      seg->size);
        (void) ngx_close_file(fd);
        (void) ngx_delete_file(name);
        rp->cut += seg->size;
        return NGX_OK;
    }

    map = mmap(NULL, (size_t) seg->size, PROT_READ, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED) {
        ngx_log_error(NGX_LOG_EMERG, log, ngx_errno,
                      "mmap(\"%s\") failed", name);
        (void) ngx_close_file(fd);
        return NGX_ERROR;
    }

    ngx_memcpy(&hdr, map, sizeof(ngx_http_events_journal_hdr_t));

    if (ngx_memcmp(hdr.magic, NGX_HTTP_EVENTS_JOURNAL_MAGIC, 4) != 0
        || hdr.size != sizeof(ngx_http_events_journal_hdr_t)
        || hdr.first_seq != seg->first
        || hdr.crc != ngx_crc32_long(map, offsetof(
                                     ngx_http_events_journal_hdr_t, crc)))
    {
        /* not ours, or damaged at its start: keep it, read nothing */
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "events zone \"%V\": journal segment \"%s\" has a "
                      "bad header; skipped, and left as it is",
                      &j->zone, name);
        (void) munmap(map, (size_t) seg->size);
        (void) ngx_close_file(fd);
        rp->segments++;
        rp->bytes += seg->size;

        /* and a new segment is never named like it */
        if (seg->first > rp->last_seq) {
            rp->last_seq = seg->first;
        }

        return NGX_OK;
    }

    if (rp->epoch && rp->epoch != hdr.epoch) {
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "events zone \"%V\": journal segment \"%s\" has "
                      "epoch %016uxL, the one before %016uxL",
                      &j->zone, name, hdr.epoch, rp->epoch);
    }

    rp->epoch = hdr.epoch;

    rc = ngx_http_events_journal_records(j, name, map, seg->size, last, rp,
                                         log);

    (void) munmap(map, (size_t) seg->size);

    if (ngx_fd_info(fd, &fi) != NGX_FILE_ERROR) {
        seg->size = ngx_file_size(&fi);
    }

    (void) ngx_close_file(fd);

    rp->segments++;
    rp->bytes += seg->size;

    return rc;
}


/*
 * The records of a mapped segment, up to the first that fails its
 * checks: the rest of the file is cut off there (see journal_cut()).
 */

static ngx_int_t
ngx_http_events_journal_records(ngx_http_events_journal_t *j, u_char *name,
    u_char *map, off_t size, ngx_uint_t last, ngx_http_events_replay_t *rp,
    ngx_log_t *log)
{
    u_char                            *p, *end, *body;
    off_t                              off;
    ngx_int_t                          rc;
    ngx_http_events_journal_rec_t      rec;
    ngx_http_events_journal_rec_rc_e   rrc;

    p = map + sizeof(ngx_http_events_journal_hdr_t);
    end = map + size;
    rc = NGX_OK;

    while (p < end) {
        off = p - map;

        if ((size_t) (end - p) < sizeof(ngx_http_events_journal_rec_t)) {
            ngx_http_events_journal_cut(j, name, off, size, last, 1,
                                        "a torn record header", rp, log);
            break;
        }

        ngx_memcpy(&rec, p, sizeof(ngx_http_events_journal_rec_t));

        if (rec.magic != NGX_HTTP_EVENTS_JOURNAL_RECORD) {
            ngx_http_events_journal_cut(j, name, off, size, last, 0,
                                        "no record magic", rp, log);
            break;
        }

        if (rec.len > (size_t) (end - p)
                      - sizeof(ngx_http_events_journal_rec_t))
        {
            ngx_http_events_journal_cut(j, name, off, size, last, 1,
                                        "a torn record", rp, log);
            break;
        }

        body = p + sizeof(ngx_http_events_journal_rec_t);

        if (ngx_http_events_journal_crc(&rec, body) != rec.crc) {
            /* the last record of the file: a write the crash tore */
            ngx_http_events_journal_cut(j, name, off, size, last,
                                        body + rec.len == end,
                                        "a checksum mismatch", rp, log);
            break;
        }

        if (rec.kind == NGX_HTTP_EVENTS_JOURNAL_EVENT) {
            rrc = ngx_http_events_journal_restore(j, &rec, body, rp, log);
            if (rrc == NGX_HTTP_EVENTS_JOURNAL_REC_ERROR) {
                rc = NGX_ERROR;
                break;
            }

            if (rrc == NGX_HTTP_EVENTS_JOURNAL_REC_MALFORMED) {
                /* well-formed to the checksum, not to the layout */
                ngx_http_events_journal_cut(j, name, off, size, last, 0,
                                            "a malformed event", rp, log);
                rc = NGX_OK;
                break;
            }

            rc = NGX_OK;
        }

        /* records of other kinds are not this version's business */

        p += sizeof(ngx_http_events_journal_rec_t) + rec.len;
    }

    return rc;
}


/* one event record back into the ring */

static ngx_http_events_journal_rec_rc_e
ngx_http_events_journal_restore(ngx_http_events_journal_t *j,
    ngx_http_events_journal_rec_t *rec, u_char *body,
    ngx_http_events_replay_t *rp, ngx_log_t *log)
{
    u_char                        *p, *json, digits[NGX_INT64_LEN];
    size_t                         keys, dlen, tail;
    ngx_http_events_event_t        ev;
    ngx_http_events_store_rc_e     rc;
    ngx_http_events_journal_ev_t   e;

    if (rec->len < sizeof(ngx_http_events_journal_ev_t)) {
        return NGX_HTTP_EVENTS_JOURNAL_REC_MALFORMED;
    }

    ngx_memcpy(&e, body, sizeof(ngx_http_events_journal_ev_t));

    keys = (size_t) e.tenant_len + e.id_len + e.type_len + e.rtype_len
           + e.rid_len + e.source_len;

    dlen = ngx_sprintf(digits, "%uL", rec->seq) - digits;

    if (sizeof(ngx_http_events_journal_ev_t) + keys + e.json_len != rec->len
        || keys > NGX_HTTP_EVENTS_MAX_KEYS
        || e.seq_at > e.ts_at
        || (size_t) e.ts_at + dlen + NGX_HTTP_EVENTS_TIMESTAMP_LEN
           > e.json_len
        || e.action < NGX_HTTP_EVENTS_ACTION_CREATED
        || e.action > NGX_HTTP_EVENTS_ACTION_OCCURRED)
    {
        return NGX_HTTP_EVENTS_JOURNAL_REC_MALFORMED;
    }

    p = body + sizeof(ngx_http_events_journal_ev_t);
    json = p + keys;

    if (ngx_memcmp(json + e.seq_at, digits, dlen) != 0) {
        return NGX_HTTP_EVENTS_JOURNAL_REC_MALFORMED;
    }

    if (rec->seq <= rp->last_seq) {
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "events zone \"%V\": journal event seq %uL after "
                      "seq %uL: skipped", &j->zone, rec->seq, rp->last_seq);
        rp->skipped++;
        return NGX_HTTP_EVENTS_JOURNAL_REC_OK;
    }

    rp->last_seq = rec->seq;

    if (rec->time_ms > rp->last_ms) {
        rp->last_ms = rec->time_ms;
    }

    if (j->store->retention
        && rec->time_ms + j->store->retention < rp->now)
    {
        /* expired while nginx was down */
        if (rp->replayed == 0) {
            rp->gone = rec->seq;
        }

        rp->skipped++;
        return NGX_HTTP_EVENTS_JOURNAL_REC_OK;
    }

    ngx_memzero(&ev, sizeof(ngx_http_events_event_t));

    ev.tenant.len = e.tenant_len;
    ev.tenant.data = p;
    p += e.tenant_len;
    ev.id.len = e.id_len;
    ev.id.data = p;
    p += e.id_len;
    ev.type.len = e.type_len;
    ev.type.data = p;
    p += e.type_len;
    ev.rtype.len = e.rtype_len;
    ev.rtype.data = p;
    p += e.rtype_len;
    ev.rid.len = e.rid_len;
    ev.rid.data = p;
    p += e.rid_len;
    ev.source.len = e.source_len;
    ev.source.data = p;

    ev.action = e.action;
    ev.client_id = e.client_id ? 1 : 0;
    ngx_memcpy(ev.digest, e.digest, 16);

    /* the envelope without seq and timestamp, as the store expects it */

    ev.json_len = e.json_len - dlen - NGX_HTTP_EVENTS_TIMESTAMP_LEN;

    if (rp->size < ev.json_len) {
        ngx_free(rp->buf);

        rp->size = ngx_max(ev.json_len, 65536);
        rp->buf = ngx_alloc(rp->size, log);
        if (rp->buf == NULL) {
            rp->size = 0;
            return NGX_HTTP_EVENTS_JOURNAL_REC_ERROR;
        }
    }

    tail = e.json_len - (e.ts_at + dlen + NGX_HTTP_EVENTS_TIMESTAMP_LEN);

    p = ngx_cpymem(rp->buf, json, e.seq_at);
    p = ngx_cpymem(p, json + e.seq_at + dlen, e.ts_at - e.seq_at);
    ngx_memcpy(p, json + e.ts_at + dlen + NGX_HTTP_EVENTS_TIMESTAMP_LEN,
               tail);

    ev.json = rp->buf;
    ev.seq_at = e.seq_at;
    ev.ts_at = e.ts_at;
    ev.seq = rec->seq;
    ev.time_ms = rec->time_ms;

    rc = ngx_http_events_store_restore(j->store, &ev);

    if (rc == NGX_HTTP_EVENTS_STORE_OK) {
        rp->replayed++;
        return NGX_HTTP_EVENTS_JOURNAL_REC_OK;
    }

    ngx_log_error(NGX_LOG_WARN, log, 0,
                  "events zone \"%V\": journal event seq %uL not restored: "
                  "%s", &j->zone, rec->seq,
                  rc == NGX_HTTP_EVENTS_STORE_TOO_LARGE
                  ? "larger than the zone can hold"
                  : rc == NGX_HTTP_EVENTS_STORE_STALE
                  ? "not after the store's head"
                  : "no memory for the type catalog");

    if (rp->replayed == 0) {
        rp->gone = rec->seq;
    }

    rp->skipped++;

    return NGX_HTTP_EVENTS_JOURNAL_REC_OK;
}


/* the damaged rest of a segment is cut off, and said so */

static void
ngx_http_events_journal_cut(ngx_http_events_journal_t *j, u_char *name,
    off_t off, off_t size, ngx_uint_t last, ngx_uint_t torn,
    const char *why, ngx_http_events_replay_t *rp, ngx_log_t *log)
{
    ngx_uint_t  level;

    /*
     * A torn tail of the last segment is what a crash during a write
     * leaves (that record was never published): warn.  Damage anywhere
     * else took events that were published: an error, and the zone
     * starts a new epoch, so that the seqs cut off are never handed out
     * again under the old one (old cursors get 410, not other events).
     */
    level = (last && torn) ? NGX_LOG_WARN : NGX_LOG_ERR;

    if (level == NGX_LOG_ERR) {
        rp->damaged = 1;
    }

    ngx_log_error(level, log, 0,
                  "events zone \"%V\": journal segment \"%s\": %s at "
                  "offset %O; %O bytes cut off there",
                  &j->zone, name, why, off, size - off);

    rp->cut += size - off;

    if (truncate((char *) name, off) == -1) {
        ngx_log_error(NGX_LOG_ERR, log, ngx_errno,
                      "truncate(\"%s\", %O) failed", name, off);
    }
}


uint32_t
ngx_http_events_journal_crc(ngx_http_events_journal_rec_t *rec, u_char *body)
{
    uLong                          crc;
    ngx_http_events_journal_rec_t  h;

    h = *rec;
    h.crc = 0;

    /*
     * CRC-32 as ngx_crc32_long() computes it, by zlib: ten times faster
     * than nginx's table, byte by byte (0.8 against 7.4 us a kilobyte
     * here), and every record is checked when it is read back
     */
    crc = crc32(0, (u_char *) &h, sizeof(ngx_http_events_journal_rec_t));
    crc = crc32(crc, body, h.len);

    return (uint32_t) crc;
}


/* writing */

size_t
ngx_http_events_journal_size(ngx_http_events_event_t *ev)
{
    return sizeof(ngx_http_events_journal_rec_t)
           + sizeof(ngx_http_events_journal_ev_t)
           + ev->tenant.len + ev->id.len + ev->type.len + ev->rtype.len
           + ev->rid.len + ev->source.len
           + ngx_http_events_store_json_len(ev);
}


/*
 * Called with the zone's mutex held and the seqs assigned: the records
 * of a request, in one write.  NGX_ERROR: nothing of them is in the
 * file (a partial write is cut back) and the caller publishes nothing.
 */

ngx_int_t
ngx_http_events_journal_write_locked(ngx_http_events_journal_t *j,
    ngx_http_events_journal_sh_t *jsh, ngx_http_events_event_t *events,
    ngx_uint_t n, u_char *buf, uint64_t *end)
{
    u_char                         *p, *body, *json, name[NGX_MAX_PATH];
    size_t                          len;
    ssize_t                         w;
    uint64_t                        first;
    ngx_err_t                       err;
    ngx_uint_t                      i;
    ngx_http_events_event_t        *ev;
    ngx_http_events_journal_ev_t    e;
    ngx_http_events_journal_rec_t   rec;

    p = buf;
    first = 0;

    for (i = 0; i < n; i++) {
        ev = &events[i];

        if (ev->repeat) {
            continue;
        }

        if (first == 0) {
            first = ev->seq;
        }

        body = p + sizeof(ngx_http_events_journal_rec_t);

        ngx_memzero(&e, sizeof(ngx_http_events_journal_ev_t));
        ngx_memcpy(e.digest, ev->digest, 16);
        e.tenant_len = (uint16_t) ev->tenant.len;
        e.id_len = (uint16_t) ev->id.len;
        e.type_len = (uint16_t) ev->type.len;
        e.rtype_len = (uint16_t) ev->rtype.len;
        e.rid_len = (uint16_t) ev->rid.len;
        e.source_len = (uint16_t) ev->source.len;
        e.action = (u_char) ev->action;
        e.client_id = ev->client_id;
        e.seq_at = (uint32_t) ev->seq_at;
        e.ts_at = (uint32_t) ev->ts_at;

        p = ngx_cpymem(body, &e, sizeof(ngx_http_events_journal_ev_t));
        p = ngx_cpymem(p, ev->tenant.data, ev->tenant.len);
        p = ngx_cpymem(p, ev->id.data, ev->id.len);
        p = ngx_cpymem(p, ev->type.data, ev->type.len);
        p = ngx_cpymem(p, ev->rtype.data, ev->rtype.len);
        p = ngx_cpymem(p, ev->rid.data, ev->rid.len);
        p = ngx_cpymem(p, ev->source.data, ev->source.len);

        json = p;
        p = ngx_http_events_store_json(p, ev);

        /* the stored length is known only now */
        e.json_len = (uint32_t) (p - json);
        ngx_memcpy(body, &e, sizeof(ngx_http_events_journal_ev_t));

        ngx_memzero(&rec, sizeof(ngx_http_events_journal_rec_t));
        rec.magic = NGX_HTTP_EVENTS_JOURNAL_RECORD;
        rec.kind = NGX_HTTP_EVENTS_JOURNAL_EVENT;
        rec.len = (uint32_t) (p - body);
        rec.seq = ev->seq;
        rec.time_ms = ev->time_ms;
        rec.crc = ngx_http_events_journal_crc(&rec, body);

        ngx_memcpy(body - sizeof(ngx_http_events_journal_rec_t), &rec,
                   sizeof(ngx_http_events_journal_rec_t));
    }

    len = p - buf;

    if (jsh->writer && ngx_http_events_journal_repair_locked(j, jsh)
                       != NGX_OK)
    {
        jsh->errors++;
        return NGX_ERROR;
    }

    if (jsh->segment == 0
        || (jsh->size + len > (uint64_t) j->segment_size
            && jsh->size > sizeof(ngx_http_events_journal_hdr_t)))
    {
        if (ngx_http_events_journal_rotate_locked(j, jsh, first) != NGX_OK) {
            jsh->errors++;
            return NGX_ERROR;
        }
    }

    if (ngx_http_events_journal_open_locked(j, jsh) != NGX_OK) {
        jsh->errors++;
        return NGX_ERROR;
    }

    /* a worker that dies in the write leaves this for the next one */
    jsh->writer = ngx_pid;

    w = write(j->fd, buf, len);
    err = ngx_errno;

    if (w == (ssize_t) len) {
        jsh->writer = 0;
        jsh->size += len;
        jsh->written += len;
        if (j->fsync == NGX_HTTP_EVENTS_FSYNC_ALWAYS) {
            *end = jsh->written;
            jsh->writes++;

        } else {
            *end = 0;
        }

        return NGX_OK;
    }

    if (w >= 0) {
        /* a short write is what a full disk looks like first */
        err = NGX_ENOSPC;
    }

    ngx_http_events_journal_name(j, name, jsh->segment);

    ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, err,
                  "events zone \"%V\": write() of %uz bytes to journal "
                  "segment \"%s\" failed (%z written); events refused",
                  &j->zone, len, name, w);

    jsh->errors++;

    /* if this fails too, jsh->writer stays set: the next writer retries */
    (void) ngx_http_events_journal_repair_locked(j, jsh);

    return NGX_ERROR;
}


/* cut the segment back to what was written whole */

static ngx_int_t
ngx_http_events_journal_repair_locked(ngx_http_events_journal_t *j,
    ngx_http_events_journal_sh_t *jsh)
{
    u_char  name[NGX_MAX_PATH];

    if (jsh->segment == 0) {
        jsh->writer = 0;
        return NGX_OK;
    }

    if (ngx_http_events_journal_open_locked(j, jsh) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ftruncate(j->fd, (off_t) jsh->size) == -1) {
        ngx_http_events_journal_name(j, name, jsh->segment);
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, ngx_errno,
                      "events zone \"%V\": ftruncate(\"%s\", %uL) failed",
                      &j->zone, name, jsh->size);
        return NGX_ERROR;
    }

    if (jsh->writer != ngx_pid) {
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "events zone \"%V\": process %P died writing the "
                      "journal; its partial record was cut off",
                      &j->zone, jsh->writer);
    }

    jsh->writer = 0;

    return NGX_OK;
}


static ngx_int_t
ngx_http_events_journal_rotate_locked(ngx_http_events_journal_t *j,
    ngx_http_events_journal_sh_t *jsh, uint64_t first)
{
    u_char                         name[NGX_MAX_PATH];
    ngx_fd_t                       fd;
    ngx_http_events_journal_hdr_t  hdr;

    /* what the old segment holds is durable before the new one starts */

    if (jsh->segment && j->fsync != NGX_HTTP_EVENTS_FSYNC_OFF
        && jsh->synced < jsh->written
        && ngx_http_events_journal_fsync_locked(j, jsh) != NGX_OK)
    {
        return NGX_ERROR;
    }

    ngx_http_events_journal_name(j, name, first);

    fd = ngx_open_file(name, NGX_FILE_WRONLY|NGX_FILE_APPEND,
                       NGX_FILE_TRUNCATE, 0600);
    if (fd == NGX_INVALID_FILE) {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, ngx_errno,
                      "events zone \"%V\": cannot create journal segment "
                      "\"%s\"", &j->zone, name);
        return NGX_ERROR;
    }

    ngx_memzero(&hdr, sizeof(ngx_http_events_journal_hdr_t));
    ngx_memcpy(hdr.magic, NGX_HTTP_EVENTS_JOURNAL_MAGIC, 4);
    hdr.size = sizeof(ngx_http_events_journal_hdr_t);
    hdr.epoch = j->store->epoch;
    hdr.first_seq = first;
    hdr.crc = ngx_crc32_long((u_char *) &hdr,
                             offsetof(ngx_http_events_journal_hdr_t, crc));

    if (write(fd, &hdr, sizeof(ngx_http_events_journal_hdr_t))
        != (ssize_t) sizeof(ngx_http_events_journal_hdr_t))
    {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, ngx_errno,
                      "events zone \"%V\": cannot write the header of "
                      "journal segment \"%s\"", &j->zone, name);
        (void) ngx_close_file(fd);
        (void) ngx_delete_file(name);
        return NGX_ERROR;
    }

    if (j->fsync == NGX_HTTP_EVENTS_FSYNC_ALWAYS) {
        /* the new name is durable, or its records would not be found */
        if (fsync(fd) == -1) {
            ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, ngx_errno,
                          "fsync(\"%s\") failed", name);
        }

        ngx_http_events_journal_sync_dir(j);
    }

    if (j->fd != NGX_INVALID_FILE) {
        (void) ngx_close_file(j->fd);
    }

    if (jsh->segment) {
        jsh->closed++;
        jsh->closed_bytes += jsh->size;
    }

    if (j->fsync != NGX_HTTP_EVENTS_FSYNC_OFF) {
        jsh->synced = jsh->written;
    }

    if (jsh->history.base == NGX_HTTP_EVENTS_HISTORY_PENDING) {
        /* added by a reload: the events before this one are not here */
        jsh->history.base = first - 1;
    }

    jsh->segment = first;
    jsh->size = sizeof(ngx_http_events_journal_hdr_t);
    jsh->written += sizeof(ngx_http_events_journal_hdr_t);
    jsh->gen++;

    j->fd = fd;
    j->segment = first;
    j->gen = jsh->gen;

    return NGX_OK;
}


static void
ngx_http_events_journal_sync_dir(ngx_http_events_journal_t *j)
{
    ngx_fd_t  fd;

    fd = ngx_open_file(j->path.data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);

    if (fd == NGX_INVALID_FILE) {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, ngx_errno,
                      "open(\"%V\") failed", &j->path);
        return;
    }

    if (fsync(fd) == -1) {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, ngx_errno,
                      "fsync(\"%V\") failed", &j->path);
    }

    (void) ngx_close_file(fd);
}


/* this worker's descriptor on the segment being written */

static ngx_int_t
ngx_http_events_journal_open_locked(ngx_http_events_journal_t *j,
    ngx_http_events_journal_sh_t *jsh)
{
    u_char  name[NGX_MAX_PATH];

    if (j->fd != NGX_INVALID_FILE && j->gen == jsh->gen
        && j->segment == jsh->segment)
    {
        return NGX_OK;
    }

    if (j->fd != NGX_INVALID_FILE) {
        (void) ngx_close_file(j->fd);
        j->fd = NGX_INVALID_FILE;
    }

    ngx_http_events_journal_name(j, name, jsh->segment);

    j->fd = ngx_open_file(name, NGX_FILE_WRONLY|NGX_FILE_APPEND,
                          NGX_FILE_OPEN, 0);

    if (j->fd == NGX_INVALID_FILE) {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, ngx_errno,
                      "events zone \"%V\": cannot open journal segment "
                      "\"%s\"", &j->zone, name);
        return NGX_ERROR;
    }

    j->gen = jsh->gen;
    j->segment = jsh->segment;

    return NGX_OK;
}


/* under the lock: only when a segment is closed, which is rare */

static ngx_int_t
ngx_http_events_journal_fsync_locked(ngx_http_events_journal_t *j,
    ngx_http_events_journal_sh_t *jsh)
{
    u_char  name[NGX_MAX_PATH];

    if (ngx_http_events_journal_open_locked(j, jsh) != NGX_OK) {
        return NGX_ERROR;
    }

    if (fdatasync(j->fd) == -1) {
        ngx_http_events_journal_name(j, name, jsh->segment);
        ngx_log_error(NGX_LOG_CRIT, ngx_cycle->log, ngx_errno,
                      "events zone \"%V\": fdatasync(\"%s\") failed",
                      &j->zone, name);
        return NGX_ERROR;
    }

    jsh->synced = jsh->written;
    jsh->fsync_ms = ngx_http_events_journal_now();
    jsh->fsyncs++;

    return NGX_OK;
}


/*
 * Make the journal durable up to "end", without holding the lock while
 * the disk works.  What this process's descriptor was opened on when
 * "written" was read holds every byte before it (older segments were
 * synced when they were closed), so one fdatasync() answers for all
 * the writers before it: the others find "synced" past their end.
 */

ngx_int_t
ngx_http_events_journal_sync(ngx_http_events_journal_t *j, uint64_t end)
{
    u_char                         name[NGX_MAX_PATH];
    uint64_t                       upto, segment;
    ngx_fd_t                       fd;
    ngx_err_t                      err;
    ngx_shmtx_t                   *mutex;
    ngx_http_events_journal_sh_t  *jsh;

    jsh = ngx_http_events_store_journal(j->store);
    mutex = &j->store->shpool->mutex;

    ngx_shmtx_lock(mutex);

    if (jsh->synced >= end || jsh->segment == 0) {
        ngx_shmtx_unlock(mutex);
        return NGX_OK;
    }

    if (ngx_http_events_journal_open_locked(j, jsh) != NGX_OK) {
        jsh->errors++;
        ngx_shmtx_unlock(mutex);
        return NGX_ERROR;
    }

    upto = jsh->written;
    segment = jsh->segment;
    fd = j->fd;

    ngx_shmtx_unlock(mutex);

    if (fdatasync(fd) == -1) {
        err = ngx_errno;
        ngx_http_events_journal_name(j, name, segment);
        ngx_log_error(NGX_LOG_CRIT, ngx_cycle->log, err,
                      "events zone \"%V\": fdatasync(\"%s\") failed",
                      &j->zone, name);

        ngx_shmtx_lock(mutex);
        jsh->errors++;
        jsh->unsynced = 1;
        ngx_shmtx_unlock(mutex);

        return NGX_ERROR;
    }

    ngx_shmtx_lock(mutex);

    if (jsh->synced < upto) {
        jsh->synced = upto;
    }

    jsh->fsync_ms = ngx_http_events_journal_now();
    jsh->fsyncs++;
    jsh->unsynced = 0;

    ngx_shmtx_unlock(mutex);

    return NGX_OK;
}


/* workers: fsync=interval's timer, and worker 0's retention sweep */

ngx_int_t
ngx_http_events_journal_init_process(ngx_cycle_t *cycle,
    ngx_array_t *journals, ngx_http_events_journal_ring_pt ring)
{
    ngx_uint_t                   i;
    ngx_http_events_journal_t  **jp, *j;

#if (NGX_THREADS)
    static ngx_str_t  default_pool = ngx_string("default");
#endif

    if (journals == NULL
        || (ngx_process != NGX_PROCESS_WORKER
            && ngx_process != NGX_PROCESS_SINGLE))
    {
        return NGX_OK;
    }

    jp = journals->elts;

    for (i = 0; i < journals->nelts; i++) {
        j = jp[i];

        /* inherited from the master, which never opens one: be sure */
        j->fd = NGX_INVALID_FILE;
        ngx_queue_init(&j->waiting);

        if (j->history->max_age == 0) {
            /* the zone's retention, as for the segments before */
            j->history->max_age = j->store->retention;
        }

        if (ngx_http_events_history_init_process(j->history, cycle)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

#if (NGX_THREADS)
        if (j->fsync == NGX_HTTP_EVENTS_FSYNC_ALWAYS) {
            j->thread_pool = ngx_thread_pool_get(cycle, &default_pool);

            if (j->thread_pool != NULL) {
                j->task = ngx_thread_task_alloc(cycle->pool, 0);
                if (j->task == NULL) {
                    return NGX_ERROR;
                }

                j->task->ctx = j;
                j->task->handler = ngx_http_events_journal_fsync_thread;
                j->task->event.handler = ngx_http_events_journal_synced;
                j->task->event.data = j;
                j->task->event.log = cycle->log;

                j->ring = ring;
                j->follow.handler = ngx_http_events_journal_follow_handler;
                j->follow.log = cycle->log;
                j->follow.data = j;
                j->follow.cancelable = 1;

                j->gather.handler = ngx_http_events_journal_follow_handler;
                j->gather.log = cycle->log;
                j->gather.data = j;
                j->gather.cancelable = 1;
            }
        }
#endif

        if (j->fsync == NGX_HTTP_EVENTS_FSYNC_INTERVAL) {
            j->sync_timer.handler = ngx_http_events_journal_sync_handler;
            j->sync_timer.log = cycle->log;
            j->sync_timer.data = j;
            j->sync_timer.cancelable = 1;
            ngx_add_timer(&j->sync_timer, j->interval);
        }

        if (ngx_worker == 0) {
            j->sweep_timer.handler = ngx_http_events_journal_sweep_handler;
            j->sweep_timer.log = cycle->log;
            j->sweep_timer.data = j;
            j->sweep_timer.cancelable = 1;
            ngx_add_timer(&j->sweep_timer, NGX_HTTP_EVENTS_JOURNAL_SWEEP);
        }
    }

    return NGX_OK;
}


void
ngx_http_events_journal_exit_process(ngx_array_t *journals)
{
    uint64_t                       written;
    ngx_uint_t                     i;
    ngx_http_events_journal_t    **jp, *j;
    ngx_http_events_journal_sh_t  *jsh;

    if (journals == NULL) {
        return;
    }

    jp = journals->elts;

    for (i = 0; i < journals->nelts; i++) {
        j = jp[i];

        if (j->store == NULL || j->store->sh == NULL) {
            continue;
        }

        if (j->fd != NGX_INVALID_FILE
            && j->fsync == NGX_HTTP_EVENTS_FSYNC_INTERVAL)
        {
            /* what this worker leaves behind is not left for a timer */
            jsh = ngx_http_events_store_journal(j->store);
            written = jsh->written;

            if (jsh->synced < written) {
                (void) ngx_http_events_journal_sync(j, written);
            }
        }

        if (j->syncing) {
            /* its end is not seen here: the others take over syncing */
            jsh = ngx_http_events_store_journal(j->store);

            ngx_shmtx_lock(&j->store->shpool->mutex);

            ngx_http_events_journal_release_locked(jsh);

            ngx_shmtx_unlock(&j->store->shpool->mutex);
        }

        if (j->follow.timer_set) {
            ngx_del_timer(&j->follow);
        }

        if (j->gather.timer_set) {
            ngx_del_timer(&j->gather);
        }

        if (j->fd != NGX_INVALID_FILE) {
            (void) ngx_close_file(j->fd);
            j->fd = NGX_INVALID_FILE;
        }

        ngx_http_events_history_exit_process(j->history);
    }
}


static void
ngx_http_events_journal_sync_handler(ngx_event_t *ev)
{
    ngx_http_events_journal_t  *j = ev->data;

    uint64_t                       written;
    ngx_http_events_journal_sh_t  *jsh;

    jsh = ngx_http_events_store_journal(j->store);
    written = jsh->written;

    if (jsh->synced < written) {
        (void) ngx_http_events_journal_sync(j, written);
    }

    if (!ngx_exiting && !ngx_terminate && !ngx_quit) {
        ngx_add_timer(ev, j->interval);
    }
}


static void
ngx_http_events_journal_sweep_handler(ngx_event_t *ev)
{
    ngx_http_events_journal_t  *j = ev->data;

    ngx_http_events_history_sh_t  *hsh;

    hsh = ngx_http_events_journal_history(j);

    if (ngx_http_events_history_ready(j->history)) {
        ngx_http_events_journal_sweep_history(j);

    } else {
        ngx_http_events_journal_sweep(j);
    }

    if (!ngx_exiting && !ngx_terminate && !ngx_quit) {
        /* index entries left to remove: soon, a bounded number again */
        ngx_add_timer(ev, hsh->cleaned < hsh->gone
                          ? 50 : NGX_HTTP_EVENTS_JOURNAL_SWEEP);
    }
}


/*
 * Retention: closed segments whose last write is older than the zone's
 * retention, and the oldest ones while the journal is over max_size,
 * are deleted.  The segment being written is never deleted.  The
 * directory is read outside the lock; the counters are set under it.
 */

static void
ngx_http_events_journal_sweep(ngx_http_events_journal_t *j)
{
    u_char                         name[NGX_MAX_PATH];
    time_t                         now;
    uint64_t                       current, total, closed, bytes;
    ngx_uint_t                     i, old, big;
    ngx_pool_t                    *pool;
    ngx_array_t                    segs;
    ngx_http_events_journal_sh_t  *jsh;
    ngx_http_events_journal_seg_t *seg;

    jsh = ngx_http_events_store_journal(j->store);

    pool = ngx_create_pool(4096, ngx_cycle->log);
    if (pool == NULL) {
        return;
    }

    if (ngx_http_events_journal_list(j, pool, &segs, ngx_cycle->log)
        != NGX_OK)
    {
        ngx_destroy_pool(pool);
        return;
    }

    /*
     * read after the listing: a segment made since is not listed, and
     * with none being written yet every listed one is closed
     */

    ngx_shmtx_lock(&j->store->shpool->mutex);
    current = jsh->segment;
    ngx_shmtx_unlock(&j->store->shpool->mutex);

    seg = segs.elts;
    total = 0;

    for (i = 0; i < segs.nelts; i++) {
        total += seg[i].size;
    }

    now = ngx_time();
    closed = 0;
    bytes = 0;

    for (i = 0; i < segs.nelts; i++) {

        if (current && seg[i].first >= current) {
            /* being written, or made since we looked */
            continue;
        }

        old = j->store->retention
              && (uint64_t) seg[i].mtime * 1000 + j->store->retention
                 < (uint64_t) now * 1000;
        big = j->max_size && total > (uint64_t) j->max_size;

        if (old || big) {
            ngx_http_events_journal_name(j, name, seg[i].first);

            if (ngx_delete_file(name) == NGX_FILE_ERROR) {
                if (ngx_errno != NGX_ENOENT) {
                    ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, ngx_errno,
                                  ngx_delete_file_n " \"%s\" failed", name);
                    closed++;
                    bytes += seg[i].size;
                    continue;
                }

            } else {
                ngx_log_error(NGX_LOG_INFO, ngx_cycle->log, 0,
                              "events zone \"%V\": journal segment \"%s\" "
                              "(%O bytes) deleted: %s", &j->zone, name,
                              seg[i].size,
                              old ? "older than the retention"
                                  : "over max_size");
            }

            total -= seg[i].size;
            continue;
        }

        closed++;
        bytes += seg[i].size;
    }

    ngx_destroy_pool(pool);

    ngx_shmtx_lock(&j->store->shpool->mutex);

    if (jsh->segment == current) {
        jsh->closed = closed;
        jsh->closed_bytes = bytes;
    }

    ngx_shmtx_unlock(&j->store->shpool->mutex);
}


/*
 * Retention with the history index: max_size gives the index the seq
 * below which segments go, the index moves "gone" past them and past
 * what is older than max_age, removes their entries, and says how far
 * it got; the segments wholly under that are deleted.
 */

static void
ngx_http_events_journal_sweep_history(ngx_http_events_journal_t *j)
{
    u_char                         name[NGX_MAX_PATH];
    uint64_t                       current, total, closed, bytes, next;
    uint64_t                       size_gone, cleaned, first;
    ngx_uint_t                     i, big;
    ngx_pool_t                    *pool;
    ngx_array_t                    segs;
    ngx_http_events_journal_sh_t  *jsh;
    ngx_http_events_history_sh_t  *hsh;
    ngx_http_events_journal_seg_t *seg;

    jsh = ngx_http_events_store_journal(j->store);
    hsh = ngx_http_events_journal_history(j);

    pool = ngx_create_pool(4096, ngx_cycle->log);
    if (pool == NULL) {
        return;
    }

    if (ngx_http_events_journal_list(j, pool, &segs, ngx_cycle->log)
        != NGX_OK)
    {
        ngx_destroy_pool(pool);
        return;
    }

    ngx_shmtx_lock(&j->store->shpool->mutex);
    current = jsh->segment;
    ngx_shmtx_unlock(&j->store->shpool->mutex);

    seg = segs.elts;
    total = 0;

    for (i = 0; i < segs.nelts; i++) {
        total += seg[i].size;
    }

    /* over max_size: the oldest closed segments' events go */

    size_gone = 0;

    for (i = 0; i < segs.nelts && j->max_size
                && total > (uint64_t) j->max_size; i++)
    {
        if (current == 0 || seg[i].first >= current) {
            break;
        }

        next = (i + 1 < segs.nelts) ? seg[i + 1].first : current;
        size_gone = next - 1;
        total -= seg[i].size;
    }

    cleaned = size_gone;
    ngx_http_events_history_sweep(j->history, ngx_http_events_journal_now(),
                                  &cleaned);

    closed = 0;
    bytes = 0;
    first = 0;

    for (i = 0; i < segs.nelts; i++) {
        next = (i + 1 < segs.nelts) ? seg[i + 1].first : current;

        if (current == 0 || seg[i].first >= current || next - 1 > cleaned) {
            if (first == 0) {
                first = seg[i].first;
            }

            if (current == 0 || seg[i].first < current) {
                closed++;
                bytes += seg[i].size;
            }

            continue;
        }

        big = next - 1 <= size_gone;
        ngx_http_events_journal_name(j, name, seg[i].first);

        if (ngx_delete_file(name) == NGX_FILE_ERROR) {
            if (ngx_errno != NGX_ENOENT) {
                ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, ngx_errno,
                              ngx_delete_file_n " \"%s\" failed", name);
            }

            continue;
        }

        ngx_log_error(NGX_LOG_INFO, ngx_cycle->log, 0,
                      "events zone \"%V\": journal segment \"%s\" "
                      "(%O bytes) deleted: %s", &j->zone, name,
                      seg[i].size,
                      big ? "over max_size" : "older than the retention");
    }

    ngx_destroy_pool(pool);

    ngx_shmtx_lock(&j->store->shpool->mutex);

    if (first) {
        hsh->first_segment = first;
    }

    if (jsh->segment == current) {
        jsh->closed = closed;
        jsh->closed_bytes = bytes;
    }

    ngx_shmtx_unlock(&j->store->shpool->mutex);
}


static uint64_t
ngx_http_events_journal_now(void)
{
    ngx_time_t  *tp;

    ngx_time_update();
    tp = ngx_timeofday();

    return (uint64_t) tp->sec * 1000 + tp->msec;
}


/*
 * fsync=always without blocking the worker, group commit for the
 * zone: a sync is an fdatasync() in a thread of the worker that started
 * it ("sync_pid"), and it covers every byte written before it started,
 * whoever wrote them.  At most two are under way (a disk flushes
 * concurrent syncs together), the second started once the first is
 * half done, so that each carries a group.  A request whose records
 * are not durable yet waits in its worker's queue.  When a sync ends,
 * its worker starts the next one if anybody waits for bytes written
 * meanwhile, and rings the doorbells of the workers that wait, which
 * answer what "synced" now covers.  So the writers of all workers share
 * each sync.  With none under way, the next sync may wait a little for
 * the writers the last one answered ("gather", see
 * ngx_http_events_journal_synced()).
 *
 * A worker waiting on another's sync also looks on a short timer: a
 * doorbell rings only the workers of the ringer's cycle (not those of
 * an older one in a reload), and a worker that dies syncing is found
 * out by its pid and replaced.  A failed sync fails every request whose
 * bytes it covered ("fail_from" to "fail_upto"), in any worker: a later
 * sync that succeeds does not make them durable.
 *
 * NGX_OK: durable already; NGX_AGAIN: w->handler will be called;
 * NGX_DECLINED: no thread pool, sync in the worker; NGX_ERROR: the
 * sync could not be started, or failed.
 */

ngx_int_t
ngx_http_events_journal_wait(ngx_http_events_journal_t *j,
    ngx_http_events_journal_waiter_t *w)
{
#if (NGX_THREADS)
    ngx_int_t                      rc;
    ngx_http_events_journal_sh_t  *jsh;

    if (j->task == NULL) {
        return NGX_DECLINED;
    }

    jsh = ngx_http_events_store_journal(j->store);

    ngx_shmtx_lock(&j->store->shpool->mutex);

    rc = ngx_http_events_journal_durable_locked(jsh, w->end);

    if (rc != NGX_AGAIN) {
        ngx_shmtx_unlock(&j->store->shpool->mutex);
        return rc;
    }

    rc = j->syncing ? NGX_BUSY
                    : ngx_http_events_journal_claim_locked(j, jsh, 0);

    ngx_shmtx_unlock(&j->store->shpool->mutex);

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (rc == NGX_OK && ngx_http_events_journal_post(j) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_queue_insert_tail(&j->waiting, &w->queue);
    w->queued = 1;

    ngx_http_events_journal_follow(j, rc);

    return NGX_AGAIN;

#else

    return NGX_DECLINED;

#endif
}


void
ngx_http_events_journal_unwait(ngx_http_events_journal_waiter_t *w)
{
    if (w->queued) {
        ngx_queue_remove(&w->queue);
        w->queued = 0;
    }
}


/* a doorbell rang (or a local publish): another worker's sync ended? */

void
ngx_http_events_journal_wake(ngx_http_events_store_t *store)
{
#if (NGX_THREADS)
    ngx_http_events_journal_t  *j;

    j = store->journal;

    if (j == NULL || j->task == NULL || ngx_queue_empty(&j->waiting)) {
        return;
    }

    ngx_http_events_journal_check(j, 0);
#endif
}


#if (NGX_THREADS)

/* under the lock: whether the bytes before "end" are durable */

static ngx_int_t
ngx_http_events_journal_durable_locked(ngx_http_events_journal_sh_t *jsh,
    uint64_t end)
{
    if (end > jsh->fail_from && end <= jsh->fail_upto) {
        return NGX_ERROR;
    }

    return (end <= jsh->synced) ? NGX_OK : NGX_AGAIN;
}


/*
 * Under the lock: start a sync of everything written so far (NGX_OK:
 * post the task once unlocked), or ask to be rung when a sync under
 * way ends (NGX_BUSY: two are; NGX_AGAIN: not yet, arm the timer).
 * "force": the timer's, which ends a delay.
 */

static ngx_int_t
ngx_http_events_journal_claim_locked(ngx_http_events_journal_t *j,
    ngx_http_events_journal_sh_t *jsh, ngx_uint_t force)
{
    uint64_t    young;
    ngx_fd_t    fd;
    ngx_uint_t  i, slot, busy;

    slot = NGX_HTTP_EVENTS_JOURNAL_DEPTH;
    busy = 0;
    young = 0;

    for (i = 0; i < NGX_HTTP_EVENTS_JOURNAL_DEPTH; i++) {
        if (jsh->sync_pid[i] == 0) {
            slot = ngx_min(slot, i);
            continue;
        }

        busy++;
        young = ngx_max(young, jsh->sync_start[i]);
    }

    if (slot == NGX_HTTP_EVENTS_JOURNAL_DEPTH) {
        if (ngx_worker < NGX_HTTP_EVENTS_MAX_WORKERS) {
            jsh->ring[ngx_worker] = 1;
        }

        return NGX_BUSY;
    }

    /*
     * A disk flushes concurrent syncs together (here 2 in flight gave
     * several times the syncs of 1): a second sync overlaps the one
     * under way, once that is half done, so that each carries a group;
     * with none under way, the commit delay below.
     */

    if (!force
        && ((busy && ngx_http_events_journal_us() < young + jsh->sync_us / 2)
            || (!busy && jsh->writes < jsh->gather
                && ngx_http_events_journal_us() < jsh->gather_us)))
    {
        /* whoever starts it rings us when it ends */
        if (ngx_worker < NGX_HTTP_EVENTS_MAX_WORKERS) {
            jsh->ring[ngx_worker] = 1;
        }

        return NGX_AGAIN;
    }

    if (ngx_http_events_journal_open_locked(j, jsh) != NGX_OK) {
        jsh->errors++;
        return NGX_ERROR;
    }

    /* the thread's own: a rotation may close j->fd meanwhile */
    fd = dup(j->fd);

    if (fd == -1) {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, ngx_errno,
                      "events zone \"%V\": dup() failed", &j->zone);
        jsh->errors++;
        return NGX_ERROR;
    }

    /* every byte before this is in this segment or in synced ones */
    jsh->sync_pid[slot] = ngx_pid;
    jsh->sync_start[slot] = ngx_http_events_journal_us();
    jsh->last_writes = jsh->sync_writes;
    jsh->sync_writes = jsh->writes;

    if (jsh->gather) {
        if ((jsh->writes - jsh->gather_from) * 4
            < (jsh->gather - jsh->gather_from) * 3)
        {
            /* most did not come in time: no delay for the next few */
            jsh->gather_skip = NGX_HTTP_EVENTS_JOURNAL_SKIP;
        }

        jsh->gather = 0;
    }

    j->sync_fd = fd;
    j->sync_upto = jsh->written;
    j->sync_err = 0;
    j->syncing = 1;

    return NGX_OK;
}


/* this process's sync is over, or will not be seen to end */

static void
ngx_http_events_journal_release_locked(ngx_http_events_journal_sh_t *jsh)
{
    ngx_uint_t  i;

    for (i = 0; i < NGX_HTTP_EVENTS_JOURNAL_DEPTH; i++) {
        if (jsh->sync_pid[i] == ngx_pid) {
            jsh->sync_pid[i] = 0;
        }
    }
}


/* the claimed sync to the thread pool; if it cannot go, nobody syncs */

static ngx_int_t
ngx_http_events_journal_post(ngx_http_events_journal_t *j)
{
    ngx_http_events_journal_sh_t  *jsh;

    if (ngx_thread_task_post(j->thread_pool, j->task) == NGX_OK) {
        return NGX_OK;
    }

    jsh = ngx_http_events_store_journal(j->store);

    (void) close(j->sync_fd);
    j->sync_fd = NGX_INVALID_FILE;
    j->syncing = 0;

    ngx_shmtx_lock(&j->store->shpool->mutex);

    ngx_http_events_journal_release_locked(jsh);

    jsh->errors++;

    ngx_shmtx_unlock(&j->store->shpool->mutex);

    return NGX_ERROR;
}


/* waiting on another worker's sync: look again soon, rung or not */

static void
ngx_http_events_journal_follow(ngx_http_events_journal_t *j, ngx_int_t rc)
{
    if (j->syncing || ngx_queue_empty(&j->waiting)) {
        return;
    }

    if (rc == NGX_AGAIN && !j->gather.timer_set) {
        /* the commit delay's bound */
        ngx_add_timer(&j->gather, NGX_HTTP_EVENTS_JOURNAL_GATHER);
    }

    if (!j->follow.timer_set) {
        ngx_add_timer(&j->follow, NGX_HTTP_EVENTS_JOURNAL_FOLLOW);
    }
}


static void
ngx_http_events_journal_follow_handler(ngx_event_t *ev)
{
    ngx_http_events_journal_t  *j = ev->data;

    if (!j->syncing && !ngx_queue_empty(&j->waiting)) {
        ngx_http_events_journal_check(j, 1);
    }
}


/*
 * Answer this worker's waiters that "synced" covers now, and if some
 * are left, start a sync if one may start.  "probe": from the timer,
 * so a syncer may have died; see if its process is still there (not
 * on every wake: kill() is a system call under the lock).
 */

static void
ngx_http_events_journal_check(ngx_http_events_journal_t *j, ngx_uint_t probe)
{
    uint64_t                           synced, fail_from, fail_upto;
    ngx_int_t                          rc;
    ngx_pid_t                          pid;
    ngx_uint_t                         i, left;
    ngx_queue_t                       *q;
    ngx_http_events_journal_sh_t      *jsh;
    ngx_http_events_journal_waiter_t  *w;

    jsh = ngx_http_events_store_journal(j->store);
    pid = 0;
    rc = NGX_DECLINED;
    left = 0;

    ngx_shmtx_lock(&j->store->shpool->mutex);

    for (i = 0; probe && i < NGX_HTTP_EVENTS_JOURNAL_DEPTH; i++) {
        if (jsh->sync_pid[i] != 0 && jsh->sync_pid[i] != ngx_pid
            && kill(jsh->sync_pid[i], 0) == -1 && ngx_errno == NGX_ESRCH)
        {
            pid = jsh->sync_pid[i];
            jsh->sync_pid[i] = 0;
        }
    }

    synced = jsh->synced;
    fail_from = jsh->fail_from;
    fail_upto = jsh->fail_upto;

    for (q = ngx_queue_head(&j->waiting);
         q != ngx_queue_sentinel(&j->waiting);
         q = ngx_queue_next(q))
    {
        w = ngx_queue_data(q, ngx_http_events_journal_waiter_t, queue);

        if (ngx_http_events_journal_durable_locked(jsh, w->end)
            == NGX_AGAIN)
        {
            left = 1;
            break;
        }
    }

    if (left && !j->syncing) {
        rc = ngx_http_events_journal_claim_locked(j, jsh, probe);
    }

    ngx_shmtx_unlock(&j->store->shpool->mutex);

    if (pid) {
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "events zone \"%V\": process %P died syncing the "
                      "journal; this one syncs instead", &j->zone, pid);
    }

    if (rc == NGX_OK && ngx_http_events_journal_post(j) != NGX_OK) {
        rc = NGX_ERROR;
    }

    ngx_http_events_journal_answer(j, synced, fail_from, fail_upto,
                                   rc == NGX_ERROR);

    ngx_http_events_journal_follow(j, rc);
}


static void
ngx_http_events_journal_fsync_thread(void *data, ngx_log_t *log)
{
    ngx_http_events_journal_t  *j = data;

    uint64_t  start;

    start = ngx_http_events_journal_us();

    j->sync_err = (fdatasync(j->sync_fd) == -1) ? ngx_errno : 0;

    j->sync_us = ngx_http_events_journal_us() - start;
}


/* a monotonic clock finer than nginx's cached milliseconds */

static uint64_t
ngx_http_events_journal_us(void)
{
    struct timespec  ts;

    (void) clock_gettime(CLOCK_MONOTONIC, &ts);

    return (uint64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}


/* the thread's sync ended: record it, ring the others, start the next */

static void
ngx_http_events_journal_synced(ngx_event_t *ev)
{
    ngx_http_events_journal_t  *j = ev->data;

    u_char                             ring[NGX_HTTP_EVENTS_MAX_WORKERS];
    uint64_t                           synced, fail_from, fail_upto;
    ngx_int_t                          rc;
    ngx_uint_t                         i, n, left;
    ngx_queue_t                       *q;
    ngx_http_events_journal_sh_t      *jsh;
    ngx_http_events_journal_waiter_t  *w;

    jsh = ngx_http_events_store_journal(j->store);

    (void) close(j->sync_fd);
    j->sync_fd = NGX_INVALID_FILE;
    j->syncing = 0;

    n = 0;
    left = 0;
    rc = NGX_DECLINED;

    ngx_shmtx_lock(&j->store->shpool->mutex);

    if (j->sync_err) {
        jsh->errors++;
        jsh->unsynced = 1;

        /* what this sync covered, and an earlier failure not yet passed */
        if (jsh->fail_upto < jsh->synced) {
            jsh->fail_from = jsh->synced;
        }

        if (jsh->fail_upto < j->sync_upto) {
            jsh->fail_upto = j->sync_upto;
        }

    } else {
        if (jsh->synced < j->sync_upto) {
            jsh->synced = j->sync_upto;
        }

        jsh->sync_us = j->sync_us;

        jsh->fsync_ms = ngx_http_events_journal_now();
        jsh->fsyncs++;
        jsh->unsynced = 0;
    }

    ngx_http_events_journal_release_locked(jsh);

    for (i = 0; i < NGX_HTTP_EVENTS_MAX_WORKERS; i++) {
        ring[i] = jsh->ring[i];

        if (ring[i]) {
            jsh->ring[i] = 0;
            n++;
        }
    }

    synced = jsh->synced;
    fail_from = jsh->fail_from;
    fail_upto = jsh->fail_upto;

    for (q = ngx_queue_head(&j->waiting);
         q != ngx_queue_sentinel(&j->waiting);
         q = ngx_queue_next(q))
    {
        w = ngx_queue_data(q, ngx_http_events_journal_waiter_t, queue);

        if (ngx_http_events_journal_durable_locked(jsh, w->end)
            == NGX_AGAIN)
        {
            left = 1;
            break;
        }
    }

    /*
     * Those who wrote while the disk was busy wait for one more sync.
     * Those it answered now are likely to write again soon (a client
     * that waits for its answer before its next event): the next sync
     * waits until as many more writes came as this one covered, for at
     * most half of what this sync took (PostgreSQL's commit_delay), so
     * that one sync carries both groups, not each its own.  When they
     * do not come in time (a busy machine, clients that do not write
     * again), the delay only idles the disk: the next few go without.
     */

    if (jsh->gather_skip) {
        jsh->gather_skip--;

    } else if (!j->sync_err) {
        jsh->gather_from = jsh->writes;
        jsh->gather = jsh->writes + (jsh->sync_writes - jsh->last_writes);
        jsh->gather_us = ngx_http_events_journal_us()
                         + ngx_min(j->sync_us / 2,
                                   NGX_HTTP_EVENTS_JOURNAL_GATHER * 1000);
    }

    if ((left || n) && jsh->written > jsh->synced) {
        rc = ngx_http_events_journal_claim_locked(j, jsh, 0);
    }

    ngx_shmtx_unlock(&j->store->shpool->mutex);

    for (i = 0; n && i < NGX_HTTP_EVENTS_MAX_WORKERS; i++) {
        if (ring[i] && i != ngx_worker && j->ring) {
            j->ring(i);
        }
    }

    if (j->sync_err) {
        ngx_log_error(NGX_LOG_CRIT, ngx_cycle->log, j->sync_err,
                      "events zone \"%V\": fdatasync() of the journal "
                      "failed", &j->zone);
    }

    if (rc == NGX_OK && ngx_http_events_journal_post(j) != NGX_OK) {
        rc = NGX_ERROR;
    }

    ngx_http_events_journal_answer(j, synced, fail_from, fail_upto,
                                   rc == NGX_ERROR);

    ngx_http_events_journal_follow(j, rc);
}


/*
 * Answer the waiters by what was read under the lock: durable (up to
 * "synced"), failed (in the failed range), or all left with an error.
 */

static void
ngx_http_events_journal_answer(ngx_http_events_journal_t *j, uint64_t synced,
    uint64_t fail_from, uint64_t fail_upto, ngx_uint_t all)
{
    ngx_int_t                          rc;
    ngx_queue_t                       *q, *next;
    ngx_http_events_journal_waiter_t  *w;

    for (q = ngx_queue_head(&j->waiting);
         q != ngx_queue_sentinel(&j->waiting);
         q = next)
    {
        next = ngx_queue_next(q);
        w = ngx_queue_data(q, ngx_http_events_journal_waiter_t, queue);

        if (w->end > fail_from && w->end <= fail_upto) {
            rc = NGX_ERROR;

        } else if (w->end <= synced) {
            rc = NGX_OK;

        } else if (all) {
            rc = NGX_ERROR;

        } else {
            continue;
        }

        ngx_queue_remove(q);
        w->queued = 0;

        w->handler(w->data, rc);
    }
}

#endif
