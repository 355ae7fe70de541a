/* state_dir: seeds written a batch per file and read from those and from the
 * one-file-per-account layout of older versions, found the same way whatever
 * order the folder lists them in, one key per name, ambiguity refused across
 * both layouts, a damaged file refused; the list of unconfirmed pushes, and
 * that of the servers the last pass saw. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <sodium.h>

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

/* A seed file as versions before the .seeds files wrote it: <KEY>.nk. */
static void old_layout_write(const char *dir, const char *name, const struct nkey *k) {
        char seed[NKEY_SEED_LEN + 1];
        nkey_seed_encode(k, seed);
        char *text = xasprintf("# nats-accountd: seed of account %s\n%s\n", name, seed);
        char *file = xasprintf("%s/%s.nk", dir, k->pub);
        assert_int_equal(file_write_atomic(file, text, strlen(text), 0600), 0);
        free(file);
        free(text);
}

/* One .seeds file of these accounts; its path. */
static char *batch_write(const char *dir, const char **names, struct nkey *keys, size_t n) {
        struct statedir_batch b;
        char *err = NULL;
        statedir_batch_init(&b, n);
        for (size_t i = 0; i < n; i++)
                assert_int_equal(statedir_batch_add(&b, names[i], &keys[i], &err), 0);
        assert_int_equal(statedir_batch_commit(dir, &b, &err), 0);
        assert_int_equal(b.n, 0);
        statedir_batch_free(&b);
        return xasprintf("%s/%s.seeds", dir, keys[0].pub);
}

static void assert_has(const char *text, const char *part) {
        if (!strstr(text, part))
                fail_msg("\"%s\" lacks \"%s\"", text, part);
}

static void assert_lacks_seeds(const char *text, const struct nkey *keys, size_t n) {
        for (size_t i = 0; i < n; i++) {
                char seed[NKEY_SEED_LEN + 1];
                nkey_seed_encode(&keys[i], seed);
                if (strstr(text, seed))
                        fail_msg("a seed in \"%s\"", text);
                /* Not even a part of one. */
                seed[20] = 0;
                if (strstr(text, seed + 2))
                        fail_msg("a part of a seed in \"%s\"", text);
        }
}

static void test_batch_round_trip(void **state) {
        char *dir = tmpdir();
        char *err = NULL;
        struct statedir_index *idx = NULL;
        /* Not there yet: nothing was created. */
        assert_int_equal(statedir_index_load(dir, &idx, &err), 0);
        assert_int_equal(idx->n, 0);
        statedir_index_free(idx);
        assert_int_equal(statedir_ensure(dir, &err), 0);

        enum { N = 3 };
        const char *names[N] = { "ORDERS", "APP", "a-b_9" };
        struct nkey k[N];
        for (size_t i = 0; i < N; i++)
                nkey_generate(NKEY_ACCOUNT, &k[i]);
        char *file = batch_write(dir, names, k, N);
        /* One file for all of them, 0600, named after the first. */
        struct stat st;
        assert_int_equal(stat(file, &st), 0);
        assert_int_equal(st.st_mode & 0777, 0600);
        char *ls = xasprintf("test $(ls -A '%s' | wc -l) = 1", dir);
        assert_int_equal(system(ls), 0);
        free(ls);
        /* Something that is not ours is ignored. */
        char *junk = path_join(dir, "README");
        assert_int_equal(file_write_atomic(junk, "x", 1, 0600), 0);

        assert_int_equal(statedir_index_load(dir, &idx, &err), 0);
        assert_int_equal(idx->n, N);
        for (size_t i = 0; i < N; i++) {
                const struct statedir_seed *s = statedir_index_find(idx, names[i]);
                assert_non_null(s);
                assert_string_equal(s->key, k[i].pub);
                assert_string_equal(s->other, "");
        }
        assert_null(statedir_index_find(idx, "NOPE"));
        statedir_index_free(idx);

        for (size_t i = 0; i < N; i++) {
                struct nkey got;
                assert_int_equal(statedir_load(dir, names[i], &got, &err), 0);
                assert_string_equal(got.pub, k[i].pub);
                assert_memory_equal(got.seed, k[i].seed, sizeof(got.seed));
                nkey_wipe(&got);
                assert_int_equal(statedir_load(dir, k[i].pub, &got, &err), 0);
                assert_string_equal(got.pub, k[i].pub);
                nkey_wipe(&got);
        }
        struct nkey got;
        assert_int_equal(statedir_load(dir, "NOPE", &got, &err), -ENOENT);
        free(err);
        err = NULL;

        /* Not an account name: nothing written (a record the reader would refuse). */
        struct statedir_batch b;
        statedir_batch_init(&b, 1);
        assert_int_equal(statedir_batch_add(&b, "with space", &k[0], &err), -EINVAL);
        free(err);
        err = NULL;
        assert_int_equal(statedir_batch_add(&b, "ONE", &k[0], &err), 0);
        assert_int_equal(statedir_batch_add(&b, "TWO", &k[1], &err), -ENOSPC);
        free(err);
        err = NULL;
        statedir_batch_free(&b);

        /* Readable by group: refused, as a .nk file is. */
        assert_int_equal(chmod(file, 0640), 0);
        assert_int_equal(statedir_load(dir, "APP", &got, &err), -EACCES);
        assert_has(err, file);
        assert_has(err, "readable by group or others");
        free(err);
        err = NULL;
        assert_int_equal(statedir_index_load(dir, &idx, &err), -EACCES);
        free(err);

        for (size_t i = 0; i < N; i++)
                nkey_wipe(&k[i]);
        free(junk);
        free(file);
        rm_rf(dir);
        free(dir);
}

static void test_both_layouts(void **state) {
        char *dir = tmpdir();
        char *err = NULL;
        assert_int_equal(statedir_ensure(dir, &err), 0);
        /* An installation from before: one .nk file per account... */
        struct nkey old1, old2, b[2];
        nkey_generate(NKEY_ACCOUNT, &old1);
        nkey_generate(NKEY_ACCOUNT, &old2);
        old_layout_write(dir, "LEGACY1", &old1);
        old_layout_write(dir, "LEGACY2", &old2);
        /* ... and the creates since, in batches. */
        const char *names[2] = { "NEW1", "NEW2" };
        nkey_generate(NKEY_ACCOUNT, &b[0]);
        nkey_generate(NKEY_ACCOUNT, &b[1]);
        char *file = batch_write(dir, names, b, 2);

        struct statedir_index *idx = NULL;
        assert_int_equal(statedir_index_load(dir, &idx, &err), 0);
        assert_int_equal(idx->n, 4);
        assert_string_equal(statedir_index_find(idx, "LEGACY1")->key, old1.pub);
        assert_string_equal(statedir_index_find(idx, "LEGACY2")->key, old2.pub);
        assert_string_equal(statedir_index_find(idx, "NEW1")->key, b[0].pub);
        assert_string_equal(statedir_index_find(idx, "NEW2")->key, b[1].pub);
        statedir_index_free(idx);

        const struct nkey *all[4] = { &old1, &old2, &b[0], &b[1] };
        const char *all_names[4] = { "LEGACY1", "LEGACY2", "NEW1", "NEW2" };
        for (size_t i = 0; i < 4; i++) {
                struct nkey got;
                assert_int_equal(statedir_load(dir, all_names[i], &got, &err), 0);
                assert_string_equal(got.pub, all[i]->pub);
                nkey_wipe(&got);
                assert_int_equal(statedir_load(dir, all[i]->pub, &got, &err), 0);
                assert_memory_equal(got.seed, all[i]->seed, sizeof(got.seed));
                nkey_wipe(&got);
        }

        /* A .nk file whose seed is another account's. */
        char *wrong = xasprintf("%s/%s.nk", dir, old2.pub);
        char *text = xasprintf("# nats-accountd: seed of account LEGACY2\nSAAJOH5Y2ZYLYMNTQN2BHHQUOWDGS4KXWVFOIWCYNGOIGPHDRFTB3MYT4E\n");
        assert_int_equal(file_write_atomic(wrong, text, strlen(text), 0600), 0);
        struct nkey got;
        assert_int_equal(statedir_load(dir, old2.pub, &got, &err), -EINVAL);
        assert_has(err, "not the seed of account");
        assert_has(err, wrong);
        free(err);
        err = NULL;
        /* The others are still found. */
        assert_int_equal(statedir_load(dir, "NEW2", &got, &err), 0);
        nkey_wipe(&got);

        free(text);
        free(wrong);
        free(file);
        nkey_wipe(&old1);
        nkey_wipe(&old2);
        nkey_wipe(&b[0]);
        nkey_wipe(&b[1]);
        rm_rf(dir);
        free(dir);
}

/* Two keys for APP: what a create retried by an old version could leave, in
 * one layout or across both. */
static void check_ambiguous(const char *dir, const struct nkey *x, const char *xfile, const struct nkey *y,
                            const char *yfile) {
        char *err = NULL;
        struct statedir_index *idx = NULL;
        assert_int_equal(statedir_index_load(dir, &idx, &err), 0);
        const struct statedir_seed *s = statedir_index_find(idx, "APP");
        const char *first = strcmp(x->pub, y->pub) < 0 ? x->pub : y->pub;
        const char *second = first == x->pub ? y->pub : x->pub;
        assert_string_equal(s->key, first);
        assert_string_equal(s->other, second);
        statedir_index_free(idx);
        struct nkey got;
        assert_int_equal(statedir_load(dir, "APP", &got, &err), -ENOTUNIQ);
        assert_has(err, "seeds of two accounts named APP");
        char *px = xasprintf("%s (%s)", x->pub, xfile), *py = xasprintf("%s (%s)", y->pub, yfile);
        assert_has(err, px);
        assert_has(err, py);
        free(px);
        free(py);
        free(err);
        err = NULL;
        /* By key, each is still there. */
        assert_int_equal(statedir_load(dir, x->pub, &got, &err), 0);
        nkey_wipe(&got);
        assert_int_equal(statedir_load(dir, y->pub, &got, &err), 0);
        nkey_wipe(&got);
}

static void test_ambiguity_across_layouts(void **state) {
        char *err = NULL;
        struct nkey a, b, c, other;
        nkey_generate(NKEY_ACCOUNT, &a);
        nkey_generate(NKEY_ACCOUNT, &b);
        nkey_generate(NKEY_ACCOUNT, &c);
        nkey_generate(NKEY_ACCOUNT, &other);

        /* Two .nk files. */
        char *dir = tmpdir();
        assert_int_equal(statedir_ensure(dir, &err), 0);
        old_layout_write(dir, "APP", &a);
        old_layout_write(dir, "APP", &b);
        char *fa = xasprintf("%s.nk", a.pub), *fb = xasprintf("%s.nk", b.pub);
        check_ambiguous(dir, &a, fa, &b, fb);

        /* A .nk file and a record of a .seeds file. */
        char *d2 = tmpdir();
        assert_int_equal(statedir_ensure(d2, &err), 0);
        old_layout_write(d2, "APP", &a);
        const char *names[2] = { "ORDERS", "APP" };
        struct nkey keys[2] = { other, c };
        free(batch_write(d2, names, keys, 2));
        char *fc = xasprintf("%s.seeds", other.pub);
        check_ambiguous(d2, &a, fa, &c, fc);

        /* Two .seeds files. */
        char *d3 = tmpdir();
        assert_int_equal(statedir_ensure(d3, &err), 0);
        const char *app[1] = { "APP" };
        free(batch_write(d3, app, &b, 1));
        free(batch_write(d3, names, keys, 2));
        char *fb2 = xasprintf("%s.seeds", b.pub);
        check_ambiguous(d3, &b, fb2, &c, fc);

        /* The same key in both layouts is one account, not two. */
        char *d4 = tmpdir();
        assert_int_equal(statedir_ensure(d4, &err), 0);
        old_layout_write(d4, "APP", &a);
        free(batch_write(d4, app, &a, 1));
        struct statedir_index *idx = NULL;
        assert_int_equal(statedir_index_load(d4, &idx, &err), 0);
        assert_string_equal(statedir_index_find(idx, "APP")->key, a.pub);
        assert_string_equal(statedir_index_find(idx, "APP")->other, "");
        statedir_index_free(idx);
        struct nkey got;
        assert_int_equal(statedir_load(d4, "APP", &got, &err), 0);
        assert_string_equal(got.pub, a.pub);
        nkey_wipe(&got);

        free(fa);
        free(fb);
        free(fb2);
        free(fc);
        nkey_wipe(&a);
        nkey_wipe(&b);
        nkey_wipe(&c);
        nkey_wipe(&other);
        nkey_wipe(&keys[0]);
        nkey_wipe(&keys[1]);
        const char *dirs[4] = { dir, d2, d3, d4 };
        for (size_t i = 0; i < 4; i++) {
                rm_rf(dirs[i]);
                free((char *)dirs[i]);
        }
}

/* What a .seeds file holds after a crash, a bad disk or a hand edit gone
 * wrong is never taken for a seed: cut at any byte, the file either is refused
 * (its path and line named, no seed shown) or, cut right after a record,
 * holds exactly the records before the cut. */
static void test_damaged_batch_refused(void **state) {
        char *dir = tmpdir();
        char *err = NULL;
        assert_int_equal(statedir_ensure(dir, &err), 0);
        enum { N = 3 };
        const char *names[N] = { "APP", "ORDERS", "BILLING" };
        struct nkey k[N];
        for (size_t i = 0; i < N; i++)
                nkey_generate(NKEY_ACCOUNT, &k[i]);
        char *file = batch_write(dir, names, k, N);
        size_t len = 0;
        char *whole = NULL;
        assert_int_equal(file_read_all(file, 1 << 20, &whole, &len), 0);
        size_t refused = 0, prefixes = 0;
        for (size_t cut = 1; cut < len; cut++) {
                assert_int_equal(file_write_atomic_nosync(file, whole, cut, 0600), 0);
                struct statedir_index *idx = NULL;
                int r = statedir_index_load(dir, &idx, &err);
                if (r < 0) {
                        assert_int_equal(r, -EBADMSG);
                        assert_has(err, file);
                        assert_has(err, ", line ");
                        assert_lacks_seeds(err, k, N);
                        free(err);
                        err = NULL;
                        /* user-creds is refused too, by name and by key. */
                        struct nkey got;
                        assert_int_equal(statedir_load(dir, "APP", &got, &err), -EBADMSG);
                        assert_has(err, file);
                        free(err);
                        err = NULL;
                        assert_int_equal(statedir_load(dir, k[0].pub, &got, &err), -EBADMSG);
                        free(err);
                        err = NULL;
                        refused++;
                        continue;
                }
                /* Cut at the end of a line: the records before it, complete. */
                assert_int_equal(whole[cut - 1], '\n');
                size_t lines = 0;
                for (size_t i = 0; i < cut; i++)
                        lines += whole[i] == '\n';
                assert_int_equal(idx->n, lines - 1);
                for (size_t i = 0; i < idx->n; i++)
                        assert_string_equal(statedir_index_find(idx, names[i])->key, k[i].pub);
                statedir_index_free(idx);
                prefixes++;
        }
        assert_int_equal(prefixes, N); /* the header alone, then after each record but the last */
        assert_true(refused > 3 * NKEY_SEED_LEN);

        /* One character changed anywhere in a record: its CHECK no longer
         * matches, or the field is no longer what it must be. */
        size_t body = strcspn(whole, "\n") + 1;
        for (size_t at = body; at < len; at++) {
                if (whole[at] == '\n' || whole[at] == ' ')
                        continue;
                char *bad = xstrdup(whole);
                bad[at] = bad[at] == 'A' ? 'B' : bad[at] == '0' ? '1' : 'A';
                assert_int_equal(file_write_atomic_nosync(file, bad, len, 0600), 0);
                struct statedir_index *idx = NULL;
                assert_int_equal(statedir_index_load(dir, &idx, &err), -EBADMSG);
                assert_has(err, file);
                assert_lacks_seeds(err, k, N);
                free(err);
                err = NULL;
                free(bad);
        }
        /* Named by line. */
        char *bad = xstrdup(whole);
        char *third = strchr(strchr(strchr(bad, '\n') + 1, '\n') + 1, '\n') + 1;
        third[0] = third[0] == 'B' ? 'C' : 'B';
        assert_int_equal(file_write_atomic_nosync(file, bad, len, 0600), 0);
        struct statedir_index *idx = NULL;
        assert_int_equal(statedir_index_load(dir, &idx, &err), -EBADMSG);
        char *where = xasprintf("%s, line 4: its CHECK does not match", file);
        assert_has(err, where);
        free(where);
        free(err);
        err = NULL;
        free(bad);

        /* A record whose fields are all well formed and sealed, with the seed of
         * another account: found by name, refused when loaded. */
        struct nkey stranger;
        nkey_generate(NKEY_ACCOUNT, &stranger);
        char seed[NKEY_SEED_LEN + 1], check[33];
        nkey_seed_encode(&stranger, seed);
        char *rec = xasprintf("APP %s %s", k[0].pub, seed);
        unsigned char sum[16];
        crypto_generichash(sum, sizeof(sum), (const unsigned char *)rec, strlen(rec), NULL, 0);
        sodium_bin2hex(check, sizeof(check), sum, sizeof(sum));
        char *forged = xasprintf("%.*s%s %s\n", (int)body, whole, rec, check);
        assert_int_equal(file_write_atomic(file, forged, strlen(forged), 0600), 0);
        struct nkey got;
        assert_int_equal(statedir_load(dir, "APP", &got, &err), -EINVAL);
        assert_has(err, "the seed is another account's");
        assert_lacks_seeds(err, &stranger, 1);
        free(err);
        sodium_memzero(seed, sizeof(seed));
        nkey_wipe(&stranger);
        free(rec);
        free(forged);

        for (size_t i = 0; i < N; i++)
                nkey_wipe(&k[i]);
        free(whole);
        free(file);
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

/* The servers the last pass saw: server IDs only, an account key or junk
 * skipped; no file, no servers. */
static void test_servers_seen(void **state) {
        char *dir = tmpdir();
        char *err = NULL;
        char(*ids)[NKEY_PUBLIC_LEN + 1] = NULL;
        size_t n = 99;
        assert_int_equal(statedir_servers_load(dir, &ids, &n, &err), 0);
        assert_int_equal(n, 0);
        assert_int_equal(statedir_ensure(dir, &err), 0);

        struct nkey s1, s2, acc;
        nkey_generate(NKEY_SERVER, &s1);
        nkey_generate(NKEY_SERVER, &s2);
        nkey_generate(NKEY_ACCOUNT, &acc);
        char list[2][NKEY_PUBLIC_LEN + 1];
        memcpy(list[0], s1.pub, sizeof(list[0]));
        memcpy(list[1], s2.pub, sizeof(list[1]));
        assert_int_equal(statedir_servers_save(dir, (const char(*)[NKEY_PUBLIC_LEN + 1])list, 2, &err), 0);
        assert_int_equal(statedir_servers_load(dir, &ids, &n, &err), 0);
        assert_int_equal(n, 2);
        assert_string_equal(ids[0], s1.pub);
        assert_string_equal(ids[1], s2.pub);
        free(ids);
        char *file = path_join(dir, "servers");
        char *text = xasprintf("%s\n%s\nNOTANID\n%s\n", acc.pub, s2.pub, s1.pub);
        assert_int_equal(file_write_atomic(file, text, strlen(text), 0600), 0);
        assert_int_equal(statedir_servers_load(dir, &ids, &n, &err), 0);
        assert_int_equal(n, 2);
        assert_string_equal(ids[0], s2.pub);
        assert_string_equal(ids[1], s1.pub);
        free(ids);
        free(text);
        free(file);
        rm_rf(dir);
        free(dir);
}

/* What a process that ended mid-write left goes; a live writer's file, and
 * what only looks like a temporary file, stay. */
static void test_stale_temporary_files_removed(void **state) {
        char *dir = tmpdir();
        char *err = NULL;
        assert_int_equal(statedir_ensure(dir, &err), 0);
        pid_t child = fork();
        assert_true(child >= 0);
        if (child == 0)
                _exit(0);
        assert_int_equal(waitpid(child, NULL, 0), child);
        char *dead = xasprintf("%s/AAAA.seeds.tmp.%ld", dir, (long)child);
        char *live = xasprintf("%s/BBBB.seeds.tmp.%ld", dir, (long)getpid());
        char *other = xasprintf("%s/CCCC.tmp.x1", dir);
        char *seeds = xasprintf("%s/DDDD.seeds", dir);
        const char *files[] = { dead, live, other, seeds };
        for (size_t i = 0; i < 4; i++)
                assert_int_equal(file_write_atomic(files[i], "x\n", 2, 0600), 0);
        statedir_remove_stale(dir);
        struct stat st;
        assert_int_equal(stat(dead, &st), -1);
        for (size_t i = 1; i < 4; i++)
                assert_int_equal(stat(files[i], &st), 0);
        for (size_t i = 0; i < 4; i++)
                free((char *)files[i]);
        rm_rf(dir);
        free(dir);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_batch_round_trip),
                cmocka_unit_test(test_both_layouts),
                cmocka_unit_test(test_ambiguity_across_layouts),
                cmocka_unit_test(test_damaged_batch_refused),
                cmocka_unit_test(test_unconfirmed),
                cmocka_unit_test(test_servers_seen),
                cmocka_unit_test(test_stale_temporary_files_removed),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
