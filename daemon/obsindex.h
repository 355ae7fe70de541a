/* What the daemon keeps of a sweep between passes (operator mode): the
 * servers, and every account's key, name and whether its JWT is trusted.
 * About 90 bytes an account, where its decoded claims and the servers' state
 * of it took some 700: with 100,000 accounts, 9 MiB instead of 70.
 *
 * A pass of the few accounts an edit touched takes from it a working
 * observation of just those (observed_index_expand), which CLAIMS.LOOKUP
 * fills in as it always did, and folds what it learnt back in
 * (observed_index_update). */
#pragma once
#include <stdbool.h>
#include <stddef.h>

#include "observe.h"

struct observed_index;

/* The index of a whole observation (o's servers and accounts are copied). */
struct observed_index *observed_index_new(const struct observed *o);
void observed_index_free(struct observed_index *x);
/* Accounts in the index. */
size_t observed_index_count(const struct observed_index *x);
bool observed_index_has_key(const struct observed_index *x, const char *key);
/* The key of the one account named name whose JWT is trusted; NULL when none
 * or several are (as observed_find_trusted_name). */
const char *observed_index_trusted_name(const struct observed_index *x, const char *name);
/* A working observation: x's servers, and each account of x whose key is one
 * of keys or whose name is one of names, with its key, name and trust only
 * (no JWT, claims or servers' state: observe_lookup brings those). By name
 * too, so that the diff sees every account sharing an edited name, as it
 * would in a whole observation. observed_free it. */
struct observed *observed_index_expand(const struct observed_index *x, const char *const *keys, size_t n_keys,
                                       const char *const *names, size_t n_names);
/* Every account of o (a working observation) replaces its entry in x, or
 * joins x: a new name, a new verdict on its JWT, an account created. */
void observed_index_update(struct observed_index *x, const struct observed *o);
/* The name (else the id) of a server of now that x's sweep did not see (one
 * that started or joined since: nats-server takes a new id at each start), or
 * NULL. It points into now. */
const char *observed_index_server_joined(const struct observed_index *x, const struct observed *now);
