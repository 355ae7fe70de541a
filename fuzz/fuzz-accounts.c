#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "accounts.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void parse_one(const char *text, size_t size, enum accounts_flavor flavor) {
        struct diag_list d = { 0 };
        struct accounts *a = NULL;
        int r = accounts_parse(text, size, "accounts.yaml", flavor, &a, &d);
        /* The contract the daemon relies on: an object exactly on success, an error otherwise. */
        if ((r == 0) != (a != NULL) || (r < 0 && d.n == 0))
                abort();
        for (size_t i = 0; a && i < a->n; i++) {
                if (accounts_find(a, a->v[i].name) != &a->v[i])
                        abort();
                /* Config mode has no such limits: a file that sets one is refused. */
                for (size_t f = 0; flavor == ACCOUNTS_CONFIG && f < acct_fields_count; f++)
                        if (acct_fields[f].operator_only && acct_limits_get(&a->v[i].acct, &acct_fields[f]) != -1)
                                abort();
        }
        accounts_free(a);
        diag_list_clear(&d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        /* Bigger inputs are refused before parsing; nothing to learn there. */
        if (size > ACCOUNTS_FILE_MAX_SIZE)
                return 0;
        /* A copy of exactly size bytes, so that reading past the end is caught. */
        char *text = xmalloc(size);
        if (size)
                memcpy(text, data, size);
        parse_one(text, size, ACCOUNTS_OPERATOR);
        parse_one(text, size, ACCOUNTS_CONFIG);
        free(text);
        return 0;
}
