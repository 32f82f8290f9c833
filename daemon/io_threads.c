/* The blocking-threads engine of the I/O pool (HC_IO_ENGINE_THREADS; see
 * io.h for the contract, io_int.h for the structures): the threads take
 * requests from the pool's one shared queue and each performs one at a time
 * with blocking preadv/pwritev (readv/writev on pipes and sockets), looping on
 * short transfers. A thread that takes a read also takes the queued reads of
 * the same regular file that continue it (merge_take) and reads them as one
 * sequential stream through an open file of its own (run_xfer), so a FUSE
 * filesystem sees long sequential reads instead of many scattered ones.
 *
 * Thread rule: everything here but hc__sync_dispatch and
 * hc__sync_threads_stop (loop thread) runs on an I/O thread; the shared queue
 * and q_stop are touched under pool->q_lock only, and a request taken from
 * the queue belongs to the thread that took it until it is pushed onto the
 * completion list. */
#include "io_int.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Called on a THREADS I/O thread: transfers what is left of req with blocking
 * calls until hc__io_handle_xfer says it is finished. Pipes and sockets refuse
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
        if (hc__io_handle_xfer(req, n < 0 ? -errno : n))
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

/* Called on a THREADS I/O thread with q_lock held: whether req can join a
 * run, a read with something to transfer at an offset where a run's
 * arithmetic cannot overflow. */
static bool mergeable(const struct hc_io_req *req)
{
    return req->op == HC_IO_READ && req->curcnt > 0 && req->total > 0 &&
           req->total <= MERGE_MAX_BYTES && req->offset <= (uint64_t)INT64_MAX - MERGE_MAX_BYTES;
}

/* Called on a THREADS I/O thread with q_lock held, on a run of one
 * mergeable request: moves the queued
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

/* Called on a THREADS I/O thread. Opens the regular file behind fd again, as a new open file
 * description read-only (with fd's O_DIRECT), through /proc/self/fd. Returns the new fd, or -1 (not
 * a regular file, no /proc: the caller then reads through fd). JuiceFS serves the reads of one open
 * file as one stream: threads reading runs through one shared fd made it fetch 1.5-2.5x the bytes
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
            hc__io_advance(req, req->total);
            hc__io_complete_whole(req);
        } else {
            /* short: the rest (or all of it after an error) on its own, which
             * also gives each request its own error */
            if (have > 0)
                hc__io_advance(req, have);
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
        hc__io_finish_flush(pool, &fin);
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
        if (hc__io_start_req(run->req[k]))
            list_push(&fin, run->req[k]);
        else
            live[nlive++] = run->req[k];
    }
    hc__io_finish_flush(pool, &fin);
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
            hc__io_finish_flush(pool, &fin);
        } else {
            group_xfer(pool, live + i, j - i, scratch, iov);
        }
        i = j;
    }
}

/* The thread of HC_IO_ENGINE_THREADS: runs as an I/O thread. It takes one request from the pool's
 * queue; when that is a read, also the queued reads of the same file that
 * continue it (merge_take), and reads them all as one sequential stream
 * (run_xfer), so a FUSE filesystem sees long sequential reads instead of many
 * scattered ones. Each request still gets its own before(), after(), result
 * and completion. Ends when stopped and the queue is empty. */
void *hc__sync_thread_main(void *arg)
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

/* Loop thread. Puts req on the shared queue; whichever thread is free takes
 * it. */
void hc__sync_dispatch(struct hc_io_pool *pool, struct hc_io_req *req)
{
    pthread_mutex_lock(&pool->q_lock);
    list_push(&pool->q, req);
    pthread_cond_signal(&pool->q_cond);
    pthread_mutex_unlock(&pool->q_lock);
}

/* Loop thread. */
void hc__sync_threads_stop(struct hc_io_pool *pool)
{
    pthread_mutex_lock(&pool->q_lock);
    pool->q_stop = true;
    pthread_cond_broadcast(&pool->q_cond);
    pthread_mutex_unlock(&pool->q_lock);
}
