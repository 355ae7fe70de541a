/* Sizes, counts and durations as written in the settings and accounts files. */
#pragma once
#include <stddef.h>
#include <stdint.h>

#define LIMIT_UNLIMITED INT64_C(-1)

/* A byte size: plain integer, or with B, K/KB/KiB, M/MB/MiB, G/GB/GiB, T/TB/TiB
 * (case-insensitive; K/M/G/T and KB/MB/GB/TB are decimal powers of 1000,
 * KiB/MiB/GiB/TiB binary powers of 1024), or -1 / "unlimited".
 * Returns 0, -EINVAL (malformed, *why says what), -ERANGE (above INT64_MAX). */
int units_parse_size(const char *s, int64_t *out, const char **why);
/* A count: plain non-negative integer, or -1 / "unlimited". */
int units_parse_count(const char *s, int64_t *out, const char **why);
/* A duration: "0", or one or more <integer><unit> with unit ms, s, m, h, d
 * ("1m30s"). A bare integer means seconds. Result in microseconds. */
int units_parse_duration(const char *s, uint64_t *usec, const char **why);

/* Human form: "unlimited", exact binary units when divisible ("5GiB"),
 * else the plain number of bytes. */
void units_format_size(int64_t v, char *buf, size_t n);
/* "unlimited" or the plain integer. */
void units_format_count(int64_t v, char *buf, size_t n);
/* "2s", "5m", "1h30m", "250ms". */
void units_format_duration(uint64_t usec, char *buf, size_t n);
