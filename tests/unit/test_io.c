/* I/O pool: real files, pipes and sockets through its I/O threads. Every
 * functional test runs once per engine (loop index 0 = HC_IO_ENGINE_URING,
 * 1 = HC_IO_ENGINE_THREADS). */
#include "crc32c.h"
#include "io.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <liburing.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- harness -------------------------------------------------------------- */

static char tmpdir[256];
static int wake_efd = -1;
static unsigned wakes;

static void test_wake(void *arg)
{
    uint64_t one = 1;
    __atomic_add_fetch(&wakes, 1, __ATOMIC_RELAXED);
    ck_assert_int_eq(write(*(int *)arg, &one, sizeof(one)), (int)sizeof(one));
}

static void setup(void)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/hc_test_io.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
    wake_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    ck_assert_int_ge(wake_efd, 0);
    wakes = 0;
}

static void teardown(void)
{
    char cmd[300];
    close(wake_efd);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmpdir);
}

static struct hc_io_pool *make_pool_engine(enum hc_io_engine engine, unsigned threads,
                                           unsigned depth, uint64_t max_inflight)
{
    struct hc_io_config cfg = {.engine = engine,
                               .threads = threads,
                               .queue_depth = depth,
                               .max_inflight_bytes = max_inflight};
    struct hc_io_pool *pool = NULL;
    int rc = hc_io_pool_create(&pool, &cfg, test_wake, &wake_efd);
    ck_assert_int_eq(rc, 0);
    ck_assert_ptr_nonnull(pool);
    return pool;
}

/* In a test body: a pool of the engine this run of the loop test is for. */
#define make_pool(threads, depth, max_inflight)                                                    \
    make_pool_engine((enum hc_io_engine)_i, threads, depth, max_inflight)

/* Loop-thread side: waits on the wake eventfd and drains until nothing is
 * pending. A wake-up that never comes fails the test after 10 s. */
static void run_pool(struct hc_io_pool *pool)
{
    for (;;) {
        hc_io_pool_drain(pool);
        if (hc_io_pool_pending(pool) == 0)
            return;
        struct pollfd pfd = {.fd = wake_efd, .events = POLLIN};
        int n = poll(&pfd, 1, 10000);
        ck_assert_msg(n == 1, "no wake-up within 10 s (%u pending)", hc_io_pool_pending(pool));
        uint64_t v;
        ck_assert_int_eq(read(wake_efd, &v, sizeof(v)), (int)sizeof(v));
    }
}

static uint64_t rng_state = 88172645463325252ull;

static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static void fill_pattern(uint8_t *p, size_t n, uint64_t seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)((seed * 131 + i * 7 + (i >> 8)) & 0xff);
}

static int open_tmp(const char *name, int flags)
{
    char path[400];
    snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
    int fd = open(path, flags | O_CLOEXEC, 0600);
    ck_assert_int_ge(fd, 0);
    return fd;
}

/* Splits buf of len bytes into 1..4 iovecs (some possibly empty). */
static void split_iov(struct hc_io_req *req, uint8_t *buf, size_t len)
{
    int cnt = 1 + (int)(rng() % HC_IO_MAX_IOV);
    size_t off = 0;
    for (int i = 0; i < cnt; i++) {
        size_t part = i == cnt - 1 ? len - off : (size_t)(rng() % (len - off + 1));
        req->iov[i].iov_base = buf + off;
        req->iov[i].iov_len = part;
        off += part;
    }
    req->iovcnt = cnt;
}

struct rec {
    struct hc_io_req req;
    unsigned done_calls;
    int order;
};

static int done_seq;

static void rec_done(struct hc_io_req *req)
{
    struct rec *r = (struct rec *)req;
    r->done_calls++;
    r->order = done_seq++;
}

/* ---- many requests ------------------------------------------------------ */

#define NREQ 1000

START_TEST(t_many_mixed)
{
    struct hc_io_pool *pool = make_pool(3, 4, 64u << 20);
    static struct rec reqs[NREQ];
    size_t len[NREQ], off[NREQ], total = 0;
    int fd = open_tmp("many", O_RDWR | O_CREAT | O_TRUNC);

    for (int i = 0; i < NREQ; i++) {
        len[i] = 1 + rng() % 20000;
        off[i] = total;
        total += len[i];
    }
    uint8_t *src = malloc(total), *dst = calloc(1, total), *chk = calloc(1, total);
    ck_assert(src && dst && chk);
    for (int i = 0; i < NREQ; i++)
        fill_pattern(src + off[i], len[i], (uint64_t)i);

    /* write, submitted in one burst: far more than 3 rings of depth 4 hold */
    memset(reqs, 0, sizeof(reqs));
    for (int i = 0; i < NREQ; i++) {
        struct hc_io_req *q = &reqs[i].req;
        q->op = HC_IO_WRITE;
        q->prio = i % 3 ? HC_IO_PRIO_LOW : HC_IO_PRIO_HIGH;
        q->fd = fd;
        q->offset = off[i];
        split_iov(q, src + off[i], len[i]);
        q->done = rec_done;
        hc_io_submit(pool, q);
    }
    ck_assert_uint_eq(hc_io_pool_pending(pool), NREQ);
    run_pool(pool);
    for (int i = 0; i < NREQ; i++) {
        ck_assert_uint_eq(reqs[i].done_calls, 1);
        ck_assert_int_eq(reqs[i].req.result, (ssize_t)len[i]);
    }
    ck_assert_int_eq(pread(fd, chk, total, 0), (ssize_t)total);
    ck_assert(memcmp(src, chk, total) == 0);
    struct stat st;
    ck_assert_int_eq(fstat(fd, &st), 0);
    ck_assert_int_eq(st.st_size, (off_t)total);

    /* read back with different splits */
    memset(reqs, 0, sizeof(reqs));
    for (int i = NREQ - 1; i >= 0; i--) {
        struct hc_io_req *q = &reqs[i].req;
        q->op = HC_IO_READ;
        q->prio = i % 2 ? HC_IO_PRIO_LOW : HC_IO_PRIO_HIGH;
        q->fd = fd;
        q->offset = off[i];
        split_iov(q, dst + off[i], len[i]);
        q->done = rec_done;
        hc_io_submit(pool, q);
    }
    run_pool(pool);
    for (int i = 0; i < NREQ; i++) {
        ck_assert_uint_eq(reqs[i].done_calls, 1);
        ck_assert_int_eq(reqs[i].req.result, (ssize_t)len[i]);
    }
    ck_assert(memcmp(src, dst, total) == 0);
    ck_assert_uint_eq(hc_io_pool_inflight_bytes(pool), 0);
    ck_assert_uint_ge(wakes, 1);
    ck_assert_uint_le(wakes, 2 * NREQ);

    hc_io_pool_destroy(pool);
    close(fd);
    free(src);
    free(dst);
    free(chk);
}
END_TEST

/* ---- short transfers ---------------------------------------------------- */

START_TEST(t_read_past_eof)
{
    struct hc_io_pool *pool = make_pool(1, 4, 1 << 20);
    int fd = open_tmp("eof", O_RDWR | O_CREAT | O_TRUNC);
    uint8_t data[1000], buf[4096];
    fill_pattern(data, sizeof(data), 7);
    ck_assert_int_eq(pwrite(fd, data, sizeof(data), 0), (ssize_t)sizeof(data));

    /* spans end of file: the first read is short, the resubmitted one
     * returns 0 */
    struct rec a = {
        .req = {.op = HC_IO_READ, .fd = fd, .offset = 500, .iovcnt = 2, .done = rec_done}};
    a.req.iov[0] = (struct iovec){buf, 300};
    a.req.iov[1] = (struct iovec){buf + 300, 300};
    /* ends exactly at end of file */
    struct rec b = {
        .req = {.op = HC_IO_READ, .fd = fd, .offset = 200, .iovcnt = 1, .done = rec_done}};
    uint8_t buf2[800];
    b.req.iov[0] = (struct iovec){buf2, 800};
    /* starts past end of file */
    struct rec c = {
        .req = {.op = HC_IO_READ, .fd = fd, .offset = 5000, .iovcnt = 1, .done = rec_done}};
    c.req.iov[0] = (struct iovec){buf, 10};

    hc_io_submit(pool, &a.req);
    hc_io_submit(pool, &b.req);
    hc_io_submit(pool, &c.req);
    run_pool(pool);
    ck_assert_int_eq(a.req.result, -ENODATA);
    ck_assert_int_eq(b.req.result, 800);
    ck_assert(memcmp(buf2, data + 200, 800) == 0);
    ck_assert_int_eq(c.req.result, -ENODATA);
    hc_io_pool_destroy(pool);
    close(fd);
}
END_TEST

struct drain_arg {
    int fd;
    uint8_t *buf;
    size_t len;
    size_t got;
};

/* Reads len bytes slowly, in small pieces, so the writer keeps meeting a full
 * socket buffer. */
static void *slow_reader(void *p)
{
    struct drain_arg *a = p;
    while (a->got < a->len) {
        size_t want = a->len - a->got < 3000 ? a->len - a->got : 3000;
        ssize_t n = read(a->fd, a->buf + a->got, want);
        if (n <= 0)
            break;
        a->got += (size_t)n;
        if ((a->got / 3000) % 16 == 0)
            usleep(200);
    }
    return NULL;
}

/* Writes len bytes in small pieces with pauses, so a reader finds only part
 * of what it asked for. */
static void *slow_writer(void *p)
{
    struct drain_arg *a = p;
    while (a->got < a->len) {
        size_t want = a->len - a->got < 8192 ? a->len - a->got : 8192;
        ssize_t n = write(a->fd, a->buf + a->got, want);
        if (n <= 0)
            break;
        a->got += (size_t)n;
        usleep(500);
    }
    return NULL;
}

static void small_socketpair(int sv[2])
{
    int sz = 4096;
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    ck_assert_int_eq(setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz)), 0);
    ck_assert_int_eq(setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz)), 0);
}

START_TEST(t_short_write_socket)
{
    const size_t len = 4u << 20;
    uint8_t *src = malloc(len), *dst = calloc(1, len);
    ck_assert(src && dst);
    fill_pattern(src, len, 99);

    /* Precondition, with io_uring alone: one writev to this socket comes back
     * short, so the pool below must resubmit to deliver everything. */
    {
        int sv[2];
        struct io_uring ring;
        struct io_uring_cqe *cqe;
        struct iovec iov = {src, len};
        small_socketpair(sv);
        ck_assert_int_eq(io_uring_queue_init(4, &ring, 0), 0);
        io_uring_prep_writev(io_uring_get_sqe(&ring), sv[0], &iov, 1, 0);
        ck_assert_int_eq(io_uring_submit_and_wait(&ring, 1), 1);
        ck_assert_int_eq(io_uring_peek_cqe(&ring, &cqe), 0);
        ck_assert_int_gt(cqe->res, 0);
        ck_assert_int_lt(cqe->res, (int)len);
        io_uring_cqe_seen(&ring, cqe);
        io_uring_queue_exit(&ring);
        close(sv[0]);
        close(sv[1]);
    }

    int sv[2];
    small_socketpair(sv);
    struct hc_io_pool *pool = make_pool(2, 4, 64u << 20);
    struct rec w = {.req = {.op = HC_IO_WRITE, .fd = sv[0], .iovcnt = 3, .done = rec_done}};
    w.req.iov[0] = (struct iovec){src, 100000};
    w.req.iov[1] = (struct iovec){src + 100000, 1};
    w.req.iov[2] = (struct iovec){src + 100001, len - 100001};
    struct drain_arg ra = {.fd = sv[1], .buf = dst, .len = len};
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, slow_reader, &ra), 0);
    hc_io_submit(pool, &w.req);
    run_pool(pool);
    ck_assert_int_eq(w.req.result, (ssize_t)len);
    shutdown(sv[0], SHUT_WR);
    pthread_join(th, NULL);
    ck_assert_uint_eq(ra.got, len);
    ck_assert(memcmp(src, dst, len) == 0);
    hc_io_pool_destroy(pool);
    close(sv[0]);
    close(sv[1]);
    free(src);
    free(dst);
}
END_TEST

/* A gathered write (iovx: more buffers than HC_IO_MAX_IOV, as a segment's
 * writer sends): every byte arrives in order, through a socket that takes
 * it in short pieces (the pool resumes inside the caller's array) and into a
 * file at an offset; a count of 0 or above HC_IO_MAX_IOVX is refused. */
START_TEST(t_gathered_write)
{
    enum { NB = 700 };
    const size_t len = 3u << 20;
    uint8_t *src = malloc(len), *dst = calloc(1, len);
    struct iovec *iov = calloc(NB, sizeof(*iov));
    size_t cuts[NB + 1];
    ck_assert(src && dst && iov);
    fill_pattern(src, len, 7);
    cuts[0] = 0;
    cuts[NB] = len;
    for (int i = 1; i < NB; i++) /* uneven pieces, some empty */
        cuts[i] = i % 7 == 0 ? cuts[i - 1] : cuts[i - 1] + rng() % (2 * len / NB - 1);
    for (int i = 1; i < NB; i++)
        if (cuts[i] > len)
            cuts[i] = len;
    for (int i = 0; i < NB; i++)
        iov[i] = (struct iovec){src + cuts[i], cuts[i + 1] - cuts[i]};

    int sv[2];
    small_socketpair(sv);
    struct hc_io_pool *pool = make_pool(2, 4, 64u << 20);
    struct rec w = {.req = {.op = HC_IO_WRITE, .fd = sv[0], .done = rec_done}};
    w.req.iovx = iov;
    w.req.iovxcnt = NB;
    struct drain_arg ra = {.fd = sv[1], .buf = dst, .len = len};
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, slow_reader, &ra), 0);
    ck_assert_int_eq(hc_io_submit(pool, &w.req), 0);
    run_pool(pool);
    ck_assert_int_eq(w.req.result, (ssize_t)len);
    shutdown(sv[0], SHUT_WR);
    pthread_join(th, NULL);
    ck_assert_uint_eq(ra.got, len);
    ck_assert(memcmp(src, dst, len) == 0);
    close(sv[0]);
    close(sv[1]);

    int fd = open_tmp("gathered", O_RDWR | O_CREAT | O_TRUNC);
    for (int i = 0; i < NB; i++)
        iov[i] = (struct iovec){src + cuts[i], cuts[i + 1] - cuts[i]};
    struct rec f = {.req = {.op = HC_IO_WRITE, .fd = fd, .offset = 8192, .done = rec_done}};
    f.req.iovx = iov;
    f.req.iovxcnt = NB;
    ck_assert_int_eq(hc_io_submit(pool, &f.req), 0);
    run_pool(pool);
    ck_assert_int_eq(f.req.result, (ssize_t)len);
    memset(dst, 0, len);
    ck_assert_int_eq(pread(fd, dst, len, 8192), (ssize_t)len);
    ck_assert(memcmp(src, dst, len) == 0);

    struct rec z = {.req = {.op = HC_IO_WRITE, .fd = fd, .done = rec_done}};
    z.req.iovx = iov;
    z.req.iovxcnt = 0;
    ck_assert_int_eq(hc_io_submit(pool, &z.req), -EINVAL);
    z.req.iovxcnt = HC_IO_MAX_IOVX + 1;
    ck_assert_int_eq(hc_io_submit(pool, &z.req), -EINVAL);
    ck_assert_uint_eq(z.done_calls, 0);
    hc_io_pool_destroy(pool);
    close(fd);
    free(iov);
    free(src);
    free(dst);
}
END_TEST

START_TEST(t_short_read_pipe)
{
    const size_t len = 256u << 10;
    uint8_t *src = malloc(len), *dst = calloc(1, len);
    int p[2];
    ck_assert(src && dst);
    fill_pattern(src, len, 5);
    ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);

    struct hc_io_pool *pool = make_pool(1, 4, 64u << 20);
    struct rec r = {.req = {.op = HC_IO_READ, .fd = p[0], .iovcnt = 2, .done = rec_done}};
    r.req.iov[0] = (struct iovec){dst, 70001};
    r.req.iov[1] = (struct iovec){dst + 70001, len - 70001};
    struct drain_arg wa = {.fd = p[1], .buf = src, .len = len};
    pthread_t th;
    hc_io_submit(pool, &r.req);
    ck_assert_int_eq(pthread_create(&th, NULL, slow_writer, &wa), 0);
    run_pool(pool);
    ck_assert_int_eq(r.req.result, (ssize_t)len);
    pthread_join(th, NULL);
    ck_assert(memcmp(src, dst, len) == 0);

    /* the writer hangs up early: the read ends with -ENODATA */
    struct rec r2 = {.req = {.op = HC_IO_READ, .fd = p[0], .iovcnt = 1, .done = rec_done}};
    r2.req.iov[0] = (struct iovec){dst, 4096};
    ck_assert_int_eq(write(p[1], src, 100), 100);
    close(p[1]);
    hc_io_submit(pool, &r2.req);
    run_pool(pool);
    ck_assert_int_eq(r2.req.result, -ENODATA);

    hc_io_pool_destroy(pool);
    close(p[0]);
    free(src);
    free(dst);
}
END_TEST

/* ---- before / after / task ---------------------------------------------- */

static unsigned after_calls;
static pthread_t main_thread;

static int before_eperm(struct hc_io_req *req)
{
    return -EPERM;
}

static int after_count(struct hc_io_req *req)
{
    __atomic_add_fetch(&after_calls, 1, __ATOMIC_RELAXED);
    return 0;
}

/* Verifies what was read, like a checksum check would. */
static int after_verify(struct hc_io_req *req)
{
    const uint8_t *want = req->data;
    __atomic_add_fetch(&after_calls, 1, __ATOMIC_RELAXED);
    ck_assert(!pthread_equal(pthread_self(), main_thread));
    return memcmp(req->iov[0].iov_base, want, req->iov[0].iov_len) ? -EBADMSG : 0;
}

START_TEST(t_before_error_skips_io)
{
    struct hc_io_pool *pool = make_pool(2, 4, 1 << 20);
    int fd = open_tmp("before", O_RDWR | O_CREAT | O_TRUNC);
    uint8_t orig[4096], repl[4096], chk[4096];
    fill_pattern(orig, sizeof(orig), 1);
    memset(repl, 0xee, sizeof(repl));
    ck_assert_int_eq(pwrite(fd, orig, sizeof(orig), 0), 4096);
    after_calls = 0;

    struct rec w = {.req = {.op = HC_IO_WRITE,
                            .fd = fd,
                            .iovcnt = 1,
                            .before = before_eperm,
                            .after = after_count,
                            .done = rec_done}};
    w.req.iov[0] = (struct iovec){repl, sizeof(repl)};
    hc_io_submit(pool, &w.req);
    run_pool(pool);
    ck_assert_int_eq(w.req.result, -EPERM);
    ck_assert_uint_eq(after_calls, 0);
    ck_assert_int_eq(pread(fd, chk, sizeof(chk), 0), 4096);
    ck_assert(memcmp(chk, orig, sizeof(chk)) == 0);
    hc_io_pool_destroy(pool);
    close(fd);
}
END_TEST

START_TEST(t_after_result)
{
    struct hc_io_pool *pool = make_pool(2, 4, 1 << 20);
    int fd = open_tmp("after", O_RDWR | O_CREAT | O_TRUNC);
    uint8_t orig[4096], other[4096], b1[4096], b2[4096];
    fill_pattern(orig, sizeof(orig), 2);
    fill_pattern(other, sizeof(other), 3);
    ck_assert_int_eq(pwrite(fd, orig, sizeof(orig), 0), 4096);
    after_calls = 0;
    main_thread = pthread_self();

    struct rec good = {.req = {.op = HC_IO_READ,
                               .fd = fd,
                               .iovcnt = 1,
                               .after = after_verify,
                               .done = rec_done,
                               .data = orig}};
    good.req.iov[0] = (struct iovec){b1, sizeof(b1)};
    struct rec bad = {.req = {.op = HC_IO_READ,
                              .fd = fd,
                              .iovcnt = 1,
                              .after = after_verify,
                              .done = rec_done,
                              .data = other}};
    bad.req.iov[0] = (struct iovec){b2, sizeof(b2)};
    hc_io_submit(pool, &good.req);
    hc_io_submit(pool, &bad.req);
    run_pool(pool);
    ck_assert_uint_eq(after_calls, 2);
    ck_assert_int_eq(good.req.result, 4096);
    ck_assert_int_eq(bad.req.result, -EBADMSG);
    hc_io_pool_destroy(pool);
    close(fd);
}
END_TEST

struct task {
    struct hc_io_req req;
    int value;
    pthread_t ran_on;
    int done_calls;
};

static int task_work(struct hc_io_req *req)
{
    struct task *t = (struct task *)req;
    t->ran_on = pthread_self();
    t->value = 42;
    return 0;
}

static int task_fail(struct hc_io_req *req)
{
    return -EIO;
}

static void task_done(struct hc_io_req *req)
{
    ((struct task *)req)->done_calls++;
}

START_TEST(t_task)
{
    struct hc_io_pool *pool = make_pool(2, 4, 1);
    struct task a = {.req = {.op = HC_IO_TASK, .before = task_work, .done = task_done}};
    struct task b = {.req = {.op = HC_IO_TASK, .before = task_fail, .done = task_done}};
    struct task c = {.req = {.op = HC_IO_TASK, .done = task_done}};
    hc_io_submit(pool, &a.req);
    hc_io_submit(pool, &b.req);
    hc_io_submit(pool, &c.req);
    /* done never runs inside submit */
    ck_assert_int_eq(a.done_calls + b.done_calls + c.done_calls, 0);
    ck_assert_uint_eq(hc_io_pool_pending(pool), 3);
    run_pool(pool);
    ck_assert_int_eq(a.done_calls, 1);
    ck_assert_int_eq(b.done_calls, 1);
    ck_assert_int_eq(c.done_calls, 1);
    ck_assert_int_eq(a.req.result, 0);
    ck_assert_int_eq(a.value, 42);
    ck_assert(!pthread_equal(a.ran_on, pthread_self()));
    ck_assert_int_eq(b.req.result, -EIO);
    ck_assert_int_eq(c.req.result, 0);
    hc_io_pool_destroy(pool);
}
END_TEST

/* ---- admission ---------------------------------------------------------- */

#define BSZ 65536
static struct hc_io_pool *bound_pool;
static uint64_t bound;
static int active, max_active;
static uint64_t max_seen_inflight;

static int before_enter(struct hc_io_req *req)
{
    int now = __atomic_add_fetch(&active, 1, __ATOMIC_SEQ_CST);
    int prev = __atomic_load_n(&max_active, __ATOMIC_SEQ_CST);
    while (now > prev && !__atomic_compare_exchange_n(&max_active, &prev, now, false,
                                                      __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
        ;
    usleep(300);
    return 0;
}

static int after_leave(struct hc_io_req *req)
{
    __atomic_sub_fetch(&active, 1, __ATOMIC_SEQ_CST);
    return 0;
}

static void bound_done(struct hc_io_req *req)
{
    ck_assert(!hc_io_waiting(req)); /* admitted, at submit or on a drain */
    uint64_t now = hc_io_pool_inflight_bytes(bound_pool);
    ck_assert_uint_le(now, bound);
    if (now > max_seen_inflight)
        max_seen_inflight = now;
    rec_done(req);
}

START_TEST(t_inflight_bound)
{
    enum { N = 200 };
    static struct rec reqs[N];
    static uint8_t bufs[N][BSZ];
    int fd = open_tmp("bound", O_RDWR | O_CREAT | O_TRUNC);
    bound = 3 * BSZ;
    bound_pool = make_pool(3, 8, bound);
    active = max_active = 0;
    max_seen_inflight = 0;
    memset(reqs, 0, sizeof(reqs));
    for (int i = 0; i < N; i++) {
        struct hc_io_req *q = &reqs[i].req;
        fill_pattern(bufs[i], BSZ, (uint64_t)i);
        q->op = HC_IO_WRITE;
        q->prio = i & 1 ? HC_IO_PRIO_HIGH : HC_IO_PRIO_LOW;
        q->fd = fd;
        q->offset = (uint64_t)i * BSZ;
        q->iov[0] = (struct iovec){bufs[i], BSZ};
        q->iovcnt = 1;
        q->before = before_enter;
        q->after = after_leave;
        q->done = bound_done;
        /* the first three fit; the others wait, and say so */
        int rc = hc_io_submit(bound_pool, q);
        ck_assert_int_eq(rc, i < 3 ? 0 : HC_IO_WAITING);
        ck_assert(hc_io_waiting(q) == (i >= 3));
        ck_assert_uint_le(hc_io_pool_inflight_bytes(bound_pool), bound);
    }
    ck_assert_uint_eq(hc_io_pool_inflight_bytes(bound_pool), bound);
    ck_assert_uint_eq(hc_io_pool_pending(bound_pool), N);
    run_pool(bound_pool);
    ck_assert_int_le(max_active * BSZ, (int)bound);
    ck_assert_int_ge(max_active, 1);
    for (int i = 0; i < N; i++)
        ck_assert_int_eq(reqs[i].req.result, BSZ);
    for (int i = 0; i < N; i += 37) {
        uint8_t chk[BSZ];
        ck_assert_int_eq(pread(fd, chk, BSZ, (off_t)i * BSZ), BSZ);
        ck_assert(memcmp(chk, bufs[i], BSZ) == 0);
    }

    /* a request larger than the bound still goes when nothing is in flight */
    static uint8_t big[4 * BSZ];
    struct rec r = {.req = {.op = HC_IO_WRITE, .fd = fd, .iovcnt = 1, .done = rec_done}};
    r.req.iov[0] = (struct iovec){big, sizeof(big)};
    ck_assert_int_eq(hc_io_submit(bound_pool, &r.req), 0);
    ck_assert(!hc_io_waiting(&r.req));
    ck_assert_uint_eq(hc_io_pool_inflight_bytes(bound_pool), sizeof(big));
    run_pool(bound_pool);
    ck_assert_int_eq(r.req.result, (ssize_t)sizeof(big));
    ck_assert_uint_eq(hc_io_pool_inflight_bytes(bound_pool), 0);

    hc_io_pool_destroy(bound_pool);
    close(fd);
}
END_TEST

START_TEST(t_high_before_low)
{
    /* room for one request at a time */
    struct hc_io_pool *pool = make_pool(2, 4, 4096);
    int fd = open_tmp("prio", O_RDWR | O_CREAT | O_TRUNC);
    static uint8_t buf[8][4096];
    struct rec r[8];
    /* L0 goes at once; L1-L3 wait; H4-H7 arrive later but must go first */
    memset(r, 0, sizeof(r));
    done_seq = 0;
    for (int i = 0; i < 8; i++) {
        r[i].req.op = HC_IO_WRITE;
        r[i].req.prio = i < 4 ? HC_IO_PRIO_LOW : HC_IO_PRIO_HIGH;
        r[i].req.fd = fd;
        r[i].req.offset = (uint64_t)i * 4096;
        r[i].req.iov[0] = (struct iovec){buf[i], 4096};
        r[i].req.iovcnt = 1;
        r[i].req.done = rec_done;
        hc_io_submit(pool, &r[i].req);
        ck_assert_uint_eq(hc_io_pool_inflight_bytes(pool), 4096);
    }
    run_pool(pool);
    int want[8] = {0, 4, 5, 6, 7, 1, 2, 3};
    for (int k = 0; k < 8; k++) {
        ck_assert_int_eq(r[want[k]].order, k);
        ck_assert_int_eq(r[want[k]].req.result, 4096);
    }
    hc_io_pool_destroy(pool);
    close(fd);
}
END_TEST

/* A steady stream of HIGH requests (each finished one brings a new one) does
 * not keep LOW requests waiting: with room for one request at a time, a
 * waiting LOW request goes after at most 4 HIGH admissions in a row. */
#define STREAM_HIGH 40
static struct hc_io_pool *stream_pool;
static struct rec stream_high[STREAM_HIGH];
static uint8_t stream_buf[4096];
static int stream_fd, stream_next;

static void stream_done(struct hc_io_req *req);

static void stream_submit_high(void)
{
    struct hc_io_req *q = &stream_high[stream_next++].req;
    q->op = HC_IO_WRITE;
    q->prio = HC_IO_PRIO_HIGH;
    q->fd = stream_fd;
    q->offset = 0;
    q->iov[0] = (struct iovec){stream_buf, sizeof(stream_buf)};
    q->iovcnt = 1;
    q->done = stream_done;
    hc_io_submit(stream_pool, q);
}

static void stream_done(struct hc_io_req *req)
{
    rec_done(req);
    if (stream_next < STREAM_HIGH)
        stream_submit_high();
}

START_TEST(t_low_not_starved)
{
    struct rec low[2];
    stream_pool = make_pool(2, 4, 4096);
    stream_fd = open_tmp("stream", O_RDWR | O_CREAT | O_TRUNC);
    stream_next = 0;
    done_seq = 0;
    memset(stream_high, 0, sizeof(stream_high));
    memset(low, 0, sizeof(low));

    stream_submit_high(); /* H0 goes at once */
    for (int i = 0; i < 2; i++) {
        low[i].req.op = HC_IO_WRITE;
        low[i].req.prio = HC_IO_PRIO_LOW;
        low[i].req.fd = stream_fd;
        low[i].req.offset = 4096 * (uint64_t)(i + 1);
        low[i].req.iov[0] = (struct iovec){stream_buf, sizeof(stream_buf)};
        low[i].req.iovcnt = 1;
        low[i].req.done = rec_done;
        hc_io_submit(stream_pool, &low[i].req);
    }
    for (int i = 0; i < 8; i++) /* a queue of HIGH that never runs dry */
        stream_submit_high();
    ck_assert_uint_eq(hc_io_pool_inflight_bytes(stream_pool), 4096);
    run_pool(stream_pool);

    ck_assert_int_eq(stream_next, STREAM_HIGH);
    for (int i = 0; i < STREAM_HIGH; i++)
        ck_assert_int_eq(stream_high[i].req.result, 4096);
    ck_assert_int_eq(low[0].req.result, 4096);
    ck_assert_int_eq(low[1].req.result, 4096);
    /* H0, then H1-H4 ahead of the waiting LOW, then L0; H5-H8, then L1. */
    ck_assert_int_eq(stream_high[0].order, 0);
    ck_assert_int_eq(stream_high[4].order, 4);
    ck_assert_int_eq(low[0].order, 5);
    ck_assert_int_eq(stream_high[8].order, 9);
    ck_assert_int_eq(low[1].order, 10);
    ck_assert_int_eq(stream_high[9].order, 11);
    hc_io_pool_destroy(stream_pool);
    close(stream_fd);
}
END_TEST

/* ---- teardown and errors ------------------------------------------------ */

static int before_slow(struct hc_io_req *req)
{
    usleep(2000);
    return 0;
}

START_TEST(t_destroy_runs_every_done)
{
    enum { N = 60 };
    struct hc_io_pool *pool = make_pool(3, 4, 3 * 4096);
    int fd = open_tmp("destroy", O_RDWR | O_CREAT | O_TRUNC);
    static uint8_t buf[N][4096];
    struct rec r[N];
    memset(r, 0, sizeof(r));
    for (int i = 0; i < N; i++) {
        fill_pattern(buf[i], 4096, (uint64_t)i + 1000);
        r[i].req.op = HC_IO_WRITE;
        r[i].req.fd = fd;
        r[i].req.offset = (uint64_t)i * 4096;
        r[i].req.iov[0] = (struct iovec){buf[i], 4096};
        r[i].req.iovcnt = 1;
        r[i].req.before = before_slow;
        r[i].req.done = rec_done;
        hc_io_submit(pool, &r[i].req);
    }
    /* most are still waiting for admission */
    ck_assert_uint_eq(hc_io_pool_pending(pool), N);
    hc_io_pool_destroy(pool);
    for (int i = 0; i < N; i++) {
        ck_assert_uint_eq(r[i].done_calls, 1);
        ck_assert_int_eq(r[i].req.result, 4096);
        uint8_t chk[4096];
        ck_assert_int_eq(pread(fd, chk, 4096, (off_t)i * 4096), 4096);
        ck_assert(memcmp(chk, buf[i], 4096) == 0);
    }
    hc_io_pool_destroy(NULL);
    close(fd);
}
END_TEST

START_TEST(t_bad_fd)
{
    struct hc_io_pool *pool = make_pool(2, 4, 1 << 20);
    uint8_t buf[512] = {0};
    /* a descriptor number nobody holds */
    int tmp = open_tmp("closed", O_RDWR | O_CREAT);
    int closed = fcntl(tmp, F_DUPFD_CLOEXEC, 900);
    ck_assert_int_ge(closed, 900);
    close(closed);
    close(tmp);
    int wronly = open_tmp("wronly", O_WRONLY | O_CREAT);

    struct rec a = {.req = {.op = HC_IO_READ, .fd = -1, .iovcnt = 1, .done = rec_done}};
    struct rec b = {.req = {.op = HC_IO_WRITE, .fd = closed, .iovcnt = 1, .done = rec_done}};
    struct rec c = {.req = {.op = HC_IO_READ, .fd = wronly, .iovcnt = 1, .done = rec_done}};
    a.req.iov[0] = b.req.iov[0] = c.req.iov[0] = (struct iovec){buf, sizeof(buf)};
    hc_io_submit(pool, &a.req);
    hc_io_submit(pool, &b.req);
    hc_io_submit(pool, &c.req);
    run_pool(pool);
    ck_assert_int_eq(a.req.result, -EBADF);
    ck_assert_int_eq(b.req.result, -EBADF);
    ck_assert_int_eq(c.req.result, -EBADF);
    hc_io_pool_destroy(pool);
    close(wronly);
}
END_TEST

START_TEST(t_bad_args)
{
    struct hc_io_pool *pool = NULL;
    struct hc_io_config cfg = {
        .engine = (enum hc_io_engine)_i, .threads = 0, .queue_depth = 8, .max_inflight_bytes = 1};
    ck_assert_int_eq(hc_io_pool_create(&pool, &cfg, test_wake, &wake_efd), -EINVAL);
    cfg.threads = 1;
    cfg.queue_depth = 2;
    ck_assert_int_eq(hc_io_pool_create(&pool, &cfg, test_wake, &wake_efd), -EINVAL);
    cfg.queue_depth = 8;
    cfg.max_inflight_bytes = 0;
    ck_assert_int_eq(hc_io_pool_create(&pool, &cfg, test_wake, &wake_efd), -EINVAL);
    cfg.max_inflight_bytes = 1;
    cfg.engine = (enum hc_io_engine)7;
    ck_assert_int_eq(hc_io_pool_create(&pool, &cfg, test_wake, &wake_efd), -EINVAL);
    ck_assert_ptr_null(pool);

    pool = make_pool(1, 4, 1 << 20);
    int fd = open_tmp("args", O_RDWR | O_CREAT | O_TRUNC);
    uint8_t buf[16];
    struct rec a = {
        .req = {.op = HC_IO_READ, .fd = fd, .iovcnt = HC_IO_MAX_IOV + 1, .done = rec_done}};
    struct rec b = {
        .req = {.op = HC_IO_WRITE, .fd = fd, .offset = UINT64_MAX, .iovcnt = 1, .done = rec_done}};
    b.req.iov[0] = (struct iovec){buf, sizeof(buf)};
    struct rec c = {.req = {.op = 99, .fd = fd, .done = rec_done}};
    struct rec d = {.req = {.op = HC_IO_WRITE, .fd = fd, .iovcnt = 2, .done = rec_done}};
    d.req.iov[0] = (struct iovec){buf, SSIZE_MAX};
    d.req.iov[1] = (struct iovec){buf, 1};
    struct rec e = {.req = {.op = HC_IO_TASK, .prio = 7, .fd = -1, .done = rec_done}};
    struct rec f = {.req = {.op = HC_IO_WRITE, .fd = fd, .iovcnt = 1}}; /* no done */
    f.req.iov[0] = (struct iovec){buf, sizeof(buf)};
    /* reads ahead: with a buffer, too long, a write; on URING, any */
    struct rec g = {
        .req = {.op = HC_IO_READ, .fd = fd, .iovcnt = 1, .sink = 4096, .done = rec_done}};
    g.req.iov[0] = (struct iovec){buf, sizeof(buf)};
    struct rec h = {
        .req = {.op = HC_IO_READ, .fd = fd, .sink = HC_IO_SINK_MAX + 1ull, .done = rec_done}};
    struct rec i_ = {.req = {.op = HC_IO_WRITE, .fd = fd, .sink = 4096, .done = rec_done}};
    /* a CRC asked for past the buffers' end, or of a write */
    struct rec k = {.req = {.op = HC_IO_READ,
                            .fd = fd,
                            .iovcnt = 1,
                            .crc_from = 10,
                            .crc_len = 7,
                            .done = rec_done}};
    k.req.iov[0] = (struct iovec){buf, sizeof(buf)};
    struct rec l = {
        .req = {.op = HC_IO_WRITE, .fd = fd, .iovcnt = 1, .crc_len = 1, .done = rec_done}};
    l.req.iov[0] = (struct iovec){buf, sizeof(buf)};
    struct rec j = {.req = {.op = HC_IO_READ, .fd = fd, .sink = 4096, .done = rec_done}};
    struct rec *bad[] = {&a, &b, &c, &d, &e, &f, &g, &h, &i_, &k, &l, &j};
    size_t nbad = sizeof(bad) / sizeof(bad[0]) - (_i == HC_IO_ENGINE_THREADS);
    /* refused at the entry point, nothing changed: not queued, done never
     * runs, the request as it was (result, next and the private fields) */
    for (size_t i = 0; i < nbad; i++) {
        struct hc_io_req *q = &bad[i]->req;
        q->result = 12345;
        q->curcnt = 3;
        q->total = 77;
        q->next = q;
        ck_assert_int_eq(hc_io_submit(pool, q), -EINVAL);
        ck_assert_int_eq(q->result, 12345);
        ck_assert_int_eq(q->curcnt, 3);
        ck_assert_uint_eq(q->total, 77);
        ck_assert_ptr_eq(q->next, q);
        ck_assert_uint_eq(hc_io_pool_pending(pool), 0);
    }
    ck_assert_int_eq(hc_io_submit(NULL, &a.req), -EINVAL);
    ck_assert_int_eq(hc_io_submit(pool, NULL), -EINVAL);
    /* the pool still works, and no bad request ever ran */
    struct rec ok = {.req = {.op = HC_IO_WRITE, .fd = fd, .iovcnt = 1, .done = rec_done}};
    memset(buf, 'x', sizeof(buf));
    ok.req.iov[0] = (struct iovec){buf, sizeof(buf)};
    ck_assert_int_eq(hc_io_submit(pool, &ok.req), 0);
    run_pool(pool);
    ck_assert_int_eq(ok.req.result, (ssize_t)sizeof(buf));
    for (size_t i = 0; i < nbad; i++) {
        ck_assert_uint_eq(bad[i]->done_calls, 0);
        ck_assert_int_eq(bad[i]->req.result, 12345);
    }
    struct stat st;
    ck_assert_int_eq(fstat(fd, &st), 0);
    ck_assert_int_eq(st.st_size, sizeof(buf));
    hc_io_pool_destroy(pool);
    close(fd);
}
END_TEST

/* ---- THREADS engine: concurrency --------------------------------------- */

#define CONC_THREADS 4
static int conc_active, conc_peak;
static int conc_wait_ms = 5000;

/* Holds its thread until CONC_THREADS requests are inside at once (or
 * conc_wait_ms pass), recording how many were inside together. */
static int before_rendezvous(struct hc_io_req *req)
{
    int now = __atomic_add_fetch(&conc_active, 1, __ATOMIC_SEQ_CST);
    for (int k = 0; k < conc_wait_ms && now < CONC_THREADS; k++) {
        usleep(1000);
        now = __atomic_load_n(&conc_active, __ATOMIC_SEQ_CST);
    }
    int prev = __atomic_load_n(&conc_peak, __ATOMIC_SEQ_CST);
    while (now > prev && !__atomic_compare_exchange_n(&conc_peak, &prev, now, false,
                                                      __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
        ;
    return 0;
}

static bool conc_cold; /* keep the files out of the page cache */

static int after_rendezvous(struct hc_io_req *req)
{
    __atomic_sub_fetch(&conc_active, 1, __ATOMIC_SEQ_CST);
    /* what this read (and the kernel's read-ahead) brought in goes again, as
     * on a volume whose reads all come from afar */
    if (conc_cold)
        (void)posix_fadvise(req->fd, 0, 0, POSIX_FADV_DONTNEED);
    return 0;
}

/* Drops fd's pages from the page cache, and checks they went (a file on
 * tmpfs cannot be made cold: these tests need /tmp on a disk). */
static void make_cold(int fd, off_t len)
{
    ck_assert_int_eq(fdatasync(fd), 0);
    ck_assert_int_eq(posix_fadvise(fd, 0, len, POSIX_FADV_DONTNEED), 0);
    unsigned char vec[1];
    void *m = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, fd, 0);
    ck_assert(m != MAP_FAILED);
    ck_assert_int_eq(mincore(m, 4096, vec), 0);
    munmap(m, 4096);
    ck_assert_msg(!(vec[0] & 1), "%s: the page cache keeps this file (tmpfs?)", tmpdir);
}

/* N threads perform N reads at the same time, each a whole 1 MiB read of a
 * real file; more reads than threads wait their turn and still complete.
 * With files (nfiles): read i is of file i % nfiles; cold: the files are
 * kept out of the page cache (before the reads and after each). The reads are 1 MiB apart, so
 * none is merged with another. Returns the most reads that were inside at
 * once. */
static int concurrent_reads(int nfiles, bool cold)
{
    enum { N = 2 * CONC_THREADS, LEN = 1 << 20 };
    struct hc_io_pool *pool =
        make_pool_engine(HC_IO_ENGINE_THREADS, CONC_THREADS, 4, (uint64_t)N * LEN);
    int fds[N];
    uint8_t *src = malloc((size_t)2 * N * LEN), *dst = calloc(N, LEN);
    struct rec r[N];
    ck_assert(src && dst);
    fill_pattern(src, (size_t)2 * N * LEN, 11);
    for (int f = 0; f < nfiles; f++) {
        char name[32];
        snprintf(name, sizeof(name), "conc%d", f);
        fds[f] = open_tmp(name, O_RDWR | O_CREAT | O_TRUNC);
        ck_assert_int_eq(pwrite(fds[f], src, (size_t)2 * N * LEN, 0), (ssize_t)2 * N * LEN);
        if (cold)
            make_cold(fds[f], (off_t)2 * N * LEN);
    }
    conc_active = conc_peak = 0;
    conc_cold = cold;
    memset(r, 0, sizeof(r));
    for (int i = 0; i < N; i++) {
        r[i].req.op = HC_IO_READ;
        r[i].req.fd = fds[i % nfiles];
        r[i].req.offset = (uint64_t)2 * i * LEN;
        r[i].req.iov[0] = (struct iovec){dst + (size_t)i * LEN, LEN};
        r[i].req.iovcnt = 1;
        r[i].req.before = before_rendezvous;
        r[i].req.after = after_rendezvous;
        r[i].req.done = rec_done;
        hc_io_submit(pool, &r[i].req);
    }
    run_pool(pool);
    for (int i = 0; i < N; i++) {
        ck_assert_uint_eq(r[i].done_calls, 1);
        ck_assert_int_eq(r[i].req.result, LEN);
    }
    for (int i = 0; i < N; i++)
        ck_assert(memcmp(src + (size_t)2 * i * LEN, dst + (size_t)i * LEN, LEN) == 0);
    hc_io_pool_destroy(pool);
    for (int f = 0; f < nfiles; f++)
        close(fds[f]);
    free(src);
    free(dst);
    return conc_peak;
}

/* Reads of different files run on every thread at once. */
START_TEST(t_threads_concurrent_reads)
{
    ck_assert_int_eq(concurrent_reads(2 * CONC_THREADS, false), CONC_THREADS);
}
END_TEST

/* Reads of one file not in the page cache run one at a time (one thread
 * reads a file, through an open file kept for its next run: io_threads.c),
 * and all complete. */
START_TEST(t_threads_one_file_at_a_time)
{
    conc_wait_ms = 20; /* the rendezvous never fills: do not wait 5 s a read */
    ck_assert_int_eq(concurrent_reads(1, true), 1);
    conc_wait_ms = 5000;
}
END_TEST

/* Reads of one file the page cache holds go to several threads at once
 * once a run of it was found there (hot: copies from memory gain from
 * parallel threads), and all complete. */
START_TEST(t_threads_cached_file_in_parallel)
{
    conc_wait_ms = 20;
    ck_assert_int_gt(concurrent_reads(1, false), 1);
    conc_wait_ms = 5000;
}
END_TEST

/* Whether this process maps the test directory's file name. */
static bool file_mapped(const char *name)
{
    char want[400], line[1024];
    bool found = false;
    snprintf(want, sizeof(want), "%s/%s", tmpdir, name);
    FILE *f = fopen("/proc/self/maps", "r");
    ck_assert_ptr_nonnull(f);
    while (!found && fgets(line, sizeof(line), f))
        found = strstr(line, want) != NULL;
    fclose(f);
    return found;
}

/* ThreadSanitizer (gcc's macro, clang's feature) does not hand a thread's
 * SIGBUS to the guard's handler: the process dies. */
#if defined(__SANITIZE_THREAD__)
#define TEST_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define TEST_TSAN 1
#endif
#endif

#ifndef TEST_TSAN
static int trunc_fd = -1;

/* before() of a read: cuts its file to 1 MiB first (another node truncating
 * a segment under the daemon's mapping of it). */
static int truncate_before(struct hc_io_req *req)
{
    (void)req;
    return ftruncate(trunc_fd, 1 << 20) == 0 ? 0 : -errno;
}
#endif

/* t made a read of len bytes of fd at off into dst (zeroed), its done
 * rec_done: the caller sets what else it needs before submitting it. */
static void read_prep(struct rec *t, int fd, uint64_t off, uint8_t *dst, size_t len)
{
    memset(t, 0, sizeof(*t));
    memset(dst, 0, len);
    t->req.op = HC_IO_READ;
    t->req.fd = fd;
    t->req.offset = off;
    t->req.iov[0] = (struct iovec){dst, len};
    t->req.iovcnt = 1;
    t->req.done = rec_done;
}

/* Reads of a file the page cache holds are copied out of a kept mapping of
 * it (io_threads.c, map_xfer), every byte right, in several chunks, with the
 * CRC a read asks for (hc_io_req.crc_from, crc_len) computed in the copy,
 * also across its buffers' edges, and also once the file has grown; a file
 * cut short under that mapping raises SIGBUS in the copy, which is caught:
 * the read is done with preadv instead and comes back short, and the
 * process lives on. The pool's map counters say each of these. */
START_TEST(t_threads_cached_reads_mapped)
{
    enum { N = 20, LEN = 1 << 20, CUT = 4096 + 123 };
    static const uint64_t crc_at[4][2] = {
        {0, 0}, {100, LEN - 300}, {CUT, LEN - CUT}, {CUT + 500, 1000}};
    struct hc_io_pool *pool = make_pool_engine(HC_IO_ENGINE_THREADS, 1, 4, (uint64_t)N * LEN);
    uint8_t *src = malloc((size_t)N * LEN), *dst = calloc(N, LEN);
    struct rec r[N], t;
    struct hc_io_map_stats ms;
    ck_assert(src && dst);
    fill_pattern(src, (size_t)N * LEN, 21);
    int fd = open_tmp("mapped", O_RDWR | O_CREAT | O_TRUNC);
    ck_assert_int_eq(pwrite(fd, src, (size_t)N * LEN, 0), (ssize_t)N * LEN); /* cached */
    if (!hc_io_cached(fd, 0, (uint64_t)N * LEN)) { /* (before Linux 6.5: no cachestat) */
        fprintf(stderr, "t_threads_cached_reads_mapped: no cachestat here, skipped\n");
        hc_io_pool_destroy(pool);
        close(fd);
        free(src);
        free(dst);
        return;
    }
    memset(r, 0, sizeof(r));
    for (int i = 0; i < N; i++) {
        uint8_t *d = dst + (size_t)i * LEN;
        r[i].req.op = HC_IO_READ;
        r[i].req.fd = fd;
        r[i].req.offset = (uint64_t)i * LEN;
        /* two buffers; reads ask for the CRC of no bytes, of bytes across
         * the buffers' edge, from the edge to the end (read.c's shape: the
         * payload after the header block), inside the second buffer */
        r[i].req.iov[0] = (struct iovec){d, CUT};
        r[i].req.iov[1] = (struct iovec){d + CUT, LEN - CUT};
        r[i].req.iovcnt = 2;
        r[i].req.crc_from = crc_at[i % 4][0] + (i % 4 == 1 ? (uint64_t)i : 0);
        r[i].req.crc_len = crc_at[i % 4][1];
        r[i].req.done = rec_done;
        hc_io_submit(pool, &r[i].req);
    }
    run_pool(pool);
    for (int i = 0; i < N; i++) {
        ck_assert_uint_eq(r[i].done_calls, 1);
        ck_assert_int_eq(r[i].req.result, LEN);
        ck_assert_int_eq(r[i].req.crc_done, i % 4 != 0);
        if (i % 4)
            ck_assert_uint_eq(r[i].req.crc, hc_crc32c(0, src + (size_t)i * LEN + r[i].req.crc_from,
                                                      r[i].req.crc_len));
    }
    ck_assert(memcmp(src, dst, (size_t)N * LEN) == 0);
    ck_assert_msg(file_mapped("mapped"), "the cached reads were not copied out of a mapping");
    hc_io_pool_map_stats(pool, &ms);
    ck_assert_uint_eq(ms.bytes, (uint64_t)N * LEN);
    ck_assert_uint_eq(ms.grows, 1);
    ck_assert_uint_eq(ms.faults, 0);

    /* a read that must reach the filesystem (no_map: a re-read) is not
     * copied out of the mapping, and hc_io_pool_unmap_file drops an idle
     * one (a re-read's fadvise could not evict its pages) */
    read_prep(&t, fd, (uint64_t)3 * LEN, dst, LEN);
    t.req.crc_len = LEN;
    t.req.no_map = true;
    hc_io_submit(pool, &t.req);
    run_pool(pool);
    ck_assert_int_eq(t.req.result, LEN);
    ck_assert(!t.req.crc_done);
    ck_assert(memcmp(src + (size_t)3 * LEN, dst, LEN) == 0);
    hc_io_pool_map_stats(pool, &ms);
    ck_assert_uint_eq(ms.bytes, (uint64_t)N * LEN);
    ck_assert_msg(file_mapped("mapped"), "the mapping went with a read that did not use it");
    /* the read's done can run before its thread gave the kept open file
     * back (held_put): then the mapping goes there, a moment later; well
     * before an idle one would be closed (HELD_IDLE_MS, 1 s) */
    hc_io_pool_unmap_file(pool, fd);
    bool mapped = true;
    for (int i = 0; i < 100 && (mapped = file_mapped("mapped")); i++)
        usleep(2000);
    ck_assert_msg(!mapped, "hc_io_pool_unmap_file left the mapping");

    /* the file grows (a segment appended to): the mapping grows with it */
    fill_pattern(src, LEN, 22);
    ck_assert_int_eq(pwrite(fd, src, LEN, (off_t)N * LEN), LEN);
    read_prep(&t, fd, (uint64_t)N * LEN, dst, LEN);
    hc_io_submit(pool, &t.req);
    run_pool(pool);
    ck_assert_uint_eq(t.done_calls, 1);
    ck_assert_int_eq(t.req.result, LEN);
    ck_assert(memcmp(src, dst, LEN) == 0);
    hc_io_pool_map_stats(pool, &ms);
    ck_assert_uint_eq(ms.bytes, (uint64_t)(N + 1) * LEN);
    ck_assert_uint_eq(ms.grows, 2);

#ifndef TEST_TSAN
    /* (the other runs cover this part under ThreadSanitizer: TEST_TSAN) */
    trunc_fd = fd;
    read_prep(&t, fd, (uint64_t)6 * LEN, dst, LEN);
    t.req.crc_len = LEN;
    t.req.before = truncate_before;
    hc_io_submit(pool, &t.req);
    run_pool(pool);
    ck_assert_uint_eq(t.done_calls, 1);
    ck_assert_int_eq(t.req.result, -ENODATA); /* past the new end: not a whole read */
    ck_assert(!t.req.crc_done);
    ck_assert_msg(!file_mapped("mapped"), "the mapping of the cut file was kept");
    hc_io_pool_map_stats(pool, &ms);
    ck_assert_uint_eq(ms.faults, 1);
    ck_assert_uint_eq(ms.bytes, (uint64_t)(N + 1) * LEN);
#endif
    hc_io_pool_destroy(pool);
    close(fd);
    free(src);
    free(dst);
}
END_TEST

/* ---- THREADS engine: merged reads --------------------------------------- */

#define MERGE_NREQ 600
#define MERGE_GUARD 64

/* One read of the merge test: which file and range, its own buffer (between
 * guard bytes), and what its hooks must do and saw. */
struct mrec {
    struct rec r;
    int file;
    uint64_t off;
    size_t len;
    uint8_t *buf;
    int fail_before; /* before() returns this (0: succeeds) */
    int fail_after;  /* after() returns this (0: succeeds) */
    unsigned before_calls, after_calls;
    bool sink; /* gated_reads: a read ahead (hc_io_req.sink) of len bytes */
};

static int merge_in_flight, merge_peak;
static pthread_mutex_t merge_gate_lock = PTHREAD_MUTEX_INITIALIZER;

static int merge_before(struct hc_io_req *req)
{
    struct mrec *m = (struct mrec *)req;
    m->before_calls++;
    if (m->fail_before)
        return m->fail_before;
    int now = __atomic_add_fetch(&merge_in_flight, 1, __ATOMIC_SEQ_CST);
    int prev = __atomic_load_n(&merge_peak, __ATOMIC_SEQ_CST);
    while (now > prev && !__atomic_compare_exchange_n(&merge_peak, &prev, now, false,
                                                      __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
        ;
    return 0;
}

static int merge_after(struct hc_io_req *req)
{
    struct mrec *m = (struct mrec *)req;
    m->after_calls++;
    __atomic_sub_fetch(&merge_in_flight, 1, __ATOMIC_SEQ_CST);
    return m->fail_after;
}

/* Holds the (only) I/O thread until the test has queued every read. */
static int merge_gate(struct hc_io_req *req)
{
    pthread_mutex_lock(&merge_gate_lock);
    pthread_mutex_unlock(&merge_gate_lock);
    return 0;
}

/* Many reads of two files submitted at once, shuffled: records of each file
 * lie back to back with gaps of 0..4095 bytes (so the THREADS engine merges
 * them), now and then a larger gap; the first file ends in the middle of a
 * record; some before() and after() hooks fail. Every read must see exactly
 * its bytes (none outside its buffer), every before() must run once and
 * after() once for the reads whose bytes all came in, and every done once
 * with the right result. _i is the number of I/O threads; with one thread the
 * queue is held until everything is in, so reads must have been merged. */
START_TEST(t_threads_merge_reads)
{
    unsigned nthreads = (unsigned)_i;
    struct hc_io_pool *pool = make_pool_engine(HC_IO_ENGINE_THREADS, nthreads, 4, 1ull << 30);
    static struct mrec m[MERGE_NREQ];
    int order[MERGE_NREQ];
    uint64_t fsize[2] = {0, 0}, end[2] = {0, 0};
    int fds[2] = {open_tmp("m0", O_RDWR | O_CREAT | O_TRUNC),
                  open_tmp("m1", O_RDWR | O_CREAT | O_TRUNC)};
    uint8_t *src[2], *bufs;
    size_t bufs_len = 0;
    struct rec gate = {.req = {.op = HC_IO_TASK, .fd = -1, .before = merge_gate, .done = rec_done}};

    memset(m, 0, sizeof(m));
    for (int i = 0; i < MERGE_NREQ; i++) {
        int f = (int)(rng() % 2);
        uint64_t gap = rng() % 10 == 0 ? 4096 + rng() % 20000 : rng() % 4096;
        m[i].file = f;
        m[i].off = end[f] + gap;
        m[i].len = 1 + rng() % 40000;
        end[f] = m[i].off + m[i].len;
        if (rng() % 25 == 0)
            m[i].fail_before = -EPERM;
        else if (rng() % 25 == 0)
            m[i].fail_after = -EBADMSG;
        bufs_len += m[i].len + MERGE_GUARD;
    }
    /* file 0 ends inside one of its records near the middle; file 1 holds
     * all of its records */
    for (int i = MERGE_NREQ / 2; i < MERGE_NREQ; i++) {
        if (m[i].file == 0 && m[i].len > 2) {
            fsize[0] = m[i].off + m[i].len / 2;
            break;
        }
    }
    ck_assert_uint_gt(fsize[0], 0);
    fsize[1] = end[1];
    for (int f = 0; f < 2; f++) {
        src[f] = malloc(fsize[f]);
        ck_assert_ptr_nonnull(src[f]);
        fill_pattern(src[f], fsize[f], 100 + (uint64_t)f);
        ck_assert_int_eq(pwrite(fds[f], src[f], fsize[f], 0), (ssize_t)fsize[f]);
    }
    bufs = malloc(bufs_len + MERGE_GUARD);
    ck_assert_ptr_nonnull(bufs);
    memset(bufs, 0xAA, bufs_len + MERGE_GUARD);
    size_t pos = MERGE_GUARD;
    for (int i = 0; i < MERGE_NREQ; i++) {
        m[i].buf = bufs + pos;
        pos += m[i].len + MERGE_GUARD;
        order[i] = i;
    }
    for (int i = MERGE_NREQ - 1; i > 0; i--) {
        int j = (int)(rng() % (uint64_t)(i + 1)), t = order[i];
        order[i] = order[j];
        order[j] = t;
    }

    merge_in_flight = merge_peak = 0;
    pthread_mutex_lock(&merge_gate_lock);
    if (nthreads == 1)
        hc_io_submit(pool, &gate.req);
    for (int k = 0; k < MERGE_NREQ; k++) {
        struct mrec *q = &m[order[k]];
        q->r.req.op = HC_IO_READ;
        q->r.req.prio = HC_IO_PRIO_HIGH;
        q->r.req.fd = fds[q->file];
        q->r.req.offset = q->off;
        split_iov(&q->r.req, q->buf, q->len);
        q->r.req.before = merge_before;
        q->r.req.after = merge_after;
        q->r.req.done = rec_done;
        hc_io_submit(pool, &q->r.req);
    }
    pthread_mutex_unlock(&merge_gate_lock);
    run_pool(pool);

    for (int i = 0; i < MERGE_NREQ; i++) {
        struct mrec *q = &m[i];
        bool whole = q->off + q->len <= fsize[q->file];
        ck_assert_uint_eq(q->r.done_calls, 1);
        ck_assert_uint_eq(q->before_calls, 1);
        if (q->fail_before) {
            ck_assert_int_eq(q->r.req.result, q->fail_before);
            ck_assert_uint_eq(q->after_calls, 0);
        } else if (!whole) {
            ck_assert_int_eq(q->r.req.result, -ENODATA);
            ck_assert_uint_eq(q->after_calls, 0);
        } else {
            ck_assert_uint_eq(q->after_calls, 1);
            ck_assert_int_eq(q->r.req.result, q->fail_after ? q->fail_after : (ssize_t)q->len);
            ck_assert_msg(memcmp(q->buf, src[q->file] + q->off, q->len) == 0,
                          "read %d (file %d, %" PRIu64 "+%zu) has wrong bytes", i, q->file, q->off,
                          q->len);
        }
        /* the guard after each buffer (and the one before the first) */
        for (int g = 0; g < MERGE_GUARD; g++)
            ck_assert_uint_eq(q->buf[q->len + (size_t)g], 0xAA);
    }
    for (int g = 0; g < MERGE_GUARD; g++)
        ck_assert_uint_eq(bufs[g], 0xAA);
    if (nthreads == 1) {
        ck_assert_uint_eq(gate.done_calls, 1);
        ck_assert_int_gt(merge_peak, 1); /* several reads were in one preadv */
    }
    ck_assert_uint_eq(hc_io_pool_inflight_bytes(pool), 0);
    hc_io_pool_destroy(pool);
    for (int f = 0; f < 2; f++) {
        close(fds[f]);
        free(src[f]);
    }
    free(bufs);
}
END_TEST

/* Back-to-back reads of one file held by the gate so that they merge: of a
 * file already unlinked (read through an open of its own, which must still
 * reach it), and of a write-only descriptor (each read fails on its own with
 * -EBADF). */
START_TEST(t_threads_merge_unlinked_and_badf)
{
    enum { N = 8, LEN = 64 << 10 };
    struct hc_io_pool *pool = make_pool_engine(HC_IO_ENGINE_THREADS, 1, 4, 1 << 30);
    int fd = open_tmp("gone", O_RDWR | O_CREAT | O_TRUNC);
    int wfd = open_tmp("wonly", O_WRONLY | O_CREAT | O_TRUNC);
    uint8_t *src = malloc((size_t)N * LEN), *dst = calloc(2 * N, LEN);
    struct rec r[2 * N];
    struct rec gate = {.req = {.op = HC_IO_TASK, .fd = -1, .before = merge_gate, .done = rec_done}};
    char path[400];

    ck_assert(src && dst);
    fill_pattern(src, (size_t)N * LEN, 21);
    ck_assert_int_eq(pwrite(fd, src, (size_t)N * LEN, 0), (ssize_t)N * LEN);
    ck_assert_int_eq(pwrite(wfd, src, (size_t)N * LEN, 0), (ssize_t)N * LEN);
    snprintf(path, sizeof(path), "%s/gone", tmpdir);
    ck_assert_int_eq(unlink(path), 0);
    memset(r, 0, sizeof(r));
    pthread_mutex_lock(&merge_gate_lock);
    hc_io_submit(pool, &gate.req);
    for (int i = 0; i < 2 * N; i++) {
        r[i].req.op = HC_IO_READ;
        r[i].req.fd = i < N ? fd : wfd;
        r[i].req.offset = (uint64_t)(i % N) * LEN;
        r[i].req.iov[0] = (struct iovec){dst + (size_t)i * LEN, LEN};
        r[i].req.iovcnt = 1;
        r[i].req.done = rec_done;
        hc_io_submit(pool, &r[i].req);
    }
    pthread_mutex_unlock(&merge_gate_lock);
    run_pool(pool);
    for (int i = 0; i < 2 * N; i++) {
        ck_assert_uint_eq(r[i].done_calls, 1);
        ck_assert_int_eq(r[i].req.result, i < N ? LEN : -EBADF);
    }
    ck_assert(memcmp(src, dst, (size_t)N * LEN) == 0);
    hc_io_pool_destroy(pool);
    close(fd);
    close(wfd);
    free(src);
    free(dst);
}
END_TEST

/* Reads of a pipe on one thread are never merged (a pipe has no offsets):
 * each gets its own bytes in order. */
START_TEST(t_threads_pipe_reads_not_merged)
{
    struct hc_io_pool *pool = make_pool_engine(HC_IO_ENGINE_THREADS, 1, 4, 1 << 20);
    int pfd[2];
    uint8_t data[3000], out[3][1000];
    struct rec r[3];
    struct rec gate = {.req = {.op = HC_IO_TASK, .fd = -1, .before = merge_gate, .done = rec_done}};

    ck_assert_int_eq(pipe(pfd), 0);
    fill_pattern(data, sizeof(data), 5);
    ck_assert_int_eq(write(pfd[1], data, sizeof(data)), (ssize_t)sizeof(data));
    memset(r, 0, sizeof(r));
    pthread_mutex_lock(&merge_gate_lock);
    hc_io_submit(pool, &gate.req);
    for (int i = 0; i < 3; i++) {
        r[i].req.op = HC_IO_READ;
        r[i].req.fd = pfd[0];
        r[i].req.offset = 0;
        r[i].req.iov[0] = (struct iovec){out[i], sizeof(out[i])};
        r[i].req.iovcnt = 1;
        r[i].req.done = rec_done;
        hc_io_submit(pool, &r[i].req);
    }
    pthread_mutex_unlock(&merge_gate_lock);
    run_pool(pool);
    for (int i = 0; i < 3; i++) {
        ck_assert_uint_eq(r[i].done_calls, 1);
        ck_assert_int_eq(r[i].req.result, 1000);
        ck_assert(memcmp(out[i], data + 1000 * i, 1000) == 0);
    }
    hc_io_pool_destroy(pool);
    close(pfd[0]);
    close(pfd[1]);
}
END_TEST

/* ---- THREADS engine: reads from the volume in one forward stream -------- */

/* Bytes this process has read through read system calls (rchar of
 * /proc/self/io: what preadv returned, not what the kernel read ahead). */
static uint64_t bytes_read_by_calls(void)
{
    char line[128];
    unsigned long long v = 0;
    FILE *f = fopen("/proc/self/io", "r");
    ck_assert_ptr_nonnull(f);
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "rchar: %llu", &v) == 1)
            break;
    fclose(f);
    return v;
}

/* A file name of size bytes of fill_pattern(seed), out of the page cache;
 * its bytes in *src (malloc'd). Returns its fd. */
static int cold_file(const char *name, uint64_t size, uint64_t seed, uint8_t **src)
{
    *src = malloc(size);
    ck_assert_ptr_nonnull(*src);
    fill_pattern(*src, size, seed);
    int fd = open_tmp(name, O_RDWR | O_CREAT | O_TRUNC);
    ck_assert_int_eq(pwrite(fd, *src, size, 0), (ssize_t)size);
    make_cold(fd, (off_t)size);
    return fd;
}

/* Queues reads (off, len) of fd on a one-thread THREADS pool in the order
 * given, behind a gate so that the thread sees them all at once, runs them,
 * and checks each read's bytes against src. With one thread, m[i].r.order
 * (the order of the done callbacks) is the order the runs were read in. */
static void gated_reads(int fd, const uint8_t *src, struct mrec *m, int n)
{
    struct hc_io_pool *pool = make_pool_engine(HC_IO_ENGINE_THREADS, 1, 4, 1ull << 30);
    struct rec gate = {.req = {.op = HC_IO_TASK, .fd = -1, .before = merge_gate, .done = rec_done}};

    pthread_mutex_lock(&merge_gate_lock);
    hc_io_submit(pool, &gate.req);
    for (int i = 0; i < n; i++) {
        m[i].r.req.op = HC_IO_READ;
        m[i].r.req.fd = fd;
        m[i].r.req.offset = m[i].off;
        if (m[i].sink) {
            m[i].r.req.sink = m[i].len;
        } else {
            m[i].buf = malloc(m[i].len);
            ck_assert_ptr_nonnull(m[i].buf);
            m[i].r.req.iov[0] = (struct iovec){m[i].buf, m[i].len};
            m[i].r.req.iovcnt = 1;
        }
        m[i].r.req.done = rec_done;
        ck_assert_int_eq(hc_io_submit(pool, &m[i].r.req), 0);
    }
    pthread_mutex_unlock(&merge_gate_lock);
    run_pool(pool);
    for (int i = 0; i < n; i++) {
        ck_assert_int_eq(m[i].r.req.result, (ssize_t)m[i].len);
        if (!m[i].sink)
            ck_assert(memcmp(m[i].buf, src + m[i].off, m[i].len) == 0);
        free(m[i].buf);
    }
    hc_io_pool_destroy(pool);
}

/* Reads of a file from the volume that a gap separates are read as one
 * stream with the gap (the gap into scratch, so into the page cache: the
 * pages between, other clients' on a shared segment, are then hot when asked
 * for), as long as the gap is shorter than what the stream read before it
 * and than FILL_GAP; a longer gap is not read. Counted in the bytes the
 * process's read calls returned. */
START_TEST(t_threads_gap_read_with_stream)
{
    uint64_t mib = 1u << 20;
    /* A [0, 4M), a 3 MiB gap (read), B 1 MiB, a 24 MiB gap (longer than
     * the stream and FILL_GAP: not read), C 1 MiB */
    uint64_t a_len = 4 * mib, gap = 3 * mib, b_off = a_len + gap, b_end = b_off + mib;
    uint64_t c_off = b_end + 24 * mib, size = c_off + mib;
    uint8_t *src;
    int fd = cold_file("gap", size, 31, &src);

    struct mrec m[3] = {
        {.off = 0, .len = a_len}, {.off = b_off, .len = mib}, {.off = c_off, .len = mib}};
    uint64_t before = bytes_read_by_calls();
    gated_reads(fd, src, m, 3);
    uint64_t got = bytes_read_by_calls() - before, want = a_len + gap + 2 * mib;
    /* (the pool's wake-ups read a few bytes of an eventfd too) */
    ck_assert_msg(got >= want && got < want + mib,
                  "read %" PRIu64 " bytes for %" PRIu64 " (the reads and the short gap)", got,
                  want);
    close(fd);
    free(src);
}
END_TEST

/* Whether the page cache holds every page of [off, off + len) of fd. */
static bool in_page_cache(int fd, uint64_t off, uint64_t len)
{
    size_t pages = (size_t)((len + 4095) / 4096);
    unsigned char *vec = malloc(pages);
    ck_assert_ptr_nonnull(vec);
    void *m = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, (off_t)off);
    ck_assert(m != MAP_FAILED);
    ck_assert_int_eq(mincore(m, len, vec), 0);
    munmap(m, len);
    bool all = true;
    for (size_t i = 0; i < pages; i++)
        all = all && (vec[i] & 1);
    free(vec);
    return all;
}

/* A read ahead (hc_io_req.sink: a client's later pages) reads its range into
 * the page cache, as part of the stream of the file's other reads (the reads
 * around it keep their bytes); one of a range the page cache holds reads
 * nothing; one past the end of the file ends with -ENODATA. Counted in the
 * bytes the process's read calls returned. */
START_TEST(t_threads_read_ahead)
{
    uint64_t mib = 1u << 20, size = 16 * mib;
    uint8_t *src;
    int fd = cold_file("ahead", size, 33, &src);

    /* a read of [0, 2M), a read ahead of [2M, 6M), a read of [6M, 7M) queued
     * first; [8M, 16M) left alone */
    struct mrec m[3] = {{.off = 6 * mib, .len = mib},
                        {.off = 2 * mib, .len = 4 * mib, .sink = true},
                        {.off = 0, .len = 2 * mib}};
    uint64_t before = bytes_read_by_calls();
    gated_reads(fd, src, m, 3);
    uint64_t got = bytes_read_by_calls() - before;
    ck_assert_msg(got >= 7 * mib && got < 8 * mib, "read %" PRIu64 " bytes for 7 MiB", got);
    ck_assert(in_page_cache(fd, 2 * mib, 4 * mib));
    ck_assert(!in_page_cache(fd, 12 * mib, mib));
    /* the three in one forward stream, in offset order */
    ck_assert_int_lt(m[2].r.order, m[1].r.order);
    ck_assert_int_lt(m[1].r.order, m[0].r.order);

    /* again, cached now: nothing read */
    struct mrec again = {.off = 2 * mib, .len = 4 * mib, .sink = true};
    before = bytes_read_by_calls();
    gated_reads(fd, src, &again, 1);
    got = bytes_read_by_calls() - before;
    ck_assert_msg(got < mib, "read %" PRIu64 " bytes of a cached range", got);

    /* past the end of the file */
    struct hc_io_pool *pool = make_pool_engine(HC_IO_ENGINE_THREADS, 1, 4, 1ull << 30);
    struct rec past = {
        .req = {
            .op = HC_IO_READ, .fd = fd, .offset = size - 4096, .sink = 2 * 4096, .done = rec_done}};
    ck_assert_int_eq(hc_io_submit(pool, &past.req), 0);
    run_pool(pool);
    ck_assert_int_eq(past.req.result, -ENODATA);
    hc_io_pool_destroy(pool);
    close(fd);
    free(src);
}
END_TEST

/* Queued reads of a file from the volume start with the lowest offset, not
 * with whichever was queued first: one forward stream a file (JuiceFS reads
 * ahead of a stream and drops what a jump back leaves behind; without a local
 * cache the blocks are downloaded again). */
START_TEST(t_threads_lowest_offset_first)
{
    uint8_t *src;
    int fd = cold_file("order", 40u << 20, 32, &src);

    /* queued: 30 MiB first, then 0; 29 MiB apart, too far to merge */
    struct mrec m[2] = {{.off = 30u << 20, .len = 1u << 20}, {.off = 0, .len = 1u << 20}};
    gated_reads(fd, src, m, 2);
    ck_assert_int_lt(m[1].r.order, m[0].r.order);
    close(fd);
    free(src);
}
END_TEST

static Suite *io_suite(void)
{
    Suite *s = suite_create("io");
    TCase *tc = tcase_create("pool");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    /* each test once per engine: _i is the enum hc_io_engine */
    tcase_add_loop_test(tc, t_many_mixed, HC_IO_ENGINE_URING, HC_IO_ENGINE_THREADS + 1);
    tcase_add_loop_test(tc, t_read_past_eof, HC_IO_ENGINE_URING, HC_IO_ENGINE_THREADS + 1);
    tcase_add_loop_test(tc, t_short_write_socket, HC_IO_ENGINE_URING, HC_IO_ENGINE_THREADS + 1);
    tcase_add_loop_test(tc, t_short_read_pipe, HC_IO_ENGINE_URING, HC_IO_ENGINE_THREADS + 1);
    tcase_add_loop_test(tc, t_gathered_write, HC_IO_ENGINE_URING, HC_IO_ENGINE_THREADS + 1);
    tcase_add_loop_test(tc, t_before_error_skips_io, HC_IO_ENGINE_URING, HC_IO_ENGINE_THREADS + 1);
    tcase_add_loop_test(tc, t_after_result, HC_IO_ENGINE_URING, HC_IO_ENGINE_THREADS + 1);
    tcase_add_loop_test(tc, t_task, HC_IO_ENGINE_URING, HC_IO_ENGINE_THREADS + 1);
    tcase_add_loop_test(tc, t_inflight_bound, HC_IO_ENGINE_URING, HC_IO_ENGINE_THREADS + 1);
    tcase_add_loop_test(tc, t_high_before_low, HC_IO_ENGINE_URING, HC_IO_ENGINE_THREADS + 1);
    tcase_add_loop_test(tc, t_low_not_starved, HC_IO_ENGINE_URING, HC_IO_ENGINE_THREADS + 1);
    tcase_add_loop_test(tc, t_destroy_runs_every_done, HC_IO_ENGINE_URING,
                        HC_IO_ENGINE_THREADS + 1);
    tcase_add_loop_test(tc, t_bad_fd, HC_IO_ENGINE_URING, HC_IO_ENGINE_THREADS + 1);
    tcase_add_loop_test(tc, t_bad_args, HC_IO_ENGINE_URING, HC_IO_ENGINE_THREADS + 1);
    tcase_add_test(tc, t_threads_concurrent_reads);
    tcase_add_test(tc, t_threads_one_file_at_a_time);
    tcase_add_test(tc, t_threads_cached_file_in_parallel);
    tcase_add_test(tc, t_threads_cached_reads_mapped);
    /* _i: I/O threads */
    tcase_add_loop_test(tc, t_threads_merge_reads, 1, 4);
    tcase_add_test(tc, t_threads_pipe_reads_not_merged);
    tcase_add_test(tc, t_threads_merge_unlinked_and_badf);
    tcase_add_test(tc, t_threads_gap_read_with_stream);
    tcase_add_test(tc, t_threads_lowest_offset_first);
    tcase_add_test(tc, t_threads_read_ahead);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    struct io_uring ring;
    int rc = io_uring_queue_init(4, &ring, 0);
    if (rc < 0) {
        fprintf(stderr, "io_uring unavailable (%s): skipping\n", strerror(-rc));
        return 77;
    }
    io_uring_queue_exit(&ring);

    SRunner *sr = srunner_create(io_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
