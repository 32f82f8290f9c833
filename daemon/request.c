/* Requests after hello, translated into engine calls: a set or get batch
 * becomes one store call per page (the reply goes once every page's callback
 * ran), exists is answered from the index and stats at once, clear once its
 * tombstones are saved. Every
 * key, slot and count from the client is checked before use.
 *
 * Threads: loop thread only (store callbacks run there too). */
#include "server_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hicache_defs.h" /* HC_MAX_BATCH */
#include "log.h"

/* Every page of batch b has its answer: reply, and let the connection take
 * the next request. */
static void batch_finish(struct batch *b)
{
    struct conn *c = b->conn;
    Hicache__Response resp = HICACHE__RESPONSE__INIT;

    hc_latency_record(b->is_get ? &c->srv->lat.get : &c->srv->lat.set,
                      (uv_hrtime() - b->t0_ns) / 1000);
    if (!c->closing) {
        resp.id = b->id;
        resp.n_results = b->n;
        resp.results = b->results;
        resp.n_lengths = b->n;
        resp.lengths = b->lengths;
        for (unsigned i = 0; b->checks && i < b->n; i++)
            if (b->checks[i] != 0) {
                resp.n_checks = b->n;
                resp.checks = b->checks;
                break;
            }
        hc__conn_send(c, &resp);
    }
    hc_region_unref(b->region);
    for (unsigned i = 0; i < b->n; i++)
        hc_region_unref(b->items[i].map);
    free(b->pieces);
    free(b->results);
    free(b->lengths);
    free(b->checks);
    free(b);
    c->inflight--;
    if (!c->closing)
        hc__conn_process(c);
    hc__conn_unref(c);
}

/* The store's callback of one page of a batch. */
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
 * has never seen (a get: every key is then a miss), or for a set -ENOSPC or
 * -ENOMEM. */
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

/* Checks the slots of a set or get: each names the region or a registered
 * pool and lies inside it (every piece of it: Slot.more); a pool's size is
 * taken now (its client may have shrunk it), once per pool. Sets *pieces to
 * the pieces of the pages of more than one. Returns 0, or -errno with the
 * error sent. */
static int slots_check(struct conn *c, uint64_t id, Hicache__Slot **pages, size_t n, size_t *pieces)
{
    *pieces = 0;
    uint64_t live[HC_MAX_POOLS];
    bool known[HC_MAX_POOLS] = {false};

    for (size_t i = 0; i < n; i++) {
        const Hicache__Slot *s = pages[i];
        uint64_t size = c->region->size;
        const char *bad = hc_name_invalid("key", (const char *)s->key.data, s->key.len);

        if (bad) {
            hc__send_error(c, id, -EINVAL, "key %zu: %s", i, bad);
            return -EINVAL;
        }
        if (s->pool > c->npools) {
            hc__send_error(c, id, -EINVAL, "slot %zu names pool %u, which is not registered", i,
                           s->pool);
            return -EINVAL;
        }
        if (s->n_more && (!s->pool || s->n_more % 2 || s->n_more / 2 + 1 > HC_MAX_PIECES)) {
            hc__send_error(c, id, -EINVAL,
                           "slot %zu: more pieces only in a pool, as offset-length pairs, %u at "
                           "most",
                           i, HC_MAX_PIECES);
            return -EINVAL;
        }
        if (s->pool) {
            unsigned k = s->pool - 1;
            if (!known[k]) {
                live[k] = hc_region_live(c->pools[k]);
                known[k] = true;
            }
            size = live[k];
        }
        for (size_t p = 0; p <= s->n_more / 2; p++) {
            uint64_t off = p ? s->more[2 * p - 2] : s->offset;
            uint64_t len = p ? s->more[2 * p - 1] : s->length;
            if (hc_range_check(size, off, len) < 0 || len > UINT32_MAX) {
                hc__send_error(c, id, -ERANGE,
                               "slot %zu [%" PRIu64 ", +%" PRIu64 ") is outside the %s of %" PRIu64
                               " bytes",
                               i, off, len, s->pool ? "pool" : "region", size);
                return -ERANGE;
            }
        }
        if (s->n_more)
            *pieces += s->n_more / 2 + 1;
    }
    return 0;
}

/* The buffer of slot s in m (checked by slots_check): one piece, or its
 * pieces, taken from the batch's array at *next (which moves past them). */
static struct hc_pbuf slot_pbuf(const Hicache__Slot *s, const struct hc_region *m,
                                struct iovec **next)
{
    size_t np = s->n_more / 2 + 1;
    struct iovec *v = *next;
    if (np == 1)
        return hc_pbuf_one(m->base + s->offset, s->length);
    *next += np;
    v[0] = (struct iovec){m->base + s->offset, s->length};
    for (size_t p = 1; p < np; p++)
        v[p] = (struct iovec){m->base + s->more[2 * p - 2], s->more[2 * p - 1]};
    return (struct hc_pbuf){.v = v, .n = (unsigned)np};
}

static const char *packed_split(const ProtobufCBinaryData *pk, size_t limit, const char **key,
                                size_t *klen, size_t *n, bool *e2big, char *why, size_t whylen);
static const char *keys_check(const char **key, const size_t *klen, size_t n, char *why,
                              size_t whylen);

/* A set or get batch: checks every key and slot (and a get's ahead_keys),
 * then one store call per page; the reply goes once all of them answered
 * (batch_finish). A get's ahead_keys (the client's next pages) are read
 * ahead (hc_store_ahead) after its own pages were queued. */
static void handle_batch(struct conn *c, const Hicache__Request *req, bool is_get)
{
    struct server *srv = c->srv;
    Hicache__Slot **pages = is_get ? req->get->pages : req->set->pages;
    size_t n = is_get ? req->get->n_pages : req->set->n_pages;
    uint64_t t0_ns = uv_hrtime();
    struct batch *b;
    struct iovec *next;
    size_t i, pieces;
    int ns;

    if (n > srv->cfg->max_batch) {
        hc__send_error(c, req->id, -E2BIG, "batch of %zu keys exceeds the limit of %u", n,
                       srv->cfg->max_batch);
        return;
    }
    if (slots_check(c, req->id, pages, n, &pieces) < 0)
        return;
    const char *akey[HC_MAX_BATCH];
    size_t aklen[HC_MAX_BATCH], nahead = 0;
    if (is_get && req->get->ahead_keys.len > 0) {
        size_t limit = srv->cfg->max_batch < HC_MAX_BATCH ? srv->cfg->max_batch : HC_MAX_BATCH;
        bool e2big = false;
        char why[128];
        const char *bad = packed_split(&req->get->ahead_keys, limit, akey, aklen, &nahead, &e2big,
                                       why, sizeof(why));
        if (!bad)
            bad = keys_check(akey, aklen, nahead, why, sizeof(why));
        if (bad) {
            hc__send_error(c, req->id, e2big ? -E2BIG : -EINVAL, "ahead_keys: %s", bad);
            return;
        }
    }
    ns = conn_ns(c, !is_get);
    if (ns == -ENOSPC) {
        hc__send_error(c, req->id, -ENOSPC, "too many namespaces in the store");
        return;
    }
    b = calloc(1, sizeof(*b) + n * sizeof(b->items[0]));
    if (!b)
        goto nomem;
    b->results = calloc(n ? n : 1, sizeof(*b->results));
    b->lengths = calloc(n ? n : 1, sizeof(*b->lengths));
    b->pieces = pieces ? malloc(pieces * sizeof(*b->pieces)) : NULL;
    bool client_check = is_get && req->get->client_check;
    if (client_check)
        b->checks = calloc(n ? n : 1, sizeof(*b->checks));
    if (!b->results || !b->lengths || (pieces && !b->pieces) || (client_check && !b->checks)) {
        free(b->results);
        free(b->lengths);
        free(b->pieces);
        free(b->checks);
        free(b);
        goto nomem;
    }
    next = b->pieces;
    b->conn = c;
    b->id = req->id;
    b->t0_ns = t0_ns;
    b->is_get = is_get;
    b->n = (unsigned)n;
    b->remaining = (unsigned)n + 1; /* +1 until every item is submitted */
    b->region = c->region;
    hc_region_ref(c->region);
    c->refs++;
    c->inflight++;

    for (i = 0; i < n; i++) {
        const Hicache__Slot *s = pages[i];
        struct hc_region *m = s->pool ? c->pools[s->pool - 1] : c->region;
        struct hc_pbuf pb = slot_pbuf(s, m, &next);
        int rc;

        if (b->checks && !s->pool)
            pb.check = &b->checks[i]; /* the client checks its region copy */
        b->items[i].b = b;
        b->items[i].i = (unsigned)i;
        if (s->pool) {
            hc_region_ref(m);
            b->items[i].map = m;
            srv->stats.pool_pages++;
        }
        if (ns < 0 && is_get) {
            rc = -ENOENT; /* a namespace nobody ever stored into */
            srv->stats.gets++;
            srv->stats.misses++;
        } else if (ns < 0) {
            rc = ns; /* -ENOMEM: the name could not be interned */
            if (!is_get)
                srv->stats.set_errors++;
        } else if (is_get)
            rc = hc_store_getv(srv->store, ns, (const char *)s->key.data, s->key.len, &pb,
                               &c->sopts, batch_cb, &b->items[i]);
        else
            rc = hc_store_setv(srv->store, ns, (const char *)s->key.data, s->key.len, &pb,
                               &c->sopts, batch_cb, &b->items[i]);
        if (rc < 0) {
            b->results[i] = rc;
            b->remaining--;
        }
    }
    /* a request's hint: with pages of its own, a region's worth at most
     * (what libhicache names) */
    uint64_t ahead = 0;
    for (size_t a = 0; ns >= 0 && n > 0 && a < nahead && ahead < c->region->size; a++)
        ahead += hc_store_ahead(srv->store, ns, akey[a], aklen[a]);
    if (--b->remaining == 0)
        batch_finish(b);
    return;

nomem:
    hc__send_error(c, req->id, -ENOMEM, "out of memory");
}

/* The keys of a packed field (each key followed by a NUL; pk->len > 0), at
 * most limit of them, into key/klen. Returns NULL, or a readable reason for
 * -EINVAL / -E2BIG (*e2big). */
static const char *packed_split(const ProtobufCBinaryData *pk, size_t limit, const char **key,
                                size_t *klen, size_t *n, bool *e2big, char *why, size_t whylen)
{
    const char *p = (const char *)pk->data, *end = p + pk->len;
    size_t i;

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
    return NULL;
}

/* Checks each of n keys (hc_name_invalid). Returns NULL, or a readable reason
 * for -EINVAL in why. */
static const char *keys_check(const char **key, const size_t *klen, size_t n, char *why,
                              size_t whylen)
{
    for (size_t i = 0; i < n; i++) {
        const char *bad = hc_name_invalid("key", key[i], klen[i]);
        if (bad) {
            snprintf(why, whylen, "key %zu: %s", i, bad);
            return why;
        }
    }
    return NULL;
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
    const char *bad;

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
        if (ex->n_keys > 0)
            return "an exists request carries keys or packed_keys, not both";
        if ((bad = packed_split(pk, limit, key, klen, n, e2big, why, whylen)))
            return bad;
    }
    return keys_check(key, klen, *n, why, whylen);
}

/* Exists: answered from the index, with how many leading keys exist. */
static void handle_exists(struct conn *c, const Hicache__Request *req)
{
    struct server *srv = c->srv;
    Hicache__Response resp = HICACHE__RESPONSE__INIT;
    uint64_t t0_ns = uv_hrtime();
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
        hc__send_error(c, req->id, e2big ? -E2BIG : -EINVAL, "%s", bad);
        return;
    }
    ns = conn_ns(c, false);
    for (i = 0; i < n; i++) {
        uint64_t len = ns < 0 ? 0 : hc_store_exists(srv->store, ns, key[i], klen[i]);
        /* a page another node's filter holds: present, length not known (0) */
        lengths[i] = len == HC_STORE_LEN_UNKNOWN ? 0 : len;
        results[i] = len ? 0 : -ENOENT;
        if (!len)
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
    hc__conn_send(c, &resp);
    hc_latency_record(&srv->lat.exists, (uv_hrtime() - t0_ns) / 1000);
}

/* Stats: the counters as JSON. */
static void handle_stats(struct conn *c, const Hicache__Request *req)
{
    struct server *srv = c->srv;
    Hicache__Response resp = HICACHE__RESPONSE__INIT;
    char *json;

    hc__server_io_stats(srv);
    json = hc_stats_json(&srv->stats, &srv->lat, srv->cfg->node_id,
                         (uv_now(&srv->loop) - srv->start_ms) / 1000, srv->cfg->capacity_bytes);
    if (!json) {
        hc__send_error(c, req->id, -ENOMEM, "out of memory");
        return;
    }
    resp.id = req->id;
    resp.stats_json = json;
    hc__conn_send(c, &resp);
    free(json);
}

/* A clear in flight: the store answers once its tombstones are saved. */
struct clear_req {
    struct conn *conn;
    uint64_t id;
};

/* Sends the answer of a clear: the pages dropped, or the error that kept its
 * tombstones from being saved. */
static void clear_reply(struct conn *c, uint64_t id, int status, uint64_t dropped)
{
    Hicache__Response resp = HICACHE__RESPONSE__INIT;

    if (status < 0) {
        hc_log(HC_LOG_ERR, "client %" PRIu64 " (pid %d): clear not saved: %s", c->num, (int)c->pid,
               strerror(-status));
        hc__send_error(c, id, status, "clear: the tombstones were not saved (%s)",
                       strerror(-status));
        return;
    }
    hc_log(HC_LOG_INFO, "client %" PRIu64 " (pid %d) cleared its namespace: %" PRIu64 " pages",
           c->num, (int)c->pid, dropped);
    resp.id = id;
    resp.n_lengths = 1;
    resp.lengths = &dropped;
    hc__conn_send(c, &resp);
}

/* The store's callback of a clear. */
static void clear_cb(void *data, int status, uint64_t dropped)
{
    struct clear_req *r = data;
    struct conn *c = r->conn;

    if (!c->closing)
        clear_reply(c, r->id, status, dropped);
    free(r);
    c->inflight--;
    if (!c->closing)
        hc__conn_process(c);
    hc__conn_unref(c);
}

/* Clear: drops the connection's namespace (hc_store_clear); the answer goes
 * once the tombstones are saved. */
static void handle_clear(struct conn *c, const Hicache__Request *req)
{
    int ns = conn_ns(c, false), rc;
    struct clear_req *r;

    if (ns < 0) { /* a namespace the store never saw: nothing to drop */
        clear_reply(c, req->id, 0, 0);
        return;
    }
    if (!(r = malloc(sizeof(*r)))) {
        hc__send_error(c, req->id, -ENOMEM, "out of memory");
        return;
    }
    *r = (struct clear_req){.conn = c, .id = req->id};
    rc = hc_store_clear(c->srv->store, ns, clear_cb, r);
    if (rc < 0) {
        free(r);
        hc__send_error(c, req->id, rc, "clear: %s", strerror(-rc));
        return;
    }
    c->refs++;
    c->inflight++;
}

/* PoolRequest: maps the host pool whose descriptor came with the request
 * (the oldest passed one not yet taken) and answers its id. */
static void handle_pool(struct conn *c, const Hicache__Request *req)
{
    Hicache__Response resp = HICACHE__RESPONSE__INIT;
    struct hc_region *m;
    const char *why = "";
    int fd, rc;

    if (c->npassed == 0) {
        hc__send_error(c, req->id, -EINVAL, "pool: no descriptor came with the request");
        return;
    }
    fd = c->passed[0];
    memmove(c->passed, c->passed + 1, --c->npassed * sizeof(c->passed[0]));
    if (c->npools == HC_MAX_POOLS) {
        close(fd);
        hc__send_error(c, req->id, -ENOSPC, "pool: %u pools registered already", HC_MAX_POOLS);
        return;
    }
    if (req->pool->size > CONN_POOL_BYTES - c->pool_bytes ||
        req->pool->size > SERVER_POOL_BYTES - c->srv->pool_bytes) {
        close(fd);
        hc__send_error(c, req->id, -ENOSPC,
                       "pool of %" PRIu64 " bytes: over the %llu TiB of a connection's or the %llu "
                       "TiB of all pools",
                       req->pool->size, CONN_POOL_BYTES >> 40, SERVER_POOL_BYTES >> 40);
        return;
    }
    if ((rc = hc_pool_map(&m, fd, req->pool->size, &why)) < 0) {
        close(fd);
        hc__send_error(c, req->id, rc, "pool of %" PRIu64 " bytes refused: %s (%s)",
                       req->pool->size, why, strerror(-rc));
        return;
    }
    c->pools[c->npools++] = m;
    c->pool_bytes += m->size;
    c->srv->pool_bytes += m->size;
    c->srv->stats.pools++;
    hc__region_populate(c, m);
    hc_log(HC_LOG_INFO, "client %" PRIu64 " (pid %d) registered host pool %u of %" PRIu64 " bytes",
           c->num, (int)c->pid, c->npools, m->size);
    resp.id = req->id;
    resp.pool = c->npools;
    hc__conn_send(c, &resp);
}

/* Dispatches one decoded request; everything but hello needs a hello first. */
void hc__handle_request(struct conn *c, const Hicache__Request *req)
{
    if (req->body_case == HICACHE__REQUEST__BODY_HELLO) {
        hc__handle_hello(c, req);
        return;
    }
    if (!c->hello) {
        hc__send_error(c, req->id, -EPROTO, "the first request must be hello");
        hc__conn_close_after_flush(c);
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
    case HICACHE__REQUEST__BODY_POOL:
        handle_pool(c, req);
        break;
    case HICACHE__REQUEST__BODY_PING: {
        Hicache__Response resp = HICACHE__RESPONSE__INIT;
        resp.id = req->id;
        resp.nonce = req->ping->nonce;
        hc__conn_send(c, &resp);
        break;
    }
    default:
        hc__send_error(c, req->id, -EPROTO, "unknown message type");
        break;
    }
}
