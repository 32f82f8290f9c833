/* The server: starts the I/O pool and the store, listens on the Unix socket
 * (or the one systemd passed), runs the loop, and stops cleanly on SIGTERM /
 * SIGINT: no new requests, the I/O in flight finishes, the store is sealed,
 * the socket unlinked. The parts it wires together are listed in
 * server_int.h.
 *
 * Threads: loop thread only, except wake_loop (see there). */
#include "server.h"
#include "server_int.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <jansson.h>

#include "log.h"
#include "prom.h"
#include "notify.h"

/* Called on an I/O thread when completions wait (or on the loop thread, in
 * hc_io_submit, for a task with no work): uv_async_send is the one libuv
 * call that is safe off the loop thread. */
static void wake_loop(void *arg)
{
    uv_async_send(arg);
}

/* The I/O pool has completions: run their done callbacks here. */
static void on_io_wake(uv_async_t *h)
{
    struct server *srv = h->data;
    hc_io_pool_drain(srv->io);
}

/* A tick that runs more than this late counts as a stall of the loop thread:
 * something kept it from polling (a callback that ran long, or the thread
 * not scheduled). */
#define LOOP_STALL_US 10000u

/* Every few hundred ms: how late it ran (loop_stalls), handshake and flush
 * deadlines, the store's tick. */
static void on_tick(uv_timer_t *t)
{
    struct server *srv = t->data;
    uint64_t now = uv_now(&srv->loop), now_ns = uv_hrtime();

    if (srv->tick_due_ns && now_ns > srv->tick_due_ns) {
        uint64_t late_us = (now_ns - srv->tick_due_ns) / 1000;
        if (late_us > LOOP_STALL_US)
            srv->stats.loop_stalls++;
        if (late_us > srv->stats.loop_stall_max_microseconds)
            srv->stats.loop_stall_max_microseconds = late_us;
    }
    /* libuv arms the next tick from the loop's time now (ms); one more ms of
     * slack covers that rounding */
    srv->tick_due_ns = now_ns + (srv->tick_ms + 1) * 1000000u;

    hc__sweep_conns(srv, now);
    hc_store_tick(srv->store, now);
}

static void close_handle(uv_handle_t *h)
{
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

/* Polled while stopping: once no request is in flight and the store is
 * quiet, close every connection, seal the open segment and let the loop end. */
static void on_stop_check(uv_timer_t *t)
{
    struct server *srv = t->data;
    struct conn *c, *next;

    for (c = srv->conns; c; c = c->next)
        if (c->inflight > 0)
            return;
    if (!hc_store_quiesce(srv->store))
        return;
    for (c = srv->conns; c; c = next) {
        next = c->next;
        hc__conn_close(c);
    }
    hc_store_close(srv->store);
    srv->store = NULL;
    srv->stopped = true;
    uv_timer_stop(t);
    close_handle((uv_handle_t *)&srv->stop_check);
    close_handle((uv_handle_t *)&srv->tick);
    close_handle((uv_handle_t *)&srv->sig_term);
    close_handle((uv_handle_t *)&srv->sig_int);
    close_handle((uv_handle_t *)&srv->sig_hup);
    /* io_wake stays open until the pool is destroyed after the loop ends */
    uv_unref((uv_handle_t *)&srv->io_wake);
}

/* SIGTERM / SIGINT: stop listening and reading; on_stop_check ends the loop
 * once the requests in flight are answered. */
static void begin_stop(struct server *srv, const char *why)
{
    struct conn *c;

    hc_log(HC_LOG_INFO, "%s: stopping (finishing the I/O in flight)", why);
    hc_notify("STOPPING=1\nSTATUS=stopping");
    srv->stopping = true;
    /* Closing the listener unlinks the socket path (libuv does it for a pipe
     * it bound), so no new client finds a socket that nobody serves. A socket
     * passed by systemd is left alone: systemd owns it. */
    close_handle((uv_handle_t *)&srv->listener);
    hc_metrics_stop(srv->metrics);
    srv->metrics = NULL;
    for (c = srv->conns; c; c = c->next) {
        if (c->reading) {
            uv_read_stop((uv_stream_t *)&c->pipe);
            c->reading = false;
        }
    }
    uv_timer_start(&srv->stop_check, on_stop_check, 0, 10);
}

/* SIGHUP reloads; SIGTERM / SIGINT stop, and a second one exits at once. */
static void on_signal(uv_signal_t *h, int signum)
{
    struct server *srv = h->data;

    if (signum == SIGHUP) {
        if (!srv->stopping)
            hc__reload(srv);
        return;
    }
    if (srv->stopping) {
        hc_log(HC_LOG_WARN, "second %s: exiting now", strsignal(signum));
        _exit(1);
    }
    begin_stop(srv, strsignal(signum));
}

/* Binds cfg->socket_path, replacing a stale socket file but never a live
 * daemon's. Returns 0 or -errno (reason logged). */
static int listen_path(struct server *srv)
{
    const char *path = srv->cfg->socket_path;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    char dir[sizeof(sa.sun_path)];
    char *slash;
    struct stat st;
    mode_t old;
    int rc;

    snprintf(dir, sizeof(dir), "%s", path);
    slash = strrchr(dir, '/');
    if (slash && slash != dir) {
        *slash = '\0';
        if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
            hc_log(HC_LOG_ERR, "cannot create the socket directory %s: %s", dir, strerror(errno));
            return -errno;
        }
    }
    if (lstat(path, &st) == 0) {
        int fd;

        if (!S_ISSOCK(st.st_mode)) {
            hc_log(HC_LOG_ERR, "%s exists and is not a socket; refusing to replace it", path);
            return -EEXIST;
        }
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
        if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
            close(fd);
            hc_log(HC_LOG_ERR, "another hicached is listening on %s", path);
            return -EADDRINUSE;
        }
        if (fd >= 0)
            close(fd);
        unlink(path);
    }
    old = umask(0077);
    rc = uv_pipe_bind(&srv->listener, path);
    umask(old);
    if (rc < 0) {
        hc_log(HC_LOG_ERR, "cannot bind %s: %s", path, uv_strerror(rc));
        return rc;
    }
    if (chmod(path, srv->cfg->socket_mode) < 0)
        hc_log(HC_LOG_WARN, "cannot set mode %o on %s: %s", srv->cfg->socket_mode, path,
               strerror(errno));
    return 0;
}

/* What the storage engine takes from the configuration. */
static struct hc_store_config store_config(const struct hc_config *cfg)
{
    return (struct hc_store_config){
        .mount_point = cfg->mount_point,
        .root_dir = cfg->root_dir,
        .node_id = cfg->node_id,
        .segment_size = cfg->segment_size,
        .open_segments = cfg->open_segments                    ? cfg->open_segments
                         : cfg->io_threads < HC_STORE_OPEN_MAX ? cfg->io_threads
                                                               : HC_STORE_OPEN_MAX,
        .capacity_bytes = cfg->capacity_bytes,
        .min_free_ratio = cfg->min_free_ratio,
        .seal_interval_ms = cfg->seal_interval_ms,
        .discovery_interval_ms = cfg->discovery_interval_ms,
        .use_direct_io = cfg->use_direct_io,
        .dedupe = cfg->dedupe,
        .coalesce_reads = cfg->coalesce_reads,
        .reinsert = cfg->reinsert,
        .visibility_ms = cfg->visibility_ms,
        .keys_interval_ms = cfg->keys_interval_ms,
        .remote_filter = cfg->remote_index == 1,
        .enable_compression = cfg->enable_compression,
        .read_linger_ms = cfg->read_linger_ms,
        .read_linger_bytes = cfg->read_linger_bytes,
        /* reads ahead go into the page cache through the threads' scratch;
         * bounded like the reads they stand for */
        .read_ahead_bytes = cfg->io_engine == HC_IO_ENGINE_THREADS && !cfg->use_direct_io
                                ? cfg->max_inflight_bytes
                                : 0,
    };
}

/* What the I/O pool takes from the configuration. */
static struct hc_io_config io_config(const struct hc_config *cfg)
{
    return (struct hc_io_config){
        .engine = (enum hc_io_engine)cfg->io_engine, /* same values, see config.h */
        .threads = cfg->io_threads,
        .queue_depth = cfg->queue_depth,
        .max_inflight_bytes = cfg->max_inflight_bytes,
    };
}

/* Listens on the socket systemd passed, or else on cfg->socket_path. Returns
 * 0, or a negative code with the reason logged and the listener closed. */
static int listen_socket(struct server *srv)
{
    const struct hc_config *cfg = srv->cfg;
    int fd, rc;

    uv_pipe_init(&srv->loop, &srv->listener, 0);
    srv->listener.data = srv;
    fd = hc_listen_fds();
    if (fd >= 0) {
        srv->socket_activated = true;
        rc = uv_pipe_open(&srv->listener, fd);
        if (rc < 0)
            hc_log(HC_LOG_ERR, "cannot use the socket passed by systemd: %s", uv_strerror(rc));
    } else if (fd == -ENOENT) {
        rc = listen_path(srv);
    } else {
        /* systemd meant to pass sockets and they are unusable: binding the
         * path ourselves would replace the socket systemd listens on. */
        hc_log(HC_LOG_ERR, "cannot use the sockets passed by systemd: %s", strerror(-fd));
        rc = fd;
    }
    if (rc == 0) {
        rc = uv_listen((uv_stream_t *)&srv->listener, 128, hc__on_connection);
        if (rc < 0)
            hc_log(HC_LOG_ERR, "cannot listen on %s: %s", cfg->socket_path, uv_strerror(rc));
    }
    if (rc < 0)
        uv_close((uv_handle_t *)&srv->listener, NULL);
    return rc;
}

/* Starts the tick (sealing and discovery run from it, so it runs at half the
 * shorter of their intervals, within [10, 200] ms) and the signal handlers. */
static void timers_and_signals_start(struct server *srv)
{
    const struct hc_config *cfg = srv->cfg;
    uint64_t tick_ms;

    uv_timer_init(&srv->loop, &srv->tick);
    uv_timer_init(&srv->loop, &srv->stop_check);
    srv->tick.data = srv->stop_check.data = srv;
    tick_ms = cfg->seal_interval_ms < cfg->discovery_interval_ms ? cfg->seal_interval_ms
                                                                 : cfg->discovery_interval_ms;
    tick_ms /= 2;
    if (cfg->visibility_ms && cfg->visibility_ms / 8 < tick_ms) /* tail.c */
        tick_ms = cfg->visibility_ms / 8;
    tick_ms = tick_ms < 10 ? 10 : tick_ms > 200 ? 200 : tick_ms;
    srv->tick_ms = tick_ms;
    uv_timer_start(&srv->tick, on_tick, tick_ms, tick_ms);
    uv_signal_init(&srv->loop, &srv->sig_term);
    uv_signal_init(&srv->loop, &srv->sig_int);
    uv_signal_init(&srv->loop, &srv->sig_hup);
    srv->sig_term.data = srv->sig_int.data = srv->sig_hup.data = srv;
    uv_signal_start(&srv->sig_term, on_signal, SIGTERM);
    uv_signal_start(&srv->sig_int, on_signal, SIGINT);
    uv_signal_start(&srv->sig_hup, on_signal, SIGHUP);
    signal(SIGPIPE, SIG_IGN);
}

void hc__server_io_stats(struct server *srv)
{
    struct hc_io_map_stats m;

    hc_io_pool_map_stats(srv->io, &m);
    srv->stats.inflight_bytes = hc_io_pool_inflight_bytes(srv->io);
    srv->stats.mapped_bytes = m.bytes;
    srv->stats.mapped_faults = m.faults;
    if (srv->start_ns) {
        uint64_t wall = uv_hrtime() - srv->start_ns, idle = uv_metrics_idle_time(&srv->loop);
        srv->stats.loop_busy_microseconds = wall > idle ? (wall - idle) / 1000 : 0;
    }
}

/* The Prometheus text of the counters and histograms (metrics.h). */
static char *metrics_text(void *arg)
{
    struct server *srv = arg;
    json_t *o;
    char *text;

    hc__server_io_stats(srv);
    o = hc_stats_object(&srv->stats, &srv->lat, srv->cfg->node_id,
                        (uv_now(&srv->loop) - srv->start_ms) / 1000, srv->cfg->capacity_bytes);
    text = o ? hc_prom_text(o) : NULL;
    json_decref(o);
    return text;
}

/* metrics_listen: a failure to listen there is logged and the daemon serves
 * on without the endpoint (the cache matters more than its metrics; stats
 * stay available through hicachectl). */
static void metrics_start(struct server *srv)
{
    char err[256] = "";

    if (!srv->cfg->metrics_listen)
        return;
    if (hc_metrics_start(&srv->loop, srv->cfg->metrics_listen, metrics_text, srv, &srv->metrics,
                         err, sizeof(err)) < 0)
        hc_log(HC_LOG_ERR, "no Prometheus endpoint: %s", err);
}

int hc_server_run(struct hc_config *cfg, int argc, char **argv)
{
    struct server *srv;
    struct hc_store_config sc = store_config(cfg);
    struct hc_io_config ioc = io_config(cfg);
    char err[512] = "";
    int rc, status = 1;

    srv = calloc(1, sizeof(*srv));
    if (!srv) {
        hc_log(HC_LOG_ERR, "out of memory");
        return 1;
    }
    srv->cfg = cfg;
    srv->argc = argc;
    srv->argv = argv;
    if (uv_loop_init(&srv->loop) < 0) {
        free(srv);
        return 1;
    }
    /* loop_busy_microseconds: the loop counts the time it waits for events (stays 0
     * with a libuv that cannot) */
    if (uv_loop_configure(&srv->loop, UV_METRICS_IDLE_TIME) == 0)
        srv->start_ns = uv_hrtime();
    srv->restrict_peers =
        (cfg->allowed_uids && *cfg->allowed_uids) || (cfg->allowed_gids && *cfg->allowed_gids);
    if (hc__parse_ids(cfg->allowed_uids, false, srv->allowed_uids, &srv->n_uids, err, sizeof(err)) <
            0 ||
        hc__parse_ids(cfg->allowed_gids, true, srv->allowed_gids, &srv->n_gids, err, sizeof(err)) <
            0) {
        hc_log(HC_LOG_ERR, "%s", err);
        goto out_loop;
    }

    uv_async_init(&srv->loop, &srv->io_wake, on_io_wake);
    srv->io_wake.data = srv;
    rc = hc_io_pool_create(&srv->io, &ioc, wake_loop, &srv->io_wake);
    if (rc < 0) {
        hc_log(HC_LOG_ERR, "cannot start the I/O pool: %s", strerror(-rc));
        goto out_async;
    }
    rc = hc_store_open(&srv->store, &sc, srv->io, &srv->stats, err, sizeof(err));
    if (rc < 0) {
        hc_log(HC_LOG_ERR, "cannot open the store under %s: %s", cfg->mount_point,
               *err ? err : strerror(-rc));
        goto out_io;
    }
    if (listen_socket(srv) < 0) {
        hc_store_close(srv->store);
        goto out_io;
    }
    timers_and_signals_start(srv);
    metrics_start(srv);

    srv->start_ms = uv_now(&srv->loop);
    hc_log(HC_LOG_INFO, "serving %s/%s/%s on %s (node %s)", cfg->mount_point, cfg->root_dir,
           cfg->node_id, srv->socket_activated ? "a socket passed by systemd" : cfg->socket_path,
           cfg->node_id);
    hc_notify("READY=1\nSTATUS=serving");

    uv_run(&srv->loop, UV_RUN_DEFAULT);

    status = srv->stopped ? 0 : 1;
    hc_io_pool_destroy(srv->io);
    srv->io = NULL;
    uv_close((uv_handle_t *)&srv->io_wake, NULL);
    uv_run(&srv->loop, UV_RUN_DEFAULT);
    uv_loop_close(&srv->loop);
    hc_log(HC_LOG_INFO, "stopped");
    free(srv);
    return status;

out_io:
    hc_io_pool_destroy(srv->io);
out_async:
    uv_close((uv_handle_t *)&srv->io_wake, NULL);
    uv_run(&srv->loop, UV_RUN_DEFAULT);
out_loop:
    uv_loop_close(&srv->loop);
    free(srv);
    return status;
}
