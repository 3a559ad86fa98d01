
/*
 * Copyright (C) ngx_http_events_module authors
 */


/*
 * libFuzzer target: what GET /events makes of its query string
 * (src/ngx_http_events_query.c), the cursors (src/ngx_http_events_cursor.c)
 * and the type patterns (src/ngx_http_events_match.c).
 *
 * The whole input is a query string, and a cursor.  Its first 16 bytes
 * are also an (epoch, seq) to write as a cursor and read back, and the
 * seq once more with the key's own epoch (cursors of another epoch read
 * back as that epoch and seq 0: only the key's epoch is decrypted).  Split at
 * the first '\n' it is a pattern and a type: a valid pattern without '*'
 * matches exactly the type that is itself, and any valid pattern matches
 * a valid type exactly when a reference matcher, written here from the
 * documented rules, says it does.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ngx_http_events_query.h"
#include "ngx_http_events_cursor.h"
#include "ngx_http_events_match.h"

#include "fuzz_utf8.h"


#define fz_check(cond, ...)                                                  \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fprintf(stderr, "fuzz_query: invariant failed: %s (%s:%d)\n",    \
                    #cond, __FILE__, __LINE__);                              \
            fprintf(stderr, "  " __VA_ARGS__);                               \
            fprintf(stderr, "\n");                                           \
            abort();                                                         \
        }                                                                    \
    } while (0)


static void fz_query(u_char *p, size_t len);
static void fz_query_mode(u_char *p, size_t len, ngx_uint_t mode);
static ngx_http_events_cursor_key_t *fz_cursor_key(void);
static void fz_cursor(u_char *p, size_t len);
static void fz_cursor_values(uint64_t epoch, uint64_t seq);
static void fz_match(u_char *p, size_t len);
static ngx_uint_t fz_ref_match(ngx_str_t *pattern, ngx_str_t *type);


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    u_char  *p;

    /* a copy of exactly the length, so that over-reads show */
    p = malloc(size ? size : 1);
    if (p == NULL) {
        abort();
    }

    ngx_memcpy(p, data, size);

    fz_query(p, size);
    fz_cursor(p, size);
    fz_match(p, size);

    free(p);

    return 0;
}


static void
fz_query(u_char *p, size_t len)
{
#ifdef NGX_HTTP_EVENTS_QUERY_STREAM
    fz_query_mode(p, len, NGX_HTTP_EVENTS_QUERY_LIST);
    fz_query_mode(p, len, NGX_HTTP_EVENTS_QUERY_STREAM);
#else
    fz_query_mode(p, len, 0);
#endif
}


static void
fz_query_mode(u_char *p, size_t len, ngx_uint_t mode)
{
    ngx_int_t                 rc;
    ngx_str_t                 args;
    ngx_uint_t                i;
    ngx_pool_t               *pool;
    ngx_http_events_query_t   q;
    ngx_http_events_error_t   err;

    pool = ngx_create_pool(4096, NULL);
    if (pool == NULL) {
        abort();
    }

    ngx_memzero(&q, sizeof(ngx_http_events_query_t));
    ngx_memzero(&err, sizeof(ngx_http_events_error_t));

    args.data = p;
    args.len = len;

    rc = ngx_http_events_query_parse(&args, mode, fz_cursor_key(), pool, &q,
                                     &err);

    if (rc != NGX_OK) {
        fz_check(rc == NGX_ERROR, "rc %ld", (long) rc);
        fz_check(err.status == 400, "status %lu",
                 (unsigned long) err.status);
        fz_check(err.code != NULL, "no error code");
        fz_check(err.name_len <= sizeof(err.name), "name_len %zu",
                 err.name_len);
        fz_check(err.message_len <= sizeof(err.message), "message_len %zu",
                 err.message_len);

        /* both go out in a JSON error body */
        fz_check(fz_utf8_valid(err.name, err.name_len),
                 "error name not UTF-8: \"%.*s\"", (int) err.name_len,
                 err.name);
        fz_check(fz_utf8_valid(err.message, err.message_len),
                 "error message not UTF-8: \"%.*s\"", (int) err.message_len,
                 err.message);

        ngx_destroy_pool(pool);
        return;
    }

    fz_check(q.limit >= 1 && q.limit <= NGX_HTTP_EVENTS_MAX_LIMIT,
             "limit %lu", (unsigned long) q.limit);
    fz_check(q.ntypes <= NGX_HTTP_EVENTS_MAX_PATTERNS, "ntypes %lu",
             (unsigned long) q.ntypes);

    for (i = 0; i < q.ntypes; i++) {
        fz_check(ngx_http_events_match_pattern_valid(q.types[i].data,
                                                     q.types[i].len)
                 == NGX_OK, "types[%lu] \"%.*s\" not valid",
                 (unsigned long) i, (int) q.types[i].len, q.types[i].data);
    }

    fz_check(!(q.has_after && q.before), "after and before");
    fz_check(!q.before || q.desc, "before, ascending");
    fz_check(!q.has_after || !q.desc, "after, descending");
    fz_check(q.rid.len == 0 || q.rtype.len != 0, "resourceId alone");
    fz_check(q.action <= 4, "action %lu", (unsigned long) q.action);
    fz_check(q.rtype.len <= 64 && q.rid.len <= 128 && q.source.len <= 128,
             "key lengths");

    /*
     * metadata filters: valid keys, and the matcher safe on any bytes
     * (it reads ring records a writer may be overwriting): the input
     * itself as an "envelope", in a copy of exactly its length
     */
    fz_check(q.nmeta <= NGX_HTTP_EVENTS_MAX_META_FILTERS, "nmeta %lu",
             (unsigned long) q.nmeta);

    for (i = 0; i < q.nmeta; i++) {
        fz_check(ngx_http_events_match_meta_key_valid(q.meta[i].key.data,
                                                      q.meta[i].key.len)
                 == NGX_OK, "meta[%lu] key", (unsigned long) i);
    }

    if (q.nmeta) {
        (void) ngx_http_events_match_metadata(q.meta, q.nmeta, p, len);
    }

#ifdef NGX_HTTP_EVENTS_QUERY_STREAM
    if (mode == NGX_HTTP_EVENTS_QUERY_STREAM) {
        /* a stream takes no window or paging parameters */
        fz_check(q.since_ms == -1 && q.until_ms == -1 && !q.has_after
                 && q.before == 0 && q.limit == NGX_HTTP_EVENTS_DEFAULT_LIMIT
                 && !q.desc, "a list parameter in a stream");

    } else {
        fz_check(q.last_event_id.len == 0 && !q.named,
                 "a stream parameter in a list");
    }
#endif

    ngx_destroy_pool(pool);
}


static uint64_t
fz_get64(u_char *p)
{
    uint64_t    v;
    ngx_uint_t  i;

    v = 0;

    for (i = 0; i < 8; i++) {
        v = (v << 8) | p[i];
    }

    return v;
}


#define FZ_EPOCH  0x0123456789abcdefULL

static ngx_http_events_cursor_key_t *
fz_cursor_key(void)
{
    static ngx_http_events_cursor_key_t  key;

    if (key.enc == NULL
        && ngx_http_events_cursor_key_init(&key,
                                           (u_char *) "0123456789abcdef",
                                           FZ_EPOCH)
           != NGX_OK)
    {
        abort();
    }

    return &key;
}


static void
fz_cursor(u_char *p, size_t len)
{
    u_char     buf[NGX_HTTP_EVENTS_CURSOR_LEN], *end;
    uint64_t   epoch, seq;
    ngx_int_t  rc;

    rc = ngx_http_events_cursor_parse(fz_cursor_key(), p, len, &epoch,
                                      &seq);

    if (rc == NGX_OK) {
        fz_check(len == NGX_HTTP_EVENTS_CURSOR_LEN, "len %zu", len);

        if (epoch == FZ_EPOCH) {
            /* 36 characters hold 27 bytes exactly: one text per cursor */
            end = ngx_http_events_cursor_write(fz_cursor_key(), buf, epoch,
                                               seq);

            fz_check(end - buf == NGX_HTTP_EVENTS_CURSOR_LEN
                     && memcmp(buf, p, NGX_HTTP_EVENTS_CURSOR_LEN) == 0,
                     "\"%.*s\" writes back as \"%.*s\"", (int) len, p,
                     (int) (end - buf), buf);

        } else {
            fz_check(seq == 0, "a foreign epoch's seq %llu",
                     (unsigned long long) seq);
        }

        fz_cursor_values(epoch, seq);

    } else {
        fz_check(rc == NGX_ERROR, "rc %ld", (long) rc);
    }

    if (len >= 16) {
        fz_cursor_values(fz_get64(p), fz_get64(p + 8));
        fz_cursor_values(FZ_EPOCH, fz_get64(p + 8));
    }
}


static void
fz_cursor_values(uint64_t epoch, uint64_t seq)
{
    u_char     *buf, *end;
    uint64_t    e, s;
    ngx_int_t   rc;

    buf = malloc(NGX_HTTP_EVENTS_CURSOR_LEN);
    if (buf == NULL) {
        abort();
    }

    end = ngx_http_events_cursor_write(fz_cursor_key(), buf, epoch, seq);

    fz_check(end - buf == NGX_HTTP_EVENTS_CURSOR_LEN, "cursor of %ld bytes",
             (long) (end - buf));

    rc = ngx_http_events_cursor_parse(fz_cursor_key(), buf,
                                      NGX_HTTP_EVENTS_CURSOR_LEN, &e, &s);

    fz_check(rc == NGX_OK && e == epoch
             && s == (epoch == FZ_EPOCH ? seq : 0),
             "(%llu, %llu) -> \"%.*s\" -> rc %ld (%llu, %llu)",
             (unsigned long long) epoch, (unsigned long long) seq,
             NGX_HTTP_EVENTS_CURSOR_LEN, buf, (long) rc,
             (unsigned long long) e, (unsigned long long) s);

    free(buf);
}


static void
fz_match(u_char *p, size_t len)
{
    u_char      *nl;
    ngx_str_t    pattern, type;
    ngx_uint_t   star, m, ref, has_type;

    nl = memchr(p, '\n', len);

    pattern.data = p;
    pattern.len = nl ? (size_t) (nl - p) : len;

    has_type = 0;

    if (nl) {
        type.data = nl + 1;
        type.len = p + len - type.data;
        has_type = (ngx_http_events_match_type_valid(type.data, type.len)
                    == NGX_OK);
    }

    /* every type is a pattern that names itself */
    if (ngx_http_events_match_type_valid(pattern.data, pattern.len) == NGX_OK) {
        fz_check(ngx_http_events_match_pattern_valid(pattern.data, pattern.len)
                 == NGX_OK, "type \"%.*s\" is not a valid pattern",
                 (int) pattern.len, pattern.data);
    }

    if (ngx_http_events_match_pattern_valid(pattern.data,
                                            pattern.len) != NGX_OK) {
        return;
    }

    star = (memchr(pattern.data, '*', pattern.len) != NULL);

    if (!star) {
        fz_check(ngx_http_events_match_type_valid(pattern.data, pattern.len)
                 == NGX_OK, "pattern \"%.*s\" without '*' is no type",
                 (int) pattern.len, pattern.data);
        fz_check(ngx_http_events_match(&pattern, &pattern) == 1,
                 "\"%.*s\" does not match itself",
                 (int) pattern.len, pattern.data);
    }

    if (!has_type) {
        return;
    }

    m = ngx_http_events_match(&pattern, &type);

    if (!star) {
        fz_check(m == (pattern.len == type.len
                       && memcmp(pattern.data, type.data, type.len) == 0),
                 "\"%.*s\" vs \"%.*s\": match %lu",
                 (int) pattern.len, pattern.data, (int) type.len, type.data,
                 (unsigned long) m);
    }

    ref = fz_ref_match(&pattern, &type);

    fz_check(m == ref, "\"%.*s\" vs \"%.*s\": match %lu, reference %lu",
             (int) pattern.len, pattern.data, (int) type.len, type.data,
             (unsigned long) m, (unsigned long) ref);

    fz_check(ngx_http_events_match_any(&pattern, 1, &type) == m,
             "match_any differs");
}


/*
 * The rules, from the top of src/ngx_http_events_match.c: "*" or "**"
 * alone matches everything; "*" as a segment matches exactly one
 * segment; a last segment "*" or "**" after others matches any
 * non-empty rest; anything else matches itself.
 */

#define FZ_MAX_SEGS  130

static ngx_uint_t
fz_split(ngx_str_t *s, ngx_str_t *segs)
{
    u_char      *p, *end, *dot;
    ngx_uint_t   n;

    n = 0;
    p = s->data;
    end = p + s->len;

    for ( ;; ) {
        dot = memchr(p, '.', end - p);

        if (dot == NULL) {
            dot = end;
        }

        segs[n].data = p;
        segs[n].len = dot - p;
        n++;

        if (dot == end) {
            return n;
        }

        p = dot + 1;
    }
}


static ngx_uint_t
fz_is(ngx_str_t *seg, const char *s)
{
    return seg->len == strlen(s) && memcmp(seg->data, s, seg->len) == 0;
}


static ngx_uint_t
fz_ref_match(ngx_str_t *pattern, ngx_str_t *type)
{
    ngx_uint_t  np, nt, i, trailing;
    ngx_str_t   ps[FZ_MAX_SEGS], ts[FZ_MAX_SEGS];

    np = fz_split(pattern, ps);
    nt = fz_split(type, ts);

    if (np == 1 && (fz_is(&ps[0], "*") || fz_is(&ps[0], "**"))) {
        return 1;
    }

    trailing = np > 1 && (fz_is(&ps[np - 1], "*")
                          || fz_is(&ps[np - 1], "**"));

    if (trailing) {
        if (nt < np) {
            return 0;
        }

        np--;

    } else if (nt != np) {
        return 0;
    }

    for (i = 0; i < np; i++) {
        if (fz_is(&ps[i], "*")) {
            continue;
        }

        if (ps[i].len != ts[i].len
            || memcmp(ps[i].data, ts[i].data, ps[i].len) != 0)
        {
            return 0;
        }
    }

    return 1;
}
