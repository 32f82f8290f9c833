/* A node's keys file (daemon/keysfile.c): every entry written is found with
 * its fields, a hash never written is not (also those a cuckoo filter of the
 * same pages answers "maybe" for: a filter's false positive becomes a miss),
 * what a reader keeps per page, and broken or hostile files: refused whole,
 * or a bad block answered as not there. Hashes of real keys (hc_index_hash),
 * as the daemon's. */
#include <check.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crc32c.h"
#include "filter.h"
#include "keysfile.h"

static struct hc_hash page(unsigned node, uint64_t j)
{
    char key[64];
    int n = snprintf(key, sizeof(key), "p%u-%llu", node, (unsigned long long)j);
    return hc_index_hash("fleet", 5, key, (size_t)n);
}

static int tmpfile_fd(void)
{
    char path[] = "/tmp/test_keys.XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    unlink(path);
    return fd;
}

static uint64_t fd_size(int fd)
{
    struct stat st;
    ck_assert_int_eq(fstat(fd, &st), 0);
    return (uint64_t)st.st_size;
}

/* n entries of node 1's pages over nsegs segments, written to a new file. */
static int write_keys(size_t n, uint32_t nsegs, struct hc_keys_ent **out)
{
    struct hc_keys_ent *e = calloc(n ? n : 1, sizeof(*e));
    uint64_t *seqs = calloc(nsegs ? nsegs : 1, sizeof(*seqs));
    int fd = tmpfile_fd();
    ck_assert(e && seqs);
    for (uint32_t i = 0; i < nsegs; i++)
        seqs[i] = 0x1000 + 7 * (uint64_t)i;
    for (size_t j = 0; j < n; j++)
        e[j] = (struct hc_keys_ent){.h = page(1, j).lo,
                                    .seg = (uint32_t)(j % nsegs),
                                    .off = (uint32_t)(j * 3),
                                    .len = (uint32_t)(4096 + j % 1000),
                                    .flags = (uint16_t)(j & 0x7fff)};
    ck_assert_int_eq(hc_keys_write(fd, seqs, nsegs, e, n), 0);
    free(seqs);
    *out = e;
    return fd;
}

/* Every entry written comes back whole; pages never written are not found,
 * including every one a filter of the written pages calls "maybe"; a reader
 * keeps about 0.05 byte a page. */
START_TEST(test_round_trip_and_misses)
{
    const size_t n = 200000, probes = 2000000;
    const uint32_t nsegs = 61;
    struct hc_keys_ent *e;
    struct hc_keys k;
    int fd = write_keys(n, nsegs, &e);
    size_t bad = 0, found = 0, fps = 0, fp_found = 0;

    ck_assert_int_eq(hc_keys_load(fd, fd_size(fd), &k), 0);
    ck_assert_uint_eq(k.nents, n);
    ck_assert_uint_eq(k.nsegs, nsegs);
    ck_assert_uint_eq(k.seqs[5], 0x1000 + 35);
    for (size_t j = 0; j < n; j++) {
        struct hc_keys_ent got;
        /* e was sorted by the write: look each up by its own hash */
        if (hc_keys_lookup(&k, fd, e[j].h, &got) != 0 || got.seg != e[j].seg ||
            got.off != e[j].off || got.len != e[j].len || got.flags != e[j].flags)
            bad++;
    }
    ck_assert_msg(bad == 0, "%zu of %zu entries not found whole", bad, n);

    struct hc_cfilter f;
    ck_assert_int_eq(hc_cfilter_init(&f, n), 0);
    for (size_t j = 0; j < n; j++)
        ck_assert_int_eq(hc_cfilter_add(&f, page(1, j)), 0);
    for (size_t j = 0; j < probes; j++) {
        struct hc_hash h = page(2, j);
        struct hc_keys_ent got;
        int rc = hc_keys_lookup(&k, fd, h.lo, &got);
        found += rc != -ENOENT;
        if (hc_cfilter_maybe(&f, h)) {
            fps++;
            fp_found += rc != -ENOENT;
        }
    }
    size_t table = k.nsegs * sizeof(*k.seqs) + k.nblocks * sizeof(*k.blocks);
    printf("keys file: %zu entries, %u blocks, reader keeps %.3f bytes a page; %zu of %zu "
           "absent pages the filter called 'maybe', all looked up: %zu found\n",
           n, k.nblocks, (double)table / (double)n, fps, probes, fp_found);
    ck_assert_msg(found == 0, "%zu pages never written were found", found);
    ck_assert_msg(fps > 0, "no false positive met: the test checks nothing");
    ck_assert(table < n / 8); /* < 0.125 bytes a page */
    hc_cfilter_free(&f);
    hc_keys_free(&k);
    free(e);
    close(fd);
}
END_TEST

/* No entries: a valid file where nothing is found. A segment index outside
 * the table is refused at write. */
START_TEST(test_empty_and_bad_write)
{
    struct hc_keys_ent *e;
    struct hc_keys k;
    struct hc_keys_ent got;
    int fd = write_keys(0, 3, &e);

    ck_assert_int_eq(hc_keys_load(fd, fd_size(fd), &k), 0);
    ck_assert_int_eq(hc_keys_lookup(&k, fd, page(1, 0).lo, &got), -ENOENT);
    hc_keys_free(&k);
    free(e);
    close(fd);

    uint64_t seq = 1;
    struct hc_keys_ent one = {.h = 5, .seg = 1};
    fd = tmpfile_fd();
    ck_assert_int_eq(hc_keys_write(fd, &seq, 1, &one, 1), -EINVAL);
    ck_assert_uint_eq(fd_size(fd), 0);
    close(fd);
}
END_TEST

/* Entries of one hash across a block edge (a 64-bit collision, or a key in
 * two segments) are found. */
START_TEST(test_equal_hashes_across_blocks)
{
    const size_t n = 3 * HC_KEYS_PER_BLOCK;
    struct hc_keys_ent *e = calloc(n, sizeof(*e));
    uint64_t seq = 9;
    struct hc_keys k;
    struct hc_keys_ent got;
    int fd = tmpfile_fd();

    for (size_t j = 0; j < n; j++)
        e[j] = (struct hc_keys_ent){.h = j < HC_KEYS_PER_BLOCK - 5   ? j
                                         : j < HC_KEYS_PER_BLOCK + 5 ? 1000
                                                                     : 1000 + j,
                                    .off = (uint32_t)j};
    ck_assert_int_eq(hc_keys_write(fd, &seq, 1, e, n), 0);
    ck_assert_int_eq(hc_keys_load(fd, fd_size(fd), &k), 0);
    ck_assert_int_eq(hc_keys_lookup(&k, fd, 1000, &got), 0);
    ck_assert_uint_eq(got.h, 1000);
    ck_assert_int_eq(hc_keys_lookup(&k, fd, 7, &got), 0);
    ck_assert_int_eq(hc_keys_lookup(&k, fd, 999, &got), -ENOENT);
    ck_assert_int_eq(hc_keys_lookup(&k, fd, 1000 + n - 1, &got), 0);
    ck_assert_int_eq(hc_keys_lookup(&k, fd, 1000 + n, &got), -ENOENT);
    hc_keys_free(&k);
    free(e);
    close(fd);
}
END_TEST

/* Copies the file on fd into a new one, with byte at flipped (or cut to len
 * bytes when len is not 0). */
static int broken_copy(int fd, uint64_t at, uint64_t len)
{
    uint64_t size = fd_size(fd);
    unsigned char *buf = malloc(size);
    int out = tmpfile_fd();
    ck_assert(buf);
    ck_assert_int_eq(pread(fd, buf, size, 0), (ssize_t)size);
    if (len)
        size = len;
    else
        buf[at] ^= 0x20;
    ck_assert_int_eq(pwrite(out, buf, size, 0), (ssize_t)size);
    free(buf);
    return out;
}

/* A file cut short, a flipped bit in its header or tables, a header that
 * claims 2^28 entries in a small file: refused whole (nothing big
 * allocated). A flipped bit in an entry: that block's lookups answer
 * -EBADMSG, the other blocks' are still found. */
START_TEST(test_hostile_files)
{
    const size_t n = 10 * HC_KEYS_PER_BLOCK;
    struct hc_keys_ent *e;
    struct hc_keys k;
    struct hc_keys_ent got;
    int fd = write_keys(n, 4, &e), bad;
    uint64_t size = fd_size(fd);

    ck_assert_int_eq(hc_keys_load(fd, size, &k), 0);
    uint64_t ents_off = k.ents_off;
    hc_keys_free(&k);

    bad = broken_copy(fd, 0, size - 1);
    ck_assert_int_eq(hc_keys_load(bad, size - 1, &k), -EBADMSG);
    /* the file shrank after its size was taken: the lost block is not found */
    ck_assert_int_eq(hc_keys_load(bad, size, &k), 0);
    ck_assert_int_eq(hc_keys_lookup(&k, bad, e[n - 1].h, &got), -EBADMSG);
    ck_assert_int_eq(hc_keys_lookup(&k, bad, e[0].h, &got), 0);
    hc_keys_free(&k);
    close(bad);
    const uint64_t flips[] = {0, 9, 17, 33, 64 + 3, ents_off - 5};
    for (size_t i = 0; i < sizeof(flips) / sizeof(flips[0]); i++) {
        bad = broken_copy(fd, flips[i], 0);
        ck_assert_msg(hc_keys_load(bad, size, &k) == -EBADMSG, "flip at %llu accepted",
                      (unsigned long long)flips[i]);
        close(bad);
    }

    /* 2^28 entries claimed, header CRC made right: refused by size */
    unsigned char h[64];
    bad = broken_copy(fd, 0, 64);
    ck_assert_int_eq(pread(bad, h, 64, 0), 64);
    uint64_t claim = 1ull << 28, blocks = (claim + HC_KEYS_PER_BLOCK - 1) / HC_KEYS_PER_BLOCK;
    for (int i = 0; i < 8; i++)
        h[8 + i] = (unsigned char)(claim >> (8 * i));
    for (int i = 0; i < 4; i++)
        h[20 + i] = (unsigned char)(blocks >> (8 * i));
    uint32_t crc = hc_crc32c(0, h, 32);
    for (int i = 0; i < 4; i++)
        h[32 + i] = (unsigned char)(crc >> (8 * i));
    ck_assert_int_eq(pwrite(bad, h, 64, 0), 64);
    ck_assert_int_eq(hc_keys_load(bad, 64, &k), -EBADMSG);
    close(bad);

    /* an entry of block 3 flipped: block 3 answers -EBADMSG, block 5 is fine */
    size_t in3 = 3 * HC_KEYS_PER_BLOCK + 17, in5 = 5 * HC_KEYS_PER_BLOCK + 2;
    bad = broken_copy(fd, ents_off + in3 * HC_KEYS_ENT + 13, 0);
    ck_assert_int_eq(hc_keys_load(bad, size, &k), 0);
    ck_assert_int_eq(hc_keys_lookup(&k, bad, e[in3].h, &got), -EBADMSG);
    ck_assert_int_eq(hc_keys_lookup(&k, bad, e[in3 - 10].h, &got), -EBADMSG);
    ck_assert_int_eq(hc_keys_lookup(&k, bad, e[in5].h, &got), 0);
    ck_assert_uint_eq(got.off, e[in5].off);
    hc_keys_free(&k);
    close(bad);
    free(e);
    close(fd);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("keys");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_round_trip_and_misses);
    tcase_add_test(tc, test_empty_and_bad_write);
    tcase_add_test(tc, test_equal_hashes_across_blocks);
    tcase_add_test(tc, test_hostile_files);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
