#include "diag.h"

#include <stdlib.h>
#include <string.h>

#include "util.h"

enum { DIAG_DEFAULT_MAX = 100 };

void diag_addv(struct diag_list *d, const char *file, int line, int column, const char *fmt, va_list ap) {
        size_t max = d->max ? d->max : DIAG_DEFAULT_MAX;
        if (d->n >= max) {
                d->dropped++;
                return;
        }
        if (d->n == d->cap) {
                size_t cap = d->cap ? d->cap * 2 : 8;
                d->v = xreallocarray(d->v, cap, sizeof(*d->v));
                d->cap = cap;
        }
        struct diag *e = &d->v[d->n++];
        e->file = xstrdup(file ? file : "");
        e->line = line;
        e->column = column;
        e->msg = xvasprintf(fmt, ap);
}

void diag_add(struct diag_list *d, const char *file, int line, int column, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        diag_addv(d, file, line, column, fmt, ap);
        va_end(ap);
}

char *diag_format(const struct diag *e) {
        if (e->line > 0 && e->column > 0)
                return xasprintf("%s:%d:%d: %s", e->file, e->line, e->column, e->msg);
        if (e->line > 0)
                return xasprintf("%s:%d: %s", e->file, e->line, e->msg);
        return xasprintf("%s: %s", e->file, e->msg);
}

void diag_print(const struct diag_list *d, FILE *f) {
        for (size_t i = 0; i < d->n; i++) {
                char *s = diag_format(&d->v[i]);
                fprintf(f, "%s\n", s);
                free(s);
        }
        if (d->dropped)
                fprintf(f, "%zu more errors not shown\n", d->dropped);
}

void diag_list_clear(struct diag_list *d) {
        for (size_t i = 0; i < d->n; i++) {
                free(d->v[i].file);
                free(d->v[i].msg);
        }
        free(d->v);
        size_t max = d->max;
        *d = (struct diag_list){ .max = max };
}
