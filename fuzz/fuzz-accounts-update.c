/* accounts_parse_update against the whole parse: the input is two texts (split
 * at the first NUL byte, or in the middle); the second, read as an edit of
 * the first, must give exactly what reading it alone gives. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "accounts.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool same_diags(const struct diag_list *x, const struct diag_list *y) {
        if (x->n != y->n)
                return false;
        for (size_t i = 0; i < x->n; i++)
                if (x->v[i].line != y->v[i].line || x->v[i].column != y->v[i].column ||
                    strcmp(x->v[i].msg, y->v[i].msg) != 0)
                        return false;
        return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        if (size > 1024 * 1024)
                return 0;
        const uint8_t *nul = memchr(data, 0, size);
        size_t first = nul ? (size_t)(nul - data) : size / 2;
        const char *a = (const char *)data, *b = (const char *)data + first + (nul != NULL);
        size_t alen = first, blen = size - first - (nul != NULL);

        struct diag_list d0 = { 0 }, d1 = { 0 }, d2 = { 0 };
        struct accounts *old = NULL, *upd = NULL, *whole = NULL;
        struct accounts_delta delta;
        if (accounts_parse_update(a, alen, "accounts.yaml", ACCOUNTS_OPERATOR, NULL, &old, &delta, &d0) < 0)
                goto out;
        accounts_delta_clear(&delta);
        struct accounts before = { .n = old->n, .v = xcalloc(old->n + 1, sizeof(*old->v)) };
        memcpy(before.v, old->v, old->n * sizeof(*old->v));

        int r1 = accounts_parse_update(b, blen, "accounts.yaml", ACCOUNTS_OPERATOR, old, &upd, &delta, &d1);
        int r2 = accounts_parse(b, blen, "accounts.yaml", ACCOUNTS_OPERATOR, &whole, &d2);
        if (r1 != r2 || !same_diags(&d1, &d2))
                abort();
        if (r1 == 0) {
                if (upd->n != whole->n)
                        abort();
                for (size_t i = 0; i < upd->n; i++)
                        if (!account_decl_equal(&upd->v[i], &whole->v[i]) || upd->v[i].line != whole->v[i].line ||
                            upd->v[i].column != whole->v[i].column)
                                abort();
                /* A partial reload lists exactly the declarations that differ. */
                for (size_t i = 0; delta.partial && i < upd->n; i++) {
                        const struct account_decl *was = accounts_find(&before, upd->v[i].name);
                        bool listed = false;
                        for (size_t k = 0; k < delta.n; k++)
                                listed |= delta.changed[k] == i;
                        if (listed == (was && account_decl_equal(was, &upd->v[i])))
                                abort();
                }
        }
        accounts_delta_clear(&delta);
        free(before.v);
out:
        accounts_free(old);
        accounts_free(upd);
        accounts_free(whole);
        diag_list_clear(&d0);
        diag_list_clear(&d1);
        diag_list_clear(&d2);
        return 0;
}
