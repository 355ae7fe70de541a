#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "nkeys.h"

/* From the nkeys README. */
static const char vector_seed[] = "SUAKYRHVIOREXV7EUZTBHUHL7NUMHPMAS7QMDU3GTIUWEI5LDNOXD43IZY";
static const char vector_pub[] = "UD466L6EBCM3YY5HEGHJANNTN4LSKTSUXTH7RILHCKEQMQHTBNLHJJXT";
static const char vector_sig[] =
        "0CK1XmkxNfUGfudxliWTWeoETgIo23m9qowS9yTfYFSrjR8HgAW63jQ3NxPU_jG38hZPW61IZSun37N690CkDg";

static void test_vector(void **state) {
        struct nkey k;
        const char *why = NULL;
        const char msg[] = "Hello World!\n";
        uint8_t sig[64];
        char b64[sodium_base64_ENCODED_LEN(64, sodium_base64_VARIANT_URLSAFE_NO_PADDING)];

        assert_int_equal(nkey_from_seed(vector_seed, &k, &why), 0);
        assert_int_equal(k.type, NKEY_USER);
        assert_string_equal(k.pub, vector_pub);
        nkey_sign(&k, msg, strlen(msg), sig);
        sodium_bin2base64(b64, sizeof(b64), sig, sizeof(sig), sodium_base64_VARIANT_URLSAFE_NO_PADDING);
        assert_string_equal(b64, vector_sig);
        assert_true(nkey_verify(vector_pub, msg, strlen(msg), sig));
        assert_false(nkey_verify(vector_pub, msg, strlen(msg) - 1, sig));
        sig[0] ^= 1;
        assert_false(nkey_verify(vector_pub, msg, strlen(msg), sig));
        nkey_wipe(&k);
}

static void test_seed_round_trip(void **state) {
        struct nkey k, again;
        char seed[NKEY_SEED_LEN + 1];

        assert_int_equal(nkey_from_seed(vector_seed, &k, NULL), 0);
        nkey_seed_encode(&k, seed);
        assert_string_equal(seed, vector_seed);
        assert_int_equal(nkey_from_seed(seed, &again, NULL), 0);
        assert_memory_equal(again.sk, k.sk, sizeof(k.sk));
        assert_string_equal(again.pub, k.pub);
        nkey_wipe(&k);
        nkey_wipe(&again);
}

static void test_seed_errors(void **state) {
        struct nkey k;
        const char *why = NULL;
        char bad[NKEY_SEED_LEN + 1];

        assert_int_equal(nkey_from_seed(vector_seed + 1, &k, &why), -EINVAL);
        assert_string_equal(why, "expected 58 characters, got 57");
        assert_int_equal(nkey_from_seed("", &k, &why), -EINVAL);
        assert_string_equal(why, "expected 58 characters, got 0");

        memcpy(bad, vector_seed, sizeof(bad));
        bad[20] = bad[20] == 'A' ? 'B' : 'A';
        assert_int_equal(nkey_from_seed(bad, &k, &why), -EBADMSG);
        assert_string_equal(why, "checksum mismatch");

        memcpy(bad, vector_seed, sizeof(bad));
        bad[20] = 'a';
        assert_int_equal(nkey_from_seed(bad, &k, &why), -EINVAL);
        assert_string_equal(why, "not base32");

        /* A public key is never a seed, whatever its length. */
        assert_int_equal(nkey_from_seed(vector_pub, &k, &why), -EINVAL);
}

static void test_generate_each_type(void **state) {
        static const enum nkey_type types[] = {
                NKEY_OPERATOR, NKEY_ACCOUNT, NKEY_USER, NKEY_SERVER, NKEY_CLUSTER,
        };
        static const char letters[] = "OAUNC";
        const char msg[] = "nats-accountd";

        for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
                struct nkey k, back;
                char seed[NKEY_SEED_LEN + 1];
                uint8_t sig[64], raw[32];
                const char *why = NULL;

                nkey_generate(types[i], &k);
                assert_int_equal(strlen(k.pub), NKEY_PUBLIC_LEN);
                assert_int_equal(k.pub[0], letters[i]);
                assert_int_equal(nkey_public_type(k.pub), (int)types[i]);
                assert_int_equal(nkey_public_decode(k.pub, types[i], raw, &why), 0);
                assert_memory_equal(raw, k.pk, 32);

                nkey_seed_encode(&k, seed);
                assert_int_equal(seed[0], 'S');
                assert_int_equal(seed[1], letters[i]);
                assert_int_equal(nkey_from_seed(seed, &back, &why), 0);
                assert_int_equal(back.type, types[i]);
                assert_string_equal(back.pub, k.pub);

                nkey_sign(&k, msg, sizeof(msg), sig);
                assert_true(nkey_verify(k.pub, msg, sizeof(msg), sig));
                assert_true(nkey_verify(back.pub, msg, sizeof(msg), sig));
                assert_false(nkey_verify(seed, msg, sizeof(msg), sig));

                nkey_wipe(&k);
                nkey_wipe(&back);
                sodium_memzero(seed, sizeof(seed));
                uint8_t zero[32] = { 0 };
                assert_memory_equal(k.seed, zero, 32);
        }
}

static void test_base32(void **state) {
        /* RFC 4648 section 10, without the padding. */
        static const struct {
                const char *plain, *encoded;
        } v[] = {
                { "", "" },
                { "f", "MY" },
                { "fo", "MZXQ" },
                { "foo", "MZXW6" },
                { "foob", "MZXW6YQ" },
                { "fooba", "MZXW6YTB" },
                { "foobar", "MZXW6YTBOI" },
        };
        char out[32];
        uint8_t back[32];

        for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
                size_t len = strlen(v[i].plain);
                assert_int_equal(nkey_base32_encode((const uint8_t *)v[i].plain, len, out),
                                 strlen(v[i].encoded));
                assert_string_equal(out, v[i].encoded);
                assert_int_equal(nkey_base32_decode(out, strlen(out), back, sizeof(back)), (int)len);
                assert_memory_equal(back, v[i].plain, len);
        }

        uint8_t all[256];
        char enc[256 * 8 / 5 + 2];
        uint8_t dec[256];
        for (size_t i = 0; i < sizeof(all); i++)
                all[i] = (uint8_t)(255 - i);
        size_t n = nkey_base32_encode(all, sizeof(all), enc);
        assert_int_equal(nkey_base32_decode(enc, n, dec, sizeof(dec)), 256);
        assert_memory_equal(dec, all, sizeof(all));

        assert_int_equal(nkey_base32_decode("MZXW6===", 8, back, sizeof(back)), -1);
        assert_int_equal(nkey_base32_decode("mzxw6", 5, back, sizeof(back)), -1);
        assert_int_equal(nkey_base32_decode("MZ1W6", 5, back, sizeof(back)), -1);
        /* 1, 3 or 6 trailing characters cannot come from any input. */
        assert_int_equal(nkey_base32_decode("M", 1, back, sizeof(back)), -1);
        assert_int_equal(nkey_base32_decode("MZX", 3, back, sizeof(back)), -1);
        assert_int_equal(nkey_base32_decode("MZXW6Y", 6, back, sizeof(back)), -1);
        /* Output bounded by cap. */
        assert_int_equal(nkey_base32_decode("MZXW6YTBOI", 10, back, 5), -1);
        assert_int_equal(nkey_base32_decode("MZXW6YTBOI", 10, back, 6), 6);
}

static void test_crc16(void **state) {
        /* The CRC-16/XMODEM check value. */
        assert_int_equal(nkey_crc16((const uint8_t *)"123456789", 9), 0x31c3);
        assert_int_equal(nkey_crc16(NULL, 0), 0);
}

static void test_public_errors(void **state) {
        char bad[200];
        const char *why = NULL;
        uint8_t raw[32];

        assert_int_equal(nkey_public_decode(vector_pub, NKEY_USER, raw, &why), 0);

        /* Every single-character change is caught by the CRC. */
        for (size_t i = 0; i < NKEY_PUBLIC_LEN; i++) {
                memcpy(bad, vector_pub, sizeof(vector_pub));
                bad[i] = bad[i] == 'Q' ? 'R' : 'Q';
                why = NULL;
                assert_int_equal(nkey_public_decode(bad, NKEY_USER, raw, &why), -EBADMSG);
                assert_string_equal(why, "checksum mismatch");
        }

        memcpy(bad, vector_pub, sizeof(vector_pub));
        bad[NKEY_PUBLIC_LEN - 1] = '\0';
        assert_int_equal(nkey_public_decode(bad, NKEY_USER, raw, &why), -EINVAL);
        assert_string_equal(why, "expected 56 characters, got 55");
        assert_int_equal(nkey_public_decode("", NKEY_USER, raw, &why), -EINVAL);
        assert_string_equal(why, "expected 56 characters, got 0");
        assert_int_equal(nkey_public_decode(NULL, NKEY_USER, raw, &why), -EINVAL);
        memset(bad, 'A', 150);
        bad[150] = '\0';
        assert_int_equal(nkey_public_decode(bad, NKEY_USER, raw, &why), -EINVAL);
        assert_string_equal(why, "expected 56 characters, got more than 99");

        for (size_t i = 0; i < NKEY_PUBLIC_LEN; i++)
                bad[i] = (char)(vector_pub[i] >= 'A' && vector_pub[i] <= 'Z' ? vector_pub[i] + 32 : vector_pub[i]);
        bad[NKEY_PUBLIC_LEN] = '\0';
        assert_int_equal(nkey_public_decode(bad, NKEY_USER, raw, &why), -EINVAL);
        assert_string_equal(why, "not base32");
        assert_int_equal(nkey_public_type(bad), -1);

        assert_int_equal(nkey_public_decode(vector_pub, NKEY_ACCOUNT, raw, &why), -EPROTOTYPE);
        assert_string_equal(why, "this is a user key, not an account key");

        struct nkey op;
        nkey_generate(NKEY_OPERATOR, &op);
        assert_int_equal(nkey_public_decode(op.pub, NKEY_ACCOUNT, NULL, &why), -EPROTOTYPE);
        assert_string_equal(why, "this is an operator key, not an account key");
        nkey_wipe(&op);

        assert_int_equal(nkey_public_decode(vector_seed, NKEY_ACCOUNT, raw, &why), -EPROTOTYPE);
        assert_string_equal(why, "this is a seed, not an account key");
        assert_int_equal(nkey_public_type(vector_seed), -1);

        /* A well-formed key with a prefix that is no public type (a seed's first byte). */
        uint8_t rawkey[35] = { 18 << 3 };
        uint16_t crc = nkey_crc16(rawkey, 33);
        rawkey[33] = (uint8_t)crc;
        rawkey[34] = (uint8_t)(crc >> 8);
        nkey_base32_encode(rawkey, sizeof(rawkey), bad);
        assert_int_equal(nkey_public_decode(bad, NKEY_USER, raw, &why), -EINVAL);
        assert_int_equal(nkey_public_type(bad), -1);

        /* why may be NULL. */
        assert_int_equal(nkey_public_decode(vector_pub, NKEY_ACCOUNT, NULL, NULL), -EPROTOTYPE);
}

/* A signing key replaced on reload: the new one is in place, the old one and
 * the copy it came from are wiped. */
static void test_move_wipes_both_sides(void **state) {
        struct nkey old, fresh, keep;
        nkey_generate(NKEY_OPERATOR, &old);
        nkey_generate(NKEY_OPERATOR, &fresh);
        keep = fresh;
        nkey_move(&old, &fresh);
        assert_memory_equal(old.seed, keep.seed, sizeof(keep.seed));
        assert_memory_equal(old.sk, keep.sk, sizeof(keep.sk));
        assert_string_equal(old.pub, keep.pub);
        static const uint8_t zero[64];
        assert_memory_equal(fresh.seed, zero, sizeof(fresh.seed));
        assert_memory_equal(fresh.sk, zero, sizeof(fresh.sk));
        uint8_t sig[64];
        nkey_sign(&old, "x", 1, sig);
        assert_true(nkey_verify(keep.pub, "x", 1, sig));
        nkey_wipe(&old);
        nkey_wipe(&keep);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_vector),
                cmocka_unit_test(test_seed_round_trip),
                cmocka_unit_test(test_seed_errors),
                cmocka_unit_test(test_generate_each_type),
                cmocka_unit_test(test_base32),
                cmocka_unit_test(test_crc16),
                cmocka_unit_test(test_public_errors),
                cmocka_unit_test(test_move_wipes_both_sides),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
