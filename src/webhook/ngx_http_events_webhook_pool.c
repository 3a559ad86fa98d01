
/*
 * Copyright (C) ngx_http_events_module authors
 */


/*
 * Reused connections for webhook deliveries.  A delivery whose address
 * is known (vetted and pinned, or a literal one) has $events_webhook_url
 * name an implicit upstream of ours instead of the address; the proxy
 * finds it by name and calls its balancer, which gives the pinned
 * address of this request's job, as lua-nginx-module's balancer does.
 * The balancer keeps the idle keep-alive connections of this worker in
 * a bounded cache, as ngx_http_upstream_keepalive_module does, keyed by
 * the address, the proxy settings and, for https, the name the
 * certificate was checked against: a connection verified for one name
 * never carries another's deliveries.  TLS sessions are kept under the
 * same key, so a new connection resumes.  Idle connections are closed
 * after a timeout, and at a reload or a stop by nginx's own
 * ngx_close_idle_connections().
 *
 * Being the balancer, it also sees a failed connection before the proxy
 * closes it: one with c->ssl and no request sent failed in TLS (the
 * handshake or the certificate), and the attempt is E_TLS.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_events_module.h"
#include "ngx_http_events_webhook_shm.h"


#define NGX_HTTP_EVENTS_WH_POOL_NAME_LEN  255


typedef struct {
    void                            *tag;        /* the proxy's conf */
    ngx_sockaddr_t                   sockaddr;
    socklen_t                        socklen;
    ngx_uint_t                       https;
    size_t                           name_len;
    u_char                           name[NGX_HTTP_EVENTS_WH_POOL_NAME_LEN];
} ngx_http_events_webhook_pool_key_t;


typedef struct ngx_http_events_webhook_pool_s  ngx_http_events_webhook_pool_t;


typedef struct {
    ngx_queue_t                          queue;
    ngx_http_events_webhook_pool_t      *pool;
    ngx_connection_t                    *connection;
    ngx_ssl_session_t                   *session;
    ngx_http_events_webhook_pool_key_t   key;
} ngx_http_events_webhook_pool_item_t;


struct ngx_http_events_webhook_pool_s {
    ngx_queue_t                      idle;       /* most recent first */
    ngx_queue_t                      free;
    ngx_queue_t                      sessions;   /* most recent first */
    ngx_queue_t                      free_sessions;
    ngx_uint_t                       max_idle;
    ngx_msec_t                       timeout;
};


typedef struct {
    ngx_http_events_webhook_pool_t  *pool;
    ngx_http_events_webhook_job_t   *job;
    ngx_http_upstream_t             *upstream;
    ngx_http_events_webhook_pool_key_t  key;
} ngx_http_events_webhook_pool_peer_t;


static ngx_int_t ngx_http_events_webhook_pool_init_upstream(ngx_conf_t *cf,
    ngx_http_upstream_srv_conf_t *us);
static ngx_int_t ngx_http_events_webhook_pool_init_peer(ngx_http_request_t *r,
    ngx_http_upstream_srv_conf_t *us);
static ngx_int_t ngx_http_events_webhook_pool_get(ngx_peer_connection_t *pc,
    void *data);
static void ngx_http_events_webhook_pool_free(ngx_peer_connection_t *pc,
    void *data, ngx_uint_t state);
static ngx_uint_t ngx_http_events_webhook_pool_keep(ngx_peer_connection_t *pc,
    ngx_http_events_webhook_pool_peer_t *pp);
static ngx_http_events_webhook_pool_item_t *
    ngx_http_events_webhook_pool_find(ngx_queue_t *queue,
    ngx_http_events_webhook_pool_key_t *key);
static void ngx_http_events_webhook_pool_dummy_handler(ngx_event_t *ev);
static void ngx_http_events_webhook_pool_close_handler(ngx_event_t *ev);
static void ngx_http_events_webhook_pool_close(ngx_connection_t *c);
static void ngx_http_events_webhook_pool_cleanup(void *data);
#if (NGX_HTTP_SSL)
static ngx_int_t ngx_http_events_webhook_pool_set_session(
    ngx_peer_connection_t *pc, void *data);
static void ngx_http_events_webhook_pool_save_session(
    ngx_peer_connection_t *pc, void *data);
#endif


/* once per http{}: the upstream $events_webhook_url names */

ngx_int_t
ngx_http_events_webhook_pool_add(ngx_conf_t *cf)
{
    ngx_url_t                      u;
    ngx_http_upstream_srv_conf_t  *uscf;

    ngx_memzero(&u, sizeof(ngx_url_t));

    ngx_str_set(&u.url, NGX_HTTP_EVENTS_WH_POOL);
    u.no_resolve = 1;

    uscf = ngx_http_upstream_add(cf, &u, 0);
    if (uscf == NULL) {
        return NGX_ERROR;
    }

    uscf->peer.init_upstream = ngx_http_events_webhook_pool_init_upstream;

    return NGX_OK;
}


/* events_webhook_keepalive N [timeout=T]; in http */

char *
ngx_http_events_webhook_pool_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_events_main_conf_t *emcf = conf;

    ngx_int_t   n;
    ngx_str_t  *value, s;

    if (emcf->wh_keepalive != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;

    n = ngx_atoi(value[1].data, value[1].len);
    if (n == NGX_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid number of connections \"%V\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    emcf->wh_keepalive = n;

    if (cf->args->nelts == 3) {
        if (ngx_strncmp(value[2].data, "timeout=", 8) != 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid parameter \"%V\"", &value[2]);
            return NGX_CONF_ERROR;
        }

        s.data = value[2].data + 8;
        s.len = value[2].len - 8;

        emcf->wh_keepalive_timeout = ngx_parse_time(&s, 0);

        if (emcf->wh_keepalive_timeout == (ngx_msec_t) NGX_ERROR
            || emcf->wh_keepalive_timeout == 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid timeout \"%V\"", &value[2]);
            return NGX_CONF_ERROR;
        }
    }

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_events_webhook_pool_init_upstream(ngx_conf_t *cf,
    ngx_http_upstream_srv_conf_t *us)
{
    ngx_uint_t                            i, n;
    ngx_pool_cleanup_t                   *cln;
    ngx_http_events_webhook_pool_t       *pool;
    ngx_http_events_main_conf_t          *emcf;
    ngx_http_events_webhook_pool_item_t  *items;

    pool = ngx_pcalloc(cf->pool, sizeof(ngx_http_events_webhook_pool_t));
    if (pool == NULL) {
        return NGX_ERROR;
    }

    emcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_events_module);

    pool->max_idle = emcf->wh_keepalive;
    pool->timeout = emcf->wh_keepalive_timeout;

    if (pool->max_idle == NGX_CONF_UNSET_UINT) {
        pool->max_idle = 32;
    }

    if (pool->timeout == NGX_CONF_UNSET_MSEC) {
        pool->timeout = 4000;
    }

    /* as many TLS sessions as idle connections, 16 at least */
    n = pool->max_idle + ngx_max(pool->max_idle, 16);

    items = ngx_pcalloc(cf->pool,
                        n * sizeof(ngx_http_events_webhook_pool_item_t));
    if (items == NULL) {
        return NGX_ERROR;
    }

    ngx_queue_init(&pool->idle);
    ngx_queue_init(&pool->free);
    ngx_queue_init(&pool->sessions);
    ngx_queue_init(&pool->free_sessions);

    for (i = 0; i < n; i++) {
        items[i].pool = pool;
        ngx_queue_insert_tail(i < pool->max_idle ? &pool->free
                                                 : &pool->free_sessions,
                              &items[i].queue);
    }

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        return NGX_ERROR;
    }

    cln->handler = ngx_http_events_webhook_pool_cleanup;
    cln->data = pool;

    us->peer.init = ngx_http_events_webhook_pool_init_peer;
    us->peer.data = pool;

    return NGX_OK;
}


/* a proxy_pass to our name from anything but a delivery is refused */

static ngx_int_t
ngx_http_events_webhook_pool_init_peer(ngx_http_request_t *r,
    ngx_http_upstream_srv_conf_t *us)
{
    size_t                                len;
    ngx_http_upstream_t                  *u;
    ngx_http_events_ctx_t                *ctx;
    ngx_http_events_webhook_job_t        *job;
    ngx_http_events_webhook_pool_peer_t  *pp;

    ctx = ngx_http_get_module_ctx(r, ngx_http_events_module);

    if (ctx == NULL || ctx->job == NULL || ctx->job->socklen == 0) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "\"%s\" is for webhook deliveries only",
                      NGX_HTTP_EVENTS_WH_POOL);
        return NGX_ERROR;
    }

    job = ctx->job;
    u = r->upstream;

    pp = ngx_pcalloc(r->pool, sizeof(ngx_http_events_webhook_pool_peer_t));
    if (pp == NULL) {
        return NGX_ERROR;
    }

    pp->pool = us->peer.data;
    pp->job = job;
    pp->upstream = u;

    pp->key.tag = u->conf;
    ngx_memcpy(&pp->key.sockaddr, &job->sockaddr, job->socklen);
    pp->key.socklen = job->socklen;
    pp->key.https = job->https;

    if (job->https) {
        len = ngx_min(job->server_name.len, NGX_HTTP_EVENTS_WH_POOL_NAME_LEN);
        pp->key.name_len = len;
        ngx_memcpy(pp->key.name, job->server_name.data, len);
    }

    u->peer.data = pp;
    u->peer.get = ngx_http_events_webhook_pool_get;
    u->peer.free = ngx_http_events_webhook_pool_free;
    u->peer.tries = 1;

#if (NGX_HTTP_SSL)
    /* SNI and the certificate check: the endpoint's name, not ours */
    u->ssl_name = job->server_name;
    u->peer.set_session = ngx_http_events_webhook_pool_set_session;
    u->peer.save_session = ngx_http_events_webhook_pool_save_session;
#endif

    return NGX_OK;
}


static ngx_int_t
ngx_http_events_webhook_pool_get(ngx_peer_connection_t *pc, void *data)
{
    ngx_http_events_webhook_pool_peer_t *pp = data;

    ngx_connection_t                     *c;
    ngx_http_events_webhook_pool_item_t  *item;

    pc->sockaddr = &pp->key.sockaddr.sockaddr;
    pc->socklen = pp->key.socklen;
    pc->name = &pp->job->peer_name;
    pc->cached = 0;
    pc->connection = NULL;

    item = ngx_http_events_webhook_pool_find(&pp->pool->idle, &pp->key);

    if (item == NULL) {
        return NGX_OK;
    }

    ngx_queue_remove(&item->queue);
    ngx_queue_insert_head(&pp->pool->free, &item->queue);

    c = item->connection;
    item->connection = NULL;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, pc->log, 0,
                   "events webhook: reusing connection %p", c);

    c->idle = 0;
    c->sent = 0;
    c->data = NULL;
    c->log = pc->log;
    c->read->log = pc->log;
    c->write->log = pc->log;
    c->pool->log = pc->log;

    if (c->read->timer_set) {
        ngx_del_timer(c->read);
    }

    pc->connection = c;
    pc->cached = 1;

    return NGX_DONE;
}


static void
ngx_http_events_webhook_pool_free(ngx_peer_connection_t *pc, void *data,
    ngx_uint_t state)
{
    ngx_http_events_webhook_pool_peer_t *pp = data;

    ngx_queue_t                          *q;
    ngx_connection_t                     *c;
    ngx_http_events_webhook_pool_t       *pool;
    ngx_http_events_webhook_pool_item_t  *item;

    c = pc->connection;
    pool = pp->pool;

    /* one address, one try; the proxy adds one back for a stale idle */
    if (pc->tries) {
        pc->tries--;
    }

    if ((state & NGX_PEER_FAILED) && c && c->ssl
        && !pp->upstream->request_sent
        && !c->read->timedout && !c->write->timedout)
    {
        /* connected, then the handshake or the certificate failed */
        pp->job->tls_failed = 1;
    }

    if (!ngx_http_events_webhook_pool_keep(pc, pp)) {
        return;
    }

    if (ngx_queue_empty(&pool->free)) {
        q = ngx_queue_last(&pool->idle);
        ngx_queue_remove(q);

        item = ngx_queue_data(q, ngx_http_events_webhook_pool_item_t, queue);
        ngx_http_events_webhook_pool_close(item->connection);

    } else {
        q = ngx_queue_head(&pool->free);
        ngx_queue_remove(q);

        item = ngx_queue_data(q, ngx_http_events_webhook_pool_item_t, queue);
    }

    ngx_queue_insert_head(&pool->idle, q);

    item->connection = c;
    item->key = pp->key;

    pc->connection = NULL;

    c->read->delayed = 0;
    ngx_add_timer(c->read, pool->timeout);

    if (c->write->timer_set) {
        ngx_del_timer(c->write);
    }

    c->write->handler = ngx_http_events_webhook_pool_dummy_handler;
    c->read->handler = ngx_http_events_webhook_pool_close_handler;

    c->data = item;
    c->idle = 1;
    c->log = ngx_cycle->log;
    c->read->log = ngx_cycle->log;
    c->write->log = ngx_cycle->log;
    c->pool->log = ngx_cycle->log;

    if (c->read->ready) {
        ngx_http_events_webhook_pool_close_handler(c->read);
    }
}


/* as the keepalive module: only a clean, complete exchange is kept */

static ngx_uint_t
ngx_http_events_webhook_pool_keep(ngx_peer_connection_t *pc,
    ngx_http_events_webhook_pool_peer_t *pp)
{
    ngx_connection_t     *c;
    ngx_http_upstream_t  *u;

    c = pc->connection;
    u = pp->upstream;

    if (pp->pool->max_idle == 0
        || c == NULL
        || c->read->eof
        || c->read->error
        || c->read->timedout
        || c->write->error
        || c->write->timedout
        || !u->keepalive
        || !u->request_body_sent
        || ngx_terminate
        || ngx_exiting)
    {
        return 0;
    }

    return ngx_handle_read_event(c->read, 0) == NGX_OK;
}


static ngx_http_events_webhook_pool_item_t *
ngx_http_events_webhook_pool_find(ngx_queue_t *queue,
    ngx_http_events_webhook_pool_key_t *key)
{
    ngx_queue_t                          *q;
    ngx_http_events_webhook_pool_item_t  *item;

    for (q = ngx_queue_head(queue);
         q != ngx_queue_sentinel(queue);
         q = ngx_queue_next(q))
    {
        item = ngx_queue_data(q, ngx_http_events_webhook_pool_item_t, queue);

        if (item->key.tag == key->tag
            && item->key.https == key->https
            && ngx_memn2cmp(item->key.name, key->name, item->key.name_len,
                            key->name_len) == 0
            && ngx_memn2cmp((u_char *) &item->key.sockaddr,
                            (u_char *) &key->sockaddr, item->key.socklen,
                            key->socklen) == 0)
        {
            return item;
        }
    }

    return NULL;
}


static void
ngx_http_events_webhook_pool_dummy_handler(ngx_event_t *ev)
{
}


/* an idle connection that becomes readable was closed or misbehaves */

static void
ngx_http_events_webhook_pool_close_handler(ngx_event_t *ev)
{
    int                                   n;
    char                                  buf[1];
    ngx_connection_t                     *c;
    ngx_http_events_webhook_pool_item_t  *item;

    c = ev->data;

    if (!c->close && !c->read->timedout) {
        n = recv(c->fd, buf, 1, MSG_PEEK);

        if (n == -1 && ngx_socket_errno == NGX_EAGAIN) {
            ev->ready = 0;

            if (ngx_handle_read_event(c->read, 0) == NGX_OK) {
                return;
            }
        }
    }

    item = c->data;

    ngx_http_events_webhook_pool_close(c);

    item->connection = NULL;
    ngx_queue_remove(&item->queue);
    ngx_queue_insert_head(&item->pool->free, &item->queue);
}


static void
ngx_http_events_webhook_pool_close(ngx_connection_t *c)
{
#if (NGX_HTTP_SSL)

    if (c->ssl) {
        c->ssl->no_wait_shutdown = 1;
        c->ssl->no_send_shutdown = 1;

        if (ngx_ssl_shutdown(c) == NGX_AGAIN) {
            c->ssl->handler = ngx_http_events_webhook_pool_close;
            return;
        }
    }

#endif

    ngx_destroy_pool(c->pool);
    ngx_close_connection(c);
}


/* the configuration goes: its sessions go with it */

static void
ngx_http_events_webhook_pool_cleanup(void *data)
{
    ngx_http_events_webhook_pool_t *pool = data;

    ngx_queue_t                          *q;
    ngx_http_events_webhook_pool_item_t  *item;

    for (q = ngx_queue_head(&pool->sessions);
         q != ngx_queue_sentinel(&pool->sessions);
         q = ngx_queue_next(q))
    {
        item = ngx_queue_data(q, ngx_http_events_webhook_pool_item_t, queue);

#if (NGX_HTTP_SSL)
        if (item->session) {
            ngx_ssl_free_session(item->session);
            item->session = NULL;
        }
#endif
    }
}


#if (NGX_HTTP_SSL)

static ngx_int_t
ngx_http_events_webhook_pool_set_session(ngx_peer_connection_t *pc,
    void *data)
{
    ngx_http_events_webhook_pool_peer_t *pp = data;

    ngx_http_events_webhook_pool_item_t  *item;

    item = ngx_http_events_webhook_pool_find(&pp->pool->sessions, &pp->key);

    if (item == NULL) {
        return NGX_OK;
    }

    ngx_queue_remove(&item->queue);
    ngx_queue_insert_head(&pp->pool->sessions, &item->queue);

    return ngx_ssl_set_session(pc->connection, item->session);
}


static void
ngx_http_events_webhook_pool_save_session(ngx_peer_connection_t *pc,
    void *data)
{
    ngx_http_events_webhook_pool_peer_t *pp = data;

    ngx_queue_t                          *q;
    ngx_ssl_session_t                    *session;
    ngx_http_events_webhook_pool_t       *pool;
    ngx_http_events_webhook_pool_item_t  *item;

    session = ngx_ssl_get_session(pc->connection);
    if (session == NULL) {
        return;
    }

    pool = pp->pool;

    item = ngx_http_events_webhook_pool_find(&pool->sessions, &pp->key);

    if (item) {
        q = &item->queue;

    } else if (!ngx_queue_empty(&pool->free_sessions)) {
        q = ngx_queue_head(&pool->free_sessions);
        item = ngx_queue_data(q, ngx_http_events_webhook_pool_item_t, queue);
        item->key = pp->key;

    } else {
        /* the least recently used one makes room */
        q = ngx_queue_last(&pool->sessions);
        item = ngx_queue_data(q, ngx_http_events_webhook_pool_item_t, queue);
        item->key = pp->key;
    }

    ngx_queue_remove(q);
    ngx_queue_insert_head(&pool->sessions, q);

    if (item->session) {
        ngx_ssl_free_session(item->session);
    }

    item->session = session;
}

#endif
