
/*
 * Copyright (C) ngx_http_events_module authors
 */


#ifndef _NGX_HTTP_EVENTS_HMAC_H_INCLUDED_
#define _NGX_HTTP_EVENTS_HMAC_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


#define NGX_HTTP_EVENTS_HMAC_SHA256_LEN  32


ngx_int_t ngx_http_events_hmac_sha256(u_char *key, size_t key_len,
    ngx_str_t *parts, ngx_uint_t nparts, u_char *out);


#endif /* _NGX_HTTP_EVENTS_HMAC_H_INCLUDED_ */
