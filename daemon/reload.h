/* Config mode: make every server read its config file again, and know when
 * each one did (VARZ config_load_time), by one of three routes:
 *   request   $SYS.REQ.SERVER.<id>.RELOAD (nats-server >= 2.10), answered
 *             once the reload is done, with the server's error if it failed;
 *   signal    SIGHUP to the PID in each pid file (any version; the sender
 *             must be allowed to signal the server's user);
 *   external  <fragments_dir>/.reload is rewritten, and something that
 *             watches it (the shipped nats-accountd-reload.path) reloads the
 *             servers; nats-accountd only waits.
 * nats-server answers SIGHUP with nothing and logs reload errors only in its
 * own log: a server counts as reloaded when its config_load_time moved past
 * the moment the fragments were written. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "natsconn.h"
#include "nkeys.h"
#include "observe.h"
#include "serverconf.h"
#include "settings.h"

#define RELOAD_MARKER ".reload"

struct reload_server {
        char id[NKEY_PUBLIC_LEN + 1];
        const char *name;  /* borrowed; may be NULL */
        int64_t before_ns; /* config_load_time as last observed */
        int64_t after_ns;  /* as seen once it moved (0 = never) */
        bool reloaded;     /* config_load_time moved past the write */
        char *error;       /* why it did not: the server's reply, a signal that failed, ... */
};

/* The route a pass takes: auto is request where every server is 2.10 or
 * newer, else signal. */
enum reload_route reload_route_pick(enum reload_route configured, const struct server_info *servers, size_t n);
const char *reload_route_name(enum reload_route r);
/* True for "2.10.0" and later (a RELOAD request exists). */
bool reload_version_has_request(const char *version);

/* Reload every server of v (their before_ns filled) over route and wait until
 * each one's config_load_time is past since_ns (CLOCK_REALTIME, ns), at most
 * a bounded time. confs: the servers' config files, for their pid files.
 * Each server's outcome goes into v[i]. 0 when the reloads were attempted
 * (some may have failed); negative errno when the connection failed (*err). */
int reload_servers(struct natsconn *c, const struct settings *s, enum reload_route route,
                   struct serverconf *const *confs, size_t n_confs, struct reload_server *v, size_t n,
                   int64_t since_ns, char **err);
void reload_servers_clear(struct reload_server *v, size_t n);
/* The pid files the signal route reads: [config] pid_file, else each server
 * config's pid_file (relative to its folder). NULL-terminated, allocated;
 * NULL (with *why) when a server config sets none. */
char **reload_pid_files(const struct settings *s, struct serverconf *const *confs, size_t n_confs, char **why);
/* Now on CLOCK_REALTIME in ns: the clock nats-server's config_load_time uses. */
int64_t reload_now_ns(void);
