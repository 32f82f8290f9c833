/* Daemon counters. Changed on the loop thread only (I/O threads report through
 * request results), so plain integers suffice. The JSON names are part of the
 * public surface (hicachectl stats --json, DESIGN §7). */
#ifndef HC_STATS_H
#define HC_STATS_H

#include <stdint.h>

/* X(name, description): one line per counter, in the order printed. */
#define HC_STATS_MAP(X)                                                                            \
    X(pages, "pages in the index (this node and others)")                                          \
    X(bytes_stored, "payload bytes of indexed pages")                                              \
    X(local_pages, "pages in this node's segments")                                                \
    X(remote_pages, "pages found in other nodes' segments")                                        \
    X(segments, "segments known (this node and others)")                                           \
    X(disk_bytes, "bytes of this node's segment files")                                            \
    X(sets, "pages asked to be stored")                                                            \
    X(gets, "pages asked to be read")                                                              \
    X(exists, "keys asked about")                                                                  \
    X(hits, "gets answered with the page")                                                         \
    X(misses, "gets answered with a miss")                                                         \
    X(dedup_hits, "sets that cost no write (stored or being written)")                             \
    X(dedup_bytes, "bytes those sets did not write")                                               \
    X(bytes_written, "payload bytes written to storage")                                           \
    X(bytes_read_storage, "payload bytes read from storage")                                       \
    X(bytes_served, "payload bytes placed in client slots by gets")                                \
    X(coalesced_reads, "gets served by another get's storage read")                                \
    X(linger_bytes, "bytes of read pages kept for their other readers now")                        \
    X(compressed_pages, "pages written compressed")                                                \
    X(bytes_saved_compression, "bytes compression kept from being written")                        \
    X(clients, "clients connected now")                                                            \
    X(connections, "connections accepted since start")                                             \
    X(corrupt_records, "records refused for a bad header or checksum")                             \
    X(evicted_pages, "pages dropped by capacity eviction")                                         \
    X(evicted_segments, "segments dropped by capacity eviction")                                   \
    X(io_errors, "storage reads and writes that failed")                                           \
    X(set_errors, "sets refused or failed")                                                        \
    X(bad_requests, "requests refused as malformed")                                               \
    X(inflight_bytes, "bytes of storage I/O in flight now")

struct hc_stats {
#define HC_STATS_FIELD(name, desc) uint64_t name;
    HC_STATS_MAP(HC_STATS_FIELD)
#undef HC_STATS_FIELD
};

/* Returns a malloc'd JSON object with every counter plus "node_id",
 * "uptime_s", "capacity_bytes" and "version"; NULL on allocation failure. */
char *hc_stats_json(const struct hc_stats *st, const char *node_id, uint64_t uptime_s,
                    uint64_t capacity_bytes);

#endif
