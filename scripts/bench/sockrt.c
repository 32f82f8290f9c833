/* sockrt: bare Unix-socket round trip, the floor under hicached's exists.
 *
 *   sockrt serve PATH              echo server (one thread per connection)
 *   sockrt client PATH REQ REP N   N round trips: send a REQ-byte frame, get a
 *                                  REP-byte answer; prints JSON percentiles (us)
 *
 * Frame: u32 payload length, u32 reply length, payload. The server reads the
 * whole frame and answers with u32 length and that many bytes. Blocking
 * sockets, no event loop: the least a request/answer over a Unix socket costs.
 * Built by scripts/bench/run.sh (gcc -O2). */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static int full_io(int fd, void *buf, size_t n, int wr)
{
    char *p = buf;

    while (n > 0) {
        ssize_t r = wr ? write(fd, p, n) : read(fd, p, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

static void *serve_conn(void *arg)
{
    int fd = (int)(intptr_t)arg;
    size_t cap = 1 << 20;
    char *buf = malloc(cap);
    uint32_t hdr[2];

    while (buf && full_io(fd, hdr, sizeof(hdr), 0) == 0) {
        if (hdr[0] > cap || hdr[1] > cap - 4)
            break;
        if (full_io(fd, buf, hdr[0], 0) < 0)
            break;
        memcpy(buf, &hdr[1], 4);
        if (full_io(fd, buf, 4 + (size_t)hdr[1], 1) < 0)
            break;
    }
    free(buf);
    close(fd);
    return NULL;
}

static int sock_addr(struct sockaddr_un *a, const char *path)
{
    memset(a, 0, sizeof(*a));
    a->sun_family = AF_UNIX;
    if (strlen(path) >= sizeof(a->sun_path))
        return -1;
    strcpy(a->sun_path, path);
    return 0;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    struct sockaddr_un a;

    if (argc == 3 && strcmp(argv[1], "serve") == 0) {
        int ls = socket(AF_UNIX, SOCK_STREAM, 0);
        unlink(argv[2]);
        if (ls < 0 || sock_addr(&a, argv[2]) < 0 || bind(ls, (void *)&a, sizeof(a)) < 0 ||
            listen(ls, 64) < 0) {
            perror("sockrt serve");
            return 2;
        }
        for (;;) {
            pthread_t t;
            int fd = accept(ls, NULL, NULL);
            if (fd < 0)
                continue;
            if (pthread_create(&t, NULL, serve_conn, (void *)(intptr_t)fd) == 0)
                pthread_detach(t);
            else
                close(fd);
        }
    }
    if (argc == 6 && strcmp(argv[1], "client") == 0) {
        uint32_t req = (uint32_t)atoi(argv[3]), rep = (uint32_t)atoi(argv[4]);
        int n = atoi(argv[5]), fd = socket(AF_UNIX, SOCK_STREAM, 0);
        char *buf = calloc(1, 8 + (size_t)req + 4 + (size_t)rep);
        double *lat = calloc((size_t)n, sizeof(double)), sum = 0;
        if (!buf || !lat || fd < 0 || sock_addr(&a, argv[2]) < 0 ||
            connect(fd, (void *)&a, sizeof(a)) < 0) {
            perror("sockrt client");
            return 2;
        }
        memcpy(buf, &req, 4);
        memcpy(buf + 4, &rep, 4);
        for (int i = 0; i < n; i++) {
            struct timespec t0, t1;
            clock_gettime(CLOCK_MONOTONIC, &t0);
            if (full_io(fd, buf, 8 + (size_t)req, 1) < 0 ||
                full_io(fd, buf + 8 + req, 4 + (size_t)rep, 0) < 0) {
                perror("sockrt client io");
                return 2;
            }
            clock_gettime(CLOCK_MONOTONIC, &t1);
            lat[i] =
                (double)(t1.tv_sec - t0.tv_sec) * 1e6 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e3;
            sum += lat[i];
        }
        qsort(lat, (size_t)n, sizeof(double), cmp_d);
        printf("{\"n\": %d, \"req\": %u, \"rep\": %u, \"mean_us\": %.2f, \"p50_us\": %.2f, "
               "\"p99_us\": %.2f}\n",
               n, req, rep, sum / n, lat[n / 2], lat[(size_t)(n * 0.99)]);
        return 0;
    }
    fprintf(stderr, "usage: sockrt serve PATH | sockrt client PATH REQ REP N\n");
    return 2;
}
