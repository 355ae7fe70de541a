#include "units.h"

#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* Digits only, no sign; -ERANGE past INT64_MAX. Sets *end after the digits. */
static int parse_digits(const char *s, const char **end, uint64_t *out) {
        uint64_t v = 0;
        const char *p = s;
        if (!isdigit((unsigned char)*p))
                return -EINVAL;
        for (; isdigit((unsigned char)*p); p++) {
                unsigned d = (unsigned)(*p - '0');
                if (v > ((uint64_t)INT64_MAX - d) / 10)
                        return -ERANGE;
                v = v * 10 + d;
        }
        *end = p;
        *out = v;
        return 0;
}

static bool is_unlimited(const char *s) {
        return strcmp(s, "-1") == 0 || strcasecmp(s, "unlimited") == 0;
}

struct unit {
        const char *suffix;
        uint64_t factor;
};

/* nats-server's own config reads K/M/G/T as powers of 1000 and KB/KiB... as powers of 1024;
 * KB being binary is surprising, but operators copy values from nats-server configs, so
 * the same text must mean the same number here. */
static const struct unit size_units[] = {
        { "", 1 },
        { "b", 1 },
        { "k", 1000ULL },
        { "kb", 1024ULL },
        { "ki", 1024ULL },
        { "kib", 1024ULL },
        { "m", 1000ULL * 1000 },
        { "mb", 1024ULL * 1024 },
        { "mi", 1024ULL * 1024 },
        { "mib", 1024ULL * 1024 },
        { "g", 1000ULL * 1000 * 1000 },
        { "gb", 1024ULL * 1024 * 1024 },
        { "gi", 1024ULL * 1024 * 1024 },
        { "gib", 1024ULL * 1024 * 1024 },
        { "t", 1000ULL * 1000 * 1000 * 1000 },
        { "tb", 1024ULL * 1024 * 1024 * 1024 },
        { "ti", 1024ULL * 1024 * 1024 * 1024 },
        { "tib", 1024ULL * 1024 * 1024 * 1024 },
};

int units_parse_size(const char *s, int64_t *out, const char **why) {
        if (is_unlimited(s)) {
                *out = LIMIT_UNLIMITED;
                return 0;
        }
        if (*s == '-') {
                *why = "negative sizes other than -1 are not allowed";
                return -EINVAL;
        }
        const char *end;
        uint64_t v;
        int r = parse_digits(s, &end, &v);
        if (r == -ERANGE) {
                *why = "too large";
                return r;
        }
        if (r < 0) {
                *why = "not a number";
                return r;
        }
        const char *suffix = end;
        while (*suffix == ' ')
                suffix++;
        for (size_t i = 0; i < sizeof(size_units) / sizeof(size_units[0]); i++) {
                if (strcasecmp(suffix, size_units[i].suffix) != 0)
                        continue;
                if (size_units[i].suffix[0] == 0 && suffix != end) {
                        break; /* trailing blanks only */
                }
                if (v > (uint64_t)INT64_MAX / size_units[i].factor) {
                        *why = "too large";
                        return -ERANGE;
                }
                *out = (int64_t)(v * size_units[i].factor);
                return 0;
        }
        *why = "unknown unit (use B, K, KB, KiB, M, MB, MiB, G, GB, GiB, T, TB or TiB)";
        return -EINVAL;
}

int units_parse_count(const char *s, int64_t *out, const char **why) {
        if (is_unlimited(s)) {
                *out = LIMIT_UNLIMITED;
                return 0;
        }
        if (*s == '-') {
                *why = "negative counts other than -1 are not allowed";
                return -EINVAL;
        }
        const char *end;
        uint64_t v;
        int r = parse_digits(s, &end, &v);
        if (r == -ERANGE) {
                *why = "too large";
                return r;
        }
        if (r < 0 || *end) {
                *why = "not a whole number";
                return -EINVAL;
        }
        *out = (int64_t)v;
        return 0;
}

struct dunit {
        const char *suffix;
        uint64_t usec;
};

static const struct dunit duration_units[] = {
        { "ms", 1000ULL },
        { "s", 1000000ULL },
        { "m", 60ULL * 1000000 },
        { "h", 3600ULL * 1000000 },
        { "d", 86400ULL * 1000000 },
};

int units_parse_duration(const char *s, uint64_t *usec, const char **why) {
        uint64_t total = 0;
        const char *p = s;
        if (!*p) {
                *why = "empty";
                return -EINVAL;
        }
        if (*p == '-') {
                *why = "negative durations are not allowed";
                return -EINVAL;
        }
        while (*p) {
                const char *end;
                uint64_t v;
                int r = parse_digits(p, &end, &v);
                if (r == -ERANGE) {
                        *why = "too large";
                        return r;
                }
                if (r < 0) {
                        *why = "expected a number followed by ms, s, m, h or d";
                        return -EINVAL;
                }
                size_t ulen = 0;
                while (isalpha((unsigned char)end[ulen]))
                        ulen++;
                uint64_t factor = 0;
                if (ulen == 0) {
                        if (p != s || *end) {
                                *why = "expected a number followed by ms, s, m, h or d";
                                return -EINVAL;
                        }
                        factor = 1000000ULL; /* a bare number is seconds */
                }
                for (size_t i = 0; ulen && i < sizeof(duration_units) / sizeof(duration_units[0]); i++)
                        if (strlen(duration_units[i].suffix) == ulen &&
                            strncasecmp(end, duration_units[i].suffix, ulen) == 0)
                                factor = duration_units[i].usec;
                if (!factor) {
                        *why = "unknown unit (use ms, s, m, h or d)";
                        return -EINVAL;
                }
                if (v > (UINT64_MAX - total) / factor) {
                        *why = "too large";
                        return -ERANGE;
                }
                total += v * factor;
                p = end + ulen;
        }
        *usec = total;
        return 0;
}

void units_format_size(int64_t v, char *buf, size_t n) {
        static const char *const names[] = { "TiB", "GiB", "MiB", "KiB" };
        if (v < 0) {
                snprintf(buf, n, "unlimited");
                return;
        }
        for (int i = 0; i < 4 && v > 0; i++) {
                int64_t f = (int64_t)1 << (10 * (4 - i));
                if (v % f == 0) {
                        snprintf(buf, n, "%lld%s", (long long)(v / f), names[i]);
                        return;
                }
        }
        snprintf(buf, n, "%lld", (long long)v);
}

void units_format_count(int64_t v, char *buf, size_t n) {
        if (v < 0)
                snprintf(buf, n, "unlimited");
        else
                snprintf(buf, n, "%lld", (long long)v);
}

void units_format_duration(uint64_t usec, char *buf, size_t n) {
        size_t off = 0;
        if (usec == 0) {
                snprintf(buf, n, "0");
                return;
        }
        for (size_t i = sizeof(duration_units) / sizeof(duration_units[0]); i-- > 0 && off < n;) {
                uint64_t f = duration_units[i].usec;
                if (usec >= f) {
                        int k = snprintf(buf + off, n - off, "%llu%s", (unsigned long long)(usec / f),
                                         duration_units[i].suffix);
                        if (k < 0)
                                return;
                        off += (size_t)k;
                        usec %= f;
                }
        }
        if (usec && off < n)
                snprintf(buf + off, n - off, "%lluus", (unsigned long long)usec);
}
