#include "daemon.h"

#include <errno.h>
#include <malloc.h>
#include <pthread.h>
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
#include "preflight.h"
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
/* While the first pass (or a reload's) runs, systemd is asked for this much
 * more time whenever the pass showed progress lately: 100,000 creates take
 * longer than TimeoutStartSec. */
#define EXTEND_EVERY_USEC (5 * USEC_PER_SEC)
#define EXTEND_BY_USEC (30 * USEC_PER_SEC)

enum nats_event { NATS_EVENT_LOST = 1, NATS_EVENT_RESTORED = 2, NATS_EVENT_JOINED = 4 };

struct daemon;

struct pass_result {
        struct daemon *d;
        const struct plan *plan;              /* being applied, and */
        const enum plan_action *planned;      /* its entries' actions before apply */
        uint64_t started;
        uint64_t requests_before;
        size_t checked, changed, failed, retryable;
        bool connection_failed;
        bool reloaded; /* this pass read the settings of a SIGHUP */
};

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
        /* The folder of the file the path resolves to, when a symlink leads
         * out of watch_dir (an edit there changes nothing in watch_dir). */
        sd_event_source *target_src;
        struct stat target_dir_st;
        /* The version of the accounts file last read (symlinks followed). */
        struct stat file_st;
        bool file_st_known;
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

        /* A pass runs on a thread of its own, an opaque call from the loop's
         * point of view: it takes the state above (connection, observation,
         * pending, need_full) while it runs and hands it back with its result
         * through pass_fd, as cnats' callbacks do through event_fd. Meanwhile
         * the loop serves signals, edits and the watchdog; what they ask for
         * waits in pass_wanted / full_wanted for the next pass. */
        pthread_t pass_thread;
        bool pass_running, pass_wanted, full_wanted, stopping;
        bool reconnect; /* connection settings changed: the pass reconnects first */
        int pass_fd;
        sd_event_source *pass_done_src, *extend_src;
        struct pass_result result;
        atomic_bool cancel;         /* SIGTERM: the pass stops between two requests */
        _Atomic uint64_t progress;  /* when the pass last sent or received something */

        /* Changes whose pass ended in an error that the servers may take all
         * the same (a push sent but not confirmed, a server that reads its
         * config when it starts): logged as done when a later pass finds the
         * account so, or the journal would end on the error. Passes own it. */
        struct unlogged_change *unlogged;
        size_t n_unlogged;
};

struct unlogged_change {
        char *name;
        enum plan_action action;
        char *changes;
        struct account_decl target; /* what the change was for: logged once the servers say so */
};

/* ---- small helpers ---- */

/* The loop's clock: it stays at the iteration's wake-up for the whole pass,
 * so what times a pass is mono_usec() (util.h). */
static uint64_t now_usec(struct daemon *d) {
        uint64_t t = 0;
        sd_event_now(d->ev, CLOCK_MONOTONIC, &t);
        return t;
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

static void unlogged_drop(struct daemon *d, const char *name) {
        for (size_t i = 0; i < d->n_unlogged; i++) {
                if (strcmp(d->unlogged[i].name, name) != 0)
                        continue;
                free(d->unlogged[i].name);
                free(d->unlogged[i].changes);
                d->unlogged[i] = d->unlogged[--d->n_unlogged];
                return;
        }
}

static void unlogged_clear(struct daemon *d) {
        while (d->n_unlogged)
                unlogged_drop(d, d->unlogged[0].name);
        free(d->unlogged);
        d->unlogged = NULL;
}

static void pending_clear(struct daemon *d) {
        for (size_t i = 0; i < d->n_pending; i++)
                free(d->pending[i]);
        free(d->pending);
        d->pending = NULL;
        d->n_pending = 0;
}

/* The next pass looks at everything; asked while a pass runs, the pass after it. */
static void want_full(struct daemon *d) {
        if (d->pass_running)
                d->full_wanted = true;
        else
                d->need_full = true;
}

static int arm_timer(struct daemon *d, sd_event_source **src, uint64_t usec_from_now, sd_event_time_handler_t cb) {
        /* From the clock, not the loop's wake-up: a retry armed after a pass that
         * waited out request_timeout would otherwise fire at once. */
        uint64_t when = mono_usec() + usec_from_now;
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

static void watch_target(struct daemon *d);

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
        /* Before reading: a save while it is read then shows as another version. */
        d->file_st_known = stat(d->settings->accounts_file, &d->file_st) == 0;
        watch_target(d);
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
         * then); after a whole read, each is compared with the last good file
         * (whose declarations are read again if they were shed). */
        struct accounts *before = NULL;
        if (!delta.partial && accounts_is_shed(d->accounts) && accounts_expand(d->accounts, &before) < 0)
                before = NULL;
        const struct accounts *old_file = accounts_is_shed(d->accounts) ? before : d->accounts;
        size_t changed = 0, n_check = delta.partial ? delta.n : a->n;
        for (size_t k = 0; k < n_check; k++) {
                const char *name = accounts_name(a, delta.partial ? delta.changed[k] : k);
                const struct account_decl *old = old_file && !delta.partial ? accounts_find(old_file, name) : NULL;
                if (old && account_decl_equal(old, &a->v[k]))
                        continue;
                changed++;
                /* Past this many, one full pass is cheaper than asking for each. */
                if (d->n_pending >= PENDING_MAX)
                        d->need_full = true;
                if (!d->need_full)
                        pending_add(d, name);
        }
        accounts_free(before);
        if (d->need_full)
                pending_clear(d);
        log_event(LOG_DEBUG, NULL, NULL, 0, "accounts file read: %zu accounts, %zu changed", a->n, changed);
        accounts_delta_clear(&delta);
        accounts_free(d->accounts);
        d->accounts = a;
}

static int setup_watch(struct daemon *d);
static void setup_file_watches(struct daemon *d);
static void arm_resync(struct daemon *d);

static bool same_text(const char *a, const char *b) {
        return a == b || (a && b && strcmp(a, b) == 0);
}

static bool connection_settings_differ(const struct settings *a, const struct settings *b) {
        return !same_text(a->servers, b->servers) || !same_text(a->credentials, b->credentials) ||
               !same_text(a->user, b->user) || !same_text(a->password_file, b->password_file) ||
               !same_text(a->tls_ca, b->tls_ca) || !same_text(a->tls_cert, b->tls_cert) ||
               !same_text(a->tls_key, b->tls_key) || a->request_timeout_usec != b->request_timeout_usec;
}

/* A step of a pass that cnats cannot interrupt (a connect, a flush) may last
 * request_timeout: the loop stays responsive meanwhile, but a stop or a hung
 * server is then only noticed that late. Under a watchdog, request_timeout
 * must stay below half of WatchdogSec. */
static int watchdog_check(const struct settings *s, char **err) {
        uint64_t wd = 0;
        if (sd_watchdog_enabled(false, &wd) <= 0 || wd == 0 || s->request_timeout_usec * 2 <= wd)
                return 0;
        char have[32], limit[32], unit[32];
        units_format_duration(s->request_timeout_usec, have, sizeof(have));
        units_format_duration(wd / 2, limit, sizeof(limit));
        units_format_duration(wd, unit, sizeof(unit));
        *err = xasprintf("%s: request_timeout = %s is too long under WatchdogSec=%s: a request cnats cannot interrupt "
                         "may last that long; make it at most %s (half of WatchdogSec), or raise WatchdogSec",
                         s->path, have, unit, limit);
        return -EINVAL;
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
        if (s->mode != d->settings->mode) {
                log_error("%s: mode cannot change on reload (%s -> %s); restart the service to switch; keeping the "
                          "running settings",
                          s->path, d->settings->mode == ACCOUNTS_OPERATOR ? "operator" : "config",
                          s->mode == ACCOUNTS_OPERATOR ? "operator" : "config");
                settings_free(s);
                return;
        }
        char *err = NULL;
        if (watchdog_check(s, &err) < 0 || preflight_secrets(s, NULL, &err) < 0 ||
            d->backend->ops->configure(d->backend, s, &err) < 0) {
                log_error("%s; keeping the running settings", err);
                free(err);
                settings_free(s);
                return;
        }
        log_settings_warnings(s);
        if (connection_settings_differ(d->settings, s) && d->nc) {
                log_info("connection settings changed: reconnecting");
                d->reconnect = true; /* by the pass, off the loop */
        }
        bool moved = !same_text(d->settings->accounts_file, s->accounts_file);
        bool resync_changed = d->settings->resync_interval_usec != s->resync_interval_usec;
        log_set_max_priority((int)s->log_level);
        settings_free(d->settings);
        d->settings = s;
        if (resync_changed)
                arm_resync(d);
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

/* A server started or joined since the last sweep: it may hold older JWTs than
 * the others (its store missed what was pushed while it was away), so a sweep
 * now, not at the next resync. */
static void on_server_joined(void *userdata) {
        struct daemon *d = userdata;
        atomic_fetch_or(&d->nats_events, NATS_EVENT_JOINED);
        uint64_t one = 1;
        ssize_t k = write(d->event_fd, &one, sizeof(one));
        (void)k;
}

static bool ensure_connected(struct daemon *d) {
        if (d->reconnect) {
                d->reconnect = false;
                natsconn_close(d->nc);
                d->nc = NULL;
        }
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
        natsconn_set_controls(d->nc, &d->cancel, &d->progress);
        if (natsconn_watch_servers(d->nc, on_server_joined, d, &err) < 0) {
                log_warning("%s; a server that starts is checked at the next resync", err);
                free(err);
        }
        return true;
}

/* What ended a pass early; a stop is no error. */
static void log_pass_error(int r, const char *err) {
        if (r == -ECANCELED)
                log_debug("pass stopped: %s", err ? err : strerror(-r));
        else
                log_error("%s", err ? err : strerror(-r));
}

static void log_done(void *userdata, const struct plan_entry *e, bool ok) {
        struct pass_result *res = userdata;
        static const char *const msgids[] = { MSGID_ACCOUNT_CREATED, MSGID_ACCOUNT_ENABLED, MSGID_ACCOUNT_UPDATED,
                                              MSGID_ACCOUNT_DISABLED };
        static const char *const verbs[] = { "created", "enabled", "updated", "disabled" };
        struct log_field f[3];
        if (!ok && atomic_load(&res->d->cancel)) {
                res->failed++;
                if (!e->sent)
                        return; /* not pushed because of the stop: nothing to report */
                /* Out before the stop, not confirmed: the servers may apply it, and
                 * the next start, finding it in force, has nothing to say. */
                static const char *const nouns[] = { "create", "enable", "update", "disable" };
                enum plan_action planned = res->planned[e - res->plan->v];
                fields_for(e, f, plan_action_name(planned));
                char *ch = changes_text(e);
                log_event(LOG_WARNING, MSGID_ACCOUNT_FAILED, f, 3, "%s: %s sent, not confirmed before the stop%s%s",
                          e->decl->name, planned <= PLAN_DISABLE ? nouns[planned] : "change", *ch ? ": " : "", ch);
                free(ch);
                return;
        }
        if (!ok) {
                fields_for(e, f, NULL);
                log_event(LOG_ERR, MSGID_ACCOUNT_FAILED, f, 3, "%s: %s", e->decl->name, e->error);
                res->failed++;
                res->retryable++;
                pending_append(res->d, e->decl->name); /* retried alone after the backoff */
                struct daemon *d = res->d;
                unlogged_drop(d, e->decl->name);
                d->unlogged = xreallocarray(d->unlogged, d->n_unlogged + 1, sizeof(*d->unlogged));
                d->unlogged[d->n_unlogged++] = (struct unlogged_change){
                        .name = xstrdup(e->decl->name),
                        .action = res->planned[e - res->plan->v],
                        .changes = changes_text(e),
                        .target = *e->decl,
                };
                return;
        }
        unlogged_drop(res->d, e->decl->name);
        fields_for(e, f, plan_action_name(e->action));
        char *ch = changes_text(e);
        log_event(LOG_INFO, msgids[e->action], f, 3, "%s %s%s%s", e->decl->name, verbs[e->action], *ch ? ": " : "", ch);
        free(ch);
        res->changed++;
}

/* Accounts in the state an earlier pass failed to confirm: that change is done.
 * What counts is the state that change was for, not the file's of now: the
 * file may have changed since in a way that state satisfies too (a `limits`
 * key removed), and the change was made all the same. A change not in force
 * while the file's state is has been overtaken: nothing to tell. */
static void log_confirmed(struct daemon *d, const struct plan *p) {
        static const char *const msgids[] = { MSGID_ACCOUNT_CREATED, MSGID_ACCOUNT_ENABLED, MSGID_ACCOUNT_UPDATED,
                                              MSGID_ACCOUNT_DISABLED };
        static const char *const verbs[] = { "created", "enabled", "updated", "disabled" };
        for (size_t i = 0; i < p->n && d->n_unlogged; i++) {
                const struct plan_entry *e = &p->v[i];
                if (e->action == PLAN_ERROR)
                        continue;
                for (size_t k = 0; k < d->n_unlogged; k++) {
                        const struct unlogged_change *u = &d->unlogged[k];
                        if (strcmp(u->name, e->decl->name) != 0)
                                continue;
                        if (!e->obs || !plan_decl_in_force(&u->target, e->obs)) {
                                if (e->action == PLAN_UNCHANGED)
                                        unlogged_drop(d, e->decl->name);
                                break;
                        }
                        /* In force where the newest JWT is; with the same file, an
                         * update without changes is a server still behind: wait. */
                        if (e->action != PLAN_UNCHANGED && (e->n_changes == 0 || account_decl_equal(&u->target, e->decl)))
                                break;
                        struct log_field f[3];
                        fields_for(e, f, plan_action_name(u->action));
                        log_event(LOG_INFO, msgids[u->action], f, 3, "%s %s%s%s (in force now, after the error above)",
                                  u->name, verbs[u->action], *u->changes ? ": " : "", u->changes);
                        unlogged_drop(d, e->decl->name);
                        break;
                }
        }
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
        if (r == -ESTALE) {
                free(err);
                return r;
        }
        if (r == 0) {
                res->checked += p->n;
                log_plan_problems(p, res);
                log_confirmed(d, p);
                enum plan_action *planned = xcalloc(p->n ? p->n : 1, sizeof(*planned));
                for (size_t i = 0; i < p->n; i++)
                        planned[i] = p->v[i].action;
                res->plan = p;
                res->planned = planned;
                r = b->ops->apply(b, d->nc, p, log_done, res, &err);
                res->plan = NULL;
                res->planned = NULL;
                free(planned);
        }
        if (r < 0) {
                log_pass_error(r, err);
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
        /* Between passes only the file's text is kept (accounts_shed): every
         * declaration again for the sweep, for as long as it runs. */
        if (!accounts_is_shed(d->accounts))
                return reconcile(d, d->accounts, true, res);
        struct accounts *all = NULL;
        int r = accounts_expand(d->accounts, &all);
        if (r < 0) {
                log_error("%s: cannot read the accounts again: %s", d->accounts->file, strerror(-r));
                res->failed++;
                return r;
        }
        r = reconcile(d, all, true, res);
        accounts_free(all);
        return r;
}

/* Only the accounts an edit touched: a constant number of requests each. */
static int incremental_pass(struct daemon *d, struct pass_result *res) {
        struct accounts sub = { .file = d->accounts->file, .v = xcalloc(d->n_pending + 1, sizeof(*sub.v)) };
        for (size_t i = 0; i < d->n_pending; i++)
                if (accounts_get(d->accounts, d->pending[i], &sub.v[sub.n]) == 0)
                        sub.n++; /* else removed from the file: left as it is */
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
        uint64_t took = mono_usec() - started;
        if (d->stopping) {
                log_event(LOG_DEBUG, MSGID_PASS_FINISHED, NULL, 0, "pass %lu stopped after %.3f ms: %zu changed", d->passes,
                          (double)took / 1000.0, res->changed);
                return;
        }
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
        /* A SIGHUP that came during a pass is done by the next one: READY=1 after that. */
        if (!d->ready_sent || (d->reloading && res->reloaded)) {
                sd_notify(0, "READY=1");
                d->ready_sent = true;
                if (res->reloaded)
                        d->reloading = false;
        }
}

/* The pass itself, on its own thread: connect if need be, then a sweep or
 * only the edited accounts. It uses the daemon's connection, observation and
 * pending list, which the loop leaves alone until pass_fd says it is done. */
static void *pass_thread(void *userdata) {
        struct daemon *d = userdata;
        struct pass_result *res = &d->result;
        if (!ensure_connected(d)) {
                res->connection_failed = true;
        } else {
                res->requests_before = natsconn_requests(d->nc);
                if (d->need_full)
                        full_pass(d, res);
                else if (d->n_pending)
                        incremental_pass(d, res);
        }
        if (res->connection_failed)
                d->need_full = true;
        uint64_t one = 1;
        ssize_t k = write(d->pass_fd, &one, sizeof(one));
        (void)k;
        return NULL;
}

static int on_extend_timer(sd_event_source *s, uint64_t usec, void *userdata);

static void run_pass(struct daemon *d) {
        if (d->pass_running) {
                d->pass_wanted = true;
                return;
        }
        uint64_t started = mono_usec();
        d->last_pass_start = now_usec(d);
        d->passes++;
        if (d->full_wanted) {
                d->full_wanted = false;
                d->need_full = true;
        }
        log_event(LOG_DEBUG, MSGID_PASS_STARTED, NULL, 0, "pass %lu started%s%s%s", d->passes,
                  d->need_full ? " (full)" : "", d->file_changed ? " (file changed)" : "",
                  d->reload_settings ? " (reload)" : "");
        bool reloaded = d->reload_settings;
        if (d->reload_settings) {
                d->reload_settings = false;
                reload_settings(d);
        }
        if (d->file_changed) {
                d->file_changed = false;
                reload_accounts(d);
        }
        d->result = (struct pass_result){ .d = d, .started = started, .reloaded = reloaded };
        atomic_store(&d->progress, started);
        d->pass_running = true;
        if (!d->ready_sent || d->reloading)
                arm_timer(d, &d->extend_src, 0, on_extend_timer);
        if (pthread_create(&d->pass_thread, NULL, pass_thread, d) != 0) {
                log_warning("cannot start a thread for the pass (%s): running it on the event loop", strerror(errno));
                pass_thread(d);
                d->pass_thread = pthread_self();
        }
}

/* The pass thread is done: the loop takes its state and result back. */
static int on_pass_done(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        struct daemon *d = userdata;
        uint64_t v;
        ssize_t k = read(fd, &v, sizeof(v));
        (void)k;
        if (!d->pass_running)
                return 0;
        if (!pthread_equal(d->pass_thread, pthread_self()))
                pthread_join(d->pass_thread, NULL);
        d->pass_running = false;
        if (d->extend_src)
                sd_event_source_set_enabled(d->extend_src, SD_EVENT_OFF);
        finish_pass(d, &d->result, d->result.started);
        /* Until the next pass, the accounts file's text and where each
         * account is in it are enough (560 bytes a declaration otherwise):
         * a pass reads what it needs from there again. */
        accounts_shed(d->accounts);
        /* Give back the pages the pass freed (after its log lines, off the
         * path of an edit): the heap is otherwise reused all over and stays
         * as resident as the largest pass made it. */
        malloc_trim(0);
        if (d->stopping) {
                sd_event_exit(d->ev, 0);
                return 0;
        }
        if (d->full_wanted)
                schedule_pass(d);
        if (d->pass_wanted) {
                d->pass_wanted = false;
                schedule_pass(d);
        }
        return 0;
}

/* Starting (or reloading) with a long first pass: more time from systemd, as
 * long as the pass keeps going. */
static int on_extend_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        struct daemon *d = userdata;
        if (!d->pass_running || (d->ready_sent && !d->reloading))
                return 0;
        uint64_t quiet = mono_usec() - atomic_load(&d->progress);
        if (quiet < EXTEND_BY_USEC)
                sd_notifyf(0, "EXTEND_TIMEOUT_USEC=%llu", (unsigned long long)EXTEND_BY_USEC);
        arm_timer(d, &d->extend_src, EXTEND_EVERY_USEC, on_extend_timer);
        return 0;
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
        want_full(d);
        schedule_pass(d);
        arm_resync(d);
        return 0;
}

/* The next resync one interval from now; none when the interval is 0. */
static void arm_resync(struct daemon *d) {
        if (d->settings->resync_interval_usec)
                arm_timer(d, &d->resync_src, d->settings->resync_interval_usec, on_resync_timer);
        else if (d->resync_src)
                sd_event_source_set_enabled(d->resync_src, SD_EVENT_OFF);
}

/* File events come before the pass they call for: a save is often several
 * events at once (an editor's rename: the temporary name moved away, the file
 * moved in), and a pass started between them would be followed by another
 * for the same save. */
static void file_events_first(sd_event_source *src) {
        if (src)
                sd_event_source_set_priority(src, SD_EVENT_PRIORITY_IMPORTANT);
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
        want_full(w->d);
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
                else
                        file_events_first(w->src);
                d->file_watches = xreallocarray(d->file_watches, d->n_file_watches + 1, sizeof(*d->file_watches));
                d->file_watches[d->n_file_watches++] = w;
        }
}

/* One version of a file: a rename brings a new inode, a write a new mtime. */
static bool same_file_version(const struct stat *a, const struct stat *b) {
        return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
               a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

/* Some other entry of a watched folder changed: a symlink on the way to the
 * file may have been swapped (Kubernetes ConfigMaps rename "..data", deploy
 * tools repoint a release link), or the file it leads to edited in place. */
static void check_file_version(struct daemon *d) {
        struct stat st;
        if (stat(d->settings->accounts_file, &st) < 0 || (d->file_st_known && same_file_version(&st, &d->file_st)))
                return;
        d->file_changed = true;
        schedule_pass(d);
}

/* The kernel dropped events: any of them may have been an edit. */
static bool inotify_overflowed(struct daemon *d, const struct inotify_event *ev) {
        if (!(ev->mask & IN_Q_OVERFLOW))
                return false;
        /* The kernel queues one overflow event per loss: each is news. */
        log_warning("file events were lost (inotify queue overflow); re-reading %s and checking every account",
                    d->settings->accounts_file);
        d->file_changed = true;
        want_full(d);
        schedule_pass(d);
        return true;
}

static int on_target_inotify(sd_event_source *s, const struct inotify_event *ev, void *userdata) {
        struct daemon *d = userdata;
        if (!inotify_overflowed(d, ev))
                check_file_version(d);
        return 0;
}

static int on_inotify(sd_event_source *s, const struct inotify_event *ev, void *userdata) {
        struct daemon *d = userdata;
        if (inotify_overflowed(d, ev))
                return 0;
        if (!ev->len || strcmp(ev->name, d->watch_name) != 0) {
                check_file_version(d);
                return 0;
        }
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
        /* The connection belongs to a pass while one runs: only the settings' URLs then. */
        struct natsconn *nc = d->pass_running ? NULL : d->nc;
        if (!nc && !d->pass_running)
                return 0;
        const char *url = nc ? natsconn_url(nc) : d->settings->servers;
        struct log_field f[] = { { "NATS_SERVER", url } };
        if (ev & NATS_EVENT_LOST) {
                log_event(LOG_WARNING, MSGID_SERVER_LOST, f, 1, "connection to the servers lost; reconnecting");
                status(d, "waiting for %s", d->settings->servers);
        }
        if ((ev & NATS_EVENT_RESTORED) && (!nc || natsconn_connected(nc))) {
                log_event(LOG_NOTICE, MSGID_SERVER_RESTORED, f, 1, "reconnected to %s; resynchronising", url);
                want_full(d);
                schedule_pass(d);
        } else if (ev & NATS_EVENT_JOINED) {
                log_debug("a server started or joined: checking every server");
                want_full(d);
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
        want_full(d);
        schedule_pass(d);
        if (d->pass_running)
                arm_timer(d, &d->extend_src, 0, on_extend_timer);
        return 0;
}

static int on_sigterm(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        struct daemon *d = userdata;
        if (d->stopping)
                return 0;
        sd_notify(0, "STOPPING=1");
        log_info("stopping on %s", si->ssi_signo == SIGINT ? "SIGINT" : "SIGTERM");
        if (!d->pass_running) {
                sd_event_exit(d->ev, 0);
                return 0;
        }
        /* The pass ends at its next request, with every seed of an account it
         * created already on disk; the loop exits when it is back. */
        d->stopping = true;
        atomic_store(&d->cancel, true);
        status(d, "stopping: ending the pass under way");
        return 0;
}

static int setup_watch(struct daemon *d) {
        d->inotify_src = sd_event_source_unref(d->inotify_src);
        free(d->watch_dir);
        free(d->watch_name);
        d->watch_dir = path_dirname(d->settings->accounts_file);
        const char *slash = strrchr(d->settings->accounts_file, '/');
        d->watch_name = xstrdup(slash ? slash + 1 : d->settings->accounts_file);
        int r = sd_event_add_inotify(d->ev, &d->inotify_src, d->watch_dir,
                                     IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_ONLYDIR,
                                     on_inotify, d);
        if (r >= 0) {
                file_events_first(d->inotify_src);
                watch_target(d);
        }
        return r;
}

/* Where the path leads now, when that is another folder than watch_dir:
 * watched too, and moved along when a symlink is repointed. */
static void watch_target(struct daemon *d) {
        if (!d->ev || !d->watch_dir)
                return;
        char *real = realpath(d->settings->accounts_file, NULL);
        char *dir = real ? path_dirname(real) : NULL;
        struct stat dir_st, watch_st;
        bool elsewhere = dir && stat(dir, &dir_st) == 0 && stat(d->watch_dir, &watch_st) == 0 &&
                         (dir_st.st_dev != watch_st.st_dev || dir_st.st_ino != watch_st.st_ino);
        if (!elsewhere) {
                d->target_src = sd_event_source_unref(d->target_src);
        } else if (!d->target_src || dir_st.st_dev != d->target_dir_st.st_dev ||
                   dir_st.st_ino != d->target_dir_st.st_ino) {
                d->target_src = sd_event_source_unref(d->target_src);
                int r = sd_event_add_inotify(d->ev, &d->target_src, dir,
                                             IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_CREATE |
                                                     IN_ONLYDIR,
                                             on_target_inotify, d);
                if (r < 0)
                        log_warning("cannot watch %s, where %s leads: %s; edits there are picked up on reload only",
                                    dir, d->settings->accounts_file, strerror(-r));
                else {
                        file_events_first(d->target_src);
                        d->target_dir_st = dir_st;
                }
        }
        free(dir);
        free(real);
}

static void daemon_free(struct daemon *d) {
        if (d->pass_running) {
                /* The loop failed under a running pass: stop it, wait for it. */
                atomic_store(&d->cancel, true);
                if (!pthread_equal(d->pass_thread, pthread_self()))
                        pthread_join(d->pass_thread, NULL);
                d->pass_running = false;
        }
        sd_event_source_unref(d->pass_done_src);
        sd_event_source_unref(d->extend_src);
        if (d->pass_fd >= 0)
                close(d->pass_fd);
        sd_event_source_unref(d->pass_src);
        sd_event_source_unref(d->resync_src);
        sd_event_source_unref(d->retry_src);
        sd_event_source_unref(d->inotify_src);
        sd_event_source_unref(d->target_src);
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
        unlogged_clear(d);
        free(d->watch_dir);
        free(d->watch_name);
}

int daemon_run(const char *config_path) {
        struct daemon d = { .config_path = config_path, .event_fd = -1, .pass_fd = -1, .need_full = true };
        struct diag_list dl = { 0 };
        /* Per-account arrays (the accounts file's, an observation's, a plan's)
         * are made anew on every edit or pass: mapped, each goes back to the
         * system when freed. glibc's default would raise its threshold past
         * them after the first free and let them fragment the heap instead. */
        mallopt(M_MMAP_THRESHOLD, 64 * 1024);
        /* Passes run on threads of their own: one heap for all, or each thread's
         * arena keeps what the last pass left in it (10 MiB more when idle,
         * with 10,000 accounts). */
        mallopt(M_ARENA_MAX, 1);
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
        struct stat watched_st;
        d.file_st_known = stat(d.settings->accounts_file, &d.file_st) == 0;
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
        if ((r = watchdog_check(d.settings, &err)) < 0) {
                log_error("%s", err);
                free(err);
                daemon_free(&d);
                return EX_CONFIG;
        }
        if ((r = preflight_secrets(d.settings, NULL, &err)) < 0 ||
            (r = backend_new(d.settings, true, &d.backend, &err)) < 0) {
                log_error("%s", err);
                free(err);
                daemon_free(&d);
                return preflight_exit_code(r);
        }

        d.event_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        d.pass_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if ((r = sd_event_default(&d.ev)) < 0 || (r = sd_event_add_signal(d.ev, NULL, SIGHUP, on_sighup, &d)) < 0 ||
            (r = sd_event_add_signal(d.ev, NULL, SIGTERM, on_sigterm, &d)) < 0 ||
            (r = sd_event_add_signal(d.ev, NULL, SIGINT, on_sigterm, &d)) < 0 || d.event_fd < 0 || d.pass_fd < 0 ||
            (r = sd_event_add_io(d.ev, &d.event_src, d.event_fd, EPOLLIN, on_event_fd, &d)) < 0 ||
            (r = sd_event_add_io(d.ev, &d.pass_done_src, d.pass_fd, EPOLLIN, on_pass_done, &d)) < 0 ||
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
        if (!d.file_st_known || stat(d.settings->accounts_file, &watched_st) < 0 ||
            !same_file_version(&d.file_st, &watched_st))
                d.file_changed = true;
        arm_resync(&d);
        log_info("nats-accountd %s: %zu accounts from %s, servers %s", VERSION, d.accounts->n,
                 d.settings->accounts_file, d.settings->servers);
        status(&d, "starting");
        schedule_pass(&d);
        r = sd_event_loop(d.ev);
        daemon_free(&d);
        return r < 0 ? EX_SOFTWARE : 0;
}
