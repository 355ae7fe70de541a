#include "jwtcache.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nkeys.h"
#include "statedir.h"
#include "util.h"

#define HEADER "# nats-accountd signed-jwts 1: BLAKE2b-256 of each account JWT this daemon signed (state_dir)\n"
#define END_TAG "end "
#define HEX_LEN (JWT_CACHE_HASH_LEN * 2)
/* "<issuer> <hash>\n" */
#define LINE_LEN (NKEY_PUBLIC_LEN + 1 + HEX_LEN + 1)
#define FILE_MAX ((size_t)256 << 20)
#define ISSUERS_MAX UINT16_MAX

enum { F_SIGNED = 1, F_VERIFIED = 2 };

/* 36 bytes: 100,000 accounts cost 3.6 MB, and 1 MB of slots. */
struct entry {
        uint8_t hash[JWT_CACHE_HASH_LEN];
        uint16_t issuer; /* index into issuers */
        uint8_t flags;
};

struct issuer {
        char key[NKEY_PUBLIC_LEN + 1];
        bool trusted;
};

struct jwt_cache {
        bool learn;
        struct entry *v;
        size_t n, cap;
        uint32_t *slots; /* entry index + 1; 0: empty */
        size_t n_slots;  /* a power of two, at least twice n */
        struct issuer *issuers;
        size_t n_issuers;
        bool dirty; /* the file no longer says what the cache would write */
};

struct jwt_cache *jwt_cache_new(bool learn_verified) {
        if (sodium_init() < 0)
                abort();
        struct jwt_cache *c = xcalloc(1, sizeof(*c));
        c->learn = learn_verified;
        return c;
}

void jwt_cache_free(struct jwt_cache *c) {
        if (!c)
                return;
        free(c->v);
        free(c->slots);
        free(c->issuers);
        free(c);
}

size_t jwt_cache_count(const struct jwt_cache *c) {
        return c ? c->n : 0;
}

bool jwt_cache_learns_verified(const struct jwt_cache *c) {
        return c && c->learn;
}

void jwt_cache_hash(const char *jwt, size_t len, uint8_t out[JWT_CACHE_HASH_LEN]) {
        crypto_generichash(out, JWT_CACHE_HASH_LEN, (const unsigned char *)jwt, len, NULL, 0);
}

/* Hashes are uniform already: their first bytes pick the slot. Only JWTs
 * found genuine and trusted (or signed here) become entries, so nobody
 * without a trusted key can choose what the table holds. */
static size_t slot_of(const struct jwt_cache *c, const uint8_t hash[JWT_CACHE_HASH_LEN]) {
        uint64_t h;
        memcpy(&h, hash, sizeof(h));
        return (size_t)h & (c->n_slots - 1);
}

/* The slot of hash's entry, or -1. */
static ptrdiff_t find_slot(const struct jwt_cache *c, const uint8_t hash[JWT_CACHE_HASH_LEN]) {
        if (!c->n_slots)
                return -1;
        for (size_t i = slot_of(c, hash);; i = (i + 1) & (c->n_slots - 1)) {
                uint32_t s = c->slots[i];
                if (!s)
                        return -1;
                if (memcmp(c->v[s - 1].hash, hash, JWT_CACHE_HASH_LEN) == 0)
                        return (ptrdiff_t)i;
        }
}

/* The index of hash's entry, or -1. */
static ptrdiff_t find(const struct jwt_cache *c, const uint8_t hash[JWT_CACHE_HASH_LEN]) {
        ptrdiff_t i = find_slot(c, hash);
        return i < 0 ? -1 : (ptrdiff_t)c->slots[i] - 1;
}

static void slot_put(struct jwt_cache *c, size_t index) {
        size_t i = slot_of(c, c->v[index].hash);
        while (c->slots[i])
                i = (i + 1) & (c->n_slots - 1);
        c->slots[i] = (uint32_t)(index + 1);
}

static void reslot(struct jwt_cache *c, size_t n_slots) {
        free(c->slots);
        c->n_slots = n_slots;
        c->slots = xcalloc(n_slots, sizeof(*c->slots));
        for (size_t i = 0; i < c->n; i++)
                slot_put(c, i);
}

/* Room for one more entry (and its slot). */
static bool reserve(struct jwt_cache *c) {
        if (c->n >= UINT32_MAX - 1)
                return false;
        if (c->n == c->cap) {
                c->cap = c->cap ? c->cap * 2 : 256;
                c->v = xreallocarray(c->v, c->cap, sizeof(*c->v));
        }
        if ((c->n + 1) * 2 > c->n_slots)
                reslot(c, c->n_slots ? c->n_slots * 2 : 1024);
        return true;
}

static ptrdiff_t issuer_index(struct jwt_cache *c, const char *issuer, bool create) {
        for (size_t i = 0; i < c->n_issuers; i++)
                if (strcmp(c->issuers[i].key, issuer) == 0)
                        return (ptrdiff_t)i;
        if (!create || c->n_issuers >= ISSUERS_MAX || strlen(issuer) != NKEY_PUBLIC_LEN)
                return -1;
        c->issuers = xreallocarray(c->issuers, c->n_issuers + 1, sizeof(*c->issuers));
        struct issuer *is = &c->issuers[c->n_issuers];
        memcpy(is->key, issuer, NKEY_PUBLIC_LEN + 1);
        is->trusted = false;
        return (ptrdiff_t)c->n_issuers++;
}

void jwt_cache_trust(struct jwt_cache *c, jwt_cache_trusted_fn trusted, void *userdata) {
        if (!c)
                return;
        bool *had_signed = xcalloc(c->n_issuers ? c->n_issuers : 1, sizeof(*had_signed));
        for (size_t i = 0; i < c->n; i++)
                if (c->v[i].flags & F_SIGNED)
                        had_signed[c->v[i].issuer] = true;
        for (size_t i = 0; i < c->n_issuers; i++) {
                c->issuers[i].trusted = trusted(userdata, c->issuers[i].key);
                /* Its entries are no longer written: the file changes. */
                if (!c->issuers[i].trusted && had_signed[i])
                        c->dirty = true;
        }
        free(had_signed);
}

bool jwt_cache_known(const struct jwt_cache *c, const char *issuer, const uint8_t hash[JWT_CACHE_HASH_LEN]) {
        if (!c || !c->n || !issuer)
                return false;
        ptrdiff_t i = find(c, hash);
        if (i < 0)
                return false;
        const struct issuer *is = &c->issuers[c->v[i].issuer];
        return is->trusted && strcmp(is->key, issuer) == 0;
}

/* Set the entry of hash; false when it cannot be kept. */
static bool put(struct jwt_cache *c, uint16_t issuer, const uint8_t hash[JWT_CACHE_HASH_LEN], uint8_t flag) {
        ptrdiff_t i = find(c, hash);
        if (i >= 0) {
                struct entry *e = &c->v[i];
                /* The same bytes name the same issuer: only how it is known can change. */
                if (e->issuer == issuer) {
                        if ((flag & F_SIGNED) && !(e->flags & F_SIGNED))
                                c->dirty = true;
                        e->flags |= flag;
                }
                return true;
        }
        if (!reserve(c))
                return false;
        struct entry *e = &c->v[c->n];
        memcpy(e->hash, hash, JWT_CACHE_HASH_LEN);
        e->issuer = issuer;
        e->flags = flag;
        slot_put(c, c->n++);
        if (flag & F_SIGNED)
                c->dirty = true;
        return true;
}

void jwt_cache_add(struct jwt_cache *c, const char *issuer, const uint8_t hash[JWT_CACHE_HASH_LEN], bool signed_here) {
        if (!c || (!signed_here && !c->learn) || !issuer)
                return;
        ptrdiff_t is = issuer_index(c, issuer, true);
        if (is < 0)
                return;
        /* The caller just found the issuer trusted by the servers. */
        c->issuers[is].trusted = true;
        (void)put(c, (uint16_t)is, hash, signed_here ? F_SIGNED : F_VERIFIED);
}

void jwt_cache_forget(struct jwt_cache *c, const uint8_t hash[JWT_CACHE_HASH_LEN]) {
        ptrdiff_t i = c ? find(c, hash) : -1;
        if (i < 0)
                return;
        if (c->v[i].flags & F_SIGNED)
                c->dirty = true;
        /* Its slot emptied, the entries probing past it move back (linear
         * probing without tombstones) ... */
        size_t mask = c->n_slots - 1, hole = (size_t)find_slot(c, hash);
        c->slots[hole] = 0;
        for (size_t j = (hole + 1) & mask; c->slots[j]; j = (j + 1) & mask) {
                size_t home = slot_of(c, c->v[c->slots[j] - 1].hash);
                if (((j - home) & mask) >= ((j - hole) & mask)) {
                        c->slots[hole] = c->slots[j];
                        c->slots[j] = 0;
                        hole = j;
                }
        }
        /* ... and the last entry takes its place in v. */
        size_t last = --c->n;
        if ((size_t)i != last) {
                c->v[i] = c->v[last];
                c->slots[find_slot(c, c->v[i].hash)] = (uint32_t)i + 1;
        }
}

void jwt_cache_sweep(struct jwt_cache *c, const struct jwt_cache_seen *seen, size_t n) {
        if (!c)
                return;
        size_t signed_before = 0, signed_after = 0;
        for (size_t i = 0; i < c->n; i++)
                signed_before += (c->v[i].flags & F_SIGNED) != 0;
        struct jwt_cache old = *c;
        c->v = NULL;
        c->n = c->cap = 0;
        c->slots = NULL;
        c->n_slots = 0;
        /* Sized for what the resolver holds: no slack, no copy as it grows. */
        if (n && n < UINT32_MAX / 4) {
                c->cap = n;
                c->v = xreallocarray(NULL, n, sizeof(*c->v));
                size_t slots = 1024;
                while (slots < 2 * n)
                        slots *= 2;
                reslot(c, slots);
        }
        /* The old issuers stay (indexes into them are copied). */
        for (size_t k = 0; k < n; k++) {
                const struct jwt_cache_seen *s = &seen[k];
                if (!s->trusted || find(c, s->hash) >= 0)
                        continue;
                ptrdiff_t i = find(&old, s->hash);
                const struct entry *e = i >= 0 ? &old.v[i] : NULL;
                if (e && strcmp(c->issuers[e->issuer].key, s->issuer) == 0) {
                        if (put(c, e->issuer, e->hash, e->flags))
                                signed_after += (e->flags & F_SIGNED) != 0;
                        continue;
                }
                ptrdiff_t is = c->learn ? issuer_index(c, s->issuer, true) : -1;
                if (is >= 0) {
                        c->issuers[is].trusted = true;
                        (void)put(c, (uint16_t)is, s->hash, F_VERIFIED);
                }
        }
        /* put() of kept entries marked nothing; a signed entry dropped changes the file. */
        c->dirty = old.dirty || signed_after != signed_before;
        free(old.v);
        free(old.slots);
}

static void hex(const uint8_t *in, size_t n, char *out) {
        sodium_bin2hex(out, n * 2 + 1, in, n);
}

static bool written(const struct jwt_cache *c, const struct entry *e) {
        return (e->flags & F_SIGNED) && c->issuers[e->issuer].trusted;
}

char *jwt_cache_format(const struct jwt_cache *c, size_t *len) {
        size_t n = 0;
        for (size_t i = 0; i < c->n; i++)
                n += written(c, &c->v[i]);
        size_t cap = sizeof(HEADER) + n * LINE_LEN + sizeof(END_TAG) + HEX_LEN + 2;
        char *text = xmalloc(cap), *p = text;
        memcpy(p, HEADER, sizeof(HEADER) - 1);
        p += sizeof(HEADER) - 1;
        for (size_t i = 0; i < c->n; i++) {
                const struct entry *e = &c->v[i];
                if (!written(c, e))
                        continue;
                memcpy(p, c->issuers[e->issuer].key, NKEY_PUBLIC_LEN);
                p[NKEY_PUBLIC_LEN] = ' ';
                p += NKEY_PUBLIC_LEN + 1;
                hex(e->hash, JWT_CACHE_HASH_LEN, p);
                p[HEX_LEN] = '\n';
                p += HEX_LEN + 1;
        }
        /* The last line holds the hash of everything before it: a file cut
         * short or changed anywhere is not used at all. */
        uint8_t sum[JWT_CACHE_HASH_LEN];
        jwt_cache_hash(text, (size_t)(p - text), sum);
        memcpy(p, END_TAG, sizeof(END_TAG) - 1);
        p += sizeof(END_TAG) - 1;
        hex(sum, sizeof(sum), p);
        p += HEX_LEN;
        *p++ = '\n';
        *p = 0;
        *len = (size_t)(p - text);
        return text;
}

static bool is_hex(const char *s, size_t n) {
        for (size_t i = 0; i < n; i++)
                if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
                        return false;
        return true;
}

static bool unhex(const char *s, uint8_t *out, size_t n) {
        size_t got = 0;
        return is_hex(s, n * 2) && sodium_hex2bin(out, n, s, n * 2, NULL, &got, NULL) == 0 && got == n;
}

int jwt_cache_parse(struct jwt_cache *c, const char *text, size_t len, char **why) {
        size_t hl = sizeof(HEADER) - 1, tail = sizeof(END_TAG) - 1 + HEX_LEN + 1;
        if (len < hl + tail || memcmp(text, HEADER, hl) != 0) {
                *why = xstrdup("not a signed-jwts file of this version (its first line differs)");
                return -EBADMSG;
        }
        const char *end = text + len - tail;
        uint8_t want[JWT_CACHE_HASH_LEN], sum[JWT_CACHE_HASH_LEN];
        if (memcmp(end, END_TAG, sizeof(END_TAG) - 1) != 0 || text[len - 1] != '\n' ||
            !unhex(end + sizeof(END_TAG) - 1, want, sizeof(want))) {
                *why = xstrdup("its last line is not \"end <hash>\" (cut short?)");
                return -EBADMSG;
        }
        jwt_cache_hash(text, (size_t)(end - text), sum);
        if (memcmp(sum, want, sizeof(sum)) != 0) {
                *why = xstrdup("its content does not match the hash on its last line (changed or damaged)");
                return -EBADMSG;
        }
        size_t body = (size_t)(end - text) - hl;
        if (body % LINE_LEN) {
                *why = xasprintf("its lines are not \"<issuer> <hash>\"");
                return -EBADMSG;
        }
        size_t n = body / LINE_LEN;
        /* Every line is checked before any is used. */
        struct jwt_cache *t = jwt_cache_new(false);
        int r = 0;
        char last_issuer[NKEY_PUBLIC_LEN + 1] = "";
        for (size_t i = 0; i < n && r == 0; i++) {
                const char *l = text + hl + i * LINE_LEN;
                char iss[NKEY_PUBLIC_LEN + 1];
                uint8_t hash[JWT_CACHE_HASH_LEN];
                memcpy(iss, l, NKEY_PUBLIC_LEN);
                iss[NKEY_PUBLIC_LEN] = 0;
                const char *problem = NULL;
                if (l[NKEY_PUBLIC_LEN] != ' ' || l[LINE_LEN - 1] != '\n')
                        problem = "not \"<issuer> <hash>\"";
                else if (strcmp(iss, last_issuer) != 0 && nkey_public_decode(iss, NKEY_OPERATOR, NULL, &problem) < 0)
                        ;
                else if (!unhex(l + NKEY_PUBLIC_LEN + 1, hash, sizeof(hash)))
                        problem = "the hash is not 64 hexadecimal digits";
                else if (find(t, hash) >= 0)
                        problem = "the same hash twice";
                if (problem) {
                        *why = xasprintf("line %zu: %s", i + 2, problem);
                        r = -EBADMSG;
                        break;
                }
                memcpy(last_issuer, iss, sizeof(iss));
                ptrdiff_t is = issuer_index(t, iss, true);
                if (is < 0 || !put(t, (uint16_t)is, hash, F_SIGNED)) {
                        *why = xasprintf("line %zu: too many entries or issuers", i + 2);
                        r = -EBADMSG;
                }
        }
        /* Merged in as signed here; their issuers are trusted only once the
         * servers say so (jwt_cache_trust). What was read is what the file
         * says: nothing to write back. */
        bool dirty = c->dirty;
        for (size_t i = 0; r == 0 && i < t->n; i++) {
                const struct entry *e = &t->v[i];
                ptrdiff_t is = issuer_index(c, t->issuers[e->issuer].key, true);
                if (is >= 0)
                        (void)put(c, (uint16_t)is, e->hash, F_SIGNED);
        }
        c->dirty = dirty;
        jwt_cache_free(t);
        return r;
}

int jwt_cache_load(struct jwt_cache *c, const char *dir, char **warning) {
        *warning = NULL;
        char *file = path_join(dir, JWT_CACHE_FILE);
        char *why = NULL, *text = NULL;
        struct stat st;
        int fd = -1;
        if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode)) {
                free(file);
                return 0; /* no state folder yet: nothing was signed */
        }
        if (st.st_mode & 077) {
                why = xasprintf("its folder is open to group or others (mode %04o)", (unsigned)(st.st_mode & 07777));
                goto out;
        }
        uid_t dir_owner = st.st_uid;
        fd = open(file, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0) {
                if (errno != ENOENT)
                        why = xasprintf("%s", errno == ELOOP ? "it is a symbolic link" : strerror(errno));
                goto out;
        }
        if (fstat(fd, &st) < 0) {
                why = xstrdup(strerror(errno));
                goto out;
        }
        if (!S_ISREG(st.st_mode))
                why = xstrdup("not a regular file");
        /* Written by this user, the folder's owner (the daemon, for root's
         * `plan`) or root: only they can write into a 0700 folder anyway. */
        else if (st.st_uid != geteuid() && st.st_uid != dir_owner && st.st_uid != 0)
                why = xasprintf("owned by uid %u, neither this user (uid %u), its folder's owner nor root",
                                (unsigned)st.st_uid, (unsigned)geteuid());
        else if (st.st_mode & 077)
                why = xasprintf("open to group or others (mode %04o)", (unsigned)(st.st_mode & 07777));
        else if ((size_t)st.st_size > FILE_MAX)
                why = xasprintf("larger than %zu MiB", FILE_MAX >> 20);
        if (why)
                goto out;
        size_t len = (size_t)st.st_size, got = 0;
        text = xmalloc(len + 1);
        while (got < len) {
                ssize_t k = read(fd, text + got, len - got);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0) {
                        why = xstrdup(k < 0 ? strerror(errno) : "it shrank while being read");
                        goto out;
                }
                got += (size_t)k;
        }
        text[len] = 0;
        (void)jwt_cache_parse(c, text, len, &why);
out:
        if (fd >= 0)
                close(fd);
        free(text);
        if (why) {
                *warning = xasprintf("%s: %s; not used (every JWT's signature is checked, and the file is written "
                                     "anew)",
                                     file, why);
                free(why);
                c->dirty = true;
        }
        free(file);
        return 0;
}

int jwt_cache_save(struct jwt_cache *c, const char *dir, char **err) {
        if (!c || !c->dirty)
                return 0;
        char *file = path_join(dir, JWT_CACHE_FILE);
        size_t n = 0;
        for (size_t i = 0; i < c->n; i++)
                n += written(c, &c->v[i]);
        int r = 0;
        if (n == 0) {
                if (unlink(file) < 0 && errno != ENOENT && errno != ENOTDIR) {
                        r = -errno;
                        *err = xasprintf("cannot remove %s: %s", file, strerror(-r));
                }
        } else if ((r = statedir_ensure(dir, err)) == 0) {
                size_t len = 0;
                char *text = jwt_cache_format(c, &len);
                r = file_write_atomic(file, text, len, 0600);
                free(text);
                if (r < 0)
                        *err = xasprintf("cannot write %s: %s", file, strerror(-r));
        }
        if (r == 0)
                c->dirty = false;
        free(file);
        return r;
}
