/* The diff on a table of cases: desired (YAML) x observed (JWT claims) -> plan. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "accounts.h"
#include "apply.h"
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
                acct_state_from_claims(claims, &a->acct);
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

/* Every account limit written out unlimited, as nats-accountd and nsc create accounts. */
#define ACCT_UNLIMITED "\"conn\":-1,\"subs\":-1,\"payload\":-1,\"leaf\":-1,\"data\":-1,\"imports\":-1,\"exports\":-1"
static const char acct_open[] = "{\"name\":\"APP\",\"iat\":100,\"nats\":{\"limits\":{" ACCT_UNLIMITED
                                ",\"wildcards\":true,\"mem_storage\":1073741824,\"disk_storage\":5368709120,"
                                "\"streams\":100},\"type\":\"account\",\"version\":2}}";
static const char acct_100[] = "{\"name\":\"APP\",\"iat\":100,\"nats\":{\"limits\":{\"conn\":100,\"subs\":10000,"
                               "\"payload\":1048576,\"leaf\":4,\"data\":10737418240,\"imports\":50,\"exports\":50},"
                               "\"type\":\"account\",\"version\":2}}";
#define APP_100 "accounts:\n  APP:\n    limits: { max_connections: 100, max_subscriptions: 10000, max_payload: 1MiB,\n" \
                "              max_leafnodes: 4, max_data: 10GiB, max_imports: 50, max_exports: 50 }\n"

static void test_acct_limits(void **state) {
        struct run r;
        struct fake_account open = { .key = 0, .claims = acct_open }, hundred = { .key = 0, .claims = acct_100 };

        /* No `limits` key: whatever the JWT says is left alone. */
        run_case(&r, "accounts:\n  APP:\n    jetstream: { max_memory: 1GiB, max_store: 5GiB, max_streams: 100 }\n",
                 &hundred, 1, true, true);
        assert_int_equal(r.p->v[0].action, PLAN_ENABLE);
        assert_null(find_change(&r.p->v[0], "max_connections"));
        run_free(&r);
        run_case(&r, "accounts:\n  APP: {}\n", &hundred, 1, true, true);
        assert_int_equal(r.p->v[0].action, PLAN_UNCHANGED);
        run_free(&r);

        /* Declared as the JWT has them: in sync. */
        run_case(&r, APP_100, &hundred, 1, true, true);
        assert_int_equal(r.p->v[0].action, PLAN_UNCHANGED);
        assert_int_equal(r.p->v[0].n_changes, 0);
        run_free(&r);

        /* One limit lowered; the JetStream limits are not ours here (no `jetstream` key). */
        run_case(&r, "accounts:\n  APP:\n    limits: { max_connections: 50, max_payload: 512KiB }\n", &open, 1, true, true);
        assert_int_equal(r.p->v[0].action, PLAN_UPDATE);
        assert_int_equal(r.p->v[0].n_changes, 2);
        expect_change(&r.p->v[0], "max_connections", -1, 50);
        expect_change(&r.p->v[0], "max_payload", -1, 512 * 1024);
        char buf[128];
        report_change(find_change(&r.p->v[0], "max_connections"), buf, sizeof(buf));
        assert_string_equal(buf, "max_connections unlimited -> 50");
        report_change(find_change(&r.p->v[0], "max_payload"), buf, sizeof(buf));
        assert_string_equal(buf, "max_payload unlimited -> 512KiB");
        assert_true(plan_entry_lowers(&r.p->v[0], "max_connections"));
        assert_false(plan_entry_lowers(&r.p->v[0], "max_subscriptions"));
        run_free(&r);

        /* Omitted fields are unlimited once `limits` is there; a JetStream change and a limit change together. */
        run_case(&r,
                 "accounts:\n  APP:\n    jetstream: { max_memory: 1GiB, max_store: 10GiB, max_streams: 100 }\n"
                 "    limits: { max_connections: 50 }\n",
                 &hundred, 1, true, true);
        assert_int_equal(r.p->v[0].action, PLAN_ENABLE);
        expect_change(&r.p->v[0], "max_connections", 100, 50);
        expect_change(&r.p->v[0], "max_subscriptions", 10000, -1);
        expect_change(&r.p->v[0], "max_data", 10 * GiB, -1);
        expect_change(&r.p->v[0], "max_exports", 50, -1);
        expect_change(&r.p->v[0], "max_store", 0, 10 * GiB);
        assert_false(plan_entry_lowers(&r.p->v[0], "max_subscriptions"));
        run_free(&r);

        /* nats-server reads an absent claim as 0 (nothing allowed), and so any negative but -1. */
        struct fake_account sparse = { .key = 0,
                                       .claims = "{\"name\":\"APP\",\"nats\":{\"limits\":{\"conn\":-1,\"subs\":-5,"
                                                 "\"leaf\":4294967296}}}" };
        run_case(&r, "accounts:\n  APP:\n    limits:\n", &sparse, 1, true, true);
        assert_int_equal(r.p->v[0].action, PLAN_UPDATE);
        assert_null(find_change(&r.p->v[0], "max_connections"));
        expect_change(&r.p->v[0], "max_subscriptions", 0, -1);
        expect_change(&r.p->v[0], "max_payload", 0, -1);
        expect_change(&r.p->v[0], "max_imports", 0, -1);
        /* A value nats-server would cut to 32 bits shows as written, and differs from every declared one. */
        expect_change(&r.p->v[0], "max_leafnodes", INT64_C(4294967296), -1);
        run_free(&r);
        run_case(&r, "accounts:\n  APP:\n    limits: { max_leafnodes: 2147483647 }\n", &sparse, 1, true, true);
        expect_change(&r.p->v[0], "max_leafnodes", INT64_C(4294967296), INT32_MAX);
        run_free(&r);

        /* A new account starts with every limit unlimited: only declared ones are changes. */
        run_case(&r, "accounts:\n  APP:\n    limits: { max_connections: 2, max_leafnodes: 0 }\n", NULL, 0, true, true);
        assert_int_equal(r.p->v[0].action, PLAN_CREATE);
        assert_int_equal(r.p->v[0].n_changes, 2);
        expect_change(&r.p->v[0], "max_connections", -1, 2);
        expect_change(&r.p->v[0], "max_leafnodes", -1, 0);
        run_free(&r);
}

static void test_acct_refused(void **state) {
        struct run r;
        /* Two imports, a wildcard export, wildcards not allowed. */
        struct fake_account busy = {
                .key = 0,
                .claims = "{\"name\":\"APP\",\"nats\":{\"limits\":{" ACCT_UNLIMITED "},"
                          "\"imports\":[{\"subject\":\"a\",\"type\":\"stream\"},{\"subject\":\"b\",\"type\":\"stream\"}],"
                          "\"exports\":[{\"subject\":\"events.>\",\"type\":\"stream\"}]}}",
        };
        run_case(&r, "accounts:\n  APP:\n    limits: { max_imports: 1 }\n", &busy, 1, true, true);
        assert_int_equal(r.p->v[0].action, PLAN_ERROR);
        assert_non_null(strstr(r.p->v[0].error, "max_imports 1 is below the 2 imports the account's JWT holds"));
        assert_non_null(strstr(r.p->v[0].error, "more imports than allowed"));
        assert_int_equal(r.p->v[0].n_changes, 0);
        run_free(&r);
        run_case(&r, "accounts:\n  APP:\n    limits: { max_imports: 2 }\n", &busy, 1, true, true);
        assert_int_equal(r.p->v[0].action, PLAN_UPDATE);
        run_free(&r);
        run_case(&r, "accounts:\n  APP:\n    limits: { max_exports: 0 }\n", &busy, 1, true, true);
        assert_int_equal(r.p->v[0].action, PLAN_ERROR);
        assert_non_null(strstr(r.p->v[0].error, "max_exports 0 is below the 1 exports"));
        run_free(&r);
        /* An export limit forbids wildcard exports unless the JWT allows them. */
        run_case(&r, "accounts:\n  APP:\n    limits: { max_exports: 5 }\n", &busy, 1, true, true);
        assert_int_equal(r.p->v[0].action, PLAN_ERROR);
        assert_non_null(strstr(r.p->v[0].error, "wildcard exports"));
        run_free(&r);
        struct fake_account allowed = busy;
        allowed.claims = "{\"name\":\"APP\",\"nats\":{\"limits\":{" ACCT_UNLIMITED ",\"wildcards\":true},"
                         "\"exports\":[{\"subject\":\"*.events\",\"type\":\"stream\"}]}}";
        run_case(&r, "accounts:\n  APP:\n    limits: { max_exports: 5 }\n", &allowed, 1, true, true);
        assert_int_equal(r.p->v[0].action, PLAN_UPDATE);
        run_free(&r);
        struct fake_account plain = busy;
        plain.claims = "{\"name\":\"APP\",\"nats\":{\"limits\":{" ACCT_UNLIMITED "},"
                       "\"exports\":[{\"subject\":\"events.x\",\"type\":\"stream\"},{\"subject\":\"a*b\",\"type\":\"stream\"}]}}";
        run_case(&r, "accounts:\n  APP:\n    limits: { max_exports: 5 }\n", &plain, 1, true, true);
        assert_int_equal(r.p->v[0].action, PLAN_UPDATE);
        run_free(&r);
        /* Unchanged limits are not re-checked: there is nothing to push. */
        run_case(&r, "accounts:\n  APP:\n    limits: {}\n", &busy, 1, true, true);
        assert_int_equal(r.p->v[0].action, PLAN_UNCHANGED);
        run_free(&r);

        /* The system account: refused with the file's location, and why limits there are dangerous. */
        struct fake_account sys = { .key = 3, .claims = "{\"name\":\"SYS\",\"nats\":{}}" };
        run_case(&r, "accounts:\n  SYS:\n    limits: { max_connections: 1 }\n", &sys, 1, true, true);
        assert_int_equal(r.p->v[0].action, PLAN_ERROR);
        assert_non_null(strstr(r.p->v[0].error, "accounts.yaml:2:3: SYS is the system account (system_account of server n1)"));
        assert_non_null(strstr(r.p->v[0].error, "could lock out the system user"));
        assert_int_equal(r.p->v[0].n_changes, 0);
        run_free(&r);
        char *yaml = xasprintf("accounts:\n  ANY:\n    key: %s\n    limits: { max_connections: 1 }\n", keys[3].pub);
        run_case(&r, yaml, &sys, 1, true, true);
        assert_int_equal(r.p->v[0].action, PLAN_ERROR);
        assert_non_null(strstr(r.p->v[0].error, "accounts.yaml:2:3: ANY is the system account"));
        run_free(&r);
        free(yaml);
}

/* The account as two servers see it. */
static void set_states_usage(struct run *r, const struct server_account_state *st, size_t n,
                             const struct tier_usage *usage) {
        struct observed_account *oa = &r->o->accounts[0];
        free(oa->tier_usage);
        oa->tier_usage = NULL;
        if (usage) {
                oa->tier_usage = xcalloc(1, sizeof(*oa->tier_usage));
                *oa->tier_usage = *usage;
        }
        free(oa->servers);
        oa->servers = xcalloc(n, sizeof(*oa->servers));
        memcpy(oa->servers, st, n * sizeof(*st));
        oa->n_servers = n;
        plan_free(r->p);
        struct plan_options opt = { .create_missing = true };
        r->p = plan_compute(r->a, r->o, &opt);
}

static void set_states(struct run *r, const struct server_account_state *st, size_t n) {
        set_states_usage(r, st, n, NULL);
}

static void test_acct_warnings(void **state) {
        struct run r;
        struct fake_account hundred = { .key = 0, .claims = acct_100 };
        /* 3 connections on one server, 2 and a leaf node on the other. */
        struct server_account_state two[2] = {
                { .server_id = "NONE", .loaded = true, .complete = true, .connections = 3, .have_subs = true, .max_subs = 12 },
                { .server_id = "NTWO", .loaded = true, .complete = true, .connections = 2, .leafnodes = 1, .have_subs = true,
                  .max_subs = 4 },
        };
        run_case(&r, "accounts:\n  APP:\n    limits: { max_connections: 5, max_subscriptions: 10, max_leafnodes: 0 }\n",
                 &hundred, 1, true, true);
        set_states(&r, two, 2);
        assert_int_equal(r.p->v[0].action, PLAN_UPDATE);
        assert_true(has_warning(&r.p->v[0], "max_connections 5 is below the 6 connections the account has now; the "
                                            "servers will close at least 1 of them"));
        assert_true(has_warning(&r.p->v[0], "max_leafnodes 0 is below the 1 leaf node connections"));
        assert_true(has_warning(&r.p->v[0], "max_subscriptions 10: a connection of the account to server NONE has 12 "
                                            "subscriptions; the servers close every connection with 10 or more"));
        assert_false(has_warning(&r.p->v[0], "server NTWO has"));
        run_free(&r);

        /* At the limit: a connection with exactly max_subscriptions is closed too. */
        run_case(&r, "accounts:\n  APP:\n    limits: { max_connections: 6, max_subscriptions: 12, max_leafnodes: 1 }\n",
                 &hundred, 1, true, true);
        set_states(&r, two, 2);
        assert_false(has_warning(&r.p->v[0], "max_connections"));
        assert_false(has_warning(&r.p->v[0], "max_leafnodes"));
        assert_true(has_warning(&r.p->v[0], "server NONE has 12 subscriptions"));
        run_free(&r);

        /* Raised limits never warn; neither does an unknown count of subscriptions where there are no connections. */
        run_case(&r, APP_100, &hundred, 1, true, true);
        struct server_account_state busy = { .server_id = "NONE", .loaded = true, .complete = true, .connections = 300,
                                             .have_subs = true, .max_subs = 50000 };
        set_states(&r, &busy, 1);
        assert_int_equal(r.p->v[0].n_warnings, 0);
        run_free(&r);

        /* CONNZ did not answer: say that it is not known. */
        run_case(&r, "accounts:\n  APP:\n    limits: { max_connections: 100, max_subscriptions: 10, max_payload: 1MiB,\n"
                     "      max_leafnodes: 4, max_data: 10GiB, max_imports: 50, max_exports: 50 }\n",
                 &hundred, 1, true, true);
        struct server_account_state unknown[2] = {
                { .server_id = "NONE", .loaded = true, .complete = true, .connections = 1 },
                { .server_id = "NTWO", .loaded = true, .complete = true },
        };
        set_states(&r, unknown, 2);
        assert_int_equal(r.p->v[0].n_warnings, 1);
        assert_true(has_warning(&r.p->v[0], "cannot tell whether max_subscriptions 10 closes connections: server NONE"));
        run_free(&r);
}

static void test_tier_usage_warnings(void **state) {
        struct run r;
        struct fake_account tiered = {
                .key = 0,
                .claims = "{\"name\":\"APP\",\"nats\":{\"limits\":{\"tiered_limits\":{"
                          "\"R1\":{\"mem_storage\":1073741824,\"disk_storage\":10737418240},"
                          "\"R3\":{\"mem_storage\":536870912,\"disk_storage\":5368709120}}}}}",
        };
        /* Each of three servers holds a replica of 30MiB of R3 file streams (90MiB in all, 30MiB counted
         * once), and one holds 3MiB of R1 memory streams. */
        struct server_account_state three[3] = {
                { .server_id = "NONE", .loaded = true, .complete = true, .jetstream_enabled = true, .have_tier_usage = true },
                { .server_id = "NTWO", .loaded = true, .complete = true, .jetstream_enabled = true, .have_tier_usage = true },
                { .server_id = "NTHREE", .loaded = true, .complete = true, .jetstream_enabled = true, .have_tier_usage = true },
        };
        struct tier_usage held = { .storage = { [2] = 90 * MiB }, .memory = { [0] = 3 * MiB } };
        run_case(&r, "accounts:\n  APP:\n    jetstream:\n      tiers:\n        R1: { max_memory: 1MiB, max_store: 10GiB }\n"
                     "        R3: { max_memory: 512MiB, max_store: 20MiB }\n",
                 &tiered, 1, true, true);
        set_states_usage(&r, three, 3, &held);
        assert_int_equal(r.p->v[0].action, PLAN_UPDATE);
        assert_true(has_warning(&r.p->v[0], "R3.max_store 20MiB is below current usage 30MiB of the account's R3 streams"));
        assert_true(has_warning(&r.p->v[0], "R1.max_memory 1MiB is below current usage 3MiB of the account's R1 streams"));
        run_free(&r);

        /* Enough room, or a tier dropped that holds nothing: no warning. A dropped tier that holds data: one. */
        run_case(&r, "accounts:\n  APP:\n    jetstream:\n      tiers:\n        R1: { max_memory: 4MiB, max_store: 10GiB }\n"
                     "        R3: { max_memory: 512MiB, max_store: 30MiB }\n",
                 &tiered, 1, true, true);
        set_states_usage(&r, three, 3, &held);
        assert_int_equal(r.p->v[0].n_warnings, 0);
        run_free(&r);
        run_case(&r, "accounts:\n  APP:\n    jetstream:\n      tiers:\n        R1: { max_memory: 1GiB, max_store: 10GiB }\n",
                 &tiered, 1, true, true);
        set_states_usage(&r, three, 3, &held);
        assert_true(has_warning(&r.p->v[0], "R3.max_store 0 is below current usage 30MiB"));
        assert_int_equal(r.p->v[0].n_warnings, 1);
        run_free(&r);

        /* No server said: nothing to say either. */
        struct server_account_state quiet = { .server_id = "NONE", .loaded = true, .complete = true, .jetstream_enabled = true };
        run_case(&r, "accounts:\n  APP:\n    jetstream:\n      tiers:\n        R1: { max_memory: 1, max_store: 1 }\n",
                 &tiered, 1, true, true);
        set_states_usage(&r, &quiet, 1, &held);
        assert_int_equal(r.p->v[0].n_warnings, 0);
        run_free(&r);
}

static void test_acct_claims(void **state) {
        /* Written into claims, the declared limits read back the same, and nothing else moves. */
        struct accounts *a = desired(APP_100 "  B:\n    limits: { max_connections: 0, max_data: 5 }\n");
        static const char *const other =
                "{\"name\":\"APP\",\"sub\":\"AX\",\"nats\":{\"limits\":{\"wildcards\":true,\"disallow_bearer\":true,"
                "\"mem_storage\":5,\"tiered_limits\":{\"R3\":{\"disk_storage\":7}}},\"signing_keys\":[\"AK\"],"
                "\"imports\":[{\"subject\":\"i\"}],\"exports\":[{\"subject\":\"e\"}],\"type\":\"account\",\"version\":2}}";
        for (size_t i = 0; i < a->n; i++) {
                json_t *claims = json_loads(other, 0, NULL), *before = json_deep_copy(claims);
                acct_limits_to_claims(&a->v[i].acct, claims);
                struct acct_state back;
                acct_state_from_claims(claims, &back);
                for (size_t f = 0; f < acct_fields_count; f++)
                        assert_true(back.value[f] == acct_limits_get(&a->v[i].acct, &acct_fields[f]));
                assert_int_equal(back.n_imports, 1);
                assert_int_equal(back.n_exports, 1);
                assert_true(back.wildcards_allowed);
                /* -1 is written out: an absent claim would be 0 to nats-server. */
                json_t *lim = json_object_get(json_object_get(claims, "nats"), "limits");
                assert_int_equal(json_integer_value(json_object_get(lim, "subs")), i == 0 ? 10000 : -1);
                static const char *const names[] = { "conn", "subs", "payload", "leaf", "data", "imports", "exports" };
                for (size_t f = 0; f < ARRAY_SIZE(names); f++)
                        json_object_del(lim, names[f]);
                assert_true(json_equal(claims, before));
                json_decref(claims);
                json_decref(before);
        }
        accounts_free(a);
}

static void test_acct_config_block(void **state) {
        struct acct_limits l;
        acct_limits_unlimited(&l);
        l.max_connections = 100;
        l.max_payload = 1048576;
        l.max_leafnodes = 0;
        l.max_data = 5;
        l.max_imports = 3;
        char *text = acct_limits_config_block(&l);
        assert_string_equal(text, "limits {\n"
                                  "  max_connections: 100\n"
                                  "  max_subscriptions: -1\n"
                                  "  max_payload: 1048576\n"
                                  "  max_leafnodes: 0\n"
                                  "}\n");
        free(text);
}

static int setup(void **state) {
        for (size_t i = 0; i < 4; i++)
                nkey_generate(NKEY_ACCOUNT, &keys[i]);
        return 0;
}

/* Convergence seed 82600049's neighbour 82600051: a push of AUDIT counted its
 * iat up within one second (T+1); c2 had missed it, and the next full pass read
 * CLAIMS.PACK from c2 (an older JWT) and pushed iat T: older than what c1 and
 * c3 held. Every push of a key is now later than the one before it. */
static void test_iat_never_goes_back_for_a_key(void **state) {
        (void)state;
        const char *a = "AAIP35XMB2QGWYN3F2PVJDVDFQIG63DOTXGJNKXQ3DOLDTGKICUBON45";
        const char *b = "AB6QHI7G6E36QEX6MLCPVF6NMST2AXAFCZMFWZY4TBOT7DQM72O5FD4O";
        int64_t t = 1796091330;
        assert_int_equal(apply_iat_after(a, t - 100, t), t);     /* the clock */
        assert_int_equal(apply_iat_after(a, t, t), t + 1);       /* later than what it replaces */
        assert_int_equal(apply_iat_after(a, t - 100, t), t + 2); /* a lagging server's older JWT: still later */
        assert_int_equal(apply_iat_after(b, t - 100, t), t);     /* another key: its own count */
        assert_int_equal(apply_iat_after(a, 0, t + 1), t + 3);   /* a create of the same key, a second on */
        /* Once the clock has passed them, the counts are forgotten: the clock is later anyway. */
        assert_int_equal(apply_iat_after(a, t - 100, t + 10), t + 10);
        assert_int_equal(apply_iat_after(b, t - 100, t + 10), t + 10);
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
                cmocka_unit_test(test_acct_limits),
                cmocka_unit_test(test_acct_refused),
                cmocka_unit_test(test_acct_warnings),
                cmocka_unit_test(test_tier_usage_warnings),
                cmocka_unit_test(test_acct_claims),
                cmocka_unit_test(test_acct_config_block),
                cmocka_unit_test(test_iat_never_goes_back_for_a_key),
        };
        return cmocka_run_group_tests(tests, setup, NULL);
}
