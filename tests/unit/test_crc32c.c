/* CRC32C: known vectors, and hardware == software on odd lengths and
 * alignments. */
#include <check.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "crc32c.h"

uint32_t hc__crc32c_sw(uint32_t crc, const void *buf, size_t len);
bool hc__crc32c_hw_ok(void);
#if defined(__x86_64__)
uint32_t hc__crc32c_hw(uint32_t crc, const void *buf, size_t len);
#endif

START_TEST(test_known_vectors)
{
    ck_assert_uint_eq(hc_crc32c(0, "123456789", 9), 0xE3069283u);
    ck_assert_uint_eq(hc__crc32c_sw(0, "123456789", 9), 0xE3069283u);
    ck_assert_uint_eq(hc_crc32c(0, "", 0), 0);
    unsigned char zeros[32] = {0}, ones[32];
    memset(ones, 0xff, sizeof(ones));
    /* RFC 3720 (iSCSI) B.4 test vectors. */
    ck_assert_uint_eq(hc_crc32c(0, zeros, 32), 0x8A9136AAu);
    ck_assert_uint_eq(hc_crc32c(0, ones, 32), 0x62A8AB43u);
    unsigned char inc[32];
    for (int i = 0; i < 32; i++)
        inc[i] = (unsigned char)i;
    ck_assert_uint_eq(hc_crc32c(0, inc, 32), 0x46DD794Eu);
    ck_assert_uint_eq(hc__crc32c_sw(0, inc, 32), 0x46DD794Eu);
}
END_TEST

START_TEST(test_incremental)
{
    const char *s = "The quick brown fox jumps over the lazy dog";
    size_t n = strlen(s);
    uint32_t whole = hc_crc32c(0, s, n);
    for (size_t cut = 0; cut <= n; cut++)
        ck_assert_uint_eq(hc_crc32c(hc_crc32c(0, s, cut), s + cut, n - cut), whole);
    ck_assert_uint_eq(whole, 0x22620404u);
}
END_TEST

START_TEST(test_hw_equals_sw)
{
    size_t cap = 70000;
    unsigned char *buf = malloc(cap + 16);
    ck_assert_ptr_nonnull(buf);
    srand(42);
    for (size_t i = 0; i < cap + 16; i++)
        buf[i] = (unsigned char)rand();
    for (int iter = 0; iter < 2000; iter++) {
        size_t align = (size_t)rand() % 16;
        size_t len = iter < 100 ? (size_t)iter : (size_t)rand() % cap;
        uint32_t seed = iter & 1 ? (uint32_t)rand() : 0;
        uint32_t sw = hc__crc32c_sw(seed, buf + align, len);
        ck_assert_uint_eq(hc_crc32c(seed, buf + align, len), sw);
#if defined(__x86_64__)
        if (hc__crc32c_hw_ok())
            ck_assert_uint_eq(hc__crc32c_hw(seed, buf + align, len), sw);
#endif
    }
    /* A flipped bit changes the value. */
    uint32_t a = hc_crc32c(0, buf, 4096);
    buf[100] ^= 1;
    ck_assert_uint_ne(hc_crc32c(0, buf, 4096), a);
    free(buf);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("crc32c");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_known_vectors);
    tcase_add_test(tc, test_incremental);
    tcase_add_test(tc, test_hw_equals_sw);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
