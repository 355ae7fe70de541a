#include "secrets.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"

enum { SEED_LEN = 58 };

static void set_why(char **why, char *msg) {
        if (why)
                *why = msg;
        else
                free(msg);
}

/* The policy ssh applies to private keys: anything group or others may read is
 * refused, whoever owns it. Only the read bits count; a writable file is a
 * different problem that the mode alone does not settle. */
static int check_stat(const char *path, const struct stat *st, char **why) {
        if (S_ISDIR(st->st_mode)) {
                set_why(why, xasprintf("%s: Is a directory", path));
                return -EISDIR;
        }
        if (!S_ISREG(st->st_mode)) {
                set_why(why, xasprintf("%s: not a regular file", path));
                return -EINVAL;
        }
        if (st->st_mode & 044) {
                set_why(why, xasprintf("%s is readable by group or others (mode %04o); run: chmod 600 %s", path,
                                       (unsigned)(st->st_mode & 07777), path));
                return -EACCES;
        }
        return 0;
}

int secret_check(const char *path, char **why) {
        struct stat st;
        set_why(why, NULL);
        if (stat(path, &st) < 0) {
                int r = -errno;
                set_why(why, xasprintf("%s: %s", path, strerror(-r)));
                return r;
        }
        return check_stat(path, &st, why);
}

static char *too_big(const char *path, size_t max) {
        return max == SECRET_MAX_SIZE
                       ? xasprintf("%s is larger than %d bytes, which no key or .creds file is", path, SECRET_MAX_SIZE)
                       : xasprintf("%s is larger than %zu bytes, which no file of its kind is", path, max);
}

int secret_read_max(const char *path, size_t max, char **out, size_t *len, char **why) {
        set_why(why, NULL);
        /* O_NONBLOCK so that a FIFO put in place of the file cannot hang the
         * daemon before fstat() tells us it is not a regular file. */
        int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (fd < 0) {
                int r = -errno;
                set_why(why, xasprintf("%s: %s", path, strerror(-r)));
                return r;
        }
        /* Check the opened file, not the path, so a swap between check and read
         * cannot slip a readable file through. */
        struct stat st;
        int r;
        if (fstat(fd, &st) < 0) {
                r = -errno;
                set_why(why, xasprintf("%s: %s", path, strerror(-r)));
                goto out_close;
        }
        r = check_stat(path, &st, why);
        if (r < 0)
                goto out_close;
        if ((uintmax_t)st.st_size > max) {
                r = -EFBIG;
                set_why(why, too_big(path, max));
                goto out_close;
        }

        /* One fixed buffer and no realloc: a moved buffer would leave copies of
         * the secret in freed memory that nobody wipes. */
        size_t cap = max + 2, n = 0;
        char *buf = xmalloc(cap);
        for (;;) {
                ssize_t k = read(fd, buf + n, cap - 1 - n);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        r = -errno;
                        set_why(why, xasprintf("%s: %s", path, strerror(-r)));
                        secret_free(buf, n);
                        goto out_close;
                }
                if (k == 0)
                        break;
                n += (size_t)k;
                if (n > max) {
                        /* It grew while we read it. */
                        r = -EFBIG;
                        set_why(why, too_big(path, max));
                        secret_free(buf, n);
                        goto out_close;
                }
        }
        buf[n] = 0;
        *out = buf;
        if (len)
                *len = n;
        r = 0;
out_close:
        close(fd);
        return r;
}

int secret_read(const char *path, char **out, size_t *len, char **why) {
        return secret_read_max(path, SECRET_MAX_SIZE, out, len, why);
}

void secret_free(char *buf, size_t len) {
        if (!buf)
                return;
        sodium_memzero(buf, len);
        free(buf);
}

static bool is_space(char c) {
        return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

/* Iterate over lines; each one is handed out trimmed (CRLF files included). */
struct line_iter {
        const char *next;
};

static bool line_next(struct line_iter *it, const char **line, size_t *len) {
        if (!it->next || !*it->next)
                return false;
        const char *b = it->next, *nl = strchr(b, '\n');
        const char *e = nl ? nl : b + strlen(b);
        it->next = nl ? nl + 1 : e;
        while (b < e && is_space(*b))
                b++;
        while (e > b && is_space(e[-1]))
                e--;
        *line = b;
        *len = (size_t)(e - b);
        return true;
}

/* A "-----BEGIN NATS USER JWT-----" style line: returns its label without the
 * dashes. nsc writes five dashes on BEGIN and six on END lines and other tools
 * differ again, so any run of three or more is accepted. */
static bool marker_label(const char *line, size_t len, const char **label, size_t *label_len) {
        size_t lead = 0, trail = 0;
        while (lead < len && line[lead] == '-')
                lead++;
        while (trail < len - lead && line[len - 1 - trail] == '-')
                trail++;
        if (lead < 3 || trail < 3)
                return false;
        const char *b = line + lead, *e = line + len - trail;
        while (b < e && is_space(*b))
                b++;
        while (e > b && is_space(e[-1]))
                e--;
        *label = b;
        *label_len = (size_t)(e - b);
        return true;
}

static bool label_is(const char *label, size_t n, const char *want) {
        return n == strlen(want) && memcmp(label, want, n) == 0;
}

static bool is_seed_marker(const char *line, size_t len) {
        const char *label;
        size_t n;
        static const char begin[] = "BEGIN ", suffix[] = " NKEY SEED";
        if (!marker_label(line, len, &label, &n))
                return false;
        /* "BEGIN USER NKEY SEED" in user .creds; any key type is fine here. */
        return n >= strlen(begin) + strlen(suffix) && memcmp(label, begin, strlen(begin)) == 0 &&
               memcmp(label + n - strlen(suffix), suffix, strlen(suffix)) == 0;
}

static bool is_seed(const char *s, size_t len) {
        if (len != SEED_LEN || s[0] != 'S' || !strchr("OAUNC", s[1]))
                return false;
        for (size_t i = 0; i < len; i++)
                if (!((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= '2' && s[i] <= '7')))
                        return false;
        return true;
}

char *secret_find_seed(const char *text) {
        struct line_iter it = { text };
        const char *line;
        size_t len;
        bool after_marker = false;
        while (line_next(&it, &line, &len)) {
                if (len == 0)
                        continue;
                if (is_seed_marker(line, len)) {
                        after_marker = true;
                        continue;
                }
                if (is_seed(line, len))
                        return xstrndup(line, len);
                /* In a .creds file the seed is the line right after its marker;
                 * anything else there means the block is broken. */
                if (after_marker)
                        return NULL;
        }
        return NULL;
}

char *secret_find_jwt(const char *text) {
        struct line_iter it = { text };
        const char *line, *label;
        size_t len, n;
        bool inside = false;
        char *jwt = NULL;
        size_t jwt_len = 0;
        while (line_next(&it, &line, &len)) {
                bool marker = marker_label(line, len, &label, &n);
                if (!inside) {
                        inside = marker && label_is(label, n, "BEGIN NATS USER JWT");
                        continue;
                }
                if (marker) {
                        if (label_is(label, n, "END NATS USER JWT") && jwt_len > 0)
                                return jwt;
                        break;
                }
                /* Tolerate a JWT wrapped over several lines. */
                jwt = xreallocarray(jwt, jwt_len + len + 1, 1);
                memcpy(jwt + jwt_len, line, len);
                jwt_len += len;
                jwt[jwt_len] = 0;
        }
        free(jwt);
        return NULL;
}

/* secret_read with its failure as one message naming the file. */
static int read_explained(const char *path, char **text, size_t *len, char **err) {
        char *why = NULL;
        int r = secret_read(path, text, len, &why);
        if (r < 0)
                *err = why ? why : xasprintf("%s: %s", path, strerror(-r));
        return r;
}

int secret_load_nkey(const char *path, struct nkey *out, char **err) {
        char *text = NULL;
        size_t len = 0;
        int r = read_explained(path, &text, &len, err);
        if (r < 0)
                return r;
        char *seed = secret_find_seed(text);
        secret_free(text, len);
        const char *problem = "no nkey seed found in it";
        r = seed && nkey_from_seed(seed, out, &problem) == 0 ? 0 : -EINVAL;
        if (seed)
                secret_free(seed, strlen(seed));
        if (r < 0) {
                nkey_wipe(out);
                *err = xasprintf("%s: %s", path, problem);
        }
        return r;
}

int secret_load_credentials(const char *path, struct nkey *user_key, bool *is_creds, char **err) {
        char *text = NULL;
        size_t len = 0;
        int r = read_explained(path, &text, &len, err);
        if (r < 0)
                return r;
        char *jwt = secret_find_jwt(text);
        char *seed = secret_find_seed(text);
        secret_free(text, len);
        const char *problem = NULL;
        *is_creds = jwt != NULL;
        if (!seed || seed[0] != 'S' || seed[1] != 'U')
                problem = jwt ? "not a user .creds file (expected a user JWT and a user seed)"
                              : "neither a user .creds file nor an nkey user seed file (expected a seed starting "
                                "with SU)";
        r = problem || nkey_from_seed(seed, user_key, &problem) < 0 ? -EINVAL : 0;
        free(jwt);
        if (seed)
                secret_free(seed, strlen(seed));
        if (r < 0) {
                nkey_wipe(user_key);
                *err = xasprintf("%s: %s", path, problem);
        }
        return r;
}

int secret_load_password(const char *path, char **out, char **err) {
        char *text = NULL;
        size_t len = 0;
        int r = read_explained(path, &text, &len, err);
        if (r < 0)
                return r;
        /* One line; the newline an editor or `echo` adds is not part of it. */
        size_t n = strcspn(text, "\r\n");
        const char *rest = text + n;
        rest += strspn(rest, "\r\n");
        const char *problem = n == 0 ? "is empty (expected the password on its first line)"
                              : *rest ? "holds more than one line (expected only the password)"
                              : memchr(text, 0, len) ? "contains a NUL byte"
                                                     : NULL;
        if (problem) {
                secret_free(text, len);
                *err = xasprintf("password file %s %s", path, problem);
                return -EINVAL;
        }
        text[n] = 0;
        *out = text; /* the caller wipes it with secret_free(*out, strlen(*out)) */
        return 0;
}
