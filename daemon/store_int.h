/* Store internals: the structures the parts of the store share and the
 * functions one part calls in another (prefix hc__). Private to the store;
 * store.h is the contract the rest of the daemon sees.
 *
 * The parts, one file each:
 *   store.c      open, close, tick, reconfigure, quiesce, every hc_store_*
 *                entry point (argument checks), deferred callbacks
 *   files.c      names and paths on the mount, blocking whole-file helpers
 *   record.c     record header: encode and check (pure)
 *   idxfile.c    .idx files: encode, parse, load, merge into the index
 *   nsmap.c      namespace and node name tables
 *   ptab.c       tables of the writes and reads in flight and of lingering pages
 *   tombstone.c  clear and its tombstones (cleared.json)
 *   segment.c    segment lifecycle: create, fd cache and opens, ordered
 *                commit, sealing, drop and unlink
 *   write.c      the set path: dedupe, compression, placement
 *   compress.c   zstd, one context of each kind per thread
 *   read.c       the get path: storage reads, their checks and retries
 *   coalesce.c   joins of a read in flight, read linger, copies for joiners
 *   discovery.c  other nodes' sealed segments
 *   evict.c      index entries and their accounting; capacity and free-space
 *                eviction
 *   recover.c    restart: this node's segments from their .idx or a scan
 *
 * Threads: everything in struct hc_store, struct seg and the tables belongs to
 * the loop thread, which alone changes it. An I/O thread works on the request
 * it was handed (struct wrec, rd, join and the *_task structs) and the buffers
 * that request points to; every function that runs there says so above it.
 * Two places read more than their request, each with its reason in the code:
 *   - hc__open_file (files.c; a segment open on an I/O thread) reads s->root
 *     and s->cfg.use_direct_io, both set at open and never written after
 *     (hc_store_reconfigure leaves use_direct_io alone), and sets
 *     s->direct_warned with an atomic exchange;
 *   - a copy for a joiner (coalesce.c, join_before) reads the leader's read or
 *     the lingering page it copies from, which the loop thread keeps alive and
 *     unchanged until the copy's done has run (rd.copies, linger.refs).
 *
 * The loop thread never waits on the mount while serving: every create,
 * open, write, fsync, rename, unlink, close, readdir and statvfs runs in a
 * task on the I/O pool (hc__task_submit; its before on an I/O thread, its
 * done back on the loop thread), and what waits for one (a set for a new
 * segment, a clear for cleared.json, a read for an open) is answered from
 * its done. The exceptions: hc_store_open (recover.c, hc__tomb_load, the
 * first discovery, hc__seal_sync of leftovers) runs at start-up before the
 * server listens, and hc_store_close (hc__seal_sync) at shutdown once
 * quiesced; both stay synchronous. hc__fd_close closes on the loop thread
 * only when there is no memory to hand the fd over. */
#ifndef HC_STORE_INT_H
#define HC_STORE_INT_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>

#include "index.h"
#include "io.h"
#include "key.h" /* HC_MAX_KEY, HC_MAX_NS */
#include "guard.h"
#include "store.h"

#define NS_LIMIT 65535u /* namespaces a store interns */
/* Index entry flags (hc_index_ent.flags, the caller's bits): a compressed
 * record's stored blocks, and the page's reads since it entered the index,
 * for reinsertion at eviction (evict.c, hc__note_read). */
/* stored blocks of a compressed record: a page compressed to more than
 * 32 MiB is stored raw (13 bits; before that, 128 MiB: such a record of an
 * older daemon fails its checks and is a miss) */
#define ZBLOCKS_MAX 0x1fffu
#define IDX_SBLOCKS ZBLOCKS_MAX
#define IDX_REINSERT 0x2000u /* read again, or late in its segment's life */
#define IDX_READ1 0x4000u    /* read at least once */
#define container_of(p, type, member) ((type *)((char *)(p)-offsetof(type, member)))

/* ---- sizes, clocks, little-endian fields (any thread) ------------------- */

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

static inline uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

#include "keysfile.h"
#include "le.h" /* put16..get64: integers on disk */

static inline uint64_t realtime_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
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
    bool opening; /* an open task is in flight */
    /* a read through fd met an I/O error: JuiceFS fails every later read
     * through that handle, so reads go through opens of their own
     * (read.c: rd_fresh_read) until fd is closed (hc__seg_close_fd clears
     * it): by the first read to end while the segment is sealed and no other
     * read holds it, or by hc__fd_trim */
    bool fd_failed;
    bool unlink_wanted; /* evicted while an open was in flight */
    bool unlinking;     /* the unlink task is in flight */
    struct rd *waiters; /* reads waiting for the open */
    uint32_t refs;      /* reads in flight */
    uint64_t size;      /* bytes: allocated tail (local) or from the .idx */
    uint64_t pages;     /* index entries pointing here */
    uint64_t last_use_ms;
    /* local: s->wclock when it stopped taking appends (a recovered segment:
     * as if the segments found at the start had been written in seq order,
     * the last just before the start); a read's lateness is measured from it
     * (evict.c) */
    uint64_t closed_wclock;
    /* remote_index "filter" (fleet.c): pages of this remote segment held in
     * its node's filters rather than in the index */
    uint64_t filtered;
    /* tail indexes (tail.c). Local open segments: records published in the
     * last tail index, its version and a publish in flight. Remote: known
     * from the node's tail index of that version (not sealed yet: its records
     * may grow) */
    size_t pub_nrecs;
    bool publishing;
    /* the tick that first saw records not in a tail index yet (0: none), and
     * the JuiceFS chunk the last publish flushed in with how many publishes
     * flushed there (tail.c: a slice each) */
    uint64_t unpub_ms;
    uint64_t pub_chunk;
    unsigned pub_in_chunk;
    bool tail;
    uint32_t tail_ver;
    uint64_t opened_ms;
    bool opened_known;
    /* local unsealed segments only */
    struct wrec *pend_head, *pend_tail;
    /* The segment's one writer (write.c): records are written in offset
     * order, one gathered write in flight at a time (wb), from unsent, the
     * first pending record not handed to a write yet. backlog: bytes placed
     * whose write is not over. */
    struct wrec *unsent;
    struct wbatch *wb;
    bool wb_busy;
    uint64_t backlog;
    int werr;          /* a write of it failed: what is unsent fails unwritten */
    int cascade;       /* error of a failed record: the ones behind it fail too */
    uint64_t good_end; /* end of the last record committed whole (local) */
    struct seg_rec *recs;
    size_t nrecs, caprecs;
};

/* A read of another node's page, for its owner (hints.c). */
struct rhint {
    uint32_t node; /* index in s->nodes */
    uint64_t seq;
    struct hc_hash h;
};

/* A hint file this run wrote (for the node of index owner, numbered n),
 * removed after a while (hints.c). */
struct hint_made {
    uint32_t owner;
    uint64_t n;
    uint64_t at_ms;
};

/* A hint file of another node for this one, taken (read once, applied or
 * refused) and still listed there (hints.c, discovery.c). */
struct hint_seen {
    char node[HC_MAX_NODE + 1];
    uint64_t n;
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

/* A record write. While its compression task runs (req, from submit to
 * done) wrec_compress reads pb and len and sets zbuf, zlen and fault on an
 * I/O thread; while the gathered write that holds it is in flight (struct
 * wbatch), wb_before copies pb into bounce (if any) and sets hdr's CRCs and
 * copied from
 * the bytes to write, or poisons the record (fault, bounce, the batch's iov
 * entry of its payload) when buf vanished. Meanwhile the loop thread changes only fields these do
 * not read: waiters, the list links (next, zprev, znext, pn), in_tab and
 * cleared. */
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
    struct hc_pbuf pb; /* the setter's bytes (len of them) */
    void *bounce;      /* O_DIRECT copy of an unaligned payload */
    unsigned char *hdr;
    bool done;
    int status;
    struct waiter *waiters, *wtail; /* the setter, then dedupe joiners */
    /* compression: the set asked for it; zbuf (aligned, zero-padded to the
     * block) holds zlen bytes of zstd frame once the task kept it */
    bool compress;
    bool cleared; /* its namespace was cleared while it was compressed */
    /* its setter's buffer vanished (a truncated host pool), found by
     * wrec_compress or the CRC pass: never indexed, fails with EFAULT (the
     * sets deduplicated against it with EAGAIN: their buffers were fine) */
    bool fault;
    bool copied;     /* bounce holds the payload and hdr its CRC (wrec_crc) */
    uint32_t stream; /* the setter's stream (struct hc_store_opts), 0 none */
    void *zbuf;
    uint64_t zlen;
    struct wrec *zprev, *znext; /* s->compressing while the task runs */
};

struct join;

/* A storage read (the leader of a coalesced group). While its req is in
 * flight, rd_before_retry and rd_after (I/O thread) read off, len, sblocks,
 * the names, the buffers and want_own and set crc, stored, slot_checked,
 * crc_left, own, buf_err
 * and the bytes in buf and plain; the loop thread meanwhile only adds joins,
 * sets want_own, changes pn and in_tab, and links it into or out of
 * hc_store.aq (aq_prev, aq_next, in_aq; aq_bytes, seg and off read there,
 * req.waiting through hc_io_waiting). */
struct rd {
    struct hc_io_req req;
    struct hc_store *s;
    struct pnode pn;
    bool in_tab;
    struct rd *wnext; /* the segment's waiters for an open */
    struct rd *lnext; /* reads waiting to be tried again (hc_store->rd_later) */
    /* in hc_store->aq (a read waiting for room in the I/O pool, to be read
     * ahead when the budget allows): its neighbours, and the bytes its
     * request reads */
    struct rd *aq_prev, *aq_next;
    bool in_aq;
    uint64_t aq_bytes;
    struct seg *seg;
    uint64_t off;
    uint32_t len;      /* original length */
    uint32_t sblocks;  /* compressed record: stored blocks, read into bounce */
    uint32_t stored;   /* payload bytes on storage, set by rd_after */
    uint32_t readers;  /* the getter's readers per page (linger) */
    struct hc_pbuf pb; /* the getter's slot */
    void *bounce;      /* daemon-owned: O_DIRECT, linger, or the compressed bytes */
    void *plain;       /* compressed record: the decompressed page */
    unsigned char *hdr;
    hc_store_cb cb;
    void *data;
    struct join *joins;
    unsigned copies;      /* joiner copy tasks in flight */
    unsigned retries;     /* re-reads after a short or failed read (RD_RETRIES) */
    unsigned eio_retries; /* later re-reads after an I/O error (RD_EIO_RETRIES) */
    bool own_open;        /* read through an open of its own (rd_fresh_read) */
    uint64_t retry_at_ms; /* when the next later re-read is due */
    uint32_t crc;         /* payload CRC32C, set by rd_after */
    /* set by rd_after: the payload check ran over buf, the getter's slot,
     * which its client may change under it (not over the file's bytes as
     * the pool copied them: hc_io_req.crc_done); a failed check there is
     * read again into a daemon-owned buffer before the record counts as bad */
    bool slot_checked;
    /* set by rd_after: the payload check was left to the getter's client
     * (pb.check), crc is what it must find (checked by rd_after as well when
     * the pool's copy computed it) */
    bool crc_left;
    /* A get joined while the read went straight into the getter's slot
     * (want_own, accessed atomically: set by the loop thread, read by
     * rd_after): rd_after reads the page once more, from the file, into own,
     * a daemon-owned buffer that the joiners copy from, never the slot. */
    int want_own;
    void *own;
    /* set by rd_after: the copy of the good page into buf met a vanished page
     * (a client truncated the host pool buf lies in); the getter gets this
     * (-EFAULT), the joiners their copy from the daemon's buffer */
    int buf_err;
    /* a reinsertion's read (evict.c): the record's key is taken from its
     * header, not checked against names; no client counters. rseq: its
     * segment's seq (the segment may be freed before the answer) */
    bool reinsert;
    uint64_t rseq;
    /* a read ahead (hc_store_ahead): this many bytes of the record read into
     * the page cache (hc_io_req.sink); no getter, nothing answered */
    uint64_t ahead;
    uint16_t nslen, klen;
    char names[HC_MAX_NS + HC_MAX_KEY]; /* namespace then key, for the check */
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
    struct hc_pbuf pb; /* the getter's slot */
    uint64_t cap;
    hc_store_cb cb;
    void *data;
    int ns;
    uint16_t klen;
    char key[HC_MAX_KEY];
};

/* The store. Loop thread only, except three fields read by hc__open_file on
 * I/O threads: root and cfg.use_direct_io, never written after open (the
 * other fields of cfg change at a reload, use_direct_io does not), and
 * direct_warned, accessed only atomically. */
/* An .idx file of another node is read up to this size (after its header
 * was found to fit its size and its segment, idxfile.c): larger is refused
 * unread (hostile, or from a deployment whose segments no daemon here
 * indexes in bounded memory). */
#define HC_IDX_MAX_BYTES (256ull << 20)
/* Bytes of new .idx files one discovery pass reads at most; the rest waits
 * for the next pass. */
#define HC_IDX_PASS_BYTES (512ull << 20)

/* A refused .idx: whose, and the size and mtime it had then. */
struct idx_bad {
    char node[HC_MAX_NODE + 1];
    uint64_t seq;
    uint64_t size;
    int64_t mtime_ns;
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
    char *root; /* <mount>/<root_dir>; read on I/O threads */
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
    /* remote_index "filter" (fleet.c): per node (indexed like nodes), its
     * filters and keys file */
    struct node_filt *nf;
    size_t nnf;
    size_t nf_hint; /* the node whose filter said "maybe" last */

    struct seg **segs;
    uint32_t segs_cap;
    /* the segments taking appends, at most cfg.open_segments */
    struct seg *opens[HC_STORE_OPEN_MAX];
    unsigned nopen;
    /* the open segment each stream's sets keep to (by seq, and when it last
     * took one: write.c open_pick), indexed by stream % STREAM_STICK (a
     * collision only costs locality) */
#define STREAM_STICK 64
    struct {
        uint32_t stream;
        uint64_t seq;
        uint64_t used_ms;
    } stick[STREAM_STICK];
    uint64_t next_seq;
    uint64_t local_bytes;
    /* bytes appended to local segments, ever (write.c), starting from the
     * local bytes found at the start: eviction's clock (evict.c) */
    uint64_t wclock;

    struct ptab writing, reading, lingering;
    struct linger *lhead, *ltail; /* lingering pages, oldest first */
    struct wrec *compressing;     /* sets whose compression task runs */

    struct deferred *dhead, *dtail;
    struct hc_io_req dreq;
    bool dreq_busy;

    /* After a write or create found the volume full (ENOSPC, EDQUOT): until
     * then (mono_ms) a set that needs a new segment fails at once, so a full
     * disk does not get a file per refused set. */
    uint64_t nospace_until_ms;
    bool disc_busy, disc_started;
    /* Other nodes' .idx files refused, remembered by (node, seq) with the
     * size and mtime they had: discovery skips them until they change. */
    struct idx_bad *idx_bad;
    size_t nidx_bad;
    uint64_t last_disc_ms;
    uint64_t last_tail_ms; /* the last tail publish pass (tail.c) */
    /* keys.c: sealed_gen counts changes of this node's sealed segments (a
     * seal, an eviction); keys_gen is the count the last keys file was made
     * at; keys_last_ms the last try; keys_busy a publish in flight */
    uint64_t sealed_gen, keys_gen, keys_last_ms;
    bool keys_busy;
    uint64_t now_ms;
    bool have_now;
    uint64_t last_statvfs_ms;
    bool statvfs_busy;            /* a free-space statvfs task is in flight */
    uint64_t reinsert_bytes;      /* bytes of reinsertion reads in flight (evict.c) */
    uint64_t ahead_bytes;         /* bytes of reads ahead in flight (hc__rd_ahead) */
    struct rd *aq_head, *aq_tail; /* reads waiting for room, oldest first (struct rd.in_aq) */
    bool aq_running;              /* in aq_run (read.c) */
    unsigned unlinks;
    bool unlink_retry; /* a dropped segment's unlink waits for memory */

    /* sets waiting for the next segment, in arrival order (linked by next),
     * while its create task is in flight (creating) */
    struct wrec *place_head, *place_tail;
    bool creating;

    /* fds to close on an I/O thread, handed over one batch at a time */
    int *closing;
    size_t nclosing, capclosing;
    bool closing_busy;

    /* remote-read hints (hints.c): waiting to go out, the flush in flight,
     * the files written (a ring, oldest at hint_made_head) for removal, and
     * the other nodes' hint files taken that were listed at the last walk
     * (sorted by node, then n) */
    struct rhint *hints;
    size_t nhints, caphints;
    bool hint_busy;
    uint64_t last_hint_ms;
    uint64_t hint_seq;
    struct hint_made *hint_made;
    size_t hint_made_head, nhint_files;
    struct hint_seen *hint_seen;
    size_t nhint_seen;

    /* clears waiting for the next write of cleared.json (tomb_busy: one in
     * flight) */
    struct deferred *tomb_wait;
    bool tomb_busy;

    unsigned inflight; /* requests submitted whose done has not run */
    unsigned nfds;
    bool stopping;
    bool opened;       /* open() finished: close() may seal */
    int direct_warned; /* atomic (I/O threads): set by the first O_DIRECT fallback */
};

struct hdr_view {
    uint64_t len;  /* payload bytes on storage */
    uint64_t orig; /* page length (== len unless compressed) */
    bool zstd;
    uint32_t payload_crc;
    const char *ns, *key;
    uint16_t nslen, klen;
};

/* A parsed .idx: the raw buffer plus views into it. */
struct idx_data {
    unsigned char *buf;
    uint64_t seq, seg_bytes;
    uint32_t nns, nent;
    const unsigned char **ns_name; /* each: u16 length then bytes */
    const unsigned char *ents;
};

/* ---- files.c: names and paths, blocking file helpers ---------------------- */

bool hc__parse_seq_name(const char *name, const char *ext, uint64_t *seq);
bool hc__parse_tail_name(const char *name, uint64_t *seq, uint32_t *ver);
bool hc__parse_hex16(const char *p, uint64_t *v);
char *hc__path_join(const char *a, const char *b);
void hc__seg_path(const struct hc_store *s, const struct seg *seg, const char *ext, char *buf,
                  size_t size);
int hc__open_regular(const char *path, int flags, mode_t mode);
int hc__quarantine(struct hc_store *s, const char *path, const char *why);
int hc__open_file(struct hc_store *s, const char *path, int flags, mode_t mode, bool *direct);
int hc__pread_all(int fd, void *buf, size_t len, uint64_t off);
int hc__grow(void *arrp, size_t n, size_t *cap, size_t size, size_t first);
int hc__write_file_atomic(const char *tmp, const char *path, const void *buf, size_t len);

/* ---- record.c: record headers --------------------------------------------- */

void hc__hdr_fill(unsigned char *h, const char *ns, uint16_t nslen, const char *key, size_t klen,
                  uint64_t len, uint64_t epoch);
void hc__hdr_set_zstd(unsigned char *h, uint64_t stored);
void hc__hdr_finish(unsigned char *h, uint32_t payload_crc);
int hc__hdr_check(const unsigned char *h, struct hdr_view *v);

/* ---- idxfile.c: .idx files ------------------------------------------------ */

void hc__idx_free(struct idx_data *d);
int hc__idx_load(const char *path, uint64_t seq, struct idx_data *d);
int hc__idx_encode_n(const struct hc_store *s, const struct seg *seg, size_t nrecs,
                     uint64_t seg_bytes, unsigned char **out, size_t *outlen);
void hc__tail_publish(struct hc_store *s, uint64_t now_ms);

/* ---- fleet.c: remote_index "filter" ------------------------------------------ */

struct node_filt;
void hc__fleet_merge(struct hc_store *s, struct seg *seg, const struct idx_data *d);
void hc__fleet_drop_seg(struct hc_store *s, struct seg *seg);
bool hc__fleet_maybe(struct hc_store *s, struct hc_hash h);
void hc__fleet_reserve(struct hc_store *s, uint32_t node, uint64_t pages);
void hc__fleet_keys_seen(struct hc_store *s, const char *node_name, uint64_t size,
                         int64_t mtime_ns);
int hc__fleet_locate(struct hc_store *s, int ns, const char *key, size_t klen,
                     const struct hc_pbuf *pb, uint64_t cap, uint32_t readers, hc_store_cb cb,
                     void *data, unsigned how, struct hc_hash h);
void hc__fleet_free(struct hc_store *s);

/* ---- keys.c: this node's keys file ------------------------------------------ */

void hc__keys_publish(struct hc_store *s, uint64_t now_ms);
void hc__tail_path(const struct hc_store *s, const struct seg *seg, uint32_t ver, bool tmp,
                   char *buf, size_t len);
int hc__idx_encode(const struct hc_store *s, const struct seg *seg, unsigned char **out,
                   size_t *outlen);
void hc__idx_merge(struct hc_store *s, struct seg *seg, const struct idx_data *d);

/* ---- nsmap.c: namespaces and nodes ---------------------------------------- */

int hc__ns_find(const struct hc_store *s, const char *name, size_t len);
int hc__ns_intern(struct hc_store *s, const char *name, size_t len);
int hc__node_intern(struct hc_store *s, const char *name);
struct hc_hash hc__page_hash(const struct hc_store *s, int ns, const char *key, size_t klen);

/* ---- ptab.c: pending tables ----------------------------------------------- */

int hc__ptab_init(struct ptab *t);
struct pnode *hc__ptab_find(const struct ptab *t, struct hc_hash h);
void hc__ptab_add(struct ptab *t, struct pnode *n);
void hc__ptab_del(struct ptab *t, struct pnode *n);

/* ---- tombstone.c: clear ----------------------------------------------------- */

bool hc__tombstoned(const struct hc_store *s, uint16_t ns, uint64_t seq, uint64_t off);
int hc__tomb_load(struct hc_store *s, char *err, size_t errlen);
int hc__clear(struct hc_store *s, int ns, hc_store_cb cb, void *data);

/* ---- segment.c: segment lifecycle ----------------------------------------- */

struct seg *hc__seg_new(struct hc_store *s, uint32_t node, uint64_t seq, bool local,
                        enum seg_state state);
void hc__fd_close(struct hc_store *s, int fd);
void hc__seg_close_fd(struct hc_store *s, struct seg *seg);
void hc__unlink_retry(struct hc_store *s);
void hc__seg_maybe_free(struct hc_store *s, struct seg *seg);
void hc__seg_drop(struct hc_store *s, struct seg *seg, bool evict);
void hc__seg_drop_gone(struct hc_store *s, struct seg *seg, bool evict, size_t n);
int hc__seg_open(struct hc_store *s, struct seg *seg);
int hc__seal_sync(struct hc_store *s, struct seg *seg);
void hc__seg_close_appends(struct hc_store *s, struct seg *seg);
int hc__seg_create(struct hc_store *s);
int hc__seg_rec_add(struct seg *seg, const struct seg_rec *r);
void hc__seg_commit(struct hc_store *s, struct seg *seg);
void hc__fd_trim(struct hc_store *s);

/* ---- write.c: the set path ------------------------------------------------ */

int hc__set_start(struct hc_store *s, int ns, const char *key, size_t klen,
                  const struct hc_pbuf *pb, uint64_t len, uint32_t compression, uint32_t stream,
                  hc_store_cb cb, void *data);
void hc__wrec_free(struct wrec *w);
uint16_t hc__wrec_sblocks(const struct wrec *w);
void hc__write_clear_ns(struct hc_store *s, int ns);
void hc__place_waiting(struct hc_store *s, int rc);
struct wbatch *hc__wb_new(void);

/* ---- compress.c: zstd ------------------------------------------------------- */

uint64_t hc__zlimit(uint64_t len);
int hc__zcompress(const void *src, uint64_t len, void **zbuf, uint64_t *zlen);
int hc__zdecompress(void *dst, size_t len, const void *src, size_t slen);

/* ---- read.c: the get path ------------------------------------------------- */

/* hc__get_start's how: GET_JOINABLE, may be served by a lingering page or a
 * read in flight, and be joined; GET_OWNED, read into a daemon-owned buffer
 * (copied into the slot after its check), so that joiners can copy from it. */
#define GET_JOINABLE 1u
#define GET_OWNED 2u
#define GET_LOCATED 4u /* the entry was just found in a keys file (fleet.c): no other look */
int hc__get_start(struct hc_store *s, int ns, const char *key, size_t klen,
                  const struct hc_pbuf *pb, uint64_t cap, uint32_t readers, hc_store_cb cb,
                  void *data, unsigned how);
void hc__client_hit(struct hc_store *s, hc_store_cb cb, void *data, uint64_t len);
void hc__rd_free(struct rd *r);
int hc__waiter_status(const struct wrec *w, const struct waiter *x, int st);
struct rd *hc__rd_new(struct hc_store *s, const struct hc_index_ent *e, const struct hc_pbuf *pb,
                      bool owned);
void hc__rd_submit(struct hc_store *s, struct rd *r);
uint64_t hc__rd_ahead(struct hc_store *s, struct seg *seg, uint64_t off, uint64_t bytes);
void hc__rd_finish(struct hc_store *s, struct rd *r, ssize_t result);
void hc__rd_later_run(struct hc_store *s, bool all);

/* ---- coalesce.c: joins and linger ----------------------------------------- */

int hc__get_coalesced(struct hc_store *s, int ns, const char *key, size_t klen,
                      const struct hc_pbuf *pb, uint64_t cap, hc_store_cb cb, void *data,
                      struct hc_hash h, const struct hc_index_ent *e);
void hc__rd_fanout(struct hc_store *s, struct rd *r);
void hc__rd_regroup(struct hc_store *s, struct rd *r, int st);
void hc__rd_answer(struct hc_store *s, struct rd *r);
void hc__linger_unlink(struct hc_store *s, struct linger *l);
void hc__linger_expire(struct hc_store *s, uint64_t now);
void hc__linger_drop(struct hc_store *s, int64_t seg, int ns);

/* ---- hints.c: remote reads told to the pages' owners ------------------------ */

void hc__hint_add(struct hc_store *s, const struct seg *seg, const struct hc_index_ent *e);
void hc__hints_tick(struct hc_store *s, uint64_t now_ms);
bool hc__hints_name(const char *name, const char *self, uint64_t *n);
ssize_t hc__hints_read_file(const char *path, size_t *budget, uint64_t **out);
void hc__hints_apply(struct hc_store *s, const uint64_t *v, size_t n);
void hc__hints_close(struct hc_store *s);
#define HC_HINT_PASS_BYTES (16u << 20) /* hint files a discovery walk reads at most */
int hc__hint_seen_cmp(const void *a, const void *b);

/* ---- discovery.c: other nodes --------------------------------------------- */

int hc__disc_sync(struct hc_store *s);
void hc__disc_submit(struct hc_store *s);

/* ---- evict.c: accounting and eviction ------------------------------------- */

void hc__index_put(struct hc_store *s, struct seg *seg, struct hc_hash h, uint64_t off,
                   uint32_t len, uint16_t ns, uint16_t sblocks);
void hc__acct_del(struct hc_store *s, struct seg *seg, uint64_t len);
size_t hc__index_drop_seg(struct hc_store *s, struct seg *seg);
size_t hc__index_drop_ns(struct hc_store *s, int ns);
void hc__local_bytes_set(struct hc_store *s, uint64_t v);
void hc__evict_capacity(struct hc_store *s);
void hc__note_read(struct hc_store *s, const struct seg *seg, const struct hc_index_ent *e);
void hc__evict_free_space(struct hc_store *s, uint64_t now_ms);

/* ---- recover.c: restart ----------------------------------------------------- */

int hc__load_local(struct hc_store *s, char *err, size_t errlen);

/* ---- store.c ------------------------------------------------------------------ */

int hc__defer_cb(struct hc_store *s, hc_store_cb cb, void *data, int status, uint64_t len);
void hc__task_submit(struct hc_store *s, struct hc_io_req *req, enum hc_io_prio prio,
                     int (*before)(struct hc_io_req *), void (*done)(struct hc_io_req *),
                     void *data);

#endif
