#include "natsconn.h"

#include <errno.h>
#include <nats/nats.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "nkeys.h"
#include "secrets.h"
#include "util.h"

enum {
        RECONNECT_WAIT_MSEC = 2000,
        PING_INTERVAL_MSEC = 20000,
        URL_MAX = 512,
        /* Replies of one gather: far above any real cluster or resolver (PACK
         * sends one message per JWT), low enough to stop a runaway peer. */
        GATHER_MAX_REPLIES = 1000000,
        PIPELINE_DEFAULT_WINDOW = 512,
        /* The client library drops messages past a subscription's pending
         * limits (slow consumer); ours are drained by the caller's thread
         * between publishes, so make room for every reply that can be queued. */
        PENDING_MAX_MSGS = 2 * GATHER_MAX_REPLIES,
};
#define GATHER_MAX_BYTES ((size_t)512 * 1024 * 1024)
#define PENDING_MAX_BYTES (1024 * 1024 * 1024)
#define CLOSE_WAIT_SEC 10
#define UNSUB_FLUSH_MSEC 100 /* see unsubscribe(): short, a hung server must not lengthen a pass */
/* Longest single wait inside a request: a stop request is seen this fast. */
#define CANCEL_SLICE_USEC (100u * 1000)
#define CONNECT_AUTH_ATTEMPTS 4 /* see natsconn_open */

/* Shared with cnats' callback thread. It outlives struct natsconn when the
 * library never reports the close (then it is leaked rather than freed under
 * a callback that may still come). */
struct relay {
        pthread_mutex_t lock;
        pthread_cond_t cond;
        bool closing, closed;
        natsconn_event_fn ev;
        void *userdata;
        /* Heartbeats: the server ids the last discovery listed (sorted, and
         * those heard of since), and whom to tell of another one. */
        natsconn_joined_fn joined;
        void *joined_userdata;
        char (*known)[NKEY_PUBLIC_LEN + 1];
        size_t n_known;
        bool primed;
};

struct natsconn {
        natsConnection *nc;
        struct relay *relay;
        natsSubscription *heartbeats;
        struct nkey *user_key; /* an nkey user's seed: signs each (re)connect's nonce */
        char *urls;    /* the configured list, credentials removed */
        char *url_buf; /* natsconn_url's answer, refreshed on each call */
        uint64_t timeout_usec;
        uint64_t requests; /* published so far: the daemon reports it per pass */
        const atomic_bool *cancel;
        _Atomic uint64_t *progress;
        /* Unsubscribed, not yet freed: see unsubscribe(). */
        natsSubscription **graves;
        size_t n_graves;
};

/* cnats waits in whole milliseconds; round up so a deadline is never missed
 * by a fraction, and never pass 0 (which means "do not wait"). */
static int64_t usec_to_msec(uint64_t usec) {
        uint64_t ms = (usec + 999) / 1000;
        if (ms < 1)
                ms = 1;
        if (ms > INT64_MAX / 2)
                ms = INT64_MAX / 2;
        return (int64_t)ms;
}

static uint64_t deadline_after(uint64_t start, uint64_t usec) {
        return usec > UINT64_MAX - start ? UINT64_MAX : start + usec;
}

/* A URL may carry user:password@; that never goes into a message. */
static void url_redact(const char *url, char *out, size_t size) {
        const char *scheme = strstr(url, "://");
        const char *host = scheme ? scheme + 3 : url;
        const char *at = strchr(host, '@');
        const char *slash = strchr(host, '/');
        if (at && (!slash || at < slash))
                snprintf(out, size, "%.*s%s", (int)(host - url), url, at + 1);
        else
                snprintf(out, size, "%s", url);
}

static char *urls_redacted(const struct settings *s) {
        size_t cap = s->n_servers * URL_MAX + 1, n = 0;
        char *out = xmalloc(cap);
        out[0] = 0;
        for (size_t i = 0; i < s->n_servers; i++) {
                char one[URL_MAX];
                url_redact(s->server_urls[i], one, sizeof(one));
                n += (size_t)snprintf(out + n, cap - n, "%s%s", i ? ", " : "", one);
        }
        return out;
}

/* cnats' last error on this thread, without its "(conn.c:2088): " origin. */
static const char *nats_error_text(natsStatus st) {
        natsStatus last = NATS_OK;
        const char *text = nats_GetLastError(&last);
        if (!text || !text[0] || last != st)
                return natsStatus_GetText(st);
        if (text[0] == '(') {
                const char *close = strstr(text, "): ");
                if (close)
                        text = close + 3;
        }
        return text;
}

static void relay_forward(struct relay *r, bool connected) {
        pthread_mutex_lock(&r->lock);
        natsconn_event_fn ev = r->closing ? NULL : r->ev;
        void *userdata = r->userdata;
        pthread_mutex_unlock(&r->lock);
        if (ev)
                ev(userdata, connected);
}

static void on_disconnected(natsConnection *nc, void *closure) {
        relay_forward(closure, false);
}

static void on_reconnected(natsConnection *nc, void *closure) {
        relay_forward(closure, true);
}

/* cnats delivers connection callbacks one at a time, in order, with "closed"
 * last: once it ran, no callback can still be using the relay. */
static void on_closed(natsConnection *nc, void *closure) {
        struct relay *r = closure;
        pthread_mutex_lock(&r->lock);
        r->closed = true;
        pthread_cond_signal(&r->cond);
        pthread_mutex_unlock(&r->lock);
}

static void relay_free(struct relay *r) {
        if (!r)
                return;
        free(r->known);
        pthread_mutex_destroy(&r->lock);
        pthread_cond_destroy(&r->cond);
        free(r);
}

/* cnats asks for the nonce's signature on every (re)connect, on its own thread. */
static natsStatus sign_nonce(char **custom_err, unsigned char **signature, int *signature_len, const char *nonce,
                             void *closure) {
        const struct nkey *k = closure;
        unsigned char *sig = malloc(64);
        if (!sig)
                return NATS_NO_MEMORY;
        nkey_sign(k, nonce, strlen(nonce), sig);
        *signature = sig;
        *signature_len = 64;
        return NATS_OK;
}

/* The system user: a .creds file (JWT and seed), an nkey user seed file, or
 * a user name with its password in a file. Secrets are read here and wiped;
 * an nkey user's key stays in *user_key for reconnects. */
static int set_auth(natsOptions *o, const struct settings *s, struct nkey **user_key, char **err) {
        natsStatus st = NATS_OK;
        if (s->credentials) {
                /* cnats reads a .creds file only while connecting, and then
                 * reports it no better than "no server available": check it here. */
                if (access(s->credentials, R_OK) < 0) {
                        int r0 = -errno;
                        *err = xasprintf("cannot read credentials file %s: %s", s->credentials, strerror(errno));
                        return r0;
                }
                struct nkey *k = xcalloc(1, sizeof(*k));
                bool is_creds = false;
                char *why = NULL;
                int r = secret_load_credentials(s->credentials, k, &is_creds, &why);
                if (r < 0 || is_creds) {
                        nkey_wipe(k);
                        free(k);
                }
                if (r < 0) {
                        *err = xasprintf("credentials file %s", why);
                        free(why);
                        return r;
                }
                if (is_creds)
                        st = natsOptions_SetUserCredentialsFromFiles(o, s->credentials, NULL);
                else if ((st = natsOptions_SetNKey(o, k->pub, sign_nonce, k)) == NATS_OK)
                        *user_key = k;
                else {
                        nkey_wipe(k);
                        free(k);
                }
                if (st != NATS_OK) {
                        *err = xasprintf("credentials file %s: %s", s->credentials, nats_error_text(st));
                        return -EINVAL;
                }
        }
        if (s->user) {
                char *password = NULL;
                int r = secret_load_password(s->password_file, &password, err);
                if (r < 0)
                        return r;
                st = natsOptions_SetUserInfo(o, s->user, password);
                secret_free(password, strlen(password));
                if (st != NATS_OK) {
                        *err = xasprintf("user %s: %s", s->user, nats_error_text(st));
                        return -EINVAL;
                }
        }
        return 0;
}

static int set_options(natsOptions *o, const struct settings *s, struct relay *r, struct nkey **user_key,
                       char **err) {
        natsStatus st = natsOptions_SetServers(o, (const char **)s->server_urls, (int)s->n_servers);
        if (st != NATS_OK) {
                *err = xasprintf("invalid server list: %s", nats_error_text(st));
                return -EINVAL;
        }
        int ar = set_auth(o, s, user_key, err);
        if (ar < 0)
                return ar;
        if (s->tls_ca || s->tls_cert || s->tls_key) {
                if (!s->tls_cert != !s->tls_key) {
                        *err = xstrdup("TLS: tls_cert and tls_key go together");
                        return -EINVAL;
                }
                st = natsOptions_SetSecure(o, true);
                if (st == NATS_OK && s->tls_ca) {
                        st = natsOptions_LoadCATrustedCertificates(o, s->tls_ca);
                        if (st != NATS_OK) {
                                *err = xasprintf("TLS: cannot load CA file %s: %s", s->tls_ca, nats_error_text(st));
                                return -EINVAL;
                        }
                }
                if (st == NATS_OK && s->tls_cert) {
                        st = natsOptions_LoadCertificatesChain(o, s->tls_cert, s->tls_key);
                        if (st != NATS_OK) {
                                *err = xasprintf("TLS: cannot load certificate %s / key %s: %s", s->tls_cert,
                                                 s->tls_key, nats_error_text(st));
                                return -EINVAL;
                        }
                }
                if (st != NATS_OK) {
                        *err = xasprintf("TLS: %s", nats_error_text(st));
                        return -EINVAL;
                }
        }
        int64_t timeout_ms = usec_to_msec(s->request_timeout_usec);
        if ((st = natsOptions_SetName(o, "nats-accountd")) != NATS_OK ||
            (st = natsOptions_SetTimeout(o, timeout_ms)) != NATS_OK ||
            /* The daemon outlives server restarts: reconnect forever; it
             * re-observes everything after a reconnect anyway. */
            (st = natsOptions_SetAllowReconnect(o, true)) != NATS_OK ||
            (st = natsOptions_SetMaxReconnect(o, -1)) != NATS_OK ||
            (st = natsOptions_SetReconnectWait(o, RECONNECT_WAIT_MSEC)) != NATS_OK ||
            /* A hung server is noticed within two pings, not the default 4 min. */
            (st = natsOptions_SetPingInterval(o, PING_INTERVAL_MSEC)) != NATS_OK ||
            (st = natsOptions_SetDisconnectedCB(o, on_disconnected, r)) != NATS_OK ||
            (st = natsOptions_SetReconnectedCB(o, on_reconnected, r)) != NATS_OK ||
            (st = natsOptions_SetClosedCB(o, on_closed, r)) != NATS_OK) {
                *err = xasprintf("cannot set connection options: %s", nats_error_text(st));
                return -EINVAL;
        }
        return 0;
}

int natsconn_open(const struct settings *s, natsconn_event_fn ev, void *userdata, struct natsconn **out, char **err) {
        *out = NULL;
        if (!s->server_urls || s->n_servers == 0) {
                *err = xstrdup("no server URL configured");
                return -EINVAL;
        }
        struct relay *r = xcalloc(1, sizeof(*r));
        pthread_mutex_init(&r->lock, NULL);
        pthread_cond_init(&r->cond, NULL);
        r->ev = ev;
        r->userdata = userdata;

        char *urls = urls_redacted(s);
        natsOptions *o = NULL;
        natsConnection *nc = NULL;
        natsStatus st = natsOptions_Create(&o);
        if (st != NATS_OK) {
                *err = xasprintf("cannot create connection options: %s", nats_error_text(st));
                free(urls);
                relay_free(r);
                return -ENOMEM;
        }
        struct nkey *user_key = NULL;
        int ret = set_options(o, s, r, &user_key, err);
        if (ret < 0)
                goto fail;

        /* libnats < 3.8.0 (Debian 12 ships 3.4.1) leaves the nonce signature out
         * of CONNECT when its first byte is 0 (nats.c #705): 1 connection in 256
         * is refused although the credentials are good. A new attempt signs a
         * new nonce; credentials that are really refused fail every time. */
        for (int attempt = 1;; attempt++) {
                st = natsConnection_Connect(&nc, o);
                if ((st != NATS_CONNECTION_AUTH_FAILED && st != NATS_NOT_PERMITTED) || attempt >= CONNECT_AUTH_ATTEMPTS)
                        break;
        }
        if (st != NATS_OK) {
                /* On a failed first connect cnats runs no callback, so the relay can go. */
                const char *text = nats_error_text(st);
                if (s->credentials && strstr(text, s->credentials)) {
                        /* cnats names the file when it cannot use it: a local problem. */
                        *err = xasprintf("credentials file %s cannot be used: %s", s->credentials, text);
                        ret = -EINVAL;
                        goto fail;
                }
                if ((st == NATS_NOT_PERMITTED || st == NATS_CONNECTION_AUTH_FAILED) && s->user)
                        *err = xasprintf("%s refused user %s (password in %s): %s", urls, s->user,
                                         s->password_file, text);
                else if (st == NATS_NOT_PERMITTED || st == NATS_CONNECTION_AUTH_FAILED)
                        *err = xasprintf("%s refused the credentials%s%s: %s", urls, s->credentials ? " in " : "",
                                         s->credentials ? s->credentials : "", text);
                else if (st == NATS_SSL_ERROR || st == NATS_SECURE_CONNECTION_REQUIRED ||
                         st == NATS_SECURE_CONNECTION_WANTED)
                        *err = xasprintf("TLS with %s failed: %s", urls, text);
                else
                        *err = xasprintf("cannot connect to %s: %s", urls, text);
                ret = -EHOSTUNREACH;
                goto fail;
        }
        natsOptions_Destroy(o);

        struct natsconn *c = xcalloc(1, sizeof(*c));
        c->nc = nc;
        c->relay = r;
        c->user_key = user_key;
        c->urls = urls;
        c->url_buf = xcalloc(1, URL_MAX);
        c->timeout_usec = s->request_timeout_usec;
        *out = c;
        return 0;

fail:
        natsOptions_Destroy(o);
        free(urls);
        relay_free(r);
        if (user_key) {
                nkey_wipe(user_key);
                free(user_key);
        }
        return ret;
}

void natsconn_close(struct natsconn *c) {
        if (!c)
                return;
        struct relay *r = c->relay;
        pthread_mutex_lock(&r->lock);
        r->closing = true;
        pthread_mutex_unlock(&r->lock);

        if (c->heartbeats)
                natsSubscription_Unsubscribe(c->heartbeats);
        natsConnection_Close(c->nc);

        /* Wait for the closed callback so that no callback runs after we
         * return; bounded, because the owner must not hang on shutdown. */
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += CLOSE_WAIT_SEC;
        bool closed;
        pthread_mutex_lock(&r->lock);
        while (!r->closed)
                if (pthread_cond_timedwait(&r->cond, &r->lock, &until) != 0)
                        break;
        closed = r->closed;
        pthread_mutex_unlock(&r->lock);

        natsSubscription_Destroy(c->heartbeats);
        /* Closed: no reader thread any more (else they stay: see unsubscribe()). */
        for (size_t i = 0; closed && i < c->n_graves; i++)
                natsSubscription_Destroy(c->graves[i]);
        free(c->graves);
        natsConnection_Destroy(c->nc);
        if (closed)
                relay_free(r);
        if (c->user_key) {
                /* No (re)connect can ask for a signature any more. */
                nkey_wipe(c->user_key);
                free(c->user_key);
        }
        free(c->urls);
        free(c->url_buf);
        free(c);
}

/* Bounds the ids kept between two discoveries: a flood of made-up ones must
 * not grow the daemon (a heartbeat comes from inside the system account only). */
#define KNOWN_SERVERS_MAX 4096

static int cmp_id(const void *a, const void *b) {
        return strcmp(a, b);
}

static void on_heartbeat(natsConnection *nc, natsSubscription *sub, natsMsg *m, void *closure) {
        struct relay *r = closure;
        /* $SYS.SERVER.<id>.STATSZ: the id from the subject, no payload parsed. */
        const char *subj = natsMsg_GetSubject(m);
        const char *id = subj ? subj + strlen("$SYS.SERVER.") : NULL;
        const char *dot = id ? strchr(id, '.') : NULL;
        char key[NKEY_PUBLIC_LEN + 1];
        if (dot && (size_t)(dot - id) == NKEY_PUBLIC_LEN && strcmp(dot, ".STATSZ") == 0) {
                memcpy(key, id, NKEY_PUBLIC_LEN);
                key[NKEY_PUBLIC_LEN] = 0;
                pthread_mutex_lock(&r->lock);
                if (r->primed && !r->closing && r->joined && nkey_public_type(key) == NKEY_SERVER &&
                    !bsearch(key, r->known, r->n_known, sizeof(*r->known), cmp_id) && r->n_known < KNOWN_SERVERS_MAX) {
                        r->known = xreallocarray(r->known, r->n_known + 1, sizeof(*r->known));
                        memcpy(r->known[r->n_known++], key, sizeof(key));
                        qsort(r->known, r->n_known, sizeof(*r->known), cmp_id);
                        /* Under the lock: once natsconn_close set closing, no call can come. */
                        r->joined(r->joined_userdata);
                }
                pthread_mutex_unlock(&r->lock);
        }
        natsMsg_Destroy(m);
}

int natsconn_watch_servers(struct natsconn *c, natsconn_joined_fn fn, void *userdata, char **err) {
        struct relay *r = c->relay;
        pthread_mutex_lock(&r->lock);
        r->joined = fn;
        r->joined_userdata = userdata;
        pthread_mutex_unlock(&r->lock);
        if (c->heartbeats)
                return 0;
        natsStatus st = natsConnection_Subscribe(&c->heartbeats, c->nc, "$SYS.SERVER.*.STATSZ", on_heartbeat, r);
        if (st != NATS_OK) {
                *err = xasprintf("cannot subscribe to the servers' heartbeats: %s", nats_error_text(st));
                c->heartbeats = NULL;
                return -EIO;
        }
        return 0;
}

void natsconn_servers_known(struct natsconn *c, const char *const *ids, size_t n) {
        struct relay *r = c->relay;
        pthread_mutex_lock(&r->lock);
        r->known = xreallocarray(r->known, n ? n : 1, sizeof(*r->known));
        r->n_known = 0;
        for (size_t i = 0; i < n && r->n_known < KNOWN_SERVERS_MAX; i++)
                if (strlen(ids[i]) == NKEY_PUBLIC_LEN)
                        memcpy(r->known[r->n_known++], ids[i], NKEY_PUBLIC_LEN + 1);
        qsort(r->known, r->n_known, sizeof(*r->known), cmp_id);
        r->primed = true;
        pthread_mutex_unlock(&r->lock);
}

const char *natsconn_url(const struct natsconn *c) {
        char raw[URL_MAX];
        if (natsConnection_Status(c->nc) == NATS_CONN_STATUS_CONNECTED &&
            natsConnection_GetConnectedUrl(c->nc, raw, sizeof(raw)) == NATS_OK && raw[0]) {
                url_redact(raw, c->url_buf, URL_MAX);
                return c->url_buf;
        }
        return c->urls;
}

bool natsconn_connected(const struct natsconn *c) {
        return natsConnection_Status(c->nc) == NATS_CONN_STATUS_CONNECTED;
}

void natsconn_set_controls(struct natsconn *c, const atomic_bool *cancel, _Atomic uint64_t *progress) {
        c->cancel = cancel;
        c->progress = progress;
}

static bool cancelled(const struct natsconn *c, char **err) {
        if (!c->cancel || !atomic_load(c->cancel))
                return false;
        *err = xstrdup("stopped before the end (stop requested)");
        return true;
}

static void progressed(struct natsconn *c) {
        if (c->progress)
                atomic_store(c->progress, mono_usec());
}

/* A wait of at most usec, cut into slices a stop request ends. */
static int64_t wait_msec(const struct natsconn *c, uint64_t usec) {
        return usec_to_msec(c->cancel && usec > CANCEL_SLICE_USEC ? CANCEL_SLICE_USEC : usec);
}

/* natsConnection_FlushTimeout in slices: NATS_TIMEOUT after timeout_usec, or
 * NATS_ILLEGAL_STATE when a stop was requested. */
static natsStatus flush(struct natsconn *c, uint64_t timeout_usec) {
        uint64_t deadline = deadline_after(mono_usec(), timeout_usec);
        for (;;) {
                uint64_t now = mono_usec();
                natsStatus st = natsConnection_FlushTimeout(c->nc, wait_msec(c, now < deadline ? deadline - now : 0));
                if (st != NATS_TIMEOUT)
                        return st;
                if (c->cancel && atomic_load(c->cancel))
                        return NATS_ILLEGAL_STATE;
                if (mono_usec() >= deadline)
                        return NATS_TIMEOUT;
        }
}

uint64_t natsconn_requests(const struct natsconn *c) {
        return c->requests;
}

uint64_t natsconn_request_timeout(const struct natsconn *c) {
        return c->timeout_usec;
}

void natsconn_replies_free(struct nats_reply *r, size_t n) {
        if (!r)
                return;
        for (size_t i = 0; i < n; i++)
                free(r[i].data);
        free(r);
}

static int status_errno(natsStatus st) {
        switch (st) {
        case NATS_TIMEOUT:
                return -ETIMEDOUT;
        case NATS_CONNECTION_CLOSED:
        case NATS_CONNECTION_DISCONNECTED:
        case NATS_NOT_YET_CONNECTED:
        case NATS_INVALID_SUBSCRIPTION:
        case NATS_STALE_CONNECTION:
                return -ENOTCONN;
        case NATS_NO_MEMORY:
                return -ENOMEM;
        case NATS_NOT_PERMITTED:
                return -EACCES;
        case NATS_MAX_PAYLOAD:
                return -EMSGSIZE;
        default:
                return -EIO;
        }
}

/* A subscription on a fresh inbox (or, with wildcard, on "<inbox>.*"). */
static int inbox_subscribe(struct natsconn *c, bool wildcard, char **inbox_out, natsSubscription **sub_out,
                           char **err) {
        natsInbox *inbox = NULL;
        natsStatus st = natsInbox_Create(&inbox);
        if (st != NATS_OK) {
                *err = xasprintf("cannot create an inbox: %s", nats_error_text(st));
                return status_errno(st);
        }
        char *subject = wildcard ? xasprintf("%s.*", inbox) : xstrdup(inbox);
        *inbox_out = xstrdup(inbox);
        natsInbox_Destroy(inbox);

        natsSubscription *sub = NULL;
        st = natsConnection_SubscribeSync(&sub, c->nc, subject);
        if (st == NATS_OK)
                st = natsSubscription_SetPendingLimits(sub, PENDING_MAX_MSGS, PENDING_MAX_BYTES);
        if (st != NATS_OK) {
                *err = xasprintf("cannot subscribe to %s at %s: %s", subject, natsconn_url(c), nats_error_text(st));
                natsSubscription_Destroy(sub);
                free(subject);
                free(*inbox_out);
                *inbox_out = NULL;
                return status_errno(st);
        }
        free(subject);
        *sub_out = sub;
        return 0;
}

/* cnats NUL-terminates received payloads, but an empty one may be NULL. */
static const char *msg_data(const natsMsg *m) {
        const char *d = natsMsg_GetData(m);
        return d ? d : "";
}

/* libnats before 3.6.1 (Debian 12 ships 3.4.1) has its reader thread look a
 * subscription up, let go of the lock, then use it (nats.c #637, fixed by
 * 0a7dd28): a reply that arrives just as a request ends (a stop, a gather
 * done before the last server answered) can meet a subscription another
 * thread has freed in between, and the daemon dies of SIGSEGV. So a
 * subscription is only freed once the server has answered a PING sent after
 * its UNSUB: the reader handles what comes in order, so it is past every
 * message for it by then. Until then (no answer in time: a hung server, a
 * lost connection) it waits here, freed at the next request that gets one,
 * or when the connection is closed. */
static void unsubscribe(struct natsconn *c, natsSubscription *sub) {
        if (sub) {
                (void)natsSubscription_Unsubscribe(sub);
                c->graves = xreallocarray(c->graves, c->n_graves + 1, sizeof(*c->graves));
                c->graves[c->n_graves++] = sub;
        }
        if (!c->n_graves || natsConnection_FlushTimeout(c->nc, UNSUB_FLUSH_MSEC) != NATS_OK)
                return;
        for (size_t i = 0; i < c->n_graves; i++)
                natsSubscription_Destroy(c->graves[i]);
        c->n_graves = 0;
}

int natsconn_gather_ex(struct natsconn *c, const char *subject, const void *data, size_t len,
                       const struct natsconn_gather_opts *o, struct nats_reply **replies, size_t *n, char **err) {
        *replies = NULL;
        *n = 0;
        if (len > INT32_MAX) {
                *err = xasprintf("request to %s is too large (%zu bytes)", subject, len);
                return -EMSGSIZE;
        }
        char *inbox = NULL;
        natsSubscription *sub = NULL;
        int ret = inbox_subscribe(c, false, &inbox, &sub, err);
        if (ret < 0)
                return ret;

        uint64_t start = mono_usec(), deadline = deadline_after(start, o->timeout_usec), last = 0;
        uint64_t first_deadline = o->first_usec ? deadline_after(start, o->first_usec) : deadline;
        if (first_deadline > deadline)
                first_deadline = deadline;
        struct nats_reply *v = NULL;
        size_t count = 0, cap = 0, bytes = 0, handed = 0;
        bool ended = false; /* by `want` or by the empty message */

        /* Headers would make 2.9.10 reject CLAIMS.UPDATE ("expected 3 chunks"): plain publish. */
        if (cancelled(c, err)) {
                ret = -ECANCELED;
                goto out;
        }
        natsStatus st = natsConnection_PublishRequest(c->nc, subject, inbox, data, (int)len);
        c->requests++;
        progressed(c);
        if (st == NATS_OK) {
                /* Push the request out now rather than after the flusher's pause;
                 * a timeout here only means the server is slow, which the wait
                 * below reports. */
                st = flush(c, first_deadline - start);
                if (st == NATS_TIMEOUT || st == NATS_ILLEGAL_STATE)
                        st = NATS_OK;
        }
        if (st != NATS_OK) {
                *err = xasprintf("cannot send %s to %s: %s", subject, natsconn_url(c), nats_error_text(st));
                ret = status_errno(st);
                goto out;
        }

        for (;;) {
                bool any = count + handed > 0;
                uint64_t until = any ? deadline : first_deadline;
                if (any && o->idle_usec && deadline_after(last, o->idle_usec) < until)
                        until = deadline_after(last, o->idle_usec);
                uint64_t now = mono_usec();
                if (now >= until)
                        break;
                if (cancelled(c, err)) {
                        ret = -ECANCELED;
                        goto out;
                }
                natsMsg *m = NULL;
                st = natsSubscription_NextMsg(&m, sub, wait_msec(c, until - now));
                if (st == NATS_TIMEOUT)
                        continue;
                progressed(c);
                if (st == NATS_SLOW_CONSUMER) {
                        *err = xasprintf("replies to %s were dropped (too many pending)", subject);
                        ret = -ENOBUFS;
                        goto out;
                }
                if (st == NATS_NO_RESPONDERS) {
                        if (count + handed == 0) {
                                *err = xasprintf("nobody answers %s at %s", subject, natsconn_url(c));
                                ret = -ENOENT;
                                goto out;
                        }
                        continue;
                }
                if (st != NATS_OK) {
                        *err = xasprintf("waiting for replies to %s from %s: %s", subject, natsconn_url(c),
                                         nats_error_text(st));
                        ret = status_errno(st);
                        goto out;
                }
                size_t mlen = (size_t)natsMsg_GetDataLength(m);
                if (mlen == 0 && o->stop_on_empty) {
                        natsMsg_Destroy(m);
                        ended = true;
                        break;
                }
                if (count + handed >= GATHER_MAX_REPLIES || mlen > GATHER_MAX_BYTES - bytes) {
                        natsMsg_Destroy(m);
                        *err = xasprintf("replies to %s exceed %d messages or %zu MiB; giving up", subject,
                                         GATHER_MAX_REPLIES, GATHER_MAX_BYTES >> 20);
                        ret = -E2BIG;
                        goto out;
                }
                if (o->on_reply) {
                        ret = o->on_reply(o->userdata, msg_data(m), mlen, err);
                        natsMsg_Destroy(m);
                        if (ret < 0)
                                goto out;
                        handed++;
                        if (ret > 0) {
                                ret = 0;
                                ended = true;
                                break;
                        }
                } else {
                        if (count == cap) {
                                cap = cap ? cap * 2 : 16;
                                v = xreallocarray(v, cap, sizeof(*v));
                        }
                        v[count].data = xmalloc(mlen + 1);
                        memcpy(v[count].data, msg_data(m), mlen);
                        v[count].data[mlen] = 0;
                        v[count].len = mlen;
                        count++;
                        natsMsg_Destroy(m);
                }
                bytes += mlen;
                last = mono_usec();
                if (o->want && count + handed >= o->want) {
                        ended = true;
                        break;
                }
        }

        if (!ended && (o->want || o->stop_on_empty)) {
                double secs = (double)(mono_usec() - start) / 1e6;
                if (o->stop_on_empty)
                        *err = xasprintf("%s: the reply stream from %s did not end (%zu messages in %.1fs)",
                                         subject, natsconn_url(c), count + handed, secs);
                else
                        *err = xasprintf("%s: %zu of %zu replies from %s in %.1fs", subject, count + handed,
                                         o->want, natsconn_url(c), secs);
                ret = -ETIMEDOUT;
        }
        *replies = v;
        *n = count;
        v = NULL;
        count = 0;
out:
        natsconn_replies_free(v, count);
        unsubscribe(c, sub);
        free(inbox);
        return ret;
}

int natsconn_gather(struct natsconn *c, const char *subject, const void *data, size_t len, size_t want,
                    bool stop_on_empty, uint64_t timeout_usec, struct nats_reply **replies, size_t *n, char **err) {
        struct natsconn_gather_opts o = { .want = want, .stop_on_empty = stop_on_empty, .timeout_usec = timeout_usec };
        return natsconn_gather_ex(c, subject, data, len, &o, replies, n, err);
}

enum req_state { REQ_WAITING, REQ_IN_FLIGHT, REQ_DONE };

struct pipeline_run {
        const struct natsconn_pipeline *p;
        uint8_t *state;
        uint32_t *got;
        uint64_t *deadline;
        size_t next, oldest, in_flight;
        size_t short_in_a_row; /* timed out below `want`, since the last complete one */
        char *prefix; /* "<inbox>." */
        size_t prefix_len;
};

/* "<inbox>.<index>": anything else on the subscription is ignored. */
static bool reply_index(const struct pipeline_run *run, const char *subject, size_t *index) {
        if (!subject || strncmp(subject, run->prefix, run->prefix_len) != 0)
                return false;
        const char *d = subject + run->prefix_len;
        if (!*d || (d[0] == '0' && d[1]))
                return false;
        size_t v = 0;
        for (; *d; d++) {
                if (*d < '0' || *d > '9' || v > (SIZE_MAX - 9) / 10)
                        return false;
                v = v * 10 + (size_t)(*d - '0');
        }
        if (v >= run->next)
                return false;
        *index = v;
        return true;
}

static void pipeline_dispatch(struct pipeline_run *run, natsMsg *m) {
        const struct natsconn_pipeline *p = run->p;
        size_t i;
        if (!reply_index(run, natsMsg_GetSubject(m), &i) || run->state[i] != REQ_IN_FLIGHT)
                return;
        if (run->got[i] < UINT32_MAX)
                run->got[i]++;
        bool complete = p->on_reply ? p->on_reply(p->userdata, i, msg_data(m), (size_t)natsMsg_GetDataLength(m))
                                    : run->got[i] >= p->want;
        if (complete) {
                run->state[i] = REQ_DONE;
                run->in_flight--;
                run->short_in_a_row = 0;
        }
}

/* Deadlines grow with the index (requests go out in order with one timeout),
 * so expiring from the oldest is enough and costs O(n) over the whole run. */
static void pipeline_expire(struct pipeline_run *run, uint64_t now) {
        const struct natsconn_pipeline *p = run->p;
        while (run->oldest < run->next) {
                size_t i = run->oldest;
                if (run->state[i] == REQ_IN_FLIGHT) {
                        if (run->deadline[i] > now)
                                break;
                        run->state[i] = REQ_DONE;
                        run->in_flight--;
                        run->short_in_a_row++;
                        if (p->on_timeout)
                                p->on_timeout(p->userdata, i, run->got[i]);
                }
                run->oldest++;
        }
}

static int pipeline_publish(struct natsconn *c, struct pipeline_run *run, size_t window, char **err) {
        const struct natsconn_pipeline *p = run->p;
        char reply[256];
        uint64_t now = mono_usec();
        size_t sent = 0;
        while (run->next < p->n && run->in_flight < window) {
                if (cancelled(c, err))
                        return -ECANCELED;
                size_t i = run->next;
                const char *payload = p->payloads ? p->payloads[i] : NULL;
                if (p->make_payload && !p->make_payload(p->userdata, i, &payload)) {
                        run->state[i] = REQ_DONE;
                        run->next++;
                        continue;
                }
                size_t plen = payload ? strlen(payload) : 0;
                if (plen > INT32_MAX) {
                        *err = xasprintf("request %zu to %s is too large", i, p->subjects[i]);
                        return -EMSGSIZE;
                }
                snprintf(reply, sizeof(reply), "%s%zu", run->prefix, i);
                natsStatus st = natsConnection_PublishRequest(c->nc, p->subjects[i], reply, payload, (int)plen);
                c->requests++;
                progressed(c);
                if (st != NATS_OK) {
                        *err = xasprintf("cannot send %s to %s: %s", p->subjects[i], natsconn_url(c),
                                         nats_error_text(st));
                        return status_errno(st);
                }
                run->state[i] = REQ_IN_FLIGHT;
                run->deadline[i] = deadline_after(now, p->timeout_usec);
                run->in_flight++;
                run->next++;
                sent++;
        }
        if (!sent)
                return 0;
        /* One flush per batch, not per request: the window keeps the server busy
         * during the round trip. */
        natsStatus st = flush(c, p->timeout_usec);
        if (st == NATS_ILLEGAL_STATE && cancelled(c, err))
                return -ECANCELED;
        if (st == NATS_TIMEOUT) {
                /* No PONG within the request timeout: the server is hung or gone, and
                 * every request of this batch has timed out with it. Stop here, or each
                 * later step of the pass waits out its own timeout on the event loop
                 * (and past WatchdogSec). */
                if (!natsconn_connected(c)) {
                        *err = xasprintf("connection to %s lost with %zu requests unanswered", natsconn_url(c),
                                         run->in_flight);
                        return -ENOTCONN;
                }
                *err = xasprintf("%s did not answer within %.1fs", natsconn_url(c), (double)p->timeout_usec / 1e6);
                return -ETIMEDOUT;
        }
        if (st != NATS_OK) {
                *err = xasprintf("cannot send requests to %s: %s", natsconn_url(c), nats_error_text(st));
                return status_errno(st);
        }
        return 0;
}

int natsconn_pipeline_run(struct natsconn *c, const struct natsconn_pipeline *p, char **err) {
        if (p->want == 0 || p->want > UINT32_MAX) {
                *err = xasprintf("pipeline: want must be 1..%u", UINT32_MAX);
                return -EINVAL;
        }
        if (p->n == 0)
                return 0;
        size_t window = p->window ? p->window : PIPELINE_DEFAULT_WINDOW;
        /* Refill in batches of half a window so that the flush round trip is
         * paid once per batch, not once per reply. */
        size_t batch = window / 2 ? window / 2 : 1;

        struct pipeline_run run = { .p = p };
        char *inbox = NULL;
        natsSubscription *sub = NULL;
        int ret = inbox_subscribe(c, true, &inbox, &sub, err);
        if (ret < 0)
                return ret;
        run.prefix = xasprintf("%s.", inbox);
        run.prefix_len = strlen(run.prefix);
        run.state = xcalloc(p->n, sizeof(*run.state));
        run.got = xcalloc(p->n, sizeof(*run.got));
        run.deadline = xcalloc(p->n, sizeof(*run.deadline));

        while (run.oldest < p->n) {
                if (run.next < p->n && (run.in_flight == 0 || window - run.in_flight >= batch)) {
                        ret = pipeline_publish(c, &run, window, err);
                        if (ret < 0)
                                goto out;
                }
                uint64_t now = mono_usec();
                pipeline_expire(&run, now);
                if (p->give_up_after && run.short_in_a_row >= p->give_up_after) {
                        *err = xasprintf("%zu requests in a row got fewer than %zu replies within %.1fs from %s "
                                         "(a server stopped answering?); %zu of %zu requests not finished",
                                         run.short_in_a_row, p->want, (double)p->timeout_usec / 1e6,
                                         natsconn_url(c), p->n - run.oldest, p->n);
                        ret = -ETIMEDOUT;
                        goto out;
                }
                if (run.oldest >= run.next)
                        continue;
                if (cancelled(c, err)) {
                        ret = -ECANCELED;
                        goto out;
                }
                natsMsg *m = NULL;
                natsStatus st = natsSubscription_NextMsg(&m, sub, wait_msec(c, run.deadline[run.oldest] - now));
                if (st == NATS_OK) {
                        progressed(c);
                        pipeline_dispatch(&run, m);
                        natsMsg_Destroy(m);
                } else if (st == NATS_TIMEOUT) {
                        /* Requests sent while the connection is down would only
                         * time out one by one; stop and let the owner retry. */
                        if (!natsconn_connected(c)) {
                                *err = xasprintf("connection to %s lost with %zu of %zu requests unanswered",
                                                 natsconn_url(c), p->n - run.oldest, p->n);
                                ret = -ENOTCONN;
                                goto out;
                        }
                } else if (st != NATS_NO_RESPONDERS && st != NATS_SLOW_CONSUMER) {
                        /* No responders carries no usable index, and dropped
                         * replies are lost: those requests simply time out. */
                        *err = xasprintf("waiting for replies from %s: %s", natsconn_url(c), nats_error_text(st));
                        ret = status_errno(st);
                        goto out;
                }
        }
        ret = 0;
out:
        unsubscribe(c, sub);
        free(inbox);
        free(run.prefix);
        free(run.state);
        free(run.got);
        free(run.deadline);
        return ret;
}
