
/*
 * Copyright (C) ngx_http_events_module authors
 */


/*
 * libFuzzer target for the token verifier (src/ngx_http_events_jwt.c).
 *
 * The keys: two HS256 secrets (one with kid "k2"), the first again as
 * HS512 (kid "h5"), and the public halves of the RSA key as RS256 (kid
 * "r") and as PS256 (kid "p"), the P-256 (kid "e"), P-384 (kid "e3")
 * and Ed25519 (no kid) private keys below, which seeds in seeds/jwt/
 * were signed with.
 *
 * The first byte picks a mode:
 *   bit 0 clear: the rest is a token as a client would send it; whatever
 *         is accepted must carry a real signature by one of the keys,
 *         of the alg its header names and that key verifies, in
 *         base64url without "=" padding;
 *   bit 0 set: the rest is "header JSON \n payload JSON", which the
 *         harness signs, so the claims parser is reached: bits 1-2 pick
 *         the signer (HS256 secret, RSA key RS256, P-256, Ed25519 key),
 *         bit 4 its other alg (HS512, PS256, the P-384 key ES384,
 *         EdDSA), and bit 3 signs with HS256 (HS512 with bit 4) using
 *         that key's public PEM as the secret, the confusion attack,
 *         which must never be accepted.  An accepted token's claims
 *         must be what the verifier promises (tenant, patterns, exp).
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include <stdio.h>
#include <stdlib.h>
#include <openssl/hmac.h>
#include <openssl/rsa.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ec.h>
#include <openssl/bn.h>
#include <openssl/err.h>

#include "ngx_http_events_jwt.h"
#include "ngx_http_events_match.h"
#include "fuzz_utf8.h"


#define FZ_NOW      1800000000
#define FZ_LEEWAY   30

#define fz_check(cond, ...)                                                   \
    do {                                                                      \
        if (!(cond)) {                                                        \
            fprintf(stderr, "fuzz_jwt: invariant failed: %s: ", #cond);       \
            fprintf(stderr, __VA_ARGS__);                                     \
            fprintf(stderr, "\n");                                            \
            abort();                                                          \
        }                                                                     \
    } while (0)


static ngx_str_t  fz_key1 = ngx_string("s3cret-one");
static ngx_str_t  fz_key2 = ngx_string("another-secret");


/* test keys, made for this harness only */

static const char  fz_rsa_pem[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQDuui9L7aXAa+bI\n"
    "Kxb84JM19UmlUDV+Fg/4pKPf5NatKw1L3nqDijUOMQCKoqMm+6pvIePCHxxaw1f6\n"
    "v7Ocb0VT9wHBGn9gViXNx+AmQwYTd6NxEJAkee6cPV4PH5FFKGF8aw0vyJVbfEnY\n"
    "be16yBtuMpeV9c4EiesDg/6XS8yO2RNa8hM8VK2+TRxNBqd1V+hc9HYmBJcpp4JS\n"
    "srR/Bb2kWBEV0vB1CWetEQZi8fvhiJlFe320EvtMuTKmU8VJKhxvahmDcl8UvbCg\n"
    "pPlGHFfWUW5UvydRmFnNrmzAS2kLUqMTczjwE1ohtGwu9H7YzqR4QAyNx4is0Nv+\n"
    "L94I+YDvAgMBAAECggEAYnR18h4SOIAnv1EKG4OxItVFKMEiNpx5vMWF8l5J7UQu\n"
    "qSYZp+tVg0NRYlu95uNvAINdD9/NzV74B2mNdUxsrrrVxeKcOsp8r9gpiQ4mUNwM\n"
    "E6LNl8WT02r5wkn2GywSvIHX/+d9NaxWNkTr5rHlojaKTuX/r96DhsEmvBYeSKDR\n"
    "Rq+wm7vjO5nIXvAhZ2s02G8Ukp9FZWiAFKYbBZpSI0W3IHv6LTsv0zT4f7lrkE0k\n"
    "lCxWLXn4LsxSFac5cnP0N9M0uD9jrClsvBqPgGFeG0pB7s9F0LGaC1+4y3wyvEep\n"
    "gLKQZ5ll3cx8nFfgL8ewZG5JhFrxorwyyaTPVkKvCQKBgQD8WKBeLThnUAawIW/D\n"
    "+2yzklUtjT7Q0z2no7MIvorVSIujJ0O6l2jJSzRa7Ag6LNM17TnE7gkO/uGohWSf\n"
    "Wdt/W8R1j2ZkkhBlidItRZAPDtCJ+G5i9JfB47KOnBBcZpmD1bsKKJAF4QzlqZEj\n"
    "+ZhavQ6svM4/qYz5SN2T1L6dxwKBgQDyLxO1eMUGLSO5We7xFOFz7B5qHUtXaRtA\n"
    "IGKDgWzZhUfCMWrqBozdiM5Ri41fspb3f9uYzyFHOk/M07viAO4B75lqxQi3ZSE0\n"
    "0RKXUBYEy9aFiA6+sLA6+HaWkXv6o2v5YBwbHXCvUHRH5uWsPqSnIN4Xjpfe/ypk\n"
    "ksOJLK0jmQKBgHRJfzWHDzwE0+AsuG2PGqux3pDMS0s+XWY4eNOpwx7AfKDmAj8l\n"
    "cQN6JZlUtgHhEEAEnx+SNhhz+peHSTRp203YgzNNrvjfmrDAD1wPd3CI+i7qjiwJ\n"
    "3TlbbbhsUNnT6iCnyLbItH4RFLltJ9Z1OfFuuCmAJGeQAcgK/RkX6/OXAoGBAKwj\n"
    "VgjovHH1Z6z5BWMKCm2Q6NVX2RNaO+pKmnsKZUn+99BJu8p3uWxFLxC69lOM5s0o\n"
    "bfehUfAEvG/EF4k+S+3IVe2T+uwPz5hw+pveaqgiEmp7GK/len2P2QqQgeTWf4qT\n"
    "C6ciN9QEhYIN1jWlmPbJ39IyojP4fjNaNe2seawRAoGAJb5m7teMRfUgpJW5y4EL\n"
    "bbyD1+Zr0t7oOJll4mNyEYHYrtAPvoPAKHhv9GG3xU5aE/79XurmNIK2LBYVEiz2\n"
    "/m4Z+tJIgttSkXwHFGNbwurcGHcmvmeGuR7eO0xf8EtFVR9op94n/fmEBebhk+4N\n"
    "003PgGlTWC3OAlZgfGOAKaA=\n"
    "-----END PRIVATE KEY-----\n";

static const char  fz_ec_pem[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgFCThLf5LTCBD+Qe6\n"
    "a1M9MSkCNlDX5djOm18hxPPomkmhRANCAATMblhtOGpAmghVSopTCtynrBEp7zZP\n"
    "9yi+g/A7n0Io60Oq2bPfnsbBaatmJac2Oxp9MC9NVfxZodpOflKS7+J6\n"
    "-----END PRIVATE KEY-----\n";

static const char  fz_p384_pem[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MIG2AgEAMBAGByqGSM49AgEGBSuBBAAiBIGeMIGbAgEBBDBRV3QyJNWtfHMYQUk3\n"
    "ur/SI+oU/ffEZvvTmygXA8k5SApqYrDLF/UTHoymfFsjSEChZANiAAQ61vf2eutW\n"
    "oCJvO2JiqLUafbp+gNrW1oMrbs1ZyDbNW5c5OxfuOko94/+5Me819S6KdsE1dDMx\n"
    "HGUDEmZ20Y7qUyOSvtV7vJd+x8XPUgi1Et4S/TxC408xF6NZnAFQH4k=\n"
    "-----END PRIVATE KEY-----\n";

static const char  fz_ed_pem[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MC4CAQAwBQYDK2VwBCIEIFtcpmrVPse+1NrDyOjGBD5xwPu41DsCc0THEIXxnBga\n"
    "-----END PRIVATE KEY-----\n";


/*
 * The harness's own account of the algs it signs with and checks,
 * written from RFC 7518, not taken from the verifier's table.
 */

typedef struct {
    const char       *name;
    ngx_uint_t        alg;          /* NGX_HTTP_EVENTS_JWT_* */
    const EVP_MD   *(*md)(void);    /* NULL: EdDSA */
    ngx_uint_t        hmac;
    ngx_uint_t        pss;
    size_t            half;         /* ECDSA: r's and s's length */
} fz_alg_t;

static const fz_alg_t  fz_algs[] = {
    { "HS256", NGX_HTTP_EVENTS_JWT_HS256, EVP_sha256, 1, 0, 0 },
    { "HS512", NGX_HTTP_EVENTS_JWT_HS512, EVP_sha512, 1, 0, 0 },
    { "RS256", NGX_HTTP_EVENTS_JWT_RS256, EVP_sha256, 0, 0, 0 },
    { "PS256", NGX_HTTP_EVENTS_JWT_PS256, EVP_sha256, 0, 1, 0 },
    { "ES256", NGX_HTTP_EVENTS_JWT_ES256, EVP_sha256, 0, 0, 32 },
    { "ES384", NGX_HTTP_EVENTS_JWT_ES384, EVP_sha384, 0, 0, 48 },
    { "EdDSA", NGX_HTTP_EVENTS_JWT_EDDSA, NULL, 0, 0, 0 }
};

#define FZ_NALGS  (sizeof(fz_algs) / sizeof(fz_algs[0]))

/* the signers: bits 1-2 of the first byte, bit 4 for the second row */
static const ngx_uint_t  fz_signers[2][4] = {
    { NGX_HTTP_EVENTS_JWT_HS256, NGX_HTTP_EVENTS_JWT_RS256,
      NGX_HTTP_EVENTS_JWT_ES256, NGX_HTTP_EVENTS_JWT_EDDSA },
    { NGX_HTTP_EVENTS_JWT_HS512, NGX_HTTP_EVENTS_JWT_PS256,
      NGX_HTTP_EVENTS_JWT_ES384, NGX_HTTP_EVENTS_JWT_EDDSA }
};


static EVP_PKEY  *fz_pkeys[NGX_HTTP_EVENTS_JWT_NALGS];  /* by alg */
static ngx_str_t  fz_pubs[NGX_HTTP_EVENTS_JWT_NALGS];   /* their PEMs */


static const fz_alg_t *
fz_alg(ngx_uint_t alg)
{
    ngx_uint_t  i;

    for (i = 0; i < FZ_NALGS; i++) {
        if (fz_algs[i].alg == alg) {
            return &fz_algs[i];
        }
    }

    abort();
}


static void
fz_load_keys(void)
{
    BIO         *bio;
    ngx_uint_t   i;
    const char  *pems[NGX_HTTP_EVENTS_JWT_NALGS] = { NULL };

    pems[NGX_HTTP_EVENTS_JWT_RS256] = fz_rsa_pem;
    pems[NGX_HTTP_EVENTS_JWT_ES256] = fz_ec_pem;
    pems[NGX_HTTP_EVENTS_JWT_EDDSA] = fz_ed_pem;
    pems[NGX_HTTP_EVENTS_JWT_ES384] = fz_p384_pem;

    for (i = 0; i < NGX_HTTP_EVENTS_JWT_NALGS; i++) {
        if (pems[i] == NULL) {
            continue;
        }

        bio = BIO_new_mem_buf(pems[i], -1);
        fz_pkeys[i] = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
        BIO_free(bio);

        bio = BIO_new(BIO_s_mem());
        if (fz_pkeys[i] == NULL || bio == NULL
            || PEM_write_bio_PUBKEY(bio, fz_pkeys[i]) != 1)
        {
            abort();
        }

        fz_pubs[i].len = BIO_get_mem_data(bio, (char **) &fz_pubs[i].data);
        fz_pubs[i].data = (u_char *) strndup((char *) fz_pubs[i].data,
                                             fz_pubs[i].len);
        BIO_free(bio);
    }

    /* PS256 with the RSA key */
    fz_pkeys[NGX_HTTP_EVENTS_JWT_PS256] = fz_pkeys[NGX_HTTP_EVENTS_JWT_RS256];
    fz_pubs[NGX_HTTP_EVENTS_JWT_PS256] = fz_pubs[NGX_HTTP_EVENTS_JWT_RS256];
}


/* an EVP_DigestSign/Verify context for the alg: its hash, PSS's padding */

static EVP_MD_CTX *
fz_md_ctx(const fz_alg_t *a, EVP_PKEY *pkey, ngx_uint_t sign)
{
    int            rc;
    EVP_MD_CTX    *md;
    EVP_PKEY_CTX  *pctx;

    md = EVP_MD_CTX_new();
    pctx = NULL;

    rc = sign ? EVP_DigestSignInit(md, &pctx, a->md ? a->md() : NULL, NULL,
                                   pkey)
              : EVP_DigestVerifyInit(md, &pctx, a->md ? a->md() : NULL, NULL,
                                     pkey);

    if (rc != 1
        || (a->pss
            && (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING)
                != 1
                || EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx,
                                                    RSA_PSS_SALTLEN_DIGEST)
                   != 1
                || EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, a->md()) != 1)))
    {
        abort();
    }

    return md;
}


/* a JOSE signature made with a private key, into sig (>= 512 bytes) */

static size_t
fz_pkey_sign(ngx_uint_t alg, u_char *in, size_t len, u_char *sig)
{
    int                  n;
    size_t               siglen;
    EVP_MD_CTX          *md;
    ECDSA_SIG           *es;
    const BIGNUM        *r, *s;
    const fz_alg_t      *a;
    const unsigned char *p;
    u_char               der[256];

    a = fz_alg(alg);
    md = fz_md_ctx(a, fz_pkeys[alg], 1);
    siglen = 512;

    if (a->half) {
        siglen = sizeof(der);
        if (EVP_DigestSign(md, der, &siglen, in, len) != 1) {
            abort();
        }

        p = der;
        es = d2i_ECDSA_SIG(NULL, &p, (long) siglen);
        if (es == NULL) {
            abort();
        }

        ECDSA_SIG_get0(es, &r, &s);
        n = BN_bn2binpad(r, sig, (int) a->half)
            + BN_bn2binpad(s, sig + a->half, (int) a->half);
        ECDSA_SIG_free(es);
        EVP_MD_CTX_free(md);

        return (size_t) n;
    }

    if (EVP_DigestSign(md, sig, &siglen, in, len) != 1) {
        abort();
    }

    EVP_MD_CTX_free(md);

    return siglen;
}


/* whether raw is a signature of in by the key, as its alg says */

static ngx_uint_t
fz_verifies(ngx_http_events_jwt_key_t *key, u_char *in, size_t len,
    ngx_str_t *raw, ngx_pool_t *pool)
{
    int              n;
    u_char          *p;
    u_char           mac[EVP_MAX_MD_SIZE];
    ngx_str_t        sig;
    ngx_uint_t       ok;
    EVP_MD_CTX      *md;
    ECDSA_SIG       *es;
    unsigned int     maclen;
    const fz_alg_t  *a;

    a = fz_alg(key->alg);

    if (a->hmac) {
        HMAC(a->md(), key->secret.data, (int) key->secret.len, in, len, mac,
             &maclen);

        return raw->len == maclen && memcmp(raw->data, mac, maclen) == 0;
    }

    sig = *raw;

    if (a->half) {
        if (raw->len != 2 * a->half) {
            return 0;
        }

        es = ECDSA_SIG_new();
        ECDSA_SIG_set0(es, BN_bin2bn(raw->data, (int) a->half, NULL),
                       BN_bin2bn(raw->data + a->half, (int) a->half, NULL));
        sig.data = ngx_pnalloc(pool, 256);
        p = sig.data;
        n = i2d_ECDSA_SIG(es, &p);
        ECDSA_SIG_free(es);
        sig.len = n;
    }

    md = fz_md_ctx(a, key->pkey, 0);
    ok = EVP_DigestVerify(md, sig.data, sig.len, in, len) == 1;
    EVP_MD_CTX_free(md);
    ERR_clear_error();

    return ok;
}


/*
 * Whether the token's header names an alg, and a key of that alg
 * verifies its signature: so a key never verified an alg not its own.
 */

static ngx_uint_t
fz_signed_by(ngx_str_t *token, ngx_array_t *keys, ngx_pool_t *pool)
{
    u_char                     *dot1, *dot;
    json_t                     *header, *alg;
    ngx_str_t                   seg, raw, hdr;
    ngx_uint_t                  i, ok;
    json_error_t                jerr;
    ngx_http_events_jwt_key_t  *k;

    dot1 = memchr(token->data, '.', token->len);
    dot = (u_char *) memrchr(token->data, '.', token->len);
    if (dot1 == NULL || dot == NULL) {
        return 0;
    }

    seg.data = token->data;
    seg.len = dot1 - token->data;
    hdr.data = ngx_pnalloc(pool, seg.len + 4);
    if (hdr.data == NULL || ngx_decode_base64url(&hdr, &seg) != NGX_OK) {
        return 0;
    }

    seg.data = dot + 1;
    seg.len = token->data + token->len - seg.data;
    raw.data = ngx_pnalloc(pool, seg.len + 4);
    if (raw.data == NULL || ngx_decode_base64url(&raw, &seg) != NGX_OK) {
        return 0;
    }

    header = json_loadb((char *) hdr.data, hdr.len, 0, &jerr);
    alg = json_object_get(header, "alg");
    ok = 0;
    k = keys->elts;

    for (i = 0; json_is_string(alg) && i < keys->nelts && !ok; i++) {
        if (strlen(fz_alg(k[i].alg)->name) == json_string_length(alg)
            && memcmp(fz_alg(k[i].alg)->name, json_string_value(alg),
                      json_string_length(alg)) == 0)
        {
            ok = fz_verifies(&k[i], token->data, dot - token->data, &raw,
                             pool);
        }
    }

    json_decref(header);

    return ok;
}


/* signer: an alg of fz_signers; confused: HMAC by its public PEM */

static void
fz_sign(ngx_pool_t *pool, const uint8_t *data, size_t size, ngx_str_t *token,
    ngx_uint_t signer, ngx_uint_t confused, ngx_uint_t second)
{
    u_char        *nl, *p;
    u_char         mac[512];
    ngx_str_t      h, pl, src, dst;
    unsigned int   len;

    nl = memchr(data, '\n', size);

    h.data = (u_char *) data;
    h.len = nl ? (size_t) (nl - data) : size;
    pl.data = nl ? nl + 1 : (u_char *) "";
    pl.len = nl ? size - h.len - 1 : 0;

    token->data = ngx_pnalloc(pool, 2 * (size + 64) + 1024);
    if (token->data == NULL) {
        abort();
    }

    p = token->data;

    dst.data = p;
    ngx_encode_base64url(&dst, &h);
    p += dst.len;
    *p++ = '.';

    dst.data = p;
    ngx_encode_base64url(&dst, &pl);
    p += dst.len;

    if (confused) {
        HMAC(second ? EVP_sha512() : EVP_sha256(), fz_pubs[signer].data,
             (int) fz_pubs[signer].len, token->data, p - token->data, mac,
             &len);

    } else if (fz_alg(signer)->hmac) {
        HMAC(fz_alg(signer)->md(), fz_key1.data, (int) fz_key1.len,
             token->data, p - token->data, mac, &len);

    } else {
        len = fz_pkey_sign(signer, token->data, p - token->data, mac);
    }

    *p++ = '.';

    src.data = mac;
    src.len = len;
    dst.data = p;
    ngx_encode_base64url(&dst, &src);
    p += dst.len;

    token->len = p - token->data;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ngx_int_t                   rc;
    ngx_uint_t                  i, mode, family, second, signer, confused;
    ngx_str_t                   token;
    ngx_pool_t                 *pool;
    ngx_array_t                *keys, karr;
    ngx_http_events_error_t     err;
    ngx_http_events_claims_t    claims;
    ngx_http_events_jwt_key_t  *k, kv[8];
    ngx_http_events_jwt_conf_t  conf;

    if (size == 0) {
        return 0;
    }

    if (fz_pkeys[NGX_HTTP_EVENTS_JWT_RS256] == NULL) {
        fz_load_keys();
    }

    mode = data[0] & 1;
    family = (data[0] >> 1) & 3;
    second = (data[0] >> 4) & 1;
    signer = fz_signers[second][family];
    confused = (data[0] >> 3) & 1 && family != 0;
    data++;
    size--;

    pool = ngx_create_pool(4096, NULL);
    if (pool == NULL) {
        abort();
    }

    /* the verifier only reads elts and nelts */
    k = kv;
    ngx_memzero(kv, sizeof(kv));
    k[0].secret = fz_key1;
    ngx_str_set(&k[1].kid, "k2");
    k[1].secret = fz_key2;
    ngx_str_set(&k[2].kid, "r");
    k[2].alg = NGX_HTTP_EVENTS_JWT_RS256;
    k[2].pkey = fz_pkeys[NGX_HTTP_EVENTS_JWT_RS256];
    ngx_str_set(&k[3].kid, "e");
    k[3].alg = NGX_HTTP_EVENTS_JWT_ES256;
    k[3].pkey = fz_pkeys[NGX_HTTP_EVENTS_JWT_ES256];
    k[4].alg = NGX_HTTP_EVENTS_JWT_EDDSA;
    k[4].pkey = fz_pkeys[NGX_HTTP_EVENTS_JWT_EDDSA];
    ngx_str_set(&k[5].kid, "h5");
    k[5].alg = NGX_HTTP_EVENTS_JWT_HS512;
    k[5].secret = fz_key1;
    ngx_str_set(&k[6].kid, "p");
    k[6].alg = NGX_HTTP_EVENTS_JWT_PS256;
    k[6].pkey = fz_pkeys[NGX_HTTP_EVENTS_JWT_PS256];
    ngx_str_set(&k[7].kid, "e3");
    k[7].alg = NGX_HTTP_EVENTS_JWT_ES384;
    k[7].pkey = fz_pkeys[NGX_HTTP_EVENTS_JWT_ES384];

    keys = &karr;
    keys->elts = kv;
    keys->nelts = 8;
    keys->size = sizeof(ngx_http_events_jwt_key_t);
    keys->nalloc = 8;
    keys->pool = pool;

    ngx_memzero(&conf, sizeof(ngx_http_events_jwt_conf_t));
    conf.keys = keys;
    conf.leeway = FZ_LEEWAY;
    conf.now = FZ_NOW;

    if (mode) {
        fz_sign(pool, data, size, &token, signer, confused, second);

    } else {
        /* an exact-size copy, so that over-reads show */
        token.data = ngx_pnalloc(pool, size ? size : 1);
        ngx_memcpy(token.data, data, size);
        token.len = size;
    }

    ngx_memzero(&err, sizeof(ngx_http_events_error_t));

    rc = ngx_http_events_jwt_verify(&conf, &token, pool, &claims, &err);

    /* FZ_VERBOSE=1 build/fuzz/fuzz_jwt SEED: what the verifier said */
    if (getenv("FZ_VERBOSE")) {
        fprintf(stderr, "fuzz_jwt: %s%.*s\n", rc == NGX_OK ? "accepted" : "",
                rc == NGX_OK ? 0 : (int) err.message_len, err.message);
    }

    if (rc != NGX_OK) {
        fz_check(err.status == 401, "status %lu", (unsigned long) err.status);
        fz_check(err.code != NULL, "no code");
        fz_check(fz_utf8_valid(err.message, err.message_len),
                 "message not UTF-8");

    } else {
        fz_check(!(mode && confused),
                 "accepted, signed with a public key as HMAC secret: %.*s",
                 (int) token.len, token.data);
        fz_check(fz_signed_by(&token, keys, pool),
                 "accepted without a valid signature of its alg: %.*s",
                 (int) token.len, token.data);
        fz_check(memchr(token.data, '=', token.len) == NULL,
                 "accepted with base64 padding: %.*s",
                 (int) token.len, token.data);
        fz_check(claims.exp + FZ_LEEWAY >= FZ_NOW, "expired exp %lld",
                 (long long) claims.exp);
        fz_check(ngx_http_events_match_tenant_valid(&claims.tenant) == NGX_OK,
                 "tenant %.*s", (int) claims.tenant.len, claims.tenant.data);

        for (i = 0; i < claims.npublish; i++) {
            fz_check(ngx_http_events_match_pattern_valid(
                         claims.publish[i].data, claims.publish[i].len)
                     == NGX_OK, "publish pattern");
        }

        for (i = 0; i < claims.nsubscribe; i++) {
            fz_check(ngx_http_events_match_pattern_valid(
                         claims.subscribe[i].data, claims.subscribe[i].len)
                     == NGX_OK, "subscribe pattern");

            /* a grant never narrows to something it does not cover */
            fz_check(ngx_http_events_match_pattern_covers(&claims.subscribe[i],
                                                          &claims.subscribe[i]),
                     "a pattern does not cover itself");
        }
    }

    ngx_destroy_pool(pool);

    return 0;
}
