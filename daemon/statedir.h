/* state_dir: the seeds of accounts this daemon created, one file each. */
#pragma once
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
/* Find a created account by name or public key; -ENOENT when this daemon did not create it. */
int statedir_load(const char *dir, const char *name_or_key, struct nkey *out, char **err);
