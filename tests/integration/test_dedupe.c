/* Integration: write dedupe and read coalescing across client processes. */
#include "harness.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DD_CLIENTS 8
#define DD_SET_PAGE (1u << 20)
#define DD_GET_PAGE (4u << 20)

/* Sets "dup-key" (1 MiB) once all clients are connected and released. */
static int dd_set_client(int idx, void *arg)
{
    const struct hd *d = arg;
    char *buf = malloc(DD_SET_PAGE);
    H_REQUIRE(buf != NULL, "oom");
    h_fill(buf, DD_SET_PAGE, "dup-key", 7);
    hc_buf b[2] = {{buf, 4096}, {buf + 4096, DD_SET_PAGE - 4096}};
    hc_page p = {"dup-key", b, 2};
    hc_client *c = NULL;
    hc_connect_opts o = {.rank = (uint32_t)idx, .page_size_hint = DD_SET_PAGE, .timeout_ms = 30000};
    int rc = hc_connect(&c, d->sock, &o);
    H_REQUIRE(rc == 0, "hc_connect: %s", hc_strerror(rc));
    h_barrier();
    int res = 1;
    rc = hc_batch_set(c, &p, 1, &res);
    H_REQUIRE(rc == 1 && res == 0, "hc_batch_set: rc %d result %d", rc, res);
    hc_close(c);
    free(buf);
    return 0;
}

START_TEST(test_concurrent_set_written_once)
{
    struct hd *d = hd_new("A", NULL);
    hd_start(d);
    int failed = h_run_clients(DD_CLIENTS, dd_set_client, d);
    ck_assert_msg(failed == 0, "%d client processes failed (see above)", failed);

    hc_client *c = hd_connect(d, NULL, DD_SET_PAGE);
    ck_assert_int_eq(h_stat(c, "sets"), DD_CLIENTS);
    ck_assert_int_eq(h_stat(c, "bytes_written"), DD_SET_PAGE);
    ck_assert_int_eq(h_stat(c, "dedup_hits"), DD_CLIENTS - 1);
    ck_assert_int_eq(h_stat(c, "dedup_bytes"), (int64_t)(DD_CLIENTS - 1) * DD_SET_PAGE);
    ck_assert_int_eq(h_stat(c, "pages"), 1);
    ck_assert_int_eq(h_stat(c, "bytes_stored"), DD_SET_PAGE);
    ck_assert_int_eq(h_stat(c, "set_errors"), 0);

    char *buf = calloc(1, DD_SET_PAGE);
    ck_assert_ptr_nonnull(buf);
    hc_buf b = {buf, DD_SET_PAGE};
    hc_page p = {"dup-key", &b, 1};
    int res = 1;
    ck_assert_int_eq(hc_batch_get(c, &p, 1, &res), 1);
    ck_assert_int_eq(res, 0);
    ck_assert_msg(h_check(buf, DD_SET_PAGE, "dup-key", 7) < 0, "stored bytes differ");

    /* a later set of the stored key costs no write either */
    h_fill(buf, DD_SET_PAGE, "dup-key", 7);
    ck_assert_int_eq(hc_batch_set(c, &p, 1, &res), 1);
    ck_assert_int_eq(res, 0);
    ck_assert_int_eq(h_stat(c, "dedup_hits"), DD_CLIENTS);
    ck_assert_int_eq(h_stat(c, "bytes_written"), DD_SET_PAGE);
    free(buf);
    hc_close(c);
}
END_TEST

/* Connects, waits for the barrier, then gets "hot-page" (4 MiB). */
static int dd_get_client(int idx, void *arg)
{
    const struct hd *d = arg;
    char *buf = calloc(1, DD_GET_PAGE);
    H_REQUIRE(buf != NULL, "oom");
    hc_buf b = {buf, DD_GET_PAGE};
    hc_page p = {"hot-page", &b, 1};
    hc_client *c = NULL;
    hc_connect_opts o = {.rank = (uint32_t)idx, .page_size_hint = DD_GET_PAGE, .timeout_ms = 30000};
    int rc = hc_connect(&c, d->sock, &o);
    H_REQUIRE(rc == 0, "hc_connect: %s", hc_strerror(rc));
    h_barrier();
    int res = 1;
    rc = hc_batch_get(c, &p, 1, &res);
    H_REQUIRE(rc == 1 && res == 0, "hc_batch_get: rc %d result %d", rc, res);
    long bad = h_check(buf, DD_GET_PAGE, "hot-page", 11);
    H_REQUIRE(bad < 0, "bytes differ at %ld", bad);
    hc_close(c);
    free(buf);
    return 0;
}

/* 8 processes released together get one page that the daemon has not read
 * since it started: the first get's read goes straight into its client's
 * slot; the seven others join it and copy from one more read of the file
 * into the daemon's memory, made right after the first (never from the
 * first client's slot, which that client may change): at most 2 reads of
 * the page for 8 gets. */
START_TEST(test_concurrent_get_one_read)
{
    struct hd *d = hd_new("A", NULL);
    hd_start(d);
    hc_client *c = hd_connect(d, NULL, DD_GET_PAGE);
    char *buf = malloc(DD_GET_PAGE);
    ck_assert_ptr_nonnull(buf);
    h_fill(buf, DD_GET_PAGE, "hot-page", 11);
    hc_buf b = {buf, DD_GET_PAGE};
    hc_page p = {"hot-page", &b, 1};
    int res = 1;
    ck_assert_int_eq(hc_batch_set(c, &p, 1, &res), 1);
    ck_assert_int_eq(res, 0);
    hc_close(c);
    free(buf);

    /* restart: nothing of the page is held by the daemon; and drop the
     * kernel's cache of the segment files so the one read is a real device
     * read (as on a network file system) that the other gets overlap */
    hd_stop(d);
    h_drop_cache(d->mount);
    hd_start(d);
    c = hd_connect(d, NULL, 0);
    int64_t read0 = h_stat(c, "bytes_read_storage");
    int64_t coal0 = h_stat(c, "coalesced_reads");
    ck_assert_int_eq(h_stat(c, "gets"), 0);

    int failed = h_run_clients(DD_CLIENTS, dd_get_client, d);
    ck_assert_msg(failed == 0, "%d client processes failed (see above)", failed);

    int64_t reads_bytes = h_stat(c, "bytes_read_storage") - read0;
    int64_t coalesced = h_stat(c, "coalesced_reads") - coal0;
    ck_assert_int_eq(h_stat(c, "gets"), DD_CLIENTS);
    ck_assert_int_eq(h_stat(c, "hits"), DD_CLIENTS);
    ck_assert_int_eq(h_stat(c, "bytes_served"), (int64_t)DD_CLIENTS * DD_GET_PAGE);
    ck_assert_msg(reads_bytes % DD_GET_PAGE == 0, "bytes_read_storage %lld is not whole pages",
                  (long long)reads_bytes);
    int64_t nreads = reads_bytes / DD_GET_PAGE;
    /* 2 reads: the second for the joiners, made by the first read's I/O
     * thread (all 7 coalesced) or, for gets that joined after its check, by
     * one of them (6) */
    ck_assert_msg(nreads >= 1 && coalesced >= DD_CLIENTS - nreads &&
                      coalesced <= DD_CLIENTS + 1 - nreads + (nreads == 2),
                  "%lld storage reads, %lld coalesced, %d gets", (long long)nreads,
                  (long long)coalesced, DD_CLIENTS);
    ck_assert_msg(coalesced >= 1, "no get was coalesced (%lld storage reads)", (long long)nreads);
    ck_assert_msg(nreads <= 2, "8 overlapping gets caused %lld storage reads, not 1 or 2",
                  (long long)nreads);
    hc_close(c);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("integration_dedupe");
    TCase *tc = h_tcase("dedupe", 60);
    tcase_add_test(tc, test_concurrent_set_written_once);
    tcase_add_test(tc, test_concurrent_get_one_read);
    suite_add_tcase(s, tc);
    return h_run_suite(s);
}
