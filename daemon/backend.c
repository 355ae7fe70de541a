#include "backend.h"

int backend_new(const struct settings *s, bool will_apply, struct backend **out, char **err) {
        struct backend *b = s->mode == ACCOUNTS_CONFIG ? config_backend_new(will_apply) : operator_backend_new(will_apply);
        int r = b->ops->configure(b, s, err);
        if (r < 0) {
                b->ops->free(b);
                *out = NULL;
                return r;
        }
        *out = b;
        return 0;
}

void backend_free(struct backend *b) {
        if (b)
                b->ops->free(b);
}
