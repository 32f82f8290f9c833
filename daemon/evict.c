/* What this node keeps: the index entries and what they cost (the pages,
 * bytes_stored, local/remote pages and disk_bytes counters move only here),
 * and eviction. Over capacity_bytes, the oldest sealed local segments are
 * dropped; with the filesystem under min_free_ratio, one at a time. A read in
 * flight keeps a dropped segment's fd open, so a drop never breaks it.
 *
 * Threads: loop thread only. Blocking on the loop thread: the statvfs of the
 * free-space check, at most once a second. */
#include "store_int.h"

#include <errno.h>
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

/* What the predicates of the two drops below remove, with the accounting. */
struct drop_ctx {
    struct hc_store *s;
    uint32_t seg;
    int ns;
};

static bool drop_seg_pred(const struct hc_index_ent *e, void *arg)
{
    struct drop_ctx *c = arg;
    if (e->seg != c->seg)
        return false;
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

/* Drops the oldest sealed local segments while over capacity. */
void hc__evict_capacity(struct hc_store *s)
{
    struct seg *v;
    while (!s->stopping && s->cfg.capacity_bytes && s->local_bytes > s->cfg.capacity_bytes &&
           (v = oldest_sealed_local(s)))
        hc__seg_drop(s, v, true);
}

/* One segment at a time while the filesystem is short of free space (the
 * statvfs sees a drop only once the unlink is done). The statvfs blocks the
 * loop thread, at most once a second. */
void hc__evict_free_space(struct hc_store *s, uint64_t now_ms)
{
    struct statvfs sv;
    struct seg *v;
    if (s->cfg.min_free_ratio <= 0 || s->unlinks || now_ms - s->last_statvfs_ms < 1000)
        return;
    s->last_statvfs_ms = now_ms;
    if (statvfs(s->dir, &sv) < 0 || sv.f_blocks == 0)
        return;
    if ((double)sv.f_bavail / (double)sv.f_blocks < s->cfg.min_free_ratio &&
        (v = oldest_sealed_local(s)))
        hc__seg_drop(s, v, true);
}
