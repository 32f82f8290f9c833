/* Connections: accepting them (with the peer's credentials), reading frames
 * as far as backpressure allows (CONN_MAX_INFLIGHT requests, CONN_MAX_QUEUED
 * reply bytes), queueing replies, and closing, at once or after the replies
 * already queued (an error reply must arrive before the connection ends). A
 * connection is freed when its handle is closed and no request holds it
 * (refs).
 *
 * Threads: loop thread only. */
#include "server_int.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"

/* Drops a reference; the last one frees c. */
void hc__conn_unref(struct conn *c)
{
    if (--c->refs > 0)
        return;
    hc_frame_decoder_free(&c->dec);
    hc_region_unref(c->region);
    for (unsigned i = 0; i < c->npools; i++)
        hc_region_unref(c->pools[i]);
    c->srv->stats.pools -= c->npools;
    c->srv->pool_bytes -= c->pool_bytes;
    c->srv->ahead -= c->ahead;
    c->srv->stats.mapped_ahead_bytes = c->srv->ahead;
    for (unsigned i = 0; i < c->npassed; i++)
        close(c->passed[i]);
    free(c);
}

static void on_conn_closed(uv_handle_t *h)
{
    struct conn *c = (struct conn *)h;
    struct server *srv = c->srv;

    if (c->prev)
        c->prev->next = c->next;
    else
        srv->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    if (c->slot == CONN_PENDING)
        srv->n_pending--;
    else if (c->slot == CONN_DENIED)
        srv->n_denied--;
    else if (c->slot == CONN_ADMITTED)
        srv->stats.clients--;
    hc_log(HC_LOG_DEBUG, "client %" PRIu64 " (pid %d) gone", c->num, (int)c->pid);
    hc__conn_unref(c);
}

/* Closes now, whatever is queued (also a connection waiting in
 * hc__conn_close_after_flush). */
void hc__conn_close(struct conn *c)
{
    c->closing = true;
    c->reading = false;
    if (uv_is_closing((uv_handle_t *)&c->pipe))
        return;
    uv_read_stop((uv_stream_t *)&c->pipe);
    uv_close((uv_handle_t *)&c->pipe, on_conn_closed);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    struct conn *c = req->data;

    free(req);
    hc__conn_close(c);
    hc__conn_unref(c);
}

/* Closes after the replies already queued reach the client (an error reply
 * must arrive before the connection ends). */
void hc__conn_close_after_flush(struct conn *c)
{
    uv_shutdown_t *req;

    if (c->closing)
        return;
    req = malloc(sizeof(*req));
    if (!req) {
        hc__conn_close(c);
        return;
    }
    c->closing = true;
    c->reading = false;
    c->deadline_ms = uv_now(&c->srv->loop) + FLUSH_TIMEOUT_MS;
    uv_read_stop((uv_stream_t *)&c->pipe);
    req->data = c;
    c->refs++;
    if (uv_shutdown(req, (uv_stream_t *)&c->pipe, on_shutdown) != 0) {
        free(req);
        c->refs--;
        hc__conn_close(c);
    }
}

/* A queued reply was written (or failed): maybe read again. Also the write
 * callback of the rest of a hello reply (hello.c). */
void hc__conn_on_write(uv_write_t *req, int status)
{
    struct write_req *w = (struct write_req *)req;
    struct conn *c = req->data;

    free(w);
    if (status < 0 && status != UV_ECANCELED)
        hc__conn_close(c);
    else if (!c->closing && !c->reading)
        hc__conn_process(c); /* the write queue shrank: maybe read again */
    hc__conn_unref(c);
}

/* Packs resp into a frame and queues it. Returns 0 or -errno (the connection
 * is then closed). */
int hc__conn_send(struct conn *c, const Hicache__Response *resp)
{
    size_t len = hicache__response__get_packed_size(resp);
    struct write_req *w;
    int rc;

    if (c->closing)
        return -ESHUTDOWN;
    w = malloc(sizeof(*w) + HC_FRAME_HDR + len);
    if (!w) {
        hc__conn_close(c);
        return -ENOMEM;
    }
    hc_frame_put_len(w->data, (uint32_t)len);
    hicache__response__pack(resp, w->data + HC_FRAME_HDR);
    w->buf = uv_buf_init((char *)w->data, (unsigned)(HC_FRAME_HDR + len));
    w->req.data = c;
    c->refs++;
    rc = uv_write(&w->req, (uv_stream_t *)&c->pipe, &w->buf, 1, hc__conn_on_write);
    if (rc < 0) {
        free(w);
        c->refs--;
        hc__conn_close(c);
        return rc;
    }
    return 0;
}

/* Sends an error reply (status, formatted reason) for request id, counted in
 * bad_requests. */
void hc__send_error(struct conn *c, uint64_t id, int status, const char *fmt, ...)
{
    Hicache__Response resp = HICACHE__RESPONSE__INIT;
    char msg[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    resp.id = id;
    resp.status = status;
    resp.error = msg;
    c->srv->stats.bad_requests++;
    hc_log(HC_LOG_DEBUG, "client %" PRIu64 ": %s", c->num, msg);
    hc__conn_send(c, &resp);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct conn *c = (struct conn *)h;
    *buf = uv_buf_init(c->srv->read_buf, sizeof(c->srv->read_buf));
}

/* Takes the descriptors the peer passed with the bytes just read (the pipe
 * is an IPC pipe: libuv holds them) into c->passed, for PoolRequests to take.
 * Returns 0, or -EMFILE when the peer passed more than CONN_MAX_PASSED that
 * nothing took (each one is closed). */
static int take_passed(struct conn *c)
{
    int rc = 0;

    while (uv_pipe_pending_count(&c->pipe) > 0) {
        uv_pipe_t *h = malloc(sizeof(*h));
        uv_os_fd_t fd = -1;
        int dup_fd = -1;

        /* libuv hands a passed descriptor over only through a handle: take
         * it into one, keep a duplicate, close the handle (and its copy). */
        if (!h || uv_pipe_init(&c->srv->loop, h, 0) != 0) {
            free(h);
            return -ENOMEM; /* the rest are closed with the pipe */
        }
        if (uv_accept((uv_stream_t *)&c->pipe, (uv_stream_t *)h) == 0 &&
            uv_fileno((uv_handle_t *)h, &fd) == 0)
            dup_fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        uv_close((uv_handle_t *)h, (uv_close_cb)free);
        if (dup_fd < 0)
            continue;
        if (c->npassed == CONN_MAX_PASSED) {
            close(dup_fd);
            rc = -EMFILE;
            continue;
        }
        c->passed[c->npassed++] = dup_fd;
    }
    return rc;
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct conn *c = (struct conn *)stream;

    if (take_passed(c) < 0) {
        hc_log(HC_LOG_WARN, "client %" PRIu64 " (pid %d) passed more than %d descriptors: closed",
               c->num, (int)c->pid, CONN_MAX_PASSED);
        hc__conn_close(c);
        return;
    }
    if (nread < 0) {
        hc__conn_close(c);
        return;
    }
    if (nread == 0)
        return;
    if (hc_frame_decoder_feed(&c->dec, buf->base, (size_t)nread) < 0) {
        hc__conn_close(c);
        return;
    }
    hc__conn_process(c);
}

/* True when c may take another request now: it is open, the server is not
 * stopping, and neither its requests in flight nor its queued replies are at
 * their limit. */
static bool conn_can_take(const struct conn *c)
{
    return !c->closing && !c->srv->stopping && c->inflight < CONN_MAX_INFLIGHT &&
           uv_stream_get_write_queue_size((const uv_stream_t *)&c->pipe) < CONN_MAX_QUEUED;
}

/* Handles the whole frames held, as far as backpressure allows, and starts or
 * stops reading accordingly. Never re-entered: a batch that finishes while its
 * request is being handled leaves the next frame to the loop already running
 * (a stream of requests that finish at once must not grow the stack). */
void hc__conn_process(struct conn *c)
{
    if (c->processing)
        return;
    c->processing = true;
    c->refs++; /* a handler may close the connection */
    while (conn_can_take(c)) {
        const uint8_t *body;
        uint32_t len;
        Hicache__Request *req;
        int rc = hc_frame_decoder_next(&c->dec, &body, &len);

        if (rc == 0)
            break;
        if (rc < 0) {
            hc__send_error(c, 0, -EMSGSIZE, "frame exceeds the limit of %u bytes%s",
                           c->dec.max_frame, c->hello ? "" : " before hello");
            hc__conn_close_after_flush(c);
            break;
        }
        req = hicache__request__unpack(NULL, len, body);
        if (!req) {
            hc__send_error(c, 0, -EPROTO, "request does not decode (%u bytes)", len);
            hc__conn_close_after_flush(c);
            break;
        }
        hc__handle_request(c, req);
        hicache__request__free_unpacked(req, NULL);
    }
    c->processing = false;
    if (!c->closing) {
        if (!conn_can_take(c)) {
            if (c->reading) {
                uv_read_stop((uv_stream_t *)&c->pipe);
                c->reading = false;
            }
        } else if (!c->reading) {
            if (uv_read_start((uv_stream_t *)&c->pipe, on_alloc, on_read) == 0)
                c->reading = true;
            else
                hc__conn_close(c);
        }
    }
    hc__conn_unref(c);
}

/* A new connection: its peer's credentials are checked now, its hello
 * later. */
void hc__on_connection(uv_stream_t *listener, int status)
{
    struct server *srv = listener->data;
    struct ucred cred;
    socklen_t clen = sizeof(cred);
    uv_os_fd_t fd;
    struct conn *c;

    if (status < 0) {
        hc_log(HC_LOG_WARN, "accept failed: %s", uv_strerror(status));
        return;
    }
    c = calloc(1, sizeof(*c));
    if (!c)
        return;
    c->srv = srv;
    c->refs = 1;
    c->ns = -1;
    c->num = ++srv->next_conn;
    c->deadline_ms = uv_now(&srv->loop) + HELLO_TIMEOUT_MS;
    hc_frame_decoder_init(&c->dec, HELLO_MAX_FRAME);
    /* An IPC pipe: a client passes its host pools' descriptors (PoolRequest) */
    uv_pipe_init(&srv->loop, &c->pipe, 1);
    if (uv_accept(listener, (uv_stream_t *)&c->pipe) < 0) {
        uv_close((uv_handle_t *)&c->pipe, (uv_close_cb)free);
        return;
    }
    c->next = srv->conns;
    if (srv->conns)
        srv->conns->prev = c;
    srv->conns = c;
    srv->stats.connections++;
    if (uv_fileno((uv_handle_t *)&c->pipe, &fd) == 0 &&
        getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) == 0) {
        c->pid = cred.pid;
        c->uid = cred.uid;
        c->gid = cred.gid;
        c->denied = !hc__peer_allowed(srv, cred.uid, cred.gid);
    } else {
        c->denied = srv->restrict_peers;
    }
    /* Refused peers and peers that have not said hello each have a limit of
     * their own: neither can take the room of admitted clients. */
    if (srv->stopping ||
        (c->denied ? srv->n_denied >= CONN_DENIED_MAX
                   : srv->n_pending >= srv->cfg->max_clients + CONN_HANDSHAKE_SLACK)) {
        hc__conn_close(c);
        return;
    }
    c->slot = c->denied ? CONN_DENIED : CONN_PENDING;
    if (c->denied)
        srv->n_denied++;
    else
        srv->n_pending++;
    hc__conn_process(c);
}

/* Closes connections that did not say hello in time, and connections whose
 * peer did not read its error reply in time. */
void hc__sweep_conns(struct server *srv, uint64_t now)
{
    struct conn *c;

    for (c = srv->conns; c; c = c->next) {
        if (c->closing) {
            if (c->deadline_ms && now >= c->deadline_ms)
                hc__conn_close(c);
        } else if (!c->hello && now >= c->deadline_ms) {
            hc__send_error(c, 0, -ETIMEDOUT, "no hello within %u ms", HELLO_TIMEOUT_MS);
            hc__conn_close_after_flush(c);
        }
    }
}
