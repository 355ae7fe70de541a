#include "fragments.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "acctlimits.h"
#include "util.h"

#define ITEMS_MAX 32

/* One `name: value` line of a block. */
struct fragment_item {
        const char *name;
        size_t name_len;
        const char *value;
        size_t value_len;
        int line;
};

/* A block of the fragment: `key: word` or `key { name: value ... }`. Adding a
 * managed key (e.g. account limits) means one more row here and its field
 * in struct fragment_state. */
struct fragment_block {
        const char *key;
        /* Append the block for decl; nothing when decl leaves the key unmanaged. */
        void (*render)(const struct account_decl *decl, FILE *f);
        /* Read the block back into out: word (NUL-terminated) for `key: word`,
         * else the items of `key { }`. 0 or -EBADMSG with *why. */
        int (*read)(struct fragment_state *out, const char *word, const struct fragment_item *items, size_t n,
                    char **why);
        /* The block's part of out when the fragment has no such block. */
        void (*absent)(struct fragment_state *out);
};

/* ---- jetstream ---- */

/* nats-server's names of the account JetStream limits, index-aligned with js_fields[]. */
static const char *const js_conf_names[] = {
        "max_mem",         "max_file",
        "max_streams",     "max_consumers",
        "max_ack_pending", "mem_max_stream_bytes",
        "disk_max_stream_bytes", "max_bytes_required",
};
_Static_assert(ARRAY_SIZE(js_conf_names) == 8, "one name per JetStream field");

static int64_t *js_field(struct js_limits *l, size_t i) {
        return (int64_t *)(void *)((char *)l + js_fields[i].offset);
}

static int64_t js_field_value(const struct js_limits *l, size_t i) {
        return *(const int64_t *)(const void *)((const char *)l + js_fields[i].offset);
}

static void render_jetstream(const struct account_decl *decl, FILE *f) {
        switch (decl->js) {
        case JS_UNMANAGED:
        case JS_TIERED: /* refused in config mode by the accounts file's parser */
                return;
        case JS_DISABLED:
                fputs("jetstream: disabled\n", f);
                return;
        case JS_ENABLED:
                break;
        }
        fputs("jetstream {\n", f);
        for (size_t i = 0; i < js_fields_count; i++) {
                if (js_fields[i].kind == JS_FIELD_BOOL)
                        fprintf(f, "  %s: %s\n", js_conf_names[i], decl->limits.max_bytes_required ? "true" : "false");
                else
                        fprintf(f, "  %s: %" PRId64 "\n", js_conf_names[i], js_field_value(&decl->limits, i));
        }
        fputs("}\n", f);
}

static bool item_is(const struct fragment_item *it, const char *name) {
        return strlen(name) == it->name_len && memcmp(it->name, name, it->name_len) == 0;
}

static bool parse_int(const char *s, size_t len, int64_t *out) {
        char buf[32];
        if (len == 0 || len >= sizeof(buf))
                return false;
        memcpy(buf, s, len);
        buf[len] = 0;
        char *end = NULL;
        errno = 0;
        long long v = strtoll(buf, &end, 10);
        if (errno || *end || (v < 0 && v != -1))
                return false;
        *out = v;
        return true;
}

/* The state as the diff reads declarations: through an account_decl. */
static void js_set(struct fragment_state *out, enum js_mode mode, const struct js_limits *limits) {
        struct account_decl d;
        memset(&d, 0, sizeof(d));
        d.js = mode;
        js_limits_unlimited(&d.limits);
        if (limits)
                d.limits = *limits;
        js_state_from_decl(&d, &out->js);
}

static int read_jetstream(struct fragment_state *out, const char *word, const struct fragment_item *items, size_t n,
                          char **why) {
        if (word) {
                if (strcmp(word, "disabled") != 0) {
                        *why = xasprintf("jetstream: expected disabled or a block of limits, got \"%.32s\"", word);
                        return -EBADMSG;
                }
                js_set(out, JS_DISABLED, NULL);
                return 0;
        }
        bool seen[ARRAY_SIZE(js_conf_names)] = { false };
        struct js_limits limits;
        js_limits_unlimited(&limits);
        struct js_state tmp = { .limits = limits }, *st = &tmp;
        for (size_t k = 0; k < n; k++) {
                size_t i = 0;
                while (i < js_fields_count && !item_is(&items[k], js_conf_names[i]))
                        i++;
                if (i == js_fields_count || seen[i]) {
                        *why = xasprintf("line %d: %s `%.*s` in the jetstream block", items[k].line,
                                         i == js_fields_count ? "unexpected" : "a second", (int)items[k].name_len,
                                         items[k].name);
                        return -EBADMSG;
                }
                seen[i] = true;
                const struct fragment_item *it = &items[k];
                if (js_fields[i].kind == JS_FIELD_BOOL) {
                        bool t = it->value_len == 4 && memcmp(it->value, "true", 4) == 0;
                        bool f = it->value_len == 5 && memcmp(it->value, "false", 5) == 0;
                        if (!t && !f) {
                                *why = xasprintf("line %d: %s: expected true or false", it->line, js_conf_names[i]);
                                return -EBADMSG;
                        }
                        st->limits.max_bytes_required = t;
                } else if (!parse_int(it->value, it->value_len, js_field(&st->limits, i))) {
                        *why = xasprintf("line %d: %s: expected an integer (-1 for unlimited)", it->line,
                                         js_conf_names[i]);
                        return -EBADMSG;
                }
        }
        for (size_t i = 0; i < js_fields_count; i++)
                if (!seen[i]) {
                        *why = xasprintf("the jetstream block has no %s", js_conf_names[i]);
                        return -EBADMSG;
                }
        js_set(out, JS_ENABLED, &st->limits);
        return 0;
}

static void absent_jetstream(struct fragment_state *out) {
        js_set(out, JS_UNMANAGED, NULL);
}

/* ---- limits ---- */

static void render_limits(const struct account_decl *decl, FILE *f) {
        if (!decl->acct_managed)
                return;
        char *block = acct_limits_config_block(&decl->acct);
        fputs(block, f);
        free(block);
}

static int read_limits(struct fragment_state *out, const char *word, const struct fragment_item *items, size_t n,
                       char **why) {
        if (word) {
                *why = xasprintf("limits: expected a block, got \"%.32s\"", word);
                return -EBADMSG;
        }
        bool seen[ACCT_FIELDS] = { false };
        acct_limits_unlimited(&out->acct);
        for (size_t k = 0; k < n; k++) {
                size_t i = 0;
                while (i < acct_fields_count && (acct_fields[i].operator_only || !item_is(&items[k], acct_fields[i].name)))
                        i++;
                if (i == acct_fields_count || seen[i]) {
                        *why = xasprintf("line %d: %s `%.*s` in the limits block", items[k].line,
                                         i == acct_fields_count ? "unexpected" : "a second", (int)items[k].name_len,
                                         items[k].name);
                        return -EBADMSG;
                }
                seen[i] = true;
                int64_t v;
                if (!parse_int(items[k].value, items[k].value_len, &v) || v > INT32_MAX) {
                        *why = xasprintf("line %d: %s: expected an integer of at most 2147483647 (-1 for unlimited)",
                                         items[k].line, acct_fields[i].name);
                        return -EBADMSG;
                }
                acct_limits_set(&out->acct, &acct_fields[i], v);
        }
        for (size_t i = 0; i < acct_fields_count; i++)
                if (!acct_fields[i].operator_only && !seen[i]) {
                        *why = xasprintf("the limits block has no %s", acct_fields[i].name);
                        return -EBADMSG;
                }
        out->acct_managed = true;
        return 0;
}

static void absent_limits(struct fragment_state *out) {
        out->acct_managed = false;
        acct_limits_unlimited(&out->acct);
}

static const struct fragment_block blocks[] = {
        { "jetstream", render_jetstream, read_jetstream, absent_jetstream },
        { "limits", render_limits, read_limits, absent_limits },
};

/* ---- the file ---- */

char *fragment_path(const char *fragments_dir, const char *account) {
        char *name = xasprintf("%s.conf", account);
        char *p = path_join(fragments_dir, name);
        free(name);
        return p;
}

char *fragment_render(const struct account_decl *decl, const char *accounts_file) {
        char *text = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&text, &len);
        if (!f)
                abort();
        /* A path is the only text from outside that lands here: no control
         * character may end the comment and start a line of config. */
        fprintf(f, "# Account %s: written by nats-accountd from ", decl->name);
        for (const char *c = accounts_file; *c; c++)
                fputc((unsigned char)*c < 0x20 || *c == 0x7f ? '?' : *c, f);
        fputs(".\n# Do not edit: nats-accountd replaces this file. Change the accounts file instead.\n", f);
        for (size_t i = 0; i < ARRAY_SIZE(blocks); i++)
                blocks[i].render(decl, f);
        if (fclose(f) != 0)
                abort();
        return text;
}

void fragment_state_from_decl(const struct account_decl *decl, struct fragment_state *out) {
        /* Render and read back: the state is exactly what the file will say. */
        char *text = fragment_render(decl, "-");
        char *why = NULL;
        if (fragment_parse(text, strlen(text), out, &why) < 0)
                abort(); /* our own output: cannot happen */
        free(text);
}

struct line {
        const char *s;
        size_t len;
        int no;
};

static const char *skip_blanks(const char *s, const char *end) {
        while (s < end && (*s == ' ' || *s == '\t'))
                s++;
        return s;
}

static const char *trim_end(const char *s, const char *end) {
        while (end > s && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r'))
                end--;
        return end;
}

/* The next line that is not blank or a comment, trimmed. */
static bool next_line(const char **p, const char *end, int *no, struct line *out) {
        while (*p < end) {
                const char *nl = memchr(*p, '\n', (size_t)(end - *p));
                const char *e = nl ? nl : end;
                const char *s = skip_blanks(*p, e);
                e = trim_end(s, e);
                (*no)++;
                *p = nl ? nl + 1 : end;
                if (s == e || *s == '#')
                        continue;
                *out = (struct line){ s, (size_t)(e - s), *no };
                return true;
        }
        return false;
}

static const struct fragment_block *block_for(const char *s, size_t len) {
        for (size_t i = 0; i < ARRAY_SIZE(blocks); i++)
                if (strlen(blocks[i].key) == len && memcmp(blocks[i].key, s, len) == 0)
                        return &blocks[i];
        return NULL;
}

int fragment_parse(const char *text, size_t len, struct fragment_state *out, char **why) {
        memset(out, 0, sizeof(*out));
        bool seen[ARRAY_SIZE(blocks)] = { false };
        if (len > FRAGMENT_MAX_SIZE) {
                *why = xasprintf("larger than %u bytes", FRAGMENT_MAX_SIZE);
                return -EBADMSG;
        }
        if (memchr(text, 0, len)) {
                *why = xstrdup("contains a NUL byte");
                return -EBADMSG;
        }
        const char *p = text, *end = text + len;
        int no = 0;
        struct line l;
        while (next_line(&p, end, &no, &l)) {
                const char *e = l.s + l.len, *k = l.s;
                while (k < e && *k != ':' && *k != ' ' && *k != '{')
                        k++;
                const struct fragment_block *b = block_for(l.s, (size_t)(k - l.s));
                if (!b) {
                        *why = xasprintf("line %d: unexpected `%.*s`", l.no, (int)(l.len > 40 ? 40 : l.len), l.s);
                        return -EBADMSG;
                }
                size_t bi = (size_t)(b - blocks);
                if (seen[bi]) {
                        *why = xasprintf("line %d: a second %s block", l.no, b->key);
                        return -EBADMSG;
                }
                seen[bi] = true;
                const char *rest = skip_blanks(k, e);
                int r;
                if (rest < e && *rest == ':') {
                        const char *w = skip_blanks(rest + 1, e);
                        char *word = xstrndup(w, (size_t)(e - w));
                        r = b->read(out, word, NULL, 0, why);
                        free(word);
                } else if (rest + 1 == e && *rest == '{') {
                        struct fragment_item items[ITEMS_MAX];
                        size_t n = 0;
                        bool closed = false;
                        while (!closed && next_line(&p, end, &no, &l)) {
                                if (l.len == 1 && l.s[0] == '}') {
                                        closed = true;
                                        break;
                                }
                                const char *c = memchr(l.s, ':', l.len);
                                if (!c || n == ITEMS_MAX) {
                                        *why = xasprintf("line %d: expected `name: value` in the %s block", l.no,
                                                         b->key);
                                        return -EBADMSG;
                                }
                                const char *v = skip_blanks(c + 1, l.s + l.len);
                                items[n++] = (struct fragment_item){ l.s, (size_t)(trim_end(l.s, c) - l.s), v,
                                                                     (size_t)(l.s + l.len - v), l.no };
                        }
                        if (!closed) {
                                *why = xasprintf("the %s block is not closed", b->key);
                                return -EBADMSG;
                        }
                        r = b->read(out, NULL, items, n, why);
                } else {
                        *why = xasprintf("line %d: expected `%s: ...` or `%s {`", l.no, b->key, b->key);
                        return -EBADMSG;
                }
                if (r < 0)
                        return r;
        }
        for (size_t i = 0; i < ARRAY_SIZE(blocks); i++)
                if (!seen[i])
                        blocks[i].absent(out);
        return 0;
}
