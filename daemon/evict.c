/* What this node keeps: the index entries and what they cost (the pages,
 * bytes_stored, local/remote pages and disk_bytes counters move only here),
 * and eviction. Over capacity_bytes, sealed local segments are dropped in
 * the order they were written, the pages read again or late in their life
 * written again first (reinsertion); with the filesystem under
 * min_free_ratio, the oldest, one at a time. A read in flight keeps a
 * dropped segment's fd open, so a drop never breaks it.
 *
 * Threads: loop thread, except statvfs_before, which runs on an I/O thread:
 * the free-space check's statvfs, at most once a second, never blocks the
 * loop thread; its result is acted on when it comes back. */
#include "store_int.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/statvfs.h>

#include "log.h"

/* ---- accounting ------------------------------------------------------------ */

/* A page of len bytes entered the index, in seg. */
static void acct_add(struct hc_store *s, struct seg *seg, uint64_t len)
{
    s->st->pages++;
    s->st->bytes_stored += len;
    seg->pages++;
    if (seg->local)
        s->st->local_pages++;
    else
        s->st->remote_pages++;
}

/* A page of len bytes of seg left the index. */
void hc__acct_del(struct hc_store *s, struct seg *seg, uint64_t len)
{
    s->st->pages--;
    s->st->bytes_stored -= len;
    seg->pages--;
    if (seg->local)
        s->st->local_pages--;
    else
        s->st->remote_pages--;
}

/* This node's segment files now take v bytes. */
void hc__local_bytes_set(struct hc_store *s, uint64_t v)
{
    s->local_bytes = v;
    s->st->disk_bytes = v;
}

/* Puts a page in the index; an existing entry for h is kept. len is the
 * original length, sblocks the stored blocks of a compressed record (0 raw). */
void hc__index_put(struct hc_store *s, struct seg *seg, struct hc_hash h, uint64_t off,
                   uint32_t len, uint16_t ns, uint16_t sblocks)
{
    struct hc_index_ent e = {.h = h,
                             .seg = seg->id,
                             .off = (uint32_t)(off / HC_STORE_ALIGN),
                             .len = len,
                             .ns = ns,
                             .flags = sblocks};
    int rc = hc_index_insert(&s->ix, &e);
    if (rc == 0)
        acct_add(s, seg, len);
    else if (rc == -ENOMEM)
        hc_log(HC_LOG_ERR, "store: out of memory growing the index; page dropped");
}

/* Pages of a segment being evicted worth reinserting (evict_one). */
struct reinsert_scan {
    struct hc_index_ent *ents;
    size_t n, cap;
};

/* What the predicates of the two drops below remove, with the accounting;
 * keep (not NULL) also collects the segment's pages to reinsert. */
struct drop_ctx {
    struct hc_store *s;
    uint32_t seg;
    int ns;
    struct reinsert_scan *keep;
};

static void reinsert_keep(struct reinsert_scan *c, const struct hc_index_ent *e);

static bool drop_seg_pred(const struct hc_index_ent *e, void *arg)
{
    struct drop_ctx *c = arg;
    if (e->seg != c->seg)
        return false;
    if (c->keep)
        reinsert_keep(c->keep, e);
    hc__acct_del(c->s, c->s->segs[e->seg], e->len);
    return true;
}

static bool drop_ns_pred(const struct hc_index_ent *e, void *arg)
{
    struct drop_ctx *c = arg;
    if (e->ns != c->ns)
        return false;
    hc__acct_del(c->s, c->s->segs[e->seg], e->len);
    return true;
}

/* Removes seg's pages from the index. Returns how many. */
size_t hc__index_drop_seg(struct hc_store *s, struct seg *seg)
{
    struct drop_ctx c = {.s = s, .seg = seg->id};
    return hc_index_remove_if(&s->ix, drop_seg_pred, &c);
}

/* Removes namespace ns's pages from the index. Returns how many. */
size_t hc__index_drop_ns(struct hc_store *s, int ns)
{
    struct drop_ctx c = {.s = s, .ns = ns};
    return hc_index_remove_if(&s->ix, drop_ns_pred, &c);
}

/* ---- eviction ---------------------------------------------------------------- */

static struct seg *oldest_sealed_local(struct hc_store *s)
{
    struct seg *best = NULL;
    for (uint32_t i = 0; i < s->segs_cap; i++) {
        struct seg *seg = s->segs[i];
        if (seg && seg->local && seg->state == SEG_SEALED && (!best || seg->seq < best->seq))
            best = seg;
    }
    return best;
}

/* ---- reinsertion -----------------------------------------------------------
 *
 * A page read again since it entered the index, or read late in its
 * segment's life (after REINSERT_LATE of the capacity, less what the open
 * segments hold, was written since the segment stopped taking appends,
 * that is in about the last 40% of its life before eviction), is written
 * again, to an open segment, when its segment is evicted: as an LRU keeps a
 * page read lately, and the pages that are reused (a shared prompt prefix,
 * a conversation's next turn) outlive the segment they were first written
 * to, as CacheLib's Navy does for its regions. A page read once, early in
 * its segment's life, goes with it (an LRU would drop it soon too), so the
 * rewrite does not give every page read once a whole new life. Its bytes
 * come from a read of the record into the daemon's memory (checked like any
 * read; the segment's fd stays open for it past the unlink), then a set
 * under the key its header names. What this rewrites is capped: the
 * reinserted bytes stay under REINSERT_RATIO of the bytes clients had
 * written, so the write amplification stays under 1 + REINSERT_RATIO.
 * Compressed records are not reinserted. A page cleared meanwhile is not
 * written again (its tombstone), nor one set again by a client (dedupe). */
#define REINSERT_RATIO 0.25
/* Chosen with tools/evict_sim.py (a simulation of this store) and
 * tools/replay_suite.sh (the daemon), each over the Mooncake trace and five
 * Zipf traces at three capacities (docs/BENCHMARKS.md). Late reads alone:
 * the last 45% or 50% of a segment's life each left some cases under 98% of
 * an exact LRU's hits, on different traces; a second read as well, with the
 * last 35% or 40%, none in the simulation. Two reads alone (the rule before)
 * kept pages read early and lost those read once late. */
#define REINSERT_LATE 0.6

/* A read of e, a page of the local segment seg (a client's read from
 * storage, or another node's told through a hint): the page is marked for
 * reinsertion (IDX_REINSERT) when it was read before (IDX_READ1) or when the
 * read comes late in the segment's life (only with a capacity: without one
 * nothing is evicted). The entry is the index's; its caller's bits are ours
 * to change. */
void hc__note_read(struct hc_store *s, const struct seg *seg, const struct hc_index_ent *e)
{
    struct hc_index_ent *w = (struct hc_index_ent *)e;
    if (!seg->local)
        return;
    if (w->flags & IDX_READ1)
        w->flags |= IDX_REINSERT;
    w->flags |= IDX_READ1;
    if (seg->state == SEG_OPEN || !s->cfg.capacity_bytes)
        return;
    /* a closed segment lives for about the capacity less what the open
     * segments hold (they count toward it and are never evicted) */
    uint64_t open = 0;
    for (unsigned i = 0; i < s->nopen; i++)
        open += s->opens[i]->size;
    uint64_t life = s->cfg.capacity_bytes > open ? s->cfg.capacity_bytes - open : 0;
    if ((double)(s->wclock - seg->closed_wclock) >= REINSERT_LATE * (double)life)
        w->flags |= IDX_REINSERT;
}

/* The reinsertion's set is over: its bytes are freed. */
static void reinsert_set_done(void *data, int status, uint64_t len)
{
    (void)status;
    (void)len;
    free(data);
}

/* The read of a page to reinsert is over (r is freed after this returns):
 * the page is set again from r's daemon-owned copy. */
static void reinsert_read_done(void *data, int status, uint64_t len)
{
    struct rd *r = data;
    struct hc_store *s = r->s;
    struct hdr_view v;
    int ns;

    s->reinsert_bytes -= r->len;
    (void)len;
    if (status < 0 || s->stopping || !r->bounce || hc__hdr_check(r->hdr, &v) < 0 ||
        (ns = hc__ns_find(s, v.ns, v.nslen)) < 0 ||
        hc__tombstoned(s, (uint16_t)ns, r->rseq, r->off))
        return;
    void *buf = r->bounce;
    struct hc_pbuf pb = hc_pbuf_one(buf, r->len);
    uint64_t sets = s->st->sets, dedup = s->st->dedup_hits, dbytes = s->st->dedup_bytes;
    r->bounce = NULL; /* the set's now */
    if (hc__set_start(s, ns, v.key, v.klen, &pb, r->len, HC_COMPRESSION_OFF, 0, reinsert_set_done,
                      buf) < 0) {
        free(buf);
        return;
    }
    /* not a client's set: the client counters stay as they were */
    bool written = s->st->dedup_hits == dedup;
    s->st->sets = sets;
    s->st->dedup_hits = dedup;
    s->st->dedup_bytes = dbytes;
    if (written) {
        s->st->reinserted_pages++;
        s->st->reinserted_bytes += r->len;
    }
}

/* Collects e when it is a raw page marked for reinsertion (an allocation
 * failure only loses it). */
static void reinsert_keep(struct reinsert_scan *c, const struct hc_index_ent *e)
{
    if (!(e->flags & IDX_REINSERT) || (e->flags & IDX_SBLOCKS) ||
        hc__grow(&c->ents, c->n, &c->cap, sizeof(*c->ents), 64) < 0)
        return;
    c->ents[c->n++] = *e;
}

/* Evicts v: one pass over the index removes its pages and, with reinsert,
 * collects those worth keeping; their reads start (each holding v, so its
 * fd outlives the drop) before v is dropped and its files removed. */
static void evict_one(struct hc_store *s, struct seg *v)
{
    struct reinsert_scan c = {0};
    struct drop_ctx d = {.s = s, .seg = v->id, .keep = s->cfg.reinsert ? &c : NULL};
    uint64_t client = s->st->bytes_written - s->st->reinserted_bytes;
    size_t n = hc_index_remove_if(&s->ix, drop_seg_pred, &d);

    for (size_t i = 0; i < c.n; i++) {
        const struct hc_index_ent *e = &c.ents[i];
        struct hc_pbuf none = hc_pbuf_one(NULL, 0);
        struct rd *r;

        if ((double)(s->st->reinserted_bytes + s->reinsert_bytes + e->len) >
            REINSERT_RATIO * (double)client)
            break;
        if (!(r = hc__rd_new(s, e, &none, true)))
            break;
        r->reinsert = true;
        r->rseq = v->seq;
        r->cb = reinsert_read_done;
        r->data = r;
        r->pn.h = e->h;
        r->seg->refs++;
        s->reinsert_bytes += e->len;
        hc__rd_submit(s, r);
    }
    free(c.ents);
    hc__seg_drop_gone(s, v, true, n);
}

/* Evicts sealed local segments, oldest first, while over capacity, starting
 * the reinsertion of their reused pages (evict_one). */
void hc__evict_capacity(struct hc_store *s)
{
    struct seg *v;
    while (!s->stopping && s->cfg.capacity_bytes && s->local_bytes > s->cfg.capacity_bytes &&
           (v = oldest_sealed_local(s)))
        evict_one(s, v);
}

struct statvfs_task {
    struct hc_io_req req;
    struct hc_store *s;
    char dir[PATH_MAX];
    double free_ratio; /* set by statvfs_before */
};

/* Called on an I/O thread: a statvfs on the mount is a metadata round trip.
 * Reads and writes only its task (dir was copied into it at submit). */
static int statvfs_before(struct hc_io_req *req)
{
    struct statvfs_task *t = container_of(req, struct statvfs_task, req);
    struct statvfs sv;
    if (statvfs(t->dir, &sv) < 0)
        return -errno;
    if (sv.f_blocks == 0)
        return -ENODATA;
    t->free_ratio = (double)sv.f_bavail / (double)sv.f_blocks;
    return 0;
}

/* Back on the loop thread: keeps the result and drops one segment while the
 * filesystem is short of free space (the next statvfs sees a drop only once
 * its unlink is done, so none is asked while an unlink is in flight). */
static void statvfs_done(struct hc_io_req *req)
{
    struct statvfs_task *t = container_of(req, struct statvfs_task, req);
    struct hc_store *s = t->s;
    struct seg *v;

    s->inflight--;
    s->statvfs_busy = false;
    if (req->result == 0 && !s->stopping && !s->unlinks && s->cfg.min_free_ratio > 0 &&
        t->free_ratio < s->cfg.min_free_ratio && (v = oldest_sealed_local(s)))
        hc__seg_drop(s, v, true);
    free(t);
}

/* At a tick: refreshes the free-space figure on an I/O thread, at most once a
 * second and one at a time, unless an unlink is in flight. */
void hc__evict_free_space(struct hc_store *s, uint64_t now_ms)
{
    struct statvfs_task *t;
    if (s->cfg.min_free_ratio <= 0 || s->unlinks || s->statvfs_busy ||
        now_ms - s->last_statvfs_ms < 1000)
        return;
    if (!(t = calloc(1, sizeof(*t))))
        return;
    s->last_statvfs_ms = now_ms;
    t->s = s;
    snprintf(t->dir, sizeof(t->dir), "%s", s->dir);
    s->statvfs_busy = true;
    hc__task_submit(s, &t->req, HC_IO_PRIO_LOW, statvfs_before, statvfs_done, NULL);
}
