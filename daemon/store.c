/* Segment store (see store.h for the contract).
 *
 * Layout on the mount: <mount>/<root>/<node>/<seq>.seg holds records, each a
 * header block of HC_STORE_ALIGN bytes then the payload padded to the same
 * alignment; <seq>.idx (written as .idx.tmp, fsynced, renamed) seals it and
 * lists its good records for restarts and for other nodes. cleared.json holds
 * the namespace tombstones of hc_store_clear.
 *
 * Threads: everything in struct hc_store and struct seg belongs to the loop
 * thread. I/O threads see only the request objects they were handed (wrec,
 * rd, join, and the task structs) and fill in their results; they never touch
 * the store, so no locks are needed here. Integers on disk are little-endian
 * (the hosts we run on).
 *
 * Callbacks never run inside the call that registered them: answers known at
 * once (dedupe hits on stored pages, misses, -ENOSPC) go on a deferred list
 * that a no-op HC_IO_TASK flushes from hc_io_pool_drain; one such task is in
 * flight at a time and carries every answer queued before it returns.
 *
 * Write ordering: a segment's pending writes sit on its list in offset order;
 * a record is committed (put in the index, its callbacks run) only when it and
 * every earlier record of the segment are finished, so a restart's scan keeps
 * every acknowledged page: it steps over a record whose payload fails its CRC
 * (the header gives the size) and stops only at the first bad header or torn
 * tail, which an acknowledged record never follows. A failed write closes the
 * segment for appends and fails the records behind it too (they could not
 * survive a scan). */
#include "store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <pthread.h>
#include <time.h>
#include <unistd.h>
#include <zstd.h>

#include "crc32c.h"
#include "index.h"
#include "key.h" /* HC_KEY_MAX, HC_NS_MAX */
#include "log.h"

#define REC_MAGIC "HCR1"
#define REC_VERSION 1
#define REC_FIXED 40 /* header bytes before the namespace and key */
#define IDX_MAGIC "HCI1"
#define IDX_VERSION 1
#define IDX_HDR 32
#define IDX_ENT 32
#define IDX_MAX_BYTES (1ull << 30)
#define NS_LIMIT 65535u
#define NODE_MAX 64
#define MAX_FDS 256u                    /* idle segment fds kept open; more are closed LRU */
#define SEQ_NAME_LEN 20                 /* 16 hex digits + ".seg" */
#define REC_F_ZSTD 1u                   /* header flag: the payload is a zstd frame */
#define ZBLOCKS_MAX HC_INDEX_FLAGS_USER /* stored blocks of a compressed record */
#define RD_RETRIES 3 /* re-reads of a bad record this run wrote before it is dropped */
/* Later re-reads of a record this run wrote after an I/O error: RD_EIO_RETRIES
 * of them, the first RD_EIO_DELAY_MS later, each delay twice the one before
 * (at the store's tick, so at most about 1.5 s plus a tick in all). */
#define RD_EIO_RETRIES 4
#define RD_EIO_DELAY_MS 100

#define container_of(p, type, member) ((type *)((char *)(p)-offsetof(type, member)))

static const unsigned char zero_block[HC_STORE_ALIGN] __attribute__((aligned(HC_STORE_ALIGN)));

static inline uint64_t round_up(uint64_t n)
{
    return (n + HC_STORE_ALIGN - 1) & ~(uint64_t)(HC_STORE_ALIGN - 1);
}

/* Bytes a record of a len-byte payload takes in its segment. */
static inline uint64_t rec_size(uint64_t len)
{
    return HC_STORE_ALIGN + round_up(len);
}

/* Bytes a record takes: sblocks is the stored payload of a compressed record
 * in HC_STORE_ALIGN blocks, 0 for a raw one of len bytes. */
static inline uint64_t ent_rec_size(uint64_t len, uint32_t sblocks)
{
    return sblocks ? HC_STORE_ALIGN + (uint64_t)sblocks * HC_STORE_ALIGN : rec_size(len);
}

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static inline void put16(unsigned char *p, uint16_t v)
{
    memcpy(p, &v, 2);
}
static inline void put32(unsigned char *p, uint32_t v)
{
    memcpy(p, &v, 4);
}
static inline void put64(unsigned char *p, uint64_t v)
{
    memcpy(p, &v, 8);
}
static inline uint16_t get16(const unsigned char *p)
{
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}
static inline uint32_t get32(const unsigned char *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}
static inline uint64_t get64(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

/* ---- types --------------------------------------------------------------- */

/* Intrusive hash table of in-flight writes or reads, keyed by page hash. */
struct pnode {
    struct pnode *next;
    struct hc_hash h;
};

struct ptab {
    struct pnode **b;
    size_t mask;
    size_t n;
};

struct nsent {
    char *name;
    uint16_t len;
    bool tomb; /* cleared: this node's records before (tomb_seq, tomb_off) are gone */
    uint64_t tomb_seq, tomb_off;
};

/* A committed record of an unsealed local segment: what its .idx will list. */
struct seg_rec {
    struct hc_hash h;
    uint64_t off;
    uint32_t len; /* original length */
    uint16_t ns;
    uint16_t sblocks; /* compressed: stored blocks; 0 raw */
};

enum seg_state {
    SEG_OPEN,    /* local, takes appends */
    SEG_CLOSING, /* local, no appends, writes pending */
    SEG_SEALING, /* local, the .idx is being written */
    SEG_SEALED,  /* immutable: local or remote */
    SEG_DEAD,    /* dropped; freed once reads, open and unlink tasks are over */
};

struct wrec;
struct rd;

struct seg {
    uint32_t id;   /* slot in s->segs, the index's segment id */
    uint32_t node; /* index in s->nodes; 0 is this node */
    uint64_t seq;
    enum seg_state state;
    bool local;
    bool fresh; /* local, created by this run: its records were acknowledged by us */
    int fd;     /* -1 until opened */
    bool fd_direct;
    bool opening;       /* an open task is in flight */
    bool unlink_wanted; /* evicted while an open was in flight */
    bool unlinking;     /* the unlink task is in flight */
    struct rd *waiters; /* reads waiting for the open */
    uint32_t refs;      /* reads in flight */
    uint64_t size;      /* bytes: allocated tail (local) or from the .idx */
    uint64_t pages;     /* index entries pointing here */
    uint64_t last_use_ms;
    uint64_t opened_ms;
    bool opened_known;
    /* local unsealed segments only */
    struct wrec *pend_head, *pend_tail;
    int cascade; /* error of a failed record: the ones behind it fail too */
    struct seg_rec *recs;
    size_t nrecs, caprecs;
};

struct deferred {
    struct deferred *next;
    hc_store_cb cb;
    void *data;
    int status;
    uint64_t len;
};

struct waiter {
    struct waiter *next;
    hc_store_cb cb;
    void *data;
};

/* A record write. Owned by the pool from submit to done. */
struct wrec {
    struct hc_io_req req;
    struct hc_store *s;
    struct pnode pn;
    bool in_tab;
    struct wrec *next; /* the segment's pending list */
    struct seg *seg;
    uint64_t off;
    uint64_t len;
    uint16_t ns;
    const void *buf;
    void *bounce; /* O_DIRECT copy of an unaligned payload */
    unsigned char *hdr;
    bool done;
    int status;
    struct waiter *waiters, *wtail; /* the setter, then dedupe joiners */
    /* compression: the set asked for it; zbuf (aligned, zero-padded to the
     * block) holds zlen bytes of zstd frame once the task kept it */
    bool compress;
    bool cleared; /* its namespace was cleared while it was compressed */
    int level;
    void *zbuf;
    uint64_t zlen;
    struct wrec *zprev, *znext; /* s->compressing while the task runs */
};

struct join;

/* A storage read (the leader of a coalesced group). */
struct rd {
    struct hc_io_req req;
    struct hc_store *s;
    struct pnode pn;
    bool in_tab;
    struct rd *wnext; /* the segment's waiters for an open */
    struct rd *lnext; /* reads waiting to be tried again (hc_store->rd_later) */
    struct seg *seg;
    uint64_t off;
    uint32_t len;     /* original length */
    uint32_t sblocks; /* compressed record: stored blocks, read into bounce */
    uint32_t stored;  /* payload bytes on storage, set by rd_after */
    uint32_t readers; /* the getter's readers per page (linger) */
    void *buf;
    void *bounce; /* daemon-owned: O_DIRECT, linger, or the compressed bytes */
    void *plain;  /* compressed record: the decompressed page */
    unsigned char *hdr;
    hc_store_cb cb;
    void *data;
    struct join *joins;
    unsigned copies;      /* joiner copy tasks in flight */
    unsigned retries;     /* re-reads after a short or failed read (RD_RETRIES) */
    unsigned eio_retries; /* later re-reads after an I/O error (RD_EIO_RETRIES) */
    uint64_t retry_at_ms; /* when the next later re-read is due */
    uint32_t crc;         /* payload CRC32C, set by rd_after */
    uint16_t nslen, klen;
    char names[HC_NS_MAX + HC_KEY_MAX]; /* namespace then key, for the check */
};

/* A page kept in memory after its storage read for the other readers of an
 * MLA page (struct hc_store_opts). Alive while in the table or while a copy
 * from it is in flight. */
struct linger {
    struct pnode pn;
    struct linger *prev, *next; /* age order, oldest first, while in_tab */
    void *buf;                  /* the verified page, daemon-owned */
    uint32_t len;
    uint32_t seg; /* the record it came from */
    uint64_t off;
    uint16_t ns;
    uint32_t remaining; /* gets still expected */
    uint64_t expires_ms;
    unsigned refs; /* copies in flight */
    bool in_tab;
};

/* A get served by a copy: it joined a leader's read (lead), or a lingering
 * page (lin). */
struct join {
    struct hc_io_req req;
    struct hc_store *s;
    struct join *next;
    struct rd *lead;
    struct linger *lin;
    void *buf;
    uint64_t cap;
    hc_store_cb cb;
    void *data;
    int ns;
    uint16_t klen;
    char key[HC_KEY_MAX];
};

struct hc_store {
    struct hc_store_config cfg;
    /* Reads of records this run wrote that met an I/O error, each counted in
     * inflight until hc_store_tick submits it again, or hc_store_quiesce ends
     * it with its error (the daemon stops the store only once no request is in
     * flight, so there such a read has usually used up its tries). */
    struct rd *rd_later;
    unsigned fail_reads; /* tests: the next reads finish with fail_err (hc__store_fail_reads) */
    int fail_err;
    char *root; /* <mount>/<root_dir> */
    char *dir;  /* root/<node_id> */
    struct hc_io_pool *io;
    struct hc_stats *st;
    uint64_t epoch;
    struct hc_index ix;

    struct nsent *ns;
    uint32_t nns, ns_cap;
    uint32_t *ns_map; /* open addressing: id + 1, 0 empty */
    uint32_t ns_map_cap;

    char **nodes;
    uint32_t nnodes, nodes_cap;

    struct seg **segs;
    uint32_t segs_cap;
    struct seg *open;
    uint64_t next_seq;
    uint64_t local_bytes;

    struct ptab writing, reading, lingering;
    struct linger *lhead, *ltail; /* lingering pages, oldest first */
    struct wrec *compressing;     /* sets whose compression task runs */

    struct deferred *dhead, *dtail;
    struct hc_io_req dreq;
    bool dreq_busy;

    bool disc_busy, disc_started;
    uint64_t last_disc_ms;
    uint64_t now_ms;
    bool have_now;
    uint64_t last_statvfs_ms;
    unsigned unlinks;

    unsigned inflight; /* requests submitted whose done has not run */
    unsigned nfds;
    bool stopping;
    bool opened;       /* open() finished: close() may seal */
    int direct_warned; /* atomic: set by the first O_DIRECT fallback */
};

/* ---- small helpers ------------------------------------------------------- */

static bool valid_node_name(const char *p, size_t n)
{
    if (n == 0 || n > NODE_MAX || (n == 1 && p[0] == '.') || (n == 2 && !memcmp(p, "..", 2)))
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-'))
            return false;
    }
    return true;
}

/* Parses "<16 hex digits>.<ext>". */
static bool parse_seq_name(const char *name, const char *ext, uint64_t *seq)
{
    size_t n = strlen(name), el = strlen(ext);
    if (n != 16 + 1 + el || name[16] != '.' || strcmp(name + 17, ext) != 0)
        return false;
    uint64_t v = 0;
    for (int i = 0; i < 16; i++) {
        char c = name[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0)
            return false;
        v = v << 4 | (uint64_t)d;
    }
    *seq = v;
    return true;
}

static char *path_join(const char *a, const char *b)
{
    char *p;
    if (asprintf(&p, "%s/%s", a, b) < 0)
        return NULL;
    return p;
}

static void seg_path(const struct hc_store *s, const struct seg *seg, const char *ext, char *buf,
                     size_t size)
{
    snprintf(buf, size, "%s/%s/%016" PRIx64 ".%s", s->root, s->nodes[seg->node], seg->seq, ext);
}

static uint64_t realtime_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Opens path with O_DIRECT when asked, falling back to buffered I/O when the
 * filesystem refuses it (EINVAL), with one log line per store. Any thread.
 * Returns the fd or -errno. */
static int open_file(struct hc_store *s, const char *path, int flags, mode_t mode, bool *direct)
{
    int fd;
    *direct = false;
    if (s->cfg.use_direct_io) {
        fd = open(path, flags | O_DIRECT, mode);
        if (fd >= 0) {
            *direct = true;
            return fd;
        }
        if (errno != EINVAL)
            return -errno;
        if (!__atomic_exchange_n(&s->direct_warned, 1, __ATOMIC_RELAXED))
            hc_log(HC_LOG_WARN, "store: O_DIRECT not supported under %s; using buffered I/O",
                   s->root);
    }
    fd = open(path, flags, mode);
    return fd >= 0 ? fd : -errno;
}

static int write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static int pread_all(int fd, void *buf, size_t len, uint64_t off)
{
    char *p = buf;
    while (len > 0) {
        ssize_t n = pread(fd, p, len, (off_t)off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            return -ENODATA;
        p += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return 0;
}

/* Writes buf to tmp, fsyncs it and renames it to path. Blocking; any thread.
 * Returns 0 or -errno (tmp removed). */
static int write_file_atomic(const char *tmp, const char *path, const void *buf, size_t len)
{
    int rc, fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    rc = write_all(fd, buf, len);
    if (rc == 0 && fsync(fd) < 0)
        rc = -errno;
    if (close(fd) < 0 && rc == 0)
        rc = -errno;
    if (rc == 0 && rename(tmp, path) < 0)
        rc = -errno;
    if (rc < 0)
        unlink(tmp);
    return rc;
}

/* ---- pending tables ------------------------------------------------------ */

static int ptab_init(struct ptab *t)
{
    t->b = calloc(256, sizeof(*t->b));
    if (!t->b)
        return -ENOMEM;
    t->mask = 255;
    t->n = 0;
    return 0;
}

static struct pnode *ptab_find(const struct ptab *t, struct hc_hash h)
{
    for (struct pnode *p = t->b[h.lo & t->mask]; p; p = p->next)
        if (p->h.lo == h.lo && p->h.hi == h.hi)
            return p;
    return NULL;
}

static void ptab_add(struct ptab *t, struct pnode *n)
{
    if (t->n >= (t->mask + 1) * 2) {
        /* Grow; on failure the chains just get longer. */
        size_t nmask = t->mask * 2 + 1;
        struct pnode **nb = calloc(nmask + 1, sizeof(*nb));
        if (nb) {
            for (size_t i = 0; i <= t->mask; i++) {
                struct pnode *p = t->b[i], *next;
                for (; p; p = next) {
                    next = p->next;
                    p->next = nb[p->h.lo & nmask];
                    nb[p->h.lo & nmask] = p;
                }
            }
            free(t->b);
            t->b = nb;
            t->mask = nmask;
        }
    }
    struct pnode **head = &t->b[n->h.lo & t->mask];
    n->next = *head;
    *head = n;
    t->n++;
}

static void ptab_del(struct ptab *t, struct pnode *n)
{
    for (struct pnode **pp = &t->b[n->h.lo & t->mask]; *pp; pp = &(*pp)->next) {
        if (*pp == n) {
            *pp = n->next;
            t->n--;
            return;
        }
    }
}

/* ---- namespaces and nodes ------------------------------------------------ */

static uint64_t fnv1a(const char *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

static int ns_find(const struct hc_store *s, const char *name, size_t len)
{
    uint32_t mask = s->ns_map_cap - 1, i = (uint32_t)fnv1a(name, len) & mask;
    for (; s->ns_map[i]; i = (i + 1) & mask) {
        const struct nsent *e = &s->ns[s->ns_map[i] - 1];
        if (e->len == len && !memcmp(e->name, name, len))
            return (int)(s->ns_map[i] - 1);
    }
    return -1;
}

static int ns_map_grow(struct hc_store *s)
{
    uint32_t ncap = s->ns_map_cap * 2;
    uint32_t *m = calloc(ncap, sizeof(*m));
    if (!m)
        return -ENOMEM;
    for (uint32_t id = 0; id < s->nns; id++) {
        uint32_t i = (uint32_t)fnv1a(s->ns[id].name, s->ns[id].len) & (ncap - 1);
        while (m[i])
            i = (i + 1) & (ncap - 1);
        m[i] = id + 1;
    }
    free(s->ns_map);
    s->ns_map = m;
    s->ns_map_cap = ncap;
    return 0;
}

/* Returns the id of namespace name, adding it if new; -EINVAL, -ENOSPC (too
 * many) or -ENOMEM. */
static int ns_intern(struct hc_store *s, const char *name, size_t len)
{
    if (len == 0 || len > HC_NS_MAX)
        return -EINVAL;
    int id = ns_find(s, name, len);
    if (id >= 0)
        return id;
    if (s->nns >= NS_LIMIT)
        return -ENOSPC;
    if ((s->nns + 1) * 2 > s->ns_map_cap && ns_map_grow(s) < 0)
        return -ENOMEM;
    if (s->nns == s->ns_cap) {
        uint32_t ncap = s->ns_cap ? s->ns_cap * 2 : 16;
        struct nsent *n = realloc(s->ns, ncap * sizeof(*n));
        if (!n)
            return -ENOMEM;
        s->ns = n;
        s->ns_cap = ncap;
    }
    char *copy = malloc(len + 1);
    if (!copy)
        return -ENOMEM;
    memcpy(copy, name, len);
    copy[len] = '\0';
    id = (int)s->nns++;
    s->ns[id] = (struct nsent){.name = copy, .len = (uint16_t)len};
    uint32_t mask = s->ns_map_cap - 1, i = (uint32_t)fnv1a(name, len) & mask;
    while (s->ns_map[i])
        i = (i + 1) & mask;
    s->ns_map[i] = (uint32_t)id + 1;
    return id;
}

static bool ns_valid(const struct hc_store *s, int ns)
{
    return ns >= 0 && (uint32_t)ns < s->nns;
}

/* True when this node's record at (seq, off) of namespace ns was cleared. */
static bool tombstoned(const struct hc_store *s, uint16_t ns, uint64_t seq, uint64_t off)
{
    const struct nsent *e = &s->ns[ns];
    return e->tomb && (seq < e->tomb_seq || (seq == e->tomb_seq && off < e->tomb_off));
}

/* Returns the index of node name in s->nodes, adding it; -ENOMEM. */
static int node_intern(struct hc_store *s, const char *name)
{
    for (uint32_t i = 0; i < s->nnodes; i++)
        if (!strcmp(s->nodes[i], name))
            return (int)i;
    if (s->nnodes == s->nodes_cap) {
        uint32_t ncap = s->nodes_cap ? s->nodes_cap * 2 : 8;
        char **n = realloc(s->nodes, ncap * sizeof(*n));
        if (!n)
            return -ENOMEM;
        s->nodes = n;
        s->nodes_cap = ncap;
    }
    char *copy = strdup(name);
    if (!copy)
        return -ENOMEM;
    s->nodes[s->nnodes] = copy;
    return (int)s->nnodes++;
}

static struct hc_hash page_hash(const struct hc_store *s, int ns, const char *key, size_t klen)
{
    return hc_index_hash(s->ns[ns].name, s->ns[ns].len, key, klen);
}

/* ---- accounting ---------------------------------------------------------- */

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

static void acct_del(struct hc_store *s, struct seg *seg, uint64_t len)
{
    s->st->pages--;
    s->st->bytes_stored -= len;
    seg->pages--;
    if (seg->local)
        s->st->local_pages--;
    else
        s->st->remote_pages--;
}

static void local_bytes_set(struct hc_store *s, uint64_t v)
{
    s->local_bytes = v;
    s->st->disk_bytes = v;
}

/* Puts a page in the index; an existing entry for h is kept. len is the
 * original length, sblocks the stored blocks of a compressed record (0 raw). */
static void index_put(struct hc_store *s, struct seg *seg, struct hc_hash h, uint64_t off,
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
    acct_del(c->s, c->s->segs[e->seg], e->len);
    return true;
}

static bool drop_ns_pred(const struct hc_index_ent *e, void *arg)
{
    struct drop_ctx *c = arg;
    if (e->ns != c->ns)
        return false;
    acct_del(c->s, c->s->segs[e->seg], e->len);
    return true;
}

/* ---- deferred callbacks -------------------------------------------------- */

static void defer_done(struct hc_io_req *req)
{
    struct hc_store *s = req->data;
    struct deferred *d = s->dhead, *next;

    s->inflight--;
    s->dreq_busy = false;
    s->dhead = s->dtail = NULL;
    for (; d; d = next) {
        next = d->next;
        d->cb(d->data, d->status, d->len);
        free(d);
    }
}

/* Queues cb(data, status, len) to run from a later hc_io_pool_drain. Returns 0
 * or -ENOMEM (cb will not run). */
static int defer_cb(struct hc_store *s, hc_store_cb cb, void *data, int status, uint64_t len)
{
    struct deferred *d = malloc(sizeof(*d));
    if (!d)
        return -ENOMEM;
    *d = (struct deferred){.cb = cb, .data = data, .status = status, .len = len};
    if (s->dtail)
        s->dtail->next = d;
    else
        s->dhead = d;
    s->dtail = d;
    if (!s->dreq_busy) {
        memset(&s->dreq, 0, sizeof(s->dreq));
        s->dreq.op = HC_IO_TASK;
        s->dreq.prio = HC_IO_PRIO_HIGH;
        s->dreq.fd = -1;
        s->dreq.done = defer_done;
        s->dreq.data = s;
        s->dreq_busy = true;
        s->inflight++;
        hc_io_submit(s->io, &s->dreq);
    }
    return 0;
}

/* ---- records ------------------------------------------------------------- */

/* Fills a header block of a raw record (loop thread); hdr_set_zstd turns it
 * into a compressed one, hdr_finish adds the CRCs later. */
static void hdr_fill(const struct hc_store *s, unsigned char *h, int ns, const char *key,
                     size_t klen, uint64_t len)
{
    const struct nsent *n = &s->ns[ns];
    memset(h, 0, HC_STORE_ALIGN);
    memcpy(h, REC_MAGIC, 4);
    put16(h + 4, REC_VERSION);
    put16(h + 6, 0);
    put32(h + 8, (uint32_t)(REC_FIXED + n->len + klen));
    put64(h + 16, s->epoch);
    put64(h + 24, len);
    put16(h + 36, n->len);
    put16(h + 38, (uint16_t)klen);
    memcpy(h + REC_FIXED, n->name, n->len);
    memcpy(h + REC_FIXED + n->len, key, klen);
}

/* Marks a filled header as a compressed record: stored is the payload length
 * on storage, the original length follows the key (inside the header CRC). */
static void hdr_set_zstd(unsigned char *h, uint64_t stored)
{
    uint32_t hlen = get32(h + 8);
    put64(h + hlen, get64(h + 24));
    put32(h + 8, hlen + 8);
    put16(h + 6, REC_F_ZSTD);
    put64(h + 24, stored);
}

static uint32_t hdr_crc(const unsigned char *h, uint32_t hlen)
{
    static const unsigned char zero4[4];
    uint32_t c = hc_crc32c(0, h, 12);
    c = hc_crc32c(c, zero4, 4);
    return hc_crc32c(c, h + 16, hlen - 16);
}

static void hdr_finish(unsigned char *h, uint32_t payload_crc)
{
    put32(h + 32, payload_crc);
    put32(h + 12, hdr_crc(h, get32(h + 8)));
}

struct hdr_view {
    uint64_t len;  /* payload bytes on storage */
    uint64_t orig; /* page length (== len unless compressed) */
    bool zstd;
    uint32_t payload_crc;
    const char *ns, *key;
    uint16_t nslen, klen;
};

/* Checks a header block's magic, version, lengths and CRC. Any thread.
 * Returns 0 and fills v, or -EBADMSG. */
static int hdr_check(const unsigned char *h, struct hdr_view *v)
{
    if (memcmp(h, REC_MAGIC, 4) != 0 || get16(h + 4) != REC_VERSION)
        return -EBADMSG;
    uint32_t hlen = get32(h + 8);
    uint16_t flags = get16(h + 6), nl = get16(h + 36), kl = get16(h + 38);
    bool zstd = flags == REC_F_ZSTD;
    if ((flags & ~REC_F_ZSTD) || nl == 0 || nl > HC_NS_MAX || kl == 0 || kl > HC_KEY_MAX ||
        hlen != (uint32_t)REC_FIXED + nl + kl + (zstd ? 8 : 0))
        return -EBADMSG;
    if (hdr_crc(h, hlen) != get32(h + 12))
        return -EBADMSG;
    v->len = get64(h + 24);
    v->zstd = zstd;
    v->orig = zstd ? get64(h + REC_FIXED + nl + kl) : v->len;
    if (zstd && (v->orig == 0 || v->orig > UINT32_MAX || round_up(v->len) >= round_up(v->orig) ||
                 round_up(v->len) / HC_STORE_ALIGN > ZBLOCKS_MAX))
        return -EBADMSG;
    v->payload_crc = get32(h + 32);
    v->nslen = nl;
    v->klen = kl;
    v->ns = (const char *)h + REC_FIXED;
    v->key = v->ns + nl;
    if (v->len == 0 || v->len > UINT32_MAX)
        return -EBADMSG;
    return 0;
}

/* ---- .idx files ---------------------------------------------------------- */

/* A parsed .idx: the raw buffer plus views into it. */
struct idx_data {
    unsigned char *buf;
    uint64_t seq, seg_bytes;
    uint32_t nns, nent;
    const unsigned char **ns_name; /* each: u16 length then bytes */
    const unsigned char *ents;
};

static void idx_data_free(struct idx_data *d)
{
    free(d->buf);
    free(d->ns_name);
    memset(d, 0, sizeof(*d));
}

/* Validates and parses an .idx image (takes buf). Returns 0 or -EBADMSG /
 * -ENOMEM (buf freed). */
static int idx_parse(unsigned char *buf, size_t len, uint64_t seq, struct idx_data *d)
{
    memset(d, 0, sizeof(*d));
    d->buf = buf;
    if (len < IDX_HDR + 4 || memcmp(buf, IDX_MAGIC, 4) != 0 || get32(buf + 4) != IDX_VERSION)
        goto bad;
    if (hc_crc32c(0, buf, len - 4) != get32(buf + len - 4))
        goto bad;
    d->seq = get64(buf + 8);
    d->seg_bytes = get64(buf + 16);
    d->nns = get32(buf + 24);
    d->nent = get32(buf + 28);
    if (d->seq != seq || d->nns > NS_LIMIT)
        goto bad;
    d->ns_name = calloc(d->nns ? d->nns : 1, sizeof(*d->ns_name));
    if (!d->ns_name) {
        idx_data_free(d);
        return -ENOMEM;
    }
    size_t p = IDX_HDR, end = len - 4;
    for (uint32_t i = 0; i < d->nns; i++) {
        if (p + 2 > end)
            goto bad;
        uint16_t nl = get16(buf + p);
        if (nl == 0 || nl > HC_NS_MAX || p + 2 + nl > end)
            goto bad;
        d->ns_name[i] = buf + p;
        p += 2 + (size_t)nl;
    }
    p = (p + 7) & ~(size_t)7;
    if (p > end || (end - p) / IDX_ENT != d->nent || (end - p) % IDX_ENT != 0)
        goto bad;
    d->ents = buf + p;
    for (uint32_t i = 0; i < d->nent; i++) {
        const unsigned char *e = d->ents + (size_t)i * IDX_ENT;
        uint64_t off = get64(e + 16);
        uint32_t elen = get32(e + 24);
        uint16_t sblocks = get16(e + 30);
        if (get16(e + 28) >= d->nns || elen == 0 || off % HC_STORE_ALIGN ||
            off / HC_STORE_ALIGN > UINT32_MAX || sblocks > ZBLOCKS_MAX ||
            (sblocks && (uint64_t)sblocks * HC_STORE_ALIGN >= round_up(elen)) ||
            off + ent_rec_size(elen, sblocks) > d->seg_bytes)
            goto bad;
    }
    return 0;
bad:
    idx_data_free(d);
    return -EBADMSG;
}

/* Reads and parses the .idx at path. Blocking; any thread. Returns 0, or
 * -errno (-EBADMSG for a damaged file). */
static int idx_load(const char *path, uint64_t seq, struct idx_data *d)
{
    struct stat sb;
    unsigned char *buf;
    int rc, fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    if (fstat(fd, &sb) < 0) {
        rc = -errno;
        goto err;
    }
    if (sb.st_size < IDX_HDR + 4 || (uint64_t)sb.st_size > IDX_MAX_BYTES) {
        rc = -EBADMSG;
        goto err;
    }
    buf = malloc((size_t)sb.st_size);
    if (!buf) {
        rc = -ENOMEM;
        goto err;
    }
    rc = pread_all(fd, buf, (size_t)sb.st_size, 0);
    close(fd);
    if (rc < 0) {
        free(buf);
        return rc == -ENODATA ? -EBADMSG : rc;
    }
    return idx_parse(buf, (size_t)sb.st_size, seq, d);
err:
    close(fd);
    return rc;
}

static struct hc_hash idx_ent_hash(const unsigned char *e)
{
    return (struct hc_hash){get64(e), get64(e + 8)};
}

/* Builds the .idx image of a local segment from its committed records (loop
 * thread). Returns 0 or -ENOMEM. */
static int idx_encode(const struct hc_store *s, const struct seg *seg, unsigned char **out,
                      size_t *outlen)
{
    uint32_t *map = calloc(s->nns ? s->nns : 1, sizeof(*map)); /* ns id -> file index + 1 */
    uint16_t *order = malloc((s->nns ? s->nns : 1) * sizeof(*order));
    unsigned char *buf = NULL;
    uint32_t nns = 0;
    size_t names = 0;

    if (!map || !order)
        goto err;
    for (size_t i = 0; i < seg->nrecs; i++) {
        uint16_t ns = seg->recs[i].ns;
        if (!map[ns]) {
            order[nns] = ns;
            map[ns] = ++nns;
            names += 2 + s->ns[ns].len;
        }
    }
    size_t ents = (IDX_HDR + names + 7) & ~(size_t)7;
    size_t len = ents + seg->nrecs * IDX_ENT + 4;
    buf = calloc(1, len);
    if (!buf)
        goto err;
    memcpy(buf, IDX_MAGIC, 4);
    put32(buf + 4, IDX_VERSION);
    put64(buf + 8, seg->seq);
    put64(buf + 16, seg->size);
    put32(buf + 24, nns);
    put32(buf + 28, (uint32_t)seg->nrecs);
    size_t p = IDX_HDR;
    for (uint32_t i = 0; i < nns; i++) {
        const struct nsent *n = &s->ns[order[i]];
        put16(buf + p, n->len);
        memcpy(buf + p + 2, n->name, n->len);
        p += 2 + (size_t)n->len;
    }
    for (size_t i = 0; i < seg->nrecs; i++) {
        unsigned char *e = buf + ents + i * IDX_ENT;
        const struct seg_rec *r = &seg->recs[i];
        put64(e, r->h.lo);
        put64(e + 8, r->h.hi);
        put64(e + 16, r->off);
        put32(e + 24, r->len);
        put16(e + 28, (uint16_t)(map[r->ns] - 1));
        put16(e + 30, r->sblocks);
    }
    put32(buf + len - 4, hc_crc32c(0, buf, len - 4));
    free(map);
    free(order);
    *out = buf;
    *outlen = len;
    return 0;
err:
    free(map);
    free(order);
    free(buf);
    return -ENOMEM;
}

/* Adds the entries of a parsed .idx to the index for seg. Local segments skip
 * tombstoned records. Namespaces beyond the limit are skipped. */
static void idx_merge(struct hc_store *s, struct seg *seg, const struct idx_data *d)
{
    int *ids = malloc((d->nns ? d->nns : 1) * sizeof(*ids));
    if (!ids) {
        hc_log(HC_LOG_ERR, "store: out of memory loading segment %016" PRIx64, seg->seq);
        return;
    }
    for (uint32_t i = 0; i < d->nns; i++)
        ids[i] = ns_intern(s, (const char *)d->ns_name[i] + 2, get16(d->ns_name[i]));
    for (uint32_t i = 0; i < d->nent; i++) {
        const unsigned char *e = d->ents + (size_t)i * IDX_ENT;
        int ns = ids[get16(e + 28)];
        uint64_t off = get64(e + 16);
        if (ns < 0 || (seg->local && tombstoned(s, (uint16_t)ns, seg->seq, off)))
            continue;
        index_put(s, seg, idx_ent_hash(e), off, get32(e + 24), (uint16_t)ns, get16(e + 30));
    }
    free(ids);
}

/* ---- segments ------------------------------------------------------------ */

/* Adds a segment descriptor. Returns it, or NULL on -ENOMEM. */
static struct seg *seg_new(struct hc_store *s, uint32_t node, uint64_t seq, bool local,
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

static void seg_close_fd(struct hc_store *s, struct seg *seg)
{
    if (seg->fd >= 0) {
        close(seg->fd);
        seg->fd = -1;
        s->nfds--;
    }
}

/* Frees a dropped segment once nothing uses it. */
static void seg_maybe_free(struct hc_store *s, struct seg *seg)
{
    if (seg->state != SEG_DEAD || seg->refs || seg->opening || seg->unlinking || seg->unlink_wanted)
        return;
    seg_close_fd(s, seg);
    s->segs[seg->id] = NULL;
    free(seg->recs);
    free(seg);
}

struct unlink_task {
    struct hc_io_req req;
    struct hc_store *s;
    struct seg *seg;
    char idx[PATH_MAX], data[PATH_MAX];
};

/* Called on an I/O thread: the .idx goes first, so that a crash in between
 * leaves an unsealed segment (scanned again), never an index without data. */
static int unlink_before(struct hc_io_req *req)
{
    struct unlink_task *t = container_of(req, struct unlink_task, req);
    int rc = 0;
    if (unlink(t->idx) < 0 && errno != ENOENT)
        rc = -errno;
    if (unlink(t->data) < 0 && errno != ENOENT)
        rc = -errno;
    return rc;
}

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
    seg_maybe_free(s, seg);
}

static void unlink_submit(struct hc_store *s, struct seg *seg)
{
    struct unlink_task *t = calloc(1, sizeof(*t));
    seg->unlink_wanted = false;
    if (!t) {
        char idx[PATH_MAX], data[PATH_MAX];
        seg_path(s, seg, "idx", idx, sizeof(idx));
        seg_path(s, seg, "seg", data, sizeof(data));
        unlink(idx);
        unlink(data);
        return;
    }
    t->s = s;
    t->seg = seg;
    seg_path(s, seg, "idx", t->idx, sizeof(t->idx));
    seg_path(s, seg, "seg", t->data, sizeof(t->data));
    t->req.op = HC_IO_TASK;
    t->req.prio = HC_IO_PRIO_LOW;
    t->req.fd = -1;
    t->req.before = unlink_before;
    t->req.done = unlink_done;
    seg->unlinking = true;
    s->unlinks++;
    s->inflight++;
    hc_io_submit(s->io, &t->req);
}

/* Drops a sealed segment from the view: its index entries go at once (new
 * gets miss); reads in flight keep the fd until they finish. evict: this
 * node's segment dropped for space, its files are removed. */
static void linger_drop(struct hc_store *s, int64_t seg, int ns);

static void seg_drop(struct hc_store *s, struct seg *seg, bool evict)
{
    struct drop_ctx c = {.s = s, .seg = seg->id};
    size_t n = hc_index_remove_if(&s->ix, drop_seg_pred, &c);

    linger_drop(s, seg->id, -1);
    seg->state = SEG_DEAD;
    s->st->segments--;
    if (seg->local)
        local_bytes_set(s, s->local_bytes - seg->size);
    if (evict) {
        s->st->evicted_pages += n;
        s->st->evicted_segments++;
        if (seg->opening)
            seg->unlink_wanted = true; /* after the open, or it would fail */
        else
            unlink_submit(s, seg);
    }
    seg_maybe_free(s, seg);
}

/* ---- sealing ------------------------------------------------------------- */

struct seal_task {
    struct hc_io_req req;
    struct hc_store *s;
    struct seg *seg;
    int fd;
    unsigned char *buf;
    size_t len;
    char tmp[PATH_MAX], path[PATH_MAX];
};

/* Called on an I/O thread: data first, then the index that vouches for it. */
static int seal_before(struct hc_io_req *req)
{
    struct seal_task *t = container_of(req, struct seal_task, req);
    if (fdatasync(t->fd) < 0 && errno != EINVAL)
        return -errno;
    return write_file_atomic(t->tmp, t->path, t->buf, t->len);
}

static void evict_capacity(struct hc_store *s);

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
    free(seg->recs);
    seg->recs = NULL;
    seg->nrecs = seg->caprecs = 0;
    free(t->buf);
    free(t);
    evict_capacity(s);
}

/* Seals a local segment whose writes are all finished: its .idx is written on
 * an I/O thread from a snapshot taken now. */
static void seal_submit(struct hc_store *s, struct seg *seg)
{
    struct seal_task *t = calloc(1, sizeof(*t));
    if (!t || idx_encode(s, seg, &t->buf, &t->len) < 0) {
        hc_log(HC_LOG_ERR, "store: out of memory sealing segment %016" PRIx64, seg->seq);
        free(t);
        seg->state = SEG_SEALED; /* no more appends; a restart scans it */
        return;
    }
    t->s = s;
    t->seg = seg;
    t->fd = seg->fd;
    seg_path(s, seg, "idx.tmp", t->tmp, sizeof(t->tmp));
    seg_path(s, seg, "idx", t->path, sizeof(t->path));
    t->req.op = HC_IO_TASK;
    t->req.prio = HC_IO_PRIO_LOW;
    t->req.fd = -1;
    t->req.before = seal_before;
    t->req.done = seal_done;
    seg->state = SEG_SEALING;
    s->inflight++;
    hc_io_submit(s->io, &t->req);
}

/* Same, blocking (close and open). Returns 0 or -errno. */
static int seal_sync(struct hc_store *s, struct seg *seg)
{
    char tmp[PATH_MAX], path[PATH_MAX];
    unsigned char *buf;
    size_t len;
    int rc = idx_encode(s, seg, &buf, &len);
    if (rc < 0)
        return rc;
    if (seg->fd >= 0 && fdatasync(seg->fd) < 0 && errno != EINVAL) {
        rc = -errno;
        free(buf);
        return rc;
    }
    seg_path(s, seg, "idx.tmp", tmp, sizeof(tmp));
    seg_path(s, seg, "idx", path, sizeof(path));
    rc = write_file_atomic(tmp, path, buf, len);
    free(buf);
    if (rc == 0) {
        seg->state = SEG_SEALED;
        free(seg->recs);
        seg->recs = NULL;
        seg->nrecs = seg->caprecs = 0;
    }
    return rc;
}

/* Stops appends to seg; it seals once its pending writes are done. */
static void seg_close_appends(struct hc_store *s, struct seg *seg)
{
    if (s->open == seg)
        s->open = NULL;
    if (seg->state != SEG_OPEN)
        return;
    seg->state = SEG_CLOSING;
    if (!seg->pend_head)
        seal_submit(s, seg);
}

/* Creates the next local segment file and makes it the open one. Blocking
 * (one file create per segment). Returns 0 or -errno. */
static int seg_create(struct hc_store *s)
{
    struct seg tmpl = {.node = 0, .seq = s->next_seq};
    char path[PATH_MAX];
    bool direct;
    int fd;

    for (int tries = 0;; tries++) {
        seg_path(s, &tmpl, "seg", path, sizeof(path));
        fd = open_file(s, path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644, &direct);
        if (fd != -EEXIST || tries == 16)
            break;
        tmpl.seq = ++s->next_seq; /* someone left a file there: never reuse it */
    }
    if (fd < 0) {
        hc_log(HC_LOG_ERR, "store: creating %s: %s", path, strerror(-fd));
        return fd;
    }
    struct seg *seg = seg_new(s, 0, s->next_seq, true, SEG_OPEN);
    if (!seg) {
        close(fd);
        unlink(path);
        return -ENOMEM;
    }
    s->next_seq++;
    seg->fresh = true;
    seg->fd = fd;
    seg->fd_direct = direct;
    s->nfds++;
    seg->opened_ms = s->now_ms;
    seg->opened_known = s->have_now;
    s->open = seg;
    return 0;
}

/* ---- set ------------------------------------------------------------------ */

static void wrec_free(struct wrec *w)
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
        hdr_finish(w->hdr, hc_crc32c(0, w->zbuf, w->zlen));
        return 0;
    }
    const void *p = w->buf;
    if (w->bounce) {
        memcpy(w->bounce, w->buf, w->len);
        p = w->bounce;
    }
    hdr_finish(w->hdr, hc_crc32c(0, p, w->len));
    return 0;
}

/* ---- zstd contexts: one of each kind per I/O thread ---------------------- */

static pthread_key_t cctx_key, dctx_key;
static pthread_once_t zkeys_once = PTHREAD_ONCE_INIT;
static int zkeys_rc;

static void cctx_free(void *p)
{
    ZSTD_freeCCtx(p);
}

static void dctx_free(void *p)
{
    ZSTD_freeDCtx(p);
}

static void zkeys_init(void)
{
    zkeys_rc = pthread_key_create(&cctx_key, cctx_free);
    if (zkeys_rc == 0 && (zkeys_rc = pthread_key_create(&dctx_key, dctx_free)) != 0)
        pthread_key_delete(cctx_key);
}

/* The calling thread's compression context, made on first use and freed when
 * the thread exits. NULL when out of memory. Any thread. */
static ZSTD_CCtx *thread_cctx(void)
{
    ZSTD_CCtx *c;
    if (pthread_once(&zkeys_once, zkeys_init) != 0 || zkeys_rc != 0)
        return NULL;
    c = pthread_getspecific(cctx_key);
    if (!c && (c = ZSTD_createCCtx()) && pthread_setspecific(cctx_key, c) != 0) {
        ZSTD_freeCCtx(c);
        c = NULL;
    }
    return c;
}

/* Same for decompression. */
static ZSTD_DCtx *thread_dctx(void)
{
    ZSTD_DCtx *d;
    if (pthread_once(&zkeys_once, zkeys_init) != 0 || zkeys_rc != 0)
        return NULL;
    d = pthread_getspecific(dctx_key);
    if (!d && (d = ZSTD_createDCtx()) && pthread_setspecific(dctx_key, d) != 0) {
        ZSTD_freeDCtx(d);
        d = NULL;
    }
    return d;
}

/* Largest stored size worth keeping for a page of len bytes: ~3% smaller and
 * at least one block less on storage (records are block-aligned); 0 when no
 * size is. */
static uint64_t zlimit(uint64_t len)
{
    uint64_t lim = len - len / 32;
    if (round_up(len) < 2 * HC_STORE_ALIGN)
        return 0;
    if (lim > round_up(len) - HC_STORE_ALIGN)
        lim = round_up(len) - HC_STORE_ALIGN;
    if (lim > (uint64_t)ZBLOCKS_MAX * HC_STORE_ALIGN)
        lim = (uint64_t)ZBLOCKS_MAX * HC_STORE_ALIGN;
    return lim;
}

/* Called on an I/O thread: compresses the page into zbuf. A page that does
 * not shrink enough (or no memory) is stored raw: zbuf stays NULL. */
static int wrec_compress(struct hc_io_req *req)
{
    struct wrec *w = container_of(req, struct wrec, req);
    uint64_t lim = zlimit(w->len);
    ZSTD_CCtx *cctx = thread_cctx();
    void *z;

    if (!lim || !cctx || posix_memalign(&z, HC_STORE_ALIGN, round_up(lim)) != 0)
        return 0;
    /* Output that would not fit under the limit fails early: stored raw. */
    size_t n = ZSTD_compressCCtx(cctx, z, lim, w->buf, w->len, w->level);
    if (ZSTD_isError(n) || n == 0 || n > lim) {
        free(z);
        return 0;
    }
    memset((char *)z + n, 0, round_up(n) - n);
    w->zbuf = z;
    w->zlen = n;
    return 0;
}

/* Stored blocks of a compressed record, 0 for a raw one. */
static uint16_t wrec_sblocks(const struct wrec *w)
{
    return w->zbuf ? (uint16_t)(round_up(w->zlen) / HC_STORE_ALIGN) : 0;
}

static int seg_rec_push(struct seg *seg, const struct wrec *w)
{
    if (seg->nrecs == seg->caprecs) {
        size_t ncap = seg->caprecs ? seg->caprecs * 2 : 64;
        struct seg_rec *n = realloc(seg->recs, ncap * sizeof(*n));
        if (!n)
            return -ENOMEM;
        seg->recs = n;
        seg->caprecs = ncap;
    }
    seg->recs[seg->nrecs++] = (struct seg_rec){.h = w->pn.h,
                                               .off = w->off,
                                               .len = (uint32_t)w->len,
                                               .ns = w->ns,
                                               .sblocks = wrec_sblocks(w)};
    return 0;
}

/* Commits the finished records at the head of seg's pending list, in order:
 * index first (the page is visible), then the callbacks. Seals the segment
 * once it is closed and nothing is pending. */
static void seg_commit(struct hc_store *s, struct seg *seg)
{
    struct wrec *w;
    while ((w = seg->pend_head) && w->done) {
        seg->pend_head = w->next;
        if (!seg->pend_head)
            seg->pend_tail = NULL;
        if (w->in_tab)
            ptab_del(&s->writing, &w->pn);

        int st = w->status;
        if (st < 0 && !seg->cascade)
            seg->cascade = st;
        else if (st == 0 && seg->cascade)
            st = seg->cascade;
        if (st == 0 && seg_rec_push(seg, w) < 0)
            st = -ENOMEM;
        if (st == 0) {
            if (!tombstoned(s, w->ns, seg->seq, w->off))
                index_put(s, seg, w->pn.h, w->off, (uint32_t)w->len, w->ns, wrec_sblocks(w));
        } else {
            s->st->set_errors++;
        }
        for (struct waiter *x = w->waiters; x; x = x->next)
            x->cb(x->data, st, st == 0 ? w->len : 0);
        wrec_free(w);
    }
    if (seg->state == SEG_CLOSING && !seg->pend_head)
        seal_submit(s, seg);
}

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
        if (seg->state == SEG_OPEN)
            seg_close_appends(s, seg);
    } else if (w->zbuf) {
        s->st->bytes_written += w->zlen;
        s->st->compressed_pages++;
        s->st->bytes_saved_compression += w->len - w->zlen;
    } else {
        s->st->bytes_written += w->len;
    }
    seg_commit(s, seg);
}

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

/* Takes w's place at the tail of the open segment (a new one if it has no
 * room) and submits its write. w is filled except for the placement. Returns
 * 0, or -errno with nothing submitted (w still the caller's). */
static int wrec_place(struct hc_store *s, struct wrec *w)
{
    uint64_t plen = w->zbuf ? w->zlen : w->len, size = ent_rec_size(w->len, wrec_sblocks(w));
    struct seg *seg = s->open;
    int rc;

    if (seg && seg->size + size > s->cfg.segment_size) {
        seg_close_appends(s, seg);
        seg = NULL;
    }
    if (!seg) {
        rc = seg_create(s);
        if (rc < 0)
            return rc;
        seg = s->open;
    }
    bool aligned = ((uintptr_t)w->buf % HC_STORE_ALIGN) == 0 && w->len % HC_STORE_ALIGN == 0;
    if (!w->zbuf && seg->fd_direct && !aligned) {
        if (posix_memalign(&w->bounce, HC_STORE_ALIGN, round_up(w->len)) != 0) {
            w->bounce = NULL;
            return -ENOMEM;
        }
        memset((char *)w->bounce + w->len, 0, round_up(w->len) - w->len);
    }
    if (w->zbuf)
        hdr_set_zstd(w->hdr, w->zlen);
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

    seg->size += size;
    local_bytes_set(s, s->local_bytes + size);
    if (seg->pend_tail)
        seg->pend_tail->next = w;
    else
        seg->pend_head = w;
    seg->pend_tail = w;
    s->inflight++;
    hc_io_submit(s->io, &w->req);
    evict_capacity(s);
    return 0;
}

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
    if (w->in_tab)
        ptab_del(&s->writing, &w->pn);
    if (rc < 0)
        s->st->set_errors++;
    for (struct waiter *x = w->waiters; x; x = x->next)
        x->cb(x->data, rc, rc == 0 ? w->len : 0);
    wrec_free(w);
}

int hc_store_set(struct hc_store *s, int ns, const char *key, size_t klen, const void *buf,
                 uint64_t len, hc_store_cb cb, void *data)
{
    return hc_store_set_ex(s, ns, key, klen, buf, len, NULL, cb, data);
}

int hc_store_set_ex(struct hc_store *s, int ns, const char *key, size_t klen, const void *buf,
                    uint64_t len, const struct hc_store_opts *opts, hc_store_cb cb, void *data)
{
    struct hc_store_opts o = opts ? *opts : HC_STORE_OPTS_DEFAULT;
    struct wrec *w = NULL;
    struct hc_hash h;
    int rc;

    if (!s || !cb || !key || !buf || !ns_valid(s, ns) || klen == 0 || klen > HC_KEY_MAX ||
        len == 0 || o.compression > HC_COMPRESS_ZSTD) {
        rc = -EINVAL;
        goto refused;
    }
    if (s->stopping) {
        rc = -ESHUTDOWN;
        goto refused;
    }
    if (len > UINT32_MAX || rec_size(len) > s->cfg.segment_size) {
        rc = -EFBIG;
        goto refused;
    }
    h = page_hash(s, ns, key, klen);

    if (s->cfg.dedupe) {
        const struct hc_index_ent *e = hc_index_lookup(&s->ix, h);
        struct pnode *p;
        if (e) {
            rc = defer_cb(s, cb, data, 0, e->len);
            if (rc < 0)
                goto refused;
            goto dedup;
        }
        if ((p = ptab_find(&s->writing, h))) {
            rc = waiter_add(container_of(p, struct wrec, pn), cb, data);
            if (rc < 0)
                goto refused;
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
    w->compress = o.compression == HC_COMPRESS_ZSTD ||
                  (o.compression == HC_COMPRESS_DEFAULT && s->cfg.enable_compression);
    w->compress = w->compress && zlimit(len) > 0;
    w->level = s->cfg.compression_level ? s->cfg.compression_level : 1;
    hdr_fill(s, w->hdr, ns, key, klen, len);

    if (w->compress) {
        /* The record's size is known after the compression: it takes its
         * place in the segment then (wrec_compressed). */
        w->req.op = HC_IO_TASK;
        w->req.prio = HC_IO_PRIO_LOW;
        w->req.fd = -1;
        w->req.before = wrec_compress;
        w->req.done = wrec_compressed;
        w->req.data = w;
        w->znext = s->compressing;
        if (s->compressing)
            s->compressing->zprev = w;
        s->compressing = w;
        s->inflight++;
        hc_io_submit(s->io, &w->req);
    } else {
        rc = wrec_place(s, w);
        if (rc < 0)
            goto err;
    }
    if (s->cfg.dedupe) {
        ptab_add(&s->writing, &w->pn);
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
        wrec_free(w);
refused:
    if (s)
        s->st->set_errors++;
    return rc;
}

/* ---- get ------------------------------------------------------------------ */

static void client_hit(struct hc_store *s, hc_store_cb cb, void *data, uint64_t len)
{
    s->st->hits++;
    s->st->bytes_served += len;
    cb(data, 0, len);
}

static void rd_free(struct rd *r)
{
    free(r->hdr);
    free(r->bounce);
    free(r->plain);
    free(r);
}

/* The verified page a copy for a joiner takes from: a daemon-owned buffer
 * when the read has one (*owned), else the leader's slot, which its client
 * may change (the copy is then checked against the record's CRC). */
static const void *rd_src(const struct rd *r, bool *owned)
{
    *owned = r->plain || r->bounce;
    return r->plain ? r->plain : r->bounce ? r->bounce : r->buf;
}

/* Called on an I/O thread once the header block and payload are in: checks
 * everything before a byte is handed out, and decompresses a compressed
 * record (its CRC covers the stored bytes, its header the original length). */
static int rd_after(struct hc_io_req *req)
{
    struct rd *r = container_of(req, struct rd, req);
    struct hdr_view v;

    if (hdr_check(r->hdr, &v) < 0 || v.orig != r->len || v.zstd != (r->sblocks != 0) ||
        v.nslen != r->nslen || v.klen != r->klen || memcmp(v.ns, r->names, r->nslen) != 0 ||
        memcmp(v.key, r->names + r->nslen, r->klen) != 0)
        return -EBADMSG;
    if (r->sblocks) {
        ZSTD_DCtx *d;
        size_t n;
        if (round_up(v.len) != (uint64_t)r->sblocks * HC_STORE_ALIGN ||
            hc_crc32c(0, r->bounce, v.len) != v.payload_crc)
            return -EBADMSG;
        if (!(d = thread_dctx()))
            return -ENOMEM;
        n = ZSTD_decompressDCtx(d, r->plain, r->len, r->bounce, v.len);
        if (ZSTD_isError(n) || n != r->len)
            return -EBADMSG;
        memcpy(r->buf, r->plain, r->len);
        r->stored = (uint32_t)v.len;
        return 0;
    }
    const void *p = r->bounce ? r->bounce : r->buf;
    r->crc = hc_crc32c(0, p, r->len);
    if (r->crc != v.payload_crc)
        return -EBADMSG;
    if (r->bounce)
        memcpy(r->buf, r->bounce, r->len);
    r->stored = r->len;
    return 0;
}

static void rd_finish(struct hc_store *s, struct rd *r, ssize_t result);
static int get_start(struct hc_store *s, int ns, const char *key, size_t klen, void *buf,
                     uint64_t cap, uint32_t readers, hc_store_cb cb, void *data, bool joinable);

static void rd_done(struct hc_io_req *req)
{
    struct rd *r = container_of(req, struct rd, req);
    struct hc_store *s = r->s;
    ssize_t result = req->result;

    s->inflight--;
    if (s->fail_reads > 0) {
        s->fail_reads--;
        result = s->fail_err;
    }
    rd_finish(s, r, result);
}

void hc__store_fail_reads(struct hc_store *s, int err, unsigned n)
{
    s->fail_err = err;
    s->fail_reads = n;
}

/* Submits r's storage read, or parks it until its segment's fd is open. */
static void rd_submit(struct hc_store *s, struct rd *r);

struct open_task {
    struct hc_io_req req;
    struct hc_store *s;
    struct seg *seg;
    int fd;
    bool direct;
    char path[PATH_MAX];
};

/* Called on an I/O thread: opening a file is a metadata round trip on the
 * mount, kept off the loop thread. */
static int open_before(struct hc_io_req *req)
{
    struct open_task *t = container_of(req, struct open_task, req);
    t->fd = open_file(t->s, t->path, O_RDONLY | O_CLOEXEC, 0, &t->direct);
    return t->fd < 0 ? t->fd : 0;
}

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
            close(t->fd);
        }
    }
    /* Waiters were pushed at the head: reverse to serve them in order. */
    for (r = seg->waiters; r; r = next) {
        next = r->wnext;
        r->wnext = list;
        list = r;
    }
    seg->waiters = NULL;
    if (seg->unlink_wanted)
        unlink_submit(s, seg);
    for (r = list; r; r = next) {
        next = r->wnext;
        if (req->result == 0)
            rd_submit(s, r);
        else
            rd_finish(s, r, req->result);
    }
    free(t);
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
    (void)posix_fadvise(req->fd, (off_t)r->off, (off_t)len, POSIX_FADV_DONTNEED);
    return 0;
}

static void rd_submit(struct hc_store *s, struct rd *r)
{
    struct seg *seg = r->seg;

    seg->last_use_ms = s->now_ms;
    if (seg->fd < 0) {
        r->wnext = seg->waiters;
        seg->waiters = r;
        if (!seg->opening) {
            struct open_task *t = calloc(1, sizeof(*t));
            if (!t) {
                seg->waiters = r->wnext;
                rd_finish(s, r, -ENOMEM);
                return;
            }
            t->s = s;
            t->seg = seg;
            seg_path(s, seg, "seg", t->path, sizeof(t->path));
            t->req.op = HC_IO_TASK;
            t->req.prio = HC_IO_PRIO_HIGH;
            t->req.fd = -1;
            t->req.before = open_before;
            t->req.done = open_done;
            seg->opening = true;
            s->inflight++;
            hc_io_submit(s->io, &t->req);
        }
        return;
    }
    memset(&r->req, 0, sizeof(r->req));
    r->req.op = HC_IO_READ;
    r->req.prio = HC_IO_PRIO_HIGH;
    r->req.fd = seg->fd;
    r->req.offset = r->off;
    r->req.iov[0] = (struct iovec){r->hdr, HC_STORE_ALIGN};
    if (r->sblocks)
        r->req.iov[1] = (struct iovec){r->bounce, (size_t)r->sblocks * HC_STORE_ALIGN};
    else if (r->bounce)
        r->req.iov[1] = (struct iovec){r->bounce, round_up(r->len)};
    else
        r->req.iov[1] = (struct iovec){r->buf, r->len};
    r->req.iovcnt = 2;
    r->req.before = r->retries || r->eio_retries ? rd_before_retry : NULL;
    r->req.after = rd_after;
    r->req.done = rd_done;
    r->req.data = r;
    s->inflight++;
    hc_io_submit(s->io, &r->req);
}

/* ---- read linger ---------------------------------------------------------- */

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
static void linger_unlink(struct hc_store *s, struct linger *l)
{
    if (!l->in_tab)
        return;
    ptab_del(&s->lingering, &l->pn);
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
static void linger_expire(struct hc_store *s, uint64_t now)
{
    struct linger *l = s->lhead, *next;
    for (; l; l = next) {
        next = l->next;
        if (l->expires_ms <= now)
            linger_unlink(s, l);
    }
}

/* Drops the lingering pages of segment seg (>= 0) or of namespace ns (>= 0):
 * the page left the index (eviction, a vanished remote segment, clear); both
 * -1: every one. */
static void linger_drop(struct hc_store *s, int64_t seg, int ns)
{
    struct linger *l = s->lhead, *next;
    bool all = seg < 0 && ns < 0;
    for (; l; l = next) {
        next = l->next;
        if (all || (seg >= 0 && l->seg == (uint64_t)seg) || (ns >= 0 && l->ns == ns))
            linger_unlink(s, l);
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
    void **bufp = r->plain ? &r->plain : &r->bounce;
    struct pnode *old;
    struct linger *l;

    if (!*bufp || !e || e->seg != r->seg->id || (uint64_t)e->off * HC_STORE_ALIGN != r->off ||
        r->seg->state == SEG_DEAD || r->len > s->cfg.read_linger_bytes)
        return NULL;
    if ((old = ptab_find(&s->lingering, r->pn.h)))
        linger_unlink(s, container_of(old, struct linger, pn));
    while (s->lhead && s->st->linger_bytes + r->len > s->cfg.read_linger_bytes)
        linger_unlink(s, s->lhead);
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
    ptab_add(&s->lingering, &l->pn);
    s->st->linger_bytes += l->len;
    return l;
}

/* ---- joiners and copies --------------------------------------------------- */

/* Called on an I/O thread: a copy of a verified page into a getter's slot,
 * from a lingering page or the leader's read. A copy from the leader's slot
 * is checked again, so that whatever a client does to its own slot never
 * reaches another client; daemon-owned sources need no second check. */
static int join_before(struct hc_io_req *req)
{
    struct join *j = container_of(req, struct join, req);
    const void *src;
    uint32_t len;
    bool owned = true;

    if (j->lin) {
        src = j->lin->buf;
        len = j->lin->len;
    } else {
        src = rd_src(j->lead, &owned);
        len = j->lead->len;
    }
    memcpy(j->buf, src, len);
    if (owned)
        return 0;
    return hc_crc32c(0, j->buf, len) == j->lead->crc ? 0 : -EBADMSG;
}

static void join_done(struct hc_io_req *req)
{
    struct join *j = container_of(req, struct join, req);
    struct rd *lead = j->lead;
    struct linger *l = j->lin;
    struct hc_store *s = j->s;

    s->inflight--;
    if (l) {
        uint32_t len = l->len;
        l->refs--;
        linger_release(s, l);
        client_hit(s, j->cb, j->data, len);
        free(j);
        return;
    }
    if (req->result == 0) {
        client_hit(s, j->cb, j->data, lead->len);
    } else {
        /* The leader's slot changed under the copy: read again, alone. */
        int rc = get_start(s, j->ns, j->key, j->klen, j->buf, j->cap, 1, j->cb, j->data, false);
        if (rc < 0)
            j->cb(j->data, rc, 0);
    }
    free(j);
    if (--lead->copies == 0) {
        client_hit(s, lead->cb, lead->data, lead->len);
        rd_free(lead);
    }
}

static void join_submit(struct hc_store *s, struct join *j)
{
    memset(&j->req, 0, sizeof(j->req));
    j->req.op = HC_IO_TASK;
    j->req.prio = HC_IO_PRIO_HIGH;
    j->req.fd = -1;
    j->req.before = join_before;
    j->req.done = join_done;
    s->inflight++;
    hc_io_submit(s->io, &j->req);
}

/* Ends a storage read (or its open) with result: fans a good page out to the
 * joiners, keeps it lingering for the getter's other readers, maps failures
 * to misses or errors. */
static void rd_finish(struct hc_store *s, struct rd *r, ssize_t result)
{
    struct seg *seg = r->seg;
    struct join *j, *next;
    int st;

    if ((result == -EBADMSG || result == -ENODATA) && seg->fresh && r->retries < RD_RETRIES) {
        /* A record this run wrote and acknowledged: its bytes were whole on
         * storage before the page became visible, so a short read or a
         * failed check is most likely the file's view lagging the write
         * (rd_before_retry). Read again, with the segment still held and
         * joiners still joining; only a record that keeps failing is bad. */
        r->retries++;
        hc_log(HC_LOG_INFO,
               "store: record in segment %016" PRIx64 " at %" PRIu64
               " read back %s; reading again (%u/%u)",
               seg->seq, r->off, result == -ENODATA ? "short" : "bad", r->retries, RD_RETRIES);
        rd_submit(s, r);
        return;
    }
    if (result == -EIO && seg->fresh && !s->stopping && r->eio_retries < RD_EIO_RETRIES) {
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
        return;
    }
    if (r->in_tab) {
        ptab_del(&s->reading, &r->pn);
        r->in_tab = false;
    }
    seg->refs--;
    if (result >= 0) {
        struct linger *l = NULL;
        uint32_t njoins = 0;
        s->st->bytes_read_storage += r->stored;
        for (j = r->joins; j; j = j->next)
            njoins++;
        if (r->readers > njoins + 1 && s->cfg.coalesce_reads && s->cfg.read_linger_ms)
            l = linger_new(s, r, r->readers - 1 - njoins);
        seg_maybe_free(s, seg);
        if (l || !r->joins) {
            /* The joiners copy from the lingering page, not from the
             * leader's slot: the leader answers now. */
            for (j = r->joins, r->joins = NULL; j; j = next) {
                next = j->next;
                j->lin = l;
                l->refs++;
                join_submit(s, j);
            }
            client_hit(s, r->cb, r->data, r->len);
            rd_free(r);
            return;
        }
        /* The leader answers after its joiners' copies, which may read its
         * slot. */
        for (j = r->joins; j; j = j->next)
            r->copies++;
        for (j = r->joins, r->joins = NULL; j; j = next) {
            next = j->next;
            join_submit(s, j);
        }
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
            acct_del(s, seg, out.len);
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
    seg_maybe_free(s, seg);
    if (st == -ENOENT)
        s->st->misses++;
    r->cb(r->data, st, 0);
    for (j = r->joins; j; j = next) {
        next = j->next;
        if (st == -ENOENT)
            s->st->misses++;
        j->cb(j->data, st, 0);
        free(j);
    }
    rd_free(r);
}

static struct join *join_new(struct hc_store *s, int ns, const char *key, size_t klen, void *buf,
                             uint64_t cap, hc_store_cb cb, void *data)
{
    struct join *j = calloc(1, sizeof(*j));
    if (!j)
        return NULL;
    j->s = s;
    j->buf = buf;
    j->cap = cap;
    j->cb = cb;
    j->data = data;
    j->ns = ns;
    j->klen = (uint16_t)klen;
    memcpy(j->key, key, klen);
    return j;
}

/* Starts a get. joinable: may be served by a lingering page, or lead or join
 * a coalesced read. readers: the getter's readers per page. Returns 0 (cb
 * will run) or -errno (cb will not). */
static int get_start(struct hc_store *s, int ns, const char *key, size_t klen, void *buf,
                     uint64_t cap, uint32_t readers, hc_store_cb cb, void *data, bool joinable)
{
    struct hc_hash h = page_hash(s, ns, key, klen);
    const struct hc_index_ent *e = hc_index_lookup(&s->ix, h);
    uint32_t sblocks;
    struct rd *r;

    if (!e) {
        int rc = defer_cb(s, cb, data, -ENOENT, 0);
        if (rc == 0)
            s->st->misses++;
        return rc;
    }
    if (e->len > cap)
        return defer_cb(s, cb, data, -ENOSPC, e->len);
    sblocks = e->flags & HC_INDEX_FLAGS_USER;
    joinable = joinable && s->cfg.coalesce_reads;
    if (joinable && s->lhead) {
        struct pnode *p = ptab_find(&s->lingering, h);
        if (p) {
            struct linger *l = container_of(p, struct linger, pn);
            if (l->seg == e->seg && l->off == (uint64_t)e->off * HC_STORE_ALIGN &&
                l->len == e->len && mono_ms() < l->expires_ms) {
                struct join *j = join_new(s, ns, key, klen, buf, cap, cb, data);
                if (!j)
                    return -ENOMEM;
                j->lin = l;
                l->refs++;
                s->st->coalesced_reads++;
                if (--l->remaining == 0)
                    linger_unlink(s, l); /* freed once the copy is done */
                join_submit(s, j);
                return 0;
            }
            linger_unlink(s, l); /* stale: read again */
        }
    }
    if (joinable) {
        struct pnode *p = ptab_find(&s->reading, h);
        if (p) {
            struct rd *lead = container_of(p, struct rd, pn);
            /* Only a read of the record the index names now: after a clear
             * and a new set of the key, an older read (perhaps waiting to be
             * tried again) holds the old page. A new read is added to the
             * table in front of it. */
            if (lead->len == e->len && lead->seg->id == e->seg &&
                lead->off == (uint64_t)e->off * HC_STORE_ALIGN && lead->seg->state != SEG_DEAD) {
                struct join *j = join_new(s, ns, key, klen, buf, cap, cb, data);
                if (!j)
                    return -ENOMEM;
                j->lead = lead;
                j->next = lead->joins;
                lead->joins = j;
                s->st->coalesced_reads++;
                return 0;
            }
        }
    }

    /* A page that may linger is read into a daemon-owned buffer, which the
     * lingering entry then takes over without a copy. */
    bool linger =
        readers > 1 && joinable && s->cfg.read_linger_ms && e->len <= s->cfg.read_linger_bytes;
    bool unaligned = ((uintptr_t)buf % HC_STORE_ALIGN) != 0 || e->len % HC_STORE_ALIGN != 0;
    r = calloc(1, sizeof(*r));
    if (!r || posix_memalign((void **)&r->hdr, HC_STORE_ALIGN, HC_STORE_ALIGN) != 0)
        goto nomem;
    if (sblocks) {
        if (posix_memalign(&r->bounce, HC_STORE_ALIGN, (size_t)sblocks * HC_STORE_ALIGN) != 0) {
            r->bounce = NULL;
            goto nomem;
        }
        if (!(r->plain = malloc(e->len)))
            goto nomem;
    } else if (linger || (s->cfg.use_direct_io && unaligned)) {
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
    r->readers = readers;
    r->buf = buf;
    r->cb = cb;
    r->data = data;
    r->pn.h = h;
    r->nslen = s->ns[ns].len;
    r->klen = (uint16_t)klen;
    memcpy(r->names, s->ns[ns].name, r->nslen);
    memcpy(r->names + r->nslen, key, klen);
    r->seg->refs++;
    if (joinable) {
        ptab_add(&s->reading, &r->pn);
        r->in_tab = true;
    }
    rd_submit(s, r);
    return 0;
nomem:
    if (r)
        rd_free(r);
    return -ENOMEM;
}

int hc_store_get(struct hc_store *s, int ns, const char *key, size_t klen, void *buf, uint64_t cap,
                 hc_store_cb cb, void *data)
{
    return hc_store_get_ex(s, ns, key, klen, buf, cap, NULL, cb, data);
}

int hc_store_get_ex(struct hc_store *s, int ns, const char *key, size_t klen, void *buf,
                    uint64_t cap, const struct hc_store_opts *opts, hc_store_cb cb, void *data)
{
    if (!s || !cb || !key || !ns_valid(s, ns) || klen == 0 || klen > HC_KEY_MAX ||
        (!buf && cap > 0))
        return -EINVAL;
    s->st->gets++;
    return get_start(s, ns, key, klen, buf, cap, opts ? opts->readers : 1, cb, data, true);
}

uint64_t hc_store_exists(struct hc_store *s, int ns, const char *key, size_t klen)
{
    if (!s || !key || !ns_valid(s, ns) || klen == 0 || klen > HC_KEY_MAX)
        return 0;
    const struct hc_index_ent *e = hc_index_lookup(&s->ix, page_hash(s, ns, key, klen));
    return e ? e->len : 0;
}

int hc_store_ns(struct hc_store *s, const char *ns, size_t len)
{
    if (!s || !ns)
        return -EINVAL;
    return ns_intern(s, ns, len);
}

int hc_store_ns_lookup(struct hc_store *s, const char *ns, size_t len)
{
    if (!s || !ns || len == 0 || len > HC_NS_MAX)
        return -EINVAL;
    int id = ns_find(s, ns, len);
    return id >= 0 ? id : -ENOENT;
}

/* ---- clear and tombstones ------------------------------------------------ */

/* Writes cleared.json (tmp + fsync + rename). Blocking. Returns 0 or -errno. */
static int tomb_save(struct hc_store *s)
{
    json_t *root = json_object();
    char *text = NULL, *tmp = NULL, *path = NULL;
    int rc = -ENOMEM;

    if (!root)
        return -ENOMEM;
    for (uint32_t i = 0; i < s->nns; i++) {
        const struct nsent *n = &s->ns[i];
        if (!n->tomb)
            continue;
        json_t *v = json_pack("{s:I,s:I}", "seq", (json_int_t)n->tomb_seq, "offset",
                              (json_int_t)n->tomb_off);
        if (!v || json_object_set_new(root, n->name, v) < 0)
            goto out;
    }
    text = json_dumps(root, JSON_SORT_KEYS | JSON_INDENT(2));
    tmp = path_join(s->dir, "cleared.json.tmp");
    path = path_join(s->dir, "cleared.json");
    if (!text || !tmp || !path)
        goto out;
    rc = write_file_atomic(tmp, path, text, strlen(text));
out:
    free(text);
    free(tmp);
    free(path);
    json_decref(root);
    return rc;
}

/* Reads cleared.json if present. Returns 0 or -errno with err set. */
static int tomb_load(struct hc_store *s, char *err, size_t errlen)
{
    char *path = path_join(s->dir, "cleared.json");
    json_error_t jerr;
    json_t *root, *v;
    const char *name;
    int rc = 0;

    if (!path)
        return -ENOMEM;
    if (access(path, F_OK) < 0) {
        free(path);
        return 0;
    }
    root = json_load_file(path, 0, &jerr);
    if (!root || !json_is_object(root)) {
        snprintf(err, errlen, "%s: %s", path, root ? "not a JSON object" : jerr.text);
        rc = -EINVAL;
        goto out;
    }
    json_object_foreach(root, name, v)
    {
        json_int_t seq, off;
        if (json_unpack(v, "{s:I,s:I}", "seq", &seq, "offset", &off) < 0 || seq < 0 || off < 0 ||
            strlen(name) == 0 || strlen(name) > HC_NS_MAX) {
            snprintf(err, errlen, "%s: bad entry '%s'", path, name);
            rc = -EINVAL;
            goto out;
        }
        int id = ns_intern(s, name, strlen(name));
        if (id < 0) {
            snprintf(err, errlen, "%s: %s", path, strerror(-id));
            rc = id;
            goto out;
        }
        s->ns[id].tomb = true;
        s->ns[id].tomb_seq = (uint64_t)seq;
        s->ns[id].tomb_off = (uint64_t)off;
    }
out:
    json_decref(root);
    free(path);
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

uint64_t hc_store_clear(struct hc_store *s, int ns)
{
    if (!s || !ns_valid(s, ns))
        return 0;
    struct drop_ctx c = {.s = s, .ns = ns};
    size_t n = hc_index_remove_if(&s->ix, drop_ns_pred, &c);
    struct nsent *e = &s->ns[ns];

    writing_detach_ns(s, ns);
    linger_drop(s, -1, ns);
    for (struct wrec *w = s->compressing; w; w = w->znext)
        if (w->ns == ns)
            w->cleared = true;

    /* Everything this node allocated so far lies before this position; writes
     * still in flight are kept out of the index by the same test. */
    e->tomb = true;
    if (s->open) {
        e->tomb_seq = s->open->seq;
        e->tomb_off = s->open->size;
    } else {
        e->tomb_seq = s->next_seq;
        e->tomb_off = 0;
    }
    int rc = tomb_save(s);
    if (rc < 0)
        hc_log(HC_LOG_ERR, "store: saving cleared.json: %s (a restart brings '%s' back)",
               strerror(-rc), e->name);
    return n;
}

/* ---- discovery ----------------------------------------------------------- */

struct known {
    const char *node;
    uint64_t seq;
    uint32_t seg;
    bool seen, node_found, dir_ok;
};

struct found {
    struct found *next;
    char node[NODE_MAX + 1];
    uint64_t seq;
    struct idx_data idx;
};

struct disc {
    struct hc_io_req req;
    struct hc_store *s;
    char *root, *self;
    struct known *known;
    size_t nknown;
    char *arena;
    bool root_ok;
    struct found *found;
};

static int known_cmp(const void *a, const void *b)
{
    const struct known *x = a, *y = b;
    int c = strcmp(x->node, y->node);
    if (c)
        return c;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static void disc_free(struct disc *d)
{
    struct found *f, *next;
    for (f = d->found; f; f = next) {
        next = f->next;
        idx_data_free(&f->idx);
        free(f);
    }
    free(d->root);
    free(d->self);
    free(d->known);
    free(d->arena);
    free(d);
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
            d->known[d->nknown++] =
                (struct known){.node = names[seg->node], .seq = seg->seq, .seg = seg->id};
    }
    free(names);
    if (d->nknown)
        qsort(d->known, d->nknown, sizeof(*d->known), known_cmp);
    return d;
}

static struct known *known_find(struct disc *d, const char *node, uint64_t seq)
{
    struct known k = {.node = node, .seq = seq};
    if (!d->nknown)
        return NULL;
    return bsearch(&k, d->known, d->nknown, sizeof(k), known_cmp);
}

/* Lists one other node's directory: new .idx files are loaded, known ones
 * marked seen. Returns 0 if the listing was complete. */
static int disc_scan_node(struct disc *d, const char *node)
{
    char *dir = path_join(d->root, node);
    DIR *dh;
    struct dirent *de;
    if (!dir)
        return -ENOMEM;
    dh = opendir(dir);
    if (!dh) {
        int rc = -errno;
        free(dir);
        return rc;
    }
    while ((errno = 0, de = readdir(dh))) {
        uint64_t seq;
        if (!parse_seq_name(de->d_name, "idx", &seq))
            continue;
        struct known *k = known_find(d, node, seq);
        if (k) {
            k->seen = true;
            continue;
        }
        struct found *f = calloc(1, sizeof(*f));
        char *path = path_join(dir, de->d_name);
        int rc = f && path ? idx_load(path, seq, &f->idx) : -ENOMEM;
        if (rc < 0) {
            if (rc != -ENOENT)
                hc_log(HC_LOG_WARN, "store: skipping %s: %s", path ? path : de->d_name,
                       strerror(-rc));
            free(f);
            free(path);
            continue;
        }
        free(path);
        memcpy(f->node, node, strlen(node) + 1); /* valid_node_name: <= NODE_MAX */
        f->seq = seq;
        f->next = d->found;
        d->found = f;
    }
    int rc = errno ? -errno : 0;
    closedir(dh);
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
        if (!valid_node_name(node, strlen(node)) || !strcmp(node, d->self))
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
 * index, vanished ones leave it. */
static void disc_merge(struct hc_store *s, struct disc *d)
{
    for (size_t i = 0; d->root_ok && i < d->nknown; i++) {
        struct known *k = &d->known[i];
        if (k->seen || (k->node_found && !k->dir_ok))
            continue;
        struct seg *seg = s->segs[k->seg];
        if (seg && !seg->local && seg->state == SEG_SEALED && seg->seq == k->seq &&
            !strcmp(s->nodes[seg->node], k->node))
            seg_drop(s, seg, false);
    }
    for (struct found *f = d->found; f; f = f->next) {
        int node = node_intern(s, f->node);
        if (node < 0)
            continue;
        bool dup = false;
        for (uint32_t i = 0; i < s->segs_cap && !dup; i++) {
            struct seg *x = s->segs[i];
            dup = x && x->state != SEG_DEAD && (int)x->node == node && x->seq == f->seq;
        }
        if (dup)
            continue;
        struct seg *seg = seg_new(s, (uint32_t)node, f->seq, false, SEG_SEALED);
        if (!seg) {
            hc_log(HC_LOG_ERR, "store: out of memory adding segment of node %s", f->node);
            continue;
        }
        seg->size = f->idx.seg_bytes;
        idx_merge(s, seg, &f->idx);
    }
}

static void disc_done(struct hc_io_req *req)
{
    struct disc *d = container_of(req, struct disc, req);
    struct hc_store *s = d->s;
    s->inflight--;
    s->disc_busy = false;
    disc_merge(s, d);
    disc_free(d);
}

static void disc_submit(struct hc_store *s)
{
    struct disc *d = disc_new(s);
    if (!d)
        return;
    d->req.op = HC_IO_TASK;
    d->req.prio = HC_IO_PRIO_LOW;
    d->req.fd = -1;
    d->req.before = disc_before;
    d->req.done = disc_done;
    s->disc_busy = true;
    s->inflight++;
    hc_io_submit(s->io, &d->req);
}

/* ---- tick: sealing by age, eviction, fd trimming, discovery ------------- */

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
static void evict_capacity(struct hc_store *s)
{
    struct seg *v;
    while (!s->stopping && s->cfg.capacity_bytes && s->local_bytes > s->cfg.capacity_bytes &&
           (v = oldest_sealed_local(s)))
        seg_drop(s, v, true);
}

/* One segment at a time while the filesystem is short of free space (the
 * statvfs sees a drop only once the unlink is done). */
static void evict_free_space(struct hc_store *s, uint64_t now_ms)
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
        seg_drop(s, v, true);
}

static int lru_cmp(const void *a, const void *b)
{
    const struct seg *x = *(struct seg *const *)a, *y = *(struct seg *const *)b;
    return x->last_use_ms < y->last_use_ms ? -1 : x->last_use_ms > y->last_use_ms;
}

/* Closes the least recently used idle fds of sealed segments over MAX_FDS. */
static void fd_trim(struct hc_store *s)
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
        seg_close_fd(s, c[i]);
    free(c);
}

/* Submits the reads waiting to be tried again whose time has come (all of
 * them when stopping, which makes them finish with their error). */
static void rd_later_run(struct hc_store *s, bool all)
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
            rd_finish(s, r, -EIO);
        else
            rd_submit(s, r);
    }
}

void hc_store_tick(struct hc_store *s, uint64_t now_ms)
{
    if (!s)
        return;
    s->now_ms = now_ms;
    s->have_now = true;
    linger_expire(s, mono_ms());
    rd_later_run(s, false);
    if (s->stopping)
        return; /* close() seals; nothing new may be in flight */
    struct seg *o = s->open;
    if (o && !o->opened_known) {
        o->opened_ms = now_ms;
        o->opened_known = true;
    } else if (o && o->size > 0 && now_ms - o->opened_ms >= s->cfg.seal_interval_ms) {
        seg_close_appends(s, o); /* the next set opens a new one */
    }
    evict_capacity(s);
    evict_free_space(s, now_ms);
    fd_trim(s);
    if (!s->disc_started) {
        s->disc_started = true;
        s->last_disc_ms = now_ms;
    } else if (!s->disc_busy && now_ms - s->last_disc_ms >= s->cfg.discovery_interval_ms) {
        s->last_disc_ms = now_ms;
        disc_submit(s);
    }
}

void hc_store_reconfigure(struct hc_store *s, const struct hc_store_config *cfg)
{
    s->cfg.capacity_bytes = cfg->capacity_bytes;
    s->cfg.min_free_ratio = cfg->min_free_ratio;
    s->cfg.seal_interval_ms = cfg->seal_interval_ms;
    s->cfg.discovery_interval_ms = cfg->discovery_interval_ms;
    s->cfg.dedupe = cfg->dedupe;
    s->cfg.coalesce_reads = cfg->coalesce_reads;
    s->cfg.enable_compression = cfg->enable_compression;
    s->cfg.compression_level = cfg->compression_level;
    s->cfg.read_linger_ms = cfg->read_linger_ms;
    s->cfg.read_linger_bytes = cfg->read_linger_bytes;
    if (!s->cfg.coalesce_reads || !s->cfg.read_linger_ms)
        linger_drop(s, -1, -1);
    while (s->lhead && s->st->linger_bytes > s->cfg.read_linger_bytes)
        linger_unlink(s, s->lhead);
}

bool hc_store_quiesce(struct hc_store *s)
{
    s->stopping = true;
    rd_later_run(s, true);
    return s->inflight == 0;
}

/* ---- open and close ------------------------------------------------------ */

/* Reads this node's unsealed segment fd record by record from offset 0.
 * A record whose header is good but whose payload fails its CRC (e.g. a client
 * changed its slot while the set was written) is counted in corrupt_records,
 * left out and stepped over: its header gives its size. The scan stops at the
 * first bad header (magic, version, lengths, header CRC), a record running
 * past the end of the file, or a short read; nothing after that point can be
 * located. Fills seg->recs. Returns 0 or -errno (I/O). */
static int scan_segment(struct hc_store *s, struct seg *seg, int fd, uint64_t size)
{
    unsigned char *hdr = malloc(HC_STORE_ALIGN);
    void *buf = NULL;
    size_t bufcap = 0;
    uint64_t off = 0;
    int rc = 0;

    if (!hdr)
        return -ENOMEM;
    while (off + HC_STORE_ALIGN <= size) {
        struct hdr_view v;
        rc = pread_all(fd, hdr, HC_STORE_ALIGN, off);
        if (rc < 0)
            break;
        if (hdr_check(hdr, &v) < 0 || off + rec_size(v.len) > size)
            break;
        if (v.len > bufcap) {
            void *n = realloc(buf, v.len);
            if (!n) {
                rc = -ENOMEM;
                break;
            }
            buf = n;
            bufcap = v.len;
        }
        rc = pread_all(fd, buf, v.len, off + HC_STORE_ALIGN);
        if (rc < 0)
            break;
        if (hc_crc32c(0, buf, v.len) != v.payload_crc) {
            s->st->corrupt_records++;
            hc_log(HC_LOG_WARN,
                   "store: segment %016" PRIx64 ": bad payload at byte %" PRIu64 ", skipped",
                   seg->seq, off);
            off += rec_size(v.len);
            continue;
        }
        int ns = ns_intern(s, v.ns, v.nslen);
        if (ns < 0) { /* too many namespaces: the record cannot be indexed */
            off += rec_size(v.len);
            continue;
        }
        if (seg->nrecs == seg->caprecs) {
            size_t ncap = seg->caprecs ? seg->caprecs * 2 : 64;
            struct seg_rec *n = realloc(seg->recs, ncap * sizeof(*n));
            if (!n) {
                rc = -ENOMEM;
                break;
            }
            seg->recs = n;
            seg->caprecs = ncap;
        }
        seg->recs[seg->nrecs++] =
            (struct seg_rec){.h = hc_index_hash(v.ns, v.nslen, v.key, v.klen),
                             .off = off,
                             .len = (uint32_t)v.orig,
                             .ns = (uint16_t)ns,
                             .sblocks = v.zstd ? (uint16_t)(round_up(v.len) / HC_STORE_ALIGN) : 0};
        off += rec_size(v.len);
    }
    if (rc == -ENODATA)
        rc = 0; /* a short file is a torn tail */
    if (rc == 0 && off < size)
        hc_log(HC_LOG_WARN,
               "store: segment %016" PRIx64 ": %zu good records, stopped at byte %" PRIu64
               " of %" PRIu64 " (bad header or torn tail)",
               seg->seq, seg->nrecs, off, size);
    seg->size = off;
    free(hdr);
    free(buf);
    return rc;
}

static int seq_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Loads this node's segments: sealed ones from their .idx, the others by a
 * scan, after which they are sealed. Blocking. Returns 0 or -errno. */
static int load_local(struct hc_store *s, char *err, size_t errlen)
{
    DIR *dh = opendir(s->dir);
    struct dirent *de;
    uint64_t *segs = NULL, *idxs = NULL, max = 0;
    size_t nseg = 0, nidx = 0, cap = 0, icap = 0;
    int rc = 0;

    if (!dh) {
        rc = -errno;
        snprintf(err, errlen, "%s: %s", s->dir, strerror(-rc));
        return rc;
    }
    while ((de = readdir(dh))) {
        const char *n = de->d_name;
        size_t l = strlen(n);
        uint64_t seq;
        if (l > 4 && !strcmp(n + l - 4, ".tmp")) {
            if (unlinkat(dirfd(dh), n, 0) < 0)
                hc_log(HC_LOG_WARN, "store: removing %s/%s: %s", s->dir, n, strerror(errno));
            continue;
        }
        bool is_seg = parse_seq_name(n, "seg", &seq);
        if (!is_seg && !parse_seq_name(n, "idx", &seq))
            continue;
        uint64_t **arr = is_seg ? &segs : &idxs;
        size_t *cnt = is_seg ? &nseg : &nidx, *c = is_seg ? &cap : &icap;
        if (*cnt == *c) {
            size_t ncap = *c ? *c * 2 : 64;
            uint64_t *na = realloc(*arr, ncap * sizeof(*na));
            if (!na) {
                rc = -ENOMEM;
                goto out;
            }
            *arr = na;
            *c = ncap;
        }
        (*arr)[(*cnt)++] = seq;
        if (seq > max)
            max = seq;
    }
    /* Never reuse a seq, even when every segment is gone (evicted, removed):
     * other nodes that knew (node, seq) would never load the new .idx. So
     * start past the wall clock in microseconds too (the scale of seconds <<
     * 20, without its same-second restarts): a past run would have had to
     * create more than one segment per microsecond of its life to get there.
     * The highest seq found and the tombstones (whose clear point must stay
     * behind every new record) cover a clock that went back. 16 hex digits
     * last for 500,000 years. */
    uint64_t clock_seq = realtime_ns() / 1000;
    s->next_seq = max + 1 > clock_seq ? max + 1 : clock_seq;
    for (uint32_t i = 0; i < s->nns; i++)
        if (s->ns[i].tomb && s->ns[i].tomb_seq >= s->next_seq)
            s->next_seq = s->ns[i].tomb_seq + 1;
    if (nseg)
        qsort(segs, nseg, sizeof(*segs), seq_cmp);
    if (nidx)
        qsort(idxs, nidx, sizeof(*idxs), seq_cmp);

    /* An .idx without its .seg is left over from an eviction. */
    for (size_t i = 0; i < nidx; i++) {
        if (!nseg || !bsearch(&idxs[i], segs, nseg, sizeof(*segs), seq_cmp)) {
            struct seg t = {.node = 0, .seq = idxs[i]};
            char p[PATH_MAX];
            seg_path(s, &t, "idx", p, sizeof(p));
            unlink(p);
        }
    }

    for (size_t i = 0; i < nseg; i++) {
        struct seg tmpl = {.node = 0, .seq = segs[i]};
        char spath[PATH_MAX], ipath[PATH_MAX];
        struct idx_data d;
        struct stat sb;
        seg_path(s, &tmpl, "seg", spath, sizeof(spath));
        seg_path(s, &tmpl, "idx", ipath, sizeof(ipath));
        if (stat(spath, &sb) < 0) {
            rc = -errno;
            snprintf(err, errlen, "%s: %s", spath, strerror(-rc));
            goto out;
        }
        if (nidx && bsearch(&segs[i], idxs, nidx, sizeof(*idxs), seq_cmp)) {
            int lrc = idx_load(ipath, segs[i], &d);
            if (lrc == 0 && d.seg_bytes <= (uint64_t)sb.st_size) {
                struct seg *seg = seg_new(s, 0, segs[i], true, SEG_SEALED);
                if (!seg) {
                    idx_data_free(&d);
                    rc = -ENOMEM;
                    goto out;
                }
                seg->size = (uint64_t)sb.st_size;
                idx_merge(s, seg, &d);
                idx_data_free(&d);
                local_bytes_set(s, s->local_bytes + seg->size);
                continue;
            }
            if (lrc == 0)
                idx_data_free(&d);
            hc_log(HC_LOG_WARN, "store: %s is damaged (%s); scanning the segment", ipath,
                   strerror(lrc < 0 ? -lrc : EBADMSG));
            unlink(ipath);
        }

        /* Unsealed: scan, index the good records, seal. */
        struct seg *seg = seg_new(s, 0, segs[i], true, SEG_CLOSING);
        int fd = open(spath, O_RDONLY | O_CLOEXEC);
        if (!seg || fd < 0) {
            rc = !seg ? -ENOMEM : -errno;
            snprintf(err, errlen, "%s: %s", spath, strerror(-rc));
            if (fd >= 0)
                close(fd);
            goto out;
        }
        seg->fd = fd; /* for the fdatasync of seal_sync */
        s->nfds++;
        rc = scan_segment(s, seg, fd, (uint64_t)sb.st_size);
        if (rc < 0) {
            snprintf(err, errlen, "scanning %s: %s", spath, strerror(-rc));
            goto out;
        }
        if (seg->nrecs == 0) {
            unlink(spath);
            seg->state = SEG_DEAD;
            s->st->segments--;
            seg_maybe_free(s, seg);
            continue;
        }
        for (size_t r = 0; r < seg->nrecs; r++) {
            const struct seg_rec *x = &seg->recs[r];
            if (!tombstoned(s, x->ns, seg->seq, x->off))
                index_put(s, seg, x->h, x->off, x->len, x->ns, x->sblocks);
        }
        int src = seal_sync(s, seg);
        if (src < 0)
            hc_log(HC_LOG_ERR, "store: sealing %s: %s", spath, strerror(-src));
        seg_close_fd(s, seg);
        seg->state = SEG_SEALED;
        seg->size = (uint64_t)sb.st_size;
        local_bytes_set(s, s->local_bytes + seg->size);
    }
out:
    closedir(dh);
    free(segs);
    free(idxs);
    return rc;
}

static int mkdir_one(const char *path, char *err, size_t errlen)
{
    if (mkdir(path, 0755) < 0 && errno != EEXIST) {
        int rc = -errno;
        snprintf(err, errlen, "creating %s: %s", path, strerror(-rc));
        return rc;
    }
    return 0;
}

int hc_store_open(struct hc_store **out, const struct hc_store_config *cfg, struct hc_io_pool *io,
                  struct hc_stats *stats, char *err, size_t errlen)
{
    struct hc_store *s;
    struct stat sb;
    int rc;

    if (!out || !cfg || !io || !stats || !cfg->mount_point || !cfg->root_dir || !cfg->node_id) {
        snprintf(err, errlen, "store: missing argument");
        return -EINVAL;
    }
    if (!valid_node_name(cfg->node_id, strlen(cfg->node_id))) {
        snprintf(err, errlen, "node_id '%s' must be 1 to 64 characters of [A-Za-z0-9_.-]",
                 cfg->node_id);
        return -EINVAL;
    }
    if (!valid_node_name(cfg->root_dir, strlen(cfg->root_dir))) {
        snprintf(err, errlen, "root_dir '%s' must be 1 to 64 characters of [A-Za-z0-9_.-]",
                 cfg->root_dir);
        return -EINVAL;
    }
    if (cfg->segment_size < 2 * HC_STORE_ALIGN) {
        snprintf(err, errlen, "segment_size must be at least %u bytes", 2 * HC_STORE_ALIGN);
        return -EINVAL;
    }
    if (!(cfg->min_free_ratio >= 0 && cfg->min_free_ratio < 1)) {
        snprintf(err, errlen, "min_free_ratio must be from 0 to 1");
        return -EINVAL;
    }
    if (stat(cfg->mount_point, &sb) < 0) {
        rc = -errno;
        snprintf(err, errlen, "mount_point %s: %s", cfg->mount_point, strerror(-rc));
        return rc;
    }
    if (!S_ISDIR(sb.st_mode)) {
        snprintf(err, errlen, "mount_point %s: not a directory", cfg->mount_point);
        return -ENOTDIR;
    }

    s = calloc(1, sizeof(*s));
    if (!s)
        goto nomem;
    s->cfg = *cfg;
    s->cfg.segment_size &= ~(uint64_t)(HC_STORE_ALIGN - 1);
    s->cfg.mount_point = s->cfg.root_dir = s->cfg.node_id = NULL; /* not kept */
    s->io = io;
    s->st = stats;
    s->epoch = realtime_ns();
    s->next_seq = 1;
    s->ns_map_cap = 64;
    s->ns_map = calloc(s->ns_map_cap, sizeof(*s->ns_map));
    if (!s->ns_map || hc_index_init(&s->ix) < 0)
        goto nomem;
    if (ptab_init(&s->writing) < 0 || ptab_init(&s->reading) < 0 || ptab_init(&s->lingering) < 0)
        goto nomem;
    if (asprintf(&s->root, "%s/%s", cfg->mount_point, cfg->root_dir) < 0) {
        s->root = NULL;
        goto nomem;
    }
    s->dir = path_join(s->root, cfg->node_id);
    if (!s->dir || node_intern(s, cfg->node_id) != 0)
        goto nomem;

    if ((rc = mkdir_one(s->root, err, errlen)) < 0 || (rc = mkdir_one(s->dir, err, errlen)) < 0)
        goto err;
    if ((rc = tomb_load(s, err, errlen)) < 0)
        goto err;
    if ((rc = load_local(s, err, errlen)) < 0)
        goto err;

    /* Other nodes' sealed segments, the same walk as the periodic one. */
    struct disc *d = disc_new(s);
    if (!d)
        goto nomem;
    disc_before(&d->req);
    disc_merge(s, d);
    disc_free(d);

    hc_log(HC_LOG_INFO,
           "store: %s: %" PRIu64 " local pages, %" PRIu64 " remote pages, %" PRIu64
           " segments, %" PRIu64 " bytes on disk",
           s->dir, s->st->local_pages, s->st->remote_pages, s->st->segments, s->local_bytes);
    s->opened = true;
    *out = s;
    return 0;

nomem:
    rc = -ENOMEM;
    snprintf(err, errlen, "store: out of memory");
err:
    hc_store_close(s);
    return rc;
}

void hc_store_close(struct hc_store *s)
{
    if (!s)
        return;
    for (uint32_t i = 0; i < s->segs_cap; i++) {
        struct seg *seg = s->segs[i];
        if (!seg)
            continue;
        if (s->opened && seg->local && (seg->state == SEG_OPEN || seg->state == SEG_CLOSING) &&
            !seg->pend_head) {
            if (seg->nrecs == 0 && seg->size == 0) {
                char p[PATH_MAX];
                seg_path(s, seg, "seg", p, sizeof(p));
                unlink(p); /* opened, never written */
            } else {
                int rc = seal_sync(s, seg);
                if (rc < 0)
                    hc_log(HC_LOG_ERR, "store: sealing segment %016" PRIx64 ": %s", seg->seq,
                           strerror(-rc));
            }
        }
        if (seg->fd >= 0)
            close(seg->fd);
        free(seg->recs);
        free(seg);
    }
    free(s->segs);
    for (struct deferred *d = s->dhead, *next; d; d = next) {
        next = d->next;
        free(d);
    }
    for (uint32_t i = 0; i < s->nns; i++)
        free(s->ns[i].name);
    free(s->ns);
    free(s->ns_map);
    for (uint32_t i = 0; i < s->nnodes; i++)
        free(s->nodes[i]);
    free(s->nodes);
    while (s->lhead) /* copies are over once quiesced */
        linger_unlink(s, s->lhead);
    free(s->writing.b);
    free(s->reading.b);
    free(s->lingering.b);
    hc_index_free(&s->ix);
    free(s->root);
    free(s->dir);
    free(s);
}
