/* Private to the I/O pool (io.c, io_uring.c, io_threads.c; see io.h for the
 * contract): the pool and thread structures, the request lists, and what the
 * two engines share with the pool's admission and completion in io.c.
 *
 * Thread rule: the fields of struct hc_io_pool under "loop thread only" are
 * touched by the loop thread alone. cfg, wake, wake_arg, threads, nthreads
 * and each io_thread's pool, efd, ring_ok and lock_ok are set at create
 * before the threads start and only read while they run. An io_thread's ring
 * is used by that thread alone while it runs (the loop thread sets it up
 * before the start and releases it after the join). The queues, the stop
 * flags and the completion list are touched under the lock their comment
 * names; load is atomic; a request belongs to the thread that holds it (see
 * struct hc_io_req). */
#ifndef HC_IO_INT_H
#define HC_IO_INT_H

#include "io.h"

#include <pthread.h>
#include <sys/types.h>
#include <stdbool.h>
#include <stddef.h>

#include <liburing.h>

struct req_list {
    struct hc_io_req *head;
    struct hc_io_req *tail;
};

/* One I/O thread. With HC_IO_ENGINE_THREADS only pool, tid, started and
 * reading are used (efd is -1, ring_ok and lock_ok false): the threads share
 * the pool's queue. */
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

    /* HC_IO_ENGINE_THREADS, under the pool's q_lock: 1 + the fd of the file
     * whose reads this thread is reading as a run, 0 when none (one thread
     * reads a file from the volume at a time: io_threads.c) */
    int reading;
};

/* HC_IO_ENGINE_THREADS: an open file of its own of a file that runs were
 * read from, kept between runs (io_threads.c). */
#define HC_HELD_MAX 16
struct hc_held {
    int rfd; /* -1: a free slot */
    dev_t dev;
    ino_t ino;
    int direct;       /* O_DIRECT of rfd */
    bool in_use;      /* a thread reads through it now */
    bool primary;     /* the one runs from the volume read through (io_threads.c) */
    uint64_t used_ms; /* monotonic, when it was last given back */
    /* where the last run read through it ended, and how many bytes its
     * stream (runs that continued each other) has read: the thread that has
     * it in_use reads and sets them (io_threads.c, run_xfer) */
    uint64_t end, streamed;
    /* a read-only shared mapping of the file's first map_len bytes, or NULL:
     * runs the page cache holds are copied out of it (io_threads.c,
     * map_xfer). Made, grown, dropped and read by the thread that has the
     * slot in_use; otherwise taken out of the slot under h_lock (where rfd
     * is closed, or by hc_io_pool_unmap_file when the slot is idle) and
     * unmapped after the lock is released. */
    const unsigned char *map;
    size_t map_len;
    bool map_failed; /* mmap of it failed: not tried again (same rule) */
    /* under h_lock: hc_io_pool_unmap_file asked for the mapping to go while
     * the slot was in_use; held_put drops it */
    bool map_drop;
};

struct hc_io_pool {
    struct hc_io_config cfg;
    void (*wake)(void *arg);
    void *wake_arg;
    struct io_thread *threads;
    unsigned nthreads;

    /* completion list, under done_lock: filled by I/O threads (and by
     * hc_io_submit on the loop thread for a task with no work), emptied by
     * the loop thread */
    pthread_mutex_t done_lock;
    pthread_cond_t done_cond; /* signalled with each push, for destroy */
    struct req_list done;

    /* HC_IO_ENGINE_THREADS: the queue every thread takes requests from */
    pthread_mutex_t q_lock; /* guards q and q_stop */
    pthread_cond_t q_cond;  /* signalled with each push, broadcast at stop */
    struct req_list q;
    bool q_stop;
    /* HC_IO_ENGINE_THREADS: the open files kept between runs, under h_lock;
     * the thread that has a slot in_use reads its rfd, dev, ino, direct and
     * primary without it (they change only while the slot is not in_use) */
    pthread_mutex_t h_lock;
    pthread_cond_t h_cond; /* broadcast when a kept open file is given back */
    struct hc_held held[HC_HELD_MAX];
    unsigned nheld; /* slots with an rfd (atomic: read without h_lock) */
    /* HC_IO_ENGINE_THREADS, under q_lock: files (by fd) whose last run was in
     * the page cache before it was read (io_threads.c): several threads may
     * read them */
    struct {
        int fd;
        uint64_t until_ms;
    } hot[HC_HELD_MAX];
    /* HC_IO_ENGINE_THREADS: runs going on now by threads whose last run was
     * a copy from memory (the page cache), under q_lock, and how many may
     * (the CPUs, set before the threads start; io_threads.c) */
    unsigned cpu_running;
    unsigned cpu_cap;
    /* HC_IO_ENGINE_THREADS, atomic (hc_io_pool_map_stats): bytes copied out
     * of kept mappings, mappings made or grown, copies that faulted
     * (io_threads.c, map_xfer) */
    uint64_t map_bytes, map_grows, map_faults;

    /* loop thread only */
    struct req_list wait[2]; /* indexed by enum hc_io_prio */
    unsigned pending;        /* submitted, done not yet run */
    unsigned inflight;       /* admitted to a thread, done not yet run */
    unsigned sinks;          /* of those, reads ahead (io.h: not held to the bound) */
    uint64_t inflight_bytes; /* sum of total over the admitted requests */
    unsigned next_thread;    /* round-robin start for the least-loaded pick */
    unsigned high_streak;    /* HIGH admissions in a row while LOW waited */
};

/* The list helpers: any thread; the caller owns the list or holds its lock. */
static inline void list_push(struct req_list *l, struct hc_io_req *req)
{
    req->next = NULL;
    if (l->tail)
        l->tail->next = req;
    else
        l->head = req;
    l->tail = req;
}

static inline void list_push_front(struct req_list *l, struct hc_io_req *req)
{
    req->next = l->head;
    l->head = req;
    if (!l->tail)
        l->tail = req;
}

static inline struct hc_io_req *list_pop(struct req_list *l)
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
static inline void list_splice(struct req_list *dst, struct req_list *src)
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

/* ---- io.c: shared by both engines, called on an I/O thread -------------- */

/* Pushes the finished requests in fin onto the pool's completion list with
 * one lock, and wakes the loop thread if that list was empty. Also called on
 * the loop thread, by hc_io_submit, for a task with no work. */
void hc__io_finish_flush(struct hc_io_pool *pool, struct req_list *fin);
/* Once the whole length is done: runs after() and sets result. */
void hc__io_complete_whole(struct hc_io_req *req);
/* For a request just taken from a queue (checked by hc_io_submit): runs
 * before(). Returns true if it is finished already (before() failed, a task,
 * or nothing to transfer), with result set. */
bool hc__io_start_req(struct hc_io_req *req);
/* Advances cur[]/curcnt/xferred past n transferred bytes (n <= remaining). */
void hc__io_advance(struct hc_io_req *req, size_t n);
/* The outcome of one transfer of what is left of req (bytes, or -errno).
 * Returns true if req is finished (result set), false if what is left must be
 * transferred again. */
bool hc__io_handle_xfer(struct hc_io_req *req, ssize_t res);

/* ---- io_uring.c: HC_IO_ENGINE_URING -------------------------------------- */

/* Loop thread, at create: t's lock, eventfd and ring. Returns 0 or -errno
 * (hc__ring_thread_release releases what was set up). */
int hc__ring_thread_init(struct io_thread *t, unsigned queue_depth);
/* The body of a URING I/O thread (arg: its struct io_thread). */
void *hc__ring_thread_main(void *arg);
/* Loop thread: hands req to the least-loaded thread. */
void hc__ring_dispatch(struct hc_io_pool *pool, struct hc_io_req *req);
/* Loop thread: tells every started thread to stop once its work is done. */
void hc__ring_threads_stop(struct hc_io_pool *pool);
/* Loop thread, after t was joined (or never started): frees its ring,
 * eventfd and lock, whichever were set up. */
void hc__ring_thread_release(struct io_thread *t);

/* ---- io_threads.c: HC_IO_ENGINE_THREADS ---------------------------------- */

/* The body of a THREADS I/O thread (arg: its struct io_thread). */
void *hc__sync_thread_main(void *arg);
/* Loop thread: puts req on the shared queue. */
void hc__sync_dispatch(struct hc_io_pool *pool, struct hc_io_req *req);
/* Loop thread: tells the threads to stop once the shared queue is empty. */
void hc__sync_threads_stop(struct hc_io_pool *pool);

#endif
