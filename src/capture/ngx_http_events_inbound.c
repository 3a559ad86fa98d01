
/*
 * Copyright (C) ngx_http_events_module authors
 */


/*
 * Inbound webhooks: "events_inbound ZONE github|stripe|standard|hmac
 * secret=..." makes a location a receiver for a third party's webhooks.
 * The body is read whole (nginx's body reading: memory or temp file),
 * the sender's signature is checked on its exact bytes the way the
 * sender documents it, and only then is the body parsed: a request
 * with a bad or stale signature is 401 and touches nothing.  A good
 * one becomes an event through the same path as POST /events (envelope
 * checks, events_validate, journal, cluster), so it is stored, streamed
 * and delivered like any other:
 *
 *     type      github.<X-GitHub-Event>, stripe.<body.type>,
 *               webhook.<body.type> (standard, hmac), or type=
 *     id        X-GitHub-Delivery, body.id (Stripe), webhook-id, or id=:
 *               a redelivery is an idempotent repeat (200)
 *     payload   {"data": the sender's body}: its own "action" or
 *               "changes" keys never meet ours
 *     metadata  {"inbound": "github"}
 *
 * Signatures are compared in constant time; timestamps (Stripe,
 * Standard Webhooks) must be within tolerance= of now, both ways.
 *
 * A location may hold a few secrets (secret= repeated), so that a
 * rotation overlaps: the new one is added beside the old, the sender
 * switches, the old one is removed.  A delivery's MAC is computed under
 * each secret and every signature it carries is compared with every
 * MAC, none skipped once one matches, so which secret matched neither
 * changes the answer nor how much is compared.  The set of secrets
 * that matched is kept for $events_inbound_secret ("1", "2", "1,2"):
 * an access log with it tells when the old secret is no longer used.
 * secret_file= reads a secret from a file when the configuration is
 * read, so nginx.conf need not hold it; a reload reads it again.
 *
 * The zone counts, for the status page, each location's verified
 * deliveries, its rejected ones by reason (malformed, stale, mismatch),
 * for hmac with replay= the replays (below), and for each secret the
 * deliveries it verified.  A secret is named by its fingerprint, the
 * first 4 bytes of SHA-256 of its text, never by its position: the
 * position changes as a rotation goes on, and a counter that followed
 * it would count two secrets as one.  The
 * counters are nodes in the zone's slab pool keyed by (location name,
 * fingerprint), found or made by a worker on first use and never
 * freed: a reload that keeps a secret keeps its count wherever it
 * moved, a new secret starts at 0, and old workers that still drain
 * count into nodes nothing takes from them.
 *
 * A generic HMAC signs the body alone: no timestamp, and without id=
 * no delivery id, so a captured delivery, or a sender's retry, would
 * be a new event each time it is sent.  Such deliveries are
 * remembered for replay= (1h) in a ring of replay_size= (256)
 * entries in the zone (56 bytes and a bucket each), made on the first
 * such delivery and hung off the location's counter node: the
 * first 16 bytes of the body's MAC under the first secret (so the
 * same body whichever secret signed it), when it is forgotten, and an
 * event id made here for it.  A replay gets that id, so the store
 * answers it as the repeat it is (200, the stored event), and two
 * workers that take a replay at once agree on the id: one stores, the
 * other repeats.  A hash of the ring's entries, bucketed by the MAC's
 * first bytes (which no one without the secret can choose), keeps a
 * look-up O(1); the ring's oldest entry is overwritten when it is
 * full, so more than replay_size= deliveries within replay= shorten
 * the window.  The other senders' deliveries carry an id, which is
 * their idempotency: Stripe and Standard Webhooks sign it with a
 * timestamp; GitHub's X-GitHub-Delivery is not signed.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include "ngx_http_events_module.h"
#include "ngx_http_events_http.h"
#include "ngx_http_events_api.h"
#include "ngx_http_events_json.h"
#include "ngx_http_events_hmac.h"
#include "ngx_http_events_id.h"
#include "ngx_http_events_match.h"
#include "ngx_http_events_store.h"
#include "ngx_http_events_buf.h"
#include "ngx_http_events_status.h"
#include "ngx_http_events_ipc.h"
#include "ngx_http_events_inbound.h"


#define NGX_HTTP_EVENTS_INBOUND_TOLERANCE  300
#define NGX_HTTP_EVENTS_INBOUND_FILE_MAX   4096
#define NGX_HTTP_EVENTS_INBOUND_REPLAY     3600
#define NGX_HTTP_EVENTS_INBOUND_RING       256
#define NGX_HTTP_EVENTS_INBOUND_RING_MAX   65536
#define NGX_HTTP_EVENTS_INBOUND_KEY        16
#define NGX_HTTP_EVENTS_INBOUND_MACS                                        \
    (NGX_HTTP_EVENTS_INBOUND_SECRETS * NGX_HTTP_EVENTS_HMAC_SHA256_LEN)

/* a location node's counters; a secret's node has only the first */
#define NGX_HTTP_EVENTS_INBOUND_VERIFIED   0
#define NGX_HTTP_EVENTS_INBOUND_MALFORMED  1   /* no signature to check */
#define NGX_HTTP_EVENTS_INBOUND_STALE      2   /* timestamp out of bounds */
#define NGX_HTTP_EVENTS_INBOUND_MISMATCH   3   /* no secret's MAC */
#define NGX_HTTP_EVENTS_INBOUND_REPLAYED   4   /* verified, seen before */
#define NGX_HTTP_EVENTS_INBOUND_NCOUNTS    5


/* counters in the zone: a location's (secret == 0) or a secret's */
struct ngx_http_events_inbound_node_s {
    ngx_queue_t                 queue;
    ngx_atomic_t                count[NGX_HTTP_EVENTS_INBOUND_NCOUNTS];
    ngx_http_events_inbound_ring_t  *ring;      /* a location's, replay= */
    u_char                      secret;
    u_char                      fp[NGX_HTTP_EVENTS_INBOUND_FP];
    u_char                      len;
    u_char                      name[NGX_HTTP_EVENTS_INBOUND_NAME];
};


/* a delivery remembered: its MAC's first bytes, until when, its event */
typedef struct {
    u_char                      key[NGX_HTTP_EVENTS_INBOUND_KEY];
    uint32_t                    expires;        /* 0: never used */
    uint32_t                    next;           /* in its bucket, + 1 */
    u_char                      id[NGX_HTTP_EVENTS_ID_LEN];
} ngx_http_events_inbound_seen_t;


/* in the zone: size entries, written in turn at head, and their buckets */
struct ngx_http_events_inbound_ring_s {
    ngx_uint_t                        size;
    ngx_uint_t                        head;
    uint32_t                         *buckets;  /* first entry + 1 */
    ngx_http_events_inbound_seen_t   *seen;
};


typedef ngx_uint_t (*ngx_http_events_inbound_eq_pt)(u_char *mac,
    u_char *sig, size_t len);


static ngx_int_t ngx_http_events_inbound_file(ngx_conf_t *cf,
    ngx_str_t *path, ngx_str_t *secret);
static char *ngx_http_events_inbound_key(ngx_conf_t *cf,
    ngx_http_events_inbound_conf_t *ic, ngx_str_t *secret, ngx_str_t *key);
static ngx_int_t ngx_http_events_inbound_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_events_inbound_event(ngx_http_request_t *r,
    u_char *data, size_t len);
static ngx_int_t ngx_http_events_inbound_verify(ngx_http_request_t *r,
    ngx_http_events_inbound_conf_t *ic, ngx_str_t *body,
    ngx_uint_t *matched, u_char *key, ngx_http_events_error_t *err);
static ngx_int_t ngx_http_events_inbound_github(ngx_http_request_t *r,
    ngx_http_events_inbound_conf_t *ic, ngx_str_t *body,
    ngx_uint_t *matched, ngx_http_events_error_t *err);
static ngx_int_t ngx_http_events_inbound_stripe(ngx_http_request_t *r,
    ngx_http_events_inbound_conf_t *ic, ngx_str_t *body,
    ngx_uint_t *matched, ngx_http_events_error_t *err);
static ngx_int_t ngx_http_events_inbound_standard(ngx_http_request_t *r,
    ngx_http_events_inbound_conf_t *ic, ngx_str_t *body,
    ngx_uint_t *matched, ngx_http_events_error_t *err);
static ngx_int_t ngx_http_events_inbound_hmac(ngx_http_request_t *r,
    ngx_http_events_inbound_conf_t *ic, ngx_str_t *body,
    ngx_uint_t *matched, u_char *key, ngx_http_events_error_t *err);
static ngx_int_t ngx_http_events_inbound_replay(ngx_http_request_t *r,
    ngx_http_events_inbound_conf_t *ic, u_char *key, ngx_str_t *id);
static ngx_uint_t ngx_http_events_inbound_seen_locked(
    ngx_http_events_inbound_ring_t *ring, u_char *key, u_char *id,
    uint32_t expires);
static ngx_http_events_inbound_ring_t *ngx_http_events_inbound_ring_locked(
    ngx_slab_pool_t *shpool, ngx_http_events_inbound_node_t *node,
    ngx_uint_t size);
static ngx_int_t ngx_http_events_inbound_fresh(ngx_str_t *ts,
    time_t tolerance, ngx_http_events_error_t *err);
static ngx_int_t ngx_http_events_inbound_macs(
    ngx_http_events_inbound_conf_t *ic, ngx_str_t *parts, ngx_uint_t nparts,
    u_char *macs);
static ngx_uint_t ngx_http_events_inbound_any(
    ngx_http_events_inbound_conf_t *ic, u_char *macs, u_char *sig,
    size_t len, ngx_http_events_inbound_eq_pt eq);
static ngx_uint_t ngx_http_events_inbound_hex_eq(u_char *mac, u_char *hex,
    size_t len);
static ngx_uint_t ngx_http_events_inbound_b64_eq(u_char *mac, u_char *b64,
    size_t len);
static ngx_int_t ngx_http_events_inbound_mismatch(
    ngx_http_events_error_t *err);
static ngx_int_t ngx_http_events_inbound_names(ngx_http_request_t *r,
    ngx_http_events_inbound_conf_t *ic, json_t *body, ngx_str_t *type,
    ngx_str_t *id, ngx_http_events_error_t *err);
static ngx_int_t ngx_http_events_inbound_value(ngx_http_request_t *r,
    ngx_http_complex_value_t *cv, ngx_str_t *v);
static ngx_int_t ngx_http_events_inbound_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static char *ngx_http_events_inbound_label(ngx_conf_t *cf,
    ngx_http_events_inbound_conf_t *ic, ngx_str_t *name);
static void ngx_http_events_inbound_count(ngx_http_request_t *r,
    ngx_http_events_inbound_conf_t *ic, ngx_int_t rc, ngx_uint_t matched);
static ngx_int_t ngx_http_events_inbound_nodes(
    ngx_http_events_inbound_conf_t *ic);
static ngx_http_events_inbound_node_t *ngx_http_events_inbound_node(
    ngx_slab_pool_t *shpool, ngx_queue_t *nodes, ngx_str_t *name,
    u_char *fp);
static void ngx_http_events_inbound_status_json(ngx_http_events_buf_t *b,
    ngx_http_events_store_t *store);
static void ngx_http_events_inbound_status_text(ngx_http_events_buf_t *b,
    ngx_http_events_store_t *store);
static void ngx_http_events_inbound_sample(ngx_http_events_buf_t *b,
    ngx_http_events_store_t *store, const char *name,
    ngx_http_events_inbound_conf_t *ic, const char *label, ngx_str_t *value,
    const char *more);


static ngx_str_t  ngx_http_events_inbound_kinds[] = {
    ngx_null_string,
    ngx_string("github"),
    ngx_string("stripe"),
    ngx_string("standard"),
    ngx_string("hmac")
};


static ngx_str_t  ngx_http_events_inbound_secret_var =
    ngx_string("events_inbound_secret");


static const char  *ngx_http_events_inbound_reasons[] = {
    NULL, "malformed", "stale", "mismatch"
};


static ngx_http_events_status_section_t  ngx_http_events_inbound_status = {
    ngx_http_events_inbound_status_json,
    ngx_http_events_inbound_status_text
};


/*
 * events_inbound ZONE KIND secret=S|secret_file=PATH [secret=...]
 *     [type=] [id=] [header=] [tolerance=] [name=]
 */

char *
ngx_http_events_inbound(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_events_loc_conf_t *elcf = conf;

    u_char                            *p;
    char                              *rv;
    ngx_str_t                         *value, s, name;
    ngx_uint_t                         i, k, n;
    ngx_http_core_loc_conf_t          *clcf;
    ngx_http_events_inbound_conf_t    *ic;
    ngx_http_compile_complex_value_t   ccv;
    ngx_str_t                          secrets[NGX_HTTP_EVENTS_INBOUND_SECRETS];
    u_char                             macs[SHA256_DIGEST_LENGTH];

    if (elcf->api_zone) {
        return "is duplicate, or beside events_api";
    }

    ic = ngx_pcalloc(cf->pool, sizeof(ngx_http_events_inbound_conf_t));
    if (ic == NULL) {
        return NGX_CONF_ERROR;
    }

    value = cf->args->elts;

    for (k = 1; k < sizeof(ngx_http_events_inbound_kinds)
                    / sizeof(ngx_str_t); k++)
    {
        if (value[2].len == ngx_http_events_inbound_kinds[k].len
            && ngx_strncmp(value[2].data, ngx_http_events_inbound_kinds[k].data,
                           value[2].len) == 0)
        {
            ic->kind = k;
            ic->name = ngx_http_events_inbound_kinds[k];
        }
    }

    if (ic->kind == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "unknown sender \"%V\": "
                           "github, stripe, standard or hmac", &value[2]);
        return NGX_CONF_ERROR;
    }

    n = 0;
    ngx_str_null(&name);
    ngx_str_set(&ic->header, "X-Signature");
    ic->tolerance = NGX_HTTP_EVENTS_INBOUND_TOLERANCE;
    ic->replay_size = NGX_HTTP_EVENTS_INBOUND_RING;
    ic->replay = (ic->kind == NGX_HTTP_EVENTS_INBOUND_HMAC)
                 ? NGX_HTTP_EVENTS_INBOUND_REPLAY : 0;

    for (i = 3; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "secret=", 7) == 0
            || ngx_strncmp(value[i].data, "secret_file=", 12) == 0)
        {
            if (n == NGX_HTTP_EVENTS_INBOUND_SECRETS) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "\"events_inbound\" takes at most %ui "
                                   "secrets (secret= and secret_file=)", n);
                return NGX_CONF_ERROR;
            }

            if (value[i].data[6] == '=') {
                if (value[i].len == 7) {
                    return "has an empty \"secret=\"";
                }

                secrets[n].data = value[i].data + 7;
                secrets[n].len = value[i].len - 7;

            } else {
                if (value[i].len == 12) {
                    return "has an empty \"secret_file=\"";
                }

                s.data = value[i].data + 12;
                s.len = value[i].len - 12;

                if (ngx_http_events_inbound_file(cf, &s, &secrets[n])
                    != NGX_OK)
                {
                    return NGX_CONF_ERROR;
                }
            }

            SHA256(secrets[n].data, secrets[n].len, macs);
            ngx_memcpy(ic->fp[n], macs, NGX_HTTP_EVENTS_INBOUND_FP);

            n++;
            continue;
        }

        if (ngx_strncmp(value[i].data, "header=", 7) == 0
            && value[i].len > 7 && ic->kind == NGX_HTTP_EVENTS_INBOUND_HMAC)
        {
            ic->header.data = value[i].data + 7;
            ic->header.len = value[i].len - 7;
            continue;
        }

        if (ngx_strncmp(value[i].data, "name=", 5) == 0) {
            name.data = value[i].data + 5;
            name.len = value[i].len - 5;

            if (name.len == 0 || name.len > NGX_HTTP_EVENTS_INBOUND_NAME) {
                return "has an invalid \"name=\": 1-128 characters";
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "tolerance=", 10) == 0) {
            s.data = value[i].data + 10;
            s.len = value[i].len - 10;

            ic->tolerance = ngx_parse_time(&s, 1);
            if (ic->tolerance == (time_t) NGX_ERROR || ic->tolerance == 0) {
                return "has an invalid \"tolerance=\"";
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "replay=", 7) == 0
            || ngx_strncmp(value[i].data, "replay_size=", 12) == 0)
        {
            if (ic->kind != NGX_HTTP_EVENTS_INBOUND_HMAC) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "\"%V\" is for "
                                   "hmac: %V deliveries carry an id, which "
                                   "makes a replay a repeat", &value[i],
                                   &ic->name);
                return NGX_CONF_ERROR;
            }

            if (value[i].data[6] == '=') {
                s.data = value[i].data + 7;
                s.len = value[i].len - 7;

                if (s.len == 3 && ngx_strncmp(s.data, "off", 3) == 0) {
                    ic->replay = 0;
                    continue;
                }

                ic->replay = ngx_parse_time(&s, 1);
                if (ic->replay == (time_t) NGX_ERROR || ic->replay == 0) {
                    return "has an invalid \"replay=\": a time or off";
                }

                continue;
            }

            s.data = value[i].data + 12;
            s.len = value[i].len - 12;

            ic->replay_size = ngx_atoi(s.data, s.len);
            if (ic->replay_size == (ngx_uint_t) NGX_ERROR
                || ic->replay_size < 16
                || ic->replay_size > NGX_HTTP_EVENTS_INBOUND_RING_MAX)
            {
                return "has an invalid \"replay_size=\": 16-65536";
            }

            continue;
        }

        if ((ngx_strncmp(value[i].data, "type=", 5) == 0 && value[i].len > 5)
            || (ngx_strncmp(value[i].data, "id=", 3) == 0 && value[i].len > 3))
        {
            p = ngx_strlchr(value[i].data, value[i].data + value[i].len, '=');
            s.data = p + 1;
            s.len = value[i].data + value[i].len - s.data;

            ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));
            ccv.cf = cf;
            ccv.value = &s;
            ccv.complex_value = ngx_palloc(cf->pool,
                                           sizeof(ngx_http_complex_value_t));
            if (ccv.complex_value == NULL
                || ngx_http_compile_complex_value(&ccv) != NGX_OK)
            {
                return NGX_CONF_ERROR;
            }

            if (value[i].data[0] == 't') {
                ic->type = ccv.complex_value;

            } else {
                ic->id = ccv.complex_value;
            }

            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\"", &value[i]);
        return NGX_CONF_ERROR;
    }

    if (n == 0) {
        return "needs \"secret=\" or \"secret_file=\"";
    }

    for (k = 0; k < n; k++) {
        rv = ngx_http_events_inbound_key(cf, ic, &secrets[k], &ic->keys[k]);
        if (rv != NGX_CONF_OK) {
            return rv;
        }
    }

    ic->nkeys = n;

    elcf->api_zone = ngx_shared_memory_add(cf, &value[1], 0,
                                           &ngx_http_events_module);
    if (elcf->api_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    elcf->inbound = ic;
    ic->zone = elcf->api_zone;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_events_inbound_handler;

    return ngx_http_events_inbound_label(cf, ic, name.len ? &name
                                                          : &clcf->name);
}


/*
 * The location's label on the status page: name=, or the location's
 * own; two locations of a zone may not share one, their counts would
 * be one count
 */

static char *
ngx_http_events_inbound_label(ngx_conf_t *cf,
    ngx_http_events_inbound_conf_t *ic, ngx_str_t *name)
{
    ngx_uint_t                        i;
    ngx_http_events_main_conf_t      *emcf;
    ngx_http_events_inbound_conf_t  **all, **p;

    if (name->len == 0 || name->len > NGX_HTTP_EVENTS_INBOUND_NAME) {
        return "needs a \"name=\" of 1-128 characters for the status "
               "page: the location's name is longer";
    }

    ic->label = *name;

    emcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_events_module);

    if (emcf->inbound == NULL) {
        emcf->inbound = ngx_array_create(cf->pool, 4,
                                    sizeof(ngx_http_events_inbound_conf_t *));
        if (emcf->inbound == NULL
            || ngx_http_events_status_register(cf,
                                               &ngx_http_events_inbound_status)
               != NGX_OK)
        {
            return NGX_CONF_ERROR;
        }
    }

    all = emcf->inbound->elts;

    for (i = 0; i < emcf->inbound->nelts; i++) {
        if (all[i]->zone == ic->zone && all[i]->label.len == name->len
            && ngx_strncmp(all[i]->label.data, name->data, name->len) == 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"events_inbound\" \"%V\" is already a "
                               "name in zone \"%V\": set name= to tell "
                               "the locations apart", name,
                               &ic->zone->shm.name);
            return NGX_CONF_ERROR;
        }
    }

    p = ngx_array_push(emcf->inbound);
    if (p == NULL) {
        return NGX_CONF_ERROR;
    }

    *p = ic;

    return NGX_CONF_OK;
}


/*
 * secret_file=PATH: the file's one line (a final newline is not part of
 * it), read at each start and reload like the rest of the configuration
 */

static ngx_int_t
ngx_http_events_inbound_file(ngx_conf_t *cf, ngx_str_t *path,
    ngx_str_t *secret)
{
    off_t            size;
    ssize_t          n;
    ngx_fd_t         fd;
    ngx_file_info_t  fi;

    if (ngx_conf_full_name(cf->cycle, path, 1) != NGX_OK) {
        return NGX_ERROR;
    }

    fd = ngx_open_file(path->data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
    if (fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           ngx_open_file_n " \"%V\" failed", path);
        return NGX_ERROR;
    }

    size = (ngx_fd_info(fd, &fi) == NGX_FILE_ERROR) ? -1 : ngx_file_size(&fi);

    if (size < 0 || size > NGX_HTTP_EVENTS_INBOUND_FILE_MAX) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "the secret file \"%V\" "
                           "must be a file of at most %d bytes", path,
                           NGX_HTTP_EVENTS_INBOUND_FILE_MAX);
        (void) ngx_close_file(fd);
        return NGX_ERROR;
    }

    secret->data = ngx_pnalloc(cf->pool, (size_t) size + 1);
    if (secret->data == NULL) {
        (void) ngx_close_file(fd);
        return NGX_ERROR;
    }

    n = ngx_read_fd(fd, secret->data, (size_t) size);
    (void) ngx_close_file(fd);

    if (n != size) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "could not read the secret file \"%V\"", path);
        return NGX_ERROR;
    }

    secret->len = n;

    while (secret->len && (secret->data[secret->len - 1] == '\n'
                           || secret->data[secret->len - 1] == '\r'))
    {
        secret->len--;
    }

    if (secret->len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "the secret file \"%V\" is empty", path);
        return NGX_ERROR;
    }

    /* two secrets in one file would be one secret with a newline in it */

    if (ngx_strlchr(secret->data, secret->data + secret->len, '\n') != NULL
        || ngx_strlchr(secret->data, secret->data + secret->len, '\r')
           != NULL)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "the secret file \"%V\" "
                           "holds more than one line: one secret a file",
                           path);
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* the HMAC key of a secret: its text, or for standard the bytes after whsec_ */

static char *
ngx_http_events_inbound_key(ngx_conf_t *cf,
    ngx_http_events_inbound_conf_t *ic, ngx_str_t *secret, ngx_str_t *key)
{
    ngx_str_t  s;

    *key = *secret;

    if (ic->kind != NGX_HTTP_EVENTS_INBOUND_STANDARD) {
        return NGX_CONF_OK;
    }

    if (secret->len <= 6 || ngx_strncmp(secret->data, "whsec_", 6) != 0) {
        return "needs a \"secret=whsec_...\" for standard webhooks";
    }

    s.data = secret->data + 6;
    s.len = secret->len - 6;

    key->data = ngx_pnalloc(cf->pool, ngx_base64_decoded_length(s.len));
    if (key->data == NULL) {
        return NGX_CONF_ERROR;
    }

    if (ngx_decode_base64(key, &s) != NGX_OK || key->len == 0) {
        return "has a \"secret=whsec_...\" that is not base64";
    }

    return NGX_CONF_OK;
}


ngx_int_t
ngx_http_events_inbound_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var;

    var = ngx_http_add_variable(cf, &ngx_http_events_inbound_secret_var,
                                NGX_HTTP_VAR_NOCACHEABLE);
    if (var == NULL) {
        return NGX_ERROR;
    }

    var->get_handler = ngx_http_events_inbound_variable;

    return NGX_OK;
}


static ngx_int_t
ngx_http_events_inbound_handler(ngx_http_request_t *r)
{
    ngx_int_t                    rc;
    ngx_str_t                    tenant;
    ngx_http_events_ctx_t       *ctx;
    ngx_http_events_error_t      err;
    ngx_http_events_loc_conf_t  *elcf;

    elcf = ngx_http_get_module_loc_conf(r, ngx_http_events_module);

    if (r->method != NGX_HTTP_POST) {
        return ngx_http_events_http_not_allowed(r, "POST");
    }

    rc = ngx_http_events_get_tenant(r, &tenant);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_DECLINED) {
        ngx_http_discard_request_body(r);
        ngx_http_events_error(&err, 400, "invalid_tenant", NULL, NULL, NULL,
                              "the request's tenant must be 1-64 "
                              "characters of [A-Za-z0-9_.:-]");
        return ngx_http_events_http_send_error(r, &err, NULL);
    }

    if (!ngx_http_events_http_is_json(r)) {
        ngx_http_discard_request_body(r);
        ngx_http_events_error(&err, 415, "unsupported_media_type", NULL,
                              NULL, NULL, "inbound webhooks take JSON "
                              "bodies: set the sender's content type to "
                              "application/json");
        return ngx_http_events_http_send_error(r, &err, NULL);
    }

    ctx = ngx_http_events_ctx(r);
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->tenant = tenant;

    return ngx_http_events_http_body(r, elcf->max_event_size, NULL,
                                     ngx_http_events_inbound_event);
}


/* verified, then parsed, then named, then stored as POST /events does */

static ngx_int_t
ngx_http_events_inbound_event(ngx_http_request_t *r, u_char *data, size_t len)
{
    json_t                          *root, *obj, *v;
    ngx_int_t                        rc;
    ngx_str_t                        type, id, body;
    ngx_uint_t                       matched;
    json_error_t                     jerr;
    u_char                           key[NGX_HTTP_EVENTS_INBOUND_KEY];
    ngx_http_events_ctx_t           *ctx;
    ngx_http_events_error_t          err;
    ngx_http_events_loc_conf_t      *elcf;
    ngx_http_events_inbound_conf_t  *ic;

    elcf = ngx_http_get_module_loc_conf(r, ngx_http_events_module);
    ic = elcf->inbound;

    body.data = data;
    body.len = len;

    ngx_memzero(&err, sizeof(ngx_http_events_error_t));

    matched = 0;

    rc = ngx_http_events_inbound_verify(r, ic, &body, &matched, key, &err);

    if (rc != NGX_OK && err.status == 0) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_events_inbound_count(r, ic, rc, matched);

    if (rc != NGX_OK) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "events inbound %V: %*s", &ic->name, err.message_len,
                      err.message);

        return ngx_http_events_http_send_error(r, &err, NULL);
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "events inbound %V: secrets matched 0x%xui",
                   &ic->name, matched);

    ctx = ngx_http_events_ctx(r);
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->inbound_secrets = matched;

    root = json_loadb((char *) data, len,
                      JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);

    if (root == NULL) {
        ngx_http_events_error(&err, 400, "invalid_json", NULL, NULL, NULL,
                              "malformed JSON at line %d, column %d: %s",
                              jerr.line, jerr.column, jerr.text);
        return ngx_http_events_http_send_error(r, &err, NULL);
    }

    /* the object built below holds root: one cleanup frees both */

    obj = json_object();

    if (obj == NULL
        || ngx_http_events_api_hold_json(r, obj) != NGX_OK)
    {
        json_decref(obj);
        json_decref(root);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    v = json_object();

    if (v == NULL || json_object_set_new(obj, "payload", v) != 0
        || json_object_set_new(v, "data", root) != 0)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (!json_is_object(root)) {
        ngx_http_events_error(&err, 400, "invalid_body", NULL, NULL, NULL,
                              "the body must be a JSON object");
        return ngx_http_events_http_send_error(r, &err, NULL);
    }

    rc = ngx_http_events_inbound_names(r, ic, root, &type, &id, &err);

    if (rc != NGX_OK) {
        return err.status ? ngx_http_events_http_send_error(r, &err, NULL)
                          : NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (id.len == 0 && ic->replay
        && ngx_http_events_inbound_replay(r, ic, key, &id) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    v = json_object();

    if (json_object_set_new(obj, "type",
                            json_stringn((char *) type.data, type.len))
        != 0
        || (id.len
            && json_object_set_new(obj, "id",
                                   json_stringn((char *) id.data, id.len))
               != 0)
        || (elcf->source == NULL
            && json_object_set_new(obj, "source",
                                   json_stringn((char *) ic->name.data,
                                                ic->name.len))
               != 0)
        || v == NULL
        || json_object_set_new(obj, "metadata", v) != 0
        || json_object_set_new(v, "inbound",
                               json_stringn((char *) ic->name.data,
                                            ic->name.len))
           != 0)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_events_api_ingest_json(r, obj);
}


/*
 * *matched: one bit for each secret a signature matched, 1 << (n - 1);
 * a 401 is NGX_DECLINED (no secret matched), NGX_ABORT (a stale
 * timestamp) or NGX_ERROR (nothing to check: a header missing or
 * unreadable); NGX_ERROR without err->status is an internal error
 */

static ngx_int_t
ngx_http_events_inbound_verify(ngx_http_request_t *r,
    ngx_http_events_inbound_conf_t *ic, ngx_str_t *body,
    ngx_uint_t *matched, u_char *key, ngx_http_events_error_t *err)
{
    switch (ic->kind) {

    case NGX_HTTP_EVENTS_INBOUND_GITHUB:
        return ngx_http_events_inbound_github(r, ic, body, matched, err);

    case NGX_HTTP_EVENTS_INBOUND_STRIPE:
        return ngx_http_events_inbound_stripe(r, ic, body, matched, err);

    case NGX_HTTP_EVENTS_INBOUND_STANDARD:
        return ngx_http_events_inbound_standard(r, ic, body, matched, err);

    default: /* NGX_HTTP_EVENTS_INBOUND_HMAC */
        return ngx_http_events_inbound_hmac(r, ic, body, matched, key, err);
    }
}


/* X-Hub-Signature-256: sha256=<hex of HMAC-SHA256(secret, body)> */

static ngx_int_t
ngx_http_events_inbound_github(ngx_http_request_t *r,
    ngx_http_events_inbound_conf_t *ic, ngx_str_t *body,
    ngx_uint_t *matched, ngx_http_events_error_t *err)
{
    ngx_table_elt_t  *h;
    u_char            macs[NGX_HTTP_EVENTS_INBOUND_MACS];

    h = ngx_http_events_http_header(r, "X-Hub-Signature-256");

    if (h == NULL) {
        ngx_http_events_error(err, 401, "invalid_signature", NULL, NULL,
                              NULL, "the X-Hub-Signature-256 header is "
                              "missing");
        return NGX_ERROR;
    }

    if (ngx_http_events_inbound_macs(ic, body, 1, macs) != NGX_OK) {
        return NGX_ERROR;
    }

    if (h->value.len == 7 + 2 * NGX_HTTP_EVENTS_HMAC_SHA256_LEN
        && ngx_strncmp(h->value.data, "sha256=", 7) == 0)
    {
        *matched = ngx_http_events_inbound_any(ic, macs, h->value.data + 7,
                                               h->value.len - 7,
                                               ngx_http_events_inbound_hex_eq);
    }

    return *matched ? NGX_OK : ngx_http_events_inbound_mismatch(err);
}


/*
 * Stripe-Signature: t=<unix>,v1=<hex of HMAC-SHA256(secret, "t.body")>,
 * with more v1= during a secret's rotation; other schemes are ignored
 */

static ngx_int_t
ngx_http_events_inbound_stripe(ngx_http_request_t *r,
    ngx_http_events_inbound_conf_t *ic, ngx_str_t *body,
    ngx_uint_t *matched, ngx_http_events_error_t *err)
{
    u_char           *p, *end, *comma;
    ngx_int_t         rc;
    ngx_str_t         ts, parts[3], item;
    ngx_uint_t        nsig;
    ngx_table_elt_t  *h;
    u_char            macs[NGX_HTTP_EVENTS_INBOUND_MACS];

    h = ngx_http_events_http_header(r, "Stripe-Signature");

    if (h == NULL) {
        ngx_http_events_error(err, 401, "invalid_signature", NULL, NULL,
                              NULL, "the Stripe-Signature header is missing");
        return NGX_ERROR;
    }

    ngx_str_null(&ts);

    p = h->value.data;
    end = p + h->value.len;

    for ( /* void */ ; p < end; p = comma + 1) {
        comma = ngx_strlchr(p, end, ',');
        if (comma == NULL) {
            comma = end;
        }

        if (comma - p > 2 && p[0] == 't' && p[1] == '=') {
            ts.data = p + 2;
            ts.len = comma - p - 2;
        }
    }

    if (ts.len == 0) {
        ngx_http_events_error(err, 401, "invalid_signature", NULL, NULL,
                              NULL, "the Stripe-Signature header has no "
                              "timestamp (t=)");
        return NGX_ERROR;
    }

    rc = ngx_http_events_inbound_fresh(&ts, ic->tolerance, err);
    if (rc != NGX_OK) {
        return rc;
    }

    parts[0] = ts;
    ngx_str_set(&parts[1], ".");
    parts[2] = *body;

    if (ngx_http_events_inbound_macs(ic, parts, 3, macs) != NGX_OK) {
        return NGX_ERROR;
    }

    nsig = 0;

    for (p = h->value.data; p < end; p = comma + 1) {
        comma = ngx_strlchr(p, end, ',');
        if (comma == NULL) {
            comma = end;
        }

        if (comma - p < 3 || ngx_strncmp(p, "v1=", 3) != 0) {
            continue;
        }

        item.data = p + 3;
        item.len = comma - item.data;
        nsig++;

        *matched |= ngx_http_events_inbound_any(ic, macs, item.data,
                                                item.len,
                                                ngx_http_events_inbound_hex_eq);
    }

    if (nsig == 0) {
        ngx_http_events_error(err, 401, "invalid_signature", NULL, NULL,
                              NULL, "the Stripe-Signature header has no "
                              "v1= signature");
        return NGX_ERROR;
    }

    return *matched ? NGX_OK : ngx_http_events_inbound_mismatch(err);
}


/*
 * Standard Webhooks: webhook-signature holds "v1,<base64 of
 * HMAC-SHA256(key, "id.timestamp.body")>" items separated by spaces
 */

static ngx_int_t
ngx_http_events_inbound_standard(ngx_http_request_t *r,
    ngx_http_events_inbound_conf_t *ic, ngx_str_t *body,
    ngx_uint_t *matched, ngx_http_events_error_t *err)
{
    u_char           *p, *end, *sp;
    ngx_int_t         rc;
    ngx_str_t         parts[5];
    ngx_table_elt_t  *id, *ts, *sig;
    u_char            macs[NGX_HTTP_EVENTS_INBOUND_MACS];

    id = ngx_http_events_http_header(r, "webhook-id");
    ts = ngx_http_events_http_header(r, "webhook-timestamp");
    sig = ngx_http_events_http_header(r, "webhook-signature");

    if (id == NULL || ts == NULL || sig == NULL) {
        ngx_http_events_error(err, 401, "invalid_signature", NULL, NULL,
                              NULL, "the %s header is missing",
                              id == NULL ? "webhook-id"
                              : ts == NULL ? "webhook-timestamp"
                              : "webhook-signature");
        return NGX_ERROR;
    }

    rc = ngx_http_events_inbound_fresh(&ts->value, ic->tolerance, err);
    if (rc != NGX_OK) {
        return rc;
    }

    parts[0] = id->value;
    ngx_str_set(&parts[1], ".");
    parts[2] = ts->value;
    ngx_str_set(&parts[3], ".");
    parts[4] = *body;

    if (ngx_http_events_inbound_macs(ic, parts, 5, macs) != NGX_OK) {
        return NGX_ERROR;
    }

    p = sig->value.data;
    end = p + sig->value.len;

    while (p < end) {
        sp = ngx_strlchr(p, end, ' ');
        if (sp == NULL) {
            sp = end;
        }

        if (sp - p > 3 && ngx_strncmp(p, "v1,", 3) == 0) {
            *matched |= ngx_http_events_inbound_any(ic, macs, p + 3,
                                                sp - p - 3,
                                                ngx_http_events_inbound_b64_eq);
        }

        p = sp + 1;
    }

    return *matched ? NGX_OK : ngx_http_events_inbound_mismatch(err);
}


/*
 * header=NAME (X-Signature): hex or base64 of HMAC-SHA256(secret, body);
 * key: the replay cache's, the first bytes of the first secret's MAC
 */

static ngx_int_t
ngx_http_events_inbound_hmac(ngx_http_request_t *r,
    ngx_http_events_inbound_conf_t *ic, ngx_str_t *body,
    ngx_uint_t *matched, u_char *key, ngx_http_events_error_t *err)
{
    u_char           *p;
    size_t            len;
    ngx_table_elt_t  *h;
    u_char            name[128];
    u_char            macs[NGX_HTTP_EVENTS_INBOUND_MACS];

    ngx_cpystrn(name, ic->header.data, ngx_min(ic->header.len + 1,
                                               sizeof(name)));

    h = ngx_http_events_http_header(r, (char *) name);

    if (h == NULL) {
        ngx_http_events_error(err, 401, "invalid_signature", NULL, NULL,
                              NULL, "the %V header is missing", &ic->header);
        return NGX_ERROR;
    }

    if (ngx_http_events_inbound_macs(ic, body, 1, macs) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_memcpy(key, macs, NGX_HTTP_EVENTS_INBOUND_KEY);

    p = h->value.data;
    len = h->value.len;

    if (len > 7 && ngx_strncasecmp(p, (u_char *) "sha256=", 7) == 0) {
        p += 7;
        len -= 7;
    }

    /* each comparison checks the length its encoding has */

    *matched = ngx_http_events_inbound_any(ic, macs, p, len,
                                           ngx_http_events_inbound_hex_eq)
               | ngx_http_events_inbound_any(ic, macs, p, len,
                                             ngx_http_events_inbound_b64_eq);

    return *matched ? NGX_OK : ngx_http_events_inbound_mismatch(err);
}


/*
 * a timestamp within tolerance of now, either way (a clock may be
 * ahead); NGX_ABORT: a number, but stale
 */

static ngx_int_t
ngx_http_events_inbound_fresh(ngx_str_t *ts, time_t tolerance,
    ngx_http_events_error_t *err)
{
    time_t  t, now, d;

    t = (ts->len && ts->len <= 12) ? ngx_atotm(ts->data, ts->len) : NGX_ERROR;

    if (t == (time_t) NGX_ERROR) {
        ngx_http_events_error(err, 401, "invalid_signature", NULL, NULL,
                              NULL, "the signature's timestamp is not a "
                              "number of seconds");
        return NGX_ERROR;
    }

    now = ngx_time();
    d = t > now ? t - now : now - t;

    if (d > tolerance) {
        ngx_http_events_error(err, 401, "invalid_signature", NULL, NULL,
                              NULL, "the signature's timestamp is %T s "
                              "away from now; at most %T s are allowed",
                              d, tolerance);
        return NGX_ABORT;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_events_inbound_mismatch(ngx_http_events_error_t *err)
{
    ngx_http_events_error(err, 401, "invalid_signature", NULL, NULL, NULL,
                          "the signature does not match the body");
    return NGX_DECLINED;
}


/* the MAC of the signed parts under each secret, in the secrets' order */

static ngx_int_t
ngx_http_events_inbound_macs(ngx_http_events_inbound_conf_t *ic,
    ngx_str_t *parts, ngx_uint_t nparts, u_char *macs)
{
    ngx_uint_t  k;

    for (k = 0; k < ic->nkeys; k++) {
        if (ngx_http_events_hmac_sha256(ic->keys[k].data, ic->keys[k].len,
                                        parts, nparts,
                                        macs
                                        + k * NGX_HTTP_EVENTS_HMAC_SHA256_LEN)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/*
 * The secrets a signature is the MAC under, a bit each: it is compared
 * with every secret's MAC, a match does not stop the others
 */

static ngx_uint_t
ngx_http_events_inbound_any(ngx_http_events_inbound_conf_t *ic,
    u_char *macs, u_char *sig, size_t len, ngx_http_events_inbound_eq_pt eq)
{
    ngx_uint_t  k, matched;

    matched = 0;

    for (k = 0; k < ic->nkeys; k++) {
        matched |= eq(macs + k * NGX_HTTP_EVENTS_HMAC_SHA256_LEN, sig, len)
                   << k;
    }

    return matched;
}


/* hex, either case, against the MAC's bytes, in constant time */

static ngx_uint_t
ngx_http_events_inbound_hex_eq(u_char *mac, u_char *hex, size_t len)
{
    size_t  i;
    u_char  lower[2 * NGX_HTTP_EVENTS_HMAC_SHA256_LEN];
    u_char  want[2 * NGX_HTTP_EVENTS_HMAC_SHA256_LEN];

    if (len != sizeof(want)) {
        return 0;
    }

    ngx_hex_dump(want, mac, NGX_HTTP_EVENTS_HMAC_SHA256_LEN);

    for (i = 0; i < len; i++) {
        lower[i] = ngx_tolower(hex[i]);
    }

    return CRYPTO_memcmp(want, lower, len) == 0;
}


static ngx_uint_t
ngx_http_events_inbound_b64_eq(u_char *mac, u_char *b64, size_t len)
{
    ngx_str_t  src, dst;
    u_char     want[ngx_base64_encoded_length(NGX_HTTP_EVENTS_HMAC_SHA256_LEN)];

    src.data = mac;
    src.len = NGX_HTTP_EVENTS_HMAC_SHA256_LEN;
    dst.data = want;

    ngx_encode_base64(&dst, &src);

    return len == dst.len && CRYPTO_memcmp(want, b64, len) == 0;
}


/*
 * The event's type and id: type= and id= when configured, else the
 * sender's own names for them.  An id is optional (hmac without id=):
 * then the store makes one and a redelivery is a new event.
 */

static ngx_int_t
ngx_http_events_inbound_names(ngx_http_request_t *r,
    ngx_http_events_inbound_conf_t *ic, json_t *body, ngx_str_t *type,
    ngx_str_t *id, ngx_http_events_error_t *err)
{
    u_char           *p;
    json_t           *v;
    ngx_str_t         sender, prefix;
    ngx_table_elt_t  *h;

    ngx_str_null(&sender);
    ngx_str_null(id);

    if (ic->kind == NGX_HTTP_EVENTS_INBOUND_GITHUB) {
        ngx_str_set(&prefix, "github");

        h = ngx_http_events_http_header(r, "X-GitHub-Event");
        if (h) {
            sender = h->value;
        }

        h = ngx_http_events_http_header(r, "X-GitHub-Delivery");
        if (h) {
            *id = h->value;
        }

    } else {
        if (ic->kind == NGX_HTTP_EVENTS_INBOUND_STRIPE) {
            ngx_str_set(&prefix, "stripe");

            v = json_object_get(body, "id");
            if (json_is_string(v)) {
                id->data = (u_char *) json_string_value(v);
                id->len = json_string_length(v);
            }

        } else {
            ngx_str_set(&prefix, "webhook");

            h = ngx_http_events_http_header(r, "webhook-id");
            if (h && ic->kind == NGX_HTTP_EVENTS_INBOUND_STANDARD) {
                *id = h->value;
            }
        }

        v = json_object_get(body, "type");
        if (json_is_string(v)) {
            sender.data = (u_char *) json_string_value(v);
            sender.len = json_string_length(v);
        }
    }

    if (ic->id && ngx_http_events_inbound_value(r, ic->id, id) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_str_null(type);

    if (ic->type && ngx_http_events_inbound_value(r, ic->type, type)
                    != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (type->len) {
        /* type= named it */

    } else if (sender.len == 0) {
        ngx_http_events_error(err, 400, "invalid_body", NULL, NULL, NULL,
                              "the sender did not name the event's type "
                              "(%s); set type= in events_inbound",
                              ic->kind == NGX_HTTP_EVENTS_INBOUND_GITHUB
                              ? "X-GitHub-Event" : "the body's \"type\"");
        return NGX_ERROR;

    } else {
        type->len = prefix.len + 1 + sender.len;
        type->data = ngx_pnalloc(r->pool, type->len);
        if (type->data == NULL) {
            return NGX_ERROR;
        }

        p = ngx_cpymem(type->data, prefix.data, prefix.len);
        *p++ = '.';
        ngx_memcpy(p, sender.data, sender.len);
    }

    if (ngx_http_events_match_type_valid(type->data, type->len) != NGX_OK) {
        ngx_http_events_error(err, 400, "invalid_type", NULL, NULL, NULL,
                              "the event's type \"%*s\" is not a type: "
                              "dot-separated segments of [a-z0-9_], 1-128 "
                              "characters", ngx_min(type->len, 128),
                              type->data);
        return NGX_ERROR;
    }

    if (id->len && ngx_http_events_id_valid(id->data, id->len) != NGX_OK) {
        ngx_http_events_error(err, 400, "invalid_id", NULL, NULL, NULL,
                              "the sender's delivery id \"%*s\" is not an "
                              "event id: 1-128 characters of "
                              "[A-Za-z0-9_:-]", ngx_min(id->len, 128),
                              id->data);
        return NGX_ERROR;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_events_inbound_value(ngx_http_request_t *r,
    ngx_http_complex_value_t *cv, ngx_str_t *v)
{
    ngx_str_t  s;

    if (ngx_http_complex_value(r, cv, &s) != NGX_OK) {
        return NGX_ERROR;
    }

    /* an empty value leaves the sender's */
    if (s.len) {
        *v = s;
    }

    return NGX_OK;
}


/*
 * An hmac delivery without an id: the id of the event its MAC made
 * within replay=, or a new one, remembered.  The id is made before the
 * lock, so that nothing under it can fail.  Without the zone's memory
 * for the ring the delivery goes on, unremembered and warned of: the
 * sender is not made to retry for what it cannot change.
 */

static ngx_int_t
ngx_http_events_inbound_replay(ngx_http_request_t *r,
    ngx_http_events_inbound_conf_t *ic, u_char *key, ngx_str_t *id)
{
    u_char                   *p;
    ngx_uint_t                replayed;
    ngx_time_t               *tp;
    ngx_http_events_ipc_t    *ipc;
    ngx_http_events_store_t  *store;

    p = ngx_pnalloc(r->pool, NGX_HTTP_EVENTS_ID_LEN);
    if (p == NULL) {
        return NGX_ERROR;
    }

    tp = ngx_timeofday();
    ipc = ngx_http_events_ipc();

    if (ngx_http_events_id_generate(p, (uint64_t) tp->sec * 1000 + tp->msec,
                                    ipc ? &ipc->rng : NULL)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    id->data = p;
    id->len = NGX_HTTP_EVENTS_ID_LEN;

    /* without its counters' node the delivery was warned of */

    if (ngx_http_events_inbound_nodes(ic) != NGX_OK) {
        return NGX_OK;
    }

    store = ic->zone->data;
    replayed = 0;

    ngx_shmtx_lock(&store->shpool->mutex);

    if (ic->ring == NULL) {
        ic->ring = ngx_http_events_inbound_ring_locked(store->shpool,
                                                       ic->node,
                                                       ic->replay_size);
    }

    if (ic->ring) {
        replayed = ngx_http_events_inbound_seen_locked(ic->ring, key, p,
                                                (uint32_t) (ngx_time()
                                                            + ic->replay));
    }

    ngx_shmtx_unlock(&store->shpool->mutex);

    if (ic->ring == NULL) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "events inbound \"%V\": no memory in zone \"%V\" "
                      "for its replay cache: a replay is a new event",
                      &ic->label, &ic->zone->shm.name);
        return NGX_OK;
    }

    if (replayed) {
        (void) ngx_atomic_fetch_add(
                     &ic->node->count[NGX_HTTP_EVENTS_INBOUND_REPLAYED], 1);

        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "events inbound %V: a replay of %*s", &ic->name,
                      id->len, id->data);
    }

    return NGX_OK;
}


/*
 * Whether the key is in the ring and not expired: then id becomes its
 * event's id.  If not, the key and id take the ring's oldest entry,
 * which leaves its bucket first, until expires.
 */

static ngx_uint_t
ngx_http_events_inbound_seen_locked(ngx_http_events_inbound_ring_t *ring,
    u_char *key, u_char *id, uint32_t expires)
{
    uint32_t                        *b, *pp, i, now;
    ngx_http_events_inbound_seen_t  *seen;

    now = (uint32_t) ngx_time();
    b = &ring->buckets[ngx_hash_key(key, NGX_HTTP_EVENTS_INBOUND_KEY)
                       % ring->size];

    for (i = *b; i; i = seen->next) {
        seen = &ring->seen[i - 1];

        if (seen->expires > now
            && ngx_memcmp(seen->key, key, NGX_HTTP_EVENTS_INBOUND_KEY) == 0)
        {
            ngx_memcpy(id, seen->id, NGX_HTTP_EVENTS_ID_LEN);
            return 1;
        }
    }

    seen = &ring->seen[ring->head];

    if (seen->expires) {
        pp = &ring->buckets[ngx_hash_key(seen->key,
                                         NGX_HTTP_EVENTS_INBOUND_KEY)
                            % ring->size];

        while (*pp && *pp != ring->head + 1) {
            pp = &ring->seen[*pp - 1].next;
        }

        if (*pp) {
            *pp = seen->next;
        }
    }

    ngx_memcpy(seen->key, key, NGX_HTTP_EVENTS_INBOUND_KEY);
    ngx_memcpy(seen->id, id, NGX_HTTP_EVENTS_ID_LEN);
    seen->expires = expires;
    seen->next = *b;
    *b = (uint32_t) ring->head + 1;

    ring->head = (ring->head + 1) % ring->size;

    return 0;
}


/* $events_inbound_secret: the secrets a delivery matched, "1", "2", "1,2" */

static ngx_int_t
ngx_http_events_inbound_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    u_char                 *p;
    ngx_uint_t              k;
    ngx_http_events_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_events_module);

    if (ctx == NULL || ctx->inbound_secrets == 0) {
        v->not_found = 1;
        return NGX_OK;
    }

    p = ngx_pnalloc(r->pool, 2 * NGX_HTTP_EVENTS_INBOUND_SECRETS);
    if (p == NULL) {
        return NGX_ERROR;
    }

    v->data = p;

    for (k = 0; k < NGX_HTTP_EVENTS_INBOUND_SECRETS; k++) {
        if (ctx->inbound_secrets & ((ngx_uint_t) 1 << k)) {
            if (p != v->data) {
                *p++ = ',';
            }

            *p++ = (u_char) ('1' + k);
        }
    }

    v->len = p - v->data;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;
}


/*
 * A delivery's counts: verified and each secret it matched, or the
 * reason it was refused.  Counters that cannot be had (the zone full)
 * do not keep the delivery from its answer.
 */

static void
ngx_http_events_inbound_count(ngx_http_request_t *r,
    ngx_http_events_inbound_conf_t *ic, ngx_int_t rc, ngx_uint_t matched)
{
    ngx_uint_t  k, c;

    if (ngx_http_events_inbound_nodes(ic) != NGX_OK) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "events inbound \"%V\": no memory in zone \"%V\" "
                      "for its counters", &ic->label, &ic->zone->shm.name);
        return;
    }

    if (rc != NGX_OK) {
        c = (rc == NGX_DECLINED) ? NGX_HTTP_EVENTS_INBOUND_MISMATCH
            : (rc == NGX_ABORT) ? NGX_HTTP_EVENTS_INBOUND_STALE
                                : NGX_HTTP_EVENTS_INBOUND_MALFORMED;

        (void) ngx_atomic_fetch_add(&ic->node->count[c], 1);
        return;
    }

    (void) ngx_atomic_fetch_add(
                 &ic->node->count[NGX_HTTP_EVENTS_INBOUND_VERIFIED], 1);

    for (k = 0; k < ic->nkeys; k++) {
        if (matched & ((ngx_uint_t) 1 << k)) {
            (void) ngx_atomic_fetch_add(&ic->secrets[k]->count[0], 1);
        }
    }
}


/* this worker finds the location's nodes once, under the zone's lock */

static ngx_int_t
ngx_http_events_inbound_nodes(ngx_http_events_inbound_conf_t *ic)
{
    void                            **slot;
    ngx_int_t                         rc;
    ngx_uint_t                        k;
    ngx_queue_t                      *nodes;
    ngx_http_events_store_t          *store;
    ngx_http_events_inbound_node_t   *node;

    if (ic->node) {
        return NGX_OK;
    }

    store = ic->zone->data;
    rc = NGX_ERROR;

    ngx_shmtx_lock(&store->shpool->mutex);

    slot = ngx_http_events_store_inbound_slot(store);

    if (*slot == NULL) {
        nodes = ngx_slab_alloc_locked(store->shpool, sizeof(ngx_queue_t));
        if (nodes == NULL) {
            goto done;
        }

        ngx_queue_init(nodes);
        *slot = nodes;
    }

    nodes = *slot;

    for (k = 0; k < ic->nkeys; k++) {
        node = ngx_http_events_inbound_node(store->shpool, nodes, &ic->label,
                                            ic->fp[k]);
        if (node == NULL) {
            goto done;
        }

        ic->secrets[k] = node;
    }

    /* the location's last: it says the others are there */

    node = ngx_http_events_inbound_node(store->shpool, nodes, &ic->label,
                                        NULL);
    if (node == NULL) {
        goto done;
    }

    ic->node = node;
    rc = NGX_OK;

done:

    ngx_shmtx_unlock(&store->shpool->mutex);

    return rc;
}


/*
 * The location's ring, made on its first delivery without an id.  A
 * reload keeps it, and what it remembers, unless replay_size= changed:
 * then a new one, the old one left to old workers still using it.
 */

static ngx_http_events_inbound_ring_t *
ngx_http_events_inbound_ring_locked(ngx_slab_pool_t *shpool,
    ngx_http_events_inbound_node_t *node, ngx_uint_t size)
{
    ngx_http_events_inbound_ring_t  *ring;

    if (node->ring && node->ring->size == size) {
        return node->ring;
    }

    ring = ngx_slab_calloc_locked(shpool,
                                  sizeof(ngx_http_events_inbound_ring_t)
                                  + size * sizeof(uint32_t)
                                  + size
                                    * sizeof(ngx_http_events_inbound_seen_t));
    if (ring == NULL) {
        return NULL;
    }

    ring->size = size;
    ring->buckets = (uint32_t *) (ring + 1);
    ring->seen = (ngx_http_events_inbound_seen_t *)
                     ngx_align_ptr(ring->buckets + size, sizeof(uint32_t));

    node->ring = ring;

    return ring;
}


/* a location's node (fp NULL) or one of its secrets', found or made */

static ngx_http_events_inbound_node_t *
ngx_http_events_inbound_node(ngx_slab_pool_t *shpool, ngx_queue_t *nodes,
    ngx_str_t *name, u_char *fp)
{
    ngx_queue_t                     *q;
    ngx_http_events_inbound_node_t  *node;

    for (q = ngx_queue_head(nodes);
         q != ngx_queue_sentinel(nodes);
         q = ngx_queue_next(q))
    {
        node = ngx_queue_data(q, ngx_http_events_inbound_node_t, queue);

        if (node->len == name->len
            && ngx_memcmp(node->name, name->data, name->len) == 0
            && node->secret == (fp != NULL)
            && (fp == NULL
                || ngx_memcmp(node->fp, fp, NGX_HTTP_EVENTS_INBOUND_FP) == 0))
        {
            return node;
        }
    }

    node = ngx_slab_calloc_locked(shpool,
                                  sizeof(ngx_http_events_inbound_node_t));
    if (node == NULL) {
        return NULL;
    }

    node->len = (u_char) name->len;
    ngx_memcpy(node->name, name->data, name->len);

    if (fp) {
        node->secret = 1;
        ngx_memcpy(node->fp, fp, NGX_HTTP_EVENTS_INBOUND_FP);
    }

    ngx_queue_insert_tail(nodes, &node->queue);

    return node;
}


/*
 * ,"inbound":[{"name":..,"sender":..,"verified":N,"rejected":{..},
 * "secrets":[{"position":1,"fingerprint":"..","verified":N}]}]: the
 * zone's locations in this configuration, in their order
 */

static void
ngx_http_events_inbound_status_json(ngx_http_events_buf_t *b,
    ngx_http_events_store_t *store)
{
    u_char                           fp[2 * NGX_HTTP_EVENTS_INBOUND_FP];
    ngx_uint_t                       i, k, c, n;
    ngx_http_events_main_conf_t     *emcf;
    ngx_http_events_inbound_conf_t  *ic, **all;

    emcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_http_events_module);
    all = emcf->inbound->elts;
    n = 0;

    for (i = 0; i < emcf->inbound->nelts; i++) {
        ic = all[i];

        if (ic->zone->data != store
            || ngx_http_events_inbound_nodes(ic) != NGX_OK)
        {
            continue;
        }

        ngx_http_events_buf_printf(b, "%s{\"name\":",
                                   n++ ? "," : ",\"inbound\":[");
        ngx_http_events_buf_str(b, ic->label.data, ic->label.len);
        ngx_http_events_buf_printf(b, ",\"sender\":\"%V\",\"verified\":%uA,",
                                   &ic->name,
                    ic->node->count[NGX_HTTP_EVENTS_INBOUND_VERIFIED]);

        if (ic->replay) {
            ngx_http_events_buf_printf(b, "\"replayed\":%uA,",
                    ic->node->count[NGX_HTTP_EVENTS_INBOUND_REPLAYED]);
        }

        ngx_http_events_buf_literal(b, "\"rejected\":{");

        for (c = 1; c <= NGX_HTTP_EVENTS_INBOUND_MISMATCH; c++) {
            ngx_http_events_buf_printf(b, "%s\"%s\":%uA", c > 1 ? "," : "",
                                       ngx_http_events_inbound_reasons[c],
                                       ic->node->count[c]);
        }

        ngx_http_events_buf_literal(b, "},\"secrets\":[");

        for (k = 0; k < ic->nkeys; k++) {
            ngx_hex_dump(fp, ic->fp[k], NGX_HTTP_EVENTS_INBOUND_FP);
            ngx_http_events_buf_printf(b, "%s{\"position\":%ui,"
                                       "\"fingerprint\":\"%*s\","
                                       "\"verified\":%uA}",
                                       k ? "," : "", k + 1, sizeof(fp), fp,
                                       ic->secrets[k]->count[0]);
        }

        ngx_http_events_buf_literal(b, "]}");
    }

    if (n) {
        ngx_http_events_buf_literal(b, "]");
    }
}


/*
 * events_inbound_verified_total{zone,inbound}, by secret
 * events_inbound_secret_verified_total{zone,inbound,secret}, the
 * secrets' positions in events_inbound_secret_info, and
 * events_inbound_rejected_total{zone,inbound,reason}, and for hmac
 * with replay= events_inbound_replayed_total{zone,inbound}
 */

static void
ngx_http_events_inbound_status_text(ngx_http_events_buf_t *b,
    ngx_http_events_store_t *store)
{
    u_char                           fp[2 * NGX_HTTP_EVENTS_INBOUND_FP];
    u_char                           more[64];
    ngx_str_t                        v;
    ngx_uint_t                       i, k, c, m, n;
    ngx_http_events_main_conf_t     *emcf;
    ngx_http_events_inbound_conf_t  *ic, **all;

    static const char  *names[] = {
        "events_inbound_verified_total",
        "events_inbound_secret_verified_total",
        "events_inbound_secret_info",
        "events_inbound_rejected_total",
        "events_inbound_replayed_total"
    };

    static const char  *helps[] = {
        "Inbound webhooks whose signature verified.",
        "Inbound webhooks verified with the secret (its fingerprint).",
        "The inbound location's secrets: their position in the directive.",
        "Inbound webhooks refused with 401, by reason.",
        "Inbound webhooks (hmac, no id) seen before within replay=."
    };

    emcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_http_events_module);
    all = emcf->inbound->elts;

    /* one family at a time: its HELP and TYPE once, then its samples */

    for (m = 0; m < 5; m++) {
        n = 0;

        for (i = 0; i < emcf->inbound->nelts; i++) {
            ic = all[i];

            if (ic->zone->data != store
                || (m == 4 && ic->replay == 0)
                || ngx_http_events_inbound_nodes(ic) != NGX_OK)
            {
                continue;
            }

            if (n++ == 0) {
                ngx_http_events_status_help(b, names[m],
                                            m == 2 ? "gauge" : "counter",
                                            helps[m]);
            }

            if (m == 0 || m == 4) {
                ngx_http_events_inbound_sample(b, store, names[m], ic, NULL,
                                               NULL, NULL);
                ngx_http_events_buf_printf(b, " %uA\n",
                    ic->node->count[m ? NGX_HTTP_EVENTS_INBOUND_REPLAYED
                                      : NGX_HTTP_EVENTS_INBOUND_VERIFIED]);
                continue;
            }

            if (m == 3) {
                for (c = 1; c <= NGX_HTTP_EVENTS_INBOUND_MISMATCH; c++) {
                    v.data = (u_char *) ngx_http_events_inbound_reasons[c];
                    v.len = ngx_strlen(v.data);
                    ngx_http_events_inbound_sample(b, store, names[m], ic,
                                                   "reason", &v, NULL);
                    ngx_http_events_buf_printf(b, " %uA\n",
                                               ic->node->count[c]);
                }

                continue;
            }

            for (k = 0; k < ic->nkeys; k++) {
                ngx_hex_dump(fp, ic->fp[k], NGX_HTTP_EVENTS_INBOUND_FP);
                v.data = fp;
                v.len = sizeof(fp);

                if (m == 1) {
                    ngx_http_events_inbound_sample(b, store, names[m], ic,
                                                   "secret", &v, NULL);
                    ngx_http_events_buf_printf(b, " %uA\n",
                                               ic->secrets[k]->count[0]);
                    continue;
                }

                ngx_sprintf(more, ",position=\"%ui\"%Z", k + 1);
                ngx_http_events_inbound_sample(b, store, names[m], ic,
                                               "secret", &v, (char *) more);
                ngx_http_events_buf_literal(b, " 1\n");
            }
        }
    }
}


/* name{zone="..",inbound=".."[,label=".."][more]}, without the value */

static void
ngx_http_events_inbound_sample(ngx_http_events_buf_t *b,
    ngx_http_events_store_t *store, const char *name,
    ngx_http_events_inbound_conf_t *ic, const char *label, ngx_str_t *value,
    const char *more)
{
    ngx_http_events_buf_printf(b, "%s{zone=", name);
    ngx_http_events_buf_label(b, store->name.data, store->name.len);
    ngx_http_events_buf_literal(b, ",inbound=");
    ngx_http_events_buf_label(b, ic->label.data, ic->label.len);

    if (label) {
        ngx_http_events_buf_printf(b, ",%s=", label);
        ngx_http_events_buf_label(b, value->data, value->len);
    }

    if (more) {
        ngx_http_events_buf_printf(b, "%s", more);
    }

    ngx_http_events_buf_literal(b, "}");
}
