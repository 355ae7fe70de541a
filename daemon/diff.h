/* Diff: (desired, observed) -> plan. Pure: no I/O, no clock. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "accounts.h"
#include "acctlimits.h"
#include "jslimits.h"
#include "observe.h"
#include "statedir.h"

enum plan_action { PLAN_CREATE, PLAN_ENABLE, PLAN_UPDATE, PLAN_DISABLE, PLAN_UNCHANGED, PLAN_ERROR };

struct plan_change {
        char field[32]; /* as in the accounts file; tiered as "R3.max_store" */
        enum js_field_kind kind;
        int64_t old_value, new_value; /* -1 unlimited; bools 0/1 */
};

struct plan_entry {
        const struct account_decl *decl;
        struct observed_account *obs; /* NULL when the account is to be created */
        char key[NKEY_PUBLIC_LEN + 1]; /* "" until created, unless a seed made before is reused */
        bool seed_reused;              /* a create with the key of a seed already in state_dir */
        enum plan_action action;
        struct js_state want; /* what the JWT must say (valid unless unmanaged) */
        struct plan_change *changes;
        size_t n_changes;
        char **warnings;
        size_t n_warnings;
        char *error;
        bool sent; /* its push went out (set by apply): unconfirmed, the servers may apply it all the same */
};

struct plan {
        struct plan_entry *v;
        size_t n;
        /* Accounts pushed before without every server confirming it (state_dir,
         * statedir_unconfirmed_load): apply keeps the list up to date. */
        char (*unconfirmed)[NKEY_PUBLIC_LEN + 1];
        size_t n_unconfirmed;
};

struct plan_options {
        bool create_missing;
        /* The keys accounts were created as before (state_dir): an account of
         * that name is recognised by its key, and a create reuses it. NULL:
         * none. plan_with_state reads them from state_dir when a create is due. */
        const struct statedir_index *seeds;
        const char *state_dir;
};

/* One entry per declared account, in the file's (name) order. */
struct plan *plan_compute(const struct accounts *desired, const struct observed *obs, const struct plan_options *opt);
void plan_free(struct plan *p);

const char *plan_action_name(enum plan_action a);   /* create|enable|update|disable|unchanged|error */
char plan_action_symbol(enum plan_action a);        /* + ^ ~ - = ! */
bool plan_action_changes(enum plan_action a);       /* create/enable/update/disable */
void plan_entry_set_error(struct plan_entry *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void plan_entry_add_warning(struct plan_entry *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* oa's claims already say what d asks for (the parts d manages). */
bool plan_decl_in_force(const struct account_decl *d, const struct observed_account *oa);
/* The entry changes field to a limit tighter than before (an unlimited one, or a lower one). */
bool plan_entry_lowers(const struct plan_entry *e, const char *field);
/* A lower max_subscriptions closes every connection that has that many
 * subscriptions: the accounts of p where it is lowered and that have
 * connections, for CONNZ to say whether any has, before the plan is shown.
 * out has room for p->n; returns how many. */
size_t plan_subs_lowered(const struct plan *p, struct observed_account **out);
