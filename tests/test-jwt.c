#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>
#include <sodium.h>

#include "jwt.h"
#include "nkeys.h"
#include "util.h"

#define B64 sodium_base64_VARIANT_URLSAFE_NO_PADDING

/* Account JWTs made by nats-io/jwt v2 (Go), test data of TestJetstreamLimitsDeEnCode
 * in nats-io/jwt v2/account_claims_test.go: JetStream disabled, then enabled. */
static const char go_account_jwt[] =
        "eyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ."
        "eyJqdGkiOiI3V0NYQkZKS0lIN1Y0SkdPR0FVTEtTS05aQUxVTUZMVExZWVgyNTdDSzZORk5OWTdGRVdBIiwiaWF0Ijox"
        "NjQ0Mjc5NDY3LCJpc3MiOiJPQk5UUVJFSEVJUFJFVE1BVlBWUVVDSUdFUktHWkIzRVJBVjVTNUdNM0lPRVFOSFJFQkpP"
        "VUFSRiIsIm5hbWUiOiJ0ZXN0Iiwic3ViIjoiQUM2SFFJMlVBTVVQREVQN1dTWVFZV1JDTEVZQkxZVlNQTDZBSExDVVBK"
        "VEdVMzJUNEtRQktZU0ciLCJuYXRzIjp7ImxpbWl0cyI6eyJzdWJzIjotMSwiZGF0YSI6LTEsInBheWxvYWQiOi0xLCJp"
        "bXBvcnRzIjotMSwiZXhwb3J0cyI6LTEsIndpbGRjYXJkcyI6dHJ1ZSwiY29ubiI6LTEsImxlYWYiOi0xfSwiZGVmYXVs"
        "dF9wZXJtaXNzaW9ucyI6eyJwdWIiOnt9LCJzdWIiOnt9fSwidHlwZSI6ImFjY291bnQiLCJ2ZXJzaW9uIjoyfX0."
        "73vDu9osNeLKwQ-g1Uu1fAtszMNz_QRZXRJLp0kzZh-0eMBmt0nb2mMwBwg-fufJs1FqYe9WbWKeXAYStnVnBg";
static const char go_account_js_jwt[] =
        "eyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ."
        "eyJqdGkiOiJPVFFXVEQyVkFMWkRQQTZYU1hLS09GRVFZR1VaVFBDNEtKV1BYMlAyWU1XMjVTMzRTVjNRIiwiaWF0Ijox"
        "NjQ0Mjc5MzM0LCJpc3MiOiJPQk5UUVJFSEVJUFJFVE1BVlBWUVVDSUdFUktHWkIzRVJBVjVTNUdNM0lPRVFOSFJFQkpP"
        "VUFSRiIsIm5hbWUiOiJ0ZXN0Iiwic3ViIjoiQUM2SFFJMlVBTVVQREVQN1dTWVFZV1JDTEVZQkxZVlNQTDZBSExDVVBK"
        "VEdVMzJUNEtRQktZU0ciLCJuYXRzIjp7ImxpbWl0cyI6eyJzdWJzIjotMSwiZGF0YSI6LTEsInBheWxvYWQiOi0xLCJp"
        "bXBvcnRzIjotMSwiZXhwb3J0cyI6LTEsIndpbGRjYXJkcyI6dHJ1ZSwiY29ubiI6LTEsImxlYWYiOi0xLCJkaXNrX3N0"
        "b3JhZ2UiOjEwMDAwMDB9LCJkZWZhdWx0X3Blcm1pc3Npb25zIjp7InB1YiI6e30sInN1YiI6e319LCJ0eXBlIjoiYWNj"
        "b3VudCIsInZlcnNpb24iOjJ9fQ."
        "Xt5azhxOkC7nywz9Q8xVtzX8lZIqdOhpfGyQI30aNdd-nbVGX2O13OOfouIaTLyajZiS4bcJFXa29q6QCFRUDA";
static const char go_operator[] = "OBNTQREHEIPRETMAVPVQUCIGERKGZB3ERAV5S5GM3IOEQNHREBJOUARF";
static const char go_account[] = "AC6HQI2UAMUPDEP7WSYQYWRCLEYBLYVSPL6AHLCUPJTGU32T4KQBKYSG";

static char *hex(const uint8_t *p, size_t n) {
        char *s = xmalloc(n * 2 + 1);
        return sodium_bin2hex(s, n * 2 + 1, p, n);
}

static void test_sha512_256(void **state) {
        /* FIPS 180-4 examples (SHA512_256.pdf) and the empty message. */
        static const struct {
                const char *msg, *digest;
        } v[] = {
                { "abc", "53048e2681941ef99b2e29b76b4c7dabe4c2d0c634fc6d46e0e2f13107e7af23" },
                { "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu",
                  "3928e184fb8690f840da3988121d31be65cb9d3ef83ee6146feac861e19b563a" },
                { "", "c672b8d1ef56ed28ab87c3622c5114069bdd3ad7b8f9737498d0c01ecef0967a" },
        };
        for (size_t i = 0; i < ARRAY_SIZE(v); i++) {
                uint8_t d[32];
                jwt_sha512_256(v[i].msg, strlen(v[i].msg), d);
                char *h = hex(d, sizeof(d));
                assert_string_equal(h, v[i].digest);
                free(h);
        }
}

/* Base64url-decode one part of a token into a NUL-terminated string. */
static char *part_text(const char *jwt, int index) {
        const char *b = jwt;
        for (int i = 0; i < index; i++)
                b = strchr(b, '.') + 1;
        const char *e = strchr(b, '.');
        size_t len = e ? (size_t)(e - b) : strlen(b);
        char *out = xmalloc(len + 1);
        size_t n;
        assert_int_equal(sodium_base642bin((unsigned char *)out, len, b, len, NULL, &n, NULL, B64), 0);
        out[n] = '\0';
        return out;
}

static char *replace_all(const char *s, const char *from, const char *to) {
        char *out = xstrdup("");
        const char *p;
        while ((p = strstr(s, from))) {
                char *next = xasprintf("%s%.*s%s", out, (int)(p - s), s, to);
                free(out);
                out = next;
                s = p + strlen(from);
        }
        char *next = xasprintf("%s%s", out, s);
        free(out);
        return next;
}

static void test_go_jti(void **state) {
        const char *tokens[] = { go_account_jwt, go_account_js_jwt };
        for (size_t i = 0; i < ARRAY_SIZE(tokens); i++) {
                json_t *claims = NULL;
                char *err = NULL;

                /* Decoding also checks our ed25519 verification against Go's signature. */
                assert_int_equal(jwt_decode(tokens[i], &claims, &err), 0);
                assert_null(err);
                assert_string_equal(json_string_value(json_object_get(claims, "iss")), go_operator);
                char *id = jwt_claims_id(claims);
                assert_non_null(id);
                assert_int_equal(strlen(id), 52);
                assert_string_equal(id, json_string_value(json_object_get(claims, "jti")));
                free(id);
                json_decref(claims);
        }
}

/* Our account claims, signed, have the same payload bytes as Go's apart from
 * the issuer and so the jti. */
static void test_go_layout(void **state) {
        struct nkey op;
        json_t *claims = jwt_account_claims_new(go_account, "test");

        nkey_generate(NKEY_OPERATOR, &op);
        char *jwt = jwt_encode_at(claims, &op, 1644279467);
        assert_non_null(jwt);
        char *ours = part_text(jwt, 1);
        char *go = part_text(go_account_jwt, 1);
        char *go_iss = replace_all(go, go_operator, op.pub);
        char *expected = replace_all(go_iss, "7WCXBFJKIH7V4JGOGAULKSKNZALUMFLTLYYX257CK6NFNNY7FEWA",
                                     json_string_value(json_object_get(claims, "jti")));
        assert_string_equal(ours, expected);

        /* And with Go's issuer the jti is Go's. */
        json_object_set_new(claims, "iss", json_string(go_operator));
        char *id = jwt_claims_id(claims);
        assert_string_equal(id, "7WCXBFJKIH7V4JGOGAULKSKNZALUMFLTLYYX257CK6NFNNY7FEWA");

        free(id);
        free(expected);
        free(go_iss);
        free(go);
        free(ours);
        free(jwt);
        json_decref(claims);
        nkey_wipe(&op);
}

static void test_go_escaping(void **state) {
        /* Go's encoding/json: HTML-safe escapes, \u2028, lowercase hex, \b. */
        json_t *claims = json_pack("{s:s,s:s}", "name", "a<b>&\"\\\n\xe2\x80\xa8\x01\b", "sub", "X");
        char *id = jwt_claims_id(claims);
        /* sha512/256 of {"name":"a\u003cb\u003e\u0026\"\\\n\u2028\u0001\b","sub":"X"} */
        assert_string_equal(id, "IPEBMVRDAFRNRRKTTN3WC42GBF4QJR753JBHU5F7GFRWMY3MUSRQ");
        free(id);

        /* omitempty: empty strings, zero numbers and null are left out. */
        json_t *sparse = json_pack("{s:s,s:I,s:n,s:s,s:s}", "aud", "", "exp", (json_int_t)0, "nbf",
                                   "jti", "ignored", "sub", "X");
        json_t *plain = json_pack("{s:s}", "sub", "X");
        char *a = jwt_claims_id(sparse), *b = jwt_claims_id(plain);
        assert_string_equal(a, b);
        free(a);
        free(b);

        json_object_set_new(plain, "exp", json_string("tomorrow"));
        assert_null(jwt_claims_id(plain));
        json_decref(plain);
        json_decref(sparse);
        json_decref(claims);
}

static void test_round_trip(void **state) {
        struct nkey op, acc;
        json_t *back = NULL;
        char *err = NULL;

        nkey_generate(NKEY_OPERATOR, &op);
        nkey_generate(NKEY_ACCOUNT, &acc);
        json_t *claims = jwt_account_claims_new(acc.pub, "app");
        char *jwt = jwt_encode(claims, &op);
        assert_non_null(jwt);
        assert_true(strncmp(jwt, "eyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ.", 47) == 0);

        assert_int_equal(jwt_decode(jwt, &back, &err), 0);
        assert_null(err);
        assert_true(json_equal(back, claims));
        assert_string_equal(json_string_value(json_object_get(back, "iss")), op.pub);
        assert_true(json_integer_value(json_object_get(back, "iat")) > 1600000000);
        json_t *limits = json_object_get(json_object_get(back, "nats"), "limits");
        assert_int_equal(json_integer_value(json_object_get(limits, "conn")), -1);
        assert_true(json_is_true(json_object_get(limits, "wildcards")));
        assert_null(json_object_get(limits, "mem_storage"));
        char *id = jwt_claims_id(back);
        assert_string_equal(id, json_string_value(json_object_get(back, "jti")));
        free(id);

        /* Re-signing claims that carry an old jti and iat replaces both. */
        char *again = jwt_encode_at(back, &op, 2000000000);
        json_t *back2 = NULL;
        assert_int_equal(jwt_decode(again, &back2, NULL), 0);
        assert_int_equal(json_integer_value(json_object_get(back2, "iat")), 2000000000);
        assert_string_not_equal(json_string_value(json_object_get(back2, "jti")),
                                json_string_value(json_object_get(claims, "jti")));

        /* Ed25519 is deterministic: same claims, key and iat give the same token. */
        char *same = jwt_encode_at(back2, &op, 2000000000);
        assert_string_equal(same, again);

        free(same);
        free(again);
        json_decref(back2);
        json_decref(back);
        json_decref(claims);
        free(jwt);
        nkey_wipe(&op);
        nkey_wipe(&acc);
}

static void test_encode_refuses(void **state) {
        struct nkey op;
        nkey_generate(NKEY_OPERATOR, &op);

        json_t *no_sub = json_pack("{s:s}", "name", "x");
        assert_null(jwt_encode(no_sub, &op));
        assert_null(json_object_get(no_sub, "iss"));
        json_t *bad_exp = json_pack("{s:s,s:s}", "sub", go_account, "exp", "soon");
        assert_null(jwt_encode(bad_exp, &op));
        assert_null(json_object_get(bad_exp, "iss"));
        json_t *arr = json_array();
        assert_null(jwt_encode(arr, &op));

        json_decref(arr);
        json_decref(bad_exp);
        json_decref(no_sub);
        nkey_wipe(&op);
}

/* header.payload signed by k, with the given header JSON. */
static char *sign_raw(const char *header, const char *payload, const struct nkey *k) {
        char h[256], p[1024], s[128];
        uint8_t sig[64];
        sodium_bin2base64(h, sizeof(h), (const unsigned char *)header, strlen(header), B64);
        sodium_bin2base64(p, sizeof(p), (const unsigned char *)payload, strlen(payload), B64);
        char *signed_part = xasprintf("%s.%s", h, p);
        nkey_sign(k, signed_part, strlen(signed_part), sig);
        sodium_bin2base64(s, sizeof(s), sig, sizeof(sig), B64);
        char *jwt = xasprintf("%s.%s", signed_part, s);
        free(signed_part);
        return jwt;
}

static void expect_error(const char *jwt, int code, const char *msg) {
        json_t *claims = (json_t *)1;
        char *err = NULL;
        assert_int_equal(jwt_decode(jwt, &claims, &err), code);
        assert_null(claims);
        assert_non_null(err);
        assert_string_equal(err, msg);
        free(err);
}

static void test_tampered(void **state) {
        struct nkey op, other;
        nkey_generate(NKEY_OPERATOR, &op);
        nkey_generate(NKEY_OPERATOR, &other);
        char *payload = xasprintf("{\"iss\":\"%s\",\"sub\":\"%s\",\"name\":\"a\"}", op.pub, go_account);
        char *good = sign_raw("{\"typ\":\"JWT\",\"alg\":\"ed25519-nkey\"}", payload, &op);
        json_t *claims = NULL;
        assert_int_equal(jwt_decode(good, &claims, NULL), 0);
        json_decref(claims);

        /* Same header and signature, payload changed. */
        char *changed = xasprintf("{\"iss\":\"%s\",\"sub\":\"%s\",\"name\":\"b\"}", op.pub, go_account);
        char *forged_src = sign_raw("{\"typ\":\"JWT\",\"alg\":\"ed25519-nkey\"}", changed, &op);
        const char *good_sig = strrchr(good, '.');
        *strrchr(forged_src, '.') = '\0';
        char *forged = xasprintf("%s%s", forged_src, good_sig);
        expect_error(forged, -EBADMSG, "JWT signature does not match its issuer");

        /* Signed by another key than iss names. */
        char *wrong_key = sign_raw("{\"typ\":\"JWT\",\"alg\":\"ed25519-nkey\"}", payload, &other);
        expect_error(wrong_key, -EBADMSG, "JWT signature does not match its issuer");

        /* A flipped signature character. */
        char *flipped = xstrdup(good);
        char *c = strrchr(flipped, '.') + 5;
        *c = *c == 'A' ? 'B' : 'A';
        expect_error(flipped, -EBADMSG, "JWT signature does not match its issuer");

        /* Tampered Go token. */
        char *go = xstrdup(go_account_jwt);
        c = strchr(go, '.') + 30;
        *c = *c == 'A' ? 'B' : 'A';
        json_t *ignored = NULL;
        assert_int_not_equal(jwt_decode(go, &ignored, NULL), 0);
        assert_null(ignored);

        free(go);
        free(flipped);
        free(wrong_key);
        free(forged);
        free(forged_src);
        free(changed);
        free(good);
        free(payload);
        nkey_wipe(&op);
        nkey_wipe(&other);
}

static void test_header_checks(void **state) {
        struct nkey op;
        nkey_generate(NKEY_OPERATOR, &op);
        char *payload = xasprintf("{\"iss\":\"%s\",\"sub\":\"%s\"}", op.pub, go_account);
        char *jwt;

        jwt = sign_raw("{\"typ\":\"JWT\",\"alg\":\"HS256\"}", payload, &op);
        expect_error(jwt, -EPROTONOSUPPORT, "JWT header alg is not \"ed25519-nkey\"");
        free(jwt);
        jwt = sign_raw("{\"typ\":\"JWT\",\"alg\":\"ed25519\"}", payload, &op);
        expect_error(jwt, -EPROTONOSUPPORT, "JWT v1 (alg ed25519) is not supported, only v2");
        free(jwt);
        jwt = sign_raw("{\"typ\":\"JWT\"}", payload, &op);
        expect_error(jwt, -EPROTONOSUPPORT, "JWT header alg is not \"ed25519-nkey\"");
        free(jwt);
        jwt = sign_raw("{\"typ\":\"JWS\",\"alg\":\"ed25519-nkey\"}", payload, &op);
        expect_error(jwt, -EPROTONOSUPPORT, "JWT header typ is not \"JWT\"");
        free(jwt);
        jwt = sign_raw("[\"JWT\"]", payload, &op);
        expect_error(jwt, -EINVAL, "JWT header is not a JSON object");
        free(jwt);
        jwt = sign_raw("{\"typ\":\"JWT\",\"typ\":\"JWT\",\"alg\":\"ed25519-nkey\"}", payload, &op);
        expect_error(jwt, -EINVAL, "JWT header is not a JSON object");
        free(jwt);

        /* Case-insensitive, as nats-io/jwt. */
        jwt = sign_raw("{\"typ\":\"jwt\",\"alg\":\"ED25519-NKEY\"}", payload, &op);
        json_t *claims = NULL;
        assert_int_equal(jwt_decode(jwt, &claims, NULL), 0);
        json_decref(claims);
        free(jwt);

        free(payload);
        nkey_wipe(&op);
}

/* jwt_verify: the same header and signature checks on a token whose claims
 * the caller reads itself (observe's PACK and LOOKUP replies), no NUL needed. */
static void test_verify(void **state) {
        struct nkey op, other;
        nkey_generate(NKEY_OPERATOR, &op);
        nkey_generate(NKEY_OPERATOR, &other);
        char *payload = xasprintf("{\"iss\":\"%s\",\"sub\":\"%s\"}", op.pub, go_account);
        char *good = sign_raw("{\"typ\":\"JWT\",\"alg\":\"ed25519-nkey\"}", payload, &op);
        if (!good)
                abort();
        char *err = NULL;
        assert_int_equal(jwt_verify(good, strlen(good), op.pub, &err), 0);
        assert_null(err);
        /* Within a longer buffer: only len bytes count. */
        char *line = xasprintf("%s|trailing", good);
        assert_int_equal(jwt_verify(line, strlen(good), op.pub, NULL), 0);
        assert_int_equal(jwt_verify(line, strlen(line), op.pub, NULL), -EINVAL);
        assert_int_equal(jwt_verify(good, strlen(good), other.pub, &err), -EBADMSG);
        assert_string_equal(err, "JWT signature does not match its issuer");
        free(err);
        assert_int_equal(jwt_verify(good, strlen(good), "not-a-key", &err), -EINVAL);
        free(err);
        assert_int_equal(jwt_verify(good, strlen(good), NULL, NULL), -EINVAL);
        char *v1 = sign_raw("{\"typ\":\"JWT\",\"alg\":\"ed25519\"}", payload, &op);
        assert_int_equal(jwt_verify(v1, strlen(v1), op.pub, &err), -EPROTONOSUPPORT);
        free(err);
        assert_int_equal(jwt_verify("a.b", 3, op.pub, NULL), -EINVAL);
        assert_int_equal(jwt_verify(go_account_jwt, strlen(go_account_jwt), "OAAAA", NULL), -EINVAL);
        free(v1);
        free(line);
        free(good);
        free(payload);
        nkey_wipe(&op);
        nkey_wipe(&other);
}

static void test_garbage(void **state) {
        struct nkey op;
        nkey_generate(NKEY_OPERATOR, &op);
        const char *h = "{\"typ\":\"JWT\",\"alg\":\"ed25519-nkey\"}";
        char *jwt;

        expect_error(NULL, -EINVAL, "no JWT");
        expect_error("", -EINVAL, "not a JWT: expected three parts separated by '.'");
        expect_error("secret-looking-garbage", -EINVAL, "not a JWT: expected three parts separated by '.'");
        expect_error("a.b", -EINVAL, "not a JWT: expected three parts separated by '.'");
        expect_error("a.b.c.d", -EINVAL, "not a JWT: expected three parts separated by '.'");
        expect_error("..", -EINVAL, "JWT header is not a JSON object");
        expect_error("!!.b.c", -EINVAL, "JWT header is not base64url");
        expect_error("eyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ==.b.c", -EINVAL,
                     "JWT header is not base64url");
        expect_error("eyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ.!.c", -EINVAL,
                     "JWT payload is not base64url");
        expect_error("eyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ.e30.c", -EINVAL,
                     "JWT iss is missing or not a public nkey");

        jwt = sign_raw(h, "not json", &op);
        expect_error(jwt, -EINVAL, "JWT payload is not a JSON object");
        free(jwt);
        jwt = sign_raw(h, "[1]", &op);
        expect_error(jwt, -EINVAL, "JWT payload is not a JSON object");
        free(jwt);
        jwt = sign_raw(h, "{\"iss\":\"SUAKYRHVIOREXV7EUZTBHUHL7NUMHPMAS7QMDU3GTIUWEI5LDNOXD43IZY\"}", &op);
        expect_error(jwt, -EINVAL, "JWT iss is missing or not a public nkey");
        free(jwt);

        /* Signature of the wrong length. */
        jwt = sign_raw(h, "{}", &op);
        char *p = xasprintf("{\"iss\":\"%s\"}", op.pub);
        free(jwt);
        jwt = sign_raw(h, p, &op);
        char *short_sig = xstrdup(jwt);
        short_sig[strlen(short_sig) - 4] = '\0';
        expect_error(short_sig, -EINVAL, "JWT signature is not 64 bytes of base64url");
        free(short_sig);
        free(jwt);
        free(p);

        /* Bounded input. */
        char *big = xmalloc(JWT_MAX_LEN + 2);
        memset(big, 'A', JWT_MAX_LEN + 1);
        big[JWT_MAX_LEN + 1] = '\0';
        expect_error(big, -EMSGSIZE, "JWT longer than 1 MiB");
        free(big);

        nkey_wipe(&op);
}

static void test_user_claims(void **state) {
        json_t *u = jwt_user_claims_new("UD466L6EBCM3YY5HEGHJANNTN4LSKTSUXTH7RILHCKEQMQHTBNLHJJXT", "svc", NULL);
        char *text = json_dumps(u, JSON_COMPACT);
        /* The layout nsc writes for a plain user. */
        assert_string_equal(text, "{\"name\":\"svc\",\"sub\":\"UD466L6EBCM3YY5HEGHJANNTN4LSKTSUXTH7RILHCKEQMQHTBNLHJJXT\","
                                  "\"nats\":{\"pub\":{},\"sub\":{},\"subs\":-1,\"data\":-1,\"payload\":-1,"
                                  "\"type\":\"user\",\"version\":2}}");
        free(text);
        json_decref(u);

        u = jwt_user_claims_new("UD466L6EBCM3YY5HEGHJANNTN4LSKTSUXTH7RILHCKEQMQHTBNLHJJXT", NULL, go_account);
        assert_null(json_object_get(u, "name"));
        assert_string_equal(json_string_value(json_object_get(json_object_get(u, "nats"), "issuer_account")),
                            go_account);
        json_decref(u);
}

static void test_operator_claims(void **state) {
        struct nkey op, sk;
        nkey_generate(NKEY_OPERATOR, &op);
        nkey_generate(NKEY_OPERATOR, &sk);
        const char *keys[] = { sk.pub };

        json_t *o = jwt_operator_claims_new(op.pub, "OP", keys, 1, go_account);
        char *jwt = jwt_encode(o, &op);
        json_t *back = NULL;
        assert_int_equal(jwt_decode(jwt, &back, NULL), 0);
        json_t *nats = json_object_get(back, "nats");
        assert_string_equal(json_string_value(json_array_get(json_object_get(nats, "signing_keys"), 0)), sk.pub);
        assert_string_equal(json_string_value(json_object_get(nats, "system_account")), go_account);
        assert_string_equal(json_string_value(json_object_get(nats, "type")), "operator");
        assert_int_equal(json_integer_value(json_object_get(nats, "version")), 2);
        assert_string_equal(json_string_value(json_object_get(back, "iss")),
                            json_string_value(json_object_get(back, "sub")));
        json_decref(back);
        json_decref(o);
        free(jwt);

        o = jwt_operator_claims_new(op.pub, NULL, NULL, 0, NULL);
        char *text = json_dumps(o, JSON_COMPACT);
        char *expected = xasprintf("{\"sub\":\"%s\",\"nats\":{\"type\":\"operator\",\"version\":2}}", op.pub);
        assert_string_equal(text, expected);
        free(expected);
        free(text);
        json_decref(o);
        nkey_wipe(&op);
        nkey_wipe(&sk);
}

static void test_creds(void **state) {
        const char *seed = "SUAKYRHVIOREXV7EUZTBHUHL7NUMHPMAS7QMDU3GTIUWEI5LDNOXD43IZY";
        char *c = creds_format("eyJhbGc.eyJzdWIi.c2ln", seed);
        assert_string_equal(c,
                "-----BEGIN NATS USER JWT-----\n"
                "eyJhbGc.eyJzdWIi.c2ln\n"
                "------END NATS USER JWT------\n"
                "\n"
                "************************* IMPORTANT *************************\n"
                "NKEY Seed printed below can be used to sign and prove identity.\n"
                "NKEYs are sensitive and should be treated as secrets.\n"
                "\n"
                "-----BEGIN USER NKEY SEED-----\n"
                "SUAKYRHVIOREXV7EUZTBHUHL7NUMHPMAS7QMDU3GTIUWEI5LDNOXD43IZY\n"
                "------END USER NKEY SEED------\n"
                "\n"
                "*************************************************************\n");
        creds_free(c);
        creds_free(NULL);

        assert_null(creds_format("a.b.c", "SAAKYRHVIOREXV7EUZTBHUHL7NUMHPMAS7QMDU3GTIUWEI5LDNOXD43IZY"));
        assert_null(creds_format("a.b.c", ""));
        assert_null(creds_format("", seed));
        assert_null(creds_format("a.b.c\n", seed));
        assert_null(creds_format(NULL, seed));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_sha512_256),
                cmocka_unit_test(test_go_jti),
                cmocka_unit_test(test_go_layout),
                cmocka_unit_test(test_go_escaping),
                cmocka_unit_test(test_round_trip),
                cmocka_unit_test(test_encode_refuses),
                cmocka_unit_test(test_tampered),
                cmocka_unit_test(test_header_checks),
                cmocka_unit_test(test_verify),
                cmocka_unit_test(test_garbage),
                cmocka_unit_test(test_user_claims),
                cmocka_unit_test(test_operator_claims),
                cmocka_unit_test(test_creds),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
