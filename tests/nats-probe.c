/* nats-probe: the small NATS client the integration tests drive.
 *
 *   request CREDS URL SUBJECT [PAYLOAD] [TIMEOUT_MS]
 *       One request; prints the reply body. Exit 1 on timeout or no responders.
 *   gather CREDS URL SUBJECT PAYLOAD TIMEOUT_MS [COUNT|until-empty]
 *       One request, every reply on its own line until COUNT replies arrived,
 *       an empty reply ended the stream (until-empty), or the timeout. Prints
 *       "replies N usec T" on stderr. Exit 1 when COUNT or the empty reply did
 *       not come in time, or nothing at all came without either.
 *   publish-acked CREDS URL SUBJECT COUNT
 *       COUNT JetStream publishes as requests; exit 1 unless every one is acked.
 *   resign-add-export SIGNER_SEED_FILE JWT_FILE SUBJECT
 *       Add a stream export SUBJECT to the account JWT, re-sign it with the seed
 *       (iat = old iat + 1) and print it: another tool editing the account.
 *   sign-account SIGNER_SEED_FILE ACCOUNT_KEY|new NAME IAT|now [EXPORT_SUBJECT]
 *       An account JWT as nats-accountd would create it (JetStream off), named
 *       NAME, for ACCOUNT_KEY (or a fresh key), optionally with a stream export,
 *       signed by the seed with the given iat. Prints the account's public key,
 *       then the JWT, each on a line: a forgery when the seed is not trusted.
 *   forge-update-replies CREDS URL SERVER_ID
 *       A hostile responder: answer every $SYS.REQ.ACCOUNT.<key>.CLAIMS.UPDATE
 *       with "jwt updated" in the name of SERVER_ID, until killed. Prints
 *       "ready" once subscribed.
 *   gen-seed operator|account|user
 *       Print a fresh seed.
 *   pubkey-of-seed SEED_FILE
 *       Print the public key of the seed in the (0600) file.
 */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <nats/nats.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "jwt.h"
#include "nkeys.h"
#include "secrets.h"
#include "util.h"

#define DEFAULT_TIMEOUT_MS 2000
#define CONNECT_ATTEMPTS 4

__attribute__((format(printf, 1, 2))) static int fail(const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        fputs("nats-probe: ", stderr);
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
        va_end(ap);
        return 2;
}

static int64_t parse_int(const char *s, int64_t min, int64_t max) {
        char *end = NULL;
        errno = 0;
        long long v = strtoll(s, &end, 10);
        if (errno || !*s || *end || v < min || v > max)
                return -1;
        return v;
}

static uint64_t now_usec(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static bool is_auth_failure(natsStatus st) {
        return st == NATS_CONNECTION_AUTH_FAILED || st == NATS_NOT_PERMITTED;
}

static natsStatus connect_as(const char *creds, const char *url, natsConnection **nc) {
        natsOptions *opts = NULL;
        natsStatus st = natsOptions_Create(&opts);
        if (st == NATS_OK)
                st = natsOptions_SetURL(opts, url);
        if (st == NATS_OK && creds && *creds)
                st = natsOptions_SetUserCredentialsFromFiles(opts, creds, NULL);
        if (st == NATS_OK)
                st = natsOptions_SetTimeout(opts, 2000);
        if (st == NATS_OK)
                st = natsOptions_SetMaxReconnect(opts, 0);
        /* libnats < 3.8.0 drops the nonce signature from CONNECT when its first
         * byte is 0 (nats.c #705): 1 connection in 256 is refused with good
         * credentials. Another attempt signs another nonce. */
        if (st == NATS_OK) {
                int attempt = 0;
                do
                        st = natsConnection_Connect(nc, opts);
                while (is_auth_failure(st) && ++attempt < CONNECT_ATTEMPTS);
        }
        natsOptions_Destroy(opts);
        if (st != NATS_OK)
                fprintf(stderr, "nats-probe: cannot connect to %s: %s (%s)\n", url, natsStatus_GetText(st),
                        nats_GetLastError(NULL));
        return st;
}

static int cmd_request(int argc, char **argv) {
        if (argc < 4 || argc > 6)
                return fail("%s", "usage: request CREDS URL SUBJECT [PAYLOAD] [TIMEOUT_MS]");
        const char *payload = argc > 4 ? argv[4] : "";
        int64_t timeout = argc > 5 ? parse_int(argv[5], 1, 600000) : DEFAULT_TIMEOUT_MS;
        if (timeout < 0)
                return fail("bad timeout '%s'", argv[5]);
        natsConnection *nc = NULL;
        if (connect_as(argv[1], argv[2], &nc) != NATS_OK)
                return 2;
        natsMsg *reply = NULL;
        natsStatus st = natsConnection_Request(&reply, nc, argv[3], payload, (int)strlen(payload), timeout);
        int code = 0;
        if (st == NATS_OK) {
                fwrite(natsMsg_GetData(reply), 1, (size_t)natsMsg_GetDataLength(reply), stdout);
                fputc('\n', stdout);
        } else {
                fprintf(stderr, "nats-probe: request %s: %s\n", argv[3], natsStatus_GetText(st));
                code = (st == NATS_TIMEOUT || st == NATS_NO_RESPONDERS) ? 1 : 2;
        }
        natsMsg_Destroy(reply);
        natsConnection_Destroy(nc);
        return code;
}

static int cmd_gather(int argc, char **argv) {
        if (argc < 6 || argc > 7)
                return fail("%s", "usage: gather CREDS URL SUBJECT PAYLOAD TIMEOUT_MS [COUNT|until-empty]");
        int64_t timeout = parse_int(argv[5], 1, 600000);
        bool until_empty = argc > 6 && strcmp(argv[6], "until-empty") == 0;
        int64_t want = argc > 6 && !until_empty ? parse_int(argv[6], 1, 1000000) : 0;
        if (timeout < 0 || want < 0)
                return fail("bad timeout or count");
        natsConnection *nc = NULL;
        if (connect_as(argv[1], argv[2], &nc) != NATS_OK)
                return 2;
        natsInbox *inbox = NULL;
        natsSubscription *sub = NULL;
        natsStatus st = natsInbox_Create(&inbox);
        if (st == NATS_OK)
                st = natsConnection_SubscribeSync(&sub, nc, inbox);
        if (st == NATS_OK)
                st = natsSubscription_SetPendingLimits(sub, -1, -1);
        uint64_t start = now_usec();
        if (st == NATS_OK)
                st = natsConnection_PublishRequest(nc, argv[3], inbox, argv[4], (int)strlen(argv[4]));
        if (st == NATS_OK)
                st = natsConnection_Flush(nc);
        if (st != NATS_OK) {
                fprintf(stderr, "nats-probe: gather %s: %s\n", argv[3], natsStatus_GetText(st));
                natsSubscription_Destroy(sub);
                natsInbox_Destroy(inbox);
                natsConnection_Destroy(nc);
                return 2;
        }
        uint64_t deadline = start + (uint64_t)timeout * 1000u;
        int64_t got = 0;
        bool ended = false;
        for (;;) {
                uint64_t now = now_usec();
                if (now >= deadline)
                        break;
                natsMsg *m = NULL;
                int64_t left_ms = (int64_t)((deadline - now + 999) / 1000);
                st = natsSubscription_NextMsg(&m, sub, left_ms);
                if (st == NATS_TIMEOUT)
                        break;
                if (st != NATS_OK) {
                        fprintf(stderr, "nats-probe: gather %s: %s\n", argv[3], natsStatus_GetText(st));
                        break;
                }
                int len = natsMsg_GetDataLength(m);
                if (len == 0 && until_empty) {
                        natsMsg_Destroy(m);
                        ended = true;
                        break;
                }
                fwrite(natsMsg_GetData(m), 1, (size_t)len, stdout);
                fputc('\n', stdout);
                natsMsg_Destroy(m);
                got++;
                if (want && got >= want) {
                        ended = true;
                        break;
                }
        }
        fprintf(stderr, "replies %" PRId64 " usec %" PRIu64 "\n", got, now_usec() - start);
        natsSubscription_Destroy(sub);
        natsInbox_Destroy(inbox);
        natsConnection_Destroy(nc);
        if (until_empty || want)
                return ended ? 0 : 1;
        return got ? 0 : 1;
}

static int cmd_publish_acked(int argc, char **argv) {
        if (argc != 5)
                return fail("%s", "usage: publish-acked CREDS URL SUBJECT COUNT");
        int64_t count = parse_int(argv[4], 1, 10000000);
        if (count < 0)
                return fail("bad count '%s'", argv[4]);
        natsConnection *nc = NULL;
        if (connect_as(argv[1], argv[2], &nc) != NATS_OK)
                return 2;
        int code = 0;
        int64_t last_seq = 0;
        for (int64_t i = 0; i < count && !code; i++) {
                char body[64];
                snprintf(body, sizeof(body), "message %" PRId64, i + 1);
                natsMsg *reply = NULL;
                natsStatus st = natsConnection_RequestString(&reply, nc, argv[3], body, DEFAULT_TIMEOUT_MS);
                if (st != NATS_OK) {
                        fprintf(stderr, "nats-probe: publish %" PRId64 " to %s: %s\n", i + 1, argv[3],
                                natsStatus_GetText(st));
                        code = 1;
                        break;
                }
                json_error_t jerr;
                json_t *ack = json_loadb(natsMsg_GetData(reply), (size_t)natsMsg_GetDataLength(reply), 0, &jerr);
                json_t *seq = json_object_get(ack, "seq");
                if (!json_is_integer(seq) || json_object_get(ack, "error")) {
                        fprintf(stderr, "nats-probe: publish %" PRId64 " to %s not acked: %.*s\n", i + 1, argv[3],
                                natsMsg_GetDataLength(reply), natsMsg_GetData(reply));
                        code = 1;
                } else {
                        last_seq = json_integer_value(seq);
                }
                json_decref(ack);
                natsMsg_Destroy(reply);
        }
        if (!code)
                printf("%" PRId64 " acked, last seq %" PRId64 "\n", count, last_seq);
        natsConnection_Destroy(nc);
        return code;
}

static int read_seed_file(const char *path, struct nkey *k) {
        char *err = NULL;
        if (secret_load_nkey(path, k, &err) < 0) {
                fprintf(stderr, "nats-probe: %s\n", err);
                free(err);
                return -1;
        }
        return 0;
}

static int cmd_resign_add_export(int argc, char **argv) {
        if (argc != 4)
                return fail("%s", "usage: resign-add-export SIGNER_SEED_FILE JWT_FILE SUBJECT");
        struct nkey signer;
        if (read_seed_file(argv[1], &signer) < 0)
                return 2;
        char *text = NULL;
        size_t len = 0;
        int r = file_read_all(argv[2], JWT_MAX_LEN + 16, &text, &len);
        if (r < 0) {
                nkey_wipe(&signer);
                return fail("%s: %s", argv[2], strerror(-r));
        }
        json_t *claims = NULL;
        char *err = NULL;
        r = jwt_decode(str_strip(text), &claims, &err);
        free(text);
        if (r < 0) {
                nkey_wipe(&signer);
                fprintf(stderr, "nats-probe: %s: %s\n", argv[2], err ? err : strerror(-r));
                free(err);
                return 2;
        }
        json_t *nats = json_object_get(claims, "nats");
        json_t *iat = json_object_get(claims, "iat");
        if (!json_is_object(nats) || !json_is_integer(iat)) {
                nkey_wipe(&signer);
                json_decref(claims);
                return fail("%s: not an account JWT (no nats object or iat)", argv[2]);
        }
        json_t *exports = json_object_get(nats, "exports");
        if (!json_is_array(exports)) {
                exports = json_array();
                json_object_set_new(nats, "exports", exports);
        }
        json_array_append_new(exports,
                              json_pack("{s:s, s:s, s:s}", "name", argv[3], "subject", argv[3], "type", "stream"));
        char *jwt = jwt_encode_at(claims, &signer, json_integer_value(iat) + 1);
        nkey_wipe(&signer);
        json_decref(claims);
        if (!jwt)
                return fail("could not sign the edited claims");
        puts(jwt);
        free(jwt);
        return 0;
}

static int cmd_sign_account(int argc, char **argv) {
        if (argc != 5 && argc != 6)
                return fail("%s", "usage: sign-account SIGNER_SEED_FILE ACCOUNT_KEY|new NAME IAT|now [EXPORT_SUBJECT]");
        int64_t iat = strcmp(argv[4], "now") == 0 ? (int64_t)time(NULL) : parse_int(argv[4], 1, INT64_MAX);
        if (iat < 0)
                return fail("bad iat '%s'", argv[4]);
        struct nkey signer, fresh;
        const char *key = argv[2];
        if (strcmp(key, "new") == 0) {
                nkey_generate(NKEY_ACCOUNT, &fresh);
                key = fresh.pub;
                nkey_wipe(&fresh);
        } else if (nkey_public_type(key) != NKEY_ACCOUNT) {
                return fail("'%s' is not an account public key", key);
        }
        if (read_seed_file(argv[1], &signer) < 0)
                return 2;
        json_t *claims = jwt_account_claims_new(key, argv[3]);
        if (argc == 6)
                json_object_set_new(json_object_get(claims, "nats"), "exports",
                                    json_pack("[{s:s, s:s, s:s}]", "name", argv[5], "subject", argv[5], "type",
                                              "stream"));
        char *jwt = jwt_encode_at(claims, &signer, iat);
        nkey_wipe(&signer);
        json_decref(claims);
        if (!jwt)
                return fail("could not sign the claims");
        printf("%s\n%s\n", key, jwt);
        free(jwt);
        return 0;
}

static int cmd_forge_update_replies(int argc, char **argv) {
        if (argc != 4)
                return fail("%s", "usage: forge-update-replies CREDS URL SERVER_ID");
        natsConnection *nc = NULL;
        if (connect_as(argv[1], argv[2], &nc) != NATS_OK)
                return 2;
        natsSubscription *sub = NULL;
        natsStatus st = natsConnection_SubscribeSync(&sub, nc, "$SYS.REQ.ACCOUNT.*.CLAIMS.UPDATE");
        if (st == NATS_OK)
                st = natsConnection_Flush(nc);
        if (st != NATS_OK) {
                natsConnection_Destroy(nc);
                return fail("cannot subscribe: %s", natsStatus_GetText(st));
        }
        puts("ready");
        fflush(stdout);
        for (;;) {
                natsMsg *m = NULL;
                st = natsSubscription_NextMsg(&m, sub, 60000);
                if (st == NATS_TIMEOUT)
                        continue;
                if (st != NATS_OK)
                        break;
                const char *subject = natsMsg_GetSubject(m), *reply = natsMsg_GetReply(m);
                char key[57] = "";
                if (strlen(subject) > 17 + 56)
                        memcpy(key, subject + 17, 56);
                char *body = xasprintf("{\"data\":{\"account\":\"%s\",\"code\":200,\"message\":\"jwt updated\"},"
                                       "\"server\":{\"name\":\"forged\",\"id\":\"%s\"}}",
                                       key, argv[3]);
                if (reply)
                        natsConnection_PublishString(nc, reply, body);
                natsConnection_Flush(nc);
                free(body);
                natsMsg_Destroy(m);
        }
        natsSubscription_Destroy(sub);
        natsConnection_Destroy(nc);
        return 0;
}

static int cmd_gen_seed(int argc, char **argv) {
        static const struct {
                const char *name;
                enum nkey_type type;
        } types[] = { { "operator", NKEY_OPERATOR }, { "account", NKEY_ACCOUNT }, { "user", NKEY_USER } };
        if (argc != 2)
                return fail("%s", "usage: gen-seed operator|account|user");
        for (size_t i = 0; i < ARRAY_SIZE(types); i++) {
                if (strcmp(argv[1], types[i].name) != 0)
                        continue;
                struct nkey k;
                char seed[NKEY_SEED_LEN + 1];
                nkey_generate(types[i].type, &k);
                nkey_seed_encode(&k, seed);
                puts(seed);
                nkey_wipe(&k);
                return 0;
        }
        return fail("unknown key type '%s'", argv[1]);
}

static int cmd_pubkey_of_seed(int argc, char **argv) {
        if (argc != 2)
                return fail("%s", "usage: pubkey-of-seed SEED_FILE");
        struct nkey k;
        if (read_seed_file(argv[1], &k) < 0)
                return 2;
        puts(k.pub);
        nkey_wipe(&k);
        return 0;
}

int main(int argc, char **argv) {
        static const struct {
                const char *name;
                int (*run)(int argc, char **argv);
                bool needs_nats;
        } commands[] = {
                { "request", cmd_request, true },
                { "gather", cmd_gather, true },
                { "publish-acked", cmd_publish_acked, true },
                { "resign-add-export", cmd_resign_add_export, false },
                { "forge-update-replies", cmd_forge_update_replies, true },
                { "sign-account", cmd_sign_account, false },
                { "gen-seed", cmd_gen_seed, false },
                { "pubkey-of-seed", cmd_pubkey_of_seed, false },
        };
        if (argc < 2)
                return fail("%s", "usage: nats-probe request|gather|publish-acked|resign-add-export|gen-seed|"
                                    "pubkey-of-seed ...");
        for (size_t i = 0; i < ARRAY_SIZE(commands); i++) {
                if (strcmp(argv[1], commands[i].name) != 0)
                        continue;
                if (commands[i].needs_nats && nats_Open(-1) != NATS_OK)
                        return fail("cannot initialise the NATS library");
                int code = commands[i].run(argc - 1, argv + 1);
                if (commands[i].needs_nats)
                        nats_Close();
                return code;
        }
        return fail("unknown command '%s'", argv[1]);
}
