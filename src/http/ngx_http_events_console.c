
/*
 * Copyright (C) ngx_http_events_module authors
 */


/*
 * events_console: a page in the browser to look at events (live tail,
 * history, entities, types, webhooks, status) instead of reading JSON.
 *
 * The page, its style and script, and the client (events.js) are files
 * of the repository compiled into the module by clients/console/embed.sh
 * (sh and sed, run by the rule config.make adds), so a user needs no
 * build tool and the page no CDN.  The page talks to the locations the
 * directive names (api=, stream=, webhooks=, status=) with the caller's
 * own credentials, so it shows what the API shows that caller and
 * nothing more: the console has no access of its own.
 *
 * Each location's page is made at configuration time: the embedded HTML
 * with the locations in a <meta> tag (JSON, escaped for an attribute)
 * where the marker is.  The answers are constants, so each has an ETag
 * (CRC32 of its bytes) computed then too; nginx's not_modified filter
 * answers 304 for a matching If-None-Match.  This is a small module of
 * its own beside ngx_http_events_module: it needs nothing of the store.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_events_http.h"

/* made in objs/ at build time from clients/: see config.make */
#include <ngx_http_events_console_files.h>


#define NGX_HTTP_EVENTS_CONSOLE_MARKER  "<!--events-config-->"


typedef struct {
    ngx_str_t                        name;
    ngx_str_t                        type;
    ngx_str_t                        body;
    ngx_str_t                        etag;
} ngx_http_events_console_file_t;


typedef struct {
    ngx_str_t                        api;
    ngx_str_t                        stream;
    ngx_str_t                        webhooks;         /* empty: off */
    ngx_str_t                        status;           /* empty: off */
    ngx_http_events_console_file_t  *files;            /* NULL: none */
} ngx_http_events_console_loc_conf_t;


static ngx_int_t ngx_http_events_console_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_events_console_send(ngx_http_request_t *r,
    ngx_http_events_console_file_t *f, ngx_uint_t page);
static ngx_int_t ngx_http_events_console_redirect(ngx_http_request_t *r);
static void *ngx_http_events_console_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_events_console(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_events_console_uri(ngx_conf_t *cf, ngx_str_t *param,
    size_t skip, ngx_str_t *to, ngx_uint_t may_be_off);
static ngx_int_t ngx_http_events_console_page(ngx_conf_t *cf,
    ngx_http_events_console_loc_conf_t *ccf, ngx_str_t *page);
static u_char *ngx_http_events_console_attr(u_char *p, ngx_str_t *name,
    ngx_str_t *value, ngx_uint_t last);
static size_t ngx_http_events_console_attr_len(ngx_str_t *value);
static ngx_int_t ngx_http_events_console_file(ngx_conf_t *cf,
    ngx_http_events_console_file_t *f, char *name, char *type,
    u_char *data, size_t len);


static ngx_command_t  ngx_http_events_console_commands[] = {

    { ngx_string("events_console"),
      NGX_HTTP_LOC_CONF|NGX_CONF_ANY,
      ngx_http_events_console,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_events_console_module_ctx = {
    NULL,                                  /* preconfiguration */
    NULL,                                  /* postconfiguration */

    NULL,                                  /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_events_console_create_loc_conf, /* create location conf */
    NULL                                   /* merge location configuration */
};


ngx_module_t  ngx_http_events_console_module = {
    NGX_MODULE_V1,
    &ngx_http_events_console_module_ctx,   /* module context */
    ngx_http_events_console_commands,      /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    NULL,                                  /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    NULL,                                  /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


/* the index first: "files" is index, style, script, client, end */

enum {
    NGX_HTTP_EVENTS_CONSOLE_INDEX = 0,
    NGX_HTTP_EVENTS_CONSOLE_CSS,
    NGX_HTTP_EVENTS_CONSOLE_JS,
    NGX_HTTP_EVENTS_CONSOLE_CLIENT,
    NGX_HTTP_EVENTS_CONSOLE_NFILES
};


static ngx_str_t  ngx_http_events_console_csp = ngx_string(
    "default-src 'none'; script-src 'self'; style-src 'self'; "
    "connect-src *; img-src 'self' data:; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'");


static ngx_int_t
ngx_http_events_console_handler(ngx_http_request_t *r)
{
    u_char                              *p, *last;
    ngx_str_t                            name;
    ngx_uint_t                           i;
    ngx_http_core_loc_conf_t            *clcf;
    ngx_http_events_console_loc_conf_t  *ccf;

    ccf = ngx_http_get_module_loc_conf(r, ngx_http_events_console_module);

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return ngx_http_events_http_not_allowed(r, "GET, HEAD");
    }

    /* the last path segment names the file; "" is the page */

    last = r->uri.data + r->uri.len;

    for (p = last; p > r->uri.data && p[-1] != '/'; p--) {
        /* void */
    }

    name.data = p;
    name.len = last - p;

    if (name.len == 0 || (name.len == 10
                          && ngx_strncmp(p, "index.html", 10) == 0))
    {
        return ngx_http_events_console_send(r,
                               &ccf->files[NGX_HTTP_EVENTS_CONSOLE_INDEX], 1);
    }

    for (i = 1; i < NGX_HTTP_EVENTS_CONSOLE_NFILES; i++) {
        if (name.len == ccf->files[i].name.len
            && ngx_strncmp(name.data, ccf->files[i].name.data, name.len) == 0)
        {
            return ngx_http_events_console_send(r, &ccf->files[i], 0);
        }
    }

    /* "location /console" asked as "/console": its files are relative */

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    if (r->uri.len == clcf->name.len
        && ngx_strncmp(r->uri.data, clcf->name.data, r->uri.len) == 0)
    {
        return ngx_http_events_console_redirect(r);
    }

    return ngx_http_events_http_not_found(r, "the console has no such file");
}


static ngx_int_t
ngx_http_events_console_send(ngx_http_request_t *r,
    ngx_http_events_console_file_t *f, ngx_uint_t page)
{
    ngx_int_t     rc;
    ngx_buf_t    *b;
    ngx_str_t     v;
    ngx_chain_t   out;

    if (ngx_http_discard_request_body(r) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_type = f->type;
    r->headers_out.content_type_len = f->type.len;
    r->headers_out.content_length_n = f->body.len;

    /* the ETag changes with the module: a new build is fetched again */

    r->headers_out.etag = ngx_list_push(&r->headers_out.headers);
    if (r->headers_out.etag == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    r->headers_out.etag->hash = 1;
    ngx_str_set(&r->headers_out.etag->key, "ETag");
    r->headers_out.etag->value = f->etag;

    ngx_str_set(&v, "no-cache");
    if (ngx_http_events_http_add_header(r, "Cache-Control", &v) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_str_set(&v, "nosniff");
    if (ngx_http_events_http_add_header(r, "X-Content-Type-Options", &v)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (page) {
        /* tokens are typed into the page: no script of another origin */
        if (ngx_http_events_http_add_header(r, "Content-Security-Policy",
                                            &ngx_http_events_console_csp)
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ngx_str_set(&v, "no-referrer");
        if (ngx_http_events_http_add_header(r, "Referrer-Policy", &v)
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->pos = f->body.data;
    b->last = f->body.data + f->body.len;
    b->memory = 1;
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


static ngx_int_t
ngx_http_events_console_redirect(ngx_http_request_t *r)
{
    u_char           *p;
    ngx_table_elt_t  *h;

    ngx_http_clear_location(r);

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_pnalloc(r->pool, r->uri.len + 1);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "Location");
    h->value.data = p;
    p = ngx_cpymem(p, r->uri.data, r->uri.len);
    *p++ = '/';
    h->value.len = p - h->value.data;

    r->headers_out.location = h;

    return NGX_HTTP_MOVED_PERMANENTLY;
}


static void *
ngx_http_events_console_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_events_console_loc_conf_t  *ccf;

    /* set by ngx_pcalloc(): every string empty, files NULL */

    ccf = ngx_pcalloc(cf->pool, sizeof(ngx_http_events_console_loc_conf_t));
    if (ccf == NULL) {
        return NULL;
    }

    return ccf;
}


static char *
ngx_http_events_console(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_events_console_loc_conf_t *ccf = conf;

    char                      *rv;
    ngx_str_t                 *value, page;
    ngx_uint_t                 i;
    ngx_http_core_loc_conf_t  *clcf;

    if (ccf->files) {
        return "is duplicate";
    }

    ngx_str_set(&ccf->api, "/events");
    ngx_str_set(&ccf->stream, "/events/stream");
    ngx_str_set(&ccf->webhooks, "/webhooks");
    ngx_str_set(&ccf->status, "/events-status");

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "api=", 4) == 0) {
            rv = ngx_http_events_console_uri(cf, &value[i], 4, &ccf->api, 0);

        } else if (ngx_strncmp(value[i].data, "stream=", 7) == 0) {
            rv = ngx_http_events_console_uri(cf, &value[i], 7, &ccf->stream,
                                             0);

        } else if (ngx_strncmp(value[i].data, "webhooks=", 9) == 0) {
            rv = ngx_http_events_console_uri(cf, &value[i], 9,
                                             &ccf->webhooks, 1);

        } else if (ngx_strncmp(value[i].data, "status=", 7) == 0) {
            rv = ngx_http_events_console_uri(cf, &value[i], 7, &ccf->status,
                                             1);

        } else {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid parameter \"%V\"", &value[i]);
            return NGX_CONF_ERROR;
        }

        if (rv != NGX_CONF_OK) {
            return rv;
        }
    }

    ccf->files = ngx_pcalloc(cf->pool,
                             NGX_HTTP_EVENTS_CONSOLE_NFILES
                             * sizeof(ngx_http_events_console_file_t));
    if (ccf->files == NULL) {
        return NGX_CONF_ERROR;
    }

    if (ngx_http_events_console_page(cf, ccf, &page) != NGX_OK
        || ngx_http_events_console_file(cf,
               &ccf->files[NGX_HTTP_EVENTS_CONSOLE_INDEX], "",
               "text/html; charset=utf-8", page.data, page.len)
           != NGX_OK
        || ngx_http_events_console_file(cf,
               &ccf->files[NGX_HTTP_EVENTS_CONSOLE_CSS], "console.css",
               "text/css; charset=utf-8",
               ngx_http_events_console_console_css,
               sizeof(ngx_http_events_console_console_css) - 1)
           != NGX_OK
        || ngx_http_events_console_file(cf,
               &ccf->files[NGX_HTTP_EVENTS_CONSOLE_JS], "console.js",
               "text/javascript; charset=utf-8",
               ngx_http_events_console_console_js,
               sizeof(ngx_http_events_console_console_js) - 1)
           != NGX_OK
        || ngx_http_events_console_file(cf,
               &ccf->files[NGX_HTTP_EVENTS_CONSOLE_CLIENT], "events.js",
               "text/javascript; charset=utf-8",
               ngx_http_events_console_events_js,
               sizeof(ngx_http_events_console_events_js) - 1)
           != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_events_console_handler;

    return NGX_CONF_OK;
}


/*
 * A location the page calls: a path ("/events") or an absolute http(s)
 * URL, or "off" for webhooks and status (the page leaves that part out).
 * Quotes, angle brackets, spaces and controls are refused: the value
 * goes into the page.
 */

static char *
ngx_http_events_console_uri(ngx_conf_t *cf, ngx_str_t *param, size_t skip,
    ngx_str_t *to, ngx_uint_t may_be_off)
{
    u_char     *p;
    ngx_str_t   v;

    v.data = param->data + skip;
    v.len = param->len - skip;

    if (may_be_off && v.len == 3 && ngx_strncmp(v.data, "off", 3) == 0) {
        ngx_str_null(to);
        return NGX_CONF_OK;
    }

    if (!(v.len && v.data[0] == '/')
        && !(v.len > 7 && ngx_strncasecmp(v.data, (u_char *) "http://", 7)
                          == 0)
        && !(v.len > 8 && ngx_strncasecmp(v.data, (u_char *) "https://", 8)
                          == 0))
    {
        goto invalid;
    }

    for (p = v.data; p < v.data + v.len; p++) {
        if (*p <= ' ' || *p >= 0x7f || *p == '"' || *p == '\''
            || *p == '<' || *p == '>' || *p == '\\' || *p == '`')
        {
            goto invalid;
        }
    }

    *to = v;

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid \"%V\": a path or an http(s) URL expected",
                       param);
    return NGX_CONF_ERROR;
}


/* the embedded page with the locations in a <meta> where the marker is */

static ngx_int_t
ngx_http_events_console_page(ngx_conf_t *cf,
    ngx_http_events_console_loc_conf_t *ccf, ngx_str_t *page)
{
    u_char      *p, *html, *mark;
    size_t       len, hlen, mlen;
    ngx_str_t    names[4];

    html = ngx_http_events_console_index_html;
    hlen = sizeof(ngx_http_events_console_index_html) - 1;
    mlen = sizeof(NGX_HTTP_EVENTS_CONSOLE_MARKER) - 1;

    mark = ngx_strlcasestrn(html, html + hlen,
                            (u_char *) NGX_HTTP_EVENTS_CONSOLE_MARKER,
                            mlen - 1);
    if (mark == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "events_console: the embedded page has no "
                           "\"%s\"", NGX_HTTP_EVENTS_CONSOLE_MARKER);
        return NGX_ERROR;
    }

    ngx_str_set(&names[0], "api");
    ngx_str_set(&names[1], "stream");
    ngx_str_set(&names[2], "webhooks");
    ngx_str_set(&names[3], "status");

    len = hlen - mlen + sizeof("<meta name=\"events-config\" content=\"{}\">")
          + ngx_http_events_console_attr_len(&ccf->api)
          + ngx_http_events_console_attr_len(&ccf->stream)
          + ngx_http_events_console_attr_len(&ccf->webhooks)
          + ngx_http_events_console_attr_len(&ccf->status);

    page->data = ngx_pnalloc(cf->pool, len);
    if (page->data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(page->data, html, mark - html);
    p = ngx_cpymem(p, "<meta name=\"events-config\" content=\"{",
                   sizeof("<meta name=\"events-config\" content=\"{") - 1);
    p = ngx_http_events_console_attr(p, &names[0], &ccf->api, 0);
    p = ngx_http_events_console_attr(p, &names[1], &ccf->stream, 0);
    p = ngx_http_events_console_attr(p, &names[2], &ccf->webhooks, 0);
    p = ngx_http_events_console_attr(p, &names[3], &ccf->status, 1);
    p = ngx_cpymem(p, "}\">", 3);
    p = ngx_cpymem(p, mark + mlen, html + hlen - (mark + mlen));

    page->len = p - page->data;

    return NGX_OK;
}


/*
 * "&quot;name&quot;:&quot;value&quot;," - the values were checked to
 * hold no quote, backslash or angle bracket, so JSON needs no escape and
 * the attribute only its quotes
 */

static u_char *
ngx_http_events_console_attr(u_char *p, ngx_str_t *name, ngx_str_t *value,
    ngx_uint_t last)
{
    p = ngx_sprintf(p, "&quot;%V&quot;:", name);

    if (value->len == 0) {
        p = ngx_cpymem(p, "null", 4);

    } else {
        p = ngx_sprintf(p, "&quot;%V&quot;", value);
    }

    if (!last) {
        *p++ = ',';
    }

    return p;
}


static size_t
ngx_http_events_console_attr_len(ngx_str_t *value)
{
    return sizeof("&quot;webhooks&quot;:&quot;&quot;,") + value->len;
}


static ngx_int_t
ngx_http_events_console_file(ngx_conf_t *cf, ngx_http_events_console_file_t *f,
    char *name, char *type, u_char *data, size_t len)
{
    uint32_t  crc;

    f->name.data = (u_char *) name;
    f->name.len = ngx_strlen(name);
    f->type.data = (u_char *) type;
    f->type.len = ngx_strlen(type);
    f->body.data = data;
    f->body.len = len;

    crc = ngx_crc32_long(data, len);

    f->etag.data = ngx_pnalloc(cf->pool, sizeof("\"00000000\""));
    if (f->etag.data == NULL) {
        return NGX_ERROR;
    }

    f->etag.len = ngx_sprintf(f->etag.data, "\"%08xD\"", crc) - f->etag.data;

    return NGX_OK;
}
