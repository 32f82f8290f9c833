/* Segment store (see store.h for the contract, store_int.h for its parts).
 *
 * This file: open and close, the tick, reconfigure and quiesce, every
 * hc_store_* entry point, which checks its arguments and hands the work to
 * the part that does it, and the submission of tasks to the pool.
 *
 * Callbacks never run inside the call that registered them: answers known at
 * once (dedupe hits on stored pages, misses, -ENOSPC) go on a deferred list
 * that a no-op HC_IO_TASK flushes from hc_io_pool_drain; one such task is in
 * flight at a time and carries every answer queued before it returns.
 *
 * Threads: loop thread only (the deferred task has no work on its I/O
 * thread). Only hc_store_open and hc_store_close block on the mount: the
 * first runs at start-up (recovery, before the server listens), the second
 * at shutdown once quiesced; both may stay synchronous. Every other call on
 * the mount goes to the I/O pool (store_int.h). */
#include "store_int.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "guard.h"
#include "log.h"

/* ---- tasks and deferred callbacks ---------------------------------------- */

/* Back on the loop thread: runs every answer queued so far. */
static void defer_done(struct hc_io_req *req)
{
    struct hc_store *s = req->data;
    struct deferred *d = s->dhead, *next;

    s->inflight--;
    s->dreq_busy = false;
    s->dhead = s->dtail = NULL;
    for (; d; d = next) {
        next = d->next;
        d->cb(d->data, d->status, d->len);
        free(d);
    }
}

/* Queues cb(data, status, len) to run from a later hc_io_pool_drain. Returns 0
 * or -ENOMEM (cb will not run). */
int hc__defer_cb(struct hc_store *s, hc_store_cb cb, void *data, int status, uint64_t len)
{
    struct deferred *d = malloc(sizeof(*d));
    if (!d)
        return -ENOMEM;
    *d = (struct deferred){.cb = cb, .data = data, .status = status, .len = len};
    if (s->dtail)
        s->dtail->next = d;
    else
        s->dhead = d;
    s->dtail = d;
    if (!s->dreq_busy) {
        s->dreq_busy = true;
        hc__task_submit(s, &s->dreq, HC_IO_PRIO_HIGH, NULL, defer_done, s);
    }
    return 0;
}

/* Submits req as an HC_IO_TASK (its other fields cleared): before, the work,
 * runs on an I/O thread (NULL: none), then done on the loop thread. Counted in
 * s->inflight, which done must decrement. */
void hc__task_submit(struct hc_store *s, struct hc_io_req *req, enum hc_io_prio prio,
                     int (*before)(struct hc_io_req *), void (*done)(struct hc_io_req *),
                     void *data)
{
    memset(req, 0, sizeof(*req));
    req->op = HC_IO_TASK;
    req->prio = prio;
    req->fd = -1;
    req->before = before;
    req->done = done;
    req->data = data;
    s->inflight++;
    hc_io_submit(s->io, req);
}

/* ---- entry points ------------------------------------------------------- */

/* A task of the server's (hc_store_background). */
struct bg_task {
    struct hc_io_req req;
    struct hc_store *s;
    int (*work)(void *arg);
    void (*done)(void *arg, int rc);
    void *arg;
};

/* Called on an I/O thread: the server's work, which touches only its arg. */
static int bg_work(struct hc_io_req *req)
{
    struct bg_task *t = req->data;
    return t->work(t->arg);
}

/* Back on the loop thread. */
static void bg_done(struct hc_io_req *req)
{
    struct bg_task *t = req->data;
    t->s->inflight--;
    t->done(t->arg, (int)req->result);
    free(t);
}

int hc_store_background(struct hc_store *s, int (*work)(void *arg), void (*done)(void *arg, int rc),
                        void *arg)
{
    struct bg_task *t;
    if (s->stopping)
        return -ESHUTDOWN;
    if (!(t = calloc(1, sizeof(*t))))
        return -ENOMEM;
    *t = (struct bg_task){.s = s, .work = work, .done = done, .arg = arg};
    hc__task_submit(s, &t->req, HC_IO_PRIO_LOW, bg_work, bg_done, t);
    return 0;
}

/* True when ns is an id hc_store_ns gave out. */
static bool ns_valid(const struct hc_store *s, int ns)
{
    return ns >= 0 && (uint32_t)ns < s->nns;
}

int hc_store_set(struct hc_store *s, int ns, const char *key, size_t klen, const void *buf,
                 uint64_t len, hc_store_cb cb, void *data)
{
    return hc_store_set_ex(s, ns, key, klen, buf, len, NULL, cb, data);
}

int hc_store_set_ex(struct hc_store *s, int ns, const char *key, size_t klen, const void *buf,
                    uint64_t len, const struct hc_store_opts *opts, hc_store_cb cb, void *data)
{
    struct hc_pbuf pb = hc_pbuf_one((void *)buf, len);
    if (!buf) {
        if (s)
            s->st->set_errors++;
        return -EINVAL;
    }
    return hc_store_setv(s, ns, key, klen, &pb, opts, cb, data);
}

int hc_store_setv(struct hc_store *s, int ns, const char *key, size_t klen,
                  const struct hc_pbuf *pb, const struct hc_store_opts *opts, hc_store_cb cb,
                  void *data)
{
    struct hc_store_opts o = opts ? *opts : HC_STORE_OPTS_DEFAULT;
    uint64_t len = pb ? hc_pbuf_cap(pb) : 0;
    int rc;

    if (!s || !cb || !key || !pb || pb->n == 0 || !ns_valid(s, ns) || klen == 0 ||
        klen > HC_MAX_KEY || len == 0 || o.compression > HC_COMPRESSION_ZSTD)
        rc = -EINVAL;
    else if (s->stopping)
        rc = -ESHUTDOWN;
    else if (len > UINT32_MAX || rec_size(len) > s->cfg.segment_size)
        rc = -EFBIG;
    else
        rc = hc__set_start(s, ns, key, klen, pb, len, o.compression, o.stream, cb, data);
    if (rc < 0 && s)
        s->st->set_errors++;
    return rc;
}

int hc_store_get(struct hc_store *s, int ns, const char *key, size_t klen, void *buf, uint64_t cap,
                 hc_store_cb cb, void *data)
{
    return hc_store_get_ex(s, ns, key, klen, buf, cap, NULL, cb, data);
}

int hc_store_get_ex(struct hc_store *s, int ns, const char *key, size_t klen, void *buf,
                    uint64_t cap, const struct hc_store_opts *opts, hc_store_cb cb, void *data)
{
    struct hc_pbuf pb = hc_pbuf_one(buf, cap);
    if (!buf && cap > 0)
        return -EINVAL;
    return hc_store_getv(s, ns, key, klen, &pb, opts, cb, data);
}

int hc_store_getv(struct hc_store *s, int ns, const char *key, size_t klen,
                  const struct hc_pbuf *pb, const struct hc_store_opts *opts, hc_store_cb cb,
                  void *data)
{
    if (!s || !cb || !key || !pb || pb->n == 0 || !ns_valid(s, ns) || klen == 0 ||
        klen > HC_MAX_KEY)
        return -EINVAL;
    s->st->gets++;
    return hc__get_start(s, ns, key, klen, pb, hc_pbuf_cap(pb), opts ? opts->readers : 1, cb, data,
                         GET_JOINABLE);
}

uint64_t hc_store_exists(struct hc_store *s, int ns, const char *key, size_t klen)
{
    if (!s || !key || !ns_valid(s, ns) || klen == 0 || klen > HC_MAX_KEY)
        return 0;
    struct hc_hash h = hc__page_hash(s, ns, key, klen);
    const struct hc_index_ent *e = hc_index_lookup(&s->ix, h);
    if (e)
        return e->len;
    return s->cfg.remote_filter && hc__fleet_maybe(s, h) ? HC_STORE_LEN_UNKNOWN : 0;
}

uint64_t hc_store_ahead(struct hc_store *s, int ns, const char *key, size_t klen)
{
    if (!s || !s->cfg.read_ahead_bytes || !key || !ns_valid(s, ns) || klen == 0 ||
        klen > HC_MAX_KEY)
        return 0;
    struct hc_hash h = hc__page_hash(s, ns, key, klen);
    const struct hc_index_ent *e = hc_index_lookup(&s->ix, h);
    if (!e || hc__ptab_find(&s->reading, h) || (s->lhead && hc__ptab_find(&s->lingering, h)))
        return 0;
    return hc__rd_ahead(s, s->segs[e->seg], (uint64_t)e->off * HC_STORE_ALIGN,
                        ent_rec_size(e->len, e->flags & IDX_SBLOCKS));
}

int hc_store_ns(struct hc_store *s, const char *ns, size_t len)
{
    if (!s || !ns)
        return -EINVAL;
    return hc__ns_intern(s, ns, len);
}

int hc_store_ns_lookup(struct hc_store *s, const char *ns, size_t len)
{
    if (!s || !ns || len == 0 || len > HC_MAX_NS)
        return -EINVAL;
    int id = hc__ns_find(s, ns, len);
    return id >= 0 ? id : -ENOENT;
}

int hc_store_clear(struct hc_store *s, int ns, hc_store_cb cb, void *data)
{
    if (!s || !cb || !ns_valid(s, ns))
        return -EINVAL;
    return hc__clear(s, ns, cb, data);
}

void hc__store_fail_reads(struct hc_store *s, int err, unsigned n)
{
    s->fail_err = err;
    s->fail_reads = n;
}

/* ---- tick, reconfigure, quiesce ------------------------------------------ */

void hc_store_tick(struct hc_store *s, uint64_t now_ms)
{
    if (!s)
        return;
    s->now_ms = now_ms;
    s->have_now = true;
    hc__linger_expire(s, mono_ms());
    hc__rd_later_run(s, false);
    if (s->stopping)
        return; /* close() seals; nothing new may be in flight */
    for (unsigned i = s->nopen; i-- > 0;) {
        struct seg *o = s->opens[i];
        if (!o->opened_known) {
            o->opened_ms = now_ms;
            o->opened_known = true;
        } else if (now_ms - o->opened_ms >= s->cfg.seal_interval_ms &&
                   (o->size > 0 || s->nopen > 1)) {
            hc__seg_close_appends(s, o); /* the next set opens a new one */
        }
    }
    hc__evict_capacity(s);
    hc__evict_free_space(s, now_ms);
    hc__unlink_retry(s);
    hc__fd_trim(s);
    hc__tail_publish(s, now_ms);
    hc__keys_publish(s, now_ms);
    hc__hints_tick(s, now_ms);
    /* discovery at least every quarter of visibility_ms (tail.c) */
    uint32_t disc_ms = s->cfg.discovery_interval_ms;
    if (s->cfg.visibility_ms && s->cfg.visibility_ms / 4 < disc_ms)
        disc_ms = s->cfg.visibility_ms / 4;
    if (!s->disc_started) {
        s->disc_started = true;
        s->last_disc_ms = now_ms;
    } else if (!s->disc_busy && now_ms - s->last_disc_ms >= disc_ms) {
        s->last_disc_ms = now_ms;
        hc__disc_submit(s);
    }
}

void hc_store_reconfigure(struct hc_store *s, const struct hc_store_config *cfg)
{
    s->cfg.capacity_bytes = cfg->capacity_bytes;
    s->cfg.min_free_ratio = cfg->min_free_ratio;
    s->cfg.seal_interval_ms = cfg->seal_interval_ms;
    s->cfg.discovery_interval_ms = cfg->discovery_interval_ms;
    s->cfg.dedupe = cfg->dedupe;
    s->cfg.coalesce_reads = cfg->coalesce_reads;
    s->cfg.reinsert = cfg->reinsert;
    s->cfg.visibility_ms = cfg->visibility_ms;
    s->cfg.keys_interval_ms = cfg->keys_interval_ms;
    s->cfg.enable_compression = cfg->enable_compression;
    s->cfg.read_linger_ms = cfg->read_linger_ms;
    s->cfg.read_linger_bytes = cfg->read_linger_bytes;
    /* Not use_direct_io: hc__open_file reads it on I/O threads. */
    if (!s->cfg.coalesce_reads || !s->cfg.read_linger_ms)
        hc__linger_drop(s, -1, -1);
    while (s->lhead && s->st->linger_bytes > s->cfg.read_linger_bytes)
        hc__linger_unlink(s, s->lhead);
}

bool hc_store_quiesce(struct hc_store *s)
{
    s->stopping = true;
    hc__rd_later_run(s, true);
    return s->inflight == 0;
}

/* ---- open and close ------------------------------------------------------ */

/* Creates directory path unless it exists. Returns 0, or -errno with err
 * set. */
static int mkdir_one(const char *path, char *err, size_t errlen)
{
    if (mkdir(path, 0755) < 0 && errno != EEXIST) {
        int rc = -errno;
        snprintf(err, errlen, "creating %s: %s", path, strerror(-rc));
        return rc;
    }
    return 0;
}

int hc_store_open(struct hc_store **out, const struct hc_store_config *cfg, struct hc_io_pool *io,
                  struct hc_stats *stats, char *err, size_t errlen)
{
    struct hc_store *s;
    struct stat sb;
    int rc;

    if (!out || !cfg || !io || !stats || !cfg->mount_point || !cfg->root_dir || !cfg->node_id) {
        snprintf(err, errlen, "store: missing argument");
        return -EINVAL;
    }
    if (!hc_node_name_ok(cfg->node_id, strlen(cfg->node_id))) {
        snprintf(err, errlen, "node_id '%s' must be 1 to 64 characters of [A-Za-z0-9_.-]",
                 cfg->node_id);
        return -EINVAL;
    }
    /* client buffers (host pools) may vanish under the daemon's CPU passes */
    if ((rc = hc_guard_install()) < 0) {
        snprintf(err, errlen, "store: SIGBUS handler: %s", strerror(-rc));
        return rc;
    }
    if (!hc_node_name_ok(cfg->root_dir, strlen(cfg->root_dir))) {
        snprintf(err, errlen, "root_dir '%s' must be 1 to 64 characters of [A-Za-z0-9_.-]",
                 cfg->root_dir);
        return -EINVAL;
    }
    if (cfg->segment_size < 2 * HC_STORE_ALIGN) {
        snprintf(err, errlen, "segment_size must be at least %u bytes", 2 * HC_STORE_ALIGN);
        return -EINVAL;
    }
    if (!(cfg->min_free_ratio >= 0 && cfg->min_free_ratio < 1)) {
        snprintf(err, errlen, "min_free_ratio must be from 0 to 1");
        return -EINVAL;
    }
    if (stat(cfg->mount_point, &sb) < 0) {
        rc = -errno;
        snprintf(err, errlen, "mount_point %s: %s", cfg->mount_point, strerror(-rc));
        return rc;
    }
    if (!S_ISDIR(sb.st_mode)) {
        snprintf(err, errlen, "mount_point %s: not a directory", cfg->mount_point);
        return -ENOTDIR;
    }

    s = calloc(1, sizeof(*s));
    if (!s)
        goto nomem;
    s->cfg = *cfg;
    s->sealed_gen = 1; /* keys.c: the first publish lists what the start found */
    s->cfg.segment_size &= ~(uint64_t)(HC_STORE_ALIGN - 1);
    if (s->cfg.open_segments < 1)
        s->cfg.open_segments = 1;
    if (s->cfg.open_segments > HC_STORE_OPEN_MAX)
        s->cfg.open_segments = HC_STORE_OPEN_MAX;
    s->cfg.mount_point = s->cfg.root_dir = s->cfg.node_id = NULL; /* not kept */
    s->io = io;
    s->st = stats;
    s->epoch = realtime_ns();
    /* hint files count up across runs: other nodes take only newer ones */
    s->hint_seq = s->epoch / 1000;
    s->next_seq = 1;
    s->ns_map_cap = 64;
    s->ns_map = calloc(s->ns_map_cap, sizeof(*s->ns_map));
    if (!s->ns_map || hc_index_init(&s->ix) < 0)
        goto nomem;
    if (hc__ptab_init(&s->writing) < 0 || hc__ptab_init(&s->reading) < 0 ||
        hc__ptab_init(&s->lingering) < 0)
        goto nomem;
    if (asprintf(&s->root, "%s/%s", cfg->mount_point, cfg->root_dir) < 0) {
        s->root = NULL;
        goto nomem;
    }
    s->dir = hc__path_join(s->root, cfg->node_id);
    if (!s->dir || hc__node_intern(s, cfg->node_id) != 0)
        goto nomem;

    if ((rc = mkdir_one(s->root, err, errlen)) < 0 || (rc = mkdir_one(s->dir, err, errlen)) < 0)
        goto err;
    if ((rc = hc__tomb_load(s, err, errlen)) < 0)
        goto err;
    if ((rc = hc__load_local(s, err, errlen)) < 0)
        goto err;

    /* Other nodes' sealed segments, the same walk as the periodic one. */
    if (hc__disc_sync(s) < 0)
        goto nomem;

    hc_log(HC_LOG_INFO,
           "store: %s: %" PRIu64 " local pages, %" PRIu64 " remote pages, %" PRIu64
           " segments, %" PRIu64 " bytes on disk",
           s->dir, s->st->local_pages, s->st->remote_pages, s->st->segments, s->local_bytes);
    s->opened = true;
    *out = s;
    return 0;

nomem:
    rc = -ENOMEM;
    snprintf(err, errlen, "store: out of memory");
err:
    hc_store_close(s);
    return rc;
}

void hc_store_close(struct hc_store *s)
{
    if (!s)
        return;
    for (uint32_t i = 0; i < s->segs_cap; i++) {
        struct seg *seg = s->segs[i];
        if (!seg)
            continue;
        if (s->opened && seg->local && (seg->state == SEG_OPEN || seg->state == SEG_CLOSING) &&
            !seg->pend_head) {
            if (seg->nrecs == 0 && seg->size == 0) {
                char p[PATH_MAX];
                hc__seg_path(s, seg, "seg", p, sizeof(p));
                unlink(p); /* opened, never written */
            } else {
                int rc = hc__seal_sync(s, seg);
                if (rc < 0)
                    hc_log(HC_LOG_ERR, "store: sealing segment %016" PRIx64 ": %s", seg->seq,
                           strerror(-rc));
            }
        }
        if (seg->fd >= 0)
            close(seg->fd);
        free(seg->recs);
        free(seg->wb);
        free(seg);
    }
    free(s->segs);
    free(s->idx_bad);
    hc__fleet_free(s);
    hc__hints_close(s);
    free(s->hints);
    free(s->hint_made);
    free(s->hint_seen);
    for (size_t i = 0; i < s->nclosing; i++) /* left by a close task that found no memory */
        close(s->closing[i]);
    free(s->closing);
    for (struct deferred *d = s->dhead, *next; d; d = next) {
        next = d->next;
        free(d);
    }
    for (uint32_t i = 0; i < s->nns; i++)
        free(s->ns[i].name);
    free(s->ns);
    free(s->ns_map);
    for (uint32_t i = 0; i < s->nnodes; i++)
        free(s->nodes[i]);
    free(s->nodes);
    while (s->lhead) /* copies are over once quiesced */
        hc__linger_unlink(s, s->lhead);
    free(s->writing.b);
    free(s->reading.b);
    free(s->lingering.b);
    hc_index_free(&s->ix);
    free(s->root);
    free(s->dir);
    free(s);
}
