/* NATS JWT v2: verify and decode, sign and encode, build claims, format .creds. */
#pragma once
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "nkeys.h"

#define JWT_MAX_LEN (1024 * 1024)

/* Split the token, check the header (typ JWT, alg ed25519-nkey), verify the
 * signature against the public key in "iss" and return the payload object in
 * *claims (caller json_decref). Whether iss is trusted, exp and nbf are left
 * to the caller. 0; -EMSGSIZE longer than JWT_MAX_LEN; -EINVAL malformed;
 * -EPROTONOSUPPORT another typ or alg (v1 included); -EBADMSG bad signature.
 * On error *err (if err is not NULL) gets an allocated message that never
 * quotes the token. */
int jwt_decode(const char *jwt, json_t **claims, char **err);
/* The same checks of a token of len bytes (no NUL needed) whose claims the
 * caller decoded itself: header, and the signature against iss. */
int jwt_verify(const char *jwt, size_t len, const char *iss, char **err);

/* Sign claims as nats-io/jwt does: set "iss" to the signer, "iat" to now,
 * nats.version to 2 (when "nats" is an object) and "jti", all in claims itself,
 * then return header.payload.signature (caller frees). NULL when claims has no
 * "sub" string or a ClaimsData field (aud, exp, iat, iss, name, nbf, sub) of
 * the wrong JSON type. */
char *jwt_encode(json_t *claims, const struct nkey *signer);
/* The same with a given iat (seconds since the epoch), e.g. to keep iat
 * rising past a clock step, or for reproducible output. */
char *jwt_encode_at(json_t *claims, const struct nkey *signer, int64_t iat);

/* The jti nats-io/jwt would compute for these claims: base32 without padding
 * of SHA-512/256 over Go's JSON of ClaimsData with jti empty (52 characters,
 * caller frees). NULL on a ClaimsData field of the wrong type. */
char *jwt_claims_id(const json_t *claims);
/* FIPS 180-4 SHA-512/256. */
void jwt_sha512_256(const void *data, size_t len, uint8_t out[32]);

/* Unsigned claims to pass to jwt_encode; name may be NULL. */
/* Account: every NATS limit -1 (unlimited), wildcards true, no JetStream
 * limits (JetStream disabled), empty default permissions. */
json_t *jwt_account_claims_new(const char *account_pub, const char *name);
/* User with no limits and empty permissions; issuer_account is the account's
 * public key when the JWT is signed by one of its signing keys, else NULL. */
json_t *jwt_user_claims_new(const char *user_pub, const char *name, const char *issuer_account);
/* Operator (self-signed) with its signing keys and system account (NULL: none). */
json_t *jwt_operator_claims_new(const char *operator_pub, const char *name,
                                const char *const *signing_keys, size_t n_signing_keys,
                                const char *system_account);

/* The .creds text nats-io/jwt's FormatUserConfig writes; NULL when user_seed is
 * not a user seed ("SU...") or either part is empty or holds whitespace.
 * The result holds the seed: release it with creds_free. */
char *creds_format(const char *user_jwt, const char *user_seed);
/* Zero and free; NULL is fine. */
void creds_free(char *creds);
