/* The seeds of created accounts reach the disk in batches, one .seeds file
 * each, each batch before any of its accounts is pushed: syncfs, fsync and
 * rename are wrapped to see the order in which they happen beside the
 * (simulated) pushes. */
#include <errno.h>
#include <limits.h>
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

#include "statedir.h"
#include "util.h"

int __real_syncfs(int fd);
int __real_fsync(int fd);
int __real_rename(const char *from, const char *to);
int __wrap_syncfs(int fd);
int __wrap_fsync(int fd);
int __wrap_rename(const char *from, const char *to);

enum ev_kind { EV_MADE, EV_RENAME, EV_SYNCFS, EV_FSYNC_DIR, EV_FSYNC_FILE, EV_PUSH };
struct ev {
        enum ev_kind kind;
        char what[PATH_MAX];
};
static struct ev *evs;
static size_t n_evs, cap_evs;
static int fail_fsync_at = -1; /* the n-th fsync of a file (from 0) fails with EIO */
static int n_file_fsyncs;

static void record(enum ev_kind kind, const char *what) {
        if (n_evs == cap_evs) {
                cap_evs = cap_evs ? cap_evs * 2 : 256;
                evs = xreallocarray(evs, cap_evs, sizeof(*evs));
        }
        evs[n_evs].kind = kind;
        snprintf(evs[n_evs].what, sizeof(evs[n_evs].what), "%s", what ? what : "");
        n_evs++;
}

int __wrap_syncfs(int fd) {
        record(EV_SYNCFS, NULL);
        return __real_syncfs(fd);
}

int __wrap_fsync(int fd) {
        struct stat st;
        char link[64], path[PATH_MAX];
        snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
        ssize_t n = readlink(link, path, sizeof(path) - 1);
        path[n > 0 ? n : 0] = 0;
        bool dir = fstat(fd, &st) == 0 && S_ISDIR(st.st_mode);
        record(dir ? EV_FSYNC_DIR : EV_FSYNC_FILE, path);
        if (!dir && n_file_fsyncs++ == fail_fsync_at) {
                errno = EIO;
                return -1;
        }
        return __real_fsync(fd);
}

int __wrap_rename(const char *from, const char *to) {
        record(EV_RENAME, to);
        return __real_rename(from, to);
}

struct pass {
        char *dir;
        struct nkey *keys;
        bool *failed;
        char **why;
};

static void write_seed(void *userdata, size_t i, struct statedir_batch *into) {
        struct pass *p = userdata;
        char *name = xasprintf("ACC%zu", i);
        char *err = NULL;
        nkey_generate(NKEY_ACCOUNT, &p->keys[i]);
        assert_int_equal(statedir_batch_add(into, name, &p->keys[i], &err), 0);
        record(EV_MADE, p->keys[i].pub);
        free(name);
}

static void seeds_failed(void *userdata, size_t from, size_t to, const char *err) {
        struct pass *p = userdata;
        for (size_t i = from; i < to; i++) {
                p->failed[i] = true;
                free(p->why[i]);
                p->why[i] = xstrdup(err);
        }
}

/* As apply's pipeline does: before each push its batch, then one seed ahead. */
static void run_pass(struct pass *p, size_t n, size_t batch) {
        p->keys = xcalloc(n, sizeof(*p->keys));
        p->failed = xcalloc(n, sizeof(*p->failed));
        p->why = xcalloc(n, sizeof(*p->why));
        char *err = NULL;
        assert_int_equal(statedir_ensure(p->dir, &err), 0);
        struct seed_batches b = { .dir = p->dir, .n = n, .batch = batch, .write = write_seed,
                                  .failed = seeds_failed, .userdata = p };
        seed_batches_before_push(&b, 0);
        for (size_t i = 0; i < n; i++) {
                seed_batches_before_push(&b, i);
                seed_batches_ahead(&b);
                if (!p->failed[i])
                        record(EV_PUSH, p->keys[i].pub);
        }
        seed_batches_free(&b);
}

static void pass_free(struct pass *p, size_t n) {
        for (size_t i = 0; i < n; i++) {
                nkey_wipe(&p->keys[i]);
                free(p->why[i]);
        }
        free(p->keys);
        free(p->failed);
        free(p->why);
        char *parent = path_dirname(p->dir);
        char *cmd = xasprintf("rm -rf '%s'", parent);
        assert_int_equal(system(cmd), 0);
        free(cmd);
        free(parent);
        free(p->dir);
}

static char *tmpstate(void) {
        char tmpl[] = "/tmp/test-seedbatch.XXXXXX";
        char *d = mkdtemp(tmpl);
        assert_non_null(d);
        return path_join(d, "state");
}

static ptrdiff_t find_ev(enum ev_kind kind, const char *what, size_t from) {
        for (size_t i = from; i < n_evs; i++)
                if (evs[i].kind == kind && (!what || strcmp(evs[i].what, what) == 0))
                        return (ptrdiff_t)i;
        return -1;
}

static void reset(void) {
        n_evs = 0;
        n_file_fsyncs = 0;
        fail_fsync_at = -1;
}

static void test_each_seed_durable_before_its_push(void **state) {
        reset();
        enum { N = 23, BATCH = 5 };
        struct pass p = { .dir = tmpstate() };
        run_pass(&p, N, BATCH);
        size_t syncs = 0, file_fsyncs = 0, renames = 0;
        for (size_t i = 0; i < n_evs; i++) {
                syncs += evs[i].kind == EV_SYNCFS;
                file_fsyncs += evs[i].kind == EV_FSYNC_FILE;
                renames += evs[i].kind == EV_RENAME;
        }
        /* One file a batch, synced once: no syncfs, no file per seed. */
        enum { BATCHES = (N + BATCH - 1) / BATCH };
        assert_int_equal(syncs, 0);
        assert_int_equal(file_fsyncs, BATCHES);
        assert_int_equal(renames, BATCHES);
        for (size_t i = 0; i < N; i++) {
                /* Seed i is in its batch's file, named after the batch's first account. */
                char *file = xasprintf("%s/%s.seeds", p.dir, p.keys[i / BATCH * BATCH].pub);
                ptrdiff_t renamed = find_ev(EV_RENAME, file, 0);
                ptrdiff_t pushed = find_ev(EV_PUSH, p.keys[i].pub, 0);
                assert_true(renamed >= 0);
                assert_true(pushed > renamed);
                /* The file's data synced before its rename; the folder's fsync
                 * after it; both before the push. */
                char *tmp = xasprintf("%s.tmp.", file);
                ptrdiff_t synced = -1;
                for (ptrdiff_t e = renamed - 1; e >= 0 && synced < 0; e--)
                        if (evs[e].kind == EV_FSYNC_FILE && strncmp(evs[e].what, tmp, strlen(tmp)) == 0)
                                synced = e;
                assert_true(synced >= 0 && synced < renamed);
                ptrdiff_t dir_synced = find_ev(EV_FSYNC_DIR, p.dir, (size_t)renamed);
                assert_true(dir_synced > renamed && dir_synced < pushed);
                free(tmp);
                free(file);
                /* And the seed is in it: loaded back by its key. */
                struct nkey got;
                char *err = NULL;
                assert_int_equal(statedir_load(p.dir, p.keys[i].pub, &got, &err), 0);
                assert_memory_equal(got.seed, p.keys[i].seed, sizeof(got.seed));
                nkey_wipe(&got);
        }
        /* Making seeds runs ahead of the pushes: the second batch's first seed
         * is made before the first batch's last push. */
        assert_true(find_ev(EV_MADE, p.keys[BATCH].pub, 0) < find_ev(EV_PUSH, p.keys[BATCH - 1].pub, 0));
        pass_free(&p, N);
}

static void test_failed_sync_pushes_nothing_of_its_batch(void **state) {
        reset();
        enum { N = 12, BATCH = 4 };
        fail_fsync_at = 1; /* the second batch's file */
        struct pass p = { .dir = tmpstate() };
        run_pass(&p, N, BATCH);
        for (size_t i = 0; i < N; i++) {
                bool in_failed_batch = i >= BATCH && i < 2 * BATCH;
                assert_int_equal(p.failed[i], in_failed_batch);
                assert_int_equal(find_ev(EV_PUSH, p.keys[i].pub, 0) >= 0, !in_failed_batch);
                if (in_failed_batch)
                        assert_non_null(strstr(p.why[i], p.dir));
                /* Its file is not there (nor its temporary file); the others are. */
                struct nkey got;
                char *err = NULL;
                assert_int_equal(statedir_load(p.dir, p.keys[i].pub, &got, &err), in_failed_batch ? -ENOENT : 0);
                nkey_wipe(&got);
                free(err);
        }
        char *ls = xasprintf("test $(ls -A '%s' | wc -l) = %d", p.dir, N / BATCH - 1);
        assert_int_equal(system(ls), 0);
        free(ls);
        pass_free(&p, N);
}

/* A batch of 0 is taken as 1: every push still has its seed on disk first. */
static void test_batch_of_zero_is_one(void **state) {
        reset();
        enum { N = 3 };
        struct pass p = { .dir = tmpstate() };
        run_pass(&p, N, 0);
        for (size_t i = 0; i < N; i++) {
                char *file = xasprintf("%s/%s.seeds", p.dir, p.keys[i].pub);
                ptrdiff_t renamed = find_ev(EV_RENAME, file, 0);
                assert_true(renamed >= 0 && renamed < find_ev(EV_PUSH, p.keys[i].pub, 0));
                free(file);
        }
        pass_free(&p, N);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_each_seed_durable_before_its_push),
                cmocka_unit_test(test_failed_sync_pushes_nothing_of_its_batch),
                cmocka_unit_test(test_batch_of_zero_is_one),
        };
        int r = cmocka_run_group_tests(tests, NULL, NULL);
        free(evs);
        return r;
}
