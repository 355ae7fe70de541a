/* util: files read and written the safe way. fsync and rename are wrapped
 * (-Wl,--wrap) to see what reaches the disk, and in which order. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "util.h"

int __real_fsync(int fd);
int __real_rename(const char *from, const char *to);
int __wrap_fsync(int fd);
int __wrap_rename(const char *from, const char *to);

/* What happened, in order: 'F' fsync of a file, 'D' fsync of a folder, 'R' rename. */
static char events[64];
static size_t n_events;
static char synced_dir[4096];

static void note(char c) {
        if (n_events + 1 < sizeof(events))
                events[n_events++] = c;
        events[n_events] = 0;
}

int __wrap_fsync(int fd) {
        struct stat st;
        if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
                char link[64];
                snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
                ssize_t k = readlink(link, synced_dir, sizeof(synced_dir) - 1);
                synced_dir[k > 0 ? k : 0] = 0;
                note('D');
        } else {
                note('F');
        }
        return __real_fsync(fd);
}

int __wrap_rename(const char *from, const char *to) {
        note('R');
        return __real_rename(from, to);
}

static char *tmpdir(void) {
        char tmpl[] = "/tmp/test-util.XXXXXX";
        char *d = mkdtemp(tmpl);
        assert_non_null(d);
        /* Resolved, to compare with what /proc/self/fd says. */
        char *real = realpath(d, NULL);
        assert_non_null(real);
        return real;
}

static void rm_rf(const char *dir) {
        char *cmd = xasprintf("rm -rf '%s'", dir);
        assert_int_equal(system(cmd), 0);
        free(cmd);
}

static void test_write_atomic_syncs_the_folder(void **state) {
        char *dir = tmpdir();
        char *file = path_join(dir, "seed.nk");
        n_events = 0;
        synced_dir[0] = 0;
        assert_int_equal(file_write_atomic(file, "data\n", 5, 0600), 0);
        /* The file's data, then the rename, then the folder that holds the rename. */
        assert_string_equal(events, "FRD");
        assert_string_equal(synced_dir, dir);
        struct stat st;
        assert_int_equal(stat(file, &st), 0);
        assert_int_equal(st.st_mode & 07777, 0600);

        /* The no-sync variant leaves both to one dir_sync() later. */
        n_events = 0;
        assert_int_equal(file_write_atomic_nosync(file, "data\n", 5, 0600), 0);
        assert_string_equal(events, "R");
        free(file);
        rm_rf(dir);
        free(dir);
}

static void test_read_refuses_what_is_not_a_file(void **state) {
        char *dir = tmpdir();
        char *fifo = path_join(dir, "accounts.yaml");
        assert_int_equal(mkfifo(fifo, 0644), 0);
        char *text = NULL;
        size_t len = 0;
        /* Without a writer, opening a FIFO for reading would block for ever. */
        assert_int_equal(file_read_all(fifo, 1024, &text, &len), -EINVAL);
        assert_null(text);
        assert_non_null(strstr(file_read_error(-EINVAL), "not a regular file"));

        assert_int_equal(file_read_all("/dev/zero", 1024, &text, &len), -EINVAL);
        assert_int_equal(file_read_all("/dev/null", 1024, &text, &len), -EINVAL);
        assert_int_equal(file_read_all(dir, 1024, &text, &len), -EISDIR);

        char *sock_path = path_join(dir, "sock");
        int sock = socket(AF_UNIX, SOCK_STREAM, 0);
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock_path);
        assert_int_equal(bind(sock, (struct sockaddr *)&sa, sizeof(sa)), 0);
        assert_int_equal(file_read_all(sock_path, 1024, &text, &len), -EINVAL);
        close(sock);

        char *file = path_join(dir, "real.yaml");
        assert_int_equal(file_write_atomic(file, "accounts: {}\n", 13, 0644), 0);
        assert_int_equal(file_read_all(file, 1024, &text, &len), 0);
        assert_int_equal(len, 13);
        assert_string_equal(text, "accounts: {}\n");
        free(text);
        assert_int_equal(file_read_all(file, 12, &text, &len), -EFBIG);

        free(file);
        free(sock_path);
        free(fifo);
        rm_rf(dir);
        free(dir);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_write_atomic_syncs_the_folder),
                cmocka_unit_test(test_read_refuses_what_is_not_a_file),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
