#include "apply.h"

#include <errno.h>
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "jwt.h"
#include "observe-parse.h"
#include "secrets.h"
#include "statedir.h"
#include "util.h"

struct push {
        struct plan_entry *entry;
        ptrdiff_t create; /* index into push_ctx.creates, or -1 */
        char *jwt;          /* signed just before it is sent */
        struct js_state js; /* the JetStream limits its claims hold */
        struct acct_state acct; /* and the other account limits */
        int64_t iat;
        char *subject;
        bool sent;
        size_t ok;          /* servers that answered "jwt updated" */
        uint8_t *answered;  /* per server of the observation: 0 not yet, 1 updated, 2 refused */
        char *failure;      /* first server error */
};

struct push_ctx {
        struct push *pushes;
        const struct nkey *signer;
        const struct settings *s;
        /* Created accounts, in push order (indexes into pushes): their seeds
         * are written ahead of their pushes, one per push sent, and each batch
         * is synced to disk (one syncfs) before the first of its pushes. */
        size_t *creates;
        size_t n_creates;
        struct seed_batches seeds;
        const char **subjects; /* the pipeline's, filled as each push is made */
        const struct observed *obs; /* its servers are the ones that must answer */
        size_t n_ignored;           /* replies not counted (malformed, unknown server, other account) */
        char *first_ignored;
};

static ptrdiff_t server_index(const struct observed *o, const char *id) {
        for (size_t s = 0; s < o->n_servers; s++)
                if (strcmp(o->servers[s].id, id) == 0)
                        return (ptrdiff_t)s;
        return -1;
}

static void ignore_reply(struct push_ctx *ctx, char *why) {
        if (ctx->n_ignored++ == 0)
                ctx->first_ignored = why;
        else
                free(why);
}

/* Each reply is attributed: to a server of the observation (by its id, once
 * per server) and to the pushed account. A duplicate or a reply about another
 * account never stands in for a server that stayed silent. */
static bool on_reply(void *userdata, size_t index, const char *data, size_t len) {
        struct push_ctx *ctx = userdata;
        struct push *p = &ctx->pushes[index];
        struct update_reply r;
        char *why = NULL;
        if (observe_parse_update_reply(data, len, &r, &why) < 0) {
                ignore_reply(ctx, xasprintf("%s: %s", p->subject, why));
                free(why);
        } else {
                ptrdiff_t s = server_index(ctx->obs, r.server_id);
                if (s < 0)
                        ignore_reply(ctx, xasprintf("%s: server %s is not one of the %zu servers observed",
                                                    p->subject, r.server_id, ctx->obs->n_servers));
                else if (r.account[0] && strcmp(r.account, p->entry->key) != 0)
                        ignore_reply(ctx, xasprintf("%s: server %s answered about account %s", p->subject,
                                                    r.server_id, r.account));
                else if (p->answered[s] == 0) {
                        p->answered[s] = r.ok ? 1 : 2;
                        if (r.ok)
                                p->ok++;
                        else if (!p->failure)
                                p->failure = xasprintf("server %s: %s", ctx->obs->servers[s].name
                                                                                ? ctx->obs->servers[s].name
                                                                                : r.server_id,
                                                       r.error);
                }
                update_reply_clear(&r);
        }
        for (size_t s = 0; s < ctx->obs->n_servers; s++)
                if (!p->answered[s])
                        return false;
        return true;
}

/* "c3 (NABC...), c4 (...)": the servers that have not confirmed the push. */
static char *silent_servers(const struct push_ctx *ctx, const struct push *p) {
        char *list = xstrdup("");
        size_t listed = 0;
        for (size_t s = 0; s < ctx->obs->n_servers; s++) {
                if (p->answered[s])
                        continue;
                const struct server_info *si = &ctx->obs->servers[s];
                char *next = listed < 3 ? xasprintf("%s%s%s (%s)", list, listed ? ", " : "", si->name ? si->name : "?",
                                                    si->id)
                                        : listed == 3 ? xasprintf("%s, ...", list) : NULL;
                listed++;
                if (next) {
                        free(list);
                        list = next;
                }
        }
        return list;
}

static char *unconfirmed(const struct push_ctx *ctx, const struct push *p, const char *what) {
        char *silent = silent_servers(ctx, p);
        char *msg = xasprintf("%zu of %zu servers confirmed the update%s%s; no reply from %s%s%s", p->ok,
                              ctx->obs->n_servers, what[0] ? " " : "", what, silent,
                              ctx->n_ignored ? "; ignored replies, first: " : "", ctx->n_ignored ? ctx->first_ignored : "");
        free(silent);
        return msg;
}

static void on_timeout(void *userdata, size_t index, size_t got) {
        struct push_ctx *ctx = userdata;
        struct push *p = &ctx->pushes[index];
        if (!p->failure)
                p->failure = unconfirmed(ctx, p, "in time");
}

static int64_t now_seconds(void) {
        return (int64_t)time(NULL);
}

/* A created account's key, added to the batch of seeds written before its
 * push; or the key of a seed already in state_dir for that name: one name,
 * one key, however often a create is retried. */
static void create_key(struct push *p, struct statedir_batch *into) {
        if (!p->entry->seed_reused) {
                struct nkey k;
                nkey_generate(NKEY_ACCOUNT, &k);
                (void)statedir_batch_add(into, p->entry->decl->name, &k, &p->failure);
                snprintf(p->entry->key, sizeof(p->entry->key), "%s", k.pub);
                nkey_wipe(&k);
        }
        p->subject = xasprintf("$SYS.REQ.ACCOUNT.%s.CLAIMS.UPDATE", p->entry->key);
}

/* Seeds written in batches of this many, one .seeds file each, synced before
 * the first push of the batch: one file (one inode, one fsync) covers many
 * accounts, and making the next batch's keys overlaps the pushes of the one
 * before instead of holding back every push until all are made. */
#define SEED_BATCH APPLY_WINDOW

static void seed_write(void *userdata, size_t c, struct statedir_batch *into) {
        struct push_ctx *x = userdata;
        create_key(&x->pushes[x->creates[c]], into);
}

static void seeds_failed(void *userdata, size_t from, size_t to, const char *err) {
        struct push_ctx *x = userdata;
        for (size_t k = from; k < to; k++)
                if (!x->pushes[x->creates[k]].failure)
                        x->pushes[x->creates[k]].failure = xstrdup(err);
}

/* The iats this process pushed that the clock has not passed yet (pushes of
 * the current second, and any counted up beyond it): a table by account key,
 * emptied of the others when the second changes. A pass of 100,000 creates
 * holds a few thousand at a time; each look is one probe or two. Used by the
 * pass's thread only. */
struct recent_iat {
        char key[NKEY_PUBLIC_LEN + 1]; /* "" when free */
        int64_t iat;
};
static struct recent_iat *recent_iats;
static size_t recent_cap, recent_n; /* cap: 0 or a power of two */
static int64_t recent_now;

static struct recent_iat *recent_slot(struct recent_iat *t, size_t cap, const char *key) {
        uint64_t h = 0;
        memcpy(&h, key + 1, sizeof(h)); /* base32 of a random key: mixed below */
        h *= 0x9E3779B97F4A7C15ULL;
        for (size_t j = (size_t)(h >> 32) & (cap - 1);; j = (j + 1) & (cap - 1))
                if (!t[j].key[0] || strcmp(t[j].key, key) == 0)
                        return &t[j];
}

/* Rehashed into cap slots, keeping only the iats the clock (now) has not passed. */
static void recent_rebuild(size_t cap, int64_t now) {
        struct recent_iat *t = xcalloc(cap, sizeof(*t));
        size_t n = 0;
        for (size_t i = 0; i < recent_cap; i++)
                if (recent_iats[i].key[0] && recent_iats[i].iat >= now) {
                        *recent_slot(t, cap, recent_iats[i].key) = recent_iats[i];
                        n++;
                }
        free(recent_iats);
        recent_iats = t;
        recent_cap = cap;
        recent_n = n;
        recent_now = now;
}

int64_t apply_iat_after(const char *key, int64_t observed_iat, int64_t now) {
        int64_t iat = now > observed_iat ? now : observed_iat + 1;
        if (now != recent_now || !recent_cap)
                recent_rebuild(recent_cap ? recent_cap : 64, now);
        if ((recent_n + 1) * 2 > recent_cap)
                recent_rebuild(recent_cap * 2, now);
        struct recent_iat *r = recent_slot(recent_iats, recent_cap, key);
        if (r->key[0] && r->iat >= iat)
                iat = r->iat + 1;
        if (!r->key[0]) {
                snprintf(r->key, sizeof(r->key), "%s", key);
                recent_n++;
        }
        r->iat = iat;
        return iat;
}

/* The new JWT's claims: the current ones with only the declared limits changed. */
static json_t *new_claims(struct push *p, const struct plan_entry *e, char **err) {
        const struct account_decl *d = e->decl;
        json_t *claims;
        if (e->action == PLAN_CREATE) {
                claims = jwt_account_claims_new(e->key, d->name);
                p->iat = apply_iat_after(e->key, 0, now_seconds());
        } else {
                int64_t now = now_seconds();
                /* Only claims whose JWT verified are ever signed with our key. */
                if (e->obs->untrusted) {
                        *err = xasprintf("not re-signing account %s: %s", e->obs->key, e->obs->untrusted);
                        return NULL;
                }
                /* Servers keep the newest JWT; ours must be newer than the one it
                 * replaces, without following a far-future iat (observe refuses
                 * those): never more than the skew ahead of the clock. */
                if (e->obs->iat >= now + OBSERVE_FUTURE_SKEW_SEC) {
                        *err = xasprintf("the account's current JWT was issued %lld s in the future; not pushing one "
                                         "later still",
                                         (long long)(e->obs->iat - now));
                        return NULL;
                }
                claims = observed_account_claims(e->obs);
                if (!claims) {
                        *err = xstrdup(e->obs->jwt ? "the account's current claims could not be decoded"
                                                   : "the account's current JWT is not known (no server answered "
                                                     "CLAIMS.LOOKUP in time)");
                        return NULL;
                }
                p->iat = apply_iat_after(e->obs->key, e->obs->iat, now);
        }
        if (d->js != JS_UNMANAGED)
                js_state_to_claims(&e->want, claims);
        if (d->acct_managed)
                acct_limits_to_claims(&d->acct, claims);
        return claims;
}

/* The pipeline asks for each JWT right before sending it: signing (and the
 * next created account's seed) then runs while the servers work on the pushes
 * already in flight. */
static bool make_payload(void *userdata, size_t index, const char **payload) {
        struct push_ctx *ctx = userdata;
        struct push *p = &ctx->pushes[index];
        if (p->create >= 0)
                seed_batches_before_push(&ctx->seeds, (size_t)p->create);
        seed_batches_ahead(&ctx->seeds);
        if (p->failure)
                return false;
        ctx->subjects[index] = p->subject;
        json_t *claims = new_claims(p, p->entry, &p->failure);
        if (!claims)
                return false;
        js_state_from_claims(claims, &p->js);
        acct_state_from_claims(claims, &p->acct);
        p->jwt = jwt_encode_at(claims, ctx->signer, p->iat);
        json_decref(claims);
        if (!p->jwt) {
                p->failure = xstrdup("the account's current claims could not be re-signed");
                return false;
        }
        /* Read back from a server, these very bytes need no signature check;
         * the JWT they replace is not wanted any more. */
        if (ctx->obs->known) {
                uint8_t hash[JWT_CACHE_HASH_LEN];
                if (p->entry->obs && p->entry->obs->jwt) {
                        jwt_cache_hash(p->entry->obs->jwt, strlen(p->entry->obs->jwt), hash);
                        jwt_cache_forget(ctx->obs->known, hash);
                }
                jwt_cache_hash(p->jwt, strlen(p->jwt), hash);
                jwt_cache_add(ctx->obs->known, ctx->signer->pub, hash, true);
        }
        *payload = p->jwt;
        p->sent = true;
        return true;
}

static void commit_observed(struct observed *obs, struct push *p) {
        struct plan_entry *e = p->entry;
        struct observed_account *oa = e->obs;
        if (!oa)
                return; /* created: the next full observation picks it up */
        oa->js = p->js;
        oa->acct = p->acct;
        free(oa->jwt);
        oa->jwt = p->jwt;
        p->jwt = NULL;
        oa->iat = p->iat;
        oa->holders = 0; /* what LOOKUP said is about the JWT before this one */
        (void)obs;
}

/* "jwt updated" is not "applied": ask every server that has the account loaded. */
static void verify(struct natsconn *c, struct observed *obs, struct push *pushes, size_t n) {
        struct observed_account **accts = xcalloc(n, sizeof(*accts));
        size_t k = 0;
        for (size_t i = 0; i < n; i++)
                if (!pushes[i].failure && pushes[i].entry->obs)
                        accts[k++] = pushes[i].entry->obs;
        char *err = NULL;
        if (k && observe_accounts_state(c, obs, accts, k, false, &err) < 0) {
                for (size_t i = 0; i < n; i++)
                        if (!pushes[i].failure && pushes[i].entry->obs)
                                pushes[i].failure = xasprintf("could not verify: %s", err);
                free(err);
                free(accts);
                return;
        }
        free(accts);
        for (size_t i = 0; i < n; i++) {
                struct push *p = &pushes[i];
                struct observed_account *oa = p->entry->obs;
                if (p->failure || !oa)
                        continue;
                bool want_js = js_state_enabled(&p->entry->want);
                for (size_t s = 0; s < oa->n_servers && !p->failure; s++) {
                        const struct server_account_state *st = &oa->servers[s];
                        if (!st->loaded)
                                continue;
                        if (st->error)
                                p->failure = xasprintf("server %s: %s", st->server_id, st->error);
                        else if (!st->complete)
                                p->failure = xasprintf("server %s accepted the JWT but could not apply it "
                                                       "(see its log: \"Error configuring jetstream\")",
                                                       st->server_id);
                        else if (p->entry->decl->js != JS_UNMANAGED && st->jetstream_enabled != want_js)
                                p->failure = xasprintf("server %s still has JetStream %s for the account",
                                                       st->server_id, st->jetstream_enabled ? "on" : "off");
                }
        }
}

int signer_load(const struct settings *s, struct nkey *out, char **err) {
        if (!s->signing_key) {
                *err = xasprintf("%s: [operator] signing_key is required in operator mode", s->path);
                return -EINVAL;
        }
        char *why = NULL;
        int r = secret_load_nkey(s->signing_key, out, &why);
        if (r == 0 && out->type != NKEY_OPERATOR) {
                nkey_wipe(out);
                why = xasprintf("%s: not an operator seed (it must start with SO)", s->signing_key);
                r = -EINVAL;
        }
        if (r == -EINVAL) {
                *err = xasprintf("signing_key %s", why);
                free(why);
        } else {
                *err = why;
        }
        return r;
}

/* Up to this many accounts (an edit's pass), INFO and JSZ of each go out in
 * one round trip; above, JSZ only where it can matter. */
#define STATE_ONE_ROUND_MAX 32

static size_t plan_existing(const struct plan *p, bool changing_only, struct observed_account **out) {
        size_t k = 0;
        for (size_t i = 0; i < p->n; i++)
                if (p->v[i].obs && (!changing_only || plan_action_changes(p->v[i].action)))
                        out[k++] = p->v[i].obs;
        return k;
}

/* A lower tier limit: what the tier's streams hold (JSZ with streams), where
 * some server has the account's JetStream on. */
static size_t plan_tiers_lowered(const struct plan *p, struct observed_account **out) {
        size_t k = 0;
        for (size_t i = 0; i < p->n; i++) {
                const struct plan_entry *e = &p->v[i];
                if (!e->obs || e->want.mode != JS_TIERED || !observed_account_js_loaded(e->obs))
                        continue;
                bool lowered = false;
                for (int t = 0; t < JS_TIERS && !lowered; t++) {
                        char mem[32], store[32];
                        snprintf(mem, sizeof(mem), "R%d.max_memory", t + 1);
                        snprintf(store, sizeof(store), "R%d.max_store", t + 1);
                        lowered = plan_entry_lowers(e, mem) || plan_entry_lowers(e, store);
                }
                if (lowered)
                        out[k++] = e->obs;
        }
        return k;
}

static bool plan_creates(const struct plan *p) {
        for (size_t i = 0; i < p->n; i++)
                if (p->v[i].action == PLAN_CREATE)
                        return true;
        return false;
}

/* Before anything is created: the keys accounts were created as before
 * (state_dir), and whether some server holds them (CLAIMS.PACK came from one
 * server only, which may have missed a push). *seeds stays NULL, with *seeds_err,
 * when state_dir cannot be read. */
static int plan_with_seeds(struct natsconn *c, struct observed *obs, const struct accounts *a,
                           struct plan_options *opt, struct statedir_index **seeds, char **seeds_err,
                           struct plan **p, char **err) {
        if (opt->seeds || !opt->state_dir || !plan_creates(*p))
                return 0;
        if (statedir_index_load(opt->state_dir, seeds, seeds_err) < 0)
                return 0;
        opt->seeds = *seeds;
        plan_free(*p);
        *p = plan_compute(a, obs, opt);
        const char **keys = xcalloc((*p)->n ? (*p)->n : 1, sizeof(*keys));
        size_t k = 0;
        for (size_t i = 0; i < (*p)->n; i++)
                if ((*p)->v[i].seed_reused)
                        keys[k++] = (*p)->v[i].key;
        int r = k ? observe_lookup(c, obs, keys, k, err) : 0;
        free(keys);
        if (k && r == 0) {
                plan_free(*p);
                *p = plan_compute(a, obs, opt);
        }
        return r;
}

int plan_with_state(struct natsconn *c, struct observed *obs, const struct accounts *a,
                    const struct plan_options *opt_in, struct plan **out, char **err) {
        struct plan_options o = *opt_in, *opt = &o;
        struct statedir_index *seeds = NULL;
        char *seeds_err = NULL;
        /* Pushed before but not confirmed everywhere: whatever CLAIMS.PACK said
         * (one server), ask every server (a missing or older JWT shows as fewer
         * holders, and the diff pushes it again). A list that cannot be read
         * only costs that look. */
        char(*unconfirmed)[NKEY_PUBLIC_LEN + 1] = NULL;
        size_t n_unconfirmed = 0;
        char *uerr = NULL;
        if (opt->state_dir && statedir_unconfirmed_load(opt->state_dir, &unconfirmed, &n_unconfirmed, &uerr) < 0)
                free(uerr);
        if (n_unconfirmed) {
                const char **keys = xcalloc(n_unconfirmed, sizeof(*keys));
                for (size_t i = 0; i < n_unconfirmed; i++)
                        keys[i] = unconfirmed[i];
                int lr = observe_lookup(c, obs, keys, n_unconfirmed, err);
                free(keys);
                if (lr < 0) {
                        free(unconfirmed);
                        *out = NULL;
                        return lr;
                }
        }
        struct plan *p = plan_compute(a, obs, opt);
        int r = plan_with_seeds(c, obs, a, opt, &seeds, &seeds_err, &p, err);
        if (r < 0) {
                plan_free(p);
                statedir_index_free(seeds);
                free(seeds_err);
                free(unconfirmed);
                *out = NULL;
                return r;
        }
        struct observed_account **accts = xcalloc(p->n ? p->n : 1, sizeof(*accts));
        size_t n = plan_existing(p, false, accts);
        bool one_round = n <= STATE_ONE_ROUND_MAX;
        r = n ? observe_accounts_state(c, obs, accts, n, one_round, err) : 0;
        if (r == 0 && !one_round) {
                plan_free(p);
                p = plan_compute(a, obs, opt);
                /* Usage matters only where limits change, and only a server that
                 * has the account's JetStream on can report any: JSZ for those. */
                n = plan_existing(p, true, accts);
                size_t k = 0;
                for (size_t i = 0; i < n; i++)
                        if (observed_account_js_loaded(accts[i]))
                                accts[k++] = accts[i];
                r = k ? observe_accounts_usage(c, obs, accts, k, err) : 0;
        }
        if (r == 0) {
                n = plan_subs_lowered(p, accts);
                r = n ? observe_accounts_subs(c, obs, accts, n, err) : 0;
        }
        if (r == 0) {
                n = plan_tiers_lowered(p, accts);
                r = n ? observe_accounts_tier_usage(c, obs, accts, n, err) : 0;
        }
        free(accts);
        plan_free(p);
        *out = r == 0 ? plan_compute(a, obs, opt) : NULL;
        /* Without knowing what was created before, a create could make a second
         * account of a name: none is made. */
        for (size_t i = 0; seeds_err && *out && i < (*out)->n; i++)
                if ((*out)->v[i].action == PLAN_CREATE)
                        plan_entry_set_error(&(*out)->v[i], "not created: the keys of accounts created before are "
                                                            "unknown: %s",
                                             seeds_err);
        if (*out) {
                (*out)->unconfirmed = unconfirmed;
                (*out)->n_unconfirmed = n_unconfirmed;
        } else {
                free(unconfirmed);
        }
        statedir_index_free(seeds);
        free(seeds_err);
        return r;
}

static int cmp_key(const void *a, const void *b) {
        return strcmp(a, b);
}

/* state_dir's list of accounts not confirmed by every server, after this run:
 * less those now confirmed (pushed, or seen held by all), plus the pushes that
 * went out and were not confirmed by all. */
static void update_unconfirmed(const struct settings *s, const struct observed *obs, const struct plan *p,
                               const struct push *pushes, size_t n) {
        size_t old_n = p->n_unconfirmed, k = 0;
        char(*old)[NKEY_PUBLIC_LEN + 1] = xcalloc(old_n ? old_n : 1, sizeof(*old));
        if (old_n)
                memcpy(old, p->unconfirmed, old_n * sizeof(*old));
        if (old_n)
                qsort(old, old_n, sizeof(*old), cmp_key);
        bool *pushed = xcalloc(old_n ? old_n : 1, sizeof(*pushed));
        char(*keep)[NKEY_PUBLIC_LEN + 1] = xcalloc(old_n + n ? old_n + n : 1, sizeof(*keep));
        for (size_t i = 0; i < n; i++) {
                const char *key = pushes[i].entry->key;
                char(*hit)[NKEY_PUBLIC_LEN + 1] = old_n ? bsearch(key, old, old_n, sizeof(*old), cmp_key) : NULL;
                if (hit && pushes[i].sent)
                        pushed[hit - old] = true;
                if (pushes[i].sent && pushes[i].ok < obs->n_servers)
                        memcpy(keep[k++], key, NKEY_PUBLIC_LEN + 1);
        }
        for (size_t i = 0; i < old_n; i++) {
                const struct observed_account *oa = observed_find_key(obs, old[i]);
                if (!pushed[i] && oa && oa->holders < obs->n_servers)
                        memcpy(keep[k++], old[i], NKEY_PUBLIC_LEN + 1);
        }
        if (k)
                qsort(keep, k, sizeof(*keep), cmp_key);
        bool same = k == old_n && memcmp(keep, old, k * sizeof(*keep)) == 0;
        char *err = NULL;
        if (!same && (!k || statedir_ensure(s->state_dir, &err) == 0))
                (void)statedir_unconfirmed_save(s->state_dir, (const char(*)[NKEY_PUBLIC_LEN + 1])keep, k, &err);
        /* Only a closer look next time is lost: nothing to stop the pass for. */
        free(err);
        free(keep);
        free(pushed);
        free(old);
}

int apply_plan(struct natsconn *c, const struct settings *s, const struct nkey *signer, struct observed *obs,
               struct plan *p, apply_done_fn done, void *userdata, char **err) {
        char *why = NULL;
        size_t n = 0, creates = 0;
        for (size_t i = 0; i < p->n; i++) {
                n += plan_action_changes(p->v[i].action);
                creates += p->v[i].action == PLAN_CREATE;
        }
        if (n == 0) {
                update_unconfirmed(s, obs, p, NULL, 0);
                return 0;
        }
        if (!observed_key_trusted(obs, signer->pub, &why)) {
                *err = xasprintf("refusing to push: signing key %s is not trusted: %s", signer->pub, why);
                free(why);
                return -EACCES;
        }

        struct push *pushes = xcalloc(n, sizeof(*pushes));
        const char **subjects = xcalloc(n, sizeof(*subjects));
        uint8_t *answered = xcalloc(n * obs->n_servers, 1);
        struct push_ctx ctx = { .pushes = pushes, .signer = signer, .s = s, .subjects = subjects, .obs = obs };
        ctx.creates = xcalloc(creates ? creates : 1, sizeof(*ctx.creates));
        char *dir_err = NULL;
        bool dir_ok = !creates || statedir_ensure(s->state_dir, &dir_err) == 0;
        /* Once per process that creates: what a crash mid-write left. */
        static bool stale_removed;
        if (creates && dir_ok && !stale_removed) {
                stale_removed = true;
                statedir_remove_stale(s->state_dir);
        }
        size_t k = 0;
        for (size_t i = 0; i < p->n; i++) {
                if (!plan_action_changes(p->v[i].action))
                        continue;
                struct push *ps = &pushes[k];
                ps->entry = &p->v[i];
                ps->create = -1;
                ps->answered = answered + k * obs->n_servers;
                if (ps->entry->action != PLAN_CREATE)
                        ps->subject = xasprintf("$SYS.REQ.ACCOUNT.%s.CLAIMS.UPDATE", ps->entry->key);
                else if (!dir_ok)
                        ps->failure = xstrdup(dir_err);
                else {
                        ps->create = (ptrdiff_t)ctx.n_creates;
                        ctx.creates[ctx.n_creates++] = k;
                }
                k++;
        }
        free(dir_err);
        ctx.seeds = (struct seed_batches){ .dir = s->state_dir, .n = ctx.n_creates, .batch = SEED_BATCH,
                                           .write = seed_write, .failed = seeds_failed, .userdata = &ctx };
        /* The first batch of seeds before anything goes out; the next ones
         * are written while the pushes before them are in flight. */
        seed_batches_before_push(&ctx.seeds, 0);
        struct natsconn_pipeline pl = {
                .n = n,
                .subjects = subjects,
                .make_payload = make_payload,
                .want = obs->n_servers,
                .window = APPLY_WINDOW,
                .timeout_usec = s->request_timeout_usec,
                /* A server that died mid-run: stop instead of waiting out every push. */
                .give_up_after = 16,
                .on_reply = on_reply,
                .on_timeout = on_timeout,
                .userdata = &ctx,
        };
        int r = natsconn_pipeline_run(c, &pl, err);
        seed_batches_free(&ctx.seeds);
        if (r == 0) {
                for (size_t i = 0; i < n; i++)
                        if (!pushes[i].failure && pushes[i].ok < obs->n_servers)
                                pushes[i].failure = unconfirmed(&ctx, &pushes[i], "");
                for (size_t i = 0; i < n; i++)
                        if (!pushes[i].failure)
                                commit_observed(obs, &pushes[i]);
                verify(c, obs, pushes, n);
        }
        update_unconfirmed(s, obs, p, pushes, n);
        for (size_t i = 0; i < n; i++) {
                struct push *ps = &pushes[i];
                if (r < 0 && !ps->failure)
                        ps->failure = ps->sent ? xasprintf("sent, not confirmed (the servers may apply it "
                                                           "all the same): %s", *err)
                                               : xasprintf("not pushed: %s", *err);
                if (ps->failure)
                        plan_entry_set_error(ps->entry, "%s", ps->failure);
                ps->entry->sent = ps->sent;
                if (done)
                        done(userdata, ps->entry, !ps->failure);
                free(ps->failure);
                free(ps->subject);
                free(ps->jwt);
        }
        free(pushes);
        free(subjects);
        free(answered);
        free(ctx.creates);
        free(ctx.first_ignored);
        return r;
}
