/* JetStream limits as account JWT claims hold them, and back. */
#pragma once
#include <jansson.h>

#include "accounts.h"

/* The JetStream part of an account, normalised the way nats-server reads the
 * claims: absent mem/disk = 0, streams/consumer 0 = unlimited, max_ack_pending
 * and *_max_stream_bytes <= 0 = unlimited, flat limits ignored when tiered
 * limits are present, enabled iff some mem or disk limit is not 0. */
struct js_state {
        enum js_mode mode; /* JS_DISABLED, JS_ENABLED or JS_TIERED */
        struct js_limits limits;
        struct js_limits tiers[JS_TIERS];
        bool tier_set[JS_TIERS];
};

void js_state_from_claims(const json_t *claims, struct js_state *out);
/* The state a declaration asks for (decl->js must not be JS_UNMANAGED). */
void js_state_from_decl(const struct account_decl *decl, struct js_state *out);
/* Replace the JetStream limits in claims (nats.limits and nats.limits.tiered_limits)
 * with the declared ones; every other claim is kept. */
void js_state_to_claims(const struct js_state *st, json_t *claims);
/* claims' nats.limits object, made (with nats) where missing. */
json_t *claims_limits_object(json_t *claims);
bool js_state_enabled(const struct js_state *st);

/* Value of a field as the JWT means it, for comparison: flat fields of a tiered
 * state and tier fields of a flat state read as absent. tier -1 = flat. */
int64_t js_state_field(const struct js_state *st, int tier, const struct js_field *f);
