/* Coalescing: gets of one page share one storage read. A get of a page whose
 * read is in flight joins it (struct join); a page read for a getter with
 * readers > 1 lingers in memory (struct linger) for the other readers' gets
 * (see struct hc_store_opts). Either way the joiner's bytes come from a copy
 * on an I/O thread, and only ever from a daemon-owned buffer, checked before
 * any copy: never from another client's slot, which that client may change
 * at any moment (a CRC cannot tell: a client can change bytes and keep it).
 * A read that went straight into its getter's slot (readers 1, the common
 * case, which saves a copy) has no such buffer: when a get joins it, the I/O
 * thread reads the page once more from the file, right after the first read
 * (from the page cache that read filled, as a rule), into a daemon-owned
 * buffer (rd.own) for the joiners; a get that joins too late for that gets
 * one more read, shared by all such joiners (hc__rd_regroup). Gets that declare
 * more than one reader per page (the ranks of an MLA model) read into a
 * daemon-owned buffer to begin with: one read for all.
 *
 * Threads: loop thread, except join_before, which runs on an I/O thread (see
 * there for what it reads), and rd_src, which runs on either. */
#include "store_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "guard.h"

/* Any thread (join_before on an I/O thread, hc__rd_fanout on the loop
 * thread). The verified, daemon-owned page a copy for a joiner takes from, or
 * NULL when the read went straight into its getter's slot. */
static const void *rd_src(const struct rd *r)
{
    return r->plain ? r->plain : r->bounce ? r->bounce : r->own;
}

/* Frees a lingering page once it is out of the table and no copy reads it. */
static void linger_release(struct hc_store *s, struct linger *l)
{
    if (l->in_tab || l->refs)
        return;
    s->st->linger_bytes -= l->len;
    free(l->buf);
    free(l);
}

/* Takes l out of the table (later gets read storage again). */
void hc__linger_unlink(struct hc_store *s, struct linger *l)
{
    if (!l->in_tab)
        return;
    hc__ptab_del(&s->lingering, &l->pn);
    if (l->prev)
        l->prev->next = l->next;
    else
        s->lhead = l->next;
    if (l->next)
        l->next->prev = l->prev;
    else
        s->ltail = l->prev;
    l->prev = l->next = NULL;
    l->in_tab = false;
    linger_release(s, l);
}

/* Drops the pages that lingered past their time (oldest first: every entry
 * got the same linger time when it was made, except across a reload). */
void hc__linger_expire(struct hc_store *s, uint64_t now)
{
    struct linger *l = s->lhead, *next;
    for (; l; l = next) {
        next = l->next;
        if (l->expires_ms <= now)
            hc__linger_unlink(s, l);
    }
}

/* Drops the lingering pages of segment seg (>= 0) or of namespace ns (>= 0):
 * the page left the index (eviction, a vanished remote segment, clear); both
 * -1: every one. */
void hc__linger_drop(struct hc_store *s, int64_t seg, int ns)
{
    struct linger *l = s->lhead, *next;
    bool all = seg < 0 && ns < 0;
    for (; l; l = next) {
        next = l->next;
        if (all || (seg >= 0 && l->seg == (uint64_t)seg) || (ns >= 0 && l->ns == ns))
            hc__linger_unlink(s, l);
    }
}

/* Moves the verified page of a finished read r into a lingering entry that
 * serves `remaining` more gets. Makes room under read_linger_bytes by
 * dropping the oldest entries. Returns NULL (r unchanged) when r has no
 * daemon-owned copy of the page, the page left the index meanwhile, it does
 * not fit, or memory is short. */
static struct linger *linger_new(struct hc_store *s, struct rd *r, uint32_t remaining)
{
    const struct hc_index_ent *e = hc_index_lookup(&s->ix, r->pn.h);
    void **bufp = r->plain ? &r->plain : r->bounce ? &r->bounce : &r->own;
    struct pnode *old;
    struct linger *l;

    if (!*bufp || !e || e->seg != r->seg->id || (uint64_t)e->off * HC_STORE_ALIGN != r->off ||
        r->seg->state == SEG_DEAD || r->len > s->cfg.read_linger_bytes)
        return NULL;
    if ((old = hc__ptab_find(&s->lingering, r->pn.h)))
        hc__linger_unlink(s, container_of(old, struct linger, pn));
    while (s->lhead && s->st->linger_bytes + r->len > s->cfg.read_linger_bytes)
        hc__linger_unlink(s, s->lhead);
    if (s->st->linger_bytes + r->len > s->cfg.read_linger_bytes)
        return NULL; /* the rest is held by copies in flight */
    if (!(l = calloc(1, sizeof(*l))))
        return NULL;
    l->pn.h = r->pn.h;
    l->buf = *bufp;
    *bufp = NULL;
    l->len = r->len;
    l->seg = r->seg->id;
    l->off = r->off;
    l->ns = e->ns;
    l->remaining = remaining;
    l->expires_ms = mono_ms() + s->cfg.read_linger_ms;
    l->in_tab = true;
    l->prev = s->ltail;
    if (s->ltail)
        s->ltail->next = l;
    else
        s->lhead = l;
    s->ltail = l;
    hc__ptab_add(&s->lingering, &l->pn);
    s->st->linger_bytes += l->len;
    return l;
}

/* Called on an I/O thread: a copy of a verified page into a getter's slot,
 * from a lingering page or the leader's daemon-owned buffer (hc__rd_fanout
 * submits copies only from those).
 *
 * What it reads besides its join, and why the loop thread cannot change or
 * free it meanwhile: of the lingering page, buf and len, set before the page
 * entered the table and never written after; the page is freed only once
 * its refs (one per copy in flight) drop to 0 in join_done. Of the leader,
 * plain, bounce, own and len: its read is over (the fields were set on
 * the loop thread or by rd_after before its done ran), it is out of the table
 * of reads in flight, and nothing takes its buffers (hc__rd_fanout gives
 * copies the leader only when no lingering entry took them); it is freed only
 * when the done of its last copy ran (copies). */
static int join_before(struct hc_io_req *req)
{
    struct join *j = container_of(req, struct join, req);
    const void *src = j->lin ? j->lin->buf : rd_src(j->lead);
    uint32_t len = j->lin ? j->lin->len : j->lead->len;

    if (!src)
        return -EBADMSG;                  /* never: see hc__rd_fanout */
    return hc_pbuf_put(&j->pb, src, len); /* -EFAULT: its slot vanished */
}

/* Back on the loop thread: answers the joiner (a copy that found no source
 * reads the page again, alone). The leader answers after its last copy. */
static void join_done(struct hc_io_req *req)
{
    struct join *j = container_of(req, struct join, req);
    struct rd *lead = j->lead;
    struct linger *l = j->lin;
    struct hc_store *s = j->s;

    s->inflight--;
    if (req->result == -EFAULT) {
        s->st->client_faults++;
        j->cb(j->data, -EFAULT, 0);
    } else if (l) {
        hc__client_hit(s, j->cb, j->data, l->len);
    } else if (req->result == 0) {
        hc__client_hit(s, j->cb, j->data, lead->len);
    } else {
        int rc =
            hc__get_start(s, j->ns, j->key, j->klen, &j->pb, j->cap, 1, j->cb, j->data, GET_OWNED);
        if (rc < 0)
            j->cb(j->data, rc, 0);
    }
    free(j);
    if (l) {
        l->refs--;
        linger_release(s, l);
    } else if (--lead->copies == 0) {
        hc__rd_answer(s, lead);
        hc__rd_free(lead);
    }
}

/* Submits the copy for joiner j (j->lead or j->lin set). */
static void join_submit(struct hc_store *s, struct join *j)
{
    hc__task_submit(s, &j->req, HC_IO_PRIO_HIGH, join_before, join_done, NULL);
}

/* A joiner for a get (ns, key) into buf; NULL when out of memory. */
static struct join *join_new(struct hc_store *s, int ns, const char *key, size_t klen,
                             const struct hc_pbuf *pb, uint64_t cap, hc_store_cb cb, void *data)
{
    struct join *j = calloc(1, sizeof(*j));
    if (!j)
        return NULL;
    j->s = s;
    j->pb = *pb;
    j->cap = cap;
    j->cb = cb;
    j->data = data;
    j->ns = ns;
    j->klen = (uint16_t)klen;
    memcpy(j->key, key, klen);
    return j;
}

/* A get of the page e names (hash h) that a lingering page or a read in
 * flight can serve: a copy from the lingering page, or a join of the read.
 * Only a read of the record the index names now is joined: after a clear and
 * a new set of the key, an older read (perhaps waiting to be tried again)
 * holds the old page; a new read is then added to the table in front of it.
 * Returns 1 (served: cb will run), 0 (not: read storage), or -ENOMEM. */
int hc__get_coalesced(struct hc_store *s, int ns, const char *key, size_t klen,
                      const struct hc_pbuf *pb, uint64_t cap, hc_store_cb cb, void *data,
                      struct hc_hash h, const struct hc_index_ent *e)
{
    uint64_t off = (uint64_t)e->off * HC_STORE_ALIGN;
    struct pnode *p;
    struct join *j;

    if (s->lhead && (p = hc__ptab_find(&s->lingering, h))) {
        struct linger *l = container_of(p, struct linger, pn);
        if (l->seg == e->seg && l->off == off && l->len == e->len && mono_ms() < l->expires_ms) {
            if (!(j = join_new(s, ns, key, klen, pb, cap, cb, data)))
                return -ENOMEM;
            j->lin = l;
            l->refs++;
            s->st->coalesced_reads++;
            if (--l->remaining == 0)
                hc__linger_unlink(s, l); /* freed once the copy is done */
            join_submit(s, j);
            return 1;
        }
        hc__linger_unlink(s, l); /* stale: read again */
    }
    if ((p = hc__ptab_find(&s->reading, h))) {
        struct rd *lead = container_of(p, struct rd, pn);
        if (lead->len == e->len && lead->seg->id == e->seg && lead->off == off &&
            lead->seg->state != SEG_DEAD) {
            if (!(j = join_new(s, ns, key, klen, pb, cap, cb, data)))
                return -ENOMEM;
            j->lead = lead;
            j->next = lead->joins;
            lead->joins = j;
            __atomic_store_n(&lead->want_own, 1, __ATOMIC_RELEASE);
            s->st->coalesced_reads++;
            return 1;
        }
    }
    return 0;
}

/* The joiners of r, a read that went straight into its getter's slot (or
 * failed there, st -EFAULT): they get the page from one more read into a
 * daemon-owned buffer, which the first leads and the others join
 * (GET_JOINABLE | GET_OWNED), never from r's slot. The getter of r is
 * answered: a hit (st 0) or st. r is freed. */
void hc__rd_regroup(struct hc_store *s, struct rd *r, int st)
{
    struct join *j, *next;

    for (j = r->joins, r->joins = NULL; j; j = next) {
        next = j->next;
        s->st->coalesced_reads--; /* counted again if it joins the new read */
        int rc = hc__get_start(s, j->ns, j->key, j->klen, &j->pb, j->cap, 1, j->cb, j->data,
                               GET_JOINABLE | GET_OWNED);
        if (rc < 0)
            j->cb(j->data, rc, 0);
        free(j);
    }
    if (st < 0) {
        s->st->client_faults++;
        r->cb(r->data, st, 0);
    } else {
        hc__rd_answer(s, r);
    }
    hc__rd_free(r);
}

/* A storage read r finished with a good page (r is out of the table of reads
 * in flight and no longer holds its segment): the getter, its joiners and
 * its other readers get it. The page lingers when the getter's readers
 * expect more gets than joined; the joiners then copy from the lingering page
 * and the leader answers at once. Otherwise the joiners copy from the
 * leader's daemon-owned buffer and the leader answers after the last copy;
 * a read that has none gets its joiners served by another (hc__rd_regroup). */
void hc__rd_fanout(struct hc_store *s, struct rd *r)
{
    struct linger *l = NULL;
    struct join *j, *next;
    uint32_t njoins = 0;

    for (j = r->joins; j; j = j->next)
        njoins++;
    if (r->readers > njoins + 1 && s->cfg.coalesce_reads && s->cfg.read_linger_ms)
        l = linger_new(s, r, r->readers - 1 - njoins);
    hc__seg_maybe_free(s, r->seg); /* after linger_new, which reads it */
    if (!l && r->joins && !rd_src(r)) {
        hc__rd_regroup(s, r, 0);
        return;
    }
    if (l || !r->joins) {
        for (j = r->joins, r->joins = NULL; j; j = next) {
            next = j->next;
            j->lin = l;
            l->refs++;
            join_submit(s, j);
        }
        hc__rd_answer(s, r);
        hc__rd_free(r);
        return;
    }
    for (j = r->joins; j; j = j->next)
        r->copies++;
    for (j = r->joins, r->joins = NULL; j; j = next) {
        next = j->next;
        join_submit(s, j);
    }
}
