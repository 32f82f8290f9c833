/* CRC32C: known vectors, and hardware == software on odd lengths and
 * alignments, including around the 3-lane block sizes of the hardware path
 * (3 * 256, 3 * 2048 and 3 * 32768 bytes) and the folding path's (1 KiB at
 * least, 256 bytes a step, then 64; on a CPU with AVX-512 and VPCLMULQDQ). */
#include <check.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crc32c.h"

uint32_t hc__crc32c_sw(uint32_t crc, const void *buf, size_t len);
bool hc__crc32c_hw_ok(void);
#if defined(__x86_64__)
uint32_t hc__crc32c_hw(uint32_t crc, const void *buf, size_t len);
uint32_t hc__crc32c_hw3(uint32_t crc, const void *buf, size_t len);
uint32_t hc__crc32c_copy_hw3(uint32_t crc, void *dst, const void *src, size_t len);
bool hc__crc32c_fold_ok(void);
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

/* Bit-at-a-time reference, independent of the tables. */
static uint32_t crc32c_bitwise(uint32_t crc, const unsigned char *p, size_t len)
{
    crc = ~crc;
    while (len--) {
        crc ^= *p++;
        for (int k = 0; k < 8; k++)
            crc = crc & 1 ? (crc >> 1) ^ 0x82F63B78u : crc >> 1;
    }
    return ~crc;
}

#define BIG_CAP 200000

static unsigned char *random_buf(size_t n, unsigned seed)
{
    unsigned char *buf = malloc(n);
    ck_assert_ptr_nonnull(buf);
    srand(seed);
    for (size_t i = 0; i < n; i++)
        buf[i] = (unsigned char)rand();
    return buf;
}

/* hc_crc32c_copy of len bytes at buf into a target ahead bytes past buf's
 * offset in a 4 KiB page: the CRC is sw and the bytes arrive, none past them. */
static void check_copy(const unsigned char *buf, size_t len, uint32_t seed, uint32_t sw,
                       size_t ahead, bool three)
{
    static unsigned char *dst; /* kept: a fresh mapping per call made this slow */
    static size_t dst_cap;
    size_t dalign = ((uintptr_t)buf + ahead) % 4096, cap = len + 4096 + 32;
    if (cap > dst_cap) {
        free(dst);
        dst_cap = (cap + 4095) / 4096 * 4096;
        dst = aligned_alloc(4096, dst_cap);
        ck_assert_ptr_nonnull(dst);
    }
    memset(dst, 0xa5, cap);
#if defined(__x86_64__)
    if (three) /* the three crc32 chains, not folding */
        ck_assert_uint_eq(hc__crc32c_copy_hw3(seed, dst + dalign, buf, len), sw);
    else
#endif
        ck_assert_uint_eq(hc_crc32c_copy(seed, dst + dalign, buf, len), sw);
    ck_assert_int_eq(memcmp(dst + dalign, buf, len), 0);
    /* one assertion for the bytes around (Check records each one it runs) */
    size_t bad = cap;
    for (size_t i = 0; i < cap && bad == cap; i++)
        if ((i < dalign || i >= dalign + len) && dst[i] != 0xa5)
            bad = i;
    ck_assert_msg(bad == cap, "byte %zu written, target at %zu + %zu", bad, dalign, len);
}

/* Every path agrees on len at (and around) multiples of the block sizes; the
 * copying one too, to targets on both sides of each edge of the windows of
 * non-temporal stores (nt_ok), at the source's offset and unaligned (three
 * of those a call, in turn), and either side of the edges of the folding
 * copy's window (fold_nt_ok: it aligns the target to 64 bytes first). */
static void check_len(const unsigned char *buf, size_t len, uint32_t seed)
{
    uint32_t sw = hc__crc32c_sw(seed, buf, len);
    ck_assert_uint_eq(hc_crc32c(seed, buf, len), sw);
    static const size_t aheads[] = {0, 248, 256, 768, 1024, 2048, 3, 4032, 4040};
    static size_t turn; /* three of them a length, in turn: all over the lengths */
    for (size_t i = 0; i < 3; i++)
        check_copy(buf, len, seed, sw, aheads[(turn + 3 * i) % 9], false);
    /* either side of each edge of fold_nt_ok's window, in turn */
    static const size_t fold_aheads[] = {767, 768, 4032, 4033};
    check_copy(buf, len, seed, sw, fold_aheads[turn % 4], false);
#if defined(__x86_64__)
    if (hc__crc32c_hw_ok() && hc__crc32c_fold_ok())
        check_copy(buf, len, seed, sw, aheads[turn % 9], true);
#endif
    turn++;
#if defined(__x86_64__)
    if (hc__crc32c_hw_ok()) {
        ck_assert_uint_eq(hc__crc32c_hw(seed, buf, len), sw);
        ck_assert_uint_eq(hc__crc32c_hw3(seed, buf, len), sw); /* without folding */
    }
#endif
}

START_TEST(test_block_boundaries)
{
    unsigned char *buf = random_buf(BIG_CAP + 16, 7);
    static const size_t blocks[] = {256, 3 * 256, 3 * 2048, 3 * 32768};
    for (size_t b = 0; b < sizeof(blocks) / sizeof(blocks[0]); b++)
        for (size_t m = 1; m * blocks[b] <= BIG_CAP; m += m > 8 ? 7 : 1)
            for (int d = -9; d <= 9; d++) {
                size_t len = m * blocks[b] + (size_t)d;
                size_t align = (size_t)(m + d + 16) % 16;
                check_len(buf + align, len, (uint32_t)rand());
                check_len(buf + align, len, 0);
            }
    /* Lengths 0..2000 one by one, at every alignment mod 8. */
    for (size_t len = 0; len <= 2000; len++)
        check_len(buf + len % 8, len, (uint32_t)rand() ^ ((uint32_t)rand() << 16));
    check_len(buf, BIG_CAP, 0xFFFFFFFFu);
    check_len(buf + 3, BIG_CAP, 0x12345678u);
    /* Independent reference on a few long lengths. */
    ck_assert_uint_eq(hc_crc32c(0xDEADBEEFu, buf + 5, 3 * 32768 + 3 * 2048 + 3 * 256 + 13),
                      crc32c_bitwise(0xDEADBEEFu, buf + 5, 3 * 32768 + 3 * 2048 + 3 * 256 + 13));
    ck_assert_uint_eq(hc_crc32c(0, buf, BIG_CAP), crc32c_bitwise(0, buf, BIG_CAP));
    free(buf);
}
END_TEST

START_TEST(test_random_large)
{
    unsigned char *buf = random_buf(BIG_CAP + 16, 99);
    for (int iter = 0; iter < 500; iter++) {
        size_t align = (size_t)rand() % 16;
        size_t len = (size_t)rand() % (BIG_CAP + 1);
        uint32_t seed = (uint32_t)rand() ^ ((uint32_t)rand() << 16);
        check_len(buf + align, len, seed);
    }
    free(buf);
}
END_TEST

/* crc(crc(s, A), B) == crc(s, A||B), cutting a large buffer anywhere. */
START_TEST(test_chaining_large)
{
    unsigned char *buf = random_buf(BIG_CAP, 3);
    size_t n = BIG_CAP - 7;
    uint32_t whole = hc_crc32c(0, buf, n);
    ck_assert_uint_eq(whole, hc__crc32c_sw(0, buf, n));
    const size_t cuts[] = {0,    1,     7,     767,   768,    769,   6143, 6144,
                           6145, 98303, 98304, 98305, 100000, n - 1, n};
    for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
        size_t cut = cuts[i];
        ck_assert_uint_eq(hc_crc32c(hc_crc32c(0, buf, cut), buf + cut, n - cut), whole);
#if defined(__x86_64__)
        if (hc__crc32c_hw_ok())
            ck_assert_uint_eq(hc__crc32c_hw(hc__crc32c_hw(0, buf, cut), buf + cut, n - cut), whole);
#endif
    }
    for (int iter = 0; iter < 200; iter++) {
        size_t a = (size_t)rand() % (n + 1);
        size_t b = a + (size_t)rand() % (n - a + 1);
        uint32_t c = hc_crc32c(0, buf, a);
        c = hc_crc32c(c, buf + a, b - a);
        ck_assert_uint_eq(hc_crc32c(c, buf + b, n - b), whole);
    }
    free(buf);
}
END_TEST

int main(void)
{
#if defined(__x86_64__)
    /* which paths this CPU runs (a CPU without them checks only the others) */
    fprintf(stderr, "crc32c: crc32 instruction %s, folding (AVX-512, VPCLMULQDQ) %s\n",
            hc__crc32c_hw_ok() ? "yes" : "no", hc__crc32c_fold_ok() ? "yes" : "no");
#endif
    Suite *s = suite_create("crc32c");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_known_vectors);
    tcase_add_test(tc, test_incremental);
    tcase_add_test(tc, test_hw_equals_sw);
    tcase_add_test(tc, test_block_boundaries);
    tcase_add_test(tc, test_random_large);
    tcase_add_test(tc, test_chaining_large);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
