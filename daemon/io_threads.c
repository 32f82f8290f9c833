/* The blocking-threads engine of the I/O pool (HC_IO_ENGINE_THREADS; see
 * io.h for the contract, io_int.h for the structures): the threads take
 * requests from the pool's one shared queue and each performs one at a time
 * with blocking preadv/pwritev (readv/writev on pipes and sockets), looping on
 * short transfers. A thread that takes a read takes, of its file, the queued
 * read with the lowest offset, and with it the queued reads of the same
 * regular file that continue it (merge_take; from the volume, across short
 * gaps too, which it reads: FILL_GAP), and reads them as one sequential
 * stream through an open file of its own (run_xfer), so a FUSE filesystem
 * sees long forward reads instead of many scattered ones.
 * One thread at a time reads a given file from the volume (several may copy
 * a hot file's reads the page cache holds: hot_note, fd_busy), and the open
 * file of a file's runs is kept between runs (pool->held, HELD_IDLE_MS at
 * most unused), for whichever thread reads that file next from the volume,
 * a lone read included, always the file's primary one (held_get; copies of
 * cached runs in parallel may keep others): JuiceFS reads ahead past the end
 * of what was asked, and a later
 * run through the same open file uses those bytes, where another open file
 * would fetch them again (without a local cache, every such fetch is a
 * download from the object store). JuiceFS drops what it read ahead once
 * its stream jumps elsewhere, hence forward streams and filled gaps. A read
 * ahead (hc_io_req.sink: a client's later pages, GetRequest.ahead_keys) is
 * a read like the others, into scratch: it keeps the stream going over pages
 * asked for later, which then come from the page cache. A run the page
 * cache holds is copied out of a mapping of the file kept with its open file
 * (map_xfer: the kernel's copy out of the small folios FUSE reads in runs at
 * half the speed), and read with preadv when that fails.
 * Threads whose last run was a copy from memory (CPU_BYTES_PER_US or faster:
 * the page cache) run at most as many at once as there are CPUs (cpu_cap):
 * more only take the CPU from the client that copies the pages out of its
 * region next (measured: 4 threads on 2 CPUs, 2.6 GB/s of hot gets through
 * the region, 2 threads 4.5); reads from the volume, which mostly wait, are
 * not held to it.
 *
 * Thread rule: everything here runs on an I/O thread but hc__sync_dispatch
 * and hc__sync_threads_stop (loop thread), and hc_io_cached (with
 * probe_range and cachestat_all) and hc_io_pool_unmap_file (any thread: the
 * loop thread asks hc_io_cached before a read ahead); the shared queue
 * and q_stop are touched under pool->q_lock only, and a request taken from
 * the queue belongs to the thread that took it until it is pushed onto the
 * completion list. */
#include "io_int.h"
#include "crc32c.h"
#include "guard.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* Called on a THREADS I/O thread: transfers what is left of req with blocking
 * calls until hc__io_handle_xfer says it is finished. Pipes and sockets refuse
 * preadv/pwritev (-ESPIPE): they get readv/writev. A descriptor in
 * non-blocking mode that is not ready is waited for with poll. A read ahead
 * (sink) is not read here: it ends with -ENOBUFS. */
static void sync_xfer(struct hc_io_req *req)
{
    bool stream = false;

    if (req->sink) { /* no buffers of its own: only a run reads one (into scratch) */
        req->result = -ENOBUFS;
        return;
    }
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
 * that lie back to back, at most MERGE_MAX_BYTES (gaps included; merged
 * reads of a hot file: HOT_RUN_BYTES) and
 * MERGE_MAX_REQS requests. The thread reads a run through an open file of its
 * own, one preadv per MERGE_CHUNK_BYTES (at most IOV_MAX iovecs), or one
 * guarded copy out of its mapping per MERGE_CHUNK_BYTES when the page cache
 * holds the run (map_xfer), and hands back each chunk's requests as soon as
 * they are done. */
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
/* In a run of a file read from the volume (not hot, not O_DIRECT), a read
 * also joins after a larger gap: less than FILL_GAP and less than the bytes
 * the run already covers before it; so does a run that starts that far after
 * where the last run through the same kept open file ended (its stream,
 * struct hc_held). The gap's bytes are read too (into the scratch buffer) and
 * so reach the page cache. Why: a segment holds other clients' pages between
 * a client's (other TP ranks', asked for a moment later: their next chunk
 * through their region, or still behind max_inflight_bytes), and JuiceFS
 * reads a stream ahead about as far as the stream has gone (up to its
 * --max-readahead, 32 MiB by default) but drops the blocks a jump skipped:
 * without a local cache they were downloaded again when those pages were
 * asked for. Reading through the gap costs a copy, not a download (JuiceFS
 * had them in memory); the gap's pages are then hot when asked for. Bounded
 * by the stream so far, it is never more than JuiceFS's own read-ahead would
 * have fetched of a stream that long. */
#define FILL_GAP (16u << 20)
/* The scratch buffer a thread reads gaps into (a gap takes one iovec per
 * SCRATCH_BYTES of it). */
#define SCRATCH_BYTES (1u << 20)

struct merge_run {
    struct hc_io_req *req[MERGE_MAX_REQS];
    unsigned n;
    uint64_t start, end; /* the file range the run covers */
    bool reads;          /* reads of one file (merge_take built it) */
    bool fill;           /* gaps up to FILL_GAP (a read from the volume) */
};

/* Any thread (used on THREADS I/O threads). The iovecs a gap of len bytes
 * takes in a merged preadv. */
static int gap_iovs(uint64_t len)
{
    return (int)((len + SCRATCH_BYTES - 1) / SCRATCH_BYTES);
}

/* Any thread (used on THREADS I/O threads). The iovecs req takes in a merged
 * preadv: its buffers, or for a read ahead (sink: no buffers) the scratch
 * buffer, as for a gap of its length. */
static int req_iovs(const struct hc_io_req *req)
{
    return req->sink ? gap_iovs(req->total) : req->curcnt;
}

/* Any thread (used on THREADS I/O threads, by merge_take under q_lock). Whether
 * a read starting at off may follow, in one merged stream, what ends at end
 * (off >= end), in a run that covers [start, end). */
static bool gap_ok(const struct merge_run *run, uint64_t start, uint64_t end, uint64_t off)
{
    uint64_t gap = off - end;
    return gap < MERGE_GAP || (run->fill && gap < FILL_GAP && gap < end - start);
}

/* Called on a THREADS I/O thread with q_lock held: whether req can join a
 * run, a read with something to transfer at an offset where a run's
 * arithmetic cannot overflow. */
static bool mergeable(const struct hc_io_req *req)
{
    return req->op == HC_IO_READ && req->fd >= 0 && (req->curcnt > 0 || req->sink) &&
           req->total > 0 && req->total <= MERGE_MAX_BYTES &&
           req->offset <= (uint64_t)INT64_MAX - MERGE_MAX_BYTES;
}

/* Called on a THREADS I/O thread with q_lock held, on a run of one
 * mergeable request: moves the queued
 * reads of the same fd that continue the run (starting after its end within
 * gap_ok, or ending less than MERGE_GAP before its start) from the
 * queue into it, while the run covers at most max bytes and MERGE_MAX_REQS
 * requests (looking at the first MERGE_SCAN queued requests). Leaves the run
 * sorted by offset. */
static void merge_take(struct hc_io_pool *pool, struct merge_run *run, uint64_t max)
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
                after = p->offset >= run->end && gap_ok(run, run->start, run->end, p->offset);
                before = pend <= run->start && run->start - pend < MERGE_GAP;
                lo = after ? run->start : p->offset;
                hi = after ? pend : run->end;
            }
            if ((!after && !before) || hi - lo > max) {
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

/* A kept open file (pool->held) not used for this long is closed: it holds
 * its file open (an evicted segment's space stays taken meanwhile). */
#define HELD_IDLE_MS 1000

/* Called on a THREADS thread with n >= 1 reads of one file sorted by offset,
 * each started (before() ran) and not finished, the first at or after base,
 * with gaps (from base on) the run allowed, taking at most IOV_MAX iovecs with
 * the gaps (gap_iovs): reads [base, the last one's end) with one preadv
 * through rfd (>= 0; the gaps and reads ahead into scratch, SCRATCH_BYTES).
 * Each request the data covers completes (after() runs); a request left
 * short (end of file, an error, a file without offsets) is transferred on
 * its own through its fd with sync_xfer, which finishes it, but for a read
 * ahead, which ends with the error (-ENODATA when short). All go onto fin.
 * Returns whether the preadv through rfd failed or came back short, not for
 * a vanished buffer (EFAULT): rfd is not to be kept then (hc_io_reopen). */
static bool merged_xfer(int rfd, uint64_t base, struct hc_io_req **reqs, unsigned n, char *scratch,
                        struct iovec *iov, struct req_list *fin)
{
    uint64_t pos = base;
    ssize_t got;
    int cnt = 0, err;

    for (unsigned i = 0; i < n; i++) {
        struct hc_io_req *req = reqs[i];
        /* the gap before req, then a read ahead's own bytes: into scratch */
        uint64_t to = req->sink ? req->offset + req->total : req->offset;
        while (to > pos) {
            uint64_t len = to - pos < SCRATCH_BYTES ? to - pos : SCRATCH_BYTES;
            iov[cnt++] = (struct iovec){scratch, (size_t)len};
            pos += len;
        }
        memcpy(iov + cnt, req->cur, (size_t)req->curcnt * sizeof(iov[0]));
        cnt += req->curcnt;
        pos = req->offset + req->total;
    }
    do {
        got = preadv(rfd, iov, cnt, (off_t)base);
    } while (got < 0 && errno == EINTR);
    /* through FUSE a read that fails part way answers the bytes before the
     * error: short counts as failed too, but for one read with no gap before
     * it (a read past the end of the file is short; sync_xfer finishes it,
     * and a real error shows on the next run); -1 with EFAULT, a client's
     * vanished buffer, says nothing of the file */
    err = got < 0                                                           ? errno
          : (uint64_t)got < pos - base && (n > 1 || base < reqs[0]->offset) ? EIO
                                                                            : 0;

    for (unsigned i = 0; i < n; i++) {
        struct hc_io_req *req = reqs[i];
        uint64_t rel = req->offset - base;
        size_t have = got > 0 && (uint64_t)got > rel ? (size_t)((uint64_t)got - rel) : 0;
        if (have >= req->total) {
            hc__io_advance(req, req->total);
            hc__io_complete_whole(req);
        } else if (req->sink) {
            req->result = got < 0 ? -err : -ENODATA; /* nothing to give anyone */
        } else {
            /* short: the rest (or all of it after an error) on its own, which
             * also gives each request its own error */
            if (have > 0)
                hc__io_advance(req, have);
            sync_xfer(req);
        }
        list_push(fin, req);
    }
    return err != 0 && err != EFAULT;
}

/* Called on a THREADS thread with n >= 1 started reads of one file, sorted
 * and with the gaps their run allowed (as merged_xfer wants them), the first
 * at or after base: reads them and the gaps between them (and from base to
 * the first) through rfd (the thread's own open file of it, or
 * their fd) in chunks of MERGE_CHUNK_BYTES (a chunk holds one read at least,
 * with the gap before it) and IOV_MAX iovecs,
 * pushing each chunk's requests onto the completion list once they are
 * done. Returns whether a read through rfd failed (merged_xfer). */
static bool group_xfer(struct hc_io_pool *pool, uint64_t base, struct hc_io_req **reqs, unsigned n,
                       char *scratch, struct iovec *iov, int rfd)
{
    unsigned i = 0;
    bool failed = false;

    while (i < n) {
        struct req_list fin = {0};
        unsigned j = i + 1;
        int iovs = req_iovs(reqs[i]) + gap_iovs(reqs[i]->offset - base);
        if (iovs > IOV_MAX) { /* a read of many buffers after a gap: the gap is skipped */
            base = reqs[i]->offset;
            iovs = req_iovs(reqs[i]);
        }
        while (j < n && reqs[j]->offset + reqs[j]->total - base <= MERGE_CHUNK_BYTES &&
               iovs + req_iovs(reqs[j]) +
                       gap_iovs(reqs[j]->offset - (reqs[j - 1]->offset + reqs[j - 1]->total)) <=
                   IOV_MAX) {
            iovs += req_iovs(reqs[j]) +
                    gap_iovs(reqs[j]->offset - (reqs[j - 1]->offset + reqs[j - 1]->total));
            j++;
        }
        /* where the next group goes on from, read while the requests are
         * still this thread's (after the flush they are the loop thread's) */
        uint64_t next = reqs[j - 1]->offset + reqs[j - 1]->total;
        failed |= merged_xfer(rfd, base, reqs + i, j - i, scratch, iov, &fin);
        hc__io_finish_flush(pool, &fin);
        base = next;
        i = j;
    }
    return failed;
}

/* Any thread (used on THREADS I/O threads). CLOCK_MONOTONIC in us. */
static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* Any thread (used on THREADS I/O threads). CLOCK_MONOTONIC in ms. */
static uint64_t now_ms(void)
{
    return now_us() / 1000u;
}

/* Called on a THREADS I/O thread with a kept open file taken out of its slot
 * (no other thread can reach it): closes it and drops its mapping. */
static void held_close(const struct hc_held *e)
{
    if (e->map)
        munmap((void *)(uintptr_t)e->map, e->map_len);
    close(e->rfd);
}

/* Called on a THREADS I/O thread: closes the kept open files nobody uses,
 * all of them or those unused for HELD_IDLE_MS. */
static void held_sweep(struct hc_io_pool *pool, bool all)
{
    struct hc_held gone[HC_HELD_MAX];
    unsigned n = 0;
    uint64_t now = now_ms();

    pthread_mutex_lock(&pool->h_lock);
    for (unsigned i = 0; i < HC_HELD_MAX; i++) {
        struct hc_held *e = &pool->held[i];
        if (e->rfd >= 0 && !e->in_use && (all || now - e->used_ms >= HELD_IDLE_MS)) {
            gone[n++] = *e;
            *e = (struct hc_held){.rfd = -1};
            __atomic_sub_fetch(&pool->nheld, 1, __ATOMIC_RELAXED);
        }
    }
    pthread_mutex_unlock(&pool->h_lock);
    for (unsigned i = 0; i < n; i++)
        held_close(&gone[i]);
}

/* Called on a THREADS I/O thread holding a request on fd (so fd names the
 * same file meanwhile): an open file of fd's file for this thread alone
 * until held_put, the kept one when there is one free (*slot its index),
 * else a new one, kept when a slot is free or unused (*slot) or for this run
 * only (*slot -1). With wait (a run not in the page cache), only the file's
 * primary kept one is used, waited for when another thread reads through it,
 * and a new one opened is the primary: JuiceFS reads ahead for each open
 * file, so two open files reading one file from the volume download the
 * blocks ahead of them twice (several threads read a hot file at once, each
 * through a kept open file of its own; a run of it from the volume taking
 * whichever was free alternated between them, seen as blocks downloaded
 * twice 0.1-0.6 s apart). Returns it, or -1 (not a regular file, or the open
 * failed: read through fd). */
static int held_get(struct hc_io_pool *pool, int fd, bool wait, int *slot)
{
    struct stat st;
    int fl = fcntl(fd, F_GETFL), rfd, victim = -1;
    struct hc_held old = {.rfd = -1};
    uint64_t oldest = UINT64_MAX;
    bool busy = true;

    *slot = -1;
    if (fl < 0 || (fl & O_ACCMODE) == O_WRONLY || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
        return -1;
    pthread_mutex_lock(&pool->h_lock);
    while (busy) {
        busy = false;
        for (unsigned i = 0; i < HC_HELD_MAX; i++) {
            struct hc_held *e = &pool->held[i];
            if (e->rfd < 0 || e->dev != st.st_dev || e->ino != st.st_ino ||
                e->direct != (fl & O_DIRECT) || (wait && !e->primary))
                continue;
            if (e->in_use) {
                busy = wait;
                continue;
            }
            e->in_use = true;
            *slot = (int)i;
            pthread_mutex_unlock(&pool->h_lock);
            return e->rfd;
        }
        if (busy) /* given back by held_put, or closed there after a failure */
            pthread_cond_wait(&pool->h_cond, &pool->h_lock);
    }
    pthread_mutex_unlock(&pool->h_lock);

    rfd = hc_io_reopen(fd);
    if (rfd < 0)
        return -1;
    pthread_mutex_lock(&pool->h_lock);
    for (unsigned i = 0; i < HC_HELD_MAX; i++) {
        struct hc_held *e = &pool->held[i];
        if (e->rfd < 0) {
            victim = (int)i;
            break;
        }
        if (!e->in_use && e->used_ms < oldest) {
            oldest = e->used_ms;
            victim = (int)i;
        }
    }
    if (victim >= 0) {
        struct hc_held *e = &pool->held[victim];
        if (e->rfd >= 0)
            old = *e;
        else
            __atomic_add_fetch(&pool->nheld, 1, __ATOMIC_RELAXED);
        *e = (struct hc_held){.rfd = rfd,
                              .dev = st.st_dev,
                              .ino = st.st_ino,
                              .direct = fl & O_DIRECT,
                              .in_use = true,
                              .primary = wait};
        *slot = victim;
    }
    pthread_mutex_unlock(&pool->h_lock);
    if (old.rfd >= 0)
        held_close(&old);
    return rfd;
}

/* Called on a THREADS I/O thread done reading through rfd, which held_get
 * gave it with slot: keeps it for the next run, or closes it (slot -1, or a
 * read through it failed: JuiceFS would fail every later read through it). */
static void held_put(struct hc_io_pool *pool, int rfd, int slot, bool failed)
{
    struct hc_held gone = {.rfd = -1};

    if (slot >= 0) {
        pthread_mutex_lock(&pool->h_lock);
        if (failed) {
            gone = pool->held[slot]; /* unmapped below, out of the lock */
            pool->held[slot] = (struct hc_held){.rfd = -1};
            __atomic_sub_fetch(&pool->nheld, 1, __ATOMIC_RELAXED);
        } else {
            struct hc_held *e = &pool->held[slot];
            if (e->map_drop) { /* hc_io_pool_unmap_file meanwhile */
                gone.map = e->map;
                gone.map_len = e->map_len;
                e->map = NULL;
                e->map_len = 0;
                e->map_drop = false;
            }
            e->in_use = false;
            e->used_ms = now_ms();
        }
        pthread_cond_broadcast(&pool->h_cond);
        pthread_mutex_unlock(&pool->h_lock);
    }
    if (gone.map) /* taken out of its slot: no other thread can reach it */
        munmap((void *)(uintptr_t)gone.map, gone.map_len);
    if ((slot < 0 || failed) && rfd >= 0) /* (else kept in its slot) */
        close(rfd);
}

/* Any thread (io.h). Only idle slots' mappings are taken out here (under
 * h_lock nobody else can reach them then); one a thread uses now is marked
 * and dropped by that thread in held_put: unmapping it here could pull the
 * pages from under its copy (a fault out of the guard's reach after an
 * mremap). */
void hc_io_pool_unmap_file(struct hc_io_pool *pool, int fd)
{
    struct hc_held gone[HC_HELD_MAX];
    unsigned n = 0;
    struct stat st;

    if (pool->cfg.engine != HC_IO_ENGINE_THREADS || fstat(fd, &st) != 0)
        return;
    pthread_mutex_lock(&pool->h_lock);
    for (unsigned i = 0; i < HC_HELD_MAX; i++) {
        struct hc_held *e = &pool->held[i];
        if (e->rfd < 0 || e->dev != st.st_dev || e->ino != st.st_ino)
            continue;
        if (e->in_use) { /* (its map is its thread's to read now, not ours) */
            e->map_drop = true;
            continue;
        }
        if (!e->map)
            continue;
        gone[n++] = *e;
        e->map = NULL;
        e->map_len = 0;
    }
    pthread_mutex_unlock(&pool->h_lock);
    for (unsigned i = 0; i < n; i++)
        munmap((void *)(uintptr_t)gone[i].map, gone[i].map_len);
}

static bool no_cachestat; /* the kernel has no cachestat (run_cached) */

/* map_copy_fn's argument: the mapped file and the reads to copy out of it. */
struct map_copy {
    const unsigned char *map;
    struct hc_io_req **reqs;
    unsigned n;
};

/* Called on a THREADS I/O thread, by map_xfer, under hc_guard_run (a SIGBUS
 * in it ends it early). map_xfer's copy: each read's bytes out of the mapped
 * file into its buffers, the bytes it asked a CRC of (hc_io_req.crc_from,
 * crc_len) with hc_crc32c_copy (crc_done then); reads ahead take nothing
 * (their bytes are cached). */
static void map_copy_fn(void *arg)
{
    const struct map_copy *a = arg;
    for (unsigned i = 0; i < a->n; i++) {
        struct hc_io_req *req = a->reqs[i];
        const unsigned char *src = a->map + req->offset;
        uint64_t pos = 0, c0 = req->crc_from, c1 = req->crc_from + req->crc_len;
        uint32_t crc = 0;
        for (int k = 0; !req->sink && k < req->curcnt; k++) {
            unsigned char *dst = req->cur[k].iov_base;
            uint64_t len = req->cur[k].iov_len, lo = pos > c0 ? pos : c0,
                     hi = pos + len < c1 ? pos + len : c1;
            if (lo >= hi) { /* none of the CRC's bytes in this buffer */
                memcpy(dst, src, len);
            } else {
                memcpy(dst, src, lo - pos);
                crc = hc_crc32c_copy(crc, dst + (lo - pos), src + (lo - pos), hi - lo);
                memcpy(dst + (hi - pos), src + (hi - pos), pos + len - hi);
            }
            src += len;
            pos += len;
        }
        if (req->crc_len && !req->sink) {
            req->crc = crc;
            req->crc_done = true;
        }
    }
}

/* Called on a THREADS thread with n >= 1 started reads of one file, sorted
 * and not overlapping, that the page cache held when the run was taken
 * (run_cached), and h, the kept open file (rfd, not O_DIRECT) this thread
 * has in_use: copies them out of h's mapping of the file (made or grown to
 * the file's size as fstat tells it: address space only, no memory), in
 * chunks of MERGE_CHUNK_BYTES (a chunk holds one read at least), each
 * chunk's reads completed (their after() run) and flushed to the loop
 * thread before the next is copied. Returns how many of reqs it completed,
 * from the first: the others (all of them when it returns 0) are to be read
 * with preadv (group_xfer), their buffers may hold part of the bytes and
 * crc_done is false. It stops when the file is shorter than the reads, or
 * mapping failed, or a page vanished under the copy (SIGBUS: the file was cut
 * short, by another node too, or a client's host pool was; the mapping is
 * dropped in the first case).
 * Why: the kernel copies out of the small folios a FUSE read brings in at
 * about half its speed out of ext4's large ones (5.4-6.4 against 9-10 GB/s);
 * a copy out of a kept mapping runs at memory speed once its page tables
 * are filled, and computes the CRC the read asked for in the same pass
 * (docs/BENCHMARKS.md). A page the kernel evicted meanwhile is read back by
 * the fault, as a pread would read it. */
static unsigned map_xfer(struct hc_io_pool *pool, struct hc_held *h, int rfd,
                         struct hc_io_req **reqs, unsigned n)
{
    uint64_t end = reqs[n - 1]->offset + reqs[n - 1]->total;
    struct stat st;
    unsigned i = 0;

    /* only where cachestat probed the whole run (run_cached): else pages
     * not cached would come in through faults, a FUSE read of a few pages
     * each, and reads ahead would complete unread */
    if (end == 0 || h->map_failed || __atomic_load_n(&no_cachestat, __ATOMIC_RELAXED) ||
        hc_guard_install() != 0)
        return 0;
    for (unsigned k = 0; k < n; k++)
        if (reqs[k]->no_map) /* it must reach the filesystem (a re-read) */
            return 0;
    if (h->map_len < end) {
        if (fstat(rfd, &st) != 0 || st.st_size < 0 || (uint64_t)st.st_size < end ||
            (uint64_t)st.st_size > SIZE_MAX)
            return 0;
        /* grown in place or moved with its page tables (a file being
         * appended to), else mapped anew */
        void *m = h->map ? mremap((void *)(uintptr_t)h->map, h->map_len, (size_t)st.st_size,
                                  MREMAP_MAYMOVE)
                         : MAP_FAILED;
        if (m == MAP_FAILED) {
            m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, rfd, 0);
            if (m == MAP_FAILED) {
                h->map_failed = true; /* (a FUSE file with direct I/O): not again */
                return 0;
            }
            if (h->map)
                munmap((void *)(uintptr_t)h->map, h->map_len);
        }
        h->map = m;
        h->map_len = (size_t)st.st_size;
        __atomic_add_fetch(&pool->map_grows, 1, __ATOMIC_RELAXED);
    }
    while (i < n) {
        struct req_list fin = {0};
        uint64_t bytes = reqs[i]->sink ? 0 : reqs[i]->total;
        unsigned j = i + 1;
        while (j < n && reqs[j]->offset + reqs[j]->total - reqs[i]->offset <= MERGE_CHUNK_BYTES) {
            bytes += reqs[j]->sink ? 0 : reqs[j]->total;
            j++;
        }
        struct map_copy a = {h->map, reqs + i, j - i};
        if (hc_guard_run(map_copy_fn, &a) != 0) {
            for (unsigned k = i; k < j; k++)
                reqs[k]->crc_done = false;
            __atomic_add_fetch(&pool->map_faults, 1, __ATOMIC_RELAXED);
            /* the file cut short (the mapping goes), or a client's pool (it stays) */
            if (fstat(rfd, &st) != 0 || st.st_size < 0 || (uint64_t)st.st_size < h->map_len) {
                munmap((void *)(uintptr_t)h->map, h->map_len);
                h->map = NULL;
                h->map_len = 0;
            }
            return i;
        }
        for (unsigned k = i; k < j; k++) {
            hc__io_advance(reqs[k], reqs[k]->total);
            hc__io_complete_whole(reqs[k]);
            list_push(&fin, reqs[k]);
        }
        __atomic_add_fetch(&pool->map_bytes, bytes, __ATOMIC_RELAXED);
        hc__io_finish_flush(pool, &fin); /* (the loop thread's from here) */
        i = j;
    }
    return n;
}

/* Called on a THREADS thread with the run it took (cached: run_cached said
 * the page cache holds it): runs each request's before(), then transfers
 * reads of a file in groups of requests the run's gaps allow (group_xfer, a
 * lone read too; a failed before() leaves a hole, read as a gap when the run
 * allows it, else splitting the group; the
 * first group from the kept open file's stream end when that gap is short:
 * FILL_GAP) through the file's kept open file (held_get, waited for when the
 * run is not cached; a cached run's groups are copied out of that open
 * file's mapping instead when they can be: map_xfer), anything else with
 * sync_xfer. Every request ends on the completion list. A lone read goes
 * through the
 * kept open file as well: through the request's own fd JuiceFS would read
 * ahead for that open file too, and download again what the kept one reads
 * next (seen in the object store's GET log: one to two 4 MiB blocks a lone
 * read, without a local cache). A run of reads ahead alone that is cached
 * completes without a read: returns false then, else true. */
static bool run_xfer(struct hc_io_pool *pool, struct merge_run *run, bool cached, char *scratch,
                     struct iovec *iov)
{
    int rfd = -1, slot = -1;
    bool got = false, failed = false;
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
    bool sinks = run->reads && nlive > 0;
    for (unsigned k = 0; k < nlive && sinks; k++)
        sinks = live[k]->sink != 0;
    if (sinks && cached) {
        for (unsigned k = 0; k < nlive; k++) { /* reads ahead of what is there */
            hc__io_advance(live[k], live[k]->total);
            hc__io_complete_whole(live[k]);
            list_push(&fin, live[k]);
        }
        hc__io_finish_flush(pool, &fin);
        return false;
    }
    while (i < nlive) {
        unsigned j = i + 1;
        while (
            j < nlive && live[j]->offset >= live[j - 1]->offset + live[j - 1]->total &&
            gap_ok(run, live[i]->offset, live[j - 1]->offset + live[j - 1]->total, live[j]->offset))
            j++;
        if (!run->reads) {
            for (unsigned k = i; k < j; k++) {
                sync_xfer(live[k]);
                list_push(&fin, live[k]);
            }
            hc__io_finish_flush(pool, &fin);
        } else {
            if (!got) {
                rfd = held_get(pool, live[i]->fd, !cached, &slot);
                got = true;
            }
            uint64_t base = live[i]->offset, end = live[j - 1]->offset + live[j - 1]->total;
            struct hc_held *h = slot >= 0 ? &pool->held[slot] : NULL;
            if (h && run->fill && h->end <= base && base - h->end < FILL_GAP &&
                base - h->end < h->streamed &&
                req_iovs(live[i]) + gap_iovs(base - h->end) <= IOV_MAX)
                base = h->end; /* the stream's gap up to this run: read too (FILL_GAP) */
            unsigned mapped =
                cached && h && !h->direct ? map_xfer(pool, h, rfd, live + i, j - i) : 0;
            if (mapped < j - i) { /* (those copied out of the mapping are flushed) */
                if (mapped > 0)
                    base = live[i + mapped]->offset;
                failed |= group_xfer(pool, base, live + i + mapped, j - i - mapped, scratch, iov,
                                     rfd >= 0 ? rfd : live[i + mapped]->fd);
            }
            if (h && mapped < j - i) { /* (a copy out of the mapping moves no stream) */
                h->streamed = base == h->end ? h->streamed + (end - base) : end - base;
                h->end = end;
            }
        }
        i = j;
    }
    if (got)
        held_put(pool, rfd, slot, failed);
    return true;
}

/* Called on a THREADS I/O thread with q_lock held: whether fd's last run,
 * less than HOT_MS ago, was in the page cache before it was read (hot_note). */
static bool file_hot(const struct hc_io_pool *pool, int fd, uint64_t now)
{
    for (unsigned i = 0; i < HC_HELD_MAX; i++)
        if (pool->hot[i].fd == fd + 1 && pool->hot[i].until_ms > now)
            return true;
    return false;
}

static bool range_cached(int fd, uint64_t off, uint64_t len);

/* Probes of the page cache (range_cached) take_first makes at most a pass. */
#define BUSY_PROBES 8

/* Called on a THREADS I/O thread with q_lock held: whether another thread
 * than self is reading runs of p's file now, unless that file is hot and the
 * page cache holds p (range_cached; a copy from memory: no read-ahead to
 * share, and parallel copies gain). Only the page cache decides, not the file's mark
 * alone: a hot file's next runs may come from the volume, and two threads
 * reading one file from the volume make JuiceFS read ahead for each (and
 * download the same blocks twice without a local cache). *probes bounds the
 * page-cache probes (a syscall each) of a pass; none left: busy. */
static bool fd_busy(const struct hc_io_pool *pool, const struct io_thread *self,
                    const struct hc_io_req *p, uint64_t now, unsigned *probes)
{
    bool other = false;
    for (unsigned i = 0; i < pool->nthreads && !other; i++)
        other = &pool->threads[i] != self && pool->threads[i].reading == p->fd + 1;
    if (!other)
        return false;
    if (!file_hot(pool, p->fd, now) || *probes == 0)
        return true;
    (*probes)--;
    return !range_cached(p->fd, p->offset, p->total);
}

/* A run of at least HOT_MIN_BYTES that was all in the page cache before it
 * was read (run_cached): the file's next runs, for HOT_MS, may go to several
 * threads at once (hot reads gain from parallel copies; only reads from the
 * volume gain from one thread a file). Not judged by speed: a cold read
 * through JuiceFS of bytes its process had read ahead into its memory runs
 * at 2-4 GB/s too (16 MiB in 4.3 ms, logged in a cold phase without a local
 * cache), which let several threads read a file JuiceFS was streaming. A
 * run the kernel's own read-ahead brought in counts (it is in memory); the
 * file's next run that is not clears the mark. (The cache-less download
 * ratio did not move measurably with this: 1.12-1.24x in three subset runs,
 * within its spread before.) */
#define HOT_MIN_BYTES (1u << 20)
/* A hot file's runs stop at this many bytes, so the threads share a batch's
 * copies evenly (one run of 64 MiB left one CPU idle while another copied it:
 * 128 hot pages of 1 MiB into a host pool through JuiceFS, 4 threads on 2
 * CPUs, 5.6-5.9 GB/s with 64 MiB runs, 7.4-7.9 with 8 or 4 MiB). */
#define HOT_RUN_BYTES MERGE_CHUNK_BYTES
#define HOT_MS 1000

/* Bytes of a run whose page-cache residency run_cached looks at (the first
 * ones: a run is read in order). */
#define HOT_PROBE_BYTES (4u << 20)

/* cachestat(2) (Linux 6.5): what the page cache holds of a file's range,
 * without mapping it. */
#ifndef __NR_cachestat
#define __NR_cachestat 451
#endif
struct hc_cachestat_range {
    uint64_t off, len;
};
struct hc_cachestat {
    uint64_t nr_cache, nr_dirty, nr_writeback, nr_evicted, nr_recently_evicted;
};

/* The pages of fd a probe of [off, off + len) looks at: from the page of off
 * to max bytes past off at most (HOT_PROBE_BYTES: a run is read in order). */
struct probe_range {
    uint64_t start, n, pages;
};
/* Any thread (I/O threads for run_cached, the loop thread for hc_io_cached). */
static struct probe_range probe_range(uint64_t off, uint64_t len, uint64_t max)
{
    long pg = sysconf(_SC_PAGESIZE);
    if (pg <= 0)
        pg = 4096;
    uint64_t start = off & ~(uint64_t)(pg - 1), n = off + (len < max ? len : max) - start;
    return (struct probe_range){start, n, (n + (uint64_t)pg - 1) / (uint64_t)pg};
}

/* cachestat(2), on any thread (hc_io_cached): 1 when the page cache holds all
 * of r's pages of fd, 0 when not (or the call failed, or r starts past what
 * an off_t holds), -1 when the kernel has
 * no cachestat (then never asked again). One system call on the file's page
 * cache: no call to the filesystem behind it. */
static int cachestat_all(int fd, struct probe_range r)
{
    struct hc_cachestat_range cr = {r.start, r.n};
    struct hc_cachestat cs;
    if (r.start > (uint64_t)INT64_MAX)
        return 0;
    if (__atomic_load_n(&no_cachestat, __ATOMIC_RELAXED))
        return -1;
    if (syscall(__NR_cachestat, fd, &cr, &cs, 0) == 0)
        return cs.nr_cache >= r.pages;
    if (errno != ENOSYS)
        return 0;
    __atomic_store_n(&no_cachestat, true, __ATOMIC_RELAXED);
    return -1;
}

/* Any thread (see io.h): on the loop thread from the store (hc_store_ahead:
 * no read ahead queued for a record the page cache holds). */
bool hc_io_cached(int fd, uint64_t off, uint64_t len)
{
    return len > 0 && cachestat_all(fd, probe_range(off, len, len)) == 1;
}

/* Called on a THREADS I/O thread with q_lock held (fd_busy): whether the
 * page cache holds the first HOT_PROBE_BYTES of [off, off + len) of fd, a
 * file a run of which was found cached before (a regular file, not O_DIRECT),
 * by cachestat alone: no fstat, mmap or other call a FUSE filesystem could
 * make wait under the queue lock. Without cachestat: no. */
static bool range_cached(int fd, uint64_t off, uint64_t len)
{
    return len > 0 && cachestat_all(fd, probe_range(off, len, HOT_PROBE_BYTES)) == 1;
}

/* Runs on an I/O thread (THREADS), without q_lock, before a run is read:
 * whether [off, off + len) of fd is all in the page cache: by cachestat,
 * all of it, where the kernel has it, else by mincore over a private
 * read-only mapping of its first HOT_PROBE_BYTES (which reads nothing and
 * cannot fault). Not for
 * what the answer would not tell or could not be trusted for: an O_DIRECT fd
 * (its reads bypass the cache), anything but a regular file, or, for
 * mincore, a file this process neither owns nor runs as root for (the kernel
 * then says every page is there). A file shorter than the range is not. */
static bool run_cached(int fd, uint64_t off, uint64_t len)
{
    unsigned char vec[HOT_PROBE_BYTES / 4096 + 1];
    struct stat st;
    int fl = fcntl(fd, F_GETFL);

    if (len == 0 || fl < 0 || (fl & O_DIRECT) || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
        return false;
    int c = cachestat_all(fd, probe_range(off, len, len));
    if (c >= 0)
        return c;
    struct probe_range r = probe_range(off, len, HOT_PROBE_BYTES);
    uint64_t start = r.start, n = r.n, pages = r.pages;
    if (pages > sizeof(vec) || start > (uint64_t)INT64_MAX)
        return false;
    if (geteuid() != 0 && st.st_uid != geteuid())
        return false;
    void *m = mmap(NULL, n, PROT_READ, MAP_PRIVATE, fd, (off_t)start);
    if (m == MAP_FAILED)
        return false;
    bool all = mincore(m, n, vec) == 0;
    for (uint64_t i = 0; all && i < pages; i++)
        all = vec[i] & 1;
    munmap(m, n);
    return all;
}

/* Called on a THREADS I/O thread with q_lock held: notes whether fd's last
 * run was hot. */
static void hot_note(struct hc_io_pool *pool, int fd, bool hot)
{
    unsigned slot = HC_HELD_MAX, oldest = 0;
    for (unsigned i = 0; i < HC_HELD_MAX; i++) {
        if (pool->hot[i].fd == fd + 1)
            slot = i;
        if (pool->hot[i].until_ms < pool->hot[oldest].until_ms)
            oldest = i;
    }
    if (slot == HC_HELD_MAX) {
        if (!hot)
            return;
        slot = oldest;
    }
    pool->hot[slot].fd = hot ? fd + 1 : 0;
    pool->hot[slot].until_ms = hot ? now_ms() + HOT_MS : 0;
}

/* A run of at least CPU_MIN_BYTES that came at CPU_BYTES_PER_US or faster was
 * a copy from memory, not a wait for the volume: the thread's next run counts
 * against cpu_cap. */
#define CPU_MIN_BYTES (256u << 10)
#define CPU_BYTES_PER_US 2000u /* 2 GB/s */

/* Runs of one file in a row a thread takes at most before it takes the
 * queue's oldest request again (others may wait behind its file). */
#define STREAK_MAX 8

/* Called on a THREADS I/O thread with q_lock held: unlinks and returns the
 * request to start with, or NULL when there is none this thread may take.
 * First, unless the queue's oldest request is a write or a task, the queued
 * read of the file the thread read last (last_fd, -1 none: the caller passes
 * -1 after STREAK_MAX runs of it) with the lowest offset (among the queue's
 * first MERGE_SCAN), so a file is read on in order; else the first queued
 * request that is not a read of a file another thread is reading (that
 * thread takes those reads next; fd_busy) and, when it is a read, the
 * queued read of its file with the lowest offset (among the first
 * MERGE_SCAN). */
static struct hc_io_req *take_first(struct hc_io_pool *pool, const struct io_thread *self,
                                    int last_fd)
{
    struct hc_io_req **pick = NULL, **pp, *prev = NULL, *pick_prev = NULL, *p;
    unsigned seen = 0, probes = BUSY_PROBES;
    uint64_t now = now_ms();

    /* a write or a task at the head goes first: a thread staying on its
     * file must not hold them back */
    if (!pool->q.head || !mergeable(pool->q.head))
        last_fd = -1;
    if (last_fd >= 0) {
        for (pp = &pool->q.head; (p = *pp) && seen++ < MERGE_SCAN; prev = p, pp = &p->next)
            if (p->fd == last_fd && mergeable(p) && (!pick || p->offset < (*pick)->offset)) {
                pick = pp;
                pick_prev = prev;
            }
        if (pick && fd_busy(pool, self, *pick, now, &probes))
            pick = NULL;
    }
    if (!pick) {
        prev = NULL;
        seen = 0;
        for (pp = &pool->q.head; (p = *pp) && seen++ < MERGE_SCAN; prev = p, pp = &p->next)
            if (!mergeable(p) || !fd_busy(pool, self, p, now, &probes)) {
                pick = pp;
                pick_prev = prev;
                break;
            }
        /* a read: of its file, the queued read with the lowest offset this
         * thread may take (a file is read from its start on, not from
         * whichever client asked first) */
        if (pick && mergeable(*pick)) {
            int fd = (*pick)->fd;
            for (; (p = *pp) && seen++ < MERGE_SCAN; prev = p, pp = &p->next)
                if (p->fd == fd && mergeable(p) && p->offset < (*pick)->offset &&
                    !fd_busy(pool, self, p, now, &probes)) {
                    pick = pp;
                    pick_prev = prev;
                }
        }
    }
    if (!pick)
        return NULL;
    p = *pick;
    *pick = p->next;
    if (pool->q.tail == p)
        pool->q.tail = pick_prev;
    p->next = NULL;
    return p;
}

/* Called on a THREADS I/O thread with q_lock held: waits on q_cond, at most
 * HELD_IDLE_MS while open files are kept (so they are closed in time).
 * Returns false when that time passed. */
static bool queue_wait(struct hc_io_pool *pool)
{
    struct timespec ts;

    if (!__atomic_load_n(&pool->nheld, __ATOMIC_RELAXED)) {
        pthread_cond_wait(&pool->q_cond, &pool->q_lock);
        return true;
    }
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += HELD_IDLE_MS / 1000;
    ts.tv_nsec += (long)(HELD_IDLE_MS % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return pthread_cond_timedwait(&pool->q_cond, &pool->q_lock, &ts) != ETIMEDOUT;
}

/* The thread of HC_IO_ENGINE_THREADS: runs as an I/O thread. It takes one
 * request from the pool's queue (take_first: reads of the file it read last
 * first, no mergeable read of a file another thread is reading unless it
 * is hot and the page cache holds that read); when that is a
 * read, also the queued reads of the same file that continue it
 * (merge_take), and reads them all as one sequential stream (run_xfer)
 * through the file's kept open file (pool->held), so a FUSE filesystem sees
 * long sequential reads instead of many scattered ones. Each request still
 * gets its own before(), after(), result and completion. Ends when stopped
 * and the queue is empty, closing the kept open files nobody uses. */
void *hc__sync_thread_main(void *arg)
{
    struct io_thread *t = arg;
    struct hc_io_pool *pool = t->pool;
    char *scratch = aligned_alloc(4096, SCRATCH_BYTES); /* aligned, for O_DIRECT files */
    struct iovec *iov = malloc(IOV_MAX * sizeof(*iov)); /* NULL: no merging */
    int last_fd = -1;
    unsigned streak = 0;   /* runs in a row of last_fd's file */
    bool last_cpu = false; /* the last run was a copy from memory (cpu_cap) */

    if (!scratch) {
        free(iov);
        iov = NULL;
    }

    for (;;) {
        struct merge_run run;
        struct hc_io_req *req = NULL;
        bool idle = false, marked = false, counted = false;
        int run_fd = -1;

        pthread_mutex_lock(&pool->q_lock);
        for (;;) {
            bool capped = last_cpu && pool->cpu_running >= pool->cpu_cap;
            if (!capped && (req = take_first(pool, t, streak < STREAK_MAX ? last_fd : -1)))
                break;
            if (pool->q_stop && !pool->q.head)
                break;
            if (!queue_wait(pool)) {
                idle = true;
                break;
            }
        }
        if (req && last_cpu) {
            pool->cpu_running++;
            counted = true;
        }
        if (req) {
            run.req[0] = req;
            run.n = 1;
            run.start = req->offset;
            run.end = req->offset + req->total;
            run.fill = false;
            run.reads = iov && mergeable(req);
            if (run.reads) {
                bool hot = file_hot(pool, req->fd, now_ms());
                int fl = fcntl(req->fd, F_GETFL);
                run.fill = !hot && fl >= 0 && !(fl & O_DIRECT);
                merge_take(pool, &run, hot ? HOT_RUN_BYTES : MERGE_MAX_BYTES);
                t->reading = req->fd + 1;
                run_fd = req->fd;
                marked = true;
            }
        }
        pthread_mutex_unlock(&pool->q_lock);
        if (idle) {
            held_sweep(pool, false);
            continue;
        }
        if (!req)
            break;
        uint64_t bytes = run.end - run.start;
        bool in_cache = marked && run_cached(run_fd, run.start, bytes);
        bool cached = in_cache && bytes >= HOT_MIN_BYTES;
        uint64_t t0 = now_us();
        bool moved = run_xfer(pool, &run, in_cache, scratch, iov);
        uint64_t us = now_us() - t0;
        last_cpu = moved && bytes >= CPU_MIN_BYTES && bytes / (us + 1) >= CPU_BYTES_PER_US;
        if (marked) {
            streak = run_fd == last_fd ? streak + 1 : 0;
            last_fd = run_fd; /* a hint only (the requests are done, the fd
                               * may be closed): take_first compares numbers */
        }
        if (marked || counted) {
            pthread_mutex_lock(&pool->q_lock);
            if (marked) {
                /* reads of that file left queued meanwhile wait for no one now */
                t->reading = 0;
                hot_note(pool, run_fd, cached);
            }
            if (counted)
                pool->cpu_running--; /* threads held by cpu_cap may go on */
            if (pool->q.head)
                pthread_cond_broadcast(&pool->q_cond);
            pthread_mutex_unlock(&pool->q_lock);
        }
        held_sweep(pool, false);
    }
    held_sweep(pool, true);
    free(iov);
    free(scratch);
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
