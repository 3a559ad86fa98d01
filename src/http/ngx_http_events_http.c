
/*
 * Copyright (C) ngx_http_events_module authors
 */


/*
 * The request/response toolkit every endpoint answers with: a POST's
 * body whole in one buffer (413 beyond its limit), headers, the JSON
 * error envelope of the contract, 404 and 405 with Allow.  Endpoints
 * (REST, streams, status, webhooks, capture) sit above it; it knows none
 * of them.  And, for a request that stays for hours, giving back its
 * header buffer.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_events_module.h"
#include "ngx_http_events_json.h"
#include "ngx_http_events_http.h"


static void ngx_http_events_http_body_read(ngx_http_request_t *r);
static ngx_int_t ngx_http_events_http_too_large(ngx_http_request_t *r,
    size_t max, const char *message);
static u_char *ngx_http_events_http_room(ngx_pool_t *pool, size_t size);


ngx_str_t  ngx_http_events_http_json_type = ngx_string("application/json");


ngx_uint_t
ngx_http_events_http_is_json(ngx_http_request_t *r)
{
    u_char  *p;
    size_t   len;

    if (r->headers_in.content_type == NULL) {
        return 0;
    }

    p = r->headers_in.content_type->value.data;
    len = r->headers_in.content_type->value.len;

    if (len < 16 || ngx_strncasecmp(p, (u_char *) "application/json", 16)
                    != 0)
    {
        return 0;
    }

    return len == 16 || p[16] == ';' || p[16] == ' ';
}

/*
 * The body of a POST, at most max bytes, in one buffer, to handler(r,
 * data, len), whose answer finalizes the request.  Larger is 413, before
 * reading when Content-Length says so, else once the body is read; its
 * message is too_large, or NULL: the limit.
 */

ngx_int_t
ngx_http_events_http_body(ngx_http_request_t *r, size_t max,
    const char *too_large, ngx_http_events_http_body_pt handler)
{
    ngx_int_t               rc;
    ngx_http_events_ctx_t  *ctx;

    if (r->headers_in.content_length_n > (off_t) max) {
        ngx_http_discard_request_body(r);
        return ngx_http_events_http_too_large(r, max, too_large);
    }

    /* for the body handler, later */
    ctx = ngx_http_events_ctx(r);
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->body_max = max;
    ctx->body_too_large = too_large;
    ctx->body_handler = handler;

    r->request_body_in_single_buf = 1;
    r->request_body_in_clean_file = 1;
    r->request_body_file_log_level = 0;

    rc = ngx_http_read_client_request_body(r, ngx_http_events_http_body_read);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }

    return NGX_DONE;
}

static void
ngx_http_events_http_body_read(ngx_http_request_t *r)
{
    ngx_int_t               rc;
    ngx_str_t               body;
    ngx_http_events_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_events_module);

    rc = ngx_http_events_http_read_body(r, &body);

    if (rc == NGX_ERROR) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    if (rc == NGX_DECLINED || body.len > ctx->body_max) {
        /* chunked, so no Content-Length said it before */
        ngx_http_finalize_request(r,
                           ngx_http_events_http_too_large(r, ctx->body_max,
                                                       ctx->body_too_large));
        return;
    }

    ngx_http_finalize_request(r, ctx->body_handler(r, body.data, body.len));
}

static ngx_int_t
ngx_http_events_http_too_large(ngx_http_request_t *r, size_t max,
    const char *message)
{
    ngx_http_events_error_t  err;

    if (message) {
        ngx_http_events_error(&err, 413, "payload_too_large", NULL, NULL,
                              NULL, "%s", message);

    } else {
        ngx_http_events_error(&err, 413, "payload_too_large", NULL, NULL,
                              NULL, "the body may be at most %uz bytes", max);
    }

    return ngx_http_events_http_send_error(r, &err, NULL);
}

/* the body in one buffer, wherever nginx kept it */

ngx_int_t
ngx_http_events_http_read_body(ngx_http_request_t *r, ngx_str_t *body)
{
    u_char                      *p;
    off_t                        len;
    ssize_t                      n;
    ngx_buf_t                   *b;
    ngx_chain_t                 *cl;
    ngx_http_events_loc_conf_t  *elcf;

    elcf = ngx_http_get_module_loc_conf(r, ngx_http_events_module);

    ngx_str_set(body, "");

    if (r->request_body == NULL || r->request_body->bufs == NULL) {
        return NGX_OK;
    }

    len = 0;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        b = cl->buf;
        len += b->in_file ? b->file_last - b->file_pos : b->last - b->pos;
    }

    if (len > (off_t) elcf->max_body_size) {
        return NGX_DECLINED;
    }

    if (len == 0) {
        return NGX_OK;
    }

    b = r->request_body->bufs->buf;

    if (r->request_body->bufs->next == NULL && !b->in_file) {
        body->data = b->pos;
        body->len = len;
        return NGX_OK;
    }

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    body->data = p;
    body->len = len;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        b = cl->buf;

        if (!b->in_file) {
            p = ngx_cpymem(p, b->pos, b->last - b->pos);
            continue;
        }

        n = ngx_read_file(b->file, p, b->file_last - b->file_pos,
                          b->file_pos);

        if (n != b->file_last - b->file_pos) {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "events: short read of the request body file "
                          "\"%V\"", &b->file->name);
            return NGX_ERROR;
        }

        p += n;
    }

    return NGX_OK;
}

ngx_int_t
ngx_http_events_http_not_allowed(ngx_http_request_t *r, char *allow)
{
    ngx_str_t                value;
    ngx_http_events_error_t  err;

    ngx_http_discard_request_body(r);

    value.data = (u_char *) allow;
    value.len = ngx_strlen(allow);

    if (ngx_http_events_http_add_header(r, "Allow", &value) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_events_error(&err, 405, "method_not_allowed", NULL, NULL, NULL,
                          "this endpoint allows %s", allow);

    return ngx_http_events_http_send_error(r, &err, NULL);
}

ngx_int_t
ngx_http_events_http_not_found(ngx_http_request_t *r, const char *message)
{
    ngx_http_events_error_t  err;

    ngx_http_discard_request_body(r);

    ngx_http_events_error(&err, 404, "not_found", NULL, NULL, NULL, "%s",
                          message);

    return ngx_http_events_http_send_error(r, &err, NULL);
}

ngx_int_t
ngx_http_events_http_add_header(ngx_http_request_t *r, char *name,
    ngx_str_t *value)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    h->key.data = (u_char *) name;
    h->key.len = ngx_strlen(name);
    h->value = *value;

    /*
     * Location is not made r->headers_out.location: nginx would make it
     * absolute with its own host and port, which behind a proxy names
     * the upstream; a relative reference is what the client can use.
     */

    return NGX_OK;
}

/* a request header by name, case-insensitively; NULL: not sent */

ngx_table_elt_t *
ngx_http_events_http_header(ngx_http_request_t *r, const char *name)
{
    size_t            len;
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    len = ngx_strlen(name);
    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */ ; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                return NULL;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len == len
            && ngx_strncasecmp(h[i].key.data, (u_char *) name, len) == 0)
        {
            return &h[i];
        }
    }
}


ngx_int_t
ngx_http_events_http_send_error(ngx_http_request_t *r,
    ngx_http_events_error_t *err, ngx_str_t *extra)
{
    u_char  *p, *body;
    size_t   len;

    len = sizeof("{\"error\":{\"status\":,\"code\":\"\",\"message\":\"\","
                 "\"param\":\"\"}}")
          + NGX_INT_T_LEN + ngx_strlen(err->code)
          + ngx_http_events_json_escape_len(err->message, err->message_len)
          + ngx_http_events_json_escape_len(err->name, err->name_len)
          + (extra ? extra->len : 0);

    body = ngx_pnalloc(r->pool, len);
    if (body == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_sprintf(body, "{\"error\":{\"status\":%ui,\"code\":\"%s\","
                    "\"message\":\"", err->status, err->code);
    p = ngx_http_events_json_escape(p, err->message, err->message_len);
    *p++ = '"';

    if (err->kind && err->name_len) {
        p = ngx_sprintf(p, ",\"%s\":\"", err->kind);
        p = ngx_http_events_json_escape(p, err->name, err->name_len);
        *p++ = '"';
    }

    if (extra) {
        p = ngx_cpymem(p, extra->data, extra->len);
    }

    *p++ = '}';
    *p++ = '}';

    if (err->status >= 500) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "events: %ui %s: %*s", err->status, err->code,
                      err->message_len, err->message);

    } else {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "events: %ui %s: %*s", err->status, err->code,
                      err->message_len, err->message);
    }

    return ngx_http_events_http_send(r, err->status,
                                     &ngx_http_events_http_json_type,
                                     body, p - body);
}

/*
 * a builder's answer: one that ran out of memory on the way is a 500, said
 * once here rather than after every piece
 */

ngx_int_t
ngx_http_events_http_send_buf(ngx_http_request_t *r, ngx_uint_t status,
    ngx_str_t *type, ngx_http_events_buf_t *b)
{
    if (b->failed) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "events: no memory for a %uz-byte answer",
                      (size_t) (b->end - b->start));
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (type == NULL) {
        type = &ngx_http_events_http_json_type;
    }

    return ngx_http_events_http_send(r, status, type, b->start,
                                     b->pos - b->start);
}


ngx_int_t
ngx_http_events_http_send(ngx_http_request_t *r, ngx_uint_t status,
    ngx_str_t *type, u_char *data, size_t len)
{
    ngx_int_t     rc;
    ngx_buf_t    *b;
    ngx_chain_t   out;

    r->headers_out.status = status;
    r->headers_out.content_length_n = len;
    r->headers_out.content_type = *type;
    r->headers_out.content_type_len = type->len;
    r->headers_out.content_type_lowcase = NULL;

    if (r->method == NGX_HTTP_HEAD) {
        r->header_only = 1;
    }

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->pos = data;
    b->last = data + len;
    b->memory = 1;
    b->last_buf = (r == r->main);
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


/*
 * A stream keeps its request for hours, and with it the connection's
 * header buffer (client_header_buffer_size, 1k by default) that nginx
 * frees only once a request is over (ngx_http_set_keepalive).  What the
 * request line and headers took of it is copied where a block of the
 * request's pool has room, every pointer into it that nginx keeps (the
 * parser's, the header list, cached variables: what the access and
 * error logs read at the end) and the caller's strs are moved along,
 * and the buffer is freed; the keepalive path allocates a new one if
 * the connection outlives the stream.  Only an HTTP/1 request whose
 * headers fit that buffer, with nothing read after them, no body and
 * no subrequest; called before the caller takes a reference.
 * NGX_OK: released; NGX_DECLINED: nothing to gain, nothing changed.
 */

#define ngx_http_events_http_move(p)                                          \
    if ((p) >= old && (p) <= end) { (p) = new + ((p) - old); }

#define ngx_http_events_http_move_str(s)                                      \
    if ((s).len && (s).data >= old && (s).data < end) {                       \
        (s).data = new + ((s).data - old);                                    \
    }

ngx_int_t
ngx_http_events_http_release_header(ngx_http_request_t *r, ngx_str_t **strs,
    ngx_uint_t n)
{
    u_char                     *old, *end, *new;
    size_t                      size;
    ngx_uint_t                  i;
    ngx_buf_t                  *b;
    ngx_list_part_t            *part;
    ngx_table_elt_t            *h;
    ngx_connection_t           *c;
    ngx_pool_large_t           *l;
    ngx_http_variable_value_t  *v;
    ngx_http_core_main_conf_t  *cmcf;

    c = r->connection;
    b = r->header_in;

    /*
     * no subrequest either (mirror, or one in the background): its copies
     * of the request's strings would not be moved
     */

    if (r != r->main || r->count != 1 || r->postponed
        || r->http_version > NGX_HTTP_VERSION_11
        || b == NULL || b != c->buffer || b->start == NULL
        || b->pos != b->last || r->discard_body
        || r->headers_in.content_length_n > 0 || r->headers_in.chunked)
    {
        return NGX_DECLINED;
    }

    /* only memory of its own goes back */

    for (l = c->pool->large; l; l = l->next) {
        if (l->alloc == b->start) {
            break;
        }
    }

    if (l == NULL) {
        return NGX_DECLINED;
    }

    old = b->start;
    end = b->last;

    new = ngx_http_events_http_room(r->pool, end - old);
    if (new == NULL) {
        return NGX_DECLINED;
    }

    ngx_memcpy(new, old, end - old);

    ngx_http_events_http_move_str(r->request_line);
    ngx_http_events_http_move_str(r->uri);
    ngx_http_events_http_move_str(r->args);
    ngx_http_events_http_move_str(r->exten);
    ngx_http_events_http_move_str(r->unparsed_uri);
    ngx_http_events_http_move_str(r->method_name);
    ngx_http_events_http_move_str(r->http_protocol);
    ngx_http_events_http_move_str(r->schema);
    ngx_http_events_http_move_str(r->headers_in.server);
    ngx_http_events_http_move_str(r->headers_in.user);
    ngx_http_events_http_move_str(r->headers_in.passwd);

    ngx_http_events_http_move(r->captures_data);
    ngx_http_events_http_move(r->header_name_start);
    ngx_http_events_http_move(r->header_name_end);
    ngx_http_events_http_move(r->header_start);
    ngx_http_events_http_move(r->header_end);
    ngx_http_events_http_move(r->uri_start);
    ngx_http_events_http_move(r->uri_end);
    ngx_http_events_http_move(r->uri_ext);
    ngx_http_events_http_move(r->args_start);
    ngx_http_events_http_move(r->request_start);
    ngx_http_events_http_move(r->request_end);
    ngx_http_events_http_move(r->method_end);
    ngx_http_events_http_move(r->schema_start);
    ngx_http_events_http_move(r->schema_end);
    ngx_http_events_http_move(r->host_start);
    ngx_http_events_http_move(r->host_end);
    ngx_http_events_http_move(r->port_start);
    ngx_http_events_http_move(r->port_end);

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        ngx_http_events_http_move_str(h[i].key);
        ngx_http_events_http_move_str(h[i].value);
        ngx_http_events_http_move(h[i].lowcase_key);
    }

    cmcf = ngx_http_get_module_main_conf(r, ngx_http_core_module);
    v = r->variables;

    for (i = 0; v && i < cmcf->variables.nelts; i++) {
        if (v[i].valid && !v[i].not_found && v[i].len
            && v[i].data >= old && v[i].data < end)
        {
            v[i].data = new + (v[i].data - old);
        }
    }

    for (i = 0; i < n; i++) {
        ngx_http_events_http_move_str(*strs[i]);
    }

    size = b->end - b->start;

    (void) ngx_pfree(c->pool, old);

    /*
     * as ngx_http_set_keepalive() leaves it: no memory, and a keep-alive
     * request after the stream gets a new one of end - start bytes
     */
    b->start = NULL;
    b->end = (u_char *) (uintptr_t) size;
    b->pos = NULL;
    b->last = NULL;

    return NGX_OK;
}


/* size bytes in a block the pool already has, or NULL */

static u_char *
ngx_http_events_http_room(ngx_pool_t *pool, size_t size)
{
    ngx_pool_t  *p;

    if (size > pool->max) {
        return NULL;
    }

    for (p = pool->current; p; p = p->d.next) {
        if ((size_t) (p->d.end - p->d.last) >= size) {
            return ngx_pnalloc(pool, size);
        }
    }

    return NULL;
}
