/* The diff on a table of cases: desired (YAML) x observed (JWT claims) -> plan. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "accounts.h"
#include "diff.h"
#include "jslimits.h"
#include "observe.h"
#include "report.h"
#include "util.h"

/* Valid account public keys (made with nkeys, checksums intact). */
static struct nkey keys[4];

struct fake_account {
        int key;            /* index into keys */
        const char *claims; /* JSON of the JWT payload */
        bool has_state;
        struct server_account_state state;
        const char *untrusted; /* why observe would not trust its JWT */
};

static struct observed *observed_make(const struct fake_account *fa, size_t n, bool server_js) {
        struct observed *o = xcalloc(1, sizeof(*o));
        o->n_servers = 1;
        o->servers = xcalloc(1, sizeof(*o->servers));
        snprintf(o->servers[0].id, sizeof(o->servers[0].id), "NSERVER");
        o->servers[0].name = xstrdup("n1");
        o->servers[0].jetstream = server_js;
        o->servers[0].system_account = xstrdup(keys[3].pub);
        o->accounts = xcalloc(n ? n : 1, sizeof(*o->accounts));
        o->by_name = xcalloc(n ? n : 1, sizeof(*o->by_name));
        o->n_accounts = n;
        for (size_t i = 0; i < n; i++) {
                struct observed_account *a = &o->accounts[i];
                snprintf(a->key, sizeof(a->key), "%s", keys[fa[i].key].pub);
                json_error_t jerr;
                json_t *claims = json_loads(fa[i].claims, 0, &jerr);
                if (!claims)
                        fail_msg("fixture %zu: %s", i, jerr.text);
                const char *name = json_string_value(json_object_get(claims, "name"));
                a->name = name ? xstrdup(name) : NULL;
                a->iat = json_integer_value(json_object_get(claims, "iat"));
                js_state_from_claims(claims, &a->js);
                json_decref(claims);
                a->untrusted = fa[i].untrusted ? xstrdup(fa[i].untrusted) : NULL;
                if (fa[i].has_state) {
                        a->n_servers = 1;
                        a->servers = xcalloc(1, sizeof(*a->servers));
                        a->servers[0] = fa[i].state;
                }
        }
        /* The observe module keeps accounts sorted by key and by_name sorted by (name, key). */
        for (size_t i = 0; i < n; i++)
                for (size_t j = i + 1; j < n; j++)
                        if (strcmp(o->accounts[j].key, o->accounts[i].key) < 0) {
                                struct observed_account t = o->accounts[i];
                                o->accounts[i] = o->accounts[j];
                                o->accounts[j] = t;
                        }
        for (size_t i = 0; i < n; i++)
                o->by_name[i] = i;
        for (size_t i = 0; i < n; i++)
                for (size_t j = i + 1; j < n; j++) {
                        const struct observed_account *x = &o->accounts[o->by_name[i]], *y = &o->accounts[o->by_name[j]];
                        int c = strcmp(y->name ? y->name : "", x->name ? x->name : "");
                        if (c < 0 || (c == 0 && strcmp(y->key, x->key) < 0)) {
                                size_t t = o->by_name[i];
                                o->by_name[i] = o->by_name[j];
                                o->by_name[j] = t;
                        }
                }
        return o;
}

static struct accounts *desired(const char *yaml) {
        struct accounts *a = NULL;
        struct diag_list d = { 0 };
        if (accounts_parse(yaml, strlen(yaml), "accounts.yaml", ACCOUNTS_OPERATOR, &a, &d) < 0) {
                diag_print(&d, stderr);
                fail_msg("fixture does not parse");
        }
        diag_list_clear(&d);
        return a;
}

static const struct plan_change *find_change(const struct plan_entry *e, const char *field) {
        for (size_t i = 0; i < e->n_changes; i++)
                if (strcmp(e->changes[i].field, field) == 0)
                        return &e->changes[i];
        return NULL;
}

static void expect_change(const struct plan_entry *e, const char *field, int64_t o, int64_t n) {
        const struct plan_change *c = find_change(e, field);
        if (!c)
                fail_msg("no change of %s", field);
        assert_int_equal(c->old_value, o);
        assert_int_equal(c->new_value, n);
}

static bool has_warning(const struct plan_entry *e, const char *part) {
        for (size_t i = 0; i < e->n_warnings; i++)
                if (strstr(e->warnings[i], part))
                        return true;
        return false;
}

#define GiB (INT64_C(1) << 30)
#define MiB (INT64_C(1) << 20)

static const char no_js[] = "{\"name\":\"APP\",\"iat\":100,\"nats\":{\"limits\":{\"conn\":-1,\"subs\":-1},\"type\":\"account\",\"version\":2}}";
static const char js_1g_5g[] = "{\"name\":\"APP\",\"iat\":100,\"nats\":{\"limits\":{\"conn\":-1,\"mem_storage\":1073741824,"
                               "\"disk_storage\":5368709120,\"streams\":100},\"type\":\"account\",\"version\":2}}";

struct run {
        struct accounts *a;
        struct observed *o;
        struct plan *p;
};

static void run_case_seeds(struct run *r, const char *yaml, const struct fake_account *fa, size_t n, bool create,
                           bool server_js, const struct statedir_index *seeds) {
        r->a = desired(yaml);
        r->o = observed_make(fa, n, server_js);
        struct plan_options opt = { .create_missing = create, .seeds = seeds };
        r->p = plan_compute(r->a, r->o, &opt);
}

static void run_case(struct run *r, const char *yaml, const struct fake_account *fa, size_t n, bool create, bool server_js) {
        run_case_seeds(r, yaml, fa, n, create, server_js, NULL);
}

static void run_free(struct run *r) {
        plan_free(r->p);
        observed_free(r->o);
        accounts_free(r->a);
}

static void test_create(void **state) {
        struct run r;
        run_case(&r, "accounts:\n  APP:\n    jetstream: { max_memory: 1GiB, max_store: 5GiB }\n", NULL, 0, true, true);
        assert_int_equal(r.p->n, 1);
        assert_int_equal(r.p->v[0].action, PLAN_CREATE);
        expect_change(&r.p->v[0], "max_memory", 0, GiB);
        expect_change(&r.p->v[0], "max_store", 0, 5 * GiB);
        assert_int_equal(r.p->v[0].n_changes, 2);
        run_free(&r);

        run_case(&r, "accounts:\n  APP:\n", NULL, 0, true, true);
        assert_int_equal(r.p->v[0].action, PLAN_CREATE);
        assert_int_equal(r.p->v[0].n_changes, 0);
        run_free(&r);

        run_case(&r, "accounts:\n  APP:\n    jetstream: enabled\n", NULL, 0, false, true);
        assert_int_equal(r.p->v[0].action, PLAN_ERROR);
        assert_non_null(strstr(r.p->v[0].error, "create_missing"));
        run_free(&r);
}

static void test_enable_update_disable(void **state) {
        struct run r;
        struct fake_account off = { .key = 0, .claims = no_js };
        run_case(&r, "accounts:\n  APP:\n    jetstream: { max_memory: 1GiB, max_store: 5GiB, max_streams: 100 }\n", &off, 1,
                 true, true);
        assert_int_equal(r.p->v[0].action, PLAN_ENABLE);
        assert_string_equal(r.p->v[0].key, keys[0].pub);
        expect_change(&r.p->v[0], "max_memory", 0, GiB);
        expect_change(&r.p->v[0], "max_streams", -1, 100);
        run_free(&r);

        struct fake_account on = { .key = 0, .claims = js_1g_5g };
        run_case(&r, "accounts:\n  APP:\n    jetstream: { max_memory: 1GiB, max_store: 10GiB, max_streams: 100 }\n", &on, 1,
                 true, true);
        assert_int_equal(r.p->v[0].action, PLAN_UPDATE);
        assert_int_equal(r.p->v[0].n_changes, 1);
        expect_change(&r.p->v[0], "max_store", 5 * GiB, 10 * GiB);
        char buf[128];
        report_change(&r.p->v[0].changes[0], buf, sizeof(buf));
        assert_string_equal(buf, "max_store 5GiB -> 10GiB");
        run_free(&r);

        run_case(&r, "accounts:\n  APP:\n    jetstream: disabled\n", &on, 1, true, true);
        assert_int_equal(r.p->v[0].action, PLAN_DISABLE);
        expect_change(&r.p->v[0], "max_memory", GiB, 0);
        expect_change(&r.p->v[0], "max_store", 5 * GiB, 0);
        run_free(&r);

        run_case(&r, "accounts:\n  APP:\n    jetstream: disabled\n", &off, 1, true, true);
        assert_int_equal(r.p->v[0].action, PLAN_UNCHANGED);
        run_free(&r);
}

static void test_unchanged_and_unlimited(void **state) {
        struct run r;
        struct fake_account on = { .key = 0, .claims = js_1g_5g };
        run_case(&r, "accounts:\n  APP:\n    jetstream: { max_memory: 1GiB, max_store: 5GiB, max_streams: 100 }\n", &on, 1,
                 true, true);
        assert_int_equal(r.p->v[0].action, PLAN_UNCHANGED);
        assert_int_equal(r.p->v[0].n_changes, 0);
        run_free(&r);

        /* streams/consumer 0 and max_ack_pending <= 0 mean unlimited to nats-server. */
        struct fake_account unl = { .key = 0,
                                    .claims = "{\"name\":\"APP\",\"nats\":{\"limits\":{\"mem_storage\":-1,\"disk_storage\":-1,"
                                              "\"streams\":0,\"consumer\":0,\"max_ack_pending\":0}}}" };
        run_case(&r, "accounts:\n  APP:\n    jetstream: enabled\n", &unl, 1, true, true);
        assert_int_equal(r.p->v[0].action, PLAN_UNCHANGED);
        run_free(&r);

        /* Unmanaged JetStream: existence only. */
        run_case(&r, "accounts:\n  APP: {}\n", &on, 1, true, true);
        assert_int_equal(r.p->v[0].action, PLAN_UNCHANGED);
        run_free(&r);
}

static void test_tiers(void **state) {
        struct run r;
        struct fake_account on = { .key = 0, .claims = js_1g_5g };
        run_case(&r,
                 "accounts:\n  APP:\n    jetstream:\n      tiers:\n        R1: { max_memory: 1GiB, max_store: 10GiB }\n"
                 "        R3: { max_memory: 512MiB, max_store: 5GiB }\n",
                 &on, 1, true, true);
        assert_int_equal(r.p->v[0].action, PLAN_UPDATE);
        expect_change(&r.p->v[0], "max_memory", GiB, 0);
        expect_change(&r.p->v[0], "max_streams", 100, -1);
        expect_change(&r.p->v[0], "R1.max_store", 0, 10 * GiB);
        expect_change(&r.p->v[0], "R3.max_memory", 0, 512 * MiB);
        run_free(&r);

        struct fake_account tiered = {
                .key = 0,
                .claims = "{\"name\":\"APP\",\"nats\":{\"limits\":{\"mem_storage\":5,\"tiered_limits\":{"
                          "\"R1\":{\"mem_storage\":1073741824,\"disk_storage\":10737418240},"
                          "\"R3\":{\"mem_storage\":536870912,\"disk_storage\":5368709120}}}}}",
        };
        /* Flat limits beside tiered ones are ignored by nats-server, so they do not count. */
        run_case(&r,
                 "accounts:\n  APP:\n    jetstream:\n      tiers:\n        R1: { max_memory: 1GiB, max_store: 10GiB }\n"
                 "        R3: { max_memory: 512MiB, max_store: 5GiB }\n",
                 &tiered, 1, true, true);
        assert_int_equal(r.p->v[0].action, PLAN_UNCHANGED);
        run_free(&r);

        run_case(&r, "accounts:\n  APP:\n    jetstream:\n      tiers:\n        R1: { max_memory: 1GiB, max_store: 10GiB }\n",
                 &tiered, 1, true, true);
        assert_int_equal(r.p->v[0].action, PLAN_UPDATE);
        expect_change(&r.p->v[0], "R3.max_memory", 512 * MiB, 0);
        run_free(&r);
}

static void test_matching(void **state) {
        struct run r;
        struct fake_account two[] = { { .key = 0, .claims = js_1g_5g }, { .key = 1, .claims = no_js } };
        run_case(&r, "accounts:\n  APP:\n    jetstream: enabled\n", two, 2, true, true);
        assert_int_equal(r.p->v[0].action, PLAN_ERROR);
        assert_non_null(strstr(r.p->v[0].error, "2 accounts are named APP"));
        assert_non_null(strstr(r.p->v[0].error, "pin one with key"));
        run_free(&r);

        char *yaml = xasprintf("accounts:\n  APP:\n    key: %s\n    jetstream: disabled\n", keys[1].pub);
        run_case(&r, yaml, two, 2, true, true);
        assert_int_equal(r.p->v[0].action, PLAN_UNCHANGED);
        assert_string_equal(r.p->v[0].key, keys[1].pub);
        run_free(&r);
        free(yaml);

        yaml = xasprintf("accounts:\n  OTHER:\n    key: %s\n    jetstream: disabled\n", keys[2].pub);
        run_case(&r, yaml, two, 2, true, true);
        assert_int_equal(r.p->v[0].action, PLAN_ERROR);
        assert_non_null(strstr(r.p->v[0].error, "not in the resolver"));
        run_free(&r);
        free(yaml);

        yaml = xasprintf("accounts:\n  OTHER:\n    key: %s\n    jetstream: disabled\n", keys[1].pub);
        run_case(&r, yaml, two, 2, true, true);
        assert_true(has_warning(&r.p->v[0], "named APP"));
        run_free(&r);
        free(yaml);

        struct fake_account sys = { .key = 3, .claims = "{\"name\":\"SYS\",\"nats\":{}}" };
        run_case(&r, "accounts:\n  SYS:\n    jetstream: enabled\n", &sys, 1, true, true);
        assert_int_equal(r.p->v[0].action, PLAN_ERROR);
        assert_non_null(strstr(r.p->v[0].error, "system account"));
        run_free(&r);
}

/* A JWT observe did not trust is never matched by name, adopted or counted as
 * a second account of that name. */
static void test_untrusted_never_matched(void **state) {
        struct run r;
        static const char forged[] = "its JWT is signed by OROGUE, which is neither ...";
        struct fake_account rogue_only = { .key = 1, .claims = no_js, .untrusted = forged };
        run_case(&r, "accounts:\n  APP:\n    jetstream: enabled\n", &rogue_only, 1, true, true);
        assert_int_equal(r.p->v[0].action, PLAN_ERROR); /* neither enable (adopt) nor create (a second APP) */
        assert_non_null(strstr(r.p->v[0].error, keys[1].pub));
        assert_non_null(strstr(r.p->v[0].error, forged));
        assert_non_null(strstr(r.p->v[0].error, "never re-signed"));
        assert_null(r.p->v[0].obs);
        run_free(&r);

        struct fake_account both[] = { { .key = 0, .claims = js_1g_5g }, { .key = 1, .claims = no_js, .untrusted = forged } };
        run_case(&r, "accounts:\n  APP:\n    jetstream: { max_memory: 1GiB, max_store: 5GiB, max_streams: 100 }\n", both, 2,
                 true, true);
        assert_int_equal(r.p->v[0].action, PLAN_UNCHANGED);
        assert_string_equal(r.p->v[0].key, keys[0].pub);
        assert_true(has_warning(&r.p->v[0], "ignoring account"));
        assert_true(has_warning(&r.p->v[0], keys[1].pub));
        run_free(&r);

        /* Pinned by key to an account whose JWT is a forgery. */
        char *yaml = xasprintf("accounts:\n  APP:\n    key: %s\n    jetstream: disabled\n", keys[1].pub);
        run_case(&r, yaml, both, 2, true, true);
        assert_int_equal(r.p->v[0].action, PLAN_ERROR);
        assert_string_equal(r.p->v[0].key, keys[1].pub);
        assert_non_null(strstr(r.p->v[0].error, "not trusted"));
        assert_null(r.p->v[0].obs);
        run_free(&r);
        free(yaml);
}

/* A name created before (a seed in state_dir) is that key: reused for a
 * create, recognised in the resolver whatever CLAIMS.PACK's server missed. */
static void test_seeds_reused(void **state) {
        struct statedir_seed entries[1];
        memset(entries, 0, sizeof(entries));
        snprintf(entries[0].name, sizeof(entries[0].name), "APP");
        snprintf(entries[0].key, sizeof(entries[0].key), "%s", keys[2].pub);
        struct statedir_index seeds = { .v = entries, .n = 1 };
        struct run r;

        run_case_seeds(&r, "accounts:\n  APP:\n    jetstream: enabled\n", NULL, 0, true, true, &seeds);
        assert_int_equal(r.p->v[0].action, PLAN_CREATE);
        assert_true(r.p->v[0].seed_reused);
        assert_string_equal(r.p->v[0].key, keys[2].pub);
        run_free(&r);

        /* The resolver holds it under another name: still that account, not a second one. */
        struct fake_account renamed = { .key = 2, .claims = "{\"name\":\"OLD\",\"iat\":100,\"nats\":{}}" };
        run_case_seeds(&r, "accounts:\n  APP:\n    jetstream: disabled\n", &renamed, 1, true, true, &seeds);
        assert_int_equal(r.p->v[0].action, PLAN_UNCHANGED);
        assert_false(r.p->v[0].seed_reused);
        assert_ptr_not_equal(r.p->v[0].obs, NULL);
        assert_true(has_warning(&r.p->v[0], "named OLD"));
        run_free(&r);

        /* Its JWT replaced by a forgery. */
        renamed.untrusted = "its JWT is signed by OROGUE";
        run_case_seeds(&r, "accounts:\n  APP:\n    jetstream: disabled\n", &renamed, 1, true, true, &seeds);
        assert_int_equal(r.p->v[0].action, PLAN_ERROR);
        assert_non_null(strstr(r.p->v[0].error, "never re-signed"));
        run_free(&r);

        /* Two keys for the name in state_dir: none is picked. */
        snprintf(entries[0].other, sizeof(entries[0].other), "%s", keys[1].pub);
        run_case_seeds(&r, "accounts:\n  APP:\n    jetstream: enabled\n", NULL, 0, true, true, &seeds);
        assert_int_equal(r.p->v[0].action, PLAN_ERROR);
        assert_non_null(strstr(r.p->v[0].error, "seeds of two accounts named APP"));
        run_free(&r);
}

/* A JWT that not every server holds (a push that reached only some) is pushed again. */
static void test_partly_held(void **state) {
        struct run r;
        struct fake_account on = { .key = 0, .claims = js_1g_5g };
        run_case(&r, "accounts:\n  APP:\n    jetstream: { max_memory: 1GiB, max_store: 5GiB, max_streams: 100 }\n", &on, 1,
                 true, true);
        assert_int_equal(r.p->v[0].action, PLAN_UNCHANGED);
        r.o->n_servers = 1;
        r.o->accounts[0].holders = 1;
        plan_free(r.p);
        struct plan_options opt = { .create_missing = true };
        r.p = plan_compute(r.a, r.o, &opt);
        assert_int_equal(r.p->v[0].action, PLAN_UNCHANGED); /* 1 of 1 */
        /* A second server that does not hold it. */
        r.o->servers = xreallocarray(r.o->servers, 2, sizeof(*r.o->servers));
        memset(&r.o->servers[1], 0, sizeof(r.o->servers[1]));
        snprintf(r.o->servers[1].id, sizeof(r.o->servers[1].id), "NSERVER2");
        r.o->n_servers = 2;
        plan_free(r.p);
        r.p = plan_compute(r.a, r.o, &opt);
        assert_int_equal(r.p->v[0].action, PLAN_UPDATE);
        assert_int_equal(r.p->v[0].n_changes, 0);
        assert_true(has_warning(&r.p->v[0], "only 1 of 2 servers hold the account's current JWT"));
        run_free(&r);
}

static void test_warnings_and_applied_state(void **state) {
        struct run r;
        struct fake_account used = { .key = 0, .claims = js_1g_5g, .has_state = true,
                                     .state = { .server_id = "NSERVER", .loaded = true, .complete = true,
                                                .jetstream_enabled = true, .have_usage = true, .memory = 0,
                                                .storage = 2 * MiB } };
        run_case(&r, "accounts:\n  APP:\n    jetstream: { max_memory: 1GiB, max_store: 1MiB, max_streams: 100 }\n", &used, 1,
                 true, true);
        assert_int_equal(r.p->v[0].action, PLAN_UPDATE);
        assert_true(has_warning(&r.p->v[0], "max_store 1MiB is below current usage 2MiB"));
        run_free(&r);

        struct fake_account incomplete = used;
        incomplete.state.complete = false;
        run_case(&r, "accounts:\n  APP:\n    jetstream: { max_memory: 1GiB, max_store: 5GiB, max_streams: 100 }\n",
                 &incomplete, 1, true, true);
        assert_int_equal(r.p->v[0].action, PLAN_UPDATE);
        assert_int_equal(r.p->v[0].n_changes, 0);
        assert_true(has_warning(&r.p->v[0], "not applied"));
        run_free(&r);

        struct fake_account off = { .key = 0, .claims = no_js };
        run_case(&r, "accounts:\n  APP:\n    jetstream: enabled\n", &off, 1, true, false);
        assert_int_equal(r.p->v[0].action, PLAN_ENABLE);
        assert_true(has_warning(&r.p->v[0], "JetStream is off on server n1"));
        run_free(&r);
}

static void test_claims_round_trip(void **state) {
        /* What the diff asks for, written into claims, reads back as the same state. */
        struct accounts *a = desired("accounts:\n  APP:\n    jetstream:\n      tiers:\n        R1: { max_memory: 1GiB }\n"
                                     "        R5: { max_store: 1TiB, max_ack_pending: 7 }\n  B:\n    jetstream: { max_consumers: 9, "
                                     "max_bytes_required: true, max_memory: 0, max_store: 1 }\n");
        for (size_t i = 0; i < a->n; i++) {
                struct js_state want, back;
                js_state_from_decl(&a->v[i], &want);
                json_t *claims = json_loads(js_1g_5g, 0, NULL);
                js_state_to_claims(&want, claims);
                assert_int_equal(json_integer_value(json_object_get(json_object_get(json_object_get(claims, "nats"), "limits"), "conn")), -1);
                js_state_from_claims(claims, &back);
                assert_int_equal(back.mode, want.mode);
                for (int t = -1; t < JS_TIERS; t++)
                        for (size_t f = 0; f < js_fields_count; f++)
                                assert_int_equal(js_state_field(&back, t, &js_fields[f]), js_state_field(&want, t, &js_fields[f]));
                json_decref(claims);
        }
        accounts_free(a);
}

static int setup(void **state) {
        for (size_t i = 0; i < 4; i++)
                nkey_generate(NKEY_ACCOUNT, &keys[i]);
        return 0;
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_create),
                cmocka_unit_test(test_enable_update_disable),
                cmocka_unit_test(test_unchanged_and_unlimited),
                cmocka_unit_test(test_tiers),
                cmocka_unit_test(test_matching),
                cmocka_unit_test(test_untrusted_never_matched),
                cmocka_unit_test(test_seeds_reused),
                cmocka_unit_test(test_partly_held),
                cmocka_unit_test(test_warnings_and_applied_state),
                cmocka_unit_test(test_claims_round_trip),
        };
        return cmocka_run_group_tests(tests, setup, NULL);
}
