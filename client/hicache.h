/* libhicache: client library of hicached.
 *
 * Every function returns 0 (or a count) on success and a negative errno on
 * failure; hc_strerror() names it. A connection (hc_client) may be used from
 * several threads: calls on one connection are serialized internally; open one
 * connection per thread for parallel requests.
 *
 * Page bytes never cross the socket: they are copied between the caller's
 * buffers and the shared region the daemon passed at connect time, or move
 * straight in and out of a host pool the caller registered
 * (hc_pool_register). */
#ifndef HICACHE_H
#define HICACHE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define HC_EXPORT __attribute__((visibility("default")))
#else
#define HC_EXPORT
#endif

/* HC_VERSION, HC_PROTOCOL_VERSION, HC_DEFAULT_SOCKET, HC_MAX_BATCH,
 * HC_MAX_KEY, HC_MAX_NS, HC_MAX_READERS_PER_PAGE, HC_COMPRESSION_* */
#include "hicache_defs.h"

/* XX(errno name, message): the codes this library and the daemon use. */
#define HC_ERRNO_MAP(XX)                                                                           \
    XX(ENOENT, "no such page (miss)")                                                              \
    XX(EINVAL, "invalid argument")                                                                 \
    XX(ENOMEM, "out of memory")                                                                    \
    XX(ENOSPC, "no space: buffer smaller than the page, or storage full")                          \
    XX(EMSGSIZE, "message or page too large")                                                      \
    XX(E2BIG, "too many keys in one batch")                                                        \
    XX(ERANGE, "slot outside the shared region or pool")                                           \
    XX(EFAULT, "page of a host pool gone (the pool was truncated)")                                \
    XX(EAGAIN, "try again (a set it was joined to failed for its own client)")                     \
    XX(EPROTO, "protocol error")                                                                   \
    XX(EBADMSG, "stored record failed its checks")                                                 \
    XX(EIO, "storage I/O error")                                                                   \
    XX(ECONNREFUSED, "daemon not running (connection refused)")                                    \
    XX(ECONNRESET, "connection to the daemon lost")                                                \
    XX(EPIPE, "connection to the daemon closed")                                                   \
    XX(ETIMEDOUT, "daemon did not answer in time")                                                 \
    XX(EACCES, "permission denied")                                                                \
    XX(EPERM, "operation not permitted")                                                           \
    XX(ESHUTDOWN, "daemon is shutting down")                                                       \
    XX(EBUSY, "daemon busy: too many clients or requests")                                         \
    XX(ENOTSUP, "not supported")                                                                   \
    XX(EFBIG, "page larger than the store accepts")                                                \
    XX(ENAMETOOLONG, "name too long")

typedef struct hc_client hc_client;

/* One buffer of a page: a page is the concatenation of its buffers (K and V,
 * or one per layer). */
typedef struct hc_buf {
    void *base;
    size_t len;
} hc_buf;

typedef struct hc_page {
    const char *key; /* NUL-terminated, [A-Za-z0-9_.-]{1,256} */
    const hc_buf *bufs;
    unsigned nbufs;
} hc_page;

typedef struct hc_connect_opts {
    const char *ns;          /* namespace; NULL = "default" */
    uint32_t rank;           /* informational */
    uint64_t page_size_hint; /* bytes; 0 = unknown */
    int timeout_ms;          /* per request; <= 0 = 30000 */
    /* How many clients read each page this one reads (every TP rank of an
     * MLA model reads the same pages, not at the same instant): the daemon
     * keeps a page it read for the others, so each is read from storage
     * once. 0 or 1: none. At most HC_MAX_READERS_PER_PAGE (1024). */
    uint32_t readers_per_page;
    uint32_t compression; /* HC_COMPRESSION_*; anything else: -EINVAL */
} hc_connect_opts;

/* Connects to the daemon at socket_path (NULL = $HICACHED_SOCKET or
 * /run/hicached/hicached.sock), says hello, maps the region. opts may be NULL.
 * Returns 0 and sets *out, or -errno (-ECONNREFUSED / -ENOENT when no daemon
 * listens, -EINVAL bad namespace). */
HC_EXPORT int hc_connect(hc_client **out, const char *socket_path, const hc_connect_opts *opts);

/* Closes the connection and unmaps the region. Accepts NULL. */
HC_EXPORT void hc_close(hc_client *c);

/* Stores n pages (any n: split into requests of at most 128 keys that fit
 * the region). results[i] gets 0 (stored or already there) or -errno for page
 * i. Returns the number of pages stored, or -errno if nothing could be sent
 * (connection lost, bad arguments: then results are all set to that error). */
HC_EXPORT int hc_batch_set(hc_client *c, const hc_page *pages, size_t n, int *results);

/* Reads n pages into their buffers. results[i] gets 0 (hit: the buffers hold
 * exactly the stored bytes), -ENOENT (miss: buffers untouched), -ENOSPC (page
 * longer than the buffers), -EMSGSIZE (page shorter than the buffers: buffers
 * untouched), -EBADMSG (the page failed its check and could not be asked for
 * again) or another -errno. The buffers of a page whose CRC check failed in
 * the copy out of the region (a record bad on storage, a stale view of the
 * file) were written before that verdict: such a page is asked for again with
 * the daemon checking it, and whatever that answers, its buffers hold no
 * meaning unless it is 0. That second request has its own timeout, so a call
 * can take up to twice timeout_ms. Returns the number of hits, or -errno as
 * for hc_batch_set. */
HC_EXPORT int hc_batch_get(hc_client *c, const hc_page *pages, size_t n, int *results);

/* What hc_batch_exists gives for a page that exists with its length not known
 * (a page another node holds in a filter: the daemon's remote_index
 * "filter"). */
#define HC_LEN_UNKNOWN UINT64_MAX

/* Asks which of n keys exist. lengths (may be NULL) gets each page's length,
 * HC_LEN_UNKNOWN if it exists with its length not known, 0 if absent.
 * Returns how many leading keys exist (0..n), or -errno. */
HC_EXPORT int hc_batch_exists(hc_client *c, const char *const *keys, size_t n, uint64_t *lengths);

/* hc_batch_exists for n keys packed in keys[0..len): each key followed by one
 * NUL byte (e.g. "k1\0k2\0"). For callers that hold their keys as one string
 * (the Python binding). The keys are checked by the daemon: an invalid one
 * fails the call with -EINVAL; -EINVAL too when len is 0 for n > 0, the bytes
 * do not end with a NUL, or they hold other than n NULs. */
HC_EXPORT int hc_batch_exists_packed(hc_client *c, const char *keys, size_t len, size_t n,
                                     uint64_t *lengths);

/* Daemon counters as a JSON object (NUL-terminated, free with hc_free).
 * Returns 0 or -errno. */
HC_EXPORT int hc_stats(hc_client *c, char **json);

/* Drops every page of this connection's namespace on this node. */
HC_EXPORT int hc_clear(hc_client *c);

/* Round trip with no work. */
HC_EXPORT int hc_ping(hc_client *c);

/* Registers a host pool: fd is a memfd (or a file in /dev/shm) of at least
 * size bytes that this process maps at base, read-write (SGLang's shm host
 * KV pool). The daemon maps it too; from then on a page whose buffers all
 * lie inside [base, base + size) (at most HC_MAX_PIECES of them) moves
 * straight between the daemon's storage reads and writes and the pool, with
 * no copy through the region.
 * Keep the pool mapped (and at least size bytes) while the connection is
 * open: a page the daemon finds gone fails with -EFAULT. fd may be closed
 * after the call. Returns the pool's id (> 0), or -errno: -EINVAL (not a
 * memfd or tmpfs file, smaller than size), -EACCES (not read-write),
 * -ENOSPC (HC_MAX_POOLS registered). */
HC_EXPORT int hc_pool_register(hc_client *c, int fd, void *base, uint64_t size);

/* Region size and the daemon's node id, as told at connect. */
HC_EXPORT uint64_t hc_region_size(const hc_client *c);
HC_EXPORT const char *hc_node_id(const hc_client *c);

HC_EXPORT void hc_free(void *p);

/* Message for a negative errno (or 0); never NULL. */
HC_EXPORT const char *hc_strerror(int err);
/* Name of a negative errno ("ENOENT"); "UNKNOWN" when not in HC_ERRNO_MAP. */
HC_EXPORT const char *hc_err_name(int err);

/* Checks n names packed in names[0..len) (each followed by one NUL) by the
 * rule of keys and namespaces (hicache_defs.h; the daemon's own check):
 * ok[i] = 1 if name i is valid, else 0. Returns how many are invalid, or
 * -EINVAL (ok untouched) when the bytes do not hold exactly n NUL-terminated
 * names. For bindings that keep no copy of the rule (the Python package). */
HC_EXPORT long hc_names_check(const char *names, size_t len, size_t n, unsigned char *ok);

/* HC_DEFAULT_SOCKET and HC_MAX_READERS_PER_PAGE, for bindings that cannot
 * read hicache_defs.h (the Python package). */
HC_EXPORT const char *hc_default_socket(void);
HC_EXPORT unsigned hc_max_readers_per_page(void);

#ifdef __cplusplus
}
#endif

#endif
