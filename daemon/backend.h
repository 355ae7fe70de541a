/* The two deployment modes behind one small interface. The accounts model
 * (accounts.h), the diff (diff.h) and the plan's output (report.h) are shared;
 * a backend is what differs: how the servers' state is observed, and how a
 * plan is carried out and verified.
 *   operator  account JWTs: CLAIMS.PACK/LOOKUP, INFO, JSZ; re-signed pushes
 *             on CLAIMS.UPDATE (observe.c, apply.c; operator.c);
 *   config    accounts in nats-server.conf: one fragment file per account,
 *             a reload of every server, INFO and JSZ (configmode.c). */
#pragma once
#include <stdbool.h>
#include <stdio.h>

#include "accounts.h"
#include "apply.h"
#include "diff.h"
#include "natsconn.h"
#include "settings.h"

struct backend;

struct backend_ops {
        const char *mode;
        /* Take settings, at start and after each reload of the settings file;
         * they stay the caller's and must outlive the next call. On failure
         * the backend keeps what it had. 0, or a negative errno with *err:
         * -ENOENT, -EACCES, -EINVAL (exit codes 66, 77, 78). */
        int (*configure)(struct backend *b, const struct settings *s, char **err);
        /* Offline checks of a against the deployment's own files, for
         * `check`: notes and errors go to f. 0, or the exit code (sysexits)
         * of what will fail. */
        int (*check)(struct backend *b, const struct accounts *a, FILE *f);
        /* Observe and diff: a plan for a's accounts. whole: everything is
         * looked at anew and a is the whole file; else a holds the few
         * accounts an edit touched, and -ESTALE means a whole pass is needed
         * first. Another negative errno (*err) when the servers could not be
         * asked. */
        int (*plan)(struct backend *b, struct natsconn *c, const struct accounts *a, bool whole, struct plan **out,
                    char **err);
        /* Carry out p and verify it. An entry that did not take becomes
         * PLAN_ERROR saying why; done (may be NULL) hears of each changing
         * entry. 0 when the pass ran; -EACCES when nothing could be sent (a
         * key the servers do not trust); another negative errno (*err) when
         * the connection failed. */
        int (*apply)(struct backend *b, struct natsconn *c, struct plan *p, apply_done_fn done, void *userdata,
                     char **err);
        /* Between passes: keep only what the next one needs. */
        void (*rest)(struct backend *b);
        /* Files besides the accounts file whose edit calls for a whole pass
         * (config mode: the servers' config files, where an include line is
         * added), NULL-terminated; NULL when there are none. Valid until the
         * next configure. */
        char *const *(*watch_files)(struct backend *b);
        void (*free)(struct backend *b);
};

struct backend {
        const struct backend_ops *ops;
};

/* The backend of s->mode, configured with s. will_apply: it is going to
 * carry out plans (operator mode then needs its signing key). */
int backend_new(const struct settings *s, bool will_apply, struct backend **out, char **err);
void backend_free(struct backend *b);

/* The backends themselves. */
struct backend *operator_backend_new(bool will_apply);
struct backend *config_backend_new(bool will_apply);
