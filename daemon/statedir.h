/* state_dir: the seeds of accounts this daemon created, one file each. */
#pragma once
#include <stdbool.h>
#include <stddef.h>

#include "names.h"
#include "nkeys.h"

/* Create the folder (and parents) 0700 when missing; refuse one that group or
 * others can enter (-EACCES, *err names the fix). */
int statedir_ensure(const char *dir, char **err);
/* Write <dir>/<PUBLIC KEY>.nk (0600, atomically) holding the account's name and
 * seed, and wait until it is on disk. */
int statedir_save(const char *dir, const char *name, const struct nkey *k, char **err);
/* The same for many accounts at once: statedir_ensure once, statedir_write
 * each (not yet durable), then one statedir_sync before any of them is pushed. */
int statedir_write(const char *dir, const char *name, const struct nkey *k, char **err);
int statedir_sync(const char *dir, char **err);
/* The seeds of the accounts one pass creates, written ahead of their pushes
 * and made durable a batch at a time: one statedir_sync (syncfs of state_dir's
 * file system, then the folder's fsync) covers a whole batch, and comes before
 * the first push of that batch, so that no account exists anywhere without its
 * seed on disk. Creates are numbered 0..n-1 in push order. */
struct seed_batches {
        const char *dir;
        size_t n, batch;        /* creates; seeds per sync */
        size_t written, synced; /* seeds written; of those, on disk (0..synced-1) */
        /* Write seed i with statedir_write (not yet durable); a failure is
         * the callback's to note (that account is then not pushed). */
        void (*write)(void *userdata, size_t i);
        /* Seeds from..to-1 could not be made durable (err): none of them may be pushed. */
        void (*failed)(void *userdata, size_t from, size_t to, const char *err);
        void *userdata;
};
/* Create c is about to be pushed: what is missing of its batch is written,
 * then the batch is synced (once). */
void seed_batches_before_push(struct seed_batches *b, size_t c);
/* One seed of the next batch written ahead, while the pushes before it are
 * in flight (nothing when the next batch is written already). */
void seed_batches_ahead(struct seed_batches *b);

/* Find a created account by name or public key; -ENOENT when this daemon did
 * not create it, -ENOTUNIQ when seeds of two accounts carry that name (*err
 * names both files). */
int statedir_load(const char *dir, const char *name_or_key, struct nkey *out, char **err);

/* Which account (public key) each name was created as, from every seed file's
 * first line: before a create, the key made for that name before is reused,
 * so that a create retried after a partial failure never makes a second
 * account of the same name. Sorted by name; the same however the folder lists
 * its files. */
struct statedir_seed {
        char name[ACCOUNT_NAME_MAX + 1];
        char key[NKEY_PUBLIC_LEN + 1];
        char other[NKEY_PUBLIC_LEN + 1]; /* a second key for the name: ambiguous ("" when not) */
};
struct statedir_index {
        struct statedir_seed *v;
        size_t n;
};
/* 0 (a folder that does not exist yet is an empty index), or negative errno
 * with *err. */
int statedir_index_load(const char *dir, struct statedir_index **out, char **err);
const struct statedir_seed *statedir_index_find(const struct statedir_index *idx, const char *name);
void statedir_index_free(struct statedir_index *idx);

/* The accounts (public keys) pushed without every server confirming it, kept
 * in <dir>/unconfirmed: CLAIMS.PACK comes from one server, which may hold the
 * JWT while another does not, so the next pass looks each of them up on every
 * server. load: 0 (none when the file does not exist) or negative errno with
 * *err; save: replaces the file (removes it when n is 0). */
int statedir_unconfirmed_load(const char *dir, char (**keys)[NKEY_PUBLIC_LEN + 1], size_t *n, char **err);
int statedir_unconfirmed_save(const char *dir, const char (*keys)[NKEY_PUBLIC_LEN + 1], size_t n, char **err);
