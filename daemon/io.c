/* I/O pool: I/O threads with an io_uring each, or doing blocking
 * preadv/pwritev (see io.h for the contract).
 *
 * Flow of a request:
 *   loop thread   hc_io_submit -> wait queue (HIGH or LOW) -> admit (HIGH
 *                 first, a waiting LOW after HIGH_BURST HIGH in a row) ->
 *                 URING: the least-loaded thread's submission queue (mutex)
 *                 + eventfd write; THREADS: the pool's shared queue (mutex)
 *                 + condition variable signal
 *   I/O thread    URING: take the queue, run before(), prep one SQE per
 *                 request, one submit, wait for one CQE, drain the rest with
 *                 peek; short transfers go back on the thread's ready list.
 *                 THREADS: take one request (a read: with the queued reads
 *                 of the same file that continue it, up to 64 MiB), run
 *                 before() of each, preadv/pwritev until the whole length is
 *                 done (or an error); a run of reads goes through an open
 *                 file of the thread's own, 8 MiB a preadv.
 *                 Either: finished requests go onto the pool's completion
 *                 list (mutex), wake(wake_arg) when it was empty
 *   loop thread   hc_io_pool_drain: swap the completion list out, update the
 *                 accounting, run done(), admit waiting requests.
 *
 * Accounting (pending, inflight_*, wait queues) is touched by the loop thread
 * only; the per-thread load counter (URING) is the one thing I/O threads
 * change, so it is atomic. */
#include "io.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <liburing.h>

/* Waiting HIGH requests go first, but after this many HIGH admissions in a row
 * while LOW requests wait, the oldest LOW request goes next: a steady read load
 * slows writes down, it cannot stop them. */
#define HIGH_BURST 4

struct req_list {
    struct hc_io_req *head;
    struct hc_io_req *tail;
};

/* One I/O thread. With HC_IO_ENGINE_THREADS only pool, tid and started are
 * used: the threads share the pool's queue. */
struct io_thread {
    struct hc_io_pool *pool;
    pthread_t tid;
    struct io_uring ring;
    int efd; /* eventfd: written when the submission queue becomes non-empty */

    pthread_mutex_t lock; /* guards queue and stop */
    struct req_list queue;
    bool stop;

    unsigned load; /* requests given to this thread and not finished (atomic) */

    bool ring_ok;
    bool lock_ok;
    bool started;
};

struct hc_io_pool {
    struct hc_io_config cfg;
    void (*wake)(void *arg);
    void *wake_arg;
    struct io_thread *threads;
    unsigned nthreads;

    /* completion list: filled by I/O threads, emptied by the loop thread */
    pthread_mutex_t done_lock;
    pthread_cond_t done_cond; /* signalled with each push, for destroy */
    struct req_list done;

    /* HC_IO_ENGINE_THREADS: the queue every thread takes requests from */
    pthread_mutex_t q_lock; /* guards q and q_stop */
    pthread_cond_t q_cond;  /* signalled with each push, broadcast at stop */
    struct req_list q;
    bool q_stop;

    /* loop thread only */
    struct req_list wait[2]; /* indexed by enum hc_io_prio */
    unsigned pending;        /* submitted, done not yet run */
    unsigned inflight;       /* admitted to a thread, done not yet run */
    uint64_t inflight_bytes; /* sum of total over the admitted requests */
    unsigned next_thread;    /* round-robin start for the least-loaded pick */
    unsigned high_streak;    /* HIGH admissions in a row while LOW waited */
};

static void list_push(struct req_list *l, struct hc_io_req *req)
{
    req->next = NULL;
    if (l->tail)
        l->tail->next = req;
    else
        l->head = req;
    l->tail = req;
}

static void list_push_front(struct req_list *l, struct hc_io_req *req)
{
    req->next = l->head;
    l->head = req;
    if (!l->tail)
        l->tail = req;
}

static struct hc_io_req *list_pop(struct req_list *l)
{
    struct hc_io_req *req = l->head;
    if (req) {
        l->head = req->next;
        if (!l->head)
            l->tail = NULL;
        req->next = NULL;
    }
    return req;
}

/* Appends all of src to dst and empties src. */
static void list_splice(struct req_list *dst, struct req_list *src)
{
    if (!src->head)
        return;
    if (dst->tail)
        dst->tail->next = src->head;
    else
        dst->head = src->head;
    dst->tail = src->tail;
    src->head = src->tail = NULL;
}

static void efd_signal(int efd)
{
    uint64_t one = 1;
    ssize_t n;
    do {
        n = write(efd, &one, sizeof(one));
    } while (n < 0 && errno == EINTR);
    /* EAGAIN only if the counter is near 2^64: the thread is awake anyway. */
}

static void efd_clear(int efd)
{
    uint64_t v;
    ssize_t n;
    do {
        n = read(efd, &v, sizeof(v));
    } while (n < 0 && errno == EINTR);
}

/* ---- I/O thread side ---------------------------------------------------- */

/* Called on an I/O thread (or on the loop thread, for a task with no work).
 * Pushes the finished requests in fin onto the pool's completion list with
 * one lock, and wakes the loop thread if that list was empty. */
static void finish_flush(struct hc_io_pool *pool, struct req_list *fin)
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

/* Called on an I/O thread once the whole length is done: runs after() and
 * sets result. */
static void complete_whole(struct hc_io_req *req)
{
    int rc = req->after ? req->after(req) : 0;
    req->result = rc < 0 ? (ssize_t)rc : (ssize_t)req->total;
}

/* Called on an I/O thread for a request just taken from the queue. Returns
 * true if it is finished already (before() failed, a task, nothing to
 * transfer, or bad arguments), with result set. */
static bool start_req(struct hc_io_req *req)
{
    int rc;

    if (req->op != HC_IO_READ && req->op != HC_IO_WRITE && req->op != HC_IO_TASK) {
        req->result = -EINVAL;
        return true;
    }
    if (req->op != HC_IO_TASK && (req->curcnt < 0 || req->offset > (uint64_t)INT64_MAX)) {
        /* curcnt < 0 marks bad iov arguments found at submit */
        req->result = -EINVAL;
        return true;
    }
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
        complete_whole(req);
        return true;
    }
    return false;
}

/* Pipes and sockets have no file position: the kernel refuses any offset but
 * the one the submitter gave (0), so a resubmission must not advance it. */
static bool is_stream(int fd)
{
    struct stat st;
    return fstat(fd, &st) == 0 && (S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode));
}

/* Called on an I/O thread: one SQE for what is left of req. The fstat only
 * runs for resubmissions, which are rare on regular files. */
static void prep_req(struct io_uring_sqe *sqe, struct hc_io_req *req)
{
    uint64_t off = req->offset;
    if (req->xferred > 0 && !is_stream(req->fd))
        off += req->xferred;
    if (req->op == HC_IO_READ)
        io_uring_prep_readv(sqe, req->fd, req->cur, (unsigned)req->curcnt, off);
    else
        io_uring_prep_writev(sqe, req->fd, req->cur, (unsigned)req->curcnt, off);
    io_uring_sqe_set_data(sqe, req);
}

/* Advances cur[]/curcnt/xferred past n transferred bytes (n <= remaining). */
static void advance(struct hc_io_req *req, size_t n)
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

/* Called on an I/O thread with the outcome of one transfer of what is left of
 * req (bytes, or -errno): a CQE's res, or what preadv/pwritev returned.
 * Returns true if req is finished (result set), false if what is left must be
 * transferred again. */
static bool handle_xfer(struct hc_io_req *req, ssize_t res)
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
        /* A read at end of file. A write of nothing would loop forever. */
        req->result = req->op == HC_IO_READ ? -ENODATA : -EIO;
        return true;
    }
    if ((size_t)res > left) {
        req->result = -EIO; /* the kernel never does this */
        return true;
    }
    advance(req, (size_t)res);
    if (req->xferred < req->total)
        return false;
    complete_whole(req);
    return true;
}

/* Called on a URING I/O thread: pushes what it finished, counting it off its
 * load. */
static void ring_finish(struct io_thread *t, struct req_list *fin, unsigned nfin)
{
    if (!fin->head)
        return;
    __atomic_sub_fetch(&t->load, nfin, __ATOMIC_RELAXED);
    finish_flush(t->pool, fin);
}

/* The thread of HC_IO_ENGINE_URING. */
static void *ring_thread_main(void *arg)
{
    struct io_thread *t = arg;
    struct io_uring *ring = &t->ring;
    struct req_list ready = {0}, fin = {0}, taken;
    unsigned nfin = 0;
    unsigned depth = t->pool->cfg.queue_depth;
    unsigned inring = 0; /* request SQEs submitted whose CQE has not come back */
    bool poll_armed = false, stop;

    for (;;) {
        struct hc_io_req *req;
        struct io_uring_cqe *cqe;
        unsigned prepped = 0;
        int ret;

        pthread_mutex_lock(&t->lock);
        taken = t->queue;
        t->queue.head = t->queue.tail = NULL;
        stop = t->stop;
        pthread_mutex_unlock(&t->lock);

        while ((req = list_pop(&taken))) {
            if (start_req(req)) {
                list_push(&fin, req);
                nfin++;
            } else {
                list_push(&ready, req);
            }
        }

        if (stop && inring == 0 && !ready.head) {
            ring_finish(t, &fin, nfin);
            break;
        }

        /* The poll on the eventfd comes first so new work always wakes us;
         * the ring holds at most depth operations so the CQ never overflows. */
        if (!poll_armed) {
            struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
            if (sqe) {
                io_uring_prep_poll_add(sqe, t->efd, POLLIN);
                io_uring_sqe_set_data(sqe, NULL);
                poll_armed = true;
                prepped++;
            }
        }
        while (ready.head && inring + 1 < depth) {
            struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
            if (!sqe)
                break; /* SQ full: the rest waits for the next round */
            prep_req(sqe, list_pop(&ready));
            inring++;
            prepped++;
        }

        /* Finished requests must not sit here while we sleep. */
        ring_finish(t, &fin, nfin);
        nfin = 0;

        ret = io_uring_submit_and_wait(ring, 1);
        if (ret < 0 && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY) {
            /* Unexpected: the SQEs stay in the SQ and go with the next
             * submit; do not spin on a persistent error. */
            usleep(1000);
        }

        while (io_uring_peek_cqe(ring, &cqe) == 0) {
            req = io_uring_cqe_get_data(cqe);
            int res = cqe->res;
            io_uring_cqe_seen(ring, cqe);
            if (!req) {
                /* the eventfd poll fired (or failed): clear it before the
                 * next queue take, then re-arm */
                if (res > 0)
                    efd_clear(t->efd);
                poll_armed = false;
                continue;
            }
            inring--;
            if (handle_xfer(req, res)) {
                list_push(&fin, req);
                nfin++;
            } else {
                /* short transfer or retry: first in line next round */
                list_push_front(&ready, req);
            }
        }
    }
    return NULL;
}

/* Called on a THREADS I/O thread: transfers what is left of req with blocking
 * calls until handle_xfer says it is finished. Pipes and sockets refuse
 * preadv/pwritev (-ESPIPE): they get readv/writev. A descriptor in
 * non-blocking mode that is not ready is waited for with poll. */
static void sync_xfer(struct hc_io_req *req)
{
    bool stream = false;

    for (;;) {
        bool rd = req->op == HC_IO_READ;
        ssize_t n;

        if (stream)
            n = rd ? readv(req->fd, req->cur, req->curcnt) : writev(req->fd, req->cur, req->curcnt);
        else if (rd)
            n = preadv(req->fd, req->cur, req->curcnt, (off_t)(req->offset + req->xferred));
        else
            n = pwritev(req->fd, req->cur, req->curcnt, (off_t)(req->offset + req->xferred));
        if (n < 0 && errno == ESPIPE && !stream) {
            stream = true;
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            struct pollfd pfd = {.fd = req->fd, .events = rd ? POLLIN : POLLOUT};
            (void)poll(&pfd, 1, 100); /* bounded: a missed edge only costs 100 ms */
        }
        if (handle_xfer(req, n < 0 ? -errno : n))
            return;
    }
}

/* Reads a THREADS thread takes in one go (a run): queued reads of one file
 * that lie back to back, at most MERGE_MAX_BYTES (gaps included) and
 * MERGE_MAX_REQS requests. The thread reads a run through an open file of its
 * own, one preadv per MERGE_CHUNK_BYTES (at most IOV_MAX iovecs), and hands
 * back each chunk's requests as soon as they are done. */
#define MERGE_MAX_BYTES (64u << 20)
#define MERGE_MAX_REQS 256
#define MERGE_CHUNK_BYTES (8u << 20)
/* merge_take looks at no more than this many queued requests a pass, so the
 * queue lock is held briefly even when it holds thousands of small reads. */
#define MERGE_SCAN 1024
/* Two reads merge when the second starts less than this many bytes after the
 * first ends (records are aligned to 4 KiB); the gap is read into a scratch
 * buffer and dropped. */
#define MERGE_GAP 4096

struct merge_run {
    struct hc_io_req *req[MERGE_MAX_REQS];
    unsigned n;
    uint64_t start, end; /* the file range the run covers */
};

/* Whether req can join a run: a read with something to transfer, at an
 * offset where a run's arithmetic cannot overflow. */
static bool mergeable(const struct hc_io_req *req)
{
    return req->op == HC_IO_READ && req->curcnt > 0 && req->total > 0 &&
           req->total <= MERGE_MAX_BYTES && req->offset <= (uint64_t)INT64_MAX - MERGE_MAX_BYTES;
}

/* Called with q_lock held on a run of one mergeable request: moves the queued
 * reads of the same fd that continue the run (starting less than MERGE_GAP
 * after its end, or ending less than MERGE_GAP before its start) from the
 * queue into it, within the bounds (looking at the first MERGE_SCAN queued
 * requests). Leaves the run sorted by offset. */
static void merge_take(struct hc_io_pool *pool, struct merge_run *run)
{
    int fd = run->req[0]->fd;
    bool grew = true;

    /* A pass takes every request that continues the run as it goes (queued
     * reads of a batch mostly come in offset order, so one pass takes a
     * whole stretch); another pass only while the last one took something. */
    while (grew && run->n < MERGE_MAX_REQS) {
        struct hc_io_req **pp = &pool->q.head, *prev = NULL, *p;
        unsigned seen = 0;
        grew = false;
        while ((p = *pp) && seen++ < MERGE_SCAN && run->n < MERGE_MAX_REQS) {
            uint64_t pend = p->offset + p->total, lo = 0, hi = 0;
            bool after = false, before = false;
            if (p->fd == fd && mergeable(p)) {
                after = p->offset >= run->end && p->offset - run->end < MERGE_GAP;
                before = pend <= run->start && run->start - pend < MERGE_GAP;
                lo = after ? run->start : p->offset;
                hi = after ? pend : run->end;
            }
            if ((!after && !before) || hi - lo > MERGE_MAX_BYTES) {
                prev = p;
                pp = &p->next;
                continue;
            }
            *pp = p->next; /* unlinked; prev and pp stay */
            if (pool->q.tail == p)
                pool->q.tail = prev;
            p->next = NULL;
            if (after) {
                run->req[run->n++] = p;
            } else {
                memmove(run->req + 1, run->req, run->n * sizeof(run->req[0]));
                run->req[0] = p;
                run->n++;
            }
            run->start = lo;
            run->end = hi;
            grew = true;
        }
    }
}

/* Opens the regular file behind fd again, as a new open file description
 * read-only (with fd's O_DIRECT), through /proc/self/fd. Returns
 * the new fd, or -1 (not a regular file, no /proc: the caller then reads
 * through fd). JuiceFS serves the reads of one open file as one stream:
 * threads reading runs through one shared fd made it fetch 1.5-2.5x the bytes
 * from the bucket (measured); through an open of their own, 1.1x. The caller
 * holds a request on fd, so fd stays open, naming the same file, meanwhile. */
static int reopen_fd(int fd)
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

/* Called on a THREADS thread with n >= 1 reads of one file sorted by offset,
 * each started (before() ran) and not finished, back to back with gaps below
 * MERGE_GAP, taking at most IOV_MAX iovecs with the gaps: reads them with one
 * preadv through rfd (>= 0; the gaps into scratch). Each request the data
 * covers completes (after() runs); a request left short (end of file, an
 * error, a file without offsets) is transferred on its own through its fd
 * with sync_xfer, which finishes it. All go onto fin. */
static void merged_xfer(int rfd, struct hc_io_req **reqs, unsigned n, char *scratch,
                        struct iovec *iov, struct req_list *fin)
{
    uint64_t base = reqs[0]->offset, pos = base;
    ssize_t got;
    int cnt = 0;

    for (unsigned i = 0; i < n; i++) {
        struct hc_io_req *req = reqs[i];
        if (req->offset > pos)
            iov[cnt++] = (struct iovec){scratch, (size_t)(req->offset - pos)};
        memcpy(iov + cnt, req->cur, (size_t)req->curcnt * sizeof(iov[0]));
        cnt += req->curcnt;
        pos = req->offset + req->total;
    }
    do {
        got = preadv(rfd, iov, cnt, (off_t)base);
    } while (got < 0 && errno == EINTR);

    for (unsigned i = 0; i < n; i++) {
        struct hc_io_req *req = reqs[i];
        uint64_t rel = req->offset - base;
        size_t have = got > 0 && (uint64_t)got > rel ? (size_t)((uint64_t)got - rel) : 0;
        if (have >= req->total) {
            advance(req, req->total);
            complete_whole(req);
        } else {
            /* short: the rest (or all of it after an error) on its own, which
             * also gives each request its own error */
            if (have > 0)
                advance(req, have);
            sync_xfer(req);
        }
        list_push(fin, req);
    }
}

/* Called on a THREADS thread with n >= 2 started reads of one file, sorted
 * and back to back (as merged_xfer wants them): reads them through an open
 * file of their own in chunks of MERGE_CHUNK_BYTES and IOV_MAX iovecs,
 * pushing each chunk's requests onto the completion list once they are
 * done. */
static void group_xfer(struct hc_io_pool *pool, struct hc_io_req **reqs, unsigned n, char *scratch,
                       struct iovec *iov)
{
    int rfd = reopen_fd(reqs[0]->fd);
    unsigned i = 0;

    while (i < n) {
        struct req_list fin = {0};
        unsigned j = i + 1;
        int iovs = reqs[i]->curcnt;
        while (j < n && reqs[j]->offset + reqs[j]->total - reqs[i]->offset <= MERGE_CHUNK_BYTES &&
               iovs + reqs[j]->curcnt + 1 <= IOV_MAX) {
            iovs += reqs[j]->curcnt + 1;
            j++;
        }
        merged_xfer(rfd >= 0 ? rfd : reqs[i]->fd, reqs + i, j - i, scratch, iov, &fin);
        finish_flush(pool, &fin);
        i = j;
    }
    if (rfd >= 0)
        close(rfd);
}

/* Called on a THREADS thread with the run it took: runs each request's
 * before(), then transfers the reads in groups of back-to-back requests
 * (group_xfer; a failed before() leaves a hole that splits a group), a lone
 * request with sync_xfer. Every request ends on the completion list. */
static void run_xfer(struct hc_io_pool *pool, struct merge_run *run, char *scratch,
                     struct iovec *iov)
{
    struct hc_io_req *live[MERGE_MAX_REQS];
    struct req_list fin = {0};
    unsigned nlive = 0, i = 0;

    for (unsigned k = 0; k < run->n; k++) {
        if (start_req(run->req[k]))
            list_push(&fin, run->req[k]);
        else
            live[nlive++] = run->req[k];
    }
    finish_flush(pool, &fin);
    while (i < nlive) {
        unsigned j = i + 1;
        while (j < nlive && live[j]->offset >= live[j - 1]->offset + live[j - 1]->total &&
               live[j]->offset - (live[j - 1]->offset + live[j - 1]->total) < MERGE_GAP)
            j++;
        if (j - i == 1 || !iov) {
            for (unsigned k = i; k < j; k++) {
                sync_xfer(live[k]);
                list_push(&fin, live[k]);
            }
            finish_flush(pool, &fin);
        } else {
            group_xfer(pool, live + i, j - i, scratch, iov);
        }
        i = j;
    }
}

/* The thread of HC_IO_ENGINE_THREADS. It takes one request from the pool's
 * queue; when that is a read, also the queued reads of the same file that
 * continue it (merge_take), and reads them all as one sequential stream
 * (run_xfer), so a FUSE filesystem sees long sequential reads instead of many
 * scattered ones. Each request still gets its own before(), after(), result
 * and completion. Ends when stopped and the queue is empty. */
static void *sync_thread_main(void *arg)
{
    struct io_thread *t = arg;
    struct hc_io_pool *pool = t->pool;
    _Alignas(4096) char scratch[MERGE_GAP];             /* aligned, for O_DIRECT files */
    struct iovec *iov = malloc(IOV_MAX * sizeof(*iov)); /* NULL: no merging */

    for (;;) {
        struct merge_run run;
        struct hc_io_req *req;

        pthread_mutex_lock(&pool->q_lock);
        while (!pool->q.head && !pool->q_stop)
            pthread_cond_wait(&pool->q_cond, &pool->q_lock);
        req = list_pop(&pool->q);
        if (req) {
            run.req[0] = req;
            run.n = 1;
            run.start = req->offset;
            run.end = req->offset + req->total;
            if (iov && mergeable(req))
                merge_take(pool, &run);
        }
        pthread_mutex_unlock(&pool->q_lock);
        if (!req)
            break;
        run_xfer(pool, &run, scratch, iov);
    }
    free(iov);
    return NULL;
}

/* ---- loop thread side --------------------------------------------------- */

/* Loop thread. Picks the least-loaded thread, starting the scan after the
 * last pick so equal loads rotate. */
static struct io_thread *pick_thread(struct hc_io_pool *pool)
{
    unsigned best = pool->next_thread % pool->nthreads, best_load = UINT_MAX;

    for (unsigned k = 0; k < pool->nthreads; k++) {
        unsigned i = (pool->next_thread + k) % pool->nthreads;
        unsigned load = __atomic_load_n(&pool->threads[i].load, __ATOMIC_RELAXED);
        if (load < best_load) {
            best = i;
            best_load = load;
        }
    }
    pool->next_thread = best + 1;
    return &pool->threads[best];
}

/* Loop thread. Hands req to an I/O thread: URING the least-loaded one,
 * THREADS whichever takes it first from the shared queue. */
static void dispatch(struct hc_io_pool *pool, struct hc_io_req *req)
{
    struct io_thread *t;
    bool was_empty;

    pool->inflight++;
    pool->inflight_bytes += req->total;
    if (pool->cfg.engine == HC_IO_ENGINE_THREADS) {
        pthread_mutex_lock(&pool->q_lock);
        list_push(&pool->q, req);
        pthread_cond_signal(&pool->q_cond);
        pthread_mutex_unlock(&pool->q_lock);
        return;
    }
    t = pick_thread(pool);
    __atomic_add_fetch(&t->load, 1, __ATOMIC_RELAXED);

    pthread_mutex_lock(&t->lock);
    was_empty = t->queue.head == NULL;
    list_push(&t->queue, req);
    pthread_mutex_unlock(&t->lock);
    if (was_empty)
        efd_signal(t->efd);
}

/* Loop thread. Admits waiting requests while the bytes in flight stay within
 * the bound (one request is always admitted when nothing is in flight): HIGH
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
        if (pool->inflight > 0 &&
            (req->total > pool->cfg.max_inflight_bytes ||
             pool->inflight_bytes > pool->cfg.max_inflight_bytes - req->total))
            return;
        if (take_high && low->head)
            pool->high_streak++;
        else
            pool->high_streak = 0;
        dispatch(pool, list_pop(q));
    }
}

void hc_io_submit(struct hc_io_pool *pool, struct hc_io_req *req)
{
    size_t total = 0;
    bool bad = req->iovcnt < 0 || req->iovcnt > HC_IO_MAX_IOV;

    assert(req->done != NULL);
    if (!bad && req->op != HC_IO_TASK) {
        for (int i = 0; i < req->iovcnt; i++) {
            if (req->iov[i].iov_len > (size_t)SSIZE_MAX - total) {
                bad = true;
                break;
            }
            total += req->iov[i].iov_len;
        }
    }
    req->result = 0;
    req->next = NULL;
    req->xferred = 0;
    if (bad || req->op == HC_IO_TASK) {
        req->total = 0;
        req->curcnt = bad ? -1 : 0; /* -1: start_req answers -EINVAL */
    } else {
        req->total = total;
        req->curcnt = 0;
        for (int i = 0; i < req->iovcnt; i++)
            if (req->iov[i].iov_len > 0)
                req->cur[req->curcnt++] = req->iov[i];
    }

    pool->pending++;
    if (req->op == HC_IO_TASK && !req->before && !req->after) {
        /* No work for an I/O thread: straight to the completion list (done
         * still runs from hc_io_pool_drain, never in here), so that it never
         * waits behind threads blocked on the mount. */
        struct req_list one = {NULL, NULL};
        pool->inflight++;
        list_push(&one, req);
        finish_flush(pool, &one);
        return;
    }
    list_push(&pool->wait[req->prio == HC_IO_PRIO_HIGH ? HC_IO_PRIO_HIGH : HC_IO_PRIO_LOW], req);
    admit(pool);
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
        pool->inflight_bytes -= req->total;
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

uint64_t hc_io_pool_inflight_bytes(const struct hc_io_pool *pool)
{
    return pool->inflight_bytes;
}

/* Stops and joins the started threads, then releases every per-thread
 * resource that was set up. */
static void threads_teardown(struct hc_io_pool *pool)
{
    pthread_mutex_lock(&pool->q_lock);
    pool->q_stop = true;
    pthread_cond_broadcast(&pool->q_cond);
    pthread_mutex_unlock(&pool->q_lock);
    for (unsigned i = 0; i < pool->nthreads; i++) {
        struct io_thread *t = &pool->threads[i];
        if (t->started && t->lock_ok) {
            pthread_mutex_lock(&t->lock);
            t->stop = true;
            pthread_mutex_unlock(&t->lock);
            efd_signal(t->efd);
        }
    }
    for (unsigned i = 0; i < pool->nthreads; i++) {
        struct io_thread *t = &pool->threads[i];
        if (t->started)
            pthread_join(t->tid, NULL);
        if (t->ring_ok)
            io_uring_queue_exit(&t->ring);
        if (t->efd >= 0)
            close(t->efd);
        if (t->lock_ok)
            pthread_mutex_destroy(&t->lock);
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
    rc = -pthread_cond_init(&pool->q_cond, NULL);
    if (rc < 0)
        goto err_q_lock;
    return 0;

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
    pthread_mutex_destroy(&pool->q_lock);
    pthread_cond_destroy(&pool->done_cond);
    pthread_mutex_destroy(&pool->done_lock);
}

/* Sets up what a URING thread needs before it starts: its lock, eventfd and
 * ring. Returns 0 or -errno (threads_teardown releases what was set up). */
static int ring_thread_init(struct io_thread *t, unsigned queue_depth)
{
    int rc;

    rc = -pthread_mutex_init(&t->lock, NULL);
    if (rc < 0)
        return rc;
    t->lock_ok = true;
    t->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (t->efd < 0)
        return -errno;
    rc = io_uring_queue_init(queue_depth, &t->ring, 0);
    if (rc < 0)
        return rc;
    t->ring_ok = true;
    return 0;
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
    thread_main = cfg->engine == HC_IO_ENGINE_THREADS ? sync_thread_main : ring_thread_main;
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
            rc = ring_thread_init(&pool->threads[i], cfg->queue_depth);
            if (rc < 0)
                goto err;
        }
    }

    /* Threads inherit the signal mask: block everything so SIGTERM and
     * friends are delivered to the main thread. */
    sigfillset(&all);
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
