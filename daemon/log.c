#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <unistd.h>

/* Set by the loop thread (start, SIGHUP), read by every thread: atomic. */
static int max_level = HC_LOG_INFO;

void hc_log_set_level(enum hc_log_level level)
{
    __atomic_store_n(&max_level, (int)level, __ATOMIC_RELAXED);
}

void hc_log(enum hc_log_level level, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    int n;

    if ((int)level > __atomic_load_n(&max_level, __ATOMIC_RELAXED))
        return;
    n = snprintf(line, sizeof(line), "<%d>hicached: ", (int)level);
    va_start(ap, fmt);
    n += vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    va_end(ap);
    if (n > (int)sizeof(line) - 2)
        n = (int)sizeof(line) - 2;
    line[n++] = '\n';
    /* one write(2) per line so lines from several threads never interleave */
    if (write(STDERR_FILENO, line, (size_t)n) < 0)
        return;
}
