/* Observe: what the servers hold and have applied, read through the system account. */
#pragma once
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "accounts.h"
#include "acctlimits.h"
#include "jslimits.h"
#include "jwtcache.h"
#include "natsconn.h"
#include "nkeys.h"

/* What an account's streams hold, by the JetStream tier they count against
 * (R1..R5 by their replicas): every replica's bytes, summed over the servers. */
struct tier_usage {
        int64_t memory[JS_TIERS], storage[JS_TIERS];
};

/* One server's view of one account ($SYS.REQ.ACCOUNT.<key>.INFO, optionally .JSZ). */
struct server_account_state {
        char server_id[NKEY_PUBLIC_LEN + 1];
        bool loaded;            /* INFO answered with data (not "does not exist") */
        bool complete;          /* INFO complete */
        bool jetstream_enabled; /* INFO jetstream_enabled: applied */
        int64_t update_time_iat; /* iat of the JWT the server applied (decoded_jwt.iat), 0 unknown */
        bool have_usage;        /* JSZ answered */
        int64_t memory, storage; /* JSZ usage in bytes */
        int32_t connections, leafnodes; /* INFO: the account's client and leaf node connections to this server */
        int32_t max_subs;       /* CONNZ: subscriptions of the account's connection to this server with the most */
        bool have_subs;         /* CONNZ answered */
        bool have_tier_usage;   /* JSZ with streams answered: its bytes are in the account's tier_usage */
        /* JSZ reserved_memory / reserved_storage: the max_mem / max_file the
         * server applies to the account (-1 unlimited; 0 when tiered). */
        bool have_reserved;
        int64_t reserved_memory, reserved_storage;
        char *error;            /* INFO/JSZ error text other than "does not exist", else NULL */
};

struct observed_account {
        char key[NKEY_PUBLIC_LEN + 1];
        char *name;    /* JWT name claim (may be NULL) */
        char *jwt;     /* as the resolver holds it */
        /* The JetStream limits its claims hold. The decoded claims themselves
         * are not kept (a few KiB each, most of the daemon's memory with
         * 10,000 accounts): observed_account_claims decodes them again for
         * the few accounts that are pushed. */
        struct js_state js;
        struct acct_state acct; /* and the other account limits */
        int64_t iat;
        char issuer[NKEY_PUBLIC_LEN + 1];
        /* Why its JWT must not be used (its signature does not verify, its
         * issuer is not the operator or one of its signing keys, it was issued
         * in the future), NULL when it is verified. An untrusted JWT is never
         * re-signed nor matched by name. */
        char *untrusted;
        /* Servers whose CLAIMS.LOOKUP returned exactly this JWT (0: not looked
         * up; CLAIMS.PACK comes from one server only). */
        size_t holders;
        /* Filled by observe_accounts_state for the accounts asked. */
        struct server_account_state *servers;
        size_t n_servers;
        /* Filled by observe_accounts_tier_usage for the few accounts asked; else NULL. */
        struct tier_usage *tier_usage;
};

struct server_info {
        char id[NKEY_PUBLIC_LEN + 1];
        char *name;
        char *version;
        bool jetstream; /* JetStream enabled on this server */
        char *operator_key;         /* sub of trusted_operators_claim */
        char **trusted_keys;        /* operator key + its signing keys, NULL-terminated */
        char *system_account;
        /* No routes, gateways or leaf nodes configured: no other server can
         * hear what is sent to this one. */
        bool alone;
        /* VARZ config_load_time: when the server last read its config file
         * (start or reload), in nanoseconds since the epoch; 0 when not sent. */
        int64_t config_load_ns;
};

/* A CLAIMS.PACK entry whose key is an account key but whose JWT is not one
 * (a server killed while writing it leaves 0 bytes): that server's copy is
 * damaged. It is not an account of the observation; every server is asked for
 * that key, and an account this daemon created is pushed whole again. */
struct observed_damaged {
        char key[NKEY_PUBLIC_LEN + 1];
        char *why;
};

struct observed {
        struct server_info *servers;
        size_t n_servers;
        struct observed_account *accounts; /* every JWT of CLAIMS.PACK, sorted by key */
        size_t n_accounts;
        /* name -> indexes into accounts (sorted by name, then key), for lookups by name */
        size_t *by_name;
        uint64_t pack_usec; /* time CLAIMS.PACK took */
        struct observed_damaged *damaged; /* CLAIMS.PACK entries that are not JWTs */
        size_t n_damaged;
        /* JWTs whose signature is known good by a hash of their bytes
         * (jwtcache.h): CLAIMS.PACK and CLAIMS.LOOKUP check no signature of
         * a JWT found there, and add the JWTs they find trusted. NULL: every
         * signature is checked. The caller's; not freed with o. */
        struct jwt_cache *known;
        /* Signatures of account JWTs checked, and those found in known. */
        size_t sigs_checked, sigs_known;
};

/* A JWT issued later than this many seconds after this host's clock is refused. */
#define OBSERVE_FUTURE_SKEW_SEC 300

/* The servers (observe_servers) and every account JWT (CLAIMS.PACK), each
 * verified (observed_vet; known: see struct observed). expected_jwts: about how many JWTs the resolver
 * holds (the accounts declared, the last PACK's count), for the wait for the
 * PACK's first message (observe_pack_wait_usec). 0, or negative errno with
 * *err set. */
int observe_all(struct natsconn *c, size_t expected_jwts, struct jwt_cache *known, struct observed **out,
                char **err);
/* How long the first message of a CLAIMS.PACK of about expected_jwts JWTs is
 * awaited: a server reads its whole store before it sends anything (and
 * answers nothing else on that connection meanwhile), so this grows with the
 * store from max(request_timeout, 10 s), by 0.5 ms a JWT; at most 10 minutes. */
uint64_t observe_pack_wait_usec(uint64_t request_timeout_usec, size_t expected_jwts);
/* The servers of the deployment as they describe themselves, whatever their
 * replies' delays: whoever answers PING.STATSZ, then every server their
 * routes name (in their cluster) and some server of every cluster their
 * gateways name, until all of them answered; then each one's VARZ. -ETIMEDOUT
 * when some server named did not answer within request_timeout (*err names
 * it): no change can then be confirmed by every server. */
int observe_servers(struct natsconn *c, struct server_info **out, size_t *n, char **err);
/* Re-read the listed accounts' JWTs (CLAIMS.LOOKUP) into o, replacing or adding
 * entries, each verified; of different JWTs for one key, a trusted one before
 * an untrusted one, then the newest.
 * Used after an edit touches a few accounts, instead of a whole PACK. A key no
 * server sends a JWT for (an empty reply: not held there; or none within
 * 500 ms) is left as it was in o. Adding entries moves
 * o->accounts: pointers into it are then stale. -EBADMSG when some replies
 * were malformed (the others are applied). */
int observe_lookup(struct natsconn *c, struct observed *o, const char *const *keys, size_t n, char **err);
/* INFO (and JSZ when want_usage) for the given accounts from every server, pipelined
 * (for more than a few accounts: only of those that some server has loaded,
 * as one ACCOUNTZ per server tells; the others are set as INFO would have).
 * Each account's servers[] then has one entry per server (o->servers' order,
 * then any server that answered without being in o->servers); a server that
 * did not answer INFO has error "no reply to INFO". -EBADMSG when some replies
 * were malformed (the states are filled from the others); -ETIMEDOUT when a
 * server stopped answering mid-way (nothing is changed). */
int observe_accounts_state(struct natsconn *c, struct observed *o, struct observed_account *const *accts, size_t n,
                           bool want_usage, char **err);
/* JSZ alone for the given accounts, whose servers[] INFO already filled: adds
 * each server's usage (have_usage, memory, storage) to it. Errors as above. */
int observe_accounts_usage(struct natsconn *c, struct observed *o, struct observed_account *const *accts, size_t n,
                           char **err);
/* CONNZ ($SYS.REQ.ACCOUNT.<key>.CONNZ, the connection with the most
 * subscriptions) from every server, for the given accounts whose servers[]
 * INFO already filled: adds have_subs and max_subs. Errors as above. */
int observe_accounts_subs(struct natsconn *c, struct observed *o, struct observed_account *const *accts, size_t n,
                          char **err);
/* JSZ with every stream and its config from every server, for the given
 * accounts whose servers[] INFO already filled: sets have_tier_usage of the
 * servers that answered and adds the bytes of their streams to the account's
 * tier_usage. Errors as above. */
int observe_accounts_tier_usage(struct natsconn *c, struct observed *o, struct observed_account *const *accts,
                                size_t n, char **err);
/* Some server reports the account loaded with JetStream on: only then can JSZ
 * report any usage (elsewhere it answers "not found" / "not jetstream enabled"). */
bool observed_account_js_loaded(const struct observed_account *a);

/* The account's claims, decoded from its JWT (not signature-checked: the
 * resolver already holds it); caller json_decref. NULL if they cannot be. */
json_t *observed_account_claims(const struct observed_account *a);
struct observed_account *observed_find_key(const struct observed *o, const char *key);
/* All accounts whose name claim equals name: returns how many; *first is the
 * index in o->by_name of the first. */
size_t observed_find_name(const struct observed *o, const char *name, size_t *first);
/* The damaged CLAIMS.PACK entry of key (NULL when there is none). */
const struct observed_damaged *observed_find_damaged(const struct observed *o, const char *key);
/* true when key is the operator or one of its signing keys on every server. */
bool observed_key_trusted(const struct observed *o, const char *key, char **why);
/* Set a->untrusted when its issuer is not trusted by every server of o
 * (observed_key_trusted) or its iat lies more than OBSERVE_FUTURE_SKEW_SEC
 * after now (seconds since the epoch); a signature that did not verify was
 * already noted when it was parsed. observed_vet does every account of o. */
void observed_account_vet(const struct observed *o, struct observed_account *a, int64_t now);
void observed_vet(struct observed *o, int64_t now);
/* The one account named name whose JWT is trusted; NULL when none is or when
 * several are. *n_trusted counts them, *n_untrusted the others of that name. */
struct observed_account *observed_find_trusted_name(const struct observed *o, const char *name, size_t *n_trusted,
                                                    size_t *n_untrusted);
void observed_free(struct observed *o);
