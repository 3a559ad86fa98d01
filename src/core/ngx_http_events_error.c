
/*
 * Copyright (C) ngx_http_events_module authors
 */


/*
 * The error envelope of the contract: a status, a code, the parameter
 * or field at fault and a message, filled by whichever layer refused
 * the input (an envelope field, a query parameter, a token) and sent
 * by the HTTP toolkit.  It lives in a fixed buffer inside the struct,
 * so a refusal never allocates, and it is always valid UTF-8.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_events_error.h"
#include "ngx_http_events_json.h"


static void ngx_http_events_error_sanitize(u_char *p, size_t len);


void
ngx_http_events_error(ngx_http_events_error_t *err, ngx_uint_t status,
    const char *code, const char *kind, ngx_str_t *prefix, const char *name,
    const char *fmt, ...)
{
    u_char   *p, *last;
    va_list   args;

    err->status = status;
    err->code = code;
    err->kind = kind;

    p = err->name;
    last = err->name + sizeof(err->name);

    if (prefix && prefix->len) {
        p = ngx_slprintf(p, last, "%V", prefix);
    }

    if (name) {
        p = ngx_slprintf(p, last, "%s", name);
    }

    err->name_len = p - err->name;

    va_start(args, fmt);
    p = ngx_vslprintf(err->message, err->message + sizeof(err->message),
                      fmt, args);
    va_end(args);

    err->message_len = p - err->message;

    ngx_http_events_error_sanitize(err->name, err->name_len);
    ngx_http_events_error_sanitize(err->message, err->message_len);
}


/* after a caller filled the name itself */

void
ngx_http_events_error_name(ngx_http_events_error_t *err)
{
    ngx_http_events_error_sanitize(err->name, err->name_len);
}


/*
 * What goes into an error may come from the client, raw or cut short:
 * bytes that are not UTF-8 become "?", so the error is always JSON.
 */

static void
ngx_http_events_error_sanitize(u_char *p, size_t len)
{
    size_t  i, n;

    for (i = 0; i < len; i += n) {
        n = ngx_http_events_json_utf8_len(p + i, len - i);

        if (n == 0) {
            p[i] = '?';
            n = 1;
        }
    }
}
