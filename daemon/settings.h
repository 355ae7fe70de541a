/* The settings file (INI). */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "accounts.h"
#include "diag.h"

#define SETTINGS_DEFAULT_PATH "/etc/nats-accountd/nats-accountd.conf"
#define SETTINGS_MAX_SIZE (1024 * 1024)

/* How config mode makes the servers read their config again. */
enum reload_route {
        RELOAD_AUTO,     /* request where every server supports it (>= 2.10), else signal */
        RELOAD_REQUEST,  /* $SYS.REQ.SERVER.<id>.RELOAD */
        RELOAD_SIGNAL,   /* SIGHUP to the PID in each pid file */
        RELOAD_EXTERNAL, /* touch <fragments_dir>/.reload; something else (nats-accountd-reload.path) reloads */
};

enum log_level { LOG_LEVEL_ERR = 3, LOG_LEVEL_WARNING = 4, LOG_LEVEL_NOTICE = 5, LOG_LEVEL_INFO = 6, LOG_LEVEL_DEBUG = 7 };

struct settings {
        char *path; /* as given */
        char *dir;  /* its folder: base of relative paths */

        /* [nats] */
        char *servers;      /* comma-separated URLs, as written */
        char **server_urls; /* split, NULL-terminated */
        size_t n_servers;
        char *credentials; /* resolved path, or NULL: a .creds file or an nkey user seed file */
        char *user;          /* or a user name (config mode) */
        char *password_file; /* with its password in this file (resolved path) */
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
        char *server_config;   /* comma-separated, as written */
        char **server_configs; /* resolved, NULL-terminated: one nats-server config file per server */
        size_t n_server_configs;
        enum reload_route reload;
        char *pid_file;   /* comma-separated, as written; NULL = each server config's pid_file */
        char **pid_files; /* resolved, NULL-terminated; NULL when pid_file is */
        size_t n_pid_files;

        /* [daemon] */
        uint64_t resync_interval_usec; /* 0 = off */
        enum log_level log_level;

        /* Settings that are valid but have no effect (e.g. create_missing in
         * config mode), each with its line: shown, never fatal. */
        struct diag_list warnings;
};

/* 0; -ENOENT (missing file, one diag); -EINVAL (bad settings: every error in d
 * as FILE:LINE: ...); other negative errno from reading. */
int settings_load(const char *path, struct settings **out, struct diag_list *d);
int settings_parse(const char *text, const char *path, struct settings **out, struct diag_list *d);
void settings_free(struct settings *s);
