/* Index: random operations against a simple reference, removal by segment and
 * by namespace, growth, and memory per entry. */
#include <check.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "index.h"

struct ref {
    bool present;
    struct hc_index_ent e;
};

static uint64_t rng = 0x9E3779B97F4A7C15ULL;

static uint64_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static struct hc_hash key_hash(uint32_t id, uint16_t ns)
{
    char ns_name[16], key[80];
    int nl = snprintf(ns_name, sizeof(ns_name), "ns%u", ns);
    int kl = snprintf(key, sizeof(key), "%064x-%u", id * 2654435761u, id);
    return hc_index_hash(ns_name, (size_t)nl, key, (size_t)kl);
}

static void check_all(struct hc_index *ix, struct ref *ref, size_t n)
{
    size_t present = 0;
    for (size_t id = 0; id < n; id++) {
        const struct hc_index_ent *e = hc_index_lookup(ix, ref[id].e.h);
        if (ref[id].present) {
            present++;
            ck_assert_ptr_nonnull(e);
            ck_assert_uint_eq(e->seg, ref[id].e.seg);
            ck_assert_uint_eq(e->off, ref[id].e.off);
            ck_assert_uint_eq(e->len, ref[id].e.len);
            ck_assert_uint_eq(e->ns, ref[id].e.ns);
        } else {
            ck_assert_ptr_null(e);
        }
    }
    ck_assert_uint_eq(hc_index_count(ix), present);
}

START_TEST(test_hash)
{
    struct hc_hash a = hc_index_hash("ns", 2, "key", 3);
    struct hc_hash b = hc_index_hash("ns", 2, "key", 3);
    struct hc_hash c = hc_index_hash("nsk", 3, "ey", 2);
    struct hc_hash d = hc_index_hash("ns", 2, "kez", 3);
    ck_assert(a.lo == b.lo && a.hi == b.hi);
    ck_assert(a.lo != c.lo && a.hi != c.hi); /* the ns/key boundary matters */
    ck_assert(a.lo != d.lo && a.hi != d.hi);
}
END_TEST

/* Predicates of hc_index_remove_if: the entries of one segment / namespace
 * (the store's own predicates also keep its counters). */
static bool is_seg(const struct hc_index_ent *e, void *arg)
{
    return e->seg == *(uint32_t *)arg;
}

static bool is_ns(const struct hc_index_ent *e, void *arg)
{
    return e->ns == *(uint16_t *)arg;
}

START_TEST(test_random_vs_reference)
{
    const size_t n = 50000;
    struct ref *ref = calloc(n, sizeof(*ref));
    struct hc_index ix;
    ck_assert_int_eq(hc_index_init(&ix), 0);
    for (size_t id = 0; id < n; id++)
        ref[id].e.h = key_hash((uint32_t)id, (uint16_t)(id % 7));

    for (int op = 0; op < 200000; op++) {
        size_t id = next_rand() % n;
        unsigned what = next_rand() % 10;
        if (what < 5) {
            struct hc_index_ent e = ref[id].e;
            e.seg = (uint32_t)(next_rand() % 100);
            e.off = (uint32_t)next_rand();
            e.len = (uint32_t)next_rand();
            e.ns = (uint16_t)(id % 7);
            int rc = hc_index_insert(&ix, &e);
            if (ref[id].present) {
                ck_assert_int_eq(rc, -EEXIST); /* keep existing */
            } else {
                ck_assert_int_eq(rc, 0);
                ref[id].present = true;
                ref[id].e = e;
            }
        } else if (what < 8) {
            const struct hc_index_ent *e = hc_index_lookup(&ix, ref[id].e.h);
            ck_assert(!!e == ref[id].present);
            if (e)
                ck_assert_uint_eq(e->off, ref[id].e.off);
        } else {
            struct hc_index_ent out;
            bool had = hc_index_remove(&ix, ref[id].e.h, &out);
            ck_assert(had == ref[id].present);
            if (had)
                ck_assert_uint_eq(out.len, ref[id].e.len);
            ref[id].present = false;
        }
    }
    check_all(&ix, ref, n);

    /* Remove by segment. */
    size_t expect = 0;
    for (size_t id = 0; id < n; id++)
        if (ref[id].present && ref[id].e.seg == 42) {
            expect++;
            ref[id].present = false;
        }
    ck_assert_uint_gt(expect, 0);
    uint32_t seg = 42;
    ck_assert_uint_eq(hc_index_remove_if(&ix, is_seg, &seg), expect);
    check_all(&ix, ref, n);

    /* Remove by namespace. */
    expect = 0;
    for (size_t id = 0; id < n; id++)
        if (ref[id].present && ref[id].e.ns == 3) {
            expect++;
            ref[id].present = false;
        }
    ck_assert_uint_gt(expect, 0);
    uint16_t ns = 3;
    ck_assert_uint_eq(hc_index_remove_if(&ix, is_ns, &ns), expect);
    check_all(&ix, ref, n);

    hc_index_free(&ix);
    free(ref);
}
END_TEST

/* A tiny table full of colliding clusters that wrap around the end: removal
 * by predicate must neither skip nor lose entries. */
START_TEST(test_remove_if_wraparound)
{
    struct hc_index ix;
    ck_assert_int_eq(hc_index_init(&ix), 0);
    size_t cap = ix.cap, n = cap / 2;
    struct hc_index_ent *all = calloc(n, sizeof(*all));
    for (size_t i = 0; i < n; i++) {
        /* Homes crowd the last 16 slots and the first few. */
        all[i].h.lo = (cap - 16 + (next_rand() % 24)) & (cap - 1);
        all[i].h.lo |= (uint64_t)(i + 1) << 32;
        all[i].h.hi = i;
        all[i].seg = (uint32_t)(i % 3);
        ck_assert_int_eq(hc_index_insert(&ix, &all[i]), 0);
    }
    ck_assert_uint_eq(ix.cap, cap); /* no growth: load 1/2 */
    uint32_t seg = 1;
    size_t removed = hc_index_remove_if(&ix, is_seg, &seg);
    size_t expect = 0;
    for (size_t i = 0; i < n; i++) {
        const struct hc_index_ent *e = hc_index_lookup(&ix, all[i].h);
        if (all[i].seg == 1) {
            expect++;
            ck_assert_ptr_null(e);
        } else {
            ck_assert_ptr_nonnull(e);
            ck_assert_uint_eq(e->seg, all[i].seg);
        }
    }
    ck_assert_uint_eq(removed, expect);
    ck_assert_uint_eq(hc_index_count(&ix), n - expect);
    free(all);
    hc_index_free(&ix);
}
END_TEST

START_TEST(test_growth_and_memory)
{
    const size_t n = 1000000;
    struct hc_index ix;
    ck_assert_int_eq(hc_index_init(&ix), 0);
    size_t cap0 = ix.cap;
    for (size_t id = 0; id < n; id++) {
        struct hc_index_ent e = {.h = key_hash((uint32_t)id, 1),
                                 .seg = (uint32_t)(id >> 12),
                                 .off = (uint32_t)id,
                                 .len = 65536,
                                 .ns = 1};
        ck_assert_int_eq(hc_index_insert(&ix, &e), 0);
    }
    ck_assert_uint_gt(ix.cap, cap0);
    ck_assert_uint_eq(hc_index_count(&ix), n);
    for (size_t id = 0; id < n; id += 7) {
        const struct hc_index_ent *e = hc_index_lookup(&ix, key_hash((uint32_t)id, 1));
        ck_assert_ptr_nonnull(e);
        ck_assert_uint_eq(e->off, id);
    }
    double per = (double)hc_index_memory(&ix) / (double)n;
    printf("index: %zu entries, %zu slots, %.1f bytes per entry (entry %zu bytes)\n", n, ix.cap,
           per, sizeof(struct hc_index_ent));
    ck_assert(per < 100.0);
    hc_index_free(&ix);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("index");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_hash);
    tcase_add_test(tc, test_random_vs_reference);
    tcase_add_test(tc, test_remove_if_wraparound);
    tcase_add_test(tc, test_growth_and_memory);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
