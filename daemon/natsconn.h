/* The connection to the servers as a system-account user, and the request
 * patterns the system API needs: gather one reply per server, and pipelines. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "settings.h"

struct natsconn;

/* Connection state changes arrive on cnats' threads; the owner gets them here
 * (the daemon forwards them to its event loop; never touch state in it). */
typedef void (*natsconn_event_fn)(void *userdata, bool connected);

/* Connect with the settings' servers, credentials, TLS and request_timeout.
 * 0, or -EHOSTUNREACH (no server reachable: exit 69) / other negative errno with *err. */
int natsconn_open(const struct settings *s, natsconn_event_fn ev, void *userdata, struct natsconn **out, char **err);
void natsconn_close(struct natsconn *c);
const char *natsconn_url(const struct natsconn *c);
bool natsconn_connected(const struct natsconn *c);
/* The settings' request_timeout, for callers that pick their own deadlines. */
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
 * did arrive. -ENOENT when nobody listens on the subject, -E2BIG when the
 * replies exceed the bounds, -ENOTCONN: no replies returned. */
int natsconn_gather(struct natsconn *c, const char *subject, const void *data, size_t len, size_t want,
                    bool stop_on_empty, uint64_t timeout_usec, struct nats_reply **replies, size_t *n, char **err);
/* The same, and also stop once idle_usec passed without a new reply after the
 * first one (for "one reply per server" when the number of servers is unknown). */
int natsconn_gather_idle(struct natsconn *c, const char *subject, const void *data, size_t len, size_t want,
                         bool stop_on_empty, uint64_t idle_usec, uint64_t timeout_usec, struct nats_reply **replies,
                         size_t *n, char **err);
void natsconn_replies_free(struct nats_reply *r, size_t n);

/* Many requests at once: request i goes to subjects[i] with payload[i]; each
 * expects `want` replies. At most `window` requests are in flight. on_reply is
 * called on the caller's thread for every reply (with the request index);
 * requests still short of `want` replies after timeout_usec since their
 * publication are reported with on_timeout. Returns 0 or negative errno (the
 * connection failed; requests not yet reported then get no callback). Callbacks
 * must not use c. want must be >= 1; window 0 means a default. */
struct natsconn_pipeline {
        size_t n;
        const char *const *subjects;
        const char *const *payloads; /* NUL-terminated; NULL = empty */
        size_t want;
        size_t window;
        uint64_t timeout_usec;
        void (*on_reply)(void *userdata, size_t index, const char *data, size_t len);
        void (*on_timeout)(void *userdata, size_t index, size_t got);
        void *userdata;
};
int natsconn_pipeline_run(struct natsconn *c, const struct natsconn_pipeline *p, char **err);
