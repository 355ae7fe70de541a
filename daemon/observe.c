#include "observe.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <sodium.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "jwt.h"
#include "observe-parse.h"
#include "util.h"

#define SUBJ_VARZ "$SYS.REQ.SERVER.PING.VARZ"
#define SUBJ_STATSZ "$SYS.REQ.SERVER.PING.STATSZ"
#define SUBJ_PACK "$SYS.REQ.CLAIMS.PACK"
#define SUBJ_ACCOUNTZ "$SYS.REQ.SERVER.PING.ACCOUNTZ"
#define SUBJ_ACCOUNT_FMT "$SYS.REQ.ACCOUNT.%s.%s"
/* Room for "$SYS.REQ.ACCOUNT.<56>.CLAIMS.LOOKUP" or ".<64-character name>.INFO" and a NUL. */
#define ACCOUNT_SUBJ_MAX 96

/* CLAIMS.PACK streams one message per JWT (about 10,000/s on 2.9.10): it must
 * start within request_timeout and keep going with gaps below it; this only
 * caps a server that trickles forever. */
#define PACK_MAX_USEC (10u * 60 * 1000000)
/* A server that has just stored thousands of JWTs, on a busy host, may take a
 * few seconds before it starts (or goes on) streaming them: the servers
 * answered STATSZ and VARZ moments before, so this waits on a slow server,
 * not a dead one, and the pass runs off the event loop. */
#define PACK_WAIT_MIN_USEC (10u * 1000000)
/* nats-server (2.9.10) reads every JWT file of its store before it sends the
 * first message of a PACK, and answers nothing else on the connection
 * meanwhile: about 0.13 ms per JWT on tmpfs, 0.19 ms on disk, measured with
 * 100,000 on a busy 2-core host. The first message is awaited this long per
 * JWT expected, beyond PACK_WAIT_MIN_USEC: several times what was measured. */
#define PACK_WAIT_PER_JWT_USEC 500u
/* A server whose resolver does not hold the JWT answers LOOKUP with an empty
 * message from 2.9.17 on (nats-server #4151) and not at all before (2.9.10):
 * there, every lookup of an unknown account costs the full deadline, so keep
 * it short. A late reply only leaves o as it was. */
#define LOOKUP_TIMEOUT_USEC (500u * 1000)
#define TRUSTED_KEYS_MAX 4096
/* Routes or gateways of one server, and the servers of one deployment. */
#define PEERS_MAX 4096
#define SERVER_NAME_MAX 256
#define LOOKUP_DIGEST_LEN 16
#define PACK_VERIFY_THREADS 2
#define STATE_WINDOW 512
/* Above this many accounts, which ones each server has loaded is asked once
 * per server (ACCOUNTZ), and INFO only of those some server has: the others
 * would all answer "does not exist". Below, INFO alone is one round trip less. */
#define ACCOUNTZ_ABOVE 32
/* Every server answers INFO and JSZ: this many short answers in a row means a
 * server left after VARZ, and the pass is better retried than waited out. */
#define STATE_GIVE_UP_AFTER 32

static void set_why(char **why, char *msg) {
        if (why)
                *why = msg;
        else
                free(msg);
}

/* ---- base64url and JWT payloads ---- */

static int b64url_value(unsigned char ch) {
        if (ch >= 'A' && ch <= 'Z')
                return ch - 'A';
        if (ch >= 'a' && ch <= 'z')
                return ch - 'a' + 26;
        if (ch >= '0' && ch <= '9')
                return ch - '0' + 52;
        if (ch == '-')
                return 62;
        if (ch == '_')
                return 63;
        return -1;
}

/* RFC 4648 §5 without padding (trailing '=' tolerated). out holds len*3/4+1. */
static int b64url_decode(const char *in, size_t len, unsigned char *out, size_t *out_len) {
        while (len && in[len - 1] == '=')
                len--;
        if (len % 4 == 1)
                return -1;
        uint32_t acc = 0;
        int bits = 0;
        size_t n = 0;
        for (size_t i = 0; i < len; i++) {
                int v = b64url_value((unsigned char)in[i]);
                if (v < 0)
                        return -1;
                acc = (acc << 6) | (uint32_t)v;
                bits += 6;
                if (bits >= 8) {
                        bits -= 8;
                        out[n++] = (unsigned char)(acc >> bits);
                }
        }
        *out_len = n;
        return 0;
}

/* The JSON of a JWT's payload part: -1 when it is not base64url, else 0 with
 * *claims (NULL when it is not JSON, *e says why). */
static int payload_decode(const char *b64, size_t len, json_t **claims, json_error_t *e) {
        /* Account claims are small: decode on the stack and spare the heap one
         * allocation per JWT. */
        unsigned char stack_buf[4096];
        size_t blen = 0;
        unsigned char *buf = len * 3 / 4 + 1 <= sizeof(stack_buf) ? stack_buf : xmalloc(len * 3 / 4 + 1);
        int dr = b64url_decode(b64, len, buf, &blen);
        *claims = dr == 0 ? json_loadb((const char *)buf, blen, 0, e) : NULL;
        if (buf != stack_buf)
                free(buf);
        return dr;
}

static const char *json_str(const json_t *obj, const char *key) {
        return json_string_value(json_object_get(obj, key)); /* NULL for a non-object or non-string */
}

/* Integers, or reals holding an integer (replies are read with
 * JSON_DECODE_INT_AS_REAL, because JSZ sends uint64 values above INT64_MAX). */
static bool json_int64(const json_t *v, int64_t *out) {
        if (json_is_integer(v)) {
                *out = json_integer_value(v);
                return true;
        }
        if (!json_is_real(v))
                return false;
        double d = json_real_value(v);
        if (!isfinite(d))
                return false;
        /* Doubles this large are integers; clamp rather than overflow the cast. */
        if (d >= 9223372036854775807.0) {
                *out = INT64_MAX;
                return true;
        }
        if (d <= -9223372036854775808.0) {
                *out = INT64_MIN;
                return true;
        }
        int64_t i = (int64_t)d;
        if ((double)i != d)
                return false;
        *out = i;
        return true;
}

void observed_account_clear(struct observed_account *a) {
        if (!a)
                return;
        free(a->name);
        free(a->jwt);
        free(a->untrusted);
        for (size_t i = 0; i < a->n_servers; i++)
                free(a->servers[i].error);
        free(a->servers);
        free(a->tier_usage);
        memset(a, 0, sizeof(*a));
}

/* Shape only (56 base32 characters after 'A'): enough to keep the key safe
 * inside subjects, and 10x cheaper than the checksum when a PACK brings
 * 10,000 of them; the claims' sub must match it anyway. */
static bool account_key_shape(const char *key) {
        if (key[0] != 'A')
                return false;
        for (size_t i = 1; i < NKEY_PUBLIC_LEN; i++) {
                char ch = key[i];
                if (!((ch >= 'A' && ch <= 'Z') || (ch >= '2' && ch <= '7')))
                        return false;
        }
        return key[NKEY_PUBLIC_LEN] == 0;
}

static char *verify_verdict(const char *jwt, size_t len, const char *issuer) {
        char *verr = NULL, *verdict = NULL;
        if (jwt_verify(jwt, len, issuer, &verr) < 0)
                verdict = xasprintf("its JWT is not genuine: %s", verr);
        free(verr);
        return verdict;
}

/* verify: check the signature here; otherwise the caller does (pack_verifier). */
static int parse_account_jwt(const char *key, const char *jwt, size_t len, struct observed_account *out, char **why,
                             bool verify) {
        if (!account_key_shape(key)) {
                set_why(why, xasprintf("\"%.60s\" is not an account public key", key));
                return -EBADMSG;
        }
        if (len == 0 || len > OBSERVE_JWT_MAX) {
                set_why(why, xasprintf("JWT of %s has %zu bytes", key, len));
                return -EBADMSG;
        }
        if (memchr(jwt, 0, len)) {
                set_why(why, xasprintf("JWT of %s holds a NUL byte", key));
                return -EBADMSG;
        }
        const char *dot1 = memchr(jwt, '.', len);
        const char *dot2 = dot1 ? memchr(dot1 + 1, '.', len - (size_t)(dot1 + 1 - jwt)) : NULL;
        if (!dot1 || !dot2 || dot1 == jwt || dot2 == dot1 + 1 || dot2 + 1 == jwt + len ||
            memchr(dot2 + 1, '.', len - (size_t)(dot2 + 1 - jwt))) {
                set_why(why, xasprintf("JWT of %s is not header.payload.signature", key));
                return -EBADMSG;
        }
        json_t *claims = NULL;
        json_error_t e;
        int dr = payload_decode(dot1 + 1, (size_t)(dot2 - dot1 - 1), &claims, &e);
        if (dr < 0) {
                set_why(why, xasprintf("JWT of %s: payload is not base64url", key));
                return -EBADMSG;
        }
        if (!claims) {
                set_why(why, xasprintf("JWT of %s: payload is not JSON: %s", key, e.text));
                return -EBADMSG;
        }
        const char *sub = json_str(claims, "sub"), *iss = json_str(claims, "iss"), *name = json_str(claims, "name");
        const json_t *nats = json_object_get(claims, "nats");
        const char *type = json_str(nats, "type");
        int64_t iat = 0;
        char *msg = NULL;
        if (!json_is_object(claims))
                msg = xasprintf("JWT of %s: payload is not an object", key);
        else if (!sub || strcmp(sub, key) != 0)
                msg = xasprintf("JWT of %s: sub is %s", key, sub ? sub : "missing");
        else if (!iss || strlen(iss) != NKEY_PUBLIC_LEN)
                msg = xasprintf("JWT of %s: iss is %s", key, iss ? "not a public key" : "missing");
        else if (!json_is_integer(json_object_get(claims, "iat")) || (iat = json_integer_value(json_object_get(
                                                                               claims, "iat"))) < 0)
                msg = xasprintf("JWT of %s: iat is missing or not a positive integer", key);
        else if (!type || strcmp(type, "account") != 0)
                msg = xasprintf("JWT of %s: nats.type is %s, not account", key, type ? type : "missing");
        if (msg) {
                json_decref(claims);
                set_why(why, msg);
                return -EBADMSG;
        }
        memset(out, 0, sizeof(*out));
        memcpy(out->key, key, NKEY_PUBLIC_LEN);
        memcpy(out->issuer, iss, NKEY_PUBLIC_LEN);
        out->name = name ? xstrdup(name) : NULL;
        out->jwt = xstrndup(jwt, len);
        js_state_from_claims(claims, &out->js);
        acct_state_from_claims(claims, &out->acct);
        out->iat = iat;
        /* Well-formed, but is it genuine? A forged or altered JWT is kept (to
         * be reported), never used. */
        if (verify)
                out->untrusted = verify_verdict(out->jwt, len, out->issuer);
        json_decref(claims);
        return 0;
}

int observe_parse_account_jwt(const char *key, const char *jwt, size_t len, struct observed_account *out,
                              char **why) {
        return parse_account_jwt(key, jwt, len, out, why, true);
}

json_t *observed_account_claims(const struct observed_account *a) {
        const char *dot1 = a->jwt ? strchr(a->jwt, '.') : NULL;
        const char *dot2 = dot1 ? strchr(dot1 + 1, '.') : NULL;
        json_t *claims = NULL;
        json_error_t e;
        if (!dot2 || payload_decode(dot1 + 1, (size_t)(dot2 - dot1 - 1), &claims, &e) < 0)
                return NULL;
        if (!json_is_object(claims)) {
                json_decref(claims);
                return NULL;
        }
        return claims;
}

static int parse_pack_msg(const char *data, size_t len, struct observed_account **v, size_t *n, size_t *cap,
                          struct observed_damaged **dmg, size_t *n_dmg, char **why, bool verify) {
        size_t first = *n, first_dmg = n_dmg ? *n_dmg : 0;
        const char *p = data, *end = data + len;
        while (p < end) {
                const char *nl = memchr(p, '\n', (size_t)(end - p));
                const char *line_end = nl ? nl : end;
                size_t line_len = (size_t)(line_end - p);
                if (line_len && p[line_len - 1] == '\r')
                        line_len--;
                if (line_len) {
                        const char *bar = memchr(p, '|', line_len);
                        if (!bar || bar - p != NKEY_PUBLIC_LEN) {
                                set_why(why, xasprintf("a line is not \"<account key>|<jwt>\": \"%.*s...\"",
                                                       (int)(line_len < 40 ? line_len : 40), p));
                                goto fail;
                        }
                        char key[NKEY_PUBLIC_LEN + 1];
                        memcpy(key, p, NKEY_PUBLIC_LEN);
                        key[NKEY_PUBLIC_LEN] = 0;
                        if (*n == *cap) {
                                *cap = *cap ? *cap * 2 : 64;
                                *v = xreallocarray(*v, *cap, sizeof(**v));
                        }
                        const char *jwt = bar + 1;
                        char *bad = NULL;
                        if (parse_account_jwt(key, jwt, line_len - NKEY_PUBLIC_LEN - 1, &(*v)[*n], &bad, verify) == 0) {
                                (*n)++;
                        } else if (dmg && account_key_shape(key)) {
                                *dmg = xreallocarray(*dmg, *n_dmg + 1, sizeof(**dmg));
                                memcpy((*dmg)[*n_dmg].key, key, sizeof(key));
                                (*dmg)[(*n_dmg)++].why = bad;
                        } else {
                                set_why(why, bad);
                                goto fail;
                        }
                }
                p = nl ? nl + 1 : end;
        }
        return 0;
fail:
        while (*n > first)
                observed_account_clear(&(*v)[--*n]);
        while (n_dmg && *n_dmg > first_dmg)
                free((*dmg)[--*n_dmg].why);
        return -EBADMSG;
}

int observe_parse_pack_msg(const char *data, size_t len, struct observed_account **v, size_t *n, size_t *cap,
                           char **why) {
        return parse_pack_msg(data, len, v, n, cap, NULL, NULL, why, true);
}

int observe_parse_pack_msg_damaged(const char *data, size_t len, struct observed_account **v, size_t *n, size_t *cap,
                                   struct observed_damaged **dmg, size_t *n_dmg, char **why) {
        return parse_pack_msg(data, len, v, n, cap, dmg, n_dmg, why, true);
}

const struct observed_damaged *observed_find_damaged(const struct observed *o, const char *key) {
        for (size_t i = 0; o && i < o->n_damaged; i++)
                if (strcmp(o->damaged[i].key, key) == 0)
                        return &o->damaged[i];
        return NULL;
}

/* ---- replies of the system API ---- */

static json_t *reply_load(const char *data, size_t len, size_t max, char **why) {
        if (len > max) {
                set_why(why, xasprintf("reply of %zu bytes is too large (at most %zu)", len, max));
                return NULL;
        }
        json_error_t e;
        json_t *root = json_loadb(data, len, JSON_DECODE_INT_AS_REAL, &e);
        if (!root) {
                set_why(why, xasprintf("reply is not JSON: %s (byte %d)", e.text, e.position));
                return NULL;
        }
        if (!json_is_object(root)) {
                json_decref(root);
                set_why(why, xstrdup("reply is not a JSON object"));
                return NULL;
        }
        return root;
}

static int reply_server_id(const json_t *root, const char *fallback, char out[NKEY_PUBLIC_LEN + 1], char **why) {
        const char *id = json_str(json_object_get(root, "server"), "id");
        if (!id)
                id = fallback;
        if (!id) {
                set_why(why, xstrdup("reply has no server.id"));
                return -EBADMSG;
        }
        if (nkey_public_type(id) != NKEY_SERVER) {
                set_why(why, xasprintf("server.id \"%.60s\" is not a server public key", id));
                return -EBADMSG;
        }
        memcpy(out, id, NKEY_PUBLIC_LEN);
        out[NKEY_PUBLIC_LEN] = 0;
        return 0;
}

static const char *reply_error(const json_t *root, int64_t *code) {
        const json_t *e = json_object_get(root, "error");
        if (!json_is_object(e))
                return NULL;
        if (!json_int64(json_object_get(e, "code"), code))
                *code = 0;
        const char *d = json_str(e, "description");
        return d ? d : "";
}

/* RFC 3339 as Go writes a time.Time ("2006-01-02T15:04:05.999999999Z07:00"),
 * in nanoseconds since the epoch. */
static bool parse_rfc3339_ns(const char *s, int64_t *out) {
        int y, mo, d, h, mi, sec, n = 0;
        if (!s || sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &sec, &n) != 6 || n != 19)
                return false;
        if (y < 1970 || y > 9999 || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
                return false;
        const char *p = s + n;
        int64_t frac = 0;
        if (*p == '.') {
                int digits = 0;
                for (p++; *p >= '0' && *p <= '9'; p++, digits++)
                        if (digits < 9)
                                frac = frac * 10 + (*p - '0');
                if (digits == 0)
                        return false;
                for (; digits < 9; digits++)
                        frac *= 10;
        }
        int64_t offset = 0;
        if (*p == 'Z' && p[1] == 0) {
                offset = 0;
        } else if ((*p == '+' || *p == '-') && strlen(p) == 6 && p[3] == ':') {
                int oh = 0, om = 0;
                if (sscanf(p + 1, "%2d:%2d", &oh, &om) != 2 || oh > 23 || om > 59)
                        return false;
                offset = (int64_t)(oh * 3600 + om * 60) * (*p == '-' ? -1 : 1);
        } else {
                return false;
        }
        struct tm tm = { .tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h, .tm_min = mi,
                         .tm_sec = sec };
        time_t t = timegm(&tm);
        *out = ((int64_t)t - offset) * 1000000000 + frac;
        return true;
}

void server_info_clear(struct server_info *s) {
        if (!s)
                return;
        free(s->name);
        free(s->version);
        free(s->operator_key);
        if (s->trusted_keys)
                for (char **k = s->trusted_keys; *k; k++)
                        free(*k);
        free(s->trusted_keys);
        free(s->system_account);
        memset(s, 0, sizeof(*s));
}

static int add_trusted_key(struct server_info *s, size_t *n, const json_t *v, char **why) {
        /* Operator signing keys are plain strings; a scoped form {"key": ...}
         * is accepted too, as jwt v2 has it for account signing keys. */
        const char *k = json_is_object(v) ? json_str(v, "key") : json_string_value(v);
        if (!k || nkey_public_type(k) != NKEY_OPERATOR) {
                set_why(why, xstrdup("trusted_operators_claim holds a key that is not an operator public key"));
                return -EBADMSG;
        }
        if (*n >= TRUSTED_KEYS_MAX) {
                set_why(why, xasprintf("trusted_operators_claim holds more than %d keys", TRUSTED_KEYS_MAX));
                return -EBADMSG;
        }
        s->trusted_keys = xreallocarray(s->trusted_keys, *n + 2, sizeof(char *));
        s->trusted_keys[(*n)++] = xstrdup(k);
        s->trusted_keys[*n] = NULL;
        return 0;
}

int observe_parse_varz(const char *data, size_t len, struct server_info *out, char **why) {
        memset(out, 0, sizeof(*out));
        json_t *root = reply_load(data, len, OBSERVE_STATUS_REPLY_MAX, why);
        if (!root)
                return -EBADMSG;
        int ret = -EBADMSG;
        const json_t *d = json_object_get(root, "data"), *srv = json_object_get(root, "server");
        int64_t code = 0;
        const char *err = reply_error(root, &code);
        if (!json_is_object(d)) {
                set_why(why, err ? xasprintf("error %lld: %s", (long long)code, err)
                                 : xstrdup("reply has no \"data\" object"));
                goto out;
        }
        if (reply_server_id(root, json_str(d, "server_id"), out->id, why) < 0)
                goto out;
        const char *name = json_str(d, "server_name") ? json_str(d, "server_name") : json_str(srv, "name");
        const char *version = json_str(d, "version") ? json_str(d, "version") : json_str(srv, "ver");
        out->name = name ? xstrdup(name) : NULL;
        out->version = version ? xstrdup(version) : NULL;

        /* 2.9.10 sends "jetstream":{"config":{...},"stats":{...}} when enabled
         * and an object without "config" when not; the reply's server header
         * says the same in "jetstream":true|false. */
        const json_t *js = json_object_get(d, "jetstream");
        if (json_is_object(js))
                out->jetstream = json_is_object(json_object_get(js, "config"));
        else
                out->jetstream = json_is_true(json_object_get(srv, "jetstream"));

        const char *sys = json_str(d, "system_account");
        out->system_account = sys ? xstrdup(sys) : NULL;
        const char *loaded = json_str(d, "config_load_time");
        if (loaded && !parse_rfc3339_ns(loaded, &out->config_load_ns)) {
                set_why(why, xstrdup("data.config_load_time is not an RFC 3339 time"));
                goto out;
        }

        /* 2.9.10 sends "cluster":{}, "gateway":{} and "leaf":{} when none is
         * configured (and their settings otherwise); anything else, missing
         * fields included, counts as connected to others. */
        out->alone = true;
        static const char *const links[] = { "cluster", "gateway", "leaf" };
        for (size_t i = 0; i < ARRAY_SIZE(links); i++) {
                const json_t *l = json_object_get(d, links[i]);
                out->alone = out->alone && json_is_object(l) && json_object_size(l) == 0;
        }
        static const char *const counts[] = { "routes", "remotes", "leafnodes" };
        for (size_t i = 0; i < ARRAY_SIZE(counts); i++) {
                const json_t *n = json_object_get(d, counts[i]);
                out->alone = out->alone && (!n || (json_is_number(n) && json_number_value(n) == 0));
        }

        size_t n = 0;
        out->trusted_keys = xcalloc(1, sizeof(char *));
        const json_t *claims = json_object_get(d, "trusted_operators_claim");
        if (claims && !json_is_array(claims)) {
                set_why(why, xstrdup("trusted_operators_claim is not an array"));
                goto out;
        }
        size_t i;
        const json_t *claim;
        json_array_foreach(claims, i, claim) {
                const char *sub = json_str(claim, "sub");
                if (add_trusted_key(out, &n, json_object_get(claim, "sub"), why) < 0)
                        goto out;
                if (!out->operator_key)
                        out->operator_key = xstrdup(sub);
                const json_t *keys = json_object_get(json_object_get(claim, "nats"), "signing_keys");
                if (keys && !json_is_array(keys)) {
                        set_why(why, xstrdup("trusted_operators_claim nats.signing_keys is not an array"));
                        goto out;
                }
                size_t j;
                const json_t *k;
                json_array_foreach(keys, j, k)
                        if (add_trusted_key(out, &n, k, why) < 0)
                                goto out;
        }
        ret = 0;
out:
        json_decref(root);
        if (ret < 0)
                server_info_clear(out);
        return ret;
}

void server_peers_clear(struct server_peers *p) {
        if (!p)
                return;
        free(p->name);
        free(p->cluster);
        for (size_t i = 0; i < p->n_routes; i++)
                free(p->routes[i]);
        free(p->routes);
        for (size_t i = 0; i < p->n_gateways; i++)
                free(p->gateways[i]);
        free(p->gateways);
        memset(p, 0, sizeof(*p));
}

/* The distinct "name" strings of an array of objects into *out (NULL-terminated). */
static int peer_names(const json_t *list, const char *what, char ***out, size_t *n, char **why) {
        *out = xcalloc(1, sizeof(char *));
        *n = 0;
        if (!list || json_is_null(list))
                return 0;
        if (!json_is_array(list)) {
                set_why(why, xasprintf("statsz.%s is not an array", what));
                return -EBADMSG;
        }
        if (json_array_size(list) > PEERS_MAX) {
                set_why(why, xasprintf("statsz.%s holds more than %d entries", what, PEERS_MAX));
                return -EBADMSG;
        }
        size_t i;
        const json_t *v;
        json_array_foreach(list, i, v) {
                const char *name = json_str(v, "name");
                if (!name || !name[0] || strlen(name) > SERVER_NAME_MAX) {
                        set_why(why, xasprintf("statsz.%s[%zu] has no usable name", what, i));
                        return -EBADMSG;
                }
                bool seen = false;
                for (size_t k = 0; k < *n && !seen; k++)
                        seen = strcmp((*out)[k], name) == 0;
                if (seen)
                        continue;
                *out = xreallocarray(*out, *n + 2, sizeof(char *));
                (*out)[(*n)++] = xstrdup(name);
                (*out)[*n] = NULL;
        }
        return 0;
}

int observe_parse_statsz(const char *data, size_t len, struct server_peers *out, char **why) {
        memset(out, 0, sizeof(*out));
        json_t *root = reply_load(data, len, OBSERVE_STATUS_REPLY_MAX, why);
        if (!root)
                return -EBADMSG;
        int ret = -EBADMSG;
        const json_t *srv = json_object_get(root, "server"), *st = json_object_get(root, "statsz");
        if (reply_server_id(root, NULL, out->server_id, why) < 0)
                goto out;
        if (!json_is_object(st)) {
                set_why(why, xstrdup("reply has no \"statsz\" object"));
                goto out;
        }
        const char *name = json_str(srv, "name"), *cluster = json_str(srv, "cluster");
        if ((name && strlen(name) > SERVER_NAME_MAX) || (cluster && strlen(cluster) > SERVER_NAME_MAX)) {
                set_why(why, xstrdup("server.name or server.cluster is too long"));
                goto out;
        }
        out->name = xstrdup(name && name[0] ? name : out->server_id);
        out->cluster = cluster && cluster[0] ? xstrdup(cluster) : NULL;
        const json_t *active = json_object_get(st, "active_servers");
        if (active && (!json_int64(active, &out->active_servers) || out->active_servers < 0)) {
                set_why(why, xstrdup("statsz.active_servers is not a count"));
                goto out;
        }
        if (peer_names(json_object_get(st, "routes"), "routes", &out->routes, &out->n_routes, why) < 0 ||
            peer_names(json_object_get(st, "gateways"), "gateways", &out->gateways, &out->n_gateways, why) < 0)
                goto out;
        ret = 0;
out:
        json_decref(root);
        if (ret < 0)
                server_peers_clear(out);
        return ret;
}

static bool contains(const char *s, const char *what) {
        return s && strstr(s, what);
}

/* The part INFO and JSZ replies share: the JSON, the answering server, and
 * either "data" or an "error". NULL (with *why) when the reply is unusable. */
static json_t *account_reply_load(const char *data, size_t len, struct server_account_state *out,
                                  const json_t **d, const char **err, int64_t *code, char **why) {
        memset(out, 0, sizeof(*out));
        json_t *root = reply_load(data, len, OBSERVE_STATUS_REPLY_MAX, why);
        if (!root)
                return NULL;
        *code = 0;
        *d = json_object_get(root, "data");
        *err = reply_error(root, code);
        if (reply_server_id(root, NULL, out->server_id, why) < 0)
                goto fail;
        if (!json_is_object(*d) && !*err) {
                set_why(why, xstrdup("reply has neither \"data\" nor \"error\""));
                goto fail;
        }
        return root;
fail:
        json_decref(root);
        return NULL;
}

int observe_parse_info(const char *data, size_t len, struct server_account_state *out, char **why) {
        const json_t *d;
        const char *err;
        int64_t code;
        json_t *root = account_reply_load(data, len, out, &d, &err, &code, why);
        if (!root)
                return -EBADMSG;
        int ret = -EBADMSG;
        if (json_is_object(d)) {
                const json_t *complete = json_object_get(d, "complete"),
                             *js = json_object_get(d, "jetstream_enabled");
                if (!json_is_boolean(complete) || !json_is_boolean(js)) {
                        set_why(why, xasprintf("data.%s is missing or not a boolean",
                                               json_is_boolean(complete) ? "jetstream_enabled" : "complete"));
                        goto out;
                }
                /* Counted on this server only (2.9.10 and later): the account's total is their sum. */
                const json_t *conns = json_object_get(d, "client_connections"),
                             *leafs = json_object_get(d, "leafnode_connections");
                int64_t nc = 0, nl = 0;
                if ((conns && (!json_int64(conns, &nc) || nc < 0 || nc > INT32_MAX)) ||
                    (leafs && (!json_int64(leafs, &nl) || nl < 0 || nl > INT32_MAX))) {
                        set_why(why, xstrdup("data.client_connections or data.leafnode_connections is not a count"));
                        goto out;
                }
                out->connections = (int32_t)nc;
                out->leafnodes = (int32_t)nl;
                out->loaded = true;
                out->complete = json_is_true(complete);
                out->jetstream_enabled = json_is_true(js);
                int64_t iat = 0;
                if (json_int64(json_object_get(json_object_get(d, "decoded_jwt"), "iat"), &iat) && iat > 0)
                        out->update_time_iat = iat;
        } else if (err) {
                /* "Account A... does not exist": not loaded on this server (yet). */
                if (!contains(err, "does not exist"))
                        out->error = xasprintf("INFO error %lld: %s", (long long)code, err[0] ? err : "(none)");
        }
        ret = 0;
out:
        json_decref(root);
        return ret;
}

int observe_parse_jsz(const char *data, size_t len, struct server_account_state *out, char **why) {
        const json_t *d;
        const char *err;
        int64_t code;
        json_t *root = account_reply_load(data, len, out, &d, &err, &code, why);
        if (!root)
                return -EBADMSG;
        int ret = -EBADMSG;
        if (json_is_object(d)) {
                if (!json_int64(json_object_get(d, "memory"), &out->memory) ||
                    !json_int64(json_object_get(d, "storage"), &out->storage) || out->memory < 0 ||
                    out->storage < 0) {
                        set_why(why, xstrdup("data.memory or data.storage is missing or not a byte count"));
                        goto out;
                }
                out->have_usage = true;
                /* uint64 on the wire: -1 (unlimited) arrives as 2^64-1, read here as the clamped INT64_MAX. */
                int64_t rm, rs;
                if (json_int64(json_object_get(d, "reserved_memory"), &rm) &&
                    json_int64(json_object_get(d, "reserved_storage"), &rs) && rm >= 0 && rs >= 0) {
                        out->have_reserved = true;
                        out->reserved_memory = rm == INT64_MAX ? -1 : rm;
                        out->reserved_storage = rs == INT64_MAX ? -1 : rs;
                }
        } else if (err) {
                /* Not loaded here ("account ... not found") or JetStream off for
                 * the account or the server: no usage to report, not a fault. */
                if (!contains(err, "not found") && !contains(err, "not jetstream enabled") &&
                    !contains(err, "jetstream not enabled"))
                        out->error = xasprintf("JSZ error %lld: %s", (long long)code, err[0] ? err : "(none)");
        }
        ret = 0;
out:
        json_decref(root);
        return ret;
}

int observe_parse_connz(const char *data, size_t len, struct server_account_state *out, char **why) {
        const json_t *d;
        const char *err;
        int64_t code;
        json_t *root = account_reply_load(data, len, out, &d, &err, &code, why);
        if (!root)
                return -EBADMSG;
        int ret = -EBADMSG;
        if (json_is_object(d)) {
                const json_t *conns = json_object_get(d, "connections");
                if (conns && !json_is_array(conns) && !json_is_null(conns)) {
                        set_why(why, xstrdup("data.connections is not an array"));
                        goto out;
                }
                /* Sorted by subscriptions, most first: the first is the one asked for, but take the
                 * largest of whatever came rather than trust the order. */
                for (size_t i = 0; i < json_array_size(conns); i++) {
                        int64_t subs = 0;
                        if (!json_int64(json_object_get(json_array_get(conns, i), "subscriptions"), &subs) || subs < 0 ||
                            subs > INT32_MAX) {
                                set_why(why, xasprintf("data.connections[%zu].subscriptions is not a count", i));
                                goto out;
                        }
                        if (subs > out->max_subs)
                                out->max_subs = (int32_t)subs;
                }
                out->have_subs = true;
        } else if (err) {
                out->error = xasprintf("CONNZ error %lld: %s", (long long)code, err[0] ? err : "(none)");
        }
        ret = 0;
out:
        json_decref(root);
        return ret;
}

static int64_t add_bytes(int64_t a, int64_t b) {
        return b > INT64_MAX - a ? INT64_MAX : a + b;
}

int observe_parse_jsz_streams(const char *data, size_t len, struct server_account_state *out,
                              struct tier_usage *usage, char **why) {
        memset(usage, 0, sizeof(*usage));
        const json_t *d;
        const char *err;
        int64_t code;
        json_t *root = account_reply_load(data, len, out, &d, &err, &code, why);
        if (!root)
                return -EBADMSG;
        int ret = -EBADMSG;
        if (json_is_object(d)) {
                const json_t *streams = json_object_get(d, "stream_detail");
                if (streams && !json_is_array(streams) && !json_is_null(streams)) {
                        set_why(why, xstrdup("data.stream_detail is not an array"));
                        goto out;
                }
                for (size_t i = 0; i < json_array_size(streams); i++) {
                        const json_t *st = json_array_get(streams, i), *cfg = json_object_get(st, "config");
                        const char *storage = json_str(cfg, "storage");
                        int64_t replicas = 1, bytes = 0;
                        const json_t *r = json_object_get(cfg, "num_replicas");
                        if (!json_is_object(cfg) || !storage || (r && !json_int64(r, &replicas)) ||
                            !json_int64(json_object_get(json_object_get(st, "state"), "bytes"), &bytes) || bytes < 0 ||
                            (strcmp(storage, "memory") != 0 && strcmp(storage, "file") != 0)) {
                                set_why(why, xasprintf("data.stream_detail[%zu] lacks config.storage, "
                                                       "config.num_replicas or state.bytes",
                                                       i));
                                goto out;
                        }
                        /* 0 is the default, 1; a count outside R1..R5 belongs to no tier we manage. */
                        if (replicas == 0)
                                replicas = 1;
                        if (replicas < 1 || replicas > JS_TIERS)
                                continue;
                        int64_t *sum = storage[0] == 'm' ? &usage->memory[replicas - 1]
                                                         : &usage->storage[replicas - 1];
                        *sum = add_bytes(*sum, bytes);
                }
                out->have_tier_usage = true;
        } else if (err) {
                /* Not loaded here, or JetStream off for it: no streams here. */
                if (contains(err, "not found") || contains(err, "not jetstream enabled") ||
                    contains(err, "jetstream not enabled"))
                        out->have_tier_usage = true;
                else
                        out->error = xasprintf("JSZ error %lld: %s", (long long)code, err[0] ? err : "(none)");
        }
        ret = 0;
out:
        json_decref(root);
        return ret;
}

void update_reply_clear(struct update_reply *r) {
        if (!r)
                return;
        free(r->server_name);
        free(r->error);
        memset(r, 0, sizeof(*r));
}

int observe_parse_update_reply(const char *data, size_t len, struct update_reply *out, char **why) {
        memset(out, 0, sizeof(*out));
        json_t *root = reply_load(data, len, OBSERVE_UPDATE_REPLY_MAX, why);
        if (!root)
                return -EBADMSG;
        int ret = -EBADMSG;
        if (reply_server_id(root, NULL, out->server_id, why) < 0)
                goto out;
        const json_t *d = json_object_get(root, "data"), *e = json_object_get(root, "error");
        const json_t *body = json_is_object(d) ? d : e;
        if (!json_is_object(body) || (json_is_object(d) && json_is_object(e))) {
                set_why(why, xstrdup("reply has not exactly one of \"data\" and \"error\""));
                goto out;
        }
        const char *account = json_str(body, "account");
        if (account && !str_eq(account, "n/a")) {
                if (strlen(account) != NKEY_PUBLIC_LEN || !account_key_shape(account)) {
                        set_why(why, xasprintf("account \"%.60s\" is not an account public key", account));
                        goto out;
                }
                memcpy(out->account, account, NKEY_PUBLIC_LEN + 1);
        }
        int64_t code = 0;
        bool have_code = json_int64(json_object_get(body, "code"), &code);
        if (body == d) {
                if (!have_code || code != 200 || !out->account[0]) {
                        set_why(why, xasprintf("data has code %lld and account %s, not 200 and the account",
                                               (long long)code, out->account[0] ? out->account : "(none)"));
                        goto out;
                }
                out->ok = true;
        } else {
                const char *desc = json_str(e, "description");
                out->error = xasprintf("%s%s(code %lld)", desc && desc[0] ? desc : "", desc && desc[0] ? " " : "",
                                       (long long)code);
        }
        const char *name = json_str(json_object_get(root, "server"), "name");
        out->server_name = name ? xstrndup(name, 256) : NULL;
        ret = 0;
out:
        json_decref(root);
        if (ret < 0)
                update_reply_clear(out);
        return ret;
}

static int cmp_key(const void *a, const void *b) {
        return strcmp(a, b);
}

int observe_parse_accountz(const char *data, size_t len, struct loaded_accounts *out, char **why) {
        memset(out, 0, sizeof(*out));
        json_t *root = reply_load(data, len, OBSERVE_REPLY_MAX, why);
        if (!root)
                return -EBADMSG;
        int ret = -EBADMSG;
        const json_t *d = json_object_get(root, "data");
        int64_t code = 0;
        const char *err = reply_error(root, &code);
        if (!json_is_object(d)) {
                set_why(why, err ? xasprintf("error %lld: %s", (long long)code, err)
                                 : xstrdup("reply has no \"data\" object"));
                goto out;
        }
        if (reply_server_id(root, json_str(d, "server_id"), out->server_id, why) < 0)
                goto out;
        const json_t *list = json_object_get(d, "accounts");
        if (list && !json_is_array(list)) {
                set_why(why, xstrdup("data.accounts is not an array"));
                goto out;
        }
        out->keys = xcalloc(json_array_size(list) + 1, sizeof(*out->keys));
        size_t i;
        const json_t *v;
        json_array_foreach(list, i, v) {
                const char *key = json_string_value(v);
                if (!key) {
                        set_why(why, xstrdup("data.accounts holds something other than a string"));
                        goto out;
                }
                if (strlen(key) == NKEY_PUBLIC_LEN && account_key_shape(key))
                        memcpy(out->keys[out->n++], key, NKEY_PUBLIC_LEN + 1);
        }
        qsort(out->keys, out->n, sizeof(*out->keys), cmp_key);
        ret = 0;
out:
        json_decref(root);
        if (ret < 0)
                loaded_accounts_clear(out);
        return ret;
}

bool loaded_accounts_has(const struct loaded_accounts *l, const char *key) {
        return l->n && bsearch(key, l->keys, l->n, sizeof(*l->keys), cmp_key) != NULL;
}

void loaded_accounts_clear(struct loaded_accounts *l) {
        if (!l)
                return;
        free(l->keys);
        memset(l, 0, sizeof(*l));
}

/* ---- the observed set ---- */

/* Of two JWTs for one key: a trusted one before an untrusted one, then the newer. */
static bool account_preferred(const struct observed_account *a, const struct observed_account *than) {
        if (!a->untrusted != !than->untrusted)
                return !a->untrusted;
        return a->iat > than->iat;
}

static int cmp_account_key(const void *a, const void *b) {
        return strcmp(((const struct observed_account *)a)->key, ((const struct observed_account *)b)->key);
}

static int cmp_name(const char *a, const char *b) {
        if (!a || !b)
                return (a != NULL) - (b != NULL);
        return strcmp(a, b);
}

static int cmp_by_name(const void *a, const void *b, void *ctx) {
        const struct observed_account *v = ctx;
        const struct observed_account *x = &v[*(const size_t *)a], *y = &v[*(const size_t *)b];
        int r = cmp_name(x->name, y->name);
        return r ? r : strcmp(x->key, y->key);
}

static void rebuild_by_name(struct observed *o) {
        free(o->by_name);
        o->by_name = xcalloc(o->n_accounts, sizeof(*o->by_name));
        for (size_t i = 0; i < o->n_accounts; i++)
                o->by_name[i] = i;
        if (o->n_accounts)
                qsort_r(o->by_name, o->n_accounts, sizeof(*o->by_name), cmp_by_name, o->accounts);
}

void observed_reindex(struct observed *o) {
        if (o->n_accounts)
                qsort(o->accounts, o->n_accounts, sizeof(*o->accounts), cmp_account_key);
        size_t w = 0;
        for (size_t r = 0; r < o->n_accounts; r++) {
                if (w > 0 && strcmp(o->accounts[w - 1].key, o->accounts[r].key) == 0) {
                        if (account_preferred(&o->accounts[r], &o->accounts[w - 1])) {
                                observed_account_clear(&o->accounts[w - 1]);
                                o->accounts[w - 1] = o->accounts[r];
                        } else {
                                observed_account_clear(&o->accounts[r]);
                        }
                        continue;
                }
                if (w != r)
                        o->accounts[w] = o->accounts[r];
                w++;
        }
        o->n_accounts = w;
        rebuild_by_name(o);
}

static struct observed_account *find_key_in(struct observed_account *v, size_t n, const char *key) {
        struct observed_account probe;
        if (!key || strlen(key) != NKEY_PUBLIC_LEN || !n)
                return NULL;
        memcpy(probe.key, key, NKEY_PUBLIC_LEN + 1);
        return bsearch(&probe, v, n, sizeof(*v), cmp_account_key);
}

struct observed_account *observed_find_key(const struct observed *o, const char *key) {
        return find_key_in(o->accounts, o->n_accounts, key);
}

void observed_merge(struct observed *o, struct observed_account *best, size_t n) {
        /* Looked up in the sorted accounts only: the ones appended below are
         * not in key order until the reindex, and a binary search over them
         * could miss a key that is there, and append past the room made. */
        size_t sorted = o->n_accounts, room = 0, added = 0, renamed = 0;
        for (size_t i = 0; i < n; i++)
                room += best[i].key[0] && !find_key_in(o->accounts, sorted, best[i].key);
        if (room)
                o->accounts = xreallocarray(o->accounts, o->n_accounts + room, sizeof(*o->accounts));
        for (size_t i = 0; i < n; i++) {
                if (!best[i].key[0])
                        continue;
                struct observed_account *cur = find_key_in(o->accounts, sorted, best[i].key);
                if (cur) {
                        renamed += cmp_name(cur->name, best[i].name) != 0;
                        /* The servers' state of the account stays: it is about the servers. */
                        free(cur->name);
                        free(cur->jwt);
                        cur->name = best[i].name;
                        cur->jwt = best[i].jwt;
                        cur->js = best[i].js;
                        cur->acct = best[i].acct;
                        cur->iat = best[i].iat;
                        cur->holders = best[i].holders;
                        free(cur->untrusted);
                        cur->untrusted = best[i].untrusted;
                        memcpy(cur->issuer, best[i].issuer, sizeof(cur->issuer));
                } else {
                        /* Room was made above: cur pointers stay valid in this loop. A
                         * key twice in best is appended twice; the reindex keeps one. */
                        o->accounts[o->n_accounts++] = best[i];
                        added++;
                }
                memset(&best[i], 0, sizeof(best[i]));
        }
        /* The indexes follow new accounts and changed names (re-sorting
         * 10,000 names costs more than the rest of an edit's pass). */
        if (added)
                observed_reindex(o);
        else if (renamed)
                rebuild_by_name(o);
        /* A damaged CLAIMS.PACK entry whose JWT another server sent whole is
         * an account like the others now: its name can be read, so it no
         * longer holds back the creates of names found nowhere (diff.c). */
        size_t kept = 0;
        for (size_t i = 0; i < o->n_damaged; i++) {
                const struct observed_account *a = observed_find_key(o, o->damaged[i].key);
                if (a && a->jwt) {
                        free(o->damaged[i].why);
                        continue;
                }
                o->damaged[kept++] = o->damaged[i];
        }
        o->n_damaged = kept;
}

size_t observed_find_name(const struct observed *o, const char *name, size_t *first) {
        size_t lo = 0, hi = o->n_accounts;
        *first = 0;
        if (!name)
                return 0;
        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                if (cmp_name(o->accounts[o->by_name[mid]].name, name) < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        size_t end = lo;
        while (end < o->n_accounts && cmp_name(o->accounts[o->by_name[end]].name, name) == 0)
                end++;
        *first = lo;
        return end - lo;
}

bool observed_key_trusted(const struct observed *o, const char *key, char **why) {
        if (why)
                *why = NULL;
        if (o->n_servers == 0) {
                set_why(why, xstrdup("no server reported which operator it trusts"));
                return false;
        }
        for (size_t i = 0; i < o->n_servers; i++) {
                const struct server_info *s = &o->servers[i];
                bool found = false;
                size_t listed = 0, need = 1;
                for (char **k = s->trusted_keys; k && *k; k++, listed++) {
                        need += strlen(*k) + 2;
                        if (key && strcmp(*k, key) == 0)
                                found = true;
                }
                if (found)
                        continue;
                if (!why)
                        return false;
                char *label = s->name ? xasprintf("%s (%s)", s->name, s->id) : xstrdup(s->id);
                if (listed == 0) {
                        *why = xasprintf("server %s trusts no operator (is it in operator mode?)", label);
                } else {
                        char *list = xmalloc(need), *p = list;
                        for (char **k = s->trusted_keys; *k; k++)
                                p += sprintf(p, "%s%s", p == list ? "" : ", ", *k);
                        *why = xasprintf("server %s does not trust %s; it trusts only %s (operator %s and its "
                                         "signing keys)",
                                         label, key ? key : "(none)", list, s->operator_key ? s->operator_key : "?");
                        free(list);
                }
                free(label);
                return false;
        }
        return true;
}

void observed_account_vet(const struct observed *o, struct observed_account *a, int64_t now) {
        if (a->untrusted)
                return;
        if (!observed_key_trusted(o, a->issuer, NULL))
                a->untrusted = xasprintf("its JWT is signed by %s, which is neither the operator nor one of its signing "
                                         "keys as the servers report them",
                                         a->issuer);
        else if (a->iat > now + OBSERVE_FUTURE_SKEW_SEC)
                a->untrusted = xasprintf("its JWT was issued %lld s in the future (iat %lld): the clock of this host or "
                                         "of whoever signed it is wrong",
                                         (long long)(a->iat - now), (long long)a->iat);
}

void observed_vet(struct observed *o, int64_t now) {
        for (size_t i = 0; i < o->n_accounts; i++)
                observed_account_vet(o, &o->accounts[i], now);
}

struct observed_account *observed_find_trusted_name(const struct observed *o, const char *name, size_t *n_trusted,
                                                    size_t *n_untrusted) {
        size_t first = 0, n = observed_find_name(o, name, &first);
        struct observed_account *found = NULL;
        *n_trusted = *n_untrusted = 0;
        for (size_t k = 0; k < n; k++) {
                struct observed_account *a = &o->accounts[o->by_name[first + k]];
                if (a->untrusted) {
                        (*n_untrusted)++;
                } else {
                        (*n_trusted)++;
                        found = a;
                }
        }
        return *n_trusted == 1 ? found : NULL;
}

void observed_free(struct observed *o) {
        if (!o)
                return;
        for (size_t i = 0; i < o->n_servers; i++)
                server_info_clear(&o->servers[i]);
        free(o->servers);
        for (size_t i = 0; i < o->n_accounts; i++)
                observed_account_clear(&o->accounts[i]);
        free(o->accounts);
        free(o->by_name);
        for (size_t i = 0; i < o->n_damaged; i++)
                free(o->damaged[i].why);
        free(o->damaged);
        free(o);
}

/* ---- talking to the servers ---- */

static int cmp_server_id(const void *a, const void *b) {
        return strcmp(((const struct server_info *)a)->id, ((const struct server_info *)b)->id);
}

/* The servers of the deployment, as they describe it themselves: whoever
 * answers STATSZ, and every server their routes lead to (by name, in their
 * cluster) and some server of every cluster their gateways lead to, until all
 * of those answered. How long a server takes to answer, behind a gateway or
 * not, changes nothing but the wait. */
struct topology {
        struct server_peers *v; /* the servers that answered, each once */
        size_t n;
};

static struct server_peers *topology_find(const struct topology *t, const char *cluster, const char *name) {
        for (size_t i = 0; i < t->n; i++)
                if ((!cluster || str_eq(t->v[i].cluster, cluster)) && (!name || strcmp(t->v[i].name, name) == 0))
                        return &t->v[i];
        return NULL;
}

/* true when every server named by those that answered has answered too; else
 * with missing, a list of what is still awaited (each once, at most 8). */
static bool topology_complete(const struct topology *t, char **missing) {
        enum { SHOWN_MAX = 8 };
        const char *shown[SHOWN_MAX]; /* the peers listed so far */
        size_t n_shown = 0;
        char *list = NULL;
        for (size_t i = 0; i < t->n; i++) {
                const struct server_peers *p = &t->v[i];
                for (size_t k = 0; k < p->n_routes + p->n_gateways; k++) {
                        bool route = k < p->n_routes;
                        const char *peer = route ? p->routes[k] : p->gateways[k - p->n_routes];
                        if (route ? topology_find(t, p->cluster, peer) != NULL : topology_find(t, peer, NULL) != NULL)
                                continue;
                        if (!missing)
                                return false;
                        bool dup = false;
                        for (size_t m = 0; m < n_shown && !dup; m++)
                                dup = strcmp(shown[m], peer) == 0;
                        if (dup || n_shown == SHOWN_MAX) {
                                if (!list)
                                        list = xstrdup("");
                                continue;
                        }
                        shown[n_shown++] = peer;
                        char *next = route ? xasprintf("%s%s%s (a route of %s)", list ? list : "", list ? ", " : "", peer,
                                                       p->name)
                                           : xasprintf("%s%sany server of cluster %s (a gateway of %s)", list ? list : "",
                                                       list ? ", " : "", peer, p->name);
                        free(list);
                        list = next;
                }
        }
        if (missing)
                *missing = list;
        return list == NULL;
}

static void topology_clear(struct topology *t) {
        for (size_t i = 0; i < t->n; i++)
                server_peers_clear(&t->v[i]);
        free(t->v);
        memset(t, 0, sizeof(*t));
}

static int statsz_reply(void *userdata, const char *data, size_t len, char **err) {
        struct topology *t = userdata;
        struct server_peers p;
        char *why = NULL;
        if (observe_parse_statsz(data, len, &p, &why) < 0) {
                *err = xasprintf("%s: reply %zu: %s", SUBJ_STATSZ, t->n + 1, why);
                free(why);
                return -EBADMSG;
        }
        bool seen = false;
        for (size_t i = 0; i < t->n && !seen; i++)
                seen = strcmp(t->v[i].server_id, p.server_id) == 0;
        if (seen || t->n >= PEERS_MAX) {
                server_peers_clear(&p); /* a server that answered twice is still one server */
        } else {
                t->v = xreallocarray(t->v, t->n + 1, sizeof(*t->v));
                t->v[t->n++] = p;
        }
        return topology_complete(t, NULL) ? 1 : 0;
}

struct varz_ctx {
        struct server_info *v;
        size_t n, cap;
};

static int varz_reply(void *userdata, const char *data, size_t len, char **err) {
        struct varz_ctx *x = userdata;
        if (x->n == x->cap) {
                x->cap = x->cap ? x->cap * 2 : 4;
                x->v = xreallocarray(x->v, x->cap, sizeof(*x->v));
        }
        char *why = NULL;
        if (observe_parse_varz(data, len, &x->v[x->n], &why) < 0) {
                *err = xasprintf("%s: reply %zu: %s", SUBJ_VARZ, x->n + 1, why);
                free(why);
                return -EBADMSG;
        }
        x->n++;
        return 0;
}

static int no_responders(int r, char *gerr, char **err) {
        if (r == -ENOENT) {
                *err = xasprintf("%s; are the credentials those of a system-account user?", gerr);
                free(gerr);
        } else {
                *err = gerr;
        }
        return r;
}

/* STATSZ: who the servers are. */
static int learn_topology(struct natsconn *c, struct topology *t, char **err) {
        uint64_t timeout = natsconn_request_timeout(c);
        struct natsconn_gather_opts go = { .timeout_usec = timeout, .on_reply = statsz_reply, .userdata = t };
        struct nats_reply *rep = NULL;
        size_t n = 0;
        char *gerr = NULL;
        int r = natsconn_gather_ex(c, SUBJ_STATSZ, NULL, 0, &go, &rep, &n, &gerr);
        natsconn_replies_free(rep, n);
        if (r < 0)
                return no_responders(r, gerr, err);
        free(gerr);
        char *missing = NULL;
        if (t->n == 0) {
                *err = xasprintf("no server answered %s at %s within %.1fs", SUBJ_STATSZ, natsconn_url(c),
                                 (double)timeout / 1e6);
                return -ETIMEDOUT;
        }
        if (!topology_complete(t, &missing)) {
                *err = xasprintf("%zu server%s answered %s within %.1fs, but not every server they are linked to: "
                                 "no reply from %s",
                                 t->n, t->n == 1 ? "" : "s", SUBJ_STATSZ, (double)timeout / 1e6, missing);
                free(missing);
                return -ETIMEDOUT;
        }
        return 0;
}

int observe_servers(struct natsconn *c, struct server_info **out, size_t *n_out, char **err) {
        *out = NULL;
        *n_out = 0;
        struct topology t = { 0 };
        int r = learn_topology(c, &t, err);
        if (r < 0) {
                topology_clear(&t);
                return r;
        }
        /* Then what each of them trusts (VARZ): one reply per server now known. */
        uint64_t timeout = natsconn_request_timeout(c);
        struct varz_ctx x = { 0 };
        struct natsconn_gather_opts go = { .want = t.n, .timeout_usec = timeout, .on_reply = varz_reply, .userdata = &x };
        struct nats_reply *rep = NULL;
        size_t n = 0;
        char *gerr = NULL;
        r = natsconn_gather_ex(c, SUBJ_VARZ, NULL, 0, &go, &rep, &n, &gerr);
        natsconn_replies_free(rep, n);
        if (r < 0 && r != -ETIMEDOUT)
                r = no_responders(r, gerr, err);
        else
                free(gerr);
        struct server_info *v = x.v;
        size_t w = 0;
        if (x.n)
                qsort(v, x.n, sizeof(*v), cmp_server_id);
        /* A server that answered twice is still one server. */
        for (size_t i = 0; i < x.n; i++) {
                if (w > 0 && strcmp(v[w - 1].id, v[i].id) == 0) {
                        server_info_clear(&v[i]);
                        continue;
                }
                v[w++] = v[i];
        }
        if (r == 0 || r == -ETIMEDOUT) {
                r = 0;
                for (size_t i = 0; i < t.n && r == 0; i++) {
                        bool found = false;
                        for (size_t k = 0; k < w && !found; k++)
                                found = strcmp(v[k].id, t.v[i].server_id) == 0;
                        if (!found) {
                                *err = xasprintf("server %s (%s) answered %s but not %s within %.1fs", t.v[i].name,
                                                 t.v[i].server_id, SUBJ_STATSZ, SUBJ_VARZ, (double)timeout / 1e6);
                                r = -ETIMEDOUT;
                        }
                }
        }
        topology_clear(&t);
        if (r < 0) {
                for (size_t i = 0; i < w; i++)
                        server_info_clear(&v[i]);
                free(v);
                return r;
        }
        /* Heartbeats of any other server from now on are news (a start, a join). */
        const char **ids = xcalloc(w ? w : 1, sizeof(*ids));
        for (size_t i = 0; i < w; i++)
                ids[i] = v[i].id;
        natsconn_servers_known(c, ids, w);
        free(ids);
        *out = v;
        *n_out = w;
        return 0;
}

/* Checking a signature costs about 0.1 ms, most of what reading 100,000 JWTs
 * costs: worker threads check them while the server is still streaming
 * CLAIMS.PACK, which the caller's thread parses. Job i is account i. */
struct verify_job {
        const char *jwt; /* the account's own copy: it does not move */
        size_t len;
        char issuer[NKEY_PUBLIC_LEN + 1];
        char *verdict; /* NULL: genuine */
        bool known;    /* found in the cache: not checked */
        uint8_t hash[JWT_CACHE_HASH_LEN]; /* with a cache */
};

struct pack_verifier {
        pthread_mutex_t lock;
        pthread_cond_t more;
        struct verify_job *jobs;
        size_t n, cap, next;
        bool closed, discard; /* discard: the stream failed or was stopped, skip what is left */
        pthread_t threads[PACK_VERIFY_THREADS];
        size_t n_threads;
        const struct jwt_cache *known; /* read only while the threads run */
};

/* The verdict on a JWT, unless its bytes are known good; with a cache, the
 * hash of its bytes in *hash. */
static char *vet_signature(const struct jwt_cache *known, const char *jwt, size_t len, const char *issuer,
                           uint8_t hash[JWT_CACHE_HASH_LEN], bool *hit) {
        *hit = false;
        if (known) {
                jwt_cache_hash(jwt, len, hash);
                if (jwt_cache_known(known, issuer, hash)) {
                        *hit = true;
                        return NULL;
                }
        }
        return verify_verdict(jwt, len, issuer);
}

static void *verifier_work(void *arg) {
        struct pack_verifier *v = arg;
        pthread_mutex_lock(&v->lock);
        for (;;) {
                while (v->next == v->n && !v->closed)
                        pthread_cond_wait(&v->more, &v->lock);
                if (v->next == v->n || v->discard)
                        break;
                size_t i = v->next++;
                struct verify_job job = v->jobs[i];
                pthread_mutex_unlock(&v->lock);
                bool hit;
                char *verdict = vet_signature(v->known, job.jwt, job.len, job.issuer, job.hash, &hit);
                pthread_mutex_lock(&v->lock);
                v->jobs[i].verdict = verdict;
                v->jobs[i].known = hit;
                memcpy(v->jobs[i].hash, job.hash, sizeof(job.hash));
        }
        pthread_mutex_unlock(&v->lock);
        return NULL;
}

static void verifier_start(struct pack_verifier *v, const struct jwt_cache *known) {
        memset(v, 0, sizeof(*v));
        v->known = known;
        pthread_mutex_init(&v->lock, NULL);
        pthread_cond_init(&v->more, NULL);
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        size_t want = cpus > PACK_VERIFY_THREADS ? PACK_VERIFY_THREADS : cpus > 0 ? (size_t)cpus : 1;
        while (v->n_threads < want && pthread_create(&v->threads[v->n_threads], NULL, verifier_work, v) == 0)
                v->n_threads++;
}

static void verifier_add(struct pack_verifier *v, const struct observed_account *a, size_t count) {
        pthread_mutex_lock(&v->lock);
        if (v->n + count > v->cap) {
                v->cap = v->n + count > v->cap * 2 ? v->n + count : v->cap * 2;
                v->jobs = xreallocarray(v->jobs, v->cap, sizeof(*v->jobs));
        }
        for (size_t k = 0; k < count; k++) {
                struct verify_job *j = &v->jobs[v->n++];
                j->jwt = a[k].jwt;
                j->len = strlen(a[k].jwt);
                memcpy(j->issuer, a[k].issuer, sizeof(j->issuer));
                j->verdict = NULL;
        }
        pthread_cond_broadcast(&v->more);
        pthread_mutex_unlock(&v->lock);
}

/* Every job done (the caller's thread helps with what is left), the threads
 * gone; with accounts, each gets its verdict. The jobs stay until
 * verifier_free. */
static void verifier_finish(struct pack_verifier *v, struct observed_account *accounts) {
        pthread_mutex_lock(&v->lock);
        v->closed = true;
        v->discard = !accounts;
        pthread_cond_broadcast(&v->more);
        pthread_mutex_unlock(&v->lock);
        verifier_work(v);
        for (size_t t = 0; t < v->n_threads; t++)
                pthread_join(v->threads[t], NULL);
        for (size_t i = 0; i < v->n; i++) {
                if (accounts)
                        accounts[i].untrusted = v->jobs[i].verdict;
                else
                        free(v->jobs[i].verdict);
                v->jobs[i].verdict = NULL;
        }
        pthread_mutex_destroy(&v->lock);
        pthread_cond_destroy(&v->more);
}

static void verifier_free(struct pack_verifier *v) {
        free(v->jobs);
        v->jobs = NULL;
}

static bool issuer_trusted(void *userdata, const char *issuer) {
        return observed_key_trusted(userdata, issuer, NULL);
}

/* The cache after a whole PACK (its accounts still in the jobs' order, vetted). */
static void pack_sweep_cache(struct observed *o, const struct pack_verifier *v) {
        struct jwt_cache_seen *seen = xcalloc(v->n ? v->n : 1, sizeof(*seen));
        for (size_t i = 0; i < v->n; i++) {
                const struct observed_account *a = &o->accounts[i];
                seen[i] = (struct jwt_cache_seen){ .issuer = a->issuer, .hash = v->jobs[i].hash,
                                                   .trusted = !a->untrusted };
                o->sigs_known += v->jobs[i].known;
                o->sigs_checked += !v->jobs[i].known;
        }
        jwt_cache_sweep(o->known, seen, v->n);
        free(seen);
}

struct pack_ctx {
        struct observed *o;
        size_t cap, msgs;
        struct pack_verifier verifier;
};

static int pack_reply(void *userdata, const char *data, size_t len, char **err) {
        struct pack_ctx *x = userdata;
        char *why = NULL;
        size_t first = x->o->n_accounts;
        x->msgs++;
        if (parse_pack_msg(data, len, &x->o->accounts, &x->o->n_accounts, &x->cap, &x->o->damaged, &x->o->n_damaged,
                           &why, false) < 0) {
                *err = xasprintf("%s: message %zu: %s", SUBJ_PACK, x->msgs, why);
                free(why);
                return -EBADMSG;
        }
        /* Only a whole message is handed over: a failing one is taken back above. */
        verifier_add(&x->verifier, &x->o->accounts[first], x->o->n_accounts - first);
        return 0;
}

uint64_t observe_pack_wait_usec(uint64_t request_timeout_usec, size_t expected_jwts) {
        uint64_t base = request_timeout_usec > PACK_WAIT_MIN_USEC ? request_timeout_usec : PACK_WAIT_MIN_USEC;
        if (base >= PACK_MAX_USEC)
                return PACK_MAX_USEC;
        uint64_t room = PACK_MAX_USEC - base;
        return base + (expected_jwts > room / PACK_WAIT_PER_JWT_USEC ? room
                                                                      : (uint64_t)expected_jwts * PACK_WAIT_PER_JWT_USEC);
}

static int observe_pack(struct natsconn *c, struct observed *o, size_t expected_jwts, char **err) {
        uint64_t timeout = natsconn_request_timeout(c);
        struct pack_ctx x = { .o = o };
        /* An empty body asks for everything: the resolver answers with its
         * whole store unless the body equals the hash of its store. The JWTs
         * are decoded as they arrive, while the server is still sending. */
        struct natsconn_gather_opts go = {
                .stop_on_empty = true,
                .timeout_usec = PACK_MAX_USEC,
                .first_usec = observe_pack_wait_usec(timeout, expected_jwts),
                .idle_usec = timeout > PACK_WAIT_MIN_USEC ? timeout : PACK_WAIT_MIN_USEC,
                .on_reply = pack_reply,
                .userdata = &x,
        };
        struct nats_reply *rep = NULL;
        size_t n = 0;
        char *gerr = NULL;
        uint64_t t0 = mono_usec();
        /* Entries of issuers the servers no longer trust are not used. */
        jwt_cache_trust(o->known, issuer_trusted, o);
        verifier_start(&x.verifier, o->known);
        int r = natsconn_gather_ex(c, SUBJ_PACK, NULL, 0, &go, &rep, &n, &gerr);
        verifier_finish(&x.verifier, r >= 0 ? o->accounts : NULL);
        o->pack_usec = mono_usec() - t0;
        natsconn_replies_free(rep, n);
        if (r == -ENOENT) {
                *err = xasprintf("%s; the servers need a full resolver (resolver: { type: full })", gerr);
                free(gerr);
                verifier_free(&x.verifier);
                return r;
        }
        if (r < 0) {
                *err = gerr;
                verifier_free(&x.verifier);
                return r;
        }
        free(gerr);
        observed_vet(o, (int64_t)time(NULL));
        if (o->known)
                pack_sweep_cache(o, &x.verifier);
        verifier_free(&x.verifier);
        observed_reindex(o);
        return 0;
}

int observe_all(struct natsconn *c, size_t expected_jwts, struct jwt_cache *known, struct observed **out,
                char **err) {
        *out = NULL;
        struct observed *o = xcalloc(1, sizeof(*o));
        o->known = known;
        int r = observe_servers(c, &o->servers, &o->n_servers, err);
        if (r >= 0)
                r = observe_pack(c, o, expected_jwts, err);
        if (r < 0) {
                observed_free(o);
                return r;
        }
        *out = o;
        return 0;
}

/* Subjects for a pipeline, in one allocation. */
static const char **account_subjects(struct observed_account *const *accts, const char *const *keys, size_t n,
                                     const char *const *suffixes, size_t n_suffixes, char **buf_out) {
        size_t total = n * n_suffixes;
        char *buf = xcalloc(total ? total : 1, ACCOUNT_SUBJ_MAX);
        const char **subjects = xcalloc(total ? total : 1, sizeof(*subjects));
        for (size_t s = 0; s < n_suffixes; s++)
                for (size_t i = 0; i < n; i++) {
                        char *p = buf + (s * n + i) * ACCOUNT_SUBJ_MAX;
                        /* Config-mode accounts have no key: the system API takes their name. */
                        const char *id = accts ? (accts[i]->key[0] ? accts[i]->key : accts[i]->name) : keys[i];
                        snprintf(p, ACCOUNT_SUBJ_MAX, SUBJ_ACCOUNT_FMT, id, suffixes[s]);
                        subjects[s * n + i] = p;
                }
        *buf_out = buf;
        return subjects;
}

struct bad_replies {
        size_t n;
        char *first;
};

static void bad_reply(struct bad_replies *b, const char *subject, char *why) {
        if (b->n++ == 0)
                b->first = xasprintf("%s: %s", subject, why);
        free(why);
}

static int bad_replies_result(struct bad_replies *b, const char *what, char **err) {
        if (b->n == 0)
                return 0;
        *err = xasprintf("%zu malformed %s replies ignored; first: %s", b->n, what, b->first);
        free(b->first);
        b->first = NULL;
        return -EBADMSG;
}

struct lookup_ctx {
        const struct observed *o;
        int64_t now;
        const char *const *keys;
        const char **subjects;
        struct observed_account *best; /* per key; key[0] == 0 until a reply */
        size_t *replies;               /* per key, empty ones included */
        size_t want;
        /* Per key, a digest of each JWT received (at most want): how many
         * servers hold the very JWT chosen. */
        uint8_t (*digests)[LOOKUP_DIGEST_LEN];
        struct bad_replies bad;
        size_t sigs_checked, sigs_known;
};

static void jwt_digest(const char *jwt, uint8_t out[LOOKUP_DIGEST_LEN]) {
        crypto_generichash(out, LOOKUP_DIGEST_LEN, (const unsigned char *)jwt, strlen(jwt), NULL, 0);
}

/* A LOOKUP reply carries no server identity (the raw JWT), so replies are
 * counted, not attributed: enough to stop waiting, and to see that fewer
 * servers than there are hold the JWT. */
static bool lookup_reply(void *userdata, size_t i, const char *data, size_t len) {
        struct lookup_ctx *x = userdata;
        x->replies[i]++;
        bool complete = x->replies[i] >= x->want;
        /* A server that does not hold the account answers with an empty
         * message from 2.9.17 on (2.9.10 stays silent): not malformed, just
         * not here. */
        if (len == 0)
                return complete;
        struct observed_account a;
        char *why = NULL;
        if (parse_account_jwt(x->keys[i], data, len, &a, &why, false) < 0) {
                bad_reply(&x->bad, x->subjects[i], why);
                return complete;
        }
        uint8_t hash[JWT_CACHE_HASH_LEN];
        bool hit;
        a.untrusted = vet_signature(x->o->known, a.jwt, len, a.issuer, hash, &hit);
        x->sigs_known += hit;
        x->sigs_checked += !hit;
        observed_account_vet(x->o, &a, x->now);
        size_t held = x->best[i].holders;
        if (held < x->want)
                jwt_digest(a.jwt, x->digests[i * x->want + held++]);
        /* Servers of a cluster may differ for a moment, or one may hold a
         * forgery: keep a trusted one, the newest. */
        if (!x->best[i].key[0] || account_preferred(&a, &x->best[i])) {
                observed_account_clear(&x->best[i]);
                x->best[i] = a;
        } else {
                observed_account_clear(&a);
        }
        x->best[i].holders = held;
        return complete;
}

/* The servers, among those that answered for key i, that hold the very JWT kept. */
static size_t lookup_holders(const struct lookup_ctx *x, size_t i) {
        uint8_t kept[LOOKUP_DIGEST_LEN];
        jwt_digest(x->best[i].jwt, kept);
        size_t n = 0;
        for (size_t k = 0; k < x->best[i].holders; k++)
                n += memcmp(x->digests[i * x->want + k], kept, LOOKUP_DIGEST_LEN) == 0;
        return n;
}

int observe_lookup(struct natsconn *c, struct observed *o, const char *const *keys, size_t n, char **err) {
        for (size_t i = 0; i < n; i++)
                if (nkey_public_type(keys[i]) != NKEY_ACCOUNT) {
                        *err = xasprintf("cannot look up \"%.60s\": not an account public key", keys[i]);
                        return -EINVAL;
                }
        if (n == 0)
                return 0;
        static const char *const suffix[] = { "CLAIMS.LOOKUP" };
        char *buf = NULL;
        struct lookup_ctx x = { .o = o, .now = (int64_t)time(NULL), .keys = keys, .want = o->n_servers ? o->n_servers : 1 };
        x.subjects = account_subjects(NULL, keys, n, suffix, 1, &buf);
        x.best = xcalloc(n, sizeof(*x.best));
        x.replies = xcalloc(n, sizeof(*x.replies));
        x.digests = xcalloc(n * x.want, sizeof(*x.digests));
        uint64_t timeout = natsconn_request_timeout(c);
        struct natsconn_pipeline p = {
                .n = n,
                .subjects = x.subjects,
                /* Every server holding the JWT answers; one that does not stays silent. */
                .want = o->n_servers ? o->n_servers : 1,
                .window = STATE_WINDOW,
                .timeout_usec = timeout < LOOKUP_TIMEOUT_USEC ? timeout : LOOKUP_TIMEOUT_USEC,
                .on_reply = lookup_reply,
                .userdata = &x,
        };
        jwt_cache_trust(o->known, issuer_trusted, o);
        int r = natsconn_pipeline_run(c, &p, err);
        o->sigs_checked += x.sigs_checked;
        o->sigs_known += x.sigs_known;
        if (r >= 0) {
                /* Trusted JWTs join the cache (for the next pass's LOOKUP or PACK). */
                for (size_t i = 0; jwt_cache_learns_verified(o->known) && i < n; i++) {
                        if (!x.best[i].key[0] || x.best[i].untrusted)
                                continue;
                        uint8_t hash[JWT_CACHE_HASH_LEN];
                        jwt_cache_hash(x.best[i].jwt, strlen(x.best[i].jwt), hash);
                        jwt_cache_add(o->known, x.best[i].issuer, hash, false);
                }
                for (size_t i = 0; i < n; i++)
                        if (x.best[i].key[0])
                                x.best[i].holders = lookup_holders(&x, i);
                observed_merge(o, x.best, n);
                r = bad_replies_result(&x.bad, "CLAIMS.LOOKUP", err);
        }
        for (size_t i = 0; i < n; i++)
                observed_account_clear(&x.best[i]);
        free(x.best);
        free(x.replies);
        free(x.digests);
        free(x.bad.first);
        free(x.subjects);
        free(buf);
        return r;
}

/* What one server said about one account, gathered before it is written
 * into observed_account.servers. */
struct state_slot {
        struct server_account_state st;
        bool info_seen, jsz_seen;
        char *info_error, *jsz_error;
};

struct state_acct {
        struct state_slot *v;
        size_t n;
};

struct state_ctx {
        size_t n;
        size_t n_servers; /* known ones: the first slots of each account */
        bool jsz_only;    /* every request is a JSZ */
        struct state_acct *accts;
        const char **subjects;
        struct bad_replies bad;
};

static struct state_slot *state_slot(struct state_acct *a, const char *server_id) {
        for (size_t i = 0; i < a->n; i++)
                if (strcmp(a->v[i].st.server_id, server_id) == 0)
                        return &a->v[i];
        /* A server that was not there at VARZ time (it joined since). */
        a->v = xreallocarray(a->v, a->n + 1, sizeof(*a->v));
        struct state_slot *s = &a->v[a->n++];
        memset(s, 0, sizeof(*s));
        memcpy(s->st.server_id, server_id, sizeof(s->st.server_id));
        return s;
}

/* Every known server answered this request (INFO or JSZ) of the account:
 * by server id, so a duplicate cannot stand in for a silent server. */
static bool state_complete(const struct state_ctx *x, const struct state_acct *a, bool jsz) {
        for (size_t s = 0; s < x->n_servers; s++)
                if (!(jsz ? a->v[s].jsz_seen : a->v[s].info_seen))
                        return false;
        return true;
}

static bool state_reply(void *userdata, size_t index, const char *data, size_t len) {
        struct state_ctx *x = userdata;
        bool jsz = x->jsz_only || index >= x->n;
        struct state_acct *a = &x->accts[index >= x->n ? index - x->n : index];
        struct server_account_state st;
        char *why = NULL;
        int r = jsz ? observe_parse_jsz(data, len, &st, &why) : observe_parse_info(data, len, &st, &why);
        if (r < 0) {
                bad_reply(&x->bad, x->subjects[index], why);
                return state_complete(x, a, jsz);
        }
        struct state_slot *s = state_slot(a, st.server_id);
        if (jsz) {
                s->jsz_seen = true;
                s->st.have_usage = st.have_usage;
                s->st.memory = st.memory;
                s->st.storage = st.storage;
                s->st.have_reserved = st.have_reserved;
                s->st.reserved_memory = st.reserved_memory;
                s->st.reserved_storage = st.reserved_storage;
                free(s->jsz_error);
                s->jsz_error = st.error;
        } else {
                s->info_seen = true;
                s->st.loaded = st.loaded;
                s->st.complete = st.complete;
                s->st.jetstream_enabled = st.jetstream_enabled;
                s->st.update_time_iat = st.update_time_iat;
                s->st.connections = st.connections;
                s->st.leafnodes = st.leafnodes;
                free(s->info_error);
                s->info_error = st.error;
        }
        return state_complete(x, a, jsz);
}

/* One server's JSZ answer goes into the account's entry for that server, which
 * INFO made (or a new one, for a server INFO did not hear from). */
static void usage_merge(struct observed_account *oa, const struct state_slot *slot) {
        struct server_account_state *st = NULL;
        for (size_t s = 0; s < oa->n_servers && !st; s++)
                if (strcmp(oa->servers[s].server_id, slot->st.server_id) == 0)
                        st = &oa->servers[s];
        if (!st) {
                oa->servers = xreallocarray(oa->servers, oa->n_servers + 1, sizeof(*oa->servers));
                st = &oa->servers[oa->n_servers++];
                memset(st, 0, sizeof(*st));
                memcpy(st->server_id, slot->st.server_id, sizeof(st->server_id));
        }
        st->have_usage = slot->st.have_usage;
        st->memory = slot->st.memory;
        st->storage = slot->st.storage;
        st->have_reserved = slot->st.have_reserved;
        st->reserved_memory = slot->st.reserved_memory;
        st->reserved_storage = slot->st.reserved_storage;
        if (slot->jsz_error) {
                char *e = st->error ? xasprintf("%s; %s", st->error, slot->jsz_error) : xstrdup(slot->jsz_error);
                free(st->error);
                st->error = e;
        }
}

/* INFO and/or JSZ of the accounts, pipelined. With INFO, each account's
 * servers[] is replaced; JSZ alone only adds usage to it. */
static int accounts_state_run(struct natsconn *c, struct observed *o, struct observed_account *const *accts, size_t n,
                              bool info, bool jsz, char **err) {
        if (n == 0)
                return 0;
        static const char *const both[] = { "INFO", "JSZ" }, *const jsz_only[] = { "JSZ" };
        const char *const *suffixes = info ? both : jsz_only;
        size_t n_suffixes = info && jsz ? 2 : 1;
        char *buf = NULL;
        struct state_ctx x = { .n = n, .n_servers = o->n_servers, .jsz_only = !info };
        x.subjects = account_subjects(accts, NULL, n, suffixes, n_suffixes, &buf);
        x.accts = xcalloc(n, sizeof(*x.accts));
        for (size_t i = 0; i < n; i++) {
                x.accts[i].v = xcalloc(o->n_servers ? o->n_servers : 1, sizeof(*x.accts[i].v));
                x.accts[i].n = o->n_servers;
                for (size_t s = 0; s < o->n_servers; s++)
                        memcpy(x.accts[i].v[s].st.server_id, o->servers[s].id, sizeof(o->servers[s].id));
        }
        uint64_t timeout = natsconn_request_timeout(c);
        struct natsconn_pipeline p = {
                .n = n * n_suffixes,
                .subjects = x.subjects,
                /* Every server answers INFO and JSZ, with an error where the account is not loaded. */
                .want = o->n_servers ? o->n_servers : 1,
                .window = STATE_WINDOW,
                .timeout_usec = timeout,
                .on_reply = state_reply,
                .userdata = &x,
                .give_up_after = STATE_GIVE_UP_AFTER,
        };
        int r = natsconn_pipeline_run(c, &p, err);
        for (size_t i = 0; i < n; i++) {
                struct state_acct *a = &x.accts[i];
                struct observed_account *oa = accts[i];
                if (r >= 0 && info) {
                        for (size_t s = 0; s < oa->n_servers; s++)
                                free(oa->servers[s].error);
                        free(oa->servers);
                        oa->servers = xcalloc(a->n ? a->n : 1, sizeof(*oa->servers));
                        oa->n_servers = a->n;
                }
                for (size_t s = 0; s < a->n; s++) {
                        struct state_slot *slot = &a->v[s];
                        if (r >= 0 && info) {
                                const char *info_err = slot->info_seen ? slot->info_error : "no reply to INFO";
                                struct server_account_state *st = &oa->servers[s];
                                *st = slot->st;
                                if (info_err && slot->jsz_error)
                                        st->error = xasprintf("%s; %s", info_err, slot->jsz_error);
                                else if (info_err || slot->jsz_error)
                                        st->error = xstrdup(info_err ? info_err : slot->jsz_error);
                        } else if (r >= 0 && slot->jsz_seen) {
                                usage_merge(oa, slot);
                        }
                        free(slot->info_error);
                        free(slot->jsz_error);
                }
                free(a->v);
        }
        if (r >= 0)
                r = bad_replies_result(&x.bad, info ? "INFO/JSZ" : "JSZ", err);
        free(x.bad.first);
        free(x.accts);
        free(x.subjects);
        free(buf);
        return r;
}

struct accountz_ctx {
        const struct observed *o;
        struct loaded_accounts *sets; /* o->servers' order */
        size_t got;
        bool bad;
};

static int accountz_reply(void *userdata, const char *data, size_t len, char **err) {
        struct accountz_ctx *x = userdata;
        struct loaded_accounts l;
        char *why = NULL;
        if (observe_parse_accountz(data, len, &l, &why) < 0) {
                free(why);
                x->bad = true;
                return 0;
        }
        for (size_t s = 0; s < x->o->n_servers; s++)
                if (strcmp(x->o->servers[s].id, l.server_id) == 0 && !x->sets[s].keys) {
                        x->sets[s] = l;
                        x->got++;
                        return x->got == x->o->n_servers ? 1 : 0;
                }
        loaded_accounts_clear(&l); /* a server not seen at VARZ time, or twice */
        return 0;
}

/* What every server of o has loaded, in o->servers' order; -1 when some
 * server did not say (the caller then asks INFO of every account). */
static int loaded_everywhere(struct natsconn *c, const struct observed *o, struct loaded_accounts **out) {
        struct accountz_ctx x = { .o = o, .sets = xcalloc(o->n_servers, sizeof(*x.sets)) };
        struct natsconn_gather_opts go = {
                .want = o->n_servers,
                .timeout_usec = natsconn_request_timeout(c),
                .on_reply = accountz_reply,
                .userdata = &x,
        };
        struct nats_reply *rep = NULL;
        size_t n = 0;
        char *err = NULL;
        int r = natsconn_gather_ex(c, SUBJ_ACCOUNTZ, NULL, 0, &go, &rep, &n, &err);
        natsconn_replies_free(rep, n);
        free(err);
        if (r < 0 || x.bad || x.got < o->n_servers) {
                for (size_t s = 0; s < o->n_servers; s++)
                        loaded_accounts_clear(&x.sets[s]);
                free(x.sets);
                return -1;
        }
        *out = x.sets;
        return 0;
}

/* What INFO (and JSZ) would have said of an account no server has loaded. */
static void set_not_loaded(const struct observed *o, struct observed_account *oa) {
        for (size_t s = 0; s < oa->n_servers; s++)
                free(oa->servers[s].error);
        free(oa->servers);
        oa->servers = xcalloc(o->n_servers, sizeof(*oa->servers));
        oa->n_servers = o->n_servers;
        for (size_t s = 0; s < o->n_servers; s++)
                memcpy(oa->servers[s].server_id, o->servers[s].id, sizeof(oa->servers[s].server_id));
}

int observe_accounts_state(struct natsconn *c, struct observed *o, struct observed_account *const *accts, size_t n,
                           bool want_usage, char **err) {
        struct loaded_accounts *sets = NULL;
        /* ACCOUNTZ lists keys; accounts without one (config mode) are all loaded anyway. */
        if (n <= ACCOUNTZ_ABOVE || !o->n_servers || !accts[0]->key[0] || loaded_everywhere(c, o, &sets) < 0)
                return accounts_state_run(c, o, accts, n, true, want_usage, err);
        struct observed_account **ask = xcalloc(n, sizeof(*ask));
        size_t k = 0;
        for (size_t i = 0; i < n; i++) {
                bool loaded = false;
                for (size_t s = 0; s < o->n_servers && !loaded; s++)
                        loaded = loaded_accounts_has(&sets[s], accts[i]->key);
                if (loaded)
                        ask[k++] = accts[i];
                else
                        set_not_loaded(o, accts[i]);
        }
        for (size_t s = 0; s < o->n_servers; s++)
                loaded_accounts_clear(&sets[s]);
        free(sets);
        int r = accounts_state_run(c, o, ask, k, true, want_usage, err);
        free(ask);
        return r;
}

int observe_accounts_usage(struct natsconn *c, struct observed *o, struct observed_account *const *accts, size_t n,
                           char **err) {
        return accounts_state_run(c, o, accts, n, false, true, err);
}

/* One more question to every server about accounts whose servers[] INFO
 * already filled (CONNZ, JSZ with streams): each answer is parsed, and merged
 * into the account as said by the server that sent it. */
struct ask_ctx {
        struct observed_account *const *accts;
        const char **subjects;
        /* usage is only for the JSZ with streams */
        int (*parse)(const char *data, size_t len, struct server_account_state *out, struct tier_usage *usage,
                     char **why);
        void (*reset)(struct observed_account *oa);
        void (*merge)(struct observed_account *oa, struct server_account_state *to,
                      const struct server_account_state *from, const struct tier_usage *usage);
        bool **answered; /* per request, per server of the account's servers[]: its answer came */
        size_t *answers; /* per request: servers answered, and replies that could not be read */
        struct bad_replies bad;
};

/* Each server of the account answers once: the request is complete when
 * every one did (a reply that cannot be read counts, unattributed). */
static bool ask_reply(void *userdata, size_t index, const char *data, size_t len) {
        struct ask_ctx *x = userdata;
        struct server_account_state st;
        struct tier_usage usage;
        char *why = NULL;
        struct observed_account *oa = x->accts[index];
        if (x->parse(data, len, &st, &usage, &why) < 0) {
                bad_reply(&x->bad, x->subjects[index], why);
                return ++x->answers[index] >= oa->n_servers;
        }
        /* An error (no such account there, no permission) leaves the answer unknown. */
        free(st.error);
        for (size_t s = 0; s < oa->n_servers; s++)
                if (strcmp(oa->servers[s].server_id, st.server_id) == 0) {
                        if (!x->answered[index][s]) {
                                x->answered[index][s] = true;
                                x->answers[index]++;
                                x->merge(oa, &oa->servers[s], &st, &usage);
                        }
                        break;
                }
        /* A server INFO did not hear from is not counted: the next pass asks it again. */
        return x->answers[index] >= oa->n_servers;
}

static int accounts_ask(struct natsconn *c, struct observed *o, struct observed_account *const *accts, size_t n,
                        const char *suffix, const char *payload, struct ask_ctx *x, char **err) {
        if (n == 0)
                return 0;
        char *buf = NULL;
        const char *const suffixes[] = { suffix };
        x->accts = accts;
        x->subjects = account_subjects(accts, NULL, n, suffixes, 1, &buf);
        const char **payloads = xcalloc(n, sizeof(*payloads));
        x->answered = xcalloc(n, sizeof(*x->answered));
        x->answers = xcalloc(n, sizeof(*x->answers));
        for (size_t i = 0; i < n; i++) {
                payloads[i] = payload;
                x->answered[i] = xcalloc(accts[i]->n_servers ? accts[i]->n_servers : 1, sizeof(**x->answered));
                x->reset(accts[i]); /* unknown until a server says */
        }
        struct natsconn_pipeline p = {
                .n = n,
                .subjects = x->subjects,
                .payloads = payloads,
                /* Every server answers, with nothing where the account is not loaded. */
                .want = o->n_servers ? o->n_servers : 1,
                .window = STATE_WINDOW,
                .timeout_usec = natsconn_request_timeout(c),
                .on_reply = ask_reply,
                .userdata = x,
                .give_up_after = STATE_GIVE_UP_AFTER,
        };
        int r = natsconn_pipeline_run(c, &p, err);
        if (r >= 0)
                r = bad_replies_result(&x->bad, suffix, err);
        for (size_t i = 0; i < n; i++)
                free(x->answered[i]);
        free(x->answered);
        free(x->answers);
        free(x->bad.first);
        free(payloads);
        free(x->subjects);
        free(buf);
        return r;
}

static int parse_connz(const char *data, size_t len, struct server_account_state *out, struct tier_usage *usage,
                       char **why) {
        (void)usage;
        return observe_parse_connz(data, len, out, why);
}

static void subs_reset(struct observed_account *oa) {
        for (size_t s = 0; s < oa->n_servers; s++) {
                oa->servers[s].have_subs = false;
                oa->servers[s].max_subs = 0;
        }
}

static void subs_merge(struct observed_account *oa, struct server_account_state *to,
                       const struct server_account_state *from, const struct tier_usage *usage) {
        (void)oa;
        (void)usage;
        to->have_subs = from->have_subs;
        to->max_subs = from->max_subs;
}

int observe_accounts_subs(struct natsconn *c, struct observed *o, struct observed_account *const *accts, size_t n,
                          char **err) {
        /* Only the connection with the most subscriptions: that is the one a lower
         * max_subscriptions (a limit per connection) closes first. */
        struct ask_ctx x = { .parse = parse_connz, .reset = subs_reset, .merge = subs_merge };
        return accounts_ask(c, o, accts, n, "CONNZ", "{\"sort\":\"subs\",\"limit\":1}", &x, err);
}

static void tier_usage_reset(struct observed_account *oa) {
        if (!oa->tier_usage)
                oa->tier_usage = xcalloc(1, sizeof(*oa->tier_usage));
        memset(oa->tier_usage, 0, sizeof(*oa->tier_usage));
        for (size_t s = 0; s < oa->n_servers; s++)
                oa->servers[s].have_tier_usage = false;
}

static void tier_usage_merge(struct observed_account *oa, struct server_account_state *to,
                             const struct server_account_state *from, const struct tier_usage *usage) {
        /* Once per server, should one answer twice. */
        if (to->have_tier_usage || !from->have_tier_usage)
                return;
        to->have_tier_usage = true;
        for (int t = 0; t < JS_TIERS; t++) {
                oa->tier_usage->memory[t] = add_bytes(oa->tier_usage->memory[t], usage->memory[t]);
                oa->tier_usage->storage[t] = add_bytes(oa->tier_usage->storage[t], usage->storage[t]);
        }
}

int observe_accounts_tier_usage(struct natsconn *c, struct observed *o, struct observed_account *const *accts,
                                size_t n, char **err) {
        struct ask_ctx x = { .parse = observe_parse_jsz_streams, .reset = tier_usage_reset, .merge = tier_usage_merge };
        return accounts_ask(c, o, accts, n, "JSZ", "{\"streams\":true,\"config\":true}", &x, err);
}

bool observed_account_js_loaded(const struct observed_account *a) {
        for (size_t s = 0; s < a->n_servers; s++)
                if (a->servers[s].loaded && a->servers[s].jetstream_enabled)
                        return true;
        return false;
}
