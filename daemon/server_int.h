/* Server internals: the connection and server structures and the functions
 * one part of the server calls in another (prefix hc__). Private to the
 * server; server.h is what main.c sees.
 *
 * The parts, one file each (all glue: libuv and protobuf live here, never in
 * the engine):
 *   server.c   start and stop: listening socket, I/O pool and store, timers,
 *              signals
 *   conn.c     connections: accept, reading frames with backpressure, replies,
 *              closing
 *   peer.c     which peers may connect (allowed_uids / allowed_gids)
 *   hello.c    the handshake: checks, the client's shared region, its fd
 *   request.c  requests after hello, translated into store calls
 *   reload.c   SIGHUP: the configuration read again
 *
 * Threads: loop thread only: every function of the server runs on the libuv
 * loop thread (wake_loop in server.c, called on an I/O thread, only sends
 * the loop an async wake-up). */
#ifndef HC_SERVER_INT_H
#define HC_SERVER_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#include "config.h"
#include "frame.h"
#include "hicache.pb-c.h"
#include "io.h"
#include "key.h"
#include "metrics.h"
#include "shm.h"
#include "stats.h"
#include "store.h"

/* A connection stops being read while this many of its requests are in
 * flight (backpressure, not an error). */
#define CONN_MAX_INFLIGHT 16
/* Connections beyond max_clients are refused at hello; this many more may
 * wait in the handshake before new ones are closed at accept. */
#define CONN_HANDSHAKE_SLACK 16
/* Peers outside allowed_uids / allowed_gids (known at accept from
 * SO_PEERCRED) get their EACCES at hello; at most this many at once, apart
 * from the room of allowed peers: more are closed at accept. */
#define CONN_DENIED_MAX 16

/* Which limit a connection counts against (set at accept, moved at hello). */
enum conn_slot {
    CONN_UNCOUNTED, /* closed at accept: over a limit */
    CONN_PENDING,   /* an allowed peer before hello: max_clients + CONN_HANDSHAKE_SLACK */
    CONN_DENIED,    /* a refused peer until its EACCES is out: CONN_DENIED_MAX */
    CONN_ADMITTED,  /* after hello: max_clients (stats.clients) */
};
/* A connection stops being read while this many reply bytes wait for it to
 * read them: a client that never reads cannot make the daemon queue more. */
#define CONN_MAX_QUEUED (4u << 20)
/* Host pools map address space, not memory; still, one connection's pools
 * stay under CONN_POOL_BYTES and all of them under SERVER_POOL_BYTES (x86-64
 * has 128 TiB for a process): a client cannot take the daemon's. */
#define CONN_POOL_BYTES (4ull << 40)
#define SERVER_POOL_BYTES (32ull << 40)
/* Descriptors a peer may have passed (SCM_RIGHTS) that no PoolRequest took
 * yet; one more closes the connection. */
#define CONN_MAX_PASSED 4
/* Before hello a peer may send only small frames, and must say hello soon. */
#define HELLO_MAX_FRAME 4096u
#define HELLO_TIMEOUT_MS 10000u
/* A connection closed after an error reply waits this long for the peer to
 * read it, then is closed regardless. */
#define FLUSH_TIMEOUT_MS 5000u
#define REGION_MAX (1ull << 30)
#define READ_BUF_SIZE (64u * 1024u)
#define MAX_IDS 64

struct conn {
    uv_pipe_t pipe; /* first: handle callbacks cast back to the conn */
    struct server *srv;
    struct conn *prev, *next;
    struct hc_frame_decoder dec;
    struct hc_region *region; /* after hello */
    /* host pools registered (PoolRequest), slot pool i + 1 names pools[i] */
    struct hc_region *pools[HC_MAX_POOLS];
    unsigned npools;
    uint64_t pool_bytes; /* mapped by pools[] */
    uint64_t ahead;      /* bytes of region and pools[] mapped ahead (hc__region_populate) */
    /* descriptors passed with the frames read, not yet taken by a
     * PoolRequest, oldest first */
    int passed[CONN_MAX_PASSED];
    unsigned npassed;
    int ns; /* store namespace id; -1 until the store knows the name */
    char ns_name[HC_MAX_NS + 1];
    size_t ns_len;
    struct hc_store_opts sopts; /* from the hello: readers per page, compression */
    uint64_t deadline_ms;       /* hello deadline, then the flush deadline once closing */
    uint64_t num;
    pid_t pid;
    uid_t uid;
    gid_t gid;
    unsigned inflight; /* requests whose reply is not yet sent */
    unsigned refs;     /* 1 for the handle, 1 per request in flight */
    bool hello;
    bool denied;
    enum conn_slot slot;
    bool closing;
    bool reading;
    bool processing; /* hc__conn_process is on the stack: do not re-enter it */
};

/* One set or get request in flight. Owned by the server; each store callback
 * gets one of its items. */
struct batch {
    struct conn *conn;
    struct hc_region *region;
    struct iovec *pieces; /* the pieces of its pool pages of several, one array */
    uint64_t id;
    uint64_t t0_ns; /* received (uv_hrtime), for the latency histogram */
    bool is_get;
    unsigned n;
    unsigned remaining;
    int32_t *results;
    uint64_t *lengths;
    uint64_t *checks; /* get with client_check: Response.checks, else NULL */
    struct batch_item {
        struct batch *b;
        struct hc_region *map; /* a pool the slot lies in (a reference), or NULL */
        unsigned i;
    } items[];
};

struct write_req {
    uv_write_t req;
    uv_buf_t buf;
    uint8_t data[];
};

struct server {
    uv_loop_t loop;
    uv_pipe_t listener;
    uv_async_t io_wake;
    uv_timer_t tick;
    uv_timer_t stop_check;
    uv_signal_t sig_term;
    uv_signal_t sig_int;
    uv_signal_t sig_hup;
    struct hc_config *cfg;
    int argc; /* for a reload: the config file and the flags are read again */
    char **argv;
    struct hc_io_pool *io;
    struct hc_store *store;
    struct hc_stats stats;
    uint64_t pool_bytes;       /* mapped by every connection's host pools */
    uint64_t ahead;            /* the conns' ahead: stats.mapped_ahead_bytes; more than
                                  map_ahead only after a reload lowered it */
    struct populate *pop_head; /* regions and pools to map ahead, in order (hello.c) */
    struct populate *pop_tail;
    bool pop_busy;              /* a step of pop_head on an I/O thread: one at a time */
    struct hc_latencies lat;    /* batch requests, receipt to reply */
    unsigned n_pending;         /* CONN_PENDING connections */
    unsigned n_denied;          /* CONN_DENIED connections */
    struct hc_metrics *metrics; /* the Prometheus endpoint, when configured */
    struct conn *conns;
    uint64_t next_conn;
    uint64_t start_ms;
    uint64_t start_ns;    /* uv_hrtime() when the loop began counting its idle time (0: it
                             cannot: loop_busy_microseconds stays 0) */
    uint64_t tick_ms;     /* the tick's period */
    uint64_t tick_due_ns; /* when the next tick is due (uv_hrtime), 0 before the first */
    uid_t allowed_uids[MAX_IDS];
    unsigned n_uids;
    gid_t allowed_gids[MAX_IDS];
    unsigned n_gids;
    bool restrict_peers;
    bool socket_activated;
    bool stopping;
    bool stopped;
    char read_buf[READ_BUF_SIZE];
};

/* ---- conn.c --------------------------------------------------------------- */

void hc__conn_unref(struct conn *c);
void hc__conn_close(struct conn *c);
void hc__conn_close_after_flush(struct conn *c);
void hc__conn_on_write(uv_write_t *req, int status);
int hc__conn_send(struct conn *c, const Hicache__Response *resp);
void hc__send_error(struct conn *c, uint64_t id, int status, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void hc__conn_process(struct conn *c);
void hc__on_connection(uv_stream_t *listener, int status);
void hc__sweep_conns(struct server *srv, uint64_t now);

/* ---- peer.c --------------------------------------------------------------- */

int hc__parse_ids(const char *list, bool groups, unsigned *ids, unsigned *n, char *err,
                  size_t errlen);
bool hc__peer_allowed(const struct server *srv, uid_t uid, gid_t gid);

/* ---- hello.c -------------------------------------------------------------- */

void hc__handle_hello(struct conn *c, const Hicache__Request *req);
/* Maps r, or its first bytes within map_ahead, into the daemon ahead of use,
 * in the background (hello.c). */
void hc__region_populate(struct conn *c, struct hc_region *r);

/* ---- request.c ------------------------------------------------------------ */

void hc__handle_request(struct conn *c, const Hicache__Request *req);

/* ---- server.c ------------------------------------------------------------- */

/* Loop thread: the I/O pool's gauges and counters, and the loop's busy time,
 * into srv->stats, before they are shown. */
void hc__server_io_stats(struct server *srv);

/* ---- reload.c --------------------------------------------------------------- */

void hc__reload(struct server *srv);

#endif
