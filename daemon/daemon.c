#include "daemon.h"

#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <time.h>
#include <sysexits.h>
#include <sodium.h>
#include <systemd/sd-daemon.h>
#include <systemd/sd-event.h>
#include <unistd.h>

#include "accounts.h"
#include "apply.h"
#include "backend.h"
#include "diff.h"
#include "log.h"
#include "natsconn.h"
#include "observe.h"
#include "report.h"
#include "secrets.h"
#include "settings.h"
#include "units.h"
#include "util.h"

#define USEC_PER_MSEC UINT64_C(1000)
#define USEC_PER_SEC UINT64_C(1000000)
/* A trigger right after a pass waits this long, so a burst of saves makes one pass. */
#define BURST_WINDOW_USEC (100 * USEC_PER_MSEC)
#define BURST_DELAY_USEC (50 * USEC_PER_MSEC)
#define RETRY_MIN_USEC (1 * USEC_PER_SEC)
#define RETRY_MAX_USEC (60 * USEC_PER_SEC)
/* Accounts an incremental pass looks at; an edit touching more gets a full pass. */
#define PENDING_MAX 1024

enum nats_event { NATS_EVENT_LOST = 1, NATS_EVENT_RESTORED = 2 };

struct daemon {
        sd_event *ev;
        const char *config_path;
        struct settings *settings;
        struct accounts *accounts; /* the last good file */
        struct backend *backend;   /* the mode: observes, applies, verifies */
        struct natsconn *nc;

        int event_fd;
        atomic_int nats_events; /* written by cnats' threads, read by the loop */

        sd_event_source *pass_src, *resync_src, *retry_src, *inotify_src, *event_src;
        char *watch_dir, *watch_name;
        struct file_watch **file_watches; /* the backend's other files */
        size_t n_file_watches;

        /* What the next pass has to do. */
        bool need_full, file_changed, reload_settings, reloading;
        char **pending; /* names to re-check in an incremental pass */
        size_t n_pending;

        unsigned retry_attempt;
        uint64_t last_pass_start;
        bool ready_sent, waiting_logged;
        unsigned long passes;
        int exit_code;
};

/* ---- small helpers ---- */

static uint64_t now_usec(struct daemon *d) {
        uint64_t t = 0;
        sd_event_now(d->ev, CLOCK_MONOTONIC, &t);
        return t;
}

/* The clock itself: sd_event_now() stays at the loop iteration's wake-up for the
 * whole pass, so it cannot time one. */
static uint64_t clock_usec(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * USEC_PER_SEC + (uint64_t)ts.tv_nsec / 1000u;
}

static void status(struct daemon *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void status(struct daemon *d, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        char *s = xvasprintf(fmt, ap);
        va_end(ap);
        sd_notifyf(0, "STATUS=%s", s);
        log_debug("status: %s", s);
        free(s);
}

static void pending_add(struct daemon *d, const char *name) {
        for (size_t i = 0; i < d->n_pending; i++)
                if (strcmp(d->pending[i], name) == 0)
                        return;
        d->pending = xreallocarray(d->pending, d->n_pending + 1, sizeof(*d->pending));
        d->pending[d->n_pending++] = xstrdup(name);
}

/* Without the duplicate check: a pass reports each account once, into a list
 * it emptied when it started. */
static void pending_append(struct daemon *d, const char *name) {
        d->pending = xreallocarray(d->pending, d->n_pending + 1, sizeof(*d->pending));
        d->pending[d->n_pending++] = xstrdup(name);
}

static void pending_clear(struct daemon *d) {
        for (size_t i = 0; i < d->n_pending; i++)
                free(d->pending[i]);
        free(d->pending);
        d->pending = NULL;
        d->n_pending = 0;
}

static int arm_timer(struct daemon *d, sd_event_source **src, uint64_t usec_from_now, sd_event_time_handler_t cb) {
        /* From the clock, not the loop's wake-up: a retry armed after a pass that
         * waited out request_timeout would otherwise fire at once. */
        uint64_t when = clock_usec() + usec_from_now;
        if (*src) {
                sd_event_source_set_time(*src, when);
                return sd_event_source_set_enabled(*src, SD_EVENT_ONESHOT);
        }
        /* Accuracy 1 us: the default (0) lets sd-event defer a wake-up by up to
         * 250 ms, which every lone edit would then wait. */
        return sd_event_add_time(d->ev, src, CLOCK_MONOTONIC, when, 1, cb, d);
}

static int on_pass_timer(sd_event_source *s, uint64_t usec, void *userdata);

/* Triggers coalesce: an armed pass is not moved; right after a pass, wait a little. */
static void schedule_pass(struct daemon *d) {
        int enabled = SD_EVENT_OFF;
        if (d->pass_src)
                sd_event_source_get_enabled(d->pass_src, &enabled);
        if (enabled != SD_EVENT_OFF)
                return;
        uint64_t now = now_usec(d);
        uint64_t delay = d->last_pass_start && now - d->last_pass_start < BURST_WINDOW_USEC ? BURST_DELAY_USEC : 0;
        arm_timer(d, &d->pass_src, delay, on_pass_timer);
}

static void fields_for(const struct plan_entry *e, struct log_field f[3], const char *action) {
        f[0] = (struct log_field){ "NATS_ACCOUNT", e->decl->name };
        f[1] = (struct log_field){ "NATS_ACCOUNT_KEY", e->key[0] ? e->key : NULL };
        f[2] = (struct log_field){ "NATS_ACTION", action };
}

static char *changes_text(const struct plan_entry *e) {
        char *s = xstrdup("");
        for (size_t i = 0; i < e->n_changes; i++) {
                char buf[128];
                report_change(&e->changes[i], buf, sizeof(buf));
                char *t = xasprintf("%s%s%s", s, i ? ", " : "", buf);
                free(s);
                s = t;
        }
        return s;
}

/* ---- files ---- */

static void log_diags(const struct diag_list *dl, const char *what) {
        for (size_t i = 0; i < dl->n; i++) {
                const struct diag *e = &dl->v[i];
                char line[16], col[16];
                snprintf(line, sizeof(line), "%d", e->line);
                snprintf(col, sizeof(col), "%d", e->column);
                struct log_field f[] = {
                        { "CONFIG_FILE", e->file },
                        { "CONFIG_LINE", e->line ? line : NULL },
                        { "CONFIG_COLUMN", e->column ? col : NULL },
                };
                char *text = diag_format(e);
                log_event(LOG_ERR, MSGID_FILE_REJECTED, f, ARRAY_SIZE(f), "%s", text);
                free(text);
        }
        if (dl->dropped)
                log_error("%zu more errors not shown", dl->dropped);
        log_error("%s", what);
}

/* Settings that are valid but have no effect. */
static void log_settings_warnings(const struct settings *s) {
        for (size_t i = 0; i < s->warnings.n; i++) {
                const struct diag *e = &s->warnings.v[i];
                char line[16];
                snprintf(line, sizeof(line), "%d", e->line);
                struct log_field f[] = { { "CONFIG_FILE", e->file }, { "CONFIG_LINE", e->line ? line : NULL } };
                char *text = diag_format(e);
                log_event(LOG_WARNING, NULL, f, ARRAY_SIZE(f), "%s", text);
                free(text);
        }
}

/* Parse a new accounts file; on success swap it in and queue the accounts it changed. */
static void reload_accounts(struct daemon *d) {
        struct diag_list dl = { 0 };
        struct accounts *a = NULL;
        struct accounts_delta delta;
        int r = accounts_load_update(d->settings->accounts_file, d->settings->mode, d->accounts, &a, &delta, &dl);
        if (r < 0) {
                if (r == -ENOENT) {
                        struct log_field f[] = { { "CONFIG_FILE", d->settings->accounts_file } };
                        log_event(LOG_ERR, MSGID_FILE_REJECTED, f, 1,
                                  "%s is missing; keeping the last good file in force (nothing is disabled)",
                                  d->settings->accounts_file);
                } else {
                        log_diags(&dl, "accounts file rejected; keeping the last good file in force");
                }
                diag_list_clear(&dl);
                return;
        }
        diag_list_clear(&dl);
        /* An edit of a few accounts re-read only those, and delta lists the
         * ones that differ (d->accounts may have been taken over: not read
         * then); after a whole read, each is compared. */
        size_t changed = 0, n_check = delta.partial ? delta.n : a->n;
        for (size_t k = 0; k < n_check; k++) {
                const struct account_decl *decl = &a->v[delta.partial ? delta.changed[k] : k];
                const struct account_decl *old =
                        d->accounts && !delta.partial ? accounts_find(d->accounts, decl->name) : NULL;
                if (old && account_decl_equal(old, decl))
                        continue;
                changed++;
                /* Past this many, one full pass is cheaper than asking for each. */
                if (d->n_pending >= PENDING_MAX)
                        d->need_full = true;
                if (!d->need_full)
                        pending_add(d, decl->name);
        }
        if (d->need_full)
                pending_clear(d);
        log_event(LOG_DEBUG, NULL, NULL, 0, "accounts file read: %zu accounts, %zu changed", a->n, changed);
        accounts_delta_clear(&delta);
        accounts_free(d->accounts);
        d->accounts = a;
}

static int setup_watch(struct daemon *d);
static void setup_file_watches(struct daemon *d);

static bool same_text(const char *a, const char *b) {
        return a == b || (a && b && strcmp(a, b) == 0);
}

static bool connection_settings_differ(const struct settings *a, const struct settings *b) {
        return !same_text(a->servers, b->servers) || !same_text(a->credentials, b->credentials) ||
               !same_text(a->tls_ca, b->tls_ca) || !same_text(a->tls_cert, b->tls_cert) ||
               !same_text(a->tls_key, b->tls_key) || a->request_timeout_usec != b->request_timeout_usec;
}

/* SIGHUP: settings and signing key anew; a bad new file keeps the old ones. */
static void reload_settings(struct daemon *d) {
        struct diag_list dl = { 0 };
        struct settings *s = NULL;
        if (settings_load(d->config_path, &s, &dl) < 0) {
                log_diags(&dl, "settings file rejected; keeping the running settings");
                diag_list_clear(&dl);
                return;
        }
        diag_list_clear(&dl);
        char *err = NULL;
        if (s->mode != d->settings->mode) {
                log_error("%s: mode changed to %s; restart the service to switch modes; keeping the running settings",
                          s->path, s->mode == ACCOUNTS_CONFIG ? "config" : "operator");
                settings_free(s);
                return;
        }
        if (d->backend->ops->configure(d->backend, s, &err) < 0) {
                log_error("%s; keeping the running settings", err);
                free(err);
                settings_free(s);
                return;
        }
        log_settings_warnings(s);
        if (connection_settings_differ(d->settings, s) && d->nc) {
                log_info("connection settings changed: reconnecting");
                natsconn_close(d->nc);
                d->nc = NULL;
        }
        bool moved = !same_text(d->settings->accounts_file, s->accounts_file);
        log_set_max_priority((int)s->log_level);
        settings_free(d->settings);
        d->settings = s;
        setup_file_watches(d);
        if (moved) {
                log_notice("accounts file is now %s", s->accounts_file);
                int r = setup_watch(d);
                if (r < 0)
                        log_error("cannot watch %s: %s; edits are picked up on reload only", d->watch_dir,
                                  strerror(-r));
        }
}

/* ---- the pass ---- */

static void on_nats_event(void *userdata, bool connected) {
        /* cnats' thread: only flag it and wake the loop. */
        struct daemon *d = userdata;
        atomic_fetch_or(&d->nats_events, connected ? NATS_EVENT_RESTORED : NATS_EVENT_LOST);
        uint64_t one = 1;
        ssize_t k = write(d->event_fd, &one, sizeof(one));
        (void)k;
}

static bool ensure_connected(struct daemon *d) {
        if (d->nc)
                return true;
        char *err = NULL;
        int r = natsconn_open(d->settings, on_nats_event, d, &d->nc, &err);
        if (r < 0) {
                if (!d->waiting_logged) {
                        struct log_field f[] = { { "NATS_SERVER", d->settings->servers } };
                        log_event(LOG_WARNING, MSGID_SERVER_LOST, f, 1, "%s", err ? err : strerror(-r));
                        d->waiting_logged = true;
                }
                free(err);
                d->nc = NULL;
                return false;
        }
        if (d->waiting_logged) {
                struct log_field f[] = { { "NATS_SERVER", natsconn_url(d->nc) } };
                log_event(LOG_NOTICE, MSGID_SERVER_RESTORED, f, 1, "connected to %s", natsconn_url(d->nc));
        }
        d->waiting_logged = false;
        d->need_full = true;
        return true;
}

struct pass_result {
        struct daemon *d;
        uint64_t requests_before;
        size_t checked, changed, failed, retryable;
        bool connection_failed;
};

static void log_done(void *userdata, const struct plan_entry *e, bool ok) {
        struct pass_result *res = userdata;
        static const char *const msgids[] = { MSGID_ACCOUNT_CREATED, MSGID_ACCOUNT_ENABLED, MSGID_ACCOUNT_UPDATED,
                                              MSGID_ACCOUNT_DISABLED };
        static const char *const verbs[] = { "created", "enabled", "updated", "disabled" };
        struct log_field f[3];
        if (!ok) {
                fields_for(e, f, NULL);
                log_event(LOG_ERR, MSGID_ACCOUNT_FAILED, f, 3, "%s: %s", e->decl->name, e->error);
                res->failed++;
                res->retryable++;
                pending_append(res->d, e->decl->name); /* retried alone after the backoff */
                return;
        }
        fields_for(e, f, plan_action_name(e->action));
        char *ch = changes_text(e);
        log_event(LOG_INFO, msgids[e->action], f, 3, "%s %s%s%s", e->decl->name, verbs[e->action], *ch ? ": " : "", ch);
        free(ch);
        res->changed++;
}

static void log_plan_problems(const struct plan *p, struct pass_result *res) {
        for (size_t i = 0; i < p->n; i++) {
                const struct plan_entry *e = &p->v[i];
                struct log_field f[3];
                fields_for(e, f, NULL);
                for (size_t k = 0; k < e->n_warnings; k++)
                        log_event(LOG_WARNING, NULL, f, 3, "%s: %s", e->decl->name, e->warnings[k]);
                if (e->action == PLAN_ERROR) {
                        log_event(LOG_ERR, MSGID_ACCOUNT_FAILED, f, 3, "%s: %s", e->decl->name, e->error);
                        res->failed++;
                }
        }
}

/* Observe, diff, apply and verify a's accounts: the whole file (whole), or
 * the few an edit touched. -ESTALE: the backend needs a whole pass first. */
static int reconcile(struct daemon *d, const struct accounts *a, bool whole, struct pass_result *res) {
        char *err = NULL;
        struct plan *p = NULL;
        struct backend *b = d->backend;
        int r = b->ops->plan(b, d->nc, a, whole, &p, &err);
        if (r == -ESTALE)
                return r;
        if (r == 0) {
                res->checked += p->n;
                log_plan_problems(p, res);
                r = b->ops->apply(b, d->nc, p, log_done, res, &err);
        }
        if (r < 0) {
                log_error("%s", err ? err : strerror(-r));
                if (r != -EACCES)
                        res->connection_failed = true;
                else
                        res->failed++;
        }
        free(err);
        plan_free(p);
        b->ops->rest(b);
        return r;
}

static int full_pass(struct daemon *d, struct pass_result *res) {
        d->need_full = false;
        pending_clear(d);
        return reconcile(d, d->accounts, true, res);
}

/* Only the accounts an edit touched: a constant number of requests each. */
static int incremental_pass(struct daemon *d, struct pass_result *res) {
        struct accounts sub = { .file = d->accounts->file, .v = xcalloc(d->n_pending + 1, sizeof(*sub.v)) };
        for (size_t i = 0; i < d->n_pending; i++) {
                const struct account_decl *decl = accounts_find(d->accounts, d->pending[i]);
                if (decl) /* else removed from the file: left as it is */
                        sub.v[sub.n++] = *decl;
        }
        pending_clear(d);
        int r = reconcile(d, &sub, false, res);
        free(sub.v);
        /* A name the last sweep did not see may exist by now: look at everything. */
        if (r == -ESTALE)
                r = full_pass(d, res);
        return r;
}

static uint64_t backoff_usec(unsigned attempt) {
        uint64_t t = RETRY_MIN_USEC;
        for (unsigned i = 0; i < attempt && t < RETRY_MAX_USEC; i++)
                t *= 2;
        if (t > RETRY_MAX_USEC)
                t = RETRY_MAX_USEC;
        /* +-20% jitter so that many daemons do not retry in step. */
        uint64_t span = t / 5;
        return t - span + (uint64_t)randombytes_uniform((uint32_t)(2 * span + 1));
}

static int on_retry_timer(sd_event_source *s, uint64_t usec, void *userdata);

static void finish_pass(struct daemon *d, const struct pass_result *res, uint64_t started) {
        uint64_t took = clock_usec() - started;
        uint64_t requests = d->nc ? natsconn_requests(d->nc) : 0;
        requests = requests >= res->requests_before ? requests - res->requests_before : requests;
        struct log_field f[] = { { "NATS_SERVER", d->nc ? natsconn_url(d->nc) : d->settings->servers } };
        log_event(LOG_DEBUG, MSGID_PASS_FINISHED, f, 1,
                  "pass %lu finished in %.3f ms: %zu accounts checked, %zu changed, %zu failed, %llu requests",
                  d->passes, (double)took / 1000.0, res->checked, res->changed, res->failed,
                  (unsigned long long)requests);
        if (res->connection_failed || res->retryable) {
                uint64_t wait = backoff_usec(d->retry_attempt++);
                double w = (double)wait / USEC_PER_SEC;
                if (res->connection_failed)
                        status(d, "waiting for %s, retry in %.1fs", d->settings->servers, w);
                else
                        status(d, "%zu account%s failed, retry in %.1fs", res->failed, res->failed == 1 ? "" : "s", w);
                arm_timer(d, &d->retry_src, wait, on_retry_timer);
        } else {
                d->retry_attempt = 0;
                if (d->retry_src)
                        sd_event_source_set_enabled(d->retry_src, SD_EVENT_OFF);
                if (res->failed)
                        status(d, "%zu of %zu accounts failed; see the journal", res->failed, d->accounts->n);
                else
                        status(d, "in sync: %zu account%s", d->accounts->n, d->accounts->n == 1 ? "" : "s");
        }
        if (!d->ready_sent || d->reloading) {
                sd_notify(0, "READY=1");
                d->ready_sent = true;
                d->reloading = false;
        }
}

static void run_pass(struct daemon *d) {
        uint64_t started = clock_usec();
        d->last_pass_start = now_usec(d);
        d->passes++;
        log_event(LOG_DEBUG, MSGID_PASS_STARTED, NULL, 0, "pass %lu started%s%s%s", d->passes,
                  d->need_full ? " (full)" : "", d->file_changed ? " (file changed)" : "",
                  d->reload_settings ? " (reload)" : "");
        if (d->reload_settings) {
                d->reload_settings = false;
                reload_settings(d);
        }
        if (d->file_changed) {
                d->file_changed = false;
                reload_accounts(d);
        }
        struct pass_result res = { .d = d };
        if (!ensure_connected(d)) {
                res.connection_failed = true;
        } else {
                res.requests_before = natsconn_requests(d->nc);
                if (d->need_full)
                        full_pass(d, &res);
                else if (d->n_pending)
                        incremental_pass(d, &res);
        }
        if (res.connection_failed)
                d->need_full = true;
        finish_pass(d, &res, started);
        /* Give back the pages the pass freed (after its log lines, off the
         * path of an edit): the heap is otherwise reused all over and stays
         * as resident as the largest pass made it. */
        malloc_trim(0);
}

/* ---- event sources ---- */

static int on_pass_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        run_pass(userdata);
        return 0;
}

static int on_retry_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        struct daemon *d = userdata;
        /* Failed accounts are in `pending`; a lost connection set need_full. */
        schedule_pass(d);
        return 0;
}

static int on_resync_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        struct daemon *d = userdata;
        d->need_full = true;
        schedule_pass(d);
        if (d->settings->resync_interval_usec)
                arm_timer(d, &d->resync_src, d->settings->resync_interval_usec, on_resync_timer);
        return 0;
}

static int on_inotify(sd_event_source *s, const struct inotify_event *ev, void *userdata) {
        struct daemon *d = userdata;
        if (!ev->len || strcmp(ev->name, d->watch_name) != 0)
                return 0;
        if (ev->mask & (IN_DELETE | IN_MOVED_FROM)) {
                struct log_field f[] = { { "CONFIG_FILE", d->settings->accounts_file } };
                log_event(LOG_WARNING, NULL, f, 1, "%s was removed; the last good file stays in force",
                          d->settings->accounts_file);
                return 0;
        }
        d->file_changed = true;
        schedule_pass(d);
        return 0;
}

static int on_event_fd(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        struct daemon *d = userdata;
        uint64_t v;
        ssize_t k = read(fd, &v, sizeof(v));
        (void)k;
        int ev = atomic_exchange(&d->nats_events, 0);
        if (!d->nc)
                return 0;
        struct log_field f[] = { { "NATS_SERVER", natsconn_url(d->nc) } };
        if (ev & NATS_EVENT_LOST) {
                log_event(LOG_WARNING, MSGID_SERVER_LOST, f, 1, "connection to the servers lost; reconnecting");
                status(d, "waiting for %s", d->settings->servers);
        }
        if ((ev & NATS_EVENT_RESTORED) && natsconn_connected(d->nc)) {
                log_event(LOG_NOTICE, MSGID_SERVER_RESTORED, f, 1, "reconnected to %s; resynchronising",
                          natsconn_url(d->nc));
                d->need_full = true;
                schedule_pass(d);
        }
        return 0;
}

static int on_sighup(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        struct daemon *d = userdata;
        sd_notify(0, "RELOADING=1");
        log_info("reloading on SIGHUP");
        d->reloading = true;
        d->reload_settings = true;
        d->file_changed = true;
        d->need_full = true;
        schedule_pass(d);
        return 0;
}

static int on_sigterm(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        struct daemon *d = userdata;
        sd_notify(0, "STOPPING=1");
        log_info("stopping on %s", si->ssi_signo == SIGINT ? "SIGINT" : "SIGTERM");
        sd_event_exit(d->ev, 0);
        return 0;
}

static int setup_watch(struct daemon *d) {
        d->inotify_src = sd_event_source_unref(d->inotify_src);
        free(d->watch_dir);
        free(d->watch_name);
        d->watch_dir = path_dirname(d->settings->accounts_file);
        const char *slash = strrchr(d->settings->accounts_file, '/');
        d->watch_name = xstrdup(slash ? slash + 1 : d->settings->accounts_file);
        return sd_event_add_inotify(d->ev, &d->inotify_src, d->watch_dir,
                                    IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_ONLYDIR,
                                    on_inotify, d);
}

/* A file the backend reads besides the accounts file (config mode: a
 * server's config, where an include line gets added): its edit brings a
 * whole pass at once rather than at the next resync. */
struct file_watch {
        struct daemon *d;
        char *dir, *name;
        sd_event_source *src;
};

static int on_file_watch(sd_event_source *s, const struct inotify_event *ev, void *userdata) {
        struct file_watch *w = userdata;
        if (!ev->len || strcmp(ev->name, w->name) != 0)
                return 0;
        log_debug("%s/%s changed: a whole pass follows", w->dir, w->name);
        w->d->need_full = true;
        schedule_pass(w->d);
        return 0;
}

static void clear_file_watches(struct daemon *d) {
        for (size_t i = 0; i < d->n_file_watches; i++) {
                struct file_watch *w = d->file_watches[i];
                sd_event_source_unref(w->src);
                free(w->dir);
                free(w->name);
                free(w);
        }
        free(d->file_watches);
        d->file_watches = NULL;
        d->n_file_watches = 0;
}

static void setup_file_watches(struct daemon *d) {
        clear_file_watches(d);
        char *const *files = d->backend->ops->watch_files ? d->backend->ops->watch_files(d->backend) : NULL;
        for (size_t i = 0; files && files[i]; i++) {
                struct file_watch *w = xcalloc(1, sizeof(*w));
                const char *slash = strrchr(files[i], '/');
                w->d = d;
                w->dir = path_dirname(files[i]);
                w->name = xstrdup(slash ? slash + 1 : files[i]);
                int r = sd_event_add_inotify(d->ev, &w->src, w->dir, IN_CLOSE_WRITE | IN_MOVED_TO | IN_ONLYDIR,
                                             on_file_watch, w);
                if (r < 0)
                        log_warning("cannot watch %s: %s; its edits are seen at the next resync", files[i],
                                    strerror(-r));
                d->file_watches = xreallocarray(d->file_watches, d->n_file_watches + 1, sizeof(*d->file_watches));
                d->file_watches[d->n_file_watches++] = w;
        }
}

/* One version of a file: a rename brings a new inode, a write a new mtime. */
static bool same_file_version(const struct stat *a, const struct stat *b) {
        return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
               a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

static void daemon_free(struct daemon *d) {
        sd_event_source_unref(d->pass_src);
        sd_event_source_unref(d->resync_src);
        sd_event_source_unref(d->retry_src);
        sd_event_source_unref(d->inotify_src);
        sd_event_source_unref(d->event_src);
        clear_file_watches(d);
        sd_event_unref(d->ev);
        natsconn_close(d->nc);
        if (d->event_fd >= 0)
                close(d->event_fd);
        backend_free(d->backend);
        accounts_free(d->accounts);
        settings_free(d->settings);
        pending_clear(d);
        free(d->watch_dir);
        free(d->watch_name);
}

static int exit_code_for(int r, int invalid) {
        return r == -ENOENT ? EX_NOINPUT : r == -EACCES ? EX_NOPERM : invalid;
}

int daemon_run(const char *config_path) {
        struct daemon d = { .config_path = config_path, .event_fd = -1, .need_full = true };
        struct diag_list dl = { 0 };
        /* Per-account arrays (the accounts file's, an observation's, a plan's)
         * are made anew on every edit or pass: mapped, each goes back to the
         * system when freed. glibc's default would raise its threshold past
         * them after the first free and let them fragment the heap instead. */
        mallopt(M_MMAP_THRESHOLD, 64 * 1024);
        /* Blocked before anything is read: a SIGHUP (a reload, a logrotate
         * script) while a large file loads would otherwise end the process by
         * its default action; pending, it is served once the loop runs. */
        sigset_t mask;
        sigemptyset(&mask);
        sigaddset(&mask, SIGHUP);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigprocmask(SIG_BLOCK, &mask, NULL);
        log_open(LOG_INFO);
        int r = settings_load(config_path, &d.settings, &dl);
        if (r < 0) {
                log_diags(&dl, "settings file rejected");
                diag_list_clear(&dl);
                return exit_code_for(r, EX_CONFIG);
        }
        log_set_max_priority((int)d.settings->log_level);
        log_settings_warnings(d.settings);
        /* The folder is watched only after the file is read: a save in between
         * sends no event, so what was read is compared with what is there then. */
        struct stat read_st, watched_st;
        bool read_known = stat(d.settings->accounts_file, &read_st) == 0;
        struct accounts_delta delta;
        r = accounts_load_update(d.settings->accounts_file, d.settings->mode, NULL, &d.accounts, &delta, &dl);
        accounts_delta_clear(&delta);
        if (r < 0) {
                log_diags(&dl, "accounts file rejected; not starting");
                diag_list_clear(&dl);
                daemon_free(&d);
                return exit_code_for(r, EX_DATAERR);
        }
        char *err = NULL;
        if ((r = backend_new(d.settings, true, &d.backend, &err)) < 0) {
                log_error("%s", err);
                free(err);
                daemon_free(&d);
                return exit_code_for(r, EX_CONFIG);
        }

        d.event_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if ((r = sd_event_default(&d.ev)) < 0 || (r = sd_event_add_signal(d.ev, NULL, SIGHUP, on_sighup, &d)) < 0 ||
            (r = sd_event_add_signal(d.ev, NULL, SIGTERM, on_sigterm, &d)) < 0 ||
            (r = sd_event_add_signal(d.ev, NULL, SIGINT, on_sigterm, &d)) < 0 || d.event_fd < 0 ||
            (r = sd_event_add_io(d.ev, &d.event_src, d.event_fd, EPOLLIN, on_event_fd, &d)) < 0 ||
            (r = sd_event_set_watchdog(d.ev, true)) < 0) {
                log_error("cannot set up the event loop: %s", strerror(r < 0 ? -r : errno));
                daemon_free(&d);
                return EX_OSERR;
        }
        if ((r = setup_watch(&d)) < 0) {
                log_error("cannot watch %s: %s", d.watch_dir, strerror(-r));
                daemon_free(&d);
                return EX_OSERR;
        }
        setup_file_watches(&d);
        if (!read_known || stat(d.settings->accounts_file, &watched_st) < 0 ||
            !same_file_version(&read_st, &watched_st))
                d.file_changed = true;
        if (d.settings->resync_interval_usec)
                arm_timer(&d, &d.resync_src, d.settings->resync_interval_usec, on_resync_timer);
        log_info("nats-accountd %s: %zu accounts from %s, servers %s", VERSION, d.accounts->n,
                 d.settings->accounts_file, d.settings->servers);
        status(&d, "starting");
        schedule_pass(&d);
        r = sd_event_loop(d.ev);
        daemon_free(&d);
        return r < 0 ? EX_SOFTWARE : 0;
}
