/* The checks every command makes of its settings' secret files before it
 * starts, one path for check, plan, apply, run (at start and on reload) and
 * user-creds: a command never gets further with a secret that group or others
 * can read. */
#pragma once
#include "nkeys.h"
#include "settings.h"

/* The permissions of every secret the settings name (credentials,
 * password_file, tls_key, signing_key), then the contents of the credentials
 * (operator mode: a .creds file, a user JWT and a user seed; config mode also
 * an nkey user seed, or a password file); with signer, also the signing key,
 * loaded into *signer (operator mode). 0, or -ENOENT (a file is missing), -EACCES (readable by group or
 * others), -EINVAL (unusable contents), always with *err. */
int preflight_secrets(const struct settings *s, struct nkey *signer, char **err);
/* The sysexits code (SPEC.md) of a loader's negative errno: 66 a file is
 * missing, 77 permissions, otherwise `invalid` (65 for the accounts file, 78
 * for the settings and the secrets they name). 0 for 0. */
int exit_code_for(int r, int invalid);
/* That of a preflight_secrets() failure: exit_code_for(r, 78). */
int preflight_exit_code(int r);
