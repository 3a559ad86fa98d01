
/*
 * Copyright (C) ngx_http_events_module authors
 */


/*
 * Tokens on requests: found in "Authorization: Bearer", the cookie
 * named by events_auth_cookie, or the "token" query parameter where
 * events_auth_query_token allows it (tokens in URLs end up in logs);
 * checked once per request; the claims kept in the request's context.
 * $events_tenant and $events_subject expose them to logs and config.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_events_module.h"
#include "ngx_http_events_auth.h"
#include "ngx_http_events_http.h"
#include "ngx_http_events_jwk.h"
#include "ngx_http_events_jwks.h"


static ngx_int_t ngx_http_events_auth_authenticate(ngx_http_request_t *r);
static ngx_int_t ngx_http_events_auth_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);


static ngx_http_variable_t  ngx_http_events_vars[] = {

    { ngx_string("events_tenant"), NULL, ngx_http_events_auth_variable,
      offsetof(ngx_http_events_claims_t, tenant),
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("events_subject"), NULL, ngx_http_events_auth_variable,
      offsetof(ngx_http_events_claims_t, subject),
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


/*
 * Whether the request may go on; if not, it has been answered, and
 * *rc is what its handler returns.
 */

ngx_uint_t
ngx_http_events_auth_access(ngx_http_request_t *r, ngx_int_t *rc)
{
    ngx_str_t                    value;
    ngx_http_events_ctx_t       *ctx;
    ngx_http_events_loc_conf_t  *elcf;

    elcf = ngx_http_get_module_loc_conf(r, ngx_http_events_module);

    if (!elcf->auth) {
        return 1;
    }

    if (ngx_http_events_auth_authenticate(r) == NGX_ERROR) {
        *rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        return 0;
    }

    ctx = ngx_http_events_ctx(r);

    if (ctx->claims) {
        return 1;
    }

    ngx_http_discard_request_body(r);

    if (ctx->auth_err->status == NGX_HTTP_SERVICE_UNAVAILABLE) {
        /* the server's fault: no WWW-Authenticate, a time to come back */
        value.data = ngx_pnalloc(r->pool, NGX_TIME_T_LEN);
        if (value.data == NULL) {
            *rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
            return 0;
        }

        value.len = ngx_sprintf(value.data, "%T",
                                ngx_http_events_jwks_retry_after(elcf->jwks))
                    - value.data;

        if (ngx_http_events_http_add_header(r, "Retry-After", &value)
            != NGX_OK)
        {
            *rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
            return 0;
        }

    } else if (ngx_strcmp(ctx->auth_err->code, "missing_token") == 0) {
        ngx_str_set(&value, "Bearer realm=\"events\"");

    } else {
        ngx_str_set(&value, "Bearer realm=\"events\", error=\"invalid_token\"");
    }

    if (ctx->auth_err->status != NGX_HTTP_SERVICE_UNAVAILABLE
        && ngx_http_events_http_add_header(r, "WWW-Authenticate", &value)
           != NGX_OK)
    {
        *rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        return 0;
    }

    *rc = ngx_http_events_http_send_error(r, ctx->auth_err, NULL);

    return 0;
}


/*
 * The claims that bind this request: only where events_auth is on.
 * Elsewhere a token is optional, so its grants would bind nobody; the
 * variables still read it.
 */

ngx_http_events_claims_t *
ngx_http_events_auth_claims(ngx_http_request_t *r)
{
    ngx_http_events_ctx_t       *ctx;
    ngx_http_events_loc_conf_t  *elcf;

    elcf = ngx_http_get_module_loc_conf(r, ngx_http_events_module);

    if (!elcf->auth) {
        return NULL;
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_events_module);

    return ctx ? ctx->claims : NULL;
}


/* once per request: ctx->claims, or ctx->auth_err saying why not */

static ngx_int_t
ngx_http_events_auth_authenticate(ngx_http_request_t *r)
{
    ngx_int_t                    rc;
    ngx_str_t                    token;
    ngx_http_events_ctx_t       *ctx;
    ngx_http_events_claims_t    *claims;
    ngx_http_events_loc_conf_t  *elcf;
    ngx_http_events_jwt_conf_t   jc;

    ctx = ngx_http_events_ctx(r);
    if (ctx == NULL) {
        return NGX_ERROR;
    }

    if (ctx->auth_rc) {
        return ctx->auth_rc;
    }

    elcf = ngx_http_get_module_loc_conf(r, ngx_http_events_module);

    ctx->auth_err = ngx_pcalloc(r->pool, sizeof(ngx_http_events_error_t));
    claims = ngx_pcalloc(r->pool, sizeof(ngx_http_events_claims_t));

    if (ctx->auth_err == NULL || claims == NULL) {
        return NGX_ERROR;
    }

    ctx->auth_rc = NGX_DECLINED;

    if (elcf->jwt_keys == NULL && elcf->jwks == NULL) {
        ngx_http_events_error(ctx->auth_err, 401, "missing_token", NULL, NULL,
                              NULL, "no token can be checked here");
        return NGX_DECLINED;
    }

    rc = ngx_http_events_auth_token(r, &token, ctx->auth_err);
    if (rc != NGX_OK) {
        return NGX_DECLINED;
    }

    jc.keys = elcf->jwt_keys;
    jc.fetched = ngx_http_events_jwks_keys(elcf->jwks);
    jc.audience = elcf->auth_audience;
    jc.issuer = elcf->auth_issuer;
    jc.leeway = elcf->auth_leeway;
    jc.now = ngx_time();

    if (ngx_http_events_jwt_verify(&jc, &token, r->pool, claims,
                                   ctx->auth_err)
        != NGX_OK)
    {
        if (ctx->auth_err->status == 0) {
            ctx->auth_rc = NGX_ERROR;
            return NGX_ERROR;
        }

        if (jc.no_key && elcf->jwks && jc.fetched == NULL) {
            /* the keys it may need could not be fetched */
            ngx_http_events_error(ctx->auth_err, 503, "keys_unavailable",
                                  NULL, NULL, NULL, "the keys to check "
                                  "tokens could not be fetched; try again "
                                  "later");
            return NGX_DECLINED;
        }

        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "events: token refused: %*s",
                      ctx->auth_err->message_len, ctx->auth_err->message);
        return NGX_DECLINED;
    }

    ctx->claims = claims;
    ctx->auth_rc = NGX_OK;

    return NGX_OK;
}


/* the request's token; NGX_DECLINED: *err says why there is none */

ngx_int_t
ngx_http_events_auth_token(ngx_http_request_t *r, ngx_str_t *token,
    ngx_http_events_error_t *err)
{
    ngx_str_t                    value, name;
    ngx_table_elt_t             *h;
    ngx_http_events_loc_conf_t  *elcf;

    elcf = ngx_http_get_module_loc_conf(r, ngx_http_events_module);

    h = r->headers_in.authorization;

    if (h && h->value.len > 7
        && ngx_strncasecmp(h->value.data, (u_char *) "Bearer ", 7) == 0)
    {
        token->data = h->value.data + 7;
        token->len = h->value.len - 7;

        while (token->len && token->data[0] == ' ') {
            token->data++;
            token->len--;
        }

        return NGX_OK;
    }

    if (elcf->auth_cookie.len) {
        name = elcf->auth_cookie;

#if (nginx_version >= 1023000)
        /* 1.23.0 keeps cookies in a list, split at ";" by this */
        if (ngx_http_parse_cookie_lines(r, r->headers_in.cookie, &name,
                                        token)
            != NULL)
        {
            return NGX_OK;
        }
#else
        if (ngx_http_parse_multi_header_lines(&r->headers_in.cookies, &name,
                                              token)
            != NGX_DECLINED)
        {
            return NGX_OK;
        }
#endif
    }

    if (ngx_http_arg(r, (u_char *) "token", 5, &value) == NGX_OK) {
        if (!elcf->auth_query_token) {
            ngx_http_events_error(err, 401, "invalid_request", "param",
                                  NULL, "token", "tokens in the URL are not "
                                  "accepted here (events_auth_query_token)");
            return NGX_DECLINED;
        }

        *token = value;
        return NGX_OK;
    }

    ngx_http_events_error(err, 401, "missing_token", NULL, NULL, NULL,
                          "a bearer token is required");

    return NGX_DECLINED;
}


ngx_int_t
ngx_http_events_auth_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var, *v;

    for (v = ngx_http_events_vars; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = v->get_handler;
        var->data = v->data;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_events_auth_variable(ngx_http_request_t *r,
                              ngx_http_variable_value_t *v,
    uintptr_t data)
{
    ngx_str_t                 *s;
    ngx_http_events_ctx_t     *ctx;

    if (ngx_http_events_auth_authenticate(r) != NGX_OK) {
        v->not_found = 1;
        return NGX_OK;
    }

    ctx = ngx_http_events_ctx(r);
    s = (ngx_str_t *) ((u_char *) ctx->claims + data);

    if (s->len == 0) {
        v->not_found = 1;
        return NGX_OK;
    }

    v->len = s->len;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;
    v->data = s->data;

    return NGX_OK;
}


/*
 * events_auth_jwt_key FILE [kid=ID] [alg=ALG]: an HMAC secret, a PEM
 * public key or a JWKS; ngx_http_events_jwk_load() tells which, reads
 * the keys and checks that alg= fits them.
 */

char *
ngx_http_events_auth_jwt_key(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_events_loc_conf_t *elcf = conf;

    ngx_str_t   *value, path, kid, alg;
    ngx_uint_t   i;

    value = cf->args->elts;

    if (elcf->jwt_keys == NULL) {
        elcf->jwt_keys = ngx_array_create(cf->pool, 2,
                                          sizeof(ngx_http_events_jwt_key_t));
        if (elcf->jwt_keys == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    ngx_str_null(&kid);
    ngx_str_null(&alg);

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "kid=", 4) == 0
            && value[i].len > 4 && kid.len == 0)
        {
            kid.data = value[i].data + 4;
            kid.len = value[i].len - 4;
            continue;
        }

        if (ngx_strncmp(value[i].data, "alg=", 4) == 0
            && value[i].len > 4 && alg.len == 0)
        {
            alg.data = value[i].data + 4;
            alg.len = value[i].len - 4;
            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\"", &value[i]);
        return NGX_CONF_ERROR;
    }

    path = value[1];

    return ngx_http_events_jwk_load(cf, elcf->jwt_keys, &path, &kid, &alg);
}
