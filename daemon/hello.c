/* The handshake. A hello is checked (peer allowed, protocol version,
 * namespace, options, client count); the daemon then creates the client's
 * shared region (shm.c) and sends its fd with the reply (SCM_RIGHTS). A hello
 * that fails its checks gets an error reply and the connection is closed
 * after it. The region of a client that named its page size is then
 * allocated ahead (within map_ahead), in the background (hc__region_populate,
 * also for the host pools of request.c).
 *
 * Threads: loop thread, except populate_work, which runs on an I/O thread. */
#include "server_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "hicache_defs.h"
#include "log.h"

/* The region size for a client: the configured size, or four pages of the
 * client's page_size_hint when that is more, at most REGION_MAX. */
static uint64_t region_size_for(const struct hc_config *cfg, uint64_t hint)
{
    uint64_t size = cfg->region_size;

    if (hint > REGION_MAX / 4)
        return REGION_MAX;
    hint = (hint * 4 + 4095) & ~4095ull;
    if (hint > size)
        size = hint;
    return size > REGION_MAX ? REGION_MAX : size;
}

/* The hello reply carries the region's fd, so it is written with sendmsg(2)
 * directly: it is the first thing this connection is ever sent (requests
 * before hello close the connection), so no queued write can be overtaken. */
static int send_hello_reply(struct conn *c, const Hicache__Response *resp)
{
    size_t len = hicache__response__get_packed_size(resp);
    uint8_t *frame = malloc(HC_FRAME_HDR + len);
    union hc_fd_cmsg ctl;
    struct msghdr msg = {0};
    struct iovec iov;
    uv_os_fd_t fd;
    ssize_t sent;

    if (!frame)
        return -ENOMEM;
    hc_frame_put_len(frame, (uint32_t)len);
    hicache__response__pack(resp, frame + HC_FRAME_HDR);
    if (uv_fileno((uv_handle_t *)&c->pipe, &fd) < 0) {
        free(frame);
        return -EBADF;
    }
    iov.iov_base = frame;
    iov.iov_len = HC_FRAME_HDR + len;
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    hc_frame_pass_fd(&msg, &ctl, c->region->fd);
    do
        sent = sendmsg(fd, &msg, MSG_NOSIGNAL);
    while (sent < 0 && errno == EINTR);
    if (sent < 0) {
        int e = -errno;
        free(frame);
        return e;
    }
    if ((size_t)sent < iov.iov_len) {
        /* The socket buffer of a new connection took less than a small frame:
         * queue the rest behind it. */
        struct write_req *w = malloc(sizeof(*w) + iov.iov_len - (size_t)sent);
        if (!w) {
            free(frame);
            return -ENOMEM;
        }
        memcpy(w->data, frame + sent, iov.iov_len - (size_t)sent);
        w->buf = uv_buf_init((char *)w->data, (unsigned)(iov.iov_len - (size_t)sent));
        w->req.data = c;
        c->refs++;
        if (uv_write(&w->req, (uv_stream_t *)&c->pipe, &w->buf, 1, hc__conn_on_write) < 0) {
            c->refs--;
            free(w);
            free(frame);
            return -EIO;
        }
    }
    free(frame);
    return 0;
}

/* The checks of a hello before the daemon spends anything on the client:
 * peer allowed, protocol version, namespace (*ns, *ns_len: "default" when
 * empty), options, room for one more client. Returns true when the hello is
 * refused: the error reply is sent and the caller closes after it. */
static bool hello_refused(struct conn *c, const Hicache__Request *req, const char **ns,
                          size_t *ns_len)
{
    const Hicache__Hello *h = req->hello;
    const char *bad;

    /* A refused peer is told at its hello (which it sends right after
     * connecting), so its library reads the reason instead of a reset; until
     * then it can hold only a 4 KiB frame buffer, for 10 s at most. */
    if (c->denied) {
        hc_log(HC_LOG_WARN, "refused pid %d uid %u: not in allowed_uids / allowed_gids",
               (int)c->pid, (unsigned)c->uid);
        hc__send_error(c, req->id, -EACCES, "uid %u is not allowed to use this daemon",
                       (unsigned)c->uid);
        return true;
    }
    if (h->protocol_version != HC_PROTOCOL_VERSION) {
        hc__send_error(c, req->id, -EPROTO,
                       "protocol version %u is not supported (daemon speaks %d)",
                       h->protocol_version, HC_PROTOCOL_VERSION);
        return true;
    }
    if (*ns_len == 0) {
        *ns = "default";
        *ns_len = strlen(*ns);
    }
    bad = hc_name_invalid("namespace", *ns, *ns_len);
    if (bad) {
        hc__send_error(c, req->id, -EINVAL, "%s", bad);
        return true;
    }
    if (h->compression > HC_COMPRESSION_ZSTD) {
        hc__send_error(c, req->id, -EINVAL,
                       "compression %u is not known (0 daemon default, 1 off, 2 zstd)",
                       h->compression);
        return true;
    }
    if (h->readers_per_page > HC_MAX_READERS_PER_PAGE) {
        hc__send_error(c, req->id, -EINVAL, "readers_per_page %u exceeds %u", h->readers_per_page,
                       HC_MAX_READERS_PER_PAGE);
        return true;
    }
    if (c->srv->stats.clients >= c->srv->cfg->max_clients) {
        hc__send_error(c, req->id, -EBUSY, "too many clients (max_clients is %u)",
                       c->srv->cfg->max_clients);
        return true;
    }
    return false;
}

/* Bytes of a region populated by one task. One task runs at a time in the
 * whole daemon, so that mapping ahead takes one I/O thread at most, for a
 * few ms a step (with the uring engine, that thread's ring waits meanwhile). */
#define POPULATE_STEP (16ull << 20)

/* A region or pool to map ahead, a step at a time; holds a reference. */
struct populate {
    struct populate *next;
    struct server *srv;
    /* r's connection, charged for [0, end): valid while the job is not r's
     * only holder (refs > 1). The connection holds r until it is freed, and
     * whatever else holds r (a batch in flight) holds the connection. */
    struct conn *c;
    struct hc_region *r;
    uint64_t off; /* the next step */
    uint64_t end; /* mapped ahead up to here (within the server's map_ahead) */
};

/* A job that ends before its end (a step failed, or the server stopping)
 * gives back the charge of the bytes after its last step, while its
 * connection lives (a freed connection gave back all of its own). Loop
 * thread. */
static void populate_refund(struct populate *p)
{
    uint64_t left = p->off < p->end ? p->end - p->off : 0;

    if (!left || p->r->refs <= 1)
        return;
    p->c->ahead -= left;
    p->srv->ahead -= left;
    p->srv->stats.mapped_ahead_bytes = p->srv->ahead;
    p->end = p->off;
}

/* Called on an I/O thread (hc_store_background): allocates and maps one step
 * of the region, which the job's reference keeps mapped; reads only the job,
 * which the loop thread leaves alone meanwhile. */
static int populate_work(void *arg)
{
    struct populate *p = arg;
    uint64_t left = p->end - p->off;

    return hc_region_populate(p->r, p->off, left < POPULATE_STEP ? left : POPULATE_STEP);
}

static void populate_done(void *arg, int rc);

/* Sends the next step of the first job, dropping the jobs that are done,
 * whose connection is gone (the job holds the region's last reference), or
 * that cannot go on (the server or the store stopping). Loop thread. */
static void populate_next(struct server *srv)
{
    struct populate *p;

    while ((p = srv->pop_head)) {
        if (!srv->stopping && p->off < p->end && p->r->refs > 1 &&
            hc_store_background(srv->store, populate_work, populate_done, p) == 0) {
            srv->pop_busy = true;
            return;
        }
        srv->pop_head = p->next;
        if (!srv->pop_head)
            srv->pop_tail = NULL;
        populate_refund(p);
        hc_region_unref(p->r);
        free(p);
    }
    srv->pop_busy = false;
}

/* Back on the loop thread after a step. */
static void populate_done(void *arg, int rc)
{
    struct populate *p = arg;

    if (rc < 0) {
        hc_log(rc == -EINVAL ? HC_LOG_DEBUG : HC_LOG_WARN,
               "a client's %s of %" PRIu64 " bytes was not mapped ahead: %s (its pages come as "
               "they are used)",
               p->r->pool ? "host pool" : "shared region", p->r->size, strerror(-rc));
    }
    p->off += POPULATE_STEP; /* a failed step may have mapped some: kept charged */
    if (rc < 0)
        populate_refund(p); /* the job ends */
    populate_next(p->srv);
}

/* Maps r (a client's region or host pool) into the daemon ahead of use, in
 * the background: the I/O threads' copies of the client's first batches then
 * find its pages there instead of faulting each one in (4 us a page on a
 * 2-core VM: as much CPU as the reads themselves of a cold pass through a new
 * region). A pool only when all its memory is allocated already
 * (hc_region_allocated): the daemon never allocates a pool's memory for its
 * owner. All of r, or as much of its start as the server's map_ahead has left:
 * the bytes mapped stay charged to c (c->ahead) until c is freed, so that the
 * peers connected at a time cannot make the daemon map more than map_ahead
 * ahead by saying hello (and a region of the daemon's own gives its pages
 * back when it is released, hc_region_unref, also if its peer kept the fd).
 * The bytes after the last step of a job that ends early (a step failed: no
 * MADV_POPULATE_WRITE before Linux 5.14, or no memory) go back at once.
 * Jobs run in order, one step at a time. Loop thread. */
void hc__region_populate(struct conn *c, struct hc_region *r)
{
    struct server *srv = c->srv;
    uint64_t len = 0;
    struct populate *p;

    if (srv->ahead < srv->cfg->map_ahead)
        len = srv->cfg->map_ahead - srv->ahead;
    if (len > r->size)
        len = r->size;
    if (!len || !hc_region_allocated(r) || !(p = malloc(sizeof(*p))))
        return;
    *p = (struct populate){.srv = srv, .c = c, .r = r, .end = len};
    hc_region_ref(r);
    c->ahead += len;
    srv->ahead += len;
    srv->stats.mapped_ahead_bytes = srv->ahead;
    if (srv->pop_tail)
        srv->pop_tail->next = p;
    else
        srv->pop_head = p;
    srv->pop_tail = p;
    if (!srv->pop_busy)
        populate_next(srv);
}

/* Hello: checks the peer and its options, creates its region and replies
 * with the region's fd; any failure closes the connection after the error
 * reply. */
void hc__handle_hello(struct conn *c, const Hicache__Request *req)
{
    struct server *srv = c->srv;
    const Hicache__Hello *h = req->hello;
    Hicache__Response resp = HICACHE__RESPONSE__INIT;
    Hicache__HelloReply hr = HICACHE__HELLO_REPLY__INIT;
    const char *ns = (const char *)h->namespace_.data;
    size_t ns_len = h->namespace_.len;
    char name[64];
    uint64_t size;
    int rc;

    if (c->hello) {
        hc__send_error(c, req->id, -EPROTO, "hello was already received on this connection");
        return;
    }
    if (hello_refused(c, req, &ns, &ns_len))
        goto close;
    /* The store learns a namespace at its first set (conn_ns): hellos alone,
     * whatever names they carry, cost the store nothing. */
    memcpy(c->ns_name, ns, ns_len);
    c->ns_len = ns_len;
    c->ns = hc_store_ns_lookup(srv->store, ns, ns_len);
    c->sopts.readers = h->readers_per_page;
    c->sopts.compression = h->compression;
    c->sopts.stream = (uint32_t)(c->num % UINT32_MAX) + 1; /* never 0 */
    size = region_size_for(srv->cfg, h->page_size_hint);
    snprintf(name, sizeof(name), "hicache-client-%" PRIu64, c->num);
    rc = hc_region_create(&c->region, size, name);
    if (rc < 0) {
        hc__send_error(c, req->id, rc, "cannot create the shared region of %" PRIu64 " bytes: %s",
                       size, strerror(-rc));
        goto close;
    }
    hr.protocol_version = HC_PROTOCOL_VERSION;
    hr.region_size = c->region->size;
    /* With O_DIRECT, page-aligned slots spare a bounce copy; buffered reads
     * and writes take any 64-byte-aligned slot, and libhicache then places a
     * get's slot where its copy out runs fastest (hc__crc32c_copy_hw). */
    hr.slot_align = srv->cfg->use_direct_io ? 4096 : 64;
    hr.max_batch = srv->cfg->max_batch;
    hr.max_frame = srv->cfg->max_frame_bytes;
    hr.node_id = srv->cfg->node_id;
    resp.id = req->id;
    resp.hello = &hr;
    rc = send_hello_reply(c, &resp);
    if (rc < 0) {
        hc_log(HC_LOG_WARN, "client %" PRIu64 ": cannot send the hello reply: %s", c->num,
               strerror(-rc));
        hc__conn_close(c);
        return;
    }
    /* The client holds the region now (its mapping stays ours): one fd per
     * client instead of two. */
    close(c->region->fd);
    c->region->fd = -1;
    c->hello = true;
    if (c->slot == CONN_PENDING) { /* admitted: it leaves the handshake's room */
        srv->n_pending--;
        c->slot = CONN_ADMITTED;
        srv->stats.clients++;
    }
    c->dec.max_frame = srv->cfg->max_frame_bytes;
    /* A client that named its page size moves pages through its region from
     * its first batch on and keeps the connection (an SGLang rank); one
     * without (hicachectl's stats) costs nothing more. */
    if (h->page_size_hint > 0)
        hc__region_populate(c, c->region);
    hc_log(HC_LOG_DEBUG,
           "client %" PRIu64 " (pid %d uid %u) namespace %.*s rank %u region %" PRIu64
           " bytes, readers_per_page %u, compression %u",
           c->num, (int)c->pid, (unsigned)c->uid, (int)ns_len, ns, h->rank, c->region->size,
           h->readers_per_page, h->compression);
    return;
close:
    hc__conn_close_after_flush(c);
}
