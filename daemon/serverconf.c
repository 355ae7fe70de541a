#include "serverconf.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util.h"

enum ctx_kind {
        CTX_TOP,      /* the file's top level (or a file included there) */
        CTX_ACCOUNTS, /* inside `accounts { }` */
        CTX_ACCOUNT,  /* inside one account's block */
        CTX_SKIP,     /* anything else: read over */
};

struct ctx {
        enum ctx_kind kind;
        size_t account; /* CTX_ACCOUNT: index into c->accounts */
};

struct loader {
        struct serverconf *c;
        const char *fragments_dir; /* canonical; NULL: follow no include */
        bool follow;
        size_t bytes;
        int nesting;
        bool failed;
};

/* One file being read. */
struct scan {
        struct loader *ld;
        const char *file; /* one of c->files */
        char *dir;
        const char *p, *end;
        int line;
        int depth; /* of includes */
};

static const char *intern_file(struct serverconf *c, const char *path) {
        c->files = xreallocarray(c->files, c->n_files + 1, sizeof(*c->files));
        c->files[c->n_files] = xstrdup(path);
        return c->files[c->n_files++];
}

__attribute__((format(printf, 2, 3))) static int fail(struct scan *sc, const char *fmt, ...) {
        struct loader *ld = sc->ld;
        if (!ld->failed) {
                va_list ap;
                va_start(ap, fmt);
                char *msg = xvasprintf(fmt, ap);
                va_end(ap);
                ld->c->error = xasprintf("%s:%d: %s", sc->file, sc->line, msg);
                free(msg);
                ld->failed = true;
        }
        return -1;
}

static bool at_end(const struct scan *sc) {
        return sc->p >= sc->end;
}

static char peek(const struct scan *sc) {
        return at_end(sc) ? 0 : *sc->p;
}

static char peek2(const struct scan *sc) {
        return sc->p + 1 < sc->end ? sc->p[1] : 0;
}

static void advance(struct scan *sc) {
        if (*sc->p == '\n')
                sc->line++;
        sc->p++;
}

static bool is_blank(char c) {
        return c == ' ' || c == '\t';
}

static bool is_space(char c) {
        return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

static bool at_comment(const struct scan *sc) {
        return peek(sc) == '#' || (peek(sc) == '/' && peek2(sc) == '/');
}

static void skip_comment(struct scan *sc) {
        while (!at_end(sc) && *sc->p != '\n')
                sc->p++;
}

/* Whitespace, comments and, where entries are separated, ',' and ';'. */
static void skip_filler(struct scan *sc, bool separators) {
        while (!at_end(sc)) {
                char ch = *sc->p;
                if (is_space(ch) || (separators && (ch == ',' || ch == ';')))
                        advance(sc);
                else if (at_comment(sc))
                        skip_comment(sc);
                else
                        break;
        }
}

/* A quoted string: the text between the quotes. In a double-quoted value a
 * backslash escapes a character; keys, single quotes and include paths have
 * no escapes. */
static int read_quoted_ex(struct scan *sc, char quote, bool escapes, char **out) {
        int line = sc->line;
        advance(sc);
        const char *start = sc->p;
        while (!at_end(sc) && *sc->p != quote) {
                if (escapes && *sc->p == '\\' && sc->p + 1 < sc->end)
                        advance(sc);
                advance(sc);
        }
        if (at_end(sc)) {
                sc->line = line;
                return fail(sc, "a string opened here is not closed");
        }
        if (out)
                *out = xstrndup(start, (size_t)(sc->p - start));
        advance(sc);
        return 0;
}

static int read_quoted(struct scan *sc, char quote, char **out) {
        return read_quoted_ex(sc, quote, false, out);
}

static bool ends_bare_value(char c) {
        return c == '\n' || c == '\r' || c == ';' || c == ',' || c == ']' || c == '}' || is_blank(c);
}

static void read_bare_value(struct scan *sc, char **out) {
        const char *start = sc->p;
        while (!at_end(sc) && !ends_bare_value(*sc->p)) {
                if (*sc->p == '\\' && sc->p + 1 < sc->end && sc->p[1] != '\n')
                        sc->p++;
                sc->p++;
        }
        if (out)
                *out = xstrndup(start, (size_t)(sc->p - start));
}

/* `( ... )`: a block string ends with a ')' at the start of a line. */
static int read_block_string(struct scan *sc) {
        int line = sc->line;
        advance(sc);
        while (!at_end(sc)) {
                bool line_start = *sc->p == '\n';
                advance(sc);
                if (line_start && peek(sc) == ')') {
                        advance(sc);
                        return 0;
                }
        }
        sc->line = line;
        return fail(sc, "a block string opened here with ( is not closed by a ) at the start of a line");
}

static int parse_entries(struct scan *sc, struct ctx ctx, char close);
static int parse_value(struct scan *sc, struct ctx ctx, char **scalar);

static int parse_array(struct scan *sc) {
        int line = sc->line;
        advance(sc);
        for (;;) {
                skip_filler(sc, true);
                if (at_end(sc)) {
                        sc->line = line;
                        return fail(sc, "an array opened here with [ is not closed");
                }
                if (*sc->p == ']') {
                        advance(sc);
                        return 0;
                }
                if (parse_value(sc, (struct ctx){ CTX_SKIP, 0 }, NULL) < 0)
                        return -1;
        }
}

static int parse_value(struct scan *sc, struct ctx ctx, char **scalar) {
        while (!at_end(sc) && is_blank(*sc->p))
                advance(sc);
        if (at_end(sc) || *sc->p == '\n' || *sc->p == '\r')
                return fail(sc, "expected a value");
        if (++sc->ld->nesting > SERVERCONF_MAX_NESTING)
                return fail(sc, "blocks nested deeper than %d", SERVERCONF_MAX_NESTING);
        int r;
        switch (*sc->p) {
        case '{':
                advance(sc);
                r = parse_entries(sc, ctx, '}');
                break;
        case '[':
                r = parse_array(sc);
                break;
        case '"':
                r = read_quoted_ex(sc, '"', true, scalar);
                break;
        case '\'':
                r = read_quoted(sc, '\'', scalar);
                break;
        case '(':
                r = read_block_string(sc);
                break;
        default:
                /* A value cannot start where one ends (`x: }`, `[ , ]`): every step must consume. */
                if (ends_bare_value(*sc->p)) {
                        r = fail(sc, "expected a value, got '%c'", *sc->p);
                        break;
                }
                read_bare_value(sc, scalar);
                r = 0;
        }
        sc->ld->nesting--;
        return r;
}

/* ---- what the entries mean to us ---- */

static void account_clear(struct serverconf_account *a) {
        free(a->name);
        for (size_t i = 0; i < a->n; i++)
                free(a->v[i].text);
        free(a->v);
        memset(a, 0, sizeof(*a));
}

static void accounts_reset(struct serverconf *c) {
        for (size_t i = 0; i < c->n_accounts; i++)
                account_clear(&c->accounts[i]);
        free(c->accounts);
        c->accounts = NULL;
        c->n_accounts = 0;
}

/* A block defined again replaces the earlier one, as in nats-server. */
static size_t account_begin(struct scan *sc, const char *name) {
        struct serverconf *c = sc->ld->c;
        size_t i = 0;
        while (i < c->n_accounts && strcmp(c->accounts[i].name, name) != 0)
                i++;
        if (i == c->n_accounts) {
                c->accounts = xreallocarray(c->accounts, c->n_accounts + 1, sizeof(*c->accounts));
                memset(&c->accounts[i], 0, sizeof(c->accounts[i]));
                c->n_accounts++;
        } else {
                account_clear(&c->accounts[i]);
        }
        struct serverconf_account *a = &c->accounts[i];
        a->name = xstrdup(name);
        a->file = sc->file;
        a->line = sc->line;
        return i;
}

static void account_add(struct scan *sc, size_t account, enum serverconf_entry_kind kind, char *text, int line) {
        struct serverconf_account *a = &sc->ld->c->accounts[account];
        a->v = xreallocarray(a->v, a->n + 1, sizeof(*a->v));
        a->v[a->n++] = (struct serverconf_entry){ kind, text, sc->file, line };
}

static char *folder_of(const char *path) {
        return path_dirname(path);
}

static int scan_file(struct loader *ld, const char *path, int depth, struct ctx ctx, char **err);

/* nats-server joins an include's path to the including file's folder, even
 * an absolute one ("/x" from /etc reads /etc/x). */
static int on_include(struct scan *sc, struct ctx ctx, const char *written, int line) {
        char *joined = xasprintf("%s/%s", sc->dir, written);
        char *resolved = path_clean(joined);
        free(joined);
        bool ours = false;
        if (sc->ld->fragments_dir) {
                char *canon = serverconf_canonical(resolved);
                char *dir = path_dirname(canon);
                ours = strcmp(dir, sc->ld->fragments_dir) == 0;
                free(dir);
                if (ctx.kind == CTX_ACCOUNT) {
                        free(resolved);
                        resolved = canon;
                } else {
                        free(canon);
                }
        }
        if (ctx.kind == CTX_ACCOUNT)
                account_add(sc, ctx.account, SERVERCONF_INCLUDE, xstrdup(resolved), line);
        int r = 0;
        if (ctx.kind != CTX_SKIP && !ours && sc->ld->follow) {
                if (sc->depth >= SERVERCONF_MAX_INCLUDE_DEPTH) {
                        r = fail(sc, "includes nested deeper than %d", SERVERCONF_MAX_INCLUDE_DEPTH);
                } else {
                        char *err = NULL;
                        int saved = sc->line;
                        if (scan_file(sc->ld, resolved, sc->depth + 1, ctx, &err) < 0) {
                                sc->line = line;
                                if (err)
                                        r = fail(sc, "include \"%s\": %s", written, err);
                                else
                                        r = -1;
                        }
                        sc->line = saved;
                        free(err);
                }
        }
        free(resolved);
        return r;
}

static bool key_is(const char *key, const char *want) {
        return strcasecmp(key, want) == 0;
}

static int on_key(struct scan *sc, struct ctx ctx, char *key, int line) {
        struct serverconf *c = sc->ld->c;
        struct ctx sub = { CTX_SKIP, 0 };
        char **scalar = NULL;
        bool is_map = peek(sc) == '{';
        switch (ctx.kind) {
        case CTX_TOP:
                if (key_is(key, "accounts")) {
                        /* A second accounts block replaces the first. */
                        accounts_reset(c);
                        c->has_accounts = is_map;
                        c->accounts_opaque = !is_map;
                        sub.kind = CTX_ACCOUNTS;
                } else if (key_is(key, "server_name")) {
                        free(c->server_name);
                        c->server_name = NULL;
                        scalar = &c->server_name;
                } else if (key_is(key, "pid_file")) {
                        free(c->pid_file);
                        c->pid_file = NULL;
                        scalar = &c->pid_file;
                }
                break;
        case CTX_ACCOUNTS:
                sub.kind = CTX_ACCOUNT;
                sub.account = account_begin(sc, key);
                c->accounts[sub.account].line = line;
                c->accounts[sub.account].opaque = !is_map;
                break;
        case CTX_ACCOUNT:
                account_add(sc, ctx.account, SERVERCONF_KEY, xstrdup(key), line);
                break;
        case CTX_SKIP:
                break;
        }
        if (!is_map && (sub.kind == CTX_ACCOUNTS || sub.kind == CTX_ACCOUNT))
                sub.kind = CTX_SKIP;
        return parse_value(sc, sub, scalar);
}

static bool is_key_separator(char c) {
        return c == '=' || c == ':';
}

/* Entries up to close ('}'), or to the end of the file (close 0). */
static int parse_entries(struct scan *sc, struct ctx ctx, char close) {
        int open_line = sc->line;
        for (;;) {
                skip_filler(sc, true);
                if (at_end(sc)) {
                        if (!close)
                                return 0;
                        sc->line = open_line;
                        return fail(sc, "a block opened here with { is not closed");
                }
                char ch = *sc->p;
                if (close && ch == close) {
                        advance(sc);
                        return 0;
                }
                if (!close && ch == '{') {
                        /* The whole file may be wrapped in braces. */
                        advance(sc);
                        if (parse_entries(sc, ctx, '}') < 0)
                                return -1;
                        continue;
                }
                if (ch == '}' || ch == ']' || is_key_separator(ch))
                        return fail(sc, "unexpected '%c'", ch);

                int line = sc->line;
                char *key = NULL;
                bool bare = ch != '"' && ch != '\'';
                if (!bare) {
                        if (read_quoted(sc, ch, &key) < 0)
                                return -1;
                } else {
                        const char *start = sc->p;
                        while (!at_end(sc) && !is_space(*sc->p) && !is_key_separator(*sc->p))
                                sc->p++;
                        key = xstrndup(start, (size_t)(sc->p - start));
                }
                if (bare && key_is(key, "include") && !at_end(sc) && is_blank(*sc->p)) {
                        free(key);
                        while (!at_end(sc) && is_blank(*sc->p))
                                sc->p++;
                        char *path = NULL;
                        char q = peek(sc);
                        if (q == '"' || q == '\'') {
                                if (read_quoted(sc, q, &path) < 0)
                                        return -1;
                        } else {
                                const char *start = sc->p;
                                while (!at_end(sc) && !is_space(*sc->p) && *sc->p != ';' && *sc->p != '}' &&
                                       *sc->p != '\'')
                                        sc->p++;
                                path = xstrndup(start, (size_t)(sc->p - start));
                        }
                        int r = *path ? on_include(sc, ctx, path, line) : fail(sc, "include without a path");
                        free(path);
                        if (r < 0)
                                return -1;
                        continue;
                }
                /* Whitespace, new lines included, then an optional = or :. */
                while (!at_end(sc) && is_space(*sc->p))
                        advance(sc);
                if (!at_end(sc) && is_key_separator(*sc->p))
                        advance(sc);
                while (!at_end(sc) && is_blank(*sc->p))
                        advance(sc);
                int r = on_key(sc, ctx, key, line);
                free(key);
                if (r < 0)
                        return -1;
        }
}

static int scan_text(struct loader *ld, const char *text, size_t len, const char *path, int depth, struct ctx ctx) {
        struct scan sc = {
                .ld = ld,
                .file = intern_file(ld->c, path),
                .dir = folder_of(path),
                .p = text,
                .end = text + len,
                .line = 1,
                .depth = depth,
        };
        if (len >= 3 && memcmp(text, "\xef\xbb\xbf", 3) == 0)
                sc.p += 3;
        int r = parse_entries(&sc, ctx, 0);
        free(sc.dir);
        return r;
}

static int scan_file(struct loader *ld, const char *path, int depth, struct ctx ctx, char **err) {
        if (ld->c->n_files >= SERVERCONF_MAX_FILES) {
                *err = xasprintf("more than %d files", SERVERCONF_MAX_FILES);
                return -1;
        }
        char *text = NULL;
        size_t len = 0;
        int r = file_read_all(path, SERVERCONF_MAX_BYTES - ld->bytes, &text, &len);
        if (r < 0) {
                *err = r == -EFBIG ? xasprintf("the files of this server are larger than %u bytes together",
                                               SERVERCONF_MAX_BYTES)
                                   : xstrdup(strerror(-r));
                return -1;
        }
        ld->bytes += len;
        r = scan_text(ld, text, len, path, depth, ctx);
        free(text);
        return r;
}

static int cmp_account(const void *a, const void *b) {
        return strcmp(((const struct serverconf_account *)a)->name, ((const struct serverconf_account *)b)->name);
}

static void finish(struct serverconf *c) {
        if (c->n_accounts)
                qsort(c->accounts, c->n_accounts, sizeof(*c->accounts), cmp_account);
}

int serverconf_load(const char *path, const char *fragments_dir, struct serverconf **out, char **err) {
        char *text = NULL;
        size_t len = 0;
        int r = file_read_all(path, SERVERCONF_MAX_BYTES, &text, &len);
        if (r < 0) {
                *err = r == -EFBIG ? xasprintf("%s: larger than %u bytes", path, SERVERCONF_MAX_BYTES)
                                   : xasprintf("%s: %s", path, strerror(-r));
                return r;
        }
        struct serverconf *c = xcalloc(1, sizeof(*c));
        c->path = xstrdup(path);
        struct loader ld = { .c = c, .fragments_dir = fragments_dir, .follow = true, .bytes = len };
        (void)scan_text(&ld, text, len, path, 0, (struct ctx){ CTX_TOP, 0 });
        free(text);
        finish(c);
        *out = c;
        return 0;
}

struct serverconf *serverconf_parse(const char *text, size_t len, const char *path) {
        struct serverconf *c = xcalloc(1, sizeof(*c));
        c->path = xstrdup(path);
        struct loader ld = { .c = c, .follow = false };
        (void)scan_text(&ld, text, len, path, 0, (struct ctx){ CTX_TOP, 0 });
        finish(c);
        return c;
}

void serverconf_free(struct serverconf *c) {
        if (!c)
                return;
        accounts_reset(c);
        for (size_t i = 0; i < c->n_files; i++)
                free(c->files[i]);
        free(c->files);
        free(c->path);
        free(c->server_name);
        free(c->pid_file);
        free(c->error);
        free(c);
}

const struct serverconf_account *serverconf_find(const struct serverconf *c, const char *name) {
        if (!c || !c->n_accounts)
                return NULL;
        struct serverconf_account probe = { .name = (char *)name };
        return bsearch(&probe, c->accounts, c->n_accounts, sizeof(*c->accounts), cmp_account);
}

char *serverconf_canonical(const char *path) {
        char *clean = path_clean(path);
        char *dir = path_dirname(clean);
        const char *slash = strrchr(clean, '/');
        const char *name = slash ? slash + 1 : clean;
        char *real = realpath(dir, NULL);
        char *out = real ? path_join(real, name) : NULL;
        if (out && strcmp(real, "/") == 0) {
                free(out);
                out = xasprintf("/%s", name);
        }
        free(real);
        free(dir);
        if (!out)
                return clean;
        free(clean);
        return out;
}

void serverconf_check_include(const struct serverconf *c, const char *account, const char *fragment,
                              struct include_check *out) {
        memset(out, 0, sizeof(*out));
        const struct serverconf_account *a = serverconf_find(c, account);
        if (!a) {
                /* Not found, but maybe only past the point where reading stopped. */
                out->state = c->error || c->accounts_opaque ? INCLUDE_UNKNOWN : INCLUDE_NO_ACCOUNT;
                char *dir = path_dirname(c->path), *canon_dir = serverconf_canonical(dir);
                char *rel = path_relative(canon_dir, fragment);
                out->line_to_add = xasprintf("include \"%s\"", rel);
                out->file = c->path;
                free(rel);
                free(canon_dir);
                free(dir);
                return;
        }
        if (a->opaque) {
                out->state = INCLUDE_UNKNOWN;
                return;
        }
        ptrdiff_t at = -1;
        for (size_t i = 0; i < a->n && at < 0; i++)
                if (a->v[i].kind == SERVERCONF_INCLUDE && strcmp(a->v[i].text, fragment) == 0)
                        at = (ptrdiff_t)i;
        if (at < 0) {
                out->state = INCLUDE_MISSING;
                out->file = a->file;
                out->line = a->line;
                char *dir = path_dirname(a->file), *canon_dir = serverconf_canonical(dir);
                char *rel = path_relative(canon_dir, fragment);
                out->line_to_add = xasprintf("include \"%s\"", rel);
                free(rel);
                free(canon_dir);
                free(dir);
                return;
        }
        /* Of two jetstream keys in one block the later wins: one after the
         * include beats the fragment, one before it is beaten. */
        out->state = INCLUDE_OK;
        out->file = a->file;
        out->line = a->line;
        for (size_t i = 0; i < a->n; i++) {
                const struct serverconf_entry *e = &a->v[i];
                if (e->kind != SERVERCONF_KEY || !key_is(e->text, "jetstream"))
                        continue;
                if ((ptrdiff_t)i > at) {
                        out->state = INCLUDE_OVERRIDDEN;
                        out->file = e->file;
                        out->line = e->line;
                        return;
                }
                out->shadowed_file = e->file;
                out->shadowed_line = e->line;
        }
}

void include_check_clear(struct include_check *ic) {
        free(ic->line_to_add);
        memset(ic, 0, sizeof(*ic));
}
