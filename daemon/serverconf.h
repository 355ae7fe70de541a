/* What config mode needs to know from nats-server's own config files: which
 * accounts they define, what each account's block includes, the server's
 * name and pid file. Read with nats-server's syntax (maps, arrays, quoted and
 * bare strings, comments, `include` relative to the including file), values
 * are not interpreted. nats-server itself remains the judge of the file: a
 * part this reader cannot follow makes the answer "unknown", never an error
 * for an account. */
#pragma once
#include <stdbool.h>
#include <stddef.h>

#define SERVERCONF_MAX_BYTES (16u * 1024 * 1024) /* all files of one server together */
#define SERVERCONF_MAX_FILES 256
#define SERVERCONF_MAX_INCLUDE_DEPTH 10
#define SERVERCONF_MAX_NESTING 64

enum serverconf_entry_kind { SERVERCONF_KEY, SERVERCONF_INCLUDE };

/* One entry of an account's block, in the order nats-server reads them (the
 * entries of an included file where its include stands). */
struct serverconf_entry {
        enum serverconf_entry_kind kind;
        char *text;       /* the key as written, or the include's path resolved and cleaned */
        const char *file; /* one of serverconf.files */
        int line;
};

struct serverconf_account {
        char *name;
        const char *file; /* where its key is, one of serverconf.files */
        int line;
        bool opaque; /* its value is not a block (e.g. a $variable): what it holds is unknown */
        struct serverconf_entry *v;
        size_t n;
};

struct serverconf {
        char *path;
        char *server_name; /* NULL when the file does not set one */
        char *pid_file;    /* as written (nats-server resolves it from its working folder); NULL when not set */
        bool has_accounts;    /* an accounts block was found */
        bool accounts_opaque; /* accounts is set to something else (a $variable): its accounts are unknown */
        struct serverconf_account *accounts; /* sorted by name */
        size_t n_accounts;
        char **files; /* every file read: the config, then its includes */
        size_t n_files;
        /* Why reading stopped early ("FILE:LINE: ..."), else NULL. What was read
         * before stays, but a missing account or include may be past that point. */
        char *error;
};

/* Read path and what it includes. Includes of files in fragments_dir
 * (canonical, see serverconf_canonical) are recorded, not read: those are
 * ours, and may not exist yet. 0 with *out (out->error may be set); a
 * negative errno when path itself cannot be read (*err says why). */
int serverconf_load(const char *path, const char *fragments_dir, struct serverconf **out, char **err);
/* The same for a text in memory; includes are recorded but not followed. */
struct serverconf *serverconf_parse(const char *text, size_t len, const char *path);
void serverconf_free(struct serverconf *c);
const struct serverconf_account *serverconf_find(const struct serverconf *c, const char *name);

/* The path as it can be compared: the real path of its folder (symbolic
 * links resolved) and its name, or its cleaned absolute form where the
 * folder does not exist. */
char *serverconf_canonical(const char *path);

enum include_state {
        INCLUDE_OK,         /* the block includes the fragment, nothing after it sets jetstream */
        INCLUDE_MISSING,    /* the block does not include it */
        INCLUDE_OVERRIDDEN, /* a `jetstream` after the include wins over the fragment */
        INCLUDE_NO_ACCOUNT, /* the file defines no such account */
        INCLUDE_UNKNOWN,    /* the file could not be read far enough to tell */
};

struct include_check {
        enum include_state state;
        const char *file; /* the block's file (OK, MISSING), the overriding key's (OVERRIDDEN) */
        int line;
        /* OK: a `jetstream` before the include, which the fragment overrides (0 = none). */
        const char *shadowed_file;
        int shadowed_line;
        /* MISSING, NO_ACCOUNT: the line to write in the block: include "accounts.d/APP.conf" */
        char *line_to_add;
};

/* How the block of account in c stands with the fragment (its canonical path). */
void serverconf_check_include(const struct serverconf *c, const char *account, const char *fragment,
                              struct include_check *out);
void include_check_clear(struct include_check *ic);
