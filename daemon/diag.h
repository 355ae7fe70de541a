/* Diagnostics: errors about an input file, each with its location. */
#pragma once
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

struct diag {
        char *file;
        int line;   /* 1-based; 0 = whole file */
        int column; /* 1-based; 0 = no column (INI files) */
        char *msg;
};

struct diag_list {
        struct diag *v;
        size_t n, cap;
        size_t max; /* stop recording after this many (0 = default 100) */
        size_t dropped;
};

__attribute__((format(printf, 5, 6)))
void diag_add(struct diag_list *d, const char *file, int line, int column, const char *fmt, ...);
__attribute__((format(printf, 5, 0)))
void diag_addv(struct diag_list *d, const char *file, int line, int column, const char *fmt, va_list ap);
/* "FILE:LINE:COLUMN: MSG" (LINE/COLUMN left out when 0). Caller frees. */
char *diag_format(const struct diag *e);
/* One line per error on f, then "N more errors not shown" if any were dropped. */
void diag_print(const struct diag_list *d, FILE *f);
void diag_list_clear(struct diag_list *d);
