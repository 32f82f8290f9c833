/* libFuzzer target: the connection path of a real daemon over a real store
 * (make fuzz). hicached's server (hc_server_run: libuv loop, I/O pool,
 * segment store on a temporary directory) runs in a thread of this process;
 * each input is sent over a fresh connection to its socket after a valid
 * hello, as a peer would: frames of any content, sets into and gets out of
 * the region the daemon passed, exists, stats, clears. The connection is
 * then half-closed and its replies read until the daemon closes it (or
 * 500 ms pass). Any crash, leak or undefined behaviour in the daemon is a
 * finding; so is a daemon that stops answering (a new connection's ping
 * must be answered after every input). */
#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "config.h"
#include "frame.h"
#include "hicache.pb-c.h"
#include "log.h"
#include "server.h"

static char sock_path[108];
enum { hello_cap = 256 };
static uint8_t hello[hello_cap];
static size_t hello_len;

static void *server_main(void *arg)
{
    struct hc_config *cfg = arg;
    char *argv[] = {"hicached", NULL};
    hc_server_run(cfg, 1, argv);
    return NULL;
}

/* A frame of req into out; returns its length. */
static size_t frame_of(const Hicache__Request *req, uint8_t *out)
{
    size_t n = hicache__request__pack(req, out + HC_FRAME_HDR);
    hc_frame_put_len(out, (uint32_t)n);
    return n + HC_FRAME_HDR;
}

static int connect_daemon(void)
{
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    snprintf(a.sun_path, sizeof(a.sun_path), "%s", sock_path);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0)
        return fd;
    if (fd >= 0)
        close(fd);
    return -1;
}

/* Closes the fds a message passed (the daemon's region). */
static void close_passed(struct msghdr *m)
{
    for (struct cmsghdr *c = CMSG_FIRSTHDR(m); c; c = CMSG_NXTHDR(m, c))
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
            for (size_t i = 0; i < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int); i++)
                close(((int *)CMSG_DATA(c))[i]);
}

/* Reads what arrives within timeout_ms into buf, closing fds passed along.
 * Returns the bytes (> 0), 0 at EOF, -ETIMEDOUT, or -1 on an error. */
static ssize_t recv_some(int fd, void *buf, size_t cap, int timeout_ms)
{
    char cbuf[CMSG_SPACE(4 * sizeof(int))];
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, timeout_ms) <= 0)
        return -ETIMEDOUT;
    struct iovec iov = {buf, cap};
    struct msghdr m = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf)};
    ssize_t n = recvmsg(fd, &m, MSG_CMSG_CLOEXEC);
    close_passed(&m);
    return n < 0 ? -1 : n;
}

/* Reads until EOF or timeout_ms without a byte. */
static void drain(int fd, int timeout_ms)
{
    char buf[65536];
    while (recv_some(fd, buf, sizeof(buf), timeout_ms) > 0)
        ;
}

/* Connects, says hello and pings; true when the ping's reply arrives within
 * 10 s. */
static bool ping_answered(void)
{
    uint8_t buf[hello_cap + 64];
    Hicache__PingRequest ping = HICACHE__PING_REQUEST__INIT;
    Hicache__Request req = HICACHE__REQUEST__INIT;
    struct hc_frame_decoder d;
    bool ok = false;
    int fd = connect_daemon();
    if (fd < 0)
        return false;
    ping.nonce = 77;
    req.id = 2;
    req.body_case = HICACHE__REQUEST__BODY_PING;
    req.ping = &ping;
    memcpy(buf, hello, hello_len);
    size_t n = hello_len + frame_of(&req, buf + hello_len);
    hc_frame_decoder_init(&d, 1u << 20);
    if (send(fd, buf, n, MSG_NOSIGNAL) != (ssize_t)n)
        goto out;
    for (int waited = 0; !ok && waited < 10000;) {
        char in[4096];
        ssize_t got = recv_some(fd, in, sizeof(in), 100);
        if (got == -ETIMEDOUT) {
            waited += 100;
            continue;
        }
        if (got <= 0 || hc_frame_decoder_feed(&d, in, (size_t)got) < 0)
            break;
        const uint8_t *body;
        uint32_t len;
        while (hc_frame_decoder_next(&d, &body, &len) > 0) {
            Hicache__Response *r = hicache__response__unpack(NULL, len, body);
            ok = ok || (r && r->id == 2 && r->status == 0 && r->nonce == 77);
            if (r)
                hicache__response__free_unpacked(r, NULL);
        }
    }
out:
    hc_frame_decoder_free(&d);
    close(fd);
    return ok;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    static struct hc_config cfg;
    static char dir[] = "/tmp/hc_fuzz_conn.XXXXXX";
    pthread_t th;
    (void)argc;
    (void)argv;
    if (!mkdtemp(dir) || hc_config_init(&cfg) < 0)
        abort();
    snprintf(sock_path, sizeof(sock_path), "%s/s", dir);
    free(cfg.mount_point);
    cfg.mount_point = strdup(dir);
    free(cfg.socket_path);
    cfg.socket_path = strdup(sock_path);
    free(cfg.node_id);
    cfg.node_id = strdup("fuzz");
    cfg.foreground = true;
    cfg.io_threads = 1;
    cfg.region_size = 1u << 20;
    cfg.segment_size = 4u << 20;
    cfg.capacity_bytes = 32u << 20;
    cfg.min_free_ratio = 0;
    cfg.max_frame_bytes = 1u << 16;
    cfg.max_batch = 16;
    hc_log_set_level(HC_LOG_ERR);
    if (pthread_create(&th, NULL, server_main, &cfg) != 0)
        abort();
    for (int i = 0; i < 500; i++) {
        int fd = connect_daemon();
        if (fd >= 0) {
            close(fd);
            break;
        }
        usleep(10000);
    }
    Hicache__Hello h = HICACHE__HELLO__INIT;
    Hicache__Request req = HICACHE__REQUEST__INIT;
    h.protocol_version = 1;
    h.namespace_.data = (uint8_t *)"fuzz";
    h.namespace_.len = 4;
    h.page_size_hint = 4096;
    req.id = 1;
    req.body_case = HICACHE__REQUEST__BODY_HELLO;
    req.hello = &h;
    hello_len = frame_of(&req, hello);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int fd = connect_daemon();
    if (fd < 0)
        abort(); /* the daemon stopped accepting */
    if (send(fd, hello, hello_len, MSG_NOSIGNAL) == (ssize_t)hello_len) {
        size_t off = 0;
        while (off < size) {
            ssize_t n = send(fd, data + off, size - off, MSG_NOSIGNAL);
            if (n <= 0)
                break;
            off += (size_t)n;
        }
        shutdown(fd, SHUT_WR);
        drain(fd, 500);
    }
    close(fd);

    /* still serving: a ping on a new connection is answered */
    if (!ping_answered())
        abort();
    return 0;
}
