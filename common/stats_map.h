/* The daemon's counters: their JSON names (part of the public surface:
 * hicachectl stats --json, DESIGN §7) and descriptions. One list for the
 * daemon (daemon/stats.h: struct hc_stats, the JSON) and hicachectl (the
 * table it prints). */
#ifndef HC_STATS_MAP_H
#define HC_STATS_MAP_H

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

#endif
