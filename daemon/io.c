/* I/O pool: admission and completion, whichever the engine (see io.h for
 * the contract, io_int.h for the structures; the engines are io_uring.c and
 * io_threads.c).
 *
 * Flow of a request:
 *   loop thread   hc_io_submit (bad input refused here) -> wait queue (HIGH
 *                 or LOW) -> admit (HIGH first, a waiting LOW after
 *                 HIGH_BURST HIGH in a row, within max_inflight_bytes) ->
 *                 the engine's dispatch (a read ahead, hc_io_req.sink: at
 *                 once, outside the bound)
 *   I/O thread    the engine runs before(), the transfer (short ones again)
 *                 and after() with the helpers below; finished requests go
 *                 onto the pool's completion list (mutex), wake(wake_arg)
 *                 when it was empty
 *   loop thread   hc_io_pool_drain: swap the completion list out, update the
 *                 accounting, admit waiting requests, run done().
 *
 * Thread rule: the accounting (pending, inflight_*, sinks, wait queues,
 * high_streak) and a request's waiting flag are touched by the loop thread
 * only; the functions under "I/O thread" below run on I/O threads and touch
 * only the request they hold, the completion list under done_lock, and wake
 * (set at create). */
#include "io_int.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Waiting HIGH requests go first, but after this many HIGH admissions in a row
 * while LOW requests wait, the oldest LOW request goes next: a steady read load
 * slows writes down, it cannot stop them. */
#define HIGH_BURST 4

/* ---- I/O thread: shared by both engines (declared in io_int.h) ---------- */

/* Called on an I/O thread (see io_int.h), or on the loop thread for a task
 * with no work (hc_io_submit). */
void hc__io_finish_flush(struct hc_io_pool *pool, struct req_list *fin)
{
    bool was_empty;

    if (!fin->head)
        return;
    pthread_mutex_lock(&pool->done_lock);
    was_empty = pool->done.head == NULL;
    list_splice(&pool->done, fin);
    pthread_cond_broadcast(&pool->done_cond);
    pthread_mutex_unlock(&pool->done_lock);
    if (was_empty && pool->wake)
        pool->wake(pool->wake_arg);
}

/* Called on an I/O thread (see io_int.h). */
void hc__io_complete_whole(struct hc_io_req *req)
{
    int rc = req->after ? req->after(req) : 0;
    req->result = rc < 0 ? (ssize_t)rc : (ssize_t)req->total;
}

/* Called on an I/O thread (see io_int.h). */
bool hc__io_start_req(struct hc_io_req *req)
{
    int rc;

    rc = req->before ? req->before(req) : 0;
    if (rc < 0) {
        req->result = rc;
        return true;
    }
    if (req->op == HC_IO_TASK) {
        rc = req->after ? req->after(req) : 0;
        req->result = rc < 0 ? rc : 0;
        return true;
    }
    if (req->total == 0) {
        hc__io_complete_whole(req);
        return true;
    }
    return false;
}

/* Called on an I/O thread (see io_int.h). */
void hc__io_advance(struct hc_io_req *req, size_t n)
{
    int i = 0;

    req->xferred += n;
    while (n > 0 && i < req->curcnt) {
        if (n >= req->cur[i].iov_len) {
            n -= req->cur[i].iov_len;
            i++;
        } else {
            req->cur[i].iov_base = (char *)req->cur[i].iov_base + n;
            req->cur[i].iov_len -= n;
            n = 0;
        }
    }
    if (i > 0) {
        memmove(req->cur, req->cur + i, (size_t)(req->curcnt - i) * sizeof(req->cur[0]));
        req->curcnt -= i;
    }
}

/* Called on an I/O thread (see io_int.h). */
bool hc__io_handle_xfer(struct hc_io_req *req, ssize_t res)
{
    size_t left = req->total - req->xferred;

    if (res == -EAGAIN || res == -EINTR)
        return false;
    if (res < 0) {
        /* -ECANCELED included: the ring cancelled it, report it as such */
        req->result = res;
        return true;
    }
    if (res == 0) {
        /* A read at end of file. A write of nothing would loop forever: the
         * kernel could not take a byte from the buffers (seen when a page of
         * a client's host pool vanished under an io_uring write), so EFAULT. */
        req->result = req->op == HC_IO_READ ? -ENODATA : -EFAULT;
        return true;
    }
    if ((size_t)res > left) {
        req->result = -EIO; /* the kernel never does this */
        return true;
    }
    hc__io_advance(req, (size_t)res);
    if (req->xferred < req->total)
        return false;
    hc__io_complete_whole(req);
    return true;
}

/* Called on an I/O thread (see io.h). */
int hc_io_reopen(int fd)
{
    char path[64];
    struct stat st;
    int fl = fcntl(fd, F_GETFL);

    if (fl < 0 || (fl & O_ACCMODE) == O_WRONLY || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
        return -1;
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    /* read-only whatever fd is: a JuiceFS handle open for writing joins the
     * file's writer, and its close (FUSE flush) commits the buffered writes
     * of the open segment */
    return open(path, O_RDONLY | (fl & O_DIRECT) | O_CLOEXEC | O_NOCTTY);
}

/* ---- loop thread: admission and completion ----------------------------- */

/* Loop thread. Counts req in flight and hands it to an I/O thread: URING the
 * least-loaded one, THREADS whichever takes it first from the shared queue. */
static void dispatch(struct hc_io_pool *pool, struct hc_io_req *req)
{
    pool->inflight++;
    pool->inflight_bytes += req->sink ? 0 : req->total;
    pool->sinks += req->sink != 0;
    if (pool->cfg.engine == HC_IO_ENGINE_THREADS)
        hc__sync_dispatch(pool, req);
    else
        hc__ring_dispatch(pool, req);
}

/* Loop thread. Admits waiting requests while the bytes in flight stay within
 * the bound (one request is always admitted when nothing but reads ahead is
 * in flight): HIGH
 * before LOW, except that after HIGH_BURST HIGH admissions in a row while LOW
 * requests wait, the next one is LOW. Stops at the first that does not fit, so
 * the one chosen is never overtaken. */
static void admit(struct hc_io_pool *pool)
{
    for (;;) {
        struct req_list *high = &pool->wait[HC_IO_PRIO_HIGH], *low = &pool->wait[HC_IO_PRIO_LOW];
        bool take_high = high->head && (!low->head || pool->high_streak < HIGH_BURST);
        struct req_list *q = take_high ? high : low;
        struct hc_io_req *req = q->head;
        if (!req)
            return;
        if (pool->inflight > pool->sinks &&
            (req->total > pool->cfg.max_inflight_bytes ||
             pool->inflight_bytes > pool->cfg.max_inflight_bytes - req->total))
            return;
        if (take_high && low->head)
            pool->high_streak++;
        else
            pool->high_streak = 0;
        req = list_pop(q);
        req->waiting = false;
        dispatch(pool, req);
    }
}

/* The sum of req's iov lengths in *total. Returns 0, or -EINVAL for a
 * request the pool cannot run: an unknown op or prio, no done callback, and
 * for a read or write an iovcnt outside [0, HC_IO_MAX_IOV] (an iovxcnt
 * outside [1, HC_IO_MAX_IOVX] with iovx), lengths whose sum overflows ssize_t,
 * or an offset beyond INT64_MAX; a read ahead (sink) with buffers or of more
 * than HC_IO_SINK_MAX bytes. */
static int req_check(const struct hc_io_req *req, size_t *total)
{
    size_t sum = 0;

    if (!req->done || (req->prio != HC_IO_PRIO_HIGH && req->prio != HC_IO_PRIO_LOW))
        return -EINVAL;
    if (req->op == HC_IO_TASK) {
        *total = 0;
        return 0;
    }
    if (req->sink) {
        if (req->op != HC_IO_READ || req->iovx || req->iovcnt != 0 || req->sink > HC_IO_SINK_MAX ||
            req->offset > (uint64_t)INT64_MAX)
            return -EINVAL;
        *total = (size_t)req->sink;
        return 0;
    }
    const struct iovec *iov = req->iovx ? req->iovx : req->iov;
    int cnt = req->iovx ? req->iovxcnt : req->iovcnt;
    if ((req->op != HC_IO_READ && req->op != HC_IO_WRITE) || req->offset > (uint64_t)INT64_MAX)
        return -EINVAL;
    if (req->iovx ? cnt < 1 || cnt > HC_IO_MAX_IOVX : cnt < 0 || cnt > HC_IO_MAX_IOV)
        return -EINVAL;
    for (int i = 0; i < cnt; i++) {
        if (iov[i].iov_len > (size_t)SSIZE_MAX - sum)
            return -EINVAL;
        sum += iov[i].iov_len;
    }
    if (req->crc_len &&
        (req->op != HC_IO_READ || req->crc_from > sum || req->crc_len > sum - req->crc_from))
        return -EINVAL;
    *total = sum;
    return 0;
}

int hc_io_submit(struct hc_io_pool *pool, struct hc_io_req *req)
{
    size_t total;

    if (!pool || !req || req_check(req, &total) < 0 ||
        (req->sink && pool->cfg.engine != HC_IO_ENGINE_THREADS))
        return -EINVAL;
    req->result = 0;
    req->crc_done = false;
    req->next = NULL;
    req->waiting = false;
    req->xferred = 0;
    req->total = total;
    req->cur = req->inl;
    req->curcnt = 0;
    if (req->op != HC_IO_TASK && req->iovx) {
        req->cur = req->iovx; /* empty entries in it are stepped over by the kernel */
        req->curcnt = req->iovxcnt;
    } else if (req->op != HC_IO_TASK) {
        for (int i = 0; i < req->iovcnt; i++)
            if (req->iov[i].iov_len > 0)
                req->inl[req->curcnt++] = req->iov[i];
    }

    pool->pending++;
    if (req->op == HC_IO_TASK && !req->before && !req->after) {
        /* No work for an I/O thread: straight to the completion list (done
         * still runs from hc_io_pool_drain, never in here), so that it never
         * waits behind threads blocked on the mount. */
        struct req_list one = {NULL, NULL};

        pool->inflight++;
        list_push(&one, req);
        hc__io_finish_flush(pool, &one);
        return 0;
    }
    if (req->sink) { /* no buffer to bound: queued with the reads around it */
        dispatch(pool, req);
        return 0;
    }
    req->waiting = true;
    list_push(&pool->wait[req->prio], req);
    admit(pool);
    return req->waiting ? HC_IO_WAITING : 0;
}

bool hc_io_waiting(const struct hc_io_req *req)
{
    return req->waiting;
}

unsigned hc_io_pool_drain(struct hc_io_pool *pool)
{
    struct req_list list;
    struct hc_io_req *req;
    unsigned n = 0;

    pthread_mutex_lock(&pool->done_lock);
    list = pool->done;
    pool->done.head = pool->done.tail = NULL;
    pthread_mutex_unlock(&pool->done_lock);

    /* The I/O of the whole batch is over: free its room and admit waiting
     * requests before the done callbacks run (they may submit more). */
    for (req = list.head; req; req = req->next) {
        pool->inflight--;
        pool->inflight_bytes -= req->sink ? 0 : req->total;
        pool->sinks -= req->sink != 0;
    }
    admit(pool);
    while ((req = list_pop(&list))) {
        pool->pending--;
        req->done(req); /* req belongs to the submitter now */
        n++;
    }
    return n;
}

unsigned hc_io_pool_pending(const struct hc_io_pool *pool)
{
    return pool->pending;
}

/* Any thread (io.h). */
void hc_io_pool_map_stats(const struct hc_io_pool *pool, struct hc_io_map_stats *out)
{
    out->bytes = __atomic_load_n(&pool->map_bytes, __ATOMIC_RELAXED);
    out->grows = __atomic_load_n(&pool->map_grows, __ATOMIC_RELAXED);
    out->faults = __atomic_load_n(&pool->map_faults, __ATOMIC_RELAXED);
}

uint64_t hc_io_pool_inflight_bytes(const struct hc_io_pool *pool)
{
    return pool->inflight_bytes;
}

/* Loop thread. Stops and joins the started threads, then releases every
 * per-thread resource that was set up. */
static void threads_teardown(struct hc_io_pool *pool)
{
    hc__sync_threads_stop(pool);
    hc__ring_threads_stop(pool);
    for (unsigned i = 0; i < pool->nthreads; i++) {
        struct io_thread *t = &pool->threads[i];
        if (t->started)
            pthread_join(t->tid, NULL);
        hc__ring_thread_release(t);
    }
}

/* Initializes the pool's own locks and condition variables. Returns 0 or
 * -errno, with none of them left initialized. */
static int pool_sync_init(struct hc_io_pool *pool)
{
    int rc;

    rc = -pthread_mutex_init(&pool->done_lock, NULL);
    if (rc < 0)
        return rc;
    rc = -pthread_cond_init(&pool->done_cond, NULL);
    if (rc < 0)
        goto err_done_lock;
    rc = -pthread_mutex_init(&pool->q_lock, NULL);
    if (rc < 0)
        goto err_done_cond;
    rc = -pthread_mutex_init(&pool->h_lock, NULL);
    if (rc < 0)
        goto err_q_lock;
    rc = -pthread_cond_init(&pool->h_cond, NULL);
    if (rc < 0)
        goto err_h_lock_only;
    for (unsigned i = 0; i < HC_HELD_MAX; i++)
        pool->held[i].rfd = -1;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    pool->cpu_cap = ncpu > 0 ? (unsigned)ncpu : 1;
    /* monotonic: I/O threads wait on it with a timeout (io_threads.c) */
    pthread_condattr_t ca;
    rc = -pthread_condattr_init(&ca);
    if (rc < 0)
        goto err_h_lock;
    rc = -pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    if (rc == 0)
        rc = -pthread_cond_init(&pool->q_cond, &ca);
    pthread_condattr_destroy(&ca);
    if (rc < 0)
        goto err_h_lock;
    return 0;

err_h_lock:
    pthread_cond_destroy(&pool->h_cond);
err_h_lock_only:
    pthread_mutex_destroy(&pool->h_lock);
err_q_lock:
    pthread_mutex_destroy(&pool->q_lock);
err_done_cond:
    pthread_cond_destroy(&pool->done_cond);
err_done_lock:
    pthread_mutex_destroy(&pool->done_lock);
    return rc;
}

static void pool_sync_destroy(struct hc_io_pool *pool)
{
    pthread_cond_destroy(&pool->q_cond);
    pthread_cond_destroy(&pool->h_cond);
    pthread_mutex_destroy(&pool->h_lock);
    pthread_mutex_destroy(&pool->q_lock);
    pthread_cond_destroy(&pool->done_cond);
    pthread_mutex_destroy(&pool->done_lock);
}

int hc_io_pool_create(struct hc_io_pool **out, const struct hc_io_config *cfg,
                      void (*wake)(void *arg), void *wake_arg)
{
    struct hc_io_pool *pool;
    void *(*thread_main)(void *);
    sigset_t all, old;
    int rc;

    if (!out || !cfg || cfg->threads < 1 || cfg->queue_depth < 4 || cfg->max_inflight_bytes < 1 ||
        (cfg->engine != HC_IO_ENGINE_URING && cfg->engine != HC_IO_ENGINE_THREADS))
        return -EINVAL;
    thread_main = cfg->engine == HC_IO_ENGINE_THREADS ? hc__sync_thread_main : hc__ring_thread_main;
    pool = calloc(1, sizeof(*pool));
    if (!pool)
        return -ENOMEM;
    pool->cfg = *cfg;
    pool->wake = wake;
    pool->wake_arg = wake_arg;
    rc = pool_sync_init(pool);
    if (rc < 0) {
        free(pool);
        return rc;
    }
    pool->threads = calloc(cfg->threads, sizeof(*pool->threads));
    if (!pool->threads) {
        rc = -ENOMEM;
        goto err;
    }
    pool->nthreads = cfg->threads;
    for (unsigned i = 0; i < pool->nthreads; i++) {
        pool->threads[i].pool = pool;
        pool->threads[i].efd = -1;
    }
    if (cfg->engine == HC_IO_ENGINE_URING) {
        for (unsigned i = 0; i < pool->nthreads; i++) {
            rc = hc__ring_thread_init(&pool->threads[i], cfg->queue_depth);
            if (rc < 0)
                goto err;
        }
    }

    /* Threads inherit the signal mask: block everything so SIGTERM and
     * friends are delivered to the main thread; not SIGBUS, which the guard
     * of their CPU passes over client memory catches (guard.h). */
    sigfillset(&all);
    sigdelset(&all, SIGBUS);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    for (unsigned i = 0; i < pool->nthreads; i++) {
        struct io_thread *t = &pool->threads[i];
        rc = -pthread_create(&t->tid, NULL, thread_main, t);
        if (rc < 0)
            break;
        t->started = true;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc < 0)
        goto err;

    *out = pool;
    return 0;

err:
    if (pool->threads) {
        threads_teardown(pool);
        free(pool->threads);
    }
    pool_sync_destroy(pool);
    free(pool);
    return rc;
}

void hc_io_pool_destroy(struct hc_io_pool *pool)
{
    if (!pool)
        return;
    for (;;) {
        hc_io_pool_drain(pool);
        if (pool->pending == 0)
            break;
        pthread_mutex_lock(&pool->done_lock);
        while (!pool->done.head)
            pthread_cond_wait(&pool->done_cond, &pool->done_lock);
        pthread_mutex_unlock(&pool->done_lock);
    }
    threads_teardown(pool);
    free(pool->threads);
    pool_sync_destroy(pool);
    free(pool);
}
