
/*
 * Copyright (C) ngx_http_events_module authors
 */


/*
 * Cluster mode: many nginx nodes share one log in a Redis stream.
 *
 *   events_cluster ZONE redis://[user:password@]host:port[/db]
 *                  [prefix=NAME] [connect_timeout=T] [timeout=T]
 *                  [retention=T] [max_len=N] [wait=N] [webhook_lease=T]
 *                  [tail_pace=T];
 *
 * This file: the directive, the zones, the process lifecycle, the lease
 * that makes one worker per node the tailer, and the record an event is
 * in the stream.  The concerns have their files:
 *
 *   _append.c   POSTs: one Lua script per batch, pipelined
 *   _tail.c     the tailer: XREAD BLOCK into the ring, epochs
 *   _read.c     reads older than the ring, from the stream
 *   _webhook.c  webhooks once per cluster: claims (renewed), shared
 *               endpoints, failure states and attempts
 *   _status.c   the status section and readiness
 *
 * Keys of one log share the hash tag {prefix}.  Where the tail resumes,
 * its epoch, the lease and the counters live in a small zone of this
 * module, so that they survive a reload.
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


#define NGX_HTTP_EVENTS_CLUSTER_TICK     500
#define NGX_HTTP_EVENTS_CLUSTER_LEASE    3000
#define NGX_HTTP_EVENTS_CLUSTER_ZONE     (64 * 1024)

/* a record in the stream: version, action, client_id, digest, ... */
#define NGX_HTTP_EVENTS_RECORD_VERSION   1
#define NGX_HTTP_EVENTS_RECORD_HEADER    (3 + 16 + 4 + 4 + 6 * 2 + 4)


typedef struct {
    ngx_array_t                 clusters;       /* cluster_t * */
} ngx_http_events_cluster_main_conf_t;


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

static ngx_int_t ngx_http_events_cluster_ready(void *data);
static void ngx_http_events_cluster_lost(ngx_http_events_redis_t *rd);
static void ngx_http_events_cluster_tick(ngx_event_t *ev);


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
    cl->tail_pace = 2;

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

        /* renewed every third of it: a few round trips to Redis at least */
        if (ms < 1000) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "events_cluster: \"%V\" is shorter than "
                               "1s", v);
            return NGX_CONF_ERROR;
        }

        cl->wh_lease = ms;
        return NGX_CONF_OK;
    }

    if (v->len > 10 && ngx_strncmp(v->data, "tail_pace=", 10) == 0) {
        s.data = v->data + 10;
        s.len = v->len - 10;

        ms = ngx_parse_time(&s, 0);
        if (ms == (ngx_msec_t) NGX_ERROR || ms > 1000) {
            goto invalid;
        }

        cl->tail_pace = ms;
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

    p = ngx_pnalloc(cf->pool, 4 * len);
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

    cl->key_types.data = p;
    p = ngx_sprintf(p, "{%V}:ty:", &cl->prefix);
    cl->key_types.len = p - cl->key_types.data;

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

    if (ocl || shm_zone->shm.exists) {
        cl->sh = ocl ? ocl->sh : shpool->data;

        /* the zone of another version of the module, kept by a reload */
        if (cl->sh->magic != NGX_HTTP_EVENTS_CLUSTER_MAGIC
            || cl->sh->layout != NGX_HTTP_EVENTS_CLUSTER_LAYOUT)
        {
            ngx_log_error(NGX_LOG_EMERG, shm_zone->shm.log, 0,
                          "zone \"%V\" has an incompatible layout (this "
                          "module writes %d); restart nginx instead of "
                          "reloading", &shm_zone->shm.name,
                          NGX_HTTP_EVENTS_CLUSTER_LAYOUT);
            return NGX_ERROR;
        }

        return NGX_OK;
    }

    cl->sh = ngx_slab_calloc(shpool, sizeof(ngx_http_events_cluster_sh_t));
    if (cl->sh == NULL) {
        return NGX_ERROR;
    }

    cl->sh->magic = NGX_HTTP_EVENTS_CLUSTER_MAGIC;
    cl->sh->layout = NGX_HTTP_EVENTS_CLUSTER_LAYOUT;

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
    ngx_http_core_loc_conf_t             *clcf;
    ngx_http_events_cluster_t           **clp, *cl;
    ngx_http_events_main_conf_t          *emcf;
    ngx_http_events_cluster_main_conf_t  *cmcf;

    cmcf = ngx_http_conf_get_module_main_conf(cf,
                                              ngx_http_events_cluster_module);
    emcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_events_module);

    /* http{}'s resolver, as proxy_pass with variables uses it */
    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    ngx_http_events_cluster_append_postconfiguration();
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

        if (ngx_http_events_redis_resolver(cf, &cl->redis, clcf->resolver)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

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
        cl->remote.types = ngx_http_events_cluster_read_types;
        cl->remote.gone = ngx_http_events_cluster_read_gone;
        cl->remote.claim = ngx_http_events_cluster_webhook_claim;
        cl->remote.held = ngx_http_events_cluster_webhook_held;
        cl->remote.settle = ngx_http_events_cluster_webhook_settle;
        cl->remote.wh_publish = ngx_http_events_cluster_webhook_publish;
        cl->remote.wh_attempt = ngx_http_events_cluster_webhook_attempt;
        cl->remote.wh_state = ngx_http_events_cluster_webhook_state;

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
        cl->rd.asks = &cl->sh->asks;
        cl->rd.errors = &cl->sh->errors;

        ngx_queue_init(&cl->reads);

        if (ngx_http_events_cluster_webhook_init(cl) != NGX_OK) {
            return NGX_ERROR;
        }

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

size_t
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


u_char *
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


/*
 * An entry's fields: [e, epoch, r, record], then [g, the last seq the
 * log had trimmed when the entry was added] from 0.12.0 on.  NGX_OK:
 * *gone is set; NGX_DECLINED: an older entry without it; NGX_ERROR:
 * another shape.
 */

ngx_int_t
ngx_http_events_cluster_fields(redisReply *fields, uint64_t *gone)
{
    off_t         n;
    redisReply  **f;

    if (fields->type != REDIS_REPLY_ARRAY
        || (fields->elements != 4 && fields->elements != 6))
    {
        return NGX_ERROR;
    }

    f = fields->element;

    if (f[1]->type != REDIS_REPLY_STRING || f[3]->type != REDIS_REPLY_STRING)
    {
        return NGX_ERROR;
    }

    if (fields->elements == 4) {
        return NGX_DECLINED;
    }

    if (f[5]->type != REDIS_REPLY_STRING) {
        return NGX_ERROR;
    }

    n = ngx_atoof((u_char *) f[5]->str, f[5]->len);
    if (n == NGX_ERROR) {
        return NGX_ERROR;
    }

    *gone = (uint64_t) n;

    return NGX_OK;
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


