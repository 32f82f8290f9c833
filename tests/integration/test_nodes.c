/* Integration: two daemons with different node ids on one directory (two
 * nodes on one shared volume) find each other's pages; node A evicting its
 * segments makes node B answer misses, never wrong bytes; node A killed
 * mid-write never makes node B serve a torn page.
 *
 * Run locally, both daemons share one directory. With HICACHE_TEST_DATA_ROOT
 * and HICACHE_TEST_PEER_ROOT on two mounts of one JuiceFS volume (see
 * tests/juicefs/test_suites_on_juicefs.sh), node B reads through the second
 * mount: two real nodes. */
#include "harness.h"

#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define ND_PAGES 16
#define ND_LEN 20000

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Files in dir whose name ends with suffix. */
static int h_count_files(const char *dir, const char *suffix)
{
    DIR *dh = opendir(dir);
    struct dirent *de;
    int n = 0;
    size_t sl = strlen(suffix);
    ck_assert_ptr_nonnull(dh);
    while ((de = readdir(dh))) {
        size_t l = strlen(de->d_name);
        n += l > sl && !strcmp(de->d_name + l - sl, suffix);
    }
    closedir(dh);
    return n;
}

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

/* Pages of node A's open segment are visible on node B before any seal
 * (A seals only after an hour): A publishes the segment's tail index every
 * 100 ms, B's discovery takes it and again when it grew. B reads them byte
 * for byte, pages set later into the same segment too, and after A stops
 * (the seal replaces the tail index) still. The delays are printed. */
START_TEST(test_open_segment_visible_on_b)
{
    /* HICACHE_VIS_MS (scripts/bench/visibility.sh): another visibility_ms */
    const char *vis = getenv("HICACHE_VIS_MS") ? getenv("HICACHE_VIS_MS") : "200";
    struct hd *a = hd_new("nodeA", "--seal-interval-ms", "3600000", "--visibility-ms", vis, NULL);
    struct hd *b =
        hd_new_peer(a, "nodeB", "--seal-interval-ms", "3600000", "--visibility-ms", vis, NULL);
    char path[H_PATH + 64];

    /* HICACHE_VIS_ROUNDS (scripts/bench/visibility.sh): more rounds */
    const char *env = getenv("HICACHE_VIS_ROUNDS");
    int rounds = env && atoi(env) > 3 ? atoi(env) : 3;
    uint64_t *ms = calloc((size_t)rounds, sizeof(*ms));

    hd_start(a);
    hd_start(b);
    for (int round = 0; round < rounds; round++) {
        char prefix[32];
        snprintf(prefix, sizeof(prefix), "tail%d", round);
        uint64_t t0 = h_now_ms();
        nd_write(a, prefix, 40 + (uint64_t)round);
        int lead = nd_wait_visible(b, prefix, 10000);
        ms[round] = h_now_ms() - t0;
        ck_assert_int_eq(lead, ND_PAGES);
        for (int r = round < 3 ? 0 : round; r <= round; r++) {
            char p2[32];
            snprintf(p2, sizeof(p2), "tail%d", r);
            nd_read(b, p2, 40 + (uint64_t)r);
        }
    }
    qsort(ms, (size_t)rounds, sizeof(*ms), cmp_u64);
    const char *out = getenv("HICACHE_VIS_OUT"); /* scripts/bench/visibility.sh */
    FILE *of = out ? fopen(out, "a") : NULL;
    for (FILE *f = stderr; f; f = f == stderr ? of : NULL)
        fprintf(f,
                "open segment: %d rounds of %d pages, visible on B after p50 %llu ms, p99 %llu ms, "
                "max %llu ms (visibility_ms %s; polled every 50 ms)\n",
                rounds, ND_PAGES, (unsigned long long)ms[rounds / 2],
                (unsigned long long)ms[(rounds * 99) / 100], (unsigned long long)ms[rounds - 1],
                vis);
    if (of)
        fclose(of);
    free(ms);
    rounds = rounds < 3 ? rounds : 3;
    ck_assert_int_eq(hd_stat(a, "segments") >= 1, 1);
    ck_assert_int_gt(hd_stat(a, "tail_publishes"), 0);
    /* the rounds after the first wrote into the chunk a publish had cut
     * already: their publishes came late (tail.c), and are counted so */
    ck_assert_int_ge(hd_stat(a, "tail_late_publishes"), 1);
    ck_assert_int_lt(hd_stat(a, "tail_late_publishes"), hd_stat(a, "tail_publishes"));
    /* nothing sealed yet: no .idx of A's, only its tail index */
    snprintf(path, sizeof(path), "%s/hicache/nodeA", a->mount);
    ck_assert_int_eq(h_count_files(path, ".idx"), 0);
    ck_assert_int_ge(h_count_files(path, ".tidx"), 1);
    hd_stop(a); /* seals: the .idx replaces the tail index */
    ck_assert_int_ge(h_count_files(path, ".idx"), 1);
    ck_assert_int_eq(h_count_files(path, ".tidx"), 0);
    h_sleep_ms(500);
    for (int r = 0; r < rounds; r++) {
        char p2[32];
        snprintf(p2, sizeof(p2), "tail%d", r);
        nd_read(b, p2, 40 + (uint64_t)r);
    }
    ck_assert_int_eq(hd_stat(b, "corrupt_records"), 0);
    hd_stop(b);
}
END_TEST

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

/* ---- node A evicts, node B follows -------------------------------------- */

#define EV_LEN 65536
#define EV_BATCH 16   /* 1 MiB a batch */
#define EV_FIRST 3    /* batches written before the eviction starts */
#define EV_BATCHES 20 /* 20 MiB in all, capacity 4 MiB */
#define EV_SALT 41
#define EV_SETTLE_MS 15000 /* B follows A's evictions within this */

static void ev_prefix(char *buf, size_t n, int b)
{
    snprintf(buf, n, "ev-b%d", b);
}

/* Reads batch b through c: returns a bit mask of the hits; every hit must hold
 * the exact bytes, every other answer must be a miss. In the test process
 * (child false) asserts with Check, in a child with H_REQUIRE. */
static uint32_t ev_read(hc_client *c, const char *who, int b, bool child)
{
    char prefix[32];
    ev_prefix(prefix, sizeof(prefix), b);
    struct h_batch r;
    int rc = h_batch_init(&r, prefix, EV_BATCH, EV_LEN, 700u + (unsigned)b);
    if (child)
        H_REQUIRE(rc == 0, "oom");
    else
        ck_assert_int_eq(rc, 0);
    h_batch_zero(&r);
    rc = hc_batch_get(c, r.hc, r.n, r.results);
    if (child)
        H_REQUIRE(rc >= 0, "%s: hc_batch_get: %s", who, hc_strerror(rc));
    else
        ck_assert_msg(rc >= 0, "%s: hc_batch_get: %s", who, hc_strerror(rc));
    uint32_t hits = 0;
    for (size_t i = 0; i < r.n; i++) {
        int res = r.results[i];
        long bad = res == 0 ? h_page_check(&r.pages[i], EV_SALT) : -1;
        if (child) {
            H_REQUIRE(res == 0 || res == -ENOENT, "%s: get %s: %s", who, r.pages[i].key,
                      hc_strerror(res));
            H_REQUIRE(bad < 0, "%s: page %s has wrong bytes at offset %ld", who, r.pages[i].key,
                      bad);
        } else {
            ck_assert_msg(res == 0 || res == -ENOENT, "%s: get %s: %s", who, r.pages[i].key,
                          hc_strerror(res));
            ck_assert_msg(bad < 0, "%s: page %s has wrong bytes at offset %ld", who, r.pages[i].key,
                          bad);
        }
        if (res == 0)
            hits |= 1u << i;
    }
    h_batch_free(&r);
    return hits;
}

/* Node B's reader: a child that reads every batch in a loop, checking every
 * page it gets byte for byte with read(), until told to stop. */
struct ev_reader {
    const struct hd *d;
    uint32_t (*read)(hc_client *c, const char *who, int b, bool child); /* hits of batch b */
    uint64_t page_len;
    int batches;
    int stop_r;  /* readable (EOF) once the reader is to stop */
    int stop_w;  /* its write end: the reader closes its inherited copy */
    int count_w; /* the reader writes its number of verified hits here */
};

static int ev_reader_fn(int idx, void *arg)
{
    struct ev_reader *a = arg;
    close(a->stop_w);
    hc_client *c = NULL;
    hc_connect_opts o = {.page_size_hint = a->page_len, .timeout_ms = 20000};
    int rc = hc_connect(&c, a->d->sock, &o);
    H_REQUIRE(rc == 0, "hc_connect: %s", hc_strerror(rc));
    int64_t verified = 0;
    for (;;) {
        struct pollfd pfd = {.fd = a->stop_r, .events = POLLIN};
        if (poll(&pfd, 1, 0) > 0)
            break;
        for (int b = 0; b < a->batches; b++)
            verified += __builtin_popcount(a->read(c, "node B reader", b, true));
    }
    hc_close(c);
    while (write(a->count_w, &verified, sizeof(verified)) < 0 && errno == EINTR)
        ;
    return 0;
}

/* Starts node B's reader in a child (r's d, read, page_len and batches set). */
static pid_t ev_reader_start(struct ev_reader *r, int *stop_w, int *count_r)
{
    int sp[2], cp[2];
    ck_assert_int_eq(pipe(sp), 0);
    ck_assert_int_eq(pipe(cp), 0);
    r->stop_r = sp[0];
    r->stop_w = sp[1];
    r->count_w = cp[1];
    pid_t pid = h_fork(ev_reader_fn, 0, r);
    close(sp[0]);
    close(cp[1]);
    *stop_w = sp[1];
    *count_r = cp[0];
    return pid;
}

/* Stops the reader; asserts it passed; returns the hits it verified. */
static int64_t ev_reader_stop(pid_t pid, int stop_w, int count_r)
{
    close(stop_w);
    int st = h_wait_pid(pid, 120000);
    ck_assert_msg(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0,
                  "node B's reader failed (see its message above)");
    int64_t n = -1;
    ck_assert_int_eq(read(count_r, &n, sizeof(n)), (ssize_t)sizeof(n));
    close(count_r);
    return n;
}

START_TEST(test_eviction_on_a_is_a_miss_on_b)
{
    struct hd *a = hd_new("nodeA", "--segment-size", "1048576", "--capacity-bytes", "4194304",
                          "--seal-interval-ms", "100", "--discovery-interval-ms", "100", NULL);
    struct hd *b = hd_new_peer(a, "nodeB", "--seal-interval-ms", "100", "--discovery-interval-ms",
                               "100", NULL);
    hd_start(a);
    hd_start(b);
    hc_client *ca = hd_connect(a, NULL, EV_LEN);
    hc_client *cb = hd_connect(b, NULL, EV_LEN);
    const uint32_t full = (1u << EV_BATCH) - 1;
    struct ev_reader rd;
    pid_t reader = 0;
    int stop_w = -1, count_r = -1;

    for (int bt = 0; bt < EV_BATCHES; bt++) {
        char prefix[32];
        ev_prefix(prefix, sizeof(prefix), bt);
        struct h_batch w;
        ck_assert_int_eq(h_batch_init(&w, prefix, EV_BATCH, EV_LEN, (uint64_t)bt), 0);
        h_batch_fill(&w, EV_SALT);
        int rc = hc_batch_set(ca, w.hc, w.n, w.results);
        ck_assert_msg(rc == EV_BATCH, "node A: batch %d: hc_batch_set returned %d", bt, rc);
        h_batch_free(&w);
        if (bt != EV_FIRST - 1)
            continue;
        /* Before any eviction: node B sees the first batch, exact. */
        uint64_t end = h_now_ms() + EV_SETTLE_MS;
        uint32_t got;
        while ((got = ev_read(cb, "node B", 0, false)) != full && h_now_ms() < end)
            h_sleep_ms(50);
        ck_assert_msg(got == full, "node B sees pages %#x of node A's first batch after %d ms", got,
                      EV_SETTLE_MS);
        ck_assert_int_eq(h_stat(ca, "evicted_pages"), 0);
        /* From here on, node B reads everything in a loop while A evicts. */
        rd = (struct ev_reader){.d = b, .read = ev_read, .page_len = EV_LEN, .batches = EV_BATCHES};
        reader = ev_reader_start(&rd, &stop_w, &count_r);
    }
    ck_assert_int_gt(h_stat(ca, "evicted_segments"), 0);
    ck_assert_int_eq(ev_read(ca, "node A", 0, false), 0);

    /* Node B follows: once discovery has run, B hits exactly what A hits
     * (A's last pages once A has sealed them), and misses what A evicted. */
    uint32_t ma[EV_BATCHES], mb[EV_BATCHES];
    int differ = -1;
    uint64_t t0 = h_now_ms(), end = t0 + EV_SETTLE_MS;
    for (;;) {
        differ = -1;
        for (int bt = 0; bt < EV_BATCHES; bt++) {
            ma[bt] = ev_read(ca, "node A", bt, false);
            mb[bt] = ev_read(cb, "node B", bt, false);
            if (ma[bt] != mb[bt] && differ < 0)
                differ = bt;
        }
        if (differ < 0 || h_now_ms() >= end)
            break;
        h_sleep_ms(50);
    }
    ck_assert_msg(differ < 0,
                  "after %d ms node B still differs from node A on batch %d: A hits %#x, B hits "
                  "%#x",
                  EV_SETTLE_MS, differ, differ >= 0 ? ma[differ] : 0, differ >= 0 ? mb[differ] : 0);
    fprintf(stderr,
            "test_eviction_on_a_is_a_miss_on_b: node B agreed with node A %llu ms after "
            "A's last write\n",
            (unsigned long long)(h_now_ms() - t0));
    ck_assert_uint_eq(mb[0], 0);
    ck_assert_uint_eq(mb[1], 0);
    ck_assert_uint_eq(mb[EV_BATCHES - 1], full);
    int hits = 0;
    for (int bt = 0; bt < EV_BATCHES; bt++)
        hits += __builtin_popcount(mb[bt]);
    ck_assert_int_eq(h_stat(ca, "pages"), hits);
    ck_assert_int_eq(h_stat(cb, "remote_pages"), hits);
    ck_assert_int_eq(h_stat(cb, "corrupt_records"), 0);

    int64_t verified = ev_reader_stop(reader, stop_w, count_r);
    ck_assert_int_gt(verified, 0);
    fprintf(stderr,
            "test_eviction_on_a_is_a_miss_on_b: node B's reader verified %lld pages "
            "byte for byte during the eviction\n",
            (long long)verified);
    hc_close(cb);
    hc_close(ca);
}
END_TEST

/* ---- node A killed mid-write ------------------------------------------- */

#define KW_LEN 40000 /* not a multiple of 4096 */
#define KW_BATCH 16
#define KW_MAX_BATCHES 256
#define KW_SALT 77

static void kw_prefix(char *buf, size_t n, int b)
{
    snprintf(buf, n, "kw-b%d", b);
}

struct kw_arg {
    const struct hd *d;
    int rec_w;
};

/* Node A's writer: batches of new pages until the daemon goes away. */
static int kw_writer(int idx, void *arg)
{
    struct kw_arg *a = arg;
    return h_ack_writer(a->d->sock, "kw", KW_MAX_BATCHES, KW_BATCH, KW_LEN, KW_SALT, a->rec_w);
}

/* Reads batch b through c, checking the rules of a reader on another node:
 * every key that exists must be a hit, every hit exact. Returns the hits. */
static uint32_t kw_check(hc_client *c, const char *who, int b, bool child)
{
    char prefix[32], names[KW_BATCH][40];
    const char *keys[KW_BATCH];
    uint64_t lens[KW_BATCH];
    kw_prefix(prefix, sizeof(prefix), b);
    for (int i = 0; i < KW_BATCH; i++) {
        snprintf(names[i], sizeof(names[i]), "%s-%d", prefix, i);
        keys[i] = names[i];
    }
    int lead = hc_batch_exists(c, keys, KW_BATCH, lens);
    struct h_batch r;
    int rc = h_batch_init(&r, prefix, KW_BATCH, KW_LEN, 900u + (unsigned)b);
    if (lead >= 0 && rc == 0) {
        h_batch_zero(&r);
        rc = hc_batch_get(c, r.hc, r.n, r.results);
    }
    uint32_t hits = 0;
    for (size_t i = 0; lead >= 0 && rc >= 0 && i < r.n; i++) {
        int res = r.results[i];
        long bad = res == 0 ? h_page_check(&r.pages[i], KW_SALT) : -1;
        bool ok = (res == 0 || (res == -ENOENT && lens[i] == 0)) && bad < 0 &&
                  (lens[i] == 0 || lens[i] == KW_LEN);
        if (!ok) {
            char msg[768];
            snprintf(msg, sizeof(msg),
                     "%s: page %s: exists said %llu bytes, get said %s, first wrong byte at %ld",
                     who, r.pages[i].key, (unsigned long long)lens[i], hc_strerror(res), bad);
            if (child)
                H_REQUIRE(ok, "%s", msg);
            ck_abort_msg("%s", msg);
        }
        if (res == 0)
            hits |= 1u << i;
    }
    if (child)
        H_REQUIRE(lead >= 0 && rc >= 0, "%s: batch %d: exists %d, get/init %d", who, b, lead, rc);
    else
        ck_assert_msg(lead >= 0 && rc >= 0, "%s: batch %d: exists %d, get/init %d", who, b, lead,
                      rc);
    h_batch_free(&r);
    return hits;
}

START_TEST(test_sigkill_of_a_mid_write_never_torn_on_b)
{
    /* Small segments and short intervals: A seals (and B discovers) many
     * segments while the writer runs, so B reads A's pages during the kill. */
    struct hd *a = hd_new("nodeA", "--segment-size", "2097152", "--seal-interval-ms", "100",
                          "--discovery-interval-ms", "100", NULL);
    struct hd *b = hd_new_peer(a, "nodeB", "--seal-interval-ms", "100", "--discovery-interval-ms",
                               "100", NULL);
    hd_start(a);
    hd_start(b);

    struct ev_reader rd = {.d = b, .read = kw_check, .page_len = KW_LEN, .batches = KW_MAX_BATCHES};
    int stop_w, count_r, p[2];
    pid_t reader = ev_reader_start(&rd, &stop_w, &count_r);

    ck_assert_int_eq(pipe(p), 0);
    struct kw_arg wa = {.d = a, .rec_w = p[1]};
    pid_t writer = h_fork(kw_writer, 0, &wa);
    close(p[1]);
    static struct h_ack_log log;
    memset(&log, 0, sizeof(log));
    const int kill_after = 40 * KW_BATCH + 7;
    ck_assert_msg(h_ack_read(p[0], &log, kill_after, 30000),
                  "node A's writer acknowledged only %d pages in 30 s", log.nacked);
    hd_kill(a);
    ck_assert_msg(h_ack_read(p[0], &log, -1, 30000), "writer did not finish after node A died");
    close(p[0]);
    int st = h_wait_pid(writer, 30000);
    ck_assert_msg(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0,
                  "node A's writer failed or hung after A died");
    ck_assert_msg(log.attempted * KW_BATCH > log.nacked,
                  "node A was killed after the writer finished (no write in flight)");

    /* B keeps reading across A's death for a few discovery rounds, then
     * A restarts on the same directory (recovering its open segment). */
    h_sleep_ms(1000);
    hd_start(a);

    /* After the restart, B sees every page A acknowledged, exact. */
    hc_client *cb = hd_connect(b, NULL, KW_LEN);
    uint64_t t0 = h_now_ms(), end = t0 + EV_SETTLE_MS;
    int missing;
    for (;;) {
        missing = 0;
        for (int bt = 0; bt < log.attempted; bt++) {
            uint32_t hits = kw_check(cb, "node B", bt, false);
            missing += __builtin_popcount(log.acked[bt] & ~hits);
        }
        if (missing == 0 || h_now_ms() >= end)
            break;
        h_sleep_ms(100);
    }
    ck_assert_msg(missing == 0,
                  "%d of the %d pages node A acknowledged are not served by node B %d ms after "
                  "A restarted",
                  missing, log.nacked, EV_SETTLE_MS);
    fprintf(stderr,
            "test_sigkill_of_a_mid_write_never_torn_on_b: node B served all %d "
            "acknowledged pages %llu ms after node A restarted\n",
            log.nacked, (unsigned long long)(h_now_ms() - t0));
    ck_assert_int_eq(h_stat(cb, "corrupt_records"), 0);
    hc_close(cb);

    int64_t verified = ev_reader_stop(reader, stop_w, count_r);
    ck_assert_int_gt(verified, 0);
    fprintf(stderr,
            "test_sigkill_of_a_mid_write_never_torn_on_b: node B's reader verified %lld "
            "pages byte for byte across the kill\n",
            (long long)verified);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("integration_nodes");
    TCase *tc = h_tcase("nodes", 120);
    tcase_add_test(tc, test_two_nodes_share_directory);
    tcase_add_test(tc, test_open_segment_visible_on_b);
    tcase_add_test(tc, test_eviction_on_a_is_a_miss_on_b);
    tcase_add_test(tc, test_sigkill_of_a_mid_write_never_torn_on_b);
    suite_add_tcase(s, tc);
    return h_run_suite(s);
}
