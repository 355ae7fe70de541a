/* nats-accountd: command line. */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sysexits.h>

#include "accounts.h"
#include "apply.h"
#include "backend.h"
#include "daemon.h"
#include "diag.h"
#include "diff.h"
#include "init.h"
#include "jwt.h"
#include "natsconn.h"
#include "observe.h"
#include "preflight.h"
#include "report.h"
#include "secrets.h"
#include "settings.h"
#include "statedir.h"
#include "util.h"

static const char usage_text[] =
        "Usage:\n"
        "  nats-accountd [-c FILE] check                    validate settings and accounts file, no server contact\n"
        "  nats-accountd [-c FILE] plan [--json] [--detailed-exitcode]\n"
        "                                                   show what apply would change\n"
        "  nats-accountd [-c FILE] apply [--json]           one reconcile pass, then exit\n"
        "  nats-accountd [-c FILE] run                      the daemon: keep the servers in line with the file\n"
        "  nats-accountd init DIR [--mode operator|config] [--port N]\n"
        "                                                   write a ready sandbox into DIR\n"
        "  nats-accountd [-c FILE] user-creds ACCOUNT USER  print a user .creds for an account nats-accountd created\n"
        "  nats-accountd --help | --version\n"
        "\n"
        "Options:\n"
        "  -c, --config FILE   settings file (default " SETTINGS_DEFAULT_PATH ")\n"
        "  -h, --help          show this help\n"
        "  -V, --version       show the version\n"
        "\n"
        "Exit codes: 0 ok, 64 usage, 65 bad accounts file, 66 missing file, 69 server unreachable,\n"
        "77 permission (secret file readable by group or others), 78 bad settings.\n"
        "See nats-accountd(8), nats-accountd.conf(5), nats-accountd.accounts(5).\n";

struct cli {
        const char *config;
        int argc;
        char **argv; /* the command and its arguments */
};

__attribute__((format(printf, 1, 2))) static int usage_error(const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        fputs("nats-accountd: ", stderr);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputs("\nTry 'nats-accountd --help'.\n", stderr);
        return EX_USAGE;
}

/* Map a loader's result to the sysexits code of SPEC.md, after printing its diagnostics. */
static int report_load(int r, struct diag_list *d, int invalid_code) {
        diag_print(d, stderr);
        diag_list_clear(d);
        return exit_code_for(r, invalid_code);
}

/* Settings, then every secret they name (preflight.h). */
static int load_settings(const struct cli *cli, struct settings **out) {
        struct diag_list d = { 0 };
        int r = settings_load(cli->config, out, &d);
        int code = report_load(r, &d, EX_CONFIG);
        if (code)
                return code;
        for (size_t i = 0; i < (*out)->warnings.n; i++) {
                char *w = diag_format(&(*out)->warnings.v[i]);
                fprintf(stderr, "nats-accountd: warning: %s\n", w);
                free(w);
        }
        char *err = NULL;
        r = preflight_secrets(*out, NULL, &err);
        if (r < 0) {
                fprintf(stderr, "nats-accountd: %s\n", err);
                free(err);
                settings_free(*out);
                *out = NULL;
                return preflight_exit_code(r);
        }
        return 0;
}

static int load_accounts(const struct settings *s, struct accounts **out) {
        struct diag_list d = { 0 };
        int r = accounts_load(s->accounts_file, s->mode, out, &d);
        return report_load(r, &d, EX_DATAERR);
}

/* The mode's backend, configured: operator mode reads its signing key,
 * config mode checks its fragments folder and the servers' config files. */
static int open_backend(const struct settings *s, bool will_apply, struct backend **out) {
        char *err = NULL;
        int r = backend_new(s, will_apply, out, &err);
        if (r < 0) {
                fprintf(stderr, "nats-accountd: %s\n", err);
                free(err);
                return preflight_exit_code(r);
        }
        return 0;
}

static int cmd_check(const struct cli *cli) {
        if (cli->argc > 1)
                return usage_error("check: unexpected argument '%s'", cli->argv[1]);
        struct settings *s = NULL;
        int code = load_settings(cli, &s);
        if (code)
                return code;
        struct backend *b = NULL;
        struct accounts *a = NULL;
        if ((code = open_backend(s, true, &b)) == 0)
                code = load_accounts(s, &a);
        if (code == 0)
                code = b->ops->check(b, a, stderr);
        if (code == 0)
                printf("%s: %zu account%s OK\n", s->accounts_file, a->n, a->n == 1 ? "" : "s");
        accounts_free(a);
        backend_free(b);
        settings_free(s);
        return code;
}

static int connect_servers(const struct settings *s, struct natsconn **c) {
        char *err = NULL;
        int r = natsconn_open(s, NULL, NULL, c, &err);
        if (r < 0) {
                fprintf(stderr, "nats-accountd: %s\n", err ? err : strerror(-r));
                free(err);
                return EX_UNAVAILABLE;
        }
        return 0;
}

static int cmd_plan_apply(const struct cli *cli, bool do_apply) {
        bool json = false, detailed = false;
        for (int i = 1; i < cli->argc; i++) {
                if (strcmp(cli->argv[i], "--json") == 0)
                        json = true;
                else if (!do_apply && strcmp(cli->argv[i], "--detailed-exitcode") == 0)
                        detailed = true;
                else
                        return usage_error("unexpected argument '%s'", cli->argv[i]);
        }
        struct settings *s = NULL;
        struct accounts *a = NULL;
        struct natsconn *c = NULL;
        struct backend *b = NULL;
        struct plan *p = NULL;
        char *err = NULL;
        int code = load_settings(cli, &s);
        if (code)
                return code;
        if ((code = load_accounts(s, &a)) || (code = open_backend(s, do_apply, &b)) ||
            (code = connect_servers(s, &c)))
                goto out;
        int r = b->ops->plan(b, c, a, true, &p, &err);
        if (r < 0) {
                fprintf(stderr, "nats-accountd: %s\n", err ? err : strerror(-r));
                code = EX_UNAVAILABLE;
                goto out;
        }
        if (do_apply && (r = b->ops->apply(b, c, p, NULL, NULL, &err)) < 0) {
                fprintf(stderr, "nats-accountd: %s\n", err ? err : strerror(-r));
                code = r == -EACCES ? EX_NOPERM : EX_UNAVAILABLE;
                goto out;
        }
        if (json) {
                report_json(p, stdout);
        } else {
                /* stdout has exactly one line per account (and its warnings); the count goes beside it. */
                report_text(p, stdout);
                fflush(stdout); /* the summary follows the lines it counts, also in a shared pipe */
                report_summary(p, do_apply, stderr);
        }
        bool errors = false, pending = false;
        for (size_t i = 0; i < p->n; i++) {
                errors |= p->v[i].action == PLAN_ERROR;
                pending |= plan_action_changes(p->v[i].action);
        }
        if (errors)
                code = 1;
        else if (!do_apply && detailed && pending)
                code = 2;
out:
        free(err);
        plan_free(p);
        backend_free(b);
        natsconn_close(c);
        accounts_free(a);
        settings_free(s);
        return code;
}

static int cmd_plan(const struct cli *cli) {
        return cmd_plan_apply(cli, false);
}

static int cmd_apply(const struct cli *cli) {
        return cmd_plan_apply(cli, true);
}

static int cmd_run(const struct cli *cli) {
        if (cli->argc > 1)
                return usage_error("run: unexpected argument '%s'", cli->argv[1]);
        return daemon_run(cli->config);
}

static int cmd_init(const struct cli *cli) {
        const char *dir = NULL;
        int port = 4222;
        bool config = false;
        for (int i = 1; i < cli->argc; i++) {
                const char *arg = cli->argv[i];
                if (strcmp(arg, "--mode") == 0 || strncmp(arg, "--mode=", 7) == 0) {
                        const char *v = arg[6] == '=' ? arg + 7 : (i + 1 < cli->argc ? cli->argv[++i] : NULL);
                        if (v && strcmp(v, "config") == 0)
                                config = true;
                        else if (v && strcmp(v, "operator") == 0)
                                config = false;
                        else
                                return usage_error("init: --mode takes operator or config (got '%s')", v ? v : "");
                } else if (strcmp(arg, "--port") == 0 || strncmp(arg, "--port=", 7) == 0) {
                        const char *v = arg[6] == '=' ? arg + 7 : (i + 1 < cli->argc ? cli->argv[++i] : NULL);
                        char *end = NULL;
                        long n = v ? strtol(v, &end, 10) : 0;
                        if (!v || !*v || *end || (n != INIT_RANDOM_PORT && (n < 1 || n > 65535)))
                                return usage_error("init: --port takes 1..65535, or -1 to let nats-server pick (got '%s')",
                                                   v ? v : "");
                        port = (int)n;
                } else if (arg[0] == '-' && arg[1]) {
                        return usage_error("init: unknown option '%s'", arg);
                } else if (!dir) {
                        dir = arg;
                } else {
                        return usage_error("init: unexpected argument '%s'", arg);
                }
        }
        if (!dir)
                return usage_error("%s", "init: missing DIR");
        char *err = NULL;
        int r = config ? init_sandbox_config(dir, port, &err) : init_sandbox(dir, port, &err);
        if (r < 0) {
                fprintf(stderr, "nats-accountd: init: %s\n", err);
                free(err);
                return r == -EEXIST ? EX_CANTCREAT : EX_IOERR;
        }
        printf("Sandbox written to %s\n"
               "Start the server:  nats-server -c %s/nats-server.conf\n"
               "Then:              nats-accountd -c %s/nats-accountd.conf plan\n",
               dir, dir, dir);
        return 0;
}

static int cmd_user_creds(const struct cli *cli) {
        if (cli->argc != 3)
                return usage_error("%s", "user-creds: expected ACCOUNT USER");
        const char *why = NULL;
        if (!account_name_valid(cli->argv[2], &why))
                return usage_error("user-creds: bad user name: %s", why);
        struct settings *s = NULL;
        int code = load_settings(cli, &s);
        if (code)
                return code;
        if (s->mode == ACCOUNTS_CONFIG) {
                settings_free(s);
                return usage_error("%s", "user-creds: operator mode only; in config mode an account's users are "
                                         "written in nats-server.conf");
        }
        struct nkey acct, user;
        char *err = NULL;
        int r = statedir_load(s->state_dir, cli->argv[1], &acct, &err);
        if (r < 0) {
                fprintf(stderr, "nats-accountd: user-creds: %s\n", err);
                free(err);
                settings_free(s);
                return r == -ENOENT ? EX_NOINPUT : r == -EACCES ? EX_NOPERM : EX_DATAERR;
        }
        nkey_generate(NKEY_USER, &user);
        json_t *claims = jwt_user_claims_new(user.pub, cli->argv[2], NULL);
        char *jwt = jwt_encode(claims, &acct);
        json_decref(claims);
        char seed[NKEY_SEED_LEN + 1];
        nkey_seed_encode(&user, seed);
        char *creds = jwt ? creds_format(jwt, seed) : NULL;
        sodium_memzero(seed, sizeof(seed));
        if (creds)
                fputs(creds, stdout);
        else
                fprintf(stderr, "nats-accountd: user-creds: could not sign the user JWT\n");
        creds_free(creds);
        free(jwt);
        nkey_wipe(&acct);
        nkey_wipe(&user);
        settings_free(s);
        return creds ? 0 : EX_SOFTWARE;
}

struct command {
        const char *name;
        int (*run)(const struct cli *cli);
};

static const struct command commands[] = {
        { "check", cmd_check },
        { "plan", cmd_plan },
        { "apply", cmd_apply },
        { "run", cmd_run },
        { "init", cmd_init },
        { "user-creds", cmd_user_creds },
};

int main(int argc, char **argv) {
        static const struct option options[] = {
                { "config", required_argument, NULL, 'c' },
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, 'V' },
                { 0 },
        };
        /* The process holds the operator's signing key and account seeds: no
         * core dump and no ptrace by another process of the same user. */
        (void)prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
        struct cli cli = { .config = SETTINGS_DEFAULT_PATH };
        int c;
        opterr = 0;
        /* '+': stop at the command; its own options are parsed by the command. */
        while ((c = getopt_long(argc, argv, "+:c:hV", options, NULL)) != -1) {
                switch (c) {
                case 'c':
                        cli.config = optarg;
                        break;
                case 'h':
                        fputs(usage_text, stdout);
                        return 0;
                case 'V':
                        printf("nats-accountd %s\n", VERSION);
                        return 0;
                case ':':
                        return usage_error("option '%s' needs a value", argv[optind - 1]);
                default:
                        return usage_error("unknown option '%s'", argv[optind - 1]);
                }
        }
        if (optind >= argc)
                return usage_error("%s", "missing command");
        cli.argc = argc - optind;
        cli.argv = argv + optind;
        for (size_t i = 0; i < ARRAY_SIZE(commands); i++)
                if (strcmp(commands[i].name, cli.argv[0]) == 0)
                        return commands[i].run(&cli);
        return usage_error("unknown command '%s'", cli.argv[0]);
}
