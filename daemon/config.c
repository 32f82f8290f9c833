/* Daemon configuration: defaults, then a JSON file, then command-line flags.
 *
 * One table describes every option (JSON name, type, field, range, help). The
 * JSON loader, the command-line parser, the usage text and the deep copy all
 * walk that table, so a new key is one line here and one field in config.h.
 * Every change is made on a copy that replaces the caller's struct only when
 * everything parsed: on error the caller's config is untouched.
 *
 * Not thread-safe: call at start-up (or reload) on the main thread, before
 * other threads read the struct or after they stopped. */
#include "config.h"
#include "store.h" /* HC_STORE_OPEN_MAX */

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "hicache_defs.h"
#include "config_value.h"
#include "key.h"
#include "metrics.h"

#define KiB (UINT64_C(1) << 10)
#define MiB (UINT64_C(1) << 20)
#define GiB (UINT64_C(1) << 30)
#define TiB (UINT64_C(1) << 40)

#define HC_SOCKET_MAX (sizeof(((struct sockaddr_un *)0)->sun_path) - 1)
#define HC_GOT_MAX 48 /* bytes of a bad value quoted in a message */

enum opt_type {
    OPT_PATH,   /* char *: non-empty, no NUL */
    OPT_SOCKET, /* char *: non-empty, fits sun_path with its NUL */
    OPT_LISTEN, /* char *: HOST:PORT or a socket path (metrics.h); "" or null: off */
    OPT_NAME,   /* char *: [A-Za-z0-9_.-]{1,64}, not "." or ".." */
    OPT_LIST,   /* char *: comma-separated names or ids; NULL = anyone */
    OPT_SIZE,   /* uint64_t: integer, or string with K/M/G/T suffix */
    OPT_SIZE32, /* uint32_t, same syntax */
    OPT_U32,    /* uint32_t integer */
    OPT_DOUBLE, /* double */
    OPT_BOOL,   /* bool */
    OPT_MODE,   /* uint32_t octal file mode */
    OPT_CHOICE, /* uint32_t: index of the word in arg ("a|b|c") */
};

#define OPTF_NOVALUE 1u /* on the command line a bare flag meaning true */

struct opt {
    const char *name; /* JSON key; the flag is --name with '_' -> '-' */
    enum opt_type type;
    size_t off;
    uint64_t min, max; /* integers and sizes; max UINT64_MAX = no upper bound */
    double dmin, dmax; /* OPT_DOUBLE */
    unsigned flags;
    const char *arg;  /* placeholder in the usage text */
    const char *help; /* one line */
};

/* offsetof that fails to compile unless the field has type T, so a table line
 * cannot silently write a uint32_t through a uint64_t. */
#define FIELD(f, T) _Generic(((struct hc_config *)0)->f, T : offsetof(struct hc_config, f))

/* clang-format off */
#define STR_OPT(f, t, arg, help) {#f, t, FIELD(f, char *), 0, 0, 0, 0, 0, arg, help}
#define SIZE_OPT(f, lo, hi, help) {#f, OPT_SIZE, FIELD(f, uint64_t), lo, hi, 0, 0, 0, "SIZE", help}
#define SIZE32_OPT(f, lo, hi, help) \
    {#f, OPT_SIZE32, FIELD(f, uint32_t), lo, hi, 0, 0, 0, "SIZE", help}
#define U32_OPT(f, lo, hi, arg, help) {#f, OPT_U32, FIELD(f, uint32_t), lo, hi, 0, 0, 0, arg, help}
#define BOOL_OPT(f, flags, help) {#f, OPT_BOOL, FIELD(f, bool), 0, 1, 0, 0, flags, "BOOL", help}
#define CHOICE_OPT(f, words, help) {#f, OPT_CHOICE, FIELD(f, uint32_t), 0, 0, 0, 0, 0, words, help}
/* clang-format on */

static const struct opt opts[] = {
    STR_OPT(mount_point, OPT_PATH, "DIR", "directory the shared volume is mounted on"),
    STR_OPT(root_dir, OPT_NAME, "NAME", "directory under the mount point for all nodes' data"),
    STR_OPT(node_id, OPT_NAME, "NAME", "this node's directory under root_dir"),
    STR_OPT(socket_path, OPT_SOCKET, "PATH", "control socket (also --socket)"),
    STR_OPT(metrics_listen, OPT_LISTEN, "ADDR",
            "Prometheus endpoint, HOST:PORT or a socket path (off when empty)"),
    {"socket_mode", OPT_MODE, FIELD(socket_mode, uint32_t), 0, 0777, 0, 0, 0, "MODE",
     "octal permissions of the control socket"},
    STR_OPT(allowed_uids, OPT_LIST, "LIST", "users (names or uids, comma-separated) allowed in"),
    STR_OPT(allowed_gids, OPT_LIST, "LIST", "groups (names or gids, comma-separated) allowed in"),
    SIZE_OPT(region_size, MiB, 4 * GiB, "shared-memory region per client"),
    SIZE_OPT(map_ahead, 0, 1024 * GiB,
             "bytes of clients' regions and host pools mapped ahead of use at most (0: none)"),
    SIZE_OPT(segment_size, MiB, 32 * GiB, "size of one segment file"),
    U32_OPT(open_segments, 0, HC_STORE_OPEN_MAX, "N",
            "segments written at once, each by one writer (0: one per I/O thread)"),
    SIZE_OPT(capacity_bytes, 0, UINT64_MAX, "byte limit of this node's segments (0: none)"),
    {"min_free_ratio", OPT_DOUBLE, FIELD(min_free_ratio, double), 0, 0, 0.0, 0.9, 0, "RATIO",
     "fraction of the volume to keep free"},
    U32_OPT(io_threads, 1, 64, "N", "I/O threads (uring: each with its own io_uring)"),
    CHOICE_OPT(io_engine, "uring|threads",
               "how I/O threads do I/O: io_uring, or blocking preadv/pwritev (FUSE)"),
    U32_OPT(queue_depth, 4, 4096, "N", "io_uring entries per I/O thread"),
    SIZE_OPT(max_inflight_bytes, MiB, UINT64_MAX, "bytes of storage I/O in flight at most"),
    SIZE32_OPT(max_frame_bytes, 4 * KiB, 64 * MiB, "largest control message accepted"),
    U32_OPT(max_clients, 1, 65536, "N", "client connections at most"),
    U32_OPT(max_batch, 1, 128, "N", "pages per request at most"),
    U32_OPT(seal_interval_ms, 10, 86400000, "MS", "seal an open segment after this long"),
    U32_OPT(discovery_interval_ms, 10, 86400000, "MS", "look for other nodes' segments this often"),
    CHOICE_OPT(remote_index, "exact|filter",
               "other nodes' sealed pages: index entries, or a filter per node with the entry "
               "read from its keys file on a get"),
    U32_OPT(
        keys_interval_ms, 0, 86400000, "MS",
        "publish this node's keys file for other nodes' fleet index at most this often (0: never)"),
    U32_OPT(visibility_ms, 0, 86400000, "MS",
            "other nodes see a page within about this long (0: once its segment is sealed)"),
    BOOL_OPT(use_direct_io, 0, "read and write segments with O_DIRECT"),
    BOOL_OPT(enable_compression, 0, "compress stored pages (zstd) unless a client says"),
    U32_OPT(read_linger_ms, 0, 600000, "MS",
            "keep a read page this long for its other readers (MLA ranks)"),
    SIZE_OPT(read_linger_bytes, 0, 64 * GiB, "memory for pages kept for their other readers"),
    BOOL_OPT(dedupe, 0, "store a page once however many clients set it"),
    BOOL_OPT(coalesce_reads, 0, "serve concurrent gets of one page with one read"),
    BOOL_OPT(reinsert, 0,
             "write pages read again or late in their segment's life again when it is evicted"),
    CHOICE_OPT(log_level, "error|warning|info|debug",
               "log lines of this level and more severe (SIGHUP applies a change)"),
    BOOL_OPT(foreground, OPTF_NOVALUE,
             "accepted for compatibility: hicached always stays in the foreground"),
};

#define N_OPTS (sizeof(opts) / sizeof(opts[0]))

/* Command-line spellings that are not --<kebab-case of a key>. */
static const struct {
    const char *flag;
    const char *key;
} aliases[] = {
    {"socket", "socket_path"},
};

static char **str_field(struct hc_config *c, const struct opt *o)
{
    return (char **)((char *)c + o->off);
}

static bool opt_is_string(const struct opt *o)
{
    return o->type == OPT_PATH || o->type == OPT_SOCKET || o->type == OPT_LISTEN ||
           o->type == OPT_NAME || o->type == OPT_LIST;
}

/* Writes a message into err (if any) and returns rc. */
__attribute__((format(printf, 4, 5))) static int fail(char *err, size_t errlen, int rc,
                                                      const char *fmt, ...)
{
    va_list ap;

    if (err && errlen > 0) {
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return rc;
}

/* ---- names ---- */

/* The host name with every byte outside [A-Za-z0-9_.-] turned into '-',
 * cut to 64 characters; "localhost" if nothing usable is left. */
static char *default_node_id(void)
{
    char host[256];
    size_t i, n;

    if (gethostname(host, sizeof(host)) < 0)
        host[0] = '\0';
    host[sizeof(host) - 1] = '\0';
    n = strlen(host);
    if (n > HC_MAX_NODE)
        n = HC_MAX_NODE;
    host[n] = '\0';
    for (i = 0; i < n; i++)
        if (!hc_name_char((unsigned char)host[i]))
            host[i] = '-';
    if (!hc_node_name_ok(host, n))
        return strdup("localhost");
    return strdup(host);
}

/* ---- choices ---- */

/* Finds s[0..len) among the words of "a|b|c"; sets *idx. */
static bool choice_find(const char *words, const char *s, size_t len, uint64_t *idx)
{
    uint64_t i = 0;

    for (;;) {
        const char *bar = strchr(words, '|');
        size_t wlen = bar ? (size_t)(bar - words) : strlen(words);
        if (wlen == len && memcmp(words, s, len) == 0) {
            *idx = i;
            return true;
        }
        if (!bar)
            return false;
        words = bar + 1;
        i++;
    }
}

/* Writes word idx of "a|b|c" into buf ("?" if there is none). */
static void choice_name(const char *words, uint64_t idx, char *buf, size_t len)
{
    for (uint64_t i = 0; i < idx && words; i++) {
        words = strchr(words, '|');
        if (words)
            words++;
    }
    if (!words) {
        snprintf(buf, len, "?");
        return;
    }
    snprintf(buf, len, "%.*s", (int)strcspn(words, "|"), words);
}

/* ---- formatting values for messages and usage ---- */

/* "64M", "1G", "4097": the largest binary unit that divides v exactly. */
static void fmt_size(uint64_t v, char *buf, size_t len)
{
    static const struct {
        uint64_t unit;
        char suffix;
    } units[] = {{TiB, 'T'}, {GiB, 'G'}, {MiB, 'M'}, {KiB, 'K'}};
    size_t i;

    for (i = 0; v != 0 && i < sizeof(units) / sizeof(units[0]); i++) {
        if (v % units[i].unit == 0) {
            snprintf(buf, len, "%" PRIu64 "%c", v / units[i].unit, units[i].suffix);
            return;
        }
    }
    snprintf(buf, len, "%" PRIu64, v);
}

/* Quotes s[0..len) for a message: printable ASCII kept, '"' and '\\'
 * escaped, other bytes as \xNN, cut after HC_GOT_MAX bytes with "...". */
static void quote(const char *s, size_t len, char *buf, size_t buflen)
{
    size_t i, o = 0;

    if (buflen < 8)
        return;
    buf[o++] = '"';
    for (i = 0; i < len && i < HC_GOT_MAX && o + 8 < buflen; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\') {
            buf[o++] = '\\';
            buf[o++] = (char)ch;
        } else if (ch < 0x20 || ch >= 0x7f) {
            o += (size_t)snprintf(buf + o, buflen - o, "\\x%02x", ch);
        } else {
            buf[o++] = (char)ch;
        }
    }
    if (i < len) {
        memcpy(buf + o, "...", 3);
        o += 3;
    }
    buf[o++] = '"';
    buf[o] = '\0';
}

/* How a value from a file or a flag reads in a message: strings quoted,
 * anything else as compact JSON. */
static void describe(const json_t *j, const char *s, char *buf, size_t len)
{
    char *dump;

    if (s) {
        quote(s, strlen(s), buf, len);
        return;
    }
    if (json_is_string(j)) {
        quote(json_string_value(j), json_string_length(j), buf, len);
        return;
    }
    dump = json_dumps(j, JSON_ENCODE_ANY | JSON_COMPACT | JSON_REAL_PRECISION(15));
    if (!dump) {
        snprintf(buf, len, "?");
        return;
    }
    if (strlen(dump) > HC_GOT_MAX)
        snprintf(buf, len, "%.*s...", HC_GOT_MAX, dump);
    else
        snprintf(buf, len, "%s", dump);
    free(dump);
}

/* What an option accepts, as the middle of "'key' must be ...". */
static void requirement(const struct opt *o, bool from_json, char *buf, size_t len)
{
    char lo[32], hi[32];

    switch (o->type) {
    case OPT_PATH:
        snprintf(buf, len, "a non-empty path");
        break;
    case OPT_SOCKET:
        snprintf(buf, len, "a non-empty path of at most %zu bytes", (size_t)HC_SOCKET_MAX);
        break;
    case OPT_LISTEN:
        snprintf(buf, len,
                 "HOST:PORT (numeric IPv4, [IPv6] or localhost), an absolute socket "
                 "path, or %s for off",
                 from_json ? "null or \"\"" : "\"\"");
        break;
    case OPT_NAME:
        snprintf(buf, len, "1 to %u characters of [A-Za-z0-9_.-], not '.', without '..'",
                 HC_MAX_NODE);
        break;
    case OPT_LIST:
        snprintf(buf, len,
                 "a comma-separated list of names or ids of [A-Za-z0-9_.-]%s, or %s for anyone",
                 from_json ? " (or an array of them)" : "", from_json ? "null or \"\"" : "\"\"");
        break;
    case OPT_SIZE:
    case OPT_SIZE32:
        fmt_size(o->min, lo, sizeof(lo));
        fmt_size(o->max, hi, sizeof(hi));
        if (o->max != UINT64_MAX)
            snprintf(buf, len, "a size from %s to %s", lo, hi);
        else if (o->min > 0)
            snprintf(buf, len, "a size of at least %s", lo);
        else
            snprintf(buf, len, "a size");
        snprintf(buf + strlen(buf), len - strlen(buf), "%s",
                 from_json ? ": bytes as an integer, or a string with a K/M/G/T suffix such as "
                             "\"64M\""
                           : ": bytes, or a number with a K/M/G/T suffix such as 64M");
        break;
    case OPT_U32:
        snprintf(buf, len, "an integer from %" PRIu64 " to %" PRIu64, o->min, o->max);
        break;
    case OPT_DOUBLE:
        snprintf(buf, len, "a number from %g to %g", o->dmin, o->dmax);
        break;
    case OPT_BOOL:
        snprintf(buf, len, from_json ? "true or false" : "true or false (or yes/no, on/off, 1/0)");
        break;
    case OPT_MODE:
        snprintf(buf, len, "an octal mode from \"0000\" to \"0777\" such as \"0660\"");
        break;
    case OPT_CHOICE: {
        const char *w = o->arg;
        size_t n = 0;
        snprintf(buf, len, "one of");
        while (w && *w) {
            size_t wlen = strcspn(w, "|"), at = strlen(buf);
            snprintf(buf + at, len - at, "%s \"%.*s\"", n++ ? "," : "", (int)wlen, w);
            w = w[wlen] ? w + wlen + 1 : NULL;
        }
        break;
    }
    }
}

/* A value of an option as opt_parse read it, before it goes into the
 * config. */
struct opt_val {
    const char *str; /* the string given (JSON string or command line), or NULL */
    size_t len;
    uint64_t u;
    double d;
    bool b;
    char *copy; /* OPT_LIST: the parsed list, owned */
    bool ok;    /* the value meets o's type and bounds */
};

/* Reads the value of o from JSON (j) or from the command line (s) into *v and
 * checks it against o's type and bounds (v->ok). Returns 0, or -ENOMEM. */
static int opt_parse(const struct opt *o, const json_t *j, const char *s, struct opt_val *v)
{
    int rc;

    *v = (struct opt_val){.str = s, .len = s ? strlen(s) : 0};
    if (j && json_is_string(j)) {
        v->str = json_string_value(j);
        v->len = json_string_length(j);
    } else if (j) {
        v->str = NULL;
    }
    const char *str = v->str;
    size_t len = v->len;

    switch (o->type) {
    case OPT_PATH:
    case OPT_SOCKET:
        v->ok =
            str && len > 0 && strlen(str) == len && (o->type == OPT_PATH || len <= HC_SOCKET_MAX);
        break;
    case OPT_NAME:
        v->ok = str && hc_node_name_ok(str, len);
        break;
    case OPT_LISTEN:
        /* null or "": off (NULL) */
        v->ok = (j && json_is_null(j)) ||
                (str && strlen(str) == len && (len == 0 || hc_metrics_listen_invalid(str) == NULL));
        if (v->ok && str && len > 0 && !(v->copy = strndup(str, len)))
            return -ENOMEM;
        break;
    case OPT_LIST:
        rc = hc__cfg_parse_list(j, s, &v->copy);
        if (rc == -ENOMEM)
            return rc;
        v->ok = rc == 0;
        break;
    case OPT_SIZE:
    case OPT_SIZE32:
    case OPT_U32:
        if (j && json_is_integer(j)) {
            v->ok = json_integer_value(j) >= 0;
            v->u = (uint64_t)json_integer_value(j);
        } else if (str && o->type != OPT_U32) {
            v->ok = strlen(str) == len && hc__cfg_parse_size(str, &v->u);
        } else if (str && !j) {
            v->ok = hc__cfg_parse_u64(str, len, &v->u);
        }
        v->ok = v->ok && v->u >= o->min && v->u <= o->max;
        break;
    case OPT_DOUBLE:
        if (j && json_is_number(j)) {
            v->d = json_number_value(j);
            v->ok = true;
        } else if (str && !j && len > 0) {
            char *end;
            errno = 0;
            v->d = strtod(str, &end);
            v->ok = *end == '\0' && errno == 0;
        }
        v->ok = v->ok && isfinite(v->d) && v->d >= o->dmin && v->d <= o->dmax;
        break;
    case OPT_BOOL:
        if (j && json_is_boolean(j)) {
            v->b = json_is_true(j);
            v->ok = true;
        } else if (str && !j) {
            v->ok = hc__cfg_parse_bool(str, &v->b);
        }
        break;
    case OPT_MODE:
        /* JSON has no octal literals: 660 means 0660, as with chmod */
        if (j && json_is_integer(j) && json_integer_value(j) >= 0) {
            char digits[24];
            snprintf(digits, sizeof(digits), "%" JSON_INTEGER_FORMAT, json_integer_value(j));
            v->ok = hc__cfg_parse_mode(digits, &v->u);
        } else if (str) {
            v->ok = strlen(str) == len && hc__cfg_parse_mode(str, &v->u);
        }
        v->ok = v->ok && v->u <= o->max;
        break;
    case OPT_CHOICE:
        v->ok = str && strlen(str) == len && choice_find(o->arg, str, len, &v->u);
        break;
    }

    return 0;
}

/* Stores the checked value v of o into c. Returns 0, or -ENOMEM (c
 * unchanged). */
static int opt_store(struct hc_config *c, const struct opt *o, struct opt_val *v)
{
    switch (o->type) {
    case OPT_PATH:
    case OPT_SOCKET:
    case OPT_NAME:
        v->copy = strndup(v->str, v->len);
        if (!v->copy)
            return -ENOMEM;
        /* fall through */
    case OPT_LIST:
    case OPT_LISTEN:
        free(*str_field(c, o));
        *str_field(c, o) = v->copy;
        break;
    case OPT_SIZE:
        *(uint64_t *)((char *)c + o->off) = v->u;
        break;
    case OPT_SIZE32:
    case OPT_U32:
    case OPT_MODE:
    case OPT_CHOICE:
        *(uint32_t *)((char *)c + o->off) = (uint32_t)v->u;
        break;
    case OPT_DOUBLE:
        *(double *)((char *)c + o->off) = v->d;
        break;
    case OPT_BOOL:
        *(bool *)((char *)c + o->off) = v->b;
        break;
    }
    return 0;
}

/* Applies one value to c: from JSON (j) or from the command line (s). Returns
 * 0, -ENOMEM, or -EINVAL with "must be ... (got ...)" in why. On error c is
 * unchanged. */
static int opt_apply(struct hc_config *c, const struct opt *o, const json_t *j, const char *s,
                     char *why, size_t whylen)
{
    char need[200], got[HC_GOT_MAX * 4 + 16];
    struct opt_val v;
    int rc = opt_parse(o, j, s, &v);

    if (rc < 0)
        return rc;
    if (!v.ok) {
        requirement(o, j != NULL, need, sizeof(need));
        describe(j, s, got, sizeof(got));
        snprintf(why, whylen, "must be %s (got %s)", need, got);
        return -EINVAL;
    }
    return opt_store(c, o, &v);
}

/* ---- whole configs ---- */

/* Fills every default (node_id from the host name) into an uninitialized
 * cfg. Returns 0 or -ENOMEM (then cfg holds nothing to free). */
int hc_config_init(struct hc_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->region_size = 64 * MiB;
    cfg->map_ahead = 4 * GiB;
    cfg->segment_size = 256 * MiB;
    cfg->capacity_bytes = 0;
    cfg->min_free_ratio = 0.05;
    cfg->io_threads = 2;
    cfg->io_engine = 0; /* "uring" */
    cfg->queue_depth = 64;
    cfg->max_inflight_bytes = 256 * MiB;
    cfg->max_frame_bytes = (uint32_t)MiB;
    cfg->max_clients = 1024;
    cfg->max_batch = 128;
    cfg->seal_interval_ms = 30000;
    cfg->discovery_interval_ms = 5000;
    cfg->socket_mode = 0660;
    cfg->use_direct_io = false;
    cfg->enable_compression = false;
    cfg->read_linger_ms = 2000;
    cfg->read_linger_bytes = 256 * MiB;
    cfg->dedupe = true;
    cfg->coalesce_reads = true;
    cfg->reinsert = true;
    cfg->visibility_ms = 0;    /* each publish cuts a JuiceFS slice: opt in (tail.c) */
    cfg->keys_interval_ms = 0; /* read only by nodes with remote_index "filter" (keys.c) */
    cfg->foreground = false;
    cfg->log_level = 2; /* "info" */
    cfg->mount_point = strdup("/mnt/jfs");
    cfg->root_dir = strdup("hicache");
    cfg->socket_path = strdup(HC_DEFAULT_SOCKET);
    cfg->node_id = default_node_id();
    if (!cfg->mount_point || !cfg->root_dir || !cfg->socket_path || !cfg->node_id) {
        hc_config_free(cfg);
        return -ENOMEM;
    }
    return 0;
}

/* Frees the strings and NULLs them, so a second call is harmless. Accepts
 * NULL. */
void hc_config_free(struct hc_config *cfg)
{
    size_t i;

    if (!cfg)
        return;
    for (i = 0; i < N_OPTS; i++) {
        if (opt_is_string(&opts[i])) {
            free(*str_field(cfg, &opts[i]));
            *str_field(cfg, &opts[i]) = NULL;
        }
    }
    free(cfg->config_path);
    cfg->config_path = NULL;
}

/* Deep copy of src into dst (uninitialized). Returns 0 or -ENOMEM (then dst
 * holds nothing to free). */
static int config_copy(struct hc_config *dst, const struct hc_config *src)
{
    size_t i;

    *dst = *src;
    for (i = 0; i < N_OPTS; i++)
        if (opt_is_string(&opts[i]))
            *str_field(dst, &opts[i]) = NULL;
    dst->config_path = NULL;
    for (i = 0; i < N_OPTS; i++) {
        char *s;
        if (!opt_is_string(&opts[i]))
            continue;
        s = *str_field((struct hc_config *)src, &opts[i]);
        if (s && !(*str_field(dst, &opts[i]) = strdup(s)))
            goto err;
    }
    if (src->config_path && !(dst->config_path = strdup(src->config_path)))
        goto err;
    return 0;
err:
    hc_config_free(dst);
    return -ENOMEM;
}

/* Replaces *cfg by *tmp (taking its strings). */
static void config_swap(struct hc_config *cfg, struct hc_config *tmp)
{
    hc_config_free(cfg);
    *cfg = *tmp;
}

static const struct opt *opt_by_key(const char *key)
{
    size_t i;

    for (i = 0; i < N_OPTS; i++)
        if (strcmp(opts[i].name, key) == 0)
            return &opts[i];
    return NULL;
}

/* "io_threads" <-> "io-threads" */
static bool flag_matches(const char *flag, size_t flen, const char *key)
{
    size_t i;

    if (strlen(key) != flen)
        return false;
    for (i = 0; i < flen; i++)
        if (flag[i] != (key[i] == '_' ? '-' : key[i]))
            return false;
    return true;
}

static const struct opt *opt_by_flag(const char *flag, size_t flen)
{
    size_t i;

    for (i = 0; i < N_OPTS; i++)
        if (flag_matches(flag, flen, opts[i].name))
            return &opts[i];
    for (i = 0; i < sizeof(aliases) / sizeof(aliases[0]); i++)
        if (strlen(aliases[i].flag) == flen && memcmp(aliases[i].flag, flag, flen) == 0)
            return opt_by_key(aliases[i].key);
    return NULL;
}

/* Levenshtein distance, capped: enough to suggest a near key. */
static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), i, j;
    size_t row[64];

    if (la >= 63 || lb >= 63)
        return SIZE_MAX;
    for (j = 0; j <= lb; j++)
        row[j] = j;
    for (i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            if (row[j] + 1 < best)
                best = row[j] + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

/* The key nearest to an unknown one (as a key, '-' read as '_'), or NULL when
 * none is close. */
static const char *suggest(const char *unknown)
{
    char key[64];
    size_t i, best = 3;
    const char *hit = NULL;

    snprintf(key, sizeof(key), "%s", unknown);
    for (i = 0; key[i]; i++)
        if (key[i] == '-')
            key[i] = '_';
    for (i = 0; i < N_OPTS; i++) {
        size_t dist = edit_distance(key, opts[i].name);
        if (dist < best) {
            best = dist;
            hit = opts[i].name;
        }
    }
    return hit;
}

/* Merges the JSON object root into tmp; messages start with name. */
static int apply_json(struct hc_config *tmp, json_t *root, const char *name, char *err,
                      size_t errlen)
{
    static const char *const kinds[] = {"an object", "an array", "a string", "an integer",
                                        "a number",  "true",     "false",    "null"};
    const char *key;
    json_t *val;
    char why[512];

    if (!json_is_object(root))
        return fail(err, errlen, -EINVAL, "%s: the top level must be a JSON object, not %s", name,
                    kinds[json_typeof(root)]);
    json_object_foreach(root, key, val)
    {
        const struct opt *o = opt_by_key(key);
        int rc;

        if (!o) {
            const char *near = suggest(key);
            if (near)
                return fail(err, errlen, -EINVAL, "%s: unknown key '%.64s' (did you mean '%s'?)",
                            name, key, near);
            return fail(err, errlen, -EINVAL, "%s: unknown key '%.64s'", name, key);
        }
        rc = opt_apply(tmp, o, val, NULL, why, sizeof(why));
        if (rc == -ENOMEM)
            return fail(err, errlen, rc, "%s: out of memory", name);
        if (rc < 0)
            return fail(err, errlen, rc, "%s: '%s' %s", name, key, why);
    }
    return 0;
}

static int syntax_error(const json_error_t *je, const char *name, char *err, size_t errlen)
{
    return fail(err, errlen, -EINVAL, "%s: JSON syntax error at line %d, column %d: %s", name,
                je->line, je->column, je->text);
}

/* Parses the file at path into tmp (messages start with path). */
static int load_file_into(struct hc_config *tmp, const char *path, char *err, size_t errlen)
{
    json_error_t je;
    struct stat st;
    json_t *root;
    FILE *f;
    int rc;

    f = fopen(path, "re");
    if (!f)
        return fail(err, errlen, -errno, "%s: cannot open: %s", path, strerror(errno));
    if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
        fclose(f);
        return fail(err, errlen, -EISDIR, "%s: is a directory, not a JSON file", path);
    }
    root = json_loadf(f, JSON_REJECT_DUPLICATES, &je);
    fclose(f);
    if (!root)
        return syntax_error(&je, path, err, errlen);
    rc = apply_json(tmp, root, path, err, errlen);
    json_decref(root);
    return rc;
}

/* Merges the JSON object in the file at path over cfg; messages start with
 * path. Returns 0, -EINVAL, -ENOMEM or the -errno of opening the file; on
 * error cfg is unchanged. */
int hc_config_load_file(struct hc_config *cfg, const char *path, char *err, size_t errlen)
{
    struct hc_config tmp;
    int rc;

    if (!path)
        return fail(err, errlen, -EINVAL, "no config file given");
    if (config_copy(&tmp, cfg) < 0)
        return fail(err, errlen, -ENOMEM, "%s: out of memory", path);
    rc = load_file_into(&tmp, path, err, errlen);
    if (rc < 0) {
        hc_config_free(&tmp);
        return rc;
    }
    config_swap(cfg, &tmp);
    return 0;
}

/* Same as hc_config_load_file, from a NUL-terminated JSON text. */
int hc_config_load_string(struct hc_config *cfg, const char *json, const char *name, char *err,
                          size_t errlen)
{
    struct hc_config tmp;
    json_error_t je;
    json_t *root;
    int rc;

    if (!name)
        name = "config";
    root = json_loads(json, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return syntax_error(&je, name, err, errlen);
    rc = config_copy(&tmp, cfg);
    if (rc < 0) {
        json_decref(root);
        return fail(err, errlen, rc, "%s: out of memory", name);
    }
    rc = apply_json(&tmp, root, name, err, errlen);
    json_decref(root);
    if (rc < 0) {
        hc_config_free(&tmp);
        return rc;
    }
    config_swap(cfg, &tmp);
    return 0;
}

/* ---- command line ---- */

struct flag_val {
    const struct opt *opt;
    const char *flag; /* as typed, without "=value" */
    size_t flen;
    const char *value;
};

/* Splits argv into --config, --help/--version and the option flags with
 * their values (in order into vals). Returns 0 or -EINVAL with err set. */
static int scan_args(int argc, char **argv, struct flag_val *vals, size_t *nvals,
                     const char **config, bool *help, bool *version, char *err, size_t errlen)
{
    int i;

    *nvals = 0;
    /* --help and --version win over anything else, even a bad flag */
    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            *help = true;
        else if (strcmp(argv[i], "--version") == 0)
            *version = true;
    }
    if (*help || *version)
        return 0;
    for (i = 1; i < argc; i++) {
        const char *arg = argv[i], *name, *eq, *value = NULL;
        const struct opt *o;
        size_t nlen;

        if (strncmp(arg, "--", 2) != 0 || arg[2] == '\0')
            return fail(err, errlen, -EINVAL, "unexpected argument '%s' (see --help)", arg);
        name = arg + 2;
        eq = strchr(name, '=');
        nlen = eq ? (size_t)(eq - name) : strlen(name);
        if (eq)
            value = eq + 1;

        if ((nlen == 4 && memcmp(name, "help", 4) == 0) ||
            (nlen == 7 && memcmp(name, "version", 7) == 0)) {
            if (eq)
                return fail(err, errlen, -EINVAL, "--%.*s takes no value", (int)nlen, name);
            *(name[0] == 'h' ? help : version) = true;
            continue;
        }
        if (nlen == 6 && memcmp(name, "config", 6) == 0) {
            if (!value && i + 1 < argc)
                value = argv[++i];
            if (!value || !*value)
                return fail(err, errlen, -EINVAL, "--config: needs a FILE");
            if (*config)
                return fail(err, errlen, -EINVAL, "--config: given twice");
            *config = value;
            continue;
        }
        o = opt_by_flag(name, nlen);
        if (!o) {
            char unknown[64];
            const char *near;
            snprintf(unknown, sizeof(unknown), "%.*s", (int)nlen, name);
            near = suggest(unknown);
            if (near) {
                char kebab[64];
                size_t k;
                snprintf(kebab, sizeof(kebab), "%s", near);
                for (k = 0; kebab[k]; k++)
                    if (kebab[k] == '_')
                        kebab[k] = '-';
                return fail(err, errlen, -EINVAL, "unknown option '--%s' (did you mean '--%s'?)",
                            unknown, kebab);
            }
            return fail(err, errlen, -EINVAL, "unknown option '--%s' (see --help)", unknown);
        }
        if (o->flags & OPTF_NOVALUE) {
            if (eq)
                return fail(err, errlen, -EINVAL, "--%.*s takes no value", (int)nlen, name);
            value = "true";
        } else if (!value) {
            if (i + 1 >= argc)
                return fail(err, errlen, -EINVAL, "--%.*s: needs a value (%s)", (int)nlen, name,
                            o->arg);
            value = argv[++i];
        }
        vals[*nvals].opt = o;
        vals[*nvals].flag = name;
        vals[*nvals].flen = nlen;
        vals[*nvals].value = value;
        (*nvals)++;
    }
    return 0;
}

/* --config FILE is applied first wherever it stands, then every other flag
 * in order, so flags win over the file. Everything lands in a copy that
 * replaces cfg only when all of it parsed. */
int hc_config_parse_args(struct hc_config *cfg, int argc, char **argv, bool *exit_now, char *err,
                         size_t errlen)
{
    struct hc_config tmp;
    struct flag_val *vals;
    const char *config = NULL;
    bool help = false, version = false;
    size_t nvals, i;
    char why[512];
    int rc;

    if (exit_now)
        *exit_now = false;
    vals = calloc(argc > 0 ? (size_t)argc : 1, sizeof(*vals));
    if (!vals)
        return fail(err, errlen, -ENOMEM, "out of memory");
    rc = scan_args(argc, argv, vals, &nvals, &config, &help, &version, err, errlen);
    if (rc < 0)
        goto out;
    if (help || version) {
        if (help)
            hc_config_usage(stdout);
        else
            printf("hicached %s\n", HC_VERSION);
        fflush(stdout);
        if (exit_now)
            *exit_now = true;
        goto out;
    }
    rc = config_copy(&tmp, cfg);
    if (rc < 0) {
        fail(err, errlen, rc, "out of memory");
        goto out;
    }
    if (config) {
        char *abs = realpath(config, NULL);
        rc = load_file_into(&tmp, config, err, errlen);
        if (rc < 0 && rc != -ENOMEM)
            rc = -EINVAL; /* the contract: a bad command line, whatever the cause */
        if (rc == 0) {
            free(tmp.config_path);
            tmp.config_path = abs ? abs : strdup(config);
            if (!tmp.config_path)
                rc = fail(err, errlen, -ENOMEM, "out of memory");
        } else {
            free(abs);
        }
    }
    for (i = 0; rc == 0 && i < nvals; i++) {
        rc = opt_apply(&tmp, vals[i].opt, NULL, vals[i].value, why, sizeof(why));
        if (rc == -ENOMEM)
            fail(err, errlen, rc, "out of memory");
        else if (rc < 0)
            fail(err, errlen, rc, "--%.*s: %s", (int)vals[i].flen, vals[i].flag, why);
    }
    if (rc < 0) {
        hc_config_free(&tmp);
        goto out;
    }
    config_swap(cfg, &tmp);
out:
    free(vals);
    return rc;
}

/* The current value of an option as it would be typed. */
static void fmt_value(const struct hc_config *c, const struct opt *o, char *buf, size_t len)
{
    const char *p = (const char *)c + o->off;

    switch (o->type) {
    case OPT_PATH:
    case OPT_SOCKET:
    case OPT_NAME:
    case OPT_LIST:
        snprintf(buf, len, "%s", *(char *const *)p ? *(char *const *)p : "anyone");
        break;
    case OPT_LISTEN:
        snprintf(buf, len, "%s", *(char *const *)p ? *(char *const *)p : "off");
        break;
    case OPT_SIZE:
        fmt_size(*(const uint64_t *)p, buf, len);
        break;
    case OPT_SIZE32:
        fmt_size(*(const uint32_t *)p, buf, len);
        break;
    case OPT_U32:
        snprintf(buf, len, "%" PRIu32, *(const uint32_t *)p);
        break;
    case OPT_MODE:
        snprintf(buf, len, "%04" PRIo32, *(const uint32_t *)p);
        break;
    case OPT_DOUBLE:
        snprintf(buf, len, "%g", *(const double *)p);
        break;
    case OPT_BOOL:
        snprintf(buf, len, "%s", *(const bool *)p ? "true" : "false");
        break;
    case OPT_CHOICE:
        choice_name(o->arg, *(const uint32_t *)p, buf, len);
        break;
    }
}

/* Writes every option with its placeholder, help line and default. */
void hc_config_usage(FILE *out)
{
    struct hc_config def;
    bool have_def = hc_config_init(&def) == 0;
    size_t i, k;

    fprintf(out, "Usage: hicached [--config FILE] [--OPTION VALUE]...\n"
                 "Serves KV-cache pages to SGLang HiCache from a shared volume.\n\n"
                 "  --config FILE                    JSON object with the keys below in "
                 "snake_case (mount_point, ...); flags win over it\n"
                 "  --help                           print this text and exit\n"
                 "  --version                        print the version and exit\n\n");
    for (i = 0; i < N_OPTS; i++) {
        const struct opt *o = &opts[i];
        char flag[80], val[128], range[96], lo[32], hi[32];

        snprintf(flag, sizeof(flag), "--%s", o->name);
        for (k = 0; flag[k]; k++)
            if (flag[k] == '_')
                flag[k] = '-';
        if (!(o->flags & OPTF_NOVALUE))
            snprintf(flag + strlen(flag), sizeof(flag) - strlen(flag), " %s", o->arg);
        if (have_def)
            fmt_value(&def, o, val, sizeof(val));
        else
            snprintf(val, sizeof(val), "?");
        range[0] = '\0';
        fmt_size(o->min, lo, sizeof(lo));
        fmt_size(o->max, hi, sizeof(hi));
        if ((o->type == OPT_SIZE || o->type == OPT_SIZE32) && o->max == UINT64_MAX && o->min > 0)
            snprintf(range, sizeof(range), "; at least %s", lo);
        else if ((o->type == OPT_SIZE || o->type == OPT_SIZE32) && o->max != UINT64_MAX)
            snprintf(range, sizeof(range), "; %s to %s", lo, hi);
        else if (o->type == OPT_U32)
            snprintf(range, sizeof(range), "; %" PRIu64 " to %" PRIu64, o->min, o->max);
        else if (o->type == OPT_DOUBLE)
            snprintf(range, sizeof(range), "; %g to %g", o->dmin, o->dmax);
        fprintf(out, "  %-32s %s (default %s%s%s)\n", flag, o->help, val,
                strcmp(o->name, "node_id") == 0 ? ", from the host name" : "", range);
    }
    fprintf(out, "\nSIZE: bytes, or a number with a K, M, G or T suffix (binary: 64M = 64 MiB).\n"
                 "BOOL: true or false. MODE: octal, such as 0660. LIST: a,b,c or \"\" for "
                 "anyone.\n");
    if (have_def)
        hc_config_free(&def);
}

enum hc_log_level hc_config_log_level(const struct hc_config *cfg)
{
    static const enum hc_log_level levels[] = {HC_LOG_ERR, HC_LOG_WARN, HC_LOG_INFO, HC_LOG_DEBUG};

    return cfg->log_level < sizeof(levels) / sizeof(levels[0]) ? levels[cfg->log_level]
                                                               : HC_LOG_INFO;
}
