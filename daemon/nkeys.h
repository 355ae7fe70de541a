/* NATS nkeys: ed25519 keys with a type prefix, base32 and a CRC-16. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum nkey_type {
        NKEY_OPERATOR = 14 << 3, /* 'O' */
        NKEY_ACCOUNT = 0,        /* 'A' */
        NKEY_USER = 20 << 3,     /* 'U' */
        NKEY_SERVER = 13 << 3,   /* 'N' */
        NKEY_CLUSTER = 2 << 3,   /* 'C' */
};

#define NKEY_PUBLIC_LEN 56 /* characters, without NUL */
#define NKEY_SEED_LEN 58

struct nkey {
        enum nkey_type type;
        uint8_t seed[32];
        uint8_t sk[64]; /* libsodium secret key (seed || public) */
        uint8_t pk[32];
        char pub[NKEY_PUBLIC_LEN + 1];
};

/* CRC-16/XMODEM as nkeys use it. */
uint16_t nkey_crc16(const uint8_t *data, size_t len);
/* RFC 4648 base32 without padding; out must hold len*8/5+2 bytes. */
size_t nkey_base32_encode(const uint8_t *in, size_t len, char *out);
/* Returns decoded length or -1 on a character outside the alphabet. */
int nkey_base32_decode(const char *in, size_t len, uint8_t *out, size_t cap);

/* Validate a public key of the given type and return its raw 32 bytes (raw may be NULL).
 * 0; -EINVAL wrong length or not base32; -EBADMSG checksum mismatch;
 * -EPROTOTYPE valid key of another type (a seed included). *why explains. */
int nkey_public_decode(const char *pub, enum nkey_type want, uint8_t raw[32], const char **why);
/* Type of a syntactically valid public key, or -1. */
int nkey_public_type(const char *pub);

/* Parse a seed ("S" + type letter). 0 or -EINVAL/-EBADMSG with *why. */
int nkey_from_seed(const char *seed, struct nkey *out, const char **why);
/* A fresh random key of the given type. */
void nkey_generate(enum nkey_type type, struct nkey *out);
/* Encode the seed; out holds NKEY_SEED_LEN+1. Caller wipes it. */
void nkey_seed_encode(const struct nkey *k, char out[NKEY_SEED_LEN + 1]);
void nkey_sign(const struct nkey *k, const void *msg, size_t len, uint8_t sig[64]);
bool nkey_verify(const char *pub, const void *msg, size_t len, const uint8_t sig[64]);
/* Zero the secret parts. */
void nkey_wipe(struct nkey *k);
/* Replace *dst (wiped first) with *src, then wipe *src: a key changes hands
 * without a copy of its secret left behind. */
void nkey_move(struct nkey *dst, struct nkey *src);
