
/*
 * Copyright (C) ngx_http_events_module authors
 */


/*
 * Cluster mode: many nginx nodes share one log in a Redis stream.
 *
 *   events_cluster ZONE redis://[user:password@]host:port[/db]
 *                  [prefix=NAME] [connect_timeout=T] [timeout=T]
 *                  [retention=T] [max_len=N];
 *
 * Appends.  A POST on any node runs one Lua script in Redis (EVALSHA;
 * EVAL with the script's text when Redis answers NOSCRIPT, which also
 * loads it) that checks the client ids of the batch, assigns the seqs,
 * adds the events to the stream with the id "<ms>-<seq>" and records
 * the ids, all or nothing.  The answer goes after Redis answered, from
 * what the script assigned; nothing is written to the local ring by
 * this path.  Scripts of one worker share its connection, pipelined.
 * Keys of one log share the hash tag {prefix}.
 *
 * Tailing.  On each node one worker holds a lease in this module's
 * zone (renewed every tick, taken over when it lapses or its holder is
 * gone) and reads the stream with XREAD BLOCK on its own connection
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
 * reset epoch_changed.
 *
 * Where the tail resumes, its epoch, the lease and the counters live in
 * a small zone of this module, so that they survive a reload.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <openssl/rand.h>
#include <openssl/sha.h>

#include "ngx_http_events_module.h"
#include "ngx_http_events_store.h"
#include "ngx_http_events_ipc.h"
#include "ngx_http_events_redis.h"
#include "ngx_http_events_cluster.h"


#define NGX_HTTP_EVENTS_CLUSTER_TICK     500
#define NGX_HTTP_EVENTS_CLUSTER_LEASE    3000
#define NGX_HTTP_EVENTS_CLUSTER_BLOCK    1000
#define NGX_HTTP_EVENTS_CLUSTER_COUNT    512
#define NGX_HTTP_EVENTS_CLUSTER_ZONE     (64 * 1024)

/* a record in the stream: version, action, client_id, digest, ... */
#define NGX_HTTP_EVENTS_RECORD_VERSION   1
#define NGX_HTTP_EVENTS_RECORD_HEADER    (3 + 16 + 4 + 4 + 6 * 2 + 4)


typedef struct {
    ngx_array_t                 clusters;       /* cluster_t * */
} ngx_http_events_cluster_main_conf_t;


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
    unsigned                    retried:1;
    unsigned                    no_wait:1;      /* WAIT could not go */
} ngx_http_events_cluster_op_t;


static char *ngx_http_events_cluster(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_events_cluster_param(ngx_conf_t *cf,
    ngx_http_events_cluster_t *cl, ngx_str_t *v);
static ngx_int_t ngx_http_events_cluster_keys(ngx_conf_t *cf,
    ngx_http_events_cluster_t *cl);
static ngx_int_t ngx_http_events_cluster_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static void *ngx_http_events_cluster_create_main_conf(ngx_conf_t *cf);
static ngx_int_t ngx_http_events_cluster_postconfiguration(ngx_conf_t *cf);
static ngx_int_t ngx_http_events_cluster_init_process(ngx_cycle_t *cycle);
static void ngx_http_events_cluster_exit_process(ngx_cycle_t *cycle);

static void *ngx_http_events_cluster_append(void *data,
    ngx_http_events_event_t *events, ngx_uint_t n, ngx_pool_t *pool,
    ngx_http_events_remote_done_pt done, void *ctx);
static void ngx_http_events_cluster_cancel(void *handle);
static ngx_int_t ngx_http_events_cluster_ready(void *data);
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
static void ngx_http_events_cluster_lost(ngx_http_events_redis_t *rd);

static size_t ngx_http_events_cluster_rec_len(ngx_http_events_event_t *ev);
static u_char *ngx_http_events_cluster_rec_write(u_char *p,
    ngx_http_events_event_t *ev);

static void ngx_http_events_cluster_tick(ngx_event_t *ev);
static void ngx_http_events_cluster_tail_start(ngx_http_events_cluster_t *cl);
static void ngx_http_events_cluster_tail_stop(ngx_http_events_cluster_t *cl);
static void ngx_http_events_cluster_link(ngx_http_events_cluster_t *cl,
    ngx_uint_t up, ngx_str_t *why);
static void ngx_http_events_cluster_tail_ready(ngx_http_events_redis_t *rd);
static void ngx_http_events_cluster_tail_lost(ngx_http_events_redis_t *rd);
static void ngx_http_events_cluster_tail_epoch(void *data, redisReply *reply,
    ngx_http_events_redis_cmd_t *cmd);
static void ngx_http_events_cluster_tail_read(ngx_http_events_cluster_t *cl);
static void ngx_http_events_cluster_tail_later(ngx_http_events_cluster_t *cl);
static void ngx_http_events_cluster_tail_again(ngx_event_t *ev);
static void ngx_http_events_cluster_tailed(void *data, redisReply *reply,
    ngx_http_events_redis_cmd_t *cmd);
static ngx_int_t ngx_http_events_cluster_import(
    ngx_http_events_cluster_t *cl, redisReply *entry, ngx_uint_t *restart);
static void ngx_http_events_cluster_adopt(ngx_http_events_cluster_t *cl,
    uint64_t epoch, u_char *secret);


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


static ngx_command_t  ngx_http_events_cluster_commands[] = {

    { ngx_string("events_cluster"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_2MORE,
      ngx_http_events_cluster,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_events_cluster_module_ctx = {
    NULL,                                  /* preconfiguration */
    ngx_http_events_cluster_postconfiguration, /* postconfiguration */

    ngx_http_events_cluster_create_main_conf, /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    NULL,                                  /* create location configuration */
    NULL                                   /* merge location configuration */
};


ngx_module_t  ngx_http_events_cluster_module = {
    NGX_MODULE_V1,
    &ngx_http_events_cluster_module_ctx,   /* module context */
    ngx_http_events_cluster_commands,      /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_http_events_cluster_init_process,  /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_events_cluster_exit_process,  /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


/* configuration */

static char *
ngx_http_events_cluster(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_events_cluster_main_conf_t  *cmcf = conf;

    char                        *rv;
    u_char                      *p;
    ngx_str_t                   *value, name;
    ngx_uint_t                   i;
    ngx_http_events_cluster_t   *cl, **clp;

    value = cf->args->elts;

    clp = cmcf->clusters.elts;

    for (i = 0; i < cmcf->clusters.nelts; i++) {
        if (clp[i]->zone_name.len == value[1].len
            && ngx_strncmp(clp[i]->zone_name.data, value[1].data,
                           value[1].len) == 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "events zone \"%V\" already has an "
                               "events_cluster", &value[1]);
            return NGX_CONF_ERROR;
        }
    }

    cl = ngx_pcalloc(cf->pool, sizeof(ngx_http_events_cluster_t));
    if (cl == NULL) {
        return NGX_CONF_ERROR;
    }

    cl->zone_name = value[1];
    cl->redis.connect_timeout = 2000;
    cl->redis.timeout = 2000;
    ngx_str_set(&cl->prefix, "events");
    ngx_str_set(&cl->max_len, "0");
    ngx_str_set(&cl->retention, "0");
    cl->wh_lease = 30000;
    cl->wh_done = 24 * 3600 * 1000;

    rv = ngx_http_events_redis_parse_url(cf, &value[2], &cl->redis);
    if (rv != NGX_CONF_OK) {
        return rv;
    }

    ngx_str_set(&cl->trusted, "/etc/ssl/certs/ca-certificates.crt");

    for (i = 3; i < cf->args->nelts; i++) {
        if (value[i].len > 24
            && ngx_strncmp(value[i].data, "tls_trusted_certificate=", 24)
               == 0)
        {
            if (!cl->redis.tls) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "events_cluster: \"%V\" needs a "
                                   "rediss:// URL", &value[i]);
                return NGX_CONF_ERROR;
            }

            cl->trusted.data = value[i].data + 24;
            cl->trusted.len = value[i].len - 24;
            continue;
        }

        rv = ngx_http_events_cluster_param(cf, cl, &value[i]);
        if (rv != NGX_CONF_OK) {
            return rv;
        }
    }

    rv = ngx_http_events_redis_tls(cf, &cl->redis, &cl->trusted);
    if (rv != NGX_CONF_OK) {
        return rv;
    }

    if (ngx_http_events_cluster_keys(cf, cl) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    if (cl->wait_n) {
        /* half the timeout: WAIT answers before the connection is dead */
        cl->wait_ms.data = ngx_pnalloc(cf->pool, NGX_INT_T_LEN);
        if (cl->wait_ms.data == NULL) {
            return NGX_CONF_ERROR;
        }

        cl->wait_ms.len = ngx_sprintf(cl->wait_ms.data, "%M",
                                      ngx_max(cl->redis.timeout / 2, 1))
                          - cl->wait_ms.data;
    }

    /* size 0: events_zone declares it, before or after this directive */
    cl->zone = ngx_shared_memory_add(cf, &value[1], 0,
                                     &ngx_http_events_module);
    if (cl->zone == NULL) {
        return NGX_CONF_ERROR;
    }

    name.len = sizeof("events_cluster:") - 1 + value[1].len;
    name.data = ngx_pnalloc(cf->pool, name.len);
    if (name.data == NULL) {
        return NGX_CONF_ERROR;
    }

    p = ngx_cpymem(name.data, "events_cluster:", sizeof("events_cluster:") - 1);
    ngx_memcpy(p, value[1].data, value[1].len);

    cl->shm = ngx_shared_memory_add(cf, &name, NGX_HTTP_EVENTS_CLUSTER_ZONE,
                                    &ngx_http_events_cluster_module);
    if (cl->shm == NULL) {
        return NGX_CONF_ERROR;
    }

    cl->shm->init = ngx_http_events_cluster_init_zone;
    cl->shm->data = cl;

    clp = ngx_array_push(&cmcf->clusters);
    if (clp == NULL) {
        return NGX_CONF_ERROR;
    }

    *clp = cl;

    return NGX_CONF_OK;
}


static char *
ngx_http_events_cluster_param(ngx_conf_t *cf, ngx_http_events_cluster_t *cl,
    ngx_str_t *v)
{
    u_char      *p;
    ngx_str_t    s;
    ngx_int_t    n;
    ngx_msec_t   ms;

    if (v->len > 7 && ngx_strncmp(v->data, "prefix=", 7) == 0) {
        s.data = v->data + 7;
        s.len = v->len - 7;

        for (p = s.data; p < s.data + s.len; p++) {
            if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')
                  || (*p >= '0' && *p <= '9') || *p == '_' || *p == '-'
                  || *p == '.' || *p == ':'))
            {
                goto invalid;
            }
        }

        if (s.len > 64) {
            goto invalid;
        }

        cl->prefix = s;
        return NGX_CONF_OK;
    }

    if (v->len > 16 && ngx_strncmp(v->data, "connect_timeout=", 16) == 0) {
        s.data = v->data + 16;
        s.len = v->len - 16;

        ms = ngx_parse_time(&s, 0);
        if (ms == (ngx_msec_t) NGX_ERROR || ms == 0) {
            goto invalid;
        }

        cl->redis.connect_timeout = ms;
        return NGX_CONF_OK;
    }

    if (v->len > 8 && ngx_strncmp(v->data, "timeout=", 8) == 0) {
        s.data = v->data + 8;
        s.len = v->len - 8;

        ms = ngx_parse_time(&s, 0);
        if (ms == (ngx_msec_t) NGX_ERROR || ms == 0) {
            goto invalid;
        }

        cl->redis.timeout = ms;
        return NGX_CONF_OK;
    }

    if (v->len > 10 && ngx_strncmp(v->data, "retention=", 10) == 0) {
        s.data = v->data + 10;
        s.len = v->len - 10;

        ms = ngx_parse_time(&s, 0);
        if (ms == (ngx_msec_t) NGX_ERROR || ms == 0) {
            goto invalid;
        }

        cl->retention.data = ngx_pnalloc(cf->pool, NGX_INT_T_LEN);
        if (cl->retention.data == NULL) {
            return NGX_CONF_ERROR;
        }

        cl->retention.len = ngx_sprintf(cl->retention.data, "%M", ms)
                            - cl->retention.data;

        /* an ended delivery is remembered as long as the log is */
        cl->wh_done = ms;
        return NGX_CONF_OK;
    }

    if (v->len > 14 && ngx_strncmp(v->data, "webhook_lease=", 14) == 0) {
        s.data = v->data + 14;
        s.len = v->len - 14;

        ms = ngx_parse_time(&s, 0);
        if (ms == (ngx_msec_t) NGX_ERROR || ms == 0) {
            goto invalid;
        }

        cl->wh_lease = ms;
        return NGX_CONF_OK;
    }

    if (v->len > 5 && ngx_strncmp(v->data, "wait=", 5) == 0) {
        n = ngx_atoi(v->data + 5, v->len - 5);
        if (n == NGX_ERROR || n == 0 || n > 64) {
            goto invalid;
        }

        cl->wait_n = n;
        cl->wait.data = v->data + 5;
        cl->wait.len = v->len - 5;
        return NGX_CONF_OK;
    }

    if (v->len > 8 && ngx_strncmp(v->data, "max_len=", 8) == 0) {
        n = ngx_atoi(v->data + 8, v->len - 8);
        if (n == NGX_ERROR || n == 0) {
            goto invalid;
        }

        cl->max_len.data = v->data + 8;
        cl->max_len.len = v->len - 8;
        return NGX_CONF_OK;
    }

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "events_cluster: unknown parameter \"%V\"", v);
    return NGX_CONF_ERROR;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "events_cluster: invalid parameter \"%V\"", v);
    return NGX_CONF_ERROR;
}


/* every key of one log shares the hash tag {prefix}: one slot */

static ngx_int_t
ngx_http_events_cluster_keys(ngx_conf_t *cf, ngx_http_events_cluster_t *cl)
{
    u_char  *p;
    size_t   len;

    len = cl->prefix.len + 2 + sizeof(":meta") - 1;

    p = ngx_pnalloc(cf->pool, 3 * len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    cl->key_log.data = p;
    p = ngx_sprintf(p, "{%V}:log", &cl->prefix);
    cl->key_log.len = p - cl->key_log.data;

    cl->key_meta.data = p;
    p = ngx_sprintf(p, "{%V}:meta", &cl->prefix);
    cl->key_meta.len = p - cl->key_meta.data;

    cl->key_id.data = p;
    p = ngx_sprintf(p, "{%V}:id:", &cl->prefix);
    cl->key_id.len = p - cl->key_id.data;

    return NGX_OK;
}


static ngx_int_t
ngx_http_events_cluster_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_events_cluster_t  *ocl = data;

    ngx_slab_pool_t            *shpool;
    ngx_http_events_cluster_t  *cl;

    cl = shm_zone->data;
    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;
    cl->shpool = shpool;

    if (ocl) {
        cl->sh = ocl->sh;
        return NGX_OK;
    }

    if (shm_zone->shm.exists) {
        cl->sh = shpool->data;
        return NGX_OK;
    }

    cl->sh = ngx_slab_calloc(shpool, sizeof(ngx_http_events_cluster_sh_t));
    if (cl->sh == NULL) {
        return NGX_ERROR;
    }

    /* this node, among the nodes that write webhook attempts to Redis */
    while (cl->sh->node == 0) {
        if (RAND_bytes((u_char *) &cl->sh->node, sizeof(uint64_t)) != 1) {
            return NGX_ERROR;
        }
    }

    shpool->data = cl->sh;

    return NGX_OK;
}


static void *
ngx_http_events_cluster_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_events_cluster_main_conf_t  *cmcf;

    cmcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_events_cluster_main_conf_t));
    if (cmcf == NULL) {
        return NULL;
    }

    if (ngx_array_init(&cmcf->clusters, cf->pool, 1,
                       sizeof(ngx_http_events_cluster_t *))
        != NGX_OK)
    {
        return NULL;
    }

    return cmcf;
}


/* every zone is known now: bind each cluster to its store */

static ngx_int_t
ngx_http_events_cluster_postconfiguration(ngx_conf_t *cf)
{
    ngx_uint_t                            i, k;
    ngx_http_events_store_t              *store;
    ngx_http_events_cluster_t           **clp, *cl;
    ngx_http_events_main_conf_t          *emcf;
    ngx_http_events_cluster_main_conf_t  *cmcf;
    u_char                                sha[SHA_DIGEST_LENGTH];

    cmcf = ngx_http_conf_get_module_main_conf(cf,
                                              ngx_http_events_cluster_module);
    emcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_events_module);

    SHA1(ngx_http_events_cluster_script.data,
         ngx_http_events_cluster_script.len, sha);
    ngx_hex_dump(ngx_http_events_cluster_sha, sha, SHA_DIGEST_LENGTH);
    ngx_http_events_cluster_read_postconfiguration();
    ngx_http_events_cluster_webhook_postconfiguration();

    if (cmcf->clusters.nelts
        && ngx_http_events_cluster_status_register(cf) != NGX_OK)
    {
        return NGX_ERROR;
    }

    clp = cmcf->clusters.elts;

    for (i = 0; i < cmcf->clusters.nelts; i++) {
        cl = clp[i];
        store = cl->zone->data;

        if (store == NULL) {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "events_cluster: unknown events zone \"%V\"",
                          &cl->zone_name);
            return NGX_ERROR;
        }

        for (k = 0; emcf->captured && k < emcf->captured->nelts; k++) {
            if (((ngx_shm_zone_t **) emcf->captured->elts)[k] == cl->zone) {
                ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                              "events_capture into events zone \"%V\", "
                              "which has an events_cluster, is not "
                              "supported yet", &cl->zone_name);
                return NGX_ERROR;
            }
        }

        if (store->journal) {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "events_cluster: events zone \"%V\" has an "
                          "events_journal; a cluster's history is in "
                          "Redis, the two cannot be combined yet",
                          &cl->zone_name);
            return NGX_ERROR;
        }

        cl->remote.data = cl;
        cl->remote.append = ngx_http_events_cluster_append;
        cl->remote.cancel = ngx_http_events_cluster_cancel;
        cl->remote.ready = ngx_http_events_cluster_ready;
        cl->remote.health = ngx_http_events_cluster_health;
        cl->remote.query = ngx_http_events_cluster_read_query;
        cl->remote.get = ngx_http_events_cluster_read_get;
        cl->remote.cancel_read = ngx_http_events_cluster_read_cancel;
        cl->remote.claim = ngx_http_events_cluster_webhook_claim;
        cl->remote.settle = ngx_http_events_cluster_webhook_settle;
        cl->remote.wh_publish = ngx_http_events_cluster_webhook_publish;
        cl->remote.wh_attempt = ngx_http_events_cluster_webhook_attempt;

        store->remote = &cl->remote;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_events_cluster_init_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                            i;
    ngx_http_events_cluster_t           **clp, *cl;
    ngx_http_events_cluster_main_conf_t  *cmcf;

    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    cmcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_events_cluster_module);
    if (cmcf == NULL) {
        return NGX_OK;
    }

    clp = cmcf->clusters.elts;

    for (i = 0; i < cmcf->clusters.nelts; i++) {
        cl = clp[i];
        cl->log = cycle->log;

        if (ngx_http_events_redis_init(&cl->rd, &cl->redis, cycle->log)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        cl->rd.data = cl;
        cl->rd.lost = ngx_http_events_cluster_lost;

        ngx_queue_init(&cl->reads);

        if (ngx_http_events_cluster_webhook_init(cl) != NGX_OK) {
            return NGX_ERROR;
        }

        cl->tail_wait.handler = ngx_http_events_cluster_tail_again;
        cl->tail_wait.data = cl;
        cl->tail_wait.log = cycle->log;
        cl->tail_wait.cancelable = 1;

        cl->tick.handler = ngx_http_events_cluster_tick;
        cl->tick.data = cl;
        cl->tick.log = cycle->log;
        cl->tick.cancelable = 1;

        /* the first tick soon, the workers of a node not all at once */
        ngx_add_timer(&cl->tick, 10 + ngx_random() % 100);
    }

    return NGX_OK;
}


static void
ngx_http_events_cluster_exit_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                            i;
    ngx_http_events_cluster_t           **clp, *cl;
    ngx_http_events_cluster_main_conf_t  *cmcf;

    cmcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_events_cluster_module);
    if (cmcf == NULL) {
        return;
    }

    clp = cmcf->clusters.elts;

    for (i = 0; i < cmcf->clusters.nelts; i++) {
        cl = clp[i];

        if (cl->log == NULL) {
            continue;
        }

        ngx_http_events_cluster_tail_stop(cl);
        ngx_http_events_redis_close(&cl->rd);
        ngx_http_events_cluster_read_free(cl);
        ngx_http_events_cluster_webhook_free(cl);

        /* the next tailer need not wait for the lease to lapse */
        ngx_shmtx_lock(&cl->shpool->mutex);

        if (cl->sh->lease_pid == ngx_pid) {
            cl->sh->lease_pid = 0;
        }

        ngx_shmtx_unlock(&cl->shpool->mutex);
    }
}


/* appends */

static void *
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


static void
ngx_http_events_cluster_cancel(void *handle)
{
    ngx_http_events_cluster_op_t  *op = handle;

    /* the script may still run: its reply is dropped */
    op->done = NULL;
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


static ngx_int_t
ngx_http_events_cluster_ready(void *data)
{
    ngx_http_events_cluster_t  *cl = data;

    return cl->sh->caught_up ? NGX_OK : NGX_AGAIN;
}


static void
ngx_http_events_cluster_lost(ngx_http_events_redis_t *rd)
{
    ngx_http_events_cluster_t  *cl = rd->data;

    (void) ngx_atomic_fetch_add(&cl->sh->reconnects, 1);
}


/* a record: what the store needs to write the event, as bytes */

static size_t
ngx_http_events_cluster_rec_len(ngx_http_events_event_t *ev)
{
    return NGX_HTTP_EVENTS_RECORD_HEADER + ev->tenant.len + ev->id.len
           + ev->type.len + ev->rtype.len + ev->rid.len + ev->source.len
           + ev->json_len;
}


#define ngx_http_events_cluster_put16(p, v)                                  \
    *(p)++ = (u_char) ((v) & 0xff); *(p)++ = (u_char) (((v) >> 8) & 0xff)

#define ngx_http_events_cluster_put32(p, v)                                  \
    ngx_http_events_cluster_put16(p, (v) & 0xffff);                          \
    ngx_http_events_cluster_put16(p, ((v) >> 16) & 0xffff)

#define ngx_http_events_cluster_get16(p)                                     \
    ((uint32_t) (p)[0] | (uint32_t) (p)[1] << 8)
#define ngx_http_events_cluster_get32(p)                                     \
    (ngx_http_events_cluster_get16(p)                                        \
     | ngx_http_events_cluster_get16((p) + 2) << 16)


static u_char *
ngx_http_events_cluster_rec_write(u_char *p, ngx_http_events_event_t *ev)
{
    *p++ = NGX_HTTP_EVENTS_RECORD_VERSION;
    *p++ = (u_char) ev->action;
    *p++ = (u_char) ev->client_id;
    p = ngx_cpymem(p, ev->digest, 16);

    ngx_http_events_cluster_put32(p, (uint32_t) ev->seq_at);
    ngx_http_events_cluster_put32(p, (uint32_t) ev->ts_at);
    ngx_http_events_cluster_put16(p, (uint32_t) ev->tenant.len);
    ngx_http_events_cluster_put16(p, (uint32_t) ev->id.len);
    ngx_http_events_cluster_put16(p, (uint32_t) ev->type.len);
    ngx_http_events_cluster_put16(p, (uint32_t) ev->rtype.len);
    ngx_http_events_cluster_put16(p, (uint32_t) ev->rid.len);
    ngx_http_events_cluster_put16(p, (uint32_t) ev->source.len);
    ngx_http_events_cluster_put32(p, (uint32_t) ev->json_len);

    p = ngx_cpymem(p, ev->tenant.data, ev->tenant.len);
    p = ngx_cpymem(p, ev->id.data, ev->id.len);
    p = ngx_cpymem(p, ev->type.data, ev->type.len);
    p = ngx_cpymem(p, ev->rtype.data, ev->rtype.len);
    p = ngx_cpymem(p, ev->rid.data, ev->rid.len);
    p = ngx_cpymem(p, ev->source.data, ev->source.len);
    p = ngx_cpymem(p, ev->json, ev->json_len);

    return p;
}


/* the event points into the record's bytes */

ngx_int_t
ngx_http_events_cluster_rec_read(u_char *p, size_t len,
    ngx_http_events_event_t *ev)
{
    u_char  *last;

    last = p + len;

    if (len < NGX_HTTP_EVENTS_RECORD_HEADER
        || p[0] != NGX_HTTP_EVENTS_RECORD_VERSION)
    {
        return NGX_ERROR;
    }

    ev->action = p[1];
    ev->client_id = p[2] ? 1 : 0;
    ngx_memcpy(ev->digest, p + 3, 16);
    p += 19;

    ev->seq_at = ngx_http_events_cluster_get32(p);
    ev->ts_at = ngx_http_events_cluster_get32(p + 4);
    ev->tenant.len = ngx_http_events_cluster_get16(p + 8);
    ev->id.len = ngx_http_events_cluster_get16(p + 10);
    ev->type.len = ngx_http_events_cluster_get16(p + 12);
    ev->rtype.len = ngx_http_events_cluster_get16(p + 14);
    ev->rid.len = ngx_http_events_cluster_get16(p + 16);
    ev->source.len = ngx_http_events_cluster_get16(p + 18);
    ev->json_len = ngx_http_events_cluster_get32(p + 20);
    p += 24;

    if ((size_t) (last - p) != ev->tenant.len + ev->id.len + ev->type.len
                               + ev->rtype.len + ev->rid.len
                               + ev->source.len + ev->json_len
        || ev->seq_at > ev->ts_at || ev->ts_at > ev->json_len
        || ev->tenant.len > NGX_HTTP_EVENTS_MAX_TENANT
        || ev->id.len > NGX_HTTP_EVENTS_MAX_ID
        || ev->type.len > NGX_HTTP_EVENTS_MAX_TYPE
        || ev->rtype.len > NGX_HTTP_EVENTS_MAX_RTYPE
        || ev->rid.len > NGX_HTTP_EVENTS_MAX_RID
        || ev->source.len > NGX_HTTP_EVENTS_MAX_SOURCE)
    {
        return NGX_ERROR;
    }

    ev->tenant.data = p;
    p += ev->tenant.len;
    ev->id.data = p;
    p += ev->id.len;
    ev->type.data = p;
    p += ev->type.len;
    ev->rtype.data = p;
    p += ev->rtype.len;
    ev->rid.data = p;
    p += ev->rid.len;
    ev->source.data = p;
    p += ev->source.len;
    ev->json = p;

    return NGX_OK;
}


/* "<ms>-<seq>" */

ngx_int_t
ngx_http_events_cluster_id(u_char *p, size_t len, uint64_t *ms,
    uint64_t *seq)
{
    u_char  *dash;
    off_t    a, b;

    dash = ngx_strlchr(p, p + len, '-');
    if (dash == NULL) {
        return NGX_ERROR;
    }

    a = ngx_atoof(p, dash - p);
    b = ngx_atoof(dash + 1, p + len - dash - 1);

    if (a == NGX_ERROR || b == NGX_ERROR) {
        return NGX_ERROR;
    }

    *ms = (uint64_t) a;
    *seq = (uint64_t) b;

    return NGX_OK;
}


ngx_int_t
ngx_http_events_cluster_epoch(redisReply *reply, uint64_t *epoch)
{
    ngx_int_t  hi, lo;

    if (reply->type != REDIS_REPLY_STRING || reply->len != 16) {
        return NGX_ERROR;
    }

    hi = ngx_hextoi((u_char *) reply->str, 8);
    lo = ngx_hextoi((u_char *) reply->str + 8, 8);

    if (hi == NGX_ERROR || lo == NGX_ERROR) {
        return NGX_ERROR;
    }

    *epoch = (uint64_t) hi << 32 | (uint64_t) lo;

    return *epoch ? NGX_OK : NGX_ERROR;
}


/* the lease: one tailer per node */

static void
ngx_http_events_cluster_tick(ngx_event_t *ev)
{
    ngx_http_events_cluster_t  *cl = ev->data;

    ngx_uint_t                     mine;
    ngx_http_events_cluster_sh_t  *sh;

    sh = cl->sh;
    mine = 0;

    ngx_shmtx_lock(&cl->shpool->mutex);

    if (ngx_exiting) {
        if (sh->lease_pid == ngx_pid) {
            sh->lease_pid = 0;
        }

    } else if (sh->lease_pid == ngx_pid) {
        sh->lease_expires = ngx_current_msec
                            + NGX_HTTP_EVENTS_CLUSTER_LEASE;
        mine = 1;

    } else if (sh->lease_pid == 0
               || (ngx_msec_int_t) (ngx_current_msec - sh->lease_expires)
                  > 0
               || (kill(sh->lease_pid, 0) == -1 && ngx_errno == NGX_ESRCH))
    {
        sh->lease_pid = ngx_pid;
        sh->lease_expires = ngx_current_msec
                            + NGX_HTTP_EVENTS_CLUSTER_LEASE;
        sh->term++;
        mine = 1;
    }

    ngx_shmtx_unlock(&cl->shpool->mutex);

    if (mine && !cl->tailing) {
        ngx_log_error(NGX_LOG_NOTICE, cl->log, 0,
                      "events_cluster: this worker tails %V for events "
                      "zone \"%V\"", &cl->redis.url, &cl->zone_name);
        ngx_http_events_cluster_tail_start(cl);

    } else if (!mine && cl->tailing) {
        ngx_http_events_cluster_tail_stop(cl);
    }

    if (mine && !ngx_exiting) {
        /* the API's webhook endpoints of every node, when they changed */
        ngx_http_events_cluster_webhook_poll(cl);
    }

    if (!ngx_exiting) {
        ngx_add_timer(ev, NGX_HTTP_EVENTS_CLUSTER_TICK
                          + ngx_random() % 100);
    }
}


/* the tail */

static void
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
    cl->tail.abandon = 1;
    cl->tailing = 1;

    ngx_http_events_cluster_link(cl, 0, NULL);

    ngx_http_events_redis_connect(&cl->tail);
}


static void
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

    if (imported) {
        ngx_http_events_ipc_notify(cl->zone->data);
    }

    if (restart) {
        ngx_http_events_cluster_tail_ready(&cl->tail);
        return;
    }

    if (entries->elements < NGX_HTTP_EVENTS_CLUSTER_COUNT) {
        cl->sh->caught_up = 1;
    }

    ngx_http_events_cluster_tail_read(cl);

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


/* one entry: [id, [e, epoch, r, record]] */

static ngx_int_t
ngx_http_events_cluster_import(ngx_http_events_cluster_t *cl,
    redisReply *entry, ngx_uint_t *restart)
{
    uint64_t                       ms, seq, epoch, now;
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

    if (entry->element[1]->type != REDIS_REPLY_ARRAY
        || entry->element[1]->elements != 4
        || f[1]->type != REDIS_REPLY_STRING
        || f[3]->type != REDIS_REPLY_STRING
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
    sh->caught_up = 0;

    ngx_shmtx_unlock(&cl->shpool->mutex);

    (void) ngx_atomic_fetch_add(&sh->resets, 1);

    /* streams learn it from their doorbell */
    ngx_http_events_ipc_notify(cl->zone->data);
}
