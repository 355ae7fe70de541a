#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "names.h"

static void test_valid(void **state) {
        static const char *const ok[] = { "A", "APP", "app_1", "ORDERS-eu", "0", "a-b_c-D",
                                          "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghijkl" };
        for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
                const char *why = NULL;
                if (!account_name_valid(ok[i], &why))
                        fail_msg("\"%s\" rejected: %s", ok[i], why);
        }
}

static void test_invalid(void **state) {
        static const struct {
                const char *name;
                const char *why;
        } bad[] = {
                { "", "empty" },
                { "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghijklm", "longer than 64" },
                { "A.B", "A-Z a-z 0-9 _ -" },
                { "A*", "subjects" },
                { "A>", "subjects" },
                { "A B", "subjects" },
                { "Ä", "subjects" },
                { "A/B", "subjects" },
                { "A\tB", "subjects" },
                { "$SYS", "subjects" },
        };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                const char *why = NULL;
                if (account_name_valid(bad[i].name, &why))
                        fail_msg("\"%s\" accepted", bad[i].name);
                if (!strstr(why, bad[i].why))
                        fail_msg("\"%s\": message \"%s\" lacks \"%s\"", bad[i].name, why, bad[i].why);
        }
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_valid),
                cmocka_unit_test(test_invalid),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
