/* Segment store: pages on the mount as records in log-structured segment
 * files, an in-memory index of this node's and other nodes' pages, write
 * dedupe and read coalescing (DESIGN §4, §5). Part of the storage engine: no
 * libuv or protobuf here; server.c translates requests into these calls.
 *
 * Threads: every function here is called on the loop thread. Every call on
 * the mount (record reads and writes, segment creates and opens, seals,
 * unlinks, closes, cleared.json, statvfs, discovery) runs on the hc_io_pool
 * given at open, except in hc_store_open and hc_store_close (start-up and
 * shutdown): the loop thread never waits on the mount while serving.
 * Callbacks run on the loop thread (from hc_io_pool_drain), never
 * synchronously inside the call that registered them.
 *
 * On the mount: <mount_point>/<root_dir>/<node_id>/ holds this node's
 * segments. A segment is <seq>.seg (16 hex digits); once sealed it has a
 * <seq>.idx beside it, written as <seq>.idx.tmp and renamed. A node never
 * reuses a seq, even after all its segments were removed: a restart starts
 * past both the highest seq found and the wall clock in microseconds, so
 * other nodes always see a new segment as new. Records are aligned to
 * HC_STORE_ALIGN: a header block (magic, version, flags, epoch, namespace,
 * key, payload length, payload CRC32C, header CRC32C) then the payload,
 * padded. A compressed record (flag HC_REC_ZSTD) stores the zstd frame as its
 * payload and the original length after the key; both lengths are covered by
 * the header CRC, the payload CRC covers the stored bytes. Other nodes'
 * directories are read, never written.
 *
 * Read linger: a get from a client with readers > 1 (every TP rank of an MLA
 * model reads the same page, not at the same instant) keeps the verified page
 * in memory after its storage read, so the other readers' gets are served
 * without a second storage read (see struct hc_store_opts). */
#ifndef HC_STORE_H
#define HC_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "guard.h"
#include "io.h"
#include "hicache_defs.h"
#include "stats.h"

#define HC_STORE_ALIGN 4096u
#define HC_STORE_OPEN_MAX 16u /* open segments at most (open_segments) */

struct hc_store_config {
    const char *mount_point;        /* existing directory */
    const char *root_dir;           /* under mount_point, e.g. "hicache" */
    const char *node_id;            /* [A-Za-z0-9_.-]{1,64} */
    uint64_t segment_size;          /* bytes; a segment is sealed once full */
    uint32_t open_segments;         /* segments taking appends at once, 1 ..
                                       HC_STORE_OPEN_MAX; each has one writer */
    uint64_t capacity_bytes;        /* this node's segment bytes; 0 = no limit */
    double min_free_ratio;          /* keep this fraction of the filesystem free (0..1) */
    uint32_t seal_interval_ms;      /* seal a non-empty open segment this old */
    uint32_t discovery_interval_ms; /* scan other nodes' directories this often */
    bool use_direct_io;             /* O_DIRECT on segment files */
    bool dedupe;                    /* sets of stored / in-flight keys cost nothing */
    uint32_t visibility_ms;         /* other nodes see a page within about this long:
                                       open segments' tail indexes published every
                                       quarter of it, discovery at least that often;
                                       0 (the daemon's default): only sealed
                                       segments are visible */
    uint32_t keys_interval_ms;      /* publish this node's keys file at most this often
                                       (keys.c); 0: never */
    bool remote_filter;             /* other nodes' sealed pages held as filters, their
                                       entries looked up in their keys files (fleet.c) */
    bool reinsert;                  /* at capacity eviction, pages read again or late
                                       in their segment's life are written again
                                       (evict.c), within 1.25x the bytes clients
                                       wrote */
    bool coalesce_reads;            /* concurrent gets of a key share one read, and
                                       reads linger for their other readers */
    bool enable_compression;        /* default of sets whose opts say HC_COMPRESSION_DEFAULT */
    uint32_t read_linger_ms;        /* keep a read page this long at most; 0 = never */
    uint64_t read_ahead_bytes;      /* reads ahead into the page cache (hc_store_ahead's,
                                       and of reads waiting for room in the I/O pool),
                                       this many bytes in flight at most; 0: never
                                       (it needs the THREADS engine, no O_DIRECT) */
    uint64_t read_linger_bytes;     /* memory cap of lingering pages; 0 = never */
};

/* Per-client options of a get or set (from the client's hello). */
struct hc_store_opts {
    /* Gets: how many clients read each page this client reads (the TP ranks
     * of an MLA model); 0 or 1: no linger. After the storage read, the page
     * stays in memory until readers - 1 further gets of it were served (by
     * joining the read in flight or from memory), read_linger_ms passed, the
     * read_linger_bytes cap pushed it out (oldest first), or it was evicted
     * or cleared. */
    uint32_t readers;
    /* Sets: HC_COMPRESSION_* (hicache_defs.h). A page is stored compressed only when zstd
     * saves at least ~3% and a 4 KiB block. */
    uint32_t compression;
    /* Sets: the writer's stream (the daemon gives each connection its own),
     * 0 for none. The pages of one stream go to the same open segment while
     * it keeps up with the others, so that a client's pages lie together on
     * storage and its prefetch reads them in runs. */
    uint32_t stream;
};

#define HC_STORE_OPTS_DEFAULT                                                                      \
    ((struct hc_store_opts){.readers = 1, .compression = HC_COMPRESSION_DEFAULT})

struct hc_store;

/* Opens the store: creates the node directory, removes leftover temporary
 * files, loads sealed indexes of this node and others, scans this node's
 * unsealed segments and seals them (a record with a good header but a bad
 * payload is counted in corrupt_records and skipped; the scan of a segment
 * stops at its first bad header or torn tail). Blocking I/O; called once at
 * start. Returns 0 and sets *out, or
 * -errno with a readable reason in err (nothing left behind). */
int hc_store_open(struct hc_store **out, const struct hc_store_config *cfg, struct hc_io_pool *io,
                  struct hc_stats *stats, char *err, size_t errlen);

/* Interns a namespace name (validated by the caller). Returns an id >= 0,
 * -ENOSPC when too many namespaces (65535) exist, or -ENOMEM. */
int hc_store_ns(struct hc_store *s, const char *ns, size_t len);

/* Looks a namespace name up without interning it (no side effects). Every
 * namespace of a page in the index is interned (hc_store_ns, or loading this
 * node's or other nodes' segments), so a name not found has no pages. Returns
 * the id (valid for get, exists and clear), -ENOENT if the name is not known,
 * or -EINVAL (len 0 or over HC_MAX_NS). */
int hc_store_ns_lookup(struct hc_store *s, const char *ns, size_t len);

/* Callback of set and get. status is 0 (stored / hit), -ENOENT (get: miss,
 * including a record that failed its checksum), or another -errno. len is the
 * page length placed in the buffer (get), or the length stored (set). */
typedef void (*hc_store_cb)(void *data, int status, uint64_t len);

/* Stores len bytes at buf under (ns, key). The bytes must stay valid and
 * unchanged until cb runs. A key stored or being written is a dedupe hit: no
 * second write, cb runs with 0 once the first write is whole. The page becomes
 * visible to exists/get only when its record is whole on storage and so are
 * all records before it in the segment (so a restart's scan keeps every
 * acknowledged page). Returns 0 (cb will run), or -errno with nothing changed
 * and cb never called (-EINVAL len 0, -EFBIG len > segment space,
 * -ESHUTDOWN while stopping). */
int hc_store_set(struct hc_store *s, int ns, const char *key, size_t klen, const void *buf,
                 uint64_t len, hc_store_cb cb, void *data);

/* Same, with the client's options (opts NULL: HC_STORE_OPTS_DEFAULT). A page
 * to compress is compressed on an I/O thread before its place in the segment
 * is taken; cb's len is still the original length. Also -EINVAL for an
 * unknown opts->compression. */
int hc_store_set_ex(struct hc_store *s, int ns, const char *key, size_t klen, const void *buf,
                    uint64_t len, const struct hc_store_opts *opts, hc_store_cb cb, void *data);

/* Reads the page (ns, key) into buf (cap bytes). cb gets 0 and the length on a
 * hit, -ENOENT on a miss or a record that fails its checks (counted in
 * corrupt_records; the bytes in buf are then undefined and must not be used),
 * -ENOSPC if the page is longer than cap (buf untouched). Concurrent gets of
 * one key share one storage read. Returns 0 (cb will run) or -errno (cb never
 * called). */
int hc_store_get(struct hc_store *s, int ns, const char *key, size_t klen, void *buf, uint64_t cap,
                 hc_store_cb cb, void *data);

/* Same, with the client's options (opts NULL: HC_STORE_OPTS_DEFAULT). A get
 * served from a lingering page or by joining a read in flight counts in
 * coalesced_reads and bytes_served, not in bytes_read_storage. Compressed
 * pages are decompressed on an I/O thread; their original length is what
 * cap is checked against and what cb gets. */
int hc_store_get_ex(struct hc_store *s, int ns, const char *key, size_t klen, void *buf,
                    uint64_t cap, const struct hc_store_opts *opts, hc_store_cb cb, void *data);

/* hc_store_set_ex and hc_store_get_ex for a page in several pieces of the
 * client's memory (guard.h: struct hc_pbuf), filled in order: the K and V
 * halves of a host pool page. With more than one piece, pb->v must stay
 * valid until cb ran. A get's capacity is the pieces' sum. */
int hc_store_setv(struct hc_store *s, int ns, const char *key, size_t klen,
                  const struct hc_pbuf *pb, const struct hc_store_opts *opts, hc_store_cb cb,
                  void *data);
int hc_store_getv(struct hc_store *s, int ns, const char *key, size_t klen,
                  const struct hc_pbuf *pb, const struct hc_store_opts *opts, hc_store_cb cb,
                  void *data);

/* Answers from the index only. Returns the page length (> 0) if (ns, key) is
 * visible, 0 if not. */
uint64_t hc_store_exists(struct hc_store *s, int ns, const char *key, size_t klen);

/* A hint: the page (ns, key) will be asked for soon (GetRequest.ahead_keys,
 * a client's later pages of a batch). With cfg.read_ahead_bytes, its record is read
 * into the page cache (hc_io_req.sink), in the stream of its segment's other
 * reads, so that when it is asked for it is there, and the file's stream
 * went over it on the way (JuiceFS drops what a stream skipped, and without
 * a local cache downloads it again). Nothing is answered or checked: the
 * get reads and checks the record as always. Passed over: a page not in the
 * index (or only in another node's filter), one being read or lingering or
 * in the page cache already (hc_io_cached), a
 * record over HC_IO_SINK_MAX, or one that would take the bytes being read
 * ahead past cfg.read_ahead_bytes. Returns the bytes queued, 0 for none. */
uint64_t hc_store_ahead(struct hc_store *s, int ns, const char *key, size_t klen);
/* What hc_store_exists answers for a page another node's filter holds
 * (remote_index "filter"): present, its length not known. */
#define HC_STORE_LEN_UNKNOWN UINT64_MAX

/* Drops every page of namespace ns from this node's view, persistently: a
 * restart does not bring this node's records of ns back. Pages of other nodes
 * seen later are picked up again. Sets of ns in flight at the clear still
 * finish and run their callbacks, but their pages stay out of the view and
 * are no dedupe target: a set of the same key after the clear writes again.
 * The drop is at once; cb runs once the tombstones are on the mount, with 0
 * and the number of pages dropped as len, or with -errno (len 0) when they
 * could not be saved: this node then sees the namespace cleared until a
 * restart, which brings its pages back. Returns 0 (cb will run), or -errno
 * with nothing changed and cb never called (-EINVAL, -ENOMEM). */
int hc_store_clear(struct hc_store *s, int ns, hc_store_cb cb, void *data);

/* Periodic work, called on the loop thread every few hundred ms with a
 * monotonic clock in ms: seal the open segment by age, evict for capacity and
 * free space, discover other nodes' sealed segments (I/O on the pool). */
void hc_store_tick(struct hc_store *s, uint64_t now_ms);

/* Tests only: the next n storage reads of records (as their I/O completes)
 * finish with err (a -errno) instead of their result. Loop thread. */
void hc__store_fail_reads(struct hc_store *s, int err, unsigned n);

/* Applies the limits of cfg that can change while running: capacity_bytes,
 * min_free_ratio, seal_interval_ms, discovery_interval_ms, dedupe,
 * coalesce_reads, enable_compression, read_linger_ms and read_linger_bytes (the next tick and the
 * next requests use them). Every other field is ignored: it takes a restart. */
void hc_store_reconfigure(struct hc_store *s, const struct hc_store_config *cfg);

/* Runs work(arg) on an I/O thread as a task (it holds no bytes, so it is
 * taken at once, not behind waiting reads: keep it short), then
 * done(arg, what work returned) on the loop thread; hc_store_quiesce waits
 * for it. For work of the server's that may take a while and must not hold
 * up the loop thread. work touches only what arg points to. Returns 0, or
 * -ESHUTDOWN (stopping) or -ENOMEM: then neither runs. */
int hc_store_background(struct hc_store *s, int (*work)(void *arg), void (*done)(void *arg, int rc),
                        void *arg);

/* Stop taking sets (they fail with -ESHUTDOWN); gets and exists still work.
 * Returns true once nothing the store submitted is in flight; the caller keeps
 * draining the pool and calling this until it does. */
bool hc_store_quiesce(struct hc_store *s);

/* Seals the open segment (blocking I/O) and frees the store. Call after
 * hc_store_quiesce returned true. Accepts NULL. */
void hc_store_close(struct hc_store *s);

/* For tests only (NULL otherwise): called on the I/O thread that
 * checksummed a gathered write of nrecs records, just before the write
 * (daemon/write.c). */
extern void (*hc__wb_test_hook)(unsigned nrecs);

#endif
