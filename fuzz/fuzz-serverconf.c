#include <stddef.h>
#include <stdint.h>

#include "serverconf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* nats-server config text as an operator (or an attacker with write access
 * to an included file) may write it: never a crash, a hang or a leak. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        if (size > SERVERCONF_MAX_BYTES)
                return 0;
        struct serverconf *c = serverconf_parse((const char *)data, size, "/etc/nats/nats-server.conf");
        for (size_t i = 0; i < c->n_accounts; i++) {
                struct include_check ic;
                serverconf_check_include(c, c->accounts[i].name, "/etc/nats/accounts.d/X.conf", &ic);
                include_check_clear(&ic);
        }
        serverconf_free(c);
        return 0;
}
