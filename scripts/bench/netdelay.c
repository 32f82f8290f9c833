/* netdelay: holds every packet of one netfilter queue (iptables -j NFQUEUE)
 * for a fixed time, then lets it go: a link latency where the kernel has no
 * sch_netem. Packets leave in the order they came (one delay for all), so
 * TCP sees a longer round trip, not reordering.
 *
 *   netdelay QUEUE DELAY_US [READY_FILE]
 *
 * Only packet ids cross to user space (NFQNL_COPY_META), and verdicts go in
 * batches (every id up to the newest one due), so a few hundred MB/s of
 * object-store traffic costs little CPU. READY_FILE is created once the
 * queue is bound. SIGTERM / SIGINT: every held packet is let go, then exit 0.
 * Runs in the network namespace whose iptables rules feed the queue.
 * Built and started by scripts/bench/emulate.sh. */
#include <errno.h>
#include <fcntl.h>
#include <libnetfilter_queue/libnetfilter_queue.h>
#include <arpa/inet.h>
#include <linux/netfilter.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define RING (1u << 20) /* packets held at most */

struct held {
    uint32_t id;
    uint64_t due_ns;
};

static struct held ring[RING];
static unsigned head, count; /* oldest at head */
static uint64_t delay_ns;
static uint64_t dropped;
static volatile sig_atomic_t stop;

static uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int on_packet(struct nfq_q_handle *qh, struct nfgenmsg *msg, struct nfq_data *nfa,
                     void *data)
{
    struct nfqnl_msg_packet_hdr *ph = nfq_get_msg_packet_hdr(nfa);
    uint32_t id;

    (void)msg;
    (void)data;
    if (ph == NULL)
        return 0;
    id = ntohl(ph->packet_id);
    if (count == RING) { /* full: let this one go now rather than lose it */
        dropped++;
        return nfq_set_verdict(qh, id, NF_ACCEPT, 0, NULL);
    }
    ring[(head + count) % RING] = (struct held){id, now_ns() + delay_ns};
    count++;
    return 0;
}

/* Lets go every packet due by t (all of them when t is UINT64_MAX). */
static void release(struct nfq_q_handle *qh, uint64_t t)
{
    uint32_t last = 0;
    unsigned n = 0;

    while (count > 0 && ring[head].due_ns <= t) {
        last = ring[head].id;
        head = (head + 1) % RING;
        count--;
        n++;
    }
    if (n > 0)
        nfq_set_verdict_batch(qh, last, NF_ACCEPT);
}

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

int main(int argc, char **argv)
{
    struct nfq_handle *h;
    struct nfq_q_handle *qh;
    static char buf[65536] __attribute__((aligned));
    struct sigaction sa = {.sa_handler = on_signal};
    int fd, one = 1, rcvbuf = 64 << 20;
    long queue, delay_us;

    if (argc < 3 || argc > 4) {
        fprintf(stderr, "usage: netdelay QUEUE DELAY_US [READY_FILE]\n");
        return 2;
    }
    queue = strtol(argv[1], NULL, 10);
    delay_us = strtol(argv[2], NULL, 10);
    if (queue < 0 || queue > 65535 || delay_us < 0 || delay_us > 10000000) {
        fprintf(stderr, "netdelay: QUEUE 0..65535, DELAY_US 0..10000000\n");
        return 2;
    }
    delay_ns = (uint64_t)delay_us * 1000u;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    h = nfq_open();
    if (h == NULL) {
        perror("netdelay: nfq_open");
        return 1;
    }
    qh = nfq_create_queue(h, (uint16_t)queue, on_packet, NULL);
    if (qh == NULL) {
        perror("netdelay: nfq_create_queue (is another process bound to this queue?)");
        return 1;
    }
    /* GSO: large segments stay whole (no segmentation to queue them), so a
     * 64 KiB send is one packet to hold, not 45 */
    if (nfq_set_mode(qh, NFQNL_COPY_META, 0) < 0 || nfq_set_queue_maxlen(qh, RING) < 0 ||
        nfq_set_queue_flags(qh, NFQA_CFG_F_GSO, NFQA_CFG_F_GSO) < 0) {
        perror("netdelay: queue settings");
        return 1;
    }
    fd = nfq_fd(h);
    setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof(rcvbuf));
    /* a full socket buffer must not stall the queue with an error */
    setsockopt(fd, SOL_NETLINK, NETLINK_NO_ENOBUFS, &one, sizeof(one));
    if (argc == 4) {
        int rf = open(argv[3], O_WRONLY | O_CREAT | O_TRUNC, 0644);

        if (rf < 0) {
            perror("netdelay: ready file");
            return 1;
        }
        close(rf);
    }

    while (!stop) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        struct timespec ts = {1, 0}, *tp = &ts;
        uint64_t t = now_ns();
        ssize_t n;

        release(qh, t);
        if (count > 0) {
            uint64_t wait = ring[head].due_ns > t ? ring[head].due_ns - t : 0;

            ts.tv_sec = (time_t)(wait / 1000000000u);
            ts.tv_nsec = (long)(wait % 1000000000u);
        }
        if (ppoll(&p, 1, tp, NULL) < 0) {
            if (errno == EINTR)
                continue;
            perror("netdelay: ppoll");
            break;
        }
        /* drain what is readable, then release what came due meanwhile */
        while ((n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT)) > 0)
            nfq_handle_packet(h, buf, (int)n);
    }
    release(qh, UINT64_MAX);
    if (dropped)
        fprintf(stderr, "netdelay: queue %ld: %llu packets passed undelayed (ring full)\n", queue,
                (unsigned long long)dropped);
    nfq_destroy_queue(qh);
    nfq_close(h);
    return 0;
}
