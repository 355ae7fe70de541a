/* The accounts file: the desired state, parsed and fully validated. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "diag.h"
#include "names.h"
#include "nkeys.h"

#define ACCOUNTS_FILE_MAX_SIZE (128u * 1024 * 1024)
#define ACCOUNTS_MAX 1000000
#define JS_TIERS 5 /* R1..R5 */

enum js_mode {
        JS_UNMANAGED, /* no `jetstream` key: JetStream left as it is */
        JS_DISABLED,  /* `jetstream: disabled` (or false) */
        JS_ENABLED,   /* `jetstream: enabled`, or a map of limits (non-tiered) */
        JS_TIERED,    /* a map with `tiers:` */
};

/* Every field: -1 = unlimited (also when omitted). */
struct js_limits {
        int64_t max_memory;
        int64_t max_store;
        int64_t max_streams;
        int64_t max_consumers;
        int64_t max_ack_pending;
        int64_t memory_max_stream_bytes;
        int64_t store_max_stream_bytes;
        bool max_bytes_required;
};

/* Field table shared by parser, diff and output: name as in the accounts file. */
enum js_field_kind { JS_FIELD_SIZE, JS_FIELD_COUNT, JS_FIELD_BOOL };
struct js_field {
        const char *name;
        enum js_field_kind kind;
        size_t offset; /* into struct js_limits */
};
extern const struct js_field js_fields[];
extern const size_t js_fields_count;

/* Account limits besides JetStream (`limits:`). -1 = unlimited (also when
 * omitted); 0 is a real limit of zero. nats-server holds connections,
 * subscriptions (per connection), payload and leaf nodes in 32 bits, so those
 * are int32_t here, and so are imports and exports (an account JWT could never
 * list more); max_data is a 64-bit size. */
struct acct_limits {
        int64_t max_data;
        int32_t max_connections;
        int32_t max_subscriptions;
        int32_t max_payload;
        int32_t max_leafnodes;
        int32_t max_imports;
        int32_t max_exports;
};

/* Field table of struct acct_limits, in the order SPEC.md lists them; name as
 * in the accounts file (and, for those config mode has, in the server's own
 * `limits {}` block). */
struct acct_field {
        const char *name;
        enum js_field_kind kind; /* JS_FIELD_SIZE or JS_FIELD_COUNT */
        size_t offset;           /* into struct acct_limits */
        bool wide;               /* int64_t; else int32_t */
        bool operator_only;      /* a claim of account JWTs; config-mode accounts have no such limit */
};
#define ACCT_FIELDS 7
extern const struct acct_field acct_fields[ACCT_FIELDS];
extern const size_t acct_fields_count;

struct account_decl {
        char name[ACCOUNT_NAME_MAX + 1];
        char key[NKEY_PUBLIC_LEN + 1]; /* "" when not pinned */
        enum js_mode js;
        struct js_limits limits;          /* JS_ENABLED */
        struct js_limits tiers[JS_TIERS]; /* JS_TIERED; tiers[0] = R1 */
        bool tier_set[JS_TIERS];
        bool acct_managed;       /* a `limits` key: every field of acct is enforced */
        struct acct_limits acct; /* acct_managed */
        int line, column; /* of the account's name */
};

struct accounts {
        char *file;
        struct account_decl *v; /* sorted by name */
        size_t n;
        struct accounts_source *src; /* accounts_load_update's memory of the text; may be NULL */
};

enum accounts_flavor { ACCOUNTS_OPERATOR, ACCOUNTS_CONFIG };

void js_limits_unlimited(struct js_limits *l);
void acct_limits_unlimited(struct acct_limits *l);
int64_t acct_limits_get(const struct acct_limits *l, const struct acct_field *f);
void acct_limits_set(struct acct_limits *l, const struct acct_field *f, int64_t v);

/* Parse and validate. Every error goes to d with FILE:LINE:COLUMN.
 * 0 with *out set; -EINVAL when the file is not valid (nothing returned);
 * -ENOENT etc. from reading (one diag names the file); -EFBIG too large. */
int accounts_load(const char *path, enum accounts_flavor flavor, struct accounts **out, struct diag_list *d);
int accounts_parse(const char *buf, size_t len, const char *filename, enum accounts_flavor flavor,
                   struct accounts **out, struct diag_list *d);
void accounts_free(struct accounts *a);

/* Which declarations a reload may have changed. */
struct accounts_delta {
        bool partial;    /* false: any may differ; true: exactly changed[0..n) (indexes into the new v) */
        size_t *changed;
        size_t n;
};
/* accounts_load for a file that is read again after each edit (the daemon).
 * When old came from here too and the new text differs from old's only inside
 * whole accounts of a plain block-style file, only those accounts are parsed
 * again (behind the file's header, so lines and columns are the file's) and
 * every other declaration is taken from old: a reload then costs about the
 * size of the edit, not of the file, and *delta lists the declarations that
 * differ from old's. Anything else (an edit of the header, anchors, flow style
 * around the accounts, a duplicate, a parse error) is read as a whole, with
 * the same result and diagnostics as accounts_load (delta->partial false).
 * On success old may have been emptied into *out (its arrays reused): it is
 * still to be freed, and no longer to be read. On failure old is unchanged. */
int accounts_load_update(const char *path, enum accounts_flavor flavor, struct accounts *old,
                         struct accounts **out, struct accounts_delta *delta, struct diag_list *d);
/* The same with the text in memory (copied), as accounts_parse is to accounts_load. */
int accounts_parse_update(const char *buf, size_t len, const char *filename, enum accounts_flavor flavor,
                          struct accounts *old, struct accounts **out, struct accounts_delta *delta,
                          struct diag_list *d);
void accounts_delta_clear(struct accounts_delta *delta);
/* What the daemon keeps between passes: the text and where each account
 * is, not the declarations (560 bytes each). Drops a->v (a->n stays) when a
 * came from accounts_load_update and its file allows a re-read in part;
 * false (a unchanged) otherwise. A shed a is read with accounts_name,
 * accounts_get and accounts_expand only, and is old for the next
 * accounts_load_update as before, which then also gives a shed result when
 * it re-reads in part (delta->changed: indexes in name order). */
bool accounts_shed(struct accounts *a);
bool accounts_is_shed(const struct accounts *a);
/* The i-th name in name order (either form). */
const char *accounts_name(const struct accounts *a, size_t i);
/* The declaration named name, copied (either form; shed: parsed from the
 * kept text). 0, -ENOENT, or -EINVAL if its text no longer parses alone. */
int accounts_get(const struct accounts *a, const char *name, struct account_decl *out);
/* Every declaration of a shed a again, in a new accounts (the kept text
 * parsed as a whole). 0 or negative errno. */
int accounts_expand(const struct accounts *a, struct accounts **out);
/* Binary search by name (NULL in a shed a: see accounts_get). */
const struct account_decl *accounts_find(const struct accounts *a, const char *name);
/* Same declaration (used to find which accounts an edit touched). */
bool account_decl_equal(const struct account_decl *x, const struct account_decl *y);
