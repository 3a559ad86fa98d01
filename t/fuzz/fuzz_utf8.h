
/*
 * Copyright (C) ngx_http_events_module authors
 */


/*
 * Strict UTF-8 (RFC 3629): no overlong forms, no surrogates, nothing
 * past U+10FFFF.  What the API sends is JSON, and JSON text is UTF-8.
 */


#ifndef _FUZZ_UTF8_H_INCLUDED_
#define _FUZZ_UTF8_H_INCLUDED_


static ngx_uint_t
fz_utf8_valid(const u_char *p, size_t len)
{
    size_t    i, n, k;
    uint32_t  c, min;

    for (i = 0; i < len; i += n) {
        c = p[i];

        if (c < 0x80) {
            n = 1;
            continue;
        }

        if ((c & 0xe0) == 0xc0) {
            n = 2;
            c &= 0x1f;
            min = 0x80;

        } else if ((c & 0xf0) == 0xe0) {
            n = 3;
            c &= 0x0f;
            min = 0x800;

        } else if ((c & 0xf8) == 0xf0) {
            n = 4;
            c &= 0x07;
            min = 0x10000;

        } else {
            return 0;
        }

        if (len - i < n) {
            return 0;
        }

        for (k = 1; k < n; k++) {
            if ((p[i + k] & 0xc0) != 0x80) {
                return 0;
            }

            c = (c << 6) | (p[i + k] & 0x3f);
        }

        if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff)) {
            return 0;
        }
    }

    return 1;
}


#endif /* _FUZZ_UTF8_H_INCLUDED_ */
