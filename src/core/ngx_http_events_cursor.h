
/*
 * Copyright (C) ngx_http_events_module authors
 */


#ifndef _NGX_HTTP_EVENTS_CURSOR_H_INCLUDED_
#define _NGX_HTTP_EVENTS_CURSOR_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include <openssl/evp.h>


#define NGX_HTTP_EVENTS_CURSOR_LEN      36
#define NGX_HTTP_EVENTS_CURSOR_SECRET   16  /* AES-128, kept in the zone */


/* a process's keyed contexts for its zone's cursors */
typedef struct {
    uint64_t                    epoch;
    EVP_CIPHER_CTX             *enc;
    EVP_CIPHER_CTX             *dec;
} ngx_http_events_cursor_key_t;


ngx_int_t ngx_http_events_cursor_key_init(ngx_http_events_cursor_key_t *key,
    u_char *secret, uint64_t epoch);
void ngx_http_events_cursor_key_free(ngx_http_events_cursor_key_t *key);
u_char *ngx_http_events_cursor_write(ngx_http_events_cursor_key_t *key,
    u_char *p, uint64_t epoch, uint64_t seq);
ngx_int_t ngx_http_events_cursor_parse(ngx_http_events_cursor_key_t *key,
    u_char *p, size_t len, uint64_t *epoch, uint64_t *seq);


#endif /* _NGX_HTTP_EVENTS_CURSOR_H_INCLUDED_ */
