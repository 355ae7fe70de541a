#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static void oom(void) {
        fputs("nats-accountd: out of memory\n", stderr);
        abort();
}

void *xmalloc(size_t n) {
        void *p = malloc(n ? n : 1);
        if (!p)
                oom();
        return p;
}

void *xcalloc(size_t n, size_t size) {
        void *p = calloc(n ? n : 1, size ? size : 1);
        if (!p)
                oom();
        return p;
}

void *xreallocarray(void *p, size_t n, size_t size) {
        if (size && n > SIZE_MAX / size)
                oom();
        size_t bytes = n * size;
        void *q = realloc(p, bytes ? bytes : 1);
        if (!q)
                oom();
        return q;
}

char *xstrdup(const char *s) {
        char *p = strdup(s);
        if (!p)
                oom();
        return p;
}

char *xstrndup(const char *s, size_t n) {
        char *p = strndup(s, n);
        if (!p)
                oom();
        return p;
}

char *xvasprintf(const char *fmt, va_list ap) {
        char *s = NULL;
        if (vasprintf(&s, fmt, ap) < 0)
                oom();
        return s;
}

char *xasprintf(const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        char *s = xvasprintf(fmt, ap);
        va_end(ap);
        return s;
}

bool str_eq(const char *a, const char *b) {
        return a && b && strcmp(a, b) == 0;
}

bool str_startswith(const char *s, const char *prefix) {
        return strncmp(s, prefix, strlen(prefix)) == 0;
}

size_t strpool_add(char **pool, size_t *len, size_t *cap, const char *s) {
        size_t n = strlen(s) + 1, at = *len;
        if (at + n > *cap) {
                *cap = at + n > *cap * 2 ? at + n : *cap * 2;
                *pool = xreallocarray(*pool, *cap, 1);
        }
        memcpy(*pool + at, s, n);
        *len = at + n;
        return at;
}

char *str_strip(char *s) {
        char *b = s;
        while (*b == ' ' || *b == '\t' || *b == '\n' || *b == '\r')
                b++;
        size_t n = strlen(b);
        while (n && (b[n - 1] == ' ' || b[n - 1] == '\t' || b[n - 1] == '\n' || b[n - 1] == '\r'))
                n--;
        memmove(s, b, n);
        s[n] = 0;
        return s;
}

int file_read_all(const char *path, size_t max, char **out, size_t *len) {
        return file_read_reuse(path, max, NULL, out, len);
}

/* file_read_reuse; takes *reuse when it uses it (NULL then). */
static int read_whole(const char *path, size_t max, char **reuse, char **out, size_t *len) {
        /* O_NONBLOCK: a FIFO put at the path would block open() until some
         * writer came; fstat() then turns it away with devices and sockets. */
        int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (fd < 0)
                return errno == ENXIO ? -EINVAL : -errno; /* a socket */
        struct stat st;
        if (fstat(fd, &st) < 0) {
                int r = -errno;
                close(fd);
                return r;
        }
        if (S_ISDIR(st.st_mode) || !S_ISREG(st.st_mode)) {
                close(fd);
                return S_ISDIR(st.st_mode) ? -EISDIR : -EINVAL;
        }
        if ((uint64_t)st.st_size > max) {
                close(fd);
                return -EFBIG;
        }
        /* A regular file may still grow while it is read, or report size 0 (procfs). */
        size_t cap = st.st_size ? (size_t)st.st_size + 1 : 4096, n = 0;
        char *buf;
        if (*reuse && malloc_usable_size(*reuse) >= cap) {
                buf = *reuse;
                *reuse = NULL;
                cap = malloc_usable_size(buf);
        } else {
                buf = xmalloc(cap);
        }
        for (;;) {
                if (n + 1 >= cap) {
                        /* Full: the end of the file, most likely. A small read
                         * tells, rather than a buffer twice the size (a copy of
                         * the whole file into fresh pages, each faulted in). */
                        char more[512];
                        ssize_t k = read(fd, more, sizeof(more));
                        if (k < 0 && errno == EINTR)
                                continue;
                        if (k <= 0) {
                                if (k == 0)
                                        break;
                                int r = -errno;
                                free(buf);
                                close(fd);
                                return r;
                        }
                        if (cap > max + 1) {
                                free(buf);
                                close(fd);
                                return -EFBIG;
                        }
                        cap = cap * 2 > n + 1 + (size_t)k ? cap * 2 : n + 1 + (size_t)k;
                        buf = xreallocarray(buf, cap, 1);
                        memcpy(buf + n, more, (size_t)k);
                        n += (size_t)k;
                        continue;
                }
                ssize_t k = read(fd, buf + n, cap - n - 1);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        int r = -errno;
                        free(buf);
                        close(fd);
                        return r;
                }
                if (k == 0)
                        break;
                n += (size_t)k;
        }
        close(fd);
        if (n > max) {
                free(buf);
                return -EFBIG;
        }
        buf[n] = 0;
        *out = buf;
        if (len)
                *len = n;
        return 0;
}

int file_read_reuse(const char *path, size_t max, char *reuse, char **out, size_t *len) {
        int r = read_whole(path, max, &reuse, out, len);
        free(reuse); /* too small, or not needed */
        return r;
}

const char *file_read_error(int r) {
        return r == -EINVAL ? "not a regular file (a FIFO, device or socket is never read)" : strerror(-r);
}

static int write_atomic(const char *path, const void *data, size_t len, unsigned mode, bool durable) {
        char *tmp = xasprintf("%s.tmp.%ld", path, (long)getpid());
        int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
        if (fd < 0) {
                int r = -errno;
                free(tmp);
                return r;
        }
        int r = 0;
        if (fchmod(fd, mode) < 0)
                r = -errno;
        const char *p = data;
        while (r == 0 && len) {
                ssize_t k = write(fd, p, len);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        r = -errno;
                        break;
                }
                p += k;
                len -= (size_t)k;
        }
        if (r == 0 && durable && fsync(fd) < 0)
                r = -errno;
        if (close(fd) < 0 && r == 0)
                r = -errno;
        if (r == 0 && rename(tmp, path) < 0)
                r = -errno;
        if (r < 0)
                unlink(tmp);
        free(tmp);
        /* The rename is durable only once the folder holding it is on disk too. */
        if (r == 0 && durable) {
                char *dir = path_dirname(path);
                r = dir_fsync(dir);
                free(dir);
        }
        return r;
}

int file_write_atomic(const char *path, const void *data, size_t len, unsigned mode) {
        return write_atomic(path, data, len, mode, true);
}

int file_write_atomic_nosync(const char *path, const void *data, size_t len, unsigned mode) {
        return write_atomic(path, data, len, mode, false);
}

int dir_fsync(const char *dir) {
        int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        int r = fsync(fd) < 0 ? -errno : 0;
        close(fd);
        return r;
}

char *path_dirname(const char *path) {
        const char *slash = strrchr(path, '/');
        if (!slash)
                return xstrdup(".");
        if (slash == path)
                return xstrdup("/");
        return xstrndup(path, (size_t)(slash - path));
}

char *path_join(const char *dir, const char *name) {
        if (name[0] == '/')
                return xstrdup(name);
        size_t n = strlen(dir);
        return xasprintf("%s%s%s", dir, n && dir[n - 1] == '/' ? "" : "/", name);
}

char *path_clean(const char *path) {
        /* Go's filepath.Clean: the same lexical rules nats-server's includes go through. */
        size_t n = strlen(path);
        bool rooted = n && path[0] == '/';
        char *out = xmalloc(n + 2), *w = out;
        size_t *starts = xcalloc(n + 1, sizeof(*starts)); /* where each kept element begins in out */
        size_t depth = 0, dotdot = 0;                      /* kept elements; leading ".." of a relative path */
        if (rooted)
                *w++ = '/';
        for (const char *p = path; *p;) {
                while (*p == '/')
                        p++;
                const char *e = p;
                while (*e && *e != '/')
                        e++;
                size_t len = (size_t)(e - p);
                if (len == 0 || (len == 1 && p[0] == '.')) {
                        /* nothing */
                } else if (len == 2 && p[0] == '.' && p[1] == '.') {
                        if (depth > dotdot) {
                                w = out + starts[--depth];
                                if (w > out + rooted && w[-1] == '/')
                                        w--;
                        } else if (!rooted) {
                                if (w > out)
                                        *w++ = '/';
                                *w++ = '.';
                                *w++ = '.';
                                depth++;
                                dotdot++;
                                starts[depth - 1] = (size_t)(w - out - 2);
                        }
                } else {
                        if (w > out + rooted)
                                *w++ = '/';
                        starts[depth++] = (size_t)(w - out);
                        memcpy(w, p, len);
                        w += len;
                }
                p = e;
        }
        if (w == out)
                *w++ = '.';
        *w = 0;
        free(starts);
        return out;
}

/* The elements of a cleaned absolute path, in place ("/a/b" -> "a", "b"). */
static size_t path_elements(char *clean, char ***out) {
        size_t n = 0;
        char **v = xcalloc(strlen(clean) + 1, sizeof(*v));
        for (char *save = NULL, *e = strtok_r(clean, "/", &save); e; e = strtok_r(NULL, "/", &save))
                v[n++] = e;
        *out = v;
        return n;
}

char *path_relative(const char *from_dir, const char *to) {
        char *a = path_clean(from_dir), *b = path_clean(to);
        if (a[0] != '/' || b[0] != '/') {
                free(a);
                return b;
        }
        char **va, **vb;
        size_t na = path_elements(a, &va), nb = path_elements(b, &vb), common = 0;
        while (common < na && common < nb && strcmp(va[common], vb[common]) == 0)
                common++;
        size_t cap = 3 * (na - common) + strlen(to) + 2;
        char *out = xmalloc(cap), *w = out;
        for (size_t i = common; i < na; i++)
                w += sprintf(w, "%s..", w == out ? "" : "/");
        for (size_t i = common; i < nb; i++)
                w += sprintf(w, "%s%s", w == out ? "" : "/", vb[i]);
        if (w == out)
                strcpy(out, ".");
        free(va);
        free(vb);
        free(a);
        free(b);
        return out;
}

uint64_t mono_usec(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}
