/* The set path. A set of a key that is stored or being written costs no
 * write (dedupe): it is answered once the first write is whole. Otherwise the
 * page becomes a record write (struct wrec): compressed first on an I/O thread
 * when asked (compress.c), then placed at the tail of the open segment (a new
 * one when it has no room) and written on an I/O thread; segment.c commits
 * records in offset order.
 *
 * When the open segment is full (or there is none), the sets queue in arrival
 * order on s->place_head while the next segment file is created on an I/O
 * thread (hc__seg_create); hc__place_waiting places them once it exists.
 *
 * Threads: loop thread, except wrec_before and wrec_compress, which run on an
 * I/O thread and touch only their wrec and the bytes it points to (handed to
 * them in the request; the loop thread leaves those fields alone meanwhile,
 * see struct wrec). Nothing here waits on the mount. */
#include "store_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "crc32c.h"
#include "log.h"

/* After the volume answered ENOSPC, sets that need a new segment fail at
 * once for this long (s->nospace_until_ms). */
#define NOSPACE_BACKOFF_MS 1000

static const unsigned char zero_block[HC_STORE_ALIGN] __attribute__((aligned(HC_STORE_ALIGN)));

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

/* Called on an I/O thread: the payload CRC (over the bytes written) and the
 * header CRC. */
static int wrec_before(struct hc_io_req *req)
{
    struct wrec *w = container_of(req, struct wrec, req);
    if (w->zbuf) {
        hc__hdr_finish(w->hdr, hc_crc32c(0, w->zbuf, w->zlen));
        return 0;
    }
    const void *p = w->buf;
    if (w->bounce) {
        memcpy(w->bounce, w->buf, w->len);
        p = w->bounce;
    }
    hc__hdr_finish(w->hdr, hc_crc32c(0, p, w->len));
    return 0;
}

/* Called on an I/O thread: compresses the page into zbuf. A page that does
 * not shrink enough (or no memory) is stored raw: zbuf stays NULL. */
static int wrec_compress(struct hc_io_req *req)
{
    struct wrec *w = container_of(req, struct wrec, req);
    hc__zcompress(w->buf, w->len, &w->zbuf, &w->zlen);
    return 0;
}

/* Stored blocks of a compressed record, 0 for a raw one. */
uint16_t hc__wrec_sblocks(const struct wrec *w)
{
    return w->zbuf ? (uint16_t)(round_up(w->zlen) / HC_STORE_ALIGN) : 0;
}

/* Back on the loop thread: the write is over; commit what can be, in order. */
static void wrec_done(struct hc_io_req *req)
{
    struct wrec *w = container_of(req, struct wrec, req);
    struct hc_store *s = w->s;
    struct seg *seg = w->seg;

    s->inflight--;
    w->done = true;
    if (req->result < 0) {
        w->status = (int)req->result;
        s->st->io_errors++;
        hc_log(HC_LOG_ERR, "store: writing segment %016" PRIx64 " at %" PRIu64 ": %s", seg->seq,
               w->off, strerror(-w->status));
        if (w->status == -ENOSPC || w->status == -EDQUOT)
            s->nospace_until_ms = mono_ms() + NOSPACE_BACKOFF_MS;
        if (seg->state == SEG_OPEN)
            hc__seg_close_appends(s, seg);
    } else if (w->zbuf) {
        s->st->bytes_written += w->zlen;
        s->st->compressed_pages++;
        s->st->bytes_saved_compression += w->len - w->zlen;
    } else {
        s->st->bytes_written += w->len;
    }
    hc__seg_commit(s, seg);
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

/* True when the open segment has room for w. */
static bool open_has_room(const struct hc_store *s, const struct wrec *w)
{
    return s->open &&
           s->open->size + ent_rec_size(w->len, hc__wrec_sblocks(w)) <= s->cfg.segment_size;
}

/* Takes w's place at the tail of the open segment, which has room for it
 * (open_has_room), and submits its write. w is filled except for the
 * placement. Returns 0, or -errno with nothing submitted (w still the
 * caller's). */
static int wrec_put(struct hc_store *s, struct wrec *w)
{
    uint64_t plen = w->zbuf ? w->zlen : w->len, size = ent_rec_size(w->len, hc__wrec_sblocks(w));
    struct seg *seg = s->open;
    int rc;

    bool aligned = ((uintptr_t)w->buf % HC_STORE_ALIGN) == 0 && w->len % HC_STORE_ALIGN == 0;
    if (!w->zbuf && seg->fd_direct && !aligned) {
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

    memset(&w->req, 0, sizeof(w->req));
    w->req.op = HC_IO_WRITE;
    w->req.prio = HC_IO_PRIO_LOW;
    w->req.fd = seg->fd;
    w->req.offset = w->off;
    w->req.iov[0] = (struct iovec){w->hdr, HC_STORE_ALIGN};
    w->req.iovcnt = 2;
    if (w->zbuf) {
        w->req.iov[1] = (struct iovec){w->zbuf, round_up(plen)};
    } else if (w->bounce) {
        w->req.iov[1] = (struct iovec){w->bounce, round_up(plen)};
    } else {
        w->req.iov[1] = (struct iovec){(void *)w->buf, plen};
        if (round_up(plen) > plen)
            w->req.iov[w->req.iovcnt++] = (struct iovec){(void *)zero_block, round_up(plen) - plen};
    }
    w->req.before = wrec_before;
    w->req.done = wrec_done;
    w->req.data = w;

    /* done runs on this thread later, so what follows is in place by then */
    rc = hc_io_submit(s->io, &w->req);
    if (rc < 0)
        return rc;
    seg->size += size;
    hc__local_bytes_set(s, s->local_bytes + size);
    if (seg->pend_tail)
        seg->pend_tail->next = w;
    else
        seg->pend_head = w;
    seg->pend_tail = w;
    s->inflight++;
    hc__evict_capacity(s);
    return 0;
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
        x->cb(x->data, rc, rc == 0 ? w->len : 0);
    hc__wrec_free(w);
}

/* Places w at the tail of the open segment, or, when it has no room or sets
 * wait already, queues w (in arrival order) for the next segment, whose file
 * is created on an I/O thread (hc__seg_create): a set never waits for the
 * mount on the loop thread. Returns 0 (placed or queued: w is the store's
 * now), or -errno with nothing done (w still the caller's). */
static int wrec_place(struct hc_store *s, struct wrec *w)
{
    if (!s->place_head && open_has_room(s, w))
        return wrec_put(s, w);
    if (!s->creating && mono_ms() < s->nospace_until_ms)
        return -ENOSPC; /* the volume was full a moment ago: no new file */
    if (!s->creating) {
        if (s->open)
            hc__seg_close_appends(s, s->open);
        int rc = hc__seg_create(s);
        if (rc < 0)
            return rc;
    }
    w->next = NULL;
    if (s->place_tail)
        s->place_tail->next = w;
    else
        s->place_head = w;
    s->place_tail = w;
    return 0;
}

/* The create of a segment is over (segment.c), with rc its error: the sets
 * queued for it take their places in order, those of a cleared namespace end
 * unwritten, and when the new segment fills up a next one is created. If the
 * create failed, every queued set fails with its error. */
void hc__place_waiting(struct hc_store *s, int rc)
{
    struct wrec *w;

    if (rc == -ENOSPC || rc == -EDQUOT)
        s->nospace_until_ms = mono_ms() + NOSPACE_BACKOFF_MS;
    while ((w = s->place_head)) {
        if (rc == 0 && !w->cleared && !open_has_room(s, w)) {
            if (s->open)
                hc__seg_close_appends(s, s->open);
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
        else if (rc < 0)
            wrec_abandon(s, w, rc);
        else if (wrec_put(s, w) < 0)
            wrec_abandon(s, w, -ENOMEM);
    }
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
    if (!w->cleared && (rc = wrec_place(s, w)) == 0)
        return;
    wrec_abandon(s, w, rc);
}

/* hc_store_set_ex once its arguments were checked (compression: enum
 * hc_compress): a dedupe hit, or a new record write. Returns 0 (cb will run)
 * or -errno (cb will not; the caller counts the set error). */
int hc__set_start(struct hc_store *s, int ns, const char *key, size_t klen, const void *buf,
                  uint64_t len, uint32_t compression, hc_store_cb cb, void *data)
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
    w->buf = buf;
    w->len = len;
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
