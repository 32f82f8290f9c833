/* The get path: storage reads of records (struct rd). A get that no lingering
 * page or read in flight serves (coalesce.c) reads the record's header block
 * and payload in one request, on an I/O thread that checks everything before
 * a byte is handed out (rd_after), except the payload of a page read straight
 * into the region slot of a client that checks it in its copy out (pb.check,
 * GetRequest.client_check: the CRC goes with the answer, and a page that fails
 * there is asked for again with the daemon checking). A record this run wrote that reads back
 * short or bad is read again at once (RD_RETRIES), one that meets an I/O error
 * a little later, from the tick (RD_EIO_RETRIES); a record that stays bad is a
 * miss, counted in corrupt_records and dropped from the index.
 *
 * A read that met an I/O error is read again through an open file of its own
 * (rd_fresh_read), and so is every read of a segment whose fd met one, until
 * that fd is replaced: JuiceFS keeps an error a handle met for every later
 * read through it.
 *
 * Threads: loop thread, except rd_after (with rd_own_copy), rd_before_retry
 * and rd_fresh_read (with preadv_all), which run on an I/O thread and touch
 * only their rd, its buffers, the request's fd (the segment's, open while the
 * read holds it) and an fd of their own; rd_before_retry also drops the I/O
 * pool's kept mappings of the file (hc_io_pool_unmap_file, under its
 * h_lock). */
#include "store_int.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "crc32c.h"
#include "guard.h"
#include "log.h"

#define RD_RETRIES 3 /* re-reads of a bad record this run wrote before it is dropped */

/* Later re-reads of a record this run wrote after an I/O error: RD_EIO_RETRIES
 * of them, the first RD_EIO_DELAY_MS later, each delay twice the one before
 * (at the store's tick, so at most about 1.5 s plus a tick in all). */
#define RD_EIO_RETRIES 4
#define RD_EIO_DELAY_MS 100

/* Answers a get with a hit of len bytes. */
void hc__client_hit(struct hc_store *s, hc_store_cb cb, void *data, uint64_t len)
{
    s->st->hits++;
    s->st->bytes_served += len;
    cb(data, 0, len);
}

/* Answers the getter of a read that found a good page: a hit, or EFAULT when
 * the copy into its slot met a vanished page (rd.buf_err). */
void hc__rd_answer(struct hc_store *s, struct rd *r)
{
    if (r->reinsert) {
        r->cb(r->data, 0, r->len);
        return;
    }
    if (r->buf_err) {
        s->st->client_faults++;
        r->cb(r->data, r->buf_err, 0);
        return;
    }
    if (r->crc_left) {
        *r->pb.check = 1ull << 32 | r->crc;
        s->st->client_checks++;
    }
    hc__client_hit(s, r->cb, r->data, r->len);
}

void hc__rd_free(struct rd *r)
{
    free(r->hdr);
    free(r->bounce);
    free(r->plain);
    free(r->own);
    free(r);
}

/* Called on an I/O thread, from rd_after, for a read that went straight into
 * its getter's slot and was joined meanwhile: the payload read again from
 * the file (the page cache the first read filled, as a rule) into a
 * daemon-owned buffer for the joiners, kept only if it passes the check.
 * Without it (no memory, a failed read or check) the joiners are served by a
 * read of their own (coalesce.c). */
static void rd_own_copy(struct rd *r, int fd, uint32_t crc)
{
    void *own;
    if (r->own || posix_memalign(&own, HC_STORE_ALIGN, round_up(r->len)) != 0)
        return; /* (one already: a read tried again by the tests' fail hook) */
    if (hc__pread_all(fd, own, r->len, r->off + HC_STORE_ALIGN) == 0 &&
        hc_crc32c(0, own, r->len) == crc)
        r->own = own;
    else
        free(own);
}

/* Called on an I/O thread once the header block and payload are in: checks
 * everything before a byte is handed out (the payload of a page in a region
 * slot whose client checks it: its CRC noted for the answer instead), and
 * decompresses a compressed record (its CRC covers the stored bytes, its
 * header the original length). */
static int rd_after(struct hc_io_req *req)
{
    struct rd *r = container_of(req, struct rd, req);
    struct hdr_view v;

    if (hc__hdr_check(r->hdr, &v) < 0 || v.orig != r->len || v.zstd != (r->sblocks != 0))
        return -EBADMSG;
    if (!r->reinsert &&
        (v.nslen != r->nslen || v.klen != r->klen || memcmp(v.ns, r->names, r->nslen) != 0 ||
         memcmp(v.key, r->names + r->nslen, r->klen) != 0))
        return -EBADMSG;
    if (r->sblocks) {
        int rc;
        if (round_up(v.len) != (uint64_t)r->sblocks * HC_STORE_ALIGN ||
            hc_crc32c(0, r->bounce, v.len) != v.payload_crc)
            return -EBADMSG;
        if ((rc = hc__zdecompress(r->plain, r->len, r->bounce, v.len)) < 0)
            return rc;
        if (hc_pbuf_put(&r->pb, r->plain, r->len) < 0)
            r->buf_err = -EFAULT;
        r->stored = (uint32_t)v.len;
        return 0;
    }
    /* Straight into a region slot of a client that checks what it copies out
     * (docs/PROTOCOL.md): no pass over the page here, its CRC goes with the
     * answer. The joiners' copy is read and checked apart (rd_own_copy).
     * Where the pool copied the page itself (out of a mapping of the file),
     * its CRC came with that copy (hc_io_req.crc_len), computed over the
     * file's bytes, not the slot's: checked here too, at no cost. */
    r->crc_left = r->pb.check && !r->bounce && !r->reinsert;
    r->slot_checked = !r->bounce && !r->crc_left && !req->crc_done;
    if (req->crc_done)
        r->crc = req->crc;
    else if (r->crc_left)
        r->crc = v.payload_crc;
    else if (r->bounce)
        r->crc = hc_crc32c(0, r->bounce, r->len);
    else if (hc_pbuf_crc(&r->pb, r->len, &r->crc) < 0)
        return -EFAULT; /* the slot vanished under the check (a truncated pool) */
    if (r->crc != v.payload_crc)
        return -EBADMSG;
    if (r->bounce && !r->reinsert) {
        if (hc_pbuf_put(&r->pb, r->bounce, r->len) < 0)
            r->buf_err = -EFAULT;
    } else if (__atomic_load_n(&r->want_own, __ATOMIC_ACQUIRE))
        rd_own_copy(r, req->fd, v.payload_crc);
    r->stored = r->len;
    return 0;
}

/* Loop thread. Whether a read ahead of bytes fits the budget
 * (cfg.read_ahead_bytes). */
static bool ahead_fits(const struct hc_store *s, uint64_t bytes)
{
    return bytes > 0 && bytes <= HC_IO_SINK_MAX && bytes <= s->cfg.read_ahead_bytes &&
           s->ahead_bytes <= s->cfg.read_ahead_bytes - bytes;
}

/* Loop thread. r leaves the reads waiting to be read ahead (s->aq). */
static void aq_unlink(struct hc_store *s, struct rd *r)
{
    if (!r->in_aq)
        return;
    if (r->aq_prev)
        r->aq_prev->aq_next = r->aq_next;
    else
        s->aq_head = r->aq_next;
    if (r->aq_next)
        r->aq_next->aq_prev = r->aq_prev;
    else
        s->aq_tail = r->aq_prev;
    r->in_aq = false;
}

/* Loop thread. The reads in s->aq, oldest first, are read ahead while the
 * budget allows; one the pool started meanwhile leaves without. Not
 * re-entered: a read ahead that fails at once ends in hc__rd_finish, which
 * calls here again (the outer loop goes on). */
static void aq_run(struct hc_store *s)
{
    struct rd *r;

    if (s->aq_running)
        return;
    s->aq_running = true;
    while ((r = s->aq_head)) {
        if (hc_io_waiting(&r->req) && !ahead_fits(s, r->aq_bytes))
            break;
        aq_unlink(s, r);
        if (hc_io_waiting(&r->req))
            hc__rd_ahead(s, r->seg, r->off, r->aq_bytes);
    }
    s->aq_running = false;
}

/* Back on the loop thread (tests may turn the result into a failure). */
static void rd_done(struct hc_io_req *req)
{
    struct rd *r = container_of(req, struct rd, req);
    struct hc_store *s = r->s;
    ssize_t result = req->result;

    s->inflight--;
    aq_unlink(s, r); /* it no longer waits */
    if (s->fail_reads > 0 && !r->ahead) {
        s->fail_reads--;
        result = s->fail_err;
    }
    hc__rd_finish(s, r, result);
}

/* Called on an I/O thread before a re-read of a record this run wrote: the
 * file's view may lag its writes. Through FUSE (JuiceFS) a page of the file
 * can be cached as it was before a write that is already acknowledged (the
 * cache dropped it while the write was in flight and read it back from the
 * filesystem before the write reached it), and the cached size can be short:
 * refresh the attributes and drop the record's range from the page cache so
 * the read goes to the filesystem again. Failures only make the retry less
 * likely to help. */
static int rd_before_retry(struct hc_io_req *req)
{
    struct rd *r = container_of(req, struct rd, req);
    uint64_t len =
        HC_STORE_ALIGN + (r->sblocks ? (uint64_t)r->sblocks * HC_STORE_ALIGN : round_up(r->len));
    struct statx stx;

    (void)statx(req->fd, "", AT_EMPTY_PATH | AT_STATX_FORCE_SYNC, STATX_SIZE, &stx);
    /* a page mapped by the pool's copies is not evicted: those mappings go
     * first (one another thread copies out of now goes when it is done, so
     * a retry after this one gets the volume's bytes). s->io is set before
     * any read and never changes. */
    hc_io_pool_unmap_file(r->s->io, req->fd);
    (void)posix_fadvise(req->fd, (off_t)r->off, (off_t)len, POSIX_FADV_DONTNEED);
    return 0;
}

/* The whole of cnt buffers from fd at off: 0, -ENODATA at end of file, or
 * -errno. Changes iov. Any thread but the loop thread (blocking). */
static int preadv_all(int fd, struct iovec *iov, int cnt, uint64_t off)
{
    while (cnt > 0) {
        ssize_t n = preadv(fd, iov, cnt, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            return -ENODATA;
        off += (uint64_t)n;
        while (cnt > 0 && (size_t)n >= iov->iov_len) {
            n -= (ssize_t)iov->iov_len;
            iov++;
            cnt--;
        }
        if (cnt > 0) {
            iov->iov_base = (char *)iov->iov_base + n;
            iov->iov_len -= (size_t)n;
        }
    }
    return 0;
}

/* Called on an I/O thread, as the work of a task (r->own_open): r's read
 * through an open file of its own (hc_io_reopen of the segment's fd, closed
 * here; the segment's fd itself when that fails), then rd_after on it. For a
 * re-read after an I/O error and for the reads of a segment whose fd met one
 * (seg.fd_failed): through FUSE, JuiceFS fails every read through a handle
 * that met an error once (pkg/vfs/reader.go: fileReader.err), so a read
 * through it again could never succeed. The price, paid only after an I/O
 * error: a FUSE open and close a read, no merging with its neighbours, and on
 * the uring engine the read blocks its ring's thread (a task). */
static int rd_fresh_read(struct hc_io_req *req)
{
    struct rd *r = container_of(req, struct rd, req);
    struct iovec iov[HC_IO_MAX_IOV];
    int sfd = req->fd, fd, rc, cnt = 0;

    if (r->retries || r->eio_retries)
        (void)rd_before_retry(req);
    for (int i = 0; i < req->iovcnt; i++)
        if (req->iov[i].iov_len > 0)
            iov[cnt++] = req->iov[i];
    fd = hc_io_reopen(sfd);
    rc = preadv_all(fd >= 0 ? fd : sfd, iov, cnt, req->offset);
    if (rc == 0) {
        req->fd = fd >= 0 ? fd : sfd;
        rc = rd_after(req);
        req->fd = sfd;
    }
    if (fd >= 0)
        close(fd);
    return rc;
}

/* Loop thread. Submits r's storage read, or parks it until its segment's fd
 * is open; a read that then waits for room in the I/O pool joins s->aq, to be
 * read ahead meanwhile (aq_run). */
void hc__rd_submit(struct hc_store *s, struct rd *r)
{
    struct seg *seg = r->seg;

    seg->last_use_ms = s->now_ms;
    if (seg->fd < 0) {
        r->wnext = seg->waiters;
        seg->waiters = r;
        if (!seg->opening && hc__seg_open(s, seg) < 0) {
            seg->waiters = r->wnext;
            hc__rd_finish(s, r, -ENOMEM);
        }
        return;
    }
    memset(&r->req, 0, sizeof(r->req));
    r->req.op = HC_IO_READ;
    r->req.prio = HC_IO_PRIO_HIGH;
    r->req.fd = seg->fd;
    r->req.offset = r->off;
    if (r->ahead) { /* no buffers: into the page cache (hc_io_req.sink) */
        r->req.sink = r->ahead;
        r->req.done = rd_done;
        r->req.data = r;
        int rc = hc_io_submit(s->io, &r->req);
        if (rc < 0)
            hc__rd_finish(s, r, rc);
        else
            s->inflight++;
        return;
    }
    r->req.iov[0] = (struct iovec){r->hdr, HC_STORE_ALIGN};
    if (r->sblocks)
        r->req.iov[1] = (struct iovec){r->bounce, (size_t)r->sblocks * HC_STORE_ALIGN};
    else if (r->bounce)
        r->req.iov[1] = (struct iovec){r->bounce, round_up(r->len)};
    r->req.iovcnt = 2;
    if (!r->sblocks && !r->bounce) /* rd_new: it fits */
        r->req.iovcnt = 1 + (int)hc_pbuf_iov(&r->pb, r->len, &r->req.iov[1], HC_IO_MAX_IOV - 1);
    r->own_open = r->eio_retries > 0 || seg->fd_failed;
    r->req.no_map = r->retries > 0; /* (rd_before_retry: from the volume) */
    if (!r->sblocks && !r->own_open) {
        /* the payload's CRC, computed in the pool's copy when it makes one
         * (rd_after checks it without a pass of its own then; also where the
         * client checks its copy: the copy that computes it stores
         * non-temporally, and was faster into a slot than a plain one,
         * docs/BENCHMARKS.md) */
        r->req.crc_from = HC_STORE_ALIGN;
        r->req.crc_len = r->len;
    }
    if (r->own_open) {
        r->req.op = HC_IO_TASK;
        r->req.before = rd_fresh_read;
    } else {
        r->req.before = r->retries ? rd_before_retry : NULL;
        r->req.after = rd_after;
    }
    r->req.done = rd_done;
    r->req.data = r;
    uint64_t bytes = 0;
    for (int i = 0; i < r->req.iovcnt; i++)
        bytes += r->req.iov[i].iov_len;
    int rc = hc_io_submit(s->io, &r->req);
    if (rc < 0) {
        hc__rd_finish(s, r, rc);
        return;
    }
    s->inflight++;
    /* Waiting for room (max_inflight_bytes): read ahead meanwhile, in the
     * order the reads wait, as the budget for reads ahead allows (aq). A
     * batch larger than the bound (a host-pool get of 128 pages) waits in
     * part, and without this the threads saw its pages only as room freed:
     * a segment's later stretch was read before its earlier one, whose
     * JuiceFS read-ahead then ran on over the later stretch and, without a
     * local cache, downloaded it again (1.06-1.13x). A retry wants the
     * volume's bytes, not what a read ahead put in the page cache; a
     * reinsertion (evict.c) is no client's and must not take the budget. */
    if (rc == HC_IO_WAITING && !r->retries && !r->eio_retries && !r->own_open && !r->reinsert &&
        bytes <= HC_IO_SINK_MAX && bytes <= s->cfg.read_ahead_bytes) {
        r->aq_bytes = bytes;
        r->aq_next = NULL;
        r->aq_prev = s->aq_tail;
        if (s->aq_tail)
            s->aq_tail->aq_next = r;
        else
            s->aq_head = r;
        s->aq_tail = r;
        r->in_aq = true;
        aq_run(s);
    }
}

/* Loop thread. Reads bytes of seg at off into the page cache (a read ahead:
 * struct rd.ahead, hc_io_req.sink) unless the page cache holds them already
 * (counted in ahead_cached), within cfg.read_ahead_bytes in flight. Returns
 * the bytes queued, or 0. */
uint64_t hc__rd_ahead(struct hc_store *s, struct seg *seg, uint64_t off, uint64_t bytes)
{
    if (seg->fd_failed || !ahead_fits(s, bytes))
        return 0;
    if (seg->fd >= 0 && hc_io_cached(seg->fd, off, bytes)) {
        s->st->ahead_cached++;
        return 0;
    }
    struct rd *r = calloc(1, sizeof(*r));
    if (!r)
        return 0;
    r->s = s;
    r->seg = seg;
    r->off = off;
    r->ahead = bytes;
    seg->refs++;
    s->ahead_bytes += bytes;
    hc__rd_submit(s, r);
    return bytes;
}

/* A read that failed with *result: a payload check that failed in the
 * getter's slot is confirmed by a read into the daemon's memory (any
 * segment); a record this run wrote and acknowledged is tried again, now or
 * later, when that may help. Returns true when it did (r is in flight or
 * waits on s->rd_later); may turn *result into -ENOMEM. */
static bool rd_retry(struct hc_store *s, struct rd *r, ssize_t *result)
{
    struct seg *seg = r->seg;

    if (*result == -EBADMSG && r->slot_checked) {
        /* The payload was checked in the getter's slot, which its client can
         * change at any moment: a failed check there says nothing about the
         * record. Read it again into a daemon-owned buffer (copied into the
         * slot after its check) before anyone calls it bad, so that no client
         * can make a record leave the index for the others. Without memory
         * for it, the get fails with ENOMEM and the record stays. */
        r->slot_checked = false;
        if (posix_memalign(&r->bounce, HC_STORE_ALIGN, round_up(r->len)) == 0) {
            hc__rd_submit(s, r);
            return true;
        }
        r->bounce = NULL;
        *result = -ENOMEM;
        return false;
    }
    if ((*result == -EBADMSG || *result == -ENODATA) && seg->fresh && r->retries < RD_RETRIES) {
        /* Its bytes were whole on storage before the page became visible,
         * so a short read or a failed check is most likely the file's view
         * lagging the write (rd_before_retry). Read again, with the segment
         * still held and joiners still joining; only a record that keeps
         * failing is bad. */
        r->retries++;
        hc_log(HC_LOG_INFO,
               "store: record in segment %016" PRIx64 " at %" PRIu64
               " read back %s; reading again (%u/%u)",
               seg->seq, r->off, *result == -ENODATA ? "short" : "bad", r->retries, RD_RETRIES);
        hc__rd_submit(s, r);
        return true;
    }
    if (*result == -EIO && seg->fresh && !s->stopping && r->eio_retries < RD_EIO_RETRIES) {
        /* JuiceFS answers EIO for a while when it compacts the slices of a
         * file that is being written and read (it deletes the old slices a
         * read still uses; juicedata/juicefs#6000), which the open segment
         * is. The record was acknowledged: try again a little later. */
        r->retry_at_ms = s->now_ms + ((uint64_t)RD_EIO_DELAY_MS << r->eio_retries);
        r->eio_retries++;
        hc_log(HC_LOG_INFO,
               "store: record in segment %016" PRIx64 " at %" PRIu64
               ": I/O error; reading again in %" PRIu64 " ms (%u/%u)",
               seg->seq, r->off, r->retry_at_ms - s->now_ms, r->eio_retries, RD_EIO_RETRIES);
        r->lnext = s->rd_later;
        s->rd_later = r;
        s->inflight++;
        return true;
    }
    return false;
}

/* A read that failed for good: a bad or short record leaves the index and is
 * a miss, so is a segment that vanished; anything else is an I/O error. The
 * getter and every joiner get the answer, and r is freed. */
static void rd_fail(struct hc_store *s, struct rd *r, ssize_t result)
{
    struct seg *seg = r->seg;
    struct join *j, *next;
    int st;

    if (result == -EFAULT) {
        /* The getter's slot vanished under the read (a client truncated the
         * host pool it lies in): the record is fine. The getter gets EFAULT,
         * the joiners a read of their own into daemon memory. */
        hc__seg_maybe_free(s, seg);
        hc__rd_regroup(s, r, -EFAULT);
        return;
    }
    if (result == -EBADMSG || result == -ENODATA) {
        const struct hc_index_ent *e = hc_index_lookup(&s->ix, r->pn.h);
        s->st->corrupt_records++;
        hc_log(HC_LOG_WARN,
               "store: bad record in segment %s/%016" PRIx64 " at %" PRIu64 " (%s): dropped",
               s->nodes[seg->node], seg->seq, r->off,
               result == -ENODATA ? "short read" : "failed its checks");
        if (e && e->seg == seg->id && (uint64_t)e->off * HC_STORE_ALIGN == r->off) {
            struct hc_index_ent out;
            hc_index_remove(&s->ix, r->pn.h, &out);
            hc__acct_del(s, seg, out.len);
        }
        st = -ENOENT;
    } else if (result == -ENOENT || (!seg->local && (result == -EBADF || result == -ESTALE))) {
        /* The segment vanished: another node evicted it. Through JuiceFS a
         * handle opened before the unlink by the other node can also answer
         * EBADF (seen in CI on two mounts) or ESTALE: a miss too, and the
         * next discovery drops the segment. */
        st = -ENOENT;
    } else {
        s->st->io_errors++;
        st = (int)result;
    }
    hc__seg_maybe_free(s, seg);
    if (st == -ENOENT && !r->reinsert)
        s->st->misses++;
    r->cb(r->data, st, 0);
    for (j = r->joins; j; j = next) {
        next = j->next;
        if (st == -ENOENT)
            s->st->misses++;
        j->cb(j->data, st, 0);
        free(j);
    }
    hc__rd_free(r);
}

/* A read lets go of its segment: one whose fd met an I/O error is closed
 * once no read holds it (the next read opens it again: a new handle). */
static void rd_seg_put(struct hc_store *s, struct seg *seg)
{
    if (--seg->refs == 0 && seg->fd_failed && seg->state == SEG_SEALED && !seg->opening)
        hc__seg_close_fd(s, seg);
}

/* Ends a storage read (or its open) with result: tries a failed read of a
 * record this run wrote again (rd_retry); else the read leaves the table of
 * reads in flight and lets go of its segment, and a good page goes to the
 * getter, its joiners and its other readers (hc__rd_fanout, coalesce.c), a
 * failure becomes a miss or an error (rd_fail). */
void hc__rd_finish(struct hc_store *s, struct rd *r, ssize_t result)
{
    struct seg *seg = r->seg;

    if (r->ahead) { /* nobody to answer; a failure shows on the get, if any */
        s->ahead_bytes -= r->ahead;
        if (result >= 0) {
            s->st->ahead_reads++;
            s->st->ahead_bytes += r->ahead;
        }
        rd_seg_put(s, seg);
        hc__rd_free(r);
        hc__seg_maybe_free(s, seg); /* dropped while this was read: freed now */
        aq_run(s);                  /* room for the next waiting reads */
        return;
    }
    if (result == -EIO && !r->own_open && !seg->fd_failed && seg->fd >= 0) {
        seg->fd_failed = true;
        hc_log(HC_LOG_WARN,
               "store: a read of segment %s/%016" PRIx64
               " met an I/O error: its reads go through opens of their own until its fd is "
               "replaced",
               s->nodes[seg->node], seg->seq);
    }
    if (rd_retry(s, r, &result))
        return;
    if (r->in_tab) {
        hc__ptab_del(&s->reading, &r->pn);
        r->in_tab = false;
    }
    rd_seg_put(s, seg);
    if (result < 0) {
        rd_fail(s, r, result);
        return;
    }
    s->st->bytes_read_storage += r->stored + (r->own ? r->len : 0);
    hc__rd_fanout(s, r);
}

/* Submits the reads waiting to be tried again whose time has come (all of
 * them when stopping, which makes them finish with their error). */
void hc__rd_later_run(struct hc_store *s, bool all)
{
    struct rd **pp = &s->rd_later, *r;

    while ((r = *pp)) {
        if (!all && !s->stopping && r->retry_at_ms > s->now_ms) {
            pp = &r->lnext;
            continue;
        }
        *pp = r->lnext;
        r->lnext = NULL;
        s->inflight--;
        if (s->stopping)
            hc__rd_finish(s, r, -EIO);
        else
            hc__rd_submit(s, r);
    }
}

/* Allocates the read of the record e names into buf, with the daemon-owned
 * buffers it needs: the stored blocks and the page of a compressed record,
 * or a bounce buffer (owned) for a page that may linger (the lingering entry
 * then takes it over without a copy) or that joiners copy, or for O_DIRECT
 * into an unaligned slot.
 * Returns NULL when out of memory. */
struct rd *hc__rd_new(struct hc_store *s, const struct hc_index_ent *e, const struct hc_pbuf *pb,
                      bool owned)
{
    uint32_t sblocks = e->flags & IDX_SBLOCKS;
    const struct iovec *v = hc_pbuf_vec(pb);
    bool unaligned = pb->n > 1 || ((uintptr_t)v[0].iov_base % HC_STORE_ALIGN) != 0 ||
                     e->len % HC_STORE_ALIGN != 0;
    struct iovec probe[HC_IO_MAX_IOV - 1];
    /* more pieces than a read takes besides the header: read into the
     * daemon's memory, then copied */
    bool scattered = hc_pbuf_iov(pb, e->len, probe, HC_IO_MAX_IOV - 1) == 0;
    struct rd *r = calloc(1, sizeof(*r));

    if (!r || posix_memalign((void **)&r->hdr, HC_STORE_ALIGN, HC_STORE_ALIGN) != 0)
        goto nomem;
    if (sblocks) {
        if (posix_memalign(&r->bounce, HC_STORE_ALIGN, (size_t)sblocks * HC_STORE_ALIGN) != 0) {
            r->bounce = NULL;
            goto nomem;
        }
        if (!(r->plain = malloc(e->len)))
            goto nomem;
    } else if (owned || scattered || (s->cfg.use_direct_io && unaligned)) {
        if (posix_memalign(&r->bounce, HC_STORE_ALIGN, round_up(e->len)) != 0) {
            r->bounce = NULL;
            goto nomem;
        }
    }
    r->s = s;
    r->seg = s->segs[e->seg];
    r->off = (uint64_t)e->off * HC_STORE_ALIGN;
    r->len = e->len;
    r->sblocks = sblocks;
    r->pb = *pb;
    return r;
nomem:
    if (r)
        hc__rd_free(r);
    return NULL;
}

/* Starts a get. how: GET_JOINABLE and GET_OWNED (store_int.h). readers: the
 * getter's readers per page. Returns 0 (cb will run) or -errno (cb will
 * not). */
int hc__get_start(struct hc_store *s, int ns, const char *key, size_t klen,
                  const struct hc_pbuf *pb, uint64_t cap, uint32_t readers, hc_store_cb cb,
                  void *data, unsigned how)
{
    bool joinable = (how & GET_JOINABLE) && s->cfg.coalesce_reads;
    struct hc_hash h = hc__page_hash(s, ns, key, klen);
    const struct hc_index_ent *e = hc_index_lookup(&s->ix, h);
    struct rd *r;
    int rc;

    if (!e && s->cfg.remote_filter && !(how & GET_LOCATED) && hc__fleet_maybe(s, h))
        return hc__fleet_locate(s, ns, key, klen, pb, cap, readers, cb, data, how, h);
    if (!e) {
        rc = hc__defer_cb(s, cb, data, -ENOENT, 0);
        if (rc == 0)
            s->st->misses++;
        return rc;
    }
    if (e->len > cap)
        return hc__defer_cb(s, cb, data, -ENOSPC, e->len);
    if (joinable && (rc = hc__get_coalesced(s, ns, key, klen, pb, cap, cb, data, h, e)) != 0)
        return rc < 0 ? rc : 0;
    /* A read of the page from storage for a client (not a joiner, a lingering
     * copy or the daemon's second try: the ranks of an MLA model read a page
     * once between them): noted for reinsertion at eviction (evict.c), or
     * for another node's page told to its owner (hints.c). */
    if (!(how & GET_OWNED) && s->segs[e->seg]->local)
        hc__note_read(s, s->segs[e->seg], e);
    else if (!(how & GET_OWNED) && !s->segs[e->seg]->local)
        hc__hint_add(s, s->segs[e->seg], e); /* for its owner (hints.c) */

    /* Several readers per page: the others join or find it lingering, so it
     * is read into the daemon's memory to begin with. */
    r = hc__rd_new(s, e, pb, (how & GET_OWNED) || (readers > 1 && joinable));
    if (!r)
        return -ENOMEM;
    r->readers = readers;
    r->cb = cb;
    r->data = data;
    r->pn.h = h;
    r->nslen = s->ns[ns].len;
    r->klen = (uint16_t)klen;
    memcpy(r->names, s->ns[ns].name, r->nslen);
    memcpy(r->names + r->nslen, key, klen);
    r->seg->refs++;
    if (joinable) {
        hc__ptab_add(&s->reading, &r->pn);
        r->in_tab = true;
    }
    hc__rd_submit(s, r);
    return 0;
}
