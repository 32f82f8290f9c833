/* Key and namespace validation: what the daemon and the client refuse, and
 * the reason each caller sees. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "key.h"

static const char *check_key(const char *s)
{
    return hc_name_invalid("key", s, strlen(s));
}

START_TEST(test_sglang_keys_valid)
{
    /* 64 hex characters of a page hash, plus the suffixes SGLang appends */
    const char *hex = "3f2a9c0d1e4b5a6978c0d1e2f3a4b5c6d7e8f90112233445566778899aabbccd";
    char buf[HC_MAX_KEY + 1];

    ck_assert_uint_eq(strlen(hex), 64);
    ck_assert_ptr_null(check_key(hex));
    snprintf(buf, sizeof(buf), "%s_k", hex);
    ck_assert_ptr_null(check_key(buf));
    snprintf(buf, sizeof(buf), "%s-tp3-pp0.v", hex);
    ck_assert_ptr_null(check_key(buf));
    ck_assert_ptr_null(check_key("a"));
    ck_assert_ptr_null(check_key(".hidden"));
    ck_assert_str_eq(check_key("a..b"), "key contains '..'");
    ck_assert_str_eq(check_key("..."), "key contains '..'");
    ck_assert_ptr_null(check_key("a.b.c"));
    ck_assert_ptr_null(hc_name_invalid("namespace", "Llama-3.1-8B_bf16_page_first_64",
                                       strlen("Llama-3.1-8B_bf16_page_first_64")));
}
END_TEST

START_TEST(test_length_limit)
{
    char buf[HC_MAX_KEY + 2];

    memset(buf, 'a', sizeof(buf));
    ck_assert_ptr_null(hc_name_invalid("key", buf, HC_MAX_KEY));
    ck_assert_str_eq(hc_name_invalid("key", buf, HC_MAX_KEY + 1),
                     "key is longer than 256 characters");
    ck_assert_str_eq(hc_name_invalid("namespace", buf, HC_MAX_NS + 1),
                     "namespace is longer than 256 characters");
    ck_assert_str_eq(hc_name_invalid("key", buf, 0), "key is empty");
    ck_assert_str_eq(hc_name_invalid("key", NULL, 0), "key is empty");
}
END_TEST

/* Each refused key with the exact reason (len given explicitly so NUL bytes
 * count). */
static const struct {
    const char *s;
    size_t len;
    const char *reason;
} bad[] = {
    {"", 0, "key is empty"},
    {"abc/def", 7, "key contains '/'"},
    {"/", 1, "key contains '/'"},
    {"../etc", 6, "key contains '/'"},
    {"..", 2, "key contains '..'"},
    {".", 1, "key is '.'"},
    {"ab\0cd", 5, "key contains a NUL byte"},
    {"abc\0", 4, "key contains a NUL byte"},
    {"ab cd", 5, "key contains a space"},
    {"ab\tcd", 5, "key contains a control character (tab, newline, ...)"},
    {"ab\ncd", 5, "key contains a control character (tab, newline, ...)"},
    {"ab\x7f", 3, "key contains a control character (tab, newline, ...)"},
    {"caf\xc3\xa9", 5, "key contains a non-ASCII byte"},
    {"\xff", 1, "key contains a non-ASCII byte"},
    {"a:b", 3, "key contains a character outside [A-Za-z0-9_.-]"},
    {"a*b", 3, "key contains a character outside [A-Za-z0-9_.-]"},
    {"a\\b", 3, "key contains a character outside [A-Za-z0-9_.-]"},
};

START_TEST(test_refused_with_reason)
{
    const char *r = hc_name_invalid("key", bad[_i].s, bad[_i].len);

    ck_assert_msg(r != NULL, "case %d accepted", _i);
    ck_assert_str_eq(r, bad[_i].reason);
}
END_TEST

START_TEST(test_len_bounds_the_check)
{
    /* only s[0..len) is looked at: a valid prefix of a bad string is valid */
    ck_assert_ptr_null(hc_name_invalid("key", "abc/def", 3));
    ck_assert_ptr_null(hc_name_invalid("key", "abc\0def", 3));
    ck_assert_str_eq(hc_name_invalid("key", "abc\0def", 7), "key contains a NUL byte");
}
END_TEST

/* The rule written the slow, obvious way: what hc_name_invalid must agree
 * with on every string (it checks 16 bytes at a time where it can). */
static int reference_valid(const char *s, size_t len)
{
    size_t i;

    if (len == 0 || len > HC_MAX_KEY || (len == 1 && s[0] == '.'))
        return 0;
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-' || c == '.'))
            return 0;
        if (i > 0 && c == '.' && s[i - 1] == '.')
            return 0;
    }
    return 1;
}

START_TEST(test_agrees_with_reference)
{
    /* Mostly valid bytes, with dots, and now and then one byte from all 256:
     * lengths across the 16-byte steps, the bad byte or the ".." anywhere
     * (also across a step boundary). */
    const char ok[] = "abcxyzABCXYZ0189_-.";
    unsigned seed = 12345, valid = 0, refused = 0;
    char buf[HC_MAX_KEY + 8];

    for (int round = 0; round < 200000; round++) {
        size_t len = (size_t)(rand_r(&seed) % (HC_MAX_KEY + 3));

        for (size_t i = 0; i < len; i++)
            buf[i] = ok[rand_r(&seed) % (sizeof(ok) - 1)];
        if (len > 0 && rand_r(&seed) % 4 == 0)
            buf[rand_r(&seed) % len] = (char)(rand_r(&seed) % 256);
        if (reference_valid(buf, len)) {
            valid++;
            ck_assert_msg(hc_name_invalid("key", buf, len) == NULL, "valid key of %zu refused",
                          len);
        } else {
            refused++;
            ck_assert_msg(hc_name_invalid("key", buf, len) != NULL, "invalid key of %zu accepted",
                          len);
        }
    }
    ck_assert_uint_gt(valid, 1000);
    ck_assert_uint_gt(refused, 1000);
}
END_TEST

START_TEST(test_reason_names_what)
{
    ck_assert_str_eq(hc_name_invalid("namespace", "a b", 3), "namespace contains a space");
    ck_assert_str_eq(hc_name_invalid("namespace", "", 0), "namespace is empty");
    ck_assert_str_eq(hc_name_invalid("namespace", ".", 1), "namespace is '.'");
    ck_assert_str_eq(hc_name_invalid("thing", "a/b", 3), "name contains '/'");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("key");
    TCase *tc = tcase_create("validate");
    SRunner *sr;
    int failed;

    tcase_add_test(tc, test_sglang_keys_valid);
    tcase_add_test(tc, test_length_limit);
    tcase_add_loop_test(tc, test_refused_with_reason, 0, (int)(sizeof(bad) / sizeof(bad[0])));
    tcase_add_test(tc, test_len_bounds_the_check);
    tcase_add_test(tc, test_reason_names_what);
    tcase_add_test(tc, test_agrees_with_reference);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
