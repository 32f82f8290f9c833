/* Loop thread only: every function here runs on the libuv loop thread. */
#include "server.h"

#include <errno.h>
#include <grp.h>
#include <inttypes.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <uv.h>

#include "frame.h"
#include "hicache_defs.h"
#include "hicache.pb-c.h"
#include "io.h"
#include "key.h"
#include "log.h"
#include "notify.h"
#include "shm.h"
#include "stats.h"
#include "store.h"

/* A connection stops being read while this many of its requests are in
 * flight (backpressure, not an error). */
#define CONN_MAX_INFLIGHT 16
/* Connections beyond max_clients are refused at hello; this many more may
 * wait in the handshake before new ones are closed at accept. */
#define CONN_HANDSHAKE_SLACK 16
/* A connection stops being read while this many reply bytes wait for it to
 * read them: a client that never reads cannot make the daemon queue more. */
#define CONN_MAX_QUEUED (4u << 20)
/* Before hello a peer may send only small frames, and must say hello soon. */
#define HELLO_MAX_FRAME 4096u
#define HELLO_TIMEOUT_MS 10000u
/* readers_per_page a hello may declare (TP ranks of one server, with room). */
/* A connection closed after an error reply waits this long for the peer to
 * read it, then is closed regardless. */
#define FLUSH_TIMEOUT_MS 5000u
#define REGION_MAX (1ull << 30)
#define READ_BUF_SIZE (64u * 1024u)
#define MAX_IDS 64

struct server;

struct conn {
    uv_pipe_t pipe; /* first: handle callbacks cast back to the conn */
    struct server *srv;
    struct conn *prev, *next;
    struct hc_frame_decoder dec;
    struct hc_region *region; /* after hello */
    int ns;                   /* store namespace id; -1 until the store knows the name */
    char ns_name[HC_NS_MAX + 1];
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
    bool closing;
    bool reading;
    bool processing; /* conn_process is on the stack: do not re-enter it */
};

/* One set or get request in flight. Owned by the server; each store callback
 * gets one of its items. */
struct batch {
    struct conn *conn;
    struct hc_region *region;
    uint64_t id;
    unsigned n;
    unsigned remaining;
    int32_t *results;
    uint64_t *lengths;
    struct batch_item {
        struct batch *b;
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
    int argc; /* for reload: the config file and the flags are read again */
    char **argv;
    struct hc_io_pool *io;
    struct hc_store *store;
    struct hc_stats stats;
    struct conn *conns;
    uint64_t next_conn;
    uint64_t start_ms;
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

static void conn_process(struct conn *c);

/* ---- connections ------------------------------------------------------ */

static void conn_unref(struct conn *c)
{
    if (--c->refs > 0)
        return;
    hc_frame_decoder_free(&c->dec);
    hc_region_unref(c->region);
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
    srv->stats.clients--;
    hc_log(HC_LOG_DEBUG, "client %" PRIu64 " (pid %d) gone", c->num, (int)c->pid);
    conn_unref(c);
}

/* Closes now, whatever is queued (also a connection waiting in
 * conn_close_after_flush). */
static void conn_close(struct conn *c)
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
    conn_close(c);
    conn_unref(c);
}

/* Closes after the replies already queued reach the client (an error reply
 * must arrive before the connection ends). */
static void conn_close_after_flush(struct conn *c)
{
    uv_shutdown_t *req;

    if (c->closing)
        return;
    req = malloc(sizeof(*req));
    if (!req) {
        conn_close(c);
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
        conn_close(c);
    }
}

static void on_write(uv_write_t *req, int status)
{
    struct write_req *w = (struct write_req *)req;
    struct conn *c = req->data;

    free(w);
    if (status < 0 && status != UV_ECANCELED)
        conn_close(c);
    else if (!c->closing && !c->reading)
        conn_process(c); /* the write queue shrank: maybe read again */
    conn_unref(c);
}

/* Packs resp into a frame and queues it. Returns 0 or -errno (the connection
 * is then closed). */
static int conn_send(struct conn *c, const Hicache__Response *resp)
{
    size_t len = hicache__response__get_packed_size(resp);
    struct write_req *w;
    int rc;

    if (c->closing)
        return -ESHUTDOWN;
    w = malloc(sizeof(*w) + HC_FRAME_HDR + len);
    if (!w) {
        conn_close(c);
        return -ENOMEM;
    }
    hc_frame_put_len(w->data, (uint32_t)len);
    hicache__response__pack(resp, w->data + HC_FRAME_HDR);
    w->buf = uv_buf_init((char *)w->data, (unsigned)(HC_FRAME_HDR + len));
    w->req.data = c;
    c->refs++;
    rc = uv_write(&w->req, (uv_stream_t *)&c->pipe, &w->buf, 1, on_write);
    if (rc < 0) {
        free(w);
        c->refs--;
        conn_close(c);
        return rc;
    }
    return 0;
}

static void send_error(struct conn *c, uint64_t id, int status, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void send_error(struct conn *c, uint64_t id, int status, const char *fmt, ...)
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
    conn_send(c, &resp);
}

/* ---- peers ------------------------------------------------------------ */

/* Parses "0,1000,alice" into ids. Returns 0 or -EINVAL naming the entry. */
static int parse_ids(const char *list, bool groups, unsigned *ids, unsigned *n, char *err,
                     size_t errlen)
{
    char *copy, *save = NULL, *tok;
    int rc = 0;

    *n = 0;
    if (!list || !*list)
        return 0;
    copy = strdup(list);
    if (!copy)
        return -ENOMEM;
    for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *end;
        unsigned long v;

        while (*tok == ' ')
            tok++;
        if (!*tok)
            continue;
        if (*n == MAX_IDS) {
            snprintf(err, errlen, "more than %d entries in allowed_%s", MAX_IDS,
                     groups ? "gids" : "uids");
            rc = -EINVAL;
            break;
        }
        errno = 0;
        v = strtoul(tok, &end, 10);
        if (*end == '\0' && errno == 0 && v <= UINT32_MAX) {
            ids[(*n)++] = (unsigned)v;
            continue;
        }
        if (groups) {
            struct group *g = getgrnam(tok);
            if (g) {
                ids[(*n)++] = g->gr_gid;
                continue;
            }
        } else {
            struct passwd *p = getpwnam(tok);
            if (p) {
                ids[(*n)++] = p->pw_uid;
                continue;
            }
        }
        snprintf(err, errlen, "allowed_%s: no such %s '%s'", groups ? "gids" : "uids",
                 groups ? "group" : "user", tok);
        rc = -EINVAL;
        break;
    }
    free(copy);
    return rc;
}

static bool peer_allowed(const struct server *srv, uid_t uid, gid_t gid)
{
    unsigned i;

    if (!srv->restrict_peers || uid == 0 || uid == geteuid())
        return true;
    for (i = 0; i < srv->n_uids; i++)
        if (srv->allowed_uids[i] == uid)
            return true;
    for (i = 0; i < srv->n_gids; i++)
        if (srv->allowed_gids[i] == gid)
            return true;
    return false;
}

/* ---- requests --------------------------------------------------------- */

static void batch_finish(struct batch *b)
{
    struct conn *c = b->conn;
    Hicache__Response resp = HICACHE__RESPONSE__INIT;

    if (!c->closing) {
        resp.id = b->id;
        resp.n_results = b->n;
        resp.results = b->results;
        resp.n_lengths = b->n;
        resp.lengths = b->lengths;
        conn_send(c, &resp);
    }
    hc_region_unref(b->region);
    free(b->results);
    free(b->lengths);
    free(b);
    c->inflight--;
    if (!c->closing)
        conn_process(c);
    conn_unref(c);
}

static void batch_cb(void *data, int status, uint64_t len)
{
    struct batch_item *it = data;
    struct batch *b = it->b;

    b->results[it->i] = status;
    b->lengths[it->i] = len;
    if (--b->remaining == 0)
        batch_finish(b);
}

/* The connection's namespace id, interning the name when create (a set) and
 * looking it up otherwise. Returns the id, -ENOENT for a namespace the store
 * has never seen (every key is then a miss), or -ENOSPC. */
static int conn_ns(struct conn *c, bool create)
{
    if (c->ns < 0) {
        int rc = create ? hc_store_ns(c->srv->store, c->ns_name, c->ns_len)
                        : hc_store_ns_lookup(c->srv->store, c->ns_name, c->ns_len);
        if (rc < 0)
            return rc;
        c->ns = rc;
    }
    return c->ns;
}

static void handle_batch(struct conn *c, const Hicache__Request *req, bool is_get)
{
    struct server *srv = c->srv;
    Hicache__Slot **pages = is_get ? req->get->pages : req->set->pages;
    size_t n = is_get ? req->get->n_pages : req->set->n_pages;
    struct batch *b;
    size_t i;
    int ns;

    if (n > srv->cfg->max_batch) {
        send_error(c, req->id, -E2BIG, "batch of %zu keys exceeds the limit of %u", n,
                   srv->cfg->max_batch);
        return;
    }
    for (i = 0; i < n; i++) {
        const char *bad =
            hc_name_invalid("key", (const char *)pages[i]->key.data, pages[i]->key.len);
        if (bad) {
            send_error(c, req->id, -EINVAL, "key %zu: %s", i, bad);
            return;
        }
        if (hc_region_check(c->region, pages[i]->offset, pages[i]->length) < 0) {
            send_error(c, req->id, -ERANGE,
                       "slot %zu [%" PRIu64 ", +%" PRIu64 ") is outside the region of %" PRIu64
                       " bytes",
                       i, pages[i]->offset, pages[i]->length, c->region->size);
            return;
        }
    }
    ns = conn_ns(c, !is_get);
    if (ns == -ENOSPC) {
        send_error(c, req->id, -ENOSPC, "too many namespaces in the store");
        return;
    }
    b = calloc(1, sizeof(*b) + n * sizeof(b->items[0]));
    if (!b)
        goto nomem;
    b->results = calloc(n ? n : 1, sizeof(*b->results));
    b->lengths = calloc(n ? n : 1, sizeof(*b->lengths));
    if (!b->results || !b->lengths) {
        free(b->results);
        free(b->lengths);
        free(b);
        goto nomem;
    }
    b->conn = c;
    b->id = req->id;
    b->n = (unsigned)n;
    b->remaining = (unsigned)n + 1; /* +1 until every item is submitted */
    b->region = c->region;
    hc_region_ref(c->region);
    c->refs++;
    c->inflight++;

    for (i = 0; i < n; i++) {
        const Hicache__Slot *s = pages[i];
        uint8_t *buf = c->region->base + s->offset;
        int rc;

        b->items[i].b = b;
        b->items[i].i = (unsigned)i;
        if (ns < 0) {
            rc = -ENOENT; /* a namespace nobody ever stored into */
            srv->stats.gets++;
            srv->stats.misses++;
        } else if (is_get)
            rc = hc_store_get_ex(srv->store, ns, (const char *)s->key.data, s->key.len, buf,
                                 s->length, &c->sopts, batch_cb, &b->items[i]);
        else
            rc = hc_store_set_ex(srv->store, ns, (const char *)s->key.data, s->key.len, buf,
                                 s->length, &c->sopts, batch_cb, &b->items[i]);
        if (rc < 0) {
            b->results[i] = rc;
            b->remaining--;
        }
    }
    if (--b->remaining == 0)
        batch_finish(b);
    return;

nomem:
    send_error(c, req->id, -ENOMEM, "out of memory");
}

/* The keys of an exists request, from its repeated field or from its packed
 * field (each key followed by a NUL). Fills key/klen (HC_MAX_BATCH entries)
 * and *n. Returns NULL, or a readable reason for -EINVAL / -E2BIG (*e2big). */
static const char *exists_keys(const Hicache__ExistsRequest *ex, unsigned max_batch,
                               const char **key, size_t *klen, size_t *n, bool *e2big, char *why,
                               size_t whylen)
{
    const ProtobufCBinaryData *pk = &ex->packed_keys;
    size_t i, limit = max_batch < HC_MAX_BATCH ? max_batch : HC_MAX_BATCH;

    *e2big = false;
    if (pk->len == 0) {
        if (ex->n_keys > limit) {
            *e2big = true;
            snprintf(why, whylen, "batch of %zu keys exceeds the limit of %zu", ex->n_keys, limit);
            return why;
        }
        for (i = 0; i < ex->n_keys; i++) {
            key[i] = (const char *)ex->keys[i].data;
            klen[i] = ex->keys[i].len;
        }
        *n = ex->n_keys;
    } else {
        const char *p = (const char *)pk->data, *end = p + pk->len;

        if (ex->n_keys > 0)
            return "an exists request carries keys or packed_keys, not both";
        if (end[-1] != '\0')
            return "packed_keys does not end with a NUL byte";
        for (i = 0; p < end; i++) {
            const char *nul = memchr(p, '\0', (size_t)(end - p));

            if (i == limit) {
                *e2big = true;
                snprintf(why, whylen, "batch of more than %zu keys exceeds the limit", limit);
                return why;
            }
            key[i] = p;
            klen[i] = (size_t)(nul - p);
            p = nul + 1;
        }
        *n = i;
    }
    for (i = 0; i < *n; i++) {
        const char *bad = hc_name_invalid("key", key[i], klen[i]);
        if (bad) {
            snprintf(why, whylen, "key %zu: %s", i, bad);
            return why;
        }
    }
    return NULL;
}

static void handle_exists(struct conn *c, const Hicache__Request *req)
{
    struct server *srv = c->srv;
    Hicache__Response resp = HICACHE__RESPONSE__INIT;
    const char *key[HC_MAX_BATCH], *bad;
    size_t klen[HC_MAX_BATCH];
    int32_t results[HC_MAX_BATCH];
    uint64_t lengths[HC_MAX_BATCH];
    char why[128];
    bool leading = true, e2big;
    size_t i, n = 0;
    int ns;

    bad = exists_keys(req->exists, srv->cfg->max_batch, key, klen, &n, &e2big, why, sizeof(why));
    if (bad) {
        send_error(c, req->id, e2big ? -E2BIG : -EINVAL, "%s", bad);
        return;
    }
    ns = conn_ns(c, false);
    for (i = 0; i < n; i++) {
        lengths[i] = ns < 0 ? 0 : hc_store_exists(srv->store, ns, key[i], klen[i]);
        results[i] = lengths[i] ? 0 : -ENOENT;
        if (!lengths[i])
            leading = false;
        else if (leading)
            resp.leading++;
    }
    srv->stats.exists += n;
    resp.id = req->id;
    resp.n_results = n;
    resp.results = results;
    resp.n_lengths = n;
    resp.lengths = lengths;
    conn_send(c, &resp);
}

static void handle_stats(struct conn *c, const Hicache__Request *req)
{
    struct server *srv = c->srv;
    Hicache__Response resp = HICACHE__RESPONSE__INIT;
    char *json;

    srv->stats.inflight_bytes = hc_io_pool_inflight_bytes(srv->io);
    json = hc_stats_json(&srv->stats, srv->cfg->node_id,
                         (uv_now(&srv->loop) - srv->start_ms) / 1000, srv->cfg->capacity_bytes);
    if (!json) {
        send_error(c, req->id, -ENOMEM, "out of memory");
        return;
    }
    resp.id = req->id;
    resp.stats_json = json;
    conn_send(c, &resp);
    free(json);
}

static void handle_clear(struct conn *c, const Hicache__Request *req)
{
    Hicache__Response resp = HICACHE__RESPONSE__INIT;
    int ns = conn_ns(c, false);
    uint64_t dropped = ns < 0 ? 0 : hc_store_clear(c->srv->store, ns);

    hc_log(HC_LOG_INFO, "client %" PRIu64 " (pid %d) cleared its namespace: %" PRIu64 " pages",
           c->num, (int)c->pid, dropped);
    resp.id = req->id;
    resp.n_lengths = 1;
    resp.lengths = &dropped;
    conn_send(c, &resp);
}

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
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(sizeof(int))];
    } ctl;
    struct msghdr msg = {0};
    struct iovec iov;
    struct cmsghdr *cm;
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
    memset(&ctl, 0, sizeof(ctl));
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = ctl.buf;
    msg.msg_controllen = sizeof(ctl.buf);
    cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &c->region->fd, sizeof(int));
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
        if (uv_write(&w->req, (uv_stream_t *)&c->pipe, &w->buf, 1, on_write) < 0) {
            c->refs--;
            free(w);
            free(frame);
            return -EIO;
        }
    }
    free(frame);
    return 0;
}

static void handle_hello(struct conn *c, const Hicache__Request *req)
{
    struct server *srv = c->srv;
    const Hicache__Hello *h = req->hello;
    Hicache__Response resp = HICACHE__RESPONSE__INIT;
    Hicache__HelloReply hr = HICACHE__HELLO_REPLY__INIT;
    const char *ns = (const char *)h->namespace_.data;
    size_t ns_len = h->namespace_.len;
    const char *bad;
    char name[64];
    uint64_t size;
    int rc;

    if (c->hello) {
        send_error(c, req->id, -EPROTO, "hello was already received on this connection");
        return;
    }
    /* A refused peer is told at its hello (which it sends right after
     * connecting), so its library reads the reason instead of a reset; until
     * then it can hold only a 4 KiB frame buffer, for 10 s at most. */
    if (c->denied) {
        hc_log(HC_LOG_WARN, "refused pid %d uid %u: not in allowed_uids / allowed_gids",
               (int)c->pid, (unsigned)c->uid);
        send_error(c, req->id, -EACCES, "uid %u is not allowed to use this daemon",
                   (unsigned)c->uid);
        goto close;
    }
    if (h->protocol_version != HC_PROTOCOL_VERSION) {
        send_error(c, req->id, -EPROTO, "protocol version %u is not supported (daemon speaks %d)",
                   h->protocol_version, HC_PROTOCOL_VERSION);
        goto close;
    }
    if (ns_len == 0) {
        ns = "default";
        ns_len = strlen(ns);
    }
    bad = hc_name_invalid("namespace", ns, ns_len);
    if (bad) {
        send_error(c, req->id, -EINVAL, "%s", bad);
        goto close;
    }
    if (h->compression > HC_COMPRESS_ZSTD) {
        send_error(c, req->id, -EINVAL,
                   "compression %u is not known (0 daemon default, 1 off, 2 zstd)", h->compression);
        goto close;
    }
    if (h->readers_per_page > HC_MAX_READERS_PER_PAGE) {
        send_error(c, req->id, -EINVAL, "readers_per_page %u exceeds %u", h->readers_per_page,
                   HC_MAX_READERS_PER_PAGE);
        goto close;
    }
    if (srv->stats.clients > srv->cfg->max_clients) {
        send_error(c, req->id, -EBUSY, "too many clients (max_clients is %u)",
                   srv->cfg->max_clients);
        goto close;
    }
    /* The store learns a namespace at its first set (conn_ns): hellos alone,
     * whatever names they carry, cost the store nothing. */
    memcpy(c->ns_name, ns, ns_len);
    c->ns_len = ns_len;
    c->ns = hc_store_ns_lookup(srv->store, ns, ns_len);
    c->sopts.readers = h->readers_per_page;
    c->sopts.compression = h->compression;
    size = region_size_for(srv->cfg, h->page_size_hint);
    snprintf(name, sizeof(name), "hicache-client-%" PRIu64, c->num);
    rc = hc_region_create(&c->region, size, name);
    if (rc < 0) {
        send_error(c, req->id, rc, "cannot create the shared region of %" PRIu64 " bytes: %s", size,
                   strerror(-rc));
        goto close;
    }
    hr.protocol_version = HC_PROTOCOL_VERSION;
    hr.region_size = c->region->size;
    hr.slot_align = 4096;
    hr.max_batch = srv->cfg->max_batch;
    hr.max_frame = srv->cfg->max_frame_bytes;
    hr.node_id = srv->cfg->node_id;
    resp.id = req->id;
    resp.hello = &hr;
    rc = send_hello_reply(c, &resp);
    if (rc < 0) {
        hc_log(HC_LOG_WARN, "client %" PRIu64 ": cannot send the hello reply: %s", c->num,
               strerror(-rc));
        conn_close(c);
        return;
    }
    /* The client holds the region now (its mapping stays ours): one fd per
     * client instead of two. */
    close(c->region->fd);
    c->region->fd = -1;
    c->hello = true;
    c->dec.max_frame = srv->cfg->max_frame_bytes;
    hc_log(HC_LOG_DEBUG,
           "client %" PRIu64 " (pid %d uid %u) namespace %.*s rank %u region %" PRIu64
           " bytes, readers_per_page %u, compression %u",
           c->num, (int)c->pid, (unsigned)c->uid, (int)ns_len, ns, h->rank, c->region->size,
           h->readers_per_page, h->compression);
    return;
close:
    conn_close_after_flush(c);
}

static void handle_request(struct conn *c, const Hicache__Request *req)
{
    if (req->body_case == HICACHE__REQUEST__BODY_HELLO) {
        handle_hello(c, req);
        return;
    }
    if (!c->hello) {
        send_error(c, req->id, -EPROTO, "the first request must be hello");
        conn_close_after_flush(c);
        return;
    }
    switch (req->body_case) {
    case HICACHE__REQUEST__BODY_SET:
        handle_batch(c, req, false);
        break;
    case HICACHE__REQUEST__BODY_GET:
        handle_batch(c, req, true);
        break;
    case HICACHE__REQUEST__BODY_EXISTS:
        handle_exists(c, req);
        break;
    case HICACHE__REQUEST__BODY_STATS:
        handle_stats(c, req);
        break;
    case HICACHE__REQUEST__BODY_CLEAR:
        handle_clear(c, req);
        break;
    case HICACHE__REQUEST__BODY_PING: {
        Hicache__Response resp = HICACHE__RESPONSE__INIT;
        resp.id = req->id;
        resp.nonce = req->ping->nonce;
        conn_send(c, &resp);
        break;
    }
    default:
        send_error(c, req->id, -EPROTO, "unknown message type");
        break;
    }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct conn *c = (struct conn *)h;
    *buf = uv_buf_init(c->srv->read_buf, sizeof(c->srv->read_buf));
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct conn *c = (struct conn *)stream;

    if (nread < 0) {
        conn_close(c);
        return;
    }
    if (nread == 0)
        return;
    if (hc_frame_decoder_feed(&c->dec, buf->base, (size_t)nread) < 0) {
        conn_close(c);
        return;
    }
    conn_process(c);
}

/* Handles the whole frames held, as far as backpressure allows, and starts or
 * stops reading accordingly. */
static bool conn_can_take(const struct conn *c)
{
    return !c->closing && !c->srv->stopping && c->inflight < CONN_MAX_INFLIGHT &&
           uv_stream_get_write_queue_size((const uv_stream_t *)&c->pipe) < CONN_MAX_QUEUED;
}

/* Handles the whole frames held, as far as backpressure allows, and starts or
 * stops reading accordingly. Never re-entered: a batch that finishes while its
 * request is being handled leaves the next frame to the loop already running
 * (a stream of requests that finish at once must not grow the stack). */
static void conn_process(struct conn *c)
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
            send_error(c, 0, -EMSGSIZE, "frame exceeds the limit of %u bytes%s", c->dec.max_frame,
                       c->hello ? "" : " before hello");
            conn_close_after_flush(c);
            break;
        }
        req = hicache__request__unpack(NULL, len, body);
        if (!req) {
            send_error(c, 0, -EPROTO, "request does not decode (%u bytes)", len);
            conn_close_after_flush(c);
            break;
        }
        handle_request(c, req);
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
                conn_close(c);
        }
    }
    conn_unref(c);
}

static void on_connection(uv_stream_t *listener, int status)
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
    uv_pipe_init(&srv->loop, &c->pipe, 0);
    if (uv_accept(listener, (uv_stream_t *)&c->pipe) < 0) {
        uv_close((uv_handle_t *)&c->pipe, (uv_close_cb)free);
        return;
    }
    c->next = srv->conns;
    if (srv->conns)
        srv->conns->prev = c;
    srv->conns = c;
    srv->stats.clients++;
    srv->stats.connections++;
    if (uv_fileno((uv_handle_t *)&c->pipe, &fd) == 0 &&
        getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) == 0) {
        c->pid = cred.pid;
        c->uid = cred.uid;
        c->gid = cred.gid;
        c->denied = !peer_allowed(srv, cred.uid, cred.gid);
    } else {
        c->denied = srv->restrict_peers;
    }
    if (srv->stopping || srv->stats.clients > srv->cfg->max_clients + CONN_HANDSHAKE_SLACK) {
        conn_close(c);
        return;
    }
    conn_process(c);
}

/* ---- engine glue, timers, signals -------------------------------------- */

static void wake_loop(void *arg)
{
    /* called on an I/O thread */
    uv_async_send(arg);
}

static void on_io_wake(uv_async_t *h)
{
    struct server *srv = h->data;
    hc_io_pool_drain(srv->io);
}

/* Closes connections that did not say hello in time, and connections whose
 * peer did not read its error reply in time. */
static void sweep_conns(struct server *srv, uint64_t now)
{
    struct conn *c;

    for (c = srv->conns; c; c = c->next) {
        if (c->closing) {
            if (c->deadline_ms && now >= c->deadline_ms)
                conn_close(c);
        } else if (!c->hello && now >= c->deadline_ms) {
            send_error(c, 0, -ETIMEDOUT, "no hello within %u ms", HELLO_TIMEOUT_MS);
            conn_close_after_flush(c);
        }
    }
}

static void on_tick(uv_timer_t *t)
{
    struct server *srv = t->data;
    uint64_t now = uv_now(&srv->loop);

    sweep_conns(srv, now);
    hc_store_tick(srv->store, now);
}

static void close_handle(uv_handle_t *h)
{
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

/* Polled while stopping: once no request is in flight and the store is
 * quiet, close every connection, seal the open segment and let the loop end. */
static void on_stop_check(uv_timer_t *t)
{
    struct server *srv = t->data;
    struct conn *c, *next;

    for (c = srv->conns; c; c = c->next)
        if (c->inflight > 0)
            return;
    if (!hc_store_quiesce(srv->store))
        return;
    for (c = srv->conns; c; c = next) {
        next = c->next;
        conn_close(c);
    }
    hc_store_close(srv->store);
    srv->store = NULL;
    srv->stopped = true;
    uv_timer_stop(t);
    close_handle((uv_handle_t *)&srv->stop_check);
    close_handle((uv_handle_t *)&srv->tick);
    close_handle((uv_handle_t *)&srv->sig_term);
    close_handle((uv_handle_t *)&srv->sig_int);
    close_handle((uv_handle_t *)&srv->sig_hup);
    /* io_wake stays open until the pool is destroyed after the loop ends */
    uv_unref((uv_handle_t *)&srv->io_wake);
}

static void begin_stop(struct server *srv, const char *why)
{
    struct conn *c;

    hc_log(HC_LOG_INFO, "%s: stopping (finishing the I/O in flight)", why);
    hc_notify("STOPPING=1\nSTATUS=stopping");
    srv->stopping = true;
    /* Closing the listener unlinks the socket path (libuv does it for a pipe
     * it bound), so no new client finds a socket that nobody serves. A socket
     * passed by systemd is left alone: systemd owns it. */
    close_handle((uv_handle_t *)&srv->listener);
    for (c = srv->conns; c; c = c->next) {
        if (c->reading) {
            uv_read_stop((uv_stream_t *)&c->pipe);
            c->reading = false;
        }
    }
    uv_timer_start(&srv->stop_check, on_stop_check, 0, 10);
}

static bool str_differs(const char *a, const char *b)
{
    return (a == NULL) != (b == NULL) || (a && strcmp(a, b) != 0);
}

/* SIGHUP: reads the configuration again (file, then flags, as at start) and
 * applies what can change while running: capacity, free-space ratio, seal and
 * discovery intervals, dedupe, coalescing, max_clients, the log level and the
 * allowed users and groups. A change to anything else is logged as waiting for a restart. A
 * configuration that does not load changes nothing. */
static void reload(struct server *srv)
{
    struct hc_config nc, *cfg = srv->cfg;
    uid_t uids[MAX_IDS];
    gid_t gids[MAX_IDS];
    unsigned n_uids = 0, n_gids = 0;
    bool exit_now = false;
    char err[512] = "";
    char *tmp;

    hc_notify("RELOADING=1");
    if (hc_config_init(&nc) < 0)
        goto out;
    if (hc_config_parse_args(&nc, srv->argc, srv->argv, &exit_now, err, sizeof(err)) < 0 ||
        parse_ids(nc.allowed_uids, false, uids, &n_uids, err, sizeof(err)) < 0 ||
        parse_ids(nc.allowed_gids, true, gids, &n_gids, err, sizeof(err)) < 0) {
        hc_log(HC_LOG_ERR, "reload failed, the running configuration stays: %s", err);
        hc_config_free(&nc);
        goto out;
    }
#define RESTART_STR(f)                                                                             \
    if (str_differs(nc.f, cfg->f))                                                                 \
        hc_log(HC_LOG_WARN, "reload: %s changed; it takes effect at the next restart", #f);
#define RESTART_NUM(f)                                                                             \
    if (nc.f != cfg->f)                                                                            \
        hc_log(HC_LOG_WARN, "reload: %s changed; it takes effect at the next restart", #f);
    RESTART_STR(mount_point)
    RESTART_STR(root_dir)
    RESTART_STR(socket_path)
    RESTART_STR(node_id)
    RESTART_NUM(region_size)
    RESTART_NUM(segment_size)
    RESTART_NUM(io_threads)
    RESTART_NUM(io_engine)
    RESTART_NUM(queue_depth)
    RESTART_NUM(max_inflight_bytes)
    RESTART_NUM(max_frame_bytes)
    RESTART_NUM(max_batch)
    RESTART_NUM(socket_mode)
    RESTART_NUM(use_direct_io)
#undef RESTART_STR
#undef RESTART_NUM
    cfg->capacity_bytes = nc.capacity_bytes;
    cfg->min_free_ratio = nc.min_free_ratio;
    cfg->seal_interval_ms = nc.seal_interval_ms;
    cfg->discovery_interval_ms = nc.discovery_interval_ms;
    cfg->dedupe = nc.dedupe;
    cfg->coalesce_reads = nc.coalesce_reads;
    cfg->enable_compression = nc.enable_compression;
    cfg->read_linger_ms = nc.read_linger_ms;
    cfg->read_linger_bytes = nc.read_linger_bytes;
    cfg->max_clients = nc.max_clients;
    cfg->log_level = nc.log_level;
    hc_log_set_level(hc_config_log_level(cfg));
    tmp = cfg->allowed_uids;
    cfg->allowed_uids = nc.allowed_uids;
    nc.allowed_uids = tmp;
    tmp = cfg->allowed_gids;
    cfg->allowed_gids = nc.allowed_gids;
    nc.allowed_gids = tmp;
    memcpy(srv->allowed_uids, uids, sizeof(uids));
    memcpy(srv->allowed_gids, gids, sizeof(gids));
    srv->n_uids = n_uids;
    srv->n_gids = n_gids;
    srv->restrict_peers = n_uids > 0 || n_gids > 0;
    {
        struct hc_store_config sc = {
            .capacity_bytes = cfg->capacity_bytes,
            .min_free_ratio = cfg->min_free_ratio,
            .seal_interval_ms = cfg->seal_interval_ms,
            .discovery_interval_ms = cfg->discovery_interval_ms,
            .dedupe = cfg->dedupe,
            .coalesce_reads = cfg->coalesce_reads,
            .enable_compression = cfg->enable_compression,
            .read_linger_ms = cfg->read_linger_ms,
            .read_linger_bytes = cfg->read_linger_bytes,
        };
        hc_store_reconfigure(srv->store, &sc);
    }
    hc_config_free(&nc);
    hc_log(HC_LOG_INFO,
           "reloaded: capacity_bytes %" PRIu64 ", seal_interval_ms %u, discovery_interval_ms %u, "
           "dedupe %s, coalesce_reads %s, max_clients %u",
           cfg->capacity_bytes, cfg->seal_interval_ms, cfg->discovery_interval_ms,
           cfg->dedupe ? "on" : "off", cfg->coalesce_reads ? "on" : "off", cfg->max_clients);
out:
    hc_notify("READY=1\nSTATUS=serving");
}

static void on_signal(uv_signal_t *h, int signum)
{
    struct server *srv = h->data;

    if (signum == SIGHUP) {
        if (!srv->stopping)
            reload(srv);
        return;
    }
    if (srv->stopping) {
        hc_log(HC_LOG_WARN, "second %s: exiting now", strsignal(signum));
        _exit(1);
    }
    begin_stop(srv, strsignal(signum));
}

/* Binds cfg->socket_path, replacing a stale socket file but never a live
 * daemon's. Returns 0 or -errno (reason logged). */
static int listen_path(struct server *srv)
{
    const char *path = srv->cfg->socket_path;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    char dir[sizeof(sa.sun_path)];
    char *slash;
    struct stat st;
    mode_t old;
    int rc;

    snprintf(dir, sizeof(dir), "%s", path);
    slash = strrchr(dir, '/');
    if (slash && slash != dir) {
        *slash = '\0';
        if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
            hc_log(HC_LOG_ERR, "cannot create the socket directory %s: %s", dir, strerror(errno));
            return -errno;
        }
    }
    if (lstat(path, &st) == 0) {
        int fd;

        if (!S_ISSOCK(st.st_mode)) {
            hc_log(HC_LOG_ERR, "%s exists and is not a socket; refusing to replace it", path);
            return -EEXIST;
        }
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
        if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
            close(fd);
            hc_log(HC_LOG_ERR, "another hicached is listening on %s", path);
            return -EADDRINUSE;
        }
        if (fd >= 0)
            close(fd);
        unlink(path);
    }
    old = umask(0077);
    rc = uv_pipe_bind(&srv->listener, path);
    umask(old);
    if (rc < 0) {
        hc_log(HC_LOG_ERR, "cannot bind %s: %s", path, uv_strerror(rc));
        return rc;
    }
    if (chmod(path, srv->cfg->socket_mode) < 0)
        hc_log(HC_LOG_WARN, "cannot set mode %o on %s: %s", srv->cfg->socket_mode, path,
               strerror(errno));
    return 0;
}

int hc_server_run(struct hc_config *cfg, int argc, char **argv)
{
    struct server *srv;
    struct hc_store_config sc = {
        .mount_point = cfg->mount_point,
        .root_dir = cfg->root_dir,
        .node_id = cfg->node_id,
        .segment_size = cfg->segment_size,
        .capacity_bytes = cfg->capacity_bytes,
        .min_free_ratio = cfg->min_free_ratio,
        .seal_interval_ms = cfg->seal_interval_ms,
        .discovery_interval_ms = cfg->discovery_interval_ms,
        .use_direct_io = cfg->use_direct_io,
        .dedupe = cfg->dedupe,
        .coalesce_reads = cfg->coalesce_reads,
        .enable_compression = cfg->enable_compression,
        .read_linger_ms = cfg->read_linger_ms,
        .read_linger_bytes = cfg->read_linger_bytes,
    };
    struct hc_io_config ioc = {
        .engine = (enum hc_io_engine)cfg->io_engine, /* same values, see config.h */
        .threads = cfg->io_threads,
        .queue_depth = cfg->queue_depth,
        .max_inflight_bytes = cfg->max_inflight_bytes,
    };
    char err[512] = "";
    uint64_t tick_ms;
    int fd, rc, status = 1;

    srv = calloc(1, sizeof(*srv));
    if (!srv) {
        hc_log(HC_LOG_ERR, "out of memory");
        return 1;
    }
    srv->cfg = cfg;
    srv->argc = argc;
    srv->argv = argv;
    if (uv_loop_init(&srv->loop) < 0) {
        free(srv);
        return 1;
    }
    srv->restrict_peers =
        (cfg->allowed_uids && *cfg->allowed_uids) || (cfg->allowed_gids && *cfg->allowed_gids);
    if (parse_ids(cfg->allowed_uids, false, srv->allowed_uids, &srv->n_uids, err, sizeof(err)) <
            0 ||
        parse_ids(cfg->allowed_gids, true, srv->allowed_gids, &srv->n_gids, err, sizeof(err)) < 0) {
        hc_log(HC_LOG_ERR, "%s", err);
        goto out_loop;
    }

    uv_async_init(&srv->loop, &srv->io_wake, on_io_wake);
    srv->io_wake.data = srv;
    rc = hc_io_pool_create(&srv->io, &ioc, wake_loop, &srv->io_wake);
    if (rc < 0) {
        hc_log(HC_LOG_ERR, "cannot start the I/O pool: %s", strerror(-rc));
        goto out_async;
    }
    rc = hc_store_open(&srv->store, &sc, srv->io, &srv->stats, err, sizeof(err));
    if (rc < 0) {
        hc_log(HC_LOG_ERR, "cannot open the store under %s: %s", cfg->mount_point,
               *err ? err : strerror(-rc));
        goto out_io;
    }

    uv_pipe_init(&srv->loop, &srv->listener, 0);
    srv->listener.data = srv;
    fd = hc_listen_fds();
    if (fd >= 0) {
        srv->socket_activated = true;
        rc = uv_pipe_open(&srv->listener, fd);
        if (rc < 0)
            hc_log(HC_LOG_ERR, "cannot use the socket passed by systemd: %s", uv_strerror(rc));
    } else {
        rc = listen_path(srv);
    }
    if (rc == 0) {
        rc = uv_listen((uv_stream_t *)&srv->listener, 128, on_connection);
        if (rc < 0)
            hc_log(HC_LOG_ERR, "cannot listen on %s: %s", cfg->socket_path, uv_strerror(rc));
    }
    if (rc < 0) {
        uv_close((uv_handle_t *)&srv->listener, NULL);
        hc_store_close(srv->store);
        goto out_io;
    }

    uv_timer_init(&srv->loop, &srv->tick);
    uv_timer_init(&srv->loop, &srv->stop_check);
    srv->tick.data = srv->stop_check.data = srv;
    tick_ms = cfg->seal_interval_ms < cfg->discovery_interval_ms ? cfg->seal_interval_ms
                                                                 : cfg->discovery_interval_ms;
    tick_ms /= 2;
    tick_ms = tick_ms < 10 ? 10 : tick_ms > 200 ? 200 : tick_ms;
    uv_timer_start(&srv->tick, on_tick, tick_ms, tick_ms);
    uv_signal_init(&srv->loop, &srv->sig_term);
    uv_signal_init(&srv->loop, &srv->sig_int);
    uv_signal_init(&srv->loop, &srv->sig_hup);
    srv->sig_term.data = srv->sig_int.data = srv->sig_hup.data = srv;
    uv_signal_start(&srv->sig_term, on_signal, SIGTERM);
    uv_signal_start(&srv->sig_int, on_signal, SIGINT);
    uv_signal_start(&srv->sig_hup, on_signal, SIGHUP);
    signal(SIGPIPE, SIG_IGN);

    srv->start_ms = uv_now(&srv->loop);
    hc_log(HC_LOG_INFO, "serving %s/%s/%s on %s (node %s)", cfg->mount_point, cfg->root_dir,
           cfg->node_id, srv->socket_activated ? "a socket passed by systemd" : cfg->socket_path,
           cfg->node_id);
    hc_notify("READY=1\nSTATUS=serving");

    uv_run(&srv->loop, UV_RUN_DEFAULT);

    status = srv->stopped ? 0 : 1;
    hc_io_pool_destroy(srv->io);
    srv->io = NULL;
    uv_close((uv_handle_t *)&srv->io_wake, NULL);
    uv_run(&srv->loop, UV_RUN_DEFAULT);
    uv_loop_close(&srv->loop);
    hc_log(HC_LOG_INFO, "stopped");
    free(srv);
    return status;

out_io:
    hc_io_pool_destroy(srv->io);
out_async:
    uv_close((uv_handle_t *)&srv->io_wake, NULL);
    uv_run(&srv->loop, UV_RUN_DEFAULT);
out_loop:
    uv_loop_close(&srv->loop);
    free(srv);
    return status;
}
