/* Integration: this node's keys file (daemon/keys.c), the exact entries other
 * nodes' fleet index will read (issue 14, item 3). A daemon with
 * keys_interval_ms publishes <mount>/hicache/<node>/keys once its segments
 * are sealed; every page a client stored is in it, and the entry leads to the
 * page's bytes in the segment file it names, read straight from the volume. */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "index.h"
#include "keysfile.h"

#define NPAGES 40

static size_t page_len(int i)
{
    return 8192 + (size_t)i * 1000; /* not block multiples: the record's padding */
}

/* Waits up to 15 s for the keys file in dir to list want pages; loads it
 * into k with its fd (the caller closes). Returns the fd or -1. */
static int keys_wait(const char *dir, uint64_t want, struct hc_keys *k)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/keys", dir);
    for (uint64_t end = h_now_ms() + 15000; h_now_ms() < end; h_sleep_ms(50)) {
        struct stat st;
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            continue;
        if (fstat(fd, &st) == 0 && hc_keys_load(fd, (uint64_t)st.st_size, k) == 0) {
            if (k->nents == want)
                return fd;
            hc_keys_free(k);
        }
        close(fd);
    }
    return -1;
}

START_TEST(test_keys_file_leads_to_the_bytes)
{
    struct hd *d = hd_new("keys-a", "--keys-interval-ms", "100", "--seal-interval-ms", "200",
                          "--segment-size", "1M", "--discovery-interval-ms", "100000", NULL);
    char key[64], dir[512], path[600];
    hc_client *c;
    struct hc_keys k;

    hd_start(d);
    c = hd_connect(d, "kf", 0);
    for (int i = 0; i < NPAGES; i++) {
        size_t len = page_len(i);
        char *buf = malloc(len);
        ck_assert_ptr_nonnull(buf);
        snprintf(key, sizeof(key), "keys-page-%d", i);
        h_fill(buf, len, key, 3);
        hc_buf b = {buf, len};
        hc_page p = {key, &b, 1};
        int res = 1;
        ck_assert_int_eq(hc_batch_set(c, &p, 1, &res), 1);
        ck_assert_int_eq(res, 0);
        free(buf);
    }
    snprintf(dir, sizeof(dir), "%s/hicache/keys-a", d->mount);
    int fd = keys_wait(dir, NPAGES, &k);
    ck_assert_msg(fd >= 0, "no keys file listing %d pages in %s within 15 s", NPAGES, dir);

    int wrong = 0, missing = 0;
    for (int i = 0; i < NPAGES; i++) {
        size_t len = page_len(i);
        struct hc_keys_ent e;
        snprintf(key, sizeof(key), "keys-page-%d", i);
        struct hc_hash h = hc_index_hash("kf", 2, key, strlen(key));
        if (hc_keys_lookup(&k, fd, h.lo, &e) != 0) {
            missing++;
            continue;
        }
        snprintf(path, sizeof(path), "%s/%016" PRIx64 ".seg", dir, k.seqs[e.seg]);
        int sfd = open(path, O_RDONLY | O_CLOEXEC);
        char *buf = malloc(len);
        ck_assert_ptr_nonnull(buf);
        /* the record: a 4 KiB header block, then the payload */
        if (sfd < 0 || e.len != len ||
            pread(sfd, buf, len, (off_t)e.off * 4096 + 4096) != (ssize_t)len ||
            h_check(buf, len, key, 3) >= 0)
            wrong++;
        free(buf);
        if (sfd >= 0)
            close(sfd);
    }
    ck_assert_msg(missing == 0 && wrong == 0, "%d pages not in the keys file, %d leading elsewhere",
                  missing, wrong);
    /* 40 pages of 8-47 KiB (1.1 MiB with headers) in 1 MiB segments */
    ck_assert_uint_ge(k.nsegs, 2);
    hc_keys_free(&k);
    close(fd);

    /* the same key is not in another node's namespace: a hash never stored */
    struct hc_keys_ent e;
    fd = keys_wait(dir, NPAGES, &k);
    ck_assert_int_ge(fd, 0);
    struct hc_hash other = hc_index_hash("other", 5, "keys-page-0", 11);
    ck_assert_int_eq(hc_keys_lookup(&k, fd, other.lo, &e), -ENOENT);
    hc_keys_free(&k);
    close(fd);
    hc_close(c);
    hd_stop(d);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("keys_publish");
    TCase *tc = h_tcase("keys_publish", 60);
    tcase_add_test(tc, test_keys_file_leads_to_the_bytes);
    suite_add_tcase(s, tc);
    return h_run_suite(s);
}
