/* Parsers for the system API's replies, apart from observe.c's I/O so that
 * unit tests and fuzzers reach them. Every input is untrusted: sizes are
 * bounded, types checked, and a failure says what was wrong (*why, allocated). */
#pragma once
#include <stddef.h>

#include "observe.h"

#define OBSERVE_REPLY_MAX (64u * 1024 * 1024) /* nats-server's max_payload ceiling: ACCOUNTZ */
/* VARZ, STATSZ, INFO, JSZ describe one server or account: a few KiB, two JWTs
 * (1 MiB at most each) in the worst case. */
#define OBSERVE_STATUS_REPLY_MAX (4u * 1024 * 1024)
#define OBSERVE_JWT_MAX (1024u * 1024)
/* A CLAIMS.UPDATE reply is a small status object: nothing legitimate comes
 * near this. */
#define OBSERVE_UPDATE_REPLY_MAX (64u * 1024)

/* An account JWT as the resolver holds it: claims decoded without checking the
 * signature, sub must equal key, nats.type must be "account". Fills key, name,
 * jwt, js, iat, issuer of out (which must be empty). 0 or -EBADMSG. */
int observe_parse_account_jwt(const char *key, const char *jwt, size_t len, struct observed_account *out,
                              char **why);
/* Accounts looked up one by one (best[0..n), those with a key) merged into o,
 * whose accounts are sorted by key: an account o has takes the new JWT and
 * claims (its per-server state stays), the others are added, and o is
 * reindexed. Each of best is taken (left zeroed). */
void observed_merge(struct observed *o, struct observed_account *best, size_t n);
/* One CLAIMS.PACK message: "<pubkey>|<jwt>" lines ('\n' between them). Appends
 * to *v (n used, cap allocated). 0 or -EBADMSG; nothing is appended on error. */
int observe_parse_pack_msg(const char *data, size_t len, struct observed_account **v, size_t *n, size_t *cap,
                           char **why);
/* The same as the daemon reads CLAIMS.PACK: an entry whose key is an account
 * key but whose JWT cannot be used as one is appended to *dmg (n_dmg; its
 * why allocated) instead of failing the message. */
int observe_parse_pack_msg_damaged(const char *data, size_t len, struct observed_account **v, size_t *n, size_t *cap,
                                   struct observed_damaged **dmg, size_t *n_dmg, char **why);
/* One reply to $SYS.REQ.SERVER.PING.VARZ. 0 or -EBADMSG (out left empty). */
int observe_parse_varz(const char *data, size_t len, struct server_info *out, char **why);
/* One reply to $SYS.REQ.ACCOUNT.<key>.INFO / .JSZ: fills server_id and the
 * fields the reply is about. "does not exist" / "not found" / "not jetstream
 * enabled" are states, not errors; any other error description goes to
 * out->error. 0, or -EBADMSG when the reply is malformed. */
int observe_parse_info(const char *data, size_t len, struct server_account_state *out, char **why);
int observe_parse_jsz(const char *data, size_t len, struct server_account_state *out, char **why);
/* One reply to $SYS.REQ.ACCOUNT.<key>.CONNZ asked for the connection with the
 * most subscriptions: fills server_id, have_subs and max_subs (0 without
 * connections). 0, or -EBADMSG when the reply is malformed. */
int observe_parse_connz(const char *data, size_t len, struct server_account_state *out, char **why);
/* One reply to $SYS.REQ.ACCOUNT.<key>.JSZ asked for its streams with their
 * config: fills server_id, have_tier_usage (also where the account has no
 * JetStream there: no streams) and *usage with the bytes of the streams this
 * server holds. 0, or -EBADMSG when the reply is malformed. */
int observe_parse_jsz_streams(const char *data, size_t len, struct server_account_state *out,
                              struct tier_usage *usage, char **why);

/* One reply to $SYS.REQ.SERVER.PING.STATSZ: the server, its cluster, and the
 * peers it is linked to right now: the servers of its routes (by name; pooled
 * routes name a peer more than once, listed once here) and the clusters of its
 * gateways; active_servers is how many servers it has heard of lately (a
 * killed one stays counted for minutes). 0, or -EBADMSG (out left empty). */
struct server_peers {
        char server_id[NKEY_PUBLIC_LEN + 1];
        char *name;    /* server_name, or the id when the server has none */
        char *cluster; /* NULL: not clustered */
        char **routes; /* peer server names, NULL-terminated */
        size_t n_routes;
        char **gateways; /* cluster names, NULL-terminated */
        size_t n_gateways;
        int64_t active_servers;
};
int observe_parse_statsz(const char *data, size_t len, struct server_peers *out, char **why);
void server_peers_clear(struct server_peers *p);

/* One reply to $SYS.REQ.SERVER.PING.ACCOUNTZ: the server and the accounts it
 * has loaded (those INFO answers for), as a sorted array of account public
 * keys; other names ("$G") are left out. 0, or -EBADMSG (out left empty). */
struct loaded_accounts {
        char server_id[NKEY_PUBLIC_LEN + 1];
        char (*keys)[NKEY_PUBLIC_LEN + 1];
        size_t n;
};
int observe_parse_accountz(const char *data, size_t len, struct loaded_accounts *out, char **why);
bool loaded_accounts_has(const struct loaded_accounts *l, const char *key);
void loaded_accounts_clear(struct loaded_accounts *l);

/* One reply to $SYS.REQ.ACCOUNT.<key>.CLAIMS.UPDATE: which server answered,
 * about which account, and whether it stored the JWT ({"data":{"account",
 * "code":200,...}}) or refused it ({"error":{"account","code","description"}}).
 * account is "" when the server did not name one ("n/a"). 0, or -EBADMSG. */
struct update_reply {
        char server_id[NKEY_PUBLIC_LEN + 1];
        char *server_name; /* may be NULL */
        char account[NKEY_PUBLIC_LEN + 1];
        bool ok;
        char *error; /* the server's description when !ok */
};
int observe_parse_update_reply(const char *data, size_t len, struct update_reply *out, char **why);
void update_reply_clear(struct update_reply *r);

void observed_account_clear(struct observed_account *a);
void server_info_clear(struct server_info *s);
/* Sort accounts by key (of two JWTs for one key the later iat stays) and
 * rebuild by_name. */
void observed_reindex(struct observed *o);
