#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "fragments.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A fragment as found on disk, edited by hand or truncated. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        struct fragment_state st;
        char *why = NULL;
        (void)fragment_parse((const char *)data, size, &st, &why);
        free(why);
        return 0;
}
