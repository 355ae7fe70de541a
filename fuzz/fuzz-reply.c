/* One parser of the servers' replies per build (-DREPLY_<NAME>): what a
 * server sends is untrusted input. Each gets exactly size bytes, no NUL after
 * them, and the contract the callers rely on is checked: a filled object on
 * success, an explanation on failure, nothing leaked either way. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "observe-parse.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void need(bool ok) {
        if (!ok)
                abort();
}

static void parse(const char *text, size_t size) {
        char *why = NULL;
#if defined(REPLY_VARZ)
        struct server_info s;
        int r = observe_parse_varz(text, size, &s, &why);
        need(r == 0 ? s.id[0] == 'N' && s.trusted_keys != NULL : why != NULL);
        server_info_clear(&s);
#elif defined(REPLY_STATSZ)
        struct server_peers p;
        int r = observe_parse_statsz(text, size, &p, &why);
        need(r == 0 ? p.name && p.routes && p.gateways && !p.routes[p.n_routes] : why != NULL);
        server_peers_clear(&p);
#elif defined(REPLY_INFO) || defined(REPLY_JSZ)
        struct server_account_state st;
#if defined(REPLY_INFO)
        int r = observe_parse_info(text, size, &st, &why);
#else
        int r = observe_parse_jsz(text, size, &st, &why);
#endif
        need(r == 0 ? st.server_id[0] == 'N' && (!st.have_usage || (st.memory >= 0 && st.storage >= 0))
                    : why != NULL);
        free(st.error);
#elif defined(REPLY_ACCOUNTZ)
        struct loaded_accounts l;
        int r = observe_parse_accountz(text, size, &l, &why);
        need(r == 0 ? l.server_id[0] == 'N' : why != NULL);
        for (size_t i = 1; r == 0 && i < l.n; i++)
                need(strcmp(l.keys[i - 1], l.keys[i]) <= 0);
        loaded_accounts_clear(&l);
#elif defined(REPLY_PACK)
        struct observed_account *v = NULL;
        size_t n = 0, cap = 0;
        int r = observe_parse_pack_msg(text, size, &v, &n, &cap, &why);
        need(r == 0 || (why != NULL && n == 0));
        for (size_t i = 0; i < n; i++) {
                need(v[i].jwt != NULL && v[i].key[0] == 'A');
                observed_account_clear(&v[i]);
        }
        free(v);
#elif defined(REPLY_UPDATE)
        struct update_reply u;
        int r = observe_parse_update_reply(text, size, &u, &why);
        need(r == 0 ? u.server_id[0] == 'N' && (u.ok ? u.account[0] == 'A' && !u.error : u.error != NULL)
                    : why != NULL);
        update_reply_clear(&u);
#else
#error "build with one of -DREPLY_VARZ, _STATSZ, _INFO, _JSZ, _ACCOUNTZ, _PACK, _UPDATE"
#endif
        free(why);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        if (size > 4 * 1024 * 1024)
                return 0;
        /* Exactly size bytes: reading past the end is caught. */
        char *text = xmalloc(size ? size : 1);
        if (size)
                memcpy(text, data, size);
        parse(text, size);
        free(text);
        return 0;
}
