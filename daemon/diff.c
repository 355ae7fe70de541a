#include "diff.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "units.h"
#include "util.h"

static const char *const action_names[] = { "create", "enable", "update", "disable", "unchanged", "error" };
static const char action_symbols[] = { '+', '^', '~', '-', '=', '!' };

const char *plan_action_name(enum plan_action a) {
        return action_names[a];
}

char plan_action_symbol(enum plan_action a) {
        return action_symbols[a];
}

bool plan_action_changes(enum plan_action a) {
        return a == PLAN_CREATE || a == PLAN_ENABLE || a == PLAN_UPDATE || a == PLAN_DISABLE;
}

void plan_entry_set_error(struct plan_entry *e, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        free(e->error);
        e->error = xvasprintf(fmt, ap);
        va_end(ap);
        e->action = PLAN_ERROR;
}

void plan_entry_add_warning(struct plan_entry *e, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        e->warnings = xreallocarray(e->warnings, e->n_warnings + 1, sizeof(*e->warnings));
        e->warnings[e->n_warnings++] = xvasprintf(fmt, ap);
        va_end(ap);
}

static void add_change(struct plan_entry *e, int tier, const char *name, enum js_field_kind kind, int64_t old_value,
                       int64_t new_value) {
        e->changes = xreallocarray(e->changes, e->n_changes + 1, sizeof(*e->changes));
        struct plan_change *c = &e->changes[e->n_changes++];
        if (tier < 0)
                snprintf(c->field, sizeof(c->field), "%s", name);
        else
                snprintf(c->field, sizeof(c->field), "R%d.%s", tier + 1, name);
        c->kind = kind;
        c->old_value = old_value;
        c->new_value = new_value;
}

/* Every field whose value, as nats-server reads the claims, differs. */
static void compare(struct plan_entry *e, const struct js_state *cur, const struct js_state *want) {
        for (int tier = -1; tier < JS_TIERS; tier++)
                for (size_t i = 0; i < js_fields_count; i++) {
                        int64_t o = js_state_field(cur, tier, &js_fields[i]);
                        int64_t n = js_state_field(want, tier, &js_fields[i]);
                        if (o != n)
                                add_change(e, tier, js_fields[i].name, js_fields[i].kind, o, n);
                }
}

/* The other account limits: every field whose value, as nats-server reads the claims, differs. */
static size_t compare_acct(struct plan_entry *e, const struct acct_state *cur, const struct acct_limits *want) {
        size_t before = e->n_changes;
        for (size_t i = 0; i < acct_fields_count; i++) {
                int64_t n = acct_limits_get(want, &acct_fields[i]);
                if (cur->value[i] != n)
                        add_change(e, -1, acct_fields[i].name, acct_fields[i].kind, cur->value[i], n);
        }
        return e->n_changes - before;
}

static const struct plan_change *find_change(const struct plan_entry *e, const char *field) {
        for (size_t i = 0; i < e->n_changes; i++)
                if (strcmp(e->changes[i].field, field) == 0)
                        return &e->changes[i];
        return NULL;
}

bool plan_entry_lowers(const struct plan_entry *e, const char *field) {
        const struct plan_change *c = find_change(e, field);
        return c && c->new_value >= 0 && (c->old_value < 0 || c->new_value < c->old_value);
}

size_t plan_subs_lowered(const struct plan *p, struct observed_account **out) {
        size_t k = 0;
        for (size_t i = 0; i < p->n; i++) {
                const struct plan_entry *e = &p->v[i];
                if (!e->obs || !plan_entry_lowers(e, "max_subscriptions"))
                        continue;
                bool connected = false;
                for (size_t s = 0; s < e->obs->n_servers; s++)
                        connected |= e->obs->servers[s].connections + e->obs->servers[s].leafnodes > 0;
                if (connected)
                        out[k++] = e->obs;
        }
        return k;
}


static bool tier_set_differs(const struct js_state *cur, const struct js_state *want) {
        if (cur->mode != JS_TIERED || want->mode != JS_TIERED)
                return false;
        for (int t = 0; t < JS_TIERS; t++)
                if (cur->tier_set[t] != want->tier_set[t])
                        return true;
        return false;
}

static void warn_usage(struct plan_entry *e, const struct observed_account *oa) {
        if (e->want.mode != JS_ENABLED)
                return;
        for (size_t i = 0; i < oa->n_servers; i++) {
                const struct server_account_state *s = &oa->servers[i];
                if (!s->have_usage)
                        continue;
                char a[32], b[32];
                if (e->want.limits.max_memory >= 0 && s->memory > e->want.limits.max_memory) {
                        units_format_size(e->want.limits.max_memory, a, sizeof(a));
                        units_format_size(s->memory, b, sizeof(b));
                        plan_entry_add_warning(e, "max_memory %s is below current usage %s on server %s", a, b,
                                               s->server_id);
                }
                if (e->want.limits.max_store >= 0 && s->storage > e->want.limits.max_store) {
                        units_format_size(e->want.limits.max_store, a, sizeof(a));
                        units_format_size(s->storage, b, sizeof(b));
                        plan_entry_add_warning(e, "max_store %s is below current usage %s on server %s", a, b,
                                               s->server_id);
                }
        }
}

/* Where a lower limit bites at once: the servers close connections above
 * max_connections and max_leafnodes (which ones differs between versions; in
 * a cluster each server sheds its own newest when the next count from its
 * peers shows the total over, so possibly more), and every connection that has
 * max_subscriptions (a limit per connection) or more subscriptions. Each
 * server counts only its own connections: the account's are their sum. */
static void warn_acct_usage(struct plan_entry *e, const struct observed_account *oa) {
        const struct acct_limits *want = &e->decl->acct;
        int64_t conns = 0, leafs = 0;
        for (size_t i = 0; i < oa->n_servers; i++)
                if (oa->servers[i].loaded) {
                        conns += oa->servers[i].connections + oa->servers[i].leafnodes;
                        leafs += oa->servers[i].leafnodes;
                }
        if (plan_entry_lowers(e, "max_connections") && conns > want->max_connections)
                plan_entry_add_warning(e,
                                       "max_connections %d is below the %lld connections the account has now; the "
                                       "servers will close at least %lld of them",
                                       want->max_connections, (long long)conns,
                                       (long long)(conns - want->max_connections));
        if (plan_entry_lowers(e, "max_leafnodes") && leafs > want->max_leafnodes)
                plan_entry_add_warning(e,
                                       "max_leafnodes %d is below the %lld leaf node connections the account has now; "
                                       "the servers will close at least %lld of them",
                                       want->max_leafnodes, (long long)leafs, (long long)(leafs - want->max_leafnodes));
        if (!plan_entry_lowers(e, "max_subscriptions"))
                return;
        for (size_t i = 0; i < oa->n_servers; i++) {
                const struct server_account_state *s = &oa->servers[i];
                if (!s->loaded || s->connections + s->leafnodes == 0)
                        continue;
                if (!s->have_subs)
                        plan_entry_add_warning(e,
                                               "cannot tell whether max_subscriptions %d closes connections: server %s "
                                               "did not report the account's connections (CONNZ)",
                                               want->max_subscriptions, s->server_id);
                else if (s->max_subs >= want->max_subscriptions)
                        plan_entry_add_warning(e,
                                               "max_subscriptions %d: a connection of the account to server %s has %lld "
                                               "subscriptions; the servers close every connection with %d or more",
                                               want->max_subscriptions, s->server_id, (long long)s->max_subs,
                                               want->max_subscriptions);
        }
}

/* A tier's limits cover the streams with that many replicas, counted once:
 * nats-server adds up every replica's bytes and holds them against the limit
 * times the replicas. The servers' JSZ (with streams) gives each one's share. */
static void warn_tier_usage(struct plan_entry *e, const struct observed_account *oa) {
        static const char *const fields[] = { "max_memory", "max_store" };
        for (int t = 0; t < JS_TIERS; t++)
                for (size_t k = 0; k < ARRAY_SIZE(fields); k++) {
                        char field[32];
                        snprintf(field, sizeof(field), "R%d.%s", t + 1, fields[k]);
                        if (!plan_entry_lowers(e, field))
                                continue;
                        bool known = false;
                        for (size_t i = 0; i < oa->n_servers; i++)
                                known |= oa->servers[i].have_tier_usage;
                        if (!known || !oa->tier_usage)
                                continue;
                        int64_t used = (k == 0 ? oa->tier_usage->memory[t] : oa->tier_usage->storage[t]) / (t + 1);
                        int64_t limit = k == 0 ? (e->want.tier_set[t] ? e->want.tiers[t].max_memory : 0)
                                               : (e->want.tier_set[t] ? e->want.tiers[t].max_store : 0);
                        if (limit < 0 || used <= limit)
                                continue;
                        char a[32], b[32];
                        units_format_size(limit, a, sizeof(a));
                        units_format_size(used, b, sizeof(b));
                        plan_entry_add_warning(e, "%s %s is below current usage %s of the account's R%d streams", field, a,
                                               b, t + 1);
                }
}

/* "jwt updated" is not "applied": a server that holds the account loaded but
 * reports it incomplete, or with JetStream in the other state, needs a push;
 * so does a server without its current JWT (a push that reached only some). */
static bool servers_disagree(struct plan_entry *e, const struct observed *obs, const struct observed_account *oa) {
        bool want_js = js_state_enabled(&e->want);
        bool disagree = false;
        if (oa->holders && oa->holders < obs->n_servers) {
                plan_entry_add_warning(e, "only %zu of %zu servers hold the account's current JWT", oa->holders,
                                       obs->n_servers);
                disagree = true;
        }
        for (size_t i = 0; i < oa->n_servers; i++) {
                const struct server_account_state *s = &oa->servers[i];
                if (!s->loaded)
                        continue;
                if (!s->complete) {
                        plan_entry_add_warning(e, "server %s has not applied the account's JWT completely",
                                               s->server_id);
                        disagree = true;
                } else if (e->decl->js != JS_UNMANAGED && s->jetstream_enabled != want_js) {
                        plan_entry_add_warning(e, "server %s has JetStream %s for this account", s->server_id,
                                               s->jetstream_enabled ? "on" : "off");
                        disagree = true;
                }
        }
        return disagree;
}

static void warn_server_jetstream(struct plan_entry *e, const struct observed *obs) {
        if (!js_state_enabled(&e->want))
                return;
        for (size_t i = 0; i < obs->n_servers; i++)
                if (!obs->servers[i].jetstream)
                        plan_entry_add_warning(e, "JetStream is off on server %s",
                                               obs->servers[i].name ? obs->servers[i].name : obs->servers[i].id);
}

/* The account named like the declaration, among those whose JWT is trusted:
 * a forgery named like it is never adopted (its claims would be re-signed
 * with the operator's key) nor counted as a second account of that name.
 * When none is, the key it was created as before (a seed in state_dir). false
 * when the entry became an error. */
static bool match_by_name(struct plan_entry *e, const struct observed *obs, const struct plan_options *opt,
                          struct observed_account **out) {
        const char *name = e->decl->name;
        size_t n_trusted = 0, n_untrusted = 0, first = 0;
        size_t n = observed_find_name(obs, name, &first);
        *out = observed_find_trusted_name(obs, name, &n_trusted, &n_untrusted);
        const struct observed_account *trusted[2] = { NULL, NULL }, *untrusted = NULL;
        for (size_t k = 0, t = 0; k < n; k++) {
                const struct observed_account *a = &obs->accounts[obs->by_name[first + k]];
                if (a->untrusted && !untrusted)
                        untrusted = a;
                else if (!a->untrusted && t < 2)
                        trusted[t++] = a;
        }
        if (n_trusted > 1) {
                plan_entry_set_error(e, "%zu accounts are named %s (%s, %s%s); pin one with key:", n_trusted, name,
                                     trusted[0]->key, trusted[1]->key, n_trusted > 2 ? ", ..." : "");
                return false;
        }
        const struct statedir_seed *seed = !*out ? statedir_index_find(opt->seeds, name) : NULL;
        if (seed && seed->other[0]) {
                plan_entry_set_error(e, "seeds of two accounts named %s are in state_dir (%s and %s); keep the one in "
                                        "use and move the other away",
                                     name, seed->key, seed->other);
                return false;
        }
        if (seed) {
                /* Created before, by this daemon: that account, or the same key again. */
                snprintf(e->key, sizeof(e->key), "%s", seed->key);
                *out = observed_find_key(obs, seed->key);
                if (*out && (*out)->untrusted) {
                        plan_entry_set_error(e, "account %s is not trusted: %s; its claims are never re-signed",
                                             seed->key, (*out)->untrusted);
                        *out = NULL;
                        return false;
                }
                if (*out && (*out)->name && strcmp((*out)->name, name) != 0)
                        plan_entry_add_warning(e, "the account's JWT is named %s", (*out)->name);
                e->seed_reused = !*out;
                const struct observed_damaged *dmg = !*out ? observed_find_damaged(obs, seed->key) : NULL;
                if (dmg)
                        plan_entry_add_warning(e, "a server's JWT of account %s is damaged (%s): pushing it whole again",
                                               seed->key, dmg->why);
        } else if (n_untrusted && !*out) {
                /* Creating one would leave two accounts of this name, one of them a forgery. */
                plan_entry_set_error(e, "the only account named %s in the resolver, %s, is not trusted: %s; its claims "
                                        "are never re-signed, and no other account of that name is created: replace "
                                        "or remove that JWT%s",
                                     name, untrusted->key, untrusted->untrusted,
                                     n_untrusted > 1 ? " (and the others of that name)" : "");
                return false;
        }
        if (!*out && !seed && obs->n_damaged && (opt->seeds || !opt->state_dir)) {
                /* Its name cannot be read: that account may be this one
                 * (unless state_dir has its seed: the seeds are read first). */
                plan_entry_set_error(e, "not created: a server's resolver holds a damaged JWT of account %s (%s), "
                                        "which may be %s; restore that JWT or remove it%s",
                                     obs->damaged[0].key, obs->damaged[0].why, name,
                                     obs->n_damaged > 1 ? " (and the other damaged ones)" : "");
                return false;
        }
        if (n_untrusted)
                plan_entry_add_warning(e, "ignoring account %s%s, also named %s: %s", untrusted->key,
                                       n_untrusted > 1 ? " and others" : "", name, untrusted->untrusted);
        return true;
}

static void plan_one(struct plan_entry *e, const char *file, const struct observed *obs,
                     const struct plan_options *opt) {
        const struct account_decl *d = e->decl;
        if (d->js != JS_UNMANAGED)
                js_state_from_decl(d, &e->want);

        struct observed_account *oa = NULL;
        if (d->key[0]) {
                oa = observed_find_key(obs, d->key);
                if (!oa) {
                        plan_entry_set_error(e, "account %s (pinned by key) is not in the resolver", d->key);
                        return;
                }
                if (oa->untrusted) {
                        snprintf(e->key, sizeof(e->key), "%s", oa->key);
                        plan_entry_set_error(e, "account %s is not trusted: %s; its claims are never re-signed",
                                             oa->key, oa->untrusted);
                        return;
                }
                if (oa->name && strcmp(oa->name, d->name) != 0)
                        plan_entry_add_warning(e, "the account's JWT is named %s", oa->name);
        } else if (!match_by_name(e, obs, opt, &oa)) {
                return;
        }

        if (!oa) {
                if (!opt->create_missing) {
                        plan_entry_set_error(e, "account %s is not in the resolver and create_missing is off",
                                             d->name);
                        return;
                }
                e->action = PLAN_CREATE;
                struct js_state off;
                memset(&off, 0, sizeof(off));
                off.mode = JS_DISABLED;
                if (d->js != JS_UNMANAGED)
                        compare(e, &off, &e->want);
                if (d->acct_managed) {
                        struct acct_state fresh;
                        acct_state_new_account(&fresh);
                        compare_acct(e, &fresh, &d->acct);
                }
                warn_server_jetstream(e, obs);
                return;
        }

        e->obs = oa;
        snprintf(e->key, sizeof(e->key), "%s", oa->key);
        /* Only the servers know which account is the system account (VARZ
         * system_account: its key, or in config mode, without keys, its name),
         * so this is the place to refuse it, with the file's location: a limit
         * there could lock out the very user nats-accountd connects as, and
         * nothing else of it is ours to manage either. */
        const char *id = oa->key[0] ? oa->key : oa->name;
        for (size_t i = 0; i < obs->n_servers; i++)
                if (obs->servers[i].system_account && id && strcmp(obs->servers[i].system_account, id) == 0) {
                        const struct server_info *srv = &obs->servers[i];
                        plan_entry_set_error(e,
                                             "%s:%d:%d: %s is the system account (system_account of server %s); "
                                             "its limits are not managed%s: remove %s from the accounts file",
                                             file, d->line, d->column, d->name, srv->name ? srv->name : srv->id,
                                             d->acct_managed ? ", and `limits` there could lock out the system user "
                                                               "nats-accountd itself connects as"
                                                             : "",
                                             d->name);
                        return;
                }

        e->action = PLAN_UNCHANGED;
        if (d->js != JS_UNMANAGED) {
                const struct js_state *cur = &oa->js;
                compare(e, cur, &e->want);
                bool cur_on = js_state_enabled(cur), want_on = js_state_enabled(&e->want);
                if (cur_on && !want_on)
                        e->action = PLAN_DISABLE;
                else if (!cur_on && want_on)
                        e->action = PLAN_ENABLE;
                else if (e->n_changes || tier_set_differs(cur, &e->want))
                        e->action = PLAN_UPDATE;
        }
        if (d->acct_managed && compare_acct(e, &oa->acct, &d->acct) > 0) {
                /* jwt's validation would make every server refuse the new JWT: say why now. */
                char *why = acct_limits_refusal(&d->acct, &oa->acct);
                if (why) {
                        plan_entry_set_error(e, "%s", why);
                        free(why);
                        /* Nothing of it will be sent. */
                        free(e->changes);
                        e->changes = NULL;
                        e->n_changes = 0;
                        return;
                }
                if (e->action == PLAN_UNCHANGED)
                        e->action = PLAN_UPDATE;
        }
        if (servers_disagree(e, obs, oa) && e->action == PLAN_UNCHANGED)
                e->action = PLAN_UPDATE;
        if (e->action != PLAN_UNCHANGED) {
                warn_usage(e, oa);
                if (e->want.mode == JS_TIERED)
                        warn_tier_usage(e, oa);
                warn_server_jetstream(e, obs);
                if (d->acct_managed)
                        warn_acct_usage(e, oa);
        }
}

bool plan_decl_in_force(const struct account_decl *d, const struct observed_account *oa) {
        struct plan_entry e;
        memset(&e, 0, sizeof(e));
        bool same = true;
        if (d->js != JS_UNMANAGED) {
                js_state_from_decl(d, &e.want);
                compare(&e, &oa->js, &e.want);
                same = e.n_changes == 0 && js_state_enabled(&oa->js) == js_state_enabled(&e.want) &&
                       !tier_set_differs(&oa->js, &e.want);
        }
        if (same && d->acct_managed)
                same = compare_acct(&e, &oa->acct, &d->acct) == 0;
        free(e.changes);
        return same;
}

struct plan *plan_compute(const struct accounts *desired, const struct observed *obs, const struct plan_options *opt) {
        struct plan *p = xcalloc(1, sizeof(*p));
        p->v = xcalloc(desired->n, sizeof(*p->v));
        p->n = desired->n;
        for (size_t i = 0; i < desired->n; i++) {
                p->v[i].decl = &desired->v[i];
                plan_one(&p->v[i], desired->file ? desired->file : "", obs, opt);
        }
        return p;
}

void plan_free(struct plan *p) {
        if (!p)
                return;
        for (size_t i = 0; i < p->n; i++) {
                struct plan_entry *e = &p->v[i];
                free(e->changes);
                for (size_t k = 0; k < e->n_warnings; k++)
                        free(e->warnings[k]);
                free(e->warnings);
                free(e->error);
        }
        free(p->v);
        free(p->unconfirmed);
        free(p);
}
