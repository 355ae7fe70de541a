#include "init.h"

#include <errno.h>
#include <stdio.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "accounts.h"
#include "fragments.h"
#include "jwt.h"
#include "nkeys.h"
#include "secrets.h"
#include "util.h"

/* The installed unit runs with a read-only /etc; its seeds go to StateDirectory. */
#define SYSTEM_DIR "/etc/nats-accountd"
#define SYSTEM_STATE_DIR "/var/lib/nats-accountd"

static const char accounts_example[] =
        "# Accounts that nats-accountd keeps in line; see nats-accountd.accounts(5).\n"
        "# Edit this file while `nats-accountd run` is running and watch the limits follow.\n"
        "accounts:\n"
        "  APP:\n"
        "    jetstream:\n"
        "      max_memory: 64MiB\n"
        "      max_store: 256MiB\n"
        "      max_streams: 10\n"
        "      max_consumers: 100\n"
        "  ORDERS:\n"
        "    jetstream:\n"
        "      tiers:\n"
        "        R1: { max_memory: 32MiB, max_store: 128MiB }\n"
        "  LEGACY:\n"
        "    jetstream: disabled\n";

static int write_file(const char *dir, const char *name, const char *text, unsigned mode, char **err) {
        char *path = path_join(dir, name);
        int r = file_write_atomic(path, text, strlen(text), mode);
        if (r < 0)
                *err = xasprintf("cannot write %s: %s", path, strerror(-r));
        free(path);
        return r;
}

static int make_dir(const char *path, unsigned mode, char **err) {
        if (mkdir(path, mode) < 0 && errno != EEXIST) {
                int r = -errno;
                *err = xasprintf("cannot create %s: %s", path, strerror(-r));
                return r;
        }
        return 0;
}

static int write_seed(const char *dir, const char *name, const char *what, const struct nkey *k, char **err) {
        char seed[NKEY_SEED_LEN + 1];
        nkey_seed_encode(k, seed);
        char *text = xasprintf("# %s (%s)\n%s\n", what, k->pub, seed);
        int r = write_file(dir, name, text, 0600, err);
        secret_free(text, strlen(text));
        sodium_memzero(seed, sizeof(seed));
        return r;
}

/* The sandbox's folder, made if missing, as an absolute path; -EEXIST when
 * one of the files a sandbox is made of is there already. */
static int sandbox_dir(const char *dir_arg, const char *const *ours, size_t n, char **out, char **err) {
        int r = make_dir(dir_arg, 0755, err);
        if (r < 0)
                return r;
        char *dir = realpath(dir_arg, NULL);
        if (!dir) {
                r = -errno;
                *err = xasprintf("cannot resolve %s: %s", dir_arg, strerror(-r));
                return r;
        }
        for (size_t i = 0; i < n; i++) {
                char *p = path_join(dir, ours[i]);
                bool exists = access(p, F_OK) == 0;
                free(p);
                if (exists) {
                        *err = xasprintf("%s/%s already exists; refusing to overwrite a sandbox", dir, ours[i]);
                        free(dir);
                        return -EEXIST;
                }
        }
        *out = dir;
        return 0;
}

int init_sandbox(const char *dir_arg, int port, char **err) {
        static const char *const ours[] = { "nats-accountd.conf", "nats-server.conf", "operator.jwt", "sys.creds",
                                            "operator-signer.nk", "accounts.yaml" };
        char *dir = NULL;
        int r = sandbox_dir(dir_arg, ours, ARRAY_SIZE(ours), &dir, err);
        if (r < 0)
                return r;

        struct nkey op, signer, sys, sys_user;
        nkey_generate(NKEY_OPERATOR, &op);
        nkey_generate(NKEY_OPERATOR, &signer);
        nkey_generate(NKEY_ACCOUNT, &sys);
        nkey_generate(NKEY_USER, &sys_user);

        char *op_jwt = NULL, *sys_jwt = NULL, *user_jwt = NULL, *creds = NULL, *server_conf = NULL, *daemon_conf = NULL;
        char *jwt_dir = NULL, *js_dir = NULL, *state_dir = NULL;
        const char *signing_keys[] = { signer.pub };
        json_t *claims = jwt_operator_claims_new(op.pub, "nats-accountd-sandbox", signing_keys, 1, sys.pub);
        op_jwt = jwt_encode(claims, &op);
        json_decref(claims);
        claims = jwt_account_claims_new(sys.pub, "SYS");
        sys_jwt = jwt_encode(claims, &signer);
        json_decref(claims);
        claims = jwt_user_claims_new(sys_user.pub, "sys", NULL);
        user_jwt = jwt_encode(claims, &sys);
        json_decref(claims);
        char user_seed[NKEY_SEED_LEN + 1];
        nkey_seed_encode(&sys_user, user_seed);
        creds = op_jwt && sys_jwt && user_jwt ? creds_format(user_jwt, user_seed) : NULL;
        sodium_memzero(user_seed, sizeof(user_seed));
        if (!creds) {
                *err = xstrdup("cannot build the sandbox's JWTs");
                r = -EINVAL;
                goto out;
        }

        jwt_dir = path_join(dir, "jwt");
        js_dir = path_join(dir, "jetstream");
        state_dir = strcmp(dir, SYSTEM_DIR) == 0 ? xstrdup(SYSTEM_STATE_DIR) : path_join(dir, "state");
        if ((r = make_dir(jwt_dir, 0700, err)) < 0 || (r = make_dir(js_dir, 0700, err)) < 0)
                goto out;

        char listen[32];
        snprintf(listen, sizeof(listen), "127.0.0.1:%d", port);
        server_conf = xasprintf(
                "# nats-server in operator mode with a full resolver, made by nats-accountd init.\n"
                "# Start it with: nats-server -c %s/nats-server.conf\n"
                "server_name: nats-accountd-sandbox\n"
                "listen: %s\n"
                "%s%s%s"
                "jetstream {\n"
                "  store_dir: \"%s\"\n"
                "  max_mem: 1G\n"
                "  max_file: 10G\n"
                "}\n"
                "operator: \"%s/operator.jwt\"\n"
                "system_account: %s\n"
                "resolver {\n"
                "  type: full\n"
                "  dir: \"%s\"\n"
                "  allow_delete: false\n"
                "  interval: \"2m\"\n"
                "  timeout: \"1.9s\"\n"
                "}\n"
                "resolver_preload {\n"
                "  %s: \"%s\"\n"
                "}\n",
                dir, listen, port == INIT_RANDOM_PORT ? "ports_file_dir: \"" : "",
                port == INIT_RANDOM_PORT ? dir : "", port == INIT_RANDOM_PORT ? "\"\n" : "", js_dir, dir, sys.pub,
                jwt_dir, sys.pub, sys_jwt);
        daemon_conf = xasprintf(
                "# nats-accountd settings, made by nats-accountd init; see nats-accountd.conf(5).\n"
                "[nats]\n"
                "servers = nats://127.0.0.1:%d\n"
                "credentials = sys.creds\n"
                "request_timeout = 2s\n"
                "\n"
                "[accounts]\n"
                "file = accounts.yaml\n"
                "mode = operator\n"
                "create_missing = yes\n"
                "state_dir = %s\n"
                "\n"
                "[operator]\n"
                "signing_key = operator-signer.nk\n"
                "\n"
                "[daemon]\n"
                "resync_interval = 5m\n"
                "log_level = info\n",
                port == INIT_RANDOM_PORT ? 4222 : port, state_dir);

        char *op_file = xasprintf("%s\n", op_jwt);
        r = write_file(dir, "operator.jwt", op_file, 0644, err);
        free(op_file);
        if (r < 0 || (r = write_seed(dir, "operator.nk", "operator identity key: keep it offline", &op, err)) < 0 ||
            (r = write_seed(dir, "operator-signer.nk", "operator signing key", &signer, err)) < 0 ||
            (r = write_file(dir, "sys.creds", creds, 0600, err)) < 0 ||
            (r = write_file(dir, "nats-server.conf", server_conf, 0644, err)) < 0 ||
            (r = write_file(dir, "accounts.yaml", accounts_example, 0644, err)) < 0 ||
            (r = write_file(dir, "nats-accountd.conf", daemon_conf, 0644, err)) < 0)
                goto out;
out:
        nkey_wipe(&op);
        nkey_wipe(&signer);
        nkey_wipe(&sys);
        nkey_wipe(&sys_user);
        creds_free(creds);
        free(op_jwt);
        free(sys_jwt);
        free(user_jwt);
        free(server_conf);
        free(daemon_conf);
        free(jwt_dir);
        free(js_dir);
        free(state_dir);
        free(dir);
        return r;
}

/* ---- config mode ---- */

static const char config_accounts_example[] =
        "# Accounts that nats-accountd keeps in line; see nats-accountd.accounts(5).\n"
        "# Config mode: each account is defined in nats-server.conf, whose block\n"
        "# includes accounts.d/<ACCOUNT>.conf, which nats-accountd writes.\n"
        "# Edit this file while `nats-accountd run` is running and watch the limits follow.\n"
        "accounts:\n"
        "  APP:\n"
        "    jetstream:\n"
        "      max_memory: 64MiB\n"
        "      max_store: 256MiB\n"
        "      max_streams: 10\n"
        "      max_consumers: 100\n"
        "  ORDERS:\n"
        "    jetstream:\n"
        "      max_memory: 32MiB\n"
        "      max_store: 128MiB\n"
        "  LEGACY:\n"
        "    jetstream: disabled\n";

static const char *const config_accounts[] = { "APP", "ORDERS", "LEGACY" };

int init_sandbox_config(const char *dir_arg, int port, char **err) {
        static const char *const ours[] = { "nats-accountd.conf", "nats-server.conf", "accountd.nk", "accounts.yaml",
                                            "accounts.d" };
        char *dir = NULL;
        int r = sandbox_dir(dir_arg, ours, ARRAY_SIZE(ours), &dir, err);
        if (r < 0)
                return r;
        struct nkey daemon_user, users[ARRAY_SIZE(config_accounts)];
        nkey_generate(NKEY_USER, &daemon_user);
        for (size_t i = 0; i < ARRAY_SIZE(config_accounts); i++)
                nkey_generate(NKEY_USER, &users[i]);
        char *js_dir = path_join(dir, "jetstream"), *frag_dir = path_join(dir, "accounts.d");
        char *accounts_file = path_join(dir, "accounts.yaml");
        char *blocks = xstrdup(""), *server_conf = NULL, *daemon_conf = NULL;
        if ((r = make_dir(js_dir, 0700, err)) < 0 || (r = make_dir(frag_dir, 0755, err)) < 0)
                goto out;
        for (size_t i = 0; i < ARRAY_SIZE(config_accounts); i++) {
                const char *name = config_accounts[i];
                char *b = xasprintf("%s"
                                    "  %s {\n"
                                    "    users = [ { nkey: %s } ]   # seed in %s-user.nk\n"
                                    "    include \"accounts.d/%s.conf\"   # written by nats-accountd\n"
                                    "  }\n",
                                    blocks, name, users[i].pub, name, name);
                free(blocks);
                blocks = b;
                /* The server reads every include when it starts: the fragments
                 * exist from the beginning, saying nothing until the daemon fills them. */
                struct account_decl decl;
                memset(&decl, 0, sizeof(decl));
                snprintf(decl.name, sizeof(decl.name), "%s", name);
                decl.js = JS_UNMANAGED;
                char *text = fragment_render(&decl, accounts_file), *fname = xasprintf("%s.conf", name);
                r = write_file(frag_dir, fname, text, FRAGMENT_MODE, err);
                free(text);
                free(fname);
                if (r < 0)
                        goto out;
                char *seed_name = xasprintf("%s-user.nk", name), *what = xasprintf("user of account %s", name);
                r = write_seed(dir, seed_name, what, &users[i], err);
                free(seed_name);
                free(what);
                if (r < 0)
                        goto out;
        }
        char listen[32];
        snprintf(listen, sizeof(listen), "127.0.0.1:%d", port);
        server_conf = xasprintf(
                "# nats-server with its accounts in this file (config mode), made by nats-accountd init --mode config.\n"
                "# Start it with: nats-server -c %s/nats-server.conf\n"
                "server_name: nats-accountd-sandbox\n"
                "listen: %s\n"
                "%s%s%s"
                "pid_file: \"%s/nats-server.pid\"\n"
                "jetstream {\n"
                "  store_dir: \"%s\"\n"
                "  max_mem: 1G\n"
                "  max_file: 10G\n"
                "}\n"
                "accounts {\n"
                "  SYS {\n"
                "    users = [ { nkey: %s } ]   # nats-accountd, seed in accountd.nk\n"
                "  }\n"
                "%s"
                "}\n"
                "system_account: SYS\n",
                dir, listen, port == INIT_RANDOM_PORT ? "ports_file_dir: \"" : "",
                port == INIT_RANDOM_PORT ? dir : "", port == INIT_RANDOM_PORT ? "\"\n" : "", dir, js_dir,
                daemon_user.pub, blocks);
        daemon_conf = xasprintf("# nats-accountd settings, made by nats-accountd init --mode config; see "
                                "nats-accountd.conf(5).\n"
                                "[nats]\n"
                                "servers = nats://127.0.0.1:%d\n"
                                "credentials = accountd.nk\n"
                                "request_timeout = 2s\n"
                                "\n"
                                "[accounts]\n"
                                "file = accounts.yaml\n"
                                "mode = config\n"
                                "\n"
                                "[config]\n"
                                "fragments_dir = accounts.d\n"
                                "server_config = nats-server.conf\n"
                                "reload = auto\n"
                                "\n"
                                "[daemon]\n"
                                "resync_interval = 5m\n"
                                "log_level = info\n",
                                port == INIT_RANDOM_PORT ? 4222 : port);
        if ((r = write_seed(dir, "accountd.nk", "nats-accountd, user of the system account", &daemon_user, err)) < 0 ||
            (r = write_file(dir, "nats-server.conf", server_conf, 0644, err)) < 0 ||
            (r = write_file(dir, "accounts.yaml", config_accounts_example, 0644, err)) < 0 ||
            (r = write_file(dir, "nats-accountd.conf", daemon_conf, 0644, err)) < 0)
                goto out;
out:
        nkey_wipe(&daemon_user);
        for (size_t i = 0; i < ARRAY_SIZE(config_accounts); i++)
                nkey_wipe(&users[i]);
        free(blocks);
        free(server_conf);
        free(daemon_conf);
        free(js_dir);
        free(frag_dir);
        free(accounts_file);
        free(dir);
        return r;
}
