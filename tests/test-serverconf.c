#include <errno.h>
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

#include "serverconf.h"
#include "util.h"

#define FRAG "/etc/nats/accounts.d/APP.conf"

static struct serverconf *parse(const char *text) {
        return serverconf_parse(text, strlen(text), "/etc/nats/nats-server.conf");
}

static void test_paths(void **state) {
        static const char *const clean[][2] = {
                { "a//b/./c/..", "a/b" }, { "/../x", "/x" },  { "../../a", "../../a" }, { "a/../..", ".." },
                { "", "." },              { "/", "/" },       { "/etc/nats/", "/etc/nats" },
                { "../a/..", ".." },      { "./x/", "x" },    { "/a/b/../../..", "/" },
        };
        for (size_t i = 0; i < ARRAY_SIZE(clean); i++) {
                char *c = path_clean(clean[i][0]);
                if (strcmp(c, clean[i][1]) != 0)
                        fail_msg("path_clean(\"%s\") = \"%s\", want \"%s\"", clean[i][0], c, clean[i][1]);
                free(c);
        }
        static const char *const rel[][3] = {
                { "/etc/nats", "/etc/nats/accounts.d/APP.conf", "accounts.d/APP.conf" },
                { "/etc", "/etc/nats-server/accounts.d/APP.conf", "nats-server/accounts.d/APP.conf" },
                { "/srv/c1", "/srv/shared/accounts.d/APP.conf", "../shared/accounts.d/APP.conf" },
                { "/", "/a/b", "a/b" },
                { "/a/b", "/a/b", "." },
                { "/a/b/c", "/x", "../../../x" },
        };
        for (size_t i = 0; i < ARRAY_SIZE(rel); i++) {
                char *r = path_relative(rel[i][0], rel[i][1]);
                if (strcmp(r, rel[i][2]) != 0)
                        fail_msg("path_relative(\"%s\", \"%s\") = \"%s\", want \"%s\"", rel[i][0], rel[i][1], r,
                                 rel[i][2]);
                free(r);
        }
}

static void test_basic(void **state) {
        struct serverconf *c = parse("# nats-server\n"
                                     "server_name: \"n1\"\n"
                                     "pid_file = /run/nats/n1.pid\n"
                                     "listen: 127.0.0.1:4222 # trailing comment\n"
                                     "jetstream { store_dir: \"/var/lib/nats\", max_mem: 1G }\n"
                                     "accounts {\n"
                                     "  SYS { users = [ { user: accountd, password: $PASS } ] }\n"
                                     "  APP {\n"
                                     "    users = [\n"
                                     "      { user: app, password: \"a}b{c\\\"d\" }, // braces in a string\n"
                                     "      { nkey: UABC }\n"
                                     "    ]\n"
                                     "    include \"accounts.d/APP.conf\"\n"
                                     "  }\n"
                                     "  'OTHER': { users: [] }\n"
                                     "}\n"
                                     "system_account: SYS\n");
        assert_null(c->error);
        assert_string_equal(c->server_name, "n1");
        assert_string_equal(c->pid_file, "/run/nats/n1.pid");
        assert_true(c->has_accounts);
        assert_int_equal(c->n_accounts, 3);
        assert_string_equal(c->accounts[0].name, "APP");
        assert_string_equal(c->accounts[1].name, "OTHER");
        assert_string_equal(c->accounts[2].name, "SYS");
        const struct serverconf_account *a = serverconf_find(c, "APP");
        assert_non_null(a);
        assert_int_equal(a->line, 8);
        assert_int_equal(a->n, 2);
        assert_int_equal(a->v[0].kind, SERVERCONF_KEY);
        assert_string_equal(a->v[0].text, "users");
        assert_int_equal(a->v[1].kind, SERVERCONF_INCLUDE);
        assert_string_equal(a->v[1].text, FRAG);
        assert_int_equal(a->v[1].line, 13);

        struct include_check ic;
        serverconf_check_include(c, "APP", FRAG, &ic);
        assert_int_equal(ic.state, INCLUDE_OK);
        assert_int_equal(ic.shadowed_line, 0);
        include_check_clear(&ic);

        serverconf_check_include(c, "OTHER", "/etc/nats/accounts.d/OTHER.conf", &ic);
        assert_int_equal(ic.state, INCLUDE_MISSING);
        assert_int_equal(ic.line, 15);
        assert_string_equal(ic.file, "/etc/nats/nats-server.conf");
        assert_string_equal(ic.line_to_add, "include \"accounts.d/OTHER.conf\"");
        include_check_clear(&ic);

        serverconf_check_include(c, "NOPE", "/etc/nats/accounts.d/NOPE.conf", &ic);
        assert_int_equal(ic.state, INCLUDE_NO_ACCOUNT);
        assert_string_equal(ic.line_to_add, "include \"accounts.d/NOPE.conf\"");
        include_check_clear(&ic);
        serverconf_free(c);
        serverconf_free(NULL);
}

static void test_jetstream_order(void **state) {
        struct serverconf *c = parse("accounts: {\n"
                                     "  A: { jetstream: enabled; include 'accounts.d/A.conf' }\n"
                                     "  B = {\n"
                                     "    include accounts.d/B.conf\n"
                                     "    JetStream { max_mem: 1G }\n"
                                     "  }\n"
                                     "}\n");
        assert_null(c->error);
        struct include_check ic;
        serverconf_check_include(c, "A", "/etc/nats/accounts.d/A.conf", &ic);
        assert_int_equal(ic.state, INCLUDE_OK);
        assert_int_equal(ic.shadowed_line, 2);
        include_check_clear(&ic);
        serverconf_check_include(c, "B", "/etc/nats/accounts.d/B.conf", &ic);
        assert_int_equal(ic.state, INCLUDE_OVERRIDDEN);
        assert_int_equal(ic.line, 5);
        include_check_clear(&ic);
        serverconf_free(c);
}

static void test_syntax(void **state) {
        /* Everything nats-server accepts around the parts that matter. */
        struct serverconf *c = parse("{\n"
                                     "  authorization { timeout: 0.5 }\n"
                                     "  tls { cert_file: \"c.pem\", ciphers: [ A, B\n C ] }\n"
                                     "  banner: (\n"
                                     "some } text { here\n"
                                     ")\n"
                                     "  x = -1; y: 2021-01-01T00:00:00Z\n"
                                     "  \"accounts\" { APP { include \"accounts.d/APP.conf\" } }\n"
                                     "}\n");
        assert_null(c->error);
        assert_non_null(serverconf_find(c, "APP"));
        serverconf_free(c);

        /* A second accounts block replaces the first; a block defined again too. */
        c = parse("accounts { X {} }\naccounts { APP { users: [] }\nAPP { include \"accounts.d/APP.conf\" } }\n");
        assert_null(serverconf_find(c, "X"));
        const struct serverconf_account *a = serverconf_find(c, "APP");
        assert_non_null(a);
        assert_int_equal(a->n, 1);
        assert_int_equal(a->line, 3);
        serverconf_free(c);

        /* accounts from a variable: nothing can be said. */
        c = parse("ACCS: { APP: {} }\naccounts: $ACCS\n");
        struct include_check ic;
        serverconf_check_include(c, "APP", FRAG, &ic);
        assert_int_equal(ic.state, INCLUDE_UNKNOWN);
        include_check_clear(&ic);
        serverconf_free(c);
        c = parse("accounts { APP: $BLOCK }\n");
        serverconf_check_include(c, "APP", FRAG, &ic);
        assert_int_equal(ic.state, INCLUDE_UNKNOWN);
        include_check_clear(&ic);
        serverconf_free(c);
}

static void test_errors(void **state) {
        static const struct {
                const char *text;
                const char *error;
        } cases[] = {
                { "accounts {\n  APP {\n", "/etc/nats/nats-server.conf:2: a block opened here with { is not closed" },
                { "a: \"x\n\n", "/etc/nats/nats-server.conf:1: a string opened here is not closed" },
                { "a: [1, 2\n", "/etc/nats/nats-server.conf:1: an array opened here with [ is not closed" },
                { "}\n", "/etc/nats/nats-server.conf:1: unexpected '}'" },
                { "a:\n", "/etc/nats/nats-server.conf:1: expected a value" },
                { "x: (\nno end", "/etc/nats/nats-server.conf:1: a block string opened here with ( is not closed by a ) "
                                 "at the start of a line" },
        };
        for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
                struct serverconf *c = parse(cases[i].text);
                if (!c->error || strcmp(c->error, cases[i].error) != 0)
                        fail_msg("%s: error %s, want %s", cases[i].text, c->error ? c->error : "(none)",
                                 cases[i].error);
                serverconf_free(c);
        }
        /* Deeply nested input stops at the bound instead of the stack's end. */
        size_t n = 100000;
        char *deep = xmalloc(4 * n + 1);
        for (size_t i = 0; i < n; i++)
                memcpy(deep + 4 * i, "a: {", 4);
        deep[4 * n] = 0;
        struct serverconf *c = parse(deep);
        assert_non_null(c->error);
        assert_non_null(strstr(c->error, "nested deeper than"));
        serverconf_free(c);
        free(deep);

        /* Reading stopped before the account: unknown, not missing. */
        c = parse("accounts {\n  A { }\n  B { x: [ }\n");
        struct include_check ic;
        serverconf_check_include(c, "C", "/etc/nats/accounts.d/C.conf", &ic);
        assert_int_equal(ic.state, INCLUDE_UNKNOWN);
        include_check_clear(&ic);
        serverconf_free(c);
}

static char *write_tmp(const char *dir, const char *name, const char *text) {
        char *p = path_join(dir, name);
        char *d = path_dirname(p);
        mkdir(d, 0755);
        free(d);
        assert_int_equal(file_write_atomic(p, text, strlen(text), 0644), 0);
        return p;
}

static void test_load_follows_includes(void **state) {
        char tmpl[] = "/tmp/test-serverconf.XXXXXX";
        char *dir = mkdtemp(tmpl);
        assert_non_null(dir);
        char *conf = write_tmp(dir, "c1/nats-server.conf",
                               "server_name: c1\ninclude ../shared/accounts.conf\n");
        char *shared = write_tmp(dir, "shared/accounts.conf",
                                 "accounts {\n  SYS { users: [ {user: a, password: b} ] }\n"
                                 "  include \"app.conf\"\n}\n");
        char *app = write_tmp(dir, "shared/app.conf", "APP {\n  include \"users/app-users.conf\"\n}\n");
        char *users = write_tmp(dir, "shared/users/app-users.conf",
                                "users: []\ninclude \"../accounts.d/APP.conf\"\n");
        char *frag_dir = path_join(dir, "shared/accounts.d");
        mkdir(frag_dir, 0755);
        char *canon_dir = realpath(frag_dir, NULL);
        char *frag = path_join(canon_dir, "APP.conf");

        struct serverconf *c = NULL;
        char *err = NULL;
        /* The fragment does not exist yet: as ours it is not read. */
        assert_int_equal(serverconf_load(conf, canon_dir, &c, &err), 0);
        if (c->error)
                fail_msg("%s", c->error);
        assert_string_equal(c->server_name, "c1");
        assert_int_equal(c->n_files, 4);
        struct include_check ic;
        serverconf_check_include(c, "APP", frag, &ic);
        assert_int_equal(ic.state, INCLUDE_OK);
        include_check_clear(&ic);
        serverconf_check_include(c, "SYS", "/nope/SYS.conf", &ic);
        assert_int_equal(ic.state, INCLUDE_MISSING);
        assert_int_equal(ic.line, 2);
        assert_string_equal(ic.file, shared);
        include_check_clear(&ic);
        serverconf_free(c);

        /* A missing include of another file stops reading, with its place. */
        free(write_tmp(dir, "shared/app.conf", "APP {\n  include \"nope.conf\"\n}\n"));
        assert_int_equal(serverconf_load(conf, canon_dir, &c, &err), 0);
        assert_non_null(c->error);
        char *want = xasprintf("%s:2: include \"nope.conf\": No such file or directory", app);
        assert_string_equal(c->error, want);
        free(want);
        serverconf_free(c);

        /* An include loop ends at the depth bound. */
        free(write_tmp(dir, "shared/app.conf", "include \"app.conf\"\n"));
        assert_int_equal(serverconf_load(conf, canon_dir, &c, &err), 0);
        assert_non_null(c->error);
        assert_non_null(strstr(c->error, "includes nested deeper than"));
        serverconf_free(c);

        char *missing = path_join(dir, "nope.conf");
        assert_int_equal(serverconf_load(missing, canon_dir, &c, &err), -ENOENT);
        assert_non_null(strstr(err, "nope.conf"));
        free(err);

        char *cmd = xasprintf("rm -rf %s", dir);
        assert_int_equal(system(cmd), 0);
        free(cmd);
        free(missing);
        free(conf);
        free(shared);
        free(app);
        free(users);
        free(frag_dir);
        free(canon_dir);
        free(frag);
}

/* config/nats-server.conf, the example of the man page, reads as it says. */
static void test_example_file(void **state) {
        const char *src = getenv("SRCDIR");
        if (!src)
                skip();
        char *path = xasprintf("%s/config/nats-server.conf", src), *frags = xasprintf("%s/config/accounts.d", src);
        char *canon = realpath(frags, NULL);
        assert_non_null(canon);
        char *app = path_join(canon, "APP.conf"), *orders = path_join(canon, "ORDERS.conf");
        struct serverconf *c = NULL;
        char *err = NULL;
        assert_int_equal(serverconf_load(path, canon, &c, &err), 0);
        assert_null(c->error);
        assert_string_equal(c->server_name, "n1");
        struct include_check ic;
        serverconf_check_include(c, "APP", app, &ic);
        assert_int_equal(ic.state, INCLUDE_OK);
        include_check_clear(&ic);
        serverconf_check_include(c, "ORDERS", orders, &ic);
        assert_int_equal(ic.state, INCLUDE_OK);
        include_check_clear(&ic);
        serverconf_free(c);
        free(app);
        free(orders);
        free(canon);
        free(frags);
        free(path);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_paths),
                cmocka_unit_test(test_basic),
                cmocka_unit_test(test_jetstream_order),
                cmocka_unit_test(test_syntax),
                cmocka_unit_test(test_errors),
                cmocka_unit_test(test_load_follows_includes),
                cmocka_unit_test(test_example_file),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
