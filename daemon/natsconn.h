/* The connection to the servers as a system-account user, and the request
 * patterns the system API needs: gather one reply per server, and pipelines. */
#pragma once
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "settings.h"

struct natsconn;

/* Connection state changes (lost: false, back: true) arrive on cnats' callback
 * thread, one at a time; the owner gets them here (the daemon forwards them to
 * its event loop; never touch state in it). ev may be NULL. */
typedef void (*natsconn_event_fn)(void *userdata, bool connected);

/* Connect with the settings' servers, credentials, TLS and request_timeout.
 * 0, or -EHOSTUNREACH (no server reachable, or it refused us: exit 69) /
 * -EINVAL (a credentials or TLS file cannot be used) / other negative errno
 * (-ENOENT, -EACCES reading the credentials file), always with *err. After a
 * successful first connect the connection reconnects forever by itself. */
int natsconn_open(const struct settings *s, natsconn_event_fn ev, void *userdata, struct natsconn **out, char **err);
/* No event callback runs once this returned. NULL is fine. */
void natsconn_close(struct natsconn *c);
/* A server the last discovery (natsconn_servers_known) did not list showed up:
 * its first STATSZ heartbeat ($SYS.SERVER.<id>.STATSZ, sent within a second of
 * a start and then every few seconds) came. On cnats' thread, as the events. */
typedef void (*natsconn_joined_fn)(void *userdata);
/* Watch the servers' heartbeats; 0 or a negative errno with *err. */
int natsconn_watch_servers(struct natsconn *c, natsconn_joined_fn fn, void *userdata, char **err);
/* The servers a discovery found, by id: heartbeats of others are news. Before
 * the first call nothing is. */
void natsconn_servers_known(struct natsconn *c, const char *const *ids, size_t n);
/* The server connected to, else the configured list; user:password@ left out. */
const char *natsconn_url(const struct natsconn *c);
bool natsconn_connected(const struct natsconn *c);
/* A pass's controls, for the thread that runs it: once *cancel is true, every
 * wait ends within 100 ms and the request under way returns -ECANCELED (no
 * further request is sent); *progress gets the CLOCK_MONOTONIC time (usec) of
 * every request sent and reply received. Either may be NULL. */
void natsconn_set_controls(struct natsconn *c, const atomic_bool *cancel, _Atomic uint64_t *progress);
/* The settings' request_timeout, for callers that pick their own deadlines. */
/* Requests published on this connection so far. */
uint64_t natsconn_requests(const struct natsconn *c);
uint64_t natsconn_request_timeout(const struct natsconn *c);

struct nats_reply {
        char *data; /* NUL-terminated */
        size_t len;
};

/* Publish a request and gather replies until `want` arrived (0 = unknown count:
 * until the timeout, or, when stop_on_empty, until an empty message).
 * The replies array is owned by the caller (natsconn_replies_free).
 * 0 when it ended as asked; -ETIMEDOUT (with *err) when the timeout came first
 * although `want` or an empty message was expected: *replies then holds what
 * did arrive. Otherwise nothing is returned: -ENOENT nobody listens on the
 * subject, -E2BIG the replies exceed 1,000,000 messages or 512 MiB, -ENOTCONN
 * or -EIO the connection failed. */
int natsconn_gather(struct natsconn *c, const char *subject, const void *data, size_t len, size_t want,
                    bool stop_on_empty, uint64_t timeout_usec, struct nats_reply **replies, size_t *n, char **err);
/* The same with two more ways to end: "one reply per server" when the number
 * of servers is unknown (idle), and long streams such as CLAIMS.PACK that must
 * start within request_timeout but may take longer as a whole. */
struct natsconn_gather_opts {
        size_t want;           /* as natsconn_gather */
        bool stop_on_empty;    /* as natsconn_gather */
        uint64_t timeout_usec; /* the whole gather */
        uint64_t first_usec;   /* the first reply must come within this (0 = timeout_usec) */
        uint64_t idle_usec;    /* after a reply, end when no other came for this long (0 = off) */
        /* When set, each reply goes here as it arrives (on the caller's
         * thread) instead of into *replies, so that a long stream is consumed
         * while the server is still sending; a negative return (with *err)
         * ends the gather with that value, a positive one ends it as complete
         * (the caller knows no other reply can come). */
        int (*on_reply)(void *userdata, const char *data, size_t len, char **err);
        void *userdata;
};
int natsconn_gather_ex(struct natsconn *c, const char *subject, const void *data, size_t len,
                       const struct natsconn_gather_opts *o, struct nats_reply **replies, size_t *n, char **err);
void natsconn_replies_free(struct nats_reply *r, size_t n);

/* Many requests at once: request i goes to subjects[i] with payload[i]; each
 * expects `want` replies. At most `window` requests are in flight. on_reply is
 * called on the caller's thread for every reply (with the request index) and
 * says whether the request is complete: the caller attributes each reply (to
 * the server that sent it) and counts a duplicate only once. Without
 * on_reply, a request is complete after `want` replies. Requests not complete
 * timeout_usec after their publication are reported with on_timeout (got =
 * replies received). Returns 0 or negative errno (the connection failed;
 * requests not yet reported then get no callback). Callbacks must not use c.
 * want must be >= 1; window 0 means a default. */
struct natsconn_pipeline {
        size_t n;
        const char *const *subjects;
        const char *const *payloads; /* NUL-terminated; NULL = empty */
        /* Instead of payloads: asked for request i right before it is sent, so
         * that costly payloads (signed JWTs) are made while earlier requests
         * are in flight; subjects[i] is read after it returned (it may fill
         * it). false skips the request: it is never sent, and gets neither
         * callback. *payload stays valid until the run returns. */
        bool (*make_payload)(void *userdata, size_t index, const char **payload);
        size_t want;
        size_t window;
        uint64_t timeout_usec;
        bool (*on_reply)(void *userdata, size_t index, const char *data, size_t len);
        void (*on_timeout)(void *userdata, size_t index, size_t got);
        void *userdata;
        /* A server that stops answering mid-run makes every later request wait
         * out its timeout, window after window. When set, stop with -ETIMEDOUT
         * once this many requests in a row timed out short of `want`. 0 = off
         * (for requests some servers never answer, like CLAIMS.LOOKUP). */
        size_t give_up_after;
};
int natsconn_pipeline_run(struct natsconn *c, const struct natsconn_pipeline *p, char **err);
