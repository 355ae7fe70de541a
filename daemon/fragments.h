/* Config mode's fragments: the one file per managed account that nats-accountd
 * owns, <fragments_dir>/<ACCOUNT>.conf, included inside that account's block
 * of nats-server.conf. It holds only what the accounts file manages for the
 * account, one block per managed key (jetstream, limits), with sizes as exact byte integers: nats-server reads "64M" as
 * 64,000,000. Never a secret. */
#pragma once
#include <stdbool.h>
#include <stddef.h>

#include "accounts.h"
#include "jslimits.h"

#define FRAGMENT_MAX_SIZE (64u * 1024)
#define FRAGMENT_MODE 0644

/* What a fragment says, block by block. A block the fragment does not have
 * reads as unmanaged (js.mode JS_UNMANAGED). */
struct fragment_state {
        struct js_state js;
        /* The `limits {}` block: connections, subscriptions, payload, leaf
         * nodes (the operator-only fields read as unlimited). */
        bool acct_managed;
        struct acct_limits acct;
};

/* <fragments_dir>/<account>.conf (allocated). */
char *fragment_path(const char *fragments_dir, const char *account);
/* The text of decl's fragment; accounts_file is named in its header. */
char *fragment_render(const struct account_decl *decl, const char *accounts_file);
/* Read a fragment back. Only the form fragment_render writes is understood
 * (comments and blank lines aside): 0 with *out; -EBADMSG (*why) for anything
 * else, e.g. a fragment edited by hand, which nats-accountd then replaces. */
int fragment_parse(const char *text, size_t len, struct fragment_state *out, char **why);
/* What decl asks of its fragment. */
void fragment_state_from_decl(const struct account_decl *decl, struct fragment_state *out);
