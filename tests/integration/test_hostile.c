/* Integration: files on the shared root that another node (or anyone who can
 * write the volume) made hostile (issue 12, defect 1). A FIFO named like an
 * index in another node's directory must not stop a daemon from starting;
 * FIFOs in place of another node's sealed segments must make its pages
 * misses, not hang the I/O threads, so that every client goes on being
 * served and SIGTERM still stops the daemon; a symlink in place of a segment
 * is not followed (defect 1). Bad files in its own directory are set aside
 * and the daemon starts anyway (defect 2). Broken indexes of other nodes
 * are refused once, not at every pass (defect 6). Every client call is bounded (3 s) so that a hang
 * fails the test instead of stalling it. */
#include "harness.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define HO_LEN 65536
#define HO_PAGES 8

static hc_client *ho_connect(const struct hd *d)
{
    hc_client *c = NULL;
    hc_connect_opts o = {.page_size_hint = HO_LEN, .timeout_ms = 3000};

    ck_assert_int_eq(hc_connect(&c, d->sock, &o), 0);
    return c;
}

/* Stores HO_PAGES pages "<prefix>-i" through d; asserts all stored. */
static void ho_store(const struct hd *d, const char *prefix)
{
    struct h_batch b;
    hc_client *c = ho_connect(d);

    ck_assert_int_eq(h_batch_init(&b, prefix, HO_PAGES, HO_LEN, 1), 0);
    h_batch_fill(&b, 5);
    ck_assert_int_eq(hc_batch_set(c, b.hc, b.n, b.results), HO_PAGES);
    h_batch_free(&b);
    hc_close(c);
}

/* Reads the pages "<prefix>-i" through d: returns how many came back (each
 * checked byte for byte); the call must answer within the client timeout. */
static int ho_read(const struct hd *d, const char *prefix)
{
    struct h_batch b;
    hc_client *c = ho_connect(d);
    int hits = 0;

    ck_assert_int_eq(h_batch_init(&b, prefix, HO_PAGES, HO_LEN, 1), 0);
    h_batch_zero(&b);
    int rc = hc_batch_get(c, b.hc, b.n, b.results);
    ck_assert_msg(rc >= 0, "get of %s: %s", prefix, hc_strerror(rc));
    for (size_t i = 0; i < b.n; i++) {
        if (b.results[i] != 0)
            continue;
        ck_assert_msg(h_page_check(&b.pages[i], 5) < 0, "page %s differs", b.pages[i].key);
        hits++;
    }
    h_batch_free(&b);
    hc_close(c);
    return hits;
}

START_TEST(test_fifo_index_of_another_node)
{
    struct hd *a = hd_new("nodeA", NULL);
    char dir[H_PATH + 64], fifo[H_PATH + 96];
    uint64_t t0;

    snprintf(dir, sizeof(dir), "%s/hicache", a->mount);
    mkdir(dir, 0755);
    snprintf(dir, sizeof(dir), "%s/hicache/evil", a->mount);
    ck_assert_int_eq(mkdir(dir, 0755), 0);
    snprintf(fifo, sizeof(fifo), "%s/0000000000000001.idx", dir);
    ck_assert_int_eq(mkfifo(fifo, 0644), 0);
    snprintf(fifo, sizeof(fifo), "%s/0000000000000002.idx", dir);
    ck_assert_int_eq(symlink("/dev/zero", fifo), 0);
    t0 = h_now_ms();
    ck_assert_msg(hd_try_start(a, NULL) == 0,
                  "a FIFO named like another node's index stopped the start");
    ck_assert_uint_lt(h_now_ms() - t0, 5000);
    ho_store(a, "own");
    ck_assert_int_eq(ho_read(a, "own"), HO_PAGES);
    hd_stop(a);
}
END_TEST

/* Replaces every .seg in dir by a FIFO (or, every other one, by a symlink
 * to /dev/zero); returns how many. The names are read first: a directory
 * listing may show the entries made while it runs (JuiceFS does). */
static int ho_poison_segments(const char *dir)
{
    DIR *dh = opendir(dir);
    struct dirent *e;
    char names[64][256];
    int n = 0;
    char path[H_PATH + 300];

    ck_assert_ptr_nonnull(dh);
    while ((e = readdir(dh)) != NULL && n < 64) {
        size_t l = strlen(e->d_name);

        if (l < 5 || l >= sizeof(names[0]) || strcmp(e->d_name + l - 4, ".seg") != 0)
            continue;
        memcpy(names[n++], e->d_name, l + 1);
    }
    closedir(dh);
    for (int i = 0; i < n; i++) {
        snprintf(path, sizeof(path), "%s/%.255s", dir, names[i]);
        ck_assert_int_eq(unlink(path), 0);
        if (i % 2 == 0)
            ck_assert_int_eq(mkfifo(path, 0644), 0);
        else
            ck_assert_int_eq(symlink("/dev/zero", path), 0);
    }
    return n;
}

START_TEST(test_fifo_segments_of_another_node)
{
    struct hd *b = hd_new("nodeB", "--seal-interval-ms", "100", "--segment-size", "1048576", NULL);
    struct hd *a = hd_new_peer(b, "nodeA", "--io-threads", "2", NULL);
    char dir[H_PATH + 64];
    hc_client *c;
    uint64_t t0;
    int n;

    /* B writes two batches into sealed segments, then stops (sealing) */
    hd_start(b);
    ho_store(b, "b1");
    ho_store(b, "b2");
    hd_stop(b);
    snprintf(dir, sizeof(dir), "%s/hicache/nodeB", b->mount);
    n = ho_poison_segments(dir);
    ck_assert_int_ge(n, 2);

    hd_start(a);
    c = ho_connect(a);
    const char *k = "b1-0";
    uint64_t len = 0;
    ck_assert_int_eq(hc_batch_exists(c, &k, 1, &len), 1); /* the index names B's pages */
    hc_close(c);
    /* every get of them: answered (a miss), not stuck on a FIFO; twice, and
     * with as many of them as I/O threads, so stuck threads would show */
    t0 = h_now_ms();
    ck_assert_int_eq(ho_read(a, "b1"), 0);
    ck_assert_int_eq(ho_read(a, "b2"), 0);
    ck_assert_int_eq(ho_read(a, "b1"), 0);
    ck_assert_uint_lt(h_now_ms() - t0, 5000);
    /* and the daemon goes on serving everyone */
    ho_store(a, "a1");
    ck_assert_int_eq(ho_read(a, "a1"), HO_PAGES);
    ck_assert_int_gt(hd_stat(a, "corrupt_records"), 0);
    hd_stop(a); /* SIGTERM ends it: nothing left blocked */
}
END_TEST

/* How many files of dir end in ".bad-<digits>" (set aside). */
static int ho_count_bad(const char *dir)
{
    DIR *dh = opendir(dir);
    struct dirent *e;
    int n = 0;

    ck_assert_ptr_nonnull(dh);
    while ((e = readdir(dh)) != NULL)
        n += strstr(e->d_name, ".bad-") != NULL;
    closedir(dh);
    return n;
}

/* Defect 2: bad files in the node's own directory (a directory and a FIFO
 * named like segments, a symlink in place of one, a malformed cleared.json)
 * are set aside, counted, and the daemon starts and serves the good pages
 * it had. */
START_TEST(test_bad_files_of_its_own_node)
{
    struct hd *a = hd_new("nodeA", "--seal-interval-ms", "100", NULL);
    char dir[H_PATH + 64], p[H_PATH + 128];
    int before;

    hd_start(a);
    ho_store(a, "kept");
    hd_stop(a);
    snprintf(dir, sizeof(dir), "%s/hicache/nodeA", a->mount);
    before = ho_count_bad(dir);
    snprintf(p, sizeof(p), "%s/0000000000000001.seg", dir);
    ck_assert_int_eq(mkdir(p, 0755), 0);
    snprintf(p, sizeof(p), "%s/0000000000000002.seg", dir);
    ck_assert_int_eq(mkfifo(p, 0644), 0);
    snprintf(p, sizeof(p), "%s/0000000000000002.idx", dir); /* its index goes too */
    ck_assert_int_eq(h_write_file(p, "junk", 4), 0);
    snprintf(p, sizeof(p), "%s/0000000000000003.seg", dir);
    ck_assert_int_eq(symlink("/dev/zero", p), 0);
    snprintf(p, sizeof(p), "%s/cleared.json", dir);
    ck_assert_int_eq(h_write_file(p, "{not json", 9), 0);

    ck_assert_msg(hd_try_start(a, NULL) == 0, "bad files of its own node stopped the start");
    ck_assert_int_eq(ho_read(a, "kept"), HO_PAGES);
    ck_assert_int_eq(hd_stat(a, "quarantined_files"), 5);
    ck_assert_int_eq(ho_count_bad(dir) - before, 5);
    ho_store(a, "new");
    ck_assert_int_eq(ho_read(a, "new"), HO_PAGES);
    hd_stop(a);
}
END_TEST

/* Defect 6: another node's broken .idx files are refused once each (a file
 * larger than any index is refused unread) and not read again at every
 * discovery pass, until they change. */
START_TEST(test_bad_index_files_read_once)
{
    struct hd *a = hd_new("nodeA", "--discovery-interval-ms", "100", NULL);
    char dir[H_PATH + 64], p[H_PATH + 128];
    char junk[65536];
    FILE *f;

    snprintf(dir, sizeof(dir), "%s/hicache", a->mount);
    mkdir(dir, 0755);
    snprintf(dir, sizeof(dir), "%s/hicache/other", a->mount);
    ck_assert_int_eq(mkdir(dir, 0755), 0);
    snprintf(p, sizeof(p), "%s/0000000000000001.idx", dir);
    h_fill(junk, sizeof(junk), "junk", 1);
    ck_assert_int_eq(h_write_file(p, junk, sizeof(junk)), 0);
    snprintf(p, sizeof(p), "%s/0000000000000002.idx", dir); /* 2 GiB, sparse */
    f = fopen(p, "w");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(ftruncate(fileno(f), 2ll << 30), 0);
    fclose(f);

    hd_start(a);
    h_sleep_ms(1500); /* about 15 discovery passes */
    ck_assert_int_eq(hd_stat(a, "idx_refused"), 2);
    snprintf(p, sizeof(p), "%s/0000000000000001.idx", dir); /* it changes: read again */
    f = fopen(p, "a");
    ck_assert_ptr_nonnull(f);
    fputs("more", f);
    fclose(f);
    uint64_t t0 = h_now_ms();
    while (hd_stat(a, "idx_refused") < 3 && h_now_ms() - t0 < 3000)
        h_sleep_ms(50);
    h_sleep_ms(500);
    ck_assert_int_eq(hd_stat(a, "idx_refused"), 3);
    ho_store(a, "served");
    ck_assert_int_eq(ho_read(a, "served"), HO_PAGES);
    hd_stop(a);
}
END_TEST

/* Defect 6: an .idx under the size limit whose header does not fit its own
 * size or its segment (here: 200 MiB, sparse, claiming 3 million entries of
 * a 1 MiB segment, which can hold 128) is refused from its header, before
 * the daemon allocates or reads the rest: its peak memory grows by less than
 * 32 MiB (it read and held all 200 MiB before). A valid .idx beside it is
 * still loaded. */
START_TEST(test_bad_index_refused_from_its_header)
{
    struct hd *a = hd_new("nodeA", "--discovery-interval-ms", "100", NULL);
    struct hd *b = hd_new_peer(a, "other", NULL);
    char dir[H_PATH + 64], p[H_PATH + 128];
    unsigned char hdr[32] = "HCI1";
    FILE *f;

    hd_start(b); /* node "other" stores pages, sealed at its stop */
    ho_store(b, "fine");
    hd_stop(b);
    hd_start(a);
    ck_assert_int_eq(ho_read(a, "fine"), HO_PAGES); /* the valid index of "other" */
    long hwm0 = hd_status_kib(a, "VmHWM");
    snprintf(dir, sizeof(dir), "%s/hicache/other", a->mount);
    snprintf(p, sizeof(p), "%s/00000000ffff0001.idx", dir);
    hdr[4] = 1;                                             /* version */
    memcpy(hdr + 8, "\x01\x00\xff\xff\x00\x00\x00\x00", 8); /* seq 0xffff0001 */
    hdr[18] = 0x10;                                         /* segment bytes: 1 MiB */
    hdr[28] = 0xc0, hdr[29] = 0xc6, hdr[30] = 0x2d;         /* 3,000,000 entries */
    f = fopen(p, "w");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fwrite(hdr, 1, sizeof(hdr), f), sizeof(hdr));
    ck_assert_int_eq(ftruncate(fileno(f), 200ll << 20), 0);
    fclose(f);

    uint64_t t0 = h_now_ms();
    while (hd_stat(a, "idx_refused") < 1 && h_now_ms() - t0 < 5000)
        h_sleep_ms(50);
    ck_assert_int_eq(hd_stat(a, "idx_refused"), 1);
    long hwm1 = hd_status_kib(a, "VmHWM");
    fprintf(stderr, "peak memory %ld -> %ld KiB\n", hwm0, hwm1);
    ck_assert_int_gt(hwm0, 0);
    ck_assert_int_lt(hwm1 - hwm0, 32 * 1024);
    ck_assert_int_eq(ho_read(a, "fine"), HO_PAGES);
    hd_stop(a);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("integration_hostile");
    TCase *tc = h_tcase("hostile", 60);

    tcase_add_test(tc, test_fifo_index_of_another_node);
    tcase_add_test(tc, test_bad_index_refused_from_its_header);
    tcase_add_test(tc, test_fifo_segments_of_another_node);
    tcase_add_test(tc, test_bad_files_of_its_own_node);
    tcase_add_test(tc, test_bad_index_files_read_once);
    suite_add_tcase(s, tc);
    return h_run_suite(s);
}
