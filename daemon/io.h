/* I/O pool: I/O threads, with one of two engines. Part of the storage engine:
 * knows nothing of libuv or protobuf.
 *
 * HC_IO_ENGINE_URING: each thread has its own io_uring; it turns the requests
 * it holds into SQEs, submits them with one io_uring_submit and resubmits short
 * reads and writes until the whole length is done. HC_IO_ENGINE_THREADS: the
 * threads take requests from one shared queue and each performs one at a time
 * with blocking preadv/pwritev (readv/writev on pipes and sockets), looping on
 * short transfers, so N threads give N concurrent synchronous transfers, which
 * FUSE filesystems (JuiceFS) serve better than io_uring's punted reads. A
 * thread that takes a read also takes the queued reads of the same regular
 * file that continue it (gaps under 4 KiB, or from the volume under 16 MiB
 * and under what the run already covers, read too; up to 64 MiB) and reads
 * them as one forward stream through an open file of its own (a run the page
 * cache holds: copied out of that open file's mapping of the file, with the
 * CRC a read asks for computed in the copy); every request still gets its own
 * before() (all of a run's before the I/O), after(), result and done.
 *
 * Either way the loop thread submits requests and an I/O thread pushes
 * finished requests onto one completion queue (hc_io_submit pushes a task
 * with neither before nor after itself, on the loop thread). The pool calls wake(wake_arg) only
 * when that queue goes from empty to non-empty (the loop thread then calls hc_io_pool_drain, which
 * runs each request's done callback on the loop thread).
 *
 * Bytes in flight are bounded by max_inflight_bytes: requests beyond it wait in
 * the pool, HC_IO_PRIO_HIGH (prefetch reads) before HC_IO_PRIO_LOW (write-back,
 * background), so reads never starve behind writes; after 4 HIGH admissions in
 * a row while LOW requests wait, the oldest LOW goes next, so writes never
 * starve either. A single request larger than the bound is still admitted when
 * nothing else is in flight. A read ahead (sink) goes to the threads at once
 * and is not counted against the bound: it holds no buffer, and the threads
 * must see it with the reads around it to read them in one forward stream
 * (reads still waiting here for room come later: the submitter bounds its
 * reads ahead, the store to max_inflight_bytes). */
#ifndef HC_IO_H
#define HC_IO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#define HC_IO_MAX_IOV 4
#define HC_IO_MAX_IOVX 1024        /* buffers of one request through iovx (IOV_MAX) */
#define HC_IO_SINK_MAX (16u << 20) /* bytes of one read ahead (struct hc_io_req) */
#define HC_IO_WAITING 1            /* hc_io_submit: req waits in a wait queue */

enum hc_io_op {
    HC_IO_READ = 1,  /* preadv of iov at offset, whole length or error */
    HC_IO_WRITE = 2, /* pwritev of iov at offset, whole length or error */
    HC_IO_TASK = 3,  /* no I/O: before() is the work, run on an I/O thread; a
                        task with neither before() nor after() skips the
                        threads: its done runs from the next drain */
};

enum hc_io_prio {
    HC_IO_PRIO_HIGH = 0,
    HC_IO_PRIO_LOW = 1,
};

/* A request. The submitter owns it and fills the public fields; from
 * hc_io_submit until its done callback runs, the pool owns it (->next and the
 * private fields change on I/O threads) and the submitter must not touch it
 * but through hc_io_waiting. The buffers in iov must stay valid for the same
 * time. */
struct hc_io_req {
    /* set by the submitter */
    enum hc_io_op op;
    enum hc_io_prio prio;
    int fd;
    uint64_t offset;
    struct iovec iov[HC_IO_MAX_IOV];
    int iovcnt;
    /* For more buffers than HC_IO_MAX_IOV (a gathered write): when iovx is
     * not NULL, the request's buffers are its iovxcnt entries (1 to
     * HC_IO_MAX_IOVX) and iov/iovcnt are not read. The array belongs to the
     * pool like the request, from submit until done (a short transfer
     * advances its entries in place). */
    struct iovec *iovx;
    int iovxcnt;
    /* A read ahead (HC_IO_ENGINE_THREADS only): a HC_IO_READ with no buffers
     * (iovcnt 0, iovx NULL) of sink bytes (1 to HC_IO_SINK_MAX) at offset,
     * read into the thread's scratch buffer and dropped, so that they reach
     * the page cache; merged into runs with the file's other reads like any
     * read, and not read at all when the page cache holds them already. Not
     * held to max_inflight_bytes (it holds no buffer of the submitter's).
     * result: sink, or -errno (-ENODATA at end of file); after() runs. */
    uint64_t sink;
    /* A read's bytes [crc_from, crc_from + crc_len), counted over its buffers
     * in order, whose CRC32C the pool computes when it copies them with the
     * CPU itself (HC_IO_ENGINE_THREADS: a run the page cache holds, copied
     * out of a mapping of the file), in the same pass as the copy: then
     * crc_done is set and crc holds it when after() runs, for after() to use
     * instead of a pass of its own over those bytes. crc_len 0: none asked
     * for. A HC_IO_READ's range must lie within its buffers (else
     * hc_io_submit refuses it); a read ahead's and a task's is not looked
     * at. */
    uint64_t crc_from, crc_len;
    /* A read that must reach the file's filesystem (a re-read of bytes the
     * page cache may hold stale): never copied out of a kept mapping
     * (HC_IO_ENGINE_THREADS). */
    bool no_map;
    /* set by the pool before after() runs (false unless as above) */
    bool crc_done;
    uint32_t crc;
    /* Called on an I/O thread before the I/O (may be NULL). For HC_IO_TASK it
     * is the work itself. Returns 0, or -errno: the I/O is skipped and that
     * becomes result. */
    int (*before)(struct hc_io_req *req);
    /* Called on an I/O thread after the whole length was transferred (may be
     * NULL), e.g. to verify a checksum. Returns 0, or -errno, which becomes
     * result. */
    int (*after)(struct hc_io_req *req);
    /* Called on the loop thread from hc_io_pool_drain; must not be NULL. The
     * request belongs to the submitter again when it runs. */
    void (*done)(struct hc_io_req *req);
    void *data;

    /* set by the pool before done runs: bytes transferred (the whole length)
     * on success, 0 for a task that succeeded, or -errno. A read that meets
     * end of file before the whole length gives -ENODATA. (Bad arguments are
     * refused by hc_io_submit, never reported here.) */
    ssize_t result;

    /* private to the pool */
    struct hc_io_req *next;
    bool waiting;      /* in a wait queue (written by the loop thread only) */
    size_t total;      /* sum of iov lengths */
    size_t xferred;    /* bytes done so far */
    struct iovec *cur; /* what is left to transfer: inl or iovx */
    int curcnt;
    struct iovec inl[HC_IO_MAX_IOV]; /* the non-empty entries of iov */
};

enum hc_io_engine {
    HC_IO_ENGINE_URING = 0,   /* one io_uring per thread (the default) */
    HC_IO_ENGINE_THREADS = 1, /* blocking preadv/pwritev, one request per thread */
};

struct hc_io_config {
    enum hc_io_engine engine;    /* 0 (zero-initialized) = HC_IO_ENGINE_URING */
    unsigned threads;            /* >= 1 */
    unsigned queue_depth;        /* SQ entries per ring, >= 4 (unused by THREADS) */
    uint64_t max_inflight_bytes; /* >= 1 */
};

struct hc_io_pool;

/* Creates the pool and starts its threads. wake is called from I/O threads,
 * and from the loop thread inside hc_io_submit (a task with no work).
 * Returns 0 and sets *out, or -errno (nothing left behind). */
int hc_io_pool_create(struct hc_io_pool **out, const struct hc_io_config *cfg,
                      void (*wake)(void *arg), void *wake_arg);

/* Loop thread only. Queues req (see struct hc_io_req for ownership). Never
 * runs done synchronously. Returns 0 (started, or on its way to the
 * completion list), HC_IO_WAITING when it waits in a wait queue (for room
 * behind max_inflight_bytes, or behind an earlier request waiting there; a
 * read ahead never waits), or -EINVAL with req untouched and not
 * queued (done will not run) when the pool cannot run it: an unknown op or
 * prio, done NULL, and for a read or write an iovcnt outside
 * [0, HC_IO_MAX_IOV] (iovxcnt outside [1, HC_IO_MAX_IOVX] when iovx is set),
 * buffer lengths whose sum overflows ssize_t, or an offset
 * beyond INT64_MAX; a read ahead (sink) with buffers, of more than
 * HC_IO_SINK_MAX bytes, or on the URING engine. A task (HC_IO_TASK with a known prio and done set)
 * is never refused. */
int hc_io_submit(struct hc_io_pool *pool, struct hc_io_req *req);

/* Loop thread only, for a request submitted and whose done has not run:
 * whether it still waits in a wait queue (the pool has not started it).
 * False again by the time done runs. */
bool hc_io_waiting(const struct hc_io_req *req);

/* Called on an I/O thread (it opens a file on the mount, which may block),
 * holding a request on fd so that fd stays open, naming the same file,
 * meanwhile. Opens the regular file behind fd again through /proc/self/fd,
 * as a new open file description, read-only (with fd's O_DIRECT). Returns
 * the new fd, or -1 (not a regular file, fd open for writing only, no /proc,
 * the open failed: the caller reads through fd). Through FUSE a new open
 * file description is a new handle of the filesystem's: JuiceFS serves the
 * reads of one handle as one stream (threads reading runs through one
 * shared fd made it fetch 1.5-2.5x the bytes from the bucket, measured;
 * through an open each, 1.1x), and keeps an I/O error a handle met for
 * every later read through it (pkg/vfs/reader.go: fileReader.err). */
int hc_io_reopen(int fd);

/* Any thread. Whether the page cache holds all of [off, off + len) of fd,
 * by cachestat(2) alone: one system call on the file's page cache, no call to
 * the filesystem behind it, so it never waits on a FUSE mount. False when
 * not, or not known (a kernel without cachestat, an error, len 0). */
bool hc_io_cached(int fd, uint64_t off, uint64_t len);

/* What the THREADS engine's copies out of its kept mappings of files did
 * since the pool was created (runs the page cache held; io_threads.c):
 * bytes copied, mappings made or grown, copies a vanished page stopped (the
 * reads then went through preadv). All 0 for URING. Any thread. */
struct hc_io_map_stats {
    uint64_t bytes, grows, faults;
};
void hc_io_pool_map_stats(const struct hc_io_pool *pool, struct hc_io_map_stats *out);

/* Drops the THREADS engine's kept mappings of fd's file, so that
 * posix_fadvise(POSIX_FADV_DONTNEED) can evict its pages again (the kernel
 * does not evict a mapped page): those no I/O thread uses now at once, one
 * in use when that thread is done with it. Nothing for URING. Any thread. */
void hc_io_pool_unmap_file(struct hc_io_pool *pool, int fd);

/* Loop thread only. Runs the done callback of every finished request, and
 * admits waiting requests as bytes in flight drop. Returns how many ran. */
unsigned hc_io_pool_drain(struct hc_io_pool *pool);

/* Loop thread only. Requests submitted whose done has not yet run, and the
 * bytes they cover. */
unsigned hc_io_pool_pending(const struct hc_io_pool *pool);
uint64_t hc_io_pool_inflight_bytes(const struct hc_io_pool *pool);

/* Loop thread only. Waits until every submitted request is finished, runs
 * their done callbacks, stops the threads and frees the pool. Accepts NULL. */
void hc_io_pool_destroy(struct hc_io_pool *pool);

#endif
