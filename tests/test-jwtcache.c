/* The verified-JWT cache: an entry is used only for the very bytes it was
 * made from, for its account, while its issuer is trusted; its file in
 * state_dir is used whole or not at all. */
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
#include <sodium.h>

#include "jwtcache.h"
#include "nkeys.h"
#include "util.h"

struct keys {
        struct nkey acct[3];
        struct nkey op, other_op;
};

static int setup(void **state) {
        struct keys *k = xcalloc(1, sizeof(*k));
        for (int i = 0; i < 3; i++)
                nkey_generate(NKEY_ACCOUNT, &k->acct[i]);
        nkey_generate(NKEY_OPERATOR, &k->op);
        nkey_generate(NKEY_OPERATOR, &k->other_op);
        *state = k;
        return 0;
}

static int teardown(void **state) {
        free(*state);
        return 0;
}

static void h(const char *jwt, uint8_t out[JWT_CACHE_HASH_LEN]) {
        jwt_cache_hash(jwt, strlen(jwt), out);
}

static bool trust_all(void *ud, const char *issuer) {
        return true;
}

static bool trust_only(void *ud, const char *issuer) {
        return strcmp(issuer, ud) == 0;
}

static char *tmpstate(void) {
        char tmpl[] = "/tmp/test-jwtcache.XXXXXX";
        char *d = mkdtemp(tmpl);
        assert_non_null(d);
        return path_join(d, "state");
}

static void rm_rf(const char *dir) {
        char *parent = path_dirname(dir);
        char *cmd = xasprintf("rm -rf '%s'", parent);
        assert_int_equal(system(cmd), 0);
        free(cmd);
        free(parent);
}

static void test_known_only_for_the_same_bytes(void **state) {
        struct keys *k = *state;
        struct jwt_cache *c = jwt_cache_new(true);
        uint8_t a[32], b[32];
        h("header.claims.signature", a);
        h("header.claims.signaturf", b);
        jwt_cache_add(c, k->op.pub, a, true);
        assert_true(jwt_cache_known(c, k->op.pub, a));
        /* One byte changed (here in the signature): checked again. */
        assert_false(jwt_cache_known(c, k->op.pub, b));
        /* The same bytes said to be another issuer's: not this entry. */
        assert_false(jwt_cache_known(c, k->other_op.pub, a));
        jwt_cache_add(c, k->op.pub, b, false);
        assert_true(jwt_cache_known(c, k->op.pub, b));
        /* A JWT replaced by a push is forgotten. */
        jwt_cache_forget(c, a);
        assert_false(jwt_cache_known(c, k->op.pub, a));
        assert_true(jwt_cache_known(c, k->op.pub, b));
        assert_int_equal(jwt_cache_count(c), 1);
        jwt_cache_free(c);

        /* Without learn_verified only what was signed here is kept. */
        c = jwt_cache_new(false);
        jwt_cache_add(c, k->op.pub, a, false);
        assert_false(jwt_cache_known(c, k->op.pub, a));
        jwt_cache_add(c, k->op.pub, a, true);
        assert_true(jwt_cache_known(c, k->op.pub, a));
        jwt_cache_free(c);
}

static void test_many_jwts(void **state) {
        struct keys *k = *state;
        struct jwt_cache *c = jwt_cache_new(true);
        enum { N = 20000 };
        uint8_t(*hs)[32] = xcalloc(N, sizeof(*hs));
        for (size_t i = 0; i < N; i++) {
                char jwt[32];
                snprintf(jwt, sizeof(jwt), "jwt %zu", i);
                h(jwt, hs[i]);
                jwt_cache_add(c, k->op.pub, hs[i], i % 2 == 0);
        }
        assert_int_equal(jwt_cache_count(c), N);
        /* Every third forgotten: the others are still found, wherever they were probed to. */
        for (size_t i = 0; i < N; i += 3)
                jwt_cache_forget(c, hs[i]);
        for (size_t i = 0; i < N; i++)
                assert_int_equal(jwt_cache_known(c, k->op.pub, hs[i]), i % 3 != 0);
        assert_int_equal(jwt_cache_count(c), N - (N + 2) / 3);
        /* Only the signed ones are written. */
        size_t len = 0, signed_left = 0;
        for (size_t i = 0; i < N; i++)
                signed_left += i % 2 == 0 && i % 3 != 0;
        char *text = jwt_cache_format(c, &len);
        size_t lines = 0;
        for (size_t i = 0; i < len; i++)
                lines += text[i] == '\n';
        assert_int_equal(lines, signed_left + 2);
        free(text);
        free(hs);
        jwt_cache_free(c);
}

static void test_trust_set_change(void **state) {
        struct keys *k = *state;
        struct jwt_cache *c = jwt_cache_new(true);
        uint8_t a[32], b[32];
        h("one", a);
        h("two", b);
        jwt_cache_add(c, k->op.pub, a, true);
        jwt_cache_add(c, k->other_op.pub, b, true);
        /* The servers now trust op only: other_op's entries are not used ... */
        jwt_cache_trust(c, trust_only, k->op.pub);
        assert_true(jwt_cache_known(c, k->op.pub, a));
        assert_false(jwt_cache_known(c, k->other_op.pub, b));
        /* ... nor written. */
        size_t len = 0;
        char *text = jwt_cache_format(c, &len);
        assert_non_null(strstr(text, k->op.pub));
        assert_null(strstr(text, k->other_op.pub));
        free(text);
        /* Trusted again: used again. */
        jwt_cache_trust(c, trust_all, NULL);
        assert_true(jwt_cache_known(c, k->other_op.pub, b));
        jwt_cache_free(c);
}

static void test_sweep(void **state) {
        struct keys *k = *state;
        struct jwt_cache *c = jwt_cache_new(true);
        uint8_t a[32], b[32], d[32], b2[32], d2[32];
        h("a", a);
        h("b", b);
        h("d", d);
        h("b2", b2);
        h("d2", d2);
        jwt_cache_add(c, k->op.pub, a, true);
        jwt_cache_add(c, k->op.pub, b, true);
        jwt_cache_add(c, k->op.pub, d, true);
        /* The resolver holds a itself, an untrusted b2 instead of b, a
         * trusted d2 instead of d. */
        struct jwt_cache_seen seen[] = {
                { k->op.pub, a, true },
                { k->op.pub, b2, false },
                { k->op.pub, d2, true },
        };
        jwt_cache_sweep(c, seen, 3);
        assert_true(jwt_cache_known(c, k->op.pub, a));
        assert_false(jwt_cache_known(c, k->op.pub, b));
        assert_false(jwt_cache_known(c, k->op.pub, b2)); /* not trusted: never learnt */
        assert_false(jwt_cache_known(c, k->op.pub, d));
        assert_true(jwt_cache_known(c, k->op.pub, d2)); /* verified, learnt */
        assert_int_equal(jwt_cache_count(c), 2);
        /* Only a is still one signed here. */
        size_t len = 0;
        char *text = jwt_cache_format(c, &len);
        char ahex[65], d2hex[65];
        sodium_bin2hex(ahex, sizeof(ahex), a, 32);
        sodium_bin2hex(d2hex, sizeof(d2hex), d2, 32);
        assert_non_null(strstr(text, ahex));
        assert_null(strstr(text, d2hex));
        free(text);
        /* A JWT the resolver no longer holds is forgotten. */
        jwt_cache_sweep(c, seen + 2, 1);
        assert_false(jwt_cache_known(c, k->op.pub, a));
        jwt_cache_free(c);
}

/* The file text of two signed entries, of a and b. */
static char *one_entry_text(struct keys *k, size_t *len) {
        struct jwt_cache *c = jwt_cache_new(false);
        uint8_t a[32];
        h("a", a);
        uint8_t b[32];
        h("b", b);
        jwt_cache_add(c, k->op.pub, a, true);
        jwt_cache_add(c, k->op.pub, b, true);
        char *text = jwt_cache_format(c, len);
        jwt_cache_free(c);
        return text;
}

static void expect_refused(const char *text, size_t len, const char *why_part) {
        struct jwt_cache *c = jwt_cache_new(false);
        char *why = NULL;
        assert_int_equal(jwt_cache_parse(c, text, len, &why), -EBADMSG);
        assert_non_null(why);
        if (!strstr(why, why_part))
                fail_msg("expected \"%s\" in \"%s\"", why_part, why);
        free(why);
        /* Nothing of it is used, not even the lines before the damage. */
        assert_int_equal(jwt_cache_count(c), 0);
        jwt_cache_free(c);
}

/* text with its last line made to match its (changed) content. */
static char *reseal(const char *text, size_t len) {
        const char *end = strstr(text, "\nend ");
        assert_non_null(end);
        size_t body = (size_t)(end + 1 - text);
        uint8_t sum[32];
        jwt_cache_hash(text, body, sum);
        char hexsum[65];
        sodium_bin2hex(hexsum, sizeof(hexsum), sum, sizeof(sum));
        return xasprintf("%.*send %s\n", (int)body, text, hexsum);
}

static void test_parse(void **state) {
        struct keys *k = *state;
        size_t len = 0;
        char *text = one_entry_text(k, &len);
        uint8_t a[32], b[32];
        h("a", a);
        h("b", b);

        struct jwt_cache *c = jwt_cache_new(false);
        char *why = NULL;
        assert_int_equal(jwt_cache_parse(c, text, len, &why), 0);
        assert_int_equal(jwt_cache_count(c), 2);
        /* Loaded, but not used before the servers said its issuer is trusted. */
        assert_false(jwt_cache_known(c, k->op.pub, a));
        jwt_cache_trust(c, trust_all, NULL);
        assert_true(jwt_cache_known(c, k->op.pub, a));
        assert_true(jwt_cache_known(c, k->op.pub, b));
        jwt_cache_free(c);

        /* One hex digit of a hash changed: the file's own hash no longer matches. */
        char *bad = xstrdup(text);
        char *digit = strchr(bad, '\n') + 1 + NKEY_PUBLIC_LEN + 1;
        *digit = *digit == '0' ? '1' : '0';
        expect_refused(bad, len, "does not match the hash on its last line");
        free(bad);
        /* Cut short. */
        expect_refused(text, len - 30, "last line");
        expect_refused(text, strstr(text, "\nend ") + 1 - text, "last line");
        /* Another first line. */
        bad = xstrdup(text);
        bad[2] = 'X';
        expect_refused(bad, len, "first line");
        free(bad);

        /* Changed and sealed again (someone who knows the format): each line is still checked. */
        bad = xstrdup(text);
        char *line2 = strchr(bad, '\n') + 1;
        char *sealed = NULL;
        line2[5] = line2[5] == 'A' ? 'B' : 'A'; /* the issuer's checksum breaks */
        sealed = reseal(bad, len);
        expect_refused(sealed, strlen(sealed), "line 2");
        free(sealed);
        free(bad);
        /* The same hash twice. */
        bad = xstrdup(text);
        line2 = strchr(bad, '\n') + 1;
        char *line3 = strchr(line2, '\n') + 1;
        memcpy(line3, line2, NKEY_PUBLIC_LEN + 1 + 64);
        sealed = reseal(bad, len);
        expect_refused(sealed, strlen(sealed), "the same hash twice");
        free(sealed);
        free(bad);
        /* An account key where the issuer goes. */
        bad = xstrdup(text);
        line2 = strchr(bad, '\n') + 1;
        memcpy(line2, k->acct[2].pub, NKEY_PUBLIC_LEN);
        sealed = reseal(bad, len);
        expect_refused(sealed, strlen(sealed), "line 2");
        free(sealed);
        free(bad);
        /* A line cut in two. */
        bad = xstrdup(text);
        line2 = strchr(bad, '\n') + 1;
        line2[10] = '\n';
        sealed = reseal(bad, len);
        expect_refused(sealed, strlen(sealed), "line 2");
        free(sealed);
        free(bad);
        free(text);
}

static void write_file(const char *path, const char *text, size_t len, unsigned mode) {
        FILE *f = fopen(path, "w");
        assert_non_null(f);
        assert_int_equal(fwrite(text, 1, len, f), len);
        assert_int_equal(fclose(f), 0);
        assert_int_equal(chmod(path, mode), 0);
}

static void expect_load_warning(const char *dir, const char *why_part) {
        struct jwt_cache *c = jwt_cache_new(false);
        char *warning = NULL;
        assert_int_equal(jwt_cache_load(c, dir, &warning), 0);
        assert_non_null(warning);
        char *file = path_join(dir, JWT_CACHE_FILE);
        if (!strstr(warning, file) || !strstr(warning, why_part) || !strstr(warning, "not used"))
                fail_msg("expected %s and \"%s\" in \"%s\"", file, why_part, warning);
        free(file);
        free(warning);
        assert_int_equal(jwt_cache_count(c), 0);
        jwt_cache_free(c);
}

static void test_load_and_save(void **state) {
        struct keys *k = *state;
        char *dir = tmpstate();
        char *file = path_join(dir, JWT_CACHE_FILE);
        uint8_t a[32];
        h("a", a);
        char *warning = NULL, *err = NULL;

        /* No folder, no file: empty, quietly. */
        struct jwt_cache *c = jwt_cache_new(true);
        assert_int_equal(jwt_cache_load(c, dir, &warning), 0);
        assert_null(warning);
        /* Nothing signed: nothing written. */
        uint8_t b[32], d[32];
        h("b", b);
        h("d", d);
        jwt_cache_add(c, k->op.pub, a, false);
        assert_int_equal(jwt_cache_save(c, dir, &err), 0);
        assert_int_equal(access(file, F_OK), -1);
        jwt_cache_add(c, k->op.pub, b, true);
        assert_int_equal(jwt_cache_save(c, dir, &err), 0);
        struct stat st;
        assert_int_equal(stat(file, &st), 0);
        assert_int_equal(st.st_mode & 07777, 0600);
        assert_int_equal(stat(dir, &st), 0);
        assert_int_equal(st.st_mode & 07777, 0700);
        /* Unchanged since: not written again. */
        assert_int_equal(unlink(file), 0);
        assert_int_equal(jwt_cache_save(c, dir, &err), 0);
        assert_int_equal(access(file, F_OK), -1);
        jwt_cache_add(c, k->op.pub, b, true); /* the same again: no change */
        assert_int_equal(jwt_cache_save(c, dir, &err), 0);
        assert_int_equal(access(file, F_OK), -1);
        jwt_cache_add(c, k->op.pub, d, true);
        assert_int_equal(jwt_cache_save(c, dir, &err), 0);
        jwt_cache_free(c);

        c = jwt_cache_new(false);
        assert_int_equal(jwt_cache_load(c, dir, &warning), 0);
        assert_null(warning);
        assert_int_equal(jwt_cache_count(c), 2);
        jwt_cache_trust(c, trust_all, NULL);
        assert_true(jwt_cache_known(c, k->op.pub, b));
        assert_true(jwt_cache_known(c, k->op.pub, d));
        assert_false(jwt_cache_known(c, k->op.pub, a)); /* only verified: never written */
        jwt_cache_free(c);

        char *text = NULL;
        size_t len = 0;
        assert_int_equal(file_read_all(file, 1 << 20, &text, &len), 0);
        /* Open to others: not used. */
        assert_int_equal(chmod(file, 0644), 0);
        expect_load_warning(dir, "open to group or others");
        assert_int_equal(chmod(file, 0600), 0);
        assert_int_equal(chmod(dir, 0750), 0);
        expect_load_warning(dir, "folder is open to group or others");
        assert_int_equal(chmod(dir, 0700), 0);
        /* Garbled: not used, and a save writes it anew. */
        write_file(file, text, len - 1, 0600);
        expect_load_warning(dir, "last line");
        c = jwt_cache_new(false);
        assert_int_equal(jwt_cache_load(c, dir, &warning), 0);
        free(warning);
        jwt_cache_add(c, k->op.pub, a, true);
        assert_int_equal(jwt_cache_save(c, dir, &err), 0);
        jwt_cache_free(c);
        c = jwt_cache_new(false);
        assert_int_equal(jwt_cache_load(c, dir, &warning), 0);
        assert_null(warning);
        assert_int_equal(jwt_cache_count(c), 1);
        jwt_cache_free(c);
        /* Owned by another user than this one, the folder's owner or root: not used. */
        if (geteuid() == 0) {
                assert_int_equal(chown(file, 54321, 54321), 0);
                expect_load_warning(dir, "owned by uid 54321");
                /* The folder's owner wrote it (root reading the daemon's folder): used. */
                assert_int_equal(chown(dir, 54321, 54321), 0);
                c = jwt_cache_new(false);
                assert_int_equal(jwt_cache_load(c, dir, &warning), 0);
                assert_null(warning);
                assert_int_equal(jwt_cache_count(c), 1);
                jwt_cache_free(c);
                assert_int_equal(chown(dir, 0, 0), 0);
                assert_int_equal(chown(file, 0, 0), 0);
        }
        /* A symbolic link, a folder: not used. */
        char *elsewhere = path_join(dir, "elsewhere");
        write_file(elsewhere, text, len, 0600);
        assert_int_equal(unlink(file), 0);
        assert_int_equal(symlink(elsewhere, file), 0);
        expect_load_warning(dir, "symbolic link");
        assert_int_equal(unlink(file), 0);
        assert_int_equal(mkdir(file, 0700), 0);
        expect_load_warning(dir, "not a regular file");
        assert_int_equal(rmdir(file), 0);

        /* Trusted no more: the next save leaves its entries out. */
        write_file(file, text, len, 0600);
        c = jwt_cache_new(false);
        assert_int_equal(jwt_cache_load(c, dir, &warning), 0);
        assert_null(warning);
        jwt_cache_trust(c, trust_only, k->other_op.pub);
        assert_int_equal(jwt_cache_save(c, dir, &err), 0);
        assert_int_equal(access(file, F_OK), -1);
        jwt_cache_free(c);

        free(elsewhere);
        free(text);
        free(file);
        rm_rf(dir);
        free(dir);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_known_only_for_the_same_bytes),
                cmocka_unit_test(test_many_jwts),
                cmocka_unit_test(test_trust_set_change),
                cmocka_unit_test(test_sweep),
                cmocka_unit_test(test_parse),
                cmocka_unit_test(test_load_and_save),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
