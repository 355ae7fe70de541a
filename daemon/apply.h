/* Apply: sign and push the plan's changes, gather every server's answer, verify. */
#pragma once
#include <stdint.h>
#include "diff.h"
#include "natsconn.h"
#include "nkeys.h"
#include "observe.h"
#include "settings.h"

#define APPLY_WINDOW 512 /* pushes in flight; the server's own ceiling is reached well below this */

/* The operator seed named by signing_key ("SO..."). 0; -ENOENT, -EACCES (file
 * permissions) or -EINVAL with *err. */
int signer_load(const struct settings *s, struct nkey *out, char **err);

/* Diff with the servers' applied state: INFO of every existing account in a
 * (of those some server has loaded, past a few accounts), then JSZ usage of
 * those whose limits change and whose JetStream some server has on (for a few
 * accounts, INFO and JSZ together in one round trip), CONNZ of those whose
 * max_subscriptions goes down while they have connections, and JSZ with
 * streams of those where a tier's memory or store limit goes down. 0 with
 * *out, or negative errno (connection) with *err. */
int plan_with_state(struct natsconn *c, struct observed *obs, const struct accounts *a,
                    const struct plan_options *opt, struct plan **out, char **err);

/* The iat of a JWT about to be pushed for account key (a create: observed_iat
 * 0): now, or later than the iat of the JWT it replaces, and later than any
 * this process pushed for that key before. Servers keep the newest JWT: one
 * issued earlier than a push of a second ago (iat is in seconds, and several
 * pushes in one second count up) would be refused by a server that holds that
 * push, or replace it on one that missed it. Remembered in memory while it is
 * ahead of the clock. */
int64_t apply_iat_after(const char *key, int64_t observed_iat, int64_t now);

/* Called for each account once its outcome is known (for logs). */
typedef void (*apply_done_fn)(void *userdata, const struct plan_entry *e, bool ok);

/* Push every changing entry of p. Entries that fail become PLAN_ERROR with the
 * server's own message; the others keep their action. obs is updated with the
 * JWTs that were applied, so it stays the last known state.
 * 0 when the pass ran (some accounts may have failed); -EACCES when the signing
 * key is not trusted by every server (nothing pushed); other negative errno when
 * the connection failed. *err says why. */
int apply_plan(struct natsconn *c, const struct settings *s, const struct nkey *signer, struct observed *obs,
               struct plan *p, apply_done_fn done, void *userdata, char **err);
