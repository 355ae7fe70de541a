#include "statedir.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "names.h"
#include "secrets.h"
#include "util.h"

static int mkdir_parents(const char *dir) {
        char *p = xstrdup(dir);
        int r = 0;
        for (char *s = p + 1; *s; s++) {
                if (*s != '/')
                        continue;
                *s = 0;
                if (mkdir(p, 0755) < 0 && errno != EEXIST)
                        r = -errno;
                *s = '/';
                if (r < 0)
                        break;
        }
        if (r == 0 && mkdir(p, 0700) < 0 && errno != EEXIST)
                r = -errno;
        free(p);
        return r;
}

int statedir_ensure(const char *dir, char **err) {
        int r = mkdir_parents(dir);
        if (r < 0) {
                *err = xasprintf("cannot create state folder %s: %s", dir, strerror(-r));
                return r;
        }
        struct stat st;
        if (stat(dir, &st) < 0) {
                r = -errno;
                *err = xasprintf("cannot read state folder %s: %s", dir, strerror(-r));
                return r;
        }
        if (!S_ISDIR(st.st_mode)) {
                *err = xasprintf("state folder %s is not a folder", dir);
                return -ENOTDIR;
        }
        if (st.st_mode & 077) {
                *err = xasprintf("state folder %s is open to group or others (mode %04o); run: chmod 700 %s", dir,
                                 (unsigned)(st.st_mode & 07777), dir);
                return -EACCES;
        }
        return 0;
}

void statedir_remove_stale(const char *dir) {
        DIR *d = opendir(dir);
        if (!d)
                return;
        struct dirent *de;
        while ((de = readdir(d))) {
                /* <file>.tmp.<pid>, as file_write_atomic names them */
                const char *t = strstr(de->d_name, ".tmp.");
                if (!t || t == de->d_name)
                        continue;
                char *end = NULL;
                errno = 0;
                long pid = strtol(t + 5, &end, 10);
                if (errno || !end || *end || end == t + 5 || pid <= 0 || pid > INT_MAX)
                        continue;
                if (pid == (long)getpid() || kill((pid_t)pid, 0) == 0 || errno != ESRCH)
                        continue;
                if (unlinkat(dirfd(d), de->d_name, 0) == 0)
                        log_notice("%s/%s: removed, left by process %ld, which ended while it wrote it", dir,
                                   de->d_name, pid);
        }
        closedir(d);
}

#define BATCH_SUFFIX ".seeds"
#define OLD_SUFFIX ".nk"
#define BATCH_HEADER "# nats-accountd seeds 1: NAME PUBLIC-KEY SEED CHECK, one created account a line\n"
#define OLD_PREFIX "# nats-accountd: seed of account "
#define CHECK_BYTES 16 /* crypto_generichash_BYTES_MIN */
/* "<NAME> <KEY> <SEED> <CHECK>\n" */
#define RECORD_MAX (ACCOUNT_NAME_MAX + 1 + NKEY_PUBLIC_LEN + 1 + NKEY_SEED_LEN + 1 + CHECK_BYTES * 2 + 1)
#define BATCH_FILE_MAX (sizeof(BATCH_HEADER) + (size_t)STATEDIR_BATCH_MAX * RECORD_MAX)

/* CHECK of a record: the first CHECK_BYTES of BLAKE2b over "<NAME> <KEY> <SEED>", in hex. */
static void record_check(const char *rec, size_t len, char hex[CHECK_BYTES * 2 + 1]) {
        unsigned char sum[CHECK_BYTES];
        crypto_generichash(sum, sizeof(sum), (const unsigned char *)rec, len, NULL, 0);
        sodium_bin2hex(hex, CHECK_BYTES * 2 + 1, sum, sizeof(sum));
}

void statedir_batch_init(struct statedir_batch *b, size_t max) {
        memset(b, 0, sizeof(*b));
        b->max = max < 1 ? 1 : max < STATEDIR_BATCH_MAX ? max : STATEDIR_BATCH_MAX;
        b->cap = sizeof(BATCH_HEADER) + b->max * RECORD_MAX;
        b->text = xmalloc(b->cap);
}

static void batch_empty(struct statedir_batch *b) {
        if (b->text)
                sodium_memzero(b->text, b->len);
        b->len = 0;
        b->n = 0;
        b->first[0] = 0;
}

int statedir_batch_add(struct statedir_batch *b, const char *name, const struct nkey *k, char **err) {
        const char *why = NULL;
        if (!account_name_valid(name, &why)) {
                *err = xasprintf("not writing a seed for \"%s\": %s", name, why);
                return -EINVAL;
        }
        if (b->n == b->max) {
                *err = xasprintf("not writing the seed of %s: its batch is full (%zu)", name, b->max);
                return -ENOSPC;
        }
        if (b->n == 0) {
                memcpy(b->text, BATCH_HEADER, sizeof(BATCH_HEADER) - 1);
                b->len = sizeof(BATCH_HEADER) - 1;
                memcpy(b->first, k->pub, sizeof(b->first));
        }
        char seed[NKEY_SEED_LEN + 1], check[CHECK_BYTES * 2 + 1];
        nkey_seed_encode(k, seed);
        char *rec = b->text + b->len;
        int n = snprintf(rec, b->cap - b->len, "%s %s %s", name, k->pub, seed);
        sodium_memzero(seed, sizeof(seed));
        record_check(rec, (size_t)n, check);
        n += snprintf(rec + n, b->cap - b->len - (size_t)n, " %s\n", check);
        b->len += (size_t)n;
        b->n++;
        return 0;
}

int statedir_batch_commit(const char *dir, struct statedir_batch *b, char **err) {
        if (b->n == 0)
                return 0;
        char *file = xasprintf("%s/%s" BATCH_SUFFIX, dir, b->first);
        int r = file_write_atomic(file, b->text, b->len, 0600);
        if (r < 0)
                *err = xasprintf("cannot write %s: %s", file, strerror(-r));
        free(file);
        batch_empty(b);
        return r;
}

void statedir_batch_free(struct statedir_batch *b) {
        if (!b->text)
                return;
        batch_empty(b);
        free(b->text);
        b->text = NULL;
}

void seed_batches_before_push(struct seed_batches *b, size_t c) {
        if (c < b->synced || c >= b->n)
                return;
        if (!b->pending.text)
                statedir_batch_init(&b->pending, b->batch);
        size_t end = c + b->pending.max < b->n ? c + b->pending.max : b->n;
        while (b->written < end)
                b->write(b->userdata, b->written++, &b->pending);
        char *err = NULL;
        if (statedir_batch_commit(b->dir, &b->pending, &err) < 0)
                b->failed(b->userdata, b->synced, end, err);
        free(err);
        b->synced = end;
}

void seed_batches_ahead(struct seed_batches *b) {
        if (b->pending.text && b->written < b->n && b->written < b->synced + b->pending.max)
                b->write(b->userdata, b->written++, &b->pending);
}

void seed_batches_free(struct seed_batches *b) {
        statedir_batch_free(&b->pending);
}

/* One seed as found in the folder. */
struct rec {
        char name[ACCOUNT_NAME_MAX + 1]; /* "" for a .nk file not read (looked up by key) */
        char key[NKEY_PUBLIC_LEN + 1];
        size_t file; /* index into scan.files */
};

struct scan {
        char **files; /* "<KEY>.nk" and "<KEY>.seeds", sorted */
        size_t n_files;
        struct rec *v;
        size_t n, cap;
};

static void scan_free(struct scan *s) {
        for (size_t i = 0; i < s->n_files; i++)
                free(s->files[i]);
        free(s->files);
        free(s->v);
        memset(s, 0, sizeof(*s));
}

static struct rec *scan_add(struct scan *s) {
        if (s->n == s->cap) {
                s->cap = s->cap ? s->cap * 2 : 64;
                s->v = xreallocarray(s->v, s->cap, sizeof(*s->v));
        }
        struct rec *r = &s->v[s->n++];
        memset(r, 0, sizeof(*r));
        r->file = s->n_files;
        return r;
}

static bool has_suffix(const char *name, size_t len, const char *suffix) {
        size_t n = strlen(suffix);
        return len == NKEY_PUBLIC_LEN + n && strcmp(name + NKEY_PUBLIC_LEN, suffix) == 0;
}

static bool is_batch(const char *file) {
        return has_suffix(file, strlen(file), BATCH_SUFFIX);
}

static int cmp_str(const void *a, const void *b) {
        return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The seed files' names, sorted: what the folder holds, in an order that
 * does not depend on the file system. */
static int seed_files(const char *dir, struct scan *s, char **err) {
        DIR *d = opendir(dir);
        if (!d) {
                int r = -errno;
                *err = xasprintf("cannot read state folder %s: %s", dir, strerror(-r));
                return r;
        }
        size_t cap = 0;
        struct dirent *de;
        while ((de = readdir(d))) {
                size_t len = strlen(de->d_name);
                if (!has_suffix(de->d_name, len, OLD_SUFFIX) && !has_suffix(de->d_name, len, BATCH_SUFFIX))
                        continue;
                if (s->n_files == cap) {
                        cap = cap ? cap * 2 : 64;
                        s->files = xreallocarray(s->files, cap, sizeof(*s->files));
                }
                s->files[s->n_files++] = xstrdup(de->d_name);
        }
        closedir(d);
        if (s->n_files)
                qsort(s->files, s->n_files, sizeof(*s->files), cmp_str);
        return 0;
}

/* The text of a seed file (a secret: wipe with secret_free). */
static int seed_file_read(const char *dir, const char *name, char **text, size_t *len, char **err) {
        char *file = xasprintf("%s/%s", dir, name);
        char *why = NULL;
        int r = is_batch(name) ? secret_read_max(file, BATCH_FILE_MAX, text, len, &why)
                               : secret_read(file, text, len, &why);
        if (r < 0)
                *err = why ? why : xasprintf("cannot read %s: %s", file, strerror(-r));
        else
                free(why);
        free(file);
        return r;
}

/* The name recorded in a .nk file's first line, into name (ACCOUNT_NAME_MAX + 1);
 * false when there is none. */
static bool file_name(const char *text, char *name) {
        if (strncmp(text, OLD_PREFIX, sizeof(OLD_PREFIX) - 1) != 0)
                return false;
        const char *n = text + sizeof(OLD_PREFIX) - 1;
        size_t len = strcspn(n, "\r\n");
        if (len == 0 || len > ACCOUNT_NAME_MAX)
                return false;
        memcpy(name, n, len);
        name[len] = 0;
        return true;
}

static bool field(const char **p, const char *end, size_t min, size_t max, char *out) {
        const char *e = memchr(*p, ' ', (size_t)(end - *p));
        size_t len = (size_t)((e ? e : end) - *p);
        if (len < min || len > max)
                return false;
        memcpy(out, *p, len);
        out[len] = 0;
        *p = e ? e + 1 : end;
        return true;
}

/* Each record of a .seeds file, checked; every one of them before any is
 * used. on_record gets name, key and seed (a secret, NUL-terminated, on the
 * stack). -EBADMSG with *err naming the file and line, never what it holds. */
static int batch_parse(const char *dir, const char *fname, const char *text, size_t len,
                       void (*on_record)(void *ud, const char *name, const char *key, const char *seed), void *ud,
                       char **err) {
        const char *problem = NULL;
        size_t line = 0;
        if (len < sizeof(BATCH_HEADER) - 1 || memcmp(text, BATCH_HEADER, sizeof(BATCH_HEADER) - 1) != 0) {
                line = 1;
                problem = "not the first line of a seeds file of this version";
        }
        for (int pass = 0; pass < 2 && !problem; pass++) {
                const char *p = text, *end = text + len;
                line = 0;
                while (p < end && !problem) {
                        line++;
                        const char *nl = memchr(p, '\n', (size_t)(end - p));
                        if (!nl) {
                                problem = "cut short (no end of line)";
                                break;
                        }
                        const char *rec = p;
                        p = nl + 1;
                        if (*rec == '#')
                                continue;
                        char name[ACCOUNT_NAME_MAX + 1], key[NKEY_PUBLIC_LEN + 1], seed[NKEY_SEED_LEN + 1],
                                check[CHECK_BYTES * 2 + 1], want[CHECK_BYTES * 2 + 1];
                        const char *q = rec, *why = NULL;
                        if (!field(&q, nl, 1, ACCOUNT_NAME_MAX, name) ||
                            !field(&q, nl, NKEY_PUBLIC_LEN, NKEY_PUBLIC_LEN, key) ||
                            !field(&q, nl, NKEY_SEED_LEN, NKEY_SEED_LEN, seed) ||
                            !field(&q, nl, CHECK_BYTES * 2, CHECK_BYTES * 2, check) || q != nl)
                                problem = "not \"NAME PUBLIC-KEY SEED CHECK\"";
                        else if (!account_name_valid(name, &why))
                                problem = "the name is not an account name";
                        else if (nkey_public_type(key) != NKEY_ACCOUNT)
                                problem = "the public key is not an account key";
                        else if (seed[0] != 'S' || seed[1] != 'A')
                                problem = "the seed is not an account seed";
                        else {
                                record_check(rec, (size_t)(nl - rec) - CHECK_BYTES * 2 - 1, want);
                                if (sodium_memcmp(want, check, sizeof(want)) != 0)
                                        problem = "its CHECK does not match (changed or damaged)";
                                else if (pass == 1)
                                        on_record(ud, name, key, seed);
                        }
                        sodium_memzero(seed, sizeof(seed));
                }
        }
        if (problem) {
                *err = xasprintf("%s/%s, line %zu: %s; the file is not used: restore it from a backup", dir, fname,
                                 line, problem);
                return -EBADMSG;
        }
        return 0;
}

struct scan_ud {
        struct scan *s;
};

static void scan_record(void *ud, const char *name, const char *key, const char *seed) {
        (void)seed;
        struct rec *r = scan_add(((struct scan_ud *)ud)->s);
        memcpy(r->name, name, strlen(name) + 1);
        memcpy(r->key, key, NKEY_PUBLIC_LEN + 1);
}

/* Every seed in the folder, both layouts. A .nk file is read for its name
 * only when names are asked for (one without a name is then left out). */
static int scan_load(const char *dir, bool names, struct scan *s, char **err) {
        memset(s, 0, sizeof(*s));
        int r = seed_files(dir, s, err);
        if (r < 0)
                return r;
        size_t n_files = s->n_files;
        for (size_t i = 0; i < n_files && r == 0; i++) {
                const char *f = s->files[i];
                s->n_files = i; /* scan_add's file index */
                if (!is_batch(f) && !names) {
                        struct rec *e = scan_add(s);
                        memcpy(e->key, f, NKEY_PUBLIC_LEN);
                        continue;
                }
                char *text = NULL;
                size_t tlen = 0;
                if ((r = seed_file_read(dir, f, &text, &tlen, err)) < 0)
                        break;
                char name[ACCOUNT_NAME_MAX + 1];
                if (is_batch(f)) {
                        struct scan_ud ud = { s };
                        r = batch_parse(dir, f, text, tlen, scan_record, &ud, err);
                } else if (file_name(text, name)) {
                        struct rec *e = scan_add(s);
                        memcpy(e->name, name, sizeof(name));
                        memcpy(e->key, f, NKEY_PUBLIC_LEN);
                }
                secret_free(text, tlen);
        }
        s->n_files = n_files;
        if (r < 0)
                scan_free(s);
        return r;
}

struct find_seed {
        const char *key;
        char *seed;
};

static void find_record(void *ud, const char *name, const char *key, const char *seed) {
        (void)name;
        struct find_seed *f = ud;
        if (!f->seed && strcmp(key, f->key) == 0)
                f->seed = xstrdup(seed);
}

/* The seed of key in file (a secret: wipe), or NULL with *problem. */
static int seed_of(const char *dir, const char *file, const char *key, char **seed, const char **problem,
                   char **err) {
        char *text = NULL;
        size_t tlen = 0;
        *seed = NULL;
        int r = seed_file_read(dir, file, &text, &tlen, err);
        if (r < 0)
                return r;
        if (is_batch(file)) {
                struct find_seed f = { .key = key };
                r = batch_parse(dir, file, text, tlen, find_record, &f, err);
                *seed = f.seed;
        } else {
                *seed = secret_find_seed(text);
        }
        if (r == 0 && !*seed)
                *problem = "no seed found";
        secret_free(text, tlen);
        return r;
}

int statedir_load(const char *dir, const char *name_or_key, struct nkey *out, char **err) {
        bool by_key = strlen(name_or_key) == NKEY_PUBLIC_LEN;
        struct scan s;
        int r = scan_load(dir, !by_key, &s, err);
        if (r < 0)
                return r;
        const struct rec *found = NULL;
        r = -ENOENT;
        for (size_t i = 0; i < s.n; i++) {
                const struct rec *e = &s.v[i];
                if (strcmp(by_key ? e->key : e->name, name_or_key) != 0)
                        continue;
                if (found && strcmp(found->key, e->key) != 0) {
                        /* Never pick one of two at random: which one the servers use is for the operator to say. */
                        *err = xasprintf("%s holds seeds of two accounts named %s: %s (%s) and %s (%s); keep the "
                                         "one in use (plan --json shows its key) and move the other away (its .nk "
                                         "file, or its line of a .seeds file)",
                                         dir, name_or_key, found->key, s.files[found->file], e->key,
                                         s.files[e->file]);
                        r = -ENOTUNIQ;
                        break;
                }
                if (!found)
                        found = e;
        }
        if (found && r == -ENOENT) {
                char *seed = NULL;
                const char *problem = NULL;
                r = seed_of(dir, s.files[found->file], found->key, &seed, &problem, err);
                if (r == 0) {
                        if (problem)
                                ; /* no seed there */
                        else if (nkey_from_seed(seed, out, &problem) < 0)
                                ; /* problem says why */
                        else if (out->type != NKEY_ACCOUNT)
                                problem = "not an account seed";
                        else if (strcmp(out->pub, found->key) != 0)
                                problem = "the seed is another account's";
                        if (problem) {
                                *err = xasprintf("%s/%s: not the seed of account %s (%s)", dir,
                                                 s.files[found->file], found->key, problem);
                                nkey_wipe(out);
                                r = -EINVAL;
                        }
                }
                if (seed)
                        secret_free(seed, strlen(seed));
        }
        if (r == -ENOENT)
                *err = xasprintf("account %s was not created by nats-accountd (no seed in %s)", name_or_key, dir);
        scan_free(&s);
        return r;
}

static int cmp_seed(const void *a, const void *b) {
        const struct statedir_seed *x = a, *y = b;
        int c = strcmp(x->name, y->name);
        return c ? c : strcmp(x->key, y->key);
}

int statedir_index_load(const char *dir, struct statedir_index **out, char **err) {
        *out = NULL;
        struct scan s;
        int r = scan_load(dir, true, &s, err);
        if (r == -ENOENT) {
                free(*err);
                *err = NULL;
                *out = xcalloc(1, sizeof(**out));
                return 0;
        }
        if (r < 0)
                return r;
        struct statedir_index *idx = xcalloc(1, sizeof(*idx));
        idx->v = xcalloc(s.n ? s.n : 1, sizeof(*idx->v));
        for (size_t i = 0; i < s.n; i++) {
                memcpy(idx->v[i].name, s.v[i].name, sizeof(idx->v[i].name));
                memcpy(idx->v[i].key, s.v[i].key, sizeof(idx->v[i].key));
        }
        idx->n = s.n;
        scan_free(&s);
        qsort(idx->v, idx->n, sizeof(*idx->v), cmp_seed);
        /* One entry per name; a second key for it makes the name ambiguous
         * (the same key twice, in both layouts, is one account). */
        size_t w = 0;
        for (size_t i = 0; i < idx->n; i++) {
                if (w > 0 && strcmp(idx->v[w - 1].name, idx->v[i].name) == 0) {
                        if (!idx->v[w - 1].other[0] && strcmp(idx->v[w - 1].key, idx->v[i].key) != 0)
                                memcpy(idx->v[w - 1].other, idx->v[i].key, NKEY_PUBLIC_LEN + 1);
                        continue;
                }
                idx->v[w++] = idx->v[i];
        }
        idx->n = w;
        *out = idx;
        return 0;
}

const struct statedir_seed *statedir_index_find(const struct statedir_index *idx, const char *name) {
        if (!idx || !name || !idx->n)
                return NULL;
        struct statedir_seed probe;
        memset(&probe, 0, sizeof(probe));
        snprintf(probe.name, sizeof(probe.name), "%s", name);
        size_t lo = 0, hi = idx->n;
        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                if (strcmp(idx->v[mid].name, name) < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return lo < idx->n && strcmp(idx->v[lo].name, name) == 0 ? &idx->v[lo] : NULL;
}

void statedir_index_free(struct statedir_index *idx) {
        if (!idx)
                return;
        free(idx->v);
        free(idx);
}

#define UNCONFIRMED_FILE "unconfirmed"
#define UNCONFIRMED_MAX 1000000
#define SERVERS_FILE "servers"
#define SERVERS_MAX 4096

/* A file of public keys of one type, one per line: what is not such a key is
 * skipped (both lists only make a pass look closer). */
static int keylist_load(const char *dir, const char *name, enum nkey_type type, size_t max,
                        char (**keys)[NKEY_PUBLIC_LEN + 1], size_t *n, char **err) {
        *keys = NULL;
        *n = 0;
        char *file = path_join(dir, name), *text = NULL;
        size_t len = 0;
        int r = file_read_all(file, max * (NKEY_PUBLIC_LEN + 1), &text, &len);
        if (r == -ENOENT) {
                free(file);
                return 0;
        }
        if (r < 0) {
                *err = xasprintf("cannot read %s: %s", file, file_read_error(r));
                free(file);
                return r;
        }
        size_t cap = 0;
        for (char *line = text, *next; line && *line; line = next) {
                next = strchr(line, '\n');
                if (next)
                        *next++ = 0;
                str_strip(line);
                if (strlen(line) != NKEY_PUBLIC_LEN || nkey_public_type(line) != (int)type)
                        continue;
                if (*n == cap) {
                        cap = cap ? cap * 2 : 16;
                        *keys = xreallocarray(*keys, cap, sizeof(**keys));
                }
                memcpy((*keys)[(*n)++], line, NKEY_PUBLIC_LEN + 1);
        }
        free(text);
        free(file);
        return 0;
}

/* Replaced whole (fsync'ed, renamed); removed when n is 0. */
static int keylist_save(const char *dir, const char *name, const char (*keys)[NKEY_PUBLIC_LEN + 1], size_t n,
                        char **err) {
        char *file = path_join(dir, name);
        int r = 0;
        if (n == 0) {
                if (unlink(file) < 0 && errno != ENOENT)
                        r = -errno;
        } else {
                char *text = xmalloc(n * (NKEY_PUBLIC_LEN + 1) + 1), *p = text;
                for (size_t i = 0; i < n; i++) {
                        memcpy(p, keys[i], NKEY_PUBLIC_LEN);
                        p[NKEY_PUBLIC_LEN] = '\n';
                        p += NKEY_PUBLIC_LEN + 1;
                }
                r = file_write_atomic(file, text, (size_t)(p - text), 0600);
                free(text);
        }
        if (r < 0)
                *err = xasprintf("cannot write %s: %s", file, strerror(-r));
        free(file);
        return r;
}

int statedir_unconfirmed_load(const char *dir, char (**keys)[NKEY_PUBLIC_LEN + 1], size_t *n, char **err) {
        return keylist_load(dir, UNCONFIRMED_FILE, NKEY_ACCOUNT, UNCONFIRMED_MAX, keys, n, err);
}

int statedir_unconfirmed_save(const char *dir, const char (*keys)[NKEY_PUBLIC_LEN + 1], size_t n, char **err) {
        return keylist_save(dir, UNCONFIRMED_FILE, keys, n, err);
}

int statedir_servers_load(const char *dir, char (**ids)[NKEY_PUBLIC_LEN + 1], size_t *n, char **err) {
        return keylist_load(dir, SERVERS_FILE, NKEY_SERVER, SERVERS_MAX, ids, n, err);
}

int statedir_servers_save(const char *dir, const char (*ids)[NKEY_PUBLIC_LEN + 1], size_t n, char **err) {
        return keylist_save(dir, SERVERS_FILE, ids, n, err);
}
