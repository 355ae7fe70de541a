/* nats-probe: the small NATS client the integration tests drive.
 *
 *   request CREDS URL SUBJECT [PAYLOAD] [TIMEOUT_MS]
 *       One request; prints the reply body. Exit 1 on timeout or no responders.
 *   request-header CREDS URL SUBJECT PAYLOAD NAME:VALUE [TIMEOUT_MS]
 *       The same with one header on the request.
 *   gather CREDS URL SUBJECT PAYLOAD TIMEOUT_MS [COUNT|until-empty]
 *       One request, every reply on its own line until COUNT replies arrived,
 *       an empty reply ended the stream (until-empty), or the timeout. Prints
 *       "replies N usec T" on stderr. Exit 1 when COUNT or the empty reply did
 *       not come in time, or nothing at all came without either.
 *   publish-acked CREDS URL SUBJECT COUNT
 *       COUNT JetStream publishes as requests; exit 1 unless every one is acked.
 *   hold CREDS URL [SUBJECT...]
 *       Connect, subscribe to each SUBJECT, print "connected" and stay
 *       connected until stdin ends; "closed: <server's error>" is printed
 *       whenever the server closes the connection. Exit 0 if still connected
 *       at the end, 3 if the server closed it, 1 when the connect itself was
 *       refused (the server's error on stderr).
 *   publish CREDS URL SUBJECT BYTES
 *       Publish BYTES bytes and wait for the server's PONG. Exit 0 when the
 *       server took it, 1 when it closed the connection (its error on stderr,
 *       when cnats kept it).
 *   record CREDS URL OUT_FILE SUBJECT...
 *       Subscribe to the subjects (reconnecting for as long as it runs), print
 *       "ready" once the server has the subscriptions, then append the body of
 *       every message to OUT_FILE, one per line, until SIGTERM or SIGINT; then
 *       take in what the server already sent and exit 0. The tests record the
 *       account JWTs pushed during a test this way.
 *   resign-add-export SIGNER_SEED_FILE JWT_FILE SUBJECT
 *       Add a stream export SUBJECT to the account JWT, re-sign it with the seed
 *       (iat = old iat + 1) and print it: another tool editing the account.
 *   resign-set SIGNER_SEED_FILE JWT_FILE NATS_KEY JSON
 *       The same, setting claim nats.NATS_KEY to the JSON value instead.
 *   resign-merge SIGNER_SEED_FILE JWT_FILE JSON
 *       The same, merging the JSON object into the JWT's "nats" claims
 *       (recursively: {"imports":[...]} replaces the imports, {"limits":{"conn":1}}
 *       sets one limit).
 *   sign-delete SIGNER_SEED_FILE ACCOUNT_KEY...
 *       Print the generic JWT, self-signed by the operator (signing) key in the
 *       seed file, that asks a full resolver ($SYS.REQ.CLAIMS.DELETE) to delete
 *       those accounts' JWTs: another tool removing accounts.
 *   sign-account SIGNER_SEED_FILE ACCOUNT_KEY|new NAME IAT|now [EXPORT_SUBJECT]
 *       An account JWT as nats-accountd would create it (JetStream off), named
 *       NAME, for ACCOUNT_KEY (or a fresh key), optionally with a stream export,
 *       signed by the seed with the given iat. Prints the account's public key,
 *       then the JWT, each on a line: a forgery when the seed is not trusted.
 *   forge-update-replies CREDS URL SERVER_ID
 *       A hostile responder: answer every $SYS.REQ.ACCOUNT.<key>.CLAIMS.UPDATE
 *       with "jwt updated" in the name of SERVER_ID, until killed. Prints
 *       "ready" once subscribed.
 *   slow-pack CREDS URL DELAY_MS
 *       A CLAIMS.PACK responder as slow as a server with a large store: it
 *       answers $SYS.REQ.CLAIMS.PACK with the empty end message, DELAY_MS
 *       after the request (the first one; others meanwhile are ignored).
 *       Prints "ready" once subscribed, "pack asked" and "pack answered", and
 *       "asked meanwhile: SUBJECT" for every other $SYS.REQ. request seen
 *       while the PACK is pending. Runs until killed.
 *   gen-seed operator|account|user
 *       Print a fresh seed.
 *   pubkey-of-seed SEED_FILE
 *       Print the public key of the seed in the (0600) file.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdatomic.h>
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

static natsStatus sign_nonce(char **custom_err, unsigned char **signature, int *signature_len, const char *nonce,
                             void *closure) {
        *signature = malloc(64);
        if (!*signature)
                return NATS_NO_MEMORY;
        nkey_sign(closure, nonce, strlen(nonce), *signature);
        *signature_len = 64;
        return NATS_OK;
}

/* CREDS: a .creds file, an nkey user seed file, or "" (none; a URL may carry user:password@). */
static struct nkey user_key;

static natsStatus connect_with(const char *creds, const char *url, natsConnectionHandler closed_cb,
                               natsConnection **nc) {
        natsOptions *opts = NULL;
        natsStatus st = natsOptions_Create(&opts);
        if (st == NATS_OK)
                st = natsOptions_SetURL(opts, url);
        if (st == NATS_OK && closed_cb)
                st = natsOptions_SetClosedCB(opts, closed_cb, NULL);
        if (st == NATS_OK && creds && *creds) {
                bool is_creds = false;
                char *err = NULL;
                if (secret_load_credentials(creds, &user_key, &is_creds, &err) < 0) {
                        fprintf(stderr, "nats-probe: %s\n", err);
                        free(err);
                        natsOptions_Destroy(opts);
                        return NATS_INVALID_ARG;
                }
                if (is_creds)
                        st = natsOptions_SetUserCredentialsFromFiles(opts, creds, NULL);
                else
                        st = natsOptions_SetNKey(opts, user_key.pub, sign_nonce, &user_key);
        }
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

static natsStatus connect_as(const char *creds, const char *url, natsConnection **nc) {
        return connect_with(creds, url, NULL, nc);
}

/* The server's own words (-ERR '...') when it closed the connection; cnats
 * does not always keep them (the close can come first): then what failed. */
static const char *last_error_or(natsConnection *nc, natsStatus failed) {
        const char *text = NULL;
        natsStatus st = natsConnection_GetLastError(nc, &text);
        if (text && *text)
                return text;
        return natsStatus_GetText(st != NATS_OK ? st : failed);
}

static const char *last_error(natsConnection *nc) {
        return last_error_or(nc, NATS_CONNECTION_CLOSED);
}

/* libnats before 3.6.1 (Debian 12 ships 3.4.1) has its reader thread look a
 * subscription up, let go of the lock, then use it (nats.c #637, fixed by
 * 0a7dd28): a message that arrives while another thread frees that
 * subscription makes the reader use freed memory, and the probe dies of
 * SIGSEGV or SIGABRT (natsMutex_Lock) or hangs in natsConnection_Destroy.
 * Messages do come then: every server of a cluster answers a $SYS request,
 * and a command stops at the first reply or the COUNT it waits for. So the
 * probe frees a subscription only once natsConnection_Close has stopped the
 * reader thread, and never uses natsConnection_Request*: their shared reply
 * subscription is freed by natsConnection_Close/Destroy before that thread is
 * stopped. (The daemon, whose connection lives on, waits for a PONG after the
 * UNSUB instead: daemon/natsconn.c, unsubscribe().) */
static void close_then_free(natsConnection *nc, natsSubscription **subs, size_t n) {
        natsConnection_Close(nc);
        for (size_t i = 0; i < n; i++)
                natsSubscription_Destroy(subs[i]);
        natsConnection_Destroy(nc);
}

/* Set before we close the connection ourselves: only a close by the server is news. */
static atomic_bool closing;

static void on_closed(natsConnection *nc, void *closure) {
        (void)closure;
        if (atomic_load(&closing))
                return;
        printf("closed: %s\n", last_error(nc));
        fflush(stdout);
}

static int cmd_hold(int argc, char **argv) {
        if (argc < 3)
                return fail("%s", "usage: hold CREDS URL [SUBJECT...]");
        natsConnection *nc = NULL;
        if (connect_with(argv[1], argv[2], on_closed, &nc) != NATS_OK)
                return 1;
        natsSubscription **subs = xcalloc((size_t)argc, sizeof(*subs));
        natsStatus st = NATS_OK;
        for (int i = 3; i < argc && st == NATS_OK; i++)
                st = natsConnection_SubscribeSync(&subs[i], nc, argv[i]);
        if (st == NATS_OK)
                st = natsConnection_FlushTimeout(nc, DEFAULT_TIMEOUT_MS);
        int code = 0;
        if (st != NATS_OK) {
                fprintf(stderr, "nats-probe: hold: %s\n", last_error(nc));
                code = 3;
        } else {
                printf("connected\n");
                fflush(stdout);
                char buf[256];
                while (fread(buf, 1, sizeof(buf), stdin) > 0)
                        ;
                if (natsConnection_IsClosed(nc))
                        code = 3;
        }
        atomic_store(&closing, true);
        close_then_free(nc, subs + 3, (size_t)(argc - 3));
        free(subs);
        return code;
}

static int cmd_publish(int argc, char **argv) {
        if (argc != 5)
                return fail("%s", "usage: publish CREDS URL SUBJECT BYTES");
        int64_t size = parse_int(argv[4], 0, 64 * 1024 * 1024);
        if (size < 0)
                return fail("bad size '%s'", argv[4]);
        natsConnection *nc = NULL;
        if (connect_as(argv[1], argv[2], &nc) != NATS_OK)
                return 2;
        char *body = xmalloc((size_t)size + 1);
        memset(body, 'x', (size_t)size);
        natsStatus st = natsConnection_Publish(nc, argv[3], body, (int)size);
        /* The PONG comes after the server handled the PUB: then it either took the
         * message or has sent its -ERR and closed the connection. */
        if (st == NATS_OK)
                st = natsConnection_FlushTimeout(nc, DEFAULT_TIMEOUT_MS);
        int code = 0;
        if (st == NATS_OK) {
                printf("published %" PRId64 " bytes\n", size);
        } else {
                fprintf(stderr, "nats-probe: publish %" PRId64 " bytes: %s\n", size, last_error_or(nc, st));
                code = 1;
        }
        free(body);
        natsConnection_Destroy(nc);
        return code;
}

/* Send one request (with an optional NAME:VALUE header) on a subscription of
 * our own and print every reply on its own line, until `want` replies came
 * (0: until the timeout), an empty one ended the stream (until_empty), or the
 * timeout. a->status: NATS_OK when a reply ended it, else NATS_TIMEOUT or
 * what ended the wait early (no responders, a closed connection). Returns the
 * number of replies printed, or -1 when the request could not be sent (the
 * error on stderr). *sub is freed by the caller: see close_then_free for why,
 * and why not natsConnection_Request. */
struct ask {
        const char *subject, *payload, *header; /* header: "NAME:VALUE" or NULL */
        int64_t timeout_ms, want;
        bool until_empty;
        /* results */
        bool ended; /* want replies came, or the empty one */
        natsStatus status;
        uint64_t usec;
};

static int64_t ask(natsConnection *nc, natsSubscription **sub, struct ask *a) {
        natsInbox *inbox = NULL;
        natsMsg *msg = NULL;
        natsStatus st = natsInbox_Create(&inbox);
        if (st == NATS_OK)
                st = natsConnection_SubscribeSync(sub, nc, inbox);
        if (st == NATS_OK)
                st = natsSubscription_SetPendingLimits(*sub, -1, -1);
        if (st == NATS_OK)
                st = natsMsg_Create(&msg, a->subject, inbox, a->payload, (int)strlen(a->payload));
        if (st == NATS_OK && a->header) {
                const char *colon = strchr(a->header, ':');
                char *name = xstrndup(a->header, (size_t)(colon - a->header));
                st = natsMsgHeader_Set(msg, name, colon + 1);
                free(name);
        }
        uint64_t start = now_usec();
        if (st == NATS_OK)
                st = natsConnection_PublishMsg(nc, msg);
        if (st == NATS_OK)
                st = natsConnection_Flush(nc);
        natsMsg_Destroy(msg);
        natsInbox_Destroy(inbox);
        if (st != NATS_OK) {
                fprintf(stderr, "nats-probe: cannot send %s: %s\n", a->subject, natsStatus_GetText(st));
                return -1;
        }
        uint64_t deadline = start + (uint64_t)a->timeout_ms * 1000u;
        int64_t got = 0;
        a->status = NATS_OK;
        for (;;) {
                uint64_t now = now_usec();
                natsMsg *m = NULL;
                st = now < deadline ? natsSubscription_NextMsg(&m, *sub, (int64_t)((deadline - now + 999) / 1000))
                                    : NATS_TIMEOUT;
                if (st != NATS_OK) {
                        a->status = st;
                        break;
                }
                int len = natsMsg_GetDataLength(m);
                if (len == 0 && a->until_empty) {
                        natsMsg_Destroy(m);
                        a->ended = true;
                        break;
                }
                fwrite(natsMsg_GetData(m), 1, (size_t)len, stdout);
                fputc('\n', stdout);
                natsMsg_Destroy(m);
                got++;
                if (a->want && got >= a->want) {
                        a->ended = true;
                        break;
                }
        }
        a->usec = now_usec() - start;
        return got;
}

/* One request, the first reply printed: 0, 1 on timeout or no responders, 2 otherwise. */
static int request_once(const char *creds, const char *url, struct ask *a) {
        natsConnection *nc = NULL;
        if (connect_as(creds, url, &nc) != NATS_OK)
                return 2;
        natsSubscription *sub = NULL;
        a->want = 1;
        int64_t got = ask(nc, &sub, a);
        int code = 0;
        if (got < 0) {
                code = 2;
        } else if (got == 0) {
                fprintf(stderr, "nats-probe: request %s: %s\n", a->subject, natsStatus_GetText(a->status));
                code = (a->status == NATS_TIMEOUT || a->status == NATS_NO_RESPONDERS) ? 1 : 2;
        }
        close_then_free(nc, &sub, 1);
        return code;
}

static int cmd_request(int argc, char **argv) {
        if (argc < 4 || argc > 6)
                return fail("%s", "usage: request CREDS URL SUBJECT [PAYLOAD] [TIMEOUT_MS]");
        struct ask a = { .subject = argv[3], .payload = argc > 4 ? argv[4] : "" };
        a.timeout_ms = argc > 5 ? parse_int(argv[5], 1, 600000) : DEFAULT_TIMEOUT_MS;
        if (a.timeout_ms < 0)
                return fail("bad timeout '%s'", argv[5]);
        return request_once(argv[1], argv[2], &a);
}

static int cmd_request_header(int argc, char **argv) {
        if (argc < 6 || argc > 7)
                return fail("%s", "usage: request-header CREDS URL SUBJECT PAYLOAD NAME:VALUE [TIMEOUT_MS]");
        struct ask a = { .subject = argv[3], .payload = argv[4], .header = argv[5] };
        a.timeout_ms = argc > 6 ? parse_int(argv[6], 1, 600000) : DEFAULT_TIMEOUT_MS;
        const char *colon = strchr(argv[5], ':');
        if (a.timeout_ms < 0 || !colon || colon == argv[5])
                return fail("bad header '%s' or timeout", argv[5]);
        return request_once(argv[1], argv[2], &a);
}

static int cmd_gather(int argc, char **argv) {
        if (argc < 6 || argc > 7)
                return fail("%s", "usage: gather CREDS URL SUBJECT PAYLOAD TIMEOUT_MS [COUNT|until-empty]");
        struct ask a = { .subject = argv[3], .payload = argv[4], .timeout_ms = parse_int(argv[5], 1, 600000) };
        a.until_empty = argc > 6 && strcmp(argv[6], "until-empty") == 0;
        a.want = argc > 6 && !a.until_empty ? parse_int(argv[6], 1, 1000000) : 0;
        if (a.timeout_ms < 0 || a.want < 0)
                return fail("bad timeout or count");
        natsConnection *nc = NULL;
        if (connect_as(argv[1], argv[2], &nc) != NATS_OK)
                return 2;
        natsSubscription *sub = NULL;
        int64_t got = ask(nc, &sub, &a);
        int code;
        if (got < 0) {
                code = 2;
        } else {
                if (a.status != NATS_OK && a.status != NATS_TIMEOUT)
                        fprintf(stderr, "nats-probe: gather %s: %s\n", a.subject, natsStatus_GetText(a.status));
                fprintf(stderr, "replies %" PRId64 " usec %" PRIu64 "\n", got, a.usec);
                if (a.until_empty || a.want)
                        code = a.ended ? 0 : 1;
                else
                        code = got ? 0 : 1;
        }
        close_then_free(nc, &sub, 1);
        return code;
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
        /* One inbox for the whole run, a reply subject per publish: an ack
         * that comes for another one is not taken for this one's. */
        natsInbox *inbox = NULL;
        natsSubscription *sub = NULL;
        char *wildcard = NULL;
        natsStatus st = natsInbox_Create(&inbox);
        if (st == NATS_OK) {
                wildcard = xasprintf("%s.*", inbox);
                st = natsConnection_SubscribeSync(&sub, nc, wildcard);
        }
        int code = 0;
        int64_t last_seq = 0;
        for (int64_t i = 0; i < count && !code && st == NATS_OK; i++) {
                char body[64];
                snprintf(body, sizeof(body), "message %" PRId64, i + 1);
                char *reply_to = xasprintf("%s.%" PRId64, inbox, i + 1);
                st = natsConnection_PublishRequestString(nc, argv[3], reply_to, body);
                natsMsg *reply = NULL;
                uint64_t deadline = now_usec() + DEFAULT_TIMEOUT_MS * 1000u;
                while (st == NATS_OK && !reply) {
                        uint64_t now = now_usec();
                        st = now < deadline ? natsSubscription_NextMsg(&reply, sub, (int64_t)((deadline - now + 999) / 1000))
                                            : NATS_TIMEOUT;
                        if (st == NATS_OK && strcmp(natsMsg_GetSubject(reply), reply_to) != 0) {
                                natsMsg_Destroy(reply);
                                reply = NULL;
                        }
                }
                free(reply_to);
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
        if (st != NATS_OK && !code) {
                fprintf(stderr, "nats-probe: publish to %s: %s\n", argv[3], natsStatus_GetText(st));
                code = 2;
        }
        if (!code)
                printf("%" PRId64 " acked, last seq %" PRId64 "\n", count, last_seq);
        free(wildcard);
        natsInbox_Destroy(inbox);
        close_then_free(nc, &sub, 1);
        return code;
}

static volatile sig_atomic_t record_stop;

static void on_stop_signal(int sig) {
        (void)sig;
        record_stop = 1;
}

struct recording {
        FILE *out;
        pthread_mutex_t lock;
        bool write_failed;
};

static void on_recorded(natsConnection *nc, natsSubscription *sub, natsMsg *m, void *closure) {
        struct recording *rec = closure;
        pthread_mutex_lock(&rec->lock);
        if (fwrite(natsMsg_GetData(m), 1, (size_t)natsMsg_GetDataLength(m), rec->out) !=
                    (size_t)natsMsg_GetDataLength(m) ||
            fputc('\n', rec->out) == EOF || fflush(rec->out) == EOF)
                rec->write_failed = true;
        pthread_mutex_unlock(&rec->lock);
        natsMsg_Destroy(m);
}

static int cmd_record(int argc, char **argv) {
        if (argc < 5)
                return fail("%s", "usage: record CREDS URL OUT_FILE SUBJECT...");
        struct sigaction sa = { .sa_handler = on_stop_signal };
        sigemptyset(&sa.sa_mask);
        if (sigaction(SIGTERM, &sa, NULL) < 0 || sigaction(SIGINT, &sa, NULL) < 0)
                return fail("sigaction: %s", strerror(errno));
        struct recording rec = { .out = fopen(argv[3], "a") };
        if (!rec.out)
                return fail("%s: %s", argv[3], strerror(errno));
        pthread_mutex_init(&rec.lock, NULL);
        natsOptions *opts = NULL;
        natsConnection *nc = NULL;
        natsStatus st = natsOptions_Create(&opts);
        if (st == NATS_OK)
                st = natsOptions_SetURL(opts, argv[2]);
        if (st == NATS_OK)
                st = natsOptions_SetUserCredentialsFromFiles(opts, argv[1], NULL);
        /* A server a test kills and starts again on its port: come back to it. */
        if (st == NATS_OK)
                st = natsOptions_SetMaxReconnect(opts, -1);
        if (st == NATS_OK)
                st = natsOptions_SetReconnectWait(opts, 100);
        if (st == NATS_OK) {
                int attempt = 0;
                do
                        st = natsConnection_Connect(&nc, opts);
                while (is_auth_failure(st) && ++attempt < CONNECT_ATTEMPTS);
        }
        natsOptions_Destroy(opts);
        int n = argc - 4;
        natsSubscription **subs = xcalloc((size_t)n, sizeof(*subs));
        for (int i = 0; st == NATS_OK && i < n; i++)
                st = natsConnection_Subscribe(&subs[i], nc, argv[4 + i], on_recorded, &rec);
        for (int i = 0; st == NATS_OK && i < n; i++)
                st = natsSubscription_SetPendingLimits(subs[i], -1, -1);
        if (st == NATS_OK)
                st = natsConnection_Flush(nc);
        int code = 0;
        if (st != NATS_OK) {
                fprintf(stderr, "nats-probe: record from %s: %s (%s)\n", argv[2], natsStatus_GetText(st),
                        nats_GetLastError(NULL));
                code = 2;
        } else {
                puts("ready");
                fflush(stdout);
                while (!record_stop)
                        nats_Sleep(50);
                /* Draining unsubscribes, flushes (the server has sent all it had
                 * for us once the PONG is back) and hands every pending message to
                 * the callback before it completes. */
                for (int i = 0; i < n && natsConnection_Status(nc) == NATS_CONN_STATUS_CONNECTED; i++)
                        if (natsSubscription_Drain(subs[i]) == NATS_OK)
                                (void)natsSubscription_WaitForDrainCompletion(subs[i], 5000);
        }
        close_then_free(nc, subs, (size_t)n);
        free(subs);
        pthread_mutex_lock(&rec.lock);
        if (rec.write_failed)
                code = fail("writing %s failed", argv[3]);
        if (fclose(rec.out) == EOF && !code)
                code = fail("%s: %s", argv[3], strerror(errno));
        pthread_mutex_unlock(&rec.lock);
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

/* Decode the account JWT in jwt_file, let edit() change its "nats" object,
 * re-sign it with the seed in seed_file (iat = old iat + 1) and print it. */
static int resign(const char *seed_file, const char *jwt_file, int (*edit)(json_t *nats, char **args),
                  char **args) {
        struct nkey signer;
        if (read_seed_file(seed_file, &signer) < 0)
                return 2;
        char *text = NULL;
        size_t len = 0;
        int r = file_read_all(jwt_file, JWT_MAX_LEN + 16, &text, &len);
        if (r < 0) {
                nkey_wipe(&signer);
                return fail("%s: %s", jwt_file, strerror(-r));
        }
        json_t *claims = NULL;
        char *err = NULL;
        r = jwt_decode(str_strip(text), &claims, &err);
        free(text);
        if (r < 0) {
                nkey_wipe(&signer);
                fprintf(stderr, "nats-probe: %s: %s\n", jwt_file, err ? err : strerror(-r));
                free(err);
                return 2;
        }
        json_t *nats = json_object_get(claims, "nats");
        json_t *iat = json_object_get(claims, "iat");
        if (!json_is_object(nats) || !json_is_integer(iat)) {
                nkey_wipe(&signer);
                json_decref(claims);
                return fail("%s: not an account JWT (no nats object or iat)", jwt_file);
        }
        if (edit(nats, args) < 0) {
                nkey_wipe(&signer);
                json_decref(claims);
                return 2;
        }
        char *jwt = jwt_encode_at(claims, &signer, json_integer_value(iat) + 1);
        nkey_wipe(&signer);
        json_decref(claims);
        if (!jwt)
                return fail("could not sign the edited claims");
        puts(jwt);
        free(jwt);
        return 0;
}

static int add_export(json_t *nats, char **args) {
        const char *subject = args[0];
        json_t *exports = json_object_get(nats, "exports");
        if (!json_is_array(exports)) {
                exports = json_array();
                json_object_set_new(nats, "exports", exports);
        }
        json_array_append_new(exports, json_pack("{s:s, s:s, s:s}", "name", subject, "subject", subject, "type", "stream"));
        return 0;
}

static int merge_json(json_t *nats, char **args) {
        json_error_t jerr;
        json_t *patch = json_loads(args[0], 0, &jerr);
        if (!json_is_object(patch)) {
                json_decref(patch);
                return fail("not a JSON object: %s", patch ? "another type" : jerr.text);
        }
        json_object_update_recursive(nats, patch);
        json_decref(patch);
        return 0;
}

static int cmd_resign_merge(int argc, char **argv) {
        if (argc != 4)
                return fail("%s", "usage: resign-merge SIGNER_SEED_FILE JWT_FILE JSON");
        return resign(argv[1], argv[2], merge_json, argv + 3);
}

static int cmd_resign_add_export(int argc, char **argv) {
        if (argc != 4)
                return fail("%s", "usage: resign-add-export SIGNER_SEED_FILE JWT_FILE SUBJECT");
        return resign(argv[1], argv[2], add_export, argv + 3);
}

static int set_claim(json_t *nats, char **args) {
        json_error_t e;
        json_t *v = json_loads(args[1], JSON_DECODE_ANY, &e);
        if (!v) {
                fail("not JSON: %s", e.text);
                return -1;
        }
        json_object_set_new(nats, args[0], v);
        return 0;
}

static int cmd_resign_set(int argc, char **argv) {
        if (argc != 5)
                return fail("%s", "usage: resign-set SIGNER_SEED_FILE JWT_FILE NATS_KEY JSON");
        return resign(argv[1], argv[2], set_claim, argv + 3);
}

static int cmd_sign_delete(int argc, char **argv) {
        if (argc < 3)
                return fail("%s", "usage: sign-delete SIGNER_SEED_FILE ACCOUNT_KEY...");
        struct nkey signer;
        if (read_seed_file(argv[1], &signer) < 0)
                return 2;
        json_t *accounts = json_array();
        for (int i = 2; i < argc; i++)
                json_array_append_new(accounts, json_string(argv[i]));
        /* What nsc sends: sub = iss = an operator key, the keys in nats.accounts. */
        json_t *claims = json_pack("{s:s, s:{s:o, s:s, s:i}}", "sub", signer.pub, "nats", "accounts", accounts, "type",
                                   "generic", "version", 2);
        char *jwt = claims ? jwt_encode(claims, &signer) : NULL;
        nkey_wipe(&signer);
        json_decref(claims);
        if (!jwt)
                return fail("could not sign the delete request");
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
                close_then_free(nc, &sub, 1);
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
        close_then_free(nc, &sub, 1);
        return 0;
}

static int cmd_slow_pack(int argc, char **argv) {
        int64_t delay = argc == 4 ? parse_int(argv[3], 0, 3600000) : -1;
        if (delay < 0)
                return fail("%s", "usage: slow-pack CREDS URL DELAY_MS");
        natsConnection *nc = NULL;
        if (connect_as(argv[1], argv[2], &nc) != NATS_OK)
                return 2;
        natsSubscription *sub = NULL;
        natsStatus st = natsConnection_SubscribeSync(&sub, nc, "$SYS.REQ.>");
        if (st == NATS_OK)
                st = natsSubscription_SetPendingLimits(sub, -1, -1);
        if (st == NATS_OK)
                st = natsConnection_Flush(nc);
        if (st != NATS_OK) {
                close_then_free(nc, &sub, 1);
                return fail("cannot subscribe: %s", natsStatus_GetText(st));
        }
        puts("ready");
        fflush(stdout);
        char *reply = NULL; /* of the PACK being "prepared" */
        uint64_t due = 0;
        for (;;) {
                uint64_t now = now_usec();
                int64_t wait = reply ? (int64_t)((due > now ? due - now : 0) / 1000) + 1 : 60000;
                natsMsg *m = NULL;
                st = natsSubscription_NextMsg(&m, sub, wait);
                if (st == NATS_TIMEOUT && reply && now_usec() >= due) {
                        natsConnection_Publish(nc, reply, NULL, 0);
                        natsConnection_Flush(nc);
                        printf("pack answered\n");
                        fflush(stdout);
                        free(reply);
                        reply = NULL;
                        continue;
                }
                if (st == NATS_TIMEOUT)
                        continue;
                if (st != NATS_OK)
                        break;
                const char *subject = natsMsg_GetSubject(m), *r = natsMsg_GetReply(m);
                if (strcmp(subject, "$SYS.REQ.CLAIMS.PACK") == 0 && r && !reply) {
                        reply = xstrdup(r);
                        due = now_usec() + (uint64_t)delay * 1000u;
                        printf("pack asked\n");
                } else if (reply) {
                        printf("asked meanwhile: %s\n", subject);
                }
                fflush(stdout);
                natsMsg_Destroy(m);
        }
        free(reply);
        close_then_free(nc, &sub, 1);
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
                { "request-header", cmd_request_header, true },
                { "gather", cmd_gather, true },
                { "publish-acked", cmd_publish_acked, true },
                { "hold", cmd_hold, true },
                { "publish", cmd_publish, true },
                { "record", cmd_record, true },
                { "resign-add-export", cmd_resign_add_export, false },
                { "resign-merge", cmd_resign_merge, false },
                { "resign-set", cmd_resign_set, false },
                { "sign-delete", cmd_sign_delete, false },
                { "forge-update-replies", cmd_forge_update_replies, true },
                { "slow-pack", cmd_slow_pack, true },
                { "sign-account", cmd_sign_account, false },
                { "gen-seed", cmd_gen_seed, false },
                { "pubkey-of-seed", cmd_pubkey_of_seed, false },
        };
        if (argc < 2)
                return fail("%s", "usage: nats-probe request|request-header|gather|publish-acked|hold|publish|record|"
                                    "resign-add-export|resign-merge|resign-set|sign-delete|forge-update-replies|slow-pack|sign-account|"
                                    "gen-seed|pubkey-of-seed ...");
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
