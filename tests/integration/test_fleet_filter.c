/* Integration: remote_index "filter" (daemon/fleet.c), issue 14's fleet
 * index. Node A stores pages and publishes its keys file; node B, on the same
 * volume, holds A's pages as a filter: exists answers them present (length
 * not known), a get finds the entry in A's keys file and returns the bytes A
 * stored; and a key B's filter answers "maybe" for but nobody stored (a
 * filter's false positive) is a miss: 100,000 gets of absent keys, none
 * answered with bytes, some of them false positives (filter_misses). */
#include "harness.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NPAGES 60
#define ABSENT 100000
#define BATCH 128
#define SLOT 4096

static size_t page_len(int i)
{
    return 8192 + (size_t)i * 1000;
}

/* Gets pages [0, NPAGES) from c; returns how many came back byte-exact
 * (wrong ones counted in *wrong). */
static int get_all(hc_client *c, int *wrong)
{
    int good = 0;
    char key[64];
    *wrong = 0;
    for (int i = 0; i < NPAGES; i++) {
        size_t len = page_len(i);
        char *buf = calloc(1, len);
        ck_assert_ptr_nonnull(buf);
        snprintf(key, sizeof(key), "ff-page-%d", i);
        hc_buf b = {buf, len};
        hc_page p = {key, &b, 1};
        int res = 1;
        ck_assert_int_ge(hc_batch_get(c, &p, 1, &res), 0);
        if (res == 0) {
            if (h_check(buf, len, key, 5) < 0)
                good++;
            else
                (*wrong)++;
        }
        free(buf);
    }
    return good;
}

START_TEST(test_filter_mode)
{
    struct hd *a = hd_new("fa", "--keys-interval-ms", "100", "--seal-interval-ms", "200",
                          "--segment-size", "1M", NULL);
    struct hd *b =
        hd_new_peer(a, "fb", "--remote-index", "filter", "--discovery-interval-ms", "100", NULL);
    char key[64];

    hd_start(a);
    hd_start(b);
    hc_client *ca = hd_connect(a, "ff", 0), *cb = hd_connect(b, "ff", 0);
    for (int i = 0; i < NPAGES; i++) {
        size_t len = page_len(i);
        char *buf = malloc(len);
        ck_assert_ptr_nonnull(buf);
        snprintf(key, sizeof(key), "ff-page-%d", i);
        h_fill(buf, len, key, 5);
        hc_buf bb = {buf, len};
        hc_page p = {key, &bb, 1};
        int res = 1;
        ck_assert_int_eq(hc_batch_set(ca, &p, 1, &res), 1);
        ck_assert_int_eq(res, 0);
        free(buf);
    }

    /* B sees them: present, length not known (its filter holds them) */
    const char *keys[NPAGES];
    char names[NPAGES][64];
    uint64_t lengths[NPAGES];
    for (int i = 0; i < NPAGES; i++) {
        snprintf(names[i], sizeof(names[i]), "ff-page-%d", i);
        keys[i] = names[i];
    }
    int leading = 0;
    for (uint64_t end = h_now_ms() + 15000; h_now_ms() < end; h_sleep_ms(50))
        if ((leading = hc_batch_exists(cb, keys, NPAGES, lengths)) == NPAGES)
            break;
    ck_assert_msg(leading == NPAGES, "B sees %d of A's %d pages after 15 s", leading, NPAGES);
    ck_assert_int_ge(h_stat(cb, "filter_pages"), NPAGES);
    ck_assert_int_eq(h_stat(cb, "pages"), 0); /* none in B's index */
    int unknown = 0;
    for (int i = 0; i < NPAGES; i++)
        unknown += lengths[i] == HC_LEN_UNKNOWN;
    ck_assert_int_eq(unknown, NPAGES);

    /* B's gets: the entry from A's keys file (published within a second) */
    int good = 0, wrong = 0;
    for (uint64_t end = h_now_ms() + 15000; h_now_ms() < end; h_sleep_ms(100))
        if ((good = get_all(cb, &wrong)) == NPAGES || wrong)
            break;
    ck_assert_int_eq(wrong, 0);
    ck_assert_msg(good == NPAGES, "B got %d of A's %d pages after 15 s", good, NPAGES);
    ck_assert_int_ge(h_stat(cb, "filter_located"), NPAGES);
    ck_assert_int_ge(h_stat(cb, "keys_files_loaded"), 1);
    /* located entries are now B's index entries, with their lengths */
    ck_assert_int_eq(hc_batch_exists(cb, keys, NPAGES, lengths), NPAGES);
    ck_assert_uint_eq(lengths[NPAGES - 1], page_len(NPAGES - 1));

    /* absent keys: never bytes; the ones the filter says "maybe" to are
     * misses once A's keys file says no */
    char *slots = malloc((size_t)BATCH * SLOT);
    char absent[BATCH][32];
    hc_buf bufs[BATCH];
    hc_page pages[BATCH];
    int res[BATCH], hits = 0, errors = 0;
    ck_assert_ptr_nonnull(slots);
    int64_t fm0 = h_stat(cb, "filter_misses");
    for (int done = 0; done < ABSENT; done += BATCH) {
        for (int j = 0; j < BATCH; j++) {
            snprintf(absent[j], sizeof(absent[j]), "ff-absent-%d", done + j);
            bufs[j] = (hc_buf){slots + (size_t)j * SLOT, SLOT};
            pages[j] = (hc_page){absent[j], &bufs[j], 1};
        }
        ck_assert_int_ge(hc_batch_get(cb, pages, BATCH, res), 0);
        for (int j = 0; j < BATCH; j++) {
            hits += res[j] == 0;
            errors += res[j] != 0 && res[j] != -ENOENT;
        }
    }
    int64_t fps = h_stat(cb, "filter_misses") - fm0;
    printf("filter mode: %d absent keys, %lld answered 'maybe' by the filter and missed in the "
           "keys file, %d hits, %d errors\n",
           ABSENT, (long long)fps, hits, errors);
    ck_assert_int_eq(hits, 0);
    ck_assert_int_eq(errors, 0);
    ck_assert_msg(fps > 0, "no false positive met: the test checks nothing");
    free(slots);
    hc_close(ca);
    hc_close(cb);
    hd_stop(b);
    hd_stop(a);
}
END_TEST

/* Node A evicts most of what it stores (capacity 2 MiB, 1 MiB segments): B
 * drops the segments A evicted, and once a quarter of what its filter of A
 * holds is gone it builds the filter anew, so exists stops answering
 * "present" for A's early pages (with stale fingerprints left it would for
 * every one of them). */
START_TEST(test_filter_rebuilt_after_eviction)
{
    struct hd *a =
        hd_new("ea", "--keys-interval-ms", "100", "--seal-interval-ms", "100", "--segment-size",
               "1M", "--capacity-bytes", "2M", "--reinsert", "false", NULL);
    struct hd *b =
        hd_new_peer(a, "eb", "--remote-index", "filter", "--discovery-interval-ms", "50", NULL);
    enum { N = 3000, EARLY = 1000 };
    char key[64], *buf = malloc(4096);

    ck_assert_ptr_nonnull(buf);
    hd_start(a);
    hd_start(b);
    hc_client *ca = hd_connect(a, "ev", 4096), *cb = hd_connect(b, "ev", 4096);
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof(key), "ev-%d", i);
        h_fill(buf, 4096, key, 1);
        hc_buf bb = {buf, 4096};
        hc_page p = {key, &bb, 1};
        int res = 1;
        ck_assert_int_eq(hc_batch_set(ca, &p, 1, &res), 1);
        ck_assert_int_eq(res, 0);
        if (i % 100 == 99)
            h_sleep_ms(60); /* B's discovery sees the segments come and go */
    }
    ck_assert_int_gt(h_stat(ca, "evicted_pages"), EARLY);
    int64_t rebuilds = 0;
    for (uint64_t end = h_now_ms() + 15000; h_now_ms() < end; h_sleep_ms(100))
        if ((rebuilds = h_stat(cb, "filter_rebuilds")) > 0)
            break;
    ck_assert_msg(rebuilds > 0, "B never rebuilt its filter of A (stale pages %lld)",
                  (long long)h_stat(cb, "filter_stale_pages"));
    h_sleep_ms(500);
    int present = 0;
    for (int i = 0; i < EARLY; i++) {
        const char *k = key;
        snprintf(key, sizeof(key), "ev-%d", i);
        present += hc_batch_exists(cb, &k, 1, NULL) == 1;
    }
    printf("filter rebuilt %lld times; %d of A's %d first (evicted) pages still answered present "
           "on B\n",
           (long long)rebuilds, present, EARLY);
    ck_assert_int_le(present, 10);
    free(buf);
    hc_close(ca);
    hc_close(cb);
    hd_stop(b);
    hd_stop(a);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("fleet_filter");
    TCase *tc = h_tcase("fleet_filter", 120);
    tcase_add_test(tc, test_filter_mode);
    tcase_add_test(tc, test_filter_rebuilt_after_eviction);
    suite_add_tcase(s, tc);
    return h_run_suite(s);
}
