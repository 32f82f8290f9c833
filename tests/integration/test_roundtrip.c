/* Integration: pages written and read back byte for byte through a real
 * daemon, by several client processes at once, in batches larger than the
 * shared region, and the per-key results of misses and mis-sized buffers. */
#include "harness.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RT_CLIENTS 8
#define RT_BATCH 128
#define RT_BATCHES 2
static const size_t rt_sizes[] = {65536, 12345};
#define RT_NSIZES (sizeof(rt_sizes) / sizeof(rt_sizes[0]))

/* One client process: for each page size, RT_BATCHES batches of 128 fresh
 * pages: set, exists, then get into differently split buffers and compare. */
static int rt_client(int idx, void *arg)
{
    const struct hd *d = arg;
    hc_client *c = NULL;
    hc_connect_opts o = {
        .ns = "integ-rt", .rank = (uint32_t)idx, .page_size_hint = 65536, .timeout_ms = 30000};
    int rc = hc_connect(&c, d->sock, &o);
    H_REQUIRE(rc == 0, "hc_connect: %s", hc_strerror(rc));
    h_barrier();
    for (size_t s = 0; s < RT_NSIZES; s++) {
        for (int b = 0; b < RT_BATCHES; b++) {
            char prefix[64];
            snprintf(prefix, sizeof(prefix), "rt-c%d-s%zu-b%d", idx, rt_sizes[s], b);
            struct h_batch w, r;
            H_REQUIRE(h_batch_init(&w, prefix, RT_BATCH, rt_sizes[s], 17u * idx + b) == 0, "oom");
            H_REQUIRE(h_batch_init(&r, prefix, RT_BATCH, rt_sizes[s], 991u * idx + b + 5) == 0,
                      "oom");
            h_batch_fill(&w, 1);
            rc = hc_batch_set(c, w.hc, w.n, w.results);
            H_REQUIRE(rc == RT_BATCH, "%s: hc_batch_set returned %d (%s)", prefix, rc,
                      rc < 0 ? hc_strerror(rc) : "not all stored");
            for (size_t i = 0; i < w.n; i++)
                H_REQUIRE(w.results[i] == 0, "%s: set result[%zu] = %d", prefix, i, w.results[i]);

            const char *keys[RT_BATCH];
            uint64_t lens[RT_BATCH];
            for (size_t i = 0; i < w.n; i++)
                keys[i] = w.pages[i].key;
            rc = hc_batch_exists(c, keys, w.n, lens);
            H_REQUIRE(rc == RT_BATCH, "%s: exists leading = %d", prefix, rc);
            for (size_t i = 0; i < w.n; i++)
                H_REQUIRE(lens[i] == rt_sizes[s], "%s: exists length[%zu] = %llu", prefix, i,
                          (unsigned long long)lens[i]);

            h_batch_zero(&r);
            rc = hc_batch_get(c, r.hc, r.n, r.results);
            H_REQUIRE(rc == RT_BATCH, "%s: hc_batch_get returned %d", prefix, rc);
            for (size_t i = 0; i < r.n; i++) {
                H_REQUIRE(r.results[i] == 0, "%s: get result[%zu] = %d", prefix, i, r.results[i]);
                long bad = h_page_check(&r.pages[i], 1);
                H_REQUIRE(bad < 0, "%s: page %zu differs at byte %ld", prefix, i, bad);
            }
            h_batch_free(&w);
            h_batch_free(&r);
        }
    }
    hc_close(c);
    return 0;
}

START_TEST(test_eight_clients_batches)
{
    struct hd *d = hd_new("A", NULL);
    hd_start(d);
    int failed = h_run_clients(RT_CLIENTS, rt_client, d);
    ck_assert_msg(failed == 0, "%d of %d client processes failed (see above)", failed, RT_CLIENTS);

    int64_t npages = (int64_t)RT_CLIENTS * RT_NSIZES * RT_BATCHES * RT_BATCH;
    int64_t nbytes = 0;
    for (size_t s = 0; s < RT_NSIZES; s++)
        nbytes += (int64_t)RT_CLIENTS * RT_BATCHES * RT_BATCH * (int64_t)rt_sizes[s];

    hc_client *c = hd_connect(d, "integ-rt", 65536);
    ck_assert_int_eq(h_stat(c, "pages"), npages);
    ck_assert_int_eq(h_stat(c, "bytes_stored"), nbytes);
    ck_assert_int_eq(h_stat(c, "sets"), npages);
    ck_assert_int_eq(h_stat(c, "dedup_hits"), 0);
    ck_assert_int_eq(h_stat(c, "bytes_written"), nbytes);
    ck_assert_int_eq(h_stat(c, "gets"), npages);
    ck_assert_int_eq(h_stat(c, "hits"), npages);
    ck_assert_int_eq(h_stat(c, "misses"), 0);
    ck_assert_int_eq(h_stat(c, "bytes_served"), nbytes);
    ck_assert_int_eq(h_stat(c, "corrupt_records"), 0);
    ck_assert_int_eq(h_stat(c, "set_errors"), 0);

    /* another process (this one) reads pages the clients wrote */
    struct h_batch r;
    ck_assert_int_eq(h_batch_init(&r, "rt-c5-s12345-b1", RT_BATCH, 12345, 4242), 0);
    h_batch_zero(&r);
    ck_assert_int_eq(hc_batch_get(c, r.hc, r.n, r.results), RT_BATCH);
    for (size_t i = 0; i < r.n; i++)
        ck_assert_msg(h_page_check(&r.pages[i], 1) < 0, "page %s differs", r.pages[i].key);
    h_batch_free(&r);
    ck_assert_int_eq(h_stat(c, "hits"), npages + RT_BATCH);
    hc_close(c);
}
END_TEST

/* region_size 1 MiB, 128 pages of 64 KiB (8 MiB): the library streams the
 * batch through the region; every byte comes back. */
START_TEST(test_batch_larger_than_region)
{
    struct hd *d = hd_new("A", "--region-size", "1048576", NULL);
    hd_start(d);
    hc_client *c = hd_connect(d, NULL, 65536);
    ck_assert_uint_eq(hc_region_size(c), 1048576);
    ck_assert_str_eq(hc_node_id(c), "A");

    struct h_batch w, r;
    ck_assert_int_eq(h_batch_init(&w, "big", 128, 65536, 7), 0);
    ck_assert_int_eq(h_batch_init(&r, "big", 128, 65536, 8), 0);
    h_batch_fill(&w, 99);
    ck_assert_int_eq(hc_batch_set(c, w.hc, w.n, w.results), 128);
    for (size_t i = 0; i < w.n; i++)
        ck_assert_int_eq(w.results[i], 0);
    ck_assert_int_eq(h_stat(c, "bytes_written"), 128 * 65536);
    ck_assert_int_eq(h_stat(c, "pages"), 128);

    h_batch_zero(&r);
    ck_assert_int_eq(hc_batch_get(c, r.hc, r.n, r.results), 128);
    for (size_t i = 0; i < r.n; i++) {
        ck_assert_int_eq(r.results[i], 0);
        long bad = h_page_check(&r.pages[i], 99);
        ck_assert_msg(bad < 0, "page %zu differs at byte %ld", i, bad);
    }
    ck_assert_int_eq(h_stat(c, "bytes_served"), 128 * 65536);

    /* the same through a second connection with a smaller page hint */
    hc_client *c2 = hd_connect(d, NULL, 0);
    h_batch_zero(&r);
    ck_assert_int_eq(hc_batch_get(c2, r.hc, r.n, r.results), 128);
    for (size_t i = 0; i < r.n; i++)
        ck_assert_msg(h_page_check(&r.pages[i], 99) < 0, "page %zu differs (2nd client)", i);
    hc_close(c2);
    h_batch_free(&w);
    h_batch_free(&r);
    hc_close(c);
}
END_TEST

/* Starts d, stores 128 pages of 64 KiB named prefix (filled from seed),
 * stops it (the segments sealed), drops the page cache and starts it again:
 * the next gets read cold files. Returns a client of the new start. */
static hc_client *stored_cold(struct hd *d, const char *prefix, uint64_t seed)
{
    struct h_batch w;
    hd_start(d);
    hc_client *c = hd_connect(d, NULL, 65536);
    ck_assert_int_eq(h_batch_init(&w, prefix, 128, 65536, 7), 0);
    h_batch_fill(&w, seed);
    ck_assert_int_eq(hc_batch_set(c, w.hc, w.n, w.results), 128);
    h_batch_free(&w);
    hc_close(c);
    hd_stop(d);
    h_drop_cache(d->mount);
    hd_start(d);
    return hd_connect(d, NULL, 65536);
}

/* Gets the 128 pages stored_cold stored and checks every byte, then that
 * some were read ahead or found in the page cache by the read-ahead path: at
 * least one, each once, no more than most. */
static void get_read_ahead(hc_client *c, const char *prefix, uint64_t seed, int64_t most)
{
    struct h_batch r;
    ck_assert_int_eq(h_batch_init(&r, prefix, 128, 65536, 8), 0);
    h_batch_zero(&r);
    ck_assert_int_eq(hc_batch_get(c, r.hc, r.n, r.results), 128);
    for (size_t i = 0; i < r.n; i++) {
        ck_assert_int_eq(r.results[i], 0);
        long bad = h_page_check(&r.pages[i], seed);
        ck_assert_msg(bad < 0, "page %zu differs at byte %ld", i, bad);
    }
    h_batch_free(&r);
    int64_t ahead = h_stat(c, "ahead_reads"), cached = h_stat(c, "ahead_cached");
    ck_assert_msg(ahead + cached > 0 && ahead + cached <= most, "%lld read ahead, %lld cached",
                  (long long)ahead, (long long)cached);
    ck_assert_int_ge(h_stat(c, "ahead_bytes"), ahead * 65536);
}

/* A get batch larger than the region names its later pages in the request
 * of the chunk that fills its region (GetRequest.ahead_keys, then a chunk's
 * worth more with each next one); with the threads engine the daemon reads
 * them ahead into the page cache (ahead_reads) unless it holds them
 * (ahead_cached), and every byte still comes back, from a cold file. A batch
 * the region holds names none. (That reads ahead put the bytes in the page
 * cache, in the file's stream: test_io's t_threads_read_ahead.) */
START_TEST(test_batch_read_ahead)
{
    struct hd *d = hd_new("A", "--region-size", "1048576", "--io-engine", "threads", "--io-threads",
                          "2", NULL);
    hc_client *c = stored_cold(d, "ra", 41);

    /* 8 pages: the region holds them, nothing named ahead */
    struct h_batch few;
    ck_assert_int_eq(h_batch_init(&few, "ra", 8, 65536, 9), 0);
    ck_assert_int_eq(hc_batch_get(c, few.hc, few.n, few.results), 8);
    ck_assert_int_eq(h_stat(c, "ahead_reads") + h_stat(c, "ahead_cached"), 0);
    h_batch_free(&few);

    /* each page named ahead once at most; read ahead, or found in the page
     * cache already (the kernel's own read-ahead of a local disk, 8 MiB on
     * the CI machine, takes in the whole 8 MiB batch) */
    get_read_ahead(c, "ra", 41, 120);
    ck_assert_int_eq(h_stat(c, "bytes_served"), (8 + 128) * 65536);
    hc_close(c);
}
END_TEST

/* A batch whose reads do not all fit max_inflight_bytes: those that wait
 * are read ahead meanwhile (into the page cache, in the order they wait), so
 * the threads see the whole batch's stretch of each file at once. The region
 * holds the batch: libhicache names nothing ahead. */
START_TEST(test_waiting_reads_read_ahead)
{
    struct hd *d = hd_new("A", "--region-size", "67108864", "--max-inflight-bytes", "1048576",
                          "--io-engine", "threads", "--io-threads", "2", NULL);
    hc_client *c = stored_cold(d, "wa", 43);

    /* 1 MiB holds 15 of the 128 reads: most waited, each read ahead once at
     * most, or found in the page cache (a local disk's own read-ahead) */
    get_read_ahead(c, "wa", 43, 128 - 15);
    ck_assert_int_eq(h_stat(c, "bytes_served"), 128 * 65536);
    hc_close(c);
}
END_TEST

/* A single page larger than the region gets -EMSGSIZE; the other pages of
 * the batch are stored. */
START_TEST(test_page_larger_than_region)
{
    struct hd *d = hd_new("A", "--region-size", "1048576", NULL);
    hd_start(d);
    hc_client *c = hd_connect(d, NULL, 0);
    ck_assert_uint_eq(hc_region_size(c), 1048576);

    size_t big = 2u << 20;
    char *bb = malloc(big), *sb = malloc(4096);
    ck_assert_ptr_nonnull(bb);
    ck_assert_ptr_nonnull(sb);
    h_fill(bb, big, "huge-page", 3);
    h_fill(sb, 4096, "small-page", 3);
    hc_buf b0 = {bb, big}, b1 = {sb, 4096};
    hc_page pages[2] = {{"huge-page", &b0, 1}, {"small-page", &b1, 1}};
    int res[2] = {1, 1};
    ck_assert_int_eq(hc_batch_set(c, pages, 2, res), 1);
    ck_assert_int_eq(res[0], -EMSGSIZE);
    ck_assert_int_eq(res[1], 0);

    const char *keys[2] = {"small-page", "huge-page"};
    uint64_t lens[2];
    ck_assert_int_eq(hc_batch_exists(c, keys, 2, lens), 1);
    ck_assert_uint_eq(lens[0], 4096);
    ck_assert_uint_eq(lens[1], 0);
    ck_assert_int_eq(h_stat(c, "pages"), 1);
    ck_assert_int_eq(h_stat(c, "bytes_written"), 4096);
    free(bb);
    free(sb);
    hc_close(c);
}
END_TEST

/* Exists over more keys than one request holds: libhicache splits them into
 * requests of max_batch keys and the leading count and lengths run on across
 * them; the packed form answers the same, and a malformed one is refused
 * before anything is sent. */
START_TEST(test_exists_across_requests)
{
    enum { N = 300, STORED = 250 };
    struct hd *d = hd_new("A", NULL);
    hd_start(d);
    hc_client *c = hd_connect(d, NULL, 4096);
    static char names[N][16], packed[N * 16];
    const char *keys[N];
    uint64_t lens[N], plens[N];
    size_t plen = 0;

    for (int i = 0; i < N; i++) {
        snprintf(names[i], sizeof(names[i]), "ex-%d", i);
        keys[i] = names[i];
        plen += (size_t)snprintf(packed + plen, sizeof(packed) - plen, "%s", names[i]) + 1;
    }
    for (int i = 0; i < STORED; i++) {
        char buf[100 + N];
        size_t len = 100 + (size_t)i;
        h_fill(buf, len, names[i], 1);
        hc_buf b = {buf, len};
        hc_page p = {names[i], &b, 1};
        int res = 1;
        if (i == 7)
            continue; /* a hole: the leading count stops there */
        ck_assert_int_eq(hc_batch_set(c, &p, 1, &res), 1);
    }
    ck_assert_int_eq(hc_batch_exists(c, keys, N, lens), 7);
    ck_assert_int_eq(hc_batch_exists_packed(c, packed, plen, N, plens), 7);
    for (int i = 0; i < N; i++) {
        uint64_t want = i < STORED && i != 7 ? 100 + (uint64_t)i : 0;
        ck_assert_msg(lens[i] == want, "key %d: length %llu, want %llu", i,
                      (unsigned long long)lens[i], (unsigned long long)want);
        ck_assert_msg(plens[i] == want, "packed key %d: length %llu, want %llu", i,
                      (unsigned long long)plens[i], (unsigned long long)want);
    }
    /* the first 7 alone, and from key 8 on: every stored key leads */
    ck_assert_int_eq(hc_batch_exists(c, keys, 7, NULL), 7);
    ck_assert_int_eq(hc_batch_exists(c, keys + 8, STORED - 8, NULL), STORED - 8);
    /* malformed packed calls: no trailing NUL, a NUL count other than n */
    ck_assert_int_eq(hc_batch_exists_packed(c, packed, plen - 1, N, NULL), -EINVAL);
    ck_assert_int_eq(hc_batch_exists_packed(c, packed, plen, N - 1, NULL), -EINVAL);
    ck_assert_int_eq(hc_batch_exists_packed(c, packed, 0, 1, NULL), -EINVAL);
    ck_assert_int_eq(hc_batch_exists_packed(c, NULL, 0, 0, NULL), 0);
    /* an invalid key: the daemon's -EINVAL, and the connection goes on */
    ck_assert_int_eq(hc_batch_exists_packed(c, "ex-0\0bad/key\0", 13, 2, NULL), -EINVAL);
    ck_assert_int_eq(hc_ping(c), 0);
    ck_assert_int_eq(hc_batch_exists_packed(c, packed, plen, N, NULL), 7);
    hc_close(c);
}
END_TEST

/* A get's copy out of the region takes one of several paths by where its
 * target lies against the slot in a 4 KiB page (non-temporal or plain
 * stores; libhicache moves a big page's slot to suit its first buffer when
 * the daemon takes any slot offset, and leaves it page-aligned for a daemon
 * using O_DIRECT): pages of 1 MiB and 64 KiB, in two buffers, read into
 * targets at offsets around the page from 0 to 4095 come back byte-exact,
 * with no byte written past them, each at the first try (a CRC computed
 * wrongly in the copy would make libhicache ask for the page again). */
START_TEST(test_get_target_offsets)
{
    static const size_t offs[] = {0, 3, 8, 16, 64, 200, 256, 2048, 2051, 4032, 4040, 4088, 4095};
    static const size_t lens[] = {1u << 20, 65536};
    struct hd *d = _i ? hd_new("A", "--use-direct-io", "true", NULL) : hd_new("A", NULL);
    hd_start(d);
    hc_client *c = hd_connect(d, NULL, 1u << 20);
    size_t n = sizeof(offs) / sizeof(offs[0]);

    for (size_t l = 0; l < 2; l++) {
        size_t len = lens[l], half = len / 2, cap = len + 2 * 4096;
        char keys[13][32];
        unsigned char *src = malloc(len), *dst[13];
        hc_buf sb[2] = {{src, half}, {src + half, len - half}}, db[13][2];
        hc_page sp[13], dp[13];
        int res[13];

        ck_assert_ptr_nonnull(src);
        for (size_t i = 0; i < n; i++) {
            snprintf(keys[i], sizeof(keys[i]), "off%zu_%zu", l, i);
            h_fill(src, len, keys[i], 5);
            sp[i] = (hc_page){keys[i], sb, 2};
            ck_assert_int_eq(hc_batch_set(c, &sp[i], 1, res), 1);
            dst[i] = aligned_alloc(4096, cap);
            ck_assert_ptr_nonnull(dst[i]);
            memset(dst[i], 0xa5, cap);
            /* the second buffer 8 bytes past the first one's end */
            db[i][0] = (hc_buf){dst[i] + offs[i], half};
            db[i][1] = (hc_buf){dst[i] + offs[i] + half + 8, len - half};
            dp[i] = (hc_page){keys[i], db[i], 2};
        }
        int64_t hits = h_stat(c, "hits");
        ck_assert_int_eq(hc_batch_get(c, dp, n, res), (int)n);
        ck_assert_int_eq(h_stat(c, "hits") - hits, (int64_t)n);
        for (size_t i = 0; i < n; i++) {
            ck_assert_int_eq(res[i], 0);
            h_fill(src, len, keys[i], 5);
            ck_assert_int_eq(memcmp(db[i][0].base, src, half), 0);
            ck_assert_int_eq(memcmp(db[i][1].base, src + half, len - half), 0);
            size_t b0 = offs[i], b1 = offs[i] + half + 8, e1 = b1 + (len - half), bad = cap;
            for (size_t q = 0; q < cap && bad == cap; q++)
                if ((q < b0 || (q >= b0 + half && q < b1) || q >= e1) && dst[i][q] != 0xa5)
                    bad = q;
            ck_assert_msg(bad == cap, "page %zu at offset %zu: byte %zu written", i, offs[i], bad);
            free(dst[i]);
        }
        free(src);
    }
    hc_close(c);
}
END_TEST

/* hc_batch_get per-key results: a miss leaves the buffers untouched; buffers
 * shorter than the page give -ENOSPC, longer ones -EMSGSIZE (untouched). */
START_TEST(test_get_miss_and_sizes)
{
    struct hd *d = hd_new("A", NULL);
    hd_start(d);
    hc_client *c = hd_connect(d, NULL, 65536);

    size_t len = 12345;
    char *w = malloc(len);
    ck_assert_ptr_nonnull(w);
    h_fill(w, len, "sized", 5);
    hc_buf wb = {w, len};
    hc_page wp = {"sized", &wb, 1};
    int res = 1;
    ck_assert_int_eq(hc_batch_set(c, &wp, 1, &res), 1);
    ck_assert_int_eq(res, 0);

    char *miss = malloc(len), *shortb = malloc(len - 1), *longb = malloc(len + 100);
    char *exact = malloc(len);
    ck_assert(miss && shortb && longb && exact);
    memset(miss, 0x5a, len);
    memset(longb, 0x5a, len + 100);
    memset(exact, 0, len);
    hc_buf mb = {miss, len}, sbuf = {shortb, len - 1}, lb = {longb, len + 100};
    hc_buf eb[2] = {{exact, 100}, {exact + 100, len - 100}};
    hc_page gp[4] = {
        {"never-written", &mb, 1}, {"sized", &sbuf, 1}, {"sized", &lb, 1}, {"sized", eb, 2}};
    int gr[4] = {1, 1, 1, 1};
    ck_assert_int_eq(hc_batch_get(c, gp, 4, gr), 1);
    ck_assert_int_eq(gr[0], -ENOENT);
    ck_assert_int_eq(gr[1], -ENOSPC);
    ck_assert_int_eq(gr[2], -EMSGSIZE);
    ck_assert_int_eq(gr[3], 0);
    for (size_t i = 0; i < len; i++)
        ck_assert_msg((uint8_t)miss[i] == 0x5a, "miss buffer changed at %zu", i);
    for (size_t i = 0; i < len + 100; i++)
        ck_assert_msg((uint8_t)longb[i] == 0x5a, "too-long buffer changed at %zu", i);
    ck_assert_msg(h_check(exact, len, "sized", 5) < 0, "hit bytes differ");
    ck_assert_int_eq(h_stat(c, "misses"), 1);
    free(w);
    free(miss);
    free(shortb);
    free(longb);
    free(exact);
    hc_close(c);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("integration_roundtrip");
    TCase *tc = h_tcase("roundtrip", 90);
    tcase_add_test(tc, test_eight_clients_batches);
    tcase_add_test(tc, test_batch_larger_than_region);
    tcase_add_test(tc, test_batch_read_ahead);
    tcase_add_test(tc, test_waiting_reads_read_ahead);
    tcase_add_test(tc, test_page_larger_than_region);
    tcase_add_test(tc, test_get_miss_and_sizes);
    tcase_add_test(tc, test_exists_across_requests);
    tcase_add_loop_test(tc, test_get_target_offsets, 0, 2);
    suite_add_tcase(s, tc);
    return h_run_suite(s);
}
