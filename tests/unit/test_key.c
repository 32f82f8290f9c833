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
    char buf[HC_KEY_MAX + 1];

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
    char buf[HC_KEY_MAX + 2];

    memset(buf, 'a', sizeof(buf));
    ck_assert_ptr_null(hc_name_invalid("key", buf, HC_KEY_MAX));
    ck_assert_str_eq(hc_name_invalid("key", buf, HC_KEY_MAX + 1),
                     "key is longer than 256 characters");
    ck_assert_str_eq(hc_name_invalid("namespace", buf, HC_NS_MAX + 1),
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
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
