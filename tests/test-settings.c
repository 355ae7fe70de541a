#include <errno.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "settings.h"
#include "util.h"

#define FILE_PATH "/etc/x/nats-accountd.conf"
#define SEC UINT64_C(1000000)

/* Operator mode, the default, needs a signing key; most fixtures add it. */
#define OPERATOR_KEY "[operator]\nsigning_key = op.nk\n"

static struct settings *parse_ok(const char *text) {
        struct diag_list d = { 0 };
        struct settings *s = NULL;
        int r = settings_parse(text, FILE_PATH, &s, &d);
        if (r != 0) {
                diag_print(&d, stderr);
                fail_msg("settings_parse: %d", r);
        }
        assert_int_equal(d.n, 0);
        diag_list_clear(&d);
        return s;
}

static void test_defaults(void **state) {
        struct settings *s = parse_ok(OPERATOR_KEY);
        assert_string_equal(s->path, FILE_PATH);
        assert_string_equal(s->dir, "/etc/x");
        assert_string_equal(s->servers, "nats://127.0.0.1:4222");
        assert_int_equal(s->n_servers, 1);
        assert_string_equal(s->server_urls[0], "nats://127.0.0.1:4222");
        assert_null(s->server_urls[1]);
        assert_null(s->credentials);
        assert_null(s->tls_ca);
        assert_null(s->tls_cert);
        assert_null(s->tls_key);
        assert_int_equal(s->request_timeout_usec, 2 * SEC);
        assert_string_equal(s->accounts_file, "/etc/x/accounts.yaml");
        assert_int_equal(s->mode, ACCOUNTS_OPERATOR);
        assert_true(s->create_missing);
        assert_string_equal(s->state_dir, "/var/lib/nats-accountd");
        assert_string_equal(s->signing_key, "/etc/x/op.nk");
        assert_string_equal(s->fragments_dir, "/etc/nats-server/accounts.d");
        assert_string_equal(s->server_config, "/etc/nats-server/nats-server.conf");
        assert_int_equal(s->n_server_configs, 1);
        assert_string_equal(s->server_configs[0], "/etc/nats-server/nats-server.conf");
        assert_null(s->server_configs[1]);
        assert_int_equal(s->reload, RELOAD_AUTO);
        /* No pid file: each server config's pid_file is used. */
        assert_null(s->pid_file);
        assert_int_equal(s->n_pid_files, 0);
        assert_null(s->user);
        assert_null(s->password_file);
        assert_int_equal(s->warnings.n, 0);
        assert_int_equal(s->resync_interval_usec, 300 * SEC);
        assert_int_equal(s->log_level, LOG_LEVEL_INFO);
        settings_free(s);

        /* In config mode nothing at all is required. */
        s = parse_ok("[accounts]\nmode = config\n");
        assert_int_equal(s->mode, ACCOUNTS_CONFIG);
        assert_null(s->signing_key);
        settings_free(s);
        settings_free(NULL);
}

static void test_every_key(void **state) {
        static const char text[] = "[nats]\n"
                                   "servers = tls://a.example:4443, wss://b.example/ws ,nats://[::1]:4222\n"
                                   "credentials = /secrets/sys.creds\n"
                                   "tls_ca = ca.pem\n"
                                   "tls_cert = tls/client.pem\n"
                                   "tls_key = /k/client.key\n"
                                   "request_timeout = 1m30s\n"
                                   "[accounts]\n"
                                   "file = /srv/accounts.yaml\n"
                                   "mode = config\n"
                                   "create_missing = no\n"
                                   "state_dir = state\n"
                                   "[operator]\n"
                                   "signing_key = /o/signer.nk\n"
                                   "[config]\n"
                                   "fragments_dir = /etc/ns/acc.d\n"
                                   "server_config = /etc/ns/c1.conf, c2.conf\n"
                                   "reload = External\n"
                                   "pid_file = run/ns.pid\n"
                                   "[daemon]\n"
                                   "resync_interval = 0\n"
                                   "log_level = debug\n";
        struct settings *s = parse_ok(text);
        assert_string_equal(s->servers, "tls://a.example:4443, wss://b.example/ws ,nats://[::1]:4222");
        assert_int_equal(s->n_servers, 3);
        assert_string_equal(s->server_urls[0], "tls://a.example:4443");
        assert_string_equal(s->server_urls[1], "wss://b.example/ws");
        assert_string_equal(s->server_urls[2], "nats://[::1]:4222");
        assert_null(s->server_urls[3]);
        assert_string_equal(s->credentials, "/secrets/sys.creds");
        assert_string_equal(s->tls_ca, "/etc/x/ca.pem");
        assert_string_equal(s->tls_cert, "/etc/x/tls/client.pem");
        assert_string_equal(s->tls_key, "/k/client.key");
        assert_int_equal(s->request_timeout_usec, 90 * SEC);
        assert_string_equal(s->accounts_file, "/srv/accounts.yaml");
        assert_int_equal(s->mode, ACCOUNTS_CONFIG);
        assert_false(s->create_missing);
        assert_string_equal(s->state_dir, "/etc/x/state");
        assert_string_equal(s->signing_key, "/o/signer.nk");
        assert_string_equal(s->fragments_dir, "/etc/ns/acc.d");
        assert_string_equal(s->server_config, "/etc/ns/c1.conf, c2.conf");
        assert_int_equal(s->n_server_configs, 2);
        assert_string_equal(s->server_configs[0], "/etc/ns/c1.conf");
        assert_string_equal(s->server_configs[1], "/etc/x/c2.conf");
        assert_int_equal(s->reload, RELOAD_EXTERNAL);
        assert_string_equal(s->pid_file, "run/ns.pid");
        assert_int_equal(s->n_pid_files, 1);
        assert_string_equal(s->pid_files[0], "/etc/x/run/ns.pid");
        assert_null(s->pid_files[1]);
        /* Valid but without effect in config mode: warned, with their lines. */
        assert_int_equal(s->warnings.n, 2);
        assert_int_equal(s->warnings.v[0].line, 11);
        assert_string_equal(s->warnings.v[0].msg,
                            "create_missing is ignored in config mode: accounts are created in the server's config file");
        assert_int_equal(s->warnings.v[1].line, 14);
        assert_string_equal(s->warnings.v[1].msg, "signing_key is not used in config mode");
        assert_int_equal(s->resync_interval_usec, 0);
        assert_int_equal(s->log_level, LOG_LEVEL_DEBUG);
        settings_free(s);
}

/* The example of SPEC.md, inline comments and all. */
static void test_spec_example(void **state) {
        static const char text[] =
                "[nats]\n"
                "servers = nats://127.0.0.1:4222     ; comma-separated URLs\n"
                "credentials = sys.creds              ; system-account user .creds\n"
                "; tls_ca = / tls_cert = / tls_key =  ; optional TLS\n"
                "request_timeout = 2s\n"
                "\n"
                "[accounts]\n"
                "file = accounts.yaml\n"
                "mode = operator                      ; operator | config\n"
                "create_missing = yes                 ; operator mode: create declared accounts that do not exist\n"
                "state_dir = /var/lib/nats-accountd   ; seeds of accounts this daemon created (0700 / 0600)\n"
                "\n"
                "[operator]\n"
                "signing_key = operator-signer.nk     ; seed file of the operator or one of its signing keys\n"
                "\n"
                "[config]\n"
                "fragments_dir = /etc/nats-server/accounts.d   ; <ACCOUNT>.conf written here\n"
                "pid_file = /run/nats-server/nats-server.pid\n"
                "\n"
                "# a comment line\n"
                "[daemon]\n"
                "resync_interval = 5m                 ; 0 = no periodic drift check\n"
                "log_level = info                     ; debug | info | notice | warning | err\n";
        unsetenv("CREDENTIALS_DIRECTORY");
        struct settings *s = parse_ok(text);
        assert_string_equal(s->servers, "nats://127.0.0.1:4222");
        assert_string_equal(s->credentials, "/etc/x/sys.creds");
        assert_null(s->tls_ca);
        assert_string_equal(s->accounts_file, "/etc/x/accounts.yaml");
        assert_int_equal(s->mode, ACCOUNTS_OPERATOR);
        assert_true(s->create_missing);
        assert_string_equal(s->state_dir, "/var/lib/nats-accountd");
        assert_string_equal(s->signing_key, "/etc/x/operator-signer.nk");
        assert_string_equal(s->fragments_dir, "/etc/nats-server/accounts.d");
        assert_int_equal(s->resync_interval_usec, 300 * SEC);
        assert_int_equal(s->log_level, LOG_LEVEL_INFO);
        settings_free(s);
}

static void test_relative_paths(void **state) {
        static const struct {
                const char *value;
                const char *want;
        } cases[] = {
                { "a.yaml", "/etc/x/a.yaml" },
                { "sub/dir/a.yaml", "/etc/x/sub/dir/a.yaml" },
                { "../a.yaml", "/etc/x/../a.yaml" },
                { "/abs/a.yaml", "/abs/a.yaml" },
                { "  spaced.yaml  ", "/etc/x/spaced.yaml" },
        };
        for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
                char *text = xasprintf("[accounts]\nfile = %s\nstate_dir = %s\n" OPERATOR_KEY, cases[i].value,
                                       cases[i].value);
                struct settings *s = parse_ok(text);
                assert_string_equal(s->accounts_file, cases[i].want);
                assert_string_equal(s->state_dir, cases[i].want);
                settings_free(s);
                free(text);
        }

        /* A settings file named without a folder resolves against the working directory. */
        struct diag_list d = { 0 };
        struct settings *s = NULL;
        char *cwd = getcwd(NULL, 0);
        assert_int_equal(settings_parse(OPERATOR_KEY, "nats-accountd.conf", &s, &d), 0);
        assert_string_equal(s->dir, cwd);
        char *want = path_join(cwd, "accounts.yaml");
        assert_string_equal(s->accounts_file, want);
        free(want);
        settings_free(s);
        assert_int_equal(settings_parse(OPERATOR_KEY, "./conf/nats-accountd.conf", &s, &d), 0);
        want = path_join(cwd, "conf/op.nk");
        assert_string_equal(s->signing_key, want);
        free(want);
        settings_free(s);
        free(cwd);
}

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw) {
        return remove(path);
}

static void test_credentials_directory(void **state) {
        char dir[] = "/tmp/test-settings.XXXXXX";
        assert_non_null(mkdtemp(dir));
        char *in_dir = path_join(dir, "sys.creds");
        FILE *f = fopen(in_dir, "w");
        assert_non_null(f);
        fclose(f);
        assert_int_equal(setenv("CREDENTIALS_DIRECTORY", dir, 1), 0);

        static const char text[] = "[nats]\n"
                                   "credentials = sys.creds\n" /* in the directory */
                                   "tls_key = tls.key\n"       /* not there: next to the settings */
                                   "tls_cert = sys.creds\n"    /* not a secret: never looked up there */
                                   "[operator]\n"
                                   "signing_key = ./sys.creds\n"; /* not a bare name */
        struct settings *s = parse_ok(text);
        assert_string_equal(s->credentials, in_dir);
        assert_string_equal(s->tls_key, "/etc/x/tls.key");
        assert_string_equal(s->tls_cert, "/etc/x/sys.creds");
        assert_string_equal(s->signing_key, "/etc/x/./sys.creds");
        settings_free(s);

        /* Without the variable, the same text stays next to the settings file. */
        assert_int_equal(unsetenv("CREDENTIALS_DIRECTORY"), 0);
        s = parse_ok(text);
        assert_string_equal(s->credentials, "/etc/x/sys.creds");
        settings_free(s);

        free(in_dir);
        assert_int_equal(nftw(dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS), 0);
}

static void test_values(void **state) {
        static const struct {
                const char *line;
                size_t offset;
                int want;
        } cases[] = {
                { "[accounts]\ncreate_missing = yes", offsetof(struct settings, create_missing), true },
                { "[accounts]\ncreate_missing = No", offsetof(struct settings, create_missing), false },
                { "[accounts]\ncreate_missing = TRUE", offsetof(struct settings, create_missing), true },
                { "[accounts]\ncreate_missing = false", offsetof(struct settings, create_missing), false },
                { "[accounts]\ncreate_missing = on", offsetof(struct settings, create_missing), true },
                { "[accounts]\ncreate_missing = Off", offsetof(struct settings, create_missing), false },
                { "[accounts]\ncreate_missing = 1", offsetof(struct settings, create_missing), true },
                { "[accounts]\ncreate_missing = 0", offsetof(struct settings, create_missing), false },
                { "[daemon]\nlog_level = debug", offsetof(struct settings, log_level), LOG_LEVEL_DEBUG },
                { "[daemon]\nlog_level = info", offsetof(struct settings, log_level), LOG_LEVEL_INFO },
                { "[daemon]\nlog_level = notice", offsetof(struct settings, log_level), LOG_LEVEL_NOTICE },
                { "[daemon]\nlog_level = warning", offsetof(struct settings, log_level), LOG_LEVEL_WARNING },
                { "[daemon]\nlog_level = err", offsetof(struct settings, log_level), LOG_LEVEL_ERR },
                { "[accounts]\nmode = operator", offsetof(struct settings, mode), ACCOUNTS_OPERATOR },
                { "[accounts]\nmode = config", offsetof(struct settings, mode), ACCOUNTS_CONFIG },
        };
        for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
                char *text = xasprintf("%s\n" OPERATOR_KEY, cases[i].line);
                struct settings *s = parse_ok(text);
                const char *field = (const char *)s + cases[i].offset;
                int got = cases[i].offset == offsetof(struct settings, create_missing) ? *(const bool *)field
                                                                                       : *(const int *)field;
                if (got != cases[i].want)
                        fail_msg("\"%s\": got %d, want %d", cases[i].line, got, cases[i].want);
                settings_free(s);
                free(text);
        }

        struct settings *s = parse_ok("[nats]\nrequest_timeout = 500ms\n[daemon]\nresync_interval = 1h\n" OPERATOR_KEY);
        assert_int_equal(s->request_timeout_usec, 500000);
        assert_int_equal(s->resync_interval_usec, 3600 * SEC);
        settings_free(s);
        s = parse_ok("[nats]\nrequest_timeout = 5m\n" OPERATOR_KEY);
        assert_int_equal(s->request_timeout_usec, 300 * SEC);
        settings_free(s);
}

/* Lines longer than inih's buffer, CRLF endings, a BOM, indentation, "key: value". */
static void test_layout(void **state) {
        char *servers = xstrdup("nats://n0.example.com:4222");
        for (int i = 1; i < 20; i++) {
                char *next = xasprintf("%s,nats://n%d.example.com:4222", servers, i);
                free(servers);
                servers = next;
        }
        char *comment = malloc(400);
        memset(comment, 'c', 399);
        comment[399] = 0;
        char *text = xasprintf("\xef\xbb\xbf[nats]\r\n"
                               "# %s\r\n"
                               "servers = %s ; the cluster\r\n"
                               "  request_timeout: 3s\r\n"
                               "\t[daemon]\r\n"
                               "log_level=warning\r\n" OPERATOR_KEY,
                               comment, servers);
        struct settings *s = parse_ok(text);
        assert_int_equal(s->n_servers, 20);
        assert_string_equal(s->servers, servers);
        assert_string_equal(s->server_urls[19], "nats://n19.example.com:4222");
        assert_int_equal(s->request_timeout_usec, 3 * SEC);
        assert_int_equal(s->log_level, LOG_LEVEL_WARNING);
        settings_free(s);
        free(text);

        /* The line after a long one keeps its number. */
        text = xasprintf("[nats]\nservers = %s\nbogus = 1\n" OPERATOR_KEY, servers);
        struct diag_list d = { 0 };
        assert_int_equal(settings_parse(text, FILE_PATH, &s, &d), -EINVAL);
        assert_int_equal(d.n, 1);
        assert_int_equal(d.v[0].line, 3);
        diag_list_clear(&d);
        free(text);
        free(servers);
        free(comment);
}

struct bad_case {
        const char *text;
        int line;
        const char *msg;
};

static void test_bad_input(void **state) {
        static const struct bad_case cases[] = {
                { "[foo]\n", 1,
                  "unknown section [foo]; expected one of [nats], [accounts], [operator], [config], [daemon]" },
                { "[nats]\nbar = 1\n", 2,
                  "unknown key `bar` in [nats]; expected one of servers, credentials, user, password_file, tls_ca, tls_cert, "
                  "tls_key, "
                  "request_timeout" },
                { "[nats]\nsigning_key = k\n", 2, "unknown key `signing_key` in [nats]; expected one of" },
                { "[nats]\nsigning_key = k\n", 2, "`signing_key` belongs in [operator]" },
                { "[nats]\nrequest_timeout = x\n", 2,
                  "request_timeout: expected a duration such as 2s or 500ms, got \"x\"" },
                { "[nats]\nrequest_timeout = 0\n", 2, "request_timeout: must be more than 0 and at most 5m, got \"0\"" },
                { "[nats]\nrequest_timeout = 5m1s\n", 2, "request_timeout: must be more than 0 and at most 5m" },
                { "[nats]\nrequest_timeout = 2s\n\nrequest_timeout = 3s\n", 4,
                  "duplicate key `request_timeout` in [nats] (first at line 2)" },
                { "[nats]\nservers = nats://a\n[daemon]\n[nats]\nservers = nats://b\n", 5,
                  "duplicate key `servers` in [nats] (first at line 2)" },
                { "servers = nats://a\n[nats]\n", 1, "key `servers` is outside any section" },
                { "[nats\nservers = nats://a\n", 1, "expected `]` at the end of the section header" },
                { "[nats ; x]\nservers = nats://a\n", 1, "expected `]` at the end of the section header" },
                { "[bogus\nservers = nats://a\n", 1, "expected `]` at the end of the section header" },
                { "[nats] servers = nats://a\n", 1, "unexpected `servers = nats://a` after the section header" },
                { "[nats]\njunk\n", 2, "expected `key = value`, got `junk`" },
                { "[nats]\nservers ; = nats://a\n", 2, "expected `key = value`" },
                { "[nats]\n= nats://a\n", 2, "expected a key name before `=`" },
                { "[accounts]\nmode = both\n", 2, "mode: expected operator or config, got \"both\"" },
                { "[daemon]\nlog_level = verbose\n", 2,
                  "log_level: expected one of debug, info, notice, warning, err, got \"verbose\"" },
                { "[daemon]\nresync_interval = 500ms\n", 2, "resync_interval: must be 0 (off) or at least 1s" },
                { "[daemon]\nresync_interval = soon\n", 2, "resync_interval: expected a duration" },
                { "[accounts]\ncreate_missing = maybe\n", 2, "create_missing: expected yes or no" },
                { "[accounts]\nstate_dir =\n", 2, "state_dir: expected a path, got \"\"" },
                { "[nats]\nservers =\n", 2, "servers: expected a comma-separated list" },
                { "[nats]\nservers = http://a:4222\n", 2,
                  "servers: \"http://a:4222\" must start with nats://, tls://, ws:// or wss://" },
                { "[nats]\nservers = nats://\n", 2, "servers: \"nats://\" has no host" },
                { "[nats]\nservers = nats://:4222\n", 2, "servers: \"nats://:4222\" has no host" },
                { "[nats]\nservers = nats://a,,nats://b\n", 2, "servers: empty entry in the list" },
                { "[nats]\nservers = nats://a:99999\n", 2, "has an invalid port (expected 1-65535)" },
                { "[nats]\nservers = nats://a:42x\n", 2, "has an invalid port" },
                { "[nats]\nservers = nats://sys:secret@a:4222\n", 2, "contains a user name or password" },
                { "[nats]\nservers = nats://a # the server\n", 2, "contains a space or control character" },
                { "[nats]\ntls_cert = c.pem\n", 2, "[nats] tls_cert is set but tls_key is not" },
                { "[nats]\n\ntls_key = k.pem\n", 3, "[nats] tls_key is set but tls_cert is not" },
                { "[accounts]\nmode = operator\n", 0, "[operator] signing_key is required in operator mode" },
                { "", 0, "[operator] signing_key is required in operator mode" },
                { "[operator]\nsigning_key =\n", 2, "[operator] signing_key is required in operator mode" },
                { "[nats]\nrequest_timeout = \x01\x02\n", 2, "got \"??\"" },
                { "[accounts]\nmode = config\n[nats]\nuser = accountd\n", 4,
                  "[nats] user is set but password_file is not; a password user needs both" },
                { "[accounts]\nmode = config\n[nats]\npassword_file = p\n", 4,
                  "[nats] password_file is set but user is not" },
                { "[accounts]\nmode = config\n[nats]\ncredentials = a.nk\nuser = u\npassword_file = p\n", 4,
                  "[nats] credentials and user/password_file are two ways to connect; keep one" },
                { "[nats]\nuser = u\npassword_file = p\n", 2,
                  "[nats] user/password_file: operator mode servers need a .creds file" },
                { "[accounts]\nmode = config\n[nats]\nuser = a b\n", 4,
                  "user: expected a user name without spaces or control characters, got \"a b\"" },
                { "[accounts]\nmode = config\n[config]\nserver_config =\n", 4,
                  "[config] server_config: config mode needs the nats-server config file(s)" },
                { "[config]\nserver_config = a.conf,,b.conf\n", 2, "server_config: empty entry in the list" },
                { "[config]\npid_file = a.pid,\n", 2, "pid_file: empty entry in the list" },
                { "[config]\nreload = hup\n", 2, "reload: expected one of auto, request, signal, external, got \"hup\"" },
        };
        for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
                const struct bad_case *c = &cases[i];
                /* Every fixture is complete but for the error it shows. */
                bool add_key = !strstr(c->msg, "signing_key is required");
                char *text = xasprintf("%s%s", c->text, add_key ? "\n" OPERATOR_KEY : "");
                struct diag_list d = { 0 };
                struct settings *s = (struct settings *)0x1;
                int r = settings_parse(text, FILE_PATH, &s, &d);
                if (r != -EINVAL || d.n != 1) {
                        diag_print(&d, stderr);
                        fail_msg("case %zu (%s): r=%d with %zu errors, want -EINVAL and 1", i, c->text, r, d.n);
                }
                assert_ptr_equal(s, (struct settings *)0x1);
                char *got = diag_format(&d.v[0]);
                char *prefix = c->line ? xasprintf(FILE_PATH ":%d: ", c->line) : xstrdup(FILE_PATH ": ");
                if (!str_startswith(got, prefix) || !strstr(got, c->msg))
                        fail_msg("case %zu: got\n  %s\nwant\n  %s...%s", i, got, prefix, c->msg);
                assert_int_equal(d.v[0].column, 0);
                free(prefix);
                free(got);
                free(text);
                diag_list_clear(&d);
        }
}

/* Every error of a file, in order, and nothing returned. */
static void test_all_errors(void **state) {
        static const char text[] = "[nats]\n"
                                   "servers = http://a\n"
                                   "request_timeout = never\n"
                                   "[bogus]\n"
                                   "whatever = 1\n"
                                   "[daemon]\n"
                                   "log_level = loud\n"
                                   "nonsense\n";
        struct diag_list d = { 0 };
        struct settings *s = NULL;
        assert_int_equal(settings_parse(text, FILE_PATH, &s, &d), -EINVAL);
        assert_null(s);
        static const int lines[] = { 2, 3, 4, 7, 8, 0 };
        assert_int_equal(d.n, ARRAY_SIZE(lines));
        for (size_t i = 0; i < ARRAY_SIZE(lines); i++)
                assert_int_equal(d.v[i].line, lines[i]);
        diag_list_clear(&d);
}

static void test_load(void **state) {
        char dir[] = "/tmp/test-settings.XXXXXX";
        assert_non_null(mkdtemp(dir));
        char *path = path_join(dir, "nats-accountd.conf");
        struct diag_list d = { 0 };
        struct settings *s = NULL;

        assert_int_equal(settings_load(path, &s, &d), -ENOENT);
        assert_int_equal(d.n, 1);
        char *got = diag_format(&d.v[0]);
        char *want = xasprintf("%s: No such file or directory", path);
        assert_string_equal(got, want);
        free(got);
        free(want);
        diag_list_clear(&d);

        FILE *f = fopen(path, "w");
        assert_non_null(f);
        fputs("[nats]\nservers = nats://h:4222\n" OPERATOR_KEY, f);
        fclose(f);
        assert_int_equal(settings_load(path, &s, &d), 0);
        assert_int_equal(d.n, 0);
        assert_string_equal(s->server_urls[0], "nats://h:4222");
        assert_string_equal(s->dir, dir);
        settings_free(s);

        f = fopen(path, "w");
        fwrite("[nats]\n\0x = 1\n", 1, 14, f);
        fclose(f);
        assert_int_equal(settings_load(path, &s, &d), -EINVAL);
        assert_int_equal(d.n, 1);
        assert_int_equal(d.v[0].line, 2);
        assert_non_null(strstr(d.v[0].msg, "NUL"));
        diag_list_clear(&d);

        f = fopen(path, "w");
        for (size_t i = 0; i < SETTINGS_MAX_SIZE / 8 + 1; i++)
                fputs("#comment", f);
        fclose(f);
        assert_int_equal(settings_load(path, &s, &d), -EFBIG);
        assert_int_equal(d.n, 1);
        assert_non_null(strstr(d.v[0].msg, "larger than"));
        diag_list_clear(&d);

        assert_int_equal(settings_load(dir, &s, &d), -EISDIR);
        assert_int_equal(d.n, 1);
        diag_list_clear(&d);

        free(path);
        assert_int_equal(nftw(dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS), 0);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_defaults),
                cmocka_unit_test(test_every_key),
                cmocka_unit_test(test_spec_example),
                cmocka_unit_test(test_relative_paths),
                cmocka_unit_test(test_credentials_directory),
                cmocka_unit_test(test_values),
                cmocka_unit_test(test_layout),
                cmocka_unit_test(test_bad_input),
                cmocka_unit_test(test_all_errors),
                cmocka_unit_test(test_load),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
