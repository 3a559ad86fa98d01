
/*
 * Copyright (C) ngx_http_events_module authors
 */


/*
 * One webhook attempt, sent the way nginx sends anything: a subrequest
 * to the internal location whose proxy_pass uses $events_webhook_url.
 * There is no client, so the subrequest hangs off a fake request on a
 * fake connection (fd -1) built from the configuration of the server
 * that holds the events_webhooks location.
 *
 * Before an API-created endpoint is called, its host is resolved with
 * that location's resolver and every address is checked against the
 * private ranges; the request then goes to the vetted address, so a
 * second resolution cannot rebind it (Host and SNI keep the name).
 * An nginx.conf endpoint's host is resolved the same way, unchecked,
 * when the location has a resolver, so that it too goes through our
 * balancer (reused connections, E_TLS); without one the proxy resolves
 * it on connections of its own.
 *
 * An endpoint with "verify": "cloudevents" is first sent the CloudEvents
 * abuse-protection handshake by the same path: an OPTIONS with
 * WebHook-Request-Origin, whose answer must allow that origin (and may
 * set a rate); the dispatcher holds its deliveries until it does.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <jansson.h>


#include "ngx_http_events_module.h"
#include "ngx_http_events_webhook_shm.h"
#include "ngx_http_events_hmac.h"


#define NGX_HTTP_EVENTS_WH_VERSION  "0.4"


static ngx_int_t ngx_http_events_webhook_delivery_vet(
    ngx_http_events_webhook_job_t *job);
static ngx_int_t ngx_http_events_webhook_delivery_resolve(
    ngx_http_events_webhook_job_t *job, ngx_str_t *host);
static ngx_int_t ngx_http_events_webhook_delivery_cloudevent(
    ngx_http_events_webhook_job_t *job);
static ngx_int_t ngx_http_events_webhook_delivery_ce_headers(
    ngx_http_events_webhook_job_t *job, ngx_http_request_t *r);
static void ngx_http_events_webhook_delivery_resolved(ngx_resolver_ctx_t *ctx);
static ngx_int_t ngx_http_events_webhook_delivery_pin(
    ngx_http_events_webhook_job_t *job, struct sockaddr *sa, socklen_t socklen);
static ngx_connection_t *ngx_http_events_webhook_delivery_connection(
    ngx_log_t *log);
static void ngx_http_events_webhook_delivery_free_connection(
    ngx_connection_t *c);
static ngx_int_t ngx_http_events_webhook_delivery_request(
    ngx_http_events_webhook_job_t *job);
static ngx_int_t ngx_http_events_webhook_delivery_headers(
    ngx_http_events_webhook_job_t *job, ngx_http_request_t *r);
static ngx_int_t ngx_http_events_webhook_delivery_header(ngx_http_request_t *r,
    char *name, ngx_str_t *key, ngx_str_t *value);
static ngx_int_t ngx_http_events_webhook_delivery_verify_headers(
    ngx_http_events_webhook_job_t *job, ngx_http_request_t *r);
static ngx_int_t ngx_http_events_webhook_delivery_own_headers(
    ngx_http_events_webhook_job_t *job, ngx_http_request_t *r);
static void ngx_http_events_webhook_delivery_allowed(
    ngx_http_events_webhook_job_t *job, ngx_http_request_t *r);
static ngx_int_t ngx_http_events_webhook_delivery_answered(
    ngx_http_request_t *r, void *data, ngx_int_t rc);
static void ngx_http_events_webhook_delivery_finished(ngx_http_request_t *r);
static void ngx_http_events_webhook_delivery_fail(
    ngx_http_events_webhook_job_t *job, ngx_uint_t error, const char *fmt, ...);
static ngx_int_t ngx_http_events_webhook_delivery_body_filter(
    ngx_http_request_t *r, ngx_chain_t *in);
static ngx_int_t ngx_http_events_webhook_delivery_variable(
    ngx_http_request_t *r, ngx_http_variable_value_t *v, uintptr_t data);
static ngx_uint_t ngx_http_events_webhook_delivery_v4_blocked(in_addr_t a);


static ngx_http_output_body_filter_pt  ngx_http_next_body_filter;


const char  *ngx_http_events_webhook_formats[] = {
    "envelope", "cloudevents", "cloudevents-structured", NULL
};


const char  *ngx_http_events_webhook_errors[] = {
    "", "E_DNS", "E_CONNECT", "E_TLS", "E_TIMEOUT", "E_HTTP", "E_REDIRECT",
    "E_BLOCKED_IP", "E_EVICTED", "E_ABORTED", "E_INTERNAL"
};


static ngx_http_variable_t  ngx_http_events_webhook_vars[] = {

    { ngx_string("events_webhook_url"), NULL,
      ngx_http_events_webhook_delivery_variable,
      offsetof(ngx_http_events_webhook_job_t, pinned),
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("events_webhook_host"), NULL,
      ngx_http_events_webhook_delivery_variable,
      offsetof(ngx_http_events_webhook_job_t, host),
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("events_webhook_server_name"), NULL,
      ngx_http_events_webhook_delivery_variable,
      offsetof(ngx_http_events_webhook_job_t, server_name),
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    ngx_http_null_variable
};


/* whatever happens, job->done() is called once, now or later */

void
ngx_http_events_webhook_delivery_send(ngx_http_events_webhook_job_t *job)
{
    job->started = ngx_current_msec;
    job->started_ms = ngx_http_events_webhook_now();
    job->error = NGX_HTTP_EVENTS_E_INTERNAL;

    if (job->excerpt_size) {
        job->excerpt = ngx_pnalloc(job->pool, job->excerpt_size);
        if (job->excerpt == NULL) {
            ngx_http_events_webhook_delivery_fail(job,
                                                  NGX_HTTP_EVENTS_E_INTERNAL,
                                                  "out of memory");
            return;
        }
    }

    if (job->format != NGX_HTTP_EVENTS_WH_ENVELOPE && !job->handler
        && !job->verify
        && ngx_http_events_webhook_delivery_cloudevent(job) != NGX_OK)
    {
        ngx_http_events_webhook_delivery_fail(job, NGX_HTTP_EVENTS_E_INTERNAL,
                                              "cannot map the event to a "
                                              "CloudEvent");
        return;
    }

    if (ngx_http_events_webhook_delivery_vet(job) != NGX_OK) {
        ngx_http_events_webhook_delivery_fail(job, NGX_HTTP_EVENTS_E_INTERNAL,
                                              "cannot create the subrequest");
    }
}


/*
 * CloudEvents: the attributes from the envelope; in structured mode the
 * body becomes the event, which is what is signed
 */

static ngx_int_t
ngx_http_events_webhook_delivery_cloudevent(ngx_http_events_webhook_job_t *job)
{
    u_char  *p, *body;

    if (ngx_http_events_ce_parse(&job->body, &job->ce) != NGX_OK) {
        return NGX_ERROR;
    }

    if (job->format == NGX_HTTP_EVENTS_WH_CE_BINARY) {
        return NGX_OK;
    }

    body = ngx_pnalloc(job->pool, NGX_HTTP_EVENTS_CE_HEAD + job->body.len
                                  + 1);
    if (body == NULL) {
        return NGX_ERROR;
    }

    p = ngx_http_events_ce_head(body, &job->ce);
    p = ngx_cpymem(p, job->body.data, job->body.len);
    *p++ = '}';

    job->body.data = body;
    job->body.len = p - body;

    return NGX_OK;
}


/* the URL's parts, and for API endpoints the address it may go to */

static ngx_int_t
ngx_http_events_webhook_delivery_vet(ngx_http_events_webhook_job_t *job)
{
    ngx_uint_t                 literal;
    u_char                    *p;
    size_t                     skip;
    ngx_url_t                  u;
    ngx_str_t                  host;
    ngx_addr_t                 addr;

    if (job->handler) {
        /* a local handler: a location of this nginx, no address */
        ngx_str_null(&job->pinned);
        ngx_str_null(&job->host);
        return ngx_http_events_webhook_delivery_request(job);
    }

    ngx_memzero(&u, sizeof(ngx_url_t));

    if (job->url.len > 8
        && ngx_strncasecmp(job->url.data, (u_char *) "https://", 8) == 0)
    {
        skip = 8;
        u.default_port = 443;

    } else if (job->url.len > 7
               && ngx_strncasecmp(job->url.data, (u_char *) "http://", 7)
                  == 0)
    {
        skip = 7;
        u.default_port = 80;

    } else {
        ngx_http_events_webhook_delivery_fail(job, NGX_HTTP_EVENTS_E_INTERNAL,
                                              "not an http(s) URL");
        return NGX_OK;
    }

    u.url.data = job->url.data + skip;
    u.url.len = job->url.len - skip;
    u.uri_part = 1;
    u.no_resolve = 1;

    if (ngx_parse_url(job->pool, &u) != NGX_OK || u.host.len == 0) {
        ngx_http_events_webhook_delivery_fail(job, NGX_HTTP_EVENTS_E_INTERNAL,
                                              "cannot parse the URL: %s",
                                              u.err ? u.err : "no host");
        return NGX_OK;
    }

    host = u.host;

    if (host.len > 2 && host.data[0] == '[') {
        host.data++;
        host.len -= 2;
    }

    job->server_name = host;

    /* Host: the name, and the port when it is not the scheme's */
    if (u.no_port || u.port == u.default_port) {
        job->host = u.host;

    } else {
        p = ngx_pnalloc(job->pool, u.host.len + sizeof(":65535"));
        if (p == NULL) {
            return NGX_ERROR;
        }

        job->host.data = p;
        job->host.len = ngx_sprintf(p, "%V:%d", &u.host, (int) u.port) - p;
    }

    job->port = u.no_port ? u.default_port : u.port;
    job->uri = u.uri;
    job->https = (skip == 8);

    literal = (ngx_parse_addr(job->pool, &addr, host.data, host.len)
               == NGX_OK);

    if (!job->vet) {
        /*
         * nginx.conf endpoints are trusted like a proxy_pass: a literal
         * address is pinned as it is, a name once resolved
         */

        if (!literal) {
            return ngx_http_events_webhook_delivery_resolve(job, &host);
        }

        if (ngx_http_events_webhook_delivery_pin(job, addr.sockaddr,
                                                 addr.socklen)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        return ngx_http_events_webhook_delivery_request(job);
    }

    if (job->whcf->https_only && !job->https) {
        ngx_http_events_webhook_delivery_fail(job, NGX_HTTP_EVENTS_E_BLOCKED_IP,
                                              "plain http refused by "
                                              "events_webhook_https_only");
        return NGX_OK;
    }

    if (literal
        && ngx_http_events_webhook_delivery_addr_blocked(addr.sockaddr,
                                                         job->whcf))
    {
        ngx_http_events_webhook_delivery_fail(job, NGX_HTTP_EVENTS_E_BLOCKED_IP,
                                              "%V is a private address (see "
                                              "events_webhook_allow_private "
                                              "and events_webhook_allow)",
                                              &host);
        return NGX_OK;
    }

    if (literal) {
        if (ngx_http_events_webhook_delivery_pin(job, addr.sockaddr,
                                                 addr.socklen)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        return ngx_http_events_webhook_delivery_request(job);
    }

    return ngx_http_events_webhook_delivery_resolve(job, &host);
}


/*
 * A host name, resolved with the resolver of the events_webhooks
 * location.  Without one, an nginx.conf endpoint's URL goes to the
 * proxy as it is (it resolves the name itself, as any proxy_pass with
 * variables does), and an API endpoint cannot be vetted: E_DNS.
 */

static ngx_int_t
ngx_http_events_webhook_delivery_resolve(ngx_http_events_webhook_job_t *job,
    ngx_str_t *host)
{
    ngx_resolver_ctx_t        *rctx, temp;
    ngx_http_conf_ctx_t       *hctx;
    ngx_http_core_loc_conf_t  *clcf;

    hctx = job->ctx;

    clcf = hctx->loc_conf[ngx_http_core_module.ctx_index];

    ngx_memzero(&temp, sizeof(ngx_resolver_ctx_t));
    temp.name = *host;

    rctx = ngx_resolve_start(clcf->resolver, &temp);

    if (rctx == NULL) {
        return NGX_ERROR;
    }

    if (rctx == NGX_NO_RESOLVER) {

        if (!job->vet) {
            job->pinned = job->url;
            return ngx_http_events_webhook_delivery_request(job);
        }

        ngx_http_events_webhook_delivery_fail(job, NGX_HTTP_EVENTS_E_DNS,
                                              "no resolver defined to resolve "
                                              "%V (add \"resolver\" beside "
                                              "events_webhooks)", host);
        return NGX_OK;
    }

    rctx->name = *host;
    rctx->handler = ngx_http_events_webhook_delivery_resolved;
    rctx->data = job;
    rctx->timeout = clcf->resolver_timeout;

    if (ngx_resolve_name(rctx) != NGX_OK) {
        /* the context is freed by ngx_resolve_name on failure */
        ngx_http_events_webhook_delivery_fail(job, NGX_HTTP_EVENTS_E_DNS,
                                              "cannot resolve %V", host);
        return NGX_OK;
    }

    return NGX_OK;
}


static void
ngx_http_events_webhook_delivery_resolved(ngx_resolver_ctx_t *ctx)
{
    struct sockaddr                *sa;
    ngx_uint_t                      i;
    ngx_http_events_webhook_job_t  *job;

    job = ctx->data;

    if (ctx->state) {
        ngx_http_events_webhook_delivery_fail(job, NGX_HTTP_EVENTS_E_DNS,
                                              "%V could not be resolved (%i: "
                                              "%s)", &ctx->name, ctx->state,
                                              ngx_resolver_strerror(
                                                  ctx->state));
        ngx_resolve_name_done(ctx);
        return;
    }

    /* nginx.conf endpoints are not checked: the operator's own */
    for (i = 0; job->vet && i < ctx->naddrs; i++) {
        sa = ctx->addrs[i].sockaddr;

        if (ngx_http_events_webhook_delivery_addr_blocked(sa, job->whcf)) {
            break;
        }
    }

    if (job->vet && i < ctx->naddrs) {
        ngx_http_events_webhook_delivery_fail(job, NGX_HTTP_EVENTS_E_BLOCKED_IP,
                                              "%V resolves to a private "
                                              "address (see "
                                              "events_webhook_allow_private "
                                              "and events_webhook_allow)",
                                              &ctx->name);
        ngx_resolve_name_done(ctx);
        return;
    }

    if (ngx_http_events_webhook_delivery_pin(job, ctx->addrs[0].sockaddr,
                                             ctx->addrs[0].socklen)
        != NGX_OK)
    {
        ngx_resolve_name_done(ctx);
        ngx_http_events_webhook_delivery_fail(job, NGX_HTTP_EVENTS_E_INTERNAL,
                                              "out of memory");
        return;
    }

    ngx_resolve_name_done(ctx);

    if (ngx_http_events_webhook_delivery_request(job) != NGX_OK) {
        ngx_http_events_webhook_delivery_fail(job, NGX_HTTP_EVENTS_E_INTERNAL,
                                              "cannot create the subrequest");
    }
}


/*
 * The vetted address is what the delivery connects to; the URL names
 * the upstream whose balancer gives it (ngx_http_events_webhook_pool.c)
 */

static ngx_int_t
ngx_http_events_webhook_delivery_pin(ngx_http_events_webhook_job_t *job,
    struct sockaddr *sa, socklen_t socklen)
{
    u_char  *p;

    if (socklen > sizeof(ngx_sockaddr_t)) {
        return NGX_ERROR;
    }

    ngx_memcpy(&job->sockaddr, sa, socklen);
    job->socklen = socklen;

    p = ngx_pnalloc(job->pool, NGX_SOCKADDR_STRLEN);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ngx_inet_set_port(&job->sockaddr.sockaddr, (in_port_t) job->port);

    job->peer_name.data = p;
    job->peer_name.len = ngx_sock_ntop(&job->sockaddr.sockaddr, socklen, p,
                                       NGX_SOCKADDR_STRLEN, 1);

    p = ngx_pnalloc(job->pool, sizeof("https://" NGX_HTTP_EVENTS_WH_POOL)
                               + job->uri.len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    job->pinned.data = p;
    p = ngx_sprintf(p, "%s://" NGX_HTTP_EVENTS_WH_POOL "%V",
                    job->https ? "https" : "http", &job->uri);
    job->pinned.len = p - job->pinned.data;

    return NGX_OK;
}


/*
 * A connection slot with no socket.  Under poll and select,
 * ngx_get_connection() files the connection in ngx_cycle->files[] under
 * its fd, here 0, which is not ours: the slot is put back.
 */

static ngx_connection_t *
ngx_http_events_webhook_delivery_connection(ngx_log_t *log)
{
    ngx_connection_t  *c, *saved;

    saved = ngx_cycle->files ? ngx_cycle->files[0] : NULL;

    c = ngx_get_connection((ngx_socket_t) 0, log);

    if (ngx_cycle->files) {
        ngx_cycle->files[0] = saved;
    }

    if (c == NULL) {
        return NULL;
    }

    /* not a socket: the event pipe and the proxy skip what needs one */
    c->fd = (ngx_socket_t) -1;

    return c;
}


/*
 * ngx_free_connection() looks the connection up in ngx_cycle->files[]
 * by its fd: with -1 that reads files[-1].  Under 0 it finds whatever
 * files[0] holds, never this connection, and leaves it alone.
 */

static void
ngx_http_events_webhook_delivery_free_connection(ngx_connection_t *c)
{
    c->fd = (ngx_socket_t) 0;
    ngx_free_connection(c);
    c->fd = (ngx_socket_t) -1;
    c->pool = NULL;
    c->destroyed = 1;
}


/* the fake request on a fake connection, and its subrequest */

static ngx_int_t
ngx_http_events_webhook_delivery_request(ngx_http_events_webhook_job_t *job)
{
    ngx_log_t                   *log;
    ngx_buf_t                   *b;
    ngx_str_t                    uri;
    ngx_chain_t                 *cl;
    ngx_connection_t            *c;
    ngx_http_request_t          *r, *sr;
    ngx_http_log_ctx_t          *lctx;
    ngx_http_events_ctx_t       *ctx;
    ngx_http_connection_t       *hc;
    ngx_http_post_subrequest_t  *ps;

    log = ngx_palloc(job->pool, sizeof(ngx_log_t));
    lctx = ngx_pcalloc(job->pool, sizeof(ngx_http_log_ctx_t));
    hc = ngx_pcalloc(job->pool, sizeof(ngx_http_connection_t));

    if (log == NULL || lctx == NULL || hc == NULL) {
        return NGX_ERROR;
    }

    *log = *ngx_cycle->log;
    log->data = lctx;
    log->handler = NULL;
    log->action = "sending a webhook";

    hc->conf_ctx = job->ctx;

    c = ngx_http_events_webhook_delivery_connection(log);
    if (c == NULL) {
        return NGX_ERROR;
    }

    c->pool = job->pool;
    c->log = log;
    c->read->log = log;
    c->write->log = log;
    c->read->active = 1;
    c->write->active = 1;
    c->write->ready = 1;
    c->tcp_nodelay = NGX_TCP_NODELAY_DISABLED;
    c->tcp_nopush = NGX_TCP_NOPUSH_DISABLED;
    c->number = ngx_atomic_fetch_add(ngx_connection_counter, 1);
    c->data = hc;

    lctx->connection = c;

    r = ngx_http_create_request(c);
    if (r == NULL) {
        ngx_http_events_webhook_delivery_free_connection(c);
        return NGX_ERROR;
    }

    c->data = r;
    job->request = r;

    ctx = ngx_http_events_ctx(r);
    if (ctx == NULL) {
        goto failed;
    }

    ctx->job = job;

    if (job->verify) {
        r->method = NGX_HTTP_OPTIONS;
        ngx_str_set(&r->method_name, "OPTIONS");

    } else {
        r->method = NGX_HTTP_POST;
        ngx_str_set(&r->method_name, "POST");
    }

    r->http_version = NGX_HTTP_VERSION_11;
    ngx_str_set(&r->http_protocol, "HTTP/1.1");
    r->uri = job->handler ? job->url : job->whcf->location;
    r->unparsed_uri = r->uri;
    r->valid_unparsed_uri = 1;
    r->write_event_handler = ngx_http_events_webhook_delivery_finished;
    r->read_event_handler = ngx_http_block_reading;

    if (ngx_list_init(&r->headers_in.headers, r->pool, 12,
                      sizeof(ngx_table_elt_t))
        != NGX_OK)
    {
        goto failed;
    }

    if ((job->verify ? ngx_http_events_webhook_delivery_verify_headers(job, r)
                     : ngx_http_events_webhook_delivery_headers(job, r))
        != NGX_OK)
    {
        goto failed;
    }

    r->headers_in.content_length_n = job->body.len;

    ps = ngx_palloc(r->pool, sizeof(ngx_http_post_subrequest_t));
    if (ps == NULL) {
        goto failed;
    }

    ps->handler = ngx_http_events_webhook_delivery_answered;
    ps->data = job;

    uri = r->uri;

    if (ngx_http_subrequest(r, &uri, NULL, &sr, ps, 0) != NGX_OK) {
        goto failed;
    }

    sr->method = r->method;
    sr->method_name = r->method_name;

    sr->request_body = ngx_pcalloc(r->pool, sizeof(ngx_http_request_body_t));
    b = ngx_calloc_buf(r->pool);
    cl = ngx_alloc_chain_link(r->pool);

    if (sr->request_body == NULL || b == NULL || cl == NULL) {
        goto failed;
    }

    b->pos = job->body.data;
    b->last = job->body.data + job->body.len;
    b->start = b->pos;
    b->end = b->last;
    b->memory = 1;
    b->last_buf = 1;

    cl->buf = b;
    cl->next = NULL;

    /* the handshake has no body: "Content-Length: 0" */
    sr->request_body->bufs = job->verify ? NULL : cl;

    ctx = ngx_http_events_ctx(sr);
    if (ctx == NULL) {
        goto failed;
    }

    ctx->job = job;

    ngx_http_run_posted_requests(c);

    return NGX_OK;

failed:

    /* nothing ran yet: undo the request as the completion would */
    r->logged = 1;
    ngx_http_free_request(r, 0);
    ngx_http_events_webhook_delivery_free_connection(c);
    job->request = NULL;

    return NGX_ERROR;
}


/* Standard Webhooks headers, then the endpoint's own */

static ngx_int_t
ngx_http_events_webhook_delivery_headers(ngx_http_events_webhook_job_t *job,
    ngx_http_request_t *r)
{
    u_char      *p;
    time_t       ts;
    ngx_str_t    v;

    ts = ngx_time();

    if (job->format == NGX_HTTP_EVENTS_WH_CE_STRUCTURED && !job->handler) {
        ngx_str_set(&v, "application/cloudevents+json; charset=utf-8");

    } else {
        ngx_str_set(&v, "application/json");
    }
    if (ngx_http_events_webhook_delivery_header(r, "content-type", NULL,
                                                &v) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_str_set(&v, "ngx_http_events/" NGX_HTTP_EVENTS_WH_VERSION);
    if (ngx_http_events_webhook_delivery_header(r, "user-agent", NULL,
                                                &v) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_http_events_webhook_delivery_header(r, "webhook-id", NULL,
                                                &job->event_id)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    p = ngx_pnalloc(r->pool, NGX_TIME_T_LEN + NGX_INT64_LEN * 2
                             + 2 * (sizeof("v1,") + 44 + 1));
    if (p == NULL) {
        return NGX_ERROR;
    }

    v.data = p;
    v.len = ngx_sprintf(p, "%T", ts) - p;
    p += v.len;

    if (ngx_http_events_webhook_delivery_header(r, "webhook-timestamp", NULL,
                                                &v)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (job->secret_len == 0) {
        /* a local handler: no secret, the tenant instead */
        goto unsigned_headers;
    }

    /* the current secret's signature first, then the previous one's */
    v.data = p;
    p = ngx_cpymem(p, "v1,", 3);
    p += ngx_http_events_webhook_delivery_sign(job->secret, job->secret_len,
                                               &job->event_id, ts,
                                               &job->body, p);

    if (job->previous_len) {
        p = ngx_cpymem(p, " v1,", 4);
        p += ngx_http_events_webhook_delivery_sign(job->previous,
                                                   job->previous_len,
                                                   &job->event_id, ts,
                                                   &job->body, p);
    }

    v.len = p - v.data;

    if (ngx_http_events_webhook_delivery_header(r, "webhook-signature", NULL,
                                                &v)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

unsigned_headers:

    if (job->handler
        && ngx_http_events_webhook_delivery_header(r, "x-events-tenant", NULL,
                                                   &job->event_tenant)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (ngx_http_events_webhook_delivery_header(r, "x-events-type", NULL,
                                                &job->type)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    v.data = p;
    v.len = ngx_sprintf(p, "%uL", job->seq) - p;
    p += v.len;

    if (ngx_http_events_webhook_delivery_header(r, "x-events-seq", NULL,
                                                &v) != NGX_OK) {
        return NGX_ERROR;
    }

    v.data = p;
    v.len = ngx_sprintf(p, "%ui", job->attempt) - p;

    if (ngx_http_events_webhook_delivery_header(r, "x-events-attempt", NULL, &v)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (job->format == NGX_HTTP_EVENTS_WH_CE_BINARY && !job->handler
        && ngx_http_events_webhook_delivery_ce_headers(job, r) != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_http_events_webhook_delivery_own_headers(job, r);
}


/*
 * The handshake: WebHook-Request-Origin (and the rate the endpoint's
 * rateLimit asks for, per minute), then the endpoint's own headers, so
 * that a receiver that wants its credentials on every request gets them
 */

static ngx_int_t
ngx_http_events_webhook_delivery_verify_headers(
    ngx_http_events_webhook_job_t *job, ngx_http_request_t *r)
{
    u_char     *p;
    ngx_str_t   v;

    ngx_str_set(&v, "ngx_http_events/" NGX_HTTP_EVENTS_WH_VERSION);
    if (ngx_http_events_webhook_delivery_header(r, "user-agent", NULL, &v)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    ngx_http_events_webhook_delivery_origin(job->ctx, &v);

    if (ngx_http_events_webhook_delivery_header(r, "webhook-request-origin",
                                                NULL, &v)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (job->rate_limit) {
        p = ngx_pnalloc(r->pool, NGX_INT_T_LEN);
        if (p == NULL) {
            return NGX_ERROR;
        }

        v.data = p;
        v.len = ngx_sprintf(p, "%ui", job->rate_limit * 60) - p;

        if (ngx_http_events_webhook_delivery_header(r, "webhook-request-rate",
                                                    NULL, &v)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    return ngx_http_events_webhook_delivery_own_headers(job, r);
}


/*
 * WebHook-Request-Origin: the first server_name of the server that
 * holds the events_webhooks location, or this machine's host name when
 * it has none ("")
 */

void
ngx_http_events_webhook_delivery_origin(void *ctx, ngx_str_t *origin)
{
    ngx_str_t                  *name;
    ngx_http_conf_ctx_t        *hctx;
    ngx_http_core_srv_conf_t   *cscf;

    hctx = ctx;
    cscf = hctx ? hctx->srv_conf[ngx_http_core_module.ctx_index] : NULL;

    /* the first name, as nginx keeps it; a wildcard or a regex is none */
    name = cscf ? &cscf->server_name : NULL;

    if (name && name->len && name->data[0] != '*' && name->data[0] != '.'
        && name->data[0] != '~' && name->data[name->len - 1] != '*')
    {
        *origin = *name;
        return;
    }

    *origin = ngx_cycle->hostname;
}


/* the endpoint's own headers: never one of ours */

static ngx_int_t
ngx_http_events_webhook_delivery_own_headers(
    ngx_http_events_webhook_job_t *job, ngx_http_request_t *r)
{
    ngx_uint_t  i, j;

    static char *ours[] = { "content-type", "user-agent", "webhook-id",
                            "webhook-timestamp", "webhook-signature",
                            "x-events-type", "x-events-seq",
                            "x-events-attempt", "host", "content-length",
                            "connection", "transfer-encoding",
                            "webhook-request-origin",
                            "webhook-request-rate", NULL };

    /* custom headers never override ours (the API refuses them too) */
    for (i = 0; i < job->nheaders; i++) {

        if (job->format == NGX_HTTP_EVENTS_WH_CE_BINARY
            && job->hnames[i].len > 3
            && ngx_strncasecmp(job->hnames[i].data, (u_char *) "ce-", 3)
               == 0)
        {
            continue;
        }

        for (j = 0; ours[j]; j++) {
            if (job->hnames[i].len == ngx_strlen(ours[j])
                && ngx_strncasecmp(job->hnames[i].data, (u_char *) ours[j],
                                   job->hnames[i].len) == 0)
            {
                break;
            }
        }

        if (ours[j]) {
            continue;
        }

        if (ngx_http_events_webhook_delivery_header(r, NULL, &job->hnames[i],
                                                    &job->hvalues[i])
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/*
 * Binary mode: each attribute a ce-* header, its value decoded from
 * JSON and percent-encoded as the HTTP binding says (space, '"', '%'
 * and all but printable ASCII)
 */

static ngx_int_t
ngx_http_events_webhook_delivery_ce_headers(ngx_http_events_webhook_job_t *job,
    ngx_http_request_t *r)
{
    u_char       *p;
    size_t        len;
    json_t       *j;
    ngx_str_t     v, source;
    ngx_uint_t    i;
    const char   *s;

    static u_char  hex[] = "0123456789ABCDEF";

    struct {
        char       *name;
        ngx_str_t  *token;
    }  attrs[] = {
        { "ce-id", &job->ce.id },
        { "ce-source", &source },
        { "ce-type", &job->ce.type },
        { "ce-time", &job->ce.time },
        { "ce-subject", &job->ce.subject },
        { "ce-tenantid", &job->ce.tenant },
    };

    ngx_str_set(&v, "1.0");
    if (ngx_http_events_webhook_delivery_header(r, "ce-specversion", NULL, &v)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    /* the URI-reference, as a JSON string for the loop below */
    p = ngx_pnalloc(r->pool, 3 * 1024 + sizeof("\"/events\""));
    if (p == NULL) {
        return NGX_ERROR;
    }

    source.data = p;
    *p++ = '"';
    p = ngx_http_events_ce_source(p, &job->ce);
    *p++ = '"';
    source.len = p - source.data;

    for (i = 0; i < sizeof(attrs) / sizeof(attrs[0]); i++) {

        if (attrs[i].token->len == 0) {
            continue;
        }

        j = json_loadb((char *) attrs[i].token->data, attrs[i].token->len,
                       JSON_DECODE_ANY, NULL);

        if (j == NULL || !json_is_string(j)) {
            json_decref(j);
            return NGX_ERROR;
        }

        s = json_string_value(j);
        len = json_string_length(j);

        p = ngx_pnalloc(r->pool, len * 3);
        if (p == NULL) {
            json_decref(j);
            return NGX_ERROR;
        }

        v.data = p;

        while (len--) {
            if ((u_char) *s <= 0x20 || (u_char) *s >= 0x7f || *s == '"'
                || *s == '%')
            {
                *p++ = '%';
                *p++ = hex[(u_char) *s >> 4];
                *p++ = hex[(u_char) *s & 0xf];

            } else {
                *p++ = *s;
            }

            s++;
        }

        v.len = p - v.data;
        json_decref(j);

        if (ngx_http_events_webhook_delivery_header(r, attrs[i].name, NULL,
                                                    &v)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    if (job->ce.seq.len) {
        if (ngx_http_events_webhook_delivery_header(r, "ce-seq", NULL,
                                                    &job->ce.seq)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    /* datacontenttype is the Content-Type in this mode */
    return NGX_OK;
}


static ngx_int_t
ngx_http_events_webhook_delivery_header(ngx_http_request_t *r, char *name,
    ngx_str_t *key, ngx_str_t *value)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_in.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    if (name) {
        h->key.data = (u_char *) name;
        h->key.len = ngx_strlen(name);

    } else {
        h->key = *key;
    }

    h->value = *value;
    h->hash = 1;

    h->lowcase_key = ngx_pnalloc(r->pool, h->key.len);
    if (h->lowcase_key == NULL) {
        return NGX_ERROR;
    }

    ngx_strlow(h->lowcase_key, h->key.data, h->key.len);

    return NGX_OK;
}


/* base64(HMAC-SHA256(secret, id "." ts "." body)), 44 bytes */

ngx_int_t
ngx_http_events_webhook_delivery_sign(u_char *secret, size_t secret_len,
    ngx_str_t *id, time_t ts, ngx_str_t *body, u_char *out)
{
    u_char         *p;
    u_char          prefix[NGX_HTTP_EVENTS_WH_MAX_ID * 2 + NGX_TIME_T_LEN
                           + 2];
    u_char          mac[NGX_HTTP_EVENTS_HMAC_SHA256_LEN];
    ngx_str_t       src, dst, parts[2];

    p = ngx_snprintf(prefix, sizeof(prefix), "%V.%T.", id, ts);

    parts[0].data = prefix;
    parts[0].len = p - prefix;
    parts[1] = *body;

    if (ngx_http_events_hmac_sha256(secret, secret_len, parts, 2, mac)
        != NGX_OK)
    {
        return 0;
    }

    src.data = mac;
    src.len = sizeof(mac);
    dst.data = out;

    ngx_encode_base64(&dst, &src);

    return dst.len;
}


/*
 * The subrequest is done.  Only note what came back: the fake request
 * is freed from its own write handler, once nginx has left this frame.
 */

static ngx_int_t
ngx_http_events_webhook_delivery_answered(ngx_http_request_t *r, void *data,
    ngx_int_t rc)
{
    ngx_http_events_webhook_job_t *job = data;

    time_t            t;
    ngx_uint_t        i, status;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    job->answered = 1;

    status = r->headers_out.status;
    job->status = status;

    if (status == 0) {

        if (rc == NGX_HTTP_GATEWAY_TIME_OUT) {
            job->error = NGX_HTTP_EVENTS_E_TIMEOUT;
            job->detail_len = ngx_sprintf(job->detail,
                                          "no answer within the timeout")
                              - job->detail;

        } else if (job->tls_failed) {
            job->error = NGX_HTTP_EVENTS_E_TLS;
            job->detail_len = ngx_sprintf(job->detail,
                                          "the TLS handshake or the "
                                          "certificate check failed, see "
                                          "error.log") - job->detail;

        } else {
            job->error = NGX_HTTP_EVENTS_E_CONNECT;
            job->detail_len = ngx_sprintf(job->detail,
                                          "could not connect or read the "
                                          "answer (%i), see error.log", rc)
                              - job->detail;
        }

        return NGX_OK;
    }

    if (r->headers_out.content_type.len) {
        job->ctype.len = ngx_min(r->headers_out.content_type.len, 64);
        job->ctype.data = ngx_pnalloc(job->pool, job->ctype.len);

        if (job->ctype.data) {
            ngx_memcpy(job->ctype.data, r->headers_out.content_type.data,
                       job->ctype.len);

        } else {
            job->ctype.len = 0;
        }
    }

    part = &r->headers_out.headers.part;
    h = part->elts;

    for (i = 0; /* void */ ; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].hash == 0) {
            continue;
        }

        if (h[i].key.len == 16
            && ngx_strncasecmp(h[i].key.data, (u_char *) "webhook-delivery",
                               16) == 0)
        {
            if (h[i].value.len == 7
                && ngx_strncasecmp(h[i].value.data, (u_char *) "disable", 7)
                   == 0)
            {
                job->disable = 1;

            } else if (h[i].value.len == 13
                       && ngx_strncasecmp(h[i].value.data,
                                          (u_char *) "abort-message", 13)
                          == 0)
            {
                job->abort = 1;
            }

            continue;
        }

        if (h[i].key.len == 11
            && ngx_strncasecmp(h[i].key.data, (u_char *) "retry-after", 11)
               == 0)
        {
            /* seconds, or an HTTP date */
            t = ngx_atotm(h[i].value.data, h[i].value.len);

            if (t == NGX_ERROR) {
                t = ngx_parse_http_time(h[i].value.data, h[i].value.len);

                if (t != NGX_ERROR) {
                    t = t > ngx_time() ? t - ngx_time() : 0;
                }
            }

            if (t != NGX_ERROR) {
                job->retry_after_ms = (uint64_t) t * 1000;
            }
        }
    }

    if (status >= 200 && status < 300 && job->verify) {
        ngx_http_events_webhook_delivery_allowed(job, r);

    } else if (status >= 200 && status < 300) {
        job->error = NGX_HTTP_EVENTS_E_NONE;

    } else if (status >= 300 && status < 400) {
        job->error = NGX_HTTP_EVENTS_E_REDIRECT;
        job->detail_len = ngx_sprintf(job->detail, "redirect %ui, not "
                                      "followed", status) - job->detail;

    } else {
        job->error = NGX_HTTP_EVENTS_E_HTTP;
        job->detail_len = ngx_sprintf(job->detail, "the endpoint answered "
                                      "%ui", status) - job->detail;
    }

    return NGX_OK;
}


/*
 * A 2xx to the handshake: WebHook-Allowed-Origin must be our origin or
 * "*"; WebHook-Allowed-Rate, when there, "*" or requests per minute.
 * Anything else fails it as E_HTTP, with what was wrong in the detail.
 */

static void
ngx_http_events_webhook_delivery_allowed(ngx_http_events_webhook_job_t *job,
    ngx_http_request_t *r)
{
    ngx_int_t         n;
    ngx_str_t         origin, *allowed, *rate;
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    allowed = NULL;
    rate = NULL;

    part = &r->headers_out.headers.part;
    h = part->elts;

    for (i = 0; /* void */ ; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].hash == 0 || h[i].key.len < 20) {
            continue;
        }

        if (h[i].key.len == 22
            && ngx_strncasecmp(h[i].key.data,
                               (u_char *) "webhook-allowed-origin", 22) == 0)
        {
            allowed = &h[i].value;

        } else if (h[i].key.len == 20
                   && ngx_strncasecmp(h[i].key.data,
                                      (u_char *) "webhook-allowed-rate", 20)
                      == 0)
        {
            rate = &h[i].value;
        }
    }

    job->error = NGX_HTTP_EVENTS_E_HTTP;
    ngx_http_events_webhook_delivery_origin(job->ctx, &origin);

    if (allowed == NULL) {
        job->detail_len = ngx_snprintf(job->detail, sizeof(job->detail),
                                       "%ui without WebHook-Allowed-Origin",
                                       job->status)
                          - job->detail;
        return;
    }

    if (!(allowed->len == 1 && allowed->data[0] == '*')
        && !(allowed->len == origin.len
             && ngx_strncasecmp(allowed->data, origin.data, origin.len) == 0))
    {
        job->detail_len = ngx_snprintf(job->detail, sizeof(job->detail),
                                       "WebHook-Allowed-Origin \"%*s\" is "
                                       "not \"%V\"",
                                       ngx_min(allowed->len, 32),
                                       allowed->data, &origin)
                          - job->detail;
        return;
    }

    job->allowed_rate = 0;

    if (rate && !(rate->len == 1 && rate->data[0] == '*')) {
        n = ngx_atoi(rate->data, rate->len);

        if (n <= 0) {
            job->detail_len = ngx_snprintf(job->detail, sizeof(job->detail),
                                           "WebHook-Allowed-Rate \"%*s\" is "
                                           "not a number of requests a "
                                           "minute or \"*\"",
                                           ngx_min(rate->len, 16),
                                           rate->data)
                              - job->detail;
            return;
        }

        job->allowed_rate = (ngx_uint_t) ngx_min(n, 0xffffffff);
    }

    job->error = NGX_HTTP_EVENTS_E_NONE;
}


static void
ngx_http_events_webhook_delivery_finished(ngx_http_request_t *r)
{
    ngx_connection_t               *c;
    ngx_http_events_ctx_t          *ctx;
    ngx_http_events_webhook_job_t  *job;

    c = r->connection;
    ctx = ngx_http_get_module_ctx(r, ngx_http_events_module);
    job = ctx->job;

    if (!job->answered) {
        /* posted for another reason: the subrequest is still running */
        return;
    }

    r->logged = 1;
    ngx_http_free_request(r, 0);
    ngx_http_events_webhook_delivery_free_connection(c);

    job->request = NULL;
    job->done(job);
}


static void
ngx_http_events_webhook_delivery_fail(ngx_http_events_webhook_job_t *job,
    ngx_uint_t error, const char *fmt, ...)
{
    va_list  args;

    va_start(args, fmt);
    job->detail_len = ngx_vslprintf(job->detail,
                                    job->detail + sizeof(job->detail), fmt,
                                    args)
                      - job->detail;
    va_end(args);

    job->status = 0;
    job->error = error;

    job->done(job);
}


/* a delivery's answer is not sent anywhere: keep an excerpt, drop it */

static ngx_int_t
ngx_http_events_webhook_delivery_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in)
{
    size_t                          n;
    ngx_buf_t                      *b;
    ngx_chain_t                    *cl;
    ngx_http_events_ctx_t          *ctx;
    ngx_http_events_webhook_job_t  *job;

    ctx = ngx_http_get_module_ctx(r, ngx_http_events_module);

    if (ctx == NULL || ctx->job == NULL) {
        return ngx_http_next_body_filter(r, in);
    }

    job = ctx->job;

    for (cl = in; cl; cl = cl->next) {
        b = cl->buf;

        if (ngx_buf_in_memory(b) && job->excerpt_len < job->excerpt_size) {
            n = ngx_min((size_t) (b->last - b->pos),
                        job->excerpt_size - job->excerpt_len);
            ngx_memcpy(job->excerpt + job->excerpt_len, b->pos, n);
            job->excerpt_len += n;
        }

        b->pos = b->last;

        if (b->in_file) {
            b->file_pos = b->file_last;
        }
    }

    return NGX_OK;
}


ngx_int_t
ngx_http_events_webhook_delivery_init_filter(ngx_conf_t *cf)
{
    ngx_http_next_body_filter = ngx_http_top_body_filter;
    ngx_http_top_body_filter = ngx_http_events_webhook_delivery_body_filter;

    return NGX_OK;
}


ngx_int_t
ngx_http_events_webhook_delivery_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var, *v;

    for (v = ngx_http_events_webhook_vars; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = v->get_handler;
        var->data = v->data;
    }

    return NGX_OK;
}


/* a subrequest shares its parent's variable cache: never cached */

static ngx_int_t
ngx_http_events_webhook_delivery_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_str_t                 *s;
    ngx_http_events_ctx_t     *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_events_module);

    if (ctx == NULL || ctx->job == NULL) {
        v->not_found = 1;
        return NGX_OK;
    }

    s = (ngx_str_t *) ((u_char *) ctx->job + data);

    v->data = s->data;
    v->len = s->len;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;
}


/* SSRF: the ranges WEBHOOKS.md refuses, unless allowed */

ngx_uint_t
ngx_http_events_webhook_delivery_addr_blocked(struct sockaddr *sa,
    ngx_http_events_webhook_conf_t *whcf)
{
    u_char               *p;
    in_addr_t             a;
    ngx_uint_t            i;
    ngx_cidr_t           *cidr;
    struct sockaddr_in   *sin;
#if (NGX_HAVE_INET6)
    ngx_uint_t            n;
    struct sockaddr_in6  *sin6;
#endif

    if (whcf->allow_private) {
        return 0;
    }

    if (whcf->allow) {
        cidr = whcf->allow->elts;

        for (i = 0; i < whcf->allow->nelts; i++) {

            if (cidr[i].family != sa->sa_family) {
                continue;
            }

            if (sa->sa_family == AF_INET) {
                sin = (struct sockaddr_in *) sa;

                if ((sin->sin_addr.s_addr & cidr[i].u.in.mask)
                    == cidr[i].u.in.addr)
                {
                    return 0;
                }
            }

#if (NGX_HAVE_INET6)
            if (sa->sa_family == AF_INET6) {
                sin6 = (struct sockaddr_in6 *) sa;
                p = sin6->sin6_addr.s6_addr;

                for (n = 0; n < 16; n++) {
                    if ((p[n] & cidr[i].u.in6.mask.s6_addr[n])
                        != cidr[i].u.in6.addr.s6_addr[n])
                    {
                        break;
                    }
                }

                if (n == 16) {
                    return 0;
                }
            }
#endif
        }
    }

    if (sa->sa_family == AF_INET) {
        sin = (struct sockaddr_in *) sa;
        return ngx_http_events_webhook_delivery_v4_blocked(
            ntohl(sin->sin_addr.s_addr));
    }

#if (NGX_HAVE_INET6)
    if (sa->sa_family == AF_INET6) {
        sin6 = (struct sockaddr_in6 *) sa;
        p = sin6->sin6_addr.s6_addr;

        /*
         * A v4 address inside a v6 one decides: ::ffff:a.b.c.d (mapped),
         * ::a.b.c.d (compatible; "::" and "::1" are 0.0.0.0 and 0.0.0.1,
         * in 0/8), ::ffff:0:a.b.c.d (translated), 64:ff9b::a.b.c.d
         * (NAT64).  The local-use NAT64 prefix 64:ff9b:1::/48 may embed
         * any v4 address at any prefix length: all of it is refused.
         */
        if (ngx_memcmp(p, "\0\0\0\0\0\0\0\0\0\0\xff\xff", 12) == 0
            || ngx_memcmp(p, "\0\0\0\0\0\0\0\0\0\0\0\0", 12) == 0
            || ngx_memcmp(p, "\0\0\0\0\0\0\0\0\xff\xff\0\0", 12) == 0
            || ngx_memcmp(p, "\0\x64\xff\x9b\0\0\0\0\0\0\0\0", 12) == 0)
        {
            a = ((in_addr_t) p[12] << 24) | (p[13] << 16) | (p[14] << 8)
                | p[15];
            return ngx_http_events_webhook_delivery_v4_blocked(a);
        }

        if (ngx_memcmp(p, "\0\x64\xff\x9b\0\x01", 6) == 0) {
            return 1;                                   /* 64:ff9b:1::/48 */
        }

        /* 2001::/32, Teredo: the client's v4, inverted, in the last bits */
        if (ngx_memcmp(p, "\x20\x01\0\0", 4) == 0) {
            a = ((in_addr_t) (p[12] ^ 0xff) << 24) | ((p[13] ^ 0xff) << 16)
                | ((p[14] ^ 0xff) << 8) | (p[15] ^ 0xff);
            return ngx_http_events_webhook_delivery_v4_blocked(a);
        }

        /* 2002:a.b.c.d::/48, 6to4 */
        if (p[0] == 0x20 && p[1] == 0x02) {
            a = ((in_addr_t) p[2] << 24) | (p[3] << 16) | (p[4] << 8) | p[5];
            return ngx_http_events_webhook_delivery_v4_blocked(a);
        }

        return (p[0] & 0xfe) == 0xfc                     /* fc00::/7 */
               || (p[0] == 0xfe && (p[1] & 0x80) == 0x80)
                                             /* fe80::/10, fec0::/10 */
               || p[0] == 0xff                          /* ff00::/8 */
               || (p[0] == 0x20 && p[1] == 0x01 && p[2] == 0x0d
                   && p[3] == 0xb8)                     /* 2001:db8::/32 */
               || (p[0] == 0x01 && p[1] == 0x00
                   && ngx_memcmp(p + 2, "\0\0\0\0\0\0", 6) == 0);
                                                        /* 100::/64 */
    }
#endif

    return 1;
}


static ngx_uint_t
ngx_http_events_webhook_delivery_v4_blocked(in_addr_t a)
{
    ngx_uint_t  i;

    static struct {
        in_addr_t  net;
        in_addr_t  mask;
    }  ranges[] = {
        { 0x00000000, 0xff000000 },     /* 0/8 */
        { 0x0a000000, 0xff000000 },     /* 10/8 */
        { 0x64400000, 0xffc00000 },     /* 100.64/10 */
        { 0x7f000000, 0xff000000 },     /* 127/8 */
        { 0xa9fe0000, 0xffff0000 },     /* 169.254/16 */
        { 0xac100000, 0xfff00000 },     /* 172.16/12 */
        { 0xc0000000, 0xffffff00 },     /* 192.0.0/24 */
        { 0xc0000200, 0xffffff00 },     /* 192.0.2/24 */
        { 0xc0586300, 0xffffff00 },     /* 192.88.99/24 */
        { 0xc0a80000, 0xffff0000 },     /* 192.168/16 */
        { 0xc6120000, 0xfffe0000 },     /* 198.18/15 */
        { 0xc6336400, 0xffffff00 },     /* 198.51.100/24 */
        { 0xcb007100, 0xffffff00 },     /* 203.0.113/24 */
        { 0xe0000000, 0xf0000000 },     /* 224/4 */
        { 0xf0000000, 0xf0000000 },     /* 240/4, 255.255.255.255 */
    };

    for (i = 0; i < sizeof(ranges) / sizeof(ranges[0]); i++) {
        if ((a & ranges[i].mask) == ranges[i].net) {
            return 1;
        }
    }

    return 0;
}
