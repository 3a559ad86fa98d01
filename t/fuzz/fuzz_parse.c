
/*
 * Copyright (C) ngx_http_events_module authors
 */


/*
 * libFuzzer target: the body parser of POST /events
 * (ngx_http_events_parse_json(), YAJL building a jansson tree)
 * against jansson's own json_loadb() with the flags the API had before
 * it: JSON_REJECT_DUPLICATES | JSON_DECODE_ANY.  Both must accept the
 * same bodies, and give equal trees; the error's line, column and text
 * are ours, so only an error's presence is compared, and its text must
 * be there and end where it should (no YAJL newline).
 *
 * But for a NUL byte, never part of a JSON text: jansson takes one right
 * after a last literal as the end ("false\0" parses), ours refuses any.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "ngx_http_events_json.h"
#include "ngx_http_events_parse.h"


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t        *ours, *ref;
    size_t         len;
    ngx_pool_t    *pool;
    json_error_t   err, rerr;

    pool = ngx_create_pool(4096, NULL);
    if (pool == NULL) {
        abort();
    }

    ours = ngx_http_events_parse_json(pool, (u_char *) data, size, &err);
    ref = json_loadb((const char *) data, size,
                     JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &rerr);

    if (memchr(data, '\0', size) != NULL) {
        if (ours != NULL) {
            fprintf(stderr, "a NUL byte accepted\n");
            abort();
        }

        json_decref(ref);
        ref = NULL;
    }

    if ((ours == NULL) != (ref == NULL)) {
        fprintf(stderr, "parsers disagree: ours %s (%d:%d %s), jansson "
                "%s (%d:%d %s)\n", ours ? "accepts" : "refuses",
                err.line, err.column, ours ? "" : err.text,
                ref ? "accepts" : "refuses", rerr.line, rerr.column,
                ref ? "" : rerr.text);
        abort();
    }

    if (ours == NULL) {
        len = strlen(err.text);

        if (len == 0 || err.text[len - 1] == '\n' || err.line < 1
            || err.column < 0)
        {
            fprintf(stderr, "bad error: %d:%d \"%s\"\n", err.line,
                    err.column, err.text);
            abort();
        }

    } else if (!json_equal(ours, ref)) {
        fprintf(stderr, "trees differ\n");
        abort();
    }

    json_decref(ref);

    /* ours goes with the pool, never decref'd, as in the module */
    ngx_destroy_pool(pool);

    return 0;
}
