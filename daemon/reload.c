/* Reload (SIGHUP): the configuration is read again, file then flags, as at
 * start; what can change while running is applied (to the server, and to the
 * store through hc_store_reconfigure), the rest is logged as waiting for a
 * restart.
 *
 * Threads: loop thread only (the signal is delivered there by libuv). */
#include "server_int.h"

#include <inttypes.h>
#include <string.h>

#include "log.h"
#include "notify.h"

/* True when two optional strings differ. */
static bool str_differs(const char *a, const char *b)
{
    return (a == NULL) != (b == NULL) || (a && strcmp(a, b) != 0);
}

/* SIGHUP: reads the configuration again (file, then flags, as at start) and
 * applies what can change while running: capacity, free-space ratio, seal and
 * discovery intervals, dedupe, coalescing, max_clients, map_ahead, the log
 * level and the allowed users and groups. A change to anything else is logged
 * as waiting for a restart. A configuration that does not load changes
 * nothing. */
void hc__reload(struct server *srv)
{
    struct hc_config nc, *cfg = srv->cfg;
    uid_t uids[MAX_IDS];
    gid_t gids[MAX_IDS];
    unsigned n_uids = 0, n_gids = 0;
    bool exit_now = false;
    char err[512] = "";
    char *tmp;

    hc_notify("RELOADING=1");
    if (hc_config_init(&nc) < 0)
        goto out;
    if (hc_config_parse_args(&nc, srv->argc, srv->argv, &exit_now, err, sizeof(err)) < 0 ||
        hc__parse_ids(nc.allowed_uids, false, uids, &n_uids, err, sizeof(err)) < 0 ||
        hc__parse_ids(nc.allowed_gids, true, gids, &n_gids, err, sizeof(err)) < 0) {
        hc_log(HC_LOG_ERR, "reload failed, the running configuration stays: %s", err);
        hc_config_free(&nc);
        goto out;
    }
#define RESTART_STR(f)                                                                             \
    if (str_differs(nc.f, cfg->f))                                                                 \
        hc_log(HC_LOG_WARN, "reload: %s changed; it takes effect at the next restart", #f);
#define RESTART_NUM(f)                                                                             \
    if (nc.f != cfg->f)                                                                            \
        hc_log(HC_LOG_WARN, "reload: %s changed; it takes effect at the next restart", #f);
    RESTART_STR(mount_point)
    RESTART_STR(root_dir)
    RESTART_STR(socket_path)
    RESTART_STR(metrics_listen)
    RESTART_STR(node_id)
    RESTART_NUM(region_size)
    RESTART_NUM(segment_size)
    RESTART_NUM(open_segments)
    RESTART_NUM(io_threads)
    RESTART_NUM(io_engine)
    RESTART_NUM(queue_depth)
    RESTART_NUM(max_inflight_bytes)
    RESTART_NUM(max_frame_bytes)
    RESTART_NUM(max_batch)
    RESTART_NUM(socket_mode)
    RESTART_NUM(use_direct_io)
    RESTART_NUM(remote_index)
#undef RESTART_STR
#undef RESTART_NUM
    cfg->capacity_bytes = nc.capacity_bytes;
    cfg->min_free_ratio = nc.min_free_ratio;
    cfg->seal_interval_ms = nc.seal_interval_ms;
    cfg->discovery_interval_ms = nc.discovery_interval_ms;
    cfg->dedupe = nc.dedupe;
    cfg->coalesce_reads = nc.coalesce_reads;
    cfg->reinsert = nc.reinsert;
    cfg->visibility_ms = nc.visibility_ms;
    cfg->keys_interval_ms = nc.keys_interval_ms;
    cfg->enable_compression = nc.enable_compression;
    cfg->read_linger_ms = nc.read_linger_ms;
    cfg->read_linger_bytes = nc.read_linger_bytes;
    cfg->max_clients = nc.max_clients;
    cfg->map_ahead = nc.map_ahead;
    cfg->log_level = nc.log_level;
    hc_log_set_level(hc_config_log_level(cfg));
    tmp = cfg->allowed_uids;
    cfg->allowed_uids = nc.allowed_uids;
    nc.allowed_uids = tmp;
    tmp = cfg->allowed_gids;
    cfg->allowed_gids = nc.allowed_gids;
    nc.allowed_gids = tmp;
    memcpy(srv->allowed_uids, uids, sizeof(uids));
    memcpy(srv->allowed_gids, gids, sizeof(gids));
    srv->n_uids = n_uids;
    srv->n_gids = n_gids;
    srv->restrict_peers = n_uids > 0 || n_gids > 0;
    {
        struct hc_store_config sc = {
            .capacity_bytes = cfg->capacity_bytes,
            .min_free_ratio = cfg->min_free_ratio,
            .seal_interval_ms = cfg->seal_interval_ms,
            .discovery_interval_ms = cfg->discovery_interval_ms,
            .dedupe = cfg->dedupe,
            .coalesce_reads = cfg->coalesce_reads,
            .reinsert = cfg->reinsert,
            .visibility_ms = cfg->visibility_ms,
            .keys_interval_ms = cfg->keys_interval_ms,
            .enable_compression = cfg->enable_compression,
            .read_linger_ms = cfg->read_linger_ms,
            .read_linger_bytes = cfg->read_linger_bytes,
        };
        hc_store_reconfigure(srv->store, &sc);
    }
    hc_config_free(&nc);
    hc_log(HC_LOG_INFO,
           "reloaded: capacity_bytes %" PRIu64 ", seal_interval_ms %u, discovery_interval_ms %u, "
           "dedupe %s, coalesce_reads %s, max_clients %u, map_ahead %" PRIu64,
           cfg->capacity_bytes, cfg->seal_interval_ms, cfg->discovery_interval_ms,
           cfg->dedupe ? "on" : "off", cfg->coalesce_reads ? "on" : "off", cfg->max_clients,
           cfg->map_ahead);
out:
    hc_notify("READY=1\nSTATUS=serving");
}
