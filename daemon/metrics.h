/* The opt-in Prometheus endpoint (config metrics_listen): a minimal HTTP/1.x
 * server on the daemon's libuv loop that answers GET /metrics with the text
 * of common/prom.c. Bounded against hostile scrapers: a few connections at
 * once, a small request, a short deadline, one response per connection.
 *
 * Why libuv's own TCP and not libmicrohttpd: the daemon already runs one
 * libuv loop and every counter lives on that loop thread; serving one GET
 * there needs no locking, no second thread and no new dependency, and the
 * request parsing the endpoint needs is a request line.
 *
 * Threads: loop thread only. */
#ifndef HC_METRICS_H
#define HC_METRICS_H

#include <stddef.h>
#include <uv.h>

struct hc_metrics;

/* Returns malloc'd exposition text, or NULL (the scrape gets a 500). Called
 * on the loop thread for every GET /metrics. */
typedef char *(*hc_metrics_text_fn)(void *arg);

/* Listens on listen: "HOST:PORT" (IPv4, or [IPv6]:PORT) or an absolute path
 * (a Unix socket, mode 0660). Returns 0 and sets *out, or -errno with a
 * message in err (a bad address, or the bind failing); nothing is left
 * listening on error. */
int hc_metrics_start(uv_loop_t *loop, const char *listen, hc_metrics_text_fn text, void *arg,
                     struct hc_metrics **out, char *err, size_t errlen);

/* Stops listening and closes every connection; frees m once libuv is done
 * with its handles (run the loop). Accepts NULL. */
void hc_metrics_stop(struct hc_metrics *m);

/* Checks the form of a metrics_listen value (for the configuration):
 * returns NULL when valid, else why not. */
const char *hc_metrics_listen_invalid(const char *listen);

#endif
