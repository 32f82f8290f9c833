/* The io_uring engine of the I/O pool (HC_IO_ENGINE_URING; see io.h for the
 * contract, io_int.h for the structures): each I/O thread has its own ring,
 * its own submission queue (a list under its lock) and an eventfd the loop
 * thread writes when that queue becomes non-empty. The thread takes its queue,
 * runs before() of each request, preps one SQE per request (and a poll on the
 * eventfd), submits once, waits for one CQE and drains the rest with peek;
 * short transfers go back first in line, finished requests onto the pool's
 * completion list (hc__io_finish_flush).
 *
 * Thread rule: hc__ring_thread_main and what it calls run on the I/O thread
 * that owns the ring; it reads pool->cfg (immutable after create), touches
 * its queue and stop under t->lock and its load atomically, and holds the
 * requests it took until it pushes them onto the completion list. efd_signal,
 * pick_thread and the other hc__ring_* functions run on the loop thread. */
#include "io_int.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

/* Loop thread: wakes the I/O thread that polls efd. */
static void efd_signal(int efd)
{
    uint64_t one = 1;
    ssize_t n;
    do {
        n = write(efd, &one, sizeof(one));
    } while (n < 0 && errno == EINTR);
    /* EAGAIN only if the counter is near 2^64: the thread is awake anyway. */
}

/* Called on a URING I/O thread once its poll on efd fired. */
static void efd_clear(int efd)
{
    uint64_t v;
    ssize_t n;
    do {
        n = read(efd, &v, sizeof(v));
    } while (n < 0 && errno == EINTR);
}

/* Pipes and sockets have no file position: the kernel refuses any offset but
 * the one the submitter gave (0), so a resubmission must not advance it. Called on an I/O thread.
 */
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

/* Called on a URING I/O thread: pushes what it finished, counting it off its
 * load. */
static void ring_finish(struct io_thread *t, struct req_list *fin, unsigned nfin)
{
    if (!fin->head)
        return;
    __atomic_sub_fetch(&t->load, nfin, __ATOMIC_RELAXED);
    hc__io_finish_flush(t->pool, fin);
}

/* The thread of HC_IO_ENGINE_URING: runs as an I/O thread until stopped
 * with nothing left in its queue or its ring. */
void *hc__ring_thread_main(void *arg)
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
            if (hc__io_start_req(req)) {
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
            if (hc__io_handle_xfer(req, res)) {
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

/* Loop thread, at create. Sets up what a URING thread needs before it
 * starts: its lock, eventfd and ring. Returns 0 or -errno
 * (hc__ring_thread_release releases what was set up). */
int hc__ring_thread_init(struct io_thread *t, unsigned queue_depth)
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

/* Loop thread. Hands req to the least-loaded thread: its queue, and a write
 * to its eventfd when that queue was empty. */
void hc__ring_dispatch(struct hc_io_pool *pool, struct hc_io_req *req)
{
    struct io_thread *t = pick_thread(pool);
    bool was_empty;

    __atomic_add_fetch(&t->load, 1, __ATOMIC_RELAXED);
    pthread_mutex_lock(&t->lock);
    was_empty = t->queue.head == NULL;
    list_push(&t->queue, req);
    pthread_mutex_unlock(&t->lock);
    if (was_empty)
        efd_signal(t->efd);
}

/* Loop thread. */
void hc__ring_threads_stop(struct hc_io_pool *pool)
{
    for (unsigned i = 0; i < pool->nthreads; i++) {
        struct io_thread *t = &pool->threads[i];
        if (t->started && t->lock_ok) {
            pthread_mutex_lock(&t->lock);
            t->stop = true;
            pthread_mutex_unlock(&t->lock);
            efd_signal(t->efd);
        }
    }
}

/* Loop thread. */
void hc__ring_thread_release(struct io_thread *t)
{
    if (t->ring_ok)
        io_uring_queue_exit(&t->ring);
    if (t->efd >= 0)
        close(t->efd);
    if (t->lock_ok)
        pthread_mutex_destroy(&t->lock);
}
