/* JWTs from the servers and from files: jwt_decode on a NUL-terminated copy,
 * jwt_verify on exactly size bytes. */
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "jwt.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        if (size > JWT_MAX_LEN + 16)
                return 0;
        char *text = xmalloc(size + 1);
        memcpy(text, data, size);
        text[size] = 0;
        json_t *claims = NULL;
        char *err = NULL;
        int r = jwt_decode(text, &claims, &err);
        if ((r == 0) != (claims != NULL) || (r < 0 && !err))
                abort();
        const char *iss = json_string_value(json_object_get(claims, "iss"));
        char *exact = xmalloc(size ? size : 1);
        memcpy(exact, data, size);
        char *verr = NULL;
        /* A token jwt_decode accepts verifies against its own issuer. */
        int v = jwt_verify(exact, size, iss ? iss : "", &verr);
        if (r == 0 && memchr(data, 0, size) == NULL && v != 0)
                abort();
        free(verr);
        free(exact);
        free(err);
        json_decref(claims);
        free(text);
        return 0;
}
