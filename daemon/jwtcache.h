/* Account JWTs whose signature is known to be good, by a hash of their bytes:
 * a JWT read from a server whose bytes hash to an entry skips the ed25519
 * check (about 0.1 ms each, most of what reading 100,000 JWTs costs).
 *
 * An entry is one JWT: the BLAKE2b-256 hash of its bytes, its issuer, and
 * whether this daemon signed it (kept in state_dir, see jwt_cache_save) or
 * verified it in this process (kept in memory only). The bytes hold the
 * account's key (sub), so no key is kept beside the hash. Bounded: a sweep
 * keeps only the JWTs the resolver holds (one per account), and the JWT a
 * push replaces is forgotten when its successor is signed.
 *
 * Why a hit is as good as a check: equal hashes mean the same bytes (header,
 * claims and signature) as a JWT this daemon signed with its own key, or whose
 * signature it checked before; ed25519 verification of the same bytes against
 * the same issuer gives the same answer. Whether that issuer is trusted is not
 * the cache's word: an entry is used only while its issuer is trusted by the
 * servers now (jwt_cache_trust), and the caller still checks the issuer of
 * every JWT against the servers' operator and signing keys.
 *
 * Not locked: lookups may run on several threads at once, while nothing
 * changes the cache. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define JWT_CACHE_HASH_LEN 32
#define JWT_CACHE_FILE "signed-jwts"

struct jwt_cache;

/* learn_verified: also keep JWTs verified in this process (the daemon's
 * `run`, whose next sweep reads them again); a one-shot command keeps only
 * what it signed and what it loaded. */
struct jwt_cache *jwt_cache_new(bool learn_verified);
void jwt_cache_free(struct jwt_cache *c);
size_t jwt_cache_count(const struct jwt_cache *c);
bool jwt_cache_learns_verified(const struct jwt_cache *c);

/* BLAKE2b-256 of the JWT's bytes. */
void jwt_cache_hash(const char *jwt, size_t len, uint8_t out[JWT_CACHE_HASH_LEN]);

/* Which issuers' entries may be used from now on: each issuer known to the
 * cache is asked once. Issuers of entries loaded from a file are not trusted
 * until this is called. */
typedef bool (*jwt_cache_trusted_fn)(void *userdata, const char *issuer);
void jwt_cache_trust(struct jwt_cache *c, jwt_cache_trusted_fn trusted, void *userdata);

/* True when a JWT of exactly this hash is known, it names this issuer, and
 * the issuer is trusted now: the JWT's signature is good without checking it. */
bool jwt_cache_known(const struct jwt_cache *c, const char *issuer, const uint8_t hash[JWT_CACHE_HASH_LEN]);

/* Remember the JWT of this hash, issued by issuer, which the caller just
 * found trusted by the servers: signed_here when this daemon signed it, else
 * verified (ignored unless learn_verified). One signed here stays marked so
 * when it is verified again. */
void jwt_cache_add(struct jwt_cache *c, const char *issuer, const uint8_t hash[JWT_CACHE_HASH_LEN], bool signed_here);
/* Forget the JWT of this hash (one a push replaces). */
void jwt_cache_forget(struct jwt_cache *c, const uint8_t hash[JWT_CACHE_HASH_LEN]);

/* A whole observation (every JWT the resolver holds): an entry is kept only
 * when the resolver holds that very JWT and it is trusted (its signature
 * good, its issuer trusted); trusted JWTs without an entry join as verified
 * (learn_verified). The others are dropped. */
struct jwt_cache_seen {
        const char *issuer;
        const uint8_t *hash;
        bool trusted;
};
void jwt_cache_sweep(struct jwt_cache *c, const struct jwt_cache_seen *v, size_t n);

/* <dir>/signed-jwts: the entries this daemon signed, whose issuer is trusted.
 * load: 0 (a missing file or folder is an empty cache); a file that is not
 * exactly one this daemon wrote (garbled, truncated, altered, not a regular
 * file, owned by another user than this one, the folder's owner or root,
 * open to group or others, in a folder open to them) is ignored as a whole with *warning naming it and why; the cache is
 * then empty. The next save replaces it. */
int jwt_cache_load(struct jwt_cache *c, const char *dir, char **warning);
/* Written when something changed since the last load or save (atomically,
 * mode 0600, synced). 0 or negative errno with *err. */
int jwt_cache_save(struct jwt_cache *c, const char *dir, char **err);
/* The file's text of the cache as jwt_cache_save would write it (for tests). */
char *jwt_cache_format(const struct jwt_cache *c, size_t *len);
/* Parse text as jwt_cache_load does (no file checks); 0 or -EBADMSG with *why. */
int jwt_cache_parse(struct jwt_cache *c, const char *text, size_t len, char **why);
