/* remote_index = "filter": other nodes' sealed pages held as a filter per
 * node instead of index entries (issue 14, item 3; docs/BENCHMARKS.md, "What
 * a compact fleet index has to be"). Discovery adds the hashes of a remote
 * sealed segment's .idx to its node's chain of cuckoo filters (filter.h; a
 * new filter when the last is full) and loads the node's keys file
 * (keysfile.h, published by its owner: keys.c) when it changed. exists
 * answers "present, length not known" for a page a filter holds; a get of
 * such a page looks its key up in the keys files of the nodes whose filters
 * hold it (a task: one block read each, on an I/O thread), puts the entry it
 * finds into the index (the exact entry of a positive, cached) and reads the
 * page as any other; the record's header names the key, so a false positive,
 * a stale entry or a page of a segment sealed after the owner's last keys
 * file is a miss (counted in filter_misses), never a wrong page. Only the
 * filters of nodes whose keys file is loaded answer: a node that publishes
 * none (keys_interval_ms 0) is not seen in this mode. A keys file refused is
 * not read again until it changes. A segment that vanishes leaves its
 * fingerprints behind (stale, counted in filter_stale_pages: they answer
 * "maybe" for pages no longer there); once a node's stale pages are a
 * quarter of what its filters hold, its filters are built anew from the
 * .idx files of its segments (a task; filter_rebuilds). A clear of a
 * namespace does not reach the filters: other nodes' pages of it are found
 * again on a get.
 *
 * Threads: loop thread, except locate_before, keys_load_before and
 * rebuild_before, which run on an I/O thread and touch only their task and
 * the keys files it holds a reference to (their tables do not change while
 * referenced). */
#include "store_int.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "filter.h"
#include "keysfile.h"
#include "log.h"

/* A node's keys file as a reader holds it. */
struct node_keys {
    unsigned refs; /* the node's slot and the locate tasks using it */
    struct hc_keys k;
    int fd;
    uint64_t size;
    int64_t mtime_ns;
};

struct node_filt {
    struct hc_cfilter *f; /* the chain */
    size_t n;
    uint64_t pages, stale;
    struct node_keys *keys;
    bool loading; /* a keys_load task is in flight */
    /* the keys file last refused, not read again while it stays the same */
    uint64_t bad_size;
    int64_t bad_mtime_ns;
    bool rebuilding;      /* a rebuild task is in flight; meanwhile: */
    struct hc_hash *pend; /* the hashes merged (the new filter takes them too) */
    size_t npend, cappend;
    uint64_t stale_since; /* pages gone (stale in the new filter too) */
};

static struct node_filt *nf_of(struct hc_store *s, uint32_t node)
{
    if (node >= s->nnf) {
        size_t ncap = s->nnodes > node ? s->nnodes : node + 1;
        struct node_filt *n = realloc(s->nf, ncap * sizeof(*n));
        if (!n)
            return NULL;
        memset(n + s->nnf, 0, (ncap - s->nnf) * sizeof(*n));
        s->nf = n;
        s->nnf = ncap;
    }
    return &s->nf[node];
}

/* Drops a reference to nk; the last frees it and closes its fd, on an I/O
 * thread (s), or here when the store is closing (s NULL: no pool to ask). */
static void keys_unref(struct hc_store *s, struct node_keys *nk)
{
    if (nk && --nk->refs == 0) {
        hc_keys_free(&nk->k);
        if (nk->fd >= 0 && s)
            hc__fd_close(s, nk->fd);
        else if (nk->fd >= 0)
            close(nk->fd);
        free(nk);
    }
}

/* Adds h to node's chain: the last filter, or a new one when it is full (or
 * there is none), for at least more pages and twice the last one's: a node's
 * chain stays a few filters long, each at most half empty but the last. */
static int chain_add(struct node_filt *nf, struct hc_hash h, size_t more, struct hc_stats *st)
{
    if (nf->n > 0 && hc_cfilter_add(&nf->f[nf->n - 1], h) == 0)
        return 0;
    size_t want = nf->n ? hc_cfilter_count(&nf->f[nf->n - 1]) * 2 : 0;
    if (want < more)
        want = more;
    struct hc_cfilter *n = realloc(nf->f, (nf->n + 1) * sizeof(*n));
    if (!n)
        return -ENOMEM;
    nf->f = n;
    if (hc_cfilter_init(&nf->f[nf->n], want) < 0)
        return -ENOMEM;
    st->filter_bytes += hc_cfilter_memory(&nf->f[nf->n]);
    nf->n++;
    return hc_cfilter_add(&nf->f[nf->n - 1], h) == 0 ? 0 : -ENOMEM;
}

static bool chain_maybe(const struct node_filt *nf, struct hc_hash h)
{
    for (size_t i = 0; i < nf->n; i++)
        if (hc_cfilter_maybe(&nf->f[i], h))
            return true;
    return false;
}

void hc__fleet_merge(struct hc_store *s, struct seg *seg, const struct idx_data *d)
{
    struct node_filt *nf = nf_of(s, seg->node);
    uint64_t added = 0;

    /* its namespaces interned, as an exact merge does: a get or exists in a
     * namespace no client of this node used yet looks the store up */
    for (uint32_t i = 0; i < d->nns; i++)
        (void)hc__ns_intern(s, (const char *)d->ns_name[i] + 2, get16(d->ns_name[i]));
    for (uint32_t i = 0; nf && i < d->nent; i++) {
        const unsigned char *e = d->ents + (size_t)i * 32;
        struct hc_hash h = {get64(e), get64(e + 8)};
        if (chain_add(nf, h, d->nent - i, s->st) < 0 ||
            (nf->rebuilding && hc__grow(&nf->pend, nf->npend, &nf->cappend, sizeof(h), 1024) < 0)) {
            hc_log(HC_LOG_ERR, "store: out of memory adding node %s's pages to its filter",
                   s->nodes[seg->node]);
            break;
        }
        if (nf->rebuilding)
            nf->pend[nf->npend++] = h;
        added++;
    }
    if (nf)
        nf->pages += added;
    seg->filtered += added;
    s->st->filter_pages += added;
}

/* ---- rebuilding a node's filters ------------------------------------------- */

/* A node's filters built anew from the .idx files of its live segments. */
struct rebuild {
    struct hc_io_req req;
    struct hc_store *s;
    uint32_t node;
    uint64_t *seqs;
    uint32_t nseqs;
    struct hc_cfilter f;
    uint64_t pages;
    char dir[PATH_MAX];
};

/* Called on an I/O thread: loads each .idx (a segment gone since is
 * skipped), sizes one filter for all their pages, adds them. Touches only
 * t. */
static int rebuild_before(struct hc_io_req *req)
{
    struct rebuild *t = container_of(req, struct rebuild, req);
    struct idx_data *d = calloc(t->nseqs ? t->nseqs : 1, sizeof(*d));
    char path[PATH_MAX + 32];
    uint64_t total = 0;
    int rc = 0;

    if (!d)
        return -ENOMEM;
    for (uint32_t i = 0; i < t->nseqs; i++) {
        snprintf(path, sizeof(path), "%s/%016" PRIx64 ".idx", t->dir, t->seqs[i]);
        if (hc__idx_load(path, t->seqs[i], &d[i]) == 0)
            total += d[i].nent;
    }
    /* room for 2.5% more than the pages: a fill can stop a little short of
     * the 95% load a filter is sized for (at 10^7 pages: 95.3%), and a
     * rebuild that does not fit is dropped */
    if (hc_cfilter_init(&t->f, total ? total + total / 40 : 1) < 0)
        rc = -ENOMEM;
    for (uint32_t i = 0; i < t->nseqs; i++) {
        for (uint32_t j = 0; rc == 0 && j < d[i].nent; j++) {
            const unsigned char *e = d[i].ents + (size_t)j * 32;
            if (hc_cfilter_add(&t->f, (struct hc_hash){get64(e), get64(e + 8)}) < 0)
                rc = -ENOSPC; /* sized for them all with room: not expected */
            else
                t->pages++;
        }
        hc__idx_free(&d[i]);
    }
    free(d);
    if (rc < 0 && t->f.b)
        hc_cfilter_free(&t->f);
    return rc;
}

/* Back on the loop thread: the new filter, with the pages merged meanwhile
 * added, replaces the node's chain (a failed rebuild leaves the old one; the
 * next drop tries again). */
static void rebuild_done(struct hc_io_req *req)
{
    struct rebuild *t = container_of(req, struct rebuild, req);
    struct hc_store *s = t->s;
    struct node_filt *nf = nf_of(s, t->node);

    s->inflight--;
    struct hc_cfilter *one = req->result == 0 && nf ? malloc(sizeof(*one)) : NULL;
    if (one) {
        struct node_filt fresh = {.f = one, .n = 1};
        bool ok = true;
        *one = t->f;
        t->f.b = NULL;
        s->st->filter_bytes += hc_cfilter_memory(one);
        for (size_t i = 0; ok && i < nf->npend; i++)
            ok = chain_add(&fresh, nf->pend[i], nf->npend - i, s->st) == 0;
        struct node_filt *drop = ok ? nf : &fresh; /* the chain that goes */
        for (size_t i = 0; i < drop->n; i++) {
            s->st->filter_bytes -= hc_cfilter_memory(&drop->f[i]);
            hc_cfilter_free(&drop->f[i]);
        }
        free(drop->f);
        if (ok) {
            nf->f = fresh.f;
            nf->n = fresh.n;
            nf->pages = t->pages + nf->npend;
            nf->stale = nf->stale_since;
            s->st->filter_rebuilds++;
        }
    }
    if (nf) {
        nf->rebuilding = false;
        free(nf->pend);
        nf->pend = NULL;
        nf->npend = nf->cappend = 0;
    }
    if (t->f.b)
        hc_cfilter_free(&t->f);
    free(t->seqs);
    free(t);
}

/* Starts a rebuild of node's filters when its stale pages are a quarter of
 * what they hold (and some: at least 1,024). */
static void rebuild_maybe(struct hc_store *s, uint32_t node)
{
    struct node_filt *nf = &s->nf[node];
    struct rebuild *t;
    uint32_t n = 0;

    if (nf->rebuilding || s->stopping || !s->opened || nf->stale < 1024 ||
        nf->stale < nf->pages / 4)
        return;
    if (!(t = calloc(1, sizeof(*t))) ||
        !(t->seqs = malloc((s->segs_cap ? s->segs_cap : 1) * sizeof(*t->seqs)))) {
        free(t);
        return;
    }
    for (uint32_t i = 0; i < s->segs_cap; i++) {
        const struct seg *seg = s->segs[i];
        if (seg && seg->node == node && seg->filtered && seg->state == SEG_SEALED)
            t->seqs[n++] = seg->seq;
    }
    t->s = s;
    t->node = node;
    t->nseqs = n;
    snprintf(t->dir, sizeof(t->dir), "%s/%s", s->root, s->nodes[node]);
    nf->rebuilding = true;
    nf->stale_since = 0;
    hc__task_submit(s, &t->req, HC_IO_PRIO_LOW, rebuild_before, rebuild_done, NULL);
}

void hc__fleet_drop_seg(struct hc_store *s, struct seg *seg)
{
    if (!seg->filtered)
        return;
    if (seg->node < s->nnf) {
        s->nf[seg->node].stale += seg->filtered;
        s->nf[seg->node].stale_since += seg->filtered;
    }
    s->st->filter_pages -= seg->filtered;
    s->st->filter_stale_pages += seg->filtered;
    seg->filtered = 0;
    if (seg->node < s->nnf)
        rebuild_maybe(s, seg->node);
}

bool hc__fleet_maybe(struct hc_store *s, struct hc_hash h)
{
    /* the node that held the previous key first: a batch's pages were
     * mostly written together, by one node */
    size_t hint = s->nf_hint;
    if (hint < s->nnf && s->nf[hint].keys && chain_maybe(&s->nf[hint], h))
        return true;
    /* every node's buckets asked of memory at once: a miss probes them all,
     * and each is a cache miss in a large fleet */
    for (size_t i = 0; i < s->nnf; i++)
        for (size_t k = 0; i != hint && s->nf[i].keys && k < s->nf[i].n; k++)
            hc_cfilter_prefetch(&s->nf[i].f[k], h);
    for (size_t i = 0; i < s->nnf; i++)
        if (i != hint && s->nf[i].keys && chain_maybe(&s->nf[i], h)) {
            s->nf_hint = i;
            return true;
        }
    return false;
}

void hc__fleet_reserve(struct hc_store *s, uint32_t node, uint64_t pages)
{
    struct node_filt *nf = nf_of(s, node);
    if (!nf || pages == 0)
        return;
    if (nf->n > 0) {
        const struct hc_cfilter *last = &nf->f[nf->n - 1];
        /* room at the load the filter was sized for (filter.c: 95%) */
        uint64_t cap = (uint64_t)last->nbuckets * HC_CF_SLOTS * 95 / 100;
        if (cap > hc_cfilter_count(last) && cap - hc_cfilter_count(last) >= pages)
            return;
    }
    struct hc_cfilter *n = realloc(nf->f, (nf->n + 1) * sizeof(*n));
    if (!n)
        return; /* chain_add makes room as it goes */
    nf->f = n;
    if (hc_cfilter_init(&nf->f[nf->n], pages) < 0)
        return;
    s->st->filter_bytes += hc_cfilter_memory(&nf->f[nf->n]);
    nf->n++;
}

/* ---- keys files ------------------------------------------------------------ */

static bool keys_same(const struct hc_store *s, uint32_t node, uint64_t size, int64_t mtime_ns)
{
    const struct node_keys *nk = node < s->nnf ? s->nf[node].keys : NULL;
    return nk && nk->size == size && nk->mtime_ns == mtime_ns;
}

static int keys_install(struct hc_store *s, uint32_t node, struct hc_keys *k, int fd, uint64_t size,
                        int64_t mtime_ns)
{
    struct node_filt *nf = nf_of(s, node);
    struct node_keys *nk = nf ? calloc(1, sizeof(*nk)) : NULL;
    if (!nk)
        return -ENOMEM;
    nk->refs = 1;
    nk->k = *k;
    nk->fd = fd;
    nk->size = size;
    nk->mtime_ns = mtime_ns;
    if (nf->keys)
        s->st->filter_bytes -= nf->keys->k.nsegs * sizeof(uint64_t) +
                               nf->keys->k.nblocks * sizeof(struct hc_keys_block);
    s->st->filter_bytes += k->nsegs * sizeof(uint64_t) + k->nblocks * sizeof(struct hc_keys_block);
    keys_unref(s, nf->keys);
    nf->keys = nk;
    s->st->keys_files_loaded++;
    return 0;
}

/* ---- a get of a page a filter holds ------------------------------------------ */

/* Nodes whose filters say "maybe" whose keys files a get looks in, at most
 * (the others' pages are misses: at 1.2% false positives over 100 nodes, 16
 * are hardly ever reached). */
#define LOCATE_NODES 16

struct locate {
    struct hc_io_req req;
    struct hc_store *s;
    struct hc_hash h;
    int ns;
    size_t klen;
    struct hc_pbuf pb;
    uint64_t cap;
    uint32_t readers;
    unsigned how;
    hc_store_cb cb;
    void *data;
    unsigned nc;
    uint32_t node[LOCATE_NODES];
    struct node_keys *keys[LOCATE_NODES];
    int found; /* index into node/keys, or -1 */
    struct hc_keys_ent ent;
    char key[HC_MAX_KEY];
};

/* Called on an I/O thread: the key's entry in the candidates' keys files,
 * the first that has it. Touches only l and the keys files it holds. */
static int locate_before(struct hc_io_req *req)
{
    struct locate *l = container_of(req, struct locate, req);
    for (unsigned i = 0; i < l->nc; i++)
        if (hc_keys_lookup(&l->keys[i]->k, l->keys[i]->fd, l->h.lo, &l->ent) == 0) {
            l->found = (int)i;
            return 0;
        }
    return 0;
}

/* Back on the loop thread: the entry found goes into the index (when its
 * segment is known, sealed and another node's) and the get starts again from
 * it; otherwise a miss. */
static void locate_done(struct hc_io_req *req)
{
    struct locate *l = container_of(req, struct locate, req);
    struct hc_store *s = l->s;
    bool put = false;

    s->inflight--;
    if (l->found >= 0) {
        uint32_t node = l->node[l->found];
        uint64_t seq = l->keys[l->found]->k.seqs[l->ent.seg];
        for (uint32_t i = 0; i < s->segs_cap; i++) {
            struct seg *seg = s->segs[i];
            if (seg && seg->node == node && seg->seq == seq && !seg->local &&
                seg->state == SEG_SEALED) {
                /* the keys file may be anything another node wrote: its
                 * record must lie inside the segment (as an .idx entry's) */
                uint64_t off = (uint64_t)l->ent.off * HC_STORE_ALIGN;
                if (l->ent.len == 0 || l->ent.flags > ZBLOCKS_MAX || off > seg->size ||
                    ent_rec_size(l->ent.len, l->ent.flags) > seg->size - off)
                    break;
                hc__index_put(s, seg, l->h, off, l->ent.len, (uint16_t)l->ns, l->ent.flags);
                put = hc_index_lookup(&s->ix, l->h) != NULL;
                break;
            }
        }
    }
    for (unsigned i = 0; i < l->nc; i++)
        keys_unref(s, l->keys[i]);
    if (put) {
        s->st->filter_located++;
        int rc = hc__get_start(s, l->ns, l->key, l->klen, &l->pb, l->cap, l->readers, l->cb,
                               l->data, l->how | GET_LOCATED);
        if (rc < 0)
            l->cb(l->data, rc, 0);
    } else {
        s->st->filter_misses++;
        s->st->misses++;
        l->cb(l->data, -ENOENT, 0);
    }
    free(l);
}

int hc__fleet_locate(struct hc_store *s, int ns, const char *key, size_t klen,
                     const struct hc_pbuf *pb, uint64_t cap, uint32_t readers, hc_store_cb cb,
                     void *data, unsigned how, struct hc_hash h)
{
    struct locate *l = calloc(1, sizeof(*l));
    if (!l)
        return -ENOMEM;
    for (size_t i = 0; i < s->nnf && l->nc < LOCATE_NODES; i++)
        if (s->nf[i].keys && chain_maybe(&s->nf[i], h)) {
            l->node[l->nc] = (uint32_t)i;
            l->keys[l->nc] = s->nf[i].keys;
            s->nf[i].keys->refs++;
            l->nc++;
        }
    if (l->nc == 0) { /* no keys file to look in (yet): a miss */
        free(l);
        int rc = hc__defer_cb(s, cb, data, -ENOENT, 0);
        if (rc == 0) {
            s->st->filter_misses++;
            s->st->misses++;
        }
        return rc;
    }
    l->s = s;
    l->h = h;
    l->ns = ns;
    l->klen = klen;
    memcpy(l->key, key, klen);
    l->pb = *pb;
    l->cap = cap;
    l->readers = readers;
    l->how = how;
    l->cb = cb;
    l->data = data;
    l->found = -1;
    hc__task_submit(s, &l->req, HC_IO_PRIO_HIGH, locate_before, locate_done, NULL);
    return 0;
}

void hc__fleet_free(struct hc_store *s)
{
    for (size_t i = 0; i < s->nnf; i++) {
        for (size_t j = 0; j < s->nf[i].n; j++)
            hc_cfilter_free(&s->nf[i].f[j]);
        free(s->nf[i].f);
        free(s->nf[i].pend);
        keys_unref(NULL, s->nf[i].keys);
    }
    free(s->nf);
    s->nf = NULL;
    s->nnf = 0;
}

/* ---- loading a node's keys file ------------------------------------------------ */

struct keys_load {
    struct hc_io_req req;
    struct hc_store *s;
    uint32_t node;
    int fd;
    struct hc_keys k;
    uint64_t size;
    int64_t mtime_ns;
    char path[PATH_MAX];
};

/* Called on an I/O thread: opens the keys file (a regular file only: it may
 * be anything another node put there) and loads its tables (bounded by
 * hc_keys_load). Touches only t. */
static int keys_load_before(struct hc_io_req *req)
{
    struct keys_load *t = container_of(req, struct keys_load, req);
    struct stat st;
    int rc;

    t->fd = hc__open_regular(t->path, O_RDONLY, 0);
    if (t->fd < 0)
        return t->fd;
    if (fstat(t->fd, &st) < 0)
        rc = -errno;
    else if ((rc = hc_keys_load(t->fd, (uint64_t)st.st_size, &t->k)) == 0) {
        t->size = (uint64_t)st.st_size;
        t->mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
        return 0;
    }
    close(t->fd);
    t->fd = -1;
    return rc;
}

/* Back on the loop thread. */
static void keys_load_done(struct hc_io_req *req)
{
    struct keys_load *t = container_of(req, struct keys_load, req);
    struct hc_store *s = t->s;
    struct node_filt *nf = nf_of(s, t->node);

    s->inflight--;
    if (nf)
        nf->loading = false;
    if (req->result < 0 && nf) { /* not read again until it changes */
        nf->bad_size = t->size;
        nf->bad_mtime_ns = t->mtime_ns;
    }
    if (req->result < 0) {
        if (req->result == -EBADMSG)
            s->st->idx_refused++;
        hc_log(HC_LOG_WARN, "store: node %s's keys file %s: %s (its pages read as misses)",
               s->nodes[t->node], t->path, strerror((int)-req->result));
    } else if (keys_install(s, t->node, &t->k, t->fd, t->size, t->mtime_ns) < 0) {
        hc_keys_free(&t->k);
        hc__fd_close(s, t->fd);
    }
    free(t);
}

void hc__fleet_keys_seen(struct hc_store *s, const char *node_name, uint64_t size, int64_t mtime_ns)
{
    int node = hc__node_intern(s, node_name);
    struct node_filt *nf = node > 0 ? nf_of(s, (uint32_t)node) : NULL;
    struct keys_load *t;

    /* not while the store opens (its first discovery runs before the loop:
     * a task then could outlive a failed start); the next walk loads it */
    if (!nf || !s->opened || nf->loading || keys_same(s, (uint32_t)node, size, mtime_ns) ||
        (nf->bad_size == size && nf->bad_mtime_ns == mtime_ns && (size || mtime_ns)))
        return;
    if (!(t = calloc(1, sizeof(*t))))
        return; /* the next discovery */
    t->s = s;
    t->node = (uint32_t)node;
    t->fd = -1;
    t->size = size; /* as listed: what a refusal is remembered by */
    t->mtime_ns = mtime_ns;
    snprintf(t->path, sizeof(t->path), "%s/%s/keys", s->root, node_name);
    nf->loading = true;
    hc__task_submit(s, &t->req, HC_IO_PRIO_LOW, keys_load_before, keys_load_done, NULL);
}
