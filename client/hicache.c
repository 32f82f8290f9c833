/* libhicache: the client side of the hicached wire protocol (docs/PROTOCOL.md).
 *
 * One hc_client is one Unix stream connection plus the shared region the
 * daemon passed at hello. Every call takes the connection's mutex for its
 * whole duration, so at most one call talks on a connection at a time; inside
 * a call, a batch is streamed through the region as chunks, with up to
 * HC_INFLIGHT (4) chunks in flight (the daemon serves the next ones while the
 * caller's thread copies one out of the region, checking its pages' CRCs in
 * the same pass: GetRequest.client_check).
 *
 * The socket is non-blocking and every wait is a poll() bounded by the
 * request's deadline (timeout_ms), so no call hangs. Any failure of the byte
 * stream (send/recv error, EOF, timeout, undecodable frame, protocol
 * violation) breaks the connection: the call that saw it returns the cause,
 * and every later call returns -ECONNRESET (or -EPIPE) at once. The caller
 * reconnects with a new hc_connect().
 *
 * Client-side key checks: in hc_batch_set/hc_batch_get an invalid key, a
 * page with no bytes or a malformed buffer list gives that page -EINVAL
 * without sending it (the other pages go on); in hc_batch_exists an invalid
 * key fails the whole call with -EINVAL before anything is sent (exists has no
 * per-key error slot). */
#include "hicache.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "crc32c.h"
#include "frame.h"
#include "hicache.pb-c.h"
#include "key.h"

#define HC_DEFAULT_TIMEOUT_MS 30000
#define HC_DEFAULT_MAX_FRAME (1u << 20)
#define HC_DEFAULT_ALIGN 4096u
/* Largest response frame this library accepts (responses are small: per-key
 * results, or the stats JSON). */
#define HC_CLIENT_MAX_RESPONSE (16u << 20)
/* Conservative encoded sizes, used to keep request frames under max_frame. */
#define HC_FRAME_BASE_EST 64u
#define HC_SLOT_EST 40u
#define HC_RECV_BUF 16384
#define HC_MAX_FDS 4

struct hc_client {
    pthread_mutex_t lock; /* serializes every call on this connection */
    int fd;               /* -1 once broken */
    int broken;           /* 0, or what later calls return (-ECONNRESET/-EPIPE) */
    int timeout_ms;
    uint8_t *region;
    uint64_t region_size;
    uint64_t slot_align;
    uint64_t head, tail; /* slot ring: byte counters, head - tail bytes in use */
    uint32_t max_batch;
    uint32_t max_frame;
    uint64_t next_id;
    char *node_id;
    struct hc_frame_decoder dec;
    /* host pools registered (hc_pool_register): this process's mapping of
     * each and the id the daemon gave it */
    struct hc_pool {
        const uint8_t *base;
        uint64_t size;
        uint32_t id;
    } pools[HC_MAX_POOLS];
    unsigned npools;
};

/* ---- error names ---------------------------------------------------------- */

HC_EXPORT const char *hc_strerror(int err)
{
    int e = err < 0 ? -err : err;

    if (e == 0)
        return "success";
#define HC_STRERROR_CASE(name, msg)                                                                \
    case name:                                                                                     \
        return msg;
    switch (e) {
        HC_ERRNO_MAP(HC_STRERROR_CASE)
    default:
        break;
    }
#undef HC_STRERROR_CASE
    return strerror(e);
}

HC_EXPORT const char *hc_err_name(int err)
{
#define HC_ERRNAME_CASE(name, msg)                                                                 \
    case -name:                                                                                    \
        return #name;
    switch (err) {
        HC_ERRNO_MAP(HC_ERRNAME_CASE)
    default:
        break;
    }
#undef HC_ERRNAME_CASE
    return "UNKNOWN";
}

HC_EXPORT long hc_names_check(const char *names, size_t len, size_t n, unsigned char *ok)
{
    size_t i, pos = 0, nuls = 0;
    long bad = 0;

    if (n == 0)
        return len == 0 ? 0 : -EINVAL;
    if (names == NULL || ok == NULL || len == 0 || names[len - 1] != '\0')
        return -EINVAL;
    for (i = 0; i < len; i++)
        nuls += names[i] == '\0';
    if (nuls != n)
        return -EINVAL;
    for (i = 0; i < n; i++) {
        size_t kl = strlen(names + pos);

        ok[i] = hc_name_invalid("key", names + pos, kl) == NULL;
        bad += !ok[i];
        pos += kl + 1;
    }
    return bad;
}

HC_EXPORT const char *hc_default_socket(void)
{
    return HC_DEFAULT_SOCKET;
}

HC_EXPORT unsigned hc_max_readers_per_page(void)
{
    return HC_MAX_READERS_PER_PAGE;
}

HC_EXPORT void hc_free(void *p)
{
    free(p);
}

/* ---- socket I/O ----------------------------------------------------------- */

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits until fd is ready for events or the deadline passes. Returns 0 (ready,
 * or hung up: the next send/recv tells), or -ETIMEDOUT. EINTR is retried. */
static int wait_fd(int fd, short events, int64_t deadline)
{
    for (;;) {
        int64_t left = deadline - now_ms();
        struct pollfd p = {.fd = fd, .events = events};
        int r;

        if (left <= 0)
            return -ETIMEDOUT;
        r = poll(&p, 1, left > INT_MAX ? INT_MAX : (int)left);
        if (r > 0)
            return 0;
        if (r < 0 && errno != EINTR)
            return -errno;
    }
}

/* Marks the connection unusable after a stream failure and returns err, so a
 * caller can write `return conn_fail(c, r);`. Later calls return
 * c->broken. Call with c->lock held. */
static int conn_fail(struct hc_client *c, int err)
{
    if (c->fd >= 0) {
        close(c->fd);
        c->fd = -1;
    }
    if (!c->broken)
        c->broken = err == -EPIPE ? -EPIPE : -ECONNRESET;
    return err;
}

/* Sends len bytes, waiting as needed. Returns 0 or -errno (the stream is then
 * in an unknown state). Never raises SIGPIPE. */
/* Sends len bytes at p; fd_in >= 0 is passed (SCM_RIGHTS) with the first
 * byte that goes out. */
static int send_all(struct hc_client *c, const uint8_t *p, size_t len, int64_t deadline, int fd_in)
{
    while (len > 0) {
        union hc_fd_cmsg cm;
        struct iovec iov = {.iov_base = (void *)p, .iov_len = len};
        struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};
        ssize_t k;

        if (fd_in >= 0)
            hc_frame_pass_fd(&m, &cm, fd_in);
        k = sendmsg(c->fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (k > 0)
            fd_in = -1;

        if (k < 0) {
            int r;

            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                return -errno;
            r = wait_fd(c->fd, POLLOUT, deadline);
            if (r < 0)
                return r;
            continue;
        }
        p += k;
        len -= (size_t)k;
    }
    return 0;
}

/* Reads what is available (waiting up to the deadline) into the frame
 * decoder. A descriptor passed with the bytes goes to *fd_out if fd_out is
 * not NULL and still -1; any other passed descriptor is closed. Returns 0, or
 * -ECONNRESET at end of stream, -ETIMEDOUT, or another -errno. */
static int recv_some(struct hc_client *c, int64_t deadline, int *fd_out)
{
    uint8_t buf[HC_RECV_BUF];
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int) * HC_MAX_FDS)];
    } cm;

    for (;;) {
        struct iovec iov = {.iov_base = buf, .iov_len = sizeof(buf)};
        struct msghdr m = {
            .msg_iov = &iov,
            .msg_iovlen = 1,
            .msg_control = cm.buf,
            .msg_controllen = sizeof(cm.buf),
        };
        struct cmsghdr *h;
        ssize_t k;
        int r;

        r = wait_fd(c->fd, POLLIN, deadline);
        if (r < 0)
            return r;
        k = recvmsg(c->fd, &m, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
        if (k < 0) {
            if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
                continue;
            return -errno;
        }
        for (h = CMSG_FIRSTHDR(&m); h != NULL; h = CMSG_NXTHDR(&m, h)) {
            size_t nfd, i;

            if (h->cmsg_level != SOL_SOCKET || h->cmsg_type != SCM_RIGHTS)
                continue;
            nfd = (h->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            for (i = 0; i < nfd; i++) {
                int fd;

                memcpy(&fd, CMSG_DATA(h) + i * sizeof(int), sizeof(int));
                if (fd_out != NULL && *fd_out < 0)
                    *fd_out = fd;
                else
                    close(fd);
            }
        }
        if (k == 0)
            return -ECONNRESET;
        return hc_frame_decoder_feed(&c->dec, buf, (size_t)k);
    }
}

/* Encodes req as one frame and sends it (with fd_in, when >= 0, passed
 * along: SCM_RIGHTS). Returns 0, -EMSGSIZE if it would
 * exceed the daemon's max_frame (nothing sent; the connection stays usable),
 * -ENOMEM, or a stream error (the caller breaks the connection). */
static int send_request(struct hc_client *c, const Hicache__Request *req, int64_t deadline,
                        int fd_in)
{
    size_t len = hicache__request__get_packed_size(req);
    uint8_t *frame;
    int r;

    if (len > c->max_frame)
        return -EMSGSIZE;
    frame = malloc(HC_FRAME_HDR + len);
    if (frame == NULL)
        return -ENOMEM;
    hc_frame_put_len(frame, (uint32_t)len);
    hicache__request__pack(req, frame + HC_FRAME_HDR);
    r = send_all(c, frame, HC_FRAME_HDR + len, deadline, fd_in);
    free(frame);
    return r;
}

/* Reads the next response frame. Returns 0 and sets *out (free with
 * hicache__response__free_unpacked), or -errno: every error here is a stream
 * error. fd_out as for recv_some. */
static int recv_response(struct hc_client *c, int64_t deadline, int *fd_out,
                         Hicache__Response **out)
{
    for (;;) {
        const uint8_t *body;
        uint32_t len;
        int r = hc_frame_decoder_next(&c->dec, &body, &len);

        if (r < 0)
            return r;
        if (r == 1) {
            Hicache__Response *resp = hicache__response__unpack(NULL, len, body);

            if (resp == NULL)
                return -EPROTO;
            *out = resp;
            return 0;
        }
        r = recv_some(c, deadline, fd_out);
        if (r < 0)
            return r;
    }
}

/* ---- one request, one response (hello, stats, clear, ping) -------------- */

/* Sends req (its id is assigned here; fd_in >= 0 passed with it) and waits
 * for the response with that
 * id; responses with other ids are stale and dropped. Returns 0 and sets *out,
 * or -errno; a stream error has already broken the connection. A frame-error
 * response (id 0, status < 0) returns its status and breaks the connection.
 * Call with c->lock held and the connection not broken. */
static int call_fd(struct hc_client *c, Hicache__Request *req, int fd_in, int *fd_out,
                   Hicache__Response **out)
{
    int64_t deadline = now_ms() + c->timeout_ms;
    int r;

    req->id = c->next_id++;
    r = send_request(c, req, deadline, fd_in);
    if (r == -EMSGSIZE || r == -ENOMEM)
        return r;
    if (r < 0)
        return conn_fail(c, r);
    for (;;) {
        Hicache__Response *resp;

        r = recv_response(c, deadline, fd_out, &resp);
        if (r < 0)
            return conn_fail(c, r);
        if (resp->id == req->id) {
            *out = resp;
            return 0;
        }
        if (resp->id == 0 && resp->status < 0) {
            r = resp->status;
            hicache__response__free_unpacked(resp, NULL);
            return conn_fail(c, r);
        }
        hicache__response__free_unpacked(resp, NULL);
    }
}

/* call_fd passing no descriptor. */
static int call(struct hc_client *c, Hicache__Request *req, int *fd_out, Hicache__Response **out)
{
    return call_fd(c, req, -1, fd_out, out);
}

/* ---- connect / close ------------------------------------------------------ */

/* Connects a non-blocking stream socket to path before the deadline.
 * Returns the fd or -errno (-ENOENT no socket file, -ECONNREFUSED nobody
 * listening, -ETIMEDOUT backlog full for too long). */
static int connect_unix(const char *path, int64_t deadline)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t len = strlen(path);
    int fd, r;

    if (len == 0)
        return -EINVAL;
    if (len >= sizeof(sa.sun_path))
        return -ENAMETOOLONG;
    memcpy(sa.sun_path, path, len + 1);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -errno;
    for (;;) {
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
            return fd;
        r = -errno;
        if (r == -EINTR)
            continue;
        if (r == -EAGAIN) {
            /* The listen backlog is full: try again shortly. */
            struct timespec ts = {.tv_nsec = 5 * 1000 * 1000};

            if (now_ms() >= deadline) {
                r = -ETIMEDOUT;
                break;
            }
            nanosleep(&ts, NULL);
            continue;
        }
        if (r == -EINPROGRESS) {
            int soerr = 0;
            socklen_t sl = sizeof(soerr);

            r = wait_fd(fd, POLLOUT, deadline);
            if (r == 0 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
                r = -errno;
            else if (r == 0)
                r = -soerr;
            if (r == 0)
                return fd;
        }
        break;
    }
    close(fd);
    return r;
}

/* Takes the daemon's hello reply hr and the region's fd: maps the region (no
 * shorter than announced, which would SIGBUS us on access) and keeps the
 * daemon's limits. Returns 0 or -errno. */
static int take_hello_reply(struct hc_client *c, const Hicache__HelloReply *hr, int memfd)
{
    struct stat st;

    if (hr == NULL || memfd < 0 || hr->protocol_version != HC_PROTOCOL_VERSION ||
        hr->region_size == 0 || hr->region_size > SIZE_MAX)
        return -EPROTO;
    if (fstat(memfd, &st) < 0 || (uint64_t)st.st_size < hr->region_size)
        return -EPROTO;
    c->region = mmap(NULL, (size_t)hr->region_size, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
    if (c->region == MAP_FAILED)
        return -errno;
    c->region_size = hr->region_size;
    c->slot_align = hr->slot_align;
    if (c->slot_align == 0 || (c->slot_align & (c->slot_align - 1)) != 0 ||
        c->slot_align > c->region_size)
        c->slot_align = HC_DEFAULT_ALIGN;
    c->max_batch = hr->max_batch;
    if (c->max_batch == 0 || c->max_batch > HC_MAX_BATCH)
        c->max_batch = HC_MAX_BATCH;
    if (hr->max_frame != 0)
        c->max_frame = hr->max_frame;
    c->node_id = strdup(hr->node_id != NULL ? hr->node_id : "");
    return c->node_id == NULL ? -ENOMEM : 0;
}

/* The handshake on c's fresh connection: sends the hello for namespace ns
 * with opts (may be NULL) and takes the reply. Returns 0, or -errno (the
 * daemon's refusal, or a reply that does not hold). */
static int say_hello(struct hc_client *c, const char *ns, const hc_connect_opts *opts)
{
    Hicache__Request req = HICACHE__REQUEST__INIT;
    Hicache__Hello hello = HICACHE__HELLO__INIT;
    Hicache__Response *resp = NULL;
    int memfd = -1;
    int r;

    hello.protocol_version = HC_PROTOCOL_VERSION;
    hello.namespace_.data = (uint8_t *)ns;
    hello.namespace_.len = strlen(ns);
    hello.rank = opts != NULL ? opts->rank : 0;
    hello.page_size_hint = opts != NULL ? opts->page_size_hint : 0;
    hello.readers_per_page = opts != NULL ? opts->readers_per_page : 0;
    hello.compression = opts != NULL ? opts->compression : HC_COMPRESSION_DEFAULT;
    hello.client_name = program_invocation_short_name;
    req.body_case = HICACHE__REQUEST__BODY_HELLO;
    req.hello = &hello;
    r = call(c, &req, &memfd, &resp);
    if (r == 0)
        r = resp->status < 0 ? resp->status : take_hello_reply(c, resp->hello, memfd);
    if (resp != NULL)
        hicache__response__free_unpacked(resp, NULL);
    if (memfd >= 0)
        close(memfd);
    return r;
}

HC_EXPORT int hc_connect(hc_client **out, const char *socket_path, const hc_connect_opts *opts)
{
    const char *ns = opts != NULL && opts->ns != NULL ? opts->ns : "default";
    struct hc_client *c;
    int r;

    if (out == NULL)
        return -EINVAL;
    if (hc_name_invalid("namespace", ns, strnlen(ns, HC_MAX_NS + 1)) != NULL)
        return -EINVAL;
    if (opts != NULL && (opts->compression > HC_COMPRESSION_ZSTD ||
                         opts->readers_per_page > HC_MAX_READERS_PER_PAGE))
        return -EINVAL;
    if (socket_path == NULL) {
        socket_path = getenv("HICACHED_SOCKET");
        if (socket_path == NULL || socket_path[0] == '\0')
            socket_path = HC_DEFAULT_SOCKET;
    }

    c = calloc(1, sizeof(*c));
    if (c == NULL)
        return -ENOMEM;
    if (pthread_mutex_init(&c->lock, NULL) != 0) {
        free(c);
        return -ENOMEM;
    }
    c->fd = -1;
    c->region = MAP_FAILED;
    c->timeout_ms = opts != NULL && opts->timeout_ms > 0 ? opts->timeout_ms : HC_DEFAULT_TIMEOUT_MS;
    c->max_frame = HC_DEFAULT_MAX_FRAME;
    c->next_id = 1;
    hc_frame_decoder_init(&c->dec, HC_CLIENT_MAX_RESPONSE);

    r = connect_unix(socket_path, now_ms() + c->timeout_ms);
    if (r >= 0) {
        c->fd = r;
        r = say_hello(c, ns, opts);
    }
    if (r < 0) {
        hc_close(c);
        return r;
    }
    *out = c;
    return 0;
}

HC_EXPORT void hc_close(hc_client *c)
{
    if (c == NULL)
        return;
    if (c->fd >= 0)
        close(c->fd);
    if (c->region != MAP_FAILED && c->region != NULL)
        munmap(c->region, (size_t)c->region_size);
    hc_frame_decoder_free(&c->dec);
    pthread_mutex_destroy(&c->lock);
    free(c->node_id);
    free(c);
}

HC_EXPORT uint64_t hc_region_size(const hc_client *c)
{
    return c != NULL ? c->region_size : 0;
}

HC_EXPORT const char *hc_node_id(const hc_client *c)
{
    return c != NULL && c->node_id != NULL ? c->node_id : "";
}

/* ---- slot ring ------------------------------------------------------------ */

/* Where a slot of len bytes (rounded up to slot_align) would go at the ring
 * head: *waste, the bytes of the region's tail end skipped because it would
 * not fit before it, and *slot, the bytes it takes. Returns whether the ring
 * has room for it now. An empty ring restarts at offset 0, so any len <=
 * region_size fits then. Changes nothing. */
static bool ring_place(const struct hc_client *c, uint64_t len, uint64_t *waste, uint64_t *slot)
{
    uint64_t size = c->region_size, head = c->head, tail = c->tail, pos;

    if (head == tail)
        head = tail = 0;
    *slot = (len + c->slot_align - 1) & ~(c->slot_align - 1);
    if (*slot > size)
        *slot = len;
    pos = head % size;
    *waste = pos + *slot > size ? size - pos : 0;
    return head - tail + *waste + *slot <= size;
}

/* Takes a slot of len bytes at the ring head (ring_place). Returns 0 and
 * sets *off, or -ENOSPC while the ring is too full. */
static int ring_alloc(struct hc_client *c, uint64_t len, uint64_t *off)
{
    uint64_t waste, slot;

    if (c->head == c->tail)
        c->head = c->tail = 0;
    if (!ring_place(c, len, &waste, &slot))
        return -ENOSPC;
    c->head += waste;
    *off = c->head % c->region_size;
    c->head += slot;
    return 0;
}

/* ---- batches -------------------------------------------------------------- */

enum hc_op { HC_OP_SET, HC_OP_GET };

/* Chunks of a batch in flight at most; each takes at most 1/HC_INFLIGHT of
 * the region (a page bigger than that goes alone). With several in flight the
 * daemon reads the next chunks while the caller's thread copies one out. */
#define HC_INFLIGHT 4

/* One request of a batch: which pages it carries and where their slots are.
 * resp is set when its response arrived (possibly while waiting for another
 * chunk: the daemon may answer out of order). */
struct hc_chunk {
    uint64_t id;
    int64_t deadline;
    Hicache__Response *resp;
    uint64_t ring_end; /* c->head after this chunk's slots */
    uint64_t est;      /* estimated encoded size of its request (max_frame) */
    bool last;         /* get: no next chunk goes before one in flight is done */
    unsigned count;
    size_t idx[HC_MAX_BATCH]; /* page index in the caller's array */
    uint64_t off[HC_MAX_BATCH];
    uint64_t len[HC_MAX_BATCH];
    uint32_t pool[HC_MAX_BATCH]; /* 0: the slot is in the region */
};

struct hc_batch {
    enum hc_op op;
    const hc_page *pages;
    size_t n;
    int *results;
    int done;                       /* set: pages stored; get: hits */
    bool answered;                  /* some chunk got a response */
    struct hc_chunk q[HC_INFLIGHT]; /* chunks in flight, FIFO */
    unsigned qhead, nq;
    /* get: the daemon checks every page itself (get_again); otherwise it may
     * leave a region page's check to us */
    bool daemon_check;
    size_t *recheck; /* get: pages whose check failed in our copy (n entries,
                      * allocated at the first) */
    size_t nrecheck;
    size_t ahead; /* get: the first page not yet named in ahead_keys (ahead_keys) */
};

static const char *batch_key(const struct hc_batch *b, size_t i)
{
    return b->pages[i].key;
}

static int key_check(const char *key)
{
    if (key == NULL || hc_name_invalid("key", key, strnlen(key, HC_MAX_KEY + 1)) != NULL)
        return -EINVAL;
    return 0;
}

/* The index in c->pools of the registered pool [base, base + len) lies in,
 * or -1. */
static int pool_find(const struct hc_client *c, const void *base, size_t len)
{
    uintptr_t a = (uintptr_t)base;
    for (unsigned i = 0; i < c->npools; i++) {
        uintptr_t pb = (uintptr_t)c->pools[i].base;
        if (a >= pb && a - pb < c->pools[i].size && len <= c->pools[i].size - (a - pb))
            return (int)i;
    }
    return -1;
}

/* The registered pool page p lies in (every buffer of it, at most
 * HC_MAX_PIECES, in one pool's mapping): the pool's id, with *off the first
 * buffer's offset there; 0 when none. */
static uint32_t page_pool(const struct hc_client *c, const hc_page *p, uint64_t *off)
{
    int k;

    if (c->npools == 0 || p->nbufs == 0 || p->nbufs > HC_MAX_PIECES)
        return 0;
    k = pool_find(c, p->bufs[0].base, p->bufs[0].len);
    if (k < 0)
        return 0;
    for (unsigned i = 0; i < p->nbufs; i++)
        if (p->bufs[i].len == 0 || pool_find(c, p->bufs[i].base, p->bufs[i].len) != k)
            return 0;
    *off = (uintptr_t)p->bufs[0].base - (uintptr_t)c->pools[k].base;
    return c->pools[k].id;
}

/* Checks page p and sums its buffers. Returns 0 and sets *total, -EINVAL
 * (bad key, malformed buffer list, no bytes) or -EMSGSIZE (larger than the
 * region, and not in a pool). */
static int page_check(const struct hc_client *c, const hc_page *p, uint64_t *total)
{
    uint64_t sum = 0;
    unsigned i;

    if (key_check(p->key) < 0 || (p->nbufs > 0 && p->bufs == NULL))
        return -EINVAL;
    for (i = 0; i < p->nbufs; i++) {
        if (p->bufs[i].base == NULL && p->bufs[i].len > 0)
            return -EINVAL;
        if (p->bufs[i].len > UINT64_MAX - sum)
            return -EINVAL;
        sum += p->bufs[i].len;
    }
    if (sum == 0)
        return -EINVAL;
    *total = sum;
    return 0;
}

static void copy_in(uint8_t *dst, const hc_page *p)
{
    unsigned i;

    for (i = 0; i < p->nbufs; i++) {
        if (p->bufs[i].len > 0)
            memcpy(dst, p->bufs[i].base, p->bufs[i].len);
        dst += p->bufs[i].len;
    }
}

/* copy_out, with the CRC32C of the bytes copied computed in the same pass */
static uint32_t copy_out_crc(const hc_page *p, const uint8_t *src)
{
    uint32_t crc = 0;

    for (unsigned i = 0; i < p->nbufs; i++) {
        if (p->bufs[i].len > 0)
            crc = hc_crc32c_copy(crc, p->bufs[i].base, src, p->bufs[i].len);
        src += p->bufs[i].len;
    }
    return crc;
}

static void copy_out(const hc_page *p, const uint8_t *src)
{
    unsigned i;

    for (i = 0; i < p->nbufs; i++) {
        if (p->bufs[i].len > 0)
            memcpy(p->bufs[i].base, src, p->bufs[i].len);
        src += p->bufs[i].len;
    }
}

/* A get's copy out of the region (hc_crc32c_copy) stores non-temporally, and
 * runs fastest when no load of the slot runs into those stores: when the
 * target lies 1 KiB ahead of the slot within a 4 KiB page (common/crc32c.c:
 * nt_ok, clear of each of its lanes, 2 KiB would meet its 2 KiB lanes; where
 * the CRC is folded, fold_nt_ok, 768 bytes to a page less 64 ahead). Room
 * for that: a daemon asking for slot_align below 4096 (one not using
 * O_DIRECT) takes slots at any multiple of slot_align, so a get of a page of
 * 64 KiB or more takes a slot 4 KiB longer and starts the page at the offset
 * that puts it 1 KiB behind its first non-empty buffer (a page smaller than
 * that would waste too much of the region for it; one too big for a chunk
 * goes unskewed, so it still fits the region). */
#define HC_SKEW_MIN (64u * 1024)
#define HC_SKEW_AHEAD 1024u

static uint64_t get_skew_room(const struct hc_client *c, const struct hc_batch *b, uint64_t total)
{
    bool fits = total + 4096 <= c->region_size / HC_INFLIGHT;

    return b->op == HC_OP_GET && c->slot_align < 4096 && total >= HC_SKEW_MIN && fits ? 4096 : 0;
}

static uint64_t get_skew(const struct hc_client *c, const struct hc_batch *b, size_t i,
                         uint64_t off, uint64_t total)
{
    const hc_page *pg = &b->pages[i];
    unsigned j = 0;

    if (get_skew_room(c, b, total) == 0)
        return 0;
    while (j + 1 < pg->nbufs && pg->bufs[j].len == 0)
        j++;
    uintptr_t dst = (uintptr_t)pg->bufs[j].base;
    uintptr_t src = (uintptr_t)(c->region + off);
    return ((dst - HC_SKEW_AHEAD - src) & 4095u) & ~(uintptr_t)(c->slot_align - 1);
}

/* Fills k with pages from *next on: as many as fit the batch limit, the frame
 * limit, a quarter of the region (HC_INFLIGHT) and the free part of the ring. Pages refused here
 * get their result at once and are skipped. Set pages are copied into their slots. */
static void chunk_fill(struct hc_client *c, struct hc_batch *b, size_t *next, struct hc_chunk *k)
{
    uint64_t est = HC_FRAME_BASE_EST, bytes = 0;

    k->count = 0;
    k->resp = NULL;
    while (*next < b->n && k->count < c->max_batch) {
        size_t i = *next;
        const char *key = batch_key(b, i);
        uint64_t add, slot, total = 0, off = 0;

        int r = page_check(c, &b->pages[i], &total);
        uint32_t pool = r < 0 ? 0 : page_pool(c, &b->pages[i], &off);

        if (r == 0 && !pool && total > c->region_size)
            r = -EMSGSIZE;
        if (r < 0) {
            b->results[i] = r;
            (*next)++;
            continue;
        }
        add = strlen(key) + HC_SLOT_EST + (pool ? 20u * (b->pages[i].nbufs - 1) : 0);
        if (k->count > 0 && est + add > c->max_frame)
            break;
        if (!pool) {
            /* A quarter of the region per chunk, so the daemon serves
             * the next chunks while this one is copied (a bigger page goes
             * alone). */
            uint64_t room = get_skew_room(c, b, total);

            slot = (total + room + c->slot_align - 1) & ~(c->slot_align - 1);
            if (k->count > 0 && bytes + slot > c->region_size / HC_INFLIGHT)
                break;
            if (ring_alloc(c, total + room, &off) < 0)
                break;
            off += get_skew(c, b, i, off, total);
            bytes += slot;
            if (b->op == HC_OP_SET)
                copy_in(c->region + off, &b->pages[i]);
        }
        est += add;
        k->idx[k->count] = i;
        k->off[k->count] = off;
        k->len[k->count] = total;
        k->pool[k->count] = pool;
        k->count++;
        (*next)++;
    }
    k->ring_end = c->head;
    k->est = est;
}

/* A get's read-ahead hint (GetRequest.ahead_keys), sent with a chunk after
 * which no other is sent before one in flight is done (k->last: HC_INFLIGHT
 * in flight, or the ring full): the pages after it, up to a region's worth
 * (a sliding window: those named before count, so each later chunk names
 * about a chunk's worth more), each named once a batch, as many as max_batch
 * and cap allow; not pages chunk_fill would refuse. Why: the daemon reads a
 * segment as one forward stream, and the pages of the other TP ranks lie
 * between ours; pages of ours asked for only once our region had room again
 * came after the stream had passed them, and through JuiceFS without a local
 * cache that was a second download of their blocks. Read ahead, they are in
 * the page cache when asked for. Not with the chunks sent at once before it:
 * named there, the pages after them would reach the daemon's threads before
 * those chunks' own pages, and the stream would jump back. Packs the keys
 * into buf (NUL after each) and returns the bytes used, 0 for none. */
static size_t ahead_pack(const struct hc_client *c, struct hc_batch *b, const struct hc_chunk *k,
                         char *buf, size_t cap)
{
    size_t i = k->idx[k->count - 1] + 1, used = 0, keys = 0;
    uint64_t bytes = 0, total, off;

    for (; i < b->ahead && bytes < c->region_size; i++) /* the window's part named before */
        if (page_check(c, &b->pages[i], &total) == 0)
            bytes += total;
    for (i = i > b->ahead ? i : b->ahead; i < b->n && keys < c->max_batch && bytes < c->region_size;
         i++) {
        const char *key = batch_key(b, i);
        size_t len;
        if (page_check(c, &b->pages[i], &total) < 0 ||
            (total > c->region_size && !page_pool(c, &b->pages[i], &off)))
            continue; /* refused by chunk_fill: never asked for */
        len = strlen(key);
        if (used + len + 1 > cap)
            break;
        memcpy(buf + used, key, len + 1);
        used += len + 1;
        bytes += total;
        keys++;
    }
    if (i > b->ahead)
        b->ahead = i;
    return used;
}

/* Encodes chunk k as a set or get request and sends it. Returns 0 or
 * -errno (see send_request). */
static int chunk_send(struct hc_client *c, struct hc_batch *b, struct hc_chunk *k)
{
    Hicache__Request req = HICACHE__REQUEST__INIT;
    Hicache__SetRequest set = HICACHE__SET_REQUEST__INIT;
    Hicache__GetRequest get = HICACHE__GET_REQUEST__INIT;
    Hicache__Slot slots[HC_MAX_BATCH];
    Hicache__Slot *slotp[HC_MAX_BATCH];
    uint64_t *more = NULL;
    char *ahead = NULL;
    size_t nmore = 0, used = 0;
    unsigned j;
    int r;

    for (j = 0; j < k->count; j++)
        if (k->pool[j])
            nmore += 2 * (b->pages[k->idx[j]].nbufs - 1);
    if (nmore && (more = malloc(nmore * sizeof(*more))) == NULL)
        return -ENOMEM;
    for (j = 0; j < k->count; j++) {
        const hc_page *p = &b->pages[k->idx[j]];
        const char *key = batch_key(b, k->idx[j]);

        hicache__slot__init(&slots[j]);
        slots[j].key.data = (uint8_t *)key;
        slots[j].key.len = strlen(key);
        slots[j].offset = k->off[j];
        slots[j].length = k->len[j];
        slots[j].pool = k->pool[j];
        if (k->pool[j] && p->nbufs > 1) {
            /* the first piece is offset/length: the whole page is in one pool */
            uintptr_t base = (uintptr_t)p->bufs[0].base - k->off[j];
            slots[j].length = p->bufs[0].len;
            slots[j].more = more + used;
            slots[j].n_more = 2 * (p->nbufs - 1);
            for (unsigned q = 1; q < p->nbufs; q++) {
                more[used++] = (uintptr_t)p->bufs[q].base - base;
                more[used++] = p->bufs[q].len;
            }
        }
        slotp[j] = &slots[j];
    }
    switch (b->op) {
    case HC_OP_SET:
        set.n_pages = k->count;
        set.pages = slotp;
        req.body_case = HICACHE__REQUEST__BODY_SET;
        req.set = &set;
        break;
    case HC_OP_GET:
        get.n_pages = k->count;
        get.pages = slotp;
        get.client_check = !b->daemon_check;
        req.body_case = HICACHE__REQUEST__BODY_GET;
        req.get = &get;
        /* the hint rides in this request's frame (16: its tag and length) */
        if (k->count > 0 && k->last && b->ahead < b->n && k->est + 16 < c->max_frame) {
            size_t cap = c->max_frame - k->est - 16;
            if (cap > (size_t)c->max_batch * (HC_MAX_KEY + 1))
                cap = (size_t)c->max_batch * (HC_MAX_KEY + 1);
            if ((ahead = malloc(cap)) != NULL) {
                get.ahead_keys.len = ahead_pack(c, b, k, ahead, cap);
                get.ahead_keys.data = (uint8_t *)ahead;
            }
        }
        break;
    }
    k->id = req.id = c->next_id++;
    k->deadline = now_ms() + c->timeout_ms;
    r = send_request(c, &req, k->deadline, -1);
    free(more);
    free(ahead);
    return r;
}

/* Waits until the oldest chunk in flight has its response, stashing the
 * responses of the other chunks. Returns 0 or a stream error (not yet
 * recorded in c). */
static int chunk_wait(struct hc_client *c, struct hc_batch *b)
{
    struct hc_chunk *k = &b->q[b->qhead];

    while (k->resp == NULL) {
        Hicache__Response *resp;
        unsigned j;
        int r = recv_response(c, k->deadline, NULL, &resp);

        if (r < 0)
            return r;
        if (resp->id == 0 && resp->status < 0) {
            r = resp->status;
            hicache__response__free_unpacked(resp, NULL);
            return r;
        }
        for (j = 0; j < b->nq; j++) {
            struct hc_chunk *o = &b->q[(b->qhead + j) % HC_INFLIGHT];

            if (o->id == resp->id && o->resp == NULL) {
                o->resp = resp;
                resp = NULL;
                break;
            }
        }
        if (resp != NULL) /* stale (a request this call did not send) */
            hicache__response__free_unpacked(resp, NULL);
    }
    return 0;
}

/* Hands the oldest chunk's answer to the caller: results, and copies out of
 * the slots for get hits. Returns 0, or
 * -EPROTO when the response does not match the request. */
static int chunk_finish(struct hc_client *c, struct hc_batch *b, struct hc_chunk *k)
{
    Hicache__Response *resp = k->resp;
    unsigned j;

    if (resp->status < 0) {
        for (j = 0; j < k->count; j++)
            b->results[k->idx[j]] = resp->status;
        return 0;
    }
    if (resp->n_results != k->count || (b->op != HC_OP_SET && resp->n_lengths != k->count))
        return -EPROTO;
    for (j = 0; j < k->count; j++) {
        size_t i = k->idx[j];
        int r = resp->results[j];

        switch (b->op) {
        case HC_OP_SET:
            b->results[i] = r > 0 ? -EPROTO : r;
            if (r == 0)
                b->done++;
            break;
        case HC_OP_GET:
            if (r == 0 && resp->lengths[j] < k->len[j]) {
                r = -EMSGSIZE;
            } else if (r == 0 && resp->lengths[j] > k->len[j]) {
                r = -ENOSPC;
            } else if (r == 0 && !k->pool[j] && resp->n_checks == k->count &&
                       (resp->checks[j] >> 32) != 0) {
                /* The daemon left the payload check to this copy. A page
                 * that fails it is asked for again with the daemon checking
                 * (pages_run): its record may be bad, or the file's view
                 * stale; the daemon sorts that out. */
                uint32_t crc = copy_out_crc(&b->pages[i], c->region + k->off[j]);
                if (crc == (uint32_t)resp->checks[j]) {
                    b->done++;
                } else {
                    r = -EBADMSG; /* kept when it cannot be asked for again */
                    if (!b->recheck)
                        b->recheck = malloc(b->n * sizeof(*b->recheck));
                    if (b->recheck)
                        b->recheck[b->nrecheck++] = i;
                }
            } else if (r == 0) {
                if (!k->pool[j])
                    copy_out(&b->pages[i], c->region + k->off[j]);
                b->done++;
            } else if (r > 0) {
                r = -EPROTO;
            }
            b->results[i] = r;
            break;
        }
    }
    return 0;
}

static void chunk_abandon(struct hc_batch *b, struct hc_chunk *k, int err)
{
    unsigned j;

    for (j = 0; j < k->count; j++)
        b->results[k->idx[j]] = err;
    if (k->resp != NULL)
        hicache__response__free_unpacked(k->resp, NULL);
    k->resp = NULL;
}

/* Fills and sends the next chunk of b when there is room for one (fewer than
 * HC_INFLIGHT in flight, pages left, no fatal error). Returns true when it did
 * something (a chunk sent, or pages refused or abandoned), so the caller
 * looks again; false when the oldest chunk must be waited for instead. A
 * stream failure sets *fatal and *next past the last page. Call with c->lock
 * held. */
static bool batch_push(struct hc_client *c, struct hc_batch *b, size_t *next, int *fatal)
{
    struct hc_chunk *k = &b->q[(b->qhead + b->nq) % HC_INFLIGHT];
    size_t before = *next;
    int r;

    if (*fatal != 0 || *next >= b->n || b->nq >= HC_INFLIGHT)
        return false;
    chunk_fill(c, b, next, k);
    if (k->count == 0)
        return *next != before; /* only refused pages: look again */
    k->last = false;            /* no next chunk before a pop: the last in flight, or no room */
    if (b->op == HC_OP_GET && *next < b->n) {
        uint64_t total, off, waste, slot;
        k->last = b->nq + 1 == HC_INFLIGHT ||
                  (page_check(c, &b->pages[*next], &total) == 0 &&
                   !page_pool(c, &b->pages[*next], &off) &&
                   !ring_place(c, total + get_skew_room(c, b, total), &waste, &slot));
    }
    r = chunk_send(c, b, k);
    if (r >= 0) {
        b->nq++;
        return true;
    }
    /* Nothing of it left: release its slots again. */
    c->head = b->nq > 0 ? b->q[(b->qhead + b->nq - 1) % HC_INFLIGHT].ring_end : c->tail;
    chunk_abandon(b, k, r);
    if (r != -EMSGSIZE && r != -ENOMEM) {
        *fatal = conn_fail(c, r);
        *next = b->n;
    }
    return true;
}

/* Waits for the oldest chunk of b in flight and finishes it. Returns 0, or a
 * stream error, recorded in c, with every chunk in flight abandoned. Call with
 * c->lock held. */
static int batch_pop(struct hc_client *c, struct hc_batch *b)
{
    int r = chunk_wait(c, b);

    if (r == 0) {
        struct hc_chunk *k = &b->q[b->qhead];

        r = chunk_finish(c, b, k);
        b->answered = b->answered || r == 0;
        hicache__response__free_unpacked(k->resp, NULL);
        k->resp = NULL;
        c->tail = k->ring_end;
    }
    if (r < 0) {
        int fatal = conn_fail(c, r);

        for (unsigned j = 0; j < b->nq; j++)
            chunk_abandon(b, &b->q[(b->qhead + j) % HC_INFLIGHT], fatal);
        b->nq = 0;
        c->head = c->tail = 0;
        return fatal;
    }
    b->qhead = (b->qhead + 1) % HC_INFLIGHT;
    b->nq--;
    return 0;
}

/* Runs a whole batch: chunks filled, sent and finished in order, up to HC_INFLIGHT in
 * flight. Returns pages stored (set), hits (get), or
 * -errno as documented in hicache.h. Takes c->lock. */
static int batch_run(struct hc_client *c, struct hc_batch *b)
{
    size_t next = 0, i;
    int fatal, r;

    pthread_mutex_lock(&c->lock);
    fatal = c->broken;
    while (fatal == 0 || b->nq > 0) {
        if (batch_push(c, b, &next, &fatal))
            continue;
        if (b->nq == 0)
            break;
        r = batch_pop(c, b);
        if (r < 0)
            fatal = r;
    }
    /* Cannot happen (a page no larger than the region always fits the empty
     * ring), but never leave a result unset. */
    for (i = next; fatal == 0 && i < b->n; i++)
        b->results[i] = -ENOSPC;
    pthread_mutex_unlock(&c->lock);

    if (fatal != 0) {
        for (i = next; i < b->n; i++)
            b->results[i] = fatal;
        if (!b->answered) {
            for (i = 0; i < b->n; i++)
                b->results[i] = fatal;
            return fatal;
        }
    }
    return b->done;
}

static int pages_args(hc_client *c, const hc_page *pages, size_t n, int *results)
{
    size_t i;

    if (results == NULL)
        return -EINVAL;
    if (c == NULL || (pages == NULL && n > 0) || n > INT_MAX) {
        for (i = 0; i < n && n <= INT_MAX; i++)
            results[i] = -EINVAL;
        return -EINVAL;
    }
    return 0;
}

/* The pages of get batch b whose check failed in the client's copy, asked
 * for again with the daemon checking them: their results replaced by the
 * answer. Returns the hits among them (0 if it could not be tried: then they
 * keep -EBADMSG). */
static int get_again(hc_client *c, const struct hc_batch *b)
{
    struct hc_batch *b2 = calloc(1, sizeof(*b2));
    hc_page *pages = malloc(b->nrecheck * sizeof(*pages));
    int *res = malloc(b->nrecheck * sizeof(*res));
    int r = 0;

    if (b2 != NULL && pages != NULL && res != NULL) {
        for (size_t j = 0; j < b->nrecheck; j++)
            pages[j] = b->pages[b->recheck[j]];
        b2->op = HC_OP_GET;
        b2->pages = pages;
        b2->n = b->nrecheck;
        b2->results = res;
        b2->daemon_check = true;
        r = batch_run(c, b2);
        for (size_t j = 0; j < b->nrecheck; j++)
            b->results[b->recheck[j]] = res[j];
    }
    free(b2);
    free(pages);
    free(res);
    return r > 0 ? r : 0;
}

/* hc_batch_set and hc_batch_get: checks the arguments, then streams the pages
 * through the region. */
static int pages_run(hc_client *c, enum hc_op op, const hc_page *pages, size_t n, int *results)
{
    struct hc_batch *b;
    int r = pages_args(c, pages, n, results);

    if (r < 0 || n == 0)
        return r;
    b = calloc(1, sizeof(*b));
    if (b == NULL)
        return -ENOMEM;
    b->op = op;
    b->pages = pages;
    b->n = n;
    b->results = results;
    r = batch_run(c, b);
    if (r >= 0 && b->nrecheck > 0)
        r += get_again(c, b);
    free(b->recheck);
    free(b);
    return r;
}

HC_EXPORT int hc_batch_set(hc_client *c, const hc_page *pages, size_t n, int *results)
{
    return pages_run(c, HC_OP_SET, pages, n, results);
}

HC_EXPORT int hc_batch_get(hc_client *c, const hc_page *pages, size_t n, int *results)
{
    return pages_run(c, HC_OP_GET, pages, n, results);
}

/* Asks for the n keys packed in keys[0..len) (each followed by a NUL), in
 * requests of at most max_batch keys and max_frame bytes, one after the other.
 * Returns the count of leading keys that exist, or -errno (lengths of keys
 * not answered are 0). Takes c->lock. */
static int exists_run(hc_client *c, const char *keys, size_t len, size_t n, uint64_t *lengths)
{
    size_t cap = c->max_frame > 2 * HC_FRAME_BASE_EST ? c->max_frame - HC_FRAME_BASE_EST : 1;
    size_t pos = 0, i = 0, leading = 0;
    bool open = true;
    int r = 0;

    if (lengths != NULL)
        memset(lengths, 0, n * sizeof(*lengths));
    pthread_mutex_lock(&c->lock);
    if (c->broken) {
        r = c->broken;
        goto out;
    }
    while (i < n) {
        Hicache__Request req = HICACHE__REQUEST__INIT;
        Hicache__ExistsRequest ex = HICACHE__EXISTS_REQUEST__INIT;
        Hicache__Response *resp;
        size_t start = pos, first = i, cnt = 0, j;

        while (i < n && cnt < c->max_batch) {
            const char *nul = memchr(keys + pos, '\0', len - pos);
            size_t next = (size_t)(nul - keys) + 1;

            if (cnt > 0 && next - start > cap)
                break;
            pos = next;
            i++;
            cnt++;
        }
        ex.packed_keys.data = (uint8_t *)(keys + start);
        ex.packed_keys.len = pos - start;
        req.body_case = HICACHE__REQUEST__BODY_EXISTS;
        req.exists = &ex;
        r = call(c, &req, NULL, &resp);
        if (r < 0)
            goto out;
        if (resp->status < 0) {
            r = resp->status;
        } else if (resp->n_results != cnt || resp->n_lengths != cnt) {
            r = conn_fail(c, -EPROTO);
        } else {
            for (j = 0; j < cnt; j++) {
                bool hit = resp->results[j] == 0;

                if (lengths != NULL)
                    lengths[first + j] = !hit                   ? 0
                                         : resp->lengths[j] > 0 ? resp->lengths[j]
                                                                : HC_LEN_UNKNOWN;
                open = open && hit;
                leading += open;
            }
        }
        hicache__response__free_unpacked(resp, NULL);
        if (r < 0)
            goto out;
    }
    r = (int)leading;
out:
    pthread_mutex_unlock(&c->lock);
    return r;
}

HC_EXPORT int hc_batch_exists_packed(hc_client *c, const char *keys, size_t len, size_t n,
                                     uint64_t *lengths)
{
    size_t nuls = 0;
    const char *p = keys, *end = keys + len;

    if (c == NULL || n > INT_MAX || (n > 0 && (keys == NULL || len == 0 || keys[len - 1] != '\0')))
        return -EINVAL;
    if (n == 0)
        return 0;
    while (p < end && (p = memchr(p, '\0', (size_t)(end - p))) != NULL) {
        nuls++;
        p++;
    }
    if (nuls != n)
        return -EINVAL;
    return exists_run(c, keys, len, n, lengths);
}

HC_EXPORT int hc_batch_exists(hc_client *c, const char *const *keys, size_t n, uint64_t *lengths)
{
    size_t i, len = 0, klen[HC_MAX_BATCH];
    char *blob, *p;
    int r;

    if (c == NULL || (keys == NULL && n > 0) || n > INT_MAX)
        return -EINVAL;
    for (i = 0; i < n; i++) {
        size_t kl;

        if (key_check(keys[i]) < 0)
            return -EINVAL;
        kl = strlen(keys[i]);
        if (i < HC_MAX_BATCH)
            klen[i] = kl;
        len += kl + 1;
    }
    if (n == 0)
        return 0;
    blob = malloc(len);
    if (blob == NULL)
        return -ENOMEM;
    for (i = 0, p = blob; i < n; i++) {
        size_t kl = i < HC_MAX_BATCH ? klen[i] : strlen(keys[i]);

        memcpy(p, keys[i], kl + 1);
        p += kl + 1;
    }
    r = exists_run(c, blob, len, n, lengths);
    free(blob);
    return r;
}

/* ---- control calls -------------------------------------------------------- */

/* Runs one control request under the lock. Returns 0 and sets *out, or
 * -errno: the connection's break state, a stream error, or the response's
 * whole-request status. */
static int control(hc_client *c, Hicache__Request *req, Hicache__Response **out)
{
    int r;

    pthread_mutex_lock(&c->lock);
    r = c->broken;
    if (r == 0)
        r = call(c, req, NULL, out);
    pthread_mutex_unlock(&c->lock);
    if (r == 0 && (*out)->status < 0) {
        r = (*out)->status;
        hicache__response__free_unpacked(*out, NULL);
    }
    return r;
}

HC_EXPORT int hc_stats(hc_client *c, char **json)
{
    Hicache__Request req = HICACHE__REQUEST__INIT;
    Hicache__StatsRequest st = HICACHE__STATS_REQUEST__INIT;
    Hicache__Response *resp;
    char *s;
    int r;

    if (c == NULL || json == NULL)
        return -EINVAL;
    req.body_case = HICACHE__REQUEST__BODY_STATS;
    req.stats = &st;
    r = control(c, &req, &resp);
    if (r < 0)
        return r;
    s = strdup(resp->stats_json != NULL ? resp->stats_json : "");
    hicache__response__free_unpacked(resp, NULL);
    if (s == NULL)
        return -ENOMEM;
    *json = s;
    return 0;
}

/* Returns the number of pages dropped (capped at INT_MAX), or -errno. */
HC_EXPORT int hc_clear(hc_client *c)
{
    Hicache__Request req = HICACHE__REQUEST__INIT;
    Hicache__ClearRequest cl = HICACHE__CLEAR_REQUEST__INIT;
    Hicache__Response *resp;
    uint64_t dropped;
    int r;

    if (c == NULL)
        return -EINVAL;
    req.body_case = HICACHE__REQUEST__BODY_CLEAR;
    req.clear = &cl;
    r = control(c, &req, &resp);
    if (r < 0)
        return r;
    dropped = resp->n_lengths > 0 ? resp->lengths[0] : 0;
    hicache__response__free_unpacked(resp, NULL);
    return dropped > INT_MAX ? INT_MAX : (int)dropped;
}

HC_EXPORT int hc_ping(hc_client *c)
{
    Hicache__Request req = HICACHE__REQUEST__INIT;
    Hicache__PingRequest ping = HICACHE__PING_REQUEST__INIT;
    Hicache__Response *resp;
    int r;

    if (c == NULL)
        return -EINVAL;
    ping.nonce = ((uint64_t)now_ms() << 20) ^ (uint64_t)(uintptr_t)c;
    req.body_case = HICACHE__REQUEST__BODY_PING;
    req.ping = &ping;
    r = control(c, &req, &resp);
    if (r < 0)
        return r;
    r = resp->nonce == ping.nonce ? 0 : -EPROTO;
    hicache__response__free_unpacked(resp, NULL);
    return r;
}

HC_EXPORT int hc_pool_register(hc_client *c, int fd, void *base, uint64_t size)
{
    Hicache__Request req = HICACHE__REQUEST__INIT;
    Hicache__PoolRequest pr = HICACHE__POOL_REQUEST__INIT;
    Hicache__Response *resp = NULL;
    int r;

    if (c == NULL || fd < 0 || base == NULL || size == 0 || size > UINTPTR_MAX - (uintptr_t)base)
        return -EINVAL;
    pr.size = size;
    req.body_case = HICACHE__REQUEST__BODY_POOL;
    req.pool = &pr;
    pthread_mutex_lock(&c->lock);
    if (c->npools == HC_MAX_POOLS) {
        pthread_mutex_unlock(&c->lock);
        return -ENOSPC;
    }
    r = c->broken ? c->broken : call_fd(c, &req, fd, NULL, &resp);
    if (r == 0) {
        r = resp->status < 0 ? resp->status : resp->pool == 0 ? -EPROTO : (int)resp->pool;
        if (r > 0)
            c->pools[c->npools++] = (struct hc_pool){base, size, resp->pool};
        hicache__response__free_unpacked(resp, NULL);
    }
    pthread_mutex_unlock(&c->lock);
    return r;
}
