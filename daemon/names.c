#include "names.h"

#include <string.h>

bool account_name_valid(const char *name, const char **why) {
        size_t n = strlen(name);
        if (n == 0) {
                *why = "account name is empty";
                return false;
        }
        if (n > ACCOUNT_NAME_MAX) {
                *why = "account name is longer than 64 characters";
                return false;
        }
        for (size_t i = 0; i < n; i++) {
                char c = name[i];
                if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
                    c == '-')
                        continue;
                /* Names end up inside NATS subjects: '.', '*', '>' and spaces would change their meaning. */
                *why = "account names may only use A-Z a-z 0-9 _ - (they end up inside NATS subjects)";
                return false;
        }
        return true;
}
