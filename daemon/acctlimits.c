#include "acctlimits.h"

#include <string.h>

#include "jslimits.h"
#include "units.h"
#include "util.h"

/* JWT claim names (nats.limits.*), index-aligned with acct_fields[]. */
static const char *const claim_names[ACCT_FIELDS] = { "conn", "subs", "payload", "leaf", "data", "imports", "exports" };

/* jwt's Subject.HasWildCards. */
static bool has_wildcard(const char *s) {
        size_t n = strlen(s);
        return strcmp(s, "*") == 0 || strcmp(s, ">") == 0 || strncmp(s, "*.", 2) == 0 || strstr(s, ".*.") ||
               (n >= 2 && (strcmp(s + n - 2, ".*") == 0 || strcmp(s + n - 2, ".>") == 0));
}

void acct_state_from_claims(const json_t *claims, struct acct_state *out) {
        memset(out, 0, sizeof(*out));
        const json_t *nats = json_object_get(claims, "nats");
        const json_t *lim = json_object_get(nats, "limits");
        for (size_t i = 0; i < ACCT_FIELDS; i++) {
                const json_t *v = json_object_get(lim, claim_names[i]);
                int64_t x = json_is_integer(v) ? json_integer_value(v) : 0;
                out->value[i] = x < -1 ? 0 : x;
        }
        out->wildcards_allowed = json_is_true(json_object_get(lim, "wildcards"));
        const json_t *imports = json_object_get(nats, "imports"), *exports = json_object_get(nats, "exports");
        out->n_imports = json_is_array(imports) ? (uint32_t)json_array_size(imports) : 0;
        out->n_exports = json_is_array(exports) ? (uint32_t)json_array_size(exports) : 0;
        for (size_t i = 0; i < out->n_exports && !out->wildcard_exports; i++) {
                const char *subject = json_string_value(json_object_get(json_array_get(exports, i), "subject"));
                out->wildcard_exports = subject && has_wildcard(subject);
        }
}

void acct_state_new_account(struct acct_state *out) {
        memset(out, 0, sizeof(*out));
        for (size_t i = 0; i < ACCT_FIELDS; i++)
                out->value[i] = LIMIT_UNLIMITED;
        out->wildcards_allowed = true;
}

void acct_limits_to_claims(const struct acct_limits *l, json_t *claims) {
        json_t *lim = claims_limits_object(claims);
        for (size_t i = 0; i < ACCT_FIELDS; i++)
                json_object_set_new(lim, claim_names[i], json_integer(acct_limits_get(l, &acct_fields[i])));
}

char *acct_limits_refusal(const struct acct_limits *l, const struct acct_state *st) {
        /* The texts in quotes are jwt's own (AccountClaims.Validate). */
        if (l->max_imports >= 0 && st->n_imports > (uint32_t)l->max_imports)
                return xasprintf("max_imports %d is below the %u imports the account's JWT holds; the servers would "
                                 "refuse it (\"the account contains more imports than allowed by the operator\")",
                                 l->max_imports, st->n_imports);
        if (l->max_exports >= 0 && st->n_exports > (uint32_t)l->max_exports)
                return xasprintf("max_exports %d is below the %u exports the account's JWT holds; the servers would "
                                 "refuse it (\"the account contains more exports than allowed by the operator\")",
                                 l->max_exports, st->n_exports);
        if (l->max_exports >= 0 && st->wildcard_exports && !st->wildcards_allowed)
                return xasprintf("max_exports %d with wildcard exports needs the account's JWT to allow them "
                                 "(limits.wildcards, e.g. nsc edit account --wildcard-exports); the servers would "
                                 "refuse it (\"the account contains wildcard exports that are not allowed by the "
                                 "operator\")",
                                 l->max_exports);
        return NULL;
}

char *acct_limits_config_block(const struct acct_limits *l) {
        char *s = xstrdup("limits {\n");
        for (size_t i = 0; i < ACCT_FIELDS; i++) {
                if (acct_fields[i].operator_only)
                        continue;
                char *t = xasprintf("%s  %s: %lld\n", s, acct_fields[i].name,
                                    (long long)acct_limits_get(l, &acct_fields[i]));
                free(s);
                s = t;
        }
        char *t = xasprintf("%s}\n", s);
        free(s);
        return t;
}
