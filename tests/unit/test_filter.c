/* Cuckoo filter (daemon/filter.c): no false negatives, the false-positive
 * rate and memory it promises, an add that finds no room changes nothing,
 * removal. Hashes of real keys (hc_index_hash), as the fleet index would add. */
#include <check.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "filter.h"

/* The hash of page key "p<node>-<j>" in namespace "fleet" (fleet-sim's). */
static struct hc_hash page(unsigned node, uint64_t j)
{
    char key[64];
    int n = snprintf(key, sizeof(key), "p%u-%llu", node, (unsigned long long)j);
    return hc_index_hash("fleet", 5, key, (size_t)n);
}

/* A filter sized for n, filled with n pages: every one is "maybe"; pages
 * never added are "maybe" at most at the promised rate; at most 1.9 bytes a
 * page. */
START_TEST(test_no_false_negatives_and_rate)
{
    const size_t n = 500000, probes = 2000000;
    struct hc_cfilter f;
    ck_assert_int_eq(hc_cfilter_init(&f, n), 0);
    for (size_t j = 0; j < n; j++)
        ck_assert_int_eq(hc_cfilter_add(&f, page(1, j)), 0);
    ck_assert_uint_eq(hc_cfilter_count(&f), n);
    for (size_t j = 0; j < n; j++)
        ck_assert_msg(hc_cfilter_maybe(&f, page(1, j)), "page %zu lost", j);
    size_t fp = 0;
    for (size_t j = 0; j < probes; j++)
        fp += hc_cfilter_maybe(&f, page(2, j));
    double rate = (double)fp / (double)probes;
    double load = (double)n / (double)(f.nbuckets * HC_CF_SLOTS);
    printf("cuckoo filter: %zu pages, load %.2f, %.2f bytes a page, false positives %.5f%% "
           "(bound %.5f%%)\n",
           n, load, (double)hc_cfilter_memory(&f) / (double)n, 100 * rate,
           100 * 2.0 * HC_CF_SLOTS / HC_CF_FP_MAX);
    /* the rate expected at full load, with room for the sampling's spread */
    ck_assert(rate <= 1.2 * 2.0 * HC_CF_SLOTS / HC_CF_FP_MAX);
    ck_assert((double)hc_cfilter_memory(&f) / (double)n <= 1.9);
    hc_cfilter_free(&f);
}
END_TEST

/* Filled past what it was sized for until an add finds no room: the load
 * then reached at least 90%, that add changed nothing (every page added
 * before is still "maybe", the count is the same), and at 95% load a page
 * costs at most 1.9 bytes. */
START_TEST(test_full_changes_nothing)
{
    struct hc_cfilter f;
    ck_assert_int_eq(hc_cfilter_init(&f, 250000), 0);
    size_t cap = f.nbuckets * HC_CF_SLOTS, added = 0;
    int rc = 0;
    while ((rc = hc_cfilter_add(&f, page(3, added))) == 0) {
        added++;
        if (added == cap * 95 / 100)
            ck_assert((double)hc_cfilter_memory(&f) / (double)added <= 1.9);
    }
    ck_assert_int_eq(rc, -ENOSPC);
    printf("cuckoo filter: full at %zu of %zu slots (%.1f%%)\n", added, cap,
           100.0 * (double)added / (double)cap);
    ck_assert(added >= cap * 90 / 100);
    ck_assert_uint_eq(hc_cfilter_count(&f), added);
    for (size_t j = 0; j < added; j++)
        ck_assert_msg(hc_cfilter_maybe(&f, page(3, j)), "page %zu lost by a failed add", j);
    hc_cfilter_free(&f);
}
END_TEST

/* Removing pages: each removed once is found; the rest stay "maybe"; what
 * was removed is "maybe" again only at the false-positive rate. */
START_TEST(test_remove)
{
    const size_t n = 100000;
    struct hc_cfilter f;
    ck_assert_int_eq(hc_cfilter_init(&f, n), 0);
    for (size_t j = 0; j < n; j++)
        ck_assert_int_eq(hc_cfilter_add(&f, page(4, j)), 0);
    for (size_t j = 0; j < n; j += 2)
        ck_assert(hc_cfilter_remove(&f, page(4, j)));
    ck_assert_uint_eq(hc_cfilter_count(&f), n / 2);
    size_t still = 0;
    for (size_t j = 0; j < n; j++) {
        if (j % 2)
            ck_assert_msg(hc_cfilter_maybe(&f, page(4, j)), "page %zu lost by a removal", j);
        else
            still += hc_cfilter_maybe(&f, page(4, j));
    }
    ck_assert(still <= 10); /* expected about 1.2 at 2 x 4 / 32767 */
    ck_assert(!hc_cfilter_remove(&f, page(5, 0)) || hc_cfilter_count(&f) == n / 2 - 1);
    hc_cfilter_free(&f);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("filter");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_no_false_negatives_and_rate);
    tcase_add_test(tc, test_full_changes_nothing);
    tcase_add_test(tc, test_remove);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
