/* Facts shared by hicached, libhicache, hicachectl and the Python package:
 * this header is their one source. The daemon and the CLI include it
 * directly; libhicache's public header includes it (it is installed beside
 * hicache.h); the Python package reads the values it needs from libhicache
 * (hc_default_socket, hc_max_batch, hc_max_readers_per_page). */
#ifndef HICACHE_DEFS_H
#define HICACHE_DEFS_H

#define HC_VERSION "0.1.0"
#define HC_PROTOCOL_VERSION 1

/* The control socket when none is configured (systemd's RuntimeDirectory). */
#define HC_DEFAULT_SOCKET "/run/hicached/hicached.sock"

/* Host pools one connection may register (hc_pool_register: the KV pool and
 * the side pools of a hybrid pool group). */
#define HC_MAX_POOLS 64
/* Pieces of one page in a host pool at most (its K and V halves, or one a
 * layer and half: a layer-first pool). */
#define HC_MAX_PIECES 256

/* Pages in one get / set / exists request at most (SGLang's batch). */
#define HC_MAX_BATCH 128

/* Keys and namespaces: 1..256 characters of [A-Za-z0-9_.-], not "." or "..".
 * common/key.c's hc_name_invalid is the one check of that rule. */
#define HC_MAX_KEY 256u
#define HC_MAX_NS 256u

/* hc_connect_opts.readers_per_page (hello) at most: the TP ranks that read
 * one MLA page. */
#define HC_MAX_READERS_PER_PAGE 1024

/* hc_connect_opts.compression (hello): how the pages a client sets are
 * stored. */
#define HC_COMPRESSION_DEFAULT 0 /* the daemon's enable_compression */
#define HC_COMPRESSION_OFF 1     /* stored raw */
#define HC_COMPRESSION_ZSTD 2    /* compressed with zstd in the daemon (raw if < ~3% saved) */

#endif
