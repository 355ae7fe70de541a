#include "accounts.h"

#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "units.h"
#include "util.h"

#define FIELD(f, kind) { #f, kind, offsetof(struct js_limits, f) }
const struct js_field js_fields[] = {
        FIELD(max_memory, JS_FIELD_SIZE),
        FIELD(max_store, JS_FIELD_SIZE),
        FIELD(max_streams, JS_FIELD_COUNT),
        FIELD(max_consumers, JS_FIELD_COUNT),
        FIELD(max_ack_pending, JS_FIELD_COUNT),
        FIELD(memory_max_stream_bytes, JS_FIELD_SIZE),
        FIELD(store_max_stream_bytes, JS_FIELD_SIZE),
        FIELD(max_bytes_required, JS_FIELD_BOOL),
};
#undef FIELD
const size_t js_fields_count = ARRAY_SIZE(js_fields);

#define FIELD(f, kind, wide, operator_only) { #f, kind, offsetof(struct acct_limits, f), wide, operator_only }
const struct acct_field acct_fields[ACCT_FIELDS] = {
        FIELD(max_connections, JS_FIELD_COUNT, false, false),
        FIELD(max_subscriptions, JS_FIELD_COUNT, false, false),
        FIELD(max_payload, JS_FIELD_SIZE, false, false),
        FIELD(max_leafnodes, JS_FIELD_COUNT, false, false),
        FIELD(max_data, JS_FIELD_SIZE, true, true),
        FIELD(max_imports, JS_FIELD_COUNT, false, true),
        FIELD(max_exports, JS_FIELD_COUNT, false, true),
};
#undef FIELD
const size_t acct_fields_count = ARRAY_SIZE(acct_fields);
_Static_assert(ARRAY_SIZE(acct_fields) == ACCT_FIELDS, "one entry per member of struct acct_limits");

static const char *const tier_names[JS_TIERS] = { "R1", "R2", "R3", "R4", "R5" };

enum {
        /* Merge keys may nest (a merged mapping with its own `<<`); deeper than this is an
         * attack, and the bound keeps the recursion off the end of the stack. */
        MERGE_DEPTH_MAX = 32,
        /* How much of a value from the file a message quotes. */
        SHOWN_MAX = 64,
        TEXT_SIZE = SHOWN_MAX * 4 + 8,
        PATH_SIZE = 1024,
};

void js_limits_unlimited(struct js_limits *l) {
        for (size_t i = 0; i < js_fields_count; i++) {
                char *p = (char *)l + js_fields[i].offset;
                if (js_fields[i].kind == JS_FIELD_BOOL)
                        *(bool *)p = false;
                else
                        *(int64_t *)p = LIMIT_UNLIMITED;
        }
}

void acct_limits_unlimited(struct acct_limits *l) {
        for (size_t i = 0; i < acct_fields_count; i++)
                acct_limits_set(l, &acct_fields[i], LIMIT_UNLIMITED);
}

int64_t acct_limits_get(const struct acct_limits *l, const struct acct_field *f) {
        const char *p = (const char *)l + f->offset;
        return f->wide ? *(const int64_t *)(const void *)p : *(const int32_t *)(const void *)p;
}

/* v must fit the field (the parser and the claims reader see to it). */
void acct_limits_set(struct acct_limits *l, const struct acct_field *f, int64_t v) {
        char *p = (char *)l + f->offset;
        if (f->wide)
                *(int64_t *)(void *)p = v;
        else
                *(int32_t *)(void *)p = (int32_t)v;
}

/* A compact document tree, built from libyaml's events. libyaml's own loader (yaml_parser_load)
 * spends ~180 bytes a node (a malloc'd tag and value each, a 16-slot array per mapping) and
 * registers anchors with a linear search, so 100,000 accounts took 370 MB and 100,000 anchors
 * 16 s. Here a node is 20 bytes, text lives in one arena, and anchors are hashed. As in
 * libyaml's loader, an alias shares the anchored node, never copies it; it keeps a small node
 * of its own only so that errors point at the alias the user wrote. */
enum ynode_type { YNODE_SCALAR, YNODE_SEQUENCE, YNODE_MAPPING, YNODE_ALIAS };

struct ynode {
        uint8_t type;
        bool plain; /* plain scalar: only those can be null or a merge key */
        bool block; /* block-style collection (not a flow one) */
        uint32_t line, column; /* 1-based */
        uint32_t off; /* scalar: into text (NUL-terminated); collection: into kids; alias: target */
        uint32_t len; /* scalar: bytes; sequence: items; mapping: pairs (kids holds key, value, ...) */
};

struct anchor {
        uint32_t name; /* into text */
        uint32_t len;
        uint32_t node;
        bool used;
};

struct ydoc {
        struct ynode *nodes;
        size_t n_nodes, cap_nodes;
        size_t n_aliases; /* of n_nodes */
        uint32_t *kids;
        size_t n_kids, cap_kids;
        char *text;
        size_t n_text, cap_text;
        struct anchor *anchors; /* open addressing, power-of-two size */
        size_t n_anchors, cap_anchors;
        uint32_t root;
        bool has_root; /* false: no document at all */
        int second_line, second_column; /* where a second document starts; 0 = none */
};

/* The collection being composed: its children wait on a stack until its end event. */
struct frame {
        uint32_t node;
        size_t first_pending;
        bool has_anchor;
        uint32_t anchor, anchor_len;
};

struct composer {
        struct ydoc *doc;
        struct frame *frames;
        size_t n_frames, cap_frames;
        uint32_t *pending;
        size_t n_pending, cap_pending;
};

/* Where an error is: built on the stack while walking and only rendered when an error is
 * reported, so a valid file costs no string work. */
struct path {
        const struct path *parent;
        const char *name;
        size_t len;
};

struct walker {
        const struct ydoc *doc;
        const char *file;
        enum accounts_flavor flavor;
        struct diag_list *d;
        size_t errors;
        /* Node visits left. Aliases share nodes, so without a bound a few anchors could make
         * the walk exponential (billion laughs through merge keys). */
        size_t budget;
        bool bomb;
        const struct ynode *alias; /* outermost alias the walk is inside: where a bomb is reported */
        struct shape *shape; /* NULL, or what accounts_load_update needs to know of the file */
};

/* Whether the file can later be re-read in part (accounts_load_update): the
 * accounts are the plain keys of one block mapping, each starting a line at
 * the same column, with no anchor, alias or merge key anywhere near them. Then
 * the text of one account ends where the next one's line starts, and what the
 * parser makes of it depends on nothing else. */
struct shape {
        bool ok;
        int column;      /* of the account names */
        uint32_t *lines; /* of the account names, in file order */
        size_t n;
};

struct pair {
        const struct ynode *key; /* a scalar, alias resolved */
        const struct ynode *value; /* as written: maybe an alias */
};

/* A mapping's pairs after merge keys, with a hash on the key text so that duplicates and
 * overrides cost O(1) each even in a mapping of a million accounts. */
struct pairs {
        const struct ydoc *doc;
        struct pair *v;
        size_t n, cap;
        size_t *slot; /* index + 1 into v; 0 = free */
        size_t nslot; /* power of two */
};

/* INT32_MAX rather than INT_MAX: daemon/limits.h shadows <limits.h> on our include path. */
static int mark_line(const yaml_mark_t *m) {
        return m->line >= (size_t)INT32_MAX ? INT32_MAX : (int)m->line + 1;
}

static int mark_column(const yaml_mark_t *m) {
        return m->column >= (size_t)INT32_MAX ? INT32_MAX : (int)m->column + 1;
}

/* Room for one more element. Offsets are 32 bits: plenty for a file of at most 128 MiB, and
 * the check keeps a bug from wrapping them. */
static bool grow(void **v, size_t *cap, size_t n, size_t elem) {
        if (n >= UINT32_MAX)
                return false;
        if (n == *cap) {
                size_t c = *cap ? *cap * 2 : 64;
                *v = xreallocarray(*v, c, elem);
                *cap = c;
        }
        return true;
}

static bool text_add(struct ydoc *doc, const unsigned char *s, size_t len, uint32_t *off) {
        if (len >= UINT32_MAX - doc->n_text - 1)
                return false;
        if (doc->n_text + len + 1 > doc->cap_text) {
                size_t c = doc->cap_text ? doc->cap_text : 4096;
                while (c < doc->n_text + len + 1)
                        c *= 2;
                doc->text = xreallocarray(doc->text, c, 1);
                doc->cap_text = c;
        }
        *off = (uint32_t)doc->n_text;
        if (len)
                memcpy(doc->text + doc->n_text, s, len);
        doc->text[doc->n_text + len] = 0;
        doc->n_text += len + 1;
        return true;
}

static uint64_t hash_bytes(const char *s, size_t n) {
        uint64_t h = 14695981039346656037ULL; /* FNV-1a */
        for (size_t i = 0; i < n; i++) {
                h ^= (unsigned char)s[i];
                h *= 1099511628211ULL;
        }
        return h;
}

/* The slot for this anchor name: the one holding it, or the free one where it goes. */
static struct anchor *anchor_slot(const struct ydoc *doc, const char *name, size_t len) {
        size_t mask = doc->cap_anchors - 1;
        for (size_t j = hash_bytes(name, len) & mask;; j = (j + 1) & mask) {
                struct anchor *a = &doc->anchors[j];
                if (!a->used || (a->len == len && memcmp(doc->text + a->name, name, len) == 0))
                        return a;
        }
}

/* YAML lets a later anchor of the same name replace an earlier one for the aliases after it. */
static bool anchor_set(struct ydoc *doc, uint32_t name, uint32_t len, uint32_t node) {
        if ((doc->n_anchors + 1) * 2 > doc->cap_anchors) {
                struct anchor *old = doc->anchors;
                size_t old_cap = doc->cap_anchors;
                doc->cap_anchors = old_cap ? old_cap * 2 : 64;
                doc->anchors = xcalloc(doc->cap_anchors, sizeof(*doc->anchors));
                for (size_t i = 0; i < old_cap; i++)
                        if (old[i].used)
                                *anchor_slot(doc, doc->text + old[i].name, old[i].len) = old[i];
                free(old);
        }
        struct anchor *a = anchor_slot(doc, doc->text + name, len);
        if (!a->used)
                doc->n_anchors++;
        *a = (struct anchor){ name, len, node, true };
        return true;
}

static bool node_add(struct ydoc *doc, enum ynode_type type, bool plain, const yaml_mark_t *m, uint32_t *index) {
        if (!grow((void **)&doc->nodes, &doc->cap_nodes, doc->n_nodes, sizeof(*doc->nodes)))
                return false;
        *index = (uint32_t)doc->n_nodes;
        doc->nodes[doc->n_nodes++] = (struct ynode){
                .type = (uint8_t)type,
                .plain = plain,
                .line = (uint32_t)mark_line(m),
                .column = (uint32_t)mark_column(m),
        };
        return true;
}

/* A finished node goes to the collection being composed, or becomes the root. */
static bool child_add(struct composer *c, uint32_t index) {
        if (c->n_frames == 0) {
                c->doc->root = index;
                c->doc->has_root = true;
                return true;
        }
        if (!grow((void **)&c->pending, &c->cap_pending, c->n_pending, sizeof(*c->pending)))
                return false;
        c->pending[c->n_pending++] = index;
        return true;
}

static bool collection_start(struct composer *c, enum ynode_type type, const yaml_event_t *ev,
                             const yaml_char_t *anchor) {
        struct frame f = { .first_pending = c->n_pending };
        if (!node_add(c->doc, type, false, &ev->start_mark, &f.node))
                return false;
        c->doc->nodes[f.node].block = type == YNODE_MAPPING
                                              ? ev->data.mapping_start.style == YAML_BLOCK_MAPPING_STYLE
                                              : ev->data.sequence_start.style == YAML_BLOCK_SEQUENCE_STYLE;
        if (anchor) {
                f.has_anchor = true;
                f.anchor_len = (uint32_t)strlen((const char *)anchor);
                if (!text_add(c->doc, anchor, f.anchor_len, &f.anchor))
                        return false;
        }
        if (!grow((void **)&c->frames, &c->cap_frames, c->n_frames, sizeof(*c->frames)))
                return false;
        c->frames[c->n_frames++] = f;
        return true;
}

static bool collection_end(struct composer *c) {
        struct ydoc *doc = c->doc;
        struct frame f = c->frames[--c->n_frames];
        size_t n = c->n_pending - f.first_pending;
        if (n >= UINT32_MAX - doc->n_kids)
                return false;
        if (doc->n_kids + n > doc->cap_kids) {
                size_t cap = doc->cap_kids ? doc->cap_kids : 256;
                while (cap < doc->n_kids + n)
                        cap *= 2;
                doc->kids = xreallocarray(doc->kids, cap, sizeof(*doc->kids));
                doc->cap_kids = cap;
        }
        struct ynode *node = &doc->nodes[f.node];
        node->off = (uint32_t)doc->n_kids;
        node->len = (uint32_t)(node->type == YNODE_MAPPING ? n / 2 : n);
        if (n)
                memcpy(doc->kids + doc->n_kids, c->pending + f.first_pending, n * sizeof(*doc->kids));
        doc->n_kids += n;
        c->n_pending = f.first_pending;
        /* Registered only now, so an alias can never point into its own node: the graph stays acyclic. */
        if (f.has_anchor && !anchor_set(doc, f.anchor, f.anchor_len, f.node))
                return false;
        return child_add(c, f.node);
}

static void doc_free(struct ydoc *doc) {
        free(doc->nodes);
        free(doc->kids);
        free(doc->text);
        free(doc->anchors);
        *doc = (struct ydoc){ 0 };
}

/* libyaml's own message at its own position. Reader errors (bad encoding) carry only an offset. */
static int report_yaml_error(const yaml_parser_t *parser, const char *buf, size_t len, const char *filename,
                             struct diag_list *d) {
        if (parser->error == YAML_MEMORY_ERROR) {
                diag_add(d, filename, 0, 0, "out of memory while parsing");
                return -ENOMEM;
        }
        const char *problem = parser->problem ? parser->problem : "unknown error";
        int line, column;
        if (parser->error == YAML_READER_ERROR) {
                line = 1;
                column = 1;
                for (size_t i = 0; i < parser->problem_offset && i < len; i++) {
                        if (buf[i] == '\n') {
                                line++;
                                column = 1;
                        } else {
                                column++;
                        }
                }
        } else {
                line = mark_line(&parser->problem_mark);
                column = mark_column(&parser->problem_mark);
        }
        if (parser->context)
                diag_add(d, filename, line, column, "YAML syntax error: %s (%s at line %d)", problem,
                         parser->context, mark_line(&parser->context_mark));
        else
                diag_add(d, filename, line, column, "YAML syntax error: %s", problem);
        return -EINVAL;
}

static int compose_alias(struct composer *c, const yaml_event_t *ev, const char *filename, struct diag_list *d) {
        const char *name = (const char *)ev->data.alias.anchor;
        size_t len = strlen(name);
        const struct anchor *a = c->doc->cap_anchors ? anchor_slot(c->doc, name, len) : NULL;
        if (a && a->used) {
                uint32_t index, target = a->node;
                if (!node_add(c->doc, YNODE_ALIAS, false, &ev->start_mark, &index))
                        return -EFBIG;
                c->doc->nodes[index].off = target;
                c->doc->n_aliases++;
                return child_add(c, index) ? 0 : -EFBIG;
        }
        for (size_t i = 0; i < c->n_frames; i++) {
                const struct frame *f = &c->frames[i];
                if (f->has_anchor && f->anchor_len == len && memcmp(c->doc->text + f->anchor, name, len) == 0) {
                        diag_add(d, filename, mark_line(&ev->start_mark), mark_column(&ev->start_mark),
                                 "YAML syntax error: alias *%s inside the node it names (recursive structures "
                                 "are not supported)", name);
                        return -EINVAL;
                }
        }
        diag_add(d, filename, mark_line(&ev->start_mark), mark_column(&ev->start_mark),
                 "YAML syntax error: found undefined alias *%s", name);
        return -EINVAL;
}

static int compose_event(struct composer *c, const yaml_event_t *ev, const char *filename, struct diag_list *d) {
        struct ydoc *doc = c->doc;
        uint32_t index;
        switch (ev->type) {
        case YAML_ALIAS_EVENT:
                return compose_alias(c, ev, filename, d);
        case YAML_SCALAR_EVENT:
                if (!node_add(doc, YNODE_SCALAR, ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE, &ev->start_mark,
                              &index))
                        return -EFBIG;
                uint32_t off;
                if (!text_add(doc, ev->data.scalar.value, ev->data.scalar.length, &off))
                        return -EFBIG;
                doc->nodes[index].off = off;
                doc->nodes[index].len = (uint32_t)ev->data.scalar.length;
                if (ev->data.scalar.anchor) {
                        uint32_t name, len = (uint32_t)strlen((const char *)ev->data.scalar.anchor);
                        if (!text_add(doc, ev->data.scalar.anchor, len, &name) || !anchor_set(doc, name, len, index))
                                return -EFBIG;
                }
                return child_add(c, index) ? 0 : -EFBIG;
        case YAML_SEQUENCE_START_EVENT:
                return collection_start(c, YNODE_SEQUENCE, ev, ev->data.sequence_start.anchor) ? 0 : -EFBIG;
        case YAML_MAPPING_START_EVENT:
                return collection_start(c, YNODE_MAPPING, ev, ev->data.mapping_start.anchor) ? 0 : -EFBIG;
        case YAML_SEQUENCE_END_EVENT:
        case YAML_MAPPING_END_EVENT:
                return collection_end(c) ? 0 : -EFBIG;
        default:
                return 0;
        }
}

/* Compose the first document. A second one is only noted (where it starts), not parsed:
 * reading it just to reject it would cost time and memory. */
static int doc_load(struct ydoc *doc, const char *buf, size_t len, const char *filename, struct diag_list *d) {
        yaml_parser_t parser;
        struct composer c = { .doc = doc };
        int r = 0, docs = 0;

        if (!yaml_parser_initialize(&parser))
                return -ENOMEM;
        yaml_parser_set_input_string(&parser, (const unsigned char *)buf, len);
        for (bool done = false; !done && r == 0;) {
                yaml_event_t ev;
                if (!yaml_parser_parse(&parser, &ev)) {
                        r = report_yaml_error(&parser, buf, len, filename, d);
                        break;
                }
                switch (ev.type) {
                case YAML_STREAM_END_EVENT:
                        done = true;
                        break;
                case YAML_DOCUMENT_START_EVENT:
                        if (docs++ == 1) {
                                doc->second_line = mark_line(&ev.start_mark);
                                doc->second_column = mark_column(&ev.start_mark);
                                done = true;
                        }
                        break;
                default:
                        r = compose_event(&c, &ev, filename, d);
                        break;
                }
                yaml_event_delete(&ev);
        }
        if (r == -EFBIG)
                diag_add(d, filename, 0, 0, "too large to parse");
        free(c.frames);
        free(c.pending);
        yaml_parser_delete(&parser);
        return r;
}

static const char *scalar_value(const struct ydoc *doc, const struct ynode *n) {
        return doc->text + n->off;
}

static bool scalar_is(const struct ydoc *doc, const struct ynode *n, const char *s) {
        size_t len = strlen(s);
        return n->type == YNODE_SCALAR && n->len == len && memcmp(doc->text + n->off, s, len) == 0;
}

/* "\0" in a quoted scalar yields a NUL byte, which C string functions would silently cut at. */
static bool scalar_has_nul(const struct ydoc *doc, const struct ynode *n) {
        return memchr(doc->text + n->off, 0, n->len) != NULL;
}

static bool is_null(const struct ydoc *doc, const struct ynode *n) {
        if (n->type != YNODE_SCALAR || !n->plain)
                return false;
        return n->len == 0 || scalar_is(doc, n, "~") || scalar_is(doc, n, "null") || scalar_is(doc, n, "Null") ||
               scalar_is(doc, n, "NULL");
}

static bool is_true(const struct ydoc *doc, const struct ynode *n) {
        return scalar_is(doc, n, "true") || scalar_is(doc, n, "True") || scalar_is(doc, n, "TRUE");
}

static bool is_false(const struct ydoc *doc, const struct ynode *n) {
        return scalar_is(doc, n, "false") || scalar_is(doc, n, "False") || scalar_is(doc, n, "FALSE");
}

/* Only a plain `<<` is a merge key; a quoted one is an ordinary (and here unknown) key. */
static bool is_merge_key(const struct ydoc *doc, const struct ynode *n) {
        return n->type == YNODE_SCALAR && n->plain && scalar_is(doc, n, "<<");
}

/* The i-th child as written (maybe an alias). */
static const struct ynode *kid(const struct ydoc *doc, const struct ynode *n, size_t i) {
        return &doc->nodes[doc->kids[n->off + i]];
}

/* What a node stands for: anchors never sit on aliases, so one step is enough. */
static const struct ynode *deref(const struct ydoc *doc, const struct ynode *n) {
        return n->type == YNODE_ALIAS ? &doc->nodes[n->off] : n;
}

/* Appends to buf[*off..size) without overflowing; output past the end is dropped. */
static void put(char *buf, size_t size, size_t *off, const char *s, size_t n) {
        if (*off + 1 >= size)
                return;
        size_t room = size - *off - 1;
        if (n > room)
                n = room;
        memcpy(buf + *off, s, n);
        *off += n;
        buf[*off] = 0;
}

/* Text from the file made safe and short for a message: control characters escaped, at most
 * SHOWN_MAX bytes, never cutting a UTF-8 sequence. */
static void text_escape(const char *s, size_t len, bool quote_chars, char *buf, size_t size, size_t *off) {
        bool cut = len > SHOWN_MAX;
        if (cut) {
                len = SHOWN_MAX;
                while (len > 0 && ((unsigned char)s[len] & 0xc0) == 0x80)
                        len--;
        }
        for (size_t i = 0; i < len; i++) {
                unsigned char c = (unsigned char)s[i];
                char esc[8];
                if (c < 0x20 || c == 0x7f) {
                        snprintf(esc, sizeof(esc), "\\x%02x", c);
                        put(buf, size, off, esc, 4);
                } else if (quote_chars && (c == '"' || c == '\\')) {
                        esc[0] = '\\';
                        esc[1] = (char)c;
                        put(buf, size, off, esc, 2);
                } else {
                        put(buf, size, off, (const char *)&s[i], 1);
                }
        }
        if (cut)
                put(buf, size, off, "...", 3);
}

static const char *text(const struct ydoc *doc, const struct ynode *n, char buf[TEXT_SIZE]) {
        size_t off = 0;
        buf[0] = 0;
        text_escape(scalar_value(doc, n), n->len, false, buf, TEXT_SIZE, &off);
        return buf;
}

static const char *quoted(const struct ydoc *doc, const struct ynode *n, char buf[TEXT_SIZE]) {
        size_t off = 0;
        buf[0] = 0;
        put(buf, TEXT_SIZE, &off, "\"", 1);
        text_escape(scalar_value(doc, n), n->len, true, buf, TEXT_SIZE, &off);
        put(buf, TEXT_SIZE, &off, "\"", 1);
        return buf;
}

/* What the file holds where something else was expected: the "got ..." of a message. Plain
 * scalars as written, others quoted, so the user sees exactly what they typed. */
static const char *describe(const struct ydoc *doc, const struct ynode *n, char buf[TEXT_SIZE]) {
        size_t off = 0;
        buf[0] = 0;
        n = deref(doc, n);
        if (n->type == YNODE_MAPPING)
                return "a mapping";
        if (n->type == YNODE_SEQUENCE)
                return "a sequence";
        if (is_null(doc, n))
                return n->len == 0 ? "nothing" : "null";
        if (n->plain) {
                text_escape(scalar_value(doc, n), n->len, false, buf, TEXT_SIZE, &off);
                return buf;
        }
        return quoted(doc, n, buf);
}

static void path_render(const struct path *p, char *buf, size_t size, size_t *off) {
        if (!p)
                return;
        path_render(p->parent, buf, size, off);
        if (p->parent)
                put(buf, size, off, ".", 1);
        text_escape(p->name, p->len, false, buf, size, off);
}

__attribute__((format(printf, 5, 0)))
static void error_vat(struct walker *w, int line, int column, const struct path *p, const char *fmt, va_list ap) {
        /* After an alias bomb, everything that follows is noise. */
        if (w->bomb)
                return;
        w->errors++;
        char where[PATH_SIZE] = "";
        size_t off = 0;
        path_render(p, where, sizeof(where), &off);
        char *msg = xvasprintf(fmt, ap);
        diag_add(w->d, w->file, line, column, "%s%s%s", where, where[0] ? ": " : "", msg);
        free(msg);
}

__attribute__((format(printf, 4, 5)))
static void error_at(struct walker *w, const struct ynode *n, const struct path *p, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        error_vat(w, (int)n->line, (int)n->column, p, fmt, ap);
        va_end(ap);
}

__attribute__((format(printf, 5, 6)))
static void error_at_line(struct walker *w, int line, int column, const struct path *p, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        error_vat(w, line, column, p, fmt, ap);
        va_end(ap);
}

/* Charge one node visit. Without aliases every node is visited a few times at most, so running
 * out means the walk is inside an alias: the outermost one is the culprit. */
static bool visit(struct walker *w, const struct ynode *n) {
        if (w->bomb)
                return false;
        if (w->budget > 0) {
                w->budget--;
                return true;
        }
        error_at(w, w->alias ? w->alias : n, NULL, "too many alias expansions: alias bomb?");
        w->bomb = true;
        return false;
}

/* Before walking into a value: note the outermost alias. Returns what alias_leave restores. */
static const struct ynode *alias_enter(struct walker *w, const struct ynode *n) {
        const struct ynode *saved = w->alias;
        if (n->type == YNODE_ALIAS && !w->alias)
                w->alias = n;
        return saved;
}

static void alias_leave(struct walker *w, const struct ynode *saved) {
        w->alias = saved;
}

static uint64_t key_hash(const struct ydoc *doc, const struct ynode *k) {
        return hash_bytes(scalar_value(doc, k), k->len);
}

static bool key_same(const struct ydoc *doc, const struct ynode *a, const struct ynode *b) {
        return a->len == b->len && memcmp(scalar_value(doc, a), scalar_value(doc, b), a->len) == 0;
}

static void pairs_rehash(struct pairs *ps, size_t nslot) {
        free(ps->slot);
        ps->slot = xcalloc(nslot, sizeof(*ps->slot));
        ps->nslot = nslot;
        for (size_t i = 0; i < ps->n; i++) {
                size_t j = key_hash(ps->doc, ps->v[i].key) & (nslot - 1);
                while (ps->slot[j])
                        j = (j + 1) & (nslot - 1);
                ps->slot[j] = i + 1;
        }
}

/* NULL after appending key -> value; if the key is already there, the pair that has it. */
static const struct pair *pairs_add(struct pairs *ps, const struct ynode *key, const struct ynode *value) {
        if ((ps->n + 1) * 2 > ps->nslot)
                pairs_rehash(ps, ps->nslot ? ps->nslot * 2 : 16);
        size_t mask = ps->nslot - 1, j = key_hash(ps->doc, key) & mask;
        for (; ps->slot[j]; j = (j + 1) & mask) {
                const struct pair *p = &ps->v[ps->slot[j] - 1];
                if (key_same(ps->doc, p->key, key))
                        return p;
        }
        if (ps->n == ps->cap) {
                ps->cap = ps->cap ? ps->cap * 2 : 8;
                ps->v = xreallocarray(ps->v, ps->cap, sizeof(*ps->v));
        }
        ps->v[ps->n] = (struct pair){ key, value };
        ps->slot[j] = ++ps->n;
        return NULL;
}

static void pairs_free(struct pairs *ps) {
        free(ps->v);
        free(ps->slot);
        ps->v = NULL;
        ps->slot = NULL;
        ps->n = ps->cap = ps->nslot = 0;
}

static void flatten(struct walker *w, const struct ynode *map, const struct path *p, const char *dup_what,
                    unsigned depth, struct pairs *out);

static void merge_source(struct walker *w, const struct ynode *src, const struct path *p, const char *dup_what,
                         unsigned depth, struct pairs *out) {
        struct pairs sub = { .doc = w->doc };
        const struct ynode *saved = alias_enter(w, src);
        flatten(w, deref(w->doc, src), p, dup_what, depth, &sub);
        alias_leave(w, saved);
        /* Keys the mapping sets itself, or an earlier source set, win. */
        for (size_t i = 0; i < sub.n; i++)
                (void)pairs_add(out, sub.v[i].key, sub.v[i].value);
        pairs_free(&sub);
}

/* The value of a `<<`: a mapping, or a sequence of mappings. */
static void merge(struct walker *w, const struct ynode *value, const struct path *p, const char *dup_what,
                  unsigned depth, struct pairs *out) {
        char got[TEXT_SIZE];
        const struct ynode *v = deref(w->doc, value);
        if (!visit(w, value))
                return;
        if (v->type == YNODE_MAPPING) {
                merge_source(w, value, p, dup_what, depth, out);
                return;
        }
        if (v->type != YNODE_SEQUENCE) {
                error_at(w, value, p, "expected a mapping or a sequence of mappings after <<, got %s",
                         describe(w->doc, v, got));
                return;
        }
        const struct ynode *saved = alias_enter(w, value);
        bool reported = false;
        for (size_t i = 0; i < v->len && !w->bomb; i++) {
                const struct ynode *src = kid(w->doc, v, i);
                if (!visit(w, src))
                        break;
                if (deref(w->doc, src)->type == YNODE_MAPPING) {
                        merge_source(w, src, p, dup_what, depth, out);
                } else if (!reported) {
                        /* Once is enough: a bad list is usually the same mistake repeated. A list
                         * behind an alias is blamed on the alias, which is what the user wrote here. */
                        error_at(w, value->type == YNODE_ALIAS ? value : src, p,
                                 "expected a sequence of mappings after <<, got %s in it", describe(w->doc, src, got));
                        reported = true;
                }
        }
        alias_leave(w, saved);
}

/* The mapping's pairs with merge keys (`<<`) resolved as YAML's merge type says: its own keys
 * first, then those of the merged mappings it does not set itself, earlier sources first.
 * Duplicate own keys are errors (dup_what names them: "key", "account"). */
static void flatten(struct walker *w, const struct ynode *map, const struct path *p, const char *dup_what,
                    unsigned depth, struct pairs *out) {
        char t[TEXT_SIZE], got[TEXT_SIZE];
        const struct ynode *merge_key = NULL, *merge_value = NULL;

        /* The composer keeps the graph acyclic; this only bounds the recursion. */
        if (depth > MERGE_DEPTH_MAX) {
                error_at(w, w->alias ? w->alias : map, p, "expected merge keys nested at most %d deep, got deeper",
                         MERGE_DEPTH_MAX);
                return;
        }
        for (size_t i = 0; i < map->len; i++) {
                const struct ynode *k = kid(w->doc, map, 2 * i), *v = kid(w->doc, map, 2 * i + 1);
                if (!visit(w, k))
                        break;
                k = deref(w->doc, k);
                if (k->type != YNODE_SCALAR) {
                        error_at(w, k, p, "expected a key name, got %s", describe(w->doc, k, got));
                        continue;
                }
                if (is_merge_key(w->doc, k)) {
                        if (merge_key) {
                                error_at(w, k, p, "duplicate key << (first at line %u)", merge_key->line);
                                continue;
                        }
                        merge_key = k;
                        merge_value = v;
                        continue;
                }
                const struct pair *first = pairs_add(out, k, v);
                if (first)
                        error_at(w, k, p, "duplicate %s %s (first at line %u)", dup_what, text(w->doc, k, t),
                                 first->key->line);
        }
        if (merge_key && !w->bomb)
                merge(w, merge_value, p, dup_what, depth + 1, out);
}

static void flatten_mapping(struct walker *w, const struct ynode *map, const struct path *p, const char *dup_what,
                            struct pairs *out) {
        flatten(w, map, p, dup_what, 0, out);
}

static struct path path_child(const struct walker *w, const struct path *parent, const struct ynode *key) {
        return (struct path){ parent, scalar_value(w->doc, key), key->len };
}

static struct path path_named(const struct path *parent, const char *name) {
        return (struct path){ parent, name, strlen(name) };
}

static const struct js_field *field_find(const struct walker *w, const struct ynode *key) {
        for (size_t i = 0; i < js_fields_count; i++)
                if (scalar_is(w->doc, key, js_fields[i].name))
                        return &js_fields[i];
        return NULL;
}

/* "max_memory, max_store, ..., max_bytes_required" (+ ", tiers" where allowed). */
static const char *fields_list(bool with_tiers, char *buf, size_t size) {
        size_t off = 0;
        buf[0] = 0;
        for (size_t i = 0; i < js_fields_count; i++) {
                if (i)
                        put(buf, size, &off, ", ", 2);
                put(buf, size, &off, js_fields[i].name, strlen(js_fields[i].name));
        }
        if (with_tiers)
                put(buf, size, &off, ", tiers", 7);
        return buf;
}

static void unknown_key(struct walker *w, const struct ynode *key, const struct path *parent, const char *allowed) {
        struct path p = path_child(w, parent, key);
        error_at(w, key, &p, "expected one of %s, got an unknown key", allowed);
}

/* 0 reads as "unlimited" to nats-server for these, so a 0 would do the opposite of what it says.
 * max_memory and max_store differ: 0 there is a real limit (no memory, or no file storage). */
static bool zero_means_unlimited(const struct js_field *f) {
        return f->kind != JS_FIELD_BOOL && f->offset != offsetof(struct js_limits, max_memory) &&
               f->offset != offsetof(struct js_limits, max_store);
}

static const char *const expected_kind[] = {
        [JS_FIELD_SIZE] = "a size",
        [JS_FIELD_COUNT] = "a count",
        [JS_FIELD_BOOL] = "true or false",
};

/* Walkers get a value as written (maybe an alias, so errors point where the user wrote it)
 * and look at what it stands for. */

/* A size or a count (-1 for unlimited); false when the value is none (reported). */
static bool walk_number(struct walker *w, enum js_field_kind kind, const struct ynode *value, const struct path *p,
                        int64_t *out) {
        char got[TEXT_SIZE];
        const struct ynode *v = deref(w->doc, value);
        if (v->type != YNODE_SCALAR || is_null(w->doc, v)) {
                error_at(w, value, p, "expected %s, got %s", expected_kind[kind], describe(w->doc, v, got));
                return false;
        }
        const char *why = "contains a NUL character";
        int r = -EINVAL;
        if (!scalar_has_nul(w->doc, v))
                r = kind == JS_FIELD_SIZE ? units_parse_size(scalar_value(w->doc, v), out, &why)
                                          : units_parse_count(scalar_value(w->doc, v), out, &why);
        if (r < 0) {
                error_at(w, value, p, "expected %s, got %s: %s", expected_kind[kind], describe(w->doc, v, got), why);
                return false;
        }
        return true;
}

static void walk_field(struct walker *w, const struct js_field *f, const struct ynode *key, const struct ynode *value,
                       const struct path *parent, struct js_limits *limits) {
        char got[TEXT_SIZE];
        struct path p = path_child(w, parent, key);
        const struct ynode *v = deref(w->doc, value);
        char *slot = (char *)limits + f->offset;

        if (!visit(w, value))
                return;
        if (f->kind == JS_FIELD_BOOL) {
                if (is_true(w->doc, v))
                        *(bool *)slot = true;
                else if (is_false(w->doc, v))
                        *(bool *)slot = false;
                else
                        error_at(w, value, &p, "expected true or false, got %s", describe(w->doc, v, got));
                return;
        }
        int64_t n = 0;
        if (!walk_number(w, f->kind, value, &p, &n))
                return;
        if (n == 0 && zero_means_unlimited(f)) {
                error_at(w, value, &p,
                         "expected %s above 0, got %s: 0 means unlimited to nats-server; write -1 or unlimited",
                         expected_kind[f->kind], describe(w->doc, v, got));
                return;
        }
        *(int64_t *)slot = n;
}

/* Both 0 is how nats-server spells "JetStream off"; a slip should not silently do that. */
static void check_not_off(struct walker *w, const struct js_limits *l, const struct ynode *js_node,
                          const struct path *p) {
        if (l->max_memory == 0 && l->max_store == 0)
                error_at(w, js_node, p,
                         "expected max_memory or max_store above 0, got both 0: that would switch JetStream off; "
                         "write `jetstream: disabled`");
}

/* The limits of a tier (tiers NULL), or of a jetstream mapping, whose `tiers` pair is handed back. */
static void walk_limits(struct walker *w, const struct pairs *ps, const struct path *p, struct js_limits *limits,
                        const struct pair **tiers, const struct ynode **first_flat) {
        char allowed[512];
        for (size_t i = 0; i < ps->n && !w->bomb; i++) {
                const struct ynode *k = ps->v[i].key;
                const struct js_field *f = field_find(w, k);
                if (f) {
                        if (first_flat && !*first_flat)
                                *first_flat = k;
                        const struct ynode *saved = alias_enter(w, ps->v[i].value);
                        walk_field(w, f, k, ps->v[i].value, p, limits);
                        alias_leave(w, saved);
                } else if (tiers && scalar_is(w->doc, k, "tiers")) {
                        *tiers = &ps->v[i];
                } else {
                        bool with_tiers = tiers && w->flavor == ACCOUNTS_OPERATOR;
                        unknown_key(w, k, p, fields_list(with_tiers, allowed, sizeof(allowed)));
                }
        }
}

/* A mapping of limits, or nothing for all of them unlimited: true with *ps
 * filled when there is a mapping to walk (the value already visited). */
static bool limits_mapping(struct walker *w, const struct ynode *value, const struct path *p, struct pairs *ps) {
        char got[TEXT_SIZE];
        const struct ynode *v = deref(w->doc, value);
        if (is_null(w->doc, v))
                return false;
        if (v->type != YNODE_MAPPING) {
                error_at(w, value, p, "expected a mapping of limits (or nothing for all unlimited), got %s",
                         describe(w->doc, v, got));
                return false;
        }
        flatten_mapping(w, v, p, "key", ps);
        return true;
}

static void walk_tier(struct walker *w, const struct ynode *key, const struct ynode *value, const struct path *parent,
                      const struct ynode *js_node, struct account_decl *a) {
        struct path p = path_child(w, parent, key);
        int t = -1;
        for (int i = 0; i < JS_TIERS; i++)
                if (scalar_is(w->doc, key, tier_names[i]))
                        t = i;
        if (t < 0) {
                error_at(w, key, &p, "expected one of R1, R2, R3, R4, R5, got an unknown tier");
                return;
        }
        if (!visit(w, value))
                return;
        a->tier_set[t] = true;
        struct pairs ps = { .doc = w->doc };
        if (!limits_mapping(w, value, &p, &ps))
                return;
        walk_limits(w, &ps, &p, &a->tiers[t], NULL, NULL);
        pairs_free(&ps);
        check_not_off(w, &a->tiers[t], js_node, &p);
}

static void walk_tiers(struct walker *w, const struct ynode *key, const struct ynode *value,
                       const struct path *parent, const struct ynode *js_node, struct account_decl *a) {
        char got[TEXT_SIZE];
        struct path p = path_child(w, parent, key);
        const struct ynode *v = deref(w->doc, value);
        if (!visit(w, value))
                return;
        if (v->type != YNODE_MAPPING) {
                error_at(w, value, &p, "expected a mapping of tiers R1..R5, got %s", describe(w->doc, v, got));
                return;
        }
        struct pairs ps = { .doc = w->doc };
        flatten_mapping(w, v, &p, "key", &ps);
        if (ps.n == 0)
                /* A tiered account without tiers has no JetStream at all on the servers. */
                error_at(w, value, &p,
                         "expected at least one tier R1..R5, got none: that would switch JetStream off; "
                         "write `jetstream: disabled`");
        for (size_t i = 0; i < ps.n && !w->bomb; i++) {
                const struct ynode *saved = alias_enter(w, ps.v[i].value);
                walk_tier(w, ps.v[i].key, ps.v[i].value, &p, js_node, a);
                alias_leave(w, saved);
        }
        pairs_free(&ps);
}

static void walk_jetstream(struct walker *w, const struct ynode *key, const struct ynode *value,
                           const struct path *parent, struct account_decl *a) {
        char got[TEXT_SIZE];
        struct path p = path_child(w, parent, key);
        const struct ynode *v = deref(w->doc, value);
        if (!visit(w, value))
                return;
        if (scalar_is(w->doc, v, "enabled") || is_true(w->doc, v)) {
                a->js = JS_ENABLED;
                return;
        }
        if (scalar_is(w->doc, v, "disabled") || is_false(w->doc, v)) {
                a->js = JS_DISABLED;
                return;
        }
        if (v->type != YNODE_MAPPING) {
                error_at(w, value, &p, "expected enabled, disabled or a mapping of limits, got %s",
                         describe(w->doc, v, got));
                return;
        }

        struct pairs ps = { .doc = w->doc };
        const struct pair *tiers = NULL;
        const struct ynode *first_flat = NULL;
        flatten_mapping(w, v, &p, "key", &ps);
        walk_limits(w, &ps, &p, &a->limits, &tiers, &first_flat);
        if (!tiers) {
                a->js = JS_ENABLED;
                check_not_off(w, &a->limits, value, &p);
                goto out;
        }
        struct path tp = path_child(w, &p, tiers->key);
        if (w->flavor == ACCOUNTS_CONFIG) {
                error_at(w, tiers->key, &tp, "expected flat limits, got tiers: tiers need operator mode");
                goto out;
        }
        if (first_flat) {
                error_at(w, tiers->key, &tp, "expected either flat limits or tiers, got both (%s at line %u)",
                         scalar_value(w->doc, first_flat), first_flat->line);
                goto out;
        }
        a->js = JS_TIERED;
        const struct ynode *saved = alias_enter(w, tiers->value);
        walk_tiers(w, tiers->key, tiers->value, &p, value, a);
        alias_leave(w, saved);
out:
        pairs_free(&ps);
}

static const struct acct_field *acct_field_find(const struct walker *w, const struct ynode *key) {
        for (size_t i = 0; i < acct_fields_count; i++)
                if (scalar_is(w->doc, key, acct_fields[i].name))
                        return &acct_fields[i];
        return NULL;
}

/* "max_connections, ..., max_exports", or only those config mode has, joined by sep (last_sep before the last). */
static const char *acct_fields_list(bool operator_mode, const char *sep, const char *last_sep, char *buf,
                                    size_t size) {
        size_t off = 0, n = 0, total = 0;
        buf[0] = 0;
        for (size_t i = 0; i < acct_fields_count; i++)
                total += operator_mode || !acct_fields[i].operator_only;
        for (size_t i = 0; i < acct_fields_count; i++) {
                if (!operator_mode && acct_fields[i].operator_only)
                        continue;
                if (n)
                        put(buf, size, &off, n + 1 == total ? last_sep : sep, strlen(n + 1 == total ? last_sep : sep));
                put(buf, size, &off, acct_fields[i].name, strlen(acct_fields[i].name));
                n++;
        }
        return buf;
}

static void walk_acct_field(struct walker *w, const struct acct_field *f, const struct ynode *key,
                            const struct ynode *value, const struct path *parent, struct acct_limits *limits) {
        char got[TEXT_SIZE], allowed[256];
        struct path p = path_child(w, parent, key);
        if (f->operator_only && w->flavor == ACCOUNTS_CONFIG) {
                error_at(w, key, &p, "expected %s in config mode, got %s: a limit of account JWTs, it needs operator mode",
                         acct_fields_list(false, ", ", " or ", allowed, sizeof(allowed)), f->name);
                return;
        }
        if (!visit(w, value))
                return;
        int64_t n = 0;
        if (!walk_number(w, f->kind, value, &p, &n))
                return;
        /* A larger value would reach the server cut to 32 bits: 4294967296 connections would be 0. */
        if (!f->wide && n > INT32_MAX) {
                error_at(w, value, &p, "expected %s of at most 2147483647%s, got %s: nats-server keeps this limit in 32 bits",
                         expected_kind[f->kind], f->kind == JS_FIELD_SIZE ? " bytes (2GiB - 1)" : "",
                         describe(w->doc, value, got));
                return;
        }
        acct_limits_set(limits, f, n);
}

/* `limits:` present: every field is enforced, an omitted one as unlimited. */
static void walk_acct_limits(struct walker *w, const struct ynode *key, const struct ynode *value,
                             const struct path *parent, struct account_decl *a) {
        char allowed[256];
        struct path p = path_child(w, parent, key);
        if (!visit(w, value))
                return;
        a->acct_managed = true;
        struct pairs ps = { .doc = w->doc };
        if (!limits_mapping(w, value, &p, &ps))
                return;
        for (size_t i = 0; i < ps.n && !w->bomb; i++) {
                const struct ynode *k = ps.v[i].key;
                const struct acct_field *f = acct_field_find(w, k);
                if (!f) {
                        unknown_key(w, k, &p, acct_fields_list(w->flavor == ACCOUNTS_OPERATOR, ", ", ", ", allowed,
                                                               sizeof(allowed)));
                        continue;
                }
                const struct ynode *saved = alias_enter(w, ps.v[i].value);
                walk_acct_field(w, f, k, ps.v[i].value, &p, &a->acct);
                alias_leave(w, saved);
        }
        pairs_free(&ps);
}

static void walk_key(struct walker *w, const struct ynode *key, const struct ynode *value, const struct path *parent,
                     struct account_decl *a, const struct ynode **key_node) {
        char got[TEXT_SIZE];
        struct path p = path_child(w, parent, key);
        const struct ynode *v = deref(w->doc, value);
        if (!visit(w, value))
                return;
        if (v->type != YNODE_SCALAR || is_null(w->doc, v)) {
                error_at(w, value, &p, "expected an account public key, got %s", describe(w->doc, v, got));
                return;
        }
        const char *why = "contains a NUL character";
        int r = -EINVAL;
        if (!scalar_has_nul(w->doc, v))
                r = nkey_public_decode(scalar_value(w->doc, v), NKEY_ACCOUNT, NULL, &why);
        if (r >= 0 && v->len != NKEY_PUBLIC_LEN) {
                r = -EINVAL;
                why = "wrong length";
        }
        if (r < 0) {
                error_at(w, value, &p, "not an account public key: %s", why);
                return;
        }
        memcpy(a->key, scalar_value(w->doc, v), NKEY_PUBLIC_LEN + 1);
        *key_node = value;
}

static void walk_account(struct walker *w, const struct ynode *name, const struct ynode *value,
                         const struct path *accounts_path, struct account_decl *a, const struct ynode **key_node) {
        char t[TEXT_SIZE], got[TEXT_SIZE];
        const char *why = "contains a NUL character";
        struct path p = path_child(w, NULL, name);
        const struct ynode *v = deref(w->doc, value);

        if (scalar_has_nul(w->doc, name) || !account_name_valid(scalar_value(w->doc, name), &why))
                error_at(w, name, accounts_path, "expected an account name, got %s: %s", quoted(w->doc, name, t), why);
        else
                memcpy(a->name, scalar_value(w->doc, name), name->len + 1);
        a->line = (int)name->line;
        a->column = (int)name->column;
        a->js = JS_UNMANAGED;
        js_limits_unlimited(&a->limits);
        for (int i = 0; i < JS_TIERS; i++)
                js_limits_unlimited(&a->tiers[i]);
        a->acct_managed = false;
        acct_limits_unlimited(&a->acct);

        if (!visit(w, value) || is_null(w->doc, v))
                return;
        if (v->type != YNODE_MAPPING) {
                error_at(w, value, &p, "expected a mapping with %sjetstream or limits, or nothing, got %s",
                         w->flavor == ACCOUNTS_OPERATOR ? "key, " : "", describe(w->doc, v, got));
                return;
        }
        struct pairs ps = { .doc = w->doc };
        flatten_mapping(w, v, &p, "key", &ps);
        for (size_t i = 0; i < ps.n && !w->bomb; i++) {
                const struct ynode *k = ps.v[i].key, *saved = alias_enter(w, ps.v[i].value);
                if (scalar_is(w->doc, k, "jetstream")) {
                        walk_jetstream(w, k, ps.v[i].value, &p, a);
                } else if (scalar_is(w->doc, k, "limits")) {
                        walk_acct_limits(w, k, ps.v[i].value, &p, a);
                } else if (scalar_is(w->doc, k, "key") && w->flavor == ACCOUNTS_OPERATOR) {
                        walk_key(w, k, ps.v[i].value, &p, a, key_node);
                } else if (scalar_is(w->doc, k, "key")) {
                        struct path kp = path_child(w, &p, k);
                        error_at(w, k, &kp,
                                 "expected jetstream or limits in config mode, got key: pinning a public key "
                                 "needs operator mode");
                } else {
                        unknown_key(w, k, &p,
                                    w->flavor == ACCOUNTS_OPERATOR ? "key, jetstream, limits" : "jetstream, limits");
                }
                alias_leave(w, saved);
        }
        pairs_free(&ps);
}

struct pin {
        const char *key;
        size_t account; /* index in document order */
        const struct ynode *node;
};

static int pin_cmp(const void *x, const void *y) {
        const struct pin *a = x, *b = y;
        int c = strcmp(a->key, b->key);
        if (c)
                return c;
        return a->account < b->account ? -1 : a->account > b->account;
}

struct pin_dup {
        size_t account, owner;
        const struct ynode *node;
};

static int pin_dup_cmp(const void *x, const void *y) {
        const struct pin_dup *a = x, *b = y;
        return a->account < b->account ? -1 : a->account > b->account;
}

/* Two declarations of one account under different names would fight over it forever. */
static void check_pins(struct walker *w, const struct account_decl *v, const struct ynode **key_nodes, size_t n) {
        struct pin *pins = xcalloc(n, sizeof(*pins));
        size_t np = 0;
        for (size_t i = 0; i < n; i++)
                if (key_nodes[i])
                        pins[np++] = (struct pin){ v[i].key, i, key_nodes[i] };
        qsort(pins, np, sizeof(*pins), pin_cmp);

        /* Sorted by key, then document order: each run's first entry keeps the key. */
        struct pin_dup *dups = xcalloc(np, sizeof(*dups));
        size_t nd = 0, first = 0;
        for (size_t i = 1; i < np; i++) {
                if (strcmp(pins[i].key, pins[first].key) != 0)
                        first = i;
                else
                        dups[nd++] = (struct pin_dup){ pins[i].account, pins[first].account, pins[i].node };
        }
        /* Reported in document order, like every other error. */
        qsort(dups, nd, sizeof(*dups), pin_dup_cmp);
        for (size_t i = 0; i < nd; i++) {
                const struct account_decl *a = &v[dups[i].account], *owner = &v[dups[i].owner];
                struct path ap = path_named(NULL, a->name), kp = path_named(&ap, "key");
                error_at(w, dups[i].node, &kp, "expected a key no other account pins, got the key of %s (line %d)",
                         owner->name, owner->line);
        }
        free(dups);
        free(pins);
}

static bool has_merge_key(const struct ydoc *doc, const struct ynode *map) {
        for (size_t i = 0; i < map->len; i++)
                if (is_merge_key(doc, deref(doc, kid(doc, map, 2 * i))))
                        return true;
        return false;
}

static void shape_note(struct walker *w, const struct ynode *map, const struct pairs *ps) {
        struct shape *sh = w->shape;
        sh->ok = sh->ok && map->block && !has_merge_key(w->doc, map) && ps->n > 0;
        if (!sh->ok)
                return;
        sh->lines = xcalloc(ps->n, sizeof(*sh->lines));
        sh->column = (int)ps->v[0].key->column;
        for (size_t i = 0; i < ps->n && sh->ok; i++) {
                const struct ynode *k = ps->v[i].key;
                sh->ok = k->plain && (int)k->column == sh->column && (i == 0 || k->line > sh->lines[i - 1]);
                sh->lines[i] = k->line;
        }
        sh->n = ps->n;
}

static void walk_accounts(struct walker *w, const struct ynode *key, const struct ynode *value,
                          struct accounts *out) {
        char got[TEXT_SIZE];
        struct path p = path_child(w, NULL, key);
        const struct ynode *v = deref(w->doc, value);
        if (!visit(w, value) || is_null(w->doc, v))
                return;
        if (v->type != YNODE_MAPPING) {
                error_at(w, value, &p, "expected a mapping of account names to accounts, got %s",
                         describe(w->doc, v, got));
                return;
        }
        struct pairs ps = { .doc = w->doc };
        flatten_mapping(w, v, &p, "account", &ps);
        if (ps.n > ACCOUNTS_MAX) {
                error_at(w, value, &p, "expected at most %d accounts, got %zu", ACCOUNTS_MAX, ps.n);
                goto out;
        }
        if (w->shape)
                shape_note(w, v, &ps);
        out->v = xcalloc(ps.n, sizeof(*out->v));
        const struct ynode **key_nodes = xcalloc(ps.n, sizeof(*key_nodes));
        for (size_t i = 0; i < ps.n && !w->bomb; i++) {
                const struct ynode *saved = alias_enter(w, ps.v[i].value);
                walk_account(w, ps.v[i].key, ps.v[i].value, &p, &out->v[out->n], &key_nodes[out->n]);
                alias_leave(w, saved);
                out->n++;
        }
        if (!w->bomb)
                check_pins(w, out->v, key_nodes, out->n);
        free(key_nodes);
out:
        pairs_free(&ps);
}

static void walk_root(struct walker *w, struct accounts *out) {
        char got[TEXT_SIZE];
        if (!w->doc->has_root) {
                error_at_line(w, 1, 1, NULL, "expected a mapping with `accounts:`, got an empty file");
                return;
        }
        const struct ynode *root = &w->doc->nodes[w->doc->root];
        if (!visit(w, root))
                return;
        if (root->type != YNODE_MAPPING) {
                error_at(w, root, NULL, "expected a mapping with `accounts:`, got %s", describe(w->doc, root, got));
                return;
        }
        struct pairs ps = { .doc = w->doc };
        bool seen = false;
        if (w->shape)
                w->shape->ok = w->doc->n_aliases == 0 && w->doc->n_anchors == 0 && !has_merge_key(w->doc, root);
        flatten_mapping(w, root, NULL, "key", &ps);
        for (size_t i = 0; i < ps.n && !w->bomb; i++) {
                if (scalar_is(w->doc, ps.v[i].key, "accounts")) {
                        const struct ynode *saved = alias_enter(w, ps.v[i].value);
                        seen = true;
                        walk_accounts(w, ps.v[i].key, ps.v[i].value, out);
                        alias_leave(w, saved);
                } else {
                        unknown_key(w, ps.v[i].key, NULL, "accounts");
                }
        }
        if (!seen)
                error_at(w, root, NULL, "expected a mapping with `accounts:`, got a mapping without it");
        pairs_free(&ps);
}

static int decl_cmp(const void *x, const void *y) {
        const struct account_decl *a = x, *b = y;
        return strcmp(a->name, b->name);
}

static void report_too_large(struct diag_list *d, const char *filename) {
        diag_add(d, filename, 0, 0, "larger than %u bytes (%u MiB), the limit for an accounts file",
                 ACCOUNTS_FILE_MAX_SIZE, ACCOUNTS_FILE_MAX_SIZE / (1024 * 1024));
}

static int parse(const char *buf, size_t len, const char *filename, enum accounts_flavor flavor,
                 struct accounts **out, struct diag_list *d, struct shape *shape) {
        struct ydoc doc = { 0 };
        *out = NULL;
        if (!filename)
                filename = "";
        if (len > ACCOUNTS_FILE_MAX_SIZE) {
                report_too_large(d, filename);
                return -EFBIG;
        }
        int r = doc_load(&doc, buf ? buf : "", buf ? len : 0, filename, d);
        if (r < 0) {
                doc_free(&doc);
                return r;
        }

        struct walker w = {
                .doc = &doc,
                .file = filename,
                .flavor = flavor,
                .d = d,
                .budget = 16 * (doc.n_nodes - doc.n_aliases) + 10000,
                .shape = shape,
        };
        struct accounts *a = xcalloc(1, sizeof(*a));
        walk_root(&w, a);
        if (doc.second_line)
                error_at_line(&w, doc.second_line, doc.second_column, NULL,
                              "expected one YAML document, got a second one");
        doc_free(&doc);

        if (w.errors > 0 || w.bomb) {
                accounts_free(a);
                return -EINVAL;
        }
        if (a->n)
                qsort(a->v, a->n, sizeof(*a->v), decl_cmp);
        a->file = xstrdup(filename);
        *out = a;
        return 0;
}

int accounts_parse(const char *buf, size_t len, const char *filename, enum accounts_flavor flavor,
                   struct accounts **out, struct diag_list *d) {
        return parse(buf, len, filename, flavor, out, d, NULL);
}

/* The file's text, bounded; one diag naming the file when it cannot be had. */
static int read_file(const char *path, char *reuse, char **buf, size_t *len, struct diag_list *d) {
        int r = file_read_reuse(path, ACCOUNTS_FILE_MAX_SIZE, reuse, buf, len);
        if (r == -EFBIG)
                report_too_large(d, path);
        else if (r < 0)
                diag_add(d, path, 0, 0, "cannot read: %s", file_read_error(r));
        return r;
}

int accounts_load(const char *path, enum accounts_flavor flavor, struct accounts **out, struct diag_list *d) {
        char *buf = NULL;
        size_t len = 0;
        *out = NULL;
        int r = read_file(path, NULL, &buf, &len, d);
        if (r < 0)
                return r;
        r = accounts_parse(buf, len, path, flavor, out, d);
        free(buf);
        return r;
}

/* ---- re-reading only what an edit changed ---- */

/* An account of a file whose declarations were shed (accounts_shed): what an
 * edit needs to know of it without its declaration. */
struct shed_decl {
        uint32_t name; /* offset in the pool */
        uint32_t key;  /* offset + 1 in the pool of the key it pins; 0: none */
        uint32_t pos;  /* in file order */
        int32_t line;  /* of its name (the column is the source's) */
};

struct accounts_source {
        char *text;
        size_t len;
        int column;    /* of the account names */
        size_t n;      /* accounts, in file order: */
        size_t *start; /* offset of the line with its name */
        size_t *index; /* its declaration in accounts.v, or its entry in shed */
        enum accounts_flavor flavor;
        /* With the declarations shed (accounts.v NULL): one entry per account
         * in name order, their names and pinned keys in one pool. */
        struct shed_decl *shed;
        char *pool;
        size_t pool_len, pool_cap;
};

/* The text of the file before the last read, kept for the next read: an
 * edit's re-read then goes into pages already in memory, not fresh ones each
 * faulted in (10 MB at 100,000 accounts: a few ms of every edit). One block,
 * the larger of the two when another is let go. */
static char *spare_text;
static pthread_mutex_t spare_lock = PTHREAD_MUTEX_INITIALIZER;

static void text_retire(char *text) {
        if (!text)
                return;
        pthread_mutex_lock(&spare_lock);
        if (!spare_text || malloc_usable_size(text) > malloc_usable_size(spare_text)) {
                char *old = spare_text;
                spare_text = text;
                text = old;
        }
        pthread_mutex_unlock(&spare_lock);
        free(text);
}

static char *text_take_spare(void) {
        pthread_mutex_lock(&spare_lock);
        char *t = spare_text;
        spare_text = NULL;
        pthread_mutex_unlock(&spare_lock);
        return t;
}

static void source_free(struct accounts_source *src) {
        if (!src)
                return;
        text_retire(src->text);
        free(src->start);
        free(src->index);
        free(src->shed);
        free(src->pool);
        free(src);
}

/* libyaml also breaks lines at \r, NEL, LS and PS: with those in the text, its
 * line numbers and a count of '\n' would part. */
static bool only_newline_breaks(const char *s, size_t len) {
        if (memchr(s, '\r', len))
                return false;
        const char *end = s + len;
        for (const char *p = s; (p = memchr(p, 0xc2, (size_t)(end - p))) != NULL; p++)
                if (p + 1 < end && (unsigned char)p[1] == 0x85)
                        return false;
        for (const char *p = s; (p = memchr(p, 0xe2, (size_t)(end - p))) != NULL; p++)
                if (p + 2 < end && (unsigned char)p[1] == 0x80 &&
                    ((unsigned char)p[2] == 0xa8 || (unsigned char)p[2] == 0xa9))
                        return false;
        return true;
}

/* A line that starts with --- or ... may end the document (conservatively: any such line). */
static bool has_document_marker(const char *s, size_t len) {
        for (size_t off = 0; off < len;) {
                if (len - off >= 3 && (memcmp(s + off, "---", 3) == 0 || memcmp(s + off, "...", 3) == 0))
                        return true;
                const char *nl = memchr(s + off, '\n', len - off);
                if (!nl)
                        break;
                off = (size_t)(nl - s) + 1;
        }
        return false;
}

static size_t count_newlines(const char *s, size_t len) {
        size_t n = 0;
        for (const char *p = s, *end = s + len; (p = memchr(p, '\n', (size_t)(end - p))) != NULL; p++)
                n++;
        return n;
}

/* Offsets of the given lines (1-based, rising) in s, each of which must start
 * with column - 1 spaces and then the name. */
static bool line_offsets(const char *s, size_t len, const uint32_t *lines, size_t n, int column, size_t *out) {
        size_t off = 0;
        uint32_t line = 1;
        for (size_t i = 0; i < n; i++) {
                for (; line < lines[i]; line++) {
                        const char *nl = memchr(s + off, '\n', len - off);
                        if (!nl)
                                return false;
                        off = (size_t)(nl - s) + 1;
                }
                if (column < 1 || len - off < (size_t)column)
                        return false;
                for (int c = 0; c < column - 1; c++)
                        if (s[off + c] != ' ')
                                return false;
                out[i] = off;
        }
        return true;
}

struct line_index {
        int line;
        size_t index;
};

static int line_index_cmp(const void *x, const void *y) {
        const struct line_index *a = x, *b = y;
        return (a->line > b->line) - (a->line < b->line);
}

/* For each account in file order (shape order), its index in a->v (sorted by name). */
static void file_order(const struct accounts *a, size_t *out) {
        struct line_index *v = xcalloc(a->n ? a->n : 1, sizeof(*v));
        for (size_t i = 0; i < a->n; i++)
                v[i] = (struct line_index){ a->v[i].line, i };
        qsort(v, a->n, sizeof(*v), line_index_cmp);
        for (size_t i = 0; i < a->n; i++)
                out[i] = v[i].index;
        free(v);
}

/* Remember the text and where each account starts, when the shape allows it; takes text. */
static void source_attach(struct accounts *a, char *text, size_t len, const struct shape *sh,
                          enum accounts_flavor flavor) {
        struct accounts_source *src = NULL;
        if (sh->ok && sh->n == a->n && a->n > 0 && only_newline_breaks(text, len)) {
                src = xcalloc(1, sizeof(*src));
                src->start = xcalloc(a->n, sizeof(*src->start));
                src->index = xcalloc(a->n, sizeof(*src->index));
                if (line_offsets(text, len, sh->lines, sh->n, sh->column, src->start)) {
                        file_order(a, src->index);
                        src->text = text;
                        src->len = len;
                        src->column = sh->column;
                        src->n = a->n;
                        src->flavor = flavor;
                        a->src = src;
                        return;
                }
                source_free(src);
        }
        free(text);
}

/* The last account whose text starts at or before off. */
static size_t account_at(const struct accounts_source *src, size_t off) {
        size_t lo = 0, hi = src->n;
        while (hi - lo > 1) {
                size_t mid = lo + (hi - lo) / 2;
                if (src->start[mid] <= off)
                        lo = mid;
                else
                        hi = mid;
        }
        return lo;
}

/* The same text again: old's declarations are the answer; the result takes them over. */
static struct accounts *take_unchanged(struct accounts *old, char *text, const char *filename) {
        struct accounts *a = xcalloc(1, sizeof(*a));
        a->v = old->v;
        a->n = old->n;
        a->src = old->src;
        text_retire(a->src->text);
        a->src->text = text;
        a->file = xstrdup(filename);
        old->v = NULL;
        old->n = 0;
        old->src = NULL;
        return a;
}

/* The edited accounts parsed alone, behind old's own header so that their
 * lines and column come out as in the whole file. */
struct part {
        struct accounts *a;
        struct shape sh;
        size_t *start; /* in the new text */
        size_t *order; /* file order -> index in a->v */
};

static void part_free(struct part *pt) {
        accounts_free(pt->a);
        free(pt->sh.lines);
        free(pt->start);
        free(pt->order);
}

static bool part_parse(const struct accounts_source *os, const char *region, size_t rlen, size_t rstart,
                       const char *filename, enum accounts_flavor flavor, struct part *pt) {
        size_t header = os->start[0];
        if (!only_newline_breaks(region, rlen) || has_document_marker(region, rlen))
                return false;
        char *text = xmalloc(header + rlen + 1);
        memcpy(text, os->text, header);
        memcpy(text + header, region, rlen);
        text[header + rlen] = 0;
        struct diag_list scratch = { 0 };
        int r = parse(text, header + rlen, filename, flavor, &pt->a, &scratch, &pt->sh);
        diag_list_clear(&scratch);
        bool ok = r == 0 && pt->sh.ok && pt->sh.n == pt->a->n && pt->a->n > 0 && pt->sh.column == os->column;
        if (ok) {
                pt->start = xcalloc(pt->a->n, sizeof(*pt->start));
                pt->order = xcalloc(pt->a->n, sizeof(*pt->order));
                ok = line_offsets(text, header + rlen, pt->sh.lines, pt->sh.n, pt->sh.column, pt->start);
                for (size_t i = 0; ok && i < pt->a->n; i++)
                        pt->start[i] = pt->start[i] - header + rstart;
                if (ok)
                        file_order(pt->a, pt->order);
        }
        free(text);
        return ok;
}

/* A key pinned by an edited account and by one kept from before: the whole
 * file's parse must report it. */
static bool pins_clash(const struct accounts *a, const bool *edited) {
        size_t pinned = 0;
        for (size_t i = 0; i < a->n; i++)
                pinned += edited[i] && a->v[i].key[0];
        if (pinned > 16)
                return true; /* not worth it: let the whole parse check them */
        for (size_t i = 0; i < a->n; i++) {
                if (!edited[i] || !a->v[i].key[0])
                        continue;
                for (size_t j = 0; j < a->n; j++)
                        if (j != i && strcmp(a->v[j].key, a->v[i].key) == 0)
                                return true;
        }
        return false;
}

/* The edit kept the accounts it touched (the same names, only other values or
 * lines): their declarations are replaced where they are, in old's own arrays,
 * which the result takes over. Not copying 10,000 declarations (5 MiB) is most
 * of what an edit's reload costs. NULL (old untouched) when the names are not
 * the same, or when a key is pinned twice. */
static struct accounts *reparse_in_place(struct accounts *old, char *text, size_t len, const char *filename,
                                         const struct part *pt, size_t first, int line_first, int line_shift_part,
                                         long line_shift_after, const bool *gone, struct accounts_delta *delta) {
        const struct accounts *p = pt->a;
        struct accounts_source *os = old->src;
        size_t *where = xcalloc(p->n ? p->n : 1, sizeof(*where));
        for (size_t j = 0; j < p->n; j++) {
                const struct account_decl *was = accounts_find(old, p->v[j].name);
                if (!was || !gone[was - old->v]) {
                        free(where);
                        return NULL;
                }
                where[j] = (size_t)(was - old->v);
        }
        /* A key the edit pins that a kept account pins too: the whole parse reports it. */
        for (size_t j = 0; j < p->n; j++) {
                if (!p->v[j].key[0])
                        continue;
                for (size_t i = 0; i < old->n; i++)
                        if (!gone[i] && strcmp(old->v[i].key, p->v[j].key) == 0) {
                                free(where);
                                return NULL;
                        }
        }
        /* Distinct names (the part parsed), each among the as many replaced: the same set. */
        delta->partial = true;
        delta->changed = xcalloc(p->n ? p->n : 1, sizeof(*delta->changed));
        for (size_t j = 0; j < p->n; j++) {
                struct account_decl *d = &old->v[where[j]];
                if (!account_decl_equal(d, &p->v[j]))
                        delta->changed[delta->n++] = where[j];
                *d = p->v[j];
                d->line += line_shift_part;
        }
        if (line_shift_after)
                for (size_t i = 0; i < old->n; i++)
                        if (!gone[i] && old->v[i].line > line_first)
                                old->v[i].line += (int)line_shift_after;
        for (size_t k = 0; k < p->n; k++) {
                os->start[first + k] = pt->start[k];
                os->index[first + k] = where[pt->order[k]];
        }
        for (size_t b = first + p->n; b < os->n && len != os->len; b++)
                os->start[b] = os->start[b] - os->len + len;
        free(where);
        text_retire(os->text);
        os->text = text;
        os->len = len;

        struct accounts *a = xcalloc(1, sizeof(*a));
        a->v = old->v;
        a->n = old->n;
        a->src = os;
        a->file = xstrdup(filename);
        old->v = NULL;
        old->n = 0;
        old->src = NULL;
        return a;
}

/* The new text differs from old's only inside whole accounts (first..last in
 * file order): parse those alone and take every other declaration from old.
 * NULL when that cannot be shown; the caller then parses the whole text.
 * Takes text on success. */
/* Where text differs from the text os was read from: os->text[rstart,
 * rend_old) became text[rstart, rend), and the accounts first..last of os
 * hold that span. */
struct changed_span {
        size_t first, last, rstart, rend_old, rend;
};

/* 1: no difference; 0: *sp is the span; -1: the header (anything before the
 * first account's line) changed, which changes everything. */
static int changed_span(const struct accounts_source *os, const char *text, size_t len, struct changed_span *sp) {
        size_t olen = os->len, min = olen < len ? olen : len, pre = 0, suf = 0;
        /* memcmp a block at a time, then byte by byte within the differing block. */
        enum { BLOCK = 4096 };
        while (min - pre >= BLOCK && memcmp(os->text + pre, text + pre, BLOCK) == 0)
                pre += BLOCK;
        while (pre < min && os->text[pre] == text[pre])
                pre++;
        if (pre == olen && pre == len)
                return 1;
        while (min - pre - suf >= BLOCK && memcmp(os->text + olen - suf - BLOCK, text + len - suf - BLOCK, BLOCK) == 0)
                suf += BLOCK;
        while (suf < min - pre && os->text[olen - 1 - suf] == text[len - 1 - suf])
                suf++;
        if (pre <= os->start[0])
                return -1;
        /* From the account holding the last unchanged byte to the one holding
         * the first byte of the unchanged tail. */
        sp->first = account_at(os, pre - 1);
        sp->last = olen - suf == olen ? os->n - 1 : account_at(os, olen - suf);
        sp->rstart = os->start[sp->first];
        sp->rend_old = sp->last + 1 < os->n ? os->start[sp->last + 1] : olen;
        sp->rend = len - (olen - sp->rend_old);
        return 0;
}

static struct accounts *reparse(struct accounts *old, char *text, size_t len, const char *filename,
                                enum accounts_flavor flavor, struct accounts_delta *delta) {
        struct accounts_source *os = old->src;
        size_t olen = os->len;
        struct changed_span sp;
        int kind = changed_span(os, text, len, &sp);
        if (kind > 0) {
                delta->partial = true;
                return take_unchanged(old, text, filename);
        }
        if (kind < 0)
                return NULL;
        size_t first = sp.first, last = sp.last, rstart = sp.rstart, rend_old = sp.rend_old, rend = sp.rend;

        struct part pt = { 0 };
        if (!part_parse(os, text + rstart, rend - rstart, rstart, filename, flavor, &pt)) {
                part_free(&pt);
                return NULL;
        }

        const struct accounts *p = pt.a;
        size_t dropped = last - first + 1, n = old->n - dropped + p->n;
        int line_first = old->v[os->index[first]].line, line_shift_part = line_first - old->v[os->index[0]].line;
        long line_shift_after = (long)count_newlines(text + rstart, rend - rstart) -
                                (long)count_newlines(os->text + rstart, rend_old - rstart);
        bool *gone = xcalloc(old->n, sizeof(*gone));
        for (size_t k = first; k <= last; k++)
                gone[os->index[k]] = true;
        struct accounts *a = NULL;
        if (p->n == dropped && (a = reparse_in_place(old, text, len, filename, &pt, first, line_first,
                                                      line_shift_part, line_shift_after, gone, delta)) != NULL) {
                free(gone);
                part_free(&pt);
                return a;
        }
        a = xcalloc(1, sizeof(*a));
        a->v = xcalloc(n, sizeof(*a->v));
        bool *edited = xcalloc(n, sizeof(*edited));
        size_t *map_old = xcalloc(old->n, sizeof(*map_old)), *map_part = xcalloc(p->n, sizeof(*map_part));
        bool ok = n <= ACCOUNTS_MAX;
        /* Both are sorted by name: merge them. A name in both is a duplicate
         * account, which the whole parse must report. */
        for (size_t i = 0, j = 0; ok && (i < old->n || j < p->n);) {
                if (i < old->n && gone[i]) {
                        i++;
                        continue;
                }
                int c = i >= old->n ? 1 : j >= p->n ? -1 : strcmp(old->v[i].name, p->v[j].name);
                if (c == 0) {
                        ok = false;
                } else if (c < 0) {
                        a->v[a->n] = old->v[i];
                        if (a->v[a->n].line > line_first)
                                a->v[a->n].line += (int)line_shift_after;
                        map_old[i++] = a->n++;
                } else {
                        a->v[a->n] = p->v[j];
                        a->v[a->n].line += line_shift_part;
                        edited[a->n] = true;
                        map_part[j++] = a->n++;
                }
        }
        ok = ok && !pins_clash(a, edited);
        if (ok) {
                struct accounts_source *src = xcalloc(1, sizeof(*src));
                src->len = len;
                src->column = os->column;
                src->flavor = os->flavor;
                src->n = n;
                src->start = xcalloc(n, sizeof(*src->start));
                src->index = xcalloc(n, sizeof(*src->index));
                size_t k = 0;
                for (size_t b = 0; b < first; b++, k++) {
                        src->start[k] = os->start[b];
                        src->index[k] = map_old[os->index[b]];
                }
                for (size_t b = 0; b < p->n; b++, k++) {
                        src->start[k] = pt.start[b];
                        src->index[k] = map_part[pt.order[b]];
                }
                for (size_t b = last + 1; b < os->n; b++, k++) {
                        src->start[k] = os->start[b] - olen + len;
                        src->index[k] = map_old[os->index[b]];
                }
                src->text = text;
                a->src = src;
                a->file = xstrdup(filename);
                delta->partial = true;
                delta->changed = xcalloc(p->n, sizeof(*delta->changed));
                for (size_t j = 0; j < p->n; j++) {
                        const struct account_decl *was = accounts_find(old, p->v[j].name);
                        if (!was || !account_decl_equal(was, &p->v[j]))
                                delta->changed[delta->n++] = map_part[j];
                }
        } else {
                accounts_free(a);
                a = NULL;
        }
        free(gone);
        free(edited);
        free(map_old);
        free(map_part);
        part_free(&pt);
        return a;
}

/* ---- shed declarations: what the daemon keeps between passes ---- */

static uint32_t pool_add(struct accounts_source *src, const char *s) {
        return (uint32_t)strpool_add(&src->pool, &src->pool_len, &src->pool_cap, s);
}

static const char *shed_name(const struct accounts_source *src, const struct shed_decl *e) {
        return src->pool + e->name;
}

static const char *shed_key(const struct accounts_source *src, const struct shed_decl *e) {
        return e->key ? src->pool + e->key - 1 : "";
}

static void shed_set(struct accounts_source *src, struct shed_decl *e, const struct account_decl *d, uint32_t pos) {
        e->name = pool_add(src, d->name);
        e->key = d->key[0] ? pool_add(src, d->key) + 1 : 0;
        e->pos = pos;
        e->line = d->line;
}

bool accounts_shed(struct accounts *a) {
        if (!a || !a->src || !a->v || !a->n || a->n != a->src->n || a->src->len > UINT32_MAX / 2)
                return false;
        struct accounts_source *src = a->src;
        src->shed = xcalloc(a->n, sizeof(*src->shed));
        src->pool_len = 0;
        for (size_t pos = 0; pos < a->n; pos++) {
                size_t i = src->index[pos];
                shed_set(src, &src->shed[i], &a->v[i], (uint32_t)pos);
        }
        free(a->v);
        a->v = NULL;
        return true;
}

bool accounts_is_shed(const struct accounts *a) {
        return a && !a->v && a->n > 0;
}

const char *accounts_name(const struct accounts *a, size_t i) {
        if (i >= a->n)
                return NULL;
        return a->v ? a->v[i].name : shed_name(a->src, &a->src->shed[i]);
}

static const struct shed_decl *shed_find(const struct accounts_source *src, const char *name) {
        size_t lo = 0, hi = src->n;
        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                int c = strcmp(shed_name(src, &src->shed[mid]), name);
                if (c == 0)
                        return &src->shed[mid];
                if (c < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return NULL;
}

int accounts_expand(const struct accounts *a, struct accounts **out) {
        *out = NULL;
        struct diag_list d = { 0 };
        /* The text was read as a whole before: it parses the same again. */
        int r = parse(a->src->text, a->src->len, a->file, a->src->flavor, out, &d, NULL);
        diag_list_clear(&d);
        if (r == 0 && (*out)->n != a->n) {
                accounts_free(*out);
                *out = NULL;
                r = -EINVAL;
        }
        return r;
}

/* The text of the account at pos (file order), parsed alone behind the header. */
static int shed_parse_one(const struct accounts_source *src, size_t pos, const char *filename, struct part *pt) {
        size_t start = src->start[pos], end = pos + 1 < src->n ? src->start[pos + 1] : src->len;
        if (!part_parse(src, src->text + start, end - start, start, filename, src->flavor, pt) || pt->a->n != 1)
                return -EINVAL;
        return 0;
}

int accounts_get(const struct accounts *a, const char *name, struct account_decl *out) {
        if (a->v) {
                const struct account_decl *d = accounts_find(a, name);
                if (!d)
                        return -ENOENT;
                *out = *d;
                return 0;
        }
        if (!a->n || !name)
                return -ENOENT;
        const struct shed_decl *e = shed_find(a->src, name);
        if (!e)
                return -ENOENT;
        struct part pt = { 0 };
        int r = shed_parse_one(a->src, e->pos, a->file, &pt);
        if (r == 0 && strcmp(pt.a->v[0].name, name) != 0)
                r = -EINVAL;
        if (r == 0) {
                *out = pt.a->v[0];
                out->line = e->line;
        }
        part_free(&pt);
        return r;
}

/* reparse for a file whose declarations were shed: the edited accounts are
 * parsed alone, as there, and so is their text before the edit, which tells
 * which of them differ; every other account keeps its entry. */
static struct accounts *reparse_shed(struct accounts *old, char *text, size_t len, const char *filename,
                                     enum accounts_flavor flavor, struct accounts_delta *delta) {
        struct accounts_source *os = old->src;
        size_t olen = os->len;
        if (flavor != os->flavor || len > UINT32_MAX / 2)
                return NULL;
        struct changed_span sp;
        int kind = changed_span(os, text, len, &sp);
        if (kind > 0) {
                delta->partial = true;
                return take_unchanged(old, text, filename);
        }
        if (kind < 0)
                return NULL;
        size_t first = sp.first, last = sp.last, rstart = sp.rstart, rend_old = sp.rend_old, rend = sp.rend;
        size_t dropped = last - first + 1;

        struct part pt = { 0 }, was = { 0 };
        struct accounts *a = NULL;
        bool *edited = NULL;
        if (!part_parse(os, text + rstart, rend - rstart, rstart, filename, flavor, &pt) ||
            !part_parse(os, os->text + rstart, rend_old - rstart, rstart, filename, flavor, &was) ||
            was.a->n != dropped || os->n - dropped + pt.a->n > ACCOUNTS_MAX)
                goto out;
        const struct accounts *p = pt.a;
        int line_first = os->shed[os->index[first]].line, line_shift_part = line_first - os->shed[os->index[0]].line;
        long line_shift_after = (long)count_newlines(text + rstart, rend - rstart) -
                                (long)count_newlines(os->text + rstart, rend_old - rstart);
        /* A name the edit brings that an account outside it has: a duplicate;
         * a key it pins that one outside pins too. The whole parse reports them. */
        size_t same = 0;
        for (size_t j = 0; j < p->n; j++) {
                const struct shed_decl *e = shed_find(os, p->v[j].name);
                if (e && (e->pos < first || e->pos > last))
                        goto out;
                same += e != NULL;
        }
        for (size_t j = 0; j < p->n; j++) {
                if (!p->v[j].key[0])
                        continue;
                for (size_t i = 0; i < os->n; i++) {
                        const struct shed_decl *e = &os->shed[i];
                        if (e->key && (e->pos < first || e->pos > last) && strcmp(shed_key(os, e), p->v[j].key) == 0)
                                goto out;
                }
        }
        edited = xcalloc(p->n ? p->n : 1, sizeof(*edited));
        for (size_t j = 0; j < p->n; j++) {
                const struct account_decl *before = accounts_find(was.a, p->v[j].name);
                edited[j] = !before || !account_decl_equal(before, &p->v[j]);
        }
        if (same == p->n && p->n == dropped) {
                /* The same accounts, other values or lines: their entries in place. */
                for (size_t k = 0; k < p->n; k++) {
                        const struct account_decl *d = &p->v[pt.order[k]];
                        struct shed_decl *e = (struct shed_decl *)shed_find(os, d->name);
                        size_t i = (size_t)(e - os->shed);
                        if (strcmp(shed_key(os, e), d->key) != 0)
                                e->key = d->key[0] ? pool_add(os, d->key) + 1 : 0;
                        e->pos = (uint32_t)(first + k);
                        e->line = d->line + line_shift_part;
                        os->start[first + k] = pt.start[k];
                        os->index[first + k] = i;
                }
                for (size_t i = 0; line_shift_after && i < os->n; i++)
                        if ((os->shed[i].pos < first || os->shed[i].pos > last) && os->shed[i].line > line_first)
                                os->shed[i].line += (int32_t)line_shift_after;
                for (size_t b = last + 1; b < os->n && len != olen; b++)
                        os->start[b] = os->start[b] - olen + len;
                delta->partial = true;
                delta->changed = xcalloc(p->n ? p->n : 1, sizeof(*delta->changed));
                for (size_t j = 0; j < p->n; j++)
                        if (edited[j])
                                delta->changed[delta->n++] = (size_t)(shed_find(os, p->v[j].name) - os->shed);
                text_retire(os->text);
                os->text = text;
                os->len = len;
                a = xcalloc(1, sizeof(*a));
                a->n = old->n;
                a->src = os;
                a->file = xstrdup(filename);
                old->n = 0;
                old->src = NULL;
                goto out;
        }
        /* Accounts added or removed: the entries anew, merged by name. */
        size_t n = os->n - dropped + p->n;
        struct accounts_source *src = xcalloc(1, sizeof(*src));
        src->len = len;
        src->column = os->column;
        src->flavor = os->flavor;
        src->n = n;
        src->start = xcalloc(n, sizeof(*src->start));
        src->index = xcalloc(n, sizeof(*src->index));
        src->shed = xcalloc(n, sizeof(*src->shed));
        size_t *part_pos = xcalloc(p->n ? p->n : 1, sizeof(*part_pos)); /* index in p->v -> file order */
        for (size_t k = 0; k < p->n; k++)
                part_pos[pt.order[k]] = first + k;
        delta->changed = xcalloc(p->n ? p->n : 1, sizeof(*delta->changed));
        size_t k = 0;
        for (size_t i = 0, j = 0; i < os->n || j < p->n;) {
                const struct shed_decl *e = i < os->n ? &os->shed[i] : NULL;
                if (e && e->pos >= first && e->pos <= last) {
                        i++;
                        continue;
                }
                if (e && (j >= p->n || strcmp(shed_name(os, e), p->v[j].name) < 0)) {
                        struct shed_decl *to = &src->shed[k];
                        to->name = pool_add(src, shed_name(os, e));
                        to->key = e->key ? pool_add(src, shed_key(os, e)) + 1 : 0;
                        to->pos = e->pos < first ? e->pos : (uint32_t)(e->pos - dropped + p->n);
                        to->line = e->line > line_first ? e->line + (int32_t)line_shift_after : e->line;
                        i++;
                } else {
                        struct account_decl d = p->v[j];
                        d.line += line_shift_part;
                        shed_set(src, &src->shed[k], &d, (uint32_t)part_pos[j]);
                        if (edited[j])
                                delta->changed[delta->n++] = k;
                        j++;
                }
                src->index[src->shed[k].pos] = k;
                k++;
        }
        for (size_t b = 0; b < n; b++)
                src->start[b] = b < first ? os->start[b]
                                : b < first + p->n ? pt.start[b - first]
                                                   : os->start[b - p->n + dropped] - olen + len;
        free(part_pos);
        src->text = text;
        delta->partial = true;
        a = xcalloc(1, sizeof(*a));
        a->n = n;
        a->src = src;
        a->file = xstrdup(filename);
out:
        free(edited);
        part_free(&pt);
        part_free(&was);
        return a;
}

/* Takes text (NUL-terminated, len bytes). */
static int update_from(char *text, size_t len, const char *filename, enum accounts_flavor flavor,
                       struct accounts *old, struct accounts **out, struct accounts_delta *delta,
                       struct diag_list *d) {
        if (old && old->src && !old->v && old->n &&
            (*out = reparse_shed(old, text, len, filename, flavor, delta)) != NULL)
                return 0;
        if (old && old->src && (old->v || !old->n) && (*out = reparse(old, text, len, filename, flavor, delta)) != NULL)
                return 0;
        struct shape sh = { 0 };
        int r = parse(text, len, filename, flavor, out, d, &sh);
        if (r == 0)
                source_attach(*out, text, len, &sh, flavor);
        else
                free(text);
        free(sh.lines);
        return r;
}

int accounts_load_update(const char *path, enum accounts_flavor flavor, struct accounts *old,
                         struct accounts **out, struct accounts_delta *delta, struct diag_list *d) {
        char *buf = NULL;
        size_t len = 0;
        *out = NULL;
        *delta = (struct accounts_delta){ 0 };
        /* Only the daemon's re-reads (an old file) keep texts to read into. */
        int r = read_file(path, old && old->src ? text_take_spare() : NULL, &buf, &len, d);
        if (r < 0)
                return r;
        return update_from(buf, len, path, flavor, old, out, delta, d);
}

int accounts_parse_update(const char *buf, size_t len, const char *filename, enum accounts_flavor flavor,
                          struct accounts *old, struct accounts **out, struct accounts_delta *delta,
                          struct diag_list *d) {
        *out = NULL;
        *delta = (struct accounts_delta){ 0 };
        if (!filename)
                filename = "";
        if (len > ACCOUNTS_FILE_MAX_SIZE) {
                report_too_large(d, filename);
                return -EFBIG;
        }
        char *text = xmalloc(len + 1);
        if (len)
                memcpy(text, buf, len);
        text[len] = 0;
        return update_from(text, len, filename, flavor, old, out, delta, d);
}

void accounts_delta_clear(struct accounts_delta *delta) {
        free(delta->changed);
        *delta = (struct accounts_delta){ 0 };
}

void accounts_free(struct accounts *a) {
        if (!a)
                return;
        source_free(a->src);
        free(a->file);
        free(a->v);
        free(a);
}

const struct account_decl *accounts_find(const struct accounts *a, const char *name) {
        if (!a || !name || a->n == 0 || !a->v)
                return NULL;
        struct account_decl key;
        size_t n = strlen(name);
        if (n > ACCOUNT_NAME_MAX)
                return NULL;
        memcpy(key.name, name, n + 1);
        return bsearch(&key, a->v, a->n, sizeof(*a->v), decl_cmp);
}

static bool limits_equal(const struct js_limits *x, const struct js_limits *y) {
        for (size_t i = 0; i < js_fields_count; i++) {
                const char *px = (const char *)x + js_fields[i].offset, *py = (const char *)y + js_fields[i].offset;
                if (js_fields[i].kind == JS_FIELD_BOOL ? *(const bool *)px != *(const bool *)py
                                                       : *(const int64_t *)px != *(const int64_t *)py)
                        return false;
        }
        return true;
}

static bool acct_limits_equal(const struct acct_limits *x, const struct acct_limits *y) {
        for (size_t i = 0; i < acct_fields_count; i++)
                if (acct_limits_get(x, &acct_fields[i]) != acct_limits_get(y, &acct_fields[i]))
                        return false;
        return true;
}

bool account_decl_equal(const struct account_decl *x, const struct account_decl *y) {
        if (strcmp(x->name, y->name) != 0 || strcmp(x->key, y->key) != 0 || x->js != y->js ||
            !limits_equal(&x->limits, &y->limits) || x->acct_managed != y->acct_managed ||
            !acct_limits_equal(&x->acct, &y->acct))
                return false;
        for (int i = 0; i < JS_TIERS; i++)
                if (x->tier_set[i] != y->tier_set[i] || !limits_equal(&x->tiers[i], &y->tiers[i]))
                        return false;
        return true;
}
