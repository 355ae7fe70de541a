#include "obsindex.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "observe-parse.h"
#include "util.h"

/* One account of the last sweep. */
struct slim {
        char key[NKEY_PUBLIC_LEN + 1];
        uint32_t name;      /* offset + 1 in names; 0: the JWT has no name */
        uint32_t untrusted; /* index + 1 in reasons; 0: its JWT is trusted */
};

struct observed_index {
        struct server_info *servers;
        size_t n_servers;
        struct slim *v; /* sorted by key */
        size_t n;
        uint32_t *by_name; /* indexes into v, sorted by name, then key */
        char *names;       /* the names, each NUL-terminated */
        size_t names_len, names_cap, names_garbage;
        char **reasons; /* why a JWT is not trusted; NULL: a slot no longer used */
        size_t n_reasons;
};

static const char *slim_name(const struct observed_index *x, const struct slim *s) {
        return s->name ? x->names + s->name - 1 : NULL;
}

static int cmp_name(const char *a, const char *b) {
        if (!a || !b)
                return (a != NULL) - (b != NULL);
        return strcmp(a, b);
}

static uint32_t names_add(struct observed_index *x, const char *name) {
        if (!name)
                return 0;
        return (uint32_t)(strpool_add(&x->names, &x->names_len, &x->names_cap, name) + 1);
}

static uint32_t reason_add(struct observed_index *x, const char *why) {
        if (!why)
                return 0;
        x->reasons = xreallocarray(x->reasons, x->n_reasons + 1, sizeof(*x->reasons));
        x->reasons[x->n_reasons++] = xstrdup(why);
        return (uint32_t)x->n_reasons;
}

static void server_info_copy(struct server_info *to, const struct server_info *from) {
        *to = *from;
        to->name = from->name ? xstrdup(from->name) : NULL;
        to->version = from->version ? xstrdup(from->version) : NULL;
        to->operator_key = from->operator_key ? xstrdup(from->operator_key) : NULL;
        to->system_account = from->system_account ? xstrdup(from->system_account) : NULL;
        to->trusted_keys = NULL;
        if (from->trusted_keys) {
                size_t k = 0;
                while (from->trusted_keys[k])
                        k++;
                to->trusted_keys = xcalloc(k + 1, sizeof(char *));
                for (size_t i = 0; i < k; i++)
                        to->trusted_keys[i] = xstrdup(from->trusted_keys[i]);
        }
}

static struct server_info *servers_copy(const struct server_info *v, size_t n) {
        struct server_info *out = xcalloc(n ? n : 1, sizeof(*out));
        for (size_t i = 0; i < n; i++)
                server_info_copy(&out[i], &v[i]);
        return out;
}

static int cmp_by_name(const void *a, const void *b, void *ctx) {
        const struct observed_index *x = ctx;
        const struct slim *p = &x->v[*(const uint32_t *)a], *q = &x->v[*(const uint32_t *)b];
        int r = cmp_name(slim_name(x, p), slim_name(x, q));
        return r ? r : strcmp(p->key, q->key);
}

static void index_names(struct observed_index *x) {
        free(x->by_name);
        x->by_name = xcalloc(x->n ? x->n : 1, sizeof(*x->by_name));
        for (size_t i = 0; i < x->n; i++)
                x->by_name[i] = (uint32_t)i;
        if (x->n)
                qsort_r(x->by_name, x->n, sizeof(*x->by_name), cmp_by_name, x);
}

struct observed_index *observed_index_new(const struct observed *o) {
        struct observed_index *x = xcalloc(1, sizeof(*x));
        x->servers = servers_copy(o->servers, o->n_servers);
        x->n_servers = o->n_servers;
        x->v = xcalloc(o->n_accounts ? o->n_accounts : 1, sizeof(*x->v));
        for (size_t i = 0; i < o->n_accounts; i++)
                x->names_cap += o->accounts[i].name ? strlen(o->accounts[i].name) + 1 : 0;
        x->names = xmalloc(x->names_cap ? x->names_cap : 1);
        /* o->accounts is sorted by key, each key once (observed_reindex). */
        for (size_t i = 0; i < o->n_accounts; i++) {
                const struct observed_account *a = &o->accounts[i];
                struct slim *s = &x->v[x->n++];
                memcpy(s->key, a->key, sizeof(s->key));
                s->name = names_add(x, a->name);
                s->untrusted = reason_add(x, a->untrusted);
        }
        index_names(x);
        return x;
}

void observed_index_free(struct observed_index *x) {
        if (!x)
                return;
        for (size_t i = 0; i < x->n_servers; i++)
                server_info_clear(&x->servers[i]);
        free(x->servers);
        for (size_t i = 0; i < x->n_reasons; i++)
                free(x->reasons[i]);
        free(x->reasons);
        free(x->v);
        free(x->by_name);
        free(x->names);
        free(x);
}

size_t observed_index_count(const struct observed_index *x) {
        return x ? x->n : 0;
}

static int cmp_slim_key(const void *k, const void *s) {
        return strcmp(k, ((const struct slim *)s)->key);
}

static struct slim *find_key(const struct observed_index *x, const char *key) {
        if (!key || !x->n)
                return NULL;
        return bsearch(key, x->v, x->n, sizeof(*x->v), cmp_slim_key);
}

bool observed_index_has_key(const struct observed_index *x, const char *key) {
        return find_key(x, key) != NULL;
}

/* The first position in by_name of the accounts named name, and how many there are. */
static size_t find_name(const struct observed_index *x, const char *name, size_t *first) {
        size_t lo = 0, hi = x->n;
        *first = 0;
        if (!name)
                return 0;
        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                if (cmp_name(slim_name(x, &x->v[x->by_name[mid]]), name) < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        size_t end = lo;
        while (end < x->n && cmp_name(slim_name(x, &x->v[x->by_name[end]]), name) == 0)
                end++;
        *first = lo;
        return end - lo;
}

const char *observed_index_trusted_name(const struct observed_index *x, const char *name) {
        size_t first, n = find_name(x, name, &first), trusted = 0;
        const char *key = NULL;
        for (size_t k = 0; k < n; k++) {
                const struct slim *s = &x->v[x->by_name[first + k]];
                if (!s->untrusted) {
                        trusted++;
                        key = s->key;
                }
        }
        return trusted == 1 ? key : NULL;
}

static void expand_one(const struct observed_index *x, const struct slim *s, struct observed *o, size_t *cap) {
        if (o->n_accounts == *cap) {
                *cap = *cap ? *cap * 2 : 8;
                o->accounts = xreallocarray(o->accounts, *cap, sizeof(*o->accounts));
        }
        struct observed_account *a = &o->accounts[o->n_accounts++];
        memset(a, 0, sizeof(*a));
        memcpy(a->key, s->key, sizeof(a->key));
        const char *name = slim_name(x, s);
        a->name = name ? xstrdup(name) : NULL;
        a->untrusted = s->untrusted ? xstrdup(x->reasons[s->untrusted - 1]) : NULL;
}

struct observed *observed_index_expand(const struct observed_index *x, const char *const *keys, size_t n_keys,
                                       const char *const *names, size_t n_names) {
        struct observed *o = xcalloc(1, sizeof(*o));
        o->servers = servers_copy(x->servers, x->n_servers);
        o->n_servers = x->n_servers;
        size_t cap = 0;
        for (size_t i = 0; i < n_keys; i++) {
                const struct slim *s = find_key(x, keys[i]);
                if (s)
                        expand_one(x, s, o, &cap);
        }
        for (size_t i = 0; i < n_names; i++) {
                size_t first, n = find_name(x, names[i], &first);
                for (size_t k = 0; k < n; k++)
                        expand_one(x, &x->v[x->by_name[first + k]], o, &cap);
        }
        /* Sorted by key, each once; by name. */
        observed_reindex(o);
        return o;
}

/* Names of accounts renamed since are garbage in the block: copy the live
 * ones out once they are the larger part. */
static void names_compact(struct observed_index *x) {
        if (x->names_garbage * 2 <= x->names_len)
                return;
        char *old = x->names;
        x->names = NULL;
        x->names_len = x->names_cap = x->names_garbage = 0;
        for (size_t i = 0; i < x->n; i++)
                x->v[i].name = x->v[i].name ? names_add(x, old + x->v[i].name - 1) : 0;
        free(old);
}

void observed_index_update(struct observed_index *x, const struct observed *o) {
        bool renamed = false;
        struct slim *added = NULL;
        size_t n_added = 0;
        for (size_t i = 0; i < o->n_accounts; i++) {
                const struct observed_account *a = &o->accounts[i];
                struct slim *s = find_key(x, a->key);
                if (!s) {
                        added = xreallocarray(added, n_added + 1, sizeof(*added));
                        s = &added[n_added++];
                        memset(s, 0, sizeof(*s));
                        memcpy(s->key, a->key, sizeof(s->key));
                        s->name = names_add(x, a->name);
                        s->untrusted = reason_add(x, a->untrusted);
                        continue;
                }
                if (cmp_name(slim_name(x, s), a->name) != 0) {
                        if (s->name)
                                x->names_garbage += strlen(slim_name(x, s)) + 1;
                        s->name = names_add(x, a->name);
                        renamed = true;
                }
                const char *was = s->untrusted ? x->reasons[s->untrusted - 1] : NULL;
                if (cmp_name(was, a->untrusted) != 0) {
                        if (s->untrusted) {
                                free(x->reasons[s->untrusted - 1]);
                                x->reasons[s->untrusted - 1] = NULL;
                        }
                        s->untrusted = reason_add(x, a->untrusted);
                }
        }
        if (n_added) {
                /* Both sorted by key (o->accounts is, each key once): merge. */
                struct slim *v = xcalloc(x->n + n_added, sizeof(*v));
                size_t i = 0, j = 0, k = 0;
                while (i < x->n || j < n_added) {
                        if (j == n_added || (i < x->n && strcmp(x->v[i].key, added[j].key) < 0))
                                v[k++] = x->v[i++];
                        else
                                v[k++] = added[j++];
                }
                free(x->v);
                x->v = v;
                x->n = k;
        }
        free(added);
        if (n_added || renamed) {
                names_compact(x);
                index_names(x);
        }
}

const char *observed_index_server_joined(const struct observed_index *x, const struct observed *now) {
        for (size_t i = 0; i < now->n_servers; i++) {
                bool seen = false;
                for (size_t k = 0; k < x->n_servers && !seen; k++)
                        seen = strcmp(now->servers[i].id, x->servers[k].id) == 0;
                if (!seen)
                        return now->servers[i].name ? now->servers[i].name : now->servers[i].id;
        }
        return NULL;
}
