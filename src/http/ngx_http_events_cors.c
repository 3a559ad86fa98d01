
/*
 * Copyright (C) ngx_http_events_module authors
 */


/*
 * Browsers on another origin: events_cors ORIGIN... | *.
 *
 * It applies to the locations the module answers itself (events_api,
 * events_stream, events_webhooks, events_status).  A preflight (OPTIONS
 * with Origin and Access-Control-Request-Method) is answered in the
 * preaccess phase, before any access check: preflights carry no
 * credentials.  Every other answer of such a location, errors from
 * auth_request or events_auth included, gets its CORS headers from a
 * header filter, so a page can read a 401 as well as a 201.
 *
 * An allowed origin is echoed with "Vary: Origin".  Listed origins may
 * send credentials (cookies, Authorization); "*" never allows them and
 * answers "*".  Other origins get no CORS header at all, which a browser
 * reads as a refusal.
 *
 * A browser opens a WebSocket to any origin, with its cookies, and
 * leaves it to the server to look at Origin: the stream's WebSocket
 * asks ngx_http_events_cors_websocket() the same question CORS asks.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_events_module.h"
#include "ngx_http_events_http.h"
#include "ngx_http_events_cors.h"


#define NGX_HTTP_EVENTS_CORS_MAX_AGE  "600"


static ngx_int_t ngx_http_events_cors_preflight(ngx_http_request_t *r);
static ngx_int_t ngx_http_events_cors_answer(ngx_http_request_t *r);
static ngx_int_t ngx_http_events_cors_header_filter(ngx_http_request_t *r);
static ngx_str_t *ngx_http_events_cors_allowed(ngx_http_request_t *r,
    ngx_http_events_loc_conf_t *elcf, ngx_uint_t *credentials);
static char *ngx_http_events_cors_methods(ngx_http_events_loc_conf_t *elcf);
static ngx_int_t ngx_http_events_cors_origin(ngx_http_request_t *r,
    ngx_str_t *origin, ngx_uint_t credentials);


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;

static ngx_str_t  ngx_http_events_cors_any = ngx_string("*");


char *
ngx_http_events_cors(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_events_loc_conf_t *elcf = conf;

    u_char      *p, *last;
    ngx_str_t   *value, *origin;
    ngx_uint_t   i;

    if (elcf->cors != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (cf->args->nelts == 2 && ngx_strcmp(value[1].data, "off") == 0) {
        elcf->cors = NULL;
        return NGX_CONF_OK;
    }

    elcf->cors = ngx_array_create(cf->pool, cf->args->nelts - 1,
                                  sizeof(ngx_str_t));
    if (elcf->cors == NULL) {
        return NGX_CONF_ERROR;
    }

    for (i = 1; i < cf->args->nelts; i++) {

        if (value[i].len == 1 && value[i].data[0] == '*') {
            if (cf->args->nelts != 2) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "\"*\" stands alone in events_cors");
                return NGX_CONF_ERROR;
            }

        } else {
            /* an origin is scheme://host[:port], as a browser sends it */

            p = value[i].data;
            last = p + value[i].len;

            if (!((value[i].len > 7 && ngx_strncmp(p, "http://", 7) == 0)
                  || (value[i].len > 8 && ngx_strncmp(p, "https://", 8) == 0))
                || last[-1] == '/'
                || ngx_strlchr(p + 8, last, '/') != NULL)
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid origin \"%V\" in events_cors: "
                                   "it is scheme://host[:port], without a "
                                   "path", &value[i]);
                return NGX_CONF_ERROR;
            }
        }

        origin = ngx_array_push(elcf->cors);
        if (origin == NULL) {
            return NGX_CONF_ERROR;
        }

        *origin = value[i];
    }

    return NGX_CONF_OK;
}


ngx_int_t
ngx_http_events_cors_init(ngx_conf_t *cf)
{
    ngx_http_handler_pt        *h;
    ngx_http_core_main_conf_t  *cmcf;

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_PREACCESS_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_events_cors_preflight;

    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_http_events_cors_header_filter;

    return NGX_OK;
}


static ngx_int_t
ngx_http_events_cors_preflight(ngx_http_request_t *r)
{
    ngx_str_t                    value, *origin;
    ngx_uint_t                   credentials;
    ngx_table_elt_t             *h;
    ngx_http_events_loc_conf_t  *elcf;

    if (r->method != NGX_HTTP_OPTIONS || r != r->main) {
        return NGX_DECLINED;
    }

    elcf = ngx_http_get_module_loc_conf(r, ngx_http_events_module);

    if (elcf->cors == NULL || ngx_http_events_cors_methods(elcf) == NULL) {
        return NGX_DECLINED;
    }

    if (ngx_http_events_http_header(r, "Access-Control-Request-Method")
        == NULL)
    {
        /* a plain OPTIONS: the location answers it as it would */
        return NGX_DECLINED;
    }

    ngx_http_discard_request_body(r);

    r->headers_out.status = NGX_HTTP_NO_CONTENT;
    r->headers_out.content_length_n = 0;
    r->header_only = 1;

    origin = ngx_http_events_cors_allowed(r, elcf, &credentials);

    if (origin == NULL) {
        /* another origin: no CORS header, the browser refuses */
        return ngx_http_events_cors_answer(r);
    }

    value.data = (u_char *) ngx_http_events_cors_methods(elcf);
    value.len = ngx_strlen(value.data);

    if (ngx_http_events_http_add_header(r, "Access-Control-Allow-Methods",
                                        &value)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    h = ngx_http_events_http_header(r, "Access-Control-Request-Headers");

    if (h && h->value.len
        && ngx_http_events_http_add_header(r, "Access-Control-Allow-Headers",
                                           &h->value)
           != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_str_set(&value, NGX_HTTP_EVENTS_CORS_MAX_AGE);

    if (ngx_http_events_http_add_header(r, "Access-Control-Max-Age", &value)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* the header filter adds Allow-Origin, Vary and Allow-Credentials */

    return ngx_http_events_cors_answer(r);
}


/* the preflight ends in this phase: no access check, no content */

static ngx_int_t
ngx_http_events_cors_answer(ngx_http_request_t *r)
{
    ngx_http_finalize_request(r, ngx_http_send_header(r));

    return NGX_DONE;
}


static ngx_int_t
ngx_http_events_cors_header_filter(ngx_http_request_t *r)
{
    ngx_str_t                   *origin;
    ngx_uint_t                   credentials;
    ngx_http_events_loc_conf_t  *elcf;

    if (r != r->main) {
        return ngx_http_next_header_filter(r);
    }

    elcf = ngx_http_get_module_loc_conf(r, ngx_http_events_module);

    if (elcf->cors == NULL || ngx_http_events_cors_methods(elcf) == NULL) {
        return ngx_http_next_header_filter(r);
    }

    origin = ngx_http_events_cors_allowed(r, elcf, &credentials);

    if (origin != NULL
        && ngx_http_events_cors_origin(r, origin, credentials) != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_http_next_header_filter(r);
}


/* what to answer in Access-Control-Allow-Origin, or NULL: not allowed */

static ngx_str_t *
ngx_http_events_cors_allowed(ngx_http_request_t *r,
    ngx_http_events_loc_conf_t *elcf, ngx_uint_t *credentials)
{
    ngx_str_t        *o;
    ngx_uint_t        i;
    ngx_table_elt_t  *origin;

    origin = ngx_http_events_http_header(r, "Origin");

    if (origin == NULL || origin->value.len == 0) {
        return NULL;
    }

    o = elcf->cors->elts;

    if (elcf->cors->nelts == 1 && o[0].len == 1 && o[0].data[0] == '*') {
        *credentials = 0;
        return &ngx_http_events_cors_any;
    }

    for (i = 0; i < elcf->cors->nelts; i++) {
        if (o[i].len == origin->value.len
            && ngx_strncasecmp(o[i].data, origin->value.data, o[i].len) == 0)
        {
            *credentials = 1;
            return &origin->value;
        }
    }

    return NULL;
}


static char *
ngx_http_events_cors_methods(ngx_http_events_loc_conf_t *elcf)
{
    if (elcf->api_zone) {
        return "GET, HEAD, POST";
    }

    if (elcf->stream_zone) {
        return "GET, HEAD";
    }

    if (elcf->webhooks_zone) {
        return "GET, POST, PATCH, DELETE";
    }

    if (elcf->status_zone) {
        return "GET, HEAD";
    }

    return NULL;
}


static ngx_int_t
ngx_http_events_cors_origin(ngx_http_request_t *r, ngx_str_t *origin,
    ngx_uint_t credentials)
{
    ngx_str_t  value;

    if (ngx_http_events_http_add_header(r, "Access-Control-Allow-Origin",
                                        origin)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    /* the answer depends on Origin even when "*" is sent */

    ngx_str_set(&value, "Origin");

    if (ngx_http_events_http_add_header(r, "Vary", &value) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_str_set(&value, "Location, Events-Head, Link, Retry-After, "
                        "WWW-Authenticate");

    if (ngx_http_events_http_add_header(r, "Access-Control-Expose-Headers",
                                        &value)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (credentials) {
        ngx_str_set(&value, "true");

        if (ngx_http_events_http_add_header(r,
                                            "Access-Control-Allow-Credentials",
                                            &value)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/*
 * Whether a WebSocket upgrade's Origin may open a stream: none sent (not
 * a browser), the page's own host, or one events_cors allows; "*" does
 * not allow credentials, so only to a request without cookies.
 */

ngx_uint_t
ngx_http_events_cors_websocket(ngx_http_request_t *r)
{
    u_char                      *p, *last;
    ngx_uint_t                   credentials;
    ngx_table_elt_t             *origin, *host;
    ngx_http_events_loc_conf_t  *elcf;

    origin = ngx_http_events_http_header(r, "Origin");

    if (origin == NULL) {
        return 1;
    }

    host = r->headers_in.host;
    p = origin->value.data;
    last = p + origin->value.len;

    p = ngx_strlcasestrn(p, last, (u_char *) "://", 3 - 1);

    if (p && host && (size_t) (last - p - 3) == host->value.len
        && ngx_strncasecmp(p + 3, host->value.data, host->value.len) == 0)
    {
        return 1;
    }

    elcf = ngx_http_get_module_loc_conf(r, ngx_http_events_module);

    if (elcf->cors == NULL
        || ngx_http_events_cors_allowed(r, elcf, &credentials) == NULL)
    {
        return 0;
    }

    return credentials || ngx_http_events_http_header(r, "Cookie") == NULL;
}
