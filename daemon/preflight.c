#include "preflight.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>

#include "apply.h"
#include "secrets.h"
#include "util.h"

/* The system user's credentials: a .creds file (operator mode needs one), an
 * nkey user seed file, or a password file. */
static int check_credentials(const struct settings *s, char **err) {
        char *why = NULL;
        int r = 0;
        if (s->credentials) {
                struct nkey k;
                bool is_creds = false;
                r = secret_load_credentials(s->credentials, &k, &is_creds, &why);
                nkey_wipe(&k);
                if ((r == -EINVAL || (r == 0 && !is_creds)) && s->mode == ACCOUNTS_OPERATOR) {
                        free(why);
                        why = xasprintf("credentials %s: not a user .creds file (expected a user JWT and a user seed; "
                                        "an nkey seed alone is for config mode)",
                                        s->credentials);
                        r = -EINVAL;
                } else if (r == -EINVAL) {
                        char *w = xasprintf("credentials %s", why);
                        free(why);
                        why = w;
                }
        } else if (s->password_file) {
                char *password = NULL;
                r = secret_load_password(s->password_file, &password, &why);
                if (r == 0)
                        secret_free(password, strlen(password));
        }
        if (r < 0)
                *err = why ? why : xasprintf("%s: %s", s->credentials ? s->credentials : s->password_file, strerror(-r));
        return r;
}

int preflight_secrets(const struct settings *s, struct nkey *signer, char **err) {
        const char *secrets[] = { s->credentials, s->password_file, s->signing_key, s->tls_key };
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
        int r = check_credentials(s, err);
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
