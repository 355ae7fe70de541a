#include "settings.h"

#include <assert.h>
#include <errno.h>
#include <ini.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "units.h"
#include "util.h"

/* Debian's libinih is built without INI_HANDLER_LINENO (neither ini.h nor
 * inih.pc turn it on), and defining it here would only break the ABI of the
 * handler. So lines are fed to inih one at a time by read_line(), which counts
 * them: whenever inih calls back, the line it works on is the last one handed
 * out. */

#define USEC_PER_SEC UINT64_C(1000000)
#define USEC_PER_MINUTE (60 * USEC_PER_SEC)

enum {
        SERVERS_MAX = 64,
        SHOW_MAX = 64, /* characters of user text quoted in a message */
        SHOW_SIZE = SHOW_MAX + 4,
};

struct parser;
struct setting;

struct setting {
        const char *section;
        const char *key;
        int (*parse)(struct parser *p, const struct setting *def, const char *value);
        size_t offset;        /* of the field in struct settings */
        const void *arg;      /* what the parser needs beyond the text */
        const char *fallback; /* the default, written as in the file; NULL = unset */
};

struct choice {
        const char *name;
        int value;
};

struct duration_range {
        uint64_t min, max; /* max 0 = no upper bound */
        bool zero_ok;
        const char *expect; /* the range in words, for messages */
};

static int parse_servers(struct parser *p, const struct setting *def, const char *value);
static int parse_path(struct parser *p, const struct setting *def, const char *value);
static int parse_optional_path(struct parser *p, const struct setting *def, const char *value);
static int parse_secret_path(struct parser *p, const struct setting *def, const char *value);
static int parse_duration(struct parser *p, const struct setting *def, const char *value);
static int parse_bool(struct parser *p, const struct setting *def, const char *value);
static int parse_choice(struct parser *p, const struct setting *def, const char *value);
static int parse_user(struct parser *p, const struct setting *def, const char *value);
static int parse_path_list(struct parser *p, const struct setting *def, const char *value);

/* parse_choice stores through an int. */
_Static_assert(sizeof(enum accounts_flavor) == sizeof(int), "enum accounts_flavor is not int-sized");
_Static_assert(sizeof(enum log_level) == sizeof(int), "enum log_level is not int-sized");
_Static_assert(sizeof(enum reload_route) == sizeof(int), "enum reload_route is not int-sized");

static const struct choice mode_choices[] = {
        { "operator", ACCOUNTS_OPERATOR },
        { "config", ACCOUNTS_CONFIG },
        { NULL, 0 },
};

static const struct choice reload_choices[] = {
        { "auto", RELOAD_AUTO },
        { "request", RELOAD_REQUEST },
        { "signal", RELOAD_SIGNAL },
        { "external", RELOAD_EXTERNAL },
        { NULL, 0 },
};

static const struct choice log_level_choices[] = {
        { "debug", LOG_LEVEL_DEBUG },
        { "info", LOG_LEVEL_INFO },
        { "notice", LOG_LEVEL_NOTICE },
        { "warning", LOG_LEVEL_WARNING },
        { "err", LOG_LEVEL_ERR },
        { NULL, 0 },
};

/* A request must be able to fail fast enough to keep the watchdog fed. */
static const struct duration_range request_timeout_range = {
        .min = 1,
        .max = 5 * USEC_PER_MINUTE,
        .expect = "more than 0 and at most 5m",
};

/* Each resync costs requests on every server; below a second it is a flood. */
static const struct duration_range resync_interval_range = {
        .min = USEC_PER_SEC,
        .zero_ok = true,
        .expect = "0 (off) or at least 1s",
};

static const char *const sections[] = { "nats", "accounts", "operator", "config", "daemon" };

#define FIELD(f) offsetof(struct settings, f)

/* A comma-separated list of paths: the text goes to the setting's field, the
 * resolved paths (NULL-terminated) and their count to these. */
struct path_list_fields {
        size_t list, count;
};
static const struct path_list_fields server_config_fields = { FIELD(server_configs), FIELD(n_server_configs) };
static const struct path_list_fields pid_file_fields = { FIELD(pid_files), FIELD(n_pid_files) };

static const struct setting settings_table[] = {
        { "nats", "servers", parse_servers, FIELD(servers), NULL, "nats://127.0.0.1:4222" },
        { "nats", "credentials", parse_secret_path, FIELD(credentials), NULL, NULL },
        { "nats", "user", parse_user, FIELD(user), NULL, NULL },
        { "nats", "password_file", parse_secret_path, FIELD(password_file), NULL, NULL },
        { "nats", "tls_ca", parse_optional_path, FIELD(tls_ca), NULL, NULL },
        { "nats", "tls_cert", parse_optional_path, FIELD(tls_cert), NULL, NULL },
        { "nats", "tls_key", parse_secret_path, FIELD(tls_key), NULL, NULL },
        { "nats", "request_timeout", parse_duration, FIELD(request_timeout_usec), &request_timeout_range, "2s" },
        { "accounts", "file", parse_path, FIELD(accounts_file), NULL, "accounts.yaml" },
        { "accounts", "mode", parse_choice, FIELD(mode), mode_choices, "operator" },
        { "accounts", "create_missing", parse_bool, FIELD(create_missing), NULL, "yes" },
        { "accounts", "state_dir", parse_path, FIELD(state_dir), NULL, "/var/lib/nats-accountd" },
        { "operator", "signing_key", parse_secret_path, FIELD(signing_key), NULL, NULL },
        { "config", "fragments_dir", parse_path, FIELD(fragments_dir), NULL, "/etc/nats-server/accounts.d" },
        { "config", "server_config", parse_path_list, FIELD(server_config), &server_config_fields,
          "/etc/nats-server/nats-server.conf" },
        { "config", "reload", parse_choice, FIELD(reload), reload_choices, "auto" },
        { "config", "pid_file", parse_path_list, FIELD(pid_file), &pid_file_fields, NULL },
        { "daemon", "resync_interval", parse_duration, FIELD(resync_interval_usec), &resync_interval_range, "5m" },
        { "daemon", "log_level", parse_choice, FIELD(log_level), log_level_choices, "info" },
};

#define SETTINGS_COUNT ARRAY_SIZE(settings_table)

enum line_kind { LINE_BLANK, LINE_SECTION, LINE_KEY };
enum { SECTION_NONE = -1, SECTION_UNKNOWN = -2 };

struct parser {
        struct settings *s;
        struct diag_list *d;
        const char *file;
        const char *next; /* text not yet handed to inih */

        /* The line inih works on. */
        int line;
        enum line_kind kind;
        const char *text;
        size_t text_len;
        bool handled;     /* inih called back for it */
        char *long_value; /* its value, when the line did not fit inih's buffer */

        int section; /* index into sections[], or SECTION_* */
        unsigned errors;
        int seen[SETTINGS_COUNT]; /* line of each key, 0 = not in the file */
        bool failed[SETTINGS_COUNT];
};

static bool is_blank(char c) {
        return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

/* User text in a message: bounded, and without control characters that would
 * garble a terminal or the journal. */
static const char *show(const char *s, size_t len, char buf[static SHOW_SIZE]) {
        size_t n = len > SHOW_MAX ? SHOW_MAX : len;
        /* Do not cut a UTF-8 sequence in half. */
        if (n < len)
                while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
                        n--;
        for (size_t i = 0; i < n; i++)
                buf[i] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? '?' : s[i];
        strcpy(buf + n, n < len ? "..." : "");
        return buf;
}

__attribute__((format(printf, 3, 4))) static void error_at(struct parser *p, int line, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        diag_addv(p->d, p->file, line, 0, fmt, ap);
        va_end(ap);
        p->errors++;
}

static int bad_value(struct parser *p, const struct setting *def, const char *value, const char *expected) {
        char q[SHOW_SIZE];
        error_at(p, p->line, "%s: expected %s, got \"%s\"", def->key, expected, show(value, strlen(value), q));
        return -EINVAL;
}

static void *field_of(struct parser *p, const struct setting *def) {
        return (char *)p->s + def->offset;
}

static void replace_string(char **field, char *value) {
        free(*field);
        *field = value;
}

static void free_strv(char **v) {
        for (char **i = v; i && *i; i++)
                free(*i);
        free(v);
}

static const char *const url_schemes[] = { "nats://", "tls://", "ws://", "wss://" };

/* NULL when the URL will do, else what is wrong with it. */
static const char *url_problem(const char *url) {
        size_t scheme = 0;
        for (size_t i = 0; i < ARRAY_SIZE(url_schemes) && !scheme; i++)
                if (strncasecmp(url, url_schemes[i], strlen(url_schemes[i])) == 0)
                        scheme = strlen(url_schemes[i]);
        if (!scheme)
                return "must start with nats://, tls://, ws:// or wss://";
        for (const char *c = url; *c; c++)
                if ((unsigned char)*c <= ' ' || *c == 0x7f)
                        return "contains a space or control character";

        const char *host = url + scheme, *end = host + strcspn(host, "/?#"), *port;
        /* STATUS= and every log line name the server; a password there would leak. */
        if (memchr(host, '@', (size_t)(end - host)))
                return "contains a user name or password, which would end up in logs; use credentials = instead";
        if (*host == '[') {
                const char *close = memchr(host, ']', (size_t)(end - host));
                if (!close || close == host + 1)
                        return "has no host";
                port = close + 1;
        } else {
                port = memchr(host, ':', (size_t)(end - host));
                if (!port)
                        port = end;
                if (port == host)
                        return "has no host";
        }
        if (port == end)
                return NULL;
        if (*port != ':')
                return "has text after the host that is not a :port";
        unsigned long v = 0;
        const char *digit = port + 1;
        for (; digit < end && *digit >= '0' && *digit <= '9' && v <= 65535; digit++)
                v = v * 10 + (unsigned long)(*digit - '0');
        if (digit != end || digit == port + 1 || v == 0 || v > 65535)
                return "has an invalid port (expected 1-65535)";
        return NULL;
}

/* Writes servers, server_urls and n_servers together; def->offset is that of servers. */
static int parse_servers(struct parser *p, const struct setting *def, const char *value) {
        if (!*value)
                return bad_value(p, def, value, "a comma-separated list of nats://, tls://, ws:// or wss:// URLs");

        char *copy = xstrdup(value), q[SHOW_SIZE];
        char **urls = xcalloc(SERVERS_MAX + 1, sizeof(*urls));
        size_t n = 0;
        int r = 0;
        for (char *item = copy, *comma; item; item = comma ? comma + 1 : NULL) {
                comma = strchr(item, ',');
                if (comma)
                        *comma = 0;
                str_strip(item);
                const char *problem = *item ? url_problem(item) : NULL;
                if (!*item) {
                        error_at(p, p->line, "%s: empty entry in the list", def->key);
                        r = -EINVAL;
                } else if (problem) {
                        error_at(p, p->line, "%s: \"%s\" %s", def->key, show(item, strlen(item), q), problem);
                        r = -EINVAL;
                } else if (n == SERVERS_MAX) {
                        error_at(p, p->line, "%s: more than %d URLs", def->key, SERVERS_MAX);
                        r = -EINVAL;
                        break;
                } else {
                        urls[n++] = xstrdup(item);
                }
        }
        free(copy);
        if (r < 0) {
                free_strv(urls);
                return r;
        }
        replace_string(&p->s->servers, xstrdup(value));
        free_strv(p->s->server_urls);
        p->s->server_urls = urls;
        p->s->n_servers = n;
        return 0;
}

static int parse_path(struct parser *p, const struct setting *def, const char *value) {
        if (!*value)
                return bad_value(p, def, value, "a path");
        replace_string(field_of(p, def), path_join(p->s->dir, value));
        return 0;
}

/* comma-separated paths, each resolved like parse_path; empty = none. */
static int parse_path_list(struct parser *p, const struct setting *def, const char *value) {
        const struct path_list_fields *f = def->arg;
        char ***list = (char ***)(void *)((char *)p->s + f->list);
        size_t *count = (size_t *)(void *)((char *)p->s + f->count);
        char *copy = xstrdup(value), q[SHOW_SIZE];
        char **paths = xcalloc(1, sizeof(*paths));
        size_t n = 0;
        int r = 0;
        for (char *item = *copy ? copy : NULL, *comma; item; item = comma ? comma + 1 : NULL) {
                comma = strchr(item, ',');
                if (comma)
                        *comma = 0;
                str_strip(item);
                if (!*item) {
                        error_at(p, p->line, "%s: empty entry in the list", def->key);
                        r = -EINVAL;
                } else if (n == SERVERS_MAX) {
                        error_at(p, p->line, "%s: more than %d paths", def->key, SERVERS_MAX);
                        r = -EINVAL;
                        break;
                } else if (strpbrk(item, "\n\r\t")) {
                        error_at(p, p->line, "%s: \"%s\" contains a control character", def->key,
                                 show(item, strlen(item), q));
                        r = -EINVAL;
                } else {
                        paths = xreallocarray(paths, n + 2, sizeof(*paths));
                        paths[n++] = path_join(p->s->dir, item);
                        paths[n] = NULL;
                }
        }
        free(copy);
        if (r < 0) {
                free_strv(paths);
                return r;
        }
        replace_string(field_of(p, def), *value ? xstrdup(value) : NULL);
        free_strv(*list);
        *list = paths;
        *count = n;
        return 0;
}

/* A NATS user name: it goes into CONNECT, never into a URL. */
static int parse_user(struct parser *p, const struct setting *def, const char *value) {
        if (!*value) {
                replace_string(field_of(p, def), NULL);
                return 0;
        }
        for (const char *c = value; *c; c++)
                if ((unsigned char)*c <= ' ' || *c == 0x7f)
                        return bad_value(p, def, value, "a user name without spaces or control characters");
        replace_string(field_of(p, def), xstrdup(value));
        return 0;
}

/* Empty means none. */
static int parse_optional_path(struct parser *p, const struct setting *def, const char *value) {
        replace_string(field_of(p, def), *value ? path_join(p->s->dir, value) : NULL);
        return 0;
}

/* With LoadCredential=, systemd hands secrets over in $CREDENTIALS_DIRECTORY;
 * a bare name found there wins over the same name next to the settings file. */
static int parse_secret_path(struct parser *p, const struct setting *def, const char *value) {
        if (!*value) {
                replace_string(field_of(p, def), NULL);
                return 0;
        }
        const char *credentials_dir = secure_getenv("CREDENTIALS_DIRECTORY");
        bool bare = !strchr(value, '/') && !str_eq(value, ".") && !str_eq(value, "..");
        if (bare && credentials_dir && credentials_dir[0] == '/') {
                char *candidate = path_join(credentials_dir, value);
                if (access(candidate, F_OK) == 0) {
                        replace_string(field_of(p, def), candidate);
                        return 0;
                }
                free(candidate);
        }
        replace_string(field_of(p, def), path_join(p->s->dir, value));
        return 0;
}

static int parse_duration(struct parser *p, const struct setting *def, const char *value) {
        const struct duration_range *range = def->arg;
        const char *why;
        uint64_t usec;
        if (units_parse_duration(value, &usec, &why) < 0)
                return bad_value(p, def, value, "a duration such as 2s or 500ms");
        if ((usec == 0 && !range->zero_ok) || (usec > 0 && usec < range->min) || (range->max && usec > range->max)) {
                char q[SHOW_SIZE];
                error_at(p, p->line, "%s: must be %s, got \"%s\"", def->key, range->expect,
                         show(value, strlen(value), q));
                return -EINVAL;
        }
        *(uint64_t *)field_of(p, def) = usec;
        return 0;
}

static int parse_bool(struct parser *p, const struct setting *def, const char *value) {
        static const struct choice words[] = {
                { "yes", true }, { "no", false }, { "true", true }, { "false", false },
                { "on", true },  { "off", false }, { "1", true },    { "0", false },
        };
        for (size_t i = 0; i < ARRAY_SIZE(words); i++)
                if (strcasecmp(value, words[i].name) == 0) {
                        *(bool *)field_of(p, def) = words[i].value;
                        return 0;
                }
        return bad_value(p, def, value, "yes or no (also true/false, on/off, 1/0)");
}

static int parse_choice(struct parser *p, const struct setting *def, const char *value) {
        const struct choice *choices = def->arg;
        size_t n = 0;
        for (; choices[n].name; n++)
                if (strcasecmp(value, choices[n].name) == 0) {
                        *(int *)field_of(p, def) = choices[n].value;
                        return 0;
                }
        char *expected = xstrdup(n == 2 ? "" : "one of ");
        for (size_t i = 0; i < n; i++) {
                const char *sep = i == 0 ? "" : n == 2 ? " or " : ", ";
                char *next = xasprintf("%s%s%s", expected, sep, choices[i].name);
                free(expected);
                expected = next;
        }
        int r = bad_value(p, def, value, expected);
        free(expected);
        return r;
}

/* "[nats], [accounts], ..." */
static char *section_list(void) {
        char *list = xstrdup("");
        for (size_t i = 0; i < ARRAY_SIZE(sections); i++) {
                char *next = xasprintf("%s%s[%s]", list, i ? ", " : "", sections[i]);
                free(list);
                list = next;
        }
        return list;
}

/* "servers, credentials, ..." */
static char *key_list(const char *section) {
        char *list = xstrdup("");
        for (size_t i = 0; i < SETTINGS_COUNT; i++) {
                if (!str_eq(settings_table[i].section, section))
                        continue;
                char *next = xasprintf("%s%s%s", list, *list ? ", " : "", settings_table[i].key);
                free(list);
                list = next;
        }
        return list;
}

static const struct setting *find_setting(const char *section, const char *key) {
        for (size_t i = 0; i < SETTINGS_COUNT; i++)
                if ((!section || str_eq(settings_table[i].section, section)) && str_eq(settings_table[i].key, key))
                        return &settings_table[i];
        return NULL;
}

static size_t setting_index(size_t offset) {
        for (size_t i = 0; i < SETTINGS_COUNT; i++)
                if (settings_table[i].offset == offset)
                        return i;
        assert(!"no setting at this offset");
        return 0;
}

static int handle_key(void *userdata, const char *inih_section, const char *name, const char *value) {
        struct parser *p = userdata;
        char q[SHOW_SIZE];
        p->handled = true;
        if (p->long_value)
                value = p->long_value;
        /* Keys under an unknown header were reported with the header. */
        if (p->section == SECTION_UNKNOWN)
                return 1;
        if (!*name) {
                error_at(p, p->line, "expected a key name before `=`");
                return 1;
        }

        const char *section = p->section >= 0 ? sections[p->section] : NULL;
        const struct setting *def = section ? find_setting(section, name) : NULL;
        if (!def) {
                const struct setting *elsewhere = find_setting(NULL, name);
                char *hint = elsewhere ? xasprintf("; `%s` belongs in [%s]", elsewhere->key, elsewhere->section)
                                       : xstrdup("");
                if (!section) {
                        char *list = section_list();
                        error_at(p, p->line, "key `%s` is outside any section; sections are %s%s",
                                 show(name, strlen(name), q), list, hint);
                        free(list);
                } else {
                        char *list = key_list(section);
                        error_at(p, p->line, "unknown key `%s` in [%s]; expected one of %s%s",
                                 show(name, strlen(name), q), section, list, hint);
                        free(list);
                }
                free(hint);
                return 1;
        }

        size_t i = (size_t)(def - settings_table);
        if (p->seen[i]) {
                error_at(p, p->line, "duplicate key `%s` in [%s] (first at line %d)", def->key, def->section,
                         p->seen[i]);
                return 1;
        }
        p->seen[i] = p->line;
        if (def->parse(p, def, value) < 0)
                p->failed[i] = true;
        /* Errors are collected in p->d; a zero here would only make inih
         * report the line a second time. */
        return 1;
}

/* Where inih would see a separator (any of chars) or the start of an inline
 * comment (';' after whitespace); e when neither. */
static const char *find_chars_or_comment(const char *s, const char *e, const char *chars) {
        bool was_blank = false;
        for (; s < e; s++) {
                if (strchr(chars, *s) || (was_blank && *s == ';'))
                        return s;
                was_blank = is_blank(*s);
        }
        return e;
}

static void strip_range(const char **b, const char **e) {
        while (*b < *e && is_blank(**b))
                (*b)++;
        while (*e > *b && is_blank((*e)[-1]))
                (*e)--;
}

static int section_index(const char *name, size_t len) {
        for (size_t i = 0; i < ARRAY_SIZE(sections); i++)
                if (strlen(sections[i]) == len && memcmp(sections[i], name, len) == 0)
                        return (int)i;
        return SECTION_UNKNOWN;
}

static void section_header(struct parser *p, const char *b, const char *e) {
        char q[SHOW_SIZE];
        const char *close = find_chars_or_comment(b + 1, e, "]");
        const char *name = b + 1, *name_end = close;
        strip_range(&name, &name_end);
        size_t len = (size_t)(name_end - name);
        p->section = section_index(name, len);

        if (close == e || *close != ']') {
                /* "[nats" still says which section the keys below belong to;
                 * taking it avoids an error for each of them on top. */
                error_at(p, p->line, "expected `]` at the end of the section header");
                return;
        }
        const char *rest = close + 1;
        strip_range(&rest, &e);
        if (rest < e && *rest != ';' && *rest != '#')
                error_at(p, p->line, "unexpected `%s` after the section header", show(rest, (size_t)(e - rest), q));
        if (p->section == SECTION_UNKNOWN) {
                char *list = section_list();
                error_at(p, p->line, "unknown section [%s]; expected one of %s", show(name, len, q), list);
                free(list);
        }
}

/* inih called back for every key line it accepted; one it did not is a syntax error. */
static void finish_line(struct parser *p) {
        char q[SHOW_SIZE];
        if (p->kind == LINE_KEY && !p->handled)
                error_at(p, p->line, "expected `key = value`, got `%s`", show(p->text, p->text_len, q));
        p->kind = LINE_BLANK;
        free(p->long_value);
        p->long_value = NULL;
}

/* Returns buf holding s (n bytes) and a newline. The newline matters: newer
 * inih versions take a full buffer without one as the start of an overlong
 * line and read on to discard its rest. */
static char *hand_over(char *buf, const char *s, size_t n) {
        memmove(buf, s, n);
        buf[n] = '\n';
        buf[n + 1] = 0;
        return buf;
}

/* A line longer than inih's buffer (200 bytes in Debian's build; a few
 * servers make one) gets to inih as "name=" and its value is kept here. */
static char *long_key_line(struct parser *p, char *buf, size_t size, const char *b, const char *e) {
        const char *sep = find_chars_or_comment(b, e, "=:");
        if (sep == e || *sep == ';')
                return hand_over(buf, "", 0); /* no separator: finish_line reports it */
        const char *name_end = sep;
        strip_range(&b, &name_end);
        size_t name_len = (size_t)(name_end - b);
        if (name_len + 3 > size) {
                p->handled = true; /* reported here, not by finish_line */
                error_at(p, p->line, "key name longer than %zu characters", size - 3);
                return hand_over(buf, "", 0);
        }
        const char *value = sep + 1;
        const char *value_end = find_chars_or_comment(value, e, "");
        strip_range(&value, &value_end);
        p->long_value = xstrndup(value, (size_t)(value_end - value));
        memcpy(buf, b, name_len);
        buf[name_len] = '=';
        return hand_over(buf, buf, name_len + 1);
}

static char *read_line(char *buf, int size, void *userdata) {
        struct parser *p = userdata;
        finish_line(p);
        if (!*p->next)
                return NULL;
        const char *b = p->next, *nl = strchr(b, '\n');
        const char *e = nl ? nl : b + strlen(b);
        p->next = nl ? nl + 1 : e;
        p->line++;
        p->handled = false;

        if (p->line == 1 && (size_t)(e - b) >= 3 && memcmp(b, "\xef\xbb\xbf", 3) == 0)
                b += 3;
        /* Leading whitespace is dropped, so inih never takes an indented key
         * for the continuation of the previous value. */
        strip_range(&b, &e);
        p->text = b;
        p->text_len = (size_t)(e - b);

        if (b == e || *b == ';' || *b == '#')
                return hand_over(buf, "", 0);
        /* Sections are tracked here, not by inih: it truncates long names and
         * says nothing about a header without keys. */
        if (*b == '[') {
                p->kind = LINE_SECTION;
                section_header(p, b, e);
                return hand_over(buf, "", 0);
        }
        p->kind = LINE_KEY;
        if (p->text_len + 2 <= (size_t)size)
                return hand_over(buf, b, p->text_len);
        return long_key_line(p, buf, (size_t)size, b, e);
}

static char *settings_folder(const char *path) {
        char *dir = path_dirname(path);
        if (dir[0] == '/')
                return dir;
        /* Absolute, so that later chdir() or messages do not depend on where
         * the daemon was started. */
        char *cwd = getcwd(NULL, 0);
        if (!cwd)
                return dir;
        const char *rel = dir;
        while (str_startswith(rel, "./"))
                rel += 2;
        char *abs = str_eq(rel, ".") ? xstrdup(cwd) : path_join(cwd, rel);
        free(cwd);
        free(dir);
        return abs;
}

static void cross_check(struct parser *p) {
        const struct settings *s = p->s;
        size_t mode = setting_index(FIELD(mode)), signing_key = setting_index(FIELD(signing_key));
        size_t tls_cert = setting_index(FIELD(tls_cert)), tls_key = setting_index(FIELD(tls_key));

        if (!p->failed[mode] && s->mode == ACCOUNTS_OPERATOR && !s->signing_key)
                error_at(p, p->seen[signing_key], "[operator] signing_key is required in operator mode");
        if (s->tls_cert && !s->tls_key)
                error_at(p, p->seen[tls_cert], "[nats] tls_cert is set but tls_key is not; a client certificate needs both");
        if (s->tls_key && !s->tls_cert)
                error_at(p, p->seen[tls_key], "[nats] tls_key is set but tls_cert is not; a client certificate needs both");

        size_t user = setting_index(FIELD(user)), password_file = setting_index(FIELD(password_file));
        size_t credentials = setting_index(FIELD(credentials));
        if (s->user && !s->password_file)
                error_at(p, p->seen[user], "[nats] user is set but password_file is not; a password user needs both");
        if (s->password_file && !s->user)
                error_at(p, p->seen[password_file],
                         "[nats] password_file is set but user is not; a password user needs both");
        if (s->credentials && (s->user || s->password_file))
                error_at(p, p->seen[credentials],
                         "[nats] credentials and user/password_file are two ways to connect; keep one");
        if (!p->failed[mode] && s->mode == ACCOUNTS_OPERATOR && s->user)
                error_at(p, p->seen[user],
                         "[nats] user/password_file: operator mode servers need a .creds file (credentials =)");
        if (!p->failed[mode] && s->mode == ACCOUNTS_CONFIG && s->n_server_configs == 0)
                error_at(p, p->seen[setting_index(FIELD(server_config))],
                         "[config] server_config: config mode needs the nats-server config file(s)");

        /* Valid, but without effect in config mode: say so rather than ignore it silently. */
        size_t create_missing = setting_index(FIELD(create_missing));
        if (!p->failed[mode] && s->mode == ACCOUNTS_CONFIG && p->seen[create_missing])
                diag_add(&p->s->warnings, p->file, p->seen[create_missing], 0,
                         "create_missing is ignored in config mode: accounts are created in the server's config file");
        if (!p->failed[mode] && s->mode == ACCOUNTS_CONFIG && p->seen[signing_key])
                diag_add(&p->s->warnings, p->file, p->seen[signing_key], 0,
                         "signing_key is not used in config mode");
}

void settings_free(struct settings *s) {
        if (!s)
                return;
        free(s->path);
        free(s->dir);
        free(s->servers);
        free_strv(s->server_urls);
        free(s->credentials);
        free(s->user);
        free(s->password_file);
        free(s->tls_ca);
        free(s->tls_cert);
        free(s->tls_key);
        free(s->accounts_file);
        free(s->state_dir);
        free(s->signing_key);
        free(s->fragments_dir);
        free(s->server_config);
        free_strv(s->server_configs);
        free(s->pid_file);
        free_strv(s->pid_files);
        diag_list_clear(&s->warnings);
        free(s);
}

int settings_parse(const char *text, const char *path, struct settings **out, struct diag_list *d) {
        struct settings *s = xcalloc(1, sizeof(*s));
        s->path = xstrdup(path);
        s->dir = settings_folder(path);

        struct parser p = { .s = s, .d = d, .file = path, .next = text, .section = SECTION_NONE };
        /* Defaults go through the same parsers as the file, so a relative
         * default resolves exactly like the same text written in the file. */
        for (size_t i = 0; i < SETTINGS_COUNT; i++) {
                const struct setting *def = &settings_table[i];
                if (def->fallback) {
                        int r = def->parse(&p, def, def->fallback);
                        assert(r == 0);
                        (void)r;
                }
        }

        int r = ini_parse_stream(read_line, &p, handle_key, &p);
        finish_line(&p);
        /* Our own checks see every line inih rejects; this only guards against
         * an inih that rejects more than we expect. */
        if (r > 0 && p.errors == 0)
                error_at(&p, r, "syntax error");
        else if (r < 0 && p.errors == 0)
                error_at(&p, 0, "could not be parsed (inih error %d)", r);

        cross_check(&p);
        if (p.errors) {
                settings_free(s);
                return -EINVAL;
        }
        *out = s;
        return 0;
}

int settings_load(const char *path, struct settings **out, struct diag_list *d) {
        char *text;
        size_t len;
        int r = file_read_all(path, SETTINGS_MAX_SIZE, &text, &len);
        if (r == -EFBIG) {
                diag_add(d, path, 0, 0, "larger than %d bytes, too large for a settings file", SETTINGS_MAX_SIZE);
                return r;
        }
        if (r < 0) {
                diag_add(d, path, 0, 0, "%s", file_read_error(r));
                return r;
        }
        const char *nul = memchr(text, 0, len);
        if (nul) {
                int line = 1;
                for (const char *c = text; c < nul; c++)
                        line += *c == '\n';
                diag_add(d, path, line, 0, "contains a NUL byte; not a text file");
                free(text);
                return -EINVAL;
        }
        r = settings_parse(text, path, out, d);
        free(text);
        return r;
}
