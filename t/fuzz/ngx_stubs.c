
/*
 * Copyright (C) ngx_http_events_module authors
 */


/*
 * Stand-ins for the few nginx core functions and variables that the
 * fuzzed sources (json, cursor, match, query) link against.  They are
 * our own, small, and honest for a sanitizer: every pool allocation is
 * its own malloc() of exactly the size asked, so that ASan sees the real
 * bounds of each buffer, and the printf family aborts on a conversion it
 * does not know rather than guess.
 *
 * The set is exactly what the linker asks for; when the sources start to
 * use another core function, the fuzz build fails to link and names it.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_md5.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>


/* time: a fixed clock, 2026-11-23T12:00:00.123Z */

static ngx_time_t  fz_time = { 1795435200, 123, 0 };

volatile ngx_time_t  *ngx_cached_time = &fz_time;


/* as nginx's: the year in full, months from 1 (libc's gmtime_r() does) */

void
ngx_gmtime(time_t t, ngx_tm_t *tp)
{
    (void) gmtime_r(&t, tp);

    tp->ngx_tm_year += 1900;
    tp->ngx_tm_mon += 1;
}


/* the process: one, never forked */

ngx_pid_t  ngx_pid = 1;


/* crc32, the 16-entry (nibble) table of the reflected polynomial */

static uint32_t  fz_crc32_short[16];

uint32_t  *ngx_crc32_table_short = fz_crc32_short;


static void fz_stubs_init(void) __attribute__((constructor));


static void
fz_stubs_init(void)
{
    uint32_t    c;
    ngx_uint_t  i, k;

    for (i = 0; i < 16; i++) {
        c = (uint32_t) i;

        for (k = 0; k < 4; k++) {
            c = (c & 1) ? (c >> 1) ^ 0xedb88320 : c >> 1;
        }

        fz_crc32_short[i] = c;
    }

    /* the check value of CRC-32: a wrong table would still round-trip */
    if (ngx_crc32_short((u_char *) "123456789", 9) != 0xcbf43926) {
        fprintf(stderr, "ngx_stubs: crc32 table is wrong\n");
        abort();
    }
}


/*
 * pools: a header and a growing list of separately malloc'd blocks,
 * all freed at destroy
 */

typedef struct {
    ngx_pool_t   pool;          /* first: the pointer callers hold */
    void       **blocks;
    size_t       nblocks;
    size_t       cap;
} fz_pool_t;


ngx_pool_t *
ngx_create_pool(size_t size, ngx_log_t *log)
{
    fz_pool_t  *fp;

    (void) size;

    fp = calloc(1, sizeof(fz_pool_t));
    if (fp == NULL) {
        return NULL;
    }

    fp->pool.log = log;

    return &fp->pool;
}


void
ngx_destroy_pool(ngx_pool_t *pool)
{
    size_t      i;
    fz_pool_t  *fp;

    fp = (fz_pool_t *) pool;

    for (i = 0; i < fp->nblocks; i++) {
        free(fp->blocks[i]);
    }

    free(fp->blocks);
    free(fp);
}


static void *
fz_pool_alloc(ngx_pool_t *pool, size_t size)
{
    void       *p, **blocks;
    size_t      cap;
    fz_pool_t  *fp;

    fp = (fz_pool_t *) pool;

    if (fp->nblocks == fp->cap) {
        cap = fp->cap ? fp->cap * 2 : 16;

        blocks = realloc(fp->blocks, cap * sizeof(void *));
        if (blocks == NULL) {
            return NULL;
        }

        fp->blocks = blocks;
        fp->cap = cap;
    }

    /* malloc(0) gives a unique pointer with no bytes to touch: good */
    p = malloc(size);
    if (p == NULL) {
        return NULL;
    }

    fp->blocks[fp->nblocks++] = p;

    return p;
}


void *
ngx_palloc(ngx_pool_t *pool, size_t size)
{
    return fz_pool_alloc(pool, size);
}


void *
ngx_pnalloc(ngx_pool_t *pool, size_t size)
{
    return fz_pool_alloc(pool, size);
}


/*
 * nginx frees only large blocks here; every block is freed at once, so
 * that AddressSanitizer sees any use of what was given back
 */

ngx_int_t
ngx_pfree(ngx_pool_t *pool, void *p)
{
    size_t      i;
    fz_pool_t  *fp;

    fp = (fz_pool_t *) pool;

    for (i = 0; i < fp->nblocks; i++) {
        if (fp->blocks[i] == p) {
            free(p);
            fp->blocks[i] = fp->blocks[--fp->nblocks];
            return NGX_OK;
        }
    }

    return NGX_DECLINED;
}


/* md5: OpenSSL's, its context kept behind a pointer in ngx_md5_t */

static EVP_MD_CTX *
fz_md5_ctx(ngx_md5_t *ctx)
{
    EVP_MD_CTX  *md;

    ngx_memcpy(&md, ctx->buffer, sizeof(md));

    return md;
}


void
ngx_md5_init(ngx_md5_t *ctx)
{
    EVP_MD_CTX  *md;

    md = EVP_MD_CTX_new();

    if (md == NULL || EVP_DigestInit_ex(md, EVP_md5(), NULL) != 1) {
        abort();
    }

    ngx_memzero(ctx, sizeof(ngx_md5_t));
    ngx_memcpy(ctx->buffer, &md, sizeof(md));
}


void
ngx_md5_update(ngx_md5_t *ctx, const void *data, size_t size)
{
    if (EVP_DigestUpdate(fz_md5_ctx(ctx), data, size) != 1) {
        abort();
    }

    ctx->bytes += size;
}


void
ngx_md5_final(u_char result[16], ngx_md5_t *ctx)
{
    EVP_MD_CTX    *md;
    unsigned int   n;

    md = fz_md5_ctx(ctx);

    if (EVP_DigestFinal_ex(md, result, &n) != 1 || n != 16) {
        abort();
    }

    EVP_MD_CTX_free(md);
    ngx_memzero(ctx, sizeof(ngx_md5_t));
}


/* numbers */

ngx_int_t
ngx_atoi(u_char *line, size_t n)
{
    ngx_int_t  value, d;

    if (n == 0) {
        return NGX_ERROR;
    }

    value = 0;

    while (n--) {
        if (*line < '0' || *line > '9') {
            return NGX_ERROR;
        }

        d = *line++ - '0';

        if (value > (NGX_MAX_INT_T_VALUE - d) / 10) {
            return NGX_ERROR;
        }

        value = value * 10 + d;
    }

    return value;
}


/* base64url (RFC 4648 section 5), without padding on output */

static const char  fz_b64url[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";


void
ngx_encode_base64url(ngx_str_t *dst, ngx_str_t *src)
{
    u_char    *d, *s;
    size_t     n;
    uint32_t   v;

    s = src->data;
    n = src->len;
    d = dst->data;

    for ( /* void */ ; n >= 3; n -= 3, s += 3) {
        v = ((uint32_t) s[0] << 16) | ((uint32_t) s[1] << 8) | s[2];
        *d++ = fz_b64url[(v >> 18) & 0x3f];
        *d++ = fz_b64url[(v >> 12) & 0x3f];
        *d++ = fz_b64url[(v >> 6) & 0x3f];
        *d++ = fz_b64url[v & 0x3f];
    }

    if (n == 2) {
        v = ((uint32_t) s[0] << 16) | ((uint32_t) s[1] << 8);
        *d++ = fz_b64url[(v >> 18) & 0x3f];
        *d++ = fz_b64url[(v >> 12) & 0x3f];
        *d++ = fz_b64url[(v >> 6) & 0x3f];

    } else if (n == 1) {
        v = (uint32_t) s[0] << 16;
        *d++ = fz_b64url[(v >> 18) & 0x3f];
        *d++ = fz_b64url[(v >> 12) & 0x3f];
    }

    dst->len = d - dst->data;
}


static int
fz_b64url_value(u_char ch)
{
    if (ch >= 'A' && ch <= 'Z') {
        return ch - 'A';
    }

    if (ch >= 'a' && ch <= 'z') {
        return ch - 'a' + 26;
    }

    if (ch >= '0' && ch <= '9') {
        return ch - '0' + 52;
    }

    if (ch == '-') {
        return 62;
    }

    if (ch == '_') {
        return 63;
    }

    return -1;
}


/*
 * As nginx does: the text ends at the first '=' (what follows is not
 * looked at), any other character outside the alphabet is an error, and
 * so is a length that leaves a lone 6-bit group.
 */

ngx_int_t
ngx_decode_base64url(ngx_str_t *dst, ngx_str_t *src)
{
    int        c;
    u_char    *d;
    size_t     n, i;
    uint32_t   acc;
    ngx_uint_t bits;

    for (n = 0; n < src->len; n++) {
        if (src->data[n] == '=') {
            break;
        }

        if (fz_b64url_value(src->data[n]) < 0) {
            return NGX_ERROR;
        }
    }

    if (n % 4 == 1) {
        return NGX_ERROR;
    }

    d = dst->data;
    acc = 0;
    bits = 0;

    for (i = 0; i < n; i++) {
        c = fz_b64url_value(src->data[i]);
        acc = (acc << 6) | (uint32_t) c;
        bits += 6;

        if (bits >= 8) {
            bits -= 8;
            *d++ = (u_char) (acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }

    dst->len = d - dst->data;

    return NGX_OK;
}


/*
 * %XX decoding in place of the query string; with type 0, as the module
 * calls it, nothing else is special.  Like nginx, a '%' not followed by
 * two hex digits is dropped together with what hex digit followed it.
 * The output is never longer than the input.
 */

static int
fz_hex_value(u_char ch)
{
    if (ch >= '0' && ch <= '9') {
        return ch - '0';
    }

    ch |= 0x20;

    if (ch >= 'a' && ch <= 'f') {
        return ch - 'a' + 10;
    }

    return -1;
}


void
ngx_unescape_uri(u_char **dst, u_char **src, size_t size, ngx_uint_t type)
{
    int      h1, h2;
    u_char  *d, *s, *end;

    if (type != 0) {
        fprintf(stderr, "ngx_stubs: ngx_unescape_uri type %lu\n",
                (unsigned long) type);
        abort();
    }

    d = *dst;
    s = *src;
    end = s + size;

    while (s < end) {
        if (*s != '%') {
            *d++ = *s++;
            continue;
        }

        s++;

        if (s == end) {
            break;
        }

        h1 = fz_hex_value(*s);

        if (h1 < 0) {
            *d++ = *s++;
            continue;
        }

        s++;

        if (s == end) {
            break;
        }

        h2 = fz_hex_value(*s);

        if (h2 < 0) {
            *d++ = *s++;
            continue;
        }

        *d++ = (u_char) (h1 * 16 + h2);
        s++;
    }

    *dst = d;
    *src = s;
}


/*
 * The printf family, with nginx's conversions:
 *
 *   %[0][width][u][x|X][*]C
 *
 *   C:  V  ngx_str_t *          s  u_char * (with '*': size_t, u_char *)
 *       d  int / u_int          i  ngx_int_t / ngx_uint_t
 *       z  ssize_t / size_t     L  int64_t / uint64_t
 *       P  ngx_pid_t            Z  '\0'        %  '%'
 *
 * Anything else aborts, so that a format this file does not know shows
 * up as a crash, not as quietly wrong output.
 */

static u_char *
fz_put(u_char *buf, u_char *last, const u_char *s, size_t len)
{
    size_t  room;

    room = (uintptr_t) last - (uintptr_t) buf;

    if (len > room) {
        len = room;
    }

    ngx_memcpy(buf, s, len);

    return buf + len;
}


static u_char *
fz_number(u_char *buf, u_char *last, uint64_t v, ngx_uint_t negative,
    ngx_uint_t hex, ngx_uint_t zero, ngx_uint_t width)
{
    u_char             tmp[32], *p;
    size_t             len;
    const char        *digits;
    static const char  lower[] = "0123456789abcdef";
    static const char  upper[] = "0123456789ABCDEF";

    p = tmp + sizeof(tmp);
    digits = (hex == 2) ? upper : lower;

    do {
        if (hex) {
            *--p = digits[v & 0xf];
            v >>= 4;

        } else {
            *--p = digits[v % 10];
            v /= 10;
        }
    } while (v);

    len = tmp + sizeof(tmp) - p;

    if (negative && buf < last) {
        *buf++ = '-';
    }

    while (width > len && buf < last) {
        *buf++ = zero ? '0' : ' ';
        width--;
    }

    return fz_put(buf, last, p, len);
}


u_char *
ngx_vslprintf(u_char *buf, u_char *last, const char *fmt, va_list args)
{
    u_char      *s;
    size_t       slen;
    int64_t      i64;
    uint64_t     u64;
    ngx_str_t   *v;
    ngx_uint_t   zero, width, sign, hex, star, negative;

    while (*fmt && buf < last) {

        if (*fmt != '%') {
            *buf++ = (u_char) *fmt++;
            continue;
        }

        fmt++;

        zero = 0;
        width = 0;
        sign = 1;
        hex = 0;
        star = 0;
        slen = 0;

        if (*fmt == '0') {
            zero = 1;
            fmt++;
        }

        while (*fmt >= '0' && *fmt <= '9') {
            width = width * 10 + (*fmt++ - '0');
        }

        for ( ;; ) {
            if (*fmt == 'u') {
                sign = 0;

            } else if (*fmt == 'x') {
                sign = 0;
                hex = 1;

            } else if (*fmt == 'X') {
                sign = 0;
                hex = 2;

            } else if (*fmt == '*') {
                star = 1;
                slen = va_arg(args, size_t);

            } else {
                break;
            }

            fmt++;
        }

        negative = 0;
        i64 = 0;
        u64 = 0;

        switch (*fmt) {

        case 'V':
            v = va_arg(args, ngx_str_t *);
            buf = fz_put(buf, last, v->data, v->len);
            fmt++;
            continue;

        case 's':
            s = va_arg(args, u_char *);

            if (!star) {
                slen = ngx_strlen(s);
            }

            buf = fz_put(buf, last, s, slen);
            fmt++;
            continue;

        case 'Z':
            *buf++ = '\0';
            fmt++;
            continue;

        case '%':
            *buf++ = '%';
            fmt++;
            continue;

        case 'd':
            if (sign) {
                i64 = va_arg(args, int);
            } else {
                u64 = va_arg(args, unsigned int);
            }
            break;

        case 'i':
            if (sign) {
                i64 = va_arg(args, ngx_int_t);
            } else {
                u64 = va_arg(args, ngx_uint_t);
            }
            break;

        case 'z':
            if (sign) {
                i64 = va_arg(args, ssize_t);
            } else {
                u64 = va_arg(args, size_t);
            }
            break;

        case 'L':
            if (sign) {
                i64 = va_arg(args, int64_t);
            } else {
                u64 = va_arg(args, uint64_t);
            }
            break;

        case 'P':
            i64 = va_arg(args, ngx_pid_t);
            sign = 1;
            break;

        default:
            fprintf(stderr, "ngx_stubs: unknown conversion in \"%s\"\n",
                    fmt);
            abort();
        }

        fmt++;

        if (sign) {
            if (i64 < 0) {
                negative = 1;
                u64 = (uint64_t) 0 - (uint64_t) i64;

            } else {
                u64 = (uint64_t) i64;
            }
        }

        if (star) {
            fprintf(stderr, "ngx_stubs: '*' on a number\n");
            abort();
        }

        buf = fz_number(buf, last, u64, negative, hex, zero, width);
    }

    return buf;
}


u_char * ngx_cdecl
ngx_sprintf(u_char *buf, const char *fmt, ...)
{
    u_char   *p;
    va_list   args;

    va_start(args, fmt);
    p = ngx_vslprintf(buf, (u_char *) (uintptr_t) -1, fmt, args);
    va_end(args);

    return p;
}


u_char * ngx_cdecl
ngx_slprintf(u_char *buf, u_char *last, const char *fmt, ...)
{
    u_char   *p;
    va_list   args;

    va_start(args, fmt);
    p = ngx_vslprintf(buf, last, fmt, args);
    va_end(args);

    return p;
}
