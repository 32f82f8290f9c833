/* Integration: two daemons with different node ids on one directory (two
 * nodes on one shared volume) find each other's pages. */
#include "harness.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ND_PAGES 16
#define ND_LEN 20000

/* Writes ND_PAGES pages "<prefix>-i" through d. */
static void nd_write(const struct hd *d, const char *prefix, uint64_t salt)
{
    hc_client *c = hd_connect(d, NULL, ND_LEN);
    struct h_batch w;
    ck_assert_int_eq(h_batch_init(&w, prefix, ND_PAGES, ND_LEN, salt), 0);
    h_batch_fill(&w, salt);
    ck_assert_int_eq(hc_batch_set(c, w.hc, w.n, w.results), ND_PAGES);
    h_batch_free(&w);
    hc_close(c);
}

/* Polls d (up to timeout_ms) until all pages "<prefix>-i" exist; returns how
 * many leading pages existed at the end. */
static int nd_wait_visible(const struct hd *d, const char *prefix, int timeout_ms)
{
    hc_client *c = hd_connect(d, NULL, ND_LEN);
    char names[ND_PAGES][64];
    const char *keys[ND_PAGES];
    for (int i = 0; i < ND_PAGES; i++) {
        snprintf(names[i], sizeof(names[i]), "%s-%d", prefix, i);
        keys[i] = names[i];
    }
    uint64_t end = h_now_ms() + (uint64_t)timeout_ms;
    int lead;
    for (;;) {
        uint64_t lens[ND_PAGES];
        lead = hc_batch_exists(c, keys, ND_PAGES, lens);
        ck_assert_msg(lead >= 0, "hc_batch_exists: %s", hc_strerror(lead));
        if (lead == ND_PAGES) {
            for (int i = 0; i < ND_PAGES; i++)
                ck_assert_uint_eq(lens[i], ND_LEN);
            break;
        }
        if (h_now_ms() >= end)
            break;
        h_sleep_ms(50);
    }
    hc_close(c);
    return lead;
}

/* Reads the pages "<prefix>-i" through d and checks their bytes. */
static void nd_read(const struct hd *d, const char *prefix, uint64_t salt)
{
    hc_client *c = hd_connect(d, NULL, ND_LEN);
    struct h_batch r;
    ck_assert_int_eq(h_batch_init(&r, prefix, ND_PAGES, ND_LEN, salt + 1), 0);
    h_batch_zero(&r);
    int rc = hc_batch_get(c, r.hc, r.n, r.results);
    for (size_t i = 0; i < r.n; i++) {
        ck_assert_msg(r.results[i] == 0, "node %s: get %s: %s", d->node_id, r.pages[i].key,
                      hc_strerror(r.results[i]));
        long bad = h_page_check(&r.pages[i], salt);
        ck_assert_msg(bad < 0, "node %s: page %s differs at %ld", d->node_id, r.pages[i].key, bad);
    }
    ck_assert_int_eq(rc, ND_PAGES);
    h_batch_free(&r);
    hc_close(c);
}

START_TEST(test_two_nodes_share_directory)
{
    struct hd *a =
        hd_new("nodeA", "--seal-interval-ms", "100", "--discovery-interval-ms", "100", NULL);
    struct hd *b = hd_new_peer(a, "nodeB", "--seal-interval-ms", "100", "--discovery-interval-ms",
                               "100", NULL);
    hd_start(a);
    hd_start(b);
    hc_client *ca = hd_connect(a, NULL, 0);
    hc_client *cb = hd_connect(b, NULL, 0);
    ck_assert_str_eq(hc_node_id(ca), "nodeA");
    ck_assert_str_eq(hc_node_id(cb), "nodeB");
    hc_close(ca);
    hc_close(cb);

    nd_write(a, "from-a", 31);
    nd_write(b, "from-b", 32);

    int lead = nd_wait_visible(b, "from-a", 5000);
    ck_assert_msg(lead == ND_PAGES, "node B sees %d of node A's %d pages after 5 s", lead,
                  ND_PAGES);
    lead = nd_wait_visible(a, "from-b", 5000);
    ck_assert_msg(lead == ND_PAGES, "node A sees %d of node B's %d pages after 5 s", lead,
                  ND_PAGES);
    nd_read(b, "from-a", 31);
    nd_read(a, "from-b", 32);
    nd_read(a, "from-a", 31);

    ck_assert_int_ge(hd_stat(b, "remote_pages"), ND_PAGES);
    ck_assert_int_eq(hd_stat(b, "local_pages"), ND_PAGES);
    ck_assert_int_ge(hd_stat(a, "remote_pages"), ND_PAGES);
    ck_assert_int_eq(hd_stat(a, "local_pages"), ND_PAGES);

    /* each node wrote only into its own directory */
    char pa[H_PATH + 32], pb[H_PATH + 32];
    snprintf(pa, sizeof(pa), "%s/hicache/nodeA", a->mount);
    snprintf(pb, sizeof(pb), "%s/hicache/nodeB", a->mount);
    ck_assert_uint_ge(h_dir_bytes(pa), (uint64_t)ND_PAGES * ND_LEN);
    ck_assert_uint_ge(h_dir_bytes(pb), (uint64_t)ND_PAGES * ND_LEN);

    /* a page node B already sees costs B no write */
    int64_t written = hd_stat(b, "bytes_written");
    int64_t dd = hd_stat(b, "dedup_hits");
    nd_write(b, "from-a", 31);
    ck_assert_int_eq(hd_stat(b, "bytes_written"), written);
    ck_assert_int_eq(hd_stat(b, "dedup_hits"), dd + ND_PAGES);

    /* a restarted node finds the other's pages at once (sealed indexes) */
    hd_stop(b);
    hd_start(b);
    lead = nd_wait_visible(b, "from-a", 0);
    ck_assert_msg(lead == ND_PAGES, "restarted node B sees %d of node A's pages at start", lead);
    nd_read(b, "from-a", 31);
    nd_read(b, "from-b", 32);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("integration_nodes");
    TCase *tc = h_tcase("nodes", 60);
    tcase_add_test(tc, test_two_nodes_share_directory);
    suite_add_tcase(s, tc);
    return h_run_suite(s);
}
