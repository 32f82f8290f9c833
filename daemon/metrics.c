/* The Prometheus endpoint: see metrics.h. Loop thread only. */
#include "metrics.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

#define MCONN_MAX 16            /* scrapes served at once; more are closed at accept */
#define MREQ_MAX 8192           /* bytes of request line and headers */
#define MCONN_DEADLINE_MS 5000u /* to send the request and read the answer */

struct mconn {
    union {
        uv_handle_t h;
        uv_stream_t s;
        uv_tcp_t tcp;
        uv_pipe_t pipe;
    } io;
    uv_timer_t timer;
    uv_write_t wr;
    struct hc_metrics *m;
    struct mconn *prev, *next;
    char *resp;
    size_t len;
    int open_handles;
    bool answered, closing;
    char buf[MREQ_MAX];
};

struct hc_metrics {
    uv_loop_t *loop;
    union {
        uv_handle_t h;
        uv_stream_t s;
        uv_tcp_t tcp;
        uv_pipe_t pipe;
    } lis;
    bool is_pipe, stopping;
    int open_handles; /* the listener and every connection's handles */
    hc_metrics_text_fn text;
    void *arg;
    struct mconn *conns;
    int nconns;
    char *path; /* a Unix socket's path, unlinked at stop */
};

static void metrics_maybe_free(struct hc_metrics *m)
{
    if (m->stopping && m->open_handles == 0) {
        free(m->path);
        free(m);
    }
}

static void mconn_on_close(uv_handle_t *h)
{
    struct mconn *c = h->data;
    struct hc_metrics *m = c->m;

    m->open_handles--;
    if (--c->open_handles > 0)
        return;
    free(c->resp);
    free(c);
    metrics_maybe_free(m);
}

static void mconn_close(struct mconn *c)
{
    if (c->closing)
        return;
    c->closing = true;
    if (c->prev)
        c->prev->next = c->next;
    else
        c->m->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->m->nconns--;
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, mconn_on_close);
    uv_close(&c->io.h, mconn_on_close);
}

static void mconn_on_timeout(uv_timer_t *t)
{
    mconn_close(t->data);
}

static void mconn_on_written(uv_write_t *w, int status)
{
    (void)status;
    mconn_close(w->data);
}

/* Queues the whole answer and closes the connection once it is written. */
static void mconn_answer(struct mconn *c, int code, const char *reason, const char *extra,
                         const char *body, size_t body_len, bool head_only)
{
    int n;
    size_t hlen;
    uv_buf_t b;

    c->answered = true;
    uv_read_stop(&c->io.s);
    n = snprintf(NULL, 0,
                 "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s"
                 "Connection: close\r\n\r\n",
                 code, reason,
                 code == 200 ? "text/plain; version=0.0.4; charset=utf-8"
                             : "text/plain; charset=utf-8",
                 body_len, extra ? extra : "");
    hlen = (size_t)(n > 0 ? n : 0);
    c->resp = malloc(hlen + 1 + (head_only ? 0 : body_len));
    if (c->resp == NULL || n < 0) {
        mconn_close(c);
        return;
    }
    snprintf(c->resp, hlen + 1,
             "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s"
             "Connection: close\r\n\r\n",
             code, reason,
             code == 200 ? "text/plain; version=0.0.4; charset=utf-8" : "text/plain; charset=utf-8",
             body_len, extra ? extra : "");
    if (!head_only)
        memcpy(c->resp + hlen, body, body_len);
    b = uv_buf_init(c->resp, (unsigned)(hlen + (head_only ? 0 : body_len)));
    c->wr.data = c;
    if (uv_write(&c->wr, &c->io.s, &b, 1, mconn_on_written) != 0)
        mconn_close(c);
}

/* The request line is whole (headers are read and ignored): answers it. */
static void mconn_handle(struct mconn *c)
{
    char *sp1, *sp2, *q;
    bool get, head;
    char *text;
    size_t line = strcspn(c->buf, "\r\n");

    c->buf[line] = '\0';
    sp1 = strchr(c->buf, ' ');
    sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
    if (sp1 == NULL || sp2 == NULL || strncmp(sp2 + 1, "HTTP/1.", 7) != 0) {
        static const char msg[] = "bad request line\n";
        mconn_answer(c, 400, "Bad Request", NULL, msg, sizeof(msg) - 1, false);
        return;
    }
    *sp1 = *sp2 = '\0';
    get = strcmp(c->buf, "GET") == 0;
    head = strcmp(c->buf, "HEAD") == 0;
    if (!get && !head) {
        static const char msg[] = "only GET and HEAD\n";
        mconn_answer(c, 405, "Method Not Allowed", "Allow: GET, HEAD\r\n", msg, sizeof(msg) - 1,
                     false);
        return;
    }
    if ((q = strchr(sp1 + 1, '?')) != NULL)
        *q = '\0';
    if (strcmp(sp1 + 1, "/metrics") != 0) {
        static const char msg[] = "hicached: the metrics are at /metrics\n";
        mconn_answer(c, 404, "Not Found", NULL, msg, sizeof(msg) - 1, head);
        return;
    }
    text = c->m->text(c->m->arg);
    if (text == NULL) {
        static const char msg[] = "out of memory\n";
        mconn_answer(c, 500, "Internal Server Error", NULL, msg, sizeof(msg) - 1, head);
        return;
    }
    mconn_answer(c, 200, "OK", NULL, text, strlen(text), head);
    free(text);
}

static void mconn_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    struct mconn *c = h->data;

    (void)suggested;
    *b = uv_buf_init(c->buf + c->len, (unsigned)(sizeof(c->buf) - 1 - c->len));
}

static void mconn_on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    struct mconn *c = s->data;

    (void)b;
    if (n < 0) {
        mconn_close(c);
        return;
    }
    c->len += (size_t)n;
    c->buf[c->len] = '\0';
    if (strstr(c->buf, "\r\n\r\n") || strstr(c->buf, "\n\n")) {
        mconn_handle(c);
    } else if (c->len >= sizeof(c->buf) - 1) {
        static const char msg[] = "request too large\n";
        mconn_answer(c, 431, "Request Header Fields Too Large", NULL, msg, sizeof(msg) - 1, false);
    }
}

static void metrics_on_connection(uv_stream_t *lis, int status)
{
    struct hc_metrics *m = lis->data;
    struct mconn *c;
    int rc;

    if (status < 0 || m->stopping)
        return;
    c = calloc(1, sizeof(*c));
    if (c == NULL)
        return;
    c->m = m;
    rc = m->is_pipe ? uv_pipe_init(m->loop, &c->io.pipe, 0) : uv_tcp_init(m->loop, &c->io.tcp);
    if (rc != 0) {
        free(c);
        return;
    }
    uv_timer_init(m->loop, &c->timer);
    c->io.h.data = c->timer.data = c;
    c->open_handles = 2;
    m->open_handles += 2;
    c->next = m->conns;
    if (m->conns)
        m->conns->prev = c;
    m->conns = c;
    m->nconns++;
    if (uv_accept(lis, &c->io.s) != 0 || m->nconns > MCONN_MAX) {
        mconn_close(c); /* over the limit: accepted only to be closed */
        return;
    }
    uv_timer_start(&c->timer, mconn_on_timeout, MCONN_DEADLINE_MS, 0);
    if (uv_read_start(&c->io.s, mconn_alloc, mconn_on_read) != 0)
        mconn_close(c);
}

/* Parses "HOST:PORT", "[V6]:PORT" or "localhost:PORT" into *sa. */
static int parse_inet(const char *listen, struct sockaddr_storage *sa)
{
    char host[64];
    const char *colon, *h = listen;
    size_t hl;
    char *end;
    long port;

    if (listen[0] == '[') {
        const char *rb = strchr(listen, ']');
        if (rb == NULL || rb[1] != ':')
            return -EINVAL;
        h = listen + 1;
        hl = (size_t)(rb - h);
        colon = rb + 1;
    } else {
        colon = strrchr(listen, ':');
        if (colon == NULL)
            return -EINVAL;
        hl = (size_t)(colon - listen);
    }
    if (hl == 0 || hl >= sizeof(host))
        return -EINVAL;
    memcpy(host, h, hl);
    host[hl] = '\0';
    errno = 0;
    port = strtol(colon + 1, &end, 10);
    if (errno || end == colon + 1 || *end || port < 1 || port > 65535)
        return -EINVAL;
    if (strcmp(host, "localhost") == 0)
        strcpy(host, "127.0.0.1");
    if (uv_ip4_addr(host, (int)port, (struct sockaddr_in *)sa) == 0)
        return 0;
    if (uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)sa) == 0)
        return 0;
    return -EINVAL;
}

const char *hc_metrics_listen_invalid(const char *listen)
{
    struct sockaddr_storage sa;

    if (listen == NULL || listen[0] == '\0')
        return "empty";
    if (listen[0] == '/')
        return strlen(listen) < 100 ? NULL : "a socket path of at most 99 bytes";
    return parse_inet(listen, &sa) == 0
               ? NULL
               : "HOST:PORT with a numeric IPv4 or [IPv6] address (or localhost), or an "
                 "absolute socket path";
}

static void metrics_on_lis_close(uv_handle_t *h)
{
    struct hc_metrics *m = h->data;

    m->open_handles--;
    metrics_maybe_free(m);
}

int hc_metrics_start(uv_loop_t *loop, const char *listen, hc_metrics_text_fn text, void *arg,
                     struct hc_metrics **out, char *err, size_t errlen)
{
    struct hc_metrics *m;
    struct sockaddr_storage sa;
    const char *why = hc_metrics_listen_invalid(listen);
    int rc;

    if (why != NULL) {
        snprintf(err, errlen, "metrics_listen '%s': %s", listen ? listen : "", why);
        return -EINVAL;
    }
    m = calloc(1, sizeof(*m));
    if (m == NULL)
        return -ENOMEM;
    m->loop = loop;
    m->text = text;
    m->arg = arg;
    m->is_pipe = listen[0] == '/';
    rc = m->is_pipe ? uv_pipe_init(loop, &m->lis.pipe, 0) : uv_tcp_init(loop, &m->lis.tcp);
    if (rc != 0) {
        free(m);
        snprintf(err, errlen, "metrics_listen: %s", uv_strerror(rc));
        return rc;
    }
    m->lis.h.data = m;
    m->open_handles = 1;
    if (m->is_pipe) {
        struct stat st;

        /* a socket left by an earlier run; anything else is not ours */
        if (lstat(listen, &st) == 0 && S_ISSOCK(st.st_mode))
            unlink(listen);
        m->path = strdup(listen);
        rc = m->path ? uv_pipe_bind(&m->lis.pipe, listen) : UV_ENOMEM;
        if (rc == 0)
            chmod(listen, 0660);
    } else {
        parse_inet(listen, &sa);
        rc = uv_tcp_bind(&m->lis.tcp, (const struct sockaddr *)&sa, 0);
    }
    if (rc == 0)
        rc = uv_listen(&m->lis.s, 64, metrics_on_connection);
    if (rc != 0) {
        snprintf(err, errlen, "metrics_listen %s: %s", listen, uv_strerror(rc));
        m->stopping = true;
        if (m->path && m->is_pipe)
            unlink(m->path);
        uv_close(&m->lis.h, metrics_on_lis_close);
        return rc;
    }
    hc_log(HC_LOG_INFO, "metrics: Prometheus text at http://%s/metrics%s", listen,
           m->is_pipe ? " (a Unix socket)" : "");
    *out = m;
    return 0;
}

void hc_metrics_stop(struct hc_metrics *m)
{
    if (m == NULL || m->stopping)
        return;
    m->stopping = true;
    while (m->conns)
        mconn_close(m->conns);
    if (m->path)
        unlink(m->path);
    uv_close(&m->lis.h, metrics_on_lis_close);
}
