/* Segment store against the real I/O pool and a real temporary directory:
 * round trips, dedupe, coalescing, visibility, restart and recovery, corrupt
 * records, capacity eviction, two nodes on one volume, clear, read linger,
 * compression. */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "io.h"
#include "stats.h"
#include "store.h"

#define KiB 1024ull
#define MiB (1024ull * 1024)

static int efd = -1;
static struct hc_io_pool *io;
static char tmpdir[256];

static void wake(void *arg)
{
    uint64_t one = 1;
    (void)arg;
    if (write(efd, &one, sizeof(one)) < 0)
        abort();
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void setup(void)
{
    struct hc_io_config c = {.threads = 2, .queue_depth = 64, .max_inflight_bytes = 64 * MiB};
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/hc_test_store.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
    efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    ck_assert_int_ge(efd, 0);
    ck_assert_int_eq(hc_io_pool_create(&io, &c, wake, NULL), 0);
}

static void teardown(void)
{
    hc_io_pool_destroy(io);
    io = NULL;
    close(efd);
    nftw(tmpdir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* Runs the loop until nothing is pending in the pool. */
static void drain_all(void)
{
    int rounds = 0;
    while (hc_io_pool_pending(io) > 0) {
        struct pollfd p = {.fd = efd, .events = POLLIN};
        uint64_t v;
        ck_assert_int_lt(rounds++, 100000);
        poll(&p, 1, 1000);
        if (read(efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
            ck_abort_msg("eventfd read");
        hc_io_pool_drain(io);
    }
}

static struct hc_store_config base_cfg(const char *node)
{
    return (struct hc_store_config){.mount_point = tmpdir,
                                    .root_dir = "hicache",
                                    .node_id = node,
                                    .segment_size = 4 * MiB,
                                    .capacity_bytes = 0,
                                    .min_free_ratio = 0,
                                    .seal_interval_ms = 1000000,
                                    .discovery_interval_ms = 1000000,
                                    .use_direct_io = false,
                                    .dedupe = true,
                                    .coalesce_reads = true};
}

static struct hc_store *open_store(const struct hc_store_config *cfg, struct hc_stats *st)
{
    struct hc_store *s = NULL;
    char err[256] = "";
    memset(st, 0, sizeof(*st));
    int rc = hc_store_open(&s, cfg, io, st, err, sizeof(err));
    ck_assert_msg(rc == 0, "open: %d %s", rc, err);
    return s;
}

static void close_store(struct hc_store *s)
{
    int rounds = 0;
    while (!hc_store_quiesce(s)) {
        ck_assert_int_lt(rounds++, 1000);
        drain_all();
    }
    hc_store_close(s);
}

struct res {
    bool done;
    int status;
    uint64_t len;
};

static void cb(void *data, int status, uint64_t len)
{
    struct res *r = data;
    ck_assert(!r->done);
    r->done = true;
    r->status = status;
    r->len = len;
}

/* hc_store_clear, run to its answer: returns the pages dropped; the
 * tombstones must have been saved. */
static uint64_t clear_ns(struct hc_store *s, int ns)
{
    struct res r = {0};
    ck_assert_int_eq(hc_store_clear(s, ns, cb, &r), 0);
    ck_assert(!r.done); /* never inside the call */
    drain_all();
    ck_assert(r.done);
    ck_assert_int_eq(r.status, 0);
    return r.len;
}

static void fill(unsigned char *p, size_t len, uint64_t seed)
{
    uint64_t x = seed * 0x9E3779B97F4A7C15ULL + 1;
    for (size_t i = 0; i < len; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        p[i] = (unsigned char)x;
    }
}

static bool same(const unsigned char *p, size_t len, uint64_t seed)
{
    unsigned char *q = malloc(len);
    fill(q, len, seed);
    bool eq = memcmp(p, q, len) == 0;
    free(q);
    return eq;
}

static const char *key_of(int i, char *buf)
{
    snprintf(buf, 128, "%064x_%d", (unsigned)i * 2654435761u, i);
    return buf;
}

/* Sets page i (len bytes, content from seed i) and waits for it. */
static void put_page(struct hc_store *s, int ns, int i, size_t len)
{
    char key[128];
    unsigned char *buf = malloc(len);
    struct res r = {0};
    fill(buf, len, (uint64_t)i);
    key_of(i, key);
    ck_assert_int_eq(hc_store_set(s, ns, key, strlen(key), buf, len, cb, &r), 0);
    drain_all();
    ck_assert(r.done);
    ck_assert_int_eq(r.status, 0);
    free(buf);
}

/* Gets page i; returns the status; checks the bytes on a hit. */
static int get_page(struct hc_store *s, int ns, int i, size_t len)
{
    char key[128];
    unsigned char *buf = malloc(len + 1);
    struct res r = {0};
    key_of(i, key);
    ck_assert_int_eq(hc_store_get(s, ns, key, strlen(key), buf + 1, len, cb, &r), 0);
    ck_assert(!r.done); /* never synchronous */
    drain_all();
    ck_assert(r.done);
    if (r.status == 0) {
        ck_assert_uint_eq(r.len, len);
        ck_assert_msg(same(buf + 1, len, (uint64_t)i), "wrong bytes for page %d", i);
    }
    free(buf);
    return r.status;
}

static bool page_exists(struct hc_store *s, int ns, int i)
{
    char key[128];
    key_of(i, key);
    return hc_store_exists(s, ns, key, strlen(key)) > 0;
}

static void node_file(char *out, const char *node, uint64_t seq, const char *ext)
{
    snprintf(out, PATH_MAX, "%s/hicache/%s/%016" PRIx64 ".%s", tmpdir, node, seq, ext);
}

static bool file_exists(const char *path)
{
    return access(path, F_OK) == 0;
}

static int seq_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The sequence numbers of the node's .seg files, ascending; returns how many
 * there are (only meaningful when that is at most max). */
static size_t node_seqs(const char *node, uint64_t *out, size_t max)
{
    char dir[PATH_MAX];
    struct dirent *de;
    size_t n = 0;
    snprintf(dir, sizeof(dir), "%s/hicache/%s", tmpdir, node);
    DIR *dh = opendir(dir);
    if (!dh)
        return 0;
    while ((de = readdir(dh))) {
        uint64_t seq;
        char ext[8];
        if (strlen(de->d_name) != 20 || sscanf(de->d_name, "%16" SCNx64 ".%3s", &seq, ext) != 2 ||
            strcmp(ext, "seg") != 0)
            continue;
        if (n < max)
            out[n] = seq;
        n++;
    }
    closedir(dh);
    qsort(out, n < max ? n : max, sizeof(*out), seq_cmp);
    return n;
}

/* The node's oldest segment (there must be one). */
static uint64_t first_seq(const char *node)
{
    uint64_t all[256];
    size_t n = node_seqs(node, all, 256);
    ck_assert_uint_ge(n, 1);
    ck_assert_uint_le(n, 256);
    return all[0];
}

/* Bytes of the node's segment files (what du would count, by size). */
static uint64_t node_bytes(const char *node)
{
    uint64_t seqs[1024], total = 0;
    size_t n = node_seqs(node, seqs, 1024);
    ck_assert_uint_le(n, 1024);
    for (size_t i = 0; i < n; i++) {
        char p[PATH_MAX];
        struct stat sb;
        node_file(p, node, seqs[i], "seg");
        if (stat(p, &sb) == 0)
            total += (uint64_t)sb.st_size;
    }
    return total;
}

static void flip_byte(const char *path, off_t off)
{
    int fd = open(path, O_RDWR);
    unsigned char c;
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(pread(fd, &c, 1, off), 1);
    c ^= 0x40;
    ck_assert_int_eq(pwrite(fd, &c, 1, off), 1);
    close(fd);
}

/* ---- tests ---------------------------------------------------------------- */

static void round_trip(bool direct)
{
    struct hc_stats st;
    struct hc_store_config cfg = base_cfg("n1");
    cfg.use_direct_io = direct;
    struct hc_store *s = open_store(&cfg, &st);
    int ns = hc_store_ns(s, "model-a", 7);
    ck_assert_int_ge(ns, 0);
    ck_assert_int_eq(hc_store_ns(s, "model-a", 7), ns);

    enum { N = 120 };
    size_t lens[N];
    unsigned char *bufs[N];
    struct res rs[N];
    char key[128];
    uint64_t total = 0;
    srand(7);
    for (int i = 0; i < N; i++) {
        lens[i] = i % 3 == 0 ? 64 * KiB : 1 + (size_t)rand() % (200 * KiB);
        bufs[i] = malloc(lens[i] + 8);
        fill(bufs[i] + (i & 7), lens[i], (uint64_t)i);
        memset(&rs[i], 0, sizeof(rs[i]));
        key_of(i, key);
        ck_assert_int_eq(
            hc_store_set(s, ns, key, strlen(key), bufs[i] + (i & 7), lens[i], cb, &rs[i]), 0);
        total += lens[i];
    }
    drain_all();
    for (int i = 0; i < N; i++) {
        ck_assert(rs[i].done);
        ck_assert_int_eq(rs[i].status, 0);
        ck_assert_uint_eq(rs[i].len, lens[i]);
        key_of(i, key);
        ck_assert_uint_eq(hc_store_exists(s, ns, key, strlen(key)), lens[i]);
        free(bufs[i]);
    }
    ck_assert_uint_eq(st.sets, N);
    ck_assert_uint_eq(st.pages, N);
    ck_assert_uint_eq(st.local_pages, N);
    ck_assert_uint_eq(st.bytes_written, total);
    ck_assert_uint_eq(st.bytes_stored, total);
    ck_assert_uint_gt(st.segments, 1); /* 4 MiB segments rolled */
    for (int i = 0; i < N; i++)
        ck_assert_int_eq(get_page(s, ns, i, lens[i]), 0);
    ck_assert_uint_eq(st.hits, N);
    ck_assert_uint_eq(st.bytes_served, total);
    ck_assert_uint_eq(st.bytes_read_storage, total);

    /* Another namespace, same key: a different page. */
    int ns2 = hc_store_ns(s, "model-b", 7);
    ck_assert_int_eq(get_page(s, ns2, 0, lens[0]), -ENOENT);
    put_page(s, ns2, 1000, 5000);
    char k1000[128];
    key_of(1000, k1000);
    ck_assert_uint_eq(hc_store_exists(s, ns, k1000, strlen(k1000)), 0);
    ck_assert_int_eq(get_page(s, ns2, 1000, 5000), 0);
    ck_assert_uint_eq(st.misses, 1);
    close_store(s);
}

START_TEST(test_round_trip)
{
    round_trip(false);
}
END_TEST

START_TEST(test_round_trip_direct)
{
    round_trip(true);
}
END_TEST

START_TEST(test_refusals)
{
    struct hc_stats st;
    struct hc_store_config cfg = base_cfg("n1");
    cfg.segment_size = 1 * MiB;
    struct hc_store *s = open_store(&cfg, &st);
    int ns = hc_store_ns(s, "ns", 2);
    unsigned char buf[16] = {0};
    struct res r = {0};
    char longkey[300];
    memset(longkey, 'a', sizeof(longkey));

    ck_assert_int_eq(hc_store_set(s, ns, "k", 1, buf, 0, cb, &r), -EINVAL);
    ck_assert_int_eq(hc_store_set(s, ns, "k", 1, buf, 1 * MiB, cb, &r), -EFBIG);
    ck_assert_int_eq(hc_store_set(s, ns, longkey, 257, buf, 16, cb, &r), -EINVAL);
    ck_assert_int_eq(hc_store_set(s, ns + 5, "k", 1, buf, 16, cb, &r), -EINVAL);
    ck_assert_int_eq(hc_store_get(s, ns, longkey, 257, buf, 16, cb, &r), -EINVAL);
    ck_assert_int_eq(hc_store_ns(s, longkey, 257), -EINVAL);
    ck_assert_int_eq(hc_store_ns(s, "", 0), -EINVAL);
    /* The largest page that fits an empty segment is accepted. */
    unsigned char *big = calloc(1, 1 * MiB - 4096);
    ck_assert_int_eq(hc_store_set(s, ns, longkey, 256, big, 1 * MiB - 4096, cb, &r), 0);
    drain_all();
    ck_assert_int_eq(r.status, 0);
    free(big);
    ck_assert(!r.done || r.status == 0);
    ck_assert(hc_store_quiesce(s));
    memset(&r, 0, sizeof(r));
    ck_assert_int_eq(hc_store_set(s, ns, "k", 1, buf, 16, cb, &r), -ESHUTDOWN);
    ck_assert(!r.done);
    ck_assert_uint_eq(st.set_errors, 5);
    hc_store_close(s);
}
END_TEST

START_TEST(test_dedupe)
{
    struct hc_stats st;
    struct hc_store_config cfg = base_cfg("n1");
    struct hc_store *s = open_store(&cfg, &st);
    int ns = hc_store_ns(s, "ns", 2);
    size_t len = 100 * KiB;
    unsigned char *a = malloc(len), *b = malloc(len);
    fill(a, len, 1);
    fill(b, len, 1);
    struct res r1 = {0}, r2 = {0}, r3 = {0};

    ck_assert_int_eq(hc_store_set(s, ns, "page", 4, a, len, cb, &r1), 0);
    ck_assert_int_eq(hc_store_set(s, ns, "page", 4, b, len, cb, &r2), 0);
    ck_assert(!r1.done && !r2.done);
    drain_all();
    ck_assert(r1.done && r2.done);
    ck_assert_int_eq(r1.status, 0);
    ck_assert_int_eq(r2.status, 0);
    ck_assert_uint_eq(r2.len, len);
    ck_assert_uint_eq(st.bytes_written, len);
    ck_assert_uint_eq(st.dedup_hits, 1);
    ck_assert_uint_eq(st.dedup_bytes, len);

    /* Stored already: acknowledged later, no write. */
    ck_assert_int_eq(hc_store_set(s, ns, "page", 4, b, len, cb, &r3), 0);
    ck_assert(!r3.done);
    drain_all();
    ck_assert(r3.done);
    ck_assert_int_eq(r3.status, 0);
    ck_assert_uint_eq(st.bytes_written, len);
    ck_assert_uint_eq(st.dedup_hits, 2);
    ck_assert_uint_eq(st.sets, 3);
    ck_assert_uint_eq(st.pages, 1);
    free(a);
    free(b);
    close_store(s);
}
END_TEST

/* G gets of one page at once share the read of the first. With one reader
 * per page the first read goes straight into the first getter's buffer, and
 * the others copy from a second read of the file into the daemon's memory
 * (never from that buffer, which a client may change): 2 reads for G gets.
 * Getters that declare G readers per page read into the daemon's memory to
 * begin with: 1 read. */
START_TEST(test_coalescing)
{
    for (int readers = 1; readers <= 6; readers += 5) {
        struct hc_stats st;
        struct hc_store_config cfg = base_cfg("n1");
        struct hc_store *s = open_store(&cfg, &st);
        int ns = hc_store_ns(s, "ns", 2);
        size_t len = 256 * KiB;
        struct hc_store_opts o = {.readers = (uint32_t)readers};
        if (readers == 1)
            put_page(s, ns, 5, len);

        enum { G = 6 };
        unsigned char *bufs[G];
        struct res rs[G];
        char key[128];
        key_of(5, key);
        for (int i = 0; i < G; i++) {
            bufs[i] = malloc(len);
            memset(bufs[i], 0xAA, len);
            memset(&rs[i], 0, sizeof(rs[i]));
            ck_assert_int_eq(hc_store_get_ex(s, ns, key, strlen(key), bufs[i], len, &o, cb, &rs[i]),
                             0);
        }
        drain_all();
        for (int i = 0; i < G; i++) {
            ck_assert(rs[i].done);
            ck_assert_int_eq(rs[i].status, 0);
            ck_assert_uint_eq(rs[i].len, len);
            ck_assert(same(bufs[i], len, 5));
            free(bufs[i]);
        }
        ck_assert_uint_eq(st.bytes_read_storage, (readers == 1 ? 2 : 1) * len);
        /* with one reader: G - 1 when the joins came before the first read's
         * check (its I/O thread read the page again for them), G - 2 when it
         * was done first (a joiner led the second read) */
        ck_assert_uint_le(st.coalesced_reads, G - 1);
        ck_assert_uint_ge(st.coalesced_reads, readers == 1 ? G - 2 : G - 1);
        ck_assert_uint_eq(st.hits, G);
        ck_assert_uint_eq(st.bytes_served, G * len);
        close_store(s);
    }
}
END_TEST

START_TEST(test_no_coalescing_when_off)
{
    struct hc_stats st;
    struct hc_store_config cfg = base_cfg("n1");
    cfg.coalesce_reads = false;
    cfg.dedupe = false;
    struct hc_store *s = open_store(&cfg, &st);
    int ns = hc_store_ns(s, "ns", 2);
    size_t len = 8 * KiB;
    put_page(s, ns, 5, len);
    put_page(s, ns, 5, len); /* no dedupe: written twice */
    ck_assert_uint_eq(st.bytes_written, 2 * len);
    ck_assert_uint_eq(st.dedup_hits, 0);
    ck_assert_uint_eq(st.pages, 1);
    unsigned char *b1 = malloc(len), *b2 = malloc(len);
    struct res r1 = {0}, r2 = {0};
    char key[128];
    key_of(5, key);
    ck_assert_int_eq(hc_store_get(s, ns, key, strlen(key), b1, len, cb, &r1), 0);
    ck_assert_int_eq(hc_store_get(s, ns, key, strlen(key), b2, len, cb, &r2), 0);
    drain_all();
    ck_assert(r1.status == 0 && r2.status == 0);
    ck_assert(same(b1, len, 5) && same(b2, len, 5));
    ck_assert_uint_eq(st.bytes_read_storage, 2 * len);
    ck_assert_uint_eq(st.coalesced_reads, 0);
    free(b1);
    free(b2);
    close_store(s);
}
END_TEST

START_TEST(test_enospc_and_visibility)
{
    struct hc_stats st;
    struct hc_store_config cfg = base_cfg("n1");
    struct hc_store *s = open_store(&cfg, &st);
    int ns = hc_store_ns(s, "ns", 2);
    size_t len = 50000;
    unsigned char *buf = malloc(len);
    struct res r = {0};
    fill(buf, len, 9);

    ck_assert_int_eq(hc_store_set(s, ns, "vis", 3, buf, len, cb, &r), 0);
    ck_assert_uint_eq(hc_store_exists(s, ns, "vis", 3), 0); /* not whole yet */
    ck_assert(!r.done);
    drain_all();
    ck_assert(r.done);
    ck_assert_int_eq(r.status, 0);
    ck_assert_uint_eq(hc_store_exists(s, ns, "vis", 3), len);

    unsigned char *small = malloc(len);
    memset(small, 0x5C, len);
    memset(&r, 0, sizeof(r));
    ck_assert_int_eq(hc_store_get(s, ns, "vis", 3, small, len - 1, cb, &r), 0);
    ck_assert(!r.done);
    drain_all();
    ck_assert_int_eq(r.status, -ENOSPC);
    for (size_t i = 0; i < len; i++)
        ck_assert_uint_eq(small[i], 0x5C);
    ck_assert_uint_eq(st.bytes_read_storage, 0);

    memset(&r, 0, sizeof(r));
    ck_assert_int_eq(hc_store_get(s, ns, "nope", 4, small, len, cb, &r), 0);
    ck_assert(!r.done);
    drain_all();
    ck_assert_int_eq(r.status, -ENOENT);
    ck_assert_uint_eq(st.misses, 1);
    free(buf);
    free(small);
    close_store(s);
}
END_TEST

START_TEST(test_reopen)
{
    struct hc_stats st;
    struct hc_store_config cfg = base_cfg("n1");
    cfg.segment_size = 1 * MiB;
    struct hc_store *s = open_store(&cfg, &st);
    int ns = hc_store_ns(s, "ns", 2);
    for (int i = 0; i < 40; i++)
        put_page(s, ns, i, 30000 + (size_t)i * 1000);
    close_store(s);

    /* Every segment is sealed: an .idx beside each .seg, no temp files. */
    uint64_t seqs[8];
    ck_assert_uint_eq(node_seqs("n1", seqs, 8), 3);
    for (int i = 0; i < 3; i++) {
        char p[PATH_MAX];
        node_file(p, "n1", seqs[i], "seg");
        ck_assert(file_exists(p));
        node_file(p, "n1", seqs[i], "idx");
        ck_assert_msg(file_exists(p), "%s missing", p);
    }
    s = open_store(&cfg, &st);
    ns = hc_store_ns(s, "ns", 2);
    ck_assert_uint_eq(st.pages, 40);
    for (int i = 0; i < 40; i++)
        ck_assert_int_eq(get_page(s, ns, i, 30000 + (size_t)i * 1000), 0);
    /* New writes go to a new segment. */
    put_page(s, ns, 100, 1000);
    close_store(s);
    s = open_store(&cfg, &st);
    ns = hc_store_ns(s, "ns", 2);
    ck_assert_uint_eq(st.pages, 41);
    ck_assert_int_eq(get_page(s, ns, 100, 1000), 0);
    close_store(s);
}
END_TEST

/* Gets that wait for a cold segment's open (after a restart) go to the I/O
 * pool in the order of their records in the file, whichever asked first (an
 * idle I/O thread starts the file's stream with the first it is given).
 * With room for one read at a time, they finish in that order. */
static int order_seen[16], norder;

static void order_cb(void *data, int status, uint64_t len)
{
    (void)len;
    ck_assert_int_eq(status, 0);
    ck_assert_int_lt(norder, 16);
    order_seen[norder++] = (int)(intptr_t)data;
}

START_TEST(test_cold_open_reads_in_offset_order)
{
    enum { N = 8, LEN = 60000 };
    struct hc_stats st;
    struct hc_store_config cfg = base_cfg("n1");
    struct hc_store *s = open_store(&cfg, &st);
    int ns = hc_store_ns(s, "ns", 2);
    for (int i = 0; i < N; i++)
        put_page(s, ns, i, LEN); /* one segment, records in i's order */
    close_store(s);

    hc_io_pool_destroy(io);
    struct hc_io_config c = {.threads = 2, .queue_depth = 64, .max_inflight_bytes = 80000};
    ck_assert_int_eq(hc_io_pool_create(&io, &c, wake, NULL), 0);
    s = open_store(&cfg, &st);
    ns = hc_store_ns(s, "ns", 2);
    unsigned char *bufs[N];
    norder = 0;
    for (int i = N - 1; i >= 0; i--) { /* the file's last record first */
        char key[128];
        bufs[i] = malloc(LEN);
        ck_assert_ptr_nonnull(bufs[i]);
        key_of(i, key);
        ck_assert_int_eq(
            hc_store_get(s, ns, key, strlen(key), bufs[i], LEN, order_cb, (void *)(intptr_t)i), 0);
    }
    drain_all();
    ck_assert_int_eq(norder, N);
    for (int i = 0; i < N; i++) {
        ck_assert_msg(order_seen[i] == i, "read %d was page %d", i, order_seen[i]);
        ck_assert_msg(same(bufs[i], LEN, (uint64_t)i), "wrong bytes for page %d", i);
        free(bufs[i]);
    }
    close_store(s);
}
END_TEST

START_TEST(test_torn_segment)
{
    struct hc_stats st;
    struct hc_store_config cfg = base_cfg("n1");
    struct hc_store *s = open_store(&cfg, &st);
    int ns = hc_store_ns(s, "ns", 2);
    size_t len = 20000; /* record: 4096 + 20480 */
    for (int i = 0; i < 10; i++)
        put_page(s, ns, i, len);
    close_store(s);

    char seg[PATH_MAX], idx[PATH_MAX], tmp[PATH_MAX];
    uint64_t seq = first_seq("n1");
    node_file(seg, "n1", seq, "seg");
    node_file(idx, "n1", seq, "idx");
    ck_assert_int_eq(unlink(idx), 0); /* as if the daemon died before sealing */
    /* Cut the last record in the middle of its payload. */
    ck_assert_int_eq(truncate(seg, 9 * 24576 + 4096 + 10000), 0);
    /* A leftover temporary file is cleaned at open. */
    node_file(tmp, "n1", seq, "idx.tmp");
    FILE *f = fopen(tmp, "w");
    fputs("junk", f);
    fclose(f);

    s = open_store(&cfg, &st);
    ns = hc_store_ns(s, "ns", 2);
    ck_assert(!file_exists(tmp));
    ck_assert(file_exists(idx)); /* scanned and sealed */
    ck_assert_uint_eq(st.pages, 9);
    for (int i = 0; i < 9; i++)
        ck_assert_int_eq(get_page(s, ns, i, len), 0);
    ck_assert(!page_exists(s, ns, 9));
    ck_assert_int_eq(get_page(s, ns, 9, len), -ENOENT);
    /* The page can be stored again, in a new segment. */
    put_page(s, ns, 9, len);
    ck_assert_int_eq(get_page(s, ns, 9, len), 0);
    close_store(s);
}
END_TEST

START_TEST(test_corrupt_payload)
{
    struct hc_stats st;
    struct hc_store_config cfg = base_cfg("n1");
    struct hc_store *s = open_store(&cfg, &st);
    int ns = hc_store_ns(s, "ns", 2);
    size_t len = 8192; /* record: 12288 bytes */
    for (int i = 0; i < 10; i++)
        put_page(s, ns, i, len);

    /* While running: a flipped byte in a live record is refused. */
    char seg[PATH_MAX], idx[PATH_MAX];
    node_file(seg, "n1", first_seq("n1"), "seg");
    node_file(idx, "n1", first_seq("n1"), "idx");
    flip_byte(seg, 2 * 12288 + 4096 + 100);
    ck_assert_int_eq(get_page(s, ns, 2, len), -ENOENT);
    ck_assert_uint_eq(st.corrupt_records, 1);
    ck_assert(!page_exists(s, ns, 2)); /* dropped: a new set may rewrite it */
    ck_assert_int_eq(get_page(s, ns, 3, len), 0);
    close_store(s);

    /* Sealed segment: a flipped byte in record 5 -> that page is a miss. */
    ck_assert(file_exists(idx));
    flip_byte(seg, 5 * 12288 + 4096 + 7);
    s = open_store(&cfg, &st);
    ns = hc_store_ns(s, "ns", 2);
    ck_assert(page_exists(s, ns, 5));
    ck_assert_int_eq(get_page(s, ns, 5, len), -ENOENT);
    ck_assert_uint_eq(st.corrupt_records, 1);
    for (int i = 0; i < 10; i++)
        if (i != 2 && i != 5)
            ck_assert_int_eq(get_page(s, ns, i, len), 0);
    close_store(s);

    /* Unsealed segment: the scan skips the records with bad payloads (2, 5)
     * and keeps the rest. */
    ck_assert_int_eq(unlink(idx), 0);
    s = open_store(&cfg, &st);
    ns = hc_store_ns(s, "ns", 2);
    ck_assert_uint_eq(st.corrupt_records, 2);
    ck_assert_uint_eq(st.pages, 8);
    for (int i = 0; i < 10; i++)
        ck_assert_int_eq(get_page(s, ns, i, len), i == 2 || i == 5 ? -ENOENT : 0);
    close_store(s);
}
END_TEST

/* Waits until the pool has a finished request to hand back (its done has not
 * run yet: that takes hc_io_pool_drain), without consuming the wake-up. */
static void wait_finished(void)
{
    struct pollfd p = {.fd = efd, .events = POLLIN};
    ck_assert_int_eq(poll(&p, 1, 10000), 1);
}

/* Starts a get of page i into buf (len bytes) and waits until its first
 * storage read is over, before the store has seen its outcome. */
static void get_first_read(struct hc_store *s, int ns, int i, unsigned char *buf, size_t len,
                           struct res *r)
{
    char key[128];
    key_of(i, key);
    memset(r, 0, sizeof(*r));
    ck_assert_int_eq(hc_store_get(s, ns, key, strlen(key), buf, len, cb, r), 0);
    wait_finished();
    ck_assert(!r->done);
}

/* Through FUSE (JuiceFS) a read of a record this daemon just wrote and
 * acknowledged can come back short (the cached size lags) or with stale pages
 * (the cache refetched them while the write was in flight). Such a record is
 * read again before it is dropped; records of an earlier run are not. Here
 * the file itself is damaged under the store while the first read is done and
 * mended before the store sees the outcome. */
START_TEST(test_reread_own_record)
{
    struct hc_stats st;
    struct hc_store_config cfg = base_cfg("n1");
    struct hc_store *s = open_store(&cfg, &st);
    int ns = hc_store_ns(s, "ns", 2);
    size_t len = 8192, rec = 12288;
    unsigned char *buf = malloc(len), tail[12288];
    char seg[PATH_MAX];
    struct res r;
    int fd;

    for (int i = 0; i < 4; i++)
        put_page(s, ns, i, len);
    node_file(seg, "n1", first_seq("n1"), "seg");

    /* Stale bytes at the first read (a payload byte, then the header), whole
     * again at the re-read: a hit with the right bytes, nothing dropped. */
    for (int round = 0; round < 2; round++) {
        off_t off = round == 0 ? (off_t)(1 * rec + 4096 + 100) : (off_t)(1 * rec + 8);
        flip_byte(seg, off);
        get_first_read(s, ns, 1, buf, len, &r);
        flip_byte(seg, off);
        drain_all();
        ck_assert(r.done);
        ck_assert_int_eq(r.status, 0);
        ck_assert_uint_eq(r.len, len);
        ck_assert(same(buf, len, 1));
    }

    /* Short at the first read: the last record cut in its payload, then
     * extended again. */
    fd = open(seg, O_RDWR);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(pread(fd, tail, rec, (off_t)(3 * rec)), (ssize_t)rec);
    ck_assert_int_eq(ftruncate(fd, (off_t)(3 * rec + 4096 + 1000)), 0);
    get_first_read(s, ns, 3, buf, len, &r);
    ck_assert_int_eq(pwrite(fd, tail, rec, (off_t)(3 * rec)), (ssize_t)rec);
    close(fd);
    drain_all();
    ck_assert(r.done);
    ck_assert_int_eq(r.status, 0);
    ck_assert(same(buf, len, 3));
    ck_assert_uint_eq(st.corrupt_records, 0);
    ck_assert_uint_eq(st.hits, 3);
    ck_assert(page_exists(s, ns, 1) && page_exists(s, ns, 3));
    ck_assert_uint_eq(st.pages, 4);

    /* Bad at every read: a miss after the re-reads, dropped, counted once. */
    flip_byte(seg, (off_t)(2 * rec + 4096 + 5));
    ck_assert_int_eq(get_page(s, ns, 2, len), -ENOENT);
    ck_assert_uint_eq(st.corrupt_records, 1);
    ck_assert(!page_exists(s, ns, 2));
    ck_assert_uint_eq(st.misses, 1);
    flip_byte(seg, (off_t)(2 * rec + 4096 + 5));
    close_store(s);

    /* A record found at a restart: no re-reads for a lagging view, but a
     * payload that failed its check in the getter's buffer (which a client
     * may change under the check) is read once more into the daemon's own
     * memory before it counts as bad: whole there, a hit; bad there too, or
     * a bad header (checked in the daemon's memory), dropped at once. */
    s = open_store(&cfg, &st);
    ns = hc_store_ns(s, "ns", 2);
    ck_assert(page_exists(s, ns, 0));
    ck_assert_int_eq(get_page(s, ns, 1, len), 0); /* the segment's fd is open */
    flip_byte(seg, (off_t)(4096 + 100));
    get_first_read(s, ns, 0, buf, len, &r);
    flip_byte(seg, (off_t)(4096 + 100));
    drain_all();
    ck_assert(r.done);
    ck_assert_int_eq(r.status, 0);
    ck_assert(same(buf, len, 0));
    ck_assert_uint_eq(st.corrupt_records, 0);
    flip_byte(seg, (off_t)(4096 + 100));
    ck_assert_int_eq(get_page(s, ns, 0, len), -ENOENT);
    flip_byte(seg, (off_t)(4096 + 100));
    ck_assert_uint_eq(st.corrupt_records, 1);
    ck_assert(!page_exists(s, ns, 0));
    flip_byte(seg, (off_t)(1 * rec + 8));
    get_first_read(s, ns, 1, buf, len, &r);
    flip_byte(seg, (off_t)(1 * rec + 8));
    drain_all();
    ck_assert(r.done);
    ck_assert_int_eq(r.status, -ENOENT);
    ck_assert_uint_eq(st.corrupt_records, 2);
    ck_assert(!page_exists(s, ns, 1));
    close_store(s);
    free(buf);
}
END_TEST

/* An I/O error reading a record this run wrote (JuiceFS compacting the open
 * segment's slices under a read) is tried again later, at the store's tick,
 * with growing delays; a record of an earlier run fails at once; a waiting
 * read ends with the error when the store stops. */
START_TEST(test_eio_read_tried_later)
{
    struct hc_stats st;
    struct hc_store_config cfg = base_cfg("n1");
    struct hc_store *s = open_store(&cfg, &st);
    int ns = hc_store_ns(s, "ns", 2);
    size_t len = 8192;
    unsigned char *buf = malloc(len);
    char key[128];
    struct res r = {0};
    uint64_t now = 1000;

    for (int i = 0; i < 3; i++)
        put_page(s, ns, i, len);
    hc_store_tick(s, now);

    /* two errors, then the read works: a hit with the right bytes */
    hc__store_fail_reads(s, -EIO, 2);
    key_of(1, key);
    ck_assert_int_eq(hc_store_get(s, ns, key, strlen(key), buf, len, cb, &r), 0);
    drain_all();
    ck_assert(!r.done); /* waiting for its time */
    hc_store_tick(s, now += 50);
    drain_all();
    ck_assert(!r.done); /* 100 ms not yet gone */
    hc_store_tick(s, now += 60);
    drain_all();
    ck_assert(!r.done); /* failed again: now 200 ms */
    hc_store_tick(s, now += 210);
    drain_all();
    ck_assert(r.done);
    ck_assert_int_eq(r.status, 0);
    ck_assert_uint_eq(r.len, len);
    ck_assert(same(buf, len, 1));

    /* errors at the first read and at all 4 later tries: the error; the page
     * stays indexed (an I/O error says nothing about the record). Exactly 5
     * failures: one try more would be a hit here, one fewer would leave a
     * failure for the get after it. */
    hc__store_fail_reads(s, -EIO, 5);
    memset(&r, 0, sizeof(r));
    key_of(2, key);
    ck_assert_int_eq(hc_store_get(s, ns, key, strlen(key), buf, len, cb, &r), 0);
    for (int k = 0; k < 20 && !r.done; k++) {
        drain_all();
        hc_store_tick(s, now += 1000);
    }
    drain_all();
    ck_assert(r.done);
    ck_assert_int_eq(r.status, -EIO);
    ck_assert(page_exists(s, ns, 2));
    ck_assert_int_eq(get_page(s, ns, 2, len), 0);

    /* stopping ends a waiting read with its error */
    hc__store_fail_reads(s, -EIO, 1);
    memset(&r, 0, sizeof(r));
    key_of(0, key);
    ck_assert_int_eq(hc_store_get(s, ns, key, strlen(key), buf, len, cb, &r), 0);
    drain_all();
    ck_assert(!r.done);
    close_store(s);
    ck_assert(r.done);
    ck_assert_int_eq(r.status, -EIO);

    /* a record of an earlier run: the error at once */
    s = open_store(&cfg, &st);
    ns = hc_store_ns(s, "ns", 2);
    hc_store_tick(s, now);
    hc__store_fail_reads(s, -EIO, 1);
    ck_assert_int_eq(get_page(s, ns, 0, len), -EIO);
    ck_assert_int_eq(get_page(s, ns, 0, len), 0);
    close_store(s);
    free(buf);
}
END_TEST

/* A get joins a read in flight only when that read is of the record the
 * index names now: after a clear and a new set of the key, a get must not
 * take the old read's page (here a read waiting after an I/O error). */
START_TEST(test_no_join_of_an_older_record)
{
    struct hc_stats st;
    struct hc_store_config cfg = base_cfg("n1");
    struct hc_store *s = open_store(&cfg, &st);
    int ns = hc_store_ns(s, "ns", 2);
    size_t len = 8192;
    unsigned char *old = malloc(len), *fresh = malloc(len), *b1 = malloc(len), *b2 = malloc(len);
    char key[128];
    struct res r1 = {0}, r2 = {0}, w = {0};

    key_of(7, key);
    fill(old, len, 70);
    fill(fresh, len, 71);
    ck_assert_int_eq(hc_store_set(s, ns, key, strlen(key), old, len, cb, &w), 0);
    drain_all();
    ck_assert_int_eq(w.status, 0);
    hc_store_tick(s, 1000);
    hc__store_fail_reads(s, -EIO, 1);
    ck_assert_int_eq(hc_store_get(s, ns, key, strlen(key), b1, len, cb, &r1), 0);
    drain_all();
    ck_assert(!r1.done); /* waiting to be tried again */
    ck_assert_uint_eq(clear_ns(s, ns), 1);
    memset(&w, 0, sizeof(w));
    ck_assert_int_eq(hc_store_set(s, ns, key, strlen(key), fresh, len, cb, &w), 0);
    drain_all();
    ck_assert_int_eq(w.status, 0);
    ck_assert_int_eq(hc_store_get(s, ns, key, strlen(key), b2, len, cb, &r2), 0);
    drain_all();
    ck_assert(r2.done);
    ck_assert_int_eq(r2.status, 0);
    ck_assert_msg(memcmp(b2, fresh, len) == 0, "the get took the page from before the clear");
    hc_store_tick(s, 2000);
    drain_all();
    ck_assert(r1.done); /* the old read ends too (its page is no longer indexed) */
    close_store(s);
    free(old);
    free(fresh);
    free(b1);
    free(b2);
}
END_TEST

START_TEST(test_capacity)
{
    struct hc_stats st;
    struct hc_store_config cfg = base_cfg("n1");
    cfg.segment_size = 1 * MiB;
    cfg.capacity_bytes = 4 * MiB;
    struct hc_store *s = open_store(&cfg, &st);
    int ns = hc_store_ns(s, "ns", 2);
    size_t len = 64 * KiB;
    int n = (int)(20 * MiB / len);
    uint64_t now = 1000, seq1 = 0;
    for (int i = 0; i < n; i += 4) {
        unsigned char *bufs[4];
        struct res rs[4];
        char key[128];
        for (int j = 0; j < 4; j++) {
            bufs[j] = malloc(len);
            fill(bufs[j], len, (uint64_t)(i + j));
            memset(&rs[j], 0, sizeof(rs[j]));
            key_of(i + j, key);
            ck_assert_int_eq(hc_store_set(s, ns, key, strlen(key), bufs[j], len, cb, &rs[j]), 0);
        }
        drain_all();
        if (i == 0)
            seq1 = first_seq("n1");
        hc_store_tick(s, now += 300);
        drain_all();
        for (int j = 0; j < 4; j++) {
            ck_assert_int_eq(rs[j].status, 0);
            free(bufs[j]);
        }
        uint64_t du = node_bytes("n1");
        ck_assert_msg(du <= cfg.capacity_bytes + cfg.segment_size,
                      "%" PRIu64 " bytes on disk after %d pages", du, i + 4);
        ck_assert_uint_eq(st.disk_bytes, du);
    }
    ck_assert_uint_gt(st.evicted_pages, 0);
    ck_assert_uint_gt(st.evicted_segments, 0);
    ck_assert_uint_eq(st.pages + st.evicted_pages, (uint64_t)n);
    ck_assert_int_eq(get_page(s, ns, 0, len), -ENOENT);
    ck_assert_int_eq(get_page(s, ns, 1, len), -ENOENT);
    ck_assert_int_eq(get_page(s, ns, n - 1, len), 0);
    ck_assert_int_eq(get_page(s, ns, n - 20, len), 0);
    char p[PATH_MAX];
    node_file(p, "n1", seq1, "seg");
    ck_assert(!file_exists(p));
    node_file(p, "n1", seq1, "idx");
    ck_assert(!file_exists(p));
    close_store(s);
}
END_TEST

/* One get or set of key i against buf, run to its answer: the status. */
static int xfer(struct hc_store *s, int ns, int i, void *buf, size_t len, bool set,
                uint32_t compression)
{
    char key[128];
    struct res r = {0};
    struct hc_store_opts o = HC_STORE_OPTS_DEFAULT;
    o.compression = compression;
    key_of(i, key);
    int rc = set ? hc_store_set_ex(s, ns, key, strlen(key), buf, len, &o, cb, &r)
                 : hc_store_get_ex(s, ns, key, strlen(key), buf, len, &o, cb, &r);
    ck_assert_int_eq(rc, 0);
    drain_all();
    ck_assert(r.done);
    return r.status;
}

/* A client's host pool (a memfd it did not seal) truncated under the store:
 * gets into it and sets from it fail with EFAULT, the daemon does not fault,
 * no record is dropped or written readable, and the pages of others stand. */
START_TEST(test_vanished_buffers)
{
#if defined(__SANITIZE_THREAD__)
    /* ThreadSanitizer's signal interception does not hand a SIGBUS raised in
     * a thread to the guard's handler (guard.h): the process dies. The
     * plain, ASan and UBSan runs cover this test. */
    return;
#endif
    struct hc_stats st;
    struct hc_store_config cfg = base_cfg("n1");
    const size_t len = 64 * KiB, pool = 1 * MiB;
    struct hc_store *s = open_store(&cfg, &st);
    int ns = hc_store_ns(s, "pool", 4);
    int fd = memfd_create("hc-test-pool", MFD_CLOEXEC);
    unsigned char *own = malloc(len), *m;

    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(ftruncate(fd, (off_t)pool), 0);
    m = mmap(NULL, pool, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    ck_assert(m != MAP_FAILED);
    for (int i = 0; i < 4; i++)
        fill(m + (size_t)i * len, len, (uint64_t)i);
    ck_assert_int_eq(xfer(s, ns, 0, m, len, true, HC_COMPRESSION_OFF), 0);
    ck_assert_int_eq(xfer(s, ns, 1, m + len, len, true, HC_COMPRESSION_OFF), 0);
    ck_assert_int_eq(xfer(s, ns, 0, m + 2 * len, len, false, 0), 0);
    ck_assert(same(m + 2 * len, len, 0));

    ck_assert_int_eq(ftruncate(fd, 0), 0); /* the client shrinks its pool */
    /* sets from the vanished pages: raw and compressed, and a good set */
    ck_assert_int_eq(xfer(s, ns, 5, m + 3 * len, len, true, HC_COMPRESSION_OFF), -EFAULT);
    ck_assert_int_eq(xfer(s, ns, 6, m + 3 * len, len, true, HC_COMPRESSION_ZSTD), -EFAULT);
    fill(own, len, 7);
    ck_assert_int_eq(xfer(s, ns, 7, own, len, true, HC_COMPRESSION_OFF), 0);
    ck_assert_int_eq(get_page(s, ns, 5, len), -ENOENT);
    ck_assert_int_eq(get_page(s, ns, 6, len), -ENOENT);
    ck_assert_int_eq(get_page(s, ns, 7, len), 0);
    /* a get into a vanished page fails alone; the record stays */
    ck_assert_int_eq(xfer(s, ns, 0, m, len, false, 0), -EFAULT);
    ck_assert_uint_eq(st.corrupt_records, 0);
    ck_assert_int_eq(get_page(s, ns, 0, len), 0);

    /* a vanished getter leads a read that a good getter joins, and the other
     * way round: the good one gets the bytes */
    for (int lead_bad = 0; lead_bad < 2; lead_bad++) {
        char key[128];
        struct res r1 = {0}, r2 = {0};
        memset(own, 0, len);
        key_of(1, key);
        ck_assert_int_eq(
            hc_store_get(s, ns, key, strlen(key), lead_bad ? (void *)m : own, len, cb, &r1), 0);
        ck_assert_int_eq(
            hc_store_get(s, ns, key, strlen(key), lead_bad ? (void *)own : m, len, cb, &r2), 0);
        drain_all();
        ck_assert(r1.done && r2.done);
        ck_assert_int_eq(lead_bad ? r1.status : r2.status, -EFAULT);
        ck_assert_int_eq(lead_bad ? r2.status : r1.status, 0);
        ck_assert_msg(same(own, len, 1), "joiner/leader with a good buffer got wrong bytes");
    }
    ck_assert_uint_ge(st.client_faults, 5);
    ck_assert_uint_eq(st.corrupt_records, 0);

    /* after a restart the poisoned records stay unreadable, the rest stands */
    close_store(s);
    s = open_store(&cfg, &st);
    ns = hc_store_ns(s, "pool", 4);
    ck_assert_int_eq(get_page(s, ns, 0, len), 0);
    ck_assert_int_eq(get_page(s, ns, 1, len), 0);
    ck_assert_int_eq(get_page(s, ns, 5, len), -ENOENT);
    ck_assert_int_eq(get_page(s, ns, 7, len), 0);
    close_store(s);
    munmap(m, pool);
    close(fd);
    free(own);
}
END_TEST

/* The pool truncated by test_refault's hook, once, from the I/O thread that
 * checksummed a batch of two records or more. */
static int refault_fd = -1;
static unsigned refault_hits;

static void refault_hook(unsigned nrecs)
{
    if (nrecs >= 2 && refault_fd >= 0) {
        (void)!ftruncate(refault_fd, 0);
        refault_fd = -1;
        __atomic_add_fetch(&refault_hits, 1, __ATOMIC_RELAXED);
    }
}

/* A setter's buffer vanishes between the checksums of a gathered write and
 * the write itself (a client truncated its host pool at that moment): the
 * write fails with EFAULT, goes out again from the daemon's copies, the
 * vanished record poisoned; the other setter's record in the same write is
 * stored and read back byte for byte, the segment stays open, and after a
 * restart the same holds. */
START_TEST(test_refault)
{
#if defined(__SANITIZE_THREAD__)
    return; /* the guard's SIGBUS under ThreadSanitizer: see test_vanished_buffers */
#endif
    struct hc_stats st;
    struct hc_store_config cfg = base_cfg("n1");
    cfg.open_segments = 1; /* the two sets wait behind the first in one segment */
    const size_t len = 64 * KiB, pool = 1 * MiB;
    struct hc_store *s = open_store(&cfg, &st);
    int ns = hc_store_ns(s, "refault", 7);
    int fd = memfd_create("hc-test-refault", MFD_CLOEXEC);
    unsigned char *own = malloc(len), *first = malloc(len), *m;
    struct res r0 = {0}, rb = {0}, rc = {0};
    char k0[128], kb[128], kc[128];

    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(ftruncate(fd, (off_t)pool), 0);
    m = mmap(NULL, pool, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    ck_assert(m != MAP_FAILED);
    fill(first, len, 0);
    fill(m, len, 1);
    fill(own, len, 2);
    key_of(0, k0);
    key_of(1, kb);
    key_of(2, kc);
    refault_fd = fd;
    refault_hits = 0;
    hc__wb_test_hook = refault_hook;
    /* page 0 goes out at once (a batch of one); pages 1 (from the pool) and
     * 2 (the daemon's caller's memory) wait behind it and go in one write */
    ck_assert_int_eq(hc_store_set(s, ns, k0, strlen(k0), first, len, cb, &r0), 0);
    ck_assert_int_eq(hc_store_set(s, ns, kb, strlen(kb), m, len, cb, &rb), 0);
    ck_assert_int_eq(hc_store_set(s, ns, kc, strlen(kc), own, len, cb, &rc), 0);
    drain_all();
    hc__wb_test_hook = NULL;
    ck_assert(r0.done && rb.done && rc.done);
    ck_assert_uint_eq(__atomic_load_n(&refault_hits, __ATOMIC_RELAXED), 1);
    ck_assert_int_eq(r0.status, 0);
    ck_assert_int_eq(rb.status, -EFAULT);
    ck_assert_msg(rc.status == 0, "the other setter's record failed: %d", rc.status);
    ck_assert_uint_eq(st.client_faults, 1);
    ck_assert_uint_eq(st.io_errors, 0);
    ck_assert_int_eq(get_page(s, ns, 0, len), 0);
    ck_assert_int_eq(get_page(s, ns, 1, len), -ENOENT);
    ck_assert_int_eq(get_page(s, ns, 2, len), 0);
    /* the segment still takes appends */
    fill(own, len, 3);
    ck_assert_int_eq(xfer(s, ns, 3, own, len, true, HC_COMPRESSION_OFF), 0);
    ck_assert_uint_eq(st.corrupt_records, 0);

    close_store(s);
    s = open_store(&cfg, &st);
    ns = hc_store_ns(s, "refault", 7);
    ck_assert_int_eq(get_page(s, ns, 0, len), 0);
    ck_assert_int_eq(get_page(s, ns, 1, len), -ENOENT);
    ck_assert_int_eq(get_page(s, ns, 2, len), 0);
    ck_assert_int_eq(get_page(s, ns, 3, len), 0);
    ck_assert_uint_eq(st.corrupt_records, 0);
    close_store(s);
    munmap(m, pool);
    close(fd);
    free(own);
    free(first);
}
END_TEST

/* Reinsertion at eviction keeps the pages read again or late in their
 * segment's life. 64 KiB pages: 15 records of 68 KiB fill a 1 MiB segment;
 * segment 1 stops taking appends at 1,020 KiB written (when the 16th page
 * comes), and a read of it counts as late once 0.6 of the 4 MiB capacity
 * less the open segment's bytes was written since: not after 16 pages (68
 * KiB since, 2,417 needed), but after 45 (2,040 KiB since, 1,846 needed:
 * segment 3, full, is still open); the 61st page puts the store over
 * capacity and evicts segment 1. */
START_TEST(test_evict_reinsert)
{
    struct hc_stats st;
    struct hc_store_config cfg = base_cfg("n1");
    cfg.segment_size = 1 * MiB;
    cfg.capacity_bytes = 4 * MiB;
    cfg.reinsert = true;
    struct hc_store *s = open_store(&cfg, &st);
    int ns = hc_store_ns(s, "ns", 2);
    size_t len = 64 * KiB;
    int i = 0;

    for (; i < 16; i++) /* segment 1 full, closed */
        put_page(s, ns, i, len);
    ck_assert_int_eq(get_page(s, ns, 4, len), 0); /* page 4: read once, early */
    ck_assert_int_eq(get_page(s, ns, 5, len), 0); /* page 5: twice, early */
    ck_assert_int_eq(get_page(s, ns, 5, len), 0);
    for (; i < 45; i++)
        put_page(s, ns, i, len);
    ck_assert_int_eq(get_page(s, ns, 3, len), 0); /* page 3: read late, once */
    ck_assert_uint_eq(st.evicted_segments, 0);
    while (st.evicted_segments < 1)
        put_page(s, ns, i++, len);
    ck_assert_int_eq(i, 61);
    drain_all(); /* the reinsertion: a read, then a set */
    ck_assert_uint_eq(st.reinserted_pages, 2);
    ck_assert_uint_eq(st.reinserted_bytes, 2 * len);
    ck_assert_int_eq(get_page(s, ns, 4, len), -ENOENT);
    ck_assert_int_eq(get_page(s, ns, 0, len), -ENOENT);
    /* pages 3 and 5 live on in a newer segment, after segments 2 and 3 went
     * too */
    while (st.evicted_segments < 3)
        put_page(s, ns, i++, len);
    ck_assert_int_eq(get_page(s, ns, 3, len), 0); /* byte for byte */
    ck_assert_int_eq(get_page(s, ns, 5, len), 0);
    ck_assert_int_eq(get_page(s, ns, 17, len), -ENOENT);
    ck_assert_uint_le(st.bytes_written, (uint64_t)(1.25 * (double)i * len) + len);
    /* each read once just now, early in its new segment's life: not
     * reinserted again */
    uint64_t before = st.reinserted_pages;
    while (page_exists(s, ns, 3) || page_exists(s, ns, 5))
        put_page(s, ns, i++, len);
    drain_all();
    ck_assert_uint_eq(st.reinserted_pages, before);
    close_store(s);
}
END_TEST

/* 64 KiB pages: 15 records (68 KiB each) fill a 1 MiB segment. 46 pages fill
 * segments 1-3 and start segment 4; a capacity of 3 MiB, set while a read of
 * page 0 is in flight, evicts segment 1 at the next tick. (The segment a set
 * rolls to is created on an I/O thread, so a set no longer evicts inside its
 * call: the tick does it here, at a known moment.) */
static void read_during_eviction(bool reopen)
{
    struct hc_stats st;
    struct hc_store_config cfg = base_cfg("n1");
    cfg.segment_size = 1 * MiB;
    struct hc_store *s = open_store(&cfg, &st);
    int ns = hc_store_ns(s, "ns", 2);
    size_t len = 64 * KiB;
    for (int i = 0; i < 46; i++)
        put_page(s, ns, i, len);
    ck_assert_uint_eq(st.evicted_pages, 0);
    if (reopen) { /* no fd open: the read starts with an open task */
        close_store(s);
        s = open_store(&cfg, &st);
        ns = hc_store_ns(s, "ns", 2);
    }

    char key[128], seg1[PATH_MAX];
    unsigned char *out = malloc(len), *in = malloc(len);
    struct res rg = {0}, rs = {0};
    node_file(seg1, "n1", first_seq("n1"), "seg");
    key_of(0, key);
    ck_assert_int_eq(hc_store_get(s, ns, key, strlen(key), out, len, cb, &rg), 0);
    cfg.capacity_bytes = 3 * MiB;
    hc_store_reconfigure(s, &cfg);
    hc_store_tick(s, 1000);
    ck_assert_uint_eq(st.evicted_segments, 1); /* evicted with the read in flight */
    fill(in, len, 46);
    key_of(46, key);
    ck_assert_int_eq(hc_store_set(s, ns, key, strlen(key), in, len, cb, &rs), 0);
    ck_assert(!page_exists(s, ns, 0));
    drain_all();
    ck_assert(rg.done && rs.done);
    ck_assert_int_eq(rg.status, 0);
    ck_assert(same(out, len, 0));
    ck_assert_int_eq(rs.status, 0);
    ck_assert(!file_exists(seg1));
    ck_assert_int_eq(get_page(s, ns, 0, len), -ENOENT);
    ck_assert_int_eq(get_page(s, ns, 20, len), 0);
    free(out);
    free(in);
    close_store(s);
}

START_TEST(test_read_during_eviction)
{
    read_during_eviction(false);
}
END_TEST

START_TEST(test_read_during_eviction_reopened)
{
    read_during_eviction(true);
}
END_TEST

START_TEST(test_two_nodes)
{
    struct hc_stats sa, sb;
    struct hc_store_config ca = base_cfg("node-a"), cb_ = base_cfg("node-b");
    ca.segment_size = 1 * MiB;
    ca.capacity_bytes = 2 * MiB;
    ca.seal_interval_ms = 1000;
    cb_.discovery_interval_ms = 500;
    struct hc_store *a = open_store(&ca, &sa);
    struct hc_store *b = open_store(&cb_, &sb);
    int nsa = hc_store_ns(a, "shared", 6), nsb = hc_store_ns(b, "shared", 6);
    size_t len = 64 * KiB;
    uint64_t now = 10000;
    hc_store_tick(a, now);
    hc_store_tick(b, now);

    for (int i = 0; i < 5; i++)
        put_page(a, nsa, i, len);
    hc_store_tick(b, now += 600);
    drain_all();
    ck_assert(!page_exists(b, nsb, 0)); /* not sealed yet: not visible */

    hc_store_tick(a, now += 1000); /* seal by age */
    drain_all();
    char idx1[PATH_MAX];
    node_file(idx1, "node-a", first_seq("node-a"), "idx");
    ck_assert(file_exists(idx1));
    hc_store_tick(b, now += 600);
    drain_all();
    for (int i = 0; i < 5; i++) {
        ck_assert(page_exists(b, nsb, i));
        ck_assert_int_eq(get_page(b, nsb, i, len), 0);
    }
    ck_assert_uint_eq(sb.remote_pages, 5);
    ck_assert_uint_eq(sb.local_pages, 0);
    /* A page B has is a dedupe hit there. */
    put_page(b, nsb, 0, len);
    ck_assert_uint_eq(sb.dedup_hits, 1);
    ck_assert_uint_eq(sb.bytes_written, 0);

    /* A writes on; its capacity evicts segment 1. */
    for (int i = 5; i < 60; i++)
        put_page(a, nsa, i, len);
    hc_store_tick(a, now += 1000);
    drain_all();
    ck_assert_uint_gt(sa.evicted_segments, 0);
    ck_assert(!file_exists(idx1));
    /* Before B notices: a hit with the right bytes (fd still open) or a
     * miss, never wrong bytes. */
    int rc = get_page(b, nsb, 1, len);
    ck_assert(rc == 0 || rc == -ENOENT);
    hc_store_tick(b, now += 600);
    drain_all();
    for (int i = 0; i < 5; i++) {
        ck_assert(!page_exists(b, nsb, i));
        ck_assert_int_eq(get_page(b, nsb, i, len), -ENOENT);
    }
    /* Pages of A's later sealed segments are there, byte for byte. */
    ck_assert(page_exists(b, nsb, 40));
    ck_assert_int_eq(get_page(b, nsb, 40, len), 0);
    ck_assert_uint_eq(sb.corrupt_records, 0);

    /* A restart of B finds A's segments at open. */
    close_store(b);
    b = open_store(&cb_, &sb);
    nsb = hc_store_ns(b, "shared", 6);
    ck_assert_uint_gt(sb.remote_pages, 0);
    ck_assert_int_eq(get_page(b, nsb, 40, len), 0);
    close_store(b);
    close_store(a);
}
END_TEST

/* The number of node's remote-read hint files for owner (hints.c). */
static int hint_files_of(const char *node, const char *owner)
{
    char dir[PATH_MAX], pre[128];
    struct dirent *de;
    int n = 0;
    snprintf(dir, sizeof(dir), "%s/hicache/%s", tmpdir, node);
    snprintf(pre, sizeof(pre), "%s.", owner);
    DIR *dh = opendir(dir);
    if (!dh)
        return 0;
    while ((de = readdir(dh))) {
        size_t l = strlen(de->d_name);
        if (!strncmp(de->d_name, pre, strlen(pre)) && l > 3 && !strcmp(de->d_name + l - 3, ".rh"))
            n++;
    }
    closedir(dh);
    return n;
}

/* Another node's reads count for reinsertion: B reads one of A's pages once
 * early in its segment's life and two others once each late; B tells A
 * through hint files in its own directory; A's discovery applies them, and
 * when A evicts the segment, exactly the two pages read late are written
 * again (the rule before, two reads, would have kept none) and B reads them
 * back byte for byte, while the others are gone. A broken hint file is
 * refused and changes nothing. */
START_TEST(test_remote_read_hints)
{
    struct hc_stats sa, sb;
    struct hc_store_config ca = base_cfg("node-a"), cb_ = base_cfg("node-b");
    ca.segment_size = 1 * MiB;
    ca.capacity_bytes = 2 * MiB;
    ca.seal_interval_ms = 1000;
    ca.discovery_interval_ms = 500;
    ca.reinsert = true;
    cb_.discovery_interval_ms = 500;
    cb_.read_linger_ms = 0; /* each get a read from storage */
    struct hc_store *a = open_store(&ca, &sa);
    struct hc_store *b = open_store(&cb_, &sb);
    int nsa = hc_store_ns(a, "shared", 6), nsb = hc_store_ns(b, "shared", 6);
    size_t len = 64 * KiB;
    uint64_t now = 10000;
    char bad[PATH_MAX];
    int i;

    hc_store_tick(a, now);
    hc_store_tick(b, now);
    for (i = 0; i < 5; i++)
        put_page(a, nsa, i, len);
    hc_store_tick(a, now += 1000); /* seal by age */
    drain_all();
    hc_store_tick(b, now += 600);
    drain_all();
    ck_assert_int_eq(get_page(b, nsb, 3, len), 0); /* once, early in its life */
    ck_assert_uint_eq(sb.hints_sent, 0);
    hc_store_tick(b, now += 5000); /* the hint goes out */
    drain_all();
    ck_assert_uint_eq(sb.hints_sent, 1);
    hc_store_tick(a, now += 600); /* A's discovery takes it */
    drain_all();
    ck_assert_uint_eq(sa.hints_applied, 1);
    /* A writes 19 pages (1,292 KiB since the segment closed, over 0.6 of its
     * capacity less the open segment's 272 KiB): now the segment is late in
     * its life */
    for (; i < 24; i++)
        put_page(a, nsa, i, len);
    ck_assert_uint_eq(sa.evicted_segments, 0);
    ck_assert_int_eq(get_page(b, nsb, 1, len), 0); /* once each, late */
    ck_assert_int_eq(get_page(b, nsb, 2, len), 0);
    hc_store_tick(b, now += 5000); /* the hints go out */
    drain_all();
    ck_assert_uint_eq(sb.hints_sent, 3);
    ck_assert_uint_eq(sb.hint_files, 2);
    ck_assert_int_eq(hint_files_of("node-b", "node-a"), 2);
    /* a broken one beside them, numbered higher */
    snprintf(bad, sizeof(bad), "%s/hicache/node-b/node-a.ffffffffffffffff.rh", tmpdir);
    FILE *f = fopen(bad, "w");
    ck_assert(f);
    fputs("HCRH0001 not a hint file", f);
    fclose(f);
    uint64_t refused = sa.idx_refused;
    hc_store_tick(a, now += 600); /* A's discovery takes them */
    drain_all();
    ck_assert_uint_eq(sa.hints_applied, 3);
    ck_assert_uint_eq(sa.idx_refused, refused + 1);
    hc_store_tick(a, now += 600); /* taken once only */
    drain_all();
    ck_assert_uint_eq(sa.hints_applied, 3);
    ck_assert_uint_eq(sa.idx_refused, refused + 1);

    /* A writes on: its capacity evicts the first segment; pages 1 and 2
     * (read late on B) are written again, 3 (once, early) and the rest are
     * not */
    for (; i < 60 && !sa.evicted_segments; i++)
        put_page(a, nsa, i, len);
    drain_all();
    ck_assert_uint_eq(sa.evicted_segments, 1);
    ck_assert_uint_eq(sa.reinserted_pages, 2);
    for (int t = 0; t < 3; t++) { /* A seals what holds them, B finds it */
        hc_store_tick(a, now += 1000);
        drain_all();
        hc_store_tick(b, now += 600);
        drain_all();
    }
    ck_assert_int_eq(get_page(a, nsa, 1, len), 0);
    ck_assert_int_eq(get_page(b, nsb, 1, len), 0);
    ck_assert_int_eq(get_page(b, nsb, 2, len), 0);
    ck_assert_int_eq(get_page(b, nsb, 0, len), -ENOENT);
    ck_assert_int_eq(get_page(b, nsb, 3, len), -ENOENT);
    ck_assert_uint_eq(sa.corrupt_records, 0);
    ck_assert_uint_eq(sb.corrupt_records, 0);
    /* B's later reads (of the new copies) still reach A: the broken file,
     * numbered above them, holds nothing up */
    hc_store_tick(b, now += 5000);
    drain_all();
    ck_assert_uint_eq(sb.hint_files, 3);
    hc_store_tick(a, now += 600);
    drain_all();
    ck_assert_uint_eq(sa.hints_applied, 5);
    ck_assert_uint_eq(sa.idx_refused, refused + 1);

    /* B removes its hint files after a minute, and its leftovers at a start */
    for (int t = 0; t < 3; t++) {
        hc_store_tick(b, now += 61000);
        drain_all();
    }
    ck_assert_int_eq(hint_files_of("node-b", "node-a"), 1); /* the broken one is not B's */
    close_store(b);
    b = open_store(&cb_, &sb);
    ck_assert_int_eq(hint_files_of("node-b", "node-a"), 0);
    close_store(b);
    close_store(a);
}
END_TEST

START_TEST(test_clear)
{
    struct hc_stats st;
    struct hc_store_config cfg = base_cfg("n1");
    struct hc_store *s = open_store(&cfg, &st);
    int n1 = hc_store_ns(s, "one", 3), n2 = hc_store_ns(s, "two", 3);
    for (int i = 0; i < 10; i++) {
        put_page(s, n1, i, 5000);
        put_page(s, n2, i, 6000);
    }
    ck_assert_uint_eq(clear_ns(s, n1), 10);
    ck_assert_uint_eq(st.pages, 10);
    ck_assert(!page_exists(s, n1, 3));
    ck_assert_int_eq(get_page(s, n1, 3, 5000), -ENOENT);
    ck_assert(page_exists(s, n2, 3));
    put_page(s, n1, 100, 5000); /* written after the clear: kept */
    close_store(s);

    s = open_store(&cfg, &st);
    n1 = hc_store_ns(s, "one", 3);
    n2 = hc_store_ns(s, "two", 3);
    ck_assert_uint_eq(st.pages, 11);
    for (int i = 0; i < 10; i++) {
        ck_assert(!page_exists(s, n1, i));
        ck_assert_int_eq(get_page(s, n2, i, 6000), 0);
    }
    ck_assert_int_eq(get_page(s, n1, 100, 5000), 0);
    close_store(s);

    /* Also without the .idx (a scan) the tombstone holds. */
    char idx[PATH_MAX];
    node_file(idx, "n1", first_seq("n1"), "idx");
    ck_assert_int_eq(unlink(idx), 0);
    s = open_store(&cfg, &st);
    n1 = hc_store_ns(s, "one", 3);
    ck_assert(!page_exists(s, n1, 0));
    ck_assert(page_exists(s, n1, 100));
    close_store(s);
}
END_TEST

/* Acks come in record order: when a set's callback runs, every set before it
 * in the segment is visible, even though small writes finish before big
 * ones. */
static struct hc_store *ord_store;
static int ord_ns, ord_log[64], ord_n;

static void ord_cb(void *data, int status, uint64_t len)
{
    int i = *(int *)data;
    ck_assert_int_eq(status, 0);
    for (int j = 0; j <= i; j++)
        ck_assert_msg(page_exists(ord_store, ord_ns, j), "page %d acked before %d", i, j);
    ord_log[ord_n++] = i;
}

START_TEST(test_ack_order)
{
    struct hc_stats st;
    struct hc_store_config cfg = base_cfg("n1");
    cfg.segment_size = 256 * MiB;
    struct hc_store *s = open_store(&cfg, &st);
    int ns = hc_store_ns(s, "ns", 2);
    enum { N = 40 };
    unsigned char *bufs[N];
    int ids[N];
    char key[128];
    ord_store = s;
    ord_ns = ns;
    ord_n = 0;
    for (int i = 0; i < N; i++) {
        size_t len = i % 2 ? 1000 : 4 * MiB;
        bufs[i] = malloc(len);
        fill(bufs[i], len, (uint64_t)i);
        ids[i] = i;
        key_of(i, key);
        ck_assert_int_eq(hc_store_set(s, ns, key, strlen(key), bufs[i], len, ord_cb, &ids[i]), 0);
    }
    drain_all();
    ck_assert_int_eq(ord_n, N);
    for (int i = 0; i < N; i++) {
        ck_assert_int_eq(ord_log[i], i);
        free(bufs[i]);
    }
    close_store(s);
}
END_TEST

START_TEST(test_free_space_eviction)
{
    struct hc_stats st;
    struct hc_store_config cfg = base_cfg("n1");
    struct statvfs sv;
    cfg.segment_size = 1 * MiB;
    cfg.min_free_ratio = 0.999999;
    ck_assert_int_eq(statvfs(tmpdir, &sv), 0);
    if ((double)sv.f_bavail / (double)sv.f_blocks >= cfg.min_free_ratio)
        return; /* an empty filesystem: nothing to test */
    struct hc_store *s = open_store(&cfg, &st);
    int ns = hc_store_ns(s, "ns", 2);
    for (int i = 0; i < 40; i++) /* segments 1 and 2 sealed, 3 open */
        put_page(s, ns, i, 64 * KiB);
    hc_store_tick(s, 5000);
    drain_all();
    ck_assert_uint_eq(st.evicted_segments, 1); /* one per statvfs */
    hc_store_tick(s, 5500);
    drain_all();
    ck_assert_uint_eq(st.evicted_segments, 1); /* at most once a second */
    hc_store_tick(s, 6100);
    drain_all();
    hc_store_tick(s, 7200);
    drain_all();
    ck_assert_uint_eq(st.evicted_segments, 2); /* never the open segment */
    ck_assert_int_eq(get_page(s, ns, 0, 64 * KiB), -ENOENT);
    ck_assert_int_eq(get_page(s, ns, 39, 64 * KiB), 0);
    close_store(s);
}
END_TEST

/* A record whose header is good but whose payload is not (a client changed its
 * slot while the set was written) is skipped by the recovery scan: the records
 * after it survive, even when it is the first of the segment. A bad header
 * still ends the scan. */
START_TEST(test_scan_skips_bad_payload)
{
    struct hc_stats st;
    struct hc_store_config cfg = base_cfg("n1");
    struct hc_store *s = open_store(&cfg, &st);
    int ns = hc_store_ns(s, "ns", 2);
    size_t len = 8192; /* record: 12288 bytes */
    for (int i = 0; i < 12; i++)
        put_page(s, ns, i, len);
    close_store(s);

    char seg[PATH_MAX], idx[PATH_MAX];
    uint64_t seq = first_seq("n1");
    node_file(seg, "n1", seq, "seg");
    node_file(idx, "n1", seq, "idx");
    ck_assert_int_eq(unlink(idx), 0);           /* unsealed, as after a crash */
    flip_byte(seg, 0 * 12288 + 4096 + 3);       /* payload of record 0 */
    flip_byte(seg, 4 * 12288 + 4096 + len - 1); /* payload of record 4 */
    flip_byte(seg, 9 * 12288 + 40);             /* header of record 9 (namespace) */

    for (int round = 0; round < 2; round++) { /* the scan, then the .idx it wrote */
        s = open_store(&cfg, &st);
        ns = hc_store_ns(s, "ns", 2);
        ck_assert(file_exists(seg));
        ck_assert(file_exists(idx));
        ck_assert_uint_eq(st.corrupt_records, round == 0 ? 2 : 0);
        ck_assert_uint_eq(st.pages, 7);
        for (int i = 0; i < 12; i++) {
            bool good = i != 0 && i != 4 && i < 9;
            ck_assert_msg(page_exists(s, ns, i) == good, "page %d", i);
            ck_assert_int_eq(get_page(s, ns, i, len), good ? 0 : -ENOENT);
        }
        close_store(s);
    }
}
END_TEST

/* A clear while a set of the namespace is in flight: that write still lands
 * before the clear point (and stays out of the index), so a set of the same
 * key after the clear must write again rather than join it. */
START_TEST(test_clear_inflight_write)
{
    struct hc_stats st;
    struct hc_store_config cfg = base_cfg("n1");
    struct hc_store *s = open_store(&cfg, &st);
    int ns = hc_store_ns(s, "ns", 2);
    size_t len = 2 * MiB;
    unsigned char *a = malloc(len), *b = malloc(len);
    struct res r1 = {0}, r2 = {0}, rc = {0};
    char key[128];
    fill(a, len, 7);
    fill(b, len, 7);
    key_of(7, key);

    /* A page of another namespace first: the segment is open (created on an
     * I/O thread), so the set below is a write in flight, not a set waiting
     * for a segment (which a clear keeps from being written at all). */
    put_page(s, hc_store_ns(s, "other", 5), 1, 4 * KiB);
    ck_assert_int_eq(hc_store_set(s, ns, key, strlen(key), a, len, cb, &r1), 0);
    ck_assert_int_eq(hc_store_clear(s, ns, cb, &rc), 0);
    ck_assert_int_eq(hc_store_set(s, ns, key, strlen(key), b, len, cb, &r2), 0);
    ck_assert(!r1.done && !r2.done && !rc.done);
    drain_all();
    ck_assert(r1.done && r2.done && rc.done);
    ck_assert_int_eq(rc.status, 0);
    ck_assert_uint_eq(rc.len, 0); /* nothing was visible yet */
    ck_assert_int_eq(r1.status, 0);
    ck_assert_int_eq(r2.status, 0);
    ck_assert_uint_eq(st.bytes_written, 4 * KiB + 2 * len);
    ck_assert_uint_eq(st.dedup_hits, 0);
    ck_assert_uint_eq(hc_store_exists(s, ns, key, strlen(key)), len);
    ck_assert_int_eq(get_page(s, ns, 7, len), 0);
    /* Now it is stored: a third set is a dedupe hit. */
    put_page(s, ns, 7, len);
    ck_assert_uint_eq(st.dedup_hits, 1);
    close_store(s);

    s = open_store(&cfg, &st);
    ns = hc_store_ns(s, "ns", 2);
    ck_assert_uint_eq(st.pages, 2); /* and the page of "other" */
    ck_assert_uint_eq(hc_store_exists(s, ns, key, strlen(key)), len);
    ck_assert_int_eq(get_page(s, ns, 7, len), 0);
    close_store(s);
    free(a);
    free(b);
}
END_TEST

/* Several open segments (open_segments 4), each with one writer: a burst of
 * sets spreads over more than one segment at once; every page reads back
 * byte for byte, also after a restart from the .idx files and from a scan of
 * the segments alone; a clear in the middle of a burst drops every page set
 * before it (some still being written in other open segments) and none set
 * after it, also after a restart. */
static void burst(struct hc_store *s, int ns, int from, int n, size_t len, unsigned char **bufs,
                  struct res *r)
{
    char key[128];
    for (int i = from; i < from + n; i++) {
        bufs[i] = malloc(len);
        fill(bufs[i], len, (uint64_t)i);
        key_of(i, key);
        ck_assert_int_eq(hc_store_set(s, ns, key, strlen(key), bufs[i], len, cb, &r[i]), 0);
    }
}

START_TEST(test_open_segments)
{
    struct hc_stats st;
    struct hc_store_config cfg = base_cfg("n1");
    enum { N = 96, HALF = 48 };
    size_t len = MiB;
    unsigned char *bufs[N];
    struct res r[N], rc = {0};
    uint64_t seqs[64];
    memset(r, 0, sizeof(r));
    cfg.open_segments = 4;
    cfg.segment_size = 64 * MiB;
    struct hc_store *s = open_store(&cfg, &st);
    int ns = hc_store_ns(s, "ns", 2), other = hc_store_ns(s, "other", 5);

    put_page(s, other, 1000, 4 * KiB); /* a segment is open */
    burst(s, ns, 0, HALF, len, bufs, r);
    drain_all();
    for (int i = 0; i < HALF; i++) {
        ck_assert(r[i].done);
        ck_assert_int_eq(r[i].status, 0);
        ck_assert_int_eq(get_page(s, ns, i, len), 0);
    }
    close_store(s);
    /* the burst went to several files at once: 48 MiB in 64 MiB segments */
    size_t nseg = node_seqs("n1", seqs, 64);
    ck_assert_uint_ge(nseg, 2);
    ck_assert_uint_le(nseg, 4);

    s = open_store(&cfg, &st);
    ns = hc_store_ns(s, "ns", 2);
    ck_assert_uint_eq(st.pages, HALF + 1);
    for (int i = 0; i < HALF; i++)
        ck_assert_int_eq(get_page(s, ns, i, len), 0);
    close_store(s);
    for (size_t k = 0; k < nseg; k++) { /* a scan of each segment finds the same */
        char idx[PATH_MAX];
        node_file(idx, "n1", seqs[k], "idx");
        ck_assert_int_eq(unlink(idx), 0);
    }
    s = open_store(&cfg, &st);
    ns = hc_store_ns(s, "ns", 2);
    ck_assert_uint_eq(st.pages, HALF + 1);
    for (int i = 0; i < HALF; i++)
        ck_assert_int_eq(get_page(s, ns, i, len), 0);
    ck_assert_uint_eq(clear_ns(s, ns), HALF);
    other = hc_store_ns(s, "other", 5);

    /* A clear while a burst is being written to several open segments. */
    put_page(s, other, 1001, 4 * KiB);
    burst(s, ns, HALF, HALF / 2, len, bufs, r);
    ck_assert_int_eq(hc_store_clear(s, ns, cb, &rc), 0);
    burst(s, ns, HALF + HALF / 2, HALF / 2, len, bufs, r);
    drain_all();
    ck_assert(rc.done);
    ck_assert_int_eq(rc.status, 0);
    for (int i = HALF; i < N; i++) {
        ck_assert(r[i].done);
        ck_assert_int_eq(r[i].status, 0);
        int want = i < HALF + HALF / 2 ? -ENOENT : 0;
        ck_assert_int_eq(get_page(s, ns, i, len), want);
    }
    ck_assert_int_eq(get_page(s, other, 1001, 4 * KiB), 0);
    close_store(s);
    s = open_store(&cfg, &st);
    ns = hc_store_ns(s, "ns", 2);
    for (int i = 0; i < N; i++) {
        int want = i < HALF + HALF / 2 ? -ENOENT : 0;
        ck_assert_int_eq(get_page(s, ns, i, len), want);
    }
    other = hc_store_ns(s, "other", 5);
    ck_assert(page_exists(s, other, 1000));
    ck_assert(page_exists(s, other, 1001));
    ck_assert_uint_eq(st.pages, HALF / 2 + 2);
    close_store(s);
    for (int i = 0; i < N; i++)
        free(bufs[i]);
}
END_TEST

/* A clear whose tombstones cannot be saved (cleared.json.tmp is a directory
 * here) answers an error, not success: the drop holds in memory, and a
 * restart brings the pages back, as the error warns. A later clear that
 * saves them answers 0. */
START_TEST(test_clear_unsaved_is_error)
{
    struct hc_stats st;
    struct hc_store_config cfg = base_cfg("n1");
    struct hc_store *s = open_store(&cfg, &st);
    int ns = hc_store_ns(s, "ns", 2);
    char tmp[PATH_MAX];
    struct res r = {0};

    put_page(s, ns, 1, 8 * KiB);
    put_page(s, ns, 2, 8 * KiB);
    snprintf(tmp, sizeof(tmp), "%s/hicache/n1/cleared.json.tmp", tmpdir);
    ck_assert_int_eq(mkdir(tmp, 0755), 0);
    ck_assert_int_eq(hc_store_clear(s, ns, cb, &r), 0);
    ck_assert(!r.done);
    ck_assert(!page_exists(s, ns, 1)); /* dropped at once */
    drain_all();
    ck_assert(r.done);
    ck_assert_int_lt(r.status, 0);
    ck_assert_uint_eq(r.len, 0);
    ck_assert_uint_ge(st.io_errors, 1);
    close_store(s);

    s = open_store(&cfg, &st); /* not saved: the pages come back */
    ns = hc_store_ns(s, "ns", 2);
    ck_assert(page_exists(s, ns, 1) && page_exists(s, ns, 2));
    ck_assert_int_eq(rmdir(tmp), 0);
    ck_assert_uint_eq(clear_ns(s, ns), 2);
    close_store(s);
    s = open_store(&cfg, &st); /* saved: they stay gone */
    ns = hc_store_ns(s, "ns", 2);
    ck_assert(!page_exists(s, ns, 1) && !page_exists(s, ns, 2));
    close_store(s);
}
END_TEST

/* A set that needs a new segment waits for its create (an I/O task) instead
 * of creating it inside the call; a clear of its namespace meanwhile keeps it
 * from being written (it would land after the clear point), answered as a
 * write in flight at a clear is. Sets queued behind it are placed in order. */
START_TEST(test_set_waits_for_segment)
{
    struct hc_stats st;
    struct hc_store_config cfg = base_cfg("n1");
    struct hc_store *s = open_store(&cfg, &st);
    int ns = hc_store_ns(s, "ns", 2), other = hc_store_ns(s, "other", 5);
    size_t len = 8 * KiB;
    unsigned char *a = malloc(len);
    struct res r1 = {0}, r2 = {0}, rc = {0};
    char k1[128], k2[128];

    fill(a, len, 1);
    key_of(1, k1);
    key_of(2, k2);
    ck_assert_int_eq(hc_store_set(s, ns, k1, strlen(k1), a, len, cb, &r1), 0);
    ck_assert_int_eq(hc_store_set(s, other, k2, strlen(k2), a, len, cb, &r2), 0);
    ck_assert_uint_eq(st.segments, 0); /* the create is an I/O task */
    ck_assert_int_eq(hc_store_clear(s, ns, cb, &rc), 0);
    drain_all();
    ck_assert(r1.done && r2.done && rc.done);
    ck_assert_int_eq(r1.status, 0);
    ck_assert_int_eq(r2.status, 0);
    ck_assert_int_eq(rc.status, 0);
    ck_assert_uint_eq(st.segments, 1);
    ck_assert_uint_eq(st.bytes_written, len); /* only the page of "other" */
    ck_assert(!page_exists(s, ns, 1));
    ck_assert(page_exists(s, other, 2));
    put_page(s, ns, 1, len); /* after the clear: written, kept */
    ck_assert(page_exists(s, ns, 1));
    close_store(s);
    free(a);
}
END_TEST

/* Segment numbers never repeat, even once every segment of the node is gone:
 * another node that knew the old (node, seq) must load the new segment. */
START_TEST(test_seq_monotonic)
{
    struct hc_stats sa, sb;
    struct hc_store_config ca = base_cfg("node-a"), cb_ = base_cfg("node-b");
    cb_.discovery_interval_ms = 500;
    struct hc_store *a = open_store(&ca, &sa);
    int nsa = hc_store_ns(a, "shared", 6);
    for (int i = 0; i < 5; i++)
        put_page(a, nsa, i, 20000);
    close_store(a);
    uint64_t old[64], seqs[64];
    size_t nold = node_seqs("node-a", old, 64);
    ck_assert_uint_ge(nold, 1);

    struct hc_store *b = open_store(&cb_, &sb);
    int nsb = hc_store_ns(b, "shared", 6);
    uint64_t now = 10000;
    hc_store_tick(b, now);
    ck_assert(page_exists(b, nsb, 0));

    /* Every segment of A goes (as by eviction); A restarts and writes. */
    for (size_t i = 0; i < nold; i++) {
        char p[PATH_MAX];
        node_file(p, "node-a", old[i], "seg");
        ck_assert_int_eq(unlink(p), 0);
        node_file(p, "node-a", old[i], "idx");
        ck_assert_int_eq(unlink(p), 0);
    }
    a = open_store(&ca, &sa);
    nsa = hc_store_ns(a, "shared", 6);
    ck_assert_uint_eq(sa.pages, 0);
    for (int i = 10; i < 15; i++)
        put_page(a, nsa, i, 20000);
    close_store(a);
    size_t n = node_seqs("node-a", seqs, 64);
    ck_assert_uint_ge(n, 1);
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < nold; j++)
            ck_assert_msg(seqs[i] > old[j], "segment %016" PRIx64 " reused", seqs[i]);
    char p[PATH_MAX];
    node_file(p, "node-a", seqs[0], "seg");
    ck_assert_uint_eq(strlen(strrchr(p, '/') + 1), 20); /* still 16 hex digits */

    hc_store_tick(b, now += 600);
    drain_all();
    for (int i = 10; i < 15; i++)
        ck_assert_int_eq(get_page(b, nsb, i, 20000), 0);
    ck_assert(!page_exists(b, nsb, 0));
    close_store(b);
}
END_TEST

/* Lookup without interning: -ENOENT for a namespace never seen, the id for
 * one interned or found in loaded segments (this node's after a restart,
 * another node's), and get/exists/clear take that id. */
START_TEST(test_ns_lookup)
{
    struct hc_stats sa, sb;
    struct hc_store_config ca = base_cfg("node-a"), cb_ = base_cfg("node-b");
    struct hc_store *a = open_store(&ca, &sa);
    ck_assert_int_eq(hc_store_ns_lookup(a, "alpha", 5), -ENOENT);
    ck_assert_int_eq(hc_store_ns_lookup(a, "alpha", 5), -ENOENT); /* not added */
    ck_assert_int_eq(hc_store_ns_lookup(a, "", 0), -EINVAL);
    int id = hc_store_ns(a, "alpha", 5);
    ck_assert_int_ge(id, 0);
    ck_assert_int_eq(hc_store_ns_lookup(a, "alpha", 5), id);
    ck_assert_int_eq(hc_store_ns_lookup(a, "alph", 4), -ENOENT);
    for (int i = 0; i < 5; i++)
        put_page(a, id, i, 9000);
    put_page(a, hc_store_ns(a, "beta", 4), 50, 9000);
    close_store(a);

    /* Restarted: the namespaces come from the node's own segments. */
    a = open_store(&ca, &sa);
    int la = hc_store_ns_lookup(a, "alpha", 5);
    ck_assert_int_ge(la, 0);
    ck_assert_int_ge(hc_store_ns_lookup(a, "beta", 4), 0);
    ck_assert_int_eq(hc_store_ns_lookup(a, "gamma", 5), -ENOENT);
    for (int i = 0; i < 5; i++) {
        ck_assert(page_exists(a, la, i));
        ck_assert_int_eq(get_page(a, la, i, 9000), 0);
    }

    /* Another node: from node-a's .idx only. */
    struct hc_store *b = open_store(&cb_, &sb);
    int lb = hc_store_ns_lookup(b, "alpha", 5);
    ck_assert_int_ge(lb, 0);
    ck_assert_int_eq(get_page(b, lb, 3, 9000), 0);
    int lbeta = hc_store_ns_lookup(b, "beta", 4);
    ck_assert_int_ge(lbeta, 0);
    ck_assert_int_eq(get_page(b, lbeta, 50, 9000), 0);
    ck_assert_int_eq(hc_store_ns_lookup(b, "gamma", 5), -ENOENT);
    close_store(b);

    ck_assert_uint_eq(clear_ns(a, la), 5);
    ck_assert(!page_exists(a, la, 0));
    ck_assert_int_eq(get_page(a, la, 0, 9000), -ENOENT);
    close_store(a);

    /* The tombstone holds, and the name is still known. */
    a = open_store(&ca, &sa);
    la = hc_store_ns_lookup(a, "alpha", 5);
    ck_assert_int_ge(la, 0);
    ck_assert(!page_exists(a, la, 0));
    ck_assert_int_eq(get_page(a, hc_store_ns_lookup(a, "beta", 4), 50, 9000), 0);
    close_store(a);
}
END_TEST

/* ---- read linger (MLA: every TP rank reads each page, not at once) ------- */

static struct hc_store_config linger_cfg(void)
{
    struct hc_store_config cfg = base_cfg("n1");
    cfg.read_linger_ms = 60000;
    cfg.read_linger_bytes = 64 * MiB;
    return cfg;
}

/* Gets page i with options (readers), checking the bytes on a hit. */
static int get_page_opts(struct hc_store *s, int ns, int i, size_t len,
                         const struct hc_store_opts *o)
{
    char key[128];
    unsigned char *buf = malloc(len);
    struct res r = {0};
    key_of(i, key);
    memset(buf, 0x5A, len);
    ck_assert_int_eq(hc_store_get_ex(s, ns, key, strlen(key), buf, len, o, cb, &r), 0);
    ck_assert(!r.done);
    drain_all();
    ck_assert(r.done);
    if (r.status == 0) {
        ck_assert_uint_eq(r.len, len);
        ck_assert_msg(same(buf, len, (uint64_t)i), "wrong bytes for page %d", i);
    }
    free(buf);
    return r.status;
}

START_TEST(test_linger_one_read_per_page)
{
    struct hc_stats st;
    struct hc_store_config cfg = linger_cfg();
    struct hc_store *s = open_store(&cfg, &st);
    int ns = hc_store_ns(s, "mla", 3);
    size_t len = 100 * KiB + 3; /* not block-sized */
    struct hc_store_opts o = {.readers = 4};
    put_page(s, ns, 1, len);

    /* Four readers, one after the other (each get finished before the next
     * starts, so no in-flight coalescing): one storage read. */
    ck_assert_int_eq(get_page_opts(s, ns, 1, len, &o), 0);
    ck_assert_uint_eq(st.bytes_read_storage, len);
    ck_assert_uint_eq(st.linger_bytes, len);
    for (int r = 1; r < 4; r++) {
        ck_assert_int_eq(get_page_opts(s, ns, 1, len, &o), 0);
        ck_assert_uint_eq(st.bytes_read_storage, len);
    }
    ck_assert_uint_eq(st.coalesced_reads, 3);
    ck_assert_uint_eq(st.bytes_served, 4 * len);
    ck_assert_uint_eq(st.hits, 4);
    ck_assert_uint_eq(st.linger_bytes, 0); /* every reader served: dropped */
    /* A fifth get (a new request of the page) reads storage again. */
    ck_assert_int_eq(get_page_opts(s, ns, 1, len, &o), 0);
    ck_assert_uint_eq(st.bytes_read_storage, 2 * len);
    ck_assert_uint_eq(st.linger_bytes, len);

    /* Without readers (MHA, or linger off for the client): no linger. */
    put_page(s, ns, 2, len);
    ck_assert_int_eq(get_page(s, ns, 2, len), 0);
    ck_assert_int_eq(get_page(s, ns, 2, len), 0);
    ck_assert_uint_eq(st.bytes_read_storage, 4 * len);
    close_store(s);
    ck_assert_uint_eq(st.linger_bytes, 0);
}
END_TEST

/* Two readers of three in flight at once, the third after: one read; and
 * what the first getter does to its own slot afterwards never reaches the
 * third. */
START_TEST(test_linger_after_joiners)
{
    struct hc_stats st;
    struct hc_store_config cfg = linger_cfg();
    struct hc_store *s = open_store(&cfg, &st);
    int ns = hc_store_ns(s, "mla", 3);
    size_t len = 64 * KiB;
    struct hc_store_opts o = {.readers = 3};
    unsigned char *a = malloc(len), *b = malloc(len);
    struct res ra = {0}, rb = {0};
    char key[128];
    put_page(s, ns, 7, len);
    key_of(7, key);
    ck_assert_int_eq(hc_store_get_ex(s, ns, key, strlen(key), a, len, &o, cb, &ra), 0);
    ck_assert_int_eq(hc_store_get_ex(s, ns, key, strlen(key), b, len, &o, cb, &rb), 0);
    drain_all();
    ck_assert(ra.done && rb.done);
    ck_assert_int_eq(ra.status, 0);
    ck_assert_int_eq(rb.status, 0);
    ck_assert(same(a, len, 7));
    ck_assert(same(b, len, 7));
    ck_assert_uint_eq(st.bytes_read_storage, len);
    ck_assert_uint_eq(st.linger_bytes, len); /* one reader to go */
    memset(a, 0xEE, len);
    memset(b, 0xEE, len);
    ck_assert_int_eq(get_page_opts(s, ns, 7, len, &o), 0);
    ck_assert_uint_eq(st.bytes_read_storage, len);
    ck_assert_uint_eq(st.coalesced_reads, 2);
    ck_assert_uint_eq(st.linger_bytes, 0);
    free(a);
    free(b);
    close_store(s);
}
END_TEST

START_TEST(test_linger_expiry)
{
    struct hc_stats st;
    struct hc_store_config cfg = linger_cfg();
    cfg.read_linger_ms = 100;
    struct hc_store *s = open_store(&cfg, &st);
    int ns = hc_store_ns(s, "mla", 3);
    size_t len = 32 * KiB;
    struct hc_store_opts o = {.readers = 8};
    put_page(s, ns, 1, len);
    put_page(s, ns, 2, len);

    /* Expired at the next get, without a tick. */
    ck_assert_int_eq(get_page_opts(s, ns, 1, len, &o), 0);
    ck_assert_uint_eq(st.linger_bytes, len);
    usleep(250 * 1000);
    ck_assert_int_eq(get_page_opts(s, ns, 1, len, &o), 0);
    ck_assert_uint_eq(st.bytes_read_storage, 2 * len);
    ck_assert_uint_eq(st.coalesced_reads, 0);

    /* Expired by the tick: the memory goes back without another get. */
    ck_assert_int_eq(get_page_opts(s, ns, 2, len, &o), 0);
    ck_assert_uint_eq(st.linger_bytes, 2 * len);
    hc_store_tick(s, 1000);
    ck_assert_uint_eq(st.linger_bytes, 2 * len); /* still young */
    usleep(250 * 1000);
    hc_store_tick(s, 2000);
    ck_assert_uint_eq(st.linger_bytes, 0);
    ck_assert_int_eq(get_page_opts(s, ns, 2, len, &o), 0);
    ck_assert_uint_eq(st.bytes_read_storage, 4 * len);
    close_store(s);
}
END_TEST

START_TEST(test_linger_cap)
{
    struct hc_stats st;
    struct hc_store_config cfg = linger_cfg();
    size_t len = 48 * KiB;
    cfg.read_linger_bytes = 2 * len;
    struct hc_store *s = open_store(&cfg, &st);
    int ns = hc_store_ns(s, "mla", 3);
    struct hc_store_opts o = {.readers = 4};
    for (int i = 0; i < 3; i++)
        put_page(s, ns, i, len);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(get_page_opts(s, ns, i, len, &o), 0);
    ck_assert_uint_eq(st.linger_bytes, 2 * len); /* page 0 pushed out */
    ck_assert_uint_eq(st.bytes_read_storage, 3 * len);
    ck_assert_int_eq(get_page_opts(s, ns, 2, len, &o), 0); /* from memory */
    ck_assert_int_eq(get_page_opts(s, ns, 1, len, &o), 0);
    ck_assert_uint_eq(st.bytes_read_storage, 3 * len);
    ck_assert_int_eq(get_page_opts(s, ns, 0, len, &o), 0); /* read again */
    ck_assert_uint_eq(st.bytes_read_storage, 4 * len);
    ck_assert_uint_le(st.linger_bytes, 2 * len);
    /* A page larger than the cap never lingers. */
    put_page(s, ns, 9, 3 * len);
    ck_assert_int_eq(get_page_opts(s, ns, 9, 3 * len, &o), 0);
    ck_assert_int_eq(get_page_opts(s, ns, 9, 3 * len, &o), 0);
    ck_assert_uint_eq(st.bytes_read_storage, 4 * len + 6 * len);
    ck_assert_uint_le(st.linger_bytes, 2 * len);
    close_store(s);
}
END_TEST

/* A lingering page goes with its page: clear and capacity eviction. */
START_TEST(test_linger_dropped_with_page)
{
    struct hc_stats st;
    struct hc_store_config cfg = linger_cfg();
    cfg.segment_size = 1 * MiB;
    cfg.capacity_bytes = 2 * MiB;
    struct hc_store *s = open_store(&cfg, &st);
    int ns = hc_store_ns(s, "mla", 3);
    size_t len = 64 * KiB;
    struct hc_store_opts o = {.readers = 4};

    put_page(s, ns, 0, len);
    ck_assert_int_eq(get_page_opts(s, ns, 0, len, &o), 0);
    ck_assert_uint_eq(st.linger_bytes, len);
    ck_assert_uint_eq(clear_ns(s, ns), 1);
    ck_assert_uint_eq(st.linger_bytes, 0);
    ck_assert_int_eq(get_page_opts(s, ns, 0, len, &o), -ENOENT);

    /* Page 1 lingers in the first segment; writing more evicts it. */
    put_page(s, ns, 1, len);
    ck_assert_int_eq(get_page_opts(s, ns, 1, len, &o), 0);
    ck_assert_uint_eq(st.linger_bytes, len);
    uint64_t now = 1000;
    for (int i = 2; st.evicted_pages == 0 && i < 200; i++) {
        put_page(s, ns, i, len);
        hc_store_tick(s, now += 300);
        drain_all();
    }
    ck_assert_uint_gt(st.evicted_pages, 0);
    ck_assert(!page_exists(s, ns, 1));
    ck_assert_uint_eq(st.linger_bytes, 0);
    ck_assert_int_eq(get_page_opts(s, ns, 1, len, &o), -ENOENT);
    close_store(s);
}
END_TEST

/* With coalesce_reads off (the benchmark's baseline) nothing lingers. */
START_TEST(test_linger_off_without_coalescing)
{
    struct hc_stats st;
    struct hc_store_config cfg = linger_cfg();
    cfg.coalesce_reads = false;
    struct hc_store *s = open_store(&cfg, &st);
    int ns = hc_store_ns(s, "mla", 3);
    size_t len = 16 * KiB;
    struct hc_store_opts o = {.readers = 4};
    put_page(s, ns, 3, len);
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(get_page_opts(s, ns, 3, len, &o), 0);
    ck_assert_uint_eq(st.bytes_read_storage, 4 * len);
    ck_assert_uint_eq(st.linger_bytes, 0);
    close_store(s);
}
END_TEST

/* ---- compression ----------------------------------------------------------- */

/* bf16-like bytes: a random mantissa byte, then one of a few sign/exponent
 * bytes (values of similar magnitude), as KV activations are. */
static void fill_bf16ish(unsigned char *p, size_t len, uint64_t seed)
{
    static const unsigned char hi[4] = {0x3c, 0x3d, 0xbc, 0xbd};
    fill(p, len, seed);
    for (size_t i = 1; i < len; i += 2)
        p[i] = hi[p[i] & 3];
}

static int set_buf(struct hc_store *s, int ns, int i, const void *buf, size_t len,
                   const struct hc_store_opts *o)
{
    char key[128];
    struct res r = {0};
    key_of(i, key);
    ck_assert_int_eq(hc_store_set_ex(s, ns, key, strlen(key), buf, len, o, cb, &r), 0);
    drain_all();
    ck_assert(r.done);
    if (r.status == 0)
        ck_assert_uint_eq(r.len, len);
    return r.status;
}

/* Gets page i into a fresh buffer; 0 and *out (malloc'd, len bytes) on a hit. */
static int get_buf(struct hc_store *s, int ns, int i, size_t len, unsigned char **out)
{
    char key[128];
    unsigned char *buf = malloc(len);
    struct res r = {0};
    key_of(i, key);
    ck_assert_int_eq(hc_store_get(s, ns, key, strlen(key), buf, len, cb, &r), 0);
    drain_all();
    ck_assert(r.done);
    if (r.status == 0) {
        ck_assert_uint_eq(r.len, len);
        *out = buf;
    } else {
        free(buf);
    }
    return r.status;
}

static void compress_round_trip(bool direct)
{
    struct hc_stats st;
    struct hc_store_config cfg = base_cfg("n1");
    cfg.use_direct_io = direct;
    struct hc_store *s = open_store(&cfg, &st);
    int ns = hc_store_ns(s, "zz", 2);
    size_t len = 256 * KiB + 100;
    unsigned char *rnd = malloc(len), *kv = malloc(len), *zero = calloc(1, len), *got;
    struct hc_store_opts z = {.compression = HC_COMPRESSION_ZSTD};
    fill(rnd, len, 1);
    fill_bf16ish(kv, len, 2);

    /* Random bytes do not compress: stored raw. */
    ck_assert_int_eq(set_buf(s, ns, 1, rnd, len, &z), 0);
    ck_assert_uint_eq(st.compressed_pages, 0);
    ck_assert_uint_eq(st.bytes_written, len);
    uint64_t raw_disk = node_bytes("n1");
    ck_assert_uint_eq(raw_disk, 4096 + 260 * KiB);

    /* bf16-like and zero pages: compressed, fewer bytes written and on disk. */
    ck_assert_int_eq(set_buf(s, ns, 2, kv, len, &z), 0);
    ck_assert_uint_eq(st.compressed_pages, 1);
    uint64_t kv_stored = st.bytes_written - len;
    ck_assert_uint_lt(kv_stored, len * 3 / 4);
    ck_assert_uint_eq(st.bytes_saved_compression, len - kv_stored);
    ck_assert_uint_lt(node_bytes("n1") - raw_disk, 4096 + kv_stored + 4096);
    ck_assert_int_eq(set_buf(s, ns, 3, zero, len, &z), 0);
    ck_assert_uint_eq(st.compressed_pages, 2);
    ck_assert_uint_eq(st.bytes_stored, 3 * len); /* original lengths */

    /* exists and the -ENOSPC check see the original length. */
    char key[128];
    key_of(2, key);
    ck_assert_uint_eq(hc_store_exists(s, ns, key, strlen(key)), len);
    unsigned char *small = malloc(len - 1);
    struct res r = {0};
    ck_assert_int_eq(hc_store_get(s, ns, key, strlen(key), small, len - 1, cb, &r), 0);
    drain_all();
    ck_assert_int_eq(r.status, -ENOSPC);
    ck_assert_uint_eq(r.len, len);
    free(small);

    ck_assert_int_eq(get_buf(s, ns, 1, len, &got), 0);
    ck_assert(memcmp(got, rnd, len) == 0);
    free(got);
    uint64_t before = st.bytes_read_storage;
    ck_assert_int_eq(get_buf(s, ns, 2, len, &got), 0);
    ck_assert(memcmp(got, kv, len) == 0);
    free(got);
    ck_assert_uint_eq(st.bytes_read_storage - before, kv_stored);
    ck_assert_int_eq(get_buf(s, ns, 3, len, &got), 0);
    ck_assert(memcmp(got, zero, len) == 0);
    free(got);
    ck_assert_uint_eq(st.bytes_served, 3 * len);

    /* The daemon default, and a client that turns it off. */
    struct hc_store_config cfg2 = cfg;
    cfg2.enable_compression = true;
    hc_store_reconfigure(s, &cfg2);
    ck_assert_int_eq(set_buf(s, ns, 4, kv, len, NULL), 0);
    ck_assert_uint_eq(st.compressed_pages, 3);
    struct hc_store_opts off = {.compression = HC_COMPRESSION_OFF};
    ck_assert_int_eq(set_buf(s, ns, 5, kv, len, &off), 0);
    ck_assert_uint_eq(st.compressed_pages, 3);
    struct hc_store_opts bad = {.compression = 3};
    key_of(6, key);
    ck_assert_int_eq(hc_store_set_ex(s, ns, key, strlen(key), kv, len, &bad, cb, &r), -EINVAL);
    close_store(s);

    /* After a restart (from the .idx) and from the segment scan alone. */
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1) {
            char idx[PATH_MAX];
            node_file(idx, "n1", first_seq("n1"), "idx");
            ck_assert_int_eq(unlink(idx), 0);
        }
        s = open_store(&cfg, &st);
        ns = hc_store_ns(s, "zz", 2);
        ck_assert_uint_eq(st.pages, 5);
        ck_assert_uint_eq(st.bytes_stored, 5 * len);
        for (int i = 1; i <= 5; i++) {
            ck_assert_int_eq(get_buf(s, ns, i, len, &got), 0);
            ck_assert(memcmp(got, i == 1 ? rnd : i == 3 ? zero : kv, len) == 0);
            free(got);
        }
        ck_assert_uint_eq(st.corrupt_records, 0);
        close_store(s);
    }

    /* Another node reads them from the sealed segment's .idx. */
    struct hc_stats st2;
    struct hc_store_config cb2 = base_cfg("n2");
    cb2.use_direct_io = direct;
    s = open_store(&cb2, &st2);
    ns = hc_store_ns(s, "zz", 2);
    ck_assert_uint_eq(st2.remote_pages, 5);
    ck_assert_int_eq(get_buf(s, ns, 2, len, &got), 0);
    ck_assert(memcmp(got, kv, len) == 0);
    free(got);
    close_store(s);
    free(rnd);
    free(kv);
    free(zero);
}

START_TEST(test_compress_round_trip)
{
    compress_round_trip(false);
}
END_TEST

START_TEST(test_compress_round_trip_direct)
{
    compress_round_trip(true);
}
END_TEST

/* A flipped byte in a compressed payload, or in the original length of its
 * header, is a miss, counted; the other pages stay readable. */
START_TEST(test_compress_corrupt)
{
    struct hc_stats st;
    struct hc_store_config cfg = base_cfg("n1");
    cfg.enable_compression = true;
    struct hc_store *s = open_store(&cfg, &st);
    int ns = hc_store_ns(s, "zz", 2);
    size_t len = 64 * KiB;
    unsigned char *kv = malloc(len), *got;
    uint64_t offs[3], at = 0;
    for (int i = 0; i < 3; i++) {
        uint64_t w0 = st.bytes_written;
        fill_bf16ish(kv, len, (uint64_t)i + 10);
        ck_assert_int_eq(set_buf(s, ns, i, kv, len, NULL), 0);
        offs[i] = at;
        at += 4096 + ((st.bytes_written - w0 + 4095) & ~4095ull);
    }
    ck_assert_uint_eq(st.compressed_pages, 3);
    ck_assert_uint_eq(node_bytes("n1"), at);
    char seg[PATH_MAX];
    node_file(seg, "n1", first_seq("n1"), "seg");
    flip_byte(seg, (off_t)(offs[0] + 4096 + 50)); /* zstd frame */
    char k1[128];
    key_of(1, k1); /* the original length follows the fixed header, ns and key */
    flip_byte(seg, (off_t)(offs[1] + 40 + 2 + strlen(k1) + 1));
    ck_assert_int_eq(get_buf(s, ns, 0, len, &got), -ENOENT);
    ck_assert_int_eq(get_buf(s, ns, 1, len, &got), -ENOENT);
    ck_assert_uint_eq(st.corrupt_records, 2);
    ck_assert_int_eq(get_buf(s, ns, 2, len, &got), 0);
    fill_bf16ish(kv, len, 12);
    ck_assert(memcmp(got, kv, len) == 0);
    free(got);
    free(kv);
    close_store(s);
}
END_TEST

/* A compressed page lingers for its other readers like a raw one. */
START_TEST(test_compress_linger)
{
    struct hc_stats st;
    struct hc_store_config cfg = linger_cfg();
    cfg.enable_compression = true;
    struct hc_store *s = open_store(&cfg, &st);
    int ns = hc_store_ns(s, "zz", 2);
    size_t len = 128 * KiB;
    unsigned char *kv = malloc(len), *got;
    struct hc_store_opts o = {.readers = 2};
    char key[128];
    fill_bf16ish(kv, len, 5);
    ck_assert_int_eq(set_buf(s, ns, 5, kv, len, NULL), 0);
    uint64_t stored = st.bytes_written;
    ck_assert_uint_lt(stored, len);
    key_of(5, key);
    for (int i = 0; i < 2; i++) {
        struct res r = {0};
        got = malloc(len);
        ck_assert_int_eq(hc_store_get_ex(s, ns, key, strlen(key), got, len, &o, cb, &r), 0);
        drain_all();
        ck_assert_int_eq(r.status, 0);
        ck_assert(memcmp(got, kv, len) == 0);
        free(got);
    }
    ck_assert_uint_eq(st.bytes_read_storage, stored);
    ck_assert_uint_eq(st.coalesced_reads, 1);
    ck_assert_uint_eq(st.bytes_served, 2 * len);
    free(kv);
    close_store(s);
}
END_TEST

/* A set compressed while its namespace is cleared: acknowledged, never
 * visible, not brought back by a restart. */
START_TEST(test_compress_clear_inflight)
{
    struct hc_stats st;
    struct hc_store_config cfg = base_cfg("n1");
    cfg.enable_compression = true;
    struct hc_store *s = open_store(&cfg, &st);
    int ns = hc_store_ns(s, "zz", 2);
    size_t len = 64 * KiB;
    unsigned char *kv = malloc(len);
    struct res r = {0};
    char key[128];
    fill_bf16ish(kv, len, 1);
    key_of(1, key);
    ck_assert_int_eq(hc_store_set(s, ns, key, strlen(key), kv, len, cb, &r), 0);
    clear_ns(s, ns);
    drain_all();
    ck_assert(r.done);
    ck_assert_int_eq(r.status, 0);
    ck_assert(!page_exists(s, ns, 1));
    /* A set after the clear writes again. */
    ck_assert_int_eq(set_buf(s, ns, 1, kv, len, NULL), 0);
    ck_assert(page_exists(s, ns, 1));
    ck_assert_uint_eq(st.compressed_pages, 1);
    close_store(s);
    s = open_store(&cfg, &st);
    ns = hc_store_ns(s, "zz", 2);
    ck_assert_uint_eq(st.pages, 1);
    close_store(s);
    free(kv);
}
END_TEST

int main(void)
{
    /* io_uring missing (old kernel, seccomp): skip. */
    struct hc_io_config c = {.threads = 1, .queue_depth = 4, .max_inflight_bytes = MiB};
    struct hc_io_pool *probe;
    int rc = hc_io_pool_create(&probe, &c, NULL, NULL);
    if (rc == -ENOSYS || rc == -EPERM || rc == -EOPNOTSUPP) {
        fprintf(stderr, "io_uring unavailable (%s): skipped\n", strerror(-rc));
        return 77;
    }
    if (rc == 0)
        hc_io_pool_destroy(probe);

    Suite *su = suite_create("store");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_round_trip);
    tcase_add_test(tc, test_round_trip_direct);
    tcase_add_test(tc, test_refusals);
    tcase_add_test(tc, test_dedupe);
    tcase_add_test(tc, test_coalescing);
    tcase_add_test(tc, test_no_coalescing_when_off);
    tcase_add_test(tc, test_enospc_and_visibility);
    tcase_add_test(tc, test_reopen);
    tcase_add_test(tc, test_cold_open_reads_in_offset_order);
    tcase_add_test(tc, test_torn_segment);
    tcase_add_test(tc, test_corrupt_payload);
    tcase_add_test(tc, test_reread_own_record);
    tcase_add_test(tc, test_eio_read_tried_later);
    tcase_add_test(tc, test_no_join_of_an_older_record);
    tcase_add_test(tc, test_capacity);
    tcase_add_test(tc, test_read_during_eviction);
    tcase_add_test(tc, test_read_during_eviction_reopened);
    tcase_add_test(tc, test_two_nodes);
    tcase_add_test(tc, test_clear);
    tcase_add_test(tc, test_ack_order);
    tcase_add_test(tc, test_free_space_eviction);
    tcase_add_test(tc, test_scan_skips_bad_payload);
    tcase_add_test(tc, test_clear_inflight_write);
    tcase_add_test(tc, test_clear_unsaved_is_error);
    tcase_add_test(tc, test_set_waits_for_segment);
    tcase_add_test(tc, test_seq_monotonic);
    tcase_add_test(tc, test_ns_lookup);
    tcase_add_test(tc, test_linger_one_read_per_page);
    tcase_add_test(tc, test_linger_after_joiners);
    tcase_add_test(tc, test_linger_expiry);
    tcase_add_test(tc, test_linger_cap);
    tcase_add_test(tc, test_linger_dropped_with_page);
    tcase_add_test(tc, test_linger_off_without_coalescing);
    tcase_add_test(tc, test_compress_round_trip);
    tcase_add_test(tc, test_compress_round_trip_direct);
    tcase_add_test(tc, test_compress_corrupt);
    tcase_add_test(tc, test_compress_linger);
    tcase_add_test(tc, test_compress_clear_inflight);
    tcase_add_test(tc, test_open_segments);
    tcase_add_test(tc, test_evict_reinsert);
    tcase_add_test(tc, test_refault);
    tcase_add_test(tc, test_remote_read_hints);
    tcase_add_test(tc, test_vanished_buffers);
    suite_add_tcase(su, tc);
    SRunner *sr = srunner_create(su);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
