
/*
 * Copyright (C) ngx_http_events_module authors
 */


/*
 * The parser of request bodies (POST /events): the bytes of a body into
 * a jansson tree, as json_loadb() would give it, at a fraction of the
 * cost; everything else in the module parses with jansson itself.
 *
 * A request's body is parsed into its pool: jansson's allocator is
 * pointed at the pool for the length of the parse only (its nodes cut
 * from chunks of it), and what it frees meanwhile is left to the pool,
 * but for large blocks, given back at once.  Such a tree is never
 * freed piecewise (no json_decref): it goes with the pool, and whoever
 * holds it only reads it.
 *
 * The body is lexed by YAJL, a SAX parser, whose callbacks build the
 * jansson tree: jansson's own lexer costs some 150 instructions a byte,
 * YAJL's a fifth of that.  jansson's semantics are kept, checked here
 * where YAJL is laxer: duplicate keys refused, integers exact in int64
 * (else an error), no \u0000, nesting bounded at 2048, UTF-8 and \u
 * escapes checked strictly (YAJL's own check lets overlong forms and
 * lone surrogates through, so it is off and ours runs instead).
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include <stdlib.h>
#include <math.h>
#include <yajl/yajl_parse.h>

#include "ngx_http_events_parse.h"
#include "ngx_http_events_json.h"


#define NGX_HTTP_EVENTS_PARSE_DEPTH      2048     /* jansson's bound */
#define NGX_HTTP_EVENTS_PARSE_STACK      32       /* then doubled in the pool */
#define NGX_HTTP_EVENTS_PARSE_NODE       512      /* larger: from the pool */
#define NGX_HTTP_EVENTS_PARSE_KEY_SHOWN  64       /* of a duplicate key */
#define NGX_HTTP_EVENTS_PARSE_NUMBER     32       /* a real, to strtod() */


/*
 * A body being parsed (on the C stack): the containers open, the key
 * waiting for its value
 */

typedef struct {
    ngx_pool_t                 *pool;
    u_char                     *start;          /* the body */
    u_char                     *end;
    yajl_handle                 yajl;
    json_t                     *root;
    ngx_uint_t                  depth;
    u_char                     *key;
    size_t                      key_len;
    size_t                      key_at;
    const char                 *error;          /* a callback's refusal */
    size_t                      error_at;
    ngx_uint_t                  completing;     /* yajl_complete_parse() */
    ngx_uint_t                  duplicate;      /* the error is ps->key's */
    size_t                      root_end;       /* where the value ends */
    json_t                    **stack;
    ngx_uint_t                  nalloc;
    json_t                     *stack0[NGX_HTTP_EVENTS_PARSE_STACK];
} ngx_http_events_parse_t;


static void *ngx_http_events_parse_palloc(size_t size);
static void ngx_http_events_parse_pfree(void *p);
static void *ngx_http_events_parse_yajl_alloc(void *ctx, size_t size);
static void *ngx_http_events_parse_yajl_realloc(void *ctx, void *p,
    size_t size);
static void ngx_http_events_parse_yajl_free(void *ctx, void *p);
static int ngx_http_events_parse_add(ngx_http_events_parse_t *ps,
    json_t *v);
static int ngx_http_events_parse_open(ngx_http_events_parse_t *ps,
    json_t *v);
static int ngx_http_events_parse_on_null(void *ctx);
static int ngx_http_events_parse_on_boolean(void *ctx, int b);
static int ngx_http_events_parse_on_number(void *ctx, const char *s,
    size_t len);
static int ngx_http_events_parse_on_string(void *ctx, const unsigned char *s,
    size_t len);
static int ngx_http_events_parse_on_start_map(void *ctx);
static int ngx_http_events_parse_on_map_key(void *ctx,
    const unsigned char *s, size_t len);
static int ngx_http_events_parse_on_end(void *ctx);
static int ngx_http_events_parse_on_start_array(void *ctx);
static int ngx_http_events_parse_text_check(ngx_http_events_parse_t *ps,
    u_char *s, size_t len);
static ngx_uint_t ngx_http_events_parse_hex4(u_char *p);
static u_char *ngx_http_events_parse_ff_vt(u_char *p, size_t len);
static u_char *ngx_http_events_parse_raw_start(ngx_http_events_parse_t *ps,
    u_char *quote);
static int ngx_http_events_parse_fail(ngx_http_events_parse_t *ps,
    const char *error, size_t at);
static void ngx_http_events_parse_error(ngx_http_events_parse_t *ps,
    size_t at, json_error_t *error);


/*
 * The pool a parse allocates from, set only during the parse, and the
 * arena in it that jansson's nodes are cut from
 */
static ngx_pool_t  *ngx_http_events_parse_pool;
static u_char      *ngx_http_events_parse_arena;
static u_char      *ngx_http_events_parse_arena_end;
static size_t       ngx_http_events_parse_chunk;


static yajl_callbacks  ngx_http_events_parse_callbacks = {
    ngx_http_events_parse_on_null,
    ngx_http_events_parse_on_boolean,
    NULL,                                       /* integers and reals: */
    NULL,                                       /* on_number, exactly */
    ngx_http_events_parse_on_number,
    ngx_http_events_parse_on_string,
    ngx_http_events_parse_on_start_map,
    ngx_http_events_parse_on_map_key,
    ngx_http_events_parse_on_end,
    ngx_http_events_parse_on_start_array,
    ngx_http_events_parse_on_end
};


/*
 * A body into a jansson tree in the pool, by YAJL: any JSON value (an
 * event, an array of them for a batch), nothing after it.  jansson's
 * allocator is process-wide, so it is given back at once; only this
 * worker's thread parses (nginx's thread pools here never call jansson).
 */

json_t *
ngx_http_events_parse_json(ngx_pool_t *pool, u_char *data, size_t len,
    json_error_t *error)
{
    u_char                   *p;
    size_t                    at;
    json_free_t               free_fn;
    yajl_status               rc;
    json_malloc_t             malloc_fn;
    yajl_alloc_funcs          afs;
    ngx_http_events_parse_t   parse, *ps;

    ps = &parse;

    ps->pool = pool;
    ps->start = data;
    ps->end = data + len;
    ps->root = NULL;
    ps->depth = 0;
    ps->error = NULL;
    ps->completing = 0;
    ps->duplicate = 0;
    ps->stack = ps->stack0;
    ps->nalloc = NGX_HTTP_EVENTS_PARSE_STACK;
    ps->root_end = 0;

    afs.malloc = ngx_http_events_parse_yajl_alloc;
    afs.realloc = ngx_http_events_parse_yajl_realloc;
    afs.free = ngx_http_events_parse_yajl_free;
    afs.ctx = pool;

    ps->yajl = yajl_alloc(&ngx_http_events_parse_callbacks, &afs, ps);
    if (ps->yajl == NULL) {
        ngx_http_events_parse_error(ps, 0, error);
        return NULL;
    }

    /* ours is stricter (see the top of the file) */
    yajl_config(ps->yajl, yajl_dont_validate_strings, 1);

    json_get_alloc_funcs(&malloc_fn, &free_fn);

    ngx_http_events_parse_pool = pool;
    ngx_http_events_parse_arena = NULL;
    ngx_http_events_parse_arena_end = NULL;

    /* a 300-byte event's tree takes some 2 KB */
    ngx_http_events_parse_chunk = ngx_max(1024, ngx_min(8 * len, 65536));

    json_set_alloc_funcs(ngx_http_events_parse_palloc,
                         ngx_http_events_parse_pfree);

    at = len;

    rc = yajl_parse(ps->yajl, data, len);

    if (rc == yajl_status_ok) {
        /* what can only be told at the end: a number, the end too soon */
        ps->completing = 1;
        rc = yajl_complete_parse(ps->yajl);

    } else {
        at = yajl_get_bytes_consumed(ps->yajl);
    }

    json_set_alloc_funcs(malloc_fn, free_fn);
    ngx_http_events_parse_pool = NULL;
    ngx_http_events_parse_arena = NULL;
    ngx_http_events_parse_arena_end = NULL;

    if (rc == yajl_status_ok) {
        /*
         * YAJL takes a token begun after the value and never ended
         * ('true"') for one to be continued: only blanks may follow
         */

        for (p = data + ps->root_end; p < data + len; p++) {
            if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
                ps->error = "trailing garbage";
                ps->error_at = p - data + 1;
                rc = yajl_status_error;
                break;
            }
        }
    }

    if (rc == yajl_status_ok) {
        /* YAJL's blanks include \f and \v, JSON's do not */

        p = ngx_http_events_parse_ff_vt(data, len);

        if (p) {
            ps->error = (*p == '\f') ? "invalid character U+000C"
                                     : "invalid character U+000B";
            ps->error_at = p - data + 1;
            rc = yajl_status_error;
        }
    }

    if (rc != yajl_status_ok) {
        ngx_http_events_parse_error(ps, at, error);
        yajl_free(ps->yajl);
        return NULL;
    }

    yajl_free(ps->yajl);

    return ps->root;
}


/*
 * jansson's nodes, some 30 for an event, are cut from chunks of the
 * pool: ngx_palloc() walks the pool's blocks for each (the request's
 * pool has many once a batch is parsed into it), this does not
 */

static void *
ngx_http_events_parse_palloc(size_t size)
{
    u_char  *p;

    size = ngx_align(size, NGX_ALIGNMENT);

    if (size > NGX_HTTP_EVENTS_PARSE_NODE) {
        return ngx_palloc(ngx_http_events_parse_pool, size);
    }

    if ((size_t) (ngx_http_events_parse_arena_end - ngx_http_events_parse_arena)
        < size)
    {
        p = ngx_palloc(ngx_http_events_parse_pool, ngx_http_events_parse_chunk);
        if (p == NULL) {
            return NULL;
        }

        /*
         * a chunk's first bytes are never a node's: ngx_pfree() of that
         * node would free the whole chunk
         */

        ngx_http_events_parse_arena = p + NGX_ALIGNMENT;
        ngx_http_events_parse_arena_end = p + ngx_http_events_parse_chunk;
    }

    p = ngx_http_events_parse_arena;
    ngx_http_events_parse_arena += size;

    return p;
}


static void
ngx_http_events_parse_pfree(void *p)
{
    /* a large block goes back at once; the rest stays until the pool */
    (void) ngx_pfree(ngx_http_events_parse_pool, p);
}


/*
 * YAJL's allocator: realloc() needs the old size, which the pool does
 * not keep, so each block starts with it.  YAJL allocates a few blocks
 * a parse (its handle, lexer, state stack); only a string with escapes
 * grows its decoding buffer.
 */

static void *
ngx_http_events_parse_yajl_alloc(void *ctx, size_t size)
{
    size_t  *p;

    p = ngx_palloc(ctx, sizeof(size_t) + size);
    if (p == NULL) {
        return NULL;
    }

    *p = size;

    return p + 1;
}


static void *
ngx_http_events_parse_yajl_realloc(void *ctx, void *p, size_t size)
{
    void    *n;
    size_t   old;

    n = ngx_http_events_parse_yajl_alloc(ctx, size);

    if (n == NULL || p == NULL) {
        return n;
    }

    old = ((size_t *) p)[-1];
    ngx_memcpy(n, p, ngx_min(old, size));

    ngx_http_events_parse_yajl_free(ctx, p);

    return n;
}


static void
ngx_http_events_parse_yajl_free(void *ctx, void *p)
{
    if (p) {
        (void) ngx_pfree(ctx, (size_t *) p - 1);
    }
}


/* a value into the container open, or the root */

static int
ngx_http_events_parse_add(ngx_http_events_parse_t *ps, json_t *v)
{
    size_t   n;
    json_t  *top;

    if (v == NULL) {
        return ngx_http_events_parse_fail(ps, "out of memory", 0);
    }

    if (ps->depth == 0) {
        ps->root = v;
        ps->root_end = ps->completing ? (size_t) (ps->end - ps->start)
                                      : yajl_get_bytes_consumed(ps->yajl);
        return 1;
    }

    top = ps->stack[ps->depth - 1];

    if (json_is_array(top)) {
        if (json_array_append_new(top, v) != 0) {
            return ngx_http_events_parse_fail(ps, "out of memory", 0);
        }

        return 1;
    }

    /* one hash lookup: a key already there is replaced, the size stays */

    n = json_object_size(top);

    if (json_object_setn_new_nocheck(top, (char *) ps->key, ps->key_len, v)
        != 0)
    {
        return ngx_http_events_parse_fail(ps, "out of memory", 0);
    }

    if (json_object_size(top) == n) {
        ps->duplicate = 1;
        return ngx_http_events_parse_fail(ps, "duplicate object key",
                                         ps->key_at);
    }

    return 1;
}


static int
ngx_http_events_parse_open(ngx_http_events_parse_t *ps, json_t *v)
{
    json_t  **stack;

    if (ps->depth == ps->nalloc) {
        if (ps->depth == NGX_HTTP_EVENTS_PARSE_DEPTH) {
            return ngx_http_events_parse_fail(ps, "nested deeper than 2048",
                                             0);
        }

        stack = ngx_palloc(ps->pool, 2 * ps->nalloc * sizeof(json_t *));
        if (stack == NULL) {
            return ngx_http_events_parse_fail(ps, "out of memory", 0);
        }

        ngx_memcpy(stack, ps->stack, ps->depth * sizeof(json_t *));

        if (ps->stack != ps->stack0) {
            (void) ngx_pfree(ps->pool, ps->stack);
        }

        ps->stack = stack;
        ps->nalloc *= 2;
    }

    if (!ngx_http_events_parse_add(ps, v)) {
        return 0;
    }

    ps->stack[ps->depth++] = v;

    return 1;
}


static int
ngx_http_events_parse_on_null(void *ctx)
{
    return ngx_http_events_parse_add(ctx, json_null());
}


static int
ngx_http_events_parse_on_boolean(void *ctx, int b)
{
    return ngx_http_events_parse_add(ctx, json_boolean(b));
}


/*
 * As jansson reads numbers: an integer unless it has a '.', 'e' or 'E',
 * exact in int64 or refused; else a double, refused if it overflows
 */

static int
ngx_http_events_parse_on_number(void *ctx, const char *s, size_t len)
{
    u_char                   *p, *last, buf[NGX_HTTP_EVENTS_PARSE_NUMBER];
    double                    d;
    uint64_t                  u, max;
    ngx_uint_t                d1;
    ngx_http_events_parse_t  *ps;

    ps = ctx;
    p = (u_char *) s;
    last = p + len;

    for ( /* void */ ; p < last; p++) {
        if (*p == '.' || *p == 'e' || *p == 'E') {
            break;
        }
    }

    if (p == last) {
        p = (u_char *) s;
        max = INT64_MAX;

        if (*p == '-') {
            max = (uint64_t) INT64_MAX + 1;
            p++;
        }

        for (u = 0; p < last; p++) {
            d1 = *p - '0';

            if (u > (max - d1) / 10) {
                return ngx_http_events_parse_fail(ps, "integer out of the "
                                                 "int64 range", 0);
            }

            u = u * 10 + d1;
        }

        return ngx_http_events_parse_add(ps, json_integer(
                   *s == '-' ? (json_int_t) (0 - u) : (json_int_t) u));
    }

    /* strtod() wants a terminated string */

    if (len < NGX_HTTP_EVENTS_PARSE_NUMBER) {
        p = buf;

    } else {
        p = ngx_pnalloc(ps->pool, len + 1);
        if (p == NULL) {
            return ngx_http_events_parse_fail(ps, "out of memory", 0);
        }
    }

    ngx_memcpy(p, s, len);
    p[len] = '\0';

    d = strtod((char *) p, NULL);

    if (isinf(d)) {
        return ngx_http_events_parse_fail(ps, "real number overflow", 0);
    }

    return ngx_http_events_parse_add(ps, json_real(d));
}


static int
ngx_http_events_parse_on_string(void *ctx, const unsigned char *s, size_t len)
{
    if (!ngx_http_events_parse_text_check(ctx, (u_char *) s, len)) {
        return 0;
    }

    return ngx_http_events_parse_add(ctx,
                                    json_stringn_nocheck((char *) s, len));
}


static int
ngx_http_events_parse_on_start_map(void *ctx)
{
    return ngx_http_events_parse_open(ctx, json_object());
}


static int
ngx_http_events_parse_on_map_key(void *ctx, const unsigned char *s,
    size_t len)
{
    u_char                   *p;
    ngx_http_events_parse_t  *ps;

    ps = ctx;
    p = (u_char *) s;

    if (!ngx_http_events_parse_text_check(ps, p, len)) {
        return 0;
    }

    if (p < ps->start || p >= ps->end) {
        /* unescaped in YAJL's buffer, which the value's may reuse */
        p = ngx_pnalloc(ps->pool, len);
        if (p == NULL && len) {
            return ngx_http_events_parse_fail(ps, "out of memory", 0);
        }

        ngx_memcpy(p, s, len);
    }

    ps->key = p;
    ps->key_len = len;
    ps->key_at = yajl_get_bytes_consumed(ps->yajl);

    return 1;
}


static int
ngx_http_events_parse_on_end(void *ctx)
{
    ngx_http_events_parse_t  *ps = ctx;

    if (--ps->depth == 0) {
        ps->root_end = yajl_get_bytes_consumed(ps->yajl);
    }

    return 1;
}


static int
ngx_http_events_parse_on_start_array(void *ctx)
{
    return ngx_http_events_parse_open(ctx, json_array());
}


/*
 * A string or key as jansson would take it.  Without escapes YAJL hands
 * the body's own bytes: well-formed UTF-8 is all to check.  With them,
 * the decoded text cannot tell \u0000 or a lone surrogate (YAJL makes
 * the latter a '?'), so the token as sent is checked instead.
 */

static int
ngx_http_events_parse_text_check(ngx_http_events_parse_t *ps, u_char *s,
    size_t len)
{
    u_char      *p, *last;
    size_t       n;
    uint64_t     w;
    ngx_uint_t   cp, lo;

    if (s >= ps->start && s < ps->end) {
        p = s;
        last = s + len;

        /* no escapes: ASCII eight bytes at a time, UTF-8 checked */

        for ( ;; ) {
            for ( /* void */ ; last - p >= 8; p += 8) {
                ngx_memcpy(&w, p, 8);

                if (w & 0x8080808080808080ULL) {
                    break;
                }
            }

            while (p < last && *p < 0x80) {
                p++;
            }

            if (p == last) {
                return 1;
            }

            n = ngx_http_events_json_utf8_len(p, last - p);
            if (n == 0) {
                return ngx_http_events_parse_fail(ps, "invalid UTF-8", 0);
            }

            p += n;
        }
    }

    /* the closing quote is the last byte YAJL took */
    last = ps->start + yajl_get_bytes_consumed(ps->yajl) - 1;
    p = ngx_http_events_parse_raw_start(ps, last);

    while (p < last) {

        if (*p < 0x80 && *p != '\\') {
            p++;
            continue;
        }

        if (*p == '\\') {
            if (p[1] != 'u') {
                p += 2;
                continue;
            }

            cp = ngx_http_events_parse_hex4(p + 2);
            p += 6;

            if (cp == 0) {
                return ngx_http_events_parse_fail(ps, "\\u0000 is not "
                                                 "allowed", 0);
            }

            if (cp >= 0xdc00 && cp <= 0xdfff) {
                goto surrogate;
            }

            if (cp >= 0xd800 && cp <= 0xdbff) {
                if (last - p < 6 || p[0] != '\\' || p[1] != 'u') {
                    goto surrogate;
                }

                lo = ngx_http_events_parse_hex4(p + 2);

                if (lo < 0xdc00 || lo > 0xdfff) {
                    goto surrogate;
                }

                p += 6;
            }

            continue;
        }

        n = ngx_http_events_json_utf8_len(p, last - p);
        if (n == 0) {
            return ngx_http_events_parse_fail(ps, "invalid UTF-8", 0);
        }

        p += n;
    }

    return 1;

surrogate:

    return ngx_http_events_parse_fail(ps, "invalid \\u escape: "
                                     "a lone UTF-16 surrogate", 0);
}


/*
 * The first \f or \v byte: never valid, as blanks or (raw) in strings,
 * where YAJL refuses them already.  memchr() reads a batch's whole body
 * at a few instructions per 32 bytes; the second search stops where the
 * first found one.
 */

static u_char *
ngx_http_events_parse_ff_vt(u_char *p, size_t len)
{
    u_char  *ff, *vt;

    ff = memchr(p, '\f', len);

    vt = memchr(p, '\v', ff ? (size_t) (ff - p) : len);

    return vt ? vt : ff;
}


/* the 4 hex digits of a \u escape, which YAJL's lexer checked */

static ngx_uint_t
ngx_http_events_parse_hex4(u_char *p)
{
    u_char      c;
    ngx_uint_t  i, v;

    for (v = 0, i = 0; i < 4; i++) {
        c = p[i] | 0x20;
        v = (v << 4) | (c >= 'a' ? c - 'a' + 10 : c - '0');
    }

    return v;
}


/*
 * The opening quote of the string token whose closing quote is given:
 * the nearest quote before it not escaped, that is, after an even run
 * of backslashes (inside a string every quote is escaped)
 */

static u_char *
ngx_http_events_parse_raw_start(ngx_http_events_parse_t *ps,
    u_char *quote)
{
    u_char  *p, *q;

    for (p = quote - 1; p > ps->start; p--) {
        if (*p != '"') {
            continue;
        }

        for (q = p; q > ps->start && q[-1] == '\\'; q--) { /* void */ }

        if ((p - q) % 2 == 0) {
            break;
        }
    }

    return p + 1;
}


/* a callback refuses: YAJL stops, and the error says why */

static int
ngx_http_events_parse_fail(ngx_http_events_parse_t *ps,
    const char *error, size_t at)
{
    if (ps->error == NULL) {
        ps->error = error;

        /* YAJL's count is of the chunk: the last one is empty */
        ps->error_at = at ? at
                          : ps->completing ? (size_t) (ps->end - ps->start)
                                           : yajl_get_bytes_consumed(ps->yajl);
    }

    return 0;
}


/*
 * jansson's json_error_t, so that callers are as before: the line and
 * column (in characters) where it went wrong, and why, in YAJL's words
 * less its "parse error: " or ours
 */

static void
ngx_http_events_parse_error(ngx_http_events_parse_t *ps,
    size_t at, json_error_t *error)
{
    u_char     *p, *last, *msg, *yerr;
    size_t      len;
    ngx_int_t   line, column;

    yerr = NULL;

    if (ps->error) {
        at = ps->error_at;
        msg = (u_char *) ps->error;
        len = ngx_strlen(msg);

    } else if (ps->yajl == NULL) {
        msg = (u_char *) "out of memory";
        len = sizeof("out of memory") - 1;

    } else {
        yerr = yajl_get_error(ps->yajl, 0, NULL, 0);
        msg = yerr ? yerr : (u_char *) "error";

        p = (u_char *) ngx_strstr(msg, "error: ");
        if (p) {
            msg = p + sizeof("error: ") - 1;
        }

        len = ngx_strlen(msg);

        while (len && (msg[len - 1] == '\n' || msg[len - 1] == '.')) {
            len--;
        }

        if (len == sizeof("premature EOF") - 1
            && ngx_strncmp(msg, "premature EOF", len) == 0)
        {
            msg = (u_char *) "unexpected end of input";
            len = sizeof("unexpected end of input") - 1;
        }
    }

    line = 1;
    column = 0;
    last = ps->start + ngx_min(at, (size_t) (ps->end - ps->start));

    for (p = ps->start; p < last; p++) {
        if (*p == '\n') {
            line++;
            column = 0;

        } else if ((*p & 0xc0) != 0x80) {
            column++;
        }
    }

    ngx_memzero(error, sizeof(json_error_t));

    error->line = line;
    error->column = column;
    error->position = last - ps->start;

    if (ps->duplicate) {
        /* the key, cut short at a character's start if long */
        len = ps->key_len;

        if (len > NGX_HTTP_EVENTS_PARSE_KEY_SHOWN) {
            len = NGX_HTTP_EVENTS_PARSE_KEY_SHOWN;

            while (len && (ps->key[len] & 0xc0) == 0x80) {
                len--;
            }
        }

        /* 22 + 64 + 4 bytes: within error->text */
        p = ngx_cpymem((u_char *) error->text, "duplicate object key \"",
                       sizeof("duplicate object key \"") - 1);
        p = ngx_cpymem(p, ps->key, len);

        if (len < ps->key_len) {
            p = ngx_cpymem(p, "...", 3);
        }

        *p++ = '"';
        *p = '\0';

    } else {
        len = ngx_min(len, sizeof(error->text) - 1);
        ngx_memcpy(error->text, msg, len);
    }

    if (yerr) {
        yajl_free_error(ps->yajl, yerr);
    }
}
