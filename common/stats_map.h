/* The daemon's counters: their JSON names (part of the public surface:
 * hicachectl stats --json, DESIGN §7), kinds and descriptions. One list for
 * the daemon (daemon/stats.h: struct hc_stats, the JSON), hicachectl (the
 * table it prints) and the Prometheus text (common/prom.c). */
#ifndef HC_STATS_MAP_H
#define HC_STATS_MAP_H

/* X(name, kind, description): one line per counter, in the order printed;
 * kind is counter (only grows) or gauge (a level now), as Prometheus has them. */
#define HC_STATS_MAP(X)                                                                            \
    X(pages, gauge, "pages in the index (this node and others)")                                   \
    X(bytes_stored, gauge, "payload bytes of indexed pages")                                       \
    X(local_pages, gauge, "pages in this node's segments")                                         \
    X(remote_pages, gauge, "pages found in other nodes' segments")                                 \
    X(segments, gauge, "segments known (this node and others)")                                    \
    X(disk_bytes, gauge, "bytes of this node's segment files")                                     \
    X(sets, counter, "pages asked to be stored")                                                   \
    X(gets, counter, "pages asked to be read")                                                     \
    X(exists, counter, "keys asked about")                                                         \
    X(hits, counter, "gets answered with the page")                                                \
    X(misses, counter, "gets answered with a miss")                                                \
    X(dedup_hits, counter, "sets that cost no write (stored or being written)")                    \
    X(dedup_bytes, counter, "bytes those sets did not write")                                      \
    X(bytes_written, counter, "payload bytes written to storage")                                  \
    X(bytes_read_storage, counter, "payload bytes read from storage")                              \
    X(bytes_served, counter, "payload bytes placed in client slots by gets")                       \
    X(coalesced_reads, counter, "gets served by another get's storage read")                       \
    X(ahead_reads, counter,                                                                        \
      "records read ahead into the page cache (hinted, or waiting for room)")                      \
    X(ahead_bytes, counter, "bytes of those reads ahead")                                          \
    X(ahead_cached, counter, "records to read ahead that the page cache held (not read)")          \
    X(linger_bytes, gauge, "bytes of read pages kept for their other readers now")                 \
    X(compressed_pages, counter, "pages written compressed")                                       \
    X(bytes_saved_compression, counter, "bytes compression kept from being written")               \
    X(clients, gauge, "clients admitted (after hello) now")                                        \
    X(connections, counter, "connections accepted since start")                                    \
    X(corrupt_records, counter, "records refused for a bad header or checksum")                    \
    X(evicted_pages, counter, "pages dropped by capacity eviction")                                \
    X(evicted_segments, counter, "segments dropped by capacity eviction")                          \
    X(reinserted_pages, counter, "pages read since written, written again at their eviction")      \
    X(reinserted_bytes, counter, "bytes of those pages")                                           \
    X(filter_pages, gauge, "other nodes' pages held in filters (remote_index filter)")             \
    X(filter_bytes, gauge, "bytes of those filters and of the keys files' tables kept")            \
    X(filter_stale_pages, counter, "of those, pages of segments gone since (left in the filters)") \
    X(filter_located, counter, "gets of filtered pages whose entry a keys file gave")              \
    X(filter_rebuilds, counter, "nodes' filters rebuilt after a quarter of their pages went")      \
    X(filter_misses, counter, "gets a filter said maybe to and no keys file had (misses)")         \
    X(keys_files_loaded, counter, "other nodes' keys files loaded (remote_index filter)")          \
    X(hints_sent, counter, "reads of other nodes' pages told to their owners (remote-read hints)") \
    X(hint_files, counter, "remote-read hint files written to this node's directory")              \
    X(hints_applied, counter,                                                                      \
      "other nodes' reads of this node's pages counted as reads (reinsertion)")                    \
    X(io_errors, counter, "storage reads and writes that failed")                                  \
    X(set_errors, counter, "sets refused or failed")                                               \
    X(bad_requests, counter, "requests refused as malformed")                                      \
    X(pools, gauge, "client host pools registered now (SGLang's shm allocator)")                   \
    X(mapped_ahead_bytes, gauge,                                                                   \
      "bytes of clients' regions and host pools given to mapping ahead (map_ahead)")               \
    X(pool_pages, counter, "pages moved straight to or from a client's host pool")                 \
    X(client_faults, counter, "pages failed because their client's memory vanished (EFAULT)")      \
    X(client_checks, counter, "hits whose payload check the client did in its copy")               \
    X(quarantined_files, counter, "bad files of this node set aside at start (*.bad-*)")           \
    X(idx_refused, counter,                                                                        \
      "other nodes' .idx and hint files refused (broken or too large), once each")                 \
    X(tail_publishes, counter, "tail indexes of open segments published for other nodes")          \
    X(tail_late_publishes, counter,                                                                \
      "of those, past their chunk's one for pages that waited (slow writes: one more slice)")      \
    X(mapped_bytes, counter, "bytes the page cache held copied out of kept mappings of segments")  \
    X(mapped_faults, counter, "copies out of those mappings a vanished page stopped (read again)") \
    X(inflight_bytes, gauge, "bytes of storage I/O in flight now")                                 \
    X(loop_busy_microseconds, counter,                                                             \
      "time the loop thread worked rather than waited for events (rate: its share of a core)")     \
    X(loop_stalls, counter, "times the loop thread's tick ran more than 10 ms late (kept busy)")   \
    X(loop_stall_max_microseconds, gauge,                                                          \
      "the most the loop thread's tick ran late since the start")

#endif
