/* Restart: this node's segments are loaded at open. A sealed segment (one
 * with a good .idx) is loaded from its .idx; an unsealed one, or one whose
 * .idx is damaged, is scanned record by record, its good records indexed, and
 * sealed. Leftover .tmp files and .idx files without their segment are
 * removed. The next segment seq is chosen past every seq used before.
 *
 * Threads: loop thread, at open, before the loop runs; blocking I/O on the
 * mount throughout. That may stay synchronous: it is start-up, and the server
 * does not listen before hc_store_open returns. */
#include "store_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crc32c.h"
#include "log.h"

/* Reads this node's unsealed segment fd record by record from offset 0.
 * A record whose header is good but whose payload fails its CRC (e.g. a client
 * changed its slot while the set was written) is counted in corrupt_records,
 * left out and stepped over: its header gives its size. The scan stops at the
 * first bad header (magic, version, lengths, header CRC), a record running
 * past the end of the file, or a short read; nothing after that point can be
 * located. Fills seg->recs. Returns 0 or -errno (I/O). */
static int scan_segment(struct hc_store *s, struct seg *seg, int fd, uint64_t size)
{
    unsigned char *hdr = malloc(HC_STORE_ALIGN);
    void *buf = NULL;
    size_t bufcap = 0;
    uint64_t off = 0;
    int rc = 0;

    if (!hdr)
        return -ENOMEM;
    while (off + HC_STORE_ALIGN <= size) {
        struct hdr_view v;
        rc = hc__pread_all(fd, hdr, HC_STORE_ALIGN, off);
        if (rc < 0)
            break;
        if (hc__hdr_check(hdr, &v) < 0 || off + rec_size(v.len) > size)
            break;
        if (v.len > bufcap) {
            void *n = realloc(buf, v.len);
            if (!n) {
                rc = -ENOMEM;
                break;
            }
            buf = n;
            bufcap = v.len;
        }
        rc = hc__pread_all(fd, buf, v.len, off + HC_STORE_ALIGN);
        if (rc < 0)
            break;
        if (hc_crc32c(0, buf, v.len) != v.payload_crc) {
            s->st->corrupt_records++;
            hc_log(HC_LOG_WARN,
                   "store: segment %016" PRIx64 ": bad payload at byte %" PRIu64 ", skipped",
                   seg->seq, off);
            off += rec_size(v.len);
            continue;
        }
        int ns = hc__ns_intern(s, v.ns, v.nslen);
        if (ns < 0) { /* too many namespaces: the record cannot be indexed */
            off += rec_size(v.len);
            continue;
        }
        struct seg_rec rec = {.h = hc_index_hash(v.ns, v.nslen, v.key, v.klen),
                              .off = off,
                              .len = (uint32_t)v.orig,
                              .ns = (uint16_t)ns,
                              .sblocks = v.zstd ? (uint16_t)(round_up(v.len) / HC_STORE_ALIGN) : 0};
        if ((rc = hc__seg_rec_add(seg, &rec)) < 0)
            break;
        off += rec_size(v.len);
    }
    if (rc == -ENODATA)
        rc = 0; /* a short file is a torn tail */
    if (rc == 0 && off < size)
        hc_log(HC_LOG_WARN,
               "store: segment %016" PRIx64 ": %zu good records, stopped at byte %" PRIu64
               " of %" PRIu64 " (bad header or torn tail)",
               seg->seq, seg->nrecs, off, size);
    seg->size = off;
    free(hdr);
    free(buf);
    return rc;
}

/* Orders segment seqs. */
static int seq_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The seqs of this node's segment files and .idx files, sorted. */
struct local_files {
    uint64_t *segs, *idxs;
    size_t nseg, nidx, segcap, idxcap;
    uint64_t max; /* the highest seq of either */
};

static void local_files_free(struct local_files *f)
{
    free(f->segs);
    free(f->idxs);
}

/* Appends seq to *arr (*n of *cap used). Returns 0 or -ENOMEM. */
static int seq_push(uint64_t **arr, size_t *n, size_t *cap, uint64_t seq)
{
    if (hc__grow(arr, *n, cap, sizeof(**arr), 64) < 0)
        return -ENOMEM;
    (*arr)[(*n)++] = seq;
    return 0;
}

/* Lists this node's directory into f, removing leftover .tmp files on the
 * way. Returns 0, or -errno with err set. */
static int list_local(struct hc_store *s, struct local_files *f, char *err, size_t errlen)
{
    DIR *dh = opendir(s->dir);
    struct dirent *de;
    int rc = 0;

    if (!dh) {
        rc = -errno;
        snprintf(err, errlen, "%s: %s", s->dir, strerror(-rc));
        return rc;
    }
    while ((de = readdir(dh))) {
        const char *n = de->d_name;
        size_t l = strlen(n);
        uint64_t seq;
        if ((l > 4 && !strcmp(n + l - 4, ".tmp")) || (l > 5 && !strcmp(n + l - 5, ".tidx")) ||
            (l > 3 && !strcmp(n + l - 3, ".rh"))) {
            /* (a tail index is of an open segment: its run is over; remote-read
             * hints, hints.c, are advice of the run before) */
            if (unlinkat(dirfd(dh), n, 0) < 0)
                hc_log(HC_LOG_WARN, "store: removing %s/%s: %s", s->dir, n, strerror(errno));
            continue;
        }
        if (hc__parse_seq_name(n, "seg", &seq))
            rc = seq_push(&f->segs, &f->nseg, &f->segcap, seq);
        else if (hc__parse_seq_name(n, "idx", &seq))
            rc = seq_push(&f->idxs, &f->nidx, &f->idxcap, seq);
        else
            continue;
        if (rc < 0)
            break;
        if (seq > f->max)
            f->max = seq;
    }
    closedir(dh);
    if (f->nseg)
        qsort(f->segs, f->nseg, sizeof(*f->segs), seq_cmp);
    if (f->nidx)
        qsort(f->idxs, f->nidx, sizeof(*f->idxs), seq_cmp);
    return rc;
}

/* Never reuse a seq, even when every segment is gone (evicted, removed):
 * other nodes that knew (node, seq) would never load the new .idx. So start
 * past the wall clock in microseconds too (the scale of seconds << 20,
 * without its same-second restarts): a past run would have had to create
 * more than one segment per microsecond of its life to get there. The highest
 * seq found (max) and the tombstones (whose clear point must stay behind
 * every new record) cover a clock that went back. 16 hex digits last for
 * 500,000 years. */
static void next_seq_init(struct hc_store *s, uint64_t max)
{
    uint64_t clock_seq = realtime_ns() / 1000;
    s->next_seq = max + 1 > clock_seq ? max + 1 : clock_seq;
    for (uint32_t i = 0; i < s->nns; i++)
        if (s->ns[i].tomb && s->ns[i].tomb_seq >= s->next_seq)
            s->next_seq = s->ns[i].tomb_seq + 1;
}

static bool has_seq(const uint64_t *arr, size_t n, uint64_t seq)
{
    return n && bsearch(&seq, arr, n, sizeof(*arr), seq_cmp);
}

/* Loads sealed segment seq (its file is size bytes) from its .idx at ipath.
 * Returns 1 when loaded, 0 when the .idx is damaged (removed: the caller
 * scans the segment), or -ENOMEM. */
static int load_sealed(struct hc_store *s, uint64_t seq, const char *ipath, uint64_t size)
{
    struct idx_data d;
    int lrc = hc__idx_load(ipath, seq, &d);

    if (lrc == 0 && d.seg_bytes <= size) {
        struct seg *seg = hc__seg_new(s, 0, seq, true, SEG_SEALED);
        if (!seg) {
            hc__idx_free(&d);
            return -ENOMEM;
        }
        seg->size = size;
        hc__idx_merge(s, seg, &d);
        hc__idx_free(&d);
        hc__local_bytes_set(s, s->local_bytes + seg->size);
        seg->closed_wclock = s->wclock = s->local_bytes; /* evict.c: in seq order */
        return 1;
    }
    if (lrc == 0)
        hc__idx_free(&d);
    hc_log(HC_LOG_WARN, "store: %s is damaged (%s); scanning the segment", ipath,
           strerror(lrc < 0 ? -lrc : EBADMSG));
    unlink(ipath);
    return 0;
}

/* Sets segment file spath aside (hc__quarantine), and its .idx with it. */
static void quarantine_segment(struct hc_store *s, const char *spath, const char *ipath,
                               const char *why)
{
    struct stat st;

    hc__quarantine(s, spath, why);
    if (lstat(ipath, &st) == 0)
        hc__quarantine(s, ipath, "its segment was set aside");
}

/* Loads unsealed segment seq (spath, size bytes): scans it, indexes its good
 * records and seals it; one without a good record is removed. One that cannot
 * be opened or read is set aside (quarantine_segment) and the store goes on
 * without it. Returns 0, or -ENOMEM with err set. */
static int load_unsealed(struct hc_store *s, uint64_t seq, const char *spath, const char *ipath,
                         uint64_t size, char *err, size_t errlen)
{
    struct seg *seg = hc__seg_new(s, 0, seq, true, SEG_CLOSING);
    int rc, fd;

    if (!seg) {
        snprintf(err, errlen, "%s: %s", spath, strerror(ENOMEM));
        return -ENOMEM;
    }
    fd = hc__open_regular(spath, O_RDONLY, 0);
    rc = fd;
    if (fd >= 0) {
        seg->fd = fd; /* for the fdatasync of hc__seal_sync */
        s->nfds++;
        rc = scan_segment(s, seg, fd, size);
        if (rc == -ENOMEM) {
            snprintf(err, errlen, "scanning %s: %s", spath, strerror(-rc));
            return rc;
        }
    }
    if (rc < 0) {
        if (seg->fd >= 0)
            hc__seg_close_fd(s, seg);
        quarantine_segment(s, spath, ipath, strerror(-rc));
        seg->state = SEG_DEAD;
        s->st->segments--;
        hc__seg_maybe_free(s, seg);
        return 0;
    }
    if (seg->nrecs == 0) {
        unlink(spath);
        seg->state = SEG_DEAD;
        s->st->segments--;
        hc__seg_maybe_free(s, seg);
        return 0;
    }
    for (size_t r = 0; r < seg->nrecs; r++) {
        const struct seg_rec *x = &seg->recs[r];
        if (!hc__tombstoned(s, x->ns, seg->seq, x->off))
            hc__index_put(s, seg, x->h, x->off, x->len, x->ns, x->sblocks);
    }
    int src = hc__seal_sync(s, seg);
    if (src < 0)
        hc_log(HC_LOG_ERR, "store: sealing %s: %s", spath, strerror(-src));
    hc__seg_close_fd(s, seg);
    seg->state = SEG_SEALED;
    s->sealed_gen++; /* keys.c */
    seg->size = size;
    hc__local_bytes_set(s, s->local_bytes + seg->size);
    seg->closed_wclock = s->wclock = s->local_bytes; /* evict.c: in seq order */
    return 0;
}

/* Loads this node's segments: sealed ones from their .idx, the others by a
 * scan, after which they are sealed. Blocking. Returns 0, or -errno with err
 * set. */
int hc__load_local(struct hc_store *s, char *err, size_t errlen)
{
    struct local_files f = {0};
    int rc = list_local(s, &f, err, errlen);

    if (rc < 0)
        goto out;
    next_seq_init(s, f.max);

    /* An .idx without its .seg is left over from an eviction. */
    for (size_t i = 0; i < f.nidx; i++) {
        if (!has_seq(f.segs, f.nseg, f.idxs[i])) {
            struct seg t = {.node = 0, .seq = f.idxs[i]};
            char p[PATH_MAX];
            hc__seg_path(s, &t, "idx", p, sizeof(p));
            unlink(p);
        }
    }

    for (size_t i = 0; i < f.nseg; i++) {
        struct seg tmpl = {.node = 0, .seq = f.segs[i]};
        char spath[PATH_MAX], ipath[PATH_MAX];
        struct stat sb;
        hc__seg_path(s, &tmpl, "seg", spath, sizeof(spath));
        hc__seg_path(s, &tmpl, "idx", ipath, sizeof(ipath));
        /* lstat: a symlink, a directory, a FIFO... in place of a segment is
         * set aside before anything reads it or trusts its .idx */
        if (lstat(spath, &sb) < 0) {
            hc_log(HC_LOG_WARN, "store: %s: %s; left out", spath, strerror(errno));
            continue;
        }
        if (!S_ISREG(sb.st_mode)) {
            quarantine_segment(s, spath, ipath, "not a regular file");
            continue;
        }
        rc = 0;
        if (has_seq(f.idxs, f.nidx, f.segs[i]))
            rc = load_sealed(s, f.segs[i], ipath, (uint64_t)sb.st_size);
        if (rc == 0)
            rc = load_unsealed(s, f.segs[i], spath, ipath, (uint64_t)sb.st_size, err, errlen);
        if (rc < 0)
            goto out;
    }
    rc = 0;
out:
    local_files_free(&f);
    return rc;
}
