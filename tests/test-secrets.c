#include <errno.h>
#include <ftw.h>
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

#include "secrets.h"
#include "util.h"

/* Shaped like a seed: "SU" + 56 base32 characters. The checksum does not
 * matter to this module. */
#define SEED "SUAIBDPBAUTWCWBKIO6XHQNINK5FWJW4OHLXC3HQ2KFE4PEJUA44CNHTC4"
#define JWT "eyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ.eyJzdWIiOiJVQUJDIn0.c2lnbmF0dXJl"

static const char creds_text[] =
        "-----BEGIN NATS USER JWT-----\n" JWT "\n------END NATS USER JWT------\n"
        "\n"
        "************************* IMPORTANT *************************\n"
        "NKEY Seed printed below can be used to sign and prove identity.\n"
        "NKEYs are sensitive and should be treated as secrets.\n"
        "\n"
        "-----BEGIN USER NKEY SEED-----\n" SEED "\n------END USER NKEY SEED------\n"
        "\n"
        "*************************************************************\n";

struct dir {
        char path[64];
};

static int setup(void **state) {
        struct dir *d = malloc(sizeof(*d));
        strcpy(d->path, "/tmp/test-secrets.XXXXXX");
        if (!mkdtemp(d->path))
                return -1;
        *state = d;
        return 0;
}

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw) {
        return remove(path);
}

static int teardown(void **state) {
        struct dir *d = *state;
        int r = nftw(d->path, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
        free(d);
        return r;
}

static char *write_file(void **state, const char *name, const void *data, size_t len, mode_t mode) {
        struct dir *d = *state;
        char *path = path_join(d->path, name);
        FILE *f = fopen(path, "w");
        assert_non_null(f);
        assert_int_equal(fwrite(data, 1, len, f), len);
        assert_int_equal(fclose(f), 0);
        assert_int_equal(chmod(path, mode), 0);
        return path;
}

static void test_private_modes_accepted(void **state) {
        static const mode_t modes[] = { 0600, 0400, 0700, 0200, 0620, 0602 };
        for (size_t i = 0; i < ARRAY_SIZE(modes); i++) {
                char *path = write_file(state, "seed.nk", SEED "\n", strlen(SEED) + 1, modes[i]);
                char *why = (char *)"untouched";
                int r = secret_check(path, &why);
                if (r != 0)
                        fail_msg("mode %04o: %d %s", (unsigned)modes[i], r, why);
                assert_null(why);
                free(path);
        }
}

static void test_readable_modes_refused(void **state) {
        static const mode_t modes[] = { 0640, 0644, 0604, 0440, 0404, 0777, 0604 | 04000 };
        for (size_t i = 0; i < ARRAY_SIZE(modes); i++) {
                char *path = write_file(state, "seed.nk", SEED "\n", strlen(SEED) + 1, modes[i]);
                char *want = xasprintf("%s is readable by group or others (mode %04o); run: chmod 600 %s", path,
                                       (unsigned)modes[i], path);
                char *why = NULL;
                assert_int_equal(secret_check(path, &why), -EACCES);
                assert_string_equal(why, want);
                free(why);

                /* secret_read applies the same rule and hands nothing out. */
                char *buf = NULL;
                size_t len = 0;
                why = NULL;
                assert_int_equal(secret_read(path, &buf, &len, &why), -EACCES);
                assert_string_equal(why, want);
                assert_null(buf);
                free(why);
                free(want);
                free(path);
        }
}

static void test_missing(void **state) {
        struct dir *d = *state;
        char *path = path_join(d->path, "nope.creds");
        char *want = xasprintf("%s: No such file or directory", path);
        char *why = NULL;
        assert_int_equal(secret_check(path, &why), -ENOENT);
        assert_string_equal(why, want);
        free(why);

        char *buf = NULL;
        size_t len;
        why = NULL;
        assert_int_equal(secret_read(path, &buf, &len, &why), -ENOENT);
        assert_string_equal(why, want);
        assert_null(buf);
        free(why);
        free(want);
        free(path);

        /* why is optional. */
        assert_int_equal(secret_check("/nonexistent/x", NULL), -ENOENT);
}

static void test_symlink_followed(void **state) {
        struct dir *d = *state;
        char *target = write_file(state, "real.nk", SEED, strlen(SEED), 0644);
        char *link = path_join(d->path, "link.nk");
        assert_int_equal(symlink(target, link), 0);
        char *why = NULL;
        /* The link itself is 0777; what counts is the file it points at. */
        assert_int_equal(secret_check(link, &why), -EACCES);
        assert_non_null(strstr(why, "(mode 0644)"));
        free(why);

        assert_int_equal(chmod(target, 0600), 0);
        why = NULL;
        assert_int_equal(secret_check(link, &why), 0);
        assert_null(why);
        free(link);
        free(target);
}

static void test_not_a_file(void **state) {
        struct dir *d = *state;
        char *why = NULL;
        assert_int_equal(chmod(d->path, 0700), 0);
        assert_int_equal(secret_check(d->path, &why), -EISDIR);
        assert_non_null(strstr(why, "Is a directory"));
        free(why);

        char *fifo = path_join(d->path, "fifo");
        assert_int_equal(mkfifo(fifo, 0600), 0);
        char *buf = NULL;
        size_t len;
        why = NULL;
        /* Must not block waiting for a writer. */
        assert_int_equal(secret_read(fifo, &buf, &len, &why), -EINVAL);
        assert_non_null(strstr(why, "not a regular file"));
        free(why);
        free(fifo);
}

static void test_read(void **state) {
        char *path = write_file(state, "user.creds", creds_text, strlen(creds_text), 0600);
        char *buf = NULL, *why = NULL;
        size_t len = 0;
        assert_int_equal(secret_read(path, &buf, &len, &why), 0);
        assert_null(why);
        assert_int_equal(len, strlen(creds_text));
        assert_string_equal(buf, creds_text);
        secret_free(buf, len);
        secret_free(NULL, 0);
        free(path);

        /* Empty file: an empty, terminated buffer. */
        path = write_file(state, "empty", "", 0, 0600);
        assert_int_equal(secret_read(path, &buf, &len, NULL), 0);
        assert_int_equal(len, 0);
        assert_string_equal(buf, "");
        secret_free(buf, len);
        free(path);
}

static void test_size_limit(void **state) {
        char *big = malloc(SECRET_MAX_SIZE + 1);
        memset(big, 'A', SECRET_MAX_SIZE + 1);

        char *path = write_file(state, "max", big, SECRET_MAX_SIZE, 0600);
        char *buf = NULL, *why = NULL;
        size_t len = 0;
        assert_int_equal(secret_read(path, &buf, &len, &why), 0);
        assert_int_equal(len, SECRET_MAX_SIZE);
        secret_free(buf, len);
        free(path);

        path = write_file(state, "too-big", big, SECRET_MAX_SIZE + 1, 0600);
        buf = NULL;
        assert_int_equal(secret_read(path, &buf, &len, &why), -EFBIG);
        assert_null(buf);
        assert_non_null(strstr(why, path));
        assert_non_null(strstr(why, "larger than 65536 bytes"));
        free(why);
        free(path);
        free(big);
}

static void test_creds(void **state) {
        char *seed = secret_find_seed(creds_text);
        assert_non_null(seed);
        assert_string_equal(seed, SEED);
        secret_free(seed, strlen(seed));

        char *jwt = secret_find_jwt(creds_text);
        assert_non_null(jwt);
        assert_string_equal(jwt, JWT);
        free(jwt);
}

static void test_creds_crlf(void **state) {
        char *crlf = xstrdup("");
        for (const char *c = creds_text; *c; c++) {
                char *next = xasprintf("%s%s", crlf, *c == '\n' ? "\r\n" : (char[]){ *c, 0 });
                free(crlf);
                crlf = next;
        }
        char *seed = secret_find_seed(crlf);
        assert_non_null(seed);
        assert_string_equal(seed, SEED);
        secret_free(seed, strlen(seed));

        char *jwt = secret_find_jwt(crlf);
        assert_non_null(jwt);
        assert_string_equal(jwt, JWT);
        free(jwt);
        free(crlf);
}

static void test_creds_lenient(void **state) {
        static const char *const texts[] = {
                /* Five dashes everywhere, blank lines and indentation. */
                "-----BEGIN NATS USER JWT-----\n\n  " JWT "  \n\n-----END NATS USER JWT-----\n"
                "-----BEGIN USER NKEY SEED-----\n\n\t" SEED "\n-----END USER NKEY SEED-----\n",
                /* No trailing newline; three dashes. */
                "---BEGIN NATS USER JWT---\n" JWT "\n---END NATS USER JWT---\n---BEGIN USER NKEY SEED---\n" SEED,
        };
        for (size_t i = 0; i < ARRAY_SIZE(texts); i++) {
                char *jwt = secret_find_jwt(texts[i]);
                assert_non_null(jwt);
                assert_string_equal(jwt, JWT);
                free(jwt);
                char *seed = secret_find_seed(texts[i]);
                assert_non_null(seed);
                assert_string_equal(seed, SEED);
                secret_free(seed, strlen(seed));
        }
}

static void test_creds_broken(void **state) {
        /* No END line: do not guess. */
        assert_null(secret_find_jwt("-----BEGIN NATS USER JWT-----\n" JWT "\n"));
        /* Empty block. */
        assert_null(secret_find_jwt("-----BEGIN NATS USER JWT-----\n------END NATS USER JWT------\n"));
        /* No block at all. */
        assert_null(secret_find_jwt(SEED "\n"));
        assert_null(secret_find_jwt(""));
        /* Something other than a seed right after the seed marker. */
        assert_null(secret_find_seed("-----BEGIN USER NKEY SEED-----\nnot a seed\n" SEED "\n"));
}

static void test_seed_file(void **state) {
        static const struct {
                const char *text;
                const char *want;
        } cases[] = {
                { SEED "\n", SEED },
                { SEED, SEED },
                { "\n\n  " SEED "  \r\n", SEED },
                { "SOAIBDPBAUTWCWBKIO6XHQNINK5FWJW4OHLXC3HQ2KFE4PEJUA44CNHTC4\n",
                  "SOAIBDPBAUTWCWBKIO6XHQNINK5FWJW4OHLXC3HQ2KFE4PEJUA44CNHTC4" },
                { "SAAIBDPBAUTWCWBKIO6XHQNINK5FWJW4OHLXC3HQ2KFE4PEJUA44CNHTC4",
                  "SAAIBDPBAUTWCWBKIO6XHQNINK5FWJW4OHLXC3HQ2KFE4PEJUA44CNHTC4" },
                { "", NULL },
                { "\n\n", NULL },
                /* Wrong type letter, too short, too long, outside the alphabet, lowercase. */
                { "SXAIBDPBAUTWCWBKIO6XHQNINK5FWJW4OHLXC3HQ2KFE4PEJUA44CNHTC4", NULL },
                { "SUAIBDPBAUTWCWBKIO6XHQNINK5FWJW4OHLXC3HQ2KFE4PEJUA44CNHTC", NULL },
                { "SUAIBDPBAUTWCWBKIO6XHQNINK5FWJW4OHLXC3HQ2KFE4PEJUA44CNHTC4A", NULL },
                { "SUAIBDPBAUTWCWBKIO6XHQNINK5FWJW4OHLXC3HQ2KFE4PEJUA44CNHTC1", NULL },
                { "suaibdpbautwcwbkio6xhqnink5fwjw4ohlxc3hq2kfe4pejua44cnhtc4", NULL },
                /* An account public key is not a seed. */
                { "ABJHLOVMPA4CI6R5KLNGOB4GSLNIY7IOUPAJC4YFNDLQVIOBYQGUWVLA", NULL },
        };
        for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
                char *seed = secret_find_seed(cases[i].text);
                if (!cases[i].want) {
                        if (seed)
                                fail_msg("case %zu: found \"%s\"", i, seed);
                        continue;
                }
                if (!seed)
                        fail_msg("case %zu: no seed found", i);
                assert_string_equal(seed, cases[i].want);
                secret_free(seed, strlen(seed));
        }
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_private_modes_accepted, setup, teardown),
                cmocka_unit_test_setup_teardown(test_readable_modes_refused, setup, teardown),
                cmocka_unit_test_setup_teardown(test_missing, setup, teardown),
                cmocka_unit_test_setup_teardown(test_symlink_followed, setup, teardown),
                cmocka_unit_test_setup_teardown(test_not_a_file, setup, teardown),
                cmocka_unit_test_setup_teardown(test_read, setup, teardown),
                cmocka_unit_test_setup_teardown(test_size_limit, setup, teardown),
                cmocka_unit_test(test_creds),
                cmocka_unit_test(test_creds_crlf),
                cmocka_unit_test(test_creds_lenient),
                cmocka_unit_test(test_creds_broken),
                cmocka_unit_test(test_seed_file),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
