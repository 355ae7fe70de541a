/* Secret files as the daemon reads them (a .creds file, a seed file): the
 * seed and JWT finders, then the seed itself. Inputs are NUL-terminated, as
 * secret_read() hands them out. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "nkeys.h"
#include "secrets.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        if (size > SECRET_MAX_SIZE)
                return 0;
        char *text = xmalloc(size + 1);
        memcpy(text, data, size);
        text[size] = 0;
        char *seed = secret_find_seed(text);
        if (seed) {
                struct nkey k;
                const char *why = NULL;
                if (strlen(seed) != NKEY_SEED_LEN || seed[0] != 'S')
                        abort();
                if (nkey_from_seed(seed, &k, &why) == 0) {
                        char again[NKEY_SEED_LEN + 1];
                        nkey_seed_encode(&k, again);
                        if (strcmp(again, seed) != 0)
                                abort();
                        nkey_wipe(&k);
                } else if (!why) {
                        abort();
                }
                secret_free(seed, strlen(seed));
        }
        char *jwt = secret_find_jwt(text);
        if (jwt && (!*jwt || strchr(jwt, '\n')))
                abort();
        free(jwt);
        secret_free(text, size);
        return 0;
}
