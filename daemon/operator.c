/* Operator mode as a backend: account JWTs in a full resolver. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "apply.h"
#include "backend.h"
#include "log.h"
#include "nkeys.h"
#include "obsindex.h"
#include "observe.h"
#include "statedir.h"
#include "util.h"

struct operator_backend {
        struct backend base;
        const struct settings *s;
        bool will_apply;
        struct nkey signer;
        /* What the last sweep saw of every account, kept for the passes of
         * edits: they find the accounts they touch in it and refresh only those. */
        struct observed_index *idx;
        /* The observation of the pass under way: the whole one of a sweep, or
         * a working one of the accounts an edit touched (from idx). */
        struct observed *obs;
        bool obs_whole;
        /* Account JWTs whose signature is known good (jwtcache.h), loaded
         * from known_dir (state_dir) at the first pass. */
        struct jwt_cache *known;
        char *known_dir;
        /* The servers state_dir says the last whole pass saw (statedir.h),
         * as loaded by the first sweep or saved since. */
        char (*servers_seen)[NKEY_PUBLIC_LEN + 1];
        size_t n_servers_seen;
};

static struct operator_backend *op(struct backend *b) {
        return (struct operator_backend *)b;
}

/* Written when it changed: only what the commands that sign (apply, run)
 * learnt; a failure costs only signature checks next time. */
static void known_save(struct operator_backend *o) {
        char *err = NULL;
        if (o->known && o->will_apply && jwt_cache_save(o->known, o->known_dir, &err) < 0) {
                log_warning("%s", err);
                free(err);
        }
}

static void known_close(struct operator_backend *o) {
        known_save(o);
        jwt_cache_free(o->known);
        o->known = NULL;
        free(o->known_dir);
        o->known_dir = NULL;
}

static struct jwt_cache *known_open(struct operator_backend *o) {
        if (o->known)
                return o->known;
        /* What was verified in this process too, for the commands that come
         * back to the same JWTs (run's next sweep, apply's look-ups). */
        o->known = jwt_cache_new(o->will_apply);
        o->known_dir = xstrdup(o->s->state_dir);
        char *warning = NULL;
        jwt_cache_load(o->known, o->known_dir, &warning);
        if (warning) {
                log_warning("%s", warning);
                free(warning);
        }
        return o->known;
}

static int op_configure(struct backend *b, const struct settings *s, char **err) {
        struct operator_backend *o = op(b);
        if (o->will_apply) {
                struct nkey k;
                int r = signer_load(s, &k, err);
                if (r < 0)
                        return r;
                /* Moved, not copied: no second copy of the key is left behind. */
                nkey_move(&o->signer, &k);
        }
        /* Another state_dir: its own file from the next pass on. */
        if (o->known && strcmp(o->known_dir, s->state_dir) != 0) {
                known_close(o);
                free(o->servers_seen);
                o->servers_seen = NULL;
                o->n_servers_seen = 0;
        }
        o->s = s;
        return 0;
}

static int op_check(struct backend *b, const struct accounts *a, FILE *f) {
        return 0;
}

/* The keys of a's accounts as the last sweep saw them; false when one is not
 * there (a name it did not see may exist by now). */
static bool known_keys(const struct observed_index *idx, const struct accounts *a, const char **keys) {
        for (size_t i = 0; i < a->n; i++) {
                const struct account_decl *decl = &a->v[i];
                keys[i] = decl->key[0] ? (observed_index_has_key(idx, decl->key) ? decl->key : NULL)
                                       : observed_index_trusted_name(idx, decl->name);
                if (!keys[i])
                        return false;
        }
        return true;
}

/* A server back from a stop keeps the JWTs it had: pushes made while it was
 * away reached the others only, and the resolvers sync among themselves only
 * every few minutes. CLAIMS.PACK is one server's word, so ask every server
 * for each declared account: one that lags shows as a holder short, and the
 * diff pushes the account again. */
static int lookup_declared(struct natsconn *c, struct observed *obs, const struct accounts *a, const char *why,
                           char **err) {
        const char **keys = xcalloc(a->n + 1, sizeof(*keys));
        size_t k = 0;
        for (size_t i = 0; i < a->n; i++) {
                const struct account_decl *decl = &a->v[i];
                size_t n_trusted, n_untrusted;
                const struct observed_account *oa = decl->key[0] ? observed_find_key(obs, decl->key)
                                                                 : observed_find_trusted_name(obs, decl->name,
                                                                                              &n_trusted, &n_untrusted);
                if (oa)
                        keys[k++] = oa->key;
        }
        uint64_t t0 = mono_usec();
        int r = k ? observe_lookup(c, obs, keys, k, err) : 0;
        log_debug("%s: every server asked for %zu accounts in %.3f s", why, k, (double)(mono_usec() - t0) / 1e6);
        free(keys);
        return r;
}

static bool servers_seen_has(const struct operator_backend *o, const char *id) {
        for (size_t i = 0; i < o->n_servers_seen; i++)
                if (strcmp(o->servers_seen[i], id) == 0)
                        return true;
        return false;
}

/* Why the first sweep of this process asks every server for the declared
 * accounts, or NULL: with one server, its CLAIMS.PACK is all there is; with
 * more, a server the last pass (of any process on this state_dir) did not see
 * may have been down while pushes went to the others. */
static char *first_sweep_why(struct operator_backend *o) {
        const struct observed *obs = o->obs;
        if (obs->n_servers < 2)
                return NULL;
        char *err = NULL;
        free(o->servers_seen);
        o->servers_seen = NULL;
        o->n_servers_seen = 0;
        if (statedir_servers_load(o->s->state_dir, &o->servers_seen, &o->n_servers_seen, &err) < 0) {
                log_warning("%s", err);
                free(err);
        }
        if (!o->n_servers_seen)
                return xasprintf("first sweep on %zu servers, none known from state_dir", obs->n_servers);
        for (size_t i = 0; i < obs->n_servers; i++)
                if (!servers_seen_has(o, obs->servers[i].id))
                        return xasprintf("first sweep: server %s was not seen by the last pass",
                                         obs->servers[i].name ? obs->servers[i].name : obs->servers[i].id);
        return NULL;
}

/* After a whole pass that ended: the servers it saw, when they changed. */
static void servers_seen_save(struct operator_backend *o) {
        const struct observed *obs = o->obs;
        bool same = obs->n_servers == o->n_servers_seen;
        for (size_t i = 0; same && i < obs->n_servers; i++)
                same = servers_seen_has(o, obs->servers[i].id);
        if (same)
                return;
        char(*ids)[NKEY_PUBLIC_LEN + 1] = xcalloc(obs->n_servers + 1, sizeof(*ids));
        size_t n = 0;
        for (size_t i = 0; i < obs->n_servers; i++)
                if (nkey_public_type(obs->servers[i].id) == NKEY_SERVER)
                        memcpy(ids[n++], obs->servers[i].id, NKEY_PUBLIC_LEN + 1);
        char *err = NULL;
        if (statedir_ensure(o->s->state_dir, &err) < 0 ||
            statedir_servers_save(o->s->state_dir, (const char(*)[NKEY_PUBLIC_LEN + 1])ids, n, &err) < 0) {
                log_warning("%s", err);
                free(err);
                free(ids);
                return;
        }
        free(o->servers_seen);
        o->servers_seen = ids;
        o->n_servers_seen = n;
}

static int op_plan(struct backend *b, struct natsconn *c, const struct accounts *a, bool whole, struct plan **out,
                   char **err) {
        struct operator_backend *o = op(b);
        *out = NULL;
        observed_free(o->obs);
        o->obs = NULL;
        int r;
        if (whole) {
                /* The resolver holds at least what the last sweep saw, and
                 * about every account declared once they exist. */
                size_t seen = observed_index_count(o->idx), expected = seen > a->n ? seen : a->n;
                if ((r = observe_all(c, expected, known_open(o), &o->obs, err)) < 0)
                        return r;
                o->obs_whole = true;
                log_debug("%zu server%s; CLAIMS.PACK: %zu account JWTs in %.3f s; signatures checked: %zu, known (%s): %zu",
                          o->obs->n_servers, o->obs->n_servers == 1 ? "" : "s", o->obs->n_accounts,
                          (double)o->obs->pack_usec / 1e6, o->obs->sigs_checked,
                          JWT_CACHE_FILE, o->obs->sigs_known);
                /* A server's copy that is not a JWT (cut short when that
                 * server was killed as it wrote it): ask every server for
                 * that account; an account this daemon created is pushed
                 * whole again (diff.c), any other is left to the operator. */
                if (o->obs->n_damaged) {
                        const char **keys = xcalloc(o->obs->n_damaged, sizeof(*keys));
                        size_t k = 0;
                        for (size_t i = 0; i < o->obs->n_damaged; i++) {
                                log_warning("account %s: a server's resolver holds a damaged JWT: %s", o->obs->damaged[i].key,
                                            o->obs->damaged[i].why);
                                /* A file name that is not even a key (its checksum) is asked nothing. */
                                if (nkey_public_type(o->obs->damaged[i].key) == NKEY_ACCOUNT)
                                        keys[k++] = o->obs->damaged[i].key;
                        }
                        r = k ? observe_lookup(c, o->obs, keys, k, err) : 0;
                        free(keys);
                        if (r < 0)
                                return r;
                }
                /* A server the last sweep did not see may hold older JWTs of
                 * the declared accounts than the others (a node back with an
                 * old store): CLAIMS.PACK is one server's word, so every
                 * server is asked for each of them. The first sweep of a
                 * process (a start, a restart, apply) has no last sweep:
                 * on more than one server, any of them may be such a node. */
                char *why = NULL;
                if (o->idx) {
                        const char *joined = observed_index_server_joined(o->idx, o->obs);
                        if (joined)
                                why = xasprintf("server %s joined since the last sweep", joined);
                } else {
                        why = first_sweep_why(o);
                }
                if (why) {
                        r = lookup_declared(c, o->obs, a, why, err);
                        free(why);
                        if (r < 0)
                                return r;
                }
        } else {
                if (!o->idx)
                        return -ESTALE;
                const char **keys = xcalloc(a->n + 1, sizeof(*keys));
                const char **names = xcalloc(a->n + 1, sizeof(*names));
                if (!known_keys(o->idx, a, keys)) {
                        free(keys);
                        free(names);
                        return -ESTALE;
                }
                for (size_t i = 0; i < a->n; i++)
                        names[i] = a->v[i].name;
                o->obs = observed_index_expand(o->idx, keys, a->n, names, a->n);
                o->obs->known = known_open(o);
                o->obs_whole = false;
                free(names);
                /* The JWTs anew: another tool may have changed them since the last sweep. */
                r = a->n ? observe_lookup(c, o->obs, keys, a->n, err) : 0;
                /* One still missing is held by no server now (deleted by
                 * another tool, or a server too slow): look at everything, as
                 * for a name the last sweep did not see. */
                for (size_t i = 0; r == 0 && i < a->n; i++) {
                        const struct observed_account *oa = observed_find_key(o->obs, keys[i]);
                        if (!oa || !oa->jwt) {
                                log_debug("%s: no server sent its JWT; checking every account", keys[i]);
                                r = -ESTALE;
                        }
                }
                free(keys);
                if (r < 0)
                        return r;
        }
        struct plan_options opt = { .create_missing = o->s->create_missing, .state_dir = o->s->state_dir };
        return plan_with_state(c, o->obs, a, &opt, out, err);
}

static int op_apply(struct backend *b, struct natsconn *c, struct plan *p, apply_done_fn done, void *userdata,
                    char **err) {
        struct operator_backend *o = op(b);
        int r = apply_plan(c, o->s, &o->signer, o->obs, p, done, userdata, err);
        /* After a sweep (and so after a one-shot apply); what edits add is
         * written at the next sweep, or when the daemon stops. */
        if (o->obs_whole)
                known_save(o);
        if (r < 0)
                return r;
        if (o->obs_whole && o->will_apply)
                servers_seen_save(o);
        /* Created accounts join the known state, so the next edit finds them by name. */
        const char **created = xcalloc(p->n ? p->n : 1, sizeof(*created));
        size_t k = 0;
        for (size_t i = 0; i < p->n; i++)
                if (p->v[i].key[0] && !p->v[i].obs && p->v[i].action == PLAN_CREATE)
                        created[k++] = p->v[i].key;
        if (k)
                r = observe_lookup(c, o->obs, created, k, err);
        free(created);
        return r;
}

static void op_rest(struct backend *b) {
        struct operator_backend *o = op(b);
        if (!o->obs)
                return;
        /* Only keys, names and verdicts are kept: the next pass fetches the
         * claims it needs anew (CLAIMS.PACK, or CLAIMS.LOOKUP of the edited
         * accounts). A sweep frees about all it allocated. */
        if (o->obs_whole || !o->idx) {
                observed_index_free(o->idx);
                o->idx = observed_index_new(o->obs);
        } else {
                observed_index_update(o->idx, o->obs);
        }
        observed_free(o->obs);
        o->obs = NULL;
}

static void op_free(struct backend *b) {
        struct operator_backend *o = op(b);
        known_close(o);
        free(o->servers_seen);
        nkey_wipe(&o->signer);
        observed_free(o->obs);
        observed_index_free(o->idx);
        free(o);
}

static const struct backend_ops operator_ops = {
        .mode = "operator",
        .configure = op_configure,
        .check = op_check,
        .plan = op_plan,
        .apply = op_apply,
        .rest = op_rest,
        .free = op_free,
};

struct backend *operator_backend_new(bool will_apply) {
        struct operator_backend *o = xcalloc(1, sizeof(*o));
        o->base.ops = &operator_ops;
        o->will_apply = will_apply;
        return &o->base;
}
