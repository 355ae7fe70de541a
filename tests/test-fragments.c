#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "accounts.h"
#include "fragments.h"
#include "util.h"

static struct accounts *load(const char *yaml) {
        struct accounts *a = NULL;
        struct diag_list d = { 0 };
        if (accounts_parse(yaml, strlen(yaml), "accounts.yaml", ACCOUNTS_CONFIG, &a, &d) != 0) {
                diag_print(&d, stderr);
                fail_msg("accounts_parse failed");
        }
        diag_list_clear(&d);
        return a;
}

static void test_render_exact(void **state) {
        struct accounts *a = load("accounts:\n"
                                  "  APP:\n"
                                  "    jetstream:\n"
                                  "      max_memory: 64M\n"
                                  "      max_store: 1GiB\n"
                                  "      max_streams: 10\n"
                                  "      max_bytes_required: true\n"
                                  "  OFF:\n"
                                  "    jetstream: disabled\n"
                                  "  ON:\n"
                                  "    jetstream: enabled\n"
                                  "  BARE: {}\n");
        char *t = fragment_render(accounts_find(a, "APP"), "/etc/nats-accountd/accounts.yaml");
        /* Exact integers: nats-server would read "64M" as 64,000,000 and "1GiB" not at all. */
        assert_string_equal(t, "# Account APP: written by nats-accountd from /etc/nats-accountd/accounts.yaml.\n"
                               "# Do not edit: nats-accountd replaces this file. Change the accounts file instead.\n"
                               "jetstream {\n"
                               "  max_mem: 64000000\n"
                               "  max_file: 1073741824\n"
                               "  max_streams: 10\n"
                               "  max_consumers: -1\n"
                               "  max_ack_pending: -1\n"
                               "  mem_max_stream_bytes: -1\n"
                               "  disk_max_stream_bytes: -1\n"
                               "  max_bytes_required: true\n"
                               "}\n");
        free(t);
        t = fragment_render(accounts_find(a, "OFF"), "a\nmax_mem: 1");
        assert_string_equal(t, "# Account OFF: written by nats-accountd from a?max_mem: 1.\n"
                               "# Do not edit: nats-accountd replaces this file. Change the accounts file instead.\n"
                               "jetstream: disabled\n");
        free(t);
        t = fragment_render(accounts_find(a, "BARE"), "x");
        assert_null(strstr(t, "jetstream"));
        free(t);
        accounts_free(a);
}

static void test_round_trip(void **state) {
        struct accounts *a = load("accounts:\n"
                                  "  APP: { jetstream: { max_memory: 1GiB, max_store: unlimited, max_consumers: 7,\n"
                                  "         max_ack_pending: 100, memory_max_stream_bytes: 1MiB, store_max_stream_bytes: 2MiB } }\n"
                                  "  OFF: { jetstream: disabled }\n"
                                  "  ON: { jetstream: enabled }\n"
                                  "  BARE: {}\n");
        for (size_t i = 0; i < a->n; i++) {
                const struct account_decl *d = &a->v[i];
                char *t = fragment_render(d, "accounts.yaml");
                struct fragment_state st;
                char *why = NULL;
                assert_int_equal(fragment_parse(t, strlen(t), &st, &why), 0);
                assert_int_equal(st.js.mode, d->js);
                if (d->js == JS_ENABLED) {
                        /* Field by field: the struct has padding. */
                        assert_int_equal(st.js.limits.max_memory, d->limits.max_memory);
                        assert_int_equal(st.js.limits.max_store, d->limits.max_store);
                        assert_int_equal(st.js.limits.max_streams, d->limits.max_streams);
                        assert_int_equal(st.js.limits.max_consumers, d->limits.max_consumers);
                        assert_int_equal(st.js.limits.max_ack_pending, d->limits.max_ack_pending);
                        assert_int_equal(st.js.limits.memory_max_stream_bytes, d->limits.memory_max_stream_bytes);
                        assert_int_equal(st.js.limits.store_max_stream_bytes, d->limits.store_max_stream_bytes);
                        assert_int_equal(st.js.limits.max_bytes_required, d->limits.max_bytes_required);
                }
                struct fragment_state want;
                fragment_state_from_decl(d, &want);
                assert_int_equal(want.js.mode, st.js.mode);
                free(t);
        }
        accounts_free(a);
}

static void test_limits_block(void **state) {
        struct accounts *a = load("accounts:\n"
                                  "  APP:\n"
                                  "    jetstream: disabled\n"
                                  "    limits: { max_connections: 100, max_payload: 1MiB }\n"
                                  "  NONE:\n"
                                  "    limits: {}\n");
        char *t = fragment_render(accounts_find(a, "APP"), "accounts.yaml");
        assert_non_null(strstr(t, "jetstream: disabled\n"
                                  "limits {\n"
                                  "  max_connections: 100\n"
                                  "  max_subscriptions: -1\n"
                                  "  max_payload: 1048576\n"
                                  "  max_leafnodes: -1\n"
                                  "}\n"));
        assert_null(strstr(t, "max_data"));
        struct fragment_state st;
        char *why = NULL;
        assert_int_equal(fragment_parse(t, strlen(t), &st, &why), 0);
        assert_true(st.acct_managed);
        assert_int_equal(st.acct.max_connections, 100);
        assert_int_equal(st.acct.max_subscriptions, -1);
        assert_int_equal(st.acct.max_payload, 1048576);
        assert_int_equal(st.acct.max_leafnodes, -1);
        assert_int_equal(st.acct.max_data, -1);
        assert_int_equal(st.js.mode, JS_DISABLED);
        free(t);
        /* `limits: {}`: every limit unlimited, written out. */
        t = fragment_render(accounts_find(a, "NONE"), "accounts.yaml");
        assert_int_equal(fragment_parse(t, strlen(t), &st, &why), 0);
        assert_true(st.acct_managed);
        assert_int_equal(st.acct.max_connections, -1);
        assert_int_equal(st.js.mode, JS_UNMANAGED);
        free(t);
        /* No limits key: no block, the limits are not managed. */
        assert_int_equal(fragment_parse("jetstream: disabled\n", 20, &st, &why), 0);
        assert_false(st.acct_managed);
        accounts_free(a);
}

static void test_parse_rejects(void **state) {
        static const struct {
                const char *text;
                const char *why;
        } cases[] = {
                { "jetstream { max_mem: 64M }\n", "line 1: expected `jetstream: ...` or `jetstream {`" },
                { "jetstream {\n  max_mem: 64M\n}\n", "line 2: max_mem: expected an integer (-1 for unlimited)" },
                { "jetstream {\n  max_mem: 1\n}\n", "the jetstream block has no max_file" },
                { "jetstream {\n  max_mem: 1\n  max_mem: 2\n}\n", "line 3: a second `max_mem` in the jetstream block" },
                { "jetstream {\n  mem: 1\n}\n", "line 2: unexpected `mem` in the jetstream block" },
                { "jetstream {\n  max_mem: 1\n", "the jetstream block is not closed" },
                { "jetstream: enabled\n", "jetstream: expected disabled or a block of limits, got \"enabled\"" },
                { "jetstream: disabled\njetstream: disabled\n", "line 2: a second jetstream block" },
                { "users = []\n", "line 1: unexpected `users = []`" },
                { "jetstream {\n  max_mem: -2\n}\n", "line 2: max_mem: expected an integer (-1 for unlimited)" },
                { "limits: none\n", "limits: expected a block, got \"none\"" },
                { "limits {\n  max_connections: 1\n}\n", "the limits block has no max_subscriptions" },
                { "limits {\n  max_data: 1\n}\n", "line 2: unexpected `max_data` in the limits block" },
                { "limits {\n  max_connections: 1\n  max_connections: 1\n}\n",
                  "line 3: a second `max_connections` in the limits block" },
                { "limits {\n  max_connections: 2147483648\n}\n",
                  "line 2: max_connections: expected an integer of at most 2147483647 (-1 for unlimited)" },
        };
        for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
                struct fragment_state st;
                char *why = NULL;
                int r = fragment_parse(cases[i].text, strlen(cases[i].text), &st, &why);
                if (r != -EBADMSG || !why || strcmp(why, cases[i].why) != 0)
                        fail_msg("case %zu: r=%d why=%s, want %s", i, r, why ? why : "(none)", cases[i].why);
                free(why);
        }
        /* Comments and blank lines are fine; no block means unmanaged. */
        struct fragment_state st;
        char *why = NULL;
        assert_int_equal(fragment_parse("# only a comment\n\n", 18, &st, &why), 0);
        assert_int_equal(st.js.mode, JS_UNMANAGED);
        char *p = fragment_path("/etc/nats-server/accounts.d", "APP");
        assert_string_equal(p, "/etc/nats-server/accounts.d/APP.conf");
        free(p);
}

/* config/accounts.d/APP.conf is what nats-accountd writes for APP of config/accounts.yaml. */
static void test_example_file(void **state) {
        const char *src = getenv("SRCDIR");
        if (!src)
                skip();
        struct accounts *a = load("accounts:\n"
                                  "  APP:\n"
                                  "    jetstream:\n"
                                  "      max_memory: 1GiB\n"
                                  "      max_store: 5GiB\n"
                                  "      max_streams: 100\n"
                                  "      max_consumers: 1000\n"
                                  "      max_ack_pending: 10000\n"
                                  "      memory_max_stream_bytes: 256MiB\n"
                                  "      store_max_stream_bytes: 1GiB\n"
                                  "      max_bytes_required: true\n");
        char *path = xasprintf("%s/config/accounts.d/APP.conf", src), *text = NULL;
        size_t len = 0;
        assert_int_equal(file_read_all(path, FRAGMENT_MAX_SIZE, &text, &len), 0);
        char *want = fragment_render(accounts_find(a, "APP"), "/etc/nats-accountd/accounts.yaml");
        assert_string_equal(text, want);
        free(want);
        free(text);
        free(path);
        accounts_free(a);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_render_exact),
                cmocka_unit_test(test_round_trip),
                cmocka_unit_test(test_limits_block),
                cmocka_unit_test(test_parse_rejects),
                cmocka_unit_test(test_example_file),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
