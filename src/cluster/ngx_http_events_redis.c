
/*
 * Copyright (C) ngx_http_events_module authors
 */


/*
 * A Redis client on nginx's own connections.  hiredis is the codec
 * only: redisFormatSdsCommandArgv() builds a command (its sdscatfmt()
 * costs less than the sprintf() per argument of redisFormatCommandArgv),
 * a redisReader parses the replies from the bytes read here.  The
 * reader's objects come from a pool of the connection's own, emptied
 * once a reply has been handled (handlers keep nothing of a reply), so
 * that a reply of a thousand stream entries is not ten thousand
 * malloc() and free() calls.  The socket, its timers and the
 * event loop are nginx's (ngx_event_connect_peer), so nothing blocks a
 * worker.  A host name is resolved by nginx's resolver (the one of
 * http{}) before each connect, so that a Redis whose name moves is
 * followed; without a resolver, when the configuration is read.
 *
 * Commands queued during one turn of the event loop go out in one write
 * (the flush is a posted event), and their replies come back in order:
 * a FIFO of callbacks matches them, so concurrent requests of a worker
 * share one round trip.  While a connection is being made, commands
 * wait; when it is lost, refused or silent for longer than the timeout,
 * every command in flight gets a NULL reply at once and the connection
 * is made again after a backoff that doubles up to 2 s, with jitter, so
 * that the workers of many nodes do not reconnect in step.  During the
 * backoff a command fails at once rather than wait.
 *
 * The connection is marked idle so that a graceful shutdown reaches its
 * read handler (ngx_close_idle_connections); it closes then when no
 * command waits for a reply, else when the last reply came, at the end
 * of that turn of the event loop: what the replies' handlers queued
 * meanwhile (the appends that waited for a script) goes first, and a
 * retry the owner has on a timer holds it too.  A request the worker
 * still answers after that (it was being read at the quit) connects
 * again; a connection lost while nginx quits is not made again.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_event_connect.h>

#include "ngx_http_events_redis.h"


#define NGX_HTTP_EVENTS_REDIS_BACKOFF_MIN  100
#define NGX_HTTP_EVENTS_REDIS_BACKOFF_MAX  2000

/* the replies' pool: its blocks, and above what it is made anew */
#define NGX_HTTP_EVENTS_REDIS_REPLY_POOL   16384
#define NGX_HTTP_EVENTS_REDIS_REPLY_KEEP   (256 * 1024)

/* the reader's buffer kept when empty (hiredis's default is 16k) */
#define NGX_HTTP_EVENTS_REDIS_READER_BUF   (1024 * 1024)


static ngx_int_t ngx_http_events_redis_valid_name(ngx_str_t *host);
static ngx_int_t ngx_http_events_redis_reader(ngx_http_events_redis_t *rd);
static void ngx_http_events_redis_reply_done(ngx_http_events_redis_t *rd);
static void *ngx_http_events_redis_reply_object(const redisReadTask *task,
    int type, size_t size);
static void *ngx_http_events_redis_reply_string(const redisReadTask *task,
    char *str, size_t len);
static void *ngx_http_events_redis_reply_array(const redisReadTask *task,
    int elements);
static void *ngx_http_events_redis_reply_integer(const redisReadTask *task,
    long long value);
static void *ngx_http_events_redis_reply_nil(const redisReadTask *task);
static void ngx_http_events_redis_reply_free(void *reply);
static void ngx_http_events_redis_resolve(ngx_http_events_redis_t *rd);
static void ngx_http_events_redis_resolved(ngx_resolver_ctx_t *ctx);
static void ngx_http_events_redis_peer(ngx_http_events_redis_t *rd,
    ngx_addr_t *addr, ngx_msec_t timeout);
static ngx_int_t ngx_http_events_redis_hello(ngx_http_events_redis_t *rd);
static void ngx_http_events_redis_hello_done(void *data, redisReply *reply,
    ngx_http_events_redis_cmd_t *cmd);
static ngx_int_t ngx_http_events_redis_queue(ngx_http_events_redis_t *rd,
    int argc, const char **argv, const size_t *argvlen,
    ngx_http_events_redis_pt handler, void *data,
    ngx_http_events_redis_cmd_t **cmdp);
static ngx_int_t ngx_http_events_redis_out(ngx_http_events_redis_t *rd,
    char *buf, size_t len);
static ngx_int_t ngx_http_events_redis_target(ngx_http_events_redis_t *rd,
    redisReply *reply, size_t skip, struct sockaddr_in *sin);
static ngx_int_t ngx_http_events_redis_moved(ngx_http_events_redis_t *rd,
    redisReply *reply);
static ngx_int_t ngx_http_events_redis_ask(ngx_http_events_redis_t *rd,
    redisReply *reply, ngx_http_events_redis_cmd_t *cmd);
static void ngx_http_events_redis_aim(ngx_http_events_redis_t *rd,
    struct sockaddr_in *sin);
static void ngx_http_events_redis_switch(ngx_http_events_redis_t *rd);
static void ngx_http_events_redis_flush(ngx_event_t *ev);
static void ngx_http_events_redis_write(ngx_event_t *wev);
static void ngx_http_events_redis_read(ngx_event_t *rev);
static ngx_int_t ngx_http_events_redis_test_connect(ngx_connection_t *c);
#if (NGX_SSL)
static ngx_int_t ngx_http_events_redis_tls_start(ngx_http_events_redis_t *rd,
    ngx_connection_t *c);
static void ngx_http_events_redis_tls_done(ngx_connection_t *c);
#endif
static void ngx_http_events_redis_close_connection(ngx_connection_t *c);
static void ngx_http_events_redis_fail(ngx_http_events_redis_t *rd,
    const char *why);
static void ngx_http_events_redis_retry(ngx_event_t *ev);
static void ngx_http_events_redis_quit(ngx_event_t *ev);
static void ngx_http_events_redis_rest(ngx_http_events_redis_t *rd);
static void ngx_http_events_redis_timer(ngx_http_events_redis_t *rd);
static void ngx_http_events_redis_drop(ngx_http_events_redis_t *rd);


/* redis://[user:password@]host[:port][/db] */

char *
ngx_http_events_redis_parse_url(ngx_conf_t *cf, ngx_str_t *value,
    ngx_http_events_redis_conf_t *conf)
{
    u_char     *p, *last, *at, *colon, *slash;
    ngx_int_t   db;
    ngx_url_t   u;

    p = value->data;
    last = p + value->len;

    conf->tls = 0;

    if (value->len > 9 && ngx_strncasecmp(p, (u_char *) "rediss://", 9) == 0)
    {
#if (NGX_SSL)
        conf->tls = 1;
        p += 9;
#else
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "events_cluster: \"rediss://\" needs nginx "
                           "built with SSL, in \"%V\"", value);
        return NGX_CONF_ERROR;
#endif

    } else if (value->len >= 8
               && ngx_strncasecmp(p, (u_char *) "redis://", 8) == 0)
    {
        p += 8;

    } else {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "events_cluster: the URL must start with "
                           "\"redis://\" or \"rediss://\", not \"%V\"",
                           value);
        return NGX_CONF_ERROR;
    }

    slash = ngx_strlchr(p, last, '/');
    db = -1;

    if (slash) {
        if (slash + 1 == last) {
            db = -1;

        } else {
            db = ngx_atoi(slash + 1, last - slash - 1);
            if (db == NGX_ERROR) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "events_cluster: the database after "
                                   "\"/\" must be a number, in \"%V\"",
                                   value);
                return NGX_CONF_ERROR;
            }
        }

        last = slash;
    }

    at = NULL;

    for (colon = p; colon < last; colon++) {
        if (*colon == '@') {
            at = colon;
        }
    }

    ngx_str_null(&conf->user);
    ngx_str_null(&conf->password);

    if (at) {
        colon = ngx_strlchr(p, at, ':');

        if (colon) {
            conf->user.data = p;
            conf->user.len = colon - p;
            conf->password.data = colon + 1;
            conf->password.len = at - colon - 1;

        } else {
            conf->password.data = p;
            conf->password.len = at - p;
        }

        if (conf->password.len == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "events_cluster: an empty password in the "
                               "URL");
            return NGX_CONF_ERROR;
        }

        p = at + 1;
    }

    if (p == last) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "events_cluster: no host in \"%V\"", value);
        return NGX_CONF_ERROR;
    }

    ngx_memzero(&u, sizeof(ngx_url_t));

    u.url.data = p;
    u.url.len = last - p;
    u.default_port = 6379;
    u.no_resolve = 1;

    if (ngx_parse_url(cf->pool, &u) != NGX_OK) {
        if (u.err) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "events_cluster: %s in \"%V\"", u.err,
                               &u.url);
        }

        return NGX_CONF_ERROR;
    }

    conf->named = 0;

    if (u.naddrs == 0
        && ngx_inet_addr(u.host.data, u.host.len) != INADDR_NONE)
    {
        /* an IPv4 address: no DNS is asked */
        if (ngx_inet_resolve_host(cf->pool, &u) != NGX_OK) {
            return NGX_CONF_ERROR;
        }

    } else if (u.naddrs == 0) {

        /*
         * A name: resolved by the resolver of http{} at each connect, or
         * without one when the configuration is read (postconfiguration
         * knows which), so it must at least be a name
         */

        if (ngx_http_events_redis_valid_name(&u.host) != NGX_OK) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "events_cluster: invalid host name in "
                               "\"%V\"", &u.url);
            return NGX_CONF_ERROR;
        }

        conf->named = 1;
        conf->conf_file = cf->conf_file->file.name;
        conf->conf_line = cf->conf_file->line;
    }

    conf->host = u.host;
    conf->hostport = u.url;
    conf->port = u.port;
    conf->addrs = u.addrs;
    conf->naddrs = u.naddrs;
    conf->db = db;

    /* the URL as logs and the status show it: without the password */

    conf->url.data = ngx_pnalloc(cf->pool, value->len + 17);
    if (conf->url.data == NULL) {
        return NGX_CONF_ERROR;
    }

    p = conf->tls ? ngx_cpymem(conf->url.data, "rediss://", 9)
                  : ngx_cpymem(conf->url.data, "redis://", 8);

    if (conf->user.len) {
        p = ngx_sprintf(p, "%V:***@", &conf->user);

    } else if (conf->password.len) {
        p = ngx_cpymem(p, "***@", 4);
    }

    p = ngx_sprintf(p, "%V:%d", &conf->host, (int) conf->port);

    if (db >= 0) {
        p = ngx_sprintf(p, "/%i", db);
    }

    conf->url.len = p - conf->url.data;

    return NGX_CONF_OK;
}


/* letters, digits, "-" and "_" in dot-separated labels of 1-63 */

static ngx_int_t
ngx_http_events_redis_valid_name(ngx_str_t *host)
{
    u_char      ch;
    size_t      label;
    ngx_uint_t  i;

    if (host->len == 0 || host->len > 253) {
        return NGX_DECLINED;
    }

    label = 0;

    for (i = 0; i < host->len; i++) {
        ch = host->data[i];

        if (ch == '.') {
            if (label == 0) {
                return NGX_DECLINED;
            }

            label = 0;
            continue;
        }

        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z')
              || (ch >= '0' && ch <= '9') || ch == '-' || ch == '_'))
        {
            return NGX_DECLINED;
        }

        if (++label > 63) {
            return NGX_DECLINED;
        }
    }

    return NGX_OK;
}


/*
 * Every directive is read: a name is resolved at run time when http{}
 * has a resolver (as proxy_pass with variables), else now, as before.
 */

ngx_int_t
ngx_http_events_redis_resolver(ngx_conf_t *cf,
    ngx_http_events_redis_conf_t *conf, ngx_resolver_t *resolver)
{
    ngx_url_t  u;

    if (!conf->named) {
        return NGX_OK;
    }

    if (resolver && resolver->connections.nelts) {
        conf->resolver = resolver;
        return NGX_OK;
    }

    ngx_memzero(&u, sizeof(ngx_url_t));

    u.url = conf->hostport;
    u.host = conf->host;
    u.port = conf->port;

    if (ngx_inet_resolve_host(cf->pool, &u) != NGX_OK || u.naddrs == 0) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "events_cluster: host not found in \"%V\" (without "
                      "a \"resolver\" in http{}, the name is resolved "
                      "when the configuration is read) in %V:%ui",
                      &conf->hostport, &conf->conf_file, conf->conf_line);
        return NGX_ERROR;
    }

    conf->addrs = u.addrs;
    conf->naddrs = u.naddrs;

    return NGX_OK;
}


/*
 * rediss://: nginx's own SSL; the certificate is checked against the
 * trusted certificates, and its name against the host of the URL, which
 * also goes as SNI
 */

char *
ngx_http_events_redis_tls(ngx_conf_t *cf, ngx_http_events_redis_conf_t *conf,
    ngx_str_t *trusted)
{
#if (NGX_SSL)
    ngx_pool_cleanup_t  *cln;

    if (!conf->tls) {
        return NGX_CONF_OK;
    }

    conf->ssl = ngx_pcalloc(cf->pool, sizeof(ngx_ssl_t));
    if (conf->ssl == NULL) {
        return NGX_CONF_ERROR;
    }

    conf->ssl->log = cf->log;

    if (ngx_ssl_create(conf->ssl, NGX_SSL_TLSv1_2 | NGX_SSL_TLSv1_3, NULL)
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        ngx_ssl_cleanup_ctx(conf->ssl);
        return NGX_CONF_ERROR;
    }

    cln->handler = ngx_ssl_cleanup_ctx;
    cln->data = conf->ssl;

    if (ngx_ssl_trusted_certificate(cf, conf->ssl, trusted, 9) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    if (ngx_inet_addr(conf->host.data, conf->host.len) == INADDR_NONE
        && ngx_strlchr(conf->host.data, conf->host.data + conf->host.len,
                       ':')
           == NULL)
    {
        conf->sni = ngx_pnalloc(cf->pool, conf->host.len + 1);
        if (conf->sni == NULL) {
            return NGX_CONF_ERROR;
        }

        (void) ngx_cpystrn(conf->sni, conf->host.data, conf->host.len + 1);
    }

    return NGX_CONF_OK;
#else
    return NGX_CONF_OK;
#endif
}


ngx_int_t
ngx_http_events_redis_init(ngx_http_events_redis_t *rd,
    ngx_http_events_redis_conf_t *conf, ngx_log_t *log)
{
    ngx_memzero(rd, sizeof(ngx_http_events_redis_t));

    rd->conf = conf;
    rd->log = log;

    if (ngx_http_events_redis_reader(rd) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_queue_init(&rd->pending);
    ngx_queue_init(&rd->redo);
    ngx_queue_init(&rd->free);

    rd->flush.handler = ngx_http_events_redis_flush;
    rd->flush.data = rd;
    rd->flush.log = log;

    rd->retry.handler = ngx_http_events_redis_retry;
    rd->retry.data = rd;
    rd->retry.log = log;
    rd->retry.cancelable = 1;

    rd->quit.handler = ngx_http_events_redis_quit;
    rd->quit.data = rd;
    rd->quit.log = log;

    rd->backoff = NGX_HTTP_EVENTS_REDIS_BACKOFF_MIN;

    return NGX_OK;
}


/*
 * Every connection to Redis is made here: to where a Redis Cluster
 * sent us, else to the configured host, in turn over its addresses
 */

void
ngx_http_events_redis_connect(ngx_http_events_redis_t *rd)
{
    ngx_addr_t  *addr;

    /* also while nginx quits: for the requests it still answers */
    if (rd->state != NGX_HTTP_EVENTS_REDIS_IDLE) {
        return;
    }

    rd->connects++;

    if (rd->moved.sockaddr) {
        addr = &rd->moved;

    } else if (rd->conf->resolver) {
        ngx_http_events_redis_resolve(rd);
        return;

    } else {
        addr = &rd->conf->addrs[(rd->connects - 1) % rd->conf->naddrs];
    }

    ngx_http_events_redis_peer(rd, addr, rd->conf->connect_timeout);
}


/*
 * The name is asked of nginx's resolver (its cache keeps an answer for
 * its valid= time); commands wait meanwhile as during a connect, and
 * connect_timeout covers the two
 */

static void
ngx_http_events_redis_resolve(ngx_http_events_redis_t *rd)
{
    ngx_resolver_ctx_t  *ctx, temp;

    rd->state = NGX_HTTP_EVENTS_REDIS_CONNECTING;
    rd->resolve_start = ngx_current_msec;

    ngx_memzero(&temp, sizeof(ngx_resolver_ctx_t));
    temp.name = rd->conf->host;

    ctx = ngx_resolve_start(rd->conf->resolver, &temp);

    if (ctx == NULL || ctx == NGX_NO_RESOLVER) {
        ngx_http_events_redis_fail(rd, "cannot start resolving");
        return;
    }

    ctx->name = rd->conf->host;
    ctx->handler = ngx_http_events_redis_resolved;
    ctx->data = rd;
    ctx->timeout = rd->conf->connect_timeout;
    ctx->cancelable = 1;

    rd->resolving = ctx;

    /* the handler may run before this returns: an answer in the cache */

    if (ngx_resolve_name(ctx) != NGX_OK) {
        /* the context is freed by ngx_resolve_name on failure */
        rd->resolving = NULL;
        ngx_http_events_redis_fail(rd, "cannot resolve");
    }
}


static void
ngx_http_events_redis_resolved(ngx_resolver_ctx_t *ctx)
{
    u_char                   *p;
    ngx_msec_t                spent, timeout;
    ngx_resolver_addr_t      *addr;
    ngx_http_events_redis_t  *rd;
    u_char                    why[128];

    rd = ctx->data;
    rd->resolving = NULL;

    if (ngx_exiting && rd->npending == 0) {
        /* no new connection while nginx quits, unless a command waits */
        ngx_resolve_name_done(ctx);
        rd->state = NGX_HTTP_EVENTS_REDIS_CLOSED;
        ngx_http_events_redis_fail(rd, "nginx quits");
        return;
    }

    if (ctx->state || ctx->naddrs == 0) {
        p = ngx_snprintf(why, sizeof(why) - 1,
                         "\"%V\" could not be resolved (%i: %s)",
                         &ctx->name, ctx->state,
                         ctx->state ? ngx_resolver_strerror(ctx->state)
                                    : "no address");
        *p = '\0';

        ngx_resolve_name_done(ctx);

        if (rd->errors) {
            (void) ngx_atomic_fetch_add(rd->errors, 1);
        }

        ngx_http_events_redis_fail(rd, (char *) why);
        return;
    }

    /* in turn over the answer's addresses, as over configured ones */

    addr = &ctx->addrs[(rd->connects - 1) % ctx->naddrs];

    ngx_memcpy(&rd->peer_sa, addr->sockaddr, addr->socklen);
    rd->peer.sockaddr = &rd->peer_sa.sockaddr;
    rd->peer.socklen = addr->socklen;
    ngx_inet_set_port(rd->peer.sockaddr, rd->conf->port);

    rd->peer.name.data = rd->peer_name;
    rd->peer.name.len = ngx_sock_ntop(rd->peer.sockaddr, rd->peer.socklen,
                                      rd->peer_name, NGX_SOCKADDR_STRLEN, 1);

    ngx_resolve_name_done(ctx);

    spent = ngx_current_msec - rd->resolve_start;
    timeout = rd->conf->connect_timeout;
    timeout = spent < timeout ? timeout - spent : 1;

    ngx_http_events_redis_peer(rd, &rd->peer, timeout);
}


static void
ngx_http_events_redis_peer(ngx_http_events_redis_t *rd, ngx_addr_t *addr,
    ngx_msec_t timeout)
{
    ngx_int_t                     rc;
    ngx_queue_t                   rest, *q;
    ngx_connection_t             *c;
    ngx_http_events_redis_cmd_t  *cmd;

    ngx_memzero(&rd->pc, sizeof(ngx_peer_connection_t));

    rd->pc.sockaddr = addr->sockaddr;
    rd->pc.socklen = addr->socklen;
    rd->pc.name = &addr->name;
    rd->pc.get = ngx_event_get_peer;
    rd->pc.log = rd->log;
    rd->pc.log_error = NGX_ERROR_ERR;

    rc = ngx_event_connect_peer(&rd->pc);

    if (rc == NGX_ERROR || rc == NGX_BUSY || rc == NGX_DECLINED) {
        rd->state = NGX_HTTP_EVENTS_REDIS_CONNECTING;
        ngx_http_events_redis_fail(rd, "connect() failed");
        return;
    }

    c = rd->pc.connection;
    c->data = rd;
    c->log = rd->log;
    c->read->log = rd->log;
    c->write->log = rd->log;
    c->read->handler = ngx_http_events_redis_read;
    c->write->handler = ngx_http_events_redis_write;
    c->idle = 1;

    rd->state = NGX_HTTP_EVENTS_REDIS_CONNECTING;

    /*
     * AUTH and SELECT go first, then what waits: commands a MOVED sent
     * here, and those queued while the connection changed
     */

    ngx_queue_init(&rest);
    ngx_queue_add(&rest, &rd->pending);
    ngx_queue_init(&rd->pending);
    rd->npending = 0;
    rd->nwritten = 0;

    if (ngx_http_events_redis_hello(rd) != NGX_OK) {
        ngx_queue_add(&rd->pending, &rest);
        ngx_http_events_redis_fail(rd, "no memory");
        return;
    }

    while (!ngx_queue_empty(&rest)) {
        q = ngx_queue_head(&rest);
        ngx_queue_remove(q);
        cmd = ngx_queue_data(q, ngx_http_events_redis_cmd_t, queue);

        cmd->written = 0;
        ngx_queue_insert_tail(&rd->pending, q);
        rd->npending++;

        if (ngx_http_events_redis_out(rd, cmd->buf, cmd->len) != NGX_OK) {
            ngx_queue_add(&rd->pending, &rest);
            ngx_http_events_redis_fail(rd, "no memory");
            return;
        }
    }

    if (rc == NGX_AGAIN) {
        ngx_add_timer(c->write, timeout);
        return;
    }

    ngx_http_events_redis_write(c->write);
}


static ngx_int_t
ngx_http_events_redis_hello(ngx_http_events_redis_t *rd)
{
    int                            argc;
    u_char                         db[NGX_INT_T_LEN];
    size_t                         argvlen[3];
    const char                    *argv[3];
    ngx_http_events_redis_conf_t  *conf;

    conf = rd->conf;

    /* what was queued while no connection existed is written after */
    rd->out_pos = 0;
    rd->out_len = 0;

    if (conf->password.len) {
        argc = 0;
        argv[argc] = "AUTH";
        argvlen[argc++] = 4;

        if (conf->user.len) {
            argv[argc] = (const char *) conf->user.data;
            argvlen[argc++] = conf->user.len;
        }

        argv[argc] = (const char *) conf->password.data;
        argvlen[argc++] = conf->password.len;

        if (ngx_http_events_redis_queue(rd, argc, argv, argvlen,
                                        ngx_http_events_redis_hello_done,
                                        rd, NULL)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    if (conf->db > 0) {
        argv[0] = "SELECT";
        argvlen[0] = 6;
        argv[1] = (const char *) db;
        argvlen[1] = ngx_sprintf(db, "%i", conf->db) - db;

        if (ngx_http_events_redis_queue(rd, 2, argv, argvlen,
                                        ngx_http_events_redis_hello_done,
                                        rd, NULL)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    /* a PING marks the end of the hello: ready when it answers */

    argv[0] = "PING";
    argvlen[0] = 4;

    return ngx_http_events_redis_queue(rd, 1, argv, argvlen,
                                       ngx_http_events_redis_hello_done,
                                       rd, NULL);
}


static void
ngx_http_events_redis_hello_done(void *data, redisReply *reply,
    ngx_http_events_redis_cmd_t *cmd)
{
    ngx_http_events_redis_t  *rd = data;

    if (reply == NULL) {
        return;
    }

    if (reply->type == REDIS_REPLY_ERROR) {
        ngx_log_error(NGX_LOG_ERR, rd->log, 0,
                      "events_cluster: redis %V refused the connection's "
                      "set-up: %*s", &rd->conf->url,
                      (size_t) ngx_min(reply->len, 200), reply->str);
        rd->broken = 1;
        return;
    }

    if (reply->type == REDIS_REPLY_STATUS && reply->len == 4
        && ngx_strncmp(reply->str, "PONG", 4) == 0
        && rd->state == NGX_HTTP_EVENTS_REDIS_CONNECTING)
    {
        rd->state = NGX_HTTP_EVENTS_REDIS_READY;
        rd->backoff = NGX_HTTP_EVENTS_REDIS_BACKOFF_MIN;

        ngx_log_error(NGX_LOG_INFO, rd->log, 0,
                      "events_cluster: connected to redis %V",
                      &rd->conf->url);

        if (rd->ready) {
            rd->ready(rd);
        }
    }
}


/* whether a command sent now would be queued (NGX_OK) or refused */

ngx_int_t
ngx_http_events_redis_usable(ngx_http_events_redis_t *rd)
{
    if (rd->state == NGX_HTTP_EVENTS_REDIS_IDLE) {
        ngx_http_events_redis_connect(rd);
    }

    if (rd->state != NGX_HTTP_EVENTS_REDIS_CONNECTING
        && rd->state != NGX_HTTP_EVENTS_REDIS_READY)
    {
        return NGX_DECLINED;
    }

    return NGX_OK;
}


/*
 * A command the owner will send on a timer (a retry): a graceful
 * shutdown keeps the connection for it, as for one waiting for a reply
 */

void
ngx_http_events_redis_hold(ngx_http_events_redis_t *rd)
{
    rd->holds++;
}


void
ngx_http_events_redis_release(ngx_http_events_redis_t *rd)
{
    rd->holds--;

    if (ngx_exiting && rd->holds == 0 && rd->npending == 0
        && !rd->quit.posted)
    {
        ngx_post_event(&rd->quit, &ngx_posted_events);
    }
}


/*
 * Queue a command.  NULL: it cannot be sent now (the connection is in
 * its backoff, or nginx quits); the handler is not called then.
 */

ngx_http_events_redis_cmd_t *
ngx_http_events_redis_send(ngx_http_events_redis_t *rd, int argc,
    const char **argv, const size_t *argvlen,
    ngx_http_events_redis_pt handler, void *data)
{
    ngx_http_events_redis_cmd_t  *cmd;

    if (rd->state == NGX_HTTP_EVENTS_REDIS_IDLE) {
        ngx_http_events_redis_connect(rd);
    }

    if (rd->state != NGX_HTTP_EVENTS_REDIS_CONNECTING
        && rd->state != NGX_HTTP_EVENTS_REDIS_READY)
    {
        return NULL;
    }

    if (ngx_http_events_redis_queue(rd, argc, argv, argvlen, handler, data,
                                    &cmd)
        != NGX_OK)
    {
        return NULL;
    }

    if (rd->state == NGX_HTTP_EVENTS_REDIS_READY && !rd->flush.posted) {
        ngx_post_event(&rd->flush, &ngx_posted_events);
    }

    return cmd;
}


static ngx_int_t
ngx_http_events_redis_queue(ngx_http_events_redis_t *rd, int argc,
    const char **argv, const size_t *argvlen,
    ngx_http_events_redis_pt handler, void *data,
    ngx_http_events_redis_cmd_t **cmdp)
{
    int                           len;
    char                         *s;
    ngx_queue_t                  *q;
    ngx_http_events_redis_cmd_t  *cmd;

    len = redisFormatSdsCommandArgv(&s, argc, argv, argvlen);
    if (len < 0) {
        return NGX_ERROR;
    }

    if (!ngx_queue_empty(&rd->free)) {
        q = ngx_queue_head(&rd->free);
        ngx_queue_remove(q);
        cmd = ngx_queue_data(q, ngx_http_events_redis_cmd_t, queue);

    } else {
        cmd = ngx_alloc(sizeof(ngx_http_events_redis_cmd_t), rd->log);
        if (cmd == NULL) {
            redisFreeSdsCommand(s);
            return NGX_ERROR;
        }
    }

    if (ngx_http_events_redis_out(rd, s, len) != NGX_OK) {
        redisFreeSdsCommand(s);
        ngx_free(cmd);
        return NGX_ERROR;
    }

    /* kept until the reply: a MOVED sends it again elsewhere */
    cmd->buf = s;
    cmd->len = len;
    cmd->handler = handler;
    cmd->data = data;
    cmd->written = 0;

    ngx_queue_insert_tail(&rd->pending, &cmd->queue);
    rd->npending++;

    if (cmdp) {
        *cmdp = cmd;
    }

    return NGX_OK;
}


/* bytes to write, in a worker's own buffer, kept for its life */

static ngx_int_t
ngx_http_events_redis_out(ngx_http_events_redis_t *rd, char *buf,
    size_t len)
{
    u_char  *out;
    size_t   size;

    if (rd->out_len + len > rd->out_size) {
        size = ngx_max(rd->out_size * 2, rd->out_len + len);
        size = ngx_max(size, 16384);

        out = ngx_alloc(size, rd->log);
        if (out == NULL) {
            return NGX_ERROR;
        }

        if (rd->out) {
            ngx_memcpy(out, rd->out + rd->out_pos,
                       rd->out_len - rd->out_pos);
            ngx_free(rd->out);
        }

        rd->out_len -= rd->out_pos;
        rd->out_pos = 0;
        rd->out = out;
        rd->out_size = size;
    }

    ngx_memcpy(rd->out + rd->out_len, buf, len);
    rd->out_len += len;

    return NGX_OK;
}


static void
ngx_http_events_redis_flush(ngx_event_t *ev)
{
    ngx_http_events_redis_t  *rd = ev->data;

    if (rd->state == NGX_HTTP_EVENTS_REDIS_READY) {
        ngx_http_events_redis_write(rd->pc.connection->write);
    }
}


static void
ngx_http_events_redis_write(ngx_event_t *wev)
{
    ssize_t                       n;
#if (NGX_SSL)
    ngx_int_t                     rc;
#endif
    ngx_uint_t                    i, unwritten;
    ngx_queue_t                  *q;
    ngx_connection_t             *c;
    ngx_http_events_redis_t      *rd;
    ngx_http_events_redis_cmd_t  *cmd;

    c = wev->data;
    rd = c->data;

    if (wev->timedout) {
        ngx_http_events_redis_fail(rd, "connect timed out");
        return;
    }

    if (wev->timer_set) {
        ngx_del_timer(wev);
    }

    if (rd->state == NGX_HTTP_EVENTS_REDIS_CONNECTING
        && ngx_http_events_redis_test_connect(c) != NGX_OK)
    {
        ngx_http_events_redis_fail(rd, "connect() failed");
        return;
    }

#if (NGX_SSL)

    if (rd->conf->tls && c->ssl == NULL) {
        rc = ngx_http_events_redis_tls_start(rd, c);

        if (rc != NGX_OK) {
            /* NGX_AGAIN: the handshake goes on; NGX_DONE: it went on */
            if (rc == NGX_ERROR) {
                ngx_http_events_redis_fail(rd, "TLS failed");
            }

            return;
        }
    }

#endif

    while (rd->out_pos < rd->out_len) {
        n = c->send(c, rd->out + rd->out_pos, rd->out_len - rd->out_pos);

        if (n == NGX_ERROR) {
            ngx_http_events_redis_fail(rd, "send() failed");
            return;
        }

        if (n == NGX_AGAIN) {
            break;
        }

        rd->out_pos += n;
    }

    if (rd->out_pos == rd->out_len) {
        rd->out_pos = 0;
        rd->out_len = 0;
    }

    /* every command whose bytes all went may have reached Redis */

    if (rd->out_len == 0 && rd->nwritten < rd->npending) {
        unwritten = rd->npending - rd->nwritten;
        q = ngx_queue_last(&rd->pending);

        for (i = 0; i < unwritten; i++) {
            cmd = ngx_queue_data(q, ngx_http_events_redis_cmd_t, queue);
            cmd->written = 1;
            q = ngx_queue_prev(q);
        }

        rd->nwritten = rd->npending;
    }

    if (ngx_handle_write_event(wev, 0) != NGX_OK) {
        ngx_http_events_redis_fail(rd, "epoll failed");
        return;
    }

    ngx_http_events_redis_timer(rd);
}


static void
ngx_http_events_redis_read(ngx_event_t *rev)
{
    int                           rc;
    void                         *reply;
    ssize_t                       n;
    ngx_queue_t                  *q;
    ngx_connection_t             *c;
    ngx_http_events_redis_t      *rd;
    ngx_http_events_redis_cmd_t  *cmd;
    u_char                        buf[16384];

    c = rev->data;
    rd = c->data;

    if (c->close) {
        /* a graceful shutdown: go now if nothing waits for an answer */
        c->close = 0;

        if (rd->abandon) {
            ngx_http_events_redis_close(rd);
            return;
        }

        if (rd->npending == 0 && rd->holds == 0) {
            ngx_http_events_redis_rest(rd);
            return;
        }
    }

    if (rev->timedout) {
        ngx_http_events_redis_fail(rd, "no answer in time");
        return;
    }

    if (rd->state == NGX_HTTP_EVENTS_REDIS_CONNECTING
        && ngx_http_events_redis_test_connect(c) != NGX_OK)
    {
        ngx_http_events_redis_fail(rd, "connect() failed");
        return;
    }

    for ( ;; ) {
        n = c->recv(c, buf, sizeof(buf));

        if (n == NGX_AGAIN) {
            break;
        }

        if (n == 0) {
            ngx_http_events_redis_fail(rd, "the connection was closed");
            return;
        }

        if (n == NGX_ERROR) {
            ngx_http_events_redis_fail(rd, "recv() failed");
            return;
        }

        if (redisReaderFeed(rd->reader, (char *) buf, n) != REDIS_OK) {
            ngx_http_events_redis_fail(rd, "no memory for the reply");
            return;
        }

        for ( ;; ) {
            reply = NULL;
            rc = redisReaderGetReply(rd->reader, &reply);

            if (rc != REDIS_OK) {
                ngx_http_events_redis_fail(rd, rd->reader->errstr);
                return;
            }

            if (reply == NULL) {
                break;
            }

            if (ngx_queue_empty(&rd->pending)) {
                ngx_http_events_redis_reply_done(rd);
                ngx_http_events_redis_fail(rd, "an answer nobody asked for");
                return;
            }

            q = ngx_queue_head(&rd->pending);
            ngx_queue_remove(q);
            rd->npending--;

            if (rd->nwritten) {
                rd->nwritten--;
            }

            cmd = ngx_queue_data(q, ngx_http_events_redis_cmd_t, queue);

            if (ngx_http_events_redis_moved(rd, (redisReply *) reply)
                == NGX_OK)
            {
                /* once every answer due here came: the other node */
                ngx_queue_insert_tail(&rd->redo, q);
                ngx_http_events_redis_reply_done(rd);
                continue;
            }

            if (rd->parent == NULL
                && ngx_http_events_redis_ask(rd, (redisReply *) reply, cmd)
                   == NGX_OK)
            {
                /* the command went on to the importing node */
                ngx_http_events_redis_reply_done(rd);

                if (rd->state != NGX_HTTP_EVENTS_REDIS_READY
                    && rd->state != NGX_HTTP_EVENTS_REDIS_CONNECTING)
                {
                    return;
                }

                continue;
            }

            if (((redisReply *) reply)->type != REDIS_REPLY_ERROR) {
                rd->moves = 0;
            }

            if (cmd->handler) {
                cmd->handler(cmd->data, reply, cmd);
            }

            ngx_http_events_redis_reply_done(rd);
            redisFreeSdsCommand(cmd->buf);
            cmd->buf = NULL;
            ngx_queue_insert_head(&rd->free, q);

            if (rd->broken) {
                ngx_http_events_redis_fail(rd, "the set-up failed");
                return;
            }

            if (rd->state != NGX_HTTP_EVENTS_REDIS_READY
                && rd->state != NGX_HTTP_EVENTS_REDIS_CONNECTING)
            {
                /* a handler closed it */
                return;
            }
        }
    }

    if (rd->redirect && rd->nwritten == 0) {
        ngx_http_events_redis_switch(rd);
        return;
    }

    if (ngx_exiting && rd->npending == 0 && !rd->quit.posted) {
        /*
         * Not at once: a reply's handler may have posted more for this
         * turn (the appends that waited for this script), and they go
         * on this connection, not answered 503 by a closed one
         */
        ngx_post_event(&rd->quit, &ngx_posted_events);
    }

    if (ngx_handle_read_event(rev, 0) != NGX_OK) {
        ngx_http_events_redis_fail(rd, "epoll failed");
        return;
    }

    ngx_http_events_redis_timer(rd);
}


/*
 * "-MOVED <slot> <ip>:<port>": a Redis Cluster node says the keys are on
 * another.  Every key of one log shares one hash tag, so they all are:
 * the connection goes there, and the commands with it, in their order.
 * Only IPv4 addresses; a node that keeps sending us on is an error.
 */

static ngx_int_t
ngx_http_events_redis_moved(ngx_http_events_redis_t *rd, redisReply *reply)
{
    struct sockaddr_in  sin;

    if (!ngx_http_events_redis_is_error(reply, "MOVED ")
        || rd->moves >= 5)
    {
        return NGX_DECLINED;
    }

    if (ngx_http_events_redis_target(rd, reply, 6, &sin) != NGX_OK) {
        return NGX_DECLINED;
    }

    if (!rd->redirect) {
        ngx_http_events_redis_aim(rd, &sin);
        rd->redirect = 1;
        rd->moves++;
        rd->redirects++;

        ngx_log_error(NGX_LOG_INFO, rd->log, 0,
                      "events_cluster: redis %V: the keys moved to %V",
                      &rd->conf->url, &rd->moved.name);
    }

    return NGX_OK;
}


/*
 * "-ASK <slot> <ip>:<port>": the log's slot is migrating and the keys of
 * this command are already on the importing node.  The command goes
 * there once, behind ASKING, on a connection kept for this; the slot
 * map (where this connection goes) does not change, since the next
 * command may still be served here.  A busy ASK connection to another
 * node, or nginx quitting: the handler gets the ASK answer as it is.
 */

static ngx_int_t
ngx_http_events_redis_ask(ngx_http_events_redis_t *rd, redisReply *reply,
    ngx_http_events_redis_cmd_t *cmd)
{
    size_t                    argvlen[1];
    const char               *argv[1];
    struct sockaddr_in        sin;
    ngx_http_events_redis_t  *ask;

    if (!ngx_http_events_redis_is_error(reply, "ASK ") || ngx_exiting) {
        return NGX_DECLINED;
    }

    if (ngx_http_events_redis_target(rd, reply, 4, &sin) != NGX_OK) {
        return NGX_DECLINED;
    }

    ask = rd->ask;

    if (ask == NULL) {
        ask = ngx_alloc(sizeof(ngx_http_events_redis_t), rd->log);
        if (ask == NULL) {
            return NGX_DECLINED;
        }

        ask->state = NGX_HTTP_EVENTS_REDIS_CLOSED;
        rd->ask = ask;
    }

    if (ask->state != NGX_HTTP_EVENTS_REDIS_CLOSED
        && ask->state != NGX_HTTP_EVENTS_REDIS_IDLE
        && (ask->moved_sin.sin_addr.s_addr != sin.sin_addr.s_addr
            || ask->moved_sin.sin_port != sin.sin_port))
    {
        if (ask->npending) {
            return NGX_DECLINED;
        }

        /* another importing node: the idle connection goes */
        ngx_http_events_redis_close(ask);
    }

    if (ask->state == NGX_HTTP_EVENTS_REDIS_CLOSED) {
        if (ngx_http_events_redis_init(ask, rd->conf, rd->log) != NGX_OK) {
            ngx_free(ask);
            rd->ask = NULL;
            return NGX_DECLINED;
        }

        ask->parent = rd;
    }

    ask->extra = rd->extra;
    ask->abandon = rd->abandon;

    if (ask->state == NGX_HTTP_EVENTS_REDIS_IDLE) {
        ngx_http_events_redis_aim(ask, &sin);
    }

    argv[0] = "ASKING";
    argvlen[0] = 6;

    if (ngx_http_events_redis_queue(ask, 1, argv, argvlen, NULL, NULL, NULL)
        != NGX_OK
        || ngx_http_events_redis_out(ask, cmd->buf, cmd->len) != NGX_OK)
    {
        return NGX_DECLINED;
    }

    /* the command itself moves over, with its formatted bytes */
    cmd->written = 0;
    ngx_queue_insert_tail(&ask->pending, &cmd->queue);
    ask->npending++;

    rd->redirects++;

    if (rd->asks) {
        (void) ngx_atomic_fetch_add(rd->asks, 1);
    }

    ngx_log_debug2(NGX_LOG_DEBUG_EVENT, rd->log, 0,
                   "events_cluster: redis %V: ASK, to %V",
                   &rd->conf->url, &ask->moved.name);

    if (ask->state == NGX_HTTP_EVENTS_REDIS_IDLE) {
        ngx_http_events_redis_connect(ask);

    } else if (ask->state == NGX_HTTP_EVENTS_REDIS_READY
               && !ask->flush.posted)
    {
        ngx_post_event(&ask->flush, &ngx_posted_events);
    }

    return NGX_OK;
}


/* "<slot> <ip>:<port>" after the error's first word; IPv4 only */

static ngx_int_t
ngx_http_events_redis_target(ngx_http_events_redis_t *rd, redisReply *reply,
    size_t skip, struct sockaddr_in *sin)
{
    u_char     *p, *last, *colon;
    in_addr_t   inaddr;
    ngx_int_t   port;

    p = (u_char *) reply->str + skip;
    last = (u_char *) reply->str + reply->len;

    p = ngx_strlchr(p, last, ' ');
    if (p == NULL) {
        return NGX_DECLINED;
    }

    p++;

    for (colon = last - 1; colon > p && *colon != ':'; colon--) {
        /* void */
    }

    if (colon <= p) {
        return NGX_DECLINED;
    }

    inaddr = ngx_inet_addr(p, colon - p);
    port = ngx_atoi(colon + 1, last - colon - 1);

    if (inaddr == INADDR_NONE || port < 1 || port > 65535) {
        ngx_log_error(NGX_LOG_ERR, rd->log, 0,
                      "events_cluster: redis %V: cannot follow \"%*s\"",
                      &rd->conf->url, (size_t) ngx_min(reply->len, 200),
                      reply->str);
        return NGX_DECLINED;
    }

    ngx_memzero(sin, sizeof(struct sockaddr_in));
    sin->sin_family = AF_INET;
    sin->sin_addr.s_addr = inaddr;
    sin->sin_port = htons((in_port_t) port);

    return NGX_OK;
}


/* where the next connection goes */

static void
ngx_http_events_redis_aim(ngx_http_events_redis_t *rd,
    struct sockaddr_in *sin)
{
    rd->moved_sin = *sin;
    rd->moved.sockaddr = (struct sockaddr *) &rd->moved_sin;
    rd->moved.socklen = sizeof(struct sockaddr_in);
    rd->moved.name.data = rd->moved_name;
    rd->moved.name.len = ngx_sock_ntop(rd->moved.sockaddr,
                                       rd->moved.socklen, rd->moved_name,
                                       NGX_SOCKADDR_STRLEN, 1);
}


/* every answer due on this connection came: the redirected go first */

static void
ngx_http_events_redis_switch(ngx_http_events_redis_t *rd)
{
    ngx_queue_t  rest, *q;

    rd->redirect = 0;

    ngx_http_events_redis_close_connection(rd->pc.connection);
    rd->pc.connection = NULL;

    if (rd->flush.posted) {
        ngx_delete_posted_event(&rd->flush);
    }

    if (ngx_http_events_redis_reader(rd) != NGX_OK) {
        ngx_http_events_redis_fail(rd, "no memory");
        return;
    }

    ngx_queue_init(&rest);
    ngx_queue_add(&rest, &rd->redo);
    ngx_queue_init(&rd->redo);
    ngx_queue_add(&rest, &rd->pending);
    ngx_queue_init(&rd->pending);
    ngx_queue_add(&rd->pending, &rest);

    rd->npending = 0;

    for (q = ngx_queue_head(&rd->pending);
         q != ngx_queue_sentinel(&rd->pending);
         q = ngx_queue_next(q))
    {
        rd->npending++;
    }

    rd->state = NGX_HTTP_EVENTS_REDIS_IDLE;

    ngx_http_events_redis_connect(rd);
}


/* replies are due: no progress for the timeout means a dead connection */

static void
ngx_http_events_redis_timer(ngx_http_events_redis_t *rd)
{
    ngx_event_t  *rev;

    rev = rd->pc.connection->read;

    if (rd->nwritten) {
        ngx_add_timer(rev, rd->conf->timeout + rd->extra);

    } else if (rev->timer_set) {
        ngx_del_timer(rev);
    }
}


static ngx_int_t
ngx_http_events_redis_test_connect(ngx_connection_t *c)
{
    int        err;
    socklen_t  len;

    err = 0;
    len = sizeof(int);

    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, (void *) &err, &len) == -1)
    {
        err = ngx_socket_errno;
    }

    if (err) {
        c->log->action = "connecting to redis";
        (void) ngx_connection_error(c, err, "connect() failed");
        c->log->action = NULL;
        return NGX_ERROR;
    }

    return NGX_OK;
}


#if (NGX_SSL)

static ngx_int_t
ngx_http_events_redis_tls_start(ngx_http_events_redis_t *rd,
    ngx_connection_t *c)
{
    ngx_int_t  rc;

    /* the SSL connection lives in the connection's pool */
    c->pool = ngx_create_pool(1024, rd->log);
    if (c->pool == NULL) {
        return NGX_ERROR;
    }

    if (ngx_ssl_create_connection(rd->conf->ssl, c,
                                  NGX_SSL_BUFFER | NGX_SSL_CLIENT)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (rd->conf->sni
        && SSL_set_tlsext_host_name(c->ssl->connection,
                                    (char *) rd->conf->sni)
           == 0)
    {
        ngx_ssl_error(NGX_LOG_ERR, c->log, 0,
                      "SSL_set_tlsext_host_name(\"%s\") failed",
                      rd->conf->sni);
        return NGX_ERROR;
    }

    rc = ngx_ssl_handshake(c);

    if (rc == NGX_AGAIN) {
        if (!c->write->timer_set) {
            ngx_add_timer(c->write, rd->conf->connect_timeout);
        }

        c->ssl->handler = ngx_http_events_redis_tls_done;
        return NGX_AGAIN;
    }

    ngx_http_events_redis_tls_done(c);

    return NGX_DONE;
}


/* the handshake ended: a certificate we trust, for the URL's host */

static void
ngx_http_events_redis_tls_done(ngx_connection_t *c)
{
    long                      rc;
    ngx_http_events_redis_t  *rd;

    rd = c->data;

    if (c->write->timer_set) {
        ngx_del_timer(c->write);
    }

    if (!c->ssl->handshaked) {
        ngx_http_events_redis_fail(rd, "TLS handshake failed");
        return;
    }

    rc = SSL_get_verify_result(c->ssl->connection);

    if (rc != X509_V_OK) {
        ngx_log_error(NGX_LOG_ERR, rd->log, 0,
                      "events_cluster: redis %V: certificate verify "
                      "error: (%l:%s)", &rd->conf->url, rc,
                      X509_verify_cert_error_string(rc));
        ngx_http_events_redis_fail(rd, "the certificate is not trusted");
        return;
    }

    if (ngx_ssl_check_host(c, &rd->conf->host) != NGX_OK) {
        ngx_log_error(NGX_LOG_ERR, rd->log, 0,
                      "events_cluster: redis %V: the certificate does not "
                      "match \"%V\"", &rd->conf->url, &rd->conf->host);
        ngx_http_events_redis_fail(rd, "the certificate is not the host's");
        return;
    }

    c->read->handler = ngx_http_events_redis_read;
    c->write->handler = ngx_http_events_redis_write;

    ngx_http_events_redis_write(c->write);
}

#endif


static void
ngx_http_events_redis_close_connection(ngx_connection_t *c)
{
    ngx_pool_t  *pool;

#if (NGX_SSL)

    if (c->ssl) {
        c->ssl->no_wait_shutdown = 1;
        (void) ngx_ssl_shutdown(c);
    }

#endif

    pool = c->pool;

    ngx_close_connection(c);

    if (pool) {
        ngx_destroy_pool(pool);
    }
}


/* the connection is gone: every waiting command learns it, then retry */

static void
ngx_http_events_redis_fail(ngx_http_events_redis_t *rd, const char *why)
{
    ngx_msec_t  delay;

    if ((rd->state == NGX_HTTP_EVENTS_REDIS_READY
         || rd->state == NGX_HTTP_EVENTS_REDIS_CONNECTING)
        && rd->pc.connection)
    {
        /* the address too: a name may have resolved to several */
        ngx_log_error(NGX_LOG_ERR, rd->log, 0,
                      "events_cluster: redis %V: %s (%V)", &rd->conf->url,
                      why, rd->pc.name);

    } else if (rd->state == NGX_HTTP_EVENTS_REDIS_READY
               || rd->state == NGX_HTTP_EVENTS_REDIS_CONNECTING)
    {
        ngx_log_error(NGX_LOG_ERR, rd->log, 0,
                      "events_cluster: redis %V: %s", &rd->conf->url, why);
    }

    rd->failures++;

    /* the next connection asks the configured address where to go */
    rd->moved.sockaddr = NULL;
    rd->redirect = 0;
    rd->moves = 0;

    rd->error.len = ngx_cpystrn(rd->errbuf, (u_char *) why,
                                sizeof(rd->errbuf)) - rd->errbuf;
    rd->error.data = rd->errbuf;

    ngx_http_events_redis_drop(rd);

    if (ngx_exiting || ngx_terminate) {
        rd->state = NGX_HTTP_EVENTS_REDIS_CLOSED;
        return;
    }

    if (rd->parent) {
        /* an ASK connection: made again by the next ASK, if any */
        rd->state = NGX_HTTP_EVENTS_REDIS_IDLE;
        return;
    }

    rd->state = NGX_HTTP_EVENTS_REDIS_BACKOFF;

    /* a random half to a whole of the backoff */
    delay = rd->backoff / 2 + (ngx_random() % (rd->backoff / 2 + 1));
    rd->backoff = ngx_min(rd->backoff * 2, NGX_HTTP_EVENTS_REDIS_BACKOFF_MAX);

    ngx_add_timer(&rd->retry, delay);

    if (rd->lost) {
        rd->lost(rd);
    }
}


static void
ngx_http_events_redis_retry(ngx_event_t *ev)
{
    ngx_http_events_redis_t  *rd = ev->data;

    if (rd->state != NGX_HTTP_EVENTS_REDIS_BACKOFF) {
        return;
    }

    rd->state = NGX_HTTP_EVENTS_REDIS_IDLE;

    if (!ngx_exiting) {
        ngx_http_events_redis_connect(rd);
    }
}


/* a graceful shutdown, at the end of a turn: nothing more came, close */

static void
ngx_http_events_redis_quit(ngx_event_t *ev)
{
    ngx_http_events_redis_t  *rd = ev->data;

    if (rd->npending == 0 && rd->holds == 0
        && (rd->state == NGX_HTTP_EVENTS_REDIS_READY
            || rd->state == NGX_HTTP_EVENTS_REDIS_CONNECTING))
    {
        if (rd->abandon) {
            ngx_http_events_redis_close(rd);

        } else {
            ngx_http_events_redis_rest(rd);
        }
    }
}


/*
 * Closed while nginx quits, nothing due: a request the worker still
 * answers may connect again (one that was being read at the quit)
 */

static void
ngx_http_events_redis_rest(ngx_http_events_redis_t *rd)
{
    if (rd->quit.posted) {
        ngx_delete_posted_event(&rd->quit);
    }

    ngx_http_events_redis_drop(rd);

    rd->state = NGX_HTTP_EVENTS_REDIS_IDLE;
}


/* close the socket, answer every waiting command with NULL */

static void
ngx_http_events_redis_drop(ngx_http_events_redis_t *rd)
{
    ngx_queue_t                  *q;
    ngx_http_events_redis_cmd_t  *cmd;

    if (rd->resolving) {
        ngx_resolve_name_done(rd->resolving);
        rd->resolving = NULL;
    }

    if (rd->pc.connection) {
        ngx_http_events_redis_close_connection(rd->pc.connection);
        rd->pc.connection = NULL;
    }

    if (rd->flush.posted) {
        ngx_delete_posted_event(&rd->flush);
    }

    rd->out_pos = 0;
    rd->out_len = 0;
    rd->broken = 0;

    /* a reply cut in the middle must not prefix the next connection's */
    if (rd->reader) {
        (void) ngx_http_events_redis_reader(rd);
    }

    rd->state = NGX_HTTP_EVENTS_REDIS_CLOSED;

    /* the redirected were written, and not answered where they went */
    ngx_queue_add(&rd->redo, &rd->pending);
    ngx_queue_init(&rd->pending);
    ngx_queue_add(&rd->pending, &rd->redo);
    ngx_queue_init(&rd->redo);

    while (!ngx_queue_empty(&rd->pending)) {
        q = ngx_queue_head(&rd->pending);
        ngx_queue_remove(q);

        cmd = ngx_queue_data(q, ngx_http_events_redis_cmd_t, queue);

        if (cmd->handler) {
            cmd->handler(cmd->data, NULL, cmd);
        }

        redisFreeSdsCommand(cmd->buf);
        cmd->buf = NULL;
        ngx_queue_insert_head(&rd->free, q);
    }

    rd->npending = 0;
    rd->nwritten = 0;
}


void
ngx_http_events_redis_close(ngx_http_events_redis_t *rd)
{
    ngx_queue_t  *q;

    if (rd->retry.timer_set) {
        ngx_del_timer(&rd->retry);
    }

    if (rd->quit.posted) {
        ngx_delete_posted_event(&rd->quit);
    }

    if (rd->ask) {
        ngx_http_events_redis_close(rd->ask);
        ngx_free(rd->ask);
        rd->ask = NULL;
    }

    ngx_http_events_redis_drop(rd);

    while (!ngx_queue_empty(&rd->free)) {
        q = ngx_queue_head(&rd->free);
        ngx_queue_remove(q);
        ngx_free(ngx_queue_data(q, ngx_http_events_redis_cmd_t, queue));
    }

    if (rd->out) {
        ngx_free(rd->out);
        rd->out = NULL;
        rd->out_size = 0;
    }

    if (rd->reader) {
        redisReaderFree(rd->reader);
        rd->reader = NULL;
    }

    if (rd->replies) {
        ngx_destroy_pool(rd->replies);
        rd->replies = NULL;
    }

    rd->state = NGX_HTTP_EVENTS_REDIS_CLOSED;
}


/*
 * The reader, made anew for each connection (a reply cut in the middle
 * must not prefix the next one's).  Its objects are in the pool of the
 * connection, made once: a handler may close the connection while it
 * still reads its reply, whose objects stay until the reply is done.
 */

static redisReplyObjectFunctions  ngx_http_events_redis_reply_fns = {
    ngx_http_events_redis_reply_string,
    ngx_http_events_redis_reply_array,
    ngx_http_events_redis_reply_integer,
    ngx_http_events_redis_reply_nil,
    ngx_http_events_redis_reply_free
};


static ngx_int_t
ngx_http_events_redis_reader(ngx_http_events_redis_t *rd)
{
    redisReader  *reader;

    if (rd->replies == NULL) {
        rd->replies = ngx_create_pool(NGX_HTTP_EVENTS_REDIS_REPLY_POOL,
                                      rd->log);
        if (rd->replies == NULL) {
            return NGX_ERROR;
        }
    }

    reader = redisReaderCreateWithFunctions(&ngx_http_events_redis_reply_fns);
    if (reader == NULL) {
        return NGX_ERROR;
    }

    /* a tail's replies run to hundreds of kilobytes: no free() each */
    reader->maxbuf = NGX_HTTP_EVENTS_REDIS_READER_BUF;
    reader->privdata = rd;

    if (rd->reader) {
        redisReaderFree(rd->reader);
    }

    rd->reader = reader;

    return NGX_OK;
}


/*
 * A reply was handled: its objects go.  The reader holds none of the
 * next reply yet (it returns a reply once whole, and is not asked for
 * the next before this point).  A pool that grew large for a big reply
 * is made anew rather than kept at that size.
 */

static void
ngx_http_events_redis_reply_done(ngx_http_events_redis_t *rd)
{
    ngx_pool_t  *pool;

    if (rd->replies == NULL) {
        /* closed for good (ngx_http_events_redis_close()): nothing kept */
        return;
    }

    if (rd->reply_size > NGX_HTTP_EVENTS_REDIS_REPLY_KEEP) {
        pool = ngx_create_pool(NGX_HTTP_EVENTS_REDIS_REPLY_POOL, rd->log);

        if (pool) {
            ngx_destroy_pool(rd->replies);
            rd->replies = pool;
            rd->reply_size = 0;
            return;
        }
    }

    ngx_reset_pool(rd->replies);
    rd->reply_size = 0;
}


/*
 * The type is the object's, not always the task's: "*-1" (an XREAD
 * BLOCK that timed out) is a nil made by an array's task
 */

static void *
ngx_http_events_redis_reply_object(const redisReadTask *task, int type,
    size_t size)
{
    ngx_http_events_redis_t  *rd = task->privdata;

    redisReply  *r, *parent;

    r = ngx_pcalloc(rd->replies, sizeof(redisReply) + size);
    if (r == NULL) {
        return NULL;
    }

    rd->reply_size += sizeof(redisReply) + size;

    r->type = type;

    if (task->parent) {
        parent = task->parent->obj;
        parent->element[task->idx] = r;
    }

    return r;
}


static void *
ngx_http_events_redis_reply_string(const redisReadTask *task, char *str,
    size_t len)
{
    redisReply  *r;

    r = ngx_http_events_redis_reply_object(task, task->type, len + 1);
    if (r == NULL) {
        return NULL;
    }

    /* the bytes follow the object; calloc'ed, so NUL-terminated */
    r->str = (char *) (r + 1);
    r->len = len;
    ngx_memcpy(r->str, str, len);

    return r;
}


static void *
ngx_http_events_redis_reply_array(const redisReadTask *task, int elements)
{
    redisReply  *r;

    r = ngx_http_events_redis_reply_object(task, REDIS_REPLY_ARRAY,
                                           elements * sizeof(redisReply *));
    if (r == NULL) {
        return NULL;
    }

    if (elements > 0) {
        r->element = (redisReply **) (r + 1);
    }

    r->elements = elements;

    return r;
}


static void *
ngx_http_events_redis_reply_integer(const redisReadTask *task,
    long long value)
{
    redisReply  *r;

    r = ngx_http_events_redis_reply_object(task, REDIS_REPLY_INTEGER, 0);
    if (r == NULL) {
        return NULL;
    }

    r->integer = value;

    return r;
}


static void *
ngx_http_events_redis_reply_nil(const redisReadTask *task)
{
    return ngx_http_events_redis_reply_object(task, REDIS_REPLY_NIL, 0);
}


/* the reader drops a reply it could not finish: the pool keeps it */

static void
ngx_http_events_redis_reply_free(void *reply)
{
}


ngx_uint_t
ngx_http_events_redis_is_error(redisReply *reply, const char *prefix)
{
    size_t  len;

    len = ngx_strlen(prefix);

    return reply->type == REDIS_REPLY_ERROR && reply->len >= len
           && ngx_strncmp(reply->str, prefix, len) == 0;
}
