/* Discovery: the segments of the other nodes on the volume. Every
 * discovery_interval_ms (at least every visibility_ms / 4) the tick submits a
 * walk of <mount>/<root>/: each other node's directory is listed, new .idx
 * files are loaded (and checked: another node's file may be broken or
 * hostile), so are the tail indexes (.tidx, tail.c) of segments not sealed
 * yet, again whenever one changed, and the .idx of a segment known from its
 * tail index once it is sealed; segments known but gone (evicted by their
 * node) are marked, and the remote-read hint files other nodes wrote for this
 * one are read (hints.c). The loop thread then merges the result: new
 * segments and new records enter the index, vanished segments leave it, the
 * hints count as reads. A listing that fails drops nothing.
 *
 * Threads: the walk (disc_before, disc_scan_node) runs on an I/O thread and
 * touches only its struct disc, a snapshot the loop thread took
 * (disc_new); at open, hc__disc_sync runs the same walk on the loop thread.
 * Everything else runs on the loop thread. */
#include "store_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "log.h"

#include <malloc.h>

/* A walk that read this many bytes of .idx gives freed memory back (disc_done). */
#define DISC_TRIM_BYTES (64u << 20)

/* A remote segment known when the walk started, and what the walk saw of it. */
struct known {
    const char *node;
    uint64_t seq;
    uint32_t seg;
    bool seen, node_found, dir_ok;
    bool tail; /* known from its tail index, of this version */
    uint32_t tail_ver;
};

/* A new remote segment: its loaded .idx. */
struct found {
    struct found *next;
    char node[HC_MAX_NODE + 1];
    uint64_t seq;
    struct idx_data idx;
    bool update; /* of a segment known from its tail index */
    bool tail;   /* a tail index (the segment is not sealed yet), of version: */
    uint32_t tail_ver;
};

/* A node's keys file the walk saw (remote_index "filter", fleet.c). */
struct found_keys {
    struct found_keys *next;
    char node[HC_MAX_NODE + 1];
    uint64_t size;
    int64_t mtime_ns;
};

/* A remote-read hint file of another node for this one (hints.c): its
 * number and hints (NULL, 0 when it was refused). */
struct found_hints {
    struct found_hints *next;
    char node[HC_MAX_NODE + 1];
    uint64_t n;
    uint64_t *v; /* seq, lo, hi triples */
    size_t cnt;
};

/* A discovery job: the snapshot it starts from and what it found. Owned by
 * the pool from submit to done. */
struct disc {
    struct hc_io_req req;
    struct hc_store *s;
    char *root, *self;
    struct known *known;
    size_t nknown;
    char *arena;
    bool root_ok;
    struct found *found;
    struct idx_bad *bad_in; /* the store's refused files when the walk started */
    size_t nbad_in;
    struct idx_bad *bad_out; /* refused files the walk saw unchanged, or refused now */
    size_t nbad_out, bad_cap;
    struct hint_seen *seen; /* the store's hint_seen when the walk started */
    size_t nseen;
    struct hint_seen *listed; /* hint files for us listed, taken before or now */
    size_t nlisted, caplisted;
    size_t hint_budget;  /* bytes of hint files this walk may still read */
    bool listing_failed; /* a node's directory could not be listed whole */
    struct found_hints *hints;
    bool filter;             /* remote_index "filter": note the nodes' keys files */
    struct found_keys *keys; /* those seen */
    uint64_t refused;        /* files refused by this walk */
    uint64_t pass_bytes;     /* bytes of .idx read by this walk (HC_IDX_PASS_BYTES) */
};

/* Orders (node, seq) pairs. Any thread. */
static int node_seq_cmp(const char *na, uint64_t sa, const char *nb, uint64_t sb)
{
    int c = strcmp(na, nb);
    if (c)
        return c;
    return sa < sb ? -1 : sa > sb;
}

/* Orders by (node, seq). Any thread. */
static int known_cmp(const void *a, const void *b)
{
    const struct known *x = a, *y = b;
    return node_seq_cmp(x->node, x->seq, y->node, y->seq);
}

static void disc_free(struct disc *d)
{
    struct found *f, *next;
    for (f = d->found; f; f = next) {
        next = f->next;
        hc__idx_free(&f->idx);
        free(f);
    }
    for (struct found_hints *h = d->hints, *hn; h; h = hn) {
        hn = h->next;
        free(h->v);
        free(h);
    }
    for (struct found_keys *k = d->keys, *kn; k; k = kn) {
        kn = k->next;
        free(k);
    }
    free(d->seen);
    free(d->listed);
    free(d->root);
    free(d->self);
    free(d->known);
    free(d->arena);
    free(d->bad_in);
    free(d->bad_out);
    free(d);
}

/* Orders refused files by (node, seq). Any thread. */
static int bad_cmp(const void *a, const void *b)
{
    const struct idx_bad *x = a, *y = b;
    return node_seq_cmp(x->node, x->seq, y->node, y->seq);
}

/* Adds a refused file to the walk's list (I/O thread; touches only d). A
 * file that cannot be remembered is only read again next time. */
static void bad_push(struct disc *d, const char *node, uint64_t seq, const struct stat *st)
{
    if (hc__grow(&d->bad_out, d->nbad_out, &d->bad_cap, sizeof(*d->bad_out), 16) < 0)
        return;
    struct idx_bad *b = &d->bad_out[d->nbad_out++];
    memset(b, 0, sizeof(*b));
    memcpy(b->node, node, strlen(node) + 1); /* valid node name: <= HC_MAX_NODE */
    b->seq = seq;
    b->size = (uint64_t)st->st_size;
    b->mtime_ns = (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
}

/* Builds a discovery job with a snapshot of the remote segments known now
 * (loop thread). */
static struct disc *disc_new(struct hc_store *s)
{
    struct disc *d = calloc(1, sizeof(*d));
    size_t n = 0, arena = 0;
    if (!d)
        return NULL;
    d->s = s;
    d->filter = s->cfg.remote_filter;
    d->root = strdup(s->root);
    d->self = strdup(s->nodes[0]);
    for (uint32_t i = 0; i < s->segs_cap; i++)
        if (s->segs[i] && !s->segs[i]->local && s->segs[i]->state != SEG_DEAD)
            n++;
    for (uint32_t i = 0; i < s->nnodes; i++)
        arena += strlen(s->nodes[i]) + 1;
    d->known = calloc(n ? n : 1, sizeof(*d->known));
    d->arena = malloc(arena ? arena : 1);
    if (!d->root || !d->self || !d->known || !d->arena) {
        disc_free(d);
        return NULL;
    }
    /* Node names copied once: the I/O thread must not read s->nodes. */
    const char **names = calloc(s->nnodes ? s->nnodes : 1, sizeof(*names));
    if (!names) {
        disc_free(d);
        return NULL;
    }
    char *p = d->arena;
    for (uint32_t i = 0; i < s->nnodes; i++) {
        size_t l = strlen(s->nodes[i]) + 1;
        memcpy(p, s->nodes[i], l);
        names[i] = p;
        p += l;
    }
    for (uint32_t i = 0; i < s->segs_cap; i++) {
        struct seg *seg = s->segs[i];
        if (seg && !seg->local && seg->state != SEG_DEAD)
            d->known[d->nknown++] = (struct known){.node = names[seg->node],
                                                   .seq = seg->seq,
                                                   .seg = seg->id,
                                                   .tail = seg->tail,
                                                   .tail_ver = seg->tail_ver};
    }
    free(names);
    if (d->nknown)
        qsort(d->known, d->nknown, sizeof(*d->known), known_cmp);
    if (s->nidx_bad) { /* sorted by bad_cmp (disc_merge keeps it so) */
        d->bad_in = malloc(s->nidx_bad * sizeof(*d->bad_in));
        if (!d->bad_in) {
            disc_free(d);
            return NULL;
        }
        memcpy(d->bad_in, s->idx_bad, s->nidx_bad * sizeof(*d->bad_in));
        d->nbad_in = s->nidx_bad;
    }
    d->hint_budget = HC_HINT_PASS_BYTES;
    if (s->nhint_seen) { /* sorted (disc_merge keeps it so) */
        if (!(d->seen = malloc(s->nhint_seen * sizeof(*d->seen)))) {
            disc_free(d);
            return NULL;
        }
        memcpy(d->seen, s->hint_seen, s->nhint_seen * sizeof(*d->seen));
        d->nseen = s->nhint_seen;
    }
    return d;
}

/* Adds (node, n) to the walk's listed hint files (the walk's I/O thread, or
 * the merge; touches only d). Without memory it is read again next time. */
static void listed_push(struct disc *d, const char *node, uint64_t n)
{
    if (hc__grow(&d->listed, d->nlisted, &d->caplisted, sizeof(*d->listed), 16) < 0)
        return;
    struct hint_seen *e = &d->listed[d->nlisted++];
    memset(e, 0, sizeof(*e));
    memcpy(e->node, node, strlen(node) + 1);
    e->n = n;
}

/* Called on an I/O thread (the walk) for a hint file of node for this node
 * numbered n: unless taken before, read and checked (hints.c) within the
 * walk's budget and kept for the merge. Touches only d. */
static void disc_hint_file(struct disc *d, const char *dir, const char *node, const char *name,
                           uint64_t n)
{
    struct hint_seen key = {.n = n};
    struct found_hints *h;
    char path[PATH_MAX];
    ssize_t cnt;

    if (strlen(node) > HC_MAX_NODE)
        return;
    memcpy(key.node, node, strlen(node) + 1);
    if (d->nseen && bsearch(&key, d->seen, d->nseen, sizeof(key), hc__hint_seen_cmp)) {
        listed_push(d, node, n);
        return;
    }
    if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, name) >= sizeof(path) ||
        !(h = calloc(1, sizeof(*h))))
        return;
    cnt = hc__hints_read_file(path, &d->hint_budget, &h->v);
    if (cnt < 0 && cnt != -EBADMSG) {
        free(h); /* gone, over this walk's budget, or no memory: next time */
        return;
    }
    if (cnt == -EBADMSG)
        d->refused++;
    h->cnt = cnt > 0 ? (size_t)cnt : 0;
    h->n = n;
    memcpy(h->node, node, strlen(node) + 1);
    h->next = d->hints;
    d->hints = h;
    listed_push(d, node, n);
}

/* Any thread. */
static struct known *known_find(struct disc *d, const char *node, uint64_t seq)
{
    struct known k = {.node = node, .seq = seq};
    if (!d->nknown)
        return NULL;
    return bsearch(&k, d->known, d->nknown, sizeof(k), known_cmp);
}

/* A .idx or .tidx file of a node's listing (st filled by disc_entry, only
 * for the files it may read: known sealed segments cost no stat). */
struct entry {
    uint64_t seq;
    bool tail;
    uint32_t ver; /* a tail index's version */
    struct stat st;
    char name[40];
};

/* Loads one index file of node (dir/e->name) into a new found, unless it was
 * refused before and has not changed, or the pass read its share of bytes.
 * Returns the found (added to d->found) or NULL. Called on an I/O thread (on
 * the loop thread at open); touches only d. */
static struct found *disc_load(struct disc *d, const char *dir, const char *node,
                               const struct entry *e)
{
    const struct stat *st = &e->st;
    struct idx_bad key = {.seq = e->seq}, *was;
    memcpy(key.node, node, strlen(node) + 1);
    was = d->nbad_in ? bsearch(&key, d->bad_in, d->nbad_in, sizeof(key), bad_cmp) : NULL;
    if (was && was->size == (uint64_t)st->st_size &&
        was->mtime_ns == (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec) {
        bad_push(d, node, e->seq, st);
        return NULL; /* refused before and unchanged since: not read again */
    }
    /* A pass reads HC_IDX_PASS_BYTES of new indexes at most; the rest
     * (at least one file a pass) waits for the next. */
    if (S_ISREG(st->st_mode) && (uint64_t)st->st_size <= HC_IDX_MAX_BYTES && d->pass_bytes > 0 &&
        d->pass_bytes + (uint64_t)st->st_size > HC_IDX_PASS_BYTES)
        return NULL;
    struct found *f = calloc(1, sizeof(*f));
    char *path = hc__path_join(dir, e->name);
    int rc = !f || !path                                ? -ENOMEM
             : (uint64_t)st->st_size > HC_IDX_MAX_BYTES ? -EFBIG
                                                        : hc__idx_load(path, e->seq, &f->idx);
    if (rc < 0) {
        if (rc != -ENOENT && rc != -ENOMEM) {
            hc_log(HC_LOG_WARN, "store: refusing %s: %s (not read again until it changes)",
                   path ? path : e->name,
                   rc == -EFBIG ? "larger than any index this daemon reads" : strerror(-rc));
            bad_push(d, node, e->seq, st);
            d->refused++;
        }
        free(f);
        free(path);
        return NULL;
    }
    d->pass_bytes += (uint64_t)st->st_size;
    free(path);
    memcpy(f->node, node, strlen(node) + 1); /* valid node name: <= HC_MAX_NODE */
    f->seq = e->seq;
    f->tail = e->tail;
    f->tail_ver = e->ver;
    f->next = d->found;
    d->found = f;
    return f;
}

/* Whether the listing has the .idx of e's segment, or a later version of
 * its tail index (e a tail index). */
static bool superseded(const struct entry *ents, size_t n, const struct entry *e)
{
    for (size_t i = 0; i < n; i++)
        if (ents[i].seq == e->seq && (!ents[i].tail || ents[i].ver > e->ver))
            return true;
    return false;
}

/* Takes one index file of the listing: a sealed segment's .idx (new, or of a
 * segment known from its tail index), or the tail index of a segment not
 * sealed yet (new, or changed since it was read). Touches only d. */
static void disc_entry(struct disc *d, int dfd, const char *dir, const char *node, struct entry *e,
                       const struct entry *ents, size_t n)
{
    struct known *k = known_find(d, node, e->seq);
    struct found *f;

    if (e->tail && superseded(ents, n, e))
        return; /* sealed (its .idx is taken instead), or a later version */
    if (k && !k->tail) {
        k->seen = true; /* sealed and known */
        return;
    }
    if (k)
        k->seen = true; /* its records stay while a new file is unread or refused */
    if (k && e->tail && k->tail_ver >= e->ver)
        return; /* nothing new */
    if (fstatat(dfd, e->name, &e->st, AT_SYMLINK_NOFOLLOW) < 0)
        return; /* gone meanwhile (sealed, say): the next walk */
    if ((f = disc_load(d, dir, node, e)))
        f->update = k != NULL;
}

/* Lists one other node's directory: its index files are taken (disc_entry),
 * known segments marked seen. Returns 0 if the listing was complete. Called
 * on an I/O thread (on the loop thread at open); touches only d. */
static int disc_scan_node(struct disc *d, const char *node)
{
    char *dir = hc__path_join(d->root, node);
    struct entry *ents = NULL;
    size_t n = 0, cap = 0;
    DIR *dh;
    struct dirent *de;
    int rc;

    if (!dir)
        return -ENOMEM;
    dh = opendir(dir);
    if (!dh) {
        rc = -errno;
        free(dir);
        return rc;
    }
    while ((errno = 0, de = readdir(dh))) {
        struct entry e = {0};
        uint64_t hn;
        if (hc__hints_name(de->d_name, d->self, &hn)) {
            disc_hint_file(d, dir, node, de->d_name, hn);
            continue;
        }
        if (d->filter && !strcmp(de->d_name, "keys")) {
            struct stat st;
            struct found_keys *k;
            if (fstatat(dirfd(dh), "keys", &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode) &&
                strlen(node) <= HC_MAX_NODE && (k = calloc(1, sizeof(*k)))) {
                memcpy(k->node, node, strlen(node) + 1);
                k->size = (uint64_t)st.st_size;
                k->mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
                k->next = d->keys;
                d->keys = k;
            }
            continue;
        }
        if (hc__parse_seq_name(de->d_name, "idx", &e.seq))
            e.tail = false;
        else if (hc__parse_tail_name(de->d_name, &e.seq, &e.ver))
            e.tail = true;
        else
            continue;
        if (strlen(de->d_name) >= sizeof(e.name))
            continue;
        memcpy(e.name, de->d_name, strlen(de->d_name) + 1);
        if (hc__grow(&ents, n, &cap, sizeof(*ents), 64) < 0) {
            errno = ENOMEM;
            break;
        }
        ents[n++] = e;
    }
    rc = errno ? -errno : 0;
    for (size_t i = 0; i < n; i++)
        disc_entry(d, dirfd(dh), dir, node, &ents[i], ents, n);
    closedir(dh);
    free(ents);
    free(dir);
    return rc;
}

/* The directory walk: on an I/O thread, or at open. Touches only d. */
static int disc_before(struct hc_io_req *req)
{
    struct disc *d = container_of(req, struct disc, req);
    DIR *dh = opendir(d->root);
    struct dirent *de;

    if (!dh)
        return 0;
    d->root_ok = true;
    while ((errno = 0, de = readdir(dh))) {
        const char *node = de->d_name;
        if (!hc_node_name_ok(node, strlen(node)) || !strcmp(node, d->self))
            continue;
        if (de->d_type != DT_DIR && de->d_type != DT_UNKNOWN)
            continue;
        /* Known segments of this node: the node is present. */
        struct known k = {.node = node, .seq = 0};
        size_t lo = 0, hi = d->nknown;
        while (lo < hi) { /* first entry >= (node, 0) */
            size_t mid = (lo + hi) / 2;
            if (known_cmp(&d->known[mid], &k) < 0)
                lo = mid + 1;
            else
                hi = mid;
        }
        int rc = disc_scan_node(d, node);
        if (rc < 0 && rc != -ENOENT)
            d->listing_failed = true;
        for (size_t i = lo; i < d->nknown && !strcmp(d->known[i].node, node); i++) {
            d->known[i].node_found = true;
            d->known[i].dir_ok = rc == 0 || rc == -ENOENT;
        }
    }
    if (errno)
        d->root_ok = false; /* incomplete listing: vanish nothing */
    closedir(dh);
    return 0;
}

/* Merges a discovery's results (loop thread): new remote segments enter the
 * index, vanished ones leave it; the refused files the walk saw become the
 * ones remembered. */
static void disc_merge(struct hc_store *s, struct disc *d)
{
    /* The hint files taken: those listed now (so the set keeps to what the
     * nodes still list), plus the ones before when a listing failed */
    if (!d->root_ok || d->listing_failed) {
        for (size_t i = 0; i < s->nhint_seen; i++)
            listed_push(d, s->hint_seen[i].node, s->hint_seen[i].n);
    }
    if (d->nlisted)
        qsort(d->listed, d->nlisted, sizeof(*d->listed), hc__hint_seen_cmp);
    size_t u = 0;
    for (size_t i = 0; i < d->nlisted; i++)
        if (!u || hc__hint_seen_cmp(&d->listed[u - 1], &d->listed[i]))
            d->listed[u++] = d->listed[i];
    free(s->hint_seen);
    s->hint_seen = d->listed;
    s->nhint_seen = u;
    d->listed = NULL;
    d->nlisted = d->caplisted = 0;
    for (struct found_hints *h = d->hints; h; h = h->next)
        hc__hints_apply(s, h->v, h->cnt);
    if (d->nbad_out)
        qsort(d->bad_out, d->nbad_out, sizeof(*d->bad_out), bad_cmp);
    free(s->idx_bad);
    s->idx_bad = d->bad_out;
    s->nidx_bad = d->nbad_out;
    d->bad_out = NULL;
    d->nbad_out = d->bad_cap = 0;
    s->st->idx_refused += d->refused;
    for (size_t i = 0; d->root_ok && i < d->nknown; i++) {
        struct known *k = &d->known[i];
        if (k->seen || (k->node_found && !k->dir_ok))
            continue;
        struct seg *seg = s->segs[k->seg];
        if (seg && !seg->local && seg->state == SEG_SEALED && seg->seq == k->seq &&
            !strcmp(s->nodes[seg->node], k->node))
            hc__seg_drop(s, seg, false);
    }
    /* filter mode: each node's filters sized for what this walk found of it
     * at once (one filter a node after the first walk, not a doubling
     * chain); a node's segments lie together in the list (one walk a node) */
    for (struct found *f = d->found; s->cfg.remote_filter && f;) {
        uint64_t pages = 0;
        struct found *g = f;
        for (; g && !strcmp(g->node, f->node); g = g->next)
            if (!g->tail && !g->update)
                pages += g->idx.nent;
        int node = hc__node_intern(s, f->node);
        if (node > 0)
            hc__fleet_reserve(s, (uint32_t)node, pages);
        f = g;
    }
    for (struct found *f = d->found; f; f = f->next) {
        int node = hc__node_intern(s, f->node);
        if (node < 0)
            continue;
        struct seg *seg = NULL;
        for (uint32_t i = 0; i < s->segs_cap && !seg; i++) {
            struct seg *x = s->segs[i];
            if (x && x->state != SEG_DEAD && (int)x->node == node && x->seq == f->seq)
                seg = x;
        }
        if (seg && (!f->update || !seg->tail || seg->local))
            continue; /* known already, by a walk that ran meanwhile */
        if (!seg && !(seg = hc__seg_new(s, (uint32_t)node, f->seq, false, SEG_SEALED))) {
            hc_log(HC_LOG_ERR, "store: out of memory adding segment of node %s", f->node);
            continue;
        }
        /* A segment known from a tail index keeps its entries (a record's
         * place never changes) and takes the new ones; its file grows, so a
         * short or bad read of it is read again after its attributes were
         * fetched anew (read.c: fresh). */
        if (f->idx.seg_bytes > seg->size)
            seg->size = f->idx.seg_bytes;
        seg->tail = f->tail;
        seg->fresh = seg->fresh || f->tail;
        seg->tail_ver = f->tail_ver;
        if (s->cfg.remote_filter && !f->tail && !f->update)
            hc__fleet_merge(s, seg, &f->idx); /* its node's filters (fleet.c) */
        else
            hc__idx_merge(s, seg, &f->idx);
    }
    for (struct found_keys *k = d->keys; k; k = k->next)
        hc__fleet_keys_seen(s, k->node, k->size, k->mtime_ns);
}

/* Back on the loop thread. */
static void disc_done(struct hc_io_req *req)
{
    struct disc *d = container_of(req, struct disc, req);
    struct hc_store *s = d->s;
    s->inflight--;
    s->disc_busy = false;
    disc_merge(s, d);
    uint64_t read = d->pass_bytes;
    disc_free(d);
    /* The .idx images a walk held (up to HC_IDX_PASS_BYTES) are freed, but
     * glibc keeps freed heap memory: after a large walk, give it back (with
     * remote_index "filter" the images are most of what the walk cost). */
    if (read >= DISC_TRIM_BYTES)
        (void)malloc_trim(0);
}

/* Starts a discovery on the pool (one at a time: s->disc_busy). */
void hc__disc_submit(struct hc_store *s)
{
    struct disc *d = disc_new(s);
    if (!d)
        return;
    s->disc_busy = true;
    hc__task_submit(s, &d->req, HC_IO_PRIO_LOW, disc_before, disc_done, NULL);
}

/* The same walk and merge on the calling thread (the loop thread, at open,
 * before the loop runs). Returns 0 or -ENOMEM. */
int hc__disc_sync(struct hc_store *s)
{
    struct disc *d = disc_new(s);
    if (!d)
        return -ENOMEM;
    disc_before(&d->req);
    disc_merge(s, d);
    disc_free(d);
    return 0;
}
