#include "jwt.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <sodium.h>

#include "util.h"

#define B64_VARIANT sodium_base64_VARIANT_URLSAFE_NO_PADDING
#define JWT_HEADER "{\"typ\":\"JWT\",\"alg\":\"ed25519-nkey\"}"
#define JTI_LEN 52

/* Growable text buffer for the JSON written by hand below. */
struct buf {
        char *p;
        size_t n, cap;
};

static void buf_put(struct buf *b, const char *s, size_t len) {
        if (b->n + len + 1 > b->cap) {
                size_t cap = b->cap ? b->cap : 256;
                while (cap < b->n + len + 1)
                        cap *= 2;
                b->p = xreallocarray(b->p, cap, 1);
                b->cap = cap;
        }
        memcpy(b->p + b->n, s, len);
        b->n += len;
        b->p[b->n] = '\0';
}

static void buf_puts(struct buf *b, const char *s) {
        buf_put(b, s, strlen(s));
}

/* A JSON string exactly as Go's encoding/json writes it (HTML-safe, Go 1.22 or
 * later): the jti is a hash of these bytes, so a different but equivalent
 * escaping would give a different jti than nats-io/jwt computes. Jansson only
 * holds valid UTF-8, so Go's U+FFFD replacement never applies. */
static void go_json_string(struct buf *b, const char *s, size_t len) {
        static const char hex[] = "0123456789abcdef";
        buf_put(b, "\"", 1);
        for (size_t i = 0; i < len; i++) {
                unsigned char c = (unsigned char)s[i];
                char esc[7];
                switch (c) {
                case '"':
                        buf_put(b, "\\\"", 2);
                        continue;
                case '\\':
                        buf_put(b, "\\\\", 2);
                        continue;
                case '\b':
                        buf_put(b, "\\b", 2);
                        continue;
                case '\f':
                        buf_put(b, "\\f", 2);
                        continue;
                case '\n':
                        buf_put(b, "\\n", 2);
                        continue;
                case '\r':
                        buf_put(b, "\\r", 2);
                        continue;
                case '\t':
                        buf_put(b, "\\t", 2);
                        continue;
                default:
                        break;
                }
                if (c < 0x20 || c == '<' || c == '>' || c == '&') {
                        esc[0] = '\\';
                        esc[1] = 'u';
                        esc[2] = '0';
                        esc[3] = '0';
                        esc[4] = hex[c >> 4];
                        esc[5] = hex[c & 15];
                        buf_put(b, esc, 6);
                } else if (c == 0xe2 && i + 2 < len && (unsigned char)s[i + 1] == 0x80
                           && ((unsigned char)s[i + 2] == 0xa8 || (unsigned char)s[i + 2] == 0xa9)) {
                        /* U+2028 and U+2029 break JavaScript string literals. */
                        buf_puts(b, (unsigned char)s[i + 2] == 0xa8 ? "\\u2028" : "\\u2029");
                        i += 2;
                } else {
                        buf_put(b, (const char *)&s[i], 1);
                }
        }
        buf_put(b, "\"", 1);
}

enum field_kind { FIELD_STRING, FIELD_INT };

/* nats-io/jwt's ClaimsData, in struct order; every field is omitempty. */
static const struct {
        const char *key;
        enum field_kind kind;
} claims_data[] = {
        { "aud", FIELD_STRING }, { "exp", FIELD_INT }, { "jti", FIELD_STRING }, { "iat", FIELD_INT },
        { "iss", FIELD_STRING }, { "name", FIELD_STRING }, { "nbf", FIELD_INT }, { "sub", FIELD_STRING },
};

static bool is_claims_data_key(const char *key) {
        for (size_t i = 0; i < ARRAY_SIZE(claims_data); i++)
                if (strcmp(claims_data[i].key, key) == 0)
                        return true;
        return false;
}

/* Append Go's JSON of ClaimsData ("{...}"), leaving jti out unless with_jti.
 * -EINVAL when a field has a type Go could not unmarshal into it. */
static int claims_data_json(const json_t *claims, bool with_jti, struct buf *b) {
        bool first = true;
        buf_put(b, "{", 1);
        for (size_t i = 0; i < ARRAY_SIZE(claims_data); i++) {
                const char *key = claims_data[i].key;
                const json_t *v = json_object_get(claims, key);
                char num[24];

                if (!v || json_is_null(v) || (!with_jti && strcmp(key, "jti") == 0))
                        continue;
                if (claims_data[i].kind == FIELD_STRING) {
                        if (!json_is_string(v))
                                return -EINVAL;
                        if (json_string_length(v) == 0)
                                continue;
                } else {
                        if (!json_is_integer(v))
                                return -EINVAL;
                        if (json_integer_value(v) == 0)
                                continue;
                }
                if (!first)
                        buf_put(b, ",", 1);
                first = false;
                go_json_string(b, key, strlen(key));
                buf_put(b, ":", 1);
                if (claims_data[i].kind == FIELD_STRING) {
                        go_json_string(b, json_string_value(v), json_string_length(v));
                } else {
                        snprintf(num, sizeof(num), "%" PRId64, (int64_t)json_integer_value(v));
                        buf_puts(b, num);
                }
        }
        buf_put(b, "}", 1);
        return 0;
}

/* The SHA-512/256 initial hash value, FIPS 180-4 section 5.3.6.2. */
static const uint64_t sha512_256_iv[8] = {
        0x22312194fc2bf72cULL, 0x9f555fa3c84c64c2ULL, 0x2393b86b6f53b151ULL, 0x963877195940eabdULL,
        0x96283ee2a88effe3ULL, 0xbe5e1e2553863992ULL, 0x2b0199fc2c85b8aaULL, 0x0eb72ddc81c52ca2ULL,
};

void jwt_sha512_256(const void *data, size_t len, uint8_t out[32]) {
        crypto_hash_sha512_state st;
        uint8_t full[crypto_hash_sha512_BYTES];

        /* SHA-512/256 is SHA-512 with other initial values, truncated. libsodium
         * has no SHA-512/256, but its SHA-512 state is a public struct holding the
         * eight hash words in native order, so only the IV needs replacing; the
         * FIPS vector in the tests guards this. */
        crypto_hash_sha512_init(&st);
        memcpy(st.state, sha512_256_iv, sizeof(sha512_256_iv));
        crypto_hash_sha512_update(&st, data, len);
        crypto_hash_sha512_final(&st, full);
        memcpy(out, full, 32);
}

static char *claims_id(const json_t *claims) {
        struct buf b = { 0 };
        uint8_t hash[32];
        char *id;

        if (claims_data_json(claims, false, &b) < 0) {
                free(b.p);
                return NULL;
        }
        jwt_sha512_256(b.p, b.n, hash);
        free(b.p);
        id = xmalloc(JTI_LEN + 2);
        nkey_base32_encode(hash, sizeof(hash), id);
        return id;
}

char *jwt_claims_id(const json_t *claims) {
        if (!json_is_object(claims))
                return NULL;
        return claims_id(claims);
}

static char *b64url(const void *data, size_t len) {
        size_t cap = sodium_base64_ENCODED_LEN(len, B64_VARIANT);
        char *s = xmalloc(cap);
        sodium_bin2base64(s, cap, data, len, B64_VARIANT);
        return s;
}

/* -1 unless the whole of in is base64url without padding. */
static int b64url_decode(const char *in, size_t len, unsigned char **out, size_t *out_len) {
        size_t cap = len / 4 * 3 + 3;
        unsigned char *bin = xmalloc(cap);
        if (sodium_base642bin(bin, cap, in, len, NULL, out_len, NULL, B64_VARIANT) != 0) {
                free(bin);
                return -1;
        }
        *out = bin;
        return 0;
}

/* Claims fields first, in Go's order and with Go's escaping, then the rest as
 * jansson writes it: the same layout nats-io/jwt produces, so tokens diff cleanly
 * against nsc's. */
static char *payload_json(const json_t *claims) {
        struct buf b = { 0 };
        json_t *rest = json_object();
        const char *key;
        json_t *v;
        char *rest_text = NULL;

        json_object_foreach((json_t *)claims, key, v)
                if (!is_claims_data_key(key))
                        json_object_set(rest, key, v);
        rest_text = json_dumps(rest, JSON_COMPACT);
        json_decref(rest);
        if (!rest_text || claims_data_json(claims, true, &b) < 0) {
                free(rest_text);
                free(b.p);
                return NULL;
        }
        /* Splice "{a}" and "{b}" into "{a,b}". */
        if (strcmp(rest_text, "{}") != 0) {
                b.n--;
                if (b.n > 1)
                        buf_put(&b, ",", 1);
                buf_puts(&b, rest_text + 1);
        }
        free(rest_text);
        return b.p;
}

char *jwt_encode_at(json_t *claims, const struct nkey *signer, int64_t iat) {
        const json_t *sub = json_object_get(claims, "sub");
        json_t *nats = json_object_get(claims, "nats");
        struct buf out = { 0 };
        uint8_t sig[64];
        char *id, *payload, *part;

        if (!json_is_object(claims) || !json_is_string(sub) || json_string_length(sub) == 0)
                return NULL;
        /* Refuse before touching claims. */
        if (claims_data_json(claims, false, &out) < 0) {
                free(out.p);
                return NULL;
        }
        out.n = 0;
        json_object_set_new(claims, "iss", json_string(signer->pub));
        json_object_set_new(claims, "iat", json_integer((json_int_t)iat));
        if (json_is_object(nats))
                json_object_set_new(nats, "version", json_integer(2));
        id = claims_id(claims);
        if (!id)
                return NULL;
        json_object_set_new(claims, "jti", json_string(id));
        free(id);
        payload = payload_json(claims);
        if (!payload)
                return NULL;

        part = b64url(JWT_HEADER, strlen(JWT_HEADER));
        buf_puts(&out, part);
        free(part);
        buf_put(&out, ".", 1);
        part = b64url(payload, strlen(payload));
        buf_puts(&out, part);
        free(part);
        free(payload);

        nkey_sign(signer, out.p, out.n, sig);
        part = b64url(sig, sizeof(sig));
        buf_put(&out, ".", 1);
        buf_puts(&out, part);
        free(part);
        return out.p;
}

char *jwt_encode(json_t *claims, const struct nkey *signer) {
        return jwt_encode_at(claims, signer, (int64_t)time(NULL));
}

static int fail(char **err, int r, const char *msg) {
        if (err)
                *err = xstrdup(msg);
        return r;
}

static json_t *parse_object(const unsigned char *text, size_t len) {
        json_error_t error;
        json_t *v = json_loadb((const char *)text, len, JSON_REJECT_DUPLICATES, &error);
        if (v && !json_is_object(v)) {
                json_decref(v);
                return NULL;
        }
        return v;
}

/* The three parts of a token of len bytes: *dot1 and *dot2 point at the dots. */
static int split(const char *jwt, size_t len, const char **dot1, const char **dot2, char **err) {
        *dot1 = memchr(jwt, '.', len);
        *dot2 = *dot1 ? memchr(*dot1 + 1, '.', len - (size_t)(*dot1 + 1 - jwt)) : NULL;
        if (!*dot2 || memchr(*dot2 + 1, '.', len - (size_t)(*dot2 + 1 - jwt)))
                return fail(err, -EINVAL, "not a JWT: expected three parts separated by '.'");
        return 0;
}

/* The header every nats-io/jwt v2 token carries, as it encodes it. */
#define JWT_HEADER_B64 "eyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ"

static int check_header(const char *b64, size_t len, char **err) {
        if (len == strlen(JWT_HEADER_B64) && memcmp(b64, JWT_HEADER_B64, len) == 0)
                return 0;
        unsigned char *bin = NULL;
        size_t bin_len;
        if (b64url_decode(b64, len, &bin, &bin_len) < 0)
                return fail(err, -EINVAL, "JWT header is not base64url");
        json_t *header = parse_object(bin, bin_len);
        free(bin);
        if (!header)
                return fail(err, -EINVAL, "JWT header is not a JSON object");
        /* Case as nats-io/jwt compares them. */
        const char *typ = json_string_value(json_object_get(header, "typ"));
        const char *alg = json_string_value(json_object_get(header, "alg"));
        int r = 0;
        if (!typ || strcasecmp(typ, "JWT") != 0)
                r = fail(err, -EPROTONOSUPPORT, "JWT header typ is not \"JWT\"");
        else if (alg && strcasecmp(alg, "ed25519") == 0)
                r = fail(err, -EPROTONOSUPPORT, "JWT v1 (alg ed25519) is not supported, only v2");
        else if (!alg || strcasecmp(alg, "ed25519-nkey") != 0)
                r = fail(err, -EPROTONOSUPPORT, "JWT header alg is not \"ed25519-nkey\"");
        json_decref(header);
        return r;
}

/* The signature part against header.payload, signed by iss. */
static int check_signature(const char *jwt, size_t len, const char *dot2, const char *iss, char **err) {
        unsigned char *bin = NULL;
        size_t bin_len;
        if (b64url_decode(dot2 + 1, len - (size_t)(dot2 + 1 - jwt), &bin, &bin_len) < 0 || bin_len != 64) {
                free(bin);
                return fail(err, -EINVAL, "JWT signature is not 64 bytes of base64url");
        }
        bool ok = nkey_verify(iss, jwt, (size_t)(dot2 - jwt), bin);
        free(bin);
        return ok ? 0 : fail(err, -EBADMSG, "JWT signature does not match its issuer");
}

int jwt_verify(const char *jwt, size_t len, const char *iss, char **err) {
        const char *dot1, *dot2;
        if (err)
                *err = NULL;
        if (len > JWT_MAX_LEN)
                return fail(err, -EMSGSIZE, "JWT longer than 1 MiB");
        int r = split(jwt, len, &dot1, &dot2, err);
        if (r == 0)
                r = check_header(jwt, (size_t)(dot1 - jwt), err);
        if (r == 0 && (!iss || nkey_public_type(iss) < 0))
                r = fail(err, -EINVAL, "JWT iss is missing or not a public nkey");
        if (r == 0)
                r = check_signature(jwt, len, dot2, iss, err);
        return r;
}

int jwt_decode(const char *jwt, json_t **claims, char **err) {
        const char *dot1, *dot2;
        unsigned char *bin = NULL;
        size_t len, bin_len;
        json_t *payload = NULL;
        const char *iss;
        int r;

        *claims = NULL;
        if (err)
                *err = NULL;
        if (!jwt)
                return fail(err, -EINVAL, "no JWT");
        len = strnlen(jwt, JWT_MAX_LEN + 1);
        if (len > JWT_MAX_LEN)
                return fail(err, -EMSGSIZE, "JWT longer than 1 MiB");
        if ((r = split(jwt, len, &dot1, &dot2, err)) < 0 || (r = check_header(jwt, (size_t)(dot1 - jwt), err)) < 0)
                return r;

        if (b64url_decode(dot1 + 1, (size_t)(dot2 - dot1 - 1), &bin, &bin_len) < 0) {
                r = fail(err, -EINVAL, "JWT payload is not base64url");
                goto out;
        }
        payload = parse_object(bin, bin_len);
        free(bin);
        bin = NULL;
        if (!payload) {
                r = fail(err, -EINVAL, "JWT payload is not a JSON object");
                goto out;
        }
        iss = json_string_value(json_object_get(payload, "iss"));
        if (!iss || nkey_public_type(iss) < 0) {
                r = fail(err, -EINVAL, "JWT iss is missing or not a public nkey");
                goto out;
        }
        if ((r = check_signature(jwt, len, dot2, iss, err)) < 0)
                goto out;
        *claims = payload;
        payload = NULL;
        r = 0;
out:
        free(bin);
        json_decref(payload);
        return r;
}

static json_t *claims_new(const char *sub, const char *name) {
        json_t *c = json_object();
        if (name)
                json_object_set_new(c, "name", json_string(name));
        json_object_set_new(c, "sub", json_string(sub));
        return c;
}

json_t *jwt_account_claims_new(const char *account_pub, const char *name) {
        /* Omitted NATS limits mean 0, not unlimited, to nats-server. */
        const json_int_t unlimited = -1;
        json_t *c = claims_new(account_pub, name);
        json_t *nats = json_pack("{s:{s:I,s:I,s:I,s:I,s:I,s:b,s:I,s:I},s:{s:{},s:{}},s:s,s:i}",
                                 "limits", "subs", unlimited, "data", unlimited, "payload", unlimited,
                                 "imports", unlimited, "exports", unlimited, "wildcards", 1,
                                 "conn", unlimited, "leaf", unlimited,
                                 "default_permissions", "pub", "sub",
                                 "type", "account", "version", 2);
        json_object_set_new(c, "nats", nats);
        return c;
}

json_t *jwt_user_claims_new(const char *user_pub, const char *name, const char *issuer_account) {
        const json_int_t unlimited = -1;
        json_t *c = claims_new(user_pub, name);
        json_t *nats = json_pack("{s:{},s:{},s:I,s:I,s:I}", "pub", "sub", "subs", unlimited,
                                 "data", unlimited, "payload", unlimited);
        if (issuer_account)
                json_object_set_new(nats, "issuer_account", json_string(issuer_account));
        json_object_set_new(nats, "type", json_string("user"));
        json_object_set_new(nats, "version", json_integer(2));
        json_object_set_new(c, "nats", nats);
        return c;
}

json_t *jwt_operator_claims_new(const char *operator_pub, const char *name,
                                const char *const *signing_keys, size_t n_signing_keys,
                                const char *system_account) {
        json_t *c = claims_new(operator_pub, name);
        json_t *nats = json_object();
        if (n_signing_keys > 0) {
                json_t *keys = json_array();
                for (size_t i = 0; i < n_signing_keys; i++)
                        json_array_append_new(keys, json_string(signing_keys[i]));
                json_object_set_new(nats, "signing_keys", keys);
        }
        if (system_account)
                json_object_set_new(nats, "system_account", json_string(system_account));
        json_object_set_new(nats, "type", json_string("operator"));
        json_object_set_new(nats, "version", json_integer(2));
        json_object_set_new(c, "nats", nats);
        return c;
}

static const char creds_jwt_begin[] = "-----BEGIN NATS USER JWT-----\n";
static const char creds_jwt_end[] =
        "\n------END NATS USER JWT------\n"
        "\n"
        "************************* IMPORTANT *************************\n"
        "NKEY Seed printed below can be used to sign and prove identity.\n"
        "NKEYs are sensitive and should be treated as secrets.\n"
        "\n"
        "-----BEGIN USER NKEY SEED-----\n";
static const char creds_seed_end[] =
        "\n------END USER NKEY SEED------\n"
        "\n"
        "*************************************************************\n";

static bool creds_part_ok(const char *s) {
        if (!s || !*s)
                return false;
        for (; *s; s++)
                if (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')
                        return false;
        return true;
}

char *creds_format(const char *user_jwt, const char *user_seed) {
        if (!creds_part_ok(user_jwt) || !creds_part_ok(user_seed) || strncmp(user_seed, "SU", 2) != 0)
                return NULL;
        /* One exact allocation: no intermediate buffer ever holds the seed. */
        size_t jwt_len = strlen(user_jwt), seed_len = strlen(user_seed);
        size_t len = sizeof(creds_jwt_begin) - 1 + jwt_len + sizeof(creds_jwt_end) - 1 + seed_len
                + sizeof(creds_seed_end) - 1;
        char *out = xmalloc(len + 1), *p = out;
        memcpy(p, creds_jwt_begin, sizeof(creds_jwt_begin) - 1);
        p += sizeof(creds_jwt_begin) - 1;
        memcpy(p, user_jwt, jwt_len);
        p += jwt_len;
        memcpy(p, creds_jwt_end, sizeof(creds_jwt_end) - 1);
        p += sizeof(creds_jwt_end) - 1;
        memcpy(p, user_seed, seed_len);
        p += seed_len;
        memcpy(p, creds_seed_end, sizeof(creds_seed_end) - 1);
        p += sizeof(creds_seed_end) - 1;
        *p = '\0';
        return out;
}

void creds_free(char *creds) {
        if (!creds)
                return;
        sodium_memzero(creds, strlen(creds));
        free(creds);
}
