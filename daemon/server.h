/* The glue between clients and the storage engine: a libuv loop on a Unix
 * stream socket, length-prefixed protobuf-c frames, per-client memfd regions,
 * and the translation of requests into hc_store calls (memcached's storage.c
 * to extstore.c). Everything here runs on the loop thread. */
#ifndef HC_SERVER_H
#define HC_SERVER_H

#include "config.h"

/* Runs the daemon until SIGTERM/SIGINT: opens the store, listens on
 * cfg->socket_path (or on a socket passed by systemd through LISTEN_FDS),
 * sends READY=1, serves, and on a signal stops accepting, finishes the I/O in
 * flight, seals the open segment, unlinks the socket and returns 0. SIGHUP
 * re-reads the configuration from argv (the config file, then the flags) and
 * applies what can change while running. Returns a process exit status: 0
 * clean stop, 1 start-up failure (reason logged). */
int hc_server_run(struct hc_config *cfg, int argc, char **argv);

#endif
