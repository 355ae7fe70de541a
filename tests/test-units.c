#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "units.h"

struct size_case {
        const char *in;
        int ret;
        int64_t want;
};

static void test_sizes(void **state) {
        static const struct size_case cases[] = {
                { "0", 0, 0 },
                { "1", 0, 1 },
                { "1B", 0, 1 },
                { "1b", 0, 1 },
                { "1K", 0, 1000 },
                { "1k", 0, 1000 },
                { "1KB", 0, 1024 },
                { "1KiB", 0, 1024 },
                { "1Ki", 0, 1024 },
                { "1M", 0, 1000000 },
                { "1MB", 0, 1048576 },
                { "1MiB", 0, 1048576 },
                { "1G", 0, 1000000000 },
                { "1GB", 0, 1073741824 },
                { "5GiB", 0, 5368709120LL },
                { "1T", 0, 1000000000000LL },
                { "1TB", 0, 1099511627776LL },
                { "2TiB", 0, 2199023255552LL },
                { "256 MiB", 0, 268435456 },
                { "-1", 0, -1 },
                { "unlimited", 0, -1 },
                { "Unlimited", 0, -1 },
                { "9223372036854775807", 0, INT64_MAX },
                { "9223372036854775808", -ERANGE, 0 },
                { "8388608TiB", -ERANGE, 0 },
                { "8388607TiB", 0, 8388607LL * 1099511627776LL },
                { "-2", -EINVAL, 0 },
                { "-1GiB", -EINVAL, 0 },
                { "", -EINVAL, 0 },
                { "GiB", -EINVAL, 0 },
                { "5XB", -EINVAL, 0 },
                { "5 ", -EINVAL, 0 },
                { "1.5GiB", -EINVAL, 0 },
                { "0x10", -EINVAL, 0 },
                { "+5", -EINVAL, 0 },
        };
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                int64_t v = 12345;
                const char *why = NULL;
                int r = units_parse_size(cases[i].in, &v, &why);
                if (r != cases[i].ret)
                        fail_msg("size \"%s\": got %d want %d", cases[i].in, r, cases[i].ret);
                if (r == 0)
                        assert_int_equal(v, cases[i].want);
                else
                        assert_non_null(why);
        }
}

static void test_counts(void **state) {
        int64_t v;
        const char *why;
        assert_int_equal(units_parse_count("0", &v, &why), 0);
        assert_int_equal(v, 0);
        assert_int_equal(units_parse_count("100", &v, &why), 0);
        assert_int_equal(v, 100);
        assert_int_equal(units_parse_count("-1", &v, &why), 0);
        assert_int_equal(v, -1);
        assert_int_equal(units_parse_count("unlimited", &v, &why), 0);
        assert_int_equal(v, -1);
        assert_int_equal(units_parse_count("9223372036854775807", &v, &why), 0);
        assert_int_equal(units_parse_count("9223372036854775808", &v, &why), -ERANGE);
        assert_int_equal(units_parse_count("99999999999999999999999", &v, &why), -ERANGE);
        assert_int_equal(units_parse_count("-5", &v, &why), -EINVAL);
        assert_string_equal(why, "negative counts other than -1 are not allowed");
        assert_int_equal(units_parse_count("10K", &v, &why), -EINVAL);
        assert_string_equal(why, "not a whole number");
        assert_int_equal(units_parse_count("", &v, &why), -EINVAL);
        assert_int_equal(units_parse_count("1e3", &v, &why), -EINVAL);
}

static void test_durations(void **state) {
        static const struct {
                const char *in;
                int ret;
                uint64_t usec;
        } cases[] = {
                { "0", 0, 0 },
                { "2", 0, 2000000 },
                { "250ms", 0, 250000 },
                { "2s", 0, 2000000 },
                { "5m", 0, 300000000 },
                { "1h", 0, 3600000000ULL },
                { "1d", 0, 86400000000ULL },
                { "1m30s", 0, 90000000 },
                { "1h2m3s4ms", 0, 3723004000ULL },
                { "2S", 0, 2000000 },
                { "", -EINVAL, 0 },
                { "s", -EINVAL, 0 },
                { "-1s", -EINVAL, 0 },
                { "5x", -EINVAL, 0 },
                { "5 s", -EINVAL, 0 },
                { "1m30", -EINVAL, 0 },
                { "1.5s", -EINVAL, 0 },
                { "9223372036854775807d", -ERANGE, 0 },
                { "99999999999999999999s", -ERANGE, 0 },
        };
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                uint64_t v = 0;
                const char *why = NULL;
                int r = units_parse_duration(cases[i].in, &v, &why);
                if (r != cases[i].ret)
                        fail_msg("duration \"%s\": got %d want %d", cases[i].in, r, cases[i].ret);
                if (r == 0)
                        assert_int_equal(v, cases[i].usec);
                else
                        assert_non_null(why);
        }
}

static void test_format(void **state) {
        char buf[64];
        units_format_size(-1, buf, sizeof(buf));
        assert_string_equal(buf, "unlimited");
        units_format_size(0, buf, sizeof(buf));
        assert_string_equal(buf, "0");
        units_format_size(5368709120LL, buf, sizeof(buf));
        assert_string_equal(buf, "5GiB");
        units_format_size(1536, buf, sizeof(buf));
        assert_string_equal(buf, "1536");
        units_format_size(2048, buf, sizeof(buf));
        assert_string_equal(buf, "2KiB");
        units_format_size(1000, buf, sizeof(buf));
        assert_string_equal(buf, "1000");
        units_format_size(1099511627776LL, buf, sizeof(buf));
        assert_string_equal(buf, "1TiB");
        units_format_count(-1, buf, sizeof(buf));
        assert_string_equal(buf, "unlimited");
        units_format_count(42, buf, sizeof(buf));
        assert_string_equal(buf, "42");
        units_format_duration(90000000, buf, sizeof(buf));
        assert_string_equal(buf, "1m30s");
        units_format_duration(250000, buf, sizeof(buf));
        assert_string_equal(buf, "250ms");
        units_format_duration(0, buf, sizeof(buf));
        assert_string_equal(buf, "0");
}

/* What is formatted parses back to the same number. */
static void test_round_trip(void **state) {
        static const int64_t values[] = { 0, 1, 1023, 1024, 1000000, 5368709120LL, INT64_MAX, -1 };
        for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
                char buf[64];
                int64_t back;
                const char *why;
                units_format_size(values[i], buf, sizeof(buf));
                assert_int_equal(units_parse_size(buf, &back, &why), 0);
                assert_int_equal(back, values[i]);
        }
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_sizes),     cmocka_unit_test(test_counts),     cmocka_unit_test(test_durations),
                cmocka_unit_test(test_format),    cmocka_unit_test(test_round_trip),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
