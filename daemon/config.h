/* Daemon configuration: defaults, a JSON file (jansson), then command-line
 * flags. Every key has the same name in the file (snake_case) and on the
 * command line (--kebab-case). Unknown keys and bad values are refused with a
 * message naming the key. */
#ifndef HC_CONFIG_H
#define HC_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "log.h"

struct hc_config {
    char *mount_point;              /* directory holding <root_dir>; default /mnt/jfs */
    char *root_dir;                 /* default "hicache"; [A-Za-z0-9_.-]{1,64} */
    char *socket_path;              /* default /run/hicached/hicached.sock */
    char *metrics_listen;           /* Prometheus endpoint (metrics.h); NULL = off */
    char *node_id;                  /* default: host name (sanitized); [A-Za-z0-9_.-]{1,64} */
    uint64_t region_size;           /* per client, default 64 MiB, 1 MiB .. 4 GiB */
    uint64_t map_ahead;             /* bytes of clients' regions and host pools mapped
                                       ahead at once, default 4 GiB, 0 (none) .. 1 TiB */
    uint64_t segment_size;          /* default 256 MiB, 1 MiB .. 32 GiB (its .idx, at most
                                       4M entries of 8 KiB records, stays readable) */
    uint32_t open_segments;         /* default 0 = one per I/O thread (at most 16);
                                       1 .. 16 */
    uint64_t capacity_bytes;        /* default 0 = no limit */
    double min_free_ratio;          /* default 0.05, 0 .. 0.9 */
    uint32_t io_threads;            /* default 2, 1 .. 64 */
    uint32_t io_engine;             /* "uring" = 0 (default) or "threads" = 1: the values
                                       of enum hc_io_engine (io.h) */
    uint32_t queue_depth;           /* default 64, 4 .. 4096 */
    uint64_t max_inflight_bytes;    /* default 256 MiB, >= 1 MiB */
    uint32_t max_frame_bytes;       /* default 1 MiB, 4 KiB .. 64 MiB */
    uint32_t max_clients;           /* default 1024, 1 .. 65536 */
    uint32_t max_batch;             /* default 128, 1 .. 128 */
    uint32_t seal_interval_ms;      /* default 30000, 10 .. 86400000 */
    uint32_t discovery_interval_ms; /* default 5000, 10 .. 86400000 */
    uint32_t socket_mode;           /* default 0660 (JSON: "0660" string or integer) */
    bool use_direct_io;             /* default false */
    bool enable_compression;        /* default false: compress the pages of clients that
                                       do not choose at hello (zstd) */
    uint32_t read_linger_ms;        /* default 2000, 0 .. 600000 (0: no linger) */
    uint64_t read_linger_bytes;     /* default 256 MiB, 0 .. 64 GiB (0: no linger) */
    bool dedupe;                    /* default true */
    bool coalesce_reads;            /* default true */
    bool reinsert;                  /* default true: evict.c's reinsertion */
    uint32_t visibility_ms;         /* default 0 (off): tail.c */
    uint32_t keys_interval_ms;      /* default 0 (off): keys.c */
    uint32_t remote_index;          /* "exact" = 0 (default) or "filter" = 1: fleet.c */
    bool foreground;                /* accepted, never read: hicached does not fork, it
                                       logs to stderr and systemd runs it (Type=notify) */
    uint32_t log_level;             /* "error" 0, "warning" 1, "info" 2 (default), "debug" 3:
                                       see hc_config_log_level */
    char *allowed_uids;             /* comma-separated uids/user names; NULL = anyone */
    char *allowed_gids;             /* comma-separated gids/group names; NULL = anyone */
    char *config_path;              /* the --config file, if any (for reload) */
};

/* Fills defaults. Returns 0 or -ENOMEM. */
int hc_config_init(struct hc_config *cfg);
void hc_config_free(struct hc_config *cfg);

/* Merges a JSON object from path over cfg. Returns 0, or -EINVAL/-errno with a
 * message in err naming the file and the key ("config.json: unknown key
 * 'mount_pont'", "config.json: 'io_threads' must be an integer from 1 to 64").
 * On error cfg is unchanged. */
int hc_config_load_file(struct hc_config *cfg, const char *path, char *err, size_t errlen);

/* Same, from a JSON text (for tests); name is used in messages. */
int hc_config_load_string(struct hc_config *cfg, const char *json, const char *name, char *err,
                          size_t errlen);

/* Parses argv: --config FILE is applied first wherever it stands, then every
 * other flag in order: --mount-point DIR, --socket PATH (also
 * --socket-path), --node-id NAME, --foreground, --help, --version, and
 * --<key> VALUE for every other key. Sets *exit_now (and returns 0) for --help
 * / --version after printing. Returns 0 or -EINVAL with err set. */
int hc_config_parse_args(struct hc_config *cfg, int argc, char **argv, bool *exit_now, char *err,
                         size_t errlen);

/* cfg->log_level as the level hc_log_set_level takes. */
enum hc_log_level hc_config_log_level(const struct hc_config *cfg);

/* Writes the usage text. */
void hc_config_usage(FILE *out);

#endif
