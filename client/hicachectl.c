/* hicachectl: operator's command line for hicached, over libhicache.
 *
 *   hicachectl [--socket PATH] [--namespace NS] [--timeout MS] COMMAND
 *
 * Exit status: 0 done (exists: every key exists), 1 a miss, 2 an error (bad
 * usage, invalid key, daemon unreachable), with the reason on stderr. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "hicache.h"
#include "key.h"
#include "prom.h"
#include "stats_map.h"

#define EXIT_DONE 0
#define EXIT_MISS 1
#define EXIT_ERROR 2

struct ctl {
    const char *socket; /* NULL: $HICACHED_SOCKET or the default */
    const char *ns;
    int timeout_ms;
    hc_client *c;
};

static void usage(FILE *f)
{
    fprintf(f, "usage: hicachectl [--socket PATH] [--namespace NS] [--timeout MS] COMMAND\n"
               "\n"
               "commands:\n"
               "  stats [--json|--prometheus]\n"
               "                     daemon counters (a table, the daemon's JSON, or\n"
               "                     Prometheus text for node_exporter's textfile collector)\n"
               "  ping               round trip to the daemon\n"
               "  exists KEY...      print \"KEY yes LENGTH\" (? when not known) or \"KEY no\"\n"
               "  put KEY FILE       store FILE's bytes as page KEY (FILE - = stdin)\n"
               "  get KEY FILE       write page KEY to FILE (FILE - = stdout)\n"
               "  clear              drop every page of the namespace on this node\n"
               "\n"
               "options:\n"
               "  -s, --socket PATH     daemon socket (default $HICACHED_SOCKET, else\n"
               "                        " HC_DEFAULT_SOCKET ")\n"
               "  -n, --namespace NS    namespace (default \"default\")\n"
               "  -t, --timeout MS      per-request timeout in milliseconds (default 30000)\n"
               "  -h, --help            this text\n"
               "  -V, --version         version\n"
               "\n"
               "exit status: 0 done (exists: all keys exist), 1 a miss, 2 an error\n");
}

static int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Prints "hicachectl: <message>" on stderr; returns EXIT_ERROR. */
static int fail(const char *fmt, ...)
{
    va_list ap;

    fputs("hicachectl: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return EXIT_ERROR;
}

static const char *socket_path(const struct ctl *x)
{
    const char *env = getenv("HICACHED_SOCKET");

    if (x->socket != NULL)
        return x->socket;
    return env != NULL && env[0] != '\0' ? env : HC_DEFAULT_SOCKET;
}

/* Connects x->c, asking for a region that holds a page of page_size bytes
 * (0: the daemon's default). Returns EXIT_DONE, or EXIT_ERROR after saying
 * why. */
static int ctl_connect_sized(struct ctl *x, uint64_t page_size)
{
    hc_connect_opts o = {.ns = x->ns, .timeout_ms = x->timeout_ms, .page_size_hint = page_size};
    const char *path = socket_path(x);
    int r = hc_connect(&x->c, path, &o);

    if (r == 0)
        return EXIT_DONE;
    if (r == -ENOENT)
        return fail("cannot connect to %s: no such socket (is hicached running?)", path);
    return fail("cannot connect to %s: %s", path, hc_strerror(r));
}

static int ctl_connect(struct ctl *x)
{
    return ctl_connect_sized(x, 0);
}

static int check_key(const char *key)
{
    const char *why = hc_name_invalid("key", key, strnlen(key, HC_MAX_KEY + 1));

    if (why != NULL)
        return fail("invalid key '%.*s': %s", HC_MAX_KEY, key, why);
    return EXIT_DONE;
}

/* "1.5 GiB" for byte counts; exact below 1 KiB. */
static void human_bytes(char *out, size_t n, uint64_t v)
{
    static const char *const units[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    double d = (double)v;
    unsigned u = 0;

    if (v < 1024) {
        snprintf(out, n, "%" PRIu64 " B", v);
        return;
    }
    d /= 1024;
    while (d >= 1024 && u + 1 < sizeof(units) / sizeof(units[0])) {
        d /= 1024;
        u++;
    }
    snprintf(out, n, "%.1f %s", d, units[u]);
}

static void human_duration(char *out, size_t n, uint64_t s)
{
    if (s >= 86400)
        snprintf(out, n, "%" PRIu64 "d %02" PRIu64 "h %02" PRIu64 "m", s / 86400, s % 86400 / 3600,
                 s % 3600 / 60);
    else if (s >= 3600)
        snprintf(out, n, "%" PRIu64 "h %02" PRIu64 "m %02" PRIu64 "s", s / 3600, s % 3600 / 60,
                 s % 60);
    else if (s >= 60)
        snprintf(out, n, "%" PRIu64 "m %02" PRIu64 "s", s / 60, s % 60);
    else
        snprintf(out, n, "%" PRIu64 "s", s);
}

static const char *describe(const char *name)
{
#define DESCRIBE(n, k, d)                                                                          \
    if (strcmp(name, #n) == 0)                                                                     \
        return d;
    HC_STATS_MAP(DESCRIBE)
#undef DESCRIBE
    if (strcmp(name, "node_id") == 0)
        return "this daemon's node id";
    if (strcmp(name, "uptime_s") == 0)
        return "time since the daemon started";
    if (strcmp(name, "capacity_bytes") == 0)
        return "byte limit of this node's segments";
    if (strcmp(name, "version") == 0)
        return "daemon version";
    return "";
}

/* Prints the counters one per line, in the daemon's order, byte counters in
 * human units, then the hit ratio. */
static int print_stats_table(json_t *root)
{
    const char *name;
    json_t *v;
    json_int_t hits = 0, misses = 0;
    char buf[64];

    json_object_foreach(root, name, v)
    {
        if (json_is_object(v) || json_is_array(v))
            continue; /* the latency histograms: in --json and --prometheus */
        if (json_is_integer(v)) {
            json_int_t i = json_integer_value(v);
            uint64_t u = i < 0 ? 0 : (uint64_t)i;

            if (strcmp(name, "capacity_bytes") == 0 && u == 0)
                snprintf(buf, sizeof(buf), "unlimited");
            else if (strstr(name, "bytes") != NULL)
                human_bytes(buf, sizeof(buf), u);
            else if (strcmp(name, "uptime_s") == 0)
                human_duration(buf, sizeof(buf), u);
            else
                snprintf(buf, sizeof(buf), "%" JSON_INTEGER_FORMAT, i);
            if (strcmp(name, "hits") == 0)
                hits = i;
            if (strcmp(name, "misses") == 0)
                misses = i;
        } else if (json_is_string(v)) {
            snprintf(buf, sizeof(buf), "%s", json_string_value(v));
        } else if (json_is_real(v)) {
            snprintf(buf, sizeof(buf), "%g", json_real_value(v));
        } else {
            char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);

            snprintf(buf, sizeof(buf), "%s", s != NULL ? s : "?");
            free(s);
        }
        printf("%-20s %14s  %s\n", name, buf, describe(name));
    }
    if (hits + misses > 0)
        snprintf(buf, sizeof(buf), "%.1f%%", 100.0 * (double)hits / (double)(hits + misses));
    else
        snprintf(buf, sizeof(buf), "n/a");
    printf("%-20s %14s  %s\n", "hit_ratio", buf, "hits / (hits + misses)");
    return EXIT_DONE;
}

static int cmd_stats(struct ctl *x, int argc, char **argv)
{
    bool as_json = false, as_prom = false;
    json_error_t jerr;
    json_t *root;
    char *js = NULL;
    int i, r;

    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0)
            as_json = true;
        else if (strcmp(argv[i], "--prometheus") == 0)
            as_prom = true;
        else
            return fail("stats: unknown argument '%s' (try --help)", argv[i]);
    }
    if (ctl_connect(x) != EXIT_DONE)
        return EXIT_ERROR;
    if (as_json && as_prom)
        return fail("stats: --json and --prometheus exclude each other");
    r = hc_stats(x->c, &js);
    if (r < 0)
        return fail("stats: %s", hc_strerror(r));
    root = json_loads(js, 0, &jerr);
    if (root == NULL || !json_is_object(root)) {
        json_decref(root);
        if (as_json) {
            /* Not ours to judge: hand over what the daemon said. */
            printf("%s\n", js);
            hc_free(js);
            return EXIT_DONE;
        }
        hc_free(js);
        return fail("stats: the daemon's answer is not a JSON object");
    }
    hc_free(js);
    if (as_json) {
        char *s = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);

        if (s != NULL)
            printf("%s\n", s);
        free(s);
        r = s != NULL ? EXIT_DONE : fail("stats: out of memory");
    } else if (as_prom) {
        char *s = hc_prom_text(root);

        if (s != NULL)
            fputs(s, stdout);
        free(s);
        r = s != NULL ? EXIT_DONE : fail("stats: out of memory");
    } else {
        r = print_stats_table(root);
    }
    json_decref(root);
    return r;
}

static int cmd_ping(struct ctl *x, int argc, char **argv)
{
    struct timespec t0, t1;
    int r;

    if (argc != 1)
        return fail("ping takes no arguments (try --help)");
    if (ctl_connect(x) != EXIT_DONE)
        return EXIT_ERROR;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    r = hc_ping(x->c);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (r < 0)
        return fail("ping: %s", hc_strerror(r));
    printf("pong from %s: %.3f ms\n", hc_node_id(x->c),
           (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6);
    return EXIT_DONE;
}

static int cmd_exists(struct ctl *x, int argc, char **argv)
{
    const char *const *keys = (const char *const *)argv + 1;
    size_t n = (size_t)argc - 1, i;
    uint64_t *lengths;
    int r, rc = EXIT_DONE;

    if (n == 0)
        return fail("exists needs at least one KEY (try --help)");
    for (i = 0; i < n; i++)
        if (check_key(keys[i]) != EXIT_DONE)
            return EXIT_ERROR;
    lengths = calloc(n, sizeof(*lengths));
    if (lengths == NULL)
        return fail("out of memory");
    if (ctl_connect(x) != EXIT_DONE) {
        free(lengths);
        return EXIT_ERROR;
    }
    r = hc_batch_exists(x->c, keys, n, lengths);
    if (r < 0) {
        free(lengths);
        return fail("exists: %s", hc_strerror(r));
    }
    for (i = 0; i < n; i++) {
        if (lengths[i] == HC_LEN_UNKNOWN) {
            printf("%s yes ?\n", keys[i]); /* held in a filter: length not known */
        } else if (lengths[i] > 0) {
            printf("%s yes %" PRIu64 "\n", keys[i], lengths[i]);
        } else {
            printf("%s no\n", keys[i]);
            rc = EXIT_MISS;
        }
    }
    free(lengths);
    return rc;
}

/* Reads all of fd into a malloc'd buffer. Returns 0 or -errno. */
static int read_all(int fd, uint8_t **out, size_t *len)
{
    size_t cap = 1 << 16, n = 0;
    uint8_t *buf = malloc(cap);

    if (buf == NULL)
        return -ENOMEM;
    for (;;) {
        ssize_t k;

        if (n == cap) {
            uint8_t *nb = realloc(buf, cap * 2);

            if (nb == NULL) {
                free(buf);
                return -ENOMEM;
            }
            buf = nb;
            cap *= 2;
        }
        k = read(fd, buf + n, cap - n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0) {
            int r = -errno;

            free(buf);
            return r;
        }
        if (k == 0)
            break;
        n += (size_t)k;
    }
    *out = buf;
    *len = n;
    return 0;
}

static int write_all(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t k = write(fd, p, n);

        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            return -errno;
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

static int cmd_put(struct ctl *x, int argc, char **argv)
{
    const char *key, *file;
    uint8_t *data = NULL;
    size_t len = 0;
    hc_buf b;
    hc_page page;
    int fd, r, result = 0;

    if (argc != 3)
        return fail("usage: put KEY FILE (FILE - = stdin)");
    key = argv[1];
    file = argv[2];
    if (check_key(key) != EXIT_DONE)
        return EXIT_ERROR;
    fd = strcmp(file, "-") == 0 ? STDIN_FILENO : open(file, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return fail("put: cannot open %s: %s", file, strerror(errno));
    r = read_all(fd, &data, &len);
    if (fd != STDIN_FILENO)
        close(fd);
    if (r < 0)
        return fail("put: cannot read %s: %s", file, strerror(-r));
    if (len == 0) {
        free(data);
        return fail("put: %s is empty: a page needs at least one byte", file);
    }
    if (ctl_connect_sized(x, len) != EXIT_DONE) {
        free(data);
        return EXIT_ERROR;
    }
    b = (hc_buf){data, len};
    page = (hc_page){key, &b, 1};
    r = hc_batch_set(x->c, &page, 1, &result);
    free(data);
    if (r < 0)
        return fail("put %s: %s", key, hc_strerror(r));
    if (result < 0) {
        if (result == -EMSGSIZE)
            return fail("put %s: %s (%zu bytes; the region is %" PRIu64 " bytes)", key,
                        hc_strerror(result), len, hc_region_size(x->c));
        return fail("put %s: %s", key, hc_strerror(result));
    }
    printf("%s stored %zu bytes\n", key, len);
    return EXIT_DONE;
}

static int cmd_get(struct ctl *x, int argc, char **argv)
{
    const char *key, *file;
    uint64_t length = 0;
    uint8_t *data;
    hc_buf b;
    hc_page page;
    int fd, r, result = 0;
    bool to_stdout;

    if (argc != 3)
        return fail("usage: get KEY FILE (FILE - = stdout)");
    key = argv[1];
    file = argv[2];
    to_stdout = strcmp(file, "-") == 0;
    if (check_key(key) != EXIT_DONE)
        return EXIT_ERROR;
    if (ctl_connect(x) != EXIT_DONE)
        return EXIT_ERROR;
    r = hc_batch_exists(x->c, &key, 1, &length);
    if (r == 1 && length == HC_LEN_UNKNOWN) {
        /* Another node's page the daemon holds in a filter: a get finds its
         * entry (and answers ENOSPC for this one byte), then exists knows
         * its length. */
        uint8_t one;
        b = (hc_buf){&one, 1};
        page = (hc_page){key, &b, 1};
        (void)hc_batch_get(x->c, &page, 1, &result);
        r = hc_batch_exists(x->c, &key, 1, &length);
        if (r == 1 && length == HC_LEN_UNKNOWN)
            length = 0; /* not found in its owner's keys file: a miss */
    }
    if (r < 0)
        return fail("get %s: %s", key, hc_strerror(r));
    if (r == 0 || length == 0) {
        fprintf(stderr, "hicachectl: %s: no such page\n", key);
        return EXIT_MISS;
    }
    if (length > SIZE_MAX)
        return fail("get %s: page of %" PRIu64 " bytes is too large", key, length);
    if (length > hc_region_size(x->c)) {
        /* Ask for a region that holds the page. */
        hc_close(x->c);
        x->c = NULL;
        if (ctl_connect_sized(x, length) != EXIT_DONE)
            return EXIT_ERROR;
    }
    data = malloc((size_t)length);
    if (data == NULL)
        return fail("get %s: out of memory for %" PRIu64 " bytes", key, length);
    b = (hc_buf){data, (size_t)length};
    page = (hc_page){key, &b, 1};
    r = hc_batch_get(x->c, &page, 1, &result);
    if (r < 0 || result < 0) {
        free(data);
        if (r >= 0 && result == -ENOENT) {
            fprintf(stderr, "hicachectl: %s: no such page (dropped since exists)\n", key);
            return EXIT_MISS;
        }
        if (r >= 0 && result == -EMSGSIZE && length > hc_region_size(x->c))
            return fail("get %s: page of %" PRIu64 " bytes is larger than the region (%" PRIu64
                        " bytes)",
                        key, length, hc_region_size(x->c));
        return fail("get %s: %s", key, hc_strerror(r < 0 ? r : result));
    }
    fd = to_stdout ? STDOUT_FILENO : open(file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        free(data);
        return fail("get: cannot create %s: %s", file, strerror(errno));
    }
    r = write_all(fd, data, (size_t)length);
    free(data);
    if (!to_stdout && close(fd) < 0 && r == 0)
        r = -errno;
    if (r < 0)
        return fail("get: cannot write %s: %s", file, strerror(-r));
    if (!to_stdout)
        printf("%s %" PRIu64 " bytes written to %s\n", key, length, file);
    return EXIT_DONE;
}

static int cmd_clear(struct ctl *x, int argc, char **argv)
{
    int r;

    if (argc != 1)
        return fail("clear takes no arguments (try --help)");
    if (ctl_connect(x) != EXIT_DONE)
        return EXIT_ERROR;
    r = hc_clear(x->c);
    if (r < 0)
        return fail("clear: %s", hc_strerror(r));
    printf("dropped %d pages of namespace %s\n", r, x->ns);
    return EXIT_DONE;
}

static const struct command {
    const char *name;
    int (*run)(struct ctl *x, int argc, char **argv);
} commands[] = {
    {"stats", cmd_stats}, {"ping", cmd_ping}, {"exists", cmd_exists},
    {"put", cmd_put},     {"get", cmd_get},   {"clear", cmd_clear},
};

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"socket", required_argument, NULL, 's'},  {"namespace", required_argument, NULL, 'n'},
        {"timeout", required_argument, NULL, 't'}, {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},       {NULL, 0, NULL, 0},
    };
    struct ctl x = {.ns = "default"};
    const char *why;
    size_t i;
    int opt, rc;

    opterr = 0;
    while ((opt = getopt_long(argc, argv, "+s:n:t:hV", longopts, NULL)) != -1) {
        char *end;
        long v;

        switch (opt) {
        case 's':
            x.socket = optarg;
            break;
        case 'n':
            x.ns = optarg;
            break;
        case 't':
            errno = 0;
            v = strtol(optarg, &end, 10);
            if (errno != 0 || end == optarg || *end != '\0' || v <= 0 || v > 3600 * 1000)
                return fail("--timeout: '%s' is not a number of milliseconds in 1..3600000",
                            optarg);
            x.timeout_ms = (int)v;
            break;
        case 'h':
            usage(stdout);
            return EXIT_DONE;
        case 'V':
            printf("hicachectl %s (protocol %d)\n", HC_VERSION, HC_PROTOCOL_VERSION);
            return EXIT_DONE;
        default:
            if (optopt != 0 && strchr("snt", optopt) != NULL)
                return fail("option -%c needs a value (try --help)", optopt);
            return fail("unknown option '%s' (try --help)", argv[optind - 1]);
        }
    }
    if (optind >= argc) {
        usage(stderr);
        return EXIT_ERROR;
    }
    why = hc_name_invalid("namespace", x.ns, strnlen(x.ns, HC_MAX_NS + 1));
    if (why != NULL)
        return fail("invalid namespace '%.*s': %s", (int)HC_MAX_NS, x.ns, why);
    for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        if (strcmp(argv[optind], commands[i].name) == 0) {
            rc = commands[i].run(&x, argc - optind, argv + optind);
            hc_close(x.c);
            fflush(stdout);
            if (ferror(stdout) && rc == EXIT_DONE)
                rc = fail("cannot write to standard output");
            return rc;
        }
    }
    return fail("unknown command '%s' (try --help)", argv[optind]);
}
