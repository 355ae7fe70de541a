#include "reload.h"

#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "observe-parse.h"
#include "util.h"

#define USEC_PER_SEC UINT64_C(1000000)
/* A reload of a large config takes a while; the request waits for it. */
#define REQUEST_REPLY_MIN_USEC (10 * USEC_PER_SEC)
/* How long a signalled server gets to show a new config_load_time. */
#define SIGNAL_WAIT_USEC (10 * USEC_PER_SEC)
/* An external reloader (a systemd path unit) starts a unit first. */
#define EXTERNAL_WAIT_USEC (30 * USEC_PER_SEC)
/* A path unit that was busy with the previous reload misses a change made
 * meanwhile: the marker is written again after this long without a reload. */
#define EXTERNAL_NUDGE_USEC (2 * USEC_PER_SEC)
/* A reload takes a few milliseconds: ask soon, then less often. */
#define POLL_FIRST_USEC (2u * 1000)
#define POLL_MAX_USEC (50u * 1000)
#define PID_FILE_MAX 64

int64_t reload_now_ns(void) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

bool reload_version_has_request(const char *version) {
        int major = 0, minor = 0;
        if (!version || sscanf(version, "%d.%d", &major, &minor) != 2)
                return false;
        return major > 2 || (major == 2 && minor >= 10);
}

enum reload_route reload_route_pick(enum reload_route configured, const struct server_info *servers, size_t n) {
        if (configured != RELOAD_AUTO)
                return configured;
        for (size_t i = 0; i < n; i++)
                if (!reload_version_has_request(servers[i].version))
                        return RELOAD_SIGNAL;
        return n ? RELOAD_REQUEST : RELOAD_SIGNAL;
}

const char *reload_route_name(enum reload_route r) {
        static const char *const names[] = { "auto", "request", "signal", "external" };
        return names[r];
}

static void set_error(struct reload_server *s, char *msg) {
        if (s->error)
                free(msg);
        else
                s->error = msg;
}

void reload_servers_clear(struct reload_server *v, size_t n) {
        for (size_t i = 0; i < n; i++) {
                free(v[i].error);
                v[i].error = NULL;
        }
}

/* ---- request ---- */

/* The reply: {"server":{...}} when the reload worked, {"error":{...}} when not. */
static char *reload_reply_problem(const char *data, size_t len) {
        if (len == 0)
                return xstrdup("empty reply to the RELOAD request");
        if (len > OBSERVE_REPLY_MAX)
                return xasprintf("reply to the RELOAD request of %zu bytes", len);
        json_error_t e;
        json_t *doc = json_loadb(data, len, 0, &e);
        if (!json_is_object(doc)) {
                json_decref(doc);
                return xasprintf("reply to the RELOAD request is not a JSON object: %s", e.text);
        }
        const json_t *err = json_object_get(doc, "error");
        char *problem = NULL;
        if (err) {
                const char *d = json_string_value(json_object_get(err, "description"));
                problem = xasprintf("refused the reload: %.512s", d ? d : "(no description)");
        }
        json_decref(doc);
        return problem;
}

static int request_reloads(struct natsconn *c, struct reload_server *v, size_t n, char **err) {
        uint64_t timeout = natsconn_request_timeout(c);
        if (timeout < REQUEST_REPLY_MIN_USEC)
                timeout = REQUEST_REPLY_MIN_USEC;
        for (size_t i = 0; i < n; i++) {
                char subject[128];
                snprintf(subject, sizeof(subject), "$SYS.REQ.SERVER.%s.RELOAD", v[i].id);
                struct nats_reply *rep = NULL;
                size_t k = 0;
                char *gerr = NULL;
                int r = natsconn_gather(c, subject, NULL, 0, 1, false, timeout, &rep, &k, &gerr);
                if (r == 0 && k == 1) {
                        char *problem = reload_reply_problem(rep[0].data, rep[0].len);
                        if (problem)
                                set_error(&v[i], problem);
                } else if (r == -ENOENT) {
                        set_error(&v[i], xstrdup("has no RELOAD request (nats-server before 2.10): use reload = "
                                                 "signal or external"));
                } else if (r == -ETIMEDOUT || r == 0) {
                        set_error(&v[i], xasprintf("did not answer the RELOAD request within %.1fs",
                                                   (double)timeout / 1e6));
                } else {
                        natsconn_replies_free(rep, k);
                        *err = gerr;
                        return r;
                }
                natsconn_replies_free(rep, k);
                free(gerr);
        }
        return 0;
}

/* ---- signal ---- */

static int read_pid(const char *path, pid_t *pid, char **why) {
        char *text = NULL;
        size_t len = 0;
        int r = file_read_all(path, PID_FILE_MAX, &text, &len);
        if (r < 0) {
                *why = xasprintf("cannot read pid file %s: %s%s", path, strerror(-r),
                                 r == -ENOENT ? " (is nats-server running, with pid_file set?)" : "");
                return r;
        }
        char *end = NULL;
        errno = 0;
        long v = strtol(text, &end, 10);
        while (end && (*end == '\n' || *end == '\r' || *end == ' '))
                end++;
        bool ok = errno == 0 && end && *end == 0 && v > 1 && v <= 4194304;
        free(text);
        if (!ok) {
                *why = xasprintf("pid file %s does not hold a process id", path);
                return -EINVAL;
        }
        *pid = (pid_t)v;
        return 0;
}

char **reload_pid_files(const struct settings *s, struct serverconf *const *confs, size_t n_confs, char **why) {
        char **v = xcalloc(n_confs + s->n_pid_files + 1, sizeof(*v));
        size_t k = 0;
        if (s->n_pid_files) {
                for (size_t i = 0; i < s->n_pid_files; i++)
                        v[k++] = xstrdup(s->pid_files[i]);
                return v;
        }
        for (size_t i = 0; i < n_confs; i++) {
                if (!confs[i]->pid_file) {
                        *why = xasprintf("reload = signal needs a pid file: %s sets no pid_file, and [config] "
                                         "pid_file is not set",
                                         confs[i]->path);
                        for (size_t j = 0; j < k; j++)
                                free(v[j]);
                        free(v);
                        return NULL;
                }
                /* nats-server takes it from its working folder; its config's folder is the best guess. */
                char *dir = path_dirname(confs[i]->path);
                v[k++] = path_join(dir, confs[i]->pid_file);
                free(dir);
        }
        return v;
}

/* One failure for every server: the signal route cannot tell which PID is which server. */
static void fail_all(struct reload_server *v, size_t n, const char *why) {
        for (size_t i = 0; i < n; i++)
                set_error(&v[i], xstrdup(why));
}

/* A pid file outlives a killed server, and its PID may belong to another
 * process by now: SIGHUP (whose default action is to end a process) goes
 * only to one that is a nats-server by its name, or that was started with
 * one of the servers' config files. */
static bool pid_is_server(pid_t pid, struct serverconf *const *confs, size_t n_confs, char **why) {
        char path[64], *text = NULL;
        size_t len = 0;
        snprintf(path, sizeof(path), "/proc/%d/comm", (int)pid);
        if (file_read_all(path, 256, &text, &len) < 0) {
                /* Hidden (another user's, under ProtectProc=invisible): kill()
                 * will be refused and says so; gone: nothing to signal. */
                if (kill(pid, 0) < 0 && errno == EPERM)
                        return true;
                *why = xasprintf("no process %d (a stale pid file?)", (int)pid);
                return false;
        }
        bool ok = str_startswith(text, "nats-server");
        free(text);
        snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
        if (!ok && file_read_all(path, 64 * 1024, &text, &len) == 0) {
                for (const char *arg = text; !ok && arg < text + len; arg += strlen(arg) + 1)
                        for (size_t i = 0; !ok && i < n_confs; i++)
                                ok = strcmp(arg, confs[i]->path) == 0;
                free(text);
        }
        if (!ok)
                *why = xasprintf("process %d is not a nats-server (its name is not nats-server and no server "
                                 "config is on its command line): a stale pid file?",
                                 (int)pid);
        return ok;
}

/* SIGHUP to every pid file's process. Which PID is which server is not
 * known: when none could be signalled every server fails at once, else the
 * problems wait beside the servers that do not reload (a stopped server's
 * stale pid file is no reason to fail the others). */
static void signal_reloads(const struct settings *s, struct serverconf *const *confs, size_t n_confs,
                           struct reload_server *v, size_t n, char **problems) {
        char *why = NULL;
        char **files = reload_pid_files(s, confs, n_confs, &why);
        if (!files) {
                fail_all(v, n, why);
                free(why);
                return;
        }
        size_t sent = 0;
        for (char **f = files; *f; f++) {
                pid_t pid = 0;
                char *not_server = NULL;
                if (read_pid(*f, &pid, &why) == 0 && !pid_is_server(pid, confs, n_confs, &not_server)) {
                        why = xasprintf("pid file %s: %s", *f, not_server);
                        free(not_server);
                } else if (!why) {
                        if (kill(pid, SIGHUP) == 0) {
                                sent++;
                                continue;
                        }
                        int e = errno;
                        why = e == EPERM ? xasprintf("not allowed to send SIGHUP to nats-server (PID %d from %s): it "
                                                     "runs as another user; use reload = request (nats-server >= "
                                                     "2.10) or reload = external with nats-accountd-reload.path",
                                                     (int)pid, *f)
                                         : xasprintf("cannot send SIGHUP to PID %d from %s: %s", (int)pid, *f,
                                                     strerror(e));
                }
                char *all = *problems ? xasprintf("%s; %s", *problems, why) : xstrdup(why);
                free(*problems);
                *problems = all;
                free(why);
                why = NULL;
        }
        if (sent == 0 && *problems) {
                fail_all(v, n, *problems);
                free(*problems);
                *problems = NULL;
        }
        for (char **f = files; *f; f++)
                free(*f);
        free(files);
}

/* ---- external ---- */

static int touch_marker(const struct settings *s, char **why) {
        char *path = path_join(s->fragments_dir, RELOAD_MARKER);
        char *text = xasprintf("# nats-accountd asks for a reload of nats-server: %lld\n", (long long)reload_now_ns());
        int r = file_write_atomic(path, text, strlen(text), 0644);
        if (r < 0)
                *why = xasprintf("cannot write %s: %s", path, strerror(-r));
        free(text);
        free(path);
        return r;
}

/* ---- waiting ---- */

struct varz_ctx {
        struct reload_server *v;
        size_t *index; /* request -> server */
        int64_t since_ns;
};

/* Each request goes to one server (by id): its one reply completes it. */
static bool varz_reply(void *userdata, size_t i, const char *data, size_t len) {
        struct varz_ctx *x = userdata;
        struct reload_server *s = &x->v[x->index[i]];
        struct server_info info;
        char *why = NULL;
        if (observe_parse_varz(data, len, &info, &why) < 0) {
                free(why);
                return true;
        }
        if (strcmp(info.id, s->id) == 0 && info.config_load_ns > s->before_ns && info.config_load_ns >= x->since_ns) {
                s->reloaded = true;
                s->after_ns = info.config_load_ns;
        }
        server_info_clear(&info);
        return true;
}

/* One VARZ to each server not yet seen reloaded. */
static int poll_servers(struct natsconn *c, struct reload_server *v, size_t n, int64_t since_ns, char **err) {
        size_t *index = xcalloc(n, sizeof(*index));
        char (*subjects_buf)[128] = xcalloc(n, sizeof(*subjects_buf));
        const char **subjects = xcalloc(n, sizeof(*subjects));
        size_t k = 0;
        for (size_t i = 0; i < n; i++) {
                if (v[i].reloaded || v[i].error)
                        continue;
                snprintf(subjects_buf[k], sizeof(subjects_buf[k]), "$SYS.REQ.SERVER.%s.VARZ", v[i].id);
                subjects[k] = subjects_buf[k];
                index[k++] = i;
        }
        struct varz_ctx x = { .v = v, .index = index, .since_ns = since_ns };
        struct natsconn_pipeline p = {
                .n = k,
                .subjects = subjects,
                .want = 1,
                .timeout_usec = natsconn_request_timeout(c),
                .on_reply = varz_reply,
                .userdata = &x,
        };
        int r = k ? natsconn_pipeline_run(c, &p, err) : 0;
        free(index);
        free(subjects_buf);
        free(subjects);
        return r;
}

static bool all_done(const struct reload_server *v, size_t n) {
        for (size_t i = 0; i < n; i++)
                if (!v[i].reloaded && !v[i].error)
                        return false;
        return true;
}

int reload_servers(struct natsconn *c, const struct settings *s, enum reload_route route,
                   struct serverconf *const *confs, size_t n_confs, struct reload_server *v, size_t n,
                   int64_t since_ns, char **err) {
        for (size_t i = 0; i < n; i++) {
                v[i].reloaded = false;
                v[i].after_ns = 0;
                free(v[i].error);
                v[i].error = NULL;
        }
        char *why = NULL, *problems = NULL;
        uint64_t wait = SIGNAL_WAIT_USEC;
        switch (route) {
        case RELOAD_AUTO: /* picked before */
        case RELOAD_REQUEST: {
                int r = request_reloads(c, v, n, err);
                if (r < 0)
                        return r;
                break;
        }
        case RELOAD_SIGNAL:
                signal_reloads(s, confs, n_confs, v, n, &problems);
                break;
        case RELOAD_EXTERNAL:
                wait = EXTERNAL_WAIT_USEC;
                if (touch_marker(s, &why) < 0) {
                        fail_all(v, n, why);
                        free(why);
                }
                break;
        }
        if (wait < natsconn_request_timeout(c))
                wait = natsconn_request_timeout(c);
        uint64_t start = mono_usec(), nudged = start, pause = POLL_FIRST_USEC;
        for (;;) {
                int r = poll_servers(c, v, n, since_ns, err);
                if (r < 0) {
                        free(problems);
                        return r;
                }
                uint64_t now = mono_usec();
                if (all_done(v, n) || now - start >= wait)
                        break;
                if (route == RELOAD_EXTERNAL && now - nudged >= EXTERNAL_NUDGE_USEC) {
                        nudged = now;
                        if (touch_marker(s, &why) < 0) {
                                fail_all(v, n, why);
                                free(why);
                                why = NULL;
                        }
                }
                /* nats-server announces no reload: its config_load_time is
                 * asked again, at a short interval, within the bound above. */
                struct timespec ts = { 0, (long)pause * 1000 };
                nanosleep(&ts, NULL);
                pause = pause * 2 < POLL_MAX_USEC ? pause * 2 : POLL_MAX_USEC;
        }
        for (size_t i = 0; i < n; i++)
                if (!v[i].reloaded && !v[i].error)
                        v[i].error = xasprintf(
                                "did not reload within %.0fs (its config_load_time did not move)%s%s",
                                (double)wait / 1e6,
                                route == RELOAD_EXTERNAL ? ": is nats-accountd-reload.path enabled?"
                                : problems               ? ": "
                                : route == RELOAD_SIGNAL ? ": see its log for the reason"
                                                         : "",
                                problems ? problems : "");
        free(problems);
        return 0;
}
