/* The settings file (INI). */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "accounts.h"
#include "diag.h"

#define SETTINGS_DEFAULT_PATH "/etc/nats-accountd/nats-accountd.conf"
#define SETTINGS_MAX_SIZE (1024 * 1024)

enum log_level { LOG_LEVEL_ERR = 3, LOG_LEVEL_WARNING = 4, LOG_LEVEL_NOTICE = 5, LOG_LEVEL_INFO = 6, LOG_LEVEL_DEBUG = 7 };

struct settings {
        char *path; /* as given */
        char *dir;  /* its folder: base of relative paths */

        /* [nats] */
        char *servers;      /* comma-separated URLs, as written */
        char **server_urls; /* split, NULL-terminated */
        size_t n_servers;
        char *credentials; /* resolved path, or NULL */
        char *tls_ca, *tls_cert, *tls_key;
        uint64_t request_timeout_usec;

        /* [accounts] */
        char *accounts_file;
        enum accounts_flavor mode;
        bool create_missing;
        char *state_dir;

        /* [operator] */
        char *signing_key;

        /* [config] */
        char *fragments_dir;
        char *pid_file;

        /* [daemon] */
        uint64_t resync_interval_usec; /* 0 = off */
        enum log_level log_level;
};

/* 0; -ENOENT (missing file, one diag); -EINVAL (bad settings: every error in d
 * as FILE:LINE: ...); other negative errno from reading. */
int settings_load(const char *path, struct settings **out, struct diag_list *d);
int settings_parse(const char *text, const char *path, struct settings **out, struct diag_list *d);
void settings_free(struct settings *s);
