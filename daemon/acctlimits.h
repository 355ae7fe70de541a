/* Account limits besides JetStream as account JWT claims hold them, and back;
 * and as the `limits {}` block of a config-mode account. */
#pragma once
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "accounts.h"

/* What an account's claims say of those limits, read the way nats-server does:
 * an absent claim is 0, which for these is a real zero (unlike JetStream's),
 * and a negative value other than -1 allows nothing either (read as 0).
 * value[i] belongs to acct_fields[i]; 64 bits, so that a value nats-server
 * would cut to 32 bits shows as written and never equals a declared one.
 * The rest is what jwt's validation looks at when it decides whether the
 * servers accept a JWT with other limits. */
struct acct_state {
        int64_t value[ACCT_FIELDS];
        uint32_t n_imports, n_exports;
        bool wildcard_exports;  /* an export subject with a wildcard */
        bool wildcards_allowed; /* nats.limits.wildcards */
};

void acct_state_from_claims(const json_t *claims, struct acct_state *out);
/* The state of a JWT nats-accountd creates (jwt_account_claims_new): all unlimited. */
void acct_state_new_account(struct acct_state *out);
/* Set nats.limits' conn, subs, payload, leaf, data, imports and exports from
 * l, -1 written out; every other claim is kept. */
void acct_limits_to_claims(const struct acct_limits *l, json_t *claims);
/* Why the servers would refuse the account's JWT with the limits l (its
 * imports and exports as st counts them), or NULL when they would not.
 * Allocated. */
char *acct_limits_refusal(const struct acct_limits *l, const struct acct_state *st);

/* Config mode: the account's `limits { ... }` block for its fragment, exact
 * integers (-1 unlimited), only the fields config mode has; allocated. */
char *acct_limits_config_block(const struct acct_limits *l);
