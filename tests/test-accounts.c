#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "accounts.h"
#include "util.h"

/* Account public keys built for these tests: prefix byte 0, 32 bytes, CRC-16 little endian. */
#define KEY1 "AD5JG3VLRQUB77PFWDHCAMNQXZRJK2ANSZMQUVPJLB47U4UQPDBHT3DD"
#define KEY2 "ACDWLVEEQOUZH54EPFKLLJXD5LNOAAS7ZYFVVCJD2KHF33K2333RF4OV"
/* The nkeys test vector: a valid key, but of a user. */
#define USER_KEY "UD466L6EBCM3YY5HEGHJANNTN4LSKTSUXTH7RILHCKEQMQHTBNLHJJXT"
/* Account-shaped, but the checksum does not match. */
#define BAD_SUM_KEY "AAXFNQNUXVXL6NNQ3ZUVPO5XLEIJXW5E6W3F4BXTKMR6AXI52WJM6LDJ"

#define GiB (INT64_C(1) << 30)
#define MiB (INT64_C(1) << 20)

static int parse(const char *yaml, enum accounts_flavor flavor, struct accounts **a, struct diag_list *d) {
        return accounts_parse(yaml, strlen(yaml), "accounts.yaml", flavor, a, d);
}

static struct accounts *parse_ok(const char *yaml, enum accounts_flavor flavor) {
        struct diag_list d = { 0 };
        struct accounts *a = NULL;
        int r = parse(yaml, flavor, &a, &d);
        if (r != 0) {
                diag_print(&d, stderr);
                fail_msg("parse failed: %d", r);
        }
        assert_int_equal(d.n, 0);
        assert_non_null(a);
        diag_list_clear(&d);
        return a;
}

static const struct account_decl *find(const struct accounts *a, const char *name) {
        /* A shed file (what the daemon keeps) gives copies: one at a time here. */
        static struct account_decl copy;
        const struct account_decl *x = accounts_is_shed(a) ? (accounts_get(a, name, &copy) == 0 ? &copy : NULL)
                                                           : accounts_find(a, name);
        if (!x)
                fail_msg("account %s not found", name);
        return x;
}

static void assert_unlimited(const struct js_limits *l) {
        struct js_limits u;
        js_limits_unlimited(&u);
        assert_memory_equal(l, &u, offsetof(struct js_limits, max_bytes_required));
        assert_false(l->max_bytes_required);
}

static const char spec_example[] =
        "accounts:\n"
        "  APP:                         # account name (JWT `name` claim in operator mode)\n"
        "    jetstream:\n"
        "      max_memory: 1GiB\n"
        "      max_store: 5GiB\n"
        "      max_streams: 100\n"
        "      max_consumers: 1000\n"
        "      max_ack_pending: 10000\n"
        "      memory_max_stream_bytes: 256MiB\n"
        "      store_max_stream_bytes: 1GiB\n"
        "      max_bytes_required: true\n"
        "  ORDERS:\n"
        "    key: " KEY1 "\n"
        "    jetstream:\n"
        "      tiers:                   # operator mode only; tier names R1..R5\n"
        "        R1: { max_memory: 1GiB, max_store: 10GiB }\n"
        "        R3: { max_memory: 512MiB, max_store: 5GiB }\n"
        "  LEGACY:\n"
        "    jetstream: disabled        # enabled = all limits unlimited; disabled = JetStream off (data kept)\n";

static void test_spec_example(void **state) {
        struct accounts *a = parse_ok(spec_example, ACCOUNTS_OPERATOR);
        assert_int_equal(a->n, 3);
        assert_string_equal(a->file, "accounts.yaml");
        /* Sorted by name. */
        assert_string_equal(a->v[0].name, "APP");
        assert_string_equal(a->v[1].name, "LEGACY");
        assert_string_equal(a->v[2].name, "ORDERS");

        const struct account_decl *app = find(a, "APP");
        assert_int_equal(app->js, JS_ENABLED);
        assert_string_equal(app->key, "");
        assert_int_equal(app->line, 2);
        assert_int_equal(app->column, 3);
        assert_true(app->limits.max_memory == GiB);
        assert_true(app->limits.max_store == 5 * GiB);
        assert_int_equal(app->limits.max_streams, 100);
        assert_int_equal(app->limits.max_consumers, 1000);
        assert_int_equal(app->limits.max_ack_pending, 10000);
        assert_true(app->limits.memory_max_stream_bytes == 256 * MiB);
        assert_true(app->limits.store_max_stream_bytes == GiB);
        assert_true(app->limits.max_bytes_required);

        const struct account_decl *orders = find(a, "ORDERS");
        assert_int_equal(orders->js, JS_TIERED);
        assert_string_equal(orders->key, KEY1);
        assert_int_equal(orders->line, 12);
        assert_true(orders->tier_set[0]);
        assert_false(orders->tier_set[1]);
        assert_true(orders->tier_set[2]);
        assert_false(orders->tier_set[3]);
        assert_false(orders->tier_set[4]);
        assert_true(orders->tiers[0].max_memory == GiB);
        assert_true(orders->tiers[0].max_store == 10 * GiB);
        assert_int_equal(orders->tiers[0].max_streams, -1);
        assert_true(orders->tiers[2].max_memory == 512 * MiB);
        assert_true(orders->tiers[2].max_store == 5 * GiB);
        assert_unlimited(&orders->limits);
        assert_unlimited(&orders->tiers[1]);

        const struct account_decl *legacy = find(a, "LEGACY");
        assert_int_equal(legacy->js, JS_DISABLED);
        assert_int_equal(legacy->line, 18);

        assert_null(accounts_find(a, "NOPE"));
        assert_null(accounts_find(a, ""));
        assert_null(accounts_find(a, "ABCDEFGHIJKLMNOPQRSTUVWXYZABCDEFGHIJKLMNOPQRSTUVWXYZABCDEFGHIJKLMNOP"));
        accounts_free(a);
}

static void test_field_table(void **state) {
        static const char *const names[] = {
                "max_memory",      "max_store",          "max_streams",       "max_consumers", "max_ack_pending",
                "memory_max_stream_bytes", "store_max_stream_bytes", "max_bytes_required",
        };
        assert_int_equal(js_fields_count, 8);
        for (size_t i = 0; i < js_fields_count; i++)
                assert_string_equal(js_fields[i].name, names[i]);
        assert_int_equal(js_fields[0].kind, JS_FIELD_SIZE);
        assert_int_equal(js_fields[2].kind, JS_FIELD_COUNT);
        assert_int_equal(js_fields[7].kind, JS_FIELD_BOOL);
        assert_int_equal(js_fields[1].offset, offsetof(struct js_limits, max_store));
        assert_int_equal(js_fields[7].offset, offsetof(struct js_limits, max_bytes_required));
}

static void test_acct_field_table(void **state) {
        static const char *const names[] = {
                "max_connections", "max_subscriptions", "max_payload", "max_leafnodes",
                "max_data",        "max_imports",       "max_exports",
        };
        assert_int_equal(acct_fields_count, ARRAY_SIZE(names));
        for (size_t i = 0; i < acct_fields_count; i++) {
                assert_string_equal(acct_fields[i].name, names[i]);
                /* The last three are claims of account JWTs only. */
                assert_int_equal(acct_fields[i].operator_only, i >= 4);
        }
        assert_int_equal(acct_fields[2].kind, JS_FIELD_SIZE);
        assert_int_equal(acct_fields[4].kind, JS_FIELD_SIZE);
        assert_int_equal(acct_fields[0].kind, JS_FIELD_COUNT);
        assert_int_equal(acct_fields[4].offset, offsetof(struct acct_limits, max_data));
        assert_true(acct_fields[4].wide);
        assert_false(acct_fields[0].wide);

        /* get/set through the table reach the named members. */
        struct acct_limits l;
        acct_limits_unlimited(&l);
        assert_int_equal(l.max_connections, -1);
        assert_true(l.max_data == -1);
        assert_int_equal(l.max_exports, -1);
        acct_limits_set(&l, &acct_fields[4], 10 * GiB);
        acct_limits_set(&l, &acct_fields[6], INT32_MAX);
        assert_true(l.max_data == 10 * GiB);
        assert_int_equal(l.max_exports, INT32_MAX);
        assert_true(acct_limits_get(&l, &acct_fields[4]) == 10 * GiB);
        assert_int_equal(acct_limits_get(&l, &acct_fields[6]), INT32_MAX);
        assert_int_equal(acct_limits_get(&l, &acct_fields[5]), -1);
}

static void test_acct_limits(void **state) {
        struct accounts *a = parse_ok("accounts:\n"
                                      "  APP:\n"
                                      "    limits:\n"
                                      "      max_connections: 100       # JWT conn\n"
                                      "      max_subscriptions: 10000   # JWT subs\n"
                                      "      max_payload: 1MiB          # JWT payload\n"
                                      "      max_leafnodes: 4           # JWT leaf\n"
                                      "      max_data: 10GiB            # JWT data\n"
                                      "      max_imports: 50            # JWT imports\n"
                                      "      max_exports: 50            # JWT exports\n"
                                      "  PART:\n"
                                      "    jetstream: enabled\n"
                                      "    limits: { max_connections: 0, max_payload: \"2147483647\", max_leafnodes: unlimited,\n"
                                      "              max_imports: '-1', max_exports: 2147483647 }\n"
                                      "  NULLS:\n"
                                      "    limits:\n"
                                      "  EMPTY:\n"
                                      "    limits: {}\n"
                                      "  NONE:\n"
                                      "    jetstream: disabled\n"
                                      "  MERGED:\n"
                                      "    limits: { <<: { max_connections: 5, max_data: 1K }, max_data: 2K }\n",
                                      ACCOUNTS_OPERATOR);
        const struct account_decl *x = find(a, "APP");
        assert_true(x->acct_managed);
        assert_int_equal(x->js, JS_UNMANAGED);
        assert_int_equal(x->acct.max_connections, 100);
        assert_int_equal(x->acct.max_subscriptions, 10000);
        assert_int_equal(x->acct.max_payload, MiB);
        assert_int_equal(x->acct.max_leafnodes, 4);
        assert_true(x->acct.max_data == 10 * GiB);
        assert_int_equal(x->acct.max_imports, 50);
        assert_int_equal(x->acct.max_exports, 50);

        /* 0 is a real limit; omitted fields are unlimited once `limits` is there. */
        x = find(a, "PART");
        assert_true(x->acct_managed);
        assert_int_equal(x->js, JS_ENABLED);
        assert_int_equal(x->acct.max_connections, 0);
        assert_int_equal(x->acct.max_subscriptions, -1);
        assert_int_equal(x->acct.max_payload, INT32_MAX);
        assert_int_equal(x->acct.max_leafnodes, -1);
        assert_true(x->acct.max_data == -1);
        assert_int_equal(x->acct.max_imports, -1);
        assert_int_equal(x->acct.max_exports, INT32_MAX);

        struct acct_limits unlimited;
        acct_limits_unlimited(&unlimited);
        for (size_t i = 0; i < 3; i++) {
                const char *n[] = { "NULLS", "EMPTY", "NONE" };
                x = find(a, n[i]);
                assert_int_equal(x->acct_managed, i < 2);
                assert_memory_equal(&x->acct, &unlimited, sizeof(unlimited));
        }
        x = find(a, "MERGED");
        assert_int_equal(x->acct.max_connections, 5);
        assert_true(x->acct.max_data == 2000);
        accounts_free(a);

        /* Config mode: the four limits a config-mode account has. */
        a = parse_ok("accounts:\n"
                     "  APP:\n"
                     "    limits: { max_connections: 10, max_subscriptions: 20, max_payload: 64KiB, max_leafnodes: 0 }\n",
                     ACCOUNTS_CONFIG);
        x = find(a, "APP");
        assert_true(x->acct_managed);
        assert_int_equal(x->acct.max_connections, 10);
        assert_int_equal(x->acct.max_subscriptions, 20);
        assert_int_equal(x->acct.max_payload, 64 * 1024);
        assert_int_equal(x->acct.max_leafnodes, 0);
        assert_true(x->acct.max_data == -1);
        accounts_free(a);
}

static void test_config_flavor(void **state) {
        struct accounts *a = parse_ok("accounts:\n"
                                      "  APP:\n"
                                      "    jetstream: { max_store: 5GiB, max_streams: unlimited }\n"
                                      "  OTHER:\n",
                                      ACCOUNTS_CONFIG);
        assert_int_equal(a->n, 2);
        assert_true(find(a, "APP")->limits.max_store == 5 * GiB);
        assert_int_equal(find(a, "APP")->limits.max_streams, -1);
        assert_int_equal(find(a, "OTHER")->js, JS_UNMANAGED);
        accounts_free(a);
}

static void test_empty_accounts(void **state) {
        static const char *const docs[] = { "accounts:\n", "accounts: {}\n", "accounts: ~\n", "accounts: null\n",
                                            "---\naccounts:\n...\n" };
        for (size_t i = 0; i < ARRAY_SIZE(docs); i++) {
                struct accounts *a = parse_ok(docs[i], ACCOUNTS_OPERATOR);
                assert_int_equal(a->n, 0);
                assert_null(accounts_find(a, "APP"));
                accounts_free(a);
        }
}

static void test_modes(void **state) {
        struct accounts *a = parse_ok("accounts:\n"
                                      "  NULL1:\n"
                                      "  NULL2: ~\n"
                                      "  EMPTY: {}\n"
                                      "  KEYONLY: { key: " KEY2 " }\n"
                                      "  EN1: { jetstream: enabled }\n"
                                      "  EN2: { jetstream: true }\n"
                                      "  EN3: { jetstream: {} }\n"
                                      "  DIS1: { jetstream: disabled }\n"
                                      "  DIS2: { jetstream: false }\n"
                                      "  T: { jetstream: { tiers: { R1: , R5: {} } } }\n",
                                      ACCOUNTS_OPERATOR);
        assert_int_equal(a->n, 10);
        assert_int_equal(find(a, "NULL1")->js, JS_UNMANAGED);
        assert_int_equal(find(a, "NULL2")->js, JS_UNMANAGED);
        assert_int_equal(find(a, "EMPTY")->js, JS_UNMANAGED);
        assert_int_equal(find(a, "KEYONLY")->js, JS_UNMANAGED);
        assert_string_equal(find(a, "KEYONLY")->key, KEY2);
        for (size_t i = 0; i < 3; i++) {
                const char *n[] = { "EN1", "EN2", "EN3" };
                assert_int_equal(find(a, n[i])->js, JS_ENABLED);
                assert_unlimited(&find(a, n[i])->limits);
        }
        assert_int_equal(find(a, "DIS1")->js, JS_DISABLED);
        assert_int_equal(find(a, "DIS2")->js, JS_DISABLED);
        const struct account_decl *t = find(a, "T");
        assert_int_equal(t->js, JS_TIERED);
        assert_true(t->tier_set[0] && t->tier_set[4]);
        assert_false(t->tier_set[1] || t->tier_set[2] || t->tier_set[3]);
        assert_unlimited(&t->tiers[0]);
        assert_unlimited(&t->tiers[4]);
        accounts_free(a);
}

static void test_values(void **state) {
        struct accounts *a = parse_ok("accounts:\n"
                                      "  A:\n"
                                      "    jetstream:\n"
                                      "      max_memory: 0\n"
                                      "      max_store: \"1GiB\"\n"
                                      "      max_streams: '-1'\n"
                                      "      max_consumers: unlimited\n"
                                      "      max_ack_pending: \"12\"\n"
                                      "      memory_max_stream_bytes: 1K\n"
                                      "      store_max_stream_bytes: 9223372036854775807\n"
                                      "      max_bytes_required: false\n"
                                      "  B:\n"
                                      "    jetstream: { max_memory: 5MB, max_store: 0, max_bytes_required: True }\n",
                                      ACCOUNTS_OPERATOR);
        const struct account_decl *x = find(a, "A");
        assert_int_equal(x->limits.max_memory, 0);
        assert_true(x->limits.max_store == GiB);
        assert_int_equal(x->limits.max_streams, -1);
        assert_int_equal(x->limits.max_consumers, -1);
        assert_int_equal(x->limits.max_ack_pending, 12);
        assert_int_equal(x->limits.memory_max_stream_bytes, 1000);
        assert_true(x->limits.store_max_stream_bytes == INT64_MAX);
        assert_false(x->limits.max_bytes_required);
        x = find(a, "B");
        assert_int_equal(x->limits.max_memory, 5 * MiB);
        assert_int_equal(x->limits.max_store, 0);
        assert_true(x->limits.max_bytes_required);
        accounts_free(a);
}

static void test_merge_keys(void **state) {
        struct accounts *a = parse_ok("accounts:\n"
                                      "  BASE:\n"
                                      "    jetstream: &small { max_memory: 1GiB, max_store: 2GiB, max_streams: 10 }\n"
                                      "  OVERRIDE:\n"
                                      "    jetstream:\n"
                                      "      <<: *small\n"
                                      "      max_store: 3GiB\n"
                                      "  LIST:\n"
                                      "    jetstream:\n"
                                      "      <<: [ { max_store: 7GiB }, *small, { max_consumers: 5 } ]\n"
                                      "  NESTED:\n"
                                      "    jetstream: &nested\n"
                                      "      <<: *small\n"
                                      "      max_ack_pending: 9\n"
                                      "  DEEP:\n"
                                      "    jetstream: { <<: *nested, max_streams: 11 }\n"
                                      "  TEMPLATE: &tpl\n"
                                      "    key: " KEY1 "\n"
                                      "    jetstream: { max_store: 1GiB }\n"
                                      "  COPY:\n"
                                      "    <<: *tpl\n"
                                      "    key: " KEY2 "\n"
                                      "  TIERS:\n"
                                      "    jetstream:\n"
                                      "      tiers:\n"
                                      "        <<: { R1: *small, R3: *small }\n"
                                      "        R3: { <<: *small, max_memory: 5GiB }\n",
                                      ACCOUNTS_OPERATOR);
        const struct account_decl *x = find(a, "OVERRIDE");
        assert_true(x->limits.max_memory == GiB);
        assert_true(x->limits.max_store == 3 * GiB);
        assert_int_equal(x->limits.max_streams, 10);

        /* Earlier sources win over later ones. */
        x = find(a, "LIST");
        assert_true(x->limits.max_store == 7 * GiB);
        assert_true(x->limits.max_memory == GiB);
        assert_int_equal(x->limits.max_consumers, 5);

        x = find(a, "DEEP");
        assert_true(x->limits.max_memory == GiB);
        assert_int_equal(x->limits.max_ack_pending, 9);
        assert_int_equal(x->limits.max_streams, 11);

        x = find(a, "COPY");
        assert_string_equal(x->key, KEY2);
        assert_int_equal(x->js, JS_ENABLED);
        assert_true(x->limits.max_store == GiB);

        x = find(a, "TIERS");
        assert_int_equal(x->js, JS_TIERED);
        assert_true(x->tier_set[0] && x->tier_set[2] && !x->tier_set[1]);
        assert_true(x->tiers[0].max_memory == GiB);
        assert_true(x->tiers[2].max_memory == 5 * GiB);
        assert_true(x->tiers[2].max_store == 2 * GiB);
        accounts_free(a);
}

static void test_merged_accounts(void **state) {
        /* Merge keys work in the accounts mapping too; explicit accounts override merged ones. */
        struct accounts *a = parse_ok("accounts:\n"
                                      "  <<: { A: { jetstream: disabled }, B: }\n"
                                      "  A: { jetstream: enabled }\n",
                                      ACCOUNTS_CONFIG);
        assert_int_equal(a->n, 2);
        assert_int_equal(find(a, "A")->js, JS_ENABLED);
        assert_int_equal(find(a, "A")->line, 3);
        assert_int_equal(find(a, "B")->js, JS_UNMANAGED);
        accounts_free(a);

        /* And at the top. */
        a = parse_ok("<<: { accounts: { A: } }\n", ACCOUNTS_OPERATOR);
        assert_int_equal(a->n, 1);
        assert_non_null(accounts_find(a, "A"));
        accounts_free(a);
}

static void test_aliases_shared(void **state) {
        /* Many references to one anchor are ordinary use, not a bomb. */
        size_t n = 2000;
        size_t cap = 128 + n * 40;
        char *buf = xmalloc(cap);
        size_t off = (size_t)snprintf(buf, cap, "accounts:\n  A0: { jetstream: &std { max_store: 1GiB, "
                                                "max_memory: 1GiB, max_streams: 5, max_consumers: 5 } }\n");
        for (size_t i = 1; i < n; i++)
                off += (size_t)snprintf(buf + off, cap - off, "  A%zu: { jetstream: *std }\n", i);
        struct accounts *a = parse_ok(buf, ACCOUNTS_OPERATOR);
        assert_int_equal(a->n, n);
        assert_true(account_decl_equal(find(a, "A0"), find(a, "A0")));
        assert_int_equal(find(a, "A1999")->limits.max_streams, 5);
        accounts_free(a);
        free(buf);
}

static void test_decl_equal(void **state) {
        struct accounts *a = parse_ok("accounts:\n"
                                      "  A: { jetstream: { max_store: 1GiB } }\n", ACCOUNTS_OPERATOR);
        struct accounts *b = parse_ok("# moved down\n\naccounts:\n"
                                      "    A:\n      jetstream:\n        max_store: 1024MiB\n", ACCOUNTS_OPERATOR);
        assert_int_not_equal(a->v[0].line, b->v[0].line);
        assert_true(account_decl_equal(&a->v[0], &b->v[0]));

        struct account_decl x = a->v[0];
        x.limits.max_store++;
        assert_false(account_decl_equal(&a->v[0], &x));
        x = a->v[0];
        x.limits.max_bytes_required = true;
        assert_false(account_decl_equal(&a->v[0], &x));
        x = a->v[0];
        strcpy(x.key, KEY1);
        assert_false(account_decl_equal(&a->v[0], &x));
        x = a->v[0];
        x.js = JS_DISABLED;
        assert_false(account_decl_equal(&a->v[0], &x));
        x = a->v[0];
        x.tier_set[3] = true;
        assert_false(account_decl_equal(&a->v[0], &x));
        x = a->v[0];
        x.tiers[4].max_streams = 3;
        assert_false(account_decl_equal(&a->v[0], &x));
        x = a->v[0];
        strcpy(x.name, "B");
        assert_false(account_decl_equal(&a->v[0], &x));
        /* `limits:` with every limit unlimited is not the same as no `limits` key. */
        x = a->v[0];
        x.acct_managed = true;
        assert_false(account_decl_equal(&a->v[0], &x));
        for (size_t i = 0; i < acct_fields_count; i++) {
                x = a->v[0];
                acct_limits_set(&x.acct, &acct_fields[i], 7);
                assert_false(account_decl_equal(&a->v[0], &x));
        }
        accounts_free(a);
        accounts_free(b);
}

struct bad_case {
        const char *yaml;
        int line, column;
        const char *msg;
        bool config; /* parse as config flavor (default: operator) */
};

#define OP(yaml, line, column, msg) { yaml, line, column, msg, false }
#define CFG(yaml, line, column, msg) { yaml, line, column, msg, true }
#define LONG_NAME "ABCDEFGHIJKLMNOPQRSTUVWXYZABCDEFGHIJKLMNOPQRSTUVWXYZABCDEFGHIJKLM" /* 65 */

static const struct bad_case bad_cases[] = {
        /* The document as a whole. */
        OP("", 1, 1, "expected a mapping with `accounts:`, got an empty file"),
        OP("# only a comment\n", 1, 1, "got an empty file"),
        OP("---\n", 2, 1, "expected a mapping with `accounts:`, got nothing"),
        OP("- accounts\n", 1, 1, "expected a mapping with `accounts:`, got a sequence"),
        OP("hello\n", 1, 1, "expected a mapping with `accounts:`, got hello"),
        OP("other: {}\naccounts:\n", 1, 1, "other: expected one of accounts, got an unknown key"),
        OP("{}\n", 1, 1, "expected a mapping with `accounts:`, got a mapping without it"),
        OP("accounts: {}\nextra: 1\n", 2, 1, "extra: expected one of accounts, got an unknown key"),
        OP("accounts: {}\naccounts: {}\n", 2, 1, "duplicate key accounts (first at line 1)"),
        OP("accounts: {}\n---\naccounts: {}\n", 2, 1, "expected one YAML document, got a second one"),
        OP("accounts: [APP]\n", 1, 11, "accounts: expected a mapping of account names to accounts, got a sequence"),
        OP("accounts: APP\n", 1, 11, "accounts: expected a mapping of account names to accounts, got APP"),
        /* YAML itself. */
        OP("accounts:\n  APP: {\n", 3, 1, "YAML syntax error: did not find expected node content"),
        OP("accounts:\n\tAPP: {}\n", 2, 1, "YAML syntax error: found character that cannot start any token"),
        OP("accounts:\n  APP: *nope\n", 2, 8, "YAML syntax error: found undefined alias *nope"),
        OP("accounts:\n  APP: &me { jetstream: *me }\n", 2, 25, "alias *me inside the node it names"),
        OP("accounts:\n  A\xff: {}\n", 2, 4, "YAML syntax error: invalid"),
        /* Account names. */
        OP("accounts:\n  APP: {}\n  APP: {}\n", 3, 3, "accounts: duplicate account APP (first at line 2)"),
        OP("accounts:\n  my.app: {}\n", 2, 3, "accounts: expected an account name, got \"my.app\""),
        OP("accounts:\n  \"\": {}\n", 2, 3, "account name is empty"),
        OP("accounts:\n  " LONG_NAME ": {}\n", 2, 3, "longer than 64"),
        OP("accounts:\n  \"A\\0B\": {}\n", 2, 3, "got \"A\\x00B\": contains a NUL character"),
        OP("accounts:\n  ? [A]\n  : {}\n", 2, 5, "accounts: expected a key name, got a sequence"),
        /* Accounts. */
        OP("accounts:\n  APP: 5\n", 2, 8, "APP: expected a mapping with key, jetstream or limits, or nothing, got 5"),
        OP("accounts:\n  APP: [jetstream]\n", 2, 8, "APP: expected a mapping with key, jetstream or limits, or nothing, got a sequence"),
        OP("accounts:\n  APP: \"\"\n", 2, 8, "APP: expected a mapping with key, jetstream or limits, or nothing, got \"\""),
        OP("accounts:\n  APP:\n    jetstrem: enabled\n", 3, 5, "APP.jetstrem: expected one of key, jetstream, limits, got an unknown key"),
        CFG("accounts:\n  APP:\n    jetstrem: enabled\n", 3, 5, "APP.jetstrem: expected one of jetstream, limits, got"),
        OP("accounts:\n  APP:\n    jetstream: enabled\n    jetstream: disabled\n", 4, 5, "APP: duplicate key jetstream (first at line 3)"),
        /* Keys. */
        CFG("accounts:\n  APP:\n    key: " KEY1 "\n", 3, 5, "APP.key: expected jetstream or limits in config mode, got key: pinning a public key needs operator mode"),
        OP("accounts:\n  APP:\n    key: " USER_KEY "\n", 3, 10, "APP.key: not an account public key: "),
        OP("accounts:\n  APP:\n    key: " BAD_SUM_KEY "\n", 3, 10, "APP.key: not an account public key: checksum mismatch"),
        OP("accounts:\n  APP:\n    key: ABC\n", 3, 10, "APP.key: not an account public key: "),
        OP("accounts:\n  APP:\n    key:\n", 3, 9, "APP.key: expected an account public key, got nothing"),
        OP("accounts:\n  APP:\n    key: [" KEY1 "]\n", 3, 10, "APP.key: expected an account public key, got a sequence"),
        OP("accounts:\n  A: { key: " KEY1 " }\n  B: { key: " KEY2 " }\n  C: { key: " KEY1 " }\n", 4, 13,
          "C.key: expected a key no other account pins, got the key of A (line 2)"),
        /* jetstream. */
        OP("accounts:\n  APP:\n    jetstream: maybe\n", 3, 16, "APP.jetstream: expected enabled, disabled or a mapping of limits, got maybe"),
        OP("accounts:\n  APP:\n    jetstream:\n", 3, 15, "APP.jetstream: expected enabled, disabled or a mapping of limits, got nothing"),
        OP("accounts:\n  APP:\n    jetstream: [enabled]\n", 3, 16, "got a sequence"),
        OP("accounts:\n  APP:\n    jetstream:\n      max_stor: 1GiB\n", 4, 7,
          "APP.jetstream.max_stor: expected one of max_memory, max_store, max_streams, max_consumers, max_ack_pending, "
          "memory_max_stream_bytes, store_max_stream_bytes, max_bytes_required, tiers, got an unknown key"),
        CFG("accounts:\n  APP:\n    jetstream:\n      max_stor: 1GiB\n", 4, 7, "max_bytes_required, got an unknown key"),
        OP("accounts:\n  APP:\n    jetstream:\n      \"<<\": {}\n", 4, 7, "APP.jetstream.<<: expected one of max_memory"),
        OP("accounts:\n  APP:\n    jetstream:\n      max_memory: 1\n      max_store: 2\n      max_store: 3\n", 6, 7,
          "APP.jetstream: duplicate key max_store (first at line 5)"),
        /* Sizes and counts. */
        OP("accounts:\n  APP:\n    jetstream:\n      max_store: 12XB\n", 4, 18, "APP.jetstream.max_store: expected a size, got 12XB: unknown unit"),
        OP("accounts:\n  APP:\n    jetstream:\n      max_store: -2\n", 4, 18, "expected a size, got -2: negative sizes other than -1"),
        OP("accounts:\n  APP:\n    jetstream:\n      max_store: 99999999999999999999\n", 4, 18, "expected a size, got 99999999999999999999: too large"),
        OP("accounts:\n  APP:\n    jetstream:\n      max_memory: 8388608TiB\n", 4, 19, "APP.jetstream.max_memory: expected a size, got 8388608TiB: too large"),
        OP("accounts:\n  APP:\n    jetstream:\n      max_store: \"1.5GiB\"\n", 4, 18, "expected a size, got \"1.5GiB\""),
        OP("accounts:\n  APP:\n    jetstream:\n      max_store: [1]\n", 4, 18, "APP.jetstream.max_store: expected a size, got a sequence"),
        OP("accounts:\n  APP:\n    jetstream:\n      max_store: { a: 1 }\n", 4, 18, "expected a size, got a mapping"),
        OP("accounts:\n  APP:\n    jetstream:\n      max_store:\n", 4, 17, "expected a size, got nothing"),
        OP("accounts:\n  APP:\n    jetstream:\n      max_streams: 1.5\n", 4, 20, "APP.jetstream.max_streams: expected a count, got 1.5: not a whole number"),
        OP("accounts:\n  APP:\n    jetstream:\n      max_streams: 10K\n", 4, 20, "expected a count, got 10K"),
        OP("accounts:\n  APP:\n    jetstream:\n      max_consumers: -7\n", 4, 22, "expected a count, got -7: negative counts other than -1"),
        OP("accounts:\n  APP:\n    jetstream:\n      max_ack_pending: 99999999999999999999\n", 4, 24, "expected a count, got 99999999999999999999: too large"),
        OP("accounts:\n  APP:\n    jetstream:\n      max_bytes_required: yes\n", 4, 27, "APP.jetstream.max_bytes_required: expected true or false, got yes"),
        OP("accounts:\n  APP:\n    jetstream:\n      max_bytes_required: [true]\n", 4, 27, "expected true or false, got a sequence"),
        /* 0 that nats-server would read as unlimited. */
        OP("accounts:\n  APP:\n    jetstream:\n      max_streams: 0\n", 4, 20,
          "APP.jetstream.max_streams: expected a count above 0, got 0: 0 means unlimited to nats-server; write -1 or unlimited"),
        OP("accounts:\n  APP:\n    jetstream:\n      max_consumers: 0\n", 4, 22, "0 means unlimited to nats-server; write -1 or unlimited"),
        OP("accounts:\n  APP:\n    jetstream:\n      max_ack_pending: \"0\"\n", 4, 24, "got \"0\": 0 means unlimited to nats-server"),
        OP("accounts:\n  APP:\n    jetstream:\n      memory_max_stream_bytes: 0B\n", 4, 32,
          "APP.jetstream.memory_max_stream_bytes: expected a size above 0, got 0B: 0 means unlimited"),
        OP("accounts:\n  APP:\n    jetstream:\n      store_max_stream_bytes: 0GiB\n", 4, 31, "0 means unlimited to nats-server"),
        /* 0 and 0 switch JetStream off: reported at the account's jetstream node. */
        OP("accounts:\n  APP:\n    jetstream:\n      max_memory: 0\n      max_store: 0\n", 4, 7,
          "APP.jetstream: expected max_memory or max_store above 0, got both 0: that would switch JetStream off; write `jetstream: disabled`"),
        OP("accounts:\n  APP:\n    jetstream: { max_memory: 0, max_store: 0B, max_streams: 4 }\n", 3, 16, "write `jetstream: disabled`"),
        OP("accounts:\n  APP:\n    jetstream:\n      tiers:\n        R1: { max_memory: 1 }\n        R3: { max_memory: 0, max_store: 0 }\n", 4, 7,
          "APP.jetstream.tiers.R3: expected max_memory or max_store above 0, got both 0"),
        /* Tiers. */
        CFG("accounts:\n  APP:\n    jetstream:\n      tiers:\n        R1: {}\n", 4, 7,
          "APP.jetstream.tiers: expected flat limits, got tiers: tiers need operator mode"),
        OP("accounts:\n  APP:\n    jetstream:\n      max_store: 1GiB\n      tiers:\n        R1: {}\n", 5, 7,
          "APP.jetstream.tiers: expected either flat limits or tiers, got both (max_store at line 4)"),
        OP("accounts:\n  APP:\n    jetstream:\n      tiers:\n        R6: {}\n", 5, 9,
          "APP.jetstream.tiers.R6: expected one of R1, R2, R3, R4, R5, got an unknown tier"),
        OP("accounts:\n  APP:\n    jetstream:\n      tiers:\n        r1: {}\n", 5, 9, "got an unknown tier"),
        OP("accounts:\n  APP:\n    jetstream:\n      tiers:\n        R2: 5GiB\n", 5, 13,
          "APP.jetstream.tiers.R2: expected a mapping of limits (or nothing for all unlimited), got 5GiB"),
        OP("accounts:\n  APP:\n    jetstream:\n      tiers:\n        R2: { max_store: 1, tiers: {} }\n", 5, 29,
          "APP.jetstream.tiers.R2.tiers: expected one of max_memory"),
        OP("accounts:\n  APP:\n    jetstream:\n      tiers:\n        R2: { max_store: x }\n", 5, 26,
          "APP.jetstream.tiers.R2.max_store: expected a size, got x"),
        OP("accounts:\n  APP:\n    jetstream:\n      tiers: [R1]\n", 4, 14, "APP.jetstream.tiers: expected a mapping of tiers R1..R5, got a sequence"),
        OP("accounts:\n  APP:\n    jetstream:\n      tiers:\n", 4, 13, "expected a mapping of tiers R1..R5, got nothing"),
        OP("accounts:\n  APP:\n    jetstream:\n      tiers: {}\n", 4, 14, "APP.jetstream.tiers: expected at least one tier R1..R5, got none"),
        OP("accounts:\n  APP:\n    jetstream:\n      tiers:\n        R1: {}\n        R1: {}\n", 6, 9,
          "APP.jetstream.tiers: duplicate key R1 (first at line 5)"),
        /* limits. */
        OP("accounts:\n  APP:\n    limits: 5\n", 3, 13, "APP.limits: expected a mapping of limits (or nothing for all unlimited), got 5"),
        OP("accounts:\n  APP:\n    limits: [1]\n", 3, 13, "APP.limits: expected a mapping of limits (or nothing for all unlimited), got a sequence"),
        OP("accounts:\n  APP:\n    limits:\n      max_conns: 5\n", 4, 7,
          "APP.limits.max_conns: expected one of max_connections, max_subscriptions, max_payload, max_leafnodes, "
          "max_data, max_imports, max_exports, got an unknown key"),
        CFG("accounts:\n  APP:\n    limits:\n      max_conns: 5\n", 4, 7,
          "APP.limits.max_conns: expected one of max_connections, max_subscriptions, max_payload, max_leafnodes, got an unknown key"),
        OP("accounts:\n  APP:\n    limits:\n      max_memory: 5\n", 4, 7, "APP.limits.max_memory: expected one of max_connections"),
        OP("accounts:\n  APP:\n    limits:\n      max_connections: 1\n      max_connections: 2\n", 5, 7,
          "APP.limits: duplicate key max_connections (first at line 4)"),
        OP("accounts:\n  APP:\n    limits:\n      max_connections: -2\n", 4, 24,
          "APP.limits.max_connections: expected a count, got -2: negative counts other than -1"),
        OP("accounts:\n  APP:\n    limits:\n      max_subscriptions: 1.5\n", 4, 26, "APP.limits.max_subscriptions: expected a count, got 1.5"),
        OP("accounts:\n  APP:\n    limits:\n      max_leafnodes:\n", 4, 21, "APP.limits.max_leafnodes: expected a count, got nothing"),
        OP("accounts:\n  APP:\n    limits:\n      max_imports: { a: 1 }\n", 4, 20, "APP.limits.max_imports: expected a count, got a mapping"),
        OP("accounts:\n  APP:\n    limits:\n      max_payload: 1XB\n", 4, 20, "APP.limits.max_payload: expected a size, got 1XB: unknown unit"),
        OP("accounts:\n  APP:\n    limits:\n      max_data: -3\n", 4, 17, "APP.limits.max_data: expected a size, got -3"),
        OP("accounts:\n  APP:\n    limits:\n      max_data: 99999999999999999999\n", 4, 17, "expected a size, got 99999999999999999999: too large"),
        /* nats-server would cut these to 32 bits: 4294967296 connections would be none. */
        OP("accounts:\n  APP:\n    limits:\n      max_connections: 4294967296\n", 4, 24,
          "APP.limits.max_connections: expected a count of at most 2147483647, got 4294967296: nats-server keeps this limit in 32 bits"),
        OP("accounts:\n  APP:\n    limits:\n      max_subscriptions: 2147483648\n", 4, 26, "of at most 2147483647, got 2147483648"),
        OP("accounts:\n  APP:\n    limits:\n      max_payload: 2GiB\n", 4, 20,
          "APP.limits.max_payload: expected a size of at most 2147483647 bytes (2GiB - 1), got 2GiB: nats-server keeps this limit in 32 bits"),
        OP("accounts:\n  APP:\n    limits:\n      max_exports: 3000000000\n", 4, 20, "APP.limits.max_exports: expected a count of at most 2147483647"),
        /* ... which a config-mode account does not have. */
        CFG("accounts:\n  APP:\n    limits:\n      max_data: 1GiB\n", 4, 7,
          "APP.limits.max_data: expected max_connections, max_subscriptions, max_payload or max_leafnodes in config mode, "
          "got max_data: a limit of account JWTs, it needs operator mode"),
        CFG("accounts:\n  APP:\n    limits: { max_connections: 1, max_imports: 5 }\n", 3, 35, "APP.limits.max_imports: expected max_connections"),
        CFG("accounts:\n  APP:\n    limits: { max_exports: x }\n", 3, 15, "got max_exports: a limit of account JWTs, it needs operator mode"),
        OP("accounts:\n  A: { limits: &l { max_payload: 1K } }\n  B: { limits: { max_connections: *l } }\n", 3, 35,
          "B.limits.max_connections: expected a count, got a mapping"),
        /* Merge keys. */
        OP("accounts:\n  APP:\n    jetstream:\n      <<: 5\n", 4, 11, "APP.jetstream: expected a mapping or a sequence of mappings after <<, got 5"),
        OP("accounts:\n  APP:\n    jetstream:\n      <<: [{}, 1, 2]\n", 4, 16, "expected a sequence of mappings after <<, got 1 in it"),
        OP("accounts:\n  APP:\n    jetstream:\n      <<: {}\n      <<: {}\n", 5, 7, "APP.jetstream: duplicate key << (first at line 4)"),
        OP("x: &x { max_store: 1 }\naccounts: {}\n", 1, 1, "x: expected one of accounts"),
        OP("accounts:\n  A: { jetstream: &l { max_streams: 1, max_streams: 2 } }\n", 2, 40, "A.jetstream: duplicate key max_streams (first at line 2)"),
        OP("accounts:\n  B: { <<: &a { jetstream: { max_streams: nope } } }\n", 2, 43, "B.jetstream.max_streams: expected a count, got nope"),
        /* Errors behind an alias point at the alias. */
        OP("accounts:\n  A: { jetstream: { max_store: &v 5GiB } }\n  B: { key: *v }\n", 3, 13, "B.key: not an account public key"),
        OP("accounts:\n  A: { jetstream: &js { max_store: 5GiB } }\n  B: { key: *js }\n", 3, 13, "B.key: expected an account public key, got a mapping"),
        OP("accounts:\n  A: &a [1]\n", 2, 6, "A: expected a mapping with key, jetstream or limits, or nothing, got a sequence"),
};

static void test_bad(void **state) {
        size_t failed = 0;
        for (size_t i = 0; i < ARRAY_SIZE(bad_cases); i++) {
                const struct bad_case *c = &bad_cases[i];
                struct diag_list d = { 0 };
                struct accounts *a = (struct accounts *)&d; /* must be reset */
                int r = parse(c->yaml, c->config ? ACCOUNTS_CONFIG : ACCOUNTS_OPERATOR, &a, &d);
                if (r != -EINVAL || a != NULL || d.n != 1 || d.v[0].line != c->line || d.v[0].column != c->column ||
                    !strstr(d.v[0].msg, c->msg) || strcmp(d.v[0].file, "accounts.yaml") != 0) {
                        fprintf(stderr, "case %zu: %s\n  want %d:%d: ...%s...\n  got r=%d, %zu errors:\n", i, c->yaml,
                                c->line, c->column, c->msg, r, d.n);
                        diag_print(&d, stderr);
                        failed++;
                }
                diag_list_clear(&d);
        }
        assert_int_equal(failed, 0);
        assert_true(ARRAY_SIZE(bad_cases) >= 40);
}

static void test_many_errors(void **state) {
        static const char yaml[] = "accounts:\n"
                                   "  APP:\n"
                                   "    jetstream:\n"
                                   "      max_store: 5XB\n"
                                   "      max_streams: 0\n"
                                   "  bad.name: {}\n"
                                   "  ORDERS:\n"
                                   "    colour: blue\n"
                                   "  APP: {}\n";
        struct diag_list d = { 0 };
        struct accounts *a = NULL;
        assert_int_equal(parse(yaml, ACCOUNTS_OPERATOR, &a, &d), -EINVAL);
        assert_null(a);
        assert_int_equal(d.n, 5);
        static const struct {
                int line, column;
                const char *msg;
        } want[] = {
                { 9, 3, "duplicate account APP (first at line 2)" },
                { 4, 18, "APP.jetstream.max_store: expected a size" },
                { 5, 20, "APP.jetstream.max_streams: expected a count above 0" },
                { 6, 3, "got \"bad.name\"" },
                { 8, 5, "ORDERS.colour: expected one of key, jetstream" },
        };
        for (size_t i = 0; i < ARRAY_SIZE(want); i++) {
                assert_int_equal(d.v[i].line, want[i].line);
                assert_int_equal(d.v[i].column, want[i].column);
                if (!strstr(d.v[i].msg, want[i].msg))
                        fail_msg("error %zu: \"%s\" lacks \"%s\"", i, d.v[i].msg, want[i].msg);
        }
        char *s = diag_format(&d.v[1]);
        assert_string_equal(s, "accounts.yaml:4:18: APP.jetstream.max_store: expected a size, got 5XB: "
                               "unknown unit (use B, K, KB, KiB, M, MB, MiB, G, GB, GiB, T, TB or TiB)");
        free(s);
        diag_list_clear(&d);
}

static void test_error_cap(void **state) {
        /* More errors than the list keeps: all counted, the file still rejected. */
        size_t n = 300, cap = 64 + n * 32, off = 0;
        char *buf = xmalloc(cap);
        off += (size_t)snprintf(buf + off, cap - off, "accounts:\n");
        for (size_t i = 0; i < n; i++)
                off += (size_t)snprintf(buf + off, cap - off, "  A%zu: { jetstream: nope }\n", i);
        struct diag_list d = { 0 };
        struct accounts *a = NULL;
        assert_int_equal(parse(buf, ACCOUNTS_OPERATOR, &a, &d), -EINVAL);
        assert_null(a);
        assert_int_equal(d.n + d.dropped, n);
        diag_list_clear(&d);
        free(buf);
}

static double elapsed_ms(const struct timespec *t0) {
        struct timespec t1;
        clock_gettime(CLOCK_MONOTONIC, &t1);
        return (double)(t1.tv_sec - t0->tv_sec) * 1e3 + (double)(t1.tv_nsec - t0->tv_nsec) / 1e6;
}

/* The last error of a document that must be rejected quickly; an alias bomb is the only error. */
static void assert_rejected(const char *yaml, int line, int column, const char *msg) {
        struct diag_list d = { 0 };
        struct accounts *a = NULL;
        struct timespec t0;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        int r = parse(yaml, ACCOUNTS_OPERATOR, &a, &d);
        double ms = elapsed_ms(&t0);
        if (r != -EINVAL || a || d.n == 0 || !strstr(d.v[d.n - 1].msg, msg) || d.v[d.n - 1].line != line ||
            d.v[d.n - 1].column != column || (strstr(msg, "alias bomb") && d.n != 1)) {
                diag_print(&d, stderr);
                fail_msg("want %d:%d: ...%s...", line, column, msg);
        }
        /* Generous for sanitizer builds; unbounded expansion would take hours. */
        if (ms > 2000)
                fail_msg("took %.0f ms", ms);
        diag_list_clear(&d);
}

static void test_alias_bombs(void **state) {
        char buf[4096];
        size_t off = 0;

        /* Billion laughs: 9 levels of 9-element sequences, used where the schema wants a mapping. */
        off += (size_t)snprintf(buf + off, sizeof(buf) - off, "accounts:\n  L0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
        for (int i = 1; i <= 9; i++) {
                off += (size_t)snprintf(buf + off, sizeof(buf) - off, "  L%d: &l%d [", i, i);
                for (int j = 0; j < 9; j++)
                        off += (size_t)snprintf(buf + off, sizeof(buf) - off, "%s*l%d", j ? ", " : "", i - 1);
                off += (size_t)snprintf(buf + off, sizeof(buf) - off, "]\n");
        }
        off += (size_t)snprintf(buf + off, sizeof(buf) - off, "  APP:\n    jetstream:\n      <<: *l9\n");
        assert_rejected(buf, 14, 11, "expected a sequence of mappings after <<");

        /* The same through merge keys, which do expand: each level merges the previous nine times. */
        off = 0;
        off += (size_t)snprintf(buf + off, sizeof(buf) - off,
                                "accounts:\n  A0: { jetstream: &m0 { max_streams: 1, max_consumers: 2 } }\n");
        for (int i = 1; i <= 9; i++) {
                off += (size_t)snprintf(buf + off, sizeof(buf) - off, "  A%d: { jetstream: &m%d { <<: [", i, i);
                for (int j = 0; j < 9; j++)
                        off += (size_t)snprintf(buf + off, sizeof(buf) - off, "%s*m%d", j ? ", " : "", i - 1);
                off += (size_t)snprintf(buf + off, sizeof(buf) - off, "] } }\n");
        }
        /* Reported once, at an alias of the account where the budget ran out. */
        assert_rejected(buf, 6, 46, "too many alias expansions: alias bomb?");

        /* Merge chains deeper than any real file. */
        off = 0;
        off += (size_t)snprintf(buf + off, sizeof(buf) - off, "accounts:\n  A0: { jetstream: &d0 { max_streams: 1 } }\n");
        for (int i = 1; i <= 33; i++)
                off += (size_t)snprintf(buf + off, sizeof(buf) - off, "  A%d: { jetstream: &d%d { <<: *d%d } }\n", i,
                                        i, i - 1);
        /* 32 levels pass; the 33rd is reported at its outermost alias. */
        assert_rejected(buf, 35, 32, "A33.jetstream: expected merge keys nested at most 32 deep, got deeper");
}

static void test_many_accounts(void **state) {
        /* 100,000 accounts must parse (speed is measured elsewhere, not asserted here). */
        size_t n = 100000, cap = n * 160, off = 0;
        char *buf = xmalloc(cap);
        off += (size_t)snprintf(buf + off, cap - off, "accounts:\n");
        for (size_t i = 0; i < n; i++)
                off += (size_t)snprintf(buf + off, cap - off,
                                        "  ACC%06zu:\n    jetstream: { max_memory: 1GiB, max_store: %zuMiB, "
                                        "max_streams: 100, max_bytes_required: true }\n",
                                        n - i, i + 1);
        struct accounts *a = parse_ok(buf, ACCOUNTS_OPERATOR);
        assert_int_equal(a->n, n);
        for (size_t i = 1; i < a->n; i++)
                assert_true(strcmp(a->v[i - 1].name, a->v[i].name) < 0);
        const struct account_decl *x = find(a, "ACC000001");
        assert_true(x->limits.max_store == (int64_t)n * MiB);
        assert_int_equal(x->line, (int)(2 + 2 * (n - 1)));
        accounts_free(a);
        free(buf);
}

static void test_load(void **state) {
        char dir[] = "/tmp/test-accounts-XXXXXX";
        assert_non_null(mkdtemp(dir));
        char *path = path_join(dir, "accounts.yaml");
        struct diag_list d = { 0 };
        struct accounts *a = (struct accounts *)&d;

        assert_int_equal(accounts_load(path, ACCOUNTS_OPERATOR, &a, &d), -ENOENT);
        assert_null(a);
        assert_int_equal(d.n, 1);
        char *s = diag_format(&d.v[0]);
        char *want = xasprintf("%s: cannot read: No such file or directory", path);
        assert_string_equal(s, want);
        free(s);
        free(want);
        diag_list_clear(&d);

        assert_int_equal(file_write_atomic(path, spec_example, strlen(spec_example), 0644), 0);
        assert_int_equal(accounts_load(path, ACCOUNTS_OPERATOR, &a, &d), 0);
        assert_int_equal(a->n, 3);
        assert_string_equal(a->file, path);
        accounts_free(a);

        assert_int_equal(accounts_load(path, ACCOUNTS_CONFIG, &a, &d), -EINVAL);
        assert_null(a);
        assert_int_equal(d.n, 2);
        assert_string_equal(d.v[0].file, path);
        diag_list_clear(&d);

        /* One byte over the limit: refused before reading, naming the file and the limit. */
        FILE *f = fopen(path, "w");
        assert_non_null(f);
        assert_int_equal(ftruncate(fileno(f), (off_t)ACCOUNTS_FILE_MAX_SIZE + 1), 0);
        fclose(f);
        assert_int_equal(accounts_load(path, ACCOUNTS_OPERATOR, &a, &d), -EFBIG);
        assert_null(a);
        assert_int_equal(d.n, 1);
        assert_string_equal(d.v[0].file, path);
        assert_int_equal(d.v[0].line, 0);
        assert_non_null(strstr(d.v[0].msg, "134217728 bytes (128 MiB)"));
        diag_list_clear(&d);

        /* accounts_parse checks the length before it reads a byte. */
        static const char tiny[] = "accounts: {}\n";
        assert_int_equal(accounts_parse(tiny, (size_t)ACCOUNTS_FILE_MAX_SIZE + 1, "big.yaml", ACCOUNTS_OPERATOR, &a, &d),
                         -EFBIG);
        assert_null(a);
        assert_int_equal(d.n, 1);
        assert_string_equal(d.v[0].file, "big.yaml");
        assert_non_null(strstr(d.v[0].msg, "the limit for an accounts file"));
        diag_list_clear(&d);

        assert_int_equal(unlink(path), 0);
        assert_int_equal(rmdir(dir), 0);
        free(path);
}

/* ---- accounts_load_update: re-reading only the edited accounts ---- */

static void assert_same_decls(const struct accounts *x, const struct accounts *y, const char *what) {
        if (x->n != y->n)
                fail_msg("%s: %zu accounts, the whole parse has %zu", what, x->n, y->n);
        for (size_t i = 0; i < x->n; i++) {
                const struct account_decl *a = &x->v[i], *b = &y->v[i];
                if (!account_decl_equal(a, b) || a->line != b->line || a->column != b->column)
                        fail_msg("%s: account %zu: %s at %d:%d, the whole parse has %s at %d:%d", what, i, a->name,
                                 a->line, a->column, b->name, b->line, b->column);
        }
}

static void assert_same_diags(const struct diag_list *x, const struct diag_list *y, const char *what) {
        assert_int_equal(x->n, y->n);
        for (size_t i = 0; i < x->n; i++) {
                char *a = diag_format(&x->v[i]), *b = diag_format(&y->v[i]);
                if (strcmp(a, b) != 0)
                        fail_msg("%s: diagnostic %zu: \"%s\", the whole parse says \"%s\"", what, i, a, b);
                free(a);
                free(b);
        }
}

struct reload {
        char *path;
        struct accounts *good; /* the last good file, as the daemon keeps it */
        size_t partial;        /* reloads that re-read only the edited accounts */
        bool shed;             /* keep it as the daemon does between passes: declarations shed */
        size_t shed_partial;   /* partial reloads of a shed file */
};

/* Write text, reload it against the last good file, and check the result is
 * the whole parse's (declarations, lines, columns, or the same errors). */
static int reload(struct reload *rl, const char *text) {
        assert_int_equal(file_write_atomic_nosync(rl->path, text, strlen(text), 0644), 0);
        struct diag_list d1 = { 0 }, d2 = { 0 };
        struct accounts *a = NULL, *whole = NULL;
        struct accounts_delta delta;
        /* The update may take over the old declarations: keep a copy to compare with. */
        struct accounts before = { 0 }, *good_full = NULL, *a_full = NULL;
        if (rl->good) {
                const struct accounts *g = rl->good;
                if (accounts_is_shed(g)) {
                        assert_int_equal(accounts_expand(g, &good_full), 0);
                        g = good_full;
                }
                before.n = g->n;
                before.v = xcalloc(before.n + 1, sizeof(*before.v));
                memcpy(before.v, g->v, before.n * sizeof(*before.v));
        }
        bool from_shed = accounts_is_shed(rl->good);
        int r = accounts_load_update(rl->path, ACCOUNTS_OPERATOR, rl->good, &a, &delta, &d1);
        int r2 = accounts_parse(text, strlen(text), rl->path, ACCOUNTS_OPERATOR, &whole, &d2);
        if (r != r2)
                fail_msg("reload returned %d, the whole parse %d, for:\n%s", r, r2, text);
        assert_same_diags(&d1, &d2, text);
        if (r == 0) {
                struct accounts *shed = NULL;
                if (accounts_is_shed(a)) {
                        /* Only a partial reload of a shed file gives a shed one. */
                        assert_true(from_shed && delta.partial);
                        rl->shed_partial++;
                        shed = a;
                        assert_int_equal(accounts_expand(a, &a_full), 0);
                        a = a_full;
                }
                assert_same_decls(a, whole, text);
                if (delta.partial) {
                        rl->partial++;
                        /* Listed: exactly what differs from the last good file. */
                        bool *listed = xcalloc(a->n + 1, sizeof(*listed));
                        for (size_t k = 0; k < delta.n; k++)
                                listed[delta.changed[k]] = true;
                        for (size_t i = 0; i < a->n; i++) {
                                const struct account_decl *old = accounts_find(&before, a->v[i].name);
                                bool differs = !old || !account_decl_equal(old, &a->v[i]);
                                if (listed[i] != differs)
                                        fail_msg("%s %s but is%s listed as changed in:\n%s", a->v[i].name,
                                                 differs ? "changed" : "did not change", listed[i] ? "" : " not",
                                                 text);
                        }
                        free(listed);
                }
                if (shed) {
                        a = shed;
                        for (size_t i = 0; i < whole->n; i++)
                                assert_string_equal(accounts_name(a, i), whole->v[i].name);
                } else if (rl->shed && accounts_shed(a)) {
                        shed = a;
                }
                /* A shed file gives each declaration as the whole parse has it. */
                for (size_t i = 0; shed && i < whole->n; i++) {
                        struct account_decl one;
                        assert_int_equal(accounts_get(shed, whole->v[i].name, &one), 0);
                        if (!account_decl_equal(&one, &whole->v[i]) || one.line != whole->v[i].line ||
                            one.column != whole->v[i].column)
                                fail_msg("accounts_get(%s) differs from the whole parse of:\n%s", whole->v[i].name,
                                         text);
                }
                if (shed)
                        assert_int_equal(accounts_get(shed, "NO-SUCH-ACCOUNT", &(struct account_decl){ 0 }), -ENOENT);
                accounts_free(rl->good);
                rl->good = a;
        }
        accounts_delta_clear(&delta);
        accounts_free(whole);
        accounts_free(good_full);
        accounts_free(a_full);
        free(before.v);
        diag_list_clear(&d1);
        diag_list_clear(&d2);
        return r;
}

/* The pattern with its '@' (if any) replaced by two digits of number. */
static char *fill_number(const char *pattern, unsigned number) {
        const char *at = strchr(pattern, '@');
        if (!at)
                return xstrdup(pattern);
        return xasprintf("%.*s%02u%s", (int)(at - pattern), pattern, number, at + 1);
}

static char *numbered_file(size_t n, size_t changed, const char *store) {
        size_t cap = 64 + n * 128, off = 0;
        char *t = xmalloc(cap);
        off += (size_t)snprintf(t + off, cap - off, "# numbered\naccounts:\n");
        for (size_t i = 0; i < n; i++)
                off += (size_t)snprintf(t + off, cap - off, "  ACC%03zu:\n    jetstream:\n      max_store: %s\n", i,
                                        i == changed ? store : "1GiB");
        return t;
}

static void load_update(bool shed) {
        char dir[] = "/tmp/test-accounts-XXXXXX";
        assert_non_null(mkdtemp(dir));
        struct reload rl = { .path = path_join(dir, "accounts.yaml"), .shed = shed };

        /* One account's value: only it is re-read. */
        char *t = numbered_file(50, 50, "");
        assert_int_equal(reload(&rl, t), 0);
        free(t);
        for (size_t i = 0; i < 50; i += 7) {
                size_t before = rl.partial;
                t = numbered_file(50, i, "2GiB");
                assert_int_equal(reload(&rl, t), 0);
                free(t);
                assert_int_equal(rl.partial, before + 1);
                assert_int_equal(find(rl.good, "ACC007")->limits.max_store, i == 7 ? 2 * GiB : GiB);
        }
        /* Edits that must be read as a whole file, because what they break is
         * outside the accounts they touch. */
        static const char pinned[] = "accounts:\n  A:\n    key: " KEY1 "\n  B:\n    jetstream: enabled\n  C:\n    jetstream: enabled\n";
        static const char pinned_twice[] = "accounts:\n  A:\n    key: " KEY1 "\n  B:\n    key: " KEY1 "\n  C:\n    jetstream: enabled\n";
        static const char pinned_new[] = "accounts:\n  A:\n    key: " KEY1 "\n  B:\n    jetstream: enabled\n  N:\n    key: " KEY1 "\n  C:\n    jetstream: enabled\n";
        static const char renamed_dup[] = "accounts:\n  A:\n    key: " KEY1 "\n  B:\n    jetstream: enabled\n  A:\n    jetstream: enabled\n";
        static const char moved_key[] = "accounts:\n  A:\n    jetstream: enabled\n  B:\n    key: " KEY1 "\n  C:\n    jetstream: enabled\n";
        assert_int_equal(reload(&rl, pinned), 0);
        assert_int_equal(reload(&rl, pinned_twice), -EINVAL);
        assert_int_equal(reload(&rl, pinned_new), -EINVAL);
        assert_int_equal(reload(&rl, renamed_dup), -EINVAL);
        assert_int_equal(reload(&rl, moved_key), 0);
        assert_string_equal(find(rl.good, "B")->key, KEY1);
        accounts_free(rl.good);
        rl.good = NULL;
        t = numbered_file(50, 49, "2GiB");
        assert_int_equal(reload(&rl, t), 0);
        free(t);

        /* Unchanged text: nothing to look at. */
        t = numbered_file(50, 49, "2GiB");
        assert_int_equal(reload(&rl, t), 0);
        assert_int_equal(reload(&rl, t), 0);
        free(t);
        accounts_free(rl.good);
        rl.good = NULL;

        /* Random edits of lines, valid and not: every reload must match the whole parse. */
        static const char *const pool[] = {
                "  NEW@:", "    jetstream:", "      max_memory: 1GiB", "      max_store: @MiB", "      max_streams: @",
                "    jetstream: disabled", "    jetstream: enabled", "  ACC0@:", "    key: " KEY1, "    key: " KEY2,
                "      tiers:", "        R1: { max_memory: 1GiB, max_store: 2GiB }", "        R3: { max_memory: 1GiB,",
                "          max_store: 2GiB }", "# comment", "", "  # indented comment", "    jetstream: &js",
                "    jetstream: *js", "    <<: { key: " KEY2 " }", "...", "---", "other: 1", "   ODD@:", "  \"Q@\":",
                "      max_store: \"1GiB", "      max_store: '3GiB'", "  bad name:", "\tTAB: 1", "  L@: [1, 2",
                "    jetstream: {max_memory: 1GiB}", "      max_store: |-", "        5GiB", "# caf\xc3\xa9",
                "# sep\xe2\x80\xa8", "  Z@: ~", "  Y@: {}", "  W@:\r", "accounts:", "      max_store: 0",
                "  ACC001: { jetstream: disabled }", "? K@", ": { jetstream: enabled }", "    max_store: 1GiB",
                "    limits:", "      max_connections: @", "      max_payload: @KiB", "      max_data: 5000000000",
                "      max_leafnodes: 0", "      max_subscriptions: 9999999999", "    limits: { max_exports: @ }",
                "    limits: ~", "      max_conns: 1", "  ACC0@: { limits: { max_imports: -1 } }",
        };
        /* Lines that keep a file valid more often than not. */
        static const char *const likely[] = {
                "      max_store: @MiB", "      max_streams: @", "      max_memory: 1GiB", "# comment", "",
                "  # indented comment", "  NEW@:", "    jetstream: disabled", "    jetstream: enabled", "  Z@: ~",
                "    jetstream: {max_memory: 1GiB}", "  ACC0@: { jetstream: disabled }", "    jetstream:",
                "    key: " KEY1, "    key: " KEY2, "    limits:", "      max_connections: @",
                "      max_payload: @KiB", "    limits: { max_exports: @ }",
        };
        srand(7);
        /* Each round edits the last good text (a line or two), as a user would. */
        char **lines = xcalloc(4096, sizeof(*lines)), **cand = xcalloc(4096, sizeof(*cand));
        size_t n = 0, good_reloads = 0;
        for (int round = 0; round < 6000; round++) {
                /* A fresh plain file now and then: odd lines that stay (an anchor,
                 * a \r) rightly keep every later reload a whole one. */
                if (round % 20 == 0) {
                        for (size_t i = 0; i < n; i++)
                                free(lines[i]);
                        n = 0;
                        lines[n++] = xstrdup("# random edits");
                        lines[n++] = xstrdup("accounts:");
                        for (unsigned i = 0; i < 30; i++) {
                                lines[n++] = xasprintf("  ACC%03u:", i);
                                lines[n++] = xstrdup("    jetstream:");
                                lines[n++] = xasprintf("      max_store: %uMiB", (unsigned)rand() % 90 + 1);
                        }
                }
                size_t m = n;
                for (size_t i = 0; i < n; i++)
                        cand[i] = xstrdup(lines[i]);
                for (int edits = rand() % 4 ? 1 : 2; edits > 0; edits--) {
                        size_t at = (size_t)rand() % (m + 1);
                        int op = rand() % 3;
                        const char *pick = rand() % 10 < 7 ? likely[(size_t)rand() % ARRAY_SIZE(likely)]
                                                           : pool[(size_t)rand() % ARRAY_SIZE(pool)];
                        char *line = fill_number(pick, (unsigned)rand() % 40);
                        if (op == 0 && at < m) {
                                free(cand[at]);
                                cand[at] = line;
                        } else if (op == 1 && m < 4000) {
                                memmove(&cand[at + 1], &cand[at], (m - at) * sizeof(*cand));
                                cand[at] = line;
                                m++;
                        } else {
                                free(line);
                                if (at < m && m > 2) {
                                        free(cand[at]);
                                        memmove(&cand[at], &cand[at + 1], (m - at - 1) * sizeof(*cand));
                                        m--;
                                }
                        }
                }
                size_t len = 0;
                for (size_t i = 0; i < m; i++)
                        len += strlen(cand[i]) + 1;
                char *text = xmalloc(len + 1), *p = text;
                for (size_t i = 0; i < m; i++)
                        p += sprintf(p, "%s\n", cand[i]);
                bool good = reload(&rl, text) == 0;
                good_reloads += good;
                free(text);
                char **keep = good ? cand : lines, **drop = good ? lines : cand;
                for (size_t i = 0, k = good ? n : m; i < k; i++)
                        free(drop[i]);
                if (good) {
                        cand = lines;
                        lines = keep;
                        n = m;
                }
        }
        for (size_t i = 0; i < n; i++)
                free(lines[i]);
        free(lines);
        free(cand);
        print_message("%zu good reloads, %zu of them re-read only the edited accounts (%zu of a shed file)\n",
                      good_reloads, rl.partial, rl.shed_partial);
        assert_true(rl.partial > good_reloads / 2);
        if (shed)
                assert_true(rl.shed_partial > rl.partial / 2);
        accounts_free(rl.good);
        assert_int_equal(unlink(rl.path), 0);
        assert_int_equal(rmdir(dir), 0);
        free(rl.path);
}

static void test_load_update(void **state) {
        load_update(false);
}

/* The same edits of a file whose declarations are shed after each reload, as
 * the daemon keeps it between passes. */
static void test_load_update_shed(void **state) {
        load_update(true);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_spec_example),
                cmocka_unit_test(test_field_table),
                cmocka_unit_test(test_acct_field_table),
                cmocka_unit_test(test_acct_limits),
                cmocka_unit_test(test_config_flavor),
                cmocka_unit_test(test_empty_accounts),
                cmocka_unit_test(test_modes),
                cmocka_unit_test(test_values),
                cmocka_unit_test(test_merge_keys),
                cmocka_unit_test(test_merged_accounts),
                cmocka_unit_test(test_aliases_shared),
                cmocka_unit_test(test_decl_equal),
                cmocka_unit_test(test_bad),
                cmocka_unit_test(test_many_errors),
                cmocka_unit_test(test_error_cap),
                cmocka_unit_test(test_alias_bombs),
                cmocka_unit_test(test_many_accounts),
                cmocka_unit_test(test_load),
                cmocka_unit_test(test_load_update),
                cmocka_unit_test(test_load_update_shed),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
