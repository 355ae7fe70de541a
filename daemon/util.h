/* Small helpers: allocation that aborts on OOM, strings, files. */
#pragma once
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xreallocarray(void *p, size_t n, size_t size);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
__attribute__((format(printf, 1, 2))) char *xasprintf(const char *fmt, ...);
__attribute__((format(printf, 1, 0))) char *xvasprintf(const char *fmt, va_list ap);

bool str_eq(const char *a, const char *b);
bool str_startswith(const char *s, const char *prefix);
/* Trim ASCII whitespace in place; returns s. */
char *str_strip(char *s);
/* Append s with its NUL to the growing buffer *pool (*len used of *cap);
 * returns the offset where it starts. */
size_t strpool_add(char **pool, size_t *len, size_t *cap, const char *s);

/* Read a whole regular file, at most max bytes (-EFBIG beyond). NUL-terminated.
 * Returns 0 or a negative errno: -EINVAL when the path is not a regular file
 * (a FIFO, device or socket is never read, and never blocks), -EISDIR. */
int file_read_all(const char *path, size_t max, char **out, size_t *len);
/* The same, read into reuse (a malloc'ed block, or NULL) when the file fits in
 * it: pages already in memory rather than fresh ones, each faulted in. Takes
 * reuse either way (*out is reuse, or reuse is freed). */
int file_read_reuse(const char *path, size_t max, char *reuse, char **out, size_t *len);
/* What file_read_all's error means, for messages. */
const char *file_read_error(int r);
/* Write data to path atomically (temp file + rename) with the given mode, and
 * wait until the file and the rename (its folder) are on disk. */
int file_write_atomic(const char *path, const void *data, size_t len, unsigned mode);
/* The same without waiting for the disk (a file nothing relies on being there
 * after a crash). */
int file_write_atomic_nosync(const char *path, const void *data, size_t len, unsigned mode);
/* Only dir's own entries on disk (fsync of the folder): after a few
 * file_write_atomic, whose files are each synced already. */
int dir_fsync(const char *dir);
/* dirname / join; results are allocated. */
char *path_dirname(const char *path);
char *path_join(const char *dir, const char *name);
/* Lexical clean-up as Go's filepath.Clean ("a//b/./c/.." -> "a/b"). */
char *path_clean(const char *path);
/* to as a path relative to the folder from_dir (both absolute), e.g.
 * ("/etc/nats", "/etc/nats/accounts.d/APP.conf") -> "accounts.d/APP.conf". */
char *path_relative(const char *from_dir, const char *to);

/* CLOCK_MONOTONIC in microseconds: for durations, never for dates. */
uint64_t mono_usec(void);
