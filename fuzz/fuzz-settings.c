#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "settings.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        /* settings_load refuses more than this before parsing. */
        if (size > SETTINGS_MAX_SIZE)
                return 0;
        char *text = xmalloc(size + 1);
        memcpy(text, data, size);
        text[size] = 0;

        struct diag_list d = { 0 };
        struct settings *s = NULL;
        if (settings_parse(text, "/etc/nats-accountd/nats-accountd.conf", &s, &d) == 0)
                settings_free(s);
        diag_list_clear(&d);
        free(text);
        return 0;
}
