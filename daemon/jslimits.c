#include "jslimits.h"

#include <string.h>

/* JWT claim names, index-aligned with js_fields[]. */
static const char *const claim_names[] = {
        "mem_storage",   "disk_storage",         "streams",
        "consumer",      "max_ack_pending",      "mem_max_stream_bytes",
        "disk_max_stream_bytes", "max_bytes_required",
};

static int64_t *field_ptr(struct js_limits *l, const struct js_field *f) {
        return (int64_t *)(void *)((char *)l + f->offset);
}

static int64_t field_get(const struct js_limits *l, const struct js_field *f) {
        if (f->kind == JS_FIELD_BOOL)
                return *(const bool *)(const void *)((const char *)l + f->offset);
        return *(const int64_t *)(const void *)((const char *)l + f->offset);
}

static void field_set(struct js_limits *l, const struct js_field *f, int64_t v) {
        if (f->kind == JS_FIELD_BOOL)
                *(bool *)(void *)((char *)l + f->offset) = v != 0;
        else
                *field_ptr(l, f) = v;
}

static void limits_absent(struct js_limits *l) {
        js_limits_unlimited(l);
        l->max_memory = 0;
        l->max_store = 0;
}

/* nats-server reads 0 (or less) as unlimited for everything but mem/disk. */
static int64_t normalise(size_t i, int64_t v) {
        if (i < 2)
                return v < 0 ? -1 : v;
        return v <= 0 ? -1 : v;
}

static void limits_from_json(const json_t *obj, struct js_limits *l) {
        limits_absent(l);
        for (size_t i = 0; i < js_fields_count; i++) {
                const json_t *v = json_object_get(obj, claim_names[i]);
                if (!v)
                        continue;
                if (js_fields[i].kind == JS_FIELD_BOOL)
                        field_set(l, &js_fields[i], json_is_true(v));
                else if (json_is_integer(v))
                        field_set(l, &js_fields[i], normalise(i, json_integer_value(v)));
        }
}

static bool limits_enabled(const struct js_limits *l) {
        return l->max_memory != 0 || l->max_store != 0;
}

static int tier_index(const char *name) {
        if (name[0] == 'R' && name[1] >= '1' && name[1] <= '5' && name[2] == 0)
                return name[1] - '1';
        return -1;
}

void js_state_from_claims(const json_t *claims, struct js_state *out) {
        memset(out, 0, sizeof(*out));
        const json_t *lim = json_object_get(json_object_get(claims, "nats"), "limits");
        limits_from_json(lim, &out->limits);
        for (int t = 0; t < JS_TIERS; t++)
                limits_absent(&out->tiers[t]);
        const json_t *tiered = json_object_get(lim, "tiered_limits");
        bool any_tier_enabled = false;
        if (json_is_object(tiered) && json_object_size(tiered) > 0) {
                const char *name;
                const json_t *v;
                json_object_foreach((json_t *)tiered, name, v) {
                        int t = tier_index(name);
                        if (t < 0)
                                continue;
                        limits_from_json(v, &out->tiers[t]);
                        out->tier_set[t] = true;
                        any_tier_enabled |= limits_enabled(&out->tiers[t]);
                }
                /* A non-empty tiered_limits makes nats-server drop the flat ones. */
                limits_absent(&out->limits);
                out->mode = any_tier_enabled ? JS_TIERED : JS_DISABLED;
                return;
        }
        out->mode = limits_enabled(&out->limits) ? JS_ENABLED : JS_DISABLED;
}

void js_state_from_decl(const struct account_decl *decl, struct js_state *out) {
        memset(out, 0, sizeof(*out));
        limits_absent(&out->limits);
        for (int t = 0; t < JS_TIERS; t++)
                limits_absent(&out->tiers[t]);
        out->mode = decl->js;
        if (decl->js == JS_ENABLED)
                out->limits = decl->limits;
        if (decl->js == JS_TIERED)
                for (int t = 0; t < JS_TIERS; t++)
                        if (decl->tier_set[t]) {
                                out->tiers[t] = decl->tiers[t];
                                out->tier_set[t] = true;
                        }
}

bool js_state_enabled(const struct js_state *st) {
        return st->mode == JS_ENABLED || st->mode == JS_TIERED;
}

static void limits_to_json(const struct js_limits *l, json_t *obj) {
        for (size_t i = 0; i < js_fields_count; i++) {
                int64_t v = field_get(l, &js_fields[i]);
                if (js_fields[i].kind == JS_FIELD_BOOL)
                        json_object_set_new(obj, claim_names[i], json_boolean(v));
                else
                        json_object_set_new(obj, claim_names[i], json_integer(v));
        }
}

json_t *claims_limits_object(json_t *claims) {
        json_t *nats = json_object_get(claims, "nats");
        if (!json_is_object(nats)) {
                nats = json_object();
                json_object_set_new(claims, "nats", nats);
        }
        json_t *lim = json_object_get(nats, "limits");
        if (!json_is_object(lim)) {
                lim = json_object();
                json_object_set_new(nats, "limits", lim);
        }
        return lim;
}

void js_state_to_claims(const struct js_state *st, json_t *claims) {
        json_t *lim = claims_limits_object(claims);
        for (size_t i = 0; i < js_fields_count; i++)
                json_object_del(lim, claim_names[i]);
        json_object_del(lim, "tiered_limits");
        if (st->mode == JS_ENABLED)
                limits_to_json(&st->limits, lim);
        if (st->mode == JS_TIERED) {
                json_t *tiers = json_object();
                for (int t = 0; t < JS_TIERS; t++) {
                        if (!st->tier_set[t])
                                continue;
                        json_t *obj = json_object();
                        limits_to_json(&st->tiers[t], obj);
                        char name[3] = { 'R', (char)('1' + t), 0 };
                        json_object_set_new(tiers, name, obj);
                }
                json_object_set_new(lim, "tiered_limits", tiers);
        }
}

int64_t js_state_field(const struct js_state *st, int tier, const struct js_field *f) {
        if (!js_state_enabled(st)) {
                struct js_limits off;
                limits_absent(&off);
                return field_get(&off, f);
        }
        if (tier < 0)
                return field_get(&st->limits, f);
        return field_get(&st->tiers[tier], f);
}
