#include "statedir.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>
#include <sys/stat.h>

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

/* The name recorded in the file's first line. */
static bool file_names(const char *text, const char *name) {
        static const char prefix[] = "# nats-accountd: seed of account ";
        if (strncmp(text, prefix, sizeof(prefix) - 1) != 0)
                return false;
        const char *n = text + sizeof(prefix) - 1;
        size_t len = strcspn(n, "\r\n");
        return strlen(name) == len && strncmp(n, name, len) == 0;
}

int statedir_load(const char *dir, const char *name_or_key, struct nkey *out, char **err) {
        DIR *d = opendir(dir);
        if (!d) {
                int r = -errno;
                *err = xasprintf("cannot read state folder %s: %s", dir, strerror(-r));
                return r;
        }
        int r = -ENOENT;
        struct dirent *de;
        while (r == -ENOENT && (de = readdir(d))) {
                size_t len = strlen(de->d_name);
                if (len != NKEY_PUBLIC_LEN + 3 || strcmp(de->d_name + NKEY_PUBLIC_LEN, ".nk") != 0)
                        continue;
                bool by_key = strncmp(de->d_name, name_or_key, NKEY_PUBLIC_LEN) == 0 &&
                              strlen(name_or_key) == NKEY_PUBLIC_LEN;
                char *file = xasprintf("%s/%s", dir, de->d_name);
                char *text = NULL, *why = NULL;
                size_t tlen = 0;
                int k = secret_read(file, &text, &tlen, &why);
                if (k < 0) {
                        *err = why ? why : xasprintf("cannot read %s: %s", file, strerror(-k));
                        free(file);
                        r = k;
                        break;
                }
                if (by_key || file_names(text, name_or_key)) {
                        char *seed = secret_find_seed(text);
                        const char *problem = "no seed found";
                        if (seed && nkey_from_seed(seed, out, &problem) == 0 && out->type == NKEY_ACCOUNT)
                                r = 0;
                        else {
                                *err = xasprintf("%s: not an account seed file (%s)", file, seed ? problem : "no seed found");
                                r = -EINVAL;
                        }
                        if (seed)
                                secret_free(seed, strlen(seed));
                }
                secret_free(text, tlen);
                free(file);
        }
        closedir(d);
        if (r == -ENOENT)
                *err = xasprintf("account %s was not created by nats-accountd (no seed in %s)", name_or_key, dir);
        return r;
}
