#include "statedir.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

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

static int save(const char *dir, const char *name, const struct nkey *k, bool durable, char **err) {
        char seed[NKEY_SEED_LEN + 1];
        nkey_seed_encode(k, seed);
        char *text = xasprintf("# nats-accountd: seed of account %s\n%s\n", name, seed);
        sodium_memzero(seed, sizeof(seed));
        char *file = xasprintf("%s/%s.nk", dir, k->pub);
        int r = durable ? file_write_atomic(file, text, strlen(text), 0600)
                        : file_write_atomic_nosync(file, text, strlen(text), 0600);
        if (r < 0)
                *err = xasprintf("cannot write %s: %s", file, strerror(-r));
        secret_free(text, strlen(text));
        free(file);
        return r;
}

int statedir_save(const char *dir, const char *name, const struct nkey *k, char **err) {
        int r = statedir_ensure(dir, err);
        return r < 0 ? r : save(dir, name, k, true, err);
}

int statedir_write(const char *dir, const char *name, const struct nkey *k, char **err) {
        return save(dir, name, k, false, err);
}

int statedir_sync(const char *dir, char **err) {
        int r = dir_sync(dir);
        if (r < 0)
                *err = xasprintf("cannot sync state folder %s to disk: %s", dir, strerror(-r));
        return r;
}

void seed_batches_before_push(struct seed_batches *b, size_t c) {
        if (c < b->synced || c >= b->n)
                return;
        size_t end = c + b->batch < b->n ? c + b->batch : b->n;
        while (b->written < end)
                b->write(b->userdata, b->written++);
        char *err = NULL;
        if (statedir_sync(b->dir, &err) < 0)
                b->failed(b->userdata, b->synced, end, err);
        free(err);
        b->synced = end;
}

void seed_batches_ahead(struct seed_batches *b) {
        if (b->written < b->n && b->written < b->synced + b->batch)
                b->write(b->userdata, b->written++);
}

/* The name recorded in the file's first line, into name (ACCOUNT_NAME_MAX + 1);
 * false when there is none. */
static bool file_name(const char *text, char *name) {
        static const char prefix[] = "# nats-accountd: seed of account ";
        if (strncmp(text, prefix, sizeof(prefix) - 1) != 0)
                return false;
        const char *n = text + sizeof(prefix) - 1;
        size_t len = strcspn(n, "\r\n");
        if (len == 0 || len > ACCOUNT_NAME_MAX)
                return false;
        memcpy(name, n, len);
        name[len] = 0;
        return true;
}

static int cmp_str(const void *a, const void *b) {
        return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The seed files' names ("<KEY>.nk"), sorted: what the folder holds, in an
 * order that does not depend on the file system. */
static int seed_files(const char *dir, char ***out, size_t *n, char **err) {
        *out = NULL;
        *n = 0;
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
                if (len != NKEY_PUBLIC_LEN + 3 || strcmp(de->d_name + NKEY_PUBLIC_LEN, ".nk") != 0)
                        continue;
                if (*n == cap) {
                        cap = cap ? cap * 2 : 64;
                        *out = xreallocarray(*out, cap, sizeof(**out));
                }
                (*out)[(*n)++] = xstrndup(de->d_name, NKEY_PUBLIC_LEN);
        }
        closedir(d);
        if (*n)
                qsort(*out, *n, sizeof(**out), cmp_str);
        return 0;
}

static void files_free(char **v, size_t n) {
        for (size_t i = 0; i < n; i++)
                free(v[i]);
        free(v);
}

/* The text of <dir>/<key>.nk (a secret: wipe with secret_free). */
static int seed_file_read(const char *dir, const char *key, char **text, size_t *len, char **err) {
        char *file = xasprintf("%s/%s.nk", dir, key);
        char *why = NULL;
        int r = secret_read(file, text, len, &why);
        if (r < 0)
                *err = why ? why : xasprintf("cannot read %s: %s", file, strerror(-r));
        else
                free(why);
        free(file);
        return r;
}

int statedir_load(const char *dir, const char *name_or_key, struct nkey *out, char **err) {
        char **keys = NULL;
        size_t n = 0;
        int r = seed_files(dir, &keys, &n, err);
        if (r < 0)
                return r;
        bool by_key = strlen(name_or_key) == NKEY_PUBLIC_LEN;
        char *found = NULL; /* the key whose file matched */
        r = -ENOENT;
        for (size_t i = 0; i < n; i++) {
                char *text = NULL;
                size_t tlen = 0;
                char name[ACCOUNT_NAME_MAX + 1];
                bool match = by_key && strcmp(keys[i], name_or_key) == 0;
                if (!match && !by_key) {
                        int k = seed_file_read(dir, keys[i], &text, &tlen, err);
                        if (k < 0) {
                                r = k;
                                break;
                        }
                        match = file_name(text, name) && strcmp(name, name_or_key) == 0;
                        secret_free(text, tlen);
                }
                if (!match)
                        continue;
                if (found) {
                        /* Never pick one of two at random: which one the servers use is for the operator to say. */
                        *err = xasprintf("%s holds seeds of two accounts named %s, %s.nk and %s.nk; keep the one in "
                                         "use (plan --json shows its key) and move the other away",
                                         dir, name_or_key, found, keys[i]);
                        r = -ENOTUNIQ;
                        break;
                }
                found = keys[i];
        }
        if (found && r == -ENOENT) {
                char *text = NULL, *seed = NULL;
                size_t tlen = 0;
                r = seed_file_read(dir, found, &text, &tlen, err);
                if (r == 0) {
                        seed = secret_find_seed(text);
                        const char *problem = NULL;
                        if (!seed)
                                problem = "no seed found";
                        else if (nkey_from_seed(seed, out, &problem) < 0)
                                ; /* problem says why */
                        else if (out->type != NKEY_ACCOUNT)
                                problem = "not an account seed";
                        else if (strcmp(out->pub, found) != 0)
                                problem = "the seed is another account's";
                        if (problem) {
                                *err = xasprintf("%s/%s.nk: not the account's seed file (%s)", dir, found, problem);
                                nkey_wipe(out);
                                r = -EINVAL;
                        }
                }
                if (seed)
                        secret_free(seed, strlen(seed));
                secret_free(text, tlen);
        }
        if (r == -ENOENT)
                *err = xasprintf("account %s was not created by nats-accountd (no seed in %s)", name_or_key, dir);
        files_free(keys, n);
        return r;
}

static int cmp_seed(const void *a, const void *b) {
        const struct statedir_seed *x = a, *y = b;
        int c = strcmp(x->name, y->name);
        return c ? c : strcmp(x->key, y->key);
}

int statedir_index_load(const char *dir, struct statedir_index **out, char **err) {
        struct statedir_index *idx = xcalloc(1, sizeof(*idx));
        *out = NULL;
        char **keys = NULL;
        size_t n = 0;
        int r = seed_files(dir, &keys, &n, err);
        if (r == -ENOENT) {
                free(*err);
                *err = NULL;
                *out = idx;
                return 0;
        }
        if (r < 0) {
                free(idx);
                return r;
        }
        idx->v = xcalloc(n ? n : 1, sizeof(*idx->v));
        for (size_t i = 0; i < n && r == 0; i++) {
                char *text = NULL;
                size_t tlen = 0;
                if ((r = seed_file_read(dir, keys[i], &text, &tlen, err)) < 0)
                        break;
                struct statedir_seed *e = &idx->v[idx->n];
                if (file_name(text, e->name)) {
                        memcpy(e->key, keys[i], NKEY_PUBLIC_LEN + 1);
                        idx->n++;
                }
                secret_free(text, tlen);
        }
        files_free(keys, n);
        if (r < 0) {
                statedir_index_free(idx);
                return r;
        }
        qsort(idx->v, idx->n, sizeof(*idx->v), cmp_seed);
        /* One entry per name; a second key for it makes the name ambiguous. */
        size_t w = 0;
        for (size_t i = 0; i < idx->n; i++) {
                if (w > 0 && strcmp(idx->v[w - 1].name, idx->v[i].name) == 0) {
                        if (!idx->v[w - 1].other[0])
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

int statedir_unconfirmed_load(const char *dir, char (**keys)[NKEY_PUBLIC_LEN + 1], size_t *n, char **err) {
        *keys = NULL;
        *n = 0;
        char *file = path_join(dir, UNCONFIRMED_FILE), *text = NULL;
        size_t len = 0;
        int r = file_read_all(file, (size_t)UNCONFIRMED_MAX * (NKEY_PUBLIC_LEN + 1), &text, &len);
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
                /* Anything else than a key is skipped: the list only makes a pass look closer. */
                if (strlen(line) != NKEY_PUBLIC_LEN || nkey_public_type(line) != NKEY_ACCOUNT)
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

int statedir_unconfirmed_save(const char *dir, const char (*keys)[NKEY_PUBLIC_LEN + 1], size_t n, char **err) {
        char *file = path_join(dir, UNCONFIRMED_FILE);
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
