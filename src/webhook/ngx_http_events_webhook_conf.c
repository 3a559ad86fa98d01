
/*
 * Copyright (C) ngx_http_events_module authors
 */


/*
 * The webhook directives: events_webhooks (the management API, whose
 * server also sends the zone's webhooks), events_webhook (an endpoint
 * in nginx.conf), and the delivery settings, which the zone takes from
 * its events_webhooks location.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_events_module.h"
#include "ngx_http_events_store.h"
#include "ngx_http_events_http.h"
#include "ngx_http_events_match.h"
#include "ngx_http_events_webhook_shm.h"


static ngx_int_t ngx_http_events_webhook_conf_patterns(ngx_str_t *value,
    size_t skip, ngx_http_events_webhook_spec_t *spec);
static ngx_int_t ngx_http_events_webhook_conf_id(ngx_conf_t *cf,
    ngx_http_events_webhook_spec_t *spec, char *prefix);
static ngx_int_t ngx_http_events_webhook_conf_param(ngx_str_t *value,
    ngx_http_events_webhook_spec_t *spec, ngx_uint_t any_tenant);
static ngx_int_t ngx_http_events_webhook_conf_meta(ngx_str_t *value,
    ngx_http_events_webhook_spec_t *spec);
static ngx_http_core_loc_conf_t *ngx_http_events_webhook_conf_location(
    ngx_http_conf_ctx_t *ctx, ngx_str_t *uri);


static ngx_msec_t  ngx_http_events_webhook_default_retry[] = {
    5000, 300000, 1800000, 7200000, 18000000, 36000000, 36000000
};


void
ngx_http_events_webhook_conf_init(ngx_http_events_webhook_conf_t *whcf)
{
    whcf->retry = NGX_CONF_UNSET_PTR;
    whcf->overload_delay = NGX_CONF_UNSET_MSEC;
    whcf->disable_after = NGX_CONF_UNSET_MSEC;
    whcf->secret_grace = NGX_CONF_UNSET_MSEC;
    whcf->concurrency = NGX_CONF_UNSET_UINT;
    whcf->endpoint_concurrency = NGX_CONF_UNSET_UINT;
    whcf->log_size = NGX_CONF_UNSET_UINT;
    whcf->excerpt_size = NGX_CONF_UNSET_SIZE;
    whcf->max_endpoints = NGX_CONF_UNSET_UINT;
    whcf->allow_private = NGX_CONF_UNSET;
    whcf->https_only = NGX_CONF_UNSET;
    whcf->meta_events = NGX_CONF_UNSET;
    whcf->allow = NGX_CONF_UNSET_PTR;
}


char *
ngx_http_events_webhook_conf_merge(ngx_conf_t *cf,
    ngx_http_events_webhook_conf_t *prev, ngx_http_events_webhook_conf_t *conf)
{
    ngx_uint_t   i;
    ngx_msec_t  *t;

    if (conf->retry == NGX_CONF_UNSET_PTR) {
        conf->retry = prev->retry;
    }

    if (conf->retry == NGX_CONF_UNSET_PTR) {
        conf->retry = ngx_array_create(cf->pool, 8, sizeof(ngx_msec_t));
        if (conf->retry == NULL) {
            return NGX_CONF_ERROR;
        }

        for (i = 0; i < sizeof(ngx_http_events_webhook_default_retry)
                        / sizeof(ngx_msec_t); i++)
        {
            t = ngx_array_push(conf->retry);
            if (t == NULL) {
                return NGX_CONF_ERROR;
            }

            *t = ngx_http_events_webhook_default_retry[i];
        }
    }

    ngx_conf_merge_msec_value(conf->overload_delay, prev->overload_delay,
                              60000);
    ngx_conf_merge_msec_value(conf->disable_after, prev->disable_after,
                              5 * 86400 * 1000);
    ngx_conf_merge_msec_value(conf->secret_grace, prev->secret_grace,
                              86400 * 1000);
    ngx_conf_merge_uint_value(conf->concurrency, prev->concurrency, 64);
    ngx_conf_merge_uint_value(conf->endpoint_concurrency,
                              prev->endpoint_concurrency, 4);
    ngx_conf_merge_uint_value(conf->log_size, prev->log_size, 64);
    ngx_conf_merge_size_value(conf->excerpt_size, prev->excerpt_size, 1024);
    ngx_conf_merge_uint_value(conf->max_endpoints, prev->max_endpoints, 100);
    ngx_conf_merge_value(conf->allow_private, prev->allow_private, 0);
    ngx_conf_merge_value(conf->https_only, prev->https_only, 0);
    ngx_conf_merge_value(conf->meta_events, prev->meta_events, 0);
    ngx_conf_merge_ptr_value(conf->allow, prev->allow, NULL);
    ngx_conf_merge_str_value(conf->location, prev->location,
                             "/_events_webhook");

    if (conf->excerpt_size > 16384) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"events_webhook_response_excerpt\" may be at "
                           "most 16k");
        return NGX_CONF_ERROR;
    }

    if (conf->log_size == 0 || conf->log_size > 65536) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"events_webhook_log_size\" is 1-65536");
        return NGX_CONF_ERROR;
    }

    if (conf->concurrency == 0 || conf->endpoint_concurrency == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "webhook concurrency must be at least 1");
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* events_webhooks ZONE */

char *
ngx_http_events_webhook_conf_webhooks(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_events_loc_conf_t *elcf = conf;

    ngx_str_t                       *value;
    ngx_http_core_loc_conf_t        *clcf;
    ngx_http_events_webhook_bind_t  *bind;
    ngx_http_events_main_conf_t     *emcf;

    if (elcf->webhooks_zone) {
        return "is duplicate";
    }

    value = cf->args->elts;

    elcf->webhooks_zone = ngx_shared_memory_add(cf, &value[1], 0,
                                                &ngx_http_events_module);
    if (elcf->webhooks_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (clcf->named
#if (NGX_PCRE)
        || clcf->regex
#endif
       )
    {
        return "needs a prefix location";
    }

    elcf->prefix = clcf->name;

    while (elcf->prefix.len > 1
           && elcf->prefix.data[elcf->prefix.len - 1] == '/')
    {
        elcf->prefix.len--;
    }

    clcf->handler = ngx_http_events_webhook_api_handler;

    emcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_events_module);

    bind = ngx_array_push(&emcf->wh_bind);
    if (bind == NULL) {
        return NGX_CONF_ERROR;
    }

    bind->zone = elcf->webhooks_zone;
    bind->ctx = cf->ctx;
    bind->elcf = elcf;

    if (!emcf->wh_pool) {
        if (ngx_http_events_webhook_pool_add(cf) != NGX_OK) {
            return NGX_CONF_ERROR;
        }

        emcf->wh_pool = 1;
    }

    return NGX_CONF_OK;
}


/*
 * events_webhook ZONE url=URL events=P[,P...] secret=whsec_...
 *     [secret_previous=whsec_...] [id=ID] [tenant=T] [rate=N]
 *     [header=Name:Value]...
 */

char *
ngx_http_events_webhook_conf_static(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_events_main_conf_t  *emcf = conf;

    u_char                            *p;
    ngx_int_t                          n, rc;
    ngx_str_t                         *value, v, text;
    ngx_uint_t                         i;
    ngx_http_events_webhook_spec_t    *spec;
    ngx_http_events_webhook_static_t  *st;

    value = cf->args->elts;

    st = ngx_array_push(&emcf->wh_static);
    if (st == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(st, sizeof(ngx_http_events_webhook_static_t));

    st->zone = value[1];
    spec = &st->spec;
    spec->is_static = 1;
    spec->enabled = 1;

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "url=", 4) == 0) {
            spec->url.data = value[i].data + 4;
            spec->url.len = value[i].len - 4;

            if (!((spec->url.len > 7
                   && ngx_strncasecmp(spec->url.data, (u_char *) "http://",
                                      7) == 0)
                  || (spec->url.len > 8
                      && ngx_strncasecmp(spec->url.data,
                                         (u_char *) "https://", 8) == 0))
                || spec->url.len > NGX_HTTP_EVENTS_WH_MAX_URL)
            {
                goto invalid;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "events=", 7) == 0) {
            if (ngx_http_events_webhook_conf_patterns(&value[i], 7, spec)
                != NGX_OK)
            {
                goto invalid;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "secret=", 7) == 0) {
            text.data = value[i].data + 7;
            text.len = value[i].len - 7;

            if (ngx_http_events_webhook_secret(&text, spec->secret,
                                               &spec->secret_len)
                != NGX_OK)
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "a webhook secret is \"whsec_\" and the "
                                   "base64 of 24 to 64 bytes");
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "secret_previous=", 16) == 0) {
            text.data = value[i].data + 16;
            text.len = value[i].len - 16;

            if (ngx_http_events_webhook_secret(&text, spec->previous,
                                               &spec->previous_len)
                != NGX_OK)
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "a webhook secret is \"whsec_\" and the "
                                   "base64 of 24 to 64 bytes");
                return NGX_CONF_ERROR;
            }

            continue;
        }

        rc = ngx_http_events_webhook_conf_param(&value[i], spec, 0);

        if (rc == NGX_ERROR) {
            goto invalid;
        }

        if (rc == NGX_OK) {
            continue;
        }

        if (ngx_strncmp(value[i].data, "rate=", 5) == 0) {
            n = ngx_atoi(value[i].data + 5, value[i].len - 5);
            if (n < 1 || n > 100000) {
                goto invalid;
            }

            spec->rate_limit = n;
            continue;
        }

        if (ngx_strncmp(value[i].data, "format=", 7) == 0) {
            for (n = 0; ngx_http_events_webhook_formats[n]; n++) {
                if (value[i].len - 7
                    == ngx_strlen(ngx_http_events_webhook_formats[n])
                    && ngx_strncmp(value[i].data + 7,
                                   ngx_http_events_webhook_formats[n],
                                   value[i].len - 7) == 0)
                {
                    break;
                }
            }

            if (ngx_http_events_webhook_formats[n] == NULL) {
                goto invalid;
            }

            spec->format = n;
            continue;
        }

        if (value[i].len == 7
            && ngx_strncmp(value[i].data, "ordered", 7) == 0)
        {
            spec->ordered = 1;
            continue;
        }

        if (ngx_strncmp(value[i].data, "max_in_flight=", 14) == 0) {
            n = ngx_atoi(value[i].data + 14, value[i].len - 14);
            if (n < 1 || n > NGX_HTTP_EVENTS_WH_MAX_INFLIGHT) {
                goto invalid;
            }

            spec->max_inflight = n;
            continue;
        }

        if (ngx_strncmp(value[i].data, "header=", 7) == 0) {
            v.data = value[i].data + 7;
            v.len = value[i].len - 7;

            p = ngx_strlchr(v.data, v.data + v.len, ':');

            if (p == NULL || p == v.data
                || spec->nheaders == NGX_HTTP_EVENTS_WH_MAX_HEADERS)
            {
                goto invalid;
            }

            spec->hnames[spec->nheaders].data = v.data;
            spec->hnames[spec->nheaders].len = p - v.data;
            spec->hvalues[spec->nheaders].data = p + 1;
            spec->hvalues[spec->nheaders].len = v.data + v.len - p - 1;
            spec->nheaders++;
            continue;
        }

        goto invalid;
    }

    if (spec->url.len == 0 || spec->npatterns == 0 || spec->secret_len == 0)
    {
        return "needs url=, events= and secret=";
    }

    if (spec->id.len == 0
        && ngx_http_events_webhook_conf_id(cf, spec, "wh_static_") != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "invalid parameter \"%V\"",
                       &value[i]);
    return NGX_CONF_ERROR;
}


/*
 * events_handler ZONE types=P[,P...] location=/uri [id=ID] [tenant=T|*]:
 * each matching event goes to a location of this server (or of the
 * events_webhooks server, at http level), retried like a webhook
 */

char *
ngx_http_events_webhook_conf_handler(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_events_main_conf_t  *emcf = conf;

    ngx_int_t                          rc;
    ngx_str_t                         *value;
    ngx_uint_t                         i;
    ngx_http_events_webhook_spec_t    *spec;
    ngx_http_events_webhook_static_t  *st;

    value = cf->args->elts;

    st = ngx_array_push(&emcf->wh_static);
    if (st == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(st, sizeof(ngx_http_events_webhook_static_t));

    st->zone = value[1];
    spec = &st->spec;
    spec->is_static = 1;
    spec->is_handler = 1;
    spec->enabled = 1;
    ngx_str_set(&spec->tenant, NGX_HTTP_EVENTS_WH_ANY_TENANT);

    /* in a server block, that server sends it */
    spec->ctx = (cf->cmd_type == NGX_HTTP_SRV_CONF) ? cf->ctx : NULL;

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "location=", 9) == 0) {
            spec->url.data = value[i].data + 9;
            spec->url.len = value[i].len - 9;

            if (spec->url.len == 0 || spec->url.data[0] != '/') {
                goto invalid;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "types=", 6) == 0) {
            if (ngx_http_events_webhook_conf_patterns(&value[i], 6, spec)
                != NGX_OK)
            {
                goto invalid;
            }

            continue;
        }

        rc = ngx_http_events_webhook_conf_param(&value[i], spec, 1);

        if (rc == NGX_ERROR) {
            goto invalid;
        }

        if (rc == NGX_OK) {
            continue;
        }

        goto invalid;
    }

    if (spec->url.len == 0 || spec->npatterns == 0) {
        return "needs location= and types=";
    }

    if (spec->id.len == 0
        && ngx_http_events_webhook_conf_id(cf, spec, "handler_") != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "invalid parameter \"%V\"",
                       &value[i]);
    return NGX_CONF_ERROR;
}


/* events_webhook_retry 5s 5m ... */

char *
ngx_http_events_webhook_conf_retry(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_events_loc_conf_t *elcf = conf;

    ngx_str_t   *value;
    ngx_uint_t   i;
    ngx_msec_t  *t;

    if (elcf->wh->retry != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    if (cf->args->nelts - 1 > NGX_HTTP_EVENTS_WH_MAX_RETRIES) {
        return "takes at most 20 delays";
    }

    elcf->wh->retry = ngx_array_create(cf->pool, cf->args->nelts,
                                      sizeof(ngx_msec_t));
    if (elcf->wh->retry == NULL) {
        return NGX_CONF_ERROR;
    }

    value = cf->args->elts;

    /* "off": one attempt, no retries */
    if (cf->args->nelts == 2 && ngx_strcmp(value[1].data, "off") == 0) {
        return NGX_CONF_OK;
    }

    for (i = 1; i < cf->args->nelts; i++) {
        t = ngx_array_push(elcf->wh->retry);
        if (t == NULL) {
            return NGX_CONF_ERROR;
        }

        *t = ngx_parse_time(&value[i], 0);

        if (*t == (ngx_msec_t) NGX_ERROR) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "invalid delay \"%V\"",
                               &value[i]);
            return NGX_CONF_ERROR;
        }
    }

    return NGX_CONF_OK;
}


/* events_webhook_allow CIDR ... */

char *
ngx_http_events_webhook_conf_allow(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_events_loc_conf_t *elcf = conf;

    ngx_int_t    rc;
    ngx_str_t   *value;
    ngx_uint_t   i;
    ngx_cidr_t  *cidr;

    if (elcf->wh->allow == NGX_CONF_UNSET_PTR) {
        elcf->wh->allow = ngx_array_create(cf->pool, 4, sizeof(ngx_cidr_t));
        if (elcf->wh->allow == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {
        cidr = ngx_array_push(elcf->wh->allow);
        if (cidr == NULL) {
            return NGX_CONF_ERROR;
        }

        rc = ngx_ptocidr(&value[i], cidr);

        if (rc == NGX_ERROR) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid CIDR \"%V\"", &value[i]);
            return NGX_CONF_ERROR;
        }

        if (rc == NGX_DONE) {
            ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                               "low address bits of %V are meaningless",
                               &value[i]);
        }
    }

    return NGX_CONF_OK;
}


/*
 * After the http block: each zone's webhooks are sent by the server of
 * its first events_webhooks location, with that location's settings;
 * the nginx.conf endpoints join their zone.
 */

ngx_int_t
ngx_http_events_webhook_conf_postconfiguration(ngx_conf_t *cf)
{
    ngx_uint_t                         i, j;
    ngx_shm_zone_t                   **zones;
    ngx_http_conf_ctx_t               *ctx;
    ngx_http_core_loc_conf_t          *clcf;
    ngx_http_events_store_t           *store;
    ngx_http_events_webhook_spec_t    *spec;
    ngx_http_events_webhook_bind_t    *bind;
    ngx_http_events_webhook_static_t  *st;
    ngx_http_events_loc_conf_t        *elcf;
    ngx_http_events_main_conf_t       *emcf;

    if (ngx_http_events_webhook_status_register(cf) != NGX_OK) {
        return NGX_ERROR;
    }

    emcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_events_module);

    zones = emcf->zones.elts;
    bind = emcf->wh_bind.elts;

    for (i = 0; i < emcf->wh_bind.nelts; i++) {
        store = bind[i].zone->data;

        if (store == NULL) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "events_webhooks uses unknown events zone "
                               "\"%V\"", &bind[i].zone->shm.name);
            return NGX_ERROR;
        }

        if (store->whcf == NULL) {
            elcf = bind[i].elcf;
            store->whcf = elcf->wh;
            store->wh_ctx = bind[i].ctx;

            /*
             * without it, a delivery would go to whatever location
             * matches, "location /" and its backend included
             */
            clcf = ngx_http_events_webhook_conf_location(bind[i].ctx,
                                                         &elcf->wh->location);

            if (clcf == NULL) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "events_webhooks %V: the server has no "
                                   "\"location %V\" to send webhooks "
                                   "through (internal; proxy_pass "
                                   "$events_webhook_url;)",
                                   &bind[i].zone->shm.name,
                                   &elcf->wh->location);
                return NGX_ERROR;
            }
        }
    }

    st = emcf->wh_static.elts;

    for (i = 0; i < emcf->wh_static.nelts; i++) {

        for (j = 0; j < emcf->zones.nelts; j++) {
            if (zones[j]->shm.name.len == st[i].zone.len
                && ngx_strncmp(zones[j]->shm.name.data, st[i].zone.data,
                               st[i].zone.len) == 0)
            {
                break;
            }
        }

        if (j == emcf->zones.nelts) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "events_webhook uses unknown events zone "
                               "\"%V\"", &st[i].zone);
            return NGX_ERROR;
        }

        store = zones[j]->data;

        if (st[i].spec.is_handler && st[i].spec.ctx == NULL) {
            st[i].spec.ctx = store->wh_ctx;
        }

        if (store->whcf == NULL && st[i].spec.ctx) {
            /* handlers only: the settings of the handler's server */
            ctx = st[i].spec.ctx;
            elcf = ctx->loc_conf[ngx_http_events_module.ctx_index];
            store->whcf = elcf->wh;
            store->wh_ctx = ctx;
        }

        if (store->whcf == NULL || (st[i].spec.is_handler
                                    && st[i].spec.ctx == NULL))
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "%s in zone \"%V\" needs a server: write it "
                               "in the server block of its location, or "
                               "add an \"events_webhooks %V\" location",
                               st[i].spec.is_handler ? "events_handler"
                                                     : "events_webhook",
                               &st[i].zone, &st[i].zone);
            return NGX_ERROR;
        }

        if (store->wh_static == NULL) {
            store->wh_static = ngx_array_create(cf->pool, 4,
                                      sizeof(ngx_http_events_webhook_spec_t));
            if (store->wh_static == NULL) {
                return NGX_ERROR;
            }
        }

        spec = ngx_array_push(store->wh_static);
        if (spec == NULL) {
            return NGX_ERROR;
        }

        *spec = st[i].spec;
    }

    return ngx_http_events_webhook_delivery_init_filter(cf);
}


/* master: the zones exist; bring their static endpoints up to date */

ngx_int_t
ngx_http_events_webhook_conf_init_module(ngx_cycle_t *cycle)
{
    ngx_uint_t                    i;
    ngx_shm_zone_t              **zones;
    ngx_http_events_store_t      *store;
    ngx_http_events_main_conf_t  *emcf;

    emcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_events_module);
    if (emcf == NULL) {
        return NGX_OK;
    }

    zones = emcf->zones.elts;

    for (i = 0; i < emcf->zones.nelts; i++) {
        store = zones[i]->data;

        if (store->whcf
            && ngx_http_events_webhook_init_zone(store, store->whcf) != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/* "events=a.*,b.created": the patterns after the name, comma-separated */

static ngx_int_t
ngx_http_events_webhook_conf_patterns(ngx_str_t *value, size_t skip,
    ngx_http_events_webhook_spec_t *spec)
{
    u_char  *p, *last, *comma;

    p = value->data + skip;
    last = value->data + value->len;

    while (p < last) {
        comma = ngx_strlchr(p, last, ',');
        if (comma == NULL) {
            comma = last;
        }

        if (spec->npatterns == NGX_HTTP_EVENTS_WH_MAX_PATTERNS
            || ngx_http_events_match_pattern_valid(p, comma - p) != NGX_OK)
        {
            return NGX_ERROR;
        }

        spec->patterns[spec->npatterns].data = p;
        spec->patterns[spec->npatterns].len = comma - p;
        spec->npatterns++;

        p = comma + 1;
    }

    return NGX_OK;
}


/*
 * id= and tenant=, common to events_webhook and events_handler ("*", every
 * tenant, for handlers only): NGX_DECLINED when it is neither
 */

static ngx_int_t
ngx_http_events_webhook_conf_param(ngx_str_t *value,
    ngx_http_events_webhook_spec_t *spec, ngx_uint_t any_tenant)
{
    if (ngx_strncmp(value->data, "id=", 3) == 0) {
        spec->id.data = value->data + 3;
        spec->id.len = value->len - 3;

        if (spec->id.len == 0 || spec->id.len > 48
            || ngx_http_events_match_tenant_valid(&spec->id) != NGX_OK)
        {
            return NGX_ERROR;
        }

        return NGX_OK;
    }

    if (ngx_strncmp(value->data, "tenant=", 7) == 0) {
        spec->tenant.data = value->data + 7;
        spec->tenant.len = value->len - 7;

        if (any_tenant && spec->tenant.len == 1
            && spec->tenant.data[0] == '*')
        {
            return NGX_OK;
        }

        return ngx_http_events_match_tenant_valid(&spec->tenant) == NGX_OK
               ? NGX_OK : NGX_ERROR;
    }

    if (ngx_strncmp(value->data, "metadata.", 9) == 0) {
        return ngx_http_events_webhook_conf_meta(value, spec);
    }

    return NGX_DECLINED;
}


/* metadata.KEY=VALUE: the rules of ?metadata.KEY=VALUE on lists */

static ngx_int_t
ngx_http_events_webhook_conf_meta(ngx_str_t *value,
    ngx_http_events_webhook_spec_t *spec)
{
    u_char      *eq;
    ngx_str_t    key, val;
    ngx_uint_t   i;

    eq = ngx_strlchr(value->data, value->data + value->len, '=');
    if (eq == NULL || spec->nmeta == NGX_HTTP_EVENTS_MAX_META_FILTERS) {
        return NGX_ERROR;
    }

    key.data = value->data + 9;
    key.len = eq - key.data;
    val.data = eq + 1;
    val.len = value->data + value->len - val.data;

    if (ngx_http_events_match_meta_key_valid(key.data, key.len) != NGX_OK
        || ngx_http_events_webhook_meta_value_valid(&val) != NGX_OK)
    {
        return NGX_ERROR;
    }

    for (i = 0; i < spec->nmeta; i++) {
        if (spec->mkeys[i].len == key.len
            && ngx_strncmp(spec->mkeys[i].data, key.data, key.len) == 0)
        {
            return NGX_ERROR;
        }
    }

    spec->mkeys[spec->nmeta] = key;
    spec->mvalues[spec->nmeta] = val;
    spec->nmeta++;

    return NGX_OK;
}


/* an id stable across reloads while the target and patterns stay */

static ngx_int_t
ngx_http_events_webhook_conf_id(ngx_conf_t *cf,
    ngx_http_events_webhook_spec_t *spec, char *prefix)
{
    u_char      *p;
    uint32_t     n;
    ngx_uint_t   i;

    p = ngx_pnalloc(cf->pool, ngx_strlen(prefix) + 8);
    if (p == NULL) {
        return NGX_ERROR;
    }

    n = ngx_crc32_long(spec->url.data, spec->url.len);

    for (i = 0; i < spec->npatterns; i++) {
        n ^= ngx_crc32_long(spec->patterns[i].data, spec->patterns[i].len)
             + i;
    }

    spec->id.data = p;
    spec->id.len = ngx_sprintf(p, "%s%08xD", prefix, n) - p;

    return NGX_OK;
}


/*
 * The location of a server whose name is exactly uri (an exact or a
 * prefix one, nested ones included), from its static location tree.
 */

static ngx_http_core_loc_conf_t *
ngx_http_events_webhook_conf_location(ngx_http_conf_ctx_t *ctx, ngx_str_t *uri)
{
    u_char                         *p;
    size_t                          len, n;
    ngx_int_t                       rc;
    ngx_http_core_srv_conf_t       *cscf;
    ngx_http_core_loc_conf_t       *clcf;
    ngx_http_location_tree_node_t  *node;

    /* the server's own locations, wherever in it ctx was taken */
    cscf = ctx->srv_conf[ngx_http_core_module.ctx_index];
    clcf = cscf->ctx->loc_conf[ngx_http_core_module.ctx_index];
    node = clcf->static_locations;

    p = uri->data;
    len = uri->len;

    while (node) {
        n = ngx_min(len, (size_t) node->len);
        rc = ngx_filename_cmp(p, node->name, n);

        if (rc != 0) {
            node = (rc < 0) ? node->left : node->right;
            continue;
        }

        if (len > (size_t) node->len) {

            if (node->inclusive) {
                /* the rest is in the locations nested under this name */
                p += node->len;
                len -= node->len;
                node = node->tree;
                continue;
            }

            node = node->right;
            continue;
        }

        if (len == (size_t) node->len) {
            return node->exact ? node->exact : node->inclusive;
        }

        node = node->left;
    }

    return NULL;
}
