/* Integration: host pools (hc_pool_register), the path of SGLang's shm host
 * KV pool. A client passes a memfd it did not seal (as SGLang creates it);
 * the daemon reads pages straight into it and writes them straight from it.
 * Bytes set from a pool read back through the region and the other way
 * round; bad pools and bad slots are refused with a clear error; a client
 * that truncates its pool, even while the daemon reads and writes it, gets
 * errors for its own pages and changes nothing for anyone else. */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/magic.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#define PAGE (64 * 1024)
#define NPAGES 64
#define POOL ((size_t)NPAGES * PAGE)

struct pool {
    int fd;
    uint8_t *base;
};

static void pool_new(struct pool *p)
{
    p->fd = memfd_create("hc-test-host-pool", MFD_CLOEXEC); /* like SGLang: no sealing */
    ck_assert_int_ge(p->fd, 0);
    ck_assert_int_eq(ftruncate(p->fd, POOL), 0);
    p->base = mmap(NULL, POOL, PROT_READ | PROT_WRITE, MAP_SHARED, p->fd, 0);
    ck_assert(p->base != MAP_FAILED);
}

static void pool_free(struct pool *p)
{
    munmap(p->base, POOL);
    close(p->fd);
}

static void key_of(char *key, size_t len, const char *stem, int i)
{
    snprintf(key, len, "%s-%04d", stem, i);
}

/* Sets or gets pages [first, first + n) of the pool, page i in pool page
 * i; results in res. Returns hc_batch_*'s answer. */
static int pool_batch(hc_client *c, struct pool *p, const char *stem, int first, int n, bool set,
                      int *res)
{
    char keys[NPAGES][64];
    hc_buf bufs[NPAGES];
    hc_page pages[NPAGES];

    for (int i = 0; i < n; i++) {
        key_of(keys[i], sizeof(keys[i]), stem, first + i);
        bufs[i] = (hc_buf){p->base + (size_t)(first + i) * PAGE, PAGE};
        pages[i] = (hc_page){keys[i], &bufs[i], 1};
    }
    return set ? hc_batch_set(c, pages, (size_t)n, res) : hc_batch_get(c, pages, (size_t)n, res);
}

/* Gets page i of stem through the region (a malloc'd buffer) and checks its
 * bytes against salt. Returns the get's result. */
static int region_get_check(hc_client *c, const char *stem, int i, uint64_t salt)
{
    char key[64];
    uint8_t *buf = malloc(PAGE);
    hc_buf b = {buf, PAGE};
    int res = 1;

    key_of(key, sizeof(key), stem, i);
    hc_page pg = {key, &b, 1};
    ck_assert_int_ge(hc_batch_get(c, &pg, 1, &res), 0);
    if (res == 0)
        ck_assert_msg(h_check(buf, PAGE, key, salt) < 0, "%s: wrong bytes", key);
    free(buf);
    return res;
}

START_TEST(test_pool_round_trip)
{
    struct hd *d = hd_new("pool-a", NULL);
    struct pool p;
    int res[NPAGES];
    char key[64];

    hd_start(d);
    hc_client *c = hd_connect(d, "pool", PAGE);
    hc_client *other = hd_connect(d, "pool", PAGE);
    pool_new(&p);
    int id = hc_pool_register(c, p.fd, p.base, POOL);
    ck_assert_msg(id > 0, "hc_pool_register: %s", hc_strerror(id));
    ck_assert_int_eq(h_stat(c, "pools"), 1);

    /* set from the pool, read back through the region by another client */
    for (int i = 0; i < NPAGES / 2; i++) {
        key_of(key, sizeof(key), "fromp", i);
        h_fill(p.base + (size_t)i * PAGE, PAGE, key, 3);
    }
    ck_assert_int_eq(pool_batch(c, &p, "fromp", 0, NPAGES / 2, true, res), NPAGES / 2);
    ck_assert_int_eq(h_stat(c, "pool_pages"), NPAGES / 2);
    for (int i = 0; i < NPAGES / 2; i++)
        ck_assert_int_eq(region_get_check(other, "fromp", i, 3), 0);

    /* set through the region, read straight into the pool */
    for (int i = 0; i < NPAGES / 2; i++) {
        uint8_t *buf = malloc(PAGE);
        hc_buf b = {buf, PAGE};
        key_of(key, sizeof(key), "intop", NPAGES / 2 + i);
        h_fill(buf, PAGE, key, 5);
        hc_page pg = {key, &b, 1};
        ck_assert_int_eq(hc_batch_set(other, &pg, 1, &res[0]), 1);
        free(buf);
    }
    memset(p.base + POOL / 2, 0, POOL / 2);
    ck_assert_int_eq(pool_batch(c, &p, "intop", NPAGES / 2, NPAGES / 2, false, res), NPAGES / 2);
    for (int i = NPAGES / 2; i < NPAGES; i++) {
        key_of(key, sizeof(key), "intop", i);
        ck_assert_msg(h_check(p.base + (size_t)i * PAGE, PAGE, key, 5) < 0, "%s: wrong bytes", key);
    }
    ck_assert_int_eq(h_stat(c, "pool_pages"), NPAGES);

    /* a page with a buffer outside the pool goes through the region */
    {
        uint8_t *half = malloc(PAGE / 2);
        hc_buf two[2] = {{p.base, PAGE / 2}, {half, PAGE / 2}};
        key_of(key, sizeof(key), "fromp", 0);
        hc_page pg = {key, two, 2};
        memset(p.base, 0, PAGE);
        ck_assert_int_eq(hc_batch_get(c, &pg, 1, &res[0]), 1);
        memcpy(p.base + PAGE / 2, half, PAGE / 2);
        ck_assert(h_check(p.base, PAGE, key, 3) < 0);
        ck_assert_int_eq(h_stat(c, "pool_pages"), NPAGES);
        free(half);
    }
    ck_assert_int_eq(h_stat(c, "client_faults"), 0);
    hc_close(c);
    /* gone with its connection, once the daemon saw it close */
    for (int k = 0; k < 200 && h_stat(other, "pools") != 0; k++)
        h_sleep_ms(10);
    ck_assert_int_eq(h_stat(other, "pools"), 0);
    hc_close(other);
    pool_free(&p);
    hd_stop(d);
}
END_TEST

START_TEST(test_pool_refused)
{
    struct hd *d = hd_new("pool-b", NULL);
    struct pool p;
    int pipefd[2], ro, file, rc;
    char path[H_PATH + 32];

    hd_start(d);
    hc_client *c = hd_connect(d, "pool", PAGE);
    pool_new(&p);
    ck_assert_int_eq(pipe(pipefd), 0);
    rc = hc_pool_register(c, pipefd[0], p.base, POOL);
    ck_assert_msg(rc == -EINVAL, "a pipe: %d", rc);
    snprintf(path, sizeof(path), "%s/not-a-pool", d->mount);
    file = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    ck_assert_int_ge(file, 0);
    ck_assert_int_eq(ftruncate(file, POOL), 0);
    struct statfs sfs;
    ck_assert_int_eq(fstatfs(file, &sfs), 0);
    if (sfs.f_type != TMPFS_MAGIC) { /* (the test's data dir may be on tmpfs) */
        rc = hc_pool_register(c, file, p.base, POOL);
        ck_assert_msg(rc == -EINVAL, "a file on a disk filesystem: %d", rc);
    }
    snprintf(path, sizeof(path), "/proc/self/fd/%d", p.fd);
    ro = open(path, O_RDONLY | O_CLOEXEC);
    ck_assert_int_ge(ro, 0);
    rc = hc_pool_register(c, ro, p.base, POOL);
    ck_assert_msg(rc == -EACCES, "read-only: %d", rc);
    rc = hc_pool_register(c, p.fd, p.base, POOL + 4096);
    ck_assert_msg(rc == -EINVAL, "larger than its file: %d", rc);
    ck_assert_int_eq(h_stat(c, "pools"), 0);
    ck_assert_int_eq(hc_ping(c), 0);

    /* raw: a pool request without a descriptor, a slot naming no pool */
    struct h_raw r;
    ck_assert_int_eq(h_raw_connect(&r, d->sock), 0);
    ck_assert_int_eq(h_raw_hello(&r, "pool", PAGE), 0);
    Hicache__Request req = HICACHE__REQUEST__INIT;
    Hicache__PoolRequest pr = HICACHE__POOL_REQUEST__INIT;
    pr.size = POOL;
    req.body_case = HICACHE__REQUEST__BODY_POOL;
    req.pool = &pr;
    Hicache__Response *resp = h_raw_call(&r, &req);
    ck_assert_ptr_nonnull(resp);
    ck_assert_int_eq(resp->status, -EINVAL);
    ck_assert_msg(strstr(resp->error, "no descriptor"), "error: %s", resp->error);
    hicache__response__free_unpacked(resp, NULL);
    Hicache__Request g = HICACHE__REQUEST__INIT;
    Hicache__GetRequest gr = HICACHE__GET_REQUEST__INIT;
    Hicache__Slot s = HICACHE__SLOT__INIT, *sp = &s;
    s.key.data = (uint8_t *)"k";
    s.key.len = 1;
    s.offset = 0;
    s.length = 4096;
    s.pool = 3;
    gr.n_pages = 1;
    gr.pages = &sp;
    g.body_case = HICACHE__REQUEST__BODY_GET;
    g.get = &gr;
    resp = h_raw_call(&r, &g);
    ck_assert_ptr_nonnull(resp);
    ck_assert_int_eq(resp->status, -EINVAL);
    ck_assert_msg(strstr(resp->error, "not registered"), "error: %s", resp->error);
    hicache__response__free_unpacked(resp, NULL);
    h_raw_close(&r);

    close(pipefd[0]);
    close(pipefd[1]);
    close(file);
    close(ro);
    hc_close(c);
    pool_free(&p);
    hd_stop(d);
}
END_TEST

struct toggler {
    int fd;
    atomic_bool stop;
    unsigned flips;
};

/* Shrinks the pool to nothing and back, over and over. */
static void *toggle(void *arg)
{
    struct toggler *t = arg;
    while (!atomic_load(&t->stop)) {
        if (ftruncate(t->fd, 0) != 0 || ftruncate(t->fd, POOL) != 0)
            abort();
        t->flips++;
        usleep(200);
    }
    return NULL;
}

START_TEST(test_pool_truncated)
{
#if defined(__SANITIZE_THREAD__)
    /* ThreadSanitizer's signal interception does not hand a SIGBUS raised in
     * a thread to the daemon's guard (daemon/guard.h): under TSan the daemon
     * dies of a truncated pool. The plain, ASan and UBSan runs cover it. */
    return;
#endif
    struct hd *d = hd_new("pool-c", "--io-threads", "2", NULL);
    struct pool p;
    int res[NPAGES];
    char key[64];

    hd_start(d);
    hc_client *c = hd_connect(d, "pool", PAGE);
    hc_client *other = hd_connect(d, "pool", PAGE);
    pool_new(&p);
    ck_assert_int_gt(hc_pool_register(c, p.fd, p.base, POOL), 0);
    for (int i = 0; i < NPAGES; i++) {
        key_of(key, sizeof(key), "stable", i);
        h_fill(p.base + (size_t)i * PAGE, PAGE, key, 9);
    }
    ck_assert_int_eq(pool_batch(c, &p, "stable", 0, NPAGES, true, res), NPAGES);

    /* shrunk before the request: refused whole, nothing changes */
    ck_assert_int_eq(ftruncate(p.fd, POOL / 2), 0);
    int rc = pool_batch(c, &p, "stable", 0, NPAGES, false, res);
    ck_assert_msg(rc == -ERANGE || (rc == 0 && res[0] == -ERANGE), "get: %d", rc);
    for (int i = 0; i < NPAGES; i++)
        ck_assert_int_eq(res[i], -ERANGE);
    ck_assert_int_eq(ftruncate(p.fd, POOL), 0);

    /* shrunk and grown again while the daemon reads into it and writes from
     * it: each page answers 0, ERANGE or EFAULT; the daemon stays up */
    struct toggler t = {.fd = p.fd};
    pthread_t th;
    unsigned faults = 0, ok = 0;
    uint64_t end = h_now_ms() + 2000;
    ck_assert_int_eq(pthread_create(&th, NULL, toggle, &t), 0);
    for (int round = 0; h_now_ms() < end; round++) {
        char stem[32];
        snprintf(stem, sizeof(stem), "race%d", round);
        bool set = round % 2 == 0;
        rc = set ? pool_batch(c, &p, stem, 0, NPAGES, true, res)
                 : pool_batch(c, &p, "stable", 0, NPAGES, false, res);
        ck_assert_msg(rc >= 0 || rc == -ERANGE, "round %d: %d %s", round, rc, hc_strerror(rc));
        for (int i = 0; i < NPAGES; i++) {
            ck_assert_msg(res[i] == 0 || res[i] == -ERANGE || res[i] == -EFAULT,
                          "round %d page %d: %d", round, i, res[i]);
            faults += res[i] == -EFAULT;
            ok += res[i] == 0;
        }
    }
    atomic_store(&t.stop, true);
    pthread_join(th, NULL);
    fprintf(stderr, "truncated pool: %u flips, %u pages ok, %u EFAULT, %lld client_faults\n",
            t.flips, ok, faults, (long long)h_stat(c, "client_faults"));

    /* nothing of anyone else changed: every stable page, byte for byte */
    for (int i = 0; i < NPAGES; i++)
        ck_assert_int_eq(region_get_check(other, "stable", i, 9), 0);
    ck_assert_int_eq(h_stat(other, "corrupt_records"), 0);
    ck_assert_int_eq(hc_ping(c), 0);
    hc_close(c);
    hc_close(other);
    pool_free(&p);
    hd_stop(d);
}
END_TEST

/* Waits up to 5 s until the daemon holds at least kib KiB of its mappings
 * named name resident; returns what it holds then. */
static long rss_reaches(const struct hd *d, const char *name, long kib)
{
    long v = hd_map_rss_kib(d, name);
    for (uint64_t end = h_now_ms() + 5000; v < kib && h_now_ms() < end; v = hd_map_rss_kib(d, name))
        h_sleep_ms(20);
    return v;
}

/* Waits up to 5 s until the daemon's mapped_ahead_bytes is want; returns
 * what it is then. */
static int64_t ahead_reaches(const struct hd *d, int64_t want)
{
    int64_t v = hd_stat(d, "mapped_ahead_bytes");
    for (uint64_t end = h_now_ms() + 5000; v != want && h_now_ms() < end;
         v = hd_stat(d, "mapped_ahead_bytes"))
        h_sleep_ms(20);
    return v;
}

/* Whether this kernel maps ahead (MADV_POPULATE_WRITE, Linux 5.14): before
 * it the daemon lets pages fault in as they are used, and the tests of
 * mapping ahead have nothing to see. */
static bool populate_supported(void)
{
    long pg = sysconf(_SC_PAGESIZE);
    void *m = mmap(NULL, (size_t)pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    bool ok;

    ck_assert(m != MAP_FAILED);
    ok = madvise(m, (size_t)pg, 23 /* MADV_POPULATE_WRITE */) == 0;
    munmap(m, (size_t)pg);
    if (!ok)
        fprintf(stderr, "MADV_POPULATE_WRITE unsupported (%s): mapping ahead not tested\n",
                strerror(errno));
    return ok;
}

/* The daemon maps a client's region, and a host pool whose memory is all
 * there, ahead of the first batch (hello.c, hc__region_populate): resident in
 * the daemon before any page moved. Not the region of a client without a
 * page size (hicachectl's stats), and never a pool with holes: the daemon
 * allocates none of a pool's memory for its owner. */
START_TEST(test_pool_mapped_ahead)
{
    const long region_kib = 8 << 10, pool_kib = POOL >> 10;
    struct pool whole, holes;
    struct stat st;
    int res[NPAGES];

    if (!populate_supported())
        return;
    struct hd *d = hd_new("pool-e", "--region-size", "8M", NULL);

    hd_start(d);
    hc_client *ctl = hd_connect(d, "pool", 0); /* no page size: stats, like hicachectl */
    ck_assert_int_eq(hc_ping(ctl), 0);
    h_sleep_ms(300);
    long idle = hd_map_rss_kib(d, "hicache-client-");
    ck_assert_msg(idle >= 0 && idle < region_kib / 2, "region of a stats client: %ld KiB", idle);

    hc_client *c = hd_connect(d, "pool", PAGE);
    long both = rss_reaches(d, "hicache-client-", idle + region_kib);
    ck_assert_msg(both >= idle + region_kib, "regions: %ld KiB, want %ld more than %ld", both,
                  region_kib, idle);

    pool_new(&whole); /* written whole: all its memory there */
    memset(whole.base, 0x33, POOL);
    holes.fd = memfd_create("hc-test-holes-pool", MFD_CLOEXEC);
    ck_assert_int_ge(holes.fd, 0);
    ck_assert_int_eq(ftruncate(holes.fd, POOL), 0);
    holes.base = mmap(NULL, POOL, PROT_READ | PROT_WRITE, MAP_SHARED, holes.fd, 0);
    ck_assert(holes.base != MAP_FAILED);
    memset(holes.base, 0x44, PAGE); /* one page of NPAGES there */
    ck_assert_int_gt(hc_pool_register(c, holes.fd, holes.base, POOL), 0);
    ck_assert_int_gt(hc_pool_register(c, whole.fd, whole.base, POOL), 0);
    long got = rss_reaches(d, "hc-test-host-pool", pool_kib);
    ck_assert_msg(got >= pool_kib, "whole pool: %ld KiB resident in the daemon, want %ld", got,
                  pool_kib);
    h_sleep_ms(300);
    ck_assert_int_eq(fstat(holes.fd, &st), 0);
    /* one page written (a 2 MiB one with shmem huge pages), not the pool */
    ck_assert_msg((long)st.st_blocks * 512 < (long)POOL, "pool with holes: %lld bytes allocated",
                  (long long)st.st_blocks * 512);
    ck_assert_int_le(hd_map_rss_kib(d, "hc-test-holes-pool"), PAGE >> 10);

    /* and both still move pages, byte for byte */
    for (int i = 0; i < NPAGES; i++) {
        char key[64];
        key_of(key, sizeof(key), "ahead", i);
        h_fill(whole.base + (size_t)i * PAGE, PAGE, key, 4);
    }
    ck_assert_int_eq(pool_batch(c, &whole, "ahead", 0, NPAGES, true, res), NPAGES);
    ck_assert_int_eq(pool_batch(c, &holes, "ahead", 0, NPAGES, false, res), NPAGES);
    for (int i = 0; i < NPAGES; i++) {
        char key[64];
        key_of(key, sizeof(key), "ahead", i);
        ck_assert_int_eq(res[i], 0);
        ck_assert_msg(h_check(holes.base + (size_t)i * PAGE, PAGE, key, 4) < 0, "%s", key);
    }
    hc_close(c);
    hc_close(ctl);
    pool_free(&whole);
    pool_free(&holes);
    hd_stop(d);
}
END_TEST

/* Mapping ahead stays within map_ahead: a peer's hello makes the daemon
 * allocate no more of clients' memory than that, in all. The client past it
 * gets the start of its region mapped ahead, the next one none; a closed
 * client's bytes are free again for the next. Every page still moves, byte
 * for byte, through regions mapped ahead, in part or not at all. */
START_TEST(test_pool_map_ahead_bounded)
{
    const long mib = 1024;
    hc_client *c[4];
    int res;

    if (!populate_supported())
        return;
    struct hd *d = hd_new("pool-f", "--region-size", "8M", "--map-ahead", "20M", NULL);
    hd_start(d);
    for (int i = 0; i < 3; i++)
        c[i] = hd_connect(d, "pool", PAGE);
    long got = rss_reaches(d, "hicache-client-", 20 * mib);
    ck_assert_msg(got >= 20 * mib, "regions: %ld KiB resident, want 20 MiB", got);
    ck_assert_int_eq(hd_stat(d, "mapped_ahead_bytes"), 20 << 20);
    c[3] = hd_connect(d, "pool", PAGE); /* none left for it */
    ck_assert_int_eq(hc_ping(c[3]), 0);
    h_sleep_ms(300);
    got = hd_map_rss_kib(d, "hicache-client-");
    ck_assert_msg(got < 24 * mib, "regions: %ld KiB resident, past map_ahead's 20 MiB", got);
    ck_assert_int_eq(hd_stat(d, "mapped_ahead_bytes"), 20 << 20);

    /* the first client's 8 MiB go back to the budget when it leaves */
    hc_close(c[0]);
    int64_t ahead = ahead_reaches(d, 12 << 20);
    ck_assert_int_eq(ahead, 12 << 20);
    c[0] = hd_connect(d, "pool", PAGE);
    got = rss_reaches(d, "hicache-client-", 20 * mib);
    ck_assert_msg(got >= 20 * mib, "regions: %ld KiB resident, want 20 MiB", got);
    ck_assert_int_eq(hd_stat(d, "mapped_ahead_bytes"), 20 << 20);

    /* pages through each: set by one client, read back by the next */
    for (int i = 0; i < 4; i++) {
        char key[64];
        uint8_t *buf = malloc(PAGE);
        hc_buf b = {buf, PAGE};
        key_of(key, sizeof(key), "bounded", i);
        h_fill(buf, PAGE, key, 6);
        hc_page pg = {key, &b, 1};
        ck_assert_int_eq(hc_batch_set(c[i], &pg, 1, &res), 1);
        ck_assert_int_eq(res, 0);
        free(buf);
        ck_assert_int_eq(region_get_check(c[(i + 1) % 4], "bounded", i, 6), 0);
    }
    for (int i = 0; i < 4; i++)
        hc_close(c[i]);
    hd_stop(d);
}
END_TEST

/* Bytes of [base, base + len) resident in memory (mincore: for a shared
 * memfd mapping, the file's pages that exist). */
static long resident_bytes(const uint8_t *base, size_t len)
{
    long pg = sysconf(_SC_PAGESIZE);
    size_t n = (len + (size_t)pg - 1) / (size_t)pg;
    unsigned char *vec = malloc(n);
    long in = 0;

    ck_assert_ptr_nonnull(vec);
    ck_assert_int_eq(mincore((void *)base, len, vec), 0);
    for (size_t i = 0; i < n; i++)
        in += vec[i] & 1;
    free(vec);
    return in * pg;
}

/* A peer that keeps its region (its mapping of the fd the hello passed) when
 * it closes, and reconnects, again and again, holds none of the daemon's
 * memory: once the daemon lets go of a closed client's region, it frees the
 * region's pages (hello.c's mapping ahead allocated them). Before, each
 * round left map_ahead's worth resident behind the peer's mapping. A client
 * that behaves still moves its pages, byte for byte. */
START_TEST(test_pool_kept_region_freed)
{
    enum { ROUNDS = 4 };
    const size_t region = 8 << 20;
    struct h_raw r[ROUNDS];
    int res;

    if (!populate_supported())
        return;
    struct hd *d = hd_new("pool-g", "--region-size", "8M", NULL);
    hd_start(d);
    for (int i = 0; i < ROUNDS; i++) {
        ck_assert_int_eq(h_raw_connect(&r[i], d->sock), 0);
        ck_assert_int_eq(h_raw_hello(&r[i], "pool", PAGE), 0);
        ck_assert_uint_eq(r[i].region_size, region);
        long in = resident_bytes(r[i].region, region);
        for (uint64_t end = h_now_ms() + 5000; in < (long)region && h_now_ms() < end;
             in = resident_bytes(r[i].region, region))
            h_sleep_ms(20);
        ck_assert_msg(in == (long)region, "round %d: %ld bytes mapped ahead, want %zu", i, in,
                      region);
        /* the peer closes its connection and keeps its mapping */
        close(r[i].fd);
        r[i].fd = -1;
        int64_t ahead = ahead_reaches(d, 0);
        ck_assert_int_eq(ahead, 0);
    }
    for (int i = 0; i < ROUNDS; i++) {
        long in = resident_bytes(r[i].region, region);
        for (uint64_t end = h_now_ms() + 5000; in > 0 && h_now_ms() < end;
             in = resident_bytes(r[i].region, region))
            h_sleep_ms(20);
        ck_assert_msg(in == 0, "round %d: %ld bytes still held behind a closed peer's mapping", i,
                      in);
        ck_assert_int_eq(r[i].region[12345], 0); /* what such a peer reads now */
        h_raw_close(&r[i]);
    }

    hc_client *c = hd_connect(d, "pool", PAGE);
    uint8_t *buf = malloc(PAGE);
    hc_buf b = {buf, PAGE};
    hc_page pg = {"kept-0", &b, 1};
    ck_assert_ptr_nonnull(buf);
    h_fill(buf, PAGE, "kept-0", 7);
    ck_assert_int_eq(hc_batch_set(c, &pg, 1, &res), 1);
    ck_assert_int_eq(res, 0);
    memset(buf, 0, PAGE);
    ck_assert_int_eq(hc_batch_get(c, &pg, 1, &res), 1);
    ck_assert_int_eq(res, 0);
    ck_assert_int_lt(h_check(buf, PAGE, "kept-0", 7), 0);
    free(buf);
    hc_close(c);
    hd_stop(d);
}
END_TEST

/* Mapping ahead that fails gives back what it did not map: a client that
 * truncates its pool while the daemon maps it ahead (the step then fails
 * with EFAULT, as it would with no memory, or before Linux 5.14) leaves
 * mapped_ahead_bytes at its region and the steps done, not the whole pool,
 * which would be kept from the next clients until it left. */
START_TEST(test_pool_map_ahead_refund)
{
    const size_t big = 256 << 20, region = 8 << 20, blocker = 512 << 20, step = 16 << 20;
    int res[NPAGES];
    struct pool p;

    if (!populate_supported())
        return;
    struct hd *d = hd_new("pool-h", "--region-size", "8M", NULL);
    hd_start(d);
    hc_client *c = hd_connect(d, "pool", PAGE);
    /* a client of 128 MiB pages: a region of four (512 MiB), mapped ahead
     * first (jobs run in order), zeroed a page at a time: the pool's job
     * starts long after the truncation below */
    hc_client *b = hd_connect(d, "pool", 128 << 20);
    int64_t ahead = hd_stat(d, "mapped_ahead_bytes");
    ck_assert_int_eq(ahead, region + blocker);
    int fd = memfd_create("hc-test-big-pool", MFD_CLOEXEC);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(fallocate(fd, 0, 0, (off_t)big), 0); /* all its memory there */
    void *base = mmap(NULL, big, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    ck_assert(base != MAP_FAILED);
    ck_assert_int_gt(hc_pool_register(c, fd, base, big), 0);
    ck_assert_int_eq(ftruncate(fd, 0), 0);
    /* the pool's first step fails (EFAULT): it stays charged, the other 15
     * go back (a step or two more if the truncation came late) */
    ahead = ahead_reaches(d, (int64_t)(region + blocker + step));
    ck_assert_msg(ahead >= (int64_t)(region + blocker + step) &&
                      ahead <= (int64_t)(region + blocker + 3 * step),
                  "mapped_ahead_bytes %lld after the pool's mapping ahead failed, want %zu",
                  (long long)ahead, region + blocker + step);
    close(fd);
    hc_close(b);

    /* the client's region and a new pool still move pages */
    pool_new(&p);
    for (int i = 0; i < NPAGES; i++) {
        char key[64];
        key_of(key, sizeof(key), "refund", i);
        h_fill(p.base + (size_t)i * PAGE, PAGE, key, 8);
    }
    ck_assert_int_gt(hc_pool_register(c, p.fd, p.base, POOL), 0);
    ck_assert_int_eq(pool_batch(c, &p, "refund", 0, NPAGES, true, res), NPAGES);
    for (int i = 0; i < NPAGES; i++) {
        ck_assert_int_eq(res[i], 0);
        ck_assert_int_eq(region_get_check(c, "refund", i, 8), 0);
    }
    hc_close(c);
    pool_free(&p);
    munmap(base, big); /* only now: a new mapping there would look like the old pool */
    ahead = ahead_reaches(d, 0);
    ck_assert_int_eq(ahead, 0);
    hd_stop(d);
}
END_TEST

/* Pages in several pieces of the pool (the K and V halves of an MHA host pool
 * page; 5 pieces: more than a read takes at once): set from the pieces, read
 * back contiguous through the region and into other pieces of the pool. */
START_TEST(test_pool_pieces)
{
    struct hd *d = hd_new("pool-d", NULL);
    struct pool p;
    uint8_t *flat = malloc(PAGE);

    hd_start(d);
    hc_client *c = hd_connect(d, "pool", PAGE);
    hc_client *other = hd_connect(d, "pool", PAGE);
    pool_new(&p);
    ck_assert_int_gt(hc_pool_register(c, p.fd, p.base, POOL), 0);
    for (unsigned np = 2; np <= 5; np += 3) {
        const int n = 8;
        size_t piece = PAGE / np, last = PAGE - piece * (np - 1);
        hc_buf bufs[8][5], dbufs[8][5];
        hc_page pages[8], dpages[8];
        char keys[8][64];
        int res[8];

        /* piece q of page i at q * POOL / 8 + i * PAGE / 8 (source, first
         * half of each eighth) or + POOL / 16 (target) */
        for (int i = 0; i < n; i++) {
            snprintf(keys[i], sizeof(keys[i]), "pieces%u-%d", np, i);
            h_fill(flat, PAGE, keys[i], 11);
            size_t at = 0;
            for (unsigned q = 0; q < np; q++) {
                size_t len = q + 1 == np ? last : piece;
                uint8_t *src = p.base + q * (POOL / 8) + (size_t)i * last;
                uint8_t *dst = src + POOL / 16;
                memcpy(src, flat + at, len);
                memset(dst, 0, len);
                bufs[i][q] = (hc_buf){src, len};
                dbufs[i][q] = (hc_buf){dst, len};
                at += len;
            }
            pages[i] = (hc_page){keys[i], bufs[i], np};
            dpages[i] = (hc_page){keys[i], dbufs[i], np};
        }
        int64_t before = h_stat(c, "pool_pages");
        ck_assert_int_eq(hc_batch_set(c, pages, n, res), n);
        ck_assert_int_eq(h_stat(c, "pool_pages") - before, n);
        for (int i = 0; i < n; i++) {
            uint8_t *buf = malloc(PAGE);
            hc_buf b = {buf, PAGE};
            hc_page pg = {keys[i], &b, 1};
            ck_assert_int_eq(hc_batch_get(other, &pg, 1, &res[0]), 1);
            ck_assert_msg(h_check(buf, PAGE, keys[i], 11) < 0, "%s: wrong bytes", keys[i]);
            free(buf);
        }
        ck_assert_int_eq(hc_batch_get(c, dpages, n, res), n);
        for (int i = 0; i < n; i++) {
            size_t at = 0;
            for (unsigned q = 0; q < np; q++) {
                memcpy(flat + at, dbufs[i][q].base, dbufs[i][q].len);
                at += dbufs[i][q].len;
            }
            ck_assert_msg(h_check(flat, PAGE, keys[i], 11) < 0, "%s: wrong bytes in the pool",
                          keys[i]);
        }
        ck_assert_int_eq(h_stat(c, "pool_pages") - before, 2 * n);
    }
    free(flat);
    hc_close(c);
    hc_close(other);
    pool_free(&p);
    hd_stop(d);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("pool");
    TCase *tc = h_tcase("pool", 60);
    tcase_add_test(tc, test_pool_round_trip);
    tcase_add_test(tc, test_pool_pieces);
    tcase_add_test(tc, test_pool_refused);
    tcase_add_test(tc, test_pool_truncated);
    tcase_add_test(tc, test_pool_mapped_ahead);
    tcase_add_test(tc, test_pool_map_ahead_bounded);
    tcase_add_test(tc, test_pool_kept_region_freed);
    tcase_add_test(tc, test_pool_map_ahead_refund);
    suite_add_tcase(s, tc);
    return h_run_suite(s);
}
