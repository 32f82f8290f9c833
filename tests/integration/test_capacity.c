/* Integration: a node's capacity limit. Writing five times the capacity
 * evicts the oldest segments: the oldest pages miss, the newest are served
 * byte-exact, and the node's files never grow past capacity + one segment. */
#include "harness.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CP_SEG (1u << 20)
#define CP_CAP (4u << 20)
#define CP_LEN 65536
#define CP_BATCH 16
#define CP_BATCHES 20 /* 20 MiB */

static void cp_prefix(char *buf, size_t n, int b)
{
    snprintf(buf, n, "cap-b%d", b);
}

/* Reads batch b: returns the number of hits; every hit must be exact. */
static int cp_read_batch(hc_client *c, int b)
{
    char prefix[32];
    cp_prefix(prefix, sizeof(prefix), b);
    struct h_batch r;
    ck_assert_int_eq(h_batch_init(&r, prefix, CP_BATCH, CP_LEN, 500u + (unsigned)b), 0);
    h_batch_zero(&r);
    int rc = hc_batch_get(c, r.hc, r.n, r.results);
    ck_assert_msg(rc >= 0, "hc_batch_get: %s", hc_strerror(rc));
    int hits = 0;
    for (size_t i = 0; i < r.n; i++) {
        ck_assert_msg(r.results[i] == 0 || r.results[i] == -ENOENT, "get %s: %s", r.pages[i].key,
                      hc_strerror(r.results[i]));
        if (r.results[i] != 0)
            continue;
        hits++;
        long bad = h_page_check(&r.pages[i], 3);
        ck_assert_msg(bad < 0, "page %s differs at %ld", r.pages[i].key, bad);
    }
    ck_assert_int_eq(rc, hits);
    h_batch_free(&r);
    return hits;
}

START_TEST(test_capacity_evicts_oldest)
{
    struct hd *d = hd_new("A", "--segment-size", "1048576", "--capacity-bytes", "4194304", NULL);
    hd_start(d);
    char nodedir[H_PATH + 32];
    snprintf(nodedir, sizeof(nodedir), "%s/hicache/A", d->mount);
    const uint64_t limit = CP_CAP + CP_SEG;

    hc_client *c = hd_connect(d, NULL, CP_LEN);
    uint64_t max_usage = 0;
    int max_at = -1;
    for (int b = 0; b < CP_BATCHES; b++) {
        char prefix[32];
        cp_prefix(prefix, sizeof(prefix), b);
        struct h_batch w;
        ck_assert_int_eq(h_batch_init(&w, prefix, CP_BATCH, CP_LEN, (uint64_t)b), 0);
        h_batch_fill(&w, 3);
        int rc = hc_batch_set(c, w.hc, w.n, w.results);
        ck_assert_msg(rc == CP_BATCH, "batch %d: hc_batch_set returned %d (%s)", b, rc,
                      rc < 0 ? hc_strerror(rc) : "some pages refused");
        h_batch_free(&w);
        /* eviction is decided at once, but an evicted segment's unlink runs
         * on an I/O thread: a slow machine (a sanitizer build under CI) may
         * still hold its file for a moment */
        uint64_t usage = h_dir_bytes(nodedir);
        for (uint64_t end = h_now_ms() + 2000; usage > limit && h_now_ms() < end;
             usage = h_dir_bytes(nodedir))
            h_sleep_ms(20);
        if (usage > max_usage) {
            max_usage = usage;
            max_at = b;
        }
    }
    ck_assert_msg(max_usage <= limit,
                  "node files reached %llu bytes (after batch %d of %d), over capacity %u + one "
                  "segment %u",
                  (unsigned long long)max_usage, max_at, CP_BATCHES, CP_CAP, CP_SEG);
    ck_assert_int_gt(h_stat(c, "evicted_pages"), 0);
    ck_assert_int_gt(h_stat(c, "evicted_segments"), 0);
    ck_assert_int_le(h_stat(c, "disk_bytes"), (int64_t)limit);

    /* oldest gone, newest exact, everything in between exact or gone */
    ck_assert_int_eq(cp_read_batch(c, 0), 0);
    ck_assert_int_eq(cp_read_batch(c, 1), 0);
    ck_assert_int_eq(cp_read_batch(c, CP_BATCHES - 1), CP_BATCH);
    ck_assert_int_eq(cp_read_batch(c, CP_BATCHES - 2), CP_BATCH);
    int hits = 0;
    for (int b = 0; b < CP_BATCHES; b++)
        hits += cp_read_batch(c, b);
    ck_assert_int_eq(h_stat(c, "pages"), hits);
    ck_assert_int_le((int64_t)hits * CP_LEN, (int64_t)limit);
    ck_assert_int_eq(h_stat(c, "evicted_pages") + hits, CP_BATCHES * CP_BATCH);
    const char *first = "cap-b0-0";
    ck_assert_int_eq(hc_batch_exists(c, &first, 1, NULL), 0);
    hc_close(c);

    /* eviction is persistent: a restart does not bring pages back */
    hd_stop(d);
    ck_assert_uint_le(h_dir_bytes(nodedir), limit);
    hd_start(d);
    c = hd_connect(d, NULL, CP_LEN);
    ck_assert_int_eq(cp_read_batch(c, 0), 0);
    ck_assert_int_eq(cp_read_batch(c, CP_BATCHES - 1), CP_BATCH);
    ck_assert_int_eq(h_stat(c, "pages"), hits);
    hc_close(c);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("integration_capacity");
    TCase *tc = h_tcase("capacity", 60);
    tcase_add_test(tc, test_capacity_evicts_oldest);
    suite_add_tcase(s, tc);
    return h_run_suite(s);
}
