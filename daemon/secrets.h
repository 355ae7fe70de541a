/* Secret files: seeds, creds. Refused when group or others can read them. */
#pragma once
#include <stdbool.h>
#include <stddef.h>

#include "nkeys.h"

#define SECRET_MAX_SIZE (64 * 1024)

/* 0; -ENOENT; -EACCES when readable by group or others (*why names the fix);
 * other negative errno. */
int secret_check(const char *path, char **why);
/* Check, then read the whole file (bounded). The caller releases with secret_free. */
int secret_read(const char *path, char **out, size_t *len, char **why);
/* The same for a secret file that may be larger (at most max bytes). */
int secret_read_max(const char *path, size_t max, char **out, size_t *len, char **why);
/* Zero and free. */
void secret_free(char *buf, size_t len);
/* First "S?" seed found in a seed file or a .creds file (the line after
 * "BEGIN ... NKEY SEED"). The returned string is a copy; wipe with secret_free. */
char *secret_find_seed(const char *text);
/* The nkey of a seed file or a .creds file (its first seed), secrets wiped
 * behind it. 0; a negative errno from secret_read; -EINVAL when the file
 * holds no valid seed. *err says what, naming the file. */
int secret_load_nkey(const char *path, struct nkey *out, char **err);
/* The JWT of a .creds file, or NULL. Allocated. */
char *secret_find_jwt(const char *text);
/* The system user's credentials: a .creds file (*is_creds) or an nkey user
 * seed file. Either way *user_key is the user's nkey (wipe it). 0; a negative
 * errno from secret_read; -EINVAL when the file is neither (*err names it). */
int secret_load_credentials(const char *path, struct nkey *user_key, bool *is_creds, char **err);
/* The password in a password file: its first line, without the newline. 0 with
 * *out (wipe with secret_free(*out, strlen(*out))); a negative errno from
 * secret_read; -EINVAL when empty or more than one line. */
int secret_load_password(const char *path, char **out, char **err);
