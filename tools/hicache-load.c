/* hicache-load: a load generator for hicached. Forks client processes that
 * each store pages of pseudo-random bytes in batches, read them back into
 * fresh buffers and compare byte for byte. Used by `make run` as the demo
 * workload. Exit status: 0 all verified, 1 a page came back wrong or missing,
 * 2 an error. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "hicache.h"

struct opts {
    const char *socket;
    const char *ns;
    unsigned clients;
    unsigned pages;
    unsigned shared;
    size_t page_size;
    unsigned batch;
    unsigned rounds;
    int only; /* 0: set then get each batch; 'S': sets only; 'G': gets only */
};

/* Per-client results, in a shared anonymous mapping the parent reads. */
struct result {
    double set_s, get_s;
    uint64_t set_bytes, get_bytes;
    unsigned stored, hits, bad;
    int error;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* xorshift64*: the bytes of page (seed) are a pure function of its key. */
static void fill(uint8_t *p, size_t n, uint64_t seed)
{
    uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
    size_t i;

    for (i = 0; i + 8 <= n; i += 8) {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        uint64_t v = x * 0x2545F4914F6CDD1Dull;
        memcpy(p + i, &v, 8);
    }
    for (; i < n; i++)
        p[i] = (uint8_t)(x >> (8 * (i & 7)));
}

static void key_of(char *buf, size_t len, const struct opts *o, unsigned client, unsigned page,
                   uint64_t *seed)
{
    if (page < o->shared) {
        snprintf(buf, len, "load-shared-%06u", page);
        *seed = 1000000ull + page;
    } else {
        snprintf(buf, len, "load-c%03u-%06u", client, page);
        *seed = (uint64_t)client << 32 | page;
    }
}

static int run_client(const struct opts *o, unsigned id, struct result *res)
{
    hc_connect_opts co = {.ns = o->ns, .rank = id, .page_size_hint = o->page_size};
    hc_client *c = NULL;
    size_t b = o->batch;
    uint8_t *src = malloc(b * o->page_size), *dst = malloc(b * o->page_size);
    hc_page *pages = calloc(b, sizeof(*pages));
    hc_buf *bufs = calloc(b, sizeof(*bufs));
    char(*keys)[64] = calloc(b, 64);
    int *results = calloc(b, sizeof(int));
    int rc;

    if (!src || !dst || !pages || !bufs || !keys || !results) {
        res->error = -ENOMEM;
        goto out;
    }
    rc = hc_connect(&c, o->socket, &co);
    if (rc < 0) {
        fprintf(stderr, "client %u: cannot connect to %s: %s\n", id, o->socket, hc_strerror(rc));
        res->error = rc;
        goto out;
    }
    for (unsigned round = 0; round < o->rounds; round++) {
        for (unsigned first = 0; first < o->pages; first += (unsigned)b) {
            unsigned n = o->pages - first < b ? o->pages - first : (unsigned)b;
            double t0;

            for (unsigned i = 0; i < n; i++) {
                uint64_t seed;
                key_of(keys[i], 64, o, id, first + i, &seed);
                fill(src + i * o->page_size, o->page_size, seed);
                bufs[i].base = src + i * o->page_size;
                bufs[i].len = o->page_size;
                pages[i].key = keys[i];
                pages[i].bufs = &bufs[i];
                pages[i].nbufs = 1;
            }
            if (o->only != 'G') {
                t0 = now_s();
                rc = hc_batch_set(c, pages, n, results);
                res->set_s += now_s() - t0;
                if (rc < 0) {
                    fprintf(stderr, "client %u: set failed: %s\n", id, hc_strerror(rc));
                    res->error = rc;
                    goto out;
                }
                res->stored += (unsigned)rc;
                res->set_bytes += (uint64_t)rc * o->page_size;
            }
            if (o->only == 'S') {
                for (unsigned i = 0; i < n; i++) {
                    if (results[i] != 0) {
                        fprintf(stderr, "client %u: page %s not stored: %s\n", id, keys[i],
                                hc_strerror(results[i]));
                        res->bad++;
                    }
                }
                continue;
            }

            memset(dst, 0, n * o->page_size);
            for (unsigned i = 0; i < n; i++)
                bufs[i].base = dst + i * o->page_size;
            t0 = now_s();
            rc = hc_batch_get(c, pages, n, results);
            res->get_s += now_s() - t0;
            if (rc < 0) {
                fprintf(stderr, "client %u: get failed: %s\n", id, hc_strerror(rc));
                res->error = rc;
                goto out;
            }
            res->hits += (unsigned)rc;
            res->get_bytes += (uint64_t)rc * o->page_size;
            for (unsigned i = 0; i < n; i++) {
                if (results[i] != 0 ||
                    memcmp(src + i * o->page_size, dst + i * o->page_size, o->page_size) != 0) {
                    fprintf(stderr, "client %u: page %s came back %s\n", id, keys[i],
                            results[i] ? hc_strerror(results[i]) : "with different bytes");
                    res->bad++;
                }
            }
        }
    }
out:
    hc_close(c);
    free(src);
    free(dst);
    free(pages);
    free(bufs);
    free(keys);
    free(results);
    return res->error ? 2 : res->bad ? 1 : 0;
}

static size_t parse_size(const char *s)
{
    char *end;
    double v = strtod(s, &end);

    switch (*end) {
    case 'k':
    case 'K':
        v *= 1024;
        break;
    case 'm':
    case 'M':
        v *= 1024 * 1024;
        break;
    case 'g':
    case 'G':
        v *= 1024.0 * 1024 * 1024;
        break;
    default:
        break;
    }
    return v > 0 ? (size_t)v : 0;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: hicache-load [--socket PATH] [--namespace NS] [--clients N] [--pages N]\n"
               "                    [--shared N] [--page-size SIZE] [--batch N] [--rounds N]\n"
               "                    [--only set|get]\n"
               "Each client stores --pages pages (the first --shared are the same keys and\n"
               "bytes in every client, as an MLA model's ranks have), reads them back and\n"
               "compares byte for byte. --only set: stores only; --only get: reads back and\n"
               "compares pages an earlier --only set run stored (same options).\n");
}

int main(int argc, char **argv)
{
    struct opts o = {.socket = NULL,
                     .ns = "demo",
                     .clients = 4,
                     .pages = 64,
                     .shared = 16,
                     .page_size = 64 * 1024,
                     .batch = 32,
                     .rounds = 1};
    static const struct option longopts[] = {{"socket", required_argument, 0, 's'},
                                             {"namespace", required_argument, 0, 'n'},
                                             {"clients", required_argument, 0, 'c'},
                                             {"pages", required_argument, 0, 'p'},
                                             {"shared", required_argument, 0, 'S'},
                                             {"page-size", required_argument, 0, 'z'},
                                             {"batch", required_argument, 0, 'b'},
                                             {"rounds", required_argument, 0, 'r'},
                                             {"only", required_argument, 0, 'o'},
                                             {"help", no_argument, 0, 'h'},
                                             {0, 0, 0, 0}};
    struct result *res;
    int opt, status = 0;
    unsigned stored = 0, hits = 0, bad = 0;

    while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (opt) {
        case 's':
            o.socket = optarg;
            break;
        case 'n':
            o.ns = optarg;
            break;
        case 'c':
            o.clients = (unsigned)atoi(optarg);
            break;
        case 'p':
            o.pages = (unsigned)atoi(optarg);
            break;
        case 'S':
            o.shared = (unsigned)atoi(optarg);
            break;
        case 'z':
            o.page_size = parse_size(optarg);
            break;
        case 'b':
            o.batch = (unsigned)atoi(optarg);
            break;
        case 'r':
            o.rounds = (unsigned)atoi(optarg);
            break;
        case 'o':
            if (strcmp(optarg, "set") != 0 && strcmp(optarg, "get") != 0) {
                fprintf(stderr, "hicache-load: --only takes set or get\n");
                return 2;
            }
            o.only = optarg[0] == 's' ? 'S' : 'G';
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (o.clients < 1 || o.clients > 256 || o.pages < 1 || o.page_size < 1 || o.batch < 1 ||
        o.batch > HC_MAX_BATCH || o.rounds < 1 || o.shared > o.pages) {
        fprintf(stderr, "hicache-load: bad option value\n");
        usage(stderr);
        return 2;
    }
    res = mmap(NULL, o.clients * sizeof(*res), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
               -1, 0);
    if (res == MAP_FAILED) {
        perror("mmap");
        return 2;
    }
    memset(res, 0, o.clients * sizeof(*res));
    for (unsigned i = 0; i < o.clients; i++) {
        pid_t pid = fork();
        if (pid < 0) {
            perror("fork");
            return 2;
        }
        if (pid == 0)
            _exit(run_client(&o, i, &res[i]));
    }
    for (unsigned i = 0; i < o.clients; i++) {
        int ws;
        if (wait(&ws) < 0)
            break;
        if (!WIFEXITED(ws) || WEXITSTATUS(ws) != 0) {
            int s = WIFEXITED(ws) ? WEXITSTATUS(ws) : 2;
            status = s > status ? s : status;
        }
    }
    printf("%-7s %8s %8s %10s %10s %10s %10s\n", "client", "stored", "hits", "wrong", "set MB/s",
           "get MB/s", "status");
    for (unsigned i = 0; i < o.clients; i++) {
        struct result *r = &res[i];
        printf("%-7u %8u %8u %10u %10.1f %10.1f %10s\n", i, r->stored, r->hits, r->bad,
               r->set_s > 0 ? (double)r->set_bytes / r->set_s / 1e6 : 0.0,
               r->get_s > 0 ? (double)r->get_bytes / r->get_s / 1e6 : 0.0,
               r->error ? hc_err_name(r->error)
               : r->bad ? "WRONG"
                        : "ok");
        stored += r->stored;
        hits += r->hits;
        bad += r->bad;
    }
    printf("total: %u clients, %u pages of %zu bytes stored, %u read back, %u wrong or missing\n",
           o.clients, stored, o.page_size, hits, bad);
    return status;
}
