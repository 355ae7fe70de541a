#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "reload.h"
#include "serverconf.h"
#include "settings.h"
#include "util.h"

static void test_versions(void **state) {
        assert_false(reload_version_has_request("2.9.10"));
        assert_false(reload_version_has_request("2.9.25"));
        assert_false(reload_version_has_request("1.4.1"));
        assert_true(reload_version_has_request("2.10.0"));
        assert_true(reload_version_has_request("2.10.23"));
        assert_true(reload_version_has_request("2.11.0-RC.1"));
        assert_true(reload_version_has_request("2.15.3"));
        assert_true(reload_version_has_request("3.0.0"));
        assert_false(reload_version_has_request(NULL));
        assert_false(reload_version_has_request("v2.10.0"));
        assert_false(reload_version_has_request(""));
}

static void test_route_pick(void **state) {
        struct server_info s[3] = { { .version = "2.10.23" }, { .version = "2.15.3" }, { .version = "2.9.10" } };
        assert_int_equal(reload_route_pick(RELOAD_AUTO, s, 2), RELOAD_REQUEST);
        /* One older server in the cluster: every server gets the signal. */
        assert_int_equal(reload_route_pick(RELOAD_AUTO, s, 3), RELOAD_SIGNAL);
        assert_int_equal(reload_route_pick(RELOAD_AUTO, s + 2, 1), RELOAD_SIGNAL);
        assert_int_equal(reload_route_pick(RELOAD_AUTO, s, 0), RELOAD_SIGNAL);
        assert_int_equal(reload_route_pick(RELOAD_EXTERNAL, s, 2), RELOAD_EXTERNAL);
        assert_int_equal(reload_route_pick(RELOAD_REQUEST, s + 2, 1), RELOAD_REQUEST);
        assert_string_equal(reload_route_name(RELOAD_EXTERNAL), "external");
}

static struct settings *settings_of(const char *text) {
        struct settings *s = NULL;
        struct diag_list d = { 0 };
        if (settings_parse(text, "/etc/x/nats-accountd.conf", &s, &d) != 0) {
                diag_print(&d, stderr);
                fail_msg("settings_parse");
        }
        diag_list_clear(&d);
        return s;
}

static void test_pid_files(void **state) {
        static const char a[] = "pid_file: \"/run/n1.pid\"\n", b[] = "pid_file: n2.pid\n";
        struct serverconf *confs[2] = { serverconf_parse(a, strlen(a), "/srv/n1/nats.conf"),
                                        serverconf_parse(b, strlen(b), "/srv/n2/nats.conf") };
        struct settings *s = settings_of("[accounts]\nmode = config\n");
        char *why = NULL;
        char **files = reload_pid_files(s, confs, 2, &why);
        assert_non_null(files);
        assert_string_equal(files[0], "/run/n1.pid");
        assert_string_equal(files[1], "/srv/n2/n2.pid");
        assert_null(files[2]);
        for (char **f = files; *f; f++)
                free(*f);
        free(files);
        settings_free(s);

        /* The settings' list wins. */
        s = settings_of("[accounts]\nmode = config\n[config]\npid_file = /run/a.pid, b.pid\n");
        files = reload_pid_files(s, confs, 2, &why);
        assert_string_equal(files[0], "/run/a.pid");
        assert_string_equal(files[1], "/etc/x/b.pid");
        assert_null(files[2]);
        for (char **f = files; *f; f++)
                free(*f);
        free(files);
        settings_free(s);

        /* A server config without one, and no list: which file is it? */
        serverconf_free(confs[1]);
        confs[1] = serverconf_parse("port: 1\n", 8, "/srv/n3/nats.conf");
        s = settings_of("[accounts]\nmode = config\n");
        assert_null(reload_pid_files(s, confs, 2, &why));
        assert_string_equal(why, "reload = signal needs a pid file: /srv/n3/nats.conf sets no pid_file, and [config] "
                                 "pid_file is not set");
        free(why);
        settings_free(s);
        serverconf_free(confs[0]);
        serverconf_free(confs[1]);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_versions),
                cmocka_unit_test(test_route_pick),
                cmocka_unit_test(test_pid_files),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
