/* accountd-bench: the helpers bench/run.py times nats-accountd against.
 *
 *   sign SIGNER_SEED_FILE N PREFIX MAX_MEMORY STORE[,STORE...] OUT_BASE
 *       N fresh account keys named PREFIX00000...; for each STORE value one
 *       file OUT_BASE.<i> of "<pubkey> <jwt>" lines: the account JWT nats-accountd
 *       would push for that account (JetStream max_memory, max_store = STORE,
 *       max_streams 10), signed by the seed, iat rising by one per file.
 *       Not timed: this is the "pre-signed" part of the ceiling.
 *   ceiling CREDS URL JWT_FILE [--serial | [--window W] [--replies R]]
 *       On one connection: one $SYS.REQ.CLAIMS.PACK (until its empty message),
 *       then every JWT of the file on $SYS.REQ.ACCOUNT.<key>.CLAIMS.UPDATE,
 *       published back to back with every reply gathered on one inbox
 *       (--window W: never more than W unanswered; --serial: one request at a
 *       time, as nsc does; --replies R: a push is answered once R replies came,
 *       one per server of an R-server cluster). Prints one JSON line:
 *       pack_usec, pack_first_usec (its first message), pack_jwts, push_usec,
 *       pushed, ok (replies saying "jwt updated": pushed x R when all did).
 *   pack CREDS URL
 *       One CLAIMS.PACK alone; prints {"pack_usec":..,"pack_first_usec":..,
 *       "pack_jwts":..}.
 *   parse-diff ACCOUNTS_FILE
 *       accounts_load, then plan_compute against an empty observed state (every
 *       account to create), no server; prints parse_usec, diff_usec, accounts,
 *       max_rss_kib (peak resident memory of this process).
 *
 * Exit 0, 1 when a push was refused or a reply is missing, 2 on usage or
 * connection errors.
 */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <nats/nats.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "accounts.h"
#include "diff.h"
#include "jslimits.h"
#include "jwt.h"
#include "nkeys.h"
#include "observe.h"
#include "secrets.h"
#include "util.h"

#define TIMEOUT_MS 10000
/* A server reads its whole store before it sends the first JWT of a PACK:
 * about 20 s for 100,000 accounts on a busy host. */
#define PACK_TIMEOUT_MS 600000
#define CONNECT_ATTEMPTS 4

__attribute__((format(printf, 1, 2))) static int fail(const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        fputs("accountd-bench: ", stderr);
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
        va_end(ap);
        return 2;
}

static uint64_t now_usec(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static int64_t parse_int(const char *s) {
        char *end = NULL;
        errno = 0;
        long long v = strtoll(s, &end, 10);
        if (errno || !*s || *end)
                return INT64_MIN;
        return v;
}

static natsStatus connect_as(const char *creds, const char *url, natsConnection **nc) {
        natsOptions *opts = NULL;
        natsStatus st = natsOptions_Create(&opts);
        if (st == NATS_OK)
                st = natsOptions_SetURL(opts, url);
        if (st == NATS_OK)
                st = natsOptions_SetUserCredentialsFromFiles(opts, creds, NULL);
        if (st == NATS_OK)
                st = natsOptions_SetTimeout(opts, 2000);
        if (st == NATS_OK)
                st = natsOptions_SetMaxReconnect(opts, 0);
        /* libnats < 3.8.0 drops the nonce signature when its first byte is 0
         * (nats.c #705): try again with another nonce. */
        if (st == NATS_OK) {
                int attempt = 0;
                do
                        st = natsConnection_Connect(nc, opts);
                while ((st == NATS_CONNECTION_AUTH_FAILED || st == NATS_NOT_PERMITTED) && ++attempt < CONNECT_ATTEMPTS);
        }
        natsOptions_Destroy(opts);
        if (st != NATS_OK)
                fprintf(stderr, "accountd-bench: cannot connect to %s: %s\n", url, natsStatus_GetText(st));
        return st;
}

/* ---- sign ---- */

static int read_signer(const char *path, struct nkey *k) {
        char *err = NULL;
        if (secret_load_nkey(path, k, &err) < 0) {
                fprintf(stderr, "accountd-bench: %s\n", err);
                free(err);
                return -1;
        }
        return 0;
}

static int cmd_sign(int argc, char **argv) {
        if (argc != 7)
                return fail("%s", "usage: sign SIGNER_SEED_FILE N PREFIX MAX_MEMORY STORE[,STORE...] OUT_BASE");
        int64_t n = parse_int(argv[2]), mem = parse_int(argv[4]);
        if (n < 1 || n > 1000000 || mem < 1)
                return fail("bad N or MAX_MEMORY");
        struct nkey signer;
        if (read_signer(argv[1], &signer) < 0)
                return 2;
        int64_t stores[16];
        size_t n_stores = 0;
        char *list = xstrdup(argv[5]);
        for (char *save = NULL, *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
                if (n_stores == ARRAY_SIZE(stores) || (stores[n_stores++] = parse_int(tok)) < 1) {
                        free(list);
                        nkey_wipe(&signer);
                        return fail("bad STORE list '%s'", argv[5]);
                }
        }
        free(list);
        FILE **out = xcalloc(n_stores, sizeof(*out));
        for (size_t s = 0; s < n_stores; s++) {
                char *path = xasprintf("%s.%zu", argv[6], s);
                out[s] = fopen(path, "w");
                if (!out[s]) {
                        int code = fail("cannot write %s: %s", path, strerror(errno));
                        free(path);
                        return code;
                }
                free(path);
        }
        int64_t iat = (int64_t)time(NULL);
        struct account_decl decl;
        memset(&decl, 0, sizeof(decl));
        decl.js = JS_ENABLED;
        js_limits_unlimited(&decl.limits);
        decl.limits.max_memory = mem;
        decl.limits.max_streams = 10;
        for (int64_t i = 0; i < n; i++) {
                struct nkey k;
                nkey_generate(NKEY_ACCOUNT, &k);
                snprintf(decl.name, sizeof(decl.name), "%s%05" PRId64, argv[3], i);
                for (size_t s = 0; s < n_stores; s++) {
                        decl.limits.max_store = stores[s];
                        struct js_state st;
                        js_state_from_decl(&decl, &st);
                        json_t *claims = jwt_account_claims_new(k.pub, decl.name);
                        js_state_to_claims(&st, claims);
                        char *jwt = jwt_encode_at(claims, &signer, iat + (int64_t)s);
                        json_decref(claims);
                        if (!jwt)
                                return fail("cannot sign the claims of %s", decl.name);
                        fprintf(out[s], "%s %s\n", k.pub, jwt);
                        free(jwt);
                }
                nkey_wipe(&k);
        }
        nkey_wipe(&signer);
        for (size_t s = 0; s < n_stores; s++)
                if (fclose(out[s]) != 0)
                        return fail("cannot write %s.%zu: %s", argv[6], s, strerror(errno));
        free(out);
        return 0;
}

/* ---- ceiling / pack ---- */

struct push_set {
        char **subjects, **jwts;
        size_t n;
};

static int load_jwts(const char *path, struct push_set *ps) {
        char *text = NULL;
        size_t len = 0;
        int r = file_read_all(path, (size_t)1 << 30, &text, &len);
        if (r < 0)
                return fail("%s: %s", path, strerror(-r));
        size_t cap = 0;
        for (char *save = NULL, *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                char *sp = strchr(line, ' ');
                if (!sp || sp - line != NKEY_PUBLIC_LEN) {
                        free(text);
                        return fail("%s: line %zu is not \"<pubkey> <jwt>\"", path, ps->n + 1);
                }
                *sp = 0;
                if (ps->n == cap) {
                        cap = cap ? cap * 2 : 1024;
                        ps->subjects = xreallocarray(ps->subjects, cap, sizeof(char *));
                        ps->jwts = xreallocarray(ps->jwts, cap, sizeof(char *));
                }
                ps->subjects[ps->n] = xasprintf("$SYS.REQ.ACCOUNT.%s.CLAIMS.UPDATE", line);
                ps->jwts[ps->n] = xstrdup(sp + 1);
                ps->n++;
        }
        free(text);
        return 0;
}

static void push_set_free(struct push_set *ps) {
        for (size_t i = 0; i < ps->n; i++) {
                free(ps->subjects[i]);
                free(ps->jwts[i]);
        }
        free(ps->subjects);
        free(ps->jwts);
}

static bool reply_ok(natsMsg *m) {
        json_t *doc = json_loadb(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), 0, NULL);
        bool ok = json_integer_value(json_object_get(json_object_get(doc, "data"), "code")) == 200;
        json_decref(doc);
        return ok;
}

/* One CLAIMS.PACK: every message until the empty one; returns the JWT count
 * or -1. *first_usec: when its first message came. */
static int64_t pack(natsConnection *nc, uint64_t *usec, uint64_t *first_usec) {
        natsInbox *inbox = NULL;
        natsSubscription *sub = NULL;
        natsStatus st = natsInbox_Create(&inbox);
        if (st == NATS_OK)
                st = natsConnection_SubscribeSync(&sub, nc, inbox);
        if (st == NATS_OK)
                st = natsSubscription_SetPendingLimits(sub, -1, -1);
        uint64_t t0 = now_usec();
        if (st == NATS_OK)
                st = natsConnection_PublishRequest(nc, "$SYS.REQ.CLAIMS.PACK", inbox, NULL, 0);
        if (st == NATS_OK)
                st = natsConnection_FlushTimeout(nc, PACK_TIMEOUT_MS);
        int64_t jwts = 0;
        *first_usec = 0;
        while (st == NATS_OK) {
                natsMsg *m = NULL;
                st = natsSubscription_NextMsg(&m, sub, PACK_TIMEOUT_MS);
                if (st != NATS_OK)
                        break;
                if (!*first_usec)
                        *first_usec = now_usec() - t0;
                int len = natsMsg_GetDataLength(m);
                /* One message per JWT; count the lines in case a server batches them. */
                if (len > 0) {
                        const char *d = natsMsg_GetData(m);
                        jwts++;
                        for (int i = 0; i < len - 1; i++)
                                jwts += d[i] == '\n';
                }
                natsMsg_Destroy(m);
                if (len == 0)
                        break;
        }
        *usec = now_usec() - t0;
        natsSubscription_Destroy(sub);
        natsInbox_Destroy(inbox);
        if (st != NATS_OK) {
                fprintf(stderr, "accountd-bench: CLAIMS.PACK: %s\n", natsStatus_GetText(st));
                return -1;
        }
        return jwts;
}

/* window 0: every push published at once, then the replies gathered; else
 * at most window pushes unanswered at any time. A push is answered once
 * `replies` replies came for it (one per server of a cluster: each server
 * answers CLAIMS.UPDATE); *ok counts the replies that say "jwt updated". */
static int push_pipelined(natsConnection *nc, const struct push_set *ps, size_t window, size_t replies, size_t *ok) {
        natsInbox *inbox = NULL;
        natsSubscription *sub = NULL;
        natsStatus st = natsInbox_Create(&inbox);
        char *wild = xasprintf("%s.*", inbox);
        size_t prefix = strlen(inbox) + 1;
        if (st == NATS_OK)
                st = natsConnection_SubscribeSync(&sub, nc, wild);
        if (st == NATS_OK)
                st = natsSubscription_SetPendingLimits(sub, -1, -1);
        uint32_t *got = xcalloc(ps->n ? ps->n : 1, sizeof(*got));
        char reply[128];
        size_t sent = 0, done = 0;
        if (!window)
                window = ps->n;
        while (st == NATS_OK && done < ps->n) {
                for (; st == NATS_OK && sent < ps->n && sent - done < window; sent++) {
                        snprintf(reply, sizeof(reply), "%s.%zu", inbox, sent);
                        st = natsConnection_PublishRequest(nc, ps->subjects[sent], reply, ps->jwts[sent],
                                                           (int)strlen(ps->jwts[sent]));
                }
                if (st != NATS_OK)
                        break;
                natsMsg *m = NULL;
                st = natsSubscription_NextMsg(&m, sub, TIMEOUT_MS);
                if (st != NATS_OK)
                        break;
                const char *subj = natsMsg_GetSubject(m);
                char *end = NULL;
                unsigned long long i = strlen(subj) > prefix ? strtoull(subj + prefix, &end, 10) : ULLONG_MAX;
                if (i < sent && end && !*end && got[i] < replies) {
                        *ok += reply_ok(m);
                        if (++got[i] == replies)
                                done++;
                }
                natsMsg_Destroy(m);
        }
        natsSubscription_Destroy(sub);
        natsInbox_Destroy(inbox);
        free(wild);
        free(got);
        if (st != NATS_OK)
                fprintf(stderr, "accountd-bench: pushes: %s after %zu answered\n", natsStatus_GetText(st), done);
        return st == NATS_OK ? 0 : -1;
}

static int push_serial(natsConnection *nc, const struct push_set *ps, size_t *ok) {
        for (size_t i = 0; i < ps->n; i++) {
                natsMsg *m = NULL;
                natsStatus st = natsConnection_Request(&m, nc, ps->subjects[i], ps->jwts[i], (int)strlen(ps->jwts[i]),
                                                       TIMEOUT_MS);
                if (st != NATS_OK) {
                        fprintf(stderr, "accountd-bench: push %zu: %s\n", i, natsStatus_GetText(st));
                        return -1;
                }
                *ok += reply_ok(m);
                natsMsg_Destroy(m);
        }
        return 0;
}

static int cmd_ceiling(int argc, char **argv) {
        bool serial = false;
        int64_t window = 0, replies = 1;
        for (int i = 4; i < argc; i++) {
                if (strcmp(argv[i], "--serial") == 0)
                        serial = true;
                else if (strcmp(argv[i], "--window") == 0 && i + 1 < argc)
                        window = parse_int(argv[++i]);
                else if (strcmp(argv[i], "--replies") == 0 && i + 1 < argc)
                        replies = parse_int(argv[++i]);
                else
                        window = -1;
        }
        if (argc < 4 || window < 0 || replies < 1 || replies > 1000 || (serial && (window || replies != 1)))
                return fail("%s", "usage: ceiling CREDS URL JWT_FILE [--serial | [--window W] [--replies R]]");
        struct push_set ps = { 0 };
        if (load_jwts(argv[3], &ps) != 0)
                return 2;
        natsConnection *nc = NULL;
        if (connect_as(argv[1], argv[2], &nc) != NATS_OK) {
                push_set_free(&ps);
                return 2;
        }
        uint64_t pack_usec = 0, first_usec = 0;
        int64_t jwts = pack(nc, &pack_usec, &first_usec);
        size_t ok = 0;
        uint64_t t0 = now_usec();
        int r = jwts < 0 ? -1
                : serial ? push_serial(nc, &ps, &ok)
                         : push_pipelined(nc, &ps, (size_t)window, (size_t)replies, &ok);
        uint64_t push_usec = now_usec() - t0;
        if (r == 0)
                printf("{\"pack_usec\":%" PRIu64 ",\"pack_first_usec\":%" PRIu64 ",\"pack_jwts\":%" PRId64
                       ",\"push_usec\":%" PRIu64 ",\"pushed\":%zu,\"ok\":%zu}\n",
                       pack_usec, first_usec, jwts, push_usec, ps.n, ok);
        natsConnection_Destroy(nc);
        size_t want = ps.n * (size_t)replies;
        push_set_free(&ps);
        if (r < 0)
                return 1;
        return ok == want ? 0 : 1;
}

static int cmd_pack(int argc, char **argv) {
        if (argc != 3)
                return fail("%s", "usage: pack CREDS URL");
        natsConnection *nc = NULL;
        if (connect_as(argv[1], argv[2], &nc) != NATS_OK)
                return 2;
        uint64_t usec = 0, first_usec = 0;
        int64_t jwts = pack(nc, &usec, &first_usec);
        if (jwts >= 0)
                printf("{\"pack_usec\":%" PRIu64 ",\"pack_first_usec\":%" PRIu64 ",\"pack_jwts\":%" PRId64 "}\n",
                       usec, first_usec, jwts);
        natsConnection_Destroy(nc);
        return jwts < 0 ? 1 : 0;
}

/* ---- parse + diff ---- */

static int cmd_parse_diff(int argc, char **argv) {
        if (argc != 2)
                return fail("%s", "usage: parse-diff ACCOUNTS_FILE");
        struct diag_list dl = { 0 };
        struct accounts *a = NULL;
        uint64_t t0 = now_usec();
        int r = accounts_load(argv[1], ACCOUNTS_OPERATOR, &a, &dl);
        uint64_t t1 = now_usec();
        if (r < 0) {
                diag_print(&dl, stderr);
                diag_list_clear(&dl);
                return 1;
        }
        struct observed empty = { 0 };
        struct plan_options opt = { .create_missing = true };
        struct plan *p = plan_compute(a, &empty, &opt);
        uint64_t t2 = now_usec();
        size_t creates = 0;
        for (size_t i = 0; i < p->n; i++)
                creates += p->v[i].action == PLAN_CREATE;
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        printf("{\"parse_usec\":%" PRIu64 ",\"diff_usec\":%" PRIu64 ",\"accounts\":%zu,\"creates\":%zu,"
               "\"max_rss_kib\":%ld}\n",
               t1 - t0, t2 - t1, a->n, creates, ru.ru_maxrss);
        bool all = creates == a->n;
        plan_free(p);
        accounts_free(a);
        return all ? 0 : 1;
}

int main(int argc, char **argv) {
        static const struct {
                const char *name;
                int (*run)(int argc, char **argv);
                bool needs_nats;
        } commands[] = {
                { "sign", cmd_sign, false },
                { "ceiling", cmd_ceiling, true },
                { "pack", cmd_pack, true },
                { "parse-diff", cmd_parse_diff, false },
        };
        if (argc < 2)
                return fail("%s", "usage: accountd-bench sign|ceiling|pack|parse-diff ...");
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
