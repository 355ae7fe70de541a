/* state_dir: the seeds of accounts this daemon created. */
#pragma once
#include <stdbool.h>
#include <stddef.h>

#include "names.h"
#include "nkeys.h"

/* Create the folder (and parents) 0700 when missing; refuse one that group or
 * others can enter (-EACCES, *err names the fix). */
int statedir_ensure(const char *dir, char **err);

/* Removes the temporary files (<file>.tmp.<pid>) that a process which has
 * ended left in dir while it wrote a file: a .seeds one holds the seeds of
 * accounts never pushed (a batch is renamed into place before its first
 * push). One of a process still running, or of unknown state, stays. */
void statedir_remove_stale(const char *dir);
/* Two layouts, both read, so that a folder written by an older version
 * keeps working as it is:
 *  - <dir>/<KEY>.seeds (written now): the seeds of one batch of creates, one
 *    account a line, "<NAME> <PUBLIC KEY> <SEED> <CHECK>", CHECK the first 16
 *    bytes of the BLAKE2b hash of "<NAME> <PUBLIC KEY> <SEED>" in hexadecimal;
 *    lines starting with '#' are comments. KEY is the first account's. The
 *    file is written whole, synced and renamed into place; a line that is not
 *    such a record (cut short, changed) makes the whole file refused.
 *  - <dir>/<KEY>.nk (before): one account's seed, its first line
 *    "# nats-accountd: seed of account <NAME>".
 * One file for many accounts: on ext4, allocating an inode for each created
 * account's seed was most of what `apply` spent on a create. */
#define STATEDIR_BATCH_MAX 4096 /* records in one .seeds file */

/* Seeds waiting to be written as one .seeds file: records are kept in one
 * buffer allocated once (never moved, wiped when emptied). */
struct statedir_batch {
        char *text;
        size_t len, cap, n, max;
        char first[NKEY_PUBLIC_LEN + 1];
};
/* Room for max records (1 to STATEDIR_BATCH_MAX). */
void statedir_batch_init(struct statedir_batch *b, size_t max);
/* Add a record: -EINVAL when the name is not an account name, -ENOSPC when
 * the batch is full (*err says which). */
int statedir_batch_add(struct statedir_batch *b, const char *name, const struct nkey *k, char **err);
/* Write the records as <dir>/<first KEY>.seeds (0600), durable when this
 * returns 0: the file synced, renamed into place, the folder synced. The
 * batch is emptied (wiped) either way. Nothing to write is 0. */
int statedir_batch_commit(const char *dir, struct statedir_batch *b, char **err);
void statedir_batch_free(struct statedir_batch *b);

/* The seeds of the accounts one pass creates, made ahead of their pushes and
 * made durable a batch at a time: one .seeds file per batch, written, synced
 * and renamed into place before the first push of that batch, so that no
 * account exists anywhere without its seed on disk. Creates are numbered
 * 0..n-1 in push order. */
struct seed_batches {
        const char *dir;
        size_t n, batch;        /* creates; seeds per file (<= STATEDIR_BATCH_MAX) */
        size_t written, synced; /* seeds made; of those, on disk (0..synced-1) */
        /* Make seed i and add it to into (statedir_batch_add); a failure is
         * the callback's to note (that account is then not pushed). */
        void (*write)(void *userdata, size_t i, struct statedir_batch *into);
        /* Seeds from..to-1 could not be made durable (err): none of them may be pushed. */
        void (*failed)(void *userdata, size_t from, size_t to, const char *err);
        void *userdata;
        struct statedir_batch pending; /* seeds made, not yet written */
};
/* Create c is about to be pushed: what is missing of its batch is made, then
 * the batch is written and synced (once). */
void seed_batches_before_push(struct seed_batches *b, size_t c);
/* One seed of the next batch made ahead, while the pushes before it are in
 * flight (nothing when the next batch is made already). */
void seed_batches_ahead(struct seed_batches *b);
/* Wipe the seeds made ahead and never written (their accounts were not pushed). */
void seed_batches_free(struct seed_batches *b);

/* Find a created account by name or public key, in both layouts; -ENOENT
 * when this daemon did not create it, -ENOTUNIQ when seeds of two accounts
 * carry that name (*err names both keys and their files), -EBADMSG when a
 * .seeds file is damaged (*err names it and the line; never its content). */
int statedir_load(const char *dir, const char *name_or_key, struct nkey *out, char **err);

/* Which account (public key) each name was created as, from every record of
 * both layouts: before a create, the key made for that name before is reused,
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
 * with *err (-EBADMSG: a damaged .seeds file, named). */
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

/* The servers (their IDs, new at each start of a server) the last whole pass
 * of run or apply saw, kept in <dir>/servers. A server not among them may
 * have missed pushes while it was down or not yet started, so the first
 * sweep of the next process asks every server for the declared accounts;
 * with no list at all, it does so whenever there is more than one server.
 * load: 0 (n is 0 when the file does not exist) or negative errno with *err;
 * save: replaces the file. */
int statedir_servers_load(const char *dir, char (**ids)[NKEY_PUBLIC_LEN + 1], size_t *n, char **err);
int statedir_servers_save(const char *dir, const char (*ids)[NKEY_PUBLIC_LEN + 1], size_t n, char **err);
