/* Config mode as a backend: accounts defined in nats-server's own config
 * file. Each managed account's block includes one fragment file that
 * nats-accountd owns (fragments.c); a change is the fragment written, then a
 * reload of every server (reload.c), then what each server applies checked
 * through the system account (INFO: JetStream on or off; JSZ: the max_mem and
 * max_file it applies, as reserved_memory / reserved_storage).
 *
 * nats-server stops enabling accounts' JetStream at the first account it
 * cannot give its limits (e.g. over its capacity), only says so in its log,
 * and leaves the accounts after that one as they were. So what did not take
 * is put back, and tried again one account per reload: then every other
 * account of the pass is applied, and the one that cannot be is named. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <unistd.h>

#include "acctlimits.h"
#include "backend.h"
#include "fragments.h"
#include "observe.h"
#include "reload.h"
#include "serverconf.h"
#include "units.h"
#include "util.h"

/* Accounts that did not take in a pass are tried alone, one reload each, up
 * to this many; the others wait for the retry. */
#define SINGLE_STEPS_MAX 16

/* One declared account as the last plan saw it. */
struct cfg_account {
        char *path; /* its fragment */
        bool exists;
        char *text; /* the fragment as read; NULL when missing or unreadable */
        size_t len;
        struct timespec mtime;       /* when it was written */
        struct timespec block_mtime; /* when the file holding its block last changed */
        char *read_error;
        bool parsed; /* text is in the form nats-accountd writes */
        struct fragment_state frag;
        char *parse_error;
        bool included;       /* some server's config includes it: a reload applies it */
        char *include_error; /* a server's block does not include it, or overrides it */
        char *include_note;  /* a hand-written jetstream the fragment overrides */
        bool write_anyway;   /* not applied yet, but the fragment must exist before its include is added */
        bool reload_due;     /* a server does not apply what the fragment says: reload even if it is unchanged */
        bool unread;         /* it, or the block including it, changed since some server last read its config */
};

struct config_backend {
        struct backend base;
        const struct settings *s;
        bool will_apply;
        char *fragments_dir; /* canonical */
        struct serverconf **confs;
        size_t n_confs;
        char **missing; /* servers of confs (by server_name) that did not answer VARZ */
        size_t n_missing;
        /* Accounts changed while a server was away: pending until it is back
         * and applies them (a daemon's retries watch for it). */
        char **unverified; /* sorted when `sorted` */
        size_t n_unverified;
        bool sorted;
        /* The last plan's view: its entries point into obs; accts is parallel to obs->accounts. */
        struct observed *obs;
        struct cfg_account *accts;
        /* The time of the last server config file looked at: many accounts share one. */
        const char *stat_file;
        struct timespec stat_mtime;
};

static struct config_backend *cfg(struct backend *b) {
        return (struct config_backend *)b;
}

static void cfg_account_clear(struct cfg_account *ca) {
        free(ca->path);
        free(ca->text);
        free(ca->read_error);
        free(ca->parse_error);
        free(ca->include_error);
        free(ca->include_note);
        memset(ca, 0, sizeof(*ca));
}

static void forget_plan(struct config_backend *b) {
        for (size_t i = 0; b->obs && i < b->obs->n_accounts; i++)
                cfg_account_clear(&b->accts[i]);
        free(b->accts);
        b->accts = NULL;
        observed_free(b->obs);
        b->obs = NULL;
}

static void confs_free(struct config_backend *b) {
        for (size_t i = 0; i < b->n_confs; i++)
                serverconf_free(b->confs[i]);
        free(b->confs);
        b->confs = NULL;
        b->n_confs = 0;
        for (size_t i = 0; i < b->n_missing; i++)
                free(b->missing[i]);
        free(b->missing);
        b->missing = NULL;
        b->n_missing = 0;
}

/* Many accounts may change while a server is away: the set is appended to,
 * then sorted once per plan, and its lookups are binary searches. */
static int cmp_str(const void *a, const void *b) {
        return strcmp(*(char *const *)a, *(char *const *)b);
}

static void unverified_add(struct config_backend *b, const char *name) {
        b->unverified = xreallocarray(b->unverified, b->n_unverified + 1, sizeof(*b->unverified));
        b->unverified[b->n_unverified++] = xstrdup(name);
        b->sorted = false;
}

static void unverified_sort(struct config_backend *b) {
        if (b->sorted)
                return;
        if (b->n_unverified > 1) /* none yet: no array at all (qsort's NULL is undefined) */
                qsort(b->unverified, b->n_unverified, sizeof(*b->unverified), cmp_str);
        size_t w = 0;
        for (size_t r = 0; r < b->n_unverified; r++) {
                if (w && strcmp(b->unverified[w - 1], b->unverified[r]) == 0)
                        free(b->unverified[r]);
                else
                        b->unverified[w++] = b->unverified[r];
        }
        b->n_unverified = w;
        b->sorted = true;
}

static char **unverified_find(const struct config_backend *b, const char *name) {
        return b->n_unverified ? bsearch(&name, b->unverified, b->n_unverified, sizeof(*b->unverified), cmp_str) : NULL;
}

/* Drop the names a review found seen everywhere. */
static void unverified_drop(struct config_backend *b, const bool *drop) {
        size_t w = 0;
        for (size_t r = 0; r < b->n_unverified; r++) {
                if (drop[r])
                        free(b->unverified[r]);
                else
                        b->unverified[w++] = b->unverified[r];
        }
        b->n_unverified = w;
}

static char *canonical_dir(const char *dir) {
        char *real = realpath(dir, NULL);
        return real ? real : path_clean(dir);
}

static int cfg_configure(struct backend *bb, const struct settings *s, char **err) {
        struct config_backend *b = cfg(bb);
        struct stat st;
        int r = stat(s->fragments_dir, &st) < 0 ? -errno : S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
        if (r < 0) {
                *err = xasprintf("fragments_dir %s: %s; create it where nats-server can read it and nats-accountd "
                                 "can write, e.g. install -d -m 0755 %s",
                                 s->fragments_dir, r == -ENOTDIR ? "not a folder" : strerror(-r), s->fragments_dir);
                return r == -EACCES ? -EACCES : -ENOENT;
        }
        if (b->will_apply && access(s->fragments_dir, W_OK | X_OK) < 0) {
                *err = xasprintf("fragments_dir %s is not writable by this user (uid %d): %s", s->fragments_dir,
                                 (int)geteuid(), strerror(errno));
                return -EACCES;
        }
        for (size_t i = 0; i < s->n_server_configs; i++)
                if (access(s->server_configs[i], R_OK) < 0) {
                        r = -errno;
                        *err = xasprintf("server_config %s: %s", s->server_configs[i], strerror(-r));
                        return r == -ENOENT ? -ENOENT : -EACCES;
                }
        free(b->fragments_dir);
        b->fragments_dir = canonical_dir(s->fragments_dir);
        b->s = s;
        return 0;
}

/* Every server's config file, read anew: the operator edits them (an include
 * line added) while the daemon runs. A file that cannot be read at all is an
 * error of the pass; one that cannot be followed to its end only makes the
 * include check "unknown". */
static int load_confs(struct config_backend *b, char **err) {
        confs_free(b);
        b->stat_file = NULL;
        b->confs = xcalloc(b->s->n_server_configs + 1, sizeof(*b->confs));
        for (size_t i = 0; i < b->s->n_server_configs; i++) {
                int r = serverconf_load(b->s->server_configs[i], b->fragments_dir, &b->confs[b->n_confs], err);
                if (r < 0)
                        return r;
                b->n_confs++;
        }
        return 0;
}

/* ---- what the server configs say of one account ---- */

static void check_includes(struct config_backend *b, const char *name, struct cfg_account *ca, FILE *notes) {
        char *frag = fragment_path(b->fragments_dir, name);
        for (size_t i = 0; i < b->n_confs; i++) {
                struct include_check ic;
                serverconf_check_include(b->confs[i], name, frag, &ic);
                char *problem = NULL;
                switch (ic.state) {
                case INCLUDE_OK: {
                        ca->included = true;
                        struct stat st;
                        if (ic.file != b->stat_file) {
                                b->stat_file = ic.file;
                                memset(&b->stat_mtime, 0, sizeof(b->stat_mtime));
                                if (stat(ic.file, &st) == 0)
                                        b->stat_mtime = st.st_mtim;
                        }
                        if (b->stat_mtime.tv_sec > ca->block_mtime.tv_sec ||
                            (b->stat_mtime.tv_sec == ca->block_mtime.tv_sec &&
                             b->stat_mtime.tv_nsec > ca->block_mtime.tv_nsec))
                                ca->block_mtime = b->stat_mtime;
                        if (ic.shadowed_line && !ca->include_note)
                                ca->include_note = xasprintf("%s:%d: the hand-written jetstream of %s is overridden "
                                                             "by its fragment; remove it",
                                                             ic.shadowed_file, ic.shadowed_line, name);
                        break;
                }
                case INCLUDE_MISSING:
                        problem = xasprintf("%s:%d: the block of account %s does not include its fragment; add the "
                                            "line: %s",
                                            ic.file, ic.line, name, ic.line_to_add);
                        break;
                case INCLUDE_OVERRIDDEN:
                        problem = xasprintf("%s:%d: this jetstream of account %s comes after the include of its "
                                            "fragment and overrides it; remove it",
                                            ic.file, ic.line, name);
                        break;
                case INCLUDE_NO_ACCOUNT:
                        problem = xasprintf("%s: has no account %s; add to its accounts block: %s { %s }", ic.file,
                                            name, name, ic.line_to_add);
                        break;
                case INCLUDE_UNKNOWN:
                        /* Maybe included: a change is reloaded, and what the
                         * servers then apply tells. */
                        ca->included = true;
                        if (notes)
                                fprintf(notes, "note: %s: cannot tell whether account %s includes its fragment%s%s\n",
                                        b->confs[i]->path, name, b->confs[i]->error ? ": " : "",
                                        b->confs[i]->error ? b->confs[i]->error : "");
                        break;
                }
                if (problem && !ca->include_error)
                        ca->include_error = problem;
                else
                        free(problem);
                include_check_clear(&ic);
        }
        free(frag);
}

static int cfg_check(struct backend *bb, const struct accounts *a, FILE *f) {
        struct config_backend *b = cfg(bb);
        char *err = NULL;
        int r = load_confs(b, &err);
        if (r < 0) {
                fprintf(f, "nats-accountd: %s\n", err);
                free(err);
                return r == -ENOENT ? EX_NOINPUT : EX_NOPERM;
        }
        /* The signal route reads a pid file per server (auto may take it too,
         * but only knows which route once it has asked the servers). */
        if (b->s->reload == RELOAD_SIGNAL) {
                char *why = NULL;
                char **files = reload_pid_files(b->s, b->confs, b->n_confs, &why);
                int code = 0;
                if (!files) {
                        fprintf(f, "nats-accountd: %s\n", why);
                        free(why);
                        return EX_CONFIG;
                }
                for (char **p = files; *p; p++) {
                        if (!code && access(*p, R_OK) < 0) {
                                fprintf(f, "nats-accountd: pid file %s: %s (reload = signal reads it; is nats-server "
                                           "running with pid_file set?)\n",
                                        *p, strerror(errno));
                                code = errno == ENOENT ? EX_NOINPUT : EX_NOPERM;
                        }
                        free(*p);
                }
                free(files);
                if (code)
                        return code;
        }
        for (size_t i = 0; i < b->n_confs; i++)
                if (b->confs[i]->error)
                        fprintf(f, "warning: %s (nats-server's own check: nats-server -t -c %s)\n",
                                b->confs[i]->error, b->confs[i]->path);
        for (size_t i = 0; i < a->n; i++) {
                struct cfg_account ca = { 0 };
                check_includes(b, a->v[i].name, &ca, f);
                /* Not an error for check: the fragment is written by the first
                 * apply, and the include can only be added after that. */
                if (ca.include_error)
                        fprintf(f, "note: %s (once `nats-accountd apply` has written the fragment)\n",
                                ca.include_error);
                if (ca.include_note)
                        fprintf(f, "note: %s\n", ca.include_note);
                cfg_account_clear(&ca);
        }
        return 0;
}

/* ---- plan ---- */

static void read_fragment(struct config_backend *b, const char *name, struct cfg_account *ca) {
        ca->path = fragment_path(b->fragments_dir, name);
        int r = file_read_all(ca->path, FRAGMENT_MAX_SIZE, &ca->text, &ca->len);
        if (r == -ENOENT)
                return;
        ca->exists = true;
        if (r < 0) {
                ca->read_error = xasprintf("cannot read %s: %s", ca->path, strerror(-r));
                ca->text = NULL;
                return;
        }
        struct stat st;
        if (stat(ca->path, &st) == 0)
                ca->mtime = st.st_mtim;
        char *why = NULL;
        if (fragment_parse(ca->text, ca->len, &ca->frag, &why) == 0)
                ca->parsed = true;
        else
                ca->parse_error = why;
}

/* The fragment, or the block that includes it, changed after a server last
 * read its config (a pass cut short, an include line just added): that
 * server does not apply what the fragment says, whatever it says. */
static bool unread_by_a_server(const struct observed *o, const struct cfg_account *ca) {
        int64_t written = (int64_t)ca->mtime.tv_sec * 1000000000 + ca->mtime.tv_nsec;
        int64_t block = (int64_t)ca->block_mtime.tv_sec * 1000000000 + ca->block_mtime.tv_nsec;
        if (block > written)
                written = block;
        for (size_t s = 0; ca->exists && s < o->n_servers; s++)
                if (o->servers[s].config_load_ns && o->servers[s].config_load_ns < written)
                        return true;
        return false;
}

/* The account limits in force. The servers do not show a config account's
 * limits to the system account: they are what the fragment says once the
 * servers read it (unread_by_a_server makes them read it), else nats-server's
 * default for an account without a limits block, unlimited. The
 * operator-only limits do not exist here and read as unlimited too. */
static void acct_from_fragment(const struct cfg_account *ca, struct acct_state *out) {
        struct acct_limits l;
        acct_limits_unlimited(&l);
        if (ca->parsed && ca->frag.acct_managed && ca->included && !ca->include_error)
                l = ca->frag.acct;
        memset(out, 0, sizeof(*out));
        for (size_t i = 0; i < acct_fields_count; i++)
                out->value[i] = acct_limits_get(&l, &acct_fields[i]);
}

/* What the servers apply, as far as the system account shows it: JetStream
 * on or off, and the max_mem / max_file (JSZ reserved_*). Used where no
 * fragment of ours says what was written (a hand-written jetstream block). */
static void js_from_servers(const struct observed_account *oa, struct js_state *out) {
        struct account_decl d;
        memset(&d, 0, sizeof(d));
        d.js = JS_DISABLED;
        js_limits_unlimited(&d.limits);
        for (size_t i = 0; i < oa->n_servers; i++) {
                const struct server_account_state *st = &oa->servers[i];
                if (!st->loaded || !st->jetstream_enabled)
                        continue;
                d.js = JS_ENABLED;
                if (st->have_reserved) {
                        d.limits.max_memory = st->reserved_memory;
                        d.limits.max_store = st->reserved_storage;
                }
                break;
        }
        js_state_from_decl(&d, out);
}

/* The JSZ reserved values are uint64 read through a double: compare the
 * wanted limit the same way. */
static bool same_limit(int64_t want, int64_t reserved) {
        if (want < 0 || reserved < 0)
                return want < 0 && reserved < 0;
        return want == reserved || (int64_t)(double)want == reserved;
}

/* Every server that answered shows st: JetStream on or off as st, and its
 * max_memory / max_store where it tells them. */
static bool servers_show(const struct observed_account *oa, const struct js_state *st) {
        bool on = js_state_enabled(st);
        for (size_t i = 0; i < oa->n_servers; i++) {
                const struct server_account_state *s = &oa->servers[i];
                if (s->error)
                        continue;
                if (!s->loaded || s->jetstream_enabled != on)
                        return false;
                if (on && s->have_reserved && (!same_limit(st->limits.max_memory, s->reserved_memory) ||
                                               !same_limit(st->limits.max_store, s->reserved_storage)))
                        return false;
        }
        return true;
}

static const char *server_label(const struct observed *o, const char *id) {
        for (size_t i = 0; i < o->n_servers; i++)
                if (strcmp(o->servers[i].id, id) == 0)
                        return o->servers[i].name ? o->servers[i].name : id;
        return id;
}

enum mismatch { MATCHES, UNKNOWN_ACCOUNT, JETSTREAM_ONOFF, LIMITS };

/* Whether a server's state of the account is what the plan wants; *why
 * (when not) says how it differs. */
static enum mismatch state_mismatch(const struct observed *o, const struct plan_entry *e,
                                    const struct server_account_state *st, char **why) {
        const char *srv = server_label(o, st->server_id);
        *why = NULL;
        if (!st->loaded) {
                *why = xasprintf("server %s does not know account %s", srv, e->decl->name);
                return UNKNOWN_ACCOUNT;
        }
        if (e->decl->js == JS_UNMANAGED)
                return MATCHES;
        bool want_on = js_state_enabled(&e->want);
        if (st->jetstream_enabled != want_on) {
                *why = xasprintf("server %s has JetStream %s for the account", srv,
                                 st->jetstream_enabled ? "on" : "off");
                return JETSTREAM_ONOFF;
        }
        if (!want_on || !st->have_reserved)
                return MATCHES;
        char a[32], w[32];
        if (!same_limit(e->want.limits.max_memory, st->reserved_memory)) {
                units_format_size(st->reserved_memory, a, sizeof(a));
                units_format_size(e->want.limits.max_memory, w, sizeof(w));
                *why = xasprintf("server %s applies max_memory %s, not %s", srv, a, w);
                return LIMITS;
        }
        if (!same_limit(e->want.limits.max_store, st->reserved_storage)) {
                units_format_size(st->reserved_storage, a, sizeof(a));
                units_format_size(e->want.limits.max_store, w, sizeof(w));
                *why = xasprintf("server %s applies max_store %s, not %s", srv, a, w);
                return LIMITS;
        }
        return MATCHES;
}

/* The line that defines account name with its fragment, for the first
 * server config's folder. */
static char *block_to_add(const struct config_backend *b, const char *name, const char *fragment) {
        char *dir = b->n_confs ? path_dirname(b->confs[0]->path) : xstrdup("/");
        char *canon = canonical_dir(dir);
        char *rel = path_relative(canon, fragment);
        char *line = xasprintf("%s { include \"%s\" }", name, rel);
        free(rel);
        free(canon);
        free(dir);
        return line;
}

/* What the shared diff cannot know: the include lines, the fragment files,
 * and the limits each server applies. */
static void review(struct config_backend *b, struct plan *p) {
        unverified_sort(b);
        bool *drop = xcalloc(b->n_unverified + 1, sizeof(*drop));
        for (size_t i = 0; i < p->n; i++) {
                struct plan_entry *e = &p->v[i];
                struct cfg_account *ca = &b->accts[i];
                struct observed_account *oa = e->obs;
                if (e->action == PLAN_ERROR)
                        continue;
                if (ca->read_error) {
                        plan_entry_set_error(e, "%s", ca->read_error);
                        continue;
                }
                if (ca->include_error) {
                        plan_entry_set_error(e, "%s", ca->include_error);
                        /* The fragment must exist before a server reads an include of it. */
                        ca->write_anyway = true;
                        continue;
                }
                if (ca->include_note)
                        plan_entry_add_warning(e, "%s", ca->include_note);
                bool redo = false;
                if (ca->parse_error) {
                        plan_entry_add_warning(e, "%s is not as nats-accountd writes it (%s): it is replaced", ca->path,
                                               ca->parse_error);
                        redo = true;
                } else if (!ca->exists && (e->decl->js != JS_UNMANAGED || e->decl->acct_managed)) {
                        redo = true;
                } else if (ca->parsed && ca->frag.js.mode == JS_UNMANAGED && e->decl->js != JS_UNMANAGED) {
                        /* The servers may match by chance (or by a hand-written
                         * block): the fragment is to say it all the same. */
                        if (e->action == PLAN_UNCHANGED)
                                plan_entry_add_warning(e, "%s does not hold its jetstream yet: it is written",
                                                       ca->path);
                        redo = true;
                }
                if (ca->parsed && !ca->frag.acct_managed && e->decl->acct_managed) {
                        if (e->action == PLAN_UNCHANGED)
                                plan_entry_add_warning(e, "%s does not hold its limits yet: it is written", ca->path);
                        redo = true;
                }
                if (ca->unread) {
                        if (e->action == PLAN_UNCHANGED)
                                plan_entry_add_warning(e, "a server has not read its config since %s's fragment or "
                                                          "block changed: it is reloaded",
                                                       e->decl->name);
                        redo = true;
                }
                for (size_t s = 0; s < oa->n_servers && e->action != PLAN_ERROR; s++) {
                        const struct server_account_state *st = &oa->servers[s];
                        if (st->error) {
                                plan_entry_add_warning(e, "server %s: %s", server_label(b->obs, st->server_id),
                                                       st->error);
                                continue;
                        }
                        char *why = NULL;
                        switch (state_mismatch(b->obs, e, st, &why)) {
                        case MATCHES:
                                break;
                        case UNKNOWN_ACCOUNT:
                                if (ca->included) {
                                        /* Its block is there: the server has not read it yet. */
                                        plan_entry_add_warning(e, "%s yet: its config is reloaded", why);
                                        redo = true;
                                } else {
                                        char *line = block_to_add(b, e->decl->name, ca->path);
                                        plan_entry_set_error(e, "%s: define it in the accounts block of the server's "
                                                                "config: %s",
                                                             why, line);
                                        free(line);
                                        ca->write_anyway = true;
                                }
                                break;
                        case JETSTREAM_ONOFF: /* the shared diff has said so already */
                                redo = true;
                                break;
                        case LIMITS:
                                /* A change shows these as old -> new already: only
                                 * drift from an unchanged fragment is news. */
                                if (e->action == PLAN_UNCHANGED) {
                                        plan_entry_add_warning(e, "%s", why);
                                        redo = true;
                                }
                                break;
                        }
                        free(why);
                }
                if (e->action == PLAN_ERROR)
                        continue;
                /* A fragment that already says what is wanted still needs a
                 * reload where the servers do not show it. */
                ca->reload_due = redo || (e->decl->js != JS_UNMANAGED && !servers_show(oa, &e->want));
                if (redo && e->action == PLAN_UNCHANGED)
                        e->action = PLAN_UPDATE;
                char **seen = unverified_find(b, e->decl->name);
                if (seen) {
                        /* Still to be seen on a server that was away: a pass
                         * that fails (and is retried) until it answers. */
                        if (b->n_missing && e->action == PLAN_UNCHANGED) {
                                plan_entry_add_warning(e, "server %s did not answer when the change was made, and "
                                                          "does not answer yet",
                                                       b->missing[0]);
                                e->action = PLAN_UPDATE;
                                continue;
                        }
                        if (!b->n_missing && e->action == PLAN_UNCHANGED)
                                drop[seen - b->unverified] = true; /* seen on every server now */
                }
                if (plan_action_changes(e->action))
                        for (size_t m = 0; m < b->n_missing; m++)
                                plan_entry_add_warning(e, "server %s does not answer: it applies the change when it "
                                                          "starts or reloads",
                                                       b->missing[m]);
        }
        unverified_drop(b, drop);
        free(drop);
}

/* Servers named in the config files that VARZ did not hear from. */
static void find_missing(struct config_backend *b) {
        for (size_t i = 0; i < b->n_confs; i++) {
                const char *name = b->confs[i]->server_name;
                if (!name)
                        continue;
                bool seen = false;
                for (size_t s = 0; s < b->obs->n_servers && !seen; s++)
                        seen = b->obs->servers[s].name && strcmp(b->obs->servers[s].name, name) == 0;
                if (!seen) {
                        b->missing = xreallocarray(b->missing, b->n_missing + 1, sizeof(*b->missing));
                        b->missing[b->n_missing++] = xstrdup(name);
                }
        }
}

static int cfg_plan(struct backend *bb, struct natsconn *c, const struct accounts *a, bool whole, struct plan **out,
                    char **err) {
        struct config_backend *b = cfg(bb);
        *out = NULL;
        forget_plan(b);
        int r = load_confs(b, err);
        if (r < 0)
                return r;
        /* Every pass looks at its accounts anew (fragments, INFO, JSZ):
         * nothing of an earlier pass is needed, so a partial one is never stale. */
        (void)whole;
        struct observed *o = xcalloc(1, sizeof(*o));
        b->obs = o;
        if ((r = observe_servers(c, &o->servers, &o->n_servers, err)) < 0)
                return r;
        find_missing(b);

        /* One observed account per declared one, in a's (name) order, so that
         * the shared diff finds each by name. */
        size_t n = a->n ? a->n : 1;
        o->accounts = xcalloc(n, sizeof(*o->accounts));
        o->by_name = xcalloc(n, sizeof(*o->by_name));
        b->accts = xcalloc(n, sizeof(*b->accts));
        o->n_accounts = a->n;
        struct observed_account **ptrs = xcalloc(n, sizeof(*ptrs));
        for (size_t i = 0; i < a->n; i++) {
                o->accounts[i].name = xstrdup(a->v[i].name);
                o->by_name[i] = i;
                ptrs[i] = &o->accounts[i];
                read_fragment(b, a->v[i].name, &b->accts[i]);
                check_includes(b, a->v[i].name, &b->accts[i], NULL);
        }
        r = a->n ? observe_accounts_state(c, o, ptrs, a->n, true, err) : 0;
        free(ptrs);
        if (r < 0)
                return r;
        /* What is in force: the fragment where the servers show what it says
         * (they expose only part of it), else what they show of themselves. */
        for (size_t i = 0; i < a->n; i++) {
                struct cfg_account *ca = &b->accts[i];
                ca->unread = unread_by_a_server(o, ca);
                if (ca->parsed && ca->frag.js.mode != JS_UNMANAGED && ca->included && !ca->include_error &&
                    servers_show(&o->accounts[i], &ca->frag.js))
                        o->accounts[i].js = ca->frag.js;
                else
                        js_from_servers(&o->accounts[i], &o->accounts[i].js);
                acct_from_fragment(ca, &o->accounts[i].acct);
        }
        /* Tiers and account creation do not exist here: the accounts file's
         * parser refuses tiers, the settings warn about create_missing. */
        struct plan_options opt = { .create_missing = false };
        struct plan *p = plan_compute(a, o, &opt);
        /* A lower max_subscriptions: CONNZ says which connections it closes. */
        struct observed_account **lowered = xcalloc(p->n ? p->n : 1, sizeof(*lowered));
        size_t k = plan_subs_lowered(p, lowered);
        r = k ? observe_accounts_subs(c, o, lowered, k, err) : 0;
        free(lowered);
        if (r < 0) {
                plan_free(p);
                return r;
        }
        if (k) {
                plan_free(p);
                p = plan_compute(a, o, &opt);
        }
        review(b, p);
        *out = p;
        return 0;
}

/* ---- apply ---- */

/* The declaration as its fragment is to say it. An account declared without
 * `jetstream` leaves JetStream as it is: a jetstream block its fragment holds
 * stays, since dropping it would change what the server applies. */
static struct account_decl fragment_decl(const struct account_decl *decl, const struct cfg_account *ca) {
        struct account_decl d = *decl;
        if (d.js == JS_UNMANAGED && ca->parsed && ca->frag.js.mode != JS_UNMANAGED) {
                d.js = ca->frag.js.mode;
                d.limits = ca->frag.js.limits;
        }
        if (!d.acct_managed && ca->parsed && ca->frag.acct_managed) {
                d.acct_managed = true;
                d.acct = ca->frag.acct;
        }
        return d;
}

struct change {
        struct plan_entry *e;
        struct cfg_account *ca;
        char *want;          /* the fragment it needs */
        bool written;        /* want is on disk; ca->text still holds the fragment before */
        bool reverted;       /* put back to ca->text after it did not take */
        bool pending;        /* some server did not reload: no verdict yet */
        bool took_somewhere; /* some server that reloaded applies it */
        char *failure;
};

static void fail_change(struct change *ch, char *why) {
        if (ch->failure)
                free(why);
        else
                ch->failure = why;
}

/* A temporary file, fsync, rename; the folder's fsync follows (sync_dir). A
 * few files each synced cost less than syncfs of a busy file system. */
static bool write_fragment(struct change *ch, const char *text) {
        int r = file_write_atomic(ch->ca->path, text, strlen(text), FRAGMENT_MODE);
        if (r < 0) {
                fail_change(ch, xasprintf("cannot write %s: %s", ch->ca->path, strerror(-r)));
                return false;
        }
        return true;
}

/* The folder's entries on disk: a rename is durable only then. */
static bool sync_dir(struct config_backend *b, struct change *const *v, size_t n) {
        int r = dir_fsync(b->fragments_dir);
        for (size_t i = 0; r < 0 && i < n; i++)
                fail_change(v[i], xasprintf("cannot sync %s: %s", b->fragments_dir, strerror(-r)));
        return r == 0;
}

static struct reload_server *reload_targets(const struct observed *o) {
        struct reload_server *v = xcalloc(o->n_servers ? o->n_servers : 1, sizeof(*v));
        for (size_t i = 0; i < o->n_servers; i++) {
                memcpy(v[i].id, o->servers[i].id, sizeof(v[i].id));
                v[i].name = o->servers[i].name;
                v[i].before_ns = o->servers[i].config_load_ns;
        }
        return v;
}

/* Reload every server; each one's new config_load_time is the mark the next
 * reload of this pass must pass. */
static int reload_all(struct config_backend *b, struct natsconn *c, struct reload_server *rs, char **err) {
        enum reload_route route = reload_route_pick(b->s->reload, b->obs->servers, b->obs->n_servers);
        int r = reload_servers(c, b->s, route, b->confs, b->n_confs, rs, b->obs->n_servers, reload_now_ns(), err);
        for (size_t i = 0; r == 0 && i < b->obs->n_servers; i++)
                if (rs[i].reloaded)
                        rs[i].before_ns = rs[i].after_ns;
        return r;
}

static const struct reload_server *reload_of(const struct reload_server *rs, size_t n, const char *id) {
        for (size_t i = 0; i < n; i++)
                if (strcmp(rs[i].id, id) == 0)
                        return &rs[i];
        return NULL;
}

/* What each server applies now, for the changes v[0..n): a server that
 * reloaded and does not show a change fails it; one that did not reload (or
 * does not answer at all) leaves it pending. */
static int verify(struct config_backend *b, struct natsconn *c, const struct reload_server *rs, struct change **v,
                  size_t n, char **err) {
        struct observed_account **accts = xcalloc(n ? n : 1, sizeof(*accts));
        for (size_t i = 0; i < n; i++)
                accts[i] = v[i]->e->obs;
        int r = n ? observe_accounts_state(c, b->obs, accts, n, true, err) : 0;
        free(accts);
        if (r < 0)
                return r;
        size_t ns = b->obs->n_servers;
        for (size_t i = 0; i < n; i++) {
                struct change *ch = v[i];
                const struct observed_account *oa = ch->e->obs;
                ch->took_somewhere = false;
                for (size_t s = 0; s < oa->n_servers; s++) {
                        const struct server_account_state *st = &oa->servers[s];
                        const struct reload_server *rl = reload_of(rs, ns, st->server_id);
                        const char *srv = server_label(b->obs, st->server_id);
                        if (!rl || !rl->reloaded) {
                                ch->pending = true;
                                fail_change(ch, xasprintf("pending on server %s: %s", srv,
                                                          rl && rl->error ? rl->error : "it did not reload"));
                                continue;
                        }
                        char *why = NULL;
                        if (st->error)
                                why = xasprintf("server %s: %s", srv, st->error);
                        else
                                state_mismatch(b->obs, ch->e, st, &why);
                        if (why)
                                fail_change(ch, why);
                        else
                                ch->took_somewhere = true;
                }
                for (size_t m = 0; m < b->n_missing; m++) {
                        ch->pending = true;
                        fail_change(ch, xasprintf("pending on server %s: it does not answer (it reads the fragment "
                                                  "when it starts)",
                                                  b->missing[m]));
                        unverified_add(b, ch->e->decl->name);
                }
        }
        return 0;
}

static bool did_not_take(const struct change *ch) {
        return ch->failure && !ch->pending;
}

/* The fragment back to what it was: the servers keep (or get back) what
 * they applied before, and no later reload stops at it. */
static void step_back(struct change *ch) {
        if (!ch->written || !ch->ca->text)
                return; /* a new fragment: no server applied one before */
        if (file_write_atomic(ch->ca->path, ch->ca->text, ch->ca->len, FRAGMENT_MODE) == 0) {
                ch->reverted = true;
                ch->written = false;
                /* Its old time too: the servers read this text before, no reload is due for it. */
                struct timespec times[2] = { { .tv_nsec = UTIME_OMIT }, ch->ca->mtime };
                (void)utimensat(AT_FDCWD, ch->ca->path, times, 0);
        }
}

static void explain_refusal(struct change *ch) {
        char *why = ch->failure;
        ch->failure = xasprintf("did not take: %s. nats-server refused it on reload (its log says \"Error enabling "
                                "jetstream on configured accounts\"), most likely because it exceeds what the server "
                                "can give (its jetstream max_mem / max_file, less the other accounts' limits); %s",
                                why, ch->reverted ? "the fragment is back to the previous limits"
                                                  : "the fragment is kept");
        free(why);
}

/* Changes that did not take, after a reload that applied the others: nats-
 * server stops at the first account it cannot enable, so some of them may
 * only have been skipped. All go back, then each is tried alone. */
static int single_steps(struct config_backend *b, struct natsconn *c, struct reload_server *rs, struct change **f,
                        size_t k, bool again, char **err) {
        for (size_t i = 0; i < k; i++)
                step_back(f[i]);
        sync_dir(b, f, 0);
        int r;
        if (again && (r = reload_all(b, c, rs, err)) < 0)
                return r;
        size_t tries = again ? (k < SINGLE_STEPS_MAX ? k : SINGLE_STEPS_MAX) : 0;
        for (size_t i = 0; i < tries; i++) {
                struct change *ch = f[i];
                if (!ch->reverted)
                        continue; /* a new fragment stays as it is: nothing to try alone */
                free(ch->failure);
                ch->failure = NULL;
                ch->reverted = false;
                if (!write_fragment(ch, ch->want) || !sync_dir(b, &ch, 1))
                        continue;
                ch->written = true;
                if ((r = reload_all(b, c, rs, err)) < 0 || (r = verify(b, c, rs, &ch, 1, err)) < 0)
                        return r;
                if (!did_not_take(ch))
                        continue;
                step_back(ch);
                sync_dir(b, &ch, 1);
                /* Where it did take, the previous limits come back with another reload. */
                if (ch->took_somewhere && (r = reload_all(b, c, rs, err)) < 0)
                        return r;
        }
        for (size_t i = tries; i < k; i++)
                fail_change(f[i], xasprintf("not tried alone in this pass (more than %d accounts did not take)",
                                            SINGLE_STEPS_MAX));
        for (size_t i = 0; i < k; i++)
                if (did_not_take(f[i]))
                        explain_refusal(f[i]);
        return 0;
}

static int cfg_apply(struct backend *bb, struct natsconn *c, struct plan *p, apply_done_fn done, void *userdata,
                     char **err) {
        struct config_backend *b = cfg(bb);
        size_t n = 0, ns = b->obs->n_servers;
        struct change *v = xcalloc(p->n ? p->n : 1, sizeof(*v));
        struct change **list = xcalloc(p->n ? p->n : 1, sizeof(*list));
        struct reload_server *rs = reload_targets(b->obs);
        int r = 0;

        /* 1. Write every fragment that differs. An account whose include is
         * still to be added gets its fragment too: the include needs it. */
        bool wrote = false;
        size_t in_reload = 0;
        for (size_t i = 0; i < p->n; i++) {
                struct plan_entry *e = &p->v[i];
                struct cfg_account *ca = &b->accts[i];
                bool changes = plan_action_changes(e->action);
                if (!changes && !(e->action == PLAN_ERROR && ca->write_anyway && !ca->read_error))
                        continue;
                struct change tmp = { .e = e, .ca = ca }, *ch = changes ? &v[n++] : &tmp;
                *ch = tmp;
                struct account_decl fd = fragment_decl(e->decl, ca);
                ch->want = fragment_render(&fd, b->s->accounts_file);
                bool same = ca->text && ca->len == strlen(ch->want) && memcmp(ca->text, ch->want, ca->len) == 0;
                if (!same && write_fragment(ch, ch->want)) {
                        wrote = true;
                        ch->written = true;
                }
                if (changes && !ch->failure && ca->included && (ch->written || ca->reload_due))
                        in_reload++;
                if (!changes) {
                        if (tmp.failure) {
                                char *both = xasprintf("%s; %s", e->error, tmp.failure);
                                plan_entry_set_error(e, "%s", both);
                                free(both);
                        }
                        free(tmp.want);
                        free(tmp.failure);
                }
        }
        for (size_t i = 0; i < n; i++)
                list[i] = &v[i];
        if (wrote && !sync_dir(b, list, n))
                in_reload = 0;

        /* 2. Reload every server and see what each applies. Without a
         * reload (nothing they apply changed), the servers' config is the
         * current one: what each applies is checked all the same. */
        if (!in_reload)
                for (size_t i = 0; i < ns; i++)
                        rs[i].reloaded = true;
        if (in_reload && (r = reload_all(b, c, rs, err)) < 0)
                goto report;
        size_t open = 0;
        for (size_t i = 0; i < n; i++)
                if (!v[i].failure)
                        list[open++] = &v[i];
        if ((r = verify(b, c, rs, list, open, err)) < 0)
                goto report;
        if (in_reload) {
                /* 3. What did not take, one account per reload. */
                size_t k = 0;
                bool partly = false;
                for (size_t i = 0; i < n; i++)
                        if (did_not_take(&v[i])) {
                                list[k++] = &v[i];
                                partly |= v[i].took_somewhere;
                        }
                /* Alone in its reload and applied nowhere, a change that did not
                 * take needs no second try, and going back needs no reload. */
                if (k && (r = single_steps(b, c, rs, list, k, k > 1 || in_reload > 1 || partly, err)) < 0)
                        goto report;
        }

report:
        for (size_t i = 0; i < n; i++) {
                struct change *ch = &v[i];
                if (r < 0 && !ch->failure)
                        ch->failure = xasprintf("not verified: %s", *err);
                if (ch->failure)
                        plan_entry_set_error(ch->e, "%s", ch->failure);
                /* Its fragment is on disk: every server applies it when it next
                 * reloads or starts, confirmed or not (a stop in the middle of
                 * the pass must still say so: soak seed 82600067). */
                ch->e->sent = ch->written;
                if (done)
                        done(userdata, ch->e, !ch->failure);
                free(ch->failure);
                free(ch->want);
        }
        reload_servers_clear(rs, ns);
        free(rs);
        free(list);
        free(v);
        return r;
}

static char *const *cfg_watch_files(struct backend *bb) {
        return cfg(bb)->s->server_configs;
}

static void cfg_rest(struct backend *bb) {
        forget_plan(cfg(bb));
}

static void cfg_free(struct backend *bb) {
        struct config_backend *b = cfg(bb);
        forget_plan(b);
        confs_free(b);
        for (size_t i = 0; i < b->n_unverified; i++)
                free(b->unverified[i]);
        free(b->unverified);
        free(b->fragments_dir);
        free(b);
}

static const struct backend_ops config_ops = {
        .mode = "config",
        .configure = cfg_configure,
        .check = cfg_check,
        .plan = cfg_plan,
        .apply = cfg_apply,
        .rest = cfg_rest,
        .watch_files = cfg_watch_files,
        .free = cfg_free,
};

struct backend *config_backend_new(bool will_apply) {
        struct config_backend *b = xcalloc(1, sizeof(*b));
        b->base.ops = &config_ops;
        b->will_apply = will_apply;
        return &b->base;
}
