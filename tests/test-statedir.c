/* state_dir: seeds found the same way whatever order the folder lists them
 * in, one key per name, ambiguity refused; the list of unconfirmed pushes. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "statedir.h"
#include "util.h"

static char *tmpdir(void) {
        char tmpl[] = "/tmp/test-statedir.XXXXXX";
        char *d = mkdtemp(tmpl);
        assert_non_null(d);
        char *state = path_join(d, "state");
        return state;
}

static void rm_rf(const char *dir) {
        char *parent = path_dirname(dir);
        char *cmd = xasprintf("rm -rf '%s'", parent);
        assert_int_equal(system(cmd), 0);
        free(cmd);
        free(parent);
}

static void test_index_and_load(void **state) {
        char *dir = tmpdir();
        char *err = NULL;
        struct statedir_index *idx = NULL;
        /* Not there yet: nothing was created. */
        assert_int_equal(statedir_index_load(dir, &idx, &err), 0);
        assert_int_equal(idx->n, 0);
        statedir_index_free(idx);

        struct nkey app, orders;
        nkey_generate(NKEY_ACCOUNT, &app);
        nkey_generate(NKEY_ACCOUNT, &orders);
        assert_int_equal(statedir_save(dir, "APP", &app, &err), 0);
        assert_int_equal(statedir_write(dir, "ORDERS", &orders, &err), 0);
        assert_int_equal(statedir_sync(dir, &err), 0);
        /* Something that is not ours is ignored. */
        char *junk = path_join(dir, "README");
        assert_int_equal(file_write_atomic(junk, "x", 1, 0600), 0);

        assert_int_equal(statedir_index_load(dir, &idx, &err), 0);
        assert_int_equal(idx->n, 2);
        const struct statedir_seed *s = statedir_index_find(idx, "APP");
        assert_non_null(s);
        assert_string_equal(s->key, app.pub);
        assert_string_equal(s->other, "");
        assert_string_equal(statedir_index_find(idx, "ORDERS")->key, orders.pub);
        assert_null(statedir_index_find(idx, "NOPE"));
        statedir_index_free(idx);

        struct nkey got;
        assert_int_equal(statedir_load(dir, "APP", &got, &err), 0);
        assert_string_equal(got.pub, app.pub);
        nkey_wipe(&got);
        assert_int_equal(statedir_load(dir, orders.pub, &got, &err), 0);
        assert_string_equal(got.pub, orders.pub);
        nkey_wipe(&got);
        assert_int_equal(statedir_load(dir, "NOPE", &got, &err), -ENOENT);
        free(err);
        err = NULL;

        /* A second key for APP (what a create retried on main could leave). */
        struct nkey again;
        nkey_generate(NKEY_ACCOUNT, &again);
        assert_int_equal(statedir_save(dir, "APP", &again, &err), 0);
        assert_int_equal(statedir_index_load(dir, &idx, &err), 0);
        s = statedir_index_find(idx, "APP");
        const char *first = strcmp(app.pub, again.pub) < 0 ? app.pub : again.pub;
        const char *second = first == app.pub ? again.pub : app.pub;
        assert_string_equal(s->key, first);
        assert_string_equal(s->other, second);
        statedir_index_free(idx);
        assert_int_equal(statedir_load(dir, "APP", &got, &err), -ENOTUNIQ);
        char *want = xasprintf("seeds of two accounts named APP, %s.nk and %s.nk", first, second);
        if (!strstr(err, want))
                fail_msg("\"%s\" lacks \"%s\"", err, want);
        free(want);
        free(err);
        err = NULL;
        /* By key, each is still there. */
        assert_int_equal(statedir_load(dir, again.pub, &got, &err), 0);
        nkey_wipe(&got);

        /* A file whose seed is another account's. */
        char *wrong = xasprintf("%s/%s.nk", dir, orders.pub);
        char *text = xasprintf("# nats-accountd: seed of account ORDERS\nSAAJOH5Y2ZYLYMNTQN2BHHQUOWDGS4KXWVFOIWCYNGOIGPHDRFTB3MYT4E\n");
        assert_int_equal(file_write_atomic(wrong, text, strlen(text), 0600), 0);
        int r = statedir_load(dir, orders.pub, &got, &err);
        assert_true(r == -EINVAL);
        assert_non_null(strstr(err, "not the account's seed file"));
        free(err);
        free(text);
        free(wrong);
        free(junk);
        nkey_wipe(&app);
        nkey_wipe(&orders);
        nkey_wipe(&again);
        rm_rf(dir);
        free(dir);
}

static void test_unconfirmed(void **state) {
        char *dir = tmpdir();
        char *err = NULL;
        char(*keys)[NKEY_PUBLIC_LEN + 1] = NULL;
        size_t n = 99;
        assert_int_equal(statedir_unconfirmed_load(dir, &keys, &n, &err), 0);
        assert_int_equal(n, 0);
        assert_int_equal(statedir_ensure(dir, &err), 0);

        struct nkey a, b;
        nkey_generate(NKEY_ACCOUNT, &a);
        nkey_generate(NKEY_ACCOUNT, &b);
        char list[2][NKEY_PUBLIC_LEN + 1];
        memcpy(list[0], a.pub, sizeof(list[0]));
        memcpy(list[1], b.pub, sizeof(list[1]));
        assert_int_equal(statedir_unconfirmed_save(dir, (const char(*)[NKEY_PUBLIC_LEN + 1])list, 2, &err), 0);
        char *file = path_join(dir, "unconfirmed");
        struct stat st;
        assert_int_equal(stat(file, &st), 0);
        assert_int_equal(st.st_mode & 0777, 0600);
        /* Lines that are not account keys are skipped. */
        char *text = xasprintf("%s\n\nnot a key\n%s\n", a.pub, b.pub);
        assert_int_equal(file_write_atomic(file, text, strlen(text), 0600), 0);
        assert_int_equal(statedir_unconfirmed_load(dir, &keys, &n, &err), 0);
        assert_int_equal(n, 2);
        assert_string_equal(keys[0], a.pub);
        assert_string_equal(keys[1], b.pub);
        free(keys);
        /* Nothing left: the file goes. */
        assert_int_equal(statedir_unconfirmed_save(dir, NULL, 0, &err), 0);
        assert_int_equal(stat(file, &st), -1);
        free(text);
        free(file);
        rm_rf(dir);
        free(dir);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_index_and_load),
                cmocka_unit_test(test_unconfirmed),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
