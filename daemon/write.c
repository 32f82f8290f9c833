/* The set path. A set of a key that is stored or being written costs no
 * write (dedupe): it is answered once the first write is whole. Otherwise the
 * page becomes a record write (struct wrec): compressed first on an I/O thread
 * when asked (compress.c), then placed at the tail of one of the open
 * segments (open_segments of them at most; a client keeps to one of its own
 * while there are enough: open_pick; a new one when none has room) and
 * written by that segment's one writer, in offset order, in gathered writes
 * (struct wbatch); segment.c commits records in offset order.
 *
 * When no open segment has room (or there is none), the sets queue in arrival
 * order on s->place_head while the next segment file is created on an I/O
 * thread (hc__seg_create); hc__place_waiting places them once it exists.
 *
 * Threads: loop thread, except wb_before (with wrec_crc) and wrec_compress,
 * which run on an I/O thread and touch only their batch or wrec and the bytes
 * these point to (handed to them in the request; the loop thread leaves those
 * fields alone meanwhile, see struct wrec). Nothing here waits on the mount. */
#include "store_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "crc32c.h"
#include "guard.h"
#include "log.h"

/* After the volume answered ENOSPC, sets that need a new segment fail at
 * once for this long (s->nospace_until_ms). */
#define NOSPACE_BACKOFF_MS 1000

static const unsigned char zero_block[HC_STORE_ALIGN] __attribute__((aligned(HC_STORE_ALIGN)));

/* What waiter x of w gets for w's status st: st, except that the sets
 * deduplicated against a set whose buffer vanished (EFAULT: the first
 * waiter's fault) get EAGAIN: theirs were fine, a set again stores them. */
int hc__waiter_status(const struct wrec *w, const struct waiter *x, int st)
{
    return st == -EFAULT && x != w->waiters ? -EAGAIN : st;
}

/* Frees w, its waiters and its buffers (not the setter's bytes). */
void hc__wrec_free(struct wrec *w)
{
    struct waiter *x, *next;
    for (x = w->waiters; x; x = next) {
        next = x->next;
        free(x);
    }
    free(w->hdr);
    free(w->bounce);
    free(w->zbuf);
    free(w);
}

/* Makes w a record that can never be read: its payload (at iov, the
 * gathered write's entry for it) becomes daemon-owned zeros and its header
 * gets a payload CRC that cannot match them, so a restart's scan steps over
 * it (recover.c) and nothing indexes it; w fails with EFAULT (its setter's
 * buffer vanished: a client truncated its host pool). Called on an I/O
 * thread, from wb_before. Without memory for the zeros the payload stays the
 * client's and the write itself fails (wb_done, wb_refault). */
static void wrec_poison(struct wrec *w, struct iovec *iov)
{
    bool pieces = !w->bounce; /* iov: the pieces of pb, else the bounce */
    w->fault = true;
    if (!w->bounce && posix_memalign(&w->bounce, HC_STORE_ALIGN, round_up(w->len)) != 0) {
        w->bounce = NULL;
        return;
    }
    memset(w->bounce, 0, round_up(w->len));
    if (pieces) {
        iov[0] = (struct iovec){w->bounce, w->len};
        for (unsigned i = 1; i < w->pb.n; i++)
            iov[i] = (struct iovec){w->bounce, 0};
    } else {
        iov[0].iov_base = w->bounce;
    }
    hc__hdr_finish(w->hdr, ~hc_crc32c(0, w->bounce, w->len));
}

/* Called on an I/O thread, from wb_before: the payload CRC (over the bytes
 * written) and the header CRC of w, which the gathered write holding it
 * hands to that thread; iov is the write's entry for w's payload. The
 * setter's bytes are read under a guard (guard.h): a buffer that vanished
 * poisons the record (wrec_poison). */
static void wrec_crc(struct wrec *w, struct iovec *iov)
{
    uint32_t crc;

    if (w->zbuf) {
        hc__hdr_finish(w->hdr, hc_crc32c(0, w->zbuf, w->zlen));
        return;
    }
    if (w->fault || w->copied)
        return; /* poisoned, or copied and checksummed, by an earlier pass */
    if (w->bounce) {
        if (hc_pbuf_get(w->bounce, &w->pb, w->len) < 0) {
            wrec_poison(w, iov);
            return;
        }
        crc = hc_crc32c(0, w->bounce, w->len);
        w->copied = true;
    } else if (hc_pbuf_crc(&w->pb, w->len, &crc) < 0) {
        wrec_poison(w, iov);
        return;
    }
    hc__hdr_finish(w->hdr, crc);
}

/* Called on an I/O thread: compresses the page into zbuf. A page that does
 * not shrink enough (or no memory) is stored raw: zbuf stays NULL; one whose
 * buffer vanished is not stored (fault). */
static int wrec_compress(struct hc_io_req *req)
{
    struct wrec *w = container_of(req, struct wrec, req);
    void *flat = NULL;

    if (w->pb.n > 1) { /* zstd takes one buffer: the pieces gathered first */
        if (!(flat = malloc(w->len)))
            return 0; /* stored raw */
        if (hc_pbuf_get(flat, &w->pb, w->len) < 0) {
            free(flat);
            w->fault = true;
            return 0;
        }
    }
    if (hc__zcompress(flat ? flat : w->pb.one.iov_base, w->len, &w->zbuf, &w->zlen) < 0)
        w->fault = true;
    free(flat);
    return 0;
}

/* Stored blocks of a compressed record, 0 for a raw one. */
uint16_t hc__wrec_sblocks(const struct wrec *w)
{
    return w->zbuf ? (uint16_t)(round_up(w->zlen) / HC_STORE_ALIGN) : 0;
}

/* ---- the writer of a segment ---------------------------------------------
 *
 * JuiceFS keeps a file written by one writer, in order, as one slice per
 * 64 MiB chunk; writes at scattered offsets of one file (several I/O threads
 * appending to one segment) leave a slice per write, and a chunk of many
 * slices is compacted by the client on its first read (downloaded and
 * uploaded again). So each open segment has one writer: its records go out in
 * offset order, one gathered write in flight at a time, which takes every
 * record placed behind it meanwhile (up to WB_MAX_RECS and WB_MAX_BYTES) in
 * one pwritev. Parallel writes come from several open segments
 * (open_segments), never from several writers of one file. */

#define WB_MAX_RECS 256u         /* and HC_IO_MAX_IOVX buffers (wrec_iovs) */
#define WB_MAX_BYTES (16u << 20) /* 4 JuiceFS blocks */
#define WB_MAX_PIECES 64         /* pieces of a record written from them, not a copy */
/* A segment this far behind (bytes placed whose write is not over) is busy: a
 * set waits for the segment being created rather than queue behind it. */
#define OPEN_BUSY_BYTES WB_MAX_BYTES

/* A gathered write: records that follow each other in one segment. One per
 * local segment created by this run (seg->wb, made with it, freed with it or
 * at its seal), reused; while its req is in flight wb_before reads the
 * records it names, as struct wrec says, and the loop thread leaves n, w and
 * iov alone. */
struct wbatch {
    struct hc_io_req req;
    struct hc_store *s;
    struct seg *seg;
    unsigned n;
    uint64_t bytes;
    bool refaulted; /* sent again from copies (wb_refault) */
    int cnt;        /* buffers in iov */
    struct wrec *w[WB_MAX_RECS];
    unsigned piov[WB_MAX_RECS]; /* index in iov of each record's payload */
    struct iovec iov[HC_IO_MAX_IOVX];
};

/* For tests only (store.h), NULL otherwise. */
void (*hc__wb_test_hook)(unsigned nrecs);

/* Called on an I/O thread: the CRCs of the batch's records, before they are
 * written (then the test hook, if set). Reads the batch and its records'
 * buffers only. */
static int wb_before(struct hc_io_req *req)
{
    struct wbatch *b = container_of(req, struct wbatch, req);
    for (unsigned i = 0; i < b->n; i++)
        wrec_crc(b->w[i], &b->iov[b->piov[i]]);
    if (hc__wb_test_hook)
        hc__wb_test_hook(b->n);
    return 0;
}

/* Marks w finished with status st (0 or -errno) and counts what it wrote. */
static void wrec_finish(struct hc_store *s, struct wrec *w, int st)
{
    s->inflight--;
    w->done = true;
    if (st == 0 && w->fault)
        st = -EFAULT; /* poisoned: written, never readable */
    if (st == -EFAULT)
        s->st->client_faults++;
    w->status = st;
    if (st < 0) {
        return;
    } else if (w->zbuf) {
        s->st->bytes_written += w->zlen;
        s->st->compressed_pages++;
        s->st->bytes_saved_compression += w->len - w->zlen;
    } else {
        s->st->bytes_written += w->len;
    }
}

static void wb_kick(struct hc_store *s, struct seg *seg);
static void wb_done(struct hc_io_req *req);

/* Sends b's gathered write (b->cnt buffers) with before as its before(). */
static void wb_submit(struct hc_store *s, struct wbatch *b, int (*before)(struct hc_io_req *))
{
    memset(&b->req, 0, sizeof(b->req));
    b->req.op = HC_IO_WRITE;
    b->req.prio = HC_IO_PRIO_LOW;
    b->req.fd = b->seg->fd;
    b->req.offset = b->w[0]->off;
    b->req.iovx = b->iov;
    b->req.iovxcnt = b->cnt;
    b->req.before = before;
    b->req.done = wb_done;
    b->req.data = b;
    /* Cannot fail: a write of 1 to HC_IO_MAX_IOVX buffers at a valid offset. */
    (void)!hc_io_submit(s->io, &b->req);
}

/* A gathered write that failed with EFAULT (or EIO: io_uring has answered
 * that too) while it wrote straight from setters' buffers: one of them may
 * have vanished under the write (a client truncated its host pool), and may
 * be back by now. The write goes out once more with every such record
 * copied into the daemon's memory first (wb_before, guarded: a buffer gone
 * then poisons its record), so that no client can fail the other records of
 * the batch. Returns true when it did (b in flight again). */
static bool wb_refault(struct hc_store *s, struct wbatch *b)
{
    unsigned copied = 0;
    int cnt = 0;

    if (b->refaulted)
        return false;
    for (unsigned i = 0; i < b->n; i++) {
        struct wrec *w = b->w[i];
        if (w->zbuf || w->bounce)
            continue;
        if (posix_memalign(&w->bounce, HC_STORE_ALIGN, round_up(w->len)) != 0) {
            w->bounce = NULL;
            return false;
        }
        memset((char *)w->bounce + w->len, 0, round_up(w->len) - w->len);
        copied++;
    }
    if (!copied)
        return false;
    /* The array again from scratch: the engine advanced it over what the
     * first write took (io.h: iovx). Every payload is the daemon's now. */
    for (unsigned i = 0; i < b->n; i++) {
        struct wrec *w = b->w[i];
        b->iov[cnt++] = (struct iovec){w->hdr, HC_STORE_ALIGN};
        b->piov[i] = (unsigned)cnt;
        b->iov[cnt++] = w->zbuf ? (struct iovec){w->zbuf, round_up(w->zlen)}
                                : (struct iovec){w->bounce, round_up(w->len)};
    }
    b->cnt = cnt;
    b->refaulted = true;
    wb_submit(s, b, wb_before);
    return true;
}

/* Back on the loop thread: the gathered write is over; its records commit in
 * order (segment.c) and the next write of the segment starts. A failed write
 * closes the segment for appends; what it has unsent fails unwritten. */
static void wb_done(struct hc_io_req *req)
{
    struct wbatch *b = container_of(req, struct wbatch, req);
    struct hc_store *s = b->s;
    struct seg *seg = b->seg;
    int st = req->result < 0 ? (int)req->result : 0;

    if ((st == -EFAULT || st == -EIO) && wb_refault(s, b))
        return;
    seg->wb_busy = false;
    seg->backlog -= b->bytes;
    if (st < 0) {
        s->st->io_errors++;
        hc_log(HC_LOG_ERR, "store: writing segment %016" PRIx64 " at %" PRIu64 " (%u records): %s",
               seg->seq, b->w[0]->off, b->n, strerror(-st));
        if (st == -ENOSPC || st == -EDQUOT)
            s->nospace_until_ms = mono_ms() + NOSPACE_BACKOFF_MS;
        if (!seg->werr)
            seg->werr = st;
        if (seg->state == SEG_OPEN)
            hc__seg_close_appends(s, seg);
    }
    for (unsigned i = 0; i < b->n; i++)
        wrec_finish(s, b->w[i], st);
    b->n = 0;
    wb_kick(s, seg);
    hc__seg_commit(s, seg);
}

/* The buffers w takes in a gathered write (at most WB_MAX_PIECES + 2). */
static int wrec_iovs(const struct wrec *w)
{
    return 2 + (w->zbuf || w->bounce ? 1 : (int)w->pb.n);
}

/* Adds w's buffers (header, payload, zero padding to the block) to b. */
static void wb_add(struct wbatch *b, struct wrec *w, int *cnt)
{
    uint64_t plen = w->zbuf ? w->zlen : w->len;
    b->iov[(*cnt)++] = (struct iovec){w->hdr, HC_STORE_ALIGN};
    b->piov[b->n] = (unsigned)*cnt;
    if (w->zbuf) {
        b->iov[(*cnt)++] = (struct iovec){w->zbuf, round_up(plen)};
    } else if (w->bounce) {
        b->iov[(*cnt)++] = (struct iovec){w->bounce, round_up(plen)};
    } else {
        *cnt += (int)hc_pbuf_iov(&w->pb, plen, &b->iov[*cnt], HC_IO_MAX_IOVX - (unsigned)*cnt);
        if (round_up(plen) > plen)
            b->iov[(*cnt)++] = (struct iovec){(void *)zero_block, round_up(plen) - plen};
    }
    b->w[b->n++] = w;
    b->bytes += ent_rec_size(w->len, hc__wrec_sblocks(w));
}

/* Starts seg's next gathered write when none is in flight: every unsent
 * record, in order, up to the batch limits. After a failed write they fail
 * unwritten instead (they could not survive a restart's scan). */
static void wb_kick(struct hc_store *s, struct seg *seg)
{
    struct wbatch *b = seg->wb;
    int cnt = 0;

    if (seg->wb_busy || !seg->unsent)
        return;
    if (seg->werr) { /* only from wb_done, which commits next */
        for (struct wrec *w = seg->unsent; w; w = w->next) {
            seg->backlog -= ent_rec_size(w->len, hc__wrec_sblocks(w));
            /* not the client's fault when another's buffer failed the file */
            wrec_finish(s, w, seg->werr == -EFAULT ? -EIO : seg->werr);
        }
        seg->unsent = NULL;
        return;
    }
    b->s = s;
    b->seg = seg;
    b->n = 0;
    b->bytes = 0;
    b->refaulted = false;
    while (seg->unsent && b->n < WB_MAX_RECS &&
           cnt + wrec_iovs(seg->unsent) <= (int)HC_IO_MAX_IOVX &&
           (b->n == 0 || b->bytes + ent_rec_size(seg->unsent->len, hc__wrec_sblocks(seg->unsent)) <=
                             WB_MAX_BYTES)) {
        wb_add(b, seg->unsent, &cnt);
        seg->unsent = seg->unsent->next;
    }
    b->cnt = cnt;
    seg->wb_busy = true;
    wb_submit(s, b, wb_before);
}

/* A batch for a new open segment (segment.c), or NULL when out of memory. */
struct wbatch *hc__wb_new(void)
{
    return calloc(1, sizeof(struct wbatch));
}

/* Adds cb(data) to the callbacks w runs when it is committed. Returns 0 or
 * -ENOMEM. */
static int waiter_add(struct wrec *w, hc_store_cb cb, void *data)
{
    struct waiter *x = malloc(sizeof(*x));
    if (!x)
        return -ENOMEM;
    *x = (struct waiter){.cb = cb, .data = data};
    if (w->wtail)
        w->wtail->next = x;
    else
        w->waiters = x;
    w->wtail = x;
    return 0;
}

/* True when seg has room for w. */
static bool seg_has_room(const struct hc_store *s, const struct seg *seg, const struct wrec *w)
{
    return seg->size + ent_rec_size(w->len, hc__wrec_sblocks(w)) <= s->cfg.segment_size;
}

#define STICK_IDLE_MS 5000 /* a stream that set nothing this long owns nothing */

/* Whether another stream than the one of stick slot k set into seg within
 * STICK_IDLE_MS. */
static bool seg_owned(const struct hc_store *s, const struct seg *seg, unsigned k, uint64_t now)
{
    for (unsigned j = 0; j < STREAM_STICK; j++)
        if (j != k && s->stick[j].stream && s->stick[j].seq == seg->seq &&
            now - s->stick[j].used_ms < STICK_IDLE_MS)
            return true;
    return false;
}

/* The open segment w goes to, or NULL when none has room for it. A client's
 * sets (its stream) keep to one open segment of their own while it has
 * room: the one they went to last; for a stream without one, an open
 * segment no other stream set into lately (the least busy); else, while
 * fewer than open_segments are open and may_create, the least busy for now
 * while a new one is created in the background (no set waits for it), which
 * the stream takes once it is there; else the least busy with room, shared.
 * So each client's pages lie together, in the order it set them, in a file
 * of their own: read back, they are one sequential stream a file, which
 * JuiceFS reads without fetching a block twice (with 4 ranks on the emulated
 * cache-less deployment: 1.00-1.03x downloaded, against 1.23-1.36x when a
 * busy stream's sets spilled to the other open segments). A stream writes at
 * its own segment's pace; parallel clients use parallel segments. *least
 * (when not NULL) is set to the least backlog of those with room. */
static struct seg *open_pick(struct hc_store *s, const struct wrec *w, uint64_t *least,
                             bool may_create)
{
    struct seg *best = NULL, *pref = NULL, *free_ = NULL;
    uint64_t now = mono_ms();
    for (unsigned i = 0; i < s->nopen; i++) {
        struct seg *seg = s->opens[i];
        if (seg_has_room(s, seg, w) && (!best || seg->backlog < best->backlog))
            best = seg;
    }
    if (least && best)
        *least = best->backlog;
    if (!w->stream || !s->nopen)
        return best;
    unsigned k = w->stream % STREAM_STICK;
    if (s->stick[k].stream == w->stream)
        for (unsigned i = 0; i < s->nopen && !pref; i++)
            if (s->opens[i]->seq == s->stick[k].seq && seg_has_room(s, s->opens[i], w))
                pref = s->opens[i];
    if (!pref) {
        for (unsigned i = 0; i < s->nopen; i++) {
            struct seg *seg = s->opens[i];
            if (seg_has_room(s, seg, w) && !seg_owned(s, seg, k, now) &&
                (!free_ || seg->backlog < free_->backlog))
                free_ = seg;
        }
        if (!free_ && best && may_create && s->nopen < s->cfg.open_segments &&
            now >= s->nospace_until_ms && !s->creating) {
            /* one of its own comes (no set waits for it): meanwhile the
             * least busy takes this set, and the stream keeps to nothing */
            (void)hc__seg_create(s);
            return best;
        }
        pref = free_ ? free_ : best;
    }
    if (pref) {
        s->stick[k].stream = w->stream;
        s->stick[k].seq = pref->seq;
        s->stick[k].used_ms = now;
    }
    return pref;
}

/* Takes w's place at the tail of seg, an open segment with room for it, and
 * hands it to the segment's writer. w is filled except for the placement.
 * Returns 0, or -ENOMEM with nothing done (w still the caller's). */
static int wrec_put(struct hc_store *s, struct seg *seg, struct wrec *w)
{
    uint64_t size = ent_rec_size(w->len, hc__wrec_sblocks(w));

    const struct iovec *v = hc_pbuf_vec(&w->pb);
    bool aligned = w->pb.n == 1 && ((uintptr_t)v[0].iov_base % HC_STORE_ALIGN) == 0 &&
                   w->len % HC_STORE_ALIGN == 0;
    /* a record of many pieces goes out of one copy: a gathered write holds
     * HC_IO_MAX_IOVX buffers */
    if (!w->zbuf && ((seg->fd_direct && !aligned) || w->pb.n > WB_MAX_PIECES)) {
        if (posix_memalign(&w->bounce, HC_STORE_ALIGN, round_up(w->len)) != 0) {
            w->bounce = NULL;
            return -ENOMEM;
        }
        memset((char *)w->bounce + w->len, 0, round_up(w->len) - w->len);
    }
    if (w->zbuf)
        hc__hdr_set_zstd(w->hdr, w->zlen);
    w->seg = seg;
    w->off = seg->size;
    w->next = NULL;
    seg->size += size;
    seg->backlog += size;
    hc__local_bytes_set(s, s->local_bytes + size);
    s->wclock += size;
    if (seg->pend_tail)
        seg->pend_tail->next = w;
    else
        seg->pend_head = w;
    seg->pend_tail = w;
    if (!seg->unsent)
        seg->unsent = w;
    s->inflight++;
    wb_kick(s, seg);
    hc__evict_capacity(s);
    return 0;
}

/* Starts one more open segment when every open one has writes in flight
 * and fewer than open_segments are open: parallel writes go to files of
 * their own. Not while the volume was full a moment ago. */
static void open_grow(struct hc_store *s)
{
    if (s->creating || s->nopen >= s->cfg.open_segments || mono_ms() < s->nospace_until_ms)
        return;
    for (unsigned i = 0; i < s->nopen; i++)
        if (s->opens[i]->backlog == 0)
            return;
    (void)hc__seg_create(s); /* -ENOMEM: the open ones go on */
}

/* Closes the open segments that have no room for w (called when none has
 * room for it, or when sets wait already for the segment being created: then
 * some may still have room for smaller pages, and close a little early). */
static void opens_close_full(struct hc_store *s, const struct wrec *w)
{
    for (unsigned i = s->nopen; i-- > 0;)
        if (!seg_has_room(s, s->opens[i], w))
            hc__seg_close_appends(s, s->opens[i]);
}

/* Ends a set that will not be written: the write failed to start (rc < 0,
 * counted as a set error) or its namespace was cleared first (rc 0, answered
 * as a write in flight at the clear is). Runs its callbacks and frees it. */
static void wrec_abandon(struct hc_store *s, struct wrec *w, int rc)
{
    if (w->in_tab)
        hc__ptab_del(&s->writing, &w->pn);
    if (rc < 0)
        s->st->set_errors++;
    for (struct waiter *x = w->waiters; x; x = x->next)
        x->cb(x->data, hc__waiter_status(w, x, rc), rc == 0 ? w->len : 0);
    hc__wrec_free(w);
}

/* Places w at the tail of an open segment (open_pick), or, when none has room,
 * sets wait already, or every one with room is OPEN_BUSY_BYTES behind while
 * a segment is being created, queues w (in arrival order) for the next one,
 * whose file is created on an I/O thread (hc__seg_create): a set never waits
 * for the mount on the loop thread. Returns 0 (placed or queued: w is the
 * store's now), or -errno with nothing done (w still the caller's). */
static int wrec_place(struct hc_store *s, struct wrec *w)
{
    uint64_t least = 0;
    struct seg *seg = s->place_head ? NULL : open_pick(s, w, &least, true);
    if (seg && (least < OPEN_BUSY_BYTES || !s->creating)) {
        int rc = wrec_put(s, seg, w);
        if (rc == 0)
            open_grow(s);
        return rc;
    }
    if (!seg) { /* none has room (or sets wait already) */
        if (!s->creating && mono_ms() < s->nospace_until_ms)
            return -ENOSPC; /* the volume was full a moment ago: no new file */
        opens_close_full(s, w);
        if (!s->creating) {
            int rc = hc__seg_create(s);
            if (rc < 0)
                return rc;
        }
    }
    w->next = NULL;
    if (s->place_tail)
        s->place_tail->next = w;
    else
        s->place_head = w;
    s->place_tail = w;
    return 0;
}

/* The create of a segment is over (segment.c, which made it one of the open
 * ones), with rc its error: the sets queued for it take their places in
 * order, those of a cleared namespace end unwritten, and when no open segment
 * has room for the next a new one is created. If the create failed, every
 * queued set fails with its error. */
void hc__place_waiting(struct hc_store *s, int rc)
{
    /* The sets queued before now. Callbacks run below (wrec_abandon) can
     * come back with new sets, which queue behind these and wait for a create
     * of their own (hc__seg_create starts at most one). */
    struct wrec *w, *last = s->place_tail;

    if (rc == -ENOSPC || rc == -EDQUOT)
        s->nospace_until_ms = mono_ms() + NOSPACE_BACKOFF_MS;
    while (last && (w = s->place_head)) {
        bool end = w == last;
        /* an open segment with room takes it even when the create failed (a
         * create to add a segment, not the only way in) */
        struct seg *seg = w->cleared ? NULL : open_pick(s, w, NULL, rc == 0);
        if (!w->cleared && !seg && rc == 0) {
            opens_close_full(s, w);
            rc = hc__seg_create(s);
            if (rc == 0)
                return;
        }
        s->place_head = w->next;
        if (!s->place_head)
            s->place_tail = NULL;
        w->next = NULL;
        if (w->cleared)
            wrec_abandon(s, w, 0);
        else if (!seg)
            wrec_abandon(s, w, rc);
        else if (wrec_put(s, seg, w) < 0)
            wrec_abandon(s, w, -ENOMEM);
        if (end)
            break;
    }
    if (rc == 0)
        open_grow(s);
}

/* Takes w off the list of sets being compressed. */
static void zlist_del(struct hc_store *s, struct wrec *w)
{
    if (w->zprev)
        w->zprev->znext = w->znext;
    else
        s->compressing = w->znext;
    if (w->znext)
        w->znext->zprev = w->zprev;
    w->zprev = w->znext = NULL;
}

/* A set's compression task is over: the record takes its place now that its
 * size is known. A set whose namespace was cleared meanwhile is not written
 * (it would land after the clear point); its callbacks run with 0 as for a
 * write in flight at the clear. */
static void wrec_compressed(struct hc_io_req *req)
{
    struct wrec *w = container_of(req, struct wrec, req);
    struct hc_store *s = w->s;
    int rc = 0;

    s->inflight--;
    zlist_del(s, w);
    if (w->fault) {
        s->st->client_faults++;
        rc = -EFAULT; /* its buffer vanished: not written */
    } else if (!w->cleared && (rc = wrec_place(s, w)) == 0) {
        return;
    }
    wrec_abandon(s, w, rc);
}

/* hc_store_set_ex once its arguments were checked (compression: enum
 * hc_compress): a dedupe hit, or a new record write. Returns 0 (cb will run)
 * or -errno (cb will not; the caller counts the set error). */
int hc__set_start(struct hc_store *s, int ns, const char *key, size_t klen,
                  const struct hc_pbuf *pb, uint64_t len, uint32_t compression, uint32_t stream,
                  hc_store_cb cb, void *data)
{
    struct hc_hash h = hc__page_hash(s, ns, key, klen);
    struct wrec *w = NULL;
    int rc;

    if (s->cfg.dedupe) {
        const struct hc_index_ent *e = hc_index_lookup(&s->ix, h);
        struct pnode *p;
        if (e) {
            rc = hc__defer_cb(s, cb, data, 0, e->len);
            if (rc < 0)
                return rc;
            goto dedup;
        }
        if ((p = hc__ptab_find(&s->writing, h))) {
            rc = waiter_add(container_of(p, struct wrec, pn), cb, data);
            if (rc < 0)
                return rc;
            goto dedup;
        }
    }

    rc = -ENOMEM;
    w = calloc(1, sizeof(*w));
    if (!w || posix_memalign((void **)&w->hdr, HC_STORE_ALIGN, HC_STORE_ALIGN) != 0)
        goto err;
    if (waiter_add(w, cb, data) < 0)
        goto err;
    w->s = s;
    w->ns = (uint16_t)ns;
    w->pb = *pb;
    w->len = len;
    w->stream = stream;
    w->pn.h = h;
    w->compress = compression == HC_COMPRESSION_ZSTD ||
                  (compression == HC_COMPRESSION_DEFAULT && s->cfg.enable_compression);
    w->compress = w->compress && hc__zlimit(len) > 0;
    hc__hdr_fill(w->hdr, s->ns[ns].name, s->ns[ns].len, key, klen, len, s->epoch);

    if (w->compress) {
        /* The record's size is known after the compression: it takes its
         * place in the segment then (wrec_compressed). */
        w->znext = s->compressing;
        if (s->compressing)
            s->compressing->zprev = w;
        s->compressing = w;
        hc__task_submit(s, &w->req, HC_IO_PRIO_LOW, wrec_compress, wrec_compressed, w);
    } else {
        rc = wrec_place(s, w);
        if (rc < 0)
            goto err;
    }
    if (s->cfg.dedupe) {
        hc__ptab_add(&s->writing, &w->pn);
        w->in_tab = true;
    }
    s->st->sets++;
    return 0;

dedup:
    s->st->sets++;
    s->st->dedup_hits++;
    s->st->dedup_bytes += len;
    return 0;
err:
    if (w)
        hc__wrec_free(w);
    return rc;
}

/* Takes the in-flight writes of namespace ns out of the dedupe table: they
 * land before the clear point and stay out of the index, so a set after the
 * clear must not join them. They still finish and run their callbacks. */
static void writing_detach_ns(struct hc_store *s, int ns)
{
    struct ptab *t = &s->writing;
    for (size_t i = 0; i <= t->mask; i++) {
        struct pnode **pp = &t->b[i];
        while (*pp) {
            struct wrec *w = container_of(*pp, struct wrec, pn);
            if (w->ns == ns) {
                *pp = w->pn.next;
                w->pn.next = NULL;
                w->in_tab = false;
                t->n--;
            } else {
                pp = &(*pp)->next;
            }
        }
    }
}

/* A clear of namespace ns (tombstone.c): its writes in flight stay out of the
 * dedupe table, and its sets being compressed or waiting for a new segment
 * are not written at all (they would land after the clear point). */
void hc__write_clear_ns(struct hc_store *s, int ns)
{
    writing_detach_ns(s, ns);
    for (struct wrec *w = s->compressing; w; w = w->znext)
        if (w->ns == ns)
            w->cleared = true;
    for (struct wrec *w = s->place_head; w; w = w->next)
        if (w->ns == ns)
            w->cleared = true;
}
