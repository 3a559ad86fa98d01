
/*
 * Copyright (C) ngx_http_events_module authors
 */


/*
 * The event store: one shared-memory zone per events_zone, holding
 *
 *   - a ring of variable-length records (header, keys, envelope JSON),
 *     addressed by 64-bit logical offsets that only grow;
 *   - the seq index: a circular array of (seq, offset) in seq order;
 *   - two chained hash indexes, id -> record and entity -> records,
 *     whose links live in the records and always point to older records,
 *     so that eviction (always the oldest) never has to unlink anything:
 *     a walk stops at the first offset below the tail; a third one, by
 *     (tenant, value) of one metadata key (events_zone metadata_index=,
 *     actorId unless set), is chained the same way;
 *   - the type catalog, an rbtree of (tenant, type) -> count, last time.
 *
 * Writers hold shpool->mutex (the only lock the master releases when a
 * worker dies), advance the tail before they overwrite anything, write,
 * and publish the new head last.  Readers take no lock: they copy, then
 * check that what they copied is still at or above the tail.
 *
 * With a journal the ring is a cache of its newest events: what a read
 * needs from before the ring comes from the history index on disk
 * (ngx_http_events_history.c), and the window is the journal's.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_md5.h>

#include <openssl/rand.h>

#include "ngx_http_events_store.h"
#include "ngx_http_events_match.h"
#include "ngx_http_events_journal.h"
#include "ngx_http_events_history.h"


#define NGX_HTTP_EVENTS_MAGIC       0x45564e54      /* "EVNT" */
#define NGX_HTTP_EVENTS_VERSION     11

/* an index slot for every this many bytes of ring */
#define NGX_HTTP_EVENTS_SLOT_BYTES  256

#define NGX_HTTP_EVENTS_RETRIES     8

/* lookups of client ids in the index before the lock, at most */
#define NGX_HTTP_EVENTS_LOOKUPS     8


typedef struct {
    uint64_t                    seq;
    uint64_t                    time_ms;
    uint64_t                    prev_id;        /* offset + 1, or 0 */
    uint64_t                    prev_entity;    /* offset + 1, or 0 */
    uint64_t                    prev_actor;     /* offset + 1, or 0 */
    uint32_t                    size;
    uint32_t                    json_len;
    uint32_t                    id_hash;
    uint32_t                    entity_hash;
    uint32_t                    actor_hash;     /* of the indexed key */
    u_char                      digest[16];
    uint16_t                    tenant_len;
    uint16_t                    id_len;
    uint16_t                    type_len;
    uint16_t                    rtype_len;
    uint16_t                    rid_len;
    uint16_t                    source_len;
    u_char                      action;
    u_char                      client_id;
    u_char                      actor;          /* has the indexed key */
} ngx_http_events_record_t;


typedef struct {
    uint64_t                    seq;
    uint64_t                    off;
} ngx_http_events_slot_t;


/* what the history index said of a client id, before the lock */
typedef struct {
    ngx_http_events_event_t     old;
    uint64_t                    upto;           /* it had every seq to it */
    ngx_int_t                   rc;             /* NGX_DONE: not asked */
} ngx_http_events_store_lookup_t;


typedef struct {
    ngx_rbtree_node_t           node;
    uint64_t                    count;
    uint64_t                    last_ms;
    u_short                     tenant_len;
    u_short                     type_len;
    u_char                      data[1];
} ngx_http_events_type_node_t;


/* a tenant with events in the ring: how many, of how many types */
typedef struct {
    ngx_rbtree_node_t           node;
    uint64_t                    events;
    uint64_t                    types;
    u_short                     len;
    u_char                      data[1];
} ngx_http_events_tenant_node_t;


struct ngx_http_events_sh_s {
    uint32_t                    magic;
    uint32_t                    version;
    uint64_t                    epoch;
    uint64_t                    zone_size;
    u_char                      secret[NGX_HTTP_EVENTS_CURSOR_SECRET];

    u_char                     *ring;
    uint64_t                    ring_size;
    ngx_http_events_slot_t     *slots;
    uint64_t                    nslots;
    uint64_t                   *id_buckets;
    uint64_t                   *entity_buckets;
    uint64_t                    bucket_mask;
    uint64_t                   *actor_buckets;
    uint64_t                    actor_mask;
    /* metadata_index=: the key the actor buckets hash, set under lock */
    size_t                      actor_key_len;
    u_char                      actor_key[NGX_HTTP_EVENTS_MAX_META_KEY];

    volatile uint64_t           head;
    volatile uint64_t           tail;
    volatile uint64_t           slot_head;
    volatile uint64_t           slot_tail;
    volatile uint64_t           last_seq;
    volatile uint64_t           evicted_seq;
    uint64_t                    last_ms;

    ngx_rbtree_t                types;
    ngx_rbtree_node_t           types_sentinel;
    uint64_t                    ntypes;
    ngx_rbtree_t                tenants;        /* their types, events */
    ngx_rbtree_node_t           tenants_sentinel;
    size_t                      catalog_max;    /* its share of the spare */
    size_t                      catalog_bytes;  /* what it takes now */
    uint64_t                    rejected_types; /* at a tenant's cap */

    uint64_t                    stored;
    uint64_t                    evicted;
    uint64_t                    expired;
    uint64_t                    repeats;
    uint64_t                    conflicts;
    uint64_t                    rejected_full;
    ngx_atomic_t                counters[NGX_HTTP_EVENTS_NCOUNTERS];

    ngx_http_events_journal_sh_t   journal;

    ngx_http_events_worker_stat_t  workers[NGX_HTTP_EVENTS_MAX_WORKERS];

    void                       *webhooks;       /* allocated on first use */
    void                       *inbound;        /* allocated on first use */
};


/* a record's header and keys, copied out of the ring */
typedef struct {
    ngx_http_events_record_t    h;
    ngx_str_t                   tenant;
    ngx_str_t                   id;
    ngx_str_t                   type;
    ngx_str_t                   rtype;
    ngx_str_t                   rid;
    ngx_str_t                   source;
    u_char                      keys[NGX_HTTP_EVENTS_MAX_KEYS];
} ngx_http_events_copy_t;


static void ngx_http_events_store_cursor_cleanup(void *data);
static ngx_int_t ngx_http_events_store_layout(ngx_shm_zone_t *shm_zone,
    ngx_http_events_sh_t *sh);
static uint32_t ngx_http_events_store_hash2(ngx_str_t *a, ngx_str_t *b);
static uint32_t ngx_http_events_store_hash3(ngx_str_t *a, ngx_str_t *b,
    ngx_str_t *c);
static ngx_http_events_record_t *ngx_http_events_store_record(
    ngx_http_events_sh_t *sh, uint64_t off);
static ngx_http_events_record_t *ngx_http_events_store_find_id_locked(
    ngx_http_events_sh_t *sh, ngx_str_t *tenant, ngx_str_t *id);
static ngx_http_events_type_node_t *ngx_http_events_store_type_find(
    ngx_http_events_sh_t *sh, ngx_str_t *tenant, ngx_str_t *type,
    uint32_t hash);
static ngx_http_events_tenant_node_t *ngx_http_events_store_tenant_find(
    ngx_http_events_sh_t *sh, ngx_str_t *tenant, uint32_t hash);
static size_t ngx_http_events_store_slab_size(size_t size);
static ngx_http_events_store_rc_e ngx_http_events_store_type_ref(
    ngx_http_events_store_t *store, ngx_str_t *tenant, ngx_str_t *type,
    ngx_uint_t bounded);
static void ngx_http_events_store_type_touch(ngx_http_events_sh_t *sh,
    ngx_str_t *tenant, ngx_str_t *type, uint64_t last_ms);
static void ngx_http_events_store_type_unref(ngx_http_events_store_t *store,
    ngx_str_t *tenant, ngx_str_t *type);
static void ngx_http_events_store_type_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel);
static void ngx_http_events_store_evict_locked(ngx_http_events_store_t *store);
static void ngx_http_events_store_expire_locked(ngx_http_events_store_t *store,
    uint64_t now);
static void ngx_http_events_store_actor(ngx_http_events_store_t *store,
    ngx_http_events_event_t *ev);
static void ngx_http_events_store_write_locked(ngx_http_events_store_t *store,
    ngx_http_events_event_t *ev);
static size_t ngx_http_events_store_record_size(ngx_http_events_event_t *ev);
static u_char *ngx_http_events_store_write_json(u_char *p,
    ngx_http_events_event_t *ev);
static ngx_int_t ngx_http_events_store_copy(ngx_http_events_sh_t *sh,
    uint64_t off, ngx_http_events_copy_t *c);
static ngx_int_t ngx_http_events_store_copy_json(ngx_http_events_sh_t *sh,
    uint64_t off, ngx_http_events_copy_t *c, ngx_pool_t *pool,
    ngx_str_t *json);
static ngx_inline ngx_uint_t ngx_http_events_store_valid(
    ngx_http_events_sh_t *sh, uint64_t off);
static ngx_int_t ngx_http_events_store_read_slot(ngx_http_events_sh_t *sh,
    uint64_t i, ngx_http_events_slot_t *slot);
static ngx_int_t ngx_http_events_store_seek(ngx_http_events_sh_t *sh,
    uint64_t seq, uint64_t *pos);
static ngx_uint_t ngx_http_events_store_match_query(ngx_http_events_query_t *q,
    ngx_http_events_copy_t *c);
static ngx_int_t ngx_http_events_store_reindex(ngx_shm_zone_t *shm_zone,
    ngx_http_events_store_t *store);
static void ngx_http_events_store_index_locked(ngx_http_events_sh_t *sh,
    uint64_t off, ngx_str_t *key);


static ngx_uint_t ngx_http_events_store_match_meta(ngx_http_events_sh_t *sh,
    uint64_t off, ngx_http_events_copy_t *c, ngx_http_events_query_t *q);
static ngx_int_t ngx_http_events_store_query_scan(
    ngx_http_events_store_t *store, ngx_http_events_query_t *q,
    ngx_pool_t *pool, ngx_http_events_result_t *res);
static ngx_int_t ngx_http_events_store_query_entity(
    ngx_http_events_store_t *store, ngx_http_events_query_t *q,
    ngx_pool_t *pool, ngx_http_events_result_t *res,
    ngx_http_events_meta_filter_t *f);
static ngx_http_events_meta_filter_t *ngx_http_events_store_actor_filter(
    ngx_http_events_sh_t *sh, ngx_http_events_query_t *q);
static ngx_int_t ngx_http_events_store_add_item(ngx_http_events_sh_t *sh,
    uint64_t off, ngx_http_events_copy_t *c, ngx_pool_t *pool,
    ngx_http_events_result_t *res);
static void ngx_http_events_store_expire(ngx_http_events_store_t *store);
static ngx_int_t ngx_http_events_store_ring_get(ngx_http_events_store_t *store,
    ngx_str_t *tenant, ngx_str_t *id, uint64_t gone, ngx_pool_t *pool,
    ngx_str_t *json);
static ngx_http_events_history_t *ngx_http_events_store_history(
    ngx_http_events_store_t *store);
static ngx_int_t ngx_http_events_store_answer_query(
    ngx_http_events_store_t *store, ngx_http_events_query_t *q,
    ngx_pool_t *pool, ngx_http_events_result_t *res);
static ngx_int_t ngx_http_events_store_disk_query(
    ngx_http_events_history_t *hist, ngx_http_events_query_t *q,
    ngx_pool_t *pool, ngx_http_events_result_t *res);
static void ngx_http_events_store_ring_window(ngx_http_events_store_t *store,
    ngx_http_events_window_t *w);
static ngx_int_t ngx_http_events_store_lookup(ngx_http_events_store_t *store,
    ngx_http_events_event_t *events, ngx_uint_t n, ngx_pool_t *pool,
    ngx_http_events_store_lookup_t *lk);
static ngx_http_events_store_rc_e ngx_http_events_store_repeats_locked(
    ngx_http_events_store_t *store, ngx_http_events_event_t *events,
    ngx_uint_t n, ngx_pool_t *pool, ngx_http_events_store_lookup_t *lk,
    ngx_uint_t *failed);
static ngx_http_events_store_rc_e ngx_http_events_store_catalog_locked(
    ngx_http_events_store_t *store, ngx_http_events_event_t *events,
    ngx_uint_t n, ngx_uint_t *failed);
static void ngx_http_events_store_uncatalog_locked(
    ngx_http_events_store_t *store, ngx_http_events_event_t *events,
    ngx_uint_t n);
static void ngx_http_events_store_publish_locked(
    ngx_http_events_store_t *store, ngx_http_events_event_t *events,
    ngx_uint_t n, uint64_t seq, uint64_t now);
static ngx_http_events_store_rc_e ngx_http_events_store_answer(
    ngx_http_events_event_t *events, ngx_uint_t n, ngx_pool_t *pool);


ngx_int_t
ngx_http_events_store_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_events_store_t  *ostore = data;

    size_t                    len;
    ngx_slab_pool_t          *shpool;
    ngx_http_events_sh_t     *sh;
    ngx_http_events_store_t  *store;

    store = shm_zone->data;

    if (ostore) {
        sh = ostore->sh;

        if (sh->magic != NGX_HTTP_EVENTS_MAGIC
            || sh->version != NGX_HTTP_EVENTS_VERSION)
        {
            ngx_log_error(NGX_LOG_EMERG, shm_zone->shm.log, 0,
                          "events zone \"%V\" has an incompatible layout "
                          "(version %uD, this module writes %d); "
                          "restart nginx instead of reloading",
                          &shm_zone->shm.name, sh->version,
                          NGX_HTTP_EVENTS_VERSION);
            return NGX_ERROR;
        }

        store->sh = sh;
        store->shpool = ostore->shpool;
        store->epoch = sh->epoch;

        if (ngx_http_events_store_reindex(shm_zone, store) != NGX_OK) {
            return NGX_ERROR;
        }

        if (store->journal) {
            return ngx_http_events_journal_init_zone(store->journal,
                                                     shm_zone->shm.log, 1);
        }

        return NGX_OK;
    }

    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        store->sh = shpool->data;
        store->shpool = shpool;
        store->epoch = store->sh->epoch;
        return NGX_OK;
    }

    store->shpool = shpool;

    sh = ngx_slab_calloc(shpool, sizeof(ngx_http_events_sh_t));
    if (sh == NULL) {
        return NGX_ERROR;
    }

    shpool->data = sh;
    store->sh = sh;

    if (ngx_http_events_store_layout(shm_zone, sh) != NGX_OK) {
        return NGX_ERROR;
    }

    store->epoch = sh->epoch;

    len = sizeof(" in events zone \"\"") + shm_zone->shm.name.len;

    shpool->log_ctx = ngx_slab_alloc(shpool, len);
    if (shpool->log_ctx == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(shpool->log_ctx, " in events zone \"%V\"%Z",
                &shm_zone->shm.name);

    /* the catalog handles a failed allocation itself: 503, not crit */
    shpool->log_nomem = 0;

    /* a journal gives the zone back its events, seqs and epoch */
    if (store->journal
        && ngx_http_events_journal_init_zone(store->journal,
                                             shm_zone->shm.log, 0)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    store->epoch = sh->epoch;

    ngx_log_error(NGX_LOG_NOTICE, shm_zone->shm.log, 0,
                  "events zone \"%V\": %uL bytes of ring, %uL index slots, "
                  "epoch %016uxL",
                  &shm_zone->shm.name, sh->ring_size, sh->nslots, sh->epoch);

    return NGX_OK;
}


static ngx_int_t
ngx_http_events_store_layout(ngx_shm_zone_t *shm_zone,
    ngx_http_events_sh_t *sh)
{
    uint64_t                  size, ring, nslots, nbuckets;
    ngx_slab_pool_t          *shpool;
    ngx_http_events_store_t  *store;

    store = shm_zone->data;
    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;
    size = shm_zone->shm.size;

    /*
     * 3/4 of the zone is ring; the index slots and both bucket arrays
     * take about 1/8 of that; the rest is slab overhead and the catalog
     */
    ring = ngx_align((size / 4 * 3) - ngx_pagesize + 1, ngx_pagesize);
    ring = ring / ngx_pagesize * ngx_pagesize;
    nslots = ring / NGX_HTTP_EVENTS_SLOT_BYTES;

    for (nbuckets = 1; nbuckets * 2 <= nslots; nbuckets *= 2) {
        /* void */
    }

    sh->magic = NGX_HTTP_EVENTS_MAGIC;
    sh->version = NGX_HTTP_EVENTS_VERSION;
    sh->zone_size = size;

    /* the big block first, while the pool is not fragmented */
    sh->ring = ngx_slab_alloc(shpool, ring);
    sh->slots = ngx_slab_alloc(shpool,
                               nslots * sizeof(ngx_http_events_slot_t));
    sh->id_buckets = ngx_slab_calloc(shpool, nbuckets * sizeof(uint64_t));
    sh->entity_buckets = ngx_slab_calloc(shpool,
                                         nbuckets * sizeof(uint64_t));

    /* actors are fewer than entities: a quarter of the buckets */
    sh->actor_mask = (nbuckets >= 4 ? nbuckets / 4 : 1) - 1;
    sh->actor_buckets = ngx_slab_calloc(shpool,
                                        (sh->actor_mask + 1)
                                        * sizeof(uint64_t));

    if (sh->ring == NULL || sh->slots == NULL || sh->id_buckets == NULL
        || sh->entity_buckets == NULL || sh->actor_buckets == NULL)
    {
        ngx_log_error(NGX_LOG_EMERG, shm_zone->shm.log, 0,
                      "events zone \"%V\" is too small",
                      &shm_zone->shm.name);
        return NGX_ERROR;
    }

    /*
     * touch every page now, in the master: otherwise the first fill of
     * the ring pays a page fault and a zeroed page every 4k, in writers
     */
    ngx_memzero(sh->ring, ring);

    sh->ring_size = ring;
    sh->nslots = nslots;
    sh->bucket_mask = nbuckets - 1;

    sh->actor_key_len = store->index_key.len;
    ngx_memcpy(sh->actor_key, store->index_key.data, store->index_key.len);

    do {
        if (RAND_bytes((u_char *) &sh->epoch, sizeof(uint64_t)) != 1) {
            ngx_log_error(NGX_LOG_EMERG, shm_zone->shm.log, 0,
                          "RAND_bytes() failed for events zone \"%V\"",
                          &shm_zone->shm.name);
            return NGX_ERROR;
        }
    } while (sh->epoch == 0);

    if (RAND_bytes(sh->secret, NGX_HTTP_EVENTS_CURSOR_SECRET) != 1) {
        ngx_log_error(NGX_LOG_EMERG, shm_zone->shm.log, 0,
                      "RAND_bytes() failed for events zone \"%V\"",
                      &shm_zone->shm.name);
        return NGX_ERROR;
    }

    ngx_rbtree_init(&sh->types, &sh->types_sentinel,
                    ngx_http_events_store_type_insert);
    ngx_rbtree_init(&sh->tenants, &sh->tenants_sentinel,
                    ngx_http_events_store_type_insert);

    /*
     * the catalog may take three quarters of the spare memory and no
     * more, whoever else uses the rest: webhook endpoints and deliveries
     * must find room when one tenant, or many, write type after type,
     * and static endpoints made after this must not starve the catalog
     */
    sh->catalog_max = shpool->pfree * ngx_pagesize / 4 * 3;
    sh->catalog_bytes = 0;

    return NGX_OK;
}


size_t
ngx_http_events_store_max_record(ngx_http_events_store_t *store)
{
    /* with the padding at the ring's end, twice this always fits */
    return store->sh->ring_size / 2;
}


ngx_uint_t
ngx_http_events_store_max_batch(ngx_http_events_store_t *store)
{
    return store->sh->nslots / 2;
}


/* keys and hashes */

static uint32_t
ngx_http_events_store_hash2(ngx_str_t *a, ngx_str_t *b)
{
    uint32_t  h;

    ngx_crc32_init(h);
    ngx_crc32_update(&h, a->data, a->len);
    ngx_crc32_update(&h, (u_char *) "", 1);
    ngx_crc32_update(&h, b->data, b->len);
    ngx_crc32_final(h);

    return h;
}


static uint32_t
ngx_http_events_store_hash3(ngx_str_t *a, ngx_str_t *b, ngx_str_t *c)
{
    uint32_t  h;

    ngx_crc32_init(h);
    ngx_crc32_update(&h, a->data, a->len);
    ngx_crc32_update(&h, (u_char *) "", 1);
    ngx_crc32_update(&h, b->data, b->len);
    ngx_crc32_update(&h, (u_char *) "", 1);
    ngx_crc32_update(&h, c->data, c->len);
    ngx_crc32_final(h);

    return h;
}


static ngx_http_events_record_t *
ngx_http_events_store_record(ngx_http_events_sh_t *sh, uint64_t off)
{
    return (ngx_http_events_record_t *) (sh->ring + off % sh->ring_size);
}


#define ngx_http_events_rec_tenant(h)                                         \
    ((u_char *) (h) + sizeof(ngx_http_events_record_t))
#define ngx_http_events_rec_id(h)                                             \
    (ngx_http_events_rec_tenant(h) + (h)->tenant_len)
#define ngx_http_events_rec_type(h)                                           \
    (ngx_http_events_rec_id(h) + (h)->id_len)
#define ngx_http_events_rec_rtype(h)                                          \
    (ngx_http_events_rec_type(h) + (h)->type_len)
#define ngx_http_events_rec_rid(h)                                            \
    (ngx_http_events_rec_rtype(h) + (h)->rtype_len)
#define ngx_http_events_rec_source(h)                                         \
    (ngx_http_events_rec_rid(h) + (h)->rid_len)
#define ngx_http_events_rec_json(h)                                           \
    (ngx_http_events_rec_source(h) + (h)->source_len)
#define ngx_http_events_rec_keys_len(h)                                       \
    ((size_t) (h)->tenant_len + (h)->id_len + (h)->type_len                   \
     + (h)->rtype_len + (h)->rid_len + (h)->source_len)


static ngx_inline ngx_uint_t
ngx_http_events_store_str_eq(ngx_str_t *s, u_char *p, size_t len)
{
    return s->len == len && ngx_memcmp(s->data, p, len) == 0;
}


/* called with the mutex held: the chain is stable */

static ngx_http_events_record_t *
ngx_http_events_store_find_id_locked(ngx_http_events_sh_t *sh,
    ngx_str_t *tenant, ngx_str_t *id)
{
    uint32_t                   hash;
    uint64_t                   link;
    ngx_http_events_record_t  *h;

    hash = ngx_http_events_store_hash2(tenant, id);
    link = sh->id_buckets[hash & sh->bucket_mask];

    while (link != 0 && link - 1 >= sh->tail) {
        h = ngx_http_events_store_record(sh, link - 1);

        if (h->id_hash == hash
            && ngx_http_events_store_str_eq(tenant,
                                            ngx_http_events_rec_tenant(h),
                                            h->tenant_len)
            && ngx_http_events_store_str_eq(id, ngx_http_events_rec_id(h),
                                            h->id_len))
        {
            return h;
        }

        link = h->prev_id;
    }

    return NULL;
}


/* the type catalog */

static ngx_http_events_type_node_t *
ngx_http_events_store_type_find(ngx_http_events_sh_t *sh, ngx_str_t *tenant,
    ngx_str_t *type, uint32_t hash)
{
    ngx_rbtree_node_t            *node, *sentinel;
    ngx_http_events_type_node_t  *tn;

    node = sh->types.root;
    sentinel = sh->types.sentinel;

    while (node != sentinel) {

        if (hash != node->key) {
            node = (hash < node->key) ? node->left : node->right;
            continue;
        }

        tn = (ngx_http_events_type_node_t *) node;

        if (ngx_http_events_store_str_eq(tenant, tn->data, tn->tenant_len)
            && ngx_http_events_store_str_eq(type, tn->data + tn->tenant_len,
                                            tn->type_len))
        {
            return tn;
        }

        /* equal hashes go right, see the insert function */
        node = node->right;
    }

    return NULL;
}


static void
ngx_http_events_store_type_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel)
{
    ngx_rbtree_node_t  **p;

    for ( ;; ) {
        p = (node->key < temp->key) ? &temp->left : &temp->right;

        if (*p == sentinel) {
            break;
        }

        temp = *p;
    }

    *p = node;
    node->parent = temp;
    node->left = sentinel;
    node->right = sentinel;
    ngx_rbt_red(node);
}


static ngx_http_events_tenant_node_t *
ngx_http_events_store_tenant_find(ngx_http_events_sh_t *sh, ngx_str_t *tenant,
    uint32_t hash)
{
    ngx_rbtree_node_t              *node, *sentinel;
    ngx_http_events_tenant_node_t  *tn;

    node = sh->tenants.root;
    sentinel = sh->tenants.sentinel;

    while (node != sentinel) {

        if (hash != node->key) {
            node = (hash < node->key) ? node->left : node->right;
            continue;
        }

        tn = (ngx_http_events_tenant_node_t *) node;

        if (ngx_http_events_store_str_eq(tenant, tn->data, tn->len)) {
            return tn;
        }

        /* equal hashes go right, see the insert function */
        node = node->right;
    }

    return NULL;
}


/* what the slab takes for an allocation of this size: a power of two */

static size_t
ngx_http_events_store_slab_size(size_t size)
{
    size_t  n;

    for (n = 8; n < size; n <<= 1) { /* void */ }

    return n;
}


/*
 * An event's (tenant, type) into the catalog.  A type new to its tenant
 * is refused (when bounded: not at replay) if the tenant has
 * NGX_HTTP_EVENTS_TENANT_TYPES of them, or if the slab would be left
 * past its share of the spare memory: one tenant cannot take the zone's spare
 * memory, and all of them together cannot take what webhooks need.
 */

static ngx_http_events_store_rc_e
ngx_http_events_store_type_ref(ngx_http_events_store_t *store,
    ngx_str_t *tenant, ngx_str_t *type, ngx_uint_t bounded)
{
    size_t                          size;
    uint32_t                        hash, thash;
    ngx_http_events_sh_t           *sh;
    ngx_http_events_type_node_t    *tn;
    ngx_http_events_tenant_node_t  *ten;

    sh = store->sh;
    hash = ngx_http_events_store_hash2(tenant, type);
    thash = ngx_crc32_short(tenant->data, tenant->len);

    tn = ngx_http_events_store_type_find(sh, tenant, type, hash);
    ten = ngx_http_events_store_tenant_find(sh, tenant, thash);

    if (tn == NULL) {
        if (bounded && ten && ten->types >= NGX_HTTP_EVENTS_TENANT_TYPES) {
            sh->rejected_types++;
            return NGX_HTTP_EVENTS_STORE_TOO_MANY_TYPES;
        }

        size = ngx_http_events_store_slab_size(
                   sizeof(ngx_http_events_type_node_t) + tenant->len
                   + type->len)
               + (ten ? 0 : ngx_http_events_store_slab_size(
                                sizeof(ngx_http_events_tenant_node_t)
                                + tenant->len));

        if (bounded && sh->catalog_bytes + size > sh->catalog_max) {
            return NGX_HTTP_EVENTS_STORE_FULL;
        }

        if (ten == NULL) {
            ten = ngx_slab_alloc_locked(store->shpool,
                                        sizeof(ngx_http_events_tenant_node_t)
                                        + tenant->len);
            if (ten == NULL) {
                return NGX_HTTP_EVENTS_STORE_FULL;
            }

            sh->catalog_bytes += ngx_http_events_store_slab_size(
                                     sizeof(ngx_http_events_tenant_node_t)
                                     + tenant->len);

            ten->node.key = thash;
            ten->events = 0;
            ten->types = 0;
            ten->len = (u_short) tenant->len;
            ngx_memcpy(ten->data, tenant->data, tenant->len);

            ngx_rbtree_insert(&sh->tenants, &ten->node);
        }

        tn = ngx_slab_alloc_locked(store->shpool,
                                   sizeof(ngx_http_events_type_node_t)
                                   + tenant->len + type->len);
        if (tn == NULL) {
            if (ten->types == 0) {
                ngx_rbtree_delete(&sh->tenants, &ten->node);
                ngx_slab_free_locked(store->shpool, ten);
                sh->catalog_bytes -= ngx_http_events_store_slab_size(
                                         sizeof(ngx_http_events_tenant_node_t)
                                         + tenant->len);
            }

            return NGX_HTTP_EVENTS_STORE_FULL;
        }

        tn->node.key = hash;
        tn->count = 0;
        tn->last_ms = 0;
        tn->tenant_len = (u_short) tenant->len;
        tn->type_len = (u_short) type->len;
        ngx_memcpy(ngx_cpymem(tn->data, tenant->data, tenant->len),
                   type->data, type->len);

        ngx_rbtree_insert(&sh->types, &tn->node);
        sh->catalog_bytes += ngx_http_events_store_slab_size(
                                 sizeof(ngx_http_events_type_node_t)
                                 + tenant->len + type->len);
        sh->ntypes++;
        ten->types++;
    }

    tn->count++;
    ten->events++;

    return NGX_HTTP_EVENTS_STORE_OK;
}


static void
ngx_http_events_store_type_touch(ngx_http_events_sh_t *sh, ngx_str_t *tenant,
    ngx_str_t *type, uint64_t last_ms)
{
    ngx_http_events_type_node_t  *tn;

    tn = ngx_http_events_store_type_find(sh, tenant, type,
                                         ngx_http_events_store_hash2(tenant,
                                                                     type));
    if (tn != NULL) {
        tn->last_ms = last_ms;
    }
}


static void
ngx_http_events_store_type_unref(ngx_http_events_store_t *store,
    ngx_str_t *tenant, ngx_str_t *type)
{
    ngx_http_events_sh_t           *sh;
    ngx_http_events_type_node_t    *tn;
    ngx_http_events_tenant_node_t  *ten;

    sh = store->sh;

    tn = ngx_http_events_store_type_find(sh, tenant, type,
                                         ngx_http_events_store_hash2(tenant,
                                                                     type));
    if (tn == NULL) {
        return;
    }

    ten = ngx_http_events_store_tenant_find(sh, tenant,
                                            ngx_crc32_short(tenant->data,
                                                            tenant->len));

    if (--tn->count == 0) {
        ngx_rbtree_delete(&sh->types, &tn->node);
        ngx_slab_free_locked(store->shpool, tn);
        sh->catalog_bytes -= ngx_http_events_store_slab_size(
                                 sizeof(ngx_http_events_type_node_t)
                                 + tenant->len + type->len);
        sh->ntypes--;

        if (ten) {
            ten->types--;
        }
    }

    if (ten && --ten->events == 0) {
        ngx_rbtree_delete(&sh->tenants, &ten->node);
        ngx_slab_free_locked(store->shpool, ten);
        sh->catalog_bytes -= ngx_http_events_store_slab_size(
                                 sizeof(ngx_http_events_tenant_node_t)
                                 + tenant->len);
    }
}


/* writing */

static void
ngx_http_events_store_evict_locked(ngx_http_events_store_t *store)
{
    ngx_str_t                  tenant, type;
    ngx_http_events_sh_t      *sh;
    ngx_http_events_slot_t    *slot;
    ngx_http_events_record_t  *h;

    sh = store->sh;
    slot = &sh->slots[sh->slot_tail % sh->nslots];
    h = ngx_http_events_store_record(sh, slot->off);

    tenant.len = h->tenant_len;
    tenant.data = ngx_http_events_rec_tenant(h);
    type.len = h->type_len;
    type.data = ngx_http_events_rec_type(h);

    ngx_http_events_store_type_unref(store, &tenant, &type);

    sh->evicted_seq = slot->seq;
    sh->slot_tail++;
    sh->tail = (sh->slot_tail < sh->slot_head)
               ? sh->slots[sh->slot_tail % sh->nslots].off
               : sh->head;
}


static void
ngx_http_events_store_expire_locked(ngx_http_events_store_t *store,
    uint64_t now)
{
    ngx_http_events_sh_t      *sh;
    ngx_http_events_record_t  *h;

    sh = store->sh;

    if (store->retention == 0) {
        return;
    }

    while (sh->slot_tail < sh->slot_head) {
        h = ngx_http_events_store_record(
                sh, sh->slots[sh->slot_tail % sh->nslots].off);

        if (h->time_ms + store->retention >= now) {
            break;
        }

        ngx_http_events_store_evict_locked(store);
        sh->expired++;
    }
}


/*
 * Readers drop expired events too, so that the window is right without
 * writes; the lock is taken only when the oldest event has expired.
 */

static void
ngx_http_events_store_expire(ngx_http_events_store_t *store)
{
    uint64_t                  now;
    ngx_http_events_sh_t     *sh;
    ngx_http_events_slot_t    slot;
    ngx_http_events_copy_t    c;

    sh = store->sh;

    if (store->retention == 0
        || ngx_http_events_store_read_slot(sh, sh->slot_tail, &slot) != NGX_OK
        || ngx_http_events_store_copy(sh, slot.off, &c) != NGX_OK)
    {
        return;
    }

    now = ngx_http_events_time_now_ms();

    if (c.h.time_ms + store->retention >= now) {
        return;
    }

    ngx_shmtx_lock(&store->shpool->mutex);
    ngx_http_events_store_expire_locked(store, now);
    ngx_shmtx_unlock(&store->shpool->mutex);
}


static size_t
ngx_http_events_store_record_size(ngx_http_events_event_t *ev)
{
    size_t  len;

    len = sizeof(ngx_http_events_record_t)
          + ev->tenant.len + ev->id.len + ev->type.len + ev->rtype.len
          + ev->rid.len + ev->source.len
          + ev->json_len + NGX_INT64_LEN + NGX_HTTP_EVENTS_TIMESTAMP_LEN;

    return ngx_align(len, 8);
}


/*
 * The timestamp last written, and its millisecond: an event's envelope
 * is written two or three times (the journal, the ring, the answer) and
 * a batch's events share their millisecond, so most are a copy.  Only
 * this process's event loop writes envelopes (never a thread task).
 */

static uint64_t  ngx_http_events_store_ts_ms = (uint64_t) -1;
static u_char    ngx_http_events_store_ts[NGX_HTTP_EVENTS_TIMESTAMP_LEN];


static u_char *
ngx_http_events_store_write_json(u_char *p, ngx_http_events_event_t *ev)
{
    u_char    *d, digits[NGX_INT64_LEN];
    uint64_t   n;

    /* the seq in decimal, as ngx_sprintf("%uL") without its parsing */
    d = digits + NGX_INT64_LEN;
    n = ev->seq;

    do {
        *--d = (u_char) ('0' + n % 10);
        n /= 10;
    } while (n);

    p = ngx_cpymem(p, ev->json, ev->seq_at);
    p = ngx_cpymem(p, d, digits + NGX_INT64_LEN - d);
    p = ngx_cpymem(p, ev->json + ev->seq_at, ev->ts_at - ev->seq_at);

    if (ev->time_ms != ngx_http_events_store_ts_ms) {
        (void) ngx_http_events_time_write(ngx_http_events_store_ts,
                                          ev->time_ms);
        ngx_http_events_store_ts_ms = ev->time_ms;
    }

    p = ngx_cpymem(p, ngx_http_events_store_ts,
                   NGX_HTTP_EVENTS_TIMESTAMP_LEN);
    p = ngx_cpymem(p, ev->json + ev->ts_at, ev->json_len - ev->ts_at);

    return p;
}


static void
ngx_http_events_store_write_locked(ngx_http_events_store_t *store,
    ngx_http_events_event_t *ev)
{
    u_char                    *p, *json;
    size_t                     need, pad;
    uint64_t                   off, *bucket;
    ngx_str_t                  key;
    ngx_http_events_sh_t      *sh;
    ngx_http_events_slot_t    *slot;
    ngx_http_events_record_t  *h;

    sh = store->sh;

    need = ngx_http_events_store_record_size(ev);
    pad = sh->head % sh->ring_size + need > sh->ring_size
          ? sh->ring_size - sh->head % sh->ring_size : 0;

    while (sh->slot_tail < sh->slot_head
           && (sh->ring_size - (sh->head - sh->tail) < pad + need
               || sh->slot_head - sh->slot_tail >= sh->nslots))
    {
        ngx_http_events_store_evict_locked(store);
        sh->evicted++;
    }

    if (sh->slot_tail == sh->slot_head) {
        sh->tail = sh->head + pad;
    }

    /* readers must see the new tail before the bytes under it change */
    ngx_memory_barrier();

    off = sh->head + pad;
    h = ngx_http_events_store_record(sh, off);

    ngx_memzero(h, sizeof(ngx_http_events_record_t));

    h->seq = ev->seq;
    h->time_ms = ev->time_ms;
    h->id_hash = ngx_http_events_store_hash2(&ev->tenant, &ev->id);
    h->entity_hash = ngx_http_events_store_hash3(&ev->tenant, &ev->rtype,
                                                 &ev->rid);
    ngx_memcpy(h->digest, ev->digest, 16);
    h->tenant_len = (uint16_t) ev->tenant.len;
    h->id_len = (uint16_t) ev->id.len;
    h->type_len = (uint16_t) ev->type.len;
    h->rtype_len = (uint16_t) ev->rtype.len;
    h->rid_len = (uint16_t) ev->rid.len;
    h->source_len = (uint16_t) ev->source.len;
    h->action = (u_char) ev->action;
    h->client_id = ev->client_id;

    p = ngx_http_events_rec_tenant(h);
    p = ngx_cpymem(p, ev->tenant.data, ev->tenant.len);
    p = ngx_cpymem(p, ev->id.data, ev->id.len);
    p = ngx_cpymem(p, ev->type.data, ev->type.len);
    p = ngx_cpymem(p, ev->rtype.data, ev->rtype.len);
    p = ngx_cpymem(p, ev->rid.data, ev->rid.len);
    p = ngx_cpymem(p, ev->source.data, ev->source.len);

    json = p;
    p = ngx_http_events_store_write_json(p, ev);

    h->json_len = (uint32_t) (p - json);
    h->size = (uint32_t) need;

    bucket = &sh->id_buckets[h->id_hash & sh->bucket_mask];
    h->prev_id = *bucket;

    if (ev->rid.len) {
        bucket = &sh->entity_buckets[h->entity_hash & sh->bucket_mask];
        h->prev_entity = *bucket;
    }

    /*
     * the actor index: every path in (POST, capture, replay, a
     * cluster's tailer) comes through here; found before the lock when
     * the event knew where its metadata is and the zone's key is still
     * this worker's (a reload may have changed it meanwhile)
     */
    key.data = sh->actor_key;
    key.len = sh->actor_key_len;

    if (ev->actor_known && key.len == store->index_key.len
        && ngx_memcmp(key.data, store->index_key.data, key.len) == 0)
    {
        h->actor = ev->actor;
        h->actor_hash = ev->actor_hash;
        h->prev_actor = ev->actor
                        ? sh->actor_buckets[h->actor_hash & sh->actor_mask]
                        : 0;

    } else {
        ngx_http_events_store_index_locked(sh, off, &key);
    }

    slot = &sh->slots[sh->slot_head % sh->nslots];
    slot->seq = ev->seq;
    slot->off = off;

    /* the record is complete before anything points to it */
    ngx_memory_barrier();

    sh->id_buckets[h->id_hash & sh->bucket_mask] = off + 1;

    if (ev->rid.len) {
        sh->entity_buckets[h->entity_hash & sh->bucket_mask] = off + 1;
    }

    if (h->actor) {
        sh->actor_buckets[h->actor_hash & sh->actor_mask] = off + 1;
    }

    sh->head = off + need;
    sh->slot_head++;
}


/*
 * The metadata index of one record (metadata_index=, "actorId" unless
 * set): a walk over its envelope, as long as the copy it follows.  The
 * key is in the hash, so that a chain left from another key never
 * matches.  The caller publishes the bucket.
 */

static void
ngx_http_events_store_index_locked(ngx_http_events_sh_t *sh, uint64_t off,
    ngx_str_t *key)
{
    u_char                    *json;
    ngx_str_t                  value, tenant;
    ngx_http_events_record_t  *h;

    h = ngx_http_events_store_record(sh, off);

    h->actor = 0;
    h->prev_actor = 0;

    json = ngx_http_events_rec_json(h);

    if (ngx_http_events_match_meta_value(json, h->json_len, key, &value)
        != NGX_OK)
    {
        return;
    }

    tenant.data = ngx_http_events_rec_tenant(h);
    tenant.len = h->tenant_len;

    h->actor = 1;
    h->actor_hash = ngx_http_events_store_hash3(&tenant, key, &value);
    h->prev_actor = sh->actor_buckets[h->actor_hash & sh->actor_mask];
}


/*
 * The same for an event on its way in, before the lock, with this
 * worker's key: from where the envelope writer put the metadata, or by
 * a walk over the envelope when that is not known (the journal's
 * replay, a cluster's tailer).
 */

static void
ngx_http_events_store_actor(ngx_http_events_store_t *store,
    ngx_http_events_event_t *ev)
{
    ngx_int_t  rc;
    ngx_str_t  value;

    ev->actor_known = 1;
    ev->actor = 0;

    if (ev->meta_at && ev->meta_at < ev->json_len) {
        rc = ngx_http_events_match_meta_in(ev->json + ev->meta_at,
                                           ev->json + ev->json_len,
                                           &store->index_key, &value);

    } else {
        rc = ngx_http_events_match_meta_value(ev->json, ev->json_len,
                                              &store->index_key, &value);
    }

    if (rc != NGX_OK) {
        return;
    }

    ev->actor = 1;
    ev->actor_hash = ngx_http_events_store_hash3(&ev->tenant,
                                                 &store->index_key, &value);
}


/*
 * A reload that changes metadata_index= (the master, under the lock the
 * old workers write under): the buckets are cleared and every record in
 * the ring hashed again, oldest first, so that the chains keep pointing
 * to older records.  A query that walks a chain meanwhile, without the
 * lock, may miss matches; it never reads outside the ring.
 */

static ngx_int_t
ngx_http_events_store_reindex(ngx_shm_zone_t *shm_zone,
    ngx_http_events_store_t *store)
{
    u_char                     buf[NGX_HTTP_EVENTS_MAX_META_KEY];
    uint64_t                   i, off, n;
    ngx_str_t                  old;
    ngx_slab_pool_t           *shpool;
    ngx_http_events_sh_t      *sh;
    ngx_http_events_record_t  *h;

    sh = store->sh;
    shpool = store->shpool;

    if (sh->actor_key_len == store->index_key.len
        && ngx_memcmp(sh->actor_key, store->index_key.data,
                      store->index_key.len)
           == 0)
    {
        return NGX_OK;
    }

    ngx_shmtx_lock(&shpool->mutex);

    old.len = sh->actor_key_len;
    old.data = ngx_cpymem(buf, sh->actor_key, old.len) - old.len;

    sh->actor_key_len = 0;
    ngx_memory_barrier();

    ngx_memzero(sh->actor_buckets, (sh->actor_mask + 1) * sizeof(uint64_t));
    ngx_memcpy(sh->actor_key, store->index_key.data, store->index_key.len);

    n = 0;

    for (i = sh->slot_tail; i < sh->slot_head; i++) {
        off = sh->slots[i % sh->nslots].off;

        ngx_http_events_store_index_locked(sh, off, &store->index_key);

        h = ngx_http_events_store_record(sh, off);

        if (h->actor) {
            sh->actor_buckets[h->actor_hash & sh->actor_mask] = off + 1;
            n++;
        }
    }

    ngx_memory_barrier();
    sh->actor_key_len = store->index_key.len;

    ngx_shmtx_unlock(&shpool->mutex);

    ngx_log_error(NGX_LOG_NOTICE, shm_zone->shm.log, 0,
                  "events zone \"%V\": metadata_index changes from "
                  "\"%V\" to \"%V\": %uL events indexed again, %uL "
                  "with the key", &shm_zone->shm.name, &old,
                  &store->index_key, sh->slot_head - sh->slot_tail, n);

    return NGX_OK;
}


ngx_http_events_store_rc_e
ngx_http_events_store_append(ngx_http_events_store_t *store,
    ngx_http_events_event_t *events, ngx_uint_t n, ngx_pool_t *pool,
    ngx_uint_t *failed)
{
    uint64_t                    upto;
    ngx_http_events_store_rc_e  rc;

    rc = ngx_http_events_store_append_nosync(store, events, n, pool, failed,
                                             &upto);

    /* with fsync=always the answer waits for the disk, not the lock */

    if (rc == NGX_HTTP_EVENTS_STORE_OK && upto
        && ngx_http_events_journal_sync(store->journal, upto) != NGX_OK)
    {
        return NGX_HTTP_EVENTS_STORE_JOURNAL_UNSYNCED;
    }

    return rc;
}


/*
 * The append itself; with fsync=always, *upto is where the journal must
 * be durable up to before the events are acknowledged (0: nothing to
 * wait for), for callers that wait for it their own way.
 *
 * Under the lock, first everything that can fail (repeats, the catalog,
 * the journal), so that a batch is all or nothing; then the records,
 * which cannot fail.  The answer is built outside the lock.
 *
 * Client ids the ring may no longer have are looked up in the history
 * index before the lock (the lookup may read the disk, which must not
 * hold every worker's writes); if the ring evicted past what a lookup
 * saw before the lock is taken, the lock is let go and the ids looked
 * up again, NGX_HTTP_EVENTS_LOOKUPS times at most.
 */

ngx_http_events_store_rc_e
ngx_http_events_store_append_nosync(ngx_http_events_store_t *store,
    ngx_http_events_event_t *events, ngx_uint_t n, ngx_pool_t *pool,
    ngx_uint_t *failed, uint64_t *upto)
{
    u_char                          *jbuf;
    size_t                           total, jlen;
    uint64_t                         now, seq, jend;
    ngx_uint_t                       i, ids, tries;
    ngx_http_events_sh_t            *sh;
    ngx_http_events_store_rc_e       rc;
    ngx_http_events_store_lookup_t  *lk;

    sh = store->sh;
    *upto = 0;

    if (store->remote) {
        /* a cluster's ring is written by its tailer only, in its order */
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "events zone \"%V\" is a cluster's: events reach it "
                      "through the cluster only", &store->name);
        return NGX_HTTP_EVENTS_STORE_REMOTE;
    }

    total = 0;
    jlen = 0;
    jbuf = NULL;
    jend = 0;
    ids = 0;
    lk = NULL;

    for (i = 0; i < n; i++) {
        total += ngx_http_events_store_record_size(&events[i]);

        if (store->journal) {
            jlen += ngx_http_events_journal_size(&events[i]);
        }

        ngx_http_events_store_actor(store, &events[i]);

        ids += events[i].client_id;
    }

    if (total > ngx_http_events_store_max_record(store)) {
        return NGX_HTTP_EVENTS_STORE_TOO_LARGE;
    }

    if (jlen) {
        /* the journal's records are built under the lock, here */
        jbuf = ngx_pnalloc(pool, jlen);
        if (jbuf == NULL) {
            return NGX_HTTP_EVENTS_STORE_ERROR;
        }
    }

    if (ids && store->journal) {
        lk = ngx_palloc(pool, n * sizeof(ngx_http_events_store_lookup_t));
        if (lk == NULL) {
            return NGX_HTTP_EVENTS_STORE_ERROR;
        }

        for (i = 0; i < n; i++) {
            lk[i].rc = NGX_DONE;
        }
    }

    for (tries = 1; /* void */; tries++) {

        if (lk && ngx_http_events_store_lookup(store, events, n, pool, lk)
                  != NGX_OK)
        {
            return NGX_HTTP_EVENTS_STORE_ERROR;
        }

        ngx_shmtx_lock(&store->shpool->mutex);

        now = ngx_http_events_time_now_ms();
        if (now < sh->last_ms) {
            /* the wall clock went back: timestamps never do */
            now = sh->last_ms;
        }

        ngx_http_events_store_expire_locked(store, now);

        rc = ngx_http_events_store_repeats_locked(store, events, n, pool, lk,
                                                  failed);

        if (rc != NGX_HTTP_EVENTS_STORE_BUSY) {
            break;
        }

        /* the ring evicted past what a lookup saw: look again */

        ngx_shmtx_unlock(&store->shpool->mutex);

        if (tries == NGX_HTTP_EVENTS_LOOKUPS) {
            ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                          "events zone \"%V\": the ring evicted past the "
                          "history index %d times while client ids were "
                          "looked up in it; events refused",
                          &store->name, NGX_HTTP_EVENTS_LOOKUPS);
            return NGX_HTTP_EVENTS_STORE_BUSY;
        }
    }

    if (rc == NGX_HTTP_EVENTS_STORE_OK) {
        rc = ngx_http_events_store_catalog_locked(store, events, n, failed);
    }

    if (rc != NGX_HTTP_EVENTS_STORE_OK) {
        goto done;
    }

    seq = sh->last_seq;

    for (i = 0; i < n; i++) {
        if (!events[i].repeat) {
            events[i].seq = ++seq;
            events[i].time_ms = now;
        }
    }

    /*
     * the journal is written before the ring: journal order is seq
     * order, and a write the disk refuses leaves nothing published
     */

    if (store->journal && seq != sh->last_seq
        && ngx_http_events_journal_write_locked(store->journal, &sh->journal,
                                                events, n, jbuf, &jend)
           != NGX_OK)
    {
        /* readiness says so until a write succeeds */
        sh->journal.refusing = 1;

        ngx_http_events_store_uncatalog_locked(store, events, n);

        *failed = 0;
        rc = NGX_HTTP_EVENTS_STORE_JOURNAL_FAILED;
        goto done;
    }

    if (store->journal && seq != sh->last_seq) {
        sh->journal.refusing = 0;
    }

    ngx_http_events_store_publish_locked(store, events, n, seq, now);

done:

    ngx_shmtx_unlock(&store->shpool->mutex);

    if (rc != NGX_HTTP_EVENTS_STORE_OK) {
        return rc;
    }

    *upto = jend;

    return ngx_http_events_store_answer(events, n, pool);
}


/*
 * Client ids in the history index, before the zone's lock, each time
 * anew.  The ring's evicted seq is read first: the index is brought up
 * to it, and a record is read back only for an id the ring had lost.
 */

static ngx_int_t
ngx_http_events_store_lookup(ngx_http_events_store_t *store,
    ngx_http_events_event_t *events, ngx_uint_t n, ngx_pool_t *pool,
    ngx_http_events_store_lookup_t *lk)
{
    uint64_t                    evicted;
    ngx_uint_t                  i;
    ngx_http_events_history_t  *hist;

    hist = ngx_http_events_store_history(store);

    if (hist == NULL) {
        return NGX_OK;
    }

    evicted = store->sh->evicted_seq;
    ngx_memory_barrier();

    for (i = 0; i < n; i++) {
        if (!events[i].client_id) {
            continue;
        }

        ngx_memzero(&lk[i].old, sizeof(ngx_http_events_event_t));

        lk[i].rc = ngx_http_events_history_find(hist, &events[i].tenant,
                                                &events[i].id, evicted, pool,
                                                &lk[i].old, &lk[i].upto);
        if (lk[i].rc == NGX_ERROR) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/*
 * Ids a client sent before: the same body is a repeat, another a
 * conflict.  An id the ring does not have is what the lookup before the
 * lock found, if the ring has not evicted past what the lookup saw
 * since; else NGX_HTTP_EVENTS_STORE_BUSY: look again.
 */

static ngx_http_events_store_rc_e
ngx_http_events_store_repeats_locked(ngx_http_events_store_t *store,
    ngx_http_events_event_t *events, ngx_uint_t n, ngx_pool_t *pool,
    ngx_http_events_store_lookup_t *lk, ngx_uint_t *failed)
{
    u_char                      *p;
    uint64_t                     gone;
    ngx_uint_t                   i, repeats;
    ngx_http_events_sh_t        *sh;
    ngx_http_events_event_t     *ev, *old;
    ngx_http_events_record_t    *h;
    ngx_http_events_history_t   *hist;
    ngx_http_events_store_rc_e   rc;

    sh = store->sh;
    hist = ngx_http_events_store_history(store);
    gone = hist ? ngx_http_events_journal_history(store->journal)->gone : 0;
    repeats = 0;
    rc = NGX_HTTP_EVENTS_STORE_OK;

    for (i = 0; i < n; i++) {
        ev = &events[i];
        ev->repeat = 0;

        if (!ev->client_id) {
            continue;
        }

        h = ngx_http_events_store_find_id_locked(sh, &ev->tenant, &ev->id);

        if (h && hist && h->seq <= gone) {
            /* removed by retention: the id is free again */
            continue;
        }

        if (h == NULL && hist) {
            /* older than the ring: the index knew it, or it is new */

            old = lk ? &lk[i].old : NULL;

            if (old == NULL || lk[i].rc == NGX_DONE || lk[i].rc == NGX_AGAIN
                || ((lk[i].rc == NGX_DECLINED || old->seq <= gone)
                    && sh->evicted_seq > lk[i].upto))
            {
                /*
                 * not asked; or found newer than the ring's tail then,
                 * and evicted since; or not found (or removed) while the
                 * ring has lost events the lookup did not see
                 */
                return NGX_HTTP_EVENTS_STORE_BUSY;
            }

            if (lk[i].rc != NGX_OK || old->seq <= gone) {
                continue;
            }

            if (!old->client_id || ngx_memcmp(old->digest, ev->digest, 16) != 0)
            {
                sh->conflicts++;
                *failed = i;
                rc = NGX_HTTP_EVENTS_STORE_CONFLICT;
                break;
            }

            ev->stored = old->stored;
            ev->seq = old->seq;
            ev->time_ms = old->time_ms;
            ev->repeat = 1;
            repeats++;
            continue;
        }

        if (h == NULL) {
            continue;
        }

        if (!h->client_id || ngx_memcmp(h->digest, ev->digest, 16) != 0) {
            sh->conflicts++;
            *failed = i;
            rc = NGX_HTTP_EVENTS_STORE_CONFLICT;
            break;
        }

        p = ngx_pnalloc(pool, h->json_len);
        if (p == NULL) {
            rc = NGX_HTTP_EVENTS_STORE_ERROR;
            break;
        }

        ngx_memcpy(p, ngx_http_events_rec_json(h), h->json_len);

        ev->stored.data = p;
        ev->stored.len = h->json_len;
        ev->seq = h->seq;
        ev->time_ms = h->time_ms;
        ev->repeat = 1;
        repeats++;
    }

    /* counted once, not at each look again */
    sh->repeats += repeats;

    return rc;
}


/* the new events into the catalog, all of them or none */

static ngx_http_events_store_rc_e
ngx_http_events_store_catalog_locked(ngx_http_events_store_t *store,
    ngx_http_events_event_t *events, ngx_uint_t n, ngx_uint_t *failed)
{
    ngx_uint_t                   i;
    ngx_http_events_event_t     *ev;
    ngx_http_events_store_rc_e   rc;

    for (i = 0; i < n; i++) {
        ev = &events[i];

        if (ev->repeat) {
            continue;
        }

        rc = ngx_http_events_store_type_ref(store, &ev->tenant, &ev->type, 1);

        if (rc == NGX_HTTP_EVENTS_STORE_OK) {
            continue;
        }

        ngx_http_events_store_uncatalog_locked(store, events, i);

        if (rc == NGX_HTTP_EVENTS_STORE_FULL) {
            ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                          "events zone \"%V\": no memory for the type "
                          "catalog beyond its share, %uL types kept; "
                          "event refused",
                          &store->name, store->sh->ntypes);

            store->sh->rejected_full++;
        }

        *failed = i;
        return rc;
    }

    return NGX_HTTP_EVENTS_STORE_OK;
}


static void
ngx_http_events_store_uncatalog_locked(ngx_http_events_store_t *store,
    ngx_http_events_event_t *events, ngx_uint_t n)
{
    ngx_uint_t  i;

    for (i = 0; i < n; i++) {
        if (!events[i].repeat) {
            ngx_http_events_store_type_unref(store, &events[i].tenant,
                                             &events[i].type);
        }
    }
}


/* the records, then the head: nothing here can fail */

static void
ngx_http_events_store_publish_locked(ngx_http_events_store_t *store,
    ngx_http_events_event_t *events, ngx_uint_t n, uint64_t seq, uint64_t now)
{
    ngx_uint_t             i, w;
    ngx_http_events_sh_t  *sh;

    sh = store->sh;

    for (i = 0; i < n; i++) {
        if (events[i].repeat) {
            continue;
        }

        ngx_http_events_store_write_locked(store, &events[i]);
        ngx_http_events_store_type_touch(sh, &events[i].tenant,
                                         &events[i].type, now);
    }

    sh->last_ms = now;

    ngx_memory_barrier();

    /* the pid is the slot's worker's, written at its start */
    w = ngx_worker < NGX_HTTP_EVENTS_MAX_WORKERS ? ngx_worker : 0;
    sh->workers[w].published += seq - sh->last_seq;
    sh->stored += seq - sh->last_seq;

    sh->last_seq = seq;
}


/* the answer, from what was written */

static ngx_http_events_store_rc_e
ngx_http_events_store_answer(ngx_http_events_event_t *events, ngx_uint_t n,
    ngx_pool_t *pool)
{
    u_char                   *p;
    ngx_uint_t                i;
    ngx_http_events_event_t  *ev;

    for (i = 0; i < n; i++) {
        ev = &events[i];

        if (ev->repeat) {
            continue;
        }

        p = ngx_pnalloc(pool, ev->json_len + NGX_INT64_LEN
                              + NGX_HTTP_EVENTS_TIMESTAMP_LEN);
        if (p == NULL) {
            return NGX_HTTP_EVENTS_STORE_ERROR;
        }

        ev->stored.data = p;
        ev->stored.len = ngx_http_events_store_write_json(p, ev) - p;
    }

    return NGX_HTTP_EVENTS_STORE_OK;
}


/* the index, when this zone's journal has one this process can read */

static ngx_http_events_history_t *
ngx_http_events_store_history(ngx_http_events_store_t *store)
{
    if (store->journal == NULL
        || !ngx_http_events_history_ready(store->journal->history))
    {
        return NULL;
    }

    return store->journal->history;
}


/*
 * The journal's way in at start: one event with the seq and time it
 * had, through the same write path as ingest, so that the id index,
 * the entity chains and the catalog come back as they were.
 */

ngx_http_events_store_rc_e
ngx_http_events_store_restore(ngx_http_events_store_t *store,
    ngx_http_events_event_t *ev)
{
    ngx_http_events_sh_t        *sh;
    ngx_http_events_store_rc_e   rc;

    sh = store->sh;

    if (ngx_http_events_store_record_size(ev)
        > ngx_http_events_store_max_record(store))
    {
        return NGX_HTTP_EVENTS_STORE_TOO_LARGE;
    }

    rc = NGX_HTTP_EVENTS_STORE_OK;

    /* the metadata index's walk over the envelope, not under the lock */
    ngx_http_events_store_actor(store, ev);

    ngx_shmtx_lock(&store->shpool->mutex);

    if (ev->seq <= sh->last_seq) {
        rc = NGX_HTTP_EVENTS_STORE_STALE;
        goto done;
    }

    /* what the journal kept was accepted once: no cap, no reserve */
    rc = ngx_http_events_store_type_ref(store, &ev->tenant, &ev->type, 0);

    if (rc != NGX_HTTP_EVENTS_STORE_OK) {
        goto done;
    }

    ngx_http_events_store_write_locked(store, ev);
    ngx_http_events_store_type_touch(sh, &ev->tenant, &ev->type, ev->time_ms);

    if (ev->time_ms > sh->last_ms) {
        sh->last_ms = ev->time_ms;
    }

    ngx_memory_barrier();

    sh->last_seq = ev->seq;

done:

    ngx_shmtx_unlock(&store->shpool->mutex);

    return rc;
}


/*
 * Cluster mode: the log the ring follows began again with another
 * epoch.  Everything goes (through eviction, so the catalog is right);
 * seqs start over; a cursor of the old epoch is told epoch_changed.
 */

void
ngx_http_events_store_reset(ngx_http_events_store_t *store, uint64_t epoch,
    u_char *secret)
{
    ngx_http_events_sh_t  *sh;

    sh = store->sh;

    ngx_shmtx_lock(&store->shpool->mutex);

    while (sh->slot_tail < sh->slot_head) {
        ngx_http_events_store_evict_locked(store);
    }

    sh->tail = sh->head;

    /* the cursors of every node of a cluster: one secret, one epoch */
    if (secret) {
        ngx_memcpy(sh->secret, secret, NGX_HTTP_EVENTS_CURSOR_SECRET);
    }

    ngx_memory_barrier();

    sh->epoch = epoch;

    ngx_memory_barrier();

    sh->evicted_seq = 0;
    sh->last_seq = 0;

    ngx_shmtx_unlock(&store->shpool->mutex);

    store->epoch = epoch;
}


/* the epoch now: another worker may have reset the zone */

uint64_t
ngx_http_events_store_epoch(ngx_http_events_store_t *store)
{
    return store->sh->epoch;
}


/* after a replay: the journal's epoch, and seqs and time go on */

void
ngx_http_events_store_resume(ngx_http_events_store_t *store, uint64_t epoch,
    uint64_t last_seq, uint64_t last_ms, uint64_t gone)
{
    ngx_http_events_sh_t  *sh;

    sh = store->sh;

    ngx_shmtx_lock(&store->shpool->mutex);

    if (epoch) {
        sh->epoch = epoch;
        store->epoch = epoch;
    }

    if (last_seq > sh->last_seq) {
        sh->last_seq = last_seq;
    }

    /*
     * events the journal no longer had, or that were not restored, are
     * gone: a cursor before them is expired, never silently skipped
     */

    if (gone > sh->evicted_seq) {
        sh->evicted_seq = gone;
    }

    if (sh->slot_tail == sh->slot_head) {
        sh->evicted_seq = sh->last_seq;
    }

    if (last_ms > sh->last_ms) {
        sh->last_ms = last_ms;
    }

    ngx_shmtx_unlock(&store->shpool->mutex);
}


ngx_http_events_journal_sh_t *
ngx_http_events_store_journal(ngx_http_events_store_t *store)
{
    return &store->sh->journal;
}


/* the envelope as stored, with seq and timestamp written in */

size_t
ngx_http_events_store_json_len(ngx_http_events_event_t *ev)
{
    return ev->json_len + NGX_INT64_LEN + NGX_HTTP_EVENTS_TIMESTAMP_LEN;
}


u_char *
ngx_http_events_store_json(u_char *p, ngx_http_events_event_t *ev)
{
    return ngx_http_events_store_write_json(p, ev);
}


/* reading, without the lock */

static ngx_inline ngx_uint_t
ngx_http_events_store_valid(ngx_http_events_sh_t *sh, uint64_t off)
{
    ngx_memory_barrier();
    return off >= sh->tail;
}


static ngx_int_t
ngx_http_events_store_copy(ngx_http_events_sh_t *sh, uint64_t off,
    ngx_http_events_copy_t *c)
{
    u_char                    *p;
    size_t                     keys;
    ngx_http_events_record_t  *h;

    if (off < sh->tail) {
        return NGX_DECLINED;
    }

    h = ngx_http_events_store_record(sh, off);
    c->h = *h;

    keys = ngx_http_events_rec_keys_len(&c->h);

    /* a record overwritten under us may hold anything: check first */
    if (keys > NGX_HTTP_EVENTS_MAX_KEYS
        || c->h.size > sh->ring_size - off % sh->ring_size
        || sizeof(ngx_http_events_record_t) + keys + c->h.json_len
           > c->h.size)
    {
        return ngx_http_events_store_valid(sh, off) ? NGX_ERROR : NGX_DECLINED;
    }

    ngx_memcpy(c->keys, ngx_http_events_rec_tenant(h), keys);

    if (!ngx_http_events_store_valid(sh, off)) {
        return NGX_DECLINED;
    }

    p = c->keys;
    c->tenant.data = p;
    c->tenant.len = c->h.tenant_len;
    p += c->h.tenant_len;
    c->id.data = p;
    c->id.len = c->h.id_len;
    p += c->h.id_len;
    c->type.data = p;
    c->type.len = c->h.type_len;
    p += c->h.type_len;
    c->rtype.data = p;
    c->rtype.len = c->h.rtype_len;
    p += c->h.rtype_len;
    c->rid.data = p;
    c->rid.len = c->h.rid_len;
    p += c->h.rid_len;
    c->source.data = p;
    c->source.len = c->h.source_len;

    return NGX_OK;
}


static ngx_int_t
ngx_http_events_store_copy_json(ngx_http_events_sh_t *sh, uint64_t off,
    ngx_http_events_copy_t *c, ngx_pool_t *pool, ngx_str_t *json)
{
    u_char                    *p;
    ngx_http_events_record_t  *h;

    p = ngx_pnalloc(pool, c->h.json_len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    h = ngx_http_events_store_record(sh, off);
    ngx_memcpy(p, (u_char *) h + sizeof(ngx_http_events_record_t)
                  + ngx_http_events_rec_keys_len(&c->h),
               c->h.json_len);

    if (!ngx_http_events_store_valid(sh, off)) {
        return NGX_DECLINED;
    }

    json->data = p;
    json->len = c->h.json_len;

    return NGX_OK;
}


/*
 * With history on disk the window is the journal's: the oldest event on
 * disk, and "evicted" is what retention removed, not what left the ring.
 */

void
ngx_http_events_store_window(ngx_http_events_store_t *store,
    ngx_http_events_window_t *w)
{
    ngx_http_events_history_t  *hist;

    ngx_http_events_store_ring_window(store, w);

    hist = ngx_http_events_store_history(store);

    if (hist) {
        ngx_http_events_history_window(hist, w);
    }
}


static void
ngx_http_events_store_ring_window(ngx_http_events_store_t *store,
    ngx_http_events_window_t *w)
{
    uint64_t                 i;
    ngx_int_t                rc;
    ngx_uint_t               n;
    ngx_http_events_sh_t    *sh;
    ngx_http_events_slot_t   slot;

    sh = store->sh;

    w->epoch = sh->epoch;

    for (n = 0; n < NGX_HTTP_EVENTS_RETRIES; n++) {
        w->head_seq = sh->last_seq;
        ngx_memory_barrier();
        w->evicted_seq = sh->evicted_seq;
        i = sh->slot_tail;

        rc = ngx_http_events_store_read_slot(sh, i, &slot);

        if (rc == NGX_DECLINED) {
            continue;
        }

        /* empty, or the oldest is not published yet */
        w->oldest_seq = (rc == NGX_OK && slot.seq <= w->head_seq)
                        ? slot.seq : 0;
        return;
    }

    w->oldest_seq = w->evicted_seq + 1;
}


static ngx_int_t
ngx_http_events_store_read_slot(ngx_http_events_sh_t *sh, uint64_t i,
    ngx_http_events_slot_t *slot)
{
    if (i >= sh->slot_head) {
        return NGX_DONE;
    }

    *slot = sh->slots[i % sh->nslots];

    ngx_memory_barrier();

    return i >= sh->slot_tail ? NGX_OK : NGX_DECLINED;
}


/*
 * Finds the first slot whose seq is above the given one; a binary search
 * that starts over if eviction overtakes it.
 */

static ngx_int_t
ngx_http_events_store_seek(ngx_http_events_sh_t *sh, uint64_t seq,
    uint64_t *pos)
{
    uint64_t                lo, hi, mid;
    ngx_int_t               rc;
    ngx_uint_t              n;
    ngx_http_events_slot_t  slot;

    for (n = 0; n < NGX_HTTP_EVENTS_RETRIES; n++) {
        lo = sh->slot_tail;
        hi = sh->slot_head;

        while (lo < hi) {
            mid = lo + (hi - lo) / 2;

            rc = ngx_http_events_store_read_slot(sh, mid, &slot);
            if (rc == NGX_DECLINED) {
                break;
            }

            if (rc == NGX_OK && slot.seq <= seq) {
                lo = mid + 1;

            } else {
                hi = mid;
            }
        }

        if (lo >= hi) {
            *pos = lo;
            return NGX_OK;
        }
    }

    return NGX_ERROR;
}


static ngx_uint_t
ngx_http_events_store_match_query(ngx_http_events_query_t *q,
    ngx_http_events_copy_t *c)
{
    if (!q->any_tenant
        && (c->tenant.len != q->tenant.len
            || (q->tenant.len
                && ngx_memcmp(c->tenant.data, q->tenant.data,
                              q->tenant.len)
                   != 0)))
    {
        return 0;
    }

    if (q->ntypes
        && !ngx_http_events_match_any(q->types, q->ntypes, &c->type))
    {
        return 0;
    }

    if (q->rtype.len
        && !ngx_http_events_store_str_eq(&q->rtype, c->rtype.data,
                                         c->rtype.len))
    {
        return 0;
    }

    if (q->rid.len
        && !ngx_http_events_store_str_eq(&q->rid, c->rid.data, c->rid.len))
    {
        return 0;
    }

    if (q->source.len
        && !ngx_http_events_store_str_eq(&q->source, c->source.data,
                                         c->source.len))
    {
        return 0;
    }

    if (q->action && q->action != c->h.action) {
        return 0;
    }

    if (q->since_ms >= 0 && c->h.time_ms < (uint64_t) q->since_ms) {
        return 0;
    }

    if (q->until_ms >= 0 && c->h.time_ms > (uint64_t) q->until_ms) {
        return 0;
    }

    return 1;
}


/*
 * The same filters on an event read from elsewhere (a cluster's log);
 * json is its whole envelope, for metadata filters.
 */

ngx_uint_t
ngx_http_events_store_match(ngx_http_events_query_t *q,
    ngx_http_events_event_t *ev, ngx_str_t *json)
{
    if (!q->any_tenant
        && !ngx_http_events_store_str_eq(&q->tenant, ev->tenant.data,
                                         ev->tenant.len))
    {
        return 0;
    }

    if (q->ntypes
        && !ngx_http_events_match_any(q->types, q->ntypes, &ev->type))
    {
        return 0;
    }

    if ((q->rtype.len
         && !ngx_http_events_store_str_eq(&q->rtype, ev->rtype.data,
                                          ev->rtype.len))
        || (q->rid.len
            && !ngx_http_events_store_str_eq(&q->rid, ev->rid.data,
                                             ev->rid.len))
        || (q->source.len
            && !ngx_http_events_store_str_eq(&q->source, ev->source.data,
                                             ev->source.len)))
    {
        return 0;
    }

    if (q->action && q->action != ev->action) {
        return 0;
    }

    if ((q->since_ms >= 0 && ev->time_ms < (uint64_t) q->since_ms)
        || (q->until_ms >= 0 && ev->time_ms > (uint64_t) q->until_ms))
    {
        return 0;
    }

    return q->nmeta == 0
           || ngx_http_events_match_metadata(q->meta, q->nmeta, json->data,
                                             json->len);
}


/*
 * Metadata filters read the record's envelope where it lies in the
 * ring, without a copy (a list may look at many that do not match); a
 * record overwritten meanwhile does not match, and its next read says
 * it is gone.
 */

static ngx_uint_t
ngx_http_events_store_match_meta(ngx_http_events_sh_t *sh, uint64_t off,
    ngx_http_events_copy_t *c, ngx_http_events_query_t *q)
{
    u_char                    *json;
    ngx_uint_t                 match;
    ngx_http_events_record_t  *h;

    if (q->nmeta == 0) {
        return 1;
    }

    h = ngx_http_events_store_record(sh, off);
    json = (u_char *) h + sizeof(ngx_http_events_record_t)
           + ngx_http_events_rec_keys_len(&c->h);

    match = ngx_http_events_match_metadata(q->meta, q->nmeta, json,
                                           c->h.json_len);

    return match && ngx_http_events_store_valid(sh, off);
}


static ngx_int_t
ngx_http_events_store_add_item(ngx_http_events_sh_t *sh, uint64_t off,
    ngx_http_events_copy_t *c, ngx_pool_t *pool,
    ngx_http_events_result_t *res)
{
    ngx_int_t                rc;
    ngx_str_t                json;
    ngx_http_events_item_t  *item;

    rc = ngx_http_events_store_copy_json(sh, off, c, pool, &json);
    if (rc != NGX_OK) {
        return rc;
    }

    item = ngx_array_push(&res->items);
    if (item == NULL) {
        return NGX_ERROR;
    }

    item->seq = c->h.seq;
    item->json = json;

    return NGX_OK;
}


ngx_int_t
ngx_http_events_store_query(ngx_http_events_store_t *store,
    ngx_http_events_query_t *q, ngx_pool_t *pool,
    ngx_http_events_result_t *res)
{
    res->defer = 0;

    return ngx_http_events_store_answer_query(store, q, pool, res);
}


/*
 * The same, for a caller that reads the disk in a thread: res->disk
 * set, nothing read, when the page is the disk's.
 */

ngx_int_t
ngx_http_events_store_query_deferred(ngx_http_events_store_t *store,
    ngx_http_events_query_t *q, ngx_pool_t *pool,
    ngx_http_events_result_t *res)
{
    res->defer = 1;

    return ngx_http_events_store_answer_query(store, q, pool, res);
}


static ngx_int_t
ngx_http_events_store_answer_query(ngx_http_events_store_t *store,
    ngx_http_events_query_t *q, ngx_pool_t *pool,
    ngx_http_events_result_t *res)
{
    uint64_t                        ring;
    ngx_int_t                       rc;
    ngx_http_events_item_t         *item;
    ngx_http_events_window_t       *w, rw;
    ngx_http_events_history_t      *hist;
    ngx_http_events_meta_filter_t  *f;

    if (ngx_array_init(&res->items, pool, q->limit + 1,
                       sizeof(ngx_http_events_item_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    res->has_next = 0;
    res->has_more = 0;
    res->expired = 0;
    res->disk = 0;

    ngx_http_events_store_expire(store);

    w = &res->window;
    ngx_http_events_store_ring_window(store, w);

    ring = w->evicted_seq;
    hist = ngx_http_events_store_history(store);

    if (hist) {
        ngx_http_events_history_window(hist, w);
    }

    if ((q->has_after && q->after < w->evicted_seq)
        || (q->before && q->before <= w->evicted_seq))
    {
        res->expired = 1;
        return NGX_OK;
    }

    /*
     * The ring answers what it holds all of: ascending from a cursor
     * inside it, descending until it runs out.  The rest is the disk's.
     */

    if (hist && ring > w->evicted_seq
        && (q->desc ? (q->before && q->before - 1 <= ring)
                      || (!q->before && q->until_ms >= 0
                          && ngx_http_events_history_until(
                                 hist, (uint64_t) q->until_ms) <= ring)
                    : q->after < ring))
    {
        return ngx_http_events_store_disk_query(hist, q, pool, res);
    }

    if (hist && q->after < w->evicted_seq) {
        /* retention removed events the ring still holds */
        q->after = w->evicted_seq;
    }

    f = q->rid.len ? NULL
                   : ngx_http_events_store_actor_filter(store->sh, q);

    if (q->rid.len || f) {
        rc = ngx_http_events_store_query_entity(store, q, pool, res, f);

    } else {
        rc = ngx_http_events_store_query_scan(store, q, pool, res);
    }

    if (hist && q->desc) {
        item = res->items.elts;

        while (res->items.nelts
               && item[res->items.nelts - 1].seq <= w->evicted_seq)
        {
            res->items.nelts--;
            res->has_more = 0;
            res->has_next = 0;
        }
    }

    if (rc != NGX_OK || hist == NULL || !q->desc || res->has_more
        || res->items.nelts == q->limit)
    {
        return rc;
    }

    ngx_http_events_store_ring_window(store, &rw);

    if (rw.evicted_seq <= w->evicted_seq) {
        return rc;
    }

    /* the ring ran out before the page was full: all of it from disk */

    res->items.nelts = 0;
    res->has_next = 0;
    res->has_more = 0;

    return ngx_http_events_store_disk_query(hist, q, pool, res);
}


/* a page from disk: now, or (res->disk) by the caller in a thread */

static ngx_int_t
ngx_http_events_store_disk_query(ngx_http_events_history_t *hist,
    ngx_http_events_query_t *q, ngx_pool_t *pool,
    ngx_http_events_result_t *res)
{
    if (res->defer && ngx_http_events_history_threaded(hist)) {
        res->disk = 1;
        return NGX_OK;
    }

    return ngx_http_events_history_query(hist, q, pool, res);
}


static ngx_int_t
ngx_http_events_store_query_scan(ngx_http_events_store_t *store,
    ngx_http_events_query_t *q, ngx_pool_t *pool,
    ngx_http_events_result_t *res)
{
    uint64_t                 pos, head, last;
    ngx_int_t                rc;
    ngx_uint_t               scanned;
    ngx_http_events_sh_t    *sh;
    ngx_http_events_copy_t   c;
    ngx_http_events_slot_t   slot;

    sh = store->sh;
    head = res->window.head_seq;

    if (!q->desc) {
        if (ngx_http_events_store_seek(sh, q->after, &pos) != NGX_OK) {
            return NGX_ERROR;
        }

        last = q->after;

    } else {
        if (ngx_http_events_store_seek(sh, q->before ? q->before - 1 : head,
                                       &pos)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        last = q->before ? q->before : head + 1;
    }

    for (scanned = 0; /* void */; /* void */) {

        if (q->desc) {
            if (pos == 0) {
                break;
            }

            pos--;
        }

        rc = ngx_http_events_store_read_slot(sh, pos, &slot);

        if (rc == NGX_DECLINED) {
            /*
             * ascending, eviction overtook us: what was copied stays valid
             * and the next page says 410; descending, this is the end
             */
            res->has_more = !q->desc;
            break;
        }

        if (rc == NGX_DONE || slot.seq > head) {
            break;
        }

        if (!q->desc) {
            pos++;
        }

        if (scanned++ == q->scan_limit) {
            res->has_more = 1;
            break;
        }

        rc = ngx_http_events_store_copy(sh, slot.off, &c);

        if (rc == NGX_DECLINED) {
            res->has_more = !q->desc;
            break;
        }

        if (rc == NGX_ERROR) {
            return NGX_ERROR;
        }

        /* timestamps never go back: past these nothing can match */

        if (!q->desc && q->until_ms >= 0
            && c.h.time_ms > (uint64_t) q->until_ms)
        {
            break;
        }

        if (q->desc && q->since_ms >= 0
            && c.h.time_ms < (uint64_t) q->since_ms)
        {
            break;
        }

        if (!ngx_http_events_store_match_query(q, &c)
            || !ngx_http_events_store_match_meta(sh, slot.off, &c, q))
        {
            last = slot.seq;
            continue;
        }

        if (res->items.nelts == q->limit) {
            res->has_more = 1;
            break;
        }

        rc = ngx_http_events_store_add_item(sh, slot.off, &c, pool, res);

        if (rc == NGX_DECLINED) {
            res->has_more = !q->desc;
            break;
        }

        if (rc != NGX_OK) {
            return NGX_ERROR;
        }

        last = slot.seq;
    }

    if (!q->desc) {
        /* a reader at the end polls from where the scan stopped */
        res->next = res->has_more ? last : ngx_max(last, head);
        res->has_next = 1;

    } else if (res->has_more) {
        res->next = last;
        res->has_next = 1;
    }

    return NGX_OK;
}


/*
 * ?metadata.KEY=... on the key of metadata_index=: the filter the actor
 * index answers.  The key is read without the lock: a reload that
 * changes it zeroes its length first, and the chains carry the key in
 * their hashes, so a query that reads it then scans or finds less.
 */

static ngx_http_events_meta_filter_t *
ngx_http_events_store_actor_filter(ngx_http_events_sh_t *sh,
    ngx_http_events_query_t *q)
{
    size_t      len;
    ngx_uint_t  i;

    len = sh->actor_key_len;

    for (i = 0; i < q->nmeta; i++) {
        if (len != 0
            && q->meta[i].key.len == len
            && ngx_memcmp(q->meta[i].key.data, sh->actor_key, len) == 0)
        {
            return &q->meta[i];
        }
    }

    return NULL;
}


/*
 * Entity history follows the entity chain from the newest record down,
 * so ascending pages keep the oldest "limit + 1" matches seen.  The
 * events of one value of the indexed metadata key (f) follow theirs the
 * same way.
 */

static ngx_int_t
ngx_http_events_store_query_entity(ngx_http_events_store_t *store,
    ngx_http_events_query_t *q, ngx_pool_t *pool,
    ngx_http_events_result_t *res, ngx_http_events_meta_filter_t *f)
{
    uint32_t                        hash;
    uint64_t                        link, head, *offs, *seqs;
    ngx_int_t                       rc;
    ngx_uint_t                      n, i, j, k, cap, steps, actor;
    ngx_http_events_sh_t           *sh;
    ngx_http_events_copy_t          c;

    sh = store->sh;
    head = res->window.head_seq;

    cap = q->limit + 1;
    offs = ngx_palloc(pool, cap * 2 * sizeof(uint64_t));
    if (offs == NULL) {
        return NGX_ERROR;
    }

    seqs = offs + cap;

    actor = (f != NULL);

    if (actor) {
        hash = ngx_http_events_store_hash3(&q->tenant, &f->key, &f->value);
        link = sh->actor_buckets[hash & sh->actor_mask];

    } else {
        hash = ngx_http_events_store_hash3(&q->tenant, &q->rtype, &q->rid);
        link = sh->entity_buckets[hash & sh->bucket_mask];
    }

    n = 0;

    for (steps = 0; link != 0 && steps < sh->nslots; steps++) {

        rc = ngx_http_events_store_copy(sh, link - 1, &c);
        if (rc == NGX_DECLINED) {
            break;
        }

        if (rc == NGX_ERROR) {
            return NGX_ERROR;
        }

        if (c.h.seq > head
            || (actor ? !c.h.actor || c.h.actor_hash != hash
                      : c.h.entity_hash != hash)
            || !ngx_http_events_store_match_query(q, &c)
            || !ngx_http_events_store_match_meta(sh, link - 1, &c, q))
        {
            goto next;
        }

        if (!q->desc) {
            if (c.h.seq <= q->after) {
                break;
            }

            /* a ring of the last cap matches: the oldest ones win */
            offs[n % cap] = link - 1;
            seqs[n % cap] = c.h.seq;
            n++;

        } else {
            if (q->before && c.h.seq >= q->before) {
                goto next;
            }

            offs[n] = link - 1;
            seqs[n] = c.h.seq;

            if (++n == cap) {
                break;
            }
        }

    next:

        link = actor ? c.h.prev_actor : c.h.prev_entity;
    }

    k = ngx_min(n, cap);

    for (i = 0; i < k && i < q->limit; i++) {
        /* ascending: newest-first ring, read back from its oldest end */
        j = q->desc ? i : (n - 1 - i) % cap;

        rc = ngx_http_events_store_copy(sh, offs[j], &c);
        if (rc == NGX_OK) {
            rc = ngx_http_events_store_add_item(sh, offs[j], &c, pool, res);
        }

        if (rc == NGX_ERROR) {
            return NGX_ERROR;
        }

        if (rc == NGX_DECLINED) {
            /* evicted meanwhile: the next page will say 410 */
            break;
        }
    }

    res->has_more = n > res->items.nelts;

    if (res->items.nelts) {
        res->next = ((ngx_http_events_item_t *) res->items.elts)
                    [res->items.nelts - 1].seq;
        res->has_next = res->has_more || !q->desc;

    } else if (!q->desc) {
        res->next = ngx_max(q->after, head);
        res->has_next = 1;
    }

    if (!q->desc && !res->has_more) {
        res->next = ngx_max(res->next, head);
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_events_store_ring_get(ngx_http_events_store_t *store,
    ngx_str_t *tenant, ngx_str_t *id, uint64_t gone, ngx_pool_t *pool,
    ngx_str_t *json)
{
    uint32_t                 hash;
    uint64_t                 link, head;
    ngx_int_t                rc;
    ngx_uint_t               steps;
    ngx_http_events_sh_t    *sh;
    ngx_http_events_copy_t   c;

    sh = store->sh;

    ngx_http_events_store_expire(store);

    head = sh->last_seq;
    ngx_memory_barrier();

    hash = ngx_http_events_store_hash2(tenant, id);
    link = sh->id_buckets[hash & sh->bucket_mask];

    for (steps = 0; link != 0 && steps < sh->nslots; steps++) {

        rc = ngx_http_events_store_copy(sh, link - 1, &c);
        if (rc != NGX_OK) {
            return rc == NGX_DECLINED ? NGX_DECLINED : NGX_ERROR;
        }

        if (c.h.seq <= head
            && c.h.id_hash == hash
            && ngx_http_events_store_str_eq(tenant, c.tenant.data, c.tenant.len)
            && ngx_http_events_store_str_eq(id, c.id.data, c.id.len))
        {
            if (c.h.seq <= gone) {
                /* retention removed it from disk; the ring follows */
                return NGX_ABORT;
            }

            return ngx_http_events_store_copy_json(sh, link - 1, &c, pool,
                                                   json);
        }

        link = c.h.prev_id;
    }

    return NGX_DECLINED;
}


ngx_int_t
ngx_http_events_store_get(ngx_http_events_store_t *store, ngx_str_t *tenant,
    ngx_str_t *id, ngx_pool_t *pool, ngx_str_t *json)
{
    ngx_int_t                   rc;
    ngx_http_events_history_t  *hist;

    hist = ngx_http_events_store_history(store);

    rc = ngx_http_events_store_ring_get(store, tenant, id,
                                        hist ? ngx_http_events_journal_history(
                                                   store->journal)->gone
                                             : 0,
                                        pool, json);

    if (rc == NGX_ABORT) {
        return NGX_DECLINED;
    }

    if (rc == NGX_DECLINED && hist) {
        return ngx_http_events_history_get(hist, tenant, id, pool, json);
    }

    return rc;
}


/*
 * The same, for a caller that reads the disk in a thread: NGX_AGAIN
 * when the ring does not have the id and the index must be asked.
 */

ngx_int_t
ngx_http_events_store_get_ring(ngx_http_events_store_t *store,
    ngx_str_t *tenant, ngx_str_t *id, ngx_pool_t *pool, ngx_str_t *json)
{
    ngx_int_t                   rc;
    ngx_http_events_history_t  *hist;

    hist = ngx_http_events_store_history(store);

    if (hist == NULL || !ngx_http_events_history_threaded(hist)) {
        return ngx_http_events_store_get(store, tenant, id, pool, json);
    }

    rc = ngx_http_events_store_ring_get(store, tenant, id,
                                        ngx_http_events_journal_history(
                                            store->journal)->gone,
                                        pool, json);

    if (rc == NGX_ABORT) {
        return NGX_DECLINED;
    }

    return rc == NGX_DECLINED ? NGX_AGAIN : rc;
}


ngx_int_t
ngx_http_events_store_types(ngx_http_events_store_t *store, ngx_str_t *tenant,
    ngx_pool_t *pool, ngx_array_t *types)
{
    u_char                       *p;
    ngx_int_t                     rc;
    ngx_rbtree_node_t            *node, *root, *sentinel;
    ngx_http_events_sh_t         *sh;
    ngx_http_events_history_t    *hist;
    ngx_http_events_type_info_t  *ti;
    ngx_http_events_type_node_t  *tn;

    sh = store->sh;
    rc = NGX_OK;

    hist = ngx_http_events_store_history(store);

    if (hist) {
        /* the catalog of everything retained, not of the ring */
        return ngx_http_events_history_types(hist, tenant, pool, types);
    }

    ngx_shmtx_lock(&store->shpool->mutex);

    ngx_http_events_store_expire_locked(store, ngx_http_events_time_now_ms());

    root = sh->types.root;
    sentinel = sh->types.sentinel;

    if (root == sentinel) {
        goto done;
    }

    for (node = ngx_rbtree_min(root, sentinel);
         node;
         node = ngx_rbtree_next(&sh->types, node))
    {
        tn = (ngx_http_events_type_node_t *) node;

        if (!ngx_http_events_store_str_eq(tenant, tn->data, tn->tenant_len)) {
            continue;
        }

        ti = ngx_array_push(types);
        p = ngx_pnalloc(pool, tn->type_len);

        if (ti == NULL || p == NULL) {
            rc = NGX_ERROR;
            break;
        }

        ngx_memcpy(p, tn->data + tn->tenant_len, tn->type_len);

        ti->type.data = p;
        ti->type.len = tn->type_len;
        ti->count = tn->count;
        ti->last_ms = tn->last_ms;
    }

done:

    ngx_shmtx_unlock(&store->shpool->mutex);

    return rc;
}


/* counters outside the write path: no lock, the zone outlives workers */

void
ngx_http_events_store_tally(ngx_http_events_store_t *store,
    ngx_uint_t counter)
{
    (void) ngx_atomic_fetch_add(&store->sh->counters[counter], 1);
}


void
ngx_http_events_store_stats(ngx_http_events_store_t *store,
    ngx_http_events_stats_t *st)
{
    ngx_uint_t                 i;
    ngx_http_events_sh_t      *sh;
    ngx_http_events_window_t   w;

    sh = store->sh;

    ngx_shmtx_lock(&store->shpool->mutex);

    ngx_http_events_store_expire_locked(store, ngx_http_events_time_now_ms());

    st->epoch = sh->epoch;
    st->zone_size = sh->zone_size;
    st->ring_size = sh->ring_size;
    st->ring_used = sh->head - sh->tail;
    st->capacity = sh->nslots;
    st->retained = sh->slot_head - sh->slot_tail;
    st->stored = sh->stored;
    st->evicted = sh->evicted;
    st->expired = sh->expired;
    st->repeats = sh->repeats;
    st->conflicts = sh->conflicts;
    st->rejected_full = sh->rejected_full;

    for (i = 0; i < NGX_HTTP_EVENTS_NCOUNTERS; i++) {
        st->counters[i] = sh->counters[i];
    }
    st->types = sh->ntypes;

    st->journal = (store->journal != NULL);
    st->journal_bytes = sh->journal.closed_bytes + sh->journal.size;
    st->journal_segments = sh->journal.closed + (sh->journal.segment != 0);
    st->journal_fsync_age = sh->journal.fsync_ms
                            ? (int64_t) (ngx_http_events_time_now_ms()
                                         - sh->journal.fsync_ms)
                            : -1;
    st->journal_fsyncs = sh->journal.fsyncs;
    st->journal_errors = sh->journal.errors;
    st->journal_replay_ms = sh->journal.replay_ms;
    st->journal_replayed = sh->journal.replayed;
    st->journal_cut = sh->journal.cut;
    st->journal_refusing = sh->journal.refusing;
    st->journal_unsynced = sh->journal.unsynced;

    st->history_ready = sh->journal.history.ready ? 1 : 0;
    st->history_indexed = sh->journal.history.indexed;
    st->history_removed = sh->journal.history.removed;
    st->history_gone = sh->journal.history.gone;
    st->history_rebuilds = sh->journal.history.rebuilds;
    st->history_build_ms = sh->journal.history.rebuild_ms;
    st->history_errors = sh->journal.history.errors;
    st->history_cache_reads = sh->journal.history.cache_reads;
    st->history_thread_reads = sh->journal.history.thread_reads;
    st->history_worker_reads = sh->journal.history.worker_reads;

    if (st->journal_fsync_age < 0 && sh->journal.fsync_ms) {
        /* the wall clock went back */
        st->journal_fsync_age = 0;
    }

    st->nworkers = 0;

    for (i = 0; i < NGX_HTTP_EVENTS_MAX_WORKERS; i++) {
        if (sh->workers[i].pid) {
            st->slots[st->nworkers] = i;
            st->workers[st->nworkers++] = sh->workers[i];
        }
    }

    ngx_shmtx_unlock(&store->shpool->mutex);

    ngx_http_events_store_window(store, &w);

    st->head_seq = w.head_seq;
    st->oldest_seq = w.oldest_seq;
}


/*
 * A worker takes its slot when it starts, so that the page lists every
 * worker from start and names the slot's current pid: an old worker
 * still finishing its streams after a reload counts into the same slot
 * but no longer names it.  The first worker forgets the slots that a
 * configuration with fewer workers no longer has.
 */

void
ngx_http_events_store_worker_start(ngx_http_events_store_t *store,
    ngx_uint_t workers)
{
    ngx_uint_t             i;
    ngx_http_events_sh_t  *sh;

    if (ngx_worker >= NGX_HTTP_EVENTS_MAX_WORKERS) {
        return;
    }

    sh = store->sh;

    ngx_shmtx_lock(&store->shpool->mutex);

    sh->workers[ngx_worker].pid = ngx_pid;
    sh->workers[ngx_worker].starts++;

    if (ngx_worker == 0) {
        for (i = workers; i < NGX_HTTP_EVENTS_MAX_WORKERS; i++) {
            sh->workers[i].pid = 0;
        }
    }

    ngx_shmtx_unlock(&store->shpool->mutex);
}


/*
 * The next event after a position that matches the filters, copied
 * into the caller's scratch: what a stream reads, one event at a time,
 * without growing any pool.  NGX_DONE: nothing more up to the head;
 * NGX_AGAIN: the budget ran out; NGX_DECLINED: "after" left the window.
 * *last is how far the reader got either way.
 */

ngx_int_t
ngx_http_events_store_next(ngx_http_events_store_t *store,
    ngx_http_events_query_t *q, uint64_t after, ngx_uint_t budget,
    ngx_http_events_scratch_t *scratch, ngx_http_events_item_t *item,
    uint64_t *last)
{
    u_char                    *p;
    uint64_t                   pos, head;
    ngx_int_t                  rc;
    ngx_uint_t                 n;
    ngx_http_events_sh_t      *sh;
    ngx_http_events_copy_t     c;
    ngx_http_events_slot_t     slot;
    ngx_http_events_record_t  *h;
    ngx_http_events_history_t *hist;

    sh = store->sh;
    *last = after;

    head = sh->last_seq;
    ngx_memory_barrier();

    if (after >= head) {
        return NGX_DONE;
    }

    hist = ngx_http_events_store_history(store);

    if (hist && after < ngx_http_events_history_gone(hist, sh->evicted_seq)) {
        return NGX_DECLINED;
    }

    if (after < sh->evicted_seq) {
        if (hist == NULL) {
            return NGX_DECLINED;
        }

        /* older than the ring: from disk, until the ring has it */

        rc = ngx_http_events_history_next(hist, q, after, head, budget,
                                          scratch, item, last);

        if (rc != NGX_DONE || *last >= head) {
            return rc;
        }

        /* what the index has not reached yet is the ring's */

        after = *last;

        if (after < sh->evicted_seq) {
            return NGX_AGAIN;
        }
    }

    if (ngx_http_events_store_seek(sh, after, &pos) != NGX_OK) {
        return NGX_DECLINED;
    }

    for (n = 0; n < budget; n++) {

        rc = ngx_http_events_store_read_slot(sh, pos++, &slot);

        if (rc == NGX_DECLINED) {
            return NGX_DECLINED;
        }

        if (rc == NGX_DONE || slot.seq > head) {
            *last = head;
            return NGX_DONE;
        }

        rc = ngx_http_events_store_copy(sh, slot.off, &c);

        if (rc != NGX_OK) {
            return rc;
        }

        if (!ngx_http_events_store_match_query(q, &c)
            || !ngx_http_events_store_match_meta(sh, slot.off, &c, q))
        {
            *last = slot.seq;
            continue;
        }

        if (c.h.json_len > scratch->size) {
            p = ngx_alloc(c.h.json_len, ngx_cycle->log);
            if (p == NULL) {
                return NGX_ERROR;
            }

            if (scratch->data) {
                ngx_free(scratch->data);
            }

            scratch->data = p;
            scratch->size = c.h.json_len;
        }

        h = ngx_http_events_store_record(sh, slot.off);
        ngx_memcpy(scratch->data, (u_char *) h
                                  + sizeof(ngx_http_events_record_t)
                                  + ngx_http_events_rec_keys_len(&c.h),
                   c.h.json_len);

        if (!ngx_http_events_store_valid(sh, slot.off)) {
            return NGX_DECLINED;
        }

        ngx_memcpy(scratch->type, c.type.data, c.type.len);
        ngx_memcpy(scratch->id, c.id.data, c.id.len);
        ngx_memcpy(scratch->tenant, c.tenant.data, c.tenant.len);

        item->seq = slot.seq;
        item->id.data = scratch->id;
        item->id.len = c.id.len;
        item->tenant.data = scratch->tenant;
        item->tenant.len = c.tenant.len;
        item->json.data = scratch->data;
        item->json.len = c.h.json_len;
        item->type.data = scratch->type;
        item->type.len = c.type.len;

        *last = slot.seq;

        return NGX_OK;
    }

    return NGX_AGAIN;
}


/* streams: who listens where, and the doorbells' pending flags */

void
ngx_http_events_store_subscribe(ngx_http_events_store_t *store,
    ngx_int_t delta)
{
    ngx_uint_t  w;

    w = ngx_worker < NGX_HTTP_EVENTS_MAX_WORKERS ? ngx_worker : 0;

    (void) ngx_atomic_fetch_add(&store->sh->workers[w].subscribers, delta);
}


ngx_uint_t
ngx_http_events_store_listening(ngx_http_events_store_t *store,
    ngx_uint_t worker)
{
    return worker < NGX_HTTP_EVENTS_MAX_WORKERS
           && (store->sh->workers[worker].subscribers > 0
               || store->sh->workers[worker].dispatching);
}


/* the webhook dispatcher wants the doorbell as streams do */

void
ngx_http_events_store_dispatching(ngx_http_events_store_t *store,
    ngx_uint_t on)
{
    ngx_uint_t  w;

    w = ngx_worker < NGX_HTTP_EVENTS_MAX_WORKERS ? ngx_worker : 0;

    store->sh->workers[w].dispatching = on;
}


ngx_uint_t
ngx_http_events_store_ring(ngx_http_events_store_t *store, ngx_uint_t worker)
{
    return ngx_atomic_cmp_set(&store->sh->workers[worker].pending, 0, 1);
}


void
ngx_http_events_store_unring(ngx_http_events_store_t *store,
    ngx_uint_t worker)
{
    if (worker < NGX_HTTP_EVENTS_MAX_WORKERS) {
        (void) ngx_atomic_cmp_set(&store->sh->workers[worker].pending, 1, 0);
    }
}


void
ngx_http_events_store_count(ngx_http_events_store_t *store,
    ngx_uint_t streamed, ngx_uint_t lagging)
{
    ngx_uint_t  w;

    w = ngx_worker < NGX_HTTP_EVENTS_MAX_WORKERS ? ngx_worker : 0;

    if (streamed) {
        (void) ngx_atomic_fetch_add(&store->sh->workers[w].streamed,
                                    streamed);
    }

    if (lagging) {
        (void) ngx_atomic_fetch_add(&store->sh->workers[w].lagging, lagging);
    }
}


void
ngx_http_events_store_woken(ngx_http_events_store_t *store)
{
    if (ngx_worker < NGX_HTTP_EVENTS_MAX_WORKERS) {
        (void) ngx_atomic_fetch_add(&store->sh->workers[ngx_worker].wakeups,
                                    1);
    }
}


/*
 * The zone's cursor secret: the journal keeps it beside the segments,
 * and gives it back at replay, with the epoch it goes with.
 */

u_char *
ngx_http_events_store_secret(ngx_http_events_store_t *store)
{
    return store->sh->secret;
}


/* this process's cursor contexts, keyed on first use (after fork) */

ngx_http_events_cursor_key_t *
ngx_http_events_store_cursor_key(ngx_http_events_store_t *store)
{
    ngx_pool_cleanup_t  *cln;

    uint64_t  epoch;

    epoch = store->sh->epoch;
    ngx_memory_barrier();

    if (store->cursor_key.enc != NULL) {
        if (store->cursor_key.epoch == epoch) {
            return &store->cursor_key;
        }

        /* a cluster's log began again (store_reset): key it anew */
        ngx_http_events_cursor_key_free(&store->cursor_key);

    } else {
        cln = ngx_pool_cleanup_add(ngx_cycle->pool, 0);
        if (cln == NULL) {
            return NULL;
        }

        cln->handler = ngx_http_events_store_cursor_cleanup;
        cln->data = &store->cursor_key;
    }

    if (ngx_http_events_cursor_key_init(&store->cursor_key, store->sh->secret,
                                        epoch)
        != NGX_OK)
    {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "events zone \"%V\": no cipher context for cursors",
                      &store->name);
        return NULL;
    }

    return &store->cursor_key;
}


static void
ngx_http_events_store_cursor_cleanup(void *data)
{
    ngx_http_events_cursor_key_free(data);
}


/*
 * Whether a tenant has no event in the ring: such a tenant is told no
 * head, which would otherwise be a position among other tenants' events.
 */

ngx_uint_t
ngx_http_events_store_tenant_empty(ngx_http_events_store_t *store,
    ngx_str_t *tenant)
{
    ngx_uint_t                      empty;
    ngx_http_events_tenant_node_t  *ten;

    ngx_shmtx_lock(&store->shpool->mutex);

    ten = ngx_http_events_store_tenant_find(store->sh, tenant,
                                            ngx_crc32_short(tenant->data,
                                                            tenant->len));
    empty = (ten == NULL || ten->events == 0);

    ngx_shmtx_unlock(&store->shpool->mutex);

    return empty;
}


/* the webhooks' state hangs off the zone header */

void **
ngx_http_events_store_wh_slot(ngx_http_events_store_t *store)
{
    return &store->sh->webhooks;
}


/* and the inbound webhooks' counters */

void **
ngx_http_events_store_inbound_slot(ngx_http_events_store_t *store)
{
    return &store->sh->inbound;
}


uint64_t
ngx_http_events_store_head(ngx_http_events_store_t *store)
{
    return store->sh->last_seq;
}
