#include "preflight.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>

#include "apply.h"
#include "secrets.h"
#include "util.h"

/* The system user's .creds must hold a user JWT and a user seed. */
static int check_credentials(const char *path, char **err) {
        char *text = NULL, *why = NULL;
        size_t len = 0;
        int r = secret_read(path, &text, &len, &why);
        if (r < 0) {
                *err = why ? why : xasprintf("%s: %s", path, strerror(-r));
                return r;
        }
        char *jwt = secret_find_jwt(text);
        char *seed = secret_find_seed(text);
        secret_free(text, len);
        if (!jwt || !seed || seed[0] != 'S' || seed[1] != 'U') {
                *err = xasprintf("credentials %s: not a user .creds file (expected a user JWT and a user seed)", path);
                r = -EINVAL;
        }
        free(jwt);
        if (seed)
                secret_free(seed, strlen(seed));
        return r;
}

int preflight_secrets(const struct settings *s, struct nkey *signer, char **err) {
        const char *secrets[] = { s->credentials, s->signing_key, s->tls_key };
        for (size_t i = 0; i < ARRAY_SIZE(secrets); i++) {
                if (!secrets[i])
                        continue;
                char *why = NULL;
                int r = secret_check(secrets[i], &why);
                if (r < 0) {
                        *err = why ? why : xasprintf("%s: %s", secrets[i], strerror(-r));
                        return r;
                }
        }
        int r = s->credentials ? check_credentials(s->credentials, err) : 0;
        if (r == 0 && signer)
                r = signer_load(s, signer, err);
        return r;
}

int exit_code_for(int r, int invalid) {
        switch (r) {
        case 0:
                return 0;
        case -ENOENT:
        case -ENOTDIR:
                return EX_NOINPUT;
        case -EACCES:
        case -EPERM:
                return EX_NOPERM;
        default:
                return invalid;
        }
}

int preflight_exit_code(int r) {
        return exit_code_for(r, EX_CONFIG);
}
