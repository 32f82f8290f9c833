/* Tail indexes: this node's open segments made visible to other nodes before
 * they are sealed. Every visibility_ms / 4 the tick publishes, for each open
 * segment with records committed since its last one, <seq>.<version>.tidx
 * (the version counts up): the .idx image (idxfile.c) of its committed
 * records, in order, and of the bytes they end at. Each version has a name of
 * its own, and the one before is removed once it is there: another mount
 * looks a new name up afresh, where a file renamed over an old name would be
 * seen through that mount's cached entry of the old one for up to a second
 * (JuiceFS's entry cache). The segment is fdatasync'ed first: through
 * JuiceFS another mount that opens the file afterwards reads what was flushed
 * (close-to-open), so every record a tail index names is whole on the volume
 * before anyone can learn of it. Each version is written to a temporary name
 * and renamed to its own. Other nodes' discovery (discovery.c) takes the
 * newest version for a segment whose .idx is not there yet, and each later
 * one; their reads check every record as always. The seal's .idx replaces it (the seal removes
 * the .tidx); eviction removes it with the segment; a start removes this
 * node's leftovers (recover.c). A publish costs an fdatasync, a file write,
 * a rename and an unlink on the mount (tail_publishes counts them), and on
 * JuiceFS the fdatasync ends the slice being written: the chunk written
 * meanwhile holds one more slice a publish, and JuiceFS compacts a chunk of 5
 * slices or more when it is read (issue 11). So publishes are counted per
 * 64 MiB chunk of the segment (the chunk its committed end is in when the
 * publish starts): at most TAIL_FLUSHES_PER_CHUNK (1) on the regular
 * schedule. The fdatasync runs a little later and may cut the next chunk
 * instead, so a chunk gets at most 2 cuts of ours on schedule; with the
 * writer's own slice and one that JuiceFS may cut, 4 slices: no compaction.
 * More only for records that waited a tick unpublished (a segment written
 * slowly: a slice each, at most every other tick, two a second at 1000 ms,
 * half as many as without the count; tail_late_publishes counts them). That
 * is the choice made: the visibility bound holds, the slice bound only for a
 * segment filled faster than a chunk every two ticks (32 MiB a quarter of
 * visibility_ms); a chunk written slower may be compacted on its first read,
 * which costs about its own size again, at the slow writer's rate. So a page waits at most about
 * two ticks (visibility_ms / 2), more while a publish of its segment is in flight. Off by default
 * (visibility_ms 0).
 *
 * Threads: loop thread, except tail_before, which runs on an I/O thread and
 * touches only its task (a duplicate of the segment's fd, the image and paths
 * made at submit). */
#include "store_int.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

struct tail_task {
    struct hc_io_req req;
    struct hc_store *s;
    struct seg *seg;
    int fd; /* ours: a duplicate, so a close of the segment's own cannot race */
    unsigned char *buf;
    size_t len, nrecs;
    uint32_t ver;
    char tmp[PATH_MAX], path[PATH_MAX], prev[PATH_MAX];
};

/* The path of seg's tail index of version ver (its temporary name when
 * tmp). Loop thread (hc__seg_path). */
void hc__tail_path(const struct hc_store *s, const struct seg *seg, uint32_t ver, bool tmp,
                   char *buf, size_t len)
{
    char ext[32];
    snprintf(ext, sizeof(ext), "%08x.tidx%s", ver, tmp ? ".tmp" : "");
    hc__seg_path(s, seg, ext, buf, len);
}

/* Called on an I/O thread: the records flushed, then the index that names
 * them. Touches only its task. */
static int tail_before(struct hc_io_req *req)
{
    struct tail_task *t = container_of(req, struct tail_task, req);
    if (fdatasync(t->fd) < 0 && errno != EINVAL)
        return -errno;
    int rc = hc__write_file_atomic(t->tmp, t->path, t->buf, t->len);
    if (rc == 0 && t->prev[0])
        (void)unlink(t->prev); /* the version before */
    return rc;
}

/* Back on the loop thread. A tail index that landed after its segment's
 * seal removed the last one stays until the segment goes: discovery prefers
 * the .idx. */
static void tail_done(struct hc_io_req *req)
{
    struct tail_task *t = container_of(req, struct tail_task, req);
    struct hc_store *s = t->s;
    struct seg *seg = t->seg;

    s->inflight--;
    seg->publishing = false;
    seg->refs--;
    if (req->result == 0) {
        if (t->nrecs > seg->pub_nrecs)
            seg->pub_nrecs = t->nrecs;
        seg->tail_ver = t->ver;
        s->st->tail_publishes++;
    } else {
        hc_log(HC_LOG_WARN, "store: publishing %s: %s (other nodes see its pages at the seal)",
               t->path, strerror((int)-req->result));
    }
    hc__fd_close(s, t->fd); /* a dup of the writer's fd: its close is a FUSE flush */
    free(t->buf);
    free(t);
    hc__seg_maybe_free(s, seg);
}

/* Publishes the tail index of seg, an open local segment with new records.
 * Returns false when it could not start (no memory, no descriptor). */
static bool tail_submit(struct hc_store *s, struct seg *seg)
{
    struct tail_task *t = calloc(1, sizeof(*t));
    if (!t)
        return false;
    t->fd = fcntl(seg->fd, F_DUPFD_CLOEXEC, 3);
    if (t->fd < 0 || hc__idx_encode_n(s, seg, seg->nrecs, seg->good_end, &t->buf, &t->len) < 0) {
        if (t->fd >= 0)
            close(t->fd);
        free(t);
        return false;
    }
    t->s = s;
    t->seg = seg;
    t->nrecs = seg->nrecs;
    t->ver = seg->tail_ver + 1;
    hc__tail_path(s, seg, t->ver, true, t->tmp, sizeof(t->tmp));
    hc__tail_path(s, seg, t->ver, false, t->path, sizeof(t->path));
    if (seg->tail_ver)
        hc__tail_path(s, seg, seg->tail_ver, false, t->prev, sizeof(t->prev));
    seg->publishing = true;
    seg->refs++;
    hc__task_submit(s, &t->req, HC_IO_PRIO_LOW, tail_before, tail_done, NULL);
    return true;
}

#define TAIL_CHUNK_SHIFT 26      /* JuiceFS's chunk: 64 MiB */
#define TAIL_FLUSHES_PER_CHUNK 1 /* publishes flushing in one chunk, on schedule */

/* At a tick: every visibility_ms / 4 (a page waits up to that long to be
 * published, then up to as long for another node's discovery, and the ticks
 * of both: within visibility_ms), a tail index for each open segment
 * with records committed since its last one (one publish in flight a
 * segment), while its chunk has had fewer than TAIL_FLUSHES_PER_CHUNK; past
 * that, once the segment's end is in the next chunk or its records waited
 * a tick more (at most every other tick). */
void hc__tail_publish(struct hc_store *s, uint64_t now_ms)
{
    if (!s->cfg.visibility_ms || now_ms - s->last_tail_ms < s->cfg.visibility_ms / 4)
        return;
    s->last_tail_ms = now_ms;
    for (unsigned i = 0; i < s->nopen; i++) {
        struct seg *seg = s->opens[i];
        if (seg->state != SEG_OPEN || seg->publishing || seg->fd < 0 ||
            seg->nrecs <= seg->pub_nrecs)
            continue;
        if (!seg->unpub_ms)
            seg->unpub_ms = now_ms;
        uint64_t chunk = seg->good_end >> TAIL_CHUNK_SHIFT;
        unsigned used = chunk == seg->pub_chunk ? seg->pub_in_chunk : 0;
        if (used >= TAIL_FLUSHES_PER_CHUNK && now_ms - seg->unpub_ms < s->cfg.visibility_ms / 4)
            continue;
        if (!tail_submit(s, seg))
            continue;
        if (used >= TAIL_FLUSHES_PER_CHUNK)
            s->st->tail_late_publishes++;
        seg->pub_chunk = chunk;
        seg->pub_in_chunk = used + 1;
        seg->unpub_ms = 0;
    }
}
