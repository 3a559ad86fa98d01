
/*
 * Copyright (C) ngx_http_events_module authors
 */


/*
 * WebSocket streams (RFC 6455) at an events_stream location.
 *
 * A GET with "Upgrade: websocket" is the same stream as an EventSource
 * (filters, tenant, token, resume, limits, slow-consumer cut-off: all in
 * ngx_http_events_stream.c), framed otherwise: one JSON text message per
 * event, its envelope with the cursor first ({"cursor":"...","id":...}),
 * control messages as JSON ({"control":"reset",...}), pings for
 * heartbeats, and a close code that says why a stream ended.
 *
 * libwslay does the framing and the protocol's rules (masks, fragments,
 * control frames, UTF-8, sizes).  Its callbacks read and write through
 * c->recv and c->send and answer WSLAY_ERR_WOULDBLOCK where nginx would
 * wait, so nginx's event loop drives it and nothing blocks; its output
 * is gathered in one buffer and written once per turn, not per frame.
 * wslay sends control frames before queued messages: our own close is
 * queued only once every message before it is out.  Clients have
 * nothing to say but control frames; their messages are read, checked
 * and dropped.
 *
 * permessage-deflate (RFC 7692), with events_ws_deflate on: the answer
 * always declares server_no_context_takeover, so each message is
 * compressed on its own, from an empty window.  The compressed bytes of
 * an envelope then depend on the envelope only: a worker keeps one zlib
 * stream per window size (deflateReset between messages, never one per
 * connection: that is 256 KB each), and a memo of the last 256 events
 * it compressed, by seq, so a fan-out of one event to every stream of a
 * worker compresses it once.  Short messages go as they are (RSV1
 * clear, as 7692 allows per message).  A client's compressed messages
 * are taken (wslay then allows RSV1 on data frames only, and leaves their
 * UTF-8 alone) but never inflated: they are dropped as any other, and
 * their 4 KB limit counts compressed bytes, so no inflation bomb.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <ngx_sha1.h>

#include <wslay/wslay.h>
#include <zlib.h>

#include "ngx_http_events_module.h"
#include "ngx_http_events_http.h"
#include "ngx_http_events_cors.h"
#include "ngx_http_events_stream.h"
#include "ngx_http_events_ws.h"


#define NGX_HTTP_EVENTS_WS_BUF         65536    /* output per write */
#define NGX_HTTP_EVENTS_WS_MAX_MSG     4096     /* a client's message */
#define NGX_HTTP_EVENTS_WS_CLOSE_WAIT  2000     /* for the client's close */
#define NGX_HTTP_EVENTS_WS_KEY_LEN     24       /* 16 bytes in base64 */

#define NGX_HTTP_EVENTS_WS_DEFLATE_MIN 128      /* shorter: as it is */
#define NGX_HTTP_EVENTS_WS_MEMO        256      /* events' slots, by seq */
#define NGX_HTTP_EVENTS_WS_MEMO_MAX    65536    /* a longer one: not kept */
#define NGX_HTTP_EVENTS_WS_MEMO_BYTES  4194304  /* all slots, at most */
#define NGX_HTTP_EVENTS_WS_NO_MEMO     ((uint64_t) -1)


struct ngx_http_events_ws_s {
    wslay_event_context_ptr         wslay;
    ngx_http_events_stream_ctx_t   *ctx;

    u_char                         *start;      /* wslay's output */
    u_char                         *pos;
    u_char                         *last;

    ngx_uint_t                      close;      /* why, once ending */
    ngx_uint_t                      bits;       /* deflate's window, or 0 */

    unsigned                        closing:1;
    unsigned                        pinged:1;
    unsigned                        gone:1;     /* EOF or error reading */
};


typedef struct {
    uint16_t                        code;
    char                           *reason;
} ngx_http_events_ws_end_t;


/* a message compressed: the envelope, then what it became */
typedef struct {
    uint64_t                        seq;
    ngx_uint_t                      bits;
    size_t                          len;        /* the envelope's */
    size_t                          out;        /* 0: sent as it is */
    size_t                          size;
    u_char                         *data;
} ngx_http_events_ws_memo_t;


static ngx_uint_t ngx_http_events_ws_refuse(ngx_http_request_t *r,
    ngx_int_t *rc, const char *message);
static ngx_uint_t ngx_http_events_ws_token(ngx_http_request_t *r,
    const char *name, const char *token);
static ngx_int_t ngx_http_events_ws_open(ngx_http_events_stream_ctx_t *ctx);
static ngx_int_t ngx_http_events_ws_accept(ngx_http_request_t *r,
    ngx_str_t *accept);
static ngx_int_t ngx_http_events_ws_extensions(ngx_http_request_t *r,
    ngx_http_events_ws_t *ws);
static ngx_uint_t ngx_http_events_ws_offer(u_char **pos, u_char *last,
    ngx_uint_t *bits);
static u_char *ngx_http_events_ws_ows(u_char *p, u_char *last);
static u_char *ngx_http_events_ws_tchars(u_char *p, u_char *last);
static ngx_uint_t ngx_http_events_ws_window(ngx_str_t *value,
    ngx_uint_t min);
static u_char *ngx_http_events_ws_scratch(size_t len);
static ngx_int_t ngx_http_events_ws_queue(ngx_http_events_ws_t *ws,
    uint8_t opcode, u_char *data, size_t len);
static ngx_int_t ngx_http_events_ws_queue_rsv(ngx_http_events_ws_t *ws,
    uint8_t opcode, u_char *data, size_t len, uint8_t rsv);
static ngx_int_t ngx_http_events_ws_text(ngx_http_events_ws_t *ws,
    u_char *data, size_t len, uint64_t seq);
static ngx_http_events_ws_memo_t *ngx_http_events_ws_deflate(
    ngx_uint_t bits, u_char *data, size_t len, uint64_t seq);
static z_stream *ngx_http_events_ws_zstream(ngx_uint_t bits);
static ngx_int_t ngx_http_events_ws_event(ngx_http_events_stream_ctx_t *ctx,
    ngx_http_events_item_t *item);
static ngx_int_t ngx_http_events_ws_control(ngx_http_events_stream_ctx_t *ctx,
    const char *name, u_char *id, u_char *json, size_t len);
static ngx_int_t ngx_http_events_ws_heartbeat(
    ngx_http_events_stream_ctx_t *ctx);
static ngx_int_t ngx_http_events_ws_flush(ngx_http_events_stream_ctx_t *ctx);
static off_t ngx_http_events_ws_unsent(ngx_http_events_stream_ctx_t *ctx);
static void ngx_http_events_ws_end(ngx_http_events_stream_ctx_t *ctx,
    ngx_uint_t why);
static ngx_uint_t ngx_http_events_ws_settle(ngx_http_events_stream_ctx_t *ctx);
static void ngx_http_events_ws_reader(ngx_http_request_t *r);
static void ngx_http_events_ws_writer(ngx_http_request_t *r);
static ssize_t ngx_http_events_ws_recv(wslay_event_context_ptr wslay,
    uint8_t *buf, size_t len, int flags, void *data);
static ssize_t ngx_http_events_ws_send(wslay_event_context_ptr wslay,
    const uint8_t *data, size_t len, int flags, void *user);
static void ngx_http_events_ws_message(wslay_event_context_ptr wslay,
    const struct wslay_event_on_msg_recv_arg *arg, void *data);
static void ngx_http_events_ws_cleanup(void *data);


ngx_http_events_stream_proto_t  ngx_http_events_ws_proto = {
    ngx_http_events_ws_open,
    ngx_http_events_ws_event,
    ngx_http_events_ws_control,
    ngx_http_events_ws_heartbeat,
    ngx_http_events_ws_flush,
    ngx_http_events_ws_unsent,
    ngx_http_events_ws_end
};


/* by NGX_HTTP_EVENTS_STREAM_END_*: 1001 for "come back", 1008/1013 limits */
static ngx_http_events_ws_end_t  ngx_http_events_ws_ends[] = {
    { 1000, "reset" },
    { 1008, "lagging" },
    { 1013, "overloaded" },
    { 1001, "server restarting" },
    { 1001, "lifetime over" },
    { 1008, "token expired" }
};


static struct wslay_event_callbacks  ngx_http_events_ws_callbacks = {
    ngx_http_events_ws_recv,
    ngx_http_events_ws_send,
    NULL,                               /* masks: a server sends none */
    NULL,
    NULL,
    NULL,
    ngx_http_events_ws_message
};


static u_char  ngx_http_events_ws_guid[] =
    "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";


/*
 * Whether the request upgrades, checked as RFC 6455 4.2.1 says: without
 * "Upgrade: websocket" it is an EventSource (HTTP/2 cannot upgrade).
 * Whether the stream may go on; if not, it was answered with *rc: a 400
 * that says what is wrong, or a 403 for an Origin that may not.
 */

ngx_uint_t
ngx_http_events_ws_handshake(ngx_http_request_t *r, ngx_uint_t *upgrade,
    ngx_int_t *rc)
{
    u_char                   key[NGX_HTTP_EVENTS_WS_KEY_LEN];
    ngx_str_t                value, decoded;
    ngx_table_elt_t         *h;
    ngx_http_events_error_t  err;

    *upgrade = 0;

    if (!ngx_http_events_ws_token(r, "Upgrade", "websocket")) {
        return 1;
    }

#if (NGX_HTTP_V2)
    if (r->stream) {
        return 1;
    }
#endif

    if (r->http_version != NGX_HTTP_VERSION_11) {
        return ngx_http_events_ws_refuse(r, rc, "a WebSocket handshake is "
                                         "an HTTP/1.1 request");
    }

    if (!ngx_http_events_ws_token(r, "Connection", "upgrade")) {
        return ngx_http_events_ws_refuse(r, rc, "a WebSocket handshake "
                                         "needs \"Connection: Upgrade\"");
    }

    h = ngx_http_events_http_header(r, "Sec-WebSocket-Version");

    if (h == NULL || h->value.len != 2
        || ngx_strncmp(h->value.data, "13", 2) != 0)
    {
        ngx_str_set(&value, "13");

        if (ngx_http_events_http_add_header(r, "Sec-WebSocket-Version",
                                            &value)
            != NGX_OK)
        {
            *rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
            return 0;
        }

        return ngx_http_events_ws_refuse(r, rc, "Sec-WebSocket-Version "
                                         "must be 13");
    }

    h = ngx_http_events_http_header(r, "Sec-WebSocket-Key");

    decoded.data = key;
    decoded.len = 0;

    if (h == NULL || h->value.len != NGX_HTTP_EVENTS_WS_KEY_LEN
        || ngx_decode_base64(&decoded, &h->value) != NGX_OK
        || decoded.len != 16)
    {
        return ngx_http_events_ws_refuse(r, rc, "Sec-WebSocket-Key must be "
                                         "16 bytes in base64");
    }

    if (!ngx_http_events_cors_websocket(r)) {
        ngx_memzero(&err, sizeof(ngx_http_events_error_t));
        ngx_http_events_error(&err, 403, "origin_not_allowed", NULL, NULL,
                              NULL, "this Origin may not open a WebSocket "
                              "here (see events_cors)");

        *rc = ngx_http_events_http_send_error(r, &err, NULL);
        return 0;
    }

    *upgrade = 1;

    return 1;
}


static ngx_uint_t
ngx_http_events_ws_refuse(ngx_http_request_t *r, ngx_int_t *rc,
    const char *message)
{
    ngx_http_events_error_t  err;

    ngx_memzero(&err, sizeof(ngx_http_events_error_t));
    ngx_http_events_error(&err, 400, "invalid_handshake", NULL, NULL, NULL,
                          "%s", message);

    *rc = ngx_http_events_http_send_error(r, &err, NULL);

    return 0;
}


/* a comma-separated header has this token, in any case */

static ngx_uint_t
ngx_http_events_ws_token(ngx_http_request_t *r, const char *name,
    const char *token)
{
    size_t            len;
    u_char           *p, *last, *start, *end;
    ngx_table_elt_t  *h;

    /* looked up: nginx 1.22 keeps no pointer to Connection */
    h = ngx_http_events_http_header(r, name);

    if (h == NULL) {
        return 0;
    }

    len = ngx_strlen(token);
    p = h->value.data;
    last = p + h->value.len;

    while (p < last) {
        while (p < last && (*p == ' ' || *p == '\t' || *p == ',')) {
            p++;
        }

        start = p;

        while (p < last && *p != ',') {
            p++;
        }

        end = p;

        while (end > start && (end[-1] == ' ' || end[-1] == '\t')) {
            end--;
        }

        if ((size_t) (end - start) == len
            && ngx_strncasecmp(start, (u_char *) token, len) == 0)
        {
            return 1;
        }
    }

    return 0;
}


/* the 101, and from then on the connection is wslay's */

static ngx_int_t
ngx_http_events_ws_open(ngx_http_events_stream_ctx_t *ctx)
{
    ngx_int_t                  rc;
    ngx_str_t                  value;
    ngx_connection_t          *c;
    ngx_pool_cleanup_t        *cln;
    ngx_http_request_t        *r;
    ngx_http_events_ws_t      *ws;
    ngx_http_core_loc_conf_t  *clcf;

    r = ctx->request;
    c = r->connection;

    ws = ngx_pcalloc(r->pool, sizeof(ngx_http_events_ws_t));
    if (ws == NULL) {
        return NGX_ERROR;
    }

    ws->ctx = ctx;
    ctx->ws = ws;

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_ERROR;
    }

    if (wslay_event_context_server_init(&ws->wslay,
                                        &ngx_http_events_ws_callbacks, ws)
        != 0)
    {
        return NGX_ERROR;
    }

    cln->handler = ngx_http_events_ws_cleanup;
    cln->data = ws;

    wslay_event_config_set_max_recv_msg_length(ws->wslay,
                                               NGX_HTTP_EVENTS_WS_MAX_MSG);

    if (ngx_http_events_ws_accept(r, &value) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_http_events_ws_extensions(r, ws) != NGX_OK) {
        return NGX_ERROR;
    }

    r->headers_out.status = NGX_HTTP_SWITCHING_PROTOCOLS;
    ngx_str_set(&r->headers_out.status_line, "101 Switching Protocols");
    r->headers_out.content_length_n = -1;
    r->keepalive = 0;

#if (NGX_HTTP_GZIP)
    r->gzip_tested = 1;
    r->gzip_ok = 0;
#endif

    if (ngx_http_events_http_add_header(r, "Sec-WebSocket-Accept", &value)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    /* "Connection: upgrade" is nginx's own for a 101 */
    ngx_str_set(&value, "websocket");
    if (ngx_http_events_http_add_header(r, "Upgrade", &value) != NGX_OK) {
        return NGX_ERROR;
    }

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK) {
        return rc;
    }

    if (ngx_http_send_special(r, NGX_HTTP_FLUSH) == NGX_ERROR) {
        return NGX_ERROR;
    }

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    if (clcf->tcp_nodelay && ngx_tcp_nodelay(c) != NGX_OK) {
        return NGX_ERROR;
    }

    c->log->action = "streaming events over a WebSocket";

    r->read_event_handler = ngx_http_events_ws_reader;
    r->write_event_handler = ngx_http_events_ws_writer;

    /* frames the client sent right after its handshake */
    if (c->read->ready || r->header_in->pos < r->header_in->last) {
        ngx_post_event(c->read, &ngx_posted_events);
    }

    if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* base64(SHA-1(key + GUID)) */

static ngx_int_t
ngx_http_events_ws_accept(ngx_http_request_t *r, ngx_str_t *accept)
{
    u_char            digest[20];
    ngx_str_t         src;
    ngx_sha1_t        sha1;
    ngx_table_elt_t  *h;

    h = ngx_http_events_http_header(r, "Sec-WebSocket-Key");

    ngx_sha1_init(&sha1);
    ngx_sha1_update(&sha1, h->value.data, h->value.len);
    ngx_sha1_update(&sha1, ngx_http_events_ws_guid,
                    sizeof(ngx_http_events_ws_guid) - 1);
    ngx_sha1_final(digest, &sha1);

    accept->data = ngx_pnalloc(r->pool, ngx_base64_encoded_length(20));
    if (accept->data == NULL) {
        return NGX_ERROR;
    }

    src.data = digest;
    src.len = 20;

    ngx_encode_base64(accept, &src);

    return NGX_OK;
}


/*
 * permessage-deflate, if offered and events_ws_deflate is on: the first
 * offer we can take (RFC 7692 5), every Sec-WebSocket-Extensions line
 * read as one list.  An offer with a parameter unknown, repeated or out
 * of its range is declined, as 7692 7.1 says, by not answering it; so is
 * server_max_window_bits=8, which zlib cannot make as raw deflate.
 */

static ngx_int_t
ngx_http_events_ws_extensions(ngx_http_request_t *r, ngx_http_events_ws_t *ws)
{
    u_char                      *p, *last;
    ngx_str_t                    value;
    ngx_uint_t                   i, bits;
    ngx_list_part_t             *part;
    ngx_table_elt_t             *h;
    ngx_http_events_loc_conf_t  *elcf;

    elcf = ngx_http_get_module_loc_conf(r, ngx_http_events_module);

    if (!elcf->ws_deflate) {
        return NGX_OK;
    }

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */ ; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                return NGX_OK;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len != sizeof("Sec-WebSocket-Extensions") - 1
            || ngx_strncasecmp(h[i].key.data,
                               (u_char *) "Sec-WebSocket-Extensions",
                               sizeof("Sec-WebSocket-Extensions") - 1)
               != 0)
        {
            continue;
        }

        p = h[i].value.data;
        last = p + h[i].value.len;

        for ( ;; ) {
            /* empty elements of the list are allowed (RFC 7230 7) */
            while (p < last && (*p == ' ' || *p == '\t' || *p == ',')) {
                p++;
            }

            if (p == last) {
                break;
            }

            if (ngx_http_events_ws_offer(&p, last, &bits)) {
                goto accept;
            }
        }
    }

accept:

    value.data = ngx_pnalloc(r->pool, sizeof("permessage-deflate; "
                             "server_no_context_takeover; "
                             "server_max_window_bits=15") - 1);
    if (value.data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(value.data, "permessage-deflate; "
                   "server_no_context_takeover",
                   sizeof("permessage-deflate; "
                          "server_no_context_takeover") - 1);

    if (bits) {
        /* the client's limit on our window: taken, so answered (7.1.2.1) */
        p = ngx_sprintf(p, "; server_max_window_bits=%ui", bits);
    }

    value.len = p - value.data;

    if (ngx_http_events_http_add_header(r, "Sec-WebSocket-Extensions",
                                        &value)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    ws->bits = bits ? bits : MAX_WBITS;

    wslay_event_config_set_allowed_rsv_bits(ws->wslay, WSLAY_RSV1_BIT);

    return NGX_OK;
}


/*
 * One offer: name *(";" param ["=" (token | quoted-string)]), up to the
 * comma that ends it (*pos is left there).  Whether it is a
 * permessage-deflate we take; *bits: its server_max_window_bits, or 0.
 * A line that does not parse ends its own reading, its offers declined.
 */

static ngx_uint_t
ngx_http_events_ws_offer(u_char **pos, u_char *last, ngx_uint_t *bits)
{
    u_char      *p, *start;
    size_t       len;
    ngx_str_t    value;
    ngx_uint_t   ok, seen, param;

    static ngx_str_t  params[] = {
        ngx_string("server_no_context_takeover"),
        ngx_string("client_no_context_takeover"),
        ngx_string("server_max_window_bits"),
        ngx_string("client_max_window_bits"),
        ngx_null_string
    };

    *bits = 0;
    seen = 0;

    p = ngx_http_events_ws_ows(*pos, last);
    start = p;
    p = ngx_http_events_ws_tchars(p, last);
    len = p - start;

    if (len == 0) {
        goto invalid;
    }

    ok = (len == sizeof("permessage-deflate") - 1
          && ngx_strncasecmp(start, (u_char *) "permessage-deflate", len)
             == 0);

    for ( ;; ) {
        p = ngx_http_events_ws_ows(p, last);

        if (p == last || *p == ',') {
            break;
        }

        if (*p++ != ';') {
            goto invalid;
        }

        p = ngx_http_events_ws_ows(p, last);
        start = p;
        p = ngx_http_events_ws_tchars(p, last);
        len = p - start;

        if (len == 0) {
            goto invalid;
        }

        p = ngx_http_events_ws_ows(p, last);

        value.data = NULL;
        value.len = 0;

        if (p < last && *p == '=') {
            p = ngx_http_events_ws_ows(p + 1, last);

            if (p < last && *p == '"') {
                value.data = ++p;

                while (p < last && *p != '"') {
                    p += (*p == '\\') ? 2 : 1;
                }

                if (p >= last) {
                    goto invalid;
                }

                value.len = p++ - value.data;

            } else {
                value.data = p;
                p = ngx_http_events_ws_tchars(p, last);
                value.len = p - value.data;

                if (value.len == 0) {
                    goto invalid;
                }
            }
        }

        for (param = 0; params[param].len; param++) {
            if (params[param].len == len
                && ngx_strncasecmp(params[param].data, start, len) == 0)
            {
                break;
            }
        }

        if (params[param].len == 0 || (seen & (1 << param))) {
            /* unknown or repeated: this offer is declined */
            ok = 0;
            continue;
        }

        seen |= 1 << param;

        switch (param) {

        case 0: /* server_no_context_takeover */
        case 1: /* client_no_context_takeover */
            if (value.data) {
                ok = 0;
            }
            break;

        case 2: /* server_max_window_bits */
            *bits = value.data ? ngx_http_events_ws_window(&value, 9) : 0;
            if (*bits == 0) {
                ok = 0;
            }
            break;

        default: /* client_max_window_bits: ours to say, we do not */
            if (value.data && ngx_http_events_ws_window(&value, 8) == 0) {
                ok = 0;
            }
        }
    }

    *pos = p;

    return ok;

invalid:

    *pos = last;

    return 0;
}


static u_char *
ngx_http_events_ws_ows(u_char *p, u_char *last)
{
    while (p < last && (*p == ' ' || *p == '\t')) {
        p++;
    }

    return p;
}


/* RFC 7230's tchar */

static u_char *
ngx_http_events_ws_tchars(u_char *p, u_char *last)
{
    while (p < last
           && ((*p >= '0' && *p <= '9')
               || ((*p | 0x20) >= 'a' && (*p | 0x20) <= 'z')
               || ngx_strlchr((u_char *) "!#$%&'*+-.^_`|~",
                              (u_char *) "!#$%&'*+-.^_`|~" + 15, *p)
                  != NULL))
    {
        p++;
    }

    return p;
}


/* a window's bits: decimal, no leading zero, min..15 (7692 7.1.2); or 0 */

static ngx_uint_t
ngx_http_events_ws_window(ngx_str_t *value, ngx_uint_t min)
{
    ngx_int_t  n;

    if (value->len == 0 || value->len > 2 || value->data[0] == '0') {
        return 0;
    }

    n = ngx_atoi(value->data, value->len);

    if (n == NGX_ERROR || n < (ngx_int_t) min || n > MAX_WBITS) {
        return 0;
    }

    return (ngx_uint_t) n;
}


/*
 * The worker's room to lay out one message (wslay copies it when it is
 * queued): grown to the largest envelope seen, never shrunk.
 */

static u_char *
ngx_http_events_ws_scratch(size_t len)
{
    u_char         *p;

    static u_char  *buf;
    static size_t   size;

    if (len > size) {
        len = ngx_max(len, 4096);

        p = ngx_alloc(len, ngx_cycle->log);
        if (p == NULL) {
            return NULL;
        }

        if (buf) {
            ngx_free(buf);
        }

        buf = p;
        size = len;
    }

    return buf;
}


static ngx_int_t
ngx_http_events_ws_queue(ngx_http_events_ws_t *ws, uint8_t opcode,
    u_char *data, size_t len)
{
    return ngx_http_events_ws_queue_rsv(ws, opcode, data, len,
                                        WSLAY_RSV_NONE);
}


static ngx_int_t
ngx_http_events_ws_queue_rsv(ngx_http_events_ws_t *ws, uint8_t opcode,
    u_char *data, size_t len, uint8_t rsv)
{
    int                     rv;
    struct wslay_event_msg  msg;

    msg.opcode = opcode;
    msg.msg = data;
    msg.msg_length = len;

    /* wslay sets RSV1 on the first frame only, and refuses it on control */
    rv = wslay_event_queue_msg_ex(ws->wslay, &msg, rsv);

    if (rv == WSLAY_ERR_NO_MORE_MSG) {
        /* closing: the client resumes from its last cursor */
        return NGX_OK;
    }

    return rv == 0 ? NGX_OK : NGX_ERROR;
}


/* the envelope with its cursor first: {"cursor":"...","id":...} */

static ngx_int_t
ngx_http_events_ws_event(ngx_http_events_stream_ctx_t *ctx,
    ngx_http_events_item_t *item)
{
    u_char  *p, *buf;
    size_t   len;

    len = sizeof("{\"cursor\":\"\",") - 1 + NGX_HTTP_EVENTS_CURSOR_LEN
          + item->json.len - 1;

    buf = ngx_http_events_ws_scratch(len);
    if (buf == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(buf, "{\"cursor\":\"", sizeof("{\"cursor\":\"") - 1);
    p = ngx_cpymem(p, ngx_http_events_stream_cursor(ctx, item->seq),
                   NGX_HTTP_EVENTS_CURSOR_LEN);
    p = ngx_cpymem(p, "\",", 2);
    p = ngx_cpymem(p, item->json.data + 1, item->json.len - 1);

    return ngx_http_events_ws_text(ctx->ws, buf, p - buf, item->seq);
}


/* {"control":"reset","reason":...}: the SSE frame's data, named inside */

static ngx_int_t
ngx_http_events_ws_control(ngx_http_events_stream_ctx_t *ctx,
    const char *name, u_char *id, u_char *json, size_t len)
{
    u_char  *p, *buf;

    buf = ngx_http_events_ws_scratch(sizeof("{\"control\":\"\",")
                                     + NGX_HTTP_EVENTS_MAX_TYPE + len);
    if (buf == NULL) {
        return NGX_ERROR;
    }

    p = ngx_sprintf(buf, "{\"control\":\"%s\",", name);
    p = ngx_cpymem(p, json + 1, len - 1);

    return ngx_http_events_ws_text(ctx->ws, buf, p - buf,
                                   NGX_HTTP_EVENTS_WS_NO_MEMO);
}


/*
 * A text message, compressed if deflate was agreed and it is worth it.
 * seq: the event's, by which the memo may have it already.
 */

static ngx_int_t
ngx_http_events_ws_text(ngx_http_events_ws_t *ws, u_char *data, size_t len,
    uint64_t seq)
{
    ngx_http_events_ws_memo_t  *m;

    if (ws->bits == 0 || len < NGX_HTTP_EVENTS_WS_DEFLATE_MIN) {
        return ngx_http_events_ws_queue(ws, WSLAY_TEXT_FRAME, data, len);
    }

    m = ngx_http_events_ws_deflate(ws->bits, data, len, seq);

    if (m == NULL || m->out == 0) {
        /* no memory, or it would not be shorter: as it is */
        return ngx_http_events_ws_queue(ws, WSLAY_TEXT_FRAME, data, len);
    }

    return ngx_http_events_ws_queue_rsv(ws, WSLAY_TEXT_FRAME, m->data + len,
                                        m->out, WSLAY_RSV1_BIT);
}


/*
 * The message compressed alone (server_no_context_takeover), its
 * trailing 00 00 ff ff cut (7692 7.2.1); the same envelope of the same
 * seq at the same window, compressed for another stream, is taken as it
 * is.  As many slots as SSE keeps frames (a burst framed stream after
 * stream still finds its events), within NGX_HTTP_EVENTS_WS_MEMO_BYTES;
 * slot NGX_HTTP_EVENTS_WS_MEMO is for messages that are not kept.
 */

static ngx_http_events_ws_memo_t *
ngx_http_events_ws_deflate(ngx_uint_t bits, u_char *data, size_t len,
    uint64_t seq)
{
    u_char                     *p;
    size_t                      size, out;
    z_stream                   *z;
    ngx_http_events_ws_memo_t  *m;

    static size_t                     kept;
    static ngx_http_events_ws_memo_t  memo[NGX_HTTP_EVENTS_WS_MEMO + 1];

    if (seq == NGX_HTTP_EVENTS_WS_NO_MEMO
        || len > NGX_HTTP_EVENTS_WS_MEMO_MAX)
    {
        m = &memo[NGX_HTTP_EVENTS_WS_MEMO];

    } else {
        m = &memo[seq % NGX_HTTP_EVENTS_WS_MEMO];

        if (m->data && m->seq == seq && m->bits == bits && m->len == len
            && ngx_memcmp(m->data, data, len) == 0)
        {
            return m;
        }
    }

    z = ngx_http_events_ws_zstream(bits);
    if (z == NULL) {
        return NULL;
    }

    /* a sync flush's empty block may add 5 bytes, its bit padding 1 */
    size = len + deflateBound(z, len) + 16;

    size = ngx_align(size, 1024);

    if (size > m->size && m != &memo[NGX_HTTP_EVENTS_WS_MEMO]
        && kept - m->size + size > NGX_HTTP_EVENTS_WS_MEMO_BYTES)
    {
        /* the memo is full of large ones: this one is not kept */
        m->len = 0;
        m = &memo[NGX_HTTP_EVENTS_WS_MEMO];
    }

    if (size > m->size) {
        p = ngx_alloc(size, ngx_cycle->log);
        if (p == NULL) {
            return NULL;
        }

        if (m->data) {
            ngx_free(m->data);
        }

        if (m != &memo[NGX_HTTP_EVENTS_WS_MEMO]) {
            kept += size - m->size;
        }

        m->data = p;
        m->size = size;
    }

    /* invalid until it is whole */
    m->len = 0;

    ngx_memcpy(m->data, data, len);

    if (deflateReset(z) != Z_OK) {
        return NULL;
    }

    z->next_in = data;
    z->avail_in = len;
    z->next_out = m->data + len;
    z->avail_out = m->size - len;

    if (deflate(z, Z_SYNC_FLUSH) != Z_OK || z->avail_in || !z->avail_out) {
        ngx_log_error(NGX_LOG_ALERT, ngx_cycle->log, 0,
                      "events: deflate() of a WebSocket message failed");
        return NULL;
    }

    out = m->size - len - z->avail_out;

    if (out < 4 || ngx_memcmp(m->data + len + out - 4, "\0\0\xff\xff", 4)
                   != 0)
    {
        ngx_log_error(NGX_LOG_ALERT, ngx_cycle->log, 0,
                      "events: deflate() did not end a WebSocket message "
                      "with a sync flush");
        return NULL;
    }

    out -= 4;

    m->seq = seq;
    m->bits = bits;
    m->len = len;
    m->out = out < len ? out : 0;

    return m;
}


/*
 * The worker's zlib stream for a window, made on first use and kept:
 * one per window size, never one per connection.
 */

static z_stream *
ngx_http_events_ws_zstream(ngx_uint_t bits)
{
    z_stream         *z;

    static z_stream  *zs[MAX_WBITS + 1];

    if (zs[bits]) {
        return zs[bits];
    }

    z = ngx_calloc(sizeof(z_stream), ngx_cycle->log);
    if (z == NULL) {
        return NULL;
    }

    if (deflateInit2(z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, - (int) bits, 8,
                     Z_DEFAULT_STRATEGY)
        != Z_OK)
    {
        ngx_log_error(NGX_LOG_ALERT, ngx_cycle->log, 0,
                      "events: deflateInit2(%ui) failed", bits);
        ngx_free(z);
        return NULL;
    }

    zs[bits] = z;

    return z;
}


/* a ping after silence; one left unanswered since the last: gone */

static ngx_int_t
ngx_http_events_ws_heartbeat(ngx_http_events_stream_ctx_t *ctx)
{
    ngx_http_events_ws_t  *ws;

    ws = ctx->ws;

    if (ws->pinged) {
        ngx_log_error(NGX_LOG_INFO, ctx->request->connection->log, 0,
                      "events: WebSocket client did not answer a ping");
        return NGX_ERROR;
    }

    ws->pinged = 1;

    return ngx_http_events_ws_queue(ws, WSLAY_PING, NULL, 0);
}


/*
 * Write what wslay has, as much as the socket takes; else wait for the
 * write event, within send_timeout.  Once all is out and the stream is
 * ending, the close goes, last.
 */

static ngx_int_t
ngx_http_events_ws_flush(ngx_http_events_stream_ctx_t *ctx)
{
    ssize_t                    n;
    ngx_event_t               *wev;
    ngx_connection_t          *c;
    ngx_http_request_t        *r;
    ngx_http_events_ws_t      *ws;
    ngx_http_events_ws_end_t  *end;
    ngx_http_core_loc_conf_t  *clcf;

    r = ctx->request;
    c = r->connection;
    wev = c->write;
    ws = ctx->ws;

    if (c->buffered) {
        /* the 101 is not all out yet */
        if (ngx_http_output_filter(r, NULL) == NGX_ERROR) {
            return NGX_ERROR;
        }

        if (c->buffered) {
            goto wait;
        }
    }

    for ( ;; ) {

        while (ws->pos < ws->last) {
            n = c->send(c, ws->pos, ws->last - ws->pos);

            if (n == NGX_ERROR) {
                return NGX_ERROR;
            }

            if (n == NGX_AGAIN) {
                goto wait;
            }

            ws->pos += n;
        }

        ws->pos = ws->start;
        ws->last = ws->start;

        if (!wslay_event_want_write(ws->wslay)) {

            if (!ws->closing || wslay_event_get_close_sent(ws->wslay)) {
                break;
            }

            end = &ngx_http_events_ws_ends[ws->close];
            ws->closing = 0;

            /* NO_MORE_MSG: the client's close came first, answered */
            (void) wslay_event_queue_close(ws->wslay, end->code,
                                           (uint8_t *) end->reason,
                                           ngx_strlen(end->reason));
            continue;
        }

        if (wslay_event_send(ws->wslay) != 0) {
            return NGX_ERROR;
        }

        if (ws->pos == ws->last) {
            break;
        }
    }

    if (wev->timer_set) {
        ngx_del_timer(wev);
    }

    /* with level-triggered events: not woken for nothing to write */
    if (ngx_handle_write_event(wev, 0) != NGX_OK) {
        return NGX_ERROR;
    }

    /* all out: an idle stream holds no buffer */
    if (ws->start && ngx_pfree(r->pool, ws->start) == NGX_OK) {
        ws->start = NULL;
        ws->pos = NULL;
        ws->last = NULL;
    }

    return NGX_OK;

wait:

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    if (!wev->delayed) {
        ngx_add_timer(wev, clcf->send_timeout);
    }

    if (ngx_handle_write_event(wev, clcf->send_lowat) != NGX_OK) {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static off_t
ngx_http_events_ws_unsent(ngx_http_events_stream_ctx_t *ctx)
{
    ngx_http_events_ws_t  *ws;

    ws = ctx->ws;

    return (off_t) wslay_event_get_queued_msg_length(ws->wslay)
           + (ws->last - ws->pos);
}


/* the messages queued, then the close with why, then the client's */

static void
ngx_http_events_ws_end(ngx_http_events_stream_ctx_t *ctx, ngx_uint_t why)
{
    ngx_http_events_ws_t  *ws;

    ws = ctx->ws;
    ws->closing = 1;
    ws->close = why;

    if (ngx_http_events_ws_flush(ctx) != NGX_OK) {
        ngx_http_finalize_request(ctx->request, NGX_ERROR);
        return;
    }

    (void) ngx_http_events_ws_settle(ctx);
}


/*
 * After a close went out, the client's close ends it, or its absence
 * within NGX_HTTP_EVENTS_WS_CLOSE_WAIT (a timer that holds up a worker's
 * exit, as it should: this is a connection still open).  Whether the
 * request was finalized.
 */

static ngx_uint_t
ngx_http_events_ws_settle(ngx_http_events_stream_ctx_t *ctx)
{
    ngx_connection_t      *c;
    ngx_http_request_t    *r;
    ngx_http_events_ws_t  *ws;

    ws = ctx->ws;
    r = ctx->request;
    c = r->connection;

    if (!wslay_event_get_close_sent(ws->wslay) || ws->pos < ws->last) {
        return 0;
    }

    if (!wslay_event_want_read(ws->wslay)) {
        ngx_http_finalize_request(r, NGX_ERROR);
        return 1;
    }

    if (!c->read->timer_set) {
        ngx_add_timer(c->read, NGX_HTTP_EVENTS_WS_CLOSE_WAIT);
    }

    return 0;
}


static void
ngx_http_events_ws_reader(ngx_http_request_t *r)
{
    ngx_event_t                   *rev;
    ngx_connection_t              *c;
    ngx_http_events_ctx_t         *rctx;
    ngx_http_events_stream_ctx_t  *ctx;

    c = r->connection;
    rev = c->read;
    rctx = ngx_http_get_module_ctx(r, ngx_http_events_module);
    ctx = rctx ? rctx->stream : NULL;

    if (rev->timedout || ctx == NULL) {
        /* no close from the client in time after ours */
        ngx_http_finalize_request(r, NGX_ERROR);
        return;
    }

    if (wslay_event_recv(ctx->ws->wslay) != 0) {

        if (!ctx->ws->gone) {
            /* a frame wslay cannot parse: its close, once, and the end */
            ngx_log_error(NGX_LOG_INFO, c->log, 0,
                          "events: WebSocket protocol error");
            (void) ngx_http_events_ws_flush(ctx);
        }

        ngx_http_finalize_request(r, NGX_ERROR);
        return;
    }

    if (!ctx->done && !wslay_event_want_read(ctx->ws->wslay)) {
        /* the client's close, or its protocol error: answered, no more */
        ngx_http_events_stream_detach(ctx);
    }

    if (ngx_http_events_ws_flush(ctx) != NGX_OK) {
        ngx_http_finalize_request(r, NGX_ERROR);
        return;
    }

    if (ngx_http_events_ws_settle(ctx)) {
        return;
    }

    if (ngx_handle_read_event(rev, 0) != NGX_OK) {
        ngx_http_finalize_request(r, NGX_ERROR);
    }
}


static void
ngx_http_events_ws_writer(ngx_http_request_t *r)
{
    ngx_event_t                   *wev;
    ngx_connection_t              *c;
    ngx_http_events_ctx_t         *rctx;
    ngx_http_events_stream_ctx_t  *ctx;

    c = r->connection;
    wev = c->write;
    rctx = ngx_http_get_module_ctx(r, ngx_http_events_module);
    ctx = rctx ? rctx->stream : NULL;

    if (wev->timedout) {
        ngx_log_error(NGX_LOG_INFO, c->log, NGX_ETIMEDOUT,
                      "events: WebSocket client timed out");
        c->timedout = 1;
        ngx_http_finalize_request(r, NGX_ERROR);
        return;
    }

    if (wev->delayed || ctx == NULL) {
        return;
    }

    if (ngx_http_events_ws_flush(ctx) != NGX_OK) {
        ngx_http_finalize_request(r, NGX_ERROR);
        return;
    }

    if (ngx_http_events_ws_settle(ctx)) {
        return;
    }

    ngx_http_events_stream_pump(ctx);
}


/* wslay reads: first what came after the handshake, then the socket */

static ssize_t
ngx_http_events_ws_recv(wslay_event_context_ptr wslay, uint8_t *buf,
    size_t len, int flags, void *data)
{
    ngx_http_events_ws_t *ws = data;

    ssize_t              n;
    ngx_buf_t           *b;
    ngx_connection_t    *c;
    ngx_http_request_t  *r;

    r = ws->ctx->request;
    c = r->connection;
    b = r->header_in;

    if (b->pos < b->last) {
        n = ngx_min((size_t) (b->last - b->pos), len);
        ngx_memcpy(buf, b->pos, n);
        b->pos += n;
        return n;
    }

    n = c->recv(c, buf, len);

    if (n == NGX_AGAIN) {
        wslay_event_set_error(wslay, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }

    if (n == 0 || n == NGX_ERROR) {
        ws->gone = 1;
        wslay_event_set_error(wslay, WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }

    return n;
}


/* wslay writes: into the buffer, written out by flush() */

static ssize_t
ngx_http_events_ws_send(wslay_event_context_ptr wslay, const uint8_t *data,
    size_t len, int flags, void *user)
{
    ngx_http_events_ws_t *ws = user;

    size_t  n;

    if (ws->start == NULL) {
        ws->start = ngx_palloc(ws->ctx->request->pool,
                               NGX_HTTP_EVENTS_WS_BUF);
        if (ws->start == NULL) {
            wslay_event_set_error(wslay, WSLAY_ERR_CALLBACK_FAILURE);
            return -1;
        }

        ws->pos = ws->start;
        ws->last = ws->start;
    }

    n = ngx_min(len, (size_t) (ws->start + NGX_HTTP_EVENTS_WS_BUF
                               - ws->last));

    if (n == 0) {
        wslay_event_set_error(wslay, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }

    ws->last = ngx_cpymem(ws->last, data, n);

    return n;
}


/* pongs answer our pings; a client's messages are not for us */

static void
ngx_http_events_ws_message(wslay_event_context_ptr wslay,
    const struct wslay_event_on_msg_recv_arg *arg, void *data)
{
    ngx_http_events_ws_t *ws = data;

    if (arg->opcode == WSLAY_PONG) {
        ws->pinged = 0;
        return;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, ws->ctx->request->connection->log, 0,
                   "events: WebSocket message dropped, opcode %d, %uz bytes",
                   (int) arg->opcode, arg->msg_length);
}


static void
ngx_http_events_ws_cleanup(void *data)
{
    ngx_http_events_ws_t *ws = data;

    wslay_event_context_free(ws->wslay);
}
