/* Segments: the descriptors of this node's and other nodes' segment files,
 * their lifecycle and their fds.
 *
 * A local segment is created open (SEG_OPEN) and takes appends at its tail
 * (write.c); it stops taking them when full, old or failed (SEG_CLOSING),
 * and once its pending writes are over its .idx is written (SEG_SEALING) and
 * it is immutable (SEG_SEALED), like every segment of another node. A
 * dropped segment (SEG_DEAD) leaves the index at once and is freed once no
 * read, open or unlink uses it.
 *
 * Ordered commit: a segment's pending writes sit on its list in offset order;
 * a record is committed (put in the index, its callbacks run) only when it
 * and every earlier record of the segment are finished, so a restart's scan
 * keeps every acknowledged page: it steps over a record whose payload fails
 * its CRC (the header gives the size) and stops only at the first bad header
 * or torn tail, which an acknowledged record never follows. A failed write
 * closes the segment for appends and fails the records behind it too (they
 * could not survive a scan).
 *
 * fds: a segment read needs its fd, opened on an I/O thread the first time
 * (reads wait for it on the segment); idle fds of sealed segments beyond
 * MAX_FDS are closed, least recently used first.
 *
 * Threads: every function here runs on the loop thread, except the *_before
 * callbacks, which run on an I/O thread and say so. The rule for those: each
 * reads only its task (handed to it at submit, not touched by the loop thread
 * until its done runs) and of the store only what is immutable after open
 * (hc__open_file). Every call on the mount after start-up runs in one of them:
 * create, open, fdatasync, the .idx write and rename, unlink and close. Only
 * hc__seal_sync blocks its caller: it runs at open (recovery, before the
 * server listens) and at close (shutdown, once quiesced). The one other
 * exception: with no memory to hand an fd over, hc__fd_close closes it on
 * the loop thread. */
#include "store_int.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

#define MAX_FDS 256u /* idle segment fds kept open; more are closed LRU */

/* Adds a segment descriptor. Returns it, or NULL on -ENOMEM. */
struct seg *hc__seg_new(struct hc_store *s, uint32_t node, uint64_t seq, bool local,
                        enum seg_state state)
{
    uint32_t id;
    for (id = 0; id < s->segs_cap; id++)
        if (!s->segs[id])
            break;
    if (id == s->segs_cap) {
        uint32_t ncap = s->segs_cap ? s->segs_cap * 2 : 64;
        struct seg **n = realloc(s->segs, ncap * sizeof(*n));
        if (!n)
            return NULL;
        memset(n + s->segs_cap, 0, (ncap - s->segs_cap) * sizeof(*n));
        s->segs = n;
        s->segs_cap = ncap;
    }
    struct seg *seg = calloc(1, sizeof(*seg));
    if (!seg)
        return NULL;
    seg->id = id;
    seg->node = node;
    seg->seq = seq;
    seg->local = local;
    seg->state = state;
    seg->fd = -1;
    seg->last_use_ms = s->now_ms;
    s->segs[id] = seg;
    s->st->segments++;
    return seg;
}

/* ---- closing fds ------------------------------------------------------------ */

struct close_task {
    struct hc_io_req req;
    struct hc_store *s;
    int *fds;
    size_t n;
};

/* Called on an I/O thread: a close() on the mount is a round trip (a flush of
 * a written file) and is kept off the loop thread. Reads only its task: the
 * fds are no longer the store's. */
static int close_before(struct hc_io_req *req)
{
    struct close_task *t = container_of(req, struct close_task, req);
    for (size_t i = 0; i < t->n; i++)
        close(t->fds[i]);
    return 0;
}

static void close_submit(struct hc_store *s);

/* Back on the loop thread: the next batch, if fds were handed over meanwhile. */
static void close_done(struct hc_io_req *req)
{
    struct close_task *t = container_of(req, struct close_task, req);
    struct hc_store *s = t->s;

    s->inflight--;
    s->closing_busy = false;
    free(t->fds);
    free(t);
    if (s->nclosing)
        close_submit(s);
}

/* Hands the fds of s->closing to an I/O thread, one task at a time. */
static void close_submit(struct hc_store *s)
{
    struct close_task *t;
    if (s->closing_busy || !(t = calloc(1, sizeof(*t))))
        return; /* out of memory: the next hc__fd_close tries again */
    t->s = s;
    t->fds = s->closing;
    t->n = s->nclosing;
    s->closing = NULL;
    s->nclosing = s->capclosing = 0;
    s->closing_busy = true;
    hc__task_submit(s, &t->req, HC_IO_PRIO_LOW, close_before, close_done, NULL);
}

/* Closes fd (a segment's, or one nobody wants) on an I/O thread. Only when
 * memory is too short to hand it over is it closed here, on the loop thread. */
void hc__fd_close(struct hc_store *s, int fd)
{
    if (s->nclosing == s->capclosing) {
        size_t ncap = s->capclosing ? s->capclosing * 2 : 16;
        int *n = realloc(s->closing, ncap * sizeof(*n));
        if (!n) {
            close(fd);
            return;
        }
        s->closing = n;
        s->capclosing = ncap;
    }
    s->closing[s->nclosing++] = fd;
    close_submit(s);
}

/* Closes seg's fd, if open (on an I/O thread, hc__fd_close); the next read
 * opens it anew, so a failed one is forgotten. */
void hc__seg_close_fd(struct hc_store *s, struct seg *seg)
{
    if (seg->fd >= 0) {
        hc__fd_close(s, seg->fd);
        seg->fd = -1;
        s->nfds--;
    }
    seg->fd_failed = false;
}

/* Frees a dropped segment once nothing uses it. */
void hc__seg_maybe_free(struct hc_store *s, struct seg *seg)
{
    if (seg->state != SEG_DEAD || seg->refs || seg->opening || seg->unlinking || seg->unlink_wanted)
        return;
    hc__seg_close_fd(s, seg);
    s->segs[seg->id] = NULL;
    free(seg->recs);
    free(seg->wb);
    free(seg);
}

struct unlink_task {
    struct hc_io_req req;
    struct hc_store *s;
    struct seg *seg;
    char idx[PATH_MAX], data[PATH_MAX], tidx[PATH_MAX];
};

/* Called on an I/O thread: the .idx goes first, so that a crash in between
 * leaves an unsealed segment (scanned again), never an index without data.
 * Reads only its task (the paths were made for it at submit). */
static int unlink_before(struct hc_io_req *req)
{
    struct unlink_task *t = container_of(req, struct unlink_task, req);
    int rc = 0;
    if (unlink(t->idx) < 0 && errno != ENOENT)
        rc = -errno;
    if (t->tidx[0])
        (void)unlink(t->tidx); /* a tail index published while it was open */
    if (unlink(t->data) < 0 && errno != ENOENT)
        rc = -errno;
    return rc;
}

/* Back on the loop thread: the segment may go now. */
static void unlink_done(struct hc_io_req *req)
{
    struct unlink_task *t = container_of(req, struct unlink_task, req);
    struct hc_store *s = t->s;
    struct seg *seg = t->seg;

    s->inflight--;
    s->unlinks--;
    if (req->result < 0)
        hc_log(HC_LOG_WARN, "store: removing %s: %s", t->data, strerror((int)-req->result));
    seg->unlinking = false;
    free(t);
    hc__seg_maybe_free(s, seg);
}

/* Removes seg's files on an I/O thread. When memory is short, seg stays
 * (unlink_wanted) and hc__unlink_retry submits it again at a later tick. */
static void unlink_submit(struct hc_store *s, struct seg *seg)
{
    struct unlink_task *t = calloc(1, sizeof(*t));
    if (!t) {
        seg->unlink_wanted = true;
        s->unlink_retry = true;
        return;
    }
    seg->unlink_wanted = false;
    t->s = s;
    t->seg = seg;
    hc__seg_path(s, seg, "idx", t->idx, sizeof(t->idx));
    hc__seg_path(s, seg, "seg", t->data, sizeof(t->data));
    t->tidx[0] = '\0';
    if (seg->local && seg->tail_ver)
        hc__tail_path(s, seg, seg->tail_ver, false, t->tidx, sizeof(t->tidx));
    seg->unlinking = true;
    s->unlinks++;
    hc__task_submit(s, &t->req, HC_IO_PRIO_LOW, unlink_before, unlink_done, NULL);
}

/* At a tick: submits again the unlinks that found no memory. */
void hc__unlink_retry(struct hc_store *s)
{
    if (!s->unlink_retry)
        return;
    s->unlink_retry = false;
    for (uint32_t i = 0; i < s->segs_cap; i++) {
        struct seg *seg = s->segs[i];
        if (seg && seg->state == SEG_DEAD && seg->unlink_wanted && !seg->opening)
            unlink_submit(s, seg);
    }
}

/* Drops a sealed segment from the view: its index entries go at once (new
 * gets miss); reads in flight keep the fd until they finish. evict: this
 * node's segment dropped for space, its files are removed. */
void hc__seg_drop(struct hc_store *s, struct seg *seg, bool evict)
{
    hc__seg_drop_gone(s, seg, evict, hc__index_drop_seg(s, seg));
}

/* hc__seg_drop of a segment whose n index entries were removed already (by
 * the caller's own pass over the index). */
void hc__seg_drop_gone(struct hc_store *s, struct seg *seg, bool evict, size_t n)
{
    hc__linger_drop(s, seg->id, -1);
    if (seg->local && seg->state == SEG_SEALED)
        s->sealed_gen++; /* keys.c */
    hc__fleet_drop_seg(s, seg);
    seg->state = SEG_DEAD;
    s->st->segments--;
    if (seg->local)
        hc__local_bytes_set(s, s->local_bytes - seg->size);
    if (evict) {
        s->st->evicted_pages += n;
        s->st->evicted_segments++;
        if (seg->opening)
            seg->unlink_wanted = true; /* after the open, or it would fail */
        else
            unlink_submit(s, seg);
    }
    hc__seg_maybe_free(s, seg);
}

/* ---- opens for reads ------------------------------------------------------ */

struct open_task {
    struct hc_io_req req;
    struct hc_store *s;
    struct seg *seg;
    int fd;
    bool direct;
    char path[PATH_MAX];
};

/* Called on an I/O thread: opening a file is a metadata round trip on the
 * mount, kept off the loop thread. Of the store, hc__open_file reads only
 * what never changes after open (see there). */
static int open_before(struct hc_io_req *req)
{
    struct open_task *t = container_of(req, struct open_task, req);
    t->fd = hc__open_file(t->s, t->path, O_RDONLY | O_CLOEXEC, 0, &t->direct);
    return t->fd < 0 ? t->fd : 0;
}

/* Loop thread. A list of reads linked by wnext, sorted by offset (stably:
 * reads of one offset keep their order). */
static struct rd *rd_sorted(struct rd *list)
{
    if (!list || !list->wnext)
        return list;
    struct rd *slow = list, *fast = list->wnext;
    while (fast && fast->wnext) {
        slow = slow->wnext;
        fast = fast->wnext->wnext;
    }
    struct rd *a = list, *b = slow->wnext, *head = NULL, **tail = &head;
    slow->wnext = NULL;
    a = rd_sorted(a);
    b = rd_sorted(b);
    while (a && b) {
        struct rd **m = b->off < a->off ? &b : &a;
        *tail = *m;
        tail = &(*m)->wnext;
        *m = (*m)->wnext;
    }
    *tail = a ? a : b;
    return head;
}

/* Back on the loop thread: keeps the fd (unless another open won) and
 * submits or fails the reads that waited for it. */
static void open_done(struct hc_io_req *req)
{
    struct open_task *t = container_of(req, struct open_task, req);
    struct hc_store *s = t->s;
    struct seg *seg = t->seg;
    struct rd *r, *list = NULL, *next;

    s->inflight--;
    seg->opening = false;
    if (req->result == 0) {
        if (seg->fd < 0) {
            seg->fd = t->fd;
            seg->fd_direct = t->direct;
            s->nfds++;
        } else {
            hc__fd_close(s, t->fd);
        }
    }
    /* Waiters were pushed at the head: reverse to their order, then sort by
     * offset. Several clients' batches wait on a cold segment's open (after
     * a restart, or once its fd was closed for being unused); served in the
     * order they came, an idle thread started the file's stream at the
     * first client's pages, which may be the file's later stretch: the
     * earlier one, read next, had JuiceFS read ahead over the stretch
     * already read and, without a local cache, download it again. */
    for (r = seg->waiters; r; r = next) {
        next = r->wnext;
        r->wnext = list;
        list = r;
    }
    seg->waiters = NULL;
    list = rd_sorted(list);
    if (seg->unlink_wanted)
        unlink_submit(s, seg);
    for (r = list; r; r = next) {
        next = r->wnext;
        if (req->result == 0)
            hc__rd_submit(s, r);
        else
            hc__rd_finish(s, r, req->result);
    }
    free(t);
}

/* Opens seg's file for reads on an I/O thread; the reads on seg->waiters go
 * on once it is open (hc__rd_submit) or fail with its error (hc__rd_finish).
 * The caller checked that no open is in flight. Returns 0 or -ENOMEM
 * (nothing submitted). */
int hc__seg_open(struct hc_store *s, struct seg *seg)
{
    struct open_task *t = calloc(1, sizeof(*t));
    if (!t)
        return -ENOMEM;
    t->s = s;
    t->seg = seg;
    hc__seg_path(s, seg, "seg", t->path, sizeof(t->path));
    seg->opening = true;
    hc__task_submit(s, &t->req, HC_IO_PRIO_HIGH, open_before, open_done, NULL);
    return 0;
}

static int lru_cmp(const void *a, const void *b)
{
    const struct seg *x = *(struct seg *const *)a, *y = *(struct seg *const *)b;
    return x->last_use_ms < y->last_use_ms ? -1 : x->last_use_ms > y->last_use_ms;
}

/* Closes the least recently used idle fds of sealed segments over MAX_FDS. */
void hc__fd_trim(struct hc_store *s)
{
    if (s->nfds <= MAX_FDS)
        return;
    struct seg **c = malloc(s->segs_cap * sizeof(*c));
    size_t n = 0;
    if (!c)
        return;
    for (uint32_t i = 0; i < s->segs_cap; i++) {
        struct seg *seg = s->segs[i];
        if (seg && seg->fd >= 0 && seg->state == SEG_SEALED && !seg->refs && !seg->opening)
            c[n++] = seg;
    }
    qsort(c, n, sizeof(*c), lru_cmp);
    for (size_t i = 0; i < n && s->nfds > MAX_FDS * 3 / 4; i++)
        hc__seg_close_fd(s, c[i]);
    free(c);
}

/* ---- sealing ------------------------------------------------------------- */

struct seal_task {
    struct hc_io_req req;
    struct hc_store *s;
    struct seg *seg;
    int fd;
    uint64_t truncate_to; /* > 0: the file ends there (a failed tail cut off) */
    unsigned char *buf;
    size_t len;
    char tmp[PATH_MAX], path[PATH_MAX], tidx[PATH_MAX];
};

/* Called on an I/O thread: data first, then the index that vouches for it.
 * Reads only its task: the .idx bytes are a snapshot taken at submit, and
 * t->fd is the segment's, which stays open until seal_done runs (fd_trim
 * closes only sealed segments' fds, and a sealing segment cannot be
 * dropped). */
static int seal_before(struct hc_io_req *req)
{
    struct seal_task *t = container_of(req, struct seal_task, req);
    if (t->truncate_to > 0)
        (void)!ftruncate(t->fd, (off_t)t->truncate_to); /* best effort: space back */
    if (fdatasync(t->fd) < 0 && errno != EINVAL)
        return -errno;
    int rc = hc__write_file_atomic(t->tmp, t->path, t->buf, t->len);
    if (rc == 0)
        if (t->tidx[0])
            (void)unlink(t->tidx); /* the tail index (tail.c): the .idx says it all */
    return rc;
}

/* Back on the loop thread: the segment is sealed (a failed .idx leaves it to
 * a restart's scan). */
static void seal_done(struct hc_io_req *req)
{
    struct seal_task *t = container_of(req, struct seal_task, req);
    struct hc_store *s = t->s;
    struct seg *seg = t->seg;

    s->inflight--;
    if (req->result < 0) {
        s->st->io_errors++;
        hc_log(HC_LOG_ERR, "store: sealing %s: %s (a restart will scan it)", t->path,
               strerror((int)-req->result));
    }
    seg->state = SEG_SEALED;
    s->sealed_gen++; /* keys.c */
    free(seg->recs);
    seg->recs = NULL;
    seg->nrecs = seg->caprecs = 0;
    free(t->buf);
    free(t);
    hc__evict_capacity(s);
}

/* Seals a local segment whose writes are all finished: its .idx is written on
 * an I/O thread from a snapshot taken now. */
static void seal_submit(struct hc_store *s, struct seg *seg)
{
    free(seg->wb); /* nothing pending: no write in flight */
    seg->wb = NULL;
    /* Nothing of it was written whole (the volume was full, say): the file
     * goes, not sealed empty. Disk accounting follows what is on disk. */
    if (seg->nrecs == 0) {
        seg->state = SEG_DEAD;
        s->st->segments--;
        hc__local_bytes_set(s, s->local_bytes - seg->size);
        unlink_submit(s, seg);
        hc__seg_maybe_free(s, seg);
        return;
    }
    uint64_t cut = 0;
    if (seg->cascade && seg->good_end < seg->size) { /* records failed at its tail */
        cut = seg->good_end;
        hc__local_bytes_set(s, s->local_bytes - (seg->size - seg->good_end));
        seg->size = seg->good_end;
    }
    struct seal_task *t = calloc(1, sizeof(*t));
    if (!t || hc__idx_encode(s, seg, &t->buf, &t->len) < 0) {
        hc_log(HC_LOG_ERR, "store: out of memory sealing segment %016" PRIx64, seg->seq);
        free(t);
        seg->state = SEG_SEALED; /* no more appends; a restart scans it */
        return;
    }
    t->s = s;
    t->seg = seg;
    t->fd = seg->fd;
    t->truncate_to = cut;
    hc__seg_path(s, seg, "idx.tmp", t->tmp, sizeof(t->tmp));
    hc__seg_path(s, seg, "idx", t->path, sizeof(t->path));
    t->tidx[0] = '\0';
    if (seg->tail_ver)
        hc__tail_path(s, seg, seg->tail_ver, false, t->tidx, sizeof(t->tidx));
    seg->state = SEG_SEALING;
    hc__task_submit(s, &t->req, HC_IO_PRIO_LOW, seal_before, seal_done, NULL);
}

/* Same, blocking, on the calling thread (the loop thread at close and open).
 * Returns 0 or -errno. */
int hc__seal_sync(struct hc_store *s, struct seg *seg)
{
    char tmp[PATH_MAX], path[PATH_MAX];
    unsigned char *buf;
    size_t len;
    int rc = hc__idx_encode(s, seg, &buf, &len);
    if (rc < 0)
        return rc;
    if (seg->fd >= 0 && fdatasync(seg->fd) < 0 && errno != EINVAL) {
        rc = -errno;
        free(buf);
        return rc;
    }
    hc__seg_path(s, seg, "idx.tmp", tmp, sizeof(tmp));
    hc__seg_path(s, seg, "idx", path, sizeof(path));
    rc = hc__write_file_atomic(tmp, path, buf, len);
    free(buf);
    if (rc == 0) {
        if (seg->tail_ver) {
            hc__tail_path(s, seg, seg->tail_ver, false, path, sizeof(path));
            (void)unlink(path);
        }
        seg->state = SEG_SEALED;
        s->sealed_gen++; /* keys.c */
        free(seg->recs);
        seg->recs = NULL;
        seg->nrecs = seg->caprecs = 0;
    }
    return rc;
}

/* Stops appends to seg (it leaves the open ones); it seals once its pending
 * writes are done. */
void hc__seg_close_appends(struct hc_store *s, struct seg *seg)
{
    for (unsigned i = 0; i < s->nopen; i++) {
        if (s->opens[i] == seg) {
            s->opens[i] = s->opens[--s->nopen];
            break;
        }
    }
    if (seg->state != SEG_OPEN)
        return;
    seg->state = SEG_CLOSING;
    seg->closed_wclock = s->wclock;
    if (!seg->pend_head)
        seal_submit(s, seg);
}

/* ---- creating the next segment ------------------------------------------ */

struct create_task {
    struct hc_io_req req;
    struct hc_store *s;
    struct wbatch *wb; /* the new segment's writer */
    uint64_t seq;      /* the first seq to try; on return, the one created */
    int fd;
    bool direct;
    char dir[PATH_MAX]; /* this node's directory */
    char path[PATH_MAX];
};

/* Called on an I/O thread: creates dir/<seq>.seg, stepping over names someone
 * left there (a seq is never reused). It reads only its task, and of the
 * store what hc__open_file reads (immutable after open, see there). */
static int create_before(struct hc_io_req *req)
{
    struct create_task *t = container_of(req, struct create_task, req);
    for (int tries = 0;; tries++) {
        if (snprintf(t->path, sizeof(t->path), "%s/%016" PRIx64 ".seg", t->dir, t->seq) >=
            (int)sizeof(t->path))
            return -ENAMETOOLONG;
        t->fd =
            hc__open_file(t->s, t->path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644, &t->direct);
        if (t->fd != -EEXIST || tries == 16)
            break;
        t->seq++;
    }
    return t->fd < 0 ? t->fd : 0;
}

/* Called on an I/O thread: the file created by create_before is not wanted
 * (no memory for its descriptor). Reads only its task. */
static int create_undo_before(struct hc_io_req *req)
{
    struct create_task *t = container_of(req, struct create_task, req);
    close(t->fd);
    unlink(t->path);
    return 0;
}

/* Back on the loop thread after create_undo_before. */
static void create_undo_done(struct hc_io_req *req)
{
    struct create_task *t = container_of(req, struct create_task, req);
    t->s->inflight--;
    free(t);
}

/* Back on the loop thread: the new segment becomes one of the open ones and
 * the sets waiting for it take their places (hc__place_waiting), or they fail with
 * the create's error. */
static void create_done(struct hc_io_req *req)
{
    struct create_task *t = container_of(req, struct create_task, req);
    struct hc_store *s = t->s;
    struct seg *seg = NULL;
    int rc = (int)req->result;

    s->inflight--;
    s->creating = false;
    if (rc == 0) {
        if (t->seq >= s->next_seq)
            s->next_seq = t->seq + 1;
        seg = t->wb ? hc__seg_new(s, 0, t->seq, true, SEG_OPEN) : NULL;
        if (!seg)
            rc = -ENOMEM;
    }
    if (rc < 0 && rc != -ENOMEM)
        hc_log(HC_LOG_ERR, "store: creating %s: %s", t->path, strerror(-rc));
    if (seg) {
        seg->fresh = true;
        seg->fd = t->fd;
        seg->fd_direct = t->direct;
        s->nfds++;
        seg->opened_ms = s->now_ms;
        seg->opened_known = s->have_now;
        seg->wb = t->wb;
        if (s->nopen == HC_STORE_OPEN_MAX) /* not expected: one create at a time */
            hc__seg_close_appends(s, s->opens[0]);
        s->opens[s->nopen++] = seg;
        free(t);
    } else if (req->result == 0) {
        /* The task is reused to take the file away again: no allocation. */
        free(t->wb);
        t->wb = NULL;
        hc__task_submit(s, &t->req, HC_IO_PRIO_LOW, create_undo_before, create_undo_done, NULL);
    } else {
        free(t->wb);
        free(t);
    }
    hc__place_waiting(s, rc);
}

/* Creates the next local segment file on an I/O thread; once it is there it
 * becomes one of the open ones and hc__place_waiting runs (with the create's
 * error if it failed). One create at a time: with one in flight it does
 * nothing (returns 0; that create's done places the waiting sets). Callers
 * start one only while fewer than open_segments are open, or when none has
 * room. Returns 0, or -ENOMEM with nothing submitted. */
int hc__seg_create(struct hc_store *s)
{
    if (s->creating)
        return 0; /* its done places the waiting sets (callbacks can re-enter) */
    struct create_task *t = calloc(1, sizeof(*t));
    if (!t || !(t->wb = hc__wb_new())) {
        free(t);
        return -ENOMEM;
    }
    t->s = s;
    t->seq = s->next_seq;
    t->fd = -1;
    snprintf(t->dir, sizeof(t->dir), "%s", s->dir);
    s->creating = true;
    hc__task_submit(s, &t->req, HC_IO_PRIO_HIGH, create_before, create_done, NULL);
    return 0;
}

/* ---- ordered commit -------------------------------------------------------- */

/* Appends r to the records seg's .idx will list. Returns 0 or -ENOMEM. */
int hc__seg_rec_add(struct seg *seg, const struct seg_rec *r)
{
    if (seg->nrecs == seg->caprecs) {
        size_t ncap = seg->caprecs ? seg->caprecs * 2 : 64;
        struct seg_rec *n = realloc(seg->recs, ncap * sizeof(*n));
        if (!n)
            return -ENOMEM;
        seg->recs = n;
        seg->caprecs = ncap;
    }
    seg->recs[seg->nrecs++] = *r;
    return 0;
}

/* Commits the finished records at the head of seg's pending list, in order:
 * index first (the page is visible), then the callbacks. Seals the segment
 * once it is closed and nothing is pending. */
void hc__seg_commit(struct hc_store *s, struct seg *seg)
{
    struct wrec *w;
    while ((w = seg->pend_head) && w->done) {
        seg->pend_head = w->next;
        if (!seg->pend_head)
            seg->pend_tail = NULL;
        if (w->in_tab)
            hc__ptab_del(&s->writing, &w->pn);

        int st = w->status;
        /* A poisoned record (EFAULT: written, but its payload CRC cannot
         * match) is stepped over by a scan: the records after it stand. */
        if (st < 0 && st != -EFAULT && !seg->cascade)
            seg->cascade = st;
        else if (st == 0 && seg->cascade)
            st = seg->cascade;
        struct seg_rec rec = {.h = w->pn.h,
                              .off = w->off,
                              .len = (uint32_t)w->len,
                              .ns = w->ns,
                              .sblocks = hc__wrec_sblocks(w)};
        if (st == 0 && hc__seg_rec_add(seg, &rec) < 0)
            st = -ENOMEM;
        if (st == 0) {
            uint64_t end = w->off + ent_rec_size(w->len, hc__wrec_sblocks(w));
            if (end > seg->good_end)
                seg->good_end = end;
            if (!hc__tombstoned(s, w->ns, seg->seq, w->off))
                hc__index_put(s, seg, w->pn.h, w->off, (uint32_t)w->len, w->ns,
                              hc__wrec_sblocks(w));
        } else {
            s->st->set_errors++;
        }
        for (struct waiter *x = w->waiters; x; x = x->next)
            x->cb(x->data, hc__waiter_status(w, x, st), st == 0 ? w->len : 0);
        hc__wrec_free(w);
    }
    if (seg->state == SEG_CLOSING && !seg->pend_head)
        seal_submit(s, seg);
}
