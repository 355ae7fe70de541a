/* Apply: sign and push the plan's changes, gather every server's answer, verify. */
#pragma once
#include "diff.h"
#include "natsconn.h"
#include "nkeys.h"
#include "observe.h"
#include "settings.h"

#define APPLY_WINDOW 512 /* pushes in flight; the server's own ceiling is reached well below this */

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
