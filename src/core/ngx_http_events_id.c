
/*
 * Copyright (C) ngx_http_events_module authors
 */


/*
 * Server-made ids are ULIDs (48 bits of time, then 80 of randomness,
 * Crockford base32), so they sort by time.
 *
 * The randomness must not be predictable from ids a client has seen:
 * an id names an event in routes (GET /events/{id}, webhook retries),
 * and a guessable next id would let a client name events it was never
 * shown.  It comes from OpenSSL's DRBG (RAND_bytes(): AES-256-CTR,
 * reseeded from the kernel, fork-safe), drawn 256 ids at a time into a
 * per-worker buffer: one RAND_bytes() call per id costs about 5 us, more
 * than the rest of the id; one per 2560 bytes adds some 50 ns an id.  The
 * buffer remembers the pid that filled it, so that a copy inherited
 * across fork() is thrown away rather than handed out twice.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include <openssl/rand.h>

#include "ngx_http_events_id.h"
#include "ngx_http_events_store.h"


static ngx_int_t ngx_http_events_id_random(ngx_http_events_id_rng_t *rng,
    u_char *rnd);


static ngx_int_t
ngx_http_events_id_random(ngx_http_events_id_rng_t *rng, u_char *rnd)
{
    u_char  *p;

    if (rng == NULL) {
        return RAND_bytes(rnd, NGX_HTTP_EVENTS_ID_RANDOM) == 1
               ? NGX_OK : NGX_ERROR;
    }

    if (rng->left < NGX_HTTP_EVENTS_ID_RANDOM || rng->pid != ngx_pid) {
        if (RAND_bytes(rng->buf, sizeof(rng->buf)) != 1) {
            rng->left = 0;
            return NGX_ERROR;
        }

        rng->left = sizeof(rng->buf);
        rng->pid = ngx_pid;
    }

    p = rng->buf + sizeof(rng->buf) - rng->left;
    ngx_memcpy(rnd, p, NGX_HTTP_EVENTS_ID_RANDOM);

    /* handed out once: nothing of it stays in memory to be read later */
    ngx_memzero(p, NGX_HTTP_EVENTS_ID_RANDOM);
    rng->left -= NGX_HTTP_EVENTS_ID_RANDOM;

    return NGX_OK;
}


ngx_int_t
ngx_http_events_id_generate(u_char *p, uint64_t ms,
    ngx_http_events_id_rng_t *rng)
{
    u_char             rnd[NGX_HTTP_EVENTS_ID_RANDOM];
    uint64_t           hi, lo;
    ngx_uint_t         i;
    static const char  b32[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

    if (ngx_http_events_id_random(rng, rnd) != NGX_OK) {
        return NGX_ERROR;
    }

    /* 48 bits of time, 80 of randomness: 128 bits as 26 digits */

    hi = (ms << 16) | ((uint64_t) rnd[0] << 8) | rnd[1];
    lo = 0;

    for (i = 2; i < NGX_HTTP_EVENTS_ID_RANDOM; i++) {
        lo = (lo << 8) | rnd[i];
    }

    p = ngx_cpymem(p, "evt_", 4);

    for (i = 26; i > 0; i--) {
        p[i - 1] = b32[lo & 0x1f];
        lo = (lo >> 5) | ((hi & 0x1f) << 59);
        hi >>= 5;
    }

    return NGX_OK;
}


ngx_int_t
ngx_http_events_id_valid(u_char *p, size_t len)
{
    size_t  i;
    u_char  ch;

    if (len == 0 || len > NGX_HTTP_EVENTS_MAX_ID) {
        return NGX_ERROR;
    }

    for (i = 0; i < len; i++) {
        ch = p[i];

        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z')
              || (ch >= '0' && ch <= '9') || ch == '_' || ch == ':'
              || ch == '-'))
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}
