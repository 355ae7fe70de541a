#include "nkeys.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "util.h"

#define NKEY_SEED_PREFIX (18 << 3) /* 'S' */
#define PUBLIC_RAW_LEN (1 + 32 + 2)
#define SEED_RAW_LEN (2 + 32 + 2)

static const char base32_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/* sodium_init() is thread-safe and idempotent on its own; the flag only spares
 * the call once it has succeeded. */
static atomic_bool sodium_ready;

static void sodium_ensure(void) {
        if (atomic_load_explicit(&sodium_ready, memory_order_acquire))
                return;
        if (sodium_init() < 0) {
                fputs("nats-accountd: libsodium failed to initialise\n", stderr);
                abort();
        }
        atomic_store_explicit(&sodium_ready, true, memory_order_release);
}

/* *why must be a string that outlives the call, without allocating or keeping
 * per-call state, so the length messages come from constant tables. */
#define GOT(want, n) "expected " #want " characters, got " #n
#define GOT_TENS(want, t) \
        GOT(want, t##0), GOT(want, t##1), GOT(want, t##2), GOT(want, t##3), GOT(want, t##4), \
        GOT(want, t##5), GOT(want, t##6), GOT(want, t##7), GOT(want, t##8), GOT(want, t##9)
#define GOT_TABLE(want) { \
        GOT(want, 0), GOT(want, 1), GOT(want, 2), GOT(want, 3), GOT(want, 4), \
        GOT(want, 5), GOT(want, 6), GOT(want, 7), GOT(want, 8), GOT(want, 9), \
        GOT_TENS(want, 1), GOT_TENS(want, 2), GOT_TENS(want, 3), GOT_TENS(want, 4), \
        GOT_TENS(want, 5), GOT_TENS(want, 6), GOT_TENS(want, 7), GOT_TENS(want, 8), \
        GOT_TENS(want, 9), GOT(want, more than 99) }

static const char *const public_len_why[] = GOT_TABLE(NKEY_PUBLIC_LEN);
static const char *const seed_len_why[] = GOT_TABLE(NKEY_SEED_LEN);
_Static_assert(ARRAY_SIZE(public_len_why) == 101 && ARRAY_SIZE(seed_len_why) == 101,
               "length tables hold 0..99 and one entry for more");

static const char *len_why(const char *const *table, size_t n) {
        return table[n < 100 ? n : 100];
}

/* Public key types in the order of the mismatch table below. */
static const enum nkey_type known_types[] = {
        NKEY_OPERATOR, NKEY_ACCOUNT, NKEY_USER, NKEY_SERVER, NKEY_CLUSTER,
};
#define FOUND_SEED ARRAY_SIZE(known_types)

static int type_index(unsigned prefix) {
        for (size_t i = 0; i < ARRAY_SIZE(known_types); i++)
                if ((unsigned)known_types[i] == prefix)
                        return (int)i;
        return -1;
}

/* Every (found, wanted) pair as one constant string, for the same reason as
 * the length tables. */
#define MISMATCH_ROW(found)                                                                      \
        { found ", not an operator key", found ", not an account key", found ", not a user key", \
          found ", not a server key", found ", not a cluster key" }
static const char *const mismatch_why[FOUND_SEED + 1][ARRAY_SIZE(known_types)] = {
        MISMATCH_ROW("this is an operator key"), MISMATCH_ROW("this is an account key"),
        MISMATCH_ROW("this is a user key"),      MISMATCH_ROW("this is a server key"),
        MISMATCH_ROW("this is a cluster key"),   MISMATCH_ROW("this is a seed"),
};

uint16_t nkey_crc16(const uint8_t *data, size_t len) {
        uint16_t crc = 0;
        for (size_t i = 0; i < len; i++) {
                crc ^= (uint16_t)(data[i] << 8);
                for (int bit = 0; bit < 8; bit++)
                        crc = (crc & 0x8000) ? (uint16_t)((crc << 1) ^ 0x1021) : (uint16_t)(crc << 1);
        }
        return crc;
}

size_t nkey_base32_encode(const uint8_t *in, size_t len, char *out) {
        size_t n = 0;
        unsigned acc = 0;
        int bits = 0;
        for (size_t i = 0; i < len; i++) {
                acc = (acc << 8) | in[i];
                bits += 8;
                while (bits >= 5) {
                        bits -= 5;
                        out[n++] = base32_alphabet[(acc >> bits) & 31];
                }
        }
        if (bits > 0)
                out[n++] = base32_alphabet[(acc << (5 - bits)) & 31];
        out[n] = '\0';
        return n;
}

static int base32_value(char c) {
        if (c >= 'A' && c <= 'Z')
                return c - 'A';
        if (c >= '2' && c <= '7')
                return c - '2' + 26;
        return -1;
}

int nkey_base32_decode(const char *in, size_t len, uint8_t *out, size_t cap) {
        size_t n = 0;
        unsigned acc = 0;
        int bits = 0;
        /* The result is an int. */
        if (cap > INT32_MAX)
                cap = INT32_MAX;
        for (size_t i = 0; i < len; i++) {
                int v = base32_value(in[i]);
                if (v < 0)
                        return -1;
                acc = (acc << 5) | (unsigned)v;
                bits += 5;
                if (bits >= 8) {
                        bits -= 8;
                        if (n >= cap)
                                return -1;
                        out[n++] = (uint8_t)(acc >> bits);
                }
        }
        /* Five or more bits left over means 1, 3 or 6 trailing characters,
         * which no encoder produces; Go's decoder refuses them too. */
        if (bits >= 5)
                return -1;
        return (int)n;
}

static bool crc_ok(const uint8_t *raw, size_t len) {
        uint16_t crc = nkey_crc16(raw, len - 2);
        return raw[len - 2] == (crc & 0xff) && raw[len - 1] == (crc >> 8);
}

static void crc_put(uint8_t *raw, size_t len) {
        uint16_t crc = nkey_crc16(raw, len - 2);
        raw[len - 2] = (uint8_t)(crc & 0xff);
        raw[len - 1] = (uint8_t)(crc >> 8);
}

/* A syntactically valid seed of any known type; used to say "this is a seed"
 * instead of a bare length error when one is pasted where a public key goes. */
static bool looks_like_seed(const char *s, size_t len) {
        uint8_t raw[SEED_RAW_LEN];
        bool ok = len == NKEY_SEED_LEN
                && nkey_base32_decode(s, len, raw, sizeof(raw)) == SEED_RAW_LEN
                && crc_ok(raw, sizeof(raw))
                && (raw[0] & 0xf8) == NKEY_SEED_PREFIX;
        sodium_memzero(raw, sizeof(raw));
        return ok;
}

/* 0 with *found set to the index in known_types; -EPROTOTYPE with *found =
 * FOUND_SEED for a seed; other negative errno with *why. */
static int public_decode_any(const char *pub, size_t *found, uint8_t key[32], const char **why) {
        size_t len = pub ? strlen(pub) : 0;
        uint8_t raw[PUBLIC_RAW_LEN];

        if (len != NKEY_PUBLIC_LEN) {
                if (looks_like_seed(pub, len)) {
                        *found = FOUND_SEED;
                        *why = "this is a seed";
                        return -EPROTOTYPE;
                }
                *why = len_why(public_len_why, len);
                return -EINVAL;
        }
        if (nkey_base32_decode(pub, len, raw, sizeof(raw)) != PUBLIC_RAW_LEN) {
                *why = "not base32";
                return -EINVAL;
        }
        if (!crc_ok(raw, sizeof(raw))) {
                *why = "checksum mismatch";
                return -EBADMSG;
        }
        int i = type_index(raw[0]);
        if (i < 0) {
                *why = "not a public key of a known type";
                return -EINVAL;
        }
        *found = (size_t)i;
        if (key)
                memcpy(key, raw + 1, 32);
        return 0;
}

int nkey_public_decode(const char *pub, enum nkey_type want, uint8_t raw[32], const char **why) {
        const char *unused;
        size_t found = 0;
        uint8_t key[32];

        if (!why)
                why = &unused;
        int want_index = type_index((unsigned)want);
        if (want_index < 0) {
                *why = "not a public key type";
                return -EINVAL;
        }
        int r = public_decode_any(pub, &found, key, why);
        if (r == -EPROTOTYPE || (r == 0 && found != (size_t)want_index)) {
                *why = mismatch_why[found][want_index];
                return -EPROTOTYPE;
        }
        if (r < 0)
                return r;
        if (raw)
                memcpy(raw, key, 32);
        return 0;
}

int nkey_public_type(const char *pub) {
        const char *why;
        size_t found;
        if (public_decode_any(pub, &found, NULL, &why) < 0)
                return -1;
        return (int)known_types[found];
}

static void key_from_raw_seed(enum nkey_type type, const uint8_t seed[32], struct nkey *out) {
        uint8_t raw[PUBLIC_RAW_LEN];

        sodium_ensure();
        out->type = type;
        memcpy(out->seed, seed, 32);
        crypto_sign_seed_keypair(out->pk, out->sk, out->seed);
        raw[0] = (uint8_t)type;
        memcpy(raw + 1, out->pk, 32);
        crc_put(raw, sizeof(raw));
        nkey_base32_encode(raw, sizeof(raw), out->pub);
}

int nkey_from_seed(const char *seed, struct nkey *out, const char **why) {
        const char *unused;
        size_t len = seed ? strlen(seed) : 0;
        uint8_t raw[SEED_RAW_LEN];
        int r = 0;

        if (!why)
                why = &unused;
        if (len != NKEY_SEED_LEN) {
                *why = len_why(seed_len_why, len);
                return -EINVAL;
        }
        if (nkey_base32_decode(seed, len, raw, sizeof(raw)) != SEED_RAW_LEN) {
                *why = "not base32";
                r = -EINVAL;
                goto out;
        }
        if (!crc_ok(raw, sizeof(raw))) {
                *why = "checksum mismatch";
                r = -EBADMSG;
                goto out;
        }
        if ((raw[0] & 0xf8) != NKEY_SEED_PREFIX) {
                *why = "not a seed (seeds start with S)";
                r = -EINVAL;
                goto out;
        }
        /* The type is split over two bytes; Go's nkeys ignores the low three
         * bits of the second byte, so this does too. */
        unsigned prefix = ((raw[0] & 7u) << 5) | ((raw[1] & 0xf8u) >> 3);
        int t = type_index(prefix);
        if (t < 0) {
                *why = "seed of an unknown key type";
                r = -EINVAL;
                goto out;
        }
        key_from_raw_seed(known_types[t], raw + 2, out);
out:
        sodium_memzero(raw, sizeof(raw));
        return r;
}

void nkey_generate(enum nkey_type type, struct nkey *out) {
        uint8_t seed[32];

        sodium_ensure();
        randombytes_buf(seed, sizeof(seed));
        key_from_raw_seed(type, seed, out);
        sodium_memzero(seed, sizeof(seed));
}

void nkey_seed_encode(const struct nkey *k, char out[NKEY_SEED_LEN + 1]) {
        uint8_t raw[SEED_RAW_LEN];
        unsigned type = (unsigned)k->type;

        raw[0] = (uint8_t)(NKEY_SEED_PREFIX | (type >> 5));
        raw[1] = (uint8_t)((type & 31) << 3);
        memcpy(raw + 2, k->seed, 32);
        crc_put(raw, sizeof(raw));
        nkey_base32_encode(raw, sizeof(raw), out);
        sodium_memzero(raw, sizeof(raw));
}

void nkey_sign(const struct nkey *k, const void *msg, size_t len, uint8_t sig[64]) {
        sodium_ensure();
        crypto_sign_detached(sig, NULL, msg, len, k->sk);
}

bool nkey_verify(const char *pub, const void *msg, size_t len, const uint8_t sig[64]) {
        const char *why;
        size_t found;
        uint8_t key[32];

        if (public_decode_any(pub, &found, key, &why) < 0)
                return false;
        sodium_ensure();
        return crypto_sign_verify_detached(sig, msg, len, key) == 0;
}

void nkey_wipe(struct nkey *k) {
        if (!k)
                return;
        sodium_memzero(k->seed, sizeof(k->seed));
        sodium_memzero(k->sk, sizeof(k->sk));
}

void nkey_move(struct nkey *dst, struct nkey *src) {
        nkey_wipe(dst);
        *dst = *src;
        nkey_wipe(src);
}
